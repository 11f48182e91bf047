//! The Matrix session against the real Synapse: login, whoami, restore after restart, logout,
//! rooms and members, and the homeserver's typed refusals.

use std::time::Duration;

use serde_json::json;
use tchap_secure_core::Error;
use tchap_secure_core::api::ApiError;
use tchap_secure_core::api::types::MEGOLM_ALGORITHM;
use tchap_secure_core::client::account::AccountLock;
use tchap_secure_tests::synapse::Synapse;

use crate::support::{InProcess, Member, PASSWORD, password, rt};

#[test]
fn login_whoami_restore_after_restart_and_logout_through_the_cli() {
    let alice = Member::new("alice");
    let login = alice.login().ok();
    assert_eq!(login.json()["user_id"], alice.user_id);
    let device = login.json()["device_id"].as_str().unwrap().to_owned();

    // A new process: no password, the session comes back from the encrypted store.
    let who = alice.run(&["whoami"]).ok();
    assert_eq!(who.json()["user_id"], alice.user_id);
    assert_eq!(who.json()["device_id"], device.as_str());

    // Logging in twice on one data directory is refused.
    let again = alice.login();
    assert_eq!(again.status, 1, "{again:?}");
    assert_eq!(again.error()["error"], "session_exists");

    alice.run(&["logout"]).ok();
    let after = alice.run(&["whoami"]);
    assert_eq!(after.error()["error"], "no_session");
}

#[test]
fn the_password_never_comes_from_the_command_line() {
    let bob = Member::new("bob");
    // No PIN anywhere: usage error, nothing created.
    let run = crate::support::cli(
        &[
            "--json",
            "--config",
            bob.config_path.to_str().unwrap(),
            "--data-dir",
            bob.data_dir().to_str().unwrap(),
            "--token-label",
            &bob.token_label,
            "whoami",
        ],
        &[("SOFTHSM2_CONF", bob.token.conf_path.to_str().unwrap())],
        None,
    );
    assert_eq!(run.status, 2, "{run:?}");
    // A password argument does not exist.
    let run = bob.run(&["login", "--user", &bob.localpart, "--password", PASSWORD]);
    assert_eq!(run.status, 2, "{run:?}");
}

#[test]
fn typed_errors_for_forbidden_expired_and_unknown_token_and_429_back_off() {
    let synapse = Synapse::shared();
    let rt = rt();

    // Wrong password: M_FORBIDDEN.
    let m = InProcess::new("forbidden");
    let user = synapse.unique_user("forbidden");
    synapse.register(&user, PASSWORD, false);
    let mut client = m.open().unwrap();
    let e = rt
        .block_on(client.login(
            &user,
            &tchap_secure_hsm::SecretBytes::from(&b"wrong"[..]),
            "t",
        ))
        .unwrap_err();
    assert!(matches!(e, Error::Api(ApiError::Forbidden { .. })), "{e:?}");
    assert!(client.session().is_none());

    // Logged in, then the server deletes the device: M_UNKNOWN_TOKEN, not a soft logout — a
    // revoked session, which locks the client (issue 19) and, by default, calls for the
    // crypto-shred of its data.
    let info = rt.block_on(client.login(&user, &password(), "t")).unwrap();
    synapse.delete_device(&info.user_id, &info.device_id);
    let e = rt.block_on(client.whoami()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::AccountLocked {
                lock: AccountLock::Revoked
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), "account_revoked");
    assert!(client.must_shred());

    // Tchap's expired account.
    let m = InProcess::new("expired");
    let user = synapse.unique_user("expired");
    let reg = synapse.register(&user, PASSWORD, false);
    let mut client = m.open().unwrap();
    rt.block_on(client.login(&user, &password(), "t")).unwrap();
    synapse.expire_account(&reg.user_id);
    let e = rt.block_on(client.whoami()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::AccountLocked {
                lock: AccountLock::Expired
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), "account_expired");
    assert!(!client.must_shred());

    // Rate limited to one request a second: the client backs off as the server asks
    // (`retry_after_ms`) and every request goes through. (A wait too long to sleep through is a
    // typed `LimitExceeded`: `bad_input::http_errors_and_rate_limits_are_typed`.)
    let m = InProcess::new("ratelimited");
    let user = synapse.unique_user("ratelimited");
    let reg = synapse.register(&user, PASSWORD, false);
    let mut client = m.open().unwrap();
    rt.block_on(client.login(&user, &password(), "t")).unwrap();
    synapse.override_ratelimit(&reg.user_id, 1, 1);
    let start = std::time::Instant::now();
    for _ in 0..4 {
        rt.block_on(client.create_room(None, &[], false)).unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_millis(2500),
        "4 rooms at 1/s took only {:?}: no back-off happened",
        start.elapsed()
    );
}

