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
            cross_signed: false,
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

    /// This device's pending `/keys/upload` body (taken: its one-time keys are sent once).
    fn upload_body(&mut self) -> Value {
        let body = self
            .store
            .transaction(|tx| {
                self.engine
                    .take_upload_body(tx)
                    .map_err(super::CryptoError::into_store_error)
            })
            .unwrap()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// One of this device's published one-time keys (signed object).
    fn one_time_key(&mut self) -> Value {
        let body = self.upload_body();
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
        let e = crate::store::timeline::timeline_event(self.store.conn(), event_id)
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
            engine
                .plan_outbound(tx, room, &[], &Default::default())
                .map_err(e)?;
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

/// Alice's Megolm event with `content` (any m.room.message content).
fn encrypt_content(alice: &mut Device, room: &str, content: Value, event_id: &str) -> Value {
    let Device { store, engine, .. } = alice;
    let content = store
        .transaction(|tx| {
            engine
                .megolm_encrypt(tx, room, "m.room.message", &content)
                .map_err(super::CryptoError::into_store_error)
        })
        .unwrap();
    json!({"type": "m.room.encrypted", "event_id": event_id, "sender": "@alice:srv",
           "origin_server_ts": 1, "content": content})
}

/// What the sync stores with a decrypted event: its Megolm session id, a validated attachment
/// (summary only), and for a media message with a clear `url` the refusal, no attachment.
#[test]
fn a_decrypted_event_keeps_its_session_its_attachment_or_its_refusal() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    bob.apply(json!({"next_batch": "s1", "to_device": {"events": [key]}}));
    let file = encrypt_content(
        &mut alice,
        room,
        json!({"msgtype": "m.file", "body": "note.txt", "filename": "note.txt",
               "info": {"size": 12, "mimetype": "text/plain"},
               "file": crate::media::test_vectors::sdk_file_json()}),
        "$file",
    );
    let clear = encrypt_content(
        &mut alice,
        room,
        json!({"msgtype": "m.file", "body": "clair.txt", "url": "mxc://srv/clair"}),
        "$clear",
    );
    let text = encrypt(&mut alice, room, "texte", "$text");
    bob.apply(timeline("s2", room, &[file, clear, text]));
    let event = |id: &str| {
        crate::store::timeline::timeline_event(bob.store.conn(), id)
            .unwrap()
            .unwrap()
    };
    let (file, clear, text) = (event("$file"), event("$clear"), event("$text"));
    let session = text.session_id.clone().expect("the session id is stored");
    assert!(!session.is_empty());
    assert_eq!(file.session_id.as_deref(), Some(session.as_str()));
    let attachment = file.attachment.expect("a validated attachment");
    assert_eq!(
        (attachment.msgtype.as_str(), attachment.name.as_str()),
        ("m.file", "note.txt")
    );
    assert_eq!(file.error, None);
    assert!(clear.attachment.is_none());
    assert!(clear.error.is_some(), "{clear:?}");
    assert!(bob.journal().contains(&"attachment_refused".to_owned()));
    assert!(text.attachment.is_none() && text.error.is_none());
}

/// The trust shown with each message: our own device, a pinned device (also another device of
/// our own user), a blocked one, one that is gone or whose key no longer matches.
#[test]
fn each_message_carries_the_trust_of_its_sending_device() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let mut bob2 = Device::new("@bob:srv", "BOB2");
    let bob2_record = bob2.record.clone();
    bob.knows(&bob2_record, room);
    bob2.knows(&bob.record.clone(), room);
    // Two of Bob's one-time keys, one for Alice, one for his other device.
    let body = bob.upload_body();
    let otks: Vec<Value> = body["one_time_keys"]
        .as_object()
        .unwrap()
        .values()
        .take(2)
        .cloned()
        .collect();
    let bob_record = bob.record.clone();
    let share = |from: &mut Device, otk: &Value| {
        let Device { store, engine, .. } = from;
        store
            .transaction(|tx| {
                let e = |e: super::CryptoError| e.into_store_error();
                engine
                    .create_outbound_olm(tx, &bob_record, otk)
                    .map_err(e)?;
                engine
                    .plan_outbound(tx, room, &[], &Default::default())
                    .map_err(e)
            })
            .unwrap();
    };
    share(&mut alice, &otks[0]);
    share(&mut bob2, &otks[1]);
    let key = olm_room_key(&mut alice, &bob_record, room);
    let mut key2 = olm_room_key(&mut bob2, &bob_record, room);
    // Bob2's events say "@bob:srv" as their sender.
    key2["sender"] = json!("@bob:srv");
    bob.apply(json!({"next_batch": "s1", "to_device": {"events": [key, key2]}}));
    let trust = |bob: &Device, id: &str| {
        crate::store::timeline::timeline_event(bob.store.conn(), id)
            .unwrap()
            .unwrap()
            .trust
    };

    let from_alice = encrypt(&mut alice, room, "d'Alice", "$a1");
    let mut from_bob2 = encrypt(&mut bob2, room, "de mon autre appareil", "$b2");
    from_bob2["sender"] = json!("@bob:srv");
    {
        let Device { store, engine, .. } = &mut bob;
        store
            .transaction(|tx| {
                engine
                    .plan_outbound(tx, room, &[], &Default::default())
                    .map_err(super::CryptoError::into_store_error)
            })
            .unwrap();
    }
    let mut own = encrypt(&mut bob, room, "de moi", "$own");
    own["sender"] = json!("@bob:srv");
    bob.apply(timeline("s2", room, &[from_alice, from_bob2, own]));
    assert_eq!(trust(&bob, "$a1").as_deref(), Some("tofu"));
    assert_eq!(trust(&bob, "$b2").as_deref(), Some("tofu"));
    assert_eq!(trust(&bob, "$own").as_deref(), Some("own_device"));

    // Alice's device blocked (a key change seen later): her next message says so.
    let mut blocked = alice.record.clone();
    blocked.state = DeviceState::Blocked;
    cdb::save_device(bob.store.conn(), &blocked).unwrap();
    let m = encrypt(&mut alice, room, "bloquée", "$a2");
    bob.apply(timeline("s3", room, &[m]));
    assert_eq!(trust(&bob, "$a2").as_deref(), Some("blocked"));
    // Blocked, then gone from her list: still blocked (the block outlives the listing).
    let mut blocked_gone = blocked.clone();
    blocked_gone.deleted = true;
    cdb::save_device(bob.store.conn(), &blocked_gone).unwrap();
    let m = encrypt(&mut alice, room, "bloquée et partie", "$a2b");
    bob.apply(timeline("s3b", room, &[m]));
    assert_eq!(trust(&bob, "$a2b").as_deref(), Some("blocked"));

    // Gone from her device list: unknown. Listed again under another key: unknown.
    let mut gone = alice.record.clone();
    gone.deleted = true;
    cdb::save_device(bob.store.conn(), &gone).unwrap();
    let m = encrypt(&mut alice, room, "partie", "$a3");
    bob.apply(timeline("s4", room, &[m]));
    assert_eq!(trust(&bob, "$a3").as_deref(), Some("unknown"));
    let mut rekeyed = alice.record.clone();
    rekeyed.ed25519 = bob2_record.ed25519.clone();
    cdb::save_device(bob.store.conn(), &rekeyed).unwrap();
    let m = encrypt(&mut alice, room, "autre clé", "$a4");
    bob.apply(timeline("s5", room, &[m]));
    assert_eq!(trust(&bob, "$a4").as_deref(), Some("unknown"));
}

