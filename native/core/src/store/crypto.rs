//! End-to-end encryption state: the Olm account, tracked users and their devices, Olm and
//! Megolm sessions, Megolm message indices (replay detection), the timeline and the outbox.
//!
//! Every function takes a `&Connection`; writers are always called with the transaction of
//! the operation they belong to (a `Transaction` derefs to a `Connection`), so that, for
//! example, a new inbound group session, the events it decrypts and the sync token are
//! committed together. Pickles are vodozemac pickles encrypted with the vault's pickle key:
//! defence in depth inside the encrypted database.

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

use super::StoreError;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Account

/// The account pickle and the key upload it has generated but not yet seen acknowledged.
pub(crate) struct AccountRow {
    pub(crate) pickle: String,
    pub(crate) pending_upload: Option<String>,
}

pub(crate) fn load_account(conn: &Connection) -> Result<Option<AccountRow>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT pickle, pending_upload FROM crypto_account WHERE id = 1",
        [],
        |r| {
            Ok(AccountRow {
                pickle: r.get(0)?,
                pending_upload: r.get(1)?,
            })
        },
    )
    .optional()?)
}

pub(crate) fn save_account(
    conn: &Connection,
    pickle: &str,
    pending_upload: Option<&str>,
) -> Result<(), StoreError> {
    super::exec(conn,
        "INSERT INTO crypto_account (id, pickle, pending_upload) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET pickle = excluded.pickle, pending_upload = excluded.pending_upload",
        params![pickle, pending_upload],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tracked users and devices

/// Starts tracking `user_id`'s devices (a no-op if already tracked). Returns true if new.
pub(crate) fn track_user(conn: &Connection, user_id: &str) -> Result<bool, StoreError> {
    Ok(super::exec(
        conn,
        "INSERT INTO tracked_users (user_id, dirty) VALUES (?1, 1) ON CONFLICT(user_id) DO NOTHING",
        params![user_id],
    )? == 1)
}

/// Stops tracking a user (`device_lists.left`: we share no encrypted room any more).
pub(crate) fn untrack_user(conn: &Connection, user_id: &str) -> Result<(), StoreError> {
    super::exec(
        conn,
        "DELETE FROM tracked_users WHERE user_id = ?1",
        params![user_id],
    )?;
    Ok(())
}

/// Every device of `user_id` counts as unsigned until its owner's identity is checked again.
pub(crate) fn forget_cross_signatures(conn: &Connection, user_id: &str) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE devices SET cross_signed = 0 WHERE user_id = ?1",
        params![user_id],
    )?;
    Ok(())
}

/// Marks a tracked user's device list as outdated (`device_lists.changed`).
pub(crate) fn mark_dirty(conn: &Connection, user_id: &str) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE tracked_users SET dirty = 1 WHERE user_id = ?1",
        params![user_id],
    )?;
    Ok(())
}

/// Marks a user's device list as fresh.
pub(crate) fn mark_clean(conn: &Connection, user_id: &str) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE tracked_users SET dirty = 0 WHERE user_id = ?1",
        params![user_id],
    )?;
    Ok(())
}

/// Tracked users whose device list must be queried.
pub(crate) fn dirty_users(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT user_id FROM tracked_users WHERE dirty = 1 ORDER BY user_id")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether `user_id` is tracked.
pub(crate) fn is_tracked(conn: &Connection, user_id: &str) -> Result<bool, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT 1 FROM tracked_users WHERE user_id = ?1",
        params![user_id],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// Trust state of a device: pinned on first use, or blocked after its key changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Its Ed25519 key was pinned the first time we saw the device.
    Tofu,
    /// Its key changed after it was pinned: it gets no room keys, its messages are refused.
    Blocked,
}

impl DeviceState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tofu => "tofu",
            Self::Blocked => "blocked",
        }
    }

    fn parse(s: &str) -> Self {
        // Anything unexpected is treated as the safe state.
        if s == "tofu" {
            Self::Tofu
        } else {
            Self::Blocked
        }
    }
}

