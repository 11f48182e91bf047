//! Helpers shared by the end-to-end tests: the real `tchap-secure` binary, per-member data
//! directories and tokens, and in-process clients on the process-wide SoftHSM2 token.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde_json::Value;
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use tchap_secure_tests::softhsm::SoftHsmToken;
use tchap_secure_tests::synapse::Synapse;
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple 42";

/// The CLI binary built by `cargo build` next to this test binary (target/<profile>/).
pub fn cli_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TCHAP_SECURE_CLI") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let bin = profile_dir.join("tchap-secure");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`)",
        bin.display()
    );
    bin
}

/// How many tokens one test process may use.
const TOKEN_POOL: usize = 96;

/// A token label and its PIN on the process-wide SoftHSM2 configuration, unique to the caller.
///
/// SoftHSM2 2.6 enumerates its slots once, at `C_Initialize`: a token initialised afterwards is
/// invisible to this process. So the whole pool is initialised on first use, before any test
/// can have opened a PKCS#11 session (every test gets its tokens through here first).
pub fn new_token(_prefix: &str) -> (String, String) {
    static POOL: OnceLock<Vec<(String, String)>> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let pool = POOL.get_or_init(|| {
        let token = SoftHsmToken::process_wide();
        (0..TOKEN_POOL)
            .map(|i| {
                let label = format!("pool-{}-{i}", std::process::id());
                let pin = format!("pin-{i}-{}", std::process::id());
                token.add_token(&label, &pin);
                (label, pin)
            })
            .collect()
    });
    let index = NEXT.fetch_add(1, Ordering::SeqCst);
    pool.get(index)
        .cloned()
        .unwrap_or_else(|| panic!("token pool of {TOKEN_POOL} exhausted: raise TOKEN_POOL"))
}

/// One CLI invocation's result.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The `--json` error object printed on stderr.
    pub fn error(&self) -> Value {
        let line = self
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON error on stderr: {self:?}"));
        serde_json::from_str(line).unwrap()
    }

    /// The last `--json` object printed on stdout.
    pub fn json(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON on stdout: {self:?}"));
        serde_json::from_str(line).unwrap()
    }

    pub fn ok(self) -> Self {
        assert_eq!(self.status, 0, "command failed: {self:?}");
        self
    }
}

/// Runs the CLI with `args`, the SoftHSM2 configuration, and `env`.
pub fn cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut command = Command::new(cli_bin());
    command
        .args(args)
        .env_remove("TCHAP_SECURE_TOKEN_PIN")
        .env_remove("TCHAP_SECURE_PASSWORD");
    for (k, v) in SoftHsmToken::process_wide().env() {
        command.env(k, v);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn tchap-secure");
    if let Some(input) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    Run::from(child.wait_with_output().unwrap())
}

/// Writes a configuration JSON file into `dir`.
pub fn write_config(dir: &Path, config: &Value) -> PathBuf {
    let path = dir.join(format!("config-{}.json", rand_suffix()));
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    path
}

fn rand_suffix() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// A cabinet member driven through the CLI: their own data directory and their own token.
pub struct Member {
    pub user_id: String,
    pub localpart: String,
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub token_label: String,
    pub pin: String,
}

impl Member {
    /// Registers a unique user on the shared Synapse and prepares a data dir and a token.
    pub fn new(prefix: &str) -> Self {
        let synapse = Synapse::shared();
        let localpart = synapse.unique_user(prefix);
        let registered = synapse.register(&localpart, PASSWORD, false);
        let dir = tempfile::tempdir().unwrap();
        let config_path = write_config(dir.path(), &synapse.client_config());
        let (token_label, pin) = new_token(prefix);
        Self {
            user_id: registered.user_id,
            localpart,
            dir,
            config_path,
            token_label,
            pin,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a CLI command as this member (`--json`), PIN in the environment.
    pub fn run(&self, args: &[&str]) -> Run {
        let data_dir = self.data_dir();
        let mut all = vec![
            "--json",
            "--config",
            self.config_path.to_str().unwrap(),
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--token-label",
            &self.token_label,
        ];
        all.extend_from_slice(args);
        cli(&all, &[("TCHAP_SECURE_TOKEN_PIN", &self.pin)], None)
    }

    /// Logs in through the CLI, the password on stdin.
    pub fn login(&self) -> Run {
        let data_dir = self.data_dir();
        cli(
            &[
                "--json",
                "--config",
                self.config_path.to_str().unwrap(),
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--token-label",
                &self.token_label,
                "--pin-stdin",
                "login",
                "--user",
                &self.localpart,
                "--password-stdin",
            ],
            &[],
            Some(&format!("{}\n{PASSWORD}\n", self.pin)),
        )
    }
}

/// An in-process client on its own token of the process-wide SoftHSM2 configuration.
pub struct InProcess {
    pub vault: Pkcs11Vault,
    pub dir: TempDir,
}

impl InProcess {
    pub fn new(prefix: &str) -> Self {
        let (token_label, pin) = new_token(prefix);
        let vault = open_token(&token_label, &pin).unwrap();
        Self {
            vault,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn open(&self) -> Result<Client, tchap_secure_core::Error> {
        Client::open(synapse_config(), &self.data_dir(), &self.vault)
    }
}

pub fn open_token(label: &str, pin: &str) -> Result<Pkcs11Vault, tchap_secure_hsm::VaultError> {
    let token = SoftHsmToken::process_wide();
    Pkcs11Vault::open(
        &Pkcs11Config {
            module: token.module.clone(),
            token_label: label.to_owned(),
        },
        &SecretBytes::from(pin.as_bytes()),
    )
}

pub fn synapse_config() -> Config {
    Config::from_json(Synapse::shared().client_config().to_string().as_bytes()).unwrap()
}

pub fn password() -> SecretBytes {
    SecretBytes::from(PASSWORD.as_bytes())
}

/// A fresh single-threaded runtime for in-process async calls.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Snapshot of every file's bytes under `dir`.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}
