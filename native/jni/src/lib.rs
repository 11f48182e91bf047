//! `libtchap_secure.so`: the JNI bridge between `fr.gouv.tchap.secure.Native` and the client
//! core (DESIGN §7). It is the only crate that knows `jni`, and it is meant to be read in one
//! sitting.
//!
//! Modelled on libsignal's bridge:
//!
//! - `native.rs`: every `native` method of `Native.java`, one `extern "system"` function each,
//!   whose whole body runs through the funnel.
//! - `funnel.rs`: the one FFI funnel — `catch_unwind`, typed errors and panics turned into
//!   `TchapSecureException(code, message)`, `AssertionError` as the fallback, a default value
//!   returned to the JVM, never an abort.
//! - `classes.rs`: `JNI_OnLoad`, which resolves the exception classes once, with the library's
//!   class loader (`FindClass` on a native thread would see the wrong one).
//! - `handle.rs`: `Arc` handles as Java `long`s, with null and type-tag checks on every borrow.
//! - `client.rs`: what a handle points to — a tokio runtime, the core `Client` behind a mutex,
//!   the key binder, the sync thread's slot.
//! - `key_binder.rs`: the vault's hardware backend implemented over the Java `KeyBinder`.
//! - `sync_thread.rs`: the background sync on a dedicated, JVM-attached thread calling the Java
//!   `Listener`.
//! - `files.rs`: the files of `sendFile` / `downloadFile`, adopted as descriptors (ownership
//!   passes to the library) or opened from a path, streamed natively, never through the JVM.
//! - `convert.rs`: Java ↔ Rust values; secrets are read from `byte[]` into zeroizing memory and
//!   the Java array zeroed; tables are `String[][]`.
//! - `error.rs`: the bridge's error type and its stable codes.
//!
//! Unsafe code: denied crate-wide (`[lints]`), allowed with a reason only in `native` and
//! `classes` (the `#[unsafe(no_mangle)]` exports, `JavaVM::from_raw`), `handle` (the raw
//! `Arc` pointer) and `files` (`fcntl` and `OwnedFd::from_raw_fd` on a descriptor handed
//! over). Every `unsafe` block carries a `SAFETY:` argument. Everything else goes
//! through jni-rs's safe, checked API; the raw or hazardous parts of it are banned by
//! `clippy.toml`.
//!
//! Logging is `tracing` only (no subscriber is installed here); nothing logged or put in an
//! exception message contains a secret.

#![deny(clippy::undocumented_unsafe_blocks)]

// Every block the library frees is wiped first: hyper's, rustls's and serde's buffers included.
tchap_secure_memory::install_zeroizing_allocator!();

pub mod account;
pub mod classes;
mod client;
mod convert;
mod error;
mod files;
mod funnel;
mod handle;
mod key_binder;
pub mod native;
mod sync_thread;
