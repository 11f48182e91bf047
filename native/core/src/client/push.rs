//! Push registration (issue 17 item 1): this device's HTTP pusher on the homeserver, pointed at
//! the secure infrastructure's push gateway (`push_gateway_url` of the managed configuration)
//! with `format: event_id_only`, so that nothing readable — no body, no sender, no room name —
//! leaves the homeserver with a notification: the app fetches and decrypts the event itself.
//!
//! Each pusher this device registers is recorded before `/pushers/set` is sent, so that logout
//! and wipe can remove it from the server (a crash in between leaves a record of a pusher that
//! may not exist; removing one that does not exist is harmless).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Client;
use super::e2ee::json_body;
use crate::api::types::Empty;
use crate::error::Error;

/// The app's name on the homeserver's list of pushers.
const APP_DISPLAY_NAME: &str = "Tchap Secure";
/// Longest app id and push key the spec allows (`/pushers/set`: 64 and 512 bytes).
const MAX_APP_ID: usize = 64;
const MAX_PUSHKEY: usize = 512;

/// A pusher as the homeserver lists it (`GET /pushers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pusher {
    /// Which app (e.g. `fr.gouv.tchap.secure.android`).
    pub app_id: String,
    /// The device's address at the push provider (e.g. a UnifiedPush endpoint).
    pub pushkey: String,
    /// `http`.
    pub kind: String,
    /// Where and how the homeserver notifies.
    #[serde(default)]
    pub data: PusherData,
}

/// The `data` of an HTTP pusher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PusherData {
    /// The push gateway's notify URL.
    #[serde(default)]
    pub url: Option<String>,
    /// `event_id_only` for ours.
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Deserialize)]
struct Pushers {
    #[serde(default)]
    pushers: Vec<Pusher>,
}

fn check_ids(app_id: &str, pushkey: &str) -> Result<(), Error> {
    let bad = |what: &str| {
        Err(Error::InvalidArgument {
            what: what.to_owned(),
        })
    };
    if app_id.is_empty() || app_id.len() > MAX_APP_ID {
        return bad("app id: 1 to 64 bytes");
    }
    if pushkey.is_empty() || pushkey.len() > MAX_PUSHKEY {
        return bad("push key: 1 to 512 bytes");
    }
    if app_id.chars().chain(pushkey.chars()).any(char::is_control) {
        return bad("app id and push key: no control characters");
    }
    Ok(())
}

impl Client {
    /// Registers this device's pusher: the homeserver will notify the managed configuration's
    /// push gateway (`push_gateway_url`) of every event that its push rules say notifies,
    /// with the event and room ids only (`event_id_only`). `app_id` and `pushkey` come from the
    /// app (its id, and its address at the State-run push distributor); `device_name` is shown
    /// in the member's list of pushers. Registering the same pair again updates it.
    pub async fn register_pusher(
        &mut self,
        app_id: &str,
        pushkey: &str,
        device_name: &str,
    ) -> Result<(), Error> {
        check_ids(app_id, pushkey)?;
        self.own_ids()?;
        let url = self
            .config
            .push_gateway_url()
            .ok_or_else(|| Error::InvalidArgument {
                what: "no push_gateway_url in the managed configuration: push is not set up".into(),
            })?
            .to_string();
        self.store
            .transaction(|tx| crate::store::push::record_pusher(tx, app_id, pushkey))?;
        let body = json!({
            "kind": "http",
            "app_id": app_id,
            "pushkey": pushkey,
            "app_display_name": APP_DISPLAY_NAME,
            "device_display_name": device_name,
            "lang": "fr",
            "data": { "url": url, "format": "event_id_only" },
            "append": false,
        });
        self.set_pusher(&body).await?;
        tracing::info!(app_id, "pusher registered");
        Ok(())
    }

    /// Removes every pusher this device registered from the homeserver; returns how many. A
    /// record is forgotten only once the server confirmed its removal.
    pub async fn unregister_pushers(&mut self) -> Result<usize, Error> {
        self.own_ids()?;
        let registered = self.registered_pushers()?;
        for (app_id, pushkey) in &registered {
            let body = json!({ "kind": null, "app_id": app_id, "pushkey": pushkey });
            self.set_pusher(&body).await?;
            self.store
                .transaction(|tx| crate::store::push::forget_pusher(tx, app_id, pushkey))?;
            tracing::info!(app_id, "pusher removed");
        }
        Ok(registered.len())
    }

    /// Before a wipe: removes this device's pushers from the homeserver if that can be done
    /// within `within`, and says whether it was. The wipe must never wait on the network
    /// (offline, a server that does not answer): a pusher left behind notifies a device that
    /// no longer exists, with event ids only.
    pub async fn unregister_pushers_within(&mut self, within: std::time::Duration) -> bool {
        // None recorded: nothing to ask the server (not even a session is needed).
        if self.registered_pushers().is_ok_and(|p| p.is_empty()) {
            return true;
        }
        match tokio::time::timeout(within, self.unregister_pushers()).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!(code = e.code(), "pushers not removed before the wipe");
                false
            }
            Err(_) => {
                tracing::warn!("pushers not removed before the wipe: no answer in time");
                false
            }
        }
    }

    /// `POST /pushers/set` (a pusher added, updated, or removed with `kind: null`).
    async fn set_pusher(&self, body: &serde_json::Value) -> Result<(), Error> {
        let _: Empty = self
            .authed(
                Method::POST,
                "/pushers/set",
                &["_matrix", "client", "v3", "pushers", "set"],
                Some(json_body(body)),
            )
            .await?;
        Ok(())
    }

    /// The pushers the homeserver holds for our account (every device's), as it lists them.
    pub async fn pushers(&self) -> Result<Vec<Pusher>, Error> {
        let list: Pushers = self
            .authed(
                Method::GET,
                "/pushers",
                &["_matrix", "client", "v3", "pushers"],
                None,
            )
            .await?;
        Ok(list.pushers)
    }

    /// The `(app id, push key)` of every pusher this device registered and has not removed.
    pub fn registered_pushers(&self) -> Result<Vec<(String, String)>, Error> {
        Ok(crate::store::push::registered_pushers(self.store.conn())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_and_push_keys_are_bounded_and_printable() {
        assert!(check_ids("fr.gouv.tchap.secure", "https://push.example/up/abc").is_ok());
        for (app_id, pushkey) in [
            ("", "k"),
            ("a", ""),
            (&*"a".repeat(65), "k"),
            ("a", &*"k".repeat(513)),
            ("a\nb", "k"),
            ("a", "k\u{1b}[2J"),
        ] {
            assert!(
                matches!(
                    check_ids(app_id, pushkey),
                    Err(Error::InvalidArgument { .. })
                ),
                "{app_id:?} {pushkey:?}"
            );
        }
        assert!(check_ids(&"a".repeat(64), &"k".repeat(512)).is_ok());
    }
}
