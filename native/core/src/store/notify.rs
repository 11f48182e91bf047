//! What the notification path (issue 17 item 2) shares with the main sync in the store:
//!
//! - the digests of the to-device messages already applied, by either path: the homeserver
//!   may deliver a message to both (each path acknowledges only up to its own position), and
//!   a second delivery must be dropped as applied — never decrypted twice (an Olm message
//!   decrypted twice is a replay, and would be journaled and unwedged as one);
//! - the notification path's own sync position for to-device messages (`kv`);
//! - what the notification path received that the main sync reports: verification messages
//!   (the flows live in the process that syncs) and the ids of stored events a late room key
//!   decrypted.

use rusqlite::{Connection, params};
use serde_json::Value;

use super::StoreError;

const NOTIFY_SINCE_KEY: &str = "notify.to_device_since";

/// How long the digest of an applied to-device message is kept. A second delivery can only
/// come while the other path has not acknowledged the message (seconds while the app runs; at
/// most until the next sync of a path that was stopped): 30 days covers a phone left off for
/// weeks.
pub(crate) const SEEN_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// A to-device message's identity: SHA-256 over its sender, type and content (for an Olm
/// message, a ciphertext no other message has).
pub(crate) fn to_device_digest(sender: &str, event_type: &str, content: &Value) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [sender.as_bytes(), b"\0", event_type.as_bytes(), b"\0"] {
        ctx.update(part);
    }
    // `Value`'s serialisation is deterministic for one parsed value; the same stored message
    // delivered twice parses to the same value.
    ctx.update(content.to_string().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Which path applies a to-device message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// The main `/sync`.
    Sync,
    /// The notification path's to-device fetch.
    Notify,
}

impl Path {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Notify => "notify",
        }
    }
}

/// What a to-device message's digest says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Never applied: apply it (its digest is now recorded).
    First,
    /// Applied by the other path: the homeserver legitimately gave it to both. Drop it.
    OtherPath,
    /// Applied by this same path, which acknowledged it: the homeserver sent it again — a
    /// replay. Drop it (and journal it).
    SamePath,
}

/// Records `digest` as applied now by `path`, or says who applied it before.
pub(crate) fn first_delivery(
    conn: &Connection,
    digest: &[u8; 32],
    path: Path,
    now_ms: i64,
) -> Result<Delivery, StoreError> {
    let inserted = super::exec(
        conn,
        "INSERT OR IGNORE INTO to_device_seen (digest, path, seen_ms) VALUES (?1, ?2, ?3)",
        params![&digest[..], path.as_str(), now_ms],
    )?;
    if inserted == 1 {
        return Ok(Delivery::First);
    }
    let before: String = super::query_row(
        conn,
        "SELECT path FROM to_device_seen WHERE digest = ?1",
        params![&digest[..]],
        |r| r.get(0),
    )?;
    Ok(if before == path.as_str() {
        Delivery::SamePath
    } else {
        Delivery::OtherPath
    })
}

/// Forgets the digests older than [`SEEN_RETENTION_MS`].
pub(crate) fn prune_seen(conn: &Connection, now_ms: i64) -> Result<(), StoreError> {
    super::exec(
        conn,
        "DELETE FROM to_device_seen WHERE seen_ms < ?1",
        params![now_ms.saturating_sub(SEEN_RETENTION_MS)],
    )?;
    Ok(())
}

/// Something the notification path received, for the main sync to report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Deferred {
    /// A to-device verification message: sender, type, content.
    Verification {
        sender: String,
        event_type: String,
        content: Value,
    },
    /// A stored event a late room key decrypted.
    Decrypted { event_id: String },
}

pub(crate) fn defer(conn: &Connection, item: &Deferred) -> Result<(), StoreError> {
    let (kind, payload) = match item {
        Deferred::Verification {
            sender,
            event_type,
            content,
        } => (
            "verification",
            serde_json::json!({ "sender": sender, "type": event_type, "content": content }),
        ),
        Deferred::Decrypted { event_id } => {
            ("decrypted", serde_json::json!({ "event_id": event_id }))
        }
    };
    super::exec(
        conn,
        "INSERT INTO notify_deferred (kind, payload) VALUES (?1, ?2)",
        params![kind, payload.to_string()],
    )?;
    Ok(())
}

