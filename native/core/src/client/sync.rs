//! Applying one `/sync` response to the store.
//!
//! Everything a response changes — rooms, members, names, encryption state, security events —
//! and its `next_batch` are written in one transaction: after a crash the store holds either
//! the whole response or none of it, and the next sync resumes from the last committed token.
//!
//! `m.room.encryption` is write-once here: an event that changes the algorithm, or removes it,
//! in a room already known to be encrypted is ignored and recorded as a security event (a
//! malicious or compromised server must not be able to turn encryption off).
//!
//! Before any of it is applied, an answer whose `next_batch` goes back to a token this store
//! already left behind — a replayed answer, which would roll the sync back — is refused and
//! journaled (`sync_replay_refused`), and so is a `next_batch` too long to send back
//! ([`MAX_SYNC_TOKEN_BYTES`]); see `Client::finish_sync`. An event larger than the
//! specification allows is skipped as malformed, never stored.

use rusqlite::Connection;
use serde::Serialize;
use serde_json::Value;

use crate::api::types::{MEGOLM_ALGORITHM, MemberContent, RoomEvent, SyncResponse, ToDeviceEvent};
use crate::crypto::CryptoError;
use crate::crypto::engine::Engine;
use crate::crypto::megolm::InboundCache;
use crate::store::crypto as cdb;
use crate::store::notify::{self, Deferred};
use crate::store::relations::{ArrivingTombstone, Tombstone};
use crate::store::timeline::{self as tl, NewTimelineEvent, RoomCursor, TimelineEvent};
use crate::store::{self, StoreError};

/// The longest `next_batch` accepted: Synapse's tokens are well under a hundred bytes, and a
/// token is sent back in the URL of every later sync (a 10-MB one would wedge the client).
pub(crate) const MAX_SYNC_TOKEN_BYTES: usize = 4096;
/// How many earlier sync tokens are remembered, to recognise a replayed answer.
const TOKEN_HISTORY: usize = 256;
/// `kv` key of that history: a JSON array of truncated SHA-256 digests (hex), oldest first.
const TOKEN_HISTORY_KEY: &str = "sync.previous_batches";

fn token_digest(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn token_history(conn: &Connection) -> Result<Vec<String>, StoreError> {
    use rusqlite::OptionalExtension as _;
    let stored = store::query_row(
        conn,
        "SELECT value FROM kv WHERE key = ?1",
        rusqlite::params![TOKEN_HISTORY_KEY],
        |r| r.get::<_, Vec<u8>>(0),
    )
    .optional()?;
    match stored {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| StoreError::Corrupt {
            detail: "sync token history".into(),
        }),
        None => Ok(Vec::new()),
    }
}

/// Whether `token` is one this store already moved past (a sync answer carrying it is a
/// replay).
pub(crate) fn seen_token(conn: &Connection, token: &str) -> Result<bool, StoreError> {
    let digest = token_digest(token);
    Ok(token_history(conn)?.contains(&digest))
}

/// Inside the sync's transaction: the token the answer was requested from is now behind us.
pub(crate) fn remember_token(
    tx: &Connection,
    since: Option<&str>,
    next_batch: &str,
) -> Result<(), StoreError> {
    let Some(since) = since.filter(|s| *s != next_batch) else {
        return Ok(());
    };
    let mut history = token_history(tx)?;
    let digest = token_digest(since);
    if !history.contains(&digest) {
        history.push(digest);
    }
    let excess = history.len().saturating_sub(TOKEN_HISTORY);
    history.drain(..excess);
    let bytes = serde_json::to_vec(&history).map_err(|_| StoreError::Corrupt {
        detail: "sync token history".into(),
    })?;
    store::exec(
        tx,
        "INSERT INTO kv (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        rusqlite::params![TOKEN_HISTORY_KEY, bytes],
    )?;
    Ok(())
}

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
    /// To-device events processed.
    pub to_device_events: usize,
    /// Room keys received.
    pub room_keys: usize,
    /// Messages decrypted by this sync (new ones, earlier ones a late key unlocked, and those
    /// a gap's back-fill brought), in order.
    pub messages: Vec<TimelineEvent>,
    /// Gaps this sync revealed (`limited` timelines after a known event), filled by
    /// back-pagination right after it.
    pub gaps_opened: usize,
    /// Events the gap back-fill stored.
    pub backfilled: usize,
    /// Gaps still open after this sync (filled by the next one: e.g. the network failed).
    pub gaps_open: usize,
    /// State changes of our own outgoing messages (sent, failed, cancelled).
    pub outgoing: Vec<super::outbox::OutgoingUpdate>,
    /// Verification flows this sync changed: a request arrived, emoji to compare, done,
    /// cancelled (see [`super::verification::VerificationInfo`]).
    pub verifications: Vec<super::verification::VerificationInfo>,
    /// What this sync brought that notifies the member, per the account's push rules
    /// evaluated on the device (issue 17 item 3): the decrypted messages and invitations the
    /// rules say notify, in order (at most [`MAX_PUSH_CANDIDATES`] per sync: the latest).
    pub notifications: Vec<super::notification::Notification>,
    /// Events this sync appended or decrypted late, for the push rules once the sync is
    /// committed. Not reported as such.
    #[serde(skip)]
    pub(crate) push_candidates: Vec<PushCandidate>,
    /// Messages whose shown text this sync changed (a valid edit arrived), as they now are;
    /// not repeated here if in `messages`.
    pub edits: Vec<TimelineEvent>,
    /// Events this sync erased (a valid redaction arrived, or one that waited for its event).
    pub redactions: Vec<super::relations::Redaction>,
    /// How many messages outlived their room's lifetime and were purged after this sync
    /// (their rows are tombstones now: reload the rooms shown).
    pub expired: usize,
    /// The messages an edit changed, for `edits` once the sync is applied.
    #[serde(skip)]
    pub(crate) edited_ids: Vec<String>,
    /// Verification events received (to-device, or decrypted from a room), for the client to
    /// drive its flows once the sync is committed. Not reported as such.
    #[serde(skip)]
    pub(crate) verification_events: Vec<VerificationEvent>,
}

