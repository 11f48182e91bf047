//! Interactive key verification (Matrix client-server API v1.12, § "Key verification
//! framework", § "Short Authentication String (SAS) verification", § "QR codes"), sans-IO.
//!
//! [`Verification`] is one verification flow, from the request to `done` or `cancel`. It
//! consumes event contents (`serde_json::Value`) the client received and queues the contents
//! the client must send ([`Verification::drain_outgoing`]); it never does I/O, never reads the
//! clock (every call takes `now_ms`) and never touches the database: the client looks up the
//! keys ([`OwnKeys`], [`PeerIdentity`]) and, once the flow is done, marks the
//! [`VerifiedKeys`] as verified and uploads the signatures.
//!
//! Every formula is the specification's, checked against matrix-rust-sdk 0.18
//! (`matrix-sdk-crypto/src/verification/`), the peer of our interoperability tests:
//! - the SAS commitment is `unpadded_base64(sha256(their_key_base64 ‖ canonical_json(start)))`,
//!   over the `m.key.verification.start` content exactly as sent (with its `transaction_id` or
//!   `m.relates_to`) — [`sas::commitment`];
//! - the SAS HKDF info is `MATRIX_KEY_VERIFICATION_SAS|user|device|key|user|device|key|flow`,
//!   the side that sent the start first — [`sas::sas_info`];
//! - the MAC info is `MATRIX_KEY_VERIFICATION_MAC` ‖ sender user ‖ sender device ‖ receiver user
//!   ‖ receiver device ‖ flow id ‖ key id (or `KEY_IDS`), MAC method `hkdf-hmac-sha256.v2`
//!   only — [`sas::mac_info`];
//! - the QR payload is `MATRIX` ‖ `0x02` ‖ mode ‖ u16 BE length ‖ flow id ‖ key 1 ‖ key 2 ‖
//!   secret — [`qr::QrPayload`].
//!
//! Failures are typed ([`VerificationError`]). A fault of the peer (out-of-order or malformed
//! message, bad MAC, mismatched commitment…) cancels the flow with the matching code and queues
//! the `m.key.verification.cancel`; a caller mistake (acting in the wrong state) or a message
//! that may not belong to this flow at all (another flow id, another user, another device of
//! the peer) is refused without touching the flow, so that a third party cannot abort it.
//!
//! Timeouts match matrix-sdk: a flow expires 10 minutes after the request; once SAS has
//! started it also expires 5 minutes after the SAS start and 1 minute after the last event
//! from the peer ([`Verification::expire`]).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use serde_json::{Map, Value, json};
use vodozemac::Ed25519PublicKey;

pub(crate) mod emoji;
pub(crate) mod qr;
mod request;
pub(crate) mod sas;
#[cfg(test)]
mod tests;

pub(crate) use request::Verification;

/// `m.key.verification.request` (to-device request).
pub(crate) const REQUEST_EVENT: &str = "m.key.verification.request";
/// `m.key.verification.ready`.
pub(crate) const READY_EVENT: &str = "m.key.verification.ready";
/// `m.key.verification.start`.
pub(crate) const START_EVENT: &str = "m.key.verification.start";
/// `m.key.verification.accept`.
pub(crate) const ACCEPT_EVENT: &str = "m.key.verification.accept";
/// `m.key.verification.key`.
pub(crate) const KEY_EVENT: &str = "m.key.verification.key";
/// `m.key.verification.mac`.
pub(crate) const MAC_EVENT: &str = "m.key.verification.mac";
/// `m.key.verification.done`.
pub(crate) const DONE_EVENT: &str = "m.key.verification.done";
/// `m.key.verification.cancel`.
pub(crate) const CANCEL_EVENT: &str = "m.key.verification.cancel";
/// `m.room.message`, the type of an in-room request (`msgtype: m.key.verification.request`).
pub(crate) const ROOM_MESSAGE_EVENT: &str = "m.room.message";

