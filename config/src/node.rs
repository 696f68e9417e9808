//! The position-carrying tree every source is parsed into, and the YAML reader that builds it.
//!
//! Sources are not deserialized straight into typed structs: they are read into this tree,
//! normalised against the schema, merged, and only then deserialized. Every key and value
//! keeps the source, line and column it came from, which is what lets an error found after
//! the merge point at the right file, and what `rkos config show --explain` prints.

use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diag::Diagnostic;

/// Nesting deeper than this is refused: no real config comes close, and the later passes
/// recurse.
pub const MAX_DEPTH: usize = 64;
/// Alias expansion beyond this many nodes is refused ("billion laughs").
pub const MAX_NODES: usize = 200_000;
/// Text (scalars, aliases expanded) beyond this many bytes is refused: a few aliases of one
/// large anchored scalar cost little to write and gigabytes to expand, and rkos-init, which
/// loads the config as PID 1, must never run out of memory on a seed.
pub const MAX_TEXT_BYTES: usize = 32 * 1024 * 1024;

/// Where a key or value was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mark {
    /// File path, or `kernel command line`.
    pub source: Arc<str>,
    /// 1-based line; `None` on the kernel command line.
    pub line: Option<usize>,
    /// 1-based column (character offset of the word plus one on the kernel command line).
    pub column: usize,
}

impl Mark {
    pub fn new(source: &Arc<str>, line: Option<usize>, column: usize) -> Self {
        Mark {
            source: source.clone(),
            line,
            column,
        }
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}:{}", self.source, line, self.column),
            None => write!(f, "{}:{}", self.source, self.column),
        }
    }
}

/// A scalar keeps its text: the schema decides whether it is a string, a bool or a number,
/// so `permissions: 0644` stays `0644` and a label value `true` stays `true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    pub text: String,
    /// Quoted or block scalars are always strings.
    pub quoted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key_mark: Mark,
    pub node: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Absent or `null`: "not set", the identity of the merge.
    Null,
    Scalar(Scalar),
    /// `key`: the field that identifies an item, for lists merged by key (set by the
    /// schema during normalisation).
    Seq {
        items: Vec<Node>,
        key: Option<&'static str>,
    },
    Map(IndexMap<String, Entry>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
    /// The `!replace` tag: this value replaces what lower sources set instead of merging.
    pub replace: bool,
}

impl Node {
    pub fn new(value: Value, mark: Mark) -> Self {
        Node {
            value,
            mark,
            replace: false,
        }
    }

    pub fn scalar(text: impl Into<String>, mark: Mark) -> Self {
        Node::new(
            Value::Scalar(Scalar {
                text: text.into(),
                quoted: false,
            }),
            mark,
        )
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&IndexMap<String, Entry>> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map().and_then(|m| m.get(key)).map(|e| &e.node)
    }

