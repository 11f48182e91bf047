//! Complete timelines and a send queue that never wedges (issue 14), against the real Synapse:
//! scroll-back through a long history, `join` then `send` at once, and a message queued for a
//! room the member then leaves (or is removed from) failing alone, typed, while everything else
//! goes on.
//!
//! The offline catch-up with the matrix-sdk peer (gaps, SIGKILLs) is in the interop suite
//! (`interop/catch_up.rs`).

use std::time::Duration;

use serde_json::json;
use tchap_secure_core::{Client, Config, Error};
use tchap_secure_tests::hostile_proxy::{HostileProxy, Reply, Route, Rule};
use tchap_secure_tests::synapse::Synapse;

use crate::messaging::receive;
use crate::support::{InProcess, Member, PASSWORD, password, rt};

/// A logged-in in-process client on the shared Synapse (`config`: direct, or a proxy's).
fn member(
    rt: &tokio::runtime::Runtime,
    prefix: &str,
    config: Option<Config>,
) -> (InProcess, Client, String) {
    let synapse = Synapse::shared();
    let home = InProcess::new(prefix);
    let localpart = synapse.unique_user(prefix);
    synapse.register(&localpart, PASSWORD, false);
    let mut client = match config {
        Some(config) => home.open_with(config).unwrap(),
        None => home.open().unwrap(),
    };
    let info = rt
        .block_on(client.login(&localpart, &password(), &format!("{prefix}-phone")))
        .unwrap();
    (home, client, info.user_id)
}

/// The local echo (or, once synced, the event) of our message queued as `local_id`.
fn echo_of(client: &Client, room: &str, local_id: &str) -> tchap_secure_core::store::TimelineEvent {
    client
        .messages(room, 100)
        .unwrap()
        .into_iter()
        .find(|m| m.local_id.as_deref() == Some(local_id))
        .unwrap_or_else(|| panic!("no echo for {local_id} in {room}"))
}

fn bodies(client: &Client, room: &str) -> Vec<(String, String)> {
    client
        .messages(room, 100_000)
        .unwrap()
        .into_iter()
        .map(|m| (m.state, m.body.unwrap_or_default()))
        .collect()
}

#[test]
fn scroll_back_through_a_thousand_messages_all_decrypted_in_order() {
    let rt = rt();
    let (_a, mut alice, _) = member(&rt, "history-a", None);
    let (_b, mut bob, bob_id) = member(&rt, "history-b", None);
    let room = rt
        .block_on(alice.create_room(Some("Archives"), std::slice::from_ref(&bob_id), false))
        .unwrap();
    // Bob is invited: Alice shares her room keys with his device from the first message.
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    let expected: Vec<String> = (0..1000).map(|i| format!("archive {i:04}")).collect();
    for body in &expected {
        rt.block_on(alice.send_text(&room, body)).unwrap();
    }
    // Bob joins: his first sync shows the room's last screen, not a gap (all of it is older
    // than his join); the rest is history, loaded on demand.
    rt.block_on(bob.join(&room)).unwrap();
    let first = rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    assert_eq!(first.gaps_opened, 0);
    let screen = bodies(&bob, &room);
    assert!(
        screen.len() < 100 && !screen.is_empty(),
        "first screen: {}",
        screen.len()
    );
    // Scroll back, 100 at a time, until the start of the room.
    let mut loads = 0;
    loop {
        let page = rt.block_on(bob.paginate_back(&room, 100)).unwrap();
        loads += 1;
        assert!(
            page.events
                .windows(2)
                .all(|w| w[0].origin_ts <= w[1].origin_ts),
            "a page is returned oldest first"
        );
        if page.reached_start {
            break;
        }
        assert!(!page.events.is_empty(), "no progress at load {loads}");
        assert!(loads < 30, "never reached the start of the room");
    }
    assert!(loads >= 10, "1000 messages in pages of 100: {loads} loads");
    let got = bodies(&bob, &room);
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|b| ("decrypted".to_owned(), b.clone()))
        .collect();
    assert_eq!(got.len(), want.len(), "every message exactly once");
    assert!(got == want, "history differs from what Alice sent");
    // Nothing more to load.
    let again = rt.block_on(bob.paginate_back(&room, 100)).unwrap();
    assert!(again.reached_start && again.events.is_empty());
}

#[test]
fn join_then_send_at_once_works_as_a_new_user_would_do_it() {
    let rt = rt();
    let (_a, mut alice, _) = member(&rt, "joinsend-a", None);
    let bob = Member::new("joinsend-b");
    bob.login().ok();
    let room = rt
        .block_on(alice.create_room(
            Some("Tout de suite"),
            std::slice::from_ref(&bob.user_id),
            false,
        ))
        .unwrap();
    // No sync in between: the CLI joins, then sends in the next command.
    bob.run(&["join", &room]).ok();
    let sent = bob.run(&["send", &room, "--text", "arrivé"]).ok();
    let event_id = sent.json()["event_id"].as_str().unwrap().to_owned();
    let got = receive(&rt, &mut alice, &room, "arrivé");
    assert_eq!(got.event_id, event_id);
    // The same right after creating a room.
    let created = bob
        .run(&[
            "create-room",
            "--name",
            "Neuve",
            "--invite",
            &alice_id(&alice),
        ])
        .ok();
    let new_room = created.json()["room_id"].as_str().unwrap().to_owned();
    bob.run(&["send", &new_room, "--text", "première"]).ok();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(alice.join(&new_room)).unwrap();
    // Alice joined after the message: it is history for her (she was invited, so she has the
    // key).
    let history = rt.block_on(alice.paginate_back(&new_room, 10)).unwrap();
    assert!(
        history
            .events
            .iter()
            .any(|m| m.body.as_deref() == Some("première") && m.state == "decrypted"),
        "{history:#?}"
    );
}

