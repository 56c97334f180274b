//! The controller runtime: informers fill caches, changes enqueue unit
//! names, workers reconcile one name at a time.

pub mod backoff;
pub mod cache;
pub mod coalesce;
pub mod informer;
pub mod queue;

pub use cache::Cache;
pub use informer::{EventStream, Item, Keep, Listing, Source, SourceError, WatchEvent};
pub use queue::WorkQueue;
