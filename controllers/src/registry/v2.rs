//! fleet's registry through etcd's v2 keys API, where real fleet reads and
//! writes it: the same record bytes as [`super::V3Registry`], plain v2 keys
//! and directories, and a leadership check before every batch of writes.
//!
//! Fencing. v2 writes cannot join a v3 transaction, so they cannot carry the
//! compare on the leader key that makes v3 writes safe. Instead every group
//! of [`PARALLEL_WRITES`] ops starts with a linearizable v3 read of the
//! leader key (it must still exist with the create revision this leadership
//! began with). What remains is a window: a leader deposed just after a
//! check (its lease expired while it was paused, say) can still land the
//! group it had begun — at most one request's deadline. Each write is a
//! whole fleet record (the object goes last) that the new leader sees
//! through its watch and, plans being level-triggered, corrects on its next
//! reconcile.

use super::txn::{EtcdOp, txn_ops};
use super::{ApplyError, FleetRegistry, Write};
use crate::etcd::election::Fence;
use crate::etcd::v2::V2Prefix;
use crate::etcd::v2::{V2Client, V2Error, code};
use crate::etcd::{EtcdConfig, EtcdError};
use crate::fleet::records::Record;
use crate::keys::FleetKeys;
use etcd_client::{Client, Txn, TxnOp};

/// v2 has no transactions: a create is three requests. Independent ops
/// (different jobs) go out this many at a time, each group after its own
/// leadership check.
const PARALLEL_WRITES: usize = 16;

#[derive(Clone)]
pub struct V2Registry {
    client: V2Client,
    /// For the leadership check, which lives in Kaylee's v3 keys.
    v3: Client,
    config: EtcdConfig,
    keys: FleetKeys,
}

fn etcd(e: V2Error) -> ApplyError {
    ApplyError::Etcd(EtcdError::V2(e))
}

impl V2Registry {
    pub fn new(client: V2Client, v3: Client, config: EtcdConfig, keys: FleetKeys) -> Self {
        V2Registry {
            client,
            v3,
            config,
            keys,
        }
    }

    /// Whether `fence` still holds, read through the raft log (the v3
    /// default), so a deposed leader cannot read its own stale view.
    async fn check_fence(&self, fence: &Fence) -> Result<(), ApplyError> {
        let mut kv = self.v3.kv_client();
        let resp = self.config.timed(kv.get(fence.key.clone(), None)).await?;
        match resp.kvs().first() {
            Some(k) if k.create_revision() == fence.create_revision => Ok(()),
            _ => Err(ApplyError::Fenced),
        }
    }

    /// Writes `target-state` before `object`: fleet (and Kaylee) only see a
    /// job through its object, so no reader ever sees a half-made job.
    async fn create(&self, records: &[Record; 3]) -> Result<(), ApplyError> {
        let [unit, object, target_state] = records;
        // Content-addressed and shared between jobs, as fleet's client
        // treats it: an existing one is already right.
        match self
            .client
            .set(&self.keys.absolute(&unit.key), &unit.value, Some(false))
            .await
        {
            Err(e) if e.code() != Some(code::NODE_EXIST) => return Err(etcd(e)),
            _ => {}
        }
        for record in [target_state, object] {
            self.client
                .set(&self.keys.absolute(&record.key), &record.value, None)
                .await
                .map_err(etcd)?;
        }
        Ok(())
    }

    /// Kaylee's own keys live in v3: one transaction fenced by the
    /// leader key, like every v3 write.
    async fn write_statuses(&self, ops: Vec<Write>, fence: &Fence) -> Result<(), ApplyError> {
        let txn_ops: Vec<TxnOp> = ops
            .into_iter()
            .flat_map(|op| txn_ops(&self.keys, op))
            .map(EtcdOp::into_op)
            .collect();
        if txn_ops.is_empty() {
            return Ok(());
        }
        let mut kv = self.v3.kv_client();
        let txn = Txn::new().when([fence.compare()]).and_then(txn_ops);
        match self.config.timed(kv.txn(txn)).await? {
            r if r.succeeded() => Ok(()),
            _ => Err(ApplyError::Fenced),
        }
    }

    async fn write(&self, op: &Write) -> Result<(), ApplyError> {
        let kind = match op {
            Write::Create { records, .. } => {
                self.create(records).await?;
                "create"
            }
            Write::Destroy { name } => {
                self.destroy(name).await?;
                "destroy"
            }
            Write::Kaylee { .. } => return Ok(()),
        };
        metrics::counter!("kaylee_fleet_writes_total", "op" => kind).increment(1);
        Ok(())
    }

    async fn destroy(&self, name: &str) -> Result<(), ApplyError> {
        let dir = self.keys.job(name);
        match self.client.delete(dir.trim_end_matches('/'), true).await {
            Err(e) if e.code() != Some(code::KEY_NOT_FOUND) => Err(etcd(e)),
            _ => Ok(()),
        }
    }
}

impl FleetRegistry for V2Registry {
    type Source = V2Prefix;
    type Prepared = Vec<Write>;

    fn keys(&self) -> &FleetKeys {
        &self.keys
    }

    fn jobs_source(&self) -> V2Prefix {
        self.source(self.keys.jobs())
    }

    fn states_source(&self) -> V2Prefix {
        self.source(self.keys.states())
    }

    fn source(&self, prefix: String) -> V2Prefix {
        V2Prefix::new(self.client.clone(), prefix)
    }

    /// Nothing to build ahead: v2 requests are made as they are sent.
    fn prepare(&self, ops: Vec<Write>) -> Vec<Write> {
        ops
    }

    async fn commit(&self, ops: Vec<Write>, fence: &Fence) -> Result<(), ApplyError> {
        let (statuses, fleet): (Vec<Write>, Vec<Write>) = ops
            .into_iter()
            .partition(|op| matches!(op, Write::Kaylee { .. }));
        // Ops of one batch name different jobs (a plan never destroys and
        // creates one name at once), so within a group order does not matter.
        for group in fleet.chunks(PARALLEL_WRITES) {
            self.check_fence(fence).await?;
            let writes = group.iter().map(|op| self.write(op));
            for result in futures::future::join_all(writes).await {
                result?;
            }
        }
        self.write_statuses(statuses, fence).await
    }
}
