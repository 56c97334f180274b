//! The YAML side of the document tree: yaml-rust2's event stream built into
//! [`Node`]s with line and column, anchors and aliases resolved within the
//! node budget, nesting bounded, and YAML 1.1 merge keys (`<<`) applied as
//! the original Kaylee's parser did.
//!
//! The original read units with Go's YAML decoder, which ignores unknown
//! fields, so its units keep shared values under a top-level key of their
//! own (`common: &common {…}`) and merge them (`<<: *common`). Kaylee
//! refuses unknown fields to catch typos; a top-level entry whose value is
//! an anchor the document uses is marked as a definition
//! ([`Entry::defines_anchor`]), which the decoder does not take for an
//! unknown field. A typo is never both anchored and used.

use super::{Entry, Kind, MAX_DEPTH, MAX_NODES, Node, check_size};
use crate::spec::error::{Pos, SpecErrors};
use std::collections::{HashMap, HashSet};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

fn pos_of(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
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
        /// The keys of `entries`, so a duplicate is found without a scan
        /// (a hostile mapping may have tens of thousands).
        seen: HashSet<String>,
        key: Option<Key>,
        /// Values of the merge key `<<`, with where they were written and
        /// the index in `entries` their keys go to.
        merges: Vec<Merge>,
        pos: Option<Pos>,
        anchor: usize,
    },
}

/// A mapping key waiting for its value.
struct Key {
    text: String,
    pos: Pos,
    /// A plain `<<`: YAML 1.1's merge key (a quoted `"<<"` is a string).
    merge: bool,
}

struct Merge {
    value: Node,
    pos: Pos,
    at: usize,
}

struct Builder<'a> {
    source: &'a str,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    /// Anchors some alias refers to.
    used: HashSet<usize>,
    /// Top-level keys whose value carries an anchor, with the anchor.
    top_anchors: Vec<(String, usize)>,
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
            if let [Frame::Map { key: Some(key), .. }] = self.stack.as_slice() {
                self.top_anchors.push((key.text.clone(), anchor));
            }
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
            Some(Frame::Map {
                entries,
                seen,
                key,
                merges,
                ..
            }) => match key.take() {
                Some(Key {
                    pos: key_pos,
                    merge: true,
                    ..
                }) => {
                    if !merges.is_empty() {
                        return Err(self.fail(key_pos, "duplicate key `<<`"));
                    }
                    merges.push(Merge {
                        value: node,
                        pos: key_pos,
                        at: entries.len(),
                    });
                    Ok(())
                }
                Some(Key {
                    text: k,
                    pos: key_pos,
                    merge: false,
                }) => {
                    // A nested collection is best pointed at by its key.
                    if matches!(node.kind, Kind::Seq(_) | Kind::Map(_)) {
                        node.pos = Some(key_pos);
                    }
                    if !seen.insert(k.clone()) {
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
                        defines_anchor: false,
                    });
                    Ok(())
                }
                None => match node.kind {
                    Kind::Scalar { text, quoted } => {
                        let merge = !quoted && text == "<<";
                        *key = Some(Key { text, pos, merge });
                        Ok(())
                    }
                    Kind::Null => {
                        *key = Some(Key {
                            text: String::new(),
                            pos,
                            merge: false,
                        });
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

    /// Applies a mapping's merge key (YAML 1.1, yaml.org/type/merge.html):
    /// its mapping's entries, or those of each mapping of its list in
    /// order, join the mapping where `<<` was written, unless a key is
    /// already there: explicit keys win, then earlier mappings of the list.
    fn merge(&self, entries: &mut Vec<Entry>, merges: Vec<Merge>) -> Result<(), SpecErrors> {
        for Merge { value, pos, at } in merges {
            let maps = match value.kind {
                Kind::Map(from) => vec![from],
                Kind::Seq(items) => items
                    .into_iter()
                    .map(|item| match item.kind {
                        Kind::Map(from) => Ok(from),
                        other => Err(self.fail(
                            item.pos.unwrap_or(pos),
                            format!(
                                "merge key `<<` takes a mapping or a list of mappings, found {} in its list",
                                other.describe()
                            ),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return Err(self.fail(
                        pos,
                        format!(
                            "merge key `<<` takes a mapping or a list of mappings, found {}",
                            other.describe()
                        ),
                    ));
                }
            };
            // A set, not a scan per key: a hostile document may merge
            // mappings of tens of thousands of keys.
            let mut taken: HashSet<String> = entries.iter().map(|e| e.key.clone()).collect();
            let mut merged: Vec<Entry> = Vec::new();
            for entry in maps.into_iter().flatten() {
                if taken.insert(entry.key.clone()) {
                    merged.push(entry);
                }
            }
            let at = at.min(entries.len());
            entries.splice(at..at, merged);
        }
        Ok(())
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
                    seen: HashSet::new(),
                    key: None,
                    merges: Vec::new(),
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
                        mut entries,
                        merges,
                        pos: first,
                        anchor,
                        ..
                    }) => {
                        self.merge(&mut entries, merges)?;
                        (
                            Node {
                                kind: Kind::Map(entries),
                                pos: first.or(Some(pos)),
                            },
                            anchor,
                        )
                    }
                    None => return Err(self.fail(pos, "unbalanced end of collection")),
                };
                self.finish(node, anchor)?;
            }
            Event::Alias(id) => {
                self.used.insert(id);
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

/// Parses one YAML document into a positioned tree. A leading UTF-8
/// byte-order mark (editors on Windows write one) is skipped: yaml-rust2
/// would read it as part of the first key.
pub fn from_yaml(text: &str, source: &str) -> Result<Node, SpecErrors> {
    check_size(text, source)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        source,
        stack: Vec::new(),
        anchors: HashMap::new(),
        used: HashSet::new(),
        top_anchors: Vec::new(),
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
    let definitions: Vec<&str> = (b.top_anchors.iter())
        .filter(|(_, anchor)| b.used.contains(anchor))
        .map(|(key, _)| key.as_str())
        .collect();
    if let Some(Node {
        kind: Kind::Map(entries),
        ..
    }) = &mut b.root
    {
        for e in entries.iter_mut() {
            e.defines_anchor = definitions.contains(&e.key.as_str());
        }
    }
    match b.root {
        Some(node) if node.kind != Kind::Null => Ok(node),
        _ => Err(SpecErrors::single(source, "", None, "document is empty")),
    }
}
