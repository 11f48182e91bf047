//! Interactive key verification, the client side (issue 16 item 2): the sans-IO flows of
//! [`crate::crypto::verification`] driven over to-device messages (our own devices, or a user
//! with no shared room) and in-room events (a room with the user: Megolm-encrypted like every
//! event), and a successful flow turned into cross-signing signatures.
//!
//! Flows live in memory only: a verification lasts minutes and is done again if the process
//! dies. Nothing is trusted before the flow is done; then the signature is uploaded *before*
//! anything is marked locally — killed in between, the next key query finds our signature on
//! the server and draws the same conclusion, killed before, nothing changed and the
//! verification is simply redone. A mismatch (emoji, MAC, commitment) cancels the flow and is
//! journaled.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method as Http;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::Client;
use super::e2ee::{json_body, random_txn_id};
use super::sync::VerificationEvent;
use crate::api::ApiError;
use crate::crypto::cross_signing::{OwnKeys as CrossKeys, cross_signing_key};
use crate::crypto::devices::ed25519_from_base64;
use crate::crypto::verification::{
    self as v, CancelCode, FlowId, Method, PeerIdentity, Verification, VerificationError,
};
use crate::error::Error;
use crate::store::crypto::{self as cdb, DeviceState, now_ms};
use crate::store::identity::{self as idb, IdentityRecord, IdentityState, Publication, Slot};
use crate::store::rooms::record_security_event;

/// At most this many flows are kept; beyond, finished ones are dropped and new requests
/// ignored (a peer cannot make us hold unbounded state).
const MAX_FLOWS: usize = 64;

/// One SAS emoji: the symbol and the specification's English description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SasEmoji {
    /// The Unicode symbol.
    pub symbol: String,
    /// The English description (the app translates it).
    pub description: String,
}

/// A verification flow as the app and the CLI see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerificationInfo {
    /// The flow id (a transaction id, or the request's event id in a room).
    pub flow_id: String,
    /// The other user (our own for one of our devices).
    pub user_id: String,
    /// The other device, once known.
    pub device_id: Option<String>,
    /// The room of an in-room flow.
    pub room_id: Option<String>,
    /// Whether we requested it.
    pub we_requested: bool,
    /// `requested`, `received`, `ready`, `sas_*`, `qr_*`, `done` or `cancelled`.
    pub state: String,
    /// The methods the other side offered.
    pub their_methods: Vec<String>,
    /// The seven emoji to compare, once the keys are exchanged.
    pub emoji: Option<Vec<SasEmoji>>,
    /// The three decimal numbers to compare, once the keys are exchanged.
    pub decimals: Option<[u16; 3]>,
    /// The cancel code, if cancelled.
    pub cancel_code: Option<String>,
    /// The cancel reason, if cancelled.
    pub cancel_reason: Option<String>,
    /// Whether we cancelled (else the other side did), if cancelled.
    pub cancelled_by_us: Option<bool>,
    /// What the flow verified, once done: `device USER DEVICE` and/or `master USER KEY`.
    pub verified: Vec<String>,
    /// Why we cancelled it, in detail (the event and field at fault), if we did because of
    /// what the other side sent.
    pub error: Option<String>,
}

/// Our flows, by flow id, and those whose result was applied.
#[derive(Default)]
pub(crate) struct Flows {
    flows: BTreeMap<String, Verification>,
    applied: BTreeSet<String>,
    /// The error that made us cancel a flow, by flow id.
    errors: BTreeMap<String, String>,
    /// The one device a to-device request of ours was sent to, by flow id (a request to a
    /// device named by the member, [`Client::request_device_verification`]).
    targets: BTreeMap<String, String>,
}

