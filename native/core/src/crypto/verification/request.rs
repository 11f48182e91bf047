//! One verification flow (spec § "Key verification framework"): request → ready → a method
//! (SAS, or QR + reciprocate) → done, or a cancel at any point.
//!
//! ```text
//! Requested ──ready──▶ Ready ◀──accept()── Received
//!                        │
//!      start_sas() / their m.sas.v1 start ──▶ Sas ──(their done)──▶ Done
//!      show_qr() + their reciprocate ──▶ QrScanned ──confirm_qr_scanned()──▶ QrConfirmed ──(their done)──▶ Done
//!      scan_qr() ──▶ QrReciprocated ──(their done, we answer done)──▶ Done
//! any state ──cancel / fault / timeout──▶ Cancelled
//! ```
//!
//! Start conflict (both sides send a start): if both name the same method, the start of the
//! side with the lexicographically smaller user id (device id if the users are the same) wins
//! and the other is ignored; if the methods differ, the flow is cancelled with
//! `m.unexpected_message` (spec, and matrix-sdk's `receive_start`).

use std::fmt;

use serde_json::{Map, Value, json};

use super::emoji::{Emoji, emoji};
use super::qr::{QrMode, QrPayload};
use super::sas::{Ctx, SasFlow, done_content};
use super::{
    ACCEPT_EVENT, CANCEL_EVENT, CancelCode, CancelInfo, DONE_EVENT, FLOW_TIMEOUT_MS, FlowId,
    KEY_EVENT, MAC_EVENT, MAX_REQUEST_AGE_MS, MAX_REQUEST_FUTURE_MS, Method, Outgoing, OwnKeys,
    PeerIdentity, READY_EVENT, REQUEST_EVENT, START_EVENT, VerificationError, VerifiedDevice,
    VerifiedKeys, b64_decode, b64_encode, cancel_content, str_field, str_list,
};

/// A QR code we show, and what the peer's scan of it (plus their done) verifies.
struct ShownQr {
    payload: QrPayload,
    verifies: VerifiedKeys,
}

enum Phase {
    /// We sent the request; waiting for a ready.
    Requested,
    /// We received the request; waiting for our user to accept.
    Received,
    /// Both ready; either side may start a method.
    Ready,
    /// A SAS exchange.
    Sas(Box<SasFlow>),
    /// We showed a QR code and the peer's reciprocate carried its secret: waiting for our user
    /// to confirm that the peer scanned it.
    QrScanned { verified: VerifiedKeys },
    /// Our user confirmed the scan, our done is sent: waiting for theirs.
    QrConfirmed { verified: VerifiedKeys },
    /// We scanned the peer's code and sent the reciprocate: waiting for their done.
    QrReciprocated { verified: VerifiedKeys },
    /// Verified.
    Done(VerifiedKeys),
    /// Cancelled.
    Cancelled(CancelInfo),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Received => "received",
            Self::Ready => "ready",
            Self::Sas(sas) => sas.state_name(),
            Self::QrScanned { .. } => "qr_scanned",
            Self::QrConfirmed { .. } => "qr_confirmed",
            Self::QrReciprocated { .. } => "qr_reciprocated",
            Self::Done(_) => "done",
            Self::Cancelled(_) => "cancelled",
        }
    }
}

/// One key verification flow with one peer device. See the module docs.
pub(crate) struct Verification {
    own: OwnKeys,
    peer: PeerIdentity,
    flow: FlowId,
    we_requested: bool,
    our_methods: Vec<Method>,
    their_methods: Vec<Method>,
    peer_device: Option<String>,
    created_ms: u64,
    shown_qr: Option<ShownQr>,
    phase: Phase,
    outgoing: Vec<Outgoing>,
}

impl fmt::Debug for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            own,
            peer,
            flow,
            we_requested,
            our_methods,
            their_methods,
            peer_device,
            created_ms,
            shown_qr,
            phase,
            outgoing,
        } = self;
        f.debug_struct("Verification")
            .field("own", own)
            .field("peer", peer)
            .field("flow", flow)
            .field("we_requested", we_requested)
            .field("our_methods", our_methods)
            .field("their_methods", their_methods)
            .field("peer_device", peer_device)
            .field("created_ms", created_ms)
            .field("showing_qr", &shown_qr.is_some())
            .field("phase", &phase.name())
            .field("outgoing", outgoing)
            .finish()
    }
}

