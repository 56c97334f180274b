//! The reconcile decision: a pure function from what a unit asks for and
//! what fleet, the registrators and the clock say, to the next fleet writes,
//! the unit's condition and when to look again. Level-triggered: it looks
//! only at the present, so deciding again on the same facts decides the
//! same (or nothing), and a new leader continues a rollout where the old
//! one stopped. `reconcile` does the I/O around it.
//!
//! Rollouts never lower availability (Kubernetes' deployment controller
//! with `maxUnavailable: 0` for start-first, `maxSurge: 0, maxUnavailable:
//! 1` for stop-first): an old replica goes only once a new one is
//! available, unavailable old replicas first; when no new replica becomes
//! available within the progress deadline the rollout stops where it is.

use super::availability::{
    Constraints, JobAvailability, Judging, ObservedJob, Unavailable, assess,
};
use super::cluster::Cluster;
use crate::fleet::{FleetName, FleetUnit, Rendered};
use crate::spec::{OnFailure, RolloutPolicy, UpdateOrder};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// What `/kaylee/units/<name>` asks for.
#[derive(Debug, Clone, Copy)]
pub enum Desired<'a> {
    /// The key is gone: every fleet unit of the name goes.
    Absent,
    /// The value does not parse or validate: touch nothing.
    Invalid,
    /// The value is a valid unit: converge on its rendered fleet units.
    Present(Target<'a>),
}

/// A valid unit: its fleet units, how to roll them and where they may run.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The fleet units the current spec renders to: the desired set.
    pub rendered: &'a Rendered,
    /// `minReadySeconds`, progress deadline, surge, order and what to do
    /// on failure, defaults applied.
    pub policy: RolloutPolicy,
    /// Where its jobs may run, for reasons and a global unit's count.
    pub constraints: Constraints<'a>,
}

/// How the current revision (spec hash and replica count) has fared, as
/// the leader's clock saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Since it last made progress: appeared, had a replica created, or
    /// had one more of its replicas become available.
    pub since: Duration,
    /// It has been fully available at least once (its rollout completed).
    pub complete: bool,
}

/// The facts a decision is made on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Every fleet job Kaylee owns for the unit, any template, with ages
    /// and ready times stamped.
    pub jobs: &'a [ObservedJob],
    /// fleet's live machines and the machines whose registrator runs.
    pub cluster: &'a Cluster,
    /// How the current revision has fared ([`decide`] reads it;
    /// [`decide_tracking`] computes its own).
    pub progress: Progress,
    /// See [`Judging::schedule_grace`].
    pub schedule_grace: Duration,
}

/// What Kaylee is writing (apart from whether the unit serves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Nothing to write: fleet has exactly the desired set (whether it
    /// serves is the [`Condition`]'s).
    #[default]
    Converged,
    /// Creating the current template's units while none of them exists:
    /// a new unit, or a singleton, pinned or global unit whose old unit is
    /// gone.
    Creating,
    /// Adding or removing replicas of the current template (or removing
    /// one whose text was edited by hand), with no old template left.
    Scaling,
    /// Replacing old-template replicas surge-style (replicated units): new
    /// ones created, old ones destroyed as new ones become available.
    RollingUpdate,
    /// Destroying the old unit of a layout that never runs two copies
    /// (singleton, pinned, global) before creating the new one.
    Replacing,
    /// Fleet units stopped outside Kaylee are started again.
    Relaunching,
    /// The unit's key is gone and its fleet units are being destroyed.
    Deleting,
    /// The unit's key is gone and no fleet unit of it is left.
    Deleted,
    /// The unit's value does not parse or validate; its fleet units are
    /// left as they are.
    Invalid,
}

/// Whether the unit serves: "is my service up?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// Every desired replica of the current revision is available.
    Available,
    /// A rollout (or creation, or scale) is under way within its progress
    /// deadline.
    Progressing,
    /// The revision was fully available and has lost some replicas.
    Degraded,
    /// No replica serves, or a rollout made no progress within its
    /// deadline and stopped.
    Failed,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::status::phase_name(*self))
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::status::condition_name(*self))
    }
}