#[test]
fn encrypted_room_invite_join_members_and_leave() {
    let synapse = Synapse::shared();
    let rt = rt();
    let (a, b) = (InProcess::new("rooms-a"), InProcess::new("rooms-b"));
    let (ua, ub) = (
        synapse.unique_user("rooms-a"),
        synapse.unique_user("rooms-b"),
    );
    synapse.register(&ua, PASSWORD, false);
    let reg_b = synapse.register(&ub, PASSWORD, false);
    // Tchap display names carry the organisation.
    let (status, _) = synapse.request(
        "PUT",
        &format!("/_matrix/client/v3/profile/{}/displayname", reg_b.user_id),
        Some(&reg_b.access_token),
        Some(&json!({"displayname": "Jean Martin [Ministère des Armées]"})),
    );
    assert_eq!(status, 200);

    let mut alice = a.open().unwrap();
    let mut bob = b.open().unwrap();
    rt.block_on(alice.login(&ua, &password(), "phone")).unwrap();
    rt.block_on(bob.login(&ub, &password(), "phone")).unwrap();
    let room = rt
        .block_on(alice.create_room(Some("Cabinet"), std::slice::from_ref(&reg_b.user_id), false))
        .unwrap();

    // The server holds m.room.encryption as room state from creation.
    let (status, state) = synapse.request(
        "GET",
        &format!("/_matrix/client/v3/rooms/{room}/state/m.room.encryption/"),
        Some(&reg_b.access_token),
        None,
    );
    assert_eq!(status, 403, "not a member yet: {state}");

    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    let invited = bob
        .store()
        .room(&room)
        .unwrap()
        .expect("the invite reached bob");
    assert_eq!(invited.membership, "invite");
    assert_eq!(invited.encryption.as_deref(), Some(MEGOLM_ALGORITHM));

    rt.block_on(bob.join(&room)).unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    let r = alice.store().room(&room).unwrap().unwrap();
    assert_eq!(
        (r.membership.as_str(), r.name.as_deref()),
        ("join", Some("Cabinet"))
    );
    assert_eq!(r.encryption.as_deref(), Some(MEGOLM_ALGORITHM));
    assert_eq!(r.joined_members, 2);
    let members = alice.store().members(&room).unwrap();
    let bob_member = members.iter().find(|m| m.user_id == reg_b.user_id).unwrap();
    assert_eq!(
        bob_member.display_name.as_deref(),
        Some("Jean Martin [Ministère des Armées]")
    );
    assert_eq!(bob_member.membership, "join");

    let (status, state) = synapse.request(
        "GET",
        &format!("/_matrix/client/v3/rooms/{room}/state/m.room.encryption/"),
        Some(&reg_b.access_token),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(state["algorithm"], MEGOLM_ALGORITHM);

    rt.block_on(bob.leave(&room)).unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    assert!(
        bob.store()
            .rooms()
            .unwrap()
            .iter()
            .all(|r| r.room_id != room)
    );
    let members = alice.store().members(&room).unwrap();
    assert_eq!(
        members
            .iter()
            .find(|m| m.user_id == reg_b.user_id)
            .unwrap()
            .membership,
        "leave"
    );
    assert_eq!(
        alice.store().room(&room).unwrap().unwrap().joined_members,
        1
    );
}

#[test]
fn a_user_outside_the_allowed_domain_is_refused() {
    let m = InProcess::new("domain");
    let mut config = Synapse::shared().client_config();
    config["allowed_user_domain"] = json!("other.gouv.fr");
    let config = tchap_secure_core::Config::from_json(config.to_string().as_bytes()).unwrap();
    let mut client = tchap_secure_core::Client::open(config, &m.data_dir(), &m.vault).unwrap();
    let e = rt()
        .block_on(client.login("@someone:secure.tchap.test", &password(), "t"))
        .unwrap_err();
    assert!(matches!(e, Error::UserNotAllowed { .. }), "{e:?}");
}
