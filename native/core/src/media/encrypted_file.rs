//! The Matrix `EncryptedFile` object (client-server API v1.11, "Extensions to
//! `m.room.message` msgtypes") and its strict validation.
//!
//! [`EncryptedFile`] is the wire form, as found in the `file` (or `info.thumbnail_file`) of a
//! decrypted `m.file` / `m.image` event: strings, as the peer sent them. Nothing may read key
//! material from it directly: [`EncryptedFile::validate`] turns it into a [`ValidatedFile`]
//! (a 32-byte key, a 16-byte IV, a 32-byte SHA-256 and a well-formed [`MxcUri`]) or refuses it
//! with a typed [`AttachmentError::Malformed`] that names the field, never its value.
//!
//! Accepted encodings: `k`, `iv` and `hashes.sha256` in the standard or the URL-safe base64
//! alphabet (one alphabet per string), padded or not, canonical (unused trailing bits zero).
//! What we produce is what the spec says: `k` unpadded base64url (JWK), `iv` and the hash
//! unpadded standard base64. Unknown fields are ignored on input (the format is extensible)
//! and not reproduced on output.
//!
//! Stricter than the letter of some clients, as the spec and the content scanner are:
//! `v` must be `"v2"` (v1 is refused), `key.ext` must be `true` and `key.key_ops` must contain
//! both `"encrypt"` and `"decrypt"`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::AttachmentError;

/// Length of an attachment key (AES-256), in bytes.
pub(crate) const KEY_LEN: usize = 32;
/// Length of the IV (the initial 128-bit counter block), in bytes.
pub(crate) const IV_LEN: usize = 16;
/// Length of a SHA-256 digest, in bytes.
pub(crate) const SHA256_LEN: usize = 32;

/// The only `v` we accept and produce.
pub const VERSION: &str = "v2";
/// The only `key.alg`: AES-256 in counter mode.
pub const ALGORITHM: &str = "A256CTR";
/// The only `key.kty`: a symmetric ("octet sequence") key.
pub const KEY_TYPE: &str = "oct";
/// Longest server name of an `mxc://` URI (the spec's limit for server names).
pub const MAX_SERVER_NAME_LEN: usize = 255;
/// Longest media id of an `mxc://` URI we accept (Synapse makes 24 characters).
pub const MAX_MEDIA_ID_LEN: usize = 255;

const MXC_SCHEME: &str = "mxc://";

/// Decoding accepts both paddings; trailing bits must be zero (canonical encodings only).
const DECODE_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PADDING: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, DECODE_CONFIG);
const URL_SAFE_ANY_PADDING: GeneralPurpose =
    GeneralPurpose::new(&alphabet::URL_SAFE, DECODE_CONFIG);

/// An encrypted attachment as described in an event (the wire form, not yet trusted).
///
/// Build one with [`super::EncryptedAttachment::into_encrypted_file`] when sending; call
/// [`EncryptedFile::validate`] on one received before using it. `Debug` never shows the key
/// or the IV.
#[derive(Clone, Serialize, Deserialize)]
pub struct EncryptedFile {
    /// The `mxc://` URI of the ciphertext on the homeserver.
    pub url: String,
    /// The AES key, as a JSON Web Key.
    pub key: JsonWebKey,
    /// The initial counter block, unpadded base64 (16 bytes).
    pub iv: String,
    /// Digests of the ciphertext by algorithm name; `sha256` is required.
    pub hashes: BTreeMap<String, String>,
    /// Version of the format: `"v2"`.
    pub v: String,
}

