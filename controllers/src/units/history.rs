//! Rollout history (Kubernetes' `kubectl rollout history`): every spec the
//! leader accepted for a unit, as `<prefix>/history/<name>/<revision>`, the
//! last `--history-limit` of them. The leader is the only writer, through
//! its fenced writer, so revisions never race: it records a spec the first
//! time it reconciles it (whether `kaylee run`, `kaylee rollback` or CI
//! wrote it), and marks a revision once it has been fully available — what
//! `onFailure: rollback` and `kaylee rollback` go back to.

use crate::etcd::{EtcdConfig, EtcdError};
use crate::keys::KayleeKeys;
use crate::registry::Write;
use crate::spec::Unit;
use dashmap::DashMap;
use etcd_client::{Client, GetOptions};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How many revisions of each unit are kept unless `--history-limit` says.
pub const DEFAULT_HISTORY_LIMIT: u64 = 10;

/// One accepted spec of a unit: the value of
/// `<prefix>/history/<name>/<revision>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// 1, 2, 3… per unit.
    pub revision: u64,
    /// When the leader recorded it (RFC 3339, UTC).
    pub recorded_at: String,
    /// The revision of `/kaylee/units/<name>` that held this spec.
    pub spec_revision: i64,
    /// The template hash it rendered to.
    pub spec_hash: String,
    /// The spec's `image`, as written (for `kaylee history` at a glance).
    pub image: String,
    /// It has been fully available (every replica) at least once.
    #[serde(default)]
    pub available: bool,
    /// When it first was (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_at: Option<String>,
    /// Set when the leader put this spec back because the rollout of that
    /// revision failed (`onFailure: rollback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// The unit document, canonical JSON.
    pub unit: serde_json::Value,
}

impl Revision {
    /// A new record of `unit` as stored at `spec_revision`.
    pub fn new(revision: u64, spec_revision: i64, spec_hash: &str, unit: &Unit) -> Revision {
        Revision {
            revision,
            recorded_at: now_rfc3339(),
            spec_revision,
            spec_hash: spec_hash.to_string(),
            image: unit.spec.image.clone(),
            available: false,
            available_at: None,
            rollback_of: None,
            unit: serde_json::to_value(unit).unwrap_or_default(),
        }
    }

    /// Marked fully available, now.
    pub fn mark_available(mut self) -> Revision {
        if !self.available {
            self.available = true;
            self.available_at = Some(now_rfc3339());
        }
        self
    }

    /// The value as stored: compact JSON, camelCase fields.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Every stored revision of `name`, oldest first; records that do not
/// parse are skipped.
pub async fn list(
    client: &Client,
    etcd: &EtcdConfig,
    keys: &KayleeKeys,
    name: &str,
) -> Result<Vec<Revision>, EtcdError> {
    let mut kv = client.kv_client();
    let resp = etcd
        .timed(kv.get(keys.history(name), Some(GetOptions::new().with_prefix())))
        .await?;
    let mut out: Vec<Revision> = resp
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect();
    out.sort_by_key(|r: &Revision| r.revision);
    Ok(out)
}

/// The leader's knowledge of the history: the newest revision of each
/// unit, so recording a spec needs no read.
pub struct HistoryBook {
    keys: KayleeKeys,
    limit: u64,
    latest: DashMap<String, u64>,
}

impl HistoryBook {
    /// `limit` revisions per unit are kept (at least 1).
    pub fn new(keys: KayleeKeys, limit: u64) -> HistoryBook {
        HistoryBook {
            keys,
            limit: limit.max(1),
            latest: DashMap::new(),
        }
    }

    /// Reads which revisions exist (keys only) at the start of a term;
    /// returns the deletes that bring every unit within the limit.
    pub async fn load(&self, client: &Client, etcd: &EtcdConfig) -> Result<Vec<Write>, EtcdError> {
        // 10 revisions of 10,000 units are over gRPC's default 4 MiB answer.
        let mut kv = client
            .kv_client()
            .max_decoding_message_size(crate::etcd::MAX_MESSAGE_BYTES);
        let options = GetOptions::new().with_prefix().with_keys_only();
        let resp = etcd
            .timed(kv.get(self.keys.histories(), Some(options)))
            .await?;
        let mut all: HashMap<String, Vec<u64>> = HashMap::new();
        for item in resp.kvs() {
            if let Ok(key) = item.key_str()
                && let Some((name, revision)) = self.keys.parse_history(key)
            {
                all.entry(name.to_string()).or_default().push(revision);
            }
        }
        let mut prune = Vec::new();
        for (name, revisions) in all {
            let newest = revisions.iter().copied().max().unwrap_or(0);
            for r in revisions {
                if r + self.limit <= newest {
                    prune.push(Write::Kaylee {
                        key: self.keys.history_revision(&name, r),
                        value: None,
                    });
                }
            }
            self.latest.insert(name, newest);
        }
        Ok(prune)
    }

    /// The next revision number of `name`.
    pub fn next(&self, name: &str) -> u64 {
        self.latest.get(name).map_or(0, |r| *r) + 1
    }

    /// The writes that record `record` (and drop the revision that falls
    /// out of the limit); call [`HistoryBook::recorded`] once written.
    pub fn record_ops(&self, name: &str, record: &Revision) -> Vec<Write> {
        let mut ops = vec![self.put(name, record)];
        if record.revision > self.limit {
            ops.push(Write::Kaylee {
                key: self
                    .keys
                    .history_revision(name, record.revision - self.limit),
                value: None,
            });
        }
        ops
    }

    /// A rewrite of an existing record (marked available).
    pub fn put(&self, name: &str, record: &Revision) -> Write {
        Write::Kaylee {
            key: self.keys.history_revision(name, record.revision),
            value: Some(record.to_json()),
        }
    }

    /// Notes that `revision` of `name` is written (its batch committed), so
    /// [`HistoryBook::next`] moves past it; an older revision changes
    /// nothing.
    pub fn recorded(&self, name: &str, revision: u64) {
        let mut entry = self.latest.entry(name.to_string()).or_insert(0);
        *entry = (*entry).max(revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> Unit {
        crate::spec::from_json(
            r#"{"name":"web","spec":{"image":"good:1","replicas":2}}"#,
            "t",
        )
        .expect("a unit")
    }

    #[test]
    fn records_round_trip_and_keep_the_unit() {
        let r = Revision::new(3, 42, "abcdef", &unit()).mark_available();
        let back: Revision = serde_json::from_str(&r.to_json()).expect("parses");
        assert_eq!(back, r);
        assert!(back.available && back.available_at.is_some());
        let u = crate::spec::from_json(&back.unit.to_string(), "history").expect("unit");
        assert_eq!(u, unit());
    }

    #[test]
    fn recording_past_the_limit_drops_the_oldest() {
        let book = HistoryBook::new(KayleeKeys::new("/kaylee"), 2);
        assert_eq!(book.next("web"), 1);
        let r = Revision::new(3, 1, "abcdef", &unit());
        let ops = book.record_ops("web", &r);
        assert_eq!(
            ops[1],
            Write::Kaylee {
                key: "/kaylee/history/web/0000000001".into(),
                value: None
            }
        );
        book.recorded("web", 3);
        assert_eq!(book.next("web"), 4);
    }
}
