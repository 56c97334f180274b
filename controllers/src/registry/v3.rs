//! fleet's registry laid out as flat etcd v3 keys, written in transactions
//! fenced by the leader key.

use super::txn::{EtcdOp, txn_ops};
use super::{ApplyError, FleetRegistry, Write};
use crate::etcd::EtcdConfig;
use crate::etcd::EtcdPrefix;
use crate::etcd::election::Fence;
use crate::keys::FleetKeys;
use etcd_client::{Client, Txn, TxnOp};
use std::collections::HashSet;

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// Well under etcd's default 1.5 MiB request limit.
const MAX_TXN_BYTES: usize = 1024 * 1024;

/// fleet's registry as flat v3 keys (`--fleet-etcd-api v3`): the same keys
/// and values as fleet's v2 ones, which fleet itself never sees; every
/// batch is one or more transactions guarded by the leader fence.
#[derive(Clone)]
pub struct V3Registry {
    client: Client,
    config: EtcdConfig,
    keys: FleetKeys,
    max_txn_ops: usize,
}

impl V3Registry {
    /// A registry over `client`, with `config`'s request timeout, laid out
    /// as `keys`. `max_txn_ops` caps the operations in one transaction and
    /// must not exceed the cluster's `--max-txn-ops` ([`DEFAULT_MAX_TXN_OPS`]
    /// by default); values below 3 are raised to 3 so a create (three puts)
    /// always fits in one transaction.
    pub fn new(client: Client, config: EtcdConfig, keys: FleetKeys, max_txn_ops: usize) -> Self {
        V3Registry {
            client,
            config,
            keys,
            max_txn_ops: max_txn_ops.max(3),
        }
    }

    async fn send_txn(&self, ops: Vec<TxnOp>, fence: &Fence) -> Result<(), ApplyError> {
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

/// Ops as the transactions that carry them (more than one when they exceed
/// etcd's limits), and what they count for the metrics.
#[derive(Default)]
pub struct V3Batch {
    txns: Vec<Vec<TxnOp>>,
    creates: u64,
    destroys: u64,
}

impl FleetRegistry for V3Registry {
    type Source = EtcdPrefix;
    type Prepared = V3Batch;

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

    fn prepare(&self, ops: Vec<Write>) -> V3Batch {
        let mut prepared = V3Batch::default();
        let mut batch = Vec::new();
        let mut bytes = 0;
        // etcd refuses a transaction that names one key twice.
        let mut seen: HashSet<String> = HashSet::new();
        for op in ops {
            match op {
                Write::Create { .. } => prepared.creates += 1,
                Write::Destroy { .. } => prepared.destroys += 1,
                Write::Kaylee { .. } => {}
            }
            let writes = txn_ops(&self.keys, op);
            let size: usize = writes.iter().map(EtcdOp::size).sum();
            let fresh: Vec<EtcdOp> = writes
                .into_iter()
                .filter(|w| !seen.contains(w.key()))
                .collect();
            if !batch.is_empty()
                && (batch.len() + fresh.len() > self.max_txn_ops || bytes + size > MAX_TXN_BYTES)
            {
                prepared.txns.push(std::mem::take(&mut batch));
                bytes = 0;
                seen.clear();
            }
            for write in fresh {
                seen.insert(write.key().to_string());
                batch.push(write.into_op());
            }
            bytes += size;
        }
        if !batch.is_empty() {
            prepared.txns.push(batch);
        }
        prepared
    }

    async fn commit(&self, prepared: V3Batch, fence: &Fence) -> Result<(), ApplyError> {
        for txn in prepared.txns {
            self.send_txn(txn, fence).await?;
        }
        metrics::counter!("kaylee_fleet_writes_total", "op" => "create")
            .increment(prepared.creates);
        metrics::counter!("kaylee_fleet_writes_total", "op" => "destroy")
            .increment(prepared.destroys);
        Ok(())
    }
}
