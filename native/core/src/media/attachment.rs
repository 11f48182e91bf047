//! Streaming attachment cryptography: AES-256-CTR (128-bit big-endian counter, as
//! matrix-rust-sdk and the Python/JS clients on a spec IV) and SHA-256 of the ciphertext.
//!
//! Memory is bounded: one [`BUFFER_LEN`] buffer per operation, whatever the file size. Buffers
//! that ever hold plaintext are zeroized when dropped, and so is the AES key schedule (`aes` /
//! `ctr` `zeroize` features).
//!
//! Sending: [`encrypt_attachment`] draws a fresh key and IV, encrypts a reader into a writer and
//! returns an [`EncryptedAttachment`]; once the upload has given the ciphertext an `mxc://`
//! URI, [`EncryptedAttachment::into_encrypted_file`] makes the event's `file` object.
//!
//! Receiving, in two passes over a seekable copy of the downloaded ciphertext (a private temp
//! file, or memory):
//! 1. [`verify_ciphertext`] hashes the whole source and compares, in constant time, with the
//!    SHA-256 of the [`ValidatedFile`]; it alone can create a [`VerifiedCiphertext`];
//! 2. [`VerifiedCiphertext::decrypt_to`] (the only decryption entry point) rewinds, decrypts
//!    exactly the verified length into the writer, hashing again on the way: if the source
//!    changed between the passes it returns [`AttachmentError::HashMismatch`], and the caller
//!    must discard what was written (write to a temp file, publish it only on `Ok`).
//!
//! The hash authenticates the ciphertext, not the key: decrypting with another (well-formed)
//! key passes the hash and yields garbage. The key comes from the Megolm-encrypted event,
//! which the E2EE layer authenticates.
//!
//! IV: when sending, 8 random bytes then 8 zero bytes, so the 64-bit low half (the part
//! WebCrypto-based clients count with) cannot overflow before 2^64 blocks. A received IV is
//! taken as a full 128-bit big-endian counter that wraps modulo 2^128 (`ctr` 0.10 counts
//! blocks from zero and adds the IV with `wrapping_add`), as matrix-rust-sdk and Python's
//! `cryptography` (the content scanner) do: any IV decrypts, none panics. Only
//! `try_apply_keystream` is used (its error, at 2^128 - 1 blocks, is unreachable with a `u64`
//! length, and would be a typed error rather than `apply_keystream`'s panic).

use std::fmt;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::AttachmentError;
use super::encrypted_file::{
    AttachmentKey, EncryptedFile, IV_LEN, MxcUri, SHA256_LEN, ValidatedFile,
};

/// Size of the one buffer each encryption, verification or decryption uses (64 KiB): the
/// peak memory of these functions, whatever the size of the file.
pub const BUFFER_LEN: usize = 64 * 1024;

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// A freshly encrypted attachment: the key, IV and ciphertext hash that the event will carry.
///
/// The key is zeroized on drop and never shown by `Debug`. Turn it into the event's
/// `EncryptedFile` with [`EncryptedAttachment::into_encrypted_file`], after the upload.
pub struct EncryptedAttachment {
    key: AttachmentKey,
    iv: [u8; IV_LEN],
    sha256: [u8; SHA256_LEN],
    size: u64,
}

impl EncryptedAttachment {
    /// Number of bytes encrypted (plaintext and ciphertext have the same length).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// SHA-256 of the ciphertext written.
    pub fn sha256(&self) -> &[u8; SHA256_LEN] {
        &self.sha256
    }

    /// The `EncryptedFile` for the event, once the ciphertext was uploaded to `url`.
    ///
    /// Consumes the attachment: the key now lives only in the returned object's zeroizing
    /// `k` (and, after sending, in the Megolm-encrypted event).
    pub fn into_encrypted_file(self, url: &MxcUri) -> EncryptedFile {
        EncryptedFile::from_parts(url, &self.key, &self.iv, &self.sha256)
    }
}

