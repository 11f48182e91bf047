//! Validation of received `EncryptedFile`s: the vector of another implementation, every
//! accepted encoding, a refusal for each malformed field, redaction, and property tests that
//! hostile JSON never panics.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::media::test_vectors::{SDK_IV, SDK_KEY, SDK_SHA256, SDK_URL, sdk_file_json};

fn parse(value: Value) -> Result<ValidatedFile, AttachmentError> {
    EncryptedFile::from_json(value)?.validate()
}

fn mutated(pointer: &str, value: Value) -> Value {
    let mut file = sdk_file_json();
    *file.pointer_mut(pointer).unwrap() = value;
    file
}

fn canonical_json(file: &ValidatedFile) -> Value {
    serde_json::to_value(file.to_encrypted_file()).unwrap()
}

fn malformed_what(result: Result<ValidatedFile, AttachmentError>) -> &'static str {
    match result {
        Err(AttachmentError::Malformed { what }) => what,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn validate_accepts_matrix_rust_sdk_vector() {
    let file = parse(sdk_file_json()).unwrap();
    assert_eq!(file.url().to_string(), SDK_URL);
    assert_eq!(file.url().server_name(), "example.org");
    assert_eq!(file.url().media_id(), "AbCdEf_-0123");
    assert_eq!(
        &file.sha256()[..],
        &STANDARD_NO_PAD.decode(SDK_SHA256).unwrap()[..]
    );
    assert_eq!(&file.iv()[..], &STANDARD_NO_PAD.decode(SDK_IV).unwrap()[..]);
    assert_eq!(
        &file.key().bytes()[..],
        &URL_SAFE_NO_PAD.decode(SDK_KEY).unwrap()[..]
    );
    // The vector is already in canonical form: re-encoding gives it back.
    assert_eq!(canonical_json(&file), sdk_file_json());
}

#[test]
fn validate_accepts_equivalent_encodings_and_extensions() {
    let key = URL_SAFE_NO_PAD.decode(SDK_KEY).unwrap();
    let iv = STANDARD_NO_PAD.decode(SDK_IV).unwrap();
    let sha = STANDARD_NO_PAD.decode(SDK_SHA256).unwrap();
    let variants = [
        mutated("/key/k", json!(URL_SAFE.encode(&key))),
        mutated("/key/k", json!(STANDARD.encode(&key))),
        mutated("/key/k", json!(STANDARD_NO_PAD.encode(&key))),
        mutated("/iv", json!(STANDARD.encode(&iv))),
        mutated("/iv", json!(URL_SAFE_NO_PAD.encode(&iv))),
        mutated("/hashes/sha256", json!(STANDARD.encode(&sha))),
        mutated("/hashes/sha256", json!(URL_SAFE_NO_PAD.encode(&sha))),
        mutated("/key/key_ops", json!(["decrypt", "sign", "encrypt"])),
        mutated(
            "/hashes",
            json!({ "sha256": SDK_SHA256, "sha512": "ignored" }),
        ),
        {
            let mut file = sdk_file_json();
            file["mimetype"] = json!("application/pdf");
            file["key"]["use"] = json!("enc");
            file
        },
    ];
    let expected = sdk_file_json();
    for variant in variants {
        let file = parse(variant.clone()).unwrap_or_else(|e| panic!("{variant}: {e:?}"));
        assert_eq!(canonical_json(&file), expected, "{variant}");
    }
}

#[test]
fn validate_rejects_each_malformed_field() {
    let key = URL_SAFE_NO_PAD.decode(SDK_KEY).unwrap();
    let mixed_alphabets = SDK_KEY.replacen('-', "+", 1);
    // The vector's key ends in 'E' (trailing bits 00); 'F' sets a trailing bit.
    let non_canonical = format!("{}F", &SDK_KEY[..42]);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/v", json!("v1"), "v:"),
        ("/v", json!("V2"), "v:"),
        ("/v", json!(""), "v:"),
        ("/key/kty", json!("RSA"), "key.kty"),
        ("/key/alg", json!("A128CTR"), "key.alg"),
        ("/key/alg", json!("a256ctr"), "key.alg"),
        ("/key/ext", json!(false), "key.ext"),
        ("/key/key_ops", json!(["encrypt"]), "key.key_ops"),
        ("/key/key_ops", json!(["decrypt"]), "key.key_ops"),
        ("/key/key_ops", json!([]), "key.key_ops"),
        ("/key/key_ops", json!(["ENCRYPT", "DECRYPT"]), "key.key_ops"),
        ("/key/k", json!(""), "key.k"),
        ("/key/k", json!("!!!!"), "key.k"),
        ("/key/k", json!(URL_SAFE_NO_PAD.encode(&key[..31])), "key.k"),
        ("/key/k", json!(URL_SAFE_NO_PAD.encode([7u8; 33])), "key.k"),
        ("/key/k", json!(URL_SAFE_NO_PAD.encode([7u8; 16])), "key.k"),
        ("/key/k", json!(format!(" {}", &SDK_KEY[1..])), "key.k"),
        ("/key/k", json!(format!("{}\n", &SDK_KEY[..42])), "key.k"),
        ("/key/k", json!(mixed_alphabets), "key.k"),
        ("/key/k", json!(non_canonical), "key.k"),
        ("/key/k", json!(format!("{SDK_KEY}====")), "key.k"),
        ("/key/k", json!("A".repeat(100_000)), "key.k"),
        ("/iv", json!(""), "iv"),
        ("/iv", json!("not base64!"), "iv"),
        ("/iv", json!(STANDARD_NO_PAD.encode([1u8; 15])), "iv"),
        ("/iv", json!(STANDARD_NO_PAD.encode([1u8; 17])), "iv"),
        ("/iv", json!(STANDARD_NO_PAD.encode([1u8; 32])), "iv"),
        ("/hashes", json!({}), "hashes.sha256"),
        ("/hashes", json!({ "SHA256": SDK_SHA256 }), "hashes.sha256"),
        ("/hashes", json!({ "sha512": SDK_SHA256 }), "hashes.sha256"),
        ("/hashes/sha256", json!("x"), "hashes.sha256"),
        (
            "/hashes/sha256",
            json!(STANDARD_NO_PAD.encode([2u8; 31])),
            "hashes.sha256",
        ),
        (
            "/hashes/sha256",
            json!(STANDARD_NO_PAD.encode([2u8; 64])),
            "hashes.sha256",
        ),
        ("/url", json!(""), "url"),
        ("/url", json!("https://example.org/abc"), "url"),
        ("/url", json!("mxc://example.org/a/b"), "url"),
    ];
    for (pointer, value, expected) in cases {
        let what = malformed_what(parse(mutated(pointer, value.clone())));
        assert!(
            what.starts_with(expected),
            "{pointer} = {value}: refused as {what:?}, expected {expected:?}"
        );
        // The reason names the field, never its value.
        if let Some(s) = value.as_str().filter(|s| s.len() > 3) {
            assert!(!what.contains(s));
        }
    }
}