/// A room key re-shared later (from a later index) never replaces the earlier copy we hold:
/// the messages between the two indexes still decrypt.
#[test]
fn a_later_copy_of_a_room_key_does_not_replace_an_earlier_one() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    bob.apply(json!({"next_batch": "s1", "to_device": {"events": [key]}}));
    let m0 = encrypt(&mut alice, room, "zéro", "$0");
    let m1 = encrypt(&mut alice, room, "un", "$1");
    // The same session exported again, now at index 2, over the existing Olm session.
    let bob_record = bob.record.clone();
    let later = olm_room_key(&mut alice, &bob_record, room);
    bob.apply(json!({"next_batch": "s2", "to_device": {"events": [later]}}));
    bob.apply(timeline("s3", room, &[m0, m1]));
    assert_eq!(bob.timeline_state("$0").1.as_deref(), Some("zéro"));
    assert_eq!(bob.timeline_state("$1").1.as_deref(), Some("un"));
}

/// An encrypted event without an event id is counted as malformed, and nothing is stored.
#[test]
fn an_encrypted_event_without_an_id_is_counted_malformed() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    bob.apply(json!({"next_batch": "s1", "to_device": {"events": [key]}}));
    let mut m = encrypt(&mut alice, room, "sans identifiant", "$x");
    m.as_object_mut().unwrap().remove("event_id");
    let s = bob.apply(timeline("s2", room, &[m]));
    assert_eq!(s.malformed_events, 1, "{s:?}");
    assert!(s.messages.is_empty());
}

/// Alice's Olm message carrying her room key of `room` to Bob, as a to-device event (over the
/// session Alice already has with Bob).
fn olm_room_key(alice: &mut Device, bob: &DeviceRecord, room: &str) -> Value {
    let Device { store, engine, .. } = alice;
    store
        .transaction(|tx| {
            let e = |e: super::CryptoError| e.into_store_error();
            let key = engine.room_key_content(tx, room).map_err(e)?;
            let content = engine.olm_encrypt(tx, bob, "m.room_key", &key).map_err(e)?;
            Ok(json!({"type": "m.room.encrypted", "sender": "@alice:srv", "content": content}))
        })
        .unwrap()
}

