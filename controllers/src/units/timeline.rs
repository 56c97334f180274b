//! The leader's clock on each unit: when it first saw each fleet job, since
//! when each job has been ready on each machine (for `minReadySeconds`),
//! and how the unit's current revision progresses (for the progress
//! deadline). Kept in memory for one leadership term: a new leader starts
//! the clocks again, seeded from the stored status where it says more.

use super::availability::ObservedJob;
use super::decide::Progress;
use dashmap::DashMap;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct JobClock {
    first: Instant,
    /// Per machine, since when the job has been ready there (nearly always
    /// one machine or none: a list costs nothing until then).
    ready: Vec<(Box<str>, Instant)>,
}

impl JobClock {
    fn new(first: Instant) -> JobClock {
        JobClock {
            first,
            ready: Vec::new(),
        }
    }
}

/// A job of one unit, by the fields of its name that vary (spec hash,
/// group, replica), without a string: a leader keeps one clock per fleet
/// job, 40,000 at 10,000 units.
type JobKey = (u32, u32, u32);

fn job_key(name: &crate::fleet::FleetName) -> JobKey {
    let hex = |s: &str| u32::from_str_radix(s, 16).unwrap_or(u32::MAX);
    (hex(&name.spec_hash), hex(&name.group), name.replica)
}

#[derive(Debug, Clone)]
struct RevisionClock {
    /// The spec hash and replica count this clock is about: a new one is a
    /// new rollout.
    revision: (String, u32),
    since: Instant,
    /// Time it had already gone without progress when this term began (a
    /// monotonic clock cannot be set before the process started).
    head_start: Duration,
    /// Most current-template replicas seen available at once.
    best: u32,
    complete: bool,
}

#[derive(Debug, Clone, Default)]
struct UnitClock {
    jobs: HashMap<JobKey, JobClock>,
    revision: Option<RevisionClock>,
}

/// Per unit; only the worker reconciling a unit touches its entry.
#[derive(Default)]
pub struct Timeline {
    units: DashMap<String, UnitClock>,
}

impl Timeline {
    /// Drops every clock of `unit` (its jobs' and its revision's); done
    /// once the unit is deleted and none of its fleet units is left.
    pub fn forget(&self, unit: &str) {
        self.units.remove(unit);
    }

    /// Fills in each job's `age` and each placement's `ready_for` from what
    /// was seen before, and forgets jobs that are gone. A job stopped by
    /// hand starts a fresh clock: launched again, it gets its whole grace.
    pub fn stamp(&self, unit: &str, now: Instant, jobs: &mut [ObservedJob]) {
        let mut entry = self.units.entry(unit.to_string()).or_default();
        let before = std::mem::take(&mut entry.jobs);
        for job in jobs.iter_mut() {
            let key = job_key(&job.name);
            let mut clock = match before.get(&key) {
                Some(c) if !job.stopped => c.clone(),
                _ => JobClock::new(now),
            };
            let mut ready = Vec::new();
            for p in job.placements.iter_mut() {
                p.ready_for = if p.is_ready() {
                    let since = clock
                        .ready
                        .iter()
                        .find(|(m, _)| **m == *p.machine)
                        .map_or(now, |(_, t)| *t);
                    ready.push((Box::from(p.machine.as_str()), since));
                    Some(now.saturating_duration_since(since))
                } else {
                    None
                };
            }
            clock.ready = ready;
            job.age = now.saturating_duration_since(clock.first);
            entry.jobs.insert(key, clock);
        }
    }

    /// The progress of revision (`spec_hash`, `desired`) with
    /// `updated_available` of its replicas available now. The first time a
    /// revision is seen in a term, `seed` says what the stored status knew
    /// (how long ago it last progressed, and whether it completed).
    pub fn progress(
        &self,
        unit: &str,
        revision: (&str, u32),
        updated_available: u32,
        now: Instant,
        seed: impl FnOnce() -> Progress,
    ) -> Progress {
        let mut entry = self.units.entry(unit.to_string()).or_default();
        let same = entry
            .revision
            .as_ref()
            .is_some_and(|r| r.revision.0 == revision.0 && r.revision.1 == revision.1);
        if !same {
            let first = entry.revision.is_none();
            let seeded = if first { seed() } else { Progress::default() };
            entry.revision = Some(RevisionClock {
                revision: (revision.0.to_string(), revision.1),
                since: now,
                head_start: seeded.since,
                best: 0,
                complete: seeded.complete,
            });
        }
        let Some(clock) = entry.revision.as_mut() else {
            return Progress::default();
        };
        if updated_available > clock.best {
            clock.best = updated_available;
            clock.since = now;
            clock.head_start = Duration::ZERO;
        }
        Progress {
            since: now.saturating_duration_since(clock.since) + clock.head_start,
            complete: clock.complete,
        }
    }