#[test]
fn from_json_rejects_wrong_shapes() {
    let cases = [
        json!(null),
        json!([]),
        json!("mxc://example.org/abc"),
        {
            let mut f = sdk_file_json();
            f.as_object_mut().unwrap().remove("url");
            f
        },
        {
            let mut f = sdk_file_json();
            f.as_object_mut().unwrap().remove("iv");
            f
        },
        {
            let mut f = sdk_file_json();
            f["key"].as_object_mut().unwrap().remove("k");
            f
        },
        mutated("/key/k", json!(12)),
        mutated("/key/ext", json!("true")),
        mutated("/hashes", json!(["sha256"])),
        mutated("/hashes/sha256", json!(null)),
        mutated("/key/key_ops", json!("encrypt,decrypt")),
        mutated("/url", json!({ "mxc": true })),
    ];
    for case in cases {
        let what = malformed_what(parse(case.clone()));
        assert!(what.starts_with("encrypted file"), "{case}: {what}");
    }
}

#[test]
fn mxc_uri_accepts_well_formed() {
    let long_server = "a".repeat(MAX_SERVER_NAME_LEN);
    let long_media = "m".repeat(MAX_MEDIA_ID_LEN);
    let accepted = [
        "mxc://localhost/abc".to_owned(),
        "mxc://test.local/clean1".to_owned(),
        "mxc://127.0.0.1:8008/abc".to_owned(),
        "mxc://[::1]:8448/abc".to_owned(),
        "mxc://[2001:db8::1]/x".to_owned(),
        "mxc://[::ffff:127.0.0.1]/x".to_owned(),
        "mxc://matrix.secure.example.gouv.fr:65535/AbCdEf_-0123".to_owned(),
        format!("mxc://{long_server}/abc"),
        format!("mxc://example.org/{long_media}"),
    ];
    for uri in accepted {
        let parsed = MxcUri::parse(&uri).unwrap_or_else(|e| panic!("{uri}: {e:?}"));
        assert_eq!(parsed.to_string(), uri);
    }
    let parsed = MxcUri::parse("mxc://[::1]:8448/abc").unwrap();
    assert_eq!(parsed.server_name(), "[::1]:8448");
    assert_eq!(parsed.media_id(), "abc");
}