/// Issue 15 item 3: a pre-key message replayed to our fallback key (never consumed, unlike a
/// one-time key) must not create the session again over the one it already advanced. Before
/// the fix the replay re-created the session and overwrote the stored one.
#[test]
fn a_replayed_pre_key_message_to_the_fallback_key_changes_no_olm_session() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    // Bob's fallback key, as Alice would claim it once his one-time keys are gone.
    let body = bob.upload_body();
    let fallback = body["fallback_keys"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(fallback["fallback"], true);
    let bob_record = bob.record.clone();
    {
        let Device { store, engine, .. } = &mut alice;
        store
            .transaction(|tx| {
                let e = |e: super::CryptoError| e.into_store_error();
                engine
                    .create_outbound_olm(tx, &bob_record, &fallback)
                    .map_err(e)?;
                engine
                    .plan_outbound(tx, room, &[], &Default::default())
                    .map_err(e)
            })
            .unwrap();
    }
    // Two pre-key messages (Bob has not answered): the first creates the session, the second
    // advances it.
    let first = olm_room_key(&mut alice, &bob_record, room);
    let second = olm_room_key(&mut alice, &bob_record, room);
    assert_eq!(
        first["content"]["ciphertext"][bob.record.curve25519.as_str()]["type"],
        0
    );
    assert_eq!(
        bob.apply(json!({"next_batch": "s1", "to_device": {"events": [first.clone()]}}))
            .room_keys,
        1
    );
    bob.apply(json!({"next_batch": "s2", "to_device": {"events": [second]}}));
    let alice_curve = alice.record.curve25519.clone();
    let snapshot = |bob: &Device| cdb::olm_sessions(bob.store.conn(), &alice_curve).unwrap();
    let before = snapshot(&bob);
    assert_eq!(before.len(), 1);

    // The server replays the first one.
    let s = bob.apply(json!({"next_batch": "s3", "to_device": {"events": [first]}}));
    assert_eq!(s.room_keys, 0);
    assert!(
        bob.journal().contains(&"to_device_olm_replay".to_owned()),
        "{:?}",
        bob.journal()
    );
    let after = snapshot(&bob);
    assert_eq!(after.len(), 1, "the replay created a session");
    assert_eq!(after[0].0, before[0].0);
    assert!(
        after[0].1 == before[0].1,
        "the replay rewrote the stored Olm session"
    );

    // The channel still works: Alice's next message decrypts with the same session.
    let third = olm_room_key(&mut alice, &bob_record, room);
    let s = bob.apply(json!({"next_batch": "s4", "to_device": {"events": [third]}}));
    assert_eq!(s.security_events, 0, "{:?}", bob.journal());
    assert_eq!(snapshot(&bob).len(), 1);
    let m = encrypt(&mut alice, room, "toujours là", "$after");
    bob.apply(timeline("s5", room, &[m]));
    assert_eq!(
        bob.timeline_state("$after").1.as_deref(),
        Some("toujours là")
    );
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
                .plan_outbound(
                    tx,
                    room,
                    std::slice::from_ref(&blocked),
                    &Default::default(),
                )
                .map_err(super::CryptoError::into_store_error)
        })
        .unwrap();
    assert!(plan.to_share.is_empty());
    assert_eq!(plan.to_withhold.len(), 1);
    assert_eq!(plan.to_withhold[0].0, blocked);
    assert_eq!(plan.to_withhold[0].1.code, "m.blacklisted");
}

