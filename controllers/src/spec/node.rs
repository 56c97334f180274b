//! A small document tree that keeps source positions, built from YAML (with
//! line and column) or JSON (without). Decoding works on this tree rather than
//! through serde so that *every* error is reported, each with its position.

use super::error::{Pos, SpecErrors};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

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

fn pos_of(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
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

/// A collection being built. Its position is that of its first child: the
/// parser's own mark for a block collection points past its first key.
enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Option<Pos>,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        key: Option<(String, Pos)>,
        pos: Option<Pos>,
        anchor: usize,
    },
}

struct Builder<'a> {
    source: &'a str,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    root: Option<Node>,
    documents: usize,
}

impl Builder<'_> {
    fn fail(&self, pos: Pos, msg: impl Into<String>) -> SpecErrors {
        SpecErrors::single(self.source, "", Some(pos), msg)
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), SpecErrors> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(self.fail(pos, format!("document has more than {MAX_NODES} values")));
        }
        Ok(())
    }

    fn push_frame(&mut self, frame: Frame, pos: Pos) -> Result<(), SpecErrors> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.fail(pos, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.count(1, pos)?;
        self.stack.push(frame);
        Ok(())
    }

    /// Attaches a finished node to its parent (or makes it the root).
    fn finish(&mut self, mut node: Node, anchor: usize) -> Result<(), SpecErrors> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let pos = node.pos.unwrap_or(Pos { line: 0, col: 0 });
        if let Some(Frame::Seq { pos: p @ None, .. } | Frame::Map { pos: p @ None, .. }) =
            self.stack.last_mut()
        {
            *p = node.pos;
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some((k, key_pos)) => {
                    // A nested collection is best pointed at by its key.
                    if matches!(node.kind, Kind::Seq(_) | Kind::Map(_)) {
                        node.pos = Some(key_pos);
                    }
                    if entries.iter().any(|e| e.key == k) {
                        return Err(SpecErrors::single(
                            self.source,
                            "",
                            Some(key_pos),
                            format!("duplicate key `{k}`"),
                        ));
                    }
                    entries.push(Entry {
                        key: k,
                        key_pos: Some(key_pos),
                        value: node,
                    });
                    Ok(())
                }
                None => match node.kind {
                    Kind::Scalar { text, .. } => {
                        *key = Some((text, pos));
                        Ok(())
                    }
                    Kind::Null => {
                        *key = Some((String::new(), pos));
                        Ok(())
                    }
                    other => Err(self.fail(
                        pos,
                        format!("mapping keys must be strings, found {}", other.describe()),
                    )),
                },
            },
        }
    }

    fn scalar(
        &self,
        text: String,
        style: TScalarStyle,
        tag: Option<Tag>,
        pos: Pos,
    ) -> Result<Node, SpecErrors> {
        let mut quoted = style != TScalarStyle::Plain;
        if let Some(tag) = tag {
            if tag.suffix == "str" {
                quoted = true;
            } else {
                return Err(self.fail(
                    pos,
                    format!("YAML tag `{}{}` is not supported", tag.handle, tag.suffix),
                ));
            }
        }
        let kind = if !quoted && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
            Kind::Null
        } else {
            Kind::Scalar { text, quoted }
        };
        Ok(Node {
            kind,
            pos: Some(pos),
        })
    }

    fn event(&mut self, ev: Event, mark: Marker) -> Result<bool, SpecErrors> {
        let pos = pos_of(&mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.fail(pos, "expected one YAML document, found several"));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, pos)?;
                let node = self.scalar(text, style, tag, pos)?;
                self.finish(node, anchor)?;
            }
            Event::SequenceStart(anchor, tag) => {
                self.no_tag(tag, pos)?;
                let frame = Frame::Seq {
                    items: Vec::new(),
                    pos: None,
                    anchor,
                };
                self.push_frame(frame, pos)?;
            }
            Event::MappingStart(anchor, tag) => {
                self.no_tag(tag, pos)?;
                let frame = Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    pos: None,
                    anchor,
                };
                self.push_frame(frame, pos)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        items,
                        pos: first,
                        anchor,
                    }) => (
                        Node {
                            kind: Kind::Seq(items),
                            pos: first.or(Some(pos)),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        entries,
                        pos: first,
                        anchor,
                        ..
                    }) => (
                        Node {
                            kind: Kind::Map(entries),
                            pos: first.or(Some(pos)),
                        },
                        anchor,
                    ),
                    None => return Err(self.fail(pos, "unbalanced end of collection")),
                };
                self.finish(node, anchor)?;
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err(self.fail(pos, "alias to an unknown anchor"));
                };
                self.count(count_nodes(&node), pos)?;
                self.finish(node, 0)?;
            }
            Event::StreamEnd => return Ok(false),
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(true)
    }

    fn no_tag(&self, tag: Option<Tag>, pos: Pos) -> Result<(), SpecErrors> {
        match tag {
            None => Ok(()),
            Some(t) => Err(self.fail(
                pos,
                format!("YAML tag `{}{}` is not supported", t.handle, t.suffix),
            )),
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.kind {
        Kind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Kind::Map(entries) => 1 + entries.iter().map(|e| count_nodes(&e.value)).sum::<usize>(),
        _ => 1,
    }
}

/// Parses one YAML document into a positioned tree.
pub fn from_yaml(text: &str, source: &str) -> Result<Node, SpecErrors> {
    check_size(text, source)?;
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        source,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        documents: 0,
    };
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| {
            SpecErrors::single(
                source,
                "",
                Some(pos_of(e.marker())),
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        if !b.event(ev, mark)? {
            break;
        }
    }
    match b.root {
        Some(node) if node.kind != Kind::Null => Ok(node),
        _ => Err(SpecErrors::single(source, "", None, "document is empty")),
    }
}

/// Parses a JSON document (the form stored in etcd) into the same tree.
pub fn from_json(text: &str, source: &str) -> Result<Node, SpecErrors> {
    check_size(text, source)?;
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

    #[test]
    fn empty_documents_are_refused() {
        assert!(from_yaml("", "f").is_err());
        assert!(from_yaml("# only a comment\n", "f").is_err());
    }
}
