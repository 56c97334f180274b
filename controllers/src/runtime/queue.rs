//! The work queue (after client-go's): a name waits at most once (dirty
//! set), is never handed to two workers at once (processing set), comes back
//! after `done` if it changed meanwhile, and failing names retry with
//! per-name exponential backoff.

use backoff::backoff::Backoff;
use backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Default)]
struct Inner {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    /// When a delayed add for a name is due; a sooner request replaces it.
    delayed: HashMap<String, Instant>,
    failures: HashMap<String, ExponentialBackoff>,
    shut_down: bool,
}

pub struct WorkQueue {
    inner: Mutex<Inner>,
    ready: Notify,
    max_backoff: Duration,
}

impl WorkQueue {
    pub fn new() -> Arc<WorkQueue> {
        Self::with_max_backoff(Duration::from_secs(60))
    }

    pub fn with_max_backoff(max_backoff: Duration) -> Arc<WorkQueue> {
        Arc::new(WorkQueue {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            max_backoff,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the sets inconsistent
        // in a way worse than a lost wake-up, so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, name: &str) {
        let mut q = self.lock();
        if q.shut_down || !q.dirty.insert(name.to_string()) {
            return;
        }
        metrics::counter!("kaylee_workqueue_adds_total").increment(1);
        if !q.processing.contains(name) {
            q.queue.push_back(name.to_string());
            metrics::gauge!("kaylee_workqueue_depth").set(q.queue.len() as f64);
            drop(q);
            self.ready.notify_one();
        }
    }

    /// Adds `name` after `delay`, unless an add at least as soon is pending.
    pub fn add_after(self: &Arc<Self>, name: &str, delay: Duration) {
        if delay.is_zero() {
            return self.add(name);
        }
        let due = Instant::now() + delay;
        {
            let mut q = self.lock();
            if q.shut_down || q.delayed.get(name).is_some_and(|d| *d <= due) {
                return;
            }
            q.delayed.insert(name.to_string(), due);
        }
        let queue = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let fire = {
                let mut q = queue.lock();
                if q.delayed.get(&name) == Some(&due) {
                    q.delayed.remove(&name);
                    true
                } else {
                    false
                }
            };
            if fire {
                queue.add(&name);
            }
        });
    }

    /// Retries a failed name after its next backoff step.
    pub fn add_rate_limited(self: &Arc<Self>, name: &str) {
        let delay = {
            let mut q = self.lock();
            let max = self.max_backoff;
            let b = q.failures.entry(name.to_string()).or_insert_with(|| {
                // Jitter spreads retries of many failing units; the cap holds
                // up to the jitter (±20%).
                ExponentialBackoffBuilder::new()
                    .with_initial_interval(Duration::from_millis(200))
                    .with_randomization_factor(0.2)
                    .with_max_interval(max)
                    .with_max_elapsed_time(None)
                    .build()
            });
            b.next_backoff().unwrap_or(max)
        };
        self.add_after(name, delay);
    }

    /// Clears a name's failure history after it succeeded.
    pub fn forget(&self, name: &str) {
        self.lock().failures.remove(name);
    }

    /// Waits for the next name; `None` once shut down.
    pub async fn get(&self) -> Option<String> {
        loop {
            let notified = self.ready.notified();
            {
                let mut q = self.lock();
                if q.shut_down {
                    return None;
                }
                if let Some(name) = q.queue.pop_front() {
                    q.dirty.remove(&name);
                    q.processing.insert(name.clone());
                    metrics::gauge!("kaylee_workqueue_depth").set(q.queue.len() as f64);
                    // Others may be waiting for the rest of the queue.
                    if !q.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return Some(name);
                }
            }
            notified.await;
        }
    }

    /// Marks a name processed; it goes back in line if it changed meanwhile.
    pub fn done(&self, name: &str) {
        let mut q = self.lock();
        q.processing.remove(name);
        if q.dirty.contains(name) && !q.shut_down {
            q.queue.push_back(name.to_string());
            drop(q);
            self.ready.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes every waiting worker with `None`; later adds are ignored.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.ready.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn adds_are_deduplicated() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await.as_deref(), Some("a"));
        assert_eq!(q.get().await.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn a_name_in_process_is_not_handed_out_twice() {
        let q = WorkQueue::new();
        q.add("a");
        let first = q.get().await;
        assert_eq!(first.as_deref(), Some("a"));
        q.add("a");
        assert_eq!(q.len(), 0, "re-added while processing: held back");
        q.done("a");
        assert_eq!(q.len(), 1, "comes back after done");
        assert_eq!(q.get().await.as_deref(), Some("a"));
        q.done("a");
        assert_eq!(q.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_adds_keep_the_soonest() {
        let q = WorkQueue::new();
        q.add_after("a", Duration::from_secs(10));
        q.add_after("a", Duration::from_secs(1));
        q.add_after("a", Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await.as_deref(), Some("a"));
        q.done("a");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(q.len(), 0, "the later timers were superseded");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_until_forgotten() {
        let q = WorkQueue::with_max_backoff(Duration::from_secs(8));
        let mut waits = Vec::new();
        for _ in 0..6 {
            let start = Instant::now();
            q.add_rate_limited("a");
            assert_eq!(q.get().await.as_deref(), Some("a"));
            waits.push(start.elapsed());
            q.done("a");
        }
        assert!(waits[0] < Duration::from_millis(400), "{waits:?}");
        assert!(waits[3] > waits[0] * 2, "{waits:?}");
        assert!(
            waits
                .iter()
                .all(|w| *w <= Duration::from_millis(8 * 1200 + 100)),
            "{waits:?}"
        );
        q.forget("a");
        let start = Instant::now();
        q.add_rate_limited("a");
        q.get().await;
        assert!(start.elapsed() < Duration::from_millis(400));
    }

    #[tokio::test]
    async fn shut_down_wakes_workers() {
        let q = WorkQueue::new();
        let q2 = q.clone();
        let worker = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(worker.await.unwrap(), None);
    }
}