/// The sharing rule of cross-signing (issue 16): for a user with a pinned identity only the
/// devices it signed get the room key; the others are told `m.unverified`; a changed identity
/// gets nothing; `share_keys_with: verified` waits for a verification; a user without any
/// identity is shared with as before unless `require_cross_signing`.
#[test]
fn room_keys_go_only_to_devices_the_owners_identity_signed() {
    use crate::config::KeySharing;
    use crate::crypto::cross_signing::SharingPolicy;
    use crate::store::identity::{self as idb, IdentityRecord, IdentityState};
    let room = "!xs:srv";
    let (mut alice, bob) = two_devices(room);
    let signed = DeviceRecord {
        cross_signed: true,
        ..bob.record.clone()
    };
    let ghost = DeviceRecord {
        device_id: "GHOST".into(),
        ed25519: "g".into(),
        curve25519: "c".into(),
        cross_signed: false,
        ..bob.record.clone()
    };
    let Device { store, engine, .. } = &mut alice;
    let mut plan =
        |devices: &[DeviceRecord], policy: SharingPolicy, identity: Option<IdentityState>| {
            store
                .transaction(|tx| {
                    tx.execute("DELETE FROM identities", [])?;
                    tx.execute("DELETE FROM outbound_group_sessions", [])?;
                    if let Some(state) = identity {
                        idb::save_identity(
                            tx,
                            &IdentityRecord {
                                user_id: signed.user_id.clone(),
                                master: "M".into(),
                                self_signing: Some("S".into()),
                                state,
                                changed_master: None,
                            },
                        )?;
                    }
                    engine
                        .plan_outbound(tx, room, devices, &policy)
                        .map_err(super::CryptoError::into_store_error)
                })
                .unwrap()
        };
    let ids = |v: &[DeviceRecord]| v.iter().map(|d| d.device_id.clone()).collect::<Vec<_>>();
    let withheld = |p: &super::megolm::OutboundPlan| {
        p.to_withhold
            .iter()
            .map(|(d, w)| (d.device_id.clone(), w.code))
            .collect::<Vec<_>>()
    };
    let both = [signed.clone(), ghost.clone()];
    let default = SharingPolicy::default();
    // Pinned identity: the signed device gets the key, the ghost is told m.unverified.
    let p = plan(&both, default, Some(IdentityState::Pinned));
    assert_eq!(ids(&p.to_share), std::slice::from_ref(&signed.device_id));
    assert_eq!(withheld(&p), [("GHOST".to_owned(), "m.unverified")]);
    // A changed identity: nobody of that user gets it.
    let p = plan(&both, default, Some(IdentityState::Changed));
    assert!(p.to_share.is_empty());
    assert_eq!(withheld(&p).len(), 2);
    // `verified`: a pinned identity is not enough; a verified one is.
    let verified = SharingPolicy {
        share_keys_with: KeySharing::Verified,
        require_cross_signing: false,
    };
    let p = plan(&both, verified, Some(IdentityState::Pinned));
    assert!(p.to_share.is_empty());
    let p = plan(&both, verified, Some(IdentityState::Verified));
    assert_eq!(ids(&p.to_share), std::slice::from_ref(&signed.device_id));
    // No identity: legacy trust on first use, unless required.
    let p = plan(&both, default, None);
    assert_eq!(p.to_share.len(), 2);
    assert!(p.to_withhold.is_empty());
    let required = SharingPolicy {
        share_keys_with: KeySharing::CrossSigned,
        require_cross_signing: true,
    };
    let p = plan(&both, required, None);
    assert!(p.to_share.is_empty());
    assert_eq!(withheld(&p).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Complete timelines (issue 14): gaps, history, local echoes, the send queue's lanes.

use crate::api::types::MessagesResponse;
use crate::client::timeline::{apply_gap_page, apply_history_page};
use crate::store::timeline as tl;

fn page(chunk: &[&Value], end: Option<&str>) -> MessagesResponse {
    serde_json::from_value(json!({"chunk": chunk, "end": end})).unwrap()
}

impl Device {
    /// Applies one page to the room's only open gap, as `Client::fill_gaps` does.
    fn gap_page(&mut self, page: &MessagesResponse) -> SyncSummary {
        let Self { store, engine, .. } = self;
        store
            .transaction(|tx| {
                let gap = tl::open_gaps(tx, 10)?.pop().expect("an open gap");
                let mut summary = SyncSummary::default();
                apply_gap_page(tx, engine, &gap, page, "@bob:srv", &mut summary)?;
                Ok(summary)
            })
            .unwrap()
    }

    fn history_page(&mut self, room: &str, page: &MessagesResponse) -> (Vec<String>, bool) {
        let Self { store, engine, .. } = self;
        store
            .transaction(|tx| {
                let cursor = tl::room_cursor(tx, room)?.unwrap();
                let mut summary = SyncSummary::default();
                let from = cursor.back_token.as_deref();
                let (events, done) =
                    apply_history_page(tx, engine, room, from, page, &mut summary)?;
                Ok((events.into_iter().map(|e| e.event_id).collect(), done))
            })
            .unwrap()
    }

    /// The room's timeline as `messages` returns it: `(event id, state, body)`.
    fn messages(&self, room: &str) -> Vec<(String, String, Option<String>)> {
        tl::timeline(self.store.conn(), room, 10_000)
            .unwrap()
            .into_iter()
            .map(|e| (e.event_id, e.state, e.body))
            .collect()
    }
}

fn limited(batch: &str, room: &str, events: &[Value], prev_batch: &str) -> Value {
    json!({"next_batch": batch, "rooms": {"join": {room: {"timeline": {
        "events": events, "limited": true, "prev_batch": prev_batch}}}}})
}

#[test]
fn a_limited_sync_opens_a_gap_that_back_pages_fill_in_order_exactly_once() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    let m: Vec<Value> = (0..10)
        .map(|i| encrypt(&mut alice, room, &format!("message {i}"), &format!("${i}")))
        .collect();
    let mut first = timeline("s1", room, &m[0..2]);
    first["to_device"] = json!({"events": [key]});
    bob.apply(first);
    // Offline: the next sync has only the last two, `limited`.
    let s = bob.apply(limited("s2", room, &m[8..10], "p8"));
    assert_eq!(s.gaps_opened, 1);
    let ids: Vec<_> = bob.messages(room).into_iter().map(|e| e.0).collect();
    assert_eq!(ids, ["$0", "$1", "$8", "$9"]);
    let gap = tl::open_gaps(bob.store.conn(), 10).unwrap().pop().unwrap();
    assert_eq!(
        (gap.from_token.as_str(), gap.until_event.as_deref()),
        ("p8", Some("$1"))
    );
    // Page 1 (newest first), then the same page again (a crash before the gap's progress was
    // seen by the caller): nothing stored twice, the gap not moved twice.
    let p1 = page(&[&m[7], &m[6], &m[5]], Some("p5"));
    let s = bob.gap_page(&p1);
    assert_eq!(s.backfilled, 3);
    let bodies: Vec<_> = s.messages.iter().map(|e| e.body.clone().unwrap()).collect();
    assert_eq!(bodies, ["message 5", "message 6", "message 7"]);
    // A back-filled message carries what a synced one does: the Olm-verified sending device,
    // its trust, the Megolm session.
    let e = &s.messages[0];
    assert_eq!(
        (
            e.sender_device.as_deref(),
            e.trust.as_deref(),
            e.error.as_deref()
        ),
        (Some("ALICE"), Some("tofu"), None)
    );
    assert_eq!(
        e.session_id.as_deref(),
        m[5]["content"]["session_id"].as_str()
    );
    let after_p1 = tl::open_gaps(bob.store.conn(), 10).unwrap().pop().unwrap();
    assert_eq!(after_p1.from_token, "p5");
    // Page 2 reaches the event before the gap: the gap closes there ($0 is not touched).
    let p2 = page(&[&m[4], &m[3], &m[2], &m[1], &m[0]], Some("p0"));
    let s = bob.gap_page(&p2);
    assert_eq!(s.backfilled, 3);
    assert_eq!(tl::gap_count(bob.store.conn()).unwrap(), 0);
    let got = bob.messages(room);
    let expected: Vec<_> = (0..10)
        .map(|i| {
            (
                format!("${i}"),
                "decrypted".to_owned(),
                Some(format!("message {i}")),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(bob.journal().is_empty(), "{:?}", bob.journal());
    // Every event has a position of its own (no tie left to the database's whim).
    let (rows, positions): (i64, i64) = bob
        .store
        .conn()
        .query_row(
            "SELECT count(*), count(DISTINCT ord) FROM timeline WHERE room_id = ?1",
            [room],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, positions), (10, 10));
    // A `limited` slice that still holds the last event we have is continuous: no gap.
    let m10 = encrypt(&mut alice, room, "message 10", "$10");
    let s = bob.apply(limited("s3", room, &[m[9].clone(), m10], "p9"));
    assert_eq!(s.gaps_opened, 0);
    assert_eq!(bob.messages(room).len(), 11);
}

#[test]
fn a_back_filled_event_gets_every_check_of_the_sync() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    let m: Vec<Value> = (0..4)
        .map(|i| encrypt(&mut alice, room, &format!("m{i}"), &format!("${i}")))
        .collect();
    let mut first = timeline("s1", room, &m[0..1]);
    first["to_device"] = json!({"events": [key]});
    bob.apply(first);
    bob.apply(limited("s2", room, &m[3..4], "p3"));
    // In the gap: a replay of $2's index under another id, a message in clear, an event for
    // another room's session (no key: waits), and $2 itself.
    let mut replay = m[2].clone();
    replay["event_id"] = json!("$replay");
    let clear = json!({"type": "m.room.message", "event_id": "$clear", "sender": "@alice:srv",
        "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": "en clair"}});
    let mut unknown = m[1].clone();
    unknown["content"]["session_id"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    unknown["event_id"] = json!("$unknown");
    let oversized = json!({"type": "m.room.encrypted", "event_id": "$big", "sender": "@alice:srv",
        "content": {"padding": "x".repeat(70_000)}});
    let not_an_event = json!({"type": 12});
    let no_id = json!({"type": "m.room.encrypted", "sender": "@alice:srv", "content": {}});
    let s = bob.gap_page(&page(
        &[
            &replay,
            &oversized,
            &m[2],
            &clear,
            &not_an_event,
            &no_id,
            &unknown,
            &m[1],
            &m[0],
        ],
        None,
    ));
    assert_eq!(s.malformed_events, 3);
    assert_eq!(
        bob.messages(room).iter().filter(|e| e.0 == "$big").count(),
        0
    );
    assert_eq!(bob.timeline_state("$2").1.as_deref(), Some("m2"));
    // As in a sync, the earlier of the two (in the server's order) is kept, the later refused.
    assert_eq!(bob.timeline_state("$replay").0, "refused");
    assert!(bob.journal().contains(&"megolm_replay".to_owned()));
    assert_eq!(bob.timeline_state("$clear").0, "refused");
    assert!(
        bob.journal()
            .contains(&"unencrypted_message_refused".to_owned())
    );
    assert_eq!(bob.timeline_state("$unknown").0, "undecryptable");
    assert_eq!(tl::gap_count(bob.store.conn()).unwrap(), 0);
}

#[test]
fn a_gap_in_a_room_joined_since_stops_at_our_join() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    bob.apply(json!({"next_batch": "s0", "to_device": {"events": [key]}}));
    // Bob's store knows the room as joined (as `Client::join` leaves it) and holds one event.
    let pre = encrypt(&mut alice, room, "before", "$pre");
    bob.apply(timeline("s1", room, &[pre]));
    bob.store
        .transaction(|tx| {
            let mut c = tl::room_cursor(tx, room)?.unwrap();
            c.last_event_id = None;
            tl::save_room_cursor(tx, room, &c)
        })
        .unwrap();
    let m: Vec<Value> = (0..3)
        .map(|i| encrypt(&mut alice, room, &format!("m{i}"), &format!("${i}")))
        .collect();
    bob.apply(limited("s2", room, &m[2..3], "p2"));
    let join = json!({"type": "m.room.member", "state_key": "@bob:srv", "sender": "@bob:srv",
        "event_id": "$join", "content": {"membership": "join"},
        "unsigned": {"prev_content": {"membership": "invite"}}});
    let older = encrypt(&mut alice, room, "older than the join", "$older");
    // State events that are not Bob's join: a profile change of Bob (already joined), another
    // member's join, a topic — the fill goes past them.
    let rename = json!({"type": "m.room.member", "state_key": "@bob:srv", "sender": "@bob:srv",
        "event_id": "$rename", "content": {"membership": "join", "displayname": "Bob"},
        "unsigned": {"prev_content": {"membership": "join"}}});
    let carol = json!({"type": "m.room.member", "state_key": "@carol:srv", "sender": "@carol:srv",
        "event_id": "$carol", "content": {"membership": "join"}});
    let topic = json!({"type": "m.room.topic", "state_key": "", "sender": "@bob:srv",
        "event_id": "$topic", "content": {"membership": "join", "topic": "t"}});
    let invite = json!({"type": "m.room.member", "state_key": "@bob:srv", "sender": "@alice:srv",
        "event_id": "$invite", "content": {"membership": "invite"}});
    // Sent while Bob was only invited: older than his join, so history, not part of the gap.
    let between = encrypt(&mut alice, room, "while invited", "$between");
    bob.gap_page(&page(
        &[
            &m[1], &rename, &carol, &topic, &m[0], &join, &between, &invite, &older,
        ],
        Some("p-1"),
    ));
    assert_eq!(tl::gap_count(bob.store.conn()).unwrap(), 0);
    let ids: Vec<_> = bob.messages(room).into_iter().map(|e| e.0).collect();
    assert_eq!(ids, ["$pre", "$0", "$1", "$2"]);
}

#[test]
fn a_gap_fill_stops_at_an_event_already_stored() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    let older = encrypt(&mut alice, room, "older", "$older");
    let m: Vec<Value> = (0..4)
        .map(|i| encrypt(&mut alice, room, &format!("s{i}"), &format!("${i}")))
        .collect();
    // The last event Bob holds is a state event (the gap must reach it), after $0.
    let name = json!({"type": "m.room.name", "state_key": "", "sender": "@alice:srv",
        "event_id": "$name", "content": {"name": "Salon"}});
    let mut first = timeline("s1", room, &[m[0].clone(), name]);
    first["to_device"] = json!({"events": [key]});
    bob.apply(first);
    bob.apply(limited("s2", room, &m[3..4], "p3"));
    // The server's page lacks the state event: the fill stops at $0, which Bob has, and does
    // not go on into what is older than it.
    bob.gap_page(&page(&[&m[2], &m[1], &m[0], &older], Some("p-1")));
    assert_eq!(tl::gap_count(bob.store.conn()).unwrap(), 0);
    let ids: Vec<_> = bob.messages(room).into_iter().map(|e| e.0).collect();
    assert_eq!(ids, ["$0", "$1", "$2", "$3"]);
}

