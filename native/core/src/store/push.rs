//! Push in the store (issue 17): the pushers this device registered (so that logout and wipe
//! remove them), and what the device needs to evaluate the account's push rules itself — the
//! rules (`m.push_rules` global account data, in `kv`) and each room's power levels as far as
//! notifications need them (`rooms.power_levels`).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension as _, params};
use serde_json::{Value, json};

use super::StoreError;

const PUSH_RULES_KEY: &str = "account.push_rules";

/// Records a pusher before it is registered on the server.
pub(crate) fn record_pusher(
    conn: &Connection,
    app_id: &str,
    pushkey: &str,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "INSERT OR IGNORE INTO pushers (app_id, pushkey) VALUES (?1, ?2)",
        params![app_id, pushkey],
    )?;
    Ok(())
}

/// Forgets a pusher the server confirmed removed.
pub(crate) fn forget_pusher(
    conn: &Connection,
    app_id: &str,
    pushkey: &str,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "DELETE FROM pushers WHERE app_id = ?1 AND pushkey = ?2",
        params![app_id, pushkey],
    )?;
    Ok(())
}

/// The `(app id, push key)` of every recorded pusher.
pub(crate) fn registered_pushers(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT app_id, pushkey FROM pushers ORDER BY app_id, pushkey")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores the content of the account's `m.push_rules` (already checked by the caller).
pub(crate) fn set_push_rules(conn: &Connection, content: &Value) -> Result<(), StoreError> {
    super::kv_set(conn, PUSH_RULES_KEY, content.to_string().as_bytes())
}

/// The stored `m.push_rules` content, if the server ever sent one.
pub(crate) fn push_rules(conn: &Connection) -> Result<Option<Value>, StoreError> {
    super::kv_get(conn, PUSH_RULES_KEY)?
        .map(|b| {
            serde_json::from_slice(&b).map_err(|_| StoreError::Corrupt {
                detail: "stored push rules".into(),
            })
        })
        .transpose()
}

/// What the device needs of a room's power levels: notifications (`@room`), redactions by
/// another member, who may set a room's retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotificationPowers {
    /// `users`: explicit levels.
    pub(crate) users: BTreeMap<String, i64>,
    /// `users_default` (0 when absent).
    pub(crate) users_default: i64,
    /// `notifications` (e.g. `room`: 50).
    pub(crate) notifications: BTreeMap<String, i64>,
    /// `redact`: the level to redact another member's event (50 when absent).
    pub(crate) redact: i64,
    /// `events`: the level to send an event of a type (`m.room.retention`, …).
    pub(crate) events: BTreeMap<String, i64>,
    /// `state_default`: the level for a state event not in `events` (50 when absent).
    pub(crate) state_default: i64,
    /// The creators of a room of version 12 or later (from `m.room.create`, stored apart).
    pub(crate) creators: Vec<String>,
}

impl Default for NotificationPowers {
    /// The specification's defaults when a room has no power levels.
    fn default() -> Self {
        Self {
            users: BTreeMap::new(),
            users_default: 0,
            notifications: BTreeMap::new(),
            redact: 50,
            events: BTreeMap::new(),
            state_default: 50,
            creators: Vec::new(),
        }
    }
}

