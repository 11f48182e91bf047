#!/usr/bin/env bash
# Size of the release `libtchap_secure.so`, built the size-optimised way, for one target
# (default: the host, x86_64-unknown-linux-gnu, as a proxy for one Android ABI). Budget: 6 MB.
#
#   tests/size-report.sh                 # build + print the stripped size and the top crates
#   tests/size-report.sh --vendored      # the same with rusqlite's vendored OpenSSL (baseline)
#   tests/size-report.sh --proxy         # measure the stand-in cdylib even if native/jni builds
#   tests/size-report.sh --relr          # link with packed relative relocations, as the NDK's
#                                        # clang does by itself for Android API >= 28 (minSdk 28)
#   tests/size-report.sh --no-bloat      # skip the cargo-bloat and linker-map breakdowns
#   tests/size-report.sh --quiet         # print only the size in bytes (for scripts)
#
# What "the size-optimised way" is (native/openssl-min/README.md explains each choice):
#   1. a crypto-only static OpenSSL 3 (native/openssl-min/build.sh) instead of the full one
#      vendored by `bundled-sqlcipher-vendored-openssl`;
#   2. rusqlite with `bundled-sqlcipher` only, pointed at it with OPENSSL_LIB_DIR and
#      OPENSSL_INCLUDE_DIR;
#   3. LIBSQLITE3_FLAGS removing the SQLite features we never use
#      (native/openssl-min/sqlite-flags);
#   4. the workspace's own release profile, unchanged.
#
# Until the workspace has a core feature `vendored-openssl` that the JNI crate turns off
# (see README), this script does not build in the repository: it copies hsm/, native/core/
# and native/jni/ with the root Cargo.toml and Cargo.lock into an overlay workspace in the
# cache, with the single rusqlite feature line changed, and builds there. When native/jni
# does not build yet, it measures a stand-in cdylib (`size-proxy`) that calls the whole core
# API through a JNI-shaped export, so nothing is dead-code eliminated. No file of the
# repository is written.
#
# Environment: TCHAP_SECURE_CACHE (default ~/.cache/tchap-secure); CARGO_TARGET_DIR (default
# $TCHAP_SECURE_CACHE/target-size; /min or /vendored is appended); SIZE_LIBSQLITE3_FLAGS to
# override the SQLite flags ("" = libsqlite3-sys's defaults); SIZE_BUDGET in bytes (default
# 6000000); TARGET (default: the host); CARGO_PROFILE_RELEASE_* to try profile changes (e.g.
# CARGO_PROFILE_RELEASE_OPT_LEVEL=z); OPENSSL_MIN_* (see native/openssl-min/build.sh).
# Exit status: 0 within budget, 1 over budget or on failure.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}"
budget="${SIZE_BUDGET:-6000000}"

vendored=0 force_proxy=0 bloat=1 quiet=0 relr=0
for arg in "$@"; do
    case "$arg" in
        --vendored) vendored=1 ;;
        --relr) relr=1 ;;
        --proxy) force_proxy=1 ;;
        --no-bloat) bloat=0 ;;
        --quiet) quiet=1; bloat=0 ;;
        -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
say() { [[ $quiet == 1 ]] || printf '%s\n' "$*"; }
step() { [[ $quiet == 1 ]] || printf '\n\033[1m== %s\033[0m\n' "$*"; }

variant=min
[[ $vendored == 1 ]] && variant=vendored
# One target directory per variant: both produce the same file name.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target-size}/$variant"
host="$(rustc -vV | sed -n 's/^host: //p')"
target="${TARGET:-$host}"

# SQLite features the bundled build turns on that we never use, and pure code-size options:
# native/openssl-min/sqlite-flags (one flag a line; reasons in native/openssl-min/README.md).
# The link check below fails if a removed C function is ever needed.
sqlite_flags_file="$repo/native/openssl-min/sqlite-flags"
default_sqlite_flags="$(sed -e 's/#.*//' "$sqlite_flags_file" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')"

