//! Replies, edits and redactions in the store (issue 18).
//!
//! - A reply keeps the id of the event it answers (`timeline.reply_to`).
//! - An edit's own row keeps the message it edits (`timeline.replaces`) and, until it is shown,
//!   its new text. Once shown, the text moves to the message's row (`edited_by` names the
//!   edit) and the edit's row keeps no text: one copy of the current text, none of the earlier.
//! - A redaction (or an expiry) leaves a tombstone: the row stays (so that the event is never
//!   fetched and decrypted again), in state `redacted`, with no body, attachment, ciphertext or
//!   error; the rows of its edits too. The freed bytes are zeroed by `secure_delete`; the
//!   write-ahead log, which still holds the pages as they were, is truncated after the commit
//!   ([`super::Store::checkpoint_erasure`]: a flag in the same transaction says one is due, so
//!   a crash before it is made good at the next open).

use rusqlite::{Connection, OptionalExtension as _, params};

use super::StoreError;

/// `kv` flag: an erasure was committed and the write-ahead log may still hold the erased text.
pub(crate) const ERASURE_PENDING: &str = "erase.checkpoint_pending";

/// What the relation checks need of a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) event_id: String,
    pub(crate) room_id: String,
    pub(crate) sender: String,
    pub(crate) state: String,
    pub(crate) origin_ts: i64,
    /// Set on an edit's own row: the message it edits.
    pub(crate) replaces: Option<String>,
    /// Set on a message: the edit it shows.
    pub(crate) edited_by: Option<String>,
    /// A message (text or attachment), not another kind of event.
    pub(crate) is_message: bool,
    /// Our own message before the server acknowledged it: its transaction id.
    pub(crate) txn_id: Option<String>,
}

/// The stored event `event_id`, if any.
pub(crate) fn stored(conn: &Connection, event_id: &str) -> Result<Option<Stored>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT event_id, room_id, sender, state, origin_ts, replaces, edited_by,
                body IS NOT NULL OR attachment IS NOT NULL, txn_id
         FROM timeline WHERE event_id = ?1",
        params![event_id],
        |r| {
            Ok(Stored {
                event_id: r.get(0)?,
                room_id: r.get(1)?,
                sender: r.get(2)?,
                state: r.get(3)?,
                origin_ts: r.get(4)?,
                replaces: r.get(5)?,
                edited_by: r.get(6)?,
                is_message: r.get(7)?,
                txn_id: r.get(8)?,
            })
        },
    )
    .optional()?)
}

/// Records the event a message replies to.
pub(crate) fn set_reply_to(
    conn: &Connection,
    event_id: &str,
    reply_to: &str,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE timeline SET reply_to = ?2 WHERE event_id = ?1",
        params![event_id, reply_to],
    )?;
    Ok(())
}

/// Records a message's `m.mentions` (user ids and `room`), kept small: at most 100 users.
pub(crate) fn set_mentions(
    conn: &Connection,
    event_id: &str,
    mentions: &serde_json::Value,
) -> Result<(), StoreError> {
    let users: Vec<&str> = mentions
        .get("user_ids")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(serde_json::Value::as_str)
                .take(100)
                .collect()
        })
        .unwrap_or_default();
    let mut kept = serde_json::json!({ "user_ids": users });
    if mentions.get("room").and_then(serde_json::Value::as_bool) == Some(true) {
        kept["room"] = serde_json::json!(true);
    }
    super::exec(
        conn,
        "UPDATE timeline SET mentions = ?2 WHERE event_id = ?1",
        params![event_id, kept.to_string()],
    )?;
    Ok(())
}

/// The stored `m.mentions` of a message.
pub(crate) fn mentions(
    conn: &Connection,
    event_id: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let stored: Option<Option<String>> = super::query_row(
        conn,
        "SELECT mentions FROM timeline WHERE event_id = ?1",
        params![event_id],
        |r| r.get(0),
    )
    .optional()?;
    Ok(stored
        .flatten()
        .and_then(|json| serde_json::from_str(&json).ok()))
}

/// Marks `edit_id` as an edit of `target` holding `new_body`, not shown yet.
pub(crate) fn mark_edit(
    conn: &Connection,
    edit_id: &str,
    target: &str,
    new_body: &str,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE timeline SET replaces = ?2, body = ?3, attachment = NULL WHERE event_id = ?1",
        params![edit_id, target, new_body],
    )?;
    Ok(())
}

/// The edits of `target` waiting to be shown (their text kept), oldest first.
pub(crate) fn pending_edits(conn: &Connection, target: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_id FROM timeline
         WHERE replaces = ?1 AND state = 'decrypted' AND body IS NOT NULL
         ORDER BY origin_ts, event_id",
    )?;
    let rows = stmt.query_map(params![target], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Shows edit `edit_id` on `target`: its text becomes the message's, and leaves the edit's
/// row (the message's former text is overwritten; `secure_delete` zeroes the freed bytes).
pub(crate) fn show_edit(conn: &Connection, target: &str, edit_id: &str) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE timeline SET body = (SELECT body FROM timeline WHERE event_id = ?2), edited_by = ?2
         WHERE event_id = ?1",
        params![target, edit_id],
    )?;
    drop_text(conn, edit_id)?;
    flag_erasure(conn)
}

