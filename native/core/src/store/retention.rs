//! Disappearing messages (issue 18 item 4): a room's `m.room.retention` `max_lifetime`, and the
//! managed configuration's ceiling on every room (`max_message_lifetime_days`), honoured here
//! whatever the server keeps.
//!
//! A message older than its room's lifetime (the smaller of the room's and the ceiling) is
//! purged: its row becomes a tombstone in state `expired` — no text, attachment, ciphertext or
//! error, its edits too — in one transaction; the freed bytes are zeroed (`secure_delete`) and
//! the write-ahead log truncated after the commit ([`super::relations`]'s erasure flag, made
//! good at the next open if the process dies in between). The tombstone stays so that the event
//! is never fetched and decrypted again; an event older than its lifetime when it arrives
//! (scroll-back, a gap) is stored as a tombstone at once, never decrypted.

use rusqlite::{Connection, OptionalExtension as _, params};

use super::StoreError;

/// `kv`: the managed configuration's ceiling, in ms (absent: none), written at each open.
const CEILING_KEY: &str = "retention.ceiling_ms";

/// The shortest lifetime honoured: a room asking less gets this (a homeserver or a member
/// cannot make messages vanish before they can be read).
pub(crate) const MIN_LIFETIME_MS: i64 = 30_000;

/// Stores the ceiling of the configuration in force.
pub(crate) fn set_ceiling(conn: &Connection, ceiling_ms: Option<i64>) -> Result<(), StoreError> {
    match ceiling_ms {
        Some(ms) => super::kv_set(conn, CEILING_KEY, ms.to_string().as_bytes()),
        None => {
            super::exec(conn, "DELETE FROM kv WHERE key = ?1", params![CEILING_KEY])?;
            Ok(())
        }
    }
}

fn ceiling(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(super::kv_get(conn, CEILING_KEY)?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse().ok()))
}

/// A room's `max_lifetime` as its state says (already checked), or none.
pub(crate) fn set_room_retention(
    conn: &Connection,
    room_id: &str,
    max_lifetime_ms: Option<i64>,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE rooms SET retention_ms = ?2 WHERE room_id = ?1",
        params![room_id, max_lifetime_ms],
    )?;
    Ok(())
}

/// What a room's lifetime is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetimes {
    /// The room's `max_lifetime` (ms), as stored.
    pub(crate) room_ms: Option<i64>,
    /// The managed configuration's ceiling (ms).
    pub(crate) ceiling_ms: Option<i64>,
}

impl Lifetimes {
    /// The lifetime honoured: the smaller of the two, never under [`MIN_LIFETIME_MS`].
    pub(crate) fn effective_ms(self) -> Option<i64> {
        let lifetime = match (self.room_ms, self.ceiling_ms) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (r, c) => r.or(c),
        };
        lifetime.map(|ms| ms.max(MIN_LIFETIME_MS))
    }
}

/// The lifetimes of `room_id`.
pub(crate) fn lifetimes(conn: &Connection, room_id: &str) -> Result<Lifetimes, StoreError> {
    let room_ms = super::query_row(
        conn,
        "SELECT retention_ms FROM rooms WHERE room_id = ?1",
        params![room_id],
        |r| r.get::<_, Option<i64>>(0),
    )
    .optional()?
    .flatten();
    Ok(Lifetimes {
        room_ms,
        ceiling_ms: ceiling(conn)?,
    })
}

/// Whether an event of `room_id` sent at `origin_ts` has outlived its room's lifetime at `now`.
pub(crate) fn expired(
    conn: &Connection,
    room_id: &str,
    origin_ts: i64,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(lifetimes(conn, room_id)?
        .effective_ms()
        .is_some_and(|life| origin_ts.saturating_add(life) <= now))
}

/// States a purge leaves alone: tombstones already, and our messages not sent yet (their
/// lifetime starts when they reach the room).
const KEPT: &str = "('expired', 'redacted', 'queued')";

