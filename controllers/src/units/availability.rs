//! Whether a fleet job of a unit serves, per machine, and if not, why — a
//! pure function of what fleet, the registrators and Docker reported, so
//! every rule here is table-tested without etcd.
//!
//! A replica is *available* when fleet reports its unit `active`/`running`
//! with the job's current `unitHash`, on a machine present in fleet's
//! `machines/`, its container is registered by the Kaylee server of that
//! machine (on machines that run one) and, when it has a Docker
//! `HEALTHCHECK`, Docker reports it `healthy` — and it has stayed so for
//! `minReadySeconds` (Kubernetes' "available" against "ready").

use super::cluster::Cluster;
use crate::fleet::FleetName;
use crate::fleet::records::UnitHash;
use crate::spec::Layout;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Docker's verdict on a container's `HEALTHCHECK`, as its registrator
/// publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No healthcheck: running is all Docker can say.
    None,
    /// Docker's `starting`: no check has passed yet, and not enough have
    /// failed to call it unhealthy; not ready.
    Starting,
    /// Docker's `healthy`: the last checks passed; ready.
    Healthy,
    /// Docker's `unhealthy`: `--retries` checks in a row failed; not ready.
    Unhealthy,
}

/// What the Kaylee server of a machine says about a job's container there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// No Kaylee server registers containers on that machine.
    Unwatched,
    /// The registrator runs there and has no IP for the container.
    Missing,
    /// Both its `instances/` and `health/` keys are there; the health as
    /// Docker reports it.
    Registered(Health),
}

/// One job on one machine: what that machine's fleet agent reports
/// (`states/<job>/<machine>`), joined with the cluster's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The machine id, from the `states/<job>/<machine>` key.
    pub machine: String,
    /// systemd's `ActiveState` as fleet's agent reports it (`active`,
    /// `activating`, `failed`, `inactive`…); empty when not reported.
    pub active: String,
    /// systemd's `SubState` as fleet's agent reports it (`running`,
    /// `auto-restart`, `dead`…); empty when not reported.
    pub sub: String,
    /// The agent runs the job's current unit text (its `unitHash` is the
    /// job's; an agent that reports none is taken at its word).
    pub current_text: bool,
    /// The machine is in fleet's `machines/`.
    pub live: bool,
    /// Whether that machine's Kaylee server registered the container, and
    /// its health.
    pub registration: Registration,
    /// How long it has been ready without a break, as this leader saw it;
    /// `None` while it is not ready.
    pub ready_for: Option<Duration>,
}

impl Placement {
    /// Everything but `minReadySeconds` holds.
    pub fn is_ready(&self) -> bool {
        self.live
            && self.is_running()
            && self.current_text
            && matches!(
                self.registration,
                Registration::Unwatched | Registration::Registered(Health::None | Health::Healthy)
            )
    }

    /// systemd reports it `active`/`running` (the unit text and the
    /// machine's liveness are not looked at).
    pub fn is_running(&self) -> bool {
        self.active == "active" && self.sub == "running"
    }
}

/// One fleet job of a unit as observed, with what ran it where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedJob {
    /// The job's fleet name, parsed.
    pub name: FleetName,
    /// The `UnitHash` of its `job/<name>/object`: the text it should run;
    /// all zeros when the object cannot be read (so it gets replaced).
    pub unit_hash: UnitHash,
    /// Its target-state is not `launched`: stopped or unloaded outside
    /// Kaylee (`fleetctl stop`).
    pub stopped: bool,
    /// Since this leader first saw the job (or relaunched it).
    pub age: Duration,
    /// The machine fleet's engine scheduled it to (`job/<name>/target`).
    pub target: Option<String>,
    /// Every machine whose agent reports a state for it.
    pub placements: Vec<Placement>,
}

/// One replica that does not serve, and why, in words an operator can act
/// on. Kept in `/kaylee/status/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailable {
    /// The fleet unit.
    pub unit: String,
    /// The machine the reason is about; empty when none is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine: String,
    /// Why, as one line for `kaylee status` (e.g. `machine m1 is gone`,
    /// `unhealthy on m1`, `waiting for fleet to schedule it`).
    pub reason: String,
}

/// What a unit asks of where its jobs run, for reasons and global counts.
#[derive(Debug, Clone, Copy)]
pub struct Constraints<'a> {
    /// The unit's layout; a global unit is judged on every matching machine.
    pub layout: Layout,
    /// `MachineMetadata=` entries, `key=value`.
    pub metadata: &'a [String],
    /// `MachineID=`: the one machine a pinned unit may run on; `None` for
    /// any.
    pub machine_id: Option<&'a str>,
    /// The unit has `Conflicts=` (a per-host limit, a singleton, or given).
    pub conflicts: bool,
    /// The unit `Requires=` (empty: none).
    pub network_unit: &'a str,
}

/// The settings availability is judged with.
#[derive(Debug, Clone, Copy)]
pub struct Judging {
    /// `minReadySeconds` (Kubernetes' deployment field): how long a replica
    /// must stay ready before it counts as available; zero makes ready
    /// replicas available at once.
    pub min_ready: Duration,
    /// How long a job may go without a `target` before it counts as
    /// never to be scheduled (fleet's engine schedules within seconds).
    pub schedule_grace: Duration,
}

