//! Sans-IO tests of the E2EE layer: two devices, each an engine over its own encrypted store,
//! exchanging real Olm and Megolm messages through hand-built sync responses. This is where
//! the cases a live server cannot easily produce are driven: a room key arriving after the
//! message it unlocks, a key shared for another room, a forged Olm payload.

use serde_json::{Value, json};
use tchap_secure_hsm::Vault;
use tchap_secure_hsm::soft::SoftVault;
use tempfile::TempDir;

use super::engine::Engine;
use crate::api::types::{MEGOLM_ALGORITHM, SyncResponse};
use crate::client::sync::{self, SyncSummary};
use crate::store::Store;
use crate::store::crypto::{self as cdb, DeviceRecord, DeviceState};

struct Device {
    _dir: TempDir,
    _backend: SoftVault,
    _vault: Vault,
    store: Store,
    engine: Engine,
    record: DeviceRecord,
}

impl Device {
    fn new(user_id: &str, device_id: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (backend, vault) = crate::store::tests::test_vault(dir.path());
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let engine = store
            .transaction(|tx| {
                Engine::load_or_create(tx, user_id, device_id, vault.pickle_key())
                    .map_err(super::CryptoError::into_store_error)
            })
            .unwrap();
        let record = DeviceRecord {
            user_id: user_id.into(),
            device_id: device_id.into(),
            ed25519: engine.ed25519(),
            curve25519: engine.curve25519(),
            display_name: None,
            state: DeviceState::Tofu,
            deleted: false,
        };
        Self {
            _dir: dir,
            _backend: backend,
            _vault: vault,
            store,
            engine,
            record,
        }
    }

    /// Pins `other` (as a `/keys/query` would have) and joins `room` with it.
    fn knows(&mut self, other: &DeviceRecord, room: &str) {
        self.store
            .transaction(|tx| {
                cdb::save_device(tx, other)?;
                crate::store::rooms::upsert_room(tx, room, "join")?;
                crate::store::rooms::set_room_encryption(tx, room, MEGOLM_ALGORITHM)?;
                Ok(())
            })
            .unwrap();
    }

