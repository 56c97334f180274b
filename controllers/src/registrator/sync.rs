//! The resync: the keys the running containers call for, the diff from the
//! keys this machine has in etcd (the few writes that make the first match
//! the second), and those writes, in as few transactions as possible.

use super::error::lease_error;
use super::events::Observed;
use super::stats::bump;
use super::{Registrator, RegistratorError, UNIT_LABEL, docker};
use bollard::query_parameters::ListContainersOptions;
use etcd_client::{GetOptions, PutOptions, Txn, TxnOp};
use std::collections::{BTreeMap, HashMap, HashSet};
use tracing::info;

/// Most operations put in one etcd transaction (etcd refuses more than 128
/// by default).
const MAX_TXN_OPS: usize = 64;

/// One key found under this machine's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Current {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Put `ip` at `key` on the lease; `previous` is the value it replaces
    /// (which may be the same IP held on another lease).
    Put {
        key: String,
        ip: String,
        previous: Option<String>,
    },
    /// Delete a key no running container accounts for.
    Delete { key: Vec<u8> },
}

/// The changes that turn `current` into `desired` (key → IP, every key on
/// `lease`): stale keys deleted, missing or different keys put, keys already
/// right left alone.
pub(crate) fn plan(
    current: &[Current],
    desired: &BTreeMap<String, String>,
    lease: i64,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut seen = HashSet::new();
    for c in current {
        let wanted = std::str::from_utf8(&c.key)
            .ok()
            .and_then(|k| desired.get_key_value(k));
        match wanted {
            None => changes.push(Change::Delete { key: c.key.clone() }),
            Some((key, ip)) => {
                seen.insert(key.as_str());
                if c.value != ip.as_bytes() || c.lease != lease {
                    changes.push(Change::Put {
                        key: key.clone(),
                        ip: ip.clone(),
                        previous: Some(String::from_utf8_lossy(&c.value).into_owned()),
                    });
                }
            }
        }
    }
    for (key, ip) in desired {
        if !seen.contains(key.as_str()) {
            changes.push(Change::Put {
                key: key.clone(),
                ip: ip.clone(),
                previous: None,
            });
        }
    }
    changes
}

impl Registrator {
    /// The keys the running labelled containers call for, key → value:
    /// each one's IP and health, and this machine's presence.
    pub(super) async fn desired(&self) -> Result<BTreeMap<String, String>, RegistratorError> {
        let options = ListContainersOptions {
            filters: Some(HashMap::from([
                ("label".to_string(), vec![UNIT_LABEL.to_string()]),
                ("status".to_string(), vec!["running".to_string()]),
            ])),
            ..Default::default()
        };
        let containers = docker::timed(self.docker.list_containers(Some(options))).await?;
        let mut desired = BTreeMap::new();
        for c in containers {
            let Some(id) = c.id.as_deref() else {
                continue;
            };
            // The same judgement as an event's, health included.
            if let Observed::Registered { keys, ip, health } = self.observe(id).await? {
                desired.insert(keys.instance, ip);
                desired.insert(keys.health, health);
            }
        }
        desired.insert(self.presence_key(), env!("CARGO_PKG_VERSION").to_string());
        Ok(desired)
    }

    /// Makes this machine's keys match `desired` exactly, in one diff.
    pub(super) async fn resync(
        &self,
        lease: i64,
        desired: &BTreeMap<String, String>,
    ) -> Result<(), RegistratorError> {
        let mut kv = self.client.kv_client();
        let mut current: Vec<Current> = Vec::new();
        for (key, prefix) in [
            (self.instances_prefix(), true),
            (self.health_prefix(), true),
            (self.presence_key(), false),
        ] {
            let options = prefix.then(|| GetOptions::new().with_prefix());
            let found = self.config.timed(kv.get(key.as_str(), options)).await?;
            current.extend(found.kvs().iter().map(|kv| Current {
                key: kv.key().to_vec(),
                value: kv.value().to_vec(),
                lease: kv.lease(),
            }));
        }
        let changes = plan(&current, desired, lease);
        for chunk in changes.chunks(MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|c| match c {
                    Change::Put { key, ip, .. } => TxnOp::put(
                        key.as_str(),
                        ip.as_str(),
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                    Change::Delete { key } => TxnOp::delete(key.clone(), None),
                })
                .collect();
            if let Err(e) = self.config.timed(kv.txn(Txn::new().and_then(ops))).await {
                bump(
                    &self.stats.registration_errors,
                    "kaylee_registration_errors_total",
                );
                return Err(lease_error(e, lease));
            }
            for change in chunk {
                match change {
                    Change::Put { key, ip, previous } => {
                        if key.starts_with(&self.instances_prefix()) {
                            bump(&self.stats.registrations, "kaylee_registrations_total");
                        }
                        match previous {
                            Some(prev) => {
                                info!(key = %key, value = %ip, previous = %prev, "registered (resync)")
                            }
                            None => info!(key = %key, value = %ip, "registered (resync)"),
                        }
                    }
                    Change::Delete { key } => {
                        bump(&self.stats.deregistrations, "kaylee_deregistrations_total");
                        info!(key = %String::from_utf8_lossy(key), "deregistered stale key (resync)");
                    }
                }
            }
        }
        bump(&self.stats.resyncs, "kaylee_registrator_resyncs_total");
        info!(
            machine_id = %self.machine_id,
            keys = desired.len(),
            changes = changes.len(),
            "resynced registrations"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(key: &str, value: &str, lease: i64) -> Current {
        Current {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            lease,
        }
    }

    fn desired(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matching_state_needs_nothing() {
        let current = [cur("/p/a", "1.1.1.1", 7)];
        assert!(plan(&current, &desired(&[("/p/a", "1.1.1.1")]), 7).is_empty());
    }

    #[test]
    fn one_diff() {
        let current = [
            cur("/p/stale", "1.1.1.1", 7),
            cur("/p/same", "2.2.2.2", 7),
            cur("/p/moved", "3.3.3.3", 7),
            cur("/p/oldlease", "4.4.4.4", 6),
        ];
        let want = desired(&[
            ("/p/same", "2.2.2.2"),
            ("/p/moved", "3.3.3.4"),
            ("/p/oldlease", "4.4.4.4"),
            ("/p/new", "5.5.5.5"),
        ]);
        let changes = plan(&current, &want, 7);
        assert_eq!(
            changes,
            vec![
                Change::Delete {
                    key: b"/p/stale".to_vec()
                },
                Change::Put {
                    key: "/p/moved".into(),
                    ip: "3.3.3.4".into(),
                    previous: Some("3.3.3.3".into())
                },
                Change::Put {
                    key: "/p/oldlease".into(),
                    ip: "4.4.4.4".into(),
                    previous: Some("4.4.4.4".into())
                },
                Change::Put {
                    key: "/p/new".into(),
                    ip: "5.5.5.5".into(),
                    previous: None
                },
            ]
        );
    }

    #[test]
    fn non_utf8_keys_are_stale() {
        let current = [Current {
            key: vec![b'/', 0xff],
            value: b"x".to_vec(),
            lease: 7,
        }];
        assert_eq!(
            plan(&current, &BTreeMap::new(), 7),
            vec![Change::Delete {
                key: vec![b'/', 0xff]
            }]
        );
    }
}
