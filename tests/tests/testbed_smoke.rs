//! Smoke tests of the testbed itself: the PKI, the TLS peers, Synapse and SoftHSM2 behave as
//! the product's tests assume. Real components only.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::CertificateError;
use rustls_pki_types::ServerName;
use serde_json::json;
use tchap_secure_tests::pki::{CertKey, Pki, spki_pin_of_pem};
use tchap_secure_tests::softhsm::{self, SoftHsmToken};
use tchap_secure_tests::synapse::Synapse;
use tchap_secure_tests::tls_server::{Behaviour, BlackHole, TlsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A plain webpki client trusting only our root: no pinning. It shows what a correct chain
/// validator makes of each server, independently of the product.
fn webpki_client(pki: &Pki) -> TlsConnector {
    TlsConnector::from(Arc::new(pki.plain_client_config()))
}

async fn handshake(client: &TlsConnector, port: u16) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    tokio::time::timeout(Duration::from_secs(5), client.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

fn rustls_error(error: &std::io::Error) -> &rustls::Error {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a rustls error: {error:?}"))
}

fn certificate_error(error: &std::io::Error) -> &CertificateError {
    match rustls_error(error) {
        rustls::Error::InvalidCertificate(e) => e,
        other => panic!("not a certificate error: {other:?}"),
    }
}

async fn http_get(stream: &mut TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

fn pins_of_presented_chain(stream: &TlsStream<TcpStream>) -> Vec<String> {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .expect("peer certificates")
        .iter()
        .map(|cert| {
            let pem = format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                base64_lines(cert.as_ref())
            );
            spki_pin_of_pem(&pem)
        })
        .collect()
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text.as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).expect("ascii"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn count_certs(cert: &CertKey) -> usize {
    cert.chain_pem
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

#[test]
fn pki_pins_agree_between_rcgen_and_openssl() {
    let pki = Pki::generate();
    assert_eq!(spki_pin_of_pem(&pki.root_ca_pem), pki.root_pin());
    assert_eq!(
        spki_pin_of_pem(&pki.intermediate_pem),
        pki.intermediate_pin()
    );
    assert_eq!(spki_pin_of_pem(&pki.server.chain_pem), pki.server_pin());
    assert_eq!(spki_pin_of_pem(&pki.server.leaf_pem()), pki.server_pin());
    assert_eq!(pki.backup_pin.len(), 44, "base64 of 32 bytes, padded");
    let distinct = [
        pki.root_pin(),
        pki.intermediate_pin(),
        pki.server_pin(),
        pki.backup_pin.clone(),
    ];
    for (i, a) in distinct.iter().enumerate() {
        for b in &distinct[i + 1..] {
            assert_ne!(a, b);
        }
    }

    // Same key as the pinned server, different certificates.
    let expired = pki.expired_server();
    let wrong_host = pki.wrong_host_server();
    assert_eq!(spki_pin_of_pem(&expired.chain_pem), pki.server_pin());
    assert_eq!(spki_pin_of_pem(&wrong_host.chain_pem), pki.server_pin());
    assert_ne!(expired.leaf_der, pki.server.leaf_der);
    assert_ne!(wrong_host.leaf_der, pki.server.leaf_der);
    // Fresh keys, not pinned.
    let unpinned = pki.unpinned_server();
    assert_ne!(spki_pin_of_pem(&unpinned.chain_pem), pki.server_pin());
    let foreign = pki.foreign_ca_server();
    assert_ne!(spki_pin_of_pem(&foreign.chain_pem), pki.server_pin());

    assert_eq!(count_certs(&pki.server), 2);
    assert_eq!(count_certs(&foreign), 2);
    assert_eq!(count_certs(&pki.unpinned_with_pinned_appended()), 4);
    assert_eq!(count_certs(&pki.foreign_chain_with_pinned_appended()), 5);

    // OpenSSL agrees on what verifies against our root.
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    let root = write("root.pem", &pki.root_ca_pem);
    let intermediate = write("intermediate.pem", &pki.intermediate_pem);
    let verify = |leaf: &CertKey| {
        let leaf = write("leaf.pem", &leaf.leaf_pem());
        Command::new("openssl")
            .args(["verify", "-verify_hostname", "localhost", "-CAfile"])
            .arg(&root)
            .arg("-untrusted")
            .arg(&intermediate)
            .arg(&leaf)
            .output()
            .expect("openssl verify")
            .status
            .success()
    };
    assert!(verify(&pki.server), "server leaf verifies");
    assert!(verify(&pki.unpinned_server()), "unpinned leaf verifies");
    assert!(!verify(&expired), "expired leaf does not verify");
    assert!(
        !verify(&wrong_host),
        "wrong-host leaf does not verify for localhost"
    );
    assert!(!verify(&foreign), "foreign leaf does not verify");
}

#[tokio::test]
async fn rustls_servers_present_what_they_are_given() {
    let pki = Pki::generate();
    let client = webpki_client(&pki);

    // Good certificate, Versions behaviour.
    let server = TlsServer::start(&pki.server, Behaviour::Versions);
    assert_eq!(server.url, format!("https://localhost:{}", server.port));
    let mut stream = handshake(&client, server.port).await.expect("good chain");
    assert_eq!(pins_of_presented_chain(&stream)[0], pki.server_pin());
    let response = http_get(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Content-Type: application/json\r\n"));
    assert!(
        response.ends_with(r#"{"versions":["v1.11"]}"#),
        "{response}"
    );
    assert_eq!(server.handshakes(), 1);
    assert!(server.requests()[0].starts_with("GET /_matrix/client/versions HTTP/1.1\r\n"));

    // Hostile certificates, as a correct (unpinned) webpki client sees them.
    let foreign = TlsServer::start(&pki.foreign_ca_server(), Behaviour::Versions);
    let error = handshake(&client, foreign.port)
        .await
        .expect_err("foreign CA");
    assert_eq!(certificate_error(&error), &CertificateError::UnknownIssuer);

    let expired = TlsServer::start(&pki.expired_server(), Behaviour::Versions);
    let error = handshake(&client, expired.port).await.expect_err("expired");
    assert!(
        matches!(
            certificate_error(&error),
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        ),
        "{error:?}"
    );

    let wrong_host = TlsServer::start(&pki.wrong_host_server(), Behaviour::Versions);
    let error = handshake(&client, wrong_host.port)
        .await
        .expect_err("wrong host");
    assert!(
        matches!(
            certificate_error(&error),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ),
        "{error:?}"
    );

    // Valid chains whose leaf is not pinned: only pinning can refuse these.
    let unpinned = TlsServer::start(&pki.unpinned_server(), Behaviour::Versions);
    let stream = handshake(&client, unpinned.port)
        .await
        .expect("valid chain");
    assert_ne!(pins_of_presented_chain(&stream)[0], pki.server_pin());

    let appended = TlsServer::start(&pki.unpinned_with_pinned_appended(), Behaviour::Versions);
    let stream = handshake(&client, appended.port)
        .await
        .expect("valid chain");
    let presented = pins_of_presented_chain(&stream);
    assert_eq!(
        presented.len(),
        4,
        "leaf + intermediate + pinned leaf + root"
    );
    assert_ne!(presented[0], pki.server_pin());
    assert_eq!(
        presented[2],
        pki.server_pin(),
        "the pinned leaf is presented"
    );

    let foreign_appended = TlsServer::start(
        &pki.foreign_chain_with_pinned_appended(),
        Behaviour::Versions,
    );
    let error = handshake(&client, foreign_appended.port)
        .await
        .expect_err("foreign chain with our certificates appended");
    assert_eq!(certificate_error(&error), &CertificateError::UnknownIssuer);
    for server in [&foreign, &expired, &wrong_host, &foreign_appended] {
        assert_eq!(server.handshakes(), 0);
        assert!(server.requests().is_empty());
    }
}

#[tokio::test]
async fn silent_and_raw_behaviours() {
    let pki = Pki::generate();
    let client = webpki_client(&pki);

    let silent = TlsServer::start(&pki.server, Behaviour::Silent);
    let mut stream = handshake(&client, silent.port)
        .await
        .expect("handshake completes");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await;
    assert!(read.is_err(), "the silent server answered: {read:?}");
    assert_eq!(silent.handshakes(), 1);

    let body = br#"{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":1500}"#.to_vec();
    let raw = TlsServer::start(
        &pki.server,
        Behaviour::Raw {
            status: 429,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.clone(),
        },
    );
    let mut stream = handshake(&client, raw.port).await.expect("handshake");
    let response = http_get(&mut stream).await;
    assert!(
        response.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{response}"
    );
    let length = format!("Content-Length: {}\r\n", body.len());
    assert!(response.contains(&length), "{response}");
    assert!(response.contains("Connection: close\r\n"), "{response}");
    assert!(
        response.ends_with(r#""retry_after_ms":1500}"#),
        "{response}"
    );
}

#[tokio::test]
async fn tls12_only_peer_and_black_hole() {
    let pki = Pki::generate();
    let client = webpki_client(&pki);

    let tls12 = TlsServer::start_tls12_only(&pki.server);
    let error = handshake(&client, tls12.port)
        .await
        .expect_err("a TLS-1.3-only client cannot talk to a TLS-1.2-only server");
    assert!(
        matches!(
            rustls_error(&error),
            rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
                | rustls::Error::PeerIncompatible(_)
        ),
        "{error:?}"
    );
    // It is a real, working TLS 1.2 server with our chain.
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root.pem");
    std::fs::write(&root, &pki.root_ca_pem).expect("write root");
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-tls1_2",
            "-servername",
            "localhost",
            "-verify_return_error",
        ])
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", tls12.port))
        .arg("-CAfile")
        .arg(&root)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("Protocol  : TLSv1.2"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");

    let hole = BlackHole::start();
    assert_eq!(hole.url, format!("https://localhost:{}", hole.port));
    let tcp = TcpStream::connect(("127.0.0.1", hole.port))
        .await
        .expect("the black hole accepts TCP");
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(1),
        client.connect(ServerName::try_from("localhost").expect("name"), tcp),
    )
    .await;
    assert!(result.is_err(), "the black hole answered: {result:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn synapse_starts_registers_and_administers() {
    let started = Instant::now();
    let synapse = Synapse::shared();
    let first_call = started.elapsed();
    println!(
        "Synapse::shared(): {first_call:?} in this test (Synapse process to first /versions \
         answer: {:?})",
        synapse.startup_time()
    );
    assert_eq!(synapse.server_name, "secure.tchap.test");
    assert_eq!(
        synapse.base_url,
        format!("https://localhost:{}", synapse.port)
    );

    let (status, versions) = synapse.request("GET", "/_matrix/client/versions", None, None);
    assert_eq!(status, 200);
    assert!(
        versions["versions"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{versions}"
    );

    // The server presents our pinned leaf and intermediate.
    let config = synapse.client_config();
    assert_eq!(config["homeserver_url"], synapse.base_url);
    assert_eq!(config["server_name"], "secure.tchap.test");
    assert_eq!(config["trust_anchors_pem"][0], synapse.pki.root_ca_pem);
    assert_eq!(config["spki_pins_sha256"][0], synapse.pki.server_pin());
    assert_eq!(config["spki_pins_sha256"][1], synapse.pki.backup_pin);

    // Two users, each logged in.
    let alice_name = synapse.unique_user("Alice");
    let bob_name = synapse.unique_user("bob");
    assert_ne!(alice_name, bob_name);
    assert!(alice_name.starts_with("alice-"), "{alice_name}");
    let alice = synapse.register(&alice_name, "alice-password", false);
    let bob = synapse.register(&bob_name, "bob-password", false);
    assert_eq!(alice.user_id, format!("@{alice_name}:secure.tchap.test"));
    for user in [&alice, &bob] {
        let (status, whoami) = synapse.request(
            "GET",
            "/_matrix/client/v3/account/whoami",
            Some(&user.access_token),
            None,
        );
        assert_eq!(status, 200, "{whoami}");
        assert_eq!(whoami["user_id"], user.user_id);
        assert_eq!(whoami["device_id"], user.device_id);
    }

    // delete_device revokes that device's token only.
    let alice_laptop = synapse.login(&alice_name, "alice-password");
    synapse.delete_device(&alice.user_id, &alice_laptop.device_id);
    let (status, body) = synapse.request(
        "GET",
        "/_matrix/client/v3/account/whoami",
        Some(&alice_laptop.access_token),
        None,
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN");
    let (status, _) = synapse.request(
        "GET",
        "/_matrix/client/v3/account/whoami",
        Some(&alice.access_token),
        None,
    );
    assert_eq!(status, 200);

    // Global limits are out of reach; a per-user override brings one back.
    let (status, room) = synapse.request(
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(&alice.access_token),
        Some(&json!({"invite": [bob.user_id]})),
    );
    assert_eq!(status, 200, "{room}");
    let room_id = room["room_id"].as_str().expect("room id").to_owned();
    let send = |token: &str, n: usize| {
        synapse.request(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/txn{n}"),
            Some(token),
            Some(&json!({"msgtype": "m.text", "body": format!("message {n}")})),
        )
    };
    for n in 0..30 {
        let (status, body) = send(&alice.access_token, n);
        assert_eq!(status, 200, "message {n}: {body}");
    }
    let (status, joined) = synapse.request(
        "POST",
        &format!("/_matrix/client/v3/rooms/{room_id}/join"),
        Some(&bob.access_token),
        Some(&json!({})),
    );
    assert_eq!(status, 200, "{joined}");
    synapse.override_ratelimit(&bob.user_id, 1, 1);
    let limited = (100..105)
        .map(|n| send(&bob.access_token, n))
        .find(|(status, _)| *status == 429)
        .expect("bob is rate limited after the override");
    assert_eq!(limited.1["errcode"], "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].is_u64(), "{}", limited.1);

    // An expired account is refused with Tchap's error code.
    let carol_name = synapse.unique_user("carol");
    let carol = synapse.register(&carol_name, "carol-password", false);
    synapse.expire_account(&carol.user_id);
    let (status, body) = synapse.request(
        "GET",
        "/_matrix/client/v3/account/whoami",
        Some(&carol.access_token),
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errcode"], "ORG_MATRIX_EXPIRED_ACCOUNT");

    // What the server stored is readable.
    let database = synapse.database_path();
    let header = std::fs::read(&database).expect("read homeserver.db");
    assert!(header.starts_with(b"SQLite format 3\0"));
    let output = Command::new("sqlite3")
        .arg("-readonly")
        .arg(&database)
        .arg("SELECT name FROM users;")
        .output()
        .expect("sqlite3");
    let users = String::from_utf8_lossy(&output.stdout);
    assert!(users.contains(&alice.user_id), "{users}");
    assert!(synapse.is_running());
}

#[tokio::test]
async fn synapse_helpers_work_inside_a_tokio_runtime() {
    let synapse = Synapse::shared();
    let name = synapse.unique_user("async");
    let user = synapse.register(&name, "async-password", false);
    assert!(user.user_id.starts_with("@async-"));
}

#[test]
fn softhsm_tokens() {
    let token = SoftHsmToken::new("smoke-a");
    token.add_token("smoke-b", "pin-b-1234");
    let slots = token.show_slots();
    assert!(slots.contains("smoke-a"), "{slots}");
    assert!(slots.contains("smoke-b"), "{slots}");
    assert_eq!(token.label, "smoke-a");
    assert_eq!(token.user_pin, softhsm::DEFAULT_USER_PIN);
    assert!(token.module.exists(), "{}", token.module.display());
    assert!(token.token_dir.is_dir());
    assert_eq!(
        token.env(),
        vec![(
            "SOFTHSM2_CONF".to_owned(),
            token.conf_path.display().to_string()
        )]
    );
    // Two directories, two token sets: the other token does not see these.
    let other = SoftHsmToken::new("smoke-c");
    let other_slots = other.show_slots();
    assert!(other_slots.contains("smoke-c") && !other_slots.contains("smoke-a"));

    let process = softhsm::process_wide();
    assert!(std::ptr::eq(process, SoftHsmToken::process_wide()));
    assert_eq!(process.label, "tchap-test");
    assert_eq!(process.user_pin, "1234-test-pin");
    assert_eq!(
        std::env::var_os("SOFTHSM2_CONF").as_deref(),
        Some(process.conf_path.as_os_str())
    );
    assert!(process.show_slots().contains("tchap-test"));
    // softhsm2-util with the inherited environment sees the process-wide token.
    let inherited = Command::new("softhsm2-util")
        .arg("--show-slots")
        .output()
        .expect("softhsm2-util");
    assert!(String::from_utf8_lossy(&inherited.stdout).contains("tchap-test"));
}

/// The testbed's push gateway (issue 17): a user's HTTP pusher (`format: event_id_only`)
/// pointed at it, an encrypted event from another member of a direct room reaches it within
/// seconds over TLS (Synapse trusting only the run's root), with the event and room ids and the
/// pusher's key, and none of what `event_id_only` leaves out (sender, content, names).
#[test]
fn synapse_pushes_event_ids_to_the_testbed_gateway() {
    use tchap_secure_tests::push_gateway::PushGateway;
    let synapse = Synapse::shared();
    let gateway = PushGateway::start(&synapse.pki.server);
    let alice = synapse.register(&synapse.unique_user("push-alice"), "pw-push-alice", false);
    let bob = synapse.register(&synapse.unique_user("push-bob"), "pw-push-bob", false);
    synapse.user_call(
        &alice.access_token,
        "POST",
        "/_matrix/client/v3/pushers/set",
        &json!({
            "kind": "http",
            "app_id": "fr.gouv.tchap.secure.testbed",
            "pushkey": "pushkey-of-alice",
            "app_display_name": "Tchap Secure",
            "device_display_name": "testbed",
            "lang": "fr",
            "data": { "url": gateway.notify_url(), "format": "event_id_only" },
        }),
    );
    let room = synapse.user_call(
        &bob.access_token,
        "POST",
        "/_matrix/client/v3/createRoom",
        &json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": [alice.user_id] }),
    )["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    synapse.user_call(
        &alice.access_token,
        "POST",
        &format!("/_matrix/client/v3/rooms/{room}/join"),
        &json!({}),
    );
    let event_id = synapse.user_call(
        &bob.access_token,
        "PUT",
        &format!("/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/push-smoke-1"),
        &json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": "AwgAEhBzb21lIGNpcGhlcnRleHQ",
            "sender_key": "c2VuZGVyIGtleQ",
            "session_id": "c2Vzc2lvbg",
            "device_id": "BOBDEVICE",
        }),
    )["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let notification = gateway
        .wait_for_event(&event_id, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no push for {event_id}: {:?}", gateway.received()));
    assert_eq!(notification["room_id"], room.as_str());
    assert_eq!(notification["devices"][0]["pushkey"], "pushkey-of-alice");
    assert_eq!(
        notification["devices"][0]["app_id"],
        "fr.gouv.tchap.secure.testbed"
    );
    for absent in [
        "sender",
        "sender_display_name",
        "room_name",
        "content",
        "type",
    ] {
        assert!(
            notification.get(absent).is_none(),
            "{absent} reached the gateway: {notification}"
        );
    }
    // Anything else than the notify endpoint is not the Push Gateway API.
    assert!(
        gateway
            .received()
            .iter()
            .all(|r| r.path == tchap_secure_tests::push_gateway::NOTIFY_PATH)
    );
}
