//! Applying one `/sync` response to the store.
//!
//! Everything a response changes — rooms, members, names, encryption state, security events —
//! and its `next_batch` are written in one transaction: after a crash the store holds either
//! the whole response or none of it, and the next sync resumes from the last committed token.
//!
//! `m.room.encryption` is write-once here: an event that changes the algorithm, or removes it,
//! in a room already known to be encrypted is ignored and recorded as a security event (a
//! malicious or compromised server must not be able to turn encryption off).

use rusqlite::Transaction;
use serde::Serialize;
use serde_json::Value;

use crate::api::types::{MEGOLM_ALGORITHM, MemberContent, RoomEvent, SyncResponse};
use crate::store::{self, StoreError};

/// What one applied sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SyncSummary {
    /// The token now stored.
    pub next_batch: String,
    /// Rooms that appeared in the response.
    pub rooms: usize,
    /// State events applied.
    pub state_events: usize,
    /// Events skipped because they were malformed.
    pub malformed_events: usize,
    /// Security events recorded.
    pub security_events: usize,
}

/// Applies `response` inside `tx` (the caller commits).
pub(crate) fn apply(
    tx: &Transaction<'_>,
    response: &SyncResponse,
) -> Result<SyncSummary, StoreError> {
    let mut summary = SyncSummary {
        next_batch: response.next_batch.clone(),
        ..SyncSummary::default()
    };
    for (room_id, room) in &response.rooms.join {
        store::rooms::upsert_room(tx, room_id, "join")?;
        let events = room.state.events.iter().chain(room.timeline.events.iter());
        apply_events(tx, room_id, events, &mut summary)?;
        summary.rooms += 1;
    }
    for (room_id, room) in &response.rooms.invite {
        store::rooms::upsert_room(tx, room_id, "invite")?;
        apply_events(tx, room_id, room.invite_state.events.iter(), &mut summary)?;
        summary.rooms += 1;
    }
    for (room_id, room) in &response.rooms.leave {
        store::rooms::upsert_room(tx, room_id, "leave")?;
        let events = room.state.events.iter().chain(room.timeline.events.iter());
        apply_events(tx, room_id, events, &mut summary)?;
        summary.rooms += 1;
    }
    store::session::set_next_batch(tx, &response.next_batch)?;
    Ok(summary)
}

fn apply_events<'a>(
    tx: &Transaction<'_>,
    room_id: &str,
    events: impl Iterator<Item = &'a Value>,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    for raw in events {
        let Some(event) = RoomEvent::parse(raw) else {
            summary.malformed_events += 1;
            continue;
        };
        let Some(state_key) = event.state_key.as_deref() else {
            continue; // message events come with the E2EE issue
        };
        apply_state_event(tx, room_id, &event, state_key, summary)?;
    }
    Ok(())
}

fn apply_state_event(
    tx: &Transaction<'_>,
    room_id: &str,
    event: &RoomEvent,
    state_key: &str,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    match event.event_type.as_str() {
        "m.room.member" => {
            let Ok(member) = MemberContent::deserialize_from(&event.content) else {
                summary.malformed_events += 1;
                return Ok(());
            };
            store::rooms::upsert_member(
                tx,
                room_id,
                state_key,
                &member.membership,
                member.displayname.as_deref(),
            )?;
        }
        "m.room.name" if state_key.is_empty() => {
            let name = event.content.get("name").and_then(Value::as_str);
            store::rooms::set_room_name(tx, room_id, name.filter(|n| !n.is_empty()))?;
        }
        "m.room.encryption" if state_key.is_empty() => {
            apply_encryption(tx, room_id, event, summary)?;
        }
        _ => return Ok(()),
    }
    summary.state_events += 1;
    Ok(())
}

