//! fleet's side of the integration tests: a consistent view of its registry
//! as Kaylee wrote it, and a fake fleet agent that "runs" every job by
//! writing `states/` entries the way fleet's agents do — through the etcd
//! API the test runs Kaylee with ([`Api`]).

use super::etcd::{Etcd, EtcdOptions};
use super::v2;
use etcd_client::{Client, ConnectOptions, DeleteOptions, GetOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

pub const FLEET: &str = "/_coreos.com/fleet/";

/// How long a fallible (`try_…`) request waits for etcd before it counts as
/// not answering.
const TRY_TIMEOUT: Duration = Duration::from_secs(3);
/// Pairs of v2 reads tried before giving up on a consistent one.
const CONSISTENT_ATTEMPTS: usize = 5;

/// `Some` when `call` succeeded within [`TRY_TIMEOUT`].
async fn within<T, E>(call: impl Future<Output = Result<T, E>>) -> Option<T> {
    tokio::time::timeout(TRY_TIMEOUT, call).await.ok()?.ok()
}

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
    /// The machine fleet's engine scheduled it to (`job/<name>/target`).
    pub target: Option<String>,
    /// Revision the object key was last written at.
    pub revision: i64,
}

impl Job {
    /// The unit hash the object names, in hex (as agents report it).
    pub fn unit_hash_hex(&self) -> String {
        kaylee_controllers::fleet::records::parse_job_object(self.object.as_bytes())
            .map(|(_, hash)| hash.iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default()
    }
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
    /// Sorts keys under the fleet prefix (value, mod revision) into jobs,
    /// target states and running states.
    pub fn from_raw(raw: Vec<(String, String, i64)>) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut target_states = BTreeMap::new();
        let mut targets = BTreeMap::new();
        for (key, value, revision) in raw {
            let rest = &key[FLEET.len()..];
            if let Some(job) = rest.strip_prefix("job/") {
                if let Some(name) = job.strip_suffix("/object") {
                    snap.jobs.insert(
                        name.to_string(),
                        Job {
                            object: value.clone(),
                            target_state: String::new(),
                            target: None,
                            revision,
                        },
                    );
                } else if let Some(name) = job.strip_suffix("/target-state") {
                    target_states.insert(name.to_string(), value.clone());
                } else if let Some(name) = job.strip_suffix("/target") {
                    targets.insert(name.to_string(), value.clone());
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
        for (name, machine) in targets {
            if let Some(job) = snap.jobs.get_mut(&name) {
                job.target = Some(machine);
            }
        }
        snap
    }

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

/// A `states/<name>/<machine>` value as fleet's agent writes it for a
/// running unit; `unit_hash` is the hex SHA-1 of the text it runs (empty:
/// not reported).
pub fn running_state(machine: &str, unit_hash: &str) -> String {
    format!(
        r#"{{"loadState":"loaded","activeState":"active","subState":"running","machineState":{{"ID":"{machine}","PublicIP":"127.0.0.1","Metadata":{{}},"Version":"1.0.0"}},"unitHash":"{unit_hash}"}}"#
    )
}

/// A `machines/<id>/object` value as fleet's agent writes it.
pub fn machine_object(machine: &str) -> String {
    format!(
        r#"{{"ID":"{machine}","PublicIP":"127.0.0.1","Metadata":{{}},"Capabilities":null,"Version":"1.0.0"}}"#
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
        self.tree_with_revisions(FLEET).await
    }

    /// Every key (with its value) under the directory `dir` (absolute,
    /// ending in `/`) of fleet's registry.
    pub async fn tree(&self, dir: &str) -> Vec<(String, String)> {
        self.tree_with_revisions(dir)
            .await
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect()
    }

    /// Like [`FleetView::tree`], with each key's mod revision (v2:
    /// modifiedIndex).
    async fn tree_with_revisions(&self, dir: &str) -> Vec<(String, String, i64)> {
        if self.api == Api::V2 {
            return v2::tree(self.port, dir.trim_end_matches('/')).await;
        }
        let mut kv = self.client.kv_client();
        let resp = kv
            .get(dir, Some(GetOptions::new().with_prefix()))
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
        Snapshot::from_raw(self.raw().await)
    }

    /// `job/` and `states/` only (not `unit/`: unit texts pile up over a
    /// long run), read at one revision — through v2, two reads between
    /// which the store's index did not move — so running counts and jobs
    /// agree. `None` when etcd does not answer (or, through v2, keeps
    /// changing under every attempt).
    pub async fn try_live(&self) -> Option<Snapshot> {
        self.try_jobs_and_states(true).await
    }

    /// Like [`FleetView::try_live`]; with `consistent` false, v2's two
    /// reads may straddle a write (enough for an agent, not for a check).
    pub async fn try_jobs_and_states(&self, consistent: bool) -> Option<Snapshot> {
        let (jobs, states) = (format!("{FLEET}job/"), format!("{FLEET}states/"));
        if self.api == Api::V2 {
            for _ in 0..CONSISTENT_ATTEMPTS {
                let (mut raw, at) = v2::try_tree(self.port, &jobs).await.ok()?;
                let (more, again) = v2::try_tree(self.port, &states).await.ok()?;
                raw.extend(more);
                if at == again || !consistent {
                    return Some(Snapshot::from_raw(raw));
                }
            }
            return None;
        }
        let mut kv = self.client.kv_client();
        let first = within(kv.get(jobs, Some(GetOptions::new().with_prefix()))).await?;
        let revision = first.header()?.revision();
        let at = GetOptions::new().with_prefix().with_revision(revision);
        let second = within(kv.get(states, Some(at))).await?;
        let raw = first
            .kvs()
            .iter()
            .chain(second.kvs())
            .filter_map(|item| {
                Some((
                    item.key_str().ok()?.to_string(),
                    String::from_utf8_lossy(item.value()).into_owned(),
                    item.mod_revision(),
                ))
            })
            .collect();
        Some(Snapshot::from_raw(raw))
    }

    /// One key under the fleet prefix: `Some(None)` when it does not exist,
    /// `None` when etcd does not answer.
    pub async fn try_get(&self, relative: &str) -> Option<Option<String>> {
        let key = format!("{FLEET}{relative}");
        if self.api == Api::V2 {
            let (mut keys, _) = v2::try_tree(self.port, &key).await.ok()?;
            return Some(keys.pop().filter(|(k, _, _)| *k == key).map(|(_, v, _)| v));
        }
        let mut kv = self.client.kv_client();
        let resp = within(kv.get(key, None)).await?;
        Some(
            resp.kvs()
                .first()
                .map(|k| String::from_utf8_lossy(k.value()).into_owned()),
        )
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

    /// Like [`FleetView::put`]; false when etcd does not answer.
    pub async fn try_put(&self, relative: &str, value: &str) -> bool {
        let key = format!("{FLEET}{relative}");
        if self.api == Api::V2 {
            return v2::try_put(self.port, &key, value).await.is_ok();
        }
        let mut kv = self.client.kv_client();
        within(kv.put(key, value, None)).await.is_some()
    }

    /// Reports `name` running on `machine` (whose agent does not say which
    /// unit text it runs).
    pub async fn set_running(&self, name: &str, machine: &str) {
        self.put(
            &format!("states/{name}/{machine}"),
            &running_state(machine, ""),
        )
        .await;
    }

    /// Reports `name` running `unit_hash` on `machine`; false when etcd does
    /// not answer.
    pub async fn try_set_running(&self, name: &str, machine: &str, unit_hash: &str) -> bool {
        self.try_put(
            &format!("states/{name}/{machine}"),
            &running_state(machine, unit_hash),
        )
        .await
    }

    /// Announces `machine` in fleet's `machines/`, as its agent does (here
    /// without a TTL); false when etcd does not answer.
    pub async fn try_add_machine(&self, machine: &str) -> bool {
        self.try_put(
            &format!("machines/{machine}/object"),
            &machine_object(machine),
        )
        .await
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

    /// Deletes every machine's state of `name`; false when etcd does not
    /// answer.
    pub async fn try_clear_states(&self, name: &str) -> bool {
        if self.api == Api::V2 {
            return v2::try_delete_all(self.port, &format!("{FLEET}states/{name}"))
                .await
                .is_ok();
        }
        let mut kv = self.client.kv_client();
        let all = Some(DeleteOptions::new().with_prefix());
        within(kv.delete(format!("{FLEET}states/{name}/"), all))
            .await
            .is_some()
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
