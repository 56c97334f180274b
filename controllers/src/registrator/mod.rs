//! The container registrator every Kaylee server runs, leader or not
//! (DESIGN.md §7): it keeps `<prefix>/instances/<machine-id>/<unit>/<container>`
//! → container IP in etcd, for every running local container labelled
//! `kaylee.name=<unit>`, on the server's lease.
//!
//! * On a Docker `start`, `die` or `rename` event for a labelled container,
//!   the container is inspected and its one key made to match what Docker
//!   reports now (put while it runs with an IP, deleted otherwise). Acting on
//!   the current state rather than on the event's verb keeps replayed or
//!   late events harmless.
//! * On start-up and after every reconnect of the event stream, the
//!   registrator resyncs: it lists the running labelled containers and makes
//!   this machine's keys match them exactly, in one diff written in as few
//!   etcd transactions as possible. The event stream is opened before the
//!   list, and asks Docker to replay events from shortly before it, so
//!   nothing happening between the list and the stream is missed.
//! * The keys live on the lease given to [`Registrator::run`]: when the
//!   server dies they vanish with it. After a lease loss the server calls
//!   `run` again with a new lease; the initial resync re-puts every key on
//!   it (a key on another lease counts as different).
//!
//! The loop is in `run`, the handling of one event in `events`, the resync
//! in `sync`; `docker` and `names` reach Docker and check key segments;
//! `error` and `stats` hold the error type and the counters.

mod docker;
mod error;
mod events;
mod names;
mod run;
mod stats;
mod sync;

/// The Docker client type [`connect_docker`] returns.
pub use bollard::Docker;
pub use docker::{DEFAULT_DOCKER_HOST, DOCKER_TIMEOUT, connect_docker, container_ip, docker_host};
pub use error::RegistratorError;
pub use names::{
    MACHINE_ID_PATH, UNIT_LABEL, is_valid_container_name, is_valid_machine_id, is_valid_unit_name,
    machine_id, machine_id_from,
};
pub use stats::RegistratorStats;

use crate::etcd::EtcdConfig;
use etcd_client::Client;
use stats::bump;
use std::sync::Arc;
use tracing::warn;

pub struct Registrator {
    docker: Docker,
    client: Client,
    config: EtcdConfig,
    machine_id: String,
    stats: Arc<RegistratorStats>,
}

impl Registrator {
    /// A registrator for this machine. `machine_id` is checked to be usable
    /// as a key segment (see [`machine_id`] for where it normally comes
    /// from).
    pub fn new(
        docker: Docker,
        client: Client,
        config: EtcdConfig,
        machine_id: String,
    ) -> Result<Registrator, RegistratorError> {
        if !is_valid_machine_id(&machine_id) {
            return Err(RegistratorError::MachineId(format!(
                "{machine_id:?} cannot be used in an etcd key"
            )));
        }
        Ok(Registrator {
            docker,
            client,
            config,
            machine_id,
            stats: Arc::default(),
        })
    }

    pub fn machine_id(&self) -> &str {
        &self.machine_id
    }

    pub fn stats(&self) -> Arc<RegistratorStats> {
        self.stats.clone()
    }

    /// `<prefix>/instances/<machine-id>/`: every key this registrator owns
    /// is under it.
    pub fn instances_prefix(&self) -> String {
        self.config.key(&["instances", &self.machine_id, ""])
    }

    /// The key for `container` (without Docker's leading `/`) of `unit`.
    pub fn instance_key(&self, unit: &str, container: &str) -> String {
        self.config
            .key(&["instances", &self.machine_id, unit, container])
    }

    /// The key for a container, or `None` (logged and counted) when its
    /// label value or name cannot be used in one.
    fn key_for(&self, id: &str, unit: Option<&str>, name: Option<&str>) -> Option<String> {
        let unit = unit?;
        if !is_valid_unit_name(unit) {
            bump(
                &self.stats.registration_errors,
                "kaylee_registration_errors_total",
            );
            warn!(
                container = %id,
                label = %format_args!("{UNIT_LABEL}={unit:?}"),
                "label value is not a valid unit name; container not registered"
            );
            return None;
        }
        match name {
            Some(name) if is_valid_container_name(name) => Some(self.instance_key(unit, name)),
            _ => {
                bump(
                    &self.stats.registration_errors,
                    "kaylee_registration_errors_total",
                );
                warn!(container = %id, name = ?name, "container name cannot be used in a key; container not registered");
                None
            }
        }
    }
}
