//! Our client against matrix-sdk 0.18, both ways, on the same Synapse: rooms created by either
//! side, two devices on our side, Megolm rotation by either side, and a member leaving.

use std::time::Duration;

use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use tchap_secure_core::Client;
use tchap_secure_core::crypto::CryptoError;
use tchap_secure_tests::harness::{InProcess, PASSWORD, access_token, password, raw_event};
use tchap_secure_tests::synapse::Synapse;

use crate::peer::Peer;
use crate::{ARRIVES, NEVER_ARRIVES, new_peer};

/// One of our devices, logged in.
pub(crate) struct Ours {
    pub(crate) _home: InProcess,
    pub(crate) client: Client,
    pub(crate) user_id: String,
}

pub(crate) async fn ours_as(localpart: &str, device: &str) -> Ours {
    let home = InProcess::new(device);
    let mut client = home.open().unwrap();
    let info = client.login(localpart, &password(), device).await.unwrap();
    Ours {
        _home: home,
        client,
        user_id: info.user_id,
    }
}

pub(crate) async fn new_ours(prefix: &str) -> Ours {
    let synapse = Synapse::shared();
    let localpart = synapse.unique_user(prefix);
    synapse.register(&localpart, PASSWORD, false);
    ours_as(&localpart, &format!("{prefix}-device")).await
}

impl Ours {
    pub(crate) async fn sync(&mut self) -> tchap_secure_core::SyncSummary {
        self.client
            .sync_once(Duration::from_millis(200))
            .await
            .unwrap()
    }

    /// Syncs until `body` arrives in `room`; returns the event (panics after `ARRIVES`).
    pub(crate) async fn wait_for(
        &mut self,
        room: &str,
        body: &str,
    ) -> tchap_secure_core::store::TimelineEvent {
        let deadline = tokio::time::Instant::now() + ARRIVES;
        while tokio::time::Instant::now() < deadline {
            let s = self.sync().await;
            if let Some(m) = s
                .messages
                .iter()
                .find(|m| m.room_id == room && m.body.as_deref() == Some(body))
            {
                return m.clone();
            }
            if let Some(m) = self
                .client
                .messages(room, 500)
                .unwrap()
                .into_iter()
                .find(|m| m.body.as_deref() == Some(body))
            {
                return m;
            }
        }
        panic!(
            "{body:?} never decrypted; timeline: {:#?}",
            self.client.messages(room, 50).unwrap()
        );
    }

    pub(crate) fn user(&self) -> OwnedUserId {
        UserId::parse(self.user_id.as_str()).unwrap()
    }
}

pub(crate) fn room_id(s: &str) -> OwnedRoomId {
    RoomId::parse(s).unwrap()
}

/// Our user and a peer in a room created by `ours_creates` ? us : the peer.
pub(crate) async fn room_between(ours: &mut Ours, peer: &Peer, ours_creates: bool) -> String {
    if ours_creates {
        let room = ours
            .client
            .create_room(Some("interop"), &[peer.user_id.to_string()], false)
            .await
            .unwrap();
        peer.sync_once().await;
        peer.join(&room_id(&room)).await;
        ours.sync().await;
        peer.sync_once().await;
        room
    } else {
        let room = peer.create_encrypted_room(&[ours.user()]).await;
        ours.sync().await;
        ours.client.join(room.as_str()).await.unwrap();
        ours.sync().await;
        peer.sync_once().await;
        room.to_string()
    }
}

async fn exchange(ours: &mut Ours, peer: &Peer, room: &str, tag: &str) {
    // Ours → matrix-sdk.
    let body = format!("{tag}: from tchap-secure");
    let sent = ours.client.send_text(room, &body).await.unwrap();
    let got = peer.wait_for_text(&room_id(room), &body, ARRIVES).await;
    let (sender, event_id) = got.unwrap_or_else(|| panic!("matrix-sdk never decrypted {body:?}"));
    assert_eq!(sender.as_str(), ours.user_id);
    assert_eq!(event_id.as_str(), sent);
    // matrix-sdk → ours.
    let body = format!("{tag}: from matrix-sdk");
    let sent = peer.send_text(&room_id(room), &body).await;
    let got = ours.wait_for(room, &body).await;
    assert_eq!(got.event_id, sent.as_str());
    assert_eq!(got.sender, peer.user_id.as_str());
    assert_eq!(got.trust.as_deref(), Some("tofu"));
}

