//! Smoke test of the identity server's testbed (`tchap_secure_tests::sydent`): a real Sydent
//! 2.6.1 behind the TLS front, the real Synapse, and the whole Identity Service API v2 hashed
//! lookup as a client does it, with the testbed's own HTTPS helper (not the product's
//! transport). Proves the testbed; the client side is tested elsewhere.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tchap_secure_tests::sydent::{Sydent, email_lookup_hash};
use tchap_secure_tests::synapse::{Registered, Synapse};

/// A user with a known password, and an e-mail address of their own.
fn user(synapse: &Synapse, prefix: &str) -> (Registered, String, String) {
    let localpart = synapse.unique_user(prefix);
    let password = format!("pw-{localpart}-secret");
    let registered = synapse.register(&localpart, &password, false);
    let address = format!("{localpart}@agents.tchap.test");
    (registered, password, address)
}

fn openid_token(synapse: &Synapse, user: &Registered) -> Value {
    let path = format!(
        "/_matrix/client/v3/user/{}/openid/request_token",
        user.user_id
    );
    synapse.user_call(&user.access_token, "POST", &path, &json!({}))
}

fn lookup(sydent: &Sydent, token: &str, pepper: &str, hashes: &[&str]) -> (u16, Value) {
    sydent.request(
        "POST",
        "/_matrix/identity/v2/lookup",
        Some(token),
        Some(&json!({"addresses": hashes, "algorithm": "sha256", "pepper": pepper})),
    )
}