/// A device of a user, as pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    /// Owner.
    pub user_id: String,
    /// Device id.
    pub device_id: String,
    /// Pinned Ed25519 key (base64).
    pub ed25519: String,
    /// Curve25519 identity key (base64).
    pub curve25519: String,
    /// Display name, if the device published one.
    pub display_name: Option<String>,
    /// Trust state.
    pub state: DeviceState,
    /// The device disappeared from the user's device list.
    pub deleted: bool,
    /// Its keys carry a valid signature of its owner's self-signing key, itself signed by the
    /// owner's pinned master key (cross-signing, issue 16).
    pub cross_signed: bool,
}

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        user_id: r.get(0)?,
        device_id: r.get(1)?,
        ed25519: r.get(2)?,
        curve25519: r.get(3)?,
        display_name: r.get(4)?,
        state: DeviceState::parse(&r.get::<_, String>(5)?),
        deleted: r.get::<_, i64>(6)? != 0,
        cross_signed: r.get::<_, i64>(7)? != 0,
    })
}

const DEVICE_COLUMNS: &str = "user_id, device_id, ed25519, curve25519, display_name, state, deleted, cross_signed FROM devices";

/// Every device of `user_id` we know, deleted ones included.
pub(crate) fn devices_of(
    conn: &Connection,
    user_id: &str,
) -> Result<Vec<DeviceRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} WHERE user_id = ?1 ORDER BY device_id"
    ))?;
    let rows = stmt.query_map(params![user_id], device_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The live device with this Curve25519 identity key, if any.
pub(crate) fn device_by_curve25519(
    conn: &Connection,
    curve25519: &str,
) -> Result<Option<DeviceRecord>, StoreError> {
    Ok(super::query_row(
        conn,
        &format!("SELECT {DEVICE_COLUMNS} WHERE curve25519 = ?1 AND deleted = 0"),
        params![curve25519],
        device_row,
    )
    .optional()?)
}

/// Inserts or replaces a device record.
pub(crate) fn save_device(conn: &Connection, d: &DeviceRecord) -> Result<(), StoreError> {
    super::exec(conn,
        "INSERT INTO devices (user_id, device_id, ed25519, curve25519, display_name, state, deleted, first_seen_ms, cross_signed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT(user_id, device_id) DO UPDATE SET ed25519 = excluded.ed25519,
             curve25519 = excluded.curve25519, display_name = excluded.display_name,
             state = excluded.state, deleted = excluded.deleted,
             cross_signed = excluded.cross_signed",
        params![
            d.user_id,
            d.device_id,
            d.ed25519,
            d.curve25519,
            d.display_name,
            d.state.as_str(),
            i64::from(d.deleted),
            now_ms(),
            i64::from(d.cross_signed)
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Olm sessions

/// Olm sessions with a peer identity key, most recently used first: `(session_id, pickle)`.
pub(crate) fn olm_sessions(
    conn: &Connection,
    sender_key: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT session_id, pickle FROM olm_sessions WHERE sender_key = ?1
         ORDER BY last_used_ms DESC, created_ms DESC",
    )?;
    let rows = stmt.query_map(params![sender_key], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Saves an Olm session (new or advanced) and marks it used now.
pub(crate) fn save_olm_session(
    conn: &Connection,
    session_id: &str,
    sender_key: &str,
    pickle: &str,
) -> Result<(), StoreError> {
    let now = now_ms();
    super::exec(conn,
        "INSERT INTO olm_sessions (session_id, sender_key, pickle, created_ms, last_used_ms)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT(session_id) DO UPDATE SET pickle = excluded.pickle, last_used_ms = excluded.last_used_ms",
        params![session_id, sender_key, pickle, now],
    )?;
    Ok(())
}

/// Records that the Olm channel with `sender_key` looked wedged; returns true if a recovery
/// (new session + `m.dummy`) is due — at most once per `min_interval_ms` per peer.
pub(crate) fn request_unwedge(
    conn: &Connection,
    sender_key: &str,
    user_id: &str,
    device_id: &str,
    min_interval_ms: i64,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let last: Option<i64> = super::query_row(
        conn,
        "SELECT last_ms FROM olm_unwedge WHERE sender_key = ?1",
        params![sender_key],
        |r| r.get(0),
    )
    .optional()?;
    if last.is_some_and(|t| now - t < min_interval_ms) {
        return Ok(false);
    }
    super::exec(conn,
        "INSERT INTO olm_unwedge (sender_key, user_id, device_id, last_ms, done) VALUES (?1, ?2, ?3, ?4, 0)
         ON CONFLICT(sender_key) DO UPDATE SET last_ms = excluded.last_ms, done = 0,
             user_id = excluded.user_id, device_id = excluded.device_id",
        params![sender_key, user_id, device_id, now],
    )?;
    Ok(true)
}

/// Peers whose Olm channel needs a new session: `(user_id, device_id)`.
pub(crate) fn pending_unwedges(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare("SELECT user_id, device_id FROM olm_unwedge WHERE done = 0")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks a recovery as done.
pub(crate) fn unwedge_done(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE olm_unwedge SET done = 1 WHERE user_id = ?1 AND device_id = ?2",
        params![user_id, device_id],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Megolm sessions

/// An inbound group session and the device it is bound to.
#[derive(Debug, Clone)]
pub(crate) struct InboundRow {
    pub(crate) room_id: String,
    pub(crate) session_id: String,
    pub(crate) sender_key: String,
    pub(crate) sender_user_id: String,
    pub(crate) sender_device_id: String,
    pub(crate) sender_ed25519: String,
    pub(crate) pickle: String,
    pub(crate) first_index: u32,
}

pub(crate) fn inbound_session(
    conn: &Connection,
    room_id: &str,
    session_id: &str,
) -> Result<Option<InboundRow>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT room_id, session_id, sender_key, sender_user_id, sender_device_id, sender_ed25519,
                    pickle, first_index
             FROM inbound_group_sessions WHERE room_id = ?1 AND session_id = ?2",
        params![room_id, session_id],
        |r| {
            Ok(InboundRow {
                room_id: r.get(0)?,
                session_id: r.get(1)?,
                sender_key: r.get(2)?,
                sender_user_id: r.get(3)?,
                sender_device_id: r.get(4)?,
                sender_ed25519: r.get(5)?,
                pickle: r.get(6)?,
                first_index: r.get(7)?,
            })
        },
    )
    .optional()?)
}

pub(crate) fn save_inbound_session(conn: &Connection, s: &InboundRow) -> Result<(), StoreError> {
    super::exec(conn,
        "INSERT INTO inbound_group_sessions
             (room_id, session_id, sender_key, sender_user_id, sender_device_id, sender_ed25519, pickle, first_index)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(room_id, session_id) DO UPDATE SET pickle = excluded.pickle,
             first_index = excluded.first_index",
        params![
            s.room_id,
            s.session_id,
            s.sender_key,
            s.sender_user_id,
            s.sender_device_id,
            s.sender_ed25519,
            s.pickle,
            s.first_index
        ],
    )?;
    Ok(())
}

/// Our outbound group session for a room.
#[derive(Debug, Clone)]
pub(crate) struct OutboundRow {
    pub(crate) room_id: String,
    pub(crate) session_id: String,
    pub(crate) pickle: String,
    pub(crate) created_ms: i64,
    pub(crate) message_count: u32,
    /// Who got the session key, and who was told it is withheld.
    pub(crate) recipients: Recipients,
}

/// `user_id` → device ids.
pub(crate) type DeviceSet = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// The devices an outbound session was shared with, and those told it is withheld.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Recipients {
    pub(crate) shared: DeviceSet,
    pub(crate) withheld: DeviceSet,
}

pub(crate) fn outbound_session(
    conn: &Connection,
    room_id: &str,
) -> Result<Option<OutboundRow>, StoreError> {
    let row = super::query_row(
        conn,
        "SELECT room_id, session_id, pickle, created_ms, message_count, shared_with
             FROM outbound_group_sessions WHERE room_id = ?1",
        params![room_id],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, String>(5)?,
            ))
        },
    )
    .optional()?;
    let Some((room_id, session_id, pickle, created_ms, message_count, shared)) = row else {
        return Ok(None);
    };
    let recipients = serde_json::from_str(&shared).map_err(|_| StoreError::Corrupt {
        detail: "outbound session recipients".into(),
    })?;
    Ok(Some(OutboundRow {
        room_id,
        session_id,
        pickle,
        created_ms,
        message_count,
        recipients,
    }))
}

