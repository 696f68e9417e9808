//! meta-data: NoCloud's `meta-data` (YAML) and ConfigDrive's `meta_data.json`. What rkos takes
//! from them: the host name (`local-hostname`, or `hostname`; lower than user-data's), the
//! instance's public SSH keys, and the instance id, which is the node's identity rather than
//! config (see [`instance_id`]). Everything else a hypervisor puts there is ignored quietly:
//! meta-data is written by the platform, not by the user.

use crate::diag::Diagnostic;
use crate::load::Source;
use crate::node::{parse_yaml, Node, Value};
use crate::schema::Normalizer;

use super::tree::{self, entries, first, items, MapB};

/// The keys naming the host, in the order they are looked for.
const HOSTNAME_KEYS: &[&str] = &["local-hostname", "local_hostname", "hostname"];
const INSTANCE_ID_KEYS: &[&str] = &["instance-id", "instance_id", "uuid"];

/// The instance id of a meta-data text (`instance-id`, or ConfigDrive's `uuid`), if it has
/// one.
pub fn instance_id(text: &str) -> Option<String> {
    let doc = parse_yaml("meta-data", text).ok()?;
    let (_, n) = first(&doc, INSTANCE_ID_KEYS)?;
    let id = n.as_str()?.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// The rkos tree of a meta-data source: `hostname` (and `fqdn` when the name is dotted),
/// `ssh_authorized_keys`.
pub fn parse(source: &Source) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
    let doc = parse_yaml(&source.name, &source.text)?;
    let mut diags = Vec::new();
    let mut out = MapB::new(&doc.mark);
    match &doc.value {
        Value::Map(_) => {}
        Value::Null => return Ok((out.build(), diags)),
        _ => {
            return Err(tree::error(
                &doc,
                "",
                format!("meta-data: expected a mapping, found {}", tree::kind(&doc)),
            ))
        }
    }
    if let Some((key, h)) = first(&doc, HOSTNAME_KEYS) {
        if let Some(name) = tree::scalar(h, key, "a host name", &mut diags) {
            match name.split_once('.') {
                Some((short, _)) => {
                    out.put("hostname", tree::text(short, &h.mark));
                    out.put("fqdn", tree::text(name, &h.mark));
                }
                None => {
                    out.put("hostname", tree::text(name, &h.mark));
                }
            }
        }
    }
    let mut keys = Vec::new();
    for k in ["public-keys", "public_keys"] {
        if let Some(n) = doc.get(k) {
            public_keys(n, &mut keys);
        }
    }
    // ConfigDrive also lists them as {"name", "type": "ssh", "data"}.
    if let Some(n) = doc.get("keys") {
        for k in items(n) {
            let ssh = k
                .get("type")
                .and_then(Node::as_str)
                .is_none_or(|t| t == "ssh");
            if let Some(d) = k.get("data").filter(|_| ssh) {
                public_keys(d, &mut keys);
            }
        }
    }
    let mut unique: Vec<Node> = Vec::new();
    for k in keys {
        if !unique.iter().any(|u| u.same_content(&k)) {
            unique.push(k);
        }
    }
    if !unique.is_empty() {
        out.put("ssh_authorized_keys", tree::seq(unique, &doc.mark));
    }
    if let Some(e) = doc.as_map().and_then(|m| m.get("network-interfaces")) {
        diags.push(tree::warning(
            &e.key_mark,
            "network-interfaces",
            "Debian interfaces(5) text in meta-data is not read; give the network as \
             network-config (version 1 or 2) (ignored)",
        ));
    }
    let mut norm = Normalizer::new(false);
    let tree = norm.root(out.build());
    diags.extend(norm.diagnostics);
    Ok((tree, diags))
}

/// Keys as meta-data gives them: a list, a mapping of names to keys (ConfigDrive), a mapping
/// of names to `{openssh-key: ...}` (EC2 style), or one text of several lines.
fn public_keys(n: &Node, out: &mut Vec<Node>) {
    match &n.value {
        Value::Map(_) => {
            for (_, e) in entries(n) {
                match e.node.get("openssh-key") {
                    Some(k) => public_keys(k, out),
                    None => public_keys(&e.node, out),
                }
            }
        }
        Value::Seq { .. } => items(n).into_iter().for_each(|i| public_keys(i, out)),
        Value::Scalar(s) => {
            for line in s.text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                out.push(tree::text(line, &n.mark));
            }
        }
        Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::SourceKind;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICYc7aNrQpkm91VemglhbWJX9fNo4ikttrD9k7PI4nWN";

    #[test]
    fn nocloud_and_config_drive_meta_data() {
        let nocloud = format!(
            "instance-id: iid-42\nlocal-hostname: node1.lab.example\npublic-keys:\n  - {KEY} a\n"
        );
        assert_eq!(instance_id(&nocloud).as_deref(), Some("iid-42"));
        let (t, d) = parse(&Source::new(
            SourceKind::CloudMetaData,
            "meta-data",
            nocloud,
        ))
        .unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(t.get("hostname").unwrap().as_str(), Some("node1"));
        assert_eq!(t.get("fqdn").unwrap().as_str(), Some("node1.lab.example"));
        let json = format!(
            r#"{{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "vm-7", "name": "vm-7",
  "public_keys": {{"ops": "{KEY} ops\n"}}, "keys": [{{"name": "ops", "type": "ssh", "data": "{KEY} ops"}}],
  "meta": {{"role": "web"}}, "launch_index": 0}}"#
        );
        assert_eq!(
            instance_id(&json).as_deref(),
            Some("83679162-1378-4288-a2d4-70e13ec132aa")
        );
        let (t, d) = parse(&Source::new(
            SourceKind::CloudMetaData,
            "meta_data.json",
            json,
        ))
        .unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(t.get("hostname").unwrap().as_str(), Some("vm-7"));
        assert_eq!(tree::items(t.get("ssh_authorized_keys").unwrap()).len(), 1);
    }

    #[test]
    fn broken_meta_data() {
        let e = parse(&Source::new(
            SourceKind::CloudMetaData,
            "meta-data",
            "- a\n",
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "meta-data:1:1: meta-data: expected a mapping, found a list"
        );
        let (_, d) = parse(&Source::new(
            SourceKind::CloudMetaData,
            "meta-data",
            "instance-id: x\nlocal-hostname: [a]\nnetwork-interfaces: |\n  auto eth0\n",
        ))
        .unwrap();
        let d: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            d[0],
            "meta-data:2:17: local-hostname: expected a host name, found a list"
        );
        assert!(
            d[1].starts_with("meta-data:3:1: network-interfaces: warning: Debian"),
            "{d:?}"
        );
        assert_eq!(instance_id("local-hostname: a\n"), None);
    }
}
