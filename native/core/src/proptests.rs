//! Property tests of every parser that reads untrusted bytes, run by plain `cargo test`.
//!
//! They are unit tests of this crate (compiled under `cfg(test)`), not an integration test
//! behind the `fuzzing` feature: cargo cannot turn a feature of a package on for its own
//! tests, and the one crate that could (`tests/`) is not ours to change. Here they reach the
//! `pub(crate)` parsers directly and share the fuzz targets' entry points
//! ([`crate::fuzz_api`], compiled for tests too), so CI runs the same code paths as the
//! fuzzers, with the same seeds: the realistic samples of `fuzz/corpus/` are the starting
//! points of the structured generators below.
//!
//! Properties:
//! - arbitrary bytes and arbitrary JSON never panic in any parser, and bytes that are not JSON
//!   get the typed "refused at decoding" error;
//! - mutated realistic inputs (a field removed, a value of another type, huge or negative
//!   numbers, floats, deep nesting, very long or non-ASCII strings, duplicated elements) never
//!   panic, and a sync response the client decodes never makes the store fail (which would
//!   wedge the sync loop on a peer's say-so);
//! - canonical JSON is idempotent, sorted, equal to an independent encoder, stable under
//!   re-parse and key order, and refuses floats, out-of-range integers and deep nesting with
//!   typed errors;
//! - a self-signed device key verifies, and any change to a signed field, or a listing under
//!   another user or device id, makes it refused.
//!
//! CI cost: 32 to 256 cases a property (a store-backed case applies a sync in SQLCipher, and
//! debug-build Olm/Megolm/Ed25519 are slow), about 9 s for the whole file on two cores;
//! failures are not persisted to files, the failing input is printed.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Map, Value, json};

use crate::crypto::account::OlmAccount;
use crate::crypto::canonical_json::{
    CanonicalJsonError, MAX_DEPTH, MAX_SAFE_INTEGER, canonical_json_for_signing, to_canonical_json,
};
use crate::crypto::signing::{SigningError, verify_json};
use crate::fuzz_api::{self, FuzzError};
use crate::store::crypto::DeviceState;

// ---------------------------------------------------------------------------------------------
// Seeds: the fuzz corpus

const SYNC_SEEDS: &[&str] = &[
    include_str!("../fuzz/corpus/sync_response/initial_sync.json"),
    include_str!("../fuzz/corpus/sync_response/incremental_sync.json"),
];
const ROOM_EVENT_SEEDS: &[&str] = &[
    include_str!("../fuzz/corpus/room_event/member_join.json"),
    include_str!("../fuzz/corpus/room_event/member_leave.json"),
    include_str!("../fuzz/corpus/room_event/encryption.json"),
    include_str!("../fuzz/corpus/room_event/encryption_downgrade.json"),
    include_str!("../fuzz/corpus/room_event/name.json"),
    include_str!("../fuzz/corpus/room_event/encrypted.json"),
    include_str!("../fuzz/corpus/room_event/clear_message.json"),
];
const TO_DEVICE_SEEDS: &[&str] = &[
    include_str!("../fuzz/corpus/to_device/olm_room_key.json"),
    include_str!("../fuzz/corpus/to_device/clear_room_key.json"),
    include_str!("../fuzz/corpus/to_device/withheld.json"),
];
const OLM_PLAINTEXT_SEEDS: &[&str] = &[
    include_str!("../fuzz/corpus/olm_plaintext/room_key.json"),
    include_str!("../fuzz/corpus/olm_plaintext/dummy.json"),
];
const MEGOLM_PLAINTEXT_SEEDS: &[&str] = &[
    include_str!("../fuzz/corpus/megolm_plaintext/text.json"),
    include_str!("../fuzz/corpus/megolm_plaintext/reply_html.json"),
];
const KEYS_QUERY_SEEDS: &[&str] = &[
    include_str!("../fuzz/corpus/keys_query/new_user_two_devices.json"),
    include_str!("../fuzz/corpus/keys_query/peer_key_changed.json"),
];
const KEYS_CLAIM_SEEDS: &[&str] = &[include_str!(
    "../fuzz/corpus/keys_claim/forged_signature.json"
)];
const CONFIG_SEEDS: &[&str] = &[
    include_str!("../fuzz/corpus/config/mdm_full.json"),
    include_str!("../fuzz/corpus/config/cli_minimal.json"),
];

