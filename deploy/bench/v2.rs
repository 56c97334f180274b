//! The bench's own etcd v2 client (plain reqwest, not Kaylee's): the puts of
//! the v2 `raw` ceiling and `etcd_alone` latency floor, and the streaming
//! watch through which the bench sees every fleet key written over v2.

use anyhow::{Context, Result, bail};
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use std::time::Duration;

/// The API a run writes fleet's registry through (`--fleet-etcd-api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    V2,
    V3,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::V2 => "v2",
            Api::V3 => "v3",
        }
    }
}

#[derive(Clone)]
pub struct V2 {
    http: Client,
    base: String,
}

/// One v2 event or listed node, as much of it as the bench reads.
#[derive(Debug, Deserialize, Default)]
pub struct Node {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub dir: bool,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(rename = "modifiedIndex", default)]
    pub modified_index: i64,
}

#[derive(Debug, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub node: Node,
    #[serde(rename = "errorCode", default)]
    pub error_code: Option<u32>,
}

/// etcd's "event index cleared": the watch fell out of v2's 1000 events.
pub const INDEX_CLEARED: u32 = 401;

impl V2 {
    pub fn new(endpoint: &str) -> Result<V2> {
        Ok(V2 {
            http: Client::builder().pool_max_idle_per_host(256).build()?,
            base: format!("{endpoint}/v2/keys"),
        })
    }

    fn url(&self, key: &str) -> String {
        format!("{}{key}", self.base)
    }

    /// `PUT key=value`; with `create_only` an existing key is left as it is
    /// (fleet's content-addressed `unit/` records).
    pub async fn put(&self, key: &str, value: &str, create_only: bool) -> Result<()> {
        let mut req = self.http.put(self.url(key)).form(&[("value", value)]);
        if create_only {
            req = req.query(&[("prevExist", "false")]);
        }
        let resp = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .with_context(|| format!("PUT {key}"))?;
        let status = resp.status();
        if status.is_success() || (create_only && status == StatusCode::PRECONDITION_FAILED) {
            // Read the body so the connection goes back to the pool.
            let _ = resp.bytes().await?;
            return Ok(());
        }
        bail!(
            "PUT {key}: {status}: {}",
            resp.text().await.unwrap_or_default()
        )
    }

    /// The store's current index (`X-Etcd-Index`).
    pub async fn index(&self) -> Result<i64> {
        let resp = self.http.get(self.url("/")).send().await?;
        header_index(&resp).context("no X-Etcd-Index")
    }

    /// A quorum read of `dir`, recursive: its root node and the index.
    pub async fn list(&self, dir: &str) -> Result<(Node, i64)> {
        let resp = self
            .http
            .get(self.url(dir))
            .query(&[("recursive", "true"), ("quorum", "true")])
            .timeout(Duration::from_secs(120))
            .send()
            .await?;
        let index = header_index(&resp).context("no X-Etcd-Index")?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok((Node::default(), index));
        }
        #[derive(Deserialize)]
        struct Answer {
            node: Node,
        }
        let bytes = resp.error_for_status()?.bytes().await?;
        let answer: Answer = serde_json::from_slice(&bytes)?;
        Ok((answer.node, index))
    }

    /// Opens a streaming watch of `dir` from `wait_index`: the response (its
    /// body streams one JSON event per line) and `X-Etcd-Index`, the
    /// store's index when the watch started.
    pub async fn stream(&self, dir: &str, wait_index: i64) -> Result<(reqwest::Response, i64)> {
        let resp = self
            .http
            .get(self.url(dir))
            .query(&[
                ("wait", "true".to_string()),
                ("recursive", "true".to_string()),
                ("stream", "true".to_string()),
                ("waitIndex", wait_index.to_string()),
            ])
            .send()
            .await?;
        let index = header_index(&resp).unwrap_or(0);
        Ok((resp, index))
    }
}

/// A long poll from `wait_index`, given `listen` after etcd accepted it:
/// `Some(index)` of an event etcd had (from its history, at once) or got
/// meanwhile; `None` and etcd's index when nothing came.
pub async fn probe(
    v2: &V2,
    dir: &str,
    wait_index: i64,
    listen: Duration,
) -> Result<(Option<i64>, i64)> {
    let resp = v2
        .http
        .get(v2.url(dir))
        .query(&[
            ("wait", "true".to_string()),
            ("recursive", "true".to_string()),
            ("waitIndex", wait_index.to_string()),
        ])
        .send()
        .await?;
    let index = header_index(&resp).unwrap_or(0);
    match tokio::time::timeout(listen, resp.bytes()).await {
        Err(_) => Ok((None, index)),
        Ok(body) => {
            let event: Event = serde_json::from_slice(&body?)?;
            if let Some(code) = event.error_code {
                bail!("probe of {dir}: etcd error {code}");
            }
            Ok((Some(event.node.modified_index), index))
        }
    }
}

fn header_index(resp: &reqwest::Response) -> Option<i64> {
    resp.headers()
        .get("X-Etcd-Index")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Node {
    /// Every key (not directory) at or below this node.
    pub fn leaves(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(n) = stack.pop() {
            if n.dir {
                stack.extend(n.nodes.iter());
            } else {
                out.push(n);
            }
        }
        out
    }
}
