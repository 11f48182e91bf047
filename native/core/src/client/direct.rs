//! Direct chats (issue 19 item 5): the account's `m.direct` account data (user id → the rooms
//! that are direct chats with them) is kept from every sync, and a direct chat with someone
//! reuses the one that exists instead of opening a second room each time.

use std::collections::BTreeMap;

use reqwest::Method;
use rusqlite::Connection;
use serde_json::Value;

use super::Client;
use crate::error::Error;
use crate::store::StoreError;

/// The `kv` key of the stored `m.direct` content.
const DIRECT_KEY: &str = "account_data.m.direct";
/// Bounds on what a (hostile) server may make us store.
const MAX_DIRECT_USERS: usize = 10_000;
const MAX_ROOMS_PER_USER: usize = 100;

/// `m.direct` content: user id → room ids.
pub type DirectRooms = BTreeMap<String, Vec<String>>;

/// The `m.direct` content checked: an object of arrays of room ids under user ids. Entries
/// that are not (a key that is not a user id, an item that is not a room id) are dropped; a
/// content that is not an object at all is refused (`None`: the stored map stays).
pub(crate) fn parse_direct(content: &Value) -> Option<DirectRooms> {
    let Value::Object(users) = content else {
        return None;
    };
    let mut out = DirectRooms::new();
    for (user, rooms) in users.iter().take(MAX_DIRECT_USERS) {
        if !super::rooms::is_user_id(user) {
            continue;
        }
        let Value::Array(rooms) = rooms else {
            continue;
        };
        let rooms: Vec<String> = rooms
            .iter()
            .filter_map(Value::as_str)
            .filter(|r| is_room_id(r))
            .take(MAX_ROOMS_PER_USER)
            .map(str::to_owned)
            .collect();
        if !rooms.is_empty() {
            out.insert(user.clone(), rooms);
        }
    }
    Some(out)
}

fn is_room_id(room_id: &str) -> bool {
    room_id.starts_with('!') && room_id.len() <= 255 && !room_id.chars().any(char::is_control)
}

/// Stores the `m.direct` content of a sync (inside its transaction); `false` if malformed.
pub(crate) fn apply_direct(tx: &Connection, content: &Value) -> Result<bool, StoreError> {
    let Some(direct) = parse_direct(content) else {
        return Ok(false);
    };
    let bytes = serde_json::to_vec(&direct).map_err(|e| StoreError::Corrupt {
        detail: format!("m.direct: {e}"),
    })?;
    crate::store::kv_set(tx, DIRECT_KEY, &bytes)?;
    Ok(true)
}

/// The `kv` key prefix of a direct invitation not joined yet: `{state_key, inviter}`.
const DIRECT_INVITE_PREFIX: &str = "direct_invite.";

/// Remembers, from an invited room's stripped state, an invitation marked `is_direct` (inside
/// the sync's transaction), for [`Client::join`] to record the room in `m.direct`.
pub(crate) fn note_direct_invite(
    tx: &Connection,
    room_id: &str,
    raw: &Value,
) -> Result<(), StoreError> {
    let field = |name: &str| raw.get(name).and_then(Value::as_str);
    let content = raw.get("content");
    let direct = field("type") == Some("m.room.member")
        && content
            .and_then(|c| c.get("membership"))
            .and_then(Value::as_str)
            == Some("invite")
        && content
            .and_then(|c| c.get("is_direct"))
            .and_then(Value::as_bool)
            == Some(true);
    let (Some(state_key), Some(inviter)) = (field("state_key"), field("sender")) else {
        return Ok(());
    };
    if !direct || !super::rooms::is_user_id(inviter) || !is_room_id(room_id) {
        return Ok(());
    }
    let value = serde_json::json!({ "state_key": state_key, "inviter": inviter });
    crate::store::kv_set(
        tx,
        &format!("{DIRECT_INVITE_PREFIX}{room_id}"),
        value.to_string().as_bytes(),
    )
}

/// Forgets a noted direct invitation to `room_id` (declined or left).
pub(crate) fn forget_direct_invite(tx: &Connection, room_id: &str) -> Result<(), StoreError> {
    crate::store::kv_delete(tx, &format!("{DIRECT_INVITE_PREFIX}{room_id}"))
}

/// The stored `m.direct` map (empty if the server never sent one).
pub(crate) fn stored_direct(conn: &Connection) -> Result<DirectRooms, StoreError> {
    Ok(crate::store::kv_get(conn, DIRECT_KEY)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default())
}

impl Client {
    /// The account's direct chats (`m.direct`, as last synced or set here).
    pub fn direct_rooms(&self) -> Result<DirectRooms, Error> {
        Ok(stored_direct(self.store.conn())?)
    }

