//! SAS verification (`m.sas.v1`, spec § "Short Authentication String (SAS) verification"):
//! the start/accept/key/mac exchange, as initiator or responder. vodozemac does the X25519,
//! HKDF and HMAC; this file does the protocol and the strings they are fed.
//!
//! ```text
//! initiator                                   responder
//!   start ─────────────────────────────────────▶  (auto-accepted: the user accepted the request)
//!         ◀──────────────────── accept(commitment)
//!   key   ─────────────────────────────────────▶
//!         ◀───────────────────────────────── key   (initiator checks the commitment)
//!   … both show the emoji/decimals, each user confirms …
//!   mac   ◀────────────────────────────────▶ mac   (any order, after each user's confirm)
//!   done  ◀────────────────────────────────▶ done  (after our confirm and their valid MAC)
//! ```
//!
//! We offer and accept only `curve25519-hkdf-sha256`, `sha256` and `hkdf-hmac-sha256.v2`:
//! matrix-sdk offers `hkdf-hmac-sha256.v2` in every start and picks it whenever it is offered,
//! so the deprecated `hkdf-hmac-sha256` (wrong base64) is never needed and is refused with
//! `m.unknown_method`, as the specification requires when both sides support v2.

use std::fmt;

use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use vodozemac::Curve25519PublicKey;
use vodozemac::sas::{EstablishedSas, Mac, Sas};

use super::canonical_json_of;
use super::{
    ACCEPT_EVENT, DONE_EVENT, FlowId, KEY_EVENT, MAC_EVENT, Method, Outgoing, OwnKeys,
    PeerIdentity, SAS_EVENT_TIMEOUT_MS, SAS_MAX_AGE_MS, START_EVENT, VerificationError,
    VerifiedDevice, VerifiedKeys, b64_decode, b64_encode, str_field, str_list,
};

/// The only key agreement protocol.
pub(crate) const KEY_AGREEMENT: &str = "curve25519-hkdf-sha256";
/// The only hash.
pub(crate) const HASH: &str = "sha256";
/// The only MAC method.
pub(crate) const MAC_METHOD: &str = "hkdf-hmac-sha256.v2";
/// SAS types, in the order we offer them.
pub(crate) const SAS_TYPES: [&str; 2] = ["decimal", "emoji"];

/// The parties and the flow, owned by the enclosing [`super::Verification`].
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// Us.
    pub(crate) own: &'a OwnKeys,
    /// The other user and their keys.
    pub(crate) peer: &'a PeerIdentity,
    /// The flow.
    pub(crate) flow: &'a FlowId,
}

