//! The one FFI funnel (STYLE §1, after libsignal's `run_ffi_safe`).
//!
//! Every native method is `run_ffi_safe(&mut env, |env| body(env, …))`. The funnel
//!
//! 1. upgrades the JVM's `EnvUnowned` to an `Env` (jni-rs's `with_env_no_catch`: the panic
//!    boundary is ours, below, so that a panic becomes *our* exception, not jni-rs's);
//! 2. runs the body under `catch_unwind`;
//! 3. turns `Err(BridgeError)` into a thrown `TchapSecureException(code, message)` (with the
//!    message's local id and reason for `send_queued` / `send_failed`) and a panic
//!    into `TchapSecureException("panic", …)`; if the exception cannot be built, throws
//!    `java.lang.AssertionError` instead; if even that fails, returns with no exception (the
//!    JVM then sees the default value) — it never aborts the process;
//! 4. returns `T::default()` (0, `null`, `()`) to the JVM on any failure.
//!
//! The whole of it runs inside an outer `catch_unwind` too, so that nothing — not even a panic
//! in jni-rs's own bookkeeping — can unwind into the JVM (which would abort the process).
//!
//! A Java exception already pending when the body fails with `Jni(JavaException)` is left in
//! place: it is the JVM's own, more precise report (an `OutOfMemoryError`, say). Any other
//! pending exception is cleared and replaced, so that the contract's exception type holds.
//!
//! Panic messages: a panic's payload is passed on only when it is a compile-time string
//! (`panic!("literal")`); a message formatted at run time may contain data and is withheld.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use jni::objects::{JString, JThrowable, JValue};
use jni::strings::JNIString;
use jni::{Env, EnvUnowned, Outcome, jni_str};

use crate::classes;
use crate::error::BridgeError;

/// Runs the body of a native method: see the module documentation.
pub(crate) fn run_ffi_safe<'local, T, F>(unowned: &mut EnvUnowned<'local>, body: F) -> T
where
    T: Default,
    F: FnOnce(&mut Env<'local>) -> Result<T, BridgeError>,
{
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        unowned
            .with_env_no_catch(move |env| -> Result<T, jni::errors::Error> {
                let result = catch_unwind(AssertUnwindSafe(|| body(env)))
                    .unwrap_or_else(|payload| Err(BridgeError::Panic(panic_message(&*payload))));
                match result {
                    Ok(value) => Ok(value),
                    Err(error) => {
                        throw_error(env, error);
                        Ok(T::default())
                    }
                }
            })
            .into_outcome()
    }));
    match outcome {
        Ok(Outcome::Ok(value)) => value,
        // The closure above never returns `Err`, and `with_env_no_catch` never yields `Panic`;
        // an outer panic is jni-rs's bookkeeping failing. Nothing can be thrown safely then.
        Ok(Outcome::Err(_) | Outcome::Panic(_)) | Err(_) => T::default(),
    }
}

/// The message of a caught panic, if it is a compile-time string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &'static str {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .unwrap_or("panic message withheld (formatted at run time, may contain data)")
}

/// Throws `error` as a `TchapSecureException`, falling back to `AssertionError`.
fn throw_error(env: &mut Env<'_>, error: BridgeError) {
    if env.exception_check() {
        if matches!(error, BridgeError::Jni(jni::errors::Error::JavaException)) {
            return;
        }
        env.exception_clear();
    }
    let code = error.code();
    let message = error.to_string();
    tracing::debug!(code, "native call failed");
    let send = error.send_details();
    let thrown = catch_unwind(AssertUnwindSafe(|| {
        throw_tchap_exception(env, code, &message, send)
    }));
    if matches!(thrown, Ok(Ok(()))) {
        return;
    }
    // Building or throwing the exception failed (out of memory, missing class): say so with a
    // class every JVM has.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        env.exception_clear();
        let text = JNIString::from(format!(
            "TchapSecureException({code}) not thrown: {message}"
        ));
        env.throw_new(jni_str!("java/lang/AssertionError"), text)
    }));
}

fn throw_tchap_exception(
    env: &mut Env<'_>,
    code: &str,
    message: &str,
    send: Option<(&str, &str)>,
) -> jni::errors::Result<()> {
    let class =
        classes::get()
            .map(|c| &c.tchap_secure_exception)
            .ok_or(jni::errors::Error::NullPtr(
                "TchapSecureException class not cached",
            ))?;
    let code = env.new_string(code)?;
    let message = env.new_string(message)?;
    let (local_id, reason) = match send {
        Some((local_id, reason)) => (env.new_string(local_id)?, env.new_string(reason)?),
        None => (JString::default(), JString::default()),
    };
    let exception = env.new_object(
        class,
        classes::EXCEPTION_CONSTRUCTOR,
        &[
            JValue::Object(&code),
            JValue::Object(&message),
            JValue::Object(&local_id),
            JValue::Object(&reason),
        ],
    )?;
    let exception = env.cast_local::<JThrowable>(exception)?;
    match env.throw(exception) {
        // `Env::throw` reports a successful throw as "an exception is now pending".
        Ok(()) | Err(jni::errors::Error::JavaException) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn static_panic_messages_pass_formatted_ones_are_withheld() {
        let payload = std::panic::catch_unwind(|| panic!("deliberate")).unwrap_err();
        assert_eq!(panic_message(&*payload), "deliberate");
        let secret = String::from("hunter2");
        let payload = std::panic::catch_unwind(|| panic!("password {secret}")).unwrap_err();
        let message = panic_message(&*payload);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("withheld"));
    }
}