    /// One of this device's published one-time keys (signed object).
    fn one_time_key(&mut self) -> Value {
        let body = self
            .store
            .transaction(|tx| {
                self.engine
                    .take_upload_body(tx)
                    .map_err(super::CryptoError::into_store_error)
            })
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_str(&body).unwrap();
        body["one_time_keys"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone()
    }

    fn apply(&mut self, response: Value) -> SyncSummary {
        let response: SyncResponse = serde_json::from_value(response).unwrap();
        let Self { store, engine, .. } = self;
        store
            .transaction(|tx| sync::apply(tx, &response, Some(engine)))
            .unwrap()
    }

    fn timeline_state(&self, event_id: &str) -> (String, Option<String>, Option<String>) {
        let e = cdb::timeline_event(self.store.conn(), event_id)
            .unwrap()
            .unwrap();
        (e.state, e.body, e.error)
    }

    fn journal(&self) -> Vec<String> {
        self.store
            .security_events()
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }
}

/// Alice's Olm session to Bob, and an `m.room_key` for `room_key_room` of Alice's outbound
/// session of `room` — as a to-device event Bob would receive.
fn room_key_to_device(
    alice: &mut Device,
    bob: &mut Device,
    room: &str,
    room_key_room: &str,
) -> Value {
    let otk = bob.one_time_key();
    let bob_record = bob.record.clone();
    let Device { store, engine, .. } = alice;
    store
        .transaction(|tx| {
            let e = |e: super::CryptoError| e.into_store_error();
            engine
                .create_outbound_olm(tx, &bob_record, &otk)
                .map_err(e)?;
            engine.plan_outbound(tx, room, &[]).map_err(e)?;
            let mut key = engine.room_key_content(tx, room).map_err(e)?;
            key["room_id"] = json!(room_key_room);
            let content = engine
                .olm_encrypt(tx, &bob_record, "m.room_key", &key)
                .map_err(e)?;
            Ok(json!({"type": "m.room.encrypted", "sender": "@alice:srv", "content": content}))
        })
        .unwrap()
}

fn encrypt(alice: &mut Device, room: &str, body: &str, event_id: &str) -> Value {
    let Device { store, engine, .. } = alice;
    let content = store
        .transaction(|tx| {
            engine
                .megolm_encrypt(
                    tx,
                    room,
                    "m.room.message",
                    &json!({"msgtype": "m.text", "body": body}),
                )
                .map_err(super::CryptoError::into_store_error)
        })
        .unwrap();
    json!({"type": "m.room.encrypted", "event_id": event_id, "sender": "@alice:srv",
           "origin_server_ts": 1, "content": content})
}

fn timeline(batch: &str, room: &str, events: &[Value]) -> Value {
    json!({"next_batch": batch, "rooms": {"join": {room: {"timeline": {"events": events}}}}})
}

fn two_devices(room: &str) -> (Device, Device) {
    let mut alice = Device::new("@alice:srv", "ALICE");
    let mut bob = Device::new("@bob:srv", "BOB");
    let (a, b) = (alice.record.clone(), bob.record.clone());
    alice.knows(&b, room);
    bob.knows(&a, room);
    (alice, bob)
}

#[test]
fn a_late_room_key_decrypts_the_events_that_were_waiting_for_it() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    let m1 = encrypt(&mut alice, room, "premier", "$1");
    let m2 = encrypt(&mut alice, room, "second", "$2");
    // The messages arrive first: kept, waiting.
    let s = bob.apply(timeline("s1", room, &[m1, m2]));
    assert!(s.messages.is_empty());
    assert_eq!(bob.timeline_state("$1").0, "undecryptable");
    // The key arrives in the next response: both decrypt, reported as new messages, in order.
    let s = bob.apply(json!({"next_batch": "s2", "to_device": {"events": [key]}}));
    assert_eq!(s.room_keys, 1);
    let bodies: Vec<_> = s.messages.iter().map(|m| m.body.clone().unwrap()).collect();
    assert_eq!(bodies, ["premier", "second"]);
    assert_eq!(bob.timeline_state("$2").1.as_deref(), Some("second"));
    assert!(bob.journal().is_empty(), "{:?}", bob.journal());
}

#[test]
fn a_room_key_shared_for_another_room_is_caught_by_the_room_id_inside_the_plaintext() {
    let (room, other) = ("!r:srv", "!other:srv");
    let (mut alice, mut bob) = two_devices(room);
    bob.knows(&alice.record.clone(), other);
    // Alice's session for `room`, announced to Bob as belonging to `other`.
    let key = room_key_to_device(&mut alice, &mut bob, room, other);
    bob.apply(json!({"next_batch": "s1", "to_device": {"events": [key]}}));
    let moved = encrypt(&mut alice, room, "pour l'autre salon", "$m");
    bob.apply(timeline("s2", other, &[moved]));
    let (state, body, error) = bob.timeline_state("$m");
    assert_eq!((state.as_str(), body), ("refused", None));
    assert!(error.unwrap().contains("room id mismatch"));
    assert!(
        bob.journal()
            .contains(&"megolm_room_id_mismatch".to_owned())
    );
}

#[test]
fn a_replayed_message_index_is_refused_and_the_original_kept() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    let m = encrypt(&mut alice, room, "ordre", "$orig");
    let mut replay = m.clone();
    replay["event_id"] = json!("$replay");
    let s = bob.apply(json!({"next_batch": "s1", "to_device": {"events": [key]},
        "rooms": {"join": {room: {"timeline": {"events": [m, replay]}}}}}));
    assert_eq!(s.messages.len(), 1);
    assert_eq!(bob.timeline_state("$orig").1.as_deref(), Some("ordre"));
    assert_eq!(bob.timeline_state("$replay").0, "refused");
    assert!(bob.journal().contains(&"megolm_replay".to_owned()));
}

