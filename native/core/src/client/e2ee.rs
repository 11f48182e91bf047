//! The network side of end-to-end encryption: key upload, device queries, one-time key
//! claims, the outbox (to-device messages and room events, retried with stable transaction
//! ids), wedged-session recovery, and sending an encrypted message.
//!
//! Crypto state changes are always persisted before the request that depends on them is sent:
//! a room key is in the outbox (and the session marked shared) before it goes out; the
//! encrypted message is in the outbox before it is sent; a crash anywhere resumes by flushing
//! the outbox with the same transaction ids, which the server deduplicates.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Client;
use crate::api::types::{MEGOLM_ALGORITHM, SyncResponse};
use crate::crypto::CryptoError;
use crate::crypto::devices::{KeysQueryAnswer, apply_keys_query_answer};
use crate::crypto::engine::Engine;
use crate::crypto::megolm::InboundCache;
use crate::error::Error;
use crate::store::crypto::{self as cdb, DeviceRecord, OutboxRow};
use crate::store::timeline::{self as tl, TimelineEvent};

/// Minimum time between two recoveries of the same wedged Olm channel.
pub(crate) const UNWEDGE_INTERVAL_MS: i64 = 3_600_000;

pub(crate) fn random_txn_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| {
        Error::InvalidArgument {
            what: "system random generator failed".into(),
        }
    })?;
    Ok(format!(
        "ts{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

pub(crate) fn json_body(value: &Value) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(value.to_string().into_bytes())
}

impl Client {
    /// Runs `f` with the engine inside one store transaction. If the transaction fails, the
    /// in-memory engine is reloaded from the store so it never runs ahead of what is committed.
    pub(crate) fn with_engine<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Connection, &mut Engine) -> Result<T, CryptoError>,
    ) -> Result<T, Error> {
        let Self { store, engine, .. } = self;
        let engine_ref = engine.as_mut().ok_or(Error::NotLoggedIn)?;
        let result = store.transaction_seeing(|tx, changed| {
            engine_ref
                .refresh(tx, changed)
                .and_then(|()| f(tx, engine_ref))
                .map_err(CryptoError::into_store_error)
        });
        if result.is_err() {
            self.reload_engine()?;
        }
        Ok(result?)
    }

    /// Reloads the engine from the store (after a failed transaction).
    pub(crate) fn reload_engine(&mut self) -> Result<(), Error> {
        let Some(session) = &self.session else {
            self.engine = None;
            return Ok(());
        };
        let (user_id, device_id) = (session.user_id.clone(), session.device_id.clone());
        let key = self.vault.pickle_key();
        let engine = self.store.transaction_seeing(|tx, _| {
            Engine::load_or_create(tx, &user_id, &device_id, key)
                .map_err(CryptoError::into_store_error)
        })?;
        self.engine = Some(engine);
        Ok(())
    }

    /// Uploads the pending keys (device keys at first login, then one-time and fallback keys),
    /// then marks them published.
    pub(crate) async fn upload_keys(&mut self) -> Result<(), Error> {
        let Some(body) = self.with_engine(|tx, e| e.take_upload_body(tx))? else {
            return Ok(());
        };
        let body = Zeroizing::new(body.into_bytes());
        let _: Value = self
            .authed(
                Method::POST,
                "/keys/upload",
                &["_matrix", "client", "v3", "keys", "upload"],
                Some(body),
            )
            .await?;
        crate::fault::point("after-otk-upload");
        self.with_engine(|tx, e| e.upload_acknowledged(tx))?;
        tracing::debug!("keys uploaded");
        Ok(())
    }

    /// `/keys/query` for the users a sync response needs.
    pub(crate) async fn query_keys_for_sync(
        &self,
        users: &BTreeSet<String>,
    ) -> Result<KeysQueryAnswer, Error> {
        self.query_keys(users).await
    }

    /// `/keys/query` for `users` (decoded so that a device listed twice is noticed).
    pub(crate) async fn query_keys(
        &self,
        users: &BTreeSet<String>,
    ) -> Result<KeysQueryAnswer, Error> {
        let device_keys: serde_json::Map<String, Value> =
            users.iter().map(|u| (u.clone(), json!([]))).collect();
        let body = json_body(&json!({ "device_keys": device_keys }));
        self.authed(
            Method::POST,
            "/keys/query",
            &["_matrix", "client", "v3", "keys", "query"],
            Some(body),
        )
        .await
    }

    /// Queries and applies the device lists of `users` (nothing if empty).
    pub(crate) async fn refresh_devices(
        &mut self,
        users: BTreeSet<String>,
    ) -> Result<usize, Error> {
        if users.is_empty() {
            return Ok(0);
        }
        let answer = self.query_keys(&users).await?;
        let (own_user, own_device) = self.own_ids()?;
        let users: Vec<String> = users.into_iter().collect();
        let changes = self.with_engine(|tx, _| {
            let changes = apply_keys_query_answer(tx, &answer, &users, &own_user, &own_device)?;
            for user in &changes.users_with_removed_devices {
                // A device gone or blocked: every room shared with its owner rotates.
                for room in rooms_with_member(tx, user)? {
                    cdb::discard_outbound_session(tx, &room)?;
                }
            }
            Ok(changes)
        })?;
        Ok(changes.security_events)
    }

    pub(crate) fn own_ids(&self) -> Result<(String, String), Error> {
        let s = self.session.as_ref().ok_or(Error::NotLoggedIn)?;
        Ok((s.user_id.clone(), s.device_id.clone()))
    }

    /// Users whose devices must be known before a sync response is applied: dirty tracked
    /// users, tracked users in `device_lists.changed`, and senders of Olm messages whose
    /// identity key we do not know yet.
    pub(crate) fn users_to_query(
        &self,
        response: &SyncResponse,
    ) -> Result<BTreeSet<String>, Error> {
        let conn = self.store.conn();
        let mut users: BTreeSet<String> = cdb::dirty_users(conn)?.into_iter().collect();
        for user in &response.device_lists.changed {
            if cdb::is_tracked(conn, user)? {
                users.insert(user.clone());
            }
        }
        for raw in &response.to_device.events {
            if raw.get("type").and_then(Value::as_str) != Some("m.room.encrypted") {
                continue;
            }
            let (Some(sender), Some(key)) = (
                raw.get("sender").and_then(Value::as_str),
                raw.pointer("/content/sender_key").and_then(Value::as_str),
            ) else {
                continue;
            };
            if cdb::device_by_curve25519(conn, key)?.is_none() {
                users.insert(sender.to_owned());
            }
        }
        Ok(users)
    }

    /// Claims one-time keys for `devices` and creates Olm sessions; returns the devices that
    /// now have one.
    async fn establish_olm(
        &mut self,
        devices: Vec<DeviceRecord>,
    ) -> Result<Vec<DeviceRecord>, Error> {
        let mut ready = Vec::new();
        let mut missing = Vec::new();
        for d in devices {
            if Engine::has_olm_session(self.store.conn(), &d.curve25519).map_err(crypto_err)? {
                ready.push(d);
            } else {
                missing.push(d);
            }
        }
        let created = self.claim_sessions(missing).await?;
        ready.extend(created);
        Ok(ready)
    }

    /// Recovers wedged Olm channels: a new session and an `m.dummy` so the peer can decrypt
    /// again (at most once an hour per peer).
    pub(crate) async fn unwedge(&mut self) -> Result<(), Error> {
        let pending = cdb::pending_unwedges(self.store.conn())?;
        if pending.is_empty() {
            return Ok(());
        }
        let mut devices = Vec::new();
        for (user, device) in &pending {
            if let Some(d) = cdb::devices_of(self.store.conn(), user)?
                .into_iter()
                .find(|d| &d.device_id == device && !d.deleted)
            {
                devices.push(d);
            }
        }
        // A fresh session: claim a new one-time key even though a (wedged) session exists.
        let devices = self.claim_sessions(devices).await?;
        let txn = random_txn_id()?;
        self.with_engine(|tx, engine| {
            let mut messages: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
            for d in &devices {
                let content = engine.olm_encrypt(tx, d, "m.dummy", &json!({}))?;
                messages
                    .entry(d.user_id.clone())
                    .or_default()
                    .insert(d.device_id.clone(), content);
            }
            if !messages.is_empty() {
                cdb::push_outbox(
                    tx,
                    &OutboxRow::new(
                        txn.clone(),
                        "to_device:m.room.encrypted".into(),
                        String::new(),
                        json!({ "messages": messages }).to_string(),
                    ),
                )?;
            }
            for (user, device) in &pending {
                cdb::unwedge_done(tx, user, device)?;
            }
            Ok(())
        })?;
        let report = self.flush_outbox().await?;
        self.pending_updates.extend(report.updates);
        Ok(())
    }

    /// Claims a one-time key for each device and creates a new Olm session with it (after
    /// checking the key's signature); returns the devices that now have a fresh session.
    async fn claim_sessions(
        &mut self,
        devices: Vec<DeviceRecord>,
    ) -> Result<Vec<DeviceRecord>, Error> {
        if devices.is_empty() {
            return Ok(devices);
        }
        let mut request: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
        for d in &devices {
            request
                .entry(&d.user_id)
                .or_default()
                .insert(&d.device_id, "signed_curve25519");
        }
        let body = json_body(&json!({ "one_time_keys": request }));
        let answer: Value = self
            .authed(
                Method::POST,
                "/keys/claim",
                &["_matrix", "client", "v3", "keys", "claim"],
                Some(body),
            )
            .await?;
        self.with_engine(|tx, engine| {
            let mut created = Vec::new();
            for d in devices {
                let key = answer
                    .get("one_time_keys")
                    .and_then(|k| k.get(&d.user_id))
                    .and_then(|k| k.get(&d.device_id))
                    .and_then(Value::as_object)
                    .and_then(|m| m.iter().find(|(id, _)| id.starts_with("signed_curve25519:")))
                    .map(|(_, v)| v.clone());
                let Some(key) = key else {
                    tracing::warn!(user_id = %d.user_id, device_id = %d.device_id, "no one-time key available");
                    continue;
                };
                match engine.create_outbound_olm(tx, &d, &key) {
                    Ok(()) => created.push(d),
                    Err(CryptoError::Store(s)) => return Err(CryptoError::Store(s)),
                    Err(e) => {
                        crate::store::rooms::record_security_event(
                            tx,
                            &format!("one_time_key_{}", e.code()),
                            None,
                            Some(&d.user_id),
                            &format!("device {}: {e}", d.device_id),
                        )?;
                    }
                }
            }
            Ok(created)
        })
    }

    /// Sends a text message, Megolm-encrypted, into an encrypted room; returns its event id.
    ///
    /// Before the message: the members' device lists are brought up to date, the room's
    /// outbound session is rotated if due, and its key is shared (Olm) with every device that
    /// does not have it; blocked devices are told the key is withheld.
    pub async fn send_text(&mut self, room_id: &str, body: &str) -> Result<String, Error> {
        self.send_room_message(room_id, json!({ "msgtype": "m.text", "body": body }))
            .await
    }

    /// Refuses a room we may not send to: unknown, not Megolm-encrypted, or not joined.
    pub(crate) fn check_sendable_room(&self, room_id: &str) -> Result<(), Error> {
        // Nothing is queued for a locked account: the caller keeps the text.
        self.ensure_unlocked()?;
        let room = self
            .store
            .room(room_id)?
            .ok_or_else(|| Error::InvalidArgument {
                what: format!("unknown room {room_id}"),
            })?;
        if room.encryption.as_deref() != Some(MEGOLM_ALGORITHM) {
            return Err(Error::Crypto(CryptoError::UnencryptedRoom {
                room_id: room_id.to_owned(),
            }));
        }
        if room.membership != "join" {
            return Err(Error::InvalidArgument {
                what: format!("not joined to {room_id}"),
            });
        }
        Ok(())
    }

    /// Sends an `m.room.message` with `content`, Megolm-encrypted (see [`Client::send_text`]).
    pub(crate) async fn send_room_message(
        &mut self,
        room_id: &str,
        content: Value,
    ) -> Result<String, Error> {
        self.send_room_event(room_id, "m.room.message", content)
            .await
    }

    /// Sends a room event of `event_type` with `content`, Megolm-encrypted, through the room's
    /// queue. An `m.room.message` gets a local echo and its event id is returned; another type
    /// (an in-room verification event) has no echo and returns its transaction id once sent.
    pub(crate) async fn send_room_event(
        &mut self,
        room_id: &str,
        event_type: &str,
        content: Value,
    ) -> Result<String, Error> {
        self.check_sendable_room(room_id)?;
        let echoed = event_type == "m.room.message";
        let (own_user, _) = self.own_ids()?;
        let members = crate::store::rooms::member_ids(self.store.conn(), room_id)?;
        self.with_engine(|tx, _| {
            for m in &members {
                cdb::track_user(tx, m)?;
            }
            Ok(())
        })?;
        let dirty: BTreeSet<String> = cdb::dirty_users(self.store.conn())?.into_iter().collect();
        self.refresh_devices(dirty).await?;

        let mut devices = Vec::new();
        for m in &members {
            devices.extend(cdb::devices_of(self.store.conn(), m)?);
        }
        let policy = crate::crypto::cross_signing::SharingPolicy::of(&self.config);
        let plan = self.with_engine(|tx, engine| {
            let plan = engine.plan_outbound(tx, room_id, &devices, &policy)?;
            for (d, withheld) in &plan.to_withhold {
                if withheld.code == "m.unverified" {
                    // Journaled once per session and device (the plan withholds each once).
                    crate::store::rooms::record_security_event(
                        tx,
                        "room_key_withheld",
                        Some(room_id),
                        Some(&d.user_id),
                        &format!("device {}: {}", d.device_id, withheld.reason),
                    )?;
                }
            }
            Ok(plan)
        })?;
        if let Some(reason) = plan.rotated {
            tracing::info!(room_id, session_id = %plan.session_id, reason, "Megolm session started");
        }
        let shareable = self.establish_olm(plan.to_share).await?;
        let (to_device_txn, withheld_txn, event_txn) =
            (random_txn_id()?, random_txn_id()?, random_txn_id()?);
        self.with_engine(|tx, engine| {
            let key = engine.room_key_content(tx, room_id)?;
            let mut messages: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
            for d in &shareable {
                let encrypted = engine.olm_encrypt(tx, d, "m.room_key", &key)?;
                messages
                    .entry(d.user_id.clone())
                    .or_default()
                    .insert(d.device_id.clone(), encrypted);
            }
            // One request per recipient user: a crash between two of them leaves the rest in
            // the outbox, sent on restart before the message they unlock.
            for (user, per_device) in messages {
                cdb::push_outbox(
                    tx,
                    &OutboxRow::new(
                        format!("{to_device_txn}-{}", cdb::outbox_len(tx)?),
                        "to_device:m.room.encrypted".into(),
                        room_id.to_owned(),
                        json!({ "messages": { user: per_device } }).to_string(),
                    ),
                )?;
            }
            let mut withheld: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
            for (d, why) in &plan.to_withhold {
                withheld.entry(d.user_id.clone()).or_default().insert(
                    d.device_id.clone(),
                    json!({
                        "algorithm": MEGOLM_ALGORITHM,
                        "room_id": room_id,
                        "session_id": plan.session_id,
                        "sender_key": engine.curve25519(),
                        "code": why.code,
                        "reason": why.reason,
                    }),
                );
            }
            if !withheld.is_empty() {
                cdb::push_outbox(
                    tx,
                    &OutboxRow::new(
                        withheld_txn.clone(),
                        "to_device:m.room_key.withheld".into(),
                        room_id.to_owned(),
                        json!({ "messages": withheld }).to_string(),
                    ),
                )?;
            }
            engine.mark_shared(tx, room_id, &shareable, &plan.to_withhold)?;
            let encrypted = engine.megolm_encrypt(tx, room_id, event_type, &content)?;
            cdb::push_outbox(
                tx,
                &OutboxRow::new(
                    event_txn.clone(),
                    "room_event:m.room.encrypted".into(),
                    room_id.to_owned(),
                    encrypted.to_string(),
                ),
            )?;
            if echoed {
                // The local echo: the member sees the message at once, with its state.
                let body = content.get("body").and_then(Value::as_str);
                let attachment = super::media::attachment_column(&content).ok().flatten();
                tl::save_echo(
                    tx,
                    &event_txn,
                    room_id,
                    &own_user,
                    body,
                    attachment.as_deref(),
                )?;
                super::relations::after_echo(tx, &event_txn, &content)?;
            }
            Ok(())
        })?;
        crate::fault::point("message-queued");
        let report = self.flush_outbox().await?;
        self.pending_updates.extend(report.updates);
        let queued = |local_id: String| Error::SendQueued {
            local_id,
            cause: report
                .transient
                .get(room_id)
                .cloned()
                .unwrap_or_else(|| "waiting for earlier messages".to_owned()),
        };
        if !echoed {
            let waiting = cdb::outbox_lane(self.store.conn(), room_id)?
                .iter()
                .any(|(txn, _)| *txn == event_txn);
            return if waiting {
                Err(queued(event_txn))
            } else {
                Ok(event_txn)
            };
        }
        let echo = tl::by_txn_id(self.store.conn(), &event_txn)?;
        match echo {
            Some(e) if e.state == "failed" => Err(Error::SendFailed {
                local_id: event_txn,
                reason: e.error.unwrap_or_default(),
            }),
            Some(e) if e.state == "queued" => Err(queued(event_txn)),
            Some(e) if !e.event_id.starts_with('~') => Ok(e.event_id),
            _ => Err(Error::InvalidArgument {
                what: "the message was queued but the server returned no event id".into(),
            }),
        }
    }

    /// Tries to decrypt an encrypted room event as fetched from the server, with every check,
    /// and keeps nothing (no index recorded, no timeline entry): "can this device read this
    /// event?", for audits and tests. Returns the plaintext body.
    pub fn try_decrypt(&mut self, room_id: &str, raw: &Value) -> Result<String, Error> {
        let event = crate::api::types::RoomEvent::parse(raw).ok_or(Error::InvalidArgument {
            what: "not an event".into(),
        })?;
        let Self { store, engine, .. } = self;
        let engine = engine.as_ref().ok_or(Error::NotLoggedIn)?;
        let result = store.scratch_transaction(|tx| {
            Ok(engine.megolm_decrypt(tx, room_id, &event, &mut InboundCache::default()))
        })?;
        let decrypted = result?;
        Ok(decrypted
            .content
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// The devices of `user_id` as pinned (after a fresh query).
    pub async fn devices(&mut self, user_id: &str) -> Result<Vec<DeviceRecord>, Error> {
        self.with_engine(|tx, _| {
            cdb::track_user(tx, user_id)?;
            cdb::mark_dirty(tx, user_id)?;
            Ok(())
        })?;
        self.refresh_devices(BTreeSet::from([user_id.to_owned()]))
            .await?;
        Ok(cdb::devices_of(self.store.conn(), user_id)?)
    }

    /// The devices of `user_id` as this device knows them (no request).
    pub fn known_devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>, Error> {
        Ok(cdb::devices_of(self.store.conn(), user_id)?)
    }

    /// The last `limit` events of a room (decrypted, waiting for a key, or refused).
    pub fn messages(&self, room_id: &str, limit: u32) -> Result<Vec<TimelineEvent>, Error> {
        // A locked account shows nothing.
        self.ensure_unlocked()?;
        let mut events = tl::timeline(self.store.conn(), room_id, limit)?;
        self.name_senders(&mut events);
        Ok(events)
    }

    /// Our device's identity keys `(ed25519, curve25519)`.
    pub fn identity_keys(&self) -> Option<(String, String)> {
        self.engine.as_ref().map(|e| (e.ed25519(), e.curve25519()))
    }

    /// Forces a new Megolm session for the next message in `room_id` (key rotation on demand,
    /// e.g. after a suspected compromise). Returns whether a session was discarded.
    pub fn rotate_room_key(&mut self, room_id: &str) -> Result<bool, Error> {
        self.with_engine(|tx, _| Ok(cdb::discard_outbound_session(tx, room_id)?))
    }

    /// The session id of our current outbound Megolm session in a room.
    pub fn outbound_session_id(&self, room_id: &str) -> Result<Option<String>, Error> {
        Ok(cdb::outbound_session(self.store.conn(), room_id)?.map(|r| r.session_id))
    }
}

fn crypto_err(e: CryptoError) -> Error {
    Error::Crypto(e)
}

/// Rooms where `user_id` is joined or invited.
fn rooms_with_member(
    conn: &rusqlite::Connection,
    user_id: &str,
) -> Result<Vec<String>, CryptoError> {
    let mut stmt = conn
        .prepare(
            "SELECT room_id FROM members WHERE user_id = ?1 AND membership IN ('join', 'invite')",
        )
        .map_err(|e| CryptoError::Store(e.into()))?;
    let rows = stmt
        .query_map([user_id], |r| r.get(0))
        .map_err(|e| CryptoError::Store(e.into()))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| CryptoError::Store(e.into()))
}
