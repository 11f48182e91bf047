//! The bridge's error type: what a native method can fail with, and the stable code each
//! failure carries into `TchapSecureException.getCode()`.
//!
//! Core and vault failures keep the core's own codes ([`tchap_secure_core::Error::code`]), so the
//! Java side sees the same codes as the CLI's JSON output. The bridge adds codes only for what
//! the bridge itself can get wrong: a bad handle, a missing argument, a JNI failure, a panic.
//! Messages are built from `Display` implementations that never print secrets (the core's and
//! the vault's errors are written that way; the bridge's variants hold no data from the caller
//! beyond the name of the argument).

use tchap_secure_core::{ConfigError, Error as CoreError};

/// Why a native call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BridgeError {
    /// The core (client, store, network, vault) failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// `checkConfig` / `clientOpen`: the configuration document was refused.
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    /// A required argument was `null`.
    #[error("argument {0} is null")]
    NullArgument(&'static str),
    /// An argument has a value the bridge refuses (negative count, non-UTF-8 path, …).
    #[error("invalid argument {what}: {why}")]
    InvalidArgument {
        /// The argument's name in `Native.java`.
        what: &'static str,
        /// What is wrong with it (never its value when it could be a secret).
        why: &'static str,
    },
    /// The handle is 0.
    #[error("null client handle")]
    NullHandle,
    /// The handle does not point to a live object of the expected type (wrong value, or
    /// already closed).
    #[error("invalid or closed client handle")]
    InvalidHandle,
    /// The client was wiped: the handle is good only for `clientClose`.
    #[error("the client was wiped; only clientClose is allowed")]
    Wiped,
    /// A previous call panicked while holding the client: its in-memory state is not trusted
    /// any more (close and reopen; the store is transactional).
    #[error("the client is unusable after an internal panic; close and reopen it")]
    Poisoned,
    /// `startSync` while the sync thread runs.
    #[error("the background sync is already running")]
    SyncRunning,
    /// The sync thread could not be started, or the tokio runtime could not be built.
    #[error("could not start a native thread: {0}")]
    Thread(std::io::Error),
    /// `downloadFile` to a path: something already exists there (a file is never overwritten).
    #[error("{0} already exists: a download never overwrites")]
    FileExists(&'static str),
    /// A local file (the one to send, or the download's destination) could not be opened,
    /// created, read or written. The message names the argument and the OS error, not the path.
    #[error("{what}: {error}")]
    File {
        /// The argument in `Native.java`.
        what: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
    /// A JNI call failed (the message is jni-rs's, which names the call, not the data).
    #[error("JNI call failed: {0}")]
    Jni(#[from] jni::errors::Error),
    /// A panic was caught at the FFI boundary (the message is a compile-time string or withheld).
    #[error("internal panic: {0}")]
    Panic(&'static str),
}

impl BridgeError {
    /// The stable snake_case code carried by `TchapSecureException`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Core(e) => e.code(),
            Self::Config(_) => "config",
            Self::NullArgument(_) | Self::InvalidArgument { .. } => "invalid_argument",
            Self::NullHandle => "null_handle",
            Self::InvalidHandle => "invalid_handle",
            Self::Wiped => "wiped",
            Self::Poisoned => "poisoned",
            Self::SyncRunning => "sync_running",
            Self::Thread(_) => "thread",
            Self::FileExists(_) => "file_exists",
            Self::File { .. } => "file_io",
            Self::Jni(_) => "jni",
            Self::Panic(_) => "panic",
        }
    }

    /// For `send_queued` / `send_failed`: the message's local id and the reason code (the
    /// cause that holds it back, or why it was refused), carried by the exception so that the
    /// caller can find the message's local echo.
    pub(crate) fn send_details(&self) -> Option<(&str, &str)> {
        match self {
            Self::Core(CoreError::SendQueued { local_id, cause }) => Some((local_id, cause)),
            Self::Core(CoreError::SendFailed { local_id, reason }) => Some((local_id, reason)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BridgeError;

    #[test]
    fn codes_are_stable_snake_case_and_core_codes_pass_through() {
        let errors = [
            BridgeError::Core(tchap_secure_core::Error::NotLoggedIn),
            BridgeError::NullArgument("roomId"),
            BridgeError::InvalidArgument {
                what: "limit",
                why: "negative",
            },
            BridgeError::NullHandle,
            BridgeError::InvalidHandle,
            BridgeError::Wiped,
            BridgeError::Poisoned,
            BridgeError::SyncRunning,
            BridgeError::Thread(std::io::Error::other("x")),
            BridgeError::FileExists("path"),
            BridgeError::File {
                what: "fd",
                error: std::io::Error::other("x"),
            },
            BridgeError::Jni(jni::errors::Error::NullPtr("x")),
            BridgeError::Panic("x"),
        ];
        let codes: Vec<_> = errors.iter().map(BridgeError::code).collect();
        assert_eq!(
            codes,
            [
                "no_session",
                "invalid_argument",
                "invalid_argument",
                "null_handle",
                "invalid_handle",
                "wiped",
                "poisoned",
                "sync_running",
                "thread",
                "file_exists",
                "file_io",
                "jni",
                "panic"
            ]
        );
        let config = tchap_secure_core::Config::from_json(b"{}").unwrap_err();
        assert_eq!(BridgeError::Config(config).code(), "config");
    }

    #[test]
    fn send_errors_carry_the_local_id_and_the_reason() {
        let queued = BridgeError::Core(tchap_secure_core::Error::SendQueued {
            local_id: "txn-1".into(),
            cause: "network".into(),
        });
        assert_eq!(queued.code(), "send_queued");
        assert_eq!(queued.send_details(), Some(("txn-1", "network")));
        let failed = BridgeError::Core(tchap_secure_core::Error::SendFailed {
            local_id: "txn-2".into(),
            reason: "left_room".into(),
        });
        assert_eq!(failed.code(), "send_failed");
        assert_eq!(failed.send_details(), Some(("txn-2", "left_room")));
        assert_eq!(BridgeError::NullHandle.send_details(), None);
    }
}