#[test]
fn unusable_tokens_open_no_gap_and_end_a_pagination() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    let m: Vec<Value> = (0..5)
        .map(|i| encrypt(&mut alice, room, &format!("t{i}"), &format!("${i}")))
        .collect();
    let mut first = timeline("s1", room, &m[0..1]);
    first["to_device"] = json!({"events": [key]});
    bob.apply(first);
    // An empty or oversized `prev_batch` cannot be sent back: no gap is recorded from it.
    let s = bob.apply(limited("s2", room, &m[1..2], ""));
    assert_eq!(s.gaps_opened, 0);
    let huge = "t".repeat(sync::MAX_SYNC_TOKEN_BYTES + 1);
    let s = bob.apply(limited("s3", room, &m[2..3], &huge));
    assert_eq!(s.gaps_opened, 0);
    assert!(sync::valid_token("t"));
    assert!(sync::valid_token(&"t".repeat(sync::MAX_SYNC_TOKEN_BYTES)));
    // A page whose `end` is unusable ends the gap there rather than storing a bad token.
    let s = bob.apply(limited("s4", room, &m[4..5], "p4"));
    assert_eq!(s.gaps_opened, 1);
    bob.gap_page(&page(&[&m[3]], Some("")));
    assert_eq!(tl::gap_count(bob.store.conn()).unwrap(), 0);
    let s = bob.apply(limited("s5", room, &[], "p5"));
    assert_eq!(s.gaps_opened, 1);
    bob.gap_page(&page(&[], Some(&huge)));
    assert_eq!(tl::gap_count(bob.store.conn()).unwrap(), 0);
}

