//! reconcile(name): the I/O around [`decide`]. It reads the caches,
//! keeps the clocks, writes the decision, the unit's status and its
//! history in one batch, rolls a failed rollout back when the unit asks,
//! and waits to read its fleet writes back.

use super::{ReconcileError, UnitsController};
use crate::fleet::{FleetName, FleetUnit, Rendered, render};
use crate::registry::{ApplyError, FleetRegistry, Write};
use crate::spec::{self, Unit};
use crate::units::availability::Constraints;
use crate::units::decide::{
    Condition, Decision, Desired, Facts, Phase, Progress, Target, decide, decide_tracking,
};
use crate::units::history::{self, Revision};
use crate::units::observe::{Caches, observe};
use crate::units::status::{RolledBack, UnitStatus};
use crate::units::timeline::LONG_AGO;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use std::time::{Duration, Instant};

/// How long a reconcile waits for its own writes to show in the caches.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

/// The unit as stored and as it renders.
struct Spec {
    unit: Unit,
    rendered: Rendered,
    /// Revision of `/kaylee/units/<name>`.
    revision: i64,
}

impl<R: FleetRegistry> UnitsController<R> {
    /// One level-triggered pass over one unit. Returns when to look again
    /// even without events (a deadline or `minReadySeconds`), if ever.
    pub async fn reconcile(&self, name: &str) -> Result<Option<Duration>, ReconcileError> {
        let started = Instant::now();
        let key = self.keys.unit(name);
        let stored = self.units.get(&key);
        let revision = stored.as_ref().map_or(0, |v| v.revision);
        let restart = self.restarts.get(&self.keys.restart(name));
        let marker = restart
            .as_ref()
            .map(|v| String::from_utf8_lossy(&v.bytes).into_owned())
            .unwrap_or_default();
        let restart_revision = restart.as_ref().map_or(0, |v| v.revision);
        let parsed: Option<Result<Spec, String>> = stored.as_ref().map(|v| {
            spec::from_stored(&v.bytes, &key, name)
                .map(|unit| Spec {
                    rendered: render(&unit, &marker, &self.config.render),
                    unit,
                    revision,
                })
                .map_err(|e| e.to_string())
        });
        let valid = parsed.as_ref().and_then(|p| p.as_ref().ok());
        let desired = match &parsed {
            None => Desired::Absent,
            Some(Err(_)) => Desired::Invalid,
            Some(Ok(s)) => Desired::Present(self.target(s)),
        };

        let cluster = self.cluster();
        let caches = Caches {
            fleet: &self.fleet,
            kaylee: &self.keys,
            jobs: &self.jobs,
            states: &self.states,
            instances: &self.instances,
            health: &self.health,
        };
        let mut jobs = observe(name, &caches, &cluster);
        let now = Instant::now();
        self.timeline.stamp(name, now, &mut jobs);
        let previous = self.statuses.get(name);
        let facts = |jobs, progress| Facts {
            jobs,
            cluster: &cluster,
            progress,
            schedule_grace: self.config.schedule_grace,
        };
        let spec_hash = valid.map_or("", |s| s.rendered.spec_hash.as_str());
        let (d, progress) = decide_tracking(
            desired,
            &facts(&jobs, Progress::default()),
            |n, available| {
                let seed = || seed(previous.as_ref(), spec_hash, n);
                self.timeline
                    .progress(name, (spec_hash, n), available, now, seed)
            },
        );
        if d.rollback
            && let Some(s) = valid
        {
            self.roll_back(name, s, &d, previous.as_ref()).await?;
        }

        // The status goes with the fleet writes (right after them, nearly
        // always in the same transaction) and reports fleet as they leave
        // it, so the reconcile their events trigger finds nothing new.
        let (jobs_after, after) = if d.is_empty() {
            (jobs, d.clone())
        } else {
            let applied = d.applied_to(&jobs);
            let progress = match d.create.is_empty() {
                true => progress,
                false => Progress {
                    since: Duration::ZERO,
                    ..progress
                },
            };
            let after = decide(desired, &facts(&applied, progress));
            (applied, after)
        };
        if after.phase == Phase::Deleted {
            self.timeline.forget(name);
        }
        let mut ops: Vec<Write> = d
            .destroy
            .iter()
            .map(|n| Write::Destroy { name: n.to_name() })
            .chain(
                d.create
                    .iter()
                    .map(|u| Write::create(&u.name.to_name(), &u.text)),
            )
            .collect();
        let mut recorded = None;
        let status = match &parsed {
            None => None,
            Some(Err(error)) => Some(UnitStatus {
                error: Some(error.clone()),
                restart_revision,
                ..UnitStatus::new("", revision, &jobs_after, &after)
            }),
            Some(Ok(s)) => {
                let mut status =
                    UnitStatus::new(&s.rendered.spec_hash, revision, &jobs_after, &after);
                status.restart_revision = restart_revision;
                status.complete =
                    progress.complete || after.condition == Some(Condition::Available);
                status.rolled_back = self.rolled_back(name, revision, previous.as_ref());
                let (n, history_ops) = self.record(name, s, previous.as_ref(), &status).await?;
                status.revision = n;
                ops.extend(history_ops);
                recorded = Some(n);
                Some(status)
            }
        };
        if status.as_ref().is_some_and(|s| s.complete) {
            self.timeline.completed(name);
        }
        self.statuses.publish(name, status, ops).await?;
        if let Some(n) = recorded {
            self.history.recorded(name, n);
        }
        if !d.is_empty() {
            // The next reconcile of this unit must see these writes.
            self.await_own_writes(&d.destroy, &d.create).await?;
            if !d.create.is_empty() {
                self.timeline.progressed(name, Instant::now());
            }
            tracing::info!(
                unit = name,
                phase = ?d.phase,
                created = d.create.len(),
                destroyed = d.destroy.len(),
                duration_ms = started.elapsed().as_millis() as u64,
                "reconciled"
            );
        } else {
            tracing::debug!(unit = name, phase = ?d.phase, "nothing to do");
        }
        Ok(after.requeue_after)
    }