    /// Same content, ignoring marks and tags: how list items are compared for the union.
    pub fn same_content(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Null, Value::Null) => true,
            (Value::Scalar(a), Value::Scalar(b)) => a.text == b.text,
            (Value::Seq { items: a, .. }, Value::Seq { items: b, .. }) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_content(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, e)| b.get(k).is_some_and(|f| e.node.same_content(&f.node)))
            }
            _ => false,
        }
    }

    /// The node at a key path (map keys and list indexes), for provenance.
    pub fn lookup(&self, path: &[PathSeg]) -> Option<&Node> {
        let mut cur = self;
        for seg in path {
            cur = match (seg, &cur.value) {
                (PathSeg::Index(i), Value::Seq { items, .. }) => items.get(*i)?,
                (s, Value::Map(m)) => &m.get(s.key()?)?.node,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// The mark of the deepest node on `path` that exists (the key itself when the value
    /// is a container, so errors point at the line the user wrote the key on).
    pub fn mark_of(&self, path: &[PathSeg]) -> Option<Mark> {
        let mut cur = self;
        let mut best: Option<Mark> = None;
        for seg in path {
            match (seg, &cur.value) {
                (PathSeg::Key(k) | PathSeg::Entry(k), Value::Map(m)) => match m.get(k.as_str()) {
                    Some(e) => {
                        best = Some(match e.node.value {
                            Value::Scalar(_) => e.node.mark.clone(),
                            _ => e.key_mark.clone(),
                        });
                        cur = &e.node;
                    }
                    None => break,
                },
                (PathSeg::Index(i), Value::Seq { items, .. }) => match items.get(*i) {
                    Some(n) => {
                        best = Some(n.mark.clone());
                        cur = n;
                    }
                    None => break,
                },
                _ => break,
            }
        }
        best.or_else(|| Some(self.mark.clone()))
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSeg {
    /// A schema field.
    Key(String),
    /// A user's key in a map (labels, sysctls, environment): shown as `[key]`.
    Entry(String),
    Index(usize),
}

impl PathSeg {
    fn key(&self) -> Option<&str> {
        match self {
            PathSeg::Key(k) | PathSeg::Entry(k) => Some(k),
            PathSeg::Index(_) => None,
        }
    }
}

/// Renders a key path: `rkos.write_files[2].permissions`, `rkos.sysctls[net.ipv4.ip_forward]`
/// (keys that are not plain identifiers are bracketed, as on the kernel command line).
pub fn path_string(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
            PathSeg::Entry(k) => {
                out.push('[');
                out.push_str(k);
                out.push(']');
            }
            PathSeg::Key(k) => {
                let plain = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if plain {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                } else {
                    out.push('[');
                    out.push_str(k);
                    out.push(']');
                }
            }
        }
    }
    out
}

/// Parses one YAML document into a tree. Returns `Err` with a positioned diagnostic when
/// the text is not YAML, is nested too deep, or uses a non-scalar mapping key. An empty
/// document is an empty mapping.
pub fn parse_yaml(source: &str, text: &str) -> Result<Node, Diagnostic> {
    let src: Arc<str> = Arc::from(source);
    let mut builder = Builder {
        src: src.clone(),
        stack: Vec::new(),
        anchors: Vec::new(),
        root: None,
        error: None,
        nodes: 0,
        bytes: 0,
        docs: 0,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        return Err(
            Diagnostic::error(source, "", format!("not valid YAML: {}", e.info())).at(&Mark::new(
                &src,
                Some(m.line()),
                m.col() + 1,
            )),
        );
    }
    if let Some(d) = builder.error {
        return Err(d);
    }
    Ok(builder
        .root
        .unwrap_or_else(|| Node::new(Value::Map(IndexMap::new()), Mark::new(&src, Some(1), 1))))
}

enum Frame {
    Seq {
        node: Node,
        items: Vec<Node>,
        anchor: usize,
    },
    Map {
        node: Node,
        map: IndexMap<String, Entry>,
        pending_key: Option<(String, Mark)>,
        anchor: usize,
    },
}

struct Builder {
    src: Arc<str>,
    stack: Vec<Frame>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    error: Option<Diagnostic>,
    nodes: usize,
    /// Scalar text so far, aliases expanded (see [`MAX_TEXT_BYTES`]).
    bytes: usize,
    docs: usize,
}

fn is_replace(tag: &Option<Tag>) -> bool {
    tag.as_ref()
        .is_some_and(|t| t.handle == "!" && t.suffix == "replace")
}

fn text_bytes(n: &Node) -> usize {
    match &n.value {
        Value::Seq { items, .. } => items.iter().map(text_bytes).sum(),
        Value::Map(m) => m.iter().map(|(k, e)| k.len() + text_bytes(&e.node)).sum(),
        Value::Scalar(s) => s.text.len(),
        _ => 0,
    }
}

fn count_nodes(n: &Node) -> usize {
    match &n.value {
        Value::Seq { items, .. } => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(m) => 1 + m.values().map(|e| count_nodes(&e.node)).sum::<usize>(),
        _ => 1,
    }
}

impl Builder {
    fn mark(&self, m: Marker) -> Mark {
        Mark::new(&self.src, Some(m.line()), m.col() + 1)
    }

    fn fail(&mut self, mark: Mark, msg: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(Diagnostic::error(self.src.to_string(), "", msg).at(&mark));
        }
    }

    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                map, pending_key, ..
            }) => match pending_key.take() {
                None => {
                    // A mapping key: only scalars are meaningful as config keys.
                    match node.value {
                        Value::Scalar(s) => *pending_key = Some((s.text, node.mark)),
                        Value::Null => *pending_key = Some((String::new(), node.mark)),
                        _ => {
                            let mark = node.mark.clone();
                            self.fail(
                                mark,
                                "a mapping key must be a plain value, not a list or mapping",
                            );
                        }
                    }
                }
                Some((key, key_mark)) => {
                    if let Some(prev) = map.get(&key) {
                        let first = prev.key_mark.clone();
                        let msg = format!(
                            "duplicate key `{key}` (first at line {}); YAML does not allow it",
                            first.line.unwrap_or(0)
                        );
                        self.fail(key_mark, msg);
                        return;
                    }
                    map.insert(key, Entry { key_mark, node });
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let mark = self.mark(marker);
        match ev {
            Event::DocumentStart => {
                self.docs += 1;
                if self.docs > 1 {
                    self.fail(mark, "more than one YAML document; a config file holds one");
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.nodes += 1;
                self.bytes += text.len();
                let quoted = !matches!(style, TScalarStyle::Plain)
                    || tag.as_ref().is_some_and(|t| {
                        t.suffix == "str" && (t.handle == "!!" || t.handle == "tag:yaml.org,2002:")
                    });
                let value =
                    if !quoted && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                        Value::Null
                    } else {
                        Value::Scalar(Scalar { text, quoted })
                    };
                let mut node = Node::new(value, mark);
                node.replace = is_replace(&tag);
                self.push_value(node, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                self.nodes += 1;
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(mark, format!("nested deeper than {MAX_DEPTH} levels"));
                    return;
                }
                let mut node = Node::new(Value::Null, mark);
                node.replace = is_replace(&tag);
                self.stack.push(Frame::Seq {
                    node,
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.nodes += 1;
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(mark, format!("nested deeper than {MAX_DEPTH} levels"));
                    return;
                }
                let mut node = Node::new(Value::Null, mark);
                node.replace = is_replace(&tag);
                self.stack.push(Frame::Map {
                    node,
                    map: IndexMap::new(),
                    pending_key: None,
                    anchor,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    mut node,
                    items,
                    anchor,
                }) = self.stack.pop()
                {
                    node.value = Value::Seq { items, key: None };
                    self.push_value(node, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    mut node,
                    map,
                    anchor,
                    ..
                }) = self.stack.pop()
                {
                    node.value = Value::Map(map);
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => {
                let found = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| n.clone());
                match found {
                    Some(n) => {
                        self.nodes += count_nodes(&n);
                        self.bytes += text_bytes(&n);
                        if self.bytes > MAX_TEXT_BYTES {
                            self.fail(
                                mark,
                                format!(
                                    "aliases expand to more than {} MiB of text",
                                    MAX_TEXT_BYTES >> 20
                                ),
                            );
                            return;
                        }
                        if self.nodes > MAX_NODES {
                            self.fail(
                                mark,
                                format!("aliases expand to more than {MAX_NODES} values"),
                            );
                            return;
                        }
                        self.push_value(n, 0);
                    }
                    None => self.fail(mark, "alias to an unknown anchor"),
                }
            }
            _ => {}
        }
        if self.nodes > MAX_NODES && self.error.is_none() {
            let m = self.mark(marker);
            self.fail(m, format!("more than {MAX_NODES} values"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse_yaml("f.yaml", "a: 1\nb:\n  - x\n  - 'y'\n").unwrap();
        let a = n.as_map().unwrap().get("a").unwrap();
        assert_eq!(a.key_mark.line, Some(1));
        assert_eq!(a.key_mark.column, 1);
        assert_eq!(a.node.mark.column, 4);
        let b = n.get("b").unwrap();
        match &b.value {
            Value::Seq { items, .. } => {
                assert_eq!(items[1].mark.line, Some(4));
                assert_eq!(items[1].mark.column, 5);
                assert_eq!(
                    items[1].value,
                    Value::Scalar(Scalar {
                        text: "y".into(),
                        quoted: true
                    })
                );
            }
            other => panic!("not a seq: {other:?}"),
        }
    }

    #[test]
    fn null_forms_and_tags() {
        let n = parse_yaml("f", "a: ~\nb:\nc: !replace [1]\nd: !!str null\n").unwrap();
        assert!(n.get("a").unwrap().is_null());
        assert!(n.get("b").unwrap().is_null());
        assert!(n.get("c").unwrap().replace);
        assert_eq!(n.get("d").unwrap().as_str(), Some("null"));
    }

    #[test]
    fn errors_are_positioned() {
        let e = parse_yaml("f.yaml", "a: [1, 2\n").unwrap_err();
        assert_eq!(e.source, "f.yaml");
        assert!(e.line.is_some());
        let e = parse_yaml("f.yaml", "a: 1\na: 2\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.yaml:2:1: duplicate key `a` (first at line 1); YAML does not allow it"
        );
    }

    #[test]
    fn empty_is_empty_map_and_depth_is_bounded() {
        assert_eq!(
            parse_yaml("f", "").unwrap().as_map().map(|m| m.len()),
            Some(0)
        );
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse_yaml("f", &deep).is_err());
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            s.push_str(&format!("{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
            prev = c;
        }
        assert!(parse_yaml("f", &s).is_err());
    }

    #[test]
    fn path_strings() {
        let p = vec![
            PathSeg::Key("rkos".into()),
            PathSeg::Key("sysctls".into()),
            PathSeg::Entry("net.ipv4.ip_forward".into()),
        ];
        assert_eq!(path_string(&p), "rkos.sysctls[net.ipv4.ip_forward]");
        let p = vec![
            PathSeg::Key("write_files".into()),
            PathSeg::Index(2),
            PathSeg::Key("path".into()),
        ];
        assert_eq!(path_string(&p), "write_files[2].path");
    }
}