    /// The direct chat with `user_id` this device can use now: a room of `m.direct` for them
    /// that we have joined and where they are joined or invited (the most recent such entry).
    pub fn direct_room_with(&self, user_id: &str) -> Result<Option<String>, Error> {
        let direct = stored_direct(self.store.conn())?;
        let Some(rooms) = direct.get(user_id) else {
            return Ok(None);
        };
        for room_id in rooms.iter().rev() {
            if crate::store::rooms::membership(self.store.conn(), room_id)?.as_deref()
                != Some("join")
            {
                continue;
            }
            let theirs = self
                .store
                .members(room_id)?
                .into_iter()
                .find(|m| m.user_id == user_id)
                .map(|m| m.membership);
            if matches!(theirs.as_deref(), Some("join" | "invite")) {
                return Ok(Some(room_id.clone()));
            }
        }
        Ok(None)
    }

    /// After joining `room_id`: if we were invited to it as a direct chat, it becomes our
    /// direct chat with the inviter in `m.direct` (the account data written, then stored).
    pub(crate) async fn record_direct_invite(&mut self, room_id: &str) -> Result<(), Error> {
        let key = format!("{DIRECT_INVITE_PREFIX}{room_id}");
        let Some(bytes) = crate::store::kv_get(self.store.conn(), &key)? else {
            return Ok(());
        };
        let (ours, _) = self.own_ids()?;
        let noted: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let inviter = noted
            .get("inviter")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let for_us = noted.get("state_key").and_then(Value::as_str) == Some(ours.as_str());
        if let (Some(inviter), true) = (inviter, for_us) {
            let mut direct = stored_direct(self.store.conn())?;
            let rooms = direct.entry(inviter).or_default();
            if !rooms.iter().any(|r| r == room_id) {
                rooms.push(room_id.to_owned());
                self.put_direct(&ours, &direct).await?;
            }
        }
        self.store
            .transaction(|tx| forget_direct_invite(tx, room_id))?;
        Ok(())
    }

    /// Writes `m.direct` on the server, then here.
    async fn put_direct(&mut self, ours: &str, direct: &DirectRooms) -> Result<(), Error> {
        let content = serde_json::to_value(direct).map_err(|e| Error::InvalidArgument {
            what: format!("m.direct: {e}"),
        })?;
        let body = super::e2ee::json_body(&content);
        let _: crate::api::types::Empty = self
            .authed(
                Method::PUT,
                "/account_data/m.direct",
                &[
                    "_matrix",
                    "client",
                    "v3",
                    "user",
                    ours,
                    "account_data",
                    "m.direct",
                ],
                Some(body),
            )
            .await?;
        self.store
            .transaction(|tx| apply_direct(tx, &content).map(|_| ()))?;
        Ok(())
    }

