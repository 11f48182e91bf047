//! Rooms, their members and the security-event journal.
//!
//! The `pub(crate)` writers take the sync's transaction, so that everything one sync response
//! changes is committed together with its `next_batch`.

use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use super::{Store, StoreError};

/// A room as the client knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomSummary {
    /// Room id.
    pub room_id: String,
    /// Our membership: `join`, `invite`, `leave`.
    pub membership: String,
    /// `m.room.name`, if any.
    pub name: Option<String>,
    /// The `m.room.encryption` algorithm, if the room is encrypted.
    pub encryption: Option<String>,
    /// Joined members.
    pub joined_members: u32,
    /// Invited members.
    pub invited_members: u32,
}

/// A room member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// User id.
    pub user_id: String,
    /// `join`, `invite`, `leave`, `ban`.
    pub membership: String,
    /// Display name as set by the user (Tchap: `Jean Martin [Ministère X]`), raw: show `name`.
    pub display_name: Option<String>,
    /// The name and organisation as shown: parsed, neutralised and checked.
    pub name: crate::display_name::ParsedName,
}

/// An entry of the security journal (refused events, key changes, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityEvent {
    /// Sequence number.
    pub id: i64,
    /// When it was recorded (ms since the epoch).
    pub ts_ms: i64,
    /// Stable kind, e.g. `encryption_change_refused`.
    pub kind: String,
    /// Room concerned, if any.
    pub room_id: Option<String>,
    /// User concerned, if any.
    pub user_id: Option<String>,
    /// Human-readable detail (no secrets, no message content).
    pub detail: String,
}

pub(crate) fn upsert_room(
    tx: &rusqlite::Connection,
    room_id: &str,
    membership: &str,
) -> Result<(), StoreError> {
    super::exec(
        tx,
        "INSERT INTO rooms (room_id, membership) VALUES (?1, ?2)
         ON CONFLICT(room_id) DO UPDATE SET membership = excluded.membership",
        params![room_id, membership],
    )?;
    Ok(())
}

pub(crate) fn set_room_name(
    tx: &rusqlite::Connection,
    room_id: &str,
    name: Option<&str>,
) -> Result<(), StoreError> {
    super::exec(
        tx,
        "UPDATE rooms SET name = ?2 WHERE room_id = ?1",
        params![room_id, name],
    )?;
    Ok(())
}

pub(crate) fn room_encryption(
    tx: &rusqlite::Connection,
    room_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(super::query_row(
        tx,
        "SELECT encryption FROM rooms WHERE room_id = ?1",
        params![room_id],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()?
    .flatten())
}

pub(crate) fn set_room_encryption(
    tx: &rusqlite::Connection,
    room_id: &str,
    algorithm: &str,
) -> Result<(), StoreError> {
    super::exec(
        tx,
        "UPDATE rooms SET encryption = ?2 WHERE room_id = ?1",
        params![room_id, algorithm],
    )?;
    Ok(())
}

pub(crate) fn upsert_member(
    tx: &rusqlite::Connection,
    room_id: &str,
    user_id: &str,
    membership: &str,
    display_name: Option<&str>,
) -> Result<(), StoreError> {
    super::exec(
        tx,
        "INSERT INTO members (room_id, user_id, membership, display_name) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(room_id, user_id) DO UPDATE
         SET membership = excluded.membership, display_name = excluded.display_name",
        params![room_id, user_id, membership, display_name],
    )?;
    Ok(())
}

/// A member's stored `(membership, display name)`, if the store knows them in that room.
pub(crate) fn member(
    conn: &rusqlite::Connection,
    room_id: &str,
    user_id: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    use rusqlite::OptionalExtension as _;
    Ok(super::query_row(
        conn,
        "SELECT membership, display_name FROM members WHERE room_id = ?1 AND user_id = ?2",
        params![room_id, user_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

/// Our membership of a room, if the store knows it.
pub(crate) fn membership(
    conn: &rusqlite::Connection,
    room_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT membership FROM rooms WHERE room_id = ?1",
        params![room_id],
        |r| r.get(0),
    )
    .optional()?)
}

/// User ids of the joined and invited members of a room.
pub(crate) fn member_ids(
    conn: &rusqlite::Connection,
    room_id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id FROM members WHERE room_id = ?1 AND membership IN ('join', 'invite') ORDER BY user_id",
    )?;
    let rows = stmt.query_map(params![room_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn record_security_event(
    tx: &rusqlite::Connection,
    kind: &str,
    room_id: Option<&str>,
    user_id: Option<&str>,
    detail: &str,
) -> Result<(), StoreError> {
    let now = time::OffsetDateTime::now_utc();
    let ts_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    super::exec(
        tx,
        "INSERT INTO security_events (ts_ms, kind, room_id, user_id, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![ts_ms, kind, room_id, user_id, detail],
    )?;
    tracing::warn!(kind, room_id, user_id, detail, "security event");
    Ok(())
}

const ROOM_SUMMARY_SELECT: &str = "SELECT r.room_id, r.membership, r.name, r.encryption,
    (SELECT count(*) FROM members m WHERE m.room_id = r.room_id AND m.membership = 'join'),
    (SELECT count(*) FROM members m WHERE m.room_id = r.room_id AND m.membership = 'invite')
    FROM rooms r";

fn room_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<RoomSummary> {
    Ok(RoomSummary {
        room_id: r.get(0)?,
        membership: r.get(1)?,
        name: r.get(2)?,
        encryption: r.get(3)?,
        joined_members: r.get(4)?,
        invited_members: r.get(5)?,
    })
}

impl Store {
    /// Every room we are joined to or invited to, by room id.
    pub fn rooms(&self) -> Result<Vec<RoomSummary>, StoreError> {
        let mut stmt = self.conn().prepare(&format!(
            "{ROOM_SUMMARY_SELECT} WHERE r.membership IN ('join', 'invite') ORDER BY r.room_id"
        ))?;
        let rows = stmt.query_map([], room_summary)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One room, whatever our membership.
    pub fn room(&self, room_id: &str) -> Result<Option<RoomSummary>, StoreError> {
        Ok(super::query_row(
            self.conn(),
            &format!("{ROOM_SUMMARY_SELECT} WHERE r.room_id = ?1"),
            params![room_id],
            room_summary,
        )
        .optional()?)
    }

    /// The members of a room (any membership), by user id.
    pub fn members(&self, room_id: &str) -> Result<Vec<Member>, StoreError> {
        let mut stmt = self.conn().prepare(
            "SELECT user_id, membership, display_name FROM members WHERE room_id = ?1 ORDER BY user_id",
        )?;
        let rows = stmt.query_map(params![room_id], |r| {
            let user_id: String = r.get(0)?;
            let display_name: Option<String> = r.get(2)?;
            Ok(Member {
                name: crate::display_name::parse(display_name.as_deref(), &user_id, &[]),
                user_id,
                membership: r.get(1)?,
                display_name,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The security journal, oldest first.
    pub fn security_events(&self) -> Result<Vec<SecurityEvent>, StoreError> {
        let mut stmt = self.conn().prepare(
            "SELECT id, ts_ms, kind, room_id, user_id, detail FROM security_events ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SecurityEvent {
                id: r.get(0)?,
                ts_ms: r.get(1)?,
                kind: r.get(2)?,
                room_id: r.get(3)?,
                user_id: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
