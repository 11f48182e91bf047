//! The background sync: one native thread per client, attached to the JVM for its whole life,
//! calling the Java `Listener`.
//!
//! The loop, until `stopSync` raises the stop flag:
//! 1. prepare the request under the client lock, long-poll (2 s) without it, then apply the
//!    answer under the lock (`prepare_sync` / `fetch` / `apply_sync`); then fill the gaps it
//!    revealed in rounds (`prepare_gap_pages` under the lock, the pages fetched without it,
//!    `apply_gap_pages` under it); read the security journal, unlock — the lock is never held
//!    while Java code runs, nor during a network wait;
//! 2. `onMessage` for every message the round decrypted (state `decrypted`);
//! 3. `onNotificationRow` for every message or invitation of the round that the account's push
//!    rules, evaluated here on the decrypted event, say notifies (`SyncSummary::notifications`,
//!    in order), with the row of `Native.notification`; `SecureClient`'s listener turns it into
//!    a `Notification` for `Listener.onNotification` — what the app shows as a local
//!    notification when it runs without a push distributor (persistent mode). After the
//!    round's `onMessage`s: a notification's message is already in the store;
//! 4. `onVerificationRow` for every verification flow the round changed
//!    (`SyncSummary::verifications`: a request received, emoji to compare, done, cancelled),
//!    with the row of `Native.verification`; `SecureClient`'s listener turns it into a
//!    `Verification` for `Listener.onVerification`;
//! 5. `onSendState` for every state change of our outgoing messages the round reported
//!    (`SyncSummary::outgoing`: `sent` with the event id, or `failed` with the reason);
//! 6. `onSecurityEvent` for every journal entry newer than the last one delivered;
//! 7. on a network failure (`Error::is_network`): `onSyncState("retrying", code)`, then back off
//!    1 s, 2 s, … 30 s (plus up to 250 ms of jitter), interrupted at once by `stopSync`; the next
//!    successful round reports `"running"` again;
//! 8. on any other failure: `onSyncState("failed", code)` and the thread ends (a later
//!    `startSync` may start a new one).
//!
//! `onSyncState("running", null)` is sent once at start, `"stopped"` when the loop ends on the
//! stop flag. `stopSync` waits for the thread, so no callback runs after it returns; the wait is
//! at most one round in flight (its request is bounded by the transport's timeouts) — the round
//! itself is not cancelled, because a half-done round is only as safe as a crash.
//!
//! Listener methods are looked up on the listener object's own class (`GetObjectClass`, inside
//! the checked `Env::call_method`), which works from this thread whatever the class loader. An
//! exception thrown by the listener is cleared, logged (the callback's name only) and ignored.
//! Each callback runs in its own JNI local frame, so the thread never accumulates local
//! references.
//!
//! Daemon attachment: jni 0.22 removed `attach_current_thread_as_daemon` (a daemon thread can
//! still run JNI code while `DestroyJavaVM` tears the VM down, which jni-rs cannot make sound).
//! The thread is therefore an ordinary attached thread: a JVM that exits through the end of
//! `main` waits for it, i.e. for `stopSync`/`clientClose`. Android never destroys its VM, and
//! `System.exit` does not wait, so only a host program that forgets `close()` is affected.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher as _, Hasher as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jni::objects::{Global, JObject, JValue};
use jni::strings::JNIStr;
use jni::{AttachConfig, Env, JavaVM, jni_sig, jni_str};
use tchap_secure_core::client::verification::VerificationInfo;
use tchap_secure_core::store::{SecurityEvent, TimelineEvent};
use tchap_secure_core::{Notification, OutgoingUpdate};

use crate::client::Core;
use crate::convert;
use crate::error::BridgeError;

/// The long-poll of each round.
const LONG_POLL: Duration = Duration::from_secs(2);
/// First and last back-off after a network failure.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Local references one callback needs (its strings), with margin.
const CALLBACK_FRAME_CAPACITY: usize = 16;
/// Thread name, for the OS (the JVM gets the same, in `run`).
const THREAD_NAME: &str = "tchap-secure-sync";

