//! An independent Matrix E2EE peer: `matrix-sdk` 0.18 (DESIGN §9) with its own SQLite store
//! in a temporary directory, its own device, E2EE on, talking to the shared testbed Synapse
//! over the run's PKI.
//!
//! A peer can also log in on another testbed Synapse ([`Peer::login_on`]), e.g. the
//! legacy-media one behind the content scanner; it always talks to that Synapse directly.
//!
//! TLS: the only trust anchor is the run's root CA (`ClientBuilder::add_root_certificates` +
//! `disable_built_in_root_certificates`, which matrix-sdk turns into reqwest's
//! `tls_certs_only`: a rustls webpki verifier over that one root, no platform verifier, no
//! system roots).
//!
//! The peer does not run a background sync loop: every sync is explicit ([`Peer::sync_once`]),
//! and what each sync response carries (the rooms' timelines, already decrypted by the SDK
//! when it could) is recorded in the peer's own log. Events the SDK could not decrypt are kept
//! and retried after every later sync, so a room key that arrives late still counts;
//! [`Peer::undecryptable`] lists those that never decrypted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::config::{RequestConfig, SyncSettings};
use matrix_sdk::deserialized_responses::{TimelineEvent, TimelineEventKind};
use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
use matrix_sdk::reqwest::Certificate;
use matrix_sdk::ruma::api::Metadata;
use matrix_sdk::ruma::api::client::authenticated_media::get_content::v1::Request as AuthenticatedDownload;
use matrix_sdk::ruma::api::client::room::create_room::v3::{
    Request as CreateRoomRequest, RoomPreset,
};
use matrix_sdk::ruma::api::client::room::get_room_event::v3::Request as GetRoomEventRequest;
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::{
    FileMessageEventContent, MessageType, RoomMessageEventContent,
};
use matrix_sdk::ruma::events::{
    AnySyncMessageLikeEvent, AnySyncTimelineEvent, InitialStateEvent, SyncMessageLikeEvent,
};
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{
    DeviceId, EventId, MxcUri, OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId,
    UserId,
};
use matrix_sdk::{Client, Room};
use serde_json::Value;
use tchap_secure_tests::synapse::Synapse;
use tempfile::TempDir;

/// Long-poll timeout of one `/sync`: short, the tests loop themselves.
const SYNC_TIMEOUT: Duration = Duration::from_millis(500);

/// A decrypted `m.room.message` with an `m.text` body.
#[derive(Clone, Debug)]
struct Text {
    room: OwnedRoomId,
    sender: OwnedUserId,
    event_id: OwnedEventId,
    body: String,
    /// The decrypted content as JSON, exactly as the sender wrote it (relations, mentions).
    content: Value,
}

/// An `m.room.redaction` the peer's syncs delivered.
#[derive(Clone, Debug)]
pub struct SeenRedaction {
    pub room: OwnedRoomId,
    pub sender: OwnedUserId,
    /// The event it redacts (`content.redacts`, or the top-level `redacts` of older rooms).
    pub redacts: String,
}

/// A decrypted `m.room.message` with an `m.file` msgtype.
#[derive(Clone, Debug)]
pub struct FileMessage {
    pub room: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_id: OwnedEventId,
    /// The content as ruma parses it (`source` is `MediaSource::Encrypted` for a `file`,
    /// `Plain` for a clear `url`).
    pub content: FileMessageEventContent,
    /// The decrypted content as JSON, exactly as the sender wrote it.
    pub json: Value,
}

/// An event the SDK could not decrypt (yet).
#[derive(Clone, Debug)]
struct Pending {
    room: OwnedRoomId,
    event_id: OwnedEventId,
    raw: Raw<AnySyncTimelineEvent>,
}

/// Everything the peer's syncs delivered.
#[derive(Debug, Default)]
struct Log {
    texts: Vec<Text>,
    files: Vec<FileMessage>,
    redactions: Vec<SeenRedaction>,
    /// Encrypted events that decrypted (any type), by id.
    decrypted: HashSet<OwnedEventId>,
    /// Encrypted events that have not decrypted so far.
    pending: Vec<Pending>,
}

