//! Errors of the Matrix client-server API layer: the homeserver's `errcode`s that matter to a
//! cabinet member's phone, typed; a malformed answer from the server, typed; the transport's
//! errors underneath.

use crate::net::TransportError;

/// A failure of a Matrix API call.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request never got a usable HTTP answer.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// `M_FORBIDDEN`: wrong credentials or not allowed.
    #[error("forbidden by the homeserver: {message}")]
    Forbidden {
        /// The server's human-readable message.
        message: String,
    },
    /// `M_LIMIT_EXCEEDED` after the allowed retries (or with a wait too long to retry).
    #[error("rate limited by the homeserver (retry after {retry_after_ms:?} ms)")]
    LimitExceeded {
        /// What the server asked us to wait, if it said.
        retry_after_ms: Option<u64>,
    },
    /// `M_UNKNOWN_TOKEN`: the access token is no longer valid. With `soft_logout` the device
    /// keeps its keys and may log in again into the same device.
    #[error("access token rejected by the homeserver (soft logout: {soft_logout})")]
    UnknownToken {
        /// The server's `soft_logout` flag.
        soft_logout: bool,
    },
    /// Tchap's `ORG_MATRIX_EXPIRED_ACCOUNT`: the account's validity period is over.
    #[error("the account has expired")]
    ExpiredAccount,
    /// Any other Matrix error response.
    #[error("homeserver error {status} {errcode}: {message}")]
    Matrix {
        /// HTTP status.
        status: u16,
        /// The Matrix `errcode`.
        errcode: String,
        /// The server's message.
        message: String,
    },
    /// An HTTP error whose body is not a Matrix error object.
    #[error("HTTP error {status} from the homeserver")]
    Http {
        /// HTTP status.
        status: u16,
    },
    /// The server's answer does not have the shape the specification requires.
    #[error("malformed response from {endpoint}: {detail}")]
    MalformedResponse {
        /// The endpoint, e.g. `/sync`.
        endpoint: &'static str,
        /// What is wrong (never the body itself: it may hold secrets).
        detail: String,
    },
}

impl ApiError {
    /// A stable snake_case code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Transport(t) => t.code(),
            Self::Forbidden { .. } => "forbidden",
            Self::LimitExceeded { .. } => "limit_exceeded",
            Self::UnknownToken { soft_logout: true } => "soft_logout",
            Self::UnknownToken { soft_logout: false } => "unknown_token",
            Self::ExpiredAccount => "expired_account",
            Self::Matrix { .. } => "matrix_error",
            Self::Http { .. } => "http_error",
            Self::MalformedResponse { .. } => "malformed_response",
        }
    }
}