fn alice_id(alice: &Client) -> String {
    alice.session().unwrap().user_id
}

/// Alice through a proxy that answers `503` to every message sent into `room` while the rule
/// holds: her message stays queued.
fn busy_room_rule(room: &str) -> Rule {
    let fragment = format!("/rooms/{room}/send/");
    Rule::replace(Route::new("PUT", &fragment), |_| Reply::Json {
        status: 503,
        body: json!({"errcode": "M_UNKNOWN", "error": "overloaded"}),
    })
}

#[test]
fn a_message_queued_for_a_room_we_leave_fails_typed_and_nothing_else_stops() {
    let rt = rt();
    let synapse = Synapse::shared();
    let proxy = HostileProxy::start(synapse);
    let config = Config::from_json(proxy.client_config().to_string().as_bytes()).unwrap();
    let (_a, mut alice, _) = member(&rt, "queue-a", Some(config));
    let (_b, mut bob, bob_id) = member(&rt, "queue-b", None);
    let mut rooms = Vec::new();
    for name in ["Quitté", "Autre"] {
        let room = rt
            .block_on(alice.create_room(Some(name), std::slice::from_ref(&bob_id), false))
            .unwrap();
        rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
        rt.block_on(bob.join(&room)).unwrap();
        rooms.push(room);
    }
    let (left, other) = (rooms[0].clone(), rooms[1].clone());
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();

    // The server is busy for `left`: the message is queued, typed, and shown as queued.
    let rule = proxy.add(busy_room_rule(&left));
    let queued = rt.block_on(alice.send_text(&left, "jamais envoyé"));
    let Err(Error::SendQueued { local_id, .. }) = queued else {
        panic!("expected a queued message, got {queued:?}");
    };
    let echo = echo_of(&alice, &left, &local_id);
    assert_eq!(
        (echo.state.as_str(), echo.body.as_deref()),
        ("queued", Some("jamais envoyé"))
    );
    // The other room is not held back.
    let sent = rt
        .block_on(alice.send_text(&other, "passe quand même"))
        .unwrap();
    assert!(sent.starts_with('$'));
    receive(&rt, &mut bob, &other, "passe quand même");

    // Alice leaves the busy room: the queued message fails, `left_room`, and is reported.
    rt.block_on(alice.leave(&left)).unwrap();
    proxy.remove(rule);
    let summary = rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    let update = summary
        .outgoing
        .iter()
        .find(|u| u.local_id == local_id)
        .unwrap_or_else(|| panic!("no update for the cancelled message: {summary:?}"));
    assert_eq!(
        (update.state.as_str(), update.error.as_deref()),
        ("failed", Some("left_room"))
    );
    let echo = echo_of(&alice, &left, &local_id);
    assert_eq!(
        (echo.state.as_str(), echo.error.as_deref()),
        ("failed", Some("left_room"))
    );
    let journal = alice.store().security_events().unwrap();
    assert!(journal.iter().any(|e| e.kind == "message_send_cancelled"));
    // Sync and sends go on; the cancelled message never reached anyone.
    for _ in 0..3 {
        rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    }
    rt.block_on(alice.send_text(&other, "toujours là")).unwrap();
    receive(&rt, &mut bob, &other, "toujours là");
    assert!(
        !bob.messages(&left, 100)
            .unwrap()
            .iter()
            .any(|m| m.body.as_deref() == Some("jamais envoyé"))
    );
}

#[test]
fn a_message_refused_after_we_were_removed_fails_alone_and_the_sync_goes_on() {
    // Today's main wedged here: the 403 kept the message at the head of the outbox, every
    // later sync ended in the error and every send in every room failed.
    let rt = rt();
    let (_a, mut alice, alice_id) = member(&rt, "kicked-a", None);
    let (_b, mut bob, bob_id) = member(&rt, "kicked-b", None);
    let room = rt
        .block_on(bob.create_room(Some("Expulsion"), std::slice::from_ref(&alice_id), false))
        .unwrap();
    let other = rt
        .block_on(bob.create_room(Some("Reste"), std::slice::from_ref(&alice_id), false))
        .unwrap();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(alice.join(&room)).unwrap();
    rt.block_on(alice.join(&other)).unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    // Bob removes Alice; her store does not know it yet.
    let token = tchap_secure_tests::harness::access_token(&bob);
    Synapse::shared().user_call(
        &token,
        "POST",
        &format!("/_matrix/client/v3/rooms/{room}/kick"),
        &json!({"user_id": alice_id, "reason": "test"}),
    );
    let refused = rt.block_on(alice.send_text(&room, "trop tard"));
    let Err(Error::SendFailed { local_id, reason }) = refused else {
        panic!("expected a refused message, got {refused:?}");
    };
    assert_eq!(reason, "forbidden");
    let echo = echo_of(&alice, &room, &local_id);
    assert_eq!(
        (echo.state.as_str(), echo.error.as_deref()),
        ("failed", Some("forbidden"))
    );
    assert!(
        alice
            .store()
            .security_events()
            .unwrap()
            .iter()
            .any(|e| e.kind == "message_send_failed")
    );
    // The sync runs, the removal is seen, other rooms work.
    for _ in 0..2 {
        rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    }
    assert_eq!(
        alice.store().room(&room).unwrap().unwrap().membership,
        "leave"
    );
    rt.block_on(alice.send_text(&other, "ailleurs")).unwrap();
    receive(&rt, &mut bob, &other, "ailleurs");
    let _ = bob_id;
}
