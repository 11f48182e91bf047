//! Matrix "Canonical JSON": the one byte string that every implementation derives from a JSON
//! value before signing or hashing it (Matrix specification, appendices, § "Signing JSON" →
//! "Canonical JSON", grammar and examples).
//!
//! The encoding is written here by hand rather than delegated to `serde_json`'s serialiser, so
//! that every rule is visible in this file and none depends on a feature flag elsewhere in the
//! dependency graph (`serde_json`'s `preserve_order` keeps insertion order, not sorted order):
//!
//! - object keys sorted by Unicode code point (Rust compares `str` bytewise, and the byte order
//!   of UTF-8 is the code-point order; it is *not* the UTF-16 order some JSON libraries use);
//! - no insignificant whitespace;
//! - UTF-8 output, non-ASCII characters written raw, never `\u`-escaped;
//! - the shortest string escapes: `\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`, and every other
//!   character below U+0020 as `\u00XX` in lowercase hexadecimal; nothing else is escaped
//!   (`/`, U+007F, U+2028 are written raw);
//! - numbers are integers in `[-(2^53)+1, (2^53)-1]`, written without sign for zero, without
//!   exponent or decimal point.
//!
//! Numbers: a [`Value`] no longer knows how a number was written, only what `serde_json`
//! parsed it into. The specification's own example maps `{"a": -0, "b": 1e10}` to
//! `{"a":0,"b":10000000000}`; `serde_json` parses both `-0` and `1e10` as floating point. So a
//! number whose *value* is an integer in range is accepted whatever its spelling (`1e10`, `1.0`,
//! `-0`) and written canonically, while a number with a fractional part (`1.5`) is refused
//! with [`CanonicalJsonError::NonIntegerNumber`] and one out of range (`2^53`, `1e300`) with
//! [`CanonicalJsonError::IntegerOutOfRange`]. Signing is stricter still (see
//! [`crate::crypto::signing::sign_json`]): it refuses any number stored as a float, since
//! `serde_json` would send it as `1e10`/`-0.0`, which other implementations reject.

use serde_json::{Map, Number, Value};

/// Largest integer canonical JSON admits: 2^53 - 1 (the smallest is its negation).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Deepest nesting of arrays and objects accepted. `serde_json` itself refuses to parse more
/// than 128 levels, so this bound only stops a value built in memory from exhausting the stack.
pub const MAX_DEPTH: usize = 256;

/// The top-level keys the signature does not cover (spec § "Signing Details").
const UNSIGNED_TOP_LEVEL_KEYS: [&str; 2] = ["signatures", "unsigned"];

/// Why a JSON value has no canonical encoding. No variant carries any part of the value.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalJsonError {
    /// A number with a fractional part, such as `1.5`: canonical JSON has integers only.
    #[error("canonical JSON admits integers only, not floating-point numbers")]
    NonIntegerNumber,
    /// An integer outside `[-(2^53)+1, (2^53)-1]`.
    #[error("canonical JSON admits integers in [-(2^53)+1, (2^53)-1] only")]
    IntegerOutOfRange,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Only a JSON object can be prepared for signing (it carries `signatures`).
    #[error("only a JSON object can be signed")]
    NotAnObject,
}

/// How numbers stored as floating point by `serde_json` are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloatPolicy {
    /// A float whose value is an integer in range is written as that integer (spec example
    /// `{"a": -0, "b": 1e10}` → `{"a":0,"b":10000000000}`).
    IntegralAccepted,
    /// Any number stored as a float is refused, whatever its value (used when signing).
    Refused,
}

/// Encodes `value` as Matrix canonical JSON.
///
/// # Errors
///
/// [`CanonicalJsonError::NonIntegerNumber`] or [`CanonicalJsonError::IntegerOutOfRange`] for a
/// number canonical JSON cannot represent; [`CanonicalJsonError::TooDeep`] past [`MAX_DEPTH`].
pub fn to_canonical_json(value: &Value) -> Result<String, CanonicalJsonError> {
    let mut out = String::new();
    write_value(&mut out, value, 0, FloatPolicy::IntegralAccepted)?;
    Ok(out)
}

/// Encodes the JSON object `value` as canonical JSON without its top-level `signatures` and
/// `unsigned` members: the bytes a Matrix signature covers (spec § "Signing Details"). Members
/// of those names nested deeper are kept.
///
/// # Errors
///
/// [`CanonicalJsonError::NotAnObject`] if `value` is not an object, otherwise as
/// [`to_canonical_json`].
pub fn canonical_json_for_signing(value: &Value) -> Result<String, CanonicalJsonError> {
    canonical_json_for_signing_with(value, FloatPolicy::IntegralAccepted)
}

