//! Handles: `Arc<T>` given to Java as a `long` (STYLE §3, after libsignal).
//!
//! - [`into_raw`]: `Arc::into_raw`, the address kept bit for bit in the `long`. It is *not*
//!   range-checked: on Android arm64 heap pointers carry a tag in their top byte (`0xb4…`), so a
//!   valid handle is often negative. Only 0 means "no handle".
//! - [`borrow`]: checks null, alignment and a type tag (a `u64` magic stored first in the
//!   object), then takes a *new* strong reference for the duration of the call, so a `close`
//!   racing with a call in progress cannot free the object under it.
//! - [`close`]: swaps the tag to a "closed" value (so a later borrow or close that still finds
//!   the memory fails with a typed error) and gives back the reference `into_raw` handed out.
//!
//! What the checks can and cannot do: they turn a `0`, a handle of another type or a handle
//! that is closed but still referenced into a `TchapSecureException` instead of a crash. They
//! cannot make an arbitrary `long` safe to dereference: the Java owner (`SecureClient`,
//! `AutoCloseable`, synchronized `close()`, `IllegalStateException` after close) guarantees
//! that a non-zero handle it passes was returned by `clientOpen` and not yet given to
//! `clientClose`. That is the precondition each `SAFETY` comment below rests on.

#![allow(unsafe_code, reason = "the handle is a raw Arc pointer kept by Java")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jni::sys::jlong;

use crate::error::BridgeError;

/// Tag of a closed handle.
const CLOSED: u64 = 0xC105_EDC1_05ED_C105;

/// A type that can be handed to Java as a handle.
pub(crate) trait HandleType: Send + Sync + 'static {
    /// The tag identifying live objects of this type (never [`CLOSED`], never 0).
    const MAGIC: u64;
}

/// What a handle points to: the tag, then the object. `repr(C)` puts the tag at offset 0 for
/// every `T`, so a handle of another type is read as *its* tag, and refused.
#[repr(C)]
pub(crate) struct Tagged<T> {
    magic: AtomicU64,
    value: T,
}

impl<T: HandleType> Tagged<T> {
    fn new(value: T) -> Self {
        Self {
            magic: AtomicU64::new(T::MAGIC),
            value,
        }
    }
}

impl<T> std::ops::Deref for Tagged<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// Gives `value` to Java as a handle (one strong reference, owned by the Java side).
pub(crate) fn into_raw<T: HandleType>(value: T) -> jlong {
    let ptr = Arc::into_raw(Arc::new(Tagged::new(value)));
    // A bit-for-bit round trip (see the module docs: tagged pointers are "negative").
    ptr.expose_provenance() as jlong
}

/// The pointer behind `handle`, after the null, alignment and tag checks.
fn checked_ptr<T: HandleType>(handle: jlong) -> Result<*const Tagged<T>, BridgeError> {
    let ptr: *const Tagged<T> = std::ptr::with_exposed_provenance(handle as usize);
    if ptr.is_null() {
        return Err(BridgeError::NullHandle);
    }
    if !ptr.is_aligned() {
        return Err(BridgeError::InvalidHandle);
    }
    // SAFETY: `ptr` is non-null and aligned. By the Java owner's guarantee (module docs) a
    // non-zero handle is the address `into_raw` returned and whose strong reference has not
    // been released by `close`, so it points to a live `Tagged<_>` allocation; `magic` is its
    // field at offset 0 for every `T` (`repr(C)`), so even a handle of another
    // handle type is read at its own tag; the tag is only ever accessed atomically.
    let magic = unsafe { &(*ptr).magic }.load(Ordering::Acquire);
    if magic == T::MAGIC {
        Ok(ptr)
    } else {
        Err(BridgeError::InvalidHandle)
    }
}

/// Borrows the object behind `handle` for one call.
pub(crate) fn borrow<T: HandleType>(handle: jlong) -> Result<Arc<Tagged<T>>, BridgeError> {
    let ptr = checked_ptr::<T>(handle)?;
    // SAFETY: `ptr` came from `Arc::into_raw` for this very type (the tag matched) and the
    // reference Java owns is still held (Java owner's guarantee), so the strong count is ≥ 1
    // and may be incremented.
    unsafe { Arc::increment_strong_count(ptr) };
    // SAFETY: takes ownership of the reference added just above (not Java's), so the counts
    // stay balanced: the returned `Arc` releases exactly that one when dropped.
    Ok(unsafe { Arc::from_raw(ptr) })
}

/// Closes `handle`: the Java side's reference is released (the object is dropped when the
/// last call in progress, if any, finishes). `before_release` runs first, on the live object
/// (the client stops its sync thread there).
pub(crate) fn close<T: HandleType>(
    handle: jlong,
    before_release: impl FnOnce(&T),
) -> Result<(), BridgeError> {
    let ptr = checked_ptr::<T>(handle)?;
    // SAFETY: as in `checked_ptr`: live, aligned, tagged `Tagged<T>`.
    let magic = unsafe { &(*ptr).magic };
    // Exactly one `close` wins the swap; a concurrent or repeated one gets a typed error.
    if magic
        .compare_exchange(T::MAGIC, CLOSED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(BridgeError::InvalidHandle);
    }
    // SAFETY: this call won the swap above, so it is the only one that gives back the
    // reference `into_raw` handed to Java; that reference is still held (the Java owner's
    // guarantee, and no other `close` could release it).
    let owned = unsafe { Arc::from_raw(ptr) };
    before_release(&owned.value);
    drop(owned);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Probe(Arc<AtomicUsize>);
    impl HandleType for Probe {
        const MAGIC: u64 = 0x5052_4F42_4550_524F;
    }
    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Other;
    impl HandleType for Other {
        const MAGIC: u64 = 0x4F54_4845_524F_5448;
    }

    #[test]
    fn null_and_misaligned_handles_are_typed_errors() {
        assert!(matches!(
            borrow::<Probe>(0).map(drop),
            Err(BridgeError::NullHandle)
        ));
        assert!(matches!(
            borrow::<Probe>(1).map(drop),
            Err(BridgeError::InvalidHandle)
        ));
        assert!(matches!(
            close::<Probe>(0, |_| {}),
            Err(BridgeError::NullHandle)
        ));
    }

    #[test]
    fn borrow_close_and_wrong_type() {
        let drops = Arc::new(AtomicUsize::new(0));
        let handle = into_raw(Probe(drops.clone()));
        assert!(matches!(
            borrow::<Other>(handle).map(drop),
            Err(BridgeError::InvalidHandle)
        ));
        let in_flight = borrow::<Probe>(handle).unwrap();
        let mut ran = false;
        close::<Probe>(handle, |_| ran = true).unwrap();
        assert!(ran);
        // The call in progress keeps the object alive; later calls see a closed handle.
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        assert!(matches!(
            borrow::<Probe>(handle).map(drop),
            Err(BridgeError::InvalidHandle)
        ));
        assert!(matches!(
            close::<Probe>(handle, |_| {}),
            Err(BridgeError::InvalidHandle)
        ));
        drop(in_flight);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
