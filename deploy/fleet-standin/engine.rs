//! fleet's engine: the leader among engines (the `lease/engine-leader`
//! key) schedules, applying each round's plan (`schedule.rs`) to the
//! registry as fleet does: `target` created only if absent, deleted only
//! if it still names the machine.

use crate::problems::Problems;
use crate::records::{
    ENGINE_LEASE, ENGINE_VERSION, ENGINE_VERSION_KEY, engine_lease_value, job_object_key,
    target_key,
};
use crate::registry::Snapshot;
use crate::schedule::{Task, plan};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

const KIND: &str = "etcd: engine";

/// This process's engine.
pub struct Engine {
    store: Arc<Store>,
    problems: Arc<Problems>,
    machine: String,
    lease_value: String,
    lease_ttl: Duration,
    leading: bool,
    /// The cluster's engine version was found to be ours (it never goes
    /// down, so once is enough).
    version_ok: bool,
}

impl Engine {
    /// An engine named after `machine`, renewing its lease each round of
    /// `interval` (fleet: a TTL of five rounds).
    pub fn new(
        store: Arc<Store>,
        problems: Arc<Problems>,
        machine: &str,
        interval: Duration,
    ) -> Engine {
        Engine {
            store,
            problems,
            machine: machine.to_string(),
            lease_value: engine_lease_value(machine),
            lease_ttl: (interval * 5).max(Duration::from_secs(2)),
            leading: false,
            version_ok: false,
        }
    }

    /// One round: lead or not; when leading, schedule, and record the new
    /// targets in `snapshot` so this round's agents see them.
    pub async fn round(&mut self, snapshot: &mut Snapshot) {
        let lease = self
            .store
            .engine_lease(ENGINE_LEASE, &self.lease_value, self.lease_ttl)
            .await;
        let leading = self.problems.outcome(KIND, lease).unwrap_or(false);
        if leading != self.leading {
            if leading {
                tracing::info!(machine = %self.machine, "engine leadership acquired");
            } else {
                tracing::info!(machine = %self.machine, "engine leadership lost");
            }
            self.leading = leading;
        }
        if !leading {
            return;
        }
        if !self.version_ok {
            self.version_ok = self.version_matches().await;
            if !self.version_ok {
                return;
            }
        }
        for task in plan(&snapshot.jobs, &snapshot.machines) {
            match task {
                Task::Unschedule {
                    job,
                    machine,
                    reason,
                } => {
                    let done = self.store.delete_if(&target_key(&job), &machine).await;
                    if self.problems.outcome(KIND, done).is_some() {
                        tracing::info!("Unscheduled Job({job}) from Machine({machine}): {reason}");
                        if let Some(j) = snapshot.jobs.get_mut(&job) {
                            j.target = None;
                        }
                    }
                }
                Task::Schedule { job, machine } => {
                    let created = self
                        .store
                        .create(&target_key(&job), &machine, Some(&job_object_key(&job)))
                        .await;
                    if self.problems.outcome(KIND, created) == Some(true) {
                        tracing::info!("Scheduled Unit({job}) to Machine({machine})");
                        if let Some(j) = snapshot.jobs.get_mut(&job) {
                            j.target = Some(machine);
                        }
                    }
                }
            }
        }
    }

    /// fleet's engine runs only at the cluster's engine version, and sets
    /// it when there is none.
    async fn version_matches(&self) -> bool {
        let current = self.store.get(ENGINE_VERSION_KEY).await;
        match self.problems.outcome(KIND, current) {
            None => false,
            Some(Some(v)) if v.trim() == ENGINE_VERSION => true,
            Some(Some(v)) => {
                self.problems.notice(
                    "engine version",
                    format!("cluster engine version is {v}, not {ENGINE_VERSION}: not scheduling"),
                );
                false
            }
            Some(None) => {
                let created = self
                    .store
                    .create(ENGINE_VERSION_KEY, ENGINE_VERSION, None)
                    .await;
                self.problems.outcome(KIND, created).is_some()
            }
        }
    }

    /// Gives the lease up (a clean shutdown), so another engine leads at
    /// once.
    pub async fn release(&self) {
        if self.leading {
            let released = self
                .store
                .release_engine_lease(ENGINE_LEASE, &self.lease_value)
                .await;
            self.problems.outcome(KIND, released);
        }
    }
}
