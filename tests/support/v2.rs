//! etcd's v2 keys API spoken by hand (async HTTP/1.0 over loopback), so
//! tests read exactly the bytes fleet would read, independently of
//! Kaylee's own v2 client.

use base64::prelude::{BASE64_STANDARD, Engine};
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The port of `http://127.0.0.1:<port>`.
pub fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {endpoint}"))
}

/// `application/x-www-form-urlencoded` and path escaping: everything but
/// unreserved characters (and `/`, `:` in paths) as `%XX`.
pub fn escape(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One request with a form body (the keys API); returns the status and
/// the body.
pub async fn request(port: u16, method: &str, target: &str, form: Option<&str>) -> (u16, String) {
    let body = form.map(|f| ("application/x-www-form-urlencoded", f));
    request_as(port, None, method, target, body).await
}

/// One request as `user` (`name:password`, HTTP basic auth) with an
/// optional `(content type, body)`.
pub async fn request_as(
    port: u16,
    user: Option<&str>,
    method: &str,
    target: &str,
    body: Option<(&str, &str)>,
) -> (u16, String) {
    match exchange(port, user, method, target, body).await {
        Ok(answer) => (answer.status, answer.body),
        Err(e) => panic!("{e}"),
    }
}

/// What the keys API answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// `X-Etcd-Index`: the store's index when it answered, so two reads that
    /// carry the same one saw the same state.
    pub index: Option<i64>,
}

/// Like [`request`], but an etcd that does not answer (stopped, restarting)
/// is an `Err` naming the request, not a panic.
pub async fn try_request(
    port: u16,
    method: &str,
    target: &str,
    form: Option<&str>,
) -> Result<Answer, String> {
    let body = form.map(|f| ("application/x-www-form-urlencoded", f));
    exchange(port, None, method, target, body).await
}

async fn exchange(
    port: u16,
    user: Option<&str>,
    method: &str,
    target: &str,
    body: Option<(&str, &str)>,
) -> Result<Answer, String> {
    let call = async {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut stream = TcpStream::connect(addr).await?;
        let (content_type, body) = body.unwrap_or(("text/plain", ""));
        let auth = user
            .map(|u| format!("Authorization: Basic {}\r\n", BASE64_STANDARD.encode(u)))
            .unwrap_or_default();
        let head = format!(
            "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(TIMEOUT, call)
        .await
        .map_err(|_| format!("{method} {target}: no answer within {TIMEOUT:?}"))?
        .map_err(|e| format!("{method} {target}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {target}: no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {target}: no status in {head:?}"))?;
    let index = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("X-Etcd-Index")
            .then(|| value.trim().parse().ok())
            .flatten()
    });
    Ok(Answer {
        status,
        body: body.to_string(),
        index,
    })
}

fn path(key: &str) -> String {
    format!("/v2/keys{}", escape(key, b"/:"))
}

/// Every key (not directory) at or below `key`, with its value and
/// modifiedIndex; empty when `key` does not exist.
pub async fn tree(port: u16, key: &str) -> Vec<(String, String, i64)> {
    match try_tree(port, key).await {
        Ok((keys, _)) => keys,
        Err(e) => panic!("{e}"),
    }
}

/// Like [`tree`], with the store's index it was read at; `Err` when etcd
/// does not answer as expected.
pub async fn try_tree(port: u16, key: &str) -> Result<(Vec<(String, String, i64)>, i64), String> {
    let target = format!("{}?recursive=true", path(key));
    let answer = try_request(port, "GET", &target, None).await?;
    let index = answer.index.unwrap_or(0);
    if answer.status == 404 {
        return Ok((Vec::new(), index));
    }
    if answer.status != 200 {
        return Err(format!("GET {key}: {} {}", answer.status, answer.body));
    }
    let parsed: Value =
        serde_json::from_str(&answer.body).map_err(|e| format!("GET {key}: {e}"))?;
    let mut out = Vec::new();
    let mut stack = vec![parsed["node"].clone()];
    while let Some(node) = stack.pop() {
        if node["dir"].as_bool().unwrap_or(false) {
            stack.extend(node["nodes"].as_array().cloned().unwrap_or_default());
        } else if let Some(k) = node["key"].as_str() {
            out.push((
                k.to_string(),
                node["value"].as_str().unwrap_or_default().to_string(),
                node["modifiedIndex"].as_i64().unwrap_or(0),
            ));
        }
    }
    out.sort();
    Ok((out, index))
}

/// The value of one key, if it exists.
pub async fn get(port: u16, key: &str) -> Option<String> {
    let (status, body) = request(port, "GET", &path(key), None).await;
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "GET {key}: {body}");
    let answer: Value = serde_json::from_str(&body).expect("etcd v2 JSON");
    answer["node"]["value"].as_str().map(str::to_string)
}

pub async fn put(port: u16, key: &str, value: &str) {
    if let Err(e) = try_put(port, key, value).await {
        panic!("{e}");
    }
}

pub async fn try_put(port: u16, key: &str, value: &str) -> Result<(), String> {
    let form = format!("value={}", escape(value, b""));
    let answer = try_request(port, "PUT", &path(key), Some(&form)).await?;
    match answer.status {
        200 | 201 => Ok(()),
        status => Err(format!("PUT {key}: {status} {}", answer.body)),
    }
}

/// Deletes a key or a whole directory; a missing one is fine.
pub async fn delete_all(port: u16, key: &str) {
    if let Err(e) = try_delete_all(port, key).await {
        panic!("{e}");
    }
}

pub async fn try_delete_all(port: u16, key: &str) -> Result<(), String> {
    let target = format!("{}?recursive=true", path(key));
    let answer = try_request(port, "DELETE", &target, None).await?;
    match answer.status {
        200 | 404 => Ok(()),
        status => Err(format!("DELETE {key}: {status} {}", answer.body)),
    }
}
