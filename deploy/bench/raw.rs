//! The ceiling: the keys Kaylee writes at a cold start — every fleet record
//! of the same units and, after each unit's, its history record and status
//! key with the values Kaylee wrote — written by the same etcd client, batched the way Kaylee
//! batches (each create's 3 puts atomic, transactions filled to
//! --max-txn-ops operations and at most 1 MiB, each guarded by a compare on
//! a leader-style key) with Kaylee's concurrency: its fleet writer keeps one
//! transaction in flight. Without statuses it is the fleet-only ceiling
//! earlier runs compared with.
//!
//! Through v2 ([`run_v2`]) there are no transactions: the bench's own v2
//! client puts each job's records as Kaylee does (`unit/` create-only and
//! `target-state` at once, then `object`), with up to `concurrency` requests
//! in flight, and each unit's history record and status, once its jobs are
//! written, through v3 transactions filled as Kaylee fills them, one in
//! flight. [`best_v2`] tries several concurrencies and keeps the fastest.
//! Through v2, raw and cold alike are timed to the last status put (see
//! [`wait_written_v2`]).

use crate::specs::BenchUnit;
use crate::v2::Api;
use crate::watch::{self, Watcher};
use crate::{Bench, seed};
use anyhow::{Result, bail};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use futures::StreamExt;
use kaylee_controllers::fleet::create_records;
use kaylee_controllers::keys::FleetKeys;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

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
    /// v2 writes etcd applied meanwhile (its v2 index), fleet or not; 0 in
    /// v3 runs.
    pub v2_writes: i64,
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

/// (key, value) puts.
type Puts = Vec<(String, String)>;

/// Where a measurement starts.
pub struct Start {
    at: Instant,
    etcd_cpu_s: f64,
    revision: i64,
    v2_index: i64,
}

impl Start {
    pub async fn now(bench: &Bench) -> Result<Start> {
        Ok(Start {
            revision: watch::revision(&bench.client).await?,
            v2_index: v2_index(bench).await?,
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
    let waited = watcher
        .wait("every fleet key", limit, |s| {
            (s.jobs.len() >= jobs && s.puts >= keys).then_some(())
        })
        .await;
    if let Err(e) = waited {
        let s = watcher.seen();
        bail!(
            "{e}: saw {} of {jobs} jobs, {} of {keys} keys",
            s.jobs.len(),
            s.puts
        );
    }
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
        v2_writes: v2_index(bench).await? - start.v2_index,
    })
}

/// Through v2: waits until a v3 watch of `/kaylee/status/` has seen
/// `statuses` puts (Kaylee, and raw alike, write each unit's status only
/// once its fleet records were applied, so the last status put comes after
/// the last fleet key), measures from `start` to it, then lists the fleet
/// prefix through v2 to count the jobs and keys written. A v2 watch cannot
/// time this: etcd drops a v2 watcher that falls 100 events behind, as it
/// does at these rates on 2 cores, and a watch from its history brings
/// one event per request.
pub async fn wait_written_v2(
    bench: &Bench,
    status_watch: &Watcher,
    statuses: usize,
    jobs: usize,
    start: Start,
    limit: Duration,
) -> Result<Throughput> {
    let waited = status_watch
        .wait("every unit's status", limit, |s| {
            (s.puts >= statuses as u64).then_some(())
        })
        .await;
    let seen = status_watch.seen();
    if let Err(e) = waited {
        bail!("{e}: saw {} of {statuses} statuses", seen.puts);
    }
    let last = seen.last_put.unwrap_or(start.at);
    let dir = bench.fleet.prefix.trim_end_matches('/');
    let (mut found_jobs, mut keys) = (0, 0);
    // The fleet keys are there before the statuses; a few tries in case
    // etcd answers the list from before the last apply.
    for _ in 0..50 {
        let (root, _) = bench.v2.list(dir).await?;
        let leaves = root.leaves();
        keys = leaves.len() as u64;
        found_jobs = leaves.iter().filter(|n| n.key.ends_with("/object")).count();
        if found_jobs >= jobs && keys >= 3 * jobs as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if found_jobs < jobs || keys < 3 * jobs as u64 {
        bail!("only {found_jobs} of {jobs} jobs, {keys} keys in v2 after every status");
    }
    Ok(Throughput {
        jobs: found_jobs,
        keys,
        status_keys: 0,
        // A v2 write is a request of its own.
        txns: keys,
        seconds: (last - start.at).as_secs_f64(),
        etcd_cpu_s: bench.etcd.cpu_seconds()? - start.etcd_cpu_s,
        etcd_txns: watch::revision(&bench.client).await? - start.revision,
        v2_writes: v2_index(bench).await? - start.v2_index,
    })
}

async fn v2_index(bench: &Bench) -> Result<i64> {
    match bench.api {
        Api::V2 => bench.v2.index().await,
        Api::V3 => Ok(0),
    }
}

/// The v2 ceiling: the same records through the bench's own v2 client with
/// `concurrency` requests in flight; statuses (when given) through v3.
pub async fn run_v2(
    bench: &Bench,
    units: &[BenchUnit],
    statuses: Option<&HashMap<String, Vec<(String, String)>>>,
    concurrency: usize,
) -> Result<Throughput> {
    let keys = &bench.fleet;
    let jobs: usize = units.iter().map(|u| u.rendered.units.len()).sum();
    let mut kv = bench.client.kv_client();
    let fence = kv.put(FENCE_KEY, "raw", None).await?;
    let fence_rev = fence.header().map(|h| h.revision()).unwrap_or(0);
    // Per unit: its jobs' records, and its own keys for after them.
    let work: Vec<(Vec<Puts>, Puts)> = units
        .iter()
        .map(|unit| {
            let records = unit
                .rendered
                .units
                .iter()
                .map(|u| {
                    create_records(&u.name.to_name(), &u.text)
                        .into_iter()
                        .map(|r| (keys.absolute(&r.key), r.value))
                        .collect()
                })
                .collect();
            let own = statuses
                .and_then(|s| s.get(&unit.name))
                .cloned()
                .unwrap_or_default();
            (records, own)
        })
        .collect();
    let status_keys = work.iter().map(|(_, own)| own.len() as u64).sum();
    let with_status = work
        .iter()
        .filter(|(_, own)| own.iter().any(|(k, _)| k.starts_with(STATUS_PREFIX)))
        .count();
    let watcher = Watcher::from_now(&bench.client, STATUS_PREFIX).await?;

    let start = Start::now(bench).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<(String, String)>>();
    // Kaylee's status writer: transactions filled from what has queued,
    // one in flight, fenced.
    let status_writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = first;
            while batch.len() < crate::MAX_TXN_OPS {
                match rx.try_recv() {
                    Ok(more) => batch.extend(more),
                    Err(_) => break,
                }
            }
            let ops: Vec<TxnOp> = batch
                .into_iter()
                .map(|(k, v)| TxnOp::put(k, v, None))
                .collect();
            let guard = Compare::create_revision(FENCE_KEY, CompareOp::Equal, fence_rev);
            let resp = kv.txn(Txn::new().when([guard]).and_then(ops)).await?;
            if !resp.succeeded() {
                bail!("raw status write refused by its own fence");
            }
        }
        anyhow::Ok(())
    });
    let permits = Arc::new(Semaphore::new(concurrency));
    let v2 = &bench.v2;
    let put = |key: String, value: String, create_only: bool| {
        let permits = permits.clone();
        async move {
            let _permit = permits.acquire_owned().await?;
            v2.put(&key, &value, create_only).await
        }
    };
    let mut units_done = futures::stream::iter(work)
        .map(|(records, own)| {
            let put = &put;
            async move {
                let jobs = records.into_iter().map(|r| async move {
                    let mut r = r.into_iter();
                    let (Some(unit), Some(object), Some(state)) = (r.next(), r.next(), r.next())
                    else {
                        bail!("a create is three records");
                    };
                    let (a, b) =
                        futures::join!(put(unit.0, unit.1, true), put(state.0, state.1, false));
                    a?;
                    b?;
                    put(object.0, object.1, false).await
                });
                for done in futures::future::join_all(jobs).await {
                    done?;
                }
                anyhow::Ok(own)
            }
        })
        // Enough units at once to keep every request slot busy.
        .buffer_unordered(concurrency.max(4));
    while let Some(own) = units_done.next().await {
        let own = own?;
        if !own.is_empty() && tx.send(own).is_err() {
            break;
        }
    }
    drop(tx);
    status_writer.await??;
    let limit = Duration::from_secs(900);
    let written = wait_written_v2(bench, &watcher, with_status, jobs, start, limit).await?;
    Ok(Throughput {
        status_keys,
        ..written
    })
}

