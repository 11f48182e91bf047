//! Cold-open benchmark fixture (feature `bench-internals`, for the harness in `tests/` only;
//! never in a release library): a data directory of a logged-in client holding many encrypted
//! rooms and many stored inbound Megolm sessions, written through the store's own code paths.
//!
//! [`generate_cold_open`] builds it in an empty directory:
//! - the vault and the database are created by [`Client::open`] itself (KEK on the caller's
//!   token, SQLCipher database, migrations), then a session is saved with
//!   [`Store::save_session`] and our device's Olm account is created and its keys marked
//!   published, as after a real login;
//! - each sender is a real vodozemac account, pinned in the device table (TOFU) as a
//!   `/keys/query` answer would;
//! - every inbound session is a real vodozemac session received through
//!   `Engine::receive_room_key`, the function an Olm-decrypted `m.room_key` reaches: its
//!   pickle is encrypted with the vault's pickle key exactly as in production;
//! - rooms, members, names, encryption state and a few encrypted messages per room arrive as
//!   `/sync` responses applied by `sync::apply` in one transaction each, as `Client::sync_once`
//!   does after its HTTP request (so the messages are decrypted, checked and stored).
//!
//! Besides the directory, it returns what another implementation needs to hold the same data
//! (the `/sync` responses, and each session as an `ExportedRoomKey` JSON line written to the
//! caller's writer) and *probes*: messages that are not in the store, each encrypted with one
//! of the stored sessions, to measure the first decryption after a cold open.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tchap_secure_hsm::{KeyVault, Vault, VaultBinding};
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};
use zeroize::Zeroizing;

use crate::api::types::{MEGOLM_ALGORITHM, SyncResponse};
use crate::client::{Client, sync};
use crate::config::Config;
use crate::crypto::CryptoError;
use crate::crypto::engine::Engine;
use crate::error::Error;
use crate::secret::AccessToken;
use crate::store::crypto::{self as cdb, DeviceRecord, DeviceState};
use crate::store::{Store, StoreError, StoredSession};

/// Our user in the fixture.
pub const USER_ID: &str = "@bench:secure.tchap.test";
/// Our device in the fixture.
pub const DEVICE_ID: &str = "BENCHDEV";
/// Rooms per `/sync` response (and per transaction) while the fixture is written.
const ROOMS_PER_RESPONSE: usize = 100;

/// A failure while writing the fixture.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The client core failed (vault, store, crypto).
    #[error("client core: {0}")]
    Core(#[from] Error),
    /// The target directory already holds a vault or a database.
    #[error("{dir} is not empty: a fixture is only written into a new directory")]
    NotEmpty {
        /// The directory.
        dir: String,
    },
    /// The specification cannot be satisfied (e.g. fewer sessions than rooms).
    #[error("invalid fixture specification: {what}")]
    Spec {
        /// What is wrong.
        what: &'static str,
    },
    /// Writing the exported keys failed.
    #[error("writing the exported room keys: {0}")]
    Export(#[source] std::io::Error),
    /// The store did not end up holding what was written.
    #[error("fixture check failed: {what} (expected {expected}, found {found})")]
    Check {
        /// What was counted.
        what: &'static str,
        /// Expected count.
        expected: usize,
        /// Count found.
        found: usize,
    },
}

impl From<StoreError> for FixtureError {
    fn from(e: StoreError) -> Self {
        Self::Core(Error::Store(e))
    }
}

impl From<CryptoError> for FixtureError {
    fn from(e: CryptoError) -> Self {
        Self::Core(Error::Crypto(e))
    }
}

/// The size of the fixture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdOpenSpec {
    /// Joined encrypted rooms.
    pub rooms: usize,
    /// Stored inbound Megolm sessions, spread evenly over the rooms.
    pub inbound_sessions: usize,
    /// Distinct senders (other users, one device each).
    pub senders: usize,
    /// Members of each room, us included.
    pub members_per_room: usize,
    /// Encrypted messages in each room's stored timeline.
    pub messages_per_room: usize,
    /// Probe messages to generate (see [`Probe`]).
    pub probes: usize,
}

