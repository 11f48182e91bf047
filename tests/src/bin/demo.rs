//! The end-to-end demo: a secure infrastructure on loopback with its own PKI (Synapse, the
//! content scanner with ClamAV, nginx as the single TLS front), two cabinet members on
//! hardware-bound keys logging in over pinned TLS, an encrypted room between them, a document
//! sent and received through the antivirus and an infected one refused, what an attacker in
//! the network gets (nothing), and what a thief of the data directory gets (ciphertext).
//! Every step runs the real `tchap-secure` binary and prints what it ran.
//!
//! Run it with `tests/run-demo.sh` (which installs what it needs and builds the binaries).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tchap_secure_tests::content_scanner::ContentScanner;
use tchap_secure_tests::pki::Pki;
use tchap_secure_tests::softhsm::SoftHsmToken;
use tchap_secure_tests::synapse::Synapse;

const PASSWORD: &str = "demo password: never on a command line";

struct Member {
    name: &'static str,
    localpart: String,
    user_id: String,
    data_dir: PathBuf,
    token_label: String,
    pin: String,
}

fn cli_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe.with_file_name("tchap-secure");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --workspace --bins`",
        bin.display()
    );
    bin
}

fn heading(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

/// Runs the CLI, printing the command (secrets shown as where they come from) and its output.
fn run(
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
    shown_stdin: &str,
) -> (i32, String) {
    run_cli(args, env, stdin, shown_stdin, true)
}

/// [`run`]; with `echo` false, the command and its output are printed only if it fails.
fn run_cli(
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
    shown_stdin: &str,
    echo: bool,
) -> (i32, String) {
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains([' ', '\'', '!', '$']) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                (*a).to_owned()
            }
        })
        .collect();
    let prefix = if stdin.is_some() {
        format!("{shown_stdin} | ")
    } else {
        String::new()
    };
    let command_line = format!("$ {prefix}tchap-secure {}", shown.join(" "));
    if echo {
        println!("{command_line}");
    }
    let mut command = Command::new(cli_bin());
    command.args(args).envs(SoftHsmToken::process_wide().env());
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn tchap-secure");
    if let Some(input) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = out.status.code().unwrap_or(-1);
    if !echo && status == 0 {
        return (status, stdout);
    }
    if !echo {
        println!("{command_line}");
    }
    for line in stdout
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        println!("    {line}");
    }
    if status != 0 {
        println!("    (exit status {status})");
    }
    (status, stdout)
}

impl Member {
    fn run(&self, config: &Path, args: &[&str]) -> (i32, String) {
        self.run_echo(config, args, true)
    }

    /// [`Member::run`], printed only if it fails.
    fn quiet(&self, config: &Path, args: &[&str]) -> (i32, String) {
        self.run_echo(config, args, false)
    }

    fn run_echo(&self, config: &Path, args: &[&str], echo: bool) -> (i32, String) {
        let data_dir = self.data_dir.to_string_lossy().into_owned();
        let mut all = vec![
            "--config",
            config.to_str().expect("utf-8 path"),
            "--data-dir",
            &data_dir,
            "--token-label",
            &self.token_label,
        ];
        all.extend_from_slice(args);
        run_cli(
            &all,
            &[("TCHAP_SECURE_TOKEN_PIN", &self.pin)],
            None,
            "",
            echo,
        )
    }
}

impl Member {
    /// `send-file` (printed like every command); the event id.
    fn send_file(&self, config: &Path, room: &str, file: &Path) -> String {
        let (s, out) = self.run(
            config,
            &["--json", "send-file", room, &file.to_string_lossy()],
        );
        expect(s == 0, "send-file");
        serde_json::from_str::<Value>(out.trim()).expect("json")["event_id"]
            .as_str()
            .expect("event id")
            .to_owned()
    }
}

fn expect(ok: bool, what: &str) {
    if !ok {
        eprintln!("demo failed: {what}");
        std::process::exit(1);
    }
}

fn main() {
    let work = tempfile::Builder::new()
        .prefix("tchap-secure-demo-")
        .tempdir()
        .expect("temp dir");

    heading(
        "1. The secure infrastructure: its own PKI, Synapse, the content scanner (antivirus), one TLS 1.3 front",
    );
    let synapse = Synapse::shared_legacy_media();
    let pki = &synapse.pki;
    println!(
        "Synapse 1.163.2 up in {:?} at {}",
        synapse.startup_time(),
        synapse.base_url
    );
    let scanner = ContentScanner::start(synapse);
    println!(
        "matrix-content-scanner 1.0.8 + ClamAV behind nginx at {} (/_matrix/media_proxy/ → \
         scanner, the rest → Synapse)",
        scanner.front_url()
    );
    println!("trust anchor: the infrastructure's own root CA (no system or user CA)");
    println!("SPKI pins:    server key {}", pki.server_pin());
    println!("              backup key {}", pki.backup_pin);
    let config_value = scanner.client_config();
    let config = work.path().join("tchap-secure.json");
    std::fs::write(
        &config,
        serde_json::to_vec_pretty(&config_value).expect("json"),
    )
    .expect("write config");
    let config_str = config.to_string_lossy().into_owned();

    heading("2. The MDM administrator checks the configuration and probes the server");
    let (s, _) = run(&["check-config", &config_str], &[], None, "");
    expect(s == 0, "check-config");
    let (s, _) = run(&["--config", &config_str, "probe"], &[], None, "");
    expect(s == 0, "probe");

    heading(
        "3. Two cabinet members, each with a hardware token (SoftHSM2 here, a smartcard or the phone's TEE for real)",
    );
    let token = SoftHsmToken::process_wide();
    let mut members = Vec::new();
    for (name, prefix) in [("Alice", "alice"), ("Bruno", "bruno")] {
        let localpart = synapse.unique_user(prefix);
        let registered = synapse.register(&localpart, PASSWORD, false);
        let token_label = format!("{prefix}-token-{}", std::process::id());
        let pin = format!("{prefix}-pin-{}", std::process::id());
        token.add_token(&token_label, &pin);
        let data_dir = work.path().join(prefix);
        members.push(Member {
            name,
            localpart,
            user_id: registered.user_id,
            data_dir,
            token_label,
            pin,
        });
    }
    let (status, _) = synapse.request(
        "PUT",
        &format!(
            "/_matrix/client/v3/profile/{}/displayname",
            members[1].user_id
        ),
        Some(&synapse.login(&members[1].localpart, PASSWORD).access_token),
        Some(&json!({"displayname": "Bruno Durand [Ministère des Armées]"})),
    );
    expect(status == 200, "set display name");
    for m in &members {
        println!(
            "{}: {} — token '{}', data directory {}",
            m.name,
            m.user_id,
            m.token_label,
            m.data_dir.display()
        );
    }

    heading("4. Each logs in over pinned TLS; PIN and password come on stdin, never as arguments");
    for m in &members {
        let data_dir = m.data_dir.to_string_lossy().into_owned();
        let (s, _) = run(
            &[
                "--config",
                &config_str,
                "--data-dir",
                &data_dir,
                "--token-label",
                &m.token_label,
                "--pin-stdin",
                "login",
                "--user",
                &m.localpart,
                "--password-stdin",
            ],
            &[],
            Some(&format!("{}\n{PASSWORD}\n", m.pin)),
            "printf '<PIN>\\n<password>\\n'",
        );
        expect(s == 0, "login");
    }
    let (alice, bruno) = (&members[0], &members[1]);
    println!("A new process restores the session from the encrypted store, without the password:");
    let (s, _) = alice.run(&config, &["whoami"]);
    expect(s == 0, "whoami");

    heading("5. Alice creates an encrypted room and invites Bruno; Bruno joins");
    let (s, out) = alice.run(
        &config,
        &[
            "--json",
            "create-room",
            "--name",
            "Cabinet du ministre",
            "--invite",
            &bruno.user_id,
        ],
    );
    expect(s == 0, "create-room");
    let room: Value = serde_json::from_str(out.trim()).expect("json");
    let room = room["room_id"].as_str().expect("room id").to_owned();
    let (s, _) = bruno.run(&config, &["rooms"]);
    expect(s == 0, "rooms");
    let (s, _) = bruno.run(&config, &["join", &room]);
    expect(s == 0, "join");
    let (s, _) = alice.run(&config, &["rooms"]);
    expect(s == 0, "rooms");
    let (s, _) = alice.run(&config, &["members", &room]);
    expect(s == 0, "members");

    heading("6. They exchange end-to-end encrypted messages (Olm room keys, Megolm messages)");
    let first = "Réunion de crise à 18h, salle Clemenceau";
    let (s, _) = alice.run(&config, &["send", &room, "--text", first]);
    expect(s == 0, "send");
    let (s, out) = bruno.run(
        &config,
        &["listen", "--max-messages", "1", "--timeout-ms", "5000"],
    );
    expect(
        s == 0 && out.contains(first),
        "Bruno decrypts Alice's message",
    );
    let reply = "Bien reçu, j'y serai.";
    let (s, _) = bruno.run(&config, &["send", &room, "--text", reply]);
    expect(s == 0, "send");
    let (s, out) = alice.run(
        &config,
        &["listen", "--max-messages", "1", "--timeout-ms", "5000"],
    );
    expect(
        s == 0 && out.contains(reply),
        "Alice decrypts Bruno's reply",
    );
    println!("Alice's view of Bruno's devices (keys pinned on first use):");
    let (s, _) = alice.run(&config, &["devices", &bruno.user_id]);
    expect(s == 0, "devices");

    heading(
        "7. Documents: encrypted on Alice's phone, scanned by the antivirus before Bruno opens them",
    );
    let note = work.path().join("note-au-ministre.txt");
    let note_text =
        "NOTE AU MINISTRE\nObjet : ordre du jour du conseil restreint (Clemenceau).\n".repeat(200);
    std::fs::write(&note, &note_text).expect("write the note");
    let note_event = alice.send_file(&config, &room, &note);
    let (s, out) = bruno.run(
        &config,
        &["listen", "--max-messages", "1", "--timeout-ms", "5000"],
    );
    expect(
        s == 0 && out.contains("note-au-ministre.txt"),
        "Bruno sees the file",
    );
    let received = work.path().join("bruno-note.txt");
    let (s, _) = bruno.run(
        &config,
        &[
            "download",
            &room,
            &note_event,
            "--out",
            &received.to_string_lossy(),
        ],
    );
    let got = std::fs::read(&received).unwrap_or_default();
    expect(
        s == 0 && got == note_text.as_bytes(),
        "Bruno's copy is Alice's document",
    );
    println!(
        "Bruno's copy is byte-identical to Alice's ({} bytes).",
        got.len()
    );

    println!("Alice sends the EICAR antivirus test file as a document:");
    let eicar = work.path().join("rapport.txt");
    std::fs::copy(scanner.eicar_path(), &eicar).expect("copy the EICAR file");
    let eicar_event = alice.send_file(&config, &room, &eicar);
    let refused = work.path().join("bruno-rapport.txt");
    let (s, _) = bruno.run(
        &config,
        &[
            "download",
            &room,
            &eicar_event,
            "--out",
            &refused.to_string_lossy(),
        ],
    );
    expect(
        s == 9,
        "the infected file must be refused with exit status 9",
    );
    expect(!refused.exists(), "nothing written for the infected file");
    println!(
        "Refused by the antivirus (exit status 9); nothing was written. Bruno's security journal:"
    );
    let (s, out) = bruno.run(&config, &["security-events"]);
    expect(s == 0 && out.contains("infected_file"), "journalled");

    heading(
        "8. Bruno's phone is off during a flight: 60 messages arrive (more than a sync shows); back on the ground, he has every one",
    );
    let burst: Vec<String> = (1..=60)
        .map(|i| format!("Point de situation n°{i} (cellule de crise)"))
        .collect();
    for body in &burst {
        let (s, _) = alice.quiet(&config, &["send", &room, "--text", body]);
        expect(s == 0, "send");
    }
    println!(
        "Alice sent {} messages while Bruno was offline.",
        burst.len()
    );
    println!("$ tchap-secure … --json sync   (Bruno, back online)");
    let (s, out) = bruno.quiet(&config, &["--json", "sync"]);
    let summary: Value = serde_json::from_str(out.trim()).unwrap_or_default();
    expect(
        s == 0 && summary["gaps_opened"] == 1 && summary["gaps_open"] == 0,
        "the limited sync opened one gap and filled it",
    );
    let (s, out) = bruno.quiet(&config, &["--json", "messages", &room, "--limit", "500"]);
    let got: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["state"] == "decrypted")
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .filter(|b| b.starts_with("Point de situation"))
        .collect();
    expect(
        s == 0 && got == burst,
        "Bruno has all 60, decrypted, in order, once each",
    );
    println!(
        "Bruno's sync filled the gap by back-pagination ({} events): all {} messages decrypted, in order, once each.",
        summary["backfilled"],
        got.len()
    );

    heading("9. What the homeserver stored for that room: ciphertext only");
    let db = rusqlite::Connection::open_with_flags(
        synapse.database_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open Synapse's database");
    let mut stmt = db
        .prepare("SELECT e.type, j.json FROM events e JOIN event_json j USING (event_id) WHERE e.room_id = ?1 ORDER BY e.stream_ordering")
        .expect("query");
    let rows: Vec<(String, String)> = stmt
        .query_map([&room], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let encrypted: Vec<&String> = rows
        .iter()
        .filter(|(t, _)| t == "m.room.encrypted")
        .map(|(_, j)| j)
        .collect();
    let clear_messages = rows.iter().filter(|(t, _)| t == "m.room.message").count();
    println!(
        "events in the room: {}; m.room.encrypted: {}; m.room.message in clear: {clear_messages}",
        rows.len(),
        encrypted.len()
    );
    if let Some(sample) = encrypted.first() {
        let v: Value = serde_json::from_str(sample).expect("json");
        let ciphertext = v["content"]["ciphertext"].as_str().unwrap_or_default();
        println!(
            "one of them: algorithm {}, session {}, ciphertext {}… ({} bytes)",
            v["content"]["algorithm"],
            v["content"]["session_id"],
            &ciphertext[..ciphertext.len().min(48)],
            ciphertext.len()
        );
    }
    let leaked = rows.iter().any(|(_, j)| {
        j.contains("Clemenceau") || j.contains("Bien reçu") || j.contains("note-au-ministre")
    });
    println!(
        "message text found in the server's database: {}",
        if leaked { "YES" } else { "no" }
    );
    expect(
        encrypted.len() >= 2 && clear_messages == 0 && !leaked,
        "the server must hold ciphertext only",
    );
    let media = tchap_secure_tests::harness::files_under(&synapse.data_dir.join("media_store"));
    let clear_documents = media
        .iter()
        .filter(|p| {
            tchap_secure_tests::harness::contains_bytes(
                &std::fs::read(p).unwrap_or_default(),
                b"NOTE AU MINISTRE",
            )
        })
        .count();
    println!(
        "files in the server's media store: {}; holding the note in clear: {clear_documents}",
        media.len()
    );
    expect(
        clear_documents == 0,
        "the server must hold the documents encrypted",
    );

    heading(
        "10. A network attacker with a certificate from another CA, or our CA with another key, gets nothing",
    );
    let attacker = Pki::generate();
    let mut forged = config_value.clone();
    forged["spki_pins_sha256"] = json!([attacker.server_pin(), attacker.backup_pin]);
    let forged_path = work.path().join("wrong-pins.json");
    std::fs::write(&forged_path, forged.to_string()).expect("write");
    let (s, _) = run(
        &["--config", &forged_path.to_string_lossy(), "probe"],
        &[],
        None,
        "",
    );
    expect(s == 3, "pin mismatch must exit 3");

    heading("11. A thief with the data directory but not the token gets ciphertext");
    for entry in std::fs::read_dir(&alice.data_dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            continue; // spool/: unnamed temp files only, nothing left
        }
        let bytes = std::fs::read(&path).expect("read");
        let head: String = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
        println!(
            "    {:<24} {:>8} bytes  first bytes {head}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            bytes.len()
        );
        expect(
            !bytes.starts_with(b"SQLite format 3"),
            "database must be encrypted",
        );
        expect(
            !bytes
                .windows(alice.user_id.len())
                .any(|w| w == alice.user_id.as_bytes()),
            "no user id at rest",
        );
    }
    println!("With another token, the vault does not open:");
    let (s, _) = run(
        &[
            "--config",
            &config_str,
            "--data-dir",
            &alice.data_dir.to_string_lossy(),
            "--token-label",
            &bruno.token_label,
            "whoami",
        ],
        &[("TCHAP_SECURE_TOKEN_PIN", &bruno.pin)],
        None,
        "",
    );
    expect(s == 6, "another token must exit 6");

    heading("12. Remote wipe: the KEK is destroyed on the token, the data directory erased");
    let (s, _) = alice.run(&config, &["wipe", "--yes"]);
    expect(s == 0, "wipe");
    println!("\nDemo complete.");
}