#[test]
fn history_pages_load_older_events_below_everything_until_the_start() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    let m: Vec<Value> = (0..6)
        .map(|i| encrypt(&mut alice, room, &format!("h{i}"), &format!("${i}")))
        .collect();
    let mut first = json!({"next_batch": "s1", "to_device": {"events": [key]},
        "rooms": {"join": {room: {"timeline": {"events": [m[4], m[5]], "limited": true, "prev_batch": "p4"}}}}});
    first["rooms"]["join"][room]["timeline"]["limited"] = json!(true);
    bob.apply(first);
    let cursor = tl::room_cursor(bob.store.conn(), room).unwrap().unwrap();
    assert_eq!(cursor.back_token.as_deref(), Some("p4"));
    let (ids, done) = bob.history_page(room, &page(&[&m[3], &m[2]], Some("p2")));
    assert_eq!((ids, done), (vec!["$2".to_owned(), "$3".to_owned()], false));
    let create = json!({"type": "m.room.create", "state_key": "", "sender": "@alice:srv",
        "event_id": "$create", "content": {}});
    // The page overlaps what is stored ($2): skipped, not repeated; the create event ends it.
    let (ids, done) = bob.history_page(room, &page(&[&m[2], &m[1], &m[0], &create], Some("p-")));
    assert_eq!((ids, done), (vec!["$0".to_owned(), "$1".to_owned()], true));
    let got: Vec<_> = bob.messages(room).into_iter().map(|e| (e.0, e.1)).collect();
    let expected: Vec<_> = (0..6)
        .map(|i| (format!("${i}"), "decrypted".to_owned()))
        .collect();
    assert_eq!(got, expected);
    assert!(
        tl::room_cursor(bob.store.conn(), room)
            .unwrap()
            .unwrap()
            .history_complete
    );
}

