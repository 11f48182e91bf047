//! In-process clients for tests and benchmarks: one SoftHSM2 token each from a pool made
//! before any PKCS#11 session exists in the process, a logged-in client on it, and small
//! helpers shared by the test binaries.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes};
use tempfile::TempDir;

use crate::softhsm::SoftHsmToken;
use crate::synapse::Synapse;

/// The password of every test user.
pub const PASSWORD: &str = "correct horse battery staple 42";

/// How many tokens one test process may use (the e2e binary uses about 100).
const TOKEN_POOL: usize = 128;

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

/// An in-process client on its own token of the process-wide SoftHSM2 configuration.
pub struct InProcess {
    /// The token holding this client's KEK, logged in.
    pub vault: Pkcs11Vault,
    /// Holds the data directory.
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

    /// Opens this data directory with another configuration (e.g. the content scanner's
    /// front as the homeserver URL).
    pub fn open_with(&self, config: Config) -> Result<Client, tchap_secure_core::Error> {
        Client::open(config, &self.data_dir(), &self.vault)
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

/// The access token of a logged-in client (tests act as the user through raw HTTP with it).
pub fn access_token(client: &Client) -> String {
    client
        .store()
        .load_session()
        .expect("read the session")
        .expect("logged in")
        .access_token
        .expose()
        .to_owned()
}

/// An event as the server stores it (encrypted), fetched with `token`.
pub fn raw_event(token: &str, room: &str, event_id: &str) -> serde_json::Value {
    let (status, event) = Synapse::shared().request(
        "GET",
        &format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"),
        Some(token),
        None,
    );
    assert_eq!(status, 200, "{event}");
    event
}

/// Writes a new file readable by its owner only (mode 0600): secrets handed to child
/// processes (passwords, PINs) go through such files, never through command lines.
pub fn write_private(path: &std::path::Path, contents: impl AsRef<[u8]>) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(contents.as_ref())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Every file under `dir`, recursively, sorted.
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

/// A test document that compresses badly and is recognisable: a line of text, then
/// pseudo-random bytes (xorshift from `seed`), `len` bytes in all.
pub fn document(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    let mut out = b"Note au cabinet du ministre : ordre du jour du conseil restreint.\n".to_vec();
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push((x >> 24) as u8);
    }
    out.truncate(len);
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