fn methods_of(content: &Value, event_type: &str) -> Result<Vec<Method>, VerificationError> {
    let names = str_list(content, "methods").ok_or(VerificationError::InvalidMessage {
        event_type: event_type.to_owned(),
        field: "methods",
    })?;
    let mut methods: Vec<Method> = names.iter().filter_map(|n| Method::from_wire(n)).collect();
    methods.sort_unstable();
    methods.dedup();
    Ok(methods)
}

fn from_device(content: &Value, event_type: &str) -> Result<String, VerificationError> {
    str_field(content, "from_device")
        .map(str::to_owned)
        .ok_or(VerificationError::InvalidMessage {
            event_type: event_type.to_owned(),
            field: "from_device",
        })
}

impl Verification {
    fn new(
        own: OwnKeys,
        peer: PeerIdentity,
        flow: FlowId,
        we_requested: bool,
        our_methods: &[Method],
        now_ms: u64,
        phase: Phase,
    ) -> Self {
        let mut our_methods = our_methods.to_vec();
        our_methods.sort_unstable();
        our_methods.dedup();
        Self {
            own,
            peer,
            flow,
            we_requested,
            our_methods,
            their_methods: Vec::new(),
            peer_device: None,
            created_ms: now_ms,
            shown_qr: None,
            phase,
            outgoing: Vec::new(),
        }
    }

    /// A flow we request. To-device: queues the `m.key.verification.request` (send it to the
    /// peer's devices; after the first ready, send [`super::cancel_content`] with
    /// `m.accepted` to the others). In a room: the request was sent beforehand with
    /// [`super::room_request_content`] and `flow` names its event id; nothing is queued.
    pub(crate) fn request(
        own: OwnKeys,
        peer: PeerIdentity,
        flow: FlowId,
        methods: &[Method],
        now_ms: u64,
    ) -> Self {
        let mut this = Self::new(own, peer, flow, true, methods, now_ms, Phase::Requested);
        if let FlowId::ToDevice { .. } = this.flow {
            let mut content = Map::new();
            content.insert("from_device".into(), json!(this.own.device_id));
            content.insert(
                "methods".into(),
                json!(
                    this.our_methods
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                ),
            );
            content.insert("timestamp".into(), json!(now_ms));
            let content = this.flow.stamp(content);
            this.outgoing.push(Outgoing {
                event_type: REQUEST_EVENT,
                content,
            });
        }
        tracing::debug!(flow_id = this.flow.as_str(), "verification requested");
        this
    }

    /// A flow the peer requested: `content` is their `m.key.verification.request` (to-device)
    /// or their `m.room.message` request (in a room, `origin_server_ts` is the event's).
    /// Nothing is queued until [`Self::accept`] (or [`Self::cancel`] to decline).
    ///
    /// # Errors
    ///
    /// [`VerificationError::StaleRequest`] if the timestamp is more than 10 minutes old or 5
    /// minutes ahead (the request must be ignored); [`VerificationError::UserMismatch`],
    /// [`VerificationError::NotForUs`], [`VerificationError::WrongFlow`],
    /// [`VerificationError::InvalidMessage`] for a request that is not a valid one for us.
    pub(crate) fn from_request(
        own: OwnKeys,
        peer: PeerIdentity,
        flow: FlowId,
        sender: &str,
        content: &Value,
        origin_server_ts: Option<u64>,
        now_ms: u64,
    ) -> Result<Self, VerificationError> {
        let invalid = |event_type: &str, field| VerificationError::InvalidMessage {
            event_type: event_type.to_owned(),
            field,
        };
        if sender != peer.user_id {
            return Err(VerificationError::UserMismatch {
                expected: peer.user_id.clone(),
                found: sender.to_owned(),
            });
        }
        let (event_type, timestamp) = match &flow {
            FlowId::ToDevice { .. } => {
                flow.check(content)?;
                let ts = content.get("timestamp").and_then(Value::as_u64);
                (
                    REQUEST_EVENT,
                    ts.ok_or(invalid(REQUEST_EVENT, "timestamp"))?,
                )
            }
            FlowId::InRoom { .. } => {
                let event_type = super::ROOM_MESSAGE_EVENT;
                if str_field(content, "msgtype") != Some(REQUEST_EVENT) {
                    return Err(invalid(event_type, "msgtype"));
                }
                let to = str_field(content, "to").ok_or(invalid(event_type, "to"))?;
                if to != own.user_id {
                    return Err(VerificationError::NotForUs { to: to.to_owned() });
                }
                (
                    event_type,
                    origin_server_ts.ok_or(invalid(event_type, "origin_server_ts"))?,
                )
            }
        };
        if now_ms.saturating_sub(timestamp) > MAX_REQUEST_AGE_MS
            || timestamp.saturating_sub(now_ms) > MAX_REQUEST_FUTURE_MS
        {
            return Err(VerificationError::StaleRequest {
                timestamp_ms: timestamp,
                now_ms,
            });
        }
        let device = from_device(content, event_type)?;
        if sender == own.user_id && device == own.device_id {
            return Err(VerificationError::DeviceMismatch {
                expected: "another device".into(),
                found: device,
            });
        }
        let their_methods = methods_of(content, event_type)?;
        let mut this = Self::new(own, peer, flow, false, &[], now_ms, Phase::Received);
        this.peer_device = Some(device);
        this.their_methods = their_methods;
        tracing::debug!(
            flow_id = this.flow.as_str(),
            "verification request received"
        );
        Ok(this)
    }

