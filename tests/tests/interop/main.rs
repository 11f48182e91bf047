//! Interoperability tests against an independent Matrix E2EE implementation: `matrix-sdk`
//! 0.18 peers (DESIGN §9) on the shared testbed Synapse, over the run's PKI.
//!
//! The self-tests here prove the peer itself works (two matrix-sdk peers talking to each
//! other) before our own client is tested against it. The attachment tests
//! (`attachments.rs`) use the content scanner's testbed and its legacy-media Synapse instead.

mod attachments;
mod catch_up;
mod cross_signing;
mod notification;
mod ours;
mod peer;
mod relations;
mod verification;

use std::time::{Duration, Instant};

use matrix_sdk::ruma::OwnedEventId;
use matrix_sdk::ruma::events::room::member::MembershipState;
use tchap_secure_tests::pki::Pki;
use tchap_secure_tests::synapse::Synapse;

use peer::{Peer, client_trusting, connects};

const PASSWORD: &str = "interop peer password 7";

/// How long a peer waits for a message that should arrive.
const ARRIVES: Duration = Duration::from_secs(30);
/// How long a peer watches for a message that must not arrive.
const NEVER_ARRIVES: Duration = Duration::from_secs(5);

/// Registers a unique user on the shared Synapse and logs a matrix-sdk peer in as them.
async fn new_peer(prefix: &str) -> Peer {
    let synapse = Synapse::shared();
    let localpart = synapse.unique_user(prefix);
    synapse.register(&localpart, PASSWORD, false);
    Peer::login(&localpart, PASSWORD).await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_matrix_sdk_peers_exchange_encrypted_messages() {
    let a = new_peer("interop-a").await;
    let b = new_peer("interop-b").await;
    eprintln!("peer A: {a:?}\npeer B: {b:?}");
    assert_ne!(a.device_id, b.device_id);

    let room = a
        .create_encrypted_room(std::slice::from_ref(&b.user_id))
        .await;
    b.join(&room).await;
    assert!(
        a.wait_for_membership(&room, &b.user_id, MembershipState::Join, ARRIVES)
            .await,
        "A never saw B join"
    );
    b.sync_once().await;

    // A → B.
    let hello = "hello from A";
    let hello_id = a.send_text(&room, hello).await;
    let started = Instant::now();
    let (sender, id) = b
        .wait_for_text(&room, hello, ARRIVES)
        .await
        .expect("B decrypts A's message");
    eprintln!(
        "B decrypted A's first message {:?} after sending",
        started.elapsed()
    );
    assert_eq!((&sender, &id), (&a.user_id, &hello_id));

    // B → A.
    let reply = "reply from B";
    let reply_id = b.send_text(&room, reply).await;
    let (sender, id) = a
        .wait_for_text(&room, reply, ARRIVES)
        .await
        .expect("A decrypts B's reply");
    assert_eq!((&sender, &id), (&b.user_id, &reply_id));

    // A rotates its outbound Megolm session: B still decrypts, under a new session id.
    let before_rotation = a.send_text(&room, "A, same session").await;
    b.wait_for_text(&room, "A, same session", ARRIVES)
        .await
        .expect("B decrypts A's second message");
    assert_eq!(
        a.megolm_session_of(&room, &hello_id).await,
        a.megolm_session_of(&room, &before_rotation).await,
        "without rotation A keeps its Megolm session"
    );
    a.rotate(&room).await;
    let rotated = "A, after rotation";
    let rotated_id = a.send_text(&room, rotated).await;
    let started = Instant::now();
    let (sender, _) = b
        .wait_for_text(&room, rotated, ARRIVES)
        .await
        .expect("B decrypts A's message under the rotated session");
    eprintln!(
        "B decrypted the rotated session's message {:?} after sending",
        started.elapsed()
    );
    assert_eq!(sender, a.user_id);
    let session_before = a.megolm_session_of(&room, &hello_id).await;
    let session_after = a.megolm_session_of(&room, &rotated_id).await;
    assert_ne!(
        session_before, session_after,
        "rotation gives a new session"
    );
    // B reads the same session ids from the server.
    assert_eq!(b.megolm_session_of(&room, &rotated_id).await, session_after);

    // B leaves; A, once it knows, sends: B never sees that message, and A's session changed
    // again (a member left).
    b.leave(&room).await;
    assert!(
        a.wait_for_membership(&room, &b.user_id, MembershipState::Leave, ARRIVES)
            .await,
        "A never saw B leave"
    );
    let after_leave = "A, after B left";
    let after_leave_id = a.send_text(&room, after_leave).await;
    assert_eq!(
        b.wait_for_text(&room, after_leave, NEVER_ARRIVES).await,
        None,
        "B saw a message sent after it left"
    );
    assert_ne!(
        a.megolm_session_of(&room, &after_leave_id).await,
        session_after,
        "A rotates its Megolm session when a member leaves"
    );

    for peer in [&a, &b] {
        let undecryptable = peer.undecryptable(&room);
        assert!(
            undecryptable.is_empty(),
            "{}: undecryptable events {undecryptable:?}",
            peer.user_id
        );
    }
}

/// `undecryptable` reports what the peer could not decrypt: a second device of B, logged in
/// after A's message, has no key for it; A's next message, sent once A has synced B's new
/// device, decrypts on that device.
#[tokio::test(flavor = "multi_thread")]
async fn peer_reports_events_it_cannot_decrypt() {
    let synapse = Synapse::shared();
    let a = new_peer("interop-utd-a").await;
    let b_localpart = synapse.unique_user("interop-utd-b");
    synapse.register(&b_localpart, PASSWORD, false);
    let b = Peer::login(&b_localpart, PASSWORD).await;

    let room = a
        .create_encrypted_room(std::slice::from_ref(&b.user_id))
        .await;
    b.join(&room).await;
    let early = a.send_text(&room, "before B's second device").await;
    b.wait_for_text(&room, "before B's second device", ARRIVES)
        .await
        .expect("B's first device decrypts");

    let b2 = Peer::login(&b_localpart, PASSWORD).await;
    assert_ne!(b2.device_id, b.device_id);
    assert_eq!(
        b2.wait_for_text(&room, "before B's second device", NEVER_ARRIVES)
            .await,
        None,
        "a device created after the message decrypted it"
    );
    assert_eq!(b2.undecryptable(&room), vec![early]);

    // A learns about B's new device from its sync (device_lists.changed), then shares the
    // next session with it too.
    assert!(
        a.wait_for_device(&b.user_id, &b2.device_id, ARRIVES).await,
        "A never saw B's second device"
    );
    a.send_text(&room, "after B's second device").await;
    b2.wait_for_text(&room, "after B's second device", ARRIVES)
        .await
        .expect("B's second device decrypts a message sent after it existed");
    assert_eq!(b.undecryptable(&room), Vec::<OwnedEventId>::new());
}

/// The peer trusts the run's root CA and nothing else: a client whose only root is another
/// CA, or the built-in roots alone, cannot even fetch `/versions`.
#[tokio::test(flavor = "multi_thread")]
async fn peer_trusts_only_the_run_root() {
    let synapse = Synapse::shared();
    let store = tempfile::tempdir().expect("temporary directory");
    client_trusting(&synapse.base_url, &synapse.pki.root_ca_pem, &store)
        .await
        .expect("the run's root CA is trusted");

    let foreign = Pki::generate();
    let store = tempfile::tempdir().expect("temporary directory");
    let refused = client_trusting(&synapse.base_url, &foreign.root_ca_pem, &store).await;
    let error = refused.expect_err("a client trusting only another CA must not connect");
    eprintln!("foreign root only: {error}");
    // Both PKIs use the same names, so webpki finds an issuer by name and rejects its
    // signature (`BadSignature`) rather than reporting `UnknownIssuer`.
    assert!(
        error.contains("InvalidCertificate("),
        "refused for another reason: {error}"
    );

    let system_roots_only = matrix_sdk::Client::builder()
        .homeserver_url(&synapse.base_url)
        .build()
        .await
        .expect("build a client on the system's roots");
    let error = connects(&system_roots_only)
        .await
        .expect_err("a client on the system's roots must not trust the run's CA");
    eprintln!("system roots only: {error}");
    assert!(
        error.contains("InvalidCertificate("),
        "refused for another reason: {error}"
    );
}
