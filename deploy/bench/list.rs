//! What a new leader reads first: every job of the converged registry,
//! listed through Kaylee's own informer source for the run's API (v3: pages
//! of a key prefix; v2: the job directory), keeping what its jobs cache
//! keeps. Timed from the request to the last item kept.

use crate::Bench;
use crate::v2::Api;
use anyhow::{Result, anyhow};
use kaylee_controllers::etcd::EtcdConfig;
use kaylee_controllers::etcd::EtcdPrefix;
use kaylee_controllers::etcd::v2::V2Client;
use kaylee_controllers::etcd::v2::V2Prefix;
use kaylee_controllers::runtime::Source;
use kaylee_controllers::units::jobs;
use std::collections::HashSet;
use std::time::Instant;

pub struct Listed {
    /// Distinct jobs among the kept keys.
    pub jobs: usize,
    pub kept: usize,
    pub seconds: f64,
}

pub async fn run(bench: &Bench) -> Result<Listed> {
    let config = EtcdConfig {
        endpoints: vec![bench.endpoint.clone()],
        ..EtcdConfig::default()
    };
    let cache = jobs::cache(&bench.fleet);
    let keep = |k: &str, v: &[u8]| cache.wants(k, v);
    let started = Instant::now();
    let listing = match bench.api {
        Api::V2 => {
            let client = V2Client::new(&config)?;
            V2Prefix::new(client, bench.fleet.jobs())
                .list_keeping(&keep)
                .await
        }
        Api::V3 => {
            EtcdPrefix::new(bench.client.clone(), config, bench.fleet.jobs())
                .list_keeping(&keep)
                .await
        }
    }
    .map_err(|e| anyhow!("listing the jobs: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let jobs: HashSet<&str> = listing
        .items
        .iter()
        .filter_map(|i| bench.fleet.unit_of_key(&i.key).map(|_| job_of(&i.key)))
        .collect();
    Ok(Listed {
        jobs: jobs.len(),
        kept: listing.items.len(),
        seconds,
    })
}

/// `…/job/<name>/<field>` → `…/job/<name>`.
fn job_of(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(dir, _)| dir)
}
