//! The antivirus half of the testbed (issue 8): matrix-content-scanner 1.0.8 with ClamAV as its
//! scan script, behind nginx as the single TLS front, in front of a real Synapse.
//!
//! ```text
//! client ──TLS 1.3──▶ nginx https://localhost:FRONT   (testbed PKI server leaf: same key and
//!                       │                              pins as Synapse's, so the product's
//!                       │                              client configuration only changes URL)
//!                       ├─ /_matrix/media_proxy/ ──http──▶ matrix-content-scanner 127.0.0.1:SCANNER
//!                       │                                     │ GET /_matrix/media/v3/download/…
//!                       │                                     ▼ (TLS, testbed root CA only)
//!                       └─ everything else ──TLS (verified)──▶ Synapse https://localhost:SYNAPSE
//! ```
//!
//! The scanner downloads from Synapse **directly**, not through nginx, so nginx's access log
//! ([`ContentScanner::nginx_access_log`]) holds only the client's requests: a test proves that
//! the client never fetched a plain media download by finding no such line there. The
//! homeserver must serve the legacy media API: use [`Synapse::shared_legacy_media`].
//!
//! Installed by `tests/scanner/setup-scanner.sh` (called by `tests/setup.sh`): the scanner's
//! virtualenv, the local ClamAV signature database (EICAR only) and the EICAR file, under
//! `TCHAP_SECURE_CACHE` (default `~/.cache/tchap-secure`); the same environment variables as
//! that script (`TCHAP_SECURE_SCANNER_VENV`, `TCHAP_SECURE_CLAMAV_DB`) move its parts, and
//! `TCHAP_SECURE_NGINX` names the nginx binary (default: `nginx` on `PATH`, then `/usr/sbin`).
//!
//! Both processes are spawned with `PR_SET_PDEATHSIG` in their own process group (`child.rs`),
//! and stopped by signalling the whole group (the scanner's `scan.sh`/`clamscan` children,
//! nginx's workers). Everything lives in one temporary directory, removed on drop; the
//! processes' logs are written there and printed if the test panics. Works as root (CI) and as
//! a normal user.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::pki::CertKey;
use crate::ports::free_loopback_port;
use crate::synapse::{Synapse, random_hex, write};

/// The scanner's API prefix (`/_matrix/media_proxy/unstable`).
pub const MEDIA_PROXY: &str = "/_matrix/media_proxy/unstable";

/// How long each process may take to answer after being spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to exit after SIGTERM before its group gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the front proxies to: a homeserver serving TLS on `127.0.0.1:synapse_port` with a
/// chain that verifies against `root_ca_pem` for the name `localhost`.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The homeserver's TLS port on 127.0.0.1.
    pub synapse_port: u16,
    /// The testbed root CA (PEM): the only anchor of nginx's upstream verification, of the
    /// scanner's downloads and of [`ContentScanner::request`].
    pub root_ca_pem: String,
    /// The chain (leaf first) and key nginx presents to clients.
    pub front_cert: CertKey,
    /// The client configuration (the MDM JSON) for the homeserver, if known: its
    /// `homeserver_url` is replaced by the front's in [`ContentScanner::client_config`].
    pub client_config: Option<Value>,
}

