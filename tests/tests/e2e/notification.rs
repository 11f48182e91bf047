//! The notification path (issue 17 item 2) against the real Synapse, with the hostile proxy in
//! front of the member who is notified: a room key that arrives after the push is decrypted
//! within the bounded wait, or the answer is the typed `cannot_decrypt_yet` — never a wrong or
//! partial result; a server that answers with another event, or with a message in clear, is
//! refused and journaled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tchap_secure_core::{Client, Config, NotificationKind};
use tchap_secure_tests::harness::access_token;
use tchap_secure_tests::hostile_proxy::{HostileProxy, ProxyRequest, Route, Rule};
use tchap_secure_tests::synapse::Synapse;

use crate::messaging::receive;
use crate::support::{InProcess, PASSWORD, logged_in, password, rt};

/// Alice, notified (through the proxy); Bob and Carol, senders (direct to Synapse); one
/// encrypted room the three joined and synced.
struct Scene {
    proxy: HostileProxy,
    _a: InProcess,
    alice: Client,
    _b: InProcess,
    bob: Client,
    _c: InProcess,
    carol: Client,
    room: String,
}

fn scene(rt: &tokio::runtime::Runtime, prefix: &str) -> Scene {
    let synapse = Synapse::shared();
    let proxy = HostileProxy::start(synapse);
    let a = InProcess::new(prefix);
    let localpart = synapse.unique_user(&format!("{prefix}-alice"));
    synapse.register(&localpart, PASSWORD, false);
    let config = Config::from_json(proxy.client_config().to_string().as_bytes()).unwrap();
    let mut alice = Client::open(config, &a.data_dir(), &a.vault).unwrap();
    rt.block_on(alice.login(&localpart, &password(), "alice-phone"))
        .unwrap();
    let mut others = Vec::new();
    let mut ids = Vec::new();
    for name in ["bob", "carol"] {
        let localpart = synapse.unique_user(&format!("{prefix}-{name}"));
        ids.push(synapse.register(&localpart, PASSWORD, false).user_id);
        others.push(logged_in(rt, prefix, &localpart, &format!("{name}-phone")));
    }
    let room = rt
        .block_on(alice.create_room(Some("Cellule"), &ids, false))
        .unwrap();
    for (_, c) in &mut others {
        rt.block_on(c.sync_once(Duration::ZERO)).unwrap();
        rt.block_on(c.join(&room)).unwrap();
        rt.block_on(c.sync_once(Duration::ZERO)).unwrap();
    }
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    let (c, carol) = others.pop().unwrap();
    let (b, bob) = others.pop().unwrap();
    Scene {
        proxy,
        _a: a,
        alice,
        _b: b,
        bob,
        _c: c,
        carol,
        room,
    }
}

/// Whether `req` is the notification path's to-device sync (filtered to no room).
fn is_to_device_sync(req: &ProxyRequest) -> bool {
    req.query_param("filter")
        .and_then(|f| serde_json::from_str::<Value>(&f).ok())
        .is_some_and(|f| f["room"]["rooms"] == json!([]))
}

