//! Runs the fresh-process benchmarks of issue 7 and appends their JSON lines to
//! `<out>/cold_open.jsonl` and `<out>/initial_sync.jsonl` (read by `bench_report`):
//!
//! - cold open (1,000 rooms, 100,000 inbound sessions; fixture cached), each implementation
//!   `--runs` times (default 7), interleaved so a slow moment of the machine hits them all;
//! - initial sync of an account with `--rooms` encrypted rooms (default 200) from the real
//!   Synapse, each implementation `--sync-runs` times (default 3);
//! - catch-up after a flight (issue 14; `<out>/catch_up.jsonl`): 20 rooms × 250 messages from
//!   10 senders arrive while both members are offline, then each member catches up once in a
//!   fresh process. A member is no longer behind after its catch-up, so each of the
//!   `--catchup-runs` runs (default 1) builds a new fixture (a few minutes: 5,000 real sends)
//!   and runs ours and matrix-sdk once each on it, ours first in odd runs and matrix-sdk first
//!   in even runs (Synapse's caches are warmer for the second; each line says its `order`).
//!
//! `bench_fresh --out bench/raw [--runs 7] [--sync-runs 3] [--rooms 200] [--catchup-runs 1]
//! [--only cold-open,initial-sync,catch-up] [--catchup-size ROOMSxMESSAGESxSENDERS]`
//! (`--catchup-size` for a quick trial: its results get their own scenario name). The measuring binaries must be built first
//! (`cargo build --profile bench -p tchap-secure-tests --bins`); `tests/run-bench.sh` does all
//! of it.

use std::io::Write as _;
use std::path::PathBuf;

use tchap_secure_tests::bench_setup::{
    Bins, CatchUpImpl, CatchUpSpec, ColdOpenImpl, InitialSyncImpl, catch_up_fixture,
    cold_open_fixture, initial_sync_account,
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
    let catchup_runs: usize = arg("--catchup-runs", "1")
        .parse()
        .expect("--catchup-runs N");
    let only = arg("--only", "cold-open,initial-sync,catch-up");
    let wanted = |scenario: &str| only.split(',').any(|s| s.trim() == scenario);
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

    if wanted("cold-open") {
        eprintln!("cold open: fixture (cached after the first run)…");
        let fixture = cold_open_fixture(&bins);
        for run in 0..runs {
            for implementation in ColdOpenImpl::ALL {
                append("cold_open.jsonl", &fixture.run(&bins, implementation, run));
            }
        }
    }

    if wanted("initial-sync") {
        eprintln!("initial sync: an account with {rooms} encrypted rooms on Synapse…");
        let account = initial_sync_account(rooms);
        for _ in 0..sync_runs {
            for implementation in InitialSyncImpl::ALL {
                append("initial_sync.jsonl", &account.run(&bins, implementation));
            }
        }
    }

    if wanted("catch-up") {
        let mut spec = CatchUpSpec::issue_14();
        if let Some(size) = args
            .iter()
            .position(|a| a == "--catchup-size")
            .and_then(|i| args.get(i + 1))
        {
            let n: Vec<usize> = size
                .split('x')
                .map(|n| n.parse().expect("--catchup-size ROOMSxMESSAGESxSENDERS"))
                .collect();
            assert_eq!(n.len(), 3, "--catchup-size ROOMSxMESSAGESxSENDERS");
            spec = CatchUpSpec {
                rooms: n[0],
                messages_per_room: n[1],
                senders: n[2],
            };
        }
        for run in 0..catchup_runs {
            eprintln!(
                "catch-up {}/{catchup_runs}: {} rooms × {} messages from {} senders, sent while \
                 both members are offline…",
                run + 1,
                spec.rooms,
                spec.messages_per_room,
                spec.senders
            );
            let fixture = catch_up_fixture(&bins, spec);
            eprintln!("catch-up fixture: {}", fixture.setup);
            let mut order = CatchUpImpl::ALL;
            if run % 2 == 1 {
                order.reverse();
            }
            for implementation in order {
                append("catch_up.jsonl", &fixture.run(&bins, implementation));
            }
        }
    }
}
