//! Megolm receive path, 10,000 messages from 10 senders (1,000 each, 10 outbound sessions, one
//! room), by our full path: 100 sync responses of 100 timeline events, each applied in one
//! SQLCipher transaction by `sync::apply` — decryption, the checks (sender owns the device the
//! room key came from over Olm, sender key, room id inside the plaintext, message index never
//! used twice: the replay record), the timeline rows, the sync token — exactly as
//! `Client::finish_sync` after its HTTP request. The receiver is fresh for each run: it learnt
//! the 10 senders' devices from a `/keys/query` answer and got their 10 room keys as Olm pre-key
//! `m.room_key` to-device events (see `bench_internals::Receiver::new`; not measured).
//!
//! This binary installs the zeroizing global allocator, as the shipped library does
//! (`native/jni`): our figures include its cost. matrix-sdk and the raw limits are measured in
//! `receive_matrix_sdk.rs` and `receive.rs`, with the system allocator.
//!
//! `cargo bench -p tchap-secure-tests --bench receive_ours`; with `-- --rss`, runs the
//! workload once instead (events generated 100 at a time) and prints the peak RSS as one JSON
//! line.

use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use tchap_secure_core::bench_internals::{EVENTS_PER_SYNC, ReceiveFixture, Receiver, Senders};
use tchap_secure_tests::bench_setup::bench_vault;

tchap_secure_memory::install_zeroizing_allocator!();

const SENDERS: usize = 10;
const MESSAGES: usize = 10_000;

fn bench(c: &mut Criterion) {
    let work = tempfile::tempdir().expect("temp dir");
    let vault = bench_vault(work.path());
    let fixture = ReceiveFixture::new(SENDERS, MESSAGES).expect("fixture");
    let mut counter = 0u64;
    let mut receiver = || {
        counter += 1;
        let dir = work.path().join(format!("receiver-{counter}"));
        std::fs::create_dir_all(&dir).expect("dir");
        fixture.receiver(&dir, &vault).expect("receiver")
    };

    let mut group = c.benchmark_group("receive_10k");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("tchap_secure", |b| {
        b.iter_batched(
            &mut receiver,
            |mut r: Receiver| {
                assert_eq!(fixture.receive(&mut r).expect("receive"), MESSAGES);
                r
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// The receive workload once, events generated 100 at a time; prints the peak RSS.
fn rss() {
    let work = tempfile::tempdir().expect("temp dir");
    let vault = bench_vault(work.path());
    let dir = work.path().join("receiver");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut senders = Senders::new(SENDERS).expect("senders");
    let mut receiver = Receiver::new(&dir, &vault, &senders).expect("receiver");
    let mut n = 0;
    for _ in 0..MESSAGES / EVENTS_PER_SYNC {
        let events = senders.next_events(EVENTS_PER_SYNC);
        n += receiver.receive(&events).expect("receive");
    }
    assert_eq!(n, MESSAGES);
    println!(
        r#"{{"scenario":"receive_10k","implementation":"tchap_secure","peak_rss_kib":{}}}"#,
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
