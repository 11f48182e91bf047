//! Peak resident memory of the receive workload (10,000 Megolm messages from 10 senders, in
//! sync responses of 100), each implementation once in a fresh process:
//!
//! ```text
//! bench_rss receive-ours | receive-matrix-sdk | receive-raw | attachment-1mib | attachment-50mb
//! ```
//!
//! prints one JSON line `{"scenario":"receive_10k","implementation":…,"peak_rss_kib":…}`
//! (the process's `VmHWM`); the `attachment-*` modes, an attachment encrypted and decrypted
//! file to file (`benches/attachment.rs`).
//!
//! The measuring code is in the benchmark binaries themselves (`--rss` mode of
//! `benches/receive_ours.rs`, `receive_matrix_sdk.rs`, `receive.rs`), because the global
//! allocator is chosen per binary: ours runs with the zeroizing allocator the shipped library
//! installs, matrix-sdk and the raw limit with the system allocator they ship with; and
//! matrix-sdk is a dev-dependency of this crate, which only benchmarks can link. This binary
//! runs the chosen one through `cargo bench` (same profile, same target directory) and passes
//! its line on.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    let (bench, extra) = match scenario.as_str() {
        "receive-ours" => ("receive_ours", None),
        "receive-matrix-sdk" => ("receive_matrix_sdk", None),
        "receive-raw" => ("receive", None),
        // Attachments encrypted and decrypted file to file: the same peak for 1 MiB and 50 MB
        // shows that memory does not grow with the file.
        "attachment-1mib" => ("attachment", Some("1048576")),
        "attachment-50mb" => ("attachment", Some("50000000")),
        _ => {
            eprintln!(
                "usage: bench_rss receive-ours | receive-matrix-sdk | receive-raw | \
                 attachment-1mib | attachment-50mb"
            );
            return ExitCode::from(2);
        }
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "bench",
            "--quiet",
            "-p",
            "tchap-secure-tests",
            "--bench",
            bench,
            "--",
            "--rss",
        ])
        .args(extra)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cannot run cargo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{') && l.contains("peak_rss_kib"));
    match (output.status.success(), line) {
        (true, Some(line)) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "cargo bench --bench {bench} -- --rss failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            ExitCode::FAILURE
        }
    }
}