/// A key verification event as received: its sender (authenticated by the server for a
/// to-device message, by Megolm for a room event), type and content; in a room, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerificationEvent {
    pub(crate) sender: String,
    pub(crate) event_type: String,
    pub(crate) content: Value,
    /// `(room id, event id, origin_server_ts)` for an in-room event.
    pub(crate) room: Option<(String, String, u64)>,
}

impl VerificationEvent {
    /// A to-device verification message.
    fn to_device(sender: String, event_type: String, content: Value) -> Self {
        Self {
            sender,
            event_type,
            content,
            room: None,
        }
    }
}

/// Whether an event (type and content) belongs to a key verification flow.
fn is_verification(event_type: &str, content: &Value) -> bool {
    event_type.starts_with("m.key.verification.")
        || (event_type == "m.room.message"
            && content.get("msgtype").and_then(Value::as_str) == Some("m.key.verification.request"))
}

/// Where a new timeline row goes in its room.
pub(crate) enum Place<'a> {
    /// At the end (the sync).
    Append(&'a mut RoomCursor),
    /// At this position (a gap's back-fill, older history: see [`apply_back_page`]).
    At(i64),
    /// The row exists already (a late key): it keeps its position.
    Existing,
}

impl Place<'_> {
    fn take(&mut self) -> i64 {
        match self {
            Self::Append(cursor) => cursor.append(),
            Self::At(ord) => *ord,
            Self::Existing => 0,
        }
    }
}

/// How many of a sync's events are evaluated against the push rules: the latest ones (a
/// catch-up after hours offline announces its last messages, not thousands).
pub(crate) const MAX_PUSH_CANDIDATES: usize = 100;

/// An event a sync appended (decrypted, or an invitation), to be evaluated against the push
/// rules once the sync is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushCandidate {
    pub(crate) room_id: String,
    pub(crate) event_id: String,
    /// `{type, sender, content, state_key?}`: the decrypted event as the rules see it.
    pub(crate) event: Value,
    pub(crate) origin_server_ts: u64,
    /// For a decrypted event: the sending device and its trust.
    pub(crate) sender_device: Option<String>,
    pub(crate) trust: Option<&'static str>,
}

/// Events decrypted by this response (ids, in order), the inbound sessions unpickled for
/// them, and the latest events for the push rules.
#[derive(Default)]
struct Decrypted {
    ids: Vec<String>,
    cache: InboundCache,
    push: std::collections::VecDeque<PushCandidate>,
}

impl Decrypted {
    fn push_candidate(&mut self, candidate: PushCandidate) {
        if self.push.len() == MAX_PUSH_CANDIDATES {
            self.push.pop_front();
        }
        self.push.push_back(candidate);
    }
}

/// Crypto failures caused by a peer are recorded and skipped; a store failure aborts the
/// whole sync (nothing is committed).
pub(crate) fn fatal(e: CryptoError) -> Result<CryptoError, StoreError> {
    match e {
        CryptoError::Store(s) => Err(s),
        CryptoError::Pickle { what } => Err(StoreError::Corrupt {
            detail: format!("{what} pickle"),
        }),
        other => Ok(other),
    }
}