/// The SAS commitment: `unpadded_base64(sha256(key_base64 ‖ canonical_json(start)))`, as
/// matrix-sdk's `calculate_commitment` (the key is the accepting side's ephemeral key, the
/// start the content exactly as sent, flow id included).
///
/// # Errors
///
/// [`VerificationError::InvalidMessage`] if the start has no canonical JSON (a float…).
pub(crate) fn commitment(
    key: &Curve25519PublicKey,
    start: &Value,
) -> Result<[u8; 32], VerificationError> {
    let canonical = canonical_json_of(START_EVENT, start)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(key.to_base64().as_bytes());
    ctx.update(canonical.as_bytes());
    let digest = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

/// The HKDF info of the SAS bytes (`curve25519-hkdf-sha256`): the start sender's user, device
/// and ephemeral key, then the accept sender's, then the flow id, `|`-separated.
pub(crate) fn sas_info(
    starter: (&str, &str, &Curve25519PublicKey),
    accepter: (&str, &str, &Curve25519PublicKey),
    flow_id: &str,
) -> String {
    format!(
        "MATRIX_KEY_VERIFICATION_SAS|{}|{}|{}|{}|{}|{}|{}",
        starter.0,
        starter.1,
        starter.2.to_base64(),
        accepter.0,
        accepter.1,
        accepter.2.to_base64(),
        flow_id
    )
}

/// The HKDF info of a MAC, without its key id suffix: `MATRIX_KEY_VERIFICATION_MAC` ‖ sender
/// user ‖ sender device ‖ receiver user ‖ receiver device ‖ flow id. Append the key id (or
/// `KEY_IDS`).
pub(crate) fn mac_info(sender: (&str, &str), receiver: (&str, &str), flow_id: &str) -> String {
    format!(
        "MATRIX_KEY_VERIFICATION_MAC{}{}{}{}{}",
        sender.0, sender.1, receiver.0, receiver.1, flow_id
    )
}

/// The `m.key.verification.mac` content for our keys: our device key, our master key if we
/// trust it, and the MAC of the sorted, comma-joined key ids.
pub(crate) fn mac_content(sas: &EstablishedSas, ctx: Ctx<'_>, peer_device: &str) -> Value {
    let info = mac_info(
        (&ctx.own.user_id, &ctx.own.device_id),
        (&ctx.peer.user_id, peer_device),
        ctx.flow.as_str(),
    );
    let mut keys: Vec<(String, String)> = vec![(
        format!("ed25519:{}", ctx.own.device_id),
        ctx.own.ed25519.to_base64(),
    )];
    if let (Some(master), true) = (ctx.own.master_key.as_ref(), ctx.own.master_key_trusted) {
        let b64 = master.to_base64();
        keys.push((format!("ed25519:{b64}"), b64));
    }
    let mut mac = Map::new();
    for (key_id, key) in &keys {
        let tag = sas.calculate_mac(key, &format!("{info}{key_id}"));
        mac.insert(key_id.clone(), json!(tag.to_base64()));
    }
    let mut ids: Vec<&str> = mac.keys().map(String::as_str).collect();
    ids.sort_unstable();
    let keys_mac = sas.calculate_mac(&ids.join(","), &format!("{info}KEY_IDS"));
    let mut content = Map::new();
    content.insert("mac".into(), Value::Object(mac));
    content.insert("keys".into(), json!(keys_mac.to_base64()));
    ctx.flow.stamp(content)
}

/// Checks the peer's `m.key.verification.mac` content against the keys the caller gave us for
/// them. The key id list MAC must verify; each MAC of a key we know must verify; a key id we
/// do not know is skipped (spec); at least one key must verify.
///
/// # Errors
///
/// [`VerificationError::KeyIdsMismatch`], [`VerificationError::KeyMismatch`],
/// [`VerificationError::NoKeyVerified`], [`VerificationError::InvalidMessage`].
pub(crate) fn verify_mac_content(
    sas: &EstablishedSas,
    ctx: Ctx<'_>,
    peer_device: &str,
    content: &Value,
) -> Result<VerifiedKeys, VerificationError> {
    let invalid = |field| VerificationError::InvalidMessage {
        event_type: MAC_EVENT.into(),
        field,
    };
    let macs = content
        .get("mac")
        .and_then(Value::as_object)
        .ok_or(invalid("mac"))?;
    let keys_tag = str_field(content, "keys")
        .and_then(b64_decode)
        .ok_or(invalid("keys"))?;
    let info = mac_info(
        (&ctx.peer.user_id, peer_device),
        (&ctx.own.user_id, &ctx.own.device_id),
        ctx.flow.as_str(),
    );
    let mut ids: Vec<&str> = macs.keys().map(String::as_str).collect();
    ids.sort_unstable();
    sas.verify_mac(
        &ids.join(","),
        &format!("{info}KEY_IDS"),
        &Mac::from_slice(&keys_tag),
    )
    .map_err(|_| VerificationError::KeyIdsMismatch)?;

    let device_key_id = format!("ed25519:{peer_device}");
    let device_key = ctx.peer.devices.get(peer_device);
    let master_key_id = ctx
        .peer
        .master_key
        .as_ref()
        .map(|k| format!("ed25519:{}", k.to_base64()));
    let mut verified = VerifiedKeys {
        device: None,
        master_key: None,
    };
    for (key_id, tag) in macs {
        let tag = tag.as_str().and_then(b64_decode).ok_or(invalid("mac"))?;
        let key_b64 = if *key_id == device_key_id {
            device_key.map(|k| k.to_base64())
        } else if Some(key_id) == master_key_id.as_ref() {
            ctx.peer.master_key.as_ref().map(|k| k.to_base64())
        } else {
            None
        };
        let Some(key_b64) = key_b64 else {
            tracing::debug!("SAS MAC: a key id we do not know for the peer is skipped");
            continue;
        };
        sas.verify_mac(&key_b64, &format!("{info}{key_id}"), &Mac::from_slice(&tag))
            .map_err(|_| VerificationError::KeyMismatch {
                key_id: key_id.clone(),
            })?;
        if *key_id == device_key_id {
            verified.device = device_key.map(|k| VerifiedDevice {
                user_id: ctx.peer.user_id.clone(),
                device_id: peer_device.to_owned(),
                ed25519: *k,
            });
        } else {
            verified.master_key = ctx.peer.master_key.map(|k| (ctx.peer.user_id.clone(), k));
        }
    }
    if verified.device.is_none() && verified.master_key.is_none() {
        return Err(VerificationError::NoKeyVerified);
    }
    Ok(verified)
}

/// One SAS exchange inside a verification flow.
pub(crate) struct SasFlow {
    we_started: bool,
    peer_device: String,
    started_ms: u64,
    last_peer_ms: u64,
    state: SasState,
}

enum SasState {
    /// Initiator: our start is sent, waiting for the accept.
    WaitingForAccept { sas: Sas, start: Value },
    /// Initiator: the accept arrived, our key is sent, waiting for theirs.
    InitiatorWaitingForKey {
        sas: Sas,
        start: Value,
        commitment: [u8; 32],
    },
    /// Responder: our accept is sent, waiting for the initiator's key.
    ResponderWaitingForKey { sas: Sas },
    /// Keys exchanged: the SAS can be shown; waiting for our user's confirmation and the
    /// peer's MAC (in either order).
    KeysExchanged {
        sas: Box<EstablishedSas>,
        confirmed: bool,
        their_mac: Option<VerifiedKeys>,
    },
    /// Both confirmed and MACs checked, our done is sent: waiting for theirs.
    WaitingForDone { verified: VerifiedKeys },
    /// Transient, during a transition (never observed: a failure cancels the whole flow).
    Poisoned,
}

impl SasState {
    fn name(&self) -> &'static str {
        match self {
            Self::WaitingForAccept { .. } => "sas_waiting_for_accept",
            Self::InitiatorWaitingForKey { .. } | Self::ResponderWaitingForKey { .. } => {
                "sas_waiting_for_key"
            }
            Self::KeysExchanged {
                confirmed: false, ..
            } => "sas_keys_exchanged",
            Self::KeysExchanged {
                confirmed: true, ..
            } => "sas_confirmed",
            Self::WaitingForDone { .. } => "sas_waiting_for_done",
            Self::Poisoned => "sas_poisoned",
        }
    }
}

