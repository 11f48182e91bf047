//! Hostile or broken answers from a server that passes TLS and pinning: each ends in a typed
//! error, never a panic, and nothing is committed to the store.

use serde_json::json;
use tchap_secure_core::api::ApiError;
use tchap_secure_core::net::{Transport, TransportError};
use tchap_secure_core::{Client, Config, Error};
use tchap_secure_tests::pki::Pki;
use tchap_secure_tests::tls_server::{Behaviour, TlsServer};

use crate::support::{InProcess, password, rt};

fn raw(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Behaviour {
    Behaviour::Raw {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.into(),
    }
}

fn config_for(pki: &Pki, server: &TlsServer) -> Config {
    Config::from_json(
        json!({
            "homeserver_url": server.url,
            "server_name": "secure.tchap.test",
            "trust_anchors_pem": pki.root_ca_pem,
            "spki_pins_sha256": [pki.server_pin(), pki.backup_pin],
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn probe_with(pki: &Pki, behaviour: Behaviour) -> Error {
    let server = TlsServer::start(&pki.server, behaviour);
    let transport = Transport::new(&config_for(pki, &server)).unwrap();
    rt().block_on(Client::probe(&transport)).unwrap_err()
}

#[test]
fn malformed_json_and_wrong_types_are_malformed_response() {
    let pki = Pki::generate();
    for body in [
        &b"{not json"[..],
        br#"{"versions": 5}"#,
        br#"["v1.11"]"#,
        b"",
    ] {
        let e = probe_with(
            &pki,
            raw(200, &[("Content-Type", "application/json")], body),
        );
        assert!(
            matches!(
                e,
                Error::Api(ApiError::MalformedResponse {
                    endpoint: "/versions",
                    ..
                })
            ),
            "{e:?}"
        );
    }
}

#[test]
fn oversized_bodies_are_refused_declared_or_streamed() {
    let pki = Pki::generate();
    let big = vec![b' '; 5 * 1024 * 1024];
    let e = probe_with(&pki, raw(200, &[], big.clone()));
    assert!(
        matches!(
            e,
            Error::Api(ApiError::Transport(TransportError::BodyTooLarge { .. }))
        ),
        "{e:?}"
    );

    // No Content-Length: chunked, so the cap must hold while streaming.
    let mut chunked = Vec::new();
    for chunk in big.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let e = probe_with(&pki, raw(200, &[("Transfer-Encoding", "chunked")], chunked));
    assert!(
        matches!(
            e,
            Error::Api(ApiError::Transport(TransportError::BodyTooLarge { .. }))
        ),
        "{e:?}"
    );
}

#[test]
fn redirects_are_refused_not_followed() {
    let pki = Pki::generate();
    let e = probe_with(&pki, raw(302, &[("Location", "https://evil.example/")], ""));
    assert!(
        matches!(
            e,
            Error::Api(ApiError::Transport(TransportError::Redirect {
                status: 302
            }))
        ),
        "{e:?}"
    );
}

#[test]
fn http_errors_and_rate_limits_are_typed() {
    let pki = Pki::generate();
    let e = probe_with(
        &pki,
        raw(500, &[("Content-Type", "text/html")], "<h1>oops</h1>"),
    );
    assert!(
        matches!(e, Error::Api(ApiError::Http { status: 500 })),
        "{e:?}"
    );
    // A wait longer than we sleep through is returned at once, with the server's figure.
    let e = probe_with(
        &pki,
        raw(
            429,
            &[],
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":600000}"#,
        ),
    );
    assert!(
        matches!(
            e,
            Error::Api(ApiError::LimitExceeded {
                retry_after_ms: Some(600000)
            })
        ),
        "{e:?}"
    );
    let e = probe_with(
        &pki,
        raw(
            403,
            &[],
            r#"{"errcode":"ORG_MATRIX_EXPIRED_ACCOUNT","error":"expired"}"#,
        ),
    );
    assert!(matches!(e, Error::Api(ApiError::ExpiredAccount)), "{e:?}");
}

#[test]
fn a_malformed_sync_commits_nothing() {
    // One body that is a valid login answer and an invalid sync answer (next_batch not a string).
    let pki = Pki::generate();
    let body = json!({"user_id": "@a:secure.tchap.test", "device_id": "DEV", "access_token": "tok",
                      "next_batch": 5, "rooms": {"join": {"!r:secure.tchap.test": {}}}});
    let server = TlsServer::start(&pki.server, raw(200, &[], body.to_string()));
    let member = InProcess::new("badsync");
    let config = config_for(&pki, &server);
    let mut client = Client::open(config, &member.data_dir(), &member.vault).unwrap();
    let rt = rt();
    rt.block_on(client.login("a", &password(), "test")).unwrap();
    let e = rt
        .block_on(client.sync_once(std::time::Duration::ZERO))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Api(ApiError::MalformedResponse {
                endpoint: "/sync",
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(client.store().next_batch().unwrap(), None);
    assert!(client.store().rooms().unwrap().is_empty());
}

/// Issue 15 item 7: a content scanner's error answer is read only up to its own small cap
/// (whatever the download allows), and a declared length allocates nothing: a megabyte-long
/// error body, or one that claims 50 MB, is a typed `scanner_protocol` error.
#[test]
fn scanner_error_bodies_are_capped_small_whatever_the_download_allows() {
    use tchap_secure_core::media::scanner::{
        MAX_ERROR_BODY, ScanOutcome, download_request, read_error_answer,
    };
    let pki = Pki::generate();
    let json_type = [("Content-Type", "application/json")];
    let answer = |behaviour: Behaviour| {
        let server = TlsServer::start(&pki.server, behaviour);
        let transport = Transport::new(&config_for(&pki, &server)).unwrap();
        rt().block_on(async {
            // The download itself may be 100 MiB: the error body may not.
            let response = transport
                .send_streaming(download_request(b"{}".to_vec(), 100 << 20))
                .await
                .unwrap();
            read_error_answer(response).await
        })
    };
    let reason = br#"{"reason": "MCS_MALFORMED_JSON", "info": "#;
    let mut long = reason.to_vec();
    long.extend(std::iter::repeat_n(b'x', 1 << 20));
    for behaviour in [
        raw(400, &json_type, long.clone()),
        // Chunked, so the size is known only by reading.
        raw(
            400,
            &[
                ("Content-Type", "application/json"),
                ("Transfer-Encoding", "chunked"),
            ],
            chunked(&long),
        ),
        // A length it never sends.
        raw(
            400,
            &[
                ("Content-Type", "application/json"),
                ("Content-Length", "50000000"),
            ],
            &reason[..],
        ),
    ] {
        let e = answer(behaviour).unwrap_err();
        assert_eq!(e.code(), "scanner_protocol", "{e:?}");
    }
    // A normal error body still classifies.
    let small = br#"{"reason": "MCS_MEDIA_NOT_CLEAN", "info": "***VIRUS DETECTED***"}"#;
    assert!(small.len() < MAX_ERROR_BODY);
    match answer(raw(403, &json_type, &small[..])).unwrap() {
        ScanOutcome::Infected { info } => assert_eq!(info, Some("***VIRUS DETECTED***")),
        other => panic!("{other:?}"),
    }
}

/// `body` in HTTP/1.1 chunked encoding (64 KiB chunks).
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
