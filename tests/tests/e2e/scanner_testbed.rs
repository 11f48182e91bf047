//! The content scanner's testbed (issue 8, step 4) end to end, with no client library code:
//! real Synapse (legacy media API on), matrix-content-scanner 1.0.8, ClamAV with the local
//! EICAR signatures, nginx as the only TLS front. Attachments are encrypted here as the Matrix
//! spec's `EncryptedFile` (AES-256-CTR, v2), uploaded through the front, and fetched back through
//! `/_matrix/media_proxy/unstable/download_encrypted` (clear `file` body: the product will
//! send `encrypted_body`).

use std::time::Instant;

use aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use ctr::cipher::{KeyIvInit, StreamCipher};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use tchap_secure_tests::content_scanner::{
    ContentScanner, FrontResponse, MEDIA_PROXY, assert_no_plain_download, proxied_downloads,
    request_paths,
};
use tchap_secure_tests::harness::contains_bytes;
use tchap_secure_tests::synapse::Synapse;

use crate::support::{PASSWORD, files_under};

/// An attachment encrypted as the spec's `EncryptedFile` v2 does it.
struct Encrypted {
    ciphertext: Vec<u8>,
    key: [u8; 32],
    iv: [u8; 16],
    sha256: Vec<u8>,
}

/// AES-256-CTR with a random key and a random IV whose low 64 bits (the block counter) are
/// zero, as the spec asks; SHA-256 of the ciphertext.
fn encrypt(plaintext: &[u8]) -> Encrypted {
    let rng = SystemRandom::new();
    let mut key = [0u8; 32];
    rng.fill(&mut key).unwrap();
    let mut iv = [0u8; 16];
    rng.fill(&mut iv[..8]).unwrap();
    let mut ciphertext = plaintext.to_vec();
    ctr::Ctr128BE::<Aes256>::new_from_slices(&key, &iv)
        .unwrap()
        .apply_keystream(&mut ciphertext);
    let sha256 = ring::digest::digest(&ring::digest::SHA256, &ciphertext)
        .as_ref()
        .to_vec();
    Encrypted {
        ciphertext,
        key,
        iv,
        sha256,
    }
}

fn decrypt(encrypted: &Encrypted, ciphertext: &[u8]) -> Vec<u8> {
    let mut plaintext = ciphertext.to_vec();
    ctr::Ctr128BE::<Aes256>::new_from_slices(&encrypted.key, &encrypted.iv)
        .unwrap()
        .apply_keystream(&mut plaintext);
    plaintext
}

/// The `EncryptedFile` JSON of the spec (v2, JWK `A256CTR`, unpadded base64 IV and hash,
/// unpadded URL-safe base64 key).
fn encrypted_file(mxc: &str, encrypted: &Encrypted) -> Value {
    json!({
        "v": "v2",
        "url": mxc,
        "key": {
            "kty": "oct",
            "key_ops": ["encrypt", "decrypt"],
            "alg": "A256CTR",
            "k": URL_SAFE_NO_PAD.encode(encrypted.key),
            "ext": true,
        },
        "iv": STANDARD_NO_PAD.encode(encrypted.iv),
        "hashes": {"sha256": STANDARD_NO_PAD.encode(&encrypted.sha256)},
    })
}

