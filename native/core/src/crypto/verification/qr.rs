//! The QR code payload of `m.qr_code.show.v1` (spec § "QR codes" → "QR code format"), built
//! and parsed byte for byte as the specification lists it and matrix-sdk-qrcode encodes it:
//!
//! ```text
//! "MATRIX" | 0x02 | mode | u16 BE len | flow id (UTF-8) | key 1 (32) | key 2 (32) | secret
//! ```
//!
//! Modes and keys:
//! - `0x00` verifying another user: key 1 = the shower's master key, key 2 = what the shower
//!   thinks the other user's master key is;
//! - `0x01` self-verification, the showing device trusts the master key: key 1 = the master
//!   key, key 2 = what the shower thinks the other device's Ed25519 key is;
//! - `0x02` self-verification, the showing device does not yet trust the master key: key 1 =
//!   the shower's device Ed25519 key, key 2 = what the shower thinks the master key is.
//!
//! The secret is the rest of the segment (the format carries no length). We generate 16 random
//! bytes, as matrix-sdk does, and accept 8 to [`MAX_SECRET_LEN`] bytes: the specification
//! suggests about 8, and the upper bound is the only way to refuse bytes trailing a payload.
//! The secret lives in zeroizing memory, is compared in constant time and is never printed.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{VerificationError, random_fill};

/// The fixed header.
pub(crate) const HEADER: &[u8; 6] = b"MATRIX";
/// The only payload version.
pub(crate) const VERSION: u8 = 0x02;
/// The shortest secret accepted (matrix-sdk-qrcode `MIN_SECRET_LEN`).
pub(crate) const MIN_SECRET_LEN: usize = 8;
/// The longest secret accepted: anything longer is treated as trailing garbage.
pub(crate) const MAX_SECRET_LEN: usize = 64;
/// The length of the secrets we generate (matrix-sdk `SECRET_SIZE`).
pub(crate) const SECRET_LEN: usize = 16;

/// The verification mode byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QrMode {
    /// `0x00`: verifying another user with cross-signing.
    OtherUser,
    /// `0x01`: self-verification, the showing device trusts the master key.
    SelfTrusted,
    /// `0x02`: self-verification, the showing device does not yet trust the master key.
    SelfUntrusted,
}

impl QrMode {
    /// The wire byte.
    pub(crate) fn byte(self) -> u8 {
        match self {
            Self::OtherUser => 0x00,
            Self::SelfTrusted => 0x01,
            Self::SelfUntrusted => 0x02,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x00 => Some(Self::OtherUser),
            0x01 => Some(Self::SelfTrusted),
            0x02 => Some(Self::SelfUntrusted),
            _ => None,
        }
    }
}

/// Why bytes are not a verification QR payload.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QrError {
    /// Shorter than its fields say.
    #[error("truncated payload ({len} bytes)")]
    Truncated {
        /// Length received.
        len: usize,
    },
    /// Does not start with `MATRIX`.
    #[error("not a Matrix QR code (header)")]
    Header,
    /// A version other than 2.
    #[error("unsupported QR code version {version}")]
    Version {
        /// The version byte.
        version: u8,
    },
    /// A mode other than 0, 1, 2.
    #[error("unknown QR code mode {mode}")]
    Mode {
        /// The mode byte.
        mode: u8,
    },
    /// The flow id is empty or not UTF-8.
    #[error("invalid flow id")]
    FlowId,
    /// A flow id longer than a u16 length can say (when building).
    #[error("flow id of {len} bytes is too long")]
    FlowIdTooLong {
        /// Its length.
        len: usize,
    },
    /// A secret shorter than 8 bytes, or longer than [`MAX_SECRET_LEN`] (trailing bytes).
    #[error("shared secret of {len} bytes (expected {MIN_SECRET_LEN} to {MAX_SECRET_LEN})")]
    SecretLength {
        /// Its length.
        len: usize,
    },
}

impl QrError {
    /// A stable snake_case code.
    #[cfg(test)]
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "truncated",
            Self::Header => "header",
            Self::Version { .. } => "version",
            Self::Mode { .. } => "mode",
            Self::FlowId => "flow_id",
            Self::FlowIdTooLong { .. } => "flow_id_too_long",
            Self::SecretLength { .. } => "secret_length",
        }
    }
}

