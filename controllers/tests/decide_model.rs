//! Model-based property test of the reconcile decision: a simulated fleet
//! schedules and runs every job the decisions create on three machines, its
//! agents start units after a random delay (or never, for the broken image),
//! machines die and their jobs move, an operator stops fleet units by hand,
//! and the spec changes at random moments. Checked at every step:
//!
//! * writes touch only what exists and create only what is desired;
//! * start-first: an available old replica is never destroyed while fewer
//!   than the desired replicas would be available; stop-first: availability
//!   never drops below desired − 1 by a destroy;
//! * the status written with the writes reports fleet as they leave it.
//!
//! And at the end: a good spec converges to exactly its units, all
//! available, then decides nothing; a broken one keeps every old replica
//! and stops as `failed` (or, with `onFailure: rollback`, goes back to the
//! last fully available spec and converges there).

use kaylee_controllers::fleet::records::UnitHash;
use kaylee_controllers::fleet::{FleetName, RenderOptions, render};
use kaylee_controllers::spec::{self, Layout, Unit};
use kaylee_controllers::units::availability::{Constraints, ObservedJob, Placement, Registration};
use kaylee_controllers::units::cluster::{Cluster, MachineInfo};
use kaylee_controllers::units::decide::{
    Condition, Desired, Facts, Progress, Target, decide_tracking,
};
use kaylee_controllers::units::timeline::Timeline;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);
const GRACE: Duration = Duration::from_secs(3);
const TICK: Duration = Duration::from_secs(1);
const MACHINES: [&str; 3] = ["m1", "m2", "m3"];
/// The image whose containers never start.
const BROKEN: u8 = 2;

#[derive(Debug, Clone)]
struct SpecChoice {
    replicas: Option<u32>,
    per_host: Option<u32>,
    image: u8,
    restart: u8,
    min_ready: u32,
    max_surge: u32,
    stop_first: bool,
    rollback: bool,
    deleted: bool,
}

fn spec_choice() -> impl Strategy<Value = SpecChoice> {
    (
        prop::option::weighted(0.85, 1u32..=7),
        prop::option::of(1u32..=3),
        prop::sample::select(vec![0u8, 0, 1, 1, BROKEN]),
        0u8..2,
        0u32..3,
        1u32..=2,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(
                replicas,
                per_host,
                image,
                restart,
                min_ready,
                max_surge,
                stop_first,
                rollback,
                deleted,
            )| {
                SpecChoice {
                    replicas,
                    per_host: per_host.filter(|_| replicas.is_some()),
                    image,
                    restart,
                    min_ready,
                    max_surge,
                    stop_first,
                    rollback,
                    deleted,
                }
            },
        )
}

fn unit_of(c: &SpecChoice) -> Unit {
    let mut spec = serde_json::json!({
        "image": format!("img:{}", c.image),
        "minReadySeconds": c.min_ready,
        "progressDeadline": DEADLINE.as_secs(),
        "maxSurge": c.max_surge,
        "updateOrder": if c.stop_first { "stop-first" } else { "start-first" },
        "onFailure": if c.rollback { "rollback" } else { "pause" },
    });
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
    broken: bool,
    /// The machine it is scheduled to, and when its agent reports it
    /// running there.
    machine: Option<&'static str>,
    starts: Duration,
    /// Its target-state was set to something other than `launched`.
    stopped: bool,
}

struct Fleet {
    jobs: BTreeMap<String, SimJob>,
    alive: BTreeSet<&'static str>,
    now: Duration,
    next_machine: usize,
}

impl Fleet {
    fn running(&self, j: &SimJob) -> bool {
        !j.stopped
            && !j.broken
            && j.machine.is_some_and(|m| self.alive.contains(m))
            && self.now >= j.starts
    }

    /// The engine: a job without a live machine goes to the next one.
    fn schedule(&mut self, delay: Duration) {
        let alive: Vec<&'static str> = self.alive.iter().copied().collect();
        if alive.is_empty() {
            return;
        }
        for j in self.jobs.values_mut() {
            if j.machine.is_none_or(|m| !alive.contains(&m)) {
                j.machine = Some(alive[self.next_machine % alive.len()]);
                self.next_machine += 1;
                j.starts = self.now + delay;
            }
        }
    }

