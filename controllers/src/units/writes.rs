//! The units controller's writer: the fleet ops and the status changes
//! (`/kaylee/status/<name>`, written only when it changed) of all workers,
//! batched together into fenced transactions.

use super::decide::Condition;
use super::status::UnitStatus;
use crate::etcd::{EtcdConfig, EtcdError};
use crate::keys::KayleeKeys;
use crate::registry::{ApplyError, FleetOp, FleetRegistry};
use crate::runtime::coalesce::{Coalescer, WriteError};
use crate::runtime::election::Fence;
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
) -> Coalescer<FleetOp> {
    let weight = |op: &FleetOp| match op {
        FleetOp::Create { .. } => 3,
        FleetOp::Destroy { .. } | FleetOp::Kaylee { .. } => 1,
    };
    let prepare = {
        let registry = registry.clone();
        move |ops: Vec<FleetOp>| registry.prepare(ops)
    };
    Coalescer::spawn(max_ops, weight, prepare, move |prepared: R::Prepared| {
        let (registry, fence) = (registry.clone(), fence.clone());
        async move {
            registry
                .commit(prepared, &fence)
                .await
                .map_err(|e| match e {
                    ApplyError::Fenced => WriteError::Fenced,
                    other => WriteError::Failed(other.to_string()),
                })
        }
    })
}

/// The status of every unit as last written (or found at the start of a
/// term), and the writer that carries it with the fleet ops.
pub struct Statuses {
    keys: KayleeKeys,
    writes: Coalescer<FleetOp>,
    /// Status JSON last written (or found) per unit, so unchanged status is
    /// never rewritten.
    written: DashMap<String, String>,
}

impl Statuses {
    /// Statuses under `etcd`'s prefix, written through `writes`.
    pub fn new(etcd: &EtcdConfig, writes: Coalescer<FleetOp>) -> Statuses {
        Statuses {
            keys: KayleeKeys::new(&etcd.prefix),
            writes,
            written: DashMap::new(),
        }
    }

    /// Reads every stored status, so a new leader rewrites none that holds.
    pub async fn load(&self, client: &Client, etcd: &EtcdConfig) -> Result<(), EtcdError> {
        let mut kv = client.kv_client();
        let prefix = self.keys.statuses();
        let resp = etcd
            .timed(kv.get(prefix.clone(), Some(GetOptions::new().with_prefix())))
            .await?;
        for item in resp.kvs() {
            if let (Ok(key), Ok(value)) = (item.key_str(), item.value_str())
                && let Some(name) = KayleeKeys::name_in(&prefix, key)
            {
                self.written.insert(name.to_string(), value.to_string());
            }
        }
        Ok(())
    }

    /// Writes `ops` alone (history kept within its limit, say).
    pub async fn write(&self, ops: Vec<FleetOp>) -> Result<(), WriteError> {
        self.writes.submit(ops).await
    }

    /// The stored status of `name`, if it parses.
    pub fn get(&self, name: &str) -> Option<UnitStatus> {
        self.written
            .get(name)
            .and_then(|s| serde_json::from_str::<UnitStatus>(&s).ok())
    }

    /// Writes `fleet_ops` and, right after them (in the same transaction
    /// unless the writer splits the batch to fill two), the status key of
    /// `name` (removed for a deleted unit) when it changed; logs an invalid
    /// unit once per distinct error.
    pub async fn publish(
        &self,
        name: &str,
        status: Option<UnitStatus>,
        fleet_ops: Vec<FleetOp>,
    ) -> Result<(), WriteError> {
        let json = status.as_ref().map(UnitStatus::to_json);
        let previous = self.written.get(name).map(|v| v.clone());
        let changed = json != previous;
        if let Some(error) = status.as_ref().and_then(|s| s.error.as_ref())
            && changed
            && newly_invalid(previous.as_deref(), error)
        {
            tracing::warn!(unit = name, %error, "unit is invalid; its fleet units are left as they are");
        }
        if let Some(s) = status.as_ref()
            && changed
            && newly_failed(previous.as_deref(), s)
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
            ops.push(FleetOp::Kaylee {
                key: self.keys.status(name),
                value: json.clone(),
            });
        }
        self.writes.submit(ops).await?;
        if changed {
            match json {
                Some(j) => self.written.insert(name.to_string(), j),
                None => self.written.remove(name).map(|(_, v)| v),
            };
        }
        Ok(())
    }
}

/// Whether `error` differs from the one in the previously written status:
/// an invalid unit's status also changes when its old fleet units come and
/// go, and that must not repeat the warning.
fn newly_invalid(previous: Option<&str>, error: &str) -> bool {
    let before = previous
        .and_then(|p| serde_json::from_str::<UnitStatus>(p).ok())
        .and_then(|s| s.error);
    before.as_deref() != Some(error)
}

/// Whether `status` reports a failure the previous status did not (for
/// the same template): logged once, not at every reconcile.
fn newly_failed(previous: Option<&str>, status: &UnitStatus) -> bool {
    if status.condition != Some(Condition::Failed) {
        return false;
    }
    let before = previous.and_then(|p| serde_json::from_str::<UnitStatus>(p).ok());
    before.is_none_or(|b| b.condition != Some(Condition::Failed) || b.spec_hash != status.spec_hash)
}

#[cfg(test)]
mod tests {
    use super::{Condition, UnitStatus, newly_failed, newly_invalid};

    #[test]
    fn an_invalid_unit_is_logged_once_per_distinct_error() {
        let invalid = |error: &str, running: u32| {
            UnitStatus {
                error: Some(error.to_string()),
                running,
                ..UnitStatus::default()
            }
            .to_json()
        };
        assert!(newly_invalid(None, "bad"));
        assert!(newly_invalid(Some("{}"), "bad"));
        assert!(!newly_invalid(Some(&invalid("bad", 1)), "bad"));
        assert!(newly_invalid(Some(&invalid("bad", 1)), "worse"));
    }

    #[test]
    fn a_failure_is_logged_once_per_template() {
        let failed = UnitStatus {
            spec_hash: "a".into(),
            condition: Some(Condition::Failed),
            ..UnitStatus::default()
        };
        assert!(newly_failed(None, &failed));
        let progressing = UnitStatus {
            condition: Some(Condition::Progressing),
            ..failed.clone()
        };
        assert!(newly_failed(Some(&progressing.to_json()), &failed));
        let again = UnitStatus {
            available: 1,
            ..failed.clone()
        };
        assert!(!newly_failed(Some(&failed.to_json()), &again));
        let other = UnitStatus {
            spec_hash: "b".into(),
            ..failed.clone()
        };
        assert!(newly_failed(Some(&failed.to_json()), &other));
        assert!(!newly_failed(None, &progressing));
    }
}
