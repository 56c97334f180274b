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
mod v3;

pub use any::{AnyPrepared, AnyRegistry, AnySource, FleetApi};
pub use v2::{FENCE_FRESH, MAX_IN_FLIGHT, V2Registry};
pub use v3::{DEFAULT_MAX_TXN_OPS, V3Batch, V3Registry};

use crate::etcd::EtcdError;
use crate::etcd::election::Fence;
use crate::fleet::records::{Record, create_records};
use crate::keys::FleetKeys;
use crate::runtime::Source;
use std::future::Future;

/// One write the units controller sends through its fenced writer: a
/// fleet job created or destroyed, or one of Kaylee's own keys put or
/// deleted. Each registry turns it into etcd operations that land
/// together (one transaction through v3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Submit and start a unit: `unit/<sha1>`, `job/<name>/object`,
    /// `job/<name>/target-state` = `launched` (see [`Write::create`]).
    Create {
        /// The fleet unit name, `<prefix>:<unit>:…:<replica>.service`.
        name: String,
        /// The three records in fleet's order ([`create_records`]); keys are
        /// relative to the fleet prefix.
        records: [Record; 3],
    },
    /// Remove the whole `job/<name>/` directory (fleet keeps `unit/<sha1>`).
    Destroy {
        /// The fleet unit name whose `job/<name>/` goes.
        name: String,
    },
    /// One of Kaylee's own keys (an etcd v3 key whatever the fleet API):
    /// a unit's status or history record; `None` deletes it. It rides in
    /// the same fenced batches as fleet writes, so statuses do not double
    /// the transactions.
    Kaylee {
        /// The absolute etcd key, Kaylee's prefix included (e.g.
        /// `/kaylee/status/<unit>`).
        key: String,
        /// The value to put, or `None` to delete the key.
        value: Option<String>,
    },
}

impl Write {
    /// Creates job `name` from unit file `text`. The records (a SHA-1 and
    /// JSON of the whole unit file) are made here, by the reconcile that
    /// plans the create, so the single writer that keeps fleet's
    /// transactions going spends nothing on them between two commits.
    pub fn create(name: &str, text: &str) -> Write {
        Write::Create {
            name: name.to_string(),
            records: create_records(name, text),
        }
    }
}

/// Why [`FleetRegistry::commit`] wrote nothing, or not all: the batch's
/// ops may have landed in part (through v2 only), which the next
/// reconcile corrects.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The leader fence refused the write: leadership is lost.
    #[error("leadership lost: the write was refused by the fence")]
    Fenced,
    /// etcd failed or did not answer in time.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// A batch prepared for one fleet API was handed to the other's
    /// registry (a bug in the caller, refused rather than sent).
    #[error("a batch prepared for one fleet API was sent through the other")]
    WrongApi,
    /// The registry is shutting down (its request slots are closed).
    #[error("the fleet writer stopped")]
    WriterStopped,
}

/// fleet's registry through one etcd API: where to watch jobs and states,
/// and the fenced writer. Implemented by [`V2Registry`], [`V3Registry`] and
/// [`AnyRegistry`] (either, chosen at start-up).
pub trait FleetRegistry: Send + Sync + 'static {
    /// What the informers list and watch: a key prefix through this API.
    type Source: Source + Clone;
    /// A batch of ops made ready to send.
    type Prepared: Send + 'static;

    /// The registry's layout: the fleet prefix and the unit prefix.
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
        ops: Vec<Write>,
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
    fn prepare(&self, ops: Vec<Write>) -> Self::Prepared;
    /// The network half of [`FleetRegistry::apply`].
    fn commit(
        &self,
        prepared: Self::Prepared,
        fence: &Fence,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;
}
