//! Fuzz target `spec_json`: see controllers/tests/support/fuzz_checks.rs.
#![no_main]

#[allow(dead_code)]
#[path = "../../controllers/tests/support/fuzz_checks.rs"]
mod fuzz_checks;
#[allow(dead_code)]
#[path = "../../controllers/tests/support/systemd.rs"]
mod systemd;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_checks::spec_json(data);
});
