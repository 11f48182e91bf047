//! Interactive verification with matrix-sdk 0.18 as the independent peer (issue 16 item 2):
//! SAS both ways, to-device and in a room. Both sides must show the same emoji and numbers,
//! both must end in done, and each must then trust the other: matrix-sdk reports our user as
//! verified (our identity signed by its user-signing key), we report theirs (pinned, verified:
//! signed by ours, uploaded).

use std::time::Duration;

use matrix_sdk::encryption::verification::{SasVerification, VerificationRequest};
use matrix_sdk::ruma::{DeviceId, UserId};
use tchap_secure_core::IdentityState;
use tchap_secure_core::client::verification::VerificationInfo;
use tokio::time::Instant;

use crate::new_peer;
use crate::ours::{Ours, new_ours, room_between};
use crate::peer::Peer;

const FLOW: Duration = Duration::from_secs(60);

/// A matrix-sdk peer with its cross-signing identity set up (as Element does at first login),
/// knowing `ours`'s devices (matrix-sdk ignores a request from a device it does not know).
async fn cross_signed_peer(prefix: &str, ours: &Ours) -> Peer {
    let peer = new_peer(prefix).await;
    peer.client
        .encryption()
        .bootstrap_cross_signing(None)
        .await
        .unwrap();
    peer.client
        .encryption()
        .request_user_identity(&UserId::parse(&ours.user_id).unwrap())
        .await
        .unwrap();
    peer
}

/// Steps both sides (one sync each) until `done` holds; panics after `FLOW`.
async fn until<T>(
    ours: &mut Ours,
    peer: &Peer,
    what: &str,
    mut done: impl AsyncFnMut(&mut Ours, &Peer) -> Option<T>,
) -> T {
    let deadline = Instant::now() + FLOW;
    loop {
        if let Some(v) = done(ours, peer).await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; our flows: {:#?}",
            ours.client.verifications()
        );
        ours.sync().await;
        peer.sync_once().await;
    }
}

fn flow_of(ours: &Ours, flow_id: &str) -> VerificationInfo {
    ours.client.verification(flow_id).unwrap()
}

async fn sdk_request(peer: &Peer, user: &str, flow_id: &str) -> Option<VerificationRequest> {
    peer.client
        .encryption()
        .get_verification_request(&UserId::parse(user).unwrap(), flow_id)
        .await
}

async fn sdk_sas(peer: &Peer, user: &str, flow_id: &str) -> Option<SasVerification> {
    peer.client
        .encryption()
        .get_verification(&UserId::parse(user).unwrap(), flow_id)
        .await
        .and_then(|v| v.sas())
}

/// From both sides having a SAS with keys exchanged to both done: compares the emoji and the
/// numbers, confirms on both sides, and checks the trust each side ends with.
async fn compare_confirm_and_check(ours: &mut Ours, peer: &Peer, flow_id: &str) {
    let user = ours.user_id.clone();
    let ours_emoji = until(ours, peer, "our emoji", async |o, _| {
        flow_of(o, flow_id).emoji
    })
    .await;
    let sas = until(ours, peer, "matrix-sdk's emoji", async |_, p| {
        sdk_sas(p, &user, flow_id)
            .await
            .filter(|s| s.emoji().is_some())
    })
    .await;
    let theirs: Vec<(String, String)> = sas
        .emoji()
        .unwrap()
        .iter()
        .map(|e| (e.symbol.to_owned(), e.description.to_owned()))
        .collect();
    let mine: Vec<(String, String)> = ours_emoji
        .iter()
        .map(|e| (e.symbol.clone(), e.description.clone()))
        .collect();
    assert_eq!(mine, theirs, "both sides show the same emoji");
    let (a, b, c) = sas.decimals().unwrap();
    assert_eq!(flow_of(ours, flow_id).decimals, Some([a, b, c]));

    ours.client.confirm_sas(flow_id).await.unwrap();
    sas.confirm().await.unwrap();
    // (matrix-sdk drops a finished flow from its cache: its own handle is what we watch.)
    until(ours, peer, "both done", async |o, _| {
        let ours_done = flow_of(o, flow_id).state == "done";
        (ours_done && sas.is_done()).then_some(())
    })
    .await;
    let info = flow_of(ours, flow_id);
    assert!(
        info.verified.iter().any(|v| v.starts_with("master ")),
        "{info:?}"
    );

    // We trust them: their identity is verified here, and our signature is on the server.
    let peer_user = peer.user_id.to_string();
    let identity = ours.client.identity(&peer_user).unwrap().unwrap();
    assert_eq!(identity.state, IdentityState::Verified);
    // matrix-sdk trusts us: our identity is verified for it.
    let verified = until(ours, peer, "matrix-sdk to see us verified", async |_, p| {
        let identity = p
            .client
            .encryption()
            .request_user_identity(&UserId::parse(&user).unwrap())
            .await
            .unwrap()?;
        identity.is_verified().then_some(true)
    })
    .await;
    assert!(verified);
    // And a new client of ours that only reads the server draws the same conclusion: the
    // signature was uploaded.
    let devices = ours.client.devices(&peer_user).await.unwrap();
    assert!(devices.iter().all(|d| d.cross_signed));
    assert_eq!(
        ours.client.device_trust(&devices[0]).unwrap(),
        "verified",
        "{devices:?}"
    );
}

