//! Model-based property test of the reconcile plan: a simulated fleet
//! applies every plan, its agents start units after a random delay, and the
//! spec changes at random moments, and an operator stops fleet units by hand
//! (`fleetctl stop`) at others. From any starting set and any sequence of
//! changes, repeated planning reaches exactly the desired set, all launched,
//! then plans nothing; and a rolling update never takes running replicas
//! below what was asked.

use kaylee_controllers::fleet::records::UnitHash;
use kaylee_controllers::fleet::{FleetName, RenderOptions, Rendered, render};
use kaylee_controllers::spec::{self, Layout, Unit};
use kaylee_controllers::units::plan::{Desired, ObservedJob, plan};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct SpecChoice {
    replicas: Option<u32>,
    per_host: Option<u32>,
    image: u8,
    restart: u8,
    startup_delay: u32,
    deleted: bool,
}

fn spec_choice() -> impl Strategy<Value = SpecChoice> {
    (
        prop::option::weighted(0.85, 1u32..=7),
        prop::option::of(1u32..=3),
        0u8..3,
        0u8..2,
        0u32..3,
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(replicas, per_host, image, restart, startup_delay, deleted)| SpecChoice {
                replicas,
                per_host: per_host.filter(|_| replicas.is_some()),
                image,
                restart,
                startup_delay,
                deleted,
            },
        )
}

fn unit_of(c: &SpecChoice) -> Unit {
    let mut spec =
        serde_json::json!({"image": format!("img:{}", c.image), "startupDelay": c.startup_delay});
    if let Some(r) = c.replicas {
        spec["replicas"] = r.into();
    }
    if let Some(p) = c.per_host {
        spec["maxReplicasPerHost"] = p.into();
    }
    spec::from_json(
        &serde_json::json!({"name": "web", "spec": spec}).to_string(),
        "model",
    )
    .expect("model specs are valid")
}

/// One fleet job in the simulated registry.
#[derive(Debug, Clone)]
struct SimJob {
    name: FleetName,
    hash: UnitHash,
    created: Duration,
    /// When its agent reports it running.
    starts: Duration,
    /// Its target-state was set to something other than `launched`.
    stopped: bool,
}

struct Fleet {
    jobs: BTreeMap<String, SimJob>,
    now: Duration,
}

impl Fleet {
    fn running(&self, j: &SimJob) -> bool {
        !j.stopped && self.now >= j.starts
    }

    fn observed(&self) -> Vec<ObservedJob> {
        self.jobs
            .values()
            .map(|j| ObservedJob {
                name: j.name.clone(),
                unit_hash: j.hash,
                running_on: u32::from(self.running(j)),
                // As the controller's timeline: a stopped job's clock
                // starts again when it is launched again.
                age: if j.stopped {
                    Duration::ZERO
                } else {
                    self.now - j.created
                },
                running_for: self.running(j).then(|| self.now - j.starts),
                stopped: j.stopped,
            })
            .collect()
    }

    fn running_count(&self) -> usize {
        self.jobs.values().filter(|j| self.running(j)).count()
    }
}

fn desired_set(r: &Rendered) -> BTreeMap<String, UnitHash> {
    r.units.iter().map(|u| (u.name.to_name(), u.hash)).collect()
}

fn current_set(f: &Fleet) -> BTreeMap<String, UnitHash> {
    f.jobs.iter().map(|(n, j)| (n.clone(), j.hash)).collect()
}

