//! Tchap identity (issue 19) on the real Synapse and the real Sydent identity server
//! (`tchap_secure_tests::sydent`): signing in with the work e-mail, the directory, the hashed
//! e-mail lookup and an invitation by e-mail; an expired account that locks and resumes without
//! loss; a deactivated account whose data directory is shredded (or locked, per managed
//! configuration); logging another device out; a direct chat reused; hostile display names.

use std::time::Duration;

use serde_json::{Value, json};
use tchap_secure_core::client::account::AccountLock;
use tchap_secure_core::display_name::NameIssue;
use tchap_secure_core::{Client, Config};
use tchap_secure_tests::harness::access_token;
use tchap_secure_tests::sydent::Sydent;
use tchap_secure_tests::synapse::Synapse;

use crate::messaging::{Pair, pair, receive};
use crate::support::{InProcess, Member, PASSWORD, password, rt};

/// The testbed's client configuration with the identity server and `extra` keys.
fn identity_config(extra: Value) -> Value {
    let sydent = Sydent::shared();
    let mut config = Synapse::shared().client_config();
    config["identity_server_url"] = json!(format!("{}/", sydent.base_url));
    if let (Value::Object(config), Value::Object(extra)) = (&mut config, extra) {
        config.extend(extra);
    }
    config
}

fn config_of(value: &Value) -> Config {
    Config::from_json(value.to_string().as_bytes()).unwrap()
}

/// A work e-mail address no other test uses, for `localpart`.
fn email_of(localpart: &str) -> String {
    format!("{localpart}@interieur.gouv.fr")
}

