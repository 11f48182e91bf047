//! The measured process of `bench_notification` (see there): a cold process that opens the
//! vault and the database of Bob's data directory and shows one pushed event.
//!
//! ```text
//! bench_notification_child <work-dir> <room> <event> --spawned-at-ns <CLOCK_MONOTONIC ns>
//! ```
//!
//! `SOFTHSM2_CONF` comes from the parent (its token); `<work-dir>` holds `token.json`, `pin`,
//! `config.json`, `expected.json` and Bob's data directory `bob/`. Prints one JSON line, never
//! the body.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tchap_secure_core::bench_internals::{elapsed_ms, monotonic_ns, peak_rss_kib};
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use zeroize::Zeroizing;

tchap_secure_memory::install_zeroizing_allocator!();

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    child(&args);
}

fn child(args: &[String]) {
    let t_main = monotonic_ns();
    let (Some(work), Some(room), Some(event)) = (args.first(), args.get(1), args.get(2)) else {
        panic!("usage: bench_notification_child <work-dir> <room> <event> --spawned-at-ns N");
    };
    let spawned_at = args
        .iter()
        .position(|a| a == "--spawned-at-ns")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse::<u64>().expect("--spawned-at-ns"))
        .unwrap_or(t_main);
    let work = PathBuf::from(work);
    let config = Config::from_json(&std::fs::read(work.join("config.json")).expect("config"))
        .expect("config");
    let expected = read_json(&work.join("expected.json"));
    let t_inputs = monotonic_ns();
    let token = read_json(&work.join("token.json"));
    let pin = Zeroizing::new(std::fs::read(work.join("pin")).expect("pin"));
    let vault = Pkcs11Vault::open(
        &Pkcs11Config {
            module: PathBuf::from(token["module"].as_str().expect("module")),
            token_label: token["label"].as_str().expect("label").to_owned(),
        },
        &SecretBytes::from(&pin[..]),
    )
    .expect("open the token");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let t_token = monotonic_ns();
    let mut client = {
        let _entered = rt.enter();
        Client::open(config, &work.join("bob"), &vault).expect("open the client")
    };
    let t_open = monotonic_ns();
    let n = rt
        .block_on(client.notification(room, event, Duration::from_secs(5)))
        .expect("the notification");
    let t_done = monotonic_ns();
    let body_ok = n.body.as_deref() == expected[event.as_str()].as_str();
    assert!(body_ok, "the notification shows another body");
    println!(
        "{}",
        json!({
            "scenario": "notification_cold_process",
            "implementation": "tchap-secure",
            "ms": elapsed_ms(spawned_at, t_done),
            "process_start_ms": elapsed_ms(spawned_at, t_main),
            "token_and_runtime_ms": elapsed_ms(t_inputs, t_token),
            "open_ms": elapsed_ms(t_token, t_open),
            "notify_ms": elapsed_ms(t_open, t_done),
            "body_ok": body_ok,
            "peak_rss_kib": peak_rss_kib(),
        })
    );
    drop(client);
    rt.shutdown_background();
}
