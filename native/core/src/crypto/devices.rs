//! Device tracking: `/keys/query` answers checked and pinned on first use (TOFU).
//!
//! A device's keys are accepted only if the object names the user and device it is listed
//! under and is self-signed by the Ed25519 key it publishes. The first Ed25519 key seen for a
//! `(user, device)` is pinned; if it ever changes the device is *blocked* — it gets no room
//! keys (`m.room_key.withheld`) and its messages are refused — and a security event is raised.
//! A new device of a user we already knew raises a security event too: a cabinet member sees
//! when a contact's account gains a device. A device missing from a fresh answer is marked
//! deleted; the next message to a room it was in uses a new Megolm session.
//!
//! What a hostile server can forge beyond a bad signature is refused and journaled too: a
//! device (or user) listed twice in one answer with different keys ([`KeysQueryAnswer`]), and
//! a new device naming an identity (Curve25519) key that another device already holds — the
//! self-signature proves the Ed25519 key, not possession of the Curve25519 key. A blocked
//! device keeps its first pinned keys; later claims only reach the journal.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use vodozemac::Ed25519PublicKey;

use super::CryptoError;
use super::cross_signing;
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
    let ed_key = ed25519_from_base64(ed).ok_or(malformed("device keys: ed25519 key"))?;
    vodozemac::Curve25519PublicKey::from_base64(curve)
        .map_err(|_| malformed("device keys: curve25519 key"))?;
    verify_json(keys, user_id, &format!("ed25519:{device_id}"), &ed_key)?;
    let display_name = keys
        .pointer("/unsigned/device_display_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((ed.to_owned(), curve.to_owned(), display_name))
}

/// An Ed25519 public key in unpadded base64 (43 characters). Not vodozemac's
/// `Ed25519PublicKey::from_base64`: in 0.11 it panics on 44 characters without padding (it
/// copies the 33 decoded bytes into 32), and a device key is chosen by its owner, so any user
/// sharing a room with us could make every `/keys/query` — and so every sync — panic. Accepts
/// exactly what vodozemac accepts without panicking.
pub(crate) fn ed25519_from_base64(encoded: &str) -> Option<Ed25519PublicKey> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded)
        .ok()?;
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    Ed25519PublicKey::from_slice(&bytes).ok()
}

/// JSON pointer escaping (`~` and `/` in device ids).
fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Users and devices a `/keys/query` answer listed more than once with different contents.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Duplicates {
    /// Users listed more than once under `device_keys`.
    pub(crate) users: BTreeSet<String>,
    /// `(user, device)` listed more than once under one user.
    pub(crate) devices: BTreeSet<(String, String)>,
}

/// A `/keys/query` answer as received.
///
/// JSON lets an object repeat a key, and a plain `serde_json::Value` silently keeps the last
/// copy: a server could list a device twice — its genuine keys, then its own — and have us pin
/// whichever it put last, without a trace. This decoding keeps the *first* copy of anything
/// repeated and remembers what was listed more than once with different contents;
/// [`apply_keys_query_answer`] pins none of it and journals it.
#[derive(Debug, Default)]
pub(crate) struct KeysQueryAnswer {
    /// The answer, first copies only.
    pub(crate) value: Value,
    /// What was listed more than once.
    pub(crate) duplicates: Duplicates,
}

impl<'de> Deserialize<'de> for KeysQueryAnswer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Answer;
        impl<'de> Visitor<'de> for Answer {
            type Value = KeysQueryAnswer;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a /keys/query answer object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeysQueryAnswer, A::Error> {
                let mut top = serde_json::Map::new();
                let mut users: Option<Users> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "device_keys" {
                        let value: Value = map.next_value()?;
                        top.entry(key).or_insert(value);
                        continue;
                    }
                    match map.next_value()? {
                        MaybeUsers::Users(more) => match &mut users {
                            Some(first) => first.merge(more),
                            None => users = Some(more),
                        },
                        MaybeUsers::Other(value) => {
                            top.entry(key).or_insert(value);
                        }
                    }
                }
                let mut duplicates = Duplicates::default();
                if let Some(users) = users {
                    duplicates = users.duplicates;
                    top.insert("device_keys".to_owned(), Value::Object(users.map));
                }
                Ok(KeysQueryAnswer {
                    value: Value::Object(top),
                    duplicates,
                })
            }
        }
        deserializer.deserialize_map(Answer)
    }
}