# --- 1. the minimal OpenSSL ---------------------------------------------------------------
if [[ $vendored == 0 ]]; then
    step "minimal static OpenSSL (native/openssl-min/build.sh)"
    # build.sh prints OPENSSL_LIB_DIR=… and OPENSSL_INCLUDE_DIR=… (its log goes to stderr).
    while IFS='=' read -r name value; do
        case "$name" in OPENSSL_LIB_DIR|OPENSSL_INCLUDE_DIR) export "$name=$value" ;; esac
    done < <(TARGET="$target" "$repo/native/openssl-min/build.sh")
    [[ -n "${OPENSSL_LIB_DIR:-}" && -n "${OPENSSL_INCLUDE_DIR:-}" ]] || { echo "openssl-min failed" >&2; exit 1; }
    # libsqlite3-sys reads <TARGET>_OPENSSL_* first; set both so a stray prefixed variable
    # in the caller's environment cannot win.
    prefix="$(echo "$target" | tr 'a-z-' 'A-Z_')"
    export "${prefix}_OPENSSL_LIB_DIR=$OPENSSL_LIB_DIR" "${prefix}_OPENSSL_INCLUDE_DIR=$OPENSSL_INCLUDE_DIR"
    export LIBSQLITE3_FLAGS="${SIZE_LIBSQLITE3_FLAGS-$default_sqlite_flags}"
    say "  LIBSQLITE3_FLAGS=$LIBSQLITE3_FLAGS"
else
    prefix="$(echo "$target" | tr 'a-z-' 'A-Z_')"
    unset OPENSSL_LIB_DIR OPENSSL_INCLUDE_DIR LIBSQLITE3_FLAGS \
        "${prefix}_OPENSSL_LIB_DIR" "${prefix}_OPENSSL_INCLUDE_DIR"
    export LIBSQLITE3_FLAGS="${SIZE_LIBSQLITE3_FLAGS-}"
fi

# --- 2. the workspace to build ------------------------------------------------------------
jni_present=0
[[ -f "$repo/native/jni/src/lib.rs" && $force_proxy == 0 ]] && jni_present=1
in_place=0
if grep -q '^vendored-openssl *=' "$repo/native/core/Cargo.toml" 2>/dev/null \
    && [[ $jni_present == 1 && $vendored == 0 ]]; then
    in_place=1   # the lead applied the feature split: build the real thing where it is
fi

write_proxy() { # $1 = directory of the stand-in crate
    mkdir -p "$1/src"
    cat >"$1/Cargo.toml" <<'EOF'
[package]
name = "tchap-secure-size-proxy"
description = "Stand-in for libtchap_secure.so while native/jni is not buildable (size measurements only)"
edition.workspace = true
version.workspace = true
license.workspace = true
publish = false

[lib]
name = "tchap_secure"
crate-type = ["cdylib"]

[dependencies]
tchap-secure-core.workspace = true
tchap-secure-hsm.workspace = true
jni.workspace = true
tokio.workspace = true
ring.workspace = true
EOF
    cat >"$1/src/lib.rs" <<'EOF'
//! Size stand-in: one JNI export that drives the whole core API, so that the linked code is
//! what the real bridge links. Never shipped.
#![allow(missing_docs, unsafe_code, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use jni::objects::{JByteArray, JClass, JString};
use jni::sys::jlong;
use jni::{Env, EnvUnowned};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{KekId, KeyVault, SecretBytes, VaultError};

/// A KEK in a file next to the data (stand-in for the Android Keystore binder).
struct FileKek(std::path::PathBuf);

impl FileKek {
    fn path(&self, id: &KekId) -> std::path::PathBuf {
        self.0.join(format!("kek-{}", id.hex()))
    }
    fn key(&self, id: &KekId) -> Result<LessSafeKey, VaultError> {
        let bytes = std::fs::read(self.path(id)).map_err(|_| VaultError::KekNotFound)?;
        Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| VaultError::Unwrap)?))
    }
}

impl KeyVault for FileKek {
    fn describe(&self) -> String {
        "size-proxy file KEK".into()
    }
    fn generate_kek(&self, id: &KekId) -> Result<(), VaultError> {
        let mut k = [0u8; 32];
        SystemRandom::new().fill(&mut k).map_err(|_| VaultError::Rng)?;
        std::fs::write(self.path(id), k).map_err(|_| VaultError::KekExists)
    }
    fn wrap(&self, id: &KekId, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let key = self.key(id)?;
        let mut n = [0u8; 12];
        SystemRandom::new().fill(&mut n).map_err(|_| VaultError::Rng)?;
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(n), Aad::from(aad), &mut buf)
            .map_err(|_| VaultError::Unwrap)?;
        let mut out = n.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }
    fn unwrap(&self, id: &KekId, aad: &[u8], wrapped: &[u8]) -> Result<SecretBytes, VaultError> {
        let key = self.key(id)?;
        if wrapped.len() < 28 {
            return Err(VaultError::Unwrap);
        }
        let (n, c) = wrapped.split_at(12);
        let mut buf = c.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| VaultError::Unwrap)?;
        let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| VaultError::Unwrap)?;
        Ok(SecretBytes::new(plain.to_vec()))
    }
    fn destroy_kek(&self, id: &KekId) -> Result<(), VaultError> {
        std::fs::remove_file(self.path(id)).map_err(|_| VaultError::KekNotFound)
    }
}

