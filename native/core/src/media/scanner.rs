//! The content scanner's client protocol (issue 8, step 2): every received attachment is
//! fetched *through* `matrix-content-scanner`, never from the plain media API.
//!
//! Protocol, as served by matrix-content-scanner 1.0.8 under `/_matrix/media_proxy/unstable`
//! (recon in `notes/issue8-design.md` §3–§4):
//!
//! 1. `GET public_key` → `{"public_key": "<unpadded base64 Curve25519>"}`, parsed strictly
//!    into a [`ScannerKey`] ([`fetch_public_key`], [`parse_public_key_response`]) and kept in
//!    a [`ScannerKeyCache`].
//! 2. `POST download_encrypted` with `{"encrypted_body": {"ciphertext", "mac", "ephemeral"}}`,
//!    libolm's PkEncryption of `{"file": <EncryptedFile>}` to that key
//!    ([`encrypted_request_body`]). The key, IV and hash of the attachment therefore never
//!    appear in clear to the TLS front (nginx) or in its logs.
//! 3. The answer is classified by [`classify_response`] into a [`ScanOutcome`]. On success the
//!    scanner returns the *ciphertext* exactly as the homeserver stored it, never cleartext:
//!    the client verifies the SHA-256 and decrypts locally ([`decrypt_scanned`]), which also
//!    protects against a scanner (or a front) that lies.
//!
//! [`download_through_scanner`] runs the three steps, with one retry when the scanner's key
//! rotated.
//!
//! # Whose key
//!
//! The TLS pins vouch for the front, not for the scanner's key: whoever runs the front could
//! serve their own key and read every attachment key sent to it. A served key is therefore used
//! only if it is one of the keys pinned in the managed configuration (`content_scanner_keys`,
//! a list so that a rotation is a configuration push): [`check_pinned_key`]. A key outside the
//! list is [`ScannerError::UnpinnedKey`] (the client records a security event) and nothing is
//! encrypted to it; with no pinned key at all, [`ScannerError::NoPinnedKeys`] comes before any
//! request. The scanner itself still sees every file it scans in clear: that is its job (see
//! the threat model, T-ATT-07). There is no fallback: when the scanner refuses or cannot be reached, the result is
//! a typed [`ScannerError`] and no request is ever made to `/_matrix/media/*/download`.
//!
//! # Where the scanner is
//!
//! At the origin of the [`Transport`] it is given, under [`API_PREFIX`]. Tchap's deployment and
//! our testbed route `/_matrix/media_proxy/` to the scanner behind the homeserver's own TLS
//! front, so the client's pinned transport is the scanner's too. A scanner on another host
//! needs its own `Transport`, built from a `Config` with that URL and its pins: the transport
//! is the only thing that can open a connection, so there is no separate base URL to get wrong.
//!
//! # Error mapping (design note §4)
//!
//! | answer | [`ScanOutcome`] | [`ScannerError`] |
//! |---|---|---|
//! | 200 | `Clean(ciphertext)` | — (then [`AttachmentError::HashMismatch`] if the hash fails) |
//! | any status, `reason` `MCS_MEDIA_NOT_CLEAN` (403 in 1.0.8, whatever its `info`) | `Infected` | `InfectedFile` |
//! | 400 `MCS_MEDIA_FAILED_TO_DECRYPT` + `BAD_MESSAGE_MAC`, or `MCS_BAD_DECRYPTION` | `KeyRejected` | refetch the key, retry once if it changed; else `KeyRejected` |
//! | 400 `MCS_MEDIA_FAILED_TO_DECRYPT` + `Mismatched SHA-256 digest` | `HashMismatch` | `Attachment(HashMismatch)` |
//! | 404 `M_NOT_FOUND` | `NotFound` | `NotFound` |
//! | 502, 503, 504 (JSON or not); any other status with a non-JSON body | `Unavailable` | `Unavailable` |
//! | anything else (`MCS_MALFORMED_JSON`, 500 `M_UNKNOWN`, 404/405 `M_UNRECOGNIZED`, …) | `Protocol` | `Protocol` |
//!
//! A scanner's error body is never kept: only its `reason` code (sanitised, capped at
//! [`MAX_REASON_LEN`] characters) and its `info` when it is one of the fixed strings of
//! [`KNOWN_INFOS`] (an unknown `info`, e.g. a jsonschema message, could quote a value).
//!
//! # Memory
//!
//! The pinned [`Transport`] reads a whole response body into one (zeroizing) buffer, so the
//! ciphertext is buffered: peak memory of a download is the ciphertext size (capped at
//! `max_bytes`) plus one 64 KiB decryption buffer. Verification and decryption already take
//! any `Read + Seek` source ([`decrypt_scanned`]): a streaming transport will write the body to
//! a private temp file (or any seekable sink) and hand that over instead, without changing the
//! protocol code above.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use vodozemac::Curve25519PublicKey;
use vodozemac::pk_encryption::PkEncryption;
use zeroize::Zeroizing;

use super::AttachmentError;
use super::attachment::{BUFFER_LEN, verify_ciphertext};
use super::encrypted_file::{EncryptedFile, ValidatedFile};
use crate::net::{Request, StreamingResponse, Transport, TransportError};

