//! Two verification machines talking to each other through the contents they produce: SAS
//! (to-device and in-room, either side starting), QR (other user, self-verification in both
//! modes), every cancel path, strict QR parsing, known-answer vectors of the formulas (taken
//! from matrix-sdk's own tests or derived from its code), and a property test that arbitrary
//! contents never panic a machine in any state.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Value, json};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519SecretKey};

use super::emoji::EMOJI;
use super::qr::{QrError, QrMode, QrPayload};
use super::sas::{commitment, mac_info, sas_info};
use super::*;

const T0: u64 = 1_700_000_000_000;
const ALICE: &str = "@alice:example.org";
const BOB: &str = "@bob:example.org";

fn key() -> Ed25519PublicKey {
    Ed25519SecretKey::new().public_key()
}

/// A device of a user; all devices of a user share the user's master key.
#[derive(Clone)]
struct Dev {
    own: OwnKeys,
}

fn device(user: &str, device_id: &str, master: Ed25519PublicKey, trusted: bool) -> Dev {
    Dev {
        own: OwnKeys {
            user_id: user.into(),
            device_id: device_id.into(),
            ed25519: key(),
            master_key: Some(master),
            master_key_trusted: trusted,
        },
    }
}

/// How `viewer` sees `dev`'s user (its device and master key).
fn identity_of(devs: &[&Dev]) -> PeerIdentity {
    PeerIdentity {
        user_id: devs[0].own.user_id.clone(),
        devices: devs
            .iter()
            .map(|d| (d.own.device_id.clone(), d.own.ed25519))
            .collect(),
        master_key: devs[0].own.master_key,
    }
}

fn to_device_flow() -> FlowId {
    FlowId::ToDevice {
        transaction_id: "txn-1".into(),
    }
}

fn room_flow() -> FlowId {
    FlowId::InRoom {
        room_id: "!dm:example.org".into(),
        request_event_id: "$request".into(),
    }
}

/// Alice requests, Bob receives and accepts; both are ready.
fn ready_pair(a: &Dev, b: &Dev, flow: FlowId) -> (Verification, Verification) {
    let b_seen_by_a = identity_of(&[b]);
    let a_seen_by_b = identity_of(&[a]);
    let mut alice =
        Verification::request(a.own.clone(), b_seen_by_a, flow.clone(), &Method::ALL, T0);
    let (content, ts) = match &flow {
        FlowId::ToDevice { .. } => {
            let out = alice.drain_outgoing();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].event_type, REQUEST_EVENT);
            (out[0].content.clone(), None)
        }
        FlowId::InRoom { .. } => {
            assert!(alice.drain_outgoing().is_empty());
            let out = room_request_content(&a.own, &b.own.user_id, &Method::ALL);
            assert_eq!(out.event_type, ROOM_MESSAGE_EVENT);
            (out.content, Some(T0))
        }
    };
    let mut bob = Verification::from_request(
        b.own.clone(),
        a_seen_by_b,
        flow,
        &a.own.user_id,
        &content,
        ts,
        T0 + 1000,
    )
    .unwrap();
    assert_eq!(bob.state_name(), "received");
    assert_eq!(bob.peer_device_id(), Some(a.own.device_id.as_str()));
    bob.accept(&Method::ALL, T0 + 1000).unwrap();
    deliver(&mut bob, &mut alice, T0 + 2000).unwrap();
    assert_eq!(alice.state_name(), "ready");
    assert_eq!(bob.state_name(), "ready");
    assert_eq!(alice.their_methods(), Method::ALL);
    assert!(alice.we_requested() && !bob.we_requested());
    (alice, bob)
}

/// Hands every queued content of `from` to `to`; stops at the first error.
fn deliver(
    from: &mut Verification,
    to: &mut Verification,
    now: u64,
) -> Result<(), VerificationError> {
    let sender = from_user(from);
    for out in from.drain_outgoing() {
        check_flow_stamp(from.flow_id(), &out);
        to.handle(&sender, out.event_type, &out.content, now)?;
    }
    Ok(())
}

fn from_user(v: &Verification) -> String {
    format!("{:?}", v)
        .split("user_id: \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned()
}

/// Every content we produce carries the flow id the way the spec says.
fn check_flow_stamp(flow: &FlowId, out: &Outgoing) {
    match flow {
        FlowId::ToDevice { transaction_id } => {
            assert_eq!(out.content["transaction_id"], json!(transaction_id));
            assert!(out.content.get("m.relates_to").is_none());
        }
        FlowId::InRoom {
            request_event_id, ..
        } => {
            assert_eq!(
                out.content["m.relates_to"],
                json!({"rel_type": "m.reference", "event_id": request_event_id})
            );
            assert!(out.content.get("transaction_id").is_none());
        }
    }
}

/// Exchanges until both queues are empty.
fn pump(a: &mut Verification, b: &mut Verification, now: u64) {
    for _ in 0..10 {
        deliver(a, b, now).unwrap();
        deliver(b, a, now).unwrap();
    }
}

fn users() -> (Dev, Dev) {
    (
        device(ALICE, "ALICEDEV", key(), true),
        device(BOB, "BOBDEV", key(), true),
    )
}

/// Runs a SAS from ready to done; `a_starts` picks the initiator.
fn run_sas(alice: &mut Verification, bob: &mut Verification, a_starts: bool) {
    let now = T0 + 3000;
    if a_starts {
        alice.start_sas(now).unwrap();
    } else {
        bob.start_sas(now).unwrap();
    }
    pump(alice, bob, now);
    let ea = alice.emoji().unwrap();
    let eb = bob.emoji().unwrap();
    assert_eq!(ea, eb);
    assert_eq!(alice.emoji_indices(), bob.emoji_indices());
    assert!(alice.emoji_indices().unwrap().iter().all(|i| *i < 64));
    let (d1, d2, d3) = alice.decimals().unwrap();
    assert_eq!(Some((d1, d2, d3)), bob.decimals());
    assert!([d1, d2, d3].iter().all(|d| (1000..=9191).contains(d)));

    alice.confirm_sas(now).unwrap();
    deliver(alice, bob, now).unwrap();
    // Bob has Alice's MAC but has not confirmed: nothing is verified yet.
    assert!(bob.verified_keys().is_none());
    assert!(bob.emoji().is_some());
    bob.confirm_sas(now).unwrap();
    pump(alice, bob, now);
    assert_eq!(alice.state_name(), "done");
    assert_eq!(bob.state_name(), "done");
    assert!(alice.drain_outgoing().is_empty() && bob.drain_outgoing().is_empty());
}

fn expect_verified(v: &Verification, peer: &Dev, device: bool, master: bool) {
    let keys = v.verified_keys().unwrap();
    if device {
        assert_eq!(
            keys.device,
            Some(VerifiedDevice {
                user_id: peer.own.user_id.clone(),
                device_id: peer.own.device_id.clone(),
                ed25519: peer.own.ed25519,
            })
        );
    } else {
        assert_eq!(keys.device, None);
    }
    if master {
        assert_eq!(
            keys.master_key,
            Some((peer.own.user_id.clone(), peer.own.master_key.unwrap()))
        );
    } else {
        assert_eq!(keys.master_key, None);
    }
}

// ---- SAS -------------------------------------------------------------------------------------

#[test]
fn sas_to_device_requester_starts() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    run_sas(&mut alice, &mut bob, true);
    expect_verified(&alice, &b, true, true);
    expect_verified(&bob, &a, true, true);
}

