//! Megolm receive path, 10,000 messages from 10 senders, done by matrix-sdk-crypto 0.18.0
//! (`OlmMachine`, the engine of Element X) on its SQLite crypto store, with the decrypted
//! events persisted in matrix-sdk's SQLite event cache store — next to ours
//! (`receive_ours.rs`) and the raw limits (`receive.rs`). System allocator (what matrix-sdk
//! ships with).
//!
//! The same bytes as ours (`bench_internals::Senders`): the senders' devices reach the
//! `OlmMachine` through a `/keys/query` answer (`mark_request_as_sent`: self-signatures
//! checked), their room keys as Olm pre-key `m.room_key` to-device events opened with the
//! one-time keys the machine itself generated for upload (`receive_sync_changes`: Olm
//! decryption, recipient/sender/key checks, the session's sender data from the known device).
//! The measured part, per sync response of 100 events: `decrypt_room_event` for each (the
//! inbound session loaded from the store and decrypted with its store cipher, Megolm
//! decryption, the room-id check, the sender data recomputed from the sender's device, the
//! trust requirement `Untrusted` — Element X's default; matrix-sdk keeps no message-index
//! record, so it has no replay check), then the 100 decrypted `TimelineEvent`s written in one
//! `handle_linked_chunk_updates` call (one SQLite transaction, values encrypted with its store
//! cipher), as matrix-sdk's event cache does for a sync. Not included (in its favour): the
//! sync token and room state that matrix-sdk's base client also saves per sync.
//!
//! `cargo bench -p tchap-secure-tests --bench receive_matrix_sdk`; with `-- --rss`, runs the
//! workload once instead (events generated 100 at a time) and prints the peak RSS as one JSON
//! line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use matrix_sdk_base::event_cache::store::EventCacheStore;
use matrix_sdk_common::deserialized_responses::TimelineEvent;
use matrix_sdk_common::linked_chunk::{ChunkIdentifier, LinkedChunkId, Position, Update};
use matrix_sdk_common::ruma::api::IncomingResponse;
use matrix_sdk_common::ruma::api::client::keys::{get_keys, upload_keys};
use matrix_sdk_common::ruma::api::client::sync::sync_events::DeviceLists;
use matrix_sdk_common::ruma::events::AnyToDeviceEvent;
use matrix_sdk_common::ruma::serde::Raw;
use matrix_sdk_common::ruma::{OwnedRoomId, OwnedUserId, RoomId, device_id};
use matrix_sdk_crypto::types::events::room::encrypted::EncryptedEvent;
use matrix_sdk_crypto::types::requests::AnyOutgoingRequest;
use matrix_sdk_crypto::{DecryptionSettings, EncryptionSyncChanges, OlmMachine, TrustRequirement};
use matrix_sdk_sqlite::{SqliteCryptoStore, SqliteEventCacheStore};
use serde_json::Value;
use tchap_secure_core::bench_internals::{
    EVENTS_PER_SYNC, OlmRecipient, RECEIVER_USER, ROOM, Senders, keys_query_answer, users_of,
};

const SENDERS: usize = 10;
const MESSAGES: usize = 10_000;
/// The stores' 256-bit key (matrix-sdk's `open_with_key`: no passphrase KDF, like ours).
const STORE_KEY: [u8; 32] = [0x5a; 32];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A ruma response decoded from the JSON body a server would send.
fn response<R: IncomingResponse>(body: &str) -> R {
    let http = http::Response::builder()
        .status(200)
        .body(body.as_bytes().to_vec())
        .expect("http response");
    R::try_from_http_response(http)
        .map_err(|e| format!("{e}"))
        .expect("response")
}

fn raw<T>(value: &Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(value).expect("raw json"))
}

/// matrix-sdk's receiving device with its two stores.
struct MatrixReceiver {
    machine: OlmMachine,
    cache: SqliteEventCacheStore,
    room: OwnedRoomId,
    chunks: u64,
}