/// Path segments of the scanner's API, on the transport's origin.
pub const API_PREFIX: [&str; 3] = ["_matrix", "media_proxy", "unstable"];
/// Total time allowed for one `download_encrypted` (the scanner downloads the whole file from
/// the homeserver, decrypts it and runs the antivirus before it answers).
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a fetched scanner key is used before it is fetched again (a rotation in between is
/// caught by the retry on `KeyRejected` anyway).
pub const DEFAULT_KEY_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest `reason` code kept from a scanner's error body.
pub const MAX_REASON_LEN: usize = 64;
/// The `info` strings of matrix-content-scanner 1.0.8 that are kept in errors (design note
/// §4); any other `info` is dropped.
pub const KNOWN_INFOS: &[&str] = &[
    "***VIRUS DETECTED***",
    "Malformed media ID",
    "File type not supported",
    "BAD_MESSAGE_MAC",
    "INVALID_BASE64",
    "Mismatched SHA-256 digest",
    "Error decoding key",
    "Invalid IV length",
    "Error decoding IV",
    "Failed to create AES cipher",
    "Body must be a dictionary",
    "File not found",
    "Failed to reach the remote server",
    "The remote server responded with an error",
    "Internal Server Error",
    "Unrecognized request",
];

/// Cap on the `public_key` answer (the real one is 60 bytes).
const PUBLIC_KEY_MAX_BODY: usize = 1024;
/// A Curve25519 key in unpadded base64: 32 bytes, 43 characters.
const PUBLIC_KEY_B64_LEN: usize = 43;
/// Error bodies larger than this are not read (the scanner's are under 200 bytes).
pub const MAX_ERROR_BODY: usize = 16 * 1024;
/// Room for `{"file": …}`: the longest canonical `EncryptedFile` (a 517-character `mxc://` URI,
/// whose characters need no JSON escaping, and fixed-length key, IV and hash) is under 800
/// bytes. The buffer holds the attachment key, so it must never reallocate.
const PLAINTEXT_CAPACITY: usize = 2048;

const REASON_NOT_CLEAN: &str = "MCS_MEDIA_NOT_CLEAN";
const REASON_FAILED_TO_DECRYPT: &str = "MCS_MEDIA_FAILED_TO_DECRYPT";
const REASON_BAD_DECRYPTION: &str = "MCS_BAD_DECRYPTION";
const REASON_NOT_FOUND: &str = "M_NOT_FOUND";
const INFO_BAD_MAC: &str = "BAD_MESSAGE_MAC";
const INFO_DIGEST_MISMATCH: &str = "Mismatched SHA-256 digest";

/// A failure to get a received attachment through the content scanner.
///
/// No variant carries the attachment's key, IV or plaintext, nor a scanner's body verbatim.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ScannerError {
    /// The scanner refused the file (`MCS_MEDIA_NOT_CLEAN`): the antivirus found something,
    /// or the scanner's file-type policy refused it. Nothing was decrypted or written.
    #[error("the content scanner refused the file as not clean ({})", .info.unwrap_or("no known reason"))]
    InfectedFile {
        /// The scanner's `info` if it is one of [`KNOWN_INFOS`] (e.g. `***VIRUS DETECTED***`).
        info: Option<&'static str>,
    },
    /// The scanner could not do its job now: a 502/503/504 (scanner down behind the front, or
    /// the homeserver unreachable from the scanner), or an answer that is not JSON.
    #[error("the content scanner is unavailable (HTTP {status}{})", reason_suffix(.reason.as_deref()))]
    Unavailable {
        /// HTTP status of the answer.
        status: u16,
        /// The scanner's `reason` code, if the body was a JSON error.
        reason: Option<String>,
    },
    /// The scanner could not decrypt our request with its current key, even after the key was
    /// fetched again (our encryption or the scanner is broken).
    #[error("the content scanner could not decrypt the request with its current key")]
    KeyRejected,
    /// The scanner found no such media on the homeserver (`M_NOT_FOUND`).
    #[error("the media was not found on the homeserver")]
    NotFound,
    /// Any other answer: a request the scanner did not accept, or a server that is not a
    /// matrix-content-scanner (e.g. `M_UNRECOGNIZED` when nothing is routed to it).
    #[error("unexpected answer from the content scanner: HTTP {status}{}{}",
        reason_suffix(.reason.as_deref()), .info.map(|i| format!(" ({i})")).unwrap_or_default())]
    Protocol {
        /// HTTP status.
        status: u16,
        /// The `reason` (or Matrix `errcode`) of the body, sanitised and capped.
        reason: Option<String>,
        /// The `info` if it is one of [`KNOWN_INFOS`].
        info: Option<&'static str>,
    },
    /// The scanner served a well-formed public key that is not one of the configuration's
    /// `content_scanner_keys`: nothing was encrypted to it (a front serving its own key, or a
    /// scanner rotated before the configuration was pushed).
    #[error(
        "the content scanner's public key {served} is not one of the configured content_scanner_keys"
    )]
    UnpinnedKey {
        /// The served key, unpadded base64 (public).
        served: String,
    },
    /// The configuration pins no scanner key (`content_scanner_keys`): no received file can be
    /// opened. Nothing was requested.
    #[error(
        "no content scanner key is configured (content_scanner_keys): received files cannot be opened"
    )]
    NoPinnedKeys,
    /// The scanner's public key is not what the protocol requires.
    #[error("malformed content scanner public key: {what}")]
    MalformedPublicKey {
        /// What is wrong (never the value).
        what: &'static str,
    },
    /// The request never got an HTTP answer (TLS rejection, connection, timeout).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The file could not be checked or decrypted locally: its ciphertext does not match its
    /// SHA-256 (also when the scanner reports the mismatch), it is over the size limit, or
    /// writing the output failed.
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
}

fn reason_suffix(reason: Option<&str>) -> String {
    reason.map(|r| format!(" {r}")).unwrap_or_default()
}

impl ScannerError {
    /// A stable snake_case code for this failure (CLI JSON output; the JNI error code).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InfectedFile { .. } => "infected_file",
            Self::Unavailable { .. } => "scanner_unavailable",
            Self::KeyRejected => "scanner_key_rejected",
            Self::NotFound => "media_not_found",
            Self::Protocol { .. } => "scanner_protocol",
            Self::UnpinnedKey { .. } => "scanner_key_unpinned",
            Self::NoPinnedKeys => "scanner_keys_not_configured",
            Self::MalformedPublicKey { .. } => "scanner_bad_public_key",
            Self::Transport(t) => t.code(),
            Self::Attachment(a) => a.code(),
        }
    }

    /// Whether the scanner could not be used at all (down, unreachable, timed out), as opposed
    /// to an answer about this file. A TLS rejection is not "unavailable": it is an attack or a
    /// misconfiguration and keeps its own code.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::Transport(
                    TransportError::Connect { .. }
                        | TransportError::Timeout
                        | TransportError::Network { .. }
                )
        )
    }
}

/// The scanner's Curve25519 public key, and when it was fetched.
///
/// Only [`ScannerKey::from_base64`] (strict) makes one. Public data: `Debug` shows it.
#[derive(Clone)]
pub struct ScannerKey {
    key: Curve25519PublicKey,
    fetched_at: Instant,
}

impl ScannerKey {
    /// Parses the `public_key` value strictly: exactly 43 characters of unpadded, canonical,
    /// standard-alphabet base64 (what the scanner sends and libolm reads), 32 bytes, and not
    /// a low-order point (with which PkEncryption's shared secret would be predictable).
    /// `fetched_at` is now.
    pub fn from_base64(encoded: &str) -> Result<Self, ScannerError> {
        const WHAT: &str = "public_key: not 43 characters of unpadded standard base64";
        if encoded.len() != PUBLIC_KEY_B64_LEN {
            return Err(bad_key(WHAT));
        }
        // The engine refuses padding, the URL-safe alphabet and non-zero trailing bits.
        let bytes = STANDARD_NO_PAD.decode(encoded).map_err(|_| bad_key(WHAT))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad_key(WHAT))?;
        let key = Curve25519PublicKey::from_bytes(bytes);
        // A trial encryption is the one check vodozemac offers for a non-contributory key.
        PkEncryption::from_key(key)
            .encrypt(&[])
            .map_err(|_| bad_key("public_key: low-order Curve25519 point"))?;
        Ok(Self {
            key,
            fetched_at: Instant::now(),
        })
    }

    /// The key.
    pub fn public_key(&self) -> Curve25519PublicKey {
        self.key
    }

    /// When it was fetched (parsed).
    pub fn fetched_at(&self) -> Instant {
        self.fetched_at
    }

    /// The key in unpadded base64, as the scanner serves it.
    pub fn to_base64(&self) -> String {
        self.key.to_base64()
    }

    /// Whether both are the same key, whenever they were fetched.
    pub fn same_key(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl fmt::Debug for ScannerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { key, fetched_at } = self;
        f.debug_struct("ScannerKey")
            .field("public_key", &key.to_base64())
            .field("age", &fetched_at.elapsed())
            .finish()
    }
}

