//! Exit statuses and the classification of failures into them.

use tchap_secure_core::Error;
use tchap_secure_core::api::ApiError;
use tchap_secure_core::media::ScannerError;

/// Any failure not listed below.
pub(crate) const OTHER: u8 = 1;
/// Configuration or usage error.
pub(crate) const CONFIG: u8 = 2;
/// The TLS peer was rejected (anchor, pin, pin expiry, host name, protocol version), or the
/// content scanner served a key the configuration does not pin.
pub(crate) const TLS_REJECTED: u8 = 3;
/// Any other network failure (refused, timeout, HTTP error, malformed answer).
pub(crate) const NETWORK: u8 = 4;
/// The homeserver refused the request (a Matrix error code).
pub(crate) const SERVER_REFUSED: u8 = 5;
/// Vault or token failure (PIN, token, vault.bin).
pub(crate) const VAULT: u8 = 6;
/// Local database failure.
pub(crate) const STORE: u8 = 7;
/// Refused by the end-to-end encryption policy (e.g. a room without encryption, an attachment
/// whose ciphertext does not match its SHA-256).
pub(crate) const CRYPTO: u8 = 8;
/// The content scanner refused a received file (infected): nothing was written.
pub(crate) const INFECTED: u8 = 9;

pub(crate) const HELP: &str = "Exit status: 0 success; 1 other failure; 2 configuration or usage error; \
3 TLS peer or scanner key rejected; 4 other network failure; 5 homeserver refused; 6 vault/token failure; 7 database failure; \
8 refused by the encryption policy; 9 file refused by the antivirus.
Secrets: token PIN from $TCHAP_SECURE_TOKEN_PIN or --pin-stdin; password from $TCHAP_SECURE_PASSWORD or --password-stdin.";

/// A failure on its way to the exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    /// Stable snake_case reason.
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: CONFIG,
            reason: "usage",
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self {
            code: CONFIG,
            reason: "config",
            message: message.into(),
        }
    }

    pub(crate) fn other(message: impl Into<String>) -> Self {
        Self {
            code: OTHER,
            reason: "other",
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Config(_) | Error::Scanner(ScannerError::NoPinnedKeys) => CONFIG,
            // The scanner's identity is pinned like the server's: a key outside the list is a
            // rejected peer.
            Error::Scanner(ScannerError::UnpinnedKey { .. }) => TLS_REJECTED,
            _ if e.is_infected_file() => INFECTED,
            _ if e.is_attachment_tampered() => CRYPTO,
            _ if e.tls_rejection().is_some() => TLS_REJECTED,
            _ if e.is_network() => NETWORK,
            Error::Api(
                ApiError::Transport(_) | ApiError::Http { .. } | ApiError::MalformedResponse { .. },
            ) => NETWORK,
            Error::Api(_) => SERVER_REFUSED,
            // The server asks for the password (or for stages we do not do).
            Error::PasswordRequired | Error::AuthUnsupported { .. } => SERVER_REFUSED,
            // An expired or revoked account; an address or a lookup the identity server refused.
            Error::AccountLocked { .. } | Error::Identity { .. } => SERVER_REFUSED,
            // Kept in the queue: it goes out at a later sync (`messages` shows it `queued`).
            Error::SendQueued { .. } => NETWORK,
            // Refused for good or cancelled (`messages` shows it `failed`, with the reason).
            Error::SendFailed { .. } => SERVER_REFUSED,
            Error::Vault(_) => VAULT,
            Error::Store(_) => STORE,
            Error::Crypto(_) => CRYPTO,
            _ => OTHER,
        };
        Self {
            code,
            reason: e.code(),
            message: e.to_string(),
        }
    }
}
