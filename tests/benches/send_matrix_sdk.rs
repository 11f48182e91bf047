//! Send path, matrix-sdk-crypto 0.18.0 (`OlmMachine` on its SQLite crypto store, system
//! allocator), the same work as ours (`send_ours.rs`) on the same keys and answers:
//!
//! - `send_10k/matrix_sdk`: 10,000 text messages into a room shared with one other device,
//!   each as matrix-sdk's send queue and `Room::send` run it without the HTTP requests: the
//!   request persisted in its SQLite state store (`save_send_queue_request`), the room key
//!   pre-shared (`get_missing_sessions`, then `share_room_key` with the default settings:
//!   rotation every 100 messages, the new key Olm-encrypted for the other device and its
//!   to-device request marked sent), the message encrypted (`encrypt_room_event_raw`, which
//!   saves the ratcheted outbound session), then the request removed
//!   (`remove_send_queue_request`), as after a successful send.
//! - `key_share_50/matrix_sdk`: the room-key share of a first message to a room with 10 users
//!   × 5 devices never seen before: the `/keys/query` answer (`mark_request_as_sent`: 50
//!   self-signatures checked, devices stored), the `/keys/claim` answer
//!   (`get_missing_sessions`, `mark_request_as_sent`: 50 one-time-key signatures checked, 50
//!   Olm sessions created and stored), then `share_room_key` (outbound session created, the
//!   room key Olm-encrypted for the 50 devices, sessions saved; its to-device requests are
//!   returned for sending).
//! - `key_share_50_cross_signed/matrix_sdk`: the same share when the 10 users have
//!   cross-signing identities (`keys_query_answer_cross_signed`), with matrix-sdk's
//!   identity-based sharing (`CollectStrategy::IdentityBasedStrategy`, MSC4153: only devices
//!   signed by their owner's identity), the counterpart of our `share_keys_with: cross_signed`;
//!   matrix-sdk requires our own identity for it, bootstrapped before the measurement.
//!
//! Stores keyed with a raw 256-bit key (`open_with_key`: no passphrase KDF, like ours).
//! `cargo bench -p tchap-secure-tests --bench send_matrix_sdk`.

use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use matrix_sdk_base::store::{QueuedRequestKind, SerializableEventContent, StateStore};
use matrix_sdk_common::ruma::api::IncomingResponse;
use matrix_sdk_common::ruma::api::client::keys::{claim_keys, get_keys, upload_keys};
use matrix_sdk_common::ruma::api::client::to_device::send_event_to_device;
use matrix_sdk_common::ruma::events::AnyMessageLikeEventContent;
use matrix_sdk_common::ruma::serde::Raw;
use matrix_sdk_common::ruma::{
    MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedUserId, TransactionId, device_id,
};
use matrix_sdk_crypto::types::requests::AnyOutgoingRequest;
use matrix_sdk_crypto::{CollectStrategy, EncryptionSettings, OlmMachine};
use matrix_sdk_sqlite::{SqliteCryptoStore, SqliteStateStore};
use serde_json::json;
use tchap_secure_core::bench_internals::{
    PeerDevice, ROOM, SENDER_USER, keys_claim_answer, keys_query_answer,
    keys_query_answer_cross_signed, message_body, peer_devices, users_of,
};

#[path = "common/key_share.rs"]
mod key_share;
use key_share::key_share_group;

const MESSAGES: usize = 10_000;
const USERS: usize = 10;
const DEVICES_PER_USER: usize = 5;
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

fn user_ids(peers: &[PeerDevice]) -> Vec<OwnedUserId> {
    users_of(peers)
        .iter()
        .map(|u| u.as_str().try_into().expect("user id"))
        .collect()
}

