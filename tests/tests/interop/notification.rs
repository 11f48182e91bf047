//! Notifications without Google (issue 17), end to end with the independent peer: a message
//! from matrix-sdk 0.18 → Synapse → the testbed push gateway (event and room ids only) → our
//! `Client::notification`, which fetches and decrypts the event itself — its room key fetched
//! by the notification path's to-device sync, since our main sync has not run since.

use std::time::Duration;

use serde_json::json;
use tchap_secure_core::{Client, NotificationKind};
use tchap_secure_tests::harness::{InProcess, PASSWORD, contains_bytes, password};
use tchap_secure_tests::push_gateway::PushGateway;
use tchap_secure_tests::synapse::Synapse;

use crate::new_peer;
use crate::ours::{Ours, room_between, room_id};

const APP_ID: &str = "fr.gouv.tchap.secure.interop";

/// One of our devices whose configuration names `gateway`, logged in.
async fn ours_pushed_to(gateway: &PushGateway, prefix: &str) -> Ours {
    let synapse = Synapse::shared();
    let localpart = synapse.unique_user(prefix);
    synapse.register(&localpart, PASSWORD, false);
    let home = InProcess::new(prefix);
    let mut config = synapse.client_config();
    config["push_gateway_url"] = json!(gateway.notify_url());
    let config = tchap_secure_core::Config::from_json(config.to_string().as_bytes()).unwrap();
    let mut client: Client = home.open_with(config).unwrap();
    let info = client
        .login(&localpart, &password(), &format!("{prefix}-phone"))
        .await
        .unwrap();
    Ours {
        _home: home,
        client,
        user_id: info.user_id,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_from_matrix_sdk_is_pushed_as_ids_and_decrypted_by_the_notification_path() {
    let synapse = Synapse::shared();
    let gateway = PushGateway::start(&synapse.pki.server);
    let mut ours = ours_pushed_to(&gateway, "nt-ours").await;
    let peer = new_peer("nt-peer").await;
    let sender_name = "Jeanne Martin [Ministère des Armées]";
    let room_name = "Cellule de crise Balard";
    let body = "Point de situation à 15 h, salle Clemenceau";
    peer.client
        .account()
        .set_display_name(Some(sender_name))
        .await
        .unwrap();
    let room = room_between(&mut ours, &peer, false).await;
    peer.client
        .get_room(&room_id(&room))
        .unwrap()
        .set_name(room_name.to_owned())
        .await
        .unwrap();
    ours.client
        .register_pusher(APP_ID, "pk-interop-phone", "interop-phone")
        .await
        .unwrap();
    // Our device learns the room's name and the sender's name (member state, in clear), then
    // stops syncing: what follows reaches it by push only.
    ours.sync().await;
    assert_eq!(
        ours.client
            .store()
            .room(&room)
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some(room_name)
    );

    let event_id = peer.send_text(&room_id(&room), body).await;
    let pushed = gateway
        .wait_for_event(event_id.as_str(), Duration::from_secs(30))
        .expect("Synapse pushed the message to the gateway");
    assert_eq!(pushed["room_id"], room.as_str());
    // Nothing readable went through the gateway: no body, no sender (id or name), no room
    // name — in any byte of any request it received.
    for received in gateway.received() {
        for needle in [
            body,
            "Point de situation",
            sender_name,
            "Jeanne",
            peer.user_id.as_str(),
            room_name,
            "Balard",
        ] {
            assert!(
                !contains_bytes(&received.body, needle.as_bytes()),
                "the gateway received {needle:?}"
            );
        }
    }

    // Without waiting, the key is not here: our device has not synced since the message.
    let early = ours
        .client
        .notification(&room, event_id.as_str(), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(early.code(), "cannot_decrypt_yet", "{early:?}");
    // With the bounded wait, the notification path fetches it (to-device only) and decrypts.
    let n = ours
        .client
        .notification(&room, event_id.as_str(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(n.kind, NotificationKind::Message);
    assert_eq!(n.body.as_deref(), Some(body));
    assert_eq!(n.sender, peer.user_id.as_str());
    // The sender's verified name and organisation: Tchap's display name parsed, nothing
    // suspicious found in it.
    assert_eq!(n.sender_name.as_deref(), Some("Jeanne Martin"));
    assert_eq!(
        n.sender_organisation.as_deref(),
        Some("Ministère des Armées")
    );
    assert!(n.sender_name_issues.is_empty(), "{n:?}");
    assert_eq!(n.room_name.as_deref(), Some(room_name));
    assert_eq!(n.event_id, event_id.as_str());
    assert_eq!(n.trust.as_deref(), Some("tofu"), "{n:?}");
    assert_eq!(n.sender_device.as_deref(), Some(peer.device_id.as_str()));

    // The main sync then receives the same to-device message (the room key) and the event:
    // the key is applied once — no Olm replay, no error journaled — and the message shows.
    let got = ours.wait_for(&room, body).await;
    assert_eq!(got.event_id, event_id.as_str());
    let journal = ours.client.store().security_events().unwrap();
    assert!(journal.is_empty(), "{journal:#?}");
    // A second notification of the same event reads what the main sync stored.
    let again = ours
        .client
        .notification(&room, event_id.as_str(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again.body.as_deref(), Some(body));
}