    fn target<'a>(&'a self, s: &'a Spec) -> Target<'a> {
        let spec = &s.unit.spec;
        Target {
            rendered: &s.rendered,
            policy: s.unit.rollout(self.config.start_timeout),
            constraints: Constraints {
                layout: s.unit.layout(),
                metadata: &spec.machine,
                machine_id: spec.machine_id.as_deref(),
                conflicts: s
                    .rendered
                    .units
                    .first()
                    .is_some_and(|u| u.text.contains("\nConflicts=")),
                network_unit: &self.config.render.network_unit,
            },
        }
    }

    /// The rollback in effect for the spec at `revision`: made by this
    /// leader, or by an earlier one (its status said so).
    fn rolled_back(
        &self,
        name: &str,
        revision: i64,
        previous: Option<&UnitStatus>,
    ) -> Option<RolledBack> {
        self.rollbacks
            .get(name)
            .map(|r| r.clone())
            .or_else(|| previous.and_then(|p| p.rolled_back.clone()))
            .filter(|r| r.spec_revision == revision)
    }

    /// The history revision of the spec, with the writes that record it
    /// (the first time it is seen) or mark it fully available (the first
    /// time it is).
    async fn record(
        &self,
        name: &str,
        s: &Spec,
        previous: Option<&UnitStatus>,
        status: &UnitStatus,
    ) -> Result<(u64, Vec<Write>), ReconcileError> {
        let known = previous
            .filter(|p| p.spec_revision == s.revision && p.revision > 0)
            .map(|p| (p.revision, p.complete));
        let Some((n, was_complete)) = known else {
            let mut record = Revision::new(
                self.history.next(name),
                s.revision,
                &s.rendered.spec_hash,
                &s.unit,
            );
            record.rollback_of = status.rolled_back.as_ref().map(|r| r.from_revision);
            if status.complete {
                record = record.mark_available();
            }
            return Ok((record.revision, self.history.record_ops(name, &record)));
        };
        if !status.complete || was_complete {
            return Ok((n, Vec::new()));
        }
        // First fully available: mark the record, as stored.
        let stored = history::list(&self.client, &self.etcd, &self.keys, name).await?;
        let ops = stored
            .into_iter()
            .find(|r| r.revision == n)
            .map(|r| vec![self.history.put(name, &r.mark_available())])
            .unwrap_or_default();
        Ok((n, ops))
    }

