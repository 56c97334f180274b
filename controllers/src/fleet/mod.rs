//! Everything about fleet's side: unit names, unit text, and the records
//! fleet keeps in etcd.

pub mod naming;
pub mod quote;
pub mod records;
pub mod reference;
pub mod render;
pub mod unitfile;

pub use naming::{FleetName, container_name};
pub use records::{Record, UnitHash, create_records};
pub use render::{FleetUnit, RenderOptions, Rendered, docker_run_argv, render};
