//! Invariant a: once the chaos stops, fleet's registry holds exactly what
//! etcd's units and restart markers render to — names, unit hashes that
//! are the SHA-1 of the rendered text, the texts themselves — and nothing
//! of deleted units.

use super::units::{RESTARTS_DIR, UNITS_DIR, Want, want};
use crate::support::fleet::{FleetView, Snapshot};
use etcd_client::{Client, GetOptions};
use kaylee_controllers::fleet::FleetName;
use kaylee_controllers::fleet::records::parse_job_object;
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Every unit in etcd, rendered; `None` when etcd does not answer.
pub async fn desired(client: &Client) -> Option<BTreeMap<String, Want>> {
    let mut kv = client.kv_client();
    let timeout = Duration::from_secs(3);
    let units = tokio::time::timeout(
        timeout,
        kv.get(UNITS_DIR, Some(GetOptions::new().with_prefix())),
    )
    .await
    .ok()?
    .ok()?;
    let revision = units.header()?.revision();
    let at = GetOptions::new().with_prefix().with_revision(revision);
    let restarts = tokio::time::timeout(timeout, kv.get(RESTARTS_DIR, Some(at)))
        .await
        .ok()?
        .ok()?;
    let values = |resp: &etcd_client::GetResponse, dir: &str| -> BTreeMap<String, String> {
        resp.kvs()
            .iter()
            .filter_map(|k| {
                let name = k.key_str().ok()?.strip_prefix(dir)?.to_string();
                Some((name, String::from_utf8_lossy(k.value()).into_owned()))
            })
            .collect()
    };
    let markers = values(&restarts, RESTARTS_DIR);
    Some(
        values(&units, UNITS_DIR)
            .into_iter()
            .map(|(name, json)| {
                let w = want(Some(&json), markers.get(&name).map(String::as_str));
                (name, w)
            })
            .collect(),
    )
}

/// How fleet's jobs differ from `desired`; empty when they do not.
pub fn differences(snap: &Snapshot, desired: &BTreeMap<String, Want>) -> Vec<String> {
    let mut observed: BTreeMap<String, BTreeMap<&String, Option<[u8; 20]>>> = BTreeMap::new();
    for (name, job) in &snap.jobs {
        if let Some(f) = FleetName::parse(name, "k") {
            let hash = parse_job_object(job.object.as_bytes()).map(|(_, h)| h);
            observed.entry(f.unit).or_default().insert(name, hash);
        }
    }
    let units: BTreeSet<&String> = observed.keys().chain(desired.keys()).collect();
    let mut out = Vec::new();
    for unit in units {
        let want = desired.get(unit).map(|w| &w.units);
        let have = observed.get(unit);
        for (name, (hash, _)) in want.into_iter().flatten() {
            match have.and_then(|h| h.get(name)) {
                None => out.push(format!("{unit}: {name} missing")),
                Some(h) if *h != Some(*hash) => {
                    out.push(format!("{unit}: {name} has another unit hash"))
                }
                Some(_) if snap.jobs[name].target_state != "launched" => {
                    out.push(format!("{unit}: {name} not launched"))
                }
                Some(_) => {}
            }
        }
        for name in have.into_iter().flat_map(|h| h.keys()) {
            if want.is_none_or(|w| !w.contains_key(*name)) {
                out.push(format!("{unit}: {name} should not exist"));
            }
        }
    }
    out
}

/// Polls until fleet holds exactly what etcd asks for; the time it took,
/// or the differences still left at `limit`.
pub async fn wait_converged(
    fleet: &FleetView,
    client: &Client,
    limit: Duration,
) -> Result<Duration, Vec<String>> {
    let started = Instant::now();
    let mut last = vec!["etcd never answered".to_string()];
    while started.elapsed() < limit {
        if let (Some(d), Some(snap)) = (desired(client).await, fleet.try_live().await) {
            last = differences(&snap, &d);
            if last.is_empty() {
                return Ok(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// The unit texts behind the jobs: each desired unit's hash is the SHA-1 of
/// its rendered text (computed here, not by the library), and
/// `unit/<hash>` holds exactly that text for fleet's agents to read.
pub async fn check_texts(fleet: &FleetView, desired: &BTreeMap<String, Want>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, (hash, text)) in desired.values().flat_map(|w| &w.units) {
        let sha: [u8; 20] = Sha1::digest(text.as_bytes()).into();
        if sha != *hash {
            out.push(format!("{name}: unit hash is not the SHA-1 of its text"));
        }
        let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        let stored = fleet.try_get(&format!("unit/{hex}")).await;
        let raw = stored
            .flatten()
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .and_then(|v| v["Raw"].as_str().map(str::to_string));
        if raw.as_deref() != Some(text.as_str()) {
            out.push(format!("{name}: unit/{hex} does not hold its text"));
        }
    }
    out
}
