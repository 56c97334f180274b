//! The reconcile plan (DESIGN §5): a pure function from what a unit asks
//! for and what fleet has, to the next writes. Level-triggered: it looks only
//! at the present state, so running it again on the same state plans the
//! same (or nothing), and a new leader continues any rollout where the old
//! one stopped.

use crate::fleet::records::UnitHash;
use crate::fleet::{FleetName, FleetUnit, Rendered};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// One fleet unit of this Kaylee unit, as observed in fleet's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedJob {
    pub name: FleetName,
    pub unit_hash: UnitHash,
    /// Machines whose fleet agent reports it `active`/`running`.
    pub running_on: u32,
    /// Since this leader first saw the job.
    pub age: Duration,
    /// Since this leader first saw it running, if it runs.
    pub running_for: Option<Duration>,
    /// Its target-state is not `launched`: stopped or unloaded outside
    /// Kaylee (`fleetctl stop`).
    pub stopped: bool,
}

impl ObservedJob {
    pub fn running(&self) -> bool {
        self.running_on > 0
    }
}

/// What `/kaylee/units/<name>` asks for.
#[derive(Debug, Clone, Copy)]
pub enum Desired<'a> {
    /// The key is gone: every fleet unit of the name goes.
    Absent,
    /// The value does not parse or validate: touch nothing.
    Invalid,
    Present {
        rendered: &'a Rendered,
        startup_delay: Duration,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    #[default]
    Converged,
    Creating,
    Scaling,
    RollingUpdate,
    Replacing,
    /// Fleet units stopped outside Kaylee are started again.
    Relaunching,
    Deleting,
    Deleted,
    Invalid,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub destroy: Vec<String>,
    pub create: Vec<FleetUnit>,
    /// Look again after this long even if nothing changes (a start timeout or
    /// a startup delay is running).
    pub requeue_after: Option<Duration>,
    /// The new unit a rolling update waits for.
    pub waiting_for: Option<String>,
    pub phase: Phase,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.destroy.is_empty() && self.create.is_empty()
    }

    /// `observed` as this plan's writes leave it: what a status written in
    /// the same transaction as the writes must report. New jobs are just
    /// created: not running, age zero; relaunched ones are launched again.
    pub fn applied_to(&self, observed: &[ObservedJob]) -> Vec<ObservedJob> {
        let gone: HashSet<&str> = self.destroy.iter().map(String::as_str).collect();
        let written: HashSet<&FleetName> = self.create.iter().map(|u| &u.name).collect();
        let kept = observed
            .iter()
            .filter(|o| gone.is_empty() || !gone.contains(o.name.to_name().as_str()))
            .map(|o| match o.stopped && written.contains(&o.name) {
                true => ObservedJob {
                    stopped: false,
                    age: Duration::ZERO,
                    ..o.clone()
                },
                false => o.clone(),
            });
        let existing: HashSet<&FleetName> = observed.iter().map(|o| &o.name).collect();
        let created = self
            .create
            .iter()
            .filter(|u| !existing.contains(&u.name))
            .map(|u| ObservedJob {
                name: u.name.clone(),
                unit_hash: u.hash,
                running_on: 0,
                age: Duration::ZERO,
                running_for: None,
                stopped: false,
            });
        kept.chain(created).collect()
    }
}

pub fn plan(desired: Desired<'_>, observed: &[ObservedJob], start_timeout: Duration) -> Plan {
    match desired {
        Desired::Invalid => Plan {
            phase: Phase::Invalid,
            ..Plan::default()
        },
        Desired::Absent => Plan {
            destroy: observed.iter().map(|o| o.name.to_name()).collect(),
            phase: if observed.is_empty() {
                Phase::Deleted
            } else {
                Phase::Deleting
            },
            ..Plan::default()
        },
        Desired::Present {
            rendered,
            startup_delay,
        } => present(rendered, startup_delay, observed, start_timeout),
    }
}

