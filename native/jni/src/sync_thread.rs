//! The background sync: one native thread per client, attached to the JVM for its whole life,
//! calling the Java `Listener`.
//!
//! The loop, until `stopSync` raises the stop signal:
//! 1. prepare the request under the client lock, long-poll without it (raced against the stop
//!    signal), then apply the answer under the lock (`prepare_sync` / `fetch` / `apply_sync`);
//!    then fill the gaps it revealed in rounds (`prepare_gap_pages` under the lock, the pages
//!    fetched without it, `apply_gap_pages` under it); read the security journal, unlock — the
//!    lock is never held while Java code runs, nor during a network wait;
//! 2. `onMessage` for every message the round decrypted (state `decrypted`);
//! 3. `onEditedRow` for every message whose shown text a valid edit changed
//!    (`SyncSummary::edits`: the message as it now is, with the row of `Native.messages`; a
//!    message new in this round is only in `onMessage`, already edited), then `onRedacted`
//!    for every event the round erased (`SyncSummary::redactions`); `SecureClient`'s listener
//!    turns the row into a `Message` for `Listener.onEdited`. After the round's `onMessage`s,
//!    like the notifications: the store already shows the new text, or the tombstone. Then
//!    `onExpired(count)` if the purge after the round erased messages that outlived their
//!    room's lifetime (`SyncSummary::expired` > 0: the app reloads the rooms it shows); the
//!    core cuts a long poll short at the next message's deadline, so a running sync purges
//!    within a second or so of it;
//! 4. `onNotificationRow` for every message or invitation of the round that the account's push
//!    rules, evaluated here on the decrypted event, say notifies (`SyncSummary::notifications`,
//!    in order), with the row of `Native.notification`; `SecureClient`'s listener turns it into
//!    a `Notification` for `Listener.onNotification` — what the app shows as a local
//!    notification when it runs without a push distributor (persistent mode). After the
//!    round's `onMessage`s: a notification's message is already in the store;
//! 5. `onVerificationRow` for every verification flow the round changed
//!    (`SyncSummary::verifications`: a request received, emoji to compare, done, cancelled),
//!    with the row of `Native.verification`; `SecureClient`'s listener turns it into a
//!    `Verification` for `Listener.onVerification`;
//! 6. `onSendState` for every state change of our outgoing messages the round reported
//!    (`SyncSummary::outgoing`: `sent` with the event id, or `failed` with the reason);
//! 7. `onSecurityEvent` for every journal entry newer than the last one delivered;
//! 8. on a network failure (`Error::is_network`): `onSyncState("retrying", code)`, then back off
//!    1 s, 2 s, 4 s, … up to the mode's maximum, plus up to a quarter of it of jitter (so that
//!    the clients a server outage stopped together do not all come back in the same second);
//!    the back-off ends at once on `stopSync`, and on `networkAvailable` (a retry now, and the
//!    back-off starts again from 1 s). The next successful round reports `"running"` again;
//! 9. on any other failure: `onSyncState("failed", code)` and the thread ends (a later
//!    `startSync` may start a new one). An expired account or a revoked token is judged by
//!    the core first (`Client::judge_failure`: the client locks, `account_expired` or
//!    `account_revoked`); a revoked account under `on_account_revoked: shred` is crypto-shredded
//!    by this thread before the app is told, with the code `account_shredded` (the handle then
//!    answers `wiped`).
//!
//! ## Modes
//!
//! | [`SyncMode`] | long poll | back-off | for |
//! |---|---|---|---|
//! | `interactive` | 2 s | 1 s … 30 s | the app on screen |
//! | `persistent` | 60 s | 1 s … 5 min | no push distributor: a foreground service syncs |
//!
//! A long poll returns as soon as the server has something, so its length does not delay
//! messages: it sets how often an idle client asks. Interactive keeps 2 s rounds because each
//! round also does the client's housekeeping (the outbox of queued messages flushed, one-time
//! keys topped up, wedged Olm channels recovered): on screen, a message queued while offline
//! goes out within seconds, whatever the app calls. Persistent trades that for the battery: one
//! request a minute when idle (half as many as matrix-sdk's default 30 s loop), each waking the
//! radio once, over a connection the transport keeps alive (TCP keep-alive under the carriers'
//! NAT timeouts, pooled connections kept longer than a poll: `net::transport`). While the
//! network is down, a failing attempt costs a radio wake-up for nothing, so the back-off goes
//! up to 5 min; `networkAvailable` — which the app calls from Android's `ConnectivityManager`
//! callback — ends it the moment the network returns, so the long back-off does not delay the
//! resumption. A `networkAvailable` while a round is in flight changes nothing (the round is
//! already using the network; if it fails, it is retried at once). A poll on a connection that
//! died with the old network fails on its own (Android normally closes the sockets of a network
//! that went away; otherwise TCP keep-alive finds the dead path within 55 s) and enters the
//! back-off like any failure. Switching modes is `stopSync` then `startSync`: both return at
//! once.
//!
//! ## Stopping
//!
//! `onSyncState("running", null)` is sent once at start, `"stopped"` when the loop ends on the
//! stop signal. `stopSync` waits for the thread, so no callback runs after it returns. It does
//! not wait for the long poll: the `GET /sync` in flight is raced against the stop signal and
//! dropped (safe: nothing of a sync answer is applied before `apply_sync`, and the next sync
//! asks from the same token), so `stopSync` returns at once in the middle of a 60 s poll or a
//! back-off. An answer that arrived is applied completely — `apply_sync`, and the gap-page
//! fetch in flight, are never cancelled (the gap fill stops between its rounds, as the core
//! allows) — because a half-done round is only as safe as a crash; the wait is then that
//! round's, bounded by the transport's timeouts.
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
use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use jni::objects::{Global, JObject, JValue};
use jni::strings::JNIStr;
use jni::sys::jint;
use jni::{AttachConfig, Env, JavaVM, jni_sig, jni_str};
use tchap_secure_core::client::relations::Redaction;
use tchap_secure_core::client::verification::VerificationInfo;
use tchap_secure_core::store::{SecurityEvent, TimelineEvent};
use tchap_secure_core::{Notification, OutgoingUpdate};
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::client::Core;
use crate::convert;
use crate::error::BridgeError;
use crate::key_binder::JavaKeyBinder;

