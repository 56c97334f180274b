//! The agents' writes about units: `states/<name>/<machine>` (and the
//! legacy `state/<name>`) on the state TTL, written when they change, and
//! the `job/<name>/job-state` heartbeat of a launched unit.

use crate::problems::Problems;
use crate::records::{job_object_key, job_state_key, legacy_state_key, state_key, state_value};
use crate::status::Status;
use crate::store::{Store, Ttl};
use std::collections::HashMap;
use std::sync::Arc;

const KIND: &str = "etcd: unit states";

/// What this process has published.
pub struct Publisher {
    store: Arc<Store>,
    problems: Arc<Problems>,
    /// (unit, machine) → the state value written.
    states: HashMap<(String, String), String>,
    /// unit → the machine its job-state names.
    job_states: HashMap<String, String>,
}

impl Publisher {
    /// Nothing published yet.
    pub fn new(store: Arc<Store>, problems: Arc<Problems>) -> Publisher {
        Publisher {
            store,
            problems,
            states: HashMap::new(),
            job_states: HashMap::new(),
        }
    }

    /// Publishes `machine`'s state of unit `name` if it changed.
    pub async fn state(&mut self, name: &str, machine: &str, status: Status, hash_hex: &str) {
        let value = state_value(&status, machine, hash_hex);
        let key = (name.to_string(), machine.to_string());
        if self.states.get(&key) == Some(&value) {
            return;
        }
        let written = async {
            self.store
                .put_ttl(Ttl::State, &state_key(name, machine), &value, None)
                .await?;
            self.store
                .put_ttl(Ttl::State, &legacy_state_key(name), &value, None)
                .await
        }
        .await;
        if self.problems.outcome(KIND, written).is_some() {
            self.states.insert(key, value);
        }
    }

    /// Deletes `machine`'s state of unit `name` (and the legacy one).
    pub async fn remove_state(&mut self, name: &str, machine: &str) {
        self.states.remove(&(name.to_string(), machine.to_string()));
        let removed = async {
            self.store
                .remove(Ttl::State, &state_key(name, machine))
                .await?;
            self.store.remove(Ttl::State, &legacy_state_key(name)).await
        }
        .await;
        self.problems.outcome(KIND, removed);
    }

    /// Says `machine` has unit `name` launched (`Some`), or no machine of
    /// this process has (`None`).
    pub async fn job_state(&mut self, name: &str, machine: Option<&str>) {
        if self.job_states.get(name).map(String::as_str) == machine {
            return;
        }
        let key = job_state_key(name);
        let written = match machine {
            Some(m) => {
                self.store
                    .put_ttl(Ttl::Machine, &key, m, Some(&job_object_key(name)))
                    .await
            }
            None => self.store.remove(Ttl::Machine, &key).await,
        };
        if self.problems.outcome(KIND, written).is_some() {
            match machine {
                Some(m) => self.job_states.insert(name.to_string(), m.to_string()),
                None => self.job_states.remove(name),
            };
        }
    }
}