/// The decision on one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Fleet units to destroy: their `job/<name>/` directory is deleted
    /// (the shared `unit/<sha1>` record stays). Every job of a deleted
    /// unit; otherwise surplus jobs (scaled away, or edited by hand) and
    /// the old-template replicas this rollout step retires. Empty: none.
    pub destroy: Vec<FleetName>,
    /// Fleet units to create, with their text (or, when stopped by hand,
    /// to launch again by writing their records anew). Empty: none.
    pub create: Vec<FleetUnit>,
    /// What these writes are doing; [`Phase::Converged`] when there are
    /// none.
    pub phase: Phase,
    /// `None` for an absent or invalid unit.
    pub condition: Option<Condition>,
    /// Replicas asked for: `replicas`, 1, or for a global unit the live
    /// machines that match its metadata.
    pub desired: u32,
    /// Available replicas of any template.
    pub available: u32,
    /// Of those, on the current template.
    pub updated_available: u32,
    /// Replicas fleet reports running on live machines.
    pub running: u32,
    /// Every replica that is not available, with why: the current
    /// template's first, then old ones, then those not created yet.
    pub unavailable: Vec<Unavailable>,
    /// The new unit a rolling update waits for.
    pub waiting_for: Option<String>,
    /// Decide again after this long even if nothing changes: when
    /// `minReadySeconds`, the schedule grace or the progress deadline runs
    /// out. `None`: only a change (or the periodic resync) brings it back.
    pub requeue_after: Option<Duration>,
    /// The rollout failed and the unit asks to be rolled back.
    pub rollback: bool,
}

impl Decision {
    /// Whether the decision writes nothing to fleet.
    pub fn is_empty(&self) -> bool {
        self.destroy.is_empty() && self.create.is_empty()
    }

    /// `jobs` as this decision's writes leave them: what a status written
    /// in the same transaction as the writes must report. New jobs are just
    /// created (no target, no state, age zero); relaunched ones are
    /// launched again.
    pub fn applied_to(&self, jobs: &[ObservedJob]) -> Vec<ObservedJob> {
        let gone: HashSet<&FleetName> = self.destroy.iter().collect();
        let written: HashSet<&FleetName> = self.create.iter().map(|u| &u.name).collect();
        let kept = jobs.iter().filter(|o| !gone.contains(&o.name)).map(|o| {
            match o.stopped && written.contains(&o.name) {
                true => ObservedJob {
                    stopped: false,
                    age: Duration::ZERO,
                    ..o.clone()
                },
                false => o.clone(),
            }
        });
        let existing: HashSet<&FleetName> = jobs.iter().map(|o| &o.name).collect();
        let created = self
            .create
            .iter()
            .filter(|u| !existing.contains(&u.name))
            .map(|u| ObservedJob {
                name: u.name.clone(),
                unit_hash: u.hash,
                stopped: false,
                age: Duration::ZERO,
                target: None,
                placements: Vec::new(),
            });
        kept.chain(created).collect()
    }
}

/// Decides the next writes and the condition of one unit.
pub fn decide(desired: Desired<'_>, facts: &Facts<'_>) -> Decision {
    match desired {
        Desired::Invalid => Decision {
            phase: Phase::Invalid,
            ..Decision::default()
        },
        Desired::Absent => Decision {
            destroy: facts.jobs.iter().map(|o| o.name.clone()).collect(),
            phase: if facts.jobs.is_empty() {
                Phase::Deleted
            } else {
                Phase::Deleting
            },
            ..Decision::default()
        },
        Desired::Present(target) => present(&target, facts),
    }
}

/// Decides after asking `progress` how the current revision has fared,
/// given the replicas it asks for and how many of them are available now
/// (keeping that clock is the caller's). `facts.progress` is not read.
pub fn decide_tracking(
    desired: Desired<'_>,
    facts: &Facts<'_>,
    progress: impl FnOnce(u32, u32) -> Progress,
) -> (Decision, Progress) {
    let Desired::Present(target) = desired else {
        return (decide(desired, facts), Progress::default());
    };
    let a = assess_all(&target, facts);
    let p = progress(a.desired, a.updated_available);
    (conclude(&target, facts, a, p), p)
}

/// The jobs of a unit sorted by what the desired set makes of them.
struct Sorted<'j> {
    /// On the current template, as asked.
    current: Vec<&'j ObservedJob>,
    /// Of another template: replaced by the rollout.
    old: Vec<&'j ObservedJob>,
    /// Not wanted in any rollout: a current name with another text (edited
    /// by hand), or a current-template replica scaled away.
    surplus: Vec<&'j ObservedJob>,
    /// Current units fleet does not have.
    missing: Vec<&'j FleetUnit>,
}

fn sort<'j>(r: &'j Rendered, jobs: &'j [ObservedJob]) -> Sorted<'j> {
    let want: HashMap<String, &FleetUnit> = r.units.iter().map(|u| (u.name.to_name(), u)).collect();
    let mut s = Sorted {
        current: Vec::new(),
        old: Vec::new(),
        surplus: Vec::new(),
        missing: Vec::new(),
    };
    let mut taken: HashSet<String> = HashSet::new();
    for o in jobs {
        let name = o.name.to_name();
        match want.get(&name) {
            Some(u) if u.hash == o.unit_hash => s.current.push(o),
            Some(_) => s.surplus.push(o),
            None if o.name.spec_hash == r.spec_hash => s.surplus.push(o),
            None => s.old.push(o),
        }
        taken.insert(name);
    }
    s.missing = r
        .units
        .iter()
        .filter(|u| !taken.contains(&u.name.to_name()))
        .collect();
    s
}

