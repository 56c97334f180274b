//! fleet's registry under the prefix, through v2 or v3, with the writes
//! fleet makes: keys with a TTL kept alive (machines, states, job-state),
//! create-only and compare-and-delete (targets), and the engine's lease.
//!
//! Keys with a TTL are remembered so they can be refreshed: on v2 by writing
//! them again (as fleet does), on v3 by keeping their lease alive (and
//! writing them again on a new lease when etcd lost the old one). Writes of
//! such keys, their deletes and refreshes are serialised, so a refresh never
//! brings back a key that was just deleted.

mod lease;
mod v2;
mod v3;

use crate::cli::{Api, Settings};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;
use v2::{Opts, V2, code};
use v3::V3;

/// Why a request failed.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// etcd did not answer (down, restarting, too slow).
    Unreachable(String),
    /// etcd answered, but not as expected.
    Refused(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unreachable(s) | StoreError::Refused(s) => f.write_str(s),
        }
    }
}

/// Which TTL a key lives by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// `--ttl`: machine entries, job-state heartbeats.
    Machine,
    /// `--state-ttl`: unit states.
    State,
}

enum Backend {
    V2(V2),
    // Boxed: the gRPC client is large and there is one per process.
    V3(Box<V3>),
}

/// A remembered key with a TTL.
#[derive(Debug, Clone)]
struct Entry {
    value: String,
    /// A key that must exist for this one to be (re)written.
    guard: Option<String>,
    /// Whether etcd has the current value (on v3: on the current lease).
    written: bool,
}

#[derive(Default)]
struct Remembered {
    keys: HashMap<Ttl, BTreeMap<String, Entry>>,
    /// Deletes that failed, retried by the next refresh (on v3 a lease kept
    /// alive would otherwise keep them forever).
    deletes: BTreeSet<String>,
    /// v3 leases by TTL, and the engine's.
    leases: HashMap<Ttl, i64>,
    engine_lease: Option<i64>,
}

impl Remembered {
    /// After a write of `abs`: etcd has it, or (its guard gone) it is
    /// forgotten.
    fn written(&mut self, ttl: Ttl, abs: &str, kept: bool) {
        let keys = self.keys.entry(ttl).or_default();
        if kept {
            if let Some(e) = keys.get_mut(abs) {
                e.written = true;
            }
        } else {
            keys.remove(abs);
        }
    }
}

/// fleet's registry.
pub struct Store {
    backend: Backend,
    prefix: String,
    ttls: HashMap<Ttl, Duration>,
    remembered: tokio::sync::Mutex<Remembered>,
}

impl Store {
    /// A store for the settings' endpoints and API; nothing is sent yet.
    pub async fn new(settings: &Settings) -> Result<Store, String> {
        let backend = match settings.api {
            Api::V2 => Backend::V2(V2::new(&settings.endpoints, settings.request_timeout)?),
            Api::V3 => Backend::V3(Box::new(
                V3::new(&settings.endpoints, settings.request_timeout).await?,
            )),
        };
        Ok(Store {
            backend,
            prefix: settings.prefix.clone(),
            ttls: HashMap::from([
                (Ttl::Machine, settings.ttl),
                (Ttl::State, settings.state_ttl),
            ]),
            remembered: tokio::sync::Mutex::new(Remembered::default()),
        })
    }

