//! Cross-signing (issue 16; the trust rules are in `threat-model/THREAT-MODEL.md`, "Trust
//! beyond first use").
//!
//! - **Our identity**: a master key, a self-signing key (signs our devices) and a user-signing
//!   key (signs the master keys of the users we verified), generated once for the account. The
//!   private keys are stored only sealed (AES-256-GCM under a key derived from the pickle key,
//!   bound to our user id) inside the SQLCipher database, and live in memory only as
//!   vodozemac keys, wiped on drop.
//! - **Other users' identities**: each user's master key is pinned the first time a
//!   `/keys/query` answer shows it; the self-signing key counts only if that pinned master key
//!   signed it; a device counts as the user's own only if that self-signing key signed its
//!   keys (`devices.cross_signed`). Another master key later is a *change*: the pin stays,
//!   the change is journaled, and the user gets no room keys until verified again. A server
//!   that stops showing an identity does not downgrade the user to trust on first use: the
//!   pin and the self-signing key it vouched for stay.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::{Value, json};
use tchap_secure_hsm::PickleKey;
use vodozemac::{Ed25519PublicKey, Ed25519SecretKey};
use zeroize::Zeroizing;

use super::CryptoError;
use super::devices::ed25519_from_base64;
use super::signing::{sign_json, verify_json};
use crate::store::crypto::DeviceRecord;
use crate::store::identity::{self as db, IdentityRecord, IdentityState};
use crate::store::rooms::record_security_event;

/// HKDF info of the sealing key (a key of its own, derived from the pickle key).
const SEAL_INFO: &[u8] = b"tchap-secure cross-signing seal v1";
/// Version byte of a sealed blob.
const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

fn malformed(what: &'static str) -> CryptoError {
    CryptoError::Malformed { what }
}

/// The key id of a cross-signing key: `ed25519:<the key itself>`.
pub(crate) fn key_id(public: &str) -> String {
    format!("ed25519:{public}")
}

/// Our three cross-signing private keys. Not `Clone`; wiped on drop (vodozemac's
/// `Ed25519SecretKey` zeroizes its `SigningKey`).
pub(crate) struct OwnKeys {
    master: Ed25519SecretKey,
    self_signing: Ed25519SecretKey,
    user_signing: Ed25519SecretKey,
}

impl std::fmt::Debug for OwnKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            master,
            self_signing,
            user_signing,
        } = self;
        f.debug_struct("OwnKeys")
            .field("master", &master.public_key().to_base64())
            .field("self_signing", &self_signing.public_key().to_base64())
            .field("user_signing", &user_signing.public_key().to_base64())
            .finish_non_exhaustive()
    }
}

/// The sealing key, derived from the pickle key.
fn seal_key(pickle_key: &PickleKey) -> Result<LessSafeKey, CryptoError> {
    struct Len;
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = Salt::new(HKDF_SHA256, &[]).extract(pickle_key.expose());
    let okm = prk
        .expand(&[SEAL_INFO], Len)
        .map_err(|_| malformed("cross-signing seal key"))?;
    let mut bytes = Zeroizing::new([0u8; 32]);
    okm.fill(&mut *bytes)
        .map_err(|_| malformed("cross-signing seal key"))?;
    let key =
        UnboundKey::new(&AES_256_GCM, &*bytes).map_err(|_| malformed("cross-signing seal key"))?;
    Ok(LessSafeKey::new(key))
}

fn seal_aad(user_id: &str) -> Vec<u8> {
    let mut aad = b"tchap-secure cross-signing v1\0".to_vec();
    aad.extend_from_slice(user_id.as_bytes());
    aad
}

impl OwnKeys {
    /// Three fresh keys.
    pub(crate) fn generate() -> Self {
        Self {
            master: Ed25519SecretKey::new(),
            self_signing: Ed25519SecretKey::new(),
            user_signing: Ed25519SecretKey::new(),
        }
    }

    /// Public master key (unpadded base64).
    pub(crate) fn master(&self) -> String {
        self.master.public_key().to_base64()
    }

    /// Public self-signing key.
    pub(crate) fn self_signing(&self) -> String {
        self.self_signing.public_key().to_base64()
    }

