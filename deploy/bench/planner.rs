//! The decision's cost against the size of a unit: one unit of 10 to 1,000
//! replicas (the most a unit may ask for), decided mid rolling update (half
//! its fleet units on the new spec, all available on three machines) and at
//! creation (no fleet units yet). Time per fleet unit should not grow with the size: a
//! quadratic step would multiply it by 100 from 10 to 1,000 replicas. (A
//! step up once the unit files a plan copies outgrow the CPU's cache is not
//! growth: look at the sizes around it.)

use crate::specs::{self, BenchUnit};
use anyhow::Result;
use kaylee_controllers::fleet::records::unit_hash;
use kaylee_controllers::units::availability::{
    Constraints, Health, ObservedJob, Placement, Registration,
};
use kaylee_controllers::units::cluster::{Cluster, MachineInfo};
use kaylee_controllers::units::decide::{Desired, Facts, Progress, Target, decide};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [u32; 5] = [10, 100, 300, 500, 1_000];
/// Fleet units planned per size and state, so each size takes about as long.
const WORK: usize = 2_000_000;
const DEADLINE: Duration = Duration::from_secs(120);
const MACHINES: [&str; 3] = ["m1", "m2", "m3"];

pub fn run(quick: bool) -> Result<Value> {
    let work = if quick { WORK / 10 } else { WORK };
    let mut rolling = Vec::new();
    let mut creating = Vec::new();
    for replicas in SIZES {
        let old = specs::sized(0, 1, replicas)?;
        let new = specs::sized(0, 2, replicas)?;
        let observed = halfway(&old, &new);
        let cluster = Cluster {
            machines: MACHINES
                .iter()
                .map(|m| (m.to_string(), MachineInfo::default()))
                .collect(),
            registrators: MACHINES.iter().map(|m| m.to_string()).collect(),
        };
        let desired = Desired::Present(Target {
            rendered: &new.rendered,
            policy: new.unit.rollout(DEADLINE),
            constraints: Constraints {
                layout: new.unit.layout(),
                metadata: &new.unit.spec.machine,
                machine_id: None,
                conflicts: true,
                network_unit: "flanneld.service",
            },
        });
        let facts = |jobs| Facts {
            jobs,
            cluster: &cluster,
            progress: Progress::default(),
            schedule_grace: Duration::from_secs(10),
        };
        let rounds = (work / replicas as usize).max(1);
        rolling.push(ns_per_unit(rounds, replicas, || {
            decide(desired, &facts(black_box(&observed)))
        }));
        creating.push(ns_per_unit(rounds, replicas, || {
            decide(desired, &facts(black_box(&[])))
        }));
    }
    let growth = |per_unit: &[f64]| per_unit[per_unit.len() - 1] / per_unit[0].max(1e-9);
    Ok(json!({
        "replicas": SIZES,
        "rolling_update_ns_per_fleet_unit": rolling.iter().map(|n| n.round()).collect::<Vec<_>>(),
        "creating_ns_per_fleet_unit": creating.iter().map(|n| n.round()).collect::<Vec<_>>(),
        "growth_10_to_1000": {
            "rolling_update": crate::report::round3(growth(&rolling)),
            "creating": crate::report::round3(growth(&creating)),
        },
    }))
}

/// A rolling update half done: the first half of the replicas on `new`,
/// the rest still on `old`, every one available for a while.
fn halfway(old: &BenchUnit, new: &BenchUnit) -> Vec<ObservedJob> {
    let half = new.rendered.units.len() / 2;
    let (done, _) = new.rendered.units.split_at(half);
    let (_, left) = old.rendered.units.split_at(half);
    done.iter()
        .chain(left)
        .enumerate()
        .map(|(i, u)| {
            let machine = MACHINES[i % MACHINES.len()];
            ObservedJob {
                name: u.name.clone(),
                unit_hash: unit_hash(&u.text),
                stopped: false,
                age: Duration::from_secs(600),
                target: Some(machine.to_string()),
                placements: vec![Placement {
                    machine: machine.to_string(),
                    active: "active".into(),
                    sub: "running".into(),
                    current_text: true,
                    live: true,
                    registration: Registration::Registered(Health::None),
                    ready_for: Some(Duration::from_secs(600)),
                }],
            }
        })
        .collect()
}

fn ns_per_unit<T>(rounds: usize, replicas: u32, mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(f());
    }
    start.elapsed().as_nanos() as f64 / (rounds as f64 * f64::from(replicas))
}
