//! Replies, mentions, edits and "delete for everyone" (issue 18 items 1–2).
//!
//! Received:
//! - A relation counts only from the decrypted payload: a `m.relates_to` the server can read
//!   (the clear part of `m.room.encrypted`) is ignored. Ours is only ever sent encrypted, so
//!   the server does not learn which message a reply or an edit is about.
//! - An edit (`m.replace` with `m.new_content`) is shown only if it comes from the sender of
//!   the message, in the same room, of a message (not of another edit, of a redacted event,
//!   or of another kind of event): else it is refused and journaled (`edit_refused`). The
//!   latest valid edit (by server timestamp, then event id) is shown; the text it replaces is
//!   erased. An edit that arrives before its message waits for it, and is checked then.
//! - A redaction counts if it comes from the event's sender or from a member whose power
//!   level reaches the room's `redact` level, in the event's room: the event's text, its
//!   edits' text and its attachment (name, key) are erased, leaving a tombstone (see
//!   [`crate::store::relations`]); otherwise refused and journaled (`redaction_refused`). A
//!   redaction that arrives before its event is kept and applied, with the same checks, when
//!   the event arrives. An event the server hands over already redacted is kept as a tombstone
//!   (nothing to decrypt).
//!
//! Sent: replies and edits are encrypted room messages like any other (`m.mentions` names the
//! replied-to sender); a redaction erases locally at once and is queued (the server must read
//! a redaction: it travels in clear, which is why a free-text reason is refused unless the
//! managed configuration allows it).

use serde::Serialize;
use serde_json::{Value, json};

use super::Client;
use super::sync::{SyncSummary, security_event};
use crate::api::types::RoomEvent;
use crate::error::Error;
use crate::store::StoreError;
use crate::store::crypto::{self as cdb, OutboxRow};
use crate::store::relations::{self as rel, EarlyRedaction, Stored};
use rusqlite::Connection;

/// The longest event id accepted in a relation (the specification's cap on ids).
const MAX_ID_BYTES: usize = 255;

/// A relation, as the decrypted payload states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Relation {
    /// None (or one this client does not act on: a reaction, a thread without a reply).
    None,
    /// A reply to this event.
    Reply(String),
    /// An edit of this event, with the new text (`None`: `m.new_content` has none).
    Replace {
        target: String,
        new_body: Option<String>,
    },
}

fn event_id_in(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|id| id.starts_with('$') && id.len() <= MAX_ID_BYTES)
        .map(str::to_owned)
}

