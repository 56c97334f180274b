//! What can go wrong in the registrator.

use crate::etcd::EtcdError;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RegistratorError {
    #[error("Docker host {host:?}: {reason}")]
    DockerHost { host: String, reason: String },
    #[error("no Docker engine answered at {host}: {reason}")]
    NoDockerEngine { host: String, reason: String },
    #[error("Docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("Docker did not answer within {0:?}")]
    DockerTimeout(Duration),
    #[error("the Docker event stream ended")]
    EventStreamEnded,
    #[error("machine id: {0}")]
    MachineId(String),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
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
