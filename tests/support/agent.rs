//! A fake fleet machine that never fails, for tests about Kaylee's writes:
//! it announces itself in `machines/` and "runs" every job by writing
//! `states/` entries (with the unit hash) the way fleet's agents do,
//! through the etcd API the test runs Kaylee with. It writes no `target`
//! (an engine's race with destroys would leave stray keys the chaos test
//! counts); a job's running state on a live machine says where it runs. The fleet stand-in (`deploy/fleet-standin`) plays the
//! fleet that fails, runs real containers and loses machines.

use super::fleet::FleetView;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Stops the agent when dropped.
pub struct Agent {
    stop: CancellationToken,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A fake fleet agent on machine `machine`: every job that exists is
/// reported running `delay` after it was first seen; the state of a job that
/// is gone is removed. While etcd does not answer (stopped, restarting) it
/// skips a round and tries again, as a real agent would, rather than die.
pub fn spawn_agent(view: &FleetView, machine: &str, delay: Duration) -> Agent {
    let stop = CancellationToken::new();
    let token = stop.clone();
    let view = view.clone();
    let machine = machine.to_string();
    tokio::spawn(async move {
        let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
        while !token.is_cancelled() {
            round(&view, &machine, delay, &mut first_seen).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    Agent { stop }
}

/// One pass; returns early (to be retried next round) when etcd fails.
async fn round(
    view: &FleetView,
    machine: &str,
    delay: Duration,
    first_seen: &mut BTreeMap<String, Instant>,
) {
    let Some(snap) = view.try_jobs_and_states(false).await else {
        return;
    };
    // Announced every round: etcd may have been restarted, or its data
    // lost, by the test.
    if !view.try_add_machine(machine).await {
        return;
    }
    let now = Instant::now();
    for (name, job) in &snap.jobs {
        let seen = *first_seen.entry(name.clone()).or_insert(now);
        let running = snap.running.get(name).is_some_and(|m| m.contains(machine));
        if !running
            && now.duration_since(seen) >= delay
            && !view
                .try_set_running(name, machine, &job.unit_hash_hex())
                .await
        {
            return;
        }
    }
    for name in snap.running.keys() {
        if !snap.jobs.contains_key(name) && !view.try_clear_states(name).await {
            return;
        }
    }
    first_seen.retain(|n, _| snap.jobs.contains_key(n));
}