impl ColdOpenSpec {
    /// The size of issue 7: 1,000 rooms and 100,000 inbound sessions.
    pub fn issue_7() -> Self {
        Self {
            rooms: 1_000,
            inbound_sessions: 100_000,
            senders: 50,
            members_per_room: 6,
            messages_per_room: 5,
            probes: 64,
        }
    }

    fn check(&self) -> Result<(), FixtureError> {
        let bad = |what| Err(FixtureError::Spec { what });
        if self.rooms == 0 || self.inbound_sessions < self.rooms {
            return bad("at least one room and one session per room");
        }
        if self.members_per_room < 2 || self.members_per_room > self.senders + 1 {
            return bad("members per room must be between 2 and senders + 1");
        }
        if self.inbound_sessions / self.rooms < 2 && self.probes > 0 {
            return bad("probes need at least two sessions per room");
        }
        Ok(())
    }
}

/// A message that is not in the fixture's store, encrypted with one of its stored sessions
/// (never the one its stored timeline used): decrypting it after a cold open reads that
/// session from the database, unpickles it, checks the sender and decrypts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// The room it belongs to.
    pub room_id: String,
    /// The Megolm session that encrypted it.
    pub session_id: String,
    /// The `m.room.encrypted` event as a server would deliver it.
    pub event: Value,
    /// The plaintext body it must decrypt to.
    pub body: String,
}

/// What [`generate_cold_open`] wrote, and what another implementation needs to hold the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdOpenOutput {
    /// The specification.
    pub spec: ColdOpenSpec,
    /// Our user id.
    pub user_id: String,
    /// Our device id.
    pub device_id: String,
    /// The `/sync` responses applied, in order.
    pub sync_responses: Vec<Value>,
    /// Probe messages.
    pub probes: Vec<Probe>,
    /// Rooms in the store.
    pub rooms: usize,
    /// Inbound sessions in the store.
    pub inbound_sessions: usize,
    /// Decrypted messages in the store.
    pub timeline_events: usize,
}

/// Deterministic pseudo-random choices (SplitMix64): which members, which senders, which
/// probes. Not for keys: every key comes from vodozemac's own generator.
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        let n = u64::try_from(n).unwrap_or(u64::MAX).max(1);
        usize::try_from(self.next() % n).unwrap_or_default()
    }

    /// `k` distinct numbers in `0..n` (`k <= n`), in the order drawn.
    fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.below(n - i);
            pool.swap(i, j);
        }
        pool.truncate(k.min(n));
        pool
    }
}

/// The room id of room `i`.
pub fn room_id(i: usize) -> String {
    format!("!bench{i:05}:secure.tchap.test")
}

fn sender(i: usize) -> (String, String) {
    (
        format!("@sender{i:03}:secure.tchap.test"),
        format!("SENDER{i:03}"),
    )
}

/// One room's layout: its member senders, and which sender owns each of its sessions.
struct RoomPlan {
    members: Vec<usize>,
    session_senders: Vec<usize>,
}

/// One `ExportedRoomKey` (matrix-sdk-crypto's key export format, one JSON object per line).
#[derive(Serialize)]
struct ExportedKeyLine<'a> {
    algorithm: &'a str,
    room_id: &'a str,
    sender_key: &'a str,
    session_id: &'a str,
    session_key: &'a str,
    sender_claimed_keys: SenderClaimedKeys<'a>,
    forwarding_curve25519_key_chain: [&'a str; 0],
}

#[derive(Serialize)]
struct SenderClaimedKeys<'a> {
    ed25519: &'a str,
}

fn timestamp(room: usize, n: usize) -> u64 {
    let offset = u64::try_from(room * 1_000 + n).unwrap_or_default();
    1_700_000_000_000 + offset
}

