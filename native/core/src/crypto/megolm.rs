//! Megolm (`m.megolm.v1.aes-sha2`): room messages.
//!
//! Outbound: one session per room, rotated after 100 messages, after one week, and as soon as
//! a device it was shared with is gone, blocked, or its owner left the room — so a leaver
//! cannot read what follows. The session key is shared (Olm, `m.room_key`) with every live,
//! unblocked device of every member before the first message that uses it; blocked devices get
//! `m.room_key.withheld` (`m.blacklisted`) instead.
//!
//! Inbound: sessions keyed by room and session id, bound to the Olm-verified device that sent
//! the key. Decryption checks: the event's sender owns that device, the sender key (if the
//! event still carries one) is that device's, the room id inside the plaintext is the room the
//! event arrived in, and a message index is never accepted twice for two event ids (replay).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use vodozemac::megolm::{
    GroupSession, GroupSessionPickle, InboundGroupSession, InboundGroupSessionPickle,
    MegolmMessage, SessionConfig, SessionKey,
};
use zeroize::Zeroizing;

use super::CryptoError;
use super::cross_signing::{SharingPolicy, sharing_refusal};
use super::engine::Engine;
use crate::api::types::{MEGOLM_ALGORITHM, RoomEvent};
use crate::store::crypto::{
    self as db, DeviceRecord, DeviceState, InboundRow, OutboundRow, Recipients, now_ms,
};
use crate::store::identity::identity_of;

/// Rotate after this many messages.
pub(crate) const ROTATION_MESSAGES: u32 = 100;
/// Rotate after this long.
pub(crate) const ROTATION_MS: i64 = 7 * 24 * 3600 * 1000;

/// What must happen before the next message can be encrypted in a room.
#[derive(Debug)]
pub(crate) struct OutboundPlan {
    /// The session the message will use.
    pub(crate) session_id: String,
    /// Why a new session was started, if it was.
    pub(crate) rotated: Option<&'static str>,
    /// Devices that must receive the session key first.
    pub(crate) to_share: Vec<DeviceRecord>,
    /// Devices to tell the key is withheld, with the code and reason: blocked ones
    /// (`m.blacklisted`), and those the sharing rule refuses (`m.unverified`).
    pub(crate) to_withhold: Vec<(DeviceRecord, Withheld)>,
}

/// Why a device gets no room key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Withheld {
    /// `m.blacklisted` or `m.unverified`.
    pub(crate) code: &'static str,
    /// A human-readable reason.
    pub(crate) reason: &'static str,
}

/// A decrypted and checked room event.
#[derive(Debug, Clone)]
pub(crate) struct DecryptedEvent {
    pub(crate) event_type: String,
    pub(crate) content: Value,
    pub(crate) sender_device: String,
    /// `tofu`, `blocked` or `unknown`.
    pub(crate) trust: &'static str,
}

/// Inbound sessions unpickled during one operation (one sync response), so that a burst of
/// messages of one session pays for one database read, one unpickle and one trust lookup.
/// Forget an entry when its session changes ([`InboundCache::forget`]).
#[derive(Default)]
pub(crate) struct InboundCache {
    entries: std::collections::HashMap<(String, String), CachedInbound>,
}

struct CachedInbound {
    row: InboundRow,
    session: InboundGroupSession,
    trust: &'static str,
}

impl InboundCache {
    /// Drops a session (a better key for it arrived).
    pub(crate) fn forget(&mut self, room_id: &str, session_id: &str) {
        self.entries
            .remove(&(room_id.to_owned(), session_id.to_owned()));
    }
}

fn malformed(what: &'static str) -> CryptoError {
    CryptoError::Malformed { what }
}

fn contains(set: &db::DeviceSet, d: &DeviceRecord) -> bool {
    set.get(&d.user_id)
        .is_some_and(|s| s.contains(&d.device_id))
}

impl Engine {
    fn unpickle_outbound(&self, row: &OutboundRow) -> Result<GroupSession, CryptoError> {
        let p = GroupSessionPickle::from_encrypted(&row.pickle, self.pickle_key.expose()).map_err(
            |_| CryptoError::Pickle {
                what: "outbound group session",
            },
        )?;
        Ok(GroupSession::from_pickle(p))
    }

    fn unpickle_inbound(&self, row: &InboundRow) -> Result<InboundGroupSession, CryptoError> {
        let p = InboundGroupSessionPickle::from_encrypted(&row.pickle, self.pickle_key.expose())
            .map_err(|_| CryptoError::Pickle {
                what: "inbound group session",
            })?;
        Ok(InboundGroupSession::from_pickle(p))
    }

