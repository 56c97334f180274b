//! What the bench sees of etcd, through watches: every fleet key written
//! (when each job object appeared, how many keys, in how many transactions —
//! all keys of one transaction share a revision) and the leader keys.

use crate::etcd::MAX_MESSAGE_BYTES;
use anyhow::{Result, bail};
use etcd_client::{Client, EventType, WatchOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Fleet name → when its `job/<name>/object` put arrived.
    pub jobs: HashMap<String, Instant>,
    /// Every put under the prefix.
    pub puts: u64,
    /// Distinct revisions among those puts: transactions.
    pub txns: u64,
    pub last_revision: i64,
    pub last_put: Option<Instant>,
    /// Key → when it was deleted (leader keys).
    pub deleted: HashMap<String, Instant>,
    /// Keys put, in order (leader keys only; fleet keys are just counted).
    pub put_keys: Vec<(String, Instant)>,
}

#[derive(Clone)]
pub struct Watcher {
    seen: Arc<Mutex<Seen>>,
    changed: watch::Receiver<u64>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Watcher {
    /// Watches `prefix` from now on, counting puts only.
    pub async fn from_now(client: &Client, prefix: &str) -> Result<Watcher> {
        Watcher::start(client, prefix, revision(client).await?, false).await
    }

    /// Watches `prefix` from just after `revision`. `keep_keys` records every
    /// put key (for small prefixes only).
    pub async fn start(
        client: &Client,
        prefix: &str,
        revision: i64,
        keep_keys: bool,
    ) -> Result<Watcher> {
        let mut w = client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = w.watch(prefix, Some(opts)).await?;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (tx, changed) = watch::channel(0u64);
        let state = seen.clone();
        let prefix = prefix.to_string();
        let task = tokio::spawn(async move {
            // Keep the watcher alive for as long as the stream.
            let _w = w;
            while let Ok(Some(resp)) = stream.message().await {
                let now = Instant::now();
                let mut s = lock(&state);
                for e in resp.events() {
                    let Some(kv) = e.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key());
                    match e.event_type() {
                        EventType::Put => {
                            s.puts += 1;
                            if kv.mod_revision() != s.last_revision {
                                s.txns += 1;
                                s.last_revision = kv.mod_revision();
                            }
                            s.last_put = Some(now);
                            if let Some(job) = job_object(&prefix, &key) {
                                s.jobs.entry(job.to_string()).or_insert(now);
                            }
                            if keep_keys {
                                s.put_keys.push((key.into_owned(), now));
                            }
                        }
                        EventType::Delete => {
                            s.deleted.insert(key.into_owned(), now);
                        }
                    }
                }
                drop(s);
                tx.send_modify(|g| *g += 1);
            }
        });
        Ok(Watcher {
            seen,
            changed,
            task: Arc::new(task),
        })
    }

    pub fn seen(&self) -> Seen {
        lock(&self.seen).clone()
    }

    /// Reads the state without copying it.
    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&lock(&self.seen))
    }

    /// Waits until `done` holds, checking after every watch response; fails
    /// after `limit` with `what` in the message.
    pub async fn wait<T>(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Seen) -> Option<T>,
    ) -> Result<T> {
        let mut changed = self.changed.clone();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = self.with(&done) {
                return Ok(v);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("the watch ended while waiting for {what}"),
                Err(_) => bail!("{what} did not happen within {limit:?}"),
            }
        }
    }

    /// When the first of `names` appeared as a fleet job, if one has.
    pub fn first_job(seen: &Seen, names: &[String]) -> Option<Instant> {
        names.iter().filter_map(|n| seen.jobs.get(n)).min().copied()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

fn lock(m: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `<fleet>job/<name>/object` → `<name>`.
fn job_object<'a>(fleet_prefix: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(fleet_prefix)?
        .strip_prefix("job/")?
        .strip_suffix("/object")
}

/// The current revision of the cluster.
pub async fn revision(client: &Client) -> Result<i64> {
    let mut kv = client.kv_client();
    let resp = kv.get("/", None).await?;
    Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
}
