#!/usr/bin/env bash
# CycloneDX SBOM of the shipped library libtchap_secure.so (crate tchap-secure-jni), one per
# target, generated on demand (not committed) and checked.
#
#   tests/sbom.sh                  # -> sbom/tchap-secure-jni.<target>.cdx.json (gitignored)
#   tests/sbom.sh --check-only     # check existing files without regenerating
#
# How: cargo-cyclonedx (installed by tests/supply-chain.sh) runs on a scratch copy of the
# working tree (it writes an SBOM next to every manifest), then the file is corrected for what
# cargo-cyclonedx cannot know:
#   - its graph is the workspace's, with features unified across all members, so it lists the
#     vendored OpenSSL (openssl-src/openssl-sys) that only the CLI and the tests use. The
#     components are narrowed to what `cargo tree -p tchap-secure-jni -e normal,build --target T`
#     resolves for the library alone; build-time-only ones (build scripts' dependencies and
#     proc-macros) are kept with scope "excluded";
#   - the C code linked into the library is added: OpenSSL (crypto-only build of the sources in
#     the locked openssl-src crate, by native/openssl-min/build.sh), SQLCipher and the SQLite
#     amalgamation it is based on (in libsqlite3-sys);
#   - the scratch directory's path is replaced by /tchap-secure, so the file is the same on any
#     machine (the timestamp is SOURCE_DATE_EPOCH = HEAD's commit date).
# The check: every file lists vodozemac, ring, rustls, rusqlite, libsqlite3-sys, tokio, jni,
# zeroize, openssl, sqlcipher with a version equal to the one in Cargo.lock / the sources, and
# none of the crates banned in deny.toml nor the vendored OpenSSL crates.
#
# Environment: SBOM_DIR (default <repo>/sbom), SBOM_TARGETS (default: the three Android ABIs
# and the host), TCHAP_SECURE_CACHE. Needs cargo-cyclonedx on PATH and python3.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}"
out_dir="${SBOM_DIR:-$repo/sbom}"
host="$(rustc -vV | sed -n 's/^host: //p')"
targets="${SBOM_TARGETS:-aarch64-linux-android armv7-linux-androideabi x86_64-linux-android $host}"
check_only=0
case "${1:-}" in
    --check-only) check_only=1 ;;
    "") ;;
    -h|--help) sed -n "2,/^set -euo/p" "$0" | sed "$ d"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
esac
command -v python3 >/dev/null || { echo "sbom.sh: python3 is needed" >&2; exit 1; }
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"

# --- versions of the C code, from the sources cargo uses ------------------------------------
cargo fetch --locked --manifest-path "$repo/Cargo.toml" >/dev/null 2>&1 || cargo fetch --locked --manifest-path "$repo/Cargo.toml"
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
locked() { awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/"/, "", $3); print $3 }' "$repo/Cargo.lock" | head -n 1; }
ossl_crate="$(locked openssl-src)"
sqlite_crate="$(locked libsqlite3-sys)"
ossl_dir="$(ls -d "$registry"/*/"openssl-src-$ossl_crate"/openssl | head -n 1)"
sqlite_c="$(ls -d "$registry"/*/"libsqlite3-sys-$sqlite_crate"/sqlcipher/sqlite3.c | head -n 1)"
ossl_version="$(awk -F= '$1 == "MAJOR" || $1 == "MINOR" || $1 == "PATCH" { print $2 }' "$ossl_dir/VERSION.dat" | paste -sd. -)"
sqlcipher_version="$(sed -n 's/^#define CIPHER_VERSION_NUMBER \([0-9.]*\).*/\1/p' "$sqlite_c" | head -n 1)"
sqlite_version="$(sed -n 's/^#define SQLITE_VERSION *"\([0-9.]*\)".*/\1/p' "$sqlite_c" | head -n 1)"
[[ -n "$ossl_version" && -n "$sqlcipher_version" && -n "$sqlite_version" ]] \
    || { echo "sbom.sh: cannot read the OpenSSL/SQLCipher/SQLite versions" >&2; exit 1; }

# --- generate ---------------------------------------------------------------------------------
if [[ $check_only == 0 ]]; then
    command -v cargo-cyclonedx >/dev/null || { echo "sbom.sh: cargo-cyclonedx not on PATH (tests/supply-chain.sh installs it)" >&2; exit 1; }
    work="$cache/sbom-work"
    rm -rf "$work"
    mkdir -p "$work"
    (cd "$repo" && git ls-files -z -co --exclude-standard \
        | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -x -C "$work"
    export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct HEAD)}"
    first=1
    for t in $targets; do
        (cd "$work" && cargo cyclonedx --manifest-path native/jni/Cargo.toml -f json \
            --spec-version 1.5 --target "$t" -q) >/dev/null
        tree() { (cd "$work" && cargo tree -q --locked -p tchap-secure-jni --target "$t" --prefix none -f '{p}' "$@") \
            | sed 's/ (.*//' | sort -u; }
        tree -e normal,build >"$work/tree-all.txt"
        tree -e normal,no-proc-macro >"$work/tree-runtime.txt"
        python3 - "$work" "$t" "$out_dir/tchap-secure-jni.$t.cdx.json" "$ossl_version" "$ossl_crate" \
            "$sqlcipher_version" "$sqlite_version" "$sqlite_crate" "$first" <<'PY'
