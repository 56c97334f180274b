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

mod docker;
mod names;
mod sync;

/// The Docker client type [`connect_docker`] returns.
pub use bollard::Docker;
pub use docker::{DEFAULT_DOCKER_HOST, DOCKER_TIMEOUT, connect_docker, container_ip, docker_host};
pub use names::{
    MACHINE_ID_PATH, UNIT_LABEL, is_valid_container_name, is_valid_machine_id, is_valid_unit_name,
    machine_id, machine_id_from,
};

use crate::etcd::{EtcdConfig, EtcdError};
use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use bollard::models::{ContainerInspectResponse, EventMessage};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use sync::{Change, Current};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Most operations put in one etcd transaction (etcd refuses more than 128
/// by default).
const MAX_TXN_OPS: usize = 64;

/// How far back the event stream asks Docker to replay from, to cover the
/// moment between opening the stream and Docker subscribing it.
const EVENT_REPLAY: Duration = Duration::from_secs(2);

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

/// Counters for export as metrics.
#[derive(Debug, Default)]
pub struct RegistratorStats {
    /// Keys put: a new container, a changed IP, or a key moved onto a new
    /// lease.
    pub registrations: AtomicU64,
    /// Keys deleted.
    pub deregistrations: AtomicU64,
    /// Failures to register or deregister: an etcd write or Docker request
    /// that failed, or a labelled container whose label value or name cannot
    /// be used in a key.
    pub registration_errors: AtomicU64,
    /// Resyncs completed.
    pub resyncs: AtomicU64,
}

/// Counts in the stats and in the exported metric of the same meaning.
fn bump(counter: &AtomicU64, metric: &'static str) {
    counter.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(metric).increment(1);
}

/// What Docker says a container should have registered right now.
enum Observed {
    /// Running, with an IP: this key should hold this IP.
    Registered { key: String, ip: String },
    /// Gone, stopped, without an IP or not registrable: no key.
    Absent,
}

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

    /// Registers the local containers on `lease_id` until `stop` is
    /// cancelled. Docker and etcd failures are logged and retried with
    /// backoff (each retry starting with a resync). Returns `Ok` once
    /// stopped, or [`RegistratorError::LeaseGone`] when etcd reports that
    /// the lease no longer exists: call `run` again with a new lease.
    pub async fn run(
        &self,
        lease_id: i64,
        stop: CancellationToken,
    ) -> Result<(), RegistratorError> {
        let mut backoff = ExponentialBackoff {
            initial_interval: Duration::from_millis(200),
            max_interval: Duration::from_secs(15),
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        info!(
            machine_id = %self.machine_id,
            lease = %format_args!("{lease_id:x}"),
            "registrator starting"
        );
        loop {
            let outcome = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                r = self.watch(lease_id, &mut backoff) => r,
            };
            let Err(e) = outcome;
            if matches!(e, RegistratorError::LeaseGone(_)) {
                warn!(error = %e, "registrator stopping");
                return Err(e);
            }
            let delay = backoff.next_backoff().unwrap_or(backoff.max_interval);
            warn!(error = %e, retry_in = ?delay, "registrator: will reconnect and resync");
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        info!(machine_id = %self.machine_id, "registrator stopped");
        Ok(())
    }

    /// One connection: open the event stream, resync, then follow events
    /// until something fails.
    async fn watch(
        &self,
        lease: i64,
        backoff: &mut ExponentialBackoff,
    ) -> Result<Infallible, RegistratorError> {
        let mut events = self.docker.events(Some(EventsOptions {
            since: Some(replay_since()),
            until: None,
            filters: Some(HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("label".to_string(), vec![UNIT_LABEL.to_string()]),
                (
                    "event".to_string(),
                    vec!["start".into(), "die".into(), "rename".into()],
                ),
            ])),
        }));
        // Subscribe before listing: the stream is polled (so its request
        // goes out) while the list runs, and what it delivers meanwhile is
        // kept to apply after the resync.
        let mut early = Vec::new();
        let desired = {
            let list = self.desired();
            tokio::pin!(list);
            loop {
                tokio::select! {
                    biased;
                    ev = events.next() => match ev {
                        Some(ev) => early.push(ev?),
                        None => return Err(RegistratorError::EventStreamEnded),
                    },
                    desired = &mut list => break desired?,
                }
            }
        };
        self.resync(lease, &desired).await?;
        backoff.reset();
        for ev in early {
            self.on_event(lease, ev).await?;
        }
        while let Some(ev) = events.next().await {
            self.on_event(lease, ev?).await?;
        }
        Err(RegistratorError::EventStreamEnded)
    }

    /// The keys the running labelled containers call for, key → IP.
    async fn desired(&self) -> Result<BTreeMap<String, String>, RegistratorError> {
        let options = ListContainersOptions {
            filters: Some(HashMap::from([
                ("label".to_string(), vec![UNIT_LABEL.to_string()]),
                ("status".to_string(), vec!["running".to_string()]),
            ])),
            ..Default::default()
        };
        let containers = docker::timed(self.docker.list_containers(Some(options))).await?;
        let mut desired = BTreeMap::new();
        for c in containers {
            let id = c.id.as_deref().unwrap_or("?");
            let unit = c.labels.as_ref().and_then(|l| l.get(UNIT_LABEL));
            let name = docker::own_name(c.names.as_deref());
            let Some(key) = self.key_for(id, unit.map(String::as_str), name) else {
                continue;
            };
            let networks = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref());
            match container_ip(networks) {
                Some(ip) => {
                    desired.insert(key, ip);
                }
                None => {
                    info!(container = %id, key = %key, "container has no IP yet; not registered")
                }
            }
        }
        Ok(desired)
    }

    /// Makes this machine's keys match `desired` exactly, in one diff.
    async fn resync(
        &self,
        lease: i64,
        desired: &BTreeMap<String, String>,
    ) -> Result<(), RegistratorError> {
        let prefix = self.instances_prefix();
        let mut kv = self.client.kv_client();
        let found = self
            .config
            .timed(kv.get(prefix.as_str(), Some(GetOptions::new().with_prefix())))
            .await?;
        let current: Vec<Current> = found
            .kvs()
            .iter()
            .map(|kv| Current {
                key: kv.key().to_vec(),
                value: kv.value().to_vec(),
                lease: kv.lease(),
            })
            .collect();
        let changes = sync::plan(&current, desired, lease);
        for chunk in changes.chunks(MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|c| match c {
                    Change::Put { key, ip, .. } => TxnOp::put(
                        key.as_str(),
                        ip.as_str(),
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                    Change::Delete { key } => TxnOp::delete(key.clone(), None),
                })
                .collect();
            if let Err(e) = self.config.timed(kv.txn(Txn::new().and_then(ops))).await {
                bump(
                    &self.stats.registration_errors,
                    "kaylee_registration_errors_total",
                );
                return Err(lease_error(e, lease));
            }
            for change in chunk {
                match change {
                    Change::Put { key, ip, previous } => {
                        bump(&self.stats.registrations, "kaylee_registrations_total");
                        match previous {
                            Some(prev) => {
                                info!(key = %key, ip = %ip, previous = %prev, "registered container (resync)")
                            }
                            None => info!(key = %key, ip = %ip, "registered container (resync)"),
                        }
                    }
                    Change::Delete { key } => {
                        bump(&self.stats.deregistrations, "kaylee_deregistrations_total");
                        info!(key = %String::from_utf8_lossy(key), "deregistered stale key (resync)");
                    }
                }
            }
        }
        bump(&self.stats.resyncs, "kaylee_registrator_resyncs_total");
        info!(
            machine_id = %self.machine_id,
            containers = desired.len(),
            changes = changes.len(),
            "resynced registrations"
        );
        Ok(())
    }

    /// Brings the key of the container an event is about in line with what
    /// Docker reports for it now.
    async fn on_event(&self, lease: i64, ev: EventMessage) -> Result<(), RegistratorError> {
        let action = ev.action.as_deref().unwrap_or("");
        let Some(actor) = ev.actor else {
            return Ok(());
        };
        let Some(id) = actor.id.filter(|id| !id.is_empty()) else {
            return Ok(());
        };
        let attributes = actor.attributes.unwrap_or_default();
        let unit = attributes.get(UNIT_LABEL).map(String::as_str);
        debug!(action, container = %id, "docker event");
        // Keys the event's names point at; the container may hold none of
        // them any more.
        let mut named = Vec::new();
        for attribute in ["name", "oldName"] {
            let name = attributes.get(attribute).map(|n| n.trim_start_matches('/'));
            if let (Some(unit), Some(name)) = (unit, name)
                && is_valid_unit_name(unit)
                && is_valid_container_name(name)
            {
                named.push(self.instance_key(unit, name));
            }
        }
        let observed = self.observe(&id).await?;
        for key in named {
            if !matches!(&observed, Observed::Registered { key: k, .. } if *k == key) {
                self.deregister(&key).await?;
            }
        }
        if let Observed::Registered { key, ip } = observed {
            self.register(lease, &key, &ip).await?;
        }
        Ok(())
    }

    /// Inspects a container and says which key it should have now.
    async fn observe(&self, id: &str) -> Result<Observed, RegistratorError> {
        let c: ContainerInspectResponse =
            match docker::timed(self.docker.inspect_container(id, None)).await {
                Ok(c) => c,
                Err(e) if docker::is_not_found(&e) => return Ok(Observed::Absent),
                Err(e) => {
                    bump(
                        &self.stats.registration_errors,
                        "kaylee_registration_errors_total",
                    );
                    return Err(e);
                }
            };
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running {
            return Ok(Observed::Absent);
        }
        let unit = c
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(UNIT_LABEL));
        let name = c.name.as_deref().map(|n| n.trim_start_matches('/'));
        let Some(key) = self.key_for(id, unit.map(String::as_str), name) else {
            return Ok(Observed::Absent);
        };
        let networks = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref());
        match container_ip(networks) {
            Some(ip) => Ok(Observed::Registered { key, ip }),
            None => {
                info!(container = %id, key = %key, "container has no IP yet; not registered");
                Ok(Observed::Absent)
            }
        }
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

    async fn register(&self, lease: i64, key: &str, ip: &str) -> Result<(), RegistratorError> {
        let mut kv = self.client.kv_client();
        let put = kv.put(
            key,
            ip,
            Some(PutOptions::new().with_lease(lease).with_prev_key()),
        );
        match self.config.timed(put).await {
            Ok(r) => {
                let unchanged = r
                    .prev_key()
                    .is_some_and(|p| p.value() == ip.as_bytes() && p.lease() == lease);
                if unchanged {
                    debug!(key = %key, ip = %ip, "already registered");
                } else {
                    bump(&self.stats.registrations, "kaylee_registrations_total");
                    info!(key = %key, ip = %ip, "registered container");
                }
                Ok(())
            }
            Err(e) => {
                bump(
                    &self.stats.registration_errors,
                    "kaylee_registration_errors_total",
                );
                Err(lease_error(e, lease))
            }
        }
    }

    async fn deregister(&self, key: &str) -> Result<(), RegistratorError> {
        let mut kv = self.client.kv_client();
        match self.config.timed(kv.delete(key, None)).await {
            Ok(r) => {
                if r.deleted() > 0 {
                    bump(&self.stats.deregistrations, "kaylee_deregistrations_total");
                    info!(key = %key, "deregistered container");
                }
                Ok(())
            }
            Err(e) => {
                bump(
                    &self.stats.registration_errors,
                    "kaylee_registration_errors_total",
                );
                Err(e.into())
            }
        }
    }
}

/// `LeaseGone` when etcd refused a write because the lease does not exist.
fn lease_error(e: EtcdError, lease: i64) -> RegistratorError {
    match &e {
        EtcdError::Client(etcd_client::Error::GRpcStatus(s))
            if s.code() == tonic::Code::NotFound && s.message().contains("lease not found") =>
        {
            RegistratorError::LeaseGone(lease)
        }
        _ => e.into(),
    }
}

/// Docker's `since` for a stream opened now: a little in the past.
fn replay_since() -> String {
    let t = SystemTime::now()
        .checked_sub(EVENT_REPLAY)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}
