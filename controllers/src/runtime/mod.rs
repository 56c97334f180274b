//! The controller runtime: informers fill caches, changes enqueue unit
//! names, workers reconcile one name at a time.

pub mod cache;
pub mod coalesce;
pub mod election;
pub mod etcd_source;
pub mod informer;
pub mod queue;

pub use cache::Cache;
pub use etcd_source::EtcdPrefix;
pub use informer::{EventStream, Item, Keep, Listing, Source, SourceError, WatchEvent};
pub use queue::WorkQueue;
