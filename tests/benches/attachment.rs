//! Attachments (issue 8): encryption and decryption of a 50 MB attachment by the library's
//! streaming code (`tchap_secure_core::media`), next to the raw limits in the same run:
//!
//! - `attachment_50mb_encrypt/tchap_secure`: `encrypt_attachment` (fresh key and IV,
//!   AES-256-CTR, SHA-256 of the ciphertext, through one 64 KiB buffer);
//! - `attachment_50mb_decrypt/tchap_secure`: `verify_ciphertext` (pass 1: SHA-256 of the whole
//!   ciphertext, before any plaintext exists) then `decrypt_to` (pass 2: AES-256-CTR and the
//!   SHA-256 again, against a source changing between the passes);
//! - `raw_aes256_ctr`: the bare RustCrypto `Ctr128BE<Aes256>` keystream over the same bytes,
//!   in the same 64 KiB chunks (the cipher alone: no hash, no key generation);
//! - `raw_sha256`: ring's SHA-256 over the same bytes (the hash alone).
//!
//! Source and sink are in memory (a slice, `io::sink()`): this measures the cryptography and
//! the buffering, not the disk. `cargo bench -p tchap-secure-tests --bench attachment`.
//!
//! With `-- --rss BYTES`, a fresh process instead writes a BYTES-long file, encrypts it file to
//! file, verifies and decrypts it file to file, checks the result and prints its peak RSS
//! (`VmHWM`) as one JSON line: run with 1 MiB and with 50 MB, the two figures show that memory
//! does not grow with the file (`tests/src/bin/bench_rss.rs`, modes `attachment-*`).

use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Read, Write};
use std::time::Duration;

use aes::Aes256;
use criterion::{Criterion, SamplingMode, Throughput};
use ctr::cipher::{KeyIvInit, StreamCipher};
use tchap_secure_core::media::{BUFFER_LEN, MxcUri, encrypt_attachment, verify_ciphertext};

/// 50 MB, as the issue states it.
const SIZE: usize = 50_000_000;

/// Deterministic, incompressible-looking bytes (xorshift), generated chunk by chunk.
struct Bytes {
    state: u64,
}

impl Read for Bytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(buf.len())
    }
}

fn plaintext(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Bytes {
        state: 0x2545_f491_4f6c_dd1d,
    }
    .read_exact(&mut out)
    .expect("generate");
    out
}

fn url() -> MxcUri {
    MxcUri::parse("mxc://secure.tchap.test/bench").expect("mxc")
}

fn bench(c: &mut Criterion) {
    let plain = plaintext(SIZE);
    let mut ciphertext = Vec::with_capacity(SIZE);
    let encrypted = encrypt_attachment(&plain[..], &mut ciphertext, SIZE as u64).expect("encrypt");
    let file = encrypted
        .into_encrypted_file(&url())
        .validate()
        .expect("validate");
    let key = [7u8; 32];
    let iv = [0u8; 16];
    let mut chunk = vec![0u8; BUFFER_LEN];

    for (group_name, input) in [
        ("attachment_50mb_encrypt", &plain),
        ("attachment_50mb_decrypt", &ciphertext),
    ] {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(10);
        group.sampling_mode(SamplingMode::Flat);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        group.throughput(Throughput::Bytes(SIZE as u64));
        if group_name.ends_with("encrypt") {
            group.bench_function("tchap_secure", |b| {
                b.iter(|| {
                    let e = encrypt_attachment(&plain[..], std::io::sink(), SIZE as u64)
                        .expect("encrypt");
                    assert_eq!(e.size(), SIZE as u64);
                })
            });
        } else {
            group.bench_function("tchap_secure", |b| {
                b.iter(|| {
                    let verified =
                        verify_ciphertext(&file, Cursor::new(&ciphertext[..]), SIZE as u64)
                            .expect("verify");
                    assert_eq!(
                        verified.decrypt_to(std::io::sink()).expect("decrypt"),
                        SIZE as u64
                    );
                })
            });
        }
        group.bench_function("raw_aes256_ctr", |b| {
            b.iter(|| {
                let mut cipher = ctr::Ctr128BE::<Aes256>::new(&key.into(), &iv.into());
                for part in input.chunks(BUFFER_LEN) {
                    let buf = &mut chunk[..part.len()];
                    buf.copy_from_slice(part);
                    cipher.apply_keystream(buf);
                    std::hint::black_box(&buf);
                }
            })
        });
        group.bench_function("raw_sha256", |b| {
            b.iter(|| std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, input)))
        });
        group.finish();
    }
}

/// File to file, both ways, in this fresh process; prints the peak RSS.
fn rss(len: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (plain_path, cipher_path, out_path) = (
        dir.path().join("plain"),
        dir.path().join("cipher"),
        dir.path().join("out"),
    );
    {
        let mut source = Bytes {
            state: 0x2545_f491_4f6c_dd1d,
        }
        .take(len);
        let mut f = BufWriter::new(File::create(&plain_path).expect("create"));
        std::io::copy(&mut source, &mut f).expect("write the plaintext");
        f.flush().expect("flush");
    }
    let encrypted = encrypt_attachment(
        BufReader::new(File::open(&plain_path).expect("open")),
        BufWriter::new(File::create(&cipher_path).expect("create")),
        len,
    )
    .expect("encrypt");
    let file = encrypted
        .into_encrypted_file(&url())
        .validate()
        .expect("validate");
    let verified =
        verify_ciphertext(&file, File::open(&cipher_path).expect("open"), len).expect("verify");
    let n = verified
        .decrypt_to(BufWriter::new(File::create(&out_path).expect("create")))
        .expect("decrypt");
    assert_eq!(n, len);
    // Compared in 64 KiB chunks, so the check does not raise the peak.
    assert!(
        files_equal(&plain_path, &out_path),
        "the decrypted file differs from the plaintext"
    );
    println!(
        r#"{{"scenario":"attachment_file_{len}_bytes","implementation":"tchap_secure","peak_rss_kib":{}}}"#,
        tchap_secure_core::bench_internals::peak_rss_kib().expect("VmHWM in /proc/self/status")
    );
}

fn files_equal(a: &std::path::Path, b: &std::path::Path) -> bool {
    let (mut a, mut b) = (
        BufReader::new(File::open(a).expect("open")),
        BufReader::new(File::open(b).expect("open")),
    );
    let (mut x, mut y) = (vec![0u8; BUFFER_LEN], vec![0u8; BUFFER_LEN]);
    loop {
        let n = a.read(&mut x).expect("read");
        if n == 0 {
            return b.read(&mut y).expect("read") == 0;
        }
        if b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return false;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss") {
        let len = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(SIZE as u64);
        rss(len);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
