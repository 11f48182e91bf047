//! Known answers shared by the media tests.
//!
//! The vector is matrix-rust-sdk's (`crates/matrix-sdk-crypto/src/file_encryption/
//! attachments.rs`, tests `real_decrypt` / `example_key`): a file encrypted by another
//! implementation of the same format, here given an `mxc://` URL.

use serde_json::{Value, json};

/// `key.k` of the vector (unpadded base64url).
pub(super) const SDK_KEY: &str = "Voq2nkPme_x8no5-Tjq_laDAdxE6iDbxnlQXxwFPgE4";
/// `iv` of the vector: 8 nonce bytes, then a zero counter.
pub(super) const SDK_IV: &str = "i0DovxYdJEcAAAAAAAAAAA";
/// `hashes.sha256` of the vector.
pub(super) const SDK_SHA256: &str = "ANdt819a8bZl4jKy3Z+jcqtiNICa2y0AW4BBJ/iQRAU";
/// The ciphertext of the vector.
pub(super) const SDK_CIPHERTEXT: &[u8] = &[
    179, 154, 118, 127, 186, 127, 110, 33, 203, 33, 33, 134, 67, 100, 173, 46, 235, 27, 215, 172,
    36, 26, 75, 47, 33, 160,
];
/// Its plaintext.
pub(super) const SDK_PLAINTEXT: &[u8] = b"It's a secret to everybody";
/// The URL we give it.
pub(super) const SDK_URL: &str = "mxc://example.org/AbCdEf_-0123";

/// The vector as the `file` object of an event.
pub(crate) fn sdk_file_json() -> Value {
    json!({
        "url": SDK_URL,
        "key": {
            "kty": "oct",
            "alg": "A256CTR",
            "ext": true,
            "k": SDK_KEY,
            "key_ops": ["encrypt", "decrypt"],
        },
        "iv": SDK_IV,
        "hashes": { "sha256": SDK_SHA256 },
        "v": "v2",
    })
}