    // ---- accessors -----------------------------------------------------------------------

    /// The flow id.
    pub(crate) fn flow_id(&self) -> &FlowId {
        &self.flow
    }

    /// Whether we sent the request.
    pub(crate) fn we_requested(&self) -> bool {
        self.we_requested
    }

    /// The peer device, once known (from their request, or their ready).
    pub(crate) fn peer_device_id(&self) -> Option<&str> {
        self.peer_device.as_deref()
    }

    /// The methods the peer advertised (those we know).
    pub(crate) fn their_methods(&self) -> &[Method] {
        &self.their_methods
    }

    /// The state's name: `requested`, `received`, `ready`, `sas_*`, `qr_*`, `done`,
    /// `cancelled`.
    pub(crate) fn state_name(&self) -> &'static str {
        self.phase.name()
    }

    /// The verified keys, once the flow is done (our confirmation, the peer's proof and both
    /// done messages).
    pub(crate) fn verified_keys(&self) -> Option<&VerifiedKeys> {
        match &self.phase {
            Phase::Done(keys) => Some(keys),
            _ => None,
        }
    }

    /// How the flow was cancelled, if it was.
    pub(crate) fn cancel_info(&self) -> Option<&CancelInfo> {
        match &self.phase {
            Phase::Cancelled(info) => Some(info),
            _ => None,
        }
    }

    /// Whether the flow ended (done or cancelled).
    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Done(_) | Phase::Cancelled(_))
    }

    /// The contents queued to send, without taking them.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> &[Outgoing] {
        &self.outgoing
    }

    /// The peer user.
    pub(crate) fn peer_user_id(&self) -> &str {
        &self.peer.user_id
    }

    /// The peer identity, to change it under a test.
    #[cfg(test)]
    pub(crate) fn peer_mut(&mut self) -> &mut PeerIdentity {
        &mut self.peer
    }

    /// The SAS HKDF info string, once the SAS keys are exchanged (tests of its order).
    #[cfg(test)]
    pub(crate) fn sas_info_string(&self) -> Option<String> {
        match &self.phase {
            Phase::Sas(sas) => sas.info(self.ctx()),
            _ => None,
        }
    }

    /// Pretends the peer spoke at `now_ms` (tests of the SAS timers).
    #[cfg(test)]
    pub(crate) fn touch_sas(&mut self, now_ms: u64) {
        if let Phase::Sas(sas) = &mut self.phase {
            sas.touch(now_ms);
        }
    }

    /// The contents to send, in order; the queue is emptied.
    pub(crate) fn drain_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outgoing)
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            own: &self.own,
            peer: &self.peer,
            flow: &self.flow,
        }
    }

    /// The 7 SAS emoji indices (0..=63), once the SAS keys are exchanged.
    pub(crate) fn emoji_indices(&self) -> Option<[u8; 7]> {
        match &self.phase {
            Phase::Sas(sas) => sas.emoji_indices(self.ctx()),
            _ => None,
        }
    }

    /// The 7 SAS emoji, once the SAS keys are exchanged.
    pub(crate) fn emoji(&self) -> Option<[Emoji; 7]> {
        let indices = self.emoji_indices()?;
        let mut out = [super::emoji::EMOJI[0]; 7];
        for (slot, index) in out.iter_mut().zip(indices) {
            *slot = emoji(index)?;
        }
        Some(out)
    }

    /// The SAS as three numbers (1000..=9191), once the SAS keys are exchanged.
    pub(crate) fn decimals(&self) -> Option<(u16, u16, u16)> {
        match &self.phase {
            Phase::Sas(sas) => sas.decimals(self.ctx()),
            _ => None,
        }
    }

    // ---- transitions ---------------------------------------------------------------------

    fn finished(&self) -> Result<(), VerificationError> {
        match self.phase {
            Phase::Done(_) => Err(VerificationError::Finished { state: "done" }),
            Phase::Cancelled(_) => Err(VerificationError::Finished { state: "cancelled" }),
            _ => Ok(()),
        }
    }

    fn cancel_with(&mut self, code: CancelCode, by_us: bool, reason: Option<String>) {
        tracing::info!(
            flow_id = self.flow.as_str(),
            code = code.as_str(),
            by_us,
            state = self.phase.name(),
            "verification cancelled"
        );
        if by_us {
            self.outgoing.push(cancel_content(&self.flow, &code));
        }
        let reason = reason.unwrap_or_else(|| code.reason().to_owned());
        self.shown_qr = None;
        self.phase = Phase::Cancelled(CancelInfo {
            code,
            reason,
            by_us,
        });
    }

    /// Cancels on a failure that cancels; passes the failure on.
    fn fail<T>(&mut self, result: Result<T, VerificationError>) -> Result<T, VerificationError> {
        if let Err(e) = &result
            && e.cancels_flow()
        {
            tracing::warn!(
                flow_id = self.flow.as_str(),
                error = e.code(),
                "verification failed"
            );
            self.cancel_with(e.cancel_code(), true, None);
        }
        result
    }

    /// Times the flow out if due: 10 minutes after the request, or, during SAS, 5 minutes
    /// after its start or 1 minute after the peer's last event. Queues the `m.timeout` cancel
    /// and returns `true` if it did.
    pub(crate) fn expire(&mut self, now_ms: u64) -> bool {
        if self.is_finished() {
            return false;
        }
        let sas_late = matches!(&self.phase, Phase::Sas(sas) if sas.timed_out(now_ms));
        if now_ms.saturating_sub(self.created_ms) > FLOW_TIMEOUT_MS || sas_late {
            self.cancel_with(CancelCode::Timeout, true, None);
            return true;
        }
        false
    }

    fn check_live(&mut self, now_ms: u64) -> Result<(), VerificationError> {
        self.finished()?;
        if self.expire(now_ms) {
            return Err(VerificationError::Timeout);
        }
        Ok(())
    }

    /// Our user accepts the peer's request: queues the ready with `methods`.
    ///
    /// # Errors
    ///
    /// [`VerificationError::InvalidState`] unless the request was received and not yet
    /// answered; [`VerificationError::Timeout`] if it expired.
    pub(crate) fn accept(
        &mut self,
        methods: &[Method],
        now_ms: u64,
    ) -> Result<(), VerificationError> {
        self.check_live(now_ms)?;
        if !matches!(self.phase, Phase::Received) {
            return Err(VerificationError::InvalidState {
                action: "accept the request",
                state: self.phase.name(),
            });
        }
        let mut ours = methods.to_vec();
        ours.sort_unstable();
        ours.dedup();
        self.our_methods = ours;
        let mut content = Map::new();
        content.insert("from_device".into(), json!(self.own.device_id));
        content.insert(
            "methods".into(),
            json!(
                self.our_methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
            ),
        );
        let content = self.flow.stamp(content);
        self.outgoing.push(Outgoing {
            event_type: READY_EVENT,
            content,
        });
        self.phase = Phase::Ready;
        Ok(())
    }

    /// Our user cancels (or declines the request): queues the `m.user` cancel.
    ///
    /// # Errors
    ///
    /// [`VerificationError::Finished`] if the flow already ended.
    pub(crate) fn cancel(&mut self, now_ms: u64) -> Result<(), VerificationError> {
        self.check_live(now_ms)?;
        self.cancel_with(CancelCode::User, true, None);
        Ok(())
    }

    fn both_support(&self, ours: Method, theirs: Method) -> bool {
        self.our_methods.contains(&ours) && self.their_methods.contains(&theirs)
    }

    fn ready_peer_device(&self, action: &'static str) -> Result<String, VerificationError> {
        match (&self.phase, &self.peer_device) {
            (Phase::Ready, Some(device)) => Ok(device.clone()),
            _ => Err(VerificationError::InvalidState {
                action,
                state: self.phase.name(),
            }),
        }
    }

    /// Starts SAS as initiator: queues the `m.sas.v1` start.
    ///
    /// # Errors
    ///
    /// [`VerificationError::InvalidState`] unless ready;
    /// [`VerificationError::MethodNotAgreed`] unless both sides advertised `m.sas.v1`.
    pub(crate) fn start_sas(&mut self, now_ms: u64) -> Result<(), VerificationError> {
        self.check_live(now_ms)?;
        let device = self.ready_peer_device("start SAS")?;
        if !self.both_support(Method::SasV1, Method::SasV1) {
            return Err(VerificationError::MethodNotAgreed {
                method: Method::SasV1.as_str(),
            });
        }
        let (sas, start) = SasFlow::start(self.ctx(), &device, now_ms);
        self.outgoing.push(start);
        self.shown_qr = None;
        self.phase = Phase::Sas(Box::new(sas));
        Ok(())
    }

    /// Our user says the SAS matches: queues our MAC (and our done if their MAC already
    /// verified).
    ///
    /// # Errors
    ///
    /// [`VerificationError::InvalidState`] before the SAS can be shown or on a second call.
    pub(crate) fn confirm_sas(&mut self, now_ms: u64) -> Result<(), VerificationError> {
        self.check_live(now_ms)?;
        let Phase::Sas(sas) = &mut self.phase else {
            return Err(VerificationError::InvalidState {
                action: "confirm the SAS",
                state: self.phase.name(),
            });
        };
        let ctx = Ctx {
            own: &self.own,
            peer: &self.peer,
            flow: &self.flow,
        };
        sas.confirm(ctx, &mut self.outgoing)
    }

    /// Our user says the SAS does not match: cancels with `m.mismatched_sas`.
    ///
    /// # Errors
    ///
    /// [`VerificationError::InvalidState`] outside a SAS.
    pub(crate) fn sas_mismatch(&mut self, now_ms: u64) -> Result<(), VerificationError> {
        self.check_live(now_ms)?;
        if !matches!(self.phase, Phase::Sas(_)) {
            return Err(VerificationError::InvalidState {
                action: "reject the SAS",
                state: self.phase.name(),
            });
        }
        self.cancel_with(CancelCode::MismatchedSas, true, None);
        Ok(())
    }

    /// The QR code to show (mode chosen from who we verify and whether this device trusts our
    /// master key); the same bytes on every call while ready.
    ///
    /// # Errors
    ///
    /// [`VerificationError::InvalidState`] unless ready;
    /// [`VerificationError::MethodNotAgreed`] unless we show and they scan;
    /// [`VerificationError::MissingKey`] if a key the mode needs is unknown.
    pub(crate) fn show_qr(&mut self, now_ms: u64) -> Result<Vec<u8>, VerificationError> {
        self.check_live(now_ms)?;
        let device = self.ready_peer_device("show a QR code")?;
        if !self.both_support(Method::QrShowV1, Method::QrScanV1) {
            return Err(VerificationError::MethodNotAgreed {
                method: Method::QrShowV1.as_str(),
            });
        }
        if let Some(shown) = &self.shown_qr {
            return Ok(shown.payload.to_bytes()?.to_vec());
        }
        let missing = |what| VerificationError::MissingKey { what };
        let own_master = self.own.master_key.ok_or(missing("our master key"))?;
        let peer_user = self.peer.user_id.clone();
        let (mode, key1, key2, verifies) = if self.peer.user_id != self.own.user_id {
            let theirs = self.peer.master_key.ok_or(missing("their master key"))?;
            let verifies = VerifiedKeys {
                device: None,
                master_key: Some((peer_user, theirs)),
            };
            (QrMode::OtherUser, own_master, theirs, verifies)
        } else if self.own.master_key_trusted {
            let theirs = *self
                .peer
                .devices
                .get(&device)
                .ok_or(missing("the other device's key"))?;
            let verifies = VerifiedKeys {
                device: Some(VerifiedDevice {
                    user_id: peer_user,
                    device_id: device,
                    ed25519: theirs,
                }),
                master_key: None,
            };
            (QrMode::SelfTrusted, own_master, theirs, verifies)
        } else {
            let verifies = VerifiedKeys {
                device: None,
                master_key: Some((peer_user, own_master)),
            };
            (
                QrMode::SelfUntrusted,
                self.own.ed25519,
                own_master,
                verifies,
            )
        };
        let payload =
            QrPayload::generate(mode, self.flow.as_str(), *key1.as_bytes(), *key2.as_bytes())?;
        let bytes = payload.to_bytes()?.to_vec();
        self.shown_qr = Some(ShownQr { payload, verifies });
        Ok(bytes)
    }

    /// Our user scanned the peer's QR code: checks it and queues the reciprocate start.
    ///
    /// # Errors
    ///
    /// [`VerificationError::QrPayload`] (not a verification code) or
    /// [`VerificationError::WrongFlow`] (another flow's code): the flow is unchanged;
    /// [`VerificationError::QrKeyMismatch`]: a key differs from ours, the flow is cancelled
    /// with `m.key_mismatch`; [`VerificationError::MissingKey`] if we lack a key to compare.
    pub(crate) fn scan_qr(&mut self, bytes: &[u8], now_ms: u64) -> Result<(), VerificationError> {
        self.check_live(now_ms)?;
        let device = self.ready_peer_device("scan a QR code")?;
        if !self.both_support(Method::QrScanV1, Method::QrShowV1) {
            return Err(VerificationError::MethodNotAgreed {
                method: Method::QrScanV1.as_str(),
            });
        }
        let payload = QrPayload::parse(bytes)?;
        if payload.flow_id != self.flow.as_str() {
            return Err(VerificationError::WrongFlow {
                expected: self.flow.as_str().to_owned(),
                found: Some(payload.flow_id.clone()),
            });
        }
        let result = self.check_scanned(&payload, &device);
        let verified = self.fail(result)?;
        let mut content = Map::new();
        content.insert("from_device".into(), json!(self.own.device_id));
        content.insert("method".into(), json!(Method::ReciprocateV1.as_str()));
        content.insert("secret".into(), json!(b64_encode(&payload.secret)));
        let content = self.flow.stamp(content);
        self.outgoing.push(Outgoing {
            event_type: START_EVENT,
            content,
        });
        self.phase = Phase::QrReciprocated { verified };
        Ok(())
    }

    /// The keys a scanned payload proves, after comparing them with ours.
    fn check_scanned(
        &self,
        payload: &QrPayload,
        device: &str,
    ) -> Result<VerifiedKeys, VerificationError> {
        let missing = |what| VerificationError::MissingKey { what };
        let mismatch = |which| VerificationError::QrKeyMismatch { which };
        let same_user = self.peer.user_id == self.own.user_id;
        let own_master = self.own.master_key.ok_or(missing("our master key"))?;
        match payload.mode {
            QrMode::OtherUser => {
                if same_user {
                    return Err(mismatch("mode (other user, in a self-verification)"));
                }
                let theirs = self.peer.master_key.ok_or(missing("their master key"))?;
                if payload.key1 != *theirs.as_bytes() {
                    return Err(mismatch("their master key"));
                }
                if payload.key2 != *own_master.as_bytes() {
                    return Err(mismatch("our master key"));
                }
                Ok(VerifiedKeys {
                    device: None,
                    master_key: Some((self.peer.user_id.clone(), theirs)),
                })
            }
            QrMode::SelfTrusted => {
                if !same_user {
                    return Err(mismatch("mode (self-verification, with another user)"));
                }
                if payload.key1 != *own_master.as_bytes() {
                    return Err(mismatch("the master key"));
                }
                if payload.key2 != *self.own.ed25519.as_bytes() {
                    return Err(mismatch("our device key"));
                }
                Ok(VerifiedKeys {
                    device: None,
                    master_key: Some((self.own.user_id.clone(), own_master)),
                })
            }
            QrMode::SelfUntrusted => {
                if !same_user {
                    return Err(mismatch("mode (self-verification, with another user)"));
                }
                if !self.own.master_key_trusted {
                    return Err(missing("a master key this device trusts"));
                }
                let theirs = *self
                    .peer
                    .devices
                    .get(device)
                    .ok_or(missing("the other device's key"))?;
                if payload.key1 != *theirs.as_bytes() {
                    return Err(mismatch("the other device's key"));
                }
                if payload.key2 != *own_master.as_bytes() {
                    return Err(mismatch("the master key"));
                }
                Ok(VerifiedKeys {
                    device: Some(VerifiedDevice {
                        user_id: self.peer.user_id.clone(),
                        device_id: device.to_owned(),
                        ed25519: theirs,
                    }),
                    master_key: None,
                })
            }
        }
    }

    /// Our user confirms that the peer scanned our QR code (the peer's device said so):
    /// queues our done.
    ///
    /// # Errors
    ///
    /// [`VerificationError::InvalidState`] unless a valid reciprocate arrived.
    pub(crate) fn confirm_qr_scanned(&mut self, now_ms: u64) -> Result<(), VerificationError> {
        self.check_live(now_ms)?;
        let Phase::QrScanned { verified } = &self.phase else {
            return Err(VerificationError::InvalidState {
                action: "confirm the QR scan",
                state: self.phase.name(),
            });
        };
        let verified = verified.clone();
        self.outgoing.push(done_content(&self.flow));
        self.phase = Phase::QrConfirmed { verified };
        Ok(())
    }

    // ---- incoming ------------------------------------------------------------------------

    /// Handles an event of this flow from `sender`: `event_type` is the
    /// `m.key.verification.*` type, `content` its content (decrypted, with `m.relates_to` for
    /// in-room events).
    ///
    /// # Errors
    ///
    /// See [`VerificationError`]: failures for which [`VerificationError::cancels_flow`] is
    /// true have cancelled the flow and queued the cancel; the others left it unchanged.
    pub(crate) fn handle(
        &mut self,
        sender: &str,
        event_type: &str,
        content: &Value,
        now_ms: u64,
    ) -> Result<(), VerificationError> {
        self.finished()?;
        self.flow.check(content)?;
        if sender == self.own.user_id && sender != self.peer.user_id {
            self.own_echo(event_type, content);
            return Ok(());
        }
        if sender != self.peer.user_id {
            return Err(VerificationError::UserMismatch {
                expected: self.peer.user_id.clone(),
                found: sender.to_owned(),
            });
        }
        if let (Some(bound), Some(found)) = (&self.peer_device, str_field(content, "from_device"))
            && bound != found
        {
            return Err(VerificationError::DeviceMismatch {
                expected: bound.clone(),
                found: found.to_owned(),
            });
        }
        if self.expire(now_ms) {
            return Err(VerificationError::Timeout);
        }
        let result = self.dispatch(event_type, content, now_ms);
        self.fail(result)
    }

    /// An in-room event from our own user: our echo, or another of our devices answering a
    /// request addressed to us (then this device steps aside without sending anything).
    fn own_echo(&mut self, event_type: &str, content: &Value) {
        let other_device =
            str_field(content, "from_device").is_some_and(|d| d != self.own.device_id);
        match (&self.phase, event_type) {
            (Phase::Received, READY_EVENT) if other_device => {
                self.cancel_with(CancelCode::Accepted, false, None);
            }
            (Phase::Received, CANCEL_EVENT) => {
                let code = CancelCode::from_wire(str_field(content, "code").unwrap_or_default());
                self.cancel_with(code, false, None);
            }
            _ => {}
        }
    }

    fn dispatch(
        &mut self,
        event_type: &str,
        content: &Value,
        now_ms: u64,
    ) -> Result<(), VerificationError> {
        let unexpected = |state| VerificationError::UnexpectedMessage {
            event_type: event_type.to_owned(),
            state,
        };
        match event_type {
            CANCEL_EVENT => {
                let code = CancelCode::from_wire(str_field(content, "code").unwrap_or_default());
                let reason = str_field(content, "reason").unwrap_or_default().to_owned();
                self.cancel_with(code, false, Some(reason));
                Ok(())
            }
            READY_EVENT => {
                if !matches!(self.phase, Phase::Requested) {
                    return Err(unexpected(self.phase.name()));
                }
                let device = from_device(content, READY_EVENT)?;
                if self.peer.user_id == self.own.user_id && device == self.own.device_id {
                    return Err(VerificationError::DeviceMismatch {
                        expected: "another device".into(),
                        found: device,
                    });
                }
                self.their_methods = methods_of(content, READY_EVENT)?;
                tracing::debug!(flow_id = self.flow.as_str(), "verification ready");
                self.peer_device = Some(device);
                self.phase = Phase::Ready;
                Ok(())
            }
            START_EVENT => self.receive_start(content, now_ms),
            ACCEPT_EVENT | KEY_EVENT | MAC_EVENT | DONE_EVENT => {
                let ctx = Ctx {
                    own: &self.own,
                    peer: &self.peer,
                    flow: &self.flow,
                };
                match &mut self.phase {
                    Phase::Sas(sas) => {
                        if let Some(verified) =
                            sas.handle(ctx, event_type, content, now_ms, &mut self.outgoing)?
                        {
                            self.finish(verified);
                        }
                        Ok(())
                    }
                    Phase::QrConfirmed { verified } if event_type == DONE_EVENT => {
                        let verified = verified.clone();
                        self.finish(verified);
                        Ok(())
                    }
                    Phase::QrReciprocated { verified } if event_type == DONE_EVENT => {
                        let verified = verified.clone();
                        self.outgoing.push(done_content(&self.flow));
                        self.finish(verified);
                        Ok(())
                    }
                    phase => Err(unexpected(phase.name())),
                }
            }
            _ => Err(unexpected(self.phase.name())),
        }
    }

    fn finish(&mut self, verified: VerifiedKeys) {
        tracing::info!(
            flow_id = self.flow.as_str(),
            device = verified.device.is_some(),
            master_key = verified.master_key.is_some(),
            "verification done"
        );
        self.shown_qr = None;
        self.phase = Phase::Done(verified);
    }

    /// Whether our start wins a start conflict: ours is the smaller (user id, device id).
    fn we_win_conflict(&self, peer_device: &str) -> bool {
        (self.own.user_id.as_str(), self.own.device_id.as_str())
            < (self.peer.user_id.as_str(), peer_device)
    }

    fn receive_start(&mut self, content: &Value, now_ms: u64) -> Result<(), VerificationError> {
        let device = from_device(content, START_EVENT)?;
        let method = str_field(content, "method").ok_or(VerificationError::InvalidMessage {
            event_type: START_EVENT.into(),
            field: "method",
        })?;
        let method = Method::from_wire(method).ok_or(VerificationError::UnknownMethod {
            method: method.to_owned(),
        })?;
        let conflict = match &self.phase {
            Phase::Ready => false,
            Phase::Sas(sas) if sas.is_waiting_for_accept() => {
                if method != Method::SasV1 {
                    return Err(self.unexpected_start());
                }
                true
            }
            Phase::QrReciprocated { .. } => {
                if method != Method::ReciprocateV1 {
                    return Err(self.unexpected_start());
                }
                true
            }
            _ => return Err(self.unexpected_start()),
        };
        if conflict && self.we_win_conflict(&device) {
            tracing::debug!(
                flow_id = self.flow.as_str(),
                "start conflict: ours wins, theirs is ignored"
            );
            return Ok(());
        }
        match method {
            Method::SasV1 if self.our_methods.contains(&Method::SasV1) => {
                let (sas, accept) = SasFlow::accept_start(self.ctx(), &device, content, now_ms)?;
                self.outgoing.push(accept);
                self.shown_qr = None;
                self.phase = Phase::Sas(Box::new(sas));
                Ok(())
            }
            Method::ReciprocateV1 => {
                let Some(shown) = &self.shown_qr else {
                    return Err(self.unexpected_start());
                };
                let secret = str_field(content, "secret").and_then(b64_decode).ok_or(
                    VerificationError::InvalidMessage {
                        event_type: START_EVENT.into(),
                        field: "secret",
                    },
                )?;
                let secret = zeroize::Zeroizing::new(secret);
                if !shown.payload.secret_matches(&secret) {
                    return Err(VerificationError::QrSecretMismatch);
                }
                let verified = shown.verifies.clone();
                self.shown_qr = None;
                self.phase = Phase::QrScanned { verified };
                Ok(())
            }
            other => Err(VerificationError::UnknownMethod {
                method: other.as_str().to_owned(),
            }),
        }
    }

    fn unexpected_start(&self) -> VerificationError {
        VerificationError::UnexpectedMessage {
            event_type: START_EVENT.into(),
            state: self.phase.name(),
        }
    }
}
