//! The units controller's two writers, each batching the writes of all
//! workers into fenced transactions: fleet ops, and `/kaylee/status/<name>`
//! (written only when it changed).

use super::status::UnitStatus;
use crate::etcd::{EtcdConfig, EtcdError};
use crate::keys::KayleeKeys;
use crate::registry::{ApplyError, FleetOp, FleetRegistry};
use crate::runtime::coalesce::{Coalescer, WriteError};
use crate::runtime::election::Fence;
use dashmap::DashMap;
use etcd_client::{Client, GetOptions, Txn, TxnOp};
use std::sync::Arc;

/// Fleet writes of all workers, batched into as few transactions as fit.
pub fn fleet_writer<R: FleetRegistry>(
    registry: Arc<R>,
    fence: Fence,
    max_ops: usize,
) -> Coalescer<FleetOp> {
    let weight = |op: &FleetOp| match op {
        FleetOp::Create { .. } => 3,
        FleetOp::Destroy { .. } => 1,
    };
    Coalescer::spawn(max_ops, weight, move |ops: Vec<FleetOp>| {
        let (registry, fence) = (registry.clone(), fence.clone());
        async move {
            registry.apply(&ops, &fence).await.map_err(|e| match e {
                ApplyError::Fenced => WriteError::Fenced,
                other => WriteError::Failed(other.to_string()),
            })
        }
    })
}

/// The status of every unit as last written (or found at the start of a
/// term), and the writer that changes it.
pub struct Statuses {
    keys: KayleeKeys,
    writes: Coalescer<(String, Option<String>)>,
    /// Status JSON last written (or found) per unit, so unchanged status is
    /// never rewritten.
    written: DashMap<String, String>,
}

impl Statuses {
    /// Must run within a tokio runtime: it starts the writer.
    pub fn new(client: Client, etcd: EtcdConfig, fence: Fence, max_ops: usize) -> Statuses {
        Statuses {
            keys: KayleeKeys::new(&etcd.prefix),
            writes: status_writer(client, etcd, fence, max_ops),
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

    /// The stored status of `name`, if it parses.
    pub fn get(&self, name: &str) -> Option<UnitStatus> {
        self.written
            .get(name)
            .and_then(|s| serde_json::from_str::<UnitStatus>(&s).ok())
    }

    /// Writes (or, for a deleted unit, removes) the status key when it
    /// changed; logs an invalid unit once per distinct error.
    pub async fn publish(&self, name: &str, status: Option<UnitStatus>) -> Result<(), WriteError> {
        let json = status.as_ref().map(UnitStatus::to_json);
        let previous = self.written.get(name).map(|v| v.clone());
        if json == previous {
            return Ok(());
        }
        if let Some(error) = status.as_ref().and_then(|s| s.error.as_ref())
            && newly_invalid(previous.as_deref(), error)
        {
            tracing::warn!(unit = name, %error, "unit is invalid; its fleet units are left as they are");
        }
        self.writes
            .submit(vec![(self.keys.status(name), json.clone())])
            .await?;
        match json {
            Some(j) => self.written.insert(name.to_string(), j),
            None => self.written.remove(name).map(|(_, v)| v),
        };
        Ok(())
    }
}

/// Status writes (`key`, new JSON or `None` to delete), fenced and batched.
fn status_writer(
    client: Client,
    etcd: EtcdConfig,
    fence: Fence,
    max_ops: usize,
) -> Coalescer<(String, Option<String>)> {
    Coalescer::spawn(
        max_ops,
        |_| 1,
        move |writes: Vec<(String, Option<String>)>| {
            let (client, etcd, fence) = (client.clone(), etcd.clone(), fence.clone());
            async move {
                // The same unit's status twice in one batch: the later one wins.
                let mut last: std::collections::BTreeMap<String, Option<String>> =
                    Default::default();
                for (key, value) in writes {
                    last.insert(key, value);
                }
                let ops: Vec<TxnOp> = last
                    .into_iter()
                    .map(|(key, value)| match value {
                        Some(v) => TxnOp::put(key, v, None),
                        None => TxnOp::delete(key, None),
                    })
                    .collect();
                let mut kv = client.kv_client();
                let txn = Txn::new().when([fence.compare()]).and_then(ops);
                match etcd.timed(kv.txn(txn)).await {
                    Ok(r) if r.succeeded() => Ok(()),
                    Ok(_) => Err(WriteError::Fenced),
                    Err(e) => Err(WriteError::Failed(e.to_string())),
                }
            }
        },
    )
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

#[cfg(test)]
mod tests {
    use super::{UnitStatus, newly_invalid};

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
}