/// One job's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobAvailability {
    /// Replicas of this job that are available: 0 or 1, or for a global
    /// unit one per matching machine.
    pub available: u32,
    /// Of the machines expected to run it, how many report it running.
    pub running: u32,
    /// Those expected and not available, with why.
    pub unavailable: Vec<Unavailable>,
    /// Machines a global unit should run on (0 otherwise).
    pub expected: u32,
    /// When the verdict changes by time alone (`minReadySeconds` or the
    /// schedule grace running out).
    pub recheck: Option<Duration>,
}

/// Judges one job.
pub fn assess(
    job: &ObservedJob,
    cluster: &Cluster,
    c: &Constraints<'_>,
    j: &Judging,
) -> JobAvailability {
    let mut out = JobAvailability::default();
    let name = job.name.to_name();
    let mut miss = |out: &mut JobAvailability, machine: &str, reason: String| {
        out.unavailable.push(Unavailable {
            unit: name.clone(),
            machine: machine.to_string(),
            reason,
        });
    };
    if job.stopped {
        miss(
            &mut out,
            "",
            "stopped outside Kaylee (target-state not launched); launching it again".into(),
        );
        return out;
    }
    if cluster.machines.is_empty() {
        miss(
            &mut out,
            "",
            "no fleet machine is registered in this cluster".into(),
        );
        return out;
    }
    if c.layout == Layout::Global {
        let machines = cluster.matching(c.metadata, None);
        out.expected = machines.len() as u32;
        if machines.is_empty() {
            miss(&mut out, "", no_fit(c, cluster, false));
        }
        for m in machines {
            let here = job.placements.iter().find(|p| p.machine == m);
            judge(&mut out, here, m, c, j, &mut miss);
        }
        return out;
    }
    // Where it runs: the engine's choice, else wherever a live agent
    // reports it (a target may lag behind a move).
    let on = |m: &str| job.placements.iter().find(|p| p.machine == m);
    if let Some(p) = job.placements.iter().find(|p| p.is_ready()) {
        judge(&mut out, Some(p), &p.machine, c, j, &mut miss);
        return out;
    }
    match job.target.as_deref() {
        Some(m) if !cluster.is_live(m) => miss(&mut out, m, format!("machine {m} is gone")),
        Some(m) => judge(&mut out, on(m), m, c, j, &mut miss),
        None => match job.placements.iter().find(|p| p.live) {
            Some(p) => judge(&mut out, Some(p), &p.machine, c, j, &mut miss),
            None if job.age < j.schedule_grace => {
                out.recheck = Some(j.schedule_grace - job.age);
                miss(&mut out, "", "waiting for fleet to schedule it".into());
            }
            None => miss(&mut out, "", no_fit(c, cluster, true)),
        },
    }
    out
}

/// The verdict on `machine`, where `placement` is what its agent reports.
fn judge(
    out: &mut JobAvailability,
    placement: Option<&Placement>,
    machine: &str,
    c: &Constraints<'_>,
    j: &Judging,
    miss: &mut impl FnMut(&mut JobAvailability, &str, String),
) {
    let Some(p) = placement else {
        miss(out, machine, "no state reported yet".into());
        return;
    };
    if p.is_running() && p.live {
        out.running += 1;
    }
    if !p.live {
        miss(out, machine, format!("machine {machine} is gone"));
        return;
    }
    if p.is_ready() {
        match p.ready_for {
            Some(t) if t >= j.min_ready => out.available += 1,
            ready_for => {
                let left = j.min_ready - ready_for.unwrap_or_default().min(j.min_ready);
                out.recheck = Some(out.recheck.map_or(left, |r| r.min(left)));
                miss(
                    out,
                    machine,
                    format!(
                        "ready, counting minReadySeconds ({}s)",
                        j.min_ready.as_secs()
                    ),
                );
            }
        }
        return;
    }
    let reason = if !p.is_running() {
        let state = if p.active == p.sub {
            p.active.clone()
        } else {
            format!("{}/{}", p.active, p.sub)
        };
        // A unit that `Requires=` a unit the host lacks is dead for good;
        // the network unit is the usual culprit.
        match (p.active.as_str(), c.network_unit.is_empty()) {
            ("inactive", false) => format!(
                "{state} on {machine} (does {machine} have {}, which it requires?)",
                c.network_unit
            ),
            _ => format!("{state} on {machine}"),
        }
    } else if !p.current_text {
        format!("running another unit text on {machine}")
    } else {
        match p.registration {
            Registration::Missing => format!("not registered on {machine}"),
            Registration::Registered(Health::Unhealthy) => format!("unhealthy on {machine}"),
            Registration::Registered(Health::Starting) => {
                format!("health: starting on {machine}")
            }
            _ => format!("not ready on {machine}"),
        }
    };
    miss(out, machine, reason);
}

/// Why fleet has no machine for the job: none matches its constraints, or
/// (with `conflicts`) the matching ones are taken.
fn no_fit(c: &Constraints<'_>, cluster: &Cluster, scheduled: bool) -> String {
    let mut why = Vec::new();
    if !c.metadata.is_empty() {
        why.push(format!("metadata {}", c.metadata.join(",")));
    }
    if let Some(id) = c.machine_id {
        why.push(format!("machine {id}"));
    }
    let matching = cluster.matching(c.metadata, c.machine_id).len();
    if scheduled && matching > 0 && c.conflicts {
        why.push(format!(
            "conflicts on all {matching} matching machine{}",
            if matching == 1 { "" } else { "s" }
        ));
    }
    let head = if scheduled {
        "not scheduled: no machine fits"
    } else {
        "no machine fits"
    };
    if why.is_empty() {
        head.to_string()
    } else {
        format!("{head} ({})", why.join("; "))
    }
}

#[cfg(test)]
mod tests;