/// Our peer's `OlmMachine` in `dir`, its keys uploaded, the senders' devices queried and their
/// room keys received over Olm.
async fn receiver(dir: &Path, senders: &Senders) -> MatrixReceiver {
    let user: OwnedUserId = RECEIVER_USER.try_into().expect("user id");
    let store = SqliteCryptoStore::open_with_key(dir.join("crypto"), Some(&STORE_KEY))
        .await
        .expect("crypto store");
    let machine = OlmMachine::with_store(&user, device_id!("BOBDEV"), store, None)
        .await
        .expect("olm machine");
    // The first key upload: keep its one-time keys (what the server would hand to the senders).
    let mut one_time_keys = Vec::new();
    for request in machine.outgoing_requests().await.expect("requests") {
        if let AnyOutgoingRequest::KeysUpload(upload) = request.request() {
            for key in upload.one_time_keys.values() {
                let key: Value = serde_json::from_str(key.json().get()).expect("one-time key");
                one_time_keys.push(key["key"].as_str().expect("key").to_owned());
            }
            let answer: upload_keys::v3::Response = response(&format!(
                r#"{{"one_time_key_counts": {{"signed_curve25519": {}}}}}"#,
                upload.one_time_keys.len()
            ));
            machine
                .mark_request_as_sent(request.request_id(), &answer)
                .await
                .expect("upload acknowledged");
        }
    }
    // The senders' devices, from a /keys/query answer.
    let users: Vec<OwnedUserId> = users_of(senders.devices())
        .iter()
        .map(|u| u.as_str().try_into().expect("user id"))
        .collect();
    machine
        .update_tracked_users(users.iter().map(|u| u.as_ref()))
        .await
        .expect("track");
    let answer: get_keys::v3::Response =
        response(&keys_query_answer(senders.devices()).expect("answer"));
    for request in machine.outgoing_requests().await.expect("requests") {
        if let AnyOutgoingRequest::KeysQuery(_) = request.request() {
            machine
                .mark_request_as_sent(request.request_id(), &answer)
                .await
                .expect("keys query");
        }
    }
    // The room keys, Olm-encrypted to the machine's one-time keys.
    let identity = machine.identity_keys();
    let to_device: Vec<Raw<AnyToDeviceEvent>> = senders
        .devices()
        .iter()
        .zip(senders.room_keys())
        .zip(&one_time_keys)
        .map(|((device, room_key), otk)| {
            let recipient = OlmRecipient {
                user_id: RECEIVER_USER.into(),
                device_id: "BOBDEV".into(),
                ed25519: identity.ed25519.to_base64(),
                curve25519: identity.curve25519.to_base64(),
                one_time_key: otk.clone(),
            };
            raw(&device
                .olm_to_device(&recipient, "m.room_key", room_key)
                .expect("to-device"))
        })
        .collect();
    let (_, room_keys) = machine
        .receive_sync_changes(
            EncryptionSyncChanges {
                to_device_events: to_device,
                changed_devices: &DeviceLists::new(),
                one_time_keys_counts: &BTreeMap::new(),
                unused_fallback_keys: None,
                next_batch_token: None,
            },
            &settings(),
        )
        .await
        .expect("room keys");
    assert_eq!(
        room_keys.len(),
        senders.devices().len(),
        "room keys accepted"
    );
    let cache = SqliteEventCacheStore::open_with_key(dir.join("cache"), Some(&STORE_KEY))
        .await
        .expect("event cache store");
    MatrixReceiver {
        machine,
        cache,
        room: ROOM.try_into().expect("room id"),
        chunks: 0,
    }
}

fn settings() -> DecryptionSettings {
    DecryptionSettings {
        sender_device_trust_requirement: TrustRequirement::Untrusted,
    }
}

impl MatrixReceiver {
    /// One sync response's timeline: each event decrypted, then all of them persisted in the
    /// event cache in one call (one new chunk of the room's linked chunk).
    async fn receive(&mut self, events: &[Value]) -> usize {
        let room: &RoomId = &self.room;
        let settings = settings();
        let mut decrypted = Vec::with_capacity(events.len());
        for event in events {
            let event: Raw<EncryptedEvent> = raw(event);
            let d = self
                .machine
                .decrypt_room_event(&event, room, &settings)
                .await
                .expect("decrypt");
            decrypted.push(TimelineEvent::from_decrypted(d, None));
        }
        let n = decrypted.len();
        let new = ChunkIdentifier::new(self.chunks);
        let previous = self.chunks.checked_sub(1).map(ChunkIdentifier::new);
        self.chunks += 1;
        self.cache
            .handle_linked_chunk_updates(
                LinkedChunkId::Room(room),
                vec![
                    Update::NewItemsChunk {
                        previous,
                        new,
                        next: None,
                    },
                    Update::PushItems {
                        at: Position::new(new, 0),
                        items: decrypted,
                    },
                ],
            )
            .await
            .expect("event cache");
        n
    }
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    // matrix-sdk's SQLite pools hand their connections to the runtime when dropped: what
    // criterion drops outside `block_on` must still find it.
    let _context = rt.enter();
    let mut senders = Senders::new(SENDERS).expect("senders");
    let events = senders.next_events(MESSAGES);
    let work = tempfile::tempdir().expect("temp dir");
    let mut counter = 0u64;

    // Same events, same answers: check once that every message decrypts with a known sender.
    {
        let dir = work.path().join("check");
        let mut r = rt.block_on(receiver(&dir, &senders));
        let raw_event: Raw<EncryptedEvent> = raw(&events[0]);
        let d = rt
            .block_on(
                r.machine
                    .decrypt_room_event(&raw_event, &r.room, &settings()),
            )
            .expect("decrypt");
        eprintln!(
            "matrix-sdk: first event from {:?}, verification state {:?}",
            d.encryption_info.sender_device, d.encryption_info.verification_state
        );
        assert_eq!(rt.block_on(r.receive(&events[..EVENTS_PER_SYNC])), 100);
    }

    let mut group = c.benchmark_group("receive_10k");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("matrix_sdk", |b| {
        b.iter_batched(
            || {
                counter += 1;
                let dir = work.path().join(format!("receiver-{counter}"));
                rt.block_on(receiver(&dir, &senders))
            },
            |mut r| {
                let n: usize = rt.block_on(async {
                    let mut n = 0;
                    for chunk in events.chunks(EVENTS_PER_SYNC) {
                        n += r.receive(chunk).await;
                    }
                    n
                });
                assert_eq!(n, MESSAGES);
                r
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// The receive workload once, events generated 100 at a time; prints the peak RSS.
fn rss() {
    let rt = runtime();
    let work = tempfile::tempdir().expect("temp dir");
    let mut senders = Senders::new(SENDERS).expect("senders");
    let n = rt.block_on(async {
        let mut r = receiver(work.path(), &senders).await;
        let mut n = 0;
        for _ in 0..MESSAGES / EVENTS_PER_SYNC {
            let events = senders.next_events(EVENTS_PER_SYNC);
            n += r.receive(&events).await;
        }
        n
    });
    assert_eq!(n, MESSAGES);
    println!(
        r#"{{"scenario":"receive_10k","implementation":"matrix_sdk","peak_rss_kib":{}}}"#,
        tchap_secure_core::bench_internals::peak_rss_kib().expect("VmHWM in /proc/self/status")
    );
}

fn main() {
    if std::env::args().any(|a| a == "--rss") {
        rss();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