fn run(config: &[u8], dir: &str, user: &str, password: Vec<u8>, peer: &str) -> Result<i64, String> {
    let config = Config::from_json(config).map_err(|e| e.to_string())?;
    let dir = Path::new(dir);
    let backend = FileKek(dir.to_owned());
    let mut client = Client::open(config, dir, &backend).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let n = rt.block_on(async {
        if client.session().is_none() {
            client.login(user, &SecretBytes::new(password), "size-proxy").await?;
        }
        let _ = client.whoami().await?;
        let s = client.sync_once(Duration::from_secs(1)).await?;
        let room = client.create_room(Some("r"), &[peer.to_owned()], true).await?;
        client.invite(&room, peer).await?;
        client.send_text(&room, "hello").await?;
        let _ = client.devices(peer).await?;
        client.join(&room).await?;
        let _ = client.rotate_room_key(&room)?;
        let _ = client.outbound_session_id(&room)?;
        let m = client.messages(&room, 50)?;
        let _ = client.store().rooms()?;
        let _ = client.store().members(&room)?;
        let _ = client.store().security_events()?;
        let _ = client.identity_keys();
        client.sync_loop(Duration::from_secs(1), |_| std::ops::ControlFlow::Break(())).await?;
        client.leave(&room).await?;
        client.logout().await?;
        Ok::<_, tchap_secure_core::Error>((s.rooms + m.len()) as i64)
    });
    let n = n.map_err(|e| e.to_string())?;
    client.wipe(&backend).map_err(|e| e.to_string())?;
    Ok(n)
}

fn body(env: &mut Env<'_>, config: &JByteArray<'_>, dir: &JString<'_>, user: &JString<'_>,
        password: &JByteArray<'_>, peer: &JString<'_>) -> jni::errors::Result<jlong> {
    let config = env.convert_byte_array(config)?;
    let dir = dir.try_to_string(env)?;
    let user = user.try_to_string(env)?;
    let password = env.convert_byte_array(password)?;
    let peer = peer.try_to_string(env)?;
    match std::panic::catch_unwind(|| run(&config, &dir, &user, password, &peer)) {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(message)) => {
            env.throw_new(jni::jni_str!("java/lang/IllegalStateException"), jni::strings::JNIString::from(message))?;
            Ok(-1)
        }
        Err(_) => Ok(-2),
    }
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_SizeProxy_run<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    config: JByteArray<'l>,
    dir: JString<'l>,
    user: JString<'l>,
    password: JByteArray<'l>,
    peer: JString<'l>,
) -> jlong {
    env.with_env(|env| body(env, &config, &dir, &user, &password, &peer))
        .resolve::<jni::errors::ThrowRuntimeExAndDefault>()
}
EOF
}

make_overlay() { # $1 = overlay dir; $2 = include native/jni (0/1)
    local ov="$1" with_jni="$2"
    rm -rf "$ov/hsm" "$ov/native" "$ov/size-proxy"
    mkdir -p "$ov/native"
    cp -a "$repo/hsm" "$ov/hsm"
    cp -a "$repo/native/core" "$ov/native/core"
    local members='"hsm", "native/core", "size-proxy"'
    if [[ $with_jni == 1 ]]; then
        cp -a "$repo/native/jni" "$ov/native/jni"
        members='"hsm", "native/core", "native/jni", "size-proxy"'
    fi
    rm -rf "$ov/hsm/target" "$ov/native/core/target" "$ov/native/jni/target"
    write_proxy "$ov/size-proxy"
    local line='features = \["bundled-sqlcipher-vendored-openssl"\]'
    grep -q "^rusqlite = .*$line" "$repo/Cargo.toml" \
        || { echo "the root Cargo.toml's rusqlite line is not the expected one; update size-report.sh" >&2; exit 1; }
    sed -e "s|^members = .*|members = [$members]|" \
        -e "s|^default-members = .*|default-members = [$members]|" \
        "$repo/Cargo.toml" >"$ov/Cargo.toml.new"
    if [[ $vendored == 0 ]]; then
        sed -i "s/^\(rusqlite = .*\)$line/\1features = [\"bundled-sqlcipher\"]/" "$ov/Cargo.toml.new"
        grep -q '^rusqlite = .*"bundled-sqlcipher"\]' "$ov/Cargo.toml.new"
    fi
    # Only rewrite when changed, so cargo's fingerprints survive repeated runs.
    cmp -s "$ov/Cargo.toml.new" "$ov/Cargo.toml" 2>/dev/null || cp "$ov/Cargo.toml.new" "$ov/Cargo.toml"
    rm "$ov/Cargo.toml.new"
    cp "$repo/Cargo.lock" "$ov/Cargo.lock"
}

