//! os-config on a node that is already configured: its current values become the
//! questions' defaults (so a change is one answer), and what os-config does not ask about
//! in the current `/var/lib/rkos/config.yaml` (labels, write_files, k3s_args, ...) is kept
//! when the new file replaces it.

use indexmap::IndexMap;
use rkos_config::node::{parse_yaml, Entry, Node, Value};
use rkos_config::{Config, Role as ConfigRole};

use crate::answers::{Answers, NetMode, Role};

/// The answers the node's merged config amounts to (nothing of what is not asked).
pub fn answers_from_config(cfg: &Config) -> Answers {
    let rk = &cfg.rkos;
    let mut a = Answers {
        hostname: cfg.hostname.clone(),
        password: rk.password.clone(),
        server_url: rk.server_url.clone(),
        token: rk.token.clone(),
        cluster_init: rk.cluster_init == Some(true),
        ..Answers::default()
    };
    for k in &cfg.ssh_authorized_keys {
        match k.strip_prefix("github:") {
            Some(u) => a.github_users.push(u.to_string()),
            None => a.ssh_keys.push(k.clone()),
        }
    }
    // A role is only "current" when something configured the node; an empty config runs
    // k3s as a server by default, which is no answer.
    if rk.role.is_some() || rk.server_url.is_some() || rk.token.is_some() {
        a.role = Some(match cfg.role() {
            ConfigRole::Server => Role::Server,
            ConfigRole::Agent => Role::Agent,
        });
    }
    if let Some(w) = rk.wifi.first() {
        a.wifi_ssid = Some(w.name.clone());
        a.wifi_passphrase = w.passphrase.clone();
    }
    let ifaces = &rk.network.interfaces;
    match ifaces.as_slice() {
        [] if rk.dns_nameservers.is_empty() => {}
        [] => a.dns = rk.dns_nameservers.clone(),
        // One static address on one plain interface is what the questions make.
        [i] if i.vlan.is_none()
            && i.bond.is_none()
            && i.mtu.is_none()
            && i.dhcp != Some(true)
            && i.addresses.len() == 1
            && rk.dns_nameservers.is_empty() =>
        {
            a.network = NetMode::Static;
            a.interface = Some(i.name.clone());
            a.address = i.addresses.first().cloned();
            a.gateway = i.gateway.clone();
            a.dns = i.dns.clone();
        }
        _ => a.network = NetMode::Keep,
    }
    a
}

/// Whether the node has network settings of its own (then "keep them" is offered).
pub fn has_network_settings(cfg: &Config) -> bool {
    !cfg.rkos.network.interfaces.is_empty() || !cfg.rkos.dns_nameservers.is_empty()
}

/// The keys os-config's answers decide, top level and under `rkos:`. A key in this list is
/// replaced even when the answer is "none"; every other key of the current file is kept.
fn decided(answers: &Answers) -> (Vec<&'static str>, Vec<&'static str>) {
    let top = vec!["hostname", "ssh_authorized_keys"];
    let mut rkos = vec![
        "password",
        "role",
        "server_url",
        "token",
        "cluster_init",
        "wifi",
    ];
    if answers.network != NetMode::Keep {
        rkos.extend(["network", "dns_nameservers"]);
    }
    (top, rkos)
}

/// The new config text with what the current file sets beyond the answers copied in, and
/// the dotted keys that were kept (shown in the summary). A current file that does not
/// parse is replaced whole (it is kept nowhere: the node was not using it either).
pub fn keep_unasked(current: &str, new: &str, answers: &Answers) -> (String, Vec<String>) {
    let (Ok(cur), Ok(mut out)) = (parse_yaml("current", current), parse_yaml("new", new)) else {
        return (new.to_string(), Vec::new());
    };
    let (Value::Map(cur), Value::Map(out_map)) = (cur.value, &mut out.value) else {
        return (new.to_string(), Vec::new());
    };
    let (top, rkos) = decided(answers);
    let mut kept = Vec::new();
    for (key, entry) in cur {
        // k3OS's section name is rkos's alias: its keys merge into `rkos:`.
        if key == "rkos" || key == "k3os" {
            let Value::Map(section) = entry.node.value else {
                continue;
            };
            let target = section_of(out_map, &entry.key_mark, &entry.node.mark);
            for (k, e) in section {
                if !rkos.contains(&k.as_str()) && !target.contains_key(&k) {
                    kept.push(format!("rkos.{k}"));
                    target.insert(k, e);
                }
            }
        } else if !top.contains(&key.as_str()) && !out_map.contains_key(&key) {
            kept.push(key.clone());
            out_map.insert(key, entry);
        }
    }
    if kept.is_empty() {
        return (new.to_string(), kept);
    }
    let header: String = new
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let body = rkos_config::emit::to_yaml(
        &out,
        &rkos_config::emit::Options {
            redact: &|_| false,
            comment: &|_| None,
        },
    );
    (format!("{header}{body}"), kept)
}

