//! Signing and verifying Matrix JSON objects with Ed25519 (Matrix specification, appendices,
//! § "Signing JSON" → "Signing Details" and "Checking for a Signature").
//!
//! The signed bytes are the object's [canonical JSON](super::canonical_json) without its
//! top-level `signatures` and `unsigned` members; the signature, in unpadded base64, goes to
//! `signatures.<signer>.<key id>`, where the signer is a user ID or server name and the key ID
//! is `ed25519:<key identifier>` (for a device key, `ed25519:<device ID>`).
//!
//! Hardening choices, beyond the specification's algorithm:
//! - only `ed25519:` key IDs are signed or checked (the only algorithm this module implements;
//!   a signature is never filed or looked up under another algorithm's name);
//! - verification is vodozemac's, i.e. `ed25519-dalek`'s `verify_strict` (weak, small-order
//!   public keys and `R` values refused, `s` must be reduced);
//! - the base64 of a signature may come with or without `=` padding, as the specification
//!   asks, but must be canonical (its unused trailing bits zero): one signature, one spelling;
//! - [`sign_json`] refuses an object holding any number stored as floating point, even `1e10`
//!   (which canonical JSON would write as `10000000000`): `serde_json` would send it as
//!   `10000000000.0`, a float that Synapse and ruma refuse to canonicalise;
//! - nothing is changed in the value unless signing succeeds;
//! - errors carry no key, signature, identifier or content.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};
use vodozemac::{Ed25519PublicKey, Ed25519Signature};

use super::canonical_json::{CanonicalJsonError, FloatPolicy, canonical_json_for_signing_with};

/// The prefix of every signing key ID this module accepts (the spec's `ed25519` algorithm).
pub const ED25519_KEY_ID_PREFIX: &str = "ed25519:";

/// The member holding the signatures (spec § "Signing Details").
const SIGNATURES: &str = "signatures";

/// Standard alphabet; padding optional on input (spec § "Unpadded Base64": implementations
/// SHOULD accept input with or without padding); non-zero trailing bits refused (the default).
const SIGNATURE_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a JSON object could not be signed, or why its signature is not accepted.
///
/// No variant carries a key, a signature, an identifier or any part of the object: the caller
/// knows which signer and key it asked about.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The value is not a JSON object: only objects carry `signatures`.
    #[error("only a JSON object can be signed or verified")]
    NotAnObject,
    /// The signer (user ID or server name) is empty.
    #[error("empty signer")]
    EmptySigner,
    /// The key ID is not `ed25519:` followed by a non-empty key identifier.
    #[error("key ID is not of the form ed25519:<key identifier>")]
    UnsupportedKeyId,
    /// `signatures`, or the signer's entry in it, exists but is not a JSON object. Signing
    /// refuses to overwrite it; verification refuses to guess.
    #[error("the signatures member is not an object of objects")]
    MalformedSignatures,
    /// The object has no signature by this signer with this key.
    #[error("no signature by the requested signer and key")]
    MissingSignature,
    /// The signature is not a string, not canonical base64, or not 64 bytes long.
    #[error("malformed Ed25519 signature")]
    MalformedSignature,
    /// The signature does not verify: the object was altered, or signed by another key.
    #[error("invalid Ed25519 signature")]
    BadSignature,
    /// The object has no canonical JSON encoding (a float, an integer out of range, too deep),
    /// or, when signing, holds a number stored as floating point.
    #[error("no canonical JSON for this object: {0}")]
    Canonical(#[from] CanonicalJsonError),
}

