//! The pinned transport against real TLS peers on loopback, through the real CLI (`probe`):
//! exit status 0 accepted, 3 TLS peer rejected, 4 other network failure, and the typed reason.

use serde_json::{Value, json};
use tchap_secure_tests::pki::{CertKey, Pki};
use tchap_secure_tests::synapse::Synapse;
use tchap_secure_tests::tls_server::{Behaviour, BlackHole, TlsServer};

use crate::support::{cli, write_config};

fn config(pki: &Pki, url: &str, pins: &[String]) -> Value {
    json!({
        "homeserver_url": url,
        "server_name": "secure.tchap.test",
        "trust_anchors_pem": pki.root_ca_pem,
        "spki_pins_sha256": pins,
    })
}

/// Runs `probe` against `url` with `config`; returns (exit status, reason).
fn probe(config: &Value, extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), config);
    let mut args = vec!["--json", "--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("probe");
    let run = cli(&args, &[], None);
    if run.status == 0 {
        assert_eq!(run.json()["ok"], true, "{run:?}");
        (0, String::new())
    } else {
        let error = run.error();
        assert_eq!(error["exit_status"], run.status, "{run:?}");
        (run.status, error["error"].as_str().unwrap().to_owned())
    }
}

/// Starts a TLS 1.3 server presenting `cert` and probes it with pins `pins`.
fn probe_server(pki: &Pki, cert: &CertKey, pins: &[String]) -> (i32, String, usize) {
    let server = TlsServer::start(cert, Behaviour::Versions);
    let result = probe(&config(pki, &server.url, pins), &[]);
    (result.0, result.1, server.requests().len())
}

#[test]
fn accepts_a_leaf_pin_an_intermediate_pin_and_an_anchor_pin() {
    let pki = Pki::generate();
    for pin in [pki.server_pin(), pki.intermediate_pin(), pki.root_pin()] {
        let (status, reason, requests) =
            probe_server(&pki, &pki.server, &[pin, pki.backup_pin.clone()]);
        assert_eq!((status, reason.as_str()), (0, ""));
        assert_eq!(requests, 1);
    }
}

#[test]
fn accepts_when_only_the_backup_pin_matches_after_a_key_rotation() {
    // The backup pin is what lets the operator rotate the server key without a new APK.
    let pki = Pki::generate();
    let rotated = pki.unpinned_server();
    let rotated_pin = tchap_secure_tests::pki::spki_pin_of_pem(&rotated.chain_pem);
    let (status, ..) = probe_server(&pki, &rotated, &[pki.server_pin(), rotated_pin]);
    assert_eq!(status, 0);
}

#[test]
fn rejects_a_foreign_ca_before_any_request() {
    let pki = Pki::generate();
    let pins = [pki.server_pin(), pki.backup_pin.clone()];
    let (status, reason, requests) = probe_server(&pki, &pki.foreign_ca_server(), &pins);
    assert_eq!(
        (status, reason.as_str(), requests),
        (3, "untrusted_certificate", 0)
    );
}

#[test]
fn rejects_an_expired_leaf() {
    let pki = Pki::generate();
    let pins = [pki.server_pin(), pki.backup_pin.clone()];
    let (status, reason, requests) = probe_server(&pki, &pki.expired_server(), &pins);
    assert_eq!(
        (status, reason.as_str(), requests),
        (3, "certificate_expired", 0)
    );
}

#[test]
fn rejects_a_wrong_host_name_even_with_the_pinned_key() {
    let pki = Pki::generate();
    let pins = [pki.server_pin(), pki.backup_pin.clone()];
    let (status, reason, requests) = probe_server(&pki, &pki.wrong_host_server(), &pins);
    assert_eq!(
        (status, reason.as_str(), requests),
        (3, "hostname_mismatch", 0)
    );
}

#[test]
fn rejects_a_leaf_of_our_own_ca_whose_key_is_not_pinned() {
    let pki = Pki::generate();
    let pins = [pki.server_pin(), pki.backup_pin.clone()];
    let (status, reason, requests) = probe_server(&pki, &pki.unpinned_server(), &pins);
    assert_eq!((status, reason.as_str(), requests), (3, "pin_mismatch", 0));
}

#[test]
fn rejects_pinned_certificates_appended_to_another_chain() {
    // CVE-2016-2402 class: the pinned certificate is *presented* but is not on the verified path.
    let pki = Pki::generate();
    let pins = [pki.server_pin(), pki.backup_pin.clone()];
    let (status, reason, requests) =
        probe_server(&pki, &pki.unpinned_with_pinned_appended(), &pins);
    assert_eq!((status, reason.as_str(), requests), (3, "pin_mismatch", 0));
    let (status, reason, requests) =
        probe_server(&pki, &pki.foreign_chain_with_pinned_appended(), &pins);
    assert_eq!(
        (status, reason.as_str(), requests),
        (3, "untrusted_certificate", 0)
    );
}

