//! etcd's v2 keys API on the wire: the JSON of nodes, answers and errors.

use serde::Deserialize;

/// etcd v2 error codes Kaylee acts on (etcd's `error/error.go`).
pub mod code {
    /// "Key not found": the key or directory does not exist.
    pub const KEY_NOT_FOUND: u32 = 100;
    /// "Key already exists": a create (`prevExist=false`) found the key.
    pub const NODE_EXIST: u32 = 105;
    /// "The event in requested index is outdated and cleared": the history
    /// (the last 1000 events) no longer reaches the asked index.
    pub const EVENT_INDEX_CLEARED: u32 = 401;
}

/// One key or directory. The root directory has no `key` field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Node {
    /// The absolute key, e.g. `/_coreos.com/fleet/job/k:web:…/object`.
    #[serde(default)]
    pub key: String,
    /// A key's value; `None` for a directory (and for a deleted key's
    /// node in a watch event).
    #[serde(default)]
    pub value: Option<String>,
    /// Whether this is a directory.
    #[serde(default)]
    pub dir: bool,
    /// A directory's children (all levels with `recursive=true`, one
    /// level without).
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// The store index of the node's last change (etcd's
    /// `modifiedIndex`).
    #[serde(rename = "modifiedIndex", default)]
    pub modified_index: i64,
}

impl Node {
    /// Every key (not directory) at or below this node, depth first.
    pub fn leaves(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            if node.dir {
                stack.extend(node.nodes.iter().rev());
            } else {
                out.push(node);
            }
        }
        out
    }
}

/// A successful answer: the action and the node it touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Answer {
    /// etcd's action: `get`, `set`, `create`, `update`, `delete`,
    /// `compareAndSwap`, `compareAndDelete` or `expire`.
    #[serde(default)]
    pub action: String,
    /// The node read or changed.
    #[serde(default)]
    pub node: Node,
    /// The node as it was before a change, when etcd sends it.
    #[serde(rename = "prevNode", default)]
    pub prev_node: Option<Node>,
    /// The `X-Etcd-Index` header: the store's index when etcd answered (for
    /// a watch, when the watch started).
    #[serde(skip)]
    pub etcd_index: i64,
}

/// etcd's own error body, e.g. `{"errorCode":100,"message":"Key not found",…}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EtcdFailure {
    /// etcd's error code ([`code`]).
    #[serde(rename = "errorCode")]
    pub code: u32,
    /// etcd's words for the code, e.g. `Key not found`.
    #[serde(default)]
    pub message: String,
    /// What it applies to, usually the key.
    #[serde(default)]
    pub cause: String,
    /// The store index when etcd answered.
    #[serde(default)]
    pub index: i64,
}

/// What one response body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A node read or changed.
    Answer(Answer),
    /// One of etcd's v2 errors.
    Failure(EtcdFailure),
    /// A long poll that ended without an event.
    Empty,
    /// Not etcd's JSON at all (e.g. a plain `404 page not found`).
    Foreign,
}

/// Reads one response body; `etcd_index` is the answer's `X-Etcd-Index`
/// header (0 when absent), kept in [`Answer::etcd_index`].
pub fn parse_body(bytes: &[u8], etcd_index: i64) -> Body {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Body::Empty;
    }
    if let Ok(failure) = serde_json::from_slice::<EtcdFailure>(bytes) {
        return Body::Failure(failure);
    }
    match serde_json::from_slice::<Answer>(bytes) {
        Ok(answer) if !answer.action.is_empty() => Body::Answer(Answer {
            etcd_index,
            ..answer
        }),
        _ => Body::Foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recursive_listing_flattens_to_its_keys() {
        let json = br#"{"action":"get","node":{"key":"/f/job","dir":true,"nodes":[
            {"key":"/f/job/a","dir":true,"nodes":[
                {"key":"/f/job/a/object","value":"{}","modifiedIndex":7,"createdIndex":7},
                {"key":"/f/job/a/target-state","value":"launched","modifiedIndex":8,"createdIndex":8}],
             "modifiedIndex":7,"createdIndex":7},
            {"key":"/f/job/empty","dir":true,"modifiedIndex":3,"createdIndex":3}],
            "modifiedIndex":2,"createdIndex":2}}"#;
        let Body::Answer(answer) = parse_body(json, 9) else {
            panic!("not an answer")
        };
        assert_eq!(answer.etcd_index, 9);
        let leaves: Vec<(&str, Option<&str>, i64)> = answer
            .node
            .leaves()
            .into_iter()
            .map(|n| (n.key.as_str(), n.value.as_deref(), n.modified_index))
            .collect();
        assert_eq!(
            leaves,
            [
                ("/f/job/a/object", Some("{}"), 7),
                ("/f/job/a/target-state", Some("launched"), 8)
            ]
        );
    }

    #[test]
    fn errors_empty_bodies_and_foreign_bodies_are_told_apart() {
        let failure = br#"{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [1008/5]","index":2007}"#;
        match parse_body(failure, 0) {
            Body::Failure(f) => {
                assert_eq!(f.code, code::EVENT_INDEX_CLEARED);
                assert_eq!(f.index, 2007);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_body(b"", 0), Body::Empty);
        assert_eq!(parse_body(b"\n", 0), Body::Empty);
        assert_eq!(parse_body(b"404 page not found\n", 0), Body::Foreign);
        assert_eq!(parse_body(b"{\"foo\":1}", 0), Body::Foreign);
    }
}
