//! Decrypting a notification (issue 17 item 2).
//!
//! A push carries ids only (`event_id_only`): [`Client::notification`] fetches the event over
//! the pinned transport and decrypts it with the stored sessions. If its room key has not
//! arrived, the to-device messages are fetched — and only them — for a bounded time, then the
//! answer is the decrypted notification or the typed `cannot_decrypt_yet`, never a partial or
//! guessed one.
//!
//! ## Concurrency (the main sync may run at the same time, in this process or another)
//!
//! - **One writer.** Every write goes through an immediate SQLite transaction: SQLite's write
//!   lock on the database is the one-writer lock, across processes (a sync round and a
//!   notification's to-device fetch commit in well under a second; a writer waits up to
//!   20 s). A process's only in-memory copy of the store is the Olm account: each
//!   transaction that uses it first checks `PRAGMA data_version` under the write lock and
//!   reads the account again if another process committed ([`crate::store::Store::transaction_seeing`]).
//! - **Own position.** The to-device messages are fetched with a `/sync` filtered to no room,
//!   from a position of its own (`notify.to_device_since`), committed with what it applied.
//!   The main `/sync` token never moves here, so no room event is skipped by the main path.
//!   The homeserver deletes a to-device message only once a request acknowledges a position
//!   past it, and a path acknowledges only what it committed: no message is lost.
//! - **Applied once.** The same message can thus reach both paths. Every applied to-device
//!   message is recorded by a digest of its sender, type and content; a second delivery is
//!   dropped as applied — never decrypted twice, never journaled as a replay.
//! - **Nothing for the main sync is lost.** What the main sync reports (verification
//!   messages, stored events that a late key decrypted) is deferred to its next round.
//! - **The event itself** is decrypted in a transaction that is rolled back: the main sync
//!   stores it in its place in the timeline. A server that answers with another event than
//!   the one asked is refused and journaled.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use super::Client;
use super::rooms::check_room_id;
use super::sync::{self, PushCandidate};
use crate::api::types::{RoomEvent, SyncResponse};
use crate::api::{ApiError, call};
use crate::crypto::CryptoError;
use crate::crypto::megolm::{DecryptedEvent, InboundCache};
use crate::error::Error;
use crate::net::Request;
use crate::push_rules::{PushContext, PushRules};
use crate::store::notify;

/// The wait for a missing room key when the caller has no preference.
pub const DEFAULT_NOTIFICATION_WAIT: Duration = Duration::from_secs(5);
/// The longest wait accepted (a push handler on Android has about ten seconds).
pub const MAX_NOTIFICATION_WAIT: Duration = Duration::from_secs(30);
/// The to-device fetch: no room, no presence, no account data.
const TO_DEVICE_FILTER: &str =
    r#"{"room":{"rooms":[]},"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]}}"#;
/// Cap on a to-device answer (Synapse sends at most 100 messages per answer).
const MAX_TO_DEVICE_BYTES: usize = 8 * 1024 * 1024;
/// Cap on one fetched event: the specification's limit on an event, with room for `unsigned`.
const MAX_EVENT_ANSWER_BYTES: usize = 128 * 1024;
/// A to-device answer that came back empty at once is not asked again sooner than this.
const EMPTY_ANSWER_PAUSE: Duration = Duration::from_millis(250);

/// What a notification shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A text message (`m.text`, `m.notice`, `m.emote`, …): `body` holds it.
    Message,
    /// A file, image, video or voice message: shown as "a file" (no name, no body).
    File,
    /// An invitation of this user to the room.
    Invite,
    /// A key verification request.
    Verification,
    /// Another event (a reaction, a state change, …): `event_type` says which.
    Other,
}