import json, sys
work, target, out, ossl_v, ossl_crate, sqlcipher_v, sqlite_v, sqlite_crate, first = sys.argv[1:]
text = open(f"{work}/native/jni/tchap-secure-jni.cdx.json").read()
text = text.replace(f"file://{work}/", "file:///tchap-secure/")
bom = json.loads(text)
def pkgs(path):
    return {tuple(l.split(" v", 1)) for l in open(path).read().split("\n") if l}
everything, runtime = pkgs(f"{work}/tree-all.txt"), pkgs(f"{work}/tree-runtime.txt")
root = bom["metadata"]["component"]["bom-ref"]
kept, dropped = [], []
for c in bom["components"]:
    key = (c["name"], c.get("version"))
    if key not in everything:
        dropped.append(c["bom-ref"]); continue
    if key not in runtime:
        c["scope"] = "excluded"
        c.setdefault("properties", []).append({"name": "cdx:tchap:build-time-only", "value": "true"})
    kept.append(c)
refs = {c["bom-ref"] for c in kept} | {root}
# The C code compiled into the library.
def ref(name):
    return next(c["bom-ref"] for c in kept if c["name"] == name)
sqlite_sys = ref("libsqlite3-sys")
c_code = [
    {"type": "library", "bom-ref": f"c:openssl@{ossl_v}", "name": "openssl", "version": ossl_v,
     "description": "OpenSSL libcrypto, crypto-only static build for SQLCipher (native/openssl-min/build.sh)",
     "scope": "required", "licenses": [{"expression": "Apache-2.0"}],
     "purl": f"pkg:generic/openssl@{ossl_v}",
     "properties": [{"name": "cdx:tchap:sources", "value": f"crate openssl-src {ossl_crate} (its openssl/ directory)"},
                    {"name": "cdx:tchap:built-by", "value": "native/openssl-min/build.sh"}]},
    {"type": "library", "bom-ref": f"c:sqlcipher@{sqlcipher_v}", "name": "sqlcipher", "version": sqlcipher_v,
     "description": f"SQLCipher (community edition), an extension of the SQLite {sqlite_v} amalgamation, compiled by libsqlite3-sys",
     "scope": "required", "licenses": [{"expression": "BSD-3-Clause"}],
     "purl": f"pkg:generic/sqlcipher@{sqlcipher_v}",
     "properties": [{"name": "cdx:tchap:sources", "value": f"crate libsqlite3-sys {sqlite_crate} (sqlcipher/sqlite3.c)"}]},
    {"type": "library", "bom-ref": f"c:sqlite@{sqlite_v}", "name": "sqlite", "version": sqlite_v,
     "description": "SQLite (public domain), the base of the SQLCipher amalgamation",
     "scope": "required", "licenses": [{"license": {"name": "public domain"}}],
     "purl": f"pkg:generic/sqlite@{sqlite_v}",
     "properties": [{"name": "cdx:tchap:sources", "value": f"crate libsqlite3-sys {sqlite_crate} (sqlcipher/sqlite3.c)"}]},
]
bom["components"] = kept + c_code
deps = []
for d in bom.get("dependencies", []):
    if d["ref"] not in refs:
        continue
    d["dependsOn"] = [x for x in d.get("dependsOn", []) if x in refs]
    if d["ref"] == sqlite_sys:
        d["dependsOn"].append(f"c:sqlcipher@{sqlcipher_v}")
    deps.append(d)
