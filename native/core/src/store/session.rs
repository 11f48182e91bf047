//! The login session and the sync token, in the `kv` table.

use rusqlite::{OptionalExtension as _, params};

use super::{Store, StoreError};
use crate::secret::AccessToken;

const SESSION_KEY: &str = "session";
const NEXT_BATCH_KEY: &str = "sync.next_batch";

/// What is needed to resume a session after a restart without logging in again.
#[derive(Debug)]
pub struct StoredSession {
    /// Our user id.
    pub user_id: String,
    /// Our device id.
    pub device_id: String,
    /// The access token (redacted `Debug`).
    pub access_token: AccessToken,
}

#[derive(serde::Serialize)]
struct SessionRecord<'a> {
    user_id: &'a str,
    device_id: &'a str,
    access_token: &'a str,
}

#[derive(serde::Deserialize)]
struct SessionRecordOwned {
    user_id: String,
    device_id: String,
    access_token: String,
}

impl Store {
    /// Saves the session (replacing any previous one) and forgets the old sync token.
    pub fn save_session(&mut self, session: &StoredSession) -> Result<(), StoreError> {
        let record = SessionRecord {
            user_id: &session.user_id,
            device_id: &session.device_id,
            access_token: session.access_token.expose(),
        };
        let bytes = zeroize::Zeroizing::new(serde_json::to_vec(&record).map_err(|e| {
            StoreError::Corrupt {
                detail: format!("session encoding: {e}"),
            }
        })?);
        self.transaction(|tx| {
            super::exec(
                tx,
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![SESSION_KEY, &bytes[..]],
            )?;
            super::exec(tx, "DELETE FROM kv WHERE key = ?1", params![NEXT_BATCH_KEY])?;
            super::notify::clear_notify_since(tx)?;
            Ok(())
        })
    }

