//! The sampler: every ~100 ms one consistent read of fleet's jobs and
//! states, checked for foreign units left untouched (invariant b) and for
//! rolling updates that never drop a running replica (d), and used to time
//! how long each change takes to reach fleet.

use super::report::{Report, bump};
use super::units::{Model, UnitModel, Want, want};
use crate::support::fleet::{FLEET, FleetView, Snapshot};
use kaylee_controllers::fleet::FleetName;
use kaylee_controllers::fleet::records::parse_job_object;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PERIOD: Duration = Duration::from_millis(100);

/// fleet's records that are not Kaylee's, as they were before any server
/// started.
pub struct Baseline {
    /// Foreign keys under `job/` and `states/`: value and mod revision.
    pub keys: BTreeMap<String, (String, i64)>,
    /// A foreign unit text: its key relative to the prefix, and value.
    pub unit_record: (String, String),
}

pub struct Sampler {
    fleet: FleetView,
    model: Model,
    report: Arc<Report>,
    baseline: Baseline,
    start_timeout: Duration,
    names: BTreeSet<String>,
    /// Per fleet job, the start of the last sample that did not show it:
    /// the job was created after that.
    born_after: HashMap<String, Instant>,
    last_start: Instant,
    /// Rendered units per unit name, for the seq they were rendered at.
    wants: HashMap<String, (u64, Want)>,
    explained: BTreeSet<(String, u64)>,
}

/// What one sample says about one unit.
struct Verdict {
    /// fleet holds exactly the rendered units (names, hashes, launched).
    converged: bool,
    /// … and every one of them runs.
    settled: bool,
}

impl Sampler {
    pub fn new(
        fleet: FleetView,
        model: Model,
        report: Arc<Report>,
        baseline: Baseline,
        start_timeout: Duration,
    ) -> Sampler {
        let names = model.lock().unwrap().keys().cloned().collect();
        Sampler {
            fleet,
            model,
            report,
            baseline,
            start_timeout,
            names,
            born_after: HashMap::new(),
            last_start: Instant::now(),
            wants: HashMap::new(),
            explained: BTreeSet::new(),
        }
    }

    /// Samples until `stop`, then hands itself back for a last look.
    pub async fn run(mut self, stop: CancellationToken) -> Sampler {
        let mut n: u64 = 0;
        while !stop.is_cancelled() {
            self.sample(n.is_multiple_of(10)).await;
            n += 1;
            tokio::select! {
                _ = tokio::time::sleep(PERIOD) => {}
                _ = stop.cancelled() => {}
            }
        }
        self
    }

    /// One sample; `records` also checks the foreign unit text (an extra
    /// read). `None` when etcd did not answer.
    pub async fn sample(&mut self, records: bool) -> Option<Snapshot> {
        let started = Instant::now();
        let before: BTreeMap<String, UnitModel> = self.model.lock().unwrap().clone();
        let Some(snap) = self.fleet.try_live().await else {
            bump(&self.report.counters.failed_samples);
            return None;
        };
        bump(&self.report.counters.samples);
        self.check_foreign(&snap);
        if records {
            self.check_foreign_record().await;
        }
        for name in snap.jobs.keys() {
            self.born_after
                .entry(name.clone())
                .or_insert(self.last_start);
        }
        self.born_after.retain(|n, _| snap.jobs.contains_key(n));
        self.last_start = started;

        let mut verdicts = Vec::new();
        for (name, unit) in &before {
            if !unit.judgeable() {
                continue;
            }
            let seq = unit.seq;
            if self.wants.get(name).is_none_or(|(s, _)| *s != seq) {
                let w = want(unit.json.as_deref(), unit.marker.as_deref());
                self.wants.insert(name.clone(), (seq, w));
            }
            let w = &self.wants[name].1;
            verdicts.push((name.clone(), seq, self.judge(name, w, &snap)));
        }
        let shared = self.model.clone();
        let mut model = shared.lock().unwrap();
        for (name, seq, verdict) in verdicts {
            let Some(u) = model.get_mut(&name) else {
                continue;
            };
            // A change began during the read: etcd may have shown either.
            if u.seq != seq || !u.judgeable() {
                continue;
            }
            if let Some(r) = u.rollout.clone().filter(|r| r.seq == seq) {
                self.check_rollout(&name, &r, &snap, started);
            }
            if verdict.converged
                && let Some(since) = u.pending_since.take()
            {
                let ms = started.saturating_duration_since(since).as_millis() as u64;
                self.report.record_convergence(ms);
            }
            if verdict.settled {
                u.settled = Some(seq);
                if u.rollout.take().is_some() {
                    bump(&self.report.counters.rollouts_completed);
                }
            }
        }
        Some(snap)
    }