/// One HTTP answer from the front.
#[derive(Clone, Debug)]
pub struct FrontResponse {
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl FrontResponse {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text, lossily, for assertion messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Where setup-scanner.sh put things.
#[derive(Clone, Debug)]
struct Installation {
    python: PathBuf,
    clamav_db: PathBuf,
    eicar: PathBuf,
    scan_script: PathBuf,
    nginx: PathBuf,
}

impl Installation {
    fn locate() -> Result<Self, String> {
        let env_path = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let cache = match env_path("TCHAP_SECURE_CACHE") {
            Some(cache) => cache,
            None => Path::new(
                &std::env::var_os("HOME").ok_or("HOME is not set (or set TCHAP_SECURE_CACHE)")?,
            )
            .join(".cache/tchap-secure"),
        };
        let venv =
            env_path("TCHAP_SECURE_SCANNER_VENV").unwrap_or_else(|| cache.join("scanner-venv"));
        let clamav_db =
            env_path("TCHAP_SECURE_CLAMAV_DB").unwrap_or_else(|| cache.join("clamav-db"));
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let install = Installation {
            python: venv.join("bin/python"),
            eicar: cache.join("eicar.com"),
            clamav_db,
            scan_script: manifest.join("scanner/scan.sh"),
            nginx: find_nginx().ok_or(
                "no nginx on PATH nor in /usr/sbin (run tests/setup.sh, or set TCHAP_SECURE_NGINX)",
            )?,
        };
        for (what, path) in [
            ("the scanner's virtualenv", &install.python),
            ("the ClamAV database", &install.clamav_db),
            ("the EICAR file", &install.eicar),
            ("the scan script", &install.scan_script),
        ] {
            if !path.exists() {
                return Err(format!(
                    "{what} is missing at {} (run tests/setup.sh, which runs tests/scanner/setup-scanner.sh)",
                    path.display()
                ));
            }
        }
        Ok(install)
    }
}

fn find_nginx() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TCHAP_SECURE_NGINX") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// A running content scanner and its TLS front. Dropping it stops both and removes their
/// directory.
pub struct ContentScanner {
    install: Installation,
    upstream: Upstream,
    front_port: u16,
    scanner_port: u16,
    pickle_key: String,
    scanner: Mutex<Option<Child>>,
    nginx: Mutex<Option<Child>>,
    // Declared last: dropped after `Drop::drop` has stopped the processes.
    dir: TempDir,
}

impl std::fmt::Debug for ContentScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentScanner")
            .field("front_url", &self.front_url())
            .field("scanner_port", &self.scanner_port)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl ContentScanner {
    /// Start the scanner and nginx in front of `synapse`, which must serve the legacy media
    /// API ([`Synapse::shared_legacy_media`]). The front presents the same certificate as
    /// Synapse (same pins). Panics, with both processes' logs, if either does not come up.
    pub fn start(synapse: &Synapse) -> ContentScanner {
        Self::start_with(Upstream {
            synapse_port: synapse.port,
            root_ca_pem: synapse.pki.root_ca_pem.clone(),
            front_cert: synapse.pki.server.clone(),
            client_config: Some(synapse.client_config()),
        })
    }

    /// [`ContentScanner::start`] for any homeserver.
    pub fn start_with(upstream: Upstream) -> ContentScanner {
        let install =
            Installation::locate().unwrap_or_else(|e| panic!("content scanner testbed: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("tchap-secure-scanner-")
            .tempdir()
            .expect("create the content scanner's temporary directory");
        let path = dir.path();
        for sub in ["nginx", "scanner-tmp", "no-system-certs"] {
            std::fs::create_dir(path.join(sub))
                .unwrap_or_else(|e| panic!("create {sub} in {}: {e}", path.display()));
        }
        write(&path.join("ca.pem"), &upstream.root_ca_pem);
        write(&path.join("nginx/ca.pem"), &upstream.root_ca_pem);
        write(&path.join("nginx/tls.crt"), &upstream.front_cert.chain_pem);
        crate::harness::write_private(&path.join("nginx/tls.key"), &upstream.front_cert.key_pem);

        let mut this = ContentScanner {
            install,
            upstream,
            front_port: 0,
            scanner_port: 0,
            pickle_key: random_hex(16),
            scanner: Mutex::new(None),
            nginx: Mutex::new(None),
            dir,
        };

        // The scanner first (nginx's readiness check goes through it), each on a fresh port.
        // On failure, the panic unwinds through `this`'s `Drop`, which prints the logs.
        let scanner_log = this.dir.path().join("scanner.log");
        this.start_on_free_port("matrix-content-scanner", &scanner_log, |this, port| {
            this.scanner_port = port;
            this.write_scanner_config();
            this.spawn_scanner()
        });
        let nginx_log = this.nginx_dir().join("error.log");
        this.start_on_free_port("nginx", &nginx_log, |this, port| {
            this.front_port = port;
            this.write_nginx_config();
            this.spawn_nginx()
        });
        this
    }

    /// Starts one process on a fresh loopback port: `start(self, port)` writes its
    /// configuration and spawns it. If it fails because something took the port between the
    /// probe and the bind (what it writes to `log` says so), retries on another port, twice.
    fn start_on_free_port(
        &mut self,
        what: &str,
        log: &Path,
        start: impl Fn(&mut Self, u16) -> Result<(), String>,
    ) {
        let mut attempt = 0;
        loop {
            let port = free_loopback_port();
            let offset = file_len(log);
            match start(self, port) {
                Ok(()) => return,
                Err(e) if attempt < 2 && port_taken(log, offset) => {
                    eprintln!("content scanner: {what} port {port} taken, retrying: {e}");
                }
                Err(e) => panic!("{what} did not start: {e}"),
            }
            attempt += 1;
        }
    }

    /// `https://localhost:FRONT`: the homeserver URL the client uses.
    pub fn front_url(&self) -> String {
        format!("https://localhost:{}", self.front_port)
    }

    /// The front's TLS port on 127.0.0.1.
    pub fn front_port(&self) -> u16 {
        self.front_port
    }

    /// The scanner's plain-HTTP port on 127.0.0.1 (only nginx should talk to it).
    pub fn scanner_port(&self) -> u16 {
        self.scanner_port
    }

    /// The homeserver's client configuration with `homeserver_url` set to the front (same
    /// trust anchor and pins: nginx presents Synapse's certificate) and `content_scanner_keys`
    /// pinning the scanner's current key (asked now). Panics if the scanner was started with
    /// [`ContentScanner::start_with`] without a client configuration.
    pub fn client_config(&self) -> Value {
        self.client_config_pinning(&[self.public_key()])
    }

    /// [`ContentScanner::client_config`] with `content_scanner_keys` set to `keys` (none: the
    /// key is left out).
    pub fn client_config_pinning(&self, keys: &[String]) -> Value {
        let mut config = self
            .upstream
            .client_config
            .clone()
            .expect("no client configuration given to ContentScanner::start_with");
        config["homeserver_url"] = Value::String(self.front_url());
        if !keys.is_empty() {
            config["content_scanner_keys"] = Value::from(keys.to_vec());
        }
        config
    }

    /// The EICAR test file written by setup-scanner.sh (read it; never embed the string).
    pub fn eicar_path(&self) -> PathBuf {
        self.install.eicar.clone()
    }

    /// The directory where the scanner writes each decrypted file in clear before scanning it
    /// (then shreds it): include it in "no trace in clear" scans.
    pub fn scanner_temp_dir(&self) -> PathBuf {
        self.dir.path().join("scanner-tmp")
    }

    /// The directory of nginx's buffers (request bodies, proxied responses), logs and config.
    pub fn nginx_dir(&self) -> PathBuf {
        self.dir.path().join("nginx")
    }

    /// The file holding the scanner's private key (libolm pickle, mode 0600).
    pub fn pickle_path(&self) -> PathBuf {
        self.dir.path().join("scanner.pickle")
    }

    /// nginx's access log (combined format): every request a client made to the front, e.g.
    /// `"POST /_matrix/media_proxy/unstable/download_encrypted HTTP/1.1" 200 …`. The
    /// scanner's own downloads go to Synapse directly and never appear here.
    pub fn nginx_access_log(&self) -> String {
        std::fs::read_to_string(self.nginx_dir().join("access.log")).unwrap_or_default()
    }

    /// nginx's access log once `ready(log)` holds, waiting up to 5 s: nginx writes a request's
    /// line after it has sent the response, so a client that has just read its response may be
    /// ahead of the log. A check that some request did *not* happen (no plain download) must
    /// first wait for the line of the last request the test made, or it could pass on a log
    /// that is merely late. Returns the log as it is after the wait, ready or not.
    pub fn nginx_access_log_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.nginx_access_log();
            if ready(&log) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// nginx's access log once it records at least `n` `download_encrypted` requests (see
    /// [`ContentScanner::nginx_access_log_when`]).
    pub fn access_log_after_downloads(&self, n: usize) -> String {
        self.nginx_access_log_when(|log| proxied_downloads(log) >= n)
    }

    /// nginx's error log (e.g. `connect() failed (111: Connection refused)` with the scanner
    /// stopped).
    pub fn nginx_error_log(&self) -> String {
        std::fs::read_to_string(self.nginx_dir().join("error.log")).unwrap_or_default()
    }

    /// `clamscan -r` with the testbed's signature database (the EICAR signatures) over
    /// `paths`: the `FOUND` lines, empty if nothing matched. Panics if clamscan fails (exit 2:
    /// unreadable path, no database), so an error never reads as "clean".
    pub fn clamscan(&self, paths: &[PathBuf]) -> Vec<String> {
        let output = Command::new("clamscan")
            .args(["-r", "--no-summary", "--infected", "--stdout", "-d"])
            .arg(&self.install.clamav_db)
            .arg("--")
            .args(paths)
            .output()
            .expect("run clamscan");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        // Exit 2 ("some error") when the only errors are paths that vanished between the
        // listing and the scan (other tests' temporary files, gone now): everything that still
        // exists was scanned, and what is gone holds nothing any more.
        let warnings: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("WARNING: "))
            .collect();
        let only_vanished = output.status.code() == Some(2)
            && !warnings.is_empty()
            && warnings.iter().all(|l| {
                l.strip_prefix("WARNING: ")
                    .and_then(|rest| rest.strip_suffix(": Can't access file"))
                    .is_some_and(|path| !std::path::Path::new(path).exists())
            });
        match output.status.code() {
            Some(0) | Some(1) => stdout
                .lines()
                .filter(|l| l.ends_with(" FOUND"))
                .map(str::to_owned)
                .collect(),
            Some(2) if only_vanished => stdout
                .lines()
                .filter(|l| l.ends_with(" FOUND"))
                .map(str::to_owned)
                .collect(),
            other => panic!(
                "clamscan failed ({other:?}): {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// The scanner's output (its INFO log, and `clamscan`'s verdict lines), across restarts.
    pub fn scanner_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("scanner.log")).unwrap_or_default()
    }

    /// Whether the scanner process is running.
    pub fn scanner_running(&self) -> bool {
        lock(&self.scanner)
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Stop the scanner (SIGTERM to its process group, SIGKILL after 5 s); nginx keeps running
    /// and answers `502 Bad Gateway` (text/html) on `/_matrix/media_proxy/`.
    pub fn stop_scanner(&self) {
        if let Some(child) = lock(&self.scanner).take() {
            stop_group(child);
        }
    }

    /// Start the scanner again on the same port, with the same key unless the pickle was
    /// removed. Panics, with its log, if it does not come up. No-op if it is running.
    pub fn start_scanner(&self) {
        if self.scanner_running() {
            return;
        }
        self.stop_scanner(); // reap a process that died on its own
        if let Err(e) = self.spawn_scanner() {
            panic!("matrix-content-scanner did not restart: {e}");
        }
    }

    /// Rotate the scanner's key pair: stop it, delete its pickle, start it (it makes a new
    /// key). A client holding the old public key then gets `MCS_BAD_DECRYPTION`.
    pub fn rotate_key(&self) {
        self.stop_scanner();
        match std::fs::remove_file(self.pickle_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", self.pickle_path().display()),
        }
        self.start_scanner();
    }

    /// The scanner's key pair as it is now (its pickle file's bytes), to put back later with
    /// [`ContentScanner::install_key`].
    pub fn saved_key(&self) -> Vec<u8> {
        std::fs::read(self.pickle_path())
            .unwrap_or_else(|e| panic!("read {}: {e}", self.pickle_path().display()))
    }

    /// Restart the scanner with a key pair saved by [`ContentScanner::saved_key`] (a rotation
    /// to a key announced beforehand).
    pub fn install_key(&self, saved: &[u8]) {
        self.stop_scanner();
        std::fs::remove_file(self.pickle_path())
            .unwrap_or_else(|e| panic!("remove {}: {e}", self.pickle_path().display()));
        crate::harness::write_private(&self.pickle_path(), saved);
        self.start_scanner();
    }

    /// The scanner's current public key (unpadded base64 Curve25519), asked through the
    /// front.
    pub fn public_key(&self) -> String {
        let response = self.request("GET", &format!("{MEDIA_PROXY}/public_key"), None, None);
        assert_eq!(response.status, 200, "public_key: {}", response.text());
        response.json()["public_key"]
            .as_str()
            .unwrap_or_else(|| panic!("no public_key in {}", response.text()))
            .to_owned()
    }

    /// One HTTPS request to the front (testbed helper, not the product's transport): TLS 1.3,
    /// only the testbed root CA trusted, `localhost` resolved to 127.0.0.1, no proxy, no
    /// redirect. `body` is `(content type, bytes)`. Panics if no HTTP answer arrives.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        access_token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> FrontResponse {
        front_request(
            &self.upstream.root_ca_pem,
            self.front_port,
            method,
            path_and_query,
            access_token,
            body,
        )
        .unwrap_or_else(|e| panic!("{method} {path_and_query} via the front: {e}"))
    }

    /// The last lines of every log (scanner, nginx error and access logs, nginx's stdio).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (name, path) in [
            ("scanner.log", self.dir.path().join("scanner.log")),
            ("nginx error.log", self.nginx_dir().join("error.log")),
            ("nginx access.log", self.nginx_dir().join("access.log")),
            ("nginx stdio.log", self.nginx_dir().join("stdio.log")),
        ] {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            let _ = writeln!(out, "--- {name} (last {} lines) ---", tail.len());
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn write_scanner_config(&self) {
        let path = self.dir.path();
        let hs_url = format!("https://localhost:{}", self.upstream.synapse_port);
        let rendered = render(
            include_str!("../scanner/scanner-config.yaml.tmpl"),
            &[
                ("PORT", self.scanner_port.to_string()),
                ("HS_URL", hs_url),
                ("SCRIPT", self.install.scan_script.display().to_string()),
                ("TMP", self.scanner_temp_dir().display().to_string()),
                ("PICKLE", self.pickle_path().display().to_string()),
                ("PICKLE_KEY", self.pickle_key.clone()),
            ],
        );
        let config = path.join("scanner.yaml");
        let _ = std::fs::remove_file(&config);
        // It holds the pickle key.
        crate::harness::write_private(&config, &rendered);
    }

    fn spawn_scanner(&self) -> Result<(), String> {
        let path = self.dir.path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.join("scanner.log"))
            .map_err(|e| format!("open scanner.log: {e}"))?;
        let mut command = Command::new(&self.install.python);
        command
            .args(["-m", "matrix_content_scanner.mcs", "-c"])
            .arg(path.join("scanner.yaml"))
            .current_dir(path)
            // The scanner verifies Synapse's certificate with Python's default store: make it
            // the testbed root CA alone (SSL_CERT_DIR: an empty directory instead of the
            // system's).
            .env("SSL_CERT_FILE", path.join("ca.pem"))
            .env("SSL_CERT_DIR", path.join("no-system-certs"))
            // Read by scan.sh.
            .env("TCHAP_SECURE_CLAMAV_DB", &self.install.clamav_db)
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("PYTHONPATH")
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log.try_clone()
                    .map_err(|e| format!("dup scanner.log: {e}"))?,
            ))
            .stderr(Stdio::from(log));
        let mut child = crate::child::spawn_tied_to_process(command)
            .map_err(|e| format!("spawn {}: {e}", self.install.python.display()))?;
        match wait_scanner_ready(self.scanner_port, &mut child) {
            Ok(()) => {
                // The scanner creates its pickle (its private key) with the umask's mode.
                let pickle = self.pickle_path();
                std::fs::set_permissions(&pickle, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("chmod 600 {}: {e}", pickle.display()))?;
                *lock(&self.scanner) = Some(child);
                Ok(())
            }
            Err(e) => {
                stop_group(child);
                Err(e)
            }
        }
    }

    fn write_nginx_config(&self) {
        let nginx_dir = self.nginx_dir();
        let file = |name: &str| nginx_dir.join(name).display().to_string();
        let rendered = render(
            include_str!("../scanner/nginx.conf.tmpl"),
            &[
                ("DIR", nginx_dir.display().to_string()),
                ("USER", current_user()),
                ("PORT", self.front_port.to_string()),
                ("CERT", file("tls.crt")),
                ("KEY", file("tls.key")),
                ("SCANNER_PORT", self.scanner_port.to_string()),
                ("SYNAPSE_PORT", self.upstream.synapse_port.to_string()),
                ("CA", file("ca.pem")),
            ],
        );
        write(&nginx_dir.join("nginx.conf"), &rendered);
    }

    fn spawn_nginx(&self) -> Result<(), String> {
        let nginx_dir = self.nginx_dir();
        let stdio = OpenOptions::new()
            .create(true)
            .append(true)
            .open(nginx_dir.join("stdio.log"))
            .map_err(|e| format!("open nginx stdio.log: {e}"))?;
        let mut command = Command::new(&self.install.nginx);
        command
            .arg("-p")
            .arg(format!("{}/", nginx_dir.display()))
            .arg("-e")
            .arg(nginx_dir.join("error.log"))
            .arg("-c")
            .arg(nginx_dir.join("nginx.conf"))
            .current_dir(&nginx_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                stdio
                    .try_clone()
                    .map_err(|e| format!("dup nginx stdio.log: {e}"))?,
            ))
            .stderr(Stdio::from(stdio));
        let mut child = crate::child::spawn_tied_to_process(command)
            .map_err(|e| format!("spawn {}: {e}", self.install.nginx.display()))?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last_error = String::from("no attempt");
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => {
                    last_error = format!("nginx exited during startup with {status}");
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    last_error = format!("wait on nginx: {e}");
                    break;
                }
            }
            // Through the front to the scanner: proves TLS, routing and the scanner at once.
            match front_request(
                &self.upstream.root_ca_pem,
                self.front_port,
                "GET",
                &format!("{MEDIA_PROXY}/public_key"),
                None,
                None,
            ) {
                Ok(response) if response.status == 200 => {
                    *lock(&self.nginx) = Some(child);
                    return Ok(());
                }
                Ok(response) => {
                    last_error = format!("public_key via nginx answered {}", response.status);
                }
                Err(e) => last_error = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stop_group(child);
        Err(last_error)
    }
}