#[test]
fn sas_in_room_responder_starts() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, room_flow());
    run_sas(&mut alice, &mut bob, false);
    expect_verified(&alice, &b, true, true);
    expect_verified(&bob, &a, true, true);
}

#[test]
fn sas_bob_confirms_first_and_macs_cross() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    pump(&mut alice, &mut bob, T0);
    // Both confirm before either MAC is delivered.
    bob.confirm_sas(T0).unwrap();
    alice.confirm_sas(T0).unwrap();
    assert_eq!(
        alice.confirm_sas(T0),
        Err(VerificationError::InvalidState {
            action: "confirm the SAS",
            state: "sas_confirmed"
        })
    );
    pump(&mut alice, &mut bob, T0);
    expect_verified(&alice, &b, true, true);
    expect_verified(&bob, &a, true, true);
}

#[test]
fn sas_untrusted_master_is_not_macd_and_unknown_master_not_verified() {
    // Alice does not trust her master key: she MACs her device key only. Bob does not know
    // Alice's master key anyway. Alice knows no master key for Bob: his master MAC is skipped.
    let a = device(ALICE, "ALICEDEV", key(), false);
    let b = device(BOB, "BOBDEV", key(), true);
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.peer_mut().master_key = None;
    alice.start_sas(T0).unwrap();
    pump(&mut alice, &mut bob, T0);
    alice.confirm_sas(T0).unwrap();
    let mac = alice.pending()[0].content.clone();
    assert_eq!(
        mac["mac"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["ed25519:ALICEDEV"]
    );
    bob.confirm_sas(T0).unwrap();
    let mac = bob.pending()[0].content.clone();
    assert_eq!(mac["mac"].as_object().unwrap().len(), 2);
    pump(&mut alice, &mut bob, T0);
    expect_verified(&alice, &b, true, false);
    expect_verified(&bob, &a, true, false);
}

#[test]
fn sas_self_verification_to_device() {
    let master = key();
    let a = device(ALICE, "PHONE", master, true);
    let b = device(ALICE, "LAPTOP", master, false);
    let (mut phone, mut laptop) = ready_pair(&a, &b, to_device_flow());
    run_sas(&mut phone, &mut laptop, true);
    // The laptop (untrusted master) MACs only its device; the phone MACs its device and the
    // master key, which the laptop thereby verifies.
    expect_verified(&phone, &b, true, false);
    expect_verified(&laptop, &a, true, true);
}

#[test]
fn sas_outputs_have_the_wire_shape() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    let start = alice.pending()[0].clone();
    assert_eq!(start.event_type, START_EVENT);
    assert_eq!(
        start.content,
        json!({
            "from_device": "ALICEDEV",
            "method": "m.sas.v1",
            "key_agreement_protocols": ["curve25519-hkdf-sha256"],
            "hashes": ["sha256"],
            "message_authentication_codes": ["hkdf-hmac-sha256.v2"],
            "short_authentication_string": ["decimal", "emoji"],
            "transaction_id": "txn-1",
        })
    );
    deliver(&mut alice, &mut bob, T0).unwrap();
    let accept = bob.pending()[0].clone();
    assert_eq!(accept.event_type, ACCEPT_EVENT);
    let c = &accept.content;
    assert!(
        c.get("method").is_none(),
        "the specification's accept has no method: {c}"
    );
    assert_eq!(c["key_agreement_protocol"], "curve25519-hkdf-sha256");
    assert_eq!(c["hash"], "sha256");
    assert_eq!(c["message_authentication_code"], "hkdf-hmac-sha256.v2");
    assert_eq!(
        c["short_authentication_string"],
        json!(["decimal", "emoji"])
    );
    assert_eq!(c["commitment"].as_str().unwrap().len(), 43);
}

// ---- SAS cancel paths ------------------------------------------------------------------------

fn assert_cancelled(v: &mut Verification, code: CancelCode, by_us: bool) {
    let info = v.cancel_info().unwrap().clone();
    assert_eq!((info.code.clone(), info.by_us), (code.clone(), by_us));
    if by_us {
        let out = v.drain_outgoing();
        let last = out.last().unwrap();
        assert_eq!(last.event_type, CANCEL_EVENT);
        assert_eq!(last.content["code"], json!(code.as_str()));
        assert_eq!(last.content["reason"], json!(code.reason()));
    }
}

/// The cancel `v` sent reaches `peer`, which ends cancelled by them.
fn forward_cancel(v: &mut Verification, peer: &mut Verification, code: CancelCode) {
    let cancel = cancel_content(v.flow_id(), &code);
    peer.handle(&from_user(v), CANCEL_EVENT, &cancel.content, T0)
        .unwrap();
    assert_cancelled(peer, code, false);
    assert_eq!(
        peer.handle(&from_user(v), DONE_EVENT, &cancel.content, T0),
        Err(VerificationError::Finished { state: "cancelled" })
    );
}

#[test]
fn sas_commitment_mismatch_when_the_key_is_swapped() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    deliver(&mut alice, &mut bob, T0).unwrap(); // start
    deliver(&mut bob, &mut alice, T0).unwrap(); // accept
    deliver(&mut alice, &mut bob, T0).unwrap(); // Alice's key; Bob answers with his
    let mut out = bob.drain_outgoing();
    assert_eq!(out[0].event_type, KEY_EVENT);
    let other = vodozemac::sas::Sas::new().public_key();
    out[0].content["key"] = json!(other.to_base64());
    let err = alice
        .handle(BOB, KEY_EVENT, &out[0].content, T0)
        .unwrap_err();
    assert_eq!(err, VerificationError::MismatchedCommitment);
    assert_eq!(err.code(), "mismatched_commitment");
    assert_cancelled(&mut alice, CancelCode::MismatchedCommitment, true);
    forward_cancel(&mut alice, &mut bob, CancelCode::MismatchedCommitment);
}

fn to_confirmed(a: &Dev, b: &Dev) -> (Verification, Verification, Outgoing) {
    let (mut alice, mut bob) = ready_pair(a, b, to_device_flow());
    alice.start_sas(T0).unwrap();
    pump(&mut alice, &mut bob, T0);
    bob.confirm_sas(T0).unwrap();
    let mac = bob.drain_outgoing().remove(0);
    assert_eq!(mac.event_type, MAC_EVENT);
    (alice, bob, mac)
}

