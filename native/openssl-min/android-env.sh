#!/usr/bin/env bash
# Runs a command (cargo ndk …) with the size-optimised SQLCipher settings for Android:
#   1. builds native/openssl-min for each ABI with the NDK's clang (cached: a no-op when up
#      to date);
#   2. exports <TARGET>_OPENSSL_LIB_DIR and <TARGET>_OPENSSL_INCLUDE_DIR for each ABI
#      (libsqlite3-sys reads the target-prefixed variables first, so one cargo-ndk run can
#      build every ABI) and LIBSQLITE3_FLAGS (from ./sqlite-flags);
#   3. runs the command.
#
#   native/openssl-min/android-env.sh cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 \
#       --platform 28 -o android/src/main/jniLibs build --release -p tchap-secure-jni
#
# Without a command, prints the variables as `export …` lines (for `eval`).
# Environment: ANDROID_NDK_HOME (or ANDROID_NDK_ROOT) required; ANDROID_API (default 28, the
# library's minSdk); ABIS (default "arm64-v8a armeabi-v7a x86_64"); TCHAP_SECURE_CACHE.
# The crates must be built without rusqlite's vendored OpenSSL (`-p tchap-secure-jni` with
# tchap-secure-core's `vendored-openssl` feature off): see README.md.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
ndk="${ANDROID_NDK_HOME:-${ANDROID_NDK_ROOT:-}}"
[[ -n "$ndk" ]] || { echo "android-env.sh: set ANDROID_NDK_HOME" >&2; exit 1; }
api="${ANDROID_API:-28}"
case "$(uname -s)" in
    Darwin) host_tag=darwin-x86_64 ;;   # the NDK ships x86_64 (Rosetta) binaries on macOS
    *) host_tag=linux-x86_64 ;;
esac
bin="$ndk/toolchains/llvm/prebuilt/$host_tag/bin"
[[ -d "$bin" ]] || { echo "android-env.sh: no NDK toolchain in $bin" >&2; exit 1; }

exports=()
for abi in ${ABIS:-arm64-v8a armeabi-v7a x86_64}; do
    case "$abi" in
        arm64-v8a) target=aarch64-linux-android clang=aarch64-linux-android$api-clang ;;
        armeabi-v7a) target=armv7-linux-androideabi clang=armv7a-linux-androideabi$api-clang ;;
        x86_64) target=x86_64-linux-android clang=x86_64-linux-android$api-clang ;;
        x86) target=i686-linux-android clang=i686-linux-android$api-clang ;;
        *) echo "android-env.sh: unknown ABI $abi" >&2; exit 1 ;;
    esac
    prefix="$(echo "$target" | tr 'a-z-' 'A-Z_')"
    while IFS='=' read -r name value; do
        case "$name" in
            OPENSSL_LIB_DIR|OPENSSL_INCLUDE_DIR) exports+=("${prefix}_$name=$value") ;;
        esac
    done < <(TARGET="$target" CC="$bin/$clang" AR="$bin/llvm-ar" RANLIB="$bin/llvm-ranlib" \
        "$here/build.sh")
done
# Reproducible builds (tests/repro-check.sh checks the same settings on the host): no build
# path in the library. Panic locations of registry crates carry $CARGO_HOME; C sources built by
# `cc` carry their directory in __FILE__.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
repo="$(cd "$here/../.." && pwd)"
exports+=("CARGO_ENCODED_RUSTFLAGS=--remap-path-prefix=$cargo_home=/build/cargo"$'\x1f'"--remap-path-prefix=$repo=/build/src")
for abi_target in aarch64_linux_android armv7_linux_androideabi x86_64_linux_android i686_linux_android; do
    exports+=("CFLAGS_$abi_target=-ffile-prefix-map=$cargo_home=/build/cargo -ffile-prefix-map=$repo=/build/src")
done
exports+=("LIBSQLITE3_FLAGS=$(sed -e 's/#.*//' "$here/sqlite-flags" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')")

if [[ $# -eq 0 ]]; then
    for e in "${exports[@]}"; do printf 'export %q\n' "$e"; done
else
    exec env "${exports[@]}" "$@"
fi
