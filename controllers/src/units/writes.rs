//! The units controller's writer: the fleet ops and the status changes
//! (`/kaylee/status/<name>`, written only when it changed) of all workers,
//! batched together into fenced transactions.

use super::decide::Condition;
use super::status::{RolledBack, UnitStatus};
use crate::etcd::election::Fence;
use crate::etcd::{EtcdConfig, EtcdError};
use crate::keys::KayleeKeys;
use crate::registry::{ApplyError, FleetRegistry, Write};
use crate::runtime::coalesce::{Coalescer, WriterStopped};
use dashmap::DashMap;
use etcd_client::{Client, GetOptions};
use std::sync::Arc;

/// Fleet and status writes of all workers, batched into as few
/// transactions as fit: sharing them halves the transactions of a cold
/// start, where every unit gets both.
pub fn writer<R: FleetRegistry>(
    registry: Arc<R>,
    fence: Fence,
    max_ops: usize,
) -> Coalescer<Write, WriteError> {
    let weight = |op: &Write| match op {
        Write::Create { .. } => 3,
        Write::Destroy { .. } | Write::Kaylee { .. } => 1,
    };
    let prepare = {
        let registry = registry.clone();
        move |ops: Vec<Write>| registry.prepare(ops)
    };
    Coalescer::spawn(max_ops, weight, prepare, move |prepared: R::Prepared| {
        let (registry, fence) = (registry.clone(), fence.clone());
        async move {
            registry
                .commit(prepared, &fence)
                .await
                .map_err(|e| WriteError::Apply(Arc::new(e)))
        }
    })
}

/// Why a batch of the writer failed, as each reconcile whose writes it
/// carried sees it: the registry's own error, shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The registry refused or failed the batch.
    #[error(transparent)]
    Apply(Arc<ApplyError>),
    /// The writer task is gone (the controller is stopping).
    #[error(transparent)]
    Stopped(#[from] WriterStopped),
}

impl WriteError {
    /// Whether the fence refused the batch: leadership is lost.
    pub fn is_fenced(&self) -> bool {
        matches!(self, WriteError::Apply(e) if matches!(**e, ApplyError::Fenced))
    }
}

/// A status as [`Statuses`] remembers it: a hash of its JSON, and the
/// fields later reconciles read back, in as few bytes as a leader keeping
/// 10,000 of them can afford.
#[derive(Debug, Clone)]
struct Stored {
    hash: u64,
    spec_hash: Box<str>,
    spec_revision: i64,
    restart_revision: i64,
    revision: u64,
    desired: u32,
    condition: Option<Condition>,
    complete: bool,
    rolled_back: Option<Box<RolledBack>>,
    error: Option<Box<str>>,
}

impl Stored {
    fn of(json: &str, s: &UnitStatus) -> Stored {
        Stored {
            hash: hash_of(json),
            spec_hash: s.spec_hash.as_str().into(),
            spec_revision: s.spec_revision,
            restart_revision: s.restart_revision,
            revision: s.revision,
            desired: s.desired,
            condition: s.condition,
            complete: s.complete,
            rolled_back: s.rolled_back.clone().map(Box::new),
            error: s.error.as_deref().map(Box::from),
        }
    }

    /// The status with what was kept (no replica lists, no counts).
    fn summary(&self) -> UnitStatus {
        UnitStatus {
            spec_hash: self.spec_hash.to_string(),
            spec_revision: self.spec_revision,
            restart_revision: self.restart_revision,
            revision: self.revision,
            desired: self.desired,
            condition: self.condition,
            complete: self.complete,
            rolled_back: self.rolled_back.as_deref().cloned(),
            error: self.error.as_deref().map(str::to_string),
            ..UnitStatus::default()
        }
    }
}

fn hash_of(json: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    json.hash(&mut h);
    h.finish()
}

/// The status of every unit as last written (or found at the start of a
/// term), and the writer that carries it with the fleet ops.
pub struct Statuses {
    keys: KayleeKeys,
    writes: Coalescer<Write, WriteError>,
    /// Per unit, the status last written (or found), so an unchanged one
    /// is never rewritten: a hash of its JSON, and the fields later
    /// reconciles read back (not its list of unavailable replicas, which
    /// would be most of a leader's memory at 10,000 units).
    written: DashMap<String, Stored>,
}