#[test]
fn an_email_logs_in_finds_colleagues_and_invites_by_their_address() {
    let synapse = Synapse::shared();
    let sydent = Sydent::shared();
    let alice = Member::on(synapse, &identity_config(json!({})), "id-mail-a");
    let alice_mail = email_of(&alice.localpart);
    synapse.add_email_threepid(&alice.user_id, &alice_mail);
    // Bob: a colleague with Tchap's display name, his address bound at the identity server.
    let bob_local = synapse.unique_user("id-mail-b");
    let bob = synapse.register(&bob_local, PASSWORD, false);
    let bob_name = format!("Bob {bob_local} [Ministère de l'Intérieur]");
    synapse.set_display_name(&bob.access_token, &bob.user_id, &bob_name);
    let bob_mail = email_of(&bob_local);
    synapse.add_email_threepid(&bob.user_id, &bob_mail);
    sydent.bind_email(&bob_mail, &bob.user_id);

    // Login by the work e-mail (any case, surrounding spaces): the account's user id.
    let login = alice.run_with_env(
        &[("TCHAP_SECURE_PASSWORD", PASSWORD)],
        &[
            "login",
            "--email",
            &format!("  {}  ", alice_mail.to_uppercase()),
        ],
    );
    assert_eq!(login.json()["user_id"], alice.user_id, "{login:?}");
    // A wrong password by e-mail is the server's refusal, typed.
    let other = Member::on(synapse, &identity_config(json!({})), "id-mail-c");
    let refused = other.run_with_env(
        &[("TCHAP_SECURE_PASSWORD", "not the password")],
        &["login", "--email", &alice_mail],
    );
    assert_eq!(refused.error()["error"], "forbidden", "{refused:?}");

    // The directory finds Bob by a fragment of his name, his organisation parsed.
    let found = alice.run(&["directory", &bob_local, "--limit", "5"]).json();
    let users = found["users"].as_array().unwrap();
    let entry = users
        .iter()
        .find(|u| u["user_id"] == bob.user_id)
        .unwrap_or_else(|| panic!("{found}"));
    assert_eq!(entry["name"]["name"], format!("Bob {bob_local}"));
    assert_eq!(entry["name"]["organisation"], "Ministère de l'Intérieur");

    // The hashed lookup: Bob's address → Bob; an unknown one → nobody.
    let hit = alice.run(&["lookup", &bob_mail.to_uppercase()]).json();
    assert_eq!(hit["user_id"], bob.user_id, "{hit}");
    let unknown = format!("nobody-{bob_local}@interieur.gouv.fr");
    let miss = alice.run(&["lookup", &unknown]).json();
    assert_eq!(miss["user_id"], Value::Null, "{miss}");

    // Invitation by e-mail: Bob is invited; an unknown address sends nothing.
    let room = alice.run(&["create-room", "--name", "Cabinet"]).json()["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invited = alice.run(&["invite", &room, "--email", &bob_mail]).json();
    assert_eq!(invited["invited"], bob.user_id);
    let refused = alice.run(&["invite", &room, "--email", &unknown]);
    assert_eq!(refused.error()["error"], "unknown_address", "{refused:?}");
    let members = alice.run(&["members", &room]).json();
    let memberships: Vec<(String, String)> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap().to_owned(),
                m["membership"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        memberships,
        {
            let mut v = vec![
                (alice.user_id.clone(), "join".to_owned()),
                (bob.user_id.clone(), "invite".to_owned()),
            ];
            v.sort();
            v
        },
        "no third-party invite, only Bob's"
    );
}

#[test]
fn without_an_identity_server_a_lookup_is_a_typed_refusal() {
    let alice = Member::new("id-none");
    alice.login().ok();
    let run = alice.run(&["lookup", "someone@interieur.gouv.fr"]);
    assert_eq!(
        run.error()["error"],
        "identity_server_not_configured",
        "{run:?}"
    );
}

#[test]
fn an_expired_account_locks_and_resumes_without_losing_anything_once_renewed() {
    let rt = rt();
    let synapse = Synapse::shared();
    let Pair {
        a,
        b: _b,
        mut alice,
        mut bob,
        room,
    } = pair(&rt, "id-expiry");
    let alice_id = alice.session().unwrap().user_id;
    rt.block_on(bob.send_text(&room, "avant l'expiration"))
        .unwrap();
    receive(&rt, &mut alice, &room, "avant l'expiration");

    synapse.expire_account(&alice_id);
    rt.block_on(bob.send_text(&room, "pendant l'expiration"))
        .unwrap();
    let err = rt.block_on(alice.sync_once(Duration::ZERO)).unwrap_err();
    assert_eq!(err.code(), "account_expired");
    assert_eq!(alice.account_lock(), Some(AccountLock::Expired));
    assert!(!alice.must_shred());
    // Locked: nothing synced, sent or shown; the text is not queued either.
    let send = rt.block_on(alice.send_text(&room, "refusé")).unwrap_err();
    assert_eq!(send.code(), "account_expired");
    assert_eq!(
        alice.messages(&room, 10).unwrap_err().code(),
        "account_expired"
    );
    assert_eq!(
        rt.block_on(alice.sync_once(Duration::ZERO))
            .unwrap_err()
            .code(),
        "account_expired"
    );
    // The renewal e-mail is asked of the server, which takes the request from an expired
    // account and mails the link to the account's address (the run's mail sink).
    let alice_mail = format!(
        "{}@interieur.gouv.fr",
        &alice_id[1..alice_id.find(':').unwrap()]
    );
    synapse.add_email_threepid(&alice_id, &alice_mail);
    rt.block_on(alice.request_renewal()).unwrap();
    let mail = synapse
        .mail
        .wait_for(
            &alice_mail,
            "account_validity/renew?token=",
            Duration::from_secs(30),
        )
        .unwrap_or_else(|| panic!("no renewal e-mail: {:#?}", synapse.mail.mails()));
    let text = mail.text();
    let start = text
        .find("/_matrix/client/unstable/account_validity/renew?token=")
        .unwrap();
    let link: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "/_?=-.&%".contains(*c))
        .collect();
    assert_eq!(alice.account_lock(), Some(AccountLock::Expired));
    // Still expired: no resumption. A restart keeps the lock.
    assert!(!rt.block_on(alice.resume()).unwrap());
    drop(alice);
    let mut alice = a.open().unwrap();
    assert_eq!(alice.account_lock(), Some(AccountLock::Expired));
    assert_eq!(
        alice.messages(&room, 10).unwrap_err().code(),
        "account_expired"
    );

    // The member opens the link from the e-mail: the account is renewed; the client resumes,
    // and what came meanwhile arrives; nothing was lost.
    let (status, _) = synapse.request("GET", &link, None, None);
    assert_eq!(status, 200, "{link}");
    assert!(rt.block_on(alice.resume()).unwrap());
    assert_eq!(alice.account_lock(), None);
    receive(&rt, &mut alice, &room, "pendant l'expiration");
    let bodies: Vec<String> = alice
        .messages(&room, 20)
        .unwrap()
        .into_iter()
        .filter_map(|m| m.body)
        .collect();
    assert!(
        bodies.contains(&"avant l'expiration".to_owned())
            && bodies.contains(&"pendant l'expiration".to_owned()),
        "{bodies:?}"
    );
    rt.block_on(alice.send_text(&room, "de retour")).unwrap();
    receive(&rt, &mut bob, &room, "de retour");
}

