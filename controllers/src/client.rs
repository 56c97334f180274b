//! What the online CLI does against etcd: write units, read them back with
//! their status, restart and remove them, and read fleet's view of one unit.

use crate::etcd::{EtcdConfig, EtcdError};
use crate::fleet::records::parse_unit_state;
use crate::keys::{FleetKeys, JobField, KayleeKeys};
use crate::registry::FleetRegistry;
use crate::runtime::Source;
use crate::spec::{self, Unit};
use crate::units::UnitStatus;
use crate::units::history::{self, Revision};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::Serialize;
use std::collections::BTreeMap;

/// Why a [`KayleeClient`] call (or [`fleet_units`], [`fleet_machines`])
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `/kaylee/units/<name>` does not exist (for a restart or remove: it did
    /// not exist when the transaction ran). Holds the unit name.
    #[error("no unit named `{0}`")]
    NotFound(String),
    /// etcd failed, timed out or refused the credentials.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// Listing fleet's registry (jobs, states, machines) failed.
    #[error("reading fleet's registry: {0}")]
    Fleet(#[source] crate::runtime::SourceError),
}

/// What [`KayleeClient::apply`] did to the stored unit; serialized as the
/// lowercase word `kaylee run` prints (`created`, `updated`, `unchanged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applied {
    /// There was no unit of that name; it is stored now.
    Created,
    /// A different value was stored; it is replaced, and the leader rolls
    /// the unit out (or only rescales, when the template did not change).
    Updated,
    /// The stored JSON is already byte for byte this one: nothing written,
    /// so nothing restarts.
    Unchanged,
}

/// What [`KayleeClient::remove`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// The unit (and, when purging, its history).
    Unit,
    /// Only the history of a unit removed earlier (a purge after a plain
    /// `rm`).
    HistoryOnly,
}

/// What a write did, and the etcd revision the stored value carries: a
/// status whose `specRevision` (or `restartRevision`) has reached it answers
/// this write, which is what `--wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written<T> {
    /// What was written: an [`Applied`], or a restart marker.
    pub outcome: T,
    /// etcd's revision of the write (the key's mod revision); for
    /// [`Applied::Unchanged`], the stored value's mod revision. 0 only if
    /// etcd's answer had no header.
    pub revision: i64,
}

/// A unit as stored, with what the leader last reported about it.
#[derive(Debug, Clone)]
pub struct UnitView {
    /// The unit's name: the last segment of its key.
    pub name: String,
    /// The stored spec, or why it does not parse.
    pub spec: Result<Unit, String>,
    /// `/kaylee/status/<name>`; `None` until the leader first wrote one, or
    /// when it is not valid JSON of a status.
    pub status: Option<UnitStatus>,
}

/// A container registered by the Kaylee server of its machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// The fleet machine id (`/etc/machine-id`) of the host it runs on.
    pub machine: String,
    /// The docker container name, without Docker's leading `/`: the fleet
    /// unit name with `:` made `_` and no `.service`
    /// (`k_countly_4f9a1c_dc608f_3`).
    pub container: String,
    /// Its IP address as registered, in text (the bare value of its
    /// `<prefix>/instances/...` key).
    pub ip: String,
    /// Docker's health of its `HEALTHCHECK` (`healthy`, `unhealthy`,
    /// `starting`); `None` without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

/// One fleet unit of a Kaylee unit, as fleet's registry has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetUnitView {
    /// The fleet unit name, `<prefix>:<unit>:<hash>:<group>:<replica>.service`.
    pub name: String,
    /// The job's `target-state`: `launched`, `loaded` or `inactive` (what
    /// fleet is asked to do with it); empty when the job has none.
    pub target_state: String,
    /// The machine fleet's engine scheduled it to, if any.
    pub target: Option<String>,
    /// Per reporting machine: `activeState/subState`.
    pub states: BTreeMap<String, String>,
}

/// The CLI's connection to Kaylee's keys in etcd: units, restart markers,
/// statuses, registered instances and history. Every call is bounded by
/// the [`EtcdConfig`]'s request timeout.
pub struct KayleeClient {
    client: Client,
    etcd: EtcdConfig,
    keys: KayleeKeys,
}