fn bad_key(what: &'static str) -> ScannerError {
    ScannerError::MalformedPublicKey { what }
}

/// The keys the configuration pins, and the scanner key last fetched (always one of them),
/// shared by the downloads of one client.
///
/// A key older than `max_age` is not returned (it is fetched again). Thread-safe; the lock is
/// never held across a request.
#[derive(Debug)]
pub struct ScannerKeyCache {
    pinned: Vec<Curve25519PublicKey>,
    max_age: Duration,
    current: Mutex<Option<ScannerKey>>,
}

impl ScannerKeyCache {
    /// An empty cache accepting only `pinned` keys, each used for [`DEFAULT_KEY_MAX_AGE`].
    pub fn pinned(pinned: Vec<Curve25519PublicKey>) -> Self {
        Self::new(pinned, DEFAULT_KEY_MAX_AGE)
    }

    /// An empty cache accepting only `pinned` keys, each used for at most `max_age`.
    pub fn new(pinned: Vec<Curve25519PublicKey>, max_age: Duration) -> Self {
        Self {
            pinned,
            max_age,
            current: Mutex::new(None),
        }
    }

    /// The keys a served key must be one of.
    pub fn pinned_keys(&self) -> &[Curve25519PublicKey] {
        &self.pinned
    }

    /// The cached key, if there is one younger than `max_age`.
    pub fn get(&self) -> Option<ScannerKey> {
        self.lock()
            .as_ref()
            .filter(|k| k.fetched_at.elapsed() < self.max_age)
            .cloned()
    }

    /// Replaces the cached key with `key` if it is pinned ([`check_pinned_key`]); an unpinned
    /// key is refused and the cache is cleared.
    pub fn store(&self, key: ScannerKey) -> Result<ScannerKey, ScannerError> {
        let mut current = self.lock();
        match check_pinned_key(&key, &self.pinned) {
            Ok(()) => {
                *current = Some(key.clone());
                Ok(key)
            }
            Err(e) => {
                *current = None;
                Err(e)
            }
        }
    }

    /// Forgets the cached key.
    pub fn clear(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> MutexGuard<'_, Option<ScannerKey>> {
        // The data is a plain `Option`: a panic elsewhere cannot leave it half-written.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn api_path(endpoint: &'static str) -> Vec<&'static str> {
    let [a, b, c] = API_PREFIX;
    vec![a, b, c, endpoint]
}

/// The `GET public_key` request.
pub fn public_key_request() -> Request<'static> {
    let mut request = Request::new(Method::GET, api_path("public_key"));
    request.max_body_bytes = Some(PUBLIC_KEY_MAX_BODY);
    request
}

/// Reads the answer to [`public_key_request`]: a 200 whose body is exactly
/// `{"public_key": "<key>"}` (no other field, nothing after the object), the key as
/// [`ScannerKey::from_base64`] requires. Any other status is classified as by
/// [`classify_response`].
pub fn parse_public_key_response(status: u16, body: &[u8]) -> Result<ScannerKey, ScannerError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PublicKeyBody {
        public_key: String,
    }
    if status != 200 {
        // Never `Clean`: only a 200 is.
        return Err(
            match classify_error::<()>(status, None, body).into_result() {
                Err(error) => error,
                Ok(()) => ScannerError::Protocol {
                    status,
                    reason: None,
                    info: None,
                },
            },
        );
    }
    const WHAT: &str = "answer is not exactly a JSON object with a \"public_key\" string";
    // serde's derived structs also read JSON arrays: check for an object first. The typed
    // parse then refuses other fields and a duplicated `public_key`.
    let is_object =
        serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|value| value.is_object());
    if !is_object {
        return Err(bad_key(WHAT));
    }
    let parsed: PublicKeyBody = serde_json::from_slice(body).map_err(|_| bad_key(WHAT))?;
    ScannerKey::from_base64(&parsed.public_key)
}

/// `GET /_matrix/media_proxy/unstable/public_key` on the transport's origin.
pub async fn fetch_public_key(transport: &Transport) -> Result<ScannerKey, ScannerError> {
    let response = transport.send(public_key_request()).await?;
    let key = parse_public_key_response(response.status, &response.body)?;
    tracing::info!(public_key = %key.to_base64(), "content scanner key fetched");
    Ok(key)
}

/// `Ok` only if `served` is one of `pinned` (the configuration's `content_scanner_keys`);
/// else [`ScannerError::UnpinnedKey`], or [`ScannerError::NoPinnedKeys`] when none is pinned.
pub fn check_pinned_key(
    served: &ScannerKey,
    pinned: &[Curve25519PublicKey],
) -> Result<(), ScannerError> {
    if pinned.is_empty() {
        return Err(ScannerError::NoPinnedKeys);
    }
    if pinned.contains(&served.key) {
        Ok(())
    } else {
        Err(ScannerError::UnpinnedKey {
            served: served.to_base64(),
        })
    }
}

/// Fetches the scanner's key and caches it if it is pinned ([`ScannerKeyCache::store`]).
pub async fn fetch_pinned_key(
    transport: &Transport,
    cache: &ScannerKeyCache,
) -> Result<ScannerKey, ScannerError> {
    if cache.pinned_keys().is_empty() {
        return Err(ScannerError::NoPinnedKeys);
    }
    let served = fetch_public_key(transport).await?;
    cache.store(served).inspect_err(|e| {
        if let ScannerError::UnpinnedKey { served } = e {
            tracing::warn!(public_key = %served, "content scanner key not pinned: refused");
        }
    })
}

/// The cached key if it is fresh, else a newly fetched pinned one (then cached).
pub async fn cached_or_fetched_key(
    transport: &Transport,
    cache: &ScannerKeyCache,
) -> Result<ScannerKey, ScannerError> {
    if let Some(key) = cache.get() {
        return Ok(key);
    }
    fetch_pinned_key(transport, cache).await
}

