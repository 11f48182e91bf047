#!/usr/bin/env bash
# Benchmarks of issues 7 and 14, side by side in one run: Tchap Secure, matrix-sdk 0.18 with its
# SQLite stores, and the raw limits (vodozemac, SQLCipher). Writes bench/results.json, the Markdown
# table bench/results.md and the plot bench/results.svg (see tests/src/bin/bench_report.rs).
#
#   tests/run-bench.sh            # everything (the first run also builds the cold-open fixture)
#   tests/run-bench.sh --quick    # fewer fresh-process runs (cold open ×3, initial sync ×1,
#                                 # catch-up ×1; default ×51, ×11 and ×3)
#
# Criterion benches (receive 10,000 messages from 10 senders, send 10,000, room-key share to 50
# devices) write to bench/criterion (CRITERION_HOME); fresh-process figures (peak RSS of the
# receive path, cold open, initial sync of 200 rooms from the real Synapse, catch-up after a
# flight: 20 rooms × 250 messages from 10 senders, one new fixture per run) go to bench/raw as
# JSON lines; the stripped library size comes from tests/size-report.sh. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
export TCHAP_SECURE_SYNAPSE_VENV="${TCHAP_SECURE_SYNAPSE_VENV:-${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}/synapse-venv}"
runs=51 sync_runs=11 pairs=7 catchup_runs=3
[[ "${1:-}" == "--quick" ]] && runs=3 sync_runs=1 pairs=1 catchup_runs=1
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
target="${CARGO_TARGET_DIR:-target}"
rm -rf bench/criterion bench/raw bench/pairs
mkdir -p bench/raw
export CRITERION_HOME="$PWD/bench/criterion"

step "criterion benches (bench profile: opt-level s as shipped, thin LTO)"
# The fresh-process benches (`--bench cold_open`, `--bench initial_sync`) measure what
# bench_fresh measures below; they are for a developer's focused runs and are not repeated here.
cargo bench -p tchap-secure-tests --bench receive --bench receive_ours --bench receive_matrix_sdk \
    --bench send --bench send_ours --bench send_matrix_sdk --bench attachment

step "receive path: raw vodozemac and ours alternately, $pairs pairs (the ratio, robust to drift)"
# The machine's speed drifts by up to ±20% within minutes here: a ratio of two measurements
# taken minutes apart carries that drift. Each pair runs raw vodozemac then ours back to back;
# bench_report takes the median of the pairs' ratios (bench/pairs/<n>/).
for n in $(seq 1 "$pairs"); do
    CRITERION_HOME="$PWD/bench/pairs/$n" cargo bench --quiet -p tchap-secure-tests --bench receive -- raw_vodozemac >/dev/null
    CRITERION_HOME="$PWD/bench/pairs/$n" cargo bench --quiet -p tchap-secure-tests --bench receive_ours >/dev/null
    echo "pair $n done"
done

step "peak RSS of the receive path (one fresh process per implementation) and of attachments"
cargo build --quiet --profile bench -p tchap-secure-tests --bins
for which in receive-ours receive-matrix-sdk receive-raw attachment-1mib attachment-50mb; do
    "$target/release/bench_rss" "$which" | tee -a bench/raw/rss.jsonl
done

step "cold open, initial sync and catch-up after a flight, fresh processes"
# Each catch-up run writes a new fixture first (5,000 real sends: a few minutes), since a member
# is no longer behind once it caught up.
"$target/release/bench_fresh" --out bench/raw --runs "$runs" --sync-runs "$sync_runs" \
    --catchup-runs "$catchup_runs"

step "push -> decrypted notification from a cold process (issue 17), 21 fresh processes"
"$target/release/bench_notification" --out bench/raw --runs 21

step "the persistent mode's idle cost, next to matrix-sdk's sync loop (issue 17)"
"$target/release/bench_idle" --out bench/raw --seconds 60 --short-timeout-ms 3000

step "size of the shipped library"
so_size="$(tests/size-report.sh --quiet)"
echo "$so_size bytes"

step "report"
"$target/release/bench_report" --out bench --so-size "$so_size"
echo
echo "bench/results.json, bench/results.md, bench/results.svg"