impl fmt::Debug for SasFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            we_started,
            peer_device,
            started_ms,
            last_peer_ms,
            state,
        } = self;
        f.debug_struct("SasFlow")
            .field("we_started", we_started)
            .field("peer_device", peer_device)
            .field("started_ms", started_ms)
            .field("last_peer_ms", last_peer_ms)
            .field("state", &state.name())
            .finish()
    }
}

fn invalid(event_type: &str, field: &'static str) -> VerificationError {
    VerificationError::InvalidMessage {
        event_type: event_type.to_owned(),
        field,
    }
}

fn unexpected(event_type: &str, state: &'static str) -> VerificationError {
    VerificationError::UnexpectedMessage {
        event_type: event_type.to_owned(),
        state,
    }
}

/// The peer's ephemeral key from a `m.key.verification.key` content.
fn their_key(content: &Value) -> Result<Curve25519PublicKey, VerificationError> {
    str_field(content, "key")
        .and_then(b64_decode)
        .and_then(|bytes| Curve25519PublicKey::from_slice(&bytes).ok())
        .ok_or(invalid(KEY_EVENT, "key"))
}

fn key_content(flow: &FlowId, key: &Curve25519PublicKey) -> Outgoing {
    let mut content = Map::new();
    content.insert("key".into(), json!(key.to_base64()));
    Outgoing {
        event_type: KEY_EVENT,
        content: flow.stamp(content),
    }
}

