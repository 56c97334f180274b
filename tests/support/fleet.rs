//! fleet's side of the integration tests: a consistent view of its registry
//! as Kaylee wrote it, and a fake fleet agent that "runs" every job by
//! writing `states/` entries the way fleet's agents do — through the etcd
//! API the test runs Kaylee with ([`Api`]).

use super::etcd::{Etcd, EtcdOptions};
use super::v2;
use etcd_client::{Client, ConnectOptions, DeleteOptions, GetOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const FLEET: &str = "/_coreos.com/fleet/";

/// The etcd API fleet's registry is kept in (`--fleet-etcd-api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    V2,
    V3,
}

impl Api {
    pub fn flag(self) -> &'static str {
        match self {
            Api::V2 => "v2",
            Api::V3 => "v3",
        }
    }

    /// The same choice as the library names it.
    pub fn registry_api(self) -> kaylee_controllers::registry::FleetApi {
        match self {
            Api::V2 => kaylee_controllers::registry::FleetApi::V2,
            Api::V3 => kaylee_controllers::registry::FleetApi::V3,
        }
    }

    /// A test etcd that serves this API (every one serves v3 for Kaylee's
    /// own keys).
    pub fn etcd(self) -> Etcd {
        Etcd::start_with(EtcdOptions {
            enable_v2: self == Api::V2,
            ..EtcdOptions::default()
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub object: String,
    pub target_state: String,
    /// Revision the object key was last written at.
    pub revision: i64,
}

/// Everything under the fleet prefix, read at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub jobs: BTreeMap<String, Job>,
    /// Every key under the prefix with its value and mod revision.
    pub keys: BTreeMap<String, (String, i64)>,
    /// Fleet unit name → machines reporting it running.
    pub running: BTreeMap<String, BTreeSet<String>>,
}

impl Snapshot {
    /// Jobs of one Kaylee unit (names `k:<unit>:…`).
    pub fn jobs_of(&self, unit: &str) -> BTreeMap<String, Job> {
        let prefix = format!("k:{unit}:");
        self.jobs
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .map(|(n, j)| (n.clone(), j.clone()))
            .collect()
    }

    /// Jobs of `unit` that some machine reports running.
    pub fn running_of(&self, unit: &str) -> usize {
        self.jobs_of(unit)
            .keys()
            .filter(|n| self.running.get(*n).is_some_and(|m| !m.is_empty()))
            .count()
    }
}

/// The spec hash field of a fleet name `k:<unit>:<hash>:<group>:<n>.service`.
pub fn spec_hash_of(fleet_name: &str) -> &str {
    fleet_name.split(':').nth(2).unwrap_or("")
}

#[derive(Clone)]
pub struct FleetView {
    /// For Kaylee's own (v3) keys, and fleet's when `api` is v3.
    client: Client,
    api: Api,
    port: u16,
}

pub fn running_state(machine: &str) -> String {
    format!(
        r#"{{"loadState":"loaded","activeState":"active","subState":"running","machineState":{{"ID":"{machine}"}},"unitHash":""}}"#
    )
}

impl FleetView {
    /// A view of fleet's registry kept in v3 keys.
    pub async fn connect(endpoint: &str) -> FleetView {
        FleetView::connect_on(endpoint, Api::V3).await
    }

    pub async fn connect_on(endpoint: &str, api: Api) -> FleetView {
        FleetView::connect_with(endpoint, api, None).await
    }

    /// With connect options, e.g. a user on an etcd with auth enabled.
    pub async fn connect_with(
        endpoint: &str,
        api: Api,
        options: Option<ConnectOptions>,
    ) -> FleetView {
        let client = Client::connect([endpoint], options)
            .await
            .expect("connecting to the test etcd");
        FleetView {
            client,
            api,
            port: v2::port_of(endpoint),
        }
    }

    pub fn api(&self) -> Api {
        self.api
    }

    /// Every key under the fleet prefix, with value and mod revision (v2:
    /// modifiedIndex), read at one point in time.
    async fn raw(&self) -> Vec<(String, String, i64)> {
        if self.api == Api::V2 {
            return v2::tree(self.port, FLEET).await;
        }
        let mut kv = self.client.kv_client();
        let resp = kv
            .get(FLEET, Some(GetOptions::new().with_prefix()))
            .await
            .expect("reading fleet's registry");
        resp.kvs()
            .iter()
            .map(|item| {
                (
                    item.key_str().expect("utf-8 key").to_string(),
                    String::from_utf8_lossy(item.value()).into_owned(),
                    item.mod_revision(),
                )
            })
            .collect()
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub async fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut target_states = BTreeMap::new();
        for (key, value, revision) in self.raw().await {
            let rest = &key[FLEET.len()..];
            if let Some(job) = rest.strip_prefix("job/") {
                if let Some(name) = job.strip_suffix("/object") {
                    snap.jobs.insert(
                        name.to_string(),
                        Job {
                            object: value.clone(),
                            target_state: String::new(),
                            revision,
                        },
                    );
                } else if let Some(name) = job.strip_suffix("/target-state") {
                    target_states.insert(name.to_string(), value.clone());
                }
            } else if let Some(state) = rest.strip_prefix("states/")
                && let Some((name, machine)) = state.split_once('/')
                && value.contains(r#""subState":"running""#)
            {
                snap.running
                    .entry(name.to_string())
                    .or_default()
                    .insert(machine.to_string());
            }
            snap.keys.insert(key, (value, revision));
        }
        for (name, state) in target_states {
            if let Some(job) = snap.jobs.get_mut(&name) {
                job.target_state = state;
            }
        }
        snap
    }

    /// Writes a key under the fleet prefix (for units Kaylee must not touch).
    pub async fn put(&self, relative: &str, value: &str) {
        let key = format!("{FLEET}{relative}");
        if self.api == Api::V2 {
            return v2::put(self.port, &key, value).await;
        }
        let mut kv = self.client.kv_client();
        kv.put(key, value, None).await.expect("writing a fleet key");
    }

    pub async fn set_running(&self, name: &str, machine: &str) {
        self.put(&format!("states/{name}/{machine}"), &running_state(machine))
            .await;
    }

    pub async fn clear_states(&self, name: &str) {
        if self.api == Api::V2 {
            return v2::delete_all(self.port, &format!("{FLEET}states/{name}")).await;
        }
        let mut kv = self.client.kv_client();
        kv.delete(
            format!("{FLEET}states/{name}/"),
            Some(DeleteOptions::new().with_prefix()),
        )
        .await
        .expect("deleting states");
    }

    /// Polls until `done` holds on a snapshot; panics with the last one.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Snapshot {
        let deadline = Instant::now() + limit;
        loop {
            let snap = self.snapshot().await;
            if done(&snap) {
                return snap;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; jobs: {:#?}",
                snap.jobs.keys().collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A fake fleet agent on machine `machine`: every job that exists is
/// reported running `delay` after it was first seen; the state of a job that
/// is gone is removed. Stops when the guard drops.
pub struct Agent {
    stop: CancellationToken,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn spawn_agent(view: &FleetView, machine: &str, delay: Duration) -> Agent {
    let stop = CancellationToken::new();
    let token = stop.clone();
    let view = view.clone();
    let machine = machine.to_string();
    tokio::spawn(async move {
        let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
        while !token.is_cancelled() {
            let snap = view.snapshot().await;
            let now = Instant::now();
            for name in snap.jobs.keys() {
                let seen = *first_seen.entry(name.clone()).or_insert(now);
                let running = snap.running.get(name).is_some_and(|m| m.contains(&machine));
                if !running && now.duration_since(seen) >= delay {
                    view.set_running(name, &machine).await;
                }
            }
            for name in snap.running.keys() {
                if !snap.jobs.contains_key(name) {
                    view.clear_states(name).await;
                }
            }
            first_seen.retain(|n, _| snap.jobs.contains_key(n));
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    Agent { stop }
}