impl std::fmt::Debug for Flows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flows")
            .field("flows", &self.flows.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn info_of(flow: &Verification, error: Option<&String>) -> VerificationInfo {
    let cancel = flow.cancel_info();
    let mut verified = Vec::new();
    if let Some(keys) = flow.verified_keys() {
        if let Some(d) = &keys.device {
            verified.push(format!("device {} {}", d.user_id, d.device_id));
        }
        if let Some((user, key)) = &keys.master_key {
            verified.push(format!("master {user} {}", key.to_base64()));
        }
    }
    VerificationInfo {
        flow_id: flow.flow_id().as_str().to_owned(),
        user_id: flow.peer_user_id().to_owned(),
        device_id: flow.peer_device_id().map(str::to_owned),
        room_id: match flow.flow_id() {
            FlowId::InRoom { room_id, .. } => Some(room_id.clone()),
            FlowId::ToDevice { .. } => None,
        },
        we_requested: flow.we_requested(),
        state: flow.state_name().to_owned(),
        their_methods: flow
            .their_methods()
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect(),
        emoji: flow.emoji().map(|e| {
            e.iter()
                .map(|e| SasEmoji {
                    symbol: e.symbol.to_owned(),
                    description: e.description.to_owned(),
                })
                .collect()
        }),
        decimals: flow.decimals().map(|(a, b, c)| [a, b, c]),
        cancel_code: cancel.map(|c| c.code.as_str().to_owned()),
        cancel_reason: cancel.map(|c| c.reason.clone()),
        cancelled_by_us: cancel.map(|c| c.by_us),
        verified,
        error: error.cloned(),
    }
}

fn verification_error(e: VerificationError) -> Error {
    Error::Verification {
        code: e.code(),
        detail: e.to_string(),
    }
}

fn now() -> u64 {
    u64::try_from(now_ms()).unwrap_or_default()
}

/// The codes that mean the two sides do not see the same keys: an attack or a fault, never a
/// member's mere change of mind.
fn is_mismatch(code: &CancelCode) -> bool {
    matches!(
        code,
        CancelCode::KeyMismatch
            | CancelCode::MismatchedCommitment
            | CancelCode::MismatchedSas
            | CancelCode::UserMismatch
    )
}

/// The flow id a non-request event names: its `transaction_id`, or in a room the event its
/// `m.relates_to` references.
fn flow_key_of(event: &VerificationEvent) -> Option<String> {
    let key = match &event.room {
        None => event.content.get("transaction_id"),
        Some(_) => event
            .content
            .get("m.relates_to")
            .and_then(|r| r.get("event_id")),
    };
    key.and_then(Value::as_str).map(str::to_owned)
}

impl Client {
    /// Our side of a flow: our device key, and our master key if this device knows one
    /// (trusted if it holds the keys or verified our identity).
    fn verification_own(&self) -> Result<v::OwnKeys, Error> {
        let (user_id, device_id) = self.own_ids()?;
        let engine = self.engine.as_ref().ok_or(Error::NotLoggedIn)?;
        let malformed = || Error::Crypto(crate::crypto::CryptoError::Malformed { what: "our key" });
        let ed25519 = ed25519_from_base64(&engine.ed25519()).ok_or_else(malformed)?;
        let conn = self.store.conn();
        let ours = idb::load_own(conn, Slot::Current)?.filter(|o| o.state != Publication::Pending);
        let (master, trusted) = match ours {
            Some(o) => (Some(o.master), true),
            None => match idb::identity_of(conn, &user_id)? {
                Some(i) => (Some(i.master), i.state == IdentityState::Verified),
                None => (None, false),
            },
        };
        Ok(v::OwnKeys {
            user_id,
            device_id,
            ed25519,
            master_key: master.as_deref().and_then(ed25519_from_base64),
            master_key_trusted: trusted,
        })
    }

    /// The other side as we know it: their live devices' keys and their master key (the one
    /// the server shows now, if it changed).
    fn verification_peer(&self, user_id: &str) -> Result<PeerIdentity, Error> {
        let conn = self.store.conn();
        let (own_user, own_device) = self.own_ids()?;
        let devices = cdb::devices_of(conn, user_id)?
            .into_iter()
            .filter(|d| !d.deleted && d.state != DeviceState::Blocked)
            .filter(|d| !(d.user_id == own_user && d.device_id == own_device))
            .filter_map(|d| ed25519_from_base64(&d.ed25519).map(|k| (d.device_id, k)))
            .collect();
        let master = if user_id == own_user {
            idb::load_own(conn, Slot::Current)?
                .filter(|o| o.state != Publication::Pending)
                .map(|o| o.master)
                .or(idb::identity_of(conn, user_id)?.map(|i| i.master))
        } else {
            idb::identity_of(conn, user_id)?.map(|i| i.changed_master.unwrap_or(i.master))
        };
        Ok(PeerIdentity {
            user_id: user_id.to_owned(),
            devices,
            master_key: master.as_deref().and_then(ed25519_from_base64),
        })
    }

    /// Every flow this client knows (requests received, in progress, done, cancelled).
    pub fn verifications(&self) -> Vec<VerificationInfo> {
        self.verifications
            .flows
            .iter()
            .map(|(k, f)| info_of(f, self.verifications.errors.get(k)))
            .collect()
    }

    /// One flow, if known.
    pub fn verification(&self, flow_id: &str) -> Option<VerificationInfo> {
        self.verifications
            .flows
            .get(flow_id)
            .map(|f| info_of(f, self.verifications.errors.get(flow_id)))
    }

    /// Asks `user_id` to verify: in `room_id` (a room with them, as other clients expect for
    /// another user) or to-device (our own other devices, or a user we share no room with).
    /// Returns the flow id.
    pub async fn request_verification(
        &mut self,
        user_id: &str,
        room_id: Option<&str>,
    ) -> Result<String, Error> {
        self.request(user_id, room_id, None).await
    }

    /// Asks one device of `user_id` (ours, or another user's) to verify, to-device: the
    /// request goes to that device only, and only that device's key can complete the flow.
    /// The device must be one we know, live and not blocked (else `invalid_argument`).
    /// Returns the flow id.
    pub async fn request_device_verification(
        &mut self,
        user_id: &str,
        device_id: &str,
    ) -> Result<String, Error> {
        self.request(user_id, None, Some(device_id)).await
    }

    async fn request(
        &mut self,
        user_id: &str,
        room_id: Option<&str>,
        device_id: Option<&str>,
    ) -> Result<String, Error> {
        let (own_user, _) = self.own_ids()?;
        // Their devices and identity as the server shows them now.
        self.devices(user_id).await?;
        let own = self.verification_own()?;
        let mut peer = self.verification_peer(user_id)?;
        if let Some(device_id) = device_id {
            peer.devices.retain(|d, _| d == device_id);
            if peer.devices.is_empty() {
                return Err(Error::InvalidArgument {
                    what: format!("{user_id} has no device {device_id} to verify with"),
                });
            }
        }
        let now = now();
        let flow = match room_id {
            Some(room_id) => {
                let content = v::room_request_content(&own, user_id, &Method::ALL);
                let event_id = self.send_room_message(room_id, content.content).await?;
                FlowId::InRoom {
                    room_id: room_id.to_owned(),
                    request_event_id: event_id,
                }
            }
            None => FlowId::ToDevice {
                transaction_id: v::new_transaction_id().map_err(verification_error)?,
            },
        };
        let key = flow.as_str().to_owned();
        let machine = Verification::request(own, peer, flow, &Method::ALL, now);
        if !self.keep_flow(key.clone(), machine) {
            return Err(Error::Verification {
                code: "verification_too_many_flows",
                detail: "too many verification flows in progress".into(),
            });
        }
        if let Some(device_id) = device_id {
            self.verifications
                .targets
                .insert(key.clone(), device_id.to_owned());
        }
        tracing::info!(flow_id = %key, user_id, own = user_id == own_user, "verification requested");
        self.flush_flow(&key).await?;
        Ok(key)
    }

    fn keep_flow(&mut self, key: String, machine: Verification) -> bool {
        let flows = &mut self.verifications.flows;
        if flows.len() >= MAX_FLOWS {
            flows.retain(|_, f| !f.is_finished());
        }
        if flows.len() >= MAX_FLOWS {
            tracing::warn!("too many verification flows; request ignored");
            return false;
        }
        flows.insert(key, machine);
        true
    }

    fn flow_mut(&mut self, flow_id: &str) -> Result<&mut Verification, Error> {
        self.verifications
            .flows
            .get_mut(flow_id)
            .ok_or_else(|| Error::InvalidArgument {
                what: format!("no verification flow {flow_id}"),
            })
    }

    /// Runs a user action on a flow, sends what it queued, applies a result.
    async fn act(
        &mut self,
        flow_id: &str,
        action: impl FnOnce(&mut Verification, u64) -> Result<(), VerificationError>,
    ) -> Result<VerificationInfo, Error> {
        let result = action(self.flow_mut(flow_id)?, now());
        self.after_step(flow_id, result.as_ref().err()).await?;
        result.map_err(verification_error)?;
        self.verification(flow_id)
            .ok_or_else(|| Error::InvalidArgument {
                what: format!("no verification flow {flow_id}"),
            })
    }

    /// Accepts a request we received (all methods offered).
    pub async fn accept_verification(&mut self, flow_id: &str) -> Result<VerificationInfo, Error> {
        self.act(flow_id, |f, now| f.accept(&Method::ALL, now))
            .await
    }

    /// Starts SAS on a ready flow.
    pub async fn start_sas(&mut self, flow_id: &str) -> Result<VerificationInfo, Error> {
        self.act(flow_id, |f, now| f.start_sas(now)).await
    }

    /// Our member confirms the emoji (or numbers) match.
    pub async fn confirm_sas(&mut self, flow_id: &str) -> Result<VerificationInfo, Error> {
        self.act(flow_id, |f, now| f.confirm_sas(now)).await
    }

    /// Our member says the emoji do not match: cancelled, journaled.
    pub async fn sas_mismatch(&mut self, flow_id: &str) -> Result<VerificationInfo, Error> {
        self.act(flow_id, |f, now| f.sas_mismatch(now)).await
    }

    /// Cancels (or declines) a flow.
    pub async fn cancel_verification(&mut self, flow_id: &str) -> Result<VerificationInfo, Error> {
        self.act(flow_id, |f, now| f.cancel(now)).await
    }

    /// The QR code to show (bytes for the app to render) on a ready flow.
    pub async fn show_qr(&mut self, flow_id: &str) -> Result<Vec<u8>, Error> {
        let bytes = self
            .flow_mut(flow_id)?
            .show_qr(now())
            .map_err(verification_error)?;
        self.after_step(flow_id, None).await?;
        Ok(bytes)
    }

    /// The other side's QR code, as scanned.
    pub async fn scan_qr(
        &mut self,
        flow_id: &str,
        bytes: &[u8],
    ) -> Result<VerificationInfo, Error> {
        self.act(flow_id, |f, now| f.scan_qr(bytes, now)).await
    }

    /// Our member confirms the other side scanned our QR code.
    pub async fn confirm_qr_scanned(&mut self, flow_id: &str) -> Result<VerificationInfo, Error> {
        self.act(flow_id, |f, now| f.confirm_qr_scanned(now)).await
    }

    /// Drives the flows with the verification events a committed sync brought, times out the
    /// late ones; returns the flows that changed. A failure of one flow never stops the others
    /// or the sync.
    pub(crate) async fn handle_verification_events(
        &mut self,
        events: Vec<VerificationEvent>,
    ) -> Result<Vec<VerificationInfo>, Error> {
        let mut changed = BTreeSet::new();
        for event in events {
            if let Some(key) = self.receive_verification_event(event).await? {
                changed.insert(key);
            }
        }
        let now = now();
        let expired: Vec<String> = self
            .verifications
            .flows
            .iter_mut()
            .filter_map(|(k, f)| f.expire(now).then(|| k.clone()))
            .collect();
        for key in expired {
            self.after_step(&key, None).await?;
            changed.insert(key);
        }
        Ok(changed
            .iter()
            .filter_map(|k| self.verification(k))
            .collect())
    }

    async fn receive_verification_event(
        &mut self,
        event: VerificationEvent,
    ) -> Result<Option<String>, Error> {
        let now = now();
        let is_request =
            event.event_type == v::REQUEST_EVENT || event.event_type == v::ROOM_MESSAGE_EVENT;
        if is_request {
            let flow = match &event.room {
                None => match event.content.get("transaction_id").and_then(Value::as_str) {
                    Some(t) => FlowId::ToDevice {
                        transaction_id: t.to_owned(),
                    },
                    None => return Ok(None),
                },
                Some((room_id, event_id, _)) => FlowId::InRoom {
                    room_id: room_id.clone(),
                    request_event_id: event_id.clone(),
                },
            };
            let key = flow.as_str().to_owned();
            let (own_user, _) = self.own_ids()?;
            if self.verifications.flows.contains_key(&key)
                || event.sender == own_user && event.room.is_some()
            {
                // Ours (the echo of our own request), or seen already.
                return Ok(None);
            }
            // A request from a device we do not know yet (a new device of ours, a first
            // contact): ask the server first.
            let from = event.content.get("from_device").and_then(Value::as_str);
            let known = cdb::devices_of(self.store.conn(), &event.sender)?
                .iter()
                .any(|d| Some(d.device_id.as_str()) == from);
            if !known {
                self.devices(&event.sender).await?;
            }
            let own = self.verification_own()?;
            let peer = self.verification_peer(&event.sender)?;
            let ts = event.room.as_ref().map(|(_, _, ts)| *ts);
            match Verification::from_request(
                own,
                peer,
                flow,
                &event.sender,
                &event.content,
                ts,
                now,
            ) {
                Ok(machine) => {
                    tracing::info!(flow_id = %key, sender = %event.sender, "verification request received");
                    return Ok(self.keep_flow(key.clone(), machine).then_some(key));
                }
                Err(e) => {
                    tracing::info!(sender = %event.sender, code = e.code(), "verification request ignored");
                    return Ok(None);
                }
            }
        }
        let Some(key) = flow_key_of(&event) else {
            return Ok(None);
        };
        let Some(flow) = self.verifications.flows.get_mut(&key) else {
            tracing::debug!(flow_id = %key, "event of an unknown verification flow ignored");
            return Ok(None);
        };
        let result = flow.handle(&event.sender, &event.event_type, &event.content, now);
        if let Err(e) = &result {
            if e.cancels_flow() {
                tracing::warn!(flow_id = %key, error = %e, "verification cancelled");
                self.verifications.errors.insert(key.clone(), e.to_string());
            } else {
                tracing::info!(flow_id = %key, code = e.code(), "verification event refused");
            }
        }
        self.after_step(&key, result.as_ref().err()).await?;
        Ok(Some(key))
    }

    /// After a step of `flow_id`: sends what it queued, journals a mismatch, applies a result.
    /// Sending failures are logged: the flow then times out, the other side too.
    async fn after_step(
        &mut self,
        flow_id: &str,
        error: Option<&VerificationError>,
    ) -> Result<(), Error> {
        if let Err(e) = self.flush_flow(flow_id).await {
            if e.tls_rejection().is_some() || matches!(e, Error::Store(_)) {
                return Err(e);
            }
            tracing::warn!(flow_id, code = e.code(), "verification message not sent");
        }
        let Some(flow) = self.verifications.flows.get(flow_id) else {
            return Ok(());
        };
        if let Some(cancel) = flow.cancel_info()
            && is_mismatch(&cancel.code)
            && !self.verifications.applied.contains(flow_id)
        {
            let detail = format!(
                "verification {flow_id} with {} cancelled ({}, by {}): {}",
                flow.peer_user_id(),
                cancel.code.as_str(),
                if cancel.by_us { "us" } else { "them" },
                error.map_or_else(|| cancel.reason.clone(), ToString::to_string)
            );
            let user = flow.peer_user_id().to_owned();
            self.store.transaction(|tx| {
                record_security_event(tx, "verification_mismatch", None, Some(&user), &detail)
            })?;
            self.verifications.applied.insert(flow_id.to_owned());
        }
        let done = flow.verified_keys().cloned();
        if let Some(keys) = done
            && !self.verifications.applied.contains(flow_id)
        {
            self.verifications.applied.insert(flow_id.to_owned());
            if let Err(e) = self.apply_verified(&keys).await {
                // Nothing was marked: the verification can be redone.
                self.verifications.applied.remove(flow_id);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends what `flow_id` queued: to the peer's device (or devices, for our first request),
    /// or as events of its room.
    async fn flush_flow(&mut self, flow_id: &str) -> Result<(), Error> {
        let Some(flow) = self.verifications.flows.get_mut(flow_id) else {
            return Ok(());
        };
        let outgoing = flow.drain_outgoing();
        if outgoing.is_empty() {
            return Ok(());
        }
        let target = flow.flow_id().clone();
        let user = flow.peer_user_id().to_owned();
        let device = flow.peer_device_id().map(str::to_owned);
        for o in outgoing {
            match &target {
                FlowId::InRoom { room_id, .. } => {
                    self.send_room_event(room_id, o.event_type, o.content)
                        .await?;
                }
                FlowId::ToDevice { .. } => {
                    let devices = match (&device, self.verifications.targets.get(flow_id)) {
                        (Some(d), _) | (None, Some(d)) => vec![d.clone()],
                        (None, None) => self.request_targets(&user)?,
                    };
                    self.send_to_device(o.event_type, &user, &devices, &o.content)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Where a to-device request goes: our other devices (never this one), or every device
    /// of another user.
    fn request_targets(&self, user_id: &str) -> Result<Vec<String>, Error> {
        let (own_user, own_device) = self.own_ids()?;
        if user_id != own_user {
            return Ok(vec!["*".to_owned()]);
        }
        Ok(cdb::devices_of(self.store.conn(), user_id)?
            .into_iter()
            .filter(|d| !d.deleted && d.state != DeviceState::Blocked && d.device_id != own_device)
            .map(|d| d.device_id)
            .collect())
    }

    /// `PUT /sendToDevice/{type}/{txn}`, in clear (verification messages carry public keys,
    /// commitments and MACs; the flow authenticates them).
    async fn send_to_device(
        &self,
        event_type: &str,
        user_id: &str,
        devices: &[String],
        content: &Value,
    ) -> Result<(), Error> {
        if devices.is_empty() {
            return Err(Error::InvalidArgument {
                what: format!("{user_id} has no other device to verify with"),
            });
        }
        let txn = random_txn_id()?;
        let per_device: Map<String, Value> = devices
            .iter()
            .map(|d| (d.clone(), content.clone()))
            .collect();
        let body = json_body(&json!({ "messages": { user_id: per_device } }));
        let _: Value = self
            .authed(
                Http::PUT,
                "/sendToDevice",
                &["_matrix", "client", "v3", "sendToDevice", event_type, &txn],
                Some(body),
            )
            .await?;
        Ok(())
    }

    /// A flow verified `keys`: sign them with our cross-signing keys (uploaded first), then
    /// mark them locally.
    async fn apply_verified(&mut self, keys: &v::VerifiedKeys) -> Result<(), Error> {
        let (own_user, _) = self.own_ids()?;
        let own = idb::load_own(self.store.conn(), Slot::Current)?
            .filter(|o| o.state != Publication::Pending);
        if let Some((user, master)) = &keys.master_key {
            let master = master.to_base64();
            if *user != own_user
                && let Some(own) = &own
            {
                // Sign the master key object the server shows (it must be the verified key).
                let answer = self.query_keys(&BTreeSet::from([user.clone()])).await?;
                let served = cross_signing_key(&answer.value, "master_keys", user, "master")?;
                let Some((object, served_key, _)) = served.filter(|(_, k, _)| *k == master) else {
                    return Err(Error::Verification {
                        code: "verified_key_not_served",
                        detail: format!(
                            "the server no longer shows the master key {master} of {user}"
                        ),
                    });
                };
                let signing = CrossKeys::open(&own.sealed, &self.vault.pickle_key(), &own_user)?;
                let body = signing.sign_master_body(&own_user, user, &served_key, object)?;
                drop(signing);
                crate::fault::point("verification-done-before-upload");
                self.upload_signatures(&body).await?;
            }
            // Marked after the upload: pinned (again) to the verified key.
            let record = IdentityRecord {
                user_id: user.clone(),
                master: master.clone(),
                self_signing: None,
                state: IdentityState::Verified,
                changed_master: None,
            };
            self.store.transaction(|tx| {
                let previous = idb::identity_of(tx, user)?;
                let self_signing = previous
                    .as_ref()
                    .filter(|p| p.master == master)
                    .and_then(|p| p.self_signing.clone());
                idb::save_identity(
                    tx,
                    &IdentityRecord {
                        self_signing,
                        ..record.clone()
                    },
                )?;
                if previous.is_some_and(|p| p.master != master) {
                    record_security_event(
                        tx,
                        "identity_reverified",
                        None,
                        Some(user),
                        &format!("the new master key {master} was verified interactively"),
                    )?;
                }
                Ok(())
            })?;
            // The self-signing key of a re-pinned identity comes with the next key query.
            crate::store::crypto::mark_dirty(self.store.conn(), user)?;
            tracing::info!(user_id = %user, "identity verified");
        }
        if let Some(device) = &keys.device
            && device.user_id == own_user
            && let Some(own) = &own
        {
            // One of our own devices: our self-signing key signs its keys as the server shows
            // them (the same key that was verified).
            let answer = self.query_keys(&BTreeSet::from([own_user.clone()])).await?;
            let object = answer
                .value
                .get("device_keys")
                .and_then(|d| d.get(&own_user))
                .and_then(|d| d.get(&device.device_id))
                .filter(|o| {
                    o.pointer(&format!("/keys/ed25519:{}", device.device_id))
                        .and_then(Value::as_str)
                        == Some(device.ed25519.to_base64().as_str())
                })
                .cloned()
                .ok_or_else(|| Error::Verification {
                    code: "verified_key_not_served",
                    detail: format!(
                        "the server no longer shows device {} as verified",
                        device.device_id
                    ),
                })?;
            let signing = CrossKeys::open(&own.sealed, &self.vault.pickle_key(), &own_user)?;
            let body = signing.sign_device_body(&own_user, &device.device_id, &object)?;
            drop(signing);
            crate::fault::point("verification-done-before-upload");
            self.upload_signatures(&body).await?;
            crate::store::crypto::mark_dirty(self.store.conn(), &own_user)?;
            tracing::info!(device_id = %device.device_id, "our device verified and signed");
        }
        Ok(())
    }

    /// `POST /keys/signatures/upload`; a signature the server refuses is an error.
    pub(crate) async fn upload_signatures(&self, body: &Value) -> Result<(), Error> {
        let answer: Value = self
            .authed(
                Http::POST,
                "/keys/signatures/upload",
                &["_matrix", "client", "v3", "keys", "signatures", "upload"],
                Some(json_body(body)),
            )
            .await?;
        if let Some(errcode) = answer
            .get("failures")
            .and_then(Value::as_object)
            .and_then(|f| {
                f.values()
                    .filter_map(Value::as_object)
                    .flat_map(|m| m.values())
                    .next()
            })
            .map(|f| {
                f.get("errcode")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned()
            })
        {
            return Err(Error::Api(ApiError::Matrix {
                status: 200,
                errcode,
                message: "the server refused a cross-signing signature".into(),
            }));
        }
        Ok(())
    }
}