    /// The Kaylee jobs of `unit` in `snap`, by fleet name.
    fn jobs_of<'a>(unit: &str, snap: &'a Snapshot) -> Vec<(&'a String, FleetName)> {
        snap.jobs
            .keys()
            .filter_map(|n| {
                let parsed = FleetName::parse(n, "k")?;
                (parsed.unit == unit).then_some((n, parsed))
            })
            .collect()
    }

    fn judge(&self, unit: &str, w: &Want, snap: &Snapshot) -> Verdict {
        let jobs = Self::jobs_of(unit, snap);
        let converged = jobs.len() == w.units.len()
            && jobs.iter().all(|(n, _)| {
                let job = &snap.jobs[*n];
                let hash = parse_job_object(job.object.as_bytes()).map(|(_, h)| h);
                w.units.get(*n).map(|(h, _)| *h) == hash
                    && hash.is_some()
                    && job.target_state == "launched"
            });
        let running = jobs.iter().filter(|(n, _)| is_running(snap, n)).count();
        Verdict {
            converged,
            settled: converged && running == jobs.len(),
        }
    }

    /// Invariant d for one sample of a watched rolling update.
    fn check_rollout(
        &mut self,
        unit: &str,
        r: &super::units::Rollout,
        snap: &Snapshot,
        started: Instant,
    ) {
        let jobs = Self::jobs_of(unit, snap);
        let old = jobs
            .iter()
            .filter(|(_, f)| f.spec_hash != r.spec_hash)
            .count();
        let running = jobs.iter().filter(|(n, _)| is_running(snap, n)).count();
        if old == 0 || running >= r.replicas {
            return;
        }
        // A new unit not running after the start timeout may be counted as
        // ready by design (the leader's clock starts no earlier than ours).
        let late = jobs.iter().any(|(n, f)| {
            f.spec_hash == r.spec_hash
                && !is_running(snap, n)
                && self
                    .born_after
                    .get(*n)
                    .is_some_and(|b| started.saturating_duration_since(*b) >= self.start_timeout)
        });
        if late {
            if self.explained.insert((unit.to_string(), r.seq)) {
                bump(&self.report.counters.explained_drops);
                self.report.note(&format!(
                    "{unit}: rollout below {} running, explained by a start timeout",
                    r.replicas
                ));
            }
            return;
        }
        let detail: Vec<String> = jobs
            .iter()
            .map(|(n, _)| {
                format!(
                    "{n}{}",
                    if is_running(snap, n) {
                        " (running)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        self.report.violation(
            &format!("rollout:{unit}:{}", r.seq),
            format!(
                "{unit}: rolling update to {} ran {running} of {} replicas while {old} old \
                 unit(s) remained: {detail:?}",
                r.spec_hash, r.replicas
            ),
        );
    }

    /// Invariant b: foreign keys unchanged (value and revision), and no key
    /// that is neither foreign nor a Kaylee unit's.
    fn check_foreign(&self, snap: &Snapshot) {
        for (key, was) in &self.baseline.keys {
            match snap.keys.get(key) {
                Some(now) if now == was => {}
                Some(now) => self.report.violation(
                    &format!("foreign:{key}"),
                    format!("foreign key {key} rewritten: {now:?}, was {was:?}"),
                ),
                None => self.report.violation(
                    &format!("foreign:{key}"),
                    format!("foreign key {key} deleted (was {was:?})"),
                ),
            }
        }
        for key in snap.keys.keys() {
            if !self.baseline.keys.contains_key(key) && !self.is_ours(key) {
                self.report.violation(
                    &format!("stray:{key}"),
                    format!("a key that is neither foreign nor Kaylee's appeared: {key}"),
                );
            }
        }
    }

    async fn check_foreign_record(&self) {
        let (key, was) = &self.baseline.unit_record;
        match self.fleet.try_get(key).await {
            None => {}
            Some(Some(now)) if now == *was => {}
            Some(now) => self.report.violation(
                &format!("foreign:{key}"),
                format!("foreign unit record {key} changed: {now:?}"),
            ),
        }
    }

    /// `job/<name>/…` or `states/<name>/…` of a unit this test made.
    fn is_ours(&self, key: &str) -> bool {
        let rest = key.strip_prefix(FLEET).unwrap_or_default();
        let name = rest
            .strip_prefix("job/")
            .or_else(|| rest.strip_prefix("states/"))
            .and_then(|r| r.split_once('/'))
            .map(|(name, _)| name);
        name.and_then(|n| FleetName::parse(n, "k"))
            .is_some_and(|f| self.names.contains(&f.unit))
    }
}

fn is_running(snap: &Snapshot, fleet_name: &str) -> bool {
    snap.running.get(fleet_name).is_some_and(|m| !m.is_empty())
}
