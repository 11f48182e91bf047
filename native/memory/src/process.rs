//! No core dumps, no attaching.

#![allow(unsafe_code, reason = "prctl and getrlimit/setrlimit are libc calls")]

use std::sync::Once;

/// What [`harden_process`] achieved. Each step is independent: one failing (say a sandbox
/// forbids `prctl`) does not stop the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    /// The process is not dumpable: the kernel writes no core file and other processes of the
    /// same user can neither `ptrace` it nor read its `/proc/<pid>/mem`.
    pub not_dumpable: bool,
    /// `RLIMIT_CORE` is 0 (soft and hard): no core file, even if something makes the process
    /// dumpable again.
    pub no_core_files: bool,
}

/// Makes the process non-dumpable and sets its core file limit to zero. Idempotent and cheap;
/// the outcome is logged once.
pub fn harden_process() -> Hardening {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument; the others are ignored (and zero).
    let dumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `zero` is a valid rlimit that outlives the call.
    let limit = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
    let hardening = Hardening {
        not_dumpable: dumpable == 0,
        no_core_files: limit == 0,
    };
    static LOGGED: Once = Once::new();
    LOGGED.call_once(|| {
        if hardening.not_dumpable && hardening.no_core_files {
            tracing::debug!("process hardened: not dumpable, core file limit 0");
        } else {
            tracing::warn!(?hardening, "process hardening incomplete");
        }
    });
    hardening
}

/// Whether the kernel considers the process dumpable (`PR_GET_DUMPABLE`).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no argument and returns 0, 1 or 2.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
}

/// The core file size limit, soft and hard, in bytes (`None` if it cannot be read).
pub fn core_file_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) };
    (rc == 0).then_some((limit.rlim_cur, limit.rlim_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_hardening_the_process_is_not_dumpable_and_writes_no_core() {
        let hardening = harden_process();
        assert_eq!(
            hardening,
            Hardening {
                not_dumpable: true,
                no_core_files: true
            }
        );
        assert!(!is_dumpable());
        assert_eq!(core_file_limit(), Some((0, 0)));
        // Idempotent.
        assert_eq!(harden_process(), hardening);
    }
}
