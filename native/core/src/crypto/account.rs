//! Our device identity: a vodozemac Olm `Account`, its signed device keys and the one-time and
//! fallback keys we publish.
//!
//! One-time keys follow the order that makes a crash harmless (DESIGN §5):
//! generate → persist (account pickle + the exact upload body, one transaction) → upload →
//! mark published → persist. After a crash before the upload acknowledgement, the *same* body
//! is uploaded again (the server accepts an identical key again), and nothing new is generated
//! while a body is pending: no key is ever published twice with two values, no private key is
//! lost.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tchap_secure_hsm::PickleKey;
use vodozemac::olm::{Account, AccountPickle};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey};

use super::CryptoError;
use super::signing::sign_json;
use crate::api::types::MEGOLM_ALGORITHM;

/// The Olm algorithm we speak.
pub const OLM_ALGORITHM: &str = "m.olm.v1.curve25519-aes-sha2";

/// How many signed one-time keys we keep on the server (vodozemac keeps at most 100 private
/// ones; half of them published leaves room for the pre-key messages in flight).
pub(crate) const OTK_TARGET: usize = 50;

/// Our Olm account, bound to a user and a device.
pub(crate) struct OlmAccount {
    inner: Account,
    user_id: String,
    device_id: String,
}

impl std::fmt::Debug for OlmAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            inner,
            user_id,
            device_id,
        } = self;
        f.debug_struct("OlmAccount")
            .field("user_id", user_id)
            .field("device_id", device_id)
            .field("ed25519", &inner.ed25519_key().to_base64())
            .finish_non_exhaustive()
    }
}

impl OlmAccount {
    /// A new identity for `device_id`.
    pub(crate) fn new(user_id: &str, device_id: &str) -> Self {
        Self {
            inner: Account::new(),
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
        }
    }

    /// Restores an account from its encrypted pickle.
    pub(crate) fn from_pickle(
        pickle: &str,
        key: &PickleKey,
        user_id: &str,
        device_id: &str,
    ) -> Result<Self, CryptoError> {
        let pickle = AccountPickle::from_encrypted(pickle, key.expose())
            .map_err(|_| CryptoError::Pickle { what: "account" })?;
        Ok(Self {
            inner: Account::from_pickle(pickle),
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
        })
    }

    /// The encrypted pickle.
    pub(crate) fn pickle(&self, key: &PickleKey) -> String {
        self.inner.pickle().encrypt(key.expose())
    }

    pub(crate) fn user_id(&self) -> &str {
        &self.user_id
    }

    pub(crate) fn device_id(&self) -> &str {
        &self.device_id
    }

    pub(crate) fn ed25519(&self) -> Ed25519PublicKey {
        self.inner.ed25519_key()
    }

    pub(crate) fn curve25519(&self) -> Curve25519PublicKey {
        self.inner.curve25519_key()
    }

    pub(crate) fn inner_mut(&mut self) -> &mut Account {
        &mut self.inner
    }

    pub(crate) fn inner(&self) -> &Account {
        &self.inner
    }

    fn key_id(&self) -> String {
        format!("ed25519:{}", self.device_id)
    }

    pub(crate) fn sign_object(&self, value: &mut Value) -> Result<(), CryptoError> {
        let user_id = self.user_id.clone();
        let key_id = self.key_id();
        sign_json(value, &user_id, &key_id, |bytes| self.inner.sign(bytes))
            .map_err(CryptoError::from)
    }

