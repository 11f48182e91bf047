//! Room operations: create (always encrypted), invite, join, leave.

use reqwest::Method;
use zeroize::Zeroizing;

use super::Client;
use crate::api::types::{
    CreateRoomRequest, Empty, EncryptionContent, InitialState, RoomIdResponse,
};
use crate::error::Error;

fn json_body(value: &impl serde::Serialize) -> Result<Zeroizing<Vec<u8>>, Error> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|e| Error::InvalidArgument {
            what: format!("request body: {e}"),
        })
}

/// `!opaque:server` (room versions ≤ 11) or `!hash` (room version 12, MSC4291).
pub(crate) fn check_room_id(room_id: &str) -> Result<(), Error> {
    let body = room_id.strip_prefix('!').unwrap_or_default();
    if !body.is_empty() && room_id.len() <= 255 && body.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: format!("not a room id: {room_id:?}"),
        })
    }
}

/// Whether `user_id` has the shape of a Matrix user id (`@localpart:server`, at most 255
/// bytes, no control character).
pub(crate) fn is_user_id(user_id: &str) -> bool {
    user_id.starts_with('@')
        && user_id.contains(':')
        && user_id.len() <= 255
        && !user_id.chars().any(char::is_control)
}

fn check_user_id(user_id: &str) -> Result<(), Error> {
    if is_user_id(user_id) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: format!("not a user id: {user_id:?}"),
        })
    }
}

impl Client {
    /// Creates a private room with `m.room.encryption` (Megolm) in its initial state — the only
    /// kind of room this client ever creates — and invites `invite`.
    pub async fn create_room(
        &mut self,
        name: Option<&str>,
        invite: &[String],
        is_direct: bool,
    ) -> Result<String, Error> {
        for user in invite {
            check_user_id(user)?;
        }
        let body = json_body(&CreateRoomRequest {
            preset: if is_direct {
                "trusted_private_chat"
            } else {
                "private_chat"
            },
            visibility: "private",
            name,
            invite,
            is_direct,
            initial_state: vec![InitialState {
                event_type: "m.room.encryption",
                state_key: "",
                content: EncryptionContent::ours(),
            }],
        })?;
        let response: RoomIdResponse = self
            .authed(
                Method::POST,
                "/createRoom",
                &["_matrix", "client", "v3", "createRoom"],
                Some(body),
            )
            .await?;
        check_room_id(&response.room_id)?;
        tracing::info!(room_id = %response.room_id, "room created");
        // Known locally at once: a message can be sent before the next sync.
        self.learn_joined_room(&response.room_id).await?;
        Ok(response.room_id)
    }

    async fn room_action(
        &self,
        room_id: &str,
        action: &'static str,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<(), Error> {
        check_room_id(room_id)?;
        let _: Empty = self
            .authed(
                Method::POST,
                action,
                &["_matrix", "client", "v3", "rooms", room_id, action],
                Some(body),
            )
            .await?;
        tracing::info!(room_id, action, "room membership changed");
        Ok(())
    }

    /// Invites `user_id` to `room_id`.
    pub async fn invite(&self, room_id: &str, user_id: &str) -> Result<(), Error> {
        check_user_id(user_id)?;
        let body = json_body(&serde_json::json!({ "user_id": user_id }))?;
        self.room_action(room_id, "invite", body).await
    }

    /// Joins `room_id` (after an invite) and returns once the room is known locally (its
    /// state fetched and applied): a message can be sent at once.
    pub async fn join(&mut self, room_id: &str) -> Result<(), Error> {
        self.room_action(room_id, "join", Zeroizing::new(b"{}".to_vec()))
            .await?;
        self.learn_joined_room(room_id).await?;
        // An invitation to a direct chat: the room becomes our direct chat with the inviter
        // (`m.direct`), so that neither side opens a second one. The join stands either way.
        if let Err(e) = self.record_direct_invite(room_id).await {
            tracing::warn!(code = e.code(), "direct chat not recorded in m.direct");
        }
        Ok(())
    }

    /// Leaves `room_id`. Messages still queued for it are cancelled (`failed`, `left_room`)
    /// and reported with the next sync; our outbound session there is discarded.
    pub async fn leave(&mut self, room_id: &str) -> Result<(), Error> {
        self.room_action(room_id, "leave", Zeroizing::new(b"{}".to_vec()))
            .await?;
        let updates = self.store.transaction(|tx| {
            crate::store::rooms::upsert_room(tx, room_id, "leave")?;
            // A direct invitation declined is forgotten.
            super::direct::forget_direct_invite(tx, room_id)?;
            crate::store::crypto::discard_outbound_session(tx, room_id)?;
            super::outbox::cancel_lane(tx, room_id, "left_room")
        })?;
        self.pending_updates.extend(updates);
        Ok(())
    }
}
