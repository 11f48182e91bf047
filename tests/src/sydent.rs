//! One real Matrix identity server (Sydent 2.6.1) per test process, behind a TLS front, for the
//! shared Synapse.
//!
//! ```text
//! client ──TLS 1.3──▶ front https://localhost:PORT      (rustls thread of this process; the
//!                       │                                 server leaf of Synapse's own PKI:
//!                       │                                 same trust anchor, same pins)
//!                       └──plain TCP──▶ Sydent 127.0.0.1:HTTP      (client API, v2 only)
//!                                         │ GET /_matrix/federation/v1/openid/userinfo
//!                                         ▼ (TLS, run's root CA only)
//!                                       Synapse https://127.0.0.1:SYNAPSE  (`openid` resource)
//! testbed ──plain HTTP──▶ Sydent 127.0.0.1:INTERNAL  (internal bind API, never behind the front)
//! ```
//!
//! The Identity Service API v2 flow works end to end: `POST
//! /_matrix/client/v3/user/{userId}/openid/request_token` at Synapse, `POST
//! /_matrix/identity/v2/account/register` here (Sydent checks the OpenID token with Synapse),
//! `GET /_matrix/identity/v2/hash_details`, `POST /_matrix/identity/v2/lookup` (`sha256`: see
//! [`email_lookup_hash`]). No terms of service; the v1 API is off; only the testbed's
//! homeserver may register.
//!
//! E-mails are bound by the test ([`Sydent::bind_email`]) through Sydent's internal API, the way
//! a homeserver binds them after its own validation: Sydent stores, hashes (with its pepper) and
//! signs the association itself. Login by e-mail on Synapse is separate
//! ([`Synapse::add_email_threepid`]).
//!
//! Sydent runs from the virtualenv made by `tests/sydent/setup-sydent.sh` (called by
//! `tests/setup.sh`; `TCHAP_SECURE_SYDENT_VENV`, default `$HOME/.cache/tchap-secure/sydent-venv`)
//! through `tests/sydent/launch_sydent.py`, which routes the homeserver's name
//! (`secure.tchap.test`, which resolves nowhere) to Synapse's port on loopback; see that file.
//! The child is spawned with `PR_SET_PDEATHSIG` (`child.rs`); its configuration, signing key,
//! SQLite database and logs live in a per-process scratch directory ([`Sydent::data_dir`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use crate::pki::CertKey;
use crate::ports::free_loopback_port;
use crate::synapse::{Registered, Synapse, write};

/// How long Sydent may take to answer after being spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The running identity server and its TLS front.
pub struct Sydent {
    /// `https://localhost:{port}`: the identity server URL a client uses.
    pub base_url: String,
    /// The TLS front's port on 127.0.0.1.
    pub port: u16,
    /// The name Sydent signs its associations with (`localhost:{port}`).
    pub server_name: String,
    /// Sydent's own plain-HTTP client API port on 127.0.0.1 (only the front talks to it).
    pub http_port: u16,
    /// Sydent's internal API port (plain HTTP, 127.0.0.1): `POST
    /// /_matrix/identity/internal/bind` and `/unbind`, no authentication.
    pub internal_port: u16,
    /// Configuration, database, logs.
    pub data_dir: PathBuf,
    synapse: &'static Synapse,
    startup_time: Duration,
    child: Mutex<Child>,
}