#[test]
fn mxc_uri_rejects_malformed() {
    let long_server = "a".repeat(MAX_SERVER_NAME_LEN + 1);
    let long_media = "m".repeat(MAX_MEDIA_ID_LEN + 1);
    let refused = [
        "".to_owned(),
        "mxc://".to_owned(),
        "mxc:/example.org/abc".to_owned(),
        "MXC://example.org/abc".to_owned(),
        " mxc://example.org/abc".to_owned(),
        "https://example.org/abc".to_owned(),
        "mxc://example.org".to_owned(),
        "mxc://example.org/".to_owned(),
        "mxc:///abc".to_owned(),
        "mxc://example.org/a/b".to_owned(),
        "mxc://example.org//abc".to_owned(),
        "mxc://example.org/a b".to_owned(),
        "mxc://exa mple.org/abc".to_owned(),
        "mxc://example.org/abc\n".to_owned(),
        "mxc://ex\u{0}ample/abc".to_owned(),
        "mxc://example.org/ab\u{202E}c".to_owned(),
        "mxc://../abc".to_owned(),
        "mxc://./abc".to_owned(),
        "mxc://example..org/abc".to_owned(),
        "mxc://.example.org/abc".to_owned(),
        "mxc://example.org./abc".to_owned(),
        "mxc://example.org:/abc".to_owned(),
        "mxc://example.org:0123456/abc".to_owned(),
        "mxc://example.org:99999/abc".to_owned(),
        "mxc://example.org:80:80/abc".to_owned(),
        "mxc://example.org:8a/abc".to_owned(),
        "mxc://example.org:+80/abc".to_owned(),
        "mxc://[::1/abc".to_owned(),
        "mxc://[zz::]/abc".to_owned(),
        "mxc://[::1]x/abc".to_owned(),
        "mxc://[::1]:/abc".to_owned(),
        "mxc://[]/abc".to_owned(),
        "mxc://[1.2.3.4]/abc".to_owned(),
        "mxc://exämple.org/abc".to_owned(),
        "mxc://user@example.org/abc".to_owned(),
        "mxc://example.org/abc?x=1".to_owned(),
        "mxc://example.org/abc#x".to_owned(),
        "mxc://example.org/abc%2F".to_owned(),
        "mxc://example.org/abc.def".to_owned(),
        "mxc://example.org/..".to_owned(),
        format!("mxc://{long_server}/abc"),
        format!("mxc://example.org/{long_media}"),
    ];
    for uri in refused {
        match MxcUri::parse(&uri) {
            Err(AttachmentError::Malformed { what }) => assert!(what.starts_with("url"), "{uri}"),
            other => panic!("{uri:?} accepted or wrong error: {other:?}"),
        }
    }
}

#[test]
fn debug_never_shows_key_or_iv() {
    let wire = EncryptedFile::from_json(sdk_file_json()).unwrap();
    let debug = format!("{wire:?}");
    assert_eq!(
        debug,
        "EncryptedFile { url: \"mxc://example.org/AbCdEf_-0123\", key: JsonWebKey { kty: \
         \"oct\", key_ops: [\"encrypt\", \"decrypt\"], alg: \"A256CTR\", k: \"<redacted>\", ext: \
         true }, iv: \"<redacted>\", hashes: {\"sha256\": \
         \"ANdt819a8bZl4jKy3Z+jcqtiNICa2y0AW4BBJ/iQRAU\"}, v: \"v2\" }"
    );
    let validated = wire.validate().unwrap();
    assert_eq!(
        format!("{validated:?}"),
        "ValidatedFile { url: \"mxc://example.org/AbCdEf_-0123\", .. }"
    );
    assert_eq!(
        format!("{:?}", validated.key()),
        "AttachmentKey(<redacted>)"
    );
    for text in [
        debug,
        format!("{validated:#?}"),
        format!("{:?}", validated.to_encrypted_file()),
    ] {
        assert!(!text.contains(SDK_KEY) && !text.contains(SDK_IV), "{text}");
    }
}

