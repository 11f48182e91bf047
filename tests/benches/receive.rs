//! The raw limits of the receive path (10,000 Megolm messages from 10 senders), measured in the
//! same run as ours (`receive_ours.rs`) and matrix-sdk's (`receive_matrix_sdk.rs`), with the
//! system allocator:
//!
//! - `raw_vodozemac`: bare vodozemac decrypting the same 10,000 ciphertexts (base64, the
//!   Megolm message, one inbound session per sender kept in memory; no check, no storage);
//! - `raw_sqlcipher`: a bare SQLCipher connection with our store's PRAGMAs (raw 256-bit key,
//!   `cipher_memory_security`, WAL, `synchronous = FULL`, `secure_delete`, `temp_store`,
//!   `foreign_keys`) inserting 10,000 timeline-like rows (event id, room, sequence, sender,
//!   timestamp, plaintext body; primary key on the event id) in 100 transactions of 100.
//!
//! `cargo bench -p tchap-secure-tests --bench receive`; with `-- --rss`, runs both once instead
//! (events generated 100 at a time, each batch decrypted then inserted) and prints the peak RSS
//! as one JSON line.

use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use tchap_secure_core::bench_internals::{
    EVENTS_PER_SYNC, RawSqlcipher, ReceiveFixture, Senders, decrypt_raw, raw_rows,
};

const SENDERS: usize = 10;
const MESSAGES: usize = 10_000;

fn database_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key).expect("random");
    key
}

fn bench(c: &mut Criterion) {
    let fixture = ReceiveFixture::new(SENDERS, MESSAGES).expect("fixture");
    let rows: Vec<_> = fixture
        .events()
        .chunks(EVENTS_PER_SYNC)
        .enumerate()
        .map(|(n, chunk)| raw_rows(chunk, n * EVENTS_PER_SYNC))
        .collect();
    let work = tempfile::tempdir().expect("temp dir");
    let mut counter = 0u64;

    let mut group = c.benchmark_group("receive_10k");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("raw_vodozemac", |b| {
        b.iter(|| assert_eq!(fixture.decrypt_raw().expect("raw"), MESSAGES))
    });
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    group.bench_function("raw_sqlcipher", |b| {
        b.iter_batched(
            || {
                counter += 1;
                let dir = work.path().join(format!("raw-{counter}"));
                std::fs::create_dir_all(&dir).expect("dir");
                RawSqlcipher::open(&dir, &database_key()).expect("open")
            },
            |mut db| {
                for batch in &rows {
                    db.insert(batch).expect("insert");
                }
                db
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Bare decryption then bare insertion of each batch of 100, once; prints the peak RSS.
fn rss() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut senders = Senders::new(SENDERS).expect("senders");
    let room_keys = senders.room_keys().to_vec();
    let mut db = RawSqlcipher::open(work.path(), &database_key()).expect("open");
    let mut n = 0;
    for batch in 0..MESSAGES / EVENTS_PER_SYNC {
        let events = senders.next_events(EVENTS_PER_SYNC);
        n += decrypt_raw(&room_keys, &events).expect("decrypt");
        db.insert(&raw_rows(&events, batch * EVENTS_PER_SYNC))
            .expect("insert");
    }
    assert_eq!(n, MESSAGES);
    println!(
        r#"{{"scenario":"receive_10k","implementation":"raw","peak_rss_kib":{}}}"#,
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
