//! Megolm receive path, 10,000 messages: our full path (decrypt + sender/room/replay checks +
//! SQLCipher persistence, one transaction per 100-event sync response) next to bare vodozemac
//! decrypting the same ciphertexts, in the same run.
//!
//! `cargo bench -p tchap-secure-tests --bench receive`. Throughput is reported in messages/s
//! (criterion "elem/s"); the ratio is printed at the end.

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tchap_secure_core::bench_internals::ReceiveFixture;
use tchap_secure_hsm::{Pkcs11Config, Pkcs11Vault, SecretBytes, Vault, VaultBinding};
use tchap_secure_tests::softhsm::SoftHsmToken;

const MESSAGES: usize = 10_000;

fn receive(c: &mut Criterion) {
    let token = SoftHsmToken::process_wide();
    let backend = Pkcs11Vault::open(
        &Pkcs11Config {
            module: token.module.clone(),
            token_label: token.label.clone(),
        },
        &SecretBytes::from(token.user_pin.as_bytes()),
    )
    .expect("open the token");
    let work = tempfile::tempdir().expect("temp dir");
    let binding = VaultBinding {
        server_name: "secure.tchap.test".into(),
    };
    let vault = Vault::create(work.path(), &backend, &binding).expect("vault");
    let sender_dir = work.path().join("sender");
    std::fs::create_dir_all(&sender_dir).expect("dir");
    let fixture = ReceiveFixture::new(&sender_dir, &vault, MESSAGES).expect("fixture");
    let mut counter = 0u64;

    let mut group = c.benchmark_group("megolm_receive_10k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("raw_vodozemac_decrypt", |b| {
        b.iter(|| assert_eq!(fixture.decrypt_raw().expect("raw"), MESSAGES))
    });
    group.bench_function("tchap_secure_full_receive_path", |b| {
        b.iter_batched(
            || {
                counter += 1;
                let dir = work.path().join(format!("receiver-{counter}"));
                std::fs::create_dir_all(&dir).expect("dir");
                fixture.receiver(&dir, &vault).expect("receiver")
            },
            |mut receiver| assert_eq!(fixture.receive(&mut receiver).expect("receive"), MESSAGES),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // The ratio, measured once more side by side (criterion's own figures are above).
    let start = Instant::now();
    fixture.decrypt_raw().expect("raw");
    let raw = start.elapsed();
    let dir = work.path().join("receiver-ratio");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut receiver = fixture.receiver(&dir, &vault).expect("receiver");
    let start = Instant::now();
    fixture.receive(&mut receiver).expect("receive");
    let full = start.elapsed();
    let rate = |d: Duration| MESSAGES as f64 / d.as_secs_f64();
    println!(
        "receive 10k: raw vodozemac {:.0} msg/s, full path {:.0} msg/s, ratio {:.1}%",
        rate(raw),
        rate(full),
        100.0 * raw.as_secs_f64() / full.as_secs_f64()
    );
}

criterion_group!(benches, receive);
criterion_main!(benches);
