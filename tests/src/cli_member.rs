//! The real `tchap-secure` CLI binary driven as a cabinet member would use it: per-member data
//! directories, SoftHSM2 tokens and configuration files, `--json` runs, and runs stopped at a
//! named crash point then killed with SIGKILL (shared by the end-to-end and interop tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tempfile::TempDir;

use crate::harness::PASSWORD;
use crate::softhsm::SoftHsmToken;
use crate::synapse::Synapse;

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

/// A cabinet member driven through the CLI: their own data directory and their own token, in
/// a SoftHSM2 token directory of their own (one token store per phone, as in real life; CLI
/// processes of different members never touch the same token files).
pub struct Member {
    pub user_id: String,
    pub localpart: String,
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub token_label: String,
    pub pin: String,
    pub token: SoftHsmToken,
}

impl Member {
    /// Registers a unique user on the shared Synapse and prepares a data dir and a token.
    pub fn new(prefix: &str) -> Self {
        let synapse = Synapse::shared();
        Self::on(synapse, &synapse.client_config(), prefix)
    }

    /// As [`Member::new`], on `synapse` with the client configuration `config` (e.g. the
    /// content scanner's front as the homeserver URL).
    pub fn on(synapse: &Synapse, config: &Value, prefix: &str) -> Self {
        let localpart = synapse.unique_user(prefix);
        let registered = synapse.register(&localpart, PASSWORD, false);
        let dir = tempfile::tempdir().unwrap();
        let config_path = write_config(dir.path(), config);
        let token_label = format!("{prefix}-token");
        let pin = format!("{prefix}-pin-1234");
        let token = SoftHsmToken::with_pin(&token_label, &pin);
        Self {
            user_id: registered.user_id,
            localpart,
            dir,
            config_path,
            token_label,
            pin,
            token,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a CLI command as this member (`--json`) with another token label and PIN.
    pub fn run_with_token(&self, label: &str, pin: &str, args: &[&str]) -> Run {
        self.run_as(label, pin, &[], args)
    }

    /// As [`Member::run`], with more environment variables (e.g. the debug builds' clock
    /// offset).
    pub fn run_with_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        self.run_as(&self.token_label, &self.pin, env, args)
    }

    fn run_as(&self, label: &str, pin: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
        let data_dir = self.data_dir();
        let mut all = vec![
            "--json",
            "--config",
            self.config_path.to_str().unwrap(),
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--token-label",
            label,
        ];
        all.extend_from_slice(args);
        let conf = self.token.conf_path.to_str().unwrap().to_owned();
        let mut vars = vec![
            ("TCHAP_SECURE_TOKEN_PIN", pin),
            ("SOFTHSM2_CONF", conf.as_str()),
        ];
        vars.extend_from_slice(env);
        cli(&all, &vars, None)
    }

    /// Runs a CLI command as this member (`--json`), PIN in the environment.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_token(&self.token_label, &self.pin, args)
    }

    /// A CLI command as this member (`--json`, PIN in the environment) with no standard
    /// input or output, to be spawned and killed.
    fn background(&self, args: &[&str]) -> Command {
        let data_dir = self.data_dir();
        let mut command = Command::new(cli_bin());
        command
            .args(["--json", "--config", self.config_path.to_str().unwrap()])
            .args([
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--token-label",
                &self.token_label,
            ])
            .args(args)
            .envs(self.token.env())
            .env("TCHAP_SECURE_TOKEN_PIN", &self.pin)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Runs a CLI command that must stop at the named crash point, then kills it with
    /// SIGKILL there (see `fault.rs` in the core).
    pub fn run_until_crash(&self, args: &[&str], point: &str) {
        self.run_until_crash_with_env(args, &[], point);
    }

    /// Logs in (password from the environment) and kills the process at the named crash
    /// point.
    pub fn login_until_crash(&self, point: &str) {
        self.run_until_crash_with_env(
            &["login", "--user", &self.localpart],
            &[("TCHAP_SECURE_PASSWORD", PASSWORD)],
            point,
        );
    }

    /// [`Member::run_until_crash`] with extra environment variables.
    pub fn run_until_crash_with_env(&self, args: &[&str], env: &[(&str, &str)], point: &str) {
        use std::io::BufRead as _;
        let mut child = self
            .background(args)
            .envs(env.iter().copied())
            .env("TCHAP_SECURE_CRASH_POINT", point)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let marker = format!("crash point {point} reached");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(&marker) => break,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("crash point {point} never reached by {args:?}; stderr: {seen:#?}");
                }
            }
        }
        // SIGKILL: no destructor runs, nothing is flushed.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
    }

    /// Runs a CLI command and kills it with SIGKILL after `after` (wherever it is then; if it
    /// finished first, nothing is killed). Returns whether it was killed.
    pub fn run_killed_after(&self, args: &[&str], after: std::time::Duration) -> bool {
        let mut child = self.background(args).spawn().unwrap();
        let deadline = std::time::Instant::now() + after;
        while std::time::Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        true
    }

    /// Logs in through the CLI, PIN and password on stdin.
    pub fn login(&self) -> Run {
        let data_dir = self.data_dir();
        let conf = self.token.conf_path.to_str().unwrap().to_owned();
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
            &[("SOFTHSM2_CONF", &conf)],
            Some(&format!("{}\n{PASSWORD}\n", self.pin)),
        )
    }
}
