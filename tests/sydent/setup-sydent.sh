#!/usr/bin/env bash
# Installs the identity-server half of the testbed, outside the clone: matrix-sydent 2.6.1 (the
# reference Matrix identity server, from PyPI) in its own virtualenv, with the exact versions of
# tests/sydent/requirements.txt (wheels, and signedjson's pure-Python sdist: nothing is compiled).
# Idempotent: a second run only checks. Prints the paths the tests need, as KEY=VALUE lines.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}"
VENV="${TCHAP_SECURE_SYDENT_VENV:-$CACHE/sydent-venv}"
SYDENT_VERSION="2.6.1"
# Debian's own Python (3.11 on bookworm), the one requirements.txt was resolved with.
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "setup-sydent: installing Debian packages: python3-venv"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

venv_ok() {
  "$VENV/bin/python" - "$SYDENT_VERSION" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
import sydent.sydent  # noqa: F401  (imports prometheus_client, twisted, nacl, OpenSSL)
import sydent.http.matrixfederationagent as agent
agent.MatrixFederationAgent._route_matrix_uri  # what launch_sydent.py replaces
agent._RoutingResult
sys.exit(version("matrix-sydent") != sys.argv[1])
PY
}
if ! venv_ok; then
  echo "setup-sydent: installing matrix-sydent $SYDENT_VERSION into $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  # Wheels only, but for signedjson (Sydent pins 1.1.1, which PyPI has only as an sdist);
  # --no-cache-dir: with --no-binary, pip 23 warns about its wheel cache otherwise.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir --only-binary=:all: \
    --no-binary=signedjson -r "$HERE/requirements.txt"
  venv_ok || { echo "setup-sydent: Sydent's virtualenv does not import" >&2; exit 1; }
fi

echo "setup-sydent: ok (matrix-sydent $SYDENT_VERSION in $VENV)"
echo "SYDENT_PYTHON=$VENV/bin/python"
echo "SYDENT_LAUNCHER=$HERE/launch_sydent.py"
