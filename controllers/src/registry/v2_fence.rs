//! The fence of v2 writes: a write may start only while the last check
//! that found this leadership's key began at most [`FENCE_FRESH`] earlier.
//! Checks are shared by every write in flight, one at a time; one is
//! started in the background once the last is half that old, so a steady
//! stream of writes rarely waits for one. A check that finds the key gone
//! (or recreated) fences the leadership for good. A warm clock
//! ([`FenceClock::warm`]) also keeps checking every 10 ms for a second
//! after the last write, so the next write of a busy leader finds a fresh
//! check instead of waiting for one; an idle leader makes no checks.

use super::ApplyError;
use crate::runtime::election::Fence;
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

/// How long after the last write a warm clock keeps its check fresh.
pub const KEEP_WARM: Duration = Duration::from_secs(1);

/// What the checks of one registry found, for the leadership they checked.
#[derive(Clone, Default)]
pub struct FenceClock {
    state: Arc<Mutex<State>>,
    /// Held while a check is in flight: at most one at a time.
    checking: Arc<tokio::sync::Mutex<()>>,
    warm: bool,
}

#[derive(Default)]
struct State {
    fence: Option<Fence>,
    /// When the latest check that found the key began.
    ok_since: Option<Instant>,
    fenced: bool,
    /// When a write was last admitted.
    last_write: Option<Instant>,
    /// Whether a task keeps the check fresh.
    keeping: bool,
}

enum Verdict {
    Go { refresh: bool },
    Fenced,
    Stale,
}

impl FenceClock {
    /// A clock that keeps its check fresh while writes come (see above).
    pub fn warm() -> FenceClock {
        FenceClock {
            warm: true,
            ..FenceClock::default()
        }
    }

    /// Notes an admitted write; starts the keeper of a warm clock.
    fn wrote(&self, fence: &Fence, check: &Check) {
        let start = {
            let mut s = self.lock();
            s.last_write = Some(Instant::now());
            let start = self.warm && !s.keeping;
            s.keeping |= start;
            start
        };
        if !start {
            return;
        }
        let (me, fence, check) = (self.clone(), fence.clone(), check.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FENCE_FRESH / 2).await;
                {
                    let mut s = me.lock();
                    let idle = s.last_write.is_none_or(|t| t.elapsed() > KEEP_WARM);
                    if idle || s.fenced || s.fence.as_ref() != Some(&fence) {
                        s.keeping = false;
                        return;
                    }
                }
                if let Ok(_guard) = me.checking.try_lock() {
                    // Not a verdict when etcd does not answer: writes
                    // check again themselves once stale.
                    let _ = me.run(&fence, &check).await;
                }
            }
        });
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
                keeping: s.keeping,
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
                    self.wrote(fence, check);
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
