//! One real Synapse homeserver per test process, shared by its tests.
//!
//! Synapse runs from the virtualenv named by `TCHAP_SECURE_SYNAPSE_VENV` (default
//! `$HOME/.cache/tchap-secure/synapse-venv`) and serves TLS itself on a free loopback port
//! with a leaf from the run's [`Pki`]. SQLite database, registration only through the
//! shared-secret admin API, federation off (but for the OpenID userinfo endpoint, which the
//! identity server of `sydent.rs` calls), the user directory searching all users, rate limits
//! raised far above anything a test does (tests that need a limit set one per user with
//! [`Synapse::override_ratelimit`]), and account validity on so a test can expire an account.
//! Tests share the server, so each uses its own users ([`Synapse::unique_user`]).
//!
//! The child is spawned with `PR_SET_PDEATHSIG` (see `child.rs`) so it dies with the test
//! process, in its own process group. Its files live in a per-process scratch directory
//! ([`Synapse::data_dir`]) that the next test run removes once this process is gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};

use crate::http;
use crate::pki::Pki;
use crate::ports::free_loopback_port;
use crate::smtp_sink::SmtpSink;

/// The homeserver's server name (user ids are `@localpart:secure.tchap.test`).
pub const SERVER_NAME: &str = "secure.tchap.test";

/// How long to wait for `/_matrix/client/versions` to answer after spawning Synapse.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A user created on the homeserver, logged in on one device.
#[derive(Clone, Debug)]
pub struct Registered {
    /// Full user id, `@localpart:secure.tchap.test`.
    pub user_id: String,
    /// Access token of the device created by the registration or login.
    pub access_token: String,
    /// That device's id.
    pub device_id: String,
}

/// The running homeserver.
pub struct Synapse {
    /// `https://localhost:{port}`.
    pub base_url: String,
    /// TLS port on 127.0.0.1.
    pub port: u16,
    /// `secure.tchap.test`.
    pub server_name: String,
    /// The PKI whose server leaf (chain: leaf + intermediate) Synapse presents.
    pub pki: Pki,
    /// The `registration_shared_secret` (random per run).
    pub registration_shared_secret: String,
    /// Configuration, keys, database, media store and logs.
    pub data_dir: PathBuf,
    /// Where Synapse's mailer delivers (the account-renewal e-mails of issue 19).
    pub mail: SmtpSink,
    startup_time: Duration,
    child: Mutex<Child>,
    admin: OnceLock<Registered>,
    counter: AtomicU64,
}

impl std::fmt::Debug for Synapse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Synapse")
            .field("base_url", &self.base_url)
            .field("server_name", &self.server_name)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// What differs between the testbed's Synapse instances. `Default` is the shared server's
/// configuration ([`Synapse::shared`]).
#[derive(Clone, Debug)]
pub struct SynapseOptions {
    /// Synapse's `enable_authenticated_media` (its default, `true`: media uploaded while it is
    /// on are served only by the authenticated `/_matrix/client/v1/media/download`). `false`
    /// for the content scanner's testbed: matrix-content-scanner 1.0.x downloads through the
    /// legacy, unauthenticated `/_matrix/media/v3/download`.
    pub enable_authenticated_media: bool,
}

impl Default for SynapseOptions {
    fn default() -> Self {
        Self {
            enable_authenticated_media: true,
        }
    }
}

