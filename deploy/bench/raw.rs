//! The ceiling: the same fleet records Kaylee will write for the same units,
//! written by the same etcd client, batched the way Kaylee batches (each
//! create's 3 puts atomic, at most --max-txn-ops operations and 1 MiB per
//! transaction, every transaction guarded by a compare on a leader-style
//! key) with Kaylee's concurrency: its fleet writer keeps one transaction in
//! flight.

use crate::Bench;
use crate::specs::BenchUnit;
use crate::watch::{self, Watcher};
use anyhow::{Result, bail};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use kaylee_controllers::fleet::create_records;
use kaylee_controllers::keys::FleetKeys;
use std::time::{Duration, Instant};

/// As in Kaylee's V3Registry.
const MAX_TXN_BYTES: usize = 1024 * 1024;
const FENCE_KEY: &str = "/kaylee/leader/raw-bench";
pub const CONCURRENCY: usize = 1;

/// Fleet keys written, and how.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub jobs: usize,
    pub keys: u64,
    pub txns: u64,
    pub seconds: f64,
    /// CPU etcd used meanwhile: on 2 cores, what the writer leaves it matters.
    pub etcd_cpu_s: f64,
    /// Every write transaction etcd committed meanwhile (revisions), fleet
    /// or not.
    pub etcd_txns: i64,
}

impl Throughput {
    pub fn keys_per_s(&self) -> f64 {
        self.keys as f64 / self.seconds.max(1e-9)
    }
    pub fn ops_per_txn(&self) -> f64 {
        self.keys as f64 / (self.txns.max(1) as f64)
    }
}

/// Where a measurement starts.
pub struct Start {
    at: Instant,
    etcd_cpu_s: f64,
    revision: i64,
}

impl Start {
    pub async fn now(bench: &Bench) -> Result<Start> {
        Ok(Start {
            revision: watch::revision(&bench.client).await?,
            etcd_cpu_s: bench.etcd.cpu_seconds()?,
            at: Instant::now(),
        })
    }
}

/// Waits until a watch has seen every job object and every key (3 per
/// job), and measures from `start` to the last put seen.
pub async fn wait_written(
    bench: &Bench,
    watcher: &Watcher,
    jobs: usize,
    start: Start,
    limit: Duration,
) -> Result<Throughput> {
    let keys = 3 * jobs as u64;
    watcher
        .wait("every fleet key", limit, |s| {
            (s.jobs.len() >= jobs && s.puts >= keys).then_some(())
        })
        .await?;
    let seen = watcher.seen();
    let last = seen.last_put.unwrap_or(start.at);
    Ok(Throughput {
        jobs: seen.jobs.len(),
        keys: seen.puts,
        txns: seen.txns,
        seconds: (last - start.at).as_secs_f64(),
        etcd_cpu_s: bench.etcd.cpu_seconds()? - start.etcd_cpu_s,
        etcd_txns: watch::revision(&bench.client).await? - start.revision,
    })
}

pub async fn run(bench: &Bench, units: &[BenchUnit], max_ops: usize) -> Result<Throughput> {
    let (client, keys) = (&bench.client, &bench.fleet);
    let mut kv = client.kv_client();
    let fence = kv.put(FENCE_KEY, "raw", None).await?;
    let fence_rev = fence.header().map(|h| h.revision()).unwrap_or(0);
    let batches = batches(units, keys, max_ops);
    let jobs: usize = units.iter().map(|u| u.rendered.units.len()).sum();
    let watcher = Watcher::from_now(client, &keys.prefix).await?;

    let start = Start::now(bench).await?;
    for ops in batches {
        let guard = Compare::create_revision(FENCE_KEY, CompareOp::Equal, fence_rev);
        let resp = kv.txn(Txn::new().when([guard]).and_then(ops)).await?;
        if !resp.succeeded() {
            bail!("raw write refused by its own fence");
        }
    }
    wait_written(bench, &watcher, jobs, start, Duration::from_secs(600)).await
}

fn batches(units: &[BenchUnit], keys: &FleetKeys, max_ops: usize) -> Vec<Vec<TxnOp>> {
    let mut all = Vec::new();
    let (mut batch, mut bytes) = (Vec::new(), 0);
    for fleet_unit in units.iter().flat_map(|u| &u.rendered.units) {
        let records = create_records(&fleet_unit.name.to_name(), &fleet_unit.text);
        let size: usize = records.iter().map(|r| r.key.len() + r.value.len()).sum();
        if !batch.is_empty()
            && (batch.len() + records.len() > max_ops || bytes + size > MAX_TXN_BYTES)
        {
            all.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.extend(
            records
                .into_iter()
                .map(|r| TxnOp::put(keys.absolute(&r.key), r.value, None)),
        );
    }
    if !batch.is_empty() {
        all.push(batch);
    }
    all
}
