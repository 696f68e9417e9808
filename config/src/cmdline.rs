//! The kernel command line as a config source.
//!
//! Forms: `rkos.KEY=VALUE` (also `k3os.KEY=VALUE`), dotted paths (`rkos.install.device=/dev/sda`),
//! lists by repetition, map entries with brackets (`rkos.sysctls[net.ipv4.ip_forward]=1`,
//! `rkos.labels[zone]=a`), bare keys meaning `true`, double quotes around values (or whole
//! words) holding spaces. Keys naming a top-level field (`rkos.hostname`,
//! `rkos.ssh_authorized_keys`, ...) set it; every other key is under `rkos:`.
//! Boot parameters read by rkos-init (`rkos.mode`, `rkos.slot`, `rkos.image`,
//! `rkos.image.sha256`, `rkos.wait`, `rkos.debug`) are not config and are skipped.
//!
//! The words come from `rkos_contract::cmdline`, the splitter rkos-init uses too (quoting,
//! `--`); turning them into a config tree is this module's job.

use std::sync::Arc;

use indexmap::IndexMap;
use rkos_contract::cmdline::{keys::BOOT_PARAMS, Cmdline};

use crate::diag::Diagnostic;
use crate::node::{Entry, Mark, Node, Scalar, Value};
use crate::schema::{find_field, ROOT};

pub const CMDLINE_SOURCE: &str = "kernel command line";

/// Parses a key like `labels[zone]` or `install.device` into path segments. `None` when
/// brackets are unbalanced or a segment is empty.
fn key_segments(key: &str) -> Option<Vec<String>> {
    let mut segs = Vec::new();
    let mut rest = key;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            if inner.is_empty() {
                return None;
            }
            segs.push(inner.to_string());
            rest = &r[end + 1..];
            rest = rest.strip_prefix('.').unwrap_or(rest);
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let seg = &rest[..end];
        if seg.is_empty() {
            return None;
        }
        if seg.contains(']') {
            return None;
        }
        segs.push(seg.to_string());
        rest = &rest[end..];
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    if segs.is_empty() {
        None
    } else {
        Some(segs)
    }
}

/// Builds the config tree of the `rkos.*`/`k3os.*` words of a kernel command line.
/// The tree is not normalised yet (see [`crate::schema::Normalizer`]).
pub fn parse(cmdline: &str) -> (Node, Vec<Diagnostic>) {
    let src: Arc<str> = Arc::from(CMDLINE_SOURCE);
    let mut diags = Vec::new();
    let mut root = Node::new(Value::Map(IndexMap::new()), Mark::new(&src, None, 1));
    let cmdline = Cmdline::parse(cmdline);
    for (key, word) in cmdline.rkos_words() {
        let mark = Mark::new(&src, None, word.column);
        let value = word.value.as_deref();
        let Some(mut segs) = key_segments(key) else {
            diags.push(
                Diagnostic::error(CMDLINE_SOURCE, "", format!("cannot read key `{key}`: expected rkos.KEY=VALUE, rkos.KEY[NAME]=VALUE or rkos.KEY"))
                    .at(&mark),
            );
            continue;
        };
        if BOOT_PARAMS.contains(&segs[0].as_str()) {
            continue;
        }
        if find_field(ROOT, &segs[0]).is_none() {
            segs.insert(0, "rkos".to_string());
        }
        let leaf = match value {
            None => Node::scalar("true", mark.clone()),
            Some(v) if !word.quoted && matches!(v, "" | "~" | "null") => {
                Node::new(Value::Null, mark.clone())
            }
            Some(v) => Node::new(
                Value::Scalar(Scalar {
                    text: v.to_string(),
                    quoted: word.quoted,
                }),
                mark.clone(),
            ),
        };
        if let Err(msg) = insert(&mut root, &segs, leaf, &mark) {
            diags.push(Diagnostic::error(CMDLINE_SOURCE, segs.join("."), msg).at(&mark));
        }
    }
    (root, diags)
}

fn insert(node: &mut Node, segs: &[String], leaf: Node, mark: &Mark) -> Result<(), String> {
    let Value::Map(map) = &mut node.value else {
        return Err("conflicts with an earlier word that set a plain value here".to_string());
    };
    let (first, rest) = segs.split_first().expect("segments are never empty");
    if rest.is_empty() {
        match map.get_mut(first) {
            None => {
                map.insert(
                    first.clone(),
                    Entry {
                        key_mark: mark.clone(),
                        node: leaf,
                    },
                );
            }
            Some(e) => match &mut e.node.value {
                // Repetition makes a list; the schema turns it back into "last wins" for
                // plain values.
                Value::Seq { items, .. } => items.push(leaf),
                // `rkos.labels[zone]=a` then `rkos.labels=env=lab`: both add entries.
                Value::Map(m) => {
                    let pair = leaf.as_str().and_then(|t| t.split_once('='));
                    match pair {
                        Some((k, v)) if !k.is_empty() => {
                            let node = Node::new(
                                Value::Scalar(Scalar {
                                    text: v.to_string(),
                                    quoted: true,
                                }),
                                mark.clone(),
                            );
                            m.insert(
                                k.to_string(),
                                Entry {
                                    key_mark: mark.clone(),
                                    node,
                                },
                            );
                        }
                        _ => {
                            return Err(
                                "conflicts with an earlier word that set keys below it".to_string()
                            )
                        }
                    }
                }
                _ => {
                    let prev = std::mem::replace(&mut e.node, Node::new(Value::Null, mark.clone()));
                    let list_mark = prev.mark.clone();
                    e.node = Node::new(
                        Value::Seq {
                            items: vec![prev, leaf],
                            key: None,
                        },
                        list_mark,
                    );
                }
            },
        }
        return Ok(());
    }
    let entry = map.entry(first.clone()).or_insert_with(|| Entry {
        key_mark: mark.clone(),
        node: Node::new(Value::Map(IndexMap::new()), mark.clone()),
    });
    insert(&mut entry.node, rest, leaf, mark)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let (n, d) = parse(
            "ro rkos.mode=live rkos.server_url=https://s:6443 k3os.labels=a=1 rkos.labels=b=2 \
             rkos.sysctls[net.ipv4.ip_forward]=1 rkos.install.silent rkos.hostname=n1 rkos.image.sha256=ab",
        );
        assert!(d.is_empty(), "{d:?}");
        let rk = n.get("rkos").unwrap();
        assert_eq!(
            rk.get("server_url").unwrap().as_str(),
            Some("https://s:6443")
        );
        assert!(rk.get("mode").is_none());
        assert!(rk.get("image").is_none());
        assert!(
            matches!(&rk.get("labels").unwrap().value, Value::Seq { items, .. } if items.len() == 2)
        );
        assert_eq!(
            rk.get("sysctls")
                .unwrap()
                .get("net.ipv4.ip_forward")
                .unwrap()
                .as_str(),
            Some("1")
        );
        assert_eq!(
            rk.get("install").unwrap().get("silent").unwrap().as_str(),
            Some("true")
        );
        assert_eq!(n.get("hostname").unwrap().as_str(), Some("n1"));
    }

    #[test]
    fn bad_words() {
        let (_, d) = parse("rkos.labels[zone=a rkos.install=1 rkos.install.device=/dev/sda");
        let msgs: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "kernel command line:1: cannot read key `labels[zone`: expected rkos.KEY=VALUE, rkos.KEY[NAME]=VALUE or rkos.KEY",
                "kernel command line:35: rkos.install.device: conflicts with an earlier word that set a plain value here",
            ]
        );
    }
}
