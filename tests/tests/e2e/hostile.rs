//! Hostile input through the real server: a malicious member (or a compromised server acting
//! with a member's token) replays ciphertext, forges a sender, posts in clear, turns
//! encryption off, sends garbage, sends an Olm message from a device nobody knows, or replaces
//! a device's keys. Each ends in a typed refusal and a security event; nothing panics; the
//! store keeps working.

use std::time::Duration;

use serde_json::{Value, json};
use tchap_secure_core::crypto::CryptoError;
use tchap_secure_core::crypto::signing::sign_json;
use tchap_secure_core::{Client, Error};
use tchap_secure_tests::synapse::Synapse;

use crate::messaging::{Pair, pair, receive};
use crate::support::{InProcess, PASSWORD, password, rt};
use tchap_secure_tests::harness::{access_token, raw_event};

/// Mallory: a third member of the pair's room, with her own client.
fn mallory(rt: &tokio::runtime::Runtime, p: &mut Pair) -> (InProcess, Client, String) {
    let synapse = Synapse::shared();
    let m = InProcess::new("mallory");
    let um = synapse.unique_user("mallory");
    let reg = synapse.register(&um, PASSWORD, false);
    let mut client = m.open().unwrap();
    rt.block_on(client.login(&um, &password(), "mallory-phone"))
        .unwrap();
    rt.block_on(p.alice.invite(&p.room, &reg.user_id)).unwrap();
    rt.block_on(client.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(client.join(&p.room)).unwrap();
    rt.block_on(client.sync_once(Duration::ZERO)).unwrap();
    (m, client, reg.user_id)
}

fn put_event(token: &str, room: &str, event_type: &str, content: &Value) -> String {
    static TXN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let txn = TXN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (status, answer) = Synapse::shared().request(
        "PUT",
        &format!(
            "/_matrix/client/v3/rooms/{room}/send/{event_type}/hostile-{}-{txn}",
            std::process::id()
        ),
        Some(token),
        Some(content),
    );
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

/// Syncs `client` until `event_id` is in its timeline; returns (state, error).
fn outcome(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    room: &str,
    event_id: &str,
) -> (String, String) {
    for _ in 0..20 {
        rt.block_on(client.sync_once(Duration::from_millis(300)))
            .unwrap();
        if let Some(e) = client
            .messages(room, 500)
            .unwrap()
            .into_iter()
            .find(|e| e.event_id == event_id)
        {
            return (e.state, e.error.unwrap_or_default());
        }
    }
    panic!("event {event_id} never reached the timeline");
}

fn journal_kinds(client: &Client) -> Vec<String> {
    client
        .store()
        .security_events()
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn replayed_forged_clear_and_garbage_events_are_refused_and_reported() {
    let rt = rt();
    let mut p = pair(&rt, "hostile");
    let (_m, mallory_client, _mallory_id) = mallory(&rt, &mut p);
    rt.block_on(p.alice.sync_once(Duration::ZERO)).unwrap();
    let original = rt
        .block_on(p.alice.send_text(&p.room, "ordre de mission"))
        .unwrap();
    receive(&rt, &mut p.bob, &p.room, "ordre de mission");
    let alice_token = access_token(&p.alice);
    let content = raw_event(&alice_token, &p.room, &original)["content"].clone();

    // 1. Replay: the same ciphertext (same session, same message index) as a new event.
    let replay = put_event(&alice_token, &p.room, "m.room.encrypted", &content);
    let (state, error) = outcome(&rt, &mut p.bob, &p.room, &replay);
    assert_eq!(state, "refused");
    assert!(error.contains("replayed Megolm message index"), "{error}");

    // 2. Forged sender: Mallory re-posts Alice's ciphertext under her own name.
    let mallory_token = access_token(&mallory_client);
    let forged = put_event(&mallory_token, &p.room, "m.room.encrypted", &content);
    let (state, error) = outcome(&rt, &mut p.bob, &p.room, &forged);
    assert_eq!(state, "refused");
    assert!(error.contains("sender mismatch"), "{error}");

    // 3. Forged sender key inside Alice's own event content.
    let mut wrong_key = content.clone();
    wrong_key["sender_key"] = json!(p.bob.identity_keys().unwrap().1);
    let forged_key = put_event(&alice_token, &p.room, "m.room.encrypted", &wrong_key);
    let (state, error) = outcome(&rt, &mut p.bob, &p.room, &forged_key);
    assert_eq!(state, "refused");
    assert!(error.contains("sender mismatch"), "{error}");

    // 4. A message in clear in an encrypted room.
    let clear = put_event(
        &mallory_token,
        &p.room,
        "m.room.message",
        &json!({"msgtype": "m.text", "body": "clic ici"}),
    );
    let (state, _) = outcome(&rt, &mut p.bob, &p.room, &clear);
    assert_eq!(state, "refused");

    // 5. Malformed ciphertext on a real session.
    let mut garbage = content.clone();
    garbage["ciphertext"] = json!("AwgAEqAB////not-a-megolm-message");
    let bad = put_event(&alice_token, &p.room, "m.room.encrypted", &garbage);
    let (state, _) = outcome(&rt, &mut p.bob, &p.room, &bad);
    assert_eq!(state, "refused");

    let kinds = journal_kinds(&p.bob);
    for expected in [
        "megolm_replay",
        "megolm_sender_mismatch",
        "unencrypted_message_refused",
        "megolm_megolm_decrypt",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "no {expected} in {kinds:?}"
        );
    }
    // The genuine message is still there and the store still works.
    let genuine = p.bob.messages(&p.room, 50).unwrap();
    assert!(
        genuine
            .iter()
            .any(|e| e.event_id == original && e.body.as_deref() == Some("ordre de mission"))
    );
    rt.block_on(p.bob.send_text(&p.room, "still working"))
        .unwrap();
    receive(&rt, &mut p.alice, &p.room, "still working");
}

#[test]
fn a_ciphertext_moved_to_another_room_does_not_decrypt_there() {
    let rt = rt();
    let mut p = pair(&rt, "moved");
    let bob_id = p.bob.session().unwrap().user_id;
    let other = rt
        .block_on(p.alice.create_room(Some("other"), &[bob_id], false))
        .unwrap();
    rt.block_on(p.bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(p.bob.join(&other)).unwrap();
    let original = rt
        .block_on(p.alice.send_text(&p.room, "for room one only"))
        .unwrap();
    receive(&rt, &mut p.bob, &p.room, "for room one only");
    let token = access_token(&p.alice);
    let content = raw_event(&token, &p.room, &original)["content"].clone();
    let moved = put_event(&token, &other, "m.room.encrypted", &content);
    let (state, _) = outcome(&rt, &mut p.bob, &other, &moved);
    // Room keys are bound to their room: the session is unknown in the other room.
    assert_eq!(state, "undecryptable");
    let e = p
        .bob
        .try_decrypt(&other, &raw_event(&token, &other, &moved))
        .unwrap_err();
    assert!(
        matches!(e, Error::Crypto(CryptoError::UnknownSession { .. })),
        "{e:?}"
    );
}

#[test]
fn encryption_cannot_be_turned_off_and_clear_rooms_are_refused() {
    let rt = rt();
    let synapse = Synapse::shared();
    let mut p = pair(&rt, "noenc");
    let alice_token = access_token(&p.alice);
    let (status, answer) = synapse.request(
        "PUT",
        &format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.encryption/",
            p.room
        ),
        Some(&alice_token),
        Some(&json!({"algorithm": "m.plaintext"})),
    );
    assert_eq!(status, 200, "{answer}");
    rt.block_on(p.bob.sync_once(Duration::ZERO)).unwrap();
    assert!(
        journal_kinds(&p.bob)
            .iter()
            .any(|k| k == "encryption_change_refused")
    );
    let room = p.bob.store().room(&p.room).unwrap().unwrap();
    assert_eq!(room.encryption.as_deref(), Some("m.megolm.v1.aes-sha2"));
    // Bob keeps sending encrypted, and Alice decrypts.
    rt.block_on(p.bob.send_text(&p.room, "toujours chiffré"))
        .unwrap();
    receive(&rt, &mut p.alice, &p.room, "toujours chiffré");

    // A room created in clear by someone else: our client never sends into it.
    let bob_id = p.bob.session().unwrap().user_id;
    let (status, answer) = synapse.request(
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(&alice_token),
        Some(&json!({"preset": "private_chat", "invite": [bob_id]})),
    );
    assert_eq!(status, 200, "{answer}");
    let clear_room = answer["room_id"].as_str().unwrap().to_owned();
    rt.block_on(p.bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(p.bob.join(&clear_room)).unwrap();
    rt.block_on(p.bob.sync_once(Duration::ZERO)).unwrap();
    let e = rt
        .block_on(p.bob.send_text(&clear_room, "secret"))
        .unwrap_err();
    assert!(
        matches!(e, Error::Crypto(CryptoError::UnencryptedRoom { .. })),
        "{e:?}"
    );
}

#[test]
fn an_olm_message_from_an_unknown_device_is_refused() {
    let rt = rt();
    let synapse = Synapse::shared();
    let mut p = pair(&rt, "unknowndev");
    let (_m, mallory_client, mallory_id) = mallory(&rt, &mut p);
    let mallory_token = access_token(&mallory_client);
    let (bob_ed, bob_curve) = p.bob.identity_keys().unwrap();
    let bob = p.bob.session().unwrap();

    // A device that never published its keys: a local vodozemac account.
    let ghost = vodozemac::olm::Account::new();
    let (status, claimed) = synapse.request(
        "POST",
        "/_matrix/client/v3/keys/claim",
        Some(&mallory_token),
        Some(&json!({"one_time_keys": {bob.user_id.clone(): {bob.device_id.clone(): "signed_curve25519"}}})),
    );
    assert_eq!(status, 200, "{claimed}");
    let otk = claimed["one_time_keys"][&bob.user_id][&bob.device_id]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut session = ghost
        .create_outbound_session(
            vodozemac::olm::SessionConfig::version_1(),
            vodozemac::Curve25519PublicKey::from_base64(&bob_curve).unwrap(),
            vodozemac::Curve25519PublicKey::from_base64(&otk).unwrap(),
        )
        .unwrap();
    let payload = json!({
        "type": "m.room_key",
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "room_id": p.room, "session_id": "x", "session_key": "y"},
        "sender": mallory_id,
        "recipient": bob.user_id,
        "recipient_keys": {"ed25519": bob_ed},
        "keys": {"ed25519": ghost.ed25519_key().to_base64()},
    });
    let message = session.encrypt(payload.to_string()).unwrap();
    let content = json!({
        "algorithm": "m.olm.v1.curve25519-aes-sha2",
        "sender_key": ghost.curve25519_key().to_base64(),
        "ciphertext": {bob_curve.clone(): serde_json::to_value(&message).unwrap()},
    });
    let (status, answer) = synapse.request(
        "PUT",
        &format!(
            "/_matrix/client/v3/sendToDevice/m.room.encrypted/ghost-{}",
            std::process::id()
        ),
        Some(&mallory_token),
        Some(&json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): content}}})),
    );
    assert_eq!(status, 200, "{answer}");
    let summary = rt
        .block_on(p.bob.sync_once(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(summary.room_keys, 0);
    assert!(
        journal_kinds(&p.bob)
            .iter()
            .any(|k| k == "to_device_unknown_device"),
        "{:?}",
        journal_kinds(&p.bob)
    );
}

#[test]
fn a_device_whose_keys_change_is_blocked_and_gets_no_room_key() {
    let rt = rt();
    let synapse = Synapse::shared();
    let mut p = pair(&rt, "keychange");
    let bob = p.bob.session().unwrap();
    rt.block_on(p.alice.send_text(&p.room, "avant")).unwrap();
    receive(&rt, &mut p.bob, &p.room, "avant");

    // The server (or whoever holds Bob's token) replaces the keys of Bob's device.
    let impostor = vodozemac::olm::Account::new();
    let mut keys = json!({
        "user_id": bob.user_id,
        "device_id": bob.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", bob.device_id): impostor.curve25519_key().to_base64(),
            format!("ed25519:{}", bob.device_id): impostor.ed25519_key().to_base64(),
        },
    });
    sign_json(
        &mut keys,
        &bob.user_id,
        &format!("ed25519:{}", bob.device_id),
        |m| impostor.sign(m),
    )
    .unwrap();
    let (status, answer) = synapse.request(
        "POST",
        "/_matrix/client/v3/keys/upload",
        Some(&access_token(&p.bob)),
        Some(&json!({"device_keys": keys})),
    );
    if status != 200 {
        // Synapse refusing to replace device keys is itself a mitigation; record why.
        panic!("Synapse refused the device key replacement ({status}): {answer}");
    }
    // Alice notices (device_lists.changed), pins nothing new, blocks the device.
    let devices = rt.block_on(p.alice.devices(&bob.user_id)).unwrap();
    let d = devices
        .iter()
        .find(|d| d.device_id == bob.device_id)
        .unwrap();
    assert_eq!(d.state, tchap_secure_core::store::DeviceState::Blocked);
    assert!(
        journal_kinds(&p.alice)
            .iter()
            .any(|k| k == "device_key_changed")
    );
    // The next message uses a new session that the blocked device never receives.
    let before = p.alice.outbound_session_id(&p.room).unwrap();
    let after_id = rt.block_on(p.alice.send_text(&p.room, "après")).unwrap();
    assert_ne!(p.alice.outbound_session_id(&p.room).unwrap(), before);
    let token = access_token(&p.alice);
    let raw = raw_event(&token, &p.room, &after_id);
    rt.block_on(p.bob.sync_once(Duration::from_millis(300)))
        .unwrap();
    let e = p.bob.try_decrypt(&p.room, &raw).unwrap_err();
    assert!(
        matches!(e, Error::Crypto(CryptoError::UnknownSession { .. })),
        "{e:?}"
    );
}

