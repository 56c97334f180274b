//! Kaylee's engine: the unit model, fleet rendering and registry layout, the
//! controller runtime and the controllers. The `kaylee` binary is a thin CLI
//! over this crate.

#![warn(missing_docs)]

pub mod client;
pub mod cluster_config;
pub mod etcd;
pub mod fleet;
pub mod keys;
pub mod registrator;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod spec;
pub mod units;
