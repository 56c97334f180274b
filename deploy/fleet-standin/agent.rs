//! The agents of this process's machines: each round, the unit
//! supervisors are made to match what the registry asks of these machines
//! (started, stopped, replaced), and their states are published.

use crate::cli::Settings;
use crate::desired::{RunnerKey, Want, desired};
use crate::problems::Problems;
use crate::publish::Publisher;
use crate::registry::Snapshot;
use crate::runner::{Context, Runner};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A supervisor and what it stands for.
struct Active {
    runner: Runner,
    hash: String,
    machines: BTreeSet<String>,
}

/// This process's agents.
pub struct Agents {
    settings: Arc<Settings>,
    problems: Arc<Problems>,
    runners: BTreeMap<RunnerKey, Active>,
    /// Supervisors stopping for good; their states go once they are done.
    stopping: Vec<(RunnerKey, Active)>,
    publisher: Publisher,
}

impl Agents {
    /// Agents with nothing to run yet.
    pub fn new(settings: Arc<Settings>, store: Arc<Store>, problems: Arc<Problems>) -> Agents {
        Agents {
            settings,
            publisher: Publisher::new(store, problems.clone()),
            problems,
            runners: BTreeMap::new(),
            stopping: Vec::new(),
        }
    }

    /// One round: with a snapshot, reconcile the supervisors with it; with
    /// none (etcd did not answer), keep everything as it is. Either way,
    /// publish what changed.
    pub async fn round(&mut self, snapshot: Option<&Snapshot>) {
        if let Some(snapshot) = snapshot {
            let want = desired(snapshot, &self.settings.machines);
            self.retire_unwanted(&want);
            self.reap().await;
            self.start_wanted(want).await;
        } else {
            self.reap().await;
        }
        self.publish().await;
    }

    /// Stops supervisors whose unit is no longer wanted here, or wanted in
    /// another version.
    fn retire_unwanted(&mut self, want: &BTreeMap<RunnerKey, Want>) {
        let unwanted: Vec<RunnerKey> = self
            .runners
            .iter()
            .filter(|(key, a)| want.get(*key).is_none_or(|w| w.unit.hash_hex != a.hash))
            .map(|(key, _)| key.clone())
            .collect();
        for key in unwanted {
            if let Some(active) = self.runners.remove(&key) {
                tracing::info!(unit = %key.name, "no longer wanted here: stopping");
                active.runner.cancel();
                self.stopping.push((key, active));
            }
        }
    }

    /// Forgets stopped supervisors and deletes what they published.
    async fn reap(&mut self) {
        let (done, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.stopping)
            .into_iter()
            .partition(|(_, a)| a.runner.finished());
        self.stopping = still;
        for (key, active) in done {
            for machine in &active.machines {
                self.publisher.remove_state(&key.name, machine).await;
            }
            if !self.runners.keys().any(|k| k.name == key.name) {
                self.publisher.job_state(&key.name, None).await;
            }
        }
    }

    /// Starts the supervisors that are missing and updates the others.
    async fn start_wanted(&mut self, want: BTreeMap<RunnerKey, Want>) {
        let mut existing: BTreeSet<String> = self.settings.host_units.clone();
        existing.extend(want.keys().map(|k| k.name.clone()));
        let existing = Arc::new(existing);
        for (key, w) in want {
            if let Some(active) = self.runners.get_mut(&key) {
                active.runner.set_launched(w.launched);
                let gone: Vec<String> = active.machines.difference(&w.machines).cloned().collect();
                active.machines = w.machines;
                for machine in gone {
                    self.publisher.remove_state(&key.name, &machine).await;
                }
                continue;
            }
            // One Docker engine: the old supervisor of this unit (moved
            // here, or another version) must have stopped its container.
            if self.stopping.iter().any(|(k, _)| k.name == key.name) {
                continue;
            }
            let ctx = Context {
                name: key.name.clone(),
                unit: w.unit.clone(),
                existing: existing.clone(),
                restart_sec: self.settings.restart_sec,
                stop_timeout: self.settings.stop_timeout,
                offline_pull: self.settings.offline_pull,
                simulate: self.settings.simulate.clone(),
                lock_dir: key
                    .machine
                    .is_none()
                    .then(|| self.settings.lock_dir.clone()),
                problems: self.problems.clone(),
            };
            tracing::info!(
                unit = %key.name,
                machines = ?w.machines,
                launched = w.launched,
                "loaded"
            );
            let runner = Runner::spawn(ctx, w.launched);
            self.runners.insert(
                key,
                Active {
                    runner,
                    hash: w.unit.hash_hex.clone(),
                    machines: w.machines,
                },
            );
        }
    }

    /// Publishes every supervisor's state for each of its machines, and the
    /// job-state heartbeats (none for a unit that is stopping).
    async fn publish(&mut self) {
        let mut states = Vec::new();
        let all = self
            .runners
            .iter()
            .chain(self.stopping.iter().map(|(k, a)| (k, a)));
        for (key, a) in all {
            for machine in &a.machines {
                states.push((
                    key.name.clone(),
                    machine.clone(),
                    a.runner.status(),
                    a.hash.clone(),
                ));
            }
        }
        let mut heartbeats: BTreeMap<String, Option<String>> = self
            .stopping
            .iter()
            .map(|(k, _)| (k.name.clone(), None))
            .collect();
        for (key, a) in &self.runners {
            let on = a
                .runner
                .launched()
                .then(|| a.machines.first().cloned())
                .flatten();
            heartbeats.insert(key.name.clone(), on);
        }
        for (name, machine, status, hash) in states {
            self.publisher.state(&name, &machine, status, &hash).await;
        }
        for (name, machine) in heartbeats {
            self.publisher.job_state(&name, machine.as_deref()).await;
        }
    }

    /// Stops every unit and deletes what this process published about
    /// them (fleet's shutdown purge).
    pub async fn shutdown(&mut self) {
        for (key, active) in std::mem::take(&mut self.runners) {
            active.runner.cancel();
            self.stopping.push((key, active));
        }
        while !self.stopping.is_empty() {
            self.publish().await;
            self.reap().await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
