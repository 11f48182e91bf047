//! Entry points for the fuzz targets (`native/core/fuzz/`) and the property tests
//! (`src/proptests.rs`): **for fuzzing and tests only; release libraries never enable it.**
//!
//! Compiled with the `fuzzing` feature (the cargo-fuzz crate enables it) and in this crate's
//! own unit tests. The feature turns on `tchap-secure-hsm/soft-vault`, whose software KEK
//! refuses to compile in a release build: a library built with this module cannot ship.
//!
//! Every function takes untrusted bytes, feeds them to the parser the client really runs on
//! them, and returns a `Result`; none panics, whatever the input. Where the client's parser is
//! `pub(crate)` or needs a store, the wrapper gives it what the client would: a throw-away
//! SQLCipher store in a temporary directory (one per thread, made on first use), our device
//! `@bob` with its Olm account, a peer device `@alice` pinned in it, and an encrypted room both
//! are in. Each input is applied in a transaction that is always rolled back, so inputs do not
//! depend on one another.
//!
//! | parser family | entry point | code it drives |
//! | --- | --- | --- |
//! | configuration | [`config`], [`trust_anchors_pem`], [`spki_pins`] | `Config::from_json` |
//! | `/sync` body | [`sync_response`] | `SyncResponse` decoding, then `client::sync::apply` |
//! | room events | [`room_event`], [`megolm_plaintext`] | `RoomEvent::parse`, member/encryption/name content, Megolm decryption checks |
//! | to-device | [`to_device`], [`olm_plaintext`] | `ToDeviceEvent`, `olm_decrypt` payload checks, `m.room_key` |
//! | `/keys/query`, `/keys/claim` | [`keys_query`], [`keys_claim`] | `KeysQueryAnswer` decoding, `apply_keys_query_answer` (ids, signature, repeats, TOFU), `create_outbound_olm` |
//! | other API answers | [`api_response`] | `Versions`, `WhoAmI`, login and room-id answers |
//! | canonical JSON | [`canonical_json`] | `to_canonical_json`, `canonical_json_for_signing` |
//!
//! Inputs may hold placeholders (see [`PLACEHOLDERS`]) that are replaced by the fixture's real
//! keys and ciphertexts before parsing, so that a seed written by hand reaches the checks
//! after decryption and signature verification, and a crashing input found in one process
//! reproduces in another (whose keys differ).
//!
//! [`FuzzError::is_finding`] tells the outcomes that are bugs even though no panic occurred:
//! a store failure while applying a decodable sync response (the client would roll back and
//! fetch the same response again, forever: a wedge any peer could cause), and a violated
//! invariant of a parser's output.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tchap_secure_hsm::soft::SoftVault;
use tchap_secure_hsm::{Vault, VaultBinding};
use vodozemac::Curve25519PublicKey;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig as MegolmConfig};
use vodozemac::olm::{Session, SessionConfig as OlmConfig, SessionPickle};

use crate::api::types::{MEGOLM_ALGORITHM, SyncResponse};
use crate::client::sync::{self, SyncSummary};
use crate::config::{Config, ConfigError};
use crate::crypto::CryptoError;
use crate::crypto::account::{OLM_ALGORITHM, OlmAccount};
use crate::crypto::canonical_json::{
    CanonicalJsonError, canonical_json_for_signing, to_canonical_json,
};
use crate::crypto::devices::{
    DeviceChanges, KeysQueryAnswer, apply_keys_query, apply_keys_query_answer,
};
use crate::crypto::engine::Engine;
use crate::store::crypto::{self as cdb, DeviceRecord, DeviceState, InboundRow};
use crate::store::timeline::{self as tl, NewTimelineEvent};
use crate::store::{Store, StoreError};

/// Server name of the fixture.
pub const SERVER_NAME: &str = "secure.tchap.test";
/// Our user (the receiving device).
pub const OWN_USER: &str = "@bob:secure.tchap.test";
/// Our device.
pub const OWN_DEVICE: &str = "BOBDEV";
/// The peer whose device is pinned in our store.
pub const PEER_USER: &str = "@alice:secure.tchap.test";
/// The peer's device.
pub const PEER_DEVICE: &str = "ALICEDEV";
/// The encrypted room both are joined to.
pub const ROOM: &str = "!cabinet:secure.tchap.test";
/// A room we are invited to ([`room_event`] also applies the event as its invite state).
pub const INVITE_ROOM: &str = "!invite:secure.tchap.test";

