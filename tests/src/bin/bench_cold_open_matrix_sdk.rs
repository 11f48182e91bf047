//! Cold open of matrix-sdk 0.18 (SQLite stores), measured in a fresh process (issue 7,
//! scenario 3), on the same data as `bench_cold_open_ours`.
//!
//! ```text
//! bench_cold_open_matrix_sdk prepare <fixture-dir>
//! bench_cold_open_matrix_sdk run <fixture-dir> [--store passphrase|key]
//!                                [--spawned-at-ns <CLOCK_MONOTONIC ns>] [--probe <k>]
//! ```
//!
//! Needs the fixture written by `bench_cold_open_ours prepare` (use
//! `tchap_secure_tests::bench_setup`). No custom global allocator: matrix-sdk as an app links
//! it.
//!
//! `prepare` gives matrix-sdk the same data, through its own APIs, twice: encrypted stores
//! with a passphrase (`<fixture>/matrix-sdk`, what `ClientBuilder::sqlite_store(path,
//! Some(passphrase))` does: PBKDF2-SHA256, 200,000 rounds, at every open) and with a raw
//! 32-byte key (`<fixture>/matrix-sdk-key`, `SqliteStoreConfig::key`: no KDF, like our raw
//! SQLCipher key). For each: a `BaseClient` on `SqliteStateStore` + `SqliteCryptoStore` is
//! activated for the same user and device (the `OlmMachine` creates its account), the 100,000
//! sessions of `room-keys.jsonl` are imported with `OlmMachine::store()
//! .import_exported_room_keys` (same vodozemac sessions), and the `/sync` responses of
//! `sync.json` go through `BaseClient::receive_sync_response` (the code `Client::sync_once`
//! runs after its request). The secrets come from `matrix-sdk.passphrase` and
//! `matrix-sdk.key` (mode 0600, hex key).
//!
//! `run` measures what a user waits for:
//! 1. `Client::builder().sqlite_store…build()`: the four SQLite stores opened (state, event
//!    cache, media, crypto; store cipher unlocked);
//! 2. `Client::restore_session`: all rooms loaded from the state store, `OlmMachine` loaded
//!    from the crypto store (account, identity);
//! 3. the room list (`Client::rooms`), each room's encryption state checked;
//! 4. the first decryption: `Room::decrypt_event` of probe `k` (the inbound session read from
//!    the crypto store and decrypted), its body checked.
//!
//! The homeserver URL points at a closed port: nothing here needs the network, and the E2EE
//! background task (backups, recovery; off by default settings) fails at once if it tries.
//! Prints one JSON line like `bench_cold_open_ours`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use tchap_secure_core::bench_internals::{elapsed_ms, monotonic_ns, peak_rss_kib};

use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::cross_process_lock::CrossProcessLockConfig;
use matrix_sdk::ruma::api::IncomingResponse;
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Response as SyncResponse;
use matrix_sdk::ruma::events::room::encrypted::OriginalSyncRoomEncryptedEvent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId};
use matrix_sdk::store::RoomLoadSettings;
use matrix_sdk::{
    Client, SessionMeta, SessionTokens, SqliteCryptoStore, SqliteStateStore, SqliteStoreConfig,
};
use matrix_sdk_base::crypto::olm::ExportedRoomKey;
use matrix_sdk_base::store::StoreConfig;
use matrix_sdk_base::{BaseClient, DmRoomDefinition, ThreadingSupport};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// Keys imported per `import_exported_room_keys` call while preparing.
const IMPORT_CHUNK: usize = 10_000;

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Secret {
    Passphrase,
    Key,
}

impl Secret {
    fn parse(s: &str) -> Self {
        match s {
            "passphrase" => Self::Passphrase,
            "key" => Self::Key,
            other => panic!("--store passphrase|key, not {other}"),
        }
    }

    fn implementation(self) -> &'static str {
        match self {
            Self::Passphrase => "matrix-sdk",
            Self::Key => "matrix-sdk (raw store key)",
        }
    }

    fn dir(self, fixture: &Path) -> PathBuf {
        fixture.join(match self {
            Self::Passphrase => "matrix-sdk",
            Self::Key => "matrix-sdk-key",
        })
    }

    /// The store configuration `ClientBuilder::sqlite_store` would make, with this secret.
    fn store_config(self, fixture: &Path) -> SqliteStoreConfig {
        let dir = self.dir(fixture);
        match self {
            Self::Passphrase => {
                let passphrase = Zeroizing::new(
                    std::fs::read_to_string(fixture.join("matrix-sdk.passphrase"))
                        .expect("read matrix-sdk.passphrase"),
                );
                SqliteStoreConfig::new(dir).passphrase(Some(passphrase.trim()))
            }
            Self::Key => {
                let hex = Zeroizing::new(
                    std::fs::read_to_string(fixture.join("matrix-sdk.key"))
                        .expect("read matrix-sdk.key"),
                );
                let mut key = Zeroizing::new([0u8; 32]);
                let digits = hex.trim().as_bytes();
                assert_eq!(digits.len(), 64, "matrix-sdk.key holds 64 hex digits");
                for (i, pair) in digits.chunks(2).enumerate() {
                    let pair = std::str::from_utf8(pair).expect("hex");
                    key[i] = u8::from_str_radix(pair, 16).expect("hex digit");
                }
                SqliteStoreConfig::new(dir).key(Some(&key))
            }
        }
    }
}

