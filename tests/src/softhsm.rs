//! Per-run SoftHSM2 tokens.
//!
//! SoftHSM2 finds its configuration (and through it the token directory) only through the
//! `SOFTHSM2_CONF` environment variable. Two ways to use a token:
//!
//! - **Child processes** (the CLI, the JVM): [`SoftHsmToken::new`] makes a private token
//!   directory; pass [`SoftHsmToken::env`] to the child's environment.
//! - **In this process** (cryptoki in a test): [`process_wide`] returns the one token whose
//!   configuration this process's `SOFTHSM2_CONF` names.
//!
//! Setting an environment variable is `unsafe` in edition 2024: another thread may read the
//! environment through libc (`getenv` in SoftHSM, glibc's resolver, SQLite's temp-file lookup)
//! while glibc reallocates the `environ` array, and test harness threads run concurrently. So
//! the variable is not set when `process_wide()` is first called (some other test may be
//! running C code by then) but before `main`, while the process still has a single thread,
//! from an `.init_array` constructor that first checks the process really has one thread;
//! `process_wide()` later creates the file the variable names. The constructor is linked into
//! every test binary that calls `process_wide()` (which references it). It only sets the
//! variable, to a path under the temp dir that exists once `process_wide()` has run; so a test
//! binary that links this module sees `SOFTHSM2_CONF` set even if it never calls
//! `process_wide()`: child processes should get [`SoftHsmToken::env`] explicitly.

use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tempfile::TempDir;

/// Label of the [`process_wide`] token.
pub const DEFAULT_LABEL: &str = "tchap-test";
/// User PIN of the [`process_wide`] token and of tokens made by [`SoftHsmToken::new`].
pub const DEFAULT_USER_PIN: &str = "1234-test-pin";
/// Security Officer PIN of every token the testbed initialises.
pub const DEFAULT_SO_PIN: &str = "5678-test-so-pin";

/// A SoftHSM2 configuration with its own token directory, and one initialised token in it.
#[derive(Debug)]
pub struct SoftHsmToken {
    /// The `softhsm2.conf` to put in `SOFTHSM2_CONF`.
    pub conf_path: PathBuf,
    /// The token directory (`directories.tokendir`).
    pub token_dir: PathBuf,
    /// Label of the token initialised at creation.
    pub label: String,
    /// Its user PIN.
    pub user_pin: String,
    /// Its Security Officer PIN.
    pub so_pin: String,
    /// The PKCS#11 module (`libsofthsm2.so`).
    pub module: PathBuf,
    /// Owns the temporary directory of tokens from [`SoftHsmToken::new`]; `None` for the
    /// process-wide token, whose directory is removed by a later test process's sweep.
    _dir: Option<TempDir>,
}

impl SoftHsmToken {
    /// A fresh temporary directory with a `softhsm2.conf` (`directories.tokendir`,
    /// `objectstore.backend = file`, `log.level = ERROR`) and one token labelled `label`,
    /// user PIN [`DEFAULT_USER_PIN`], initialised with
    /// `softhsm2-util --init-token --free --label … --pin … --so-pin …`.
    pub fn new(label: &str) -> SoftHsmToken {
        Self::with_pin(label, DEFAULT_USER_PIN)
    }

    /// Like [`SoftHsmToken::new`] with another user PIN.
    pub fn with_pin(label: &str, user_pin: &str) -> SoftHsmToken {
        let dir = tempfile::Builder::new()
            .prefix("tchap-testbed-softhsm-")
            .tempdir()
            .expect("create a temp dir for SoftHSM2");
        let conf_path = dir.path().join("softhsm2.conf");
        let mut token = Self::create(conf_path, label, user_pin);
        token._dir = Some(dir);
        token
    }