/// The `m.key.verification.done` content.
pub(crate) fn done_content(flow: &FlowId) -> Outgoing {
    Outgoing {
        event_type: DONE_EVENT,
        content: flow.stamp(Map::new()),
    }
}

impl SasFlow {
    /// Starts a SAS as initiator: returns the flow and the `m.key.verification.start` to send.
    pub(crate) fn start(ctx: Ctx<'_>, peer_device: &str, now_ms: u64) -> (Self, Outgoing) {
        let sas = Sas::new();
        let mut content = Map::new();
        content.insert("from_device".into(), json!(ctx.own.device_id));
        content.insert("method".into(), json!(Method::SasV1.as_str()));
        content.insert("key_agreement_protocols".into(), json!([KEY_AGREEMENT]));
        content.insert("hashes".into(), json!([HASH]));
        content.insert("message_authentication_codes".into(), json!([MAC_METHOD]));
        content.insert("short_authentication_string".into(), json!(SAS_TYPES));
        let start = ctx.flow.stamp(content);
        let flow = Self {
            we_started: true,
            peer_device: peer_device.to_owned(),
            started_ms: now_ms,
            last_peer_ms: now_ms,
            state: SasState::WaitingForAccept {
                sas,
                start: start.clone(),
            },
        };
        (
            flow,
            Outgoing {
                event_type: START_EVENT,
                content: start,
            },
        )
    }