/// Drives planning against the simulated fleet until the spec settles.
fn run_model(
    initial: SpecChoice,
    changes: Vec<(u8, SpecChoice)>,
    start_delays: Vec<u8>,
    stops: Vec<(u8, u8)>,
) -> Result<(), TestCaseError> {
    let opts = RenderOptions::default();
    let mut fleet = Fleet {
        jobs: BTreeMap::new(),
        now: Duration::ZERO,
    };
    let mut delays = start_delays.into_iter().cycle();
    // Start from an arbitrary observed set: a converged older version.
    let seed = render(&unit_of(&initial), "seed", &opts);
    for u in &seed.units {
        fleet.jobs.insert(
            u.name.to_name(),
            SimJob {
                name: u.name.clone(),
                hash: u.hash,
                created: Duration::ZERO,
                starts: Duration::ZERO,
                stopped: false,
            },
        );
    }
    let mut schedule: Vec<(usize, SpecChoice)> = Vec::new();
    let mut step_at = 0usize;
    for (gap, choice) in changes {
        step_at += usize::from(gap);
        schedule.push((step_at, choice));
    }
    // Stops by hand: at step `at`, the job at `index` (mod the count).
    let stops: Vec<(usize, usize)> = stops
        .into_iter()
        .map(|(at, index)| (usize::from(at), usize::from(index)))
        .collect();
    let last_change = step_at.max(stops.iter().map(|(at, _)| *at).max().unwrap_or(0));
    let mut spec = initial.clone();
    let mut settled_plans = 0;
    for step in 0..last_change + 400 {
        if let Some((_, c)) = schedule.iter().find(|(at, _)| *at == step) {
            spec = c.clone();
        }
        for (_, index) in stops.iter().filter(|(at, _)| *at == step) {
            let count = fleet.jobs.len();
            if let Some(job) = fleet.jobs.values_mut().nth(index % count.max(1)) {
                job.stopped = true;
            }
        }
        let unit = unit_of(&spec);
        let marker = format!("r{}", spec.restart);
        let rendered = render(&unit, &marker, &opts);
        let desired = if spec.deleted {
            Desired::Absent
        } else {
            Desired::Present {
                rendered: &rendered,
                startup_delay: Duration::from_secs(u64::from(spec.startup_delay)),
            }
        };
        let observed = fleet.observed();
        let p = plan(desired, &observed, START_TIMEOUT);

        let observed_names: BTreeSet<String> = observed.iter().map(|o| o.name.to_name()).collect();
        for d in &p.destroy {
            prop_assert!(observed_names.contains(d), "destroys only what exists: {d}");
        }
        let wanted = desired_set(&rendered);
        for c in &p.create {
            prop_assert!(
                !spec.deleted && wanted.contains_key(&c.name.to_name()),
                "creates only what is desired"
            );
            prop_assert!(
                fleet.jobs.get(&c.name.to_name()).is_none_or(|j| j.stopped),
                "never creates over an existing job, except to launch a stopped one"
            );
        }

        // Surge invariant for replicated units: destroying a running job
        // never takes the running count below what is asked (or below what
        // runs, when fewer run than asked).
        let running_before = fleet.running_count();
        let destroys_running = p
            .destroy
            .iter()
            .any(|d| fleet.jobs.get(d).is_some_and(|j| fleet.running(j)));
        for d in &p.destroy {
            fleet.jobs.remove(d);
        }
        if destroys_running && !spec.deleted && matches!(rendered.layout, Layout::Replicated { .. })
        {
            let asked = rendered.units.len();
            prop_assert!(
                fleet.running_count() >= asked.min(running_before),
                "running fell to {} (asked {asked}, had {running_before}) at step {step}",
                fleet.running_count()
            );
        }
        for c in &p.create {
            let delay = Duration::from_secs(u64::from(delays.next().unwrap_or(0)));
            fleet.jobs.insert(
                c.name.to_name(),
                SimJob {
                    name: c.name.clone(),
                    hash: c.hash,
                    created: fleet.now,
                    starts: fleet.now + delay,
                    stopped: false,
                },
            );
        }
        // What a status written with these writes reports is what fleet
        // then holds.
        let predicted: BTreeMap<String, (UnitHash, bool)> = p
            .applied_to(&observed)
            .iter()
            .map(|o| (o.name.to_name(), (o.unit_hash, o.stopped)))
            .collect();
        let now: BTreeMap<String, (UnitHash, bool)> = fleet
            .jobs
            .iter()
            .map(|(n, j)| (n.clone(), (j.hash, j.stopped)))
            .collect();
        prop_assert_eq!(predicted, now, "applied_to at step {}", step);
        fleet.now += TICK;

        if step > last_change && p.is_empty() && p.requeue_after.is_none() {
            let want = if spec.deleted {
                BTreeMap::new()
            } else {
                wanted
            };
            prop_assert_eq!(current_set(&fleet), want, "an empty plan means converged");
            prop_assert!(
                fleet.jobs.values().all(|j| !j.stopped),
                "an empty plan leaves nothing stopped"
            );
            // Idempotent: planning again on the same state writes nothing.
            settled_plans += 1;
            if settled_plans >= 2 {
                return Ok(());
            }
        }
    }
    Err(TestCaseError::fail(format!(
        "did not converge; last spec {spec:?}, jobs {:?}",
        fleet.jobs.keys().collect::<Vec<_>>()
    )))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn planning_converges_and_then_plans_nothing(
        initial in spec_choice(),
        changes in prop::collection::vec((0u8..25, spec_choice()), 0..5),
        start_delays in prop::collection::vec(0u8..6, 1..8),
        stops in prop::collection::vec((0u8..40, any::<u8>()), 0..3),
    ) {
        run_model(initial, changes, start_delays, stops)?;
    }
}

#[test]
fn a_plain_update_converges() {
    let a = SpecChoice {
        replicas: Some(4),
        per_host: Some(2),
        image: 0,
        restart: 0,
        startup_delay: 1,
        deleted: false,
    };
    let b = SpecChoice {
        image: 1,
        ..a.clone()
    };
    run_model(a, vec![(3, b)], vec![2, 0, 5], vec![]).expect("converges");
}

#[test]
fn units_stopped_by_hand_are_launched_again() {
    let a = SpecChoice {
        replicas: Some(3),
        per_host: None,
        image: 0,
        restart: 0,
        startup_delay: 0,
        deleted: false,
    };
    run_model(a, vec![], vec![1], vec![(2, 0), (3, 2), (9, 1)]).expect("converges");
}
