//! Catch-up after a flight, matrix-sdk 0.18 (issue 14), in a fresh process (no custom global
//! allocator), on the same fixture as `bench_catchup_ours`.
//!
//! ```text
//! bench_catchup_matrix_sdk prepare <fixture-dir>
//! bench_catchup_matrix_sdk run <fixture-dir> [--spawned-at-ns <CLOCK_MONOTONIC ns>]
//! ```
//!
//! `<fixture-dir>` is a `CatchUpFixture` of `tchap_secure_tests::bench_setup` (`scenario.json`,
//! `expected.tsv`, `password` and `matrix-sdk.passphrase`, mode 0600). The SDK's four SQLite
//! stores (state, crypto, event cache, media; passphrase-encrypted, what
//! `ClientBuilder::sqlite_store` makes) are in `matrix-sdk/store`, its session in
//! `matrix-sdk/session.json` (mode 0600).
//!
//! The SDK syncs with the same filter as our client (`{"room":{"timeline":{"limit":50}},
//! "presence":{"not_types":["*"]}}`) and a zero timeout, with its event cache on
//! (`EventCache::subscribe`), which is what stores room timelines in its SQLite event-cache
//! store and what back-paginates them.
//!
//! `prepare` logs the member "sdk" in on a new device (its keys are uploaded by the first
//! sync), syncs, joins every room of the fixture, and syncs until every room is joined and its
//! event cache holds the room's events: a later `limited` timeline is then a gap after stored
//! events, which the event cache records as a gap chunk.
//!
//! `run` measures the catch-up, from the client ready (stores opened, session restored, event
//! cache subscribed: "reconnect") to every message of `expected.tsv` stored and decrypted. One
//! round:
//! 1. `Client::sync_once` (the SDK decrypts the room keys it carries, then the timelines);
//! 2. wait until the event cache has handled the sync (it does so in a background task: one
//!    `RoomEventCacheGenericUpdate` per room whose timeline changed);
//! 3. for every room where an expected event is not yet in the event cache, the event cache's
//!    own back-pagination (`RoomEventCache::pagination().run_backwards_once(100)`: a
//!    `/messages?dir=b` page of 100, deduplicated against and persisted to its store, gaps
//!    resolved) until all of them are, 4 rooms at a time (as our client);
//! 4. "stored and decrypted" = every expected event is in the room's event cache
//!    (`RoomEventCache::events`, the linked chunk persisted to SQLite) as
//!    `TimelineEventKind::Decrypted`. Events that did not decrypt for want of a room key are
//!    re-decrypted by the event cache's redecryptor (R2D2) in the background when the key
//!    arrives: if the sync carried fewer than 100 to-device messages (nothing more queued),
//!    the round waits for the event cache's updates until every expected event decrypted, or
//!    until [`IDLE_MS`] pass without an update; then the next round syncs again.
//!
//! Stops after [`MAX_ROUNDS`], or after [`STALL_ROUNDS`] rounds in a row that changed nothing,
//! and then reports what is missing instead of failing. Prints one JSON line like
//! `bench_catchup_ours` (`ms`: client ready → caught up; `messages`: expected messages stored
//! and decrypted; `peak_rss_kib` from `VmHWM`, read when caught up; the bodies are compared
//! afterwards) plus `pages` (back-pagination requests).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use matrix_sdk::Client;
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::deserialized_responses::TimelineEventKind;
use matrix_sdk::event_cache::RoomEventCache;
use matrix_sdk::reqwest::Certificate;
use matrix_sdk::ruma::api::client::filter::FilterDefinition;
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter;
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use serde_json::{Value, json};
use tchap_secure_core::bench_internals::{elapsed_ms, monotonic_ns, peak_rss_kib};
use tokio::sync::broadcast::error::RecvError;
use zeroize::Zeroizing;

