//! The send queue: every request goes through the outbox, and no request can wedge it.
//!
//! - Requests go out in the order they were queued, per lane (a room: its room keys, then its
//!   messages; to-device messages of no room: their own lane). A lane that hits a transient
//!   failure (network, 5xx, 429, a timeout) waits with exponential back-off (1 s … 5 min) and
//!   holds back only its own later requests; every other lane goes on.
//! - A permanent refusal (403 `M_FORBIDDEN`, 404, 413 `M_TOO_LARGE`, any other 4xx) fails that
//!   request alone: it leaves the outbox, the message's local echo becomes `failed` with a
//!   typed reason, the refusal is journaled and reported to the caller and the listener. A
//!   refused room-key share also discards the room's outbound Megolm session, so the next
//!   message shares a new key.
//! - Leaving a room (or being removed from it, seen by the sync) cancels its queued requests:
//!   its messages become `failed` (`left_room`).
//! - Only a failure that concerns the whole session (a rejected TLS peer, a revoked token, an
//!   expired account, the store) ends a flush with an error; a send failure never stops the
//!   sync.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::Client;
use crate::api::ApiError;
use crate::error::Error;
use crate::store::StoreError;
use crate::store::crypto::{self as cdb, OutboxRow, now_ms};
use crate::store::timeline as tl;

/// First and last wait after a transient failure.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// A change of state of one of our outgoing messages (or of a redaction we sent: its local id
/// is the one `Client::redact` returned when it was queued), for the caller and the listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutgoingUpdate {
    /// The room.
    pub room_id: String,
    /// The message's local id (its transaction id, as in `TimelineEvent::local_id`).
    pub local_id: String,
    /// `sent` or `failed`.
    pub state: String,
    /// The event id the server gave it, once sent.
    pub event_id: Option<String>,
    /// Why it failed: `forbidden`, `not_found`, `too_large`, `refused`, `left_room`.
    pub error: Option<String>,
}

/// What one flush did.
#[derive(Debug, Default)]
pub(crate) struct FlushReport {
    /// State changes of our messages.
    pub(crate) updates: Vec<OutgoingUpdate>,
    /// Lanes left waiting after a transient failure, with the failure's code.
    pub(crate) transient: BTreeMap<String, String>,
}

/// How a failed request is handled.
enum Failure {
    /// Try again later (network, server busy).
    Transient(Error),
    /// Never send it: the reason code.
    Permanent(&'static str),
    /// The whole session is concerned: stop and report.
    Fatal(Error),
}

/// Sorts a request's failure: transient, permanent (with its reason code) or fatal.
fn classify(e: Error) -> Failure {
    if e.tls_rejection().is_some() {
        return Failure::Fatal(e);
    }
    let status = match &e {
        Error::Api(ApiError::Forbidden { .. }) => return Failure::Permanent("forbidden"),
        Error::Api(ApiError::Matrix { errcode, .. }) if errcode == "M_TOO_LARGE" => {
            return Failure::Permanent("too_large");
        }
        Error::Api(
            ApiError::Transport(_)
            | ApiError::LimitExceeded { .. }
            | ApiError::MalformedResponse { .. },
        ) => return Failure::Transient(e),
        Error::Api(ApiError::Matrix { status, .. } | ApiError::Http { status }) => *status,
        _ => return Failure::Fatal(e),
    };
    match status {
        408 | 429 | 500.. => Failure::Transient(e),
        403 => Failure::Permanent("forbidden"),
        404 => Failure::Permanent("not_found"),
        413 => Failure::Permanent("too_large"),
        _ => Failure::Permanent("refused"),
    }
}

/// The wait before the `attempts`-th retry.
fn backoff(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16);
    (BACKOFF_MIN * 2u32.pow(exponent)).min(BACKOFF_MAX)
}

/// Inside a transaction: cancels a room's queued requests (we left it). Its messages become
/// `failed` with `reason`; returns their updates.
pub(crate) fn cancel_lane(
    tx: &rusqlite::Connection,
    room_id: &str,
    reason: &'static str,
) -> Result<Vec<OutgoingUpdate>, StoreError> {
    let mut updates = Vec::new();
    for (txn_id, kind) in cdb::outbox_lane(tx, room_id)? {
        cdb::remove_outbox(tx, &txn_id)?;
        if kind.starts_with("room_event:") {
            tl::echo_failed(tx, &txn_id, reason)?;
            updates.push(OutgoingUpdate {
                room_id: room_id.to_owned(),
                local_id: txn_id,
                state: "failed".into(),
                event_id: None,
                error: Some(reason.into()),
            });
        }
    }
    if !updates.is_empty() {
        crate::store::rooms::record_security_event(
            tx,
            "message_send_cancelled",
            Some(room_id),
            None,
            &format!("{} queued message(s) cancelled: {reason}", updates.len()),
        )?;
    }
    Ok(updates)
}

