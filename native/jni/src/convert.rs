//! Conversions between Java and Rust values, in one place so that each rule holds everywhere:
//!
//! - A `null` argument is a typed error naming the argument, never a crash.
//! - Secret bytes are read with `GetByteArrayRegion` straight into zeroizing memory, and the
//!   Java array is then overwritten with zeros (`SetByteArrayRegion`): "zeroed on both sides".
//!   `Get<Type>ArrayElements` is banned (clippy.toml): it may hand out a JVM-side copy the
//!   library could not zero. No Java `String` is ever made from a secret.
//! - Tables are `String[][]`, built one row per JNI local frame, so a long table never
//!   overflows the local reference table (ART aborts the process on overflow).

use jni::Env;
use jni::objects::{JByteArray, JObjectArray, JString};
use tchap_secure_hsm::SecretBytes;
use zeroize::Zeroizing;

use crate::error::BridgeError;

/// Local references one table row needs (its array, up to 7 strings), with margin.
const ROW_FRAME_CAPACITY: usize = 16;

/// A `String` argument that must not be null.
pub(crate) fn string_arg(
    env: &Env<'_>,
    value: &JString<'_>,
    name: &'static str,
) -> Result<String, BridgeError> {
    if value.is_null() {
        return Err(BridgeError::NullArgument(name));
    }
    Ok(value.try_to_string(env)?)
}

/// A `String` argument that may be null.
pub(crate) fn optional_string_arg(
    env: &Env<'_>,
    value: &JString<'_>,
) -> Result<Option<String>, BridgeError> {
    if value.is_null() {
        return Ok(None);
    }
    Ok(Some(value.try_to_string(env)?))
}

/// A `String[]` argument that must not be null, nor hold a null element.
pub(crate) fn string_array_arg(
    env: &mut Env<'_>,
    value: &JObjectArray<'_, JString<'_>>,
    name: &'static str,
) -> Result<Vec<String>, BridgeError> {
    if value.is_null() {
        return Err(BridgeError::NullArgument(name));
    }
    let len = value.len(env)?;
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let element = env.with_local_frame(2, |env| -> Result<String, BridgeError> {
            let s = value.get_element(env, i)?;
            string_arg(env, &s, name)
        })?;
        out.push(element);
    }
    Ok(out)
}

/// A non-secret `byte[]` argument (the configuration document, a scanned QR code).
pub(crate) fn public_bytes(
    env: &Env<'_>,
    value: &JByteArray<'_>,
    name: &'static str,
) -> Result<Vec<u8>, BridgeError> {
    if value.is_null() {
        return Err(BridgeError::NullArgument(name));
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "the one use: public data (the configuration document, a scanned QR code)"
    )]
    Ok(env.convert_byte_array(value)?)
}

/// Reads a secret `byte[]` into zeroizing memory and overwrites the Java array with zeros — also
/// when the read fails.
pub(crate) fn take_secret(
    env: &Env<'_>,
    value: &JByteArray<'_>,
    name: &'static str,
) -> Result<SecretBytes, BridgeError> {
    if value.is_null() {
        return Err(BridgeError::NullArgument(name));
    }
    let len = value.len(env)?;
    let mut buf = Zeroizing::new(vec![0i8; len]);
    let read = value.get_region(env, 0, &mut buf);
    let wiped = zero_java_array(env, value, len);
    read?;
    wiped?;
    // `collect` from an exact-size iterator allocates once: no reallocation leaves a copy.
    Ok(SecretBytes::new(
        buf.iter().map(|b| b.cast_unsigned()).collect(),
    ))
}

/// Overwrites the first `len` bytes of a Java `byte[]` with zeros.
pub(crate) fn zero_java_array(
    env: &Env<'_>,
    array: &JByteArray<'_>,
    len: usize,
) -> Result<(), BridgeError> {
    Ok(array.set_region(env, 0, &vec![0i8; len])?)
}

/// A Java `String` (non-secret text only).
pub(crate) fn java_string<'local>(
    env: &mut Env<'local>,
    value: &str,
) -> Result<JString<'local>, BridgeError> {
    Ok(env.new_string(value)?)
}

/// A Java `String`, or `null` for `None`.
pub(crate) fn optional_java_string<'local>(
    env: &mut Env<'local>,
    value: Option<&str>,
) -> Result<JString<'local>, BridgeError> {
    match value {
        Some(s) => java_string(env, s),
        None => Ok(JString::default()),
    }
}

/// A new Java `byte[]` holding `bytes` (non-secret data only: the JVM's copy cannot be wiped).
pub(crate) fn public_byte_array<'local>(
    env: &mut Env<'local>,
    bytes: &[u8],
) -> Result<JByteArray<'local>, BridgeError> {
    Ok(env.byte_array_from_slice(bytes)?)
}

/// A `String[]` of non-null strings.
pub(crate) fn string_array<'local>(
    env: &mut Env<'local>,
    values: &[&str],
) -> Result<JObjectArray<'local, JString<'local>>, BridgeError> {
    let row: Vec<Option<&str>> = values.iter().copied().map(Some).collect();
    row_array(env, &row)
}

/// A `String[]` row; `None` cells become `null`.
pub(crate) fn row<'local, S: AsRef<str>>(
    env: &mut Env<'local>,
    cells: &[Option<S>],
) -> Result<JObjectArray<'local, JString<'local>>, BridgeError> {
    row_array(env, cells)
}

fn row_array<'local, S: AsRef<str>>(
    env: &mut Env<'local>,
    row: &[Option<S>],
) -> Result<JObjectArray<'local, JString<'local>>, BridgeError> {
    let array = JObjectArray::<JString>::new(env, row.len(), JString::null())?;
    for (i, cell) in row.iter().enumerate() {
        let cell = optional_java_string(env, cell.as_ref().map(AsRef::as_ref))?;
        array.set_element(env, i, &cell)?;
        env.delete_local_ref(cell);
    }
    Ok(array)
}

/// A `String[][]` table; `None` cells become `null`.
pub(crate) fn table<'local, S: AsRef<str>>(
    env: &mut Env<'local>,
    rows: &[Vec<Option<S>>],
) -> Result<JObjectArray<'local, JObjectArray<'local, JString<'local>>>, BridgeError> {
    let table = JObjectArray::<JObjectArray<JString>>::new(
        env,
        rows.len(),
        JObjectArray::<JString>::null(),
    )?;
    for (i, row) in rows.iter().enumerate() {
        env.with_local_frame(ROW_FRAME_CAPACITY, |env| -> Result<(), BridgeError> {
            let row = row_array(env, row)?;
            table.set_element(env, i, &row)?;
            Ok(())
        })?;
    }
    Ok(table)
}

/// `"true"`/`"false"`, for boolean table cells.
pub(crate) fn bool_cell(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}