    /// Creating replicas is progress too.
    pub fn progressed(&self, unit: &str, now: Instant) {
        if let Some(mut entry) = self.units.get_mut(unit)
            && let Some(clock) = entry.revision.as_mut()
        {
            clock.since = now;
            clock.head_start = Duration::ZERO;
        }
    }

    /// The current revision was fully available.
    pub fn completed(&self, unit: &str) {
        if let Some(mut entry) = self.units.get_mut(unit)
            && let Some(clock) = entry.revision.as_mut()
        {
            clock.complete = true;
        }
    }
}

/// A duration long enough that any deadline has passed.
pub const LONG_AGO: Duration = Duration::from_secs(365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetName;
    use crate::units::availability::{Health, Placement, Registration};

    fn job(ready: bool) -> ObservedJob {
        ObservedJob {
            name: FleetName {
                prefix: "k".into(),
                unit: "web".into(),
                spec_hash: "aaaaaa".into(),
                group: "bbbbbb".into(),
                replica: 1,
            },
            unit_hash: [0; 20],
            stopped: false,
            age: Duration::ZERO,
            target: Some("m1".into()),
            placements: vec![Placement {
                machine: "m1".into(),
                active: "active".into(),
                sub: if ready { "running" } else { "start-pre" }.into(),
                current_text: true,
                live: true,
                registration: Registration::Registered(Health::None),
                ready_for: None,
            }],
        }
    }

    #[test]
    fn readiness_is_counted_without_a_break() {
        let t = Timeline::default();
        let t0 = Instant::now();
        let mut jobs = [job(true)];
        t.stamp("web", t0, &mut jobs);
        assert_eq!(jobs[0].placements[0].ready_for, Some(Duration::ZERO));
        let mut jobs = [job(true)];
        t.stamp("web", t0 + Duration::from_secs(5), &mut jobs);
        assert_eq!(
            jobs[0].placements[0].ready_for,
            Some(Duration::from_secs(5))
        );
        assert_eq!(jobs[0].age, Duration::from_secs(5));
        let mut jobs = [job(false)];
        t.stamp("web", t0 + Duration::from_secs(6), &mut jobs);
        assert_eq!(jobs[0].placements[0].ready_for, None);
        let mut jobs = [job(true)];
        t.stamp("web", t0 + Duration::from_secs(7), &mut jobs);
        assert_eq!(
            jobs[0].placements[0].ready_for,
            Some(Duration::ZERO),
            "a break starts the count again"
        );
    }

    #[test]
    fn progress_restarts_with_each_revision_and_each_newly_available_replica() {
        let t = Timeline::default();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let fresh = || Progress::default();
        assert_eq!(
            t.progress("web", ("a", 3), 0, at(0), fresh).since,
            Duration::ZERO
        );
        assert_eq!(
            t.progress("web", ("a", 3), 0, at(10), fresh).since,
            Duration::from_secs(10)
        );
        assert_eq!(
            t.progress("web", ("a", 3), 1, at(20), fresh).since,
            Duration::ZERO
        );
        t.progressed("web", at(25));
        assert_eq!(
            t.progress("web", ("a", 3), 1, at(30), fresh).since,
            Duration::from_secs(5)
        );
        t.completed("web");
        assert!(t.progress("web", ("a", 3), 1, at(31), fresh).complete);
        let p = t.progress("web", ("b", 3), 3, at(40), fresh);
        assert!(!p.complete, "a new revision has not completed");
        assert_eq!(p.since, Duration::ZERO);
    }

    #[test]
    fn a_new_term_is_seeded_from_the_stored_status() {
        let t = Timeline::default();
        let p = t.progress("web", ("a", 3), 0, Instant::now(), || Progress {
            since: LONG_AGO,
            complete: false,
        });
        assert!(p.since >= LONG_AGO, "a failed rollout stays failed");
    }
}
