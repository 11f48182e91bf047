//! End-to-end encrypted messaging between our own clients on the real Synapse.

use std::time::Duration;

use tchap_secure_core::Client;
use tchap_secure_tests::synapse::Synapse;

use crate::support::{InProcess, PASSWORD, password, rt, synapse_config};

pub struct Pair {
    pub a: InProcess,
    pub b: InProcess,
    pub alice: Client,
    pub bob: Client,
    pub room: String,
}

/// Alice and Bob logged in, in one encrypted room, both joined and synced.
pub fn pair(rt: &tokio::runtime::Runtime, prefix: &str) -> Pair {
    pair_on(rt, prefix, Synapse::shared(), synapse_config())
}

/// [`pair`] on `synapse`, both clients opened with `config` (e.g. the content scanner's
/// front as their homeserver URL).
pub fn pair_on(
    rt: &tokio::runtime::Runtime,
    prefix: &str,
    synapse: &Synapse,
    config: tchap_secure_core::Config,
) -> Pair {
    let (a, b) = (InProcess::new(prefix), InProcess::new(prefix));
    let (ua, ub) = (
        synapse.unique_user(&format!("{prefix}-a")),
        synapse.unique_user(&format!("{prefix}-b")),
    );
    synapse.register(&ua, PASSWORD, false);
    let reg_b = synapse.register(&ub, PASSWORD, false);
    let mut alice = a.open_with(config.clone()).unwrap();
    let mut bob = b.open_with(config).unwrap();
    rt.block_on(alice.login(&ua, &password(), "alice-phone"))
        .unwrap();
    rt.block_on(bob.login(&ub, &password(), "bob-phone"))
        .unwrap();
    let room = rt
        .block_on(alice.create_room(Some("E2EE"), std::slice::from_ref(&reg_b.user_id), false))
        .unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(bob.join(&room)).unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    Pair {
        a,
        b,
        alice,
        bob,
        room,
    }
}

/// Syncs `client` until a message with `body` arrives in `room` (or 20 attempts).
pub fn receive(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    room: &str,
    body: &str,
) -> tchap_secure_core::store::TimelineEvent {
    for _ in 0..20 {
        let s = rt
            .block_on(client.sync_once(Duration::from_millis(500)))
            .unwrap();
        if let Some(m) = s
            .messages
            .iter()
            .find(|m| m.room_id == room && m.body.as_deref() == Some(body))
        {
            return m.clone();
        }
    }
    panic!(
        "{body:?} never arrived; timeline: {:#?}",
        client.messages(room, 20).unwrap()
    );
}

#[test]
fn our_clients_exchange_encrypted_messages() {
    let rt = rt();
    let mut p = pair(&rt, "msg");
    let event_id = rt
        .block_on(p.alice.send_text(&p.room, "Bonjour Bob"))
        .unwrap();
    let got = receive(&rt, &mut p.bob, &p.room, "Bonjour Bob");
    assert_eq!(got.event_id, event_id);
    // Both members set up cross-signing at login: Alice's device is signed by her identity,
    // which Bob pinned at first sight (not verified interactively).
    assert_eq!(got.trust.as_deref(), Some("identity_pinned"));
    assert_eq!(got.state, "decrypted");

    rt.block_on(p.bob.send_text(&p.room, "Bonjour Alice"))
        .unwrap();
    let got = receive(&rt, &mut p.alice, &p.room, "Bonjour Alice");
    assert_eq!(got.trust.as_deref(), Some("identity_pinned"));
    // Alice reads her own message too (her own inbound copy of the session).
    let own = p.alice.messages(&p.room, 10).unwrap();
    assert!(
        own.iter().any(|m| m.body.as_deref() == Some("Bonjour Bob")),
        "{own:#?}"
    );
    drop(p.a);
    drop(p.b);
}
