//! The units under chaos: the test's record of what it asked for (the
//! model), what that renders to in fleet, and the stream of random changes
//! written straight into etcd as CI would.

use super::report::{Report, bump};
use super::rng::Rng;
use etcd_client::{Client, Txn, TxnOp};
use kaylee_controllers::fleet::{RenderOptions, UnitHash, render};
use kaylee_controllers::spec::{self, EnvVar, Layout, Spec, Unit};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const UNITS: usize = 24;
pub const UNITS_DIR: &str = "/kaylee/units/";
pub const RESTARTS_DIR: &str = "/kaylee/restarts/";
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

pub fn names() -> Vec<String> {
    (0..UNITS).map(|i| format!("u{i:02}")).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Replicated,
    Singleton,
    Global,
}

/// Every fourth unit is a singleton or global one: those update
/// destroy-first by design, and must converge all the same.
pub fn shape(name: &str) -> Shape {
    match name[1..].parse::<usize>().unwrap_or(0) % 8 {
        0 => Shape::Singleton,
        4 => Shape::Global,
        _ => Shape::Replicated,
    }
}

/// What a spec and restart marker render to.
#[derive(Debug, Clone, Default)]
pub struct Want {
    pub spec_hash: String,
    /// `Some(n)` only for replicated units.
    pub replicas: Option<usize>,
    /// Fleet unit name → unit hash and text.
    pub units: BTreeMap<String, (UnitHash, String)>,
}

/// Renders with the server's defaults (unit prefix `k`, network unit
/// `flanneld.service`); an absent unit wants nothing.
pub fn want(json: Option<&str>, marker: Option<&str>) -> Want {
    let Some(json) = json else {
        return Want::default();
    };
    let unit = spec::from_json(json, "chaos").expect("the chaos test writes valid units");
    let rendered = render(&unit, marker.unwrap_or(""), &RenderOptions::default());
    Want {
        replicas: matches!(unit.layout(), Layout::Replicated { .. })
            .then_some(unit.desired_replicas() as usize),
        spec_hash: rendered.spec_hash,
        units: rendered
            .units
            .into_iter()
            .map(|u| (u.name.to_name(), (u.hash, u.text)))
            .collect(),
    }
}

/// A rolling update watched by invariant d.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub seq: u64,
    pub replicas: usize,
    pub spec_hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct UnitModel {
    pub json: Option<String>,
    pub marker: Option<String>,
    /// Bumped when a change begins, before its write: a sample judges a
    /// unit only if its seq did not move across the sample's read.
    pub seq: u64,
    /// A write is on its way; etcd may hold the old value or the new one.
    pub in_flight: bool,
    /// A write failed and may or may not have landed: unknown until read
    /// back from etcd.
    pub uncertain: bool,
    /// A sample saw fleet hold exactly this seq's units, all running.
    pub settled: Option<u64>,
    pub rollout: Option<Rollout>,
    /// When this seq's write returned, until fleet holds exactly its units.
    pub pending_since: Option<Instant>,
}

impl UnitModel {
    /// Whether a sample may judge the unit against `json`/`marker`.
    pub fn judgeable(&self) -> bool {
        !self.in_flight && !self.uncertain
    }
}

pub type Model = Arc<Mutex<BTreeMap<String, UnitModel>>>;

enum Change {
    Create,
    Image,
    Restart,
    Scale(u32),
    Remove,
}

pub struct Changer {
    client: Client,
    model: Model,
    report: Arc<Report>,
    rng: Rng,
    names: Vec<String>,
    /// Every image is new, so no spec hash (and fleet name) comes back.
    version: u64,
}

impl Changer {
    pub fn new(client: Client, model: Model, report: Arc<Report>, rng: Rng) -> Changer {
        Changer {
            client,
            model,
            report,
            rng,
            names: names(),
            version: 0,
        }
    }

    /// Writes every unit before the servers start (a cold start).
    pub async fn create_all(&mut self) {
        for name in self.names.clone() {
            let json = self.initial(&name);
            let mut kv = self.client.kv_client();
            kv.put(format!("{UNITS_DIR}{name}"), json.clone(), None)
                .await
                .expect("writing the initial units");
            self.model.lock().unwrap().insert(
                name,
                UnitModel {
                    json: Some(json),
                    seq: 1,
                    pending_since: Some(Instant::now()),
                    ..UnitModel::default()
                },
            );
        }
    }

