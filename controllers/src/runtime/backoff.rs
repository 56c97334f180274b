//! Exponential backoff for retries and relists: backon's steps, spread by a
//! symmetric jitter of their own size. backon's own jitter only adds, up to
//! a whole step (so past the cap); a retry of many failing units needs them
//! spread around each step instead.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// The waits of one thing retried: `first`, then `factor` times the last,
/// held at `max`, each spread by ±`jitter` of itself (0.2: ±20%). Never
/// runs out.
pub struct Backoff {
    steps: backon::ExponentialBackoff,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// Waits from `first` growing by `factor` (at least 1) up to `max`,
    /// each ±`jitter` (a fraction of the step, 0 for exact waits).
    pub fn new(first: Duration, factor: f32, max: Duration, jitter: f64) -> Backoff {
        let steps = ExponentialBuilder::new()
            .with_min_delay(first)
            .with_factor(factor.max(1.0))
            .with_max_delay(max)
            .without_max_times()
            .build();
        Backoff {
            steps,
            max,
            jitter: jitter.clamp(0.0, 1.0),
        }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.steps.next().map_or(self.max, to_micros);
        if self.jitter == 0.0 {
            return step;
        }
        step.mul_f64(1.0 + self.jitter * (2.0 * fastrand::f64() - 1.0))
    }
}

/// `d` to the nearest microsecond: backon multiplies in `f32`, which
/// makes 1.5 x 200 ms 300.000004 ms.
fn to_micros(d: Duration) -> Duration {
    let micros = (d.as_nanos() + 500) / 1_000;
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn steps_grow_by_the_factor_and_hold_at_the_cap() {
        let mut b = Backoff::new(ms(100), 2.0, ms(500), 0.0);
        let waits: Vec<Duration> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
    }

    proptest! {
        #[test]
        fn each_wait_stays_within_its_jitter(
            first in 1u64..1_000,
            factor in 1.0f32..3.0,
            extra in 0u64..10_000,
            jitter in 0.0f64..1.0,
            n in 1usize..30,
        ) {
            let max = ms(first + extra);
            let mut exact = Backoff::new(ms(first), factor, max, 0.0);
            let mut spread = Backoff::new(ms(first), factor, max, jitter);
            for _ in 0..n {
                let (step, wait) = (exact.next_wait(), spread.next_wait());
                prop_assert!(step <= max);
                let (lo, hi) = (step.mul_f64(1.0 - jitter), step.mul_f64(1.0 + jitter));
                // mul_f64 rounds to nanoseconds.
                prop_assert!(wait + Duration::from_nanos(2) >= lo && wait <= hi + Duration::from_nanos(2),
                    "{wait:?} outside {lo:?}..={hi:?}");
            }
        }
    }
}
