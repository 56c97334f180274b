//! What fleet has for one Kaylee unit, read from the jobs and states caches,
//! with how long this leader has seen each job (for start timeouts and
//! startup delays).

use super::plan::ObservedJob;
use crate::fleet::FleetName;
use crate::fleet::records::{parse_job_object, state_is_running};
use crate::keys::{FleetKeys, JobField};
use crate::runtime::Cache;
use dashmap::DashMap;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Seen {
    first: Instant,
    running_since: Option<Instant>,
}

/// Per unit, when each of its fleet jobs was first seen and first seen
/// running. Only the worker reconciling that unit touches its entry.
#[derive(Default)]
pub struct Timeline {
    units: DashMap<String, HashMap<String, Seen>>,
}

impl Timeline {
    pub fn forget(&self, unit: &str) {
        self.units.remove(unit);
    }
}

/// The fleet jobs of `unit` that Kaylee owns (names that parse with the
/// unit prefix), with their unit hash and where they run.
pub fn observe(
    unit: &str,
    keys: &FleetKeys,
    jobs: &Cache,
    states: &Cache,
    timeline: &Timeline,
) -> Vec<ObservedJob> {
    let mut found: BTreeMap<String, (FleetName, [u8; 20])> = BTreeMap::new();
    // The jobs cache holds a target-state only when it is not `launched`.
    let mut stopped: HashSet<String> = HashSet::new();
    for (key, value) in jobs.entries_of(unit) {
        let Some((fleet_name, field)) = keys.parse_job(&key) else {
            continue;
        };
        if field == JobField::TargetState {
            stopped.insert(fleet_name.to_string());
            continue;
        }
        if field != JobField::Object {
            continue;
        }
        let Some(name) = FleetName::parse(fleet_name, &keys.unit_prefix).filter(|n| n.unit == unit)
        else {
            continue;
        };
        // An object Kaylee cannot read still names a job: a zero hash
        // makes the planner replace it rather than ignore it.
        let hash = parse_job_object(&value.bytes)
            .map(|(_, h)| h)
            .unwrap_or([0; 20]);
        found.insert(fleet_name.to_string(), (name, hash));
    }
    let mut running: HashMap<String, u32> = HashMap::new();
    for (key, value) in states.entries_of(unit) {
        if let Some((fleet_name, _machine)) = keys.parse_state(&key)
            && state_is_running(&value.bytes)
        {
            *running.entry(fleet_name.to_string()).or_default() += 1;
        }
    }

    let now = Instant::now();
    let before = timeline
        .units
        .get(unit)
        .map(|m| m.clone())
        .unwrap_or_default();
    let mut after = HashMap::with_capacity(found.len());
    let observed = found
        .into_iter()
        .map(|(fleet_name, (name, unit_hash))| {
            let running_on = running.get(&fleet_name).copied().unwrap_or(0);
            let mut seen = before.get(&fleet_name).copied().unwrap_or(Seen {
                first: now,
                running_since: None,
            });
            seen.running_since = match (running_on > 0, seen.running_since) {
                (true, since) => Some(since.unwrap_or(now)),
                (false, _) => None,
            };
            let stopped = stopped.contains(&fleet_name);
            if stopped {
                // Launched again, it gets a whole start timeout from then.
                seen = Seen {
                    first: now,
                    running_since: None,
                };
            }
            after.insert(fleet_name, seen);
            ObservedJob {
                stopped,
                name,
                unit_hash,
                running_on,
                age: now - seen.first,
                running_for: seen.running_since.map(|t| now - t),
            }
        })
        .collect();
    if after.is_empty() {
        timeline.units.remove(unit);
    } else {
        timeline.units.insert(unit.to_string(), after);
    }
    observed
}