/// Placeholders replaced in an input before it is parsed, and what each becomes. The
/// replacements hold no JSON metacharacter except the two that are whole JSON objects.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("$PEER_ED25519", "the peer device's Ed25519 key (base64)"),
    (
        "$PEER_CURVE25519",
        "the peer device's Curve25519 key (base64)",
    ),
    ("$OWN_ED25519", "our Ed25519 key (base64)"),
    ("$OWN_CURVE25519", "our Curve25519 key (base64)"),
    (
        "$MEGOLM_SESSION_ID",
        "id of the peer's Megolm session whose key we hold",
    ),
    (
        "$MEGOLM_CIPHERTEXT",
        "a fresh message of that session: an m.room.message for ROOM",
    ),
    (
        "$ROOM_KEY_SESSION_ID",
        "id of a Megolm session we do not hold yet (one event of ROOM waits for it)",
    ),
    ("$ROOM_KEY_SESSION_KEY", "that session's key (base64)"),
    (
        "$OLM_BODY",
        "body of a fresh Olm pre-key message (type 0) from the peer to us carrying a valid m.room_key for $ROOM_KEY_SESSION_ID",
    ),
    (
        "$PEER_DEVICE_KEYS",
        "JSON object: the peer device's signed device keys",
    ),
    (
        "$PEER_ONE_TIME_KEY",
        "JSON object: one signed one-time key of the peer device",
    ),
];