/// The revision a successful one-put transaction wrote at.
fn txn_revision(resp: &etcd_client::TxnResponse) -> i64 {
    resp.header().map(|h| h.revision()).unwrap_or(0)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl KayleeClient {
    /// Connects with [`EtcdConfig::connect`] (probing every endpoint);
    /// fails when none answers, or the settings or credentials are wrong.
    pub async fn connect(etcd: &EtcdConfig) -> Result<Self, EtcdError> {
        Ok(KayleeClient {
            client: etcd.connect().await?,
            etcd: etcd.clone(),
            keys: KayleeKeys::new(&etcd.prefix),
        })
    }

    /// The underlying etcd v3 client, for calls this type does not wrap
    /// (cluster settings, fleet's registry); share it rather than connect
    /// again.
    pub fn etcd_client(&self) -> &Client {
        &self.client
    }

    /// Reads accept values as large as the informers do.
    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(crate::etcd::MAX_MESSAGE_BYTES)
    }

    /// Stores a unit's canonical JSON unless it is already exactly that.
    pub async fn apply(&self, unit: &Unit) -> Result<Written<Applied>, ClientError> {
        let key = self.keys.unit(&unit.name);
        let json = unit.to_json();
        let mut kv = self.kv();
        let current = self.etcd.timed(kv.get(key.clone(), None)).await?;
        let existing = current.kvs().first();
        if let Some(k) = existing.filter(|k| k.value() == json.as_bytes()) {
            return Ok(Written {
                outcome: Applied::Unchanged,
                revision: k.mod_revision(),
            });
        }
        // Only over what was read: a concurrent writer makes us re-read.
        let seen = existing.map(|k| k.mod_revision()).unwrap_or(0);
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, seen)])
            .and_then([TxnOp::put(key, json, None)]);
        let resp = self.etcd.timed(kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Box::pin(self.apply(unit)).await;
        }
        Ok(Written {
            outcome: if existing.is_some() {
                Applied::Updated
            } else {
                Applied::Created
            },
            revision: txn_revision(&resp),
        })
    }

    async fn get_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, EtcdError> {
        let mut kv = self.kv();
        let resp = self
            .etcd
            .timed(kv.get(prefix, Some(GetOptions::new().with_prefix())))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|k| Some((k.key_str().ok()?.to_string(), k.value().to_vec())))
            .collect())
    }

    /// Every stored unit, sorted by name.
    pub async fn list(&self) -> Result<Vec<UnitView>, ClientError> {
        let units_dir = self.keys.units();
        let status_dir = self.keys.statuses();
        let statuses: BTreeMap<String, UnitStatus> = self
            .get_prefix(&status_dir)
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let name = KayleeKeys::name_in(&status_dir, &k)?.to_string();
                Some((name, serde_json::from_slice(&v).ok()?))
            })
            .collect();
        let mut views: Vec<UnitView> = self
            .get_prefix(&units_dir)
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let name = KayleeKeys::name_in(&units_dir, &k)?.to_string();
                Some(UnitView {
                    spec: spec::from_stored(&v, &k, &name).map_err(|e| e.to_string()),
                    status: statuses.get(&name).cloned(),
                    name,
                })
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(views)
    }

    /// One stored unit and its status; [`ClientError::NotFound`] when there
    /// is no `/kaylee/units/<name>`.
    pub async fn get(&self, name: &str) -> Result<UnitView, ClientError> {
        let mut kv = self.kv();
        let key = self.keys.unit(name);
        let unit = self.etcd.timed(kv.get(key.clone(), None)).await?;
        let Some(stored) = unit.kvs().first() else {
            return Err(ClientError::NotFound(name.to_string()));
        };
        let status = self
            .etcd
            .timed(kv.get(self.keys.status(name), None))
            .await?;
        Ok(UnitView {
            name: name.to_string(),
            spec: spec::from_stored(stored.value(), &key, name).map_err(|e| e.to_string()),
            status: status
                .kvs()
                .first()
                .and_then(|k| serde_json::from_slice(k.value()).ok()),
        })
    }

    /// The restart marker of a unit (`kaylee restart`), if it has one.
    pub async fn restart_marker(&self, name: &str) -> Result<Option<String>, ClientError> {
        let mut kv = self.kv();
        let resp = self
            .etcd
            .timed(kv.get(self.keys.restart(name), None))
            .await?;
        Ok(resp.kvs().first().map(|k| text(k.value())))
    }

    /// Sets a new restart marker, which rolls every replica; returns it.
    pub async fn restart(&self, name: &str) -> Result<Written<String>, ClientError> {
        let marker = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        let exists = Compare::version(self.keys.unit(name), CompareOp::Greater, 0);
        let txn = Txn::new().when([exists]).and_then([TxnOp::put(
            self.keys.restart(name),
            marker.clone(),
            None,
        )]);
        let mut kv = self.kv();
        let resp = self.etcd.timed(kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(ClientError::NotFound(name.to_string()));
        }
        Ok(Written {
            outcome: marker,
            revision: txn_revision(&resp),
        })
    }

    /// Deletes a unit (and its restart marker; with `purge`, its history
    /// too); the leader then destroys its fleet units. With `purge`, a unit
    /// already removed without it has its history deleted. Fails with
    /// [`ClientError::NotFound`] when there is nothing to remove.
    pub async fn remove(&self, name: &str, purge: bool) -> Result<Removed, ClientError> {
        let unit = self.keys.unit(name);
        let history = || {
            TxnOp::delete(
                self.keys.history(name),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
        };
        let mut ops = vec![
            TxnOp::delete(unit.clone(), None),
            TxnOp::delete(self.keys.restart(name), None),
        ];
        if purge {
            ops.push(history());
        }
        // Only while the unit is gone: the leader writes history only for
        // a unit that exists.
        let otherwise = if purge { vec![history()] } else { Vec::new() };
        let txn = Txn::new()
            .when([Compare::version(unit.clone(), CompareOp::Greater, 0)])
            .and_then(ops)
            .or_else(otherwise);
        let mut kv = self.kv();
        let resp = self.etcd.timed(kv.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(Removed::Unit);
        }
        let purged: i64 = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                etcd_client::TxnOpResponse::Delete(d) => d.deleted(),
                _ => 0,
            })
            .sum();
        if purged > 0 {
            return Ok(Removed::HistoryOnly);
        }
        Err(ClientError::NotFound(name.to_string()))
    }

    /// Registered containers of one unit, on every machine, with their
    /// health.
    pub async fn instances(&self, name: &str) -> Result<Vec<Instance>, ClientError> {
        let dir = self.keys.instances();
        let health_dir = self.keys.healths();
        let health: BTreeMap<(String, String), String> = self
            .get_prefix(&health_dir)
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let (machine, unit, container) = KayleeKeys::parse_placement(&health_dir, &k)?;
                (unit == name).then(|| ((machine.to_string(), container.to_string()), text(&v)))
            })
            .collect();
        Ok(self
            .get_prefix(&dir)
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let (machine, unit, container) = KayleeKeys::parse_placement(&dir, &k)?;
                (unit == name).then(|| Instance {
                    machine: machine.to_string(),
                    container: container.to_string(),
                    ip: text(&v),
                    health: health
                        .get(&(machine.to_string(), container.to_string()))
                        .cloned(),
                })
            })
            .collect())
    }

    /// Every kept revision of a unit's spec, oldest first.
    pub async fn history(&self, name: &str) -> Result<Vec<Revision>, ClientError> {
        Ok(history::list(&self.client, &self.etcd, &self.keys, name).await?)
    }
}