/// A decrypted notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// The room.
    pub room_id: String,
    /// The event.
    pub event_id: String,
    /// The sender's user id.
    pub sender: String,
    /// The sender's name as shown: from the display name in the room's member state,
    /// neutralised (bidi and invisible characters removed, the organisation split off), or
    /// the user id's localpart when there is none.
    pub sender_name: Option<String>,
    /// The sender's organisation (`Jean Martin [Ministère des Armées]` → `Ministère des
    /// Armées`), if the display name carries one that parses unambiguously.
    pub sender_organisation: Option<String>,
    /// What the name parser found suspicious (`bidi_control`, `lookalike_organisation`, …;
    /// see [`crate::display_name::NameIssue`]): the app marks such a sender.
    pub sender_name_issues: Vec<crate::display_name::NameIssue>,
    /// The room's name (if it has one and this device has seen it).
    pub room_name: Option<String>,
    /// What it is.
    pub kind: NotificationKind,
    /// The decrypted event's type (`m.room.message`, …).
    pub event_type: String,
    /// The text of a [`NotificationKind::Message`].
    pub body: Option<String>,
    /// The trust in the sending device, as for every message (`verified`, `cross_signed`,
    /// `tofu`, `own_device`, `blocked`, `unknown`); `None` for an event in clear (an invite).
    pub trust: Option<String>,
    /// The sender's device (from the Olm-verified room key).
    pub sender_device: Option<String>,
    /// Server timestamp (ms).
    pub origin_server_ts: u64,
    /// Whether the account's push rules, evaluated here on the decrypted event, say it
    /// notifies (a muted room: `false`; a mention or keyword in it: `true`). A pushed event
    /// that does not notify is shown silently or not at all, as the app decides.
    pub notify: bool,
    /// Whether the rules ask for it to be highlighted (a mention, a keyword).
    pub highlight: bool,
    /// The sound the rules ask for (`default`), if any.
    pub sound: Option<String>,
}

fn check_event_id(event_id: &str) -> Result<(), Error> {
    let body = event_id.strip_prefix('$').unwrap_or_default();
    if !body.is_empty() && event_id.len() <= 255 && body.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: format!("not an event id: {event_id:?}"),
        })
    }
}

fn refused(code: &'static str, detail: impl Into<String>) -> Error {
    Error::Notification {
        code,
        detail: detail.into(),
    }
}

fn kind_of(event_type: &str, content: &Value) -> NotificationKind {
    if event_type != "m.room.message" {
        return NotificationKind::Other;
    }
    match content.get("msgtype").and_then(Value::as_str) {
        Some("m.file" | "m.image" | "m.video" | "m.audio") => NotificationKind::File,
        Some("m.key.verification.request") => NotificationKind::Verification,
        _ => NotificationKind::Message,
    }
}