/// A running sync thread.
pub(crate) struct SyncThread {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl SyncThread {
    /// Starts the thread. It owns `listener` and releases it (on itself, attached) at the end.
    pub(crate) fn spawn(
        vm: JavaVM,
        core: Arc<Core>,
        listener: Global<JObject<'static>>,
        delivered_security_event: Arc<AtomicI64>,
    ) -> Result<Self, BridgeError> {
        let stop = Arc::new(AtomicBool::new(false));
        let state = SyncLoop {
            core,
            stop: Arc::clone(&stop),
            delivered_security_event,
        };
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || run(&vm, state, listener))
            .map_err(BridgeError::Thread)?;
        Ok(Self { stop, thread })
    }

    /// Whether the thread has ended (after a fatal error).
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Raises the stop flag and waits for the thread — unless this *is* the sync thread (a
    /// listener callback closing its client): then it ends when the callback returns.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        if self.thread.thread().id() == std::thread::current().id() {
            return;
        }
        if self.thread.join().is_err() {
            tracing::error!("the sync thread panicked");
        }
    }
}

fn run(vm: &JavaVM, state: SyncLoop, listener: Global<JObject<'static>>) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        vm.attach_current_thread_with_config(
            || AttachConfig::new().thread_name(jni_str!("tchap-secure-sync")),
            Some(CALLBACK_FRAME_CAPACITY),
            |env| -> jni::errors::Result<()> {
                // Moved in, so the global reference is deleted while the thread is attached.
                let listener = listener;
                state.run(env, &listener);
                Ok(())
            },
        )
    }));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "sync thread: JVM attachment failed"),
        Err(_) => tracing::error!("sync thread panicked"),
    }
    if let Err(error) = vm.detach_current_thread() {
        tracing::warn!(%error, "sync thread: detach failed");
    }
}

struct SyncLoop {
    core: Arc<Core>,
    stop: Arc<AtomicBool>,
    delivered_security_event: Arc<AtomicI64>,
}

/// What one round brings back for the listener.
struct Round {
    messages: Vec<TimelineEvent>,
    notifications: Vec<Notification>,
    verifications: Vec<VerificationInfo>,
    outgoing: Vec<OutgoingUpdate>,
    security_events: Vec<SecurityEvent>,
}

impl SyncLoop {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn run(&self, env: &mut Env<'_>, listener: &JObject<'_>) {
        sync_state(env, listener, "running", None);
        let mut backoff = BACKOFF_MIN;
        let mut retrying = false;
        while !self.stopped() {
            match self.round() {
                Ok(round) => {
                    if retrying {
                        retrying = false;
                        backoff = BACKOFF_MIN;
                        sync_state(env, listener, "running", None);
                    }
                    self.deliver(env, listener, &round);
                }
                Err(BridgeError::Core(error)) if error.is_network() => {
                    tracing::warn!(code = error.code(), ?backoff, "sync failed; retrying");
                    sync_state(env, listener, "retrying", Some(error.code()));
                    retrying = true;
                    self.sleep(backoff + jitter());
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(error) => {
                    tracing::error!(code = error.code(), "sync failed; stopping");
                    sync_state(env, listener, "failed", Some(error.code()));
                    return;
                }
            }
        }
        sync_state(env, listener, "stopped", None);
    }