/// One matrix-sdk client on its own device and store.
pub struct Peer {
    pub client: Client,
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    log: Arc<Mutex<Log>>,
    _store: TempDir,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Logs `localpart` (already registered with `synapse.register`) in on a new device with a
    /// fresh store, then syncs once so the device's identity and one-time keys are uploaded
    /// before anyone tries to share a room key with it.
    pub async fn login(localpart: &str, password: &str) -> Peer {
        Self::login_on(Synapse::shared(), localpart, password).await
    }

    /// [`Peer::login`] on `synapse` (e.g. [`Synapse::shared_legacy_media`]), reached directly
    /// at its `base_url` with its PKI's root CA as the only trust anchor.
    pub async fn login_on(synapse: &Synapse, localpart: &str, password: &str) -> Peer {
        let store = tempfile::tempdir().expect("temporary directory for the peer's store");
        let client = client_trusting(&synapse.base_url, &synapse.pki.root_ca_pem, &store)
            .await
            .unwrap_or_else(|e| panic!("build the matrix-sdk client: {e}"));
        client
            .matrix_auth()
            .login_username(localpart, password)
            .initial_device_display_name("matrix-sdk interop peer")
            .await
            .unwrap_or_else(|e| panic!("matrix-sdk login of {localpart}: {e}"));
        let user_id = client.user_id().expect("logged in: user id").to_owned();
        let device_id = client.device_id().expect("logged in: device id").to_owned();
        let peer = Peer {
            client,
            user_id,
            device_id,
            log: Arc::default(),
            _store: store,
        };
        peer.sync_once().await;
        peer
    }

    /// One `/sync` (short long-poll): the SDK processes to-device messages (room keys) and
    /// device-list changes, sends its outgoing E2EE requests (key upload/query/claim) before
    /// and after, and decrypts the rooms' timelines; the peer records what arrived and retries
    /// the events that did not decrypt before.
    pub async fn sync_once(&self) {
        let response = self
            .client
            .sync_once(SyncSettings::default().timeout(SYNC_TIMEOUT))
            .await
            .unwrap_or_else(|e| panic!("{}: sync: {e}", self.user_id));
        let timelines = response
            .rooms
            .joined
            .iter()
            .map(|(room, update)| (room, &update.timeline.events))
            .chain(
                response
                    .rooms
                    .left
                    .iter()
                    .map(|(room, update)| (room, &update.timeline.events)),
            );
        {
            let mut log = self.log.lock().expect("peer log lock");
            for (room, events) in timelines {
                for event in events {
                    log.record(room, event);
                }
            }
        }
        self.retry_pending().await;
    }

    /// Creates a private room with `m.room.encryption` (Megolm, recommended rotation) in its
    /// initial state, inviting `invite`.
    pub async fn create_encrypted_room(&self, invite: &[OwnedUserId]) -> OwnedRoomId {
        let mut request = CreateRoomRequest::new();
        request.invite = invite.to_vec();
        request.preset = Some(RoomPreset::PrivateChat);
        request.initial_state = vec![
            InitialStateEvent::with_empty_state_key(
                RoomEncryptionEventContent::with_recommended_defaults(),
            )
            .to_raw_any(),
        ];
        let room = self
            .client
            .create_room(request)
            .await
            .unwrap_or_else(|e| panic!("{}: create room: {e}", self.user_id));
        room.room_id().to_owned()
    }

    /// Joins `room` (the invitation need not have been synced).
    pub async fn join(&self, room: &RoomId) {
        self.client
            .join_room_by_id(room)
            .await
            .unwrap_or_else(|e| panic!("{}: join {room}: {e}", self.user_id));
    }

    /// Leaves `room`.
    pub async fn leave(&self, room: &RoomId) {
        self.room(room)
            .leave()
            .await
            .unwrap_or_else(|e| panic!("{}: leave {room}: {e}", self.user_id));
    }