impl Statuses {
    /// Statuses under `etcd`'s prefix, written through `writes`.
    pub fn new(etcd: &EtcdConfig, writes: Coalescer<Write, WriteError>) -> Statuses {
        Statuses {
            keys: KayleeKeys::new(&etcd.prefix),
            writes,
            written: DashMap::new(),
        }
    }

    /// Reads every stored status, so a new leader rewrites none that holds.
    pub async fn load(&self, client: &Client, etcd: &EtcdConfig) -> Result<(), EtcdError> {
        // Statuses list their unavailable replicas: 10,000 of them are well
        // over gRPC's default 4 MiB answer.
        let mut kv = client
            .kv_client()
            .max_decoding_message_size(crate::etcd::MAX_MESSAGE_BYTES);
        let prefix = self.keys.statuses();
        let resp = etcd
            .timed(kv.get(prefix.clone(), Some(GetOptions::new().with_prefix())))
            .await?;
        for item in resp.kvs() {
            if let (Ok(key), Ok(value)) = (item.key_str(), item.value_str())
                && let Some(name) = KayleeKeys::name_in(&prefix, key)
            {
                // One that does not parse is rewritten at the first chance.
                let status = serde_json::from_str::<UnitStatus>(value).unwrap_or_default();
                let stored = Stored::of(value, &status);
                self.written.insert(name.to_string(), stored);
            }
        }
        Ok(())
    }

    /// Writes `ops` alone (history kept within its limit, say).
    pub async fn write(&self, ops: Vec<Write>) -> Result<(), WriteError> {
        self.writes.submit(ops).await
    }

    /// The stored status of `name`, without its list of unavailable
    /// replicas.
    pub fn get(&self, name: &str) -> Option<UnitStatus> {
        self.written.get(name).map(|s| s.summary())
    }

    /// Writes `fleet_ops` and, right after them (in the same transaction
    /// unless the writer splits the batch to fill two), the status key of
    /// `name` (removed for a deleted unit) when it changed; logs an invalid
    /// unit once per distinct error.
    pub async fn publish(
        &self,
        name: &str,
        status: Option<UnitStatus>,
        fleet_ops: Vec<Write>,
    ) -> Result<(), WriteError> {
        let json = status.as_ref().map(UnitStatus::to_json);
        let previous = self.written.get(name).map(|v| v.clone());
        let changed = json.as_deref().map(hash_of) != previous.as_ref().map(|p| p.hash);
        let before = previous.as_ref().map(Stored::summary);
        let before = before.as_ref();
        if let Some(error) = status.as_ref().and_then(|s| s.error.as_ref())
            && changed
            && newly_invalid(before, error)
        {
            tracing::warn!(unit = name, %error, "unit is invalid; its fleet units are left as they are");
        }
        if let Some(s) = status.as_ref()
            && changed
            && newly_failed(before, s)
        {
            let reasons: Vec<String> = s
                .unavailable
                .iter()
                .map(|u| format!("{}: {}", u.unit, u.reason))
                .collect();
            tracing::warn!(
                unit = name,
                available = s.available,
                desired = s.desired,
                reasons = %reasons.join("; "),
                "unit failed: no replica serves, or its rollout made no progress within its deadline"
            );
        }
        let mut ops = fleet_ops;
        if changed {
            ops.push(Write::Kaylee {
                key: self.keys.status(name),
                value: json.clone(),
            });
        }
        self.writes.submit(ops).await?;
        if changed {
            match (json, status) {
                (Some(j), Some(s)) => {
                    self.written.insert(name.to_string(), Stored::of(&j, &s));
                }
                _ => {
                    self.written.remove(name);
                }
            }
        }
        Ok(())
    }
}

/// Whether `error` differs from the one in the previously written status:
/// an invalid unit's status also changes when its old fleet units come and
/// go, and that must not repeat the warning.
fn newly_invalid(previous: Option<&UnitStatus>, error: &str) -> bool {
    previous.and_then(|s| s.error.as_deref()) != Some(error)
}

/// Whether `status` reports a failure the previous status did not (for
/// the same template): logged once, not at every reconcile.
fn newly_failed(previous: Option<&UnitStatus>, status: &UnitStatus) -> bool {
    if status.condition != Some(Condition::Failed) {
        return false;
    }
    previous
        .is_none_or(|b| b.condition != Some(Condition::Failed) || b.spec_hash != status.spec_hash)
}

#[cfg(test)]
mod tests;
