//! Key material on pages of its own.

#![allow(
    unsafe_code,
    reason = "mmap, madvise, mlock, munmap and the raw page pointer"
)]

use std::fmt;
use std::ptr::NonNull;

use crate::wipe;

/// `N` secret bytes on a private anonymous mapping of their own:
///
/// - `MADV_DONTDUMP`: left out of any core dump, should one be written despite
///   [`crate::harden_process`];
/// - `MADV_WIPEONFORK`: a forked child sees zeros, not the key;
/// - `mlock`: never swapped out, when `RLIMIT_MEMLOCK` allows (the failure is logged and
///   tolerated: Android's default limit is small, and the page stays protected by the rest);
/// - wiped, unlocked and unmapped on drop.
///
/// If the mapping itself cannot be made (address space exhausted), the bytes fall back to an
/// ordinary heap box, still wiped on drop: a key must never be refused for lack of a page.
/// Starts zeroed; fill it in place with [`LockedBytes::expose_mut`] so no copy is made.
pub struct LockedBytes<const N: usize> {
    storage: Storage<N>,
}

enum Storage<const N: usize> {
    Page { ptr: NonNull<u8>, len: usize },
    Heap(Box<[u8; N]>),
}

// SAFETY: the mapping is owned exclusively by this value (like a `Box`), it is never aliased,
// and shared access only reads it.
unsafe impl<const N: usize> Send for LockedBytes<N> {}
// SAFETY: as above: `&LockedBytes` gives only `&[u8; N]`.
unsafe impl<const N: usize> Sync for LockedBytes<N> {}

impl<const N: usize> LockedBytes<N> {
    /// `N` zero bytes on a fresh locked page (or pages, for `N` over a page).
    pub fn zeroed() -> Self {
        const { assert!(N > 0, "LockedBytes of zero bytes") };
        Self {
            storage: map_page(N).map_or_else(
                || Storage::Heap(Box::new([0u8; N])),
                |(ptr, len)| Storage::Page { ptr, len },
            ),
        }
    }

    /// The bytes. Keep the borrow short and do not copy them into unprotected memory.
    pub fn expose(&self) -> &[u8; N] {
        match &self.storage {
            // SAFETY: the mapping is at least N bytes, readable, owned by `self` and
            // initialised (anonymous mappings are zero-filled); the borrow is tied to `self`.
            Storage::Page { ptr, .. } => unsafe { &*ptr.as_ptr().cast::<[u8; N]>() },
            Storage::Heap(bytes) => bytes,
        }
    }

    /// The bytes, writable (to fill them in place).
    pub fn expose_mut(&mut self) -> &mut [u8; N] {
        match &mut self.storage {
            // SAFETY: as in `expose`, and `&mut self` makes this the only borrow.
            Storage::Page { ptr, .. } => unsafe { &mut *ptr.as_ptr().cast::<[u8; N]>() },
            Storage::Heap(bytes) => bytes,
        }
    }

    /// Whether the bytes live on a dedicated page (false only after the heap fallback).
    pub fn is_on_own_page(&self) -> bool {
        matches!(self.storage, Storage::Page { .. })
    }
}

impl<const N: usize> Drop for LockedBytes<N> {
    fn drop(&mut self) {
        match &mut self.storage {
            Storage::Page { ptr, len } => {
                // SAFETY: the mapping is `len` ≥ N writable bytes owned by `self`.
                unsafe { wipe(ptr.as_ptr(), *len) };
                // SAFETY: unlocking a range we mapped; harmless if it was never locked.
                unsafe { libc::munlock(ptr.as_ptr().cast(), *len) };
                // SAFETY: unmapping exactly the mapping made in `map_page`; no borrow of it
                // can outlive `self`.
                unsafe { libc::munmap(ptr.as_ptr().cast(), *len) };
            }
            Storage::Heap(bytes) => {
                // SAFETY: the box is N writable bytes owned by `self`.
                unsafe { wipe(bytes.as_mut_ptr(), N) };
            }
        }
    }
}

impl<const N: usize> fmt::Debug for LockedBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockedBytes<{N}>(<redacted>)")
    }
}

/// Maps, advises and locks at least `n` bytes, rounded up to whole pages.
fn map_page(n: usize) -> Option<(NonNull<u8>, usize)> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|&p| p > 0)?;
    let len = n.checked_next_multiple_of(page)?;
    // SAFETY: a new private anonymous read/write mapping; no existing memory is affected.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        tracing::warn!("no page for key material, falling back to the heap");
        return None;
    }
    let ptr = NonNull::new(raw.cast::<u8>())?;
    // SAFETY: advice on the mapping just made, of exactly its length.
    let dontdump = unsafe { libc::madvise(raw, len, libc::MADV_DONTDUMP) };
    // SAFETY: as above. Linux 4.14+; older kernels return EINVAL, which we tolerate.
    let wipeonfork = unsafe { libc::madvise(raw, len, libc::MADV_WIPEONFORK) };
    // SAFETY: locking the mapping just made.
    let locked = unsafe { libc::mlock(raw, len) };
    if dontdump != 0 || wipeonfork != 0 || locked != 0 {
        tracing::debug!(
            dontdump = dontdump == 0,
            wipeonfork = wipeonfork == 0,
            locked = locked == 0,
            "key page protections partly applied"
        );
    }
    Some((ptr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags of the mapping holding `ptr`, from `/proc/self/smaps` (`VmFlags` line).
    fn vm_flags_of(ptr: *const u8) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let addr = ptr as usize;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                inside = (start..end).contains(&addr);
                continue;
            }
            if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_owned();
            }
        }
        panic!("no mapping holds {ptr:p}");
    }

    #[test]
    fn key_pages_are_excluded_from_core_dumps_and_wiped_on_fork() {
        let mut key = LockedBytes::<32>::zeroed();
        assert!(key.is_on_own_page());
        assert_eq!(key.expose(), &[0u8; 32]);
        key.expose_mut().copy_from_slice(&[0x5A; 32]);
        assert_eq!(key.expose(), &[0x5A; 32]);
        let flags = vm_flags_of(key.expose().as_ptr());
        // dd = VM_DONTDUMP, wf = VM_WIPEONFORK (Documentation/filesystems/proc.rst).
        assert!(flags.split(' ').any(|f| f == "dd"), "flags: {flags}");
        assert!(flags.split(' ').any(|f| f == "wf"), "flags: {flags}");
        assert_eq!(format!("{key:?}"), "LockedBytes<32>(<redacted>)");
    }

    #[test]
    fn each_key_has_its_own_page() {
        let a = LockedBytes::<32>::zeroed();
        let b = LockedBytes::<64>::zeroed();
        let (pa, pb) = (a.expose().as_ptr() as usize, b.expose().as_ptr() as usize);
        assert_ne!(pa & !4095, pb & !4095);
        assert_eq!(pa & 4095, 0, "the key starts its page");
    }
}