    /// Answers the peer's `m.sas.v1` start as responder: returns the flow and the
    /// `m.key.verification.accept` (with our commitment) to send.
    ///
    /// # Errors
    ///
    /// [`VerificationError::UnknownMethod`] if we share no protocol, hash, MAC or SAS type;
    /// [`VerificationError::InvalidMessage`] for a malformed start.
    pub(crate) fn accept_start(
        ctx: Ctx<'_>,
        peer_device: &str,
        start: &Value,
        now_ms: u64,
    ) -> Result<(Self, Outgoing), VerificationError> {
        let offered = |field: &'static str, want: &str| -> Result<(), VerificationError> {
            let list = str_list(start, field).ok_or(invalid(START_EVENT, field))?;
            if list.iter().any(|v| v == want) {
                Ok(())
            } else {
                Err(VerificationError::UnknownMethod {
                    method: format!("{field}: {}", list.join(",")),
                })
            }
        };
        offered("key_agreement_protocols", KEY_AGREEMENT)?;
        offered("hashes", HASH)?;
        offered("message_authentication_codes", MAC_METHOD)?;
        let theirs = str_list(start, "short_authentication_string")
            .ok_or(invalid(START_EVENT, "short_authentication_string"))?;
        let common: Vec<&str> = SAS_TYPES
            .into_iter()
            .filter(|t| theirs.iter().any(|v| v == t))
            .collect();
        if common.is_empty() {
            return Err(VerificationError::UnknownMethod {
                method: format!("short_authentication_string: {}", theirs.join(",")),
            });
        }
        let sas = Sas::new();
        let commitment = commitment(&sas.public_key(), start)?;
        // The specification's accept has no `method` (ruma, hence matrix-sdk, sends none).
        let mut content = Map::new();
        content.insert("key_agreement_protocol".into(), json!(KEY_AGREEMENT));
        content.insert("hash".into(), json!(HASH));
        content.insert("message_authentication_code".into(), json!(MAC_METHOD));
        content.insert("short_authentication_string".into(), json!(common));
        content.insert("commitment".into(), json!(b64_encode(&commitment)));
        let flow = Self {
            we_started: false,
            peer_device: peer_device.to_owned(),
            started_ms: now_ms,
            last_peer_ms: now_ms,
            state: SasState::ResponderWaitingForKey { sas },
        };
        Ok((
            flow,
            Outgoing {
                event_type: ACCEPT_EVENT,
                content: ctx.flow.stamp(content),
            },
        ))
    }

    /// Whether we sent a start that has not been accepted yet (the start-conflict window).
    pub(crate) fn is_waiting_for_accept(&self) -> bool {
        matches!(self.state, SasState::WaitingForAccept { .. })
    }

    /// The state's name (logs, errors).
    pub(crate) fn state_name(&self) -> &'static str {
        self.state.name()
    }

    /// Whether the SAS timed out at `now_ms` (5 minutes after its start, 1 minute after the
    /// peer's last event: matrix-sdk's `MAX_AGE` and `MAX_EVENT_TIMEOUT`).
    pub(crate) fn timed_out(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.started_ms) > SAS_MAX_AGE_MS
            || now_ms.saturating_sub(self.last_peer_ms) > SAS_EVENT_TIMEOUT_MS
    }

    /// Pretends the peer spoke at `now_ms` (tests of the timers).
    #[cfg(test)]
    pub(crate) fn touch(&mut self, now_ms: u64) {
        self.last_peer_ms = now_ms;
    }

    fn established(&self) -> Option<&EstablishedSas> {
        match &self.state {
            SasState::KeysExchanged { sas, .. } => Some(sas),
            _ => None,
        }
    }

    /// The SAS HKDF info of this exchange, once the keys are exchanged.
    pub(crate) fn info(&self, ctx: Ctx<'_>) -> Option<String> {
        let sas = self.established()?;
        let ours = (
            ctx.own.user_id.as_str(),
            ctx.own.device_id.as_str(),
            &sas.our_public_key(),
        );
        let theirs = (
            ctx.peer.user_id.as_str(),
            self.peer_device.as_str(),
            &sas.their_public_key(),
        );
        Some(if self.we_started {
            sas_info(ours, theirs, ctx.flow.as_str())
        } else {
            sas_info(theirs, ours, ctx.flow.as_str())
        })
    }

    fn bytes(&self, ctx: Ctx<'_>) -> Option<vodozemac::sas::SasBytes> {
        let info = self.info(ctx)?;
        Some(self.established()?.bytes(&info))
    }

    /// The 7 emoji indices (0..=63), once the keys are exchanged and until our confirmation.
    pub(crate) fn emoji_indices(&self, ctx: Ctx<'_>) -> Option<[u8; 7]> {
        self.bytes(ctx).map(|b| b.emoji_indices())
    }

    /// The three decimal numbers (1000..=9191), once the keys are exchanged.
    pub(crate) fn decimals(&self, ctx: Ctx<'_>) -> Option<(u16, u16, u16)> {
        self.bytes(ctx).map(|b| b.decimals())
    }

    /// Our user confirmed that the SAS matches: queues our MAC, and our done if the peer's MAC
    /// already verified.
    ///
    /// # Errors
    ///
    /// [`VerificationError::InvalidState`] before the keys are exchanged or on a second call.
    pub(crate) fn confirm(
        &mut self,
        ctx: Ctx<'_>,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), VerificationError> {
        let state_name = self.state.name();
        let SasState::KeysExchanged {
            sas,
            confirmed,
            their_mac,
        } = &mut self.state
        else {
            return Err(VerificationError::InvalidState {
                action: "confirm the SAS",
                state: state_name,
            });
        };
        if *confirmed {
            return Err(VerificationError::InvalidState {
                action: "confirm the SAS",
                state: state_name,
            });
        }
        *confirmed = true;
        out.push(Outgoing {
            event_type: MAC_EVENT,
            content: mac_content(sas, ctx, &self.peer_device),
        });
        if let Some(verified) = their_mac.take() {
            out.push(done_content(ctx.flow));
            self.state = SasState::WaitingForDone { verified };
        }
        Ok(())
    }

    /// Handles a SAS message of the peer (accept, key, mac, done). Returns the verified keys
    /// when the exchange is complete (their done received).
    ///
    /// # Errors
    ///
    /// Any failure cancels the whole flow (the caller drops this SAS).
    pub(crate) fn handle(
        &mut self,
        ctx: Ctx<'_>,
        event_type: &str,
        content: &Value,
        now_ms: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<Option<VerifiedKeys>, VerificationError> {
        let name = self.state.name();
        let state = std::mem::replace(&mut self.state, SasState::Poisoned);
        let (next, result) = match (event_type, state) {
            (ACCEPT_EVENT, SasState::WaitingForAccept { sas, start }) => {
                let commitment = check_accept(content)?;
                out.push(key_content(ctx.flow, &sas.public_key()));
                (
                    SasState::InitiatorWaitingForKey {
                        sas,
                        start,
                        commitment,
                    },
                    None,
                )
            }
            (
                KEY_EVENT,
                SasState::InitiatorWaitingForKey {
                    sas,
                    start,
                    commitment: expected,
                },
            ) => {
                let key = their_key(content)?;
                let found = commitment(&key, &start)?;
                if !bool::from(found.ct_eq(&expected)) {
                    return Err(VerificationError::MismatchedCommitment);
                }
                let established = sas
                    .diffie_hellman(key)
                    .map_err(|_| invalid(KEY_EVENT, "key"))?;
                (
                    SasState::KeysExchanged {
                        sas: Box::new(established),
                        confirmed: false,
                        their_mac: None,
                    },
                    None,
                )
            }
            (KEY_EVENT, SasState::ResponderWaitingForKey { sas }) => {
                let key = their_key(content)?;
                let ours = sas.public_key();
                let established = sas
                    .diffie_hellman(key)
                    .map_err(|_| invalid(KEY_EVENT, "key"))?;
                out.push(key_content(ctx.flow, &ours));
                (
                    SasState::KeysExchanged {
                        sas: Box::new(established),
                        confirmed: false,
                        their_mac: None,
                    },
                    None,
                )
            }
            (
                MAC_EVENT,
                SasState::KeysExchanged {
                    sas,
                    confirmed,
                    their_mac: None,
                },
            ) => {
                let verified = verify_mac_content(&sas, ctx, &self.peer_device, content)?;
                if confirmed {
                    out.push(done_content(ctx.flow));
                    (SasState::WaitingForDone { verified }, None)
                } else {
                    (
                        SasState::KeysExchanged {
                            sas,
                            confirmed,
                            their_mac: Some(verified),
                        },
                        None,
                    )
                }
            }
            (DONE_EVENT, SasState::WaitingForDone { verified }) => (
                SasState::WaitingForDone {
                    verified: verified.clone(),
                },
                Some(verified),
            ),
            _ => return Err(unexpected(event_type, name)),
        };
        self.state = next;
        self.last_peer_ms = now_ms;
        Ok(result)
    }
}

