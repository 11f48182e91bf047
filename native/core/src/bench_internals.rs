//! Benchmark fixtures (feature `bench-internals`, enabled only by the benchmark harness in
//! `tests/`; never in a release library): our receive and send paths run without a network,
//! on the same code the client runs around its HTTP requests, and the inputs the benchmarks
//! of matrix-sdk and of the raw limits are given, so that every implementation does the same
//! work on the same bytes.
//!
//! - [`PeerDevice`]: another user's device, a bare vodozemac account with signed device keys
//!   and one signed one-time key; it answers `/keys/query` ([`keys_query_answer`]) and
//!   `/keys/claim` ([`keys_claim_answer`]) and Olm-encrypts to-device events.
//! - [`Senders`]: devices that each hold an outbound Megolm session in one room, and
//!   [`Senders::next_events`], the `m.room.encrypted` timeline events they send (round robin,
//!   the format of our own `megolm_encrypt`).
//! - [`Receiver`]: our receiving device; [`Receiver::new`] learns the senders' devices from a
//!   `/keys/query` answer (checked and pinned, `apply_keys_query_answer`) and gets their room
//!   keys as Olm-encrypted `m.room_key` to-device events in one sync response (`sync::apply`:
//!   `olm_decrypt` and all its checks, then `receive_room_key`); [`Receiver::receive`] applies
//!   one sync response of timeline events in one transaction, as `Client::finish_sync` does.
//! - [`ReceiveFixture`]: 10,000 events from 10 senders generated once, fed to a receiver in
//!   responses of 100, and decrypted by bare vodozemac ([`ReceiveFixture::decrypt_raw`]).
//! - [`SendFixture`]: what `Client::send_text` does for one message around its requests.
//! - [`KeyShareFixture`]: what `Client::send_text` does before the first message to a room
//!   whose devices are all new (device query, Olm sessions from claimed one-time keys, the
//!   room key Olm-encrypted for each and queued).
//! - [`RawSqlcipher`]: a bare SQLCipher connection with our store's PRAGMAs, the persistence
//!   limit.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::params;
use serde_json::{Value, json};
use tchap_secure_hsm::Vault;
use vodozemac::megolm::{
    GroupSession, InboundGroupSession, MegolmMessage, SessionConfig, SessionKey,
};
use zeroize::Zeroizing;

use crate::api::types::{MEGOLM_ALGORITHM, SyncResponse};
use crate::crypto::CryptoError;
use crate::crypto::account::{OLM_ALGORITHM, OlmAccount};
use crate::crypto::cross_signing::OwnKeys;
use crate::crypto::devices::{KeysQueryAnswer, apply_keys_query_answer};
use crate::crypto::engine::Engine;
use crate::crypto::signing::sign_json;
use crate::error::Error;
use crate::store::Store;
use crate::store::crypto::{self as cdb, OutboxRow};
use crate::store::rooms;

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the machine, so a
/// parent's reading before `spawn` and a child's reading when ready can be subtracted.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or_default() * 1_000_000_000
        + u64::try_from(t.tv_nsec).unwrap_or_default()
}

/// Milliseconds from one [`monotonic_ns`] reading to a later one (0 if `to` is earlier).
pub fn elapsed_ms(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1e6
}

/// Peak resident set size of this process in KiB (`VmHWM` of `/proc/self/status`); `None`
/// where the kernel does not report it. (Here rather than in the test crate: the measuring
/// binaries that need their parent's `SOFTHSM2_CONF` must not link the test crate's SoftHSM2
/// module, whose start-up constructor points that variable at a fresh per-process token.)
pub fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The room of every fixture.
pub const ROOM: &str = "!bench:secure.tchap.test";
/// Our user in the receive fixtures.
pub const RECEIVER_USER: &str = "@bob:secure.tchap.test";
/// Our device in the receive fixtures.
pub const RECEIVER_DEVICE: &str = "BOBDEV";
/// Our user in the send fixtures.
pub const SENDER_USER: &str = "@alice:secure.tchap.test";
/// Our device in the send fixtures.
pub const SENDER_DEVICE: &str = "ALICEDEV";
/// Events per sync response fed to a receiver.
pub const EVENTS_PER_SYNC: usize = 100;

fn bad(what: impl Into<String>) -> Error {
    Error::InvalidArgument { what: what.into() }
}

fn crypto(e: CryptoError) -> Error {
    Error::Crypto(e)
}

/// The body of message `i` of the fixtures.
pub fn message_body(i: usize) -> String {
    format!("message {i} du cabinet")
}

/// What a sender needs to know of a recipient device to open an Olm session with it.
#[derive(Debug, Clone)]
pub struct OlmRecipient {
    /// Owner.
    pub user_id: String,
    /// Device id.
    pub device_id: String,
    /// Its Ed25519 key (base64).
    pub ed25519: String,
    /// Its Curve25519 identity key (base64).
    pub curve25519: String,
    /// One of its one-time keys (the Curve25519 key, base64).
    pub one_time_key: String,
}

/// Another user's device: a bare vodozemac account with self-signed device keys and one signed
/// one-time key.
pub struct PeerDevice {
    account: OlmAccount,
    one_time_key_id: String,
    one_time_key: Value,
}