pub(crate) fn save_outbound_session(conn: &Connection, s: &OutboundRow) -> Result<(), StoreError> {
    let shared = serde_json::to_string(&s.recipients).map_err(|_| StoreError::Corrupt {
        detail: "outbound session recipients".into(),
    })?;
    super::exec(conn,
        "INSERT INTO outbound_group_sessions (room_id, session_id, pickle, created_ms, message_count, shared_with)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(room_id) DO UPDATE SET session_id = excluded.session_id, pickle = excluded.pickle,
             created_ms = excluded.created_ms, message_count = excluded.message_count,
             shared_with = excluded.shared_with",
        params![s.room_id, s.session_id, s.pickle, s.created_ms, s.message_count, shared],
    )?;
    Ok(())
}

/// Discards a room's outbound session: the next message starts a new one (rotation).
pub(crate) fn discard_outbound_session(
    conn: &Connection,
    room_id: &str,
) -> Result<bool, StoreError> {
    Ok(super::exec(
        conn,
        "DELETE FROM outbound_group_sessions WHERE room_id = ?1",
        params![room_id],
    )? == 1)
}

/// Records that `(session_id, message_index)` decrypted `event_id`. If that index was already
/// used by another event, returns that event id: a replay.
pub(crate) fn record_megolm_index(
    conn: &Connection,
    session_id: &str,
    message_index: u32,
    event_id: &str,
) -> Result<Option<String>, StoreError> {
    // The index is almost always new: try to record it first, and read what holds it only
    // when it was already taken (one statement instead of two on the common path).
    let inserted = super::exec(
        conn,
        "INSERT INTO megolm_indices (session_id, message_index, event_id) VALUES (?1, ?2, ?3)
         ON CONFLICT(session_id, message_index) DO NOTHING",
        params![session_id, message_index, event_id],
    )?;
    if inserted == 1 {
        return Ok(None);
    }
    let previous: String = super::query_row(
        conn,
        "SELECT event_id FROM megolm_indices WHERE session_id = ?1 AND message_index = ?2",
        params![session_id, message_index],
        |r| r.get(0),
    )?;
    Ok((previous != event_id).then_some(previous))
}