/// `POST /_matrix/media/v3/upload` through the front; the `mxc://` URI.
fn upload(scanner: &ContentScanner, token: &str, ciphertext: &[u8]) -> String {
    let response = scanner.request(
        "POST",
        "/_matrix/media/v3/upload?filename=attachment.bin",
        Some(token),
        Some(("application/octet-stream", ciphertext.to_vec())),
    );
    assert_eq!(response.status, 200, "upload: {}", response.text());
    let mxc = response.json()["content_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("no content_uri in {}", response.text()))
        .to_owned();
    assert!(
        mxc.starts_with("mxc://secure.tchap.test/") && mxc.matches('/').count() == 3,
        "unexpected mxc URI {mxc}"
    );
    mxc
}

fn download_encrypted(scanner: &ContentScanner, file: &Value) -> FrontResponse {
    scanner.request(
        "POST",
        &format!("{MEDIA_PROXY}/download_encrypted"),
        None,
        Some((
            "application/json",
            serde_json::to_vec(&json!({ "file": file })).unwrap(),
        )),
    )
}

#[test]
fn content_scanner_testbed_passes_clean_refuses_eicar_and_fails_closed() {
    let synapse = Synapse::shared_legacy_media();
    let t0 = Instant::now();
    let scanner = ContentScanner::start(synapse);
    let started = t0.elapsed();
    let user = synapse.register(&synapse.unique_user("scanner"), PASSWORD, false);
    let key_before = scanner.public_key();

    // A clean document and the EICAR file, both encrypted before upload.
    let clean_plain = "Note au cabinet : ordre du jour du conseil restreint.\n"
        .repeat(64)
        .into_bytes();
    let clean = encrypt(&clean_plain);
    assert!(
        !contains_bytes(&clean.ciphertext, b"conseil restreint"),
        "not encrypted"
    );
    let eicar = std::fs::read(scanner.eicar_path()).unwrap();
    assert_eq!(
        eicar.len(),
        68,
        "{} is not the EICAR file",
        scanner.eicar_path().display()
    );
    let infected = encrypt(&eicar);
    assert!(
        !contains_bytes(&infected.ciphertext, &eicar[..16]),
        "the EICAR attachment went up in clear"
    );
    let clean_mxc = upload(&scanner, &user.access_token, &clean.ciphertext);
    let infected_mxc = upload(&scanner, &user.access_token, &infected.ciphertext);

    // Clean: scanned, then the ciphertext exactly as uploaded.
    let t_clean = Instant::now();
    let response = download_encrypted(&scanner, &encrypted_file(&clean_mxc, &clean));
    let clean_time = t_clean.elapsed();
    assert_eq!(response.status, 200, "clean: {}", response.text());
    assert!(
        response.body == clean.ciphertext,
        "clean: the body ({} bytes) is not the uploaded ciphertext ({} bytes)",
        response.body.len(),
        clean.ciphertext.len()
    );
    assert_eq!(decrypt(&clean, &response.body), clean_plain);

    // EICAR: refused by ClamAV's verdict.
    let t_infected = Instant::now();
    let response = download_encrypted(&scanner, &encrypted_file(&infected_mxc, &infected));
    let infected_time = t_infected.elapsed();
    assert_eq!(response.status, 403, "EICAR: {}", response.text());
    assert_eq!(
        response.json()["reason"],
        "MCS_MEDIA_NOT_CLEAN",
        "EICAR: {}",
        response.text()
    );
    assert!(
        !contains_bytes(&response.body, &infected.ciphertext[..16]),
        "the refusal carries the file"
    );
    // ClamAV's signature matched (not another refusal such as a malformed media id).
    let scanner_log = scanner.scanner_log();
    assert!(
        scanner_log.contains("Tchap.Test.EICAR") && scanner_log.contains("FOUND"),
        "no ClamAV detection in the scanner's log:\n{scanner_log}"
    );
    // The scanner shredded both decrypted copies.
    let left = files_under(&scanner.scanner_temp_dir());
    assert!(
        left.is_empty(),
        "decrypted files left by the scanner: {left:?}"
    );

    // nginx saw the client's requests (the log is live), and no plain media download.
    let access_log = scanner.access_log_after_downloads(2);
    let paths = request_paths(&access_log);
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.starts_with("/_matrix/media/v3/upload"))
            .count(),
        2,
        "{access_log}"
    );
    assert_eq!(proxied_downloads(&access_log), 2, "{access_log}");
    assert_no_plain_download(&access_log);

    // Scanner stopped: nginx's own 502 page (text/html), not the scanner's JSON 502
    // (`MCS_MEDIA_REQUEST_FAILED`, homeserver unreachable).
    scanner.stop_scanner();
    assert!(!scanner.scanner_running());
    let response = download_encrypted(&scanner, &encrypted_file(&clean_mxc, &clean));
    assert_eq!(response.status, 502, "scanner stopped: {}", response.text());
    assert!(
        response
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/html"))
            && response.text().contains("nginx"),
        "scanner stopped: not nginx's 502 page: {:?} {}",
        response.content_type,
        response.text()
    );
    assert!(
        scanner.nginx_error_log().contains("connect() failed"),
        "nginx did not fail to reach the scanner:\n{}",
        scanner.nginx_error_log()
    );

    // Key rotated: a new public key, and the scanner works again.
    scanner.rotate_key();
    let key_after = scanner.public_key();
    assert_ne!(key_before, key_after, "rotate_key kept the scanner's key");
    let response = download_encrypted(&scanner, &encrypted_file(&clean_mxc, &clean));
    assert_eq!(response.status, 200, "after rotation: {}", response.text());
    assert!(
        response.body == clean.ciphertext,
        "after rotation: wrong body"
    );
    // Four downloads asked of the front: clean, EICAR, scanner stopped, after rotation.
    assert_no_plain_download(&scanner.access_log_after_downloads(4));

    eprintln!(
        "scanner testbed: scanner + nginx up in {started:?}; clean download {clean_time:?}, \
         EICAR refusal {infected_time:?}; whole test after Synapse {:?}",
        t0.elapsed()
    );
}