    /// Sends an encrypted `m.room.message` `m.text`. The SDK first makes sure every member
    /// device has the current outbound Megolm session (members, `/keys/query`,
    /// `/keys/claim`, Olm-encrypted `m.room_key` to-device). Panics if the room is not
    /// encrypted, so a test can never send plaintext by mistake.
    pub async fn send_text(&self, room: &RoomId, body: &str) -> OwnedEventId {
        let joined = self.encrypted_room(room).await;
        let sent = joined
            .send(RoomMessageEventContent::text_plain(body))
            .await
            .unwrap_or_else(|e| panic!("{}: send to {room}: {e}", self.user_id));
        assert!(
            sent.encryption_info.is_some(),
            "{}: the SDK sent {} unencrypted",
            self.user_id,
            sent.response.event_id
        );
        sent.response.event_id
    }

    /// Sends `data` as an attachment with `Room::send_attachment`: in an encrypted room the SDK
    /// encrypts the file (AES-256-CTR, fresh key and IV, SHA-256 of the ciphertext), uploads
    /// the ciphertext (`POST /_matrix/media/v3/upload`) and sends an `m.room.message` whose
    /// msgtype follows `mimetype` (`m.file` for `application/*`) with the `EncryptedFile` as
    /// its `file`, Megolm-encrypted. Panics if the room is not encrypted. The SDK returns only
    /// the event id: check the server's copy ([`Peer::megolm_session_of`]) for encryption.
    pub async fn send_attachment(
        &self,
        room: &RoomId,
        filename: &str,
        mimetype: &str,
        data: Vec<u8>,
        config: AttachmentConfig,
    ) -> OwnedEventId {
        let joined = self.encrypted_room(room).await;
        let Ok(content_type) = mimetype.parse() else {
            panic!("{mimetype:?} is not a media type");
        };
        joined
            .send_attachment(filename, &content_type, data, config)
            .await
            .unwrap_or_else(|e| panic!("{}: send {filename} to {room}: {e}", self.user_id))
            .event_id
    }