    /// Public user-signing key.
    pub(crate) fn user_signing(&self) -> String {
        self.user_signing.public_key().to_base64()
    }

    /// The private keys sealed for storage: base64 of version ‖ nonce ‖ AES-256-GCM(master ‖
    /// self-signing ‖ user-signing), the user id as associated data.
    pub(crate) fn seal(
        &self,
        pickle_key: &PickleKey,
        user_id: &str,
    ) -> Result<String, CryptoError> {
        let key = seal_key(pickle_key)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| malformed("random nonce"))?;
        let mut buffer = Zeroizing::new(Vec::with_capacity(96 + 16));
        for k in [&self.master, &self.self_signing, &self.user_signing] {
            buffer.extend_from_slice(&*k.to_bytes());
        }
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(seal_aad(user_id)),
            &mut *buffer,
        )
        .map_err(|_| malformed("cross-signing seal"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buffer.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buffer);
        Ok(STANDARD_NO_PAD.encode(out))
    }

    /// Opens what [`Self::seal`] produced for the same pickle key and user.
    pub(crate) fn open(
        sealed: &str,
        pickle_key: &PickleKey,
        user_id: &str,
    ) -> Result<Self, CryptoError> {
        let bytes = STANDARD_NO_PAD
            .decode(sealed)
            .map_err(|_| CryptoError::Pickle {
                what: "cross-signing keys",
            })?;
        let unopenable = || CryptoError::Pickle {
            what: "cross-signing keys",
        };
        let (version, rest) = bytes.split_first().ok_or_else(unopenable)?;
        if *version != SEAL_VERSION || rest.len() != NONCE_LEN + 96 + 16 {
            return Err(unopenable());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unopenable())?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plain = seal_key(pickle_key)?
            .open_in_place(nonce, Aad::from(seal_aad(user_id)), &mut buffer)
            .map_err(|_| unopenable())?;
        let key_at = |i: usize| -> Result<Ed25519SecretKey, CryptoError> {
            let mut seed = Zeroizing::new([0u8; 32]);
            seed.copy_from_slice(plain.get(i * 32..(i + 1) * 32).ok_or_else(unopenable)?);
            Ok(Ed25519SecretKey::from_slice(&seed))
        };
        Ok(Self {
            master: key_at(0)?,
            self_signing: key_at(1)?,
            user_signing: key_at(2)?,
        })
    }

    fn key_object(user_id: &str, usage: &str, public: &str) -> Value {
        json!({
            "user_id": user_id,
            "usage": [usage],
            "keys": { key_id(public): public },
        })
    }

    /// The `/keys/device_signing/upload` body (without `auth`): the master key signed by our
    /// device (as matrix-sdk does, so that our other devices can tie it to a device they
    /// know), the self-signing and user-signing keys signed by the master key.
    pub(crate) fn upload_body(
        &self,
        user_id: &str,
        sign_with_device: impl FnOnce(&mut Value) -> Result<(), CryptoError>,
    ) -> Result<Value, CryptoError> {
        let master = self.master();
        let mut master_key = Self::key_object(user_id, "master", &master);
        sign_with_device(&mut master_key)?;
        let mut self_signing_key = Self::key_object(user_id, "self_signing", &self.self_signing());
        sign_json(&mut self_signing_key, user_id, &key_id(&master), |b| {
            self.master.sign(b)
        })?;
        let mut user_signing_key = Self::key_object(user_id, "user_signing", &self.user_signing());
        sign_json(&mut user_signing_key, user_id, &key_id(&master), |b| {
            self.master.sign(b)
        })?;
        Ok(json!({
            "master_key": master_key,
            "self_signing_key": self_signing_key,
            "user_signing_key": user_signing_key,
        }))
    }

    /// The `/keys/signatures/upload` body signing one of our devices (its device keys, as
    /// published) with our self-signing key.
    pub(crate) fn sign_device_body(
        &self,
        user_id: &str,
        device_id: &str,
        device_keys: &Value,
    ) -> Result<Value, CryptoError> {
        let mut signed = strip_for_signing(device_keys)?;
        sign_json(&mut signed, user_id, &key_id(&self.self_signing()), |b| {
            self.self_signing.sign(b)
        })?;
        Ok(json!({ user_id: { device_id: signed } }))
    }

    /// The `/keys/signatures/upload` body signing another user's master key object (as the
    /// server showed it) with our user-signing key.
    #[allow(
        dead_code,
        reason = "called once a verification succeeds (issue 16 item 2)"
    )]
    pub(crate) fn sign_master_body(
        &self,
        our_user_id: &str,
        their_user_id: &str,
        their_master: &str,
        master_object: &Value,
    ) -> Result<Value, CryptoError> {
        let mut signed = strip_for_signing(master_object)?;
        sign_json(
            &mut signed,
            our_user_id,
            &key_id(&self.user_signing()),
            |b| self.user_signing.sign(b),
        )?;
        Ok(json!({ their_user_id: { their_master: signed } }))
    }
}

