//! Cold open of Tchap Secure, measured in a fresh process (issue 7, scenario 3).
//!
//! ```text
//! bench_cold_open_ours prepare <fixture-dir>
//! bench_cold_open_ours run <fixture-dir> [--spawned-at-ns <CLOCK_MONOTONIC ns>] [--probe <k>]
//! ```
//!
//! Environment: `SOFTHSM2_CONF` must name `<fixture-dir>/softhsm/softhsm2.conf` (SoftHSM2
//! reads it at `C_Initialize`; the fixture's token lives next to its data). Use
//! `tchap_secure_tests::bench_setup`, which makes the fixture and runs this binary.
//!
//! `prepare` writes the fixture with `tchap_secure_core::bench_fixtures::generate_cold_open`
//! (1,000 encrypted rooms, 100,000 inbound Megolm sessions, a logged-in session) into
//! `<fixture-dir>/ours`, plus what the other implementations need: `sync.json` (the `/sync`
//! responses applied), `room-keys.jsonl` (mode 0600: every session as an `ExportedRoomKey`),
//! `probes.json` (messages not in the store, each encrypted with a stored session) and
//! `raw-keys.json` (mode 0600: the database and pickle keys, for the raw SQLCipher limit). It
//! reads `token.json` (PKCS#11 module and token label), `pin` (mode 0600) and `config.json`,
//! written by `bench_setup`.
//!
//! `run` is what a user waits for when the app starts, with the shipped global allocator:
//! 1. `Pkcs11Vault::open`: PKCS#11 `C_Initialize`, token lookup, `C_Login`;
//! 2. as the JNI bridge opens a client: a 2-worker tokio runtime built and entered, then
//!    `Client::open`: `vault.bin` unwrapped by the token, SQLCipher opened with the derived
//!    key, schema version checked, session restored, Olm account unpickled;
//! 3. the room list (`Store::rooms`: 1,000 rooms with their member counts), checked;
//! 4. the first decryption: `Client::try_decrypt` of probe `k` (default: pid mod the probe
//!    count) — the inbound session is read from the database, unpickled with the pickle key,
//!    the sender and room checked, the message decrypted — its body checked.
//!
//! Inbound sessions are loaded lazily (by room and session id, on first use), so "sessions
//! loaded" means: any of the 100,000 decrypts at once, with no further set-up.
//!
//! It prints one JSON line: `ms` (process start → 4 done), `open_ms` (process start → 2 done),
//! the steps from `main`, and `peak_rss_kib` (`VmHWM`). "Process start" is the parent's
//! `CLOCK_MONOTONIC` reading just before `spawn` (`--spawned-at-ns`); without it, times count
//! from `main`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tchap_secure_core::bench_internals::{elapsed_ms, monotonic_ns, peak_rss_kib};

use serde_json::{Value, json};
use tchap_secure_core::bench_fixtures::{self, ColdOpenOutput, ColdOpenSpec, Probe};
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes, Vault, VaultBinding};
use zeroize::Zeroizing;

tchap_secure_memory::install_zeroizing_allocator!();

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn private_file(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(dir: &str) -> Self {
        let dir = PathBuf::from(dir);
        let conf = dir.join("softhsm").join("softhsm2.conf");
        let env = std::env::var_os("SOFTHSM2_CONF");
        assert_eq!(
            env.as_deref(),
            Some(conf.as_os_str()),
            "SOFTHSM2_CONF must be {} (the fixture's own token directory)",
            conf.display()
        );
        Self { dir }
    }

    fn vault(&self) -> Pkcs11Vault {
        let token = read_json(&self.dir.join("token.json"));
        let pin = Zeroizing::new(
            std::fs::read(self.dir.join("pin")).expect("read the fixture's PIN file"),
        );
        Pkcs11Vault::open(
            &Pkcs11Config {
                module: PathBuf::from(token["module"].as_str().expect("module in token.json")),
                token_label: token["label"]
                    .as_str()
                    .expect("label in token.json")
                    .to_owned(),
            },
            &SecretBytes::from(&pin[..]),
        )
        .expect("open the fixture's token")
    }

    fn config(&self) -> Config {
        let bytes = std::fs::read(self.dir.join("config.json")).expect("read config.json");
        Config::from_json(&bytes).expect("config.json")
    }
}

