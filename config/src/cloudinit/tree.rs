//! Reading cloud-init's trees and building rkos's: every node built here carries the mark
//! of what the user wrote, so a value rejected later (a bad address, a bad key) is reported
//! at its line and column in the seed file.

use indexmap::IndexMap;

use crate::diag::Diagnostic;
use crate::node::{Entry, Mark, Node, Scalar, Value};

/// A string node (always a string, whatever it looks like).
pub(crate) fn text(t: impl Into<String>, mark: &Mark) -> Node {
    Node::new(
        Value::Scalar(Scalar {
            text: t.into(),
            quoted: true,
        }),
        mark.clone(),
    )
}

/// A plain node whose type the schema decides (`true`, `1500`).
pub(crate) fn plain(t: impl Into<String>, mark: &Mark) -> Node {
    Node::scalar(t, mark.clone())
}

pub(crate) fn seq(items: Vec<Node>, mark: &Mark) -> Node {
    Node::new(Value::Seq { items, key: None }, mark.clone())
}

/// A mapping built key by key; a key set twice keeps the later value.
pub(crate) struct MapB {
    map: IndexMap<String, Entry>,
    mark: Mark,
}

impl MapB {
    pub(crate) fn new(mark: &Mark) -> Self {
        MapB {
            map: IndexMap::new(),
            mark: mark.clone(),
        }
    }

    pub(crate) fn put(&mut self, key: &str, node: Node) -> &mut Self {
        let key_mark = node.mark.clone();
        self.map.insert(key.to_string(), Entry { key_mark, node });
        self
    }

    /// Puts an entry as the user wrote it, key position included.
    pub(crate) fn put_entry(&mut self, key: &str, entry: &Entry) -> &mut Self {
        self.map.insert(key.to_string(), entry.clone());
        self
    }

    pub(crate) fn put_opt(&mut self, key: &str, node: Option<Node>) -> &mut Self {
        if let Some(n) = node {
            self.put(key, n);
        }
        self
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.map.get(key).map(|e| &e.node)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn build(self) -> Node {
        Node::new(Value::Map(self.map), self.mark)
    }
}

/// A map's entries, or none when `node` is not a map.
pub(crate) fn entries(node: &Node) -> impl Iterator<Item = (&String, &Entry)> {
    node.as_map().into_iter().flat_map(|m| m.iter())
}

/// The items of a list; a single value counts as a list of one, null as none.
pub(crate) fn items(node: &Node) -> Vec<&Node> {
    match &node.value {
        Value::Seq { items, .. } => items.iter().collect(),
        Value::Null => Vec::new(),
        _ => vec![node],
    }
}

/// The first of `keys` present in the map `node`, with the key that matched.
pub(crate) fn first<'a>(node: &'a Node, keys: &[&'a str]) -> Option<(&'a str, &'a Node)> {
    keys.iter()
        .find_map(|k| node.get(k).filter(|n| !n.is_null()).map(|n| (*k, n)))
}

/// A scalar's text, or an error at the node naming what was expected.
pub(crate) fn scalar<'a>(
    node: &'a Node,
    path: &str,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a str> {
    match &node.value {
        Value::Scalar(s) => Some(&s.text),
        _ => {
            diags.push(error(
                node,
                path,
                format!("expected {what}, found {}", kind(node)),
            ));
            None
        }
    }
}

/// A YAML boolean (`true`, `yes`, `on` and their opposites, as YAML 1.1 and cloud-init read
/// them); other text is `None`.
pub(crate) fn boolean(node: &Node) -> Option<bool> {
    match node.as_str()?.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

pub(crate) fn kind(node: &Node) -> &'static str {
    match node.value {
        Value::Null => "nothing",
        Value::Scalar(_) => "a plain value",
        Value::Seq { .. } => "a list",
        Value::Map(_) => "a mapping",
    }
}

/// Where to point at a node: a mapping at its first key (where the user sees it start).
pub(crate) fn at(node: &Node) -> Mark {
    match node.as_map().and_then(|m| m.values().next()) {
        Some(e) => e.key_mark.clone(),
        None => node.mark.clone(),
    }
}

pub(crate) fn error(node: &Node, path: &str, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::error("", path, msg).at(&at(node))
}

pub(crate) fn warning(mark: &Mark, path: &str, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::warning("", path, msg).at(mark)
}

/// `parent.key`, `parent[3]`: key paths as cloud-init's files spell them.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Moves every mark in `node` down by `lines` and renames its source: a part of a MIME
/// message parsed on its own is reported at its line in the whole file.
pub(crate) fn shift(node: &mut Node, lines: usize, source: &std::sync::Arc<str>) {
    let fix = |m: &mut Mark| {
        m.source = source.clone();
        m.line = m.line.map(|l| l + lines);
    };
    fix(&mut node.mark);
    match &mut node.value {
        Value::Map(m) => {
            for e in m.values_mut() {
                fix(&mut e.key_mark);
                shift(&mut e.node, lines, source);
            }
        }
        Value::Seq { items, .. } => items.iter_mut().for_each(|n| shift(n, lines, source)),
        _ => {}
    }
}
