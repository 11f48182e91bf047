//! SoftHSM2 fixture: every PKCS#11 test runs in a child process of its own, with its own token
//! directory. Used by the unit tests of the crate (through `#[path]`) and by `tests/*.rs`.
//!
//! Why a child process rather than setting `SOFTHSM2_CONF` once in the test process:
//! - SoftHSM2 reads `SOFTHSM2_CONF` at `C_Initialize`, and in Rust 2024 `std::env::set_var` is
//!   `unsafe` (other threads may be reading the environment), which `#![forbid(unsafe_code)]`
//!   rules out, rightly: the test harness is multi-threaded.
//! - A PKCS#11 module's state (initialisation, login) is per process: a fresh process per test
//!   means no test can observe another's sessions.
//!
//! `run_isolated` re-runs the current test binary filtered to exactly the calling test, with
//! `SOFTHSM2_CONF` set through `Command::env`; inside that child it runs the body. Two tokens,
//! [`TOKEN_A`] and [`TOKEN_B`], are initialised before the child starts.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixture"
)]

use std::path::Path;
use std::process::Command;

/// Label of the first token of every isolated test.
pub(crate) const TOKEN_A: &str = "tchap-test-a";
/// Label of the second token (another "device") of every isolated test.
pub(crate) const TOKEN_B: &str = "tchap-test-b";
/// User PIN of both tokens. A test constant: the product never puts a PIN on a command line.
pub(crate) const USER_PIN: &str = "4321-user-pin";
/// Security officer PIN of both tokens.
pub(crate) const SO_PIN: &str = "8765-so-pin";
/// PKCS#11 module under test.
pub(crate) const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Set in the child process only.
const CHILD_MARKER: &str = "TCHAP_HSM_TEST_CHILD";

/// Runs `body` in a fresh child process with its own SoftHSM2 tokens.
///
/// Call as `run_isolated(module_path!(), "<name of the calling test fn>", || { ... })`. The
/// parent fails unless the child ran exactly one test and it passed, so a misspelt name
/// cannot make a test vacuously green.
pub(crate) fn run_isolated(module_path: &str, test_fn: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD_MARKER).is_some() {
        body();
        return;
    }
    // libtest names a test by its path without the crate name.
    let test_name = match module_path.split_once("::") {
        Some((_crate, path)) => format!("{path}::{test_fn}"),
        None => test_fn.to_owned(),
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = write_softhsm_conf(dir.path());
    for label in [TOKEN_A, TOKEN_B] {
        init_token(&conf, label);
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            test_name.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_MARKER, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed;"),
        "isolated test {test_name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}

/// Writes a `softhsm2.conf` with a token directory under `dir`; returns its path.
fn write_softhsm_conf(dir: &Path) -> std::path::PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

fn init_token(conf: &Path, label: &str) {
    let output = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", USER_PIN, "--so-pin", SO_PIN])
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "softhsm2-util --init-token {label}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