/// Requests older than this (timestamp or `origin_server_ts`) are ignored (spec: 10 minutes).
pub(crate) const MAX_REQUEST_AGE_MS: u64 = 10 * 60 * 1000;
/// Requests further in the future than this are ignored (spec: 5 minutes).
pub(crate) const MAX_REQUEST_FUTURE_MS: u64 = 5 * 60 * 1000;
/// A flow times out this long after its request (matrix-sdk `VERIFICATION_TIMEOUT`).
pub(crate) const FLOW_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// A SAS times out this long after its start (matrix-sdk `MAX_AGE`).
pub(crate) const SAS_MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// A SAS times out after this long without an event from the peer (matrix-sdk
/// `MAX_EVENT_TIMEOUT`).
pub(crate) const SAS_EVENT_TIMEOUT_MS: u64 = 60 * 1000;

/// A verification method, as advertised in `methods` of request and ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Method {
    /// `m.sas.v1`: emoji or decimal short authentication string.
    SasV1,
    /// `m.qr_code.show.v1`: this device can show a QR code.
    QrShowV1,
    /// `m.qr_code.scan.v1`: this device can scan a QR code.
    QrScanV1,
    /// `m.reciprocate.v1`: the start sent after scanning a QR code.
    ReciprocateV1,
}

impl Method {
    /// Every method we implement, in the order we advertise them.
    pub(crate) const ALL: [Method; 4] = [
        Method::SasV1,
        Method::QrShowV1,
        Method::QrScanV1,
        Method::ReciprocateV1,
    ];

    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::SasV1 => "m.sas.v1",
            Self::QrShowV1 => "m.qr_code.show.v1",
            Self::QrScanV1 => "m.qr_code.scan.v1",
            Self::ReciprocateV1 => "m.reciprocate.v1",
        }
    }

    /// The method of a wire name, `None` for one we do not implement.
    pub(crate) fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// The id of a verification flow, and where its messages travel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum FlowId {
    /// To-device messages sharing a `transaction_id` (verifying our own devices).
    ToDevice {
        /// The request's `transaction_id`.
        transaction_id: String,
    },
    /// Events in a (direct message) room, related to the request event by `m.reference`.
    InRoom {
        /// The room.
        room_id: String,
        /// The event id of the `m.room.message` request.
        request_event_id: String,
    },
}

impl FlowId {
    /// The flow id of the MAC and SAS info strings: the transaction id, or the request's event
    /// id in a room.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::ToDevice { transaction_id } => transaction_id,
            Self::InRoom {
                request_event_id, ..
            } => request_event_id,
        }
    }

    /// Adds the flow id to an outgoing content: `transaction_id`, or `m.relates_to`.
    fn stamp(&self, mut content: Map<String, Value>) -> Value {
        match self {
            Self::ToDevice { transaction_id } => {
                content.insert("transaction_id".into(), json!(transaction_id));
            }
            Self::InRoom {
                request_event_id, ..
            } => {
                content.insert(
                    "m.relates_to".into(),
                    json!({ "rel_type": "m.reference", "event_id": request_event_id }),
                );
            }
        }
        Value::Object(content)
    }

    /// The flow id an incoming content names, if any.
    fn found_in(&self, content: &Value) -> Option<String> {
        match self {
            Self::ToDevice { .. } => content
                .get("transaction_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            Self::InRoom { .. } => {
                let relates = content.get("m.relates_to")?;
                if relates.get("rel_type").and_then(Value::as_str) != Some("m.reference") {
                    return None;
                }
                relates
                    .get("event_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }
        }
    }

    /// Checks that an incoming content belongs to this flow.
    ///
    /// # Errors
    ///
    /// [`VerificationError::WrongFlow`] if it names another flow or none.
    fn check(&self, content: &Value) -> Result<(), VerificationError> {
        match self.found_in(content) {
            Some(found) if found == self.as_str() => Ok(()),
            found => Err(VerificationError::WrongFlow {
                expected: self.as_str().to_owned(),
                found,
            }),
        }
    }
}

/// A cancel code (spec § "m.key.verification.cancel" and § "Verification messages specific to
/// SAS").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CancelCode {
    /// `m.user`: the user cancelled.
    User,
    /// `m.timeout`: the flow timed out.
    Timeout,
    /// `m.unknown_transaction`: the flow id is unknown.
    UnknownTransaction,
    /// `m.unknown_method`: no common method (or key agreement, hash, MAC, SAS type).
    UnknownMethod,
    /// `m.unexpected_message`: a message out of order.
    UnexpectedMessage,
    /// `m.key_mismatch`: a key (or MAC, or QR secret) did not verify.
    KeyMismatch,
    /// `m.user_mismatch`: the expected user did not match.
    UserMismatch,
    /// `m.invalid_message`: a malformed message.
    InvalidMessage,
    /// `m.accepted`: another device accepted the request.
    Accepted,
    /// `m.mismatched_commitment`: the SAS hash commitment did not match.
    MismatchedCommitment,
    /// `m.mismatched_sas`: the users said the SAS did not match.
    MismatchedSas,
    /// A code we do not know, as the peer sent it.
    Other(String),
}

