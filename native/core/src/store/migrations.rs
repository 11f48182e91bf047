//! Numbered schema migrations tracked by `PRAGMA user_version`.
//!
//! Migration N takes a database at version N-1 to version N, inside one transaction together
//! with the `user_version` bump, so a crash mid-migration leaves the previous version intact.
//! Never edit a migration that has shipped: add the next one, and a test that upgrades from the
//! previous version.

use rusqlite::Connection;

use super::StoreError;

/// Each entry is the SQL of one migration; index 0 is version 1.
const MIGRATIONS: &[&str] = &[
    // 1: session, sync token, rooms, members, security events.
    "CREATE TABLE kv (
         key   TEXT PRIMARY KEY NOT NULL,
         value BLOB NOT NULL
     ) STRICT;
     CREATE TABLE rooms (
         room_id    TEXT PRIMARY KEY NOT NULL,
         membership TEXT NOT NULL,
         name       TEXT,
         encryption TEXT,
         is_direct  INTEGER NOT NULL DEFAULT 0
     ) STRICT;
     CREATE TABLE members (
         room_id      TEXT NOT NULL REFERENCES rooms(room_id) ON DELETE CASCADE,
         user_id      TEXT NOT NULL,
         membership   TEXT NOT NULL,
         display_name TEXT,
         PRIMARY KEY (room_id, user_id)
     ) STRICT;
     CREATE TABLE security_events (
         id      INTEGER PRIMARY KEY AUTOINCREMENT,
         ts_ms   INTEGER NOT NULL,
         kind    TEXT NOT NULL,
         room_id TEXT,
         user_id TEXT,
         detail  TEXT NOT NULL
     ) STRICT;",
    // 2: end-to-end encryption: our Olm account, devices we track, Olm and Megolm sessions,
    //    Megolm message indices (replay detection), the room timeline, the to-device and
    //    room-event outboxes (idempotent retries with stable transaction ids).
    "CREATE TABLE crypto_account (
         id             INTEGER PRIMARY KEY CHECK (id = 1),
         pickle         TEXT NOT NULL,
         pending_upload TEXT
     ) STRICT;
     CREATE TABLE tracked_users (
         user_id TEXT PRIMARY KEY NOT NULL,
         dirty   INTEGER NOT NULL DEFAULT 1
     ) STRICT;
     CREATE TABLE devices (
         user_id       TEXT NOT NULL,
         device_id     TEXT NOT NULL,
         ed25519       TEXT NOT NULL,
         curve25519    TEXT NOT NULL,
         display_name  TEXT,
         state         TEXT NOT NULL,
         deleted       INTEGER NOT NULL DEFAULT 0,
         first_seen_ms INTEGER NOT NULL,
         PRIMARY KEY (user_id, device_id)
     ) STRICT;
     CREATE INDEX devices_by_curve25519 ON devices (curve25519);
     CREATE TABLE olm_sessions (
         session_id   TEXT PRIMARY KEY NOT NULL,
         sender_key   TEXT NOT NULL,
         pickle       TEXT NOT NULL,
         created_ms   INTEGER NOT NULL,
         last_used_ms INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX olm_sessions_by_sender_key ON olm_sessions (sender_key);
     CREATE TABLE olm_unwedge (
         sender_key TEXT PRIMARY KEY NOT NULL,
         user_id    TEXT NOT NULL,
         device_id  TEXT NOT NULL,
         last_ms    INTEGER NOT NULL,
         done       INTEGER NOT NULL DEFAULT 0
     ) STRICT;
     CREATE TABLE inbound_group_sessions (
         room_id          TEXT NOT NULL,
         session_id       TEXT NOT NULL,
         sender_key       TEXT NOT NULL,
         sender_user_id   TEXT NOT NULL,
         sender_device_id TEXT NOT NULL,
         sender_ed25519   TEXT NOT NULL,
         pickle           TEXT NOT NULL,
         first_index      INTEGER NOT NULL,
         PRIMARY KEY (room_id, session_id)
     ) STRICT;
     CREATE TABLE outbound_group_sessions (
         room_id       TEXT PRIMARY KEY NOT NULL,
         session_id    TEXT NOT NULL,
         pickle        TEXT NOT NULL,
         created_ms    INTEGER NOT NULL,
         message_count INTEGER NOT NULL,
         shared_with   TEXT NOT NULL
     ) STRICT;
     CREATE TABLE megolm_indices (
         session_id    TEXT NOT NULL,
         message_index INTEGER NOT NULL,
         event_id      TEXT NOT NULL,
         PRIMARY KEY (session_id, message_index)
     ) STRICT;
     CREATE TABLE timeline (
         event_id      TEXT PRIMARY KEY NOT NULL,
         room_id       TEXT NOT NULL,
         seq           INTEGER NOT NULL,
         sender        TEXT NOT NULL,
         origin_ts     INTEGER NOT NULL,
         state         TEXT NOT NULL,
         session_id    TEXT,
         sender_device TEXT,
         trust         TEXT,
         body          TEXT,
         raw           TEXT,
         error         TEXT
     ) STRICT;
     CREATE INDEX timeline_by_room ON timeline (room_id, seq);
     CREATE UNIQUE INDEX timeline_by_seq ON timeline (seq);
     CREATE INDEX timeline_undecrypted ON timeline (state, session_id);
     CREATE TABLE outbox (
         txn_id     TEXT PRIMARY KEY NOT NULL,
         kind       TEXT NOT NULL,
         target     TEXT NOT NULL,
         body       TEXT NOT NULL,
         created_ms INTEGER NOT NULL
     ) STRICT;",
    // 3: fewer B-trees written per received message (measured in the receive benchmark, issue
    // 7). The timeline's `seq` becomes its rowid (a new row gets max(seq) + 1 as before, without
    // the sub-query whose open cursor made SQLite save and copy cursor keys on every insert);
    // the index of undecryptable events only holds those; the replay record is one B-tree.
    "CREATE TABLE timeline_v3 (
         seq           INTEGER PRIMARY KEY,
         event_id      TEXT NOT NULL UNIQUE,
         room_id       TEXT NOT NULL,
         sender        TEXT NOT NULL,
         origin_ts     INTEGER NOT NULL,
         state         TEXT NOT NULL,
         session_id    TEXT,
         sender_device TEXT,
         trust         TEXT,
         body          TEXT,
         raw           TEXT,
         error         TEXT
     ) STRICT;
     INSERT INTO timeline_v3 (seq, event_id, room_id, sender, origin_ts, state, session_id,
                              sender_device, trust, body, raw, error)
         SELECT seq, event_id, room_id, sender, origin_ts, state, session_id, sender_device,
                trust, body, raw, error
         FROM timeline;
     DROP TABLE timeline;
     ALTER TABLE timeline_v3 RENAME TO timeline;
     CREATE INDEX timeline_by_room ON timeline (room_id, seq);
     CREATE INDEX timeline_undecryptable ON timeline (room_id, session_id)
         WHERE state = 'undecryptable';
     CREATE TABLE megolm_indices_v3 (
         session_id    TEXT NOT NULL,
         message_index INTEGER NOT NULL,
         event_id      TEXT NOT NULL,
         PRIMARY KEY (session_id, message_index)
     ) STRICT, WITHOUT ROWID;
     INSERT INTO megolm_indices_v3 SELECT session_id, message_index, event_id FROM megolm_indices;
     DROP TABLE megolm_indices;
     ALTER TABLE megolm_indices_v3 RENAME TO megolm_indices;",
    // 4: attachments (issue 8). The `m.file` / `m.image` an event announces: name, media type,
    // size and the validated `EncryptedFile` (key, IV, hash; this column is as secret as the
    // Megolm keys, and as protected: the whole database is SQLCipher-encrypted).
    "ALTER TABLE timeline ADD COLUMN attachment TEXT;",
    // 5: complete timelines and a send queue that never wedges (issue 14).
    //  - `timeline.ord`: the event's position in its room, in the server's order whatever way
    //    it came (sync appends above `rooms.next_ord`, a gap is filled downwards inside the
    //    range reserved for it, history is loaded downwards below `rooms.low_ord`); the old
    //    rows keep their arrival order. `timeline.txn_id`: the transaction id of our own
    //    message (its local echo: `queued`, `sent`, `failed`, then `decrypted` once the sync
    //    returns it).
    //  - `rooms.last_event_id`: the newest timeline event a sync delivered (what a later gap
    //    must reach); `rooms.back_token` / `history_complete`: where loading older history
    //    resumes.
    //  - `gaps`: a `limited` timeline's missing part, recorded with the sync that revealed it
    //    and filled page by page, each page committed with the gap's progress.
    //  - `outbox.attempts` / `next_attempt_ms`: per-request back-off after transient failures.
    "ALTER TABLE timeline ADD COLUMN ord INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE timeline ADD COLUMN txn_id TEXT;
     UPDATE timeline SET ord = seq;
     DROP INDEX timeline_by_room;
     CREATE INDEX timeline_by_room ON timeline (room_id, ord);
     CREATE UNIQUE INDEX timeline_by_txn ON timeline (txn_id) WHERE txn_id IS NOT NULL;
     ALTER TABLE rooms ADD COLUMN last_event_id TEXT;
     ALTER TABLE rooms ADD COLUMN next_ord INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE rooms ADD COLUMN low_ord INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE rooms ADD COLUMN back_token TEXT;
     ALTER TABLE rooms ADD COLUMN history_complete INTEGER NOT NULL DEFAULT 0;
     UPDATE rooms SET
         next_ord = coalesce((SELECT max(seq) FROM timeline t WHERE t.room_id = rooms.room_id), 0) + 1,
         low_ord = coalesce((SELECT min(seq) FROM timeline t WHERE t.room_id = rooms.room_id), 1) - 1;
     CREATE TABLE gaps (
         id          INTEGER PRIMARY KEY,
         room_id     TEXT NOT NULL,
         from_token  TEXT NOT NULL,
         until_event TEXT,
         next_ord    INTEGER NOT NULL,
         floor_ord   INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX gaps_by_room ON gaps (room_id);
     ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE outbox ADD COLUMN next_attempt_ms INTEGER NOT NULL DEFAULT 0;",
    // 6: cross-signing (issue 16).
    //  - `own_cross_signing`: our master, self-signing and user-signing keys — the private
    //    parts only sealed with a key derived from the pickle key (`sealed`), the public ones
    //    in clear — and how far their publication went (`pending`: generated, not known to be
    //    on the server; `published`: `/keys/device_signing/upload` acknowledged;
    //    `device_signed`: our device's signature by the self-signing key acknowledged too).
    //    Row 1 is the identity in use; row 2 a replacement a reset is publishing, kept apart
    //    so that a reset the server refuses loses nothing.
    //  - `identities`: each user's master key, pinned at first sight; the self-signing key it
    //    signed; `pinned`, `verified` (interactively, or our own keys) or `changed` (the server
    //    now shows another master key, kept in `changed_master`: no room keys until the user
    //    is verified again).
    //  - `devices.cross_signed`: the device keys carry a valid signature of the pinned
    //    identity's self-signing key (recomputed from every `/keys/query` answer).
    "CREATE TABLE own_cross_signing (
         id           INTEGER PRIMARY KEY CHECK (id IN (1, 2)),
         sealed       TEXT NOT NULL,
         master       TEXT NOT NULL,
         self_signing TEXT NOT NULL,
         user_signing TEXT NOT NULL,
         state        TEXT NOT NULL
     ) STRICT;
     CREATE TABLE identities (
         user_id        TEXT PRIMARY KEY NOT NULL,
         master         TEXT NOT NULL,
         self_signing   TEXT,
         state          TEXT NOT NULL,
         changed_master TEXT,
         first_seen_ms  INTEGER NOT NULL
     ) STRICT;
     ALTER TABLE devices ADD COLUMN cross_signed INTEGER NOT NULL DEFAULT 0;",
    // 7: push (issue 17). `pushers`: the HTTP pushers this device registered (app id, push
    // key), so that logout and wipe remove them from the server. Recorded before
    // `/pushers/set` is sent: a crash in between leaves a row for a pusher that may not
    // exist, and removing a pusher that does not exist is harmless.
    "CREATE TABLE pushers (
         app_id  TEXT NOT NULL,
         pushkey TEXT NOT NULL,
         PRIMARY KEY (app_id, pushkey)
     ) STRICT;",
    // 8: notifications (issue 17 item 2). The notification path fetches to-device messages
    // with its own sync position, so the homeserver may hand a message to both paths:
    // `to_device_seen` holds a digest of every to-device message applied (by either path) so
    // that a second delivery is dropped as already applied (`path`: which path applied it; a
    // second delivery on the same path is a replay). `notify_deferred`: what the
    // notification path received for the main sync to report (verification messages, the
    // ids of stored events a late key decrypted).
    "CREATE TABLE to_device_seen (
         digest  BLOB PRIMARY KEY NOT NULL,
         path    TEXT NOT NULL,
         seen_ms INTEGER NOT NULL
     ) STRICT, WITHOUT ROWID;
     CREATE INDEX to_device_seen_by_time ON to_device_seen (seen_ms);
     CREATE TABLE notify_deferred (
         id      INTEGER PRIMARY KEY,
         kind    TEXT NOT NULL,
         payload TEXT NOT NULL
     ) STRICT;",
    // 9: push rules evaluated on the device (issue 17 item 3). A room's power levels, as far
    // as notifications need them (`users`, `users_default`, `notifications`), as JSON.
    "ALTER TABLE rooms ADD COLUMN power_levels TEXT;",
    // 10: replies, edits and redactions (issue 18). `reply_to`: the event a message answers
    // (from its encrypted `m.relates_to`); `replaces`: set on an edit's own row (never listed)
    // to the message it edits; `edited_by`: on a message, the edit whose text it now shows (the
    // earlier text is gone). `redactions`: a redaction received before the event it redacts
    // (back-fill order, a gap): applied, with the same checks, when the event arrives.
    "ALTER TABLE timeline ADD COLUMN reply_to TEXT;
     ALTER TABLE timeline ADD COLUMN replaces TEXT;
     ALTER TABLE timeline ADD COLUMN edited_by TEXT;
     CREATE INDEX timeline_edits ON timeline (replaces) WHERE replaces IS NOT NULL;
     CREATE TABLE redactions (
         event_id     TEXT PRIMARY KEY NOT NULL,
         room_id      TEXT NOT NULL,
         redaction_id TEXT NOT NULL,
         sender       TEXT NOT NULL
     ) STRICT;",
    // 11: receipts and disappearing messages (issue 18 items 3-4). `rooms.retention_ms`: the
    // room's `m.room.retention` `max_lifetime`; `rooms.read_event_id`: the event our own read
    // receipt (public or private) points at; `rooms.fully_read`: the `m.fully_read` marker;
    // `timeline.mentions`: a message's `m.mentions` (the unread highlight count needs it);
    // `rooms.creators`: in room versions 12 and later the creators (the `m.room.create` sender
    // and its `additional_creators`) outrank every power level without being listed in it.
    // `timeline_by_age`: the purge of expired messages and its next deadline read a room's
    // oldest events without a scan.
    "ALTER TABLE timeline ADD COLUMN mentions TEXT;
     ALTER TABLE rooms ADD COLUMN creators TEXT;
     ALTER TABLE rooms ADD COLUMN retention_ms INTEGER;
     ALTER TABLE rooms ADD COLUMN read_event_id TEXT;
     ALTER TABLE rooms ADD COLUMN fully_read TEXT;
     CREATE INDEX timeline_by_age ON timeline (room_id, origin_ts);",
];

