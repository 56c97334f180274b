//! One unit's supervisor: a task that starts, watches, restarts and stops
//! the unit (for real, see `supervise.rs`, or simulated, see
//! `simulate.rs`) and reports its state. The agent drives it through two
//! signals: launched or not (target-state `launched`/`loaded`), and cancel
//! (stop for good: the job is gone, moved, or this process stops).

use crate::cli::Simulation;
use crate::problems::Problems;
use crate::registry::UnitInfo;
use crate::shared::{Owned, SharedSlot};
use crate::status::Status;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a supervisor needs to know.
#[derive(Clone)]
pub struct Context {
    pub name: String,
    pub unit: Arc<UnitInfo>,
    /// The units that exist on this host: `--host-units` and the fleet
    /// units this process runs.
    pub existing: Arc<BTreeSet<String>>,
    pub restart_sec: Option<Duration>,
    pub stop_timeout: Option<Duration>,
    pub offline_pull: bool,
    pub simulate: Option<Simulation>,
    /// For a global unit run for real: the host-wide lock directory.
    pub lock_dir: Option<PathBuf>,
    pub problems: Arc<Problems>,
}

/// The agent's handle on a supervisor.
pub struct Runner {
    launched: watch::Sender<bool>,
    status: watch::Receiver<Status>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Runner {
    /// Starts a supervisor; it starts the unit when `launched`.
    pub fn spawn(ctx: Context, launched: bool) -> Runner {
        let (launched_tx, launched_rx) = watch::channel(launched);
        let (status_tx, status_rx) = watch::channel(Status::Dead);
        let cancel = CancellationToken::new();
        let signals = Signals {
            launched: launched_rx,
            cancel: cancel.clone(),
        };
        let reporter = Reporter {
            tx: status_tx,
            name: ctx.name.clone(),
            hash: ctx.unit.hash_hex.clone(),
            owned: None,
        };
        let task = tokio::spawn(async move {
            match ctx.simulate.clone() {
                Some(sim) => crate::simulate::supervise(ctx, sim, signals, reporter).await,
                None => crate::supervise::supervise(ctx, signals, reporter).await,
            }
        });
        Runner {
            launched: launched_tx,
            status: status_rx,
            cancel,
            task,
        }
    }

    /// Starts (true) or stops (false) the unit, keeping the supervisor.
    pub fn set_launched(&self, launched: bool) {
        self.launched.send_if_modified(|l| {
            let changed = *l != launched;
            *l = launched;
            changed
        });
    }

    /// Whether the unit is meant to run.
    pub fn launched(&self) -> bool {
        *self.launched.borrow()
    }

    /// The unit's current state.
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// Stops the unit for good; the task ends once it is stopped.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether the supervisor has ended.
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// What a supervisor listens to.
pub struct Signals {
    launched: watch::Receiver<bool>,
    cancel: CancellationToken,
}

impl Signals {
    /// Waits until the unit is to run; false when cancelled instead.
    pub async fn until_launched(&mut self) -> bool {
        tokio::select! {
            // A cancelled supervisor that is still launched must end.
            biased;
            _ = self.cancel.cancelled() => false,
            r = self.launched.wait_for(|l| *l) => r.is_ok(),
        }
    }

    /// Waits until the unit is to stop (not launched, or cancelled).
    pub async fn stop_requested(&mut self) {
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = self.launched.wait_for(|l| !*l) => {}
        }
    }

    /// Sleeps `d`; false when a stop came first.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stop_requested() => false,
        }
    }
}

/// Publishes a supervisor's state: to the agent, to the log, and for a
/// global unit this process runs for the host, to the host's other
/// processes.
pub struct Reporter {
    tx: watch::Sender<Status>,
    name: String,
    hash: String,
    owned: Option<Owned>,
}

impl Reporter {
    /// Sets the state; a change is logged.
    pub fn set(&self, status: Status) {
        let changed = self.tx.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
        if changed {
            tracing::info!(unit = %self.name, "{}/{}", status.active(), status.sub());
            if let Some(owned) = &self.owned {
                owned.publish(&self.hash, status);
            }
        }
    }

    /// This process now runs the unit for the whole host.
    pub fn own(&mut self, owned: Owned) {
        owned.publish(&self.hash, *self.tx.borrow());
        self.owned = Some(owned);
    }

    /// Gives the host-wide run back (after saying the unit is stopped).
    pub fn disown(&mut self) {
        if let Some(owned) = self.owned.take() {
            owned.publish(&self.hash, Status::Dead);
        }
    }

    /// The unit's hash, in hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// Whether a `Requires=`-like unit is missing from this host, in which
/// case systemd refuses the start (logged; nothing retries it until the
/// unit is started again).
pub fn requirement_missing(ctx: &Context, requires: &[String]) -> bool {
    match requires.iter().find(|r| !ctx.existing.contains(r.as_str())) {
        Some(missing) => {
            tracing::warn!(
                unit = %ctx.name,
                "requires {missing}, which does not exist on this host (--host-units): not started"
            );
            true
        }
        None => false,
    }
}

/// A global unit run for real waits here until this process may run it for
/// the host; meanwhile it reports the state of the process that does.
/// False when a stop came first.
pub async fn take_host_run(ctx: &Context, signals: &mut Signals, reporter: &mut Reporter) -> bool {
    let Some(dir) = &ctx.lock_dir else {
        return true;
    };
    let slot = SharedSlot::new(dir, &ctx.name);
    let kind = format!("lock {}", ctx.name);
    loop {
        match slot.try_own() {
            Ok(Some(owned)) => {
                ctx.problems.resolved(&kind);
                reporter.own(owned);
                return true;
            }
            Ok(None) => {}
            Err(e) => {
                // Without the lock this process runs it alone, as if no
                // other process on the host needed it.
                ctx.problems
                    .report(&kind, format!("{e}; running {} unshared", ctx.name));
                return true;
            }
        }
        let status = slot
            .owner_status()
            .filter(|(hash, _)| hash == reporter.hash())
            .map_or(Status::Start, |(_, s)| s);
        reporter.set(status);
        if !signals.sleep(Duration::from_millis(250)).await {
            return false;
        }
    }
}