/// Why an entry point refused an input, or what it found wrong.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// The input was refused at decoding, as the client refuses it (a malformed response).
    #[error("{what} refused: {detail}")]
    Rejected {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's reason.
        detail: String,
    },
    /// The configuration validator refused the input.
    #[error("configuration refused: {0}")]
    Config(#[from] ConfigError),
    /// A check of the E2EE layer refused the input.
    #[error("refused by the E2EE layer: {0}")]
    Crypto(CryptoError),
    /// Canonical JSON refused the value (a float, an integer out of range, too deep).
    #[error("no canonical JSON: {0}")]
    Canonical(#[from] CanonicalJsonError),
    /// The store failed while applying the input. The client would roll the whole sync back
    /// and fetch the same response again: a finding, never an acceptable outcome.
    #[error("store failure while applying the input: {0}")]
    Aborted(StoreError),
    /// A parser accepted the input but its output breaks a stated invariant: a finding.
    #[error("invariant violated: {0}")]
    Invariant(String),
    /// The fixture could not be set up (nothing to do with the input).
    #[error("fuzz fixture: {0}")]
    Fixture(String),
}

impl FuzzError {
    /// Whether this outcome is a bug (fuzz targets and property tests fail on it).
    pub fn is_finding(&self) -> bool {
        matches!(
            self,
            Self::Aborted(_) | Self::Invariant(_) | Self::Fixture(_)
        )
    }
}

fn rejected(what: &'static str, e: &serde_json::Error) -> FuzzError {
    FuzzError::Rejected {
        what,
        detail: e.to_string(),
    }
}

fn invariant(condition: bool, what: &str) -> Result<(), FuzzError> {
    if condition {
        Ok(())
    } else {
        Err(FuzzError::Invariant(what.to_owned()))
    }
}

fn fixture_err(what: &str, e: impl std::fmt::Display) -> FuzzError {
    FuzzError::Fixture(format!("{what}: {e}"))
}

// -------------------------------------------------------------------------------------------
// Configuration

/// Key of the in-memory pickle of the peer's Olm session (a test fixture: not a secret).
const PEER_OLM_PICKLE_KEY: [u8; 32] = [7; 32];

/// A real self-signed P-256 certificate (the unit tests' anchor).
const ANCHOR_PEM: &str = include_str!("../testdata/anchor.pem");
const PIN_A: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
const PIN_B: &str = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";

/// [`Config::from_json`] on the raw bytes, plus the guarantees a [`Config`] makes checked on
/// every accepted document (https URL without path, at least two distinct pins, an anchor).
pub fn config(data: &[u8]) -> Result<Config, FuzzError> {
    let config = Config::from_json(data)?;
    check_config(&config)?;
    Ok(config)
}

fn check_config(c: &Config) -> Result<(), FuzzError> {
    let url = c.homeserver_url();
    invariant(url.scheme() == "https", "accepted a non-https URL")?;
    invariant(url.path() == "/", "accepted a URL with a path")?;
    invariant(
        url.query().is_none() && url.fragment().is_none(),
        "accepted a query/fragment",
    )?;
    invariant(
        url.username().is_empty() && url.password().is_none(),
        "accepted credentials",
    )?;
    invariant(!c.trust_anchors().is_empty(), "accepted no trust anchor")?;
    let pins = c.pins();
    invariant(
        pins.len() >= crate::config::MIN_PINS,
        "accepted too few pins",
    )?;
    let distinct = pins.iter().enumerate().all(|(i, p)| !pins[..i].contains(p));
    invariant(distinct, "kept a duplicate pin")?;
    invariant(!c.server_name().is_empty(), "accepted an empty server name")
}

/// `trust_anchors_pem` of an otherwise valid configuration set to `data` (as text), so every
/// input reaches the PEM parser and the X.509 check of the anchors.
pub fn trust_anchors_pem(data: &[u8]) -> Result<Config, FuzzError> {
    let pem = String::from_utf8_lossy(data);
    let document = json!({
        "homeserver_url": "https://matrix.secure.tchap.test",
        "server_name": SERVER_NAME,
        "trust_anchors_pem": pem,
        "spki_pins_sha256": [PIN_A, PIN_B],
    });
    config(document.to_string().as_bytes())
}

/// `spki_pins_sha256` of an otherwise valid configuration set to the lines of `data`, so every
/// input reaches the base64 decoding and the pin count.
pub fn spki_pins(data: &[u8]) -> Result<Config, FuzzError> {
    let pins: Vec<String> = data
        .split(|b| *b == b'\n')
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect();
    let document = json!({
        "homeserver_url": "https://matrix.secure.tchap.test",
        "server_name": SERVER_NAME,
        "trust_anchors_pem": ANCHOR_PEM,
        "spki_pins_sha256": pins,
    });
    config(document.to_string().as_bytes())
}

// -------------------------------------------------------------------------------------------
// Other API answers

/// Decodes `data` as each small answer type of the API layer (`/versions`, `/whoami`, `/login`,
/// `/createRoom`, empty objects). Returns how many of them accepted it.
pub fn api_response(data: &[u8]) -> Result<usize, FuzzError> {
    use crate::api::types::{Empty, LoginResponse, RoomIdResponse, Versions, WhoAmI};
    let accepted = [
        serde_json::from_slice::<Versions>(data).is_ok(),
        serde_json::from_slice::<WhoAmI>(data).is_ok(),
        serde_json::from_slice::<LoginResponse>(data).is_ok(),
        serde_json::from_slice::<RoomIdResponse>(data).is_ok(),
        serde_json::from_slice::<Empty>(data).is_ok(),
    ];
    match serde_json::from_slice::<Value>(data) {
        Ok(_) => Ok(accepted.iter().filter(|ok| **ok).count()),
        Err(e) => Err(rejected("API answer", &e)),
    }
}

// -------------------------------------------------------------------------------------------
// Canonical JSON

/// Parses `data` as JSON and encodes it as canonical JSON, checking on every value that has an
/// encoding: the output is JSON that parses back to a value with the same encoding
/// (idempotence), it is exactly `serde_json`'s compact form of that value (sorted keys, same
/// escapes: an independent encoder), and the signing form equals the encoding of the object
/// without its top-level `signatures` and `unsigned`. Returns the canonical text.
pub fn canonical_json(data: &[u8]) -> Result<String, FuzzError> {
    let value: Value = serde_json::from_slice(data).map_err(|e| rejected("JSON", &e))?;
    let signing = canonical_json_for_signing(&value);
    let canonical = to_canonical_json(&value)?;
    let back: Value = serde_json::from_str(&canonical)
        .map_err(|e| FuzzError::Invariant(format!("canonical output is not JSON: {e}")))?;
    let again = to_canonical_json(&back)
        .map_err(|e| FuzzError::Invariant(format!("canonical output has no encoding: {e}")))?;
    invariant(again == canonical, "canonical JSON is not idempotent")?;
    let reference = serde_json::to_string(&back)
        .map_err(|e| FuzzError::Invariant(format!("serde_json cannot write it: {e}")))?;
    invariant(
        reference == canonical,
        "canonical JSON differs from the sorted compact form",
    )?;
    if let Value::Object(map) = &value {
        let mut stripped = map.clone();
        stripped.remove("signatures");
        stripped.remove("unsigned");
        let expected = to_canonical_json(&Value::Object(stripped));
        invariant(
            signing.ok() == expected.ok(),
            "signing form is not the encoding without signatures/unsigned",
        )?;
    } else {
        invariant(
            signing == Err(CanonicalJsonError::NotAnObject),
            "signing form of a non-object",
        )?;
    }
    Ok(canonical)
}

// -------------------------------------------------------------------------------------------
// The store fixture

/// A directory under the system temporary directory, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, FuzzError> {
        let mut random = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .map_err(|_| FuzzError::Fixture("system random generator failed".into()))?;
        let name = format!(
            "tchap-secure-fuzz-{}-{}",
            std::process::id(),
            u64::from_le_bytes(random)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path).map_err(|e| fixture_err("temporary directory", e))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Our store and engine, the peer and its sessions. Field order is drop order: the store
/// closes before its directory is removed.
struct Fixture {
    store: Store,
    engine: Engine,
    vault: Vault,
    _backend: SoftVault,
    /// The peer's outbound Megolm session in [`ROOM`]; we hold its key.
    peer_group: GroupSession,
    /// A session whose key we do not hold yet (an `m.room_key` delivers it).
    room_key: GroupSession,
    /// Its key at index 0, before the pending event used that index (base64).
    room_key_export: String,
    /// The peer's Olm session to us, as it was after its first message (which we received:
    /// our side of the session is committed in the store). Restored for each input, so every
    /// input is the session's second message, which our stored session decrypts without a
    /// new key agreement and without a gap that would grow with the number of inputs.
    peer_olm: String,
    peer_device_keys: Value,
    peer_one_time_key: Value,
    peer_record: DeviceRecord,
    _dir: ScratchDir,
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's fixture, making it on first use.
fn with_fixture<T>(f: impl FnOnce(&mut Fixture) -> Result<T, FuzzError>) -> Result<T, FuzzError> {
    FIXTURE.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| FuzzError::Fixture("fixture re-entered".into()))?;
        if slot.is_none() {
            *slot = Some(Fixture::new()?);
        }
        match slot.as_mut() {
            Some(fixture) => f(fixture),
            None => Err(FuzzError::Fixture("fixture missing".into())),
        }
    })
}

