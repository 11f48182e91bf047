//! `JavaKeyBinder`: the vault's [`KeyVault`] backend over the Java `KeyBinder` (Android
//! Keystore on the phone, SunPKCS11 in the host tests).
//!
//! Each operation attaches the current thread for its own scope (a no-op on the Java thread
//! that is normally calling: `clientOpen` unwraps the root secret, `wipe` destroys the KEK)
//! and calls the Java method with `byte[]` arguments through the checked `Env::call_method`.
//!
//! Secrets: the root secret given to `wrap` is copied into a Java `byte[]` only for the call
//! and zeroed right after it; the plaintext `unwrap` returns is read into zeroizing memory
//! ([`SecretBytes`]) and the Java array zeroed. What the Java implementation does with its own
//! copies (the `Cipher` buffers) is its side of the contract.
//!
//! A thrown `KeyBinderException` is cleared and mapped by `reasonName()`:
//! `KEY_EXISTS` → [`VaultError::KekExists`], `KEY_NOT_FOUND` → [`VaultError::KekNotFound`],
//! `UNWRAP_FAILED` → [`VaultError::Unwrap`], anything else (`HARDWARE`, another exception
//! class, a JNI failure) → [`VaultError::Pkcs11`] with op `"key binder"` and a detail made of
//! the reason name or the exception's class name — never its message, which this library does
//! not control.

use jni::objects::{Global, JByteArray, JObject, JString, JThrowable, JValue, JValueOwned};
use jni::signature::MethodSignature;
use jni::strings::JNIStr;
use jni::{Env, JavaVM, jni_sig, jni_str};
use tchap_secure_hsm::{KekId, KeyVault, SecretBytes, VaultError};

use crate::classes;
use crate::convert;
use crate::error::BridgeError;

const OP: &str = "key binder";

/// The Java `KeyBinder`, usable from any thread.
#[derive(Debug)]
pub(crate) struct JavaKeyBinder {
    vm: JavaVM,
    binder: Global<JObject<'static>>,
    /// `describe()`, read once when the client is opened.
    description: String,
}

/// A binder call's failure before it is reported as a [`VaultError`].
enum CallError {
    Vault(VaultError),
    Jni(jni::errors::Error),
}

impl From<jni::errors::Error> for CallError {
    fn from(e: jni::errors::Error) -> Self {
        Self::Jni(e)
    }
}

impl From<BridgeError> for CallError {
    fn from(e: BridgeError) -> Self {
        match e {
            BridgeError::Jni(e) => Self::Jni(e),
            other => Self::Vault(failure(other.to_string())),
        }
    }
}

fn failure(detail: String) -> VaultError {
    VaultError::Pkcs11 { op: OP, detail }
}

/// Maps `KeyBinderException.reasonName()` (or its absence) to the vault's error.
fn map_reason(reason: Option<&str>) -> VaultError {
    match reason {
        Some("KEY_EXISTS") => VaultError::KekExists,
        Some("KEY_NOT_FOUND") => VaultError::KekNotFound,
        Some("UNWRAP_FAILED") => VaultError::Unwrap,
        Some(other) => failure(other.to_owned()),
        None => failure("unexpected exception".to_owned()),
    }
}

fn string_result(env: &mut Env<'_>, value: JValueOwned<'_>) -> Option<String> {
    let object = value.l().ok()?;
    let string = env.cast_local::<JString>(object).ok()?;
    convert::optional_string_arg(env, &string).ok()?
}

/// Calls a `()String` method on `object`; `None` (with any exception cleared) on failure.
fn call_string_getter(env: &mut Env<'_>, object: &JObject<'_>, name: &JNIStr) -> Option<String> {
    match env.call_method(object, name, jni_sig!("()Ljava/lang/String;"), &[]) {
        Ok(value) => string_result(env, value),
        Err(_) => {
            env.exception_clear();
            None
        }
    }
}

/// Takes (clears) the pending exception a binder method threw and maps it.
fn take_thrown(env: &mut Env<'_>) -> VaultError {
    let Some(throwable) = env.exception_occurred() else {
        return failure("JNI reported an exception but none is pending".to_owned());
    };
    env.exception_clear();
    let is_binder_exception = classes::get().is_some_and(|c| {
        env.is_instance_of(&throwable, &c.key_binder_exception)
            .unwrap_or(false)
    });
    if is_binder_exception {
        return map_reason(call_string_getter(env, &throwable, jni_str!("reasonName")).as_deref());
    }
    let class_name = class_name(env, &throwable);
    failure(format!(
        "unexpected {}",
        class_name.as_deref().unwrap_or("exception")
    ))
}

fn class_name(env: &mut Env<'_>, throwable: &JThrowable<'_>) -> Option<String> {
    let class = env.get_object_class(throwable).ok()?;
    call_string_getter(env, &class, jni_str!("getName"))
}

