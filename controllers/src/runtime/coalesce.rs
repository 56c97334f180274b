//! Coalesces the writes of concurrent reconciles into as few etcd
//! transactions as the size limits allow. While one transaction is in
//! flight, the next requests queue up, so batches grow exactly when load
//! does and an idle controller writes at once.

use std::future::Future;
use tokio::sync::{mpsc, oneshot};

/// Why a shared write failed, as every waiter on it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The leader fence refused the write: leadership is lost.
    Fenced,
    Failed(String),
}

type Request<T> = (Vec<T>, oneshot::Sender<Result<(), WriteError>>);

pub struct Coalescer<T> {
    tx: mpsc::UnboundedSender<Request<T>>,
}

impl<T: Send + 'static> Coalescer<T> {
    /// Starts the writer task. `weight` says how much of a transaction an
    /// item uses (etcd operations); batches stay within `max_weight` unless
    /// one request alone is larger. The task ends when the coalescer drops.
    pub fn spawn<F, Fut>(max_weight: usize, weight: fn(&T) -> usize, commit: F) -> Coalescer<T>
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), WriteError>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request<T>>();
        tokio::spawn(async move {
            let mut held: Option<Request<T>> = None;
            loop {
                let first = match held.take() {
                    Some(r) => r,
                    None => match rx.recv().await {
                        Some(r) => r,
                        None => return,
                    },
                };
                let size = |r: &Request<T>| r.0.iter().map(weight).sum::<usize>();
                let mut total = size(&first);
                let mut batch = vec![first];
                while total < max_weight {
                    let Ok(next) = rx.try_recv() else { break };
                    let w = size(&next);
                    if total + w > max_weight {
                        held = Some(next);
                        break;
                    }
                    total += w;
                    batch.push(next);
                }
                let mut items = Vec::new();
                let mut waiters = Vec::with_capacity(batch.len());
                for (request, reply) in batch {
                    items.extend(request);
                    waiters.push(reply);
                }
                metrics::histogram!("kaylee_write_batch_requests").record(waiters.len() as f64);
                let result = commit(items).await;
                for w in waiters {
                    // A reconcile that gave up waiting no longer cares.
                    let _ = w.send(result.clone());
                }
            }
        });
        Coalescer { tx }
    }

    /// Writes `items` (atomically with respect to each other only as the
    /// commit function guarantees) and waits for the outcome.
    pub async fn submit(&self, items: Vec<T>) -> Result<(), WriteError> {
        if items.is_empty() {
            return Ok(());
        }
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send((items, reply))
            .map_err(|_| WriteError::Failed("writer stopped".into()))?;
        outcome
            .await
            .unwrap_or_else(|_| Err(WriteError::Failed("writer stopped".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_requests_share_batches_within_the_limit() {
        let commits: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let seen = commits.clone();
        let c = Arc::new(Coalescer::spawn(
            10,
            |_| 3,
            move |items: Vec<u32>| {
                let seen = seen.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    seen.lock()
                        .map(|mut s| s.push(items))
                        .map_err(|_| WriteError::Fenced)
                }
            },
        ));
        let tasks: Vec<_> = (0..7u32)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { c.submit(vec![i]).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.ok(), Some(Ok(())));
        }
        let commits = commits.lock().map(|c| c.clone()).unwrap_or_default();
        let mut all: Vec<u32> = commits.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..7).collect::<Vec<_>>(), "every item written once");
        assert!(commits.iter().all(|b| b.len() * 3 <= 10), "{commits:?}");
        assert!(
            commits.len() < 7,
            "requests shared transactions: {commits:?}"
        );
    }

    #[tokio::test]
    async fn every_waiter_sees_the_shared_outcome() {
        let c = Coalescer::spawn(100, |_| 1, |_: Vec<u8>| async { Err(WriteError::Fenced) });
        assert_eq!(c.submit(vec![1]).await, Err(WriteError::Fenced));
        assert_eq!(
            c.submit(vec![]).await,
            Ok(()),
            "nothing to write is no write"
        );
    }
}