build() { # $1 = workspace dir, $2 = package; prints cargo's output on failure only
    local log="$CARGO_TARGET_DIR/size-report-build.log"
    mkdir -p "$CARGO_TARGET_DIR"
    local started=$SECONDS
    # cargo does not track libcrypto.a (libsqlite3-sys only emits a link-search path): relink
    # when build.sh produced a newer one.
    local so="$CARGO_TARGET_DIR/$target/release/libtchap_secure.so"
    if [[ -n "${OPENSSL_LIB_DIR:-}" && -f "$so" && "$OPENSSL_LIB_DIR/libcrypto.a" -nt "$so" ]]; then
        (cd "$1" && cargo clean --release --target "$target" -p "$2") >/dev/null 2>&1 || true
    fi
    local cmd=(cargo build --release --target "$target" -p "$2")
    # Only the final link changes, so only the final crate is rebuilt.
    [[ $relr == 1 ]] && cmd=(cargo rustc --release --target "$target" -p "$2" --lib
        --crate-type cdylib -- -C link-arg=-Wl,-z,pack-relative-relocs)
    if (cd "$1" && "${cmd[@]}") >"$log" 2>&1; then
        say "  built $2 in $((SECONDS - started)) s"
        return 0
    fi
    return 1
}

step "release cdylib ($variant OpenSSL, target $target)"
if [[ $in_place == 1 ]]; then
    ws="$repo" pkg=tchap-secure-jni what="native/jni (in place)"
    [[ $vendored == 1 ]] && { echo "--vendored is for the overlay only" >&2; exit 2; }
    build "$ws" "$pkg" || { tail -n 40 "$CARGO_TARGET_DIR/size-report-build.log" >&2; exit 1; }
else
    ws="$cache/size-overlay/$variant"
    mkdir -p "$ws"
    make_overlay "$ws" "$jni_present"
    if [[ $jni_present == 1 ]] && build "$ws" tchap-secure-jni; then
        pkg=tchap-secure-jni what="native/jni (overlay: $ws)"
    else
        [[ $jni_present == 1 ]] && say "  native/jni does not build yet ($(grep -m1 '^error' "$CARGO_TARGET_DIR/size-report-build.log" || echo 'see log')); using the stand-in"
        pkg=tchap-secure-size-proxy what="size-proxy stand-in (overlay: $ws)"
        build "$ws" "$pkg" || { tail -n 40 "$CARGO_TARGET_DIR/size-report-build.log" >&2; exit 1; }
    fi
fi
so="$CARGO_TARGET_DIR/$target/release/libtchap_secure.so"
[[ -f "$so" ]] || { echo "no $so" >&2; exit 1; }

# --- 3. checks: fully static crypto, nothing left undefined ---------------------------------
if readelf -d "$so" | grep -q 'NEEDED.*libcrypto'; then
    echo "error: $so links libcrypto dynamically (stale libsqlite3-sys build script output?" \
        "run: cargo clean -p libsqlite3-sys --release --target $target)" >&2
    exit 1
fi
undefined="$(readelf --dyn-syms -W "$so" | awk '$7 == "UND" {print $8}' \
    | grep -E '^(sqlite3|sqlcipher|EVP_|OPENSSL_|OSSL_|CRYPTO_|RAND_|PKCS5_|HMAC|ERR_|OBJ_)' || true)"
if [[ -n "$undefined" ]]; then
    echo "error: undefined SQLite/OpenSSL symbols (an omitted feature is needed): $undefined" >&2
    exit 1
fi

# --- 4. report ----------------------------------------------------------------------------
out="$CARGO_TARGET_DIR/size-report"
mkdir -p "$out"
size=$(stat -c %s "$so")
strip_tool="strip"
[[ "$target" != "$host" ]] && strip_tool="${STRIP:-llvm-strip}"
"$strip_tool" --strip-all -o "$out/libtchap_secure.so" "$so"
ssize=$(stat -c %s "$out/libtchap_secure.so")
if [[ $quiet == 1 ]]; then
    echo "$ssize"
