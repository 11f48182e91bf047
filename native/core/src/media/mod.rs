//! Encrypted attachments (issue 8, step 1): the Matrix `EncryptedFile` format, its streaming
//! cryptography and the file names we accept from peers. No networking here: upload, the
//! content scanner and the local cache build on these pieces.
//!
//! - [`encrypted_file`]: the wire type [`EncryptedFile`] (`m.file` / `m.image` events, spec
//!   v1.11 "Extensions to `m.room.message` msgtypes"), strictly validated into a
//!   [`ValidatedFile`] before any byte of ciphertext is touched, and [`MxcUri`].
//! - [`attachment`]: AES-256-CTR with a 128-bit big-endian counter and SHA-256 of the
//!   ciphertext, streamed through one 64 KiB buffer: [`encrypt_attachment`] on the sending side;
//!   on the receiving side [`verify_ciphertext`] hashes the whole ciphertext first and only the
//!   [`VerifiedCiphertext`] token it returns can decrypt, so unverified plaintext is never
//!   released through this API.
//! - [`file_name`]: [`sanitize_file_name`] for names announced by peers.
//! - [`scanner`]: the content scanner's protocol; [`download_through_scanner`] is the only way
//!   a received attachment is fetched (no fallback to the plain media API).
//!
//! # What protects what
//!
//! The SHA-256 in the event authenticates the *ciphertext* (what the homeserver stores and
//! the scanner forwards), not the key: the key, the IV and the hash all arrive in the same
//! Megolm-encrypted event, whose authenticity is the E2EE layer's job. A server that swaps or
//! truncates the stored bytes is caught by the hash; a sender who lies about the key only
//! produces garbage for its own file. CTR mode has no integrity of its own, which is why no
//! plaintext leaves [`VerifiedCiphertext::decrypt_to`] before the whole ciphertext was hashed.
//!
//! # Hardware AES
//!
//! The block cipher is RustCrypto `aes` 0.9, the version vodozemac 0.11 already links (one
//! AES implementation in the library, not two). Since 0.9.0 it detects the CPU's AES
//! instructions at run time by default: AES-NI/VAES on x86_64 (`cpufeatures` CPUID) and the
//! ARMv8 Cryptography Extensions on aarch64 Linux *and Android* (`cpufeatures` reads
//! `getauxval(AT_HWCAP)`, `aes-0.9.4/src/lib.rs` `features_aes`, cpufeatures-0.3.1
//! `src/aarch64.rs`), falling back to a constant-time bitsliced implementation. The 0.8 line
//! (what matrix-rust-sdk uses) needs `RUSTFLAGS=--cfg aes_armv8` for the ARMv8 path and would
//! run the software fallback on every phone. [`aes_hardware_accelerated`] reports which one
//! runs.

pub mod attachment;
pub mod encrypted_file;
pub mod file_name;
pub mod scanner;
#[cfg(test)]
pub(crate) mod test_vectors;

pub use attachment::{
    BUFFER_LEN, EncryptedAttachment, VerifiedCiphertext, encrypt_attachment, verify_ciphertext,
};
pub use encrypted_file::{EncryptedFile, JsonWebKey, MxcUri, ValidatedFile};
pub use file_name::sanitize_file_name;
pub use scanner::{ScannerError, ScannerKey, ScannerKeyCache, download_through_scanner};

/// A failure of attachment encryption, verification or decryption.
///
/// No variant ever carries key, IV or plaintext bytes, nor a message produced from them.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// The ciphertext does not hash to the SHA-256 announced in the event: modified, truncated
    /// or extended on the server (or on the way), or the source changed between the two passes
    /// of [`verify_ciphertext`] and [`VerifiedCiphertext::decrypt_to`].
    #[error("the attachment's ciphertext does not match its SHA-256")]
    HashMismatch,
    /// The stream is longer than the caller's limit; nothing past the limit was read into the
    /// output.
    #[error("the attachment is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A field of a received `EncryptedFile` is missing, of the wrong form or unsupported (a
    /// fault of the sender or of the server, never the caller's).
    #[error("malformed encrypted file: {what}")]
    Malformed {
        /// Which field, and what is wrong with it (never its value).
        what: &'static str,
    },
    /// The system's random generator failed (no key was produced).
    #[error("the system random number generator failed")]
    Random,
    /// Reading the source or writing the destination failed.
    #[error("attachment I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl AttachmentError {
    /// A stable snake_case code for this failure (CLI JSON output; the JNI error code).
    pub fn code(&self) -> &'static str {
        match self {
            Self::HashMismatch => "attachment_hash_mismatch",
            Self::TooLarge { .. } => "attachment_too_large",
            Self::Malformed { .. } => "malformed_attachment",
            Self::Random => "random",
            Self::Io(_) => "attachment_io",
        }
    }
}

/// Whether this machine runs AES with CPU instructions (AES-NI/VAES on x86_64, the ARMv8
/// Cryptography Extensions on aarch64) rather than the constant-time software fallback.
///
/// For diagnostics and benchmarks: both are correct and constant-time; the fallback is several
/// times slower.
pub fn aes_hardware_accelerated() -> bool {
    aes::hardware_accelerated()
}