struct Identity {
    user_id: OwnedUserId,
    device_id: OwnedDeviceId,
}

fn identity(fixture: &Path) -> Identity {
    let manifest = read_json(&fixture.join("ours-manifest.json"));
    Identity {
        user_id: manifest["user_id"]
            .as_str()
            .expect("user_id")
            .try_into()
            .expect("a user id"),
        device_id: manifest["device_id"].as_str().expect("device_id").into(),
    }
}

fn session(id: &Identity) -> MatrixSession {
    MatrixSession {
        meta: SessionMeta {
            user_id: id.user_id.clone(),
            device_id: id.device_id.clone(),
        },
        tokens: SessionTokens {
            access_token: "syt_YmVuY2g_cold_open_fixture_token".to_owned(),
            refresh_token: None,
        },
    }
}

async fn prepare_store(fixture: &Path, secret: Secret) {
    let started = std::time::Instant::now();
    let config = secret.store_config(fixture);
    let dir = secret.dir(fixture);
    assert!(
        !dir.exists(),
        "{} exists: prepare writes new stores only",
        dir.display()
    );
    let state = SqliteStateStore::open_with_config(&config)
        .await
        .expect("open the state store");
    let crypto = SqliteCryptoStore::open_with_config(&config)
        .await
        .expect("open the crypto store");
    let base = BaseClient::new(
        StoreConfig::new(CrossProcessLockConfig::SingleProcess)
            .state_store(state)
            .crypto_store(crypto),
        ThreadingSupport::Disabled,
        DmRoomDefinition::default(),
    );
    let id = identity(fixture);
    base.activate(session(&id).meta, RoomLoadSettings::default(), None)
        .await
        .expect("activate the base client");

    let mut imported = 0;
    {
        let machine = base.olm_machine().await;
        let machine = machine.as_ref().expect("an OlmMachine after activation");
        let file = std::fs::File::open(fixture.join("room-keys.jsonl")).expect("room-keys.jsonl");
        let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
        let mut lines = std::io::BufReader::new(file).lines();
        loop {
            let line = lines
                .next()
                .map(|l| Zeroizing::new(l.expect("read a key line")));
            if let Some(line) = &line {
                let key: ExportedRoomKey = serde_json::from_str(line).expect("an ExportedRoomKey");
                chunk.push(key);
            }
            if chunk.len() == IMPORT_CHUNK || (line.is_none() && !chunk.is_empty()) {
                let result = machine
                    .store()
                    .import_exported_room_keys(std::mem::take(&mut chunk), |_, _| {})
                    .await
                    .expect("import room keys");
                imported += result.imported_count;
            }
            if line.is_none() {
                break;
            }
        }
    }

    let responses = read_json(&fixture.join("sync.json"));
    for response in responses.as_array().expect("an array of sync responses") {
        let body = serde_json::to_vec(response).expect("encode a sync response");
        let http = matrix_sdk::ruma::exports::http::Response::builder()
            .status(200)
            .body(body)
            .expect("an HTTP response");
        let response = SyncResponse::try_from_http_response(http).expect("a sync response");
        base.receive_sync_response(response)
            .await
            .expect("receive a sync response");
    }
    let rooms = base.rooms().len();
    drop(base);
    println!(
        "{}",
        json!({ "prepared": secret.implementation(), "rooms": rooms,
                "inbound_sessions": imported, "seconds": started.elapsed().as_secs_f64() })
    );
}

