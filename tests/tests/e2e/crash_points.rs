//! Crash safety at named points: real `tchap-secure` processes stopped exactly at a point and
//! killed with SIGKILL, then restarted. No message is lost, every earlier message still
//! decrypts, and no one-time key is ever published twice (all claimed back from the server
//! and compared).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tchap_secure_tests::synapse::Synapse;

use crate::messaging::receive;
use crate::support::{InProcess, Member, PASSWORD, password, rt};
use tchap_secure_tests::harness::access_token;

/// Bob (a CLI member) and Alice (in process) in one encrypted room.
fn setup(
    prefix: &str,
) -> (
    tokio::runtime::Runtime,
    Member,
    InProcess,
    tchap_secure_core::Client,
    String,
) {
    let rt = rt();
    let synapse = Synapse::shared();
    let bob = Member::new(&format!("{prefix}-bob"));
    bob.login().ok();
    let a = InProcess::new(prefix);
    let ua = synapse.unique_user(&format!("{prefix}-alice"));
    synapse.register(&ua, PASSWORD, false);
    let mut alice = a.open().unwrap();
    rt.block_on(alice.login(&ua, &password(), "alice-phone"))
        .unwrap();
    let room = rt
        .block_on(alice.create_room(Some("crash"), std::slice::from_ref(&bob.user_id), false))
        .unwrap();
    bob.run(&["sync"]).ok();
    bob.run(&["join", &room]).ok();
    bob.run(&["sync"]).ok();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    (rt, bob, a, alice, room)
}

