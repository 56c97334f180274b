//! What this process's machines should run, as fleet's agent decides it
//! (`desiredAgentState`), grouped into supervisors: one per replicated job
//! on its machine, one per global unit for all of this process's machines.

use crate::cli::Machine;
use crate::placement::AgentState;
use crate::registry::{Snapshot, TargetState, UnitInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Identifies one unit supervisor of this process.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunnerKey {
    pub name: String,
    /// The machine of a replicated job; `None` for a global unit, which one
    /// supervisor runs for every machine of this process (one Docker
    /// engine, one container name).
    pub machine: Option<String>,
}

/// What one supervisor should do.
#[derive(Debug, Clone)]
pub struct Want {
    pub unit: Arc<UnitInfo>,
    /// Target-state `launched` (else `loaded`: stopped, but reported).
    pub launched: bool,
    /// The machines that report its state.
    pub machines: BTreeSet<String>,
}

/// The supervisors this process should have for `snapshot`.
pub fn desired(snapshot: &Snapshot, machines: &[Machine]) -> BTreeMap<RunnerKey, Want> {
    let mut out: BTreeMap<RunnerKey, Want> = BTreeMap::new();
    for m in machines {
        let mut agent = AgentState::new(&m.id, &m.metadata);
        for job in snapshot.jobs.values() {
            let mine = if job.req.global {
                job.req.metadata_matches(&m.metadata)
            } else {
                job.target.as_deref() == Some(m.id.as_str())
            };
            if !mine || agent.has_conflict(&job.name, &job.req.conflicts) {
                continue;
            }
            // Even an inactive unit takes its place here (fleet's agent adds
            // it before it looks at the target state).
            agent.units.insert(&job.name, &job.req);
            if job.target_state == TargetState::Inactive {
                continue;
            }
            let key = RunnerKey {
                name: job.name.clone(),
                machine: (!job.req.global).then(|| m.id.clone()),
            };
            out.entry(key)
                .or_insert_with(|| Want {
                    unit: job.unit.clone(),
                    launched: job.target_state == TargetState::Launched,
                    machines: BTreeSet::new(),
                })
                .machines
                .insert(m.id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Job;
    use crate::systemd;
    use crate::xfleet::Requirements;

    fn job(name: &str, xfleet: &str, state: TargetState, target: Option<&str>) -> Job {
        let text = format!("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n{xfleet}\n");
        let file = systemd::parse(&text);
        Job {
            name: name.into(),
            req: Requirements::of(name, &file),
            unit: Arc::new(UnitInfo {
                hash_hex: "00".into(),
                file,
            }),
            target_state: state,
            target: target.map(str::to_string),
        }
    }

    fn machine(id: &str, md: &[(&str, &str)]) -> Machine {
        Machine {
            id: id.into(),
            metadata: md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn targets_and_globals_group_into_supervisors() {
        let mut snapshot = Snapshot::default();
        for j in [
            job("a.service", "", TargetState::Launched, Some("m1")),
            job("b.service", "", TargetState::Loaded, Some("m2")),
            job("c.service", "", TargetState::Launched, Some("elsewhere")),
            job(
                "g.service",
                "Global=true\nMachineMetadata=role=w",
                TargetState::Launched,
                None,
            ),
            job("off.service", "Global=true", TargetState::Inactive, None),
        ] {
            snapshot.jobs.insert(j.name.clone(), j);
        }
        let ms = [
            machine("m1", &[("role", "w")]),
            machine("m2", &[("role", "w")]),
            machine("m3", &[]),
        ];
        let want = desired(&snapshot, &ms);
        let keys: Vec<(&str, Option<&str>)> = want
            .keys()
            .map(|k| (k.name.as_str(), k.machine.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                ("a.service", Some("m1")),
                ("b.service", Some("m2")),
                ("g.service", None)
            ]
        );
        let global = &want[&RunnerKey {
            name: "g.service".into(),
            machine: None,
        }];
        assert_eq!(global.machines.iter().collect::<Vec<_>>(), ["m1", "m2"]);
        assert!(global.launched);
        let b = want.values().nth(1).expect("b");
        assert!(!b.launched, "loaded is stopped but kept");
    }

    #[test]
    fn a_conflicting_unit_is_left_out_in_name_order() {
        let mut snapshot = Snapshot::default();
        for j in [
            job(
                "a.service",
                "Conflicts=b.service",
                TargetState::Launched,
                Some("m1"),
            ),
            job("b.service", "", TargetState::Launched, Some("m1")),
        ] {
            snapshot.jobs.insert(j.name.clone(), j);
        }
        let want = desired(&snapshot, &[machine("m1", &[])]);
        assert_eq!(want.len(), 1);
        assert!(want.keys().all(|k| k.name == "a.service"));
    }
}