/// Our client's sync filter, verbatim.
const SYNC_FILTER: &str = r#"{"room":{"timeline":{"limit":50}},"presence":{"not_types":["*"]}}"#;
/// Rounds (sync + back-pagination + redecryption) allowed before giving up.
const MAX_ROUNDS: usize = 30;
/// Rounds in a row without progress after which the catch-up is declared stuck.
const STALL_ROUNDS: usize = 3;
/// Events per back-pagination request (as our client).
const PAGE: u16 = 100;
/// Back-pagination requests allowed per room and round.
const MAX_PAGES_PER_ROOM: usize = 20;
/// Rooms back-paginated at once (as our client).
const CONCURRENT_ROOMS: usize = 4;
/// How long a round waits for the redecryptor without any event-cache update.
const IDLE_MS: u64 = 500;
/// How long to wait for the event cache to handle a sync before going on regardless.
const SYNC_HANDLED_TIMEOUT: Duration = Duration::from_secs(10);
/// Synapse's cap on to-device messages per sync response.
const TO_DEVICE_PER_SYNC: usize = 100;

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn arg_after(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// A new file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(contents)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

struct Inputs {
    homeserver: String,
    roots_pem: String,
    rooms: Vec<OwnedRoomId>,
    localpart: String,
    scenario: String,
    passphrase: Zeroizing<String>,
}

fn inputs(fixture: &Path) -> Inputs {
    let meta = read_json(&fixture.join("scenario.json"));
    Inputs {
        homeserver: meta["config"]["homeserver_url"]
            .as_str()
            .expect("homeserver_url")
            .to_owned(),
        roots_pem: meta["config"]["trust_anchors_pem"]
            .as_array()
            .expect("trust anchors")
            .iter()
            .filter_map(Value::as_str)
            .collect(),
        rooms: meta["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .map(|r| RoomId::parse(r.as_str().expect("a room id")).expect("a room id"))
            .collect(),
        localpart: meta["sdk"]["localpart"]
            .as_str()
            .expect("sdk.localpart")
            .to_owned(),
        scenario: meta["scenario"].as_str().expect("scenario").to_owned(),
        passphrase: Zeroizing::new(
            std::fs::read_to_string(fixture.join("matrix-sdk.passphrase")).expect("passphrase"),
        ),
    }
}

async fn build_client(fixture: &Path, inputs: &Inputs) -> Client {
    let roots = Certificate::from_pem_bundle(inputs.roots_pem.as_bytes()).expect("the root CA");
    Client::builder()
        .homeserver_url(&inputs.homeserver)
        .sqlite_store(
            fixture.join("matrix-sdk").join("store"),
            Some(inputs.passphrase.trim()),
        )
        .add_root_certificates(roots)
        .disable_built_in_root_certificates()
        .build()
        .await
        .expect("build the client")
}

fn sync_settings() -> SyncSettings {
    let filter: FilterDefinition = serde_json::from_str(SYNC_FILTER).expect("the filter");
    SyncSettings::default()
        .filter(Filter::FilterDefinition(filter))
        .timeout(Duration::ZERO)
}

fn main() {
    let t_main = monotonic_ns();
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("prepare"), Some(fixture)) => runtime.block_on(prepare(Path::new(fixture))),
        (Some("run"), Some(fixture)) => {
            let spawned_at = arg_after(&args, "--spawned-at-ns")
                .map(|s| s.parse::<u64>().expect("--spawned-at-ns <ns>"));
            let fixture = PathBuf::from(fixture);
            runtime.block_on(run(&fixture, spawned_at.unwrap_or(t_main)));
        }
        _ => {
            panic!("usage: bench_catchup_matrix_sdk prepare|run <fixture-dir> [--spawned-at-ns N]")
        }
    }
    runtime.shutdown_background();
}