    /// Our device keys, self-signed over canonical JSON.
    pub(crate) fn device_keys(&self) -> Result<Value, CryptoError> {
        let mut keys = json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM_ALGORITHM, MEGOLM_ALGORITHM],
            "keys": {
                format!("curve25519:{}", self.device_id): self.curve25519().to_base64(),
                format!("ed25519:{}", self.device_id): self.ed25519().to_base64(),
            },
        });
        self.sign_object(&mut keys)?;
        Ok(keys)
    }

    /// Generates what must be published to reach the targets, given the server's counts, and
    /// returns the `/keys/upload` body (device keys included when `with_device_keys`), or
    /// `None` if nothing is missing. The caller persists the account and the body together
    /// before uploading.
    pub(crate) fn prepare_upload(
        &mut self,
        server_otk_count: u64,
        fallback_needed: bool,
        with_device_keys: bool,
    ) -> Result<Option<Value>, CryptoError> {
        let unpublished = self.inner.one_time_keys().len();
        let have = usize::try_from(server_otk_count)
            .unwrap_or(usize::MAX)
            .saturating_add(unpublished);
        if have < OTK_TARGET {
            self.inner.generate_one_time_keys(OTK_TARGET - have);
        }
        if fallback_needed && self.inner.fallback_key().is_empty() {
            self.inner.generate_fallback_key();
        }
        let one_time: BTreeMap<_, _> = self.inner.one_time_keys().into_iter().collect();
        let fallback: BTreeMap<_, _> = self.inner.fallback_key().into_iter().collect();
        if one_time.is_empty() && fallback.is_empty() && !with_device_keys {
            return Ok(None);
        }
        let mut body = serde_json::Map::new();
        if with_device_keys {
            body.insert("device_keys".into(), self.device_keys()?);
        }
        let mut otks = serde_json::Map::new();
        for (id, key) in one_time {
            let mut signed = json!({ "key": key.to_base64() });
            self.sign_object(&mut signed)?;
            otks.insert(format!("signed_curve25519:{}", id.to_base64()), signed);
        }
        body.insert("one_time_keys".into(), Value::Object(otks));
        let mut fallbacks = serde_json::Map::new();
        for (id, key) in fallback {
            let mut signed = json!({ "key": key.to_base64(), "fallback": true });
            self.sign_object(&mut signed)?;
            fallbacks.insert(format!("signed_curve25519:{}", id.to_base64()), signed);
        }
        if !fallbacks.is_empty() {
            body.insert("fallback_keys".into(), Value::Object(fallbacks));
        }
        Ok(Some(Value::Object(body)))
    }

    /// After the server acknowledged the upload.
    pub(crate) fn mark_published(&mut self) {
        self.inner.mark_keys_as_published();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::signing::verify_json;

    #[test]
    fn device_keys_are_self_signed_and_verify() {
        let account = OlmAccount::new("@a:srv", "DEV");
        let keys = account.device_keys().unwrap();
        verify_json(&keys, "@a:srv", "ed25519:DEV", &account.ed25519()).unwrap();
        assert_eq!(keys["keys"]["ed25519:DEV"], account.ed25519().to_base64());
        let mut tampered = keys.clone();
        tampered["device_id"] = json!("OTHER");
        assert!(verify_json(&tampered, "@a:srv", "ed25519:DEV", &account.ed25519()).is_err());
    }

    #[test]
    fn upload_reaches_the_target_then_nothing_until_published() {
        let mut account = OlmAccount::new("@a:srv", "DEV");
        let body = account.prepare_upload(0, true, true).unwrap().unwrap();
        assert_eq!(body["one_time_keys"].as_object().unwrap().len(), OTK_TARGET);
        assert_eq!(body["fallback_keys"].as_object().unwrap().len(), 1);
        for (_, otk) in body["one_time_keys"].as_object().unwrap() {
            verify_json(otk, "@a:srv", "ed25519:DEV", &account.ed25519()).unwrap();
        }
        // Not yet published: asking again generates nothing new and yields the same keys.
        let again = account.prepare_upload(0, true, false).unwrap().unwrap();
        assert_eq!(again["one_time_keys"], body["one_time_keys"]);
        account.mark_published();
        // The server holds 50: nothing to do.
        assert!(account.prepare_upload(50, false, false).unwrap().is_none());
        // 20 were claimed: top up with exactly 20.
        let top_up = account.prepare_upload(30, false, false).unwrap().unwrap();
        assert_eq!(top_up["one_time_keys"].as_object().unwrap().len(), 20);
    }
}