    /// One sync round. The client lock is held to prepare the request and to apply the
    /// answer, not during the long-poll: calls from Java threads (send, rooms…) are not held
    /// up by a waiting sync.
    fn round(&self) -> Result<Round, BridgeError> {
        let core = &self.core;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let pending = core.with_client(|client, _| Ok(client.prepare_sync(LONG_POLL)?))?;
            let fetched = core.runtime()?.block_on(pending.fetch())?;
            let mut summary = core
                .with_client(|client, runtime| Ok(runtime.block_on(client.apply_sync(fetched))?))?;
            // The gaps the sync revealed, a round of pages at a time: the lock is held to
            // apply each round, not while its pages are fetched (a long catch-up does not hold
            // up a send from a Java thread).
            while let Some(pending) =
                core.with_client(|client, _| Ok(client.prepare_gap_pages()?))?
            {
                let fetched = core.runtime()?.block_on(pending.fetch());
                let more = core
                    .with_client(|client, _| Ok(client.apply_gap_pages(fetched, &mut summary)?))?;
                if !more || self.stopped() {
                    break;
                }
            }
            core.with_client(|client, _| {
                let security_events = client
                    .store()
                    .security_events()
                    .map_err(tchap_secure_core::Error::from)?;
                Ok(Round {
                    messages: summary.messages,
                    notifications: summary.notifications,
                    verifications: summary.verifications,
                    outgoing: summary.outgoing,
                    security_events,
                })
            })
        }));
        result.unwrap_or_else(|payload| {
            Err(BridgeError::Panic(crate::funnel::panic_message(&*payload)))
        })
    }

    fn deliver(&self, env: &mut Env<'_>, listener: &JObject<'_>, round: &Round) {
        for m in round.messages.iter().filter(|m| m.state == "decrypted") {
            callback(env, listener, OnMessage(m));
        }
        for n in &round.notifications {
            callback(env, listener, OnNotificationRow(n));
        }
        for v in &round.verifications {
            callback(env, listener, OnVerificationRow(v));
        }
        for update in &round.outgoing {
            callback(env, listener, OnSendState(update));
        }
        let last = self.delivered_security_event.load(Ordering::Acquire);
        for e in round.security_events.iter().filter(|e| e.id > last) {
            callback(env, listener, OnSecurityEvent(e));
            self.delivered_security_event
                .fetch_max(e.id, Ordering::AcqRel);
        }
    }

    /// Sleeps for `duration`, or less if the stop flag is raised (`stop` unparks this thread).
    fn sleep(&self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while !self.stopped() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
    }
}

/// Up to 250 ms. Each `RandomState` has fresh random SipHash keys, so the hash of the empty
/// input is a new pseudo-random value each time (not a security property: it only spreads
/// reconnections).
fn jitter() -> Duration {
    Duration::from_millis(RandomState::new().build_hasher().finish() % 250)
}

/// A listener call: its name, signature and arguments.
trait Callback {
    const NAME: &'static JNIStr;
    const LOG_NAME: &'static str;
    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError>;
}

struct OnMessage<'a>(&'a TimelineEvent);
struct OnNotificationRow<'a>(&'a Notification);
struct OnVerificationRow<'a>(&'a VerificationInfo);
struct OnSendState<'a>(&'a OutgoingUpdate);
struct OnSecurityEvent<'a>(&'a SecurityEvent);
struct OnSyncState<'a>(&'a str, Option<&'a str>);

impl Callback for OnMessage<'_> {
    const NAME: &'static JNIStr = jni_str!("onMessage");
    const LOG_NAME: &'static str = "onMessage";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        let m = self.0;
        let room_id = convert::java_string(env, &m.room_id)?;
        let event_id = convert::java_string(env, &m.event_id)?;
        let sender = convert::java_string(env, &m.sender)?;
        let display_name = convert::optional_java_string(env, m.sender_display_name.as_deref())?;
        let body = convert::optional_java_string(env, m.body.as_deref())?;
        let trust = convert::optional_java_string(env, m.trust.as_deref())?;
        env.call_method(
            listener,
            Self::NAME,
            jni_sig!("(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V"),
            &[
                JValue::Object(&room_id),
                JValue::Object(&event_id),
                JValue::Object(&sender),
                JValue::Object(&display_name),
                JValue::Object(&body),
                JValue::Object(&trust),
            ],
        )?;
        Ok(())
    }
}

