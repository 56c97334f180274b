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

/// Every field an answer or an error may carry, so that a body is read
/// once whichever it is (trying one shape, then the other, read every
/// answer twice: answers and watch events are nearly all a v2 leader reads).
#[derive(Deserialize)]
struct Either {
    #[serde(rename = "errorCode", default)]
    code: Option<u32>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    index: i64,
    #[serde(default)]
    action: String,
    #[serde(default)]
    node: Node,
    #[serde(rename = "prevNode", default)]
    prev_node: Option<Node>,
}

/// Reads one response body; `etcd_index` is the answer's `X-Etcd-Index`
/// header (0 when absent), kept in [`Answer::etcd_index`].
pub fn parse_body(bytes: &[u8], etcd_index: i64) -> Body {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Body::Empty;
    }
    match serde_json::from_slice::<Either>(bytes) {
        Ok(Either {
            code: Some(code),
            message,
            cause,
            index,
            ..
        }) => Body::Failure(EtcdFailure {
            code,
            message,
            cause,
            index,
        }),
        Ok(e) if !e.action.is_empty() => Body::Answer(Answer {
            action: e.action,
            node: e.node,
            prev_node: e.prev_node,
            etcd_index,
        }),
        _ => Body::Foreign,
    }
}

/// Whether a 2xx body is an answer of etcd's (`{"action":…`), told from
/// its first bytes: a write's answer echoes the value written, and nothing
/// of it is needed once etcd said it applied it.
pub fn is_answer(bytes: &[u8]) -> bool {
    let trimmed = bytes.trim_ascii_start();
    trimmed.starts_with(b"{\"action\":")
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

    #[test]
    fn a_write_answer_and_its_previous_node_read_in_one_pass() {
        // As etcd 3.4 answers a PUT over an existing key.
        let set = br#"{"action":"set","node":{"key":"/f/job/a/object","value":"{\"Name\":\"a\"}","modifiedIndex":12,"createdIndex":12},"prevNode":{"key":"/f/job/a/object","value":"{}","modifiedIndex":7,"createdIndex":7}}"#;
        match parse_body(set, 12) {
            Body::Answer(a) => {
                assert_eq!(a.action, "set");
                assert_eq!(a.node.value.as_deref(), Some(r#"{"Name":"a"}"#));
                assert_eq!(a.node.modified_index, 12);
                assert_eq!(a.prev_node.and_then(|p| p.value).as_deref(), Some("{}"));
                assert_eq!(a.etcd_index, 12);
            }
            other => panic!("{other:?}"),
        }
        assert!(is_answer(set));
        assert!(is_answer(b"\n{\"action\":\"delete\",\"node\":{}}"));
        let exists =
            br#"{"errorCode":105,"message":"Key already exists","cause":"/f/unit/x","index":40}"#;
        assert!(!is_answer(exists));
        assert!(
            matches!(parse_body(exists, 0), Body::Failure(f) if f.code == code::NODE_EXIST && f.cause == "/f/unit/x")
        );
        assert!(!is_answer(b"404 page not found"));
        assert!(!is_answer(b""));
    }
}
