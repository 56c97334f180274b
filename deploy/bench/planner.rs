//! The planner's cost against the size of a unit: one unit of 10 to 1,000
//! replicas (the most a unit may ask for), planned mid rolling update (half
//! its fleet units on the new spec, all running) and at creation (no fleet
//! units yet). Time per fleet unit should not grow with the size: a
//! quadratic step would multiply it by 100 from 10 to 1,000 replicas. (A
//! step up once the unit files a plan copies outgrow the CPU's cache is not
//! growth: look at the sizes around it.)

use crate::specs::{self, BenchUnit};
use anyhow::Result;
use kaylee_controllers::fleet::records::unit_hash;
use kaylee_controllers::units::plan::{Desired, ObservedJob, plan};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [u32; 5] = [10, 100, 300, 500, 1_000];
/// Fleet units planned per size and state, so each size takes about as long.
const WORK: usize = 2_000_000;
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(quick: bool) -> Result<Value> {
    let work = if quick { WORK / 10 } else { WORK };
    let mut rolling = Vec::new();
    let mut creating = Vec::new();
    for replicas in SIZES {
        let old = specs::sized(0, 1, replicas)?;
        let new = specs::sized(0, 2, replicas)?;
        let observed = halfway(&old, &new);
        let desired = Desired::Present {
            rendered: &new.rendered,
            startup_delay: Duration::ZERO,
        };
        let rounds = (work / replicas as usize).max(1);
        rolling.push(ns_per_unit(rounds, replicas, || {
            plan(desired, black_box(&observed), START_TIMEOUT)
        }));
        creating.push(ns_per_unit(rounds, replicas, || {
            plan(desired, black_box(&[]), START_TIMEOUT)
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
/// the rest still on `old`, every one running for a while.
fn halfway(old: &BenchUnit, new: &BenchUnit) -> Vec<ObservedJob> {
    let half = new.rendered.units.len() / 2;
    let (done, _) = new.rendered.units.split_at(half);
    let (_, left) = old.rendered.units.split_at(half);
    done.iter()
        .chain(left)
        .map(|u| ObservedJob {
            name: u.name.clone(),
            unit_hash: unit_hash(&u.text),
            running_on: 1,
            age: Duration::from_secs(600),
            running_for: Some(Duration::from_secs(600)),
            stopped: false,
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