fn encrypted_event(
    session: &mut GroupSession,
    device: &DeviceRecord,
    room_id: &str,
    event_id: &str,
    origin_server_ts: u64,
    body: &str,
) -> Value {
    let plaintext = Zeroizing::new(
        json!({
            "type": "m.room.message",
            "content": { "msgtype": "m.text", "body": body },
            "room_id": room_id,
        })
        .to_string(),
    );
    let message = session.encrypt(plaintext.as_bytes());
    json!({
        "type": "m.room.encrypted",
        "event_id": event_id,
        "sender": device.user_id,
        "origin_server_ts": origin_server_ts,
        "unsigned": {},
        "content": {
            "algorithm": MEGOLM_ALGORITHM,
            "sender_key": device.curve25519,
            "ciphertext": message.to_base64(),
            "session_id": session.session_id(),
            "device_id": device.device_id,
        },
    })
}

fn state_event(
    event_type: &str,
    state_key: &str,
    sender: &str,
    id: String,
    content: Value,
) -> Value {
    json!({
        "type": event_type,
        "state_key": state_key,
        "sender": sender,
        "event_id": id,
        "origin_server_ts": 1_699_000_000_000_u64,
        "unsigned": {},
        "content": content,
    })
}

/// Writes the fixture into `data_dir` (which must hold no vault and no database), with the
/// vault's KEK on `backend`, and streams each stored session as an `ExportedRoomKey` JSON line
/// to `exported_keys` (secret material: the caller decides where it goes).
pub fn generate_cold_open(
    config: &Config,
    data_dir: &Path,
    backend: &dyn KeyVault,
    spec: &ColdOpenSpec,
    access_token: &str,
    exported_keys: &mut dyn Write,
) -> Result<ColdOpenOutput, FixtureError> {
    spec.check()?;
    if Vault::exists(data_dir) || data_dir.join(crate::store::DATABASE_FILE).exists() {
        return Err(FixtureError::NotEmpty {
            dir: data_dir.display().to_string(),
        });
    }
    // The real first start: vault (KEK on the token) and database, migrated.
    drop(Client::open(config.clone(), data_dir, backend)?);
    let binding = VaultBinding {
        server_name: config.server_name().to_owned(),
    };
    let vault = Vault::open(data_dir, backend, &binding).map_err(Error::Vault)?;
    let mut store = Store::open(data_dir, &vault.database_key())?;
    store.save_session(&StoredSession {
        user_id: USER_ID.to_owned(),
        device_id: DEVICE_ID.to_owned(),
        access_token: AccessToken::new(access_token.to_owned()),
    })?;
    let mut engine = store.transaction(|tx| {
        let mut engine = Engine::load_or_create(tx, USER_ID, DEVICE_ID, vault.pickle_key())
            .map_err(CryptoError::into_store_error)?;
        // As after the first key upload was acknowledged.
        engine
            .take_upload_body(tx)
            .map_err(CryptoError::into_store_error)?;
        engine
            .upload_acknowledged(tx)
            .map_err(CryptoError::into_store_error)?;
        Ok(engine)
    })?;

    // Senders: real identity keys, pinned as a device query would.
    let devices: Vec<DeviceRecord> = (0..spec.senders)
        .map(|i| {
            let account = vodozemac::olm::Account::new();
            let (user_id, device_id) = sender(i);
            DeviceRecord {
                user_id,
                device_id,
                ed25519: account.ed25519_key().to_base64(),
                curve25519: account.curve25519_key().to_base64(),
                display_name: Some(format!("Poste {i}")),
                state: DeviceState::Tofu,
                deleted: false,
                cross_signed: false,
            }
        })
        .collect();
    store.transaction(|tx| {
        for d in &devices {
            cdb::save_device(tx, d)?;
        }
        Ok(())
    })?;

    let mut choices = Choices(0x7C4A_9A5E_D00D_0007);
    let per_room = spec.inbound_sessions / spec.rooms;
    let extra = spec.inbound_sessions % spec.rooms;
    let plans: Vec<RoomPlan> = (0..spec.rooms)
        .map(|r| {
            let members = choices.distinct(spec.senders, spec.members_per_room - 1);
            let count = per_room + usize::from(r < extra);
            let session_senders = (0..count)
                .map(|_| {
                    members
                        .get(choices.below(members.len()))
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            RoomPlan {
                members,
                session_senders,
            }
        })
        .collect();
    // Probes: distinct rooms, each a session other than the room's last one (the last one
    // encrypts the stored timeline).
    let probe_rooms = choices.distinct(spec.rooms, spec.probes.min(spec.rooms));
    let probe_sessions: Vec<(usize, usize)> = probe_rooms
        .iter()
        .map(|&r| {
            let count = plans.get(r).map_or(1, |p| p.session_senders.len());
            (r, choices.below(count.saturating_sub(1)))
        })
        .collect();

    // The sessions, through the function an Olm-decrypted `m.room_key` reaches.
    let mut timeline_sessions: Vec<Option<(GroupSession, usize)>> = Vec::with_capacity(spec.rooms);
    let mut probe_group_sessions: Vec<Option<GroupSession>> =
        probe_sessions.iter().map(|_| None).collect();
    let mut stored_sessions = 0;
    for (r0, chunk) in plans.chunks(ROOMS_PER_RESPONSE).enumerate() {
        let written = store.transaction(|tx| {
            let mut written = Vec::with_capacity(chunk.len());
            for (offset, plan) in chunk.iter().enumerate() {
                let r = r0 * ROOMS_PER_RESPONSE + offset;
                let room = room_id(r);
                let mut last = None;
                for (s, &who) in plan.session_senders.iter().enumerate() {
                    let device = devices.get(who).ok_or(StoreError::Corrupt {
                        detail: "fixture sender".into(),
                    })?;
                    let session = GroupSession::new(SessionConfig::version_1());
                    let key = session.session_key();
                    let session_key = Zeroizing::new(key.to_base64());
                    let content = json!({
                        "algorithm": MEGOLM_ALGORITHM,
                        "room_id": room,
                        "session_id": session.session_id(),
                        "session_key": *session_key,
                    });
                    engine
                        .receive_room_key(tx, device, &content)
                        .map_err(CryptoError::into_store_error)?;
                    let mut inbound = InboundGroupSession::new(&key, SessionConfig::version_1());
                    let exported = inbound
                        .export_at(0)
                        .map(|k| Zeroizing::new(k.to_base64()))
                        .ok_or(StoreError::Corrupt {
                            detail: "fixture session export".into(),
                        })?;
                    let line = ExportedKeyLine {
                        algorithm: MEGOLM_ALGORITHM,
                        room_id: &room,
                        sender_key: &device.curve25519,
                        session_id: &inbound.session_id(),
                        session_key: &exported,
                        sender_claimed_keys: SenderClaimedKeys {
                            ed25519: &device.ed25519,
                        },
                        forwarding_curve25519_key_chain: [],
                    };
                    let mut buffer = Zeroizing::new(Vec::with_capacity(512));
                    serde_json::to_writer(&mut *buffer, &line).map_err(|e| {
                        StoreError::Corrupt {
                            detail: format!("fixture key export: {e}"),
                        }
                    })?;
                    buffer.push(b'\n');
                    written.push(buffer);
                    if let Some(slot) = probe_sessions
                        .iter()
                        .position(|&(pr, ps)| pr == r && ps == s)
                        .and_then(|p| probe_group_sessions.get_mut(p))
                    {
                        *slot = Some(GroupSession::from_pickle(session.pickle()));
                    }
                    last = Some((session, who));
                }
                timeline_sessions.push(last);
            }
            Ok(written)
        })?;
        for line in written {
            exported_keys
                .write_all(&line)
                .map_err(FixtureError::Export)?;
        }
        stored_sessions += chunk.iter().map(|p| p.session_senders.len()).sum::<usize>();
    }
    exported_keys.flush().map_err(FixtureError::Export)?;

    // Rooms, members and messages, as `/sync` responses applied the way `sync_once` does.
    let mut sync_responses = Vec::new();
    let mut timeline_events = 0;
    for (n, chunk) in plans.chunks(ROOMS_PER_RESPONSE).enumerate() {
        let mut join = serde_json::Map::new();
        for (offset, plan) in chunk.iter().enumerate() {
            let r = n * ROOMS_PER_RESPONSE + offset;
            let room = room_id(r);
            let creator = plan.members.first().map_or(0, |&m| m);
            let (creator_id, _) = sender(creator);
            let mut state = vec![
                state_event(
                    "m.room.create",
                    "",
                    &creator_id,
                    format!("$create{r}"),
                    json!({ "room_version": "10", "creator": creator_id }),
                ),
                state_event(
                    "m.room.encryption",
                    "",
                    &creator_id,
                    format!("$encryption{r}"),
                    json!({ "algorithm": MEGOLM_ALGORITHM, "rotation_period_ms": 604_800_000_u64, "rotation_period_msgs": 100 }),
                ),
                state_event(
                    "m.room.name",
                    "",
                    &creator_id,
                    format!("$name{r}"),
                    json!({ "name": format!("Cellule {r}") }),
                ),
                state_event(
                    "m.room.member",
                    USER_ID,
                    USER_ID,
                    format!("$member{r}-self"),
                    json!({ "membership": "join", "displayname": "Agent du cabinet" }),
                ),
            ];
            for &m in &plan.members {
                let (user_id, _) = sender(m);
                state.push(state_event(
                    "m.room.member",
                    &user_id,
                    &user_id,
                    format!("$member{r}-{m}"),
                    json!({ "membership": "join", "displayname": format!("Conseiller {m}") }),
                ));
            }
            let mut events = Vec::new();
            if let Some(Some((session, who))) = timeline_sessions.get_mut(r) {
                let device = devices.get(*who).ok_or(FixtureError::Spec {
                    what: "timeline sender",
                })?;
                for j in 0..spec.messages_per_room {
                    events.push(encrypted_event(
                        session,
                        device,
                        &room,
                        &format!("$r{r}m{j}"),
                        timestamp(r, j),
                        &format!("Note {j} de la cellule {r}"),
                    ));
                }
            }
            join.insert(
                room,
                json!({
                    "state": { "events": state },
                    "timeline": { "events": events, "limited": false, "prev_batch": format!("p{r}") },
                }),
            );
        }
        let raw = json!({ "next_batch": format!("s{}", n + 1), "rooms": { "join": join } });
        let response: SyncResponse =
            serde_json::from_value(raw.clone()).map_err(|_| FixtureError::Spec {
                what: "generated sync response does not parse",
            })?;
        let summary = store.transaction(|tx| sync::apply(tx, &response, Some(&mut engine)))?;
        timeline_events += summary.messages.len();
        sync_responses.push(raw);
    }
    // As after the first `/keys/query` of those users: their device lists are up to date.
    store.transaction(|tx| {
        for d in &devices {
            cdb::mark_clean(tx, &d.user_id)?;
        }
        cdb::mark_clean(tx, USER_ID)?;
        Ok(())
    })?;

    let mut probes = Vec::with_capacity(probe_sessions.len());
    for (k, (&(r, _), session)) in probe_sessions
        .iter()
        .zip(probe_group_sessions.iter_mut())
        .enumerate()
    {
        let Some(session) = session else {
            return Err(FixtureError::Spec {
                what: "probe session not generated",
            });
        };
        let who = plans
            .get(r)
            .and_then(|p| {
                probe_sessions
                    .get(k)
                    .and_then(|&(_, s)| p.session_senders.get(s))
            })
            .copied()
            .unwrap_or_default();
        let device = devices.get(who).ok_or(FixtureError::Spec {
            what: "probe sender",
        })?;
        let room = room_id(r);
        let body = format!("Sonde {k} : point de situation");
        let event = encrypted_event(
            session,
            device,
            &room,
            &format!("$probe{k}"),
            timestamp(r, 999),
            &body,
        );
        probes.push(Probe {
            room_id: room,
            session_id: session.session_id(),
            event,
            body,
        });
    }

    let rooms = store.rooms()?.len();
    let check = |what, expected: usize, found: usize| {
        if expected == found {
            Ok(())
        } else {
            Err(FixtureError::Check {
                what,
                expected,
                found,
            })
        }
    };
    let count = |sql: &str| -> Result<usize, FixtureError> {
        let n: i64 = store
            .conn()
            .query_row(sql, [], |r| r.get(0))
            .map_err(StoreError::from)?;
        Ok(usize::try_from(n).unwrap_or_default())
    };
    check("rooms", spec.rooms, rooms)?;
    check(
        "inbound sessions",
        spec.inbound_sessions,
        count("SELECT count(*) FROM inbound_group_sessions")?,
    )?;
    check("sessions written", spec.inbound_sessions, stored_sessions)?;
    check(
        "decrypted messages",
        spec.rooms * spec.messages_per_room,
        count("SELECT count(*) FROM timeline WHERE state = 'decrypted'")?,
    )?;
    check(
        "decrypted in sync summaries",
        spec.rooms * spec.messages_per_room,
        timeline_events,
    )?;
    drop(store);
    // Fold the WAL into the database file, so every later open starts from the same files.
    let store = Store::open(data_dir, &vault.database_key())?;
    store
        .conn()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(StoreError::from)?;
    Ok(ColdOpenOutput {
        spec: spec.clone(),
        user_id: USER_ID.to_owned(),
        device_id: DEVICE_ID.to_owned(),
        sync_responses,
        probes,
        rooms,
        inbound_sessions: stored_sessions,
        timeline_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tchap_secure_hsm::soft::SoftVault;

    /// The unit tests' self-signed anchor (`testdata/anchor.pem`): nothing connects here.
    fn config() -> Config {
        Config::from_json(
            json!({
                "homeserver_url": "https://localhost:9",
                "server_name": "secure.tchap.test",
                "trust_anchors_pem": include_str!("../testdata/anchor.pem"),
                "spki_pins_sha256": [
                    "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                    "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
                ],
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_small_fixture_opens_lists_its_rooms_and_decrypts_a_probe() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SoftVault::new().unwrap();
        let spec = ColdOpenSpec {
            rooms: 12,
            inbound_sessions: 40,
            senders: 5,
            members_per_room: 3,
            messages_per_room: 2,
            probes: 4,
        };
        let mut keys = Vec::new();
        let out = generate_cold_open(
            &config(),
            dir.path(),
            &backend,
            &spec,
            "syt_bench",
            &mut keys,
        )
        .unwrap();
        assert_eq!(out.rooms, 12);
        assert_eq!(out.inbound_sessions, 40);
        assert_eq!(out.timeline_events, 24);
        assert_eq!(out.probes.len(), 4);
        let lines: Vec<Value> = keys
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 40);
        assert!(lines.iter().all(|l| l["session_key"].as_str().is_some()));

        let mut client = Client::open(config(), dir.path(), &backend).unwrap();
        assert_eq!(client.session().unwrap().user_id, USER_ID);
        let rooms = client.store().rooms().unwrap();
        assert_eq!(rooms.len(), 12);
        assert!(
            rooms
                .iter()
                .all(|r| r.encryption.as_deref() == Some(MEGOLM_ALGORITHM))
        );
        assert!(rooms.iter().all(|r| r.joined_members == 3));
        for probe in &out.probes {
            let body = client.try_decrypt(&probe.room_id, &probe.event).unwrap();
            assert_eq!(body, probe.body);
        }
        assert_eq!(client.messages(&room_id(3), 10).unwrap().len(), 2);
        // A second fixture is never written over the first.
        let again =
            generate_cold_open(&config(), dir.path(), &backend, &spec, "t", &mut Vec::new());
        assert!(matches!(again, Err(FixtureError::NotEmpty { .. })));
    }
}