impl std::fmt::Debug for Sydent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sydent")
            .field("base_url", &self.base_url)
            .field("http_port", &self.http_port)
            .field("internal_port", &self.internal_port)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Sydent {
    /// The process's identity server, for [`Synapse::shared`] (started first if needed), on
    /// first call (a couple of seconds; later calls return at once). If it failed to start,
    /// every call panics with the same diagnosis.
    pub fn shared() -> &'static Sydent {
        static SHARED: OnceLock<Result<Sydent, String>> = OnceLock::new();
        match SHARED.get_or_init(|| start(Synapse::shared())) {
            Ok(sydent) => sydent,
            Err(diagnosis) => panic!("the shared Sydent did not start: {diagnosis}"),
        }
    }

    /// The homeserver whose users this identity server accepts.
    pub fn synapse(&self) -> &'static Synapse {
        self.synapse
    }

    /// Time from spawning Sydent to its first answer through the TLS front.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// Bind the e-mail `address` to `user_id` (any Matrix user id), as a homeserver does after
    /// validating it: `POST /_matrix/identity/internal/bind` on Sydent's internal API. Sydent
    /// casefolds the address, stores the association with its lookup hash (see
    /// [`email_lookup_hash`]) and signs it; the hashed lookup then answers `user_id`.
    /// To move an address to another user, unbind it first ([`Sydent::unbind_email`]): Sydent
    /// 2.6.1 keeps both bindings otherwise, and its lookup answers the greatest user id (it
    /// orders by user id before time), not the newest.
    ///
    /// Sydent then notifies the user's homeserver (`/_matrix/federation/v1/3pid/onbind`), which
    /// Synapse does not serve here: Sydent logs a warning and retries with backoff, harmlessly.
    pub fn bind_email(&self, address: &str, user_id: &str) {
        let answer = self.internal_call(
            "bind",
            &json!({"medium": "email", "address": address, "mxid": user_id}),
        );
        assert_eq!(
            answer["mxid"], user_id,
            "Sydent bound {address} to something else: {answer}"
        );
    }

    /// Remove the binding of `address` to `user_id` (`POST /_matrix/identity/internal/unbind`):
    /// the hashed lookup of `address` then answers nothing.
    pub fn unbind_email(&self, address: &str, user_id: &str) {
        self.internal_call(
            "unbind",
            &json!({"medium": "email", "address": address, "mxid": user_id}),
        );
    }

    /// The pepper of Sydent's hashed lookups, read from its database (what `GET
    /// /_matrix/identity/v2/hash_details` answers as `lookup_pepper`). Fixed for the life of
    /// the process.
    pub fn lookup_pepper(&self) -> String {
        let db = rusqlite::Connection::open_with_flags(
            self.database_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open Sydent's database");
        db.query_row("SELECT lookup_pepper FROM hashing_metadata", [], |row| {
            row.get::<_, String>(0)
        })
        .expect("Sydent's lookup pepper")
    }

    /// Register `user` with the identity server the way a client does: an OpenID token from
    /// Synapse (`POST /_matrix/client/v3/user/{userId}/openid/request_token`), exchanged at
    /// `POST /_matrix/identity/v2/account/register`. Returns the identity server access token.
    pub fn register(&self, user: &Registered) -> String {
        let openid = self.synapse.user_call(
            &user.access_token,
            "POST",
            &format!(
                "/_matrix/client/v3/user/{}/openid/request_token",
                encode_segment(&user.user_id)
            ),
            &json!({}),
        );
        let (status, answer) = self.request(
            "POST",
            "/_matrix/identity/v2/account/register",
            None,
            Some(&json!({
                "access_token": openid["access_token"],
                "token_type": openid["token_type"],
                "matrix_server_name": openid["matrix_server_name"],
                "expires_in": openid["expires_in"],
            })),
        );
        assert_eq!(status, 200, "register at Sydent: {answer}");
        answer["token"]
            .as_str()
            .unwrap_or_else(|| panic!("`token` in {answer}"))
            .to_owned()
    }

    /// One HTTPS request through the TLS front (testbed helper, not the product's transport):
    /// trusts only the run's root CA, follows no redirect. Returns the status and the body
    /// parsed as JSON (`Null` when empty, a JSON string when not JSON). Panics if no response
    /// arrives.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        access_token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body.map(|body| serde_json::to_vec(body).expect("serialise a JSON body"));
        let response = crate::http::request(
            &self.synapse.pki.root_ca_pem,
            self.port,
            method,
            path,
            access_token,
            body.map(|bytes| ("application/json", bytes)),
        )
        .unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e}\nSydent log tail:\n{}",
                self.log_tail(40)
            )
        });
        (response.status, parse_body(&response.body))
    }

    /// The SQLite database Sydent writes.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("sydent.db")
    }

    /// The last `lines` lines of Sydent's log (INFO and above) and of its stdout/stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.data_dir, lines)
    }

    /// Whether the Sydent process is still running.
    pub fn is_running(&self) -> bool {
        matches!(
            self.child.lock().expect("child lock poisoned").try_wait(),
            Ok(None)
        )
    }

    /// `POST /_matrix/identity/internal/{what}` on the internal API; panics unless 200.
    fn internal_call(&self, what: &str, body: &Value) -> Value {
        let url = format!(
            "http://127.0.0.1:{}/_matrix/identity/internal/{what}",
            self.internal_port
        );
        let (status, answer) =
            plain_request(&self.synapse.pki.root_ca_pem, "POST", &url, Some(body))
                .unwrap_or_else(|e| panic!("{e}\nSydent log tail:\n{}", self.log_tail(40)));
        assert_eq!(status, 200, "POST {url} {body}: {answer}");
        answer
    }
}

