//! `ls` and `status`: read-only views that answer "is my service up, and
//! if not, why?".

use super::units::{client_error, connect};
use super::{Exit, Result};
use crate::cli::{EtcdArgs, FleetArgs, Output};
use crate::table::Table;
use kaylee_controllers::client::{FleetUnitView, Instance, UnitView, fleet_machines, fleet_units};
use kaylee_controllers::cluster_config;
use kaylee_controllers::fleet::container_name;
use kaylee_controllers::keys::FleetKeys;
use kaylee_controllers::registry::{AnyRegistry, DEFAULT_MAX_TXN_OPS};
use kaylee_controllers::units::UnitStatus;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

fn summary(v: &UnitView) -> Value {
    let status = v.status.as_ref();
    let (image, desired, error) = match &v.spec {
        Ok(u) => (Some(u.spec.image.clone()), Some(u.desired_replicas()), None),
        Err(e) => (None, None, Some(e.clone())),
    };
    json!({
        "name": v.name,
        "image": image,
        // A global unit's desired count is the leader's (matching machines).
        "desired": status.filter(|s| s.error.is_none()).map(|s| s.desired).or(desired),
        "available": status.map(|s| s.available),
        "running": status.map(|s| s.running),
        "condition": status.and_then(|s| s.condition).map(|c| c.to_string()),
        "phase": status.map(|s| s.phase.to_string()),
        "revision": status.map(|s| s.revision).filter(|r| *r > 0),
        "specHash": status.map(|s| s.spec_hash.clone()).filter(|h| !h.is_empty()),
        "reason": status.and_then(reason),
        "error": error.or_else(|| status.and_then(|s| s.error.clone())),
    })
}

/// The reason most unavailable replicas share, and how many others there
/// are: one line for `ls`. Replicas a rollout has not created yet only
/// follow from the others, so they come last.
fn reason(s: &UnitStatus) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &s.unavailable {
        *counts.entry(u.reason.as_str()).or_default() += 1;
    }
    let (top, n) = counts
        .iter()
        .max_by_key(|(reason, n)| (!reason.starts_with("not created"), **n))?;
    let others = s.unavailable.len() - n + s.more_unavailable as usize;
    Some(match others {
        0 => top.to_string(),
        _ => format!("{top} (+{others} more)"),
    })
}

fn condition_word(v: &Value) -> String {
    match (v["error"].as_str(), v["condition"].as_str()) {
        (Some(_), _) => "invalid".into(),
        (None, Some(c)) => c.to_string(),
        (None, None) => "pending".into(),
    }
}

