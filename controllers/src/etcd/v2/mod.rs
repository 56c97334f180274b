//! A client for etcd's v2 keys API (`/v2/keys/…`), the only API real fleet
//! reads and writes its registry through. Same endpoints, TLS, auth (HTTP
//! basic, as etcd v2 auth is) and deadlines as the v3 client.

mod error;
mod listing;
mod source;
mod tls;
pub mod wire;

use crate::etcd::EtcdConfig;
pub use error::V2Error;
pub use listing::Leaf;
use reqwest::{Method, RequestBuilder, Url};
pub use source::V2Prefix;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
pub use wire::{Answer, Body, EtcdFailure, Node, code};

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
    resp: reqwest::Response,
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
                            status: self.resp.status().as_u16(),
                            body: truncated(&line),
                        });
                    }
                }
            }
            match tokio::time::timeout(window, self.resp.chunk()).await {
                Err(_) => return Ok(Streamed::Idle),
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None)) => return Ok(Streamed::Ended),
                Ok(Err(e)) => {
                    return Err(V2Error::Unreachable {
                        what: self.what.clone(),
                        endpoints: self.endpoint.clone(),
                        reason: e.to_string(),
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

#[derive(Clone)]
/// A client of etcd's v2 keys API; cheap to clone (one shared connection pool).
pub struct V2Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoints: Vec<Url>,
    /// The endpoint that answered last; requests start there.
    current: AtomicUsize,
    user: Option<(String, String)>,
    request_timeout: Duration,
    endpoints_display: String,
}

/// One request, rebuilt for each endpoint tried.
struct Request<'a> {
    method: Method,
    key: &'a str,
    query: Vec<(&'static str, String)>,
    value: Option<&'a str>,
}

/// A recursive v2 watch of `key` from `wait_index`: one long poll, or with
/// `stream` a connection that carries every change until it is dropped.
fn watch_request(key: &str, wait_index: i64, stream: bool) -> Request<'_> {
    let mut query = vec![("wait", "true".into()), ("recursive", "true".into())];
    if stream {
        query.push(("stream", "true".into()));
    }
    query.push(("waitIndex", wait_index.to_string()));
    Request {
        method: Method::GET,
        key,
        query,
        value: None,
    }
}

fn truncated(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

impl V2Client {
    /// A client for `config`'s endpoints, TLS and credentials; fails on settings it cannot use.
    pub fn new(config: &EtcdConfig) -> Result<Self, V2Error> {
        if config.endpoints.is_empty() {
            return Err(V2Error::Config("no etcd endpoints given".into()));
        }
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| {
                let full = if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                };
                Url::parse(&full)
                    .ok()
                    .filter(|u| !u.cannot_be_a_base())
                    .ok_or_else(|| V2Error::Config(format!("not an etcd endpoint URL: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let user = match &config.user {
            Some(u) => {
                let (name, password) = u
                    .split_once(':')
                    .ok_or_else(|| V2Error::Config("--etcd-user must be user:password".into()))?;
                Some((name.to_string(), password.to_string()))
            }
            None => None,
        };
        Ok(V2Client {
            inner: Arc::new(Inner {
                http: tls::http_client(config)?,
                endpoints,
                current: AtomicUsize::new(0),
                user,
                request_timeout: config.request_timeout,
                endpoints_display: config.endpoints_display(),
            }),
        })
    }

    fn url(endpoint: &Url, key: &str) -> Url {
        let mut url = endpoint.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["v2", "keys"]);
            let mut any = false;
            for part in key.split('/').filter(|p| !p.is_empty()) {
                segments.push(part);
                any = true;
            }
            if !any {
                segments.push("");
            }
        }
        url
    }

    fn build(&self, endpoint: &Url, req: &Request<'_>) -> RequestBuilder {
        let mut b = self
            .inner
            .http
            .request(req.method.clone(), Self::url(endpoint, req.key));
        if !req.query.is_empty() {
            b = b.query(&req.query);
        }
        if let Some(value) = req.value {
            b = b.form(&[("value", value)]);
        }
        if let Some((name, password)) = &self.inner.user {
            b = b.basic_auth(name, Some(password));
        }
        b
    }

    /// Sends `req`, moving on to the next endpoint when one cannot be
    /// connected to; returns once the response headers are in.
    async fn send(
        &self,
        what: &str,
        req: &Request<'_>,
    ) -> Result<(reqwest::Response, String), V2Error> {
        let n = self.inner.endpoints.len();
        let first = self.inner.current.load(Ordering::Relaxed) % n;
        let mut reason = String::new();
        for i in 0..n {
            let index = (first + i) % n;
            let endpoint = &self.inner.endpoints[index];
            let sent =
                tokio::time::timeout(self.inner.request_timeout, self.build(endpoint, req).send())
                    .await;
            match sent {
                Ok(Ok(resp)) => {
                    self.inner.current.store(index, Ordering::Relaxed);
                    return Ok((resp, endpoint.as_str().trim_end_matches('/').to_string()));
                }
                // Nothing was sent: another endpoint may answer.
                Ok(Err(e)) if e.is_connect() => reason = format!("{endpoint}: {e}"),
                Ok(Err(e)) => {
                    return Err(self.unreachable(what, format!("{endpoint}: {e}")));
                }
                // A member that accepts connections but does not answer
                // (cut off from its cluster, say): this request fails within
                // its deadline, the next one starts at another endpoint.
                Err(_) => {
                    self.inner.current.store((index + 1) % n, Ordering::Relaxed);
                    return Err(self.timeout(what));
                }
            }
        }
        Err(self.unreachable(what, reason))
    }

    fn unreachable(&self, what: &str, reason: String) -> V2Error {
        V2Error::Unreachable {
            what: what.to_string(),
            endpoints: self.inner.endpoints_display.clone(),
            reason,
        }
    }

    fn timeout(&self, what: &str) -> V2Error {
        V2Error::Timeout {
            what: what.to_string(),
            timeout: self.inner.request_timeout,
            endpoints: self.inner.endpoints_display.clone(),
        }
    }

    /// One complete request within the request deadline.
    async fn call(&self, what: &str, req: Request<'_>) -> Result<Answer, V2Error> {
        let (resp, endpoint) = self.send(what, &req).await?;
        let status = resp.status().as_u16();
        let index = etcd_index(&resp);
        let bytes = tokio::time::timeout(self.inner.request_timeout, resp.bytes())
            .await
            .map_err(|_| self.timeout(what))?
            .map_err(|e| self.unreachable(what, format!("{endpoint}: {e}")))?;
        match interpret(what, &endpoint, status, index, &bytes)? {
            Some(answer) => Ok(answer),
            None => Err(V2Error::Protocol {
                what: what.to_string(),
                endpoint,
                status,
                body: "(empty)".into(),
            }),
        }
    }

    /// `GET key` (`recursive`: the whole directory tree), read through the
    /// raft log so it is never older than a write that already returned.
    pub async fn get(&self, key: &str, recursive: bool) -> Result<Answer, V2Error> {
        let mut query = vec![("quorum", "true".to_string())];
        if recursive {
            query.push(("recursive", "true".into()));
        }
        let what = format!("GET {key}");
        self.call(
            &what,
            Request {
                method: Method::GET,
                key,
                query,
                value: None,
            },
        )
        .await
    }

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
        let req = Request {
            method: Method::GET,
            key,
            query: vec![
                ("quorum", "true".to_string()),
                ("recursive", "true".to_string()),
            ],
            value: None,
        };
        let (mut resp, endpoint) = self.send(&what, &req).await?;
        let status = resp.status().as_u16();
        let index = etcd_index(&resp);
        if status >= 300 {
            let bytes = tokio::time::timeout(self.inner.request_timeout, resp.bytes())
                .await
                .map_err(|_| self.timeout(&what))?
                .map_err(|e| self.unreachable(&what, format!("{endpoint}: {e}")))?;
            interpret(&what, &endpoint, status, index, &bytes)?;
            return Err(V2Error::Protocol {
                what,
                endpoint,
                status,
                body: truncated(&bytes),
            });
        }
        let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let (leaf_tx, mut leaf_rx) = tokio::sync::mpsc::channel(4);
        let prefix = prefix.to_string();
        let parser = tokio::task::spawn_blocking(move || listing::parse(chunk_rx, prefix, leaf_tx));
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

    /// `PUT key value`; `prev_exist: Some(false)` only creates.
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        prev_exist: Option<bool>,
    ) -> Result<Answer, V2Error> {
        let query = prev_exist
            .map(|p| vec![("prevExist", p.to_string())])
            .unwrap_or_default();
        let what = format!("PUT {key}");
        self.call(
            &what,
            Request {
                method: Method::PUT,
                key,
                query,
                value: Some(value),
            },
        )
        .await
    }

    /// Deletes `key` (a directory and all below it with `recursive`).
    pub async fn delete(&self, key: &str, recursive: bool) -> Result<Answer, V2Error> {
        let query = if recursive {
            vec![("recursive", "true".to_string())]
        } else {
            Vec::new()
        };
        let what = format!("DELETE {key}");
        self.call(
            &what,
            Request {
                method: Method::DELETE,
                key,
                query,
                value: None,
            },
        )
        .await
    }

    /// Waits for the first change at or below `key` with index ≥
    /// `wait_index`, for at most `window` after etcd accepted the poll.
    pub async fn wait(
        &self,
        key: &str,
        wait_index: i64,
        window: Duration,
    ) -> Result<Polled, V2Error> {
        let req = watch_request(key, wait_index, false);
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
    /// ≥ `wait_index`. An error etcd answers at once (e.g.
    /// [`code::EVENT_INDEX_CLEARED`]) is returned here.
    pub async fn stream(&self, key: &str, wait_index: i64) -> Result<WatchStream, V2Error> {
        let req = watch_request(key, wait_index, true);
        let what = format!("watch {key}");
        let (resp, endpoint) = self.send(&what, &req).await?;
        let status = resp.status().as_u16();
        let start_index = etcd_index(&resp);
        if status >= 300 {
            let bytes = tokio::time::timeout(self.inner.request_timeout, resp.bytes())
                .await
                .map_err(|_| self.timeout(&what))?
                .map_err(|e| self.unreachable(&what, format!("{endpoint}: {e}")))?;
            // Always an error here: etcd answers a watch it accepts with 200.
            interpret(&what, &endpoint, status, start_index, &bytes)?;
            return Err(V2Error::Protocol {
                what,
                endpoint,
                status,
                body: truncated(&bytes),
            });
        }
        Ok(WatchStream {
            resp,
            endpoint,
            what,
            start_index,
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

    /// Fails with [`V2Error::Disabled`] when etcd does not serve the v2 API
    /// (etcd 3.4/3.5 without `--enable-v2`, or 3.6+).
    pub async fn check_enabled(&self) -> Result<(), V2Error> {
        match self.get("/", false).await {
            Ok(_) => Ok(()),
            Err(V2Error::Protocol {
                endpoint, status, ..
            }) if status == 404 => Err(V2Error::Disabled { endpoint, status }),
            Err(e) => Err(e),
        }
    }
}

fn etcd_index(resp: &reqwest::Response) -> i64 {
    resp.headers()
        .get("X-Etcd-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A response as an answer, nothing (empty body), or the error it says.
fn interpret(
    what: &str,
    endpoint: &str,
    status: u16,
    index: i64,
    bytes: &[u8],
) -> Result<Option<Answer>, V2Error> {
    if status == 401 {
        return Err(V2Error::Unauthorized {
            what: what.to_string(),
            body: truncated(bytes),
        });
    }
    match wire::parse_body(bytes, index) {
        Body::Answer(answer) if status < 300 => Ok(Some(answer)),
        Body::Empty if status < 300 => Ok(None),
        Body::Failure(failure) => Err(V2Error::Etcd {
            what: what.to_string(),
            failure,
        }),
        _ => Err(V2Error::Protocol {
            what: what.to_string(),
            endpoint: endpoint.to_string(),
            status,
            body: truncated(bytes),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_escaped_paths_under_v2_keys() {
        let e = Url::parse("http://127.0.0.1:2379").expect("url");
        assert_eq!(
            V2Client::url(&e, "/_coreos.com/fleet/job/k:a:b:c:1.service").as_str(),
            "http://127.0.0.1:2379/v2/keys/_coreos.com/fleet/job/k:a:b:c:1.service"
        );
        assert_eq!(
            V2Client::url(&e, "/").as_str(),
            "http://127.0.0.1:2379/v2/keys/"
        );
        let with_path = Url::parse("https://etcd.example:2379/").expect("url");
        assert_eq!(
            V2Client::url(&with_path, "/a b/c?d").as_str(),
            "https://etcd.example:2379/v2/keys/a%20b/c%3Fd"
        );
    }

    #[test]
    fn a_plain_404_is_not_an_etcd_error() {
        match interpret("GET /", "e", 404, 0, b"404 page not found\n") {
            Err(V2Error::Protocol { status: 404, .. }) => {}
            other => panic!("{other:?}"),
        }
        match interpret(
            "GET /x",
            "e",
            404,
            3,
            br#"{"errorCode":100,"message":"Key not found","cause":"/x","index":3}"#,
        ) {
            Err(e) => assert_eq!(e.code(), Some(code::KEY_NOT_FOUND)),
            other => panic!("{other:?}"),
        }
    }
}