/// The body of `download_encrypted` for `file`:
/// `{"encrypted_body": {"ciphertext", "mac", "ephemeral"}}`, the PkEncryption to `key` of the
/// JSON `{"file": <file's canonical EncryptedFile>}`, all three fields in unpadded standard
/// base64 (libolm refuses padding with `INVALID_BASE64`).
///
/// The plaintext JSON holds the attachment key: it is written into one zeroizing buffer that
/// is never reallocated. The MAC is libolm's (it authenticates nothing: the channel's
/// integrity is TLS's; this layer keeps the key out of the front's hands and logs).
pub fn encrypted_request_body(
    key: &ScannerKey,
    file: &ValidatedFile,
) -> Result<Vec<u8>, ScannerError> {
    #[derive(Serialize)]
    struct Plaintext<'a> {
        file: &'a EncryptedFile,
    }
    #[derive(Serialize)]
    struct Body {
        encrypted_body: EncryptedBody,
    }
    #[derive(Serialize)]
    struct EncryptedBody {
        ciphertext: String,
        mac: String,
        ephemeral: String,
    }

    let wire = file.to_encrypted_file();
    let mut plaintext = Zeroizing::new(Vec::with_capacity(PLAINTEXT_CAPACITY));
    serde_json::to_writer(NoGrow(&mut plaintext), &Plaintext { file: &wire }).map_err(|_| {
        AttachmentError::Malformed {
            what: "encrypted file: too long for a content scanner request",
        }
    })?;
    drop(wire);
    let message = PkEncryption::from_key(key.key)
        .encrypt(&plaintext)
        .map_err(|_| bad_key("public_key: low-order Curve25519 point"))?;
    drop(plaintext);
    let body = Body {
        encrypted_body: EncryptedBody {
            ciphertext: vodozemac::base64_encode(&message.ciphertext),
            mac: vodozemac::base64_encode(&message.mac),
            ephemeral: message.ephemeral_key.to_base64(),
        },
    };
    serde_json::to_vec(&body).map_err(|_| {
        AttachmentError::Malformed {
            what: "content scanner request could not be encoded",
        }
        .into()
    })
}

/// A writer into a `Vec` that fails rather than grow it (growing would leave an unzeroized
/// copy of what was written so far).
struct NoGrow<'a>(&'a mut Vec<u8>);

impl Write for NoGrow<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.capacity() - self.0.len() < buf.len() {
            return Err(io::Error::other("fixed-capacity buffer full"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The `POST download_encrypted` request for a body from [`encrypted_request_body`], with the
/// answer capped at `max_bytes` and [`DOWNLOAD_TIMEOUT`].
pub fn download_request(body: Vec<u8>, max_bytes: u64) -> Request<'static> {
    let mut request = Request::new(Method::POST, api_path("download_encrypted"));
    request.body = Some(Zeroizing::new(body));
    request.timeout = Some(DOWNLOAD_TIMEOUT);
    request.max_body_bytes = Some(usize::try_from(max_bytes).unwrap_or(usize::MAX));
    request
}

/// What the scanner said about a `download_encrypted` request.
///
/// `B` is the body: on `Clean` it is handed back untouched (the ciphertext). `Debug` shows its
/// length only.
#[non_exhaustive]
pub enum ScanOutcome<B> {
    /// 200: the file is clean; the body is its ciphertext, to verify and decrypt locally.
    Clean(B),
    /// `MCS_MEDIA_NOT_CLEAN`: refused (fail closed, whatever the `info`).
    Infected {
        /// The `info`, if it is one of [`KNOWN_INFOS`].
        info: Option<&'static str>,
    },
    /// The scanner could not decrypt the request: its key has probably rotated. Fetch the key
    /// again and retry once if it changed.
    KeyRejected,
    /// `Mismatched SHA-256 digest`: the homeserver's ciphertext does not match the event
    /// (modified or truncated on the server).
    HashMismatch,
    /// 404 `M_NOT_FOUND`: no such media on the homeserver.
    NotFound,
    /// 502/503/504, or a body that is not JSON: the scanner cannot be used now.
    Unavailable {
        /// HTTP status.
        status: u16,
        /// The `reason` code, if the body was a JSON error.
        reason: Option<String>,
    },
    /// Any other answer.
    Protocol {
        /// HTTP status.
        status: u16,
        /// The `reason` (or Matrix `errcode`), sanitised and capped.
        reason: Option<String>,
        /// The `info` (or Matrix `error`), if it is one of [`KNOWN_INFOS`].
        info: Option<&'static str>,
    },
}

impl<B> ScanOutcome<B> {
    /// A short name of the outcome, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Clean(_) => "clean",
            Self::Infected { .. } => "infected",
            Self::KeyRejected => "key_rejected",
            Self::HashMismatch => "hash_mismatch",
            Self::NotFound => "not_found",
            Self::Unavailable { .. } => "unavailable",
            Self::Protocol { .. } => "protocol",
        }
    }

    /// The clean body, or the outcome as an error (`KeyRejected` becomes
    /// [`ScannerError::KeyRejected`]: the caller decides about retrying before this).
    pub fn into_result(self) -> Result<B, ScannerError> {
        match self {
            Self::Clean(body) => Ok(body),
            Self::Infected { info } => Err(ScannerError::InfectedFile { info }),
            Self::KeyRejected => Err(ScannerError::KeyRejected),
            Self::HashMismatch => Err(AttachmentError::HashMismatch.into()),
            Self::NotFound => Err(ScannerError::NotFound),
            Self::Unavailable { status, reason } => {
                Err(ScannerError::Unavailable { status, reason })
            }
            Self::Protocol {
                status,
                reason,
                info,
            } => Err(ScannerError::Protocol {
                status,
                reason,
                info,
            }),
        }
    }
}

impl<B: AsRef<[u8]>> fmt::Debug for ScanOutcome<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clean(body) => f
                .debug_struct("Clean")
                .field("bytes", &body.as_ref().len())
                .finish(),
            Self::Infected { info } => f.debug_struct("Infected").field("info", info).finish(),
            Self::KeyRejected => f.write_str("KeyRejected"),
            Self::HashMismatch => f.write_str("HashMismatch"),
            Self::NotFound => f.write_str("NotFound"),
            Self::Unavailable { status, reason } => f
                .debug_struct("Unavailable")
                .field("status", status)
                .field("reason", reason)
                .finish(),
            Self::Protocol {
                status,
                reason,
                info,
            } => f
                .debug_struct("Protocol")
                .field("status", status)
                .field("reason", reason)
                .field("info", info)
                .finish(),
        }
    }
}

/// Classifies an answer to `download_encrypted` (the table in the module docs).
///
/// `content_type` is the response's `Content-Type`, if any (without one, a body that does not
/// parse as JSON counts as non-JSON). Only the `reason` code and a known `info` are kept from
/// an error body.
pub fn classify_response<B: AsRef<[u8]>>(
    status: u16,
    content_type: Option<&str>,
    body: B,
) -> ScanOutcome<B> {
    if status == 200 {
        return ScanOutcome::Clean(body);
    }
    classify_error(status, content_type, body.as_ref())
}