/// `device_keys` if it is an object (anything else is kept as is: no answer for anyone).
#[derive(Deserialize)]
#[serde(untagged)]
enum MaybeUsers {
    Users(Users),
    Other(Value),
}

/// A user's device map if it is an object.
#[derive(Deserialize)]
#[serde(untagged)]
enum MaybeDevices {
    Devices(Devices),
    Other(Value),
}

/// `device_keys`: user id → device map, first copies kept.
struct Users {
    map: serde_json::Map<String, Value>,
    duplicates: Duplicates,
}

impl Users {
    fn add(&mut self, user: String, devices: Value, duplicated_devices: BTreeSet<String>) {
        match self.map.get(&user) {
            Some(first) if *first != devices => {
                self.duplicates.users.insert(user);
            }
            Some(_) => {}
            None => {
                for device in duplicated_devices {
                    self.duplicates.devices.insert((user.clone(), device));
                }
                self.map.insert(user, devices);
            }
        }
    }

    /// A second `device_keys` in the same answer.
    fn merge(&mut self, other: Users) {
        self.duplicates.users.extend(other.duplicates.users);
        for (user, devices) in other.map {
            let duplicated: BTreeSet<String> = other
                .duplicates
                .devices
                .iter()
                .filter(|(u, _)| *u == user)
                .map(|(_, d)| d.clone())
                .collect();
            self.add(user, devices, duplicated);
        }
    }
}

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UsersVisitor;
        impl<'de> Visitor<'de> for UsersVisitor {
            type Value = Users;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of users")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Users, A::Error> {
                let mut users = Users {
                    map: serde_json::Map::new(),
                    duplicates: Duplicates::default(),
                };
                while let Some(user) = map.next_key::<String>()? {
                    match map.next_value()? {
                        MaybeDevices::Devices(d) => {
                            users.add(user, Value::Object(d.map), d.duplicated);
                        }
                        MaybeDevices::Other(value) => users.add(user, value, BTreeSet::new()),
                    }
                }
                Ok(users)
            }
        }
        deserializer.deserialize_map(UsersVisitor)
    }
}

/// One user's devices: device id → keys, first copies kept.
struct Devices {
    map: serde_json::Map<String, Value>,
    duplicated: BTreeSet<String>,
}

impl<'de> Deserialize<'de> for Devices {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DevicesVisitor;
        impl<'de> Visitor<'de> for DevicesVisitor {
            type Value = Devices;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of devices")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Devices, A::Error> {
                let mut devices = Devices {
                    map: serde_json::Map::new(),
                    duplicated: BTreeSet::new(),
                };
                while let Some(id) = map.next_key::<String>()? {
                    let keys: Value = map.next_value()?;
                    match devices.map.get(&id) {
                        Some(first) if *first != keys => {
                            devices.duplicated.insert(id);
                        }
                        Some(_) => {}
                        None => {
                            devices.map.insert(id, keys);
                        }
                    }
                }
                Ok(devices)
            }
        }
        deserializer.deserialize_map(DevicesVisitor)
    }
}

/// Applies a `/keys/query` answer already decoded as a plain `Value` (duplicated keys already
/// collapsed) for `queried` users (our own device excluded). The client decodes answers as
/// [`KeysQueryAnswer`] and calls [`apply_keys_query_answer`]; this is for the unit tests and
/// the fuzz targets.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn apply_keys_query(
    conn: &rusqlite::Connection,
    response: &Value,
    queried: &[String],
    own_user_id: &str,
    own_device_id: &str,
) -> Result<DeviceChanges, CryptoError> {
    apply(
        conn,
        response,
        &Duplicates::default(),
        queried,
        own_user_id,
        own_device_id,
    )
}

/// Applies a decoded `/keys/query` answer for `queried` users (our own device excluded);
/// whatever it listed more than once with different contents is refused.
pub(crate) fn apply_keys_query_answer(
    conn: &rusqlite::Connection,
    answer: &KeysQueryAnswer,
    queried: &[String],
    own_user_id: &str,
    own_device_id: &str,
) -> Result<DeviceChanges, CryptoError> {
    apply(
        conn,
        &answer.value,
        &answer.duplicates,
        queried,
        own_user_id,
        own_device_id,
    )
}

