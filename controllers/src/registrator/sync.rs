//! The resync diff: from the keys this machine has in etcd and the keys the
//! running containers call for, the few writes that make the first match
//! the second.

use std::collections::{BTreeMap, HashSet};

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