/// The `sha256` lookup hash of the Identity Service API v2 for an e-mail address:
/// unpadded URL-safe base64 of SHA-256 over `"{address} email {pepper}"`. Sydent stores
/// bindings casefolded, so `address` must be lowercase to match. An implementation of the spec
/// independent of the product's, for tests.
pub fn email_lookup_hash(address: &str, pepper: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{address} email {pepper}").as_bytes(),
    );
    URL_SAFE_NO_PAD.encode(digest)
}

/// The virtualenv holding Sydent.
fn venv_path() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TCHAP_SECURE_SYDENT_VENV") {
        return Ok(PathBuf::from(path));
    }
    let cache = match std::env::var_os("TCHAP_SECURE_CACHE") {
        Some(cache) => PathBuf::from(cache),
        None => Path::new(
            &std::env::var_os("HOME").ok_or("HOME is not set (or set TCHAP_SECURE_SYDENT_VENV)")?,
        )
        .join(".cache/tchap-secure"),
    };
    Ok(cache.join("sydent-venv"))
}

fn start(synapse: &'static Synapse) -> Result<Sydent, String> {
    let python = venv_path()?.join("bin/python");
    let sydent_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sydent");
    let launcher = sydent_dir.join("launch_sydent.py");
    if !python.exists() {
        return Err(format!(
            "no Sydent virtualenv at {} (run tests/setup.sh, which runs tests/sydent/setup-sydent.sh, or set TCHAP_SECURE_SYDENT_VENV)",
            python.display()
        ));
    }
    let template = std::fs::read_to_string(sydent_dir.join("sydent.conf.tmpl"))
        .map_err(|e| format!("read sydent.conf.tmpl: {e}"))?;

    let data_dir = crate::scratch::process_dir("sydent");
    for sub in ["templates", "no-system-certs"] {
        std::fs::create_dir_all(data_dir.join(sub))
            .map_err(|e| format!("create {sub} in {}: {e}", data_dir.display()))?;
    }
    // The only CA Sydent's outbound TLS trusts (`SSL_CERT_FILE`, and `SSL_CERT_DIR` empty):
    // its OpenID check goes to Synapse, whose chain is of this PKI.
    write(&data_dir.join("root.pem"), &synapse.pki.root_ca_pem);

    // The front first: its port is known at once (no race), and it is Sydent's name.
    let upstream = Arc::new(AtomicU16::new(0));
    let port = start_front(&synapse.pki.server, Arc::clone(&upstream))?;
    let server_name = format!("localhost:{port}");
    let signing_seed = STANDARD_NO_PAD.encode(random_bytes::<32>());

    let mut last_failure = String::new();
    for _attempt in 0..3 {
        let http_port = free_loopback_port();
        let internal_port = free_loopback_port();
        let config_path = data_dir.join("sydent.conf");
        write(
            &config_path,
            &render(
                &template,
                &[
                    ("SERVER_NAME", server_name.clone()),
                    ("DIR", data_dir.display().to_string()),
                    ("HOMESERVER", synapse.server_name.clone()),
                    ("CLIENT_PORT", http_port.to_string()),
                    ("INTERNAL_PORT", internal_port.to_string()),
                    ("SIGNING_SEED", signing_seed.clone()),
                ],
            ),
        );
        upstream.store(http_port, Ordering::SeqCst);
        let stdio = std::fs::File::create(data_dir.join("stdio.log"))
            .map_err(|e| format!("create stdio.log: {e}"))?;
        let mut command = Command::new(&python);
        command
            .arg(&launcher)
            .current_dir(&data_dir)
            .env("SYDENT_CONF", &config_path)
            .env(
                "TCHAP_SECURE_SYDENT_FEDERATION_HOSTS",
                format!("{}=127.0.0.1:{}", synapse.server_name, synapse.port),
            )
            .env("SSL_CERT_FILE", data_dir.join("root.pem"))
            .env("SSL_CERT_DIR", data_dir.join("no-system-certs"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                stdio
                    .try_clone()
                    .map_err(|e| format!("dup stdio.log: {e}"))?,
            ))
            .stderr(Stdio::from(stdio));
        let spawned_at = Instant::now();
        let mut child = crate::child::spawn_tied_to_process(command)
            .map_err(|e| format!("spawn {}: {e}", python.display()))?;
        match wait_ready(&synapse.pki.root_ca_pem, port, &mut child) {
            Ok(()) => {
                return Ok(Sydent {
                    base_url: format!("https://localhost:{port}"),
                    port,
                    server_name,
                    http_port,
                    internal_port,
                    data_dir,
                    synapse,
                    startup_time: spawned_at.elapsed(),
                    child: Mutex::new(child),
                });
            }
            Err(reason) => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = log_tail(&data_dir, 60);
                last_failure = format!("{reason}\n{tail}");
                // Another process took a port between our probe and Sydent's bind: retry on
                // new ports. Anything else is a real failure.
                if !tail.contains("Address already in use") {
                    break;
                }
            }
        }
    }
    Err(last_failure)
}