#[test]
fn a_deactivated_account_leaves_an_unrecoverable_data_directory() {
    use tchap_secure_core::store::DATABASE_FILE;
    use tchap_secure_hsm::VAULT_FILE;
    let synapse = Synapse::shared();
    let alice = Member::new("id-deactivated");
    alice.login().ok();
    alice.run(&["sync", "--timeout-ms", "0"]).ok();
    let saved = tempfile::tempdir().unwrap();
    for name in [VAULT_FILE, DATABASE_FILE] {
        std::fs::copy(alice.data_dir().join(name), saved.path().join(name)).unwrap();
    }
    synapse.deactivate(&alice.user_id);
    let run = alice.run(&["sync", "--timeout-ms", "0"]);
    assert_eq!(run.error()["error"], "account_revoked", "{run:?}");
    assert!(
        crate::support::files_under(&alice.data_dir()).is_empty(),
        "the data directory is shredded"
    );
    // The old files put back do not open: the KEK is gone from the token.
    for name in [VAULT_FILE, DATABASE_FILE] {
        std::fs::copy(saved.path().join(name), alice.data_dir().join(name)).unwrap();
    }
    let run = alice.run(&["whoami"]);
    assert_eq!(run.error()["error"], "kek_not_found", "{run:?}");
}

#[test]
fn a_revoked_token_under_the_lock_policy_locks_and_keeps_the_data_encrypted() {
    let rt = rt();
    let synapse = Synapse::shared();
    let config = config_of(&identity_config(json!({"on_account_revoked": "lock"})));
    let a = InProcess::new("id-revoked-lock");
    let localpart = synapse.unique_user("id-revoked-lock");
    let user_id = synapse.register(&localpart, PASSWORD, false).user_id;
    let mut alice = a.open_with(config.clone()).unwrap();
    rt.block_on(alice.login(&localpart, &password(), "alice-phone"))
        .unwrap();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    // The token revoked from elsewhere (an administrator removed the device).
    let device = alice.session().unwrap().device_id;
    synapse.delete_device(&user_id, &device);
    let err = rt.block_on(alice.sync_once(Duration::ZERO)).unwrap_err();
    assert_eq!(err.code(), "account_revoked");
    assert!(!alice.must_shred(), "the policy says lock");
    drop(alice);
    // The lock survives a restart; the files stay (encrypted), nothing is shown or sent.
    let mut alice = a.open_with(config).unwrap();
    assert_eq!(alice.account_lock(), Some(AccountLock::Revoked));
    assert!(a.data_dir().join(tchap_secure_hsm::VAULT_FILE).exists());
    let rooms_err = alice.members("!any:secure.tchap.test").unwrap_err();
    assert_eq!(rooms_err.code(), "account_revoked");
    // A revoked account never resumes; logging out works, but the directory is never logged
    // into again (only a wipe ends the lock).
    assert!(!rt.block_on(alice.resume()).unwrap());
    rt.block_on(alice.logout()).unwrap();
    assert_eq!(alice.account_lock(), Some(AccountLock::Revoked));
    let again = rt
        .block_on(alice.login(&localpart, &password(), "alice-phone-2"))
        .unwrap_err();
    assert_eq!(again.code(), "account_revoked");
}