/// A scanner error body (`reason`/`info`) or a Matrix one (`errcode`/`error`, from the
/// scanner's router or from whatever answers in its place).
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    info: Option<String>,
    #[serde(default)]
    errcode: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

fn classify_error<B>(status: u16, content_type: Option<&str>, body: &[u8]) -> ScanOutcome<B> {
    let declared_json = content_type.is_none_or(is_json_media_type);
    let too_big = body.len() > MAX_ERROR_BODY;
    let parsed = if declared_json && !too_big {
        serde_json::from_slice::<serde_json::Value>(body).ok()
    } else {
        None
    };
    // An HTML page from the front, an empty body…: not the scanner speaking. (An oversized
    // body declared as JSON is not parsed, and ends up a `Protocol` error.)
    let not_json = !declared_json || (!too_big && parsed.is_none());
    let fields = parsed
        .as_ref()
        .filter(|v| v.is_object())
        .and_then(|v| ErrorBody::deserialize(v).ok());
    let reason = fields
        .as_ref()
        .and_then(|b| b.reason.as_deref().or(b.errcode.as_deref()));
    let info = fields
        .as_ref()
        .and_then(|b| b.info.as_deref().or(b.error.as_deref()))
        .and_then(known_info);

    if matches!(status, 502..=504) {
        return ScanOutcome::Unavailable {
            status,
            reason: reason.map(sanitize_reason),
        };
    }
    if not_json {
        return ScanOutcome::Unavailable {
            status,
            reason: None,
        };
    }
    match (status, reason, info) {
        (_, Some(REASON_NOT_CLEAN), info) => ScanOutcome::Infected { info },
        (_, Some(REASON_BAD_DECRYPTION), _)
        | (400, Some(REASON_FAILED_TO_DECRYPT), Some(INFO_BAD_MAC)) => ScanOutcome::KeyRejected,
        (400, Some(REASON_FAILED_TO_DECRYPT), Some(INFO_DIGEST_MISMATCH)) => {
            ScanOutcome::HashMismatch
        }
        (404, Some(REASON_NOT_FOUND), _) => ScanOutcome::NotFound,
        (status, reason, info) => ScanOutcome::Protocol {
            status,
            reason: reason.map(sanitize_reason),
            info,
        },
    }
}

fn is_json_media_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

fn known_info(info: &str) -> Option<&'static str> {
    KNOWN_INFOS.iter().copied().find(|known| *known == info)
}