fn present(
    r: &Rendered,
    delay: Duration,
    observed: &[ObservedJob],
    start_timeout: Duration,
) -> Plan {
    let mut plan = rollout(r, delay, observed, start_timeout);
    // A current unit stopped by hand is what the unit asks for in every
    // way but its target-state: writing its records again launches it.
    let stopped: HashMap<&FleetName, UnitHash> = observed
        .iter()
        .filter(|o| o.stopped)
        .map(|o| (&o.name, o.unit_hash))
        .collect();
    if stopped.is_empty() {
        return plan;
    }
    let relaunch: Vec<FleetUnit> = r
        .units
        .iter()
        .filter(|u| stopped.get(&u.name) == Some(&u.hash))
        .cloned()
        .collect();
    if !relaunch.is_empty() {
        if plan.is_empty() {
            plan.phase = Phase::Relaunching;
        }
        plan.create.extend(relaunch);
    }
    plan
}

/// Creates and destroys toward `r`: create what is missing, scale, or roll
/// from an older template surge-one.
fn rollout(
    r: &Rendered,
    delay: Duration,
    observed: &[ObservedJob],
    start_timeout: Duration,
) -> Plan {
    let want: HashMap<String, &FleetUnit> = r.units.iter().map(|u| (u.name.to_name(), u)).collect();
    let mut plan = Plan::default();
    let mut current: Vec<&ObservedJob> = Vec::new();
    let mut old: Vec<&ObservedJob> = Vec::new();
    // Names that exist in fleet now, in any form; never created this round.
    let mut taken: HashSet<String> = HashSet::new();
    for o in observed {
        let name = o.name.to_name();
        match want.get(&name) {
            Some(u) if u.hash == o.unit_hash => current.push(o),
            // Same name, other text (edited by hand, or an older Kaylee):
            // replace it, recreating once the old one is gone.
            Some(_) => plan.destroy.push(name.clone()),
            // This template, but scaled away.
            None if o.name.spec_hash == r.spec_hash => plan.destroy.push(name.clone()),
            None => old.push(o),
        }
        taken.insert(name);
    }
    let missing: Vec<&FleetUnit> = r
        .units
        .iter()
        .filter(|u| !taken.contains(&u.name.to_name()))
        .collect();

    if r.layout.replaces_in_place() {
        if !old.is_empty() {
            plan.destroy.extend(old.iter().map(|o| o.name.to_name()));
            plan.phase = Phase::Replacing;
            return plan;
        }
        plan.create = missing.into_iter().cloned().collect();
        if !plan.is_empty() {
            plan.phase = Phase::Creating;
        }
        return plan;
    }

    if old.is_empty() {
        plan.create = missing.into_iter().cloned().collect();
        if !plan.is_empty() {
            plan.phase = if current.is_empty() {
                Phase::Creating
            } else {
                Phase::Scaling
            };
        }
        return plan;
    }

    // Rolling update, surge one: a new unit must be ready (running for
    // `startupDelay`, or past the start timeout) before an old one goes,
    // and only one new unit is on its way at a time.
    plan.phase = Phase::RollingUpdate;
    let pending = current
        .iter()
        .filter_map(|c| time_to_ready(c, delay, start_timeout).map(|t| (t, c)))
        .min_by_key(|(t, c)| (*t, c.name.replica));
    if let Some((wait, c)) = pending {
        plan.requeue_after = Some(wait);
        plan.waiting_for = Some(c.name.to_name());
        return plan;
    }
    let total = current.len() + old.len();
    let desired = r.units.len();
    if total > desired {
        // Stopped ones first: they serve nobody. Then the highest replicas.
        old.sort_by_key(|o| {
            (
                o.running(),
                std::cmp::Reverse(o.name.replica),
                o.name.to_name(),
            )
        });
        let surplus = (total - desired).min(old.len());
        plan.destroy
            .extend(old[..surplus].iter().map(|o| o.name.to_name()));
    } else if let Some(next) = missing.first() {
        plan.create.push((*next).clone());
    }
    plan
}

/// How long until a new unit counts as ready; `None` when it is.
fn time_to_ready(job: &ObservedJob, delay: Duration, start_timeout: Duration) -> Option<Duration> {
    let left = match job.running_for {
        Some(running) => delay.saturating_sub(running),
        None => (start_timeout + delay).saturating_sub(job.age),
    };
    (!left.is_zero()).then_some(left)
}

#[cfg(test)]
mod tests;