impl Client {
    /// The notification for `event_id` in `room_id` (the ids a push carried): the event
    /// fetched over the pinned transport and decrypted with the stored sessions, waiting up to
    /// `wait` (at most [`MAX_NOTIFICATION_WAIT`]) for its room key by fetching to-device
    /// messages only. Safe while the main sync runs, here or in another process (see the
    /// module documentation).
    ///
    /// Errors: `cannot_decrypt_yet` (the key did not arrive within `wait`: ask again later,
    /// or let the main sync show the message), `notification_refused` (a message in clear, a
    /// redacted event, or the server answered with another event than the one asked —
    /// journaled), a crypto error for an event that will never decrypt (a replay, a sender
    /// that does not own the session), or the network's error.
    pub async fn notification(
        &mut self,
        room_id: &str,
        event_id: &str,
        wait: Duration,
    ) -> Result<Notification, Error> {
        check_room_id(room_id)?;
        check_event_id(event_id)?;
        if wait > MAX_NOTIFICATION_WAIT {
            return Err(Error::InvalidArgument {
                what: format!("wait: at most {} s", MAX_NOTIFICATION_WAIT.as_secs()),
            });
        }
        let (own_user, _) = self.own_ids()?;
        let deadline = tokio::time::Instant::now() + wait;
        // The main sync may have stored it already.
        if let Some(stored) = crate::store::timeline::timeline_event(self.store.conn(), event_id)?
            && stored.room_id == room_id
            && stored.state == "decrypted"
        {
            return self.stored_notification(stored);
        }
        let event = self.fetch_event(room_id, event_id).await?;
        if event.event_type != "m.room.encrypted" {
            return self.in_clear(room_id, event, &own_user);
        }
        if event.content.as_object().is_none_or(|c| c.is_empty()) {
            return Err(refused("notification_refused", "the event was redacted"));
        }
        loop {
            if let Some(decrypted) = self.decrypt_notified(room_id, &event)? {
                return self.decrypted_notification(room_id, event, decrypted);
            }
            let now = tokio::time::Instant::now();
            let Some(remaining) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                return Err(refused(
                    "cannot_decrypt_yet",
                    "the room key of this message has not arrived yet",
                ));
            };
            let received = self.fetch_to_device(remaining).await?;
            if received == 0 && now.elapsed() < EMPTY_ANSWER_PAUSE {
                tokio::time::sleep(EMPTY_ANSWER_PAUSE.min(remaining)).await;
            }
        }
    }

    /// `GET /rooms/{room}/event/{event}`, checked to be the event asked for.
    async fn fetch_event(&mut self, room_id: &str, event_id: &str) -> Result<RoomEvent, Error> {
        let token = self.token()?.clone();
        let raw: Value = call(&self.transport, "/rooms/event", || {
            let mut r = Request::new(
                Method::GET,
                vec![
                    "_matrix", "client", "v3", "rooms", room_id, "event", event_id,
                ],
            );
            r.access_token = Some(&token);
            r.max_body_bytes = Some(MAX_EVENT_ANSWER_BYTES);
            r
        })
        .await?;
        let event = RoomEvent::parse(&raw).ok_or_else(|| {
            Error::Api(ApiError::MalformedResponse {
                endpoint: "/rooms/event",
                detail: "not an event".into(),
            })
        })?;
        let answered_room = raw.get("room_id").and_then(Value::as_str);
        if event.event_id.as_deref() != Some(event_id)
            || answered_room.is_some_and(|r| r != room_id)
        {
            self.store.transaction(|tx| {
                crate::store::rooms::record_security_event(
                    tx,
                    "notification_event_mismatch",
                    Some(room_id),
                    Some(&event.sender),
                    &format!("asked for {event_id}, the server answered with another event"),
                )
            })?;
            return Err(refused(
                "notification_refused",
                "the server answered with another event than the one asked",
            ));
        }
        Ok(event)
    }

    /// Decrypts `event` with the stored sessions, in a transaction that is rolled back (the
    /// replay check runs; nothing is recorded: the main sync stores the event in its place).
    /// `None` if its room key is not here yet.
    fn decrypt_notified(
        &mut self,
        room_id: &str,
        event: &RoomEvent,
    ) -> Result<Option<DecryptedEvent>, Error> {
        let Self { store, engine, .. } = self;
        let engine = engine.as_ref().ok_or(Error::NotLoggedIn)?;
        let mut cache = InboundCache::default();
        let outcome = store.scratch_transaction(|tx| {
            match engine.megolm_decrypt(tx, room_id, event, &mut cache) {
                Ok(d) => Ok(Ok(d)),
                Err(e) => sync::fatal(e).map(Err),
            }
        })?;
        match outcome {
            Ok(d) => Ok(Some(d)),
            Err(e) if sync::waits_for_key(&e) => Ok(None),
            Err(e) => Err(Error::Crypto(e)),
        }
    }

    /// One to-device fetch from the notification path's own position, applied and committed
    /// with it; returns how many messages came. An answer fetched from a position another
    /// process moved meanwhile is dropped (its messages come again from the newer one).
    async fn fetch_to_device(&mut self, timeout: Duration) -> Result<usize, Error> {
        let since = notify::notify_since(self.store.conn())?;
        let token = self.token()?.clone();
        let response: SyncResponse = call(&self.transport, "/sync", || {
            super::sync_request(
                &token,
                since.as_deref(),
                timeout,
                TO_DEVICE_FILTER,
                MAX_TO_DEVICE_BYTES,
            )
        })
        .await?;
        if !sync::valid_token(&response.next_batch) {
            return Err(Error::Api(ApiError::MalformedResponse {
                endpoint: "/sync",
                detail: "next_batch is empty or too long".into(),
            }));
        }
        // As in the main sync: the devices of the senders of Olm messages we cannot place
        // yet (and of users whose lists are stale) are asked for first, so that a room key
        // from a device we have not seen yet is not refused as from an unknown device.
        let users = self.users_to_query(&response)?;
        let answer = if users.is_empty() {
            None
        } else {
            Some(self.query_keys_for_sync(&users).await?)
        };
        let users: Vec<String> = users.into_iter().collect();
        let (own_user, own_device) = self.own_ids()?;
        let events = &response.to_device.events;
        let Self { store, engine, .. } = self;
        let engine = engine.as_mut().ok_or(Error::NotLoggedIn)?;
        let applied = store.transaction_seeing(|tx, changed| {
            engine
                .refresh(tx, changed)
                .map_err(CryptoError::into_store_error)?;
            if notify::notify_since(tx)? != since {
                return Ok(None);
            }
            if let Some(answer) = &answer {
                crate::crypto::devices::apply_keys_query_answer(
                    tx,
                    answer,
                    &users,
                    &own_user,
                    &own_device,
                )
                .map_err(CryptoError::into_store_error)?;
            }
            let keys = sync::apply_to_device_only(tx, engine, events)?;
            notify::set_notify_since(tx, &response.next_batch)?;
            crate::fault::point("before-notify-commit");
            Ok(Some(keys))
        });
        match applied {
            Ok(Some(keys)) => {
                tracing::debug!(
                    messages = events.len(),
                    room_keys = keys,
                    "notification path: to-device messages applied"
                );
                Ok(events.len())
            }
            Ok(None) => {
                tracing::debug!("notification path: position moved meanwhile; answer dropped");
                Ok(0)
            }
            Err(e) => {
                self.reload_engine()?;
                Err(e.into())
            }
        }
    }

    fn names(
        &self,
        room_id: &str,
        sender: &str,
    ) -> Result<(crate::display_name::ParsedName, Option<String>), Error> {
        let room_name = self.store.room(room_id)?.and_then(|r| r.name);
        let display_name = crate::store::rooms::member(self.store.conn(), room_id, sender)?
            .and_then(|(_, name)| name);
        let parsed = crate::display_name::parse(
            display_name.as_deref(),
            sender,
            self.config.known_organisations(),
        );
        Ok((parsed, room_name))
    }

    /// The push rules in force: the account's (from the sync), else the specification's
    /// defaults.
    fn push_rules(&self) -> Result<PushRules, Error> {
        let (own_user, _) = self.own_ids()?;
        let stored = crate::store::push::push_rules(self.store.conn())?;
        let rules = match stored.as_ref().map(PushRules::from_account_data) {
            Some(Ok(rules)) => Ok(rules),
            // Stored only once checked: unreadable now means a corrupt store.
            Some(Err(_)) => {
                return Err(Error::Store(crate::store::StoreError::Corrupt {
                    detail: "stored push rules".into(),
                }));
            }
            None => PushRules::server_default(&own_user),
        };
        rules.map_err(|e| Error::InvalidArgument {
            what: format!("push rules: {e}"),
        })
    }

    /// What the rules need to know of `room_id` for an event from `sender`.
    fn push_context(&self, room_id: &str, sender: &str) -> Result<PushContext, Error> {
        let (own_user, _) = self.own_ids()?;
        let members = self.store.members(room_id)?;
        let joined = members.iter().filter(|m| m.membership == "join").count();
        let display_name = members
            .iter()
            .find(|m| m.user_id == own_user)
            .and_then(|m| m.display_name.clone());
        let powers = crate::store::push::power_levels(self.store.conn(), room_id)?;
        let mut context = PushContext::new(own_user, room_id, joined as u64);
        context.display_name = display_name;
        context.sender_power_level = powers.level_of(sender);
        context.notification_power_levels = powers.notifications;
        Ok(context)
    }

    /// The notification for `candidate`, with the push rules' decision.
    fn compose(&self, rules: &PushRules, c: PushCandidate) -> Result<Notification, Error> {
        let text = |key: &str| {
            c.event
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (sender, event_type) = (text("sender"), text("type"));
        let content = c.event.get("content").cloned().unwrap_or(Value::Null);
        let decision = rules.evaluate(&c.event, &self.push_context(&c.room_id, &sender)?);
        let (sender_name, room_name) = self.names(&c.room_id, &sender)?;
        let invite = event_type == "m.room.member"
            && content.get("membership").and_then(Value::as_str) == Some("invite");
        let kind = if invite {
            NotificationKind::Invite
        } else {
            kind_of(&event_type, &content)
        };
        let body = (kind == NotificationKind::Message)
            .then(|| content.get("body").and_then(Value::as_str))
            .flatten()
            .map(str::to_owned);
        Ok(Notification {
            room_id: c.room_id,
            event_id: c.event_id,
            sender,
            sender_name: Some(sender_name.name),
            sender_organisation: sender_name.organisation,
            sender_name_issues: sender_name.issues,
            room_name,
            kind,
            event_type,
            body,
            trust: c.trust.map(str::to_owned),
            sender_device: c.sender_device,
            origin_server_ts: c.origin_server_ts,
            notify: decision.notify,
            highlight: decision.highlight,
            sound: decision.sound,
        })
    }

    /// The notifications among a sync's candidates: each evaluated against the push rules,
    /// those that notify kept, in order.
    pub(crate) fn push_notifications(
        &self,
        candidates: Vec<PushCandidate>,
    ) -> Result<Vec<Notification>, Error> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let rules = self.push_rules()?;
        let mut out = Vec::new();
        for c in candidates {
            let n = self.compose(&rules, c)?;
            if n.notify {
                out.push(n);
            }
        }
        Ok(out)
    }

    fn decrypted_notification(
        &self,
        room_id: &str,
        event: RoomEvent,
        d: DecryptedEvent,
    ) -> Result<Notification, Error> {
        let candidate = PushCandidate {
            room_id: room_id.to_owned(),
            event_id: event.event_id.unwrap_or_default(),
            event: json!({ "type": d.event_type, "sender": event.sender, "content": d.content }),
            origin_server_ts: event.origin_server_ts.unwrap_or_default(),
            sender_device: Some(d.sender_device),
            trust: Some(d.trust),
        };
        self.compose(&self.push_rules()?, candidate)
    }

    /// From what the main sync stored: the body (or the file) is all that is kept of the
    /// content, so the rules see an `m.text` (or `m.file`) message with that body.
    pub(crate) fn stored_notification(
        &self,
        stored: crate::store::timeline::TimelineEvent,
    ) -> Result<Notification, Error> {
        let mut content = match (&stored.attachment, &stored.body) {
            (Some(a), _) => json!({ "msgtype": a.msgtype, "body": "" }),
            (None, Some(body)) => json!({ "msgtype": "m.text", "body": body }),
            (None, None) => json!({}),
        };
        if let Some(mentions) =
            crate::store::relations::mentions(self.store.conn(), &stored.event_id)?
        {
            content["m.mentions"] = mentions;
        }
        let event_type = if stored.attachment.is_some() || stored.body.is_some() {
            "m.room.message"
        } else {
            "m.room.encrypted"
        };
        let candidate = PushCandidate {
            room_id: stored.room_id,
            event_id: stored.event_id,
            event: json!({ "type": event_type, "sender": stored.sender, "content": content }),
            origin_server_ts: u64::try_from(stored.origin_ts).unwrap_or_default(),
            sender_device: stored.sender_device,
            trust: None,
        };
        let mut n = self.compose(&self.push_rules()?, candidate)?;
        n.trust = stored.trust;
        Ok(n)
    }

    /// An event in clear: an invitation of ours is shown as one; a message in clear is
    /// refused (never shown: every room is encrypted) and journaled; anything else is named
    /// by its type only.
    fn in_clear(
        &mut self,
        room_id: &str,
        event: RoomEvent,
        own_user: &str,
    ) -> Result<Notification, Error> {
        if event.event_type == "m.room.message" {
            self.store.transaction(|tx| {
                crate::store::rooms::record_security_event(
                    tx,
                    "unencrypted_message_refused",
                    Some(room_id),
                    Some(&event.sender),
                    event.event_id.as_deref().unwrap_or_default(),
                )
            })?;
            return Err(refused(
                "notification_refused",
                "a message in clear is never shown",
            ));
        }
        let ours = event.state_key.as_deref() == Some(own_user);
        let candidate = PushCandidate::in_clear(room_id, &event);
        let mut n = self.compose(&self.push_rules()?, candidate)?;
        if n.kind == NotificationKind::Invite && !ours {
            // Someone else's invitation: not ours to announce as one.
            n.kind = NotificationKind::Other;
        }
        // Nothing in clear is shown as text.
        n.body = None;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_anything_is_asked() {
        assert!(check_event_id("$abc:x").is_ok());
        assert!(check_event_id("$Abc_-").is_ok());
        for bad in ["", "$", "abc", "$a b", "$a\u{7}", "!room:x"] {
            assert!(check_event_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_event_id(&format!("${}", "a".repeat(254))).is_ok());
        assert!(check_event_id(&format!("${}", "a".repeat(255))).is_err());
    }

    #[test]
    fn a_file_is_never_shown_by_its_body() {
        assert_eq!(
            kind_of("m.room.message", &json!({"msgtype": "m.text", "body": "x"})),
            NotificationKind::Message
        );
        for t in ["m.file", "m.image", "m.video", "m.audio"] {
            assert_eq!(
                kind_of(
                    "m.room.message",
                    &json!({"msgtype": t, "body": "secret.pdf"})
                ),
                NotificationKind::File
            );
        }
        assert_eq!(
            kind_of(
                "m.room.message",
                &json!({"msgtype": "m.key.verification.request"})
            ),
            NotificationKind::Verification
        );
        assert_eq!(
            kind_of("m.reaction", &json!({"body": "x"})),
            NotificationKind::Other
        );
    }
}