impl fmt::Debug for EncryptedAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            key: _,
            iv: _,
            sha256: _,
            size,
        } = self;
        f.debug_struct("EncryptedAttachment")
            .field("size", size)
            .finish_non_exhaustive()
    }
}

/// Encrypts `reader` into `writer` with a fresh random key and IV (`ring`'s `SystemRandom`),
/// streaming through one [`BUFFER_LEN`] buffer.
///
/// Refuses more than `max_bytes` of input with [`AttachmentError::TooLarge`]: the chunk that
/// crosses the limit is neither encrypted nor written (at most `max_bytes` bytes of ciphertext
/// were written; the caller discards them on any error). The writer is flushed on success.
pub fn encrypt_attachment<R: Read, W: Write>(
    reader: R,
    writer: W,
    max_bytes: u64,
) -> Result<EncryptedAttachment, AttachmentError> {
    let rng = SystemRandom::new();
    let key = AttachmentKey::random(&rng)?;
    let mut iv = [0u8; IV_LEN];
    // 64 random bits of nonce, then a 64-bit block counter starting at zero (the spec).
    rng.fill(&mut iv[..IV_LEN / 2])
        .map_err(|_| AttachmentError::Random)?;
    let (size, sha256) = encrypt_with(&key, &iv, reader, writer, max_bytes)?;
    tracing::debug!(bytes = size, "attachment encrypted");
    Ok(EncryptedAttachment {
        key,
        iv,
        sha256,
        size,
    })
}

/// The encryption loop, with a given key and IV (also the known-answer tests' entry point).
pub(crate) fn encrypt_with<R: Read, W: Write>(
    key: &AttachmentKey,
    iv: &[u8; IV_LEN],
    mut reader: R,
    mut writer: W,
    max_bytes: u64,
) -> Result<(u64, [u8; SHA256_LEN]), AttachmentError> {
    let mut cipher = Aes256Ctr::new(key.bytes().into(), iv.into());
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut buf = Zeroizing::new(vec![0u8; BUFFER_LEN]);
    let mut total = 0u64;
    loop {
        let n = read_some(&mut reader, &mut buf)?;
        if n == 0 {
            break;
        }
        total = add_within_limit(total, n, max_bytes)?;
        let chunk = buf.get_mut(..n).ok_or_else(short_buffer)?;
        cipher
            .try_apply_keystream(chunk)
            .map_err(|_| counter_exhausted())?;
        hash.update(chunk);
        writer.write_all(chunk)?;
    }
    writer.flush()?;
    Ok((total, digest_bytes(&hash.finish())))
}

/// Pass 1 of receiving: hashes all of `source` (from its current position to its end) and
/// compares with the SHA-256 of `file`, in constant time.
///
/// Only a match returns a [`VerifiedCiphertext`], the one thing that can decrypt: no plaintext
/// can be produced from a ciphertext that was not verified first. More than `max_bytes` of
/// ciphertext is [`AttachmentError::TooLarge`].
pub fn verify_ciphertext<R: Read + Seek>(
    file: &ValidatedFile,
    mut source: R,
    max_bytes: u64,
) -> Result<VerifiedCiphertext<'_, R>, AttachmentError> {
    let start = source.stream_position()?;
    // Ciphertext only: no need to zeroize this buffer.
    let mut buf = vec![0u8; BUFFER_LEN];
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut len = 0u64;
    loop {
        let n = read_some(&mut source, &mut buf)?;
        if n == 0 {
            break;
        }
        len = add_within_limit(len, n, max_bytes)?;
        hash.update(buf.get(..n).ok_or_else(short_buffer)?);
    }
    if !digest_matches(&hash.finish(), file.sha256()) {
        tracing::warn!(
            bytes = len,
            "attachment ciphertext does not match its SHA-256"
        );
        return Err(AttachmentError::HashMismatch);
    }
    tracing::debug!(bytes = len, "attachment ciphertext verified");
    Ok(VerifiedCiphertext {
        file,
        source,
        start,
        len,
    })
}

