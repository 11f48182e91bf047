//! Cross-signing with matrix-sdk 0.18 as the independent peer (issue 16): our identity is
//! published at first login in a form matrix-sdk accepts (it sees our device signed by our
//! identity), a later device of ours waits to be verified, a matrix-sdk user's identity is
//! pinned and the trust shown with its messages says so, and a reset goes through the
//! password (user-interactive authentication against the real Synapse).

use matrix_sdk::ruma::{DeviceId, UserId};
use tchap_secure_core::IdentityState;
use tchap_secure_hsm::SecretBytes;
use tchap_secure_tests::harness::{PASSWORD, password};
use tchap_secure_tests::synapse::Synapse;

use crate::new_peer;
use crate::ours::{new_ours, ours_as, room_between, room_id};
use crate::peer::Peer;

/// The master key matrix-sdk holds for `user` (after asking the server), in unpadded base64.
async fn master_seen_by(peer: &Peer, user: &str) -> Option<String> {
    let user = UserId::parse(user).unwrap();
    let identity = peer
        .client
        .encryption()
        .request_user_identity(&user)
        .await
        .unwrap()?;
    Some(identity.master_key().get_first_key().unwrap().to_base64())
}

/// Whether matrix-sdk sees `device` of `user` as signed by its owner's identity.
async fn cross_signed_for(peer: &Peer, user: &str, device: &str) -> bool {
    let user = UserId::parse(user).unwrap();
    peer.client
        .encryption()
        .request_user_identity(&user)
        .await
        .unwrap();
    let device: &DeviceId = device.into();
    peer.client
        .encryption()
        .get_device(&user, device)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("matrix-sdk does not know {user} {device}"))
        .is_cross_signed_by_owner()
}

#[tokio::test(flavor = "multi_thread")]
async fn our_identity_is_published_at_first_login_and_matrix_sdk_sees_our_device_signed() {
    let ours = new_ours("xs-first").await;
    let status = ours.client.cross_signing_status().unwrap();
    assert!(status.has_private_keys, "{status:?}");
    assert!(status.device_signed, "{status:?}");
    assert_eq!(status.identity, Some(IdentityState::Verified));
    let master = status.master.clone().unwrap();

    let peer = new_peer("xs-first-peer").await;
    assert_eq!(
        master_seen_by(&peer, &ours.user_id).await.as_deref(),
        Some(master.as_str()),
        "matrix-sdk accepted our master key"
    );
    let device = ours.client.session().unwrap().device_id;
    assert!(
        cross_signed_for(&peer, &ours.user_id, &device).await,
        "matrix-sdk verified our self-signing key's signature on our device"
    );
    // Asking again changes nothing: no second identity.
    let mut ours = ours;
    let again = ours.client.bootstrap_cross_signing(None).await.unwrap();
    assert_eq!(again, status);
    assert_eq!(
        master_seen_by(&peer, &ours.user_id).await.as_deref(),
        Some(master.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_device_of_ours_creates_no_identity_and_is_not_signed_until_verified() {
    let synapse = Synapse::shared();
    let localpart = synapse.unique_user("xs-two");
    synapse.register(&localpart, PASSWORD, false);
    let mut phone = ours_as(&localpart, "xs-two-phone").await;
    let mut tablet = ours_as(&localpart, "xs-two-tablet").await;
    let first = phone.client.cross_signing_status().unwrap();
    tablet.sync().await;
    let second = tablet.client.cross_signing_status().unwrap();
    assert!(!second.has_private_keys, "{second:?}");
    assert!(!second.device_signed, "{second:?}");
    assert_eq!(second.master, first.master, "the phone's identity, pinned");
    assert_eq!(second.identity, Some(IdentityState::Pinned));

    // matrix-sdk: one identity; the phone signed, the tablet not.
    let peer = new_peer("xs-two-peer").await;
    assert_eq!(master_seen_by(&peer, &phone.user_id).await, first.master);
    let phone_device = phone.client.session().unwrap().device_id;
    let tablet_device = tablet.client.session().unwrap().device_id;
    assert!(cross_signed_for(&peer, &phone.user_id, &phone_device).await);
    assert!(!cross_signed_for(&peer, &phone.user_id, &tablet_device).await);

    // The phone sees the tablet as a device its identity did not sign, and says so.
    phone.sync().await;
    let tablet_record = phone
        .client
        .devices(&phone.user_id.clone())
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.device_id == tablet_device)
        .unwrap();
    assert!(!tablet_record.cross_signed);
    let events = phone.client.store().security_events().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "unsigned_device" && e.detail.contains(&tablet_device)),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_matrix_sdk_identity_is_pinned_and_shown_with_its_messages() {
    let mut ours = new_ours("xs-pin").await;
    let peer = new_peer("xs-pin-peer").await;
    peer.client
        .encryption()
        .bootstrap_cross_signing(None)
        .await
        .unwrap();
    let peer_master = master_seen_by(&peer, peer.user_id.as_str()).await.unwrap();
    let room = room_between(&mut ours, &peer, true).await;
    let body = "from a cross-signed matrix-sdk device";
    peer.send_text(&room_id(&room), body).await;
    let got = ours.wait_for(&room, body).await;
    assert_eq!(got.trust.as_deref(), Some("identity_pinned"));
    let records = ours.client.devices(peer.user_id.as_str()).await.unwrap();
    assert!(records.iter().all(|d| d.cross_signed), "{records:#?}");
    let identity = ours
        .client
        .identity(peer.user_id.as_str())
        .unwrap()
        .unwrap();
    assert_eq!(identity.master, peer_master);
    assert_eq!(identity.state, IdentityState::Pinned);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_takes_the_password_and_replaces_the_identity_on_the_server() {
    let mut ours = new_ours("xs-reset").await;
    let before = ours.client.cross_signing_status().unwrap().master.unwrap();
    let peer = new_peer("xs-reset-peer").await;
    assert_eq!(
        master_seen_by(&peer, &ours.user_id).await,
        Some(before.clone())
    );

    // Without the right password the server keeps the identity.
    let wrong = SecretBytes::from(&b"not the password"[..]);
    let err = ours.client.reset_cross_signing(&wrong).await.unwrap_err();
    assert_eq!(err.code(), "forbidden", "{err}");
    assert_eq!(
        master_seen_by(&peer, &ours.user_id).await,
        Some(before.clone())
    );

    let after = ours.client.reset_cross_signing(&password()).await.unwrap();
    let new_master = after.master.clone().unwrap();
    assert_ne!(new_master, before);
    assert!(after.device_signed);
    assert_eq!(master_seen_by(&peer, &ours.user_id).await, Some(new_master));
    let device = ours.client.session().unwrap().device_id;
    assert!(cross_signed_for(&peer, &ours.user_id, &device).await);
}
