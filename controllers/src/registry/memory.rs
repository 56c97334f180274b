//! An in-memory [`FleetRegistry`] for tests of what writes through a
//! registry (the status writer, the batching), the way kube-runtime's
//! applier is tested against an in-memory store: it records every committed
//! batch, and can be told to fail or to refuse as a lost fence would.

use super::{ApplyError, FleetRegistry, Write};
use crate::etcd::election::Fence;
use crate::keys::FleetKeys;
use crate::runtime::{EventStream, Keep, Listing, Source, SourceError};
use std::sync::{Arc, Mutex};

/// How the next commits end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The batch is recorded and the commit succeeds.
    Commit,
    /// As etcd would fail: the batch is not written.
    Fail,
    /// As a lost fence refuses a deposed leader's writes.
    Fence,
}

/// Every committed batch, in order, and what the next commits do.
#[derive(Clone)]
pub struct MemoryRegistry {
    keys: FleetKeys,
    state: Arc<Mutex<(Vec<Vec<Write>>, Outcome)>>,
}

impl MemoryRegistry {
    /// An empty registry under fleet prefix `/f/`, unit prefix `k`, whose
    /// commits succeed until told otherwise.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry {
            keys: FleetKeys::new("/f/", "k"),
            state: Arc::new(Mutex::new((Vec::new(), Outcome::Commit))),
        }
    }

    /// What the next commits do.
    pub fn next(&self, outcome: Outcome) {
        if let Ok(mut s) = self.state.lock() {
            s.1 = outcome;
        }
    }

    /// Every batch committed so far.
    pub fn committed(&self) -> Vec<Vec<Write>> {
        self.state.lock().map(|s| s.0.clone()).unwrap_or_default()
    }
}

/// A source that lists nothing and never sees an event.
#[derive(Clone)]
pub struct Empty;

impl Source for Empty {
    async fn list_keeping(&self, _: &Keep<'_>) -> Result<Listing, SourceError> {
        Ok(Listing::default())
    }

    async fn watch(&self, _: i64) -> Result<EventStream, SourceError> {
        Ok(Box::pin(futures::stream::pending()))
    }
}

impl FleetRegistry for MemoryRegistry {
    type Source = Empty;
    type Prepared = Vec<Write>;

    fn keys(&self) -> &FleetKeys {
        &self.keys
    }
    fn jobs_source(&self) -> Empty {
        Empty
    }
    fn states_source(&self) -> Empty {
        Empty
    }
    fn source(&self, _: String) -> Empty {
        Empty
    }
    fn prepare(&self, ops: Vec<Write>) -> Vec<Write> {
        ops
    }

    async fn commit(&self, ops: Vec<Write>, _fence: &Fence) -> Result<(), ApplyError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| unreachable_etcd("the memory registry's lock is poisoned"))?;
        match state.1 {
            Outcome::Commit => {
                state.0.push(ops);
                Ok(())
            }
            Outcome::Fail => Err(unreachable_etcd("etcd did not answer (test)")),
            Outcome::Fence => Err(ApplyError::Fenced),
        }
    }
}

fn unreachable_etcd(why: &str) -> ApplyError {
    ApplyError::Etcd(crate::etcd::EtcdError::Unreachable(why.to_string()))
}
