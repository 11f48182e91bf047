//! The raw limits of the send path, measured in the same run as ours (`send_ours.rs`) and
//! matrix-sdk's (`send_matrix_sdk.rs`), with the system allocator:
//!
//! - `send_10k/raw_vodozemac`: bare vodozemac `GroupSession::encrypt` of 10,000 plaintexts
//!   (already serialized, as our engine builds them) and the base64 of each ciphertext; one
//!   session (no rotation), nothing stored;
//! - `send_10k/raw_sqlcipher`: a bare SQLCipher connection with our store's PRAGMAs
//!   (`synchronous = FULL`, WAL, …) inserting one row per message in its own transaction — the
//!   least a send that is durable before its request can write;
//! - `key_share_50/raw_vodozemac`: for 50 devices, a vodozemac `create_outbound_session` from
//!   its one-time key and the encryption of the `m.room_key` payload (no signature checked,
//!   nothing stored).
//!
//! `cargo bench -p tchap-secure-tests --bench send`.

use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use serde_json::{Value, json};
use tchap_secure_core::bench_internals::{
    OlmRecipient, PeerDevice, ROOM, RawSqlcipher, message_body, peer_devices,
};
use vodozemac::megolm::{GroupSession, SessionConfig};

#[path = "common/key_share.rs"]
mod key_share;
use key_share::key_share_group;

const MESSAGES: usize = 10_000;
const USERS: usize = 10;
const DEVICES_PER_USER: usize = 5;

fn bench(c: &mut Criterion) {
    let plaintexts: Vec<String> = (0..MESSAGES)
        .map(|i| {
            json!({
                "type": "m.room.message",
                "content": { "msgtype": "m.text", "body": message_body(i) },
                "room_id": ROOM,
            })
            .to_string()
        })
        .collect();
    let work = tempfile::tempdir().expect("temp dir");
    let mut counter = 0u64;

    let mut group = c.benchmark_group("send_10k");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("raw_vodozemac", |b| {
        b.iter_batched(
            || GroupSession::new(SessionConfig::version_1()),
            |mut session| {
                for p in &plaintexts {
                    std::hint::black_box(session.encrypt(p.as_bytes()).to_base64());
                }
                session
            },
            BatchSize::PerIteration,
        )
    });
    // The ciphertexts a send would persist.
    let rows: Vec<(String, String, i64, String)> = {
        let mut session = GroupSession::new(SessionConfig::version_1());
        plaintexts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    format!("txn{i}"),
                    "@alice:secure.tchap.test".to_owned(),
                    i as i64,
                    session.encrypt(p.as_bytes()).to_base64(),
                )
            })
            .collect()
    };
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    group.bench_function("raw_sqlcipher", |b| {
        b.iter_batched(
            || {
                counter += 1;
                let dir = work.path().join(format!("raw-{counter}"));
                std::fs::create_dir_all(&dir).expect("dir");
                let mut key = [0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                    .expect("random");
                RawSqlcipher::open(&dir, &key).expect("open")
            },
            |mut db| {
                for row in rows.chunks(1) {
                    db.insert(row).expect("insert");
                }
                db
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let sender = PeerDevice::new("@alice:secure.tchap.test", "ALICEDEV").expect("sender");
    let peers = peer_devices(USERS, DEVICES_PER_USER).expect("peers");
    let recipients: Vec<OlmRecipient> = peers
        .iter()
        .map(|p| {
            let (_, otk) = p.one_time_key();
            OlmRecipient {
                user_id: p.user_id().to_owned(),
                device_id: p.device_id().to_owned(),
                ed25519: p.ed25519(),
                curve25519: p.curve25519(),
                one_time_key: otk["key"].as_str().expect("key").to_owned(),
            }
        })
        .collect();
    let session = GroupSession::new(SessionConfig::version_1());
    let room_key: Value = json!({
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": ROOM,
        "session_id": session.session_id(),
        "session_key": session.session_key().to_base64(),
    });
    let mut group = key_share_group(c, "key_share_50", recipients.len());
    group.bench_function("raw_vodozemac", |b| {
        b.iter(|| {
            for r in &recipients {
                std::hint::black_box(
                    sender
                        .olm_to_device(r, "m.room_key", &room_key)
                        .expect("encrypt"),
                );
            }
        })
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
