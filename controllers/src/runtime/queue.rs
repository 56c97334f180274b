//! The work queue (after client-go's): a name waits at most once (dirty
//! set), is never handed to two workers at once (processing set), comes back
//! after `done` if it changed meanwhile, and failing names retry with
//! per-name exponential backoff.
//!
//! Two lanes: a change ([`WorkQueue::add`]) is served before the names of a
//! full pass ([`WorkQueue::add_bulk`]: a new term, a resync), so one edited
//! unit does not wait behind thousands of unchanged ones.

use super::backoff::Backoff;
use futures::StreamExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::time::{DelayQueue, delay_queue};

#[derive(Default)]
struct Inner {
    /// Lanes may hold a name twice (promoted from bulk) or a name no longer
    /// dirty; `get` skips such entries.
    urgent: VecDeque<String>,
    bulk: VecDeque<String>,
    dirty: HashSet<String>,
    /// The dirty names that came as changes.
    dirty_urgent: HashSet<String>,
    processing: HashSet<String>,
    /// Dirty names not being processed: what waits for a worker.
    waiting: usize,
    /// When a delayed add for a name is due; a sooner request replaces it.
    delayed: HashMap<String, Instant>,
    failures: HashMap<String, Backoff>,
    shut_down: bool,
}

impl Inner {
    fn push(&mut self, name: &str, urgent: bool) {
        let lane = if urgent {
            &mut self.urgent
        } else {
            &mut self.bulk
        };
        lane.push_back(name.to_string());
        self.waiting += 1;
        metrics::gauge!("kaylee_workqueue_depth").set(self.waiting as f64);
    }

    /// The next dirty name that no worker has, urgent ones first.
    fn pop(&mut self) -> Option<String> {
        while let Some(name) = self.urgent.pop_front().or_else(|| self.bulk.pop_front()) {
            if !self.dirty.contains(&name) || self.processing.contains(&name) {
                continue;
            }
            self.dirty.remove(&name);
            self.dirty_urgent.remove(&name);
            self.processing.insert(name.clone());
            self.waiting = self.waiting.saturating_sub(1);
            metrics::gauge!("kaylee_workqueue_depth").set(self.waiting as f64);
            return Some(name);
        }
        None
    }
}

/// The first retry of a failing name; later ones grow by
/// [`RETRY_FACTOR`] up to the queue's cap.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// How much longer each retry of a failing name waits than the one before.
const RETRY_FACTOR: f32 = 1.5;
/// Jitter spreads the retries of many failing units; the cap holds up to
/// it (±20%).
const RETRY_JITTER: f64 = 0.2;

/// The queue of unit names the workers of one controller reconcile; shared
/// as an `Arc` between the informers that add names and the workers.
pub struct WorkQueue {
    inner: Mutex<Inner>,
    ready: Notify,
    max_backoff: Duration,
    /// Where delayed adds go: one timer task for them all (a task and a
    /// timer per delay cost megabytes when 10,000 units wait on their
    /// progress deadline).
    timers: OnceLock<mpsc::UnboundedSender<(String, Instant)>>,
    /// [`RETRY_JITTER`]; 0 only in tests, so they can assert exact waits.
    jitter: f64,
}

/// The timer task of a queue: a `DelayQueue` of pending adds, each name at
/// most once (at its soonest due time). It ends with the queue.
fn timers(queue: Weak<WorkQueue>) -> mpsc::UnboundedSender<(String, Instant)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    tokio::spawn(async move {
        let mut due: DelayQueue<(String, Instant)> = DelayQueue::new();
        let mut keys: HashMap<String, delay_queue::Key> = HashMap::new();
        loop {
            tokio::select! {
                added = rx.recv() => {
                    let Some((name, at)) = added else { return };
                    // Only sooner dues are sent: the earlier entry goes.
                    if let Some(key) = keys.remove(&name) {
                        due.remove(&key);
                    }
                    let key = due.insert_at((name.clone(), at), at);
                    keys.insert(name, key);
                }
                Some(expired) = due.next(), if !due.is_empty() => {
                    let (name, at) = expired.into_inner();
                    keys.remove(&name);
                    match queue.upgrade() {
                        Some(q) => q.fire(&name, at),
                        None => return,
                    }
                }
            }
        }
    });
    tx
}

impl WorkQueue {
    /// A queue whose failing names back off from 200 ms up to 60 s between
    /// retries.
    pub fn new() -> Arc<WorkQueue> {
        Self::with_max_backoff(Duration::from_secs(60))
    }

    /// A queue whose retries of a failing name wait 200 ms, then 1.5 times
    /// longer each time up to `max_backoff`, each wait ±20% jitter. The
    /// first retry waits 200 ms even under a smaller cap.
    pub fn with_max_backoff(max_backoff: Duration) -> Arc<WorkQueue> {
        Arc::new(WorkQueue {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            max_backoff,
            timers: OnceLock::new(),
            jitter: RETRY_JITTER,
        })
    }