impl Callback for OnNotificationRow<'_> {
    const NAME: &'static JNIStr = jni_str!("onNotificationRow");
    const LOG_NAME: &'static str = "onNotificationRow";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        let row = convert::row(env, &crate::native::notification_row(self.0))?;
        env.call_method(
            listener,
            Self::NAME,
            jni_sig!("([Ljava/lang/String;)V"),
            &[JValue::Object(&row)],
        )?;
        Ok(())
    }
}

impl Callback for OnVerificationRow<'_> {
    const NAME: &'static JNIStr = jni_str!("onVerificationRow");
    const LOG_NAME: &'static str = "onVerificationRow";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        let row = convert::row(env, &crate::native::verification_row(self.0))?;
        env.call_method(
            listener,
            Self::NAME,
            jni_sig!("([Ljava/lang/String;)V"),
            &[JValue::Object(&row)],
        )?;
        Ok(())
    }
}

impl Callback for OnSendState<'_> {
    const NAME: &'static JNIStr = jni_str!("onSendState");
    const LOG_NAME: &'static str = "onSendState";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        let u = self.0;
        let room_id = convert::java_string(env, &u.room_id)?;
        let local_id = convert::java_string(env, &u.local_id)?;
        let state = convert::java_string(env, &u.state)?;
        let event_id = convert::optional_java_string(env, u.event_id.as_deref())?;
        let error = convert::optional_java_string(env, u.error.as_deref())?;
        env.call_method(
            listener,
            Self::NAME,
            jni_sig!("(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V"),
            &[
                JValue::Object(&room_id),
                JValue::Object(&local_id),
                JValue::Object(&state),
                JValue::Object(&event_id),
                JValue::Object(&error),
            ],
        )?;
        Ok(())
    }
}

impl Callback for OnSecurityEvent<'_> {
    const NAME: &'static JNIStr = jni_str!("onSecurityEvent");
    const LOG_NAME: &'static str = "onSecurityEvent";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        let e = self.0;
        let kind = convert::java_string(env, &e.kind)?;
        let room_id = convert::optional_java_string(env, e.room_id.as_deref())?;
        let user_id = convert::optional_java_string(env, e.user_id.as_deref())?;
        let detail = convert::java_string(env, &e.detail)?;
        env.call_method(
            listener,
            Self::NAME,
            jni_sig!("(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V"),
            &[
                JValue::Object(&kind),
                JValue::Object(&room_id),
                JValue::Object(&user_id),
                JValue::Object(&detail),
            ],
        )?;
        Ok(())
    }
}

impl Callback for OnSyncState<'_> {
    const NAME: &'static JNIStr = jni_str!("onSyncState");
    const LOG_NAME: &'static str = "onSyncState";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        let state = convert::java_string(env, self.0)?;
        let code = convert::optional_java_string(env, self.1)?;
        env.call_method(
            listener,
            Self::NAME,
            jni_sig!("(Ljava/lang/String;Ljava/lang/String;)V"),
            &[JValue::Object(&state), JValue::Object(&code)],
        )?;
        Ok(())
    }
}

fn sync_state(env: &mut Env<'_>, listener: &JObject<'_>, state: &str, code: Option<&str>) {
    callback(env, listener, OnSyncState(state, code));
}

/// Runs one callback in its own local frame; a listener exception is cleared and logged.
fn callback<C: Callback>(env: &mut Env<'_>, listener: &JObject<'_>, c: C) {
    let result = env.with_local_frame(CALLBACK_FRAME_CAPACITY, |env| c.call(env, listener));
    if let Err(error) = result {
        if env.exception_check() {
            env.exception_clear();
            tracing::warn!(callback = C::LOG_NAME, "the listener threw; ignored");
        } else {
            tracing::warn!(
                callback = C::LOG_NAME,
                code = error.code(),
                "listener call failed"
            );
        }
    }
}