#[test]
fn forged_olm_payloads_and_unencrypted_room_keys_are_refused() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    // An Olm message claiming to come from another user than the one that sent the event.
    let mut key = room_key_to_device(&mut alice, &mut bob, room, room);
    key["sender"] = json!("@mallory:srv");
    let s = bob.apply(json!({"next_batch": "s1", "to_device": {"events": [key]}}));
    assert_eq!(s.room_keys, 0);
    // A room key in clear.
    let clear = json!({"type": "m.room_key", "sender": "@alice:srv",
        "content": {"algorithm": MEGOLM_ALGORITHM, "room_id": room, "session_id": "s", "session_key": "k"}});
    let s = bob.apply(json!({"next_batch": "s2", "to_device": {"events": [clear]}}));
    assert_eq!(s.room_keys, 0);
    // Not Olm at all.
    let garbage = json!({"type": "m.room.encrypted", "sender": "@alice:srv", "content": {
        "algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": alice.record.curve25519,
        "ciphertext": {bob.record.curve25519.clone(): {"type": 1, "body": "bm90IG9sbQ"}}}});
    bob.apply(json!({"next_batch": "s3", "to_device": {"events": [garbage]}}));
    // Well-formed Olm from Alice's real key that no session of Bob's decrypts (built on a
    // one-time key Bob never had): the channel is wedged.
    let stray = vodozemac::Curve25519PublicKey::from(&vodozemac::Curve25519SecretKey::new());
    let bob_curve = vodozemac::Curve25519PublicKey::from_base64(&bob.record.curve25519).unwrap();
    let mut session = alice
        .engine
        .account
        .inner()
        .create_outbound_session(vodozemac::olm::SessionConfig::version_1(), bob_curve, stray)
        .unwrap();
    let message = serde_json::to_value(session.encrypt("{}").unwrap()).unwrap();
    let wedged = json!({"type": "m.room.encrypted", "sender": "@alice:srv", "content": {
        "algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": alice.record.curve25519,
        "ciphertext": {bob.record.curve25519.clone(): message}}});
    bob.apply(json!({"next_batch": "s4", "to_device": {"events": [wedged.clone()]}}));
    // One recovery (new session + m.dummy) is scheduled for Alice's device …
    let pending = cdb::pending_unwedges(bob.store.conn()).unwrap();
    assert_eq!(pending, [("@alice:srv".to_owned(), "ALICE".to_owned())]);
    cdb::unwedge_done(bob.store.conn(), "@alice:srv", "ALICE").unwrap();
    // … and not another within the hour, however many failures follow.
    bob.apply(json!({"next_batch": "s5", "to_device": {"events": [wedged]}}));
    assert!(cdb::pending_unwedges(bob.store.conn()).unwrap().is_empty());
    let journal = bob.journal();
    for expected in [
        "to_device_olm_payload",
        "unencrypted_room_key_refused",
        "to_device_malformed",
        "to_device_olm_decrypt",
    ] {
        assert!(
            journal.contains(&expected.to_owned()),
            "no {expected} in {journal:?}"
        );
    }
}

#[test]
fn a_blocked_device_gets_no_room_key_and_is_told_so() {
    let room = "!r:srv";
    let (mut alice, bob) = two_devices(room);
    let mut blocked = bob.record.clone();
    blocked.state = DeviceState::Blocked;
    let Device { store, engine, .. } = &mut alice;
    let plan = store
        .transaction(|tx| {
            engine
                .plan_outbound(tx, room, std::slice::from_ref(&blocked))
                .map_err(super::CryptoError::into_store_error)
        })
        .unwrap();
    assert!(plan.to_share.is_empty());
    assert_eq!(plan.to_withhold, vec![blocked]);
}