deps += [{"ref": f"c:sqlcipher@{sqlcipher_v}", "dependsOn": [f"c:sqlite@{sqlite_v}", f"c:openssl@{ossl_v}"]},
         {"ref": f"c:sqlite@{sqlite_v}", "dependsOn": []},
         {"ref": f"c:openssl@{ossl_v}", "dependsOn": []}]
bom["dependencies"] = deps
with open(out, "w") as f:
    json.dump(bom, f, indent=2)
    f.write("\n")
print(f"  {out}: {len(bom['components'])} components "
      f"({sum(1 for c in kept if c.get('scope') == 'excluded')} build-time only), "
      f"{len(dropped)} dropped from cargo-cyclonedx's workspace-wide graph")
if first == "1" and dropped:
    print(f"    dropped (dev/test or CLI features, not in the library): "
          f"{', '.join(sorted(r.split('#')[-1] for r in dropped))}")
PY
        first=0
    done
    rm -rf "$work"
fi

# --- check --------------------------------------------------------------------------------------
status=0
for t in $targets; do
    f="$out_dir/tchap-secure-jni.$t.cdx.json"
    [[ -f "$f" ]] || { echo "  missing: $f" >&2; status=1; continue; }
    python3 - "$f" "$repo/Cargo.lock" "$ossl_version" "$sqlcipher_version" <<'PY' || status=1
import json, re, sys
path, lock, ossl_v, sqlcipher_v = sys.argv[1:]
bom = json.load(open(path))
comps = {}
for c in bom["components"]:
    comps.setdefault(c["name"], set()).add(c.get("version"))
locked = {}
for m in re.finditer(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', open(lock).read()):
    locked.setdefault(m.group(1), set()).add(m.group(2))
required = ["vodozemac", "ring", "rustls", "rusqlite", "libsqlite3-sys", "tokio", "jni", "zeroize"]
expected = {n: locked.get(n, set()) for n in required}
expected["openssl"], expected["sqlcipher"] = {ossl_v}, {sqlcipher_v}
forbidden = ["webpki-roots", "webpki-root-certs", "rustls-native-certs", "rustls-platform-verifier",
             "openssl-probe", "native-tls", "hyper-tls", "openssl", "aws-lc-rs", "aws-lc-sys",
             "openssl-src", "openssl-sys"]
errors, listed = [], []
for name, want in expected.items():
    got = comps.get(name)
    if not got or any(v is None for v in got):
        errors.append(f"{name} missing or without version")
    elif not got <= want:
        errors.append(f"{name} {sorted(got)} differs from {sorted(want)}")
    else:
        listed.append(f"{name} {'/'.join(sorted(got))}")
for name in forbidden:
    if name == "openssl":
        bad = [c for c in bom["components"] if c["name"] == "openssl" and not c["bom-ref"].startswith("c:")]
    else:
        bad = [c for c in bom["components"] if c["name"] == name]
    if bad:
        errors.append(f"{name} must not be in the shipped library's graph")
target = next((p["value"] for p in bom["metadata"].get("properties", []) if p["name"].endswith("target:triple")), "?")
print(f"  {target}: {len(bom['components'])} components; " + ", ".join(listed))
for e in errors:
    print(f"  ERROR {path}: {e}")
sys.exit(1 if errors else 0)
PY
done
[[ $status == 0 ]] && echo "  SBOM check: ok" || echo "  SBOM check: FAILED"
exit "$status"