    /// The token whose configuration this process's `SOFTHSM2_CONF` names, for in-process
    /// PKCS#11 (label [`DEFAULT_LABEL`], PIN [`DEFAULT_USER_PIN`]); created on first call.
    pub fn process_wide() -> &'static SoftHsmToken {
        process_wide()
    }

    fn create(conf_path: PathBuf, label: &str, user_pin: &str) -> SoftHsmToken {
        let base = conf_path
            .parent()
            .expect("the configuration file is inside a directory");
        let token_dir = base.join("tokens");
        std::fs::create_dir_all(&token_dir).expect("create the SoftHSM2 token directory");
        let conf = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            token_dir.display()
        );
        std::fs::write(&conf_path, conf).expect("write softhsm2.conf");
        let token = SoftHsmToken {
            conf_path,
            token_dir,
            label: label.to_owned(),
            user_pin: user_pin.to_owned(),
            so_pin: DEFAULT_SO_PIN.to_owned(),
            module: module_path(),
            _dir: None,
        };
        token.add_token(label, user_pin);
        token
    }

    /// The environment a child process needs to see these tokens:
    /// `[("SOFTHSM2_CONF", conf_path)]`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "SOFTHSM2_CONF".to_owned(),
            self.conf_path.display().to_string(),
        )]
    }

    /// Initialise another token (SO PIN [`DEFAULT_SO_PIN`]) in the first free slot of the
    /// same token directory, with the same configuration.
    pub fn add_token(&self, label: &str, pin: &str) {
        let output = self
            .util()
            .args(["--init-token", "--free", "--label", label, "--pin", pin])
            .args(["--so-pin", &self.so_pin])
            .output()
            .expect("run softhsm2-util (is the softhsm2 package installed?)");
        assert!(
            output.status.success(),
            "softhsm2-util --init-token --label {label} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `softhsm2-util --show-slots` output for this configuration.
    pub fn show_slots(&self) -> String {
        let output = self
            .util()
            .arg("--show-slots")
            .output()
            .expect("run softhsm2-util --show-slots");
        assert!(
            output.status.success(),
            "softhsm2-util --show-slots failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn util(&self) -> Command {
        let mut command = Command::new("softhsm2-util");
        command.env("SOFTHSM2_CONF", &self.conf_path);
        command
    }
}

/// The process-wide token: see [`SoftHsmToken::process_wide`].
pub fn process_wide() -> &'static SoftHsmToken {
    static TOKEN: OnceLock<SoftHsmToken> = OnceLock::new();
    TOKEN.get_or_init(|| {
        // Reading the constructor's slot keeps it (and its object file) in every binary that
        // calls this function.
        std::hint::black_box(&INSTALL_PROCESS_WIDE_CONF);
        let conf_path = PROCESS_WIDE_CONF
            .get()
            .expect(
                "SOFTHSM2_CONF was not installed before main: the process already had several \
                 threads then, so setting it would have been unsound",
            )
            .clone();
        assert_eq!(
            std::env::var_os("SOFTHSM2_CONF").as_deref(),
            Some(conf_path.as_os_str()),
            "SOFTHSM2_CONF was changed after the testbed set it before main"
        );
        crate::scratch::create(
            conf_path
                .parent()
                .expect("the configuration file is inside a directory"),
        );
        SoftHsmToken::create(conf_path, DEFAULT_LABEL, DEFAULT_USER_PIN)
    })
}

/// The `softhsm2.conf` path chosen before `main` for [`process_wide`].
static PROCESS_WIDE_CONF: OnceLock<PathBuf> = OnceLock::new();

#[used]
#[allow(unsafe_code)]
// SAFETY: `link_section` is unsafe because the linker gives the section its meaning. glibc's
// start-up code calls every pointer in `.init_array` once, before `main`, as
// `void (*)(int argc, char **argv, char **envp)`; this static is one such pointer, with exactly
// that signature and the C ABI. It is `#[used]` and read by `process_wide`, so it is neither
// optimised out nor separated from the code that relies on it.
#[unsafe(link_section = ".init_array")]
static INSTALL_PROCESS_WIDE_CONF: extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
    install_process_wide_conf;

/// Runs before `main` (see [`INSTALL_PROCESS_WIDE_CONF`]): choose the process-wide
/// configuration path and export it. Must not panic (it would abort before `main`).
extern "C" fn install_process_wide_conf(
    _argc: c_int,
    _argv: *const *const c_char,
    _envp: *const *const c_char,
) {
    // Checked, not assumed: if anything started a thread before `main`, leave the
    // environment alone (`process_wide` then reports it).
    if !single_threaded() {
        return;
    }
    let conf_path = crate::scratch::path_for("softhsm").join("softhsm2.conf");
    #[allow(unsafe_code)]
    // SAFETY: `set_var` is unsound only if another thread reads or writes the environment at
    // the same time (through libc, which std's environment lock does not cover). This runs
    // before `main`, and `single_threaded()` just read `/proc/self/task` and found this thread
    // alone in the process. Only a running thread can start another one, and between that
    // check and this call this thread starts none; so no other thread exists to race with.
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &conf_path);
    }
    let _ = PROCESS_WIDE_CONF.set(conf_path);
}

/// Whether this process has exactly one thread (Linux `/proc/self/task`). Does not panic.
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}

/// The SoftHSM2 PKCS#11 module: `TCHAP_SECURE_SOFTHSM_MODULE`, else the Debian paths.
fn module_path() -> PathBuf {
    if let Some(path) = std::env::var_os("TCHAP_SECURE_SOFTHSM_MODULE") {
        return PathBuf::from(path);
    }
    const CANDIDATES: [&str; 3] = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ];
    CANDIDATES
        .iter()
        .map(Path::new)
        .find(|path| path.exists())
        .unwrap_or(Path::new(CANDIDATES[0]))
        .to_path_buf()
}