fn bodies(member: &Member, room: &str) -> Vec<(String, String)> {
    let run = member.run(&["messages", room]).ok();
    run.stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["state"].as_str().unwrap().to_owned(),
                v["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn killed_after_a_sync_response_arrived_and_before_its_commit() {
    let (rt, bob, _a, mut alice, room) = setup("crash-sync");
    rt.block_on(alice.send_text(&room, "premier")).unwrap();
    bob.run_until_crash(&["sync"], "after-sync-response");
    bob.run(&["sync"]).ok();
    assert_eq!(
        bodies(&bob, &room),
        [("decrypted".to_owned(), "premier".to_owned())]
    );

    rt.block_on(alice.send_text(&room, "second")).unwrap();
    bob.run_until_crash(&["sync"], "before-sync-commit");
    // Nothing of the killed sync was committed …
    assert_eq!(bodies(&bob, &room).len(), 1);
    // … and the next sync gets it all again.
    bob.run(&["sync"]).ok();
    assert_eq!(
        bodies(&bob, &room),
        [
            ("decrypted".to_owned(), "premier".to_owned()),
            ("decrypted".to_owned(), "second".to_owned())
        ]
    );
}

/// Claims one key of `user`'s `device` with `token`: `(key id, public key, is fallback)`.
fn claim_one(token: &str, user: &str, device: &str) -> Option<(String, String, bool)> {
    let (status, answer) = Synapse::shared().request(
        "POST",
        "/_matrix/client/v3/keys/claim",
        Some(token),
        Some(&json!({"one_time_keys": {user: {device: "signed_curve25519"}}})),
    );
    assert_eq!(status, 200, "{answer}");
    let keys = answer["one_time_keys"][user][device].as_object()?;
    let (id, key) = keys.iter().next()?;
    Some((
        id.clone(),
        key["key"].as_str().unwrap().to_owned(),
        key.get("fallback")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    ))
}

#[test]
fn killed_around_the_one_time_key_upload_no_key_is_published_twice() {
    let (rt, bob, _a, alice, _room) = setup("crash-otk");
    let _ = rt;
    let token = access_token(&alice);
    let device = bob.run(&["whoami"]).ok().json()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut claimed = Vec::new();
    let claim = |n: usize, claimed: &mut Vec<(String, String, bool)>| {
        for _ in 0..n {
            claimed.push(claim_one(&token, &bob.user_id, &device).expect("a key"));
        }
    };

    // 10 claimed: the next sync generates 10 and is killed before uploading them.
    claim(10, &mut claimed);
    bob.run_until_crash(&["sync"], "after-otk-generated");
    bob.run(&["sync"]).ok();
    // 10 more claimed: this time killed after the upload, before it was marked published.
    claim(10, &mut claimed);
    bob.run_until_crash(&["sync"], "after-otk-upload");
    bob.run(&["sync"]).ok();
    bob.run(&["sync"]).ok();

    // Claim everything the server has, until only the fallback key comes back.
    let mut rounds = 0;
    loop {
        let key = claim_one(&token, &bob.user_id, &device).expect("a key or the fallback");
        if key.2 {
            break;
        }
        claimed.push(key);
        rounds += 1;
        assert!(rounds < 500, "the server never ran out of one-time keys");
    }
    assert!(claimed.iter().all(|k| !k.2));
    let ids: BTreeSet<&str> = claimed.iter().map(|k| k.0.as_str()).collect();
    let keys: BTreeSet<&str> = claimed.iter().map(|k| k.1.as_str()).collect();
    assert_eq!(ids.len(), claimed.len(), "a key id was published twice");
    assert_eq!(
        keys.len(),
        claimed.len(),
        "a public key was published twice"
    );
    // 50 at login, 10 + 10 topped up: every key accounted for exactly once.
    assert_eq!(claimed.len(), 70, "claimed {} keys", claimed.len());
}

#[test]
fn killed_in_the_middle_of_sharing_a_room_key() {
    let rt = rt();
    let synapse = Synapse::shared();
    let alice = Member::new("crash-share-alice");
    alice.login().ok();
    let mut peers = Vec::new();
    for name in ["bob", "carol"] {
        let p = InProcess::new(&format!("crash-share-{name}"));
        let user = synapse.unique_user(&format!("crash-share-{name}"));
        let reg = synapse.register(&user, PASSWORD, false);
        let mut client = p.open().unwrap();
        rt.block_on(client.login(&user, &password(), "phone"))
            .unwrap();
        peers.push((p, client, reg.user_id));
    }
    let room = alice
        .run(&[
            "create-room",
            "--name",
            "partage",
            "--invite",
            &peers[0].2,
            "--invite",
            &peers[1].2,
        ])
        .ok()
        .json()["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (_, client, _) in &mut peers {
        rt.block_on(client.sync_once(Duration::ZERO)).unwrap();
        rt.block_on(client.join(&room)).unwrap();
    }
    // An earlier message, from Bob, that Alice has received.
    rt.block_on(peers[0].1.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(peers[0].1.send_text(&room, "avant la panne"))
        .unwrap();
    alice.run(&["sync"]).ok();
    // Alice's first message: its room key goes to one recipient, then the process dies
    // before the other's key and the message itself leave the outbox.
    alice.run_until_crash(
        &["send", &room, "--text", "pendant la panne"],
        "mid-key-share",
    );
    alice.run(&["sync"]).ok();
    for (_, client, _) in &mut peers {
        receive(&rt, client, &room, "pendant la panne");
    }
    // Alice's own copy comes back with her next sync and decrypts with her own session.
    alice.run(&["sync"]).ok();
    let mine = bodies(&alice, &room);
    assert!(
        mine.contains(&("decrypted".to_owned(), "avant la panne".to_owned())),
        "{mine:?}"
    );
    assert!(
        mine.contains(&("decrypted".to_owned(), "pendant la panne".to_owned())),
        "{mine:?}"
    );
}

/// The cross-signing identity is set up at login; a process killed after the keys were stored,
/// after the server accepted them, or after it accepted our device's signature, is restarted:
/// the next sync finishes the setup with the keys it stored — the identity on the server is
/// exactly the one this device holds (never a second one generated, never one it lost), and
/// our device is signed by it (checked from another member's client).
#[test]
fn killed_around_the_cross_signing_setup_no_identity_is_lost_or_published_twice() {
    let rt = rt();
    let synapse = Synapse::shared();
    let a = InProcess::new("crash-xs-alice");
    let ua = synapse.unique_user("crash-xs-alice");
    synapse.register(&ua, PASSWORD, false);
    let mut alice = a.open().unwrap();
    rt.block_on(alice.login(&ua, &password(), "alice-phone"))
        .unwrap();
    for point in [
        "cross-signing-generated",
        "after-cross-signing-upload",
        "after-device-signature-upload",
    ] {
        let bob = Member::new("crash-xs-bob");
        bob.login_until_crash(point);
        let status = bob.run(&["cross-signing"]).ok().json();
        assert_eq!(
            status["device_signed"], false,
            "{point}: not finished before the restart"
        );
        bob.run(&["sync"]).ok();
        let status = bob.run(&["cross-signing"]).ok().json();
        assert_eq!(status["has_private_keys"], true, "{point}: {status}");
        assert_eq!(status["device_signed"], true, "{point}: {status}");
        assert_eq!(status["identity"], "verified", "{point}: {status}");
        let master = status["master"].as_str().unwrap().to_owned();
        // What the server holds, seen by Alice.
        let devices = rt.block_on(alice.devices(&bob.user_id)).unwrap();
        let identity = alice.identity(&bob.user_id).unwrap().unwrap();
        assert_eq!(
            identity.master, master,
            "{point}: the server holds our stored identity"
        );
        assert_eq!(devices.len(), 1, "{point}");
        assert!(
            devices[0].cross_signed,
            "{point}: our device is signed on the server"
        );
        // And nothing more happens at the next run.
        bob.run(&["sync"]).ok();
        assert_eq!(bob.run(&["cross-signing"]).ok().json(), status, "{point}");
    }
}

/// Drives `flow` on Alice's side until `done` holds (or the deadline): starts SAS once ready,
/// confirms once the emoji are there.
fn drive_requester(
    rt: &tokio::runtime::Runtime,
    alice: &mut tchap_secure_core::Client,
    flow: &str,
    mut done: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (mut started, mut confirmed) = (false, false);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "verification stuck: {:?}",
            alice.verification(flow)
        );
        rt.block_on(alice.sync_once(Duration::from_millis(200)))
            .unwrap();
        let info = alice.verification(flow).unwrap();
        if info.state == "ready" && !started {
            rt.block_on(alice.start_sas(flow)).unwrap();
            started = true;
        }
        if info.emoji.is_some() && !confirmed {
            rt.block_on(alice.confirm_sas(flow)).unwrap();
            confirmed = true;
        }
    }
}

