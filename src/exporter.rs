//! The Prometheus recorder behind the `metrics` facade the engine emits
//! through. Installed once by `kaylee server`; `/metrics` renders its handle
//! with [`render`].

use crate::logging;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::time::Duration;

/// Reconciles are mostly cache reads and one small transaction; the upper
/// buckets catch waits for etcd (request deadline 5 s) and read-your-writes.
const RECONCILE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histograms are summarised only when upkeep runs; without the exporter's
/// own HTTP listener, that is our job.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("kaylee_reconcile_duration_seconds".into()),
            RECONCILE_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_PERIOD);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Counted by the log writer itself (tracing-appender), not through the
/// facade: [`render`] copies its count in.
const LOG_LINES_DROPPED: &str = "kaylee_log_lines_dropped_total";

/// The Prometheus text of every metric, with the count of dropped log lines
/// read now. Like every series, that one appears once it has a value: after
/// the first dropped line.
pub fn render(handle: &PrometheusHandle) -> String {
    let dropped = logging::dropped_lines();
    if dropped > 0 {
        metrics::counter!(LOG_LINES_DROPPED).absolute(dropped);
    }
    handle.render()
}

/// HELP lines for every metric the engine emits (names are the contract
/// with dashboards; the README lists them).
fn describe() {
    describe_gauge!(
        "kaylee_workqueue_depth",
        "Unit names waiting in the work queue."
    );
    describe_counter!(
        "kaylee_workqueue_adds_total",
        "Unit names added to the work queue."
    );
    describe_counter!(
        "kaylee_reconcile_total",
        "Reconciles by result: ok, error, fenced."
    );
    describe_histogram!(
        "kaylee_reconcile_duration_seconds",
        Unit::Seconds,
        "Time one reconcile took."
    );
    describe_counter!(
        "kaylee_fleet_writes_total",
        "Fleet units written by op: create, destroy."
    );
    describe_counter!(
        "kaylee_informer_relists_total",
        "Full relists of an informer (start, compaction, broken watch)."
    );
    describe_gauge!("kaylee_is_leader", "1 while this server leads, else 0.");
    describe_counter!(
        "kaylee_leader_changes_total",
        "Times this server became leader."
    );
    describe_counter!(
        "kaylee_etcd_errors_total",
        "etcd requests that failed, by op."
    );
    describe_counter!(
        "kaylee_registrations_total",
        "Container IPs registered under /kaylee/instances."
    );
    describe_counter!(
        "kaylee_registration_errors_total",
        "Container registrations that failed."
    );
    describe_counter!(
        LOG_LINES_DROPPED,
        "Log lines dropped because stderr could not keep up."
    );
}
