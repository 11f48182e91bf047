//! Olm (`m.olm.v1.curve25519-aes-sha2`): encrypted to-device messages between two devices.
//!
//! Decryption checks, all of which must pass before a payload (typically a room key) is used:
//! the payload names us as recipient with our Ed25519 key; its `sender` is the event's sender;
//! the Curve25519 key the Olm session is bound to belongs to a device we track, of that same
//! user, not blocked, whose pinned Ed25519 key is the one the payload claims. A message from
//! a device we do not know is refused (`UnknownDevice`), not trusted on its own say-so.

use serde_json::{Value, json};
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{OlmMessage, Session, SessionConfig, SessionPickle};
use zeroize::Zeroizing;

use super::CryptoError;
use super::account::OLM_ALGORITHM;
use super::engine::Engine;
use super::signing::verify_json;
use crate::store::crypto::{self as db, DeviceRecord, DeviceState};

/// A decrypted and checked to-device payload.
#[derive(Debug)]
pub(crate) struct OlmDecrypted {
    /// The verified sending device.
    pub(crate) device: DeviceRecord,
    /// The inner event type (`m.room_key`, `m.dummy`, …).
    pub(crate) event_type: String,
    /// The inner content.
    pub(crate) content: Value,
}

fn malformed(what: &'static str) -> CryptoError {
    CryptoError::Malformed { what }
}

impl Engine {
    fn unpickle_session(&self, pickle: &str) -> Result<Session, CryptoError> {
        let p = SessionPickle::from_encrypted(pickle, self.pickle_key.expose()).map_err(|_| {
            CryptoError::Pickle {
                what: "olm session",
            }
        })?;
        Ok(Session::from_pickle(p))
    }

    fn save_session(
        &self,
        conn: &rusqlite::Connection,
        session: &Session,
        sender_key: &str,
    ) -> Result<(), CryptoError> {
        db::save_olm_session(
            conn,
            &session.session_id(),
            sender_key,
            &session.pickle().encrypt(self.pickle_key.expose()),
        )?;
        Ok(())
    }

    /// Whether we have an Olm session with this identity key.
    pub(crate) fn has_olm_session(
        conn: &rusqlite::Connection,
        curve25519: &str,
    ) -> Result<bool, CryptoError> {
        Ok(!db::olm_sessions(conn, curve25519)?.is_empty())
    }

    /// Creates an outbound Olm session with `device` from a one-time key claimed for it,
    /// after checking the key is signed by the device's pinned Ed25519 key.
    pub(crate) fn create_outbound_olm(
        &self,
        conn: &rusqlite::Connection,
        device: &DeviceRecord,
        one_time_key: &Value,
    ) -> Result<(), CryptoError> {
        let ed25519 = vodozemac::Ed25519PublicKey::from_base64(&device.ed25519)
            .map_err(|_| malformed("pinned ed25519 key"))?;
        verify_json(
            one_time_key,
            &device.user_id,
            &format!("ed25519:{}", device.device_id),
            &ed25519,
        )?;
        let otk = one_time_key
            .get("key")
            .and_then(Value::as_str)
            .and_then(|k| Curve25519PublicKey::from_base64(k).ok())
            .ok_or(malformed("claimed one-time key"))?;
        let identity = Curve25519PublicKey::from_base64(&device.curve25519)
            .map_err(|_| malformed("pinned curve25519 key"))?;
        let session = self
            .account
            .inner()
            .create_outbound_session(SessionConfig::version_1(), identity, otk)
            .map_err(|_| malformed("one-time key (non-contributory)"))?;
        self.save_session(conn, &session, &device.curve25519)?;
        tracing::debug!(user_id = %device.user_id, device_id = %device.device_id, "Olm session created");
        Ok(())
    }

    /// Encrypts `event_type`/`content` for `device` with our most recent Olm session with it
    /// (the caller has made sure one exists). Returns the `m.room.encrypted` content.
    pub(crate) fn olm_encrypt(
        &self,
        conn: &rusqlite::Connection,
        device: &DeviceRecord,
        event_type: &str,
        content: &Value,
    ) -> Result<Value, CryptoError> {
        let (_, pickle) = db::olm_sessions(conn, &device.curve25519)?
            .into_iter()
            .next()
            .ok_or(CryptoError::OlmDecrypt {
                sender_key: device.curve25519.clone(),
            })?;
        let mut session = self.unpickle_session(&pickle)?;
        let payload = Zeroizing::new(
            json!({
                "type": event_type,
                "content": content,
                "sender": self.account.user_id(),
                "sender_device": self.account.device_id(),
                "keys": { "ed25519": self.ed25519() },
                "recipient": device.user_id,
                "recipient_keys": { "ed25519": device.ed25519 },
            })
            .to_string(),
        );
        let message = session
            .encrypt(payload.as_bytes())
            .map_err(|_| malformed("olm session cannot encrypt"))?;
        self.save_session(conn, &session, &device.curve25519)?;
        let message = serde_json::to_value(&message).map_err(|_| malformed("olm message"))?;
        Ok(json!({
            "algorithm": OLM_ALGORITHM,
            "sender_key": self.curve25519(),
            "ciphertext": { device.curve25519.clone(): message },
        }))
    }

