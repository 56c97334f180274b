//! Helpers shared by the integration tests (not every test uses each).
#![allow(dead_code)]

pub mod fuzz_checks;
pub mod systemd;
pub mod unitfile;
pub mod units;
pub mod words;
