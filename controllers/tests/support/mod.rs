//! Helpers shared by the integration tests.

pub mod systemd;
pub mod units;
