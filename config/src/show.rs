//! `rkos config show`: the merged config as YAML with secrets redacted, and with
//! `--explain`, where each value was set.

use crate::emit::{to_yaml, Options};
use crate::load::Loaded;
use crate::node::{Node, PathSeg};

pub const REDACTED: &str = "<redacted>";

fn key(seg: Option<&PathSeg>) -> &str {
    match seg {
        Some(PathSeg::Key(k) | PathSeg::Entry(k)) => k,
        _ => "",
    }
}

fn secret_word(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    ["token", "password", "passwd", "secret", "passphrase", "psk"]
        .iter()
        .any(|w| l.contains(w))
}

/// Key paths whose values never leave the node's 0600 files: the token, the password,
/// wifi passphrases, the datastore endpoint (it holds credentials), k3s_args flags and
/// environment variables whose names say they hold a secret, and proxy URLs with a
/// password in them are shown redacted.
pub fn is_secret_path(path: &[PathSeg], node: Option<&Node>) -> bool {
    let in_rkos = key(path.first()) == "rkos";
    if !in_rkos {
        return false;
    }
    match (key(path.get(1)), path.len()) {
        ("token" | "password" | "datastore_endpoint", 2) => true,
        ("wifi", 4) => key(path.get(3)) == "passphrase",
        ("environment", 3) => secret_word(key(path.get(2))),
        ("k3s_args", 3) => node.and_then(Node::as_str).is_some_and(secret_word),
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
    let redact = |p: &[PathSeg]| is_secret_path(p, tree.lookup(p));
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