impl std::fmt::Debug for PeerDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerDevice")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl PeerDevice {
    /// A new device `device_id` of `user_id`, with one signed one-time key.
    pub fn new(user_id: &str, device_id: &str) -> Result<Self, Error> {
        let mut account = OlmAccount::new(user_id, device_id);
        account.inner_mut().generate_one_time_keys(1);
        let (id, key) = account
            .inner()
            .one_time_keys()
            .into_iter()
            .next()
            .ok_or_else(|| bad("no one-time key generated"))?;
        account.mark_published();
        let mut signed = json!({ "key": key.to_base64() });
        sign_json(
            &mut signed,
            user_id,
            &format!("ed25519:{device_id}"),
            |bytes| account.inner().sign(bytes),
        )
        .map_err(|e| crypto(e.into()))?;
        Ok(Self {
            account,
            one_time_key_id: format!("signed_curve25519:{}", id.to_base64()),
            one_time_key: signed,
        })
    }

    /// Owner.
    pub fn user_id(&self) -> &str {
        self.account.user_id()
    }

    /// Device id.
    pub fn device_id(&self) -> &str {
        self.account.device_id()
    }

    /// Ed25519 key (base64).
    pub fn ed25519(&self) -> String {
        self.account.ed25519().to_base64()
    }

    /// Curve25519 identity key (base64).
    pub fn curve25519(&self) -> String {
        self.account.curve25519().to_base64()
    }

    /// The device keys, self-signed, as `/keys/query` lists them.
    pub fn device_keys(&self) -> Result<Value, Error> {
        self.account.device_keys().map_err(crypto)
    }

    /// The signed one-time key `(key id, signed key object)`, as `/keys/claim` returns it.
    pub fn one_time_key(&self) -> (&str, &Value) {
        (&self.one_time_key_id, &self.one_time_key)
    }

    /// The to-device event `m.room.encrypted` carrying `event_type`/`content` to `to`, in a
    /// new Olm session opened with its one-time key (a pre-key message), with the payload
    /// fields every Matrix client checks (`sender`, `recipient`, `recipient_keys`, `keys`).
    pub fn olm_to_device(
        &self,
        to: &OlmRecipient,
        event_type: &str,
        content: &Value,
    ) -> Result<Value, Error> {
        let identity = vodozemac::Curve25519PublicKey::from_base64(&to.curve25519)
            .map_err(|_| bad("recipient curve25519"))?;
        let otk = vodozemac::Curve25519PublicKey::from_base64(&to.one_time_key)
            .map_err(|_| bad("recipient one-time key"))?;
        let mut session = self
            .account
            .inner()
            .create_outbound_session(vodozemac::olm::SessionConfig::version_1(), identity, otk)
            .map_err(|_| bad("non-contributory one-time key"))?;
        let payload = Zeroizing::new(
            json!({
                "type": event_type,
                "content": content,
                "sender": self.user_id(),
                "sender_device": self.device_id(),
                "keys": { "ed25519": self.ed25519() },
                "recipient": to.user_id,
                "recipient_keys": { "ed25519": to.ed25519 },
            })
            .to_string(),
        );
        let message = session
            .encrypt(payload.as_bytes())
            .map_err(|_| bad("olm encrypt"))?;
        let message = serde_json::to_value(&message).map_err(|e| bad(e.to_string()))?;
        Ok(json!({
            "type": "m.room.encrypted",
            "sender": self.user_id(),
            "content": {
                "algorithm": OLM_ALGORITHM,
                "sender_key": self.curve25519(),
                "ciphertext": { to.curve25519.clone(): message },
            },
        }))
    }
}

/// `n` devices: `users` users with `n / users` devices each (`@peer{u}`, `PEER{u}D{d}`).
pub fn peer_devices(users: usize, devices_per_user: usize) -> Result<Vec<PeerDevice>, Error> {
    let mut out = Vec::with_capacity(users * devices_per_user);
    for u in 0..users {
        for d in 0..devices_per_user {
            out.push(PeerDevice::new(
                &format!("@peer{u}:secure.tchap.test"),
                &format!("PEER{u}D{d}"),
            )?);
        }
    }
    Ok(out)
}

/// The distinct owners of `devices`, in order.
pub fn users_of(devices: &[PeerDevice]) -> Vec<String> {
    let mut users: Vec<String> = Vec::new();
    for d in devices {
        if !users.iter().any(|u| u == d.user_id()) {
            users.push(d.user_id().to_owned());
        }
    }
    users
}

/// The `/keys/query` answer listing `devices` (JSON text, as the server sends it).
pub fn keys_query_answer(devices: &[PeerDevice]) -> Result<String, Error> {
    let mut users: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for d in devices {
        users
            .entry(d.user_id().to_owned())
            .or_default()
            .insert(d.device_id().to_owned(), d.device_keys()?);
    }
    Ok(json!({ "device_keys": users, "failures": {} }).to_string())
}