    fn cluster(&self) -> Cluster {
        Cluster {
            machines: self
                .alive
                .iter()
                .map(|m| (m.to_string(), MachineInfo::default()))
                .collect(),
            registrators: BTreeSet::new(),
        }
    }

    fn observed(&self) -> Vec<ObservedJob> {
        self.jobs
            .values()
            .map(|j| ObservedJob {
                name: j.name.clone(),
                unit_hash: j.hash,
                stopped: j.stopped,
                age: Duration::ZERO,
                target: j.machine.map(str::to_string),
                placements: j
                    .machine
                    .filter(|_| self.now >= j.starts)
                    .map(|m| Placement {
                        machine: m.to_string(),
                        active: if self.running(j) {
                            "active"
                        } else {
                            "activating"
                        }
                        .into(),
                        sub: if self.running(j) {
                            "running"
                        } else {
                            "auto-restart"
                        }
                        .into(),
                        current_text: true,
                        live: self.alive.contains(m),
                        registration: Registration::Unwatched,
                        ready_for: None,
                    })
                    .into_iter()
                    .collect(),
            })
            .collect()
    }
}

/// How many jobs serve: running and past `minReadySeconds`, as the
/// decision's own timeline judges it.
fn available(observed: &[ObservedJob], min_ready: Duration) -> usize {
    observed
        .iter()
        .filter(|o| {
            !o.stopped
                && o.placements
                    .iter()
                    .any(|p| p.is_ready() && p.ready_for.is_some_and(|t| t >= min_ready))
        })
        .count()
}

struct Events {
    changes: Vec<(usize, SpecChoice)>,
    stops: Vec<(usize, usize)>,
    deaths: Vec<(usize, usize)>,
}