fn present(t: &Target<'_>, facts: &Facts<'_>) -> Decision {
    let a = assess_all(t, facts);
    conclude(t, facts, a, facts.progress)
}

/// Every job judged and sorted, and what the clock needs to know.
struct Assessed<'j> {
    verdicts: HashMap<&'j FleetName, JobAvailability>,
    sorted: Sorted<'j>,
    desired: u32,
    updated_available: u32,
}

fn assess_all<'j>(t: &Target<'j>, facts: &Facts<'j>) -> Assessed<'j> {
    let judging = Judging {
        min_ready: t.policy.min_ready,
        schedule_grace: facts.schedule_grace,
    };
    let verdicts: HashMap<&FleetName, JobAvailability> = facts
        .jobs
        .iter()
        .map(|o| (&o.name, assess(o, facts.cluster, &t.constraints, &judging)))
        .collect();
    let sorted = sort(t.rendered, facts.jobs);
    let global_expected = sorted
        .current
        .iter()
        .map(|o| verdicts[&o.name].expected)
        .max();
    let desired = match t.constraints.layout {
        crate::spec::Layout::Global => global_expected
            .unwrap_or_else(|| facts.cluster.matching(t.constraints.metadata, None).len() as u32),
        _ => t.rendered.units.len() as u32,
    };
    let updated_available = sorted
        .current
        .iter()
        .map(|o| verdicts.get(&o.name).map_or(0, |v| v.available))
        .sum();
    Assessed {
        verdicts,
        sorted,
        desired,
        updated_available,
    }
}

/// The writes, the condition and the rest of the decision, for the
/// revision's `progress`.
fn conclude(t: &Target<'_>, facts: &Facts<'_>, a: Assessed<'_>, progress: Progress) -> Decision {
    let Assessed {
        verdicts,
        sorted: s,
        desired,
        updated_available,
    } = a;
    let available = |o: &ObservedJob| verdicts.get(&o.name).map_or(0, |v| v.available);
    let mut d = Decision {
        desired,
        updated_available,
        ..Decision::default()
    };
    d.available = facts.jobs.iter().map(&available).sum();
    d.running = verdicts.values().map(|v| v.running).sum();

    let complete_now = s.old.is_empty()
        && s.surplus.is_empty()
        && s.missing.is_empty()
        && d.desired > 0
        && d.updated_available >= d.desired;
    let deadline = t.policy.progress_deadline;
    let condition = if complete_now {
        Condition::Available
    } else if progress.complete {
        if d.available == 0 {
            Condition::Failed
        } else {
            Condition::Degraded
        }
    } else if progress.since < deadline {
        Condition::Progressing
    } else {
        Condition::Failed
    };
    d.condition = Some(condition);
    let stalled = condition == Condition::Failed && !progress.complete;
    d.rollback = stalled && t.policy.on_failure == OnFailure::Rollback;

    write(&mut d, t, &s, &available, stalled);
    relaunch(&mut d, t, facts.jobs);

    // What does not serve: the current template's replicas first, then
    // the old ones (real replicas too, until the rollout replaces them).
    let mut current = s.current.clone();
    current.sort_by_key(|o| o.name.replica);
    let mut old = s.old.clone();
    old.sort_by_key(|o| o.name.replica);
    for o in current.into_iter().chain(old) {
        d.unavailable
            .extend(verdicts[&o.name].unavailable.iter().cloned());
    }
    if t.constraints.layout != crate::spec::Layout::Global {
        let why = if stalled {
            "not created: the rollout stopped at its progress deadline"
        } else {
            "not created yet: the rollout creates it in turn"
        };
        let created: HashSet<&FleetName> = d.create.iter().map(|c| &c.name).collect();
        for u in &s.missing {
            if !created.contains(&u.name) {
                d.unavailable.push(Unavailable {
                    unit: u.name.to_name(),
                    machine: String::new(),
                    reason: why.into(),
                });
            }
        }
    }
    if d.phase == Phase::RollingUpdate {
        d.waiting_for = s
            .current
            .iter()
            .filter(|o| available(o) == 0)
            .min_by_key(|o| o.name.replica)
            .map(|o| o.name.to_name());
    }
    let mut recheck = verdicts.values().filter_map(|v| v.recheck).min();
    if condition == Condition::Progressing {
        let left = deadline - progress.since;
        recheck = Some(recheck.map_or(left, |r| r.min(left)));
    }
    d.requeue_after = recheck;
    d
}