/// A decoded (or to-be-encoded) QR payload.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct QrPayload {
    /// The mode.
    pub(crate) mode: QrMode,
    /// The transaction id or the request's event id.
    pub(crate) flow_id: String,
    /// Key 1 (see the module docs).
    pub(crate) key1: [u8; 32],
    /// Key 2 (see the module docs).
    pub(crate) key2: [u8; 32],
    /// The shared secret.
    pub(crate) secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for QrPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            mode,
            flow_id,
            key1: _,
            key2: _,
            secret: _,
        } = self;
        f.debug_struct("QrPayload")
            .field("mode", mode)
            .field("flow_id", flow_id)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl QrPayload {
    /// A payload with a fresh random secret of [`SECRET_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`VerificationError::Random`] if the generator fails.
    pub(crate) fn generate(
        mode: QrMode,
        flow_id: &str,
        key1: [u8; 32],
        key2: [u8; 32],
    ) -> Result<Self, VerificationError> {
        let mut secret = Zeroizing::new(vec![0u8; SECRET_LEN]);
        random_fill(&mut secret)?;
        Ok(Self {
            mode,
            flow_id: flow_id.to_owned(),
            key1,
            key2,
            secret,
        })
    }

    /// The bytes to put in the QR code (one byte-mode segment).
    ///
    /// # Errors
    ///
    /// [`QrError::FlowIdTooLong`], [`QrError::FlowId`] (empty) or [`QrError::SecretLength`].
    pub(crate) fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, QrError> {
        let len = self.flow_id.len();
        let len16 = u16::try_from(len).map_err(|_| QrError::FlowIdTooLong { len })?;
        if len == 0 {
            return Err(QrError::FlowId);
        }
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&self.secret.len()) {
            return Err(QrError::SecretLength {
                len: self.secret.len(),
            });
        }
        let mut out = Zeroizing::new(Vec::with_capacity(8 + 2 + len + 64 + self.secret.len()));
        out.extend_from_slice(HEADER);
        out.push(VERSION);
        out.push(self.mode.byte());
        out.extend_from_slice(&len16.to_be_bytes());
        out.extend_from_slice(self.flow_id.as_bytes());
        out.extend_from_slice(&self.key1);
        out.extend_from_slice(&self.key2);
        out.extend_from_slice(&self.secret);
        Ok(out)
    }

    /// Parses scanned bytes, strictly.
    ///
    /// # Errors
    ///
    /// A [`QrError`] for each way the bytes differ from the format.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, QrError> {
        let truncated = QrError::Truncated { len: bytes.len() };
        let (header, rest) = bytes.split_first_chunk::<6>().ok_or(truncated.clone())?;
        if header != HEADER {
            return Err(QrError::Header);
        }
        let (&[version, mode], rest) = rest.split_first_chunk::<2>().ok_or(truncated.clone())?;
        if version != VERSION {
            return Err(QrError::Version { version });
        }
        let mode = QrMode::from_byte(mode).ok_or(QrError::Mode { mode })?;
        let (len, rest) = rest.split_first_chunk::<2>().ok_or(truncated.clone())?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len == 0 {
            return Err(QrError::FlowId);
        }
        let (flow_id, rest) = rest.split_at_checked(len).ok_or(truncated.clone())?;
        let flow_id = std::str::from_utf8(flow_id).map_err(|_| QrError::FlowId)?;
        let (key1, rest) = rest.split_first_chunk::<32>().ok_or(truncated.clone())?;
        let (key2, secret) = rest.split_first_chunk::<32>().ok_or(truncated)?;
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) {
            return Err(QrError::SecretLength { len: secret.len() });
        }
        Ok(Self {
            mode,
            flow_id: flow_id.to_owned(),
            key1: *key1,
            key2: *key2,
            secret: Zeroizing::new(secret.to_vec()),
        })
    }

    /// Whether `secret` is this payload's secret, in constant time (the length is public).
    pub(crate) fn secret_matches(&self, secret: &[u8]) -> bool {
        self.secret.len() == secret.len() && bool::from(self.secret.as_slice().ct_eq(secret))
    }
}
