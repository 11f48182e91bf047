//! The room timeline: events in the server's order, the gaps a `limited` sync leaves, loaded
//! history, and the local echoes of our own messages.
//!
//! Order. Every row has a position `ord` in its room; `messages` returns rows by it. The
//! sync appends above `rooms.next_ord`. A gap (a `limited` timeline after a known event) gets
//! a range of [`GAP_SPAN`] positions reserved below the events of the sync that revealed it,
//! and is filled downwards from the top of that range, page by page, newest first — so the
//! events it brings land between the last event before it and the first after it, in the
//! server's order. History older than anything stored is loaded downwards from
//! `rooms.low_ord`. A row keeps its position forever, except a local echo of ours, which
//! moves to where the server put the event when the sync (or a back-fill) returns it.
//!
//! Gaps are crash-safe: a gap is written in the transaction of the sync that revealed it,
//! each page's events in one transaction with the gap's new `from` token and position, and a
//! gap is deleted in the transaction of its last page. An event id is stored at most once
//! (the primary key), so a page fetched again after a crash changes nothing it already wrote.

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;
use zeroize::Zeroizing;

use super::StoreError;

/// The positions reserved for one gap (events a gap can hold): far more than any homeserver
/// keeps for a room, and small enough that `i64` holds billions of gaps.
pub(crate) const GAP_SPAN: i64 = 1 << 32;

/// A room event as the timeline keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEvent {
    /// Event id.
    pub event_id: String,
    /// Room id.
    pub room_id: String,
    /// Sender user id.
    pub sender: String,
    /// Sender's display name in the room, if known (raw, as the member set it: show
    /// `sender_name` instead).
    pub sender_display_name: Option<String>,
    /// The sender's name and organisation as shown: parsed, neutralised and checked
    /// ([`crate::display_name`]; lookalikes of the configured organisations flagged by the
    /// client).
    pub sender_name: crate::display_name::ParsedName,
    /// Server timestamp (ms).
    pub origin_ts: i64,
    /// `decrypted`, `undecryptable` (waiting for its key) or `refused` (a check failed); for
    /// our own message before the sync returns it (its local echo): `queued` (waiting to be
    /// sent, retried), `sent` (the server acknowledged it) or `failed` (refused for good, or
    /// cancelled: `error` says why).
    pub state: String,
    /// Megolm session id.
    pub session_id: Option<String>,
    /// The sender's device, from the Olm-verified room key.
    pub sender_device: Option<String>,
    /// `tofu`, `blocked` or `unknown`.
    pub trust: Option<String>,
    /// The plaintext body (`m.text`), once decrypted.
    pub body: Option<String>,
    /// Why decryption was refused or is pending.
    pub error: Option<String>,
    /// The attachment an `m.file` / `m.image` message announces (download it with
    /// `Client::download_file`); its key is not part of this view.
    pub attachment: Option<AttachmentSummary>,
    /// Our own message: the transaction id it was queued under (its local id, stable from
    /// the moment it is queued).
    pub local_id: Option<String>,
    /// The event this message replies to (from its encrypted `m.relates_to`; the server
    /// never sees it).
    pub reply_to: Option<String>,
    /// The message was edited by its sender: `body` is the latest valid edit's text (the
    /// earlier text is erased).
    pub edited: bool,
    /// On an edit's own row (never listed: its text is shown on the message it edits): the
    /// message it edits.
    #[serde(skip)]
    pub(crate) replaces: Option<String>,
}

/// What the timeline shows of a received or sent attachment: no key, IV or hash (those stay in
/// the database, for `Client::download_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AttachmentSummary {
    /// `m.file` or `m.image`.
    pub msgtype: String,
    /// The file name, sanitised (`media::sanitize_file_name`): safe to use as a file name.
    pub name: String,
    /// The announced media type, if it is a well-formed `type/subtype`.
    pub mimetype: Option<String>,
    /// The announced size in bytes (the sender's claim; the download is capped anyway).
    pub size: Option<u64>,
}

impl AttachmentSummary {
    /// The summary part of an `attachment` column (see `client::media`), or `None` if the
    /// stored JSON is not one.
    pub(crate) fn from_stored(json: &str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }
}