/// The symmetric key of an [`EncryptedFile`], in JSON Web Key form (RFC 7517).
///
/// `k` is key material: it lives in a zeroizing string and `Debug` redacts it.
#[derive(Clone, Serialize, Deserialize)]
pub struct JsonWebKey {
    /// Key type: `"oct"`.
    pub kty: String,
    /// Permitted operations: must contain `"encrypt"` and `"decrypt"`.
    pub key_ops: Vec<String>,
    /// Algorithm: `"A256CTR"`.
    pub alg: String,
    /// The key, unpadded base64url (32 bytes). Secret.
    #[serde(with = "zeroizing_string")]
    pub k: Zeroizing<String>,
    /// WebCrypto's "extractable": must be `true`.
    pub ext: bool,
}

impl EncryptedFile {
    /// Reads an `EncryptedFile` from the JSON of an event (e.g. its `content.file`).
    ///
    /// Any shape error is `Malformed { what: "encrypted file" }`: serde's message is dropped,
    /// because it can quote a value (the key).
    pub fn from_json(value: serde_json::Value) -> Result<Self, AttachmentError> {
        serde_json::from_value(value).map_err(|_| AttachmentError::Malformed {
            what: "encrypted file: not an EncryptedFile object",
        })
    }

    /// Checks every field of a received file and decodes its key, IV and hash.
    ///
    /// The only way to a [`ValidatedFile`], hence to the ciphertext checks and decryption: a
    /// file with an unknown version or algorithm, a key or IV of the wrong length or a
    /// malformed `mxc://` URI is refused here with a typed error, whatever a peer or the
    /// server sends (never a panic).
    pub fn validate(&self) -> Result<ValidatedFile, AttachmentError> {
        let Self {
            url,
            key,
            iv,
            hashes,
            v,
        } = self;
        if v != VERSION {
            return Err(malformed("v: not \"v2\""));
        }
        let JsonWebKey {
            kty,
            key_ops,
            alg,
            k,
            ext,
        } = key;
        if kty != KEY_TYPE {
            return Err(malformed("key.kty: not \"oct\""));
        }
        if alg != ALGORITHM {
            return Err(malformed("key.alg: not \"A256CTR\""));
        }
        if !*ext {
            return Err(malformed("key.ext: not true"));
        }
        let has = |op: &str| key_ops.iter().any(|o| o == op);
        if !has("encrypt") || !has("decrypt") {
            return Err(malformed(
                "key.key_ops: must contain \"encrypt\" and \"decrypt\"",
            ));
        }
        let mut key = AttachmentKey::zeroed();
        decode_base64_exact(k, key.bytes_mut(), "key.k: not base64 of 32 bytes")?;
        let mut iv_bytes = [0u8; IV_LEN];
        decode_base64_exact(iv, &mut iv_bytes, "iv: not base64 of 16 bytes")?;
        let sha256_b64 = hashes
            .get("sha256")
            .ok_or(malformed("hashes.sha256: missing"))?;
        let mut sha256 = [0u8; SHA256_LEN];
        decode_base64_exact(
            sha256_b64,
            &mut sha256,
            "hashes.sha256: not base64 of 32 bytes",
        )?;
        let url = MxcUri::parse(url)?;
        Ok(ValidatedFile {
            url,
            key,
            iv: iv_bytes,
            sha256,
        })
    }

    /// The canonical wire form of validated or freshly generated parts.
    pub(crate) fn from_parts(
        url: &MxcUri,
        key: &AttachmentKey,
        iv: &[u8; IV_LEN],
        sha256: &[u8; SHA256_LEN],
    ) -> Self {
        let mut hashes = BTreeMap::new();
        hashes.insert("sha256".to_owned(), STANDARD_NO_PAD.encode(sha256));
        Self {
            url: url.to_string(),
            key: JsonWebKey {
                kty: KEY_TYPE.to_owned(),
                key_ops: vec!["encrypt".to_owned(), "decrypt".to_owned()],
                alg: ALGORITHM.to_owned(),
                k: key.to_base64url(),
                ext: true,
            },
            iv: STANDARD_NO_PAD.encode(iv),
            hashes,
            v: VERSION.to_owned(),
        }
    }
}

