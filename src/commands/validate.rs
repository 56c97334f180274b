use super::{Exit, Result, cluster, invalid_files, load_unit, print_warnings};
use crate::cli::EtcdArgs;
use crate::output::eprint_line;
use kaylee_controllers::fleet::RenderOptions;
use std::path::PathBuf;

/// Checks every file, printing "ok" or every error of each; exit 2 if any
/// file is invalid. Warnings go to stderr and change nothing. Unless
/// `offline`, etcd is asked briefly whether the cluster's network unit can
/// run (a note on stderr when it cannot).
pub async fn run(etcd: &EtcdArgs, files: &[PathBuf], offline: bool) -> Result {
    let mut failed = 0;
    for f in files {
        match load_unit(f) {
            Ok(unit) => {
                crate::outln!("{}: ok", f.display())?;
                print_warnings(f, &unit);
            }
            Err(e) => {
                eprint_line(&e);
                failed += 1;
            }
        }
    }
    if failed < files.len() && !offline {
        let config = cluster::quick(etcd);
        match cluster::lookup(&config).await {
            Ok(cluster::Lookup::Found(options, client)) => {
                cluster::network_note(&options, &client, &config).await;
            }
            // The first server will seed its flags; most keep the default.
            Ok(cluster::Lookup::Absent(client)) => {
                cluster::network_note(&RenderOptions::default(), &client, &config).await;
            }
            // Offline is fine: the files are what validate checks.
            Ok(cluster::Lookup::Unreachable(_)) => {}
            Err(e) => eprint_line(&format!("kaylee: {}", e.message)),
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(Exit::bad_input(invalid_files(n, files.len()))),
    }
}
