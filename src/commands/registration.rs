//! Wires the container registrator into the server: it runs on every
//! server, leader or not, with each new session's lease.

use super::{Exit, Result};
use crate::cli::{FleetArgs, ServerArgs};
use kaylee_controllers::etcd::EtcdConfig;
use kaylee_controllers::keys::FleetKeys;
use kaylee_controllers::registrator::{self, Registrator, RegistratorError};
use kaylee_controllers::registry::{AnyRegistry, DEFAULT_MAX_TXN_OPS, FleetRegistry};
use kaylee_controllers::server::OnSession;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Registers containers of fleet units under `unit_prefix` (the cluster's).
/// Resolves the machine id now (a missing one is a start-up error), and
/// connects to Docker in the background, retrying: a server whose engine
/// is down still leads and reconciles.
pub fn start(args: &ServerArgs, etcd: &EtcdConfig, unit_prefix: &str) -> Result<Option<OnSession>> {
    if args.no_registrator {
        return Ok(None);
    }
    let machine_id = registrator::machine_id(args.machine_id.as_deref()).map_err(Exit::runtime)?;
    let (ready, wait) = watch::channel::<Option<Arc<Registrator>>>(None);
    let host = args.docker_host.clone();
    let etcd = etcd.clone();
    let mut fleet = args.fleet.clone();
    fleet.unit_prefix = unit_prefix.to_string();
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            match connect(host.as_deref(), &etcd, &fleet, &machine_id).await {
                Ok(r) => {
                    tracing::info!(machine_id = %r.machine_id(), "registering this machine's containers");
                    let _ = ready.send(Some(Arc::new(r)));
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "container registration waits for Docker"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    });
    Ok(Some(Box::new(move |lease, done| {
        let mut wait = wait.clone();
        tokio::spawn(async move {
            let registrator = tokio::select! {
                r = wait.wait_for(Option::is_some) => match r {
                    Ok(r) => r.clone(),
                    Err(_) => return,
                },
                _ = done.cancelled() => return,
            };
            let Some(registrator) = registrator else {
                return;
            };
            if let Err(e) = registrator.run(lease, done).await {
                tracing::warn!(error = %e, "container registration stopped until the next session");
            }
        });
    })))
}

async fn connect(
    host: Option<&str>,
    etcd: &EtcdConfig,
    fleet: &FleetArgs,
    machine_id: &str,
) -> std::result::Result<Registrator, RegistratorError> {
    let docker = registrator::connect_docker(host).await?;
    let client = etcd.connect().await?;
    let keys = FleetKeys::new(&fleet.fleet_prefix, &fleet.unit_prefix);
    let object = format!("{}{machine_id}/object", keys.machines());
    let registry =
        AnyRegistry::connect(fleet.api(), client.clone(), etcd, keys, DEFAULT_MAX_TXN_OPS).await?;
    Ok(
        Registrator::new(docker, client, etcd.clone(), machine_id.to_string())?
            .with_unit_prefix(&fleet.unit_prefix)
            .with_machine_object(registry.source(object)),
    )
}
