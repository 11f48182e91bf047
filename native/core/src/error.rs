//! The core's error type: one variant per layer, plus the caller's mistakes, kept apart.

use tchap_secure_hsm::VaultError;

use crate::api::ApiError;
use crate::config::ConfigError;
use crate::media::{AttachmentError, ScannerError};
use crate::net::{TlsRejection, TransportError};
use crate::store::StoreError;

/// Any failure of the client core.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration was refused.
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    /// The hardware-bound vault failed (wrong PIN, other token, tampered `vault.bin`, …).
    #[error("vault error: {0}")]
    Vault(#[from] VaultError),
    /// The local database failed.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The homeserver or the network failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// End-to-end encryption refused or failed.
    #[error("encryption: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    /// An attachment could not be encrypted, verified or decrypted (e.g. its ciphertext does
    /// not match its SHA-256, or it is over the size limit).
    #[error("attachment: {0}")]
    Attachment(#[from] AttachmentError),
    /// A received attachment could not be had through the content scanner: refused as
    /// infected (`ScannerError::InfectedFile`), scanner unavailable, … Never followed by a
    /// direct download.
    #[error("content scanner: {0}")]
    Scanner(#[from] ScannerError),
    /// The MDM pushed a new wipe command: the data directory was crypto-shredded on open.
    #[error("remote wipe executed: the local data was destroyed")]
    RemoteWipe,
    /// The operation needs a logged-in session.
    #[error("not logged in")]
    NotLoggedIn,
    /// `login` while a session exists (log out first: one device per data directory).
    #[error("already logged in as {user_id}")]
    AlreadyLoggedIn {
        /// The current user.
        user_id: String,
    },
    /// The user id is outside `allowed_user_domain`.
    #[error("user {user_id} is not allowed by the configuration")]
    UserNotAllowed {
        /// The refused user id.
        user_id: String,
    },
    /// A caller-supplied argument is invalid.
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What is wrong.
        what: String,
    },
    /// The data directory could not be prepared.
    #[error("data directory: {0}")]
    DataDir(std::io::Error),
    /// Our message could not go out now (network, server busy, or earlier messages of the room
    /// still waiting): it stays queued under `local_id`, visible as `queued` in the timeline,
    /// and is sent, in order, by a later sync.
    #[error("message queued, not sent yet ({cause})")]
    SendQueued {
        /// The message's local id (`TimelineEvent::local_id`).
        local_id: String,
        /// The code of the failure that holds it back.
        cause: String,
    },
    /// A key verification flow refused an action or an event (wrong state, timed out, keys
    /// that do not match, …).
    #[error("verification: {detail}")]
    Verification {
        /// A stable code (`verification_*`, or the flow's own).
        code: &'static str,
        /// What happened.
        detail: String,
    },
    /// A notification could not be shown: `cannot_decrypt_yet` (its room key has not arrived
    /// within the wait: ask again, or let the main sync show it) or `notification_refused` (a
    /// message in clear, a redacted event, another event than the one asked).
    #[error("notification: {detail}")]
    Notification {
        /// `cannot_decrypt_yet` or `notification_refused`.
        code: &'static str,
        /// What happened.
        detail: String,
    },
    /// A reply, an edit or a deletion the member asked for was refused here, before anything
    /// was sent: `unknown_event`, `event_redacted`, `edit_not_allowed` (not one's own text
    /// message), `redaction_not_allowed` (another member's event without the power level),
    /// `redaction_other_room`, `reason_in_clear_refused`.
    #[error("{detail}")]
    Relation {
        /// The stable code.
        code: &'static str,
        /// What happened.
        detail: String,
    },
    /// The homeserver asks for the account password (user-interactive authentication) and
    /// none was given: call again with it.
    #[error("the homeserver asks for the account password to authorise this")]
    PasswordRequired,
    /// The homeserver asks for user-interactive authentication by stages other than the
    /// password, which this client does not do.
    #[error(
        "the homeserver asks for authentication stages this client does not support: {stages:?}"
    )]
    AuthUnsupported {
        /// The stages the server offered.
        stages: Vec<String>,
    },
    /// The directory or the identity server could not resolve what was asked:
    /// `identity_server_not_configured`, `unknown_address` (no user has this e-mail address:
    /// nothing was sent), `identity_lookup_refused` (the identity server offers no hashed
    /// lookup, or answered with a user outside the allowed domain).
    #[error("{detail}")]
    Identity {
        /// The stable code.
        code: &'static str,
        /// What happened.
        detail: String,
    },
    /// The account is locked (issue 19): expired (renew it, then `Client::resume`) or revoked
    /// (deactivated, or this device's token revoked: `Client::must_shred` says whether the data
    /// must be crypto-shredded now). Nothing is synced, sent or shown meanwhile.
    #[error("the account is locked ({})", lock.as_str())]
    AccountLocked {
        /// Why.
        lock: crate::client::account::AccountLock,
    },
    /// The homeserver refused our message for good, or it was cancelled: its local echo is
    /// `failed` with the same reason.
    #[error("message not sent: {reason}")]
    SendFailed {
        /// The message's local id (`TimelineEvent::local_id`).
        local_id: String,
        /// `forbidden`, `not_found`, `too_large`, `refused` or `left_room`.
        reason: String,
    },
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Self::Api(ApiError::Transport(e))
    }
}

