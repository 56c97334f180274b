//! Invariant c, never two leaders writing (fleet's registry in v3 only,
//! where every fleet write is a transaction fenced by the leader key). Seen
//! from etcd's side: for every write to fleet's `job/` and `unit/` keys, at
//! revision r, the leader key with the lowest create revision is read at
//! r. One must exist; the server that logged committing revision r (the
//! registry's debug line) must be the one it names; and that server must
//! not be one the test had killed or frozen by then. Revisions lost to the
//! compaction are counted, not checked.

use super::report::{Report, bump};
use crate::support::fleet::FLEET;
use etcd_client::{Client, GetOptions, SortOrder, SortTarget, WatchOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

pub const LEADER_DIR: &str = "/kaylee/leader/";
/// Written by the test when it is done: the watch has seen everything
/// before it once it sees this key.
pub const DONE_KEY: &str = "/chaos/done";

/// A server that could not write between revisions `from` and `to`
/// (exclusive): gone (`to` = `i64::MAX`: killed, or exited on SIGTERM) or
/// frozen with SIGSTOP.
#[derive(Debug, Clone)]
pub struct Outage {
    pub server: String,
    pub from: i64,
    pub to: i64,
    pub how: &'static str,
}

/// One fleet write: its revision and the leader key's value then.
pub type Write = (i64, Option<String>);

/// Watches every key from revision `from` until [`DONE_KEY`] is written,
/// reading the leader at the revision of each fleet write. Rides through
/// etcd restarts (re-watching from the next revision) and the compaction.
pub async fn watch(client: Client, from: i64, report: Arc<Report>) -> Vec<Write> {
    let mut next = from;
    let mut writes = Vec::new();
    loop {
        let mut watcher = client.watch_client();
        let opts = WatchOptions::new()
            .with_all_keys()
            .with_start_revision(next);
        let opened = tokio::time::timeout(Duration::from_secs(3), watcher.watch("", Some(opts)));
        let Ok(Ok(mut stream)) = opened.await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) | Err(_) => break,
            };
            if resp.canceled() {
                if resp.compact_revision() > next {
                    let lost = resp.compact_revision() - next;
                    report.counters.skipped_revisions.fetch_add(
                        u64::try_from(lost).unwrap_or(0),
                        std::sync::atomic::Ordering::SeqCst,
                    );
                    report.note(&format!(
                        "fence watch: revisions {next}..{} compacted away before they were read",
                        resp.compact_revision()
                    ));
                    next = resp.compact_revision();
                }
                break;
            }
            let mut revisions = BTreeSet::new();
            let mut done = false;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let key = kv.key_str().unwrap_or_default();
                next = next.max(kv.mod_revision() + 1);
                done |= key == DONE_KEY;
                let rest = key.strip_prefix(FLEET).unwrap_or_default();
                if rest.starts_with("job/") || rest.starts_with("unit/") {
                    revisions.insert(kv.mod_revision());
                }
            }
            for r in revisions {
                match leader_at(&client, r).await {
                    Some(leader) => writes.push((r, leader)),
                    None => bump(&report.counters.skipped_revisions),
                }
            }
            if done {
                return writes;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The leader key's value at revision `r` (`Some(None)`: no leader key);
/// `None` when `r` has been compacted away. Waits out an etcd restart.
async fn leader_at(client: &Client, r: i64) -> Option<Option<String>> {
    let opts = GetOptions::new()
        .with_prefix()
        .with_revision(r)
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    loop {
        let mut kv = client.kv_client();
        let call = kv.get(LEADER_DIR, Some(opts.clone()));
        match tokio::time::timeout(Duration::from_secs(3), call).await {
            Ok(Ok(resp)) => {
                return Some(
                    resp.kvs()
                        .first()
                        .map(|k| String::from_utf8_lossy(k.value()).into_owned()),
                );
            }
            Ok(Err(e)) if e.to_string().contains("compacted") => return None,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Judges every write seen: a leader key existed at its revision, the
/// server that logged the write held it, and it was not dead or frozen.
/// A write no server logged must be the leader's, gone (killed, or
/// exiting) before it could log it.
pub fn check(
    writes: &[Write],
    commits: &BTreeMap<i64, String>,
    outages: &[Outage],
    report: &Report,
) {
    for (r, leader) in writes {
        bump(&report.counters.fence_checked);
        let Some(name) = leader else {
            report.violation(
                &format!("unfenced:{r}"),
                format!("fleet written at revision {r} while no leader key existed"),
            );
            continue;
        };
        if let Some(o) = outages
            .iter()
            .find(|o| o.server == *name && o.from < *r && *r < o.to)
        {
            report.violation(
                &format!("deposed:{r}"),
                format!(
                    "fleet written at revision {r} while the leader key was {name}'s, \
                     {} since revision {}",
                    o.how, o.from
                ),
            );
        }
        match commits.get(r) {
            Some(writer) if writer == name => {}
            Some(writer) => report.violation(
                &format!("writer:{r}"),
                format!("fleet written at revision {r} by {writer} while {name} led"),
            ),
            None if outages
                .iter()
                .any(|o| o.server == *name && o.to == i64::MAX && o.from >= *r) =>
            {
                bump(&report.counters.unlogged_writes);
            }
            None => report.violation(
                &format!("unlogged:{r}"),
                format!("fleet written at revision {r} (leader {name}) and no server logged it"),
            ),
        }
    }
}