// ---------------------------------------------------------------------------------------------
// Outbox

/// A request persisted before it is sent, retried with the same transaction id until the
/// server acknowledges it or refuses it for good.
///
/// Requests go out in the order they were queued, per *lane*: `target` is the room for a room
/// event and for the room keys (and withheld notices) sent ahead of it, empty for other
/// to-device messages. A lane waiting after a transient failure holds back only its own later
/// requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxRow {
    pub(crate) txn_id: String,
    /// `to_device:<event type>` or `room_event:<event type>`.
    pub(crate) kind: String,
    /// The lane: the room id for a room event or a room's keys, empty otherwise.
    pub(crate) target: String,
    pub(crate) body: String,
    /// Transient failures so far.
    pub(crate) attempts: u32,
    /// Not before this time (ms since the epoch), after a transient failure.
    pub(crate) next_attempt_ms: i64,
}

impl OutboxRow {
    /// A new request, never tried.
    pub(crate) fn new(txn_id: String, kind: String, target: String, body: String) -> Self {
        Self {
            txn_id,
            kind,
            target,
            body,
            attempts: 0,
            next_attempt_ms: 0,
        }
    }
}

pub(crate) fn push_outbox(conn: &Connection, row: &OutboxRow) -> Result<(), StoreError> {
    super::exec(
        conn,
        "INSERT INTO outbox (txn_id, kind, target, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![row.txn_id, row.kind, row.target, row.body, now_ms()],
    )?;
    Ok(())
}

/// Pending requests in the order they were queued (to-device room keys before the messages
/// they unlock).
pub(crate) fn outbox(conn: &Connection) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT txn_id, kind, target, body, attempts, next_attempt_ms FROM outbox
         ORDER BY created_ms, rowid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(OutboxRow {
            txn_id: r.get(0)?,
            kind: r.get(1)?,
            target: r.get(2)?,
            body: r.get(3)?,
            attempts: r.get(4)?,
            next_attempt_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The queued requests of one lane (a room), in order: `(txn_id, kind)`.
pub(crate) fn outbox_lane(
    conn: &Connection,
    target: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT txn_id, kind FROM outbox WHERE target = ?1 ORDER BY created_ms, rowid",
    )?;
    let rows = stmt.query_map(params![target], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many requests are queued.
pub(crate) fn outbox_len(conn: &Connection) -> Result<i64, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT count(*) FROM outbox",
        [],
        |r| r.get(0),
    )?)
}

pub(crate) fn remove_outbox(conn: &Connection, txn_id: &str) -> Result<(), StoreError> {
    super::exec(
        conn,
        "DELETE FROM outbox WHERE txn_id = ?1",
        params![txn_id],
    )?;
    Ok(())
}

/// A transient failure: try again not before `next_attempt_ms`.
pub(crate) fn retry_outbox_later(
    conn: &Connection,
    txn_id: &str,
    attempts: u32,
    next_attempt_ms: i64,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE outbox SET attempts = ?2, next_attempt_ms = ?3 WHERE txn_id = ?1",
        params![txn_id, attempts, next_attempt_ms],
    )?;
    Ok(())
}