/// We ask `peer` to verify (in `room`, or to-device), matrix-sdk accepts, we start SAS and
/// matrix-sdk accepts it: returns the flow id and matrix-sdk's SAS handle.
async fn we_request_and_start(
    ours: &mut Ours,
    peer: &Peer,
    room: Option<&str>,
) -> (String, SasVerification) {
    let user = ours.user_id.clone();
    let flow_id = ours
        .client
        .request_verification(peer.user_id.as_str(), room)
        .await
        .unwrap();
    let request = until(ours, peer, "matrix-sdk to see our request", async |_, p| {
        sdk_request(p, &user, &flow_id).await
    })
    .await;
    assert_eq!(request.room_id().map(|r| r.as_str()), room);
    request.accept().await.unwrap();
    until(ours, peer, "ready", async |o, _| {
        (flow_of(o, &flow_id).state == "ready").then_some(())
    })
    .await;
    ours.client.start_sas(&flow_id).await.unwrap();
    let sas = until(ours, peer, "matrix-sdk's SAS", async |_, p| {
        sdk_sas(p, &user, &flow_id).await
    })
    .await;
    sas.accept().await.unwrap();
    (flow_id, sas)
}

#[tokio::test(flavor = "multi_thread")]
async fn sas_to_device_we_request_and_start() {
    let mut ours = new_ours("vf-td-ours").await;
    let peer = cross_signed_peer("vf-td-peer", &ours).await;
    let (flow_id, _) = we_request_and_start(&mut ours, &peer, None).await;
    compare_confirm_and_check(&mut ours, &peer, &flow_id).await;
}