/// Alice asks Bob to verify (to-device); Bob's CLI answers (`verify --incoming --yes`) while
/// Alice drives her side, until Bob's command ends.
fn verify_to_the_end(
    rt: &tokio::runtime::Runtime,
    alice: &mut tchap_secure_core::Client,
    bob: &Member,
) {
    let flow = rt
        .block_on(alice.request_verification(&bob.user_id, None))
        .unwrap();
    std::thread::scope(|s| {
        let verify = s.spawn(|| bob.run(&["verify", "--incoming", "--yes"]).ok());
        drive_requester(rt, alice, &flow, || verify.is_finished());
        verify.join().unwrap();
    });
}

/// Issue 16: a member's phone killed after the other side's MAC arrived and the flow ended,
/// before its signature of the verified identity was uploaded. After the restart nothing is
/// half trusted (the identity is still only pinned, no signature on the server), and the
/// verification can be done again, to the end.
#[test]
fn killed_after_the_verification_and_before_the_signature_upload_nothing_is_half_trusted() {
    let rt = rt();
    let synapse = Synapse::shared();
    let bob = Member::new("crash-vf-bob");
    bob.login().ok();
    let a = InProcess::new("crash-vf-alice");
    let ua = synapse.unique_user("crash-vf-alice");
    synapse.register(&ua, PASSWORD, false);
    let mut alice = a.open().unwrap();
    let alice_id = rt
        .block_on(alice.login(&ua, &password(), "alice-phone"))
        .unwrap()
        .user_id;
    rt.block_on(alice.devices(&bob.user_id)).unwrap();
    let identity_state = |bob: &Member| {
        bob.run(&["devices", &alice_id]).ok().json()["identity"]["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let flow = rt
        .block_on(alice.request_verification(&bob.user_id, None))
        .unwrap();
    std::thread::scope(|s| {
        let killed = s.spawn(|| {
            bob.run_until_crash(
                &["verify", "--incoming", "--yes"],
                "verification-done-before-upload",
            );
        });
        drive_requester(&rt, &mut alice, &flow, || killed.is_finished());
        killed.join().unwrap();
    });
    assert_eq!(identity_state(&bob), "pinned", "nothing half trusted");

    // Done again, to the end.
    verify_to_the_end(&rt, &mut alice, &bob);
    assert_eq!(identity_state(&bob), "verified");
}

/// `members` shows each member's identity as pinned here: `pinned` once the sync queried the
/// member's keys, `verified` after an interactive verification.
#[test]
fn members_show_each_identity_pinned_then_verified() {
    let (rt, bob, _a, mut alice, room) = setup("members-xs");
    let alice_id = alice.session().unwrap().user_id;
    let identity_of_alice = |bob: &Member| {
        let out = bob.run(&["members", &room]).ok().json();
        out["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user_id"] == alice_id.as_str())
            .unwrap()["identity"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(identity_of_alice(&bob), "pinned");
    rt.block_on(alice.devices(&bob.user_id)).unwrap();
    verify_to_the_end(&rt, &mut alice, &bob);
    assert_eq!(identity_of_alice(&bob), "verified");
}
