//! Disappearing messages and receipts (issue 18 items 3-4) on the real Synapse, proved at rest
//! (every database page and log frame decrypted: `tchap_secure_tests::at_rest`): a message
//! past its room's lifetime is purged by a running sync within a minute of its deadline, by
//! the next open if the app was closed, and a purge killed half-way or before its log
//! truncation leaves no text once the app runs again.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tchap_secure_core::{Client, Config};
use tchap_secure_tests::harness::access_token;
use tchap_secure_tests::synapse::Synapse;

use crate::messaging::{Pair, pair, receive};
use crate::support::{InProcess, Member, PASSWORD, canary, left_at_rest, logged_in, password, rt};

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

fn state_of(client: &Client, room: &str, event_id: &str) -> (String, Option<String>) {
    let m = client
        .messages(room, 100)
        .unwrap()
        .into_iter()
        .find(|m| m.event_id == event_id)
        .unwrap_or_else(|| panic!("{event_id} not in the timeline"));
    (m.state, m.body)
}

#[test]
fn messages_disappear_within_a_minute_of_their_deadline_and_at_the_next_open() {
    let rt = rt();
    let Pair {
        a,
        b,
        mut alice,
        mut bob,
        room,
    } = pair(&rt, "ret-time");
    // Bob (no power level) may not set it; Alice (the creator) may.
    let err = rt
        .block_on(bob.set_retention(&room, Some(Duration::from_secs(60))))
        .unwrap_err();
    assert_eq!(err.code(), "retention_not_allowed");
    let err = rt
        .block_on(alice.set_retention(&room, Some(Duration::from_secs(5))))
        .unwrap_err();
    assert_eq!(err.code(), "retention_too_short");
    rt.block_on(alice.set_retention(&room, Some(Duration::from_secs(30))))
        .unwrap();
    assert_eq!(alice.retention(&room).unwrap().effective_ms, Some(30_000));
    for _ in 0..20 {
        if bob.retention(&room).unwrap().effective_ms == Some(30_000) {
            break;
        }
        rt.block_on(bob.sync_once(Duration::from_millis(300)))
            .unwrap();
    }
    assert_eq!(bob.retention(&room).unwrap().room_ms, Some(30_000));

    let (t1, t2) = (canary("Éphémère un"), canary("Éphémère deux"));
    let e1 = rt.block_on(alice.send_text(&room, &t1)).unwrap();
    let e2 = rt.block_on(alice.send_text(&room, &t2)).unwrap();
    receive(&rt, &mut bob, &room, &t1);
    for _ in 0..20 {
        if bob
            .messages(&room, 10)
            .unwrap()
            .iter()
            .any(|m| m.event_id == e2)
        {
            break;
        }
        rt.block_on(bob.sync_once(Duration::from_millis(300)))
            .unwrap();
    }
    let sent_ms = bob
        .messages(&room, 10)
        .unwrap()
        .into_iter()
        .find(|m| m.event_id == e1)
        .unwrap()
        .origin_ts;
    assert!(!left_at_rest(&b, &t1).is_empty(), "control: stored");
    // Bob closes the app; Alice's sync keeps running with a long poll of 25 s.
    drop(bob);
    let started = Instant::now();
    let mut purged_at = None;
    while started.elapsed() < Duration::from_secs(120) {
        let s = rt
            .block_on(alice.sync_once(Duration::from_secs(25)))
            .unwrap();
        if s.expired > 0 {
            purged_at = Some(now_ms());
            break;
        }
        assert_eq!(state_of(&alice, &room, &e1).0, "decrypted", "purged early");
    }
    let purged_at = purged_at.expect("never purged");
    let late_ms = purged_at - (sent_ms + 30_000);
    eprintln!("purged {late_ms} ms after the deadline");
    assert!((0..60_000).contains(&late_ms), "{late_ms} ms");
    // The second message, sent a moment later, goes at its own deadline.
    while state_of(&alice, &room, &e2).0 != "expired"
        && started.elapsed() < Duration::from_secs(150)
    {
        rt.block_on(alice.sync_once(Duration::from_secs(25)))
            .unwrap();
    }
    for e in [&e1, &e2] {
        assert_eq!(state_of(&alice, &room, e), ("expired".into(), None));
    }
    for t in [&t1, &t2] {
        assert_eq!(left_at_rest(&a, t), Vec::<String>::new());
    }
    // Bob's phone, opened after the deadline: purged before anything is shown.
    let mut bob = b.open().unwrap();
    for e in [&e1, &e2] {
        assert_eq!(state_of(&bob, &room, e), ("expired".into(), None));
    }
    for t in [&t1, &t2] {
        assert_eq!(left_at_rest(&b, t), Vec::<String>::new());
    }
    // Scroll-back and syncs never bring them back.
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(bob.paginate_back(&room, 50)).unwrap();
    assert_eq!(state_of(&bob, &room, &e1), ("expired".into(), None));
    assert!(left_at_rest(&b, &t1).is_empty());
}

