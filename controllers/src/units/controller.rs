//! The units controller: informers → work queue → reconcile(name) → fenced
//! writes. One instance lives for one leadership term, with fresh caches, so
//! a new leader trusts nothing but what etcd says.

use super::cluster::Cluster;
use super::history::HistoryBook;
use super::status::RolledBack;
use super::timeline::Timeline;
use super::writes::{Statuses, WriteError, writer};
use crate::etcd::EtcdPrefix;
use crate::etcd::election::Fence;
use crate::etcd::{EtcdConfig, EtcdError};
use crate::fleet::RenderOptions;
use crate::keys::{FleetKeys, KayleeKeys};
use crate::registry::{ApplyError, FleetRegistry};
use crate::runtime::{Cache, WorkQueue, informer};
use dashmap::DashMap;
use etcd_client::Client;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod reconcile;

/// How the units controller works; one per server.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Unit prefix and network unit: what shapes the unit text.
    pub render: RenderOptions,
    /// The progress deadline of units that set none (`--start-timeout`,
    /// default 2 minutes): how long a rollout may go without a new replica
    /// becoming available before it stops as failed (Kubernetes'
    /// `progressDeadlineSeconds`). Zero fails every rollout that is not
    /// already complete on its first reconcile.
    pub start_timeout: Duration,
    /// How often every unit is queued for a reconcile without a change
    /// (`--resync-period`, default 60 s), as a bulk pass behind changes.
    /// Zero turns periodic passes off (as a Kubernetes informer's resync
    /// period of 0 does): units are then reconciled on changes, retries and
    /// the timers their decisions set only.
    pub resync_period: Duration,
    /// Units reconciled at once, each by its own worker task (`--workers`,
    /// default 32); 0 counts as 1.
    pub workers: usize,
    /// Operations per batch of the shared writer and per etcd v3
    /// transaction (`--max-txn-ops`, default 128, etcd's own default). It
    /// must not exceed the etcd cluster's `--max-txn-ops`; the server
    /// refuses values below 3, the operations of one create.
    pub max_txn_ops: usize,
    /// How long a fleet job may go without a `target` before it is
    /// reported as fitting no machine (`--schedule-grace`, default 10 s);
    /// zero reports it at once.
    pub schedule_grace: Duration,
    /// Spec revisions kept per unit in `<prefix>/history/` (at least 1).
    pub history_limit: u64,
}

/// Why a reconcile, or the controller, stopped short.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A write of the reconcile's own (a rollback's spec) failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The shared writer's batch that carried the reconcile's writes failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The writes were committed but did not reach the caches in time.
    #[error("fleet's registry did not show our writes within {0:?}")]
    Unconfirmed(Duration),
}

impl ReconcileError {
    /// Whether leadership is lost: the fence refused a write.
    pub fn is_fenced(&self) -> bool {
        match self {
            ReconcileError::Apply(ApplyError::Fenced) => true,
            ReconcileError::Write(e) => e.is_fenced(),
            _ => false,
        }
    }
}

/// The leader's units controller for one leadership term: informers over
/// Kaylee's keys and fleet's registry, a work queue of unit names, and
/// workers that reconcile each name and write through `R` under the
/// leader fence. Build it with [`UnitsController::new`], then
/// [`UnitsController::run`] it until the term ends.
pub struct UnitsController<R: FleetRegistry> {
    client: Client,
    etcd: EtcdConfig,
    keys: KayleeKeys,
    fleet: FleetKeys,
    registry: Arc<R>,
    config: ControllerConfig,
    fence: Fence,
    statuses: Statuses,
    history: HistoryBook,
    units: Arc<Cache>,
    restarts: Arc<Cache>,
    /// Job objects, targets, and target-states while not `launched`.
    jobs: Arc<Cache>,
    states: Arc<Cache>,
    /// fleet's `machines/`, by machine id.
    machines: Arc<Cache>,
    /// Kaylee's `instances/` and `health/`, by unit.
    instances: Arc<Cache>,
    health: Arc<Cache>,
    /// Kaylee's `registrators/`, by machine id.
    registrators: Arc<Cache>,
    /// The cluster built from `machines` and `registrators`, and the cache
    /// generations it was built at.
    cluster: Mutex<(u64, u64, Arc<Cluster>)>,
    queue: Arc<WorkQueue>,
    timeline: Timeline,
    /// Rollbacks this leader made, by unit, until the spec moves on.
    rollbacks: DashMap<String, RolledBack>,
    /// Units whose failed rollout found nothing to roll back to, with the
    /// spec revision that failed, so the history is read once.
    no_rollback: DashMap<String, i64>,
    /// The first full pass is queued: informer changes go to the queue.
    serving: Arc<AtomicBool>,
}