/// The object as it must be signed and uploaded: without `unsigned`, and with only the
/// signatures we add (the server merges them with those it holds).
fn strip_for_signing(object: &Value) -> Result<Value, CryptoError> {
    let Value::Object(map) = object else {
        return Err(malformed("key object to sign"));
    };
    let mut map = map.clone();
    map.remove("unsigned");
    map.remove("signatures");
    Ok(Value::Object(map))
}

/// A user's cross-signing key of one usage from a `/keys/query` answer, checked for shape:
/// `user_id` is the user, `usage` names the usage, exactly one Ed25519 key whose id is the
/// key itself. `Ok(None)` if the answer has none for the user.
pub(crate) fn cross_signing_key<'a>(
    answer: &'a Value,
    field: &str,
    user_id: &str,
    usage: &str,
) -> Result<Option<(&'a Value, String, Ed25519PublicKey)>, CryptoError> {
    let Some(object) = answer.get(field).and_then(|m| m.get(user_id)) else {
        return Ok(None);
    };
    if object.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(malformed("cross-signing key: user id does not match"));
    }
    let usages = object
        .get("usage")
        .and_then(Value::as_array)
        .ok_or(malformed("cross-signing key: no usage"))?;
    if !usages.iter().any(|u| u.as_str() == Some(usage)) {
        return Err(malformed("cross-signing key: wrong usage"));
    }
    let keys = object
        .get("keys")
        .and_then(Value::as_object)
        .ok_or(malformed("cross-signing key: no keys"))?;
    let mut entries = keys.iter();
    let (Some((id, value)), None) = (entries.next(), entries.next()) else {
        return Err(malformed("cross-signing key: not exactly one key"));
    };
    let public = value
        .as_str()
        .ok_or(malformed("cross-signing key: key is not a string"))?;
    if *id != key_id(public) {
        return Err(malformed("cross-signing key: key id does not name the key"));
    }
    let key = ed25519_from_base64(public).ok_or(malformed("cross-signing key: ed25519 key"))?;
    Ok(Some((object, public.to_owned(), key)))
}

/// Whether `object` carries a valid signature by `user_id`'s key `public`.
pub(crate) fn signed_by(object: &Value, user_id: &str, public: &str) -> bool {
    ed25519_from_base64(public)
        .is_some_and(|key| verify_json(object, user_id, &key_id(public), &key).is_ok())
}

/// Our own user-signing key, if we trust it: ours (generated here and published), or the one
/// our verified own identity signed in this answer (a device of ours that another verified).
pub(crate) fn trusted_own_user_signing(
    conn: &rusqlite::Connection,
    answer: &Value,
    own_user_id: &str,
) -> Result<Option<String>, CryptoError> {
    if let Some(own) = db::load_own(conn, db::Slot::Current)?
        && own.state != db::Publication::Pending
    {
        return Ok(Some(own.user_signing));
    }
    let Some(identity) = db::identity_of(conn, own_user_id)? else {
        return Ok(None);
    };
    if identity.state != IdentityState::Verified {
        return Ok(None);
    }
    Ok(
        match cross_signing_key(answer, "user_signing_keys", own_user_id, "user_signing") {
            Ok(Some((object, public, _))) if signed_by(object, own_user_id, &identity.master) => {
                Some(public)
            }
            _ => None,
        },
    )
}

/// What [`apply_identity`] concluded for one user.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct IdentityOutcome {
    /// The self-signing key (unpadded base64) the user's devices must be signed by to count as
    /// theirs; `None` if the user has no pinned identity (legacy trust on first use).
    pub(crate) self_signing: Option<String>,
    /// Security events recorded.
    pub(crate) security_events: usize,
}

