//! An informer's in-memory copy of one etcd prefix (the reflector store),
//! indexed by Kaylee unit name so that reconciling one unit never scans the
//! whole cache.

use dashmap::DashMap;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use super::informer::Item;

type NameOf = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;
type KeepValue = Box<dyn Fn(&str, &[u8]) -> bool + Send + Sync>;

/// A cached value and the etcd revision (v2: index) it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value as stored in etcd, shared so reads do not copy it.
    pub bytes: Arc<[u8]>,
    /// The key's `mod_revision` (v3) or `modifiedIndex` (v2) of this value.
    pub revision: i64,
}

/// The keys of one watched prefix and their latest values, filled by an
/// informer's list and kept current by its watch; readers get copies (cheap
/// `Arc` clones), never locks held across an await.
pub struct Cache {
    entries: DashMap<String, Value>,
    index: DashMap<String, BTreeSet<String>>,
    name_of: NameOf,
    keep_value: KeepValue,
    /// Whether a new revision of the same bytes is a change. Keys that
    /// fleet's agents refresh with a TTL (`machines/`, `states/`) are
    /// re-put unchanged every few seconds; reconciling on each refresh
    /// would be all cost.
    revisions_matter: bool,
    /// Bumped after every applied batch, so writers can wait to read their
    /// own writes.
    generation: watch::Sender<u64>,
    synced: watch::Sender<bool>,
}