impl Fixture {
    fn new() -> Result<Self, FuzzError> {
        let dir = ScratchDir::new()?;
        let backend = SoftVault::new().map_err(|e| fixture_err("soft vault", e))?;
        let binding = VaultBinding {
            server_name: SERVER_NAME.into(),
        };
        let vault =
            Vault::create(dir.path(), &backend, &binding).map_err(|e| fixture_err("vault", e))?;
        let mut store =
            Store::open(dir.path(), &vault.database_key()).map_err(|e| fixture_err("store", e))?;

        let mut peer = OlmAccount::new(PEER_USER, PEER_DEVICE);
        let peer_record = DeviceRecord {
            user_id: PEER_USER.into(),
            device_id: PEER_DEVICE.into(),
            ed25519: peer.ed25519().to_base64(),
            curve25519: peer.curve25519().to_base64(),
            display_name: Some("Alice (phone)".into()),
            state: DeviceState::Tofu,
            deleted: false,
            cross_signed: false,
        };
        let peer_device_keys = peer
            .device_keys()
            .map_err(|e| fixture_err("peer device keys", e))?;
        let peer_upload = peer
            .prepare_upload(0, false, false)
            .map_err(|e| fixture_err("peer one-time keys", e))?
            .unwrap_or_default();
        let peer_one_time_key = first_one_time_key(&peer_upload)?;
        let peer_group = GroupSession::new(MegolmConfig::version_1());
        let room_key = GroupSession::new(MegolmConfig::version_1());
        let room_key_export = room_key.session_key().to_base64();

        let pickle_key = vault.pickle_key();
        let (engine, own_upload) = store
            .transaction(|tx| {
                let setup = || -> Result<_, CryptoError> {
                    let mut engine =
                        Engine::load_or_create(tx, OWN_USER, OWN_DEVICE, vault.pickle_key())?;
                    let body = engine.take_upload_body(tx)?.unwrap_or_default();
                    engine.upload_acknowledged(tx)?;
                    cdb::save_device(tx, &peer_record)?;
                    cdb::track_user(tx, PEER_USER)?;
                    cdb::mark_clean(tx, PEER_USER)?;
                    cdb::mark_clean(tx, OWN_USER)?;
                    let rooms = || -> Result<(), StoreError> {
                        crate::store::rooms::upsert_room(tx, ROOM, "join")?;
                        crate::store::rooms::set_room_encryption(tx, ROOM, MEGOLM_ALGORITHM)?;
                        crate::store::rooms::upsert_member(
                            tx,
                            ROOM,
                            PEER_USER,
                            "join",
                            Some("Alice Martin [Ministère X]"),
                        )?;
                        crate::store::rooms::upsert_member(tx, ROOM, OWN_USER, "join", None)?;
                        crate::store::rooms::upsert_room(tx, INVITE_ROOM, "invite")
                    };
                    rooms()?;
                    let inbound = InboundGroupSession::new(
                        &peer_group.session_key(),
                        MegolmConfig::version_1(),
                    );
                    cdb::save_inbound_session(
                        tx,
                        &InboundRow {
                            room_id: ROOM.into(),
                            session_id: peer_group.session_id(),
                            sender_key: peer_record.curve25519.clone(),
                            sender_user_id: PEER_USER.into(),
                            sender_device_id: PEER_DEVICE.into(),
                            sender_ed25519: peer_record.ed25519.clone(),
                            pickle: inbound.pickle().encrypt(pickle_key.expose()),
                            first_index: inbound.first_known_index(),
                        },
                    )?;
                    Ok((engine, body))
                };
                setup().map_err(CryptoError::into_store_error)
            })
            .map_err(|e| fixture_err("store setup", e))?;
        let own_upload: Value =
            serde_json::from_str(&own_upload).map_err(|e| fixture_err("own upload", e))?;
        let own_one_time_key = first_one_time_key(&own_upload)?
            .get("key")
            .and_then(Value::as_str)
            .and_then(|k| Curve25519PublicKey::from_base64(k).ok())
            .ok_or_else(|| FuzzError::Fixture("own one-time key".into()))?;
        let own_identity = Curve25519PublicKey::from_base64(&engine.curve25519())
            .map_err(|e| fixture_err("own identity key", e))?;
        let peer_session = peer
            .inner()
            .create_outbound_session(OlmConfig::version_1(), own_identity, own_one_time_key)
            .map_err(|e| fixture_err("peer Olm session", e))?;

        let mut fixture = Self {
            store,
            engine,
            vault,
            _backend: backend,
            peer_group,
            room_key,
            room_key_export,
            peer_olm: peer_session.pickle().encrypt(&PEER_OLM_PICKLE_KEY),
            peer_device_keys,
            peer_one_time_key,
            peer_record,
            _dir: dir,
        };
        fixture.add_pending_event()?;
        fixture.receive_first_olm_message()?;
        Ok(fixture)
    }