impl<R: FleetRegistry> UnitsController<R> {
    /// A controller writing through `registry` while `fence` (this term's
    /// leadership) holds, reading Kaylee's keys under `etcd.prefix` through
    /// `client`. Nothing is read until [`UnitsController::run`]. Must be
    /// called within a tokio runtime: it starts the shared writer task.
    pub fn new(
        client: Client,
        etcd: EtcdConfig,
        registry: R,
        config: ControllerConfig,
        fence: Fence,
    ) -> Arc<Self> {
        // Must run within a tokio runtime: it starts the write batchers.
        let keys = KayleeKeys::new(&etcd.prefix);
        let fleet = registry.keys().clone();
        let registry = Arc::new(registry);
        let batch = registry.batch_weight(config.max_txn_ops);
        let writes = writer(registry.clone(), fence.clone(), batch);
        let statuses = Statuses::new(&etcd, writes);
        let history = HistoryBook::new(keys.clone(), config.history_limit);
        let dir = |d: String| move |k: &str| KayleeKeys::name_in(&d, k).map(str::to_string);
        let by_unit = |d: String| {
            move |k: &str| KayleeKeys::parse_placement(&d, k).map(|(_, unit, _)| unit.to_string())
        };
        let fm = fleet.clone();
        let fk = fleet.clone();
        Arc::new(UnitsController {
            units: Cache::new(dir(keys.units())),
            restarts: Cache::new(dir(keys.restarts())),
            jobs: super::jobs::cache(&fleet),
            // Agents refresh states with a TTL: only a new value matters.
            states: Cache::values_only(move |k| fk.unit_of_key(k).map(str::to_string)),
            machines: Cache::values_only(move |k| fm.parse_machine(k).map(str::to_string)),
            instances: Cache::new(by_unit(keys.instances())),
            health: Cache::new(by_unit(keys.healths())),
            registrators: Cache::new(dir(keys.registrators())),
            cluster: Mutex::new((u64::MAX, u64::MAX, Arc::default())),
            client,
            etcd,
            keys,
            fleet,
            registry,
            config,
            fence,
            statuses,
            history,
            queue: WorkQueue::new(),
            timeline: Timeline::default(),
            rollbacks: DashMap::new(),
            no_rollback: DashMap::new(),
            serving: Arc::default(),
        })
    }

    /// The work queue of unit names the workers take from; adding a name
    /// has it reconciled.
    pub fn queue(&self) -> &Arc<WorkQueue> {
        &self.queue
    }

    fn caches(&self) -> [&Arc<Cache>; 8] {
        [
            &self.units,
            &self.restarts,
            &self.jobs,
            &self.states,
            &self.machines,
            &self.instances,
            &self.health,
            &self.registrators,
        ]
    }

    /// Whether every informer has listed once.
    pub fn synced(&self) -> bool {
        self.caches().iter().all(|c| c.is_synced())
    }

    /// Returns once every informer has listed once.
    pub async fn wait_synced(&self) {
        for cache in self.caches() {
            cache.wait_synced().await;
        }
    }

    /// The cluster as the caches hold it, rebuilt only when they changed.
    fn cluster(&self) -> Arc<Cluster> {
        let at = (self.machines.generation(), self.registrators.generation());
        let mut memo = match self.cluster.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if (memo.0, memo.1) != at {
            let built = super::observe::cluster(
                &self.fleet,
                &self.machines,
                &self.keys,
                &self.registrators,
            );
            *memo = (at.0, at.1, Arc::new(built));
        }
        memo.2.clone()
    }

    /// Runs until `stop` is cancelled or leadership is found lost (a fenced
    /// write was refused: an error whose [`ReconcileError::is_fenced`]
    /// holds), or loading the statuses and history a term starts from
    /// fails.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), ReconcileError> {
        let inner = stop.child_token();
        let fenced = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let kaylee =
            |prefix: String| EtcdPrefix::new(self.client.clone(), self.etcd.clone(), prefix);
        self.spawn_informer(
            &mut tasks,
            "units",
            kaylee(self.keys.units()),
            &self.units,
            &inner,
        );
        self.spawn_informer(
            &mut tasks,
            "restarts",
            kaylee(self.keys.restarts()),
            &self.restarts,
            &inner,
        );
        self.spawn_informer(
            &mut tasks,
            "jobs",
            self.registry.jobs_source(),
            &self.jobs,
            &inner,
        );
        self.spawn_informer(
            &mut tasks,
            "states",
            self.registry.states_source(),
            &self.states,
            &inner,
        );
        self.spawn_informer(
            &mut tasks,
            "machines",
            self.registry.source(self.fleet.machines()),
            &self.machines,
            &inner,
        );
        self.spawn_informer(
            &mut tasks,
            "instances",
            kaylee(self.keys.instances()),
            &self.instances,
            &inner,
        );
        self.spawn_informer(
            &mut tasks,
            "health",
            kaylee(self.keys.healths()),
            &self.health,
            &inner,
        );
        self.spawn_informer(
            &mut tasks,
            "registrators",
            kaylee(self.keys.registrators()),
            &self.registrators,
            &inner,
        );