/// First back-off after a network failure, in every mode (and again after `networkAvailable`).
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Local references one callback needs (its strings), with margin.
const CALLBACK_FRAME_CAPACITY: usize = 16;
/// Thread name, for the OS (the JVM gets the same, in `run`).
const THREAD_NAME: &str = "tchap-secure-sync";

/// How the sync thread polls and backs off (module doc, "Modes"); chosen at `startSync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncMode {
    /// The app on screen: 2 s long polls, back-off up to 30 s.
    Interactive,
    /// No push distributor: 60 s long polls, back-off up to 5 min.
    Persistent,
}

impl SyncMode {
    /// Both modes, for the tests.
    #[cfg(test)]
    const ALL: [Self; 2] = [Self::Interactive, Self::Persistent];

    /// The mode named by `SyncMode.wire` in Java.
    pub(crate) fn from_wire(wire: &str) -> Result<Self, BridgeError> {
        match wire {
            "interactive" => Ok(Self::Interactive),
            "persistent" => Ok(Self::Persistent),
            _ => Err(BridgeError::InvalidArgument {
                what: "mode",
                why: "not a sync mode",
            }),
        }
    }

    /// The server-side timeout of each round's `GET /sync`.
    fn long_poll(self) -> Duration {
        match self {
            Self::Interactive => Duration::from_secs(2),
            Self::Persistent => Duration::from_secs(60),
        }
    }

    /// The longest back-off while the network is down.
    fn backoff_max(self) -> Duration {
        match self {
            Self::Interactive => Duration::from_secs(30),
            Self::Persistent => Duration::from_secs(5 * 60),
        }
    }

    /// The back-off after `current`: doubled, up to the mode's maximum.
    fn next_backoff(self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.backoff_max())
    }
}

/// What other threads tell the sync thread. Watch channels, so that the thread can wait for
/// them on the runtime, raced against the long poll or the back-off; the senders live here, in
/// an `Arc` the loop shares, so they outlive every receiver.
struct Signals {
    /// Raised once, by `stop`.
    stop: watch::Sender<bool>,
    /// Sent by `networkAvailable`; each round subscribes anew, so only a signal sent during
    /// the round or its back-off counts.
    network: watch::Sender<()>,
}