/// What a separate process finds of `needles` in a CLI member's data directory.
fn probe(member: &Member, needles: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_at_rest_probe"))
        .env("AT_REST_PROBE_SOFTHSM2_CONF", &member.token.conf_path)
        .arg(member.data_dir())
        .arg(&member.token.module)
        .arg(&member.token_label)
        .arg(&member.pin)
        .arg(&Synapse::shared().server_name)
        .args(needles)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["pages"].as_u64().unwrap() > 10);
    assert_eq!(v["hmac_failures"], 0);
    v
}

fn found(v: &Value, needle: &str) -> bool {
    !v["found"][needle].as_array().unwrap().is_empty()
}

#[test]
fn a_purge_killed_half_way_or_before_its_log_truncation_leaves_no_text_at_the_next_run() {
    let rt = rt();
    let synapse = Synapse::shared();
    let bob = Member::new("ret-kill-bob");
    bob.login().ok();
    let a = InProcess::new("ret-kill");
    let ua = synapse.unique_user("ret-kill-alice");
    synapse.register(&ua, PASSWORD, false);
    let mut alice = a.open().unwrap();
    rt.block_on(alice.login(&ua, &password(), "alice-phone"))
        .unwrap();
    let room = rt
        .block_on(alice.create_room(Some("éphémère"), std::slice::from_ref(&bob.user_id), false))
        .unwrap();
    bob.run(&["sync"]).ok();
    bob.run(&["join", &room]).ok();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(alice.set_retention(&room, Some(Duration::from_secs(30))))
        .unwrap();
    let text = canary("Purge interrompue");
    rt.block_on(alice.send_text(&room, &text)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(31);
    bob.run(&["sync"]).ok();
    let messages = bob.run(&["messages", &room]).ok().stdout;
    assert!(messages.contains(&text), "{messages}");
    assert!(found(&probe(&bob, &[&text]), &text), "control: stored");
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));

    // Killed inside the purge's transaction: nothing of it committed, the text still there.
    bob.run_until_crash(&["messages", &room], "mid-purge");
    assert!(found(&probe(&bob, &[&text]), &text), "rolled back");
    // Killed after the purge committed, before the log was truncated: the old pages are
    // still in the files (this is what the truncation is for) …
    bob.run_until_crash(&["messages", &room], "before-erasure-checkpoint");
    assert!(
        found(&probe(&bob, &[&text]), &text),
        "the log holds the old pages until it is truncated"
    );
    // … and the next run truncates it before anything else.
    let messages = bob.run(&["messages", &room]).ok().stdout;
    assert!(!messages.contains(&text), "{messages}");
    assert!(messages.contains("\"expired\""), "{messages}");
    let v = probe(&bob, &[&text]);
    assert!(!found(&v, &text), "{v}");
}