        let result = tokio::select! {
            r = self.clone().serve(&mut tasks, &inner, &fenced) => r,
            _ = inner.cancelled() => Ok(()),
            _ = fenced.cancelled() => Err(ApplyError::Fenced.into()),
        };
        inner.cancel();
        self.queue.shut_down();
        tasks.shutdown().await;
        if fenced.is_cancelled() {
            return Err(ApplyError::Fenced.into());
        }
        result
    }

    fn spawn_informer<S: crate::runtime::Source>(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        name: &'static str,
        source: S,
        cache: &Arc<Cache>,
        stop: &CancellationToken,
    ) {
        let me = self.clone();
        // Machines and registrators are every unit's business.
        let cluster_wide = name == "machines" || name == "registrators";
        // Until the first pass is queued, changes are part of it anyway.
        let on_change = move |n: &str| {
            if !me.serving.load(Ordering::SeqCst) {
                return;
            }
            if cluster_wide {
                me.enqueue_all(false);
            } else {
                me.queue.add(n);
            }
        };
        tasks.spawn(informer::run(
            name,
            source,
            cache.clone(),
            on_change,
            stop.clone(),
        ));
    }

    /// Waits for the caches, then reconciles everything once, resyncs
    /// periodically, and works the queue.
    async fn serve(
        self: Arc<Self>,
        tasks: &mut JoinSet<()>,
        stop: &CancellationToken,
        fenced: &CancellationToken,
    ) -> Result<(), ReconcileError> {
        self.wait_synced().await;
        self.statuses.load(&self.client, &self.etcd).await?;
        let prune = self.history.load(&self.client, &self.etcd).await?;
        if !prune.is_empty() {
            tracing::info!(
                revisions = prune.len(),
                "dropping history past --history-limit"
            );
            self.statuses.write(prune).await?;
        }
        for _ in 0..self.config.workers.max(1) {
            let me = self.clone();
            let fenced = fenced.clone();
            tasks.spawn(async move {
                while let Some(name) = me.queue.get().await {
                    me.work(&name, &fenced).await;
                    me.queue.done(&name);
                    // A reconcile with nothing to write never waits: without
                    // this, workers would hold both runtime threads through a
                    // whole pass over every unit, starving the informers and
                    // the writers (and so the one unit that did change).
                    tokio::task::yield_now().await;
                }
            });
        }
        self.serving.store(true, Ordering::SeqCst);
        self.enqueue_all(true);
        tracing::info!(
            units = self.units.names().len(),
            "caches synced; reconciling"
        );

        if !self.config.resync_period.is_zero() {
            let me = self.clone();
            let resync = stop.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(me.config.resync_period);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => me.enqueue_all(false),
                        _ = resync.cancelled() => return,
                    }
                }
            });
        }
        stop.cancelled().await;
        Ok(())
    }

    /// Every unit that exists, or still has fleet units, as a full pass. At
    /// the start of a term, units changed since the last leader reported on
    /// them go first.
    fn enqueue_all(&self, term_start: bool) {
        let names: BTreeSet<String> = self
            .units
            .names()
            .into_iter()
            .chain(self.jobs.names())
            .collect();
        for name in names {
            if term_start && self.is_unanswered(&name) {
                self.queue.add(&name);
            } else {
                self.queue.add_bulk(&name);
            }
        }
    }

    /// Whether the stored status does not answer the unit as it is (a new
    /// spec or restart, a deleted unit with fleet units left).
    fn is_unanswered(&self, name: &str) -> bool {
        let Some(unit) = self.units.get(&self.keys.unit(name)) else {
            return true;
        };
        let restart = self
            .restarts
            .get(&self.keys.restart(name))
            .map_or(0, |v| v.revision);
        self.statuses
            .get(name)
            .is_none_or(|s| s.spec_revision != unit.revision || s.restart_revision != restart)
    }

    async fn work(&self, name: &str, fenced: &CancellationToken) {
        let started = Instant::now();
        let result = self.reconcile(name).await;
        let elapsed = started.elapsed();
        metrics::histogram!("kaylee_reconcile_duration_seconds").record(elapsed.as_secs_f64());
        match result {
            Ok(requeue) => {
                metrics::counter!("kaylee_reconcile_total", "result" => "ok").increment(1);
                self.queue.forget(name);
                if let Some(after) = requeue {
                    self.queue.add_after(name, after);
                }
            }
            Err(e) if e.is_fenced() => {
                metrics::counter!("kaylee_reconcile_total", "result" => "fenced").increment(1);
                tracing::warn!(
                    unit = name,
                    "write refused by the leader fence; stepping down"
                );
                fenced.cancel();
            }
            Err(e) => {
                metrics::counter!("kaylee_reconcile_total", "result" => "error").increment(1);
                tracing::warn!(unit = name, error = %e, duration_ms = elapsed.as_millis() as u64, "reconcile failed; will retry");
                self.queue.add_rate_limited(name);
            }
        }
    }
}
