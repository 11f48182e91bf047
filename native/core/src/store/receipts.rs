//! Read state (issue 18 item 3): the event our own read receipt points at (public or private,
//! from this device or another of ours), the `m.fully_read` marker, and the unread counts
//! computed on the device (the server cannot judge encrypted messages).

use rusqlite::{Connection, OptionalExtension as _, params};

use super::StoreError;

/// The position of `event_id` in `room_id`'s timeline, if stored there.
fn ord_of(conn: &Connection, room_id: &str, event_id: &str) -> Result<Option<i64>, StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT ord FROM timeline WHERE event_id = ?1 AND room_id = ?2",
        params![event_id, room_id],
        |r| r.get(0),
    )
    .optional()?)
}

/// Moves our read position in `room_id` to `event_id` if it is further than the one stored
/// (a receipt never moves it back: an older receipt from another device, or a stale answer);
/// returns whether it moved.
pub(crate) fn advance_read(
    conn: &Connection,
    room_id: &str,
    event_id: &str,
) -> Result<bool, StoreError> {
    let Some(new) = ord_of(conn, room_id, event_id)? else {
        return Ok(false);
    };
    let current: Option<String> = super::query_row(
        conn,
        "SELECT read_event_id FROM rooms WHERE room_id = ?1",
        params![room_id],
        |r| r.get(0),
    )
    .optional()?
    .flatten();
    if let Some(current) = current
        && ord_of(conn, room_id, &current)?.is_some_and(|old| old >= new)
    {
        return Ok(false);
    }
    super::exec(
        conn,
        "UPDATE rooms SET read_event_id = ?2 WHERE room_id = ?1",
        params![room_id, event_id],
    )?;
    Ok(true)
}

/// Stores the `m.fully_read` marker.
pub(crate) fn set_fully_read(
    conn: &Connection,
    room_id: &str,
    event_id: &str,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "UPDATE rooms SET fully_read = ?2 WHERE room_id = ?1",
        params![room_id, event_id],
    )?;
    Ok(())
}

/// `(read event, fully-read marker)` of a room.
pub(crate) fn markers(
    conn: &Connection,
    room_id: &str,
) -> Result<(Option<String>, Option<String>), StoreError> {
    Ok(super::query_row(
        conn,
        "SELECT read_event_id, fully_read FROM rooms WHERE room_id = ?1",
        params![room_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?
    .unwrap_or((None, None)))
}

/// The counts stop here: "999+" is enough for a badge.
pub(crate) const MAX_UNREAD: i64 = 999;

/// The messages of others after our read position (or all, if we never read the room),
/// newest first, at most [`MAX_UNREAD`]: `(event id, sender, body)`.
pub(crate) fn unread_messages(
    conn: &Connection,
    room_id: &str,
    own_user: &str,
) -> Result<Vec<(String, String, Option<String>)>, StoreError> {
    let (read, _) = markers(conn, room_id)?;
    let after = match read {
        Some(id) => ord_of(conn, room_id, &id)?.unwrap_or(i64::MIN),
        None => i64::MIN,
    };
    let mut stmt = conn.prepare_cached(
        "SELECT event_id, sender, body FROM timeline
         WHERE room_id = ?1 AND ord > ?2 AND sender <> ?3 AND state = 'decrypted'
           AND replaces IS NULL AND (body IS NOT NULL OR attachment IS NOT NULL)
         ORDER BY ord DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![room_id, after, own_user, MAX_UNREAD], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_position_only_moves_forward_and_counts_what_others_sent_after_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations_for_tests(&mut conn);
        super::super::rooms::upsert_room(&conn, "!r:x", "join").unwrap();
        for (i, (sender, state)) in [
            ("@b:x", "decrypted"),
            ("@me:x", "decrypted"),
            ("@b:x", "decrypted"),
            ("@b:x", "undecryptable"),
            ("@b:x", "decrypted"),
        ]
        .iter()
        .enumerate()
        {
            conn.execute(
                "INSERT INTO timeline (event_id, room_id, sender, origin_ts, state, body, ord)
                 VALUES (?1, '!r:x', ?2, 1, ?3, 'x', ?4)",
                params![format!("$e{i}"), sender, state, i as i64],
            )
            .unwrap();
        }
        assert_eq!(unread_messages(&conn, "!r:x", "@me:x").unwrap().len(), 3);
        assert!(advance_read(&conn, "!r:x", "$e2").unwrap());
        let unread = unread_messages(&conn, "!r:x", "@me:x").unwrap();
        assert_eq!(
            unread.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(),
            ["$e4"]
        );
        assert!(
            !advance_read(&conn, "!r:x", "$e1").unwrap(),
            "never backwards"
        );
        assert!(!advance_read(&conn, "!r:x", "$unknown").unwrap());
        assert_eq!(markers(&conn, "!r:x").unwrap().0.as_deref(), Some("$e2"));
        assert!(advance_read(&conn, "!r:x", "$e4").unwrap());
        assert!(unread_messages(&conn, "!r:x", "@me:x").unwrap().is_empty());
        set_fully_read(&conn, "!r:x", "$e4").unwrap();
        assert_eq!(markers(&conn, "!r:x").unwrap().1.as_deref(), Some("$e4"));
    }
}
