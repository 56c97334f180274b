//! Cold start: N units already in `/kaylee/units`, no fleet jobs; a fresh
//! server starts, becomes leader and writes every fleet job. Measured from
//! the server's spawn to the last fleet key seen by a watch (through v2: to
//! the last unit status, written after its fleet keys), exactly as the raw
//! run is measured from its first write.

use crate::raw::{self, Throughput};
use crate::server::{Flags, Server};
use crate::specs::BenchUnit;
use crate::v2::Api;
use crate::watch::{self, Watcher};
use crate::{Bench, seed};
use anyhow::Result;
use etcd_client::{Client, GetOptions};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Cold {
    pub written: Throughput,
    /// CPU the server used from its start until every job was written.
    pub kaylee_cpu_s: f64,
    /// Per unit, its own keys as the server wrote them (its history
    /// record, then its status: key, value), for the raw run to write the
    /// same.
    pub statuses: HashMap<String, Vec<(String, String)>>,
    /// From spawn until the leader key was put.
    pub leader_s: f64,
    pub server: Server,
}

pub async fn run(bench: &Bench, units: &[BenchUnit], flags: &Flags) -> Result<Cold> {
    let client = &bench.client;
    seed::units(client, units).await?;
    let revision = watch::revision(client).await?;
    // Through v2: the statuses (see raw::wait_written_v2).
    let watched = match bench.api {
        Api::V3 => bench.fleet.prefix.clone(),
        Api::V2 => raw::STATUS_PREFIX.to_string(),
    };
    let fleet = Watcher::start(client, &watched, revision, false).await?;
    let leaders = Watcher::start(client, "/kaylee/leader/", revision, true).await?;
    let jobs: usize = units.iter().map(|u| u.rendered.units.len()).sum();

    let start = raw::Start::now(bench).await?;
    let spawned = Instant::now();
    let server = Server::start(&bench.endpoint, "cold", flags)?;
    let limit = Duration::from_secs(900);
    let written = match bench.api {
        Api::V3 => raw::wait_written(bench, &fleet, jobs, start, limit).await?,
        Api::V2 => raw::wait_written_v2(bench, &fleet, units.len(), jobs, start, limit).await?,
    };
    // Read back rather than watched: a watch would load this etcd with
    // 10,000 events raw's does not send. Each unit's status is written
    // once at a cold start, so what is there is what was put.
    let statuses = read_statuses(client).await?;
    let written = Throughput {
        status_keys: statuses.values().map(|k| k.len() as u64).sum(),
        ..written
    };
    let kaylee_cpu_s = server.cpu_seconds()?;
    let leader_at = leaders
        .seen()
        .put_keys
        .first()
        .map(|(_, t)| *t)
        .unwrap_or(spawned);
    Ok(Cold {
        statuses,
        written,
        kaylee_cpu_s,
        leader_s: (leader_at - spawned).as_secs_f64(),
        server,
    })
}

/// Each unit's history record and status, in the order Kaylee writes them.
async fn read_statuses(client: &Client) -> Result<HashMap<String, Vec<(String, String)>>> {
    let mut kv = client
        .kv_client()
        .max_decoding_message_size(256 * 1024 * 1024);
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for prefix in [raw::HISTORY_PREFIX, raw::STATUS_PREFIX] {
        let resp = kv
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await?;
        for item in resp.kvs() {
            let (Ok(key), Ok(value)) = (item.key_str(), item.value_str()) else {
                continue;
            };
            let Some(unit) = key.strip_prefix(prefix).and_then(|r| r.split('/').next()) else {
                continue;
            };
            out.entry(unit.to_string())
                .or_default()
                .push((key.to_string(), value.to_string()));
        }
    }
    Ok(out)
}