    /// Decides the session for the next message in `room_id`, whose members' devices are
    /// `devices` (all of them, deleted and blocked included), rotating if needed. A new
    /// session is persisted at once, with our own inbound copy (to read our own messages).
    pub(crate) fn plan_outbound(
        &self,
        conn: &rusqlite::Connection,
        room_id: &str,
        devices: &[DeviceRecord],
        policy: &SharingPolicy,
    ) -> Result<OutboundPlan, CryptoError> {
        // The sharing rule (cross-signing, issue 16), one identity lookup per user.
        let mut identities = BTreeMap::new();
        let mut refusals = BTreeMap::new();
        for d in devices
            .iter()
            .filter(|d| !d.deleted && d.state == DeviceState::Tofu)
        {
            if !identities.contains_key(&d.user_id) {
                identities.insert(d.user_id.clone(), identity_of(conn, &d.user_id)?);
            }
            let identity = identities.get(&d.user_id).and_then(Option::as_ref);
            if let Some(reason) = sharing_refusal(identity, d, policy) {
                refusals.insert((d.user_id.clone(), d.device_id.clone()), reason);
            }
        }
        let refused = |d: &DeviceRecord| refusals.get(&(d.user_id.clone(), d.device_id.clone()));
        let live: Vec<&DeviceRecord> = devices
            .iter()
            .filter(|d| !d.deleted && d.state == DeviceState::Tofu && refused(d).is_none())
            .filter(|d| {
                !(d.user_id == self.account.user_id() && d.device_id == self.account.device_id())
            })
            .collect();
        let existing = db::outbound_session(conn, room_id)?;
        let reason = match &existing {
            None => Some("new"),
            Some(row) if row.message_count >= ROTATION_MESSAGES => Some("message_count"),
            Some(row) if now_ms() - row.created_ms >= ROTATION_MS => Some("age"),
            Some(row) => {
                let gone = row.recipients.shared.iter().any(|(user, ids)| {
                    ids.iter().any(|id| {
                        !live
                            .iter()
                            .any(|d| &d.user_id == user && &d.device_id == id)
                    })
                });
                gone.then_some("member_or_device_removed")
            }
        };
        let row = match (existing, reason) {
            (Some(row), None) => row,
            _ => {
                let session = GroupSession::new(SessionConfig::version_1());
                let row = OutboundRow {
                    room_id: room_id.to_owned(),
                    session_id: session.session_id(),
                    pickle: session.pickle().encrypt(self.pickle_key.expose()),
                    created_ms: now_ms(),
                    message_count: 0,
                    recipients: Recipients::default(),
                };
                db::save_outbound_session(conn, &row)?;
                let inbound =
                    InboundGroupSession::new(&session.session_key(), SessionConfig::version_1());
                db::save_inbound_session(
                    conn,
                    &InboundRow {
                        room_id: room_id.to_owned(),
                        session_id: row.session_id.clone(),
                        sender_key: self.curve25519(),
                        sender_user_id: self.account.user_id().to_owned(),
                        sender_device_id: self.account.device_id().to_owned(),
                        sender_ed25519: self.ed25519(),
                        pickle: inbound.pickle().encrypt(self.pickle_key.expose()),
                        first_index: inbound.first_known_index(),
                    },
                )?;
                row
            }
        };
        let to_share = live
            .iter()
            .filter(|d| !contains(&row.recipients.shared, d))
            .map(|d| (*d).clone())
            .collect();
        let to_withhold = devices
            .iter()
            .filter(|d| !d.deleted && !contains(&row.recipients.withheld, d))
            .filter(|d| {
                !(d.user_id == self.account.user_id() && d.device_id == self.account.device_id())
            })
            .filter_map(|d| {
                let withheld = if d.state == DeviceState::Blocked {
                    Withheld {
                        code: "m.blacklisted",
                        reason: "this device is blocked: its key changed",
                    }
                } else {
                    Withheld {
                        code: "m.unverified",
                        reason: refused(d)?,
                    }
                };
                Some((d.clone(), withheld))
            })
            .collect();
        Ok(OutboundPlan {
            session_id: row.session_id,
            rotated: reason,
            to_share,
            to_withhold,
        })
    }

