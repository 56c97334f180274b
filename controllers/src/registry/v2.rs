//! fleet's registry through etcd's v2 keys API, where real fleet reads and
//! writes it: the same record bytes as [`super::V3Registry`], plain v2 keys
//! and directories, and a leadership check in front of every request.
//!
//! Fencing. v2 writes cannot join a v3 transaction, so they cannot carry the
//! compare on the leader key that makes v3 writes safe. Instead two rules
//! ([`super::v2_fence`]), both on linearizable v3 reads of the leader key
//! that must find it with the create revision this leadership began with:
//! every batch begins only after such a read that began after the batch was
//! handed over (so no batch formed after the key was lost writes anything),
//! and each v2 request of the batch starts only if the latest successful
//! read began at most [`FENCE_FRESH`] (20 ms) earlier (one read at a time,
//! shared, the next begun in the background once the last is 10 ms old).
//! The key was lost after that read began, so a deposed leader can still
//! start the writes of a batch it had begun for at most 20 ms after losing
//! the key (by its own clock: a pause between the age check and the send —
//! no await lies between them but the HTTP client's — counts in the
//! window), and each lands within its request deadline. Each such write is
//! a whole fleet record (the object goes last) that the new leader sees
//! through its watch and, plans being level-triggered, corrects on its next
//! reconcile.

use super::txn::{EtcdOp, txn_ops};
pub use super::v2_fence::FENCE_FRESH;
use super::v2_fence::{Check, FenceClock};
use super::{ApplyError, FleetRegistry, Write};
use crate::etcd::election::Fence;
use crate::etcd::v2::V2Prefix;
use crate::etcd::v2::{V2Client, V2Error, code};
use crate::etcd::{EtcdConfig, EtcdError};
use crate::fleet::records::Record;
use crate::keys::FleetKeys;
use etcd_client::{Client, Txn, TxnOp};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// v2 has no transactions: a create is three requests. Up to this many v2
/// requests are in flight at once, across every op of a batch.
pub const MAX_IN_FLIGHT: usize = 64;

/// The most a batch of v2 writes weighs (a create 3, any other op 1): as
/// many as the workers queue, so that the requests of one batch keep
/// [`MAX_IN_FLIGHT`] busy and batch boundaries (where the writer waits for
/// the slowest request and the statuses) are rare. Its statuses go in v3
/// transactions of at most `--max-txn-ops` operations.
pub const MAX_BATCH_WEIGHT: usize = 1024;

/// fleet's registry through etcd's v2 keys API (what fleet v1.0.0 reads),
/// with Kaylee's own keys and the leadership check through v3.
#[derive(Clone)]
pub struct V2Registry {
    client: V2Client,
    /// For the leadership check, which lives in Kaylee's v3 keys.
    v3: Client,
    config: EtcdConfig,
    keys: FleetKeys,
    /// Operations per status transaction (`--max-txn-ops`).
    max_txn_ops: usize,
    fence_clock: FenceClock,
    in_flight: Arc<Semaphore>,
}

fn etcd(e: V2Error) -> ApplyError {
    ApplyError::Etcd(EtcdError::V2(e))
}