    /// Decrypts and checks an Olm `m.room.encrypted` to-device event from `sender`.
    /// Session state changes (a new inbound session, a consumed one-time key, a ratchet step)
    /// are written through `conn` even when a later check fails.
    pub(crate) fn olm_decrypt(
        &mut self,
        conn: &rusqlite::Connection,
        sender: &str,
        content: &Value,
    ) -> Result<OlmDecrypted, CryptoError> {
        if content.get("algorithm").and_then(Value::as_str) != Some(OLM_ALGORITHM) {
            return Err(malformed("to-device algorithm"));
        }
        let sender_key = content
            .get("sender_key")
            .and_then(Value::as_str)
            .ok_or(malformed("olm sender_key"))?
            .to_owned();
        let sender_curve = Curve25519PublicKey::from_base64(&sender_key)
            .map_err(|_| malformed("olm sender_key"))?;
        let ours = content
            .get("ciphertext")
            .and_then(|c| c.get(self.curve25519()))
            .ok_or(malformed("olm ciphertext not addressed to our key"))?;
        let message: OlmMessage =
            serde_json::from_value(ours.clone()).map_err(|_| malformed("olm message"))?;

        let plaintext =
            Zeroizing::new(self.olm_plaintext(conn, &sender_key, sender_curve, &message)?);
        let payload: Value =
            serde_json::from_slice(&plaintext).map_err(|_| malformed("olm payload"))?;
        let field = |path: &str| payload.pointer(path).and_then(Value::as_str);
        if field("/sender") != Some(sender) {
            return Err(CryptoError::OlmPayload {
                reason: "sender does not match the event",
            });
        }
        if field("/recipient") != Some(self.account.user_id()) {
            return Err(CryptoError::OlmPayload {
                reason: "not addressed to us",
            });
        }
        if field("/recipient_keys/ed25519") != Some(self.ed25519().as_str()) {
            return Err(CryptoError::OlmPayload {
                reason: "recipient key is not ours",
            });
        }
        let device =
            db::device_by_curve25519(conn, &sender_key)?.ok_or(CryptoError::UnknownDevice {
                sender_key: sender_key.clone(),
            })?;
        if device.user_id != sender {
            return Err(CryptoError::OlmPayload {
                reason: "the sending device belongs to another user",
            });
        }
        if field("/keys/ed25519") != Some(device.ed25519.as_str()) {
            return Err(CryptoError::OlmPayload {
                reason: "claimed ed25519 key is not the device's pinned key",
            });
        }
        if device.state == DeviceState::Blocked {
            return Err(CryptoError::BlockedDevice {
                user_id: device.user_id,
                device_id: device.device_id,
            });
        }
        let event_type = field("/type")
            .ok_or(malformed("olm payload type"))?
            .to_owned();
        let content = payload
            .get("content")
            .cloned()
            .ok_or(malformed("olm payload content"))?;
        Ok(OlmDecrypted {
            device,
            event_type,
            content,
        })
    }

    /// Tries every session with the peer, then (for a pre-key message) a new inbound session.
    ///
    /// A pre-key message whose session we already hold and that none of our sessions decrypts
    /// is a replay (its message key was used; our fallback key, which is not consumed, would
    /// otherwise let it create the session again and overwrite the advanced one): refused,
    /// [`CryptoError::OlmReplay`], and nothing is written — as matrix-sdk-crypto does.
    fn olm_plaintext(
        &mut self,
        conn: &rusqlite::Connection,
        sender_key: &str,
        sender_curve: Curve25519PublicKey,
        message: &OlmMessage,
    ) -> Result<Vec<u8>, CryptoError> {
        let sessions = db::olm_sessions(conn, sender_key)?;
        for (_, pickle) in &sessions {
            let mut session = self.unpickle_session(pickle)?;
            if let Ok(plaintext) = session.decrypt(message) {
                self.save_session(conn, &session, sender_key)?;
                return Ok(plaintext);
            }
        }
        let OlmMessage::PreKey(pre_key) = message else {
            return Err(CryptoError::OlmDecrypt {
                sender_key: sender_key.to_owned(),
            });
        };
        let session_id = pre_key.session_id();
        if sessions.iter().any(|(id, _)| *id == session_id) {
            return Err(CryptoError::OlmReplay {
                sender_key: sender_key.to_owned(),
            });
        }
        let created = self
            .account
            .inner_mut()
            .create_inbound_session(SessionConfig::version_1(), sender_curve, pre_key)
            .map_err(|_| CryptoError::OlmDecrypt {
                sender_key: sender_key.to_owned(),
            })?;
        self.save_session(conn, &created.session, sender_key)?;
        // The one-time key is consumed: persist the account in the same transaction.
        let pending = db::load_account(conn)?.and_then(|r| r.pending_upload);
        self.save(conn, pending.as_deref())?;
        Ok(created.plaintext)
    }
}