impl Drop for ContentScanner {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "content scanner testbed ({}), logs:\n{}",
                self.dir.path().display(),
                self.logs()
            );
        }
        if let Some(child) = lock(&self.nginx).take() {
            stop_group(child);
        }
        if let Some(child) = lock(&self.scanner).take() {
            stop_group(child);
        }
    }
}

fn lock(mutex: &Mutex<Option<Child>>) -> std::sync::MutexGuard<'_, Option<Child>> {
    // A panic while holding the lock leaves a valid Option<Child>: keep going.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// SIGTERM to the child's process group (it leads one, see `child.rs`), SIGKILL to the group
/// if it has not exited after [`STOP_GRACE`], then reap it.
fn stop_group(mut child: Child) {
    // Never `kill(-1, …)` (every process we may signal): a child's pid is above 1 anyway.
    let Some(pgid) = libc::pid_t::try_from(child.id())
        .ok()
        .filter(|&pid| pid > 1)
    else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Whatever is left of the group (a scan in flight, a worker), and the leader if it
    // ignored SIGTERM. The group id stays valid while any member lives.
    signal_group(pgid, libc::SIGKILL);
    let _ = child.wait();
}

/// `kill(-pgid, signal)`; errors (the group is already gone) are ignored.
fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    debug_assert!(pgid > 1);
    #[allow(unsafe_code)]
    // SAFETY: `kill` takes two integers and touches no memory of this process; `-pgid` names
    // the process group our child leads (`child.rs` spawns it with `process_group(0)`), never
    // `-1` (checked by the caller), so no other process is signalled.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Poll `GET /_matrix/media_proxy/unstable/public_key` on the scanner's own port (plain HTTP)
