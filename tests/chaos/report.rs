//! What a chaos run counts and every invariant violation it finds. Each
//! violation is printed when found (with the time since the start) and kept
//! for the end, where the test asserts there were none.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Violations kept in full; beyond this only the count grows.
const KEPT: usize = 200;

pub struct Report {
    started: Instant,
    violations: Mutex<Vec<String>>,
    /// One report per distinct problem (e.g. per foreign key, per
    /// rollout), not one per sample that shows it again.
    reported: Mutex<BTreeSet<String>>,
    pub counters: Counters,
}

#[derive(Default)]
pub struct Counters {
    pub sigkill: AtomicU64,
    pub sigterm: AtomicU64,
    pub pauses: AtomicU64,
    pub changes: AtomicU64,
    pub write_errors: AtomicU64,
    pub etcd_restarts: AtomicU64,
    pub compactions: AtomicU64,
    pub samples: AtomicU64,
    pub failed_samples: AtomicU64,
    /// Rolling updates watched from a settled start (invariant d).
    pub rollouts_watched: AtomicU64,
    /// … of which were seen through to the end without a newer change.
    pub rollouts_completed: AtomicU64,
    /// Rollouts that fell below their replicas while a new unit had been
    /// waiting longer than the start timeout (allowed by design, counted).
    pub explained_drops: AtomicU64,
    /// Fleet writes (distinct revisions) whose leader was checked.
    pub fence_checked: AtomicU64,
    pub skipped_revisions: AtomicU64,
    /// Fleet writes no server logged, made by a leader that was gone
    /// (killed, or exiting) before it could.
    pub unlogged_writes: AtomicU64,
    /// Longest time from a spec change to fleet holding exactly its units.
    pub max_convergence_ms: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

impl Report {
    pub fn new() -> Report {
        Report {
            started: Instant::now(),
            violations: Mutex::new(Vec::new()),
            reported: Mutex::new(BTreeSet::new()),
            counters: Counters::default(),
        }
    }

    pub fn elapsed_ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    /// Records a violation once per `key`.
    pub fn violation(&self, key: &str, message: String) {
        if !self.reported.lock().unwrap().insert(key.to_string()) {
            return;
        }
        let line = format!("[{:>7} ms] {message}", self.elapsed_ms());
        eprintln!("chaos violation: {line}");
        let mut all = self.violations.lock().unwrap();
        if all.len() < KEPT {
            all.push(line);
        }
    }

    pub fn violation_count(&self) -> usize {
        self.reported.lock().unwrap().len()
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    pub fn note(&self, message: &str) {
        eprintln!("chaos: [{:>7} ms] {message}", self.elapsed_ms());
    }

    pub fn record_convergence(&self, ms: u64) {
        self.counters
            .max_convergence_ms
            .fetch_max(ms, Ordering::SeqCst);
    }
}