    /// The `m.room_key` content of the room's current outbound session (at its current index).
    pub(crate) fn room_key_content(
        &self,
        conn: &rusqlite::Connection,
        room_id: &str,
    ) -> Result<Value, CryptoError> {
        let row = db::outbound_session(conn, room_id)?.ok_or(malformed("no outbound session"))?;
        let session = self.unpickle_outbound(&row)?;
        Ok(json!({
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": room_id,
            "session_id": row.session_id,
            "session_key": session.session_key().to_base64(),
        }))
    }

    /// Records that the session key went to `shared` and that `withheld` were told it is
    /// withheld.
    pub(crate) fn mark_shared(
        &self,
        conn: &rusqlite::Connection,
        room_id: &str,
        shared: &[DeviceRecord],
        withheld: &[(DeviceRecord, Withheld)],
    ) -> Result<(), CryptoError> {
        let mut row =
            db::outbound_session(conn, room_id)?.ok_or(malformed("no outbound session"))?;
        for d in shared {
            row.recipients
                .shared
                .entry(d.user_id.clone())
                .or_default()
                .insert(d.device_id.clone());
        }
        for (d, _) in withheld {
            row.recipients
                .withheld
                .entry(d.user_id.clone())
                .or_default()
                .insert(d.device_id.clone());
        }
        db::save_outbound_session(conn, &row)?;
        Ok(())
    }

    /// Encrypts a room event with the room's outbound session; returns the
    /// `m.room.encrypted` content.
    pub(crate) fn megolm_encrypt(
        &self,
        conn: &rusqlite::Connection,
        room_id: &str,
        event_type: &str,
        content: &Value,
    ) -> Result<Value, CryptoError> {
        let mut row =
            db::outbound_session(conn, room_id)?.ok_or(malformed("no outbound session"))?;
        let mut session = self.unpickle_outbound(&row)?;
        let plaintext = Zeroizing::new(
            json!({ "type": event_type, "content": content, "room_id": room_id }).to_string(),
        );
        let message = session.encrypt(plaintext.as_bytes());
        row.pickle = session.pickle().encrypt(self.pickle_key.expose());
        row.message_count += 1;
        db::save_outbound_session(conn, &row)?;
        Ok(json!({
            "algorithm": MEGOLM_ALGORITHM,
            "sender_key": self.curve25519(),
            "ciphertext": message.to_base64(),
            "session_id": row.session_id,
            "device_id": self.account.device_id(),
        }))
    }

    /// Stores a room key received over a verified Olm channel from `from`. Returns the
    /// `(room_id, session_id)` if it is new or better than what we had.
    pub(crate) fn receive_room_key(
        &self,
        conn: &rusqlite::Connection,
        from: &DeviceRecord,
        content: &Value,
    ) -> Result<Option<(String, String)>, CryptoError> {
        let field = |k: &str| content.get(k).and_then(Value::as_str);
        if field("algorithm") != Some(MEGOLM_ALGORITHM) {
            return Err(malformed("room key algorithm"));
        }
        let room_id = field("room_id").ok_or(malformed("room key room_id"))?;
        let session_id = field("session_id").ok_or(malformed("room key session_id"))?;
        let key = Zeroizing::new(
            field("session_key")
                .ok_or(malformed("room key session_key"))?
                .to_owned(),
        );
        let key = SessionKey::from_base64(&key).map_err(|_| malformed("room key session_key"))?;
        let session = InboundGroupSession::new(&key, SessionConfig::version_1());
        if session.session_id() != session_id {
            return Err(malformed("room key: session id does not match the key"));
        }
        if let Some(existing) = db::inbound_session(conn, room_id, session_id)? {
            if existing.sender_key != from.curve25519 {
                return Err(CryptoError::SenderMismatch {
                    claimed: from.user_id.clone(),
                    owner: existing.sender_user_id,
                });
            }
            if existing.first_index <= session.first_known_index() {
                return Ok(None);
            }
        }
        db::save_inbound_session(
            conn,
            &InboundRow {
                room_id: room_id.to_owned(),
                session_id: session_id.to_owned(),
                sender_key: from.curve25519.clone(),
                sender_user_id: from.user_id.clone(),
                sender_device_id: from.device_id.clone(),
                sender_ed25519: from.ed25519.clone(),
                pickle: session.pickle().encrypt(self.pickle_key.expose()),
                first_index: session.first_known_index(),
            },
        )?;
        tracing::debug!(room_id, session_id, from = %from.user_id, "room key received");
        Ok(Some((room_id.to_owned(), session_id.to_owned())))
    }

