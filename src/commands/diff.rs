//! `diff`: what `run` would change, read from etcd and fleet's registry,
//! writing nothing — the spec fields that change, and which fleet units
//! the rollout would create, destroy or keep.

use super::units::{client_error, connect};
use super::{Exit, Result, load_unit};
use crate::cli::{EtcdArgs, FleetArgs};
use kaylee_controllers::client::{ClientError, fleet_units};
use kaylee_controllers::cluster_config;
use kaylee_controllers::fleet::{RenderOptions, render};
use kaylee_controllers::keys::FleetKeys;
use kaylee_controllers::registry::{AnyRegistry, DEFAULT_MAX_TXN_OPS};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub async fn run(
    etcd: &EtcdArgs,
    files: &[PathBuf],
    fleet: &FleetArgs,
    network_unit: &str,
) -> Result {
    let mut units = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match load_unit(f) {
            Ok(u) => units.push(u),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(Exit::bad_input(errors.join("\n")));
    }
    let flags = RenderOptions {
        unit_prefix: fleet.unit_prefix.clone(),
        network_unit: network_unit.to_string(),
    };
    flags.validate().map_err(Exit::bad_input)?;
    let client = connect(etcd).await?;
    // What the servers render with: the cluster's settings, when it has any.
    let options = cluster_config::read(client.etcd_client(), &etcd.config())
        .await
        .map_err(Exit::runtime)?
        .unwrap_or(flags);
    let registry = AnyRegistry::connect(
        fleet.api(),
        client.etcd_client().clone(),
        &etcd.config(),
        FleetKeys::new(&fleet.fleet_prefix, &options.unit_prefix),
        DEFAULT_MAX_TXN_OPS,
    )
    .await
    .map_err(Exit::runtime)?;
    for unit in &units {
        let stored = match client.get(&unit.name).await {
            Ok(view) => Some(view),
            Err(ClientError::NotFound(_)) => None,
            Err(e) => return Err(client_error(e)),
        };
        let before = match stored.as_ref().map(|v| &v.spec) {
            Some(Ok(u)) => serde_json::to_value(u).unwrap_or_default(),
            _ => Value::Null,
        };
        let after = serde_json::to_value(unit).unwrap_or_default();
        match &stored {
            None => crate::outln!("{}: new unit", unit.name)?,
            Some(v) if v.spec.is_err() => {
                crate::outln!("{}: replaces an invalid stored unit", unit.name)?
            }
            Some(_) if before == after => crate::outln!("{}: spec unchanged", unit.name)?,
            Some(_) => {
                crate::outln!("{}: spec changes", unit.name)?;
                for line in fields(&before, &after) {
                    crate::outln!("  {line}")?;
                }
            }
        }
        let marker = client
            .restart_marker(&unit.name)
            .await
            .map_err(client_error)?
            .unwrap_or_default();
        let rendered = render(unit, &marker, &options);
        let existing: BTreeSet<String> = fleet_units(&registry, &unit.name)
            .await
            .map_err(client_error)?
            .into_iter()
            .map(|u| u.name)
            .collect();
        let wanted: BTreeSet<String> = rendered.units.iter().map(|u| u.name.to_name()).collect();
        crate::outln!("{}: fleet units", unit.name)?;
        for name in wanted.difference(&existing) {
            crate::outln!("  + {name}  create")?;
        }
        for name in existing.difference(&wanted) {
            crate::outln!("  - {name}  destroy")?;
        }
        for name in wanted.intersection(&existing) {
            crate::outln!("  = {name}  keep")?;
        }
    }
    Ok(())
}

/// Every leaf that differs: `spec.image: "a" → "b"`.
fn fields(before: &Value, after: &Value) -> Vec<String> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", before, &mut a);
    flatten("", after, &mut b);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
            format!("{k}: {} → {}", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

fn flatten(path: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), v, out);
            }
        }
        Value::Null => {}
        leaf => {
            out.insert(path.to_string(), leaf.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fields;
    use serde_json::json;

    #[test]
    fn only_changed_leaves_are_listed() {
        let a = json!({"name": "web", "spec": {"image": "a", "replicas": 2, "env": [{"name": "X", "value": "1"}]}});
        let b = json!({"name": "web", "spec": {"image": "b", "replicas": 2, "env": [], "global": true}});
        assert_eq!(
            fields(&a, &b),
            [
                "spec.env[0].name: \"X\" → (unset)",
                "spec.env[0].value: \"1\" → (unset)",
                "spec.global: (unset) → true",
                "spec.image: \"a\" → \"b\"",
            ]
        );
    }
}
