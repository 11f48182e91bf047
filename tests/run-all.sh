#!/usr/bin/env bash
# Every test: formatting, lints, unit tests, real-component end-to-end tests (Synapse over
# pinned TLS, SoftHSM2, the real CLI binary), and the release-build refusal of the test-only
# software vault. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
export TCHAP_SECURE_SYNAPSE_VENV="${TCHAP_SECURE_SYNAPSE_VENV:-${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}/synapse-venv}"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "format";  cargo fmt --all -- --check
step "lints";   cargo clippy --workspace --all-targets -- -D warnings
step "lints (hsm with the test-only soft vault)"
cargo clippy -p tchap-secure-hsm --all-targets --features soft-vault -- -D warnings
step "build the CLI and the JNI library (the tests run the real binaries)"
cargo build --workspace
step "tests";   cargo test --workspace
step "tests (hsm with the test-only soft vault)"
cargo test -p tchap-secure-hsm --features soft-vault
echo; echo "all tests passed"