fn apply_encryption(
    tx: &Transaction<'_>,
    room_id: &str,
    event: &RoomEvent,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    let algorithm = event.content.get("algorithm").and_then(Value::as_str);
    let current = store::rooms::room_encryption(tx, room_id)?;
    match (current.as_deref(), algorithm) {
        (Some(known), Some(new)) if known == new => Ok(()),
        (None, Some(MEGOLM_ALGORITHM)) => {
            store::rooms::set_room_encryption(tx, room_id, MEGOLM_ALGORITHM)
        }
        (None, other) => {
            summary.security_events += 1;
            store::rooms::record_security_event(
                tx,
                "unsupported_encryption_refused",
                Some(room_id),
                Some(&event.sender),
                &format!("m.room.encryption with algorithm {other:?} ignored"),
            )
        }
        (Some(known), other) => {
            summary.security_events += 1;
            store::rooms::record_security_event(
                tx,
                "encryption_change_refused",
                Some(room_id),
                Some(&event.sender),
                &format!("attempt to change room encryption from {known} to {other:?} ignored"),
            )
        }
    }
}

impl MemberContent {
    fn deserialize_from(content: &Value) -> Result<Self, serde_json::Error> {
        serde::Deserialize::deserialize(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::tests::test_vault;
    use serde_json::json;

    fn response(v: Value) -> SyncResponse {
        serde_json::from_value(v).unwrap()
    }

    fn member(user: &str, membership: &str, name: Value) -> Value {
        json!({"type": "m.room.member", "state_key": user, "sender": user, "event_id": format!("$m{user}{membership}"),
               "content": {"membership": membership, "displayname": name}})
    }

    fn encryption(algorithm: Value) -> Value {
        json!({"type": "m.room.encryption", "state_key": "", "sender": "@evil:srv", "event_id": "$e",
               "content": {"algorithm": algorithm}})
    }

    #[test]
    fn applies_rooms_members_and_refuses_encryption_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let first = response(json!({
            "next_batch": "s1",
            "rooms": {
                "join": {"!r:srv": {
                    "state": {"events": [encryption(json!(MEGOLM_ALGORITHM)),
                                          {"type": "m.room.name", "state_key": "", "sender": "@a:srv", "content": {"name": "Cabinet"}}]},
                    "timeline": {"events": [member("@a:srv", "join", json!("Jean Martin [Ministère X]")),
                                             member("@b:srv", "invite", json!(null)),
                                             {"type": 12}]}
                }},
                "invite": {"!i:srv": {"invite_state": {"events": [member("@c:srv", "join", json!("C"))]}}}
            }
        }));
        let s = store.transaction(|tx| apply(tx, &first)).unwrap();
        assert_eq!((s.rooms, s.malformed_events, s.security_events), (2, 1, 0));
        assert_eq!(store.next_batch().unwrap().as_deref(), Some("s1"));
        let rooms = store.rooms().unwrap();
        assert_eq!(rooms.len(), 2);
        let r = store.room("!r:srv").unwrap().unwrap();
        assert_eq!(r.name.as_deref(), Some("Cabinet"));
        assert_eq!(r.encryption.as_deref(), Some(MEGOLM_ALGORITHM));
        assert_eq!((r.joined_members, r.invited_members), (1, 1));
        let m = store.members("!r:srv").unwrap();
        assert_eq!(
            m[0].display_name.as_deref(),
            Some("Jean Martin [Ministère X]")
        );

        // A server tries to downgrade, then to remove, the encryption.
        let second = response(json!({"next_batch": "s2", "rooms": {"join": {"!r:srv": {
            "timeline": {"events": [encryption(json!("m.plaintext")), encryption(json!(null))]}}}}}));
        let s = store.transaction(|tx| apply(tx, &second)).unwrap();
        assert_eq!(s.security_events, 2);
        let r = store.room("!r:srv").unwrap().unwrap();
        assert_eq!(r.encryption.as_deref(), Some(MEGOLM_ALGORITHM));
        let journal = store.security_events().unwrap();
        assert_eq!(journal.len(), 2);
        assert!(
            journal
                .iter()
                .all(|e| e.kind == "encryption_change_refused")
        );
    }

    #[test]
    fn a_failed_apply_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let r = response(json!({"next_batch": "s9", "rooms": {"join": {"!r:srv": {}}}}));
        let result: Result<(), StoreError> = store.transaction(|tx| {
            apply(tx, &r)?;
            Err(StoreError::Corrupt {
                detail: "injected".into(),
            })
        });
        assert!(result.is_err());
        assert_eq!(store.next_batch().unwrap(), None);
        assert!(store.rooms().unwrap().is_empty());
    }
}
