//! The checks every target runs, shared with the stable proptest runs:
//! controllers/tests/support/fuzz_checks.rs (and the systemd oracle it uses).

#[allow(dead_code)]
#[path = "../../controllers/tests/support/systemd.rs"]
mod systemd;

#[allow(dead_code)]
#[path = "../../controllers/tests/support/unitfile.rs"]
mod unitfile;

#[allow(dead_code)]
#[path = "../../controllers/tests/support/words.rs"]
mod words;

#[allow(dead_code)]
#[path = "../../controllers/tests/support/fuzz_checks.rs"]
pub mod fuzz_checks;
