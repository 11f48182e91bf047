//! Push registration (issue 17): this device's pusher on the real Synapse, pointed at the
//! testbed's push gateway with `event_id_only`; what the gateway receives for an encrypted
//! message; the pusher gone from the server after logout and after a wipe.

use std::time::Duration;

use serde_json::{Value, json};
use tchap_secure_tests::push_gateway::PushGateway;
use tchap_secure_tests::synapse::Synapse;

use crate::support::{Member, PASSWORD, contains_bytes, logged_in, rt};

const APP_ID: &str = "fr.gouv.tchap.secure.test";

/// A member on the CLI whose configuration names `gateway` as its push gateway, logged in.
fn member_with_push(gateway: &PushGateway, prefix: &str) -> Member {
    let synapse = Synapse::shared();
    let mut config = synapse.client_config();
    config["push_gateway_url"] = json!(gateway.notify_url());
    let member = Member::on(synapse, &config, prefix);
    member.login().ok();
    member
}

fn pushkeys_on_server(user_id: &str) -> Vec<(String, Value)> {
    Synapse::shared()
        .pushers_of(user_id)
        .into_iter()
        .map(|p| (p["pushkey"].as_str().unwrap_or_default().to_owned(), p))
        .collect()
}

/// Registered: Synapse holds the pusher (our gateway, `event_id_only`); a message from Alice
/// reaches the gateway as ids only — its bytes carry no body, no sender, no room name; after
/// `logout` Synapse holds no pusher of Bob's any more.
#[test]
fn a_registered_pusher_sends_ids_only_and_logout_removes_it() {
    let rt = rt();
    let synapse = Synapse::shared();
    let gateway = PushGateway::start(&synapse.pki.server);
    let bob = member_with_push(&gateway, "push-bob");
    let alice_localpart = synapse.unique_user("push-alice");
    let alice_id = synapse.register(&alice_localpart, PASSWORD, false).user_id;
    let (_a, mut alice) = logged_in(&rt, "push-alice", &alice_localpart, "alice-phone");
    let room = rt
        .block_on(alice.create_room(
            Some("Cabinet du ministre"),
            std::slice::from_ref(&bob.user_id),
            false,
        ))
        .unwrap();
    bob.run(&["sync"]).ok();
    bob.run(&["join", &room]).ok();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();

    // Bad input first: a push key with a control character is refused before any request.
    let refused = bob.run(&[
        "notifications",
        "register",
        "--app-id",
        APP_ID,
        "--pushkey",
        "pk\u{1b}[2J",
    ]);
    assert_eq!(refused.error()["error"], "invalid_argument", "{refused:?}");
    assert!(pushkeys_on_server(&bob.user_id).is_empty());

    bob.run(&[
        "notifications",
        "register",
        "--app-id",
        APP_ID,
        "--pushkey",
        "pk-bob-phone",
        "--device-name",
        "bob-phone",
    ])
    .ok();
    let on_server = pushkeys_on_server(&bob.user_id);
    assert_eq!(on_server.len(), 1, "{on_server:?}");
    let (pushkey, pusher) = &on_server[0];
    assert_eq!(pushkey, "pk-bob-phone");
    assert_eq!(pusher["app_id"], APP_ID);
    assert_eq!(pusher["kind"], "http");
    assert_eq!(pusher["data"]["url"], gateway.notify_url().as_str());
    assert_eq!(pusher["data"]["format"], "event_id_only");
    let listed = bob.run(&["notifications", "list"]).ok().json();
    assert_eq!(listed["registered_here"][0]["pushkey"], "pk-bob-phone");
    assert_eq!(listed["pushers"][0]["pushkey"], "pk-bob-phone");

    let body = "Réunion restreinte à 15 h, salle 204";
    let event_id = rt.block_on(alice.send_text(&room, body)).unwrap();
    let notification = gateway
        .wait_for_event(&event_id, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no push for {event_id}: {:?}", gateway.received()));
    assert_eq!(notification["room_id"], room.as_str());
    assert_eq!(notification["devices"][0]["pushkey"], "pk-bob-phone");
    for request in gateway.received() {
        for secret in [
            body.as_bytes(),
            "Réunion".as_bytes(),
            "Cabinet du ministre".as_bytes(),
            alice_id.as_bytes(),
            alice_localpart.as_bytes(),
        ] {
            assert!(
                !contains_bytes(&request.body, secret),
                "{:?} reached the gateway: {}",
                String::from_utf8_lossy(secret),
                String::from_utf8_lossy(&request.body)
            );
        }
    }

    bob.run(&["logout"]).ok();
    assert!(
        pushkeys_on_server(&bob.user_id).is_empty(),
        "a pusher outlived the logout: {:?}",
        pushkeys_on_server(&bob.user_id)
    );
}

/// A wipe removes this device's pushers from the homeserver before it crypto-shreds the data
/// directory; `unregister` alone removes them too.
#[test]
fn unregister_and_wipe_remove_the_pusher_from_the_server() {
    let synapse = Synapse::shared();
    let gateway = PushGateway::start(&synapse.pki.server);
    let carol = member_with_push(&gateway, "push-carol");
    let register = |pushkey: &str| {
        carol
            .run(&[
                "notifications",
                "register",
                "--app-id",
                APP_ID,
                "--pushkey",
                pushkey,
            ])
            .ok();
    };
    register("pk-carol-1");
    assert_eq!(pushkeys_on_server(&carol.user_id).len(), 1);
    let removed = carol.run(&["notifications", "unregister"]).ok().json();
    assert_eq!(removed["pushers_removed"], "1");
    assert!(pushkeys_on_server(&carol.user_id).is_empty());

    register("pk-carol-2");
    assert_eq!(pushkeys_on_server(&carol.user_id).len(), 1);
    carol.run(&["wipe", "--yes"]).ok();
    assert!(
        pushkeys_on_server(&carol.user_id).is_empty(),
        "a pusher outlived the wipe: {:?}",
        pushkeys_on_server(&carol.user_id)
    );
}

/// Without `push_gateway_url` in the managed configuration, registering is refused: the app
/// cannot point the homeserver anywhere itself.
#[test]
fn without_a_configured_gateway_no_pusher_is_registered() {
    let member = Member::new("push-none");
    member.login().ok();
    let refused = member.run(&[
        "notifications",
        "register",
        "--app-id",
        APP_ID,
        "--pushkey",
        "pk-none",
    ]);
    assert_eq!(refused.error()["error"], "invalid_argument", "{refused:?}");
    assert!(pushkeys_on_server(&member.user_id).is_empty());
}