impl Client {
    /// Sends what the outbox holds, in order per lane, each request with its stable
    /// transaction id (the server deduplicates a request sent again after a crash). Failures
    /// are handled per request (see the module documentation); only a failure of the whole
    /// session is returned as an error.
    pub(crate) async fn flush_outbox(&mut self) -> Result<FlushReport, Error> {
        let mut report = FlushReport::default();
        let mut waiting: BTreeSet<String> = BTreeSet::new();
        let now = now_ms();
        for row in cdb::outbox(self.store.conn())? {
            if waiting.contains(&row.target) {
                continue;
            }
            if row.next_attempt_ms > now {
                waiting.insert(row.target.clone());
                report
                    .transient
                    .entry(row.target.clone())
                    .or_insert_with(|| "retry_pending".into());
                continue;
            }
            match self.send_outbox_row(&row).await {
                Ok(event_id) => {
                    let update = self.store.transaction(|tx| {
                        cdb::remove_outbox(tx, &row.txn_id)?;
                        let redaction = row.kind.starts_with("redact:");
                        let Some(event_id) =
                            event_id.filter(|_| redaction || row.kind.starts_with("room_event:"))
                        else {
                            return Ok(None);
                        };
                        if !redaction {
                            tl::echo_sent(tx, &row.txn_id, &event_id)?;
                        }
                        Ok(Some(OutgoingUpdate {
                            room_id: row.target.clone(),
                            local_id: row.txn_id.clone(),
                            state: "sent".into(),
                            event_id: Some(event_id),
                            error: None,
                        }))
                    })?;
                    report.updates.extend(update);
                }
                Err(e) => match classify(e) {
                    Failure::Transient(e) => {
                        let attempts = row.attempts.saturating_add(1);
                        let wait = backoff(attempts);
                        let next =
                            now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                        tracing::warn!(code = e.code(), attempts, ?wait, "send failed; will retry");
                        self.store.transaction(|tx| {
                            cdb::retry_outbox_later(tx, &row.txn_id, attempts, next)
                        })?;
                        waiting.insert(row.target.clone());
                        report
                            .transient
                            .insert(row.target.clone(), e.code().to_owned());
                    }
                    Failure::Permanent(reason) => {
                        tracing::warn!(reason, kind = %row.kind, "request refused for good");
                        let update = self.store.transaction(|tx| {
                            cdb::remove_outbox(tx, &row.txn_id)?;
                            let room = (!row.target.is_empty()).then_some(row.target.as_str());
                            crate::store::rooms::record_security_event(
                                tx,
                                "message_send_failed",
                                room,
                                None,
                                &format!("{} refused by the homeserver: {reason}", row.kind),
                            )?;
                            if row.kind == "read_markers" {
                                return Ok(None);
                            }
                            if row.kind.starts_with("redact:") {
                                // Erased here already; the others still see the event.
                                return Ok(Some(OutgoingUpdate {
                                    room_id: row.target.clone(),
                                    local_id: row.txn_id.clone(),
                                    state: "failed".into(),
                                    event_id: None,
                                    error: Some(reason.into()),
                                }));
                            }
                            if !row.kind.starts_with("room_event:") {
                                // A room key that never went out: the next message starts a new
                                // session, shared again.
                                if let Some(room) = room {
                                    cdb::discard_outbound_session(tx, room)?;
                                }
                                return Ok(None);
                            }
                            tl::echo_failed(tx, &row.txn_id, reason)?;
                            Ok(Some(OutgoingUpdate {
                                room_id: row.target.clone(),
                                local_id: row.txn_id.clone(),
                                state: "failed".into(),
                                event_id: None,
                                error: Some(reason.into()),
                            }))
                        })?;
                        report.updates.extend(update);
                    }
                    Failure::Fatal(e) => return Err(e),
                },
            }
        }
        Ok(report)
    }