#[test]
fn identity_server_v2_hashed_lookup_end_to_end() {
    let started = Instant::now();
    let sydent = Sydent::shared();
    let synapse = sydent.synapse();
    eprintln!(
        "Sydent: {} (ready {:?} after spawn; Synapse + Sydent {:?})",
        sydent.base_url,
        sydent.startup_time(),
        started.elapsed()
    );
    assert!(sydent.base_url.starts_with("https://localhost:"));

    // Alice has an e-mail, known to Synapse (login) and bound at the identity server. Sydent
    // casefolds what it binds: the lookup hash is of the lowercase address.
    let (alice, password, address) = user(synapse, "sydent-alice");
    synapse.add_email_threepid(&alice.user_id, &address);
    sydent.bind_email(&address.to_uppercase(), &alice.user_id);
    let unbound = format!("nobody-{}@agents.tchap.test", std::process::id());

    // Bob looks her up: OpenID token from Synapse, exchanged at Sydent for an access token.
    let (bob, _, _) = user(synapse, "sydent-bob");
    let openid = openid_token(synapse, &bob);
    assert_eq!(
        openid["matrix_server_name"], synapse.server_name,
        "{openid}"
    );
    assert_eq!(openid["token_type"], "Bearer", "{openid}");
    let (status, registered) = sydent.request(
        "POST",
        "/_matrix/identity/v2/account/register",
        None,
        Some(&openid),
    );
    assert_eq!(
        status,
        200,
        "register: {registered}\n{}",
        sydent.log_tail(30)
    );
    let token = registered["token"].as_str().expect("token").to_owned();
    assert_eq!(registered["access_token"], token.as_str());
    let (status, account) =
        sydent.request("GET", "/_matrix/identity/v2/account", Some(&token), None);
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["user_id"], bob.user_id.as_str());

    // No terms to accept.
    let (status, terms) = sydent.request("GET", "/_matrix/identity/v2/terms", None, None);
    assert_eq!((status, &terms), (200, &json!({"policies": {}})));

    // hash_details: sha256 offered, with the pepper of Sydent's database.
    let (status, details) = sydent.request(
        "GET",
        "/_matrix/identity/v2/hash_details",
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{details}");
    let pepper = details["lookup_pepper"].as_str().expect("lookup_pepper");
    assert_eq!(pepper, sydent.lookup_pepper());
    assert!(
        details["algorithms"]
            .as_array()
            .is_some_and(|algorithms| algorithms.contains(&json!("sha256"))),
        "{details}"
    );

    // The hashed lookup: the bound address answers Alice, the unbound one nothing.
    let bound_hash = email_lookup_hash(&address, pepper);
    let unbound_hash = email_lookup_hash(&unbound, pepper);
    let (status, answer) = lookup(sydent, &token, pepper, &[&bound_hash, &unbound_hash]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"mappings": {bound_hash.clone(): alice.user_id}}),
        "lookup of {address} and {unbound}"
    );

    // What the identity server refuses: no token, a stale pepper, the unauthenticated v1 API,
    // an OpenID token Synapse never issued.
    let (status, answer) = sydent.request(
        "POST",
        "/_matrix/identity/v2/lookup",
        None,
        Some(&json!({"addresses": [bound_hash], "algorithm": "sha256", "pepper": pepper})),
    );
    assert_eq!(
        (status, &answer["errcode"]),
        (401, &json!("M_UNAUTHORIZED"))
    );
    let (status, answer) = lookup(sydent, &token, "stale", &[&bound_hash]);
    assert_eq!(
        (status, &answer["errcode"]),
        (400, &json!("M_INVALID_PEPPER"))
    );
    assert_eq!(answer["lookup_pepper"], pepper);
    let (status, _) = sydent.request(
        "GET",
        &format!("/_matrix/identity/api/v1/lookup?medium=email&address={address}"),
        None,
        None,
    );
    assert_eq!(status, 404, "the v1 API is off");
    let mut forged = openid.clone();
    forged["access_token"] = json!("forged-openid-token");
    let (status, answer) = sydent.request(
        "POST",
        "/_matrix/identity/v2/account/register",
        None,
        Some(&forged),
    );
    assert_ne!(status, 200, "a forged OpenID token was accepted: {answer}");
    assert!(answer.get("token").is_none(), "{answer}");

    // Alice logs in on Synapse with her e-mail.
    let (status, login) = synapse.request(
        "POST",
        "/_matrix/client/v3/login",
        None,
        Some(&json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": address},
            "password": password,
        })),
    );
    assert_eq!(status, 200, "login by e-mail: {login}");
    assert_eq!(login["user_id"], alice.user_id.as_str());

    // The user directory finds her for Bob although they share no room.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let results = synapse.user_call(
            &bob.access_token,
            "POST",
            "/_matrix/client/v3/user_directory/search",
            &json!({"search_term": alice.user_id, "limit": 10}),
        );
        let found = results["results"]
            .as_array()
            .is_some_and(|users| users.iter().any(|u| u["user_id"] == alice.user_id.as_str()));
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the directory does not find {}: {results}",
            alice.user_id
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Unbound, the address answers nothing.
    sydent.unbind_email(&address, &alice.user_id);
    let (status, answer) = lookup(sydent, &token, pepper, &[&bound_hash]);
    assert_eq!((status, answer), (200, json!({"mappings": {}})));

    // The helper does the same registration.
    let helper_token = sydent.register(&alice);
    let (status, account) = sydent.request(
        "GET",
        "/_matrix/identity/v2/account",
        Some(&helper_token),
        None,
    );
    assert_eq!((status, &account["user_id"]), (200, &json!(alice.user_id)));
    assert!(sydent.is_running());
}

/// The front presents the shared Synapse's own server leaf (same chain, same key), so a client
/// configured for the homeserver (trust anchor + pins) accepts the identity server unchanged.
#[tokio::test]
async fn front_presents_the_homeservers_pinned_leaf() {
    let sydent = tokio::task::spawn_blocking(Sydent::shared)
        .await
        .expect("start Sydent");
    let pki = &sydent.synapse().pki;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.plain_client_config()));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", sydent.port))
        .await
        .expect("connect to the front");
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake with the front, trusting only the run's root");
    let (_, connection) = tls.get_ref();
    let presented = connection.peer_certificates().expect("peer certificates");
    assert_eq!(presented[0].as_ref(), pki.server.leaf_der.as_slice());
}