/// The schema version this library writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Migrates up to `target` (tests use it to build a database of an earlier version).
fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(current.max(0) as usize)
        .take(target.saturating_sub(current.max(0)).max(0) as usize)
    {
        let version = index as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_empty_database_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn version_1_upgrades_to_version_2_keeping_its_data() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 1).unwrap();
        conn.execute_batch(
            "INSERT INTO kv VALUES ('sync.next_batch', CAST('s42' AS BLOB));
             INSERT INTO rooms (room_id, membership, encryption) VALUES ('!r:s', 'join', 'm.megolm.v1.aes-sha2');
             INSERT INTO members VALUES ('!r:s', '@a:s', 'join', 'A');",
        )
        .unwrap();
        assert!(conn.prepare("SELECT * FROM timeline").is_err());
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let name: String = conn
            .query_row(
                "SELECT display_name FROM members WHERE user_id = '@a:s'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(name, "A");
        conn.execute("INSERT INTO timeline (event_id, room_id, seq, sender, origin_ts, state) VALUES ('$e', '!r:s', 1, '@a:s', 0, 'decrypted')", []).unwrap();
    }

    #[test]
    fn version_3_upgrades_to_version_4_with_no_attachment_on_old_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 3).unwrap();
        conn.execute("INSERT INTO timeline (event_id, room_id, sender, origin_ts, state, body) VALUES ('$a', '!r:s', '@a:s', 10, 'decrypted', 'hello')", []).unwrap();
        migrate_to(&mut conn, 4).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 4);
        let (body, attachment): (String, Option<String>) = conn
            .query_row(
                "SELECT body, attachment FROM timeline WHERE event_id = '$a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((body.as_str(), attachment), ("hello", None));
    }

    #[test]
    fn version_2_upgrades_to_version_3_keeping_the_timeline_and_replay_records() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 2).unwrap();
        conn.execute_batch(
            "INSERT INTO timeline (event_id, room_id, seq, sender, origin_ts, state, session_id, raw)
                 VALUES ('$b', '!r:s', 2, '@a:s', 20, 'undecryptable', 'S', '{}'),
                        ('$a', '!r:s', 1, '@a:s', 10, 'decrypted', 'S', NULL);
             INSERT INTO megolm_indices VALUES ('S', 0, '$a');",
        )
        .unwrap();
        migrate_to(&mut conn, 3).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 3);
        let order: Vec<(i64, String, String)> = conn
            .prepare("SELECT seq, event_id, state FROM timeline ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            order,
            [
                (1, "$a".into(), "decrypted".into()),
                (2, "$b".into(), "undecryptable".into())
            ]
        );
        // A new row still takes the next sequence number; event ids stay unique.
        conn.execute("INSERT INTO timeline (event_id, room_id, sender, origin_ts, state) VALUES ('$c', '!r:s', '@a:s', 30, 'decrypted')", []).unwrap();
        let seq: i64 = conn
            .query_row("SELECT seq FROM timeline WHERE event_id = '$c'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(seq, 3);
        assert!(conn.execute("INSERT INTO timeline (event_id, room_id, sender, origin_ts, state) VALUES ('$c', '!r:s', '@a:s', 30, 'decrypted')", []).is_err());
        let replay: String = conn
            .query_row(
                "SELECT event_id FROM megolm_indices WHERE session_id = 'S' AND message_index = 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(replay, "$a");
        // The undecryptable events are found through the partial index.
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT event_id, raw FROM timeline
                 WHERE state = 'undecryptable' AND room_id = '!r:s' AND session_id = 'S' AND raw IS NOT NULL",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("timeline_undecryptable"), "{plan}");
    }

    #[test]
    fn version_4_upgrades_to_version_5_keeping_the_order_and_the_queue() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 4).unwrap();
        conn.execute_batch(
            "INSERT INTO rooms (room_id, membership) VALUES ('!r:s', 'join'), ('!e:s', 'join');
             INSERT INTO timeline (seq, event_id, room_id, sender, origin_ts, state, body)
                 VALUES (5, '$a', '!r:s', '@a:s', 10, 'decrypted', 'un'),
                        (9, '$b', '!r:s', '@a:s', 20, 'decrypted', 'deux');
             INSERT INTO outbox (txn_id, kind, target, body, created_ms)
                 VALUES ('t1', 'room_event:m.room.encrypted', '!r:s', '{}', 1);",
        )
        .unwrap();
        migrate_to(&mut conn, 5).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 5);
        let order: Vec<(String, i64)> = conn
            .prepare("SELECT event_id, ord FROM timeline WHERE room_id = '!r:s' ORDER BY ord")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(order, [("$a".into(), 5), ("$b".into(), 9)]);
        let cursors: Vec<(String, i64, i64)> = conn
            .prepare("SELECT room_id, next_ord, low_ord FROM rooms ORDER BY room_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // New events go after the old ones, older history before them; an empty room starts
        // at the defaults.
        assert_eq!(cursors, [("!e:s".into(), 1, 0), ("!r:s".into(), 10, 4)]);
        let (attempts, next): (i64, i64) = conn
            .query_row(
                "SELECT attempts, next_attempt_ms FROM outbox WHERE txn_id = 't1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((attempts, next), (0, 0));
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT * FROM timeline WHERE room_id = '!r:s' ORDER BY ord DESC LIMIT 5",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("timeline_by_room"), "{plan}");
    }

    #[test]
    fn version_5_upgrades_to_version_6_with_every_known_device_not_cross_signed() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 5).unwrap();
        conn.execute_batch(
            "INSERT INTO devices (user_id, device_id, ed25519, curve25519, state, first_seen_ms)
                 VALUES ('@a:s', 'D', 'E', 'C', 'tofu', 1);",
        )
        .unwrap();
        migrate_to(&mut conn, 6).unwrap();
        let cross_signed: i64 = conn
            .query_row(
                "SELECT cross_signed FROM devices WHERE device_id = 'D'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            cross_signed, 0,
            "no device is vouched for by an identity not yet seen"
        );
        let identities: i64 = conn
            .query_row("SELECT count(*) FROM identities", [], |r| r.get(0))
            .unwrap();
        assert_eq!(identities, 0);
        // Two slots for our own keys (in use, a reset's replacement), no third.
        for id in [1, 2] {
            conn.execute(
                "INSERT INTO own_cross_signing VALUES (?1, 's', 'm', 'ss', 'us', 'pending')",
                [id],
            )
            .unwrap();
        }
        assert!(
            conn.execute(
                "INSERT INTO own_cross_signing VALUES (3, 's', 'm', 'ss', 'us', 'pending')",
                [],
            )
            .is_err()
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::NewerSchema { .. })
        ));
    }
}
