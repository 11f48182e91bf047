//! Device tracking: `/keys/query` answers checked and pinned on first use (TOFU).
//!
//! A device's keys are accepted only if the object names the user and device it is listed
//! under and is self-signed by the Ed25519 key it publishes. The first Ed25519 key seen for a
//! `(user, device)` is pinned; if it ever changes the device is *blocked* — it gets no room
//! keys (`m.room_key.withheld`) and its messages are refused — and a security event is raised.
//! A new device of a user we already knew raises a security event too: a cabinet member sees
//! when a contact's account gains a device. A device missing from a fresh answer is marked
//! deleted; the next message to a room it was in uses a new Megolm session.

use serde_json::Value;
use vodozemac::Ed25519PublicKey;

use super::CryptoError;
use super::signing::verify_json;
use crate::store::crypto::{self as db, DeviceRecord, DeviceState};
use crate::store::rooms::record_security_event;

/// What applying a `/keys/query` answer changed.
#[derive(Debug, Default)]
pub(crate) struct DeviceChanges {
    /// Security events recorded.
    pub(crate) security_events: usize,
    /// Users that lost a device or had one blocked (their rooms' outbound sessions rotate).
    pub(crate) users_with_removed_devices: Vec<String>,
}

/// Validates one device object; returns `(ed25519, curve25519, display name)`.
fn validate_device(
    user_id: &str,
    device_id: &str,
    keys: &Value,
) -> Result<(String, String, Option<String>), CryptoError> {
    let malformed = |what| CryptoError::Malformed { what };
    if keys.get("user_id").and_then(Value::as_str) != Some(user_id)
        || keys.get("device_id").and_then(Value::as_str) != Some(device_id)
    {
        return Err(malformed("device keys: user or device id does not match"));
    }
    let ed = keys
        .pointer(&format!("/keys/ed25519:{}", escape_pointer(device_id)))
        .and_then(Value::as_str)
        .ok_or(malformed("device keys: no ed25519 key"))?;
    let curve = keys
        .pointer(&format!("/keys/curve25519:{}", escape_pointer(device_id)))
        .and_then(Value::as_str)
        .ok_or(malformed("device keys: no curve25519 key"))?;
    let ed_key =
        Ed25519PublicKey::from_base64(ed).map_err(|_| malformed("device keys: ed25519 key"))?;
    vodozemac::Curve25519PublicKey::from_base64(curve)
        .map_err(|_| malformed("device keys: curve25519 key"))?;
    verify_json(keys, user_id, &format!("ed25519:{device_id}"), &ed_key)?;
    let display_name = keys
        .pointer("/unsigned/device_display_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((ed.to_owned(), curve.to_owned(), display_name))
}

/// JSON pointer escaping (`~` and `/` in device ids).
fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Applies a `/keys/query` answer for `queried` users (our own device excluded).
pub(crate) fn apply_keys_query(
    conn: &rusqlite::Connection,
    response: &Value,
    queried: &[String],
    own_user_id: &str,
    own_device_id: &str,
) -> Result<DeviceChanges, CryptoError> {
    let mut changes = DeviceChanges::default();
    for user_id in queried {
        let Some(devices) = response
            .get("device_keys")
            .and_then(|d| d.get(user_id))
            .and_then(Value::as_object)
        else {
            // The server could not answer for this user (federation failure): keep what we have,
            // stay dirty so we ask again.
            continue;
        };
        let known = db::devices_of(conn, user_id)?;
        let knew_user = !known.is_empty();
        let mut removed = false;
        for (device_id, keys) in devices {
            if user_id == own_user_id && device_id == own_device_id {
                continue;
            }
            let (ed25519, curve25519, display_name) =
                match validate_device(user_id, device_id, keys) {
                    Ok(v) => v,
                    Err(e) => {
                        changes.security_events += 1;
                        record_security_event(
                            conn,
                            "invalid_device_keys",
                            None,
                            Some(user_id),
                            &format!("device {device_id} ignored: {e}"),
                        )?;
                        continue;
                    }
                };
            let previous = known.iter().find(|d| &d.device_id == device_id);
            let state = match previous {
                Some(p) if p.state == DeviceState::Blocked => DeviceState::Blocked,
                Some(p) if p.ed25519 != ed25519 || p.curve25519 != curve25519 => {
                    changes.security_events += 1;
                    removed = true;
                    record_security_event(
                        conn,
                        "device_key_changed",
                        None,
                        Some(user_id),
                        &format!(
                            "device {device_id} changed its keys (ed25519 {} -> {ed25519}); device blocked",
                            p.ed25519
                        ),
                    )?;
                    DeviceState::Blocked
                }
                Some(_) => DeviceState::Tofu,
                None => {
                    if knew_user {
                        changes.security_events += 1;
                        record_security_event(
                            conn,
                            "new_device",
                            None,
                            Some(user_id),
                            &format!("new device {device_id} (ed25519 {ed25519})"),
                        )?;
                    }
                    DeviceState::Tofu
                }
            };
            db::save_device(
                conn,
                &DeviceRecord {
                    user_id: user_id.clone(),
                    device_id: device_id.clone(),
                    ed25519,
                    curve25519,
                    display_name,
                    state,
                    deleted: false,
                },
            )?;
        }
        for gone in known
            .iter()
            .filter(|d| !d.deleted && !devices.contains_key(&d.device_id))
        {
            removed = true;
            db::save_device(
                conn,
                &DeviceRecord {
                    deleted: true,
                    ..gone.clone()
                },
            )?;
            tracing::info!(user_id, device_id = %gone.device_id, "device removed");
        }
        if removed {
            changes.users_with_removed_devices.push(user_id.clone());
        }
        db::mark_clean(conn, user_id)?;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::account::OlmAccount;
    use crate::store::Store;
    use crate::store::tests::test_vault;
    use serde_json::json;

    fn answer(accounts: &[&OlmAccount]) -> Value {
        let mut users = serde_json::Map::new();
        for a in accounts {
            let entry = users
                .entry(a.user_id().to_owned())
                .or_insert_with(|| json!({}));
            entry[a.device_id()] = a.device_keys().unwrap();
        }
        json!({ "device_keys": users })
    }

    #[test]
    fn tofu_pins_then_blocks_a_changed_key_and_reports_new_and_removed_devices() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let conn = store.conn();
        let bob = "@bob:srv".to_owned();
        db::track_user(conn, &bob).unwrap();
        let phone = OlmAccount::new(&bob, "PHONE");
        let changes = apply_keys_query(
            conn,
            &answer(&[&phone]),
            std::slice::from_ref(&bob),
            "@me:srv",
            "ME",
        )
        .unwrap();
        assert_eq!(
            changes.security_events, 0,
            "first sight of a user is not an event"
        );
        assert_eq!(
            db::devices_of(conn, &bob).unwrap()[0].state,
            DeviceState::Tofu
        );
        assert!(db::dirty_users(conn).unwrap().is_empty());

        // A second device appears: reported.
        let laptop = OlmAccount::new(&bob, "LAPTOP");
        let changes = apply_keys_query(
            conn,
            &answer(&[&phone, &laptop]),
            std::slice::from_ref(&bob),
            "@me:srv",
            "ME",
        )
        .unwrap();
        assert_eq!(changes.security_events, 1);

        // PHONE comes back with another key: blocked, reported; LAPTOP gone: deleted.
        let impostor = OlmAccount::new(&bob, "PHONE");
        let changes = apply_keys_query(
            conn,
            &answer(&[&impostor]),
            std::slice::from_ref(&bob),
            "@me:srv",
            "ME",
        )
        .unwrap();
        assert_eq!(changes.security_events, 1);
        assert_eq!(changes.users_with_removed_devices, vec![bob.clone()]);
        let devices = db::devices_of(conn, &bob).unwrap();
        let phone_rec = devices.iter().find(|d| d.device_id == "PHONE").unwrap();
        assert_eq!(phone_rec.state, DeviceState::Blocked);
        assert!(
            devices
                .iter()
                .find(|d| d.device_id == "LAPTOP")
                .unwrap()
                .deleted
        );

        // Blocking is sticky, even if the original key returns.
        apply_keys_query(
            conn,
            &answer(&[&phone]),
            std::slice::from_ref(&bob),
            "@me:srv",
            "ME",
        )
        .unwrap();
        let devices = db::devices_of(conn, &bob).unwrap();
        assert_eq!(
            devices
                .iter()
                .find(|d| d.device_id == "PHONE")
                .unwrap()
                .state,
            DeviceState::Blocked
        );
        let kinds: Vec<String> = store
            .security_events()
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["new_device", "device_key_changed"]);
    }

    #[test]
    fn unsigned_or_mislabelled_device_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let conn = store.conn();
        let bob = "@bob:srv".to_owned();
        let phone = OlmAccount::new(&bob, "PHONE");
        let mut keys = phone.device_keys().unwrap();
        keys["keys"]["curve25519:PHONE"] =
            json!(OlmAccount::new(&bob, "X").curve25519().to_base64());
        let forged = json!({"device_keys": {"@bob:srv": {"PHONE": keys, "OTHER": phone.device_keys().unwrap()}}});
        let changes =
            apply_keys_query(conn, &forged, std::slice::from_ref(&bob), "@me:srv", "ME").unwrap();
        assert_eq!(changes.security_events, 2);
        assert!(db::devices_of(conn, &bob).unwrap().is_empty());
    }
}