/// Calls a binder method; a thrown exception is cleared and mapped.
fn invoke<'local>(
    env: &mut Env<'local>,
    binder: &JObject<'_>,
    name: &JNIStr,
    sig: &MethodSignature<'_, '_>,
    args: &[JValue<'_>],
) -> Result<JValueOwned<'local>, CallError> {
    match env.call_method(binder, name, sig, args) {
        Ok(value) => Ok(value),
        Err(_) if env.exception_check() => Err(CallError::Vault(take_thrown(env))),
        Err(e) => Err(CallError::Jni(e)),
    }
}

fn byte_array_result<'local>(
    env: &mut Env<'local>,
    value: JValueOwned<'local>,
) -> Result<JByteArray<'local>, CallError> {
    let object = value.l()?;
    if object.is_null() {
        return Err(CallError::Vault(failure("returned null".to_owned())));
    }
    Ok(env.cast_local::<JByteArray>(object)?)
}

impl JavaKeyBinder {
    /// Keeps a global reference to `binder` (a Java `KeyBinder`).
    pub(crate) fn new(env: &mut Env<'_>, binder: &JObject<'_>) -> Result<Self, BridgeError> {
        if binder.is_null() {
            return Err(BridgeError::NullArgument("binder"));
        }
        let vm = env.get_java_vm()?;
        let global = env.new_global_ref(binder)?;
        let description = call_string_getter(env, binder, jni_str!("describe"))
            .unwrap_or_else(|| "java key binder (describe() failed)".to_owned());
        Ok(Self {
            vm,
            binder: global,
            description,
        })
    }

    fn call<T>(
        &self,
        what: &'static str,
        body: impl FnOnce(&mut Env<'_>, &JObject<'static>) -> Result<T, CallError>,
    ) -> Result<T, VaultError> {
        let result = self
            .vm
            .attach_current_thread_for_scope(|env| body(env, &self.binder));
        result.map_err(|e| {
            let error = match e {
                CallError::Vault(v) => v,
                CallError::Jni(j) => failure(format!("JNI: {j}")),
            };
            tracing::warn!(op = what, code = error.code(), "key binder call failed");
            error
        })
    }
}

impl KeyVault for JavaKeyBinder {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn generate_kek(&self, id: &KekId) -> Result<(), VaultError> {
        self.call("generate", |env, binder| {
            let key_id = env.byte_array_from_slice(id.as_bytes())?;
            invoke(
                env,
                binder,
                jni_str!("generate"),
                &jni_sig!("([B)V"),
                &[JValue::Object(&key_id)],
            )?;
            Ok(())
        })
    }

    fn wrap(&self, id: &KekId, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.call("wrap", |env, binder| {
            let key_id = env.byte_array_from_slice(id.as_bytes())?;
            let aad = env.byte_array_from_slice(aad)?;
            let secret = env.byte_array_from_slice(plaintext)?;
            let result = invoke(
                env,
                binder,
                jni_str!("wrap"),
                &jni_sig!("([B[B[B)[B"),
                &[
                    JValue::Object(&key_id),
                    JValue::Object(&aad),
                    JValue::Object(&secret),
                ],
            );
            // Zero our Java copy of the secret whatever the outcome (no exception is pending
            // here: `invoke` cleared it).
            let wiped = convert::zero_java_array(env, &secret, plaintext.len());
            let wrapped = byte_array_result(env, result?)?;
            wiped?;
            Ok(convert::public_bytes(env, &wrapped, "wrap() result")?)
        })
    }

    fn unwrap(&self, id: &KekId, aad: &[u8], wrapped: &[u8]) -> Result<SecretBytes, VaultError> {
        self.call("unwrap", |env, binder| {
            let key_id = env.byte_array_from_slice(id.as_bytes())?;
            let aad = env.byte_array_from_slice(aad)?;
            let blob = env.byte_array_from_slice(wrapped)?;
            let result = invoke(
                env,
                binder,
                jni_str!("unwrap"),
                &jni_sig!("([B[B[B)[B"),
                &[
                    JValue::Object(&key_id),
                    JValue::Object(&aad),
                    JValue::Object(&blob),
                ],
            )?;
            let plaintext = byte_array_result(env, result)?;
            Ok(convert::take_secret(env, &plaintext, "unwrap() result")?)
        })
    }

    fn destroy_kek(&self, id: &KekId) -> Result<(), VaultError> {
        self.call("destroy", |env, binder| {
            let key_id = env.byte_array_from_slice(id.as_bytes())?;
            invoke(
                env,
                binder,
                jni_str!("destroy"),
                &jni_sig!("([B)V"),
                &[JValue::Object(&key_id)],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use tchap_secure_hsm::VaultError;

    use super::map_reason;

    #[test]
    fn reasons_map_to_vault_errors() {
        assert!(matches!(
            map_reason(Some("KEY_EXISTS")),
            VaultError::KekExists
        ));
        assert!(matches!(
            map_reason(Some("KEY_NOT_FOUND")),
            VaultError::KekNotFound
        ));
        assert!(matches!(
            map_reason(Some("UNWRAP_FAILED")),
            VaultError::Unwrap
        ));
        assert!(matches!(
            map_reason(Some("HARDWARE")),
            VaultError::Pkcs11 { op: "key binder", ref detail } if detail == "HARDWARE"
        ));
        assert_eq!(map_reason(None).code(), "pkcs11");
    }
}