impl Relation {
    /// The relation of a decrypted `m.room.message` content.
    pub(crate) fn of(content: &Value) -> Self {
        let Some(relates) = content.get("m.relates_to").filter(|r| r.is_object()) else {
            return Self::None;
        };
        if relates.get("rel_type").and_then(Value::as_str) == Some("m.replace") {
            return match event_id_in(relates.get("event_id")) {
                Some(target) => Self::Replace {
                    target,
                    new_body: content
                        .get("m.new_content")
                        .and_then(|n| n.get("body"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                },
                None => Self::None,
            };
        }
        match event_id_in(relates.get("m.in_reply_to").and_then(|r| r.get("event_id"))) {
            Some(to) => Self::Reply(to),
            None => Self::None,
        }
    }
}

/// The local echo of our reply or edit (queued under `txn_id`): a reply keeps what it
/// answers; an edit is not listed as a message of its own, its text waits on its row.
pub(crate) fn after_echo(tx: &Connection, txn_id: &str, content: &Value) -> Result<(), StoreError> {
    let Some(echo) = crate::store::timeline::by_txn_id(tx, txn_id)? else {
        return Ok(());
    };
    match Relation::of(content) {
        Relation::None => Ok(()),
        Relation::Reply(to) => rel::set_reply_to(tx, &echo.event_id, &to),
        Relation::Replace { target, new_body } => rel::mark_edit(
            tx,
            &echo.event_id,
            &target,
            new_body.as_deref().unwrap_or_default(),
        ),
    }
}

/// Why an edit is refused (the `error` of its row, and the journal's detail).
fn edit_refusal(edit: &Stored, target: &Stored) -> Option<&'static str> {
    if target.room_id != edit.room_id {
        Some("edit_other_room")
    } else if target.sender != edit.sender {
        Some("edit_not_by_sender")
    } else if target.state == "redacted" {
        Some("edit_of_redacted")
    } else if target.replaces.is_some() {
        Some("edit_of_edit")
    } else if !target.is_message {
        Some("edit_of_non_message")
    } else {
        None
    }
}

/// After a message was decrypted and stored: its reply or edit, the edits that waited for it,
/// a redaction that arrived before it. `edited` collects the messages whose text changed.
pub(crate) fn after_decrypt(
    tx: &Connection,
    event_id: &str,
    content: &Value,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    if let Some(mentions) = content.get("m.mentions").filter(|m| m.is_object()) {
        rel::set_mentions(tx, event_id, mentions)?;
    }
    match Relation::of(content) {
        Relation::None => {}
        Relation::Reply(to) => rel::set_reply_to(tx, event_id, &to)?,
        Relation::Replace { target, new_body } => match new_body {
            Some(body) => {
                rel::mark_edit(tx, event_id, &target, &body)?;
                try_edit(tx, event_id, summary)?;
            }
            None => refuse_edit(tx, event_id, &target, "edit_malformed", summary)?,
        },
    }
    for edit in rel::pending_edits(tx, event_id)? {
        try_edit(tx, &edit, summary)?;
    }
    apply_early_redaction(tx, event_id, summary)
}

fn refuse_edit(
    tx: &Connection,
    edit_id: &str,
    target: &str,
    why: &str,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    let Some(edit) = rel::stored(tx, edit_id)? else {
        return Ok(());
    };
    rel::refuse(tx, edit_id, why)?;
    security_event(
        tx,
        summary,
        "edit_refused",
        Some(&edit.room_id),
        Some(&edit.sender),
        &format!("{why}: {edit_id} edits {target}"),
    )
}

/// Shows edit `edit_id` if its message is there and the checks pass; leaves it waiting if
/// its message has not been decrypted yet.
fn try_edit(tx: &Connection, edit_id: &str, summary: &mut SyncSummary) -> Result<(), StoreError> {
    let Some(edit) = rel::stored(tx, edit_id)? else {
        return Ok(());
    };
    let Some(target_id) = edit.replaces.clone() else {
        return Ok(());
    };
    let Some(target) = rel::stored(tx, &target_id)? else {
        return Ok(()); // its message has not arrived: it waits
    };
    if target.state != "redacted" && !matches!(target.state.as_str(), "decrypted" | "sent") {
        // Not readable yet (its key is late): what it is (a message? an edit?) is not
        // known, so the edit waits and is checked once it is.
        return Ok(());
    }
    if let Some(why) = edit_refusal(&edit, &target) {
        return refuse_edit(tx, edit_id, &target_id, why, summary);
    }
    if let Some(shown) = target.edited_by.as_deref() {
        let shown_ts = rel::stored(tx, shown)?.map_or(i64::MIN, |s| s.origin_ts);
        if (shown_ts, shown) >= (edit.origin_ts, edit_id) {
            // Shown already (the same edit delivered again: our own, by the sync after we
            // showed it), or older than the edit shown: its text goes, nothing is reported.
            return rel::drop_text(tx, edit_id);
        }
    }
    rel::show_edit(tx, &target_id, edit_id)?;
    summary.edited_ids.push(target_id);
    Ok(())
}

/// A redaction, received or ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redaction {
    /// The room.
    pub room_id: String,
    /// The event whose content was erased.
    pub event_id: String,
    /// Who redacted it.
    pub redacted_by: String,
}

/// Why `sender` may not redact `target` in `room_id` (`None`: allowed).
fn redaction_refusal(
    tx: &Connection,
    room_id: &str,
    sender: &str,
    target: &Stored,
) -> Result<Option<&'static str>, StoreError> {
    if target.room_id != room_id {
        return Ok(Some("redaction_other_room"));
    }
    if target.sender == sender {
        return Ok(None);
    }
    let powers = crate::store::push::power_levels(tx, room_id)?;
    Ok((powers.level_of(sender) < powers.redact).then_some("redaction_not_allowed"))
}