/// The creates and destroys that move the unit toward its current
/// template.
fn write(
    d: &mut Decision,
    t: &Target<'_>,
    s: &Sorted<'_>,
    available: &dyn Fn(&ObservedJob) -> u32,
    stalled: bool,
) {
    d.destroy.extend(s.surplus.iter().map(|o| o.name.clone()));
    let create_all = |d: &mut Decision| d.create.extend(s.missing.iter().map(|u| (*u).clone()));
    if t.rendered.layout.replaces_in_place() {
        // One unit that may never run twice (a singleton, a pinned or a
        // global unit): the old one goes before the new one comes.
        if !s.old.is_empty() {
            d.destroy.extend(s.old.iter().map(|o| o.name.clone()));
            d.phase = Phase::Replacing;
            return;
        }
        create_all(d);
        if !d.is_empty() {
            d.phase = Phase::Creating;
        }
        return;
    }
    if s.old.is_empty() {
        create_all(d);
        if !d.is_empty() {
            d.phase = if s.current.is_empty() {
                Phase::Creating
            } else {
                Phase::Scaling
            };
        }
        return;
    }
    d.phase = Phase::RollingUpdate;
    if stalled {
        // Stopped at the progress deadline: every old replica stays.
        return;
    }
    roll(d, t, s, available);
}

/// One step of a rolling update with old replicas present.
fn roll(d: &mut Decision, t: &Target<'_>, s: &Sorted<'_>, available: &dyn Fn(&ObservedJob) -> u32) {
    let n = t.rendered.units.len();
    let new_available = s.current.iter().filter(|o| available(o) > 0).count();
    let old_available = s.old.iter().filter(|o| available(o) > 0).count();
    // How many old replicas may go, and the availability that must remain.
    let (budget, floor, cap) = match t.policy.order {
        UpdateOrder::StartFirst => (
            (s.old.len() + new_available).saturating_sub(n),
            n,
            n + t.policy.max_surge as usize,
        ),
        UpdateOrder::StopFirst => (
            (s.old.len() + new_available + 1).saturating_sub(n),
            n.saturating_sub(1),
            n,
        ),
    };
    let replaced: HashSet<u32> = s.current.iter().map(|o| o.name.replica).collect();
    let mut old = s.old.clone();
    // Stopped ones first (they serve nobody), then unavailable ones, then
    // those whose replica index already has its new replacement (the same
    // conflict group), then the highest replicas.
    old.sort_by_key(|o| {
        (
            !o.stopped,
            available(o) > 0,
            !replaced.contains(&o.name.replica),
            std::cmp::Reverse(o.name.replica),
            o.name.to_name(),
        )
    });
    let mut serving = old_available + new_available;
    let mut gone: HashSet<u32> = HashSet::new();
    for o in old {
        if gone.len() >= budget {
            break;
        }
        if available(o) > 0 {
            if serving <= floor {
                continue;
            }
            serving -= 1;
        }
        gone.insert(o.name.replica);
        d.destroy.push(o.name.clone());
    }
    // New replicas fill the room up to the cap, first where an old one of
    // the same index (and so the same conflict group) left a free slot.
    let remaining_old: HashSet<u32> = s
        .old
        .iter()
        .map(|o| o.name.replica)
        .filter(|r| !gone.contains(r))
        .collect();
    let total = s.current.len() + s.old.len() - gone.len();
    let mut missing = s.missing.clone();
    missing.sort_by_key(|u| (remaining_old.contains(&u.name.replica), u.name.replica));
    let room = cap.saturating_sub(total);
    d.create.extend(missing.into_iter().take(room).cloned());
}

/// A current unit stopped by hand is what the unit asks for in every way
/// but its target-state: writing its records again launches it.
fn relaunch(d: &mut Decision, t: &Target<'_>, jobs: &[ObservedJob]) {
    let stopped: HashMap<&FleetName, &ObservedJob> = jobs
        .iter()
        .filter(|o| o.stopped)
        .map(|o| (&o.name, o))
        .collect();
    if stopped.is_empty() {
        return;
    }
    let again: Vec<FleetUnit> = t
        .rendered
        .units
        .iter()
        .filter(|u| stopped.get(&u.name).is_some_and(|o| o.unit_hash == u.hash))
        .cloned()
        .collect();
    if !again.is_empty() {
        if d.is_empty() {
            d.phase = Phase::Relaunching;
        }
        d.create.extend(again);
    }
}

#[cfg(test)]
mod tests;
