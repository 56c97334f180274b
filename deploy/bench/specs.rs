//! The bench's units: realistic specs like deploy/examples/countly.yaml (4
//! replicas, env, machine metadata), varied in name, image, env and
//! placement so that every fleet unit text, and so every `unit/<sha1>`
//! record, differs, as in a real cluster.

use anyhow::{Result, anyhow};
use kaylee_controllers::fleet::{RenderOptions, Rendered, render};
use serde_json::json;

pub const REPLICAS: u32 = 4;

const FAMILIES: &[&str] = &[
    "countly", "api", "web", "worker", "billing", "search", "auth", "mailer", "cache", "reports",
];
const IMAGES: &[&str] = &[
    "monder/countly-docker:latest",
    "registry.k.lan/api:1.14.2",
    "nginx:1.25-alpine",
    "registry.k.lan/worker@sha256:9b2f0c1de3a4",
    "registry.k.lan/billing:2024.03.1",
    "docker.elastic.co/elasticsearch/elasticsearch:7.17.9",
    "quay.io/keycloak/keycloak:21.1",
    "registry.k.lan/mailer:0.9.0-rc1",
    "redis:7.2",
    "registry.k.lan/reports:3.2.0",
];

pub struct BenchUnit {
    pub name: String,
    /// The JSON stored in `/kaylee/units/<name>`.
    pub json: String,
    /// What Kaylee renders from it (server defaults, no restart marker).
    pub rendered: Rendered,
    /// The unit as parsed.
    pub unit: kaylee_controllers::spec::Unit,
}

pub fn name(i: usize) -> String {
    format!("{}-{i:05}", FAMILIES[i % FAMILIES.len()])
}

/// Unit `i` at `version` (a latency or failover change bumps the version,
/// which changes an env value and so the spec hash).
pub fn unit(i: usize, version: u32) -> Result<BenchUnit> {
    sized(i, version, REPLICAS)
}

/// Unit `i` at `version` with `replicas` replicas.
pub fn sized(i: usize, version: u32, replicas: u32) -> Result<BenchUnit> {
    let family = i % FAMILIES.len();
    let name = name(i);
    let mut env = vec![
        json!({"name": "MONGO_URL", "value": format!(
            "mongodb://mongo-1.k.lan,mongo-2.k.lan,mongo-3.k.lan/{name}?replicaSet=main")}),
        json!({"name": "RELEASE", "value": format!("v{version}")}),
    ];
    if i.is_multiple_of(3) {
        env.push(json!({"name": "LOG_LEVEL", "value": "info"}));
    }
    if i % 4 == 1 {
        env.push(json!({"name": "PORT", "value": (8000 + i % 1000).to_string()}));
    }
    let mut spec = json!({
        "replicas": replicas,
        "image": IMAGES[family],
        "env": env,
        "machine": [if i.is_multiple_of(2) { "ssd=false" } else { "ssd=true" }],
    });
    if i % 5 != 4 {
        spec["maxReplicasPerHost"] = json!(2);
    }
    if family == 1 {
        spec["cmd"] = json!("--listen :8080 --workers 4");
    }
    let json = json!({"name": name, "spec": spec}).to_string();
    let key = format!("/kaylee/units/{name}");
    let parsed = kaylee_controllers::spec::from_stored(json.as_bytes(), &key, &name)
        .map_err(|e| anyhow!("bench unit {name} is invalid: {e}"))?;
    let rendered = render(&parsed, "", &RenderOptions::default());
    Ok(BenchUnit {
        name,
        json,
        rendered,
        unit: parsed,
    })
}

pub fn units(n: usize) -> Result<Vec<BenchUnit>> {
    (0..n).map(|i| unit(i, 1)).collect()
}

/// The fleet names a rendering asks for.
pub fn fleet_names(r: &Rendered) -> Vec<String> {
    r.units.iter().map(|u| u.name.to_name()).collect()
}