fn prepare(fixture: &Fixture) {
    let started = std::time::Instant::now();
    let vault = fixture.vault();
    let config = fixture.config();
    let spec: ColdOpenSpec =
        serde_json::from_value(read_json(&fixture.dir.join("spec.json"))).expect("spec.json");
    let mut keys = BufWriter::new(private_file(&fixture.dir.join("room-keys.jsonl")));
    let output: ColdOpenOutput = bench_fixtures::generate_cold_open(
        &config,
        &fixture.dir.join("ours"),
        &vault,
        &spec,
        "syt_YmVuY2g_cold_open_fixture_token",
        &mut keys,
    )
    .unwrap_or_else(|e| panic!("generate the fixture: {e}"));
    keys.into_inner()
        .expect("flush room-keys.jsonl")
        .sync_all()
        .expect("sync room-keys.jsonl");
    std::fs::write(
        fixture.dir.join("sync.json"),
        serde_json::to_vec(&output.sync_responses).expect("encode the sync responses"),
    )
    .expect("write sync.json");
    std::fs::write(
        fixture.dir.join("probes.json"),
        serde_json::to_vec(&output.probes).expect("encode the probes"),
    )
    .expect("write probes.json");
    // The raw limit opens the same database without the vault: it needs the derived keys.
    let root = Vault::open(
        &fixture.dir.join("ours"),
        &vault,
        &VaultBinding {
            server_name: config.server_name().to_owned(),
        },
    )
    .expect("open the fixture's vault");
    let raw = Zeroizing::new(
        json!({
            "database_key_hex": *hex(root.database_key().expose()),
            "pickle_key_hex": *hex(root.pickle_key().expose()),
        })
        .to_string(),
    );
    let mut file = private_file(&fixture.dir.join("raw-keys.json"));
    file.write_all(raw.as_bytes()).expect("write raw-keys.json");
    file.sync_all().expect("sync raw-keys.json");
    std::fs::write(
        fixture.dir.join("ours-manifest.json"),
        json!({
            "user_id": output.user_id,
            "device_id": output.device_id,
            "rooms": output.rooms,
            "inbound_sessions": output.inbound_sessions,
            "timeline_events": output.timeline_events,
            "probes": output.probes.len(),
            "generation_s": started.elapsed().as_secs_f64(),
        })
        .to_string(),
    )
    .expect("write ours-manifest.json");
    // Check the fixture the way `run` will use it.
    drop(vault);
    println!(
        "{}",
        json!({ "prepared": "tchap-secure", "rooms": output.rooms,
                "inbound_sessions": output.inbound_sessions,
                "seconds": started.elapsed().as_secs_f64() })
    );
}

fn run(fixture: &Fixture, spawned_at: Option<u64>, probe: Option<usize>, t_main: u64) {
    let probes: Vec<Probe> =
        serde_json::from_value(read_json(&fixture.dir.join("probes.json"))).expect("probes");
    let manifest = read_json(&fixture.dir.join("ours-manifest.json"));
    let index = probe.unwrap_or(std::process::id() as usize) % probes.len();
    let probe = &probes[index];
    let config = fixture.config();
    let t_inputs = monotonic_ns();

    let vault = fixture.vault();
    let t_token = monotonic_ns();
    // As the JNI bridge opens a client: its runtime first, entered while opening.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let entered = runtime.enter();
    let t_runtime = monotonic_ns();
    let mut client =
        Client::open(config, &fixture.dir.join("ours"), &vault).expect("open the client");
    let t_open = monotonic_ns();
    assert!(client.session().is_some(), "the session was not restored");
    let rooms = client.store().rooms().expect("list the rooms");
    let encrypted = rooms.iter().filter(|r| r.encryption.is_some()).count();
    let t_rooms = monotonic_ns();
    let body = client
        .try_decrypt(&probe.room_id, &probe.event)
        .expect("decrypt the probe");
    let t_ready = monotonic_ns();
    assert_eq!(body, probe.body, "the probe decrypted to another body");
    assert_eq!(
        Some(rooms.len() as u64),
        manifest["rooms"].as_u64(),
        "room count"
    );
    assert_eq!(encrypted, rooms.len(), "every room is encrypted");

    let start = spawned_at.unwrap_or(t_main);
    println!(
        "{}",
        json!({
            "scenario": "cold_open",
            "implementation": "tchap-secure",
            "ms": elapsed_ms(start, t_ready),
            "open_ms": elapsed_ms(start, t_open),
            "from": if spawned_at.is_some() { "spawn" } else { "main" },
            "spawn_to_main_ms": spawned_at.map(|s| elapsed_ms(s, t_main)),
            "inputs_ms": elapsed_ms(t_main, t_inputs),
            "token_ms": elapsed_ms(t_inputs, t_token),
            "runtime_ms": elapsed_ms(t_token, t_runtime),
            "client_open_ms": elapsed_ms(t_runtime, t_open),
            "rooms_ms": elapsed_ms(t_open, t_rooms),
            "first_decrypt_ms": elapsed_ms(t_rooms, t_ready),
            "rooms": rooms.len(),
            "inbound_sessions": manifest["inbound_sessions"],
            "probe": index,
            "peak_rss_kib": peak_rss_kib(),
        })
    );
    drop(entered);
    runtime.shutdown_background();
}

fn main() {
    let t_main = monotonic_ns();
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: bench_cold_open_ours prepare|run <fixture-dir> [--spawned-at-ns N] [--probe K]";
    let (Some(mode), Some(dir)) = (args.get(1), args.get(2)) else {
        panic!("{usage}");
    };
    let mut spawned_at = None;
    let mut probe = None;
    let mut rest = args[3..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap_or_else(|| panic!("{usage}"));
        match flag.as_str() {
            "--spawned-at-ns" => spawned_at = Some(value.parse().expect("--spawned-at-ns")),
            "--probe" => probe = Some(value.parse().expect("--probe")),
            _ => panic!("{usage}"),
        }
    }
    let fixture = Fixture::new(dir);
    match mode.as_str() {
        "prepare" => prepare(&fixture),
        "run" => run(&fixture, spawned_at, probe, t_main),
        _ => panic!("{usage}"),
    }
}