/// An edit older than the one shown, or shown already: its text goes.
pub(crate) fn drop_text(conn: &Connection, event_id: &str) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE timeline SET body = NULL WHERE event_id = ?1 AND body IS NOT NULL",
        params![event_id],
    )?;
    Ok(())
}

/// A refused edit: kept as `refused` with `why`, without its text.
pub(crate) fn refuse(conn: &Connection, event_id: &str, why: &str) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE timeline SET state = 'refused', body = NULL, attachment = NULL, error = ?2
         WHERE event_id = ?1",
        params![event_id, why],
    )?;
    flag_erasure(conn)
}

/// Erases `event_id` and its edits: tombstones in state `redacted`, with no text, attachment,
/// ciphertext or error. A redaction that arrived early for it is consumed.
pub(crate) fn erase(conn: &Connection, event_id: &str) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE timeline SET state = 'redacted', body = NULL, attachment = NULL, raw = NULL,
             error = NULL, edited_by = NULL
         WHERE event_id = ?1",
        params![event_id],
    )?;
    super::exec(
        conn,
        "UPDATE timeline SET state = 'redacted', body = NULL, attachment = NULL, raw = NULL,
             error = NULL
         WHERE replaces = ?1",
        params![event_id],
    )?;
    super::exec(
        conn,
        "DELETE FROM redactions WHERE event_id = ?1",
        params![event_id],
    )?;
    flag_erasure(conn)
}

/// Why an event that arrives is kept as a tombstone only, never decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tombstone {
    /// The server hands it over already redacted.
    Redacted,
    /// Older than its room's lifetime (scroll-back, a gap).
    Expired,
}

/// A tombstone row for an arriving event of `sender` in `room_id` (nothing if the event id is
/// stored already).
pub(crate) struct ArrivingTombstone<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) room_id: &'a str,
    pub(crate) sender: &'a str,
    pub(crate) origin_ts: i64,
    pub(crate) ord: i64,
}

/// Stores a tombstone for an event that arrives redacted or expired.
pub(crate) fn save_tombstone(
    conn: &Connection,
    t: &ArrivingTombstone<'_>,
    why: Tombstone,
) -> Result<(), StoreError> {
    let state = match why {
        Tombstone::Redacted => "redacted",
        Tombstone::Expired => "expired",
    };
    super::exec(
        conn,
        "INSERT INTO timeline (event_id, room_id, sender, origin_ts, state, ord)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(event_id) DO NOTHING",
        params![t.event_id, t.room_id, t.sender, t.origin_ts, state, t.ord],
    )?;
    Ok(())
}

/// A redaction received before the event it redacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EarlyRedaction {
    pub(crate) room_id: String,
    pub(crate) redaction_id: String,
    pub(crate) sender: String,
}

/// Keeps a redaction whose event has not arrived (the first one received for it counts).
pub(crate) fn record_early_redaction(
    conn: &Connection,
    event_id: &str,
    r: &EarlyRedaction,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "INSERT OR IGNORE INTO redactions (event_id, room_id, redaction_id, sender)
         VALUES (?1, ?2, ?3, ?4)",
        params![event_id, r.room_id, r.redaction_id, r.sender],
    )?;
    Ok(())
}

/// The early redaction of `event_id`, taken out of the store.
pub(crate) fn take_early_redaction(
    conn: &Connection,
    event_id: &str,
) -> Result<Option<EarlyRedaction>, StoreError> {
    let found = super::query_row(
        conn,
        "SELECT room_id, redaction_id, sender FROM redactions WHERE event_id = ?1",
        params![event_id],
        |r| {
            Ok(EarlyRedaction {
                room_id: r.get(0)?,
                redaction_id: r.get(1)?,
                sender: r.get(2)?,
            })
        },
    )
    .optional()?;
    if found.is_some() {
        super::exec(
            conn,
            "DELETE FROM redactions WHERE event_id = ?1",
            params![event_id],
        )?;
    }
    Ok(found)
}

/// Says, in the erasing transaction, that the write-ahead log must be truncated after it.
pub(crate) fn flag_erasure(conn: &Connection) -> Result<(), StoreError> {
    super::kv_set(conn, ERASURE_PENDING, b"1")
}

/// Whether an erasure still waits for its write-ahead log truncation.
pub(crate) fn erasure_pending(conn: &Connection) -> Result<bool, StoreError> {
    Ok(super::kv_get(conn, ERASURE_PENDING)?.is_some())
}

/// The truncation was done.
pub(crate) fn erasure_done(conn: &Connection) -> Result<(), StoreError> {
    super::exec(
        conn,
        "DELETE FROM kv WHERE key = ?1",
        params![ERASURE_PENDING],
    )?;
    Ok(())
}
