//! End-to-end encryption (DESIGN §5): vodozemac Olm and Megolm, device tracking with TOFU
//! pinning, and the checks matrix-sdk-crypto learned the hard way, plus a replay check it does
//! not have.
//!
//! The layer is sans-IO: [`engine::Engine`] holds our Olm account and works on a database
//! connection (always the transaction of the operation in progress); the client does the
//! network requests and decides when to commit. Every failed check is a typed
//! [`CryptoError`] and, where it reveals an attack or a fault of a peer, a security event —
//! never a silent drop.

pub(crate) mod account;
pub mod canonical_json;
pub(crate) mod cross_signing;
pub(crate) mod devices;
pub(crate) mod engine;
pub(crate) mod megolm;
pub(crate) mod olm;
pub mod signing;
#[cfg(test)]
mod tests;
pub(crate) mod verification;

use crate::store::StoreError;

pub use account::OLM_ALGORITHM;

/// A failure of the end-to-end encryption layer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A stored pickle does not decrypt with the vault's pickle key.
    #[error("stored {what} pickle does not decrypt")]
    Pickle {
        /// Which pickle.
        what: &'static str,
    },
    /// Signing or verifying a JSON object failed.
    #[error("signature: {0}")]
    Signing(#[from] signing::SigningError),
    /// The local store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A key or message from a peer is not well-formed.
    #[error("malformed {what}")]
    Malformed {
        /// What was malformed.
        what: &'static str,
    },
    /// No Olm session with this peer decrypts the message.
    #[error("no Olm session decrypts the message from {sender_key}")]
    OlmDecrypt {
        /// The peer's Curve25519 key.
        sender_key: String,
    },
    /// A pre-key message of an Olm session we already hold, which that session no longer
    /// decrypts: a replay. Refused; the session is left as it was.
    #[error("replayed Olm pre-key message from {sender_key}: refused, the session is unchanged")]
    OlmReplay {
        /// The peer's Curve25519 key.
        sender_key: String,
    },
    /// The decrypted Olm payload is not addressed to us or not from whom it claims.
    #[error("Olm payload rejected: {reason}")]
    OlmPayload {
        /// Which check failed.
        reason: &'static str,
    },
    /// A to-device message from a device we do not know (or that its owner does not list).
    #[error("to-device message from an unknown device ({sender_key})")]
    UnknownDevice {
        /// The peer's Curve25519 key.
        sender_key: String,
    },
    /// The device is blocked (its key changed after we pinned it).
    #[error("device {user_id} {device_id} is blocked")]
    BlockedDevice {
        /// Owner.
        user_id: String,
        /// Device.
        device_id: String,
    },
    /// No inbound group session for this message (yet): kept until the key arrives.
    #[error("no room key for Megolm session {session_id}")]
    UnknownSession {
        /// Megolm session id.
        session_id: String,
    },
    /// The Megolm ciphertext does not decrypt (bad MAC, unknown index, bad encoding).
    #[error("Megolm decryption failed: {detail}")]
    MegolmDecrypt {
        /// vodozemac's reason.
        detail: String,
    },
    /// The room id inside the plaintext is not the room the event arrived in.
    #[error("room id mismatch: event in {expected}, plaintext says {found}")]
    RoomIdMismatch {
        /// The room the event came from.
        expected: String,
        /// The room id in the plaintext.
        found: String,
    },
    /// The event's sender is not the owner of the device the room key came from.
    #[error("sender mismatch: event sent by {claimed}, room key from {owner}")]
    SenderMismatch {
        /// `sender` of the event.
        claimed: String,
        /// User whose verified device sent us the room key.
        owner: String,
    },
    /// A Megolm message index already used by another event: a replay.
    #[error(
        "replayed Megolm message index {index} of session {session_id} (first seen in {first_event_id})"
    )]
    Replay {
        /// Megolm session id.
        session_id: String,
        /// The message index.
        index: u32,
        /// The event that used it first.
        first_event_id: String,
    },
    /// Sending into a room without `m.room.encryption` is refused.
    #[error("room {room_id} is not encrypted: refusing to send")]
    UnencryptedRoom {
        /// The room.
        room_id: String,
    },
}

impl CryptoError {
    /// As a store error, for code running inside a store transaction: a store failure stays
    /// itself; anything else aborts the transaction as corrupt state.
    pub(crate) fn into_store_error(self) -> StoreError {
        match self {
            Self::Store(s) => s,
            other => StoreError::Corrupt {
                detail: format!("crypto: {other}"),
            },
        }
    }

    /// A stable snake_case code (CLI, JNI, security journal).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Pickle { .. } => "pickle",
            Self::Signing(_) => "signature",
            Self::Store(_) => "store",
            Self::Malformed { .. } => "malformed",
            Self::OlmDecrypt { .. } => "olm_decrypt",
            Self::OlmReplay { .. } => "olm_replay",
            Self::OlmPayload { .. } => "olm_payload",
            Self::UnknownDevice { .. } => "unknown_device",
            Self::BlockedDevice { .. } => "blocked_device",
            Self::UnknownSession { .. } => "unknown_session",
            Self::MegolmDecrypt { .. } => "megolm_decrypt",
            Self::RoomIdMismatch { .. } => "room_id_mismatch",
            Self::SenderMismatch { .. } => "sender_mismatch",
            Self::Replay { .. } => "replay",
            Self::UnencryptedRoom { .. } => "unencrypted_room",
        }
    }
}
