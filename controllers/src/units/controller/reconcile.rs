//! reconcile(name): plan one unit from the caches, write the plan and the
//! unit's status in one batch, and wait to read those writes back.

use super::{ReconcileError, UnitsController};
use crate::fleet::render;
use crate::registry::{ApplyError, FleetOp, FleetRegistry};
use crate::runtime::coalesce::WriteError;
use crate::spec;
use crate::units::observe::observe;
use crate::units::plan::{Desired, Phase, plan};
use crate::units::status::UnitStatus;
use std::time::{Duration, Instant};

/// How long a reconcile waits for its own writes to show in the caches.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

impl<R: FleetRegistry> UnitsController<R> {
    /// One level-triggered pass over one unit. Returns when to look again
    /// even without events (a rollout timer), if ever.
    pub async fn reconcile(&self, name: &str) -> Result<Option<Duration>, ReconcileError> {
        let started = Instant::now();
        let key = self.keys.unit(name);
        let stored = self.units.get(&key);
        let parsed = stored
            .as_ref()
            .map(|v| spec::from_stored(&v.bytes, &key, name).map_err(|e| e.to_string()));
        let restart = self.restarts.get(&self.keys.restart(name));
        let marker = restart
            .as_ref()
            .map(|v| String::from_utf8_lossy(&v.bytes).into_owned())
            .unwrap_or_default();
        let restart_revision = restart.as_ref().map(|v| v.revision).unwrap_or(0);
        let rendered = match &parsed {
            Some(Ok(unit)) => Some((unit, render(unit, &marker, &self.config.render))),
            _ => None,
        };
        let desired = match (&parsed, &rendered) {
            (None, _) => Desired::Absent,
            (Some(Err(_)), _) | (_, None) => Desired::Invalid,
            (Some(Ok(_)), Some((unit, r))) => Desired::Present {
                rendered: r,
                startup_delay: Duration::from_secs(u64::from(unit.spec.startup_delay.unwrap_or(0))),
            },
        };
        let observed = observe(name, &self.fleet, &self.jobs, &self.states, &self.timeline);
        let plan = plan(desired, &observed, self.config.start_timeout);

        // The status goes with the fleet writes (right after them, nearly
        // always in the same transaction) and reports fleet as they leave
        // it, so the reconcile their events trigger finds nothing new to
        // write.
        let (observed, after) = if plan.is_empty() {
            (observed, None)
        } else {
            let observed = plan.applied_to(&observed);
            let after = crate::units::plan::plan(desired, &observed, self.config.start_timeout);
            (observed, Some(after))
        };
        let now = after.as_ref().unwrap_or(&plan);

        let revision = stored.as_ref().map(|v| v.revision).unwrap_or(0);
        let status = match (&parsed, &rendered) {
            (Some(Err(error)), _) => Some(UnitStatus {
                error: Some(error.clone()),
                ..UnitStatus::new("", revision, 0, &observed, now)
            }),
            (Some(Ok(_)), Some((unit, r))) => Some(UnitStatus::new(
                &r.spec_hash,
                revision,
                unit.desired_replicas(),
                &observed,
                now,
            )),
            _ => None,
        };
        let status = status.map(|s| UnitStatus {
            restart_revision,
            ..s
        });
        if now.phase == Phase::Deleted {
            self.timeline.forget(name);
        }
        let ops: Vec<FleetOp> = plan
            .destroy
            .iter()
            .map(|n| FleetOp::Destroy { name: n.clone() })
            .chain(
                plan.create
                    .iter()
                    .map(|u| FleetOp::create(&u.name.to_name(), &u.text)),
            )
            .collect();
        self.statuses
            .publish(name, status, ops)
            .await
            .map_err(apply_error)?;
        if !plan.is_empty() {
            // The next reconcile of this unit must see these writes.
            self.await_own_writes(&plan.destroy, &plan.create).await?;
            tracing::info!(
                unit = name,
                phase = ?plan.phase,
                created = plan.create.len(),
                destroyed = plan.destroy.len(),
                duration_ms = started.elapsed().as_millis() as u64,
                "reconciled"
            );
        } else {
            tracing::debug!(unit = name, phase = ?plan.phase, "nothing to do");
        }
        Ok(now.requeue_after)
    }

    /// Waits until the jobs cache shows what was just written, so the next
    /// plan never repeats (or contradicts) this one.
    async fn await_own_writes(
        &self,
        destroyed: &[String],
        created: &[crate::fleet::FleetUnit],
    ) -> Result<(), ReconcileError> {
        let object = |n: &str| format!("{}object", self.fleet.job(n));
        let gone: Vec<String> = destroyed.iter().map(|n| object(n)).collect();
        let there: Vec<String> = created.iter().map(|u| object(&u.name.to_name())).collect();
        // The jobs cache holds a target-state only while it is not
        // `launched`: a relaunched job's must be gone from it.
        let stopped: Vec<String> = created
            .iter()
            .map(|u| format!("{}target-state", self.fleet.job(&u.name.to_name())))
            .collect();
        let seen = self
            .jobs
            .wait_until(READ_YOUR_WRITES, |c| {
                gone.iter().all(|k| c.get(k).is_none())
                    && there.iter().all(|k| c.get(k).is_some())
                    && stopped.iter().all(|k| c.get(k).is_none())
            })
            .await;
        if seen {
            Ok(())
        } else {
            Err(ReconcileError::Unconfirmed(READ_YOUR_WRITES))
        }
    }
}

fn apply_error(e: WriteError) -> ReconcileError {
    match e {
        WriteError::Fenced => ApplyError::Fenced.into(),
        WriteError::Failed(why) => ApplyError::Failed(why).into(),
    }
}
