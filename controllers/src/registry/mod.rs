//! fleet's registry as Kaylee sees it: two sources to watch (jobs and
//! states, only names with Kaylee's unit prefix) and one fenced way to
//! write (create and destroy units). The controller does not know which etcd
//! API is behind it.

mod any;
#[cfg(test)]
pub(crate) mod memory;
mod txn;
mod v2;
mod v2_fence;
mod v2_source;
mod v3;

pub use any::{AnyPrepared, AnyRegistry, AnySource, FleetApi};
pub use v2::{FENCE_FRESH, MAX_IN_FLIGHT, V2Registry};
pub use v2_source::V2Prefix;
pub use v3::{DEFAULT_MAX_TXN_OPS, V3Batch, V3Registry};

use crate::etcd::EtcdError;
use crate::fleet::records::{Record, create_records};
use crate::keys::FleetKeys;
use crate::runtime::Source;
use crate::runtime::election::Fence;
use std::future::Future;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetOp {
    /// Submit and start a unit: `unit/<sha1>`, `job/<name>/object`,
    /// `job/<name>/target-state` = `launched` (see [`FleetOp::create`]).
    Create { name: String, records: [Record; 3] },
    /// Remove the whole `job/<name>/` directory (fleet keeps `unit/<sha1>`).
    Destroy { name: String },
    /// One of Kaylee's own keys (an etcd v3 key whatever the fleet API):
    /// a unit's status or history record; `None` deletes it. It rides in
    /// the same fenced batches as fleet writes, so statuses do not double
    /// the transactions.
    Kaylee { key: String, value: Option<String> },
}

impl FleetOp {
    /// Creates job `name` from unit file `text`. The records (a SHA-1 and
    /// JSON of the whole unit file) are made here, by the reconcile that
    /// plans the create, so the single writer that keeps fleet's
    /// transactions going spends nothing on them between two commits.
    pub fn create(name: &str, text: &str) -> FleetOp {
        FleetOp::Create {
            name: name.to_string(),
            records: create_records(name, text),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("leadership lost: the write was refused by the fence")]
    Fenced,
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("{0}")]
    Failed(String),
}

pub trait FleetRegistry: Send + Sync + 'static {
    type Source: Source + Clone;
    /// A batch of ops made ready to send.
    type Prepared: Send + 'static;

    fn keys(&self) -> &FleetKeys;
    /// `<fleet>job/<unit-prefix>:…`
    fn jobs_source(&self) -> Self::Source;
    /// `<fleet>states/<unit-prefix>:…`
    fn states_source(&self) -> Self::Source;
    /// Any narrower prefix of the registry (e.g. one unit's jobs, for the
    /// CLI), as an absolute key prefix.
    fn source(&self, prefix: String) -> Self::Source;
    /// Writes `ops` only while `fence` holds. Through v3 each op is atomic
    /// and as many ops as fit go in one transaction; through v2 (no
    /// transactions) a job's object is written last, so a job is never seen
    /// half made, and each request waits for a fresh leadership check.
    fn apply(
        &self,
        ops: Vec<FleetOp>,
        fence: &Fence,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send {
        self.commit(self.prepare(ops), fence)
    }
    /// How much (in etcd operations: a create 3, any other op 1) the writer
    /// may put in one batch: one transaction's worth (`max_txn_ops`) by
    /// default; more where a batch is not one transaction (v2).
    fn batch_weight(&self, max_txn_ops: usize) -> usize {
        max_txn_ops
    }
    /// The CPU half of [`FleetRegistry::apply`]: `ops` as requests, built
    /// while the previous batch is on the wire.
    fn prepare(&self, ops: Vec<FleetOp>) -> Self::Prepared;
    /// The network half of [`FleetRegistry::apply`].
    fn commit(
        &self,
        prepared: Self::Prepared,
        fence: &Fence,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;
}
