//! Initial sync of Tchap Secure against the real Synapse (issue 7, scenarios 4 and 5), in a
//! fresh process with the shipped global allocator.
//!
//! ```text
//! bench_initial_sync_ours <scenario-dir> <work-dir>
//! ```
//!
//! `<scenario-dir>` is an `InitialSyncAccount` of `tchap_secure_tests::bench_setup`
//! (`scenario.json`: the client configuration for the run's Synapse, the user and its room
//! count; `password`, mode 0600). `<work-dir>` is fresh: `token.json` and `pin` (mode 0600) of
//! a new SoftHSM2 token whose configuration `SOFTHSM2_CONF` names; the data directory is
//! created in `<work-dir>/data`. `bench_setup::InitialSyncAccount::run` prepares both.
//!
//! Measured, as on a new phone: the token opened (`Pkcs11Vault::open`), a 2-worker runtime
//! (as the JNI bridge), `Client::open` on the empty directory (vault created: KEK generated
//! on the token; SQLCipher database created and migrated), `Client::login` (password login,
//! device keys and one-time keys generated and uploaded), then `Client::sync_once` (timeout
//! 0) until the store lists every room of the account (one sync in practice: Synapse's
//! initial sync carries all joined rooms). Prints one JSON line: `ms` (from `main`, after the
//! scenario files were read), the phases, the rooms and timeline events stored, and
//! `peak_rss_kib` (`VmHWM` of `/proc/self/status`: the peak resident set of the process).

use std::path::{Path, PathBuf};
use std::time::Duration;
use tchap_secure_core::bench_internals::{elapsed_ms, monotonic_ns, peak_rss_kib};

use serde_json::{Value, json};
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use zeroize::Zeroizing;

tchap_secure_memory::install_zeroizing_allocator!();

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
        panic!("usage: bench_initial_sync_ours <scenario-dir> <work-dir>");
    };
    let (scenario, work) = (PathBuf::from(scenario), PathBuf::from(work));
    let conf = work.join("softhsm").join("softhsm2.conf");
    assert_eq!(
        std::env::var_os("SOFTHSM2_CONF").as_deref(),
        Some(conf.as_os_str()),
        "SOFTHSM2_CONF must be {}",
        conf.display()
    );
    let meta = read_json(&scenario.join("scenario.json"));
    let rooms = usize::try_from(meta["rooms"].as_u64().expect("rooms")).expect("room count");
    let localpart = meta["localpart"].as_str().expect("localpart").to_owned();
    let config = Config::from_json(meta["config"].to_string().as_bytes()).expect("the config");
    let password = SecretBytes::new(std::fs::read(scenario.join("password")).expect("password"));
    let token = read_json(&work.join("token.json"));
    let pin = Zeroizing::new(std::fs::read(work.join("pin")).expect("pin"));
    let t_inputs = monotonic_ns();

    let vault = Pkcs11Vault::open(
        &Pkcs11Config {
            module: PathBuf::from(token["module"].as_str().expect("module")),
            token_label: token["label"].as_str().expect("label").to_owned(),
        },
        &SecretBytes::from(&pin[..]),
    )
    .expect("open the token");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let t_token = monotonic_ns();
    let mut client = {
        let _entered = runtime.enter();
        Client::open(config, &work.join("data"), &vault).expect("open the client")
    };
    let t_open = monotonic_ns();
    let (t_login, syncs, stored, timeline) = runtime.block_on(async {
        client
            .login(&localpart, &password, "bench initial sync")
            .await
            .expect("log in");
        let t_login = monotonic_ns();
        let mut syncs = 0;
        let mut timeline = 0;
        loop {
            let summary = client.sync_once(Duration::ZERO).await.expect("sync_once");
            syncs += 1;
            timeline += summary.messages.len();
            let stored = client.store().rooms().expect("list the rooms").len();
            if stored >= rooms || syncs >= MAX_SYNCS {
                return (t_login, syncs, stored, timeline);
            }
        }
    });
    let t_synced = monotonic_ns();
    let peak = peak_rss_kib().expect("VmHWM in /proc/self/status");
    assert!(
        stored >= rooms,
        "{stored} of {rooms} rooms after {syncs} syncs"
    );
    // Every stored timeline event (undecryptable here: the keys were never shared with this
    // new device).
    let events: usize = client
        .store()
        .rooms()
        .expect("rooms")
        .iter()
        .map(|r| {
            client
                .messages(&r.room_id, 1_000)
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    println!(
        "{}",
        json!({
            "scenario": format!("initial_sync_{rooms}_rooms"),
            "implementation": "tchap-secure",
            "ms": elapsed_ms(t_inputs, t_synced),
            "peak_rss_kib": peak,
            "token_and_runtime_ms": elapsed_ms(t_inputs, t_token),
            "open_ms": elapsed_ms(t_token, t_open),
            "login_ms": elapsed_ms(t_open, t_login),
            "sync_ms": elapsed_ms(t_login, t_synced),
            "inputs_ms": elapsed_ms(t_main, t_inputs),
            "syncs": syncs,
            "rooms": stored,
            "timeline_events": events,
            "decrypted_messages": timeline,
        })
    );
    drop(client);
    runtime.shutdown_background();
}