/// Erases `target` (and, if it is the edit a message shows, that message's text: the earlier
/// texts are gone, so the message cannot go back to one).
fn erase(
    tx: &Connection,
    target: &Stored,
    redacted_by: &str,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    rel::erase(tx, &target.event_id)?;
    let mut erased = target.event_id.clone();
    if let Some(message) = target.replaces.as_deref()
        && let Some(m) = rel::stored(tx, message)?
        && m.edited_by.as_deref() == Some(&target.event_id)
    {
        rel::erase(tx, message)?;
        erased = message.to_owned();
    }
    summary.redactions.push(Redaction {
        room_id: target.room_id.clone(),
        event_id: erased,
        redacted_by: redacted_by.to_owned(),
    });
    Ok(())
}

/// Checks and applies a redaction of `target` by `sender`.
fn judge(
    tx: &Connection,
    room_id: &str,
    sender: &str,
    redaction_id: &str,
    target: &Stored,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    if target.state == "redacted" {
        return Ok(());
    }
    match redaction_refusal(tx, room_id, sender, target)? {
        None => erase(tx, target, sender, summary),
        Some(why) => security_event(
            tx,
            summary,
            "redaction_refused",
            Some(room_id),
            Some(sender),
            &format!("{why}: {redaction_id} redacts {}", target.event_id),
        ),
    }
}

/// After any event was stored (readable or not): a redaction that arrived before it.
pub(crate) fn after_store(
    tx: &Connection,
    event_id: &str,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    apply_early_redaction(tx, event_id, summary)
}

fn apply_early_redaction(
    tx: &Connection,
    event_id: &str,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    let Some(early) = rel::take_early_redaction(tx, event_id)? else {
        return Ok(());
    };
    let Some(target) = rel::stored(tx, event_id)? else {
        return Ok(());
    };
    judge(
        tx,
        &early.room_id,
        &early.sender,
        &early.redaction_id,
        &target,
        summary,
    )
}

/// The event an `m.room.redaction` redacts: `content.redacts` (room version 11) or the
/// top-level `redacts` (earlier versions).
fn redacts(event: &RoomEvent, raw: &Value) -> Option<String> {
    event_id_in(event.content.get("redacts")).or_else(|| event_id_in(raw.get("redacts")))
}

/// A received `m.room.redaction` (it travels in clear: the server must act on it).
pub(crate) fn apply_redaction(
    tx: &Connection,
    room_id: &str,
    event: &RoomEvent,
    raw: &Value,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    let (Some(redaction_id), Some(target_id)) = (event.event_id.as_deref(), redacts(event, raw))
    else {
        summary.malformed_events += 1;
        return Ok(());
    };
    match rel::stored(tx, &target_id)? {
        Some(target) => judge(tx, room_id, &event.sender, redaction_id, &target, summary),
        None => rel::record_early_redaction(
            tx,
            &target_id,
            &EarlyRedaction {
                room_id: room_id.to_owned(),
                redaction_id: redaction_id.to_owned(),
                sender: event.sender.clone(),
            },
        ),
    }
}

/// Whether the server handed this event over already redacted (its content stripped).
pub(crate) fn arrived_redacted(raw: &Value) -> bool {
    raw.get("unsigned")
        .and_then(|u| u.get("redacted_because"))
        .is_some_and(Value::is_object)
}

/// What became of a redaction we asked for; in every case the event is erased on this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Deletion {
    /// The server accepted it: deleted for everyone.
    Sent {
        /// The redaction's event id.
        redaction_id: String,
    },
    /// Waiting (offline, server busy): sent in order by a later flush or sync; its outcome is
    /// reported then as an `OutgoingUpdate` with this local id.
    Queued {
        /// Its local id.
        local_id: String,
    },
    /// The server refused it for good (e.g. `forbidden`): the others still see the event.
    Failed {
        /// Its local id.
        local_id: String,
        /// `forbidden`, `not_found`, `refused`, …
        reason: String,
    },
    /// Our own message had not been sent yet: it never will be, nothing went to the server.
    NeverSent,
}

/// A refusal of a reply, an edit or a redaction asked by the member.
fn refused(code: &'static str, detail: impl Into<String>) -> Error {
    Error::Relation {
        code,
        detail: detail.into(),
    }
}