impl NotificationPowers {
    /// The part of an `m.room.power_levels` content notifications use; entries that are not
    /// integers are left out (as if absent).
    pub(crate) fn from_content(content: &Value) -> Self {
        let levels = |key: &str| -> BTreeMap<String, i64> {
            content
                .get(key)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_i64().map(|v| (k.clone(), v)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            users: levels("users"),
            users_default: content
                .get("users_default")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            notifications: levels("notifications"),
            redact: content.get("redact").and_then(Value::as_i64).unwrap_or(50),
            events: levels("events"),
            state_default: content
                .get("state_default")
                .and_then(Value::as_i64)
                .unwrap_or(50),
            creators: Vec::new(),
        }
    }

    /// The level of `user` (a creator of a room of version 12 or later outranks every level).
    pub(crate) fn level_of(&self, user: &str) -> i64 {
        if self.creators.iter().any(|c| c == user) {
            return i64::MAX;
        }
        self.users.get(user).copied().unwrap_or(self.users_default)
    }
}

pub(crate) fn set_power_levels(
    conn: &Connection,
    room_id: &str,
    powers: &NotificationPowers,
) -> Result<(), StoreError> {
    let stored = json!({
        "users": powers.users,
        "users_default": powers.users_default,
        "notifications": powers.notifications,
        "redact": powers.redact,
        "events": powers.events,
        "state_default": powers.state_default,
    });
    super::exec(
        conn,
        "UPDATE rooms SET power_levels = ?2 WHERE room_id = ?1",
        params![room_id, stored.to_string()],
    )?;
    Ok(())
}

/// The stored power levels of `room_id` (the specification's defaults if none were seen).
pub(crate) fn power_levels(
    conn: &Connection,
    room_id: &str,
) -> Result<NotificationPowers, StoreError> {
    let stored: Option<(Option<String>, Option<String>)> = super::query_row(
        conn,
        "SELECT power_levels, creators FROM rooms WHERE room_id = ?1",
        params![room_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?;
    let (levels, creators) = stored.unwrap_or_default();
    let mut powers = match levels {
        Some(json) => {
            let v: Value = serde_json::from_str(&json).map_err(|_| StoreError::Corrupt {
                detail: "stored power levels".into(),
            })?;
            NotificationPowers::from_content(&v)
        }
        None => NotificationPowers::default(),
    };
    if let Some(json) = creators {
        powers.creators = serde_json::from_str(&json).map_err(|_| StoreError::Corrupt {
            detail: "stored creators".into(),
        })?;
    }
    Ok(powers)
}

/// From a room's `m.room.create` event: in room versions 12 and later its sender and
/// `additional_creators` are the room's creators, above every power level; earlier versions
/// have none (the creator's level is in the power levels like anyone's).
pub(crate) fn set_creators(
    conn: &Connection,
    room_id: &str,
    sender: &str,
    content: &Value,
) -> Result<(), StoreError> {
    let version = content
        .get("room_version")
        .and_then(Value::as_str)
        .unwrap_or("1");
    // Versions 1-11 are the numbered ones before creators were privileged; any other
    // (12, later numbers, an experimental name) is read as privileging them.
    let privileged = !version.parse::<u32>().is_ok_and(|v| (1..12).contains(&v));
    let creators: Vec<&str> = if privileged {
        std::iter::once(sender)
            .chain(
                content
                    .get("additional_creators")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .take(100),
            )
            .collect()
    } else {
        Vec::new()
    };
    super::exec(
        conn,
        "UPDATE rooms SET creators = ?2 WHERE room_id = ?1",
        params![room_id, json!(creators).to_string()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_levels_keep_what_notifications_need_and_drop_the_rest() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut conn).unwrap();
        crate::store::rooms::upsert_room(&conn, "!r:x", "join").unwrap();
        assert_eq!(power_levels(&conn, "!r:x").unwrap().level_of("@a:x"), 0);
        let p = NotificationPowers::from_content(&json!({
            "users": {"@a:x": 100, "@b:x": "high"},
            "users_default": 10,
            "notifications": {"room": 75},
            "events": {"m.room.name": 50},
        }));
        set_power_levels(&conn, "!r:x", &p).unwrap();
        let back = power_levels(&conn, "!r:x").unwrap();
        assert_eq!(back, p);
        assert_eq!(back.level_of("@a:x"), 100);
        assert_eq!(
            back.level_of("@b:x"),
            10,
            "a level that is not an integer is absent"
        );
        assert_eq!(back.notifications.get("room"), Some(&75));
        assert_eq!(back.redact, 50, "absent: the default");
        assert_eq!(back.state_default, 50);
        let p = NotificationPowers::from_content(&json!({
            "redact": 0, "state_default": 100, "events": {"m.room.retention": 75},
        }));
        set_power_levels(&conn, "!r:x", &p).unwrap();
        let back = power_levels(&conn, "!r:x").unwrap();
        assert_eq!(back.redact, 0);
        // Room version 12: the creators outrank every level; earlier versions: not.
        set_creators(
            &conn,
            "!r:x",
            "@c:x",
            &json!({"room_version": "12", "additional_creators": ["@d:x"]}),
        )
        .unwrap();
        let back = power_levels(&conn, "!r:x").unwrap();
        assert_eq!(
            (back.level_of("@c:x"), back.level_of("@d:x")),
            (i64::MAX, i64::MAX)
        );
        assert_eq!(back.level_of("@a:x"), 0);
        set_creators(&conn, "!r:x", "@c:x", &json!({"room_version": "11"})).unwrap();
        assert_eq!(power_levels(&conn, "!r:x").unwrap().level_of("@c:x"), 0);
        assert_eq!(back.events.get("m.room.retention"), Some(&75));
        assert_eq!(back.state_default, 100);
        assert_eq!(push_rules(&conn).unwrap(), None);
        set_push_rules(&conn, &json!({"global": {}})).unwrap();
        assert_eq!(push_rules(&conn).unwrap(), Some(json!({"global": {}})));
    }

    #[test]
    fn pushers_are_recorded_once_and_forgotten() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut conn).unwrap();
        record_pusher(&conn, "app", "k2").unwrap();
        record_pusher(&conn, "app", "k1").unwrap();
        record_pusher(&conn, "app", "k1").unwrap();
        assert_eq!(
            registered_pushers(&conn).unwrap(),
            [
                ("app".to_owned(), "k1".to_owned()),
                ("app".to_owned(), "k2".to_owned())
            ]
        );
        forget_pusher(&conn, "app", "k1").unwrap();
        assert_eq!(
            registered_pushers(&conn).unwrap(),
            [("app".to_owned(), "k2".to_owned())]
        );
    }
}