/// matrix-sdk asked (`request`, in `room` or to-device): our side sees the request as
/// received from the peer, accepts it, matrix-sdk starts SAS once we are ready, and both
/// compare, confirm and end trusting each other.
async fn we_accept_and_matrix_sdk_starts(
    ours: &mut Ours,
    peer: &Peer,
    request: &VerificationRequest,
    room: Option<&str>,
) {
    let flow_id = request.flow_id().to_owned();
    until(ours, peer, "our side to see the request", async |o, _| {
        o.client.verification(&flow_id).map(|_| ())
    })
    .await;
    let info = flow_of(ours, &flow_id);
    assert_eq!(info.state, "received");
    assert_eq!(info.user_id, peer.user_id.as_str());
    assert_eq!(info.room_id.as_deref(), room);
    assert!(!info.we_requested);
    ours.client.accept_verification(&flow_id).await.unwrap();
    until(ours, peer, "matrix-sdk to see our ready", async |_, _| {
        request.is_ready().then_some(())
    })
    .await;
    request.start_sas().await.unwrap().expect("a SAS");
    compare_confirm_and_check(ours, peer, &flow_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sas_to_device_matrix_sdk_requests_and_starts() {
    let mut ours = new_ours("vf-td2-ours").await;
    let peer = cross_signed_peer("vf-td2-peer", &ours).await;
    let our_device = ours.client.session().unwrap().device_id;
    // matrix-sdk must know our device before it can ask it.
    peer.client
        .encryption()
        .request_user_identity(&UserId::parse(&ours.user_id).unwrap())
        .await
        .unwrap();
    let device: &DeviceId = our_device.as_str().into();
    let request = peer
        .client
        .encryption()
        .get_device(&UserId::parse(&ours.user_id).unwrap(), device)
        .await
        .unwrap()
        .expect("matrix-sdk knows our device")
        .request_verification()
        .await
        .unwrap();
    we_accept_and_matrix_sdk_starts(&mut ours, &peer, &request, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sas_in_a_room_we_request_and_start() {
    let mut ours = new_ours("vf-room-ours").await;
    let peer = cross_signed_peer("vf-room-peer", &ours).await;
    let room = room_between(&mut ours, &peer, true).await;
    let (flow_id, _) = we_request_and_start(&mut ours, &peer, Some(&room)).await;
    assert!(
        flow_id.starts_with('$'),
        "an in-room flow is named by its request event"
    );
    compare_confirm_and_check(&mut ours, &peer, &flow_id).await;
}

/// matrix-sdk asks to verify our user the way Element does from a contact's profile: an
/// in-room request in its direct room with us (`UserIdentity::request_verification`), then it
/// starts SAS once we are ready.
#[tokio::test(flavor = "multi_thread")]
async fn sas_in_a_room_matrix_sdk_requests_and_starts() {
    let mut ours = new_ours("vf-room2-ours").await;
    let peer = cross_signed_peer("vf-room2-peer", &ours).await;
    let room = room_between(&mut ours, &peer, false).await;
    // The room is matrix-sdk's direct chat with us: its request goes there (else it would
    // create another room).
    let sdk_room = peer
        .client
        .get_room(&crate::ours::room_id(&room))
        .expect("matrix-sdk is in the room");
    sdk_room.set_is_direct(true).await.unwrap();
    let our_user = UserId::parse(&ours.user_id).unwrap();
    let dm = until(
        &mut ours,
        &peer,
        "matrix-sdk to see its DM",
        async |_, p| p.client.get_dm_room(&our_user),
    )
    .await;
    assert_eq!(dm.room_id().as_str(), room);
    let identity = peer
        .client
        .encryption()
        .request_user_identity(&our_user)
        .await
        .unwrap()
        .expect("matrix-sdk knows our identity");
    let request = identity.request_verification().await.unwrap();
    assert_eq!(request.room_id().map(|r| r.as_str()), Some(room.as_str()));
    assert!(
        request.flow_id().starts_with('$'),
        "the request event names the flow"
    );
    we_accept_and_matrix_sdk_starts(&mut ours, &peer, &request, Some(&room)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sas_mismatch_cancels_on_both_sides_and_is_journaled() {
    let mut ours = new_ours("vf-mis-ours").await;
    let peer = cross_signed_peer("vf-mis-peer", &ours).await;
    let (flow_id, sas) = we_request_and_start(&mut ours, &peer, None).await;
    until(&mut ours, &peer, "our emoji", async |o, _| {
        flow_of(o, &flow_id).emoji.map(|_| ())
    })
    .await;
    // Our member says the emoji differ.
    let info = ours.client.sas_mismatch(&flow_id).await.unwrap();
    assert_eq!(info.state, "cancelled");
    assert_eq!(info.cancel_code.as_deref(), Some("m.mismatched_sas"));
    until(
        &mut ours,
        &peer,
        "matrix-sdk to see the cancel",
        async |_, _| sas.is_cancelled().then_some(()),
    )
    .await;
    assert_eq!(
        sas.cancel_info()
            .map(|c| c.cancel_code().as_str().to_owned()),
        Some("m.mismatched_sas".to_owned())
    );
    let events = ours.client.store().security_events().unwrap();
    assert!(
        events.iter().any(|e| e.kind == "verification_mismatch"),
        "{events:#?}"
    );
    // Nothing was trusted.
    let identity = ours
        .client
        .identity(peer.user_id.as_str())
        .unwrap()
        .unwrap();
    assert_eq!(identity.state, IdentityState::Pinned);
}

/// Verifies `b` from `a`, two devices of our own user, by SAS over to-device messages (as a
/// member does with a new phone): `a` requests and starts, both compare and confirm. Returns
/// the flow id.
pub(crate) async fn verify_own_device(a: &mut Ours, b: &mut Ours) -> String {
    let deadline = Instant::now() + FLOW;
    let own = a.user_id.clone();
    let flow_id = a.client.request_verification(&own, None).await.unwrap();
    let step = async |a: &mut Ours, b: &mut Ours, what: &str| {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        b.sync().await;
        a.sync().await;
    };
    while b.client.verification(&flow_id).is_none() {
        step(a, b, "the request on the other device").await;
    }
    b.client.accept_verification(&flow_id).await.unwrap();
    while flow_of(a, &flow_id).state != "ready" {
        step(a, b, "ready").await;
    }
    a.client.start_sas(&flow_id).await.unwrap();
    while flow_of(a, &flow_id).emoji.is_none() || flow_of(b, &flow_id).emoji.is_none() {
        step(a, b, "the emoji on both devices").await;
    }
    assert_eq!(flow_of(a, &flow_id).emoji, flow_of(b, &flow_id).emoji);
    assert_eq!(flow_of(a, &flow_id).decimals, flow_of(b, &flow_id).decimals);
    a.client.confirm_sas(&flow_id).await.unwrap();
    b.client.confirm_sas(&flow_id).await.unwrap();
    while flow_of(a, &flow_id).state != "done" || flow_of(b, &flow_id).state != "done" {
        step(a, b, "done on both devices").await;
    }
    flow_id
}

/// The scenario of the issue: our second device is verified by the first (SAS, to-device);
/// then a matrix-sdk member verifies us once, from the first device, and trusts both devices
/// without another verification (the second is signed by our identity, which it verified).
#[tokio::test(flavor = "multi_thread")]
async fn a_second_device_verified_by_the_first_is_trusted_by_whoever_verified_us() {
    let synapse = tchap_secure_tests::synapse::Synapse::shared();
    let localpart = synapse.unique_user("vf-two");
    synapse.register(&localpart, tchap_secure_tests::harness::PASSWORD, false);
    let mut phone = crate::ours::ours_as(&localpart, "vf-two-phone").await;
    let mut tablet = crate::ours::ours_as(&localpart, "vf-two-tablet").await;
    let tablet_device = tablet.client.session().unwrap().device_id;
    phone.sync().await;
    tablet.sync().await;
    let before = tablet.client.cross_signing_status().unwrap();
    assert_eq!(before.identity, Some(IdentityState::Pinned));

    let flow_id = verify_own_device(&mut phone, &mut tablet).await;
    // The phone verified the tablet's device key and signed it; the tablet verified our
    // identity's master key.
    let phone_view = flow_of(&phone, &flow_id);
    assert!(
        phone_view
            .verified
            .iter()
            .any(|v| v.contains(&tablet_device)),
        "{phone_view:?}"
    );
    assert_eq!(
        tablet.client.cross_signing_status().unwrap().identity,
        Some(IdentityState::Verified)
    );
    let own = phone.user_id.clone();
    let devices = phone.client.devices(&own).await.unwrap();
    let tablet_record = devices
        .iter()
        .find(|d| d.device_id == tablet_device)
        .unwrap();
    assert!(
        tablet_record.cross_signed,
        "the phone's signature is on the server"
    );
    assert_eq!(
        phone.client.device_trust(tablet_record).unwrap(),
        "verified"
    );

    // A member who verifies us once (from the phone) trusts both devices.
    let peer = cross_signed_peer("vf-two-peer", &phone).await;
    let user = phone.user_id.clone();
    let (flow, _) = we_request_and_start(&mut phone, &peer, None).await;
    compare_confirm_and_check(&mut phone, &peer, &flow).await;
    let our_user = UserId::parse(&user).unwrap();
    for device in [phone.client.session().unwrap().device_id, tablet_device] {
        let d: &DeviceId = device.as_str().into();
        let trusted = until(
            &mut phone,
            &peer,
            "matrix-sdk to trust our device",
            async |_, p| {
                p.client
                    .encryption()
                    .get_device(&our_user, d)
                    .await
                    .unwrap()
                    .filter(|d| d.is_verified())
                    .map(|_| ())
            },
        )
        .await;
        let () = trusted;
    }
}

/// We ask `peer` to verify (to-device); matrix-sdk accepts with every method, QR included.
async fn request_accepted_with_every_method(
    ours: &mut Ours,
    peer: &Peer,
) -> (String, VerificationRequest) {
    use matrix_sdk::ruma::events::key::verification::VerificationMethod;
    let user = ours.user_id.clone();
    let flow_id = ours
        .client
        .request_verification(peer.user_id.as_str(), None)
        .await
        .unwrap();
    let request = until(ours, peer, "matrix-sdk to see our request", async |_, p| {
        sdk_request(p, &user, &flow_id).await
    })
    .await;
    request
        .accept_with_methods(vec![
            VerificationMethod::SasV1,
            VerificationMethod::QrCodeShowV1,
            VerificationMethod::QrCodeScanV1,
            VerificationMethod::ReciprocateV1,
        ])
        .await
        .unwrap();
    until(ours, peer, "ready", async |o, _| {
        (flow_of(o, &flow_id).state == "ready").then_some(())
    })
    .await;
    (flow_id, request)
}

/// Both sides trust each other once the QR flow is done.
async fn check_mutual_trust(ours: &mut Ours, peer: &Peer) {
    let user = ours.user_id.clone();
    let identity = ours
        .client
        .identity(peer.user_id.as_str())
        .unwrap()
        .unwrap();
    assert_eq!(identity.state, IdentityState::Verified);
    until(ours, peer, "matrix-sdk to see us verified", async |_, p| {
        p.client
            .encryption()
            .request_user_identity(&UserId::parse(&user).unwrap())
            .await
            .unwrap()
            .filter(|i| i.is_verified())
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn qr_matrix_sdk_shows_and_we_scan() {
    let mut ours = new_ours("vf-qr1-ours").await;
    let peer = cross_signed_peer("vf-qr1-peer", &ours).await;
    let (flow_id, request) = request_accepted_with_every_method(&mut ours, &peer).await;
    let qr = request
        .generate_qr_code()
        .await
        .unwrap()
        .expect("matrix-sdk shows a QR code");
    let payload = qr.to_bytes().unwrap();
    // The code names our flow, in the other-user mode.
    assert_eq!(&payload[..6], b"MATRIX");
    assert_eq!(payload[7], 0x00);
    ours.client.scan_qr(&flow_id, &payload).await.unwrap();
    until(
        &mut ours,
        &peer,
        "matrix-sdk to see its code scanned",
        async |_, _| qr.has_been_scanned().then_some(()),
    )
    .await;
    qr.confirm().await.unwrap();
    until(&mut ours, &peer, "both done", async |o, _| {
        (flow_of(o, &flow_id).state == "done" && qr.is_done()).then_some(())
    })
    .await;
    check_mutual_trust(&mut ours, &peer).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn qr_we_show_and_matrix_sdk_scans() {
    use matrix_sdk::encryption::verification::QrVerificationData;
    let mut ours = new_ours("vf-qr2-ours").await;
    let peer = cross_signed_peer("vf-qr2-peer", &ours).await;
    let (flow_id, request) = request_accepted_with_every_method(&mut ours, &peer).await;
    let payload = ours.client.show_qr(&flow_id).await.unwrap();
    let data = QrVerificationData::from_bytes(&payload).expect("matrix-sdk reads our QR code");
    let qr = request
        .scan_qr_code(data)
        .await
        .unwrap()
        .expect("matrix-sdk accepts our QR code");
    until(
        &mut ours,
        &peer,
        "matrix-sdk's scan on our side",
        async |o, _| (flow_of(o, &flow_id).state == "qr_scanned").then_some(()),
    )
    .await;
    ours.client.confirm_qr_scanned(&flow_id).await.unwrap();
    until(&mut ours, &peer, "both done", async |o, _| {
        (flow_of(o, &flow_id).state == "done" && qr.is_done()).then_some(())
    })
    .await;
    check_mutual_trust(&mut ours, &peer).await;
}
