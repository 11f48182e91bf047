//! One room event, in the timeline of an encrypted room and in an invite's stripped state.
//!
//! A panic, or an outcome `FuzzError::is_finding` calls a bug, is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tchap_secure_core::fuzz_api;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = fuzz_api::room_event(data) {
        assert!(!e.is_finding(), "{e}");
    }
});
