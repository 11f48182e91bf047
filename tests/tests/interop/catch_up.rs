//! No message ever lost (issue 14): members offline while hundreds of messages arrive in each of
//! three rooms — far beyond the sync's timeline limit of 50 — from two senders, one of them the
//! matrix-sdk 0.18 peer, with a Megolm rotation by each sender in the middle. Once back, every
//! message is stored, decrypted, in the order the server gave them, exactly once: for a member
//! that catches up in one go, and for one whose catching-up process is killed with SIGKILL
//! again and again (inside a gap page's transaction, right after its commit, and at random
//! moments).

use std::time::Duration;

use matrix_sdk::ruma::RoomId;
use serde_json::Value;
use tchap_secure_tests::cli_member::Member;

use crate::ours::new_ours;
use crate::{ARRIVES, new_peer};

/// Messages per room: each of the two senders sends half, alternately.
const PER_ROOM: usize = 240;
const ROOMS: usize = 3;

fn body(room: usize, i: usize) -> String {
    format!("salon {room} message {i:03}")
}

/// `(state, body)` of every event of `room` in a CLI member's store, in timeline order.
fn cli_timeline(member: &Member, room: &str) -> Vec<(String, String)> {
    let run = member.run(&["messages", room, "--limit", "100000"]).ok();
    run.stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["state"].as_str().unwrap_or_default().to_owned(),
                v["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The burst's messages of `room_index` as a timeline holds them (other events, e.g. the
/// setup's, left out).
fn burst(timeline: &[(String, String)], room_index: usize) -> Vec<(String, String)> {
    let prefix = format!("salon {room_index} ");
    timeline
        .iter()
        .filter(|(_, b)| b.starts_with(&prefix))
        .cloned()
        .collect()
}

fn expected(room_index: usize) -> Vec<(String, String)> {
    (0..PER_ROOM)
        .map(|i| ("decrypted".to_owned(), body(room_index, i)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_members_get_every_message_in_order_exactly_once_even_when_killed() {
    let peer = new_peer("catchup-sdk").await;
    let mut alice = new_ours("catchup-alice").await;
    let mut bob = new_ours("catchup-bob").await;
    let carol = Member::new("catchup-carol");
    carol.login().ok();

    // Three rooms with the four of them; everyone synced once, so that both members hold a
    // position in every room before going offline.
    let mut rooms = Vec::new();
    for r in 0..ROOMS {
        let invite = [
            peer.user_id.to_string(),
            bob.user_id.clone(),
            carol.user_id.clone(),
        ];
        let room = alice
            .client
            .create_room(Some(&format!("Crise {r}")), &invite, false)
            .await
            .unwrap();
        let room_id = RoomId::parse(&room).unwrap();
        peer.join(&room_id).await;
        bob.client.join(&room).await.unwrap();
        carol.run(&["join", &room]).ok();
        rooms.push(room);
    }
    bob.sync().await;
    carol.run(&["sync"]).ok();
    alice.sync().await;
    let bob_device = bob.client.session().unwrap().device_id;
    let bob_user = matrix_sdk::ruma::UserId::parse(&bob.user_id).unwrap();
    assert!(
        peer.wait_for_device(&bob_user, bob_device.as_str().into(), ARRIVES)
            .await,
        "the peer never saw Bob's device"
    );
    peer.sync_once().await;

    // Both members offline: each room gets PER_ROOM messages, alternately from Alice (ours)
    // and the matrix-sdk peer; both rotate their Megolm session in the middle.
    for (r, room) in rooms.iter().enumerate() {
        let room_id = RoomId::parse(room).unwrap();
        for i in 0..PER_ROOM {
            if i == PER_ROOM / 2 {
                alice.client.rotate_room_key(room).unwrap();
                peer.rotate(&room_id).await;
            }
            if i % 2 == 0 {
                alice.client.send_text(room, &body(r, i)).await.unwrap();
            } else {
                peer.send_text(&room_id, &body(r, i)).await;
            }
        }
    }

    // Bob comes back and catches up in one process.
    let mut rounds = 0;
    let mut filled = 0;
    loop {
        let s = bob.sync().await;
        filled += s.backfilled;
        rounds += 1;
        let done = rooms.iter().enumerate().all(|(r, room)| {
            let timeline: Vec<(String, String)> = bob
                .client
                .messages(room, 100_000)
                .unwrap()
                .into_iter()
                .map(|m| (m.state, m.body.unwrap_or_default()))
                .collect();
            burst(&timeline, r) == expected(r)
        });
        if done && s.gaps_open == 0 {
            break;
        }
        assert!(rounds < 20, "Bob never caught up");
    }
    assert!(
        filled >= ROOMS * (PER_ROOM - 50),
        "the gaps were filled by back-pagination ({filled} events)"
    );
    eprintln!("Bob caught up in {rounds} sync(s), {filled} events back-filled");
    for (r, room) in rooms.iter().enumerate() {
        let all = bob.client.messages(room, 100_000).unwrap();
        let mut ids: Vec<&str> = all.iter().map(|m| m.event_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "an event stored twice in room {r}");
    }

    // Carol comes back too, but her process is killed again and again while it catches up.
    for point in [
        "before-gap-page-commit",
        "after-gap-page-commit",
        "before-gap-page-commit",
        "after-gap-page-commit",
    ] {
        carol.run_until_crash(&["sync"], point);
    }
    let mut killed = 0;
    for ms in [150u64, 400, 700, 250, 1000, 550] {
        if carol.run_killed_after(&["sync"], Duration::from_millis(ms)) {
            killed += 1;
        }
    }
    eprintln!("Carol: 4 kills at gap crash points, {killed} at random moments");
    let mut runs = 0;
    loop {
        carol.run(&["sync"]).ok();
        runs += 1;
        let done = rooms
            .iter()
            .enumerate()
            .all(|(r, room)| burst(&cli_timeline(&carol, room), r) == expected(r));
        if done {
            break;
        }
        if runs >= 20 {
            for (r, room) in rooms.iter().enumerate() {
                let got = burst(&cli_timeline(&carol, room), r);
                let missing: Vec<_> = expected(r)
                    .into_iter()
                    .filter(|e| !got.contains(e))
                    .collect();
                eprintln!("room {r}: {} events, missing {missing:?}", got.len());
            }
            panic!("Carol never caught up after her process was killed");
        }
    }
    for (r, room) in rooms.iter().enumerate() {
        let all = cli_timeline(&carol, room);
        assert_eq!(burst(&all, r), expected(r), "room {r}");
    }
    drop(alice);
}