/// Steps 1–4 of `run`; returns the step timestamps and the number of rooms.
async fn open_and_decrypt(fixture: &Path, secret: Secret, probe: &Value) -> ([u64; 4], usize) {
    let config = secret.store_config(fixture);
    let id = identity(fixture);
    let client = Client::builder()
        .homeserver_url("https://localhost:9")
        .sqlite_store_with_config_and_cache_path(config, None::<PathBuf>)
        .build()
        .await
        .expect("build the client");
    let t_build = monotonic_ns();
    client
        .restore_session(session(&id))
        .await
        .expect("restore the session");
    let t_open = monotonic_ns();
    let rooms = client.rooms();
    let encrypted = rooms
        .iter()
        .filter(|r| r.encryption_state().is_encrypted())
        .count();
    assert_eq!(encrypted, rooms.len(), "every room is encrypted");
    let t_rooms = monotonic_ns();
    let room_id: OwnedRoomId = probe["room_id"]
        .as_str()
        .expect("probe room")
        .try_into()
        .expect("a room id");
    let room = client.get_room(&room_id).expect("the probe's room");
    let event: Raw<OriginalSyncRoomEncryptedEvent> =
        Raw::from_json_string(probe["event"].to_string()).expect("the probe event");
    let decrypted = room
        .decrypt_event(&event, None)
        .await
        .expect("decrypt the probe");
    let t_ready = monotonic_ns();
    assert!(
        decrypted.encryption_info().is_some(),
        "the probe did not decrypt"
    );
    let plain: Value = decrypted.raw().deserialize_as().expect("decrypted JSON");
    assert_eq!(
        plain.pointer("/content/body"),
        probe.get("body"),
        "the probe decrypted to another body"
    );
    ([t_build, t_open, t_rooms, t_ready], rooms.len())
}

fn run(fixture: &Path, secret: Secret, spawned_at: Option<u64>, probe: Option<usize>, t_main: u64) {
    let probes = read_json(&fixture.join("probes.json"));
    let probes = probes.as_array().expect("probes");
    let manifest = read_json(&fixture.join("ours-manifest.json"));
    let index = probe.unwrap_or(std::process::id() as usize) % probes.len();
    let t_inputs = monotonic_ns();
    // A multi-threaded runtime, as an app embedding matrix-sdk runs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let t_runtime = monotonic_ns();
    let ([t_build, t_open, t_rooms, t_ready], rooms) =
        runtime.block_on(open_and_decrypt(fixture, secret, &probes[index]));
    assert_eq!(Some(rooms as u64), manifest["rooms"].as_u64(), "room count");
    let start = spawned_at.unwrap_or(t_main);
    println!(
        "{}",
        json!({
            "scenario": "cold_open",
            "implementation": secret.implementation(),
            "ms": elapsed_ms(start, t_ready),
            "open_ms": elapsed_ms(start, t_open),
            "from": if spawned_at.is_some() { "spawn" } else { "main" },
            "spawn_to_main_ms": spawned_at.map(|s| elapsed_ms(s, t_main)),
            "inputs_ms": elapsed_ms(t_main, t_inputs),
            "runtime_ms": elapsed_ms(t_inputs, t_runtime),
            "build_ms": elapsed_ms(t_runtime, t_build),
            "restore_session_ms": elapsed_ms(t_build, t_open),
            "rooms_ms": elapsed_ms(t_open, t_rooms),
            "first_decrypt_ms": elapsed_ms(t_rooms, t_ready),
            "rooms": rooms,
            "inbound_sessions": manifest["inbound_sessions"],
            "probe": index,
            "peak_rss_kib": peak_rss_kib(),
        })
    );
    // Do not wait for background tasks (an app keeps running; the measure is taken).
    runtime.shutdown_background();
}

fn main() {
    let t_main = monotonic_ns();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench_cold_open_matrix_sdk prepare|run <fixture-dir> [--store passphrase|key] [--spawned-at-ns N] [--probe K]";
    let (Some(mode), Some(dir)) = (args.get(1), args.get(2)) else {
        panic!("{usage}");
    };
    let fixture = PathBuf::from(dir);
    let mut secret = Secret::Passphrase;
    let mut spawned_at = None;
    let mut probe = None;
    let mut rest = args[3..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap_or_else(|| panic!("{usage}"));
        match flag.as_str() {
            "--store" => secret = Secret::parse(value),
            "--spawned-at-ns" => spawned_at = Some(value.parse().expect("--spawned-at-ns")),
            "--probe" => probe = Some(value.parse().expect("--probe")),
            _ => panic!("{usage}"),
        }
    }
    match mode.as_str() {
        "prepare" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async {
                for secret in [Secret::Passphrase, Secret::Key] {
                    prepare_store(&fixture, secret).await;
                }
            });
            drop(runtime);
            // Check each store the way `run` opens it.
            for secret in [Secret::Passphrase, Secret::Key] {
                run(&fixture, secret, None, Some(0), monotonic_ns());
            }
        }
        "run" => run(&fixture, secret, spawned_at, probe, t_main),
        _ => panic!("{usage}"),
    }
}