#[test]
fn logging_out_another_device_removes_it_on_the_server() {
    let synapse = Synapse::shared();
    let alice = Member::new("id-devices");
    alice.login().ok();
    // Another device of Alice's (a laptop).
    let laptop = synapse.login(&alice.localpart, PASSWORD);
    let listed = alice.run(&["own-devices"]).json();
    let ids: Vec<&str> = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&laptop.device_id.as_str()), "{listed}");
    let current: Vec<&Value> = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["current"] == true)
        .collect();
    assert_eq!(current.len(), 1, "{listed}");
    let ours = current[0]["device_id"].as_str().unwrap().to_owned();
    // Without the password: refused, nothing removed.
    let refused = alice.run_with_env(
        &[("TCHAP_SECURE_PASSWORD", "wrong password")],
        &["own-devices", "--log-out", &laptop.device_id],
    );
    assert_eq!(refused.error()["error"], "forbidden", "{refused:?}");
    assert!(
        synapse
            .devices_of(&alice.user_id)
            .contains(&laptop.device_id)
    );
    // This device cannot be logged out this way.
    let own = alice.run_with_env(
        &[("TCHAP_SECURE_PASSWORD", PASSWORD)],
        &["own-devices", "--log-out", &ours],
    );
    assert_eq!(own.error()["error"], "invalid_argument", "{own:?}");
    // With it: the laptop is gone on the server, its token dead.
    let done = alice
        .run_with_env(
            &[("TCHAP_SECURE_PASSWORD", PASSWORD)],
            &["own-devices", "--log-out", &laptop.device_id],
        )
        .json();
    let mut left: Vec<&str> = done["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    // Every device but the laptop stays (the registration's own one too).
    let mut expected: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| *id != laptop.device_id)
        .collect();
    left.sort_unstable();
    expected.sort_unstable();
    assert_eq!(left, expected, "{done}");
    assert!(left.contains(&ours.as_str()));
    let mut on_server = synapse.devices_of(&alice.user_id);
    on_server.sort_unstable();
    assert_eq!(on_server, expected);
    let (status, _) = synapse.request(
        "GET",
        "/_matrix/client/v3/account/whoami",
        Some(&laptop.access_token),
        None,
    );
    assert_eq!(status, 401);
}

#[test]
fn a_direct_chat_with_someone_is_reused_from_every_device() {
    let rt = rt();
    let synapse = Synapse::shared();
    let (a, b) = (InProcess::new("id-direct"), InProcess::new("id-direct"));
    let (la, lb) = (
        synapse.unique_user("id-direct-a"),
        synapse.unique_user("id-direct-b"),
    );
    synapse.register(&la, PASSWORD, false);
    let bob_id = synapse.register(&lb, PASSWORD, false).user_id;
    let mut alice = a.open().unwrap();
    let mut bob = b.open().unwrap();
    rt.block_on(alice.login(&la, &password(), "alice-phone"))
        .unwrap();
    rt.block_on(bob.login(&lb, &password(), "bob-phone"))
        .unwrap();
    let (room, created) = rt.block_on(alice.open_direct_room(&bob_id)).unwrap();
    assert!(created);
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(bob.join(&room)).unwrap();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    assert_eq!(
        rt.block_on(alice.open_direct_room(&bob_id)).unwrap(),
        (room.clone(), false)
    );
    // Bob joined it as a direct chat (the invitation said so): his side reuses it too.
    let alice_id = alice.session().unwrap().user_id;
    assert_eq!(
        bob.direct_rooms().unwrap()[&alice_id],
        std::slice::from_ref(&room)
    );
    assert_eq!(
        rt.block_on(bob.open_direct_room(&alice_id)).unwrap(),
        (room.clone(), false)
    );
    assert_eq!(
        alice.direct_rooms().unwrap()[&bob_id],
        std::slice::from_ref(&room)
    );
    // Alice's other device learns it from `m.direct` and reuses it too, through the CLI.
    let laptop = Member::new("id-direct-laptop");
    let laptop_login = crate::support::cli(
        &[
            "--json",
            "--config",
            laptop.config_path.to_str().unwrap(),
            "--data-dir",
            laptop.data_dir().to_str().unwrap(),
            "--token-label",
            &laptop.token_label,
            "login",
            "--user",
            &la,
        ],
        &[
            ("TCHAP_SECURE_TOKEN_PIN", laptop.pin.as_str()),
            ("SOFTHSM2_CONF", laptop.token.conf_path.to_str().unwrap()),
            ("TCHAP_SECURE_PASSWORD", PASSWORD),
        ],
        None,
    );
    assert!(
        laptop_login.json()["user_id"].is_string(),
        "{laptop_login:?}"
    );
    let reused = laptop
        .run(&["create-room", "--direct", "--invite", &bob_id])
        .json();
    assert_eq!(reused, json!({"room_id": room, "created": false}));
}

