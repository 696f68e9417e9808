//! The merge of two normalised trees (`lower`, then `higher`).
//!
//! Rules (documented in docs/config.md, checked by property tests for identity and
//! associativity):
//! - null is "not set": `merge(x, null) = merge(null, x) = x`;
//! - mappings merge key by key, recursively; keys keep the order they first appeared in;
//! - scalars: the higher source wins;
//! - lists of scalars: union in order of first appearance (a higher source adds);
//! - lists with a key field (`write_files` by `path`, `wifi` by `name`, `data_disks` by
//!   `path`, network interfaces by `name`): an item of the higher source replaces the item
//!   with the same key in place; new keys are appended;
//! - `!replace` on the higher value: it replaces the lower one whole;
//!   `merge(!replace x, y) = !replace merge(x, y)`, which keeps the merge associative;
//! - values of different kinds: the higher one replaces the lower one and is marked as a
//!   replacement, for the same reason.
//!
//! The replacement marks are removed by [`strip_replace`] once all sources are merged.

use crate::node::{Node, Value};

pub fn merge(lower: Node, higher: Node) -> Node {
    if higher.is_null() {
        return lower;
    }
    if lower.is_null() {
        return higher;
    }
    if higher.replace {
        return higher;
    }
    let keep_replace = lower.replace;
    let Node {
        value: lower_value,
        mark: lower_mark,
        ..
    } = lower;
    let mut out = match (lower_value, higher.value) {
        (Value::Map(mut a), Value::Map(b)) => {
            for (k, e) in b {
                match a.get_mut(&k) {
                    Some(prev) => {
                        let p = std::mem::replace(
                            &mut prev.node,
                            Node::new(Value::Null, e.key_mark.clone()),
                        );
                        prev.node = merge(p, e.node);
                    }
                    None => {
                        a.insert(k, e);
                    }
                }
            }
            Node::new(Value::Map(a), lower_mark)
        }
        (Value::Seq { items: a, key: ka }, Value::Seq { items: b, key: kb }) => {
            let key = ka.or(kb);
            let items = match key {
                Some(k) => merge_keyed(a, b, k),
                None => union(a, b),
            };
            Node::new(Value::Seq { items, key }, lower_mark)
        }
        (Value::Scalar(_), value @ Value::Scalar(_)) => Node::new(value, higher.mark),
        (_, value) => {
            // Kinds differ: the higher value wins whole, and must keep winning whole when this
            // result is later merged under yet another source (associativity).
            let mut n = Node::new(value, higher.mark);
            n.replace = true;
            n
        }
    };
    out.replace |= keep_replace;
    out
}

fn union(mut a: Vec<Node>, b: Vec<Node>) -> Vec<Node> {
    for item in b {
        if !a.iter().any(|x| x.same_content(&item)) {
            a.push(item);
        }
    }
    a
}

fn key_of<'a>(n: &'a Node, key: &str) -> Option<&'a str> {
    n.get(key).and_then(Node::as_str)
}

fn merge_keyed(mut a: Vec<Node>, b: Vec<Node>, key: &str) -> Vec<Node> {
    let a_len = a.len();
    for item in b {
        let pos = key_of(&item, key)
            .and_then(|k| a[..a_len].iter().position(|x| key_of(x, key) == Some(k)));
        match pos {
            Some(p) => a[p] = item,
            None => a.push(item),
        }
    }
    a
}

/// Removes the `!replace` marks once every source is merged.
pub fn strip_replace(node: &mut Node) {
    node.replace = false;
    match &mut node.value {
        Value::Map(m) => m.values_mut().for_each(|e| strip_replace(&mut e.node)),
        Value::Seq { items, .. } => items.iter_mut().for_each(strip_replace),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::parse_yaml;
    use crate::schema::Normalizer;

    fn n(text: &str) -> Node {
        Normalizer::new(false).root(parse_yaml("t", text).unwrap())
    }

    fn strs(node: &Node) -> Vec<String> {
        match &node.value {
            Value::Seq { items, .. } => items
                .iter()
                .map(|i| i.as_str().unwrap_or("?").to_string())
                .collect(),
            _ => panic!("not a list"),
        }
    }

    #[test]
    fn lists_union_and_scalars_override() {
        let m = merge(
            n("hostname: a\nrkos:\n  modules: [x, y]\n"),
            n("hostname: b\nrkos:\n  modules: [y, z]\n"),
        );
        assert_eq!(m.get("hostname").unwrap().as_str(), Some("b"));
        assert_eq!(
            strs(m.get("rkos").unwrap().get("modules").unwrap()),
            vec!["x", "y", "z"]
        );
    }

    #[test]
    fn write_files_merge_by_path() {
        let m = merge(
            n("write_files:\n- {path: /a, content: '1'}\n- {path: /b, content: '2'}\n"),
            n("write_files:\n- {path: /a, content: '3'}\n- {path: /c, content: '4'}\n"),
        );
        let wf = m.get("write_files").unwrap();
        let Value::Seq { items, .. } = &wf.value else {
            panic!()
        };
        let got: Vec<(&str, &str)> = items
            .iter()
            .map(|i| {
                (
                    i.get("path").unwrap().as_str().unwrap(),
                    i.get("content").unwrap().as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, vec![("/a", "3"), ("/b", "2"), ("/c", "4")]);
    }

    #[test]
    fn replace_tag_replaces() {
        let mut m = merge(
            n("rkos:\n  modules: [x, y]\n"),
            n("rkos:\n  modules: !replace [z]\n"),
        );
        strip_replace(&mut m);
        assert_eq!(
            strs(m.get("rkos").unwrap().get("modules").unwrap()),
            vec!["z"]
        );
        assert!(!m.get("rkos").unwrap().get("modules").unwrap().replace);
    }

    #[test]
    fn null_is_not_set() {
        let m = merge(n("hostname: a\n"), n("hostname:\n"));
        assert_eq!(m.get("hostname").unwrap().as_str(), Some("a"));
    }
}
