//! `run`, `restart`, `rm`: the commands that change units.

use super::wait::{self, Target};
use super::{Exit, Result, cluster, invalid_files, load_unit, print_warnings};
use crate::cli::{EtcdArgs, WaitArgs};
use kaylee_controllers::client::{ClientError, KayleeClient, Removed};
use kaylee_controllers::cluster_config;
use kaylee_controllers::fleet::RenderOptions;
use std::collections::HashSet;
use std::path::PathBuf;

pub async fn connect(etcd: &EtcdArgs) -> Result<KayleeClient> {
    KayleeClient::connect(&etcd.config())
        .await
        .map_err(Exit::runtime)
}

pub fn client_error(e: ClientError) -> Exit {
    Exit::runtime(e)
}

pub async fn run(etcd: &EtcdArgs, files: &[PathBuf], follow: &WaitArgs) -> Result {
    // Everything is checked before anything is written.
    let mut units = Vec::new();
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    for f in files {
        match load_unit(f) {
            Ok(u) if !names.insert(u.name.clone()) => {
                errors.push(format!(
                    "{}: unit `{}` is defined twice",
                    f.display(),
                    u.name
                ));
            }
            Ok(u) => {
                print_warnings(f, &u);
                units.push(u);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        // As `validate` prints them: each error as it is, then one line
        // from kaylee saying what it did (nothing).
        for e in &errors {
            crate::output::eprint_line(e);
        }
        return Err(Exit::bad_input(format!(
            "{}; nothing was written",
            invalid_files(errors.len(), files.len())
        )));
    }
    let client = connect(etcd).await?;
    network_note(&client, etcd).await;
    let mut targets = Vec::new();
    for unit in &units {
        let written = client.apply(unit).await.map_err(client_error)?;
        let word = serde_json::to_value(written.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        crate::outln!("{}: {word}", unit.name)?;
        targets.push(Target {
            name: unit.name.clone(),
            spec_revision: written.revision,
            restart_revision: 0,
        });
    }
    if follow.wait {
        wait::follow(&client, &targets, follow.timeout).await?;
    }
    Ok(())
}

pub async fn restart(etcd: &EtcdArgs, name: &str, follow: &WaitArgs) -> Result {
    let client = connect(etcd).await?;
    let written = client.restart(name).await.map_err(client_error)?;
    crate::outln!("{name}: restarting (marker {})", written.outcome)?;
    if follow.wait {
        let target = Target {
            name: name.to_string(),
            spec_revision: 0,
            restart_revision: written.revision,
        };
        wait::follow(&client, &[target], follow.timeout).await?;
    }
    Ok(())
}

pub async fn rm(etcd: &EtcdArgs, name: &str, purge: bool) -> Result {
    let client = connect(etcd).await?;
    let removed = client.remove(name, purge).await.map_err(client_error)?;
    if removed == Removed::HistoryOnly {
        crate::outln!("{name}: was already removed; its history is deleted")?;
    } else if purge {
        crate::outln!("{name}: removed, with its history")?;
    } else {
        crate::outln!("{name}: removed (its history is kept: `kaylee history {name}`)")?;
    }
    Ok(())
}

/// The note about the network unit (`cluster::network_note`) for the
/// cluster's settings, or the default a first server would seed. A
/// deployer's role may not read the settings: then nothing is said.
async fn network_note(client: &KayleeClient, etcd: &EtcdArgs) {
    let config = etcd.config();
    let options = match cluster_config::read(client.etcd_client(), &config).await {
        Ok(Some(options)) => options,
        Ok(None) => RenderOptions::default(),
        Err(_) => return,
    };
    cluster::network_note(&options, client, &config).await;
}
