//! The units controller: keeps fleet's registry equal to what
//! `/kaylee/units` asks for.

pub mod controller;
pub mod observe;
pub mod plan;
pub mod status;
mod writes;

pub use controller::{ControllerConfig, UnitsController};
pub use status::UnitStatus;
