//! Cold open: what a cabinet member waits for when the app starts — the vault's root secret
//! unwrapped by the PKCS#11 token (a real SoftHSM2 token), the SQLCipher database opened and
//! migrated, the session restored. Run with `cargo bench -p tchap-secure-tests --bench cold_open`.
//!
//! Two groups:
//! - `cold_open (PKCS#11 unwrap + SQLCipher open + session restore)`: an empty store, opened
//!   again and again in this process;
//! - `cold_open_1000_rooms_100k_sessions` (issue 7): the cached fixture of
//!   `tchap_secure_tests::bench_setup` (1,000 encrypted rooms, 100,000 inbound Megolm sessions;
//!   written on first use, a few minutes), each iteration a *fresh process* of the measuring
//!   binaries (`src/bin/bench_cold_open_*.rs`), timed from the parent's `CLOCK_MONOTONIC` just
//!   before `spawn` to the child's "ready" (client open, room list loaded, first message
//!   decrypted with a stored session; see each binary's documentation). Functions
//!   `tchap_secure`, `matrix_sdk` (passphrase-encrypted stores, as `sqlite_store` makes them),
//!   `matrix_sdk_raw_key` (stores with a raw key: no PBKDF2) and `raw_sqlcipher` (the limit).
//!   Cargo builds the binaries before the bench. Every run's JSON line goes to stderr, and
//!   at the end the medians per implementation of `ms` (spawn → ready) and `open_ms`.
//!   With `TCHAP_SECURE_BENCH_DROP_CACHES=1` (root), the page cache is dropped before every
//!   run (group `…_page_cache_dropped`): files come from disk, as after a reboot.

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use tchap_secure_tests::bench_setup::{self, Bins, ColdOpenImpl};
use tchap_secure_tests::pki::Pki;
use tchap_secure_tests::softhsm::SoftHsmToken;

fn cold_open(c: &mut Criterion) {
    let token = SoftHsmToken::process_wide();
    let vault = Pkcs11Vault::open(
        &Pkcs11Config {
            module: token.module.clone(),
            token_label: token.label.clone(),
        },
        &SecretBytes::from(token.user_pin.as_bytes()),
    )
    .expect("open the token");
    let pki = Pki::generate();
    let config = Config::from_json(
        serde_json::json!({
            "homeserver_url": "https://localhost:8448",
            "server_name": "secure.tchap.test",
            "trust_anchors_pem": pki.root_ca_pem,
            "spki_pins_sha256": [pki.server_pin(), pki.backup_pin],
        })
        .to_string()
        .as_bytes(),
    )
    .expect("config");
    let dir = tempfile::tempdir().expect("temp dir");
    // First open creates the vault (KEK on the token) and the database.
    drop(Client::open(config.clone(), dir.path(), &vault).expect("create"));
    c.bench_function(
        "cold_open (PKCS#11 unwrap + SQLCipher open + session restore)",
        |b| {
            b.iter(|| {
                let client = Client::open(config.clone(), dir.path(), &vault).expect("open");
                std::hint::black_box(client.session());
            })
        },
    );
}

/// Fresh-process cold opens of the issue-7 fixture: each iteration's duration is what the
/// child reported (parent's clock before `spawn` → ready), not the process's exit.
fn cold_open_1000_rooms_100k_sessions(c: &mut Criterion) {
    let bins = Bins::in_dir(
        std::path::Path::new(env!("CARGO_BIN_EXE_bench_cold_open_ours"))
            .parent()
            .expect("the binaries' directory"),
    );
    let fixture = bench_setup::cold_open_fixture(&bins);
    let probes = fixture.manifest["probes"].as_u64().unwrap_or(1) as usize;
    let drop_caches = std::env::var_os("TCHAP_SECURE_BENCH_DROP_CACHES").is_some_and(|v| v == "1");
    let mut runs: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    let mut group = c.benchmark_group(if drop_caches {
        "cold_open_1000_rooms_100k_sessions_page_cache_dropped"
    } else {
        "cold_open_1000_rooms_100k_sessions"
    });
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(2));
    for (function, implementation) in [
        ("tchap_secure", ColdOpenImpl::TchapSecure),
        ("matrix_sdk", ColdOpenImpl::MatrixSdk),
        ("matrix_sdk_raw_key", ColdOpenImpl::MatrixSdkRawKey),
        ("raw_sqlcipher", ColdOpenImpl::RawSqlcipher),
    ] {
        let mut run = 0usize;
        group.bench_function(function, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    if drop_caches {
                        assert!(
                            bench_setup::drop_page_cache(),
                            "dropping the page cache needs root"
                        );
                    }
                    let result = fixture.run(&bins, implementation, run % probes);
                    run += 1;
                    eprintln!("{result}");
                    let ms = result["ms"].as_f64().expect("ms in the binary's JSON");
                    total += Duration::from_secs_f64(ms / 1e3);
                    runs.entry(implementation.name()).or_default().push(result);
                }
                total
            })
        });
    }
    group.finish();
    for (name, results) in &runs {
        let field =
            |key: &str| -> Vec<f64> { results.iter().filter_map(|r| r[key].as_f64()).collect() };
        eprintln!(
            "{name}: {} fresh processes, median ms {:.2} (open_ms {:.2}, first_decrypt_ms {:.2})",
            results.len(),
            bench_setup::median(&field("ms")),
            bench_setup::median(&field("open_ms")),
            bench_setup::median(&field("first_decrypt_ms")),
        );
    }
}

criterion_group!(benches, cold_open, cold_open_1000_rooms_100k_sessions);
criterion_main!(benches);
