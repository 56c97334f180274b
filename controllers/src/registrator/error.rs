//! What can go wrong in the registrator.

use crate::etcd::EtcdError;
use std::time::Duration;
use thiserror::Error;

/// Why the registrator could not start, or why one pass of its loop ended.
///
/// [`Registrator::run`](super::Registrator::run) logs and retries every
/// variant but [`RegistratorError::LeaseGone`], which it returns; the
/// constructors ([`connect_docker`](super::connect_docker),
/// [`machine_id`](super::machine_id), [`Registrator::new`](super::Registrator::new))
/// return theirs to the caller.
#[derive(Debug, Error)]
pub enum RegistratorError {
    /// The Docker host could not be turned into a client (an unsupported
    /// scheme or malformed address); nothing was contacted.
    #[error("Docker host {host:?}: {reason}")]
    DockerHost {
        /// The host as given (flag, `$DOCKER_HOST` or the default).
        host: String,
        /// The client library's message.
        reason: String,
    },
    /// The Docker socket does not exist, or the engine there did not
    /// negotiate an API version within [`DOCKER_TIMEOUT`](super::DOCKER_TIMEOUT).
    #[error("no Docker engine answered at {host}: {reason}")]
    NoDockerEngine {
        /// The host as given (flag, `$DOCKER_HOST` or the default).
        host: String,
        /// What failed: the client's error, or `no answer within …`.
        reason: String,
    },
    /// A Docker request failed; a 404 (no such container) is one of these.
    #[error("Docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// A Docker request (not the event stream) took longer than this
    /// deadline, [`DOCKER_TIMEOUT`](super::DOCKER_TIMEOUT).
    #[error("Docker did not answer within {0:?}")]
    DockerTimeout(Duration),
    /// Docker closed the event stream; the registrator reconnects and
    /// resyncs.
    #[error("the Docker event stream ended")]
    EventStreamEnded,
    /// The machine id is missing or unusable as an etcd key segment; the
    /// text says where it came from (`--machine-id` or `/etc/machine-id`).
    #[error("machine id: {0}")]
    MachineId(String),
    /// An etcd read or write failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// etcd refused a write because this lease id does not exist (it
    /// expired or was revoked); call `run` again with a new lease.
    #[error("etcd lease {0:x} no longer exists; registration needs a new lease")]
    LeaseGone(i64),
}

/// `LeaseGone` when etcd refused a write because the lease does not exist.
pub(super) fn lease_error(e: EtcdError, lease: i64) -> RegistratorError {
    match &e {
        EtcdError::Client(etcd_client::Error::GRpcStatus(s))
            if s.code() == tonic::Code::NotFound && s.message().contains("lease not found") =>
        {
            RegistratorError::LeaseGone(lease)
        }
        _ => e.into(),
    }
}
