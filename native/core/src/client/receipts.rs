//! Read receipts and unread state (issue 18 item 3).
//!
//! - Marking a room read moves our read position (never backwards) and the `m.fully_read`
//!   marker here at once, and queues `POST /rooms/{room}/read_markers` with the receipt the
//!   managed configuration allows: `m.read` (public), `m.read.private` (the server keeps it
//!   for our own devices only; the default) or none (`off`: only the marker, which is our own
//!   room account data). Queued, it goes out in order after the room's messages, retried
//!   while offline.
//! - Our receipts from our other devices (public or private) and the marker arrive by sync and
//!   move the position the same way.
//! - Unread counts are computed here, on the decrypted messages after the read position (the
//!   server cannot read encrypted messages, so its counts say nothing of mentions or keywords):
//!   how many messages, how many the push rules say notify, how many highlight.

use serde::Serialize;
use serde_json::{Value, json};

use super::Client;
use crate::api::types::SyncResponse;
use crate::config::ReadReceipts;
use crate::error::Error;
use crate::store::StoreError;
use crate::store::crypto::{self as cdb, OutboxRow};
use crate::store::receipts as rc;
use rusqlite::Connection;

/// A room's unread state, as computed on the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Unread {
    /// Messages of others after our read position (at most 999).
    pub messages: u32,
    /// Of those, the ones the push rules say notify (a muted room: none).
    pub notify: u32,
    /// Of those, the ones that highlight (a mention, a keyword).
    pub highlight: u32,
}

/// Inside the sync's transaction: our receipts (from any of our devices, public or private)
/// and the `m.fully_read` marker of every joined room.
pub(crate) fn apply(
    tx: &Connection,
    response: &SyncResponse,
    own_user: &str,
) -> Result<(), StoreError> {
    for (room_id, room) in &response.rooms.join {
        for raw in &room.ephemeral.events {
            if raw.get("type").and_then(Value::as_str) != Some("m.receipt") {
                continue;
            }
            let Some(by_event) = raw.get("content").and_then(Value::as_object) else {
                continue;
            };
            for (event_id, kinds) in by_event {
                let ours = ["m.read", "m.read.private"]
                    .iter()
                    .any(|k| kinds.get(k).and_then(|u| u.get(own_user)).is_some());
                if ours {
                    rc::advance_read(tx, room_id, event_id)?;
                }
            }
        }
        for raw in &room.account_data.events {
            if raw.get("type").and_then(Value::as_str) == Some("m.fully_read")
                && let Some(event_id) = raw
                    .get("content")
                    .and_then(|c| c.get("event_id"))
                    .and_then(Value::as_str)
                    .filter(|id| id.starts_with('$') && id.len() <= 255)
            {
                rc::set_fully_read(tx, room_id, event_id)?;
            }
        }
    }
    Ok(())
}

impl Client {
    /// Marks `room_id` read up to `event_id` (a stored event of the room): here at once, and
    /// on the server through the queue with the receipt the configuration allows (see the
    /// module documentation).
    pub async fn mark_read(&mut self, room_id: &str, event_id: &str) -> Result<(), Error> {
        let known = crate::store::relations::stored(self.store.conn(), event_id)?
            .is_some_and(|s| s.room_id == room_id && !event_id.starts_with('~'));
        if !known {
            return Err(Error::Relation {
                code: "unknown_event",
                detail: format!("no event {event_id} in {room_id}"),
            });
        }
        let mut body = json!({ "m.fully_read": event_id });
        if let Some(kind) = self.config.read_receipts().receipt_type() {
            body[kind] = json!(event_id);
        }
        let txn_id = super::e2ee::random_txn_id()?;
        self.store.transaction(|tx| {
            rc::advance_read(tx, room_id, event_id)?;
            rc::set_fully_read(tx, room_id, event_id)?;
            cdb::push_outbox(
                tx,
                &OutboxRow::new(
                    txn_id.clone(),
                    "read_markers".into(),
                    room_id.to_owned(),
                    body.to_string(),
                ),
            )
        })?;
        let report = self.flush_outbox().await?;
        self.pending_updates.extend(report.updates);
        Ok(())
    }

    /// The receipt this device sends, per the managed configuration.
    pub fn read_receipts(&self) -> ReadReceipts {
        self.config.read_receipts()
    }

    /// The unread state of `room_id` (see [`Unread`]).
    pub fn unread(&self, room_id: &str) -> Result<Unread, Error> {
        let (own_user, _) = self.own_ids()?;
        let mut unread = Unread::default();
        for (event_id, _, _) in rc::unread_messages(self.store.conn(), room_id, &own_user)? {
            let Some(row) = crate::store::timeline::timeline_event(self.store.conn(), &event_id)?
            else {
                continue;
            };
            unread.messages += 1;
            let n = self.stored_notification(row)?;
            if n.notify {
                unread.notify += 1;
                if n.highlight {
                    unread.highlight += 1;
                }
            }
        }
        Ok(unread)
    }

    /// `(our read event, the fully-read marker)` of `room_id`.
    pub fn read_markers(&self, room_id: &str) -> Result<(Option<String>, Option<String>), Error> {
        Ok(rc::markers(self.store.conn(), room_id)?)
    }
}