/// Fields of a timeline row to write.
pub(crate) struct NewTimelineEvent<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) room_id: &'a str,
    pub(crate) sender: &'a str,
    pub(crate) origin_ts: i64,
    pub(crate) state: &'a str,
    pub(crate) session_id: Option<&'a str>,
    pub(crate) sender_device: Option<&'a str>,
    pub(crate) trust: Option<&'a str>,
    pub(crate) body: Option<&'a str>,
    pub(crate) raw: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
    /// The attachment column: summary fields plus the validated `EncryptedFile`.
    pub(crate) attachment: Option<&'a str>,
    /// The position of a new row in its room (an existing row keeps its own, unless it is a
    /// local echo, which moves to where the server put the event).
    pub(crate) ord: i64,
}

/// Inserts or updates an event (a late key turns `undecryptable` into `decrypted`; the sync
/// turns our `sent` echo into the `decrypted` event, at the server's position).
pub(crate) fn save_timeline_event(
    conn: &Connection,
    e: &NewTimelineEvent<'_>,
) -> Result<(), StoreError> {
    super::exec(conn,
        "INSERT INTO timeline (event_id, room_id, sender, origin_ts, state, session_id, sender_device,
                               trust, body, raw, error, attachment, ord)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT(event_id) DO UPDATE SET state = excluded.state, session_id = excluded.session_id,
             sender_device = excluded.sender_device, trust = excluded.trust, body = excluded.body,
             raw = excluded.raw, error = excluded.error, attachment = excluded.attachment,
             ord = CASE WHEN timeline.state IN ('queued', 'sent') THEN excluded.ord ELSE timeline.ord END,
             origin_ts = CASE WHEN timeline.state IN ('queued', 'sent') THEN excluded.origin_ts ELSE timeline.origin_ts END",
        params![
            e.event_id,
            e.room_id,
            e.sender,
            e.origin_ts,
            e.state,
            e.session_id,
            e.sender_device,
            e.trust,
            e.body,
            e.raw,
            e.error,
            e.attachment,
            e.ord
        ],
    )?;
    Ok(())
}

/// Whether an event is already in the timeline, and in which state.
pub(crate) fn timeline_state(
    conn: &Connection,
    event_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT state FROM timeline WHERE event_id = ?1",
        params![event_id],
        |r| r.get(0),
    )
    .optional()?)
}

/// Events of `room_id` waiting for the key of `session_id`: `(event_id, raw JSON)`.
pub(crate) fn undecrypted_events(
    conn: &Connection,
    room_id: &str,
    session_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_id, raw FROM timeline
         WHERE state = 'undecryptable' AND room_id = ?1 AND session_id = ?2 AND raw IS NOT NULL
         ORDER BY ord",
    )?;
    let rows = stmt.query_map(params![room_id, session_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const TIMELINE_SELECT: &str =
    "SELECT t.event_id, t.room_id, t.sender, m.display_name, t.origin_ts, t.state,
        t.session_id, t.sender_device, t.trust, t.body, t.error, t.ord, t.attachment, t.txn_id,
        t.reply_to, t.edited_by, t.replaces
    FROM timeline t LEFT JOIN members m ON m.room_id = t.room_id AND m.user_id = t.sender";

fn timeline_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TimelineEvent> {
    let sender: String = r.get(2)?;
    let sender_display_name: Option<String> = r.get(3)?;
    Ok(TimelineEvent {
        event_id: r.get(0)?,
        room_id: r.get(1)?,
        sender_name: crate::display_name::parse(sender_display_name.as_deref(), &sender, &[]),
        sender,
        sender_display_name,
        origin_ts: r.get(4)?,
        state: r.get(5)?,
        session_id: r.get(6)?,
        sender_device: r.get(7)?,
        trust: r.get(8)?,
        body: r.get(9)?,
        error: r.get(10)?,
        attachment: r
            .get::<_, Option<String>>(12)?
            .and_then(|json| AttachmentSummary::from_stored(&json)),
        local_id: r.get(13)?,
        reply_to: r.get(14)?,
        edited: r.get::<_, Option<String>>(15)?.is_some(),
        replaces: r.get(16)?,
    })
}

/// The stored attachment of a decrypted event of `room_id`: `(sender, attachment column)`.
pub(crate) fn timeline_attachment(
    conn: &Connection,
    room_id: &str,
    event_id: &str,
) -> Result<Option<(String, Zeroizing<String>)>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT sender, attachment FROM timeline
         WHERE event_id = ?1 AND room_id = ?2 AND state = 'decrypted' AND attachment IS NOT NULL",
        params![event_id, room_id],
        |r| Ok((r.get(0)?, Zeroizing::new(r.get::<_, String>(1)?))),
    )
    .optional()?)
}