impl CancelCode {
    /// The wire code.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::User => "m.user",
            Self::Timeout => "m.timeout",
            Self::UnknownTransaction => "m.unknown_transaction",
            Self::UnknownMethod => "m.unknown_method",
            Self::UnexpectedMessage => "m.unexpected_message",
            Self::KeyMismatch => "m.key_mismatch",
            Self::UserMismatch => "m.user_mismatch",
            Self::InvalidMessage => "m.invalid_message",
            Self::Accepted => "m.accepted",
            Self::MismatchedCommitment => "m.mismatched_commitment",
            Self::MismatchedSas => "m.mismatched_sas",
            Self::Other(code) => code,
        }
    }

    /// The code of a wire string.
    pub(crate) fn from_wire(code: &str) -> Self {
        match code {
            "m.user" => Self::User,
            "m.timeout" => Self::Timeout,
            "m.unknown_transaction" => Self::UnknownTransaction,
            "m.unknown_method" => Self::UnknownMethod,
            "m.unexpected_message" => Self::UnexpectedMessage,
            "m.key_mismatch" => Self::KeyMismatch,
            "m.user_mismatch" => Self::UserMismatch,
            "m.invalid_message" => Self::InvalidMessage,
            "m.accepted" => Self::Accepted,
            "m.mismatched_commitment" => Self::MismatchedCommitment,
            "m.mismatched_sas" => Self::MismatchedSas,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The human-readable `reason` we send with the code (matrix-sdk's wording).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::User => "The user cancelled the verification.",
            Self::Timeout => "The verification process timed out.",
            Self::UnknownTransaction => "The device does not know about the given transaction ID.",
            Self::UnknownMethod => "The device does not know how to handle the requested method.",
            Self::UnexpectedMessage => "The device received an unexpected message.",
            Self::KeyMismatch => "The expected key did not match the verified one",
            Self::UserMismatch => "The expected user did not match the verified user",
            Self::InvalidMessage => "The received message was invalid.",
            Self::Accepted => "A m.key.verification.request was accepted by a different device.",
            Self::MismatchedCommitment => "The hash commitment did not match.",
            Self::MismatchedSas => "The SAS did not match.",
            Self::Other(_) => "Unknown cancel reason",
        }
    }
}

impl fmt::Display for CancelCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A content for the client to send: to-device to the peer device (to-device flow), or as a
/// room event of type `event_type` (in-room flow).
#[derive(Clone, PartialEq)]
pub(crate) struct Outgoing {
    /// The event type (`m.key.verification.*`).
    pub(crate) event_type: &'static str,
    /// The content, flow id included.
    pub(crate) content: Value,
}

impl fmt::Debug for Outgoing {
    /// The event type and field names only: a reciprocate start carries the QR secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            event_type,
            content,
        } = self;
        let fields: Vec<&str> = content
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("Outgoing")
            .field("event_type", event_type)
            .field("fields", &fields)
            .finish()
    }
}

/// Our side of the flow: who we are and the keys we vouch for.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct OwnKeys {
    /// Our user id.
    pub(crate) user_id: String,
    /// Our device id.
    pub(crate) device_id: String,
    /// Our device's Ed25519 identity key.
    pub(crate) ed25519: Ed25519PublicKey,
    /// Our master cross-signing key as this device knows it, if any.
    pub(crate) master_key: Option<Ed25519PublicKey>,
    /// Whether this device trusts that master key (it is ours, signed by this device or
    /// verified). Only a trusted master key is MACed in SAS (as matrix-sdk does); it also picks
    /// QR mode 0x01 (trusted) or 0x02 (not yet trusted) for self-verification.
    pub(crate) master_key_trusted: bool,
}