/// Proof that a ciphertext source hashed to its file's SHA-256: only [`verify_ciphertext`]
/// creates one, and decryption is only reachable through it.
pub struct VerifiedCiphertext<'a, R> {
    file: &'a ValidatedFile,
    source: R,
    start: u64,
    len: u64,
}

impl<R: Read + Seek> VerifiedCiphertext<'_, R> {
    /// Length of the verified ciphertext (and of the plaintext), in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the verified ciphertext is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pass 2: rewinds the source to where verification started and decrypts exactly the
    /// verified length into `writer`, through one zeroizing [`BUFFER_LEN`] buffer.
    ///
    /// The ciphertext is hashed again on the way; if the source no longer matches (changed or
    /// shortened between the passes) the result is [`AttachmentError::HashMismatch`] and what
    /// was written must be discarded. Returns the number of bytes written; the writer is
    /// flushed on success.
    pub fn decrypt_to<W: Write>(self, mut writer: W) -> Result<u64, AttachmentError> {
        let Self {
            file,
            mut source,
            start,
            len,
        } = self;
        source.seek(SeekFrom::Start(start))?;
        let mut cipher = Aes256Ctr::new(file.key().bytes().into(), file.iv().into());
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut buf = Zeroizing::new(vec![0u8; BUFFER_LEN]);
        let mut remaining = len;
        while remaining > 0 {
            let want = usize::try_from(remaining).map_or(BUFFER_LEN, |r| r.min(BUFFER_LEN));
            let n = read_some(&mut source, buf.get_mut(..want).ok_or_else(short_buffer)?)?;
            if n == 0 {
                tracing::warn!("attachment ciphertext shrank between verification and decryption");
                return Err(AttachmentError::HashMismatch);
            }
            let chunk = buf.get_mut(..n).ok_or_else(short_buffer)?;
            hash.update(chunk);
            cipher
                .try_apply_keystream(chunk)
                .map_err(|_| counter_exhausted())?;
            writer.write_all(chunk)?;
            remaining = remaining.saturating_sub(n as u64);
        }
        if !digest_matches(&hash.finish(), file.sha256()) {
            tracing::warn!("attachment ciphertext changed between verification and decryption");
            return Err(AttachmentError::HashMismatch);
        }
        writer.flush()?;
        tracing::debug!(bytes = len, "attachment decrypted");
        Ok(len)
    }
}

impl<R> fmt::Debug for VerifiedCiphertext<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            file,
            source: _,
            start,
            len,
        } = self;
        f.debug_struct("VerifiedCiphertext")
            .field("file", file)
            .field("start", start)
            .field("len", len)
            .finish_non_exhaustive()
    }
}

/// One `read`, retried on `Interrupted`; a reader claiming more bytes than the buffer holds
/// is an I/O error, not a panic.
fn read_some<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Ok(n) if n > buf.len() => return Err(short_buffer()),
            other => return other,
        }
    }
}

fn short_buffer() -> io::Error {
    io::Error::other("reader returned more bytes than the buffer holds")
}

fn add_within_limit(total: u64, n: usize, limit: u64) -> Result<u64, AttachmentError> {
    u64::try_from(n)
        .ok()
        .and_then(|n| total.checked_add(n))
        .filter(|&t| t <= limit)
        .ok_or(AttachmentError::TooLarge { limit })
}

/// The keystream's end (2^128 - 1 blocks): unreachable with a `u64` length.
fn counter_exhausted() -> AttachmentError {
    AttachmentError::Malformed {
        what: "iv: keystream exhausted",
    }
}

fn digest_bytes(digest: &digest::Digest) -> [u8; SHA256_LEN] {
    let mut out = [0u8; SHA256_LEN];
    let bytes = digest.as_ref();
    if bytes.len() == SHA256_LEN {
        out.copy_from_slice(bytes);
    }
    out
}

/// Constant-time comparison of a computed digest with an expected one.
fn digest_matches(computed: &digest::Digest, expected: &[u8; SHA256_LEN]) -> bool {
    bool::from(computed.as_ref().ct_eq(&expected[..]))
}

#[cfg(test)]
mod tests;
