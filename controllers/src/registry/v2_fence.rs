//! The fence of v2 writes: a write may start only while the last check
//! that found this leadership's key began at most [`FENCE_FRESH`] earlier.
//! Checks are shared by every write in flight, one at a time; one is
//! started in the background once the last is half that old, so a steady
//! stream of writes rarely waits for one. A check that finds the key gone
//! (or recreated) fences the leadership for good. A batch of writes
//! starts only after a check that began after the batch was handed over
//! ([`FenceClock::admit_batch`]), so the 20 ms only ever reach back to a
//! check made for that batch or during it.

use super::ApplyError;
use crate::etcd::election::Fence;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// How old (from its start) the last successful leadership check may be
/// when a v2 write starts: 20 ms.
pub const FENCE_FRESH: Duration = Duration::from_millis(20);

/// One leadership check: `Ok(true)` while the leader key exists with the
/// leadership's create revision, `Ok(false)` once it does not, `Err` when
/// etcd did not answer.
pub type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<bool, ApplyError>> + Send>> + Send + Sync>;

/// What the checks of one registry found, for the leadership they checked.
#[derive(Clone, Default)]
pub struct FenceClock {
    state: Arc<Mutex<State>>,
    /// Held while a check is in flight: at most one at a time.
    checking: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct State {
    fence: Option<Fence>,
    /// When the latest check that found the key began.
    ok_since: Option<Instant>,
    fenced: bool,
}

enum Verdict {
    Go { refresh: bool },
    Fenced,
    Stale,
}

impl FenceClock {
    /// Returns once a batch of writes under `fence` may begin: after a
    /// check that began after this call (another write's, if one began
    /// since, or its own) found the key. So no batch formed after the key
    /// was lost writes anything.
    pub async fn admit_batch(&self, fence: &Fence, check: &Check) -> Result<(), ApplyError> {
        let asked = Instant::now();
        let _guard = self.checking.lock().await;
        {
            let mut s = self.lock();
            if s.fence.as_ref() != Some(fence) {
                *s = State {
                    fence: Some(fence.clone()),
                    ..State::default()
                };
            }
            if s.fenced {
                return Err(ApplyError::Fenced);
            }
            if s.ok_since.is_some_and(|t| t >= asked) {
                return Ok(());
            }
        }
        match self.run(fence, check).await? {
            true => Ok(()),
            false => Err(ApplyError::Fenced),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn verdict(&self, fence: &Fence) -> Verdict {
        let mut s = self.lock();
        if s.fence.as_ref() != Some(fence) {
            // A new leadership: nothing checked for it yet.
            *s = State {
                fence: Some(fence.clone()),
                ..State::default()
            };
        }
        if s.fenced {
            return Verdict::Fenced;
        }
        match s.ok_since.map(|t| t.elapsed()) {
            Some(age) if age <= FENCE_FRESH => Verdict::Go {
                refresh: age >= FENCE_FRESH / 2,
            },
            _ => Verdict::Stale,
        }
    }

    /// Records the outcome of a check of `fence` that began at `began`.
    fn record(&self, fence: &Fence, began: Instant, leads: bool) {
        let mut s = self.lock();
        if s.fence.as_ref() != Some(fence) {
            return;
        }
        if leads {
            s.ok_since = Some(s.ok_since.map_or(began, |t| t.max(began)));
        } else {
            s.fenced = true;
        }
    }

    /// Runs `check` (the caller holds `checking`) and records it.
    async fn run(&self, fence: &Fence, check: &Check) -> Result<bool, ApplyError> {
        let began = Instant::now();
        let leads = check().await?;
        self.record(fence, began, leads);
        Ok(leads)
    }

    /// Returns once a write under `fence` may start: at once while the last
    /// successful check is fresh (starting the next one in the background
    /// when it is half as old as allowed), else after a check of its own
    /// (or one another write started). `Err(Fenced)` once a check found
    /// the leadership gone.
    pub async fn admit(&self, fence: &Fence, check: &Check) -> Result<(), ApplyError> {
        loop {
            match self.verdict(fence) {
                Verdict::Fenced => return Err(ApplyError::Fenced),
                Verdict::Go { refresh } => {
                    if refresh && let Ok(guard) = self.checking.clone().try_lock_owned() {
                        let (me, fence, check) = (self.clone(), fence.clone(), check.clone());
                        tokio::spawn(async move {
                            // A failed background check is not a verdict:
                            // writes check again themselves once stale.
                            let _ = me.run(&fence, &check).await;
                            drop(guard);
                        });
                    }
                    return Ok(());
                }
                Verdict::Stale => {
                    let _guard = self.checking.lock().await;
                    // Another write's check may have finished meanwhile.
                    if let Verdict::Stale = self.verdict(fence) {
                        self.run(fence, check).await?;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fence(rev: i64) -> Fence {
        Fence {
            key: "/kaylee/leader/1".into(),
            create_revision: rev,
        }
    }

    /// A check that counts its calls and answers `leads` (shared).
    fn check(calls: &Arc<AtomicUsize>, leads: &Arc<Mutex<bool>>) -> Check {
        let (calls, leads) = (calls.clone(), leads.clone());
        Arc::new(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let leads = *leads.lock().expect("lock");
            Box::pin(async move { Ok(leads) })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_needs_a_check_that_began_at_most_20_ms_before_it() {
        let clock = FenceClock::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let leads = Arc::new(Mutex::new(true));
        let check = check(&calls, &leads);
        let f = fence(7);

        clock.admit(&f, &check).await.expect("leads");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the first write checks");
        tokio::time::advance(Duration::from_millis(5)).await;
        clock.admit(&f, &check).await.expect("fresh");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a fresh check is shared");

        tokio::time::advance(Duration::from_millis(30)).await;
        clock.admit(&f, &check).await.expect("leads");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a stale check is redone");

        // Half as old as allowed: the write goes, a check starts beside it.
        tokio::time::advance(Duration::from_millis(12)).await;
        clock.admit(&f, &check).await.expect("fresh");
        tokio::task::yield_now().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "refreshed in the background"
        );

        // The key is lost: the next check fences this leadership for good.
        *leads.lock().expect("lock") = false;
        tokio::time::advance(Duration::from_millis(30)).await;
        assert!(matches!(
            clock.admit(&f, &check).await,
            Err(ApplyError::Fenced)
        ));
        *leads.lock().expect("lock") = true;
        assert!(
            matches!(clock.admit(&f, &check).await, Err(ApplyError::Fenced)),
            "a fenced leadership stays fenced"
        );
        let calls_then = calls.load(Ordering::SeqCst);

        // A new leadership starts unchecked.
        clock.admit(&fence(9), &check).await.expect("new term");
        assert_eq!(calls.load(Ordering::SeqCst), calls_then + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_begins_only_after_a_check_of_its_own() {
        let clock = FenceClock::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let leads = Arc::new(Mutex::new(true));
        let check = check(&calls, &leads);
        let f = fence(5);
        clock.admit_batch(&f, &check).await.expect("leads");
        clock.admit(&f, &check).await.expect("fresh");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "its writes share it");
        // The key is lost right after a check that is still fresh: a
        // write of the running batch may start, a new batch may not.
        *leads.lock().expect("lock") = false;
        tokio::time::advance(Duration::from_millis(1)).await;
        clock.admit(&f, &check).await.expect("within 20 ms");
        assert!(matches!(
            clock.admit_batch(&f, &check).await,
            Err(ApplyError::Fenced)
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(matches!(
            clock.admit(&f, &check).await,
            Err(ApplyError::Fenced)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_background_check_that_finds_the_key_gone_fences_the_next_write() {
        let clock = FenceClock::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let leads = Arc::new(Mutex::new(true));
        let check = check(&calls, &leads);
        let f = fence(3);
        clock.admit(&f, &check).await.expect("leads");
        *leads.lock().expect("lock") = false;
        tokio::time::advance(Duration::from_millis(15)).await;
        clock.admit(&f, &check).await.expect("still fresh");
        tokio::task::yield_now().await;
        assert!(matches!(
            clock.admit(&f, &check).await,
            Err(ApplyError::Fenced)
        ));
    }
}
