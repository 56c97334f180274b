//! kaylee-bench: Kaylee's reconcile throughput against etcd's own write rate,
//! change latency, failover, memory and idle CPU. Run it with
//! `deploy/bench.sh [--quick]`; it prints one JSON object per line per
//! scenario (README, Performance). It starts its own etcd and servers and
//! kills them at exit, also on panic or Ctrl-C.

mod cold;
mod converged;
mod etcd;
mod failover;
mod latency;
mod mode;
mod procs;
mod raw;
mod report;
mod resources;
mod seed;
mod server;
mod specs;
mod watch;

use anyhow::Result;
use etcd_client::Client;
use kaylee_controllers::keys::FleetKeys;
use serde_json::json;
use std::time::Instant;

const FLEET_PREFIX: &str = "/_coreos.com/fleet/";
const MAX_TXN_OPS: usize = 128;

/// One etcd and a client to it.
pub struct Bench {
    pub client: Client,
    pub endpoint: String,
    pub fleet: FleetKeys,
    pub etcd: etcd::Etcd,
}

impl Bench {
    async fn start(label: &str) -> Result<Bench> {
        let etcd = etcd::Etcd::start(label).await?;
        Ok(Bench {
            client: etcd.client().await?,
            endpoint: etcd.endpoint(),
            fleet: FleetKeys::new(FLEET_PREFIX, "k"),
            etcd,
        })
    }
}

#[tokio::main]
async fn main() {
    procs::install_cleanup();
    let started = Instant::now();
    let ok = match run().await {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("kaylee-bench: {e:#}");
            false
        }
    };
    procs::kill_all();
    eprintln!(
        "kaylee-bench: finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    std::process::exit(if ok { 0 } else { 1 });
}

/// Runs every scenario; false when one failed (its line says why).
async fn run() -> Result<bool> {
    let mode = mode::Mode::from_args()?;
    let flags = server::Flags::detect(mode.lease_ttl_s, MAX_TXN_OPS)?;
    report::machine(mode.name(), mode.units, &flags);
    eprintln!("kaylee-bench: rendering {} units", mode.units);
    let units = specs::units(mode.units)?;

    // Cold runs first: raw writes the statuses it wrote. Meanwhile its
    // server and etcd sit converged and idle (see `idle`).
    eprintln!("kaylee-bench: cold");
    let bench = Bench::start("kaylee").await?;
    let cold = cold::run(&bench, &units, &flags).await;
    let raw = async {
        if !mode.wants("raw") {
            anyhow::bail!("not run (--only)");
        }
        let Ok(cold) = &cold else {
            anyhow::bail!("not run: cold start failed");
        };
        eprintln!("kaylee-bench: raw");
        let with_statuses = raw_run(&units, Some(&cold.statuses)).await?;
        let fleet_only = raw_run(&units, None).await?;
        Ok((with_statuses, fleet_only))
    }
    .await;
    let raw = report::line("raw", raw, |(r, fleet_only)| {
        report::throughput(
            r,
            json!({
                "concurrency": raw::CONCURRENCY,
                "max_txn_ops": MAX_TXN_OPS,
                "fleet_only": report::throughput(fleet_only, json!({})),
            }),
        )
    });
    let cold = report::line("cold", cold, |c| {
        let ratio =
            |r: &raw::Throughput| report::round3(c.written.all_keys_per_s() / r.all_keys_per_s());
        report::throughput(
            &c.written,
            json!({
                "ratio_to_raw": raw.as_ref().map(|(r, _)| ratio(r)),
                "ratio_to_raw_fleet_only": raw.as_ref().map(|(_, f)| report::round3(c.written.keys_per_s() / f.keys_per_s())),
                "leader_s": report::round3(c.leader_s),
                "kaylee_cpu_s": report::round3(c.kaylee_cpu_s),
                "converged": c.written.jobs == units.len() * specs::REPLICAS as usize,
                "workers": flags.effective_workers(),
                "fleet_api": flags.fleet_api(),
            }),
        )
    });
    let Some(cold) = cold else {
        for s in ["memory", "idle", "latency", "failover"] {
            report::skipped(s, "cold start failed");
        }
        return Ok(false);
    };
    let ok = converged::run(&bench, &mode, &flags, cold).await;
    Ok(ok && (raw.is_some() || !mode.wants("raw")))
}

/// The raw scenario on a fresh etcd holding the same units.
async fn raw_run(
    units: &[specs::BenchUnit],
    statuses: Option<&std::collections::HashMap<String, String>>,
) -> Result<raw::Throughput> {
    let bench = Bench::start("raw").await?;
    seed::units(&bench.client, units).await?;
    raw::run(&bench, units, statuses, MAX_TXN_OPS).await
}
