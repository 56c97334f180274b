//! Watches through the v2 keys API: one long poll, a streaming watch
//! (`wait=true&stream=true`, one JSON event per line for as long as etcd
//! keeps the connection), and a probe of whether a silent stream missed an
//! event.

use super::{Answer, Body, Request, V2Client, V2Error, etcd_index, interpret, truncated, wire};
use reqwest::Method;
use std::time::Duration;

/// What a streaming watch ([`V2Client::stream`]) brought next.
#[derive(Debug)]
pub enum Streamed {
    /// The first event under the key since the index probed.
    Event(Box<Answer>),
    /// Nothing within the window asked for; the stream is still open.
    Idle,
    /// etcd ended the stream (it does when the watcher falls 100 events
    /// behind) or the connection closed.
    Ended,
}

/// An open streaming watch: etcd's answer to `GET key?wait=true&stream=true`,
/// one JSON event per line for as long as it keeps the connection.
pub struct WatchStream {
    /// The body, read by the watch reader's thread ([`super::reader`]).
    chunks: tokio::sync::mpsc::UnboundedReceiver<Result<bytes::Bytes, String>>,
    status: u16,
    endpoint: String,
    what: String,
    /// `X-Etcd-Index`: the store's index when the watch started. An event
    /// at or below it came from etcd's history, and then that event is all
    /// the stream will ever bring (etcd answers a watch it can serve from
    /// history with that one event and never registers it).
    pub start_index: i64,
    buf: Vec<u8>,
}

impl WatchStream {
    /// The next event, waiting at most `window` for more bytes.
    pub async fn next(&mut self, window: Duration) -> Result<Streamed, V2Error> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                match wire::parse_body(&line, self.start_index) {
                    Body::Empty => continue,
                    Body::Answer(answer) => return Ok(Streamed::Event(Box::new(answer))),
                    Body::Failure(failure) => {
                        return Err(V2Error::Etcd {
                            what: self.what.clone(),
                            failure,
                        });
                    }
                    Body::Foreign => {
                        return Err(V2Error::Protocol {
                            what: self.what.clone(),
                            endpoint: self.endpoint.clone(),
                            status: self.status,
                            body: truncated(&line),
                        });
                    }
                }
            }
            match tokio::time::timeout(window, self.chunks.recv()).await {
                Err(_) => return Ok(Streamed::Idle),
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return Ok(Streamed::Ended),
                Ok(Some(Err(reason))) => {
                    return Err(V2Error::Unreachable {
                        what: self.what.clone(),
                        endpoints: self.endpoint.clone(),
                        reason,
                    });
                }
            }
        }
    }
}

/// What a probe of a streaming watch ([`V2Client::probe`]) found.
#[derive(Debug)]
pub enum Probed {
    /// etcd holds an event at or after the index probed: a stream that has
    /// not brought it may have been dropped.
    Missed(Box<Answer>),
    /// No event under the key from the index probed up to `etcd_index`
    /// (etcd registered the poll; a change after that may have ended it).
    Quiet {
        /// The store index the probe read up to.
        etcd_index: i64,
    },
}

/// What one long poll saw.
#[derive(Debug)]
pub enum Polled {
    /// An event under the key.
    Event(Answer),
    /// No event within the poll window (or etcd ended the poll): nothing
    /// under the key changed up to `etcd_index`, the index the poll started at.
    Nothing {
        /// The store index the poll started at.
        etcd_index: i64,
    },
}

/// A recursive v2 watch of `key` from `wait_index` (else from etcd's next
/// index): one long poll, or with `stream` a connection that carries every
/// change until it is dropped.
pub(super) fn watch_request(key: &str, wait_index: Option<i64>, stream: bool) -> Request<'_> {
    let mut query = vec![("wait", "true".into()), ("recursive", "true".into())];
    if stream {
        query.push(("stream", "true".into()));
    }
    if let Some(index) = wait_index {
        query.push(("waitIndex", index.to_string()));
    }
    Request {
        method: Method::GET,
        key,
        query,
        value: None,
    }
}

impl V2Client {
    /// Waits for the first change at or below `key` with index ≥
    /// `wait_index`, for at most `window` after etcd accepted the poll.
    pub async fn wait(
        &self,
        key: &str,
        wait_index: i64,
        window: Duration,
    ) -> Result<Polled, V2Error> {
        let req = watch_request(key, Some(wait_index), false);
        let what = format!("watch {key}");
        let (resp, endpoint) = self.send(&what, &req).await?;
        let status = resp.status().as_u16();
        let index = etcd_index(&resp);
        let bytes = match tokio::time::timeout(window, resp.bytes()).await {
            Err(_) => return Ok(Polled::Nothing { etcd_index: index }),
            Ok(b) => b.map_err(|e| self.unreachable(&what, format!("{endpoint}: {e}")))?,
        };
        Ok(match interpret(&what, &endpoint, status, index, &bytes)? {
            Some(answer) => Polled::Event(answer),
            None => Polled::Nothing { etcd_index: index },
        })
    }

    /// Opens a streaming watch of every change at or below `key` with index
    /// ≥ `wait_index`, or without one of every change after
    /// [`WatchStream::start_index`] (etcd registers such a watch at once; one
    /// from an index its history holds an event for brings that event
    /// only). An error etcd answers at once (e.g.
    /// [`code::EVENT_INDEX_CLEARED`]) is returned here.
    pub async fn stream(&self, key: &str, wait_index: Option<i64>) -> Result<WatchStream, V2Error> {
        let what = format!("watch {key}");
        // etcd answers a watch it accepts with 200.
        let opened = self.open_stream(&what, key, wait_index).await?;
        Ok(WatchStream {
            chunks: opened.chunks,
            status: opened.status,
            endpoint: opened.endpoint,
            what,
            start_index: opened.start_index,
            buf: Vec::new(),
        })
    }

    /// Asks whether etcd has an event at or below `key` with index ≥
    /// `wait_index`: a long poll, given `listen` to answer once etcd has
    /// accepted it. etcd answers at once from its history, with an event at
    /// or below the index it answers with; a poll it had to register brings
    /// nothing within `listen`, or a later change.
    pub async fn probe(
        &self,
        key: &str,
        wait_index: i64,
        listen: Duration,
    ) -> Result<Probed, V2Error> {
        Ok(match self.wait(key, wait_index, listen).await? {
            // From history: at or below the index etcd had when it took
            // the poll.
            Polled::Event(answer) if answer.node.modified_index <= answer.etcd_index => {
                Probed::Missed(Box::new(answer))
            }
            // A change after etcd registered the poll: nothing was pending
            // up to its index, and a live stream brings this one too.
            Polled::Event(answer) => Probed::Quiet {
                etcd_index: answer.etcd_index,
            },
            Polled::Nothing { etcd_index } => Probed::Quiet { etcd_index },
        })
    }
}