impl Client {
    /// The stored event `event_id` of `room_id`, readable (decrypted, not redacted).
    fn readable(&self, room_id: &str, event_id: &str) -> Result<Stored, Error> {
        match rel::stored(self.store.conn(), event_id)? {
            Some(s)
                if s.room_id == room_id
                    && matches!(s.state.as_str(), "decrypted" | "sent")
                    && s.replaces.is_none() =>
            {
                Ok(s)
            }
            Some(s) if s.room_id == room_id && s.state == "redacted" => {
                Err(refused("event_redacted", format!("{event_id} was deleted")))
            }
            _ => Err(refused(
                "unknown_event",
                format!("no readable message {event_id} in {room_id}"),
            )),
        }
    }

    /// Sends `body` as a reply to `event_id` (a readable message of `room_id`), mentioning its
    /// sender (`m.mentions`); returns the reply's event id. The relation travels encrypted.
    pub async fn reply(
        &mut self,
        room_id: &str,
        event_id: &str,
        body: &str,
    ) -> Result<String, Error> {
        let to = self.readable(room_id, event_id)?;
        let (own, _) = self.own_ids()?;
        let mentioned: Vec<&str> = [to.sender.as_str()]
            .into_iter()
            .filter(|u| *u != own)
            .collect();
        self.send_room_message(
            room_id,
            json!({
                "msgtype": "m.text",
                "body": body,
                "m.relates_to": { "m.in_reply_to": { "event_id": event_id } },
                "m.mentions": { "user_ids": mentioned },
            }),
        )
        .await
    }

    /// Sends `body` mentioning `users` (`m.mentions`: their push rules notify them by id, not
    /// by a match of their name in the text); returns the event id.
    pub async fn send_text_mentioning(
        &mut self,
        room_id: &str,
        body: &str,
        users: &[String],
    ) -> Result<String, Error> {
        self.send_room_message(
            room_id,
            json!({
                "msgtype": "m.text",
                "body": body,
                "m.mentions": { "user_ids": users },
            }),
        )
        .await
    }

    /// Replaces the text of our message `event_id` with `body` for everyone (`m.replace`);
    /// returns the edit's event id. Only one's own text messages can be edited (not an edit,
    /// not a deleted message); here the new text replaces the old at once, the old is erased.
    pub async fn edit(
        &mut self,
        room_id: &str,
        event_id: &str,
        body: &str,
    ) -> Result<String, Error> {
        let target = self.readable(room_id, event_id)?;
        let (own, _) = self.own_ids()?;
        if target.sender != own {
            return Err(refused(
                "edit_not_allowed",
                "only the sender of a message can edit it",
            ));
        }
        let edit_id = self
            .send_room_message(
                room_id,
                json!({
                    "msgtype": "m.text",
                    "body": format!("* {body}"),
                    "m.new_content": { "msgtype": "m.text", "body": body },
                    "m.relates_to": { "rel_type": "m.replace", "event_id": event_id },
                }),
            )
            .await?;
        // The sync applies it too (the same checks); shown here at once.
        let mut summary = SyncSummary::default();
        self.store.transaction(|tx| {
            if rel::stored(tx, &edit_id)?.is_some() {
                rel::mark_edit(tx, &edit_id, event_id, body)?;
                try_edit(tx, &edit_id, &mut summary)?;
            }
            Ok(())
        })?;
        Ok(edit_id)
    }

