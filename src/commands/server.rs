use super::{Exit, Result};
use crate::cli::{EtcdArgs, ServerArgs};
use crate::{exporter, http};
use kaylee_controllers::cluster_config::{self, Source};
use kaylee_controllers::fleet::RenderOptions;
use kaylee_controllers::server::{Server, ServerConfig};
use kaylee_controllers::units::ControllerConfig;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn config(etcd: &EtcdArgs, args: &ServerArgs) -> Result<ServerConfig> {
    let render = RenderOptions {
        unit_prefix: args.fleet.unit_prefix.clone(),
        network_unit: args.network_unit.clone(),
    };
    render.validate().map_err(Exit::bad_input)?;
    if args.lease_ttl.as_secs() < 1 {
        return Err(Exit::bad_input("--lease-ttl must be at least 1s"));
    }
    if args.max_txn_ops < 3 {
        return Err(Exit::bad_input(
            "--max-txn-ops must be at least 3 (one unit is 3 writes)",
        ));
    }
    let identity = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}/{}", host.trim(), std::process::id())
    });
    Ok(ServerConfig {
        etcd: etcd.config(),
        fleet_prefix: args.fleet.fleet_prefix.clone(),
        fleet_api: args.fleet.api(),
        lease_ttl: args.lease_ttl,
        controller: ControllerConfig {
            render,
            start_timeout: args.start_timeout,
            resync_period: args.resync_period,
            workers: args.workers,
            max_txn_ops: args.max_txn_ops,
            schedule_grace: args.schedule_grace,
            history_limit: args.history_limit,
        },
        identity,
    })
}

/// SIGTERM or SIGINT: stop leading and hand over at once; a second signal
/// exits without waiting.
fn on_signals(shutdown: CancellationToken) -> Result {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Exit::runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Exit::runtime)?;
    tokio::spawn(async move {
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if n > 0 {
                std::process::exit(130);
            }
            tracing::info!("shutting down");
            shutdown.cancel();
        }
    });
    Ok(())
}

/// How long open HTTP connections get to finish once the server stops.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// The cluster's render settings, seeded from this server's flags when the
/// cluster has none yet: every server renders the same unit text whatever
/// its flags, so a failover never replaces the cluster's units. Fails, as
/// the server would, when etcd cannot be reached at start-up, and when the
/// stored settings cannot be used.
async fn cluster_settings(config: &ServerConfig) -> Result<RenderOptions> {
    let client = config.etcd.connect().await.map_err(Exit::runtime)?;
    let flags = &config.controller.render;
    let effective = cluster_config::seed_or_read(&client, &config.etcd, flags)
        .await
        .map_err(Exit::runtime)?;
    let key = cluster_config::key(&config.etcd);
    let (prefix, network) = (
        &effective.options.unit_prefix,
        &effective.options.network_unit,
    );
    match effective.source {
        Source::Seeded => {
            tracing::info!(%key, unit_prefix = %prefix, network_unit = %network, "cluster settings written from this server's flags")
        }
        Source::Cluster if effective.overridden.is_empty() => {
            tracing::info!(%key, unit_prefix = %prefix, network_unit = %network, "cluster settings");
        }
        Source::Cluster => tracing::warn!(
            %key,
            unit_prefix = %prefix,
            network_unit = %network,
            differences = %effective.overridden.join("; "),
            "this server's flags differ from the cluster settings; using the cluster's"
        ),
    }
    Ok(effective.options)
}

pub async fn run(etcd: &EtcdArgs, args: &ServerArgs) -> Result {
    let mut config = config(etcd, args)?;
    config.controller.render = cluster_settings(&config).await?;
    let metrics =
        exporter::install().map_err(|e| Exit::runtime(format!("cannot set up metrics: {e}")))?;
    let listener = http::bind(args.listen)
        .await
        .map_err(|e| Exit::runtime(format!("cannot listen on {}: {e}", args.listen)))?;
    tracing::info!(listen = %args.listen, "serving /metrics, /healthz and /readyz");
    let shutdown = CancellationToken::new();
    on_signals(shutdown.clone())?;
    let mut server = Server::new(config.clone());
    // The cluster's unit prefix: which containers are Kaylee's.
    let prefix = &config.controller.render.unit_prefix;
    if let Some(on_session) = super::registration::start(args, &config.etcd, prefix)? {
        server.on_session(on_session);
    }
    let endpoints = tokio::spawn(http::serve(
        listener,
        metrics,
        server.state(),
        shutdown.clone(),
    ));
    let result = server.run(shutdown.clone()).await;
    shutdown.cancel();
    match tokio::time::timeout(HTTP_DRAIN, endpoints).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Ok(Ok(Ok(()))) | Err(_) => {}
    }
    result.map_err(Exit::runtime)
}