/// Why a back-off ended.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// Its time was up.
    Elapsed,
    /// `networkAvailable` was called during the failed round or the back-off.
    NetworkAvailable,
    /// `stopSync`.
    Stopped,
}

impl Signals {
    fn new() -> Self {
        Self {
            stop: watch::Sender::new(false),
            network: watch::Sender::new(()),
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs `future` on `runtime` until it completes (`Some`) or the stop signal is raised
    /// (`None`: the future is dropped, whatever it was doing).
    fn unless_stopped<F: Future>(&self, runtime: &Runtime, future: F) -> Option<F::Output> {
        let mut stop = self.stop.subscribe();
        runtime.block_on(async {
            tokio::select! {
                output = future => Some(output),
                // A closed channel cannot happen (the sender lives in `self`); the pattern
                // would then disable this branch rather than stop.
                Ok(_) = stop.wait_for(|stopped| *stopped) => None,
            }
        })
    }

    /// Waits `duration`, or less: until the stop signal, or a network signal sent since
    /// `network` was subscribed (at the start of the round that failed).
    fn back_off(
        &self,
        runtime: &Runtime,
        duration: Duration,
        mut network: watch::Receiver<()>,
    ) -> Wake {
        let mut stop = self.stop.subscribe();
        runtime.block_on(async {
            tokio::select! {
                biased;
                Ok(_) = stop.wait_for(|stopped| *stopped) => Wake::Stopped,
                Ok(()) = network.changed() => Wake::NetworkAvailable,
                () = tokio::time::sleep(duration) => Wake::Elapsed,
            }
        })
    }
}

/// A running sync thread.
pub(crate) struct SyncThread {
    signals: Arc<Signals>,
    thread: JoinHandle<()>,
}

impl SyncThread {
    /// Starts the thread. It owns `listener` and releases it (on itself, attached) at the end.
    pub(crate) fn spawn(
        vm: JavaVM,
        core: Arc<Core>,
        listener: Global<JObject<'static>>,
        delivered_security_event: Arc<AtomicI64>,
        mode: SyncMode,
        binder: Arc<JavaKeyBinder>,
    ) -> Result<Self, BridgeError> {
        let signals = Arc::new(Signals::new());
        let state = SyncLoop {
            core,
            signals: Arc::clone(&signals),
            delivered_security_event,
            mode,
            binder,
        };
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || run(&vm, state, listener))
            .map_err(BridgeError::Thread)?;
        Ok(Self { signals, thread })
    }

    /// Whether the thread has ended (after a fatal error).
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// The network is back: a back-off in progress ends now and starts again from its minimum
    /// (a long poll in progress is left alone).
    pub(crate) fn network_available(&self) {
        self.signals.network.send_replace(());
    }

    /// Raises the stop signal and waits for the thread — unless this *is* the sync thread (a
    /// listener callback closing its client): then it ends when the callback returns. A long
    /// poll or a back-off ends at once; a round being applied is finished first.
    pub(crate) fn stop(self) {
        self.signals.stop.send_replace(true);
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
    signals: Arc<Signals>,
    delivered_security_event: Arc<AtomicI64>,
    mode: SyncMode,
    /// For the crypto-shred of a revoked account (`Core::shred_if_revoked`).
    binder: Arc<JavaKeyBinder>,
}

/// What one round brings back for the listener.
struct Round {
    messages: Vec<TimelineEvent>,
    edits: Vec<TimelineEvent>,
    redactions: Vec<Redaction>,
    /// Messages the purge after the round erased (their lifetime was over).
    expired: usize,
    notifications: Vec<Notification>,
    verifications: Vec<VerificationInfo>,
    outgoing: Vec<OutgoingUpdate>,
    security_events: Vec<SecurityEvent>,
}

impl SyncLoop {
    fn stopped(&self) -> bool {
        self.signals.stopped()
    }

    fn run(&self, env: &mut Env<'_>, listener: &JObject<'_>) {
        let runtime = match self.core.runtime() {
            Ok(runtime) => runtime,
            Err(error) => {
                sync_state(env, listener, "failed", Some(error.code()));
                return;
            }
        };
        sync_state(env, listener, "running", None);
        let mut backoff = BACKOFF_MIN;
        let mut retrying = false;
        while !self.stopped() {
            // A `networkAvailable` before this round is old news: the round tries the network.
            let network = self.signals.network.subscribe();
            match self.round(runtime) {
                Ok(None) => break,
                Ok(Some(round)) => {
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
                    match self
                        .signals
                        .back_off(runtime, backoff + jitter(backoff), network)
                    {
                        Wake::Elapsed => backoff = self.mode.next_backoff(backoff),
                        Wake::NetworkAvailable => {
                            tracing::info!("network available; retrying now");
                            backoff = BACKOFF_MIN;
                        }
                        Wake::Stopped => break,
                    }
                }
                Err(error) => {
                    tracing::error!(code = error.code(), "sync failed; stopping");
                    // A revoked account under `on_account_revoked: shred`: nothing readable
                    // is left behind, now, before the app is told.
                    let code = match self.core.shred_if_revoked(&self.binder) {
                        Ok(true) => "account_shredded",
                        Ok(false) => error.code(),
                        Err(e) => {
                            tracing::error!(code = e.code(), "shred of a revoked account failed");
                            e.code()
                        }
                    };
                    sync_state(env, listener, "failed", Some(code));
                    return;
                }
            }
        }
        sync_state(env, listener, "stopped", None);
    }

    /// One sync round, or `None` if the stop signal ended its long poll (nothing was applied).
    /// The client lock is held to prepare the request and to apply the answer, not during the
    /// long-poll: calls from Java threads (send, rooms…) are not held up by a waiting sync.
    fn round(&self, runtime: &Runtime) -> Result<Option<Round>, BridgeError> {
        let core = &self.core;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let long_poll = self.mode.long_poll();
            let pending = core.with_client(|client, _| Ok(client.prepare_sync(long_poll)?))?;
            // Only the GET is raced against the stop signal: what it fetched is applied below
            // or not at all.
            let Some(fetched) = self.signals.unless_stopped(runtime, pending.fetch()) else {
                return Ok(None);
            };
            // An expired account or a revoked token locks the client (`judge_failure`).
            let fetched = match fetched {
                Ok(fetched) => fetched,
                Err(e) => {
                    return Err(core
                        .with_client(|client, _| Ok(client.judge_failure(e)))?
                        .into());
                }
            };
            let mut summary = core.with_client(|client, runtime| {
                runtime
                    .block_on(client.apply_sync(fetched))
                    .map_err(|e| client.judge_failure(e).into())
            })?;
            // The gaps the sync revealed, a round of pages at a time: the lock is held to
            // apply each round, not while its pages are fetched (a long catch-up does not hold
            // up a send from a Java thread).
            while let Some(pending) =
                core.with_client(|client, _| Ok(client.prepare_gap_pages()?))?
            {
                let fetched = runtime.block_on(pending.fetch());
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
                Ok(Some(Round {
                    messages: summary.messages,
                    edits: summary.edits,
                    redactions: summary.redactions,
                    expired: summary.expired,
                    notifications: summary.notifications,
                    verifications: summary.verifications,
                    outgoing: summary.outgoing,
                    security_events,
                }))
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
        for m in &round.edits {
            callback(env, listener, OnEditedRow(m));
        }
        for r in &round.redactions {
            callback(env, listener, OnRedacted(r));
        }
        if round.expired > 0 {
            callback(env, listener, OnExpired(round.expired));
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
}

/// Up to a quarter of `backoff` (250 ms for the first). Each `RandomState` has fresh random
/// SipHash keys, so the hash of the empty input is a new pseudo-random value each time (not a
/// security property: it only spreads reconnections).
fn jitter(backoff: Duration) -> Duration {
    let bound = u64::try_from((backoff / 4).as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(RandomState::new().build_hasher().finish() % bound)
}

/// A listener call: its name, signature and arguments.
trait Callback {
    const NAME: &'static JNIStr;
    const LOG_NAME: &'static str;
    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError>;
}

struct OnMessage<'a>(&'a TimelineEvent);
struct OnEditedRow<'a>(&'a TimelineEvent);
struct OnRedacted<'a>(&'a Redaction);
struct OnExpired(usize);
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

impl Callback for OnEditedRow<'_> {
    const NAME: &'static JNIStr = jni_str!("onEditedRow");
    const LOG_NAME: &'static str = "onEditedRow";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        let room_id = convert::java_string(env, &self.0.room_id)?;
        let row = convert::row(env, &crate::native::message_row(self.0))?;
        env.call_method(
            listener,
            Self::NAME,
            jni_sig!("(Ljava/lang/String;[Ljava/lang/String;)V"),
            &[JValue::Object(&room_id), JValue::Object(&row)],
        )?;
        Ok(())
    }
}

impl Callback for OnRedacted<'_> {
    const NAME: &'static JNIStr = jni_str!("onRedacted");
    const LOG_NAME: &'static str = "onRedacted";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        let Redaction {
            room_id,
            event_id,
            redacted_by,
        } = self.0;
        let room_id = convert::java_string(env, room_id)?;
        let event_id = convert::java_string(env, event_id)?;
        let redacted_by = convert::java_string(env, redacted_by)?;
        env.call_method(
            listener,
            Self::NAME,
            jni_sig!("(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V"),
            &[
                JValue::Object(&room_id),
                JValue::Object(&event_id),
                JValue::Object(&redacted_by),
            ],
        )?;
        Ok(())
    }
}

