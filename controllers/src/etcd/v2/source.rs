//! An informer source over etcd's v2 keys API: list = a recursive GET of
//! the directory holding the prefix, watch = long polls on that directory,
//! one event per poll. Only keys starting with the prefix get through.

use crate::etcd::v2::{Answer, Polled, V2Client, V2Error, code};
use crate::runtime::{EventStream, Item, Keep, Listing, Source, SourceError, WatchEvent};
use std::time::Duration;

/// How long one long poll may stay open. etcd itself never ends an idle
/// poll, so without this a hung etcd (connection up, nothing answering)
/// would hold the watch forever. It is long because a re-poll can only
/// start from the index the idle poll began at: if etcd's whole v2 store
/// (fleet's agents included) saw more than 1000 changes meanwhile, that
/// index is cleared and the informer relists — correct, but a full read.
/// A leader notices a hung etcd sooner anyway, through its lease.
pub const POLL_WINDOW: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct V2Prefix {
    client: V2Client,
    prefix: String,
    /// The directory the prefix lies in, e.g. `/_coreos.com/fleet/job` for
    /// `/_coreos.com/fleet/job/k:`.
    dir: String,
    poll_window: Duration,
}

impl V2Prefix {
    pub fn new(client: V2Client, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let dir = match prefix.rsplit_once('/') {
            Some((dir, _)) if !dir.is_empty() => dir.to_string(),
            _ => "/".to_string(),
        };
        V2Prefix {
            client,
            prefix,
            dir,
            poll_window: POLL_WINDOW,
        }
    }

    /// A shorter poll window (tests).
    pub fn with_poll_window(mut self, window: Duration) -> Self {
        self.poll_window = window;
        self
    }
}

fn failed(e: V2Error) -> SourceError {
    SourceError::Etcd(e.into())
}