async fn prepare(fixture: &Path) {
    let inputs = inputs(fixture);
    let password =
        Zeroizing::new(std::fs::read_to_string(fixture.join("password")).expect("password"));
    let client = build_client(fixture, &inputs).await;
    client
        .matrix_auth()
        .login_username(&inputs.localpart, &password)
        .initial_device_display_name("bench catch-up")
        .await
        .expect("log in");
    client.event_cache().subscribe().expect("the event cache");
    let settings = sync_settings();
    client.sync_once(settings.clone()).await.expect("sync_once");
    for room in &inputs.rooms {
        client.join_room_by_id(room).await.expect("join a room");
    }
    let mut syncs = 1;
    let cached = loop {
        client.sync_once(settings.clone()).await.expect("sync_once");
        syncs += 1;
        let joined = inputs
            .rooms
            .iter()
            .filter(|r| {
                client
                    .get_room(r)
                    .is_some_and(|room| room.state() == matrix_sdk::RoomState::Joined)
            })
            .count();
        // The event cache handles the sync in a background task: give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut cached = 0;
        for room in &inputs.rooms {
            if let Some(room) = client.get_room(room) {
                let (cache, _handles) = room.event_cache().await.expect("the room's event cache");
                if !cache.events().await.expect("events").is_empty() {
                    cached += 1;
                }
            }
        }
        if (joined == inputs.rooms.len() && cached == inputs.rooms.len() && syncs >= 3)
            || syncs >= 10
        {
            assert_eq!(
                joined,
                inputs.rooms.len(),
                "rooms joined after {syncs} syncs"
            );
            break cached;
        }
    };
    assert_eq!(cached, inputs.rooms.len(), "rooms in the event cache");
    let session: MatrixSession = client.matrix_auth().session().expect("a session");
    write_private(
        &fixture.join("matrix-sdk").join("session.json"),
        serde_json::to_string(&session)
            .expect("encode the session")
            .as_bytes(),
    );
    println!(
        "{}",
        json!({ "prepared": "matrix-sdk", "syncs": syncs, "rooms": cached })
    );
}

/// `expected.tsv`: the event ids sent, per room index (the bodies are read after the
/// measurement).
fn expected_ids(fixture: &Path, rooms: usize) -> Vec<HashSet<String>> {
    let text = std::fs::read_to_string(fixture.join("expected.tsv")).expect("expected.tsv");
    let mut ids = vec![HashSet::new(); rooms];
    for line in text.lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(r), Some(id)) = (fields.next(), fields.next()) else {
            panic!("expected.tsv: {line:?}");
        };
        let r: usize = r.parse().expect("room index");
        ids[r].insert(id.to_owned());
    }
    ids
}

/// One room's expected events in its event cache: (present, decrypted, present but not
/// decrypted).
async fn tally(cache: &RoomEventCache, ids: &HashSet<String>) -> (usize, usize, usize) {
    let events = cache.events().await.expect("the room's events");
    let mut counts = (0, 0, 0);
    let mut seen = HashSet::new();
    for event in &events {
        let Some(id) = event.event_id() else { continue };
        if !ids.contains(id.as_str()) || !seen.insert(id) {
            continue;
        }
        counts.0 += 1;
        if matches!(event.kind, TimelineEventKind::Decrypted(_)) {
            counts.1 += 1;
        } else {
            counts.2 += 1;
        }
    }
    counts
}

/// Back-paginates `cache` until every expected event is in it (or the room's start, or the
/// page cap). Returns the pages fetched and the first error.
async fn fill(cache: RoomEventCache, ids: Arc<HashSet<String>>) -> (usize, Option<String>) {
    let mut pages = 0;
    while tally(&cache, &ids).await.0 < ids.len() {
        if pages >= MAX_PAGES_PER_ROOM {
            return (
                pages,
                Some(format!("{MAX_PAGES_PER_ROOM} pages were not enough")),
            );
        }
        pages += 1;
        match cache.pagination().run_backwards_once(PAGE).await {
            Ok(outcome) if outcome.reached_start => break,
            Ok(_) => {}
            Err(e) => return (pages, Some(format!("back-pagination: {e}"))),
        }
    }
    (pages, None)
}