/// Purges every message whose lifetime is over at `now`; returns how many rows were purged.
pub(crate) fn purge(conn: &Connection, now: i64) -> Result<usize, StoreError> {
    let ceiling_ms = ceiling(conn)?;
    let rooms: Vec<(String, Option<i64>)> = {
        let mut stmt = conn.prepare_cached("SELECT room_id, retention_ms FROM rooms")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut purged = 0;
    for (room_id, room_ms) in rooms {
        let Some(life) = (Lifetimes {
            room_ms,
            ceiling_ms,
        })
        .effective_ms() else {
            continue;
        };
        let cutoff = now.saturating_sub(life);
        let n = super::exec(
            conn,
            &format!(
                "UPDATE timeline SET state = 'expired', body = NULL, attachment = NULL, raw = NULL,
                     error = NULL, edited_by = NULL
                 WHERE room_id = ?1 AND origin_ts <= ?2 AND state NOT IN {KEPT}"
            ),
            params![room_id, cutoff],
        )?;
        if n > 0 {
            // Edits of a purged message go with it, whatever their own age.
            super::exec(
                conn,
                &format!(
                    "UPDATE timeline SET state = 'expired', body = NULL, attachment = NULL,
                         raw = NULL, error = NULL
                     WHERE room_id = ?1 AND state NOT IN {KEPT} AND replaces IN
                         (SELECT event_id FROM timeline WHERE room_id = ?1 AND state = 'expired')"
                ),
                params![room_id],
            )?;
            purged += n;
        }
    }
    if purged > 0 {
        super::relations::flag_erasure(conn)?;
        crate::fault::point("mid-purge");
    }
    Ok(purged)
}

/// When the next message expires (ms since the epoch), if any room has a lifetime.
pub(crate) fn next_expiry(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let ceiling_ms = ceiling(conn)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT r.retention_ms,
                (SELECT min(t.origin_ts) FROM timeline t
                 WHERE t.room_id = r.room_id AND t.state NOT IN {KEPT})
         FROM rooms r"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
    })?;
    let mut next: Option<i64> = None;
    for row in rows {
        let (room_ms, oldest) = row?;
        let life = Lifetimes {
            room_ms,
            ceiling_ms,
        }
        .effective_ms();
        if let (Some(life), Some(oldest)) = (life, oldest) {
            let at = oldest.saturating_add(life);
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations_for_tests(&mut conn);
        for room in ["!short:x", "!none:x"] {
            super::super::rooms::upsert_room(&conn, room, "join").unwrap();
        }
        conn
    }

    fn message(conn: &Connection, id: &str, room: &str, ts: i64, state: &str) {
        conn.execute(
            "INSERT INTO timeline (event_id, room_id, sender, origin_ts, state, body, raw, ord)
             VALUES (?1, ?2, '@a:x', ?3, ?4, 'text', 'cipher', ?3)",
            params![id, room, ts, state],
        )
        .unwrap();
    }

    fn state(conn: &Connection, id: &str) -> (String, Option<String>, Option<String>) {
        conn.query_row(
            "SELECT state, body, raw FROM timeline WHERE event_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }

    #[test]
    fn the_smaller_lifetime_counts_and_never_under_the_floor() {
        let l = |room_ms, ceiling_ms| {
            Lifetimes {
                room_ms,
                ceiling_ms,
            }
            .effective_ms()
        };
        assert_eq!(l(None, None), None);
        assert_eq!(l(Some(60_000), None), Some(60_000));
        assert_eq!(l(None, Some(90_000)), Some(90_000));
        assert_eq!(l(Some(60_000), Some(90_000)), Some(60_000));
        assert_eq!(l(Some(120_000), Some(90_000)), Some(90_000));
        assert_eq!(l(Some(1), None), Some(MIN_LIFETIME_MS));
        assert_eq!(
            l(Some(MIN_LIFETIME_MS + 1), None),
            Some(MIN_LIFETIME_MS + 1)
        );
    }

    #[test]
    fn expired_messages_and_their_edits_become_tombstones_and_the_rest_stays() {
        let conn = db();
        set_room_retention(&conn, "!short:x", Some(60_000)).unwrap();
        message(&conn, "$old", "!short:x", 1_000, "decrypted");
        message(&conn, "$edge", "!short:x", 40_000, "undecryptable");
        message(&conn, "$new", "!short:x", 40_001, "decrypted");
        message(&conn, "$queued", "!short:x", 1_000, "queued");
        message(&conn, "$other", "!none:x", 1_000, "decrypted");
        // An edit newer than the cutoff, of an expired message.
        message(&conn, "$edit", "!short:x", 50_000, "decrypted");
        conn.execute(
            "UPDATE timeline SET replaces = '$old' WHERE event_id = '$edit'",
            [],
        )
        .unwrap();
        assert_eq!(next_expiry(&conn).unwrap(), Some(61_000));
        // Nothing due yet: nothing purged, no log truncation asked for.
        assert_eq!(purge(&conn, 60_000).unwrap(), 0);
        assert!(!super::super::relations::erasure_pending(&conn).unwrap());
        assert_eq!(purge(&conn, 100_000).unwrap(), 2);
        for id in ["$old", "$edge", "$edit"] {
            assert_eq!(state(&conn, id), ("expired".into(), None, None), "{id}");
        }
        assert_eq!(state(&conn, "$new").0, "decrypted");
        assert_eq!(state(&conn, "$queued").0, "queued", "not sent yet");
        assert_eq!(state(&conn, "$other").0, "decrypted", "no lifetime");
        assert!(super::super::relations::erasure_pending(&conn).unwrap());
        assert_eq!(
            next_expiry(&conn).unwrap(),
            Some(40_001 + 60_000),
            "a queued one waits"
        );
        assert!(expired(&conn, "!short:x", 40_000, 100_000).unwrap());
        assert!(!expired(&conn, "!short:x", 40_001, 100_000).unwrap());
        assert!(!expired(&conn, "!none:x", 0, 100_000).unwrap());
        // The ceiling reaches every room.
        set_ceiling(&conn, Some(50_000)).unwrap();
        assert_eq!(purge(&conn, 100_000).unwrap(), 2);
        assert_eq!(state(&conn, "$other").0, "expired");
        assert_eq!(state(&conn, "$new").0, "expired");
        set_ceiling(&conn, None).unwrap();
        assert!(!expired(&conn, "!none:x", 0, 100_000).unwrap());
        assert_eq!(purge(&conn, 100_000).unwrap(), 0);
    }
}