    /// Puts back the last revision that was fully available, unless the
    /// unit changed meanwhile; once per failed spec revision.
    async fn roll_back(
        &self,
        name: &str,
        s: &Spec,
        d: &Decision,
        previous: Option<&UnitStatus>,
    ) -> Result<(), ReconcileError> {
        if self.no_rollback.get(name).is_some_and(|r| *r == s.revision)
            || self
                .rollbacks
                .get(name)
                .is_some_and(|r| r.failed_spec_revision == s.revision)
        {
            return Ok(());
        }
        let current = previous
            .filter(|p| p.spec_revision == s.revision)
            .map_or(0, |p| p.revision);
        let revisions = history::list(&self.client, &self.etcd, &self.keys, name).await?;
        let back = revisions
            .iter()
            .rev()
            .find(|r| r.available && r.spec_hash != s.rendered.spec_hash && r.revision != current);
        let reasons: Vec<String> = d
            .unavailable
            .iter()
            .map(|u| format!("{}: {}", u.unit, u.reason))
            .collect();
        let why = format!(
            "no new replica became available within its progress deadline ({}s): {}",
            s.unit
                .rollout(self.config.start_timeout)
                .progress_deadline
                .as_secs(),
            reasons.join("; ")
        );
        let Some(back) = back else {
            tracing::warn!(
                unit = name,
                "rollout failed and no revision was ever fully available to roll back to"
            );
            self.no_rollback.insert(name.to_string(), s.revision);
            return Ok(());
        };
        let key = self.keys.unit(name);
        let Ok(unit) = spec::from_json(
            &back.unit.to_string(),
            &self.keys.history_revision(name, back.revision),
        ) else {
            tracing::warn!(
                unit = name,
                revision = back.revision,
                "history record does not parse; not rolling back"
            );
            self.no_rollback.insert(name.to_string(), s.revision);
            return Ok(());
        };
        // The fence outside, the unit's revision inside: a refused fence
        // is leadership lost, a changed unit is a newer spec that wins.
        let put = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                s.revision,
            )])
            .and_then([TxnOp::put(key, unit.to_json(), None)]);
        let txn = Txn::new()
            .when([self.fence.compare()])
            .and_then([TxnOp::txn(put)]);
        let mut kv = self.client.kv_client();
        let resp = self.etcd.timed(kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(ApplyError::Fenced.into());
        }
        let written = resp.op_responses().into_iter().any(|r| match r {
            TxnOpResponse::Txn(t) => t.succeeded(),
            _ => false,
        });
        if !written {
            return Ok(());
        }
        let spec_revision = resp.header().map_or(0, |h| h.revision());
        tracing::warn!(
            unit = name,
            from = current,
            to = back.revision,
            reason = %why,
            "rollout failed; rolled back to the last fully available revision"
        );
        self.rollbacks.insert(
            name.to_string(),
            RolledBack {
                from_revision: current,
                to_revision: back.revision,
                failed_spec_revision: s.revision,
                spec_revision,
                reason: why,
            },
        );
        Ok(())
    }

    /// Waits until the jobs cache shows what was just written, so the next
    /// decision never repeats (or contradicts) this one.
    async fn await_own_writes(
        &self,
        destroyed: &[FleetName],
        created: &[FleetUnit],
    ) -> Result<(), ReconcileError> {
        let gone: Vec<String> = destroyed
            .iter()
            .map(|n| self.fleet.object_of(&n.to_name()))
            .collect();
        let names: Vec<String> = created.iter().map(|u| u.name.to_name()).collect();
        let seen = self
            .jobs
            .wait_until(READ_YOUR_WRITES, |c| {
                gone.iter().all(|k| c.get(k).is_none())
                    && names.iter().all(|n| {
                        c.get(&self.fleet.object_of(n)).is_some()
                            && crate::units::jobs::launched(c, &self.fleet, n)
                    })
            })
            .await;
        if seen {
            Ok(())
        } else {
            Err(ReconcileError::Unconfirmed(READ_YOUR_WRITES))
        }
    }
}

/// What the stored status says of a revision a new leader meets: whether it
/// completed, and whether its rollout had already failed (so it stays
/// failed rather than getting a fresh deadline).
fn seed(previous: Option<&UnitStatus>, spec_hash: &str, desired: u32) -> Progress {
    match previous {
        Some(p) if p.spec_hash == spec_hash && p.desired == desired => Progress {
            since: if p.condition == Some(Condition::Failed) {
                LONG_AGO
            } else {
                Duration::ZERO
            },
            complete: p.complete,
        },
        _ => Progress::default(),
    }
}
