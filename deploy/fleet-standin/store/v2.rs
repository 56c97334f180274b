//! etcd's v2 keys API over plain HTTP: the only API real fleet uses, with
//! the options fleet's writes need (`ttl`, `prevExist`, `prevValue`). Kaylee's
//! own v2 client has no TTLs, so this is a small one of the stand-in's own;
//! it reads answers with the library's wire types.

use super::StoreError;
use kaylee_controllers::etcd::v2::wire::{Body, EtcdFailure, Node, parse_body};
use reqwest::{Method, Url};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// etcd's errorCodes that a caller acts on.
pub mod code {
    pub const KEY_NOT_FOUND: u32 = 100;
    pub const COMPARE_FAILED: u32 = 101;
    pub const NODE_EXIST: u32 = 105;
}

/// A v2 client over `endpoints`, trying the next one when one cannot be
/// reached.
pub struct V2 {
    http: reqwest::Client,
    endpoints: Vec<Url>,
    current: AtomicUsize,
    timeout: Duration,
}

/// Conditions and TTL of one write.
#[derive(Debug, Default, Clone)]
pub struct Opts<'a> {
    pub ttl: Option<Duration>,
    pub prev_exist: Option<bool>,
    pub prev_value: Option<&'a str>,
    pub recursive: bool,
}

/// etcd answered: done, or refused with an errorCode.
pub type Outcome = Result<Node, EtcdFailure>;

impl V2 {
    /// A client; nothing is connected yet.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<V2, String> {
        let endpoints = endpoints
            .iter()
            .map(|e| {
                let full = if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                };
                Url::parse(&full)
                    .ok()
                    .filter(|u| u.scheme() == "http")
                    .ok_or_else(|| format!("--etcd-endpoints: {e} is not an http:// URL"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // reqwest is built with rustls and no default crypto provider (the
        // library's choice); endpoints are plain http, so no root is trusted.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(V2 {
            http,
            endpoints,
            current: AtomicUsize::new(0),
            timeout,
        })
    }

    fn url(endpoint: &Url, key: &str) -> Url {
        let mut url = endpoint.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["v2", "keys"]);
            segments.extend(key.split('/').filter(|p| !p.is_empty()));
        }
        url
    }

    /// One request, moving to the next endpoint when one refuses the
    /// connection; an answer from etcd either way.
    async fn call(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, String)],
        value: Option<&str>,
    ) -> Result<Outcome, StoreError> {
        let what = format!("{method} {key}");
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..n {
            let index = (first + i) % n;
            let mut req = self
                .http
                .request(method.clone(), Self::url(&self.endpoints[index], key))
                .query(query);
            if let Some(v) = value {
                req = req.form(&[("value", v)]);
            }
            let sent = tokio::time::timeout(self.timeout, async {
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, bytes))
            })
            .await;
            let (status, bytes) = match sent {
                Err(_) => {
                    self.current.store((index + 1) % n, Ordering::Relaxed);
                    return Err(StoreError::Unreachable(format!(
                        "etcd v2 {what}: no answer within {:?}",
                        self.timeout
                    )));
                }
                Ok(Err(e)) => {
                    last = format!("{}: {e}", self.endpoints[index]);
                    continue;
                }
                Ok(Ok(answer)) => answer,
            };
            self.current.store(index, Ordering::Relaxed);
            return match parse_body(&bytes, 0) {
                Body::Answer(a) if status < 300 => Ok(Ok(a.node)),
                Body::Failure(f) => Ok(Err(f)),
                _ => Err(StoreError::Refused(format!(
                    "etcd v2 {what}: HTTP {status}: {} (is etcd running with --enable-v2=true?)",
                    String::from_utf8_lossy(&bytes).trim()
                ))),
            };
        }
        Err(StoreError::Unreachable(format!("etcd v2 {what}: {last}")))
    }

    /// Every key (not directory) under `dir`, with its value; none when
    /// `dir` does not exist.
    pub async fn list(&self, dir: &str) -> Result<Vec<(String, String)>, StoreError> {
        let query = [("recursive", "true".into()), ("quorum", "true".into())];
        match self.call(Method::GET, dir, &query, None).await? {
            Ok(node) => Ok(node
                .leaves()
                .into_iter()
                .filter_map(|n| Some((n.key.clone(), n.value.clone()?)))
                .collect()),
            Err(f) if f.code == code::KEY_NOT_FOUND => Ok(Vec::new()),
            Err(f) => Err(refused("GET", dir, &f)),
        }
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let query = [("quorum", "true".into())];
        match self.call(Method::GET, key, &query, None).await? {
            Ok(node) => Ok(node.value),
            Err(f) if f.code == code::KEY_NOT_FOUND => Ok(None),
            Err(f) => Err(refused("GET", key, &f)),
        }
    }

    /// `PUT key=value` with `opts`.
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        opts: &Opts<'_>,
    ) -> Result<Outcome, StoreError> {
        self.call(Method::PUT, key, &query(opts), Some(value)).await
    }

    /// `DELETE key` with `opts`.
    pub async fn delete(&self, key: &str, opts: &Opts<'_>) -> Result<Outcome, StoreError> {
        self.call(Method::DELETE, key, &query(opts), None).await
    }
}

fn query(opts: &Opts<'_>) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(ttl) = opts.ttl {
        q.push(("ttl", whole_seconds(ttl).to_string()));
    }
    if let Some(p) = opts.prev_exist {
        q.push(("prevExist", p.to_string()));
    }
    if let Some(v) = opts.prev_value {
        q.push(("prevValue", v.to_string()));
    }
    if opts.recursive {
        q.push(("recursive", "true".into()));
    }
    q
}

/// etcd's TTLs are whole seconds; a fraction rounds up so a key never
/// lives shorter than asked.
pub fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// An etcd refusal the caller did not expect.
pub fn refused(method: &str, key: &str, f: &EtcdFailure) -> StoreError {
    StoreError::Refused(format!(
        "etcd v2 {method} {key}: {} (errorCode {}, {})",
        f.message, f.code, f.cause
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_paths_under_v2_keys() {
        let e = Url::parse("http://127.0.0.1:2379").expect("url");
        assert_eq!(
            V2::url(&e, "/_coreos.com/fleet/job/k:a:b:c:1.service/target").as_str(),
            "http://127.0.0.1:2379/v2/keys/_coreos.com/fleet/job/k:a:b:c:1.service/target"
        );
    }

    #[test]
    fn ttls_round_up_to_seconds() {
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
    }
}