    /// The Megolm session id of an encrypted room event, if it has one.
    pub(crate) fn session_id_of(event: &RoomEvent) -> Option<&str> {
        event.content.get("session_id").and_then(Value::as_str)
    }

    /// Decrypts and checks an `m.room.encrypted` room event.
    pub(crate) fn megolm_decrypt(
        &self,
        conn: &rusqlite::Connection,
        room_id: &str,
        event: &RoomEvent,
        cache: &mut InboundCache,
    ) -> Result<DecryptedEvent, CryptoError> {
        let content = &event.content;
        if content.get("algorithm").and_then(Value::as_str) != Some(MEGOLM_ALGORITHM) {
            return Err(malformed("room event algorithm"));
        }
        let event_id = event
            .event_id
            .as_deref()
            .ok_or(malformed("event without id"))?;
        let session_id = Self::session_id_of(event).ok_or(malformed("megolm session_id"))?;
        let ciphertext = content
            .get("ciphertext")
            .and_then(Value::as_str)
            .ok_or(malformed("megolm ciphertext"))?;
        let message =
            MegolmMessage::from_base64(ciphertext).map_err(|e| CryptoError::MegolmDecrypt {
                detail: e.to_string(),
            })?;
        let key = (room_id.to_owned(), session_id.to_owned());
        if !cache.entries.contains_key(&key) {
            let row = db::inbound_session(conn, room_id, session_id)?.ok_or_else(|| {
                CryptoError::UnknownSession {
                    session_id: session_id.to_owned(),
                }
            })?;
            let session = self.unpickle_inbound(&row)?;
            let trust = self.trust_of(conn, &row)?;
            cache.entries.insert(
                key.clone(),
                CachedInbound {
                    row,
                    session,
                    trust,
                },
            );
        }
        let cached = cache
            .entries
            .get_mut(&key)
            .ok_or(malformed("inbound session cache"))?;
        let row = &cached.row;
        if event.sender != row.sender_user_id {
            return Err(CryptoError::SenderMismatch {
                claimed: event.sender.clone(),
                owner: row.sender_user_id.clone(),
            });
        }
        if let Some(claimed_key) = content.get("sender_key").and_then(Value::as_str)
            && claimed_key != row.sender_key
        {
            return Err(CryptoError::SenderMismatch {
                claimed: format!("{} (sender key {claimed_key})", event.sender),
                owner: format!("{} (sender key {})", row.sender_user_id, row.sender_key),
            });
        }
        let decrypted =
            cached
                .session
                .decrypt(&message)
                .map_err(|e| CryptoError::MegolmDecrypt {
                    detail: e.to_string(),
                })?;
        let plaintext = Zeroizing::new(decrypted.plaintext);
        let payload: Value =
            serde_json::from_slice(&plaintext).map_err(|_| malformed("megolm payload"))?;
        let inner_room = payload
            .get("room_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if inner_room != room_id {
            return Err(CryptoError::RoomIdMismatch {
                expected: room_id.to_owned(),
                found: inner_room.to_owned(),
            });
        }
        if let Some(first) =
            db::record_megolm_index(conn, session_id, decrypted.message_index, event_id)?
        {
            return Err(CryptoError::Replay {
                session_id: session_id.to_owned(),
                index: decrypted.message_index,
                first_event_id: first,
            });
        }
        let event_type = payload
            .get("type")
            .and_then(Value::as_str)
            .ok_or(malformed("megolm payload type"))?
            .to_owned();
        let inner = payload.get("content").cloned().unwrap_or(Value::Null);
        Ok(DecryptedEvent {
            event_type,
            content: inner,
            sender_device: cached.row.sender_device_id.clone(),
            trust: cached.trust,
        })
    }

    fn trust_of(
        &self,
        conn: &rusqlite::Connection,
        row: &InboundRow,
    ) -> Result<&'static str, CryptoError> {
        if row.sender_user_id == self.account.user_id()
            && row.sender_device_id == self.account.device_id()
        {
            return Ok("own_device");
        }
        let devices = db::devices_of(conn, &row.sender_user_id)?;
        Ok(
            match devices.iter().find(|d| d.device_id == row.sender_device_id) {
                Some(d) if d.state == DeviceState::Blocked => "blocked",
                Some(d) if d.ed25519 == row.sender_ed25519 && !d.deleted => {
                    let identity = crate::store::identity::identity_of(conn, &row.sender_user_id)?;
                    super::cross_signing::device_trust(identity.as_ref(), d)
                }
                _ => "unknown",
            },
        )
    }
}