/// The informer events one v2 watch answer means for keys under `prefix`.
pub fn events_of(answer: &Answer, prefix: &str) -> Vec<WatchEvent> {
    let node = &answer.node;
    match answer.action.as_str() {
        "set" | "create" | "update" | "compareAndSwap" => match &node.value {
            Some(value) if !node.dir && node.key.starts_with(prefix) => vec![WatchEvent::Put {
                key: node.key.clone(),
                value: value.clone().into_bytes(),
                revision: node.modified_index,
            }],
            _ => Vec::new(),
        },
        "delete" | "expire" | "compareAndDelete" => {
            let was_dir = node.dir || answer.prev_node.as_ref().is_some_and(|p| p.dir);
            if !was_dir {
                return if node.key.starts_with(prefix) {
                    vec![WatchEvent::Delete {
                        key: node.key.clone(),
                    }]
                } else {
                    Vec::new()
                };
            }
            // The directory may lie below the prefix (one job) or above it
            // (the whole registry): either way, drop what both cover.
            let dir = format!("{}/", node.key.trim_end_matches('/'));
            if dir.starts_with(prefix) {
                vec![WatchEvent::DeletePrefix { prefix: dir }]
            } else if prefix.starts_with(&dir) {
                vec![WatchEvent::DeletePrefix {
                    prefix: prefix.to_string(),
                }]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

struct Watching {
    source: V2Prefix,
    /// The next index to wait for.
    next: i64,
}

impl Source for V2Prefix {
    async fn list_keeping(&self, keep: &Keep<'_>) -> Result<Listing, SourceError> {
        let answer = match self.client.get(&self.dir, true).await {
            Ok(answer) => answer,
            // No directory yet: nothing listed, as of etcd's current index.
            Err(V2Error::Etcd { failure, .. }) if failure.code == code::KEY_NOT_FOUND => {
                return Ok(Listing {
                    items: Vec::new(),
                    revision: failure.index,
                });
            }
            Err(e) => return Err(failed(e)),
        };
        let mut items: Vec<Item> = answer
            .node
            .leaves()
            .into_iter()
            .filter(|n| {
                n.key.starts_with(&self.prefix)
                    && keep(&n.key, n.value.as_deref().unwrap_or_default().as_bytes())
            })
            .map(|n| Item {
                key: n.key.clone(),
                value: n.value.clone().unwrap_or_default().into_bytes(),
                revision: n.modified_index,
            })
            .collect();
        // etcd's v2 store returns a directory's children in Go map order,
        // a new one each time; key order, as v3 lists, keeps listings
        // comparable.
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Listing {
            items,
            revision: answer.etcd_index,
        })
    }

    async fn watch(&self, revision: i64) -> Result<EventStream, SourceError> {
        let start = Watching {
            source: self.clone(),
            next: revision + 1,
        };
        let stream = futures::stream::unfold(Some(start), |state| async move {
            let mut w = state?;
            loop {
                let polled = w
                    .source
                    .client
                    .wait(&w.source.dir, w.next, w.source.poll_window)
                    .await;
                match polled {
                    Ok(Polled::Event(answer)) => {
                        // Events come in index order; never wait twice for one.
                        w.next = (w.next + 1).max(answer.node.modified_index + 1);
                        let events = events_of(&answer, &w.source.prefix);
                        if !events.is_empty() {
                            return Some((Ok(events), Some(w)));
                        }
                    }
                    // Nothing under the directory changed up to the index
                    // the poll started at, so later polls can start past it.
                    Ok(Polled::Nothing { etcd_index }) => w.next = w.next.max(etcd_index + 1),
                    Err(e) if e.code() == Some(code::EVENT_INDEX_CLEARED) => {
                        return Some((Err(SourceError::Compacted), None));
                    }
                    Err(e) => return Some((Err(failed(e)), None)),
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::v2::{Body, wire::parse_body};

    fn answer(json: &str) -> Answer {
        match parse_body(json.as_bytes(), 0) {
            Body::Answer(a) => a,
            other => panic!("{other:?}"),
        }
    }

    const P: &str = "/f/job/k:";

    #[test]
    fn puts_and_deletes_of_keys_under_the_prefix() {
        let set = answer(
            r#"{"action":"set","node":{"key":"/f/job/k:a/object","value":"{}","modifiedIndex":9}}"#,
        );
        assert_eq!(
            events_of(&set, P),
            [WatchEvent::Put {
                key: "/f/job/k:a/object".into(),
                value: b"{}".to_vec(),
                revision: 9
            }]
        );
        let foreign = answer(
            r#"{"action":"create","node":{"key":"/f/job/etcd.service/object","value":"{}","modifiedIndex":9}}"#,
        );
        assert!(events_of(&foreign, P).is_empty());
        let expired = answer(
            r#"{"action":"expire","node":{"key":"/f/job/k:a/target","modifiedIndex":10},"prevNode":{"key":"/f/job/k:a/target","value":"m1"}}"#,
        );
        assert_eq!(
            events_of(&expired, P),
            [WatchEvent::Delete {
                key: "/f/job/k:a/target".into()
            }]
        );
    }

    #[test]
    fn a_deleted_directory_deletes_what_lies_under_it() {
        let job = answer(
            r#"{"action":"delete","node":{"key":"/f/job/k:a","dir":true,"modifiedIndex":11},"prevNode":{"key":"/f/job/k:a","dir":true}}"#,
        );
        assert_eq!(
            events_of(&job, P),
            [WatchEvent::DeletePrefix {
                prefix: "/f/job/k:a/".into()
            }]
        );
        let all = answer(
            r#"{"action":"delete","node":{"key":"/f","dir":true,"modifiedIndex":12},"prevNode":{"key":"/f","dir":true}}"#,
        );
        assert_eq!(
            events_of(&all, P),
            [WatchEvent::DeletePrefix { prefix: P.into() }]
        );
        let other = answer(
            r#"{"action":"delete","node":{"key":"/f/job/etcd.service","dir":true,"modifiedIndex":13}}"#,
        );
        assert!(events_of(&other, P).is_empty());
    }

    #[test]
    fn the_directory_is_the_one_holding_the_prefix() {
        let client = V2Client::new(&crate::etcd::EtcdConfig::default()).expect("client");
        assert_eq!(V2Prefix::new(client.clone(), P).dir, "/f/job");
        assert_eq!(V2Prefix::new(client.clone(), "/f/job/").dir, "/f/job");
        assert_eq!(V2Prefix::new(client, "/k:").dir, "/");
    }
}