/// The `/keys/query` answer listing `devices` with their owners' cross-signing identities
/// (JSON text): for each user a fresh master key and a self-signing key it signed, and each
/// device signed by its owner's self-signing key besides its own signature — what every
/// device of a member who set up cross-signing looks like, and what our sharing rule
/// (`share_keys_with: cross_signed`) and matrix-sdk's identity-based sharing require.
pub fn keys_query_answer_cross_signed(devices: &[PeerDevice]) -> Result<String, Error> {
    let mut users: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    let (mut master_keys, mut self_signing_keys) = (serde_json::Map::new(), serde_json::Map::new());
    for user in users_of(devices) {
        let keys = OwnKeys::generate();
        let body = keys.upload_body(&user, |_| Ok(())).map_err(crypto)?;
        master_keys.insert(user.clone(), body["master_key"].clone());
        self_signing_keys.insert(user.clone(), body["self_signing_key"].clone());
        let ssk_id = format!("ed25519:{}", keys.self_signing());
        for d in devices.iter().filter(|d| d.user_id() == user) {
            let mut device_keys = d.device_keys()?;
            let signed = keys
                .sign_device_body(&user, d.device_id(), &device_keys)
                .map_err(crypto)?;
            let signature = signed[&user][d.device_id()]["signatures"][&user][&ssk_id].clone();
            if !signature.is_string() {
                return Err(bad("no self-signing signature"));
            }
            device_keys["signatures"][&user][&ssk_id] = signature;
            users
                .entry(user.clone())
                .or_default()
                .insert(d.device_id().to_owned(), device_keys);
        }
    }
    Ok(json!({
        "device_keys": users,
        "master_keys": master_keys,
        "self_signing_keys": self_signing_keys,
        "failures": {},
    })
    .to_string())
}

/// The `/keys/claim` answer with one signed one-time key for each of `devices` (JSON text).
pub fn keys_claim_answer(devices: &[PeerDevice]) -> String {
    let mut users: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for d in devices {
        let (id, key) = d.one_time_key();
        users
            .entry(d.user_id().to_owned())
            .or_default()
            .insert(d.device_id().to_owned(), json!({ id: key }));
    }
    json!({ "one_time_keys": users, "failures": {} }).to_string()
}

/// Devices that each send in [`ROOM`] with their own outbound Megolm session.
pub struct Senders {
    devices: Vec<PeerDevice>,
    sessions: Vec<GroupSession>,
    room_keys: Vec<Value>,
    sent: usize,
}

impl std::fmt::Debug for Senders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Senders")
            .field("devices", &self.devices)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Senders {
    /// `count` senders, one device each (`@sender{i}`, `SENDER{i}`), each with a new outbound
    /// Megolm session.
    pub fn new(count: usize) -> Result<Self, Error> {
        let mut devices = Vec::with_capacity(count);
        let mut sessions = Vec::with_capacity(count);
        let mut room_keys = Vec::with_capacity(count);
        for i in 0..count {
            devices.push(PeerDevice::new(
                &format!("@sender{i}:secure.tchap.test"),
                &format!("SENDER{i}"),
            )?);
            let session = GroupSession::new(SessionConfig::version_1());
            room_keys.push(json!({
                "algorithm": MEGOLM_ALGORITHM,
                "room_id": ROOM,
                "session_id": session.session_id(),
                "session_key": session.session_key().to_base64(),
            }));
            sessions.push(session);
        }
        Ok(Self {
            devices,
            sessions,
            room_keys,
            sent: 0,
        })
    }

    /// The sending devices.
    pub fn devices(&self) -> &[PeerDevice] {
        &self.devices
    }

    /// The `m.room_key` content of each sender's session (from its first message index).
    pub fn room_keys(&self) -> &[Value] {
        &self.room_keys
    }

    /// The next `n` messages, senders taking turns: `m.room.encrypted` timeline events as a
    /// sync response carries them.
    pub fn next_events(&mut self, n: usize) -> Vec<Value> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.sent;
            self.sent += 1;
            let which = i % self.sessions.len().max(1);
            let (Some(device), Some(session)) =
                (self.devices.get(which), self.sessions.get_mut(which))
            else {
                break;
            };
            let plaintext = Zeroizing::new(
                json!({
                    "type": "m.room.message",
                    "content": { "msgtype": "m.text", "body": message_body(i) },
                    "room_id": ROOM,
                })
                .to_string(),
            );
            let message = session.encrypt(plaintext.as_bytes());
            events.push(json!({
                "type": "m.room.encrypted",
                "event_id": format!("$bench{i}"),
                "sender": device.user_id(),
                "origin_server_ts": 1_700_000_000_000_u64 + i as u64,
                "content": {
                    "algorithm": MEGOLM_ALGORITHM,
                    "sender_key": device.curve25519(),
                    "ciphertext": message.to_base64(),
                    "session_id": session.session_id(),
                    "device_id": device.device_id(),
                },
            }));
        }
        events
    }
}

/// Decrypts `events` with bare vodozemac: base64, the Megolm message, one inbound session per
/// session id (made from `room_keys`); no check, no storage. Returns how many decrypted.
pub fn decrypt_raw(room_keys: &[Value], events: &[Value]) -> Result<usize, Error> {
    let mut sessions: HashMap<&str, InboundGroupSession> = HashMap::new();
    for key in room_keys {
        let id = key
            .get("session_id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("session id"))?;
        let session_key = key
            .get("session_key")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("session key"))?;
        let session_key = SessionKey::from_base64(session_key).map_err(|_| bad("session key"))?;
        sessions.insert(
            id,
            InboundGroupSession::new(&session_key, SessionConfig::version_1()),
        );
    }
    let mut n = 0;
    for event in events {
        let field = |p: &str| event.pointer(p).and_then(Value::as_str);
        let ciphertext = field("/content/ciphertext").ok_or_else(|| bad("ciphertext"))?;
        let session_id = field("/content/session_id").ok_or_else(|| bad("session id"))?;
        let session = sessions
            .get_mut(session_id)
            .ok_or_else(|| bad("unknown session"))?;
        let message = MegolmMessage::from_base64(ciphertext).map_err(|_| bad("message"))?;
        let plaintext = session.decrypt(&message).map_err(|_| bad("decrypt"))?;
        n += usize::from(!plaintext.plaintext.is_empty());
    }
    Ok(n)
}