/// Checks and pins `user_id`'s identity from a `/keys/query` answer (see the module
/// documentation). `own_user_signing`: our own user-signing key, if we trust it — a master
/// key it signed is *verified*.
pub(crate) fn apply_identity(
    conn: &rusqlite::Connection,
    answer: &Value,
    user_id: &str,
    own_user_signing: Option<(&str, &str)>,
) -> Result<IdentityOutcome, CryptoError> {
    let mut outcome = IdentityOutcome::default();
    let pinned = db::identity_of(conn, user_id)?;
    let mut journal = |kind: &str, detail: String| -> Result<(), CryptoError> {
        outcome.security_events += 1;
        record_security_event(conn, kind, None, Some(user_id), &detail)?;
        Ok(())
    };
    let served = cross_signing_key(answer, "master_keys", user_id, "master").and_then(|master| {
        let Some(master) = master else {
            return Ok(None);
        };
        let ssk = cross_signing_key(answer, "self_signing_keys", user_id, "self_signing")?;
        Ok(Some((master, ssk)))
    });
    let (master_object, master, ssk) = match served {
        Ok(Some(((object, master, _), ssk))) => (object, master, ssk),
        Ok(None) => {
            // No identity served: a pinned one stays (no downgrade to trust on first use).
            outcome.self_signing = pinned.and_then(|p| p.self_signing);
            return Ok(outcome);
        }
        Err(e) => {
            journal(
                "invalid_cross_signing_keys",
                format!("cross-signing keys refused: {e}"),
            )?;
            outcome.self_signing = pinned.and_then(|p| p.self_signing);
            return Ok(outcome);
        }
    };
    // The self-signing key counts only if this master key signed it.
    let ssk = match ssk {
        Some((object, public, _)) if signed_by(object, user_id, &master) => Some(public),
        Some((_, public, _)) => {
            journal(
                "invalid_cross_signing_keys",
                format!("self-signing key {public} refused: not signed by the master key {master}"),
            )?;
            None
        }
        None => None,
    };
    let verified_by_us = own_user_signing.is_some_and(|(our_user, our_usk)| {
        our_user != user_id && signed_by(master_object, our_user, our_usk)
    });
    let record = match pinned {
        None => {
            tracing::info!(user_id, master, "cross-signing identity pinned");
            IdentityRecord {
                user_id: user_id.to_owned(),
                master,
                self_signing: ssk,
                state: if verified_by_us {
                    IdentityState::Verified
                } else {
                    IdentityState::Pinned
                },
                changed_master: None,
            }
        }
        Some(p) if p.master == master => IdentityRecord {
            // A new self-signing key signed by the pinned master key replaces the old one; an
            // unsigned one never does.
            self_signing: ssk.or(p.self_signing),
            state: match p.state {
                IdentityState::Changed => IdentityState::Pinned,
                IdentityState::Pinned if verified_by_us => IdentityState::Verified,
                s => s,
            },
            changed_master: None,
            ..p
        },
        Some(p) if verified_by_us => {
            // Another master key, signed by our own user-signing key: one of our devices
            // verified the user's new identity interactively. The new key is pinned.
            journal(
                "identity_reverified",
                format!(
                    "the master key {} was replaced by {master}, which we verified",
                    p.master
                ),
            )?;
            IdentityRecord {
                master,
                self_signing: ssk,
                state: IdentityState::Verified,
                changed_master: None,
                ..p
            }
        }
        Some(p) => {
            if p.changed_master.as_deref() != Some(master.as_str()) {
                journal(
                    "identity_changed",
                    format!(
                        "the master key changed ({} -> {master}): no room keys until verified again",
                        p.master
                    ),
                )?;
            }
            IdentityRecord {
                state: IdentityState::Changed,
                changed_master: Some(master),
                ..p
            }
        }
    };
    outcome.self_signing = record.self_signing.clone();
    db::save_identity(conn, &record)?;
    Ok(outcome)
}