#[test]
fn errors_never_show_values() {
    let file = mutated("/key/k", json!(format!("{SDK_KEY}x")));
    let err = parse(file).unwrap_err();
    assert!(!err.to_string().contains(SDK_KEY) && !format!("{err:?}").contains(SDK_KEY));
    // A serde error would quote the value: from_json drops it.
    let err = parse(mutated("/key/ext", json!(SDK_KEY))).unwrap_err();
    assert!(!err.to_string().contains(SDK_KEY) && !format!("{err:?}").contains(SDK_KEY));
}

// ---------------------------------------------------------------------------------------------
// Property tests: hostile JSON never panics; whatever is accepted re-encodes canonically.

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::String),
        "[A-Za-z0-9+/_=-]{0,48}".prop_map(Value::String),
        Just(json!("v2")),
        Just(json!("A256CTR")),
        Just(json!("oct")),
        Just(json!(SDK_KEY)),
        Just(json!(SDK_URL)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("url".to_owned()),
                    Just("key".to_owned()),
                    Just("iv".to_owned()),
                    Just("hashes".to_owned()),
                    Just("v".to_owned()),
                    Just("k".to_owned()),
                    Just("sha256".to_owned()),
                    "\\PC{0,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 10] = [
    "/url",
    "/iv",
    "/v",
    "/key/k",
    "/key/alg",
    "/key/kty",
    "/key/ext",
    "/key/key_ops",
    "/hashes",
    "/hashes/sha256",
];

fn assert_canonical_round_trip(file: &ValidatedFile) -> Result<(), TestCaseError> {
    let again = file.to_encrypted_file().validate();
    prop_assert!(again.is_ok(), "canonical form refused: {:?}", again);
    let again = again.unwrap_or_else(|_| unreachable!());
    prop_assert_eq!(again.url(), file.url());
    prop_assert_eq!(again.sha256(), file.sha256());
    prop_assert_eq!(again.iv(), file.iv());
    prop_assert_eq!(again.key().bytes(), file.key().bytes());
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn validate_never_panics_on_arbitrary_json(value in arb_json()) {
        if let Ok(file) = parse(value) {
            assert_canonical_round_trip(&file)?;
        }
    }

    #[test]
    fn validate_never_panics_on_a_field_replaced(
        field in 0..FIELDS.len(),
        value in prop_oneof![
            arb_json(),
            "\\PC{0,80}".prop_map(Value::String),
            "[A-Za-z0-9+/_=-]{0,60}".prop_map(Value::String),
            "mxc://[a-z0-9.:\\[\\]-]{0,24}/[A-Za-z0-9_./-]{0,24}".prop_map(Value::String),
        ],
    ) {
        let file = mutated(FIELDS[field], value.clone());
        if let Ok(validated) = parse(file) {
            if FIELDS[field] == "/url" {
                let url = validated.url().to_string();
                prop_assert_eq!(Some(url.as_str()), value.as_str());
            }
            assert_canonical_round_trip(&validated)?;
        }
    }

    #[test]
    fn key_is_accepted_iff_it_decodes_to_32_bytes(
        key in prop::collection::vec(any::<u8>(), 0..48),
        encoding in 0..4usize,
    ) {
        let k = match encoding {
            0 => URL_SAFE_NO_PAD.encode(&key),
            1 => URL_SAFE.encode(&key),
            2 => STANDARD_NO_PAD.encode(&key),
            _ => STANDARD.encode(&key),
        };
        match parse(mutated("/key/k", json!(k))) {
            Ok(file) => {
                prop_assert_eq!(key.len(), KEY_LEN);
                prop_assert_eq!(&file.key().bytes()[..], &key[..]);
                let wire = file.to_encrypted_file();
                prop_assert_eq!(wire.key.k.as_str(), URL_SAFE_NO_PAD.encode(&key));
            }
            Err(e) => {
                prop_assert_ne!(key.len(), KEY_LEN);
                let refused_as_key = matches!(e, AttachmentError::Malformed { what } if what.starts_with("key.k"));
                prop_assert!(refused_as_key, "{:?}", e);
            }
        }
    }
}
