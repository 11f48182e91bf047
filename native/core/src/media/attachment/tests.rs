//! Streaming encryption and two-pass decryption: round trips at every buffer boundary, known
//! answers from another implementation and from an independent CTR computation, and every way
//! a ciphertext or its source can be wrong.

use std::io::{self, Cursor, Read, Seek, SeekFrom};

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde_json::json;

use super::*;
use crate::media::test_vectors::{SDK_CIPHERTEXT, SDK_PLAINTEXT, sdk_file_json};

fn url() -> MxcUri {
    MxcUri::parse("mxc://secure.example.gouv.fr/AbCdEf0123").unwrap()
}

/// Deterministic non-repeating bytes (xorshift64).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> [u8; SHA256_LEN] {
    digest_bytes(&digest::digest(&digest::SHA256, bytes))
}

fn encrypt(plaintext: &[u8]) -> (EncryptedAttachment, Vec<u8>) {
    let mut ciphertext = Vec::new();
    let attachment = encrypt_attachment(plaintext, &mut ciphertext, u64::MAX).unwrap();
    (attachment, ciphertext)
}

/// The receiving side as the client will run it: the event's JSON, validated, then both passes.
fn decrypt(file: &ValidatedFile, ciphertext: &[u8]) -> Result<Vec<u8>, AttachmentError> {
    let verified = verify_ciphertext(file, Cursor::new(ciphertext), u64::MAX)?;
    let mut out = Vec::new();
    verified.decrypt_to(&mut out)?;
    Ok(out)
}

fn received(attachment: EncryptedAttachment) -> ValidatedFile {
    let json = serde_json::to_string(&attachment.into_encrypted_file(&url())).unwrap();
    EncryptedFile::from_json(serde_json::from_str(&json).unwrap())
        .unwrap()
        .validate()
        .unwrap()
}

/// A validated file with the given key, IV and hash (for fixed-key tests).
fn validated(key: &[u8; 32], iv: &[u8; 16], sha256: &[u8; 32]) -> ValidatedFile {
    let mut file = sdk_file_json();
    file["key"]["k"] = json!(URL_SAFE_NO_PAD.encode(key));
    file["iv"] = json!(STANDARD_NO_PAD.encode(iv));
    file["hashes"]["sha256"] = json!(STANDARD_NO_PAD.encode(sha256));
    EncryptedFile::from_json(file).unwrap().validate().unwrap()
}

#[test]
fn round_trip_at_every_boundary() {
    let sizes = [
        0,
        1,
        15,
        16,
        17,
        BUFFER_LEN - 1,
        BUFFER_LEN,
        BUFFER_LEN + 1,
        (1 << 20) + 3,
    ];
    for size in sizes {
        let plaintext = pattern(size, size as u64 + 7);
        let (attachment, ciphertext) = encrypt(&plaintext);
        assert_eq!(attachment.size(), size as u64);
        assert_eq!(ciphertext.len(), size);
        assert_eq!(attachment.sha256(), &sha256(&ciphertext));
        if size >= 16 {
            assert_ne!(ciphertext, plaintext);
        }
        // The IV's counter half starts at zero.
        assert_eq!(attachment.iv[8..], [0u8; 8]);
        let file = received(attachment);
        assert_eq!(
            decrypt(&file, &ciphertext).unwrap(),
            plaintext,
            "size {size}"
        );
    }
}

#[test]
fn each_attachment_has_a_fresh_key_and_iv() {
    let plaintext = pattern(100, 1);
    let (a, ca) = encrypt(&plaintext);
    let (b, cb) = encrypt(&plaintext);
    assert_ne!(a.key.bytes(), b.key.bytes());
    assert_ne!(a.iv, b.iv);
    assert_ne!(ca, cb);
}