    /// Retries without jitter: every wait is exact.
    #[cfg(test)]
    fn without_jitter(max_backoff: Duration) -> Arc<WorkQueue> {
        Arc::new(WorkQueue {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            max_backoff,
            jitter: 0.0,
            timers: OnceLock::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the sets inconsistent
        // in a way worse than a lost wake-up, so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A change: served before every bulk name.
    pub fn add(&self, name: &str) {
        self.enqueue(name, true);
    }

    /// Part of a full pass: served when no change waits.
    pub fn add_bulk(&self, name: &str) {
        self.enqueue(name, false);
    }

    fn enqueue(&self, name: &str, urgent: bool) {
        let mut q = self.lock();
        if q.shut_down {
            return;
        }
        let fresh = q.dirty.insert(name.to_string());
        let promoted = urgent && q.dirty_urgent.insert(name.to_string());
        if !fresh && !promoted {
            return;
        }
        if fresh {
            metrics::counter!("kaylee_workqueue_adds_total").increment(1);
        }
        if q.processing.contains(name) {
            return;
        }
        if fresh {
            q.push(name, urgent);
        } else {
            // Already waiting in the bulk lane: move ahead; the bulk entry
            // is skipped later.
            q.urgent.push_back(name.to_string());
        }
        drop(q);
        self.ready.notify_one();
    }

    /// Adds `name` after `delay`, unless an add at least as soon is pending.
    /// Must be called within a tokio runtime (its timers run there).
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
        let timers = self.timers.get_or_init(|| timers(Arc::downgrade(self)));
        // Only when the timer task is gone (the runtime is shutting down).
        let _ = timers.send((name.to_string(), due));
    }

    /// A delayed add came due: the name goes in line unless a later
    /// `add_after` moved it.
    fn fire(&self, name: &str, due: Instant) {
        let fire = {
            let mut q = self.lock();
            if q.delayed.get(name) == Some(&due) {
                q.delayed.remove(name);
                true
            } else {
                false
            }
        };
        if fire {
            self.add(name);
        }
    }

    /// Retries a failed name after its next backoff step.
    pub fn add_rate_limited(self: &Arc<Self>, name: &str) {
        let delay = {
            let mut q = self.lock();
            let max = self.max_backoff;
            let b = q
                .failures
                .entry(name.to_string())
                .or_insert_with(|| Backoff::new(FIRST_RETRY, RETRY_FACTOR, max, self.jitter));
            b.next_wait()
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
                if let Some(name) = q.pop() {
                    // Others may be waiting for the rest of the queue.
                    if q.waiting > 0 {
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
            let urgent = q.dirty_urgent.contains(name);
            q.push(name, urgent);
            drop(q);
            self.ready.notify_one();
        }
    }

    /// Names waiting for a worker.
    pub fn len(&self) -> usize {
        self.lock().waiting
    }

    /// Whether no name waits for a worker (names being processed or due
    /// later through [`WorkQueue::add_after`] do not count).
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

    /// The wait of each of `n` failures in a row of one name, on the
    /// paused clock (it jumps to each timer, so waits are exact).
    async fn retry_waits(q: &Arc<WorkQueue>, n: usize) -> Vec<Duration> {
        let mut waits = Vec::new();
        for _ in 0..n {
            let start = Instant::now();
            q.add_rate_limited("a");
            assert_eq!(q.get().await.as_deref(), Some("a"));
            waits.push(start.elapsed());
            q.done("a");
        }
        waits
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_to_the_cap_until_forgotten() {
        let q = WorkQueue::without_jitter(Duration::from_secs(1));
        let ms = Duration::from_millis;
        // 200 ms, then x1.5 a step, held at the cap.
        assert_eq!(
            retry_waits(&q, 6).await,
            [ms(200), ms(300), ms(450), ms(675), ms(1000), ms(1000)]
        );
        q.forget("a");
        assert_eq!(retry_waits(&q, 1).await, [ms(200)], "starts over");
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_keeps_each_retry_within_a_fifth_of_its_step() {
        let q = WorkQueue::with_max_backoff(Duration::from_secs(1));
        let steps = [200.0, 300.0, 450.0, 675.0, 1000.0, 1000.0];
        for (wait, step) in retry_waits(&q, 6).await.iter().zip(steps) {
            // The paused clock fires timers on whole milliseconds.
            let ms = wait.as_secs_f64() * 1000.0;
            assert!(
                (step * 0.8 - 1.0..=step * 1.2 + 1.0).contains(&ms),
                "{ms} ms for a step of {step} ms"
            );
        }
    }

    #[tokio::test]
    async fn changes_are_served_before_a_full_pass() {
        let q = WorkQueue::new();
        for n in ["a", "b", "c"] {
            q.add_bulk(n);
        }
        q.add("z");
        q.add("c");
        q.add_bulk("z");
        assert_eq!(q.len(), 4);
        let mut order = Vec::new();
        while !q.is_empty() {
            let name = q.get().await.unwrap_or_default();
            q.done(&name);
            order.push(name);
        }
        assert_eq!(order, ["z", "c", "a", "b"], "c promoted, and once only");
    }

    #[tokio::test]
    async fn a_change_during_processing_comes_back_urgent() {
        let q = WorkQueue::new();
        q.add_bulk("a");
        q.add_bulk("b");
        assert_eq!(q.get().await.as_deref(), Some("a"));
        q.add("a");
        q.done("a");
        assert_eq!(q.get().await.as_deref(), Some("a"), "ahead of b");
        q.done("a");
        assert_eq!(q.get().await.as_deref(), Some("b"));
        q.done("b");
        assert!(q.is_empty());
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