#[tokio::test(flavor = "multi_thread")]
async fn both_ways_in_a_room_created_by_us() {
    let mut ours = new_ours("io-ours-a").await;
    let peer = new_peer("io-sdk-a").await;
    let room = room_between(&mut ours, &peer, true).await;
    exchange(&mut ours, &peer, &room, "room by us").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn both_ways_in_a_room_created_by_matrix_sdk() {
    let mut ours = new_ours("io-ours-b").await;
    let peer = new_peer("io-sdk-b").await;
    let room = room_between(&mut ours, &peer, false).await;
    exchange(&mut ours, &peer, &room, "room by sdk").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_devices_on_our_side() {
    let synapse = Synapse::shared();
    let localpart = synapse.unique_user("io-two");
    synapse.register(&localpart, PASSWORD, false);
    let mut phone = ours_as(&localpart, "io-two-phone").await;
    let mut tablet = ours_as(&localpart, "io-two-tablet").await;
    // Room keys go only to devices our identity signed: the phone verifies the tablet first.
    phone.sync().await;
    tablet.sync().await;
    crate::verification::verify_own_device(&mut phone, &mut tablet).await;
    let peer = new_peer("io-sdk-two").await;
    let room = room_between(&mut phone, &peer, true).await;
    tablet.sync().await;
    // The peer must know both our devices before it shares a key.
    peer.sync_once().await;
    let body = "to both of your devices";
    peer.send_text(&room_id(&room), body).await;
    phone.wait_for(&room, body).await;
    tablet.wait_for(&room, body).await;
    // From one of our devices: the peer and our other device decrypt.
    let body = "from the phone";
    phone.client.send_text(&room, body).await.unwrap();
    assert!(
        peer.wait_for_text(&room_id(&room), body, ARRIVES)
            .await
            .is_some()
    );
    let got = tablet.wait_for(&room, body).await;
    assert_eq!(
        got.trust.as_deref(),
        Some("verified"),
        "our phone is signed by our identity, which the tablet verified"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn across_a_megolm_rotation_by_either_side() {
    let mut ours = new_ours("io-rot").await;
    let peer = new_peer("io-sdk-rot").await;
    let room = room_between(&mut ours, &peer, true).await;
    exchange(&mut ours, &peer, &room, "before rotation").await;
    let rid = room_id(&room);

    // matrix-sdk rotates.
    let before = peer.send_text(&rid, "sdk session 1").await;
    ours.wait_for(&room, "sdk session 1").await;
    peer.rotate(&rid).await;
    let after = peer.send_text(&rid, "sdk session 2").await;
    let got = ours.wait_for(&room, "sdk session 2").await;
    assert_ne!(
        peer.megolm_session_of(&rid, &before).await,
        peer.megolm_session_of(&rid, &after).await
    );
    assert_eq!(
        got.session_id.unwrap(),
        peer.megolm_session_of(&rid, &after).await
    );

    // We rotate.
    let first = ours.client.outbound_session_id(&room).unwrap().unwrap();
    assert!(ours.client.rotate_room_key(&room).unwrap());
    let sent = ours.client.send_text(&room, "our session 2").await.unwrap();
    let second = ours.client.outbound_session_id(&room).unwrap().unwrap();
    assert_ne!(first, second);
    assert!(
        peer.wait_for_text(&rid, "our session 2", ARRIVES)
            .await
            .is_some()
    );
    let event = matrix_sdk::ruma::EventId::parse(sent.as_str()).unwrap();
    assert_eq!(peer.megolm_session_of(&rid, &event).await, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_member_leaves_the_leaver_cannot_decrypt() {
    // The matrix-sdk peer leaves: our next message uses a session it never gets.
    let mut ours = new_ours("io-leave").await;
    let peer = new_peer("io-sdk-leave").await;
    let room = room_between(&mut ours, &peer, true).await;
    exchange(&mut ours, &peer, &room, "before leave").await;
    let rid = room_id(&room);
    let before = ours.client.outbound_session_id(&room).unwrap().unwrap();
    peer.leave(&rid).await;
    ours.sync().await;
    let sent = ours
        .client
        .send_text(&room, "after the sdk left")
        .await
        .unwrap();
    assert_ne!(
        ours.client.outbound_session_id(&room).unwrap().unwrap(),
        before
    );
    assert!(
        peer.wait_for_text(&rid, "after the sdk left", NEVER_ARRIVES)
            .await
            .is_none()
    );
    // Even holding the ciphertext, it has no key for it — while it can still decrypt what was
    // sent before it left (so the check itself can succeed).
    let token = access_token(&ours.client);
    let raw_after = raw_event(&token, rid.as_str(), &sent);
    assert!(!peer.can_decrypt(&rid, &raw_after).await);
    let earlier = ours.client.messages(&room, 50).unwrap();
    let earlier = earlier
        .iter()
        .find(|m| m.body.as_deref() == Some("before leave: from tchap-secure"))
        .unwrap();
    let raw_before = raw_event(&token, rid.as_str(), &earlier.event_id);
    assert!(peer.can_decrypt(&rid, &raw_before).await);

    // We leave a room created by the peer: its next message is not readable by us.
    let mut ours2 = new_ours("io-leave2").await;
    let peer2 = new_peer("io-sdk-leave2").await;
    let room2 = room_between(&mut ours2, &peer2, false).await;
    exchange(&mut ours2, &peer2, &room2, "before we leave").await;
    ours2.client.leave(&room2).await.unwrap();
    ours2.sync().await;
    peer2.sync_once().await;
    let rid2 = room_id(&room2);
    let after = peer2.send_text(&rid2, "after tchap-secure left").await;
    let raw = peer_raw_event(&peer2, &rid2, after.as_str()).await;
    let e = ours2.client.try_decrypt(&room2, &raw).unwrap_err();
    assert!(
        matches!(
            e,
            tchap_secure_core::Error::Crypto(CryptoError::UnknownSession { .. })
        ),
        "{e:?}"
    );
}

/// The event as the server stores it, fetched by the peer.
async fn peer_raw_event(peer: &Peer, room: &RoomId, event_id: &str) -> serde_json::Value {
    raw_event(
        &peer.client.access_token().unwrap(),
        room.as_str(),
        event_id,
    )
}