/// Seeds holding a whole-object placeholder are not JSON before substitution; these are
/// (`known_peer.json`, `claim.json`), written out with the placeholder as a string and
/// expanded after mutation.
const KNOWN_PEER_QUERY: &str = r#"{"device_keys": {"@alice:secure.tchap.test": {"ALICEDEV": "@PEER_DEVICE_KEYS@"}}, "failures": {}}"#;
const PEER_CLAIM: &str = r#"{"one_time_keys": {"@alice:secure.tchap.test": {"ALICEDEV": {"signed_curve25519:AAAAHQ": "@PEER_ONE_TIME_KEY@"}}}, "failures": {}}"#;

fn parse_seed(seed: &str) -> Value {
    serde_json::from_str(seed).unwrap_or_else(|e| panic!("seed is not JSON: {e}"))
}

/// `value` as bytes, with the whole-object placeholders turned back into placeholders.
fn to_input(value: &Value) -> Vec<u8> {
    value
        .to_string()
        .replace("\"@PEER_DEVICE_KEYS@\"", "$PEER_DEVICE_KEYS")
        .replace("\"@PEER_ONE_TIME_KEY@\"", "$PEER_ONE_TIME_KEY")
        .into_bytes()
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Fails on a panic-free finding (store failure, violated invariant).
fn no_finding<T>(result: &Result<T, FuzzError>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        prop_assert!(!e.is_finding(), "finding: {}", e);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Any JSON value, small: strings include control, non-ASCII and astral characters.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        "[\u{0}-\u{1f}\"\\\\/\u{7f}\u{2028}é日😀a-z]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON value that has a canonical encoding: integers in range only, no floats.
fn arb_canonical_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        "[\u{0}-\u{1f}\"\\\\/\u{7f}\u{2028}\u{FF61}é日😀a-zA-Z]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z\u{0}-\u{1f}\u{FF61}😀é]{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value to put where a realistic one was.
fn arb_replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1e308)),
        Just(json!(-0.0)),
        Just(json!(0.5)),
        Just(json!(MAX_SAFE_INTEGER + 1)),
        Just(json!("")),
        Just(json!([])),
        Just(json!({})),
        Just(json!("$OLM_BODY")),
        Just(json!("$MEGOLM_CIPHERTEXT")),
        Just(json!("m.room.encrypted")),
        Just(json!("@alice:secure.tchap.test")),
        "\\PC{0,16}".prop_map(Value::String),
        (1usize..20_000).prop_map(|n| Value::String("é".repeat(n))),
        arb_json(),
    ]
}

/// One structural change at the `at`-th node (pre-order, modulo the node count).
#[derive(Debug, Clone)]
enum Mutation {
    /// Remove the member or element (the root becomes `null`).
    Remove(usize),
    /// Put another value there.
    Replace(usize, Value),
    /// Wrap it in `depth` arrays or objects (past 128 levels serde_json refuses the text).
    Nest(usize, usize, bool),
    /// Append to a string, or turn a non-string into a long one.
    Grow(usize, String),
    /// Duplicate an array element, or copy an object member under a new key.
    Duplicate(usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), arb_replacement()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        (any::<usize>(), 1usize..160, any::<bool>())
            .prop_map(|(at, depth, objects)| Mutation::Nest(at, depth, objects)),
        (any::<usize>(), "\\PC{1,64}").prop_map(|(at, s)| Mutation::Grow(at, s)),
        any::<usize>().prop_map(Mutation::Duplicate),
    ]
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(arb_mutation(), 1..5)
}

