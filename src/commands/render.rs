use super::{Exit, Result, cluster, load_unit, print_warnings};
use crate::cli::{EtcdArgs, Output, RenderArgs};
use crate::output::{eprint_line, print};
use kaylee_controllers::cluster_config;
use kaylee_controllers::fleet::records::create_records;
use kaylee_controllers::fleet::{RenderOptions, docker_run_argv, render};
use serde_json::json;
use std::path::Path;

/// The flags' settings, checked (they are not quoted in the unit text).
pub fn options(args: &RenderArgs) -> Result<RenderOptions> {
    let opts = RenderOptions {
        unit_prefix: args.unit_prefix.clone(),
        network_unit: args.network_unit.clone(),
    };
    opts.validate().map_err(Exit::bad_input)?;
    Ok(opts)
}

/// The settings to render with: the cluster's when etcd has them (what the
/// servers render with), else the flags; says which on stderr.
async fn settings(etcd: &EtcdArgs, flags: RenderOptions, offline: bool) -> Result<RenderOptions> {
    let config = cluster::quick(etcd);
    let key = cluster_config::key(&config);
    let (options, whose) = if offline {
        (flags, "the flags (--offline)".to_string())
    } else {
        match cluster::lookup(&config).await? {
            cluster::Lookup::Found(options, _) => {
                let ignored = cluster_config::differences(&flags, &options);
                let whose = if ignored.is_empty() {
                    format!("the cluster's settings ({key})")
                } else {
                    format!(
                        "the cluster's settings ({key}), not the flags' ({}; --offline to use them)",
                        ignored.join(", ")
                    )
                };
                (options, whose)
            }
            cluster::Lookup::Absent(_) => (
                flags,
                format!("the flags: the cluster has no settings yet ({key})"),
            ),
            cluster::Lookup::Unreachable(why) => (
                flags,
                format!("the flags: cannot read the cluster's settings ({why})"),
            ),
        }
    };
    eprint_line(&format!(
        "kaylee: rendering with {whose}: {}",
        cluster::describe(&options)
    ));
    Ok(options)
}

pub async fn run(
    etcd: &EtcdArgs,
    file: &Path,
    args: &RenderArgs,
    offline: bool,
    restart_marker: &str,
    output: Output,
) -> Result {
    let unit = load_unit(file).map_err(Exit::bad_input)?;
    print_warnings(file, &unit);
    let options = settings(etcd, options(args)?, offline).await?;
    let rendered = render(&unit, restart_marker, &options);
    match output {
        Output::Text => {
            for (i, u) in rendered.units.iter().enumerate() {
                if i > 0 {
                    print("\n")?;
                }
                print(&format!("# {}\n{}", u.name.to_name(), u.text))?;
            }
        }
        Output::Json => {
            let units: Vec<_> = rendered
                .units
                .iter()
                .map(|u| {
                    let name = u.name.to_name();
                    let records: Vec<_> = create_records(&name, &u.text)
                        .into_iter()
                        .map(|r| json!({"key": r.key, "value": r.value}))
                        .collect();
                    json!({
                        "name": name,
                        "unit": u.text,
                        "hash": hex(&u.hash),
                        "argv": docker_run_argv(&unit, &u.name),
                        "records": records,
                    })
                })
                .collect();
            let text = serde_json::to_string_pretty(&units).map_err(Exit::runtime)?;
            crate::outln!("{text}")?;
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
