//! fleet's registry laid out as flat etcd v3 keys, written in transactions
//! fenced by the leader key.

use super::{ApplyError, FleetOp, FleetRegistry};
use crate::etcd::EtcdConfig;
use crate::fleet::records::create_records;
use crate::keys::FleetKeys;
use crate::runtime::EtcdPrefix;
use crate::runtime::election::Fence;
use etcd_client::{Client, DeleteOptions, Txn, TxnOp};
use std::collections::HashSet;

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// Well under etcd's default 1.5 MiB request limit.
const MAX_TXN_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct V3Registry {
    client: Client,
    config: EtcdConfig,
    keys: FleetKeys,
    max_txn_ops: usize,
}

impl V3Registry {
    pub fn new(client: Client, config: EtcdConfig, keys: FleetKeys, max_txn_ops: usize) -> Self {
        V3Registry {
            client,
            config,
            keys,
            max_txn_ops: max_txn_ops.max(3),
        }
    }

    async fn commit(&self, ops: Vec<TxnOp>, fence: &Fence) -> Result<(), ApplyError> {
        if ops.is_empty() {
            return Ok(());
        }
        let count = ops.len();
        let mut kv = self.client.kv_client();
        let txn = Txn::new().when([fence.compare()]).and_then(ops);
        let resp = self.config.timed(kv.txn(txn)).await?;
        if resp.succeeded() {
            // The revision ties each fleet write to the server that made it
            // (etcd does not record the writer), for audits and the chaos
            // test's check that only the leader of the moment writes.
            let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            tracing::debug!(revision, ops = count, "fleet transaction committed");
            Ok(())
        } else {
            Err(ApplyError::Fenced)
        }
    }
}

/// One op's etcd operations, which must land in the same transaction.
fn txn_ops(keys: &FleetKeys, op: &FleetOp) -> (Vec<(String, Option<String>)>, usize) {
    match op {
        FleetOp::Create { name, text } => {
            let records = create_records(name, text);
            let size = records.iter().map(|r| r.key.len() + r.value.len()).sum();
            let puts = records
                .into_iter()
                .map(|r| (keys.absolute(&r.key), Some(r.value)))
                .collect();
            (puts, size)
        }
        FleetOp::Destroy { name } => {
            let dir = keys.job(name);
            let size = dir.len();
            (vec![(dir, None)], size)
        }
    }
}

impl FleetRegistry for V3Registry {
    type Source = EtcdPrefix;

    fn keys(&self) -> &FleetKeys {
        &self.keys
    }

    fn jobs_source(&self) -> EtcdPrefix {
        self.source(self.keys.jobs())
    }

    fn states_source(&self) -> EtcdPrefix {
        self.source(self.keys.states())
    }

    fn source(&self, prefix: String) -> EtcdPrefix {
        EtcdPrefix::new(self.client.clone(), self.config.clone(), prefix)
    }

    async fn apply(&self, ops: &[FleetOp], fence: &Fence) -> Result<(), ApplyError> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        // etcd refuses a transaction that names one key twice.
        let mut seen: HashSet<String> = HashSet::new();
        for op in ops {
            let (writes, size) = txn_ops(&self.keys, op);
            let fresh: Vec<_> = writes
                .into_iter()
                .filter(|(k, _)| !seen.contains(k))
                .collect();
            if !batch.is_empty()
                && (batch.len() + fresh.len() > self.max_txn_ops || bytes + size > MAX_TXN_BYTES)
            {
                self.commit(std::mem::take(&mut batch), fence).await?;
                bytes = 0;
                seen.clear();
            }
            for (key, value) in fresh {
                seen.insert(key.clone());
                batch.push(match value {
                    Some(v) => TxnOp::put(key, v, None),
                    None => TxnOp::delete(key, Some(DeleteOptions::new().with_prefix())),
                });
            }
            bytes += size;
            let kind = if matches!(op, FleetOp::Create { .. }) {
                "create"
            } else {
                "destroy"
            };
            metrics::counter!("kaylee_fleet_writes_total", "op" => kind).increment(1);
        }
        self.commit(batch, fence).await
    }
}
