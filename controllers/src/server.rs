//! `kaylee server`: keep a lease, campaign for leadership, run the units
//! controller while leading, step down the moment leadership is in doubt,
//! and on shutdown hand over at once.

use crate::etcd::election::{Election, ElectionError};
use crate::etcd::{EtcdConfig, EtcdError, Session};
use crate::keys::{FleetKeys, KayleeKeys};
use crate::registry::{AnyRegistry, FleetApi};
use crate::units::{ControllerConfig, UnitsController};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything `kaylee server` runs with, from its flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How to reach etcd; its `prefix` holds Kaylee's keys, among them the
    /// election's `<prefix>/leader/`.
    pub etcd: EtcdConfig,
    /// Where fleet's registry is in etcd (`--fleet-prefix`, default
    /// `/_coreos.com/fleet/`, fleet's own default); a `/` is appended when
    /// missing ([`FleetKeys::new`]).
    pub fleet_prefix: String,
    /// Which etcd API fleet's registry is read and written through.
    pub fleet_api: FleetApi,
    /// TTL of each session's lease (`--lease-ttl`, default 10 s): how long
    /// the leader key and this machine's registered instances outlive a
    /// server that dies without revoking them, so how long a failover may
    /// take. etcd lease TTLs are whole seconds: rounded down, at least 1 s
    /// (the CLI refuses less), and etcd may grant more ([`Session::start`]).
    /// Renewed every third of it.
    pub lease_ttl: Duration,
    /// What the units controller runs with while this server leads (render
    /// settings, timeouts, workers, batch size); see [`ControllerConfig`].
    pub controller: ControllerConfig,
    /// Stored in the leader key so operators can see who leads.
    pub identity: String,
}

/// What the server reports about itself (for `/readyz` and metrics).
#[derive(Debug, Default)]
pub struct ServerState {
    /// This server leads now (also the `kaylee_is_leader` gauge, 1 or 0).
    pub leader: AtomicBool,
    /// etcd is reachable: set once it answered at start-up and with each
    /// lease granted, cleared when a grant fails or an etcd error ends a
    /// term. `/readyz` fails while it is false.
    pub etcd_ok: AtomicBool,
    /// The controller's caches are synced (a standby counts as synced).
    pub synced: AtomicBool,
}

impl ServerState {
    fn set_leader(&self, leading: bool) {
        self.leader.store(leading, Ordering::SeqCst);
        metrics::gauge!("kaylee_is_leader").set(if leading { 1.0 } else { 0.0 });
    }
}

/// Called with each new session's lease, so per-session work (the
/// registrator) can hang its keys on it; the token ends with the session.
pub type OnSession = Box<dyn Fn(i64, CancellationToken) + Send + Sync>;

/// One `kaylee server`: campaigns on a lease, runs the units controller
/// while it leads, and calls [`OnSession`] for each new lease.
pub struct Server {
    config: ServerConfig,
    state: Arc<ServerState>,
    on_session: Option<OnSession>,
}

impl Server {
    /// A server that does nothing until [`Server::run`]; its state starts
    /// all false (not leading, etcd not yet reached, not synced).
    pub fn new(config: ServerConfig) -> Self {
        Server {
            config,
            state: Arc::new(ServerState::default()),
            on_session: None,
        }
    }

    /// The shared state the server updates as it runs, for the HTTP
    /// endpoints and metrics.
    pub fn state(&self) -> Arc<ServerState> {
        self.state.clone()
    }

    /// Sets the one callback called with each new session's lease (the
    /// registrator's start); a later call replaces it. Set it before
    /// [`Server::run`].
    pub fn on_session(&mut self, f: OnSession) {
        self.on_session = Some(f);
    }

    /// etcd, and fleet's registry through the configured API (a v2
    /// registry checks here that etcd serves v2 at all).
    async fn connect(&self) -> Result<(etcd_client::Client, AnyRegistry), EtcdError> {
        let client = self.config.etcd.connect().await?;
        let keys = FleetKeys::new(
            &self.config.fleet_prefix,
            &self.config.controller.render.unit_prefix,
        );
        let registry = AnyRegistry::connect(
            self.config.fleet_api,
            client.clone(),
            &self.config.etcd,
            keys,
            self.config.controller.max_txn_ops,
        )
        .await?;
        tracing::info!(api = %registry.api(), prefix = %self.config.fleet_prefix, "fleet registry");
        Ok((client, registry))
    }