#[test]
fn our_echo_is_shown_at_once_and_moves_to_the_servers_position() {
    let room = "!r:srv";
    let (mut alice, mut bob) = two_devices(room);
    let key = room_key_to_device(&mut alice, &mut bob, room, room);
    bob.apply(json!({"next_batch": "s0", "to_device": {"events": [key]}}));
    // Bob's own message, queued: the echo is there before anything is sent.
    let bob_key = room_key_to_device(&mut bob, &mut alice, room, room);
    let _ = bob_key;
    let mine = encrypt_as(&mut bob, room, "ma réponse", "$mine");
    bob.store
        .transaction(|tx| tl::save_echo(tx, "txn1", room, "@bob:srv", Some("ma réponse"), None))
        .unwrap();
    let echo = tl::by_txn_id(bob.store.conn(), "txn1").unwrap().unwrap();
    assert_eq!(
        (echo.state.as_str(), echo.event_id.as_str()),
        ("queued", "~txn1")
    );
    bob.store
        .transaction(|tx| tl::echo_sent(tx, "txn1", "$mine"))
        .unwrap();
    assert_eq!(bob.timeline_state("$mine").0, "sent");
    // The server put Alice's message before ours: the sync shows both in its order.
    let theirs = encrypt(&mut alice, room, "la question", "$theirs");
    bob.apply(timeline("s1", room, &[theirs, mine]));
    let got = bob.messages(room);
    assert_eq!(
        got,
        [
            (
                "$theirs".to_owned(),
                "decrypted".to_owned(),
                Some("la question".to_owned())
            ),
            (
                "$mine".to_owned(),
                "decrypted".to_owned(),
                Some("ma réponse".to_owned())
            ),
        ]
    );
    let e = tl::by_txn_id(bob.store.conn(), "txn1").unwrap().unwrap();
    assert_eq!(
        (e.event_id.as_str(), e.local_id.as_deref()),
        ("$mine", Some("txn1"))
    );
}

#[test]
fn an_echo_gives_way_to_the_event_the_sync_returned_first() {
    let room = "!r:srv";
    let (_alice, mut bob) = two_devices(room);
    bob.store
        .transaction(|tx| tl::save_echo(tx, "txn2", room, "@bob:srv", Some("x"), None))
        .unwrap();
    let mine = encrypt_as(&mut bob, room, "x", "$x");
    // Killed after the send, before its acknowledgement was stored: the sync returns it first.
    bob.apply(timeline("s1", room, &[mine]));
    bob.store
        .transaction(|tx| tl::echo_sent(tx, "txn2", "$x"))
        .unwrap();
    let got = bob.messages(room);
    assert_eq!(
        got,
        [(
            "$x".to_owned(),
            "decrypted".to_owned(),
            Some("x".to_owned())
        )]
    );
    let e = tl::by_txn_id(bob.store.conn(), "txn2").unwrap().unwrap();
    assert_eq!(e.event_id, "$x");
}

