//! What the bench sees of etcd, through watches: every fleet key written
//! (when each job object appeared, how many keys, in how many transactions —
//! all keys of one transaction share a revision) and the leader keys. Fleet
//! keys written through v2 are seen through a streaming v2 watch
//! ([`Watcher::start_v2`]); a v2 write is its own "transaction".

use crate::Bench;
use crate::etcd::MAX_MESSAGE_BYTES;
use crate::v2::{self, Api, V2};
use anyhow::{Result, bail};
use etcd_client::{Client, EventType, WatchOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Silence after which a v2 stream is probed.
const PROBE_AFTER: Duration = Duration::from_millis(50);
/// How long a probe listens for etcd's answer from history (a change
/// meanwhile ends it at once).
const PROBE_LISTEN: Duration = Duration::from_secs(1);

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

    /// Watches the fleet prefix of `bench` from now on, through the API its
    /// runs write fleet's registry with.
    pub async fn fleet(bench: &Bench, prefix: &str) -> Result<Watcher> {
        match bench.api {
            Api::V3 => Watcher::from_now(&bench.client, prefix).await,
            Api::V2 => Watcher::start_v2(&bench.v2, prefix, bench.v2.index().await?),
        }
    }

    /// Watches `prefix` (a directory, ending in `/`) through v2 from just
    /// after `index`: one streaming watch, reopened where it stopped when
    /// etcd drops it (a watcher more than 100 events behind, as one apply of
    /// over 100 puts makes it, is dropped with its connection left open and
    /// silent: a probe after 50 ms of silence finds out), and a recursive
    /// listing in the rare case that etcd's 1000-event history no longer
    /// reaches back (then every key listed counts as put now).
    pub fn start_v2(v2: &V2, prefix: &str, index: i64) -> Result<Watcher> {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (tx, changed) = watch::channel(0u64);
        let (state, v2, prefix) = (seen.clone(), v2.clone(), prefix.to_string());
        let dir = prefix.trim_end_matches('/').to_string();
        let task = tokio::spawn(async move {
            let mut next = index + 1;
            loop {
                let Ok((mut resp, start)) = v2.stream(&dir, next).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                if !resp.status().is_success() {
                    let body = resp.bytes().await.unwrap_or_default();
                    let code = serde_json::from_slice::<v2::Event>(&body)
                        .ok()
                        .and_then(|e| e.error_code);
                    if code == Some(v2::INDEX_CLEARED) {
                        eprintln!("kaylee-bench: v2 watch of {dir} fell behind; relisting");
                        if let Ok((root, at)) = v2.list(&dir).await {
                            relisted(&mut lock(&state), &prefix, &root);
                            tx.send_modify(|g| *g += 1);
                            next = at + 1;
                            continue;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let mut buf: Vec<u8> = Vec::new();
                // A watch whose first event came from etcd's history
                // answers that one event and no more: reopen after it.
                let mut one_shot = false;
                while !one_shot {
                    let chunk = match tokio::time::timeout(PROBE_AFTER, resp.chunk()).await {
                        Ok(Ok(Some(chunk))) => chunk,
                        Ok(_) => break,
                        Err(_) => {
                            match v2::probe(&v2, &dir, next, PROBE_LISTEN).await {
                                // Quiet up to etcd's index: go on past it.
                                // or a change after etcd registered it.
                                Ok((None, at)) => {
                                    next = next.max(at + 1);
                                    continue;
                                }
                                Ok((Some(index), at)) if index > at => {
                                    next = next.max(at + 1);
                                    continue;
                                }
                                // Missed (or failed): reopen from `next`.
                                other => {
                                    if std::env::var_os("KAYLEE_BENCH_DEBUG").is_some() {
                                        eprintln!(
                                            "kaylee-bench: v2 watch of {dir} missed {other:?} at {next}"
                                        );
                                    }
                                    break;
                                }
                            }
                        }
                    };
                    buf.extend_from_slice(&chunk);
                    let now = Instant::now();
                    let mut s = lock(&state);
                    while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=end).collect();
                        let Ok(event) = serde_json::from_slice::<v2::Event>(&line) else {
                            continue;
                        };
                        let at = event.node.modified_index;
                        next = next.max(at + 1);
                        one_shot |= at <= start;
                        apply_v2(&mut s, &prefix, &event, now);
                    }
                    drop(s);
                    tx.send_modify(|g| *g += 1);
                }
            }
        });
        Ok(Watcher {
            seen,
            changed,
            task: Arc::new(task),
        })
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

fn apply_v2(s: &mut Seen, prefix: &str, event: &v2::Event, now: Instant) {
    let node = &event.node;
    match event.action.as_str() {
        "set" | "create" | "update" | "compareAndSwap" if !node.dir => {
            if !node.key.starts_with(prefix) {
                return;
            }
            s.puts += 1;
            s.txns += 1;
            s.last_revision = node.modified_index;
            s.last_put = Some(now);
            if let Some(job) = job_object(prefix, &node.key) {
                s.jobs.entry(job.to_string()).or_insert(now);
            }
        }
        "delete" | "expire" | "compareAndDelete" => {
            s.deleted.insert(node.key.clone(), now);
        }
        _ => {}
    }
}

/// What a listing shows, as if every key in it had just been put.
fn relisted(s: &mut Seen, prefix: &str, root: &v2::Node) {
    let now = Instant::now();
    let leaves = root.leaves();
    let keys = leaves.iter().filter(|n| n.key.starts_with(prefix)).count() as u64;
    if keys > s.puts {
        s.txns += keys - s.puts;
        s.puts = keys;
        s.last_put = Some(now);
    }
    for n in leaves {
        if let Some(job) = job_object(prefix, &n.key) {
            s.jobs.entry(job.to_string()).or_insert(now);
        }
    }
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