/// Our receiving device: its store and engine.
pub struct Receiver {
    store: Store,
    engine: Engine,
    syncs: usize,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// Our device in `dir` (keys from `vault`), joined to the encrypted [`ROOM`], that learns
    /// the senders' devices from a `/keys/query` answer (self-signatures checked, keys pinned:
    /// `apply_keys_query_answer`, as `Client::finish_sync`) and receives their room keys as
    /// Olm pre-key messages (`m.room_key`) opened with its published one-time keys, in one
    /// sync response (`sync::apply`: `olm_decrypt` with its sender/recipient/pinned-key
    /// checks, then `receive_room_key`).
    pub fn new(dir: &Path, vault: &Vault, senders: &Senders) -> Result<Self, Error> {
        let mut store = Store::open(dir, &vault.database_key())?;
        let users = users_of(senders.devices());
        let answer: KeysQueryAnswer = serde_json::from_str(&keys_query_answer(senders.devices())?)
            .map_err(|e| bad(e.to_string()))?;
        let (mut engine, upload) = store.transaction(|tx| {
            let mut engine =
                Engine::load_or_create(tx, RECEIVER_USER, RECEIVER_DEVICE, vault.pickle_key())
                    .map_err(CryptoError::into_store_error)?;
            rooms::upsert_room(tx, ROOM, "join")?;
            rooms::set_room_encryption(tx, ROOM, MEGOLM_ALGORITHM)?;
            for user in &users {
                cdb::track_user(tx, user)?;
            }
            apply_keys_query_answer(tx, &answer, &users, RECEIVER_USER, RECEIVER_DEVICE)
                .map_err(CryptoError::into_store_error)?;
            // Our one-time keys, as uploaded, then acknowledged.
            let upload = engine
                .take_upload_body(tx)
                .map_err(CryptoError::into_store_error)?;
            engine
                .upload_acknowledged(tx)
                .map_err(CryptoError::into_store_error)?;
            Ok((engine, upload))
        })?;
        let upload: Value = serde_json::from_str(&upload.ok_or_else(|| bad("no key upload"))?)
            .map_err(|e| bad(e.to_string()))?;
        let our_keys = upload
            .get("one_time_keys")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no one-time keys"))?;
        let mut to_device = Vec::new();
        for ((device, room_key), (_, otk)) in senders
            .devices()
            .iter()
            .zip(senders.room_keys())
            .zip(our_keys.iter())
        {
            let recipient = OlmRecipient {
                user_id: RECEIVER_USER.into(),
                device_id: RECEIVER_DEVICE.into(),
                ed25519: engine.ed25519(),
                curve25519: engine.curve25519(),
                one_time_key: otk
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("one-time key"))?
                    .to_owned(),
            };
            to_device.push(device.olm_to_device(&recipient, "m.room_key", room_key)?);
        }
        let response: SyncResponse = serde_json::from_value(json!({
            "next_batch": "keys",
            "to_device": { "events": to_device },
        }))
        .map_err(|e| bad(e.to_string()))?;
        let summary =
            store.transaction(|tx| crate::client::sync::apply(tx, &response, Some(&mut engine)))?;
        if summary.room_keys != senders.devices().len() || summary.security_events != 0 {
            return Err(bad(format!(
                "{} of {} room keys accepted, {} security events",
                summary.room_keys,
                senders.devices().len(),
                summary.security_events
            )));
        }
        Ok(Self {
            store,
            engine,
            syncs: 0,
        })
    }

    /// Applies one sync response carrying `events` in [`ROOM`]'s timeline: its body is made
    /// with [`sync_body`], then given to [`Receiver::receive_body`]. Returns how many messages
    /// were decrypted.
    pub fn receive(&mut self, events: &[Value]) -> Result<usize, Error> {
        let body = sync_body(self.syncs + 1, events)?;
        self.receive_body(&body)
    }

    /// Applies the body of one `/sync` answer as `Client::finish_sync` does after the
    /// request: decoded from the bytes, then `sync::apply` in one transaction (decryption, the
    /// sender/room/replay checks, the timeline rows, the sync token). Returns how many
    /// messages were decrypted.
    pub fn receive_body(&mut self, body: &[u8]) -> Result<usize, Error> {
        self.syncs += 1;
        let response: SyncResponse =
            serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
        let Self { store, engine, .. } = self;
        let summary =
            store.transaction(|tx| crate::client::sync::apply(tx, &response, Some(engine)))?;
        Ok(summary.messages.len())
    }
}

/// The body of the `/sync` answer number `batch` (its `next_batch` is `s{batch}`) carrying
/// `events` in [`ROOM`]'s timeline, as the server sends it.
pub fn sync_body(batch: usize, events: &[Value]) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(&json!({
        "next_batch": format!("s{batch}"),
        "rooms": { "join": { ROOM: { "timeline": { "events": events } } } },
    }))
    .map_err(|e| bad(e.to_string()))
}

