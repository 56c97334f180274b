//! Fuzz target `spec_json`: see controllers/tests/support/fuzz_checks.rs.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = common::fuzz_checks::spec_json(data);
});