else
    step "result"
    say "  measured:  $what"
    say "  built:     $so ($size bytes, profile strip = \"symbols\")"
    say "  stripped:  $out/libtchap_secure.so"
    say "  SIZE:      $ssize bytes = $(awk "BEGIN{printf \"%.2f\", $ssize/1e6}") MB = $(awk "BEGIN{printf \"%.2f\", $ssize/1048576}") MiB$([[ $relr == 1 ]] && echo ' (RELR)')"
    say "  budget:    $budget bytes -> $([[ $ssize -le $budget ]] && echo OK || echo OVER BUDGET)"
    say "  crypto:    $(grep -ao 'OPENSSLDIR: "[^"]*"' "$so" | head -n 1) ($(grep -ao 'OpenSSL 3\.[0-9.]* [0-9]* [A-Za-z]* 20[0-9][0-9]' "$so" | head -n 1))"
fi

# --- 5. where the bytes go ----------------------------------------------------------------
if [[ $bloat == 1 ]]; then
    # Per input of the final link (the Rust code is one LTO object; the C libraries are
    # separate inputs), from a linker map of the same build with symbols kept. Each input's
    # size includes its own .eh_frame and .data.rel.ro.
    map="$out/libtchap_secure.map"
    relr_arg=()
    [[ $relr == 1 ]] && relr_arg=(-C link-arg=-Wl,-z,pack-relative-relocs)
    if command -v python3 >/dev/null \
        && (cd "$ws" && cargo rustc --release --target "$target" -p "$pkg" --lib --crate-type cdylib \
            -- -C strip=none -C "link-arg=-Wl,-Map=$map" "${relr_arg[@]}") >/dev/null 2>&1; then
        step "linker map: bytes per input of the final link"
        python3 - "$map" <<'PY'
import collections, re, sys
sizes = collections.Counter(); sections = collections.Counter(); out_sec = None
for line in open(sys.argv[1]):   # lld map: VMA LMA Size Align Out/In/Symbol (by indent)
    m = re.match(r'^\s*[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+ (\s*)(.*)$', line)
    if not m:
        continue
    size, indent, name = int(m.group(1), 16), len(m.group(2)), m.group(3).strip()
    if indent == 0:
        out_sec = name
        continue
    if indent > 8 or out_sec is None or out_sec.startswith('.debug') or out_sec in (
            '.comment', '.symtab', '.strtab', '.shstrtab'):
        continue
    f = name.rsplit(':(', 1)[0]
    a = re.match(r'^(.*)\((.*)\)$', f)
    base = (a.group(1) if a else f).rsplit('/', 1)[-1]
    if base == 'libcrypto.a':
        key = 'OpenSSL libcrypto (C/asm)'
    elif base.startswith('libopenssl_sys'):
        key = 'OpenSSL libcrypto (vendored, via openssl-sys)'
    elif 'libsqlite3_sys' in base:
        key = 'SQLCipher/SQLite (C, libsqlite3-sys)'
    elif base.startswith('libring'):
        key = 'ring (C/asm; its Rust is in the LTO unit)'
    elif base.endswith('.rcgu.o') or '.rcgu.o' in base:
        key = 'Rust, all crates (one LTO unit; see cargo bloat)'
    elif base == '<internal>':
        key = 'linker-made: ' + out_sec
    else:
        key = 'other: ' + re.sub(r'-[0-9a-f]{16}', '', base)
    if key.startswith('linker-made'):
        if out_sec == '.rodata':
            key = 'linker-made: merged string literals of all inputs'
        elif out_sec in ('.rela.dyn', '.relr.dyn'):
            key = 'linker-made: dynamic relocations (' + out_sec + ')'
        elif out_sec != '.eh_frame_hdr':
            key = 'linker-made: other (.dynsym, .plt, ...)'
    sizes[key] += size
total = sum(sizes.values())
for k, v in sizes.most_common(12):
    print(f"  {v:>9,d}  {100 * v / total:5.1f}%  {k}")
print(f"  {total:>9,d}  100.0%  total of the inputs (file adds headers and alignment)")
PY
    else
        say "  (no linker map: python3 missing or the map build failed)"
    fi
    if command -v cargo-bloat >/dev/null; then
        step "cargo bloat --crates (Rust by crate; C code is [Unknown] or under the crate that builds it)"
        (cd "$ws" && CARGO_PROFILE_RELEASE_STRIP=none cargo bloat --release --target "$target" \
            -p "$pkg" --lib --crates -n 20 2>/dev/null | grep -v '^$') || say "  (cargo bloat failed)"
    else
        say "  (cargo-bloat not installed: \`cargo install cargo-bloat\` for the per-crate breakdown)"
    fi
fi
[[ $ssize -le $budget ]]