#[test]
fn hostile_display_names_are_neutralised_flagged_and_a_change_journaled() {
    let rt = rt();
    let synapse = Synapse::shared();
    let known = "Ministère des Armées";
    let config = config_of(&identity_config(json!({ "known_organisations": [known] })));
    let (a, b) = (InProcess::new("id-names"), InProcess::new("id-names"));
    let (la, lb) = (
        synapse.unique_user("id-names-a"),
        synapse.unique_user("id-names-b"),
    );
    synapse.register(&la, PASSWORD, false);
    let bob_reg = synapse.register(&lb, PASSWORD, false);
    let mut alice = a.open_with(config.clone()).unwrap();
    let mut bob = b.open_with(config).unwrap();
    rt.block_on(alice.login(&la, &password(), "alice-phone"))
        .unwrap();
    rt.block_on(bob.login(&lb, &password(), "bob-phone"))
        .unwrap();
    synapse.set_display_name(
        &bob_reg.access_token,
        &bob_reg.user_id,
        &format!("Bob Martin [{known}]"),
    );
    let room = rt
        .block_on(alice.create_room(
            Some("Cellule"),
            std::slice::from_ref(&bob_reg.user_id),
            false,
        ))
        .unwrap();
    rt.block_on(bob.sync_once(Duration::ZERO)).unwrap();
    rt.block_on(bob.join(&room)).unwrap();
    rt.block_on(alice.sync_once(Duration::ZERO)).unwrap();
    let bob_member = |alice: &Client| {
        alice
            .members(&room)
            .unwrap()
            .into_iter()
            .find(|m| m.user_id == bob_reg.user_id)
            .unwrap()
    };
    let honest = bob_member(&alice);
    assert_eq!(honest.name.name, "Bob Martin");
    assert_eq!(honest.name.organisation.as_deref(), Some(known));
    assert!(!honest.name.is_suspicious(), "{honest:?}");

    // Bob takes a hostile name: a bidi override, a zero-width space, and the organisation
    // with a Cyrillic А.
    let hostile = "Bob\u{202E} Ma\u{200B}rtin [Ministère des \u{0410}rmées]";
    synapse.set_display_name(&access_token(&bob), &bob_reg.user_id, hostile);
    rt.block_on(bob.send_text(&room, "ordre de mission"))
        .unwrap();
    receive(&rt, &mut alice, &room, "ordre de mission");
    let shown = bob_member(&alice).name;
    assert_eq!(shown.name, "Bob Martin");
    assert!(shown.issues.contains(&NameIssue::BidiControl), "{shown:?}");
    assert!(shown.issues.contains(&NameIssue::Invisible), "{shown:?}");
    assert!(
        shown.issues.contains(&NameIssue::LookalikeOrganisation {
            of: known.to_owned()
        }),
        "{shown:?}"
    );
    assert!(shown.is_suspicious());
    // The message shows the same checked name.
    let message = alice
        .messages(&room, 20)
        .unwrap()
        .into_iter()
        .find(|m| m.body.as_deref() == Some("ordre de mission"))
        .unwrap();
    assert_eq!(message.sender_name, shown);
    // The change of name is in the security journal, both names neutralised.
    let changes: Vec<String> = alice
        .store()
        .security_events()
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.kind == "display_name_changed" && e.user_id.as_deref() == Some(&bob_reg.user_id)
        })
        .map(|e| e.detail)
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].contains(known), "{changes:?}");
    assert!(!changes[0].contains('\u{202E}'), "{changes:?}");
}
