//! etcd access shared by every command and controller.

mod config;
pub mod election;
mod session;
mod source;
pub mod v2;

pub use config::{DEFAULT_ENDPOINTS, EtcdConfig, EtcdError};
pub use election::{Election, ElectionError, Fence};
pub use session::Session;
pub use source::{EtcdPrefix, MAX_MESSAGE_BYTES};
