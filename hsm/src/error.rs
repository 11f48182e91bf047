//! Errors of the key vault.
//!
//! One flat enum for the crate: callers (the core client, the CLI, the JNI bridge) need to tell
//! apart "wrong PIN" from "token absent" from "this vault.bin is not ours", not the PKCS#11
//! function that failed. Messages never contain key bytes, wrapped blobs or the PIN; the
//! `Pkcs11` detail is the library's description of a return code, nothing more.

/// Everything that can go wrong while opening a token or using the key hierarchy.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No token with this label is present on any slot of the PKCS#11 module.
    #[error("no token labelled {label:?} found")]
    TokenNotFound {
        /// The label that was looked for.
        label: String,
    },
    /// Several tokens carry this label: refusing to guess which one holds our KEK.
    #[error("several tokens are labelled {label:?}")]
    AmbiguousToken {
        /// The ambiguous label.
        label: String,
    },
    /// The token rejected the user PIN.
    #[error("incorrect PIN")]
    WrongPin,
    /// The user PIN is locked after too many failed attempts (needs the security officer).
    #[error("PIN locked")]
    PinLocked,
    /// This process already has a logged-in session on the token (another open
    /// `Pkcs11Vault`). PKCS#11 login state is per application, so a second login cannot check
    /// the PIN it was given: we refuse rather than report an unchecked PIN as accepted.
    #[error("already logged in to this token from this process")]
    AlreadyLoggedIn,
    /// No KEK with this id exists in the backend (never created, destroyed, or another token).
    #[error("key-encryption key not found")]
    KekNotFound,
    /// A KEK with this id already exists; it is never replaced.
    #[error("key-encryption key already exists")]
    KekExists,
    /// Authenticated decryption failed: wrong key, tampered blob, or wrong binding (AAD).
    #[error("unwrap failed: wrong key, wrong binding or tampered data")]
    Unwrap,
    /// A wipe erased a `vault.bin` that names no KEK (damaged before the KEK id): the local data
    /// is gone, but a KEK may remain in the backend (remove the `tchap-secure-kek-*` keys with
    /// the token's or the platform's tools).
    #[error(
        "vault.bin named no key-encryption key: the data is erased but a KEK may remain in the backend"
    )]
    KekUnidentified,
    /// There is no `vault.bin` in the directory.
    #[error("no vault in this directory")]
    NotFound,
    /// A `vault.bin` already exists in the directory; it is never overwritten.
    #[error("a vault already exists in this directory")]
    AlreadyExists,
    /// `vault.bin` (or a binding) is malformed.
    #[error("malformed vault: {reason}")]
    Format {
        /// What is wrong, in words fixed at compile time (never file content).
        reason: &'static str,
    },
    /// A file system operation failed.
    #[error("I/O error during {op}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A PKCS#11 call failed for a reason not covered by another variant.
    #[error("PKCS#11 {op} failed: {detail}")]
    Pkcs11 {
        /// The operation that failed.
        op: &'static str,
        /// The library's description of the failure (a return code, never data).
        detail: String,
    },
    /// The system random number generator failed.
    #[error("random number generator failure")]
    Rng,
    /// The software vault was asked for in a release build (it is for tests only).
    #[error("the software vault is not available in release builds")]
    SoftVaultInRelease,
}

impl VaultError {
    /// Stable snake_case code of the variant, for the JNI bridge and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TokenNotFound { .. } => "token_not_found",
            Self::AmbiguousToken { .. } => "ambiguous_token",
            Self::WrongPin => "wrong_pin",
            Self::PinLocked => "pin_locked",
            Self::AlreadyLoggedIn => "already_logged_in",
            Self::KekNotFound => "kek_not_found",
            Self::KekExists => "kek_exists",
            Self::KekUnidentified => "kek_unidentified",
            Self::Unwrap => "unwrap",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::Format { .. } => "format",
            Self::Io { .. } => "io",
            Self::Pkcs11 { .. } => "pkcs11",
            Self::Rng => "rng",
            Self::SoftVaultInRelease => "soft_vault_in_release",
        }
    }

    pub(crate) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io { op, source }
    }
}

#[cfg(test)]
mod tests {
    use super::VaultError;

    #[test]
    fn codes_are_distinct_snake_case() {
        let all = [
            VaultError::TokenNotFound { label: "x".into() },
            VaultError::AmbiguousToken { label: "x".into() },
            VaultError::WrongPin,
            VaultError::PinLocked,
            VaultError::AlreadyLoggedIn,
            VaultError::KekNotFound,
            VaultError::KekExists,
            VaultError::KekUnidentified,
            VaultError::Unwrap,
            VaultError::NotFound,
            VaultError::AlreadyExists,
            VaultError::Format { reason: "x" },
            VaultError::Io {
                op: "x",
                source: std::io::Error::other("x"),
            },
            VaultError::Pkcs11 {
                op: "x",
                detail: "x".into(),
            },
            VaultError::Rng,
            VaultError::SoftVaultInRelease,
        ];
        let mut codes: Vec<_> = all.iter().map(VaultError::code).collect();
        assert!(codes.iter().all(|c| {
            c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        }));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