    /// One outbox request; the event id the server gave a room event.
    async fn send_outbox_row(&self, row: &OutboxRow) -> Result<Option<String>, Error> {
        let body = Zeroizing::new(row.body.clone().into_bytes());
        if let Some(event_type) = row.kind.strip_prefix("to_device:") {
            let _: Value = self
                .authed(
                    Method::PUT,
                    "/sendToDevice",
                    &[
                        "_matrix",
                        "client",
                        "v3",
                        "sendToDevice",
                        event_type,
                        &row.txn_id,
                    ],
                    Some(body),
                )
                .await?;
            crate::fault::point("mid-key-share");
            Ok(None)
        } else if let Some(event_type) = row.kind.strip_prefix("room_event:") {
            let answer: Value = self
                .authed(
                    Method::PUT,
                    "/rooms/send",
                    &[
                        "_matrix",
                        "client",
                        "v3",
                        "rooms",
                        &row.target,
                        "send",
                        event_type,
                        &row.txn_id,
                    ],
                    Some(body),
                )
                .await?;
            crate::fault::point("after-message-sent");
            Ok(answer
                .get("event_id")
                .and_then(Value::as_str)
                .map(str::to_owned))
        } else if row.kind == "read_markers" {
            let _: Value = self
                .authed(
                    Method::POST,
                    "/rooms/read_markers",
                    &[
                        "_matrix",
                        "client",
                        "v3",
                        "rooms",
                        &row.target,
                        "read_markers",
                    ],
                    Some(body),
                )
                .await?;
            Ok(None)
        } else if let Some(event_id) = row.kind.strip_prefix("redact:") {
            let answer: Value = self
                .authed(
                    Method::PUT,
                    "/rooms/redact",
                    &[
                        "_matrix",
                        "client",
                        "v3",
                        "rooms",
                        &row.target,
                        "redact",
                        event_id,
                        &row.txn_id,
                    ],
                    Some(body),
                )
                .await?;
            Ok(answer
                .get("event_id")
                .and_then(Value::as_str)
                .map(str::to_owned))
        } else {
            // An unknown kind cannot be sent: refused for good rather than retried forever.
            Err(Error::Api(ApiError::Http { status: 400 }))
        }
    }

    /// Our messages' state changes since the last sync (sends done by `send_*` calls, which
    /// also flush the queue), for the next sync's summary.
    pub(crate) fn take_outgoing_updates(&mut self) -> Vec<OutgoingUpdate> {
        std::mem::take(&mut self.pending_updates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TransportError;

    fn matrix(status: u16, errcode: &str) -> Error {
        Error::Api(ApiError::Matrix {
            status,
            errcode: errcode.into(),
            message: String::new(),
        })
    }

    fn kind(f: Failure) -> &'static str {
        match f {
            Failure::Transient(_) => "transient",
            Failure::Permanent(reason) => reason,
            Failure::Fatal(_) => "fatal",
        }
    }

    #[test]
    fn failures_are_sorted_into_transient_permanent_and_fatal() {
        let forbidden = Error::Api(ApiError::Forbidden {
            message: String::new(),
        });
        assert_eq!(kind(classify(forbidden)), "forbidden");
        assert_eq!(kind(classify(matrix(403, "M_UNKNOWN"))), "forbidden");
        assert_eq!(kind(classify(matrix(404, "M_NOT_FOUND"))), "not_found");
        assert_eq!(kind(classify(matrix(413, "M_TOO_LARGE"))), "too_large");
        assert_eq!(kind(classify(matrix(400, "M_TOO_LARGE"))), "too_large");
        assert_eq!(kind(classify(matrix(400, "M_BAD_JSON"))), "refused");
        assert_eq!(
            kind(classify(Error::Api(ApiError::Http { status: 404 }))),
            "not_found"
        );
        // A front (nginx) refusing a body too large answers without a Matrix error object.
        assert_eq!(
            kind(classify(Error::Api(ApiError::Http { status: 413 }))),
            "too_large"
        );
        assert_eq!(
            kind(classify(Error::Api(ApiError::Http { status: 403 }))),
            "forbidden"
        );
        assert_eq!(
            kind(classify(Error::Api(ApiError::Http { status: 400 }))),
            "refused"
        );
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(kind(classify(matrix(status, "M_UNKNOWN"))), "transient");
            assert_eq!(
                kind(classify(Error::Api(ApiError::Http { status }))),
                "transient"
            );
        }
        let limited = Error::Api(ApiError::LimitExceeded {
            retry_after_ms: Some(60_000),
        });
        assert_eq!(kind(classify(limited)), "transient");
        let network = Error::Api(ApiError::Transport(TransportError::Timeout));
        assert_eq!(kind(classify(network)), "transient");
        let token = Error::Api(ApiError::UnknownToken { soft_logout: false });
        assert_eq!(kind(classify(token)), "fatal");
        assert_eq!(
            kind(classify(Error::Api(ApiError::ExpiredAccount))),
            "fatal"
        );
        assert_eq!(kind(classify(Error::NotLoggedIn)), "fatal");
    }

    #[test]
    fn back_off_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