/// A raw `/sync` position of `token`'s user, to read what comes after it.
fn sync_position(token: &str) -> String {
    let (status, body) = Synapse::shared().request(
        "GET",
        "/_matrix/client/v3/sync?timeout=0",
        Some(token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["next_batch"].as_str().unwrap().to_owned()
}

/// Alice's raw `/sync` since `since` (as the server shows her the room): the receipts of
/// `user` in `room`.
/// (Synapse caches a sync answer by its parameters for a while: each call here asks with
/// another `timeout`, so that it is answered afresh.)
fn receipts_seen_by(token: &str, since: &str, room: &str, user: &str) -> Vec<(String, String)> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let timeout = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (status, body) = Synapse::shared().request(
        "GET",
        &format!("/_matrix/client/v3/sync?timeout={timeout}&since={since}"),
        Some(token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let mut seen = Vec::new();
    for e in body["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if e["type"] != "m.receipt" {
            continue;
        }
        for (event_id, kinds) in e["content"].as_object().unwrap() {
            for (kind, users) in kinds.as_object().unwrap() {
                if users.get(user).is_some() {
                    seen.push((kind.clone(), event_id.clone()));
                }
            }
        }
    }
    seen
}

#[test]
fn receipts_follow_the_configuration_and_unread_counts_are_computed_on_the_device() {
    let rt = rt();
    let mut p = pair(&rt, "rcpt");
    let bob_id = p.bob.session().unwrap().user_id;
    let localpart = bob_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let (_t, mut tablet) = logged_in(&rt, "rcpt-tablet", &localpart, "bob-tablet");
    let alice_token = access_token(&p.alice);
    let since = sync_position(&alice_token);
    let a1 = rt.block_on(p.alice.send_text(&p.room, "un")).unwrap();
    let a2 = rt.block_on(p.alice.send_text(&p.room, "deux")).unwrap();
    let a3 = rt
        .block_on(
            p.alice
                .send_text_mentioning(&p.room, "trois", std::slice::from_ref(&bob_id)),
        )
        .unwrap();
    receive(&rt, &mut p.bob, &p.room, "trois");
    let u = p.bob.unread(&p.room).unwrap();
    assert_eq!((u.messages, u.notify, u.highlight), (3, 3, 1), "{u:?}");

    // Default: private receipts. Bob's other device follows; Alice never sees it.
    rt.block_on(p.bob.mark_read(&p.room, &a2)).unwrap();
    let u = p.bob.unread(&p.room).unwrap();
    assert_eq!((u.messages, u.highlight), (1, 1), "{u:?}");
    rt.block_on(p.bob.mark_read(&p.room, &a1)).unwrap();
    assert_eq!(
        p.bob.read_markers(&p.room).unwrap().0.as_deref(),
        Some(a2.as_str()),
        "never back"
    );
    rt.block_on(p.bob.mark_read(&p.room, &a3)).unwrap();
    assert_eq!(p.bob.unread(&p.room).unwrap().messages, 0);
    let mut tablet_read = None;
    for _ in 0..20 {
        rt.block_on(tablet.sync_once(Duration::from_millis(300)))
            .unwrap();
        tablet_read = tablet.read_markers(&p.room).unwrap().0;
        if tablet_read.as_deref() == Some(a3.as_str()) {
            break;
        }
    }
    assert_eq!(tablet_read.as_deref(), Some(a3.as_str()));
    std::thread::sleep(Duration::from_secs(1));
    let seen = receipts_seen_by(&alice_token, &since, &p.room, &bob_id);
    assert!(!seen.iter().any(|(k, _)| k == "m.read"), "{seen:?}");
    assert!(!seen.iter().any(|(k, _)| k == "m.read.private"), "{seen:?}");

    // Public where the configuration says so.
    let with = |receipts: &str| {
        let mut c = Synapse::shared().client_config();
        c["read_receipts"] = json!(receipts);
        Config::from_json(c.to_string().as_bytes()).unwrap()
    };
    drop(p.bob);
    let mut bob = p.b.open_with(with("public")).unwrap();
    let a4 = rt.block_on(p.alice.send_text(&p.room, "quatre")).unwrap();
    receive(&rt, &mut bob, &p.room, "quatre");
    rt.block_on(bob.mark_read(&p.room, &a4)).unwrap();
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen = receipts_seen_by(&alice_token, &since, &p.room, &bob_id);
        if seen.contains(&("m.read".into(), a4.clone())) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(seen.contains(&("m.read".into(), a4.clone())), "{seen:?}");

    // Off: the marker only (our own account data), no receipt at all.
    drop(bob);
    let mut bob = p.b.open_with(with("off")).unwrap();
    let a5 = rt.block_on(p.alice.send_text(&p.room, "cinq")).unwrap();
    receive(&rt, &mut bob, &p.room, "cinq");
    rt.block_on(bob.mark_read(&p.room, &a5)).unwrap();
    assert_eq!(
        bob.read_markers(&p.room).unwrap(),
        (Some(a5.clone()), Some(a5.clone()))
    );
    let seen = receipts_seen_by(&alice_token, &since, &p.room, &bob_id);
    assert!(!seen.iter().any(|(_, e)| *e == a5), "{seen:?}");
    let mut marker = None;
    for _ in 0..20 {
        rt.block_on(tablet.sync_once(Duration::from_millis(300)))
            .unwrap();
        marker = tablet.read_markers(&p.room).unwrap().1;
        if marker.as_deref() == Some(a5.as_str()) {
            break;
        }
    }
    assert_eq!(marker.as_deref(), Some(a5.as_str()));
    assert_ne!(
        tablet.read_markers(&p.room).unwrap().0.as_deref(),
        Some(a5.as_str()),
        "no receipt went out"
    );
}
