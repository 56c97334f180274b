//! A client for etcd's v2 keys API (`/v2/keys/…`), the only API real fleet
//! reads and writes its registry through. Same endpoints, TLS, auth (HTTP
//! basic, as etcd v2 auth is) and deadlines as the v3 client.

mod error;
mod listing;
mod reader;
mod source;
mod tls;
mod watch;
pub mod wire;

use crate::etcd::EtcdConfig;
pub use error::V2Error;
pub use listing::Leaf;
use reqwest::{Method, RequestBuilder, Url};
pub use source::V2Prefix;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
pub use watch::{Polled, Probed, Streamed, WatchStream};
pub use wire::{Answer, Body, EtcdFailure, Node, code};

#[derive(Clone)]
/// A client of etcd's v2 keys API; cheap to clone (one shared connection pool).
pub struct V2Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Streaming watches' own connections, driven by [`reader::Reader`].
    watch_http: reqwest::Client,
    reader: std::sync::OnceLock<Result<reader::Reader, String>>,
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

/// A quorum `GET key` (read through the raft log), of the whole tree
/// below it with `recursive`.
fn get_request(key: &str, recursive: bool) -> Request<'_> {
    let mut query = vec![("quorum", "true".to_string())];
    if recursive {
        query.push(("recursive", "true".into()));
    }
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
        let [http, watch_http] = tls::http_clients(config)?;
        Ok(V2Client {
            inner: Arc::new(Inner {
                http,
                watch_http,
                reader: std::sync::OnceLock::new(),
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

    fn build(&self, http: &reqwest::Client, endpoint: &Url, req: &Request<'_>) -> RequestBuilder {
        let mut b = http.request(req.method.clone(), Self::url(endpoint, req.key));
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
        self.send_on(&self.inner.http, what, req).await
    }

    /// [`V2Client::send`] through `http`'s connections.
    async fn send_on(
        &self,
        http: &reqwest::Client,
        what: &str,
        req: &Request<'_>,
    ) -> Result<(reqwest::Response, String), V2Error> {
        let n = self.inner.endpoints.len();
        let first = self.inner.current.load(Ordering::Relaxed) % n;
        let mut reason = String::new();
        for i in 0..n {
            let index = (first + i) % n;
            let endpoint = &self.inner.endpoints[index];
            let sent = tokio::time::timeout(
                self.inner.request_timeout,
                self.build(http, endpoint, req).send(),
            )
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

    /// The rest of `resp`'s body, within the request deadline.
    async fn body(
        &self,
        what: &str,
        endpoint: &str,
        resp: reqwest::Response,
    ) -> Result<bytes::Bytes, V2Error> {
        tokio::time::timeout(self.inner.request_timeout, resp.bytes())
            .await
            .map_err(|_| self.timeout(what))?
            .map_err(|e| self.unreachable(what, format!("{endpoint}: {e}")))
    }

    /// One complete request within the request deadline.
    async fn call(&self, what: &str, req: Request<'_>) -> Result<Answer, V2Error> {
        let (resp, endpoint) = self.send(what, &req).await?;
        let (status, index) = (resp.status().as_u16(), etcd_index(&resp));
        let bytes = self.body(what, &endpoint, resp).await?;
        answer_of(what, endpoint, status, index, &bytes)
    }

    /// One write within the request deadline: a 2xx answer of etcd's is
    /// success, and is not parsed (it echoes the value written); anything
    /// else is read as [`V2Client::call`] reads it.
    async fn write(&self, what: &str, req: Request<'_>) -> Result<(), V2Error> {
        let (resp, endpoint) = self.send(what, &req).await?;
        let (status, index) = (resp.status().as_u16(), etcd_index(&resp));
        let bytes = self.body(what, &endpoint, resp).await?;
        if status < 300 && wire::is_answer(&bytes) {
            return Ok(());
        }
        answer_of(what, endpoint, status, index, &bytes).map(|_| ())
    }

    /// The error of a request etcd answered with a status of 300 or more,
    /// where only an error makes sense (a listing, a watch).
    async fn refused(&self, what: String, endpoint: String, resp: reqwest::Response) -> V2Error {
        let (status, index) = (resp.status().as_u16(), etcd_index(&resp));
        let bytes = match self.body(&what, &endpoint, resp).await {
            Ok(bytes) => bytes,
            Err(e) => return e,
        };
        match interpret(&what, &endpoint, status, index, &bytes) {
            Err(e) => e,
            Ok(_) => V2Error::Protocol {
                what,
                endpoint,
                status,
                body: truncated(&bytes),
            },
        }
    }

    /// `GET key` (`recursive`: the whole directory tree), read through the
    /// raft log so it is never older than a write that already returned.
    pub async fn get(&self, key: &str, recursive: bool) -> Result<Answer, V2Error> {
        self.call(&format!("GET {key}"), get_request(key, recursive))
            .await
    }

    /// `PUT key value`; `prev_exist: Some(false)` only creates. etcd's
    /// answer is not read back (see [`V2Client::write`]).
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        prev_exist: Option<bool>,
    ) -> Result<(), V2Error> {
        let query = prev_exist
            .map(|p| vec![("prevExist", p.to_string())])
            .unwrap_or_default();
        let what = format!("PUT {key}");
        self.write(
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
    pub async fn delete(&self, key: &str, recursive: bool) -> Result<(), V2Error> {
        let query = if recursive {
            vec![("recursive", "true".to_string())]
        } else {
            Vec::new()
        };
        let what = format!("DELETE {key}");
        self.write(
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

/// A whole response as an answer, or the error it says (an empty body is
/// one).
fn answer_of(
    what: &str,
    endpoint: String,
    status: u16,
    index: i64,
    bytes: &[u8],
) -> Result<Answer, V2Error> {
    match interpret(what, &endpoint, status, index, bytes)? {
        Some(answer) => Ok(answer),
        None => Err(V2Error::Protocol {
            what: what.to_string(),
            endpoint,
            status,
            body: "(empty)".into(),
        }),
    }
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
