//! etcd access shared by every command and controller.

mod config;
mod session;
pub mod v2;

pub use config::{DEFAULT_ENDPOINTS, EtcdConfig, EtcdError};
pub use session::Session;
