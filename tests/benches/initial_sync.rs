//! Initial sync of an account joined to 200 encrypted rooms, from the real Synapse (issue 7,
//! scenarios 4 and 5), Tchap Secure next to matrix-sdk 0.18.
//!
//! Run with `cargo bench -p tchap-secure-tests --bench initial_sync` (Synapse from
//! `TCHAP_SECURE_SYNAPSE_VENV`, default `~/.cache/tchap-secure/synapse-venv`). The account is
//! set up once (`tchap_secure_tests::bench_setup::initial_sync_account`: a few minutes); every
//! iteration is then a *fresh process* of `bench_initial_sync_ours` or
//! `bench_initial_sync_matrix_sdk` (see their documentation: new data directory, open, login,
//! first sync until every room is stored), and its duration is what the child measured.
//! Group `initial_sync_200_rooms`, functions `tchap_secure` and `matrix_sdk`. Each run's JSON
//! line (with `peak_rss_kib`) goes to stderr, and the medians per implementation at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use tchap_secure_tests::bench_setup::{self, Bins, InitialSyncImpl};

/// Rooms of the account (issue 7).
const ROOMS: usize = 200;

fn initial_sync(c: &mut Criterion) {
    let bins = Bins::in_dir(
        std::path::Path::new(env!("CARGO_BIN_EXE_bench_initial_sync_ours"))
            .parent()
            .expect("the binaries' directory"),
    );
    let started = std::time::Instant::now();
    let account = bench_setup::initial_sync_account(ROOMS);
    eprintln!(
        "initial-sync account {} with {ROOMS} rooms set up in {:.1} s",
        account.user_id,
        started.elapsed().as_secs_f64()
    );
    let mut runs: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    let mut group = c.benchmark_group(format!("initial_sync_{ROOMS}_rooms"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_millis(1));
    for (function, implementation) in [
        ("tchap_secure", InitialSyncImpl::TchapSecure),
        ("matrix_sdk", InitialSyncImpl::MatrixSdk),
    ] {
        group.bench_function(function, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let result = account.run(&bins, implementation);
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
        let field = |key: &str| -> Vec<f64> {
            results
                .iter()
                .filter_map(|r| r[key].as_f64())
                .collect::<Vec<_>>()
        };
        eprintln!(
            "{name}: {} runs, median {:.0} ms, median peak RSS {:.0} KiB (max {:.0} KiB)",
            results.len(),
            bench_setup::median(&field("ms")),
            bench_setup::median(&field("peak_rss_kib")),
            field("peak_rss_kib").into_iter().fold(0.0, f64::max),
        );
    }
}

criterion_group!(benches, initial_sync);
criterion_main!(benches);
