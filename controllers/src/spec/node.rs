//! A small document tree that keeps source positions, built from YAML (with
//! line and column) or JSON (without). Decoding works on this tree rather than
//! through serde so that *every* error is reported, each with its position.

use super::error::{Pos, SpecErrors};

mod yaml;
pub use yaml::from_yaml;

/// Documents larger than this are refused before parsing: a unit is a few
/// hundred bytes and etcd refuses requests over 1.5 MiB anyway.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The unit schema is four levels deep; anything far deeper is hostile.
const MAX_DEPTH: usize = 32;
/// Bounds alias expansion ("billion laughs") and giant documents alike.
const MAX_NODES: usize = 100_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Option<Pos>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    /// A scalar's text. `quoted` scalars are always strings; plain ones may be
    /// read as numbers or booleans by the decoder.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Option<Pos>,
    pub value: Node,
    /// A top-level YAML entry whose value is an anchor the document uses
    /// (`common: &common {…}` beside `<<: *common`): it defines a shared
    /// value rather than a field, so an unknown key here is no error.
    pub defines_anchor: bool,
}

impl Kind {
    /// What an operator would call this kind of value, for error messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "nothing (null)",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

fn check_size(text: &str, source: &str) -> Result<(), SpecErrors> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(SpecErrors::single(
            source,
            "",
            None,
            format!(
                "document is {} bytes; the limit is {} bytes",
                text.len(),
                MAX_DOCUMENT_BYTES
            ),
        ));
    }
    Ok(())
}

/// Parses a JSON document (the form stored in etcd) into the same tree. A
/// leading UTF-8 byte-order mark is skipped, as for YAML.
pub fn from_json(text: &str, source: &str) -> Result<Node, SpecErrors> {
    check_size(text, source)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        SpecErrors::single(
            source,
            "",
            Some(Pos {
                line: e.line(),
                col: e.column(),
            }),
            format!("invalid JSON: {e}"),
        )
    })?;
    let mut budget = MAX_NODES;
    json_node(value, source, &mut budget)
}