/// Every deferred item, oldest first, removed from the store (inside the caller's
/// transaction: if it rolls back, they stay).
pub(crate) fn take_deferred(conn: &Connection) -> Result<Vec<Deferred>, StoreError> {
    let rows: Vec<(String, String)> = {
        let mut stmt =
            conn.prepare_cached("SELECT kind, payload FROM notify_deferred ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    super::exec(conn, "DELETE FROM notify_deferred", [])?;
    let corrupt = |what: &str| StoreError::Corrupt {
        detail: format!("deferred notification item: {what}"),
    };
    rows.into_iter()
        .map(|(kind, payload)| {
            let v: Value = serde_json::from_str(&payload).map_err(|_| corrupt("payload"))?;
            let text = |key: &str| {
                v.get(key)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| corrupt(key))
            };
            match kind.as_str() {
                "verification" => Ok(Deferred::Verification {
                    sender: text("sender")?,
                    event_type: text("type")?,
                    content: v.get("content").cloned().unwrap_or(Value::Null),
                }),
                "decrypted" => Ok(Deferred::Decrypted {
                    event_id: text("event_id")?,
                }),
                _ => Err(corrupt("kind")),
            }
        })
        .collect()
}

/// The notification path's to-device position (`None` before its first fetch).
pub(crate) fn notify_since(conn: &Connection) -> Result<Option<String>, StoreError> {
    super::kv_get(conn, NOTIFY_SINCE_KEY)?
        .map(|v| {
            String::from_utf8(v).map_err(|_| StoreError::Corrupt {
                detail: "notification sync position".into(),
            })
        })
        .transpose()
}

pub(crate) fn set_notify_since(conn: &Connection, token: &str) -> Result<(), StoreError> {
    super::kv_set(conn, NOTIFY_SINCE_KEY, token.as_bytes())
}

/// Forgets the notification path's position (a new session starts from nothing).
pub(crate) fn clear_notify_since(conn: &Connection) -> Result<(), StoreError> {
    super::exec(
        conn,
        "DELETE FROM kv WHERE key = ?1",
        params![NOTIFY_SINCE_KEY],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut conn).unwrap();
        conn
    }

    #[test]
    fn a_to_device_message_is_applied_once_and_forgotten_after_the_retention() {
        let conn = db();
        let content = serde_json::json!({"ciphertext": {"k": {"body": "AwogAb"}}});
        let d = to_device_digest("@a:x", "m.room.encrypted", &content);
        assert_ne!(d, to_device_digest("@b:x", "m.room.encrypted", &content));
        assert_ne!(d, to_device_digest("@a:x", "m.dummy", &content));
        assert_ne!(
            d,
            to_device_digest("@a:x", "m.room.encrypted", &serde_json::json!({}))
        );
        // The separator keeps sender and type apart.
        assert_ne!(
            to_device_digest("@a:x", "bc", &content),
            to_device_digest("@a:xb", "c", &content)
        );
        let t0 = 1_000_000_000_000;
        let seen = |path, t| first_delivery(&conn, &d, path, t).unwrap();
        assert_eq!(seen(Path::Notify, t0), Delivery::First);
        assert_eq!(seen(Path::Sync, t0 + 1), Delivery::OtherPath);
        assert_eq!(seen(Path::Notify, t0 + 2), Delivery::SamePath);
        prune_seen(&conn, t0 + SEEN_RETENTION_MS).unwrap();
        assert_eq!(
            seen(Path::Sync, t0 + 6),
            Delivery::OtherPath,
            "kept for the retention"
        );
        prune_seen(&conn, t0 + SEEN_RETENTION_MS + 1).unwrap();
        assert_eq!(
            seen(Path::Sync, t0 + 7),
            Delivery::First,
            "forgotten after it"
        );
        assert_eq!(seen(Path::Sync, t0 + 8), Delivery::SamePath);
    }

    #[test]
    fn deferred_items_come_back_once_in_order() {
        let conn = db();
        let v = Deferred::Verification {
            sender: "@a:x".into(),
            event_type: "m.key.verification.request".into(),
            content: serde_json::json!({"transaction_id": "t"}),
        };
        let d = Deferred::Decrypted {
            event_id: "$e".into(),
        };
        defer(&conn, &v).unwrap();
        defer(&conn, &d).unwrap();
        assert_eq!(take_deferred(&conn).unwrap(), vec![v, d]);
        assert!(take_deferred(&conn).unwrap().is_empty());
        assert_eq!(notify_since(&conn).unwrap(), None);
        set_notify_since(&conn, "s1").unwrap();
        set_notify_since(&conn, "s2").unwrap();
        assert_eq!(notify_since(&conn).unwrap().as_deref(), Some("s2"));
        clear_notify_since(&conn).unwrap();
        assert_eq!(notify_since(&conn).unwrap(), None);
    }
}