/// Encrypted messages from several senders in one room, generated once, and what a receiver
/// needs to read them.
#[derive(Debug)]
pub struct ReceiveFixture {
    senders: Senders,
    events: Vec<Value>,
    /// The events as the bodies of successive `/sync` answers of [`EVENTS_PER_SYNC`] events.
    bodies: Vec<Vec<u8>>,
}

impl ReceiveFixture {
    /// `messages` messages from `senders` senders (taking turns), each with its own session.
    pub fn new(senders: usize, messages: usize) -> Result<Self, Error> {
        let mut senders = Senders::new(senders)?;
        let events = senders.next_events(messages);
        let bodies = events
            .chunks(EVENTS_PER_SYNC)
            .enumerate()
            .map(|(i, chunk)| sync_body(i + 1, chunk))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            senders,
            events,
            bodies,
        })
    }

    /// The senders.
    pub fn senders(&self) -> &Senders {
        &self.senders
    }

    /// The `m.room.encrypted` events, in order.
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// A fresh receiver in `dir` holding the senders' room keys (see [`Receiver::new`]).
    pub fn receiver(&self, dir: &Path, vault: &Vault) -> Result<Receiver, Error> {
        Receiver::new(dir, vault, &self.senders)
    }

    /// The full receive path from the bytes the server sends: sync responses of
    /// [`EVENTS_PER_SYNC`] events, each decoded and applied in one transaction. Returns how
    /// many messages were decrypted. A receiver takes them once (their sync tokens are then
    /// known to it).
    pub fn receive(&self, receiver: &mut Receiver) -> Result<usize, Error> {
        let mut decrypted = 0;
        for body in &self.bodies {
            decrypted += receiver.receive_body(body)?;
        }
        Ok(decrypted)
    }

    /// The same ciphertexts decrypted by bare vodozemac (no checks, no storage).
    pub fn decrypt_raw(&self) -> Result<usize, Error> {
        decrypt_raw(self.senders.room_keys(), &self.events)
    }
}

/// Our sending device in [`ROOM`], shared with one other device, running what
/// `Client::send_text` does for each message except the HTTP requests.
pub struct SendFixture {
    store: Store,
    engine: Engine,
}

impl std::fmt::Debug for SendFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFixture")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

