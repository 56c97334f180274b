//! Change-to-fleet latency on a converged cluster: update one unit's spec at
//! a time and time from the etcd put to the watch event of the first fleet
//! job of its new spec (the surge unit of the rolling update).

use crate::specs;
use crate::watch::{self, Watcher};
use crate::{Bench, seed};
use anyhow::Result;
use std::time::{Duration, Instant};

/// The version the latency updates move units to (seeded units are at 1).
pub const VERSION: u32 = 2;
const PER_SAMPLE_LIMIT: Duration = Duration::from_secs(30);

/// What etcd alone takes for the same path: a put until its watch event.
/// Kaylee's latency holds two such round trips (the unit's put, then its
/// fleet transaction), so this is the floor for comparison.
pub async fn etcd_floor(bench: &Bench, samples: usize) -> Result<Latency> {
    let client = &bench.client;
    let watcher = Watcher::start(
        client,
        "/bench/floor/",
        watch::revision(client).await?,
        true,
    )
    .await?;
    let mut kv = client.kv_client();
    let mut ms = Vec::with_capacity(samples);
    for k in 0..samples {
        let key = format!("/bench/floor/{k}");
        let sent = Instant::now();
        kv.put(key.clone(), "x", None).await?;
        let seen = watcher
            .wait(&key, PER_SAMPLE_LIMIT, |s| {
                s.put_keys
                    .iter()
                    .rev()
                    .find(|(k2, _)| *k2 == key)
                    .map(|(_, t)| *t)
            })
            .await?;
        ms.push(seen.saturating_duration_since(sent).as_secs_f64() * 1000.0);
    }
    kv.delete(
        "/bench/floor/",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await?;
    Ok(summarize(ms))
}

#[derive(Debug, Clone)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

pub async fn run(bench: &Bench, units: usize, samples: usize) -> Result<Latency> {
    let client = &bench.client;
    let watcher = Watcher::start(
        client,
        &bench.fleet.prefix,
        watch::revision(client).await?,
        false,
    )
    .await?;
    // Spread over the keyspace, every unit at most once.
    let stride = (units / samples.max(1)).max(1);
    let mut ms = Vec::with_capacity(samples);
    for k in 0..samples.min(units) {
        let unit = specs::unit(k * stride, VERSION)?;
        let names = specs::fleet_names(&unit.rendered);
        let sent = Instant::now();
        seed::put_unit(client, &unit).await?;
        let seen = watcher
            .wait(
                &format!("a new fleet job of {}", unit.name),
                PER_SAMPLE_LIMIT,
                |s| Watcher::first_job(s, &names),
            )
            .await?;
        ms.push((seen.saturating_duration_since(sent)).as_secs_f64() * 1000.0);
    }
    Ok(summarize(ms))
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
