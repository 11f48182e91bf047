//! The local store: one SQLCipher database, keyed with a raw 256-bit key from the vault
//! (DESIGN §6).
//!
//! - `PRAGMA key = "x'…'"` (raw key: no passphrase KDF, the key is already uniformly random);
//!   the statement text is built in a zeroizing buffer and `cipher_memory_security` is turned on
//!   before it, so SQLCipher wipes the memory it frees.
//! - A wrong key is detected at open (`file is not a database`) and reported as
//!   [`StoreError::WrongKey`]; nothing is written.
//! - `journal_mode = WAL`, `synchronous = FULL`: a committed transaction survives SIGKILL and
//!   power loss; `secure_delete`, `temp_store = MEMORY`, `foreign_keys`.
//! - Schema migrations are numbered and tracked by `user_version` ([`migrations`]).
//! - SQL is never logged (a `PRAGMA key` or `rekey` in a query log is a key in a log).

pub mod crypto;
pub mod identity;
mod migrations;
pub(crate) mod notify;
pub(crate) mod push;
pub(crate) mod receipts;
pub(crate) mod relations;
pub(crate) mod retention;
pub(crate) mod rooms;
pub(crate) mod session;
pub(crate) mod timeline;

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tchap_secure_hsm::DatabaseKey;
use zeroize::Zeroizing;

pub use crypto::{DeviceRecord, DeviceState};
pub use migrations::SCHEMA_VERSION;
pub use rooms::{Member, RoomSummary, SecurityEvent};
pub use session::StoredSession;
pub use timeline::{AttachmentSummary, TimelineEvent};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "tchap-secure.db";

/// A failure of the local store.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not open this database (wrong vault, swapped file, or not a database).
    #[error("the database key does not open this database")]
    WrongKey,
    /// The database was written by a newer version of this library.
    #[error("database schema version {found} is newer than this library's {supported}")]
    NewerSchema {
        /// `user_version` found.
        found: i64,
        /// Newest version this library knows.
        supported: i64,
    },
    /// A stored value does not have the expected shape.
    #[error("stored data is corrupt: {detail}")]
    Corrupt {
        /// What is wrong.
        detail: String,
    },
    /// Any other SQLite failure.
    #[error("database failure: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// File-system failure around the database.
    #[error("i/o failure on {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// `PRAGMA data_version` when this connection last ran [`Store::transaction_seeing`]: a
    /// different value means another connection — the notification path of another process
    /// on this data directory — committed since (SQLite leaves the value unchanged for this
    /// connection's own commits).
    seen_version: Option<i64>,
}

/// How long a writer waits for another process's write transaction to end before the store
/// reports busy (SQLite's write lock is the one-writer lock across processes: a sync round or
/// a notification's to-device fetch commits in well under a second).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// How many prepared statements a connection keeps (rusqlite's default is 16). A sync that
/// receives keys and messages runs about 25 distinct statements and a send about 15; with a cache smaller than the working set
/// every hot statement is parsed again each time it is used (SQLite's parser then costs more
/// than the statement, and each of its allocations goes through SQLCipher's locked, wiped
/// memory).
pub(crate) const STATEMENT_CACHE_CAPACITY: usize = 64;

/// Executes a statement through the connection's prepared-statement cache (the hot paths run
/// the same few statements thousands of times: parsing them each time cost more than the
/// statement itself).
pub(crate) fn exec(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// Sets `key` of the `kv` table to `value`.
pub(crate) fn kv_set(conn: &Connection, key: &str, value: &[u8]) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO kv (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        rusqlite::params![key, value],
    )?;
    Ok(())
}

/// Removes `key` from the `kv` table (nothing if absent).
pub(crate) fn kv_delete(conn: &Connection, key: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "DELETE FROM kv WHERE key = ?1",
        rusqlite::params![key],
    )?;
    Ok(())
}

/// The value of `key` in the `kv` table.
pub(crate) fn kv_get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    use rusqlite::OptionalExtension as _;
    Ok(query_row(
        conn,
        "SELECT value FROM kv WHERE key = ?1",
        rusqlite::params![key],
        |r| r.get(0),
    )
    .optional()?)
}

/// `query_row` through the prepared-statement cache.
pub(crate) fn query_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase
    )
}