#[test]
fn sas_tampered_mac_is_key_mismatch() {
    let (a, b) = users();
    let (mut alice, _bob, mut mac) = to_confirmed(&a, &b);
    // A valid MAC of another key in place of Bob's device key MAC.
    let master_id = format!("ed25519:{}", b.own.master_key.unwrap().to_base64());
    let swapped = mac.content["mac"][&master_id].clone();
    mac.content["mac"]["ed25519:BOBDEV"] = swapped;
    let err = alice.handle(BOB, MAC_EVENT, &mac.content, T0).unwrap_err();
    assert_eq!(
        err,
        VerificationError::KeyMismatch {
            key_id: "ed25519:BOBDEV".into()
        }
    );
    assert_cancelled(&mut alice, CancelCode::KeyMismatch, true);
}

#[test]
fn sas_removed_key_id_is_key_mismatch() {
    let (a, b) = users();
    let (mut alice, _bob, mut mac) = to_confirmed(&a, &b);
    let master_id = format!("ed25519:{}", b.own.master_key.unwrap().to_base64());
    mac.content["mac"]
        .as_object_mut()
        .unwrap()
        .remove(&master_id);
    let err = alice.handle(BOB, MAC_EVENT, &mac.content, T0).unwrap_err();
    assert_eq!(err, VerificationError::KeyIdsMismatch);
    assert_cancelled(&mut alice, CancelCode::KeyMismatch, true);
}

#[test]
fn sas_mac_of_unknown_keys_only_verifies_nothing() {
    let (a, b) = users();
    let (mut alice, _bob, mac) = to_confirmed(&a, &b);
    // Alice knows neither Bob's device nor his master key: every key id is skipped.
    alice.peer_mut().devices.clear();
    alice.peer_mut().master_key = None;
    let err = alice.handle(BOB, MAC_EVENT, &mac.content, T0).unwrap_err();
    assert_eq!(err, VerificationError::NoKeyVerified);
    assert_cancelled(&mut alice, CancelCode::KeyMismatch, true);
}

#[test]
fn sas_user_says_no_match() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, room_flow());
    alice.start_sas(T0).unwrap();
    pump(&mut alice, &mut bob, T0);
    bob.sas_mismatch(T0).unwrap();
    assert_cancelled(&mut bob, CancelCode::MismatchedSas, true);
    forward_cancel(&mut bob, &mut alice, CancelCode::MismatchedSas);
    assert!(alice.emoji().is_none());
}

#[test]
fn sas_unknown_methods_are_refused() {
    let (a, b) = users();
    // The deprecated MAC method alone.
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    let mut start = alice.drain_outgoing().remove(0);
    start.content["message_authentication_codes"] = json!(["hkdf-hmac-sha256"]);
    let err = bob
        .handle(ALICE, START_EVENT, &start.content, T0)
        .unwrap_err();
    assert!(matches!(err, VerificationError::UnknownMethod { .. }));
    assert_cancelled(&mut bob, CancelCode::UnknownMethod, true);

    // An accept choosing a MAC we did not offer.
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    deliver(&mut alice, &mut bob, T0).unwrap();
    let mut accept = bob.drain_outgoing().remove(0);
    accept.content["message_authentication_code"] = json!("hkdf-hmac-sha256");
    let err = alice
        .handle(BOB, ACCEPT_EVENT, &accept.content, T0)
        .unwrap_err();
    assert_eq!(err.cancel_code(), CancelCode::UnknownMethod);
    assert_cancelled(&mut alice, CancelCode::UnknownMethod, true);

    // An accept naming another method (the specification's accept names none).
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    deliver(&mut alice, &mut bob, T0).unwrap();
    let mut accept = bob.drain_outgoing().remove(0);
    accept.content["method"] = json!("m.reciprocate.v1");
    let err = alice
        .handle(BOB, ACCEPT_EVENT, &accept.content, T0)
        .unwrap_err();
    assert_eq!(err.cancel_code(), CancelCode::UnknownMethod);

    // An accept whose short authentication strings are none, or one we do not show.
    for sas in [json!([]), json!(["bogus"]), json!(["emoji", "bogus"])] {
        let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
        alice.start_sas(T0).unwrap();
        deliver(&mut alice, &mut bob, T0).unwrap();
        let mut accept = bob.drain_outgoing().remove(0);
        accept.content["short_authentication_string"] = sas.clone();
        let err = alice
            .handle(BOB, ACCEPT_EVENT, &accept.content, T0)
            .unwrap_err();
        assert_eq!(err.cancel_code(), CancelCode::UnknownMethod, "{sas}");
        assert_cancelled(&mut alice, CancelCode::UnknownMethod, true);
    }

    // A start method nobody knows.
    let (_alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    let content =
        json!({"from_device": "ALICEDEV", "method": "m.telepathy.v1", "transaction_id": "txn-1"});
    let err = bob.handle(ALICE, START_EVENT, &content, T0).unwrap_err();
    assert_eq!(err.code(), "unknown_method");
    assert_cancelled(&mut bob, CancelCode::UnknownMethod, true);
}

#[test]
fn wrong_flow_user_or_device_leaves_the_flow_untouched() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    let start = alice.drain_outgoing().remove(0);
    let mut other = start.content.clone();
    other["transaction_id"] = json!("txn-2");
    assert_eq!(
        bob.handle(ALICE, START_EVENT, &other, T0),
        Err(VerificationError::WrongFlow {
            expected: "txn-1".into(),
            found: Some("txn-2".into())
        })
    );
    other.as_object_mut().unwrap().remove("transaction_id");
    let err = bob.handle(ALICE, START_EVENT, &other, T0).unwrap_err();
    assert_eq!((err.code(), err.cancels_flow()), ("wrong_flow", false));
    assert_eq!(err.cancel_code(), CancelCode::UnknownTransaction);
    let err = bob
        .handle("@eve:example.org", START_EVENT, &start.content, T0)
        .unwrap_err();
    assert_eq!(err.code(), "user_mismatch");
    let mut from_other_device = start.content.clone();
    from_other_device["from_device"] = json!("ALICEOTHER");
    let err = bob
        .handle(ALICE, START_EVENT, &from_other_device, T0)
        .unwrap_err();
    assert_eq!(err.code(), "device_mismatch");
    // In a room, a content related to another request is not ours either.
    let (_, mut room_bob) = ready_pair(&a, &b, room_flow());
    let stray = json!({"m.relates_to": {"rel_type": "m.reference", "event_id": "$other"}});
    assert_eq!(
        room_bob
            .handle(ALICE, DONE_EVENT, &stray, T0)
            .unwrap_err()
            .code(),
        "wrong_flow"
    );
    assert!(bob.drain_outgoing().is_empty() && room_bob.drain_outgoing().is_empty());
    assert_eq!(bob.state_name(), "ready");
    // The genuine start still works.
    bob.handle(ALICE, START_EVENT, &start.content, T0).unwrap();
    assert_eq!(bob.state_name(), "sas_waiting_for_key");
}

