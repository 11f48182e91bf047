#!/usr/bin/env bash
# Installs the antivirus half of the testbed (issue 8), outside the clone:
#   - Debian packages: ClamAV (clamscan + sigtool; freshclam is installed as a dependency but
#     never run: the public signature databases cannot be downloaded here), nginx (the TLS
#     front), libmagic1 (python-magic's library);
#   - matrix-content-scanner 1.0.8 in a virtualenv, with the exact versions of
#     tests/scanner/requirements.txt (all wheels; python-olm's wheel bundles libolm);
#   - a local ClamAV signature database made from the EICAR test file: an MD5 signature
#     (`sigtool --md5`, matches the EICAR file byte for byte) and a body signature (matches the
#     EICAR string anywhere in a file, e.g. followed by a newline).
# Idempotent: a second run only checks. Prints the paths the tests need, as KEY=VALUE lines.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}"
VENV="${TCHAP_SECURE_SCANNER_VENV:-$CACHE/scanner-venv}"
CLAMDB="${TCHAP_SECURE_CLAMAV_DB:-$CACHE/clamav-db}"
SCANNER_VERSION="1.0.8"
# Debian's own Python (3.11 on bookworm): python-olm ships cp311 manylinux wheels; on a Python
# without a wheel pip would try to build libolm from source, which needs cmake and fails here.
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
command -v clamscan >/dev/null || need_pkgs+=(clamav)
command -v sigtool >/dev/null || need_pkgs+=(clamav)
command -v nginx >/dev/null || need_pkgs+=(nginx)
[ -e /usr/lib/x86_64-linux-gnu/libmagic.so.1 ] || ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1' \
  || need_pkgs+=(libmagic1)
"$PY" -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "setup-scanner: installing Debian packages: ${need_pkgs[*]}"
  sudo_if_needed apt-get update -qq
  # policy-rc.d (containers) or no systemd: the freshclam and nginx services are not started.
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

venv_ok() {
  "$VENV/bin/python" - "$SCANNER_VERSION" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
import matrix_content_scanner.mcs, magic, base58, olm  # noqa: F401  (magic needs libmagic1)
olm.PkDecryption()
sys.exit(version("matrix_content_scanner") != sys.argv[1])
PY
}
if ! venv_ok; then
  echo "setup-scanner: installing matrix-content-scanner $SCANNER_VERSION into $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --only-binary=python-olm \
    -r "$HERE/requirements.txt"
  venv_ok || { echo "setup-scanner: the scanner's virtualenv does not import" >&2; exit 1; }
fi

# The EICAR test file (68 bytes, no newline). The string is assembled from two halves so that
# this script itself is not an EICAR file for any antivirus that reads the clone.
mkdir -p "$CLAMDB"
EICAR="$CACHE/eicar.com"
eicar_a='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR'
eicar_b='-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
if [ ! -f "$EICAR" ] || [ "$(cat "$EICAR")" != "$eicar_a$eicar_b" ]; then
  printf '%s%s' "$eicar_a" "$eicar_b" > "$EICAR"
  rm -f "$CLAMDB/local.hdb" "$CLAMDB/local.ndb"
fi
if [ ! -s "$CLAMDB/local.hdb" ]; then
  # sigtool prints MD5:SIZE:FILENAME; name the signature instead of the file.
  (cd "$(dirname "$EICAR")" && sigtool --md5 "$(basename "$EICAR")") \
    | sed 's/:[^:]*$/:Tchap.Test.EICAR-MD5/' > "$CLAMDB/local.hdb.tmp"
  mv "$CLAMDB/local.hdb.tmp" "$CLAMDB/local.hdb"
fi
if [ ! -s "$CLAMDB/local.ndb" ]; then
  # NAME:TARGET(0 = any file):OFFSET(* = anywhere):HEX
  printf 'Tchap.Test.EICAR-Body:0:*:%s\n' "$(od -An -v -tx1 "$EICAR" | tr -d ' \n')" \
    > "$CLAMDB/local.ndb.tmp"
  mv "$CLAMDB/local.ndb.tmp" "$CLAMDB/local.ndb"
fi

echo "setup-scanner: ok (matrix-content-scanner $SCANNER_VERSION, $(clamscan --version | cut -d/ -f1), $(nginx -v 2>&1 | sed 's/.*: //'))"
echo "SCANNER_PYTHON=$VENV/bin/python"
echo "SCANNER_MODULE=matrix_content_scanner.mcs"
echo "SCAN_SCRIPT=$HERE/scan.sh"
echo "CLAMAV_DB=$CLAMDB"
echo "EICAR_FILE=$EICAR"
echo "NGINX=$(command -v nginx)"