impl Synapse {
    /// The process's Synapse, started on first call (a few seconds; later calls return at
    /// once). If it failed to start, every call panics with the same diagnosis.
    pub fn shared() -> &'static Synapse {
        static SHARED: OnceLock<Result<Synapse, String>> = OnceLock::new();
        match SHARED.get_or_init(|| start(&SynapseOptions::default())) {
            Ok(synapse) => synapse,
            Err(diagnosis) => panic!("the shared Synapse did not start: {diagnosis}"),
        }
    }

    /// A second process-wide Synapse, separate from [`Synapse::shared`], with
    /// `enable_authenticated_media: false` (see [`SynapseOptions`]): the homeserver behind the
    /// content scanner's testbed (`content_scanner.rs`). Own PKI, own data directory, same
    /// lifetime rules as the shared one; started on first call.
    pub fn shared_legacy_media() -> &'static Synapse {
        static LEGACY_MEDIA: OnceLock<Result<Synapse, String>> = OnceLock::new();
        let options = SynapseOptions {
            enable_authenticated_media: false,
        };
        match LEGACY_MEDIA.get_or_init(|| start(&options)) {
            Ok(synapse) => synapse,
            Err(diagnosis) => panic!("the legacy-media Synapse did not start: {diagnosis}"),
        }
    }

    /// Time from spawning the Synapse process to its first answer on `/versions`.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// Register `localpart` through the shared-secret admin API
    /// (`/_synapse/admin/v1/register`: GET a nonce, POST with an HMAC-SHA1 over
    /// `nonce\0user\0password\0admin|notadmin` keyed by the shared secret).
    pub fn register(&self, localpart: &str, password: &str, admin: bool) -> Registered {
        let (status, body) = self.request("GET", "/_synapse/admin/v1/register", None, None);
        assert_eq!(status, 200, "GET register nonce: {body}");
        let nonce = body["nonce"]
            .as_str()
            .expect("nonce in the answer")
            .to_owned();
        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            self.registration_shared_secret.as_bytes(),
        );
        let mut context = ring::hmac::Context::with_key(&key);
        for (i, part) in [
            nonce.as_bytes(),
            localpart.as_bytes(),
            password.as_bytes(),
            if admin { b"admin" } else { b"notadmin" },
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                context.update(b"\0");
            }
            context.update(part);
        }
        let mac = hex(context.sign().as_ref());
        let (status, body) = self.request(
            "POST",
            "/_synapse/admin/v1/register",
            None,
            Some(&json!({
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac,
            })),
        );
        assert_eq!(status, 200, "register {localpart}: {body}");
        registered(&body)
    }

    /// Log in with a password on a new device (`POST /_matrix/client/v3/login`).
    pub fn login(&self, localpart: &str, password: &str) -> Registered {
        let (status, body) = self.request(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(&json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
                "initial_device_display_name": "testbed",
            })),
        );
        assert_eq!(status, 200, "login {localpart}: {body}");
        registered(&body)
    }

    /// A localpart no other test of this process uses: `{prefix}-{pid}-{counter}`, lowercase,
    /// characters outside `[a-z0-9._=/-]` replaced by `_`.
    pub fn unique_user(&self, prefix: &str) -> String {
        let prefix: String = prefix
            .to_lowercase()
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' => c,
                _ => '_',
            })
            .collect();
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        format!("{prefix}-{}-{n}", std::process::id())
    }

    /// The access token of the testbed's admin user (registered on first use).
    pub fn admin_token(&self) -> &str {
        &self
            .admin
            .get_or_init(|| {
                let localpart = self.unique_user("testbed-admin");
                self.register(&localpart, &random_hex(16), true)
            })
            .access_token
    }

    /// Make `user_id`'s account expired (validity ended a second ago, no renewal e-mails):
    /// its requests then fail with `403 ORG_MATRIX_EXPIRED_ACCOUNT`.
    pub fn expire_account(&self, user_id: &str) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis();
        let expiration_ts = u64::try_from(now_ms).expect("milliseconds fit in u64") - 1000;
        self.admin_call(
            "POST",
            "/_synapse/admin/v1/account_validity/validity".to_owned(),
            Some(json!({
                "user_id": user_id,
                "expiration_ts": expiration_ts,
                "enable_renewal_emails": false,
            })),
        );
    }

    /// Set `user_id`'s own message rate limit
    /// (`POST /_synapse/admin/v1/users/<id>/override_ratelimit`). Synapse accepts only
    /// non-negative integers, so `messages_per_second` must be a whole number (pass `1`,
    /// `1.0`, …); `0` for both values means "no limit" to Synapse.
    pub fn override_ratelimit(
        &self,
        user_id: &str,
        messages_per_second: impl Into<f64>,
        burst_count: u32,
    ) {
        let messages_per_second = messages_per_second.into();
        assert!(
            messages_per_second >= 0.0
                && messages_per_second.fract() == 0.0
                && messages_per_second <= f64::from(u32::MAX),
            "Synapse's override_ratelimit takes a non-negative integer, got {messages_per_second}"
        );
        // Checked above: a whole number in u32 range, so the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let messages_per_second = messages_per_second as u32;
        self.admin_call(
            "POST",
            format!(
                "/_synapse/admin/v1/users/{}/override_ratelimit",
                encode_segment(user_id)
            ),
            Some(json!({
                "messages_per_second": messages_per_second,
                "burst_count": burst_count,
            })),
        );
    }

    /// Deactivates `user_id` (`POST /_synapse/admin/v1/deactivate/<id>`): every access token
    /// of the account is revoked, its devices deleted.
    pub fn deactivate(&self, user_id: &str) {
        self.admin_call(
            "POST",
            format!("/_synapse/admin/v1/deactivate/{}", encode_segment(user_id)),
            Some(json!({ "erase": false })),
        );
    }

    /// The device ids Synapse holds for `user_id` (`GET /_synapse/admin/v2/users/<id>/devices`).
    pub fn devices_of(&self, user_id: &str) -> Vec<String> {
        let answer = self.admin_call(
            "GET",
            format!(
                "/_synapse/admin/v2/users/{}/devices",
                encode_segment(user_id)
            ),
            None,
        );
        answer["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Sets `user_id`'s display name as that user (`PUT /profile/<id>/displayname`): Synapse
    /// sends the new name into each of their rooms as a member event.
    pub fn set_display_name(&self, token: &str, user_id: &str, name: &str) {
        self.user_call(
            token,
            "PUT",
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                encode_segment(user_id)
            ),
            &json!({ "displayname": name }),
        );
    }

    /// Delete one device of `user_id` (and its access tokens)
    /// (`DELETE /_synapse/admin/v2/users/<id>/devices/<device_id>`).
    pub fn delete_device(&self, user_id: &str, device_id: &str) {
        self.admin_call(
            "DELETE",
            format!(
                "/_synapse/admin/v2/users/{}/devices/{}",
                encode_segment(user_id),
                encode_segment(device_id)
            ),
            None,
        );
    }

    /// Add the e-mail `address` to `user_id`'s third-party identifiers, as an admin does
    /// (`PUT /_synapse/admin/v2/users/<id>` with the user's current `threepids` plus this
    /// one; Synapse lowercases e-mail addresses). The user can then log in with
    /// `{"type": "m.id.thirdparty", "medium": "email", "address": …}`, which Synapse resolves
    /// through this table. Binding the address at the identity server is separate
    /// (`Sydent::bind_email`).
    pub fn add_email_threepid(&self, user_id: &str, address: &str) {
        let path = format!("/_synapse/admin/v2/users/{}", encode_segment(user_id));
        let user = self.admin_call("GET", path.clone(), None);
        let mut threepids: Vec<Value> = user["threepids"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|threepid| json!({"medium": threepid["medium"], "address": threepid["address"]}))
            .collect();
        threepids.push(json!({"medium": "email", "address": address}));
        self.admin_call("PUT", path, Some(json!({ "threepids": threepids })));
    }

    /// The pushers Synapse holds for `user_id`, as its admin API lists them
    /// (`GET /_synapse/admin/v1/users/<id>/pushers`): what the homeserver would notify.
    pub fn pushers_of(&self, user_id: &str) -> Vec<Value> {
        self.admin_call(
            "GET",
            format!(
                "/_synapse/admin/v1/users/{}/pushers",
                encode_segment(user_id)
            ),
            None,
        )["pushers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The product's client configuration (the MDM JSON) for this server: homeserver URL,
    /// server name, our root CA as the only trust anchor, the server leaf's pin and the backup
    /// pin.
    pub fn client_config(&self) -> Value {
        json!({
            "homeserver_url": self.base_url,
            "server_name": self.server_name,
            "trust_anchors_pem": [self.pki.root_ca_pem],
            "spki_pins_sha256": [self.pki.server_pin(), self.pki.backup_pin],
        })
    }

    /// Every access token Synapse holds for `user_id`, read from its database: what a test
    /// looks for where no token may be (memory after close, logs).
    pub fn access_tokens(&self, user_id: &str) -> Vec<String> {
        let db = rusqlite::Connection::open_with_flags(
            self.database_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open Synapse's database");
        let mut statement = db
            .prepare("SELECT token FROM access_tokens WHERE user_id = ?1")
            .expect("Synapse's access_tokens table");
        statement
            .query_map([user_id], |row| row.get::<_, String>(0))
            .expect("query access tokens")
            .map(|token| token.expect("a token"))
            .collect()
    }

    /// The SQLite database Synapse writes (WAL mode; readable with `sqlite3` while it runs).
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("homeserver.db")
    }

    /// The last `lines` lines of Synapse's log (WARNING and above) and of its stdout/stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.data_dir, lines)
    }

    /// Whether the Synapse process is still running.
    pub fn is_running(&self) -> bool {
        matches!(
            self.child.lock().expect("child lock poisoned").try_wait(),
            Ok(None)
        )
    }

    /// One HTTPS request to Synapse (testbed helper, not the product's transport): trusts
    /// only the run's root CA, follows no redirect. Returns the status and the body parsed as
    /// JSON (`Null` when empty, a JSON string when not JSON). Panics if no response arrives.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        access_token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body.map(|body| serde_json::to_vec(body).expect("serialise a JSON body"));
        let response = http::request(
            &self.pki.root_ca_pem,
            self.port,
            method,
            path,
            access_token,
            body.map(|bytes| ("application/json", bytes)),
        )
        .unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e}\nSynapse log tail:\n{}",
                self.log_tail(40)
            )
        });
        (response.status, parse_body(&response.body))
    }

    /// One client-server API call as the user of `token` (e.g. a kick by a room's
    /// moderator); panics unless it succeeds.
    pub fn user_call(&self, token: &str, method: &str, path: &str, body: &Value) -> Value {
        let (status, answer) = self.request(method, path, Some(token), Some(body));
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer
    }

    fn admin_call(&self, method: &str, path: String, body: Option<Value>) -> Value {
        let token = self.admin_token().to_owned();
        let (status, answer) = self.request(method, &path, Some(&token), body.as_ref());
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer
    }
}