/// A reason code as it may be shown and logged: `[A-Za-z0-9_.-]` kept, anything else `?`, at
/// most [`MAX_REASON_LEN`] characters.
fn sanitize_reason(reason: &str) -> String {
    reason
        .chars()
        .take(MAX_REASON_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Verifies a ciphertext returned by the scanner against the event's SHA-256 and decrypts it
/// into `sink` (the scanner is not trusted for either). Returns the plaintext length.
///
/// Nothing is written unless the whole ciphertext matched; on an error after that (an I/O
/// failure, or a source that changed between the passes) the caller must discard what was
/// written: write to a private temp file and publish it only on `Ok`.
pub fn decrypt_scanned<R: Read + Seek, W: Write>(
    file: &ValidatedFile,
    ciphertext: R,
    max_bytes: u64,
    sink: W,
) -> Result<u64, ScannerError> {
    let verified = verify_ciphertext(file, ciphertext, max_bytes)?;
    Ok(verified.decrypt_to(sink)?)
}

/// Reads and classifies a scanner answer that is not a 200: its body is read only up to
/// [`MAX_ERROR_BODY`] (the scanner's are under 200 bytes), whatever the download's cap, and
/// nothing is allocated from its `Content-Length`. A larger error body is
/// [`ScannerError::Protocol`].
pub async fn read_error_answer(
    response: StreamingResponse,
) -> Result<ScanOutcome<Zeroizing<Vec<u8>>>, ScannerError> {
    let status = response.status;
    let content_type = response.content_type.clone();
    let response = match response.read_body_within(MAX_ERROR_BODY as u64).await {
        Ok(response) => response,
        Err(TransportError::BodyTooLarge { .. }) => {
            return Err(ScannerError::Protocol {
                status,
                reason: None,
                info: None,
            });
        }
        Err(other) => return Err(other.into()),
    };
    Ok(classify_response(
        status,
        content_type.as_deref(),
        response.body,
    ))
}

/// Downloads `file` through the content scanner and decrypts it into `sink`; returns the
/// plaintext length.
///
/// Key (from `keys`, else fetched; a fetched key must be pinned, [`check_pinned_key`]) →
/// `POST download_encrypted` → on `KeyRejected`, the key is fetched again: if it changed and
/// is pinned, one retry with the new key, else [`ScannerError::KeyRejected`] (or
/// [`ScannerError::UnpinnedKey`], nothing sent)
/// → on `Clean`, [`decrypt_scanned`]. Any other outcome is its [`ScannerError`]
/// (`InfectedFile`, `Unavailable`, …) and nothing is written. There is no fallback to the
/// plain media API, ever.
///
/// The clean answer (the ciphertext, at most `max_bytes`) is streamed into `spool`, an empty
/// seekable store the caller provides (the client uses an unnamed temp file in its data
/// directory; it only ever holds ciphertext), then hashed and decrypted from there: memory
/// stays at a network chunk plus one 64 KiB buffer whatever the file's size. Error answers are
/// read whole (they are small, and capped by the same limit).
pub async fn download_through_scanner<S, W>(
    transport: &Transport,
    keys: &ScannerKeyCache,
    file: &ValidatedFile,
    max_bytes: u64,
    spool: &mut S,
    sink: W,
) -> Result<u64, ScannerError>
where
    S: Read + Write + Seek,
    W: Write,
{
    let too_large = |e| match e {
        TransportError::BodyTooLarge { .. } => {
            ScannerError::Attachment(AttachmentError::TooLarge { limit: max_bytes })
        }
        other => ScannerError::Transport(other),
    };
    let mut key = cached_or_fetched_key(transport, keys).await?;
    let mut retried = false;
    loop {
        let body = encrypted_request_body(&key, file)?;
        let response = transport
            .send_streaming(download_request(body, max_bytes))
            .await
            .map_err(too_large)?;
        let status = response.status;
        if status == 200 {
            tracing::info!(status, outcome = "clean", "content scanner answered");
            spool
                .seek(SeekFrom::Start(0))
                .map_err(AttachmentError::Io)?;
            let mut writer = std::io::BufWriter::with_capacity(BUFFER_LEN, &mut *spool);
            response.copy_to(&mut writer).await.map_err(too_large)?;
            writer.flush().map_err(AttachmentError::Io)?;
            drop(writer);
            spool
                .seek(SeekFrom::Start(0))
                .map_err(AttachmentError::Io)?;
            return decrypt_scanned(file, &mut *spool, max_bytes, sink);
        }
        let outcome = read_error_answer(response).await?;
        tracing::info!(status, outcome = outcome.kind(), "content scanner answered");
        match outcome {
            // Only a 200 is `Clean`, and a 200 was handled above.
            ScanOutcome::Clean(_) => {
                return Err(ScannerError::Protocol {
                    status,
                    reason: None,
                    info: None,
                });
            }
            ScanOutcome::KeyRejected if !retried => {
                let fresh = fetch_pinned_key(transport, keys).await?;
                if fresh.same_key(&key) {
                    tracing::warn!("content scanner rejected its own current key");
                    return Err(ScannerError::KeyRejected);
                }
                tracing::info!("content scanner key rotated; retrying once");
                key = fresh;
                retried = true;
            }
            other => return other.into_result().map(|_| 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use serde_json::{Value, json};
    use vodozemac::pk_encryption::{Message, PkDecryption};

    use super::*;
    use crate::media::test_vectors::{SDK_CIPHERTEXT, SDK_PLAINTEXT, sdk_file_json};

    fn sdk_file() -> ValidatedFile {
        EncryptedFile::from_json(sdk_file_json())
            .unwrap()
            .validate()
            .unwrap()
    }

    fn classify(status: u16, content_type: Option<&str>, body: &str) -> ScanOutcome<Vec<u8>> {
        classify_response(status, content_type, body.as_bytes().to_vec())
    }

    fn scanner_error(status: u16, reason: &str, info: &str) -> ScanOutcome<Vec<u8>> {
        let body = json!({ "reason": reason, "info": info }).to_string();
        classify(status, Some("application/json; charset=utf-8"), &body)
    }

    const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
        <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n\
        </body>\r\n</html>\r\n";

    #[test]
    fn clean_hands_back_the_body_untouched() {
        let ScanOutcome::Clean(body) = classify_response(200, None, SDK_CIPHERTEXT) else {
            panic!("not clean")
        };
        assert_eq!(body, SDK_CIPHERTEXT);
        // Whatever the homeserver's Content-Type the scanner copied.
        assert!(matches!(
            classify_response(200, Some("text/html"), b"x"),
            ScanOutcome::Clean(_)
        ));
    }

    /// Every row of the design note's §4 table, with the exact bodies of 1.0.8.
    #[test]
    fn classify_every_row_of_the_error_table() {
        use ScanOutcome as O;
        for info in [
            "Expecting value: line 1 column 1 (char 0)",
            "Body must be a dictionary",
            "'iv' is a required property",
            "'file' is a required property",
            "key_ops must contain at least \"encrypt\" and \"decrypt\"",
        ] {
            let outcome = scanner_error(400, "MCS_MALFORMED_JSON", info);
            let O::Protocol {
                status: 400,
                reason: Some(reason),
                info: kept,
            } = &outcome
            else {
                panic!("{info}: {outcome:?}")
            };
            assert_eq!(reason, "MCS_MALFORMED_JSON");
            assert_eq!(*kept, (info == "Body must be a dictionary").then_some(info));
        }
        assert!(matches!(
            scanner_error(400, "MCS_MEDIA_FAILED_TO_DECRYPT", "BAD_MESSAGE_MAC"),
            O::KeyRejected
        ));
        assert!(matches!(
            scanner_error(
                400,
                "MCS_MEDIA_FAILED_TO_DECRYPT",
                "Mismatched SHA-256 digest"
            ),
            O::HashMismatch
        ));
        for info in [
            "INVALID_BASE64",
            "Error decoding key",
            "Invalid IV length",
            "Error decoding IV",
            "Failed to create AES cipher",
        ] {
            let outcome = scanner_error(400, "MCS_MEDIA_FAILED_TO_DECRYPT", info);
            assert!(
                matches!(&outcome, O::Protocol { status: 400, reason: Some(r), info: Some(i) }
                    if r == "MCS_MEDIA_FAILED_TO_DECRYPT" && *i == info),
                "{info}: {outcome:?}"
            );
        }
        for info in [
            "***VIRUS DETECTED***",
            "Malformed media ID",
            "File type not supported",
        ] {
            let outcome = scanner_error(403, "MCS_MEDIA_NOT_CLEAN", info);
            assert!(
                matches!(outcome, O::Infected { info: Some(i) } if i == info),
                "{info}: {outcome:?}"
            );
        }
        // Fail closed: an unknown info (or none) is still infected.
        assert!(matches!(
            scanner_error(403, "MCS_MEDIA_NOT_CLEAN", "Tchap.Test.EICAR FOUND"),
            O::Infected { info: None }
        ));
        assert!(matches!(
            classify(403, None, r#"{"reason": "MCS_MEDIA_NOT_CLEAN"}"#),
            O::Infected { info: None }
        ));
        assert!(matches!(
            scanner_error(404, "M_NOT_FOUND", "File not found"),
            O::NotFound
        ));
        for info in [
            "Failed to reach the remote server",
            "The remote server responded with an error",
            "The remote server responded with an invalid amount of Content-Type headers",
        ] {
            let outcome = scanner_error(502, "MCS_MEDIA_REQUEST_FAILED", info);
            assert!(
                matches!(&outcome, O::Unavailable { status: 502, reason: Some(r) }
                    if r == "MCS_MEDIA_REQUEST_FAILED"),
                "{info}: {outcome:?}"
            );
        }
        assert!(matches!(
            scanner_error(500, "M_UNKNOWN", "Internal Server Error"),
            O::Protocol { status: 500, reason: Some(r), info: Some("Internal Server Error") }
                if r == "M_UNKNOWN"
        ));
        for status in [404, 405] {
            let outcome = classify(
                status,
                Some("application/json"),
                r#"{"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}"#,
            );
            assert!(
                matches!(&outcome, O::Protocol { status: s, reason: Some(r), .. }
                    if *s == status && r == "M_UNRECOGNIZED"),
                "{status}: {outcome:?}"
            );
        }
    }

    #[test]
    fn newer_scanners_bad_decryption_is_a_key_rejection() {
        for status in [400, 403] {
            assert!(matches!(
                scanner_error(status, "MCS_BAD_DECRYPTION", "Failed to decrypt"),
                ScanOutcome::KeyRejected
            ));
        }
    }

    #[test]
    fn front_errors_and_non_json_are_unavailable() {
        for (status, content_type) in [
            (502, Some("text/html")),
            (502, None),
            (503, Some("text/html")),
            (504, None),
            (500, Some("text/html")),
            (403, None),
        ] {
            let outcome = classify(status, content_type, NGINX_502);
            assert!(
                matches!(outcome, ScanOutcome::Unavailable { status: s, reason: None } if s == status),
                "{status}: {outcome:?}"
            );
        }
        // Declared non-JSON wins over a body that happens to parse.
        assert!(matches!(
            classify(
                403,
                Some("text/plain"),
                r#"{"reason": "MCS_MEDIA_NOT_CLEAN"}"#
            ),
            ScanOutcome::Unavailable { status: 403, .. }
        ));
        assert!(matches!(
            classify(400, None, ""),
            ScanOutcome::Unavailable { status: 400, .. }
        ));
        // JSON but not an error object.
        for body in [
            "[1, 2]",
            r#"["MCS_MEDIA_NOT_CLEAN", "BAD_MESSAGE_MAC"]"#,
            "5",
            "null",
        ] {
            let outcome = classify(400, None, body);
            assert!(
                matches!(
                    outcome,
                    ScanOutcome::Protocol {
                        status: 400,
                        reason: None,
                        info: None
                    }
                ),
                "{body}: {outcome:?}"
            );
        }
        // Another success status is not "clean".
        assert!(matches!(
            classify(204, None, ""),
            ScanOutcome::Unavailable { status: 204, .. }
        ));
        assert!(matches!(
            classify(206, None, "{}"),
            ScanOutcome::Protocol { status: 206, .. }
        ));
    }

    #[test]
    fn error_bodies_are_never_kept_verbatim() {
        let body = json!({
            "reason": format!("EVIL\u{1b}[2J<b>{}", "X".repeat(200)),
            "info": "'SECRETKEYMATERIAL' is not of type 'integer'",
        })
        .to_string();
        let outcome = classify(400, None, &body);
        let ScanOutcome::Protocol {
            reason: Some(reason),
            info,
            ..
        } = &outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(reason.chars().count(), MAX_REASON_LEN);
        assert!(reason.starts_with("EVIL??2J?b?XXX"), "{reason}");
        assert!(info.is_none());
        let error = outcome.into_result().unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(
            !shown.contains("SECRETKEY") && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert_eq!(error.code(), "scanner_protocol");
    }

    #[test]
    fn outcomes_map_to_typed_errors() {
        let code = |o: ScanOutcome<Vec<u8>>| o.into_result().unwrap_err().code();
        assert_eq!(
            code(scanner_error(
                403,
                "MCS_MEDIA_NOT_CLEAN",
                "***VIRUS DETECTED***"
            )),
            "infected_file"
        );
        assert_eq!(code(classify(502, None, NGINX_502)), "scanner_unavailable");
        assert_eq!(
            code(scanner_error(
                400,
                "MCS_MEDIA_FAILED_TO_DECRYPT",
                "Mismatched SHA-256 digest"
            )),
            "attachment_hash_mismatch"
        );
        assert_eq!(
            code(scanner_error(404, "M_NOT_FOUND", "File not found")),
            "media_not_found"
        );
        assert_eq!(
            code(scanner_error(400, "MCS_BAD_DECRYPTION", "")),
            "scanner_key_rejected"
        );
        assert!(
            ScannerError::Unavailable {
                status: 502,
                reason: None
            }
            .is_unavailable()
        );
        assert!(ScannerError::Transport(TransportError::Timeout).is_unavailable());
        assert!(!ScannerError::InfectedFile { info: None }.is_unavailable());
    }

    #[test]
    fn debug_of_an_outcome_never_shows_the_body() {
        let shown = format!("{:?}", classify_response(200, None, b"CIPHERTEXT".to_vec()));
        assert_eq!(shown, "Clean { bytes: 10 }");
    }

    #[test]
    fn request_body_round_trips_through_pk_decryption() {
        let scanner = PkDecryption::new();
        let key = ScannerKey::from_base64(&scanner.public_key().to_base64()).unwrap();
        let file = sdk_file();
        let body: Value =
            serde_json::from_slice(&encrypted_request_body(&key, &file).unwrap()).unwrap();

        let outer = body.as_object().unwrap();
        assert_eq!(
            outer.keys().map(String::as_str).collect::<Vec<_>>(),
            ["encrypted_body"]
        );
        let fields = outer["encrypted_body"].as_object().unwrap();
        let mut names: Vec<_> = fields.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["ciphertext", "ephemeral", "mac"]);
        let field = |name: &str| fields[name].as_str().unwrap().to_owned();
        for name in ["ciphertext", "ephemeral", "mac"] {
            let value = field(name);
            assert!(!value.contains('='), "{name} is padded");
            STANDARD_NO_PAD.decode(&value).unwrap();
        }
        assert_eq!(field("ephemeral").len(), 43);
        assert_eq!(field("mac").len(), 11);

        let message =
            Message::from_base64(&field("ciphertext"), &field("mac"), &field("ephemeral")).unwrap();
        let plaintext: Value = serde_json::from_slice(&scanner.decrypt(&message).unwrap()).unwrap();
        assert_eq!(
            plaintext,
            json!({ "file": serde_json::to_value(file.to_encrypted_file()).unwrap() })
        );
        // And it is the event's file: same key, IV, hash and URL once validated.
        assert_eq!(plaintext["file"], sdk_file_json());
    }

    #[test]
    fn request_bodies_are_fresh_each_time() {
        let scanner = PkDecryption::new();
        let key = ScannerKey::from_base64(&scanner.public_key().to_base64()).unwrap();
        let file = sdk_file();
        assert_ne!(
            encrypted_request_body(&key, &file).unwrap(),
            encrypted_request_body(&key, &file).unwrap()
        );
    }

    #[test]
    fn public_key_parse_accepts_the_scanners_answer() {
        let body = br#"{"public_key": "CsCPs3UtgStY+/bGlOOlhol22fUxVa6lNnTHfoEspD8"}"#;
        let key = parse_public_key_response(200, body).unwrap();
        assert_eq!(
            key.to_base64(),
            "CsCPs3UtgStY+/bGlOOlhol22fUxVa6lNnTHfoEspD8"
        );
        assert!(
            key.same_key(
                &parse_public_key_response(
                    200,
                    b" {\"public_key\":\"CsCPs3UtgStY+/bGlOOlhol22fUxVa6lNnTHfoEspD8\"}\n"
                )
                .unwrap()
            )
        );
        assert!(format!("{key:?}").contains("CsCPs3Ut"));
    }

    #[test]
    fn public_key_parse_rejects_everything_else() {
        const GOOD: &str = "CsCPs3UtgStY+/bGlOOlhol22fUxVa6lNnTHfoEspD8";
        let zero = STANDARD_NO_PAD.encode([0u8; 32]);
        let bad_keys = [
            format!("{GOOD}="),                       // padded
            STANDARD_NO_PAD.encode([7u8; 31]),        // 31 bytes
            STANDARD_NO_PAD.encode([7u8; 33]),        // 33 bytes
            format!("{GOOD}A"),                       // extra junk
            format!(" {GOOD}"),                       // whitespace
            GOOD.replace('+', "-").replace('/', "_"), // URL-safe alphabet
            format!("{}9", &GOOD[..42]),              // non-zero trailing bits
            format!("{}!", &GOOD[..42]),              // not base64
            String::new(),
            zero, // low-order point
        ];
        for key in &bad_keys {
            let body = json!({ "public_key": key }).to_string();
            let result = parse_public_key_response(200, body.as_bytes());
            assert!(
                matches!(result, Err(ScannerError::MalformedPublicKey { .. })),
                "{key:?}: {result:?}"
            );
        }
        let bad_bodies = [
            format!(r#"{{"public_key": "{GOOD}"}} junk"#),
            format!(r#"{{"public_key": "{GOOD}", "extra": 1}}"#),
            format!(r#"{{"public_key": "{GOOD}", "public_key": "{GOOD}"}}"#),
            format!(r#"["{GOOD}"]"#),
            r#"{"public_key": 5}"#.to_owned(),
            "{}".to_owned(),
            NGINX_502.to_owned(),
            String::new(),
        ];
        for body in &bad_bodies {
            let result = parse_public_key_response(200, body.as_bytes());
            assert!(
                matches!(result, Err(ScannerError::MalformedPublicKey { .. })),
                "{body:?}: {result:?}"
            );
        }
        let error = parse_public_key_response(200, format!("{GOOD}=").as_bytes()).unwrap_err();
        assert!(!error.to_string().contains("CsCP"), "{error}");
    }

    #[test]
    fn public_key_errors_are_classified() {
        assert!(matches!(
            parse_public_key_response(502, NGINX_502.as_bytes()),
            Err(ScannerError::Unavailable { status: 502, .. })
        ));
        assert!(matches!(
            parse_public_key_response(
                404,
                br#"{"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}"#
            ),
            Err(ScannerError::Protocol { status: 404, .. })
        ));
    }

    const KEY_A: &str = "CsCPs3UtgStY+/bGlOOlhol22fUxVa6lNnTHfoEspD8";

    fn other_key() -> ScannerKey {
        let scanner = vodozemac::pk_encryption::PkDecryption::new();
        ScannerKey::from_base64(&scanner.public_key().to_base64()).unwrap()
    }

    #[test]
    fn key_cache_returns_fresh_pinned_keys_only() {
        let key = ScannerKey::from_base64(KEY_A).unwrap();
        let cache = ScannerKeyCache::pinned(vec![key.public_key()]);
        assert!(cache.get().is_none());
        assert!(cache.store(key.clone()).unwrap().same_key(&key));
        assert!(cache.get().unwrap().same_key(&key));
        cache.clear();
        assert!(cache.get().is_none());

        let expired = ScannerKeyCache::new(vec![key.public_key()], Duration::ZERO);
        expired.store(key).unwrap();
        assert!(expired.get().is_none());
    }

    #[test]
    fn only_a_pinned_scanner_key_is_accepted() {
        let a = ScannerKey::from_base64(KEY_A).unwrap();
        let b = other_key();
        let c = other_key();
        // Either key of the list: a rotation is a configuration push.
        let pinned = [a.public_key(), b.public_key()];
        check_pinned_key(&a, &pinned).unwrap();
        check_pinned_key(&b, &pinned).unwrap();
        match check_pinned_key(&c, &pinned) {
            Err(ScannerError::UnpinnedKey { served }) => assert_eq!(served, c.to_base64()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_pinned_key(&a, &[]),
            Err(ScannerError::NoPinnedKeys)
        ));
        assert_eq!(
            ScannerError::UnpinnedKey {
                served: c.to_base64()
            }
            .code(),
            "scanner_key_unpinned"
        );
        assert_eq!(
            ScannerError::NoPinnedKeys.code(),
            "scanner_keys_not_configured"
        );

        // An unpinned key is not cached, and it evicts the key cached before.
        let cache = ScannerKeyCache::pinned(pinned.to_vec());
        cache.store(a.clone()).unwrap();
        assert!(matches!(
            cache.store(c),
            Err(ScannerError::UnpinnedKey { .. })
        ));
        assert!(cache.get().is_none());
        let empty = ScannerKeyCache::pinned(Vec::new());
        assert!(matches!(empty.store(a), Err(ScannerError::NoPinnedKeys)));
        assert!(empty.get().is_none());
    }

    #[test]
    fn a_clean_answer_is_verified_and_decrypted_locally() {
        let file = sdk_file();
        let mut out = Vec::new();
        let n = decrypt_scanned(&file, Cursor::new(SDK_CIPHERTEXT), 1024, &mut out).unwrap();
        assert_eq!(n, SDK_PLAINTEXT.len() as u64);
        assert_eq!(out, SDK_PLAINTEXT);

        // A scanner (or front) that alters or truncates the ciphertext is caught here.
        let mut tampered = SDK_CIPHERTEXT.to_vec();
        tampered[3] ^= 1;
        let mut truncated = SDK_CIPHERTEXT.to_vec();
        truncated.pop();
        for bad in [tampered, truncated] {
            let mut out = Vec::new();
            let result = decrypt_scanned(&file, Cursor::new(&bad[..]), 1024, &mut out);
            assert!(
                matches!(
                    result,
                    Err(ScannerError::Attachment(AttachmentError::HashMismatch))
                ),
                "{result:?}"
            );
            assert!(out.is_empty(), "plaintext written before verification");
        }

        let mut out = Vec::new();
        let result = decrypt_scanned(&file, Cursor::new(SDK_CIPHERTEXT), 10, &mut out);
        assert!(matches!(
            result,
            Err(ScannerError::Attachment(AttachmentError::TooLarge {
                limit: 10
            }))
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn requests_use_the_scanner_paths_and_limits() {
        let request = public_key_request();
        assert_eq!(request.method, Method::GET);
        assert_eq!(
            request.path,
            ["_matrix", "media_proxy", "unstable", "public_key"]
        );
        assert!(request.access_token.is_none());

        let request = download_request(b"{}".to_vec(), 5000);
        assert_eq!(request.method, Method::POST);
        assert_eq!(
            request.path,
            ["_matrix", "media_proxy", "unstable", "download_encrypted"]
        );
        assert_eq!(request.max_body_bytes, Some(5000));
        assert_eq!(request.timeout, Some(DOWNLOAD_TIMEOUT));
        assert!(request.access_token.is_none());
    }

    #[test]
    fn no_grow_refuses_to_reallocate() {
        let mut buf = Vec::with_capacity(4);
        let mut writer = NoGrow(&mut buf);
        writer.write_all(b"abcd").unwrap();
        assert!(writer.write_all(b"e").is_err());
        assert_eq!(buf, b"abcd");
        assert_eq!(buf.capacity(), 4);
    }
}