impl fmt::Debug for EncryptedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            url,
            key,
            iv: _,
            hashes,
            v,
        } = self;
        f.debug_struct("EncryptedFile")
            .field("url", url)
            .field("key", key)
            .field("iv", &"<redacted>")
            .field("hashes", hashes)
            .field("v", v)
            .finish()
    }
}

impl fmt::Debug for JsonWebKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            kty,
            key_ops,
            alg,
            k: _,
            ext,
        } = self;
        f.debug_struct("JsonWebKey")
            .field("kty", kty)
            .field("key_ops", key_ops)
            .field("alg", alg)
            .field("k", &"<redacted>")
            .field("ext", ext)
            .finish()
    }
}

/// A received [`EncryptedFile`] whose every field was checked and decoded.
///
/// Holds the key (zeroized on drop) for [`super::verify_ciphertext`]; not `Clone`, so the key
/// exists once. `Debug` shows the URI only.
pub struct ValidatedFile {
    url: MxcUri,
    key: AttachmentKey,
    iv: [u8; IV_LEN],
    sha256: [u8; SHA256_LEN],
}

impl ValidatedFile {
    /// Where the ciphertext is stored.
    pub fn url(&self) -> &MxcUri {
        &self.url
    }

    /// The announced SHA-256 of the ciphertext (public: it is in the event).
    pub fn sha256(&self) -> &[u8; SHA256_LEN] {
        &self.sha256
    }

    /// The canonical wire form of this file (unpadded encodings, known fields only): what to
    /// forward to the content scanner, so that it checks exactly what we will check.
    pub fn to_encrypted_file(&self) -> EncryptedFile {
        EncryptedFile::from_parts(&self.url, &self.key, &self.iv, &self.sha256)
    }

    pub(crate) fn key(&self) -> &AttachmentKey {
        &self.key
    }

    pub(crate) fn iv(&self) -> &[u8; IV_LEN] {
        &self.iv
    }
}

impl fmt::Debug for ValidatedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            url,
            key: _,
            iv: _,
            sha256: _,
        } = self;
        f.debug_struct("ValidatedFile")
            .field("url", &url.to_string())
            .finish_non_exhaustive()
    }
}

/// A well-formed `mxc://<server-name>/<media-id>` URI.
///
/// Server name as in the spec's appendix (a DNS name, an IPv4 address or a bracketed IPv6
/// address, an optional port of 1–5 digits up to 65535; at most 255 characters, no empty DNS
/// label, so no `..`); media id of 1–255 characters from `[A-Za-z0-9_-]`; exactly one `/`
/// after the server name. Such a URI cannot escape a directory or a URL path when used to
/// build one, and cannot be confused with another.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MxcUri {
    server_name: String,
    media_id: String,
}

impl MxcUri {
    /// Parses and checks a URI from a peer or the server.
    pub fn parse(uri: &str) -> Result<Self, AttachmentError> {
        let rest = uri
            .strip_prefix(MXC_SCHEME)
            .ok_or(malformed("url: not an mxc:// URI"))?;
        let (server_name, media_id) = rest.split_once('/').ok_or(malformed("url: no media id"))?;
        if !is_valid_server_name(server_name) {
            return Err(malformed("url: invalid server name"));
        }
        if media_id.is_empty()
            || media_id.len() > MAX_MEDIA_ID_LEN
            || !media_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(malformed("url: invalid media id"));
        }
        Ok(Self {
            server_name: server_name.to_owned(),
            media_id: media_id.to_owned(),
        })
    }

    /// The server name (with its port, if any).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The media id.
    pub fn media_id(&self) -> &str {
        &self.media_id
    }
}

impl fmt::Display for MxcUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MXC_SCHEME}{}/{}", self.server_name, self.media_id)
    }
}

impl fmt::Debug for MxcUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MxcUri({self})")
    }
}

