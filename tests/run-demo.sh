#!/usr/bin/env bash
# The main job: a secure infrastructure on loopback with its own PKI, two cabinet members on
# hardware-bound keys, over pinned TLS, in an encrypted room. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
export TCHAP_SECURE_SYNAPSE_VENV="${TCHAP_SECURE_SYNAPSE_VENV:-${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}/synapse-venv}"
cargo build --quiet --workspace
exec "${CARGO_TARGET_DIR:-target}/debug/demo"