async fn run(fixture: &Path, spawned_at: u64) {
    let inputs = inputs(fixture);
    let expected: Vec<Arc<HashSet<String>>> = expected_ids(fixture, inputs.rooms.len())
        .into_iter()
        .map(Arc::new)
        .collect();
    let total: usize = expected.iter().map(|s| s.len()).sum();
    let session: MatrixSession = serde_json::from_slice(
        &std::fs::read(fixture.join("matrix-sdk").join("session.json")).expect("session.json"),
    )
    .expect("the session");

    let client = build_client(fixture, &inputs).await;
    client
        .restore_session(session)
        .await
        .expect("restore the session");
    client.event_cache().subscribe().expect("the event cache");
    let mut updates = client.event_cache().subscribe_to_room_generic_updates();
    let t_ready = monotonic_ns();

    let settings = sync_settings();
    let mut caches: HashMap<OwnedRoomId, RoomEventCache> = HashMap::new();
    let mut handles = Vec::new();
    let mut per_round = Vec::new();
    let mut error = None;
    let mut decrypted_before = 0;
    let mut stalled = 0;
    let mut pages_total = 0;
    let mut counts = vec![(0, 0, 0); inputs.rooms.len()];
    for _ in 0..MAX_ROUNDS {
        let t = monotonic_ns();
        // 1. The sync.
        let response = match client.sync_once(settings.clone()).await {
            Ok(r) => r,
            Err(e) => {
                error = Some(format!("sync_once: {e}"));
                break;
            }
        };
        let t_sync = monotonic_ns();
        // 2. The event cache has handled it.
        let mut waiting: HashSet<OwnedRoomId> = response
            .rooms
            .joined
            .iter()
            .filter(|(_, update)| !update.timeline.events.is_empty())
            .map(|(room, _)| room.clone())
            .collect();
        let deadline = tokio::time::Instant::now() + SYNC_HANDLED_TIMEOUT;
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, updates.recv()).await {
                Ok(Ok(update)) => {
                    waiting.remove(&update.room_id);
                }
                Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) | Err(_) => {
                    error = Some(format!(
                        "the event cache did not report {} rooms of the sync",
                        waiting.len()
                    ));
                    break;
                }
            }
        }
        let t_handled = monotonic_ns();
        // 3. Back-pagination of the rooms that lack events, 4 at a time.
        for room in &inputs.rooms {
            if !caches.contains_key(room) {
                let Some(r) = client.get_room(room) else {
                    error = Some(format!("room {room} unknown to the client"));
                    continue;
                };
                let (cache, handle) = r.event_cache().await.expect("the room's event cache");
                caches.insert(room.clone(), cache);
                handles.push(handle);
            }
        }
        let mut queue = Vec::new();
        for (r, room) in inputs.rooms.iter().enumerate() {
            if let Some(cache) = caches.get(room)
                && tally(cache, &expected[r]).await.0 < expected[r].len()
            {
                queue.push((cache.clone(), expected[r].clone()));
            }
        }
        let mut pages = 0;
        let mut tasks = tokio::task::JoinSet::new();
        let mut queue = queue.into_iter();
        for (cache, ids) in queue.by_ref().take(CONCURRENT_ROOMS) {
            tasks.spawn(fill(cache, ids));
        }
        while let Some(done) = tasks.join_next().await {
            let (p, e) = done.expect("a back-pagination task");
            pages += p;
            if e.is_some() {
                error = e;
            }
            if let Some((cache, ids)) = queue.next() {
                tasks.spawn(fill(cache, ids));
            }
        }
        pages_total += pages;
        let t_filled = monotonic_ns();
        // 4. Stored and decrypted?
        for (r, room) in inputs.rooms.iter().enumerate() {
            if let Some(cache) = caches.get(room) {
                counts[r] = tally(cache, &expected[r]).await;
            }
        }
        let mut decrypted: usize = counts.iter().map(|c| c.1).sum();
        if decrypted < total && response.to_device.len() < TO_DEVICE_PER_SYNC {
            // Nothing more is queued: the keys are here; the redecryptor works in the
            // background. Re-count each room it updates.
            while decrypted < total {
                match tokio::time::timeout(Duration::from_millis(IDLE_MS), updates.recv()).await {
                    Ok(Ok(update)) => {
                        if let Some(r) = inputs.rooms.iter().position(|x| *x == update.room_id)
                            && let Some(cache) = caches.get(&update.room_id)
                        {
                            counts[r] = tally(cache, &expected[r]).await;
                        }
                    }
                    Ok(Err(RecvError::Lagged(_))) => {
                        for (r, room) in inputs.rooms.iter().enumerate() {
                            if let Some(cache) = caches.get(room) {
                                counts[r] = tally(cache, &expected[r]).await;
                            }
                        }
                    }
                    Ok(Err(RecvError::Closed)) | Err(_) => break,
                }
                decrypted = counts.iter().map(|c| c.1).sum();
            }
        }
        let present: usize = counts.iter().map(|c| c.0).sum();
        per_round.push(json!({
            "ms": elapsed_ms(t, monotonic_ns()),
            "sync_ms": elapsed_ms(t, t_sync),
            "event_cache_ms": elapsed_ms(t_sync, t_handled),
            "backpagination_ms": elapsed_ms(t_handled, t_filled),
            "redecryption_wait_ms": elapsed_ms(t_filled, monotonic_ns()),
            "to_device_events": response.to_device.len(),
            "pages": pages,
            "expected_present": present,
            "expected_decrypted": decrypted,
        }));
        if decrypted == total {
            break;
        }
        let progress = decrypted > decrypted_before || pages > 0 || !response.to_device.is_empty();
        decrypted_before = decrypted;
        stalled = if progress { 0 } else { stalled + 1 };
        if stalled >= STALL_ROUNDS {
            error = Some(format!("stuck: {STALL_ROUNDS} rounds without progress"));
            break;
        }
    }
    let t_done = monotonic_ns();
    let peak = peak_rss_kib().expect("VmHWM in /proc/self/status");

    // Not measured: whether each decrypted body is the one sent, and what is missing where.
    let text = std::fs::read_to_string(fixture.join("expected.tsv")).expect("expected.tsv");
    let bodies: HashMap<&str, &str> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, '\t');
            fields.next()?;
            Some((fields.next()?, fields.next()?))
        })
        .collect();
    let mut body_mismatch = 0;
    let mut rooms_incomplete = Vec::new();
    for (r, room) in inputs.rooms.iter().enumerate() {
        let Some(cache) = caches.get(room) else {
            continue;
        };
        for event in cache.events().await.expect("events") {
            let (Some(id), TimelineEventKind::Decrypted(d)) = (event.event_id(), &event.kind)
            else {
                continue;
            };
            let Some(sent) = bodies.get(id.as_str()) else {
                continue;
            };
            let body: Option<String> = d
                .event
                .get_field::<Value>("content")
                .ok()
                .flatten()
                .and_then(|c| c["body"].as_str().map(str::to_owned));
            if body.as_deref() != Some(*sent) {
                body_mismatch += 1;
            }
        }
        let (present, ok, not_decrypted) = counts[r];
        if ok < expected[r].len() {
            rooms_incomplete.push(json!({
                "room": r,
                "decrypted": ok,
                "undecryptable": not_decrypted,
                "missing": expected[r].len() - present,
            }));
        }
    }
    let messages: usize = counts.iter().map(|c| c.1).sum();
    let undecryptable: usize = counts.iter().map(|c| c.2).sum();
    let present: usize = counts.iter().map(|c| c.0).sum();
    println!(
        "{}",
        json!({
            "scenario": inputs.scenario,
            "implementation": "matrix-sdk",
            "ms": elapsed_ms(t_ready, t_done),
            "spawn_to_caught_up_ms": elapsed_ms(spawned_at, t_done),
            "spawn_to_ready_ms": elapsed_ms(spawned_at, t_ready),
            "peak_rss_kib": peak,
            "messages": messages,
            "expected_messages": total,
            "missing": total - present,
            "undecryptable": undecryptable,
            "body_mismatch": body_mismatch,
            "rounds": per_round.len(),
            "pages": pages_total,
            "per_round": per_round,
            "rooms_incomplete": rooms_incomplete,
            "error": error,
        })
    );
    drop(handles);
}
