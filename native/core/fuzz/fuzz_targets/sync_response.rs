//! A whole `/sync` body, decoded and applied to the store with our E2EE engine.
//!
//! A panic, or an outcome `FuzzError::is_finding` calls a bug, is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tchap_secure_core::fuzz_api;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = fuzz_api::sync_response(data) {
        assert!(!e.is_finding(), "{e}");
    }
});