    /// An event of [`ROOM`] encrypted with the session we do not hold yet, waiting in the
    /// timeline: an `m.room_key` for it makes the sync decrypt it (the late-key path).
    fn add_pending_event(&mut self) -> Result<(), FuzzError> {
        let plaintext = json!({
            "type": "m.room.message",
            "room_id": ROOM,
            "content": {"msgtype": "m.text", "body": "arrivé avant sa clé"},
        })
        .to_string();
        let ciphertext = self.room_key.encrypt(plaintext.as_bytes()).to_base64();
        let session_id = self.room_key.session_id();
        let raw = json!({
            "type": "m.room.encrypted",
            "event_id": "$pending:secure.tchap.test",
            "sender": PEER_USER,
            "origin_server_ts": 1_767_225_600_000_u64,
            "content": {
                "algorithm": MEGOLM_ALGORITHM,
                "sender_key": self.peer_record.curve25519,
                "ciphertext": ciphertext,
                "session_id": session_id,
                "device_id": PEER_DEVICE,
            },
        })
        .to_string();
        self.store
            .transaction(|tx| {
                tl::save_timeline_event(
                    tx,
                    &NewTimelineEvent {
                        event_id: "$pending:secure.tchap.test",
                        room_id: ROOM,
                        sender: PEER_USER,
                        origin_ts: 1_767_225_600_000,
                        state: "undecryptable",
                        session_id: Some(&session_id),
                        sender_device: None,
                        trust: None,
                        body: None,
                        raw: Some(&raw),
                        error: Some("no room key"),
                        attachment: None,
                        ord: 1,
                    },
                )
            })
            .map_err(|e| fixture_err("pending event", e))
    }

    /// The value of one placeholder (fresh ciphertexts are made here).
    fn placeholder(&mut self, name: &str) -> Result<String, FuzzError> {
        Ok(match name {
            "$PEER_ED25519" => self.peer_record.ed25519.clone(),
            "$PEER_CURVE25519" => self.peer_record.curve25519.clone(),
            "$OWN_ED25519" => self.engine.ed25519(),
            "$OWN_CURVE25519" => self.engine.curve25519(),
            "$MEGOLM_SESSION_ID" => self.peer_group.session_id(),
            "$MEGOLM_CIPHERTEXT" => {
                let plaintext = json!({
                    "type": "m.room.message",
                    "room_id": ROOM,
                    "content": {"msgtype": "m.text", "body": "Réunion à 15 h."},
                })
                .to_string();
                self.peer_group.encrypt(plaintext.as_bytes()).to_base64()
            }
            "$ROOM_KEY_SESSION_ID" => self.room_key.session_id(),
            "$ROOM_KEY_SESSION_KEY" => self.room_key_export.clone(),
            "$OLM_BODY" => {
                let payload = self.olm_payload("m.room_key", &self.room_key_content());
                let message = self.olm_encrypt(payload.to_string().as_bytes())?;
                message
                    .get("body")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            }
            "$PEER_DEVICE_KEYS" => self.peer_device_keys.to_string(),
            "$PEER_ONE_TIME_KEY" => self.peer_one_time_key.to_string(),
            _ => name.to_owned(),
        })
    }

    fn room_key_content(&self) -> Value {
        json!({
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": ROOM,
            "session_id": self.room_key.session_id(),
            "session_key": self.room_key_export,
        })
    }

    /// The Olm payload the peer would send us.
    fn olm_payload(&self, event_type: &str, content: &Value) -> Value {
        json!({
            "type": event_type,
            "content": content,
            "sender": PEER_USER,
            "sender_device": PEER_DEVICE,
            "keys": {"ed25519": self.peer_record.ed25519},
            "recipient": OWN_USER,
            "recipient_keys": {"ed25519": self.engine.ed25519()},
        })
    }