fn kinds(client: &Client) -> Vec<String> {
    client
        .store()
        .security_events()
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// While `held` is set, the notification path's to-device syncs come back empty, at the same
/// position (nothing acknowledged, so nothing lost): the key is "still on its way".
fn hold_to_device(proxy: &HostileProxy, held: Arc<AtomicBool>) {
    proxy.add(Rule::rewrite(Route::sync(), move |req, mut body| {
        if held.load(Ordering::SeqCst) && is_to_device_sync(req) {
            let since = req.query_param("since").expect("a position");
            body["to_device"] = json!({ "events": [] });
            body["next_batch"] = json!(since);
        }
        body
    }));
}

#[test]
fn a_late_room_key_is_waited_for_within_the_bound_and_never_guessed() {
    let rt = rt();
    let mut s = scene(&rt, "nt-late");
    let room = s.room.clone();
    // Bob's first message: its key comes by the notification path (which thus has a
    // position of its own before the proxy holds anything).
    let first = rt.block_on(s.bob.send_text(&room, "premier")).unwrap();
    let n = rt
        .block_on(s.alice.notification(&room, &first, Duration::from_secs(10)))
        .unwrap();
    assert_eq!(n.body.as_deref(), Some("premier"));
    assert_eq!(n.kind, NotificationKind::Message);

    // Carol's first message (a new Megolm session) while the key is held back.
    let held = Arc::new(AtomicBool::new(true));
    hold_to_device(&s.proxy, held.clone());
    let second = rt.block_on(s.carol.send_text(&room, "deuxième")).unwrap();
    let started = std::time::Instant::now();
    let e = rt
        .block_on(s.alice.notification(&room, &second, Duration::from_secs(2)))
        .unwrap_err();
    assert_eq!(e.code(), "cannot_decrypt_yet", "{e:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the wait is used"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait is bounded"
    );
    let asked = s
        .proxy
        .exchanges_on(&Route::sync())
        .iter()
        .filter(|x| is_to_device_sync(&x.request))
        .count();
    assert!(
        asked >= 2,
        "the to-device path asked again meanwhile ({asked})"
    );

    // The key arrives 1.5 s into the next wait: decrypted within it.
    let release = {
        let held = held.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            held.store(false, Ordering::SeqCst);
        })
    };
    let n = rt
        .block_on(
            s.alice
                .notification(&room, &second, Duration::from_secs(10)),
        )
        .unwrap();
    release.join().unwrap();
    assert_eq!(n.body.as_deref(), Some("deuxième"));
    assert_eq!(n.sender, s.carol.session().unwrap().user_id);

    // The main sync then shows both messages, with each key applied once: no replay, no
    // failure journaled.
    receive(&rt, &mut s.alice, &room, "deuxième");
    let shown: Vec<_> = s
        .alice
        .messages(&room, 50)
        .unwrap()
        .into_iter()
        .filter_map(|m| (m.state == "decrypted").then_some(m.body?))
        .collect();
    assert_eq!(shown, ["premier", "deuxième"]);
    assert!(kinds(&s.alice).is_empty(), "{:?}", kinds(&s.alice));
}