impl V2Registry {
    /// A registry writing through `client`, fenced through `v3`.
    pub fn new(
        client: V2Client,
        v3: Client,
        config: EtcdConfig,
        keys: FleetKeys,
        max_txn_ops: usize,
    ) -> Self {
        V2Registry {
            client,
            v3,
            config,
            keys,
            max_txn_ops: max_txn_ops.max(1),
            fence_clock: FenceClock::default(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Whether `fence` still holds, read through the raft log (the v3
    /// default), so a deposed leader cannot read its own stale view.
    async fn leads(&self, fence: &Fence) -> Result<bool, ApplyError> {
        let mut kv = self.v3.kv_client();
        let resp = self.config.timed(kv.get(fence.key.clone(), None)).await?;
        Ok(matches!(resp.kvs().first(),
            Some(k) if k.create_revision() == fence.create_revision))
    }

    /// The check [`FenceClock`] runs for `fence`.
    fn check_of(&self, fence: &Fence) -> Check {
        let (me, fence) = (self.clone(), fence.clone());
        Arc::new(move || {
            let (me, fence) = (me.clone(), fence.clone());
            Box::pin(async move { me.leads(&fence).await })
        })
    }

    /// Sends one v2 request once a slot is free and the fence admits it
    /// (checked after the slot, so right before the send).
    async fn fenced<F, Fut>(&self, fence: &Fence, check: &Check, send: F) -> Result<(), ApplyError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), V2Error>>,
    {
        let _slot = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| ApplyError::WriterStopped)?;
        self.fence_clock.admit(fence, check).await?;
        send().await.map_err(etcd)
    }

    /// Writes `unit/` and `target-state` (at once), then `object`: fleet
    /// (and Kaylee) only see a job through its object, so no reader ever
    /// sees a half-made job.
    async fn create(
        &self,
        records: &[Record; 3],
        fence: &Fence,
        check: &Check,
    ) -> Result<(), ApplyError> {
        let [unit, object, target_state] = records;
        let (unit_key, state_key, object_key) = (
            self.keys.absolute(&unit.key),
            self.keys.absolute(&target_state.key),
            self.keys.absolute(&object.key),
        );
        // Content-addressed and shared between jobs, as fleet's client
        // treats it: an existing one is already right.
        let unit_put = async {
            match self
                .fenced(fence, check, || {
                    self.client.set(&unit_key, &unit.value, Some(false))
                })
                .await
            {
                Err(ApplyError::Etcd(EtcdError::V2(e))) if e.code() == Some(code::NODE_EXIST) => {
                    Ok(())
                }
                other => other,
            }
        };
        let state_put = self.fenced(fence, check, || {
            self.client.set(&state_key, &target_state.value, None)
        });
        let (unit_done, state_done) = futures::join!(unit_put, state_put);
        unit_done?;
        state_done?;
        self.fenced(fence, check, || {
            self.client.set(&object_key, &object.value, None)
        })
        .await?;
        Ok(())
    }

    /// Kaylee's own keys live in v3: transactions of at most
    /// `--max-txn-ops` operations, in order, each fenced by the leader key
    /// like every v3 write.
    async fn write_statuses(&self, ops: Vec<Write>, fence: &Fence) -> Result<(), ApplyError> {
        let writes: Vec<EtcdOp> = ops
            .into_iter()
            .flat_map(|op| txn_ops(&self.keys, op))
            .collect();
        let mut kv = self.v3.kv_client();
        let mut writes = writes.into_iter().peekable();
        while writes.peek().is_some() {
            let chunk: Vec<TxnOp> = writes
                .by_ref()
                .take(self.max_txn_ops)
                .map(EtcdOp::into_op)
                .collect();
            let txn = Txn::new().when([fence.compare()]).and_then(chunk);
            if !self.config.timed(kv.txn(txn)).await?.succeeded() {
                return Err(ApplyError::Fenced);
            }
        }
        Ok(())
    }

    async fn write(&self, op: &Write, fence: &Fence, check: &Check) -> Result<(), ApplyError> {
        let kind = match op {
            Write::Create { records, .. } => {
                self.create(records, fence, check).await?;
                "create"
            }
            Write::Destroy { name } => {
                self.destroy(name, fence, check).await?;
                "destroy"
            }
            Write::Kaylee { .. } => return Ok(()),
        };
        metrics::counter!("kaylee_fleet_writes_total", "op" => kind).increment(1);
        Ok(())
    }

    async fn destroy(&self, name: &str, fence: &Fence, check: &Check) -> Result<(), ApplyError> {
        let dir = self.keys.job(name);
        let dir = dir.trim_end_matches('/');
        match self
            .fenced(fence, check, || self.client.delete(dir, true))
            .await
        {
            Err(ApplyError::Etcd(EtcdError::V2(e))) if e.code() == Some(code::KEY_NOT_FOUND) => {
                Ok(())
            }
            other => other.map(|_| ()),
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

    fn batch_weight(&self, _max_txn_ops: usize) -> usize {
        MAX_BATCH_WEIGHT
    }

    async fn commit(&self, ops: Vec<Write>, fence: &Fence) -> Result<(), ApplyError> {
        let (statuses, fleet): (Vec<Write>, Vec<Write>) = ops
            .into_iter()
            .partition(|op| matches!(op, Write::Kaylee { .. }));
        // Ops of one batch name different jobs (a plan never destroys and
        // creates one name at once), so their order does not matter: all
        // go at once, up to MAX_IN_FLIGHT requests, each one fenced. The
        // first failure ends the batch.
        let check = self.check_of(fence);
        if !fleet.is_empty() {
            self.fence_clock.admit_batch(fence, &check).await?;
        }
        let writes = fleet.iter().map(|op| self.write(op, fence, &check));
        futures::future::try_join_all(writes).await?;
        // After the fleet writes they report.
        self.write_statuses(statuses, fence).await
    }
}