impl fmt::Debug for OwnKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            user_id,
            device_id,
            ed25519: _,
            master_key,
            master_key_trusted,
        } = self;
        f.debug_struct("OwnKeys")
            .field("user_id", user_id)
            .field("device_id", device_id)
            .field("has_master_key", &master_key.is_some())
            .field("master_key_trusted", master_key_trusted)
            .finish_non_exhaustive()
    }
}

/// The other side as the client knows it: the user, the Ed25519 keys of their devices, their
/// master key. For self-verification, the user is our own and the master key ours.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PeerIdentity {
    /// The other user (our own for self-verification).
    pub(crate) user_id: String,
    /// Their devices' Ed25519 keys, by device id.
    pub(crate) devices: BTreeMap<String, Ed25519PublicKey>,
    /// Their master cross-signing key, if known.
    pub(crate) master_key: Option<Ed25519PublicKey>,
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            user_id,
            devices,
            master_key,
        } = self;
        f.debug_struct("PeerIdentity")
            .field("user_id", user_id)
            .field("devices", &devices.keys().collect::<Vec<_>>())
            .field("has_master_key", &master_key.is_some())
            .finish()
    }
}

/// A device whose Ed25519 key the flow verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedDevice {
    /// Owner.
    pub(crate) user_id: String,
    /// Device id.
    pub(crate) device_id: String,
    /// The verified Ed25519 key.
    pub(crate) ed25519: Ed25519PublicKey,
}

/// What a successful flow verified: exactly these keys, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedKeys {
    /// The peer's device key, if it was verified.
    pub(crate) device: Option<VerifiedDevice>,
    /// The peer user's master key, if it was verified.
    pub(crate) master_key: Option<(String, Ed25519PublicKey)>,
}

/// How a flow ended in cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CancelInfo {
    /// The code.
    pub(crate) code: CancelCode,
    /// The reason (ours, or the peer's as received).
    pub(crate) reason: String,
    /// Whether we cancelled (and sent the cancel) or the peer did.
    pub(crate) by_us: bool,
}

