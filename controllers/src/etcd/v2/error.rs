//! What can go wrong talking to etcd's v2 API, worded for operators.

use super::wire::EtcdFailure;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum V2Error {
    #[error(
        "etcd at {endpoint} does not serve the v2 keys API (GET /v2/keys answered HTTP {status}), \
         and fleet reads and writes its registry only through v2. Start etcd with \
         --enable-v2=true (etcd 3.4 and 3.5; 3.6 has no v2 API), or run Kaylee with \
         --fleet-etcd-api v3 (then fleet itself does not see Kaylee's units)"
    )]
    Disabled { endpoint: String, status: u16 },
    #[error("etcd v2 {what}: {} (errorCode {}, {})", failure.message, failure.code, failure.cause)]
    Etcd { what: String, failure: EtcdFailure },
    #[error("etcd v2 {what}: refused our credentials (HTTP 401): {body}")]
    Unauthorized { what: String, body: String },
    #[error("etcd v2 {what}: {reason} (endpoints: {endpoints})")]
    Unreachable {
        what: String,
        endpoints: String,
        reason: String,
    },
    #[error("etcd v2 {what}: no answer within {timeout:?} (endpoints: {endpoints})")]
    Timeout {
        what: String,
        timeout: Duration,
        endpoints: String,
    },
    #[error("etcd v2 {what}: unexpected answer from {endpoint} (HTTP {status}): {body}")]
    Protocol {
        what: String,
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("etcd settings: {0}")]
    Config(String),
}

impl V2Error {
    /// etcd's errorCode, when etcd answered with one.
    pub fn code(&self) -> Option<u32> {
        match self {
            V2Error::Etcd { failure, .. } => Some(failure.code),
            _ => None,
        }
    }
}