    /// One change every 100–500 ms until `stop`; then reads back every unit
    /// whose last write failed, so the model ends as etcd is.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.rng.millis(100, 500)) => {}
                _ = stop.cancelled() => break,
            }
            self.resync().await;
            self.change().await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.model.lock().unwrap().values().any(|u| u.uncertain) {
            assert!(Instant::now() < deadline, "etcd never answered again");
            self.resync().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn image(&mut self, name: &str) -> String {
        self.version += 1;
        format!("registry.local/{name}:v{}", self.version)
    }

    fn initial(&mut self, name: &str) -> String {
        let replicated = shape(name) == Shape::Replicated;
        let unit = Unit {
            name: name.to_string(),
            spec: Spec {
                replicas: replicated.then(|| self.rng.range(2, 4) as u32),
                max_replicas_per_host: (replicated && self.rng.percent(30)).then_some(2),
                image: self.image(name),
                env: vec![EnvVar {
                    name: "UNIT".into(),
                    value: name.into(),
                }],
                global: shape(name) == Shape::Global,
                ..Spec::default()
            },
        };
        unit.to_json()
    }

    fn pick(&mut self, name: &str, exists: bool) -> Change {
        if !exists {
            return Change::Create;
        }
        let roll = self.rng.below(100);
        match shape(name) {
            Shape::Replicated if roll < 30 => Change::Image,
            Shape::Replicated if roll < 50 => Change::Restart,
            Shape::Replicated if roll < 88 => Change::Scale(self.rng.range(1, 5) as u32),
            Shape::Replicated => Change::Remove,
            _ if roll < 45 => Change::Image,
            _ if roll < 85 => Change::Restart,
            _ => Change::Remove,
        }
    }

    async fn change(&mut self) {
        let name = self.names[self.rng.below(self.names.len() as u64) as usize].clone();
        let current = self.model.lock().unwrap()[&name].clone();
        if current.uncertain {
            return;
        }
        let change = self.pick(&name, current.json.is_some());
        let parsed = || {
            let json = current.json.as_deref().unwrap_or_default();
            spec::from_json(json, "chaos").expect("valid")
        };
        let (json, marker) = match change {
            Change::Create => (Some(self.initial(&name)), None),
            Change::Image => {
                let mut unit = parsed();
                unit.spec.image = self.image(&name);
                (Some(unit.to_json()), current.marker.clone())
            }
            Change::Restart => {
                self.version += 1;
                let marker = format!("chaos-restart-{}", self.version);
                (current.json.clone(), Some(marker))
            }
            Change::Scale(n) => {
                let mut unit = parsed();
                let was = unit.spec.replicas.unwrap_or(1);
                unit.spec.replicas = Some(if n == was { was % 5 + 1 } else { n });
                (Some(unit.to_json()), current.marker.clone())
            }
            Change::Remove => (None, None),
        };
        let rolls =
            matches!(change, Change::Image | Change::Restart) && shape(&name) == Shape::Replicated;
        let (seq, settled) = {
            let mut model = self.model.lock().unwrap();
            let u = model.get_mut(&name).expect("every name is in the model");
            let settled = u.settled == Some(u.seq);
            u.seq += 1;
            u.in_flight = true;
            u.settled = None;
            u.rollout = None;
            u.pending_since = None;
            (u.seq, settled)
        };
        let written = self.write(&name, &change, &json, &marker).await;
        let mut model = self.model.lock().unwrap();
        let u = model.get_mut(&name).expect("every name is in the model");
        u.in_flight = false;
        match written {
            Ok(()) => {
                bump(&self.report.counters.changes);
                if rolls && settled {
                    let w = want(json.as_deref(), marker.as_deref());
                    u.rollout = Some(Rollout {
                        seq,
                        replicas: w.replicas.expect("replicated"),
                        spec_hash: w.spec_hash,
                    });
                    bump(&self.report.counters.rollouts_watched);
                }
                u.json = json;
                u.marker = marker;
                u.pending_since = Some(Instant::now());
            }
            Err(e) => {
                bump(&self.report.counters.write_errors);
                self.report.note(&format!(
                    "change to {name} failed ({e}); reading it back later"
                ));
                u.uncertain = true;
            }
        }
    }

    async fn write(
        &self,
        name: &str,
        change: &Change,
        json: &Option<String>,
        marker: &Option<String>,
    ) -> Result<(), String> {
        let mut kv = self.client.kv_client();
        let (unit, restart) = (
            format!("{UNITS_DIR}{name}"),
            format!("{RESTARTS_DIR}{name}"),
        );
        let outcome = match (change, json, marker) {
            // As `kaylee rm` does: the unit and its restart marker at once.
            (Change::Remove, _, _) => {
                let txn =
                    Txn::new().and_then([TxnOp::delete(unit, None), TxnOp::delete(restart, None)]);
                tokio::time::timeout(WRITE_TIMEOUT, kv.txn(txn))
                    .await
                    .map(|r| r.map(drop))
            }
            (Change::Restart, _, Some(m)) => {
                tokio::time::timeout(WRITE_TIMEOUT, kv.put(restart, m.clone(), None))
                    .await
                    .map(|r| r.map(drop))
            }
            (_, Some(j), _) => tokio::time::timeout(WRITE_TIMEOUT, kv.put(unit, j.clone(), None))
                .await
                .map(|r| r.map(drop)),
            _ => unreachable!("every change but a removal has a value to write"),
        };
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {WRITE_TIMEOUT:?}")),
        }
    }

    /// Reads back every unit whose write failed; stops at the first etcd
    /// error (to try again later).
    async fn resync(&mut self) {
        let uncertain: Vec<String> = {
            let model = self.model.lock().unwrap();
            model
                .iter()
                .filter(|(_, u)| u.uncertain)
                .map(|(n, _)| n.clone())
                .collect()
        };
        for name in uncertain {
            let Some(json) = read(&self.client, format!("{UNITS_DIR}{name}")).await else {
                return;
            };
            let Some(marker) = read(&self.client, format!("{RESTARTS_DIR}{name}")).await else {
                return;
            };
            let mut model = self.model.lock().unwrap();
            let u = model.get_mut(&name).expect("every name is in the model");
            *u = UnitModel {
                json,
                marker,
                seq: u.seq + 1,
                pending_since: Some(Instant::now()),
                ..UnitModel::default()
            };
        }
    }
}

/// One key's value; `None` when etcd does not answer.
async fn read(client: &Client, key: String) -> Option<Option<String>> {
    let mut kv = client.kv_client();
    let resp = tokio::time::timeout(WRITE_TIMEOUT, kv.get(key, None))
        .await
        .ok()?
        .ok()?;
    Some(
        resp.kvs()
            .first()
            .map(|k| String::from_utf8_lossy(k.value()).into_owned()),
    )
}