/// [`canonical_json_for_signing`] with an explicit [`FloatPolicy`].
pub(crate) fn canonical_json_for_signing_with(
    value: &Value,
    floats: FloatPolicy,
) -> Result<String, CanonicalJsonError> {
    let Value::Object(map) = value else {
        return Err(CanonicalJsonError::NotAnObject);
    };
    let mut out = String::new();
    write_object(
        &mut out,
        map,
        |key| !UNSIGNED_TOP_LEVEL_KEYS.contains(&key),
        1,
        floats,
    )?;
    Ok(out)
}

/// Appends the canonical encoding of `value`, found at nesting `depth` (0 for the root).
fn write_value(
    out: &mut String,
    value: &Value,
    depth: usize,
    floats: FloatPolicy,
) -> Result<(), CanonicalJsonError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            let integer = canonical_integer(number, floats)?;
            out.push_str(&integer.to_string());
        }
        Value::String(string) => write_string(out, string),
        Value::Array(items) => {
            let depth = enter(depth)?;
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(out, item, depth, floats)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, |_| true, enter(depth)?, floats)?,
    }
    Ok(())
}

/// One level deeper, or [`CanonicalJsonError::TooDeep`].
fn enter(depth: usize) -> Result<usize, CanonicalJsonError> {
    let depth = depth.saturating_add(1);
    if depth > MAX_DEPTH {
        return Err(CanonicalJsonError::TooDeep);
    }
    Ok(depth)
}

/// Appends `map` (already entered at `depth`) with the members whose key passes `keep`, in
/// code-point order of their keys. The order is computed here: the [`Map`]'s own iteration
/// order is never relied upon.
fn write_object(
    out: &mut String,
    map: &Map<String, Value>,
    keep: impl Fn(&str) -> bool,
    depth: usize,
    floats: FloatPolicy,
) -> Result<(), CanonicalJsonError> {
    let mut members: Vec<(&str, &Value)> = map
        .iter()
        .filter(|(key, _)| keep(key))
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    // Keys of a `Map` are unique, so an unstable sort is deterministic. `str`'s `Ord` compares
    // UTF-8 bytes, which orders by Unicode code point.
    members.sort_unstable_by_key(|(key, _)| *key);
    out.push('{');
    for (index, (key, value)) in members.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, value, depth, floats)?;
    }
    out.push('}');
    Ok(())
}

/// The integer a JSON number stands for, if canonical JSON can represent it.
fn canonical_integer(number: &Number, floats: FloatPolicy) -> Result<i64, CanonicalJsonError> {
    let integer = if let Some(integer) = number.as_i64() {
        integer
    } else if number.as_u64().is_some() {
        // Above i64::MAX, so far above 2^53 - 1.
        return Err(CanonicalJsonError::IntegerOutOfRange);
    } else if let Some(float) = number.as_f64() {
        if floats == FloatPolicy::Refused {
            return Err(CanonicalJsonError::NonIntegerNumber);
        }
        integral_float(float)?
    } else {
        return Err(CanonicalJsonError::NonIntegerNumber);
    };
    if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&integer) {
        return Err(CanonicalJsonError::IntegerOutOfRange);
    }
    Ok(integer)
}

/// The integer value of a float such as `1e10` or `-0.0`, if it has one in range.
fn integral_float(float: f64) -> Result<i64, CanonicalJsonError> {
    if !float.is_finite() || float.fract() != 0.0 {
        return Err(CanonicalJsonError::NonIntegerNumber);
    }
    // 2^53 - 1 is exactly representable as an f64.
    #[allow(clippy::cast_precision_loss)]
    let bound = MAX_SAFE_INTEGER as f64;
    if float.abs() > bound {
        return Err(CanonicalJsonError::IntegerOutOfRange);
    }
    // Exact: `float` is an integer of magnitude below 2^53. `-0.0` becomes `0`.
    #[allow(clippy::cast_possible_truncation)]
    let integer = float as i64;
    Ok(integer)
}