/// What [`acknowledge_change`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acknowledgement {
    /// The new master key is pinned (`pinned`, not `verified`); the user's devices must be
    /// queried again (they are marked dirty) before any counts as signed by it.
    Done(IdentityRecord),
    /// The user's identity has not changed (or is not known): nothing to acknowledge.
    NotChanged,
    /// The server shows yet another master key than the one the member acknowledged.
    ChangedAgain,
}

/// The member acknowledges `user_id`'s new identity without verifying them again (where the
/// managed configuration allows it): `shown_master`, the key the member was shown, must be the
/// changed key as stored. It replaces the pinned key, trusted as on first sight; the
/// self-signing key and every device's signature by it are forgotten until the next
/// `/keys/query` (the user is marked dirty), so no device gets keys on the old key's word.
pub(crate) fn acknowledge_change(
    conn: &rusqlite::Connection,
    user_id: &str,
    shown_master: &str,
) -> Result<Acknowledgement, CryptoError> {
    let Some(pinned) = db::identity_of(conn, user_id)? else {
        return Ok(Acknowledgement::NotChanged);
    };
    let Some(changed) = pinned.changed_master.clone() else {
        return Ok(Acknowledgement::NotChanged);
    };
    if pinned.state != IdentityState::Changed {
        return Ok(Acknowledgement::NotChanged);
    }
    if changed != shown_master {
        return Ok(Acknowledgement::ChangedAgain);
    }
    let record = IdentityRecord {
        master: changed,
        self_signing: None,
        state: IdentityState::Pinned,
        changed_master: None,
        ..pinned.clone()
    };
    db::save_identity(conn, &record)?;
    crate::store::crypto::forget_cross_signatures(conn, user_id)?;
    crate::store::crypto::mark_dirty(conn, user_id)?;
    record_security_event(
        conn,
        "identity_change_acknowledged",
        None,
        Some(user_id),
        &format!(
            "the new master key {} was accepted in place of {} without verification",
            record.master, pinned.master
        ),
    )?;
    Ok(Acknowledgement::Done(record))
}

/// The trust shown for a device of a user (and with each message its device sent):
/// `blocked`, `unknown` (deleted), `tofu` (no cross-signing identity: legacy pinning),
/// `identity_changed`, `unsigned` (not signed by the pinned identity), `verified` or
/// `identity_pinned`.
pub(crate) fn device_trust(identity: Option<&IdentityRecord>, d: &DeviceRecord) -> &'static str {
    use crate::store::crypto::DeviceState;
    if d.state == DeviceState::Blocked {
        return "blocked";
    }
    if d.deleted {
        return "unknown";
    }
    match identity {
        None => "tofu",
        Some(i) if i.state == IdentityState::Changed => "identity_changed",
        Some(_) if !d.cross_signed => "unsigned",
        Some(i) if i.state == IdentityState::Verified => "verified",
        Some(_) => "identity_pinned",
    }
}

/// Who gets our room keys: the managed configuration's rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SharingPolicy {
    /// `share_keys_with`.
    pub(crate) share_keys_with: crate::config::KeySharing,
    /// `require_cross_signing`.
    pub(crate) require_cross_signing: bool,
}

impl SharingPolicy {
    pub(crate) fn of(config: &crate::config::Config) -> Self {
        Self {
            share_keys_with: config.share_keys_with(),
            require_cross_signing: config.require_cross_signing(),
        }
    }
}

/// Why a live, unblocked device gets no room key under `policy` (told so with
/// `m.room_key.withheld`, code `m.unverified`), or `None` if it gets it.
pub(crate) fn sharing_refusal(
    identity: Option<&IdentityRecord>,
    d: &DeviceRecord,
    policy: &SharingPolicy,
) -> Option<&'static str> {
    use crate::config::KeySharing;
    match identity {
        None if policy.require_cross_signing || policy.share_keys_with == KeySharing::Verified => {
            Some("its owner has no cross-signing identity")
        }
        None => None,
        Some(i) if i.state == IdentityState::Changed => {
            Some("its owner's identity changed: verify them again")
        }
        Some(_) if !d.cross_signed => Some("the device is not signed by its owner's identity"),
        Some(i)
            if policy.share_keys_with == KeySharing::Verified
                && i.state != IdentityState::Verified =>
        {
            Some("its owner is not verified")
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests;
