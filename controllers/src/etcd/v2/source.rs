//! An informer source over etcd's v2 keys API: list = a recursive GET of
//! the directory holding the prefix, parsed as it streams in and keeping
//! only what the cache will (`V2Client::list_leaves`), watch = one streaming watch of that
//! directory (`wait=true&stream=true`: etcd keeps the connection and sends
//! every event), reopened when etcd ends or drops it. A watch that etcd
//! serves from its history brings one event only, so a stream is always
//! opened from etcd's next index (live at once), and the events between
//! where the watch stopped and where that stream began come from history
//! first, a long poll per event. Only keys starting with the prefix get
//! through.

use crate::etcd::v2::{
    Answer, Leaf, Polled, Probed, Streamed, V2Client, V2Error, WatchStream, code,
};
use crate::runtime::{EventStream, Item, Keep, Listing, Source, SourceError, WatchEvent};
use std::time::Duration;

/// The longest a watch may bring nothing before it is probed. etcd drops a
/// streaming watcher that falls 100 events behind *without ending the
/// stream* (the connection stays open, silent), and a hung etcd looks the
/// same; so a silent stream is probed ([`V2Client::probe`]): a long poll
/// from the next index. If etcd has an event the stream did not bring, the
/// stream is reopened from there; if not, nothing under the directory
/// changed up to the probe's index, and the watch goes on from past it.
/// The first probe comes [`PROBE_AFTER`] after the last event, each next
/// one after twice as long, up to this.
///
/// Once a probe found nothing missed, later probes of a stream that stays
/// silent only ask etcd whether it answers (a quorum `GET /`): etcd drops
/// a watcher only when events for it overflow its queue of 100, and the
/// queued ones still arrive, so a stream that brought nothing since cannot
/// have been dropped. A long poll would have to name an index from before
/// the last probe's listen, which a busy etcd's 1000-event history may no
/// longer hold (etcd then answers "event index cleared", whatever the
/// events were under, and the watch would relist).
pub const POLL_WINDOW: Duration = Duration::from_secs(5);

/// Silence before the first probe after an event.
pub const PROBE_AFTER: Duration = Duration::from_millis(50);

/// How long a probe listens once etcd has accepted it, at least. etcd
/// answers from its history at once (the event is queued before the
/// response starts), so a probe that brings nothing for this long was
/// registered: nothing under the directory changed up to its index. The
/// listening costs nothing: a change meanwhile ends the probe at once.
const PROBE_LISTEN: Duration = Duration::from_secs(1);

/// Every key under an absolute v2 key prefix, as an informer source: listed
/// recursively, watched through one streaming v2 watch of its directory.
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
    /// The source of the keys under `prefix` (an absolute v2 key prefix).
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

    /// A shorter longest silence before a probe (tests).
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
    /// The open watch, if any, and whether it has brought an event.
    open: Option<(WatchStream, bool)>,
    /// Silence before the next probe.
    quiet: Duration,
    /// A probe found nothing missed and the open stream brought nothing
    /// since: the next probe only asks whether etcd answers.
    confirmed: bool,
    /// The index the open stream began after: events up to it, from
    /// `next` on, come from etcd's history.
    gap_end: i64,
}