/// Applies `response` inside `tx` (the caller commits). With `engine`, to-device messages
/// are decrypted, members of encrypted rooms tracked, and encrypted room events decrypted.
pub(crate) fn apply(
    tx: &Connection,
    response: &SyncResponse,
    mut engine: Option<&mut Engine>,
) -> Result<SyncSummary, StoreError> {
    let mut summary = SyncSummary {
        next_batch: response.next_batch.clone(),
        ..SyncSummary::default()
    };
    let mut decrypted = Decrypted::default();
    // What the notification path received since the last sync is reported by this one.
    for item in notify::take_deferred(tx)? {
        match item {
            Deferred::Verification {
                sender,
                event_type,
                content,
            } => summary
                .verification_events
                .push(VerificationEvent::to_device(sender, event_type, content)),
            Deferred::Decrypted { event_id } => decrypted.ids.push(event_id),
        }
    }
    notify::prune_seen(tx, crate::store::crypto::now_ms())?;
    for raw in &response.account_data.events {
        apply_account_data(tx, raw, &mut summary)?;
    }
    for user in &response.device_lists.changed {
        cdb::mark_dirty(tx, user)?;
    }
    for user in &response.device_lists.left {
        cdb::untrack_user(tx, user)?;
    }
    // Keys first: a message and its room key often arrive in the same response.
    if let Some(engine) = engine.as_deref_mut() {
        for raw in &response.to_device.events {
            apply_to_device(
                tx,
                engine,
                raw,
                notify::Path::Sync,
                &mut summary,
                &mut decrypted,
            )?;
        }
    }
    // Joined and left rooms have the same shape: state before the timeline, then the timeline.
    let updates = (response.rooms.join.iter().map(|r| ("join", r)))
        .chain(response.rooms.leave.iter().map(|r| ("leave", r)));
    for (membership, (room_id, room)) in updates {
        let known_joined = store::rooms::membership(tx, room_id)?.as_deref() == Some("join");
        store::rooms::upsert_room(tx, room_id, membership)?;
        let mut cursor = tl::room_cursor(tx, room_id)?.ok_or_else(|| StoreError::Corrupt {
            detail: "room cursor".into(),
        })?;
        let timeline = &room.timeline;
        // A `limited` timeline after events we hold: the missing part is a gap, recorded in
        // this transaction and filled backwards from `prev_batch` right after it.
        if let Some(from) = timeline.prev_batch.as_deref().filter(|t| valid_token(t)) {
            // The slice holds the event we stopped at: nothing is missing (a newly joined
            // room's slice also holds history older than our join: that is scroll-back).
            let continuous = cursor.last_event_id.as_deref().is_some_and(|last| {
                timeline
                    .events
                    .iter()
                    .any(|e| e.get("event_id").and_then(Value::as_str) == Some(last))
            });
            if timeline.limited
                && membership == "join"
                && known_joined
                && !continuous
                && (cursor.last_event_id.is_some() || cursor.next_ord > 1)
            {
                let until = cursor.last_event_id.clone();
                tl::open_gap(tx, room_id, from, until.as_deref(), &mut cursor)?;
                summary.gaps_opened += 1;
            }
            if cursor.back_token.is_none() && !cursor.history_complete {
                // Older history (scroll-back) starts before the first slice we ever got.
                cursor.back_token = Some(from.to_owned());
            }
        }
        if let Some(last) = timeline
            .events
            .iter()
            .rev()
            .find_map(|e| e.get("event_id").and_then(Value::as_str))
        {
            cursor.last_event_id = Some(last.to_owned());
        }
        let events = room.state.events.iter().chain(room.timeline.events.iter());
        apply_events(
            tx,
            room_id,
            events,
            &mut summary,
            engine.as_deref_mut(),
            &mut decrypted,
            &mut Place::Append(&mut cursor),
        )?;
        tl::save_room_cursor(tx, room_id, &cursor)?;
        if membership == "leave" {
            // We left: our outbound session must never be used again there, and nothing
            // queued for the room will ever be accepted.
            cdb::discard_outbound_session(tx, room_id)?;
            summary
                .outgoing
                .extend(super::outbox::cancel_lane(tx, room_id, "left_room")?);
        }
        summary.rooms += 1;
    }
    for (room_id, room) in &response.rooms.invite {
        store::rooms::upsert_room(tx, room_id, "invite")?;
        // The invitation itself (our member event in the stripped state) is announced.
        for raw in &room.invite_state.events {
            if let Some(candidate) = invitation(room_id, raw) {
                decrypted.push_candidate(candidate);
            }
            // An invitation to a direct chat, for `Client::join` to record in `m.direct`.
            super::direct::note_direct_invite(tx, room_id, raw)?;
        }
        let events = room.invite_state.events.iter();
        apply_events(
            tx,
            room_id,
            events,
            &mut summary,
            None,
            &mut decrypted,
            &mut Place::Existing,
        )?;
        summary.rooms += 1;
    }
    store::session::set_next_batch(tx, &response.next_batch)?;
    summary.push_candidates = decrypted.push.into();
    report_decrypted(tx, decrypted.ids, &mut summary)?;
    Ok(summary)
}

/// Adds the events `ids` decrypted, and the messages edits changed, to the summary as they are
/// once everything was applied: an edit is not a message of its own (its message is reported
/// as edited), an event erased meanwhile is only in `redactions`.
pub(crate) fn report_decrypted(
    tx: &Connection,
    ids: Vec<String>,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    for event_id in ids {
        if let Some(e) = tl::timeline_event(tx, &event_id)?
            && e.replaces.is_none()
            && e.state != "redacted"
            && !summary.messages.iter().any(|m| m.event_id == e.event_id)
        {
            summary.messages.push(e);
        }
    }
    for event_id in std::mem::take(&mut summary.edited_ids) {
        if let Some(e) = tl::timeline_event(tx, &event_id)?
            && e.state != "redacted"
            && !summary.messages.iter().any(|m| m.event_id == e.event_id)
        {
            summary.edits.retain(|m| m.event_id != e.event_id);
            summary.edits.push(e);
        }
    }
    Ok(())
}

/// Global account data: the account's push rules and its direct chats (`m.direct`) are kept
/// (checked first: a malformed content is skipped and what was stored before stays); anything
/// else is not used.
fn apply_account_data(
    tx: &Connection,
    raw: &Value,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    let kind = raw.get("type").and_then(Value::as_str);
    if kind == Some("m.direct") {
        let content = raw.get("content").unwrap_or(&Value::Null);
        if !super::direct::apply_direct(tx, content)? {
            tracing::warn!("malformed m.direct skipped");
            summary.malformed_events += 1;
        }
        return Ok(());
    }
    if kind != Some("m.push_rules") {
        return Ok(());
    }
    let content = raw.get("content").cloned().unwrap_or(Value::Null);
    match crate::push_rules::PushRules::from_account_data(&content) {
        Ok(_) => store::push::set_push_rules(tx, &content),
        Err(e) => {
            tracing::warn!(error = %e, "malformed push rules skipped");
            summary.malformed_events += 1;
            Ok(())
        }
    }
}

impl PushCandidate {
    /// An event in clear (an invitation, a state event) as the rules see it.
    pub(crate) fn in_clear(room_id: &str, event: &RoomEvent) -> Self {
        Self {
            room_id: room_id.to_owned(),
            // Stripped state carries no event id.
            event_id: event.event_id.clone().unwrap_or_default(),
            event: serde_json::json!({
                "type": event.event_type,
                "sender": event.sender,
                "state_key": event.state_key,
                "content": event.content,
            }),
            origin_server_ts: event.origin_server_ts.unwrap_or_default(),
            sender_device: None,
            trust: None,
        }
    }
}

/// The member event of an invitation's stripped state, as a push candidate.
fn invitation(room_id: &str, raw: &Value) -> Option<PushCandidate> {
    let event = RoomEvent::parse(raw)?;
    if event.event_type != "m.room.member"
        || event.content.get("membership").and_then(Value::as_str) != Some("invite")
    {
        return None;
    }
    Some(PushCandidate::in_clear(room_id, &event))
}