/// Alice's server-side count of her published one-time keys.
fn otk_count(token: &str) -> u64 {
    let (status, answer) = Synapse::shared().request(
        "POST",
        "/_matrix/client/v3/keys/upload",
        Some(token),
        Some(&json!({})),
    );
    assert_eq!(status, 200, "{answer}");
    answer["one_time_key_counts"]["signed_curve25519"]
        .as_u64()
        .unwrap_or(0)
}

/// An Olm message that claims Alice's identity key but that no session decrypts.
fn wedging_message(bob_curve: &str, alice_curve: &str) -> Value {
    let stranger = vodozemac::olm::Account::new();
    let stray = vodozemac::Curve25519PublicKey::from(&vodozemac::Curve25519SecretKey::new());
    let mut session = stranger
        .create_outbound_session(
            vodozemac::olm::SessionConfig::version_1(),
            vodozemac::Curve25519PublicKey::from_base64(bob_curve).unwrap(),
            stray,
        )
        .unwrap();
    let message = serde_json::to_value(session.encrypt("{}").unwrap()).unwrap();
    json!({
        "algorithm": "m.olm.v1.curve25519-aes-sha2",
        "sender_key": alice_curve,
        "ciphertext": {bob_curve: message},
    })
}

#[test]
fn a_wedged_olm_channel_is_recovered_once_an_hour_at_most() {
    let rt = rt();
    let mut p = pair(&rt, "wedge");
    rt.block_on(p.alice.send_text(&p.room, "canal établi"))
        .unwrap();
    receive(&rt, &mut p.bob, &p.room, "canal établi");
    rt.block_on(p.alice.sync_once(Duration::ZERO)).unwrap();
    let alice_token = access_token(&p.alice);
    let (_, alice_curve) = p.alice.identity_keys().unwrap();
    let bob = p.bob.session().unwrap();
    let (_, bob_curve) = p.bob.identity_keys().unwrap();
    let send_wedge = |n: u32| {
        let (status, answer) = Synapse::shared().request(
            "PUT",
            &format!("/_matrix/client/v3/sendToDevice/m.room.encrypted/wedge-{}-{n}", std::process::id()),
            Some(&alice_token),
            Some(&json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): wedging_message(&bob_curve, &alice_curve)}}})),
        );
        assert_eq!(status, 200, "{answer}");
    };

    let before = otk_count(&alice_token);
    send_wedge(1);
    rt.block_on(p.bob.sync_once(Duration::from_millis(300)))
        .unwrap();
    assert!(
        journal_kinds(&p.bob)
            .iter()
            .any(|k| k == "to_device_olm_decrypt")
    );
    // Bob claimed one of Alice's one-time keys for a new session and sent her an m.dummy.
    assert_eq!(otk_count(&alice_token), before - 1);
    let s = rt
        .block_on(p.alice.sync_once(Duration::from_millis(300)))
        .unwrap();
    assert!(s.to_device_events >= 1, "{s:?}");
    assert!(
        journal_kinds(&p.alice).is_empty(),
        "{:?}",
        journal_kinds(&p.alice)
    );

    // A second failure within the hour: no second recovery.
    let topped_up = otk_count(&alice_token);
    send_wedge(2);
    rt.block_on(p.bob.sync_once(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(otk_count(&alice_token), topped_up);
    // The channel works: a new room key reaches Bob.
    p.alice.rotate_room_key(&p.room).unwrap();
    rt.block_on(p.alice.send_text(&p.room, "après réparation"))
        .unwrap();
    receive(&rt, &mut p.bob, &p.room, "après réparation");
}
