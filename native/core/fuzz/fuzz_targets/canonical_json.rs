//! Canonical JSON of any JSON value: idempotence, sorted keys, signing form.
//!
//! A panic, or an outcome `FuzzError::is_finding` calls a bug, is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tchap_secure_core::fuzz_api;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = fuzz_api::canonical_json(data) {
        assert!(!e.is_finding(), "{e}");
    }
});