#[test]
fn out_of_order_messages_are_unexpected() {
    let (a, b) = users();
    // A key before the accept.
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    let key = json!({"key": vodozemac::sas::Sas::new().public_key().to_base64(), "transaction_id": "txn-1"});
    let err = alice.handle(BOB, KEY_EVENT, &key, T0).unwrap_err();
    assert_eq!(
        err,
        VerificationError::UnexpectedMessage {
            event_type: KEY_EVENT.into(),
            state: "sas_waiting_for_accept"
        }
    );
    assert_cancelled(&mut alice, CancelCode::UnexpectedMessage, true);
    // A MAC before any SAS; a done in the middle of one; a second ready; a second request.
    let mac = json!({"mac": {}, "keys": "AAAA", "transaction_id": "txn-1"});
    assert_eq!(
        bob.handle(ALICE, MAC_EVENT, &mac, T0).unwrap_err().code(),
        "unexpected_message"
    );
    assert_cancelled(&mut bob, CancelCode::UnexpectedMessage, true);
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    pump(&mut alice, &mut bob, T0);
    let done = json!({"transaction_id": "txn-1"});
    assert!(alice.handle(BOB, DONE_EVENT, &done, T0).is_err());
    assert_cancelled(&mut alice, CancelCode::UnexpectedMessage, true);
    let (mut alice, _) = ready_pair(&a, &b, to_device_flow());
    let ready =
        json!({"from_device": "BOBDEV", "methods": ["m.sas.v1"], "transaction_id": "txn-1"});
    assert!(alice.handle(BOB, READY_EVENT, &ready, T0).is_err());
    assert_cancelled(&mut alice, CancelCode::UnexpectedMessage, true);
}

#[test]
fn malformed_messages_are_invalid() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    deliver(&mut alice, &mut bob, T0).unwrap();
    let mut accept = bob.drain_outgoing().remove(0);
    accept.content["commitment"] = json!("not base64!");
    let err = alice
        .handle(BOB, ACCEPT_EVENT, &accept.content, T0)
        .unwrap_err();
    assert_eq!(
        err,
        VerificationError::InvalidMessage {
            event_type: ACCEPT_EVENT.into(),
            field: "commitment"
        }
    );
    assert_cancelled(&mut alice, CancelCode::InvalidMessage, true);
    // A non-contributory (all-zero) ephemeral key.
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    deliver(&mut alice, &mut bob, T0).unwrap();
    let zero = json!({"key": super::b64_encode(&[0u8; 32]), "transaction_id": "txn-1"});
    assert_eq!(
        bob.handle(ALICE, KEY_EVENT, &zero, T0).unwrap_err().code(),
        "invalid_message"
    );
    assert_cancelled(&mut bob, CancelCode::InvalidMessage, true);
}

#[test]
fn timeouts() {
    let (a, b) = users();
    // 10 minutes after the request.
    let (mut alice, _bob) = ready_pair(&a, &b, to_device_flow());
    assert!(!alice.expire(T0 + FLOW_TIMEOUT_MS));
    assert!(alice.expire(T0 + FLOW_TIMEOUT_MS + 1));
    assert_cancelled(&mut alice, CancelCode::Timeout, true);
    assert!(!alice.expire(T0 + 2 * FLOW_TIMEOUT_MS));
    // One minute without a peer event during SAS; a late message is refused with m.timeout.
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0 + 10_000).unwrap();
    deliver(&mut alice, &mut bob, T0 + 10_000).unwrap();
    assert!(!alice.expire(T0 + 10_000 + SAS_EVENT_TIMEOUT_MS));
    let accept = bob.drain_outgoing().remove(0);
    let late = T0 + 10_000 + SAS_EVENT_TIMEOUT_MS + 1;
    assert_eq!(
        alice.handle(BOB, ACCEPT_EVENT, &accept.content, late),
        Err(VerificationError::Timeout)
    );
    assert_cancelled(&mut alice, CancelCode::Timeout, true);
    // Five minutes after the SAS start, even with a chatty peer.
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    pump(&mut alice, &mut bob, T0 + 50_000);
    assert!(!bob.expire(T0 + 50_000 + SAS_EVENT_TIMEOUT_MS));
    assert!(bob.expire(T0 + 50_000 + SAS_EVENT_TIMEOUT_MS + 1));
    assert_cancelled(&mut bob, CancelCode::Timeout, true);
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    pump(&mut alice, &mut bob, T0);
    alice.touch_sas(T0 + SAS_MAX_AGE_MS);
    assert!(!alice.expire(T0 + SAS_MAX_AGE_MS));
    assert!(alice.expire(T0 + SAS_MAX_AGE_MS + 1));
    assert_cancelled(&mut alice, CancelCode::Timeout, true);
}

#[test]
fn stale_and_misaddressed_requests_are_ignored() {
    let (a, b) = users();
    let mut alice = Verification::request(
        a.own.clone(),
        identity_of(&[&b]),
        to_device_flow(),
        &Method::ALL,
        T0,
    );
    let request = alice.drain_outgoing().remove(0);
    let receive = |now: u64| {
        Verification::from_request(
            b.own.clone(),
            identity_of(&[&a]),
            to_device_flow(),
            ALICE,
            &request.content,
            None,
            now,
        )
    };
    assert!(receive(T0 + MAX_REQUEST_AGE_MS).is_ok());
    assert_eq!(
        receive(T0 + MAX_REQUEST_AGE_MS + 1).unwrap_err(),
        VerificationError::StaleRequest {
            timestamp_ms: T0,
            now_ms: T0 + MAX_REQUEST_AGE_MS + 1
        }
    );
    assert!(receive(T0 - MAX_REQUEST_FUTURE_MS).is_ok());
    assert_eq!(
        receive(T0 - MAX_REQUEST_FUTURE_MS - 1).unwrap_err().code(),
        "stale_request"
    );
    let room = room_request_content(&a.own, "@carol:example.org", &Method::ALL);
    let err = Verification::from_request(
        b.own.clone(),
        identity_of(&[&a]),
        room_flow(),
        ALICE,
        &room.content,
        Some(T0),
        T0,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerificationError::NotForUs {
            to: "@carol:example.org".into()
        }
    );
    let room = room_request_content(&a.own, BOB, &Method::ALL);
    let err = Verification::from_request(
        b.own.clone(),
        identity_of(&[&a]),
        room_flow(),
        ALICE,
        &room.content,
        None,
        T0,
    )
    .unwrap_err();
    assert_eq!(err.code(), "invalid_message");
}