/// Pointers (JSON pointer segments) of every node of `value`, pre-order, root first.
fn paths(value: &Value) -> Vec<Vec<String>> {
    fn walk(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(item, path, out);
                    path.pop();
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    path.push(k.clone());
                    walk(v, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        Value::Object(map) => map.get_mut(seg),
        _ => None,
    })
}

fn mutate(mut value: Value, mutations: &[Mutation]) -> Value {
    for m in mutations {
        let all = paths(&value);
        let pick = |at: usize| all[at % all.len()].clone();
        match m {
            Mutation::Remove(at) => {
                let path = pick(*at);
                match path.split_last() {
                    None => value = Value::Null,
                    Some((last, parent)) => match node_mut(&mut value, parent) {
                        Some(Value::Object(map)) => {
                            map.remove(last);
                        }
                        Some(Value::Array(items)) => {
                            if let Ok(i) = last.parse::<usize>() {
                                items.remove(i);
                            }
                        }
                        _ => {}
                    },
                }
            }
            Mutation::Replace(at, new) => {
                if let Some(node) = node_mut(&mut value, &pick(*at)) {
                    *node = new.clone();
                }
            }
            Mutation::Nest(at, depth, objects) => {
                if let Some(node) = node_mut(&mut value, &pick(*at)) {
                    let mut nested = node.take();
                    for _ in 0..*depth {
                        nested = if *objects {
                            json!({ "a": nested })
                        } else {
                            json!([nested])
                        };
                    }
                    *node = nested;
                }
            }
            Mutation::Grow(at, suffix) => {
                if let Some(node) = node_mut(&mut value, &pick(*at)) {
                    match node {
                        Value::String(s) => s.push_str(suffix),
                        other => *other = Value::String(suffix.repeat(64)),
                    }
                }
            }
            Mutation::Duplicate(at) => {
                let path = pick(*at);
                if let Some((last, parent)) = path.split_last()
                    && let Some(parent) = node_mut(&mut value, parent)
                {
                    match parent {
                        Value::Array(items) => {
                            if let Some(item) = last
                                .parse::<usize>()
                                .ok()
                                .and_then(|i| items.get(i))
                                .cloned()
                            {
                                items.push(item);
                            }
                        }
                        Value::Object(map) => {
                            if let Some(member) = map.get(last).cloned() {
                                map.insert(format!("{last}_"), member);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    value
}

/// JSON text of `value` with object members written in reverse key order and spaces added: a
/// different text for the same value.
fn reversed_text(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[ {} ]",
            items
                .iter()
                .map(reversed_text)
                .collect::<Vec<_>>()
                .join(" , ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .rev()
                .map(|(k, v)| format!("{} : {}", Value::String(k.clone()), reversed_text(v)))
                .collect::<Vec<_>>()
                .join(" , ")
        ),
        scalar => scalar.to_string(),
    }
}

fn pick(seeds: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::sample::select(seeds).prop_map(parse_seed)
}

// ---------------------------------------------------------------------------------------------
// The fixture reaches the deep paths (else the properties below would test only the surface)

#[test]
fn seeds_reach_the_checks_after_decryption_and_signature() {
    let summary = fuzz_api::olm_plaintext(OLM_PLAINTEXT_SEEDS[0].as_bytes()).unwrap();
    assert_eq!(summary.room_keys, 1, "{summary:?}");
    assert_eq!(summary.security_events, 0, "{summary:?}");
    // The event that waited for this key is decrypted in the same sync.
    assert_eq!(summary.messages.len(), 1, "{summary:?}");
    assert_eq!(
        summary.messages[0].body.as_deref(),
        Some("arrivé avant sa clé")
    );

    let summary = fuzz_api::to_device(TO_DEVICE_SEEDS[0].as_bytes()).unwrap();
    assert_eq!((summary.room_keys, summary.security_events), (1, 0));
    let summary = fuzz_api::to_device(TO_DEVICE_SEEDS[1].as_bytes()).unwrap();
    assert_eq!((summary.room_keys, summary.security_events), (0, 1));

    let summary = fuzz_api::megolm_plaintext(MEGOLM_PLAINTEXT_SEEDS[0].as_bytes()).unwrap();
    assert_eq!(summary.messages.len(), 1, "{summary:?}");
    assert_eq!(summary.messages[0].trust.as_deref(), Some("tofu"));
    let summary = fuzz_api::room_event(ROOM_EVENT_SEEDS[5].as_bytes()).unwrap();
    assert_eq!(summary.messages[0].body.as_deref(), Some("Réunion à 15 h."));
    let summary = fuzz_api::sync_response(SYNC_SEEDS[0].as_bytes()).unwrap();
    assert_eq!((summary.rooms, summary.room_keys), (2, 1), "{summary:?}");
    assert_eq!(summary.malformed_events, 0, "{summary:?}");

    let outcome = fuzz_api::keys_query(&to_input(&parse_seed(KNOWN_PEER_QUERY))).unwrap();
    assert_eq!(outcome.security_events, 0);
    assert_eq!(outcome.devices.len(), 1);
    let outcome = fuzz_api::keys_query(KEYS_QUERY_SEEDS[0].as_bytes()).unwrap();
    assert_eq!(outcome.devices.len(), 3, "two new devices of a new user");
    let outcome = fuzz_api::keys_query(KEYS_QUERY_SEEDS[1].as_bytes()).unwrap();
    assert_eq!(outcome.devices[0].state, DeviceState::Blocked);

    assert!(fuzz_api::keys_claim(&to_input(&parse_seed(PEER_CLAIM))).unwrap());
    assert!(matches!(
        fuzz_api::keys_claim(KEYS_CLAIM_SEEDS[0].as_bytes()),
        Err(FuzzError::Crypto(_))
    ));
    for seed in CONFIG_SEEDS {
        fuzz_api::config(seed.as_bytes()).unwrap();
    }
}

/// Regression: an event id first seen as a pending (undecryptable) event of one sender, then
/// reused by a decryptable event of another sender or room. The timeline row kept its first
/// sender and room and took the second event's body: a server could show anyone's message
/// under any sender. Now the reuse is refused and journaled.
#[test]
fn a_reused_event_id_cannot_lend_its_sender_or_room_to_another_message() {
    let pending = |sender: &str| {
        json!({"type": "m.room.encrypted", "sender": sender, "event_id": "$reused:secure.tchap.test",
               "origin_server_ts": 1, "content": {"algorithm": "m.megolm.v1.aes-sha2",
               "ciphertext": "$MEGOLM_CIPHERTEXT", "session_id": "not-yet-known",
               "device_id": "CEOPHONE"}})
    };
    let genuine = json!({"type": "m.room.encrypted", "sender": fuzz_api::PEER_USER,
        "event_id": "$reused:secure.tchap.test", "origin_server_ts": 2,
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "$MEGOLM_CIPHERTEXT",
                    "session_id": "$MEGOLM_SESSION_ID", "sender_key": "$PEER_CURVE25519",
                    "device_id": fuzz_api::PEER_DEVICE}});
    let room = |events: Value| json!({"timeline": {"events": events}});
    // Same room, another sender.
    let same_room = json!({"next_batch": "s2", "rooms": {"join": {
        fuzz_api::ROOM: room(json!([pending("@ceo:secure.tchap.test"), genuine.clone()]))}}});
    // Same sender, another room (applied first: rooms are applied in room-id order).
    let other_room = json!({"next_batch": "s2", "rooms": {"join": {
        "!aardvark:secure.tchap.test": room(json!([pending(fuzz_api::PEER_USER)])),
        fuzz_api::ROOM: room(json!([genuine.clone()]))}}});
    for sync in [same_room, other_room] {
        let summary = fuzz_api::sync_response(&to_input(&sync)).unwrap();
        assert!(summary.messages.is_empty(), "{:#?}", summary.messages);
        assert_eq!(summary.security_events, 1, "{summary:?}");
    }
    // The same event id from the same sender in the same room is the late-key path: accepted.
    let alone =
        json!({"next_batch": "s2", "rooms": {"join": {fuzz_api::ROOM: room(json!([genuine]))}}});
    let summary = fuzz_api::sync_response(&to_input(&alone)).unwrap();
    assert_eq!(summary.messages.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Arbitrary bytes and values

/// Every entry point that takes JSON, by name.
type EntryPoint = fn(&[u8]) -> Result<(), FuzzError>;
const JSON_ENTRY_POINTS: &[(&str, EntryPoint)] = &[
    ("sync_response", |d| fuzz_api::sync_response(d).map(drop)),
    ("room_event", |d| fuzz_api::room_event(d).map(drop)),
    ("to_device", |d| fuzz_api::to_device(d).map(drop)),
    ("keys_query", |d| fuzz_api::keys_query(d).map(drop)),
    ("keys_claim", |d| fuzz_api::keys_claim(d).map(drop)),
    ("canonical_json", |d| fuzz_api::canonical_json(d).map(drop)),
    ("api_response", |d| fuzz_api::api_response(d).map(drop)),
    ("config", |d| fuzz_api::config(d).map(drop)),
];

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic_and_non_json_is_a_typed_refusal(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let is_json = serde_json::from_slice::<Value>(&bytes).is_ok();
        for (name, entry) in JSON_ENTRY_POINTS {
            let result = entry(&bytes);
            no_finding(&result)?;
            if !is_json {
                let typed = matches!(
                    &result,
                    Err(FuzzError::Rejected { .. })
                        | Err(FuzzError::Config(crate::config::ConfigError::NotJson { .. }))
                );
                prop_assert!(typed, "{}: {:?}", name, result);
            }
        }
        // The text entry points take any bytes.
        no_finding(&fuzz_api::trust_anchors_pem(&bytes))?;
        no_finding(&fuzz_api::spki_pins(&bytes))?;
    }

    #[test]
    fn arbitrary_json_never_panics_in_any_parser(value in arb_json()) {
        let bytes = value.to_string().into_bytes();
        for (_, entry) in JSON_ENTRY_POINTS {
            no_finding(&entry(&bytes))?;
        }
    }
}

proptest! {
    // Each case encrypts and decrypts (Olm, then Megolm with its signature): slow in debug.
    #![proptest_config(cases(32))]

    #[test]
    fn arbitrary_bytes_as_decrypted_payloads_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        no_finding(&fuzz_api::olm_plaintext(&bytes))?;
        no_finding(&fuzz_api::megolm_plaintext(&bytes))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Mutated realistic inputs

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn mutated_sync_responses_never_panic_nor_abort(
        seed in pick(SYNC_SEEDS), mutations in arb_mutations(),
    ) {
        let input = to_input(&mutate(seed, &mutations));
        no_finding(&fuzz_api::sync_response(&input))?;
    }

    #[test]
    fn mutated_room_events_never_panic_nor_abort(
        seed in pick(ROOM_EVENT_SEEDS), mutations in arb_mutations(),
    ) {
        let input = to_input(&mutate(seed, &mutations));
        no_finding(&fuzz_api::room_event(&input))?;
    }

    #[test]
    fn mutated_to_device_events_and_olm_payloads_never_panic_nor_abort(
        envelope in pick(TO_DEVICE_SEEDS),
        payload in pick(OLM_PLAINTEXT_SEEDS),
        mutations in arb_mutations(),
    ) {
        no_finding(&fuzz_api::to_device(&to_input(&mutate(envelope, &mutations))))?;
        no_finding(&fuzz_api::olm_plaintext(&to_input(&mutate(payload, &mutations))))?;
    }

    #[test]
    fn mutated_megolm_payloads_never_panic_nor_abort(
        seed in pick(MEGOLM_PLAINTEXT_SEEDS), mutations in arb_mutations(),
    ) {
        no_finding(&fuzz_api::megolm_plaintext(&to_input(&mutate(seed, &mutations))))?;
    }

    #[test]
    fn mutated_key_query_and_claim_answers_never_panic_nor_abort(
        query in prop_oneof![pick(KEYS_QUERY_SEEDS), Just(parse_seed(KNOWN_PEER_QUERY))],
        claim in prop_oneof![pick(KEYS_CLAIM_SEEDS), Just(parse_seed(PEER_CLAIM))],
        mutations in arb_mutations(),
    ) {
        no_finding(&fuzz_api::keys_query(&to_input(&mutate(query, &mutations))))?;
        no_finding(&fuzz_api::keys_claim(&to_input(&mutate(claim, &mutations))))?;
    }

    #[test]
    fn mutated_configs_never_panic_and_accepted_ones_keep_their_guarantees(
        seed in pick(CONFIG_SEEDS), mutations in arb_mutations(),
    ) {
        // `fuzz_api::config` checks the guarantees of every accepted document.
        let input = to_input(&mutate(seed, &mutations));
        no_finding(&fuzz_api::config(&input))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical JSON

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn canonical_json_is_idempotent_sorted_and_round_trips(value in arb_canonical_json()) {
        let canonical = to_canonical_json(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Round trip: the text parses back to the same value.
        let back: Value = serde_json::from_str(&canonical)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &value);
        // Idempotent, sorted, same as an independent encoder (serde_json's sorted map).
        prop_assert_eq!(fuzz_api::canonical_json(canonical.as_bytes()).ok(), Some(canonical.clone()));
        // Stable whatever the text of the value: reversed key order, whitespace, pretty form.
        for text in [reversed_text(&value), serde_json::to_string_pretty(&value).unwrap_or_default()] {
            prop_assert_eq!(fuzz_api::canonical_json(text.as_bytes()).ok(), Some(canonical.clone()));
        }
        if let Value::Object(map) = &value {
            let mut stripped = map.clone();
            stripped.remove("signatures");
            stripped.remove("unsigned");
            prop_assert_eq!(
                canonical_json_for_signing(&value),
                to_canonical_json(&Value::Object(stripped))
            );
        }
    }

    #[test]
    fn canonical_json_of_arbitrary_json_never_panics_and_errors_are_typed(value in arb_json()) {
        match fuzz_api::canonical_json(value.to_string().as_bytes()) {
            Ok(_) => {}
            Err(FuzzError::Canonical(
                CanonicalJsonError::NonIntegerNumber | CanonicalJsonError::IntegerOutOfRange,
            )) => {}
            Err(other) => prop_assert!(false, "{}", other),
        }
    }

    #[test]
    fn canonical_json_refuses_fractions_and_out_of_range_integers(
        fraction in any::<f64>().prop_filter("fractional", |f| f.is_finite() && f.fract() != 0.0),
        beyond in (MAX_SAFE_INTEGER + 1)..=i64::MAX,
        negative in any::<bool>(),
    ) {
        prop_assert_eq!(
            to_canonical_json(&json!({ "a": [fraction] })),
            Err(CanonicalJsonError::NonIntegerNumber)
        );
        let beyond = if negative { -beyond } else { beyond };
        prop_assert_eq!(
            to_canonical_json(&json!({ "a": beyond })),
            Err(CanonicalJsonError::IntegerOutOfRange)
        );
    }

    #[test]
    fn canonical_json_depth_is_bounded_with_a_typed_error(depth in 0usize..(MAX_DEPTH + 64)) {
        let mut value = json!("leaf");
        for level in 0..depth {
            value = if level % 2 == 0 { json!([value]) } else { json!({ "k": value }) };
        }
        let expected = if depth <= MAX_DEPTH { Ok(()) } else { Err(CanonicalJsonError::TooDeep) };
        prop_assert_eq!(to_canonical_json(&value).map(drop), expected);
        // Parsed from text, serde_json's own limit (128) refuses it first, with a typed error.
        let text = to_canonical_json(&value).unwrap_or_default();
        if depth > 128 && !text.is_empty() {
            let refused = matches!(
                fuzz_api::canonical_json(text.as_bytes()),
                Err(FuzzError::Rejected { .. })
            );
            prop_assert!(refused);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Device keys: signature over canonical JSON, user and device ids

/// A change to one signed part of a device-keys object.
#[derive(Debug, Clone)]
enum Tamper {
    /// Append to a string.
    Append(usize, String),
    /// Replace by a value of another type.
    Retype(usize, Value),
    /// Remove a member or an element.
    Remove(usize),
    /// Add a member to an object.
    AddMember(usize, String),
}

fn arb_tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), "\\PC{1,8}").prop_map(|(at, s)| Tamper::Append(at, s)),
        (
            any::<usize>(),
            prop_oneof![
                Just(json!(null)),
                Just(json!(1)),
                Just(json!(true)),
                Just(json!([]))
            ]
        )
            .prop_map(|(at, v)| Tamper::Retype(at, v)),
        any::<usize>().prop_map(Tamper::Remove),
        (any::<usize>(), "[a-z]{1,8}").prop_map(|(at, k)| Tamper::AddMember(at, k)),
    ]
}

const DAVE: &str = "@dave:secure.tchap.test";
const DAVE_DEVICE: &str = "DAVEPHONE";

thread_local! {
    static DAVE_KEYS: Value = OlmAccount::new(DAVE, DAVE_DEVICE)
        .device_keys()
        .unwrap_or_default();
}

fn dave_keys() -> Value {
    DAVE_KEYS.with(Clone::clone)
}

/// Applies `tamper` to a signed node (anything but the top-level `signatures` and
/// `unsigned`), so that the canonical form always changes.
fn tamper(keys: &mut Value, tamper: &Tamper) {
    let signed: Vec<Vec<String>> = paths(keys)
        .into_iter()
        .filter(|p| {
            p.first()
                .is_none_or(|top| top != "signatures" && top != "unsigned")
        })
        .collect();
    let pick = |at: &usize| signed[at % signed.len()].clone();
    match tamper {
        Tamper::Append(at, suffix) => {
            // The first string at or after the picked node.
            let strings: Vec<&Vec<String>> = signed
                .iter()
                .filter(|p| keys.pointer(&pointer(p)).is_some_and(Value::is_string))
                .collect();
            let path = strings[at % strings.len()].clone();
            if let Some(Value::String(s)) = node_mut(keys, &path) {
                s.push_str(suffix);
            }
        }
        Tamper::Retype(at, new) => {
            // Not the root: a non-object is refused before any signature is looked at.
            let path = pick(at);
            let path = if path.is_empty() {
                vec!["user_id".to_owned()]
            } else {
                path
            };
            if let Some(node) = node_mut(keys, &path) {
                let new = if std::mem::discriminant(node) == std::mem::discriminant(new) {
                    json!("retyped")
                } else {
                    new.clone()
                };
                *node = new;
            }
        }
        Tamper::Remove(at) => {
            let path = pick(at);
            match path.split_last() {
                None => *keys = json!({ "signatures": keys["signatures"].clone() }),
                Some((last, parent)) => match node_mut(keys, parent) {
                    Some(Value::Object(map)) => {
                        map.remove(last);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = last.parse::<usize>() {
                            items.remove(i);
                        }
                    }
                    _ => {}
                },
            }
        }
        Tamper::AddMember(at, key) => {
            let objects: Vec<Vec<String>> = signed
                .into_iter()
                .filter(|p| keys.pointer(&pointer(p)).is_some_and(Value::is_object))
                .collect();
            let path = objects[at % objects.len()].clone();
            if let Some(Value::Object(map)) = node_mut(keys, &path) {
                // No signed object has a member whose name starts with `x`.
                map.insert(format!("x{key}"), json!("added"));
            }
        }
    }
}

fn pointer(path: &[String]) -> String {
    path.iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn answer_value(user: &str, device: &str, keys: Value) -> Value {
    let mut devices = Map::new();
    devices.insert(device.to_owned(), keys);
    let mut users = Map::new();
    users.insert(user.to_owned(), Value::Object(devices));
    json!({ "device_keys": users })
}

fn answer_for(user: &str, device: &str, keys: Value) -> Vec<u8> {
    answer_value(user, device, keys).to_string().into_bytes()
}

fn dave_ed25519(keys: &Value) -> vodozemac::Ed25519PublicKey {
    let ed = keys["keys"][format!("ed25519:{DAVE_DEVICE}")]
        .as_str()
        .unwrap_or_default();
    vodozemac::Ed25519PublicKey::from_base64(ed).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn an_untampered_device_key_verifies_and_is_pinned() {
    let keys = dave_keys();
    let key_id = format!("ed25519:{DAVE_DEVICE}");
    verify_json(&keys, DAVE, &key_id, &dave_ed25519(&keys)).unwrap();
    let outcome = fuzz_api::keys_query(&answer_for(DAVE, DAVE_DEVICE, keys)).unwrap();
    assert_eq!(outcome.security_events, 0);
    let pinned: Vec<_> = outcome
        .devices
        .iter()
        .filter(|d| d.user_id == DAVE)
        .collect();
    assert_eq!(pinned.len(), 1);
    assert_eq!(pinned[0].state, DeviceState::Tofu);
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn a_device_key_with_any_modified_signed_field_fails_verification(change in arb_tamper()) {
        let original = dave_keys();
        let mut keys = original.clone();
        tamper(&mut keys, &change);
        prop_assert_ne!(
            canonical_json_for_signing(&keys).ok(),
            canonical_json_for_signing(&original).ok(),
            "the tamper changed nothing signed"
        );
        let key_id = format!("ed25519:{DAVE_DEVICE}");
        let verified = verify_json(&keys, DAVE, &key_id, &dave_ed25519(&original));
        prop_assert!(
            matches!(verified, Err(SigningError::BadSignature | SigningError::Canonical(_))),
            "{:?}", verified
        );
        // Through the `/keys/query` path: refused, reported, nothing pinned.
        let outcome = fuzz_api::keys_query_value(&answer_value(DAVE, DAVE_DEVICE, keys))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(outcome.devices.iter().all(|d| d.user_id != DAVE), "{:?}", outcome);
        prop_assert_eq!(outcome.security_events, 1);
    }

    #[test]
    fn a_device_key_changed_only_in_unsigned_still_verifies(
        name in "\\PC{0,32}", extra in arb_json(),
    ) {
        let mut keys = dave_keys();
        keys["unsigned"] = json!({ "device_display_name": name, "extra": extra });
        let key_id = format!("ed25519:{DAVE_DEVICE}");
        prop_assert_eq!(verify_json(&keys, DAVE, &key_id, &dave_ed25519(&keys)), Ok(()));
    }

    #[test]
    fn a_device_key_listed_under_another_user_or_device_is_refused(
        user in "@[a-z]{1,8}:secure\\.tchap\\.test",
        device in "[A-Z]{1,10}",
        swap_user in any::<bool>(),
    ) {
        let (user, device) = if swap_user {
            (user, DAVE_DEVICE.to_owned())
        } else {
            (DAVE.to_owned(), device)
        };
        prop_assume!(user != DAVE || device != DAVE_DEVICE);
        let outcome = fuzz_api::keys_query(&answer_for(&user, &device, dave_keys()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            outcome.devices.iter().all(|d| d.user_id != user || d.device_id != device),
            "{:?}", outcome
        );
        prop_assert_eq!(outcome.security_events, 1);
    }
}