/// until it answers 200 with a key.
fn wait_scanner_ready(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last_error = String::from("no attempt");
    while Instant::now() < deadline {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("wait on the scanner: {e}"))?
        {
            return Err(format!("the scanner exited during startup with {status}"));
        }
        match plain_get(port, &format!("{MEDIA_PROXY}/public_key")) {
            Ok((200, body)) if body.contains("\"public_key\"") => return Ok(()),
            Ok((status, body)) => last_error = format!("public_key answered {status}: {body}"),
            Err(e) => last_error = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "the scanner did not answer within {STARTUP_TIMEOUT:?}; last error: {last_error}"
    ))
}

/// A minimal HTTP/1.0 GET to 127.0.0.1:port (the scanner speaks plain HTTP on loopback).
fn plain_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| format!("set timeout: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {address}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read from {address}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer from {address}: {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn front_request(
    root_ca_pem: &str,
    port: u16,
    method: &str,
    path_and_query: &str,
    access_token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<FrontResponse, String> {
    crate::http::request(
        root_ca_pem,
        port,
        method,
        path_and_query,
        access_token,
        body,
    )
    .map(|response| FrontResponse {
        status: response.status,
        content_type: response.content_type,
        body: response.body,
    })
}

/// The request paths of an nginx access log (combined format: `… "METHOD PATH PROTO" …`).
pub fn request_paths(access_log: &str) -> Vec<String> {
    access_log
        .lines()
        .map(|line| {
            let request = line.split('"').nth(1).unwrap_or_default();
            request.split(' ').nth(1).unwrap_or_default().to_owned()
        })
        .collect()
}

/// How many requests of an nginx access log have a path starting with `prefix`.
pub fn count_requests(access_log: &str, prefix: &str) -> usize {
    request_paths(access_log)
        .iter()
        .filter(|p| p.starts_with(prefix))
        .count()
}

/// How many `download_encrypted` requests an nginx access log records.
pub fn proxied_downloads(access_log: &str) -> usize {
    request_paths(access_log)
        .iter()
        .filter(|p| *p == &format!("{MEDIA_PROXY}/download_encrypted"))
        .count()
}

/// No client request reached a plain (unscanned) media download: neither the legacy
/// `/_matrix/media/{v3,r0,…}/download/…` nor the authenticated
/// `/_matrix/client/v1/media/download/…`.
pub fn assert_no_plain_download(access_log: &str) {
    for path in request_paths(access_log) {
        let legacy = path.starts_with("/_matrix/media/") && path.contains("/download");
        let authenticated =
            path.starts_with("/_matrix/client/") && path.contains("/media/download");
        assert!(
            !legacy && !authenticated,
            "a client request reached a plain media download: {path}\n{access_log}"
        );
    }
}

/// Replace every `@NAME@` of `values` in `template`; panics if a placeholder (`@UPPER_CASE@`
/// outside a comment line) is left.
fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("@{name}@"), value);
    }
    for line in out.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let segments: Vec<&str> = line.split('@').collect();
        // Segments with an `@` on both sides.
        for segment in segments
            .iter()
            .skip(1)
            .take(segments.len().saturating_sub(2))
        {
            if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                panic!("placeholder @{segment}@ left in a rendered template: {line}");
            }
        }
    }
    out
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Whether the log at `path`, from byte `offset` on, reports a port already in use (aiohttp:
/// `[Errno 98] … address already in use`; nginx: `bind() … (98: Address already in use)`).
fn port_taken(path: &Path, offset: u64) -> bool {
    let text = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    String::from_utf8_lossy(&text[start..])
        .to_lowercase()
        .contains("address already in use")
}

/// The user running this process (for nginx's `user` directive: as root it keeps the workers
/// root, otherwise it is ignored).
fn current_user() -> String {
    let output = Command::new("id")
        .arg("-un")
        .output()
        .expect("run `id -un`");
    assert!(output.status.success(), "`id -un` failed: {output:?}");
    String::from_utf8(output.stdout)
        .expect("user name is UTF-8")
        .trim()
        .to_owned()
}
