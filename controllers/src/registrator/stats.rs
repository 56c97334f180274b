//! The registrator's counters, exported as metrics too.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for export as metrics.
#[derive(Debug, Default)]
pub struct RegistratorStats {
    /// Keys put: a new container, a changed IP, or a key moved onto a new
    /// lease.
    pub registrations: AtomicU64,
    /// Keys deleted.
    pub deregistrations: AtomicU64,
    /// Failures to register or deregister: an etcd write or Docker request
    /// that failed, or a labelled container whose label value or name cannot
    /// be used in a key.
    pub registration_errors: AtomicU64,
    /// Resyncs completed.
    pub resyncs: AtomicU64,
}

/// Counts in the stats and in the exported metric of the same meaning.
pub(super) fn bump(counter: &AtomicU64, metric: &'static str) {
    counter.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(metric).increment(1);
}