impl Error {
    /// A stable snake_case code for this failure (CLI JSON output; the JNI error code).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Vault(v) => v.code(),
            Self::Store(StoreError::WrongKey) => "store_wrong_key",
            Self::Store(_) => "store",
            Self::Api(a) => a.code(),
            Self::Crypto(c) => c.code(),
            Self::Attachment(a) => a.code(),
            Self::Scanner(s) => s.code(),
            Self::RemoteWipe => "remote_wipe",
            Self::NotLoggedIn => "no_session",
            Self::AlreadyLoggedIn { .. } => "session_exists",
            Self::UserNotAllowed { .. } => "user_not_allowed",
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::DataDir(_) => "data_dir",
            Self::SendQueued { .. } => "send_queued",
            Self::SendFailed { .. } => "send_failed",
            Self::PasswordRequired => "password_required",
            Self::Verification { code, .. }
            | Self::Notification { code, .. }
            | Self::Relation { code, .. }
            | Self::Identity { code, .. } => code,
            Self::AuthUnsupported { .. } => "auth_unsupported",
            Self::AccountLocked {
                lock: crate::client::account::AccountLock::Expired,
            } => "account_expired",
            Self::AccountLocked {
                lock: crate::client::account::AccountLock::Revoked,
            } => "account_revoked",
        }
    }

    /// Whether this failure concerns the whole session (a rejected TLS peer, a revoked token,
    /// an expired account, the local store): work that is retried later (a verification step,
    /// a cross-signing setup) stops on it instead of being logged and retried.
    pub fn ends_session(&self) -> bool {
        self.tls_rejection().is_some()
            || matches!(
                self,
                Self::Store(_)
                    | Self::AccountLocked { .. }
                    | Self::Api(ApiError::UnknownToken { .. } | ApiError::ExpiredAccount)
            )
    }

    /// The TLS rejection behind this error, if the failure is that the peer was rejected.
    pub fn tls_rejection(&self) -> Option<&TlsRejection> {
        match self {
            Self::Api(ApiError::Transport(TransportError::Tls(r)))
            | Self::Scanner(ScannerError::Transport(TransportError::Tls(r))) => Some(r),
            _ => None,
        }
    }

    /// True for network-level failures other than a TLS rejection (refused, timeout, HTTP),
    /// including a content scanner that cannot be used ([`ScannerError::is_unavailable`]).
    pub fn is_network(&self) -> bool {
        let network = match self {
            Self::Api(
                ApiError::Transport(_) | ApiError::Http { .. } | ApiError::MalformedResponse { .. },
            ) => true,
            Self::Scanner(s) => s.is_unavailable(),
            _ => false,
        };
        network && self.tls_rejection().is_none()
    }

    /// True when the content scanner refused a received file as not clean: the caller records
    /// a security event and shows the refusal; nothing of the file was written.
    pub fn is_infected_file(&self) -> bool {
        matches!(self, Self::Scanner(ScannerError::InfectedFile { .. }))
    }

    /// True when a received attachment's ciphertext is not the one its event announced
    /// (modified, truncated or extended on the server): refused, nothing usable written.
    pub fn is_attachment_tampered(&self) -> bool {
        matches!(
            self,
            Self::Attachment(AttachmentError::HashMismatch)
                | Self::Scanner(ScannerError::Attachment(AttachmentError::HashMismatch))
        )
    }
}