/// The text os-config writes for `answers` (which made `new`) over the current file: a
/// config given whole (a file or URL) replaces it; answers keep what they did not decide.
pub fn text_to_write(current: Option<&str>, new: &str, answers: &Answers) -> String {
    match (current, &answers.config_url) {
        (Some(c), None) => keep_unasked(c, new, answers).0,
        _ => new.to_string(),
    }
}

/// The dotted keys of `current` that os-config would keep with these answers.
pub fn kept_keys(current: &str, answers: &Answers) -> Vec<String> {
    keep_unasked(current, "rkos: {}\n", answers).1
}

/// The `rkos:` map of `out`, made if it has none.
fn section_of<'a>(
    out: &'a mut IndexMap<String, Entry>,
    key_mark: &rkos_config::node::Mark,
    mark: &rkos_config::node::Mark,
) -> &'a mut IndexMap<String, Entry> {
    let e = out.entry("rkos".to_string()).or_insert_with(|| Entry {
        key_mark: key_mark.clone(),
        node: Node::new(Value::Map(IndexMap::new()), mark.clone()),
    });
    if !matches!(e.node.value, Value::Map(_)) {
        e.node.value = Value::Map(IndexMap::new());
    }
    match &mut e.node.value {
        Value::Map(m) => m,
        _ => unreachable!("made a map above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::TEST_KEY as KEY;

    fn cfg(yaml: &str) -> Config {
        let l = rkos_config::load(&[rkos_config::Source::new(
            rkos_config::SourceKind::Persistent,
            "t",
            yaml,
        )]);
        assert!(!l.has_errors(), "{:?}\n{yaml}", l.diagnostics);
        l.config
    }

    #[test]
    fn the_current_config_as_answers() {
        let a = answers_from_config(&cfg(
            &format!("hostname: edge-1\nssh_authorized_keys: [github:octo, '{KEY}']\nrkos:\n  server_url: https://10.0.0.1\n  token: t0k\n  password: $6$x$y\n  network:\n    interfaces:\n      - name: eth0\n        addresses: [10.0.0.5/24]\n        gateway: 10.0.0.1\n        dns: [10.0.0.2]\n"
            ),
        ));
        assert_eq!(a.hostname.as_deref(), Some("edge-1"));
        assert_eq!(a.role, Some(Role::Agent));
        assert_eq!(a.github_users, ["octo"]);
        assert_eq!(a.ssh_keys, [KEY]);
        assert_eq!(a.token.as_deref(), Some("t0k"));
        assert_eq!(a.network, NetMode::Static);
        assert_eq!(a.interface.as_deref(), Some("eth0"));
        assert_eq!(a.address.as_deref(), Some("10.0.0.5/24"));
        assert_eq!(a.dns, ["10.0.0.2"]);
        // what the questions cannot say is kept as it is
        let vlan = answers_from_config(&cfg(
            "rkos:\n  network:\n    interfaces:\n      - name: eth0.5\n        vlan: {id: 5, link: eth0}\n        addresses: [10.5.0.2/24]\n",
        ));
        assert_eq!(vlan.network, NetMode::Keep);
        // an empty config answers nothing (k3s's default role is no choice)
        assert_eq!(answers_from_config(&cfg("")), Answers::default());
    }

    #[test]
    fn keeps_what_os_config_does_not_ask_about() {
        let current = "hostname: old\nwrite_files:\n  - path: /etc/x\n    content: \"a\\nb\"\nk3os:\n  labels:\n    zone: a\n  token: old-token\n  k3s_args: [--disable=traefik]\n";
        let new =
            "# Written by os-config.\nhostname: new\nrkos:\n  role: server\n  token: new-token\n";
        let a = Answers {
            hostname: Some("new".into()),
            ..Answers::default()
        };
        let (text, kept) = keep_unasked(current, new, &a);
        assert_eq!(kept, ["write_files", "rkos.labels", "rkos.k3s_args"]);
        assert_eq!(kept_keys(current, &a), kept);
        assert!(text.starts_with("# Written by os-config.\n"), "{text}");
        let c = cfg(&text);
        assert_eq!(c.hostname.as_deref(), Some("new"));
        assert_eq!(c.rkos.token.as_deref(), Some("new-token"));
        assert_eq!(c.rkos.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(c.rkos.k3s_args, ["--disable=traefik"]);
        assert_eq!(c.write_files[0].content, "a\nb");
        // nothing to keep: the new text as written
        assert_eq!(
            keep_unasked("hostname: a\n", new, &a),
            (new.to_string(), vec![])
        );
        assert_eq!(keep_unasked("{{{", new, &a).0, new);
    }

    #[test]
    fn kept_network_stays() {
        let current = "rkos:\n  dns_nameservers: [1.1.1.1]\n";
        let new = "rkos:\n  role: server\n";
        let keep = Answers {
            network: NetMode::Keep,
            ..Answers::default()
        };
        let (text, kept) = keep_unasked(current, new, &keep);
        assert_eq!(kept, ["rkos.dns_nameservers"]);
        assert_eq!(cfg(&text).rkos.dns_nameservers, ["1.1.1.1"]);
        let (_, kept) = keep_unasked(current, new, &Answers::default());
        assert!(kept.is_empty(), "DHCP was answered: the old DNS goes");
    }
}
