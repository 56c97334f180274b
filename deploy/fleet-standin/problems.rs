//! Problems logged once per kind, not once per round: while etcd is down
//! every round fails the same way, and one line says it as well as a
//! thousand. A kind that works again is logged once more, as recovered.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::sync::Mutex;

/// The kinds of problem going on now, and notices already given.
#[derive(Debug, Default)]
pub struct Problems {
    active: Mutex<HashMap<String, String>>,
    noticed: Mutex<HashSet<String>>,
}

impl Problems {
    /// `kind` failed with `detail`: logged unless `kind` is already failing.
    pub fn report(&self, kind: &str, detail: impl Display) {
        let detail = detail.to_string();
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if !active.contains_key(kind) {
            tracing::warn!(problem = kind, "{detail} (logged once until it recovers)");
            active.insert(kind.to_string(), detail);
        }
    }

    /// `kind` worked: logged if it was failing.
    pub fn resolved(&self, kind: &str) {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(detail) = active.remove(kind) {
            tracing::info!(problem = kind, "recovered (was: {detail})");
        }
    }

    /// Forgets `kind` without a word (its subject is gone, e.g. a unit
    /// stopped for good), so a later failure of the same kind is logged.
    pub fn forget(&self, kind: &str) {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        active.remove(kind);
    }

    /// Logs `message` at info the first time `kind` is noticed, never again.
    pub fn notice(&self, kind: &str, message: impl Display) {
        let mut noticed = self.noticed.lock().unwrap_or_else(|e| e.into_inner());
        if noticed.insert(kind.to_string()) {
            tracing::info!("{message}");
        }
    }

    /// Records the outcome of one try of `kind`.
    pub fn outcome<T, E: Display>(&self, kind: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => {
                self.resolved(kind);
                Some(v)
            }
            Err(e) => {
                self.report(kind, e);
                None
            }
        }
    }
}