/// Drives decisions against the simulated fleet until the spec settles.
fn run_model(
    initial: SpecChoice,
    events: Events,
    start_delays: Vec<u8>,
) -> Result<(), TestCaseError> {
    let opts = RenderOptions::default();
    let mut fleet = Fleet {
        jobs: BTreeMap::new(),
        alive: MACHINES.into_iter().collect(),
        now: Duration::ZERO,
        next_machine: 0,
    };
    let mut delays = start_delays.into_iter().cycle();
    // Start from a converged, serving older version.
    let mut good_initial = initial.clone();
    if good_initial.image == BROKEN {
        good_initial.image = 0;
    }
    good_initial.deleted = false;
    let seed = render(&unit_of(&good_initial), "seed", &opts);
    for u in &seed.units {
        fleet.jobs.insert(
            u.name.to_name(),
            SimJob {
                name: u.name.clone(),
                hash: u.hash,
                broken: false,
                machine: None,
                starts: Duration::ZERO,
                stopped: false,
            },
        );
    }
    fleet.schedule(Duration::ZERO);
    let timeline = Timeline::default();
    let base = Instant::now();
    // The model's own history: the last spec that was fully available.
    let mut last_good: Option<SpecChoice> = None;
    let last_event = events
        .changes
        .iter()
        .map(|(at, _)| *at)
        .chain(events.stops.iter().map(|(at, _)| *at))
        .chain(events.deaths.iter().map(|(at, _)| *at))
        .max()
        .unwrap_or(0);
    let mut spec = good_initial.clone();
    let mut settled = 0;
    for step in 0..last_event + 600 {
        if let Some((_, c)) = events.changes.iter().find(|(at, _)| *at == step) {
            spec = c.clone();
        }
        for (_, index) in events.stops.iter().filter(|(at, _)| *at == step) {
            let count = fleet.jobs.len();
            if let Some(job) = fleet.jobs.values_mut().nth(index % count.max(1)) {
                job.stopped = true;
            }
        }
        for (_, m) in events.deaths.iter().filter(|(at, _)| *at == step) {
            // One machine at a time is down, back ten ticks later.
            fleet.alive = MACHINES.into_iter().collect();
            fleet.alive.remove(MACHINES[m % MACHINES.len()]);
        }
        if events.deaths.iter().any(|(at, _)| step == at + 10) {
            fleet.alive = MACHINES.into_iter().collect();
        }
        let delay = Duration::from_secs(u64::from(delays.next().unwrap_or(0)));
        fleet.schedule(delay);

        let unit = unit_of(&spec);
        let marker = format!("r{}", spec.restart);
        let rendered = render(&unit, &marker, &opts);
        let desired = if spec.deleted {
            Desired::Absent
        } else {
            Desired::Present(Target {
                rendered: &rendered,
                policy: unit.rollout(DEADLINE),
                constraints: Constraints {
                    layout: unit.layout(),
                    metadata: &[],
                    machine_id: None,
                    conflicts: true,
                    network_unit: "",
                },
            })
        };
        let cluster = fleet.cluster();
        let mut observed = fleet.observed();
        let now = base + fleet.now;
        timeline.stamp("web", now, &mut observed);
        let facts = Facts {
            jobs: &observed,
            cluster: &cluster,
            progress: Progress::default(),
            schedule_grace: GRACE,
        };
        let (d, progress) = decide_tracking(desired, &facts, |n, avail| {
            timeline.progress(
                "web",
                (&rendered.spec_hash, n),
                avail,
                now,
                Progress::default,
            )
        });
        if d.condition == Some(Condition::Available) {
            timeline.completed("web");
            last_good = Some(spec.clone());
        }

        let observed_names: BTreeSet<String> = observed.iter().map(|o| o.name.to_name()).collect();
        for x in &d.destroy {
            prop_assert!(
                observed_names.contains(&x.to_name()),
                "destroys only what exists: {x:?}"
            );
        }
        let wanted: BTreeMap<String, UnitHash> = rendered
            .units
            .iter()
            .map(|u| (u.name.to_name(), u.hash))
            .collect();
        for c in &d.create {
            prop_assert!(
                !spec.deleted && wanted.contains_key(&c.name.to_name()),
                "creates only what is desired"
            );
            prop_assert!(
                fleet.jobs.get(&c.name.to_name()).is_none_or(|j| j.stopped),
                "never creates over an existing job, except to launch a stopped one"
            );
        }

        // Availability invariants of rolling updates: count what serves
        // before and after the destroys of old-template replicas.
        let min_ready = Duration::from_secs(u64::from(spec.min_ready));
        let before = available(&observed, min_ready);
        let old_available_destroyed = d.destroy.iter().any(|x| {
            observed.iter().any(|o| {
                o.name == *x
                    && o.name.spec_hash != rendered.spec_hash
                    && available(std::slice::from_ref(o), min_ready) == 1
            })
        });
        let remaining: Vec<ObservedJob> = observed
            .iter()
            .filter(|o| !d.destroy.contains(&o.name))
            .cloned()
            .collect();
        let after = available(&remaining, min_ready);
        let n = rendered.units.len();
        if old_available_destroyed
            && !spec.deleted
            && matches!(rendered.layout, Layout::Replicated { .. })
        {
            let floor = if spec.stop_first { n - 1 } else { n };
            prop_assert!(
                after >= floor,
                "an available old replica went with {after} of {n} available (had {before}) at step {step}"
            );
        }

        for x in &d.destroy {
            fleet.jobs.remove(&x.to_name());
        }
        for c in &d.create {
            fleet.jobs.insert(
                c.name.to_name(),
                SimJob {
                    name: c.name.clone(),
                    hash: c.hash,
                    broken: spec.image == BROKEN,
                    machine: None,
                    starts: fleet.now,
                    stopped: false,
                },
            );
        }
        if !d.create.is_empty() {
            timeline.progressed("web", now);
        }
        // What a status written with these writes reports is what fleet
        // then holds.
        let predicted: BTreeMap<String, (UnitHash, bool)> = d
            .applied_to(&observed)
            .iter()
            .map(|o| (o.name.to_name(), (o.unit_hash, o.stopped)))
            .collect();
        let held: BTreeMap<String, (UnitHash, bool)> = fleet
            .jobs
            .iter()
            .map(|(x, j)| (x.clone(), (j.hash, j.stopped)))
            .collect();
        prop_assert_eq!(predicted, held, "applied_to at step {}", step);

        // onFailure: rollback — the leader writes the last good spec back.
        if d.rollback
            && let Some(good) = last_good.clone()
        {
            spec = good;
            continue_tick(&mut fleet);
            continue;
        }
        continue_tick(&mut fleet);

        if step <= last_event + 10 || !d.is_empty() {
            settled = 0;
            continue;
        }
        let broken = !spec.deleted && spec.image == BROKEN;
        if spec.deleted {
            if d.requeue_after.is_none() {
                prop_assert!(fleet.jobs.is_empty(), "a deleted unit leaves nothing");
                settled += 1;
            }
        } else if broken && d.condition == Some(Condition::Failed) && !progress.complete {
            // Stopped: no new replica serves; whatever served still does.
            let jobs = fleet.observed();
            prop_assert!(
                jobs.iter().all(|o| o.name.spec_hash != rendered.spec_hash
                    || available(std::slice::from_ref(o), min_ready) == 0),
                "a broken replica never serves"
            );
            settled += 1;
        } else if d.condition == Some(Condition::Available) && d.requeue_after.is_none() {
            let current: BTreeMap<String, UnitHash> = fleet
                .jobs
                .iter()
                .map(|(x, j)| (x.clone(), j.hash))
                .collect();
            prop_assert_eq!(current, wanted, "an available unit is exactly its units");
            prop_assert!(fleet.jobs.values().all(|j| !j.stopped));
            settled += 1;
        }
        if settled >= 2 {
            return Ok(());
        }
    }
    Err(TestCaseError::fail(format!(
        "did not settle; last spec {spec:?}, jobs {:?}",
        fleet.jobs.keys().collect::<Vec<_>>()
    )))
}