    /// We receive the peer's first Olm message (an `m.dummy`) and commit it: our inbound
    /// session exists from then on, and the peer's session is kept as it is after that message.
    fn receive_first_olm_message(&mut self) -> Result<(), FuzzError> {
        let payload = self.olm_payload("m.dummy", &json!({}));
        let mut session = self.peer_olm_session()?;
        let message = session
            .encrypt(payload.to_string().as_bytes())
            .map_err(|e| fixture_err("Olm encrypt", e))?;
        self.peer_olm = session.pickle().encrypt(&PEER_OLM_PICKLE_KEY);
        let content = json!({
            "algorithm": OLM_ALGORITHM,
            "sender_key": self.peer_record.curve25519,
            "ciphertext": {
                self.engine.curve25519(): serde_json::to_value(&message)
                    .map_err(|e| fixture_err("Olm message", e))?,
            },
        });
        let Self { store, engine, .. } = self;
        store
            .transaction(|tx| {
                engine
                    .olm_decrypt(tx, PEER_USER, &content)
                    .map_err(CryptoError::into_store_error)
            })
            .map_err(|e| fixture_err("first Olm message", e))?;
        Ok(())
    }

    fn peer_olm_session(&self) -> Result<Session, FuzzError> {
        let pickle = SessionPickle::from_encrypted(&self.peer_olm, &PEER_OLM_PICKLE_KEY)
            .map_err(|e| fixture_err("peer Olm session pickle", e))?;
        Ok(Session::from_pickle(pickle))
    }

    /// `plaintext` encrypted by the peer to us, as the second message of its session:
    /// `{"type": 0, "body": …}` (a pre-key message: we have not answered yet).
    fn olm_encrypt(&self, plaintext: &[u8]) -> Result<Value, FuzzError> {
        let message = self
            .peer_olm_session()?
            .encrypt(plaintext)
            .map_err(|e| fixture_err("Olm encrypt", e))?;
        serde_json::to_value(&message).map_err(|e| fixture_err("Olm message", e))
    }

    /// Replaces every placeholder of `data`.
    fn substitute(&mut self, data: &[u8]) -> Result<Vec<u8>, FuzzError> {
        let mut out = Vec::with_capacity(data.len());
        let mut rest = data;
        'scan: while let Some((&first, tail)) = rest.split_first() {
            if first == b'$' {
                for (name, _) in PLACEHOLDERS {
                    if rest.starts_with(name.as_bytes()) {
                        out.extend_from_slice(self.placeholder(name)?.as_bytes());
                        rest = &rest[name.len()..];
                        continue 'scan;
                    }
                }
            }
            out.push(first);
            rest = tail;
        }
        Ok(out)
    }

    /// Applies `response` to our store as a sync, with our engine, and rolls it back.
    fn apply(&mut self, response: &SyncResponse) -> Result<SyncSummary, FuzzError> {
        let Self { store, engine, .. } = self;
        let mut account_changed = false;
        let result = store.scratch_transaction(|tx| {
            let before = cdb::load_account(tx)?.map(|a| a.pickle);
            let summary = sync::apply(tx, response, Some(engine))?;
            account_changed = cdb::load_account(tx)?.map(|a| a.pickle) != before;
            Ok(summary)
        });
        if account_changed || result.is_err() {
            // A new inbound Olm session consumed a one-time key of the in-memory account, and
            // the store has rolled that back: reload, as the client does after a failed sync.
            self.reload_engine()?;
        }
        result.map_err(FuzzError::Aborted)
    }

    fn reload_engine(&mut self) -> Result<(), FuzzError> {
        let pickle_key = self.vault.pickle_key();
        self.engine = Engine::load_or_create(self.store.conn(), OWN_USER, OWN_DEVICE, pickle_key)
            .map_err(|e| fixture_err("engine reload", e))?;
        Ok(())
    }
}

fn first_one_time_key(upload: &Value) -> Result<Value, FuzzError> {
    upload
        .get("one_time_keys")
        .and_then(Value::as_object)
        .and_then(|keys| keys.values().next())
        .cloned()
        .ok_or_else(|| FuzzError::Fixture("no one-time key in the upload".into()))
}

/// Decodes an untrusted sync body exactly as `PendingSync::fetch` does.
fn decode_sync(data: &[u8]) -> Result<SyncResponse, FuzzError> {
    serde_json::from_slice(data).map_err(|e| rejected("/sync response", &e))
}

/// A sync response of one batch.
fn sync_with(extra: Value) -> Result<SyncResponse, FuzzError> {
    let mut response = json!({ "next_batch": "s72595_4483_1934" });
    if let (Value::Object(base), Value::Object(extra)) = (&mut response, extra) {
        base.extend(extra);
    }
    serde_json::from_value(response).map_err(|e| fixture_err("wrapping sync response", e))
}

// -------------------------------------------------------------------------------------------
// Sync responses, room events, to-device messages

