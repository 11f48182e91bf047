//! Benchmark fixtures (feature `bench-internals`, enabled only by the benchmark harness in
//! `tests/`; never in a release library): the receive path run without a network, on the
//! same code `Client::sync_once` runs after the HTTP request.
//!
//! [`ReceiveFixture`] holds a sender (an E2EE engine with an outbound Megolm session) and the
//! messages it encrypted; [`ReceiveFixture::receive`] feeds them to a fresh receiver store as
//! sync responses of 100 timeline events — decryption, the sender/room/replay checks and the
//! SQLCipher writes, one transaction per response — and [`ReceiveFixture::decrypt_raw`]
//! decrypts the same ciphertexts with bare vodozemac, the physical limit.

use std::path::Path;

use serde_json::{Value, json};
use tchap_secure_hsm::Vault;
use vodozemac::megolm::{InboundGroupSession, MegolmMessage, SessionConfig, SessionKey};

use crate::api::types::SyncResponse;
use crate::client::sync;
use crate::crypto::CryptoError;
use crate::crypto::engine::Engine;
use crate::error::Error;
use crate::store::Store;
use crate::store::crypto::{DeviceRecord, DeviceState};

const ROOM: &str = "!bench:secure.tchap.test";
const SENDER: &str = "@alice:secure.tchap.test";
const RECEIVER: &str = "@bob:secure.tchap.test";

/// Encrypted messages from one sender in one room, and what a receiver needs to read them.
pub struct ReceiveFixture {
    sender: DeviceRecord,
    room_key: Value,
    session_key: String,
    events: Vec<Value>,
}

impl ReceiveFixture {
    /// Encrypts `count` text messages with a new outbound session of a sender whose store
    /// lives in `sender_dir` (keys from `vault`).
    pub fn new(sender_dir: &Path, vault: &Vault, count: usize) -> Result<Self, Error> {
        let mut store = Store::open(sender_dir, &vault.database_key())?;
        let (engine, room_key, events) = store.transaction(|tx| {
            let engine = Engine::load_or_create(tx, SENDER, "ALICEDEV", vault.pickle_key())
                .map_err(CryptoError::into_store_error)?;
            engine
                .plan_outbound(tx, ROOM, &[])
                .map_err(CryptoError::into_store_error)?;
            let room_key = engine
                .room_key_content(tx, ROOM)
                .map_err(CryptoError::into_store_error)?;
            let mut events = Vec::with_capacity(count);
            for i in 0..count {
                let content =
                    json!({ "msgtype": "m.text", "body": format!("message {i} du cabinet") });
                let encrypted = engine
                    .megolm_encrypt(tx, ROOM, "m.room.message", &content)
                    .map_err(CryptoError::into_store_error)?;
                events.push(json!({
                    "type": "m.room.encrypted",
                    "event_id": format!("$bench{i}"),
                    "sender": SENDER,
                    "origin_server_ts": 1_700_000_000_000_u64 + i as u64,
                    "content": encrypted,
                }));
            }
            Ok((engine, room_key, events))
        })?;
        let session_key = room_key
            .get("session_key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Self {
            sender: DeviceRecord {
                user_id: SENDER.into(),
                device_id: "ALICEDEV".into(),
                ed25519: engine.ed25519(),
                curve25519: engine.curve25519(),
                display_name: None,
                state: DeviceState::Tofu,
                deleted: false,
            },
            room_key,
            session_key,
            events,
        })
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Prepares a receiver in `dir` that holds the room key (as if received over Olm).
    pub fn receiver(&self, dir: &Path, vault: &Vault) -> Result<Receiver, Error> {
        let mut store = Store::open(dir, &vault.database_key())?;
        let engine = store.transaction(|tx| {
            let engine = Engine::load_or_create(tx, RECEIVER, "BOBDEV", vault.pickle_key())
                .map_err(CryptoError::into_store_error)?;
            crate::store::crypto::save_device(tx, &self.sender)?;
            crate::store::rooms::upsert_room(tx, ROOM, "join")?;
            crate::store::rooms::set_room_encryption(
                tx,
                ROOM,
                crate::api::types::MEGOLM_ALGORITHM,
            )?;
            engine
                .receive_room_key(tx, &self.sender, &self.room_key)
                .map_err(CryptoError::into_store_error)?;
            Ok(engine)
        })?;
        Ok(Receiver { store, engine })
    }

    /// The full receive path: sync responses of 100 events, each applied in one transaction.
    /// Returns how many messages were decrypted.
    pub fn receive(&self, receiver: &mut Receiver) -> Result<usize, Error> {
        let mut decrypted = 0;
        for (n, chunk) in self.events.chunks(100).enumerate() {
            let response: SyncResponse = serde_json::from_value(json!({
                "next_batch": format!("s{n}"),
                "rooms": { "join": { ROOM: { "timeline": { "events": chunk } } } },
            }))
            .map_err(|e| Error::InvalidArgument {
                what: e.to_string(),
            })?;
            let Receiver { store, engine } = receiver;
            let summary = store.transaction(|tx| sync::apply(tx, &response, Some(engine)))?;
            decrypted += summary.messages.len();
        }
        Ok(decrypted)
    }

    /// The same ciphertexts decrypted by bare vodozemac (no checks, no storage).
    pub fn decrypt_raw(&self) -> Result<usize, Error> {
        let bad = |what: &str| Error::InvalidArgument {
            what: what.to_owned(),
        };
        let key = SessionKey::from_base64(&self.session_key).map_err(|_| bad("session key"))?;
        let mut session = InboundGroupSession::new(&key, SessionConfig::version_1());
        let mut n = 0;
        for event in &self.events {
            let ciphertext = event
                .pointer("/content/ciphertext")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("ciphertext"))?;
            let message = MegolmMessage::from_base64(ciphertext).map_err(|_| bad("message"))?;
            let plaintext = session.decrypt(&message).map_err(|_| bad("decrypt"))?;
            n += usize::from(!plaintext.plaintext.is_empty());
        }
        Ok(n)
    }
}

/// A receiving device: its store and engine.
pub struct Receiver {
    store: Store,
    engine: Engine,
}
