//! A small YAML writer for the trees rkos produces (`config show`, the k3s config file).
//!
//! Written by hand because the output needs per-value comments (`--explain`) and
//! redaction by key path, which no maintained emitter offers; the subset written (block
//! mappings and sequences, plain or double-quoted scalars) is small.

use crate::node::{Node, PathSeg, Value};

pub struct Options<'a> {
    /// Returns true for key paths whose value must be shown as `<redacted>`.
    pub redact: &'a dyn Fn(&[PathSeg]) -> bool,
    /// A trailing comment for a value (where it was set), if any.
    pub comment: &'a dyn Fn(&Node) -> Option<String>,
}

pub fn to_yaml(node: &Node, opts: &Options<'_>) -> String {
    let mut out = String::new();
    let mut path = Vec::new();
    match &node.value {
        Value::Map(m) if m.is_empty() => out.push_str("{}\n"),
        Value::Map(_) | Value::Seq { .. } => block(node, 0, &mut out, opts, &mut path),
        _ => {
            out.push_str(&inline(node, opts, &path));
            out.push('\n');
        }
    }
    out
}

/// Plain YAML scalars that would read back as something other than the same string.
fn reserved(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~"
    ) || s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o")
}

pub fn scalar(s: &str, quoted: bool) -> String {
    let safe = !s.is_empty()
        && !s.starts_with([
            ' ', '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"',
            '%', '@', '`',
        ])
        && !s.ends_with([' ', ':'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " _./@+=,-:$".contains(c))
        && !s.contains(": ")
        && !s.contains(" #");
    if safe && !(quoted && reserved(s)) {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                q.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn inline(node: &Node, opts: &Options<'_>, path: &[PathSeg]) -> String {
    let body = if (opts.redact)(path) && !node.is_null() {
        "<redacted>".to_string()
    } else {
        match &node.value {
            Value::Null => "null".to_string(),
            Value::Scalar(s) => scalar(&s.text, s.quoted),
            Value::Seq { items, .. } if items.is_empty() => "[]".to_string(),
            Value::Map(m) if m.is_empty() => "{}".to_string(),
            _ => unreachable!("containers are written as blocks"),
        }
    };
    match (opts.comment)(node) {
        Some(c) => format!("{body}  # {c}"),
        None => body,
    }
}

fn is_block(node: &Node, opts: &Options<'_>, path: &[PathSeg]) -> bool {
    if (opts.redact)(path) {
        return false;
    }
    match &node.value {
        Value::Seq { items, .. } => !items.is_empty(),
        Value::Map(m) => !m.is_empty(),
        _ => false,
    }
}

fn block(
    node: &Node,
    indent: usize,
    out: &mut String,
    opts: &Options<'_>,
    path: &mut Vec<PathSeg>,
) {
    let pad = " ".repeat(indent);
    match &node.value {
        Value::Map(m) => {
            for (k, e) in m {
                path.push(PathSeg::Key(k.clone()));
                out.push_str(&pad);
                out.push_str(&scalar(k, true));
                out.push(':');
                if is_block(&e.node, opts, path) {
                    if let Some(c) = (opts.comment)(&e.node) {
                        out.push_str(&format!("  # {c}"));
                    }
                    out.push('\n');
                    let child = if matches!(e.node.value, Value::Seq { .. }) {
                        indent
                    } else {
                        indent + 2
                    };
                    block(&e.node, child, out, opts, path);
                } else {
                    out.push(' ');
                    out.push_str(&inline(&e.node, opts, path));
                    out.push('\n');
                }
                path.pop();
            }
        }
        Value::Seq { items, .. } => {
            for (i, item) in items.iter().enumerate() {
                path.push(PathSeg::Index(i));
                out.push_str(&pad);
                out.push_str("- ");
                if is_block(item, opts, path) {
                    let mut sub = String::new();
                    block(item, indent + 2, &mut sub, opts, path);
                    // The first line of the nested block goes on the dash line.
                    out.push_str(sub.trim_start_matches(' '));
                } else {
                    out.push_str(&inline(item, opts, path));
                    out.push('\n');
                }
                path.pop();
            }
        }
        _ => {
            out.push_str(&pad);
            out.push_str(&inline(node, opts, path));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::parse_yaml;

    fn round_trip(text: &str) {
        let n = parse_yaml("t", text).unwrap();
        let opts = Options {
            redact: &|_| false,
            comment: &|_| None,
        };
        let y = to_yaml(&n, &opts);
        let back = parse_yaml("t", &y).unwrap_or_else(|e| panic!("{e}\n{y}"));
        assert!(n.same_content(&back), "{text}\n---\n{y}");
    }

    #[test]
    fn writes_what_it_reads() {
        round_trip("a: 1\nb: [x, 'y z', 'true', '']\nc:\n  d: {e: f}\n  g: []\nh:\n- {p: /a, c: \"l1\\nl2\"}\n- [1, [2, 3]]\n- k: 'a: b #c'\n");
        round_trip("k: \"tab\\there \\\"q\\\" back\\\\slash\"\nu: https://x.example:6443/p?q=1\n");
    }
}
