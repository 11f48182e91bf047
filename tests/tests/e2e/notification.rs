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
