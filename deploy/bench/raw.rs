//! The ceiling: the keys Kaylee writes at a cold start — every fleet record
//! of the same units and, after each unit's, its history record and status
//! key with the values Kaylee wrote — written by the same etcd client, batched the way Kaylee
//! batches (each create's 3 puts atomic, transactions filled to
//! --max-txn-ops operations and at most 1 MiB, each guarded by a compare on
//! a leader-style key) with Kaylee's concurrency: its fleet writer keeps one
//! transaction in flight. Without statuses it is the fleet-only ceiling
//! earlier runs compared with.

use crate::Bench;
use crate::specs::BenchUnit;
use crate::watch::{self, Watcher};
use anyhow::{Result, bail};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use kaylee_controllers::fleet::create_records;
use kaylee_controllers::keys::FleetKeys;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// As in Kaylee's V3Registry.
const MAX_TXN_BYTES: usize = 1024 * 1024;
const FENCE_KEY: &str = "/kaylee/leader/raw-bench";
pub const STATUS_PREFIX: &str = "/kaylee/status/";
/// Where a leader records each unit's specs (one record per unit at a cold
/// start, written with its status).
pub const HISTORY_PREFIX: &str = "/kaylee/history/";
pub const CONCURRENCY: usize = 1;

/// Fleet keys written, and how.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub jobs: usize,
    /// Fleet keys.
    pub keys: u64,
    /// `/kaylee/status/<name>` keys written meanwhile.
    pub status_keys: u64,
    pub txns: u64,
    pub seconds: f64,
    /// CPU etcd used meanwhile: on 2 cores, what the writer leaves it matters.
    pub etcd_cpu_s: f64,
    /// Every write transaction etcd committed meanwhile (revisions), fleet
    /// or not.
    pub etcd_txns: i64,
}

impl Throughput {
    /// Fleet keys per second.
    pub fn keys_per_s(&self) -> f64 {
        self.keys as f64 / self.seconds.max(1e-9)
    }
    /// Fleet and status keys per second: what compares like with like.
    pub fn all_keys_per_s(&self) -> f64 {
        (self.keys + self.status_keys) as f64 / self.seconds.max(1e-9)
    }
    pub fn ops_per_txn(&self) -> f64 {
        (self.keys + self.status_keys) as f64 / (self.txns.max(1) as f64)
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
        status_keys: 0,
        txns: seen.txns,
        seconds: (last - start.at).as_secs_f64(),
        etcd_cpu_s: bench.etcd.cpu_seconds()? - start.etcd_cpu_s,
        etcd_txns: watch::revision(&bench.client).await? - start.revision,
    })
}

/// Writes every fleet record of `units` and, when given, each unit's own
/// keys (its history record and status, by unit name) after its records.
pub async fn run(
    bench: &Bench,
    units: &[BenchUnit],
    statuses: Option<&HashMap<String, Vec<(String, String)>>>,
    max_ops: usize,
) -> Result<Throughput> {
    let (client, keys) = (&bench.client, &bench.fleet);
    let mut kv = client.kv_client();
    let fence = kv.put(FENCE_KEY, "raw", None).await?;
    let fence_rev = fence.header().map(|h| h.revision()).unwrap_or(0);
    let groups = groups(units, keys, statuses);
    let status_keys = groups.iter().filter(|g| g.len() == 1).count() as u64;
    let batches = batches(groups, max_ops);
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
    let written = wait_written(bench, &watcher, jobs, start, Duration::from_secs(600)).await?;
    Ok(Throughput {
        status_keys,
        ..written
    })
}

/// What must land together, as (key, value) puts, in Kaylee's order: each
/// create's 3 records, then the unit's status.
fn groups(
    units: &[BenchUnit],
    keys: &FleetKeys,
    statuses: Option<&HashMap<String, Vec<(String, String)>>>,
) -> Vec<Vec<(String, String)>> {
    let mut groups = Vec::new();
    for unit in units {
        for fleet_unit in &unit.rendered.units {
            let records = create_records(&fleet_unit.name.to_name(), &fleet_unit.text);
            groups.push(
                records
                    .into_iter()
                    .map(|r| (keys.absolute(&r.key), r.value))
                    .collect(),
            );
        }
        // Its history record, then its status: one operation each.
        for kv in statuses
            .and_then(|s| s.get(&unit.name))
            .into_iter()
            .flatten()
        {
            groups.push(vec![kv.clone()]);
        }
    }
    groups
}

/// Transactions filled as Kaylee's writer fills them: whole groups, up to
/// `max_ops` operations and [`MAX_TXN_BYTES`].
fn batches(groups: Vec<Vec<(String, String)>>, max_ops: usize) -> Vec<Vec<TxnOp>> {
    let mut all = Vec::new();
    let (mut batch, mut bytes) = (Vec::new(), 0);
    for group in groups {
        let size: usize = group.iter().map(|(k, v)| k.len() + v.len()).sum();
        if !batch.is_empty()
            && (batch.len() + group.len() > max_ops || bytes + size > MAX_TXN_BYTES)
        {
            all.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.extend(group.into_iter().map(|(k, v)| TxnOp::put(k, v, None)));
    }
    if !batch.is_empty() {
        all.push(batch);
    }
    all
}
