//! Send path, ours, with the zeroizing global allocator the shipped library installs
//! (matrix-sdk and the raw limits: `send_matrix_sdk.rs`, `send.rs`, system allocator).
//!
//! - `send_10k/tchap_secure`: 10,000 text messages into an encrypted room shared with one
//!   other device, each as `Client::send_text` runs it without its HTTP requests
//!   (`bench_internals::SendFixture::send_text`): room checks, members tracked (one
//!   transaction), outbound session planned and rotated every 100 messages (one transaction),
//!   then in one transaction the room key Olm-encrypted for the other device when the session
//!   is new and queued, the session marked shared, the message Megolm-encrypted (session
//!   unpickled, ratcheted, pickled again and saved) and queued in the outbox; then the outbox
//!   read and each request removed (one statement each), as after a successful send.
//! - `key_share_50/tchap_secure`: the room-key share of a first message to a room with 10
//!   users × 5 devices never seen before (`bench_internals::KeyShareFixture::share`): the
//!   `/keys/query` answer checked (50 self-signatures) and pinned, the outbound session
//!   created, 50 Olm sessions created from the `/keys/claim` answer (50 one-time-key
//!   signatures checked), the room key Olm-encrypted for each device and queued (one request
//!   per user), the session marked shared; four transactions, as `send_text`.
//! - `key_share_50_cross_signed/tchap_secure`: the same share when the 10 users have
//!   cross-signing identities (`keys_query_answer_cross_signed`): besides the above, each
//!   user's master key pinned and its self-signing key's signature checked, each device's
//!   self-signing signature checked and the device recorded as cross-signed, and the sharing
//!   rule of issue 16 (`share_keys_with: cross_signed`) applied to every device.
//!
//! `cargo bench -p tchap-secure-tests --bench send_ours`.

use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use tchap_secure_core::bench_internals::{
    KeyShareFixture, PeerDevice, SendFixture, keys_claim_answer, keys_query_answer,
    keys_query_answer_cross_signed, message_body, peer_devices,
};
use tchap_secure_tests::bench_setup::bench_vault;

#[path = "common/key_share.rs"]
mod key_share;
use key_share::key_share_group;

tchap_secure_memory::install_zeroizing_allocator!();

const MESSAGES: usize = 10_000;
const USERS: usize = 10;
const DEVICES_PER_USER: usize = 5;

fn bench(c: &mut Criterion) {
    let work = tempfile::tempdir().expect("temp dir");
    let vault = bench_vault(work.path());
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
    group.bench_function("tchap_secure", |b| {
        b.iter_batched(
            || {
                let peer = PeerDevice::new("@bob:secure.tchap.test", "BOBDEV").expect("peer");
                SendFixture::new(&fresh_dir("send"), &vault, peer).expect("sender")
            },
            |mut sender| {
                for body in &bodies {
                    sender.send_text(body).expect("send");
                }
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
    for (name, query) in [
        ("key_share_50", &query),
        ("key_share_50_cross_signed", &cross_signed),
    ] {
        let mut group = key_share_group(c, name, peers.len());
        group.bench_function("tchap_secure", |b| {
            b.iter_batched(
                || KeyShareFixture::new(&fresh_dir("share"), &vault, &peers).expect("sharer"),
                |mut sharer| {
                    assert_eq!(sharer.share(query, &claim).expect("share"), peers.len());
                    sharer
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