    /// Deletes `event_id` of `room_id` for everyone: erased here at once (text, edits,
    /// attachment: see [`crate::store::relations`]), and the redaction queued for the server
    /// (sent in order with the room's messages, retried while offline). One's own messages,
    /// or anyone's with the room's `redact` power level. A `reason` travels in clear (the
    /// server must read a redaction): refused unless the managed configuration allows it
    /// (`redaction_reason_in_clear`). Our message still queued is simply never sent. Returns
    /// what became of the redaction: the erasure here is done in every case.
    pub async fn redact(
        &mut self,
        room_id: &str,
        event_id: &str,
        reason: Option<&str>,
    ) -> Result<Deletion, Error> {
        if reason.is_some() && !self.config.redaction_reason_in_clear() {
            return Err(refused(
                "reason_in_clear_refused",
                "a redaction's reason would be readable by the server; the configuration does not allow it",
            ));
        }
        let (own, _) = self.own_ids()?;
        let target = match rel::stored(self.store.conn(), event_id)? {
            Some(s) if s.room_id == room_id && s.state != "redacted" => s,
            Some(s) if s.room_id == room_id => {
                return Err(refused("event_redacted", format!("{event_id} was deleted")));
            }
            _ => {
                return Err(refused(
                    "unknown_event",
                    format!("no event {event_id} in {room_id}"),
                ));
            }
        };
        if let Some(why) = redaction_refusal(self.store.conn(), room_id, &own, &target)? {
            return Err(refused(why, format!("{event_id} cannot be deleted by us")));
        }
        let txn_id = super::e2ee::random_txn_id()?;
        let unsent = target.state == "queued";
        let mut summary = SyncSummary::default();
        self.store.transaction(|tx| {
            if unsent && let Some(txn) = target.txn_id.as_deref() {
                // Never sent: it leaves the queue, nothing goes to the server.
                cdb::remove_outbox(tx, txn)?;
            } else {
                let mut body = json!({});
                if let Some(reason) = reason {
                    body["reason"] = json!(reason);
                }
                cdb::push_outbox(
                    tx,
                    &OutboxRow::new(
                        txn_id.clone(),
                        format!("redact:{event_id}"),
                        room_id.to_owned(),
                        body.to_string(),
                    ),
                )?;
            }
            erase(tx, &target, &own, &mut summary)
        })?;
        if unsent {
            return Ok(Deletion::NeverSent);
        }
        let report = self.flush_outbox().await?;
        let outcome = report
            .updates
            .iter()
            .find(|u| u.local_id == txn_id)
            .map(|u| match (&u.event_id, &u.error) {
                (Some(id), _) => Deletion::Sent {
                    redaction_id: id.clone(),
                },
                (None, error) => Deletion::Failed {
                    local_id: txn_id.clone(),
                    reason: error.clone().unwrap_or_default(),
                },
            })
            .unwrap_or_else(|| Deletion::Queued {
                local_id: txn_id.clone(),
            });
        self.pending_updates.extend(report.updates);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::timeline::{NewTimelineEvent, save_timeline_event};

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrations_for_tests(&mut conn);
        for room in ["!r:x", "!other:x"] {
            crate::store::rooms::upsert_room(&conn, room, "join").unwrap();
        }
        conn
    }

    /// Stores a decrypted event as the sync does, then runs the relation hook on `content`.
    fn receive(
        conn: &Connection,
        id: &str,
        room: &str,
        sender: &str,
        ts: i64,
        content: &Value,
    ) -> SyncSummary {
        let mut summary = SyncSummary::default();
        save_timeline_event(
            conn,
            &NewTimelineEvent {
                event_id: id,
                room_id: room,
                sender,
                origin_ts: ts,
                state: "decrypted",
                session_id: None,
                sender_device: None,
                trust: None,
                body: content.get("body").and_then(Value::as_str),
                raw: None,
                error: None,
                attachment: content.get("file").map(|_| "{}"),
                ord: ts,
            },
        )
        .unwrap();
        after_decrypt(conn, id, content, &mut summary).unwrap();
        summary
    }

    fn text(body: &str) -> Value {
        json!({"msgtype": "m.text", "body": body})
    }

    fn edit_of(target: &str, body: &str) -> Value {
        json!({
            "msgtype": "m.text", "body": format!("* {body}"),
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        })
    }