fn registered(body: &Value) -> Registered {
    let field = |name: &str| {
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("`{name}` in {body}"))
            .to_owned()
    };
    Registered {
        user_id: field("user_id"),
        access_token: field("access_token"),
        device_id: field("device_id"),
    }
}

fn parse_body(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// The virtualenv holding Synapse.
fn venv_path() -> PathBuf {
    if let Some(path) = std::env::var_os("TCHAP_SECURE_SYNAPSE_VENV") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").expect("HOME is set (or set TCHAP_SECURE_SYNAPSE_VENV)");
    Path::new(&home).join(".cache/tchap-secure/synapse-venv")
}

fn start(options: &SynapseOptions) -> Result<Synapse, String> {
    let venv = venv_path();
    let python = venv.join("bin/python");
    if !python.exists() {
        return Err(format!(
            "no Synapse virtualenv at {} (run tests/setup.sh, or set TCHAP_SECURE_SYNAPSE_VENV)",
            venv.display()
        ));
    }
    let data_dir = crate::scratch::process_dir(if options.enable_authenticated_media {
        "synapse"
    } else {
        "synapse-legacy-media"
    });
    let pki = Pki::generate();
    write(&data_dir.join("tls.crt"), &pki.server.chain_pem);
    // The run's root, the only CA Synapse's outbound HTTPS client trusts (`SSL_CERT_FILE`): its
    // pushers deliver to the testbed's push gateway, which presents a certificate of this PKI.
    write(&data_dir.join("root.pem"), &pki.root_ca_pem);
    crate::harness::write_private(&data_dir.join("tls.key"), &pki.server.key_pem);
    write(
        &data_dir.join("log.config"),
        &serde_json::to_string_pretty(&log_config(&data_dir)).expect("log config JSON"),
    );
    let secret = random_hex(32);
    let mail = SmtpSink::start();

    let mut last_failure = String::new();
    for attempt in 0..3 {
        let port = free_loopback_port();
        let config_path = data_dir.join("homeserver.yaml");
        // JSON is YAML: no hand-rolled YAML quoting.
        write(
            &config_path,
            &serde_json::to_string_pretty(&homeserver_config(
                &data_dir, port, &secret, mail.port, options,
            ))
            .expect("homeserver config JSON"),
        );
        if attempt == 0 {
            generate_keys(&python, &config_path, &data_dir)?;
        }
        let stdio = std::fs::File::create(data_dir.join("stdio.log"))
            .map_err(|e| format!("create stdio.log: {e}"))?;
        let mut command = Command::new(&python);
        command
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(&config_path)
            .current_dir(&data_dir)
            .env("SSL_CERT_FILE", data_dir.join("root.pem"))
            .env_remove("SSL_CERT_DIR")
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
        match wait_ready(&pki, port, &mut child) {
            Ok(()) => {
                return Ok(Synapse {
                    base_url: format!("https://localhost:{port}"),
                    port,
                    server_name: SERVER_NAME.to_owned(),
                    pki,
                    registration_shared_secret: secret,
                    mail,
                    startup_time: spawned_at.elapsed(),
                    child: Mutex::new(child),
                    admin: OnceLock::new(),
                    counter: AtomicU64::new(0),
                    data_dir,
                });
            }
            Err(reason) => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = log_tail(&data_dir, 60);
                last_failure = format!("{reason}\n{tail}");
                // Another process took the port between our probe and Synapse's bind: retry
                // on a new port. Anything else is a real failure.
                if !tail.contains("Address already in use") {
                    break;
                }
            }
        }
    }
    Err(last_failure)
}

