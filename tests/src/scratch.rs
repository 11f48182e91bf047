//! Scratch directories that live as long as the test process.
//!
//! Process-wide fixtures (the shared Synapse, the process-wide SoftHSM token) sit in `static`s
//! that are never dropped, so a `TempDir` there would never be removed. Instead they get a
//! directory named `tchap-secure-testbed-<kind>-<pid>-<nonce>` under the system temp dir, and every new
//! one first removes the directories left by test processes that no longer run.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

const PREFIX: &str = "tchap-secure-testbed-";

/// Create a fresh directory for a fixture of this `kind` (e.g. "synapse") of this process.
pub(crate) fn process_dir(kind: &str) -> PathBuf {
    let dir = path_for(kind);
    create(&dir);
    dir
}

/// The path a fresh fixture directory of this `kind` would have; touches no file, does not
/// panic (it is also called before `main`, see `softhsm.rs`).
pub(crate) fn path_for(kind: &str) -> PathBuf {
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    std::env::temp_dir().join(format!("{PREFIX}{kind}-{}-{nonce}", std::process::id()))
}

/// Create `dir` (from [`path_for`]), first sweeping directories of dead test processes.
pub(crate) fn create(dir: &Path) {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| sweep_stale(&std::env::temp_dir()));
    std::fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("create the fixture directory {}: {e}", dir.display()));
}

/// Remove `tchap-secure-testbed-<kind>-<pid>-<nonce>` directories whose process is gone.
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        // <kind>-<pid>-<nonce>: the pid is the second field from the end.
        let mut fields = rest.rsplit('-');
        let (Some(nonce), Some(pid)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), nonce.parse::<u128>()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