fn json_node(v: serde_json::Value, source: &str, budget: &mut usize) -> Result<Node, SpecErrors> {
    use serde_json::Value;
    if *budget == 0 {
        return Err(SpecErrors::single(
            source,
            "",
            None,
            format!("document has more than {MAX_NODES} values"),
        ));
    }
    *budget -= 1;
    let kind = match v {
        Value::Null => Kind::Null,
        Value::Bool(b) => Kind::Scalar {
            text: b.to_string(),
            quoted: false,
        },
        Value::Number(n) => Kind::Scalar {
            text: n.to_string(),
            quoted: false,
        },
        Value::String(s) => Kind::Scalar {
            text: s,
            quoted: true,
        },
        Value::Array(items) => Kind::Seq(
            items
                .into_iter()
                .map(|i| json_node(i, source, budget))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Kind::Map(
            map.into_iter()
                .map(|(key, value)| {
                    Ok(Entry {
                        key,
                        key_pos: None,
                        value: json_node(value, source, budget)?,
                        defines_anchor: false,
                    })
                })
                .collect::<Result<_, SpecErrors>>()?,
        ),
    };
    Ok(Node { kind, pos: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_positions_are_one_based() {
        let n = from_yaml("name: x\nspec:\n  image: y\n", "f").unwrap();
        let Kind::Map(entries) = n.kind else { panic!() };
        assert_eq!(entries[1].key, "spec");
        assert_eq!(entries[1].key_pos, Some(Pos { line: 2, col: 1 }));
        let Kind::Map(inner) = &entries[1].value.kind else {
            panic!()
        };
        assert_eq!(inner[0].key_pos, Some(Pos { line: 3, col: 3 }));
    }

    #[test]
    fn plain_null_forms_and_quoted_strings() {
        let n = from_yaml("a: ~\nb: 'null'\nc:\n", "f").unwrap();
        let Kind::Map(e) = n.kind else { panic!() };
        assert_eq!(e[0].value.kind, Kind::Null);
        assert!(matches!(&e[1].value.kind, Kind::Scalar { text, quoted: true } if text == "null"));
        assert_eq!(e[2].value.kind, Kind::Null);
    }

    #[test]
    fn duplicate_keys_are_refused_with_position() {
        let err = from_yaml("a: 1\na: 2\n", "f.yaml").unwrap_err();
        assert_eq!(err.to_string(), "f.yaml:2:1: duplicate key `a`");
    }

    #[test]
    fn several_documents_are_refused() {
        let err = from_yaml("a: 1\n---\na: 2\n", "f").unwrap_err();
        assert!(err.to_string().contains("one YAML document"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(100) + &"]".repeat(100);
        let err = from_yaml(&text, "f").unwrap_err();
        assert!(err.to_string().contains("nesting deeper"), "{err}");
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='j' {
            text.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        let err = from_yaml(&text, "f").unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
    }

    #[test]
    fn oversized_documents_are_refused_before_parsing() {
        let text = "a".repeat(MAX_DOCUMENT_BYTES + 1);
        for err in [
            from_yaml(&text, "f").unwrap_err(),
            from_json(&text, "f").unwrap_err(),
        ] {
            assert!(err.to_string().contains("the limit is"), "{err}");
        }
    }

    #[test]
    fn invalid_yaml_and_json_name_the_position() {
        let err = from_yaml("a: [1, 2\n", "f.yaml").unwrap_err();
        assert!(err.to_string().starts_with("f.yaml:"), "{err}");
        let err = from_json("{\"a\": }", "/kaylee/units/x").unwrap_err();
        assert!(err.to_string().starts_with("/kaylee/units/x:1:"), "{err}");
    }

    fn entries(node: &Node) -> Vec<(String, String)> {
        let Kind::Map(entries) = &node.kind else {
            panic!("not a mapping: {node:?}")
        };
        entries
            .iter()
            .map(|e| match &e.value.kind {
                Kind::Scalar { text, .. } => (e.key.clone(), text.clone()),
                other => (e.key.clone(), other.describe().to_string()),
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let n = from_yaml("\u{feff}name: x\n", "f").unwrap();
        assert_eq!(entries(&n), pairs(&[("name", "x")]));
        let Kind::Map(e) = &n.kind else { panic!() };
        assert_eq!(e[0].key_pos, Some(Pos { line: 1, col: 1 }));
        let n = from_json("\u{feff}{\"name\": \"x\"}", "k").unwrap();
        assert_eq!(entries(&n), pairs(&[("name", "x")]));
    }

    #[test]
    fn merge_keys_apply_with_explicit_keys_winning() {
        let n = from_yaml(
            "base: &b {image: a, cmd: c}\nu:\n  <<: *b\n  image: mine\n",
            "f",
        )
        .unwrap();
        // `base` only defines what `u` merges.
        let Kind::Map(top) = &n.kind else { panic!() };
        assert!(top[0].defines_anchor && !top[1].defines_anchor);
        assert_eq!(
            entries(&top[1].value),
            pairs(&[("cmd", "c"), ("image", "mine")])
        );
        // Inline, and a list merged in order: earlier mappings win.
        let n = from_yaml("<<: {a: 1}\nb: 2\n", "f").unwrap();
        assert_eq!(entries(&n), pairs(&[("a", "1"), ("b", "2")]));
        let n = from_yaml(
            "x: &x {a: 1, b: 1}\ny: &y {b: 2, c: 2}\nz:\n  <<: [*x, *y]\n  c: 3\n",
            "f",
        )
        .unwrap();
        let Kind::Map(top) = &n.kind else { panic!() };
        assert_eq!(
            entries(&top[2].value),
            pairs(&[("a", "1"), ("b", "1"), ("c", "3")])
        );
        // A quoted key is a plain string, not a merge.
        let n = from_yaml("'<<': {a: 1}\n", "f").unwrap();
        assert_eq!(entries(&n), pairs(&[("<<", "a mapping")]));
    }

    #[test]
    fn merged_entries_keep_where_they_were_written() {
        let n = from_yaml("a: &a\n  k: 1\nb:\n  <<: *a\n", "f").unwrap();
        let Kind::Map(top) = &n.kind else { panic!() };
        let Kind::Map(b) = &top[1].value.kind else {
            panic!()
        };
        assert_eq!(b[0].key_pos, Some(Pos { line: 2, col: 3 }));
    }

    #[test]
    fn merging_large_mappings_stays_fast() {
        let keys: String = (0..15_000).map(|i| format!("k{i}: 1\n")).collect();
        let indented: String = keys.lines().map(|l| format!("  {l}\n")).collect();
        let text = format!("a: &a\n{indented}b:\n  <<: *a\n{indented}");
        let started = std::time::Instant::now();
        // 15,000 keys each way keep it within the node budget.
        if let Err(e) = from_yaml(&text, "f") {
            panic!("{e}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn bad_merge_values_are_refused_with_position() {
        let err = from_yaml("a: 1\n<<: 5\n", "f.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml:2:1: merge key `<<` takes a mapping or a list of mappings, found a scalar"
        );
        let err = from_yaml("<<: [{a: 1}, x]\n", "f.yaml").unwrap_err();
        assert!(
            err.to_string().contains("found a scalar in its list"),
            "{err}"
        );
        let err = from_yaml("<<: {a: 1}\n<<: {b: 1}\n", "f.yaml").unwrap_err();
        assert_eq!(err.to_string(), "f.yaml:2:1: duplicate key `<<`");
    }

    #[test]
    fn empty_documents_are_refused() {
        assert!(from_yaml("", "f").is_err());
        assert!(from_yaml("# only a comment\n", "f").is_err());
    }
}