/// Checks an accept against what we offered; returns its commitment.
fn check_accept(content: &Value) -> Result<[u8; 32], VerificationError> {
    let field = |name: &'static str| str_field(content, name).ok_or(invalid(ACCEPT_EVENT, name));
    let expect = |name: &'static str, want: &str| -> Result<(), VerificationError> {
        let got = field(name)?;
        if got == want {
            Ok(())
        } else {
            Err(VerificationError::UnknownMethod {
                method: format!("{name}: {got}"),
            })
        }
    };
    // No `method` in the specification's accept (matrix-sdk sends none); one that names
    // another method is refused.
    if content.get("method").is_some() {
        expect("method", Method::SasV1.as_str())?;
    }
    expect("key_agreement_protocol", KEY_AGREEMENT)?;
    expect("hash", HASH)?;
    expect("message_authentication_code", MAC_METHOD)?;
    let types = str_list(content, "short_authentication_string")
        .ok_or(invalid(ACCEPT_EVENT, "short_authentication_string"))?;
    if types.is_empty() || types.iter().any(|t| !SAS_TYPES.contains(&t.as_str())) {
        return Err(VerificationError::UnknownMethod {
            method: format!("short_authentication_string: {}", types.join(",")),
        });
    }
    let commitment = field("commitment")?;
    b64_decode(commitment)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(invalid(ACCEPT_EVENT, "commitment"))
}
