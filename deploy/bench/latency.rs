//! Change-to-fleet latency on a converged cluster: update one unit's spec at
//! a time and time from the etcd put to the watch event of the first fleet
//! job of its new spec (the surge unit of the rolling update); each such
//! sample is followed by one of the same path without Kaylee.

use crate::specs;
use crate::v2::Api;
use crate::watch::Watcher;
use crate::{Bench, seed};
use anyhow::{Result, bail};
use etcd_client::{Compare, CompareOp, DeleteOptions, Txn, TxnOp};
use kaylee_controllers::fleet::create_records;
use kaylee_controllers::keys::FleetKeys;
use std::time::{Duration, Instant};

/// The version the latency updates move units to (seeded units are at 1).
pub const VERSION: u32 = 2;
const FLOOR_VERSION: u32 = 9;
const PER_SAMPLE_LIMIT: Duration = Duration::from_secs(30);
/// The pause after a change through Kaylee before one without it.
const SETTLE: Duration = Duration::from_millis(25);

/// Kaylee's latency and etcd alone's, sample by sample in turn (one
/// change through Kaylee, then, once Kaylee has had [`SETTLE`] to finish
/// what the change started, one without it), so that whatever else the
/// machine does at a moment weighs on both alike.
pub async fn run(bench: &Bench, units: usize, samples: usize) -> Result<(Latency, Latency)> {
    let mut kaylee = Through::new(bench).await?;
    let mut floor = Floor::new(bench).await?;
    // Spread over the keyspace, every unit at most once.
    let stride = (units / samples.max(1)).max(1);
    let (mut through, mut alone) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for k in 0..samples.min(units) {
        through.push(kaylee.sample(k * stride).await?);
        // Kaylee goes on after the job's event (the unit's status, its
        // own writes' events): etcd alone is measured once that is done.
        tokio::time::sleep(SETTLE).await;
        if let Some(ms) = floor.sample(k * stride).await? {
            alone.push(ms);
        }
    }
    floor.clean().await?;
    Ok((summarize(through), summarize(alone)))
}

/// Changes through Kaylee: put a unit's new spec, time until the watch
/// event of the first fleet job of that spec (the surge unit of the rolling
/// update).
struct Through<'a> {
    bench: &'a Bench,
    watcher: Watcher,
}

impl<'a> Through<'a> {
    async fn new(bench: &'a Bench) -> Result<Through<'a>> {
        let watcher = Watcher::fleet(bench, &bench.fleet.prefix).await?;
        Ok(Through { bench, watcher })
    }

    /// Milliseconds from the put to the job's watch event.
    async fn sample(&mut self, index: usize) -> Result<f64> {
        let unit = specs::unit(index, VERSION)?;
        let names = specs::fleet_names(&unit.rendered);
        let sent = Instant::now();
        seed::put_unit(&self.bench.client, &unit).await?;
        let seen = self
            .watcher
            .wait(
                &format!("a new fleet job of {}", unit.name),
                PER_SAMPLE_LIMIT,
                |s| Watcher::first_job(s, &names),
            )
            .await?;
        Ok(seen.saturating_duration_since(sent).as_secs_f64() * 1000.0)
    }
}

/// The same path without Kaylee, as `raw` is for throughput: the bench puts
/// the unit's new spec, then at once writes its first new fleet unit's
/// records (v3: in one fenced transaction, as Kaylee would; v2: the way
/// Kaylee puts them, through the bench's own v2 client), and waits for the
/// watch event of the job. Under its own prefix, so Kaylee sees none of it.
struct Floor<'a> {
    bench: &'a Bench,
    fleet: FleetKeys,
    watcher: Watcher,
    fence_key: String,
    fence_rev: i64,
}

const FLOOR: &str = "/bench/floor/";

impl<'a> Floor<'a> {
    async fn new(bench: &'a Bench) -> Result<Floor<'a>> {
        let fleet = FleetKeys::new(&format!("{FLOOR}fleet/"), "k");
        let watcher = Watcher::fleet(bench, &fleet.prefix).await?;
        let fence_key = format!("{FLOOR}leader");
        let fence = bench
            .client
            .kv_client()
            .put(fence_key.clone(), "floor", None)
            .await?;
        let fence_rev = fence.header().map(|h| h.revision()).unwrap_or(0);
        Ok(Floor {
            bench,
            fleet,
            watcher,
            fence_key,
            fence_rev,
        })
    }

    /// Milliseconds from the spec's put to the job's watch event; `None`
    /// for a unit without fleet units.
    async fn sample(&mut self, index: usize) -> Result<Option<f64>> {
        let bench = self.bench;
        let mut kv = bench.client.kv_client();
        // A version no server-side change uses; the same sizes as Kaylee's.
        let unit = specs::unit(index, FLOOR_VERSION)?;
        let Some(first) = unit.rendered.units.first() else {
            return Ok(None);
        };
        let name = first.name.to_name();
        let records: Vec<(String, String)> = create_records(&name, &first.text)
            .into_iter()
            .map(|r| (self.fleet.absolute(&r.key), r.value))
            .collect();
        let sent = Instant::now();
        kv.put(
            format!("{FLOOR}units/{}", unit.name),
            unit.json.clone(),
            None,
        )
        .await?;
        match bench.api {
            Api::V3 => {
                let guard = Compare::create_revision(
                    self.fence_key.clone(),
                    CompareOp::Equal,
                    self.fence_rev,
                );
                let ops: Vec<TxnOp> = records
                    .into_iter()
                    .map(|(k, v)| TxnOp::put(k, v, None))
                    .collect();
                kv.txn(Txn::new().when([guard]).and_then(ops)).await?;
            }
            // As Kaylee writes a job over v2: `unit/` (create-only) and
            // `target-state` at once, then `object`.
            Api::V2 => {
                let [unit_rec, object, state] = &records[..] else {
                    bail!("a create is three records");
                };
                let (a, b) = futures::join!(
                    bench.v2.put(&unit_rec.0, &unit_rec.1, true),
                    bench.v2.put(&state.0, &state.1, false)
                );
                a?;
                b?;
                bench.v2.put(&object.0, &object.1, false).await?;
            }
        }
        let seen = self
            .watcher
            .wait(&name, PER_SAMPLE_LIMIT, |s| s.jobs.get(&name).copied())
            .await?;
        Ok(Some(
            seen.saturating_duration_since(sent).as_secs_f64() * 1000.0,
        ))
    }

    async fn clean(&self) -> Result<()> {
        self.bench
            .client
            .kv_client()
            .delete(FLOOR, Some(DeleteOptions::new().with_prefix()))
            .await?;
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Nearest-rank percentiles.
pub fn summarize(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(|a, b| a.total_cmp(b));
    let rank = |p: f64| -> f64 {
        if ms.is_empty() {
            return 0.0;
        }
        let i = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
        ms[i]
    };
    Latency {
        samples: ms.len(),
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
        mean_ms: ms.iter().sum::<f64>() / (ms.len().max(1) as f64),
    }
}
