//! Failover: a standby beside the converged leader; signal the leader, put a
//! change right after (after SIGTERM: as soon as the leader has resigned,
//! since until then it still leads and would write the change itself), and
//! time from the signal until the standby leads (its /readyz) and until the
//! change's first fleet job appears. SIGTERM makes the leader resign; after
//! SIGKILL its lease has to expire.

use crate::server::{self, Flags, Server};
use crate::specs;
use crate::watch::Watcher;
use crate::{Bench, seed};
use anyhow::{Result, bail};
use etcd_client::GetOptions;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// The versions failover changes move units to (others are at 1 or 2).
const VERSION: u32 = 3;

#[derive(Debug, Clone)]
pub struct Takeover {
    /// The unit changed right after the signal.
    pub unit: String,
    pub leader_ms: f64,
    pub reconciled_ms: f64,
    /// Whether the old leader wrote the change before it stopped (then the
    /// time says nothing about the takeover).
    pub by_old_leader: bool,
    /// The new leader's peak memory: it listed the whole registry at once.
    pub peak_rss_mib: f64,
}

/// Runs SIGTERM then SIGKILL; `leader` is the converged leader, `units`
/// the unit count. Returns both takeovers.
pub async fn run(
    bench: &Bench,
    leader: Server,
    units: usize,
    flags: &Flags,
) -> Result<(Takeover, Takeover)> {
    let standby = start_standby(bench, "standby-1", flags).await?;
    // Changes to the last units: not early in any pass over all of them.
    let (graceful, leader) =
        takeover(bench, leader, standby, Signal::SIGTERM, units - 1, flags).await?;
    let standby = start_standby(bench, "standby-2", flags).await?;
    let (killed, _last) =
        takeover(bench, leader, standby, Signal::SIGKILL, units - 2, flags).await?;
    Ok((graceful, killed))
}

/// Starts a server and waits until it campaigns (its key is the second
/// under the leader prefix).
async fn start_standby(bench: &Bench, name: &str, flags: &Flags) -> Result<Server> {
    let server = Server::start(&bench.endpoint, name, flags)?;
    let mut kv = bench.client.kv_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let opts = GetOptions::new().with_prefix().with_count_only();
        let candidates = kv.get("/kaylee/leader/", Some(opts)).await?.count();
        if candidates >= 2 && server::http_get(server.port(), "/healthz").is_ok() {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            bail!("standby {name} did not campaign within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn takeover(
    bench: &Bench,
    mut leader: Server,
    standby: Server,
    signal: Signal,
    unit_index: usize,
    flags: &Flags,
) -> Result<(Takeover, Server)> {
    let client = &bench.client;
    let unit = specs::unit(unit_index, VERSION)?;
    let names = specs::fleet_names(&unit.rendered);
    let watcher = Watcher::fleet(bench, &bench.fleet.prefix).await?;
    let limit = Duration::from_secs(flags.lease_ttl_s + 60);
    let port = standby.port();

    let leader_keys = Watcher::from_now(client, "/kaylee/leader/").await?;

    let log_before = leader.log().len();
    let sent = Instant::now();
    leader.signal(signal)?;
    if signal == Signal::SIGTERM {
        // A stopping leader keeps leading (and reconciling) until it
        // resigns; a change before that would be its, not the standby's.
        leader_keys
            .wait("the leader's resignation", limit, |s| {
                (!s.deleted.is_empty()).then_some(())
            })
            .await?;
    }
    seed::put_unit(client, &unit).await?;
    let leads = tokio::task::spawn_blocking(move || {
        while sent.elapsed() < limit {
            if server::is_leader(port) {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    });
    let job = watcher
        .wait(
            &format!("{}'s change after failover", unit.name),
            limit,
            |s| Watcher::first_job(s, &names),
        )
        .await?;
    let Some(led) = leads.await? else {
        bail!("the standby never reported leadership");
    };
    leader.wait_exit(Duration::from_secs(30))?;
    let log = leader.log();
    let by_old_leader = log
        .get(log_before..)
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains("reconciled") && l.contains(&unit.name));
    Ok((
        Takeover {
            unit: unit.name.clone(),
            leader_ms: ms(led - sent),
            reconciled_ms: ms(job.saturating_duration_since(sent)),
            by_old_leader,
            peak_rss_mib: standby.memory_mib()?.0,
        },
        standby,
    ))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
