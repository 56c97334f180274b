//! What is known of one unit's fleet jobs, read from the caches: their
//! unit hash and target-state and where fleet scheduled them (`job/`), what
//! each machine's agent reports (`states/`), and whether each container is
//! registered and healthy (Kaylee's `instances/` and `health/`), joined
//! with the cluster's live machines.

use super::availability::{Health, ObservedJob, Placement, Registration};
use super::cluster::{Cluster, parse_machine};
use crate::fleet::records::{parse_job_object, parse_unit_state};
use crate::fleet::{FleetName, container_name};
use crate::keys::{FleetKeys, JobField, KayleeKeys};
use crate::runtime::Cache;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// The caches a unit's jobs are read from.
pub struct Caches<'a> {
    /// fleet's registry layout: job and state keys, and the unit prefix.
    pub fleet: &'a FleetKeys,
    /// Kaylee's own layout: where `instances/` and `health/` are.
    pub kaylee: &'a KayleeKeys,
    /// `job/<name>/object`, `target`, and `target-state` while not
    /// `launched`.
    pub jobs: &'a Cache,
    /// fleet's `states/<name>/<machine>`: what each agent reports.
    pub states: &'a Cache,
    /// Kaylee's `instances/<machine>/<unit>/<container>` → IP, written by
    /// each machine's registrator.
    pub instances: &'a Cache,
    /// Kaylee's `health/<machine>/<unit>/<container>` → Docker's health
    /// (`healthy`, `unhealthy`, `starting`, or `none`).
    pub health: &'a Cache,
}

/// The fleet jobs of `unit` that Kaylee owns (names that parse with the
/// unit prefix), unstamped: ages and ready times are the timeline's.
pub fn observe(unit: &str, caches: &Caches<'_>, cluster: &Cluster) -> Vec<ObservedJob> {
    let keys = caches.fleet;
    let mut found: BTreeMap<String, ObservedJob> = BTreeMap::new();
    let mut stopped: HashSet<String> = HashSet::new();
    let mut targets: HashMap<String, String> = HashMap::new();
    for (key, value) in caches.jobs.entries_of(unit) {
        let Some((fleet_name, field)) = keys.parse_job(&key) else {
            continue;
        };
        if super::jobs::means_stopped(field) {
            stopped.insert(fleet_name.to_string());
            continue;
        }
        match field {
            JobField::TargetState => {}
            JobField::Target => {
                let machine = String::from_utf8_lossy(&value.bytes).trim().to_string();
                if !machine.is_empty() {
                    targets.insert(fleet_name.to_string(), machine);
                }
            }
            JobField::Object => {
                let Some(name) =
                    FleetName::parse(fleet_name, &keys.unit_prefix).filter(|n| n.unit == unit)
                else {
                    continue;
                };
                // An object Kaylee cannot read still names a job: a zero
                // hash makes the decision replace it rather than ignore it.
                let unit_hash = parse_job_object(&value.bytes)
                    .map(|(_, h)| h)
                    .unwrap_or([0; 20]);
                found.insert(
                    fleet_name.to_string(),
                    ObservedJob {
                        name,
                        unit_hash,
                        stopped: false,
                        age: Duration::ZERO,
                        target: None,
                        placements: Vec::new(),
                    },
                );
            }
        }
    }
    let registered = placements_of(caches.instances, &caches.kaylee.instances(), unit);
    let health: HashMap<(String, String), Health> =
        placements_of(caches.health, &caches.kaylee.healths(), unit)
            .into_iter()
            .map(|(k, v)| (k, parse_health(&v)))
            .collect();
    for (key, value) in caches.states.entries_of(unit) {
        let Some((fleet_name, machine)) = keys.parse_state(&key) else {
            continue;
        };
        let Some(job) = found.get_mut(fleet_name) else {
            continue;
        };
        let state = parse_unit_state(&value.bytes).unwrap_or_default();
        let container = container_name(fleet_name);
        let at = (machine.to_string(), container);
        // Registered once both keys are here: the registrator writes them in
        // one transaction, but the two informers may see them apart.
        let registration = match (
            registered.contains_key(&at),
            health.get(&at),
            cluster.registers(machine),
        ) {
            (true, Some(h), _) => Registration::Registered(*h),
            (_, _, true) => Registration::Missing,
            (_, _, false) => Registration::Unwatched,
        };
        job.placements.push(Placement {
            machine: machine.to_string(),
            current_text: state.hash().is_none_or(|h| h == job.unit_hash),
            active: state.active,
            sub: state.sub,
            live: cluster.is_live(machine),
            registration,
            ready_for: None,
        });
    }
    found
        .into_iter()
        .map(|(fleet_name, mut job)| {
            job.stopped = stopped.contains(&fleet_name);
            job.target = targets.remove(&fleet_name);
            job
        })
        .collect()
}

/// `(machine, container)` → value of a unit's keys under `dir`.
fn placements_of(cache: &Cache, dir: &str, unit: &str) -> HashMap<(String, String), Vec<u8>> {
    cache
        .entries_of(unit)
        .into_iter()
        .filter_map(|(key, value)| {
            let (machine, _, container) = KayleeKeys::parse_placement(dir, &key)?;
            Some((
                (machine.to_string(), container.to_string()),
                value.bytes.to_vec(),
            ))
        })
        .collect()
}

/// A `health/` value as the registrator writes it (Docker's own words, or
/// `none` without a healthcheck).
pub fn parse_health(value: &[u8]) -> Health {
    match value {
        b"healthy" => Health::Healthy,
        b"unhealthy" => Health::Unhealthy,
        b"starting" => Health::Starting,
        _ => Health::None,
    }
}

/// The cluster from the machines and registrators caches.
pub fn cluster(
    fleet: &FleetKeys,
    machines: &Cache,
    kaylee: &KayleeKeys,
    registrators: &Cache,
) -> Cluster {
    let mut c = Cluster::default();
    for id in machines.names() {
        let key = format!("{}{id}/object", fleet.machines());
        if let Some(info) = machines.get(&key).and_then(|v| parse_machine(&v.bytes)) {
            c.machines.insert(id, info);
        }
    }
    let dir = kaylee.registrators();
    c.registrators = registrators
        .names()
        .into_iter()
        .filter(|m| registrators.get(&format!("{dir}{m}")).is_some())
        .collect::<BTreeSet<_>>();
    c
}