    fn body_of(conn: &Connection, id: &str) -> Option<String> {
        conn.query_row("SELECT body FROM timeline WHERE event_id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    }

    fn state_of(conn: &Connection, id: &str) -> String {
        conn.query_row(
            "SELECT state FROM timeline WHERE event_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    }

    fn journal(conn: &Connection, kind: &str) -> usize {
        conn.query_row(
            "SELECT count(*) FROM security_events WHERE kind = ?1",
            [kind],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as usize
    }

    fn redaction(
        conn: &Connection,
        id: &str,
        room: &str,
        sender: &str,
        target: &str,
    ) -> SyncSummary {
        let raw = json!({
            "type": "m.room.redaction", "event_id": id, "sender": sender,
            "origin_server_ts": 1, "redacts": target, "content": {},
        });
        let event = RoomEvent::parse(&raw).unwrap();
        let mut summary = SyncSummary::default();
        apply_redaction(conn, room, &event, &raw, &mut summary).unwrap();
        summary
    }

    #[test]
    fn the_latest_edit_by_the_sender_is_shown_and_the_earlier_text_erased() {
        let conn = db();
        receive(&conn, "$m", "!r:x", "@a:x", 1, &text("v1"));
        let s = receive(&conn, "$e2", "!r:x", "@a:x", 20, &edit_of("$m", "v2"));
        assert_eq!(s.edited_ids, ["$m"]);
        assert_eq!(body_of(&conn, "$m").as_deref(), Some("v2"));
        assert_eq!(
            body_of(&conn, "$e2"),
            None,
            "one copy of the text: the message's"
        );
        // An older edit arriving later (back-fill) changes nothing, and keeps no text.
        let s = receive(&conn, "$e1", "!r:x", "@a:x", 10, &edit_of("$m", "old"));
        assert!(s.edited_ids.is_empty());
        assert_eq!(body_of(&conn, "$m").as_deref(), Some("v2"));
        assert_eq!(body_of(&conn, "$e1"), None);
        // A same-time edit wins by event id order only if greater.
        receive(
            &conn,
            "$e0",
            "!r:x",
            "@a:x",
            20,
            &edit_of("$m", "tie-lower"),
        );
        assert_eq!(body_of(&conn, "$m").as_deref(), Some("v2"));
        let s = receive(
            &conn,
            "$e3",
            "!r:x",
            "@a:x",
            20,
            &edit_of("$m", "tie-higher"),
        );
        assert_eq!(s.edited_ids, ["$m"]);
        assert_eq!(body_of(&conn, "$m").as_deref(), Some("tie-higher"));
        // The edit shown, delivered again (our own edit, by the sync after `edit` showed it):
        // nothing changes, nothing is reported.
        let s = receive(
            &conn,
            "$e3",
            "!r:x",
            "@a:x",
            20,
            &edit_of("$m", "tie-higher"),
        );
        assert!(s.edited_ids.is_empty(), "{:?}", s.edited_ids);
        assert_eq!(body_of(&conn, "$m").as_deref(), Some("tie-higher"));
        assert_eq!(body_of(&conn, "$e3"), None);
        let shown = crate::store::timeline::timeline(&conn, "!r:x", 10).unwrap();
        assert_eq!(shown.len(), 1, "edits are not listed: {shown:?}");
        assert!(shown[0].edited);
        assert_eq!(journal(&conn, "edit_refused"), 0);
    }

    #[test]
    fn forged_edits_and_edits_of_the_wrong_thing_are_refused_and_journaled() {
        let conn = db();
        receive(&conn, "$m", "!r:x", "@a:x", 1, &text("original"));
        receive(&conn, "$mo", "!other:x", "@a:x", 1, &text("elsewhere"));
        receive(
            &conn,
            "$react",
            "!r:x",
            "@a:x",
            1,
            &json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$m", "key": "x"}}),
        );
        receive(&conn, "$e", "!r:x", "@a:x", 5, &edit_of("$m", "edited"));
        let cases = [
            (
                "$forged",
                "!r:x",
                "@b:x",
                edit_of("$m", "forged"),
                "edit_not_by_sender",
            ),
            (
                "$cross",
                "!r:x",
                "@a:x",
                edit_of("$mo", "cross"),
                "edit_other_room",
            ),
            (
                "$ee",
                "!r:x",
                "@a:x",
                edit_of("$e", "edit of edit"),
                "edit_of_edit",
            ),
            (
                "$nm",
                "!r:x",
                "@a:x",
                edit_of("$react", "reaction"),
                "edit_of_non_message",
            ),
            (
                "$bad",
                "!r:x",
                "@a:x",
                json!({"body": "* x", "m.relates_to": {"rel_type": "m.replace", "event_id": "$m"}}),
                "edit_malformed",
            ),
        ];
        for (n, (id, room, sender, content, why)) in cases.iter().enumerate() {
            let s = receive(&conn, id, room, sender, 10 + n as i64, content);
            assert!(s.edited_ids.is_empty(), "{why}");
            assert_eq!(state_of(&conn, id), "refused", "{why}");
            assert_eq!(
                body_of(&conn, id),
                None,
                "{why}: a refused edit keeps no text"
            );
            let error: String = conn
                .query_row(
                    "SELECT error FROM timeline WHERE event_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(error, *why);
            assert_eq!(journal(&conn, "edit_refused"), n + 1);
        }
        assert_eq!(body_of(&conn, "$m").as_deref(), Some("edited"));
        assert_eq!(body_of(&conn, "$mo").as_deref(), Some("elsewhere"));
        // Of a redacted message.
        redaction(&conn, "$r", "!r:x", "@a:x", "$m");
        receive(
            &conn,
            "$late",
            "!r:x",
            "@a:x",
            30,
            &edit_of("$m", "after delete"),
        );
        assert_eq!(state_of(&conn, "$late"), "refused");
        assert_eq!(body_of(&conn, "$m"), None);
    }

    #[test]
    fn an_edit_before_its_message_waits_and_is_checked_when_it_arrives() {
        let conn = db();
        receive(
            &conn,
            "$e",
            "!r:x",
            "@a:x",
            20,
            &edit_of("$m", "later text"),
        );
        receive(&conn, "$f", "!r:x", "@b:x", 21, &edit_of("$m", "forged"));
        assert_eq!(body_of(&conn, "$e").as_deref(), Some("later text"), "waits");
        let s = receive(&conn, "$m", "!r:x", "@a:x", 1, &text("first text"));
        assert_eq!(s.edited_ids, ["$m"]);
        assert_eq!(body_of(&conn, "$m").as_deref(), Some("later text"));
        assert_eq!(state_of(&conn, "$f"), "refused");
        assert_eq!(journal(&conn, "edit_refused"), 1);
        // The message undecryptable at first: the edit waits for its key too.
        let conn = db();
        conn.execute(
            "INSERT INTO timeline (event_id, room_id, sender, origin_ts, state, ord)
             VALUES ('$u', '!r:x', '@a:x', 1, 'undecryptable', 1)",
            [],
        )
        .unwrap();
        receive(&conn, "$eu", "!r:x", "@a:x", 5, &edit_of("$u", "new"));
        assert_eq!(body_of(&conn, "$eu").as_deref(), Some("new"));
        let s = receive(&conn, "$u", "!r:x", "@a:x", 1, &text("old"));
        assert_eq!(s.edited_ids, ["$u"]);
        assert_eq!(body_of(&conn, "$u").as_deref(), Some("new"));
    }

    #[test]
    fn a_redaction_counts_from_the_sender_or_a_member_with_the_power_level_in_the_same_room() {
        let conn = db();
        receive(&conn, "$m", "!r:x", "@a:x", 1, &text("secret"));
        receive(&conn, "$e", "!r:x", "@a:x", 2, &edit_of("$m", "secret 2"));
        receive(
            &conn,
            "$n",
            "!r:x",
            "@a:x",
            3,
            &json!({"msgtype": "m.file", "body": "f.pdf", "file": {}}),
        );
        // Another member without the level; the sender in another room.
        let s = redaction(&conn, "$r1", "!r:x", "@b:x", "$m");
        assert!(s.redactions.is_empty());
        let s = redaction(&conn, "$r2", "!other:x", "@a:x", "$m");
        assert!(s.redactions.is_empty());
        assert_eq!(journal(&conn, "redaction_refused"), 2);
        assert_eq!(body_of(&conn, "$m").as_deref(), Some("secret 2"));
        // The sender.
        let s = redaction(&conn, "$r3", "!r:x", "@a:x", "$m");
        assert_eq!(
            s.redactions,
            [Redaction {
                room_id: "!r:x".into(),
                event_id: "$m".into(),
                redacted_by: "@a:x".into()
            }]
        );
        assert_eq!(state_of(&conn, "$m"), "redacted");
        assert_eq!(state_of(&conn, "$e"), "redacted");
        let left: i64 = conn
            .query_row(
                "SELECT count(*) FROM timeline WHERE body IS NOT NULL AND event_id IN ('$m', '$e')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        assert!(crate::store::relations::erasure_pending(&conn).unwrap());
        // A moderator (level 50 = redact) may delete another's file: name and key go.
        crate::store::push::set_power_levels(
            &conn,
            "!r:x",
            &crate::store::push::NotificationPowers::from_content(
                &json!({"users": {"@mod:x": 50, "@low:x": 49}}),
            ),
        )
        .unwrap();
        let s = redaction(&conn, "$r4", "!r:x", "@low:x", "$n");
        assert!(s.redactions.is_empty());
        let s = redaction(&conn, "$r5", "!r:x", "@mod:x", "$n");
        assert_eq!(s.redactions.len(), 1);
        let attachment: Option<String> = conn
            .query_row(
                "SELECT attachment FROM timeline WHERE event_id = '$n'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!((attachment, body_of(&conn, "$n")), (None, None));
        // Redacting it again changes nothing.
        assert!(
            redaction(&conn, "$r6", "!r:x", "@a:x", "$m")
                .redactions
                .is_empty()
        );
        assert_eq!(journal(&conn, "redaction_refused"), 3);
    }

    /// A redaction naming no event (or not an event id) is counted as malformed and erases
    /// nothing.
    #[test]
    fn a_redaction_without_a_target_is_malformed_and_erases_nothing() {
        let conn = db();
        receive(&conn, "$m", "!r:x", "@a:x", 1, &text("kept"));
        for redacts in [json!(null), json!("not-an-id"), json!(5)] {
            let raw = json!({
                "type": "m.room.redaction", "event_id": "$r", "sender": "@a:x",
                "origin_server_ts": 1, "redacts": redacts, "content": {},
            });
            let event = RoomEvent::parse(&raw).unwrap();
            let mut summary = SyncSummary::default();
            apply_redaction(&conn, "!r:x", &event, &raw, &mut summary).unwrap();
            assert_eq!(summary.malformed_events, 1, "{redacts}");
            assert!(summary.redactions.is_empty());
        }
        assert_eq!(body_of(&conn, "$m").as_deref(), Some("kept"));
    }

    #[test]
    fn a_redaction_before_its_event_is_applied_with_the_same_checks_when_it_arrives() {
        let conn = db();
        redaction(&conn, "$r", "!r:x", "@a:x", "$m");
        redaction(&conn, "$rb", "!r:x", "@b:x", "$n");
        let s = receive(&conn, "$m", "!r:x", "@a:x", 1, &text("gone"));
        assert_eq!(s.redactions.len(), 1);
        assert_eq!(
            (state_of(&conn, "$m"), body_of(&conn, "$m")),
            ("redacted".into(), None)
        );
        let s = receive(&conn, "$n", "!r:x", "@a:x", 2, &text("stays"));
        assert!(s.redactions.is_empty());
        assert_eq!(body_of(&conn, "$n").as_deref(), Some("stays"));
        assert_eq!(journal(&conn, "redaction_refused"), 1);
        let early: i64 = conn
            .query_row("SELECT count(*) FROM redactions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(early, 0, "consumed");
    }

    #[test]
    fn redacting_the_edit_shown_erases_the_message_text_too() {
        let conn = db();
        receive(&conn, "$m", "!r:x", "@a:x", 1, &text("v1"));
        receive(&conn, "$e", "!r:x", "@a:x", 2, &edit_of("$m", "v2"));
        let s = redaction(&conn, "$r", "!r:x", "@a:x", "$e");
        assert_eq!(s.redactions[0].event_id, "$m");
        assert_eq!(
            (state_of(&conn, "$m"), body_of(&conn, "$m")),
            ("redacted".into(), None)
        );
    }

    #[test]
    fn relations_are_read_from_the_payload_and_malformed_ones_ignored() {
        assert_eq!(
            Relation::of(
                &json!({"body": "x", "m.relates_to": {"m.in_reply_to": {"event_id": "$a"}}})
            ),
            Relation::Reply("$a".into())
        );
        assert_eq!(
            Relation::of(&json!({
                "body": "* y",
                "m.new_content": {"body": "y"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$a"},
            })),
            Relation::Replace {
                target: "$a".into(),
                new_body: Some("y".into())
            }
        );
        assert_eq!(
            Relation::of(&json!({"m.relates_to": {"rel_type": "m.replace", "event_id": "$a"}})),
            Relation::Replace {
                target: "$a".into(),
                new_body: None
            }
        );
        for bad in [
            json!({"body": "x"}),
            json!({"m.relates_to": "x"}),
            json!({"m.relates_to": {"m.in_reply_to": {"event_id": 5}}}),
            json!({"m.relates_to": {"m.in_reply_to": {"event_id": "not-an-id"}}}),
            json!({"m.relates_to": {"rel_type": "m.replace", "event_id": "@user:x"}}),
            json!({"m.relates_to": {"rel_type": "m.replace", "event_id": format!("${}", "a".repeat(300))}}),
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$a", "key": "👍"}}),
        ] {
            assert_eq!(Relation::of(&bad), Relation::None, "{bad}");
        }
    }
}
