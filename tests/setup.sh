#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine with Rust:
#   - Debian packages: SoftHSM2 (the PKCS#11 token), OpenSSL's CLI (TLS 1.2 test peer), the
#     Python venv module, a JDK and JUnit 4 (the host JVM tests of the Java API);
#   - Synapse (pinned version, from PyPI) in a virtualenv outside the clone;
#   - the content scanner's and the identity server's (Sydent) testbeds, each in its own
#     virtualenv (tests/scanner/setup-scanner.sh, tests/sydent/setup-sydent.sh).
# Idempotent: a second run only checks.
set -euo pipefail

SYNAPSE_VERSION="1.163.2"
CACHE="${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}"
VENV="${TCHAP_SECURE_SYNAPSE_VENV:-$CACHE/synapse-venv}"

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
command -v softhsm2-util >/dev/null || need_pkgs+=(softhsm2)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v make >/dev/null || need_pkgs+=(build-essential)
command -v perl >/dev/null || need_pkgs+=(perl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
command -v javac >/dev/null || need_pkgs+=(openjdk-17-jdk-headless)
[ -f /usr/share/java/junit4.jar ] || need_pkgs+=(junit4)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_pkgs[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! "$VENV/bin/python" -c "import synapse, sys; from importlib.metadata import version; sys.exit(version('matrix-synapse') != '$SYNAPSE_VERSION')" 2>/dev/null; then
  echo "setup: installing Synapse $SYNAPSE_VERSION into $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION"
fi
# The content scanner's testbed (issue 8): ClamAV, nginx, matrix-content-scanner 1.0.8 in its
# own virtualenv, the local signature database and the EICAR file.
"$(dirname "$0")/scanner/setup-scanner.sh" | grep -v "^[A-Z_]*="
# The identity server's testbed: matrix-sydent 2.6.1 in its own virtualenv.
"$(dirname "$0")/sydent/setup-sydent.sh" | grep -v "^[A-Z_]*="
# cargo-deny and cargo-cyclonedx (pinned, from crates.io) for the supply-chain tests.
"$(dirname "$0")/supply-chain.sh" --tools-only
echo "setup: ok (SoftHSM2 $(softhsm2-util --version), Synapse $SYNAPSE_VERSION in $VENV)"
