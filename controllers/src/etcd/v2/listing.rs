//! A recursive v2 listing read as it arrives: the body is parsed on a
//! blocking thread while it streams in, and only the keys under a prefix
//! come out, in batches. Neither the whole body (about 600 bytes per fleet
//! job) nor a tree of it is ever held, so a new leader listing 40,000 jobs
//! keeps only what its cache will. [`V2Client::list_leaves`] sends the
//! request and feeds the parser.

use super::{V2Client, V2Error, etcd_index, get_request};
use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::io::Read;
use tokio::sync::mpsc;

/// One key (not directory) as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The absolute key.
    pub key: String,
    /// `None` for a key without a value field (never for fleet's keys).
    pub value: Option<String>,
    /// The v2 index it was last modified at.
    pub modified_index: i64,
}

/// Leaves handed over at a time.
const BATCH: usize = 1024;

/// Reads what the channel brings until it closes (end of body).
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    /// How much of `current` was read.
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.current.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => (self.current, self.at) = (chunk, 0),
                None => return Ok(0),
            }
        }
        let rest = &self.current[self.at..];
        let n = out.len().min(rest.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

/// Where parsed leaves go: those under `prefix`, in batches.
struct Sink {
    prefix: String,
    batch: Vec<Leaf>,
    tx: mpsc::Sender<Vec<Leaf>>,
}

impl Sink {
    fn push(&mut self, leaf: Leaf) -> Result<(), String> {
        if !leaf.key.starts_with(&self.prefix) {
            return Ok(());
        }
        self.batch.push(leaf);
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.tx
            .blocking_send(batch)
            .map_err(|_| "the listing's reader stopped".to_string())
    }
}

/// Parses a v2 answer (`{"action":"get","node":{…}}`) from `rx`, sending
/// every leaf under `prefix` to `tx`. Runs on a blocking thread.
fn parse(
    rx: mpsc::Receiver<Vec<u8>>,
    prefix: String,
    tx: mpsc::Sender<Vec<Leaf>>,
) -> Result<(), String> {
    let reader = std::io::BufReader::with_capacity(
        64 * 1024,
        ChannelReader {
            rx,
            current: Vec::new(),
            at: 0,
        },
    );
    let mut sink = Sink {
        prefix,
        batch: Vec::new(),
        tx,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let found = de
        .deserialize_map(AnswerVisitor { sink: &mut sink })
        .map_err(|e| format!("unreadable listing: {e}"))?;
    if !found {
        return Err("the listing has no node".into());
    }
    sink.flush()
}

struct AnswerVisitor<'a> {
    sink: &'a mut Sink,
}

impl<'de> Visitor<'de> for AnswerVisitor<'_> {
    /// Whether the answer had a node.
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an etcd v2 answer")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(field) = map.next_key::<String>()? {
            if field == "node" {
                map.next_value_seed(NodeSeed {
                    sink: &mut *self.sink,
                })?;
                found = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct NodeSeed<'a> {
    sink: &'a mut Sink,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an etcd v2 node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut key, mut value, mut dir, mut index) = (String::new(), None, false, 0);
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                "key" => key = map.next_value()?,
                "value" => value = Some(map.next_value()?),
                "dir" => dir = map.next_value()?,
                "modifiedIndex" => index = map.next_value()?,
                // Children are sent on as they are read.
                "nodes" => map.next_value_seed(NodesSeed {
                    sink: &mut *self.sink,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !dir {
            self.sink
                .push(Leaf {
                    key,
                    value,
                    modified_index: index,
                })
                .map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

struct NodesSeed<'a> {
    sink: &'a mut Sink,
}

impl<'de> DeserializeSeed<'de> for NodesSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for NodesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of etcd v2 nodes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(NodeSeed {
                sink: &mut *self.sink,
            })?
            .is_some()
        {}
        Ok(())
    }
}

impl V2Client {
    /// A recursive quorum `GET key` read as it streams in: every key (not
    /// directory) under `prefix` goes to `on_leaves`, in batches, and
    /// nothing else is kept. Returns etcd's index of the listing. The whole
    /// listing must arrive within the request deadline.
    pub async fn list_leaves(
        &self,
        key: &str,
        prefix: &str,
        mut on_leaves: impl FnMut(Vec<Leaf>) + Send,
    ) -> Result<i64, V2Error> {
        let what = format!("GET {key}");
        let (mut resp, endpoint) = self.send(&what, &get_request(key, true)).await?;
        let status = resp.status().as_u16();
        let index = etcd_index(&resp);
        if status >= 300 {
            return Err(self.refused(what, endpoint, resp).await);
        }
        let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let (leaf_tx, mut leaf_rx) = tokio::sync::mpsc::channel(4);
        let prefix = prefix.to_string();
        let parser = tokio::task::spawn_blocking(move || parse(chunk_rx, prefix, leaf_tx));
        let pump = async move {
            while let Some(chunk) = resp.chunk().await? {
                if chunk_tx.send(chunk.to_vec()).await.is_err() {
                    // The parser stopped early; it says why.
                    break;
                }
            }
            Ok::<(), reqwest::Error>(())
        };
        let collect = async {
            while let Some(batch) = leaf_rx.recv().await {
                on_leaves(batch);
            }
        };
        let both = async { futures::join!(pump, collect).0 };
        let pumped = tokio::time::timeout(self.inner.request_timeout, both).await;
        let parsed = match pumped {
            Err(_) => return Err(self.timeout(&what)),
            Ok(Err(e)) => return Err(self.unreachable(&what, format!("{endpoint}: {e}"))),
            Ok(Ok(())) => parser.await,
        };
        match parsed {
            Ok(Ok(())) => Ok(index),
            Ok(Err(body)) => Err(V2Error::Protocol {
                what,
                endpoint,
                status,
                body,
            }),
            Err(e) => Err(self.unreachable(&what, format!("listing parser: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves_of(json: &'static [u8], prefix: &str, chunk: usize) -> Result<Vec<Leaf>, String> {
        let (chunk_tx, chunk_rx) = mpsc::channel(json.len() / chunk + 2);
        for piece in json.chunks(chunk) {
            chunk_tx
                .try_send(piece.to_vec())
                .map_err(|e| e.to_string())?;
        }
        drop(chunk_tx);
        let (tx, mut rx) = mpsc::channel(64);
        let prefix = prefix.to_string();
        let parsed = std::thread::spawn(move || parse(chunk_rx, prefix, tx))
            .join()
            .map_err(|_| "parser panicked".to_string())?;
        parsed?;
        let mut out = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            out.extend(batch);
        }
        Ok(out)
    }

    const LISTING: &[u8] = br#"{"action":"get","node":{"key":"/f/job","dir":true,"nodes":[
        {"key":"/f/job/k:a","dir":true,"nodes":[
            {"key":"/f/job/k:a/object","value":"{\"Name\":\"k:a\"}","modifiedIndex":7,"createdIndex":7},
            {"key":"/f/job/k:a/target-state","value":"launched","modifiedIndex":8,"createdIndex":8}],
         "modifiedIndex":7,"createdIndex":7},
        {"key":"/f/job/etcd.service","dir":true,"nodes":[
            {"key":"/f/job/etcd.service/object","value":"{}","modifiedIndex":5,"createdIndex":5}],
         "modifiedIndex":5,"createdIndex":5},
        {"key":"/f/job/k:empty","dir":true,"modifiedIndex":3,"createdIndex":3}],
        "modifiedIndex":2,"createdIndex":2}}"#;

    #[test]
    fn only_the_leaves_under_the_prefix_come_out_however_the_body_is_cut() {
        for chunk in [1, 7, 64, LISTING.len()] {
            let leaves = leaves_of(LISTING, "/f/job/k:", chunk).expect("parses");
            assert_eq!(
                leaves,
                [
                    Leaf {
                        key: "/f/job/k:a/object".into(),
                        value: Some(r#"{"Name":"k:a"}"#.into()),
                        modified_index: 7
                    },
                    Leaf {
                        key: "/f/job/k:a/target-state".into(),
                        value: Some("launched".into()),
                        modified_index: 8
                    },
                ],
                "cut every {chunk} bytes"
            );
        }
    }

    #[test]
    fn a_truncated_or_nodeless_body_is_an_error() {
        assert!(leaves_of(&LISTING[..LISTING.len() / 2], "/f/", 16).is_err());
        assert!(leaves_of(br#"{"action":"get"}"#, "/f/", 16).is_err());
        assert!(leaves_of(b"404 page not found", "/f/", 16).is_err());
    }
}