#[test]
fn leaving_a_room_cancels_its_lane_and_no_other() {
    use crate::client::outbox::cancel_lane;
    use crate::store::crypto::{OutboxRow, outbox, push_outbox};
    let (room, other) = ("!r:srv", "!other:srv");
    let (_alice, mut bob) = two_devices(room);
    bob.knows(&bob.record.clone(), other);
    bob.store
        .transaction(|tx| {
            let row = |txn: &str, kind: &str, target: &str| {
                OutboxRow::new(txn.into(), kind.into(), target.into(), "{}".into())
            };
            push_outbox(tx, &row("k1", "to_device:m.room.encrypted", room))?;
            push_outbox(tx, &row("t1", "room_event:m.room.encrypted", room))?;
            push_outbox(tx, &row("t2", "room_event:m.room.encrypted", other))?;
            push_outbox(tx, &row("d1", "to_device:m.room.encrypted", ""))?;
            tl::save_echo(tx, "t1", room, "@bob:srv", Some("un"), None)?;
            tl::save_echo(tx, "t2", other, "@bob:srv", Some("deux"), None)
        })
        .unwrap();
    let updates = bob
        .store
        .transaction(|tx| cancel_lane(tx, room, "left_room"))
        .unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(
        (
            updates[0].local_id.as_str(),
            updates[0].state.as_str(),
            updates[0].error.as_deref()
        ),
        ("t1", "failed", Some("left_room"))
    );
    let left: Vec<_> = outbox(bob.store.conn())
        .unwrap()
        .into_iter()
        .map(|r| r.txn_id)
        .collect();
    assert_eq!(left, ["t2", "d1"]);
    let e = tl::by_txn_id(bob.store.conn(), "t1").unwrap().unwrap();
    assert_eq!(
        (e.state.as_str(), e.error.as_deref()),
        ("failed", Some("left_room"))
    );
    assert_eq!(
        tl::by_txn_id(bob.store.conn(), "t2")
            .unwrap()
            .unwrap()
            .state,
        "queued"
    );
    assert!(bob.journal().contains(&"message_send_cancelled".to_owned()));
}

/// A message of `device`'s own outbound session (its own inbound copy decrypts it).
fn encrypt_as(device: &mut Device, room: &str, body: &str, event_id: &str) -> Value {
    let sender = device.record.user_id.clone();
    let Device { store, engine, .. } = device;
    let content = store
        .transaction(|tx| {
            let e = |e: super::CryptoError| e.into_store_error();
            engine
                .plan_outbound(tx, room, &[], &Default::default())
                .map_err(e)?;
            engine
                .megolm_encrypt(
                    tx,
                    room,
                    "m.room.message",
                    &json!({"msgtype": "m.text", "body": body}),
                )
                .map_err(e)
        })
        .unwrap();
    json!({"type": "m.room.encrypted", "event_id": event_id, "sender": sender,
           "origin_server_ts": 2, "content": content})
}

/// Two processes on one data directory (the app's sync and a push handler): when one of them
/// changes the Olm account (here: its pending keys acknowledged as published), the other's
/// engine, stale in memory, reads the account again under the write lock before using it —
/// else its next save would put back one-time keys already published (or drop new ones).
#[test]
fn a_stale_engine_reads_the_account_again_after_another_connection_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (_backend, vault) = crate::store::tests::test_vault(dir.path());
    let mut a = Store::open(dir.path(), &vault.database_key()).unwrap();
    let mut b = Store::open(dir.path(), &vault.database_key()).unwrap();
    let load = |store: &mut Store| {
        store
            .transaction_seeing(|tx, _| {
                Engine::load_or_create(tx, "@u:srv", "DEV", vault.pickle_key())
                    .map_err(super::CryptoError::into_store_error)
            })
            .unwrap()
    };
    let mut ea = load(&mut a);
    let mut eb = load(&mut b);
    let unpublished = |e: &Engine| e.account.inner().one_time_keys().len();
    assert!(unpublished(&ea) > 0);
    assert_eq!(unpublished(&ea), unpublished(&eb));
    // A publishes its keys.
    a.transaction_seeing(|tx, changed| {
        ea.refresh(tx, changed)
            .and_then(|()| ea.upload_acknowledged(tx))
            .map_err(super::CryptoError::into_store_error)
    })
    .unwrap();
    assert_eq!(unpublished(&ea), 0);
    // B's next transaction sees A's commit and reads the account again.
    b.transaction_seeing(|tx, changed| {
        assert!(changed, "B must learn that A committed");
        eb.refresh(tx, changed)
            .map_err(super::CryptoError::into_store_error)
    })
    .unwrap();
    assert_eq!(unpublished(&eb), 0, "B still holds the keys A published");
    // Nothing changed since: B keeps what it has (its own commits do not count).
    b.transaction_seeing(|_, changed| {
        assert!(!changed);
        Ok(())
    })
    .unwrap();
}
