//! The container registrator every Kaylee server runs, leader or not
//! (docs/design.md §7): it keeps `<prefix>/instances/<machine-id>/<unit>/<container>`
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
pub use docker::{
    Address, DEFAULT_DOCKER_HOST, DOCKER_TIMEOUT, address, connect_docker, container_ip,
    docker_host,
};
pub use error::RegistratorError;
pub use names::{
    MACHINE_ID_PATH, UNIT_LABEL, is_fleet_container, is_valid_container_name, is_valid_machine_id,
    is_valid_unit_name, machine_id, machine_id_from,
};
pub use stats::RegistratorStats;

use crate::etcd::EtcdConfig;
use crate::keys::KayleeKeys;
use crate::registry::AnySource;
use etcd_client::Client;
use stats::bump;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// Keeps this machine's `instances/` (and `health/`) keys in etcd equal to
/// the running containers of Kaylee's fleet units; build it with
/// [`Registrator::new`] and drive it with [`Registrator::run`].
pub struct Registrator {
    docker: Docker,
    client: Client,
    config: EtcdConfig,
    keys: KayleeKeys,
    machine_id: String,
    /// Only containers of fleet units named `<unit_prefix>:…` are Kaylee's.
    unit_prefix: String,
    /// This machine's `machines/<id>/object` in fleet's registry, for the
    /// address of `--net=host` containers.
    machine_object: Option<AnySource>,
    /// What was already said once about a container (by id and topic), so
    /// a resync does not repeat it forever.
    said: Mutex<HashSet<(String, &'static str)>>,
    stats: Arc<RegistratorStats>,
}

/// The keys of one registered container: its IP (exactly the IP, as DNS
/// tools read it) and, beside it, Docker's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub instance: String,
    pub health: String,
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
            keys: KayleeKeys::new(&config.prefix),
            config,
            machine_id,
            unit_prefix: "k".into(),
            machine_object: None,
            said: Mutex::default(),
            stats: Arc::default(),
        })
    }

    /// Registers only containers of fleet units named `<prefix>:…` (the
    /// servers' `--unit-prefix`; default `k`).
    pub fn with_unit_prefix(mut self, prefix: &str) -> Registrator {
        self.unit_prefix = prefix.to_string();
        self
    }

    /// Reads this machine's public IP from `object` (its
    /// `machines/<id>/object` in fleet's registry) for containers on the
    /// host's network.
    pub fn with_machine_object(mut self, object: AnySource) -> Registrator {
        self.machine_object = Some(object);
        self
    }

    /// Logs `message` about container `id` the first time only.
    fn say_once(&self, id: &str, topic: &'static str, message: &str) {
        let first = match self.said.lock() {
            Ok(mut said) => said.insert((id.to_string(), topic)),
            Err(_) => true,
        };
        if first {
            info!(container = %id, "{message}");
        }
    }

    /// `<prefix>/registrators/<machine-id>`: this machine's containers are
    /// registered (on the server's lease).
    pub fn presence_key(&self) -> String {
        self.keys.registrator(&self.machine_id)
    }

    /// `<prefix>/health/<machine-id>/`.
    pub fn health_prefix(&self) -> String {
        self.keys.machine_healths(&self.machine_id)
    }

    /// The machine id the keys are under (checked by [`Registrator::new`]),
    /// normally fleet's and systemd's `/etc/machine-id`.
    pub fn machine_id(&self) -> &str {
        &self.machine_id
    }

    /// The counters, shared: they keep counting across `run` calls.
    pub fn stats(&self) -> Arc<RegistratorStats> {
        self.stats.clone()
    }

    /// `<prefix>/instances/<machine-id>/`: every key this registrator owns
    /// is under it.
    pub fn instances_prefix(&self) -> String {
        self.keys.machine_instances(&self.machine_id)
    }

    /// The key for `container` (without Docker's leading `/`) of `unit`.
    pub fn instance_key(&self, unit: &str, container: &str) -> String {
        self.keys.instance(&self.machine_id, unit, container)
    }

    /// The keys for a container, or `None` when it is not one of Kaylee's
    /// fleet units (logged once) or its label value or name cannot be used
    /// in a key (logged and counted).
    fn keys_for(&self, id: &str, unit: Option<&str>, name: Option<&str>) -> Option<Keys> {
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
            Some(name) if is_valid_container_name(name) => {
                if !is_fleet_container(name, &self.unit_prefix, unit) {
                    self.say_once(
                        id,
                        "foreign",
                        &format!(
                            "labelled {UNIT_LABEL}={unit} but not named as a fleet unit of it ({}_{unit}_<hash>_<group>_<n>); not registered",
                            self.unit_prefix
                        ),
                    );
                    return None;
                }
                Some(Keys {
                    instance: self.instance_key(unit, name),
                    health: self.keys.health(&self.machine_id, unit, name),
                })
            }
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