/// Signs the JSON object `value` as `signer` (user ID or server name) with the Ed25519 key
/// `key_id` (`ed25519:<key identifier>`), and stores the unpadded base64 signature at
/// `signatures.<signer>.<key_id>`.
///
/// `sign` receives the exact bytes to sign (the canonical JSON without `signatures` and
/// `unsigned`), e.g. `|bytes| account.sign(bytes)`. Other signatures and `unsigned` are kept;
/// an earlier signature by the same signer and key is replaced. On error `value` is unchanged
/// and `sign` has not been called.
///
/// # Errors
///
/// [`SigningError::NotAnObject`], [`SigningError::EmptySigner`],
/// [`SigningError::UnsupportedKeyId`], [`SigningError::MalformedSignatures`], or
/// [`SigningError::Canonical`] if the signed part has no canonical encoding or holds a number
/// stored as floating point.
pub fn sign_json(
    value: &mut Value,
    signer: &str,
    key_id: &str,
    sign: impl FnOnce(&[u8]) -> Ed25519Signature,
) -> Result<(), SigningError> {
    check_ids(signer, key_id)?;
    let Value::Object(object) = value else {
        return Err(SigningError::NotAnObject);
    };
    // Check the shape of `signatures` before anything is computed or changed.
    match object.get(SIGNATURES) {
        None => {}
        Some(Value::Object(signatures)) => match signatures.get(signer) {
            None | Some(Value::Object(_)) => {}
            Some(_) => return Err(SigningError::MalformedSignatures),
        },
        Some(_) => return Err(SigningError::MalformedSignatures),
    }
    let canonical = canonical_json_for_signing_with(value, FloatPolicy::Refused)?;
    let signature = STANDARD_NO_PAD.encode(sign(canonical.as_bytes()).to_bytes());

    let Value::Object(object) = value else {
        return Err(SigningError::NotAnObject);
    };
    // Shapes were checked above: these entries are objects or absent.
    let Value::Object(signatures) = object
        .entry(SIGNATURES)
        .or_insert_with(|| Value::Object(Map::new()))
    else {
        return Err(SigningError::MalformedSignatures);
    };
    let Value::Object(by_signer) = signatures
        .entry(signer)
        .or_insert_with(|| Value::Object(Map::new()))
    else {
        return Err(SigningError::MalformedSignatures);
    };
    by_signer.insert(key_id.to_owned(), Value::String(signature));
    Ok(())
}

/// Checks that the JSON object `value` carries a valid signature by `signer` with the Ed25519
/// key `key_id`, whose public key is `key` (spec § "Checking for a Signature").
///
/// The signature covers the object without its `signatures` and `unsigned` members; any other
/// change to the object makes it fail.
///
/// # Errors
///
/// [`SigningError::NotAnObject`], [`SigningError::EmptySigner`],
/// [`SigningError::UnsupportedKeyId`]; [`SigningError::MalformedSignatures`] or
/// [`SigningError::MissingSignature`] if there is no such signature;
/// [`SigningError::MalformedSignature`] if it cannot be decoded; [`SigningError::Canonical`]
/// if the object has no canonical encoding; [`SigningError::BadSignature`] if it does not
/// verify.
pub fn verify_json(
    value: &Value,
    signer: &str,
    key_id: &str,
    key: &Ed25519PublicKey,
) -> Result<(), SigningError> {
    check_ids(signer, key_id)?;
    let Value::Object(object) = value else {
        return Err(SigningError::NotAnObject);
    };
    let by_signer = match object.get(SIGNATURES) {
        None => return Err(SigningError::MissingSignature),
        Some(Value::Object(signatures)) => match signatures.get(signer) {
            None => return Err(SigningError::MissingSignature),
            Some(Value::Object(by_signer)) => by_signer,
            Some(_) => return Err(SigningError::MalformedSignatures),
        },
        Some(_) => return Err(SigningError::MalformedSignatures),
    };
    let encoded = match by_signer.get(key_id) {
        None => return Err(SigningError::MissingSignature),
        Some(Value::String(encoded)) => encoded,
        Some(_) => return Err(SigningError::MalformedSignature),
    };
    let bytes = SIGNATURE_BASE64
        .decode(encoded)
        .map_err(|_| SigningError::MalformedSignature)?;
    let signature =
        Ed25519Signature::from_slice(&bytes).map_err(|_| SigningError::MalformedSignature)?;
    let canonical = canonical_json_for_signing_with(value, FloatPolicy::IntegralAccepted)?;
    key.verify(canonical.as_bytes(), &signature)
        .map_err(|_| SigningError::BadSignature)
}

