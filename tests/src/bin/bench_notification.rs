//! Push → decrypted notification from a cold process (issue 17's benchmark): what a member
//! waits for between the push waking the app and the notification it shows.
//!
//! ```text
//! bench_notification [--runs 21] [--out bench/raw]
//! ```
//!
//! The parent sets up, on the real Synapse of the testbed (loopback, pinned TLS): Alice and
//! Bob in an encrypted room; Bob syncs once (he holds Alice's Megolm session), then Alice sends
//! `runs` messages that Bob never syncs. Each run is a *fresh process*
//! (`bench_notification_child`, next to this binary), timed from the parent's `CLOCK_MONOTONIC` just before `spawn` to the child's
//! decrypted notification:
//! 1. `Pkcs11Vault::open` (PKCS#11 `C_Initialize`, token lookup, `C_Login`; a real SoftHSM2
//!    token), a 2-worker tokio runtime;
//! 2. `Client::open`: `vault.bin` unwrapped by the token, SQLCipher opened, session restored,
//!    Olm account unpickled;
//! 3. `Client::notification`: the event fetched over pinned TLS, decrypted with the stored
//!    session (rolled-back transaction), names read — the body checked against the sent one.
//!
//! The child prints one JSON line (`ms`, `open_ms`, `notify_ms`, …; never the body); the
//! parent appends each run to `<out>/notification.jsonl` and prints the median. Goal: under
//! 150 ms (median of 21). Build with `--profile bench` (opt-level s as shipped).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tchap_secure_core::bench_internals::monotonic_ns;
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use tchap_secure_tests::harness::{PASSWORD, password};
use tchap_secure_tests::softhsm::SoftHsmToken;
use tchap_secure_tests::synapse::Synapse;
use zeroize::Zeroizing;

tchap_secure_memory::install_zeroizing_allocator!();

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn open_vault(work: &Path) -> Pkcs11Vault {
    let token = read_json(&work.join("token.json"));
    let pin = Zeroizing::new(std::fs::read(work.join("pin")).expect("pin"));
    Pkcs11Vault::open(
        &Pkcs11Config {
            module: PathBuf::from(token["module"].as_str().expect("module")),
            token_label: token["label"].as_str().expect("label").to_owned(),
        },
        &SecretBytes::from(&pin[..]),
    )
    .expect("open the token")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = arg(&args, "--runs", "21").parse().expect("--runs");
    let out = PathBuf::from(arg(&args, "--out", "bench/raw"));
    std::fs::create_dir_all(&out).expect("the output directory");
    let work = tempfile::Builder::new()
        .prefix("tchap-bench-notification-")
        .tempdir()
        .expect("a work directory");
    // The process-wide SoftHSM2 token of the testbed (its configuration exported before
    // `main`); the children are given the same configuration.
    let token = SoftHsmToken::process_wide();
    std::fs::write(
        work.path().join("token.json"),
        json!({ "module": token.module, "label": token.label }).to_string(),
    )
    .expect("token.json");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(work.path().join("pin"))
        .and_then(|mut f| f.write_all(token.user_pin.as_bytes()))
        .expect("pin");
    let synapse = Synapse::shared();
    let config = synapse.client_config();
    std::fs::write(work.path().join("config.json"), config.to_string()).expect("config.json");
    let config = Config::from_json(config.to_string().as_bytes()).expect("config");
    let vault = open_vault(work.path());
    let rt = runtime();
    let open = |who: &str| {
        let _entered = rt.enter();
        Client::open(config.clone(), &work.path().join(who), &vault).expect("open")
    };
    let (mut alice, mut bob) = (open("alice"), open("bob"));
    let a = synapse.unique_user("bench-nt-alice");
    let b = synapse.unique_user("bench-nt-bob");
    synapse.register(&a, PASSWORD, false);
    let bob_id = synapse.register(&b, PASSWORD, false).user_id;
    let mut expected = serde_json::Map::new();
    let events = rt.block_on(async {
        alice.login(&a, &password(), "alice").await.expect("login");
        bob.login(&b, &password(), "bob").await.expect("login");
        bob.sync_once(Duration::ZERO).await.expect("sync");
        let room = alice
            .create_room(Some("Cabinet"), std::slice::from_ref(&bob_id), false)
            .await
            .expect("room");
        bob.sync_once(Duration::ZERO).await.expect("sync");
        bob.join(&room).await.expect("join");
        bob.sync_once(Duration::ZERO).await.expect("sync");
        alice.sync_once(Duration::ZERO).await.expect("sync");
        alice.send_text(&room, "warm-up").await.expect("send");
        // Bob holds the session from here on; the measured messages reach him by push only.
        for _ in 0..20 {
            let s = bob
                .sync_once(Duration::from_millis(500))
                .await
                .expect("sync");
            if s.messages
                .iter()
                .any(|m| m.body.as_deref() == Some("warm-up"))
            {
                break;
            }
        }
        let mut events = Vec::new();
        for k in 0..runs {
            let body = format!("notification {k}: point de situation à 15 h");
            let event = alice.send_text(&room, &body).await.expect("send");
            expected.insert(event.clone(), json!(body));
            events.push((room.clone(), event));
        }
        events
    });
    std::fs::write(
        work.path().join("expected.json"),
        Value::Object(expected).to_string(),
    )
    .expect("expected.json");
    drop(bob);
    let exe = std::env::current_exe()
        .expect("this binary")
        .with_file_name("bench_notification_child");
    let mut times = Vec::new();
    let log = out.join("notification.jsonl");
    for (room, event) in &events {
        let mut command = Command::new(&exe);
        command
            .args([work.path().to_str().expect("utf-8 path"), room, event])
            .envs(token.env())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .arg("--spawned-at-ns");
        let spawned_at = monotonic_ns();
        command.arg(spawned_at.to_string());
        let output = command.output().expect("spawn the child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "child failed: {stdout}");
        let line = stdout.lines().last().expect("a JSON line");
        let v: Value = serde_json::from_str(line).expect("JSON");
        times.push(v["ms"].as_f64().expect("ms"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("notification.jsonl");
        writeln!(file, "{line}").expect("append");
        eprintln!("{line}");
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{}",
        json!({
            "scenario": "notification_cold_process",
            "runs": times.len(),
            "median_ms": median,
            "min_ms": times[0],
            "max_ms": times[times.len() - 1],
            "goal_ms": 150,
        })
    );
    drop(alice);
    rt.shutdown_background();
}