fn continue_tick(fleet: &mut Fleet) {
    fleet.now += TICK;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decisions_never_lower_availability_and_settle(
        initial in spec_choice(),
        changes in prop::collection::vec((0u8..25, spec_choice()), 0..4),
        start_delays in prop::collection::vec(0u8..6, 1..8),
        stops in prop::collection::vec((0u8..40, any::<u8>()), 0..3),
        deaths in prop::collection::vec((0u8..60, 0usize..3), 0..2),
    ) {
        let mut at = 0usize;
        let changes = changes
            .into_iter()
            .map(|(gap, c)| {
                at += usize::from(gap);
                (at, c)
            })
            .collect();
        let events = Events {
            changes,
            stops: stops.into_iter().map(|(a, i)| (usize::from(a), usize::from(i))).collect(),
            deaths: deaths.into_iter().map(|(a, m)| (usize::from(a), m)).collect(),
        };
        run_model(initial, events, start_delays)?;
    }
}

fn plain(image: u8) -> SpecChoice {
    SpecChoice {
        replicas: Some(4),
        per_host: Some(2),
        image,
        restart: 0,
        min_ready: 1,
        max_surge: 1,
        stop_first: false,
        rollback: false,
        deleted: false,
    }
}

fn only_changes(changes: Vec<(usize, SpecChoice)>) -> Events {
    Events {
        changes,
        stops: Vec::new(),
        deaths: Vec::new(),
    }
}

#[test]
fn a_plain_update_converges() {
    run_model(plain(0), only_changes(vec![(3, plain(1))]), vec![2, 0, 5]).expect("converges");
}

#[test]
fn a_broken_update_stops_and_keeps_the_old_replicas() {
    run_model(plain(0), only_changes(vec![(3, plain(BROKEN))]), vec![1]).expect("stops");
}

#[test]
fn a_broken_update_with_rollback_goes_back() {
    let broken = SpecChoice {
        rollback: true,
        ..plain(BROKEN)
    };
    run_model(plain(0), only_changes(vec![(40, broken)]), vec![1]).expect("rolls back");
}

#[test]
fn stop_first_converges() {
    let a = SpecChoice {
        stop_first: true,
        ..plain(0)
    };
    let b = SpecChoice {
        stop_first: true,
        ..plain(1)
    };
    run_model(a, only_changes(vec![(3, b)]), vec![2, 1]).expect("converges");
}

#[test]
fn units_stopped_by_hand_are_launched_again() {
    let a = SpecChoice {
        replicas: Some(3),
        per_host: None,
        ..plain(0)
    };
    let events = Events {
        changes: Vec::new(),
        stops: vec![(2, 0), (3, 2), (9, 1)],
        deaths: Vec::new(),
    };
    run_model(a, events, vec![1]).expect("converges");
}

#[test]
fn a_lost_machine_is_survived() {
    let events = Events {
        changes: vec![(5, plain(1))],
        stops: Vec::new(),
        deaths: vec![(7, 1)],
    };
    run_model(plain(0), events, vec![1, 2]).expect("converges");
}
