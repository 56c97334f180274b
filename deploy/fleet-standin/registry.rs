//! Reading fleet's registry into one snapshot per round: the jobs (with
//! their unit files, fetched once per hash) and, for the engine, the live
//! machines.

use crate::problems::Problems;
use crate::records::{hex, unit_key};
use crate::store::{Store, StoreError};
use crate::systemd::{self, UnitFile};
use crate::xfleet::Requirements;
use kaylee_controllers::fleet::records::{UnitHash, parse_job_object};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A unit file, as stored under `unit/<hash>`.
#[derive(Debug)]
pub struct UnitInfo {
    pub hash_hex: String,
    pub file: UnitFile,
}

/// What a job's `target-state` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Inactive,
    /// Also a job without `target-state`: fleet schedules and loads it but
    /// does not start it.
    Loaded,
    Launched,
}

/// One job and what it needs.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub unit: Arc<UnitInfo>,
    pub req: Requirements,
    pub target_state: TargetState,
    /// The machine the engine scheduled it to.
    pub target: Option<String>,
}

/// A machine in `machines/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineEntry {
    pub metadata: BTreeMap<String, String>,
}

/// The registry at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub jobs: BTreeMap<String, Job>,
    /// Filled only when asked for (the engine's rounds).
    pub machines: BTreeMap<String, MachineEntry>,
}

/// Reads snapshots, keeping unit files by hash (a hash names one text).
pub struct Registry {
    store: Arc<Store>,
    problems: Arc<Problems>,
    units: HashMap<UnitHash, Arc<UnitInfo>>,
}

#[derive(Default)]
struct RawJob {
    object: Option<String>,
    target_state: Option<String>,
    target: Option<String>,
}

impl Registry {
    /// A reader of `store`.
    pub fn new(store: Arc<Store>, problems: Arc<Problems>) -> Registry {
        Registry {
            store,
            problems,
            units: HashMap::new(),
        }
    }

    /// The jobs, and the machines when `machines` is set.
    pub async fn read(&mut self, machines: bool) -> Result<Snapshot, StoreError> {
        let mut raw: BTreeMap<String, RawJob> = BTreeMap::new();
        for (key, value) in self.store.list("job/").await? {
            let Some((name, field)) = key
                .strip_prefix("job/")
                .and_then(|rest| rest.rsplit_once('/'))
            else {
                continue;
            };
            if name.contains('/') {
                continue;
            }
            let job = raw.entry(name.to_string()).or_default();
            match field {
                "object" => job.object = Some(value),
                "target-state" => job.target_state = Some(value),
                "target" => job.target = Some(value),
                _ => {}
            }
        }
        let mut snapshot = Snapshot::default();
        let mut used = HashMap::new();
        for (name, job) in raw {
            // fleet skips a directory without an object (a stray target).
            let Some(object) = job.object else { continue };
            let Some((_, hash)) = parse_job_object(object.as_bytes()) else {
                self.problems.report(
                    &format!("job {name}"),
                    format!("job/{name}/object is not a fleet job object: {object}"),
                );
                continue;
            };
            let target_state = match job.target_state.as_deref() {
                Some("inactive") => TargetState::Inactive,
                Some("loaded") | None => TargetState::Loaded,
                Some("launched") => TargetState::Launched,
                Some(other) => {
                    self.problems.report(
                        &format!("job {name}"),
                        format!("job/{name}/target-state {other:?} is not a fleet job state"),
                    );
                    continue;
                }
            };
            let Some(unit) = self.unit(&hash).await? else {
                continue;
            };
            self.problems.resolved(&format!("job {name}"));
            used.insert(hash, unit.clone());
            let req = Requirements::of(&name, &unit.file);
            snapshot.jobs.insert(
                name.clone(),
                Job {
                    name,
                    unit,
                    req,
                    target_state,
                    target: job.target.filter(|t| !t.is_empty()),
                },
            );
        }
        self.units = used;
        if machines {
            snapshot.machines = self.machines().await?;
        }
        Ok(snapshot)
    }

    /// The unit file of `hash`, from the cache or `unit/<hash>`; `None`
    /// (reported once) when the registry has no such unit.
    async fn unit(&mut self, hash: &UnitHash) -> Result<Option<Arc<UnitInfo>>, StoreError> {
        if let Some(u) = self.units.get(hash) {
            return Ok(Some(u.clone()));
        }
        let hash_hex = hex(hash);
        let kind = format!("unit {hash_hex}");
        let Some(value) = self.store.get(&unit_key(&hash_hex)).await? else {
            self.problems
                .report(&kind, format!("no unit/{hash_hex} in the registry"));
            return Ok(None);
        };
        let raw = serde_json::from_str::<serde_json::Value>(&value)
            .ok()
            .and_then(|v| v.get("Raw")?.as_str().map(str::to_string));
        let Some(text) = raw else {
            self.problems
                .report(&kind, format!("unit/{hash_hex} is not {{\"Raw\":…}}"));
            return Ok(None);
        };
        self.problems.resolved(&kind);
        let unit = Arc::new(UnitInfo {
            hash_hex,
            file: systemd::parse(&text),
        });
        self.units.insert(*hash, unit.clone());
        Ok(Some(unit))
    }

    /// The live machines with their metadata (the object's, merged with
    /// fleet's dynamic `machines/<id>/metadata/<key>`: an empty value
    /// removes a key).
    async fn machines(&self) -> Result<BTreeMap<String, MachineEntry>, StoreError> {
        let mut objects: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut dynamic: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (key, value) in self.store.list("machines/").await? {
            let Some(rest) = key.strip_prefix("machines/") else {
                continue;
            };
            let Some((id, field)) = rest.split_once('/') else {
                continue;
            };
            if field == "object" {
                #[derive(serde::Deserialize)]
                struct Object {
                    #[serde(rename = "ID", default)]
                    id: String,
                    #[serde(rename = "Metadata", default)]
                    metadata: Option<BTreeMap<String, String>>,
                }
                match serde_json::from_str::<Object>(&value) {
                    // fleet ignores a machine whose object has no ID.
                    Ok(o) if !o.id.is_empty() => {
                        objects.insert(o.id, o.metadata.unwrap_or_default());
                    }
                    _ => self.problems.notice(
                        &format!("machine {id}"),
                        format!("ignoring machines/{id}/object: not a fleet machine state"),
                    ),
                }
            } else if let Some(k) = field.strip_prefix("metadata/") {
                dynamic
                    .entry(id.to_string())
                    .or_default()
                    .insert(k.to_string(), value);
            }
        }
        Ok(objects
            .into_iter()
            .map(|(id, mut metadata)| {
                for (k, v) in dynamic.remove(&id).unwrap_or_default() {
                    if v.is_empty() {
                        metadata.remove(&k);
                    } else {
                        metadata.insert(k, v);
                    }
                }
                (id, MachineEntry { metadata })
            })
            .collect())
    }
}