/// The last `limit` events of a room, in the server's order (oldest first), with the sender's
/// display name. An edit is not an event of its own here: its text is its message's.
pub(crate) fn timeline(
    conn: &Connection,
    room_id: &str,
    limit: u32,
) -> Result<Vec<TimelineEvent>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT * FROM ({TIMELINE_SELECT} WHERE t.room_id = ?1 AND t.replaces IS NULL ORDER BY t.ord DESC LIMIT ?2) ORDER BY ord"
    ))?;
    let rows = stmt.query_map(params![room_id, limit], timeline_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One event of the timeline.
pub(crate) fn timeline_event(
    conn: &Connection,
    event_id: &str,
) -> Result<Option<TimelineEvent>, StoreError> {
    Ok(super::query_row(
        conn,
        &format!("{TIMELINE_SELECT} WHERE t.event_id = ?1"),
        params![event_id],
        timeline_row,
    )
    .optional()?)
}

// ---------------------------------------------------------------------------------------------
// Positions

/// Where a room's timeline grows: the next position at the end, the newest event a sync
/// delivered, and where loading older history resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoomCursor {
    pub(crate) next_ord: i64,
    pub(crate) low_ord: i64,
    pub(crate) last_event_id: Option<String>,
    pub(crate) back_token: Option<String>,
    pub(crate) history_complete: bool,
}

impl RoomCursor {
    /// Takes the next position at the end of the timeline.
    pub(crate) fn append(&mut self) -> i64 {
        let ord = self.next_ord;
        self.next_ord += 1;
        ord
    }
}

/// The cursor of a known room (`None` for a room the store does not know).
pub(crate) fn room_cursor(
    conn: &Connection,
    room_id: &str,
) -> Result<Option<RoomCursor>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT next_ord, low_ord, last_event_id, back_token, history_complete FROM rooms
         WHERE room_id = ?1",
        params![room_id],
        |r| {
            Ok(RoomCursor {
                next_ord: r.get(0)?,
                low_ord: r.get(1)?,
                last_event_id: r.get(2)?,
                back_token: r.get(3)?,
                history_complete: r.get::<_, i64>(4)? != 0,
            })
        },
    )
    .optional()?)
}

/// Writes a room's cursor back.
pub(crate) fn save_room_cursor(
    conn: &Connection,
    room_id: &str,
    c: &RoomCursor,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE rooms SET next_ord = ?2, low_ord = ?3, last_event_id = ?4, back_token = ?5,
             history_complete = ?6 WHERE room_id = ?1",
        params![
            room_id,
            c.next_ord,
            c.low_ord,
            c.last_event_id,
            c.back_token,
            i64::from(c.history_complete)
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Gaps

/// A missing part of a room's timeline: events older than a `limited` sync's first event and
/// newer than `until_event`, still to be fetched backwards from `from_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    pub(crate) id: i64,
    pub(crate) room_id: String,
    /// `/messages?dir=b` starts here.
    pub(crate) from_token: String,
    /// The newest event stored before the gap (the fill stops there); `None`: the room was
    /// joined since, the fill stops at our join (or the room's start).
    pub(crate) until_event: Option<String>,
    /// The position the next filled event takes (going down).
    pub(crate) next_ord: i64,
    /// The position of the last event before the gap: the fill never goes down to it.
    pub(crate) floor_ord: i64,
}

/// Records a gap (inside the transaction of the sync that revealed it) and reserves its
/// positions: returns the cursor moved past them.
pub(crate) fn open_gap(
    conn: &Connection,
    room_id: &str,
    from_token: &str,
    until_event: Option<&str>,
    cursor: &mut RoomCursor,
) -> Result<(), StoreError> {
    let floor_ord = cursor.next_ord - 1;
    cursor.next_ord += GAP_SPAN;
    super::exec(
        conn,
        "INSERT INTO gaps (room_id, from_token, until_event, next_ord, floor_ord)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            room_id,
            from_token,
            until_event,
            cursor.next_ord - 1,
            floor_ord
        ],
    )?;
    Ok(())
}

/// Open gaps, by room (at most `limit`), one per room: a room's newest gap first (the most
/// recent messages matter most), its older gap once that one is filled.
pub(crate) fn open_gaps(conn: &Connection, limit: usize) -> Result<Vec<Gap>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, room_id, from_token, until_event, next_ord, floor_ord FROM gaps g
         WHERE id = (SELECT max(id) FROM gaps h WHERE h.room_id = g.room_id)
         ORDER BY id LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], gap_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The gap `id`, if still open.