/// A whole `/sync` body (placeholders replaced): decoded as `PendingSync::fetch` decodes it,
/// then applied as `Client::finish_sync` applies it (rooms, state, timeline, to-device
/// messages, decryption), with our engine.
pub fn sync_response(data: &[u8]) -> Result<SyncSummary, FuzzError> {
    with_fixture(|fx| {
        let data = fx.substitute(data)?;
        let response = decode_sync(&data)?;
        fx.apply(&response)
    })
}

/// One room event (placeholders replaced), as it would arrive in the timeline of [`ROOM`]
/// (encrypted, both our devices members) and in the invite state of [`INVITE_ROOM`]:
/// `RoomEvent::parse`, the state-event contents (`m.room.member`, `m.room.name`,
/// `m.room.encryption`), the clear-message refusal and `m.room.encrypted` decryption.
pub fn room_event(data: &[u8]) -> Result<SyncSummary, FuzzError> {
    with_fixture(|fx| {
        let data = fx.substitute(data)?;
        let event: Value = serde_json::from_slice(&data).map_err(|e| rejected("event", &e))?;
        let response = sync_with(json!({
            "rooms": {
                "join": { ROOM: { "timeline": { "events": [event.clone()], "limited": false } } },
                "invite": { INVITE_ROOM: { "invite_state": { "events": [event] } } },
            }
        }))?;
        fx.apply(&response)
    })
}

/// `data` (placeholders replaced) as the plaintext of a Megolm message of the peer's session,
/// in a well-formed `m.room.encrypted` event of [`ROOM`]: the checks after decryption (JSON,
/// room id, replay, type, content).
pub fn megolm_plaintext(data: &[u8]) -> Result<SyncSummary, FuzzError> {
    with_fixture(|fx| {
        let plaintext = fx.substitute(data)?;
        let ciphertext = fx.peer_group.encrypt(&plaintext).to_base64();
        let response = sync_with(json!({
            "rooms": { "join": { ROOM: { "timeline": { "events": [{
                "type": "m.room.encrypted",
                "event_id": "$fuzz:secure.tchap.test",
                "sender": PEER_USER,
                "origin_server_ts": 1_767_225_660_000_u64,
                "content": {
                    "algorithm": MEGOLM_ALGORITHM,
                    "sender_key": fx.peer_record.curve25519,
                    "ciphertext": ciphertext,
                    "session_id": fx.peer_group.session_id(),
                    "device_id": PEER_DEVICE,
                },
            }] } } } }
        }))?;
        fx.apply(&response)
    })
}

/// One to-device event (placeholders replaced), as it would arrive in `to_device.events`:
/// `ToDeviceEvent` decoding, the refusal of clear room keys, the Olm envelope
/// (`algorithm`, `sender_key`, `ciphertext` addressed to our key, the Olm message) and, with
/// `$OLM_BODY`, everything after decryption.
pub fn to_device(data: &[u8]) -> Result<SyncSummary, FuzzError> {
    with_fixture(|fx| {
        let data = fx.substitute(data)?;
        let event: Value =
            serde_json::from_slice(&data).map_err(|e| rejected("to-device event", &e))?;
        let response = sync_with(json!({ "to_device": { "events": [event] } }))?;
        fx.apply(&response)
    })
}

/// `data` (placeholders replaced) as the plaintext of an Olm pre-key message from the peer's
/// device to ours, in a well-formed to-device `m.room.encrypted`: the payload checks (sender,
/// recipient, keys, blocked device) and the inner event (`m.room_key` and its content, the
/// late decryption of the event waiting for that key).
pub fn olm_plaintext(data: &[u8]) -> Result<SyncSummary, FuzzError> {
    with_fixture(|fx| {
        let plaintext = fx.substitute(data)?;
        let message = fx.olm_encrypt(&plaintext)?;
        let response = sync_with(json!({ "to_device": { "events": [{
            "type": "m.room.encrypted",
            "sender": PEER_USER,
            "content": {
                "algorithm": OLM_ALGORITHM,
                "sender_key": fx.peer_record.curve25519,
                "ciphertext": { fx.engine.curve25519(): message },
            },
        }] } }))?;
        fx.apply(&response)
    })
}

/// The payload an honest peer sends in an Olm message carrying `m.room_key` for the session
/// behind `$ROOM_KEY_SESSION_ID` (placeholders unreplaced): a template for seeds and tests.
pub fn olm_room_key_payload_template() -> Value {
    json!({
        "type": "m.room_key",
        "content": {
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": ROOM,
            "session_id": "$ROOM_KEY_SESSION_ID",
            "session_key": "$ROOM_KEY_SESSION_KEY",
        },
        "sender": PEER_USER,
        "sender_device": PEER_DEVICE,
        "keys": {"ed25519": "$PEER_ED25519"},
        "recipient": OWN_USER,
        "recipient_keys": {"ed25519": "$OWN_ED25519"},
    })
}

// -------------------------------------------------------------------------------------------
// Device keys