#[test]
fn encrypted_file_has_the_spec_shape() {
    let (attachment, ciphertext) = encrypt(b"hello");
    let json = serde_json::to_value(attachment.into_encrypted_file(&url())).unwrap();
    let object = json.as_object().unwrap();
    let mut fields: Vec<_> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["hashes", "iv", "key", "url", "v"]);
    assert_eq!(json["v"], "v2");
    assert_eq!(json["url"], "mxc://secure.example.gouv.fr/AbCdEf0123");
    let key = json["key"].as_object().unwrap();
    assert_eq!(key.len(), 5);
    assert_eq!(json["key"]["kty"], "oct");
    assert_eq!(json["key"]["alg"], "A256CTR");
    assert_eq!(json["key"]["ext"], true);
    assert_eq!(json["key"]["key_ops"], json!(["encrypt", "decrypt"]));
    let k = json["key"]["k"].as_str().unwrap();
    assert_eq!(k.len(), 43);
    assert!(!k.contains(['=', '+', '/']));
    assert_eq!(URL_SAFE_NO_PAD.decode(k).unwrap().len(), 32);
    let iv = json["iv"].as_str().unwrap();
    assert_eq!(iv.len(), 22);
    let iv = STANDARD_NO_PAD.decode(iv).unwrap();
    assert_eq!(iv.len(), 16);
    assert_eq!(iv[8..], [0u8; 8]);
    assert_eq!(
        json["hashes"],
        json!({ "sha256": STANDARD_NO_PAD.encode(sha256(&ciphertext)) })
    );
}

#[test]
fn known_answer_matrix_rust_sdk_decrypt() {
    let file = EncryptedFile::from_json(sdk_file_json())
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(decrypt(&file, SDK_CIPHERTEXT).unwrap(), SDK_PLAINTEXT);
}

#[test]
fn known_answer_matrix_rust_sdk_encrypt() {
    let file = EncryptedFile::from_json(sdk_file_json())
        .unwrap()
        .validate()
        .unwrap();
    let mut ciphertext = Vec::new();
    let (size, hash) = encrypt_with(
        file.key(),
        file.iv(),
        SDK_PLAINTEXT,
        &mut ciphertext,
        u64::MAX,
    )
    .unwrap();
    assert_eq!(size, SDK_PLAINTEXT.len() as u64);
    assert_eq!(ciphertext, SDK_CIPHERTEXT);
    assert_eq!(&hash, file.sha256());
}

/// CTR computed block by block with the bare AES block cipher and `u128` arithmetic: from an IV
/// whose low 64 bits overflow at the third block (the carry must reach the high half), and
/// from IVs at the top of the 128-bit counter (it wraps modulo 2^128, no error, no panic), as
/// matrix-rust-sdk and Python's `cryptography` (the content scanner) compute it.
#[test]
fn ctr_matches_independent_block_computation() {
    let key: [u8; 32] = pattern(32, 99).try_into().unwrap();
    let aes = Aes256::new(&key.into());
    let mut carry_iv = [0u8; 16];
    carry_iv[..8].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
    carry_iv[8..].copy_from_slice(&(u64::MAX - 1).to_be_bytes());
    let ivs = [
        carry_iv,
        [0u8; 16],
        (u128::MAX - 2).to_be_bytes(),
        [0xffu8; 16],
    ];
    for iv in ivs {
        let plaintext = pattern(7 * 16 + 5, 3);
        let start = u128::from_be_bytes(iv);
        let mut expected = Vec::new();
        for (i, block) in plaintext.chunks(16).enumerate() {
            let counter = start.wrapping_add(i as u128);
            let mut keystream = aes::Block::from(counter.to_be_bytes());
            aes.encrypt_block(&mut keystream);
            expected.extend(block.iter().zip(keystream.iter()).map(|(p, k)| p ^ k));
        }
        let file = validated(&key, &iv, &sha256(&expected));
        let mut ciphertext = Vec::new();
        encrypt_with(
            file.key(),
            file.iv(),
            &plaintext[..],
            &mut ciphertext,
            u64::MAX,
        )
        .unwrap();
        assert_eq!(ciphertext, expected, "iv {iv:02x?}");
        assert_eq!(decrypt(&file, &expected).unwrap(), plaintext);
    }
    // The carry case: block 2's counter block has the incremented high half.
    assert_eq!(
        (u128::from_be_bytes(carry_iv) + 2).to_be_bytes()[..8],
        0x0123_4567_89ab_cdf0u64.to_be_bytes()
    );
}

/// Returns at most 7 bytes a call, and `Interrupted` every other call.
struct Trickle<T> {
    inner: T,
    calls: usize,
}

impl<T: Read> Read for Trickle<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(2) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(7);
        self.inner.read(&mut buf[..n])
    }
}