pub(crate) fn gap(conn: &Connection, id: i64) -> Result<Option<Gap>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT id, room_id, from_token, until_event, next_ord, floor_ord FROM gaps WHERE id = ?1",
        params![id],
        gap_row,
    )
    .optional()?)
}

fn gap_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Gap> {
    Ok(Gap {
        id: r.get(0)?,
        room_id: r.get(1)?,
        from_token: r.get(2)?,
        until_event: r.get(3)?,
        next_ord: r.get(4)?,
        floor_ord: r.get(5)?,
    })
}

/// How many gaps are open (all rooms).
pub(crate) fn gap_count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT count(*) FROM gaps",
        [],
        |r| r.get(0),
    )?)
}

/// A page of the gap was stored: the next one starts at `from_token`, position `next_ord`.
pub(crate) fn advance_gap(
    conn: &Connection,
    id: i64,
    from_token: &str,
    next_ord: i64,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE gaps SET from_token = ?2, next_ord = ?3 WHERE id = ?1",
        params![id, from_token, next_ord],
    )?;
    Ok(())
}

/// The gap is filled (or can never be: the caller journals why).
pub(crate) fn close_gap(conn: &Connection, id: i64) -> Result<(), StoreError> {
    super::exec(conn, "DELETE FROM gaps WHERE id = ?1", params![id])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Local echoes of our own messages

/// The event id a local echo carries until the server gives the real one.
pub(crate) fn echo_event_id(txn_id: &str) -> String {
    format!("~{txn_id}")
}

/// Inserts the local echo of a message we queued, at the end of its room's timeline.
pub(crate) fn save_echo(
    conn: &Connection,
    txn_id: &str,
    room_id: &str,
    sender: &str,
    body: Option<&str>,
    attachment: Option<&str>,
) -> Result<(), StoreError> {
    let mut cursor = room_cursor(conn, room_id)?.ok_or_else(|| StoreError::Corrupt {
        detail: "local echo for an unknown room".into(),
    })?;
    let ord = cursor.append();
    super::exec(
        conn,
        "INSERT INTO timeline (event_id, room_id, sender, origin_ts, state, body, attachment, ord, txn_id)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8)",
        params![
            echo_event_id(txn_id),
            room_id,
            sender,
            super::crypto::now_ms(),
            body,
            attachment,
            ord,
            txn_id
        ],
    )?;
    save_room_cursor(conn, room_id, &cursor)
}

/// The server acknowledged our message as `event_id`. If the sync already returned it (a
/// crash between the send and this record), the echo gives way to that row.
pub(crate) fn echo_sent(conn: &Connection, txn_id: &str, event_id: &str) -> Result<(), StoreError> {
    let delivered = timeline_state(conn, event_id)?.is_some();
    if delivered {
        super::exec(
            conn,
            "DELETE FROM timeline WHERE txn_id = ?1 AND event_id <> ?2",
            params![txn_id, event_id],
        )?;
        super::exec(
            conn,
            "UPDATE timeline SET txn_id = ?1 WHERE event_id = ?2",
            params![txn_id, event_id],
        )?;
    } else {
        super::exec(
            conn,
            "UPDATE timeline SET event_id = ?2, state = 'sent', error = NULL
             WHERE txn_id = ?1 AND state IN ('queued', 'failed')",
            params![txn_id, event_id],
        )?;
    }
    Ok(())
}

/// Our message will never be sent: its echo says why (`reason` is a stable code).
pub(crate) fn echo_failed(conn: &Connection, txn_id: &str, reason: &str) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE timeline SET state = 'failed', error = ?2 WHERE txn_id = ?1 AND state = 'queued'",
        params![txn_id, reason],
    )?;
    Ok(())
}