#[test]
fn declining_and_user_cancel() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, room_flow());
    bob.cancel(T0).unwrap();
    assert_cancelled(&mut bob, CancelCode::User, true);
    assert_eq!(
        bob.cancel(T0),
        Err(VerificationError::Finished { state: "cancelled" })
    );
    forward_cancel(&mut bob, &mut alice, CancelCode::User);
}

#[test]
fn in_room_request_answered_by_our_other_device() {
    let (a, b) = users();
    let request = room_request_content(&a.own, BOB, &Method::ALL);
    let mut bob = Verification::from_request(
        b.own.clone(),
        identity_of(&[&a]),
        room_flow(),
        ALICE,
        &request.content,
        Some(T0),
        T0,
    )
    .unwrap();
    // Our own echo is ignored; a ready of another of our devices takes the request.
    let echo = json!({"from_device": "BOBDEV", "methods": ["m.sas.v1"], "m.relates_to": {"rel_type": "m.reference", "event_id": "$request"}});
    bob.handle(BOB, READY_EVENT, &echo, T0).unwrap();
    assert_eq!(bob.state_name(), "received");
    let mut other = echo.clone();
    other["from_device"] = json!("BOBTABLET");
    bob.handle(BOB, READY_EVENT, &other, T0).unwrap();
    assert_cancelled(&mut bob, CancelCode::Accepted, false);
    assert!(bob.drain_outgoing().is_empty());
}

#[test]
fn start_conflict_smaller_user_wins() {
    let (a, b) = users();
    for flow in [to_device_flow(), room_flow()] {
        let (mut alice, mut bob) = ready_pair(&a, &b, flow);
        alice.start_sas(T0).unwrap();
        bob.start_sas(T0).unwrap();
        let alice_start = alice.drain_outgoing().remove(0);
        let bob_start = bob.drain_outgoing().remove(0);
        // @alice < @bob: Alice ignores Bob's start, Bob drops his and accepts Alice's.
        alice
            .handle(BOB, START_EVENT, &bob_start.content, T0)
            .unwrap();
        assert!(alice.drain_outgoing().is_empty());
        assert_eq!(alice.state_name(), "sas_waiting_for_accept");
        bob.handle(ALICE, START_EVENT, &alice_start.content, T0)
            .unwrap();
        assert_eq!(bob.pending()[0].event_type, ACCEPT_EVENT);
        pump(&mut alice, &mut bob, T0);
        assert_eq!(alice.emoji(), bob.emoji());
        alice.confirm_sas(T0).unwrap();
        bob.confirm_sas(T0).unwrap();
        pump(&mut alice, &mut bob, T0);
        expect_verified(&alice, &b, true, true);
        expect_verified(&bob, &a, true, true);
    }
}

#[test]
fn start_conflict_same_user_smaller_device_wins() {
    let master = key();
    let a = device(ALICE, "ZZZ", master, true);
    let b = device(ALICE, "AAA", master, true);
    let (mut zzz, mut aaa) = ready_pair(&a, &b, to_device_flow());
    zzz.start_sas(T0).unwrap();
    aaa.start_sas(T0).unwrap();
    let z_start = zzz.drain_outgoing().remove(0);
    let a_start = aaa.drain_outgoing().remove(0);
    aaa.handle(ALICE, START_EVENT, &z_start.content, T0)
        .unwrap();
    assert!(aaa.drain_outgoing().is_empty());
    zzz.handle(ALICE, START_EVENT, &a_start.content, T0)
        .unwrap();
    assert_eq!(zzz.pending()[0].event_type, ACCEPT_EVENT);
    pump(&mut zzz, &mut aaa, T0);
    assert!(zzz.emoji().is_some());
    assert_eq!(zzz.emoji(), aaa.emoji());
}

#[test]
fn start_conflict_with_different_methods_cancels() {
    let (a, b) = users();
    // Bob shows a code, then starts SAS; Alice scans the code meanwhile.
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    let code = bob.show_qr(T0).unwrap();
    bob.start_sas(T0).unwrap();
    let sas_start = bob.drain_outgoing().remove(0);
    alice.scan_qr(&code, T0).unwrap();
    let reciprocate = alice.drain_outgoing().remove(0);
    let err = alice
        .handle(BOB, START_EVENT, &sas_start.content, T0)
        .unwrap_err();
    assert_eq!(err.code(), "unexpected_message");
    assert_cancelled(&mut alice, CancelCode::UnexpectedMessage, true);
    let err = bob
        .handle(ALICE, START_EVENT, &reciprocate.content, T0)
        .unwrap_err();
    assert_eq!(err.code(), "unexpected_message");
    assert_cancelled(&mut bob, CancelCode::UnexpectedMessage, true);
}

// ---- QR --------------------------------------------------------------------------------------

/// `shower` shows, `scanner` scans, both end done.
fn run_qr(shower: &mut Verification, scanner: &mut Verification) {
    let bytes = shower.show_qr(T0).unwrap();
    assert_eq!(
        shower.show_qr(T0).unwrap(),
        bytes,
        "the same code while ready"
    );
    scanner.scan_qr(&bytes, T0).unwrap();
    let start = scanner.pending()[0].clone();
    assert_eq!(start.event_type, START_EVENT);
    assert_eq!(start.content["method"], "m.reciprocate.v1");
    let payload = QrPayload::parse(&bytes).unwrap();
    assert_eq!(
        start.content["secret"],
        json!(super::b64_encode(&payload.secret))
    );
    assert_eq!(payload.secret.len(), qr::SECRET_LEN);
    deliver(scanner, shower, T0).unwrap();
    assert_eq!(shower.state_name(), "qr_scanned");
    assert!(shower.verified_keys().is_none());
    shower.confirm_qr_scanned(T0).unwrap();
    assert_eq!(shower.pending()[0].event_type, DONE_EVENT);
    deliver(shower, scanner, T0).unwrap();
    assert_eq!(scanner.state_name(), "done");
    deliver(scanner, shower, T0).unwrap();
    assert_eq!(shower.state_name(), "done");
}

#[test]
fn qr_other_user_both_ways() {
    let (a, b) = users();
    for flow in [room_flow(), to_device_flow()] {
        let (mut alice, mut bob) = ready_pair(&a, &b, flow.clone());
        let bytes = alice.show_qr(T0).unwrap();
        let payload = QrPayload::parse(&bytes).unwrap();
        assert_eq!(payload.mode, QrMode::OtherUser);
        assert_eq!(payload.flow_id, flow.as_str());
        assert_eq!(&payload.key1, a.own.master_key.unwrap().as_bytes());
        assert_eq!(&payload.key2, b.own.master_key.unwrap().as_bytes());
        run_qr(&mut alice, &mut bob);
        expect_verified(&alice, &b, false, true);
        expect_verified(&bob, &a, false, true);

        let (mut alice, mut bob) = ready_pair(&a, &b, flow);
        run_qr(&mut bob, &mut alice);
        expect_verified(&alice, &b, false, true);
        expect_verified(&bob, &a, false, true);
    }
}

