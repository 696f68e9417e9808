//! `rkos config show`: the merged config as YAML with secrets redacted, and with
//! `--explain`, where each value was set.

use std::borrow::Cow;

use crate::emit::{to_yaml, Options};
use crate::load::Loaded;
use crate::node::{Node, PathSeg, Value};

pub const REDACTED: &str = "<redacted>";

/// `text` with the user information of every URL in it (`scheme://user:password@host`)
/// replaced by `<redacted>`: a proxy URL, a `--datastore-endpoint=postgres://...` argument or
/// a source URL with credentials can sit anywhere, and a password is often all of it.
pub fn mask_userinfo(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || "/?#\"'`".contains(c))
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(&tail[at..end]);
                changed = true;
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn key(seg: Option<&PathSeg>) -> &str {
    match seg {
        Some(PathSeg::Key(k) | PathSeg::Entry(k)) => k,
        _ => "",
    }
}

fn secret_word(s: &str) -> bool {
    let l = s.to_ascii_lowercase().replace('_', "-");
    [
        "token",
        "password",
        "passwd",
        "secret",
        "passphrase",
        "psk",
        "datastore-endpoint",
    ]
    .iter()
    .any(|w| l.contains(w))
}

/// A k3s flag given apart from its value (`- --token` then `- SECRET`): the next item is
/// the secret.
fn secret_flag(s: &str) -> bool {
    s.starts_with('-') && !s.contains('=') && secret_word(s)
}

/// Key paths whose values never leave the node's 0600 files: the token, the password,
/// wifi passphrases, the datastore endpoint (it holds credentials), k3s_args flags whose
/// names say they hold a secret (`--token=X`, or `--token` and `X` as two items) and
/// environment variables whose names say so, and proxy URLs with a password in them are
/// shown redacted. `tree` is the whole merged tree (an item's secrecy can depend on the one
/// before it).
pub fn is_secret_path(path: &[PathSeg], tree: &Node) -> bool {
    let node = tree.lookup(path);
    let in_rkos = key(path.first()) == "rkos";
    if !in_rkos {
        return false;
    }
    match (key(path.get(1)), path.len()) {
        ("token" | "password" | "datastore_endpoint", 2) => true,
        ("wifi", 4) => key(path.get(3)) == "passphrase",
        ("environment", 3) => secret_word(key(path.get(2))),
        ("k3s_args", 3) => {
            // the flag itself (`--token`) is not the secret; its value is
            node.and_then(Node::as_str)
                .is_some_and(|a| secret_word(a) && !secret_flag(a))
                || match path.get(2) {
                    Some(PathSeg::Index(i)) if *i > 0 => {
                        let mut prev = path.to_vec();
                        prev[2] = PathSeg::Index(i - 1);
                        tree.lookup(&prev)
                            .and_then(Node::as_str)
                            .is_some_and(secret_flag)
                    }
                    _ => false,
                }
        }
        ("proxy", 3) => node
            .and_then(Node::as_str)
            .and_then(|u| url::Url::parse(u).ok())
            .is_some_and(|u| u.password().is_some()),
        _ => false,
    }
}

/// The merged config as YAML. With `explain`, each value carries a comment naming the
/// source, line and column that set it.
pub fn show(loaded: &Loaded, explain: bool) -> String {
    let tree = &loaded.tree;
    let redact = |p: &[PathSeg]| is_secret_path(p, tree);
    let mut masked = tree.clone();
    mask_tree(&mut masked);
    let tree = &masked;
    let comment = |n: &Node| {
        if explain {
            Some(format!("from {}", n.mark))
        } else {
            None
        }
    };
    to_yaml(
        tree,
        &Options {
            redact: &redact,
            comment: &comment,
        },
    )
}

/// Masks URL user information in every scalar of `node` ([`mask_userinfo`]).
fn mask_tree(node: &mut Node) {
    match &mut node.value {
        Value::Scalar(s) => {
            if let Cow::Owned(m) = mask_userinfo(&s.text) {
                s.text = m;
            }
        }
        Value::Seq { items, .. } => items.iter_mut().for_each(mask_tree),
        Value::Map(m) => m.values_mut().for_each(|e| mask_tree(&mut e.node)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load, Source, SourceKind};

    fn shown(yaml: &str) -> String {
        show(
            &load(&[Source::new(SourceKind::Persistent, "c.yaml", yaml)]),
            false,
        )
    }

    #[test]
    fn userinfo_is_masked_anywhere_in_a_value() {
        assert_eq!(
            mask_userinfo("--datastore-endpoint=postgres://k3s:hunter2@db:5432/k3s"),
            "--datastore-endpoint=postgres://<redacted>@db:5432/k3s"
        );
        assert_eq!(
            mask_userinfo("a https://tok@git.example/x and http://u:p@h:1 b"),
            "a https://<redacted>@git.example/x and http://<redacted>@h:1 b"
        );
        assert!(matches!(
            mask_userinfo("https://host/a@b"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(mask_userinfo("no url"), Cow::Borrowed(_)));
    }

    #[test]
    fn secrets_in_k3s_args_are_redacted_in_every_form() {
        let out = shown(
            "rkos:\n  k3s_args:\n    - --token\n    - SPLITSECRET\n    - --token=JOINEDSECRET\n    \
             - --datastore-endpoint=mysql://root:DBPASS@tcp(db:3306)/k3s\n    - --node-ip\n    - 10.0.0.1\n",
        );
        for secret in ["SPLITSECRET", "JOINEDSECRET", "DBPASS"] {
            assert!(!out.contains(secret), "{secret} shown:\n{out}");
        }
        // what is not a secret stays readable
        assert!(out.contains("--token"), "{out}");
        assert!(out.contains("10.0.0.1"), "{out}");
    }

    #[test]
    fn urls_with_credentials_are_masked_outside_secret_keys() {
        let out = shown(
            "rkos:\n  data_sources:\n    - https://user:URLPASS@cfg.example/node.yaml\n  \
             environment:\n    MIRROR: http://mirror:MIRRORPASS@10.0.0.2/\n",
        );
        assert!(
            !out.contains("URLPASS") && !out.contains("MIRRORPASS"),
            "{out}"
        );
        assert!(out.contains("cfg.example/node.yaml"), "{out}");
    }
}