/// fleet's view of one Kaylee unit: its jobs, where they are scheduled and
/// what the agents report.
pub async fn fleet_units<R: FleetRegistry>(
    registry: &R,
    unit: &str,
) -> Result<Vec<FleetUnitView>, ClientError> {
    let keys: &FleetKeys = registry.keys();
    let jobs = registry
        .source(keys.unit_jobs(unit))
        .list()
        .await
        .map_err(ClientError::Fleet)?;
    let states = registry
        .source(keys.unit_states(unit))
        .list()
        .await
        .map_err(ClientError::Fleet)?;
    let mut views: BTreeMap<String, FleetUnitView> = BTreeMap::new();
    for item in jobs.items {
        let Some((name, field)) = keys.parse_job(&item.key) else {
            continue;
        };
        let view = views
            .entry(name.to_string())
            .or_insert_with(|| FleetUnitView {
                name: name.to_string(),
                ..FleetUnitView::default()
            });
        match field {
            JobField::TargetState => view.target_state = text(&item.value),
            JobField::Target => view.target = Some(text(&item.value)),
            JobField::Object => {}
        }
    }
    for item in states.items {
        let Some((name, machine)) = keys.parse_state(&item.key) else {
            continue;
        };
        if let Some(view) = views.get_mut(name) {
            let state = parse_unit_state(&item.value)
                .map(|s| format!("{}/{}", s.active, s.sub))
                .unwrap_or_else(|| "unknown".into());
            view.states.insert(machine.to_string(), state);
        }
    }
    Ok(views.into_values().collect())
}

/// The machines present in fleet's `machines/` (their entries expire with
/// their agents).
pub async fn fleet_machines<R: FleetRegistry>(
    registry: &R,
) -> Result<std::collections::BTreeSet<String>, ClientError> {
    let keys: &FleetKeys = registry.keys();
    let listing = registry
        .source(keys.machines())
        .list()
        .await
        .map_err(ClientError::Fleet)?;
    Ok(listing
        .items
        .iter()
        .filter_map(|i| keys.parse_machine(&i.key).map(str::to_string))
        .collect())
}