impl<T: Seek> Seek for Trickle<T> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn short_reads_and_interruptions_do_not_change_the_result() {
    let plaintext = pattern(1000, 5);
    let file = validated(&[9u8; 32], &[1u8; 16], &[0u8; 32]);
    let mut one_shot = Vec::new();
    let (_, hash_a) = encrypt_with(
        file.key(),
        file.iv(),
        &plaintext[..],
        &mut one_shot,
        u64::MAX,
    )
    .unwrap();
    let mut trickled = Vec::new();
    let reader = Trickle {
        inner: &plaintext[..],
        calls: 0,
    };
    let (_, hash_b) = encrypt_with(file.key(), file.iv(), reader, &mut trickled, u64::MAX).unwrap();
    assert_eq!(one_shot, trickled);
    assert_eq!(hash_a, hash_b);

    let file = validated(&[9u8; 32], &[1u8; 16], &hash_a);
    let source = Trickle {
        inner: Cursor::new(&one_shot),
        calls: 0,
    };
    let mut out = Vec::new();
    verify_ciphertext(&file, source, u64::MAX)
        .unwrap()
        .decrypt_to(&mut out)
        .unwrap();
    assert_eq!(out, plaintext);
}

#[test]
fn flipped_ciphertext_byte_is_hash_mismatch() {
    let plaintext = pattern(100_000, 11);
    let (attachment, ciphertext) = encrypt(&plaintext);
    let file = received(attachment);
    for at in [0, 1, BUFFER_LEN - 1, BUFFER_LEN, 50_000, 99_999] {
        for bit in [0x01, 0x80] {
            let mut tampered = ciphertext.clone();
            tampered[at] ^= bit;
            assert!(matches!(
                verify_ciphertext(&file, Cursor::new(&tampered), u64::MAX),
                Err(AttachmentError::HashMismatch)
            ));
        }
    }
}

#[test]
fn truncated_or_extended_ciphertext_is_hash_mismatch() {
    let plaintext = pattern(BUFFER_LEN + 100, 12);
    let (attachment, ciphertext) = encrypt(&plaintext);
    let file = received(attachment);
    let n = ciphertext.len();
    let mut extended = ciphertext.clone();
    extended.push(0);
    for bad in [
        &ciphertext[..n - 1],
        &ciphertext[..n - 10],
        &ciphertext[..BUFFER_LEN],
        &ciphertext[..0],
        &ciphertext[1..],
        &extended[..],
    ] {
        assert!(matches!(
            verify_ciphertext(&file, Cursor::new(bad), u64::MAX),
            Err(AttachmentError::HashMismatch)
        ));
    }
}

/// The hash covers the ciphertext only: another key passes it and decrypts to garbage. The key
/// is authenticated by the Megolm-encrypted event that carries it, not here.
#[test]
fn wrong_key_passes_the_hash_but_decrypts_to_garbage() {
    let plaintext = pattern(4096, 13);
    let (attachment, ciphertext) = encrypt(&plaintext);
    let (other, _) = encrypt(b"another file");
    let mut json = serde_json::to_value(attachment.into_encrypted_file(&url())).unwrap();
    let other_json = serde_json::to_value(other.into_encrypted_file(&url())).unwrap();
    json["key"]["k"] = other_json["key"]["k"].clone();
    let file = EncryptedFile::from_json(json).unwrap().validate().unwrap();
    let garbage = decrypt(&file, &ciphertext).unwrap();
    assert_eq!(garbage.len(), plaintext.len());
    assert_ne!(garbage, plaintext);
}

#[test]
fn encrypt_refuses_more_than_the_limit() {
    let plaintext = pattern(3 * BUFFER_LEN, 14);
    let limit = BUFFER_LEN as u64 + 5;
    let mut written = Vec::new();
    let result = encrypt_attachment(&plaintext[..], &mut written, limit);
    assert!(matches!(result, Err(AttachmentError::TooLarge { limit: l }) if l == limit));
    assert!(written.len() as u64 <= limit);

    for (len, limit, ok) in [
        (100, 99, false),
        (100, 100, true),
        (0, 0, true),
        (1, 0, false),
    ] {
        let mut out = Vec::new();
        let result = encrypt_attachment(&plaintext[..len], &mut out, limit);
        assert_eq!(result.is_ok(), ok, "len {len} limit {limit}");
        assert!(out.len() as u64 <= limit);
    }
}