    /// The direct chat with `user_id`: the existing one ([`Client::direct_room_with`]) or a
    /// new encrypted room, marked direct, with them invited and recorded in `m.direct`.
    /// Returns the room and whether it was created now.
    pub async fn open_direct_room(&mut self, user_id: &str) -> Result<(String, bool), Error> {
        let (ours, _) = self.own_ids()?;
        if user_id == ours {
            return Err(Error::InvalidArgument {
                what: "a direct chat is with someone else".into(),
            });
        }
        if let Some(room_id) = self.direct_room_with(user_id)? {
            tracing::info!(%room_id, "direct chat reused");
            return Ok((room_id, false));
        }
        let room_id = self.create_room(None, &[user_id.to_owned()], true).await?;
        let mut direct = stored_direct(self.store.conn())?;
        direct
            .entry(user_id.to_owned())
            .or_default()
            .push(room_id.clone());
        self.put_direct(&ours, &direct).await?;
        Ok((room_id, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A client on a fresh data directory and a soft vault (no session, no network).
    fn open_client() -> (tempfile::TempDir, Client) {
        let dir = tempfile::tempdir().unwrap();
        let backend = tchap_secure_hsm::soft::SoftVault::new().unwrap();
        let client = Client::open(
            super::super::account::tests::config(""),
            dir.path(),
            &backend,
        )
        .unwrap();
        (dir, client)
    }

    #[test]
    fn only_an_invitation_marked_direct_by_a_user_is_noted() {
        let (_dir, mut client) = open_client();
        let invite = |sender: &str, membership: &str, is_direct: Value| {
            json!({"type": "m.room.member", "state_key": "@me:s", "sender": sender,
                   "content": {"membership": membership, "is_direct": is_direct}})
        };
        let cases = [
            ("!a:s", invite("@bob:s", "invite", json!(true)), true),
            ("!b:s", invite("@bob:s", "invite", json!(false)), false),
            ("!c:s", invite("@bob:s", "invite", json!("true")), false),
            ("!d:s", invite("@bob:s", "join", json!(true)), false),
            ("!e:s", invite("not a user", "invite", json!(true)), false),
            ("not a room", invite("@bob:s", "invite", json!(true)), false),
            (
                "!f:s",
                json!({"type": "m.room.name", "sender": "@bob:s", "state_key": "",
                             "content": {"membership": "invite", "is_direct": true}}),
                false,
            ),
        ];
        for (room, raw, noted) in cases {
            client
                .store
                .transaction(|tx| note_direct_invite(tx, room, &raw))
                .unwrap();
            let key = format!("{DIRECT_INVITE_PREFIX}{room}");
            let stored = crate::store::kv_get(client.store.conn(), &key).unwrap();
            assert_eq!(stored.is_some(), noted, "{room}: {raw}");
            if let Some(bytes) = stored {
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(v, json!({"state_key": "@me:s", "inviter": "@bob:s"}));
            }
        }
    }

    #[test]
    fn a_direct_chat_is_reused_only_where_both_are_members() {
        let (_dir, mut client) = open_client();
        let bob = "@bob:s";
        assert_eq!(client.direct_room_with(bob).unwrap(), None);
        client
            .store
            .transaction(|tx| {
                use crate::store::rooms::{upsert_member, upsert_room};
                // !left: Bob left. !invited: we are only invited. !ok and !newer: usable.
                upsert_room(tx, "!left:s", "join")?;
                upsert_member(tx, "!left:s", bob, "leave", None)?;
                upsert_room(tx, "!invited:s", "invite")?;
                upsert_member(tx, "!invited:s", bob, "join", None)?;
                upsert_room(tx, "!ok:s", "join")?;
                upsert_member(tx, "!ok:s", bob, "join", None)?;
                upsert_room(tx, "!pending:s", "join")?;
                upsert_member(tx, "!pending:s", bob, "invite", None)?;
                upsert_room(tx, "!other:s", "join")?;
                upsert_member(tx, "!other:s", "@carol:s", "join", None)?;
                apply_direct(
                    tx,
                    &json!({bob: ["!ok:s", "!pending:s", "!left:s", "!invited:s", "!unknown:s"],
                            "@carol:s": ["!other:s"]}),
                )
                .map(|_| ())
            })
            .unwrap();
        // The latest usable entry: Bob invited in !pending counts, the later ones do not.
        assert_eq!(
            client.direct_room_with(bob).unwrap().as_deref(),
            Some("!pending:s")
        );
        // A room m.direct lists for someone else is not a direct chat with Bob.
        assert_eq!(client.direct_room_with("@dave:s").unwrap(), None);
        client
            .store
            .transaction(|tx| apply_direct(tx, &json!({bob: ["!ok:s"]})).map(|_| ()))
            .unwrap();
        assert_eq!(
            client.direct_room_with(bob).unwrap().as_deref(),
            Some("!ok:s")
        );
        // A malformed content leaves what was stored.
        let kept = client
            .store
            .transaction(|tx| apply_direct(tx, &json!("nonsense")))
            .unwrap();
        assert!(!kept);
        assert_eq!(client.direct_rooms().unwrap()[bob], ["!ok:s"]);
    }

    #[test]
    fn a_hostile_m_direct_keeps_only_user_ids_mapped_to_room_ids() {
        let content = json!({
            "@bob:s": ["!a:s", 3, "not a room", "!b:s"],
            "not a user": ["!c:s"],
            "@carol:s": "!d:s",
            "@dave:s": [],
            "@eve:s": ["!e\u{0}:s"],
        });
        let direct = parse_direct(&content).unwrap();
        assert_eq!(
            direct,
            DirectRooms::from([(
                "@bob:s".to_owned(),
                vec!["!a:s".to_owned(), "!b:s".to_owned()]
            )])
        );
        assert_eq!(parse_direct(&json!(["!a:s"])), None);
        assert_eq!(parse_direct(&json!(null)), None);
        let many: serde_json::Map<String, Value> = (0..MAX_ROOMS_PER_USER + 5)
            .map(|i| (format!("@u{i}:s"), json!([format!("!r{i}:s")])))
            .collect();
        assert_eq!(
            parse_direct(&Value::Object(many)).unwrap().len(),
            MAX_ROOMS_PER_USER + 5
        );
        let long = json!({"@bob:s": (0..MAX_ROOMS_PER_USER + 5).map(|i| format!("!r{i}:s")).collect::<Vec<_>>()});
        assert_eq!(
            parse_direct(&long).unwrap()["@bob:s"].len(),
            MAX_ROOMS_PER_USER
        );
    }
}