impl Watching {
    /// The next events under the prefix; `Err` ends the watch.
    async fn events(&mut self) -> Result<Vec<WatchEvent>, SourceError> {
        loop {
            if self.open.is_none() {
                // Live from etcd's next index: reopening from where the
                // watch stopped would bring one event per stream, and at a
                // cold start's write rate such a catch-up never ends.
                let stream = self
                    .source
                    .client
                    .stream(&self.source.dir, None)
                    .await
                    .map_err(source_error)?;
                self.confirmed = false;
                self.gap_end = stream.start_index;
                self.open = Some((stream, false));
            }
            // What happened before the stream began, from history: at most
            // the events etcd still holds (else the watch relists).
            if self.next <= self.gap_end {
                let polled = self
                    .source
                    .client
                    .wait(&self.source.dir, self.next, PROBE_LISTEN)
                    .await
                    .map_err(source_error)?;
                match polled {
                    Polled::Event(answer) if answer.node.modified_index <= self.gap_end => {
                        self.next = answer.node.modified_index + 1;
                        let events = events_of(&answer, &self.source.prefix);
                        if !events.is_empty() {
                            return Ok(events);
                        }
                    }
                    // None left before the stream began; it brings the rest.
                    _ => self.next = self.gap_end + 1,
                }
                continue;
            }
            let Some((stream, brought)) = &mut self.open else {
                continue;
            };
            match stream.next(self.quiet).await {
                Ok(Streamed::Event(answer)) => {
                    self.quiet = PROBE_AFTER.min(self.source.poll_window);
                    self.confirmed = false;
                    let index = answer.node.modified_index;
                    // Events come in index order; never wait twice for one.
                    self.next = (self.next + 1).max(index + 1);
                    *brought = true;
                    let events = events_of(&answer, &self.source.prefix);
                    if !events.is_empty() {
                        return Ok(events);
                    }
                }
                // Still silent since a probe found nothing missed: only a
                // hung or unreachable etcd is left to find out about.
                Ok(Streamed::Idle) if self.confirmed => {
                    self.source.client.get("/", false).await.map_err(failed)?;
                    self.quiet = (self.quiet * 2).min(self.source.poll_window);
                }
                // Silent: dropped by etcd, or just quiet? A probe tells.
                Ok(Streamed::Idle) => {
                    let probed = self
                        .source
                        .client
                        .probe(&self.source.dir, self.next, PROBE_LISTEN.max(self.quiet))
                        .await
                        .map_err(source_error)?;
                    match probed {
                        // A new stream, and the events since `next` from
                        // history before it.
                        Probed::Missed(_) => {
                            tracing::debug!(
                                dir = %self.source.dir,
                                next = self.next,
                                "v2 watch stream fell silent with events pending; reopening"
                            );
                            self.open = None;
                        }
                        Probed::Quiet { etcd_index } => {
                            self.next = self.next.max(etcd_index + 1);
                            self.quiet = (self.quiet * 2).min(self.source.poll_window);
                            self.confirmed = true;
                        }
                    }
                }
                // etcd drops a watcher that falls 100 events behind, after
                // sending what it had: go on from the next index.
                Ok(Streamed::Ended) if *brought => self.open = None,
                Ok(Streamed::Ended) => {
                    return Err(SourceError::Canceled(format!(
                        "etcd ended the watch of {} without an event",
                        self.source.dir
                    )));
                }
                Err(e) => return Err(source_error(e)),
            }
        }
    }
}

fn source_error(e: V2Error) -> SourceError {
    if e.code() == Some(code::EVENT_INDEX_CLEARED) {
        SourceError::Compacted
    } else {
        failed(e)
    }
}

impl Source for V2Prefix {
    async fn list_keeping(&self, keep: &Keep<'_>) -> Result<Listing, SourceError> {
        let mut items: Vec<Item> = Vec::new();
        // Read as it arrives, keeping only what `keep` accepts.
        let keep_leaves = |leaves: Vec<Leaf>| {
            items.extend(leaves.into_iter().filter_map(|n| {
                let value = n.value.unwrap_or_default().into_bytes();
                keep(&n.key, &value).then_some(Item {
                    key: n.key,
                    value,
                    revision: n.modified_index,
                })
            }));
        };
        let revision = match self
            .client
            .list_leaves(&self.dir, &self.prefix, keep_leaves)
            .await
        {
            Ok(index) => index,
            // No directory yet: nothing listed, as of etcd's current index.
            Err(V2Error::Etcd { failure, .. }) if failure.code == code::KEY_NOT_FOUND => {
                return Ok(Listing {
                    items: Vec::new(),
                    revision: failure.index,
                });
            }
            Err(e) => return Err(failed(e)),
        };
        // etcd's v2 store returns a directory's children in Go map order,
        // a new one each time; key order, as v3 lists, keeps listings
        // comparable.
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Listing { items, revision })
    }

    async fn watch(&self, revision: i64) -> Result<EventStream, SourceError> {
        let start = Watching {
            source: self.clone(),
            next: revision + 1,
            open: None,
            quiet: PROBE_AFTER.min(self.poll_window),
            confirmed: false,
            gap_end: 0,
        };
        let stream = futures::stream::unfold(Some(start), |state| async move {
            let mut w = state?;
            match w.events().await {
                Ok(events) => Some((Ok(events), Some(w))),
                Err(e) => Some((Err(e), None)),
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
