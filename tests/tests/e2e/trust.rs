//! Trust beyond first use from the CLI (issue 16): `verify USER DEVICE` asks one device only,
//! and `devices USER --acknowledge KEY` accepts a contact's changed identity where the managed
//! configuration allows it — a member (the CLI) against in-process members on the real Synapse.

use std::time::Duration;

use serde_json::{Value, json};
use tchap_secure_tests::synapse::Synapse;

use crate::messaging::receive;
use crate::support::{Member, PASSWORD, logged_in, password, rt};

/// Bob, a member on the CLI (logged in), and Alice, registered: `(bob, alice's localpart,
/// alice's user id)`.
fn bob_and_alice(prefix: &str) -> (Member, String, String) {
    let synapse = Synapse::shared();
    let bob = Member::new(&format!("{prefix}-bob"));
    bob.login().ok();
    let alice_localpart = synapse.unique_user(&format!("{prefix}-alice"));
    let alice_id = synapse.register(&alice_localpart, PASSWORD, false).user_id;
    (bob, alice_localpart, alice_id)
}

/// The `devices USER` JSON of `member`.
fn devices_of(member: &Member, user: &str) -> Value {
    member.run(&["devices", user]).ok().json()
}

/// `verify ALICE PHONE`: the request goes to the named device only; Alice's other device never
/// sees it; the verification ends done and the CLI's member then holds Alice verified.
#[test]
fn verify_names_one_device_and_only_that_device_is_asked() {
    let rt = rt();
    let (bob, alice_localpart, alice_id) = bob_and_alice("vdev");
    let (_p, mut phone) = logged_in(&rt, "vdev-phone", &alice_localpart, "alice-phone");
    let (_l, mut laptop) = logged_in(&rt, "vdev-laptop", &alice_localpart, "alice-laptop");
    let phone_device = phone.session().unwrap().device_id;
    for c in [&mut phone, &mut laptop] {
        rt.block_on(c.devices(&bob.user_id)).unwrap();
    }
    assert_eq!(devices_of(&bob, &alice_id)["identity"]["state"], "pinned");

    // A device Alice does not have: refused before anything is sent.
    let refused = bob.run(&["verify", &alice_id, "NOSUCHDEVICE", "--yes"]);
    assert_ne!(refused.status, 0);
    assert_eq!(refused.error()["error"], "invalid_argument", "{refused:?}");

    std::thread::scope(|s| {
        let verify = s.spawn(|| bob.run(&["verify", &alice_id, &phone_device, "--yes"]));
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut flow: Option<String> = None;
        let mut confirmed = false;
        while !verify.is_finished() {
            assert!(std::time::Instant::now() < deadline, "verification stuck");
            rt.block_on(phone.sync_once(Duration::from_millis(200)))
                .unwrap();
            rt.block_on(laptop.sync_once(Duration::from_millis(200)))
                .unwrap();
            assert!(
                laptop.verifications().is_empty(),
                "the device not named was asked: {:?}",
                laptop.verifications()
            );
            if flow.is_none()
                && let Some(request) = phone
                    .verifications()
                    .into_iter()
                    .find(|v| v.state == "received" && v.user_id == bob.user_id)
            {
                rt.block_on(phone.accept_verification(&request.flow_id))
                    .unwrap();
                flow = Some(request.flow_id);
            }
            if let Some(f) = &flow
                && !confirmed
                && phone.verification(f).unwrap().emoji.is_some()
            {
                rt.block_on(phone.confirm_sas(f)).unwrap();
                confirmed = true;
            }
        }
        let run = verify.join().unwrap().ok();
        assert!(run.stdout.contains("\"done\""), "{run:?}");
    });
    assert!(laptop.verifications().is_empty());
    assert_eq!(devices_of(&bob, &alice_id)["identity"]["state"], "verified");
}

/// Alice replaces her identity: Bob's CLI shows it changed and withholds his room keys. Under
/// the default configuration he cannot acknowledge it (only a new verification lifts the
/// block); where `allow_identity_acknowledgement` is on, acknowledging a key other than the one
/// shown is refused, acknowledging the shown key pins it (journaled), and his next message
/// reaches Alice again — the one sent while the identity was changed never does.
#[test]
fn an_acknowledged_identity_change_lifts_the_block_only_where_the_configuration_allows_it() {
    let rt = rt();
    let (bob, alice_localpart, alice_id) = bob_and_alice("ack");
    let synapse = Synapse::shared();
    let (_a, mut alice) = logged_in(&rt, "ack-alice", &alice_localpart, "alice-phone");
    let room = rt
        .block_on(alice.create_room(Some("Accusé"), std::slice::from_ref(&bob.user_id), false))
        .unwrap();
    bob.run(&["sync"]).ok();
    bob.run(&["join", &room]).ok();
    bob.run(&["send", &room, "--text", "avant le changement"])
        .ok();
    assert_eq!(
        receive(&rt, &mut alice, &room, "avant le changement").state,
        "decrypted"
    );
    let old_master = devices_of(&bob, &alice_id)["identity"]["master"]
        .as_str()
        .unwrap()
        .to_owned();

    let status = rt.block_on(alice.reset_cross_signing(&password())).unwrap();
    let new_master = status.master.unwrap();
    assert_ne!(new_master, old_master);
    let shown = devices_of(&bob, &alice_id);
    assert_eq!(shown["identity"]["state"], "changed", "{shown}");
    assert_eq!(shown["identity"]["changed_master"], new_master.as_str());
    assert_eq!(shown["devices"][0]["trust"], "identity_changed", "{shown}");
    bob.run(&["send", &room, "--text", "pendant le changement"])
        .ok();

    // Not allowed by the default configuration.
    let refused = bob.run(&["devices", &alice_id, "--acknowledge", &new_master]);
    assert_ne!(refused.status, 0);
    assert_eq!(
        refused.error()["error"],
        "identity_acknowledgement_not_allowed",
        "{refused:?}"
    );
    assert_eq!(devices_of(&bob, &alice_id)["identity"]["state"], "changed");

    let mut config = synapse.client_config();
    config["allow_identity_acknowledgement"] = json!(true);
    std::fs::write(&bob.config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    // A key other than the one the server shows: nothing accepted.
    let stale = bob.run(&["devices", &alice_id, "--acknowledge", &old_master]);
    assert_eq!(
        stale.error()["error"],
        "identity_changed_again",
        "{stale:?}"
    );
    assert_eq!(devices_of(&bob, &alice_id)["identity"]["state"], "changed");

    let acknowledged = bob
        .run(&["devices", &alice_id, "--acknowledge", &new_master])
        .ok()
        .json();
    assert_eq!(
        acknowledged["identity"]["state"], "pinned",
        "{acknowledged}"
    );
    assert_eq!(acknowledged["identity"]["master"], new_master.as_str());
    assert_eq!(acknowledged["devices"][0]["trust"], "identity_pinned");
    let journal = bob.run(&["security-events"]).ok().stdout;
    assert!(
        journal.contains("identity_change_acknowledged"),
        "{journal}"
    );

    bob.run(&["send", &room, "--text", "après l'accusé"]).ok();
    assert_eq!(
        receive(&rt, &mut alice, &room, "après l'accusé").state,
        "decrypted"
    );
    let during =
        alice.messages(&room, 50).unwrap().into_iter().find(|m| {
            m.sender == bob.user_id && m.body.as_deref() == Some("pendant le changement")
        });
    assert!(
        during.is_none(),
        "the message sent while the identity was changed was readable"
    );
}
