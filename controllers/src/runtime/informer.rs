//! The informer: list a prefix at revision R into a [`Cache`], watch from
//! R+1, and on compaction or any broken watch relist (with backoff) — so
//! nothing is ever missed, only re-read. Every changed unit name is handed to
//! `on_change` (the work queue).

use super::backoff::Backoff;
use super::cache::Cache;
use futures::{Stream, StreamExt};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or changed.
    Put {
        /// The absolute key.
        key: String,
        /// Its new value.
        value: Vec<u8>,
        /// The revision of the change (v3 `mod_revision`, v2
        /// `modifiedIndex`).
        revision: i64,
    },
    /// A key was deleted (or expired with its TTL).
    Delete {
        /// The absolute key.
        key: String,
    },
    /// Every key starting with `prefix` is gone: etcd v2 deletes a whole
    /// directory (fleet's `job/<name>`) in one event that names only it.
    DeletePrefix {
        /// The deleted directory's key, ending in `/`.
        prefix: String,
    },
}

/// One key as listed: its value and the revision it was last modified at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The absolute key.
    pub key: String,
    /// Its value.
    pub value: Vec<u8>,
    /// The revision it was last modified at (v3 `mod_revision`, v2
    /// `modifiedIndex`).
    pub revision: i64,
}

/// A consistent snapshot of a prefix, and the revision it was read at.
#[derive(Debug, Default)]
pub struct Listing {
    /// The keys kept, in key order through v3 (v2: depth first).
    pub items: Vec<Item>,
    /// The revision the snapshot was read at; a watch from `revision + 1`
    /// misses nothing (v2: the `X-Etcd-Index` of the listing).
    pub revision: i64,
}

/// Why a listing or a watch failed; the informer lists again after any.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// etcd compacted its history past the revision the watch starts from.
    #[error("history compacted past the watched revision")]
    Compacted,
    /// etcd canceled the watch for another reason (etcd's own words).
    #[error("the watch was canceled: {0}")]
    Canceled(String),
    /// etcd failed or did not answer in time.
    #[error(transparent)]
    Etcd(#[from] crate::etcd::EtcdError),
}

/// A watch: batches of events in revision order; the stream ends, or
/// yields an error, when the watch breaks (the informer then relists).
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Vec<WatchEvent>, SourceError>> + Send>>;

/// Which listed keys (with their values) to keep: a source drops the rest
/// as it reads, so a listing never holds what its cache would not (fleet's
/// launched target-states beside the job objects, at a new leader's first
/// list).
pub type Keep<'a> = dyn Fn(&str, &[u8]) -> bool + Send + Sync + 'a;

/// Where an informer reads from: etcd v3 (a key prefix) or, for real fleet,
/// etcd's v2 keys API.
pub trait Source: Send + Sync + 'static {
    /// A consistent listing of the keys `keep` accepts.
    fn list_keeping(
        &self,
        keep: &Keep<'_>,
    ) -> impl Future<Output = Result<Listing, SourceError>> + Send;
    /// A consistent listing of every key.
    fn list(&self) -> impl Future<Output = Result<Listing, SourceError>> + Send {
        async move { self.list_keeping(&|_, _| true).await }
    }
    /// Events after `revision` (that is, from `revision + 1`).
    fn watch(&self, revision: i64)
    -> impl Future<Output = Result<EventStream, SourceError>> + Send;
}

/// Relists wait 100 ms, then 1.5 times longer each time up to 5 s, each
/// ±50%, until a watch brings events again.
fn relist_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), 1.5, Duration::from_secs(5), 0.5)
}

/// Runs until `stop` is cancelled. `name` labels logs and metrics.
pub async fn run<S: Source>(
    name: &'static str,
    source: S,
    cache: Arc<Cache>,
    on_change: impl Fn(&str) + Send + Sync,
    stop: CancellationToken,
) {
    let mut backoff = relist_backoff();
    let mut first = true;
    while !stop.is_cancelled() {
        if !first {
            metrics::counter!("kaylee_informer_relists_total", "informer" => name).increment(1);
        }
        first = false;
        let keep = |key: &str, value: &[u8]| cache.wants(key, value);
        let listing = tokio::select! {
            l = source.list_keeping(&keep) => l,
            _ = stop.cancelled() => return,
        };
        let listing = match listing {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(informer = name, error = %e, "list failed; retrying");
                metrics::counter!("kaylee_etcd_errors_total", "op" => "list").increment(1);
                if pause(&mut backoff, &stop).await {
                    return;
                }
                continue;
            }
        };
        for unit in cache.replace(listing.items) {
            on_change(&unit);
        }
        cache.bump();
        cache.set_synced();
        tracing::debug!(
            informer = name,
            revision = listing.revision,
            keys = cache.len(),
            "listed"
        );

        let stream = tokio::select! {
            s = source.watch(listing.revision) => s,
            _ = stop.cancelled() => return,
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(informer = name, error = %e, "watch failed; relisting");
                if pause(&mut backoff, &stop).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = stop.cancelled() => return,
            };
            match next {
                Some(Ok(events)) => {
                    backoff = relist_backoff();
                    for event in events {
                        let changed: BTreeSet<String> = match event {
                            WatchEvent::Put {
                                key,
                                value,
                                revision,
                            } => cache
                                .store(Item {
                                    key,
                                    value,
                                    revision,
                                })
                                .into_iter()
                                .collect(),
                            WatchEvent::Delete { key } => cache.delete(&key).into_iter().collect(),
                            WatchEvent::DeletePrefix { prefix } => cache.delete_prefix(&prefix),
                        };
                        for unit in changed {
                            on_change(&unit);
                        }
                    }
                    cache.bump();
                }
                Some(Err(SourceError::Compacted)) => {
                    tracing::info!(informer = name, "watch compacted; relisting");
                    break;
                }
                Some(Err(e)) => {
                    tracing::warn!(informer = name, error = %e, "watch broke; relisting");
                    metrics::counter!("kaylee_etcd_errors_total", "op" => "watch").increment(1);
                    if pause(&mut backoff, &stop).await {
                        return;
                    }
                    break;
                }
                None => {
                    tracing::warn!(informer = name, "watch ended; relisting");
                    if pause(&mut backoff, &stop).await {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// Sleeps one backoff step; true when stopped meanwhile.
async fn pause(backoff: &mut Backoff, stop: &CancellationToken) -> bool {
    let delay = backoff.next_wait();
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stop.cancelled() => true,
    }
}