/// Poll `GET /_matrix/identity/v2` through the front until Sydent answers 200.
fn wait_ready(root_ca_pem: &str, port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last_error = String::from("no attempt");
    while Instant::now() < deadline {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("wait on Sydent: {e}"))?
        {
            return Err(format!("Sydent exited during startup with {status}"));
        }
        match crate::http::request(root_ca_pem, port, "GET", "/_matrix/identity/v2", None, None) {
            Ok(response) if response.status == 200 => return Ok(()),
            Ok(response) => {
                last_error = format!("/_matrix/identity/v2 answered {}", response.status)
            }
            Err(e) => last_error = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "Sydent not ready after {STARTUP_TIMEOUT:?}; last error: {last_error}"
    ))
}

/// Start the TLS front on a free loopback port: rustls (ring, TLS 1.3, ALPN `http/1.1`, no
/// tickets) presenting `cert.chain_pem`, each connection forwarded byte for byte to
/// 127.0.0.1:`upstream` (read per connection: Sydent's client port of the current start
/// attempt, chosen after the front). Runs on its own thread and runtime for the life of the
/// process. Returns the port, listening.
fn start_front(cert: &CertKey, upstream: Arc<AtomicU16>) -> Result<u16, String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("parse the front's chain: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
        .map_err(|e| format!("parse the front's key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| format!("TLS 1.3 with ring: {e}"))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("the front's certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.send_tls13_tickets = 0;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("bind the front: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("non-blocking front listener: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("front address: {e}"))?
        .port();
    std::thread::Builder::new()
        .name(format!("sydent-front-{port}"))
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build the Sydent front's runtime")
                .block_on(front_loop(listener, acceptor, upstream));
        })
        .map_err(|e| format!("spawn the front thread: {e}"))?;
    Ok(port)
}

async fn front_loop(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    upstream: Arc<AtomicU16>,
) {
    let listener =
        tokio::net::TcpListener::from_std(listener).expect("register the front's listener");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // E.g. EMFILE: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let upstream = upstream.load(Ordering::SeqCst);
        tokio::spawn(async move {
            // A failed handshake (a pinning test's client walking away) is not our business.
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(mut sydent) =
                tokio::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, upstream)).await
            else {
                // Sydent not (yet) listening: close, the client sees a reset connection.
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut sydent).await;
        });
    }
}

/// One plain-HTTP request to loopback (the internal API), JSON in and out. reqwest wants a TLS
/// configuration even for `http://` (no default crypto provider here): the testbed's, unused.
fn plain_request(
    roots_pem: &str,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let tls = crate::http::client_config(roots_pem);
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid HTTP method");
    let url = url.to_owned();
    let body = body.map(|body| serde_json::to_vec(body).expect("serialise a JSON body"));
    crate::http::block_on(async move {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("build reqwest client: {e}"))?;
        let mut request = client.request(method, &url);
        if let Some(bytes) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e:?}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{url}: read body: {e:?}"))?;
        Ok((status, parse_body(&bytes)))
    })
}

fn parse_body(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn log_tail(data_dir: &Path, lines: usize) -> String {
    let mut out = String::new();
    for name in ["sydent.log", "stdio.log"] {
        let text = std::fs::read_to_string(data_dir.join(name)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        out.push_str(&format!("--- {name} (last {} lines) ---\n", tail.len()));
        for line in tail {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
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
        for segment in segments
            .iter()
            .skip(1)
            .take(segments.len().saturating_sub(2))
        {
            assert!(
                segment.is_empty() || !segment.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "placeholder @{segment}@ left in sydent.conf: {line}"
            );
        }
    }
    out
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).expect("system random");
    bytes
}

/// Percent-encode one URL path segment, keeping unreserved characters and `@` and `:`.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' | b':' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