/// A device id a user's answer gave, and what checking its keys found.
type Checked<'a> = (
    &'a String,
    Result<(String, String, Option<String>), CryptoError>,
);

fn apply(
    conn: &rusqlite::Connection,
    response: &Value,
    duplicates: &Duplicates,
    queried: &[String],
    own_user_id: &str,
    own_device_id: &str,
) -> Result<DeviceChanges, CryptoError> {
    let mut changes = DeviceChanges::default();
    // Every listed device is checked first, so that an identity key two devices of one answer
    // claim is known before either is pinned.
    let mut answers: Vec<(&String, &serde_json::Map<String, Value>, Vec<Checked<'_>>)> = Vec::new();
    let mut claims: BTreeMap<String, usize> = BTreeMap::new();
    for user_id in queried {
        if duplicates.users.contains(user_id) {
            // Two device lists for one user: believe neither; stay dirty so we ask again.
            changes.security_events += 1;
            record_security_event(
                conn,
                "invalid_device_keys",
                None,
                Some(user_id),
                "the key query listed this user twice with different devices: answer ignored",
            )?;
            continue;
        }
        let Some(devices) = response
            .get("device_keys")
            .and_then(|d| d.get(user_id))
            .and_then(Value::as_object)
        else {
            // The server could not answer for this user (federation failure): keep what we have,
            // stay dirty so we ask again.
            continue;
        };
        let mut checked = Vec::new();
        for (device_id, keys) in devices {
            if user_id == own_user_id && device_id == own_device_id {
                continue;
            }
            let result = if duplicates
                .devices
                .contains(&(user_id.clone(), device_id.clone()))
            {
                Err(CryptoError::Malformed {
                    what: "device keys: the device is listed twice with different keys",
                })
            } else {
                validate_device(user_id, device_id, keys)
            };
            if let Ok((_, curve25519, _)) = &result {
                *claims.entry(curve25519.clone()).or_default() += 1;
            }
            checked.push((device_id, result));
        }
        answers.push((user_id, devices, checked));
    }
    let own_user_signing = cross_signing::trusted_own_user_signing(conn, response, own_user_id)?;
    for (user_id, devices, checked) in answers {
        // The user's identity first: it decides which of the devices are theirs.
        let identity = cross_signing::apply_identity(
            conn,
            response,
            user_id,
            own_user_signing.as_deref().map(|usk| (own_user_id, usk)),
        )?;
        changes.security_events += identity.security_events;
        let known = db::devices_of(conn, user_id)?;
        let knew_user = !known.is_empty();
        let mut removed = false;
        for (device_id, result) in checked {
            let (ed25519, curve25519, display_name) = match result {
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
            if previous.is_none() {
                // A new device must bring an identity key of its own: the self-signature does
                // not prove it holds the Curve25519 key it names, so a forged device could
                // otherwise claim a real device's key (and have that device's messages
                // attributed to it).
                let owner = db::device_by_curve25519(conn, &curve25519)?;
                if owner.is_some() || claims.get(&curve25519).copied().unwrap_or(0) > 1 {
                    let other = owner.map_or_else(
                        || "another device of this answer".to_owned(),
                        |o| format!("{} {}", o.user_id, o.device_id),
                    );
                    changes.security_events += 1;
                    record_security_event(
                        conn,
                        "invalid_device_keys",
                        None,
                        Some(user_id),
                        &format!(
                            "device {device_id} ignored: its identity key {curve25519} is also claimed by {other}"
                        ),
                    )?;
                    continue;
                }
            }
            // A blocked device keeps the keys pinned first: what a server later claims for it
            // goes to the journal, never over the pin.
            let (state, ed25519, curve25519) = match previous {
                Some(p) if p.state == DeviceState::Blocked => (
                    DeviceState::Blocked,
                    p.ed25519.clone(),
                    p.curve25519.clone(),
                ),
                Some(p) if p.ed25519 != ed25519 || p.curve25519 != curve25519 => {
                    changes.security_events += 1;
                    removed = true;
                    record_security_event(
                        conn,
                        "device_key_changed",
                        None,
                        Some(user_id),
                        &format!(
                            "device {device_id} changed its keys (ed25519 {} -> {ed25519}, curve25519 {} -> {curve25519}); device blocked",
                            p.ed25519, p.curve25519
                        ),
                    )?;
                    (
                        DeviceState::Blocked,
                        p.ed25519.clone(),
                        p.curve25519.clone(),
                    )
                }
                Some(_) => (DeviceState::Tofu, ed25519, curve25519),
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
                    (DeviceState::Tofu, ed25519, curve25519)
                }
            };
            let cross_signed = identity.self_signing.as_deref().is_some_and(|ssk| {
                devices
                    .get(device_id)
                    .is_some_and(|keys| cross_signing::signed_by(keys, user_id, ssk))
            });
            if identity.self_signing.is_some()
                && !cross_signed
                && previous.is_none_or(|p| p.cross_signed)
            {
                // A device its owner's identity did not sign (a "ghost device" a server can
                // add): it gets no room keys.
                changes.security_events += 1;
                record_security_event(
                    conn,
                    "unsigned_device",
                    None,
                    Some(user_id),
                    &format!(
                        "device {device_id} (ed25519 {ed25519}) is not signed by the user's identity: it gets no room keys"
                    ),
                )?;
            }
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
                    cross_signed,
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

    /// A fresh encrypted store (the directory lives as long as the returned guard).
    fn open_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let store = Store::open(dir.path(), &vault.database_key()).unwrap();
        (dir, store)
    }

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
        let (_dir, store) = open_store();
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

    /// Regression (found by `proptests::a_device_key_with_any_modified_signed_field_fails_verification`):
    /// a 44-character unpadded Ed25519 key made vodozemac's `from_base64` panic.
    #[test]
    fn an_overlong_ed25519_key_is_refused_not_a_panic() {
        let (_dir, store) = open_store();
        let conn = store.conn();
        let bob = "@bob:srv".to_owned();
        let phone = OlmAccount::new(&bob, "PHONE");
        for bad in [
            format!("{}A", phone.ed25519().to_base64()),
            format!("{}=", phone.ed25519().to_base64()),
            "A".repeat(44),
            "A".repeat(42),
        ] {
            assert!(ed25519_from_base64(&bad).is_none(), "{bad}");
            let mut keys = phone.device_keys().unwrap();
            keys["keys"]["ed25519:PHONE"] = json!(bad);
            let answer = json!({"device_keys": {"@bob:srv": {"PHONE": keys}}});
            let changes =
                apply_keys_query(conn, &answer, std::slice::from_ref(&bob), "@me:srv", "ME")
                    .unwrap();
            assert_eq!(changes.security_events, 1, "{bad}");
        }
        assert!(db::devices_of(conn, &bob).unwrap().is_empty());
        // The canonical 43-character form is still accepted.
        let good = phone.ed25519().to_base64();
        assert_eq!(ed25519_from_base64(&good), Some(phone.ed25519()));
    }

    /// `text` as the client decodes a `/keys/query` answer.
    fn decoded(text: &str) -> KeysQueryAnswer {
        serde_json::from_str(text).unwrap()
    }

    fn kinds(store: &Store) -> Vec<String> {
        store
            .security_events()
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    #[test]
    fn a_device_or_user_listed_twice_with_different_keys_is_pinned_from_neither_copy() {
        let (_dir, store) = open_store();
        let conn = store.conn();
        let bob = "@bob:srv".to_owned();
        db::track_user(conn, &bob).unwrap();
        let phone = OlmAccount::new(&bob, "PHONE");
        let forged = OlmAccount::new(&bob, "PHONE");
        let genuine = phone.device_keys().unwrap();
        let twice = format!(
            r#"{{"device_keys": {{"@bob:srv": {{"PHONE": {genuine}, "PHONE": {}}}}}}}"#,
            forged.device_keys().unwrap()
        );
        // A plain `Value` would keep the last copy, the forged one.
        let plain: Value = serde_json::from_str(&twice).unwrap();
        assert_eq!(
            plain["device_keys"]["@bob:srv"]["PHONE"],
            forged.device_keys().unwrap()
        );

        // First contact: neither copy is pinned.
        let answer = decoded(&twice);
        let changes =
            apply_keys_query_answer(conn, &answer, std::slice::from_ref(&bob), "@me:srv", "ME")
                .unwrap();
        assert_eq!(changes.security_events, 1);
        assert!(db::devices_of(conn, &bob).unwrap().is_empty());

        // Pinned, then listed twice: the pin stays, the device is not taken for gone.
        let once = format!(r#"{{"device_keys": {{"@bob:srv": {{"PHONE": {genuine}}}}}}}"#);
        apply_keys_query_answer(
            conn,
            &decoded(&once),
            std::slice::from_ref(&bob),
            "@me:srv",
            "ME",
        )
        .unwrap();
        apply_keys_query_answer(
            conn,
            &decoded(&twice),
            std::slice::from_ref(&bob),
            "@me:srv",
            "ME",
        )
        .unwrap();
        let devices = db::devices_of(conn, &bob).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].ed25519, phone.ed25519().to_base64());
        assert_eq!(
            (devices[0].state, devices[0].deleted),
            (DeviceState::Tofu, false)
        );

        // The same copy twice is no contradiction.
        let same = format!(
            r#"{{"device_keys": {{"@bob:srv": {{"PHONE": {genuine}, "PHONE": {genuine}}}}}}}"#
        );
        assert_eq!(decoded(&same).duplicates, Duplicates::default());

        // A user listed twice: the whole answer for them is ignored, and they stay dirty.
        db::mark_dirty(conn, &bob).unwrap();
        let user_twice = format!(
            r#"{{"device_keys": {{"@bob:srv": {{"PHONE": {genuine}}}, "@bob:srv": {{}}}}}}"#
        );
        let changes = apply_keys_query_answer(
            conn,
            &decoded(&user_twice),
            std::slice::from_ref(&bob),
            "@me:srv",
            "ME",
        )
        .unwrap();
        assert_eq!(changes.security_events, 1);
        assert_eq!(db::dirty_users(conn).unwrap(), std::slice::from_ref(&bob));
        assert!(!db::devices_of(conn, &bob).unwrap()[0].deleted);
        assert_eq!(
            kinds(&store),
            [
                "invalid_device_keys",
                "invalid_device_keys",
                "invalid_device_keys"
            ]
        );
    }

    /// Our own device is never pinned from a key query; our other devices are, like anyone's.
    #[test]
    fn our_own_device_is_skipped_and_our_other_devices_are_pinned() {
        let (_dir, store) = open_store();
        let conn = store.conn();
        let me = "@me:srv".to_owned();
        let bob = "@bob:srv".to_owned();
        db::track_user(conn, &me).unwrap();
        db::track_user(conn, &bob).unwrap();
        let own = OlmAccount::new(&me, "ME");
        let laptop = OlmAccount::new(&me, "LAPTOP");
        // Another user's device that happens to share our device id.
        let bobs_me = OlmAccount::new(&bob, "ME");
        apply_keys_query(
            conn,
            &answer(&[&own, &laptop, &bobs_me]),
            &[me.clone(), bob.clone()],
            "@me:srv",
            "ME",
        )
        .unwrap();
        let mine: Vec<String> = db::devices_of(conn, &me)
            .unwrap()
            .into_iter()
            .map(|d| d.device_id)
            .collect();
        assert_eq!(mine, ["LAPTOP"]);
        let bobs: Vec<String> = db::devices_of(conn, &bob)
            .unwrap()
            .into_iter()
            .map(|d| d.device_id)
            .collect();
        assert_eq!(bobs, ["ME"]);
    }

    /// A device listed again with its Ed25519 key but another Curve25519 key (signed by the
    /// Ed25519 key: only the device's owner can) is a key change: blocked and reported.
    #[test]
    fn a_changed_curve25519_key_alone_blocks_the_device() {
        let (_dir, store) = open_store();
        let conn = store.conn();
        let bob = "@bob:srv".to_owned();
        db::track_user(conn, &bob).unwrap();
        let phone = OlmAccount::new(&bob, "PHONE");
        let bob_list = std::slice::from_ref(&bob);
        apply_keys_query(conn, &answer(&[&phone]), bob_list, "@me:srv", "ME").unwrap();
        let other = OlmAccount::new(&bob, "PHONE");
        let mut keys = phone.device_keys().unwrap();
        keys["keys"]["curve25519:PHONE"] = json!(other.curve25519().to_base64());
        keys.as_object_mut().unwrap().remove("signatures");
        phone.sign_object(&mut keys).unwrap();
        let changed = json!({"device_keys": {"@bob:srv": {"PHONE": keys}}});
        let changes = apply_keys_query(conn, &changed, bob_list, "@me:srv", "ME").unwrap();
        assert!(changes.security_events >= 1);
        let device = &db::devices_of(conn, &bob).unwrap()[0];
        assert_eq!(device.state, DeviceState::Blocked);
        assert_eq!(device.curve25519, phone.curve25519().to_base64());
        assert!(kinds(&store).contains(&"device_key_changed".to_owned()));
    }

    /// Device keys whose own `user_id` is not the user they are listed under are refused, even
    /// when signed under that user's name.
    #[test]
    fn device_keys_naming_another_user_are_refused_even_if_signed() {
        let (_dir, store) = open_store();
        let conn = store.conn();
        let bob = "@bob:srv".to_owned();
        db::track_user(conn, &bob).unwrap();
        let phone = OlmAccount::new(&bob, "PHONE");
        let mut keys = phone.device_keys().unwrap();
        keys["user_id"] = json!("@eve:srv");
        keys.as_object_mut().unwrap().remove("signatures");
        phone.sign_object(&mut keys).unwrap();
        let listed = json!({"device_keys": {"@bob:srv": {"PHONE": keys}}});
        apply_keys_query(conn, &listed, std::slice::from_ref(&bob), "@me:srv", "ME").unwrap();
        assert!(db::devices_of(conn, &bob).unwrap().is_empty());
        assert!(kinds(&store).contains(&"invalid_device_keys".to_owned()));
    }

    #[test]
    fn a_new_device_claiming_a_known_identity_key_is_refused_and_a_blocked_one_keeps_its_pin() {
        let (_dir, store) = open_store();
        let conn = store.conn();
        let bob = "@bob:srv".to_owned();
        let phone = OlmAccount::new(&bob, "PHONE");
        let thief = OlmAccount::new(&bob, "EVIL");
        let mut stolen = json!({
            "user_id": bob, "device_id": "EVIL", "algorithms": [],
            "keys": {"ed25519:EVIL": thief.ed25519().to_base64(),
                     "curve25519:EVIL": phone.curve25519().to_base64()},
        });
        crate::crypto::signing::sign_json(&mut stolen, &bob, "ed25519:EVIL", |m| {
            thief.inner().sign(m)
        })
        .unwrap();
        let both = json!({"device_keys": {"@bob:srv": {"PHONE": phone.device_keys().unwrap(), "EVIL": stolen}}});
        // In one answer, on first contact: two claimants of one identity key, neither pinned.
        let changes =
            apply_keys_query(conn, &both, std::slice::from_ref(&bob), "@me:srv", "ME").unwrap();
        assert_eq!(changes.security_events, 2);
        assert!(db::devices_of(conn, &bob).unwrap().is_empty());
        // The phone pinned first, the thief later: refused.
        apply_keys_query(
            conn,
            &answer(&[&phone]),
            std::slice::from_ref(&bob),
            "@me:srv",
            "ME",
        )
        .unwrap();
        apply_keys_query(conn, &both, std::slice::from_ref(&bob), "@me:srv", "ME").unwrap();
        let devices = db::devices_of(conn, &bob).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].device_id, "PHONE");
        let by_key = db::device_by_curve25519(conn, &phone.curve25519().to_base64()).unwrap();
        assert_eq!(by_key.unwrap().device_id, "PHONE");

        // The phone's keys swapped: blocked, with the first keys kept.
        let impostor = OlmAccount::new(&bob, "PHONE");
        apply_keys_query(
            conn,
            &answer(&[&impostor]),
            std::slice::from_ref(&bob),
            "@me:srv",
            "ME",
        )
        .unwrap();
        let devices = db::devices_of(conn, &bob).unwrap();
        assert_eq!(devices[0].state, DeviceState::Blocked);
        assert_eq!(devices[0].ed25519, phone.ed25519().to_base64());
        assert_eq!(devices[0].curve25519, phone.curve25519().to_base64());
        assert_eq!(
            kinds(&store),
            [
                "invalid_device_keys",
                "invalid_device_keys",
                "invalid_device_keys",
                "device_key_changed"
            ]
        );
    }

    #[test]
    fn unsigned_or_mislabelled_device_keys_are_refused() {
        let (_dir, store) = open_store();
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
