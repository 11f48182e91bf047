//! Our own small serde types for the client-server endpoints we use (DESIGN §4): auditable in
//! one read, nothing we do not need.
//!
//! Events inside a sync response are kept as raw JSON values and decoded one by one
//! ([`RoomEvent::parse`]): a single hostile or malformed event is reported and skipped, it
//! cannot make the whole sync response undecodable (which would wedge the sync loop forever).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /_matrix/client/versions`.
#[derive(Debug, Deserialize)]
pub struct Versions {
    /// Spec versions the server supports.
    pub versions: Vec<String>,
}

/// `POST /login` answer (the access token is moved into an `AccessToken` at once).
#[derive(Deserialize)]
pub(crate) struct LoginResponse {
    pub(crate) user_id: String,
    pub(crate) device_id: String,
    pub(crate) access_token: String,
}

/// `GET /account/whoami`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct WhoAmI {
    /// Our user id.
    pub user_id: String,
    /// Our device id.
    #[serde(default)]
    pub device_id: Option<String>,
}

/// `POST /createRoom` answer.
#[derive(Debug, Deserialize)]
pub(crate) struct RoomIdResponse {
    pub(crate) room_id: String,
}

/// An empty JSON object answer (`{}`), accepted with any extra fields.
#[derive(Debug, Deserialize)]
pub(crate) struct Empty {}

/// `GET /sync` answer: only what we use.
#[derive(Debug, Deserialize)]
pub struct SyncResponse {
    /// The token to pass as `since` next time.
    pub next_batch: String,
    /// Room updates.
    #[serde(default)]
    pub rooms: SyncRooms,
    /// To-device messages (Olm-encrypted room keys, …), decoded one by one.
    #[serde(default)]
    pub to_device: EventList,
    /// The account's global account data that changed (`m.push_rules`, …).
    #[serde(default)]
    pub account_data: EventList,
    /// Users whose device lists changed or who no longer share a room with us.
    #[serde(default)]
    pub device_lists: DeviceLists,
    /// How many of our one-time keys the server still holds, by algorithm. Decoded leniently:
    /// a count that is not a non-negative integer (or a field that is not an object) is left
    /// out, as if the server had not said, so one hostile field cannot wedge every sync.
    #[serde(default, deserialize_with = "lenient_counts")]
    pub device_one_time_keys_count: BTreeMap<String, u64>,
    /// Fallback key algorithms the server holds unused (absent: the server did not say).
    #[serde(default)]
    pub device_unused_fallback_key_types: Option<Vec<String>>,
}

/// Keeps the entries of a JSON object whose values are non-negative integers; anything else
/// (another type, a negative or fractional number, a string) is dropped, never an error.
fn lenient_counts<'de, D>(deserializer: D) -> Result<BTreeMap<String, u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(match Value::deserialize(deserializer)? {
        Value::Object(map) => map
            .into_iter()
            .filter_map(|(algorithm, count)| count.as_u64().map(|n| (algorithm, n)))
            .collect(),
        _ => BTreeMap::new(),
    })
}

/// `device_lists` of a sync response.
#[derive(Debug, Default, Deserialize)]
pub struct DeviceLists {
    /// Users whose devices changed.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Users we no longer share an encrypted room with.
    #[serde(default)]
    pub left: Vec<String>,
}

/// A to-device event.
#[derive(Debug, Clone, Deserialize)]
pub struct ToDeviceEvent {
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Sender user id.
    pub sender: String,
    /// Content.
    #[serde(default)]
    pub content: Value,
}

/// Rooms by membership.
#[derive(Debug, Default, Deserialize)]
pub struct SyncRooms {
    /// Rooms we are joined to.
    #[serde(default)]
    pub join: BTreeMap<String, JoinedRoom>,
    /// Rooms we are invited to.
    #[serde(default)]
    pub invite: BTreeMap<String, InvitedRoom>,
    /// Rooms we left or were removed from.
    #[serde(default)]
    pub leave: BTreeMap<String, LeftRoom>,
}

/// A list of raw events.
#[derive(Debug, Default, Deserialize)]
pub struct EventList {
    /// Raw events, decoded one by one.
    #[serde(default)]
    pub events: Vec<Value>,
}

/// A timeline slice.
#[derive(Debug, Default, Deserialize)]
pub struct Timeline {
    /// Raw events, oldest first.
    #[serde(default)]
    pub events: Vec<Value>,
    /// True if there is a gap before these events.
    #[serde(default)]
    pub limited: bool,
    /// Token to paginate backwards from the start of this slice.
    #[serde(default)]
    pub prev_batch: Option<String>,
}

/// A joined (or left) room's update.
#[derive(Debug, Default, Deserialize)]
pub struct JoinedRoom {
    /// State before the timeline.
    #[serde(default)]
    pub state: EventList,
    /// New events.
    #[serde(default)]
    pub timeline: Timeline,
    /// Receipts (`m.receipt`): ours move the read position.
    #[serde(default)]
    pub ephemeral: EventList,
    /// The room's account data of ours (`m.fully_read`).
    #[serde(default)]
    pub account_data: EventList,
}