fn random_txn_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| bad("system random generator failed"))?;
    Ok(format!(
        "ts{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Our device `SENDER_USER`/`SENDER_DEVICE` in `dir`, joined to the encrypted [`ROOM`] with
/// the owners of `peers`, whose devices it knows from a `/keys/query` answer.
fn sender_store(dir: &Path, vault: &Vault, peers: &[PeerDevice]) -> Result<(Store, Engine), Error> {
    let mut store = Store::open(dir, &vault.database_key())?;
    let mut users = users_of(peers);
    users.push(SENDER_USER.to_owned());
    // The answer also lists our own device (skipped when applied), so our user is fresh.
    let mut answer: Value =
        serde_json::from_str(&keys_query_answer(peers)?).map_err(|e| bad(e.to_string()))?;
    if let Some(users) = answer.get_mut("device_keys").and_then(Value::as_object_mut) {
        users.insert(SENDER_USER.to_owned(), json!({ SENDER_DEVICE: {} }));
    }
    let answer: KeysQueryAnswer =
        serde_json::from_str(&answer.to_string()).map_err(|e| bad(e.to_string()))?;
    let engine = store.transaction(|tx| {
        let mut engine = Engine::load_or_create(tx, SENDER_USER, SENDER_DEVICE, vault.pickle_key())
            .map_err(CryptoError::into_store_error)?;
        engine
            .take_upload_body(tx)
            .map_err(CryptoError::into_store_error)?;
        engine
            .upload_acknowledged(tx)
            .map_err(CryptoError::into_store_error)?;
        rooms::upsert_room(tx, ROOM, "join")?;
        rooms::set_room_encryption(tx, ROOM, MEGOLM_ALGORITHM)?;
        for user in &users {
            rooms::upsert_member(tx, ROOM, user, "join", None)?;
            cdb::track_user(tx, user)?;
        }
        apply_keys_query_answer(tx, &answer, &users, SENDER_USER, SENDER_DEVICE)
            .map_err(CryptoError::into_store_error)?;
        Ok(engine)
    })?;
    Ok((store, engine))
}

impl SendFixture {
    /// Our device in `dir` (keys from `vault`), in [`ROOM`] with `peer`'s owner, whose device
    /// is pinned and has an Olm session with us (from its claimed one-time key).
    pub fn new(dir: &Path, vault: &Vault, peer: PeerDevice) -> Result<Self, Error> {
        let peers = [peer];
        let (mut store, engine) = sender_store(dir, vault, &peers)?;
        let claim: Value =
            serde_json::from_str(&keys_claim_answer(&peers)).map_err(|e| bad(e.to_string()))?;
        store.transaction(|tx| {
            for d in cdb::devices_of(tx, peers[0].user_id())? {
                let key = claim
                    .pointer(&format!("/one_time_keys/{}/{}", d.user_id, d.device_id))
                    .and_then(Value::as_object)
                    .and_then(|m| m.values().next())
                    .cloned()
                    .unwrap_or_default();
                engine
                    .create_outbound_olm(tx, &d, &key)
                    .map_err(CryptoError::into_store_error)?;
            }
            Ok(())
        })?;
        Ok(Self { store, engine })
    }

    /// One message, as `Client::send_text(ROOM, body)` runs it (client/e2ee.rs) with the
    /// network taken out: the room checks; the members tracked (one transaction); the device
    /// lists up to date (nothing dirty: no query); the outbound session planned, rotated
    /// every 100 messages (one transaction); Olm sessions present (no claim); then one
    /// transaction with the room key Olm-encrypted for devices that lack it and queued, the
    /// session marked shared, the message Megolm-encrypted and queued in the outbox; then
    /// the outbox read and each request removed once "sent" (`flush_outbox`, one autocommit
    /// statement each). Returns the encrypted content.
    pub fn send_text(&mut self, body: &str) -> Result<Value, Error> {
        let Self { store, engine } = self;
        let room = store
            .room(ROOM)?
            .ok_or_else(|| bad(format!("unknown room {ROOM}")))?;
        if room.encryption.as_deref() != Some(MEGOLM_ALGORITHM) || room.membership != "join" {
            return Err(bad("room not joined and encrypted"));
        }
        let members = rooms::member_ids(store.conn(), ROOM)?;
        store.transaction(|tx| {
            for m in &members {
                cdb::track_user(tx, m)?;
            }
            Ok(())
        })?;
        if !cdb::dirty_users(store.conn())?.is_empty() {
            return Err(bad(
                "a device list is outdated: it would need a /keys/query",
            ));
        }
        let mut devices = Vec::new();
        for m in &members {
            devices.extend(cdb::devices_of(store.conn(), m)?);
        }
        let plan = store.transaction(|tx| {
            engine
                .plan_outbound(tx, ROOM, &devices, &Default::default())
                .map_err(CryptoError::into_store_error)
        })?;
        for d in &plan.to_share {
            if !Engine::has_olm_session(store.conn(), &d.curve25519).map_err(crypto)? {
                return Err(bad("no Olm session: it would need a /keys/claim"));
            }
        }
        let (to_device_txn, event_txn) = (random_txn_id()?, random_txn_id()?);
        let content = json!({ "msgtype": "m.text", "body": body });
        let encrypted = store.transaction(|tx| {
            queue_room_key(tx, engine, &plan.to_share, &to_device_txn)
                .map_err(CryptoError::into_store_error)?;
            engine
                .mark_shared(tx, ROOM, &plan.to_share, &plan.to_withhold)
                .map_err(CryptoError::into_store_error)?;
            let encrypted = engine
                .megolm_encrypt(tx, ROOM, "m.room.message", &content)
                .map_err(CryptoError::into_store_error)?;
            cdb::push_outbox(
                tx,
                &OutboxRow::new(
                    event_txn.clone(),
                    "room_event:m.room.encrypted".into(),
                    ROOM.to_owned(),
                    encrypted.to_string(),
                ),
            )?;
            Ok(encrypted)
        })?;
        for row in cdb::outbox(store.conn())? {
            cdb::remove_outbox(store.conn(), &row.txn_id)?;
        }
        Ok(encrypted)
    }
}

/// The room key of [`ROOM`]'s outbound session Olm-encrypted for each of `devices` and queued,
/// one outbox request per recipient user (`Client::send_text`'s first step in its main
/// transaction).
fn queue_room_key(
    tx: &rusqlite::Connection,
    engine: &Engine,
    devices: &[cdb::DeviceRecord],
    txn: &str,
) -> Result<usize, CryptoError> {
    if devices.is_empty() {
        return Ok(0);
    }
    let key = engine.room_key_content(tx, ROOM)?;
    let mut messages: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for d in devices {
        let encrypted = engine.olm_encrypt(tx, d, "m.room_key", &key)?;
        messages
            .entry(d.user_id.clone())
            .or_default()
            .insert(d.device_id.clone(), encrypted);
    }
    for (user, per_device) in messages {
        cdb::push_outbox(
            tx,
            &OutboxRow::new(
                format!("{txn}-{}", cdb::outbox_len(tx)?),
                "to_device:m.room.encrypted".into(),
                ROOM.to_owned(),
                json!({ "messages": { user: per_device } }).to_string(),
            ),
        )?;
    }
    Ok(devices.len())
}

/// Our sending device in [`ROOM`] with the owners of devices it has never seen: what the
/// first `Client::send_text` there does before its message.
pub struct KeyShareFixture {
    store: Store,
    engine: Engine,
}

impl std::fmt::Debug for KeyShareFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShareFixture")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl KeyShareFixture {
    /// Our device in `dir`, in [`ROOM`] with the owners of `peers`, knowing none of their
    /// devices yet (their users tracked, their device lists outdated).
    pub fn new(dir: &Path, vault: &Vault, peers: &[PeerDevice]) -> Result<Self, Error> {
        let (mut store, engine) = sender_store(dir, vault, &[])?;
        let users = users_of(peers);
        store.transaction(|tx| {
            for user in &users {
                rooms::upsert_member(tx, ROOM, user, "join", None)?;
                cdb::track_user(tx, user)?;
            }
            Ok(())
        })?;
        Ok(Self { store, engine })
    }

    /// The room-key share of the first message, from the server's answers: the `/keys/query`
    /// answer checked and pinned (one transaction, as `refresh_devices`), the outbound session
    /// created (one transaction, `plan_outbound`), an Olm session per device from its claimed
    /// one-time key after checking the key's signature (one transaction, `claim_sessions`),
    /// then the room key Olm-encrypted for every device, queued (one request per user) and
    /// the session marked shared (one transaction). Returns how many devices got the key.
    pub fn share(&mut self, keys_query: &str, keys_claim: &str) -> Result<usize, Error> {
        let Self { store, engine } = self;
        let answer: KeysQueryAnswer =
            serde_json::from_str(keys_query).map_err(|e| bad(e.to_string()))?;
        let claim: Value = serde_json::from_str(keys_claim).map_err(|e| bad(e.to_string()))?;
        let dirty = cdb::dirty_users(store.conn())?;
        let changes = store.transaction(|tx| {
            apply_keys_query_answer(tx, &answer, &dirty, SENDER_USER, SENDER_DEVICE)
                .map_err(CryptoError::into_store_error)
        })?;
        if changes.security_events != 0 {
            return Err(bad("the key query answer raised security events"));
        }
        let members = rooms::member_ids(store.conn(), ROOM)?;
        let mut devices = Vec::new();
        for m in &members {
            devices.extend(cdb::devices_of(store.conn(), m)?);
        }
        let plan = store.transaction(|tx| {
            engine
                .plan_outbound(tx, ROOM, &devices, &Default::default())
                .map_err(CryptoError::into_store_error)
        })?;
        let mut missing = Vec::new();
        for d in plan.to_share {
            if !Engine::has_olm_session(store.conn(), &d.curve25519).map_err(crypto)? {
                missing.push(d);
            }
        }
        let ready = store.transaction(|tx| {
            let mut ready = Vec::new();
            for d in missing {
                let Some(key) = claim
                    .get("one_time_keys")
                    .and_then(|k| k.get(&d.user_id))
                    .and_then(|k| k.get(&d.device_id))
                    .and_then(Value::as_object)
                    .and_then(|m| {
                        m.iter()
                            .find(|(id, _)| id.starts_with("signed_curve25519:"))
                    })
                    .map(|(_, v)| v.clone())
                else {
                    continue;
                };
                engine
                    .create_outbound_olm(tx, &d, &key)
                    .map_err(CryptoError::into_store_error)?;
                ready.push(d);
            }
            Ok(ready)
        })?;
        let txn = random_txn_id()?;
        let shared = store.transaction(|tx| {
            let n =
                queue_room_key(tx, engine, &ready, &txn).map_err(CryptoError::into_store_error)?;
            engine
                .mark_shared(tx, ROOM, &ready, &plan.to_withhold)
                .map_err(CryptoError::into_store_error)?;
            Ok(n)
        })?;
        Ok(shared)
    }
}

/// A bare SQLCipher connection with our store's PRAGMAs (`cipher_memory_security`, the raw
/// 256-bit key, WAL, `synchronous = FULL`, `secure_delete`, `temp_store = MEMORY`,
/// `foreign_keys`) and one table of rows shaped like our timeline's: the persistence limit.
#[derive(Debug)]
pub struct RawSqlcipher {
    conn: rusqlite::Connection,
    next_seq: i64,
}

impl RawSqlcipher {
    /// Creates the database `raw.db` in `dir`, keyed with the raw 256-bit `key`.
    pub fn open(dir: &Path, key: &[u8; 32]) -> Result<Self, Error> {
        let sqlite = |e: rusqlite::Error| Error::Store(e.into());
        let conn = rusqlite::Connection::open(dir.join("raw.db")).map_err(sqlite)?;
        conn.execute_batch("PRAGMA cipher_memory_security = ON;")
            .map_err(sqlite)?;
        {
            let mut statement = Zeroizing::new(String::with_capacity(96));
            statement.push_str("PRAGMA key = \"x'");
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for byte in key {
                statement.push(char::from(HEX[usize::from(byte >> 4)]));
                statement.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
            statement.push_str("'\";");
            conn.execute_batch(&statement).map_err(sqlite)?;
        }
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA secure_delete = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS timeline (
                 event_id  TEXT PRIMARY KEY NOT NULL,
                 room_id   TEXT NOT NULL,
                 seq       INTEGER NOT NULL,
                 sender    TEXT NOT NULL,
                 origin_ts INTEGER NOT NULL,
                 body      TEXT
             ) STRICT;",
        )
        .map_err(sqlite)?;
        Ok(Self { conn, next_seq: 1 })
    }

    /// Inserts one row per `(event_id, sender, origin_ts, body)` in one transaction.
    pub fn insert(&mut self, rows: &[(String, String, i64, String)]) -> Result<(), Error> {
        let sqlite = |e: rusqlite::Error| Error::Store(e.into());
        let tx = self.conn.transaction().map_err(sqlite)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO timeline (event_id, room_id, seq, sender, origin_ts, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sqlite)?;
            for (event_id, sender, ts, body) in rows {
                stmt.execute(params![event_id, ROOM, self.next_seq, sender, ts, body])
                    .map_err(sqlite)?;
                self.next_seq += 1;
            }
        }
        tx.commit().map_err(sqlite)
    }
}

