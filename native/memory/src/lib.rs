//! Process memory hygiene for Tchap Secure: what the rest of the code cannot do without
//! `unsafe`, kept in one small crate that an auditor reads in one sitting.
//!
//! - [`harden_process`]: no core dumps (`PR_SET_DUMPABLE` = 0, `RLIMIT_CORE` = 0). A
//!   non-dumpable process also cannot be attached to by `ptrace` from another process of the
//!   same user, and its `/proc/<pid>/mem` is closed to them. The library calls it when the
//!   JNI library is loaded, when the CLI starts and whenever a client is opened.
//! - [`ZeroizingAllocator`]: a global allocator that wipes every block before handing it back
//!   to the system allocator, so freed buffers of libraries we do not control (hyper's and
//!   rustls's read and write buffers, serde's intermediate strings, vodozemac's decrypted
//!   plaintexts) do not keep secrets in the free lists of `malloc` after use. Each shipped
//!   artifact (the JNI library, the CLI) installs it with [`install_zeroizing_allocator!`].
//! - [`LockedBytes`]: fixed-size key material on a page of its own, excluded from core dumps
//!   (`MADV_DONTDUMP`), not inherited by a forked child (`MADV_WIPEONFORK`), locked in RAM
//!   (`mlock`, so never written to swap) when the limit allows, and wiped before unmapping.
//!
//! What this does not cover — secrets on thread stacks and in memory that C libraries manage
//! themselves (SQLCipher wipes its own allocations with `cipher_memory_security`) — is stated
//! in the threat model (residual risk R5) and measured by the residue test of `tests/`.

mod alloc;
mod locked;
mod process;

pub use alloc::{ZeroizingAllocator, zeroizing_allocator_in_use};
pub use locked::LockedBytes;
pub use process::{Hardening, core_file_limit, harden_process, is_dumpable};

/// Installs [`ZeroizingAllocator`] as the global allocator of the final artifact (a binary or
/// a `cdylib`). Libraries must not install a global allocator; the artifacts do.
///
/// It also exports `tchap_secure_zeroizing_allocator_in_use` (C ABI, no argument, returns a
/// `bool`): [`zeroizing_allocator_in_use`] asked of the artifact itself, so that the residue
/// test (`tests/tests/residue.rs`) can check the shipped JNI library by loading it, and fails
/// if the installation is removed.
#[macro_export]
macro_rules! install_zeroizing_allocator {
    () => {
        #[global_allocator]
        static TCHAP_SECURE_ALLOCATOR: $crate::ZeroizingAllocator = $crate::ZeroizingAllocator;

        /// Whether this artifact's global allocator is the zeroizing one (for the tests).
        #[unsafe(no_mangle)]
        pub extern "C" fn tchap_secure_zeroizing_allocator_in_use() -> bool {
            $crate::zeroizing_allocator_in_use()
        }
    };
}

#[allow(unsafe_code, reason = "the one memset the optimiser must keep")]
/// Overwrites `len` bytes at `ptr` with zeros in a way the optimiser may not remove, even when
/// the memory is freed right after (a plain `memset` before `free` is a dead store to LLVM).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn wipe(ptr: *mut u8, len: usize) {
    // SAFETY: the caller guarantees `ptr` is valid for `len` bytes of writes.
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
    // `black_box` is an opaque use of the pointer with a memory clobber: the zeros must be in
    // memory before it, so the stores above cannot be elided.
    std::hint::black_box(ptr);
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}
