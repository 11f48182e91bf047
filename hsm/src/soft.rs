//! Software KEKs in process memory — **for tests only**.
//!
//! Lets the core client and the CLI test the whole key hierarchy without a token. It offers
//! none of the hardware guarantees: the keys are ordinary heap bytes, and they vanish with the
//! process. It is compiled only with the `soft-vault` feature, which release builds refuse
//! (`compile_error!` in `lib.rs`); [`SoftVault::new`] also refuses at run time, should a build
//! ever disable debug assertions some other way.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::backend::{KekId, KeyVault, NONCE_LEN, TAG_LEN};
use crate::error::VaultError;
use crate::secret::SecretBytes;

/// KEKs by id; each key is zeroized when removed or when the vault is dropped.
type Keys = HashMap<KekId, Box<Zeroizing<[u8; 32]>>>;

/// An in-memory [`KeyVault`] (AES-256-GCM with `ring`), for tests.
pub struct SoftVault {
    keys: Mutex<Keys>,
}

impl SoftVault {
    /// An empty software vault. Fails with [`VaultError::SoftVaultInRelease`] without debug
    /// assertions.
    pub fn new() -> Result<Self, VaultError> {
        if !cfg!(debug_assertions) {
            return Err(VaultError::SoftVaultInRelease);
        }
        Ok(Self {
            keys: Mutex::new(HashMap::new()),
        })
    }

    fn keys(&self) -> Result<MutexGuard<'_, Keys>, VaultError> {
        self.keys.lock().map_err(|_| VaultError::Pkcs11 {
            op: "soft vault lock",
            detail: "poisoned by a panic during an earlier operation".to_owned(),
        })
    }

    /// How many KEKs the vault holds (tests check that failures leave none behind).
    #[cfg(test)]
    pub(crate) fn kek_count(&self) -> usize {
        self.keys().map_or(0, |keys| keys.len())
    }

    fn cipher(&self, id: &KekId) -> Result<LessSafeKey, VaultError> {
        let keys = self.keys()?;
        let key = keys.get(id).ok_or(VaultError::KekNotFound)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &key[..]).map_err(|_| VaultError::Rng)?;
        Ok(LessSafeKey::new(unbound))
    }
}

impl std::fmt::Debug for SoftVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { keys: _ } = self;
        f.write_str("SoftVault(<redacted>)")
    }
}

impl KeyVault for SoftVault {
    fn describe(&self) -> String {
        "soft (test only, not hardware-bound)".to_owned()
    }

    fn generate_kek(&self, id: &KekId) -> Result<(), VaultError> {
        let mut keys = self.keys()?;
        if keys.contains_key(id) {
            return Err(VaultError::KekExists);
        }
        let mut key = Box::new(Zeroizing::new([0u8; 32]));
        SystemRandom::new()
            .fill(&mut key[..])
            .map_err(|_| VaultError::Rng)?;
        keys.insert(id.clone(), key);
        Ok(())
    }

    fn wrap(&self, id: &KekId, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let cipher = self.cipher(id)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| VaultError::Rng)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let tag = cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed[NONCE_LEN..],
            )
            .map_err(|_| VaultError::Rng)?;
        sealed.extend_from_slice(tag.as_ref());
        Ok(sealed)
    }

    fn unwrap(&self, id: &KekId, aad: &[u8], wrapped: &[u8]) -> Result<SecretBytes, VaultError> {
        let cipher = self.cipher(id)?;
        let (nonce, sealed) = wrapped
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(VaultError::Unwrap)?;
        // Decrypted in place; the allocation then moves, uncopied, into the SecretBytes (whose
        // zeroization also covers the tag bytes left in the spare capacity).
        let mut buffer = Zeroizing::new(sealed.to_vec());
        let len = cipher
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut buffer,
            )
            .map_err(|_| VaultError::Unwrap)?
            .len();
        buffer.truncate(len);
        Ok(SecretBytes::new(std::mem::take(&mut *buffer)))
    }

    fn destroy_kek(&self, id: &KekId) -> Result<(), VaultError> {
        // The removed key is zeroized when dropped here.
        self.keys()?
            .remove(id)
            .map(drop)
            .ok_or(VaultError::KekNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_failures() {
        let soft = SoftVault::new().unwrap();
        let id = KekId::new_random().unwrap();
        assert!(matches!(
            soft.wrap(&id, b"", b"x"),
            Err(VaultError::KekNotFound)
        ));
        soft.generate_kek(&id).unwrap();
        assert!(matches!(soft.generate_kek(&id), Err(VaultError::KekExists)));

        let wrapped = soft.wrap(&id, b"aad", b"secret").unwrap();
        assert_eq!(wrapped.len(), NONCE_LEN + 6 + TAG_LEN);
        assert_ne!(
            soft.wrap(&id, b"aad", b"secret").unwrap(),
            wrapped,
            "fresh nonce"
        );
        assert_eq!(
            soft.unwrap(&id, b"aad", &wrapped).unwrap().expose(),
            b"secret"
        );
        assert!(matches!(
            soft.unwrap(&id, b"other", &wrapped),
            Err(VaultError::Unwrap)
        ));
        for i in 0..wrapped.len() {
            let mut tampered = wrapped.clone();
            tampered[i] ^= 0x01;
            assert!(matches!(
                soft.unwrap(&id, b"aad", &tampered),
                Err(VaultError::Unwrap)
            ));
        }
        assert!(matches!(
            soft.unwrap(&id, b"aad", &wrapped[..11]),
            Err(VaultError::Unwrap)
        ));

        soft.destroy_kek(&id).unwrap();
        assert!(matches!(
            soft.destroy_kek(&id),
            Err(VaultError::KekNotFound)
        ));
        assert!(matches!(
            soft.unwrap(&id, b"aad", &wrapped),
            Err(VaultError::KekNotFound)
        ));
    }
}