impl Store {
    /// Opens (or creates) the database in `dir` with `key`, then migrates it.
    pub fn open(dir: &Path, key: &DatabaseKey) -> Result<Self, StoreError> {
        let path = dir.join(DATABASE_FILE);
        let conn = Connection::open(&path)?;
        conn.execute_batch("PRAGMA cipher_memory_security = ON;")?;
        {
            let value = key.sqlcipher_pragma_value();
            let mut statement = Zeroizing::new(String::with_capacity(value.len() + 16));
            statement.push_str("PRAGMA key = \"");
            statement.push_str(&value);
            statement.push_str("\";");
            conn.execute_batch(&statement)?;
        }
        // The first read decrypts page 1: this is where a wrong key shows.
        match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Ok(_) => {}
            Err(e) if is_not_a_database(&e) => return Err(StoreError::WrongKey),
            Err(e) => return Err(e.into()),
        }
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA secure_delete = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA foreign_keys = ON;",
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        let mut store = Self {
            conn,
            path,
            seen_version: None,
        };
        migrations::migrate(&mut store.conn)?;
        // An erasure committed just before a crash: its truncation is made good now.
        store.checkpoint_erasure()?;
        Ok(store)
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the database files of `dir` (database, WAL, shared memory, journal). Part of a
    /// wipe: the vault's KEK is destroyed first, so these files are already undecryptable.
    pub fn delete_files(dir: &Path) -> Result<(), StoreError> {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = dir.join(format!("{DATABASE_FILE}{suffix}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::Io {
                        op: "delete database",
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs `f` in one immediate transaction: all of it is committed, or none of it.
    pub(crate) fn transaction<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        self.checkpoint_erasure()?;
        Ok(out)
    }

    /// As [`Store::transaction`], telling `f` whether another connection (another process on
    /// this data directory) committed since the last `transaction_seeing` of this one — in
    /// which case what this process holds in memory of the store (the Olm account) must be
    /// read again, inside `f`: the immediate transaction holds SQLite's write lock, so nothing
    /// else commits until it ends. The first call always says `true`.
    pub(crate) fn transaction_seeing<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, bool) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let out = f(&tx, self.seen_version != Some(version))?;
        tx.commit()?;
        self.seen_version = Some(version);
        self.checkpoint_erasure()?;
        Ok(out)
    }

