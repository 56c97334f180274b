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
mod list;
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
mod v2;
mod watch;

use anyhow::Result;
use etcd_client::Client;
use kaylee_controllers::keys::FleetKeys;
use serde_json::Value;
use std::time::Instant;

const FLEET_PREFIX: &str = "/_coreos.com/fleet/";
const MAX_TXN_OPS: usize = 128;

/// One etcd, clients to it, and the API fleet's registry is written
/// through in this run.
pub struct Bench {
    pub client: Client,
    /// The bench's own v2 client.
    pub v2: v2::V2,
    pub api: v2::Api,
    pub endpoint: String,
    pub fleet: FleetKeys,
    pub etcd: etcd::Etcd,
}

impl Bench {
    async fn start(label: &str, api: v2::Api) -> Result<Bench> {
        let etcd = etcd::Etcd::start(label).await?;
        Ok(Bench {
            client: etcd.client().await?,
            v2: v2::V2::new(&etcd.endpoint())?,
            api,
            endpoint: etcd.endpoint(),
            fleet: FleetKeys::new(FLEET_PREFIX, "k"),
            etcd,
        })
    }
}

#[tokio::main]
async fn main() {
    procs::install_cleanup();
    // reqwest (the bench's v2 client) is built without a default TLS
    // provider; loopback is plain HTTP, but a client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// Runs every scenario, through each API; false when one failed.
async fn run() -> Result<bool> {
    let mode = mode::Mode::from_args()?;
    let flags = server::Flags::detect(mode.lease_ttl_s, MAX_TXN_OPS)?;
    report::machine(mode.name(), mode.units, mode.v2_units, &flags);
    let mut ok = true;
    for &api in &mode.apis {
        report::set_api(Some(api.name()));
        if !flags.supports(api) {
            for s in [
                "raw", "cold", "memory", "idle", "latency", "list", "failover",
            ] {
                report::skipped(s, "the binary has no --fleet-etcd-api");
            }
            ok = false;
            continue;
        }
        ok &= run_api(&mode, &flags.for_api(api)).await?;
    }
    report::set_api(None);
    if mode.wants("planner") {
        eprintln!("kaylee-bench: planner");
        ok &= report::line("planner", planner::run(mode.quick), Value::clone).is_some();
    }
    Ok(ok)
}

/// Every scenario but the planner through `flags.api`.
async fn run_api(mode: &mode::Mode, flags: &server::Flags) -> Result<bool> {
    let count = mode.units_for(flags.api);
    eprintln!(
        "kaylee-bench: {}: rendering {count} units",
        flags.api.name()
    );
    let units = specs::units(count)?;
    let Some(pairs::Ran {
        bench,
        cold,
        raw_ok,
    }) = pairs::run(mode, &units, flags).await
    else {
        for s in ["memory", "idle", "latency", "list", "failover"] {
            report::skipped(s, "cold start failed");
        }
        return Ok(false);
    };
    let ok = converged::run(&bench, mode, count, flags, cold).await;
    Ok(ok && raw_ok)
}