#[test]
fn verify_refuses_more_than_the_limit() {
    let plaintext = pattern(1000, 15);
    let (attachment, ciphertext) = encrypt(&plaintext);
    let file = received(attachment);
    assert!(matches!(
        verify_ciphertext(&file, Cursor::new(&ciphertext), 999),
        Err(AttachmentError::TooLarge { limit: 999 })
    ));
    let verified = verify_ciphertext(&file, Cursor::new(&ciphertext), 1000).unwrap();
    assert_eq!(verified.len(), 1000);
    assert!(!verified.is_empty());
}

/// Gives `first` on the first pass and `second` after a rewind: a source that changed between
/// verification and decryption.
struct Changing {
    first: Cursor<Vec<u8>>,
    second: Cursor<Vec<u8>>,
    rewound: bool,
}

impl Read for Changing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rewound {
            self.second.read(buf)
        } else {
            self.first.read(buf)
        }
    }
}

impl Seek for Changing {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        if self.first.position() > 0 {
            self.rewound = true;
        }
        if self.rewound {
            self.second.seek(pos)
        } else {
            self.first.seek(pos)
        }
    }
}

#[test]
fn source_changed_between_passes_is_hash_mismatch() {
    let plaintext = pattern(2 * BUFFER_LEN + 9, 16);
    let (attachment, ciphertext) = encrypt(&plaintext);
    let file = received(attachment);
    let mut modified = ciphertext.clone();
    modified[BUFFER_LEN + 3] ^= 1;
    let shortened = ciphertext[..ciphertext.len() - 1].to_vec();
    for second in [modified, shortened] {
        let source = Changing {
            first: Cursor::new(ciphertext.clone()),
            second: Cursor::new(second),
            rewound: false,
        };
        let verified = verify_ciphertext(&file, source, u64::MAX).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            verified.decrypt_to(&mut out),
            Err(AttachmentError::HashMismatch)
        ));
    }
}

#[test]
fn verification_starts_at_the_current_position() {
    let plaintext = pattern(5000, 17);
    let (attachment, ciphertext) = encrypt(&plaintext);
    let file = received(attachment);
    let mut stored = b"some header the caller skipped".to_vec();
    let offset = stored.len() as u64;
    stored.extend_from_slice(&ciphertext);
    let mut source = Cursor::new(stored);
    source.seek(SeekFrom::Start(offset)).unwrap();
    let mut out = Vec::new();
    let n = verify_ciphertext(&file, &mut source, u64::MAX)
        .unwrap()
        .decrypt_to(&mut out)
        .unwrap();
    assert_eq!(n, 5000);
    assert_eq!(out, plaintext);
}

/// Claims to have read more than it was given.
struct Liar;

impl Read for Liar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(buf.len() + 1)
    }
}

impl Seek for Liar {
    fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
        Ok(0)
    }
}

#[test]
fn lying_reader_is_an_io_error() {
    assert!(matches!(
        encrypt_attachment(Liar, Vec::new(), u64::MAX),
        Err(AttachmentError::Io(_))
    ));
    let file = validated(&[1u8; 32], &[0u8; 16], &[0u8; 32]);
    assert!(matches!(
        verify_ciphertext(&file, Liar, u64::MAX),
        Err(AttachmentError::Io(_))
    ));
}

#[test]
fn debug_is_redacted() {
    let (attachment, _) = encrypt(b"hello");
    assert_eq!(
        format!("{attachment:?}"),
        "EncryptedAttachment { size: 5, .. }"
    );
    let file = EncryptedFile::from_json(sdk_file_json())
        .unwrap()
        .validate()
        .unwrap();
    let verified = verify_ciphertext(&file, Cursor::new(SDK_CIPHERTEXT), u64::MAX).unwrap();
    assert_eq!(
        format!("{verified:?}"),
        "VerifiedCiphertext { file: ValidatedFile { url: \"mxc://example.org/AbCdEf_-0123\", .. }, \
         start: 0, len: 26, .. }"
    );
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(
        AttachmentError::HashMismatch.code(),
        "attachment_hash_mismatch"
    );
    assert_eq!(
        AttachmentError::TooLarge { limit: 1 }.code(),
        "attachment_too_large"
    );
    assert_eq!(
        AttachmentError::Malformed { what: "x" }.code(),
        "malformed_attachment"
    );
}

#[test]
fn reports_whether_aes_runs_in_hardware() {
    // Informative only (CI machines vary): both paths are correct and constant-time.
    let accelerated = crate::media::aes_hardware_accelerated();
    eprintln!("AES hardware acceleration: {accelerated}");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("aes") {
        assert!(accelerated);
    }
}