/// What a `/keys/query` answer changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysQueryOutcome {
    /// Security events recorded (invalid, new or changed devices).
    pub security_events: usize,
    /// The devices pinned afterwards for the users queried (deleted ones excluded).
    pub devices: Vec<DeviceRecord>,
}

/// Most users taken from an answer as "queried".
const MAX_QUERIED_USERS: usize = 16;

/// A `/keys/query` answer (placeholders replaced), decoded as the client decodes it
/// ([`KeysQueryAnswer`]: first copies of repeated keys kept, repeats remembered) and applied
/// for the fixture's users plus up to 16 users it names: device object checks (user and device
/// ids, keys, self-signature over canonical JSON), repeated and clashing devices, TOFU pinning
/// and blocking.
pub fn keys_query(data: &[u8]) -> Result<KeysQueryOutcome, FuzzError> {
    with_fixture(|fx| {
        let data = fx.substitute(data)?;
        let answer: KeysQueryAnswer =
            serde_json::from_slice(&data).map_err(|e| rejected("/keys/query response", &e))?;
        let queried = queried_users(&answer.value);
        fx.keys_query_outcome(&queried, |tx| {
            apply_keys_query_answer(tx, &answer, &queried, OWN_USER, OWN_DEVICE)
        })
    })
}

/// A `/keys/query` answer given as a JSON value (a structured input: no text, no repeated
/// keys), applied as [`keys_query`] applies it.
pub fn keys_query_value(answer: &Value) -> Result<KeysQueryOutcome, FuzzError> {
    with_fixture(|fx| {
        let queried = queried_users(answer);
        fx.keys_query_outcome(&queried, |tx| {
            apply_keys_query(tx, answer, &queried, OWN_USER, OWN_DEVICE)
        })
    })
}

/// The fixture's users and up to [`MAX_QUERIED_USERS`] users the answer names.
fn queried_users(answer: &Value) -> Vec<String> {
    let mut queried = vec![PEER_USER.to_owned(), OWN_USER.to_owned()];
    if let Some(users) = answer.get("device_keys").and_then(Value::as_object) {
        let named: Vec<String> = users
            .keys()
            .filter(|u| !queried.contains(u))
            .take(MAX_QUERIED_USERS)
            .cloned()
            .collect();
        queried.extend(named);
    }
    queried
}

impl Fixture {
    /// Runs `apply` in a rolled-back transaction; returns what it changed and the devices then
    /// pinned for `queried`.
    fn keys_query_outcome(
        &mut self,
        queried: &[String],
        apply: impl FnOnce(&rusqlite::Connection) -> Result<DeviceChanges, CryptoError>,
    ) -> Result<KeysQueryOutcome, FuzzError> {
        let outcome = self.store.scratch_transaction(|tx| {
            let changes = apply(tx).map_err(CryptoError::into_store_error)?;
            let mut devices = Vec::new();
            for user in queried {
                devices.extend(
                    cdb::devices_of(tx, user)?
                        .into_iter()
                        .filter(|d| !d.deleted),
                );
            }
            Ok(KeysQueryOutcome {
                security_events: changes.security_events,
                devices,
            })
        });
        outcome.map_err(FuzzError::Aborted)
    }
}

/// A `/keys/claim` answer (placeholders replaced): the one-time key is looked up for the
/// peer's device as `Client::claim_sessions` does (`one_time_keys.<user>.<device>`, the first
/// `signed_curve25519:` entry), then its signature is checked against the pinned key and an
/// Olm session is created from it, as `Engine::create_outbound_olm` does. Returns whether a
/// session was created.
pub fn keys_claim(data: &[u8]) -> Result<bool, FuzzError> {
    with_fixture(|fx| {
        let data = fx.substitute(data)?;
        let answer: Value =
            serde_json::from_slice(&data).map_err(|e| rejected("/keys/claim response", &e))?;
        // Same lookup as `Client::claim_sessions` (client/e2ee.rs).
        let key = answer
            .get("one_time_keys")
            .and_then(|k| k.get(PEER_USER))
            .and_then(|k| k.get(PEER_DEVICE))
            .and_then(Value::as_object)
            .and_then(|m| {
                m.iter()
                    .find(|(id, _)| id.starts_with("signed_curve25519:"))
            })
            .map(|(_, v)| v.clone());
        let Some(key) = key else {
            return Ok(false);
        };
        let Fixture {
            store,
            engine,
            peer_record,
            ..
        } = fx;
        let result =
            store.scratch_transaction(|tx| Ok(engine.create_outbound_olm(tx, peer_record, &key)));
        match result {
            Ok(Ok(())) => Ok(true),
            Ok(Err(CryptoError::Store(e))) | Err(e) => Err(FuzzError::Aborted(e)),
            Ok(Err(e)) => Err(FuzzError::Crypto(e)),
        }
    })
}