/// The rows [`RawSqlcipher::insert`] writes for `events`, messages `first..` of the fixture
/// (their ids, senders, timestamps and the plaintext bodies they carry).
pub fn raw_rows(events: &[Value], first: usize) -> Vec<(String, String, i64, String)> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
            (
                field("event_id").to_owned(),
                field("sender").to_owned(),
                e.get("origin_server_ts")
                    .and_then(Value::as_i64)
                    .unwrap_or_default(),
                message_body(first + i),
            )
        })
        .collect()
}

/// A hostile member for the tests (feature `bench-internals` only): sends `content` as an
/// `m.room.message` exactly as given, Megolm-encrypted with every check of a normal send — so
/// a test can make the edits the API refuses (another member's message, a message of another
/// room), with the relation inside the encryption where the server cannot judge it.
pub async fn send_raw_message(
    client: &mut crate::Client,
    room_id: &str,
    content: Value,
) -> Result<String, Error> {
    client.send_room_message(room_id, content).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::test_vault;

    #[test]
    fn every_message_of_every_sender_is_received_checked_and_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let fixture = ReceiveFixture::new(3, 250).unwrap();
        assert_eq!(fixture.decrypt_raw().unwrap(), 250);
        let mut receiver = fixture.receiver(dir.path(), &vault).unwrap();
        assert_eq!(fixture.receive(&mut receiver).unwrap(), 250);
        let timeline = crate::store::timeline::timeline(receiver.store.conn(), ROOM, 1000).unwrap();
        assert_eq!(timeline.len(), 250);
        assert!(timeline.iter().all(|e| e.state == "decrypted"));
        assert!(timeline.iter().all(|e| e.trust.as_deref() == Some("tofu")));
        assert_eq!(timeline[7].body.as_deref(), Some("message 7 du cabinet"));
        assert_eq!(timeline[7].sender, "@sender1:secure.tchap.test");
        // The same events again: nothing new (already decrypted).
        assert_eq!(receiver.receive(&fixture.events()[..100]).unwrap(), 0);
    }

    #[test]
    fn sends_rotate_and_share_the_key_and_a_fresh_room_key_share_reaches_every_device() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let send_dir = dir.path().join("send");
        std::fs::create_dir_all(&send_dir).unwrap();
        let peer = PeerDevice::new("@bob:secure.tchap.test", "BOBDEV").unwrap();
        let mut sender = SendFixture::new(&send_dir, &vault, peer).unwrap();
        let mut sessions = std::collections::BTreeSet::new();
        for i in 0..150 {
            let content = sender.send_text(&message_body(i)).unwrap();
            sessions.insert(content["session_id"].as_str().unwrap().to_owned());
        }
        assert_eq!(sessions.len(), 2, "rotated after 100 messages");
        assert_eq!(cdb::outbox_len(sender.store.conn()).unwrap(), 0);

        let share_dir = dir.path().join("share");
        std::fs::create_dir_all(&share_dir).unwrap();
        let peers = peer_devices(3, 2).unwrap();
        let mut sharer = KeyShareFixture::new(&share_dir, &vault, &peers).unwrap();
        let shared = sharer
            .share(
                &keys_query_answer(&peers).unwrap(),
                &keys_claim_answer(&peers),
            )
            .unwrap();
        assert_eq!(shared, 6);
        let outbox = cdb::outbox(sharer.store.conn()).unwrap();
        assert_eq!(outbox.len(), 3, "one request per user");

        // The same share with cross-signing: every device signed by its owner's identity, so
        // every device gets the key under the default rule, and is recorded as cross-signed.
        let cross_dir = dir.path().join("share-cross-signed");
        std::fs::create_dir_all(&cross_dir).unwrap();
        let mut sharer = KeyShareFixture::new(&cross_dir, &vault, &peers).unwrap();
        let answer = keys_query_answer_cross_signed(&peers).unwrap();
        assert_eq!(
            sharer.share(&answer, &keys_claim_answer(&peers)).unwrap(),
            6
        );
        for u in users_of(&peers) {
            let devices = cdb::devices_of(sharer.store.conn(), &u).unwrap();
            assert_eq!(devices.len(), 2);
            assert!(devices.iter().all(|d| d.cross_signed), "{devices:?}");
        }
        // A device the self-signing key did not sign is noticed by the check (a security
        // event: the fixture refuses such an answer rather than measure it).
        let mut forged: Value = serde_json::from_str(&answer).unwrap();
        let ghost_user = peers[0].user_id().to_owned();
        let ghost = PeerDevice::new(&ghost_user, "GHOST").unwrap();
        forged["device_keys"][&ghost_user]["GHOST"] = ghost.device_keys().unwrap();
        let ghost_dir = dir.path().join("share-ghost");
        std::fs::create_dir_all(&ghost_dir).unwrap();
        let mut sharer = KeyShareFixture::new(&ghost_dir, &vault, &peers).unwrap();
        let refused = sharer.share(&forged.to_string(), &keys_claim_answer(&peers));
        assert!(
            matches!(&refused, Err(Error::InvalidArgument { what }) if what.contains("security events")),
            "{refused:?}"
        );
    }

    #[test]
    fn raw_sqlcipher_inserts_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let fixture = ReceiveFixture::new(2, 20).unwrap();
        let mut raw = RawSqlcipher::open(dir.path(), vault.database_key().expose()).unwrap();
        raw.insert(&raw_rows(&fixture.events()[..10], 0)).unwrap();
        raw.insert(&raw_rows(&fixture.events()[10..], 10)).unwrap();
        let n: i64 = raw
            .conn
            .query_row("SELECT count(*) FROM timeline", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20);
    }
}
