#!/usr/bin/env bash
# Supply chain of the shipped crates: licences, bans and sources (cargo-deny, policy in
# deny.toml), the CycloneDX SBOM of libtchap_secure.so (tests/sbom.sh) and the
# reproducible-build check (tests/repro-check.sh).
#
#   tests/supply-chain.sh               # everything
#   tests/supply-chain.sh --no-repro    # without the two release builds of the repro check
#   tests/supply-chain.sh --fresh       # repro check from scratch (passed to repro-check.sh)
#   tests/supply-chain.sh --tools-only  # only install the tools
#
# Installs cargo-deny and cargo-cyclonedx (pinned versions, `cargo install --locked`) into
# ${TCHAP_SECURE_CACHE:-~/.cache/tchap-secure}/tools when missing, so CI reuses them.
# cargo-deny's `advisories` check is not run: the RustSec database is fetched from GitHub,
# which this project's machines cannot reach (run it where GitHub is reachable).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}"
tools="$cache/tools"
export PATH="$tools/bin:$PATH"
CARGO_DENY_VERSION=0.20.2
CARGO_CYCLONEDX_VERSION=0.5.9

repro=1 repro_args=() tools_only=0
for arg in "$@"; do
    case "$arg" in
        --no-repro) repro=0 ;;
        --fresh) repro_args+=(--fresh) ;;
        --tools-only) tools_only=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
started=$SECONDS
cd "$repo"

# --- tools ----------------------------------------------------------------------------------
step "tools (in $tools)"
install_tool() { # $1 = crate, $2 = cargo subcommand, $3 = version
    # (cargo-cyclonedx prints "cargo-cyclonedx-cyclonedx 0.5.9": match the version only)
    if [[ "$(cargo "$2" --version 2>/dev/null)" == *" $3" ]]; then
        echo "  $1 $3"
        return
    fi
    echo "  installing $1 $3 (cargo install --locked; a few minutes)"
    local log="$tools/install-$1.log" t0=$SECONDS
    mkdir -p "$tools"
    # Without CARGO_TARGET_DIR (CI sets it to the workspace's cache): cargo install then builds
    # in a temporary directory that it removes.
    env -u CARGO_TARGET_DIR cargo install --locked --root "$tools" --version "$3" "$1" >"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; echo "cargo install $1 failed (log: $log)" >&2; exit 1; }
    echo "  installed $1 $3 in $((SECONDS - t0)) s"
}
install_tool cargo-deny deny "$CARGO_DENY_VERSION"
install_tool cargo-cyclonedx cyclonedx "$CARGO_CYCLONEDX_VERSION"
[[ $tools_only == 0 ]] || exit 0

# --- cargo deny -------------------------------------------------------------------------------
step "cargo deny check bans licenses sources (shipped crates; advisories: not checked, no GitHub)"
cargo deny --locked check --hide-inclusion-graph --show-stats bans licenses sources

step "sources of every locked package (dev-dependencies included): crates.io only"
bad_sources="$(awk '/^source = / && $3 != "\"registry+https://github.com/rust-lang/crates.io-index\"" { print }' Cargo.lock)"
if [[ -n "$bad_sources" ]]; then
    echo "  Cargo.lock has packages from elsewhere than crates.io:" >&2
    echo "$bad_sources" | sort -u | sed 's/^/    /' >&2
    exit 1
fi
echo "  $(grep -c '^source = ' Cargo.lock) packages, all from crates.io"

# --- SBOM -------------------------------------------------------------------------------------
step "SBOM of libtchap_secure.so (tests/sbom.sh -> sbom/)"
tests/sbom.sh

# --- reproducible build -----------------------------------------------------------------------
if [[ $repro == 1 ]]; then
    step "reproducible build (tests/repro-check.sh${repro_args[*]:+ ${repro_args[*]}})"
    tests/repro-check.sh "${repro_args[@]}"
else
    step "reproducible build: skipped (--no-repro)"
fi

step "supply chain: ok ($((SECONDS - started)) s)"