#[test]
fn rejects_a_tls_1_2_only_server() {
    let pki = Pki::generate();
    let server = TlsServer::start_tls12_only(&pki.server);
    let pins = [pki.server_pin(), pki.backup_pin.clone()];
    let (status, reason) = probe(&config(&pki, &server.url, &pins), &[]);
    assert_eq!((status, reason.as_str()), (3, "protocol_version"));
}

#[test]
fn rejects_everything_once_the_pins_expired() {
    let pki = Pki::generate();
    let server = TlsServer::start(&pki.server, Behaviour::Versions);
    let pins = [pki.server_pin(), pki.backup_pin.clone()];
    let mut c = config(&pki, &server.url, &pins);
    c["pins_expire_at"] = json!("2020-01-01T00:00:00Z");
    let (status, reason) = probe(&c, &[]);
    assert_eq!((status, reason.as_str()), (3, "pins_expired"));
    assert_eq!(server.requests().len(), 0);
    // The same configuration with a future expiry connects.
    c["pins_expire_at"] = json!("2999-01-01T00:00:00Z");
    assert_eq!(probe(&c, &[]).0, 0);
}

/// An RFC 3339 instant `secs` from now, whole seconds.
fn rfc3339_in(secs: i64) -> (String, time::OffsetDateTime) {
    let at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        + time::Duration::seconds(secs);
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    (text, at)
}

/// Issue 15 item 4: the pin expiry is checked before every request, not only at a handshake,
/// so a connection opened before the expiry (kept alive in the pool, or a TLS session that
/// would be resumed) is not used after it. Before the fix the second probe went out on the
/// pooled connection and succeeded.
#[test]
fn a_client_that_stays_up_across_the_pin_expiry_stops_at_it() {
    let synapse = Synapse::shared();
    let mut c = synapse.client_config();
    let (expiry, at) = rfc3339_in(6);
    c["pins_expire_at"] = json!(expiry);
    let config = tchap_secure_core::Config::from_json(c.to_string().as_bytes()).unwrap();
    let transport = tchap_secure_core::net::Transport::new(&config).unwrap();
    let rt = tchap_secure_tests::harness::rt();
    rt.block_on(tchap_secure_core::Client::probe(&transport))
        .expect("before the expiry");
    let wait = at - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1500);
    std::thread::sleep(wait.try_into().unwrap());
    let error = rt
        .block_on(tchap_secure_core::Client::probe(&transport))
        .expect_err("a request went out after the pins expired");
    assert_eq!(error.code(), "pins_expired", "{error:?}");
    assert!(error.tls_rejection().is_some(), "{error:?}");
}

/// Issue 15 item 4: a clock set back does not revive expired pins. The data directory keeps
/// the latest time it has seen; the pins are judged against the later of it and the clock.
/// The device clock is shifted with the debug builds' test offset.
#[test]
fn a_clock_set_back_does_not_revive_expired_pins() {
    use tchap_secure_core::net::clock::TEST_CLOCK_OFFSET_VAR;
    let synapse = Synapse::shared();
    let mut c = synapse.client_config();
    c["pins_expire_at"] = json!(rfc3339_in(3600).0);
    let alice = tchap_secure_tests::cli_member::Member::on(synapse, &c, "clock-back");
    alice.login();
    alice.run(&["sync"]).ok();
    // The phone lives two hours later: past the expiry, it stops.
    let later = alice.run_with_env(&[(TEST_CLOCK_OFFSET_VAR, "7200")], &["sync"]);
    assert_eq!(
        (later.status, later.error()["error"].as_str().unwrap()),
        (3, "pins_expired"),
        "{later:?}"
    );
    // Its clock is set back to before the expiry (the real time now): still stopped.
    for _ in 0..2 {
        let back = alice.run(&["sync"]);
        assert_eq!(
            (back.status, back.error()["error"].as_str().unwrap()),
            (3, "pins_expired"),
            "{back:?}"
        );
    }
    // The same configuration in a data directory that never saw that time still works: it is
    // the recorded time, not the configuration, that stops Alice.
    let bruno = tchap_secure_tests::cli_member::Member::on(synapse, &c, "clock-fresh");
    bruno.login();
    bruno.run(&["sync"]).ok();
}

