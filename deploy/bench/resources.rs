//! Memory and idle CPU of a converged leader, from /proc.

use crate::server::Server;
use anyhow::{Result, bail};
use etcd_client::{Client, GetOptions};
use std::time::{Duration, Instant};

const STATUS_PREFIX: &str = "/kaylee/status/";

/// Waits until the leader has written every unit's status (its last write of
/// a cold start) and its CPU use has come to rest, so that what follows
/// measures a converged leader.
pub async fn settle(client: &Client, server: &Server, units: usize) -> Result<()> {
    let mut kv = client.kv_client();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let opts = GetOptions::new().with_prefix().with_count_only();
        let count = kv.get(STATUS_PREFIX, Some(opts)).await?.count();
        if count >= units as i64 {
            break;
        }
        if Instant::now() >= deadline {
            bail!("only {count} of {units} statuses written after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A busy loop never rests; then the idle measurement shows it.
    let rest_deadline = Instant::now() + Duration::from_secs(20);
    let mut before = server.cpu_seconds()?;
    while Instant::now() < rest_deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = server.cpu_seconds()?;
        if now - before < 0.011 {
            break;
        }
        before = now;
    }
    Ok(())
}

pub struct Memory {
    pub peak_rss_mib: f64,
    pub rss_mib: f64,
}

pub fn memory(server: &Server) -> Result<Memory> {
    let (peak_rss_mib, rss_mib) = server.memory_mib()?;
    Ok(Memory {
        peak_rss_mib,
        rss_mib,
    })
}

/// CPU seconds the server uses over `window`.
pub async fn idle_cpu(server: &Server, window: Duration) -> Result<f64> {
    let before = server.cpu_seconds()?;
    tokio::time::sleep(window).await;
    Ok(server.cpu_seconds()? - before)
}
