//! Logs (T-SEC-04): the demo's whole flow, run through the real CLI with every crate at TRACE
//! level (ours, rustls, hyper, reqwest, h2, tokio), writes no secret and no message body into
//! the logs, in any of the forms a key could take in text (hex, base64, a Debug byte array).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use tchap_secure_hsm::{Vault, VaultBinding};
use tchap_secure_tests::harness::{new_token, open_token, write_private};
use tchap_secure_tests::synapse::Synapse;

use crate::support::{PASSWORD, Run, cli};

struct Member {
    localpart: String,
    user_id: String,
    label: String,
    pin: String,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Member {
    fn new(synapse: &Synapse, prefix: &str) -> Self {
        let localpart = synapse.unique_user(prefix);
        let user_id = synapse.register(&localpart, PASSWORD, false).user_id;
        let (label, pin) = new_token(prefix);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        write_private(&config, synapse.client_config().to_string());
        Self {
            localpart,
            user_id,
            label,
            pin,
            dir,
            config,
        }
    }

    /// Runs one CLI command at TRACE level; its logs (stderr) are appended to `logs`.
    fn run(&self, logs: &mut String, args: &[&str], stdin: Option<&str>) -> Run {
        let data_dir = self.dir.path().join("data");
        let mut all = vec![
            "--json",
            "--config",
            self.config.to_str().unwrap(),
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--token-label",
            &self.label,
        ];
        all.extend_from_slice(args);
        let run = cli(
            &all,
            &[
                ("TCHAP_SECURE_TOKEN_PIN", &self.pin),
                ("TCHAP_SECURE_LOG", "trace"),
            ],
            stdin,
        );
        logs.push_str(&run.stderr);
        assert_eq!(run.status, 0, "{args:?} failed: {}", run.stdout);
        run
    }

    /// The store keys of this member's data directory, in every text form.
    fn key_forms(&self, server_name: &str) -> Vec<(String, String)> {
        let backend = open_token(&self.label, &self.pin).unwrap();
        let vault = Vault::open(
            &self.dir.path().join("data"),
            &backend,
            &VaultBinding {
                server_name: server_name.to_owned(),
            },
        )
        .unwrap();
        let keys = [
            ("database key", *vault.database_key().expose()),
            ("pickle key", *vault.pickle_key().expose()),
            ("media key", *vault.media_key().expose()),
        ];
        let mut forms = Vec::new();
        for (what, key) in keys {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            forms.push((format!("{what} hex"), hex.clone()));
            forms.push((format!("{what} HEX"), hex.to_uppercase()));
            forms.push((format!("{what} base64"), STANDARD.encode(key)));
            forms.push((
                format!("{what} base64 unpadded"),
                STANDARD_NO_PAD.encode(key),
            ));
            forms.push((format!("{what} Debug bytes"), format!("{:?}", &key[..8])));
        }
        forms
    }
}

#[test]
fn the_whole_flow_at_trace_level_logs_no_secret() {
    let synapse = Synapse::shared();
    let server_name = synapse.client_config()["server_name"]
        .as_str()
        .unwrap()
        .to_owned();
    let (alice, bob) = (Member::new(synapse, "log-a"), Member::new(synapse, "log-b"));
    let body_a = "Canary-log: réunion de crise à 7h12, salle 4";
    let body_b = "Canary-log: bien reçu, le préfet est prévenu";
    let mut logs = String::new();

    alice.run(&mut logs, &["probe"], None);
    for m in [&alice, &bob] {
        let login = m.run(
            &mut logs,
            &["login", "--user", &m.localpart, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        );
        assert_eq!(login.json()["user_id"], m.user_id.as_str());
    }
    alice.run(&mut logs, &["whoami"], None);
    let created = alice.run(
        &mut logs,
        &["create-room", "--name", "Cellule", "--invite", &bob.user_id],
        None,
    );
    let room = created.json()["room_id"].as_str().unwrap().to_owned();
    bob.run(&mut logs, &["sync"], None);
    bob.run(&mut logs, &["join", &room], None);
    alice.run(&mut logs, &["sync"], None);
    alice.run(&mut logs, &["members", &room], None);
    alice.run(&mut logs, &["send", &room], Some(body_a));
    let heard = bob.run(
        &mut logs,
        &["listen", "--timeout-ms", "2000", "--max-messages", "1"],
        None,
    );
    assert!(
        heard.stdout.contains(body_a),
        "bob received: {}",
        heard.stdout
    );
    bob.run(&mut logs, &["send", &room], Some(body_b));
    let heard = alice.run(
        &mut logs,
        &["listen", "--timeout-ms", "2000", "--max-messages", "1"],
        None,
    );
    assert!(
        heard.stdout.contains(body_b),
        "alice received: {}",
        heard.stdout
    );
    bob.run(&mut logs, &["messages", &room], None);
    bob.run(&mut logs, &["devices", &alice.user_id], None);
    bob.run(&mut logs, &["security-events"], None);
    bob.run(&mut logs, &["rooms"], None);

    // The canaries: computed before alice logs out (her token is then gone from Synapse).
    let mut canaries: Vec<(String, String)> = vec![
        ("password".into(), PASSWORD.into()),
        ("alice's PIN".into(), alice.pin.clone()),
        ("bob's PIN".into(), bob.pin.clone()),
        ("message a → b".into(), body_a.into()),
        ("message b → a".into(), body_b.into()),
    ];
    for m in [&alice, &bob] {
        for (i, token) in synapse.access_tokens(&m.user_id).into_iter().enumerate() {
            canaries.push((format!("access token {i} of {}", m.localpart), token));
        }
        canaries.extend(m.key_forms(&server_name));
    }
    alice.run(&mut logs, &["logout"], None);

    // The logs really are at TRACE, from our crates and from the TLS and HTTP stacks.
    let trace_lines = logs.lines().filter(|l| l.contains("TRACE")).count();
    assert!(trace_lines > 100, "only {trace_lines} TRACE lines:\n{logs}");
    // rustls (through the `log` bridge), hyper-util, and our own sync and E2EE code.
    for marker in [
        "Sending ClientHello",
        "http1 handshake complete",
        "sync committed",
        "room key received",
    ] {
        assert!(
            logs.contains(marker),
            "no {marker:?} in the TRACE logs: the filter did not reach that layer"
        );
    }
    // The search itself works on these logs: a value that may be logged is found.
    assert!(logs.contains(&alice.user_id), "user ids are logged at INFO");
    let found: Vec<&str> = canaries
        .iter()
        .filter(|(_, canary)| logs.contains(canary.as_str()))
        .map(|(what, _)| what.as_str())
        .collect();
    assert!(
        found.is_empty(),
        "secrets in the TRACE logs ({} bytes, {trace_lines} TRACE lines): {found:?}",
        logs.len()
    );
}
