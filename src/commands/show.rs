//! `ls` and `status`: read-only views.

use super::units::{client_error, connect};
use super::{Exit, Result};
use crate::cli::{EtcdArgs, FleetArgs, Output};
use crate::table::Table;
use kaylee_controllers::client::{UnitView, fleet_units};
use kaylee_controllers::keys::FleetKeys;
use kaylee_controllers::registry::{AnyRegistry, DEFAULT_MAX_TXN_OPS};
use serde_json::{Value, json};

fn summary(v: &UnitView) -> Value {
    let status = v.status.as_ref();
    let (image, desired, error) = match &v.spec {
        Ok(u) => (Some(u.spec.image.clone()), Some(u.desired_replicas()), None),
        Err(e) => (None, None, Some(e.clone())),
    };
    json!({
        "name": v.name,
        "image": image,
        "desired": desired,
        "running": status.map(|s| s.running),
        "specHash": status.map(|s| s.spec_hash.clone()).filter(|h| !h.is_empty()),
        "phase": status.map(|s| s.phase.clone()),
        "error": error.or_else(|| status.and_then(|s| s.error.clone())),
    })
}

fn status_word(v: &Value) -> String {
    match (v["error"].as_str(), v["phase"].as_str()) {
        (Some(e), _) => format!("invalid: {}", e.lines().next().unwrap_or(e)),
        (None, Some(p)) => p.to_string(),
        (None, None) => "pending".to_string(),
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
    let mut t = Table::new(&["NAME", "REPLICAS", "IMAGE", "HASH", "STATUS"]);
    for u in &units {
        let replicas = format!(
            "{}/{}",
            u["running"].as_u64().unwrap_or(0),
            cell(&u["desired"])
        );
        t.row(vec![
            cell(&u["name"]),
            replicas,
            cell(&u["image"]),
            cell(&u["specHash"]),
            status_word(u),
        ]);
    }
    crate::output::print(&t.render())?;
    Ok(())
}

pub async fn status(etcd: &EtcdArgs, name: &str, fleet: &FleetArgs, output: Output) -> Result {
    let client = connect(etcd).await?;
    let view = client.get(name).await.map_err(client_error)?;
    let registry = AnyRegistry::connect(
        fleet.api(),
        client.etcd_client().clone(),
        &etcd.config(),
        FleetKeys::new(&fleet.fleet_prefix, &fleet.unit_prefix),
        DEFAULT_MAX_TXN_OPS,
    )
    .await
    .map_err(Exit::runtime)?;
    let units = fleet_units(&registry, name).await.map_err(client_error)?;
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
    crate::outln!("Name:       {}", name)?;
    crate::outln!("Image:      {}", cell(&s["image"]))?;
    crate::outln!(
        "Replicas:   {} running / {} desired",
        s["running"].as_u64().unwrap_or(0),
        cell(&s["desired"])
    )?;
    crate::outln!("Spec hash:  {}", cell(&s["specHash"]))?;
    crate::outln!("Status:     {}", status_word(&s))?;
    if let Some(w) = view.status.as_ref().and_then(|st| st.waiting_for.as_ref()) {
        crate::outln!("Waiting:    {w}")?;
    }
    crate::outln!()?;
    let mut t = Table::new(&["FLEET UNIT", "TARGET", "MACHINE", "STATE"]);
    for u in &units {
        if u.states.is_empty() {
            let machine = u.target.clone().unwrap_or_else(|| "-".into());
            t.row(vec![
                u.name.clone(),
                u.target_state.clone(),
                machine,
                "-".into(),
            ]);
        }
        for (machine, state) in &u.states {
            t.row(vec![
                u.name.clone(),
                u.target_state.clone(),
                machine.clone(),
                state.clone(),
            ]);
        }
    }
    crate::output::print(&t.render())?;
    if !instances.is_empty() {
        crate::outln!()?;
        let mut t = Table::new(&["MACHINE", "CONTAINER", "IP"]);
        for i in &instances {
            t.row(vec![i.machine.clone(), i.container.clone(), i.ip.clone()]);
        }
        crate::output::print(&t.render())?;
    }
    Ok(())
}
