//! Cold start: N units already in `/kaylee/units`, no fleet jobs; a fresh
//! server starts, becomes leader and writes every fleet job. Measured from
//! the server's spawn to the last fleet key seen by a watch, exactly as the
//! raw run is measured from its first write.

use crate::raw::{self, Throughput};
use crate::server::{Flags, Server};
use crate::specs::BenchUnit;
use crate::watch::{self, Watcher};
use crate::{Bench, seed};
use anyhow::Result;
use std::time::{Duration, Instant};

pub struct Cold {
    pub written: Throughput,
    /// From spawn until the leader key was put.
    pub leader_s: f64,
    pub server: Server,
}

pub async fn run(bench: &Bench, units: &[BenchUnit], flags: &Flags) -> Result<Cold> {
    let client = &bench.client;
    seed::units(client, units).await?;
    let revision = watch::revision(client).await?;
    let fleet = Watcher::start(client, &bench.fleet.prefix, revision, false).await?;
    let leaders = Watcher::start(client, "/kaylee/leader/", revision, true).await?;
    let jobs: usize = units.iter().map(|u| u.rendered.units.len()).sum();

    let start = Instant::now();
    let server = Server::start(&bench.endpoint, "cold", flags)?;
    let written = raw::wait_written(&fleet, jobs, start, Duration::from_secs(900)).await?;
    let leader_at = leaders
        .seen()
        .put_keys
        .first()
        .map(|(_, t)| *t)
        .unwrap_or(start);
    Ok(Cold {
        written,
        leader_s: (leader_at - start).as_secs_f64(),
        server,
    })
}
