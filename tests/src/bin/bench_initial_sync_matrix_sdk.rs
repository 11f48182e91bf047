//! Initial sync of matrix-sdk 0.18 against the real Synapse (issue 7, scenarios 4 and 5), in a
//! fresh process (no custom global allocator).
//!
//! ```text
//! bench_initial_sync_matrix_sdk <scenario-dir> <work-dir>
//! ```
//!
//! `<scenario-dir>` is an `InitialSyncAccount` of `tchap_secure_tests::bench_setup`
//! (`scenario.json`, `password` and `matrix-sdk.passphrase`, both mode 0600); the SQLite
//! stores are created in `<work-dir>/store`.
//!
//! Measured, as on a new phone: a multi-threaded runtime, `Client::builder()` with the run's
//! root CA as the only trust anchor and passphrase-encrypted SQLite stores (`sqlite_store`,
//! four new stores), `matrix_auth().login_username(…)` (the SDK uploads its device keys
//! during its first sync), then `Client::sync_once` (default settings: no filter, no timeout)
//! until the client lists every room of the account as joined. Prints one JSON line like
//! `bench_initial_sync_ours` (`ms` from `main` after the scenario files were read;
//! `peak_rss_kib` from `VmHWM`).

use std::path::{Path, PathBuf};
use tchap_secure_core::bench_internals::{elapsed_ms, monotonic_ns, peak_rss_kib};

use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::reqwest::Certificate;
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// Syncs allowed before the rooms must all be there.
const MAX_SYNCS: usize = 20;

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn main() {
    let t_main = monotonic_ns();
    let args: Vec<String> = std::env::args().collect();
    let (Some(scenario), Some(work)) = (args.get(1), args.get(2)) else {
        panic!("usage: bench_initial_sync_matrix_sdk <scenario-dir> <work-dir>");
    };
    let (scenario, work) = (PathBuf::from(scenario), PathBuf::from(work));
    let meta = read_json(&scenario.join("scenario.json"));
    let rooms = usize::try_from(meta["rooms"].as_u64().expect("rooms")).expect("room count");
    let localpart = meta["localpart"].as_str().expect("localpart").to_owned();
    let homeserver = meta["config"]["homeserver_url"]
        .as_str()
        .expect("homeserver_url")
        .to_owned();
    let roots_pem: String = meta["config"]["trust_anchors_pem"]
        .as_array()
        .expect("trust anchors")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let password =
        Zeroizing::new(std::fs::read_to_string(scenario.join("password")).expect("password"));
    let passphrase = Zeroizing::new(
        std::fs::read_to_string(scenario.join("matrix-sdk.passphrase")).expect("passphrase"),
    );
    let t_inputs = monotonic_ns();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        let roots = Certificate::from_pem_bundle(roots_pem.as_bytes()).expect("the root CA");
        let client = Client::builder()
            .homeserver_url(&homeserver)
            .sqlite_store(work.join("store"), Some(passphrase.trim()))
            .add_root_certificates(roots)
            .disable_built_in_root_certificates()
            .build()
            .await
            .expect("build the client");
        let t_open = monotonic_ns();
        client
            .matrix_auth()
            .login_username(&localpart, &password)
            .initial_device_display_name("bench initial sync")
            .await
            .expect("log in");
        let t_login = monotonic_ns();
        let mut syncs = 0;
        let mut events = 0;
        loop {
            let response = client
                .sync_once(SyncSettings::default())
                .await
                .expect("sync_once");
            syncs += 1;
            events += response
                .rooms
                .joined
                .values()
                .map(|r| r.timeline.events.len())
                .sum::<usize>();
            let joined = client.joined_rooms().len();
            if joined >= rooms || syncs >= MAX_SYNCS {
                return (t_open, t_login, syncs, joined, events);
            }
        }
    });
    let (t_open, t_login, syncs, joined, events) = result;
    let t_synced = monotonic_ns();
    let peak = peak_rss_kib().expect("VmHWM in /proc/self/status");
    assert!(
        joined >= rooms,
        "{joined} of {rooms} rooms after {syncs} syncs"
    );
    println!(
        "{}",
        json!({
            "scenario": format!("initial_sync_{rooms}_rooms"),
            "implementation": "matrix-sdk",
            "ms": elapsed_ms(t_inputs, t_synced),
            "peak_rss_kib": peak,
            "open_ms": elapsed_ms(t_inputs, t_open),
            "login_ms": elapsed_ms(t_open, t_login),
            "sync_ms": elapsed_ms(t_login, t_synced),
            "inputs_ms": elapsed_ms(t_main, t_inputs),
            "syncs": syncs,
            "rooms": joined,
            "timeline_events": events,
        })
    );
    runtime.shutdown_background();
}