fn reason_cell(v: &Value) -> String {
    match (
        v["error"].as_str(),
        v["reason"].as_str(),
        v["phase"].as_str(),
    ) {
        (Some(e), _, _) => e.lines().next().unwrap_or(e).to_string(),
        (None, Some(r), _) => r.to_string(),
        (None, None, None) => "no status yet: is a Kaylee server leading?".into(),
        (None, None, Some(_)) => "-".into(),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_json(v: &Value) -> Result {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(v).map_err(Exit::runtime)?
    )?;
    Ok(())
}

pub async fn ls(etcd: &EtcdArgs, output: Output) -> Result {
    let client = connect(etcd).await?;
    let units: Vec<Value> = client
        .list()
        .await
        .map_err(client_error)?
        .iter()
        .map(summary)
        .collect();
    if output == Output::Json {
        return print_json(&Value::Array(units));
    }
    let mut t = Table::new(&[
        "NAME",
        "AVAILABLE",
        "CONDITION",
        "PHASE",
        "IMAGE",
        "HASH",
        "REASON",
    ]);
    for u in &units {
        let available = format!("{}/{}", cell(&u["available"]), cell(&u["desired"]));
        t.row(vec![
            cell(&u["name"]),
            available,
            condition_word(u),
            cell(&u["phase"]),
            cell(&u["image"]),
            cell(&u["specHash"]),
            reason_cell(u),
        ]);
    }
    crate::output::print(&t.render())?;
    Ok(())
}

pub async fn status(etcd: &EtcdArgs, name: &str, fleet: &FleetArgs, output: Output) -> Result {
    let client = connect(etcd).await?;
    let view = client.get(name).await.map_err(client_error)?;
    // The cluster's unit prefix when it has settings, else the flag's.
    let prefix = cluster_config::read(client.etcd_client(), &etcd.config())
        .await
        .ok()
        .flatten()
        .map_or_else(|| fleet.unit_prefix.clone(), |o| o.unit_prefix);
    let registry = AnyRegistry::connect(
        fleet.api(),
        client.etcd_client().clone(),
        &etcd.config(),
        FleetKeys::new(&fleet.fleet_prefix, &prefix),
        DEFAULT_MAX_TXN_OPS,
    )
    .await
    .map_err(Exit::runtime)?;
    let units = fleet_units(&registry, name).await.map_err(client_error)?;
    let machines = fleet_machines(&registry).await.map_err(client_error)?;
    let instances = client.instances(name).await.map_err(client_error)?;
    let s = summary(&view);
    if output == Output::Json {
        return print_json(&json!({
            "unit": s,
            "status": view.status,
            "fleetUnits": units,
            "instances": instances,
        }));
    }
    crate::outln!("Name:        {name}")?;
    crate::outln!("Image:       {}", cell(&s["image"]))?;
    let revision = match s["revision"].as_u64() {
        Some(r) => format!("{r} (spec hash {})", cell(&s["specHash"])),
        None => format!("- (spec hash {})", cell(&s["specHash"])),
    };
    crate::outln!("Revision:    {revision}")?;
    crate::outln!(
        "Available:   {}/{} ({}; phase {})",
        cell(&s["available"]),
        cell(&s["desired"]),
        condition_word(&s),
        cell(&s["phase"])
    )?;
    crate::outln!("Running:     {}", cell(&s["running"]))?;
    if let Some(e) = s["error"].as_str() {
        crate::outln!("Error:       {e}")?;
    }
    if let Some(status) = &view.status {
        if let Some(r) = &status.rolled_back {
            crate::outln!(
                "Rolled back: revision {} failed; revision {} was put back: {}",
                r.from_revision,
                r.to_revision,
                r.reason
            )?;
        }
        if let Some(w) = &status.waiting_for {
            crate::outln!("Waiting for: {w}")?;
        }
    }
    crate::outln!()?;
    let table = replicas(&units, &machines, &instances, view.status.as_ref());
    crate::output::print(&table.render())?;
    if !instances.is_empty() {
        crate::outln!()?;
        let mut t = Table::new(&["MACHINE", "CONTAINER", "IP", "HEALTH"]);
        for i in &instances {
            t.row(vec![
                i.machine.clone(),
                i.container.clone(),
                i.ip.clone(),
                match i.health.as_deref() {
                    Some("none") | None => "-".into(),
                    Some(h) => h.to_string(),
                },
            ]);
        }
        crate::output::print(&t.render())?;
    }
    Ok(())
}

/// One line per replica: each fleet unit on each machine that reports it
/// (or where fleet scheduled it), with the leader's reason when it does
/// not serve.
fn replicas(
    units: &[FleetUnitView],
    machines: &BTreeSet<String>,
    instances: &[Instance],
    status: Option<&UnitStatus>,
) -> Table {
    let mut t = Table::new(&["FLEET UNIT", "MACHINE", "STATE", "HEALTH", "REASON"]);
    let registered: BTreeMap<(&str, &str), &Instance> = instances
        .iter()
        .map(|i| ((i.machine.as_str(), i.container.as_str()), i))
        .collect();
    let unavailable = status.map(|s| s.unavailable.as_slice()).unwrap_or_default();
    let complete_list = status.is_some_and(|s| s.more_unavailable == 0);
    let why = |unit: &str, machine: &str| -> String {
        if machine != "-" && !machines.contains(machine) {
            return format!("machine {machine} is gone (its state lingers until fleet's TTL)");
        }
        unavailable
            .iter()
            .find(|u| {
                u.unit == unit && (u.machine.is_empty() || u.machine == machine || machine == "-")
            })
            .map(|u| u.reason.clone())
            .unwrap_or_else(|| match (status.is_some(), complete_list) {
                (true, true) => "available".into(),
                _ => "-".into(),
            })
    };
    for u in units {
        let container = container_name(&u.name);
        let health = |machine: &str| match registered.get(&(machine, container.as_str())) {
            Some(i) => match i.health.as_deref() {
                Some("none") | None => "registered".into(),
                Some(h) => h.to_string(),
            },
            None => "-".into(),
        };
        let mut machines: Vec<(String, String)> = u
            .states
            .iter()
            .map(|(m, st)| (m.clone(), st.clone()))
            .collect();
        if let Some(target) = &u.target
            && !u.states.contains_key(target)
        {
            machines.push((target.clone(), "-".into()));
        }
        if machines.is_empty() {
            machines.push(("-".into(), "-".into()));
        }
        for (machine, state) in machines {
            t.row(vec![
                u.name.clone(),
                machine.clone(),
                state,
                health(&machine),
                why(&u.name, &machine),
            ]);
        }
    }
    // Replicas the rollout has not created yet.
    for u in unavailable {
        if !units.iter().any(|f| f.name == u.unit) {
            t.row(vec![
                u.unit.clone(),
                if u.machine.is_empty() {
                    "-".into()
                } else {
                    u.machine.clone()
                },
                "-".into(),
                "-".into(),
                u.reason.clone(),
            ]);
        }
    }
    t
}