    /// Syncs until the decrypted `m.file` message `event_id` is seen in `room` (sent by anyone,
    /// this peer included), or `timeout`.
    pub async fn wait_for_file(
        &self,
        room: &RoomId,
        event_id: &EventId,
        timeout: Duration,
    ) -> Option<FileMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = {
                let log = self.log.lock().expect("peer log lock");
                log.files
                    .iter()
                    .find(|f| f.room == room && f.event_id == event_id)
                    .cloned()
            };
            if found.is_some() {
                return found;
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.sync_once().await;
        }
    }

    /// The attachment of `content`, downloaded and decrypted by the SDK (`Media::get_file`,
    /// no cache): straight from Synapse, the SDK knows no content scanner. The SDK checks the
    /// ciphertext's SHA-256 against `hashes.sha256` before it returns the plaintext.
    pub async fn download_file(&self, content: &FileMessageEventContent) -> Vec<u8> {
        self.client
            .media()
            .get_file(content, false)
            .await
            .unwrap_or_else(|e| panic!("{}: download the file: {e}", self.user_id))
            .unwrap_or_else(|| panic!("{}: the file message has no source", self.user_id))
    }

    /// The bytes the server stores at `uri`, as they are: downloaded as a plain (unencrypted)
    /// media, nothing decrypted.
    pub async fn download_stored(&self, uri: &MxcUri) -> Vec<u8> {
        let request = MediaRequestParameters {
            source: MediaSource::Plain(uri.to_owned()),
            format: MediaFormat::File,
        };
        self.client
            .media()
            .get_media_content(&request, false)
            .await
            .unwrap_or_else(|e| panic!("{}: download {uri} as stored: {e}", self.user_id))
    }

    /// The download endpoint the SDK picks on this server, by the SDK's own rule
    /// (`Media::get_media_content`): the authenticated `/_matrix/client/v1/media/download` if
    /// the server's `/versions` allow it (Matrix 1.11, or `org.matrix.msc3916.stable`), else
    /// the legacy `/_matrix/media/v3/download`.
    pub async fn media_download_endpoint(&self) -> &'static str {
        let versions = self
            .client
            .supported_versions()
            .await
            .unwrap_or_else(|e| panic!("{}: the server's versions: {e}", self.user_id));
        if AuthenticatedDownload::PATH_BUILDER.is_supported(&versions) {
            "/_matrix/client/v1/media/download"
        } else {
            "/_matrix/media/v3/download"
        }
    }

    /// Syncs until a decrypted `m.room.message` with this body is seen in `room`, or
    /// `timeout`; returns its sender and event id.
    pub async fn wait_for_text(
        &self,
        room: &RoomId,
        body: &str,
        timeout: Duration,
    ) -> Option<(OwnedUserId, OwnedEventId)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.text(room, body) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.sync_once().await;
        }
    }

    /// Syncs until this peer's view of `room` has `user` with `membership`, or `timeout`;
    /// returns whether it got there.
    pub async fn wait_for_membership(
        &self,
        room: &RoomId,
        user: &UserId,
        membership: MembershipState,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(known) = self.client.get_room(room) {
                let member = known
                    .get_member_no_sync(user)
                    .await
                    .unwrap_or_else(|e| panic!("{}: member {user} of {room}: {e}", self.user_id));
                if member.is_some_and(|m| *m.membership() == membership) {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.sync_once().await;
        }
    }

    /// Syncs until this peer knows `device` of `user` (its keys were queried after a
    /// `device_lists` change, or on first contact), or `timeout`; returns whether it does. A
    /// room key is shared only with the devices the sender knows when it sends.
    pub async fn wait_for_device(
        &self,
        user: &UserId,
        device: &DeviceId,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let devices = self
                .client
                .encryption()
                .get_user_devices(user)
                .await
                .unwrap_or_else(|e| panic!("{}: devices of {user}: {e}", self.user_id));
            if devices.get(device).is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.sync_once().await;
        }
    }

    /// Every event id in `room`'s timeline (since the peer started) that it could not
    /// decrypt, even after retrying with the keys that arrived later.
    pub fn undecryptable(&self, room: &RoomId) -> Vec<OwnedEventId> {
        let log = self.log.lock().expect("peer log lock");
        log.pending
            .iter()
            .filter(|p| p.room == room)
            .map(|p| p.event_id.clone())
            .collect()
    }

    /// Whether this peer can decrypt `raw` (an encrypted event as the server stores it), with
    /// the keys it holds now.
    pub async fn can_decrypt(&self, room: &RoomId, raw: &Value) -> bool {
        let Some(r) = self.client.get_room(room) else {
            return false;
        };
        let Ok(raw) = serde_json::value::to_raw_value(raw) else {
            return false;
        };
        let raw: Raw<AnySyncTimelineEvent> = Raw::from_json(raw);
        matches!(
            r.decrypt_event(raw.cast_ref_unchecked(), None).await,
            Ok(e) if matches!(e.kind, TimelineEventKind::Decrypted(_))
        )
    }

    /// Forces a new outbound Megolm session for `room`: the next message creates and shares
    /// a fresh one.
    pub async fn rotate(&self, room: &RoomId) {
        self.room(room)
            .discard_room_key()
            .await
            .unwrap_or_else(|e| panic!("{}: discard the room key of {room}: {e}", self.user_id));
    }

    /// The `session_id` of the Megolm session that encrypted `event_id`, read from the event's
    /// raw (still encrypted) content as the server serves it
    /// (`GET /rooms/{room}/event/{event}`), not from the SDK's decryption.
    pub async fn megolm_session_of(&self, room: &RoomId, event_id: &EventId) -> String {
        let response = self
            .client
            .send(GetRoomEventRequest::new(
                room.to_owned(),
                event_id.to_owned(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{}: get {event_id} in {room}: {e}", self.user_id));
        let event: Value =
            serde_json::from_str(response.event.json().get()).expect("the server's event is JSON");
        assert_eq!(
            event["type"], "m.room.encrypted",
            "{event_id} is not encrypted: {event}"
        );
        assert_eq!(
            event["content"]["algorithm"], "m.megolm.v1.aes-sha2",
            "{event_id} is not Megolm: {event}"
        );
        event["content"]["session_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no session_id in {event}"))
            .to_owned()
    }

    /// `room`, after checking it is encrypted: a test never sends plaintext by mistake.
    async fn encrypted_room(&self, room: &RoomId) -> Room {
        let joined = self.room(room);
        let encryption = joined
            .latest_encryption_state()
            .await
            .unwrap_or_else(|e| panic!("{}: encryption state of {room}: {e}", self.user_id));
        assert!(
            encryption.is_encrypted(),
            "{}: {room} is not encrypted, refusing to send plaintext",
            self.user_id
        );
        joined
    }

    fn room(&self, room: &RoomId) -> Room {
        self.client
            .get_room(room)
            .unwrap_or_else(|| panic!("{}: room {room} is unknown to the peer", self.user_id))
    }

    /// Syncs until a decrypted text message of `room` whose content satisfies `matches` is
    /// seen, or `timeout`; returns its sender, event id and content.
    pub async fn wait_for_content(
        &self,
        room: &RoomId,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<(OwnedUserId, OwnedEventId, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = {
                let log = self.log.lock().expect("peer log lock");
                log.texts
                    .iter()
                    .find(|t| t.room == room && matches(&t.content))
                    .map(|t| (t.sender.clone(), t.event_id.clone(), t.content.clone()))
            };
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            self.sync_once().await;
        }
    }

    /// Syncs until a redaction of `event` in `room` is seen, or `timeout`; returns it.
    pub async fn wait_for_redaction(
        &self,
        room: &RoomId,
        event: &str,
        timeout: Duration,
    ) -> Option<SeenRedaction> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = {
                let log = self.log.lock().expect("peer log lock");
                log.redactions
                    .iter()
                    .find(|r| r.room == room && r.redacts == event)
                    .cloned()
            };
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            self.sync_once().await;
        }
    }

    /// Sends `content` as an `m.room.message` exactly as given (the SDK encrypts it, and
    /// copies its `m.relates_to` into the clear part as it does for every event).
    pub async fn send_raw_message(&self, room: &RoomId, content: Value) -> OwnedEventId {
        let joined = self.encrypted_room(room).await;
        let sent = joined
            .send_raw("m.room.message", content)
            .await
            .unwrap_or_else(|e| panic!("{}: send_raw to {room}: {e}", self.user_id));
        assert!(sent.encryption_info.is_some(), "sent unencrypted");
        sent.response.event_id
    }

    /// Redacts `event` in `room` (`Room::redact`).
    pub async fn redact(&self, room: &RoomId, event: &EventId) -> OwnedEventId {
        let joined = self.encrypted_room(room).await;
        joined
            .redact(event, None, None)
            .await
            .unwrap_or_else(|e| panic!("{}: redact in {room}: {e}", self.user_id))
            .event_id
    }

    fn text(&self, room: &RoomId, body: &str) -> Option<(OwnedUserId, OwnedEventId)> {
        let log = self.log.lock().expect("peer log lock");
        log.texts
            .iter()
            .find(|t| t.room == room && t.body == body)
            .map(|t| (t.sender.clone(), t.event_id.clone()))
    }

    /// Tries again to decrypt every event that did not decrypt so far, with whatever keys the
    /// SDK holds now.
    async fn retry_pending(&self) {
        let pending = self.log.lock().expect("peer log lock").pending.clone();
        for event in pending {
            let Some(room) = self.client.get_room(&event.room) else {
                continue;
            };
            let Ok(retried) = room
                .decrypt_event(event.raw.cast_ref_unchecked(), None)
                .await
            else {
                continue;
            };
            if matches!(retried.kind, TimelineEventKind::Decrypted(_)) {
                let mut log = self.log.lock().expect("peer log lock");
                log.pending.retain(|p| p.event_id != event.event_id);
                log.record(&event.room, &retried);
            }
        }
    }
}

