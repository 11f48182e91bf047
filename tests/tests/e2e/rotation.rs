//! Megolm rotation, observable through session ids: after 100 messages, and when a member
//! leaves — after which the leaver cannot decrypt what follows.

use std::time::Duration;

use tchap_secure_core::Error;
use tchap_secure_core::crypto::CryptoError;
use tchap_secure_tests::synapse::Synapse;

use crate::messaging::{pair, receive};
use crate::support::{InProcess, PASSWORD, password, rt};
use tchap_secure_tests::harness::{access_token, raw_event};

#[test]
fn megolm_session_rotates_after_100_messages() {
    let rt = rt();
    let mut p = pair(&rt, "rot100");
    rt.block_on(p.alice.send_text(&p.room, "message 1"))
        .unwrap();
    let first = p.alice.outbound_session_id(&p.room).unwrap().unwrap();
    for i in 2..=100 {
        rt.block_on(p.alice.send_text(&p.room, &format!("message {i}")))
            .unwrap();
    }
    assert_eq!(
        p.alice.outbound_session_id(&p.room).unwrap().unwrap(),
        first,
        "rotated too early"
    );
    let id_101 = rt
        .block_on(p.alice.send_text(&p.room, "message 101"))
        .unwrap();
    let second = p.alice.outbound_session_id(&p.room).unwrap().unwrap();
    assert_ne!(second, first, "no rotation after 100 messages");
    let got = receive(&rt, &mut p.bob, &p.room, "message 101");
    assert_eq!(got.event_id, id_101);
    assert_eq!(got.session_id.as_deref(), Some(second.as_str()));
    let m100 = p.bob.messages(&p.room, 200).unwrap();
    let m100 = m100
        .iter()
        .find(|m| m.body.as_deref() == Some("message 100"))
        .unwrap();
    assert_eq!(m100.session_id.as_deref(), Some(first.as_str()));
}

#[test]
fn a_member_who_leaves_cannot_decrypt_what_follows() {
    let rt = rt();
    let synapse = Synapse::shared();
    let mut p = pair(&rt, "leave");
    // Carol joins too.
    let c = InProcess::new("leave-c");
    let uc = synapse.unique_user("leave-c");
    let reg_c = synapse.register(&uc, PASSWORD, false);
    let mut carol = c.open().unwrap();
    rt.block_on(carol.login(&uc, &password(), "carol-phone"))
        .unwrap();
    rt.block_on(p.alice.invite(&p.room, &reg_c.user_id))
        .unwrap();
    rt.block_on(carol.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(carol.join(&p.room)).unwrap();
    rt.block_on(carol.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(p.alice.sync_once(Duration::ZERO)).unwrap();

    let before = rt
        .block_on(p.alice.send_text(&p.room, "before the leave"))
        .unwrap();
    let s1 = p.alice.outbound_session_id(&p.room).unwrap().unwrap();
    receive(&rt, &mut p.bob, &p.room, "before the leave");
    receive(&rt, &mut carol, &p.room, "before the leave");

    rt.block_on(p.bob.leave(&p.room)).unwrap();
    rt.block_on(p.alice.sync_once(Duration::ZERO)).unwrap();
    let after = rt
        .block_on(p.alice.send_text(&p.room, "after the leave"))
        .unwrap();
    let s2 = p.alice.outbound_session_id(&p.room).unwrap().unwrap();
    assert_ne!(s1, s2, "no rotation when a member left");
    receive(&rt, &mut carol, &p.room, "after the leave");

    // Bob gets hold of both ciphertexts (say, from a copy of the server's database).
    let token = access_token(&p.alice);
    let raw_before = raw_event(&token, &p.room, &before);
    let raw_after = raw_event(&token, &p.room, &after);
    assert_eq!(
        p.bob.try_decrypt(&p.room, &raw_before).unwrap(),
        "before the leave"
    );
    let e = p.bob.try_decrypt(&p.room, &raw_after).unwrap_err();
    assert!(
        matches!(e, Error::Crypto(CryptoError::UnknownSession { .. })),
        "{e:?}"
    );
}
