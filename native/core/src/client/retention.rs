//! Disappearing messages (issue 18 item 4), client side: the purge runs at open, after every
//! sync, and whenever the app asks (`purge_expired`, e.g. from an alarm while the sync is
//! stopped); a sync never waits past the next message's deadline (its long poll is cut short),
//! so a running sync purges within a second or so of it. Setting a room's lifetime needs the
//! power level for `m.room.retention`. See [`crate::store::retention`] for what is erased.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Client;
use crate::error::Error;
use crate::store::crypto::now_ms;
use crate::store::retention::{self, Lifetimes, MIN_LIFETIME_MS};

/// A room's message lifetime, as the device honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// The room's own `max_lifetime` (ms), if it sets one.
    pub room_ms: Option<i64>,
    /// The managed configuration's ceiling on every room (ms).
    pub ceiling_ms: Option<i64>,
    /// What is honoured: the smaller, never under 30 s; none: messages are kept.
    pub effective_ms: Option<i64>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Client {
    /// Stores the configuration's ceiling and purges what expired while the app was closed.
    pub(crate) fn retention_at_open(&mut self) -> Result<(), Error> {
        let ceiling = self.config.max_message_lifetime().map(millis);
        self.store.transaction(|tx| {
            retention::set_ceiling(tx, ceiling)?;
            retention::purge(tx, now_ms())
        })?;
        Ok(())
    }

    /// Purges every message whose lifetime is over (text, edits, file key: gone from the
    /// device, a tombstone left); returns how many.
    pub fn purge_expired(&mut self) -> Result<usize, Error> {
        let now = now_ms();
        let purged = self.store.transaction(|tx| retention::purge(tx, now))?;
        if purged > 0 {
            tracing::info!(purged, "expired messages purged");
        }
        Ok(purged)
    }

    /// When the next message expires (ms since the epoch), if one will.
    pub fn next_expiry(&self) -> Result<Option<i64>, Error> {
        Ok(retention::next_expiry(self.store.conn())?)
    }

    /// A sync's long-poll timeout, cut short so that it ends by the next expiry.
    pub(crate) fn timeout_before_expiry(&self, timeout: Duration) -> Result<Duration, Error> {
        Ok(match self.next_expiry()? {
            Some(at) => {
                let left = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                timeout.min(Duration::from_millis(left))
            }
            None => timeout,
        })
    }

    /// The message lifetime of `room_id`.
    pub fn retention(&self, room_id: &str) -> Result<Retention, Error> {
        let l: Lifetimes = retention::lifetimes(self.store.conn(), room_id)?;
        Ok(Retention {
            room_ms: l.room_ms,
            ceiling_ms: l.ceiling_ms,
            effective_ms: l.effective_ms(),
        })
    }

    /// Sets (or, with `None`, removes) the message lifetime of `room_id` for every member
    /// (`m.room.retention`); applied here at once. Needs the room's power level for it; at
    /// least 30 s. The managed configuration's ceiling still applies on every device.
    pub async fn set_retention(
        &mut self,
        room_id: &str,
        lifetime: Option<Duration>,
    ) -> Result<(), Error> {
        self.check_sendable_room(room_id)?;
        let lifetime_ms = lifetime.map(millis);
        if lifetime_ms.is_some_and(|ms| ms < MIN_LIFETIME_MS) {
            return Err(Error::Relation {
                code: "retention_too_short",
                detail: format!(
                    "a message lifetime is at least {} s",
                    MIN_LIFETIME_MS / 1000
                ),
            });
        }
        let (own, _) = self.own_ids()?;
        let powers = crate::store::push::power_levels(self.store.conn(), room_id)?;
        let needed = powers
            .events
            .get("m.room.retention")
            .copied()
            .unwrap_or(powers.state_default);
        if powers.level_of(&own) < needed {
            return Err(Error::Relation {
                code: "retention_not_allowed",
                detail: format!(
                    "setting the message lifetime of {room_id} needs power level {needed}"
                ),
            });
        }
        let content = match lifetime_ms {
            Some(ms) => json!({ "max_lifetime": ms }),
            None => json!({}),
        };
        let _: Value = self
            .authed(
                Method::PUT,
                "/rooms/state",
                &[
                    "_matrix",
                    "client",
                    "v3",
                    "rooms",
                    room_id,
                    "state",
                    "m.room.retention",
                    "",
                ],
                Some(Zeroizing::new(content.to_string().into_bytes())),
            )
            .await?;
        self.store.transaction(|tx| {
            retention::set_room_retention(tx, room_id, lifetime_ms)?;
            retention::purge(tx, now_ms())
        })?;
        Ok(())
    }
}