    /// Runs until `shutdown` is cancelled. Fails only when etcd cannot be
    /// reached at start-up (or does not serve the chosen fleet API), so a
    /// misconfigured server says so and exits.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), EtcdError> {
        // A standby reports 0 from the start, not an absent series.
        self.state.set_leader(false);
        let (mut client, mut registry) = self.connect().await?;
        self.state.etcd_ok.store(true, Ordering::SeqCst);
        self.state.synced.store(true, Ordering::SeqCst);
        let keys = KayleeKeys::new(&self.config.etcd.prefix);
        let mut election = Election::new(client.clone(), self.config.etcd.clone(), keys.leader());
        let mut retry = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            let session =
                match Session::start(&self.config.etcd, &client, self.config.lease_ttl).await {
                    Ok(s) => s,
                    Err(e) => {
                        self.state.etcd_ok.store(false, Ordering::SeqCst);
                        tracing::warn!(error = %e, "cannot get a lease from etcd; retrying");
                        if sleep_or_stop(retry, &shutdown).await {
                            break;
                        }
                        retry = (retry * 2).min(Duration::from_secs(5));
                        // The endpoints in use may be the ones that died:
                        // probe them all again.
                        if let Ok((c, r)) = self.connect().await {
                            election =
                                Election::new(c.clone(), self.config.etcd.clone(), keys.leader());
                            client = c;
                            registry = r;
                        }
                        continue;
                    }
                };
            retry = Duration::from_millis(200);
            self.state.etcd_ok.store(true, Ordering::SeqCst);
            let session_done = session.lost().child_token();
            if let Some(f) = &self.on_session {
                f(session.lease_id(), session_done.clone());
            }
            let outcome = self
                .term(&client, &registry, &election, &session, &shutdown)
                .await;
            session_done.cancel();
            if let Err(e) = session.revoke().await {
                tracing::debug!(error = %e, "lease revoke failed; it will expire");
            }
            match outcome {
                Term::Shutdown => break,
                Term::Lost => tracing::warn!("leadership or lease lost; campaigning again"),
                Term::Failed(e) => {
                    self.state.etcd_ok.store(false, Ordering::SeqCst);
                    tracing::warn!(error = %e, "etcd error; starting a new session");
                    if sleep_or_stop(retry, &shutdown).await {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Campaigns, then leads until leadership ends or shutdown.
    async fn term(
        &self,
        client: &etcd_client::Client,
        registry: &AnyRegistry,
        election: &Election,
        session: &Session,
        shutdown: &CancellationToken,
    ) -> Term {
        let fence = match election
            .campaign(session, &self.config.identity, shutdown)
            .await
        {
            Ok(f) => f,
            Err(ElectionError::Stopped) => return Term::Shutdown,
            Err(ElectionError::SessionLost) => return Term::Lost,
            Err(ElectionError::Etcd(e)) => return Term::Failed(e.into()),
        };
        tracing::info!(key = %fence.key, "leading");
        metrics::counter!("kaylee_leader_changes_total").increment(1);
        self.state.set_leader(true);
        self.state.synced.store(false, Ordering::SeqCst);

        let ended = election.monitor(&fence, session);
        let controller_stop = CancellationToken::new();
        let controller = UnitsController::new(
            client.clone(),
            self.config.etcd.clone(),
            registry.clone(),
            self.config.controller.clone(),
            fence.clone(),
        );
        // Ready once every cache of this term has listed.
        tokio::spawn({
            let (state, caches, ended) = (self.state.clone(), controller.clone(), ended.clone());
            async move {
                tokio::select! {
                    _ = caches.wait_synced() => state.synced.store(true, Ordering::SeqCst),
                    _ = ended.cancelled() => {}
                }
            }
        });
        // The controller runs until leadership ends or the server stops.
        tokio::spawn({
            let (controller_stop, ended, shutdown) =
                (controller_stop.clone(), ended.clone(), shutdown.clone());
            async move {
                tokio::select! {
                    _ = ended.cancelled() => {}
                    _ = shutdown.cancelled() => {}
                }
                controller_stop.cancel();
            }
        });
        // Held until after the resign: dropping the caches of a large
        // registry takes long enough (~0.2 s at 10,000 units) to delay the
        // handover.
        let result = controller.clone().run(controller_stop).await;
        self.state.set_leader(false);
        self.state.synced.store(true, Ordering::SeqCst);
        ended.cancel();
        if shutdown.is_cancelled() {
            // Hand over now rather than after the lease TTL.
            if let Err(e) = election.resign(&fence).await {
                tracing::warn!(error = %e, "resign failed; the standby takes over when the lease expires");
            }
            tracing::info!("resigned leadership");
            drop(controller);
            return Term::Shutdown;
        }
        match result {
            Ok(()) => Term::Lost,
            Err(e) if e.is_fenced() => Term::Lost,
            Err(e) => Term::Failed(e.into()),
        }
    }
}

/// How a term ended.
enum Term {
    Shutdown,
    Lost,
    /// etcd failed; the session is renewed after a pause.
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.cancelled() => true,
    }
}
