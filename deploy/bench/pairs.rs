//! `cold` and `raw` as pairs: each pair a cold start on a fresh etcd, then
//! raw on fresh etcds writing what that cold start wrote. On a shared VM one
//! pair's ratio moves by ±0.1 from run to run, so the full mode runs three
//! and reports the pair with the median ratio, listing every pair's. The last
//! pair's cluster stays up, converged, for the scenarios after.

use crate::cold::{self, Cold};
use crate::mode::Mode;
use crate::raw::{self, Throughput};
use crate::server::Flags;
use crate::specs::{self, BenchUnit};
use crate::v2::Api;
use crate::{Bench, MAX_TXN_OPS, report, seed};
use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use std::collections::HashMap;

/// What one pair measured.
struct Pair {
    cold: Throughput,
    leader_s: f64,
    kaylee_cpu_s: f64,
    /// With statuses, and what else its line shows; `None` when raw was
    /// not run.
    raw: Option<(Throughput, Value)>,
}

impl Pair {
    fn ratio(&self) -> Option<f64> {
        let (r, _) = self.raw.as_ref()?;
        Some(self.cold.all_keys_per_s() / r.all_keys_per_s())
    }
}

/// The last cold start's cluster, and whether every wanted raw run worked.
pub struct Ran {
    pub bench: Bench,
    pub cold: Cold,
    pub raw_ok: bool,
}

/// Runs the pairs and prints the `raw` and `cold` lines; `None` when a cold
/// start failed.
pub async fn run(mode: &Mode, units: &[BenchUnit], flags: &Flags) -> Option<Ran> {
    let mut pairs = Vec::new();
    let mut last = None;
    let mut raw_ok = true;
    let (api, count) = (flags.api, mode.pairs_for(flags.api));
    for round in 1..=count {
        // The pair before stops first: its idle server would be noise.
        drop(last.take());
        eprintln!("kaylee-bench: {} cold ({round}/{count})", api.name());
        let started = async {
            let bench = Bench::start("kaylee", api).await?;
            let cold = cold::run(&bench, units, flags).await?;
            anyhow::Ok((bench, cold))
        }
        .await;
        let (bench, cold) = match started {
            Ok(c) => c,
            Err(e) => {
                report::skipped("raw", "cold start failed");
                report::line::<()>("cold", Err(e), |_| json!({}));
                return None;
            }
        };
        let raw = if mode.wants("raw") {
            eprintln!("kaylee-bench: {} raw ({round}/{count})", api.name());
            let raw = match api {
                Api::V3 => raw_pair(units, &cold.statuses).await,
                Api::V2 => raw_v2(mode, units, &cold.statuses).await,
            };
            match raw {
                Ok(r) => Some(r),
                Err(e) => {
                    report::line::<()>("raw", Err(e), |_| json!({}));
                    None
                }
            }
        } else {
            None
        };
        raw_ok &= !mode.wants("raw") || raw.is_some();
        pairs.push(Pair {
            cold: cold.written,
            leader_s: cold.leader_s,
            kaylee_cpu_s: cold.kaylee_cpu_s,
            raw,
        });
        last = Some((bench, cold));
        if !raw_ok {
            break;
        }
    }
    report_median(&pairs, units, flags);
    last.map(|(bench, cold)| Ran {
        bench,
        cold,
        raw_ok,
    })
}

/// Raw with the statuses the cold start wrote, then fleet records only.
async fn raw_pair(
    units: &[BenchUnit],
    statuses: &HashMap<String, Vec<(String, String)>>,
) -> Result<(Throughput, Value)> {
    let with_statuses = raw_run(units, Some(statuses)).await?;
    let fleet_only = raw_run(units, None).await?;
    Ok((
        with_statuses,
        json!({
            "concurrency": raw::CONCURRENCY,
            "max_txn_ops": MAX_TXN_OPS,
            "fleet_only": report::throughput(&fleet_only, json!({})),
        }),
    ))
}

/// The v2 ceiling at the best concurrency found.
async fn raw_v2(
    mode: &Mode,
    units: &[BenchUnit],
    statuses: &HashMap<String, Vec<(String, String)>>,
) -> Result<(Throughput, Value)> {
    let found = raw::best_v2(units, statuses, &mode.v2_concurrencies, mode.v2_probe_units).await?;
    let tried: serde_json::Map<String, Value> = found
        .tried
        .iter()
        .map(|(c, kps)| (c.to_string(), json!(kps.round())))
        .collect();
    Ok((
        found.best,
        json!({
            "concurrency": found.concurrency,
            "tried_all_keys_per_s": tried,
            "probe_units": found.probe_units,
            "status_max_txn_ops": MAX_TXN_OPS,
        }),
    ))
}

/// The raw scenario on a fresh etcd holding the same units.
async fn raw_run(
    units: &[BenchUnit],
    statuses: Option<&HashMap<String, Vec<(String, String)>>>,
) -> Result<Throughput> {
    let bench = Bench::start("raw", Api::V3).await?;
    seed::units(&bench.client, units).await?;
    raw::run(&bench, units, statuses, MAX_TXN_OPS).await
}

fn report_median(pairs: &[Pair], units: &[BenchUnit], flags: &Flags) {
    let mut ranked: Vec<&Pair> = pairs.iter().collect();
    ranked.sort_by(|a, b| {
        a.ratio()
            .unwrap_or(0.0)
            .total_cmp(&b.ratio().unwrap_or(0.0))
    });
    let Some(median) = ranked.get(ranked.len() / 2) else {
        return;
    };
    let ratios: Vec<f64> = pairs
        .iter()
        .filter_map(|p| p.ratio().map(report::round3))
        .collect();
    let raw = median.raw.as_ref().ok_or_else(|| anyhow!("not run"));
    let raw = match raw {
        Ok(r) => report::line("raw", Ok(r), |(r, extra)| {
            report::throughput(r, extra.clone())
        }),
        // Already reported (failed), or not wanted.
        Err(_) => None,
    };
    let c = &median.cold;
    let fleet_only_ratio = raw
        .and_then(|(_, extra)| extra.get("fleet_only"))
        .and_then(|f| f.get("keys_per_s"))
        .and_then(Value::as_f64)
        .map(|f| report::round3(c.keys_per_s() / f));
    report::line("cold", Ok(c), |c| {
        report::throughput(
            c,
            json!({
                "ratio_to_raw": median.ratio().map(report::round3),
                "ratio_to_raw_fleet_only": fleet_only_ratio,
                "pairs": pairs.len(),
                "ratios": ratios,
                "leader_s": report::round3(median.leader_s),
                "kaylee_cpu_s": report::round3(median.kaylee_cpu_s),
                "converged": c.jobs == units.len() * specs::REPLICAS as usize,
                "workers": flags.effective_workers(),
            }),
        )
    });
}
