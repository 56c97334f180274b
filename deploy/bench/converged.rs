//! The scenarios on the cluster that cold start left converged: memory and
//! idle CPU of its leader, change latency, the listing a new leader makes,
//! then failover (which stops it).

use crate::cold::Cold;
use crate::mode::Mode;
use crate::server::Flags;
use crate::{Bench, failover, latency, list, report, resources};
use serde_json::json;

/// Runs what `mode` wants; false when a scenario failed.
pub async fn run(bench: &Bench, mode: &Mode, units: usize, flags: &Flags, cold: Cold) -> bool {
    let Cold {
        written, server, ..
    } = cold;
    let mut ok = true;
    if !["memory", "idle", "latency", "list", "failover"]
        .iter()
        .any(|s| mode.wants(s))
    {
        return ok;
    }
    if let Err(e) = resources::settle(&bench.client, &server, units).await {
        eprintln!("kaylee-bench: the leader did not settle: {e:#}");
        ok = false;
    }
    if mode.wants("memory") {
        let memory = resources::memory(&server);
        ok &= report::line("memory", memory, |m| {
            json!({
                "units": units,
                "fleet_jobs": written.jobs,
                "peak_rss_mib": report::round1(m.peak_rss_mib),
                "rss_mib": report::round1(m.rss_mib),
            })
        })
        .is_some();
    }
    if mode.wants("idle") {
        eprintln!("kaylee-bench: idle for {:?}", mode.idle);
        let idle = resources::idle_cpu(&server, mode.idle).await;
        ok &= report::line("idle", idle, |cpu| {
            json!({
                "window_s": mode.idle.as_secs(),
                "cpu_s": report::round3(*cpu),
                "cpu_pct": report::round3(100.0 * cpu / mode.idle.as_secs_f64()),
                "resync_period_s": 60,
            })
        })
        .is_some();
    }
    if mode.wants("latency") {
        eprintln!("kaylee-bench: latency, {} changes", mode.samples);
        let lat = latency::run(bench, units, mode.samples).await;
        ok &= report::line("latency", lat, |(l, floor)| {
            json!({
                "samples": l.samples,
                "p50_ms": report::round3(l.p50_ms),
                "p99_ms": report::round3(l.p99_ms),
                "max_ms": report::round3(l.max_ms),
                "mean_ms": report::round3(l.mean_ms),
                "etcd_alone": {
                    "p50_ms": report::round3(floor.p50_ms),
                    "p99_ms": report::round3(floor.p99_ms),
                    "max_ms": report::round3(floor.max_ms),
                },
            })
        })
        .is_some();
    }
    if mode.wants("list") {
        eprintln!("kaylee-bench: list");
        ok &= report::line("list", list::run(bench).await, |l| {
            json!({
                "units": units,
                "fleet_jobs": l.jobs,
                "kept_keys": l.kept,
                "seconds": report::round3(l.seconds),
            })
        })
        .is_some();
    }
    if mode.wants("failover") {
        eprintln!("kaylee-bench: failover");
        let fo = failover::run(bench, server, units, flags).await;
        ok &= report::line("failover", fo, |(term, kill)| {
            json!({
                "units": units,
                "lease_ttl_s": flags.lease_ttl_s,
                "sigterm": report::takeover(term),
                "sigkill": report::takeover(kill),
            })
        })
        .is_some();
    }
    ok
}