/// The echo (or, once returned by the sync, the event) of our message queued as `txn_id`.
pub(crate) fn by_txn_id(
    conn: &Connection,
    txn_id: &str,
) -> Result<Option<TimelineEvent>, StoreError> {
    Ok(super::query_row(
        conn,
        &format!("{TIMELINE_SELECT} WHERE t.txn_id = ?1"),
        params![txn_id],
        timeline_row,
    )
    .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::crypto::record_megolm_index;
    use crate::store::tests::test_vault;

    /// The hot queries go through the prepared-statement cache: a statement handed back must
    /// be reset and see every later write, in later transactions, after a rolled-back one,
    /// and after the schema changed.
    #[test]
    fn cached_queries_see_every_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let event = |id: &'static str, state: &'static str| NewTimelineEvent {
            event_id: id,
            room_id: "!r:srv",
            sender: "@a:srv",
            origin_ts: 1,
            state,
            session_id: Some("S"),
            sender_device: None,
            trust: None,
            body: None,
            raw: Some("{}"),
            error: None,
            attachment: None,
            ord: 0,
        };
        for round in 0..3u32 {
            store
                .transaction(|tx| {
                    for i in 0..40u32 {
                        let index = round * 40 + i;
                        let id = format!("$e{index}");
                        assert_eq!(timeline_state(tx, &id)?, None);
                        assert_eq!(record_megolm_index(tx, "S", index, &id)?, None);
                        assert_eq!(record_megolm_index(tx, "S", index, &id)?, None);
                        assert_eq!(
                            record_megolm_index(tx, "S", index, "$other")?,
                            Some(id.clone())
                        );
                    }
                    Ok(())
                })
                .unwrap();
        }
        store
            .transaction(|tx| save_timeline_event(tx, &event("$t", "undecryptable")))
            .unwrap();
        assert_eq!(
            timeline_state(store.conn(), "$t").unwrap().as_deref(),
            Some("undecryptable")
        );
        assert_eq!(
            undecrypted_events(store.conn(), "!r:srv", "S")
                .unwrap()
                .len(),
            1
        );
        // Written then rolled back: the cached statements must not see it.
        store
            .scratch_transaction(|tx| {
                save_timeline_event(tx, &event("$t", "decrypted"))?;
                assert_eq!(timeline_state(tx, "$t")?.as_deref(), Some("decrypted"));
                Ok(())
            })
            .unwrap();
        assert_eq!(
            timeline_state(store.conn(), "$t").unwrap().as_deref(),
            Some("undecryptable")
        );
        store
            .transaction(|tx| save_timeline_event(tx, &event("$t", "decrypted")))
            .unwrap();
        let e = timeline_event(store.conn(), "$t").unwrap().unwrap();
        assert_eq!(e.state, "decrypted");
        assert!(
            undecrypted_events(store.conn(), "!r:srv", "S")
                .unwrap()
                .is_empty()
        );
        // A schema change invalidates prepared statements: the cached ones are prepared again.
        store
            .conn()
            .execute_batch("CREATE INDEX timeline_by_sender ON timeline (sender);")
            .unwrap();
        assert_eq!(
            timeline_state(store.conn(), "$t").unwrap().as_deref(),
            Some("decrypted")
        );
        assert_eq!(
            record_megolm_index(store.conn(), "S", 0, "$other").unwrap(),
            Some("$e0".to_owned())
        );
    }

    /// A gap reserves [`GAP_SPAN`] positions right above the last event before it: filled from
    /// the top down, never down to that event's position; the next events go above the range.
    #[test]
    fn a_gap_reserves_its_range_above_the_last_event() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        store
            .transaction(|tx| {
                crate::store::rooms::upsert_room(tx, "!r:srv", "join")?;
                let mut cursor = room_cursor(tx, "!r:srv")?.unwrap();
                assert_eq!((cursor.next_ord, cursor.low_ord), (1, 0));
                for _ in 0..9 {
                    cursor.append();
                }
                assert_eq!(cursor.next_ord, 10);
                open_gap(tx, "!r:srv", "p", Some("$last"), &mut cursor)?;
                assert_eq!(cursor.next_ord, 10 + GAP_SPAN);
                assert_eq!(cursor.append(), 10 + GAP_SPAN);
                let open = open_gaps(tx, 10)?.pop().unwrap();
                assert_eq!((open.floor_ord, open.next_ord), (9, 9 + GAP_SPAN));
                assert_eq!(open.until_event.as_deref(), Some("$last"));
                assert_eq!(gap(tx, open.id)?, Some(open.clone()));
                advance_gap(tx, open.id, "q", 5)?;
                let moved = gap(tx, open.id)?.unwrap();
                assert_eq!((moved.from_token.as_str(), moved.next_ord), ("q", 5));
                close_gap(tx, open.id)?;
                assert_eq!(gap_count(tx)?, 0);
                Ok(())
            })
            .unwrap();
    }
}