impl Callback for OnExpired {
    const NAME: &'static JNIStr = jni_str!("onExpired");
    const LOG_NAME: &'static str = "onExpired";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        let count = jint::try_from(self.0).unwrap_or(jint::MAX);
        env.call_method(
            listener,
            Self::NAME,
            jni_sig!("(I)V"),
            &[JValue::Int(count)],
        )?;
        Ok(())
    }
}

impl Callback for OnNotificationRow<'_> {
    const NAME: &'static JNIStr = jni_str!("onNotificationRow");
    const LOG_NAME: &'static str = "onNotificationRow";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        call_with_row(
            env,
            listener,
            Self::NAME,
            &crate::native::notification_row(self.0),
        )
    }
}

impl Callback for OnVerificationRow<'_> {
    const NAME: &'static JNIStr = jni_str!("onVerificationRow");
    const LOG_NAME: &'static str = "onVerificationRow";

    fn call(&self, env: &mut Env<'_>, listener: &JObject<'_>) -> Result<(), BridgeError> {
        call_with_row(
            env,
            listener,
            Self::NAME,
            &crate::native::verification_row(self.0),
        )
    }
}

/// Calls the listener's `name(String[] row)`: the callbacks whose argument is one value class
/// the Java side builds from a row.
fn call_with_row(
    env: &mut Env<'_>,
    listener: &JObject<'_>,
    name: &JNIStr,
    row: &[Option<String>],
) -> Result<(), BridgeError> {
    let row = convert::row(env, row)?;
    env.call_method(
        listener,
        name,
        jni_sig!("([Ljava/lang/String;)V"),
        &[JValue::Object(&row)],
    )?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// `SyncMode`'s wire names, from `SyncMode.java`.
    fn java_wire_names() -> Vec<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../android/src/main/java/fr/gouv/tchap/secure/SyncMode.java"
        );
        let text = std::fs::read_to_string(path).unwrap();
        text.split("(\"")
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
            .collect()
    }

    #[test]
    fn the_java_modes_are_the_native_ones() {
        let names = java_wire_names();
        assert_eq!(names, ["interactive", "persistent"]);
        let modes: Vec<SyncMode> = names
            .iter()
            .map(|n| SyncMode::from_wire(n).unwrap())
            .collect();
        assert_eq!(modes, SyncMode::ALL);
        for wrong in ["", "PERSISTENT", "persistent ", "push"] {
            assert_eq!(
                SyncMode::from_wire(wrong).unwrap_err().code(),
                "invalid_argument"
            );
        }
    }

    /// The persistent long poll fits the transport's limits: its read timeout (which reqwest
    /// also applies to the wait for the status line) would otherwise end every idle poll in
    /// a network failure.
    #[test]
    fn every_long_poll_ends_before_the_transport_gives_up_on_it() {
        let read_timeout = tchap_secure_core::net::Limits::default().read_timeout;
        for mode in SyncMode::ALL {
            assert!(
                mode.long_poll() + Duration::from_secs(10) <= read_timeout,
                "{mode:?}"
            );
        }
        assert_eq!(SyncMode::Persistent.long_poll(), Duration::from_secs(60));
        assert_eq!(SyncMode::Interactive.long_poll(), Duration::from_secs(2));
    }

    #[test]
    fn back_offs_double_up_to_the_mode_maximum() {
        let sequence = |mode: SyncMode| {
            let mut backoff = BACKOFF_MIN;
            let mut seen = vec![backoff.as_secs()];
            for _ in 0..12 {
                backoff = mode.next_backoff(backoff);
                seen.push(backoff.as_secs());
            }
            seen
        };
        assert_eq!(
            sequence(SyncMode::Interactive),
            [1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30, 30]
        );
        assert_eq!(
            sequence(SyncMode::Persistent),
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300]
        );
    }

    #[test]
    fn jitter_is_under_a_quarter_of_the_back_off() {
        for backoff in [BACKOFF_MIN, Duration::from_secs(300), Duration::ZERO] {
            for _ in 0..200 {
                let j = jitter(backoff);
                assert!(j <= backoff / 4, "{j:?} for {backoff:?}");
            }
        }
        // Not constant.
        let draws: std::collections::HashSet<Duration> =
            (0..50).map(|_| jitter(BACKOFF_MIN)).collect();
        assert!(draws.len() > 1);
    }

    /// Issue 17 item 3: a stop ends a long poll in flight at once (the future is dropped).
    #[test]
    fn a_stop_abandons_a_long_poll_at_once() {
        let rt = runtime();
        let signals = Arc::new(Signals::new());
        let stopper = {
            let signals = Arc::clone(&signals);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                signals.stop.send_replace(true);
            })
        };
        let started = Instant::now();
        let never = signals.unless_stopped(&rt, std::future::pending::<()>());
        assert_eq!(never, None);
        assert!(started.elapsed() < Duration::from_secs(5));
        stopper.join().unwrap();
        // Raised before the poll starts: it does not start waiting.
        assert_eq!(
            signals.unless_stopped(&rt, std::future::pending::<()>()),
            None
        );
    }

    #[test]
    fn an_answer_that_arrived_is_returned() {
        let rt = runtime();
        let signals = Signals::new();
        assert_eq!(signals.unless_stopped(&rt, async { 7 }), Some(7));
    }

    #[test]
    fn a_back_off_ends_on_network_available_or_stop_and_otherwise_elapses() {
        let rt = runtime();
        let long = Duration::from_secs(60);

        // Its time.
        let signals = Signals::new();
        let network = signals.network.subscribe();
        assert_eq!(
            signals.back_off(&rt, Duration::from_millis(20), network),
            Wake::Elapsed
        );

        // A network signal during the back-off.
        let signals = Arc::new(Signals::new());
        let network = signals.network.subscribe();
        let signaller = {
            let signals = Arc::clone(&signals);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                signals.network.send_replace(());
            })
        };
        let started = Instant::now();
        assert_eq!(signals.back_off(&rt, long, network), Wake::NetworkAvailable);
        assert!(started.elapsed() < Duration::from_secs(5));
        signaller.join().unwrap();

        // A network signal during the round that failed (before its back-off started).
        let signals = Signals::new();
        let network = signals.network.subscribe();
        signals.network.send_replace(());
        assert_eq!(signals.back_off(&rt, long, network), Wake::NetworkAvailable);

        // One sent before the round is old news.
        let signals = Signals::new();
        signals.network.send_replace(());
        let network = signals.network.subscribe();
        assert_eq!(
            signals.back_off(&rt, Duration::from_millis(20), network),
            Wake::Elapsed
        );

        // A stop wins over everything.
        let signals = Signals::new();
        let network = signals.network.subscribe();
        signals.network.send_replace(());
        signals.stop.send_replace(true);
        assert_eq!(signals.back_off(&rt, long, network), Wake::Stopped);
    }
}
