//! What can go wrong talking to etcd's v2 API, worded for operators.

use super::wire::EtcdFailure;
use std::time::Duration;

/// A failed v2 request. `what` names the request as an operator would
/// (e.g. `GET /_coreos.com/fleet/job/…`), so each message says what was
/// being done.
#[derive(Debug, thiserror::Error)]
pub enum V2Error {
    /// etcd answered, but not with the v2 keys API (started without
    /// `--enable-v2=true`, or etcd 3.6+).
    #[error(
        "etcd at {endpoint} does not serve the v2 keys API (GET /v2/keys answered HTTP {status}), \
         and fleet reads and writes its registry only through v2. Start etcd with \
         --enable-v2=true (etcd 3.4 and 3.5; 3.6 has no v2 API), or run Kaylee with \
         --fleet-etcd-api v3 (then fleet itself does not see Kaylee's units)"
    )]
    Disabled {
        /// The endpoint that answered.
        endpoint: String,
        /// Its HTTP status (404 from an etcd without v2).
        status: u16,
    },
    /// etcd refused the request with one of its v2 error codes (key not
    /// found, compare failed, index cleared; see [`super::code`]).
    #[error("etcd v2 {what}: {} (errorCode {}, {})", failure.message, failure.code, failure.cause)]
    Etcd {
        /// The request.
        what: String,
        /// etcd's error body.
        failure: EtcdFailure,
    },
    /// HTTP 401: the user or password (HTTP basic auth) was refused.
    #[error("etcd v2 {what}: refused our credentials (HTTP 401): {body}")]
    Unauthorized {
        /// The request.
        what: String,
        /// etcd's answer, cut to 200 characters.
        body: String,
    },
    /// No endpoint could be connected to.
    #[error("etcd v2 {what}: {reason} (endpoints: {endpoints})")]
    Unreachable {
        /// The request.
        what: String,
        /// Every endpoint tried, comma-separated.
        endpoints: String,
        /// The last connection error.
        reason: String,
    },
    /// No answer within the request deadline (`--etcd-request-timeout`).
    #[error("etcd v2 {what}: no answer within {timeout:?} (endpoints: {endpoints})")]
    Timeout {
        /// The request.
        what: String,
        /// The deadline that passed.
        timeout: Duration,
        /// Every endpoint tried, comma-separated.
        endpoints: String,
    },
    /// An answer that is neither a v2 node nor a v2 error.
    #[error("etcd v2 {what}: unexpected answer from {endpoint} (HTTP {status}): {body}")]
    Protocol {
        /// The request.
        what: String,
        /// The endpoint that answered.
        endpoint: String,
        /// Its HTTP status.
        status: u16,
        /// The answer, cut to 200 characters.
        body: String,
    },
    /// The client cannot be built from the settings (a bad endpoint URL, an
    /// unreadable certificate).
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
