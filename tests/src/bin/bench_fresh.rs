//! Runs the fresh-process benchmarks of issue 7 and appends their JSON lines to
//! `<out>/cold_open.jsonl` and `<out>/initial_sync.jsonl` (read by `bench_report`):
//!
//! - cold open (1,000 rooms, 100,000 inbound sessions; fixture cached), each implementation
//!   `--runs` times (default 7), interleaved so a slow moment of the machine hits them all;
//! - initial sync of an account with `--rooms` encrypted rooms (default 200) from the real
//!   Synapse, each implementation `--sync-runs` times (default 3).
//!
//! `bench_fresh --out bench/raw [--runs 7] [--sync-runs 3] [--rooms 200]`. The measuring
//! binaries must be built first (`cargo build --profile bench -p tchap-secure-tests --bins`);
//! `tests/run-bench.sh` does all of it.

use std::io::Write as _;
use std::path::PathBuf;

use tchap_secure_tests::bench_setup::{
    Bins, ColdOpenImpl, InitialSyncImpl, cold_open_fixture, initial_sync_account,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let out = PathBuf::from(arg("--out", "bench/raw"));
    let runs: usize = arg("--runs", "7").parse().expect("--runs N");
    let sync_runs: usize = arg("--sync-runs", "3").parse().expect("--sync-runs N");
    let rooms: usize = arg("--rooms", "200").parse().expect("--rooms N");
    std::fs::create_dir_all(&out).expect("create the output directory");
    let bins = Bins::locate();

    let append = |file: &str, line: &serde_json::Value| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out.join(file))
            .expect("open the results file");
        writeln!(f, "{line}").expect("write a result");
        eprintln!("{line}");
    };

    eprintln!("cold open: fixture (cached after the first run)…");
    let fixture = cold_open_fixture(&bins);
    for run in 0..runs {
        for implementation in ColdOpenImpl::ALL {
            append("cold_open.jsonl", &fixture.run(&bins, implementation, run));
        }
    }

    eprintln!("initial sync: an account with {rooms} encrypted rooms on Synapse…");
    let account = initial_sync_account(rooms);
    for _ in 0..sync_runs {
        for implementation in InitialSyncImpl::ALL {
            append("initial_sync.jsonl", &account.run(&bins, implementation));
        }
    }
}