/// Our `OlmMachine` in `dir`, its first key upload acknowledged, tracking the owners of `peers`.
async fn machine(dir: &Path, peers: &[PeerDevice]) -> OlmMachine {
    let user: OwnedUserId = SENDER_USER.try_into().expect("user id");
    let store = SqliteCryptoStore::open_with_key(dir.join("crypto"), Some(&STORE_KEY))
        .await
        .expect("crypto store");
    let machine = OlmMachine::with_store(&user, device_id!("ALICEDEV"), store, None)
        .await
        .expect("olm machine");
    for request in machine.outgoing_requests().await.expect("requests") {
        if let AnyOutgoingRequest::KeysUpload(_) = request.request() {
            let answer: upload_keys::v3::Response =
                response(r#"{"one_time_key_counts": {"signed_curve25519": 50}}"#);
            machine
                .mark_request_as_sent(request.request_id(), &answer)
                .await
                .expect("upload acknowledged");
        }
    }
    let users = user_ids(peers);
    machine
        .update_tracked_users(users.iter().map(|u| u.as_ref()))
        .await
        .expect("track");
    machine
}

/// The `/keys/query` then `/keys/claim` answers for `peers`, then `share_room_key`: the
/// to-device requests, and how many devices they reach.
async fn share(
    machine: &OlmMachine,
    peers: &[PeerDevice],
    query: &str,
    claim: &str,
    settings: EncryptionSettings,
) -> usize {
    let users = user_ids(peers);
    let room: OwnedRoomId = ROOM.try_into().expect("room id");
    let query: get_keys::v3::Response = response(query);
    for request in machine.outgoing_requests().await.expect("requests") {
        if let AnyOutgoingRequest::KeysQuery(_) = request.request() {
            machine
                .mark_request_as_sent(request.request_id(), &query)
                .await
                .expect("keys query");
        }
    }
    if let Some((id, _)) = machine
        .get_missing_sessions(users.iter().map(|u| u.as_ref()))
        .await
        .expect("missing sessions")
    {
        let claim: claim_keys::v3::Response = response(claim);
        machine
            .mark_request_as_sent(&id, &claim)
            .await
            .expect("keys claim");
    }
    let requests = machine
        .share_room_key(&room, users.iter().map(|u| u.as_ref()), settings)
        .await
        .expect("share");
    requests
        .iter()
        .map(|r| r.messages.values().map(|m| m.len()).sum::<usize>())
        .sum()
}

/// A sender that shares [`ROOM`] with `peer`, and its send queue store.
struct Sender {
    machine: OlmMachine,
    queue: SqliteStateStore,
    users: Vec<OwnedUserId>,
    room: OwnedRoomId,
}

async fn sender(dir: &Path, peer: PeerDevice) -> Sender {
    let peers = [peer];
    let machine = machine(dir, &peers).await;
    let query = keys_query_answer(&peers).expect("answer");
    let claim = keys_claim_answer(&peers);
    assert_eq!(
        share(
            &machine,
            &peers,
            &query,
            &claim,
            EncryptionSettings::default()
        )
        .await,
        1
    );
    let queue = SqliteStateStore::open_with_key(dir.join("state"), Some(&STORE_KEY))
        .await
        .expect("state store");
    // The room's other member only. Our own user has no other device here (as in ours); naming
    // it would make every `get_missing_sessions` wait out matrix-sdk's pending own-user
    // `/keys/query` timeout, which this benchmark never answers — a wait, not work.
    let users = user_ids(&peers);
    Sender {
        machine,
        queue,
        users,
        room: ROOM.try_into().expect("room id"),
    }
}

impl Sender {
    async fn send_text(&self, body: &str) {
        let content: Raw<AnyMessageLikeEventContent> = Raw::from_json(
            serde_json::value::to_raw_value(&json!({ "msgtype": "m.text", "body": body }))
                .expect("raw"),
        );
        let txn = TransactionId::new();
        self.queue
            .save_send_queue_request(
                &self.room,
                txn.clone(),
                MilliSecondsSinceUnixEpoch::now(),
                QueuedRequestKind::Event {
                    content: SerializableEventContent::from_raw(
                        content.clone(),
                        "m.room.message".to_owned(),
                    ),
                },
                0,
            )
            .await
            .expect("queue");
        let missing = self
            .machine
            .get_missing_sessions(self.users.iter().map(|u| u.as_ref()))
            .await
            .expect("missing sessions");
        assert!(missing.is_none(), "every device has an Olm session");
        let requests = self
            .machine
            .share_room_key(
                &self.room,
                self.users.iter().map(|u| u.as_ref()),
                EncryptionSettings::default(),
            )
            .await
            .expect("share");
        for r in requests {
            self.machine
                .mark_request_as_sent(&r.txn_id, &send_event_to_device::v3::Response::new())
                .await
                .expect("to-device sent");
        }
        let encrypted = self
            .machine
            .encrypt_room_event_raw(&self.room, "m.room.message", &content)
            .await
            .expect("encrypt");
        std::hint::black_box(encrypted);
        self.queue
            .remove_send_queue_request(&self.room, &txn)
            .await
            .expect("dequeue");
    }
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    // matrix-sdk's SQLite pools hand their connections to the runtime when dropped: what
    // criterion drops outside `block_on` must still find it.
    let _context = rt.enter();
    let work = tempfile::tempdir().expect("temp dir");
    let bodies: Vec<String> = (0..MESSAGES).map(message_body).collect();
    let mut counter = 0u64;
    let mut fresh_dir = |prefix: &str| {
        counter += 1;
        let dir = work.path().join(format!("{prefix}-{counter}"));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    };

    let mut group = c.benchmark_group("send_10k");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("matrix_sdk", |b| {
        b.iter_batched(
            || {
                let peer = PeerDevice::new("@bob:secure.tchap.test", "BOBDEV").expect("peer");
                rt.block_on(sender(&fresh_dir("send"), peer))
            },
            |sender| {
                rt.block_on(async {
                    for body in &bodies {
                        sender.send_text(body).await;
                    }
                });
                sender
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let peers = peer_devices(USERS, DEVICES_PER_USER).expect("peers");
    let query = keys_query_answer(&peers).expect("answer");
    let claim = keys_claim_answer(&peers);
    let cross_signed = keys_query_answer_cross_signed(&peers).expect("answer");
    let identity_based = EncryptionSettings {
        sharing_strategy: CollectStrategy::IdentityBasedStrategy,
        ..EncryptionSettings::default()
    };
    // Identity-based sharing requires our own cross-signing identity (matrix-sdk refuses with
    // `CrossSigningNotSetup` otherwise): bootstrapped in the setup, not measured.
    for (name, query, settings, own_identity) in [
        ("key_share_50", &query, EncryptionSettings::default(), false),
        (
            "key_share_50_cross_signed",
            &cross_signed,
            identity_based,
            true,
        ),
    ] {
        let mut group = key_share_group(c, name, peers.len());
        group.bench_function("matrix_sdk", |b| {
            b.iter_batched(
                || {
                    rt.block_on(async {
                        let machine = machine(&fresh_dir("share"), &peers).await;
                        if own_identity {
                            machine
                                .bootstrap_cross_signing(false)
                                .await
                                .expect("our cross-signing identity");
                        }
                        machine
                    })
                },
                |machine| {
                    let n = rt.block_on(share(&machine, &peers, query, &claim, settings.clone()));
                    assert_eq!(n, peers.len());
                    machine
                },
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