fn generate_keys(python: &Path, config_path: &Path, data_dir: &Path) -> Result<(), String> {
    let output = Command::new(python)
        .args(["-m", "synapse.app.homeserver", "--config-path"])
        .arg(config_path)
        .arg("--generate-keys")
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run synapse --generate-keys: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "synapse --generate-keys failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

fn wait_ready(pki: &Pki, port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last_error = String::from("no attempt");
    while Instant::now() < deadline {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("wait on Synapse: {e}"))?
        {
            return Err(format!("Synapse exited during startup with {status}"));
        }
        match http::request(
            &pki.root_ca_pem,
            port,
            "GET",
            "/_matrix/client/versions",
            None,
            None,
        ) {
            Ok(response) if response.status == 200 => return Ok(()),
            Ok(response) => last_error = format!("/versions answered {}", response.status),
            Err(e) => last_error = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "Synapse not ready after {STARTUP_TIMEOUT:?}; last error: {last_error}"
    ))
}

/// A rate limit no test reaches by accident.
fn unlimited() -> Value {
    json!({"per_second": 10_000, "burst_count": 100_000})
}

fn homeserver_config(
    data_dir: &Path,
    port: u16,
    registration_shared_secret: &str,
    smtp_port: u16,
    options: &SynapseOptions,
) -> Value {
    let path = |name: &str| data_dir.join(name).display().to_string();
    let mut config = json!({
        "server_name": SERVER_NAME,
        "public_baseurl": format!("https://localhost:{port}/"),
        "pid_file": path("homeserver.pid"),
        "listeners": [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": true,
            "x_forwarded": false,
            // `openid`: `/_matrix/federation/v1/openid/userinfo` alone of the federation API,
            // on this TLS listener: how the identity server (sydent.rs) checks the OpenID
            // tokens clients get from `/_matrix/client/v3/user/{userId}/openid/request_token`.
            "resources": [{"names": ["client", "openid"], "compress": false}],
        }],
        "tls_certificate_path": path("tls.crt"),
        "tls_private_key_path": path("tls.key"),
        "database": {"name": "sqlite3", "args": {"database": path("homeserver.db")}},
        "log_config": path("log.config"),
        "media_store_path": path("media_store"),
        "enable_authenticated_media": options.enable_authenticated_media,
        "signing_key_path": path("signing.key"),
        "enable_registration": false,
        "registration_shared_secret": registration_shared_secret,
        "macaroon_secret_key": random_hex(32),
        "form_secret": random_hex(32),
        "report_stats": false,
        "enable_metrics": false,
        "url_preview_enabled": false,
        "presence": {"enabled": false},
        // Federation off: no federation listener, no key servers, no remote domain allowed.
        "trusted_key_servers": [],
        "suppress_key_server_warning": true,
        "federation_domain_whitelist": [],
        // Renewal by e-mail on (`renew_at`): an expired account asks for the renewal link
        // (`account_validity/send_mail`), which Synapse mails to the account's addresses —
        // here, to the run's mail sink (plain SMTP on loopback, no TLS, no authentication).
        "account_validity": {"enabled": true, "period": "3650d", "renew_at": "1d"},
        // Every rate limiter of synapse/config/ratelimiting.py (1.163), raised.
        "rc_message": unlimited(),
        "rc_registration": unlimited(),
        "rc_registration_token_validity": unlimited(),
        "rc_login": {
            "address": unlimited(),
            "account": unlimited(),
            "failed_attempts": unlimited(),
        },
        "rc_admin_redaction": unlimited(),
        "rc_joins": {"local": unlimited(), "remote": unlimited()},
        "rc_joins_per_room": unlimited(),
        "rc_key_requests": unlimited(),
        "rc_3pid_validation": unlimited(),
        "rc_invites": {
            "per_room": unlimited(),
            "per_user": unlimited(),
            "per_issuer": unlimited(),
        },
        "rc_third_party_invite": unlimited(),
        "rc_media_create": unlimited(),
        "rc_presence": {"per_user": unlimited()},
        "rc_delayed_event_mgmt": unlimited(),
        "rc_room_creation": unlimited(),
        "rc_reports": unlimited(),
        "rc_user_directory": unlimited(),
        "rc_profile": unlimited(),
    });
    config["email"] = json!({
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "enable_tls": false,
        "require_transport_security": false,
        "notif_from": "Tchap <noreply@secure.tchap.test>",
        "enable_notifs": false,
    });
    // Outbound requests (pushers) may reach loopback, where the testbed's push gateway
    // listens; Synapse denies private ranges by default.
    config["ip_range_whitelist"] = json!(["127.0.0.1/32"]);
    // Directory search finds every local user, not only those sharing a room with the searcher:
    // users find each other before any room exists.
    config["user_directory"] = json!({"enabled": true, "search_all_users": true});
    config
}

fn log_config(data_dir: &Path) -> Value {
    json!({
        "version": 1,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s"
            }
        },
        "filters": {
            "context": {"()": "synapse.logging.context.LoggingContextFilter", "request": ""}
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": data_dir.join("homeserver.log").display().to_string(),
                "filters": ["context"],
                "encoding": "utf8",
            }
        },
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": false,
    })
}

fn log_tail(data_dir: &Path, lines: usize) -> String {
    let mut out = String::new();
    for name in ["homeserver.log", "stdio.log"] {
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

/// Writes a testbed file, panicking with its path on failure.
pub(crate) fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `bytes` random bytes from the system generator, as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .expect("system random");
    hex(&buffer)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encode one URL path segment, keeping RFC 3986 `pchar`s unreserved characters and
/// `@` and `:` (so `@alice:secure.tchap.test` stays readable in logs).
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