/// The notification path's share of a sync (see [`super::notification`]): to-device messages
/// only — room keys, Olm — applied like the main sync applies them (once: see
/// [`notify::first_delivery`]); what the main sync reports (verification messages, stored
/// events a late key decrypted) is deferred to it. Returns how many room keys arrived.
pub(crate) fn apply_to_device_only(
    tx: &Connection,
    engine: &mut Engine,
    events: &[Value],
) -> Result<usize, StoreError> {
    let mut summary = SyncSummary::default();
    let mut decrypted = Decrypted::default();
    notify::prune_seen(tx, crate::store::crypto::now_ms())?;
    for raw in events {
        apply_to_device(
            tx,
            engine,
            raw,
            notify::Path::Notify,
            &mut summary,
            &mut decrypted,
        )?;
    }
    for v in summary.verification_events {
        notify::defer(
            tx,
            &Deferred::Verification {
                sender: v.sender,
                event_type: v.event_type,
                content: v.content,
            },
        )?;
    }
    for event_id in decrypted.ids {
        notify::defer(tx, &Deferred::Decrypted { event_id })?;
    }
    Ok(summary.room_keys)
}

pub(crate) fn security_event(
    tx: &Connection,
    summary: &mut SyncSummary,
    kind: &str,
    room_id: Option<&str>,
    user_id: Option<&str>,
    detail: &str,
) -> Result<(), StoreError> {
    summary.security_events += 1;
    store::rooms::record_security_event(tx, kind, room_id, user_id, detail)
}

fn apply_to_device(
    tx: &Connection,
    engine: &mut Engine,
    raw: &Value,
    path: notify::Path,
    summary: &mut SyncSummary,
    decrypted: &mut Decrypted,
) -> Result<(), StoreError> {
    let Ok(event) = serde::Deserialize::deserialize(raw).map(|e: ToDeviceEvent| e) else {
        summary.malformed_events += 1;
        return Ok(());
    };
    summary.to_device_events += 1;
    // The notification path fetches to-device messages with its own position: a message may
    // come by both paths, and is applied once.
    let digest = notify::to_device_digest(&event.sender, &event.event_type, &event.content);
    match notify::first_delivery(tx, &digest, path, crate::store::crypto::now_ms())? {
        notify::Delivery::First => {}
        notify::Delivery::OtherPath => {
            tracing::debug!(event_type = %event.event_type, "to-device message already applied by the other path");
            return Ok(());
        }
        // This path acknowledged it: the server sent it again. An Olm message sent again is
        // a replay (journaled as the Olm layer would); a message in clear repeated is
        // harmless and only dropped.
        notify::Delivery::SamePath if event.event_type == "m.room.encrypted" => {
            return security_event(
                tx,
                summary,
                "to_device_olm_replay",
                None,
                Some(&event.sender),
                "an Olm message already applied was delivered again and ignored",
            );
        }
        notify::Delivery::SamePath => return Ok(()),
    }
    match event.event_type.as_str() {
        "m.room.encrypted" => {}
        "m.room_key" | "m.forwarded_room_key" => {
            // A room key must never be accepted outside an Olm channel.
            return security_event(
                tx,
                summary,
                "unencrypted_room_key_refused",
                None,
                Some(&event.sender),
                "a room key arrived without Olm encryption and was ignored",
            );
        }
        "m.room_key.withheld" => {
            tracing::info!(sender = %event.sender, code = ?event.content.get("code"), "room key withheld");
            return Ok(());
        }
        t if is_verification(t, &event.content) => {
            // Verification messages travel in clear between devices (their contents are
            // public keys, commitments and MACs): the flow authenticates them itself.
            summary
                .verification_events
                .push(VerificationEvent::to_device(
                    event.sender,
                    event.event_type,
                    event.content,
                ));
            return Ok(());
        }
        _ => return Ok(()),
    }
    let result = engine.olm_decrypt(tx, &event.sender, &event.content);
    let olm = match result {
        Ok(olm) => olm,
        Err(e) => {
            let e = fatal(e)?;
            if let CryptoError::OlmDecrypt { sender_key } = &e
                && let Some(device) = cdb::device_by_curve25519(tx, sender_key)?
                && device.user_id == event.sender
                && cdb::request_unwedge(
                    tx,
                    sender_key,
                    &device.user_id,
                    &device.device_id,
                    super::e2ee::UNWEDGE_INTERVAL_MS,
                )?
            {
                tracing::warn!(user_id = %device.user_id, device_id = %device.device_id, "Olm session wedged; a new one will be created");
            }
            return security_event(
                tx,
                summary,
                &format!("to_device_{}", e.code()),
                None,
                Some(&event.sender),
                &e.to_string(),
            );
        }
    };
    match olm.event_type.as_str() {
        "m.room_key" => match engine.receive_room_key(tx, &olm.device, &olm.content) {
            Ok(Some((room_id, session_id))) => {
                summary.room_keys += 1;
                decrypted.cache.forget(&room_id, &session_id);
                retry_undecrypted(tx, engine, &room_id, &session_id, summary, decrypted)?;
            }
            Ok(None) => {}
            Err(e) => {
                let e = fatal(e)?;
                security_event(
                    tx,
                    summary,
                    &format!("room_key_{}", e.code()),
                    None,
                    Some(&event.sender),
                    &e.to_string(),
                )?;
            }
        },
        "m.dummy" => {}
        t if is_verification(t, &olm.content) => {
            summary
                .verification_events
                .push(VerificationEvent::to_device(
                    event.sender,
                    olm.event_type,
                    olm.content,
                ));
        }
        other => tracing::debug!(event_type = other, "ignoring to-device event"),
    }
    Ok(())
}