/// Why the flow refused an input or an action.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VerificationError {
    /// The content names another flow (or none): not ours, the flow is unchanged.
    #[error("content of another verification flow (expected {expected}, found {found:?})")]
    WrongFlow {
        /// Our flow id.
        expected: String,
        /// The flow id the content carries, if any.
        found: Option<String>,
    },
    /// The sender is not the user we verify with: ignored, the flow is unchanged.
    #[error("verification message from {found}, expected {expected}")]
    UserMismatch {
        /// The peer user.
        expected: String,
        /// The sender.
        found: String,
    },
    /// A device of the peer other than the one in the flow spoke: ignored.
    #[error("verification message from device {found}, expected {expected}")]
    DeviceMismatch {
        /// The device in the flow.
        expected: String,
        /// The device named in the content.
        found: String,
    },
    /// An in-room request addressed to another user: not ours.
    #[error("verification request addressed to {to}, not to us")]
    NotForUs {
        /// The `to` of the request.
        to: String,
    },
    /// An incoming request whose timestamp is too old or too far in the future: ignored, as the
    /// specification asks.
    #[error("verification request timestamp {timestamp_ms} out of range at {now_ms}")]
    StaleRequest {
        /// The request's timestamp.
        timestamp_ms: u64,
        /// Now.
        now_ms: u64,
    },
    /// A message this state does not expect: the flow is cancelled.
    #[error("unexpected {event_type} in state {state}")]
    UnexpectedMessage {
        /// Event type received.
        event_type: String,
        /// Our state.
        state: &'static str,
    },
    /// A malformed message: the flow is cancelled.
    #[error("invalid {event_type}: {field}")]
    InvalidMessage {
        /// Event type received.
        event_type: String,
        /// The field at fault.
        field: &'static str,
    },
    /// A method, key agreement protocol, hash, MAC or SAS type we do not support: cancelled.
    #[error("unknown or unsupported method {method}")]
    UnknownMethod {
        /// What was offered or chosen.
        method: String,
    },
    /// The peer's SAS key does not match its commitment: cancelled.
    #[error("the SAS key does not match the accept's commitment")]
    MismatchedCommitment,
    /// A MAC over a key does not verify: cancelled.
    #[error("MAC of {key_id} does not verify")]
    KeyMismatch {
        /// The key id (public).
        key_id: String,
    },
    /// The MAC over the list of key ids does not verify: cancelled.
    #[error("MAC of the key id list does not verify")]
    KeyIdsMismatch,
    /// The peer's MAC message covers no key we know: nothing verified, cancelled.
    #[error("the MAC message covers no key we know")]
    NoKeyVerified,
    /// A key in a scanned QR code differs from the one we expect: cancelled.
    #[error("scanned QR code: {which} does not match")]
    QrKeyMismatch {
        /// Which key (or the mode).
        which: &'static str,
    },
    /// The secret of a reciprocate start differs from the one we showed: cancelled.
    #[error("reciprocate secret does not match the QR code we showed")]
    QrSecretMismatch,
    /// The scanned bytes are not a Matrix verification QR code: the flow is unchanged.
    #[error("scanned QR code: {0}")]
    QrPayload(#[from] qr::QrError),
    /// The flow timed out: cancelled.
    #[error("verification timed out")]
    Timeout,
    /// The flow is already done or cancelled.
    #[error("the verification flow is already {state}")]
    Finished {
        /// `done` or `cancelled`.
        state: &'static str,
    },
    /// The caller asked for something this state does not allow (a caller mistake).
    #[error("{action} not possible in state {state}")]
    InvalidState {
        /// What was asked.
        action: &'static str,
        /// Our state.
        state: &'static str,
    },
    /// The caller asked for a method the two sides do not both support.
    #[error("method {method} not supported by both sides")]
    MethodNotAgreed {
        /// The method.
        method: &'static str,
    },
    /// A key the caller must supply is missing (a caller mistake).
    #[error("missing key: {what}")]
    MissingKey {
        /// Which key.
        what: &'static str,
    },
    /// The system random generator failed.
    #[error("random generator failure")]
    Random,
}

impl VerificationError {
    /// A stable snake_case code (CLI, JNI, security journal).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::WrongFlow { .. } => "wrong_flow",
            Self::UserMismatch { .. } => "user_mismatch",
            Self::DeviceMismatch { .. } => "device_mismatch",
            Self::NotForUs { .. } => "not_for_us",
            Self::StaleRequest { .. } => "stale_request",
            Self::UnexpectedMessage { .. } => "unexpected_message",
            Self::InvalidMessage { .. } => "invalid_message",
            Self::UnknownMethod { .. } => "unknown_method",
            Self::MismatchedCommitment => "mismatched_commitment",
            Self::KeyMismatch { .. } => "key_mismatch",
            Self::KeyIdsMismatch => "key_ids_mismatch",
            Self::NoKeyVerified => "no_key_verified",
            Self::QrKeyMismatch { .. } => "qr_key_mismatch",
            Self::QrSecretMismatch => "qr_secret_mismatch",
            Self::QrPayload(_) => "qr_payload",
            Self::Timeout => "timeout",
            Self::Finished { .. } => "finished",
            Self::InvalidState { .. } => "invalid_state",
            Self::MethodNotAgreed { .. } => "method_not_agreed",
            Self::MissingKey { .. } => "missing_key",
            Self::Random => "random",
        }
    }

    /// The cancel code this failure stands for. Whether a cancel is actually sent is
    /// [`Self::cancels_flow`].
    pub(crate) fn cancel_code(&self) -> CancelCode {
        match self {
            Self::WrongFlow { .. } => CancelCode::UnknownTransaction,
            Self::UserMismatch { .. } | Self::DeviceMismatch { .. } | Self::NotForUs { .. } => {
                CancelCode::UserMismatch
            }
            Self::StaleRequest { .. } | Self::Timeout => CancelCode::Timeout,
            Self::UnexpectedMessage { .. } | Self::Finished { .. } => CancelCode::UnexpectedMessage,
            Self::InvalidMessage { .. } | Self::QrPayload(_) => CancelCode::InvalidMessage,
            Self::UnknownMethod { .. } | Self::MethodNotAgreed { .. } => CancelCode::UnknownMethod,
            Self::MismatchedCommitment => CancelCode::MismatchedCommitment,
            Self::KeyMismatch { .. }
            | Self::KeyIdsMismatch
            | Self::NoKeyVerified
            | Self::QrKeyMismatch { .. }
            | Self::QrSecretMismatch => CancelCode::KeyMismatch,
            Self::InvalidState { .. } | Self::MissingKey { .. } | Self::Random => CancelCode::User,
        }
    }

    /// Whether this failure cancels the flow (and queues the cancel). The others leave the
    /// flow as it was: a content that may not be ours, a caller mistake, a QR code that is not
    /// a verification code at all.
    pub(crate) fn cancels_flow(&self) -> bool {
        !matches!(
            self,
            Self::WrongFlow { .. }
                | Self::UserMismatch { .. }
                | Self::DeviceMismatch { .. }
                | Self::NotForUs { .. }
                | Self::StaleRequest { .. }
                | Self::QrPayload(_)
                | Self::Finished { .. }
                | Self::InvalidState { .. }
                | Self::MethodNotAgreed { .. }
                | Self::MissingKey { .. }
                | Self::Random
        )
    }
}