#[test]
fn a_server_that_never_answers_ends_in_a_timeout_not_a_hang() {
    let pki = Pki::generate();
    let pins = [pki.server_pin(), pki.backup_pin.clone()];
    // TLS handshake completes, then silence.
    let silent = TlsServer::start(&pki.server, Behaviour::Silent);
    let start = std::time::Instant::now();
    let (status, reason) = probe(&config(&pki, &silent.url, &pins), &["--timeout-secs", "2"]);
    assert_eq!((status, reason.as_str()), (4, "timeout"));
    // TCP accepted, not even a TLS answer.
    let hole = BlackHole::start();
    let (status, reason) = probe(&config(&pki, &hole.url, &pins), &["--timeout-secs", "2"]);
    assert_eq!((status, reason.as_str()), (4, "timeout"));
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_refused_connection_is_a_network_failure() {
    let pki = Pki::generate();
    let port = tchap_secure_tests::ports::free_loopback_port();
    let pins = [pki.server_pin(), pki.backup_pin.clone()];
    let (status, reason) = probe(
        &config(&pki, &format!("https://localhost:{port}"), &pins),
        &[],
    );
    assert_eq!((status, reason.as_str()), (4, "connect"));
}

#[test]
fn probes_the_real_synapse_and_rejects_it_with_wrong_pins() {
    let synapse = Synapse::shared();
    assert_eq!(probe(&synapse.client_config(), &[]).0, 0);
    let mut wrong = synapse.client_config();
    let other = Pki::generate();
    wrong["spki_pins_sha256"] = json!([other.server_pin(), other.backup_pin]);
    let (status, reason) = probe(&wrong, &[]);
    assert_eq!((status, reason.as_str()), (3, "pin_mismatch"));
}

#[test]
fn configuration_errors_exit_2_naming_the_key() {
    let pki = Pki::generate();
    let mut c = config(
        &pki,
        "http://localhost:1",
        &[pki.server_pin(), pki.backup_pin.clone()],
    );
    let (status, reason) = probe(&c, &[]);
    assert_eq!((status, reason.as_str()), (2, "config"));
    c["homeserver_url"] = json!("https://localhost:1");
    c["spki_pins_sha256"] = json!([pki.server_pin()]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &c);
    let run = cli(
        &["--json", "check-config", path.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(run.status, 2);
    assert!(
        run.error()["message"]
            .as_str()
            .unwrap()
            .contains("spki_pins_sha256"),
        "{run:?}"
    );
}

fn warning_codes(check: &Value) -> Vec<String> {
    check["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap().to_owned())
        .collect()
}

/// Issue 15 item 8: pinning the root CA's own key accepts whatever that CA issues. The
/// administrator is told (`check-config` warns `anchor_pinned`), and with
/// `require_leaf_or_intermediate_pin` an anchor's pin stops counting at the handshake.
#[test]
fn an_anchor_pin_is_flagged_and_stops_counting_when_leaf_or_intermediate_pins_are_required() {
    let pki = Pki::generate();
    let server = TlsServer::start(&pki.server, Behaviour::Versions);
    let mut c = config(&pki, &server.url, &[pki.root_pin(), pki.backup_pin.clone()]);
    let check = |c: &Value| {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), c);
        cli(
            &["--json", "check-config", path.to_str().unwrap()],
            &[],
            None,
        )
    };
    let run = check(&c).ok();
    let codes = warning_codes(&run.json());
    assert_eq!(codes, ["anchor_pinned", "no_scanner_keys"], "{run:?}");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &c);
    let human = cli(&["check-config", path.to_str().unwrap()], &[], None).ok();
    assert!(
        human
            .stdout
            .contains("warning: a pin is a trust anchor's own key")
            && human.stdout.contains("[anchor_pinned]"),
        "{human:?}"
    );
    // Without the switch, the root's pin matches any certificate the CA issues.
    assert_eq!(probe(&c, &[]), (0, String::new()));

    c["require_leaf_or_intermediate_pin"] = json!(true);
    let run = check(&c).ok();
    assert_eq!(run.json()["require_leaf_or_intermediate_pin"], true);
    let codes = warning_codes(&run.json());
    assert_eq!(codes, ["no_backup_pin", "no_scanner_keys"], "{run:?}");
    // The server's leaf and intermediate are not pinned: refused before any request.
    assert_eq!(probe(&c, &[]), (3, "pin_mismatch".to_owned()));
    assert_eq!(
        server.requests().len(),
        1,
        "only the first probe got through"
    );

    // The intermediate's pin counts.
    c["spki_pins_sha256"] = json!([pki.root_pin(), pki.intermediate_pin(), pki.backup_pin]);
    assert_eq!(probe(&c, &[]), (0, String::new()));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn pin_command_prints_the_same_pin_as_openssl() {
    let pki = Pki::generate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leaf.pem");
    std::fs::write(&path, pki.server.leaf_pem()).unwrap();
    let run = cli(&["pin", path.to_str().unwrap()], &[], None).ok();
    assert_eq!(run.stdout.trim(), pki.server_pin());
}

#[test]
fn proxy_settings_in_the_environment_are_ignored() {
    // A proxy would be a second party able to see (and with a user CA, intercept) the traffic:
    // the client never uses one, whatever the environment says.
    let pki = Pki::generate();
    let server = TlsServer::start(&pki.server, Behaviour::Versions);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config(
            &pki,
            &server.url,
            &[pki.server_pin(), pki.backup_pin.clone()],
        ),
    );
    let hole = BlackHole::start();
    let proxy = format!("http://127.0.0.1:{}", hole.port);
    let run = cli(
        &[
            "--json",
            "--config",
            path.to_str().unwrap(),
            "--timeout-secs",
            "5",
            "probe",
        ],
        &[
            ("HTTPS_PROXY", &proxy),
            ("https_proxy", &proxy),
            ("ALL_PROXY", &proxy),
            ("all_proxy", &proxy),
        ],
        None,
    );
    assert_eq!(run.status, 0, "{run:?}");
    assert_eq!(server.requests().len(), 1);
}
