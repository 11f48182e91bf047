#!/usr/bin/env bash
# The content scanner's scan script (config `scan.script`): matrix-content-scanner 1.0.8 runs
# it as `scan.sh FILE` (no other argument, stdout inherited, stderr captured into its log) on the
# decrypted file it wrote under `scan.temp_directory`, and reads only the exit code:
#   0 = clean; anything else = not clean (HTTP 403 MCS_MEDIA_NOT_CLEAN to the client).
# clamscan's own codes pass through: 0 clean, 1 virus found, 2 error (unreadable file, no
# database...), so an error fails closed; the scanner config lists 2 in
# `result_cache.exit_codes_to_ignore` so that an error is not cached as a verdict.
# The signature database is the local one made by setup-scanner.sh (EICAR only).
set -uo pipefail

DB="${TCHAP_SECURE_CLAMAV_DB:-${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}/clamav-db}"
[ "$#" -eq 1 ] || { echo "usage: $0 FILE" >&2; exit 2; }
[ -d "$DB" ] || { echo "scan.sh: no ClamAV database at $DB (run setup-scanner.sh)" >&2; exit 2; }

# --alert-exceeds-max: a file past clamscan's size limits (100 MB by default) is reported as
# infected (Heuristics.Limits.Exceeded) instead of silently passing unscanned.
exec clamscan --no-summary --stdout --alert-exceeds-max=yes -d "$DB" -- "$1"