#[test]
fn qr_self_verification_modes() {
    let master = key();
    let trusted = device(ALICE, "PHONE", master, true);
    let new = device(ALICE, "LAPTOP", master, false);
    // Mode 0x01: the trusted phone shows; the laptop learns the master key, the phone the
    // laptop's device key.
    let (mut phone, mut laptop) = ready_pair(&trusted, &new, to_device_flow());
    let payload = QrPayload::parse(&phone.show_qr(T0).unwrap()).unwrap();
    assert_eq!(payload.mode, QrMode::SelfTrusted);
    assert_eq!(&payload.key1, master.as_bytes());
    assert_eq!(&payload.key2, new.own.ed25519.as_bytes());
    run_qr(&mut phone, &mut laptop);
    expect_verified(&phone, &new, true, false);
    expect_verified(&laptop, &trusted, false, true);
    // Mode 0x02: the untrusting laptop shows; the phone verifies the laptop's key, the laptop
    // learns the master key.
    let (mut laptop, mut phone) = ready_pair(&new, &trusted, to_device_flow());
    let payload = QrPayload::parse(&laptop.show_qr(T0).unwrap()).unwrap();
    assert_eq!(payload.mode, QrMode::SelfUntrusted);
    assert_eq!(&payload.key1, new.own.ed25519.as_bytes());
    assert_eq!(&payload.key2, master.as_bytes());
    run_qr(&mut laptop, &mut phone);
    expect_verified(&phone, &new, true, false);
    expect_verified(&laptop, &trusted, false, true);
}

#[test]
fn qr_both_scanned_smaller_user_wins() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    let alice_code = alice.show_qr(T0).unwrap();
    let bob_code = bob.show_qr(T0).unwrap();
    alice.scan_qr(&bob_code, T0).unwrap();
    bob.scan_qr(&alice_code, T0).unwrap();
    // Alice (the smaller user id) ignores Bob's reciprocate; Bob drops his own and answers
    // Alice's as the side whose code was scanned.
    deliver(&mut bob, &mut alice, T0).unwrap();
    assert_eq!(alice.state_name(), "qr_reciprocated");
    deliver(&mut alice, &mut bob, T0).unwrap();
    assert_eq!(bob.state_name(), "qr_scanned");
    bob.confirm_qr_scanned(T0).unwrap();
    pump(&mut alice, &mut bob, T0);
    expect_verified(&alice, &b, false, true);
    expect_verified(&bob, &a, false, true);
}

#[test]
fn qr_wrong_secret_is_key_mismatch() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    let mut bytes = alice.show_qr(T0).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    bob.scan_qr(&bytes, T0).unwrap();
    let err = deliver(&mut bob, &mut alice, T0).unwrap_err();
    assert_eq!(err, VerificationError::QrSecretMismatch);
    assert_cancelled(&mut alice, CancelCode::KeyMismatch, true);
}

#[test]
fn qr_wrong_key_cancels_and_foreign_codes_do_not() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    let bytes = alice.show_qr(T0).unwrap();
    let mut payload = QrPayload::parse(&bytes).unwrap();
    // Another flow's code, and bytes that are no code at all: refused, the flow goes on.
    payload.flow_id = "txn-other".into();
    let err = bob.scan_qr(&payload.to_bytes().unwrap(), T0).unwrap_err();
    assert_eq!(err.code(), "wrong_flow");
    assert_eq!(
        bob.scan_qr(b"https://example.org", T0).unwrap_err().code(),
        "qr_payload"
    );
    assert_eq!(bob.state_name(), "ready");
    // A code claiming another master key for Alice.
    payload.flow_id = "txn-1".into();
    payload.key1 = *key().as_bytes();
    let err = bob.scan_qr(&payload.to_bytes().unwrap(), T0).unwrap_err();
    assert_eq!(
        err,
        VerificationError::QrKeyMismatch {
            which: "their master key"
        }
    );
    assert_cancelled(&mut bob, CancelCode::KeyMismatch, true);
    // A code that thinks Bob has another master key.
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    let mut payload = QrPayload::parse(&alice.show_qr(T0).unwrap()).unwrap();
    payload.key2 = *key().as_bytes();
    let err = bob.scan_qr(&payload.to_bytes().unwrap(), T0).unwrap_err();
    assert_eq!(
        err,
        VerificationError::QrKeyMismatch {
            which: "our master key"
        }
    );
    // A self-verification mode between two users.
    let (_, mut bob) = ready_pair(&a, &b, to_device_flow());
    payload.mode = QrMode::SelfTrusted;
    let err = bob.scan_qr(&payload.to_bytes().unwrap(), T0).unwrap_err();
    assert_eq!(err.code(), "qr_key_mismatch");
}

#[test]
fn qr_reciprocate_without_a_shown_code_is_unexpected() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    let content = json!({"from_device": "BOBDEV", "method": "m.reciprocate.v1", "secret": "AAAAAAAAAAA", "transaction_id": "txn-1"});
    assert_eq!(
        alice
            .handle(BOB, START_EVENT, &content, T0)
            .unwrap_err()
            .code(),
        "unexpected_message"
    );
    assert_cancelled(&mut alice, CancelCode::UnexpectedMessage, true);
    assert!(bob.confirm_qr_scanned(T0).is_err());
}

