#!/usr/bin/env bash
# Builds the minimal static OpenSSL libcrypto that SQLCipher needs, and nothing else.
#
#   native/openssl-min/build.sh [OUT_DIR]
#
# OUT_DIR defaults to ${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}/openssl-min/<target>.
# It receives lib/libcrypto.a, include/openssl/*.h and build-info.txt; the script prints the
# two lines to export for rusqlite's `bundled-sqlcipher` feature:
#
#   OPENSSL_LIB_DIR=<OUT_DIR>/lib  OPENSSL_INCLUDE_DIR=<OUT_DIR>/include
#
# Sources: the OpenSSL tree shipped inside the `openssl-src` crate in the cargo registry: the
# version locked in the workspace's Cargo.lock (the release the vendored build uses), else the
# newest 300.x present (`cargo fetch` downloads it); override with OPENSSL_SRC_DIR.
# Idempotent: nothing is rebuilt when build-info.txt matches the sources, the options, the
# compiler and the flags; any change rebuilds from scratch.
#
# Environment (all optional):
#   TARGET            Rust target triple (default: the host's, from rustc). Selects the
#                     OpenSSL target: x86_64-unknown-linux-gnu, aarch64-linux-android,
#                     armv7-linux-androideabi, i686-linux-android, x86_64-linux-android, …
#   CC, AR, RANLIB    compiler and archiver (default: cc/ar/ranlib on the host; for Android,
#                     the NDK's clang wrapper and llvm-ar/llvm-ranlib, see README.md).
#   OPT_CFLAGS        optimisation flags (default: -Os).
#   EXTRA_CFLAGS      more compiler flags appended after ours.
#   OPENSSL_MIN_EXTRA_OPTS  more Configure options (e.g. `enable-xxx` to put one back).
#   JOBS              parallel make jobs (default: nproc).
#   OPENSSL_SRC_DIR   an OpenSSL source tree to use instead of openssl-src's.
#   OPENSSL_MIN_AVX512=1  keep OpenSSL's AVX-512 assembly on x86_64 (see below).
#
# Cross-compiling for Android (NDK r26+, minSdk 28; README.md has all three ABIs):
#   NDK=$ANDROID_NDK_HOME/toolchains/llvm/prebuilt/linux-x86_64/bin
#   TARGET=aarch64-linux-android CC=$NDK/aarch64-linux-android28-clang \
#     AR=$NDK/llvm-ar RANLIB=$NDK/llvm-ranlib native/openssl-min/build.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
log() { printf 'openssl-min: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- target -----------------------------------------------------------------------------
if [[ -z "${TARGET:-}" ]]; then
    TARGET="$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')"
    [[ -n "$TARGET" ]] || die "TARGET is not set and rustc is not available to guess it"
fi
case "$TARGET" in
    x86_64-unknown-linux-gnu|x86_64-linux-android) ossl_target=linux-x86_64 ;;
    aarch64-unknown-linux-gnu|aarch64-linux-android) ossl_target=linux-aarch64 ;;
    armv7-linux-androideabi|armv7-unknown-linux-gnueabihf) ossl_target=linux-armv4 ;;
    i686-linux-android|i686-unknown-linux-gnu) ossl_target=linux-elf ;;
    *) die "unsupported TARGET $TARGET (add its OpenSSL target to build.sh)" ;;
esac

