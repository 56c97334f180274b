//! The units controller: keeps fleet's registry equal to what
//! `/kaylee/units` asks for, and reports whether each unit serves.
//!
//! `observe` reads a unit's jobs from the caches, `availability` judges
//! each replica, `decide` turns that into writes and a condition (pure),
//! `controller` wires informers, queue and workers around `reconcile`.

pub mod availability;
pub mod cluster;
pub mod controller;
pub mod decide;
pub mod history;
pub mod jobs;
pub mod observe;
pub mod status;
pub mod timeline;
mod writes;

pub use controller::{ControllerConfig, ReconcileError, UnitsController};
pub use status::UnitStatus;
pub use writes::WriteError;