/// A late key: decrypt the events that were waiting for it.
fn retry_undecrypted(
    tx: &Connection,
    engine: &Engine,
    room_id: &str,
    session_id: &str,
    summary: &mut SyncSummary,
    decrypted: &mut Decrypted,
) -> Result<(), StoreError> {
    for (_, raw) in tl::undecrypted_events(tx, room_id, session_id)? {
        let Ok(raw) = serde_json::from_str::<Value>(&raw) else {
            continue;
        };
        if let Some(event) = RoomEvent::parse(&raw) {
            decrypt_room_event(
                tx,
                engine,
                room_id,
                &event,
                &raw,
                summary,
                decrypted,
                &mut Place::Existing,
            )?;
        }
    }
    Ok(())
}

/// The specification's cap on an event (65,536 bytes in the federation format, which carries
/// more than what a client receives): a bigger event in a sync is no event a homeserver could
/// have accepted.
const MAX_EVENT_BYTES: usize = 65_536;

/// Whether `raw`, without its `unsigned` part (which the server adds for clients, e.g. a state
/// event's previous content), is larger than [`MAX_EVENT_BYTES`]. Stops counting at the cap.
fn oversized(raw: &Value) -> bool {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            if self.0 > MAX_EVENT_BYTES {
                return Err(std::io::Error::other("over the cap"));
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let Some(object) = raw.as_object() else {
        return false;
    };
    let mut counter = Counter(0);
    object
        .iter()
        .filter(|(key, _)| key.as_str() != "unsigned")
        .any(|(key, value)| {
            counter.0 += key.len() + 4;
            serde_json::to_writer(&mut counter, value).is_err()
        })
}

fn apply_events<'a>(
    tx: &Connection,
    room_id: &str,
    events: impl Iterator<Item = &'a Value>,
    summary: &mut SyncSummary,
    mut engine: Option<&mut Engine>,
    decrypted: &mut Decrypted,
    place: &mut Place<'_>,
) -> Result<(), StoreError> {
    for raw in events {
        if oversized(raw) {
            // Kept out of the store: a hostile server must not fill it 10 MB at a time.
            tracing::warn!(
                room_id,
                "skipping an event larger than the specification allows"
            );
            summary.malformed_events += 1;
            continue;
        }
        let Some(event) = RoomEvent::parse(raw) else {
            summary.malformed_events += 1;
            continue;
        };
        if let Some(state_key) = event.state_key.as_deref() {
            apply_state_event(tx, room_id, &event, state_key, summary)?;
            continue;
        }
        let Some(engine) = engine.as_deref_mut() else {
            continue;
        };
        apply_message_event(tx, engine, room_id, &event, raw, summary, decrypted, place)?;
    }
    Ok(())
}

/// A room's current state as `GET /rooms/{id}/state` returns it, after we joined or created
/// it: the room is recorded as joined, its members, name and encryption applied with the
/// sync's rules (encryption is write-once). If we were not joined before, our join event is
/// what a later gap must reach.
pub(crate) fn apply_joined_state(
    tx: &Connection,
    room_id: &str,
    state: &[Value],
    own_user: &str,
) -> Result<SyncSummary, StoreError> {
    let was_joined = store::rooms::membership(tx, room_id)?.as_deref() == Some("join");
    store::rooms::upsert_room(tx, room_id, "join")?;
    let mut summary = SyncSummary::default();
    let state_events = state.iter().filter(|e| e.get("state_key").is_some());
    apply_events(
        tx,
        room_id,
        state_events,
        &mut summary,
        None,
        &mut Decrypted::default(),
        &mut Place::Existing,
    )?;
    let own_join = state.iter().find_map(|raw| {
        let event = RoomEvent::parse(raw)?;
        let joined = event.event_type == "m.room.member"
            && event.state_key.as_deref() == Some(own_user)
            && event.content.get("membership").and_then(Value::as_str) == Some("join");
        joined.then_some(event.event_id).flatten()
    });
    if !was_joined && let Some(join) = own_join {
        let mut cursor = tl::room_cursor(tx, room_id)?.ok_or_else(|| StoreError::Corrupt {
            detail: "room cursor".into(),
        })?;
        cursor.last_event_id = Some(join);
        tl::save_room_cursor(tx, room_id, &cursor)?;
    }
    Ok(summary)
}

/// Whether a `prev_batch` / `end` token can be used (sent back in a URL).
pub(crate) fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_SYNC_TOKEN_BYTES
}

/// Where back-pagination stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackStop<'a> {
    /// The event the fill must reach (a gap: the newest event stored before it).
    pub(crate) until_event: Option<&'a str>,
    /// Stop at this user's join (a gap in a room joined since: what is older is history).
    pub(crate) join_of: Option<&'a str>,
    /// Stop at an event already stored (a gap: the fill met the events before it). History
    /// skips such an event instead.
    pub(crate) at_stored: bool,
}