/// The `m.key.verification.cancel` content for `flow` with `code` (for instance `m.accepted`
/// to the devices that did not answer a to-device request, or `m.unknown_transaction` in
/// reply to a content of a flow we do not know).
pub(crate) fn cancel_content(flow: &FlowId, code: &CancelCode) -> Outgoing {
    let mut content = Map::new();
    content.insert("code".into(), json!(code.as_str()));
    content.insert("reason".into(), json!(code.reason()));
    Outgoing {
        event_type: CANCEL_EVENT,
        content: flow.stamp(content),
    }
}

/// The content of an in-room request (`m.room.message`, `msgtype:
/// m.key.verification.request`). Send it, then build the flow from its event id with
/// [`Verification::request`] and [`FlowId::InRoom`].
pub(crate) fn room_request_content(own: &OwnKeys, to_user: &str, methods: &[Method]) -> Outgoing {
    Outgoing {
        event_type: ROOM_MESSAGE_EVENT,
        content: json!({
            "msgtype": REQUEST_EVENT,
            "body": format!(
                "{} is requesting to verify your key, but your client does not support in-chat \
                 key verification. You will need to use legacy key verification to verify keys.",
                own.user_id
            ),
            "from_device": own.device_id,
            "methods": methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            "to": to_user,
        }),
    }
}

/// A fresh random transaction id for a to-device flow (32 characters from `[A-Za-z0-9]`).
///
/// # Errors
///
/// [`VerificationError::Random`] if the system generator fails.
pub(crate) fn new_transaction_id() -> Result<String, VerificationError> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    random_fill(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// Fills `out` from the system random generator.
fn random_fill(out: &mut [u8]) -> Result<(), VerificationError> {
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), out)
        .map_err(|_| VerificationError::Random)
}

/// Unpadded standard base64, as the specification writes keys, MACs and hashes.
fn b64_encode(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes)
}

/// Standard base64 with or without padding (the specification accepts both on input); the
/// unused trailing bits must be zero, so one value has one spelling.
fn b64_decode(text: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(text).ok()
}

/// The canonical JSON of a received content, or why it is invalid.
fn canonical_json_of(event_type: &str, content: &Value) -> Result<String, VerificationError> {
    crate::crypto::canonical_json::to_canonical_json(content).map_err(|_| {
        VerificationError::InvalidMessage {
            event_type: event_type.to_owned(),
            field: "canonical JSON",
        }
    })
}

/// The string field `name` of a content.
fn str_field<'a>(content: &'a Value, name: &str) -> Option<&'a str> {
    content.get(name).and_then(Value::as_str)
}

/// The array-of-strings field `name` of a content (`None` if absent, not an array, or holding
/// a non-string).
fn str_list(content: &Value, name: &str) -> Option<Vec<String>> {
    content
        .get(name)?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}