/// Refuses an empty signer and any key ID other than `ed25519:<non-empty identifier>`.
fn check_ids(signer: &str, key_id: &str) -> Result<(), SigningError> {
    if signer.is_empty() {
        return Err(SigningError::EmptySigner);
    }
    match key_id.strip_prefix(ED25519_KEY_ID_PREFIX) {
        Some(identifier) if !identifier.is_empty() => Ok(()),
        _ => Err(SigningError::UnsupportedKeyId),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::canonical_json::{canonical_json_for_signing, to_canonical_json};
    use ring::signature::KeyPair as _;
    use serde_json::json;
    use vodozemac::Ed25519SecretKey;
    use vodozemac::olm::Account;

    // Matrix specification, appendices, § "Cryptographic Test Vectors"
    // (matrix-org/matrix-spec, `content/appendices.md`, checked at commit
    // d0ba2aaef801e0134a4e5c6054a2c2f41bb55531, July 2026): "The following test vectors all
    // use the 32-byte value given by the following Base64-encoded string as the seed for
    // generating the ed25519 signing key", with SERVER_NAME = "domain", KEY_ID = "ed25519:1".
    const SPEC_SEED_BASE64: &str = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
    const SPEC_SERVER_NAME: &str = "domain";
    const SPEC_KEY_ID: &str = "ed25519:1";

    // § "JSON Signing": `{}` and `{"one": 1, "two": "Two"}` and their signatures.
    const SPEC_SIGNATURE_EMPTY: &str =
        "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ";
    const SPEC_SIGNATURE_ONE_TWO: &str =
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw";

    // § "Event Signing": the two signed events, verbatim. Their signatures cover the
    // *redacted* event (hashes included); their `hashes.sha256` covers the full event without
    // `signatures`, `unsigned` and `hashes`. Both exercise canonical JSON on real events.
    const SPEC_SIGNED_MINIMAL_EVENT: &str = r#"{
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {
        "sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
    },
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {
        "age_ts": 1000000
    }
}"#;
    const SPEC_SIGNED_REDACTABLE_EVENT: &str = r#"{
    "content": {
        "body": "Here is the message content"
    },
    "event_id": "$0:domain",
    "hashes": {
        "sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
    },
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        }
    },
    "unsigned": {
        "age_ts": 1000000
    }
}"#;

    /// The spec's seed. Its last base64 character carries non-zero unused bits, which
    /// `base64`'s strict decoders refuse, so this test-only decoder allows them.
    fn spec_seed() -> [u8; 32] {
        let lenient = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new()
                .with_decode_padding_mode(DecodePaddingMode::RequireNone)
                .with_decode_allow_trailing_bits(true),
        );
        lenient
            .decode(SPEC_SEED_BASE64)
            .unwrap()
            .try_into()
            .unwrap()
    }

    fn spec_secret_key() -> Ed25519SecretKey {
        Ed25519SecretKey::from_slice(&spec_seed())
    }

    fn signature_at<'a>(value: &'a Value, signer: &str, key_id: &str) -> &'a str {
        value[SIGNATURES][signer][key_id].as_str().unwrap()
    }

    fn sha256_base64(bytes: &[u8]) -> String {
        STANDARD_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, bytes))
    }

    #[test]
    fn spec_json_signing_vectors_are_reproduced() {
        let key = spec_secret_key();
        for (input, expected_signature, expected_output) in [
            (
                json!({}),
                SPEC_SIGNATURE_EMPTY,
                json!({"signatures": {"domain": {"ed25519:1": SPEC_SIGNATURE_EMPTY}}}),
            ),
            (
                json!({"one": 1, "two": "Two"}),
                SPEC_SIGNATURE_ONE_TWO,
                json!({
                    "one": 1,
                    "signatures": {"domain": {"ed25519:1": SPEC_SIGNATURE_ONE_TWO}},
                    "two": "Two",
                }),
            ),
        ] {
            let mut value = input;
            sign_json(&mut value, SPEC_SERVER_NAME, SPEC_KEY_ID, |bytes| {
                key.sign(bytes)
            })
            .unwrap();
            assert_eq!(
                signature_at(&value, SPEC_SERVER_NAME, SPEC_KEY_ID),
                expected_signature
            );
            assert_eq!(value, expected_output);
            verify_json(&value, SPEC_SERVER_NAME, SPEC_KEY_ID, &key.public_key()).unwrap();
        }
    }

    /// Cross-check with a second Ed25519 implementation (ring): same public key from the
    /// seed, same signatures, and vodozemac accepts ring's signature of our canonical bytes.
    #[test]
    fn spec_vectors_agree_with_ring() {
        let ring_key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&spec_seed()).unwrap();
        let public_key =
            Ed25519PublicKey::from_slice(ring_key.public_key().as_ref().try_into().unwrap())
                .unwrap();
        assert_eq!(public_key, spec_secret_key().public_key());
        for (object, expected) in [
            (json!({}), SPEC_SIGNATURE_EMPTY),
            (json!({"two": "Two", "one": 1}), SPEC_SIGNATURE_ONE_TWO),
        ] {
            let canonical = canonical_json_for_signing(&object).unwrap();
            let ring_signature = ring_key.sign(canonical.as_bytes());
            assert_eq!(STANDARD_NO_PAD.encode(ring_signature.as_ref()), expected);
            let mut signed = object;
            signed["signatures"] = json!({"domain": {"ed25519:1": expected}});
            verify_json(&signed, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key).unwrap();
        }
    }

    #[test]
    fn spec_event_signing_vectors_verify() {
        let public_key = spec_secret_key().public_key();

        // Minimal event: redaction (room versions 1-10, which these vectors predate) keeps
        // every member, so the signed event verifies as it stands.
        let minimal: Value = serde_json::from_str(SPEC_SIGNED_MINIMAL_EVENT).unwrap();
        verify_json(&minimal, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key).unwrap();
        let mut for_hash = minimal.clone();
        for key in ["signatures", "unsigned", "hashes"] {
            for_hash.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(
            sha256_base64(to_canonical_json(&for_hash).unwrap().as_bytes()),
            "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
        );

        // Redactable event: the content hash covers the full content; the signature covers
        // the redacted event, whose `m.room.message` content is emptied.
        let full: Value = serde_json::from_str(SPEC_SIGNED_REDACTABLE_EVENT).unwrap();
        let mut for_hash = full.clone();
        for key in ["signatures", "unsigned", "hashes"] {
            for_hash.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(
            sha256_base64(to_canonical_json(&for_hash).unwrap().as_bytes()),
            "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
        );
        assert_eq!(
            verify_json(&full, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key),
            Err(SigningError::BadSignature)
        );
        let mut redacted = full.clone();
        redacted["content"] = json!({});
        verify_json(&redacted, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key).unwrap();

        // And signing the redacted events reproduces the spec's signatures.
        let key = spec_secret_key();
        for (event, expected) in [
            (
                minimal,
                "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg",
            ),
            (
                redacted,
                "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA",
            ),
        ] {
            let mut event = event;
            event.as_object_mut().unwrap().remove("signatures");
            sign_json(&mut event, SPEC_SERVER_NAME, SPEC_KEY_ID, |bytes| {
                key.sign(bytes)
            })
            .unwrap();
            assert_eq!(
                signature_at(&event, SPEC_SERVER_NAME, SPEC_KEY_ID),
                expected
            );
        }
    }

    #[test]
    fn round_trip_with_an_olm_account_key() {
        let account = Account::new();
        let user = "@jean.martin:secure.example.gouv.fr";
        let key_id = "ed25519:ABCDEFGHIJ";
        let mut device_keys = json!({
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "device_id": "ABCDEFGHIJ",
            "keys": {
                "curve25519:ABCDEFGHIJ": account.curve25519_key().to_base64(),
                "ed25519:ABCDEFGHIJ": account.ed25519_key().to_base64(),
            },
            "user_id": user,
        });
        sign_json(&mut device_keys, user, key_id, |bytes| account.sign(bytes)).unwrap();
        verify_json(&device_keys, user, key_id, &account.ed25519_key()).unwrap();
        // Another account's key does not verify it.
        assert_eq!(
            verify_json(&device_keys, user, key_id, &Account::new().ed25519_key()),
            Err(SigningError::BadSignature)
        );
        // The signature is unpadded standard base64 of 64 bytes.
        let signature = signature_at(&device_keys, user, key_id);
        assert_eq!(signature.len(), 86);
        assert!(!signature.contains('='));
    }

    #[test]
    fn key_order_does_not_change_the_signature() {
        let key = spec_secret_key();
        let mut a: Value =
            serde_json::from_str(r#"{"b":{"y":2,"x":1},"a":[{"d":4,"c":3}]}"#).unwrap();
        let mut b: Value =
            serde_json::from_str(r#"{"a":[{"c":3,"d":4}],"b":{"x":1,"y":2}}"#).unwrap();
        sign_json(&mut a, "@u:d", "ed25519:K", |bytes| key.sign(bytes)).unwrap();
        sign_json(&mut b, "@u:d", "ed25519:K", |bytes| key.sign(bytes)).unwrap();
        assert_eq!(
            signature_at(&a, "@u:d", "ed25519:K"),
            signature_at(&b, "@u:d", "ed25519:K")
        );
        // A re-serialised, re-parsed copy (any member order, any whitespace) still verifies.
        let pretty = serde_json::to_string_pretty(&a).unwrap();
        let reparsed: Value = serde_json::from_str(&pretty).unwrap();
        verify_json(&reparsed, "@u:d", "ed25519:K", &key.public_key()).unwrap();
    }

    #[test]
    fn unsigned_is_excluded_and_kept() {
        let key = spec_secret_key();
        let mut value = json!({"one": 1, "two": "Two", "unsigned": {"age_ts": 922834800000_u64}});
        sign_json(&mut value, SPEC_SERVER_NAME, SPEC_KEY_ID, |bytes| {
            key.sign(bytes)
        })
        .unwrap();
        // Same signature as without `unsigned` (the spec vector), and `unsigned` is still there.
        assert_eq!(
            signature_at(&value, SPEC_SERVER_NAME, SPEC_KEY_ID),
            SPEC_SIGNATURE_ONE_TWO
        );
        assert_eq!(value["unsigned"], json!({"age_ts": 922834800000_u64}));
        // Intermediaries may change `unsigned`: the signature still verifies.
        value["unsigned"] = json!({"age_ts": 1, "extra": [1.5]});
        verify_json(&value, SPEC_SERVER_NAME, SPEC_KEY_ID, &key.public_key()).unwrap();
        value.as_object_mut().unwrap().remove("unsigned");
        verify_json(&value, SPEC_SERVER_NAME, SPEC_KEY_ID, &key.public_key()).unwrap();
    }

    #[test]
    fn existing_signatures_are_preserved() {
        let key = spec_secret_key();
        let other = Ed25519SecretKey::new();
        let mut value = json!({
            "one": 1,
            "two": "Two",
            "signatures": {
                "other.example": {"ed25519:a": "kept-as-is"},
                "domain": {"ed25519:0": "also-kept"},
            },
        });
        sign_json(&mut value, SPEC_SERVER_NAME, SPEC_KEY_ID, |bytes| {
            key.sign(bytes)
        })
        .unwrap();
        sign_json(&mut value, "@u:d", "ed25519:DEV", |bytes| other.sign(bytes)).unwrap();
        assert_eq!(
            value["signatures"]["other.example"],
            json!({"ed25519:a": "kept-as-is"})
        );
        assert_eq!(
            value["signatures"]["domain"],
            json!({"ed25519:0": "also-kept", "ed25519:1": SPEC_SIGNATURE_ONE_TWO})
        );
        // Each signature verifies independently of the others.
        verify_json(&value, SPEC_SERVER_NAME, SPEC_KEY_ID, &key.public_key()).unwrap();
        verify_json(&value, "@u:d", "ed25519:DEV", &other.public_key()).unwrap();
        // Re-signing with the same signer and key replaces only that signature.
        value["signatures"]["domain"]["ed25519:1"] = json!("stale");
        sign_json(&mut value, SPEC_SERVER_NAME, SPEC_KEY_ID, |bytes| {
            key.sign(bytes)
        })
        .unwrap();
        assert_eq!(
            signature_at(&value, SPEC_SERVER_NAME, SPEC_KEY_ID),
            SPEC_SIGNATURE_ONE_TWO
        );
        assert_eq!(
            value["signatures"]["domain"]["ed25519:0"],
            json!("also-kept")
        );
    }

    #[test]
    fn tampering_fails_verification() {
        let key = spec_secret_key();
        let public_key = key.public_key();
        let mut signed = json!({"one": 1, "two": "Two", "nested": {"a": [1, 2]}});
        sign_json(&mut signed, SPEC_SERVER_NAME, SPEC_KEY_ID, |bytes| {
            key.sign(bytes)
        })
        .unwrap();
        verify_json(&signed, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key).unwrap();

        let tamperings: [fn(&mut Value); 6] = [
            |v| v["one"] = json!(2),
            |v| v["two"] = json!("two"),
            |v| v["nested"]["a"] = json!([2, 1]),
            |v| v["added"] = json!(null),
            |v| {
                v.as_object_mut().unwrap().remove("one");
            },
            // A nested `unsigned` is covered: only the top-level one is excluded.
            |v| v["nested"]["unsigned"] = json!({}),
        ];
        for tamper in tamperings {
            let mut value = signed.clone();
            tamper(&mut value);
            assert_eq!(
                verify_json(&value, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key),
                Err(SigningError::BadSignature),
                "{value}"
            );
        }

        // A signature moved to another signer or key ID is looked up there and fails there.
        let mut moved = signed.clone();
        moved["signatures"]["domain"]["ed25519:2"] = json!(SPEC_SIGNATURE_ONE_TWO);
        let other = Ed25519SecretKey::new();
        assert_eq!(
            verify_json(&moved, SPEC_SERVER_NAME, "ed25519:2", &other.public_key()),
            Err(SigningError::BadSignature)
        );
        // A flipped signature bit.
        let mut flipped = signed.clone();
        let mut bytes = STANDARD_NO_PAD
            .decode(signature_at(&signed, SPEC_SERVER_NAME, SPEC_KEY_ID))
            .unwrap();
        bytes[10] ^= 1;
        flipped["signatures"]["domain"]["ed25519:1"] = json!(STANDARD_NO_PAD.encode(&bytes));
        assert_eq!(
            verify_json(&flipped, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key),
            Err(SigningError::BadSignature)
        );
    }

    #[test]
    fn missing_signatures_are_reported() {
        let public_key = spec_secret_key().public_key();
        let with = |signatures: Value| json!({"one": 1, "two": "Two", "signatures": signatures});
        for value in [
            json!({"one": 1, "two": "Two"}),
            with(json!({})),
            with(json!({"other": {"ed25519:1": SPEC_SIGNATURE_ONE_TWO}})),
            with(json!({"domain": {}})),
            with(json!({"domain": {"ed25519:2": SPEC_SIGNATURE_ONE_TWO}})),
        ] {
            assert_eq!(
                verify_json(&value, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key),
                Err(SigningError::MissingSignature),
                "{value}"
            );
        }
        for value in [
            with(json!([])),
            with(json!("x")),
            with(json!({"domain": "x"})),
        ] {
            assert_eq!(
                verify_json(&value, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key),
                Err(SigningError::MalformedSignatures),
                "{value}"
            );
        }
    }

    #[test]
    fn malformed_signatures_are_reported() {
        let public_key = spec_secret_key().public_key();
        // The spec signature with its last character changed so that the unused trailing
        // bits are no longer zero: same bytes, non-canonical spelling.
        let mut non_canonical = SPEC_SIGNATURE_ONE_TWO.to_owned();
        assert_eq!(non_canonical.pop(), Some('w'));
        non_canonical.push('x');
        let truncated = &SPEC_SIGNATURE_ONE_TWO[..84];
        for signature in [
            json!(null),
            json!(42),
            json!(["x"]),
            json!(""),
            json!("not base64!"),
            json!(truncated),
            json!(format!("{SPEC_SIGNATURE_ONE_TWO}AA")),
            json!(STANDARD_NO_PAD.encode([0u8; 63])),
            json!(SPEC_SIGNATURE_ONE_TWO.replace('+', "-").replace('/', "_")),
            json!(non_canonical),
        ] {
            let value = json!({
                "one": 1, "two": "Two", "signatures": {"domain": {"ed25519:1": signature}},
            });
            assert_eq!(
                verify_json(&value, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key),
                Err(SigningError::MalformedSignature),
                "{signature}"
            );
        }
        // Padding is accepted, as the specification asks of base64 decoders.
        let padded = json!({
            "one": 1, "two": "Two",
            "signatures": {"domain": {"ed25519:1": format!("{SPEC_SIGNATURE_ONE_TWO}==")}},
        });
        verify_json(&padded, SPEC_SERVER_NAME, SPEC_KEY_ID, &public_key).unwrap();
    }

    #[test]
    fn identifiers_are_checked() {
        let key = spec_secret_key();
        let public_key = key.public_key();
        let signed = json!({"signatures": {"domain": {"ed25519:1": SPEC_SIGNATURE_EMPTY}}});
        for key_id in [
            "",
            "ed25519:",
            "ed25519",
            "curve25519:1",
            "ED25519:1",
            "signed_curve25519:1",
        ] {
            let mut value = json!({});
            assert_eq!(
                sign_json(&mut value, SPEC_SERVER_NAME, key_id, |bytes| key
                    .sign(bytes)),
                Err(SigningError::UnsupportedKeyId)
            );
            assert_eq!(value, json!({}));
            assert_eq!(
                verify_json(&signed, SPEC_SERVER_NAME, key_id, &public_key),
                Err(SigningError::UnsupportedKeyId)
            );
        }
        let mut value = json!({});
        assert_eq!(
            sign_json(&mut value, "", SPEC_KEY_ID, |bytes| key.sign(bytes)),
            Err(SigningError::EmptySigner)
        );
        assert_eq!(
            verify_json(&signed, "", SPEC_KEY_ID, &public_key),
            Err(SigningError::EmptySigner)
        );
    }

    #[test]
    fn non_objects_are_refused() {
        let key = spec_secret_key();
        for mut value in [json!([]), json!("x"), json!(1), json!(null), json!(true)] {
            let before = value.clone();
            assert_eq!(
                sign_json(&mut value, SPEC_SERVER_NAME, SPEC_KEY_ID, |bytes| key
                    .sign(bytes)),
                Err(SigningError::NotAnObject)
            );
            assert_eq!(value, before);
            assert_eq!(
                verify_json(&value, SPEC_SERVER_NAME, SPEC_KEY_ID, &key.public_key()),
                Err(SigningError::NotAnObject)
            );
        }
    }

    #[test]
    fn floats_are_refused() {
        let key = spec_secret_key();
        // Signing refuses every number stored as a float, even integral ones.
        for float in [json!(1.5), json!(1e10), json!(-0.0), json!(1.0)] {
            let mut value = json!({"a": {"b": [float]}});
            let before = value.clone();
            let mut called = false;
            let result = sign_json(&mut value, SPEC_SERVER_NAME, SPEC_KEY_ID, |bytes| {
                called = true;
                key.sign(bytes)
            });
            assert_eq!(
                result,
                Err(SigningError::Canonical(
                    CanonicalJsonError::NonIntegerNumber
                ))
            );
            assert!(!called);
            assert_eq!(value, before);
        }
        // Out-of-range integers too.
        let mut value = json!({"a": 9_007_199_254_740_992_u64});
        assert_eq!(
            sign_json(&mut value, SPEC_SERVER_NAME, SPEC_KEY_ID, |bytes| key
                .sign(bytes)),
            Err(SigningError::Canonical(
                CanonicalJsonError::IntegerOutOfRange
            ))
        );
        // Verification of an object holding a float fails as non-canonical, not as a bad
        // signature, even with a signature that would otherwise be checked.
        let value = json!({
            "one": 1, "two": "Two", "f": 0.5,
            "signatures": {"domain": {"ed25519:1": SPEC_SIGNATURE_ONE_TWO}},
        });
        assert_eq!(
            verify_json(&value, SPEC_SERVER_NAME, SPEC_KEY_ID, &key.public_key()),
            Err(SigningError::Canonical(
                CanonicalJsonError::NonIntegerNumber
            ))
        );
    }

    #[test]
    fn malformed_signatures_member_is_not_overwritten() {
        let key = spec_secret_key();
        for mut value in [
            json!({"signatures": "x"}),
            json!({"signatures": []}),
            json!({"signatures": {"domain": ["x"]}}),
        ] {
            let before = value.clone();
            assert_eq!(
                sign_json(&mut value, SPEC_SERVER_NAME, SPEC_KEY_ID, |bytes| key
                    .sign(bytes)),
                Err(SigningError::MalformedSignatures)
            );
            assert_eq!(value, before);
        }
    }

    #[test]
    fn errors_do_not_echo_inputs() {
        let all = [
            SigningError::NotAnObject,
            SigningError::EmptySigner,
            SigningError::UnsupportedKeyId,
            SigningError::MalformedSignatures,
            SigningError::MissingSignature,
            SigningError::MalformedSignature,
            SigningError::BadSignature,
            SigningError::Canonical(CanonicalJsonError::NonIntegerNumber),
        ];
        for error in all {
            let message = error.to_string();
            assert!(
                !message.contains("domain") && !message.contains("K8280"),
                "{message}"
            );
            assert!(!message.is_empty());
        }
    }
}