/// What [`best_v2`] found: the fastest run and every concurrency's keys/s.
pub struct BestV2 {
    pub best: Throughput,
    pub concurrency: usize,
    /// (concurrency, all keys/s on the probe units).
    pub tried: Vec<(usize, f64)>,
    pub probe_units: usize,
}

/// Tries each concurrency on a fresh etcd with the first `probe` units,
/// then writes all `units` at the fastest (again on a fresh etcd, unless
/// the probe already wrote them all).
pub async fn best_v2(
    units: &[BenchUnit],
    statuses: &HashMap<String, Vec<(String, String)>>,
    concurrencies: &[usize],
    probe: usize,
) -> Result<BestV2> {
    let probe = probe.min(units.len());
    let mut tried = Vec::new();
    let mut best: Option<(usize, Throughput)> = None;
    for &c in concurrencies {
        eprintln!("kaylee-bench: raw v2, {c} requests in flight, {probe} units");
        let t = fresh_v2(&units[..probe], statuses, c).await?;
        tried.push((c, t.all_keys_per_s()));
        if best
            .as_ref()
            .is_none_or(|(_, b)| t.all_keys_per_s() > b.all_keys_per_s())
        {
            best = Some((c, t));
        }
    }
    let Some((concurrency, mut t)) = best else {
        bail!("no concurrency to try");
    };
    if probe < units.len() {
        eprintln!("kaylee-bench: raw v2, {concurrency} requests in flight, all units");
        t = fresh_v2(units, statuses, concurrency).await?;
    }
    Ok(BestV2 {
        best: t,
        concurrency,
        tried,
        probe_units: probe,
    })
}

async fn fresh_v2(
    units: &[BenchUnit],
    statuses: &HashMap<String, Vec<(String, String)>>,
    concurrency: usize,
) -> Result<Throughput> {
    let bench = Bench::start("raw-v2", Api::V2).await?;
    seed::units(&bench.client, units).await?;
    run_v2(&bench, units, Some(statuses), concurrency).await
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
