//! The bench's output: one JSON object per line on stdout, one line per
//! scenario (or a line with `error` when it failed), so scripts can read
//! each scenario with a line filter. Lines of a run through one fleet API
//! carry `fleet_api` (`v2`, `v3`).

use crate::failover::Takeover;
use crate::raw::Throughput;
use crate::server::Flags;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Mutex;

static API: Mutex<Option<&'static str>> = Mutex::new(None);

/// Labels the lines printed from now on with `fleet_api` (none: unlabelled).
pub fn set_api(api: Option<&'static str>) {
    *API.lock().unwrap_or_else(|p| p.into_inner()) = api;
}

fn print(fields: Value, scenario: &str) {
    let mut line = json!({ "scenario": scenario });
    if let Some(api) = *API.lock().unwrap_or_else(|p| p.into_inner()) {
        line["fleet_api"] = json!(api);
    }
    if let (Value::Object(map), Value::Object(fields)) = (&mut line, fields) {
        map.extend(fields);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints a scenario's line from its result; the value back when it worked.
pub fn line<T>(
    scenario: &str,
    result: anyhow::Result<T>,
    show: impl FnOnce(&T) -> Value,
) -> Option<T> {
    match result {
        Ok(v) => {
            print(show(&v), scenario);
            Some(v)
        }
        Err(e) => {
            print(json!({ "error": format!("{e:#}") }), scenario);
            None
        }
    }
}

pub fn skipped(scenario: &str, why: &str) {
    print(json!({ "error": format!("not run: {why}") }), scenario);
}

pub fn machine(mode: &str, units: usize, v2_units: usize, flags: &Flags) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_mib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim());
    print(
        json!({
            "cores": cores,
            "ram_mib": ram_mib,
            "cpu": cpu,
            "etcd_version": crate::etcd::version(),
            "mode": mode,
            "units": units,
            "v2_units": v2_units,
            "replicas": crate::specs::REPLICAS,
            "max_txn_ops": flags.max_txn_ops,
        }),
        "machine",
    );
}

/// The fields raw and cold share, plus `extra`.
pub fn throughput(t: &Throughput, extra: Value) -> Value {
    let mut v = json!({
        "fleet_jobs": t.jobs,
        "keys": t.keys,
        "status_keys": t.status_keys,
        "txns": t.txns,
        "ops_per_txn": round1(t.ops_per_txn()),
        "seconds": round3(t.seconds),
        "keys_per_s": t.keys_per_s().round(),
        "all_keys_per_s": t.all_keys_per_s().round(),
        "etcd_cpu_s": round3(t.etcd_cpu_s),
        "etcd_txns": t.etcd_txns,
    });
    if t.v2_writes != 0 {
        v["v2_writes"] = json!(t.v2_writes);
    }
    if let (Value::Object(map), Value::Object(more)) = (&mut v, extra) {
        map.extend(more);
    }
    v
}

pub fn takeover(t: &Takeover) -> Value {
    json!({
        "unit": t.unit,
        "leader_ms": round1(t.leader_ms),
        "reconciled_ms": round1(t.reconciled_ms),
        "by_old_leader": t.by_old_leader,
        "new_leader_peak_rss_mib": round1(t.peak_rss_mib),
    })
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
