//! The hardware backend interface: a store of non-exportable AES-256-GCM KEKs.
//!
//! A backend only ever does four things with a KEK — create it, encrypt with it, decrypt with
//! it, destroy it — so the trait is exactly that. The key bytes never cross this interface: the
//! Android Keystore and PKCS#11 implementations cannot reveal them, by construction of the key.
//!
//! The blob format `nonce(12) ‖ ciphertext ‖ tag(16)` is fixed here, not per backend, so a
//! `vault.bin` is parsed the same way whatever wrapped it.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::VaultError;
use crate::secret::SecretBytes;

/// AES-GCM nonce length used by every backend.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length used by every backend (128 bits).
pub const TAG_LEN: usize = 16;

/// Hardware key-encryption-key backend (Android Keystore via JNI later, PKCS#11 here).
pub trait KeyVault: Send + Sync {
    /// Short name for logs/diagnostics, e.g. "pkcs11:SoftHSM slot 3" (no secrets).
    fn describe(&self) -> String;
    /// Generate a new non-exportable AES-256 KEK under `id`. Err(VaultError::KekExists) if one exists.
    fn generate_kek(&self, id: &KekId) -> Result<(), VaultError>;
    /// AES-256-GCM with the KEK: returns nonce(12) || ciphertext || tag(16). Fresh random nonce each call.
    fn wrap(&self, id: &KekId, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError>;
    /// Inverse of wrap. Wrong key / tampered blob / wrong aad => Err(VaultError::Unwrap). KEK absent => Err(VaultError::KekNotFound).
    fn unwrap(&self, id: &KekId, aad: &[u8], wrapped: &[u8]) -> Result<SecretBytes, VaultError>;
    /// Destroy the KEK in hardware (crypto-shredding). Idempotent-ish: absent => Err(KekNotFound).
    fn destroy_kek(&self, id: &KekId) -> Result<(), VaultError>;
}

/// Identifier of a KEK on the token (PKCS#11 `CKA_ID`, and `CKA_LABEL` `"tchap-secure-kek-<hex>"`), 16 random bytes.
///
/// Not secret: it is stored in clear in `vault.bin` and printed in logs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KekId([u8; 16]);

impl KekId {
    /// A fresh identifier from the system RNG (128 bits: collisions are not a concern).
    pub fn new_random() -> Result<Self, VaultError> {
        let mut bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| VaultError::Rng)?;
        Ok(Self(bytes))
    }

    /// The identifier with these bytes (e.g. read from `vault.bin`).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The identifier bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lowercase hexadecimal form (32 characters).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The PKCS#11 `CKA_LABEL` of the KEK: `tchap-secure-kek-<hex>`.
    pub fn label(&self) -> String {
        format!("tchap-secure-kek-{}", self.hex())
    }
}

impl fmt::Debug for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekId({})", self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::KekId;

    #[test]
    fn kek_id_forms() {
        let id = KekId::from_bytes([0x0f; 16]);
        assert_eq!(id.hex(), "0f".repeat(16));
        assert_eq!(format!("{id:?}"), format!("KekId({})", "0f".repeat(16)));
        assert_eq!(id.label(), format!("tchap-secure-kek-{}", "0f".repeat(16)));
        assert_eq!(id.as_bytes(), &[0x0f; 16]);
        assert_ne!(KekId::new_random().unwrap(), KekId::new_random().unwrap());
    }
}
