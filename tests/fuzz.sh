#!/usr/bin/env bash
# Runs every cargo-fuzz target of native/core/fuzz for N seconds each (default 60) and prints
# one summary line per target: executions, executions per second, coverage, crashes.
#
#   tests/fuzz.sh            # 60 s per target
#   tests/fuzz.sh 300        # 5 min per target
#   tests/fuzz.sh 30 config keys_query   # only these targets
#
# Needs the nightly toolchain (cargo-fuzz is installed with `cargo install` if missing).
# Builds go to $CARGO_TARGET_DIR (default /work/target-fuzz, or target-fuzz/ next to the
# repository when /work does not exist). libFuzzer runs on a scratch copy of each seed corpus:
# the seeds in native/core/fuzz/corpus/ are never modified. A crash leaves its input in
# native/core/fuzz/artifacts/<target>/ (ignored by git) and makes the script exit 1.
set -euo pipefail

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [seconds-per-target] [target...]" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$repo/native/core/fuzz"
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if [ -d /work ]; then
        export CARGO_TARGET_DIR=/work/target-fuzz
    else
        export CARGO_TARGET_DIR="$repo/target-fuzz"
    fi
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd "$fuzz_dir"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# The fixtures of the store-backed targets create a SQLCipher store under $TMPDIR; libFuzzer
# exits without running destructors, so give them a directory of their own and remove it.
scratch="$(mktemp -d "${TMPDIR:-/tmp}/tchap-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

echo "fuzz.sh: building ${#targets[@]} targets (nightly, ASan, debug assertions)"
build=(cargo +nightly fuzz build)
if [ "$#" -gt 0 ]; then
    for target in "${targets[@]}"; do
        "${build[@]}" "$target" >/dev/null 2>"$scratch/build.log" || { cat "$scratch/build.log" >&2; exit 1; }
    done
else
    "${build[@]}" >/dev/null 2>"$scratch/build.log" || { cat "$scratch/build.log" >&2; exit 1; }
fi

failed=0
printf '%-18s %12s %9s %6s %6s %6s %s\n' target execs execs/s time cov ft crashes
for target in "${targets[@]}"; do
    work="$scratch/corpus-$target"
    mkdir -p "$work" "$scratch/tmp-$target" "artifacts/$target"
    log="$scratch/$target.log"
    found_before="$(find "artifacts/$target" -type f | wc -l)"
    status=0
    TMPDIR="$scratch/tmp-$target" cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 >"$log" 2>&1 || status=$?
    rm -rf "$scratch/tmp-$target"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    # The last status line of libFuzzer: "#N  DONE  cov: C ft: F corp: …".
    cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
    ft="$(grep -Eo 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
    crashes=$(($(find "artifacts/$target" -type f | wc -l) - found_before))
    if [ "$status" -ne 0 ]; then
        failed=1
        crashes="$crashes (exit $status, see below)"
    fi
    printf '%-18s %12s %9s %5ss %6s %6s %s\n' "$target" "${execs:-?}" "${speed:-?}" "$seconds" \
        "${cov:-?}" "${ft:-?}" "$crashes"
    if [ "$status" -ne 0 ]; then
        grep -E 'panicked|ERROR: |SUMMARY|artifact_prefix|Test unit written' "$log" | head -20 >&2 || true
    fi
done
exit "$failed"