/// Whether `raw` is `user`'s join (not a profile change of a member already joined).
fn is_join_of(raw: &Value, event: &RoomEvent, user: &str) -> bool {
    let membership = |v: Option<&Value>| {
        v.and_then(|c| c.get("membership"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    event.event_type == "m.room.member"
        && event.state_key.as_deref() == Some(user)
        && membership(Some(&event.content)).as_deref() == Some("join")
        && membership(raw.get("unsigned").and_then(|u| u.get("prev_content"))).as_deref()
            != Some("join")
}

/// Applies one page of `/messages?dir=b` (`chunk`, newest first) to a room. The page is cut
/// where the pagination stops (see [`BackStop`]); what is before the cut takes the positions
/// `*next_ord`, `*next_ord - 1`, … (never down to `floor_ord`, the position of the last event
/// before) and is then applied oldest first, like a sync — so the checks run in the server's
/// order (of two events with one Megolm index, the earlier one is kept and the later refused
/// as a replay, as the sync does) through exactly the sync's code ([`apply_message_event`]).
/// State events are history here: not applied (the sync's state is newer). Decrypted messages
/// are added to `summary.messages`, oldest first. Returns whether the page reached where the
/// pagination stops.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_back_page(
    tx: &Connection,
    engine: &mut Engine,
    room_id: &str,
    chunk: &[Value],
    stop: BackStop<'_>,
    next_ord: &mut i64,
    floor_ord: i64,
    summary: &mut SyncSummary,
) -> Result<bool, StoreError> {
    let top = *next_ord;
    let mut kept = Vec::new();
    let mut reached = false;
    for (depth, raw) in chunk.iter().enumerate() {
        let ord = top.saturating_sub(i64::try_from(depth).unwrap_or(i64::MAX));
        if ord <= floor_ord {
            reached = true;
            break;
        }
        *next_ord = ord - 1;
        if oversized(raw) {
            summary.malformed_events += 1;
            continue;
        }
        let Some(event) = RoomEvent::parse(raw) else {
            summary.malformed_events += 1;
            continue;
        };
        if event.event_id.is_some() && event.event_id.as_deref() == stop.until_event {
            reached = true;
            break;
        }
        if event.event_type == "m.room.create" && event.state_key.as_deref() == Some("") {
            reached = true;
            break;
        }
        if event.state_key.is_some() {
            if stop
                .join_of
                .is_some_and(|user| is_join_of(raw, &event, user))
            {
                reached = true;
                break;
            }
            continue;
        }
        let Some(event_id) = event.event_id.as_deref() else {
            summary.malformed_events += 1;
            continue;
        };
        match tl::timeline_state(tx, event_id)?.as_deref() {
            None => summary.backfilled += 1,
            // Our own message, acknowledged: the server's copy takes its place.
            Some("queued" | "sent") => {}
            Some(_) if stop.at_stored => {
                reached = true;
                break;
            }
            Some(_) => continue,
        }
        kept.push((ord, event, raw));
    }
    let mut decrypted = Decrypted::default();
    for (ord, event, raw) in kept.into_iter().rev() {
        let mut place = Place::At(ord);
        apply_message_event(
            tx,
            engine,
            room_id,
            &event,
            raw,
            summary,
            &mut decrypted,
            &mut place,
        )?;
    }
    report_decrypted(tx, decrypted.ids, summary)?;
    Ok(reached)
}

/// A non-state timeline event, by sync or by back-fill, with the same checks: an encrypted
/// event is decrypted (sender binding, room id, replay, late keys), a message in clear is kept
/// as refused and journaled, anything else is not kept.
#[allow(clippy::too_many_arguments)]
fn apply_message_event(
    tx: &Connection,
    engine: &mut Engine,
    room_id: &str,
    event: &RoomEvent,
    raw: &Value,
    summary: &mut SyncSummary,
    decrypted: &mut Decrypted,
    place: &mut Place<'_>,
) -> Result<(), StoreError> {
    match event.event_type.as_str() {
        "m.room.encrypted" if super::relations::arrived_redacted(raw) => {
            // Redacted on the server before it reached us: nothing to decrypt. (A stored
            // event is erased only by a redaction event, checked.)
            if let Some(event_id) = event.event_id.as_deref()
                && tl::timeline_state(tx, event_id)?.is_none()
            {
                tombstone(tx, room_id, event_id, event, place, Tombstone::Redacted)?;
            }
            Ok(())
        }
        "m.room.encrypted" => {
            decrypt_room_event(tx, engine, room_id, event, raw, summary, decrypted, place)
        }
        "m.room.redaction" => super::relations::apply_redaction(tx, room_id, event, raw, summary),
        "m.room.message" => {
            // Nothing is ever accepted in clear: the event is kept as refused, never shown.
            let Some(event_id) = event.event_id.as_deref() else {
                return Ok(());
            };
            if tl::timeline_state(tx, event_id)?.is_some() {
                return Ok(());
            }
            tl::save_timeline_event(
                tx,
                &NewTimelineEvent {
                    event_id,
                    room_id,
                    sender: &event.sender,
                    origin_ts: ts(event),
                    state: "refused",
                    session_id: None,
                    sender_device: None,
                    trust: None,
                    body: None,
                    raw: None,
                    error: Some("unencrypted message refused"),
                    attachment: None,
                    ord: place.take(),
                },
            )?;
            security_event(
                tx,
                summary,
                "unencrypted_message_refused",
                Some(room_id),
                Some(&event.sender),
                event_id,
            )
        }
        _ => Ok(()),
    }
}

/// Whether a Megolm failure means the room key (or its earlier part) has not arrived yet,
/// rather than a refusal.
pub(crate) fn waits_for_key(e: &CryptoError) -> bool {
    matches!(e, CryptoError::UnknownSession { .. })
        || matches!(e, CryptoError::MegolmDecrypt { detail } if detail.contains("unknown message index"))
}

/// Keeps an arriving event as a tombstone only (see [`Tombstone`]).
fn tombstone(
    tx: &Connection,
    room_id: &str,
    event_id: &str,
    event: &RoomEvent,
    place: &mut Place<'_>,
    why: Tombstone,
) -> Result<(), StoreError> {
    store::relations::save_tombstone(
        tx,
        &ArrivingTombstone {
            event_id,
            room_id,
            sender: &event.sender,
            origin_ts: ts(event),
            ord: place.take(),
        },
        why,
    )
}

fn ts(event: &RoomEvent) -> i64 {
    event
        .origin_server_ts
        .and_then(|t| i64::try_from(t).ok())
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn decrypt_room_event(
    tx: &Connection,
    engine: &Engine,
    room_id: &str,
    event: &RoomEvent,
    raw: &Value,
    summary: &mut SyncSummary,
    decrypted: &mut Decrypted,
    place: &mut Place<'_>,
) -> Result<(), StoreError> {
    let Some(event_id) = event.event_id.as_deref() else {
        summary.malformed_events += 1;
        return Ok(());
    };
    let known = tl::timeline_state(tx, event_id)?;
    if matches!(known.as_deref(), Some("decrypted" | "redacted" | "expired")) {
        // Seen before (a gappy sync can repeat events), or erased: never decrypted again.
        return Ok(());
    }
    // Older than its room's lifetime already (scroll-back, a gap): never decrypted.
    if known.is_none()
        && store::retention::expired(tx, room_id, ts(event), crate::store::crypto::now_ms())?
    {
        return tombstone(tx, room_id, event_id, event, place, Tombstone::Expired);
    }
    // The timeline row of an event id keeps its first room and sender: a second event under
    // the same id from another sender or room must not fill in its body (a server could
    // otherwise show anyone's message under the sender of a fake pending event).
    if known.is_some()
        && let Some(first) = tl::timeline_event(tx, event_id)?
        && (first.room_id != room_id || first.sender != event.sender)
    {
        return security_event(
            tx,
            summary,
            "event_id_reuse_refused",
            Some(room_id),
            Some(&event.sender),
            event_id,
        );
    }
    let session_id = Engine::session_id_of(event);
    let base = NewTimelineEvent {
        event_id,
        room_id,
        sender: &event.sender,
        origin_ts: ts(event),
        state: "decrypted",
        session_id,
        sender_device: None,
        trust: None,
        body: None,
        raw: None,
        error: None,
        attachment: None,
        ord: place.take(),
    };
    match engine.megolm_decrypt(tx, room_id, event, &mut decrypted.cache) {
        Ok(d) => {
            let message = d.event_type == "m.room.message";
            let body = message
                .then(|| d.content.get("body").and_then(Value::as_str))
                .flatten();
            // An attachment is kept only once its `EncryptedFile` validated; a media message
            // with a clear `url` or a malformed `file` stays readable as text, marked, and is
            // journalled.
            let (attachment, refused) = if message {
                match super::media::attachment_column(&d.content) {
                    Ok(column) => (column, None),
                    Err(why) => (None, Some(why)),
                }
            } else {
                (None, None)
            };
            tl::save_timeline_event(
                tx,
                &NewTimelineEvent {
                    sender_device: Some(&d.sender_device),
                    trust: Some(d.trust),
                    body,
                    // `session_id` stays the event's own: the session that decrypted it.
                    error: refused,
                    attachment: attachment.as_deref(),
                    ..base
                },
            )?;
            // New to the member (appended, or unlocked by a late key), not history.
            if !matches!(place, Place::At(_)) {
                decrypted.push_candidate(PushCandidate {
                    room_id: room_id.to_owned(),
                    event_id: event_id.to_owned(),
                    event: serde_json::json!({
                        "type": d.event_type,
                        "sender": event.sender,
                        "content": d.content,
                    }),
                    origin_server_ts: event.origin_server_ts.unwrap_or_default(),
                    sender_device: Some(d.sender_device.clone()),
                    trust: Some(d.trust),
                });
            }
            if is_verification(&d.event_type, &d.content) {
                summary.verification_events.push(VerificationEvent {
                    sender: event.sender.clone(),
                    event_type: d.event_type.clone(),
                    content: d.content.clone(),
                    room: Some((
                        room_id.to_owned(),
                        event_id.to_owned(),
                        event.origin_server_ts.unwrap_or_default(),
                    )),
                });
            }
            if let Some(why) = refused {
                security_event(
                    tx,
                    summary,
                    "attachment_refused",
                    Some(room_id),
                    Some(&event.sender),
                    &format!("{event_id}: {why}"),
                )?;
            }
            decrypted.ids.push(event_id.to_owned());
            if message {
                super::relations::after_decrypt(tx, event_id, &d.content, summary)?;
            } else {
                super::relations::after_store(tx, event_id, summary)?;
            }
        }
        Err(e) => {
            let e = fatal(e)?;
            let pending = waits_for_key(&e);
            let raw_json = raw.to_string();
            let message = e.to_string();
            tl::save_timeline_event(
                tx,
                &NewTimelineEvent {
                    state: if pending { "undecryptable" } else { "refused" },
                    raw: pending.then_some(raw_json.as_str()),
                    error: Some(&message),
                    ..base
                },
            )?;
            if !pending {
                security_event(
                    tx,
                    summary,
                    &format!("megolm_{}", e.code()),
                    Some(room_id),
                    Some(&event.sender),
                    &message,
                )?;
            }
            super::relations::after_store(tx, event_id, summary)?;
        }
    }
    Ok(())
}

fn apply_state_event(
    tx: &Connection,
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
            let before = store::rooms::member(tx, room_id, state_key)?;
            store::rooms::upsert_member(
                tx,
                room_id,
                state_key,
                &member.membership,
                member.displayname.as_deref(),
            )?;
            // A joined member who takes another name (or organisation) may be passing for
            // someone else: journaled, with both names as shown (neutralised).
            if let Some((was, old_name)) = before
                && was == "join"
                && member.membership == "join"
                && old_name.as_deref() != member.displayname.as_deref()
            {
                let shown =
                    |name: Option<&str>| crate::display_name::parse(name, state_key, &[]).shown();
                security_event(
                    tx,
                    summary,
                    "display_name_changed",
                    Some(room_id),
                    Some(state_key),
                    &format!(
                        "display name changed from \"{}\" to \"{}\"",
                        shown(old_name.as_deref()),
                        shown(member.displayname.as_deref())
                    ),
                )?;
            }
            let encrypted = store::rooms::room_encryption(tx, room_id)?.is_some();
            match member.membership.as_str() {
                "join" | "invite" if encrypted => {
                    cdb::track_user(tx, state_key)?;
                }
                // A member left: the next message uses a new Megolm session they never get.
                "leave" | "ban" if cdb::discard_outbound_session(tx, room_id)? => {
                    tracing::info!(
                        room_id,
                        user_id = state_key,
                        "member left; Megolm session rotated"
                    );
                }
                _ => {}
            }
        }
        "m.room.name" if state_key.is_empty() => {
            let name = event.content.get("name").and_then(Value::as_str);
            store::rooms::set_room_name(tx, room_id, name.filter(|n| !n.is_empty()))?;
        }
        "m.room.encryption" if state_key.is_empty() => {
            apply_encryption(tx, room_id, event, summary)?;
        }
        "m.room.create" if state_key.is_empty() => {
            store::push::set_creators(tx, room_id, &event.sender, &event.content)?;
        }
        "m.room.retention" if state_key.is_empty() => {
            // `max_lifetime` in ms; absent, or not a positive integer: no lifetime.
            let lifetime = event
                .content
                .get("max_lifetime")
                .and_then(Value::as_i64)
                .filter(|ms| *ms > 0);
            store::retention::set_room_retention(tx, room_id, lifetime)?;
        }
        "m.room.power_levels" if state_key.is_empty() => {
            store::push::set_power_levels(
                tx,
                room_id,
                &store::push::NotificationPowers::from_content(&event.content),
            )?;
        }
        _ => return Ok(()),
    }
    summary.state_events += 1;
    Ok(())
}

fn apply_encryption(
    tx: &Connection,
    room_id: &str,
    event: &RoomEvent,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    let algorithm = event.content.get("algorithm").and_then(Value::as_str);
    let current = store::rooms::room_encryption(tx, room_id)?;
    match (current.as_deref(), algorithm) {
        (Some(known), Some(new)) if known == new => Ok(()),
        (None, Some(MEGOLM_ALGORITHM)) => {
            store::rooms::set_room_encryption(tx, room_id, MEGOLM_ALGORITHM)?;
            // Members seen before the encryption event are tracked from now on.
            for m in store::rooms::member_ids(tx, room_id)? {
                cdb::track_user(tx, &m)?;
            }
            Ok(())
        }
        (None, other) => security_event(
            tx,
            summary,
            "unsupported_encryption_refused",
            Some(room_id),
            Some(&event.sender),
            &format!("m.room.encryption with algorithm {other:?} ignored"),
        ),
        (Some(known), other) => security_event(
            tx,
            summary,
            "encryption_change_refused",
            Some(room_id),
            Some(&event.sender),
            &format!("attempt to change room encryption from {known} to {other:?} ignored"),
        ),
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
        let s = store.transaction(|tx| apply(tx, &first, None)).unwrap();
        assert_eq!((s.rooms, s.malformed_events, s.security_events), (2, 1, 0));
        assert_eq!(s.next_batch, "s1");
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
        let s = store.transaction(|tx| apply(tx, &second, None)).unwrap();
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
    fn events_larger_than_the_specification_allows_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let name = |name: &str| json!({"type": "m.room.name", "state_key": "", "sender": "@a:srv", "content": {"name": name}});
        let mut with_unsigned = name("Cabinet");
        with_unsigned["unsigned"] = json!({"prev_content": {"name": "x".repeat(MAX_EVENT_BYTES)}});
        assert!(!oversized(&with_unsigned));
        assert!(oversized(&name(&"x".repeat(MAX_EVENT_BYTES))));
        let r = response(
            json!({"next_batch": "s1", "rooms": {"join": {"!r:srv": {"timeline": {"events": [
            with_unsigned, name(&"x".repeat(10 * 1024 * 1024))]}}}}}),
        );
        let s = store.transaction(|tx| apply(tx, &r, None)).unwrap();
        assert_eq!((s.malformed_events, s.state_events), (1, 1));
        let room = store.room("!r:srv").unwrap().unwrap();
        assert_eq!(room.name.as_deref(), Some("Cabinet"));
    }

    #[test]
    fn tokens_left_behind_are_recognised_and_the_history_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        store
            .transaction(|tx| {
                remember_token(tx, None, "s1")?; // the first sync: nothing behind us
                remember_token(tx, Some("s1"), "s1")?; // nothing new: same token
                assert!(!seen_token(tx, "s1")?);
                remember_token(tx, Some("s1"), "s2")?;
                assert!(seen_token(tx, "s1")?);
                assert!(!seen_token(tx, "s2")?);
                for n in 2..(TOKEN_HISTORY + 10) {
                    remember_token(tx, Some(&format!("s{n}")), &format!("s{}", n + 1))?;
                }
                assert_eq!(token_history(tx)?.len(), TOKEN_HISTORY);
                assert!(!seen_token(tx, "s1")?, "the oldest tokens are forgotten");
                assert!(seen_token(tx, &format!("s{}", TOKEN_HISTORY + 9))?);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_failed_apply_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_b, vault) = test_vault(dir.path());
        let mut store = Store::open(dir.path(), &vault.database_key()).unwrap();
        let r = response(json!({"next_batch": "s9", "rooms": {"join": {"!r:srv": {}}}}));
        let result: Result<(), StoreError> = store.transaction(|tx| {
            apply(tx, &r, None)?;
            Err(StoreError::Corrupt {
                detail: "injected".into(),
            })
        });
        assert!(result.is_err());
        assert_eq!(store.next_batch().unwrap(), None);
        assert!(store.rooms().unwrap().is_empty());
    }
}
