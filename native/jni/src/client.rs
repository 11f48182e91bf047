//! `ClientHandle`: what a client handle points to.
//!
//! - [`Core`]: one tokio runtime (multi-thread, 2 workers) and the core [`Client`] behind a
//!   `Mutex`. A Java thread calling a method takes the lock and blocks on the runtime
//!   (`Runtime::block_on`) for the async client calls, so concurrent Java callers simply
//!   serialise on the lock. The sync thread shares the `Core` (its own `Arc`) and takes the same
//!   lock for one sync round at a time — never while it calls into Java.
//! - The `Client` is an `Option`: `wipe` takes it out (and consumes it), after which every
//!   method but `clientClose` fails with code `wiped`.
//! - A panic while the lock is held poisons it: the client's in-memory state is then not
//!   trusted and every later call fails with code `poisoned` (close and reopen: the store is
//!   transactional). `wipe` and `clientClose` still work on a poisoned client.
//! - The [`JavaKeyBinder`] is kept for `wipe` (the KEK is destroyed through it).
//! - The sync thread's slot, and the id of the last security-journal entry delivered to a
//!   listener (kept across `stopSync`/`startSync`, so a restart does not repeat entries; it
//!   starts at 0, so the first `startSync` of an opened client delivers the whole journal — the
//!   only way the Java side learns of entries recorded while no listener ran).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jni::Env;
use jni::objects::JObject;
use tchap_secure_core::{Client, Config};
use tokio::runtime::Runtime;

use crate::error::BridgeError;
use crate::handle::HandleType;
use crate::key_binder::JavaKeyBinder;
use crate::sync_thread::{SyncMode, SyncThread};

/// How long a wipe waits for the homeserver to remove this device's pushers.
const PUSHER_REMOVAL_BEFORE_WIPE: Duration = Duration::from_secs(10);

/// Worker threads of each client's runtime.
const RUNTIME_WORKERS: usize = 2;
/// How long closing a client waits for the runtime's blocking tasks (DNS lookups).
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(2);

/// The runtime and the client, shared with the sync thread. (No `Debug`: nothing here is ever
/// printed.)
pub(crate) struct Core {
    client: Mutex<Option<Client>>,
    /// `Some` until dropped (`shutdown_timeout` takes it by value).
    runtime: Option<Runtime>,
}

impl Core {
    /// Runs `f` on the client, holding its lock; `f` blocks on the runtime for async calls.
    pub(crate) fn with_client<T>(
        &self,
        f: impl FnOnce(&mut Client, &Runtime) -> Result<T, BridgeError>,
    ) -> Result<T, BridgeError> {
        let runtime = self.runtime.as_ref().ok_or(BridgeError::Wiped)?;
        let mut guard = self.client.lock().map_err(|_| BridgeError::Poisoned)?;
        let client = guard.as_mut().ok_or(BridgeError::Wiped)?;
        f(client, runtime)
    }

    /// The runtime, for work that must not hold the client lock (the sync long-poll).
    pub(crate) fn runtime(&self) -> Result<&Runtime, BridgeError> {
        self.runtime.as_ref().ok_or(BridgeError::Wiped)
    }

    /// The client slot, even if poisoned (for wipe, which must work regardless).
    fn slot(&self) -> MutexGuard<'_, Option<Client>> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Crypto-shreds the data directory if the account was revoked and the configuration
    /// says `shred` (`Client::must_shred`): the client is taken out, so every later call fails
    /// with `wiped`. Returns whether it did. (The pushers cannot be removed first: the token
    /// is revoked; the homeserver drops a revoked device's pushers itself.)
    pub(crate) fn shred_if_revoked(&self, binder: &JavaKeyBinder) -> Result<bool, BridgeError> {
        let mut slot = self.slot();
        if !slot.as_ref().is_some_and(Client::must_shred) {
            return Ok(false);
        }
        let Some(client) = slot.take() else {
            return Ok(false);
        };
        drop(slot);
        match &self.runtime {
            Some(runtime) => {
                let _entered = runtime.enter();
                client.wipe(binder)?;
            }
            None => client.wipe(binder)?,
        }
        tracing::warn!("account revoked: data directory shredded");
        Ok(true)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(runtime) = self.runtime.take() {
            {
                // The transport's connection pool belongs to this runtime: drop it inside.
                let _entered = runtime.enter();
                drop(client);
            }
            runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
        }
    }
}