    fn abs(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Every key under `dir` (relative, e.g. `job/`), relative to the prefix.
    pub async fn list(&self, dir: &str) -> Result<Vec<(String, String)>, StoreError> {
        let keys = match &self.backend {
            Backend::V2(c) => c.list(&self.abs(dir)).await?,
            Backend::V3(c) => c.list(&self.abs(dir)).await?,
        };
        Ok(keys
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&self.prefix)?.to_string(), v)))
            .collect())
    }

    /// The value of one key.
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::V2(c) => c.get(&self.abs(key)).await,
            Backend::V3(c) => Ok(c.get(&self.abs(key)).await?.map(|(v, _)| v)),
        }
    }

    /// Creates `key` unless it exists (v2 `prevExist=false`), and on v3 only
    /// while `guard` exists; whether it was created.
    pub async fn create(
        &self,
        key: &str,
        value: &str,
        guard: Option<&str>,
    ) -> Result<bool, StoreError> {
        let abs = self.abs(key);
        match &self.backend {
            Backend::V2(c) => {
                let opts = Opts {
                    prev_exist: Some(false),
                    ..Opts::default()
                };
                match c.set(&abs, value, &opts).await? {
                    Ok(_) => Ok(true),
                    Err(f) if f.code == code::NODE_EXIST => Ok(false),
                    Err(f) => Err(v2::refused("PUT", &abs, &f)),
                }
            }
            Backend::V3(c) => {
                let mut when = vec![v3::absent(&abs)];
                when.extend(guard.map(|g| v3::present(&self.abs(g))));
                c.put_when(&abs, value, 0, when).await
            }
        }
    }

    /// Deletes `key` if it holds `value` (v2 `prevValue`); whether it did.
    pub async fn delete_if(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let abs = self.abs(key);
        match &self.backend {
            Backend::V2(c) => {
                let opts = Opts {
                    prev_value: Some(value),
                    ..Opts::default()
                };
                match c.delete(&abs, &opts).await? {
                    Ok(_) => Ok(true),
                    Err(f) if [code::KEY_NOT_FOUND, code::COMPARE_FAILED].contains(&f.code) => {
                        Ok(false)
                    }
                    Err(f) => Err(v2::refused("DELETE", &abs, &f)),
                }
            }
            Backend::V3(c) => c.delete_when(&abs, vec![v3::holds(&abs, value)]).await,
        }
    }

    /// Deletes one key; a missing one is fine.
    async fn delete_now(&self, abs: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::V2(c) => match c.delete(abs, &Opts::default()).await? {
                Ok(_) => Ok(()),
                Err(f) if f.code == code::KEY_NOT_FOUND => Ok(()),
                Err(f) => Err(v2::refused("DELETE", abs, &f)),
            },
            Backend::V3(c) => c.delete(abs).await,
        }
    }

    /// Writes `key` with the `ttl` and keeps it alive until
    /// [`Store::remove`]. With a `guard`, the key is written only while the
    /// guard exists (on v3 in the same transaction; on v2 refreshes only
    /// rewrite a key that still exists). When etcd does not answer the key
    /// is still remembered, and the next [`Store::refresh`] writes it.
    pub async fn put_ttl(
        &self,
        ttl: Ttl,
        key: &str,
        value: &str,
        guard: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut r = self.remembered.lock().await;
        let abs = self.abs(key);
        r.deletes.remove(&abs);
        let entry = Entry {
            value: value.to_string(),
            guard: guard.map(|g| self.abs(g)),
            written: false,
        };
        r.keys
            .entry(ttl)
            .or_default()
            .insert(abs.clone(), entry.clone());
        let kept = self.write_entry(&mut r, ttl, &abs, &entry, false).await?;
        r.written(ttl, &abs, kept);
        Ok(())
    }

    /// Stops refreshing `key` and deletes it (retried by later refreshes if
    /// etcd does not answer now).
    pub async fn remove(&self, ttl: Ttl, key: &str) -> Result<(), StoreError> {
        let mut r = self.remembered.lock().await;
        let abs = self.abs(key);
        if let Some(keys) = r.keys.get_mut(&ttl) {
            keys.remove(&abs);
        }
        match self.delete_now(&abs).await {
            Ok(()) => Ok(()),
            Err(e) => {
                r.deletes.insert(abs);
                Err(e)
            }
        }
    }

    /// Keeps every remembered key of `ttl` alive, writes those etcd does
    /// not have yet, and retries failed deletes.
    pub async fn refresh(&self, ttl: Ttl) -> Result<(), StoreError> {
        let mut r = self.remembered.lock().await;
        let deletes: Vec<String> = r.deletes.iter().cloned().collect();
        for abs in deletes {
            self.delete_now(&abs).await?;
            r.deletes.remove(&abs);
        }
        if let (Backend::V3(c), Some(&lease)) = (&self.backend, r.leases.get(&ttl))
            && !c.keep_alive(lease).await?
        {
            // etcd lost the lease (and with it the keys): write them again
            // on a new one.
            r.leases.remove(&ttl);
            for e in r.keys.entry(ttl).or_default().values_mut() {
                e.written = false;
            }
        }
        let entries: Vec<(String, Entry)> = r
            .keys
            .get(&ttl)
            .map(|keys| keys.iter().map(|(k, e)| (k.clone(), e.clone())).collect())
            .unwrap_or_default();
        for (abs, entry) in entries {
            // v2 keys live by being written again; v3 keys by their lease.
            if entry.written && matches!(self.backend, Backend::V3(_)) {
                continue;
            }
            let kept = self.write_entry(&mut r, ttl, &abs, &entry, true).await?;
            r.written(ttl, &abs, kept);
        }
        Ok(())
    }

    /// Writes one remembered key; false when its guard is gone (the key is
    /// then forgotten).
    async fn write_entry(
        &self,
        r: &mut Remembered,
        ttl: Ttl,
        abs: &str,
        entry: &Entry,
        again: bool,
    ) -> Result<bool, StoreError> {
        let duration = self.ttls[&ttl];
        match &self.backend {
            Backend::V2(c) => {
                let mut opts = Opts {
                    ttl: Some(duration),
                    ..Opts::default()
                };
                // A refresh must not bring back a key deleted with its job
                // directory; a first write (or one that expired) needs the
                // guard to exist right now.
                if again && entry.guard.is_some() {
                    opts.prev_exist = Some(true);
                    match c.set(abs, &entry.value, &opts).await? {
                        Ok(_) => return Ok(true),
                        Err(f) if f.code == code::KEY_NOT_FOUND => opts.prev_exist = None,
                        Err(f) => return Err(v2::refused("PUT", abs, &f)),
                    }
                }
                if let Some(guard) = &entry.guard
                    && c.get(guard).await?.is_none()
                {
                    return Ok(false);
                }
                match c.set(abs, &entry.value, &opts).await? {
                    Ok(_) => Ok(true),
                    Err(f) => Err(v2::refused("PUT", abs, &f)),
                }
            }
            Backend::V3(c) => {
                let lease = match r.leases.get(&ttl) {
                    Some(&id) => id,
                    None => {
                        let id = c.grant(duration).await?;
                        r.leases.insert(ttl, id);
                        id
                    }
                };
                let when: Vec<_> = entry.guard.iter().map(|g| v3::present(g)).collect();
                c.put_when(abs, &entry.value, lease, when).await
            }
        }
    }
}