#[test]
fn qr_payload_known_answer_and_strict_parsing() {
    // The layout of the specification's example (mode 0, keys 00.., 10.., secret 20..27).
    let key1: [u8; 32] = std::array::from_fn(|i| i as u8);
    let key2: [u8; 32] = std::array::from_fn(|i| 0x10 + i as u8);
    let payload = QrPayload {
        mode: QrMode::OtherUser,
        flow_id: "$ABCD".into(),
        key1,
        key2,
        secret: zeroize::Zeroizing::new((0x20..0x28).collect()),
    };
    let bytes = payload.to_bytes().unwrap();
    let mut expected = vec![0x4D, 0x41, 0x54, 0x52, 0x49, 0x58, 0x02, 0x00, 0x00, 0x05];
    expected.extend_from_slice(b"$ABCD");
    expected.extend_from_slice(&key1);
    expected.extend_from_slice(&key2);
    expected.extend_from_slice(&[0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27]);
    assert_eq!(bytes.as_slice(), expected.as_slice());
    assert_eq!(super::b64_encode(&payload.secret), "ICEiIyQlJic");
    assert_eq!(super::b64_encode(&key1[..7]), "AAECAwQFBg");
    assert_eq!(QrPayload::parse(&bytes).unwrap(), payload);

    for cut in 0..expected.len() - 8 {
        let err = QrPayload::parse(&expected[..cut]).unwrap_err();
        assert!(
            matches!(
                err,
                QrError::Truncated { .. } | QrError::SecretLength { .. }
            ),
            "cut at {cut}: {err:?}"
        );
    }
    let mut bad = expected.clone();
    bad[0] = b'N';
    assert_eq!(QrPayload::parse(&bad), Err(QrError::Header));
    let mut bad = expected.clone();
    bad[6] = 0x01;
    assert_eq!(QrPayload::parse(&bad), Err(QrError::Version { version: 1 }));
    let mut bad = expected.clone();
    bad[7] = 0x03;
    assert_eq!(QrPayload::parse(&bad), Err(QrError::Mode { mode: 3 }));
    let mut bad = expected.clone();
    bad[9] = 0x00;
    assert_eq!(QrPayload::parse(&bad), Err(QrError::FlowId));
    let mut bad = expected.clone();
    bad[10] = 0xFF;
    assert_eq!(QrPayload::parse(&bad), Err(QrError::FlowId));
    let mut bad = expected.clone();
    bad[9] = 0x40; // claims a 64-byte flow id: runs into the keys, leaves no room
    assert!(matches!(
        QrPayload::parse(&bad),
        Err(QrError::SecretLength { .. } | QrError::Truncated { .. })
    ));
    let mut trailing = expected.clone();
    trailing.extend_from_slice(&[0u8; qr::MAX_SECRET_LEN - 8]);
    assert!(QrPayload::parse(&trailing).is_ok());
    trailing.push(0);
    assert_eq!(
        QrPayload::parse(&trailing),
        Err(QrError::SecretLength {
            len: qr::MAX_SECRET_LEN + 1
        })
    );
    let short = &expected[..expected.len() - 1];
    assert_eq!(
        QrPayload::parse(short),
        Err(QrError::SecretLength { len: 7 })
    );
    assert_eq!(QrError::Header.code(), "header");
    // The Debug output never shows the secret or the keys.
    let debug = format!("{payload:?}");
    assert!(debug.contains("<redacted>") && !debug.contains("32") && !debug.contains("ICEi"));
    assert!(payload.secret_matches(&[0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27]));
    assert!(!payload.secret_matches(&[0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26]));
    assert!(!payload.secret_matches(&[0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x28]));
}

#[test]
fn reciprocate_debug_does_not_leak_the_secret() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    bob.scan_qr(&alice.show_qr(T0).unwrap(), T0).unwrap();
    let secret = bob.pending()[0].content["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!format!("{:?}", bob.pending()[0]).contains(&secret));
    assert!(!format!("{bob:?}").contains(&secret));
    assert!(!format!("{alice:?}").contains(&secret));
}

// ---- known answers ---------------------------------------------------------------------------

#[test]
fn commitment_known_answer_from_matrix_sdk() {
    // matrix-sdk-crypto `verification/sas/helpers.rs`, test `commitment_calculation`.
    let key =
        Curve25519PublicKey::from_base64("Q/NmNFEUS1fS+YeEmiZkjjblKTitrKOAk7cPEumcMlg").unwrap();
    let start = json!({
        "from_device": "XOWLHHFSWM",
        "transaction_id": "bYxBsirjUJO9osar6ST4i2M2NjrYLA7l",
        "method": "m.sas.v1",
        "key_agreement_protocols": ["curve25519-hkdf-sha256", "curve25519"],
        "hashes": ["sha256"],
        "message_authentication_codes": ["hkdf-hmac-sha256", "hmac-sha256"],
        "short_authentication_string": ["decimal", "emoji"]
    });
    assert_eq!(
        super::b64_encode(&commitment(&key, &start).unwrap()),
        "CCQmB4JCdB0FW21FdAnHj/Hu8+W9+Nb0vgwPEnZZQ4g"
    );
}

#[test]
fn info_strings_known_answer() {
    // The strings of matrix-sdk's `extra_info_sas` and `extra_mac_info_send`.
    let k1 = Curve25519PublicKey::from_bytes([1u8; 32]);
    let k2 = Curve25519PublicKey::from_bytes([2u8; 32]);
    assert_eq!(
        sas_info((ALICE, "AD", &k1), (BOB, "BD", &k2), "txn"),
        format!(
            "MATRIX_KEY_VERIFICATION_SAS|@alice:example.org|AD|{}|@bob:example.org|BD|{}|txn",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
            "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"
        )
    );
    assert_eq!(
        mac_info((ALICE, "AD"), (BOB, "BD"), "$event"),
        "MATRIX_KEY_VERIFICATION_MAC@alice:example.orgAD@bob:example.orgBD$event"
    );
}

#[test]
fn sas_info_puts_the_start_sender_first() {
    let (a, b) = users();
    let (mut alice, mut bob) = ready_pair(&a, &b, room_flow());
    bob.start_sas(T0).unwrap();
    deliver(&mut bob, &mut alice, T0).unwrap(); // start
    deliver(&mut alice, &mut bob, T0).unwrap(); // accept; Bob sends his key
    let bob_key = bob.pending()[0].content["key"].as_str().unwrap().to_owned();
    deliver(&mut bob, &mut alice, T0).unwrap(); // Alice answers with hers
    let alice_key = alice.pending()[0].content["key"]
        .as_str()
        .unwrap()
        .to_owned();
    deliver(&mut alice, &mut bob, T0).unwrap();
    let expected = format!(
        "MATRIX_KEY_VERIFICATION_SAS|@bob:example.org|BOBDEV|{bob_key}|@alice:example.org|ALICEDEV|{alice_key}|$request"
    );
    assert_eq!(alice.sas_info_string(), Some(expected.clone()));
    assert_eq!(bob.sas_info_string(), Some(expected));
}

#[test]
fn mac_content_known_info_strings() {
    // Our MAC content checked with vodozemac directly and literal info strings (the peer's
    // view, as matrix-sdk's `extra_mac_info_receive` builds it).
    let (a, b) = users();
    let (sa, sb) = (vodozemac::sas::Sas::new(), vodozemac::sas::Sas::new());
    let (ka, kb) = (sa.public_key(), sb.public_key());
    let ours = sa.diffie_hellman(kb).unwrap();
    let theirs = sb.diffie_hellman(ka).unwrap();
    let peer = identity_of(&[&b]);
    let flow = to_device_flow();
    let ctx = sas::Ctx {
        own: &a.own,
        peer: &peer,
        flow: &flow,
    };
    let content = sas::mac_content(&ours, ctx, "BOBDEV");
    let info = "MATRIX_KEY_VERIFICATION_MAC@alice:example.orgALICEDEV@bob:example.orgBOBDEVtxn-1";
    let master = a.own.master_key.unwrap().to_base64();
    let check = |input: &str, suffix: &str, mac: &Value| {
        let mac = vodozemac::sas::Mac::from_base64(mac.as_str().unwrap()).unwrap();
        theirs
            .verify_mac(input, &format!("{info}{suffix}"), &mac)
            .unwrap();
    };
    check(
        &a.own.ed25519.to_base64(),
        "ed25519:ALICEDEV",
        &content["mac"]["ed25519:ALICEDEV"],
    );
    let master_id = format!("ed25519:{master}");
    check(&master, &master_id, &content["mac"][&master_id]);
    let mut ids = ["ed25519:ALICEDEV".to_owned(), master_id];
    ids.sort();
    check(&ids.join(","), "KEY_IDS", &content["keys"]);
    assert_eq!(content["transaction_id"], "txn-1");
}