/// Appends `string` quoted, with exactly the escapes of the specification's grammar.
fn write_string(out: &mut String, string: &str) {
    out.push('"');
    for character in string.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0C}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            control if u32::from(control) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(control)));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        to_canonical_json(&value).unwrap()
    }

    /// Every example of the Matrix specification, appendices, § "Canonical JSON" →
    /// "Examples" (matrix-org/matrix-spec, `content/appendices.md`, checked at commit
    /// d0ba2aaef801e0134a4e5c6054a2c2f41bb55531, July 2026), inputs and outputs verbatim.
    const SPEC_EXAMPLES: &[(&str, &str)] = &[
        ("{}", "{}"),
        (
            r#"{
    "one": 1,
    "two": "Two"
}"#,
            r#"{"one":1,"two":"Two"}"#,
        ),
        (
            r#"{
    "b": "2",
    "a": "1"
}"#,
            r#"{"a":"1","b":"2"}"#,
        ),
        (r#"{"b":"2","a":"1"}"#, r#"{"a":"1","b":"2"}"#),
        (
            r#"{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}"#,
            r#"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#,
        ),
        (
            r#"{
    "a": "日本語"
}"#,
            r#"{"a":"日本語"}"#,
        ),
        (
            r#"{
    "本": 2,
    "日": 1
}"#,
            r#"{"日":1,"本":2}"#,
        ),
        (
            r#"{
    "a": "\u65E5"
}"#,
            r#"{"a":"日"}"#,
        ),
        (
            r#"{
    "a": null
}"#,
            r#"{"a":null}"#,
        ),
        (
            r#"{
    "a": -0,
    "b": 1e10
}"#,
            r#"{"a":0,"b":10000000000}"#,
        ),
    ];

    #[test]
    fn specification_examples() {
        for (input, expected) in SPEC_EXAMPLES {
            assert_eq!(canonical(input), *expected, "input: {input}");
        }
    }

    /// The grammar's `escaped` rule (same section): `\b \t \n \f \r \" \\` and, for the other
    /// characters below U+0020, `u000X` with X in [0-7, b, e, f] and `u001X` with X in
    /// [0-9, a-f], lowercase. The specification gives no worked example of these, so every
    /// one of the 32 control characters is checked against the rule.
    #[test]
    fn control_characters_use_the_grammar_escapes() {
        for code in 0u32..0x20 {
            let character = char::from_u32(code).unwrap();
            let expected = match code {
                0x08 => "\\b".to_owned(),
                0x09 => "\\t".to_owned(),
                0x0a => "\\n".to_owned(),
                0x0c => "\\f".to_owned(),
                0x0d => "\\r".to_owned(),
                _ => format!("\\u{code:04x}"),
            };
            let out = to_canonical_json(&Value::String(character.to_string())).unwrap();
            assert_eq!(out, format!("\"{expected}\""), "U+{code:04X}");
        }
        // Spot checks written out by hand, e.g. the `u001X` branch with a hex letter.
        assert_eq!(
            to_canonical_json(&json!("\u{1f}\u{0b}\u{00}")).unwrap(),
            r#""\u001f\u000b\u0000""#
        );
        // A round trip through an escaped input gives the same shortest escapes.
        assert_eq!(
            canonical(r#"{"a":"\u001F\u0008\/\u0022\u005C"}"#),
            r#"{"a":"\u001f\b/\"\\"}"#
        );
    }

    #[test]
    fn only_the_required_characters_are_escaped() {
        // Solidus, DEL, the JavaScript line separators, non-ASCII and astral characters raw.
        let text = "/\u{7f}\u{2028}\u{2029}é日😀";
        assert_eq!(
            to_canonical_json(&json!(text)).unwrap(),
            format!("\"{text}\"")
        );
        assert_eq!(to_canonical_json(&json!("\"\\")).unwrap(), r#""\"\\""#);
    }

    #[test]
    fn keys_sort_by_code_point_not_utf16() {
        // U+FF61 < U+1F600 by code point; in UTF-16 the surrogate 0xD83D sorts first.
        let value = json!({"\u{1F600}": 1, "\u{FF61}": 2, "B": 3, "a": 4, "": 5, "aa": 6});
        assert_eq!(
            to_canonical_json(&value).unwrap(),
            "{\"\":5,\"B\":3,\"a\":4,\"aa\":6,\"\u{FF61}\":2,\"\u{1F600}\":1}"
        );
    }

    #[test]
    fn key_order_of_the_input_does_not_matter() {
        let a = canonical(r#"{"z":{"y":1,"x":[{"b":1,"a":2}]},"a":true}"#);
        let b = canonical(r#"{"a":true,"z":{"x":[{"a":2,"b":1}],"y":1}}"#);
        assert_eq!(a, b);
        assert_eq!(a, r#"{"a":true,"z":{"x":[{"a":2,"b":1}],"y":1}}"#);
        // An array's order is significant and kept.
        assert_eq!(canonical("[3,1,2]"), "[3,1,2]");
    }

    #[test]
    fn whitespace_is_removed_and_scalars_are_exact() {
        assert_eq!(
            canonical(" [ true , false , null , \"\" , [ ] , { } ] "),
            r#"[true,false,null,"",[],{}]"#
        );
        assert_eq!(canonical("-42"), "-42");
    }

    #[test]
    fn integer_range_is_enforced() {
        assert_eq!(canonical("9007199254740991"), "9007199254740991");
        assert_eq!(canonical("-9007199254740991"), "-9007199254740991");
        for out_of_range in [
            json!(9_007_199_254_740_992_u64),
            json!(-9_007_199_254_740_992_i64),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e300),
            json!(-9_007_199_254_740_992.0),
        ] {
            assert_eq!(
                to_canonical_json(&json!({ "n": out_of_range })),
                Err(CanonicalJsonError::IntegerOutOfRange),
                "{out_of_range}"
            );
        }
    }

    #[test]
    fn floats_are_refused() {
        for text in [
            "1.5",
            "0.1",
            "-0.5",
            "1e-7",
            "[1, 2.25]",
            r#"{"a":{"b":3.14}}"#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                to_canonical_json(&value),
                Err(CanonicalJsonError::NonIntegerNumber),
                "{text}"
            );
        }
    }

    #[test]
    fn integral_floats_are_written_as_integers() {
        // Beyond the specification's `-0` / `1e10` example: other spellings of integers.
        assert_eq!(
            canonical("[1.0, -0.0, 2E3, 1e15, -7e0]"),
            "[1,0,2000,1000000000000000,-7]"
        );
        assert_eq!(
            to_canonical_json(&json!(9_007_199_254_740_991.0)).unwrap(),
            "9007199254740991"
        );
    }

    #[test]
    fn signing_form_drops_only_top_level_signatures_and_unsigned() {
        let value = json!({
            "b": 1,
            "signatures": {"x": {"ed25519:1": "sig"}},
            "unsigned": {"age": 3},
            "a": {"signatures": 1, "unsigned": 2},
        });
        assert_eq!(
            canonical_json_for_signing(&value).unwrap(),
            r#"{"a":{"signatures":1,"unsigned":2},"b":1}"#
        );
        // Without them, the signing form equals the canonical form.
        let plain = json!({"one": 1, "two": "Two"});
        assert_eq!(
            canonical_json_for_signing(&plain).unwrap(),
            to_canonical_json(&plain).unwrap()
        );
        // Errors inside the excluded members do not matter: they are not signed.
        assert!(canonical_json_for_signing(&json!({"unsigned": {"f": 0.5}})).is_ok());
        assert_eq!(
            canonical_json_for_signing(&json!({"unsigned": {"f": 0.5}})).unwrap(),
            "{}"
        );
    }

    #[test]
    fn signing_form_needs_an_object() {
        for value in [json!([]), json!("s"), json!(1), json!(null)] {
            assert_eq!(
                canonical_json_for_signing(&value),
                Err(CanonicalJsonError::NotAnObject)
            );
        }
    }

    #[test]
    fn float_policy_refused_rejects_integral_floats() {
        let value = json!({"a": 1e10});
        assert_eq!(
            canonical_json_for_signing_with(&value, FloatPolicy::Refused),
            Err(CanonicalJsonError::NonIntegerNumber)
        );
        assert!(canonical_json_for_signing_with(&json!({"a": 10}), FloatPolicy::Refused).is_ok());
        // Under `signatures`/`unsigned`, floats are not signed and so do not matter.
        assert!(
            canonical_json_for_signing_with(&json!({"unsigned": {"a": 1.5}}), FloatPolicy::Refused)
                .is_ok()
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut value = json!(0);
        for _ in 0..MAX_DEPTH {
            value = json!([value]);
        }
        assert!(to_canonical_json(&value).is_ok());
        let too_deep = json!({ "a": value });
        assert_eq!(
            to_canonical_json(&too_deep),
            Err(CanonicalJsonError::TooDeep)
        );
        // The signing form counts the root object as level 1 as well.
        let mut inner = json!(0);
        for _ in 0..MAX_DEPTH - 1 {
            inner = json!([inner]);
        }
        assert!(canonical_json_for_signing(&json!({ "a": inner.clone() })).is_ok());
        assert_eq!(
            canonical_json_for_signing(&json!({ "a": [inner] })),
            Err(CanonicalJsonError::TooDeep)
        );
    }

    #[test]
    fn parsed_input_is_valid_json_and_parses_back_to_the_same_value() {
        let value = json!({"k\u{1}\"": ["\u{7f}\n", -3, {"日": null}], "z": false});
        let out = to_canonical_json(&value).unwrap();
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, value);
        assert_eq!(to_canonical_json(&back).unwrap(), out);
    }
}
