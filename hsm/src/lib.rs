//! Hardware-bound key vault of Tchap Secure.
//!
//! Every local secret of the client (SQLCipher database key, vodozemac pickle key, media cache
//! key) is derived from one **root secret R**, and R is only ever stored wrapped by a
//! **key-encryption key (KEK)** that lives in hardware and cannot be exported:
//!
//! ```text
//! KEK   AES-256-GCM, generated inside the token / TEE, CKA_SENSITIVE, CKA_EXTRACTABLE=false
//!   │   wrap: AES-GCM, AAD = "tchap-secure/v1" ‖ vault.bin header (magic, version, KEK id)
//!   │         ‖ server name (the binding: supplied by the caller, never stored)
//!   ▼
//! R     32 random bytes, stored only wrapped, in `vault.bin` next to the database
//!   │   HKDF-SHA256, fixed salt, one `info` label per use
//!   ├── DatabaseKey  → SQLCipher raw key (PRAGMA key = "x'…'")
//!   ├── PickleKey    → vodozemac pickles
//!   └── MediaKey     → local attachment cache
//! ```
//!
//! Why this shape:
//! - Android Keystore / StrongBox and most PKCS#11 tokens cannot hold Curve25519 keys, so the
//!   Olm identity cannot live in hardware; binding it (through the database key) to a hardware
//!   KEK is the best available. A copy of the phone's storage is useless without the token.
//! - One wrapped root and HKDF, rather than one wrapped blob per key: one hardware operation at
//!   start-up, and a single object to destroy for crypto-shredding ([`Vault::wipe`]).
//! - The wrapping AAD authenticates the whole `vault.bin` header and the server name the caller
//!   opens with, so a `vault.bin` swapped from another account or server, opened for another
//!   server, or edited, fails to unwrap ([`VaultError::Unwrap`]) instead of silently opening the
//!   wrong store. The server name is not stored: `vault.bin` holds no metadata in clear (only
//!   the random KEK id). There is no fallback to a software key.
//!
//! Modules: [`backend`] (the [`KeyVault`] trait a hardware backend implements), [`pkcs11`]
//! (PKCS#11 backend: SoftHSM2, smartcards, HSMs), [`vault`] (the hierarchy above and the file
//! format), [`secret`] (zeroized secret types with redacted `Debug`), [`error`]. The Android
//! Keystore backend is fed through JNI by the bridge crate. `soft` is a software KEK for tests,
//! compiled only with the `soft-vault` feature and refused in release builds.

#![forbid(unsafe_code)]

// The software KEK keeps its key in process memory: it would silently void the whole point of
// this crate if it ever shipped. Release builds (no debug assertions) refuse to compile it, and
// the test suite of the workspace checks that `cargo check --release --features soft-vault`
// fails.
#[cfg(all(feature = "soft-vault", not(debug_assertions)))]
compile_error!("the soft-vault feature is for tests only and cannot be built in release");

pub mod backend;
pub mod error;
pub mod pkcs11;
pub mod secret;
#[cfg(feature = "soft-vault")]
pub mod soft;
pub mod vault;

pub use backend::{KekId, KeyVault};
pub use error::VaultError;
pub use pkcs11::{DEFAULT_SOFTHSM_MODULE, Pkcs11Config, Pkcs11Vault};
pub use secret::{DatabaseKey, MediaKey, PickleKey, SecretBytes};
pub use vault::{VAULT_FILE, Vault, VaultBinding};

/// Per-process SoftHSM2 token fixture, shared with the integration tests in `tests/`.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod test_support;