#[test]
fn cancel_codes_and_error_codes() {
    let codes = [
        (CancelCode::User, "m.user"),
        (CancelCode::Timeout, "m.timeout"),
        (CancelCode::UnknownTransaction, "m.unknown_transaction"),
        (CancelCode::UnknownMethod, "m.unknown_method"),
        (CancelCode::UnexpectedMessage, "m.unexpected_message"),
        (CancelCode::KeyMismatch, "m.key_mismatch"),
        (CancelCode::UserMismatch, "m.user_mismatch"),
        (CancelCode::InvalidMessage, "m.invalid_message"),
        (CancelCode::Accepted, "m.accepted"),
        (CancelCode::MismatchedCommitment, "m.mismatched_commitment"),
        (CancelCode::MismatchedSas, "m.mismatched_sas"),
    ];
    for (code, wire) in codes {
        assert_eq!(code.as_str(), wire);
        assert_eq!(CancelCode::from_wire(wire), code);
        assert_eq!(code.to_string(), wire);
    }
    assert_eq!(
        CancelCode::from_wire("org.example.x").as_str(),
        "org.example.x"
    );
    assert_eq!(
        VerificationError::MismatchedCommitment.cancel_code(),
        CancelCode::MismatchedCommitment
    );
    assert_eq!(VerificationError::Timeout.code(), "timeout");
    let id = new_transaction_id().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(id, new_transaction_id().unwrap());
}

// ---- emoji -----------------------------------------------------------------------------------

#[test]
fn emoji_table() {
    assert_eq!(EMOJI.len(), 64);
    assert_eq!(EMOJI[0].symbol, "🐶");
    assert_eq!(EMOJI[0].description, "Dog");
    assert_eq!(EMOJI[21].symbol, "\u{2601}\u{FE0F}");
    assert_eq!(EMOJI[21].description, "Cloud");
    assert_eq!(EMOJI[36].description, "Thumbs Up");
    assert_eq!(EMOJI[63].symbol, "📌");
    assert_eq!(EMOJI[63].description, "Pin");
    let symbols: std::collections::BTreeSet<_> = EMOJI.iter().map(|e| e.symbol).collect();
    let names: std::collections::BTreeSet<_> = EMOJI.iter().map(|e| e.description).collect();
    assert_eq!((symbols.len(), names.len()), (64, 64));
    assert_eq!(emoji::emoji(63), Some(EMOJI[63]));
    assert_eq!(emoji::emoji(64), None);
}

// ---- no panic on any input -------------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "m.sas.v1",
            "m.reciprocate.v1",
            "curve25519-hkdf-sha256",
            "sha256",
            "hkdf-hmac-sha256.v2",
            "decimal",
            "emoji",
            "ALICEDEV",
            "BOBDEV",
            "AAAA",
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    let inner = leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    // Mostly objects with the fields verification messages carry.
    let fields = prop::sample::select(vec![
        "from_device",
        "method",
        "methods",
        "key",
        "mac",
        "keys",
        "commitment",
        "secret",
        "code",
        "reason",
        "key_agreement_protocol",
        "hash",
        "message_authentication_code",
        "short_authentication_string",
        "key_agreement_protocols",
        "hashes",
        "message_authentication_codes",
        "timestamp",
    ]);
    prop::collection::btree_map(fields, inner, 0..8).prop_map(|m| {
        let mut map: serde_json::Map<String, Value> =
            m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        map.insert("transaction_id".into(), json!("txn-1"));
        Value::Object(map)
    })
}

/// Machines in every reachable state: (verification, peer's user id).
fn machines_in_every_state() -> Vec<(Verification, &'static str)> {
    let (a, b) = users();
    let mut out = Vec::new();
    let requested = Verification::request(
        a.own.clone(),
        identity_of(&[&b]),
        to_device_flow(),
        &Method::ALL,
        T0,
    );
    out.push((requested, BOB));
    let (alice, bob) = ready_pair(&a, &b, to_device_flow());
    out.push((alice, BOB));
    out.push((bob, ALICE));
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    out.push((alice, BOB));
    bob.start_sas(T0).unwrap();
    deliver(&mut bob, &mut ready_pair(&a, &b, to_device_flow()).0, T0).unwrap();
    out.push((bob, ALICE));
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    alice.start_sas(T0).unwrap();
    pump(&mut alice, &mut bob, T0);
    out.push((alice, BOB));
    bob.confirm_sas(T0).unwrap();
    out.push((bob, ALICE));
    let (mut alice, mut bob) = ready_pair(&a, &b, to_device_flow());
    bob.scan_qr(&alice.show_qr(T0).unwrap(), T0).unwrap();
    deliver(&mut bob, &mut alice, T0).unwrap();
    out.push((bob, ALICE));
    out.push((alice, BOB));
    out
}

const EVENT_TYPES: [&str; 10] = [
    REQUEST_EVENT,
    READY_EVENT,
    START_EVENT,
    ACCEPT_EVENT,
    KEY_EVENT,
    MAC_EVENT,
    DONE_EVENT,
    CANCEL_EVENT,
    ROOM_MESSAGE_EVENT,
    "m.key.verification.unknown",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_contents_never_panic(
        contents in prop::collection::vec((0..EVENT_TYPES.len(), arb_json()), 1..4),
        scanned in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        for (mut machine, peer) in machines_in_every_state() {
            let _ = machine.scan_qr(&scanned, T0);
            for (ty, content) in &contents {
                let result = machine.handle(peer, EVENT_TYPES[*ty], content, T0);
                if let Err(e) = &result {
                    // A refused content either cancelled the flow or left it as it was.
                    let _ = (e.code(), e.cancel_code(), e.to_string());
                }
                let _ = (machine.emoji(), machine.decimals(), machine.verified_keys());
                let _ = machine.confirm_sas(T0);
                let _ = machine.drain_outgoing();
                let _ = machine.expire(T0 + 1);
            }
        }
        let _ = QrPayload::parse(&scanned);
        let _ = Verification::from_request(
            users().1.own, identity_of(&[&users().0]), to_device_flow(), ALICE,
            &contents[0].1, None, T0,
        );
    }
}

#[test]
fn peers_of_tests_are_consistent() {
    // The helper the tests rely on: each side sees the other's keys.
    let (_, b) = users();
    let id = identity_of(&[&b]);
    assert_eq!(
        id.devices,
        BTreeMap::from([("BOBDEV".to_owned(), b.own.ed25519)])
    );
    assert_eq!(id.master_key, b.own.master_key);
}