impl Cache {
    /// `name_of` maps a key to the Kaylee unit it belongs to; keys it maps to
    /// `None` are not cached at all.
    pub fn new(name_of: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Arc<Cache> {
        Cache::keeping(name_of, |_, _| true)
    }

    /// A cache that also holds a key only while `keep_value` accepts its
    /// value: a key whose new value it refuses is dropped, as if deleted.
    pub fn keeping(
        name_of: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        keep_value: impl Fn(&str, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Arc<Cache> {
        Arc::new(Cache {
            entries: DashMap::new(),
            index: DashMap::new(),
            name_of: Box::new(name_of),
            keep_value: Box::new(keep_value),
            revisions_matter: true,
            generation: watch::channel(0).0,
            synced: watch::channel(false).0,
        })
    }

    /// A cache for which only a new value is a change: a key re-put with
    /// the same bytes keeps its entry and reports nothing.
    pub fn values_only(
        name_of: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Arc<Cache> {
        let mut cache = Cache::keeping(name_of, |_, _| true);
        if let Some(c) = Arc::get_mut(&mut cache) {
            c.revisions_matter = false;
        }
        cache
    }

    /// Counts applied batches: equal generations, equal content.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// The cached value of the absolute `key`; `None` when the key is absent
    /// or was not kept.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.entries.get(key).map(|v| v.clone())
    }

    /// Every cached key of one unit, with its value, in key order.
    pub fn entries_of(&self, name: &str) -> Vec<(String, Value)> {
        let Some(keys) = self.index.get(name).map(|k| k.clone()) else {
            return Vec::new();
        };
        keys.into_iter()
            .filter_map(|k| self.get(&k).map(|v| (k, v)))
            .collect()
    }

    /// Every unit name with at least one key.
    pub fn names(&self) -> Vec<String> {
        self.index.iter().map(|e| e.key().clone()).collect()
    }

    /// How many keys are cached, over all units.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is cached (also true before the first list).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key`, with `value`, belongs in this cache.
    pub fn wants(&self, key: &str, value: &[u8]) -> bool {
        (self.name_of)(key).is_some() && (self.keep_value)(key, value)
    }

    /// Whether the first full list has been applied; it stays true through
    /// later relists and watch restarts.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    pub(crate) fn set_synced(&self) {
        self.synced.send_replace(true);
    }

    /// Waits until [`Cache::is_synced`]; no time limit (wrap it in a timeout
    /// when etcd may be unreachable).
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as the cache, so this only ends when synced.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Waits until `done` holds on this cache (checked after every applied
    /// batch), or `limit` passes. Returns whether it holds.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&Cache) -> bool) -> bool {
        let mut rx = self.generation.subscribe();
        let wait = async {
            loop {
                if done(self) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        done(self)
    }

    pub(crate) fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// The tests' shorthand for [`Cache::store`].
    #[cfg(test)]
    pub(crate) fn put(&self, key: &str, value: &[u8], revision: i64) -> Option<String> {
        self.store(Item {
            key: key.to_string(),
            value: value.to_vec(),
            revision,
        })
    }

    /// Stores an item; returns the unit to reconcile if anything changed.
    /// The item is owned so that its key moves into the cache: a large
    /// listing is never held twice.
    pub(crate) fn store(&self, item: Item) -> Option<String> {
        let name = (self.name_of)(&item.key)?;
        if !(self.keep_value)(&item.key, &item.value) {
            return self.delete(&item.key);
        }
        if self.entries.get(&item.key).is_some_and(|v| {
            *v.bytes == *item.value && (v.revision == item.revision || !self.revisions_matter)
        }) {
            return None;
        }
        let value = Value {
            bytes: Arc::from(item.value),
            revision: item.revision,
        };
        self.index
            .entry(name.clone())
            .or_default()
            .insert(item.key.clone());
        self.entries.insert(item.key, value);
        Some(name)
    }

    pub(crate) fn delete(&self, key: &str) -> Option<String> {
        self.entries.remove(key)?;
        let name = (self.name_of)(key)?;
        if let Some(mut keys) = self.index.get_mut(&name) {
            keys.remove(key);
        }
        self.index.remove_if(&name, |_, keys| keys.is_empty());
        Some(name)
    }

    /// Deletes every key under `prefix`; returns the units that lost keys.
    pub(crate) fn delete_prefix(&self, prefix: &str) -> BTreeSet<String> {
        let doomed: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.key().starts_with(prefix))
            .map(|e| e.key().clone())
            .collect();
        doomed.iter().filter_map(|k| self.delete(k)).collect()
    }

    /// Replaces the whole content after a (re)list; returns every unit whose
    /// keys changed, so a relist enqueues exactly what it missed.
    pub(crate) fn replace(&self, items: Vec<Item>) -> BTreeSet<String> {
        let stale: Vec<String> = {
            let fresh: HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
            self.entries
                .iter()
                .filter(|e| !fresh.contains(e.key().as_str()))
                .map(|e| e.key().clone())
                .collect()
        };
        let mut changed = BTreeSet::new();
        for key in stale {
            changed.extend(self.delete(&key));
        }
        for item in items {
            changed.extend(self.store(item));
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Arc<Cache> {
        Cache::new(|k| {
            k.strip_prefix("/u/")
                .map(|r| r.split('/').next().unwrap_or(r).to_string())
        })
    }

    #[test]
    fn index_follows_puts_and_deletes() {
        let c = cache();
        assert_eq!(c.put("/u/a/1", b"x", 1), Some("a".into()));
        assert_eq!(c.put("/u/a/1", b"x", 1), None, "same value is no change");
        assert_eq!(c.put("/u/a/2", b"y", 2), Some("a".into()));
        assert_eq!(
            c.put("/other", b"z", 3),
            None,
            "foreign keys are not cached"
        );
        assert_eq!(c.entries_of("a").len(), 2);
        assert_eq!(c.delete("/u/a/1"), Some("a".into()));
        assert_eq!(c.delete("/u/a/1"), None);
        assert_eq!(c.delete("/u/a/2"), Some("a".into()));
        assert!(c.names().is_empty());
    }

    #[test]
    fn a_value_the_cache_does_not_keep_drops_its_key() {
        let c = Cache::keeping(
            |k| k.strip_prefix("/u/").map(|r| r[..1].to_string()),
            |_, v| v != b"launched",
        );
        assert_eq!(c.put("/u/a/state", b"launched", 1), None, "not kept");
        assert!(!c.wants("/u/a/state", b"launched"));
        assert!(c.wants("/u/a/state", b"loaded"));
        assert_eq!(c.put("/u/a/state", b"loaded", 2), Some("a".into()));
        assert_eq!(
            c.put("/u/a/state", b"launched", 3),
            Some("a".into()),
            "dropping a kept key is a change"
        );
        assert!(c.get("/u/a/state").is_none());
        assert!(c.names().is_empty());
    }

    #[test]
    fn a_values_only_cache_ignores_refreshes() {
        let c = Cache::values_only(|k| k.strip_prefix("/m/").map(str::to_string));
        assert_eq!(c.put("/m/a", b"x", 1), Some("a".into()));
        assert_eq!(c.put("/m/a", b"x", 2), None, "a TTL refresh");
        assert_eq!(c.put("/m/a", b"y", 3), Some("a".into()));
        let r = cache();
        r.put("/u/a/1", b"x", 1);
        assert_eq!(
            r.put("/u/a/1", b"x", 2),
            Some("a".into()),
            "units need revisions"
        );
    }

    #[test]
    fn a_prefix_delete_removes_a_whole_directory() {
        let c = cache();
        c.put("/u/a/1", b"x", 1);
        c.put("/u/a/2", b"x", 1);
        c.put("/u/ab/1", b"x", 1);
        let gone = c.delete_prefix("/u/a/");
        assert_eq!(gone.into_iter().collect::<Vec<_>>(), ["a"]);
        assert!(c.entries_of("a").is_empty());
        assert_eq!(c.entries_of("ab").len(), 1, "only that directory");
        assert!(c.delete_prefix("/u/a/").is_empty());
    }

    #[test]
    fn replace_reports_only_what_changed() {
        let c = cache();
        c.put("/u/a/1", b"x", 1);
        c.put("/u/b/1", b"x", 1);
        c.put("/u/c/1", b"x", 1);
        let item = |key: &str, value: &[u8]| Item {
            key: key.into(),
            value: value.to_vec(),
            revision: 1,
        };
        let changed = c.replace(vec![
            item("/u/a/1", b"x"),
            item("/u/b/1", b"changed"),
            item("/u/d/1", b"new"),
        ]);
        assert_eq!(changed.into_iter().collect::<Vec<_>>(), ["b", "c", "d"]);
        assert!(c.get("/u/c/1").is_none());
    }

    #[tokio::test]
    async fn wait_until_sees_later_writes() {
        let c = cache();
        let c2 = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c2.put("/u/a/1", b"x", 1);
            c2.bump();
        });
        assert!(
            c.wait_until(Duration::from_secs(2), |c| c.get("/u/a/1").is_some())
                .await
        );
        assert!(
            !c.wait_until(Duration::from_millis(10), |c| c.get("/u/zzz").is_some())
                .await
        );
    }
}
