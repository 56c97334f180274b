//! kaylee-bench: Kaylee's reconcile throughput against etcd's own write rate,
//! change latency, failover, memory, idle CPU and the planner's cost per
//! fleet unit as units grow. Run it with
//! `deploy/bench.sh [--quick]`; it prints one JSON object per line per
//! scenario (README, Performance). It starts its own etcd and servers and
//! kills them at exit, also on panic or Ctrl-C.

mod cold;
mod converged;
mod etcd;
mod failover;
mod latency;
mod mode;
mod pairs;
mod planner;
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
use serde_json::Value;
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

    let Some(pairs::Ran {
        bench,
        cold,
        raw_ok,
    }) = pairs::run(&mode, &units, &flags).await
    else {
        for s in ["memory", "idle", "latency", "failover"] {
            report::skipped(s, "cold start failed");
        }
        return Ok(false);
    };
    let mut ok = converged::run(&bench, &mode, &flags, cold).await;
    if mode.wants("planner") {
        eprintln!("kaylee-bench: planner");
        ok &= report::line("planner", planner::run(mode.quick), Value::clone).is_some();
    }
    Ok(ok && raw_ok)
}