    /// After a committed erasure (a redaction, an edit, an expiry: see [`relations`]), the
    /// write-ahead log still holds the pages as they were before it: they are copied into the
    /// database (whose freed bytes `secure_delete` zeroed) and the log is truncated to nothing.
    /// If another connection is reading an older snapshot the truncation cannot complete: the
    /// flag stays and the next commit (or open) tries again.
    pub(crate) fn checkpoint_erasure(&mut self) -> Result<(), StoreError> {
        if !relations::erasure_pending(&self.conn)? {
            return Ok(());
        }
        crate::fault::point("before-erasure-checkpoint");
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            tracing::info!("erasure checkpoint deferred: another connection is reading");
            return Ok(());
        }
        relations::erasure_done(&self.conn)?;
        // Clearing the flag wrote a frame (the `kv` page only): truncate again.
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })?;
        Ok(())
    }

    /// Runs `f` in a transaction that is always rolled back: nothing it writes is kept. It is
    /// immediate like the others: a deferred transaction that reads, then writes after
    /// another process committed, fails at once with `SQLITE_BUSY` (its snapshot is stale)
    /// instead of waiting for the write lock.
    pub(crate) fn scratch_transaction<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx);
        tx.rollback()?;
        out
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// The schema on a bare connection (unit tests of other modules).
#[cfg(test)]
pub(crate) fn migrations_for_tests(conn: &mut Connection) {
    migrations::migrate(conn).expect("migrations");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tchap_secure_hsm::soft::SoftVault;
    use tchap_secure_hsm::{Vault, VaultBinding};

    pub(crate) fn test_vault(dir: &Path) -> (SoftVault, Vault) {
        let backend = SoftVault::new().unwrap();
        let binding = VaultBinding {
            server_name: "secure.tchap.test".into(),
        };
        let vault = Vault::create(dir, &backend, &binding).unwrap();
        (backend, vault)
    }

    /// An erasure's transaction leaves the write-ahead log empty once committed (the log
    /// would otherwise keep the pages as they were, text included); a reader of an older
    /// snapshot defers the truncation to the next commit, and an open makes good one a crash
    /// left due.
    #[test]
    fn an_erasure_truncates_the_write_ahead_log_after_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
        store
            .transaction(|tx| {
                rooms::upsert_room(tx, "!r:x", "join")?;
                exec(
                    tx,
                    "INSERT INTO timeline (event_id, room_id, sender, origin_ts, state, body, ord)
                     VALUES ('$m', '!r:x', '@a:x', 1, 'decrypted', 'text', 1)",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        // Another connection reading an older snapshot: the truncation waits.
        let reader = Store::open(dir.path(), &vault.database_key()).unwrap();
        reader
            .conn()
            .execute_batch("BEGIN; SELECT count(*) FROM timeline;")
            .unwrap();
        store.transaction(|tx| relations::erase(tx, "$m")).unwrap();
        assert!(relations::erasure_pending(store.conn()).unwrap());
        reader.conn().execute_batch("COMMIT;").unwrap();
        drop(reader);
        // The next commit makes it good.
        store.transaction(|tx| kv_set(tx, "other", b"x")).unwrap();
        assert!(!relations::erasure_pending(store.conn()).unwrap());
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        // A crash after the commit, before the truncation: the open does it.
        store.transaction(|tx| relations::erase(tx, "$m")).unwrap();
        store
            .conn()
            .execute_batch("INSERT INTO kv VALUES ('erase.checkpoint_pending', x'31');")
            .unwrap();
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        drop(store);
        let store = Store::open(dir.path(), &vault.database_key()).unwrap();
        assert!(!relations::erasure_pending(store.conn()).unwrap());
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    }

    #[test]
    fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let version: i64 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = store
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        Store::open(dir.path(), &vault.database_key()).unwrap();
    }

    /// The notification path's concurrency rests on this: a connection learns, under the write
    /// lock, that another connection (another process) committed since it last looked — and
    /// its own commits do not count.
    #[test]
    fn a_commit_by_another_connection_is_seen_and_ones_own_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let mut a = Store::open(dir.path(), &vault.database_key()).unwrap();
        let mut b = Store::open(dir.path(), &vault.database_key()).unwrap();
        let write = |tx: &rusqlite::Transaction<'_>, v: &str| {
            exec(
                tx,
                "INSERT INTO kv (key, value) VALUES ('t', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                rusqlite::params![v.as_bytes()],
            )
        };
        assert!(
            a.transaction_seeing(|_, changed| Ok(changed)).unwrap(),
            "first look"
        );
        assert!(
            !a.transaction_seeing(|tx, changed| write(tx, "a1").map(|_| changed))
                .unwrap()
        );
        assert!(
            !a.transaction_seeing(|_, changed| Ok(changed)).unwrap(),
            "own commit"
        );
        // A plain transaction of its own does not count either.
        a.transaction(|tx| write(tx, "a2").map(|_| ())).unwrap();
        assert!(!a.transaction_seeing(|_, changed| Ok(changed)).unwrap());
        b.transaction(|tx| write(tx, "b1").map(|_| ())).unwrap();
        assert!(
            a.transaction_seeing(|_, changed| Ok(changed)).unwrap(),
            "b committed"
        );
        assert!(!a.transaction_seeing(|_, changed| Ok(changed)).unwrap());
        // A transaction that fails leaves the news for the next one.
        b.transaction(|tx| write(tx, "b2").map(|_| ())).unwrap();
        let failed: Result<(), StoreError> = a.transaction_seeing(|_, _| {
            Err(StoreError::Corrupt {
                detail: "test".into(),
            })
        });
        assert!(failed.is_err());
        assert!(a.transaction_seeing(|_, changed| Ok(changed)).unwrap());
    }

    #[test]
    fn wrong_key_is_typed_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        drop(Store::open(dir.path(), &vault.database_key()).unwrap());
        let before = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap();
        let other = tempfile::tempdir().unwrap();
        let (_b2, other_vault) = test_vault(other.path());
        let err = Store::open(dir.path(), &other_vault.database_key()).unwrap_err();
        assert!(matches!(err, StoreError::WrongKey), "{err:?}");
        assert_eq!(
            before,
            std::fs::read(dir.path().join(DATABASE_FILE)).unwrap()
        );
    }

    #[test]
    fn the_file_is_ciphertext_from_the_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let store = Store::open(dir.path(), &vault.database_key()).unwrap();
        store
            .conn()
            .execute(
                "INSERT INTO kv (key, value) VALUES ('canary', CAST('plaintext-canary-4242' AS BLOB))",
                [],
            )
            .unwrap();
        drop(store);
        for suffix in ["", "-wal"] {
            let path = dir.path().join(format!("{DATABASE_FILE}{suffix}"));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            assert!(!bytes.starts_with(b"SQLite format 3"));
            assert!(!bytes.windows(21).any(|w| w == b"plaintext-canary-4242"));
            assert!(!bytes.windows(8).any(|w| w == b"CREATE T"));
        }
    }
}