impl Log {
    fn record(&mut self, room: &RoomId, event: &TimelineEvent) {
        let Some(event_id) = event.event_id() else {
            return;
        };
        match &event.kind {
            TimelineEventKind::UnableToDecrypt { event: raw, .. } => {
                if !self.decrypted.contains(&event_id)
                    && !self.pending.iter().any(|p| p.event_id == event_id)
                {
                    self.pending.push(Pending {
                        room: room.to_owned(),
                        event_id,
                        raw: raw.clone(),
                    });
                }
            }
            TimelineEventKind::Decrypted(_) => {
                if !self.decrypted.insert(event_id.clone()) {
                    return;
                }
                let Ok(AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
                    SyncMessageLikeEvent::Original(message),
                ))) = event.raw().deserialize()
                else {
                    return;
                };
                match message.content.msgtype {
                    MessageType::Text(text) => self.texts.push(Text {
                        room: room.to_owned(),
                        sender: message.sender,
                        event_id,
                        body: text.body,
                        content: serde_json::from_str::<Value>(event.raw().json().get())
                            .ok()
                            .and_then(|mut e| e.get_mut("content").map(Value::take))
                            .unwrap_or_default(),
                    }),
                    MessageType::File(content) => {
                        let json = serde_json::from_str::<Value>(event.raw().json().get())
                            .ok()
                            .and_then(|mut e| e.get_mut("content").map(Value::take))
                            .unwrap_or_default();
                        self.files.push(FileMessage {
                            room: room.to_owned(),
                            sender: message.sender,
                            event_id,
                            content,
                            json,
                        });
                    }
                    _ => {}
                }
            }
            // Plaintext events (state, or a cleartext message) never count as decrypted text;
            // a redaction travels in clear.
            TimelineEventKind::PlainText { .. } => {
                let Ok(json) = serde_json::from_str::<Value>(event.raw().json().get()) else {
                    return;
                };
                if json.get("type").and_then(Value::as_str) != Some("m.room.redaction") {
                    return;
                }
                let redacts = json
                    .pointer("/content/redacts")
                    .or_else(|| json.get("redacts"))
                    .and_then(Value::as_str);
                let sender = json
                    .get("sender")
                    .and_then(Value::as_str)
                    .and_then(|s| UserId::parse(s).ok());
                if let (Some(redacts), Some(sender)) = (redacts, sender) {
                    self.redactions.push(SeenRedaction {
                        room: room.to_owned(),
                        sender,
                        redacts: redacts.to_owned(),
                    });
                }
            }
        }
    }
}

