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
];

/// The schema version this library writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
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
