//! The time pins and certificates are judged against (issue 15 item 4).
//!
//! The device clock can be set back — by the member in the settings, or by whoever spoofs the
//! network time the phone follows — and a clock set back would revive pins past
//! `pins_expire_at` and certificates that expired. [`TrustedClock`] therefore answers the later
//! of the device clock and a *floor*: the latest time this data directory has seen, kept in the
//! store (`Client::open` raises the floor to the stored value and to the clock's reading, and
//! records it again after each sync). Time seen once cannot be taken back.
//!
//! Test hook: debug builds read `TCHAP_SECURE_TEST_CLOCK_OFFSET_SECS` (a signed number of
//! seconds added to the device clock), so a test process can stand for a phone whose clock is
//! ahead or was set back. Release builds (the shipped library) ignore it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::UnixTime;

/// The debug-only environment variable shifting the device clock (see the module doc).
pub const TEST_CLOCK_OFFSET_VAR: &str = "TCHAP_SECURE_TEST_CLOCK_OFFSET_SECS";

/// The later of the device clock and the latest time seen. Clones share the floor.
#[derive(Clone, Debug, Default)]
pub struct TrustedClock {
    floor: Arc<AtomicU64>,
}

impl TrustedClock {
    /// A clock whose floor is the epoch (no time seen yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// The device clock, in seconds since the Unix epoch (0 if it reads before the epoch).
    pub fn device_secs() -> u64 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        shifted(secs, test_offset())
    }

    /// Now: the later of the device clock and the floor, in seconds since the epoch.
    pub fn now_secs(&self) -> u64 {
        later(Self::device_secs(), self.floor_secs())
    }

    /// Now, as rustls and webpki take it.
    pub fn now(&self) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(self.now_secs()))
    }

    /// The latest time seen.
    pub fn floor_secs(&self) -> u64 {
        self.floor.load(Ordering::SeqCst)
    }

    /// Records that `secs` has been seen; the floor never goes down.
    pub fn raise_floor(&self, secs: u64) {
        self.floor.fetch_max(secs, Ordering::SeqCst);
    }
}

/// The later of two instants.
fn later(device: u64, floor: u64) -> u64 {
    device.max(floor)
}

fn shifted(secs: u64, offset: i64) -> u64 {
    if offset >= 0 {
        secs.saturating_add(offset.unsigned_abs())
    } else {
        secs.saturating_sub(offset.unsigned_abs())
    }
}

#[cfg(debug_assertions)]
fn test_offset() -> i64 {
    std::env::var(TEST_CLOCK_OFFSET_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(not(debug_assertions))]
fn test_offset() -> i64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_wins_over_a_clock_set_back_and_never_goes_down() {
        let clock = TrustedClock::new();
        let device = TrustedClock::device_secs();
        assert!(clock.now_secs() >= device);
        assert_eq!(clock.floor_secs(), 0);
        // A floor an hour ahead of the device clock: the clock was set back by an hour.
        clock.raise_floor(device + 3600);
        assert_eq!(clock.now_secs(), device + 3600);
        assert_eq!(clock.now().as_secs(), device + 3600);
        // An older time does not lower it; clones share it.
        let shared = clock.clone();
        shared.raise_floor(device - 10);
        assert_eq!(clock.floor_secs(), device + 3600);
        shared.raise_floor(device + 7200);
        assert_eq!(clock.now_secs(), device + 7200);
    }

    #[test]
    fn later_and_shifted() {
        assert_eq!(later(5, 3), 5);
        assert_eq!(later(3, 5), 5);
        assert_eq!(later(4, 4), 4);
        assert_eq!(shifted(100, 20), 120);
        assert_eq!(shifted(100, -20), 80);
        assert_eq!(shifted(10, -20), 0);
        assert_eq!(shifted(u64::MAX, 1), u64::MAX);
        assert_eq!(shifted(100, 0), 100);
    }
}
