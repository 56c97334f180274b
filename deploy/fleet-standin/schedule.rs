//! One round of fleet's engine as a pure plan: which jobs to unschedule
//! and where to schedule the others (fleet v1.0.0's `engine/reconciler.go`
//! with its least-loaded scheduler), unit-tested without etcd.

use crate::placement::AgentState;
use crate::registry::{Job, MachineEntry, TargetState};
use std::collections::BTreeMap;

/// A change to one job's `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Delete `job/<job>/target` if it still names `machine`.
    Unschedule {
        job: String,
        machine: String,
        reason: String,
    },
    /// Create `job/<job>/target` = `machine`.
    Schedule { job: String, machine: String },
}

/// The tasks of one engine round, in the order fleet sends them: every
/// unschedule (jobs by name), then every schedule (jobs by name).
pub fn plan(jobs: &BTreeMap<String, Job>, machines: &BTreeMap<String, MachineEntry>) -> Vec<Task> {
    let mut agents: BTreeMap<&str, AgentState<'_>> = machines
        .iter()
        .map(|(id, m)| (id.as_str(), AgentState::new(id, &m.metadata)))
        .collect();
    let (globals, scheduled): (Vec<&Job>, Vec<&Job>) = jobs.values().partition(|j| j.req.global);
    let mut targets: BTreeMap<&str, Option<&str>> = scheduled
        .iter()
        .map(|j| (j.name.as_str(), j.target.as_deref()))
        .collect();
    for j in &scheduled {
        if j.target_state == TargetState::Inactive {
            continue;
        }
        if let Some(agent) = j.target.as_deref().and_then(|t| agents.get_mut(t)) {
            agent.units.insert(&j.name, &j.req);
        }
    }
    // Global units count on every machine they would run on.
    for g in &globals {
        for agent in agents.values_mut() {
            if g.req.metadata_matches(agent.metadata)
                && !agent.has_conflict(&g.name, &g.req.conflicts)
            {
                agent.units.insert(&g.name, &g.req);
            }
        }
    }

    let mut tasks = Vec::new();
    for j in &scheduled {
        let Some(target) = targets[j.name.as_str()] else {
            continue;
        };
        let reason = if j.target_state == TargetState::Inactive {
            "target state inactive".to_string()
        } else {
            match agents.get(target) {
                None => format!("target Machine({target}) went away"),
                Some(a) if !a.able_to_run(&j.name, &j.req) => {
                    format!("target Machine({target}) unable to run unit")
                }
                Some(_) => continue,
            }
        };
        tasks.push(Task::Unschedule {
            job: j.name.clone(),
            machine: target.to_string(),
            reason,
        });
        targets.insert(&j.name, None);
        if let Some(a) = agents.get_mut(target) {
            a.units.remove(j.name.as_str());
        }
    }

    for j in &scheduled {
        if targets[j.name.as_str()].is_some() || j.target_state == TargetState::Inactive {
            continue;
        }
        let mut order: Vec<(usize, &str)> =
            agents.values().map(|a| (a.units.len(), a.id)).collect();
        order.sort();
        let chosen = order
            .into_iter()
            .map(|(_, id)| id)
            .find(|id| agents[id].able_to_run(&j.name, &j.req));
        let Some(machine) = chosen else { continue };
        tasks.push(Task::Schedule {
            job: j.name.clone(),
            machine: machine.to_string(),
        });
        targets.insert(&j.name, Some(machine));
        if let Some(a) = agents.get_mut(machine) {
            a.units.insert(&j.name, &j.req);
        }
    }
    tasks
}

#[cfg(test)]
mod tests;