/// The spec's `server_name = hostname [ ":" port ]`, with no empty DNS label.
fn is_valid_server_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_SERVER_NAME_LEN {
        return false;
    }
    let (host_ok, port) = if let Some(bracketed) = name.strip_prefix('[') {
        let Some((ipv6, after)) = bracketed.split_once(']') else {
            return false;
        };
        let host_ok = (2..=45).contains(&ipv6.len())
            && ipv6.contains(':')
            && ipv6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        (host_ok, port)
    } else {
        let (host, port) = match name.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (name, None),
        };
        let host_ok = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.split('.').any(str::is_empty);
        (host_ok, port)
    };
    let port_ok = match port {
        None => true,
        Some(port) => {
            (1..=5).contains(&port.len())
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u32>().is_ok_and(|p| p <= 65_535)
        }
    };
    host_ok && port_ok
}

/// Decodes `input` (either base64 alphabet, either padding) into exactly `out.len()` bytes.
///
/// The input is length-checked before decoding and decoded into a zeroizing buffer with room
/// enough that it never reallocates (no stray copy of a key).
fn decode_base64_exact(
    input: &str,
    out: &mut [u8],
    what: &'static str,
) -> Result<(), AttachmentError> {
    let max_encoded = out.len().div_ceil(3) * 4;
    if input.len() > max_encoded {
        return Err(malformed(what));
    }
    let engine = if input.bytes().any(|b| b == b'-' || b == b'_') {
        &URL_SAFE_ANY_PADDING
    } else {
        &STANDARD_ANY_PADDING
    };
    let mut decoded = Zeroizing::new(Vec::with_capacity(out.len() + 4));
    engine
        .decode_vec(input, &mut decoded)
        .map_err(|_| malformed(what))?;
    if decoded.len() != out.len() {
        return Err(malformed(what));
    }
    out.copy_from_slice(&decoded);
    Ok(())
}

fn malformed(what: &'static str) -> AttachmentError {
    AttachmentError::Malformed { what }
}

/// An AES-256 attachment key: boxed (moves do not copy it), zeroized on drop, `Debug`
/// redacted.
pub(crate) struct AttachmentKey(Box<[u8; KEY_LEN]>);

impl AttachmentKey {
    fn zeroed() -> Self {
        Self(Box::new([0u8; KEY_LEN]))
    }

    /// A fresh key from the system's CSPRNG.
    pub(crate) fn random(rng: &dyn SecureRandom) -> Result<Self, AttachmentError> {
        let mut key = Self::zeroed();
        rng.fill(key.bytes_mut())
            .map_err(|_| AttachmentError::Random)?;
        Ok(key)
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn bytes_mut(&mut self) -> &mut [u8; KEY_LEN] {
        &mut self.0
    }

    /// `k` of the JWK: unpadded base64url, encoded through a zeroized buffer (base64's
    /// `encode_string` goes through a stack buffer it does not wipe).
    fn to_base64url(&self) -> Zeroizing<String> {
        const ENCODED_LEN: usize = KEY_LEN.div_ceil(3) * 4;
        let mut encoded = Zeroizing::new([0u8; ENCODED_LEN]);
        let mut k = Zeroizing::new(String::with_capacity(ENCODED_LEN));
        // 32 bytes always fit in 44 characters: the error branch cannot be taken, and would
        // produce an empty `k` that every receiver refuses rather than a wrong key.
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.bytes(), &mut encoded[..])
            .unwrap_or(0);
        for &b in encoded.iter().take(written) {
            k.push(char::from(b));
        }
        k
    }
}

impl Drop for AttachmentKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for AttachmentKey {}

impl fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(_) = self;
        f.write_str("AttachmentKey(<redacted>)")
    }
}

/// Serde for a secret string: straight into (and out of) a [`Zeroizing`] buffer.
mod zeroizing_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub(super) fn serialize<S: Serializer>(
        value: &Zeroizing<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Zeroizing<String>, D::Error> {
        String::deserialize(deserializer).map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests;