out="${1:-${TCHAP_SECURE_CACHE:-$HOME/.cache/tchap-secure}/openssl-min/$TARGET}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# --- sources ----------------------------------------------------------------------------
if [[ -z "${OPENSSL_SRC_DIR:-}" ]]; then
    registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
    locked="$(awk '$0 == "name = \"openssl-src\"" { getline; gsub(/"/, "", $3); print $3 }' \
        "$here/../../Cargo.lock" 2>/dev/null | head -n 1)"
    if [[ -n "$locked" ]]; then
        OPENSSL_SRC_DIR="$(ls -d "$registry"/*/"openssl-src-$locked"/openssl 2>/dev/null | head -n 1 || true)"
    fi
    if [[ -z "${OPENSSL_SRC_DIR:-}" ]]; then
        # Not the locked one: the newest openssl-src 300.x (OpenSSL 3.x) in the registry.
        OPENSSL_SRC_DIR="$(ls -d "$registry"/*/openssl-src-300.*/openssl 2>/dev/null | sort -V | tail -n 1 || true)"
    fi
    [[ -n "$OPENSSL_SRC_DIR" ]] || die "no openssl-src-300.* crate in $registry (run \`cargo fetch\` \
in a workspace that depends on openssl-src, e.g. with rusqlite's bundled-sqlcipher-vendored-openssl)"
fi
[[ -f "$OPENSSL_SRC_DIR/Configure" ]] || die "$OPENSSL_SRC_DIR is not an OpenSSL source tree"
src="$(cd "$OPENSSL_SRC_DIR" && pwd)"
version="$(awk -F= '$1 == "MAJOR" || $1 == "MINOR" || $1 == "PATCH" { print $2 }' \
    "$src/VERSION.dat" | paste -sd. -)"
# Reproducible builds: OpenSSL embeds its build time ("built on: …" in libcrypto.a). Unless the
# caller sets SOURCE_DATE_EPOCH, use the release date of these sources (GNU or BSD date).
release_date="$(sed -n 's/^RELEASE_DATE="\(.*\)"$/\1/p' "$src/VERSION.dat")"
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
    SOURCE_DATE_EPOCH="$(date -u -d "$release_date" +%s 2>/dev/null \
        || date -u -j -f '%d %b %Y %H:%M:%S' "$release_date 00:00:00" +%s)" \
        || die "cannot read RELEASE_DATE in $src/VERSION.dat"
fi
export SOURCE_DATE_EPOCH

# --- tools ------------------------------------------------------------------------------
CC="${CC:-cc}"
AR="${AR:-ar}"
RANLIB="${RANLIB:-ranlib}"
OPT_CFLAGS="${OPT_CFLAGS:--Os}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

# --- what we keep, what we drop (README.md explains each line) ---------------------------
# SQLCipher 4.6.1's OpenSSL provider uses: EVP_aes_256_cbc (page cipher), EVP_MAC "HMAC"
# with sha1/sha256/sha512 (page MAC; we use SHA512), PKCS5_PBKDF2_HMAC (HMAC-key derivation,
# 2 iterations, even with a raw key), RAND_bytes/RAND_add (salt, IVs), OBJ_nid2sn,
# EVP_CIPHER_*/EVP_MD_size, OpenSSL_version, ERR_get_error/ERR_error_string. Everything else
# is switched off. Algorithms that OpenSSL 3.x cannot switch off (RSA, SHA-3, MD5, the AES
# modes, HKDF & co.) stay.
opts=(
    # Build products: one static library, nothing loadable, no programs.
    no-shared no-module no-dso no-engine no-apps no-tests no-docs
    # No TLS/DTLS/QUIC at all (rustls does TLS), hence no sockets either.
    no-ssl no-tls no-dtls no-quic no-sock
    # `bulk` is OpenSSL's own "minimal" cascade: aria async atexit autoload-config blake2 bf
    # camellia cast chacha cmac cms cmp comp ct des dgram dh dsa ec engine filenames idea
    # ktls lms md4 ml-dsa ml-kem multiblock nextprotoneg ocb ocsp poly1305 psk rc2 rc4
    # rmd160 seed siphash siv sm3 sm4 srp srtp ssl3-method ssl-trace tfo ts ui-console
    # whirlpool.
    no-bulk
    # Not covered by `bulk`.
    no-legacy no-deprecated no-argon2 no-scrypt no-slh-dsa no-gost no-sm2 no-ecx no-ec2m
    no-http no-rfc3779 no-integrity-only-ciphers no-err no-stdio
    no-thread-pool no-default-thread-pool no-autoalginit
    no-zlib no-zstd no-brotli
    no-afalgeng no-padlockeng no-capieng no-devcryptoeng no-loadereng no-winstore
)
# shellcheck disable=SC2206
opts+=(${OPENSSL_MIN_EXTRA_OPTS:-})
# x86_64: OpenSSL generates its AVX-512 (VAES/VPCLMULQDQ/IFMA) assembly only when the
# assembler can encode it, and otherwise emits stubs whose capability probe returns 0, so the
# AES-NI/AVX2 code is used. We take the stub path on purpose for modes and RSA that SQLCipher
# never calls (GCM alone is ~700 KB of unrolled code); AES-CBC and SHA keep their full
# assembly. OPENSSL_MIN_AVX512=1 keeps the AVX-512 code.
avx512_stubs=()
if [[ "$ossl_target" == linux-x86_64 && "${OPENSSL_MIN_AVX512:-0}" != 1 ]]; then
    avx512_stubs=(crypto/modes/aes-gcm-avx512.s crypto/aes/aesni-xts-avx512.s
        crypto/aes/aes-cfb-avx512.s crypto/bn/rsaz-2k-avx512.s crypto/bn/rsaz-3k-avx512.s
        crypto/bn/rsaz-4k-avx512.s crypto/bn/rsaz-2k-avxifma.s crypto/bn/rsaz-3k-avxifma.s
        crypto/bn/rsaz-4k-avxifma.s)
fi
cflags=("$OPT_CFLAGS" -ffunction-sections -fdata-sections -fPIC)
# shellcheck disable=SC2206
cflags+=(${EXTRA_CFLAGS:-})

cc_version="$("$CC" --version 2>/dev/null | head -n 1 || true)"
[[ -n "$cc_version" ]] || die "compiler $CC does not run"
info="openssl-min for SQLCipher
openssl: $version ($src)
target: $TARGET ($ossl_target)
cc: $CC ($cc_version)
ar: $AR
ranlib: $RANLIB
cflags: ${cflags[*]}
options: ${opts[*]}
source date epoch: $SOURCE_DATE_EPOCH
avx512 stubs: ${avx512_stubs[*]:-none}
build.sh: $({ sha256sum "$here/build.sh" 2>/dev/null || shasum -a 256 "$here/build.sh"; } | cut -d' ' -f1)"

if [[ -f "$out/build-info.txt" && -f "$out/lib/libcrypto.a" ]] \
    && [[ "$(cat "$out/build-info.txt")" == "$info" ]]; then
    log "up to date: $out"
else
    log "building OpenSSL $version for $TARGET into $out"
    start=$SECONDS
    rm -rf "$out/build" "$out/lib" "$out/include" "$out/build-info.txt"
    mkdir -p "$out/build"
    (
        cd "$out/build"
        # Out-of-tree build: the registry copy of the sources is never written to.
        # --openssldir/--prefix are baked into the library as strings but never used
        # (no config file is loaded, no module or engine is ever looked up).
        env -u CROSS_COMPILE CC="$CC" AR="$AR" RANLIB="$RANLIB" \
            perl "$src/Configure" "$ossl_target" \
            --prefix=/nonexistent/tchap-openssl-min --openssldir=/nonexistent/tchap-openssl-min \
            --libdir=lib "${opts[@]}" "${cflags[@]}" >configure.log 2>&1 \
            || { tail -n 30 configure.log >&2; exit 1; }
        make -j"$JOBS" build_generated >make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
        if [[ ${#avx512_stubs[@]} -gt 0 ]]; then
            # The perlasm scripts ask "$CC -Wa,-v" for the assembler version: generate these
            # few .s files with a stand-in that answers "GNU as 2.20" (before AVX-512), so
            # they take their fallback branch. It only answers the probe; the .s files are
            # then assembled by the real $CC like every other one.
            printf '#!/bin/sh\necho "GNU assembler version 2.20"\n' >old-as
            chmod +x old-as
            make CC="$PWD/old-as" "${avx512_stubs[@]}" >>make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
            for s in "${avx512_stubs[@]}"; do
                [[ $(wc -c <"$s") -lt 8192 ]] || { log "error: $s is not the stub"; exit 1; }
            done
        fi
        make -j"$JOBS" libcrypto.a >>make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
    )
    mkdir -p "$out/lib" "$out/include/openssl"
    cp "$out/build/libcrypto.a" "$out/lib/"
    # Public headers: the static ones from the sources, then the generated ones (opensslv.h,
    # configuration.h with our OPENSSL_NO_* defines, the *.h made from *.h.in).
    cp "$src"/include/openssl/*.h "$out/include/openssl/"
    cp "$out/build"/include/openssl/*.h "$out/include/openssl/"
    rm -rf "$out/build"
    printf '%s\n' "$info" >"$out/build-info.txt"
    log "built in $((SECONDS - start)) s ($(du -k "$out/lib/libcrypto.a" | cut -f1) KiB libcrypto.a)"
fi

echo "OPENSSL_LIB_DIR=$out/lib"
echo "OPENSSL_INCLUDE_DIR=$out/include"