/// `GET /rooms/{roomId}/messages` (we only paginate backwards: `chunk` is newest first).
#[derive(Debug, Default, Deserialize)]
pub struct MessagesResponse {
    /// Raw events, newest first.
    #[serde(default)]
    pub chunk: Vec<Value>,
    /// Where the next (older) page starts; absent at the start of the room.
    #[serde(default)]
    pub end: Option<String>,
}

/// A left room's update has the same shape: state, then the events up to the leave.
pub type LeftRoom = JoinedRoom;

/// An invite.
#[derive(Debug, Default, Deserialize)]
pub struct InvitedRoom {
    /// Stripped state given with the invite.
    #[serde(default)]
    pub invite_state: EventList,
}

/// One decoded room event (or stripped state event).
#[derive(Debug, Clone, Deserialize)]
pub struct RoomEvent {
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Present on state events.
    #[serde(default)]
    pub state_key: Option<String>,
    /// Sender user id.
    pub sender: String,
    /// Event content (decoded further by type).
    #[serde(default)]
    pub content: Value,
    /// Absent on stripped state.
    #[serde(default)]
    pub event_id: Option<String>,
    /// Absent on stripped state.
    #[serde(default)]
    pub origin_server_ts: Option<u64>,
}

impl RoomEvent {
    /// Decodes one raw event; `None` (and a warning naming the problem, not the content) if it
    /// does not have the shape of an event.
    pub fn parse(raw: &Value) -> Option<Self> {
        match RoomEvent::deserialize(raw) {
            Ok(event) => Some(event),
            Err(e) => {
                let message = e.to_string();
                let safe = message.split('"').next().unwrap_or_default();
                tracing::warn!(problem = safe, "skipping a malformed event from the server");
                None
            }
        }
    }
}

/// `m.room.member` content fields we read.
#[derive(Debug, Deserialize)]
pub struct MemberContent {
    /// `join`, `invite`, `leave`, `ban`, `knock`.
    pub membership: String,
    /// Display name, if a string.
    #[serde(default, deserialize_with = "string_or_none")]
    pub displayname: Option<String>,
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// The only room encryption algorithm we accept.
pub const MEGOLM_ALGORITHM: &str = "m.megolm.v1.aes-sha2";

/// `m.room.encryption` content we create rooms with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EncryptionContent {
    /// Always [`MEGOLM_ALGORITHM`].
    pub algorithm: String,
    /// Rotate the Megolm session after this long (one week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_period_ms: Option<u64>,
    /// Rotate the Megolm session after this many messages (100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_period_msgs: Option<u64>,
}

impl EncryptionContent {
    /// What every room we create carries in its initial state.
    pub fn ours() -> Self {
        Self {
            algorithm: MEGOLM_ALGORITHM.to_owned(),
            rotation_period_ms: Some(7 * 24 * 3600 * 1000),
            rotation_period_msgs: Some(100),
        }
    }
}

/// A state event for `initial_state`.
#[derive(Debug, Serialize)]
pub(crate) struct InitialState<'a, C: Serialize> {
    #[serde(rename = "type")]
    pub(crate) event_type: &'a str,
    pub(crate) state_key: &'a str,
    pub(crate) content: C,
}

/// `POST /createRoom` body.
#[derive(Debug, Serialize)]
pub(crate) struct CreateRoomRequest<'a> {
    pub(crate) preset: &'a str,
    pub(crate) visibility: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
    pub(crate) invite: &'a [String],
    pub(crate) is_direct: bool,
    pub(crate) initial_state: Vec<InitialState<'a, EncryptionContent>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_malformed_event_is_skipped_not_fatal() {
        assert!(RoomEvent::parse(&json!({"type": 5, "sender": "@a:b"})).is_none());
        assert!(RoomEvent::parse(&json!("not an object")).is_none());
        let e = RoomEvent::parse(
            &json!({"type": "m.room.member", "sender": "@a:b", "state_key": "@a:b",
            "content": {"membership": "join", "displayname": {"nested": true}}}),
        )
        .unwrap();
        let m: MemberContent = serde_json::from_value(e.content).unwrap();
        assert_eq!(m.displayname, None);
    }

    #[test]
    fn sync_with_unknown_fields_and_missing_sections_decodes() {
        let s: SyncResponse = serde_json::from_value(
            json!({"next_batch": "s1", "presence": {}, "rooms": {"join": {}}}),
        )
        .unwrap();
        assert_eq!(s.next_batch, "s1");
        assert!(serde_json::from_value::<SyncResponse>(json!({"next_batch": 7})).is_err());
    }

    #[test]
    fn hostile_one_time_key_counts_are_dropped_not_fatal() {
        for (counts, expected) in [
            (json!({"signed_curve25519": 42}), Some(42)),
            (json!({"signed_curve25519": -5}), None),
            (json!({"signed_curve25519": 1e300}), None),
            (json!({"signed_curve25519": 4.5}), None),
            (json!({"signed_curve25519": "many"}), None),
            (json!("not an object"), None),
            (json!(null), None),
        ] {
            let s: SyncResponse = serde_json::from_value(
                json!({"next_batch": "s1", "device_one_time_keys_count": counts}),
            )
            .unwrap();
            assert_eq!(
                s.device_one_time_keys_count
                    .get("signed_curve25519")
                    .copied(),
                expected,
                "{counts}"
            );
        }
    }
}
