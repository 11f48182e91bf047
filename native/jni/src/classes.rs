//! `JNI_OnLoad`: the Java classes the library constructs or recognises, resolved once.
//!
//! `FindClass` resolves through the class loader of the *calling Java method*; on a thread the
//! library attached itself (the sync thread, a tokio worker) there is no such method and the
//! system class loader is used, which on Android cannot see application classes. Inside
//! `JNI_OnLoad`, `FindClass` uses the loader of the class that loaded the library — the right
//! one — so every class the bridge needs by name is resolved here and kept as a global
//! reference for the life of the process:
//!
//! - `TchapSecureException`, whose `(String code, String message, String localId, String
//!   reason)` constructor is checked here
//!   too, so a mismatch between this library and the Java sources fails `System.load` at once
//!   instead of at the first error;
//! - `KeyBinderException`, with its `reasonName()` method, to recognise the key binder's
//!   failures.
//!
//! The listener is not in this list: its methods are looked up on the listener object's own
//! class (`GetObjectClass`), which needs no class loader.
//!
//! `JNI_OnLoad` also hardens the process (no core dumps, see `tchap_secure_memory`) and
//! replaces the process's panic hook: the default hook prints the panic message
//! to stderr, and a message formatted at run time may carry data. The replacement logs the
//! location, and the message only when it is a compile-time string.

// `JNI_OnLoad` is an exported symbol and receives a raw `JavaVM` pointer.
#![allow(
    unsafe_code,
    reason = "exported JNI_OnLoad, raw JavaVM pointer from the JVM"
)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use jni::objects::{Global, JClass};
use jni::sys::{JNI_ERR, JNI_VERSION_1_6, jint};
use jni::{Env, JavaVM, jni_sig, jni_str};

/// The classes cached at load time.
#[derive(Debug)]
pub(crate) struct JavaClasses {
    /// `fr.gouv.tchap.secure.TchapSecureException`.
    pub(crate) tchap_secure_exception: Global<JClass<'static>>,
    /// `fr.gouv.tchap.secure.KeyBinderException`.
    pub(crate) key_binder_exception: Global<JClass<'static>>,
}

static CLASSES: OnceLock<JavaClasses> = OnceLock::new();

/// The cached classes, or `None` if `JNI_OnLoad` did not run or failed (then the library was
/// not loaded and no native method can be called, so `None` is a defensive case only).
pub(crate) fn get() -> Option<&'static JavaClasses> {
    CLASSES.get()
}

/// Signature of `TchapSecureException(String code, String message, String localId, String
/// reason)` (the last two null unless the code is `send_queued` or `send_failed`).
pub(crate) const EXCEPTION_CONSTRUCTOR: &jni::signature::MethodSignature<'static, 'static> =
    &jni_sig!("(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V");

fn resolve(env: &mut Env<'_>) -> jni::errors::Result<JavaClasses> {
    #[allow(
        clippy::disallowed_methods,
        reason = "inside JNI_OnLoad FindClass uses the library's class loader: the one correct use"
    )]
    let tchap = env.find_class(jni_str!("fr/gouv/tchap/secure/TchapSecureException"))?;
    env.get_method_id(&tchap, jni_str!("<init>"), EXCEPTION_CONSTRUCTOR)?;
    #[allow(
        clippy::disallowed_methods,
        reason = "inside JNI_OnLoad FindClass uses the library's class loader: the one correct use"
    )]
    let binder = env.find_class(jni_str!("fr/gouv/tchap/secure/KeyBinderException"))?;
    env.get_method_id(
        &binder,
        jni_str!("reasonName"),
        jni_sig!("()Ljava/lang/String;"),
    )?;
    Ok(JavaClasses {
        tchap_secure_exception: env.new_global_ref(&tchap)?,
        key_binder_exception: env.new_global_ref(&binder)?,
    })
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| (l.file(), l.line()));
        let message = info.payload().downcast_ref::<&'static str>().copied();
        tracing::error!(?location, message, "panic in the native library");
    }));
}

/// Called by the JVM when `System.load`/`loadLibrary` loads this library, on the loading thread
/// (a Java thread). Returns the JNI version the library needs, or `JNI_ERR` — which makes the
/// load fail with `UnsatisfiedLinkError` — if the contract classes are missing or do not match.
///
/// # Safety
///
/// `vm` must be null or the JVM's own `JavaVM` pointer, as the JVM passes it; only the JVM
/// calls this function.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn JNI_OnLoad(
    vm: *mut jni::sys::JavaVM,
    _reserved: *mut c_void,
) -> jint {
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        if vm.is_null() {
            return false;
        }
        // SAFETY: per this function's contract `vm` is the JVM's own `JavaVM` pointer (checked
        // non-null just above), which stays valid for the life of the process (a JVM
        // is never unloaded while a library it loaded runs). Every JVM this library targets
        // (ART, HotSpot 17) supports JNI ≥ 1.6, above the 1.4 `from_raw` requires.
        let vm = unsafe { JavaVM::from_raw(vm) };
        install_panic_hook();
        // No core dumps, no attaching by other processes: before any secret exists.
        tchap_secure_memory::harden_process();
        // The loading thread is a Java thread: this only borrows its attachment.
        let resolved = vm.attach_current_thread(|env| -> jni::errors::Result<_> {
            match resolve(env) {
                Ok(classes) => Ok(Some(classes)),
                Err(error) => {
                    // A NoClassDefFoundError/NoSuchMethodError may be pending: clear it, the
                    // JVM reports the failed load as UnsatisfiedLinkError.
                    env.exception_clear();
                    tracing::error!(%error, "JNI_OnLoad: contract classes not found");
                    Ok(None)
                }
            }
        });
        match resolved {
            Ok(Some(classes)) => {
                // A second load (another class loader) keeps the first set: HotSpot and ART
                // refuse to load one library in two class loaders anyway.
                let _ = CLASSES.set(classes);
                true
            }
            Ok(None) | Err(_) => false,
        }
    }));
    if matches!(loaded, Ok(true)) {
        JNI_VERSION_1_6
    } else {
        JNI_ERR
    }
}