#[test]
fn a_server_answering_another_event_or_a_message_in_clear_is_refused_and_journaled() {
    let rt = rt();
    let mut s = scene(&rt, "nt-hostile");
    let room = s.room.clone();
    let one = rt.block_on(s.bob.send_text(&room, "un")).unwrap();
    let two = rt.block_on(s.bob.send_text(&room, "deux")).unwrap();

    // Asked for `two`, the server answers with `one` (a genuine event of the room).
    let genuine_one = tchap_secure_tests::harness::raw_event(&access_token(&s.alice), &room, &one);
    // (The event id's `$` may be percent-encoded in the path: match what follows it.)
    let two_path = two[1..].to_owned();
    assert!(
        two[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    let rule = s.proxy.add(Rule::replace(Route::any(&two_path), move |_| {
        tchap_secure_tests::hostile_proxy::Reply::ok(genuine_one.clone())
    }));
    let e = rt
        .block_on(s.alice.notification(&room, &two, Duration::from_secs(5)))
        .unwrap_err();
    assert_eq!(e.code(), "notification_refused", "{e:?}");
    assert!(
        kinds(&s.alice).contains(&"notification_event_mismatch".to_owned()),
        "{:?}",
        kinds(&s.alice)
    );
    assert_eq!(s.proxy.hits(rule), 1);
    s.proxy.remove(rule);
    let n = rt
        .block_on(s.alice.notification(&room, &two, Duration::from_secs(10)))
        .unwrap();
    assert_eq!(n.body.as_deref(), Some("deux"));

    // A message in clear (sent past any client of ours, straight to the server).
    let (status, sent) = Synapse::shared().request(
        "PUT",
        &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/clear-1"),
        Some(&access_token(&s.bob)),
        Some(&json!({"msgtype": "m.text", "body": "en clair"})),
    );
    assert_eq!(status, 200, "{sent}");
    let clear = sent["event_id"].as_str().unwrap();
    let e = rt
        .block_on(s.alice.notification(&room, clear, Duration::from_secs(1)))
        .unwrap_err();
    assert_eq!(e.code(), "notification_refused", "{e:?}");
    assert!(!format!("{e:?}").contains("en clair"));
    assert!(kinds(&s.alice).contains(&"unencrypted_message_refused".to_owned()));

    // Ids are checked before anything is asked.
    for (r, ev) in [(room.as_str(), "nope"), ("nope", two.as_str())] {
        let e = rt
            .block_on(s.alice.notification(r, ev, Duration::ZERO))
            .unwrap_err();
        assert_eq!(e.code(), "invalid_argument");
    }
    let e = rt
        .block_on(s.alice.notification(&room, &two, Duration::from_secs(31)))
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
}

/// Messages of `room` decrypted in `member`'s store, by body, through the CLI.
fn decrypted_bodies(member: &crate::support::Member, room: &str) -> Vec<String> {
    member
        .run(&["messages", room, "--limit", "200"])
        .ok()
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["state"] == "decrypted")
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .collect()
}

/// The concurrency case, with the processes a phone really has: the main sync
/// (`listen`) runs in one process and is killed with SIGKILL at random moments and restarted,
/// while each message's notification runs in another process — some killed at random, one
/// killed exactly before its to-device fetch commits. Every message gets a new Megolm
/// session, so each brings a room key over Olm. At the end: every message decrypts (no
/// Megolm key lost), every notification that finished showed exactly its message, and the
/// journal is empty (a to-device message applied twice would be an Olm replay or a failed
/// decryption, journaled).
#[test]
fn notification_and_main_sync_in_two_processes_killed_at_random_lose_and_repeat_nothing() {
    use std::sync::atomic::AtomicU64;

    let rt = rt();
    let synapse = Synapse::shared();
    let bob = Arc::new(crate::support::Member::new("nt-kill-bob"));
    bob.login().ok();
    let alice_localpart = synapse.unique_user("nt-kill-alice");
    synapse.register(&alice_localpart, PASSWORD, false);
    let (_a, mut alice) = logged_in(&rt, "nt-kill", &alice_localpart, "alice-phone");
    let room = rt
        .block_on(alice.create_room(Some("Cellule"), std::slice::from_ref(&bob.user_id), false))
        .unwrap();
    bob.run(&["sync"]).ok();
    bob.run(&["join", &room]).ok();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();

    // A deterministic kill first: the notification process dies right before its to-device
    // fetch commits; the next one fetches the same key again and shows the message.
    let first = rt.block_on(alice.send_text(&room, "message 0")).unwrap();
    bob.run_until_crash(
        &["notification", &room, &first, "--wait", "10"],
        "before-notify-commit",
    );
    let n = bob
        .run(&["notification", &room, &first, "--wait", "10"])
        .ok()
        .json();
    assert_eq!(n["body"], "message 0", "{n}");

    // Then the main sync runs, killed and restarted at random, while notifications run.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    let rng = Arc::new(AtomicU64::new(seed | 1));
    let next = {
        let rng = rng.clone();
        move |bound: u64| {
            // xorshift64: enough to spread the kills.
            let mut x = rng.load(Ordering::SeqCst);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            rng.store(x, Ordering::SeqCst);
            x % bound
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let listener = {
        let (bob, stop, next) = (bob.clone(), stop.clone(), next.clone());
        std::thread::spawn(move || {
            let mut kills = 0;
            while !stop.load(Ordering::SeqCst) {
                let after = Duration::from_millis(150 + next(900));
                if bob.run_killed_after(&["listen", "--timeout-ms", "2000"], after) {
                    kills += 1;
                }
            }
            kills
        })
    };
    let mut expected = vec!["message 0".to_owned()];
    let mut notification_kills = 0;
    // Notification processes are killed 10 ms to 160 ms in: from before the vault opens to
    // after the answer came (a notification takes a few hundred milliseconds from a cold
    // process).
    let kill_after = [10, 60, 110, 160];
    for i in 1..=12 {
        let body = format!("message {i}");
        alice.rotate_room_key(&room).unwrap();
        let event_id = rt.block_on(alice.send_text(&room, &body)).unwrap();
        expected.push(body.clone());
        let args = [
            "notification",
            room.as_str(),
            event_id.as_str(),
            "--wait",
            "10",
        ];
        if i % 2 == 0 && bob.run_killed_after(&args, Duration::from_millis(kill_after[(i / 2) % 4]))
        {
            notification_kills += 1;
            continue;
        }
        let run = bob.run(&args);
        if run.status == 0 {
            // A notification that finishes shows exactly its message.
            let n = run.json();
            assert_eq!(n["body"], body.as_str(), "{n}");
            assert_eq!(n["event_id"], event_id.as_str(), "{n}");
        } else {
            // The only other acceptable answer: not yet (never a wrong or partial one).
            assert_eq!(run.error()["error"], "cannot_decrypt_yet", "{run:?}");
        }
    }
    stop.store(true, Ordering::SeqCst);
    let listen_kills = listener.join().unwrap();
    eprintln!("main sync killed {listen_kills} times, notifications {notification_kills} times");
    assert!(
        listen_kills >= 2,
        "the main sync was killed {listen_kills} times"
    );
    assert!(notification_kills >= 1, "no notification was killed");

    // Every message decrypts: no room key was lost.
    let mut shown = Vec::new();
    for _ in 0..10 {
        bob.run(&["sync"]).ok();
        shown = decrypted_bodies(&bob, &room);
        if expected.iter().all(|b| shown.contains(b)) {
            break;
        }
    }
    for body in &expected {
        assert_eq!(
            shown.iter().filter(|s| *s == body).count(),
            1,
            "{body:?} in {shown:?}"
        );
    }
    // Nothing applied twice, nothing refused.
    let journal = bob.run(&["security-events"]).ok().json();
    assert_eq!(journal["security_events"], json!([]), "{journal:#}");
}

/// Syncs `client` until the message `body` is decrypted in `room`; returns every notification
/// the rounds reported (the push rules evaluated on the device).
fn notifications_until(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    room: &str,
    body: &str,
) -> Vec<tchap_secure_core::Notification> {
    let mut all = Vec::new();
    for _ in 0..20 {
        let s = rt
            .block_on(client.sync_once(Duration::from_millis(500)))
            .unwrap();
        all.extend(s.notifications);
        if s.messages
            .iter()
            .any(|m| m.room_id == room && m.body.as_deref() == Some(body))
        {
            return all;
        }
    }
    panic!("{body:?} never arrived");
}

fn path_segment(id: &str) -> String {
    id.replace('!', "%21")
        .replace(':', "%3A")
        .replace('@', "%40")
}

/// The push-rule cases, evaluated on the device on the decrypted messages (as the
/// persistent-connection mode does with every sync, and `notification` with a pushed event):
/// a direct chat notifies; a room the member muted does not; in that muted room a mention of
/// the member's name does, highlighted (override rules come before room rules), and so does a
/// keyword of theirs (content rules too) — a word that only contains it does not. The rules
/// are set on the real Synapse and reach the device as account data.
#[test]
fn push_rules_on_the_device_a_dm_notifies_a_muted_room_does_not_but_a_mention_or_keyword_does() {
    let rt = rt();
    let synapse = Synapse::shared();
    let mut s = scene(&rt, "nt-rules");
    let alice_id = s.alice.session().unwrap().user_id;
    let bob_id = s.bob.session().unwrap().user_id;
    let group = s.room.clone();
    // A direct chat: Alice and Bob only.
    let dm = rt
        .block_on(
            s.bob
                .create_room(None, std::slice::from_ref(&alice_id), false),
        )
        .unwrap();
    rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(s.alice.join(&dm)).unwrap();
    rt.block_on(s.alice.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(s.bob.sync_once(Duration::ZERO)).unwrap();

    let got = {
        rt.block_on(s.bob.send_text(&dm, "Tu as deux minutes ?"))
            .unwrap();
        notifications_until(&rt, &mut s.alice, &dm, "Tu as deux minutes ?")
    };
    let n = got
        .iter()
        .find(|n| n.room_id == dm)
        .unwrap_or_else(|| panic!("the direct message did not notify: {got:#?}"));
    assert_eq!(n.body.as_deref(), Some("Tu as deux minutes ?"));
    assert_eq!(n.sender, bob_id);
    assert!(n.notify && !n.highlight, "{n:?}");

    // Alice mutes the group room and adds a keyword, on the server.
    let token = access_token(&s.alice);
    let (status, answer) = synapse.request(
        "PUT",
        &format!(
            "/_matrix/client/v3/pushrules/global/room/{}",
            path_segment(&group)
        ),
        Some(&token),
        Some(&json!({ "actions": [] })),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = synapse.request(
        "PUT",
        "/_matrix/client/v3/pushrules/global/content/budget",
        Some(&token),
        Some(&json!({ "pattern": "budget", "actions": ["notify", {"set_tweak": "highlight"}] })),
    );
    assert_eq!(status, 200, "{answer}");

    let alice_name = s
        .alice
        .store()
        .members(&group)
        .unwrap()
        .into_iter()
        .find(|m| m.user_id == alice_id)
        .and_then(|m| m.display_name)
        .expect("Alice's display name in the room");
    let sent = [
        ("Rien de neuf ce matin.".to_owned(), false),
        (format!("{alice_name}, tu peux relire la note ?"), true),
        ("Le budget 2027 est arrivé.".to_owned(), true),
        ("Un arbitrage budgetaire sans urgence.".to_owned(), false),
    ];
    for (body, _) in &sent {
        rt.block_on(s.bob.send_text(&group, body)).unwrap();
    }
    let got = notifications_until(&rt, &mut s.alice, &group, &sent[3].0);
    let in_group: Vec<&str> = got
        .iter()
        .filter(|n| n.room_id == group)
        .filter_map(|n| n.body.as_deref())
        .collect();
    let expected: Vec<&str> = sent
        .iter()
        .filter(|(_, notifies)| *notifies)
        .map(|(b, _)| b.as_str())
        .collect();
    assert_eq!(in_group, expected, "{got:#?}");
    assert!(
        got.iter()
            .filter(|n| n.room_id == group)
            .all(|n| n.highlight),
        "a mention and a keyword are highlighted: {got:#?}"
    );

    // The push path decides the same on a pushed event: the muted room's plain message is
    // shown silently (notify false), the keyword notifies.
    let events: Vec<(String, String)> = s
        .alice
        .messages(&group, 10)
        .unwrap()
        .into_iter()
        .filter_map(|m| Some((m.body?, m.event_id)))
        .collect();
    let id_of = |body: &str| {
        events
            .iter()
            .find(|(b, _)| b == body)
            .map(|(_, id)| id.clone())
            .unwrap()
    };
    let quiet = rt
        .block_on(
            s.alice
                .notification(&group, &id_of(&sent[0].0), Duration::ZERO),
        )
        .unwrap();
    assert!(!quiet.notify, "{quiet:?}");
    let keyword = rt
        .block_on(
            s.alice
                .notification(&group, &id_of(&sent[2].0), Duration::ZERO),
        )
        .unwrap();
    assert!(keyword.notify && keyword.highlight, "{keyword:?}");
}

/// The CLI: `listen --notify` prints the notifications the push rules give (a direct chat
/// notifies) next to the messages; `notification ROOM EVENT` shows the same message with the
/// rules' decision.
#[test]
fn the_cli_listens_with_notifications_and_shows_a_pushed_event() {
    let rt = rt();
    let synapse = Synapse::shared();
    let bob = crate::support::Member::new("nt-cli-bob");
    bob.login().ok();
    let alice_localpart = synapse.unique_user("nt-cli-alice");
    synapse.register(&alice_localpart, PASSWORD, false);
    let (_a, mut alice) = logged_in(&rt, "nt-cli", &alice_localpart, "alice-phone");
    let dm = rt
        .block_on(alice.create_room(None, std::slice::from_ref(&bob.user_id), false))
        .unwrap();
    bob.run(&["sync"]).ok();
    bob.run(&["join", &dm]).ok();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    let event = rt
        .block_on(alice.send_text(&dm, "Réunion avancée à 14 h"))
        .unwrap();
    let shown = bob
        .run(&["notification", &dm, &event, "--wait", "10"])
        .ok()
        .json();
    assert_eq!(shown["body"], "Réunion avancée à 14 h", "{shown}");
    assert_eq!(shown["notify"], true, "{shown}");
    assert_eq!(shown["kind"], "message", "{shown}");
    let listened = bob
        .run(&[
            "listen",
            "--notify",
            "--max-messages",
            "1",
            "--timeout-ms",
            "5000",
        ])
        .ok();
    let lines: Vec<Value> = listened
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let pushed: Vec<&Value> = lines.iter().filter_map(|l| l.get("notification")).collect();
    assert_eq!(pushed.len(), 1, "{lines:#?}");
    assert_eq!(pushed[0]["event_id"], event.as_str());
    assert_eq!(pushed[0]["body"], "Réunion avancée à 14 h");
    assert!(
        lines
            .iter()
            .any(|l| l["event_id"] == event.as_str() && l["state"] == "decrypted"),
        "{lines:#?}"
    );
}