/// The object behind a client handle.
pub(crate) struct ClientHandle {
    core: Arc<Core>,
    /// Shared with the sync thread, which shreds a revoked account's data at once.
    binder: Arc<JavaKeyBinder>,
    data_dir: PathBuf,
    sync: Mutex<Option<SyncThread>>,
    delivered_security_event: Arc<AtomicI64>,
}

impl HandleType for ClientHandle {
    /// "TCHSCLNT".
    const MAGIC: u64 = 0x5443_4853_434C_4E54;
}

impl ClientHandle {
    /// Builds the runtime and opens the client (creating the vault and database on first
    /// use, restoring the saved session).
    pub(crate) fn open(
        config: Config,
        data_dir: &Path,
        binder: JavaKeyBinder,
    ) -> Result<Self, BridgeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_WORKERS)
            .thread_name("tchap-secure-rt")
            .enable_all()
            .build()
            .map_err(BridgeError::Thread)?;
        let client = {
            let _entered = runtime.enter();
            Client::open(config, data_dir, &binder)?
        };
        tracing::info!(binder = %tchap_secure_hsm::KeyVault::describe(&binder), "client handle opened");
        Ok(Self {
            core: Arc::new(Core {
                client: Mutex::new(Some(client)),
                runtime: Some(runtime),
            }),
            binder: Arc::new(binder),
            data_dir: data_dir.to_owned(),
            sync: Mutex::new(None),
            delivered_security_event: Arc::new(AtomicI64::new(0)),
        })
    }

    /// The runtime and client.
    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    fn sync_slot(&self) -> MutexGuard<'_, Option<SyncThread>> {
        // The slot holds no invariant a panic could break.
        self.sync.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the sync thread in `mode` with `listener` (at most one at a time; a thread that
    /// ended on its own, after a fatal error, is reaped and replaced).
    pub(crate) fn start_sync(
        &self,
        env: &mut Env<'_>,
        listener: &JObject<'_>,
        mode: SyncMode,
    ) -> Result<(), BridgeError> {
        if listener.is_null() {
            return Err(BridgeError::NullArgument("listener"));
        }
        // Probe the client now, so a wiped or poisoned client fails this call, not the thread.
        self.core.with_client(|_, _| Ok(()))?;
        let mut slot = self.sync_slot();
        match slot.take() {
            Some(running) if !running.is_finished() => {
                *slot = Some(running);
                return Err(BridgeError::SyncRunning);
            }
            Some(finished) => finished.stop(),
            None => {}
        }
        let vm = env.get_java_vm()?;
        let listener = env.new_global_ref(listener)?;
        *slot = Some(SyncThread::spawn(
            vm,
            Arc::clone(&self.core),
            listener,
            Arc::clone(&self.delivered_security_event),
            mode,
            Arc::clone(&self.binder),
        )?);
        Ok(())
    }

    /// Tells the sync thread, if any, that the network is back (it ends a back-off at once;
    /// a thread long-polling is left alone). Without a sync thread, nothing to do.
    pub(crate) fn network_available(&self) {
        if let Some(thread) = self.sync_slot().as_ref() {
            thread.network_available();
        }
    }

    /// Stops the sync thread, if any, and waits for it (unless called from one of its own
    /// callbacks: it cannot wait for itself, and ends as soon as that callback returns).
    pub(crate) fn stop_sync(&self) {
        let running = self.sync_slot().take();
        if let Some(thread) = running {
            thread.stop();
        }
    }

    /// Crypto-shreds the data directory: stops the sync, takes the client out and wipes it
    /// through the key binder. A second call (or one after a failed wipe) wipes the directory
    /// without the client, which also works when the vault no longer opens.
    /// Crypto-shreds the data directory, after removing this device's pushers from the
    /// homeserver if that takes less than [`PUSHER_REMOVAL_BEFORE_WIPE`].
    pub(crate) fn wipe(&self) -> Result<(), BridgeError> {
        self.stop_sync();
        let client = self.core.slot().take();
        match client {
            Some(mut client) => match &self.core.runtime {
                Some(runtime) => {
                    let _entered = runtime.enter();
                    runtime.block_on(client.unregister_pushers_within(PUSHER_REMOVAL_BEFORE_WIPE));
                    client.wipe(&*self.binder)?;
                }
                None => client.wipe(&*self.binder)?,
            },
            None => tchap_secure_core::wipe_data_dir(&self.data_dir, &*self.binder)?,
        }
        Ok(())
    }
}
