//! The zeroizing global allocator.

#![allow(
    unsafe_code,
    reason = "implementing GlobalAlloc is unsafe by definition; each call forwards to System"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::wipe;

/// Set by the first allocation made through [`ZeroizingAllocator`]: in an artifact, where only
/// the `#[global_allocator]` machinery calls it, this says that it is the global allocator.
static IN_USE: AtomicBool = AtomicBool::new(false);

/// Whether this artifact's global allocator is [`ZeroizingAllocator`] (it makes one heap
/// allocation to find out). Meant to be asked through the symbol that
/// [`install_zeroizing_allocator!`](crate::install_zeroizing_allocator) exports, so that a test
/// can check the shipped binary or library itself rather than a test build.
pub fn zeroizing_allocator_in_use() -> bool {
    drop(std::hint::black_box(Vec::<u8>::with_capacity(1)));
    IN_USE.load(Ordering::Relaxed)
}

/// The system allocator, except that every block is wiped before it is freed, and a growing
/// `realloc` never lets the system allocator move a block (which would free the old copy
/// unwiped): it allocates, copies, wipes and frees itself. Shrinking keeps the block in place
/// and wipes the tail.
///
/// Cost: one `memset` per freed byte, measured by the `receive` benchmark of `tests/`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroizingAllocator;

// SAFETY: every method forwards to `System`, which upholds the `GlobalAlloc` contract; the
// extra work (wiping a block we own, copying between two blocks we own) does not change which
// memory is returned or freed, and `realloc` returns either the unchanged block (shrinking, the
// same layout rules as `System::realloc` returning in place) or a fresh block of `new_size`
// bytes with the old contents, leaving the old block untouched if allocation fails.
unsafe impl GlobalAlloc for ZeroizingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        mark_in_use();
        // SAFETY: same contract as ours: `layout` has a non-zero size (caller's duty).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        mark_in_use();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block we allocated with `layout`: `layout.size()` bytes
        // are ours to write until it is freed.
        unsafe { wipe(ptr, layout.size()) };
        // SAFETY: `ptr` was allocated by `System` with `layout` (every method above and below
        // allocates through `System`).
        unsafe { System.dealloc(ptr, layout) };
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_size = layout.size();
        if new_size <= old_size {
            // SAFETY: bytes `new_size..old_size` are inside the block we own.
            unsafe { wipe(ptr.wrapping_add(new_size), old_size - new_size) };
            // The block stays where it is, larger than asked: `System` frees by pointer, not
            // by size, so the later `dealloc` with the smaller layout frees all of it.
            return ptr;
        }
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, does not
        // overflow `isize` (the `realloc` contract), so this layout is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (it is larger than `old_size`).
        let new_ptr = unsafe { System.alloc(new_layout) };
        if new_ptr.is_null() {
            return new_ptr;
        }
        // SAFETY: both blocks are ours, distinct, and at least `old_size` bytes long.
        unsafe { std::ptr::copy_nonoverlapping(ptr, new_ptr, old_size) };
        // SAFETY: wipes then frees the old block, which the caller gives up (see `dealloc`).
        unsafe { self.dealloc(ptr, layout) };
        new_ptr
    }
}

/// One relaxed load per allocation (a plain load on x86-64 and AArch64); one store, once.
#[inline]
fn mark_in_use() {
    if !IN_USE.load(Ordering::Relaxed) {
        IN_USE.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one allocation's life, read as a whole"
    )]
    fn blocks_keep_their_contents_through_realloc() {
        let a = ZeroizingAllocator;
        let layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: a 16-byte block, filled, grown, shrunk and freed with matching layouts.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            for i in 0..16 {
                *p.add(i) = i as u8;
            }
            let q = a.realloc(p, layout, 4096);
            assert!(!q.is_null());
            assert_eq!(
                std::slice::from_raw_parts(q, 16),
                &(0..16).collect::<Vec<u8>>()[..]
            );
            let big = Layout::from_size_align(4096, 8).unwrap();
            let r = a.realloc(q, big, 8);
            assert_eq!(r, q, "shrinking stays in place");
            assert_eq!(std::slice::from_raw_parts(r, 8), &[0, 1, 2, 3, 4, 5, 6, 7]);
            assert!(
                std::slice::from_raw_parts(r.add(8), 4088)
                    .iter()
                    .all(|&b| b == 0)
            );
            a.dealloc(r, Layout::from_size_align(8, 8).unwrap());
        }
    }
}