/// A matrix-sdk client on `homeserver_url` whose only TLS trust anchors are the certificates
/// in `roots_pem`, with its SQLite store (state, crypto, event cache) in `store`, once it has
/// fetched `/versions` over that TLS (building the client alone sends no request).
pub async fn client_trusting(
    homeserver_url: &str,
    roots_pem: &str,
    store: &TempDir,
) -> Result<Client, String> {
    let roots = Certificate::from_pem_bundle(roots_pem.as_bytes())
        .map_err(|e| format!("parse the roots PEM: {e}"))?;
    assert!(!roots.is_empty(), "no certificate in the roots PEM");
    // Room keys go to every device of every member: the SDK's default `AllDevices` strategy
    // (the testbed's devices are not cross-signed), left as is.
    let client = Client::builder()
        .homeserver_url(homeserver_url)
        .sqlite_store(store.path(), None)
        .add_root_certificates(roots)
        .disable_built_in_root_certificates()
        .build()
        .await
        .map_err(|e| format!("build: {e:?}"))?;
    connects(&client).await?;
    Ok(client)
}

/// One uncached `GET /_matrix/client/versions`, not retried (a TLS refusal is final).
pub async fn connects(client: &Client) -> Result<(), String> {
    client
        .fetch_server_versions(Some(RequestConfig::new().disable_retry()))
        .await
        .map(|_| ())
        .map_err(|e| format!("GET /versions: {e:?}"))
}