    /// The saved session, if any.
    pub fn load_session(&self) -> Result<Option<StoredSession>, StoreError> {
        let bytes: Option<zeroize::Zeroizing<Vec<u8>>> = self
            .conn()
            .query_row(
                "SELECT value FROM kv WHERE key = ?1",
                params![SESSION_KEY],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()?
            .map(zeroize::Zeroizing::new);
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let record: SessionRecordOwned =
            serde_json::from_slice(&bytes).map_err(|_| StoreError::Corrupt {
                detail: "session record".into(),
            })?;
        Ok(Some(StoredSession {
            user_id: record.user_id,
            device_id: record.device_id,
            access_token: AccessToken::new(record.access_token),
        }))
    }

    /// Forgets the session, the sync token, every room and all end-to-end encryption state
    /// (after logout the device no longer exists on the server).
    pub fn clear_session(&mut self) -> Result<(), StoreError> {
        self.transaction(|tx| {
            tx.execute_batch(
                "DELETE FROM kv WHERE key <> 'mdm.wipe_command_nonce'; DELETE FROM members; DELETE FROM rooms;
                 DELETE FROM crypto_account; DELETE FROM tracked_users; DELETE FROM devices;
                 DELETE FROM olm_sessions; DELETE FROM olm_unwedge; DELETE FROM inbound_group_sessions;
                 DELETE FROM outbound_group_sessions; DELETE FROM megolm_indices; DELETE FROM timeline; DELETE FROM gaps;
                 DELETE FROM outbox; DELETE FROM own_cross_signing; DELETE FROM identities;
                 DELETE FROM pushers; DELETE FROM to_device_seen; DELETE FROM notify_deferred;",
            )?;
            Ok(())
        })
    }

    /// The `next_batch` of the last committed sync.
    pub fn next_batch(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT value FROM kv WHERE key = ?1",
                params![NEXT_BATCH_KEY],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

const WIPE_NONCE_KEY: &str = "mdm.wipe_command_nonce";
const TRUSTED_TIME_KEY: &str = "clock.latest_seen_secs";

/// The latest time this data directory has seen (seconds since the epoch; 0 if none): the floor
/// of the [`crate::net::TrustedClock`], so a clock set back revives no expired pin.
pub(crate) fn trusted_time(conn: &rusqlite::Connection) -> Result<u64, StoreError> {
    let value = super::query_row(
        conn,
        "SELECT value FROM kv WHERE key = ?1",
        params![TRUSTED_TIME_KEY],
        |r| r.get::<_, Vec<u8>>(0),
    )
    .optional()?;
    Ok(value
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Raises the stored latest time seen to `secs` (never lowers it).
pub(crate) fn record_trusted_time(
    conn: &rusqlite::Connection,
    secs: u64,
) -> Result<(), StoreError> {
    if secs <= trusted_time(conn)? {
        return Ok(());
    }
    super::exec(
        conn,
        "INSERT INTO kv (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![TRUSTED_TIME_KEY, secs.to_be_bytes().as_slice()],
    )?;
    Ok(())
}

impl Store {
    /// The MDM wipe-command nonce seen at the last start, if any.
    pub fn wipe_nonce(&self) -> Result<Option<String>, StoreError> {
        Ok(super::query_row(
            self.conn(),
            "SELECT value FROM kv WHERE key = ?1",
            params![WIPE_NONCE_KEY],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .optional()?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records the wipe-command nonce of the current configuration.
    pub fn set_wipe_nonce(&mut self, nonce: &str) -> Result<(), StoreError> {
        super::exec(
            self.conn(),
            "INSERT INTO kv (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![WIPE_NONCE_KEY, nonce.as_bytes()],
        )?;
        Ok(())
    }
}

/// Stores `next_batch` inside the sync's own transaction.
pub(crate) fn set_next_batch(tx: &rusqlite::Connection, token: &str) -> Result<(), StoreError> {
    super::exec(
        tx,
        "INSERT INTO kv (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![NEXT_BATCH_KEY, token.as_bytes()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::test_vault;

    #[test]
    fn session_roundtrip_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        assert!(store.load_session().unwrap().is_none());
        store
            .save_session(&StoredSession {
                user_id: "@a:b".into(),
                device_id: "DEV".into(),
                access_token: AccessToken::new("tok".into()),
            })
            .unwrap();
        drop(store);
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let s = store.load_session().unwrap().unwrap();
        assert_eq!((s.user_id.as_str(), s.device_id.as_str()), ("@a:b", "DEV"));
        assert_eq!(s.access_token.expose(), "tok");
        // Our sealed cross-signing keys and the identities pinned belong to the session too: a
        // device logged out keeps no key of the account's identity, and the next login (maybe
        // another user) starts from first sight.
        store
            .conn()
            .execute_batch(
                "INSERT INTO own_cross_signing VALUES (1, 'sealed', 'm', 'ss', 'us', 'device_signed');
                 INSERT INTO identities (user_id, master, state, first_seen_ms)
                     VALUES ('@c:d', 'm', 'verified', 1);",
            )
            .unwrap();
        store.clear_session().unwrap();
        assert!(store.load_session().unwrap().is_none());
        for table in ["own_cross_signing", "identities"] {
            let rows: i64 = store
                .conn()
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 0, "{table}");
        }
    }

    #[test]
    fn the_latest_time_seen_only_goes_forward_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let store = Store::open(dir.path(), &vault.database_key()).unwrap();
        assert_eq!(trusted_time(store.conn()).unwrap(), 0);
        record_trusted_time(store.conn(), 1_800_000_000).unwrap();
        record_trusted_time(store.conn(), 1_700_000_000).unwrap();
        assert_eq!(trusted_time(store.conn()).unwrap(), 1_800_000_000);
        drop(store);
        let store = Store::open(dir.path(), &vault.database_key()).unwrap();
        assert_eq!(trusted_time(store.conn()).unwrap(), 1_800_000_000);
        record_trusted_time(store.conn(), 1_800_000_001).unwrap();
        assert_eq!(trusted_time(store.conn()).unwrap(), 1_800_000_001);
    }
}
