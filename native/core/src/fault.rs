//! Named crash points for the crash-safety tests (debug builds only).
//!
//! With `TCHAP_SECURE_CRASH_POINT=<name>` in its environment, a debug build that reaches the
//! point named `<name>` announces it on stderr and stops there; the test then kills it with
//! SIGKILL, so the process dies exactly at that point, with nothing flushed or dropped. In
//! release builds (the shipped library) the function is empty.

/// A named point where a crash must be harmless.
pub(crate) fn point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("TCHAP_SECURE_CRASH_POINT").is_ok_and(|v| v == name) {
        eprintln!("tchap-secure: crash point {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
