//! network-config version 2 (netplan's YAML): `ethernets` (matched by `macaddress` or
//! `name`, renamed by `set-name`), `bonds`, `bridges` and `vlans`, each with `dhcp4`,
//! `dhcp6`, `addresses`, `gateway4`, `gateway6`, `routes`, `nameservers` and `mtu`.

use std::collections::HashMap;

use crate::diag::Diagnostic;
use crate::node::Node;

use super::network::{destination, route, texts, yaml_bool, Iface, Net};
use super::tree::{self, entries, items, join, MapB};

/// Keys netplan has that change nothing rkos can express, accepted quietly.
const QUIET: &[&str] = &[
    "renderer",
    "optional",
    "critical",
    "accept-ra",
    "link-local",
    "wakeonlan",
    "dhcp4-overrides",
    "dhcp6-overrides",
    "ipv6-privacy",
    "emit-lldp",
    "ignore-carrier",
    "activation-mode",
];

pub(super) fn translate(doc: &Node, prefix: &str, diags: &mut Vec<Diagnostic>) -> Net {
    let mut net = Net::default();
    for (key, e) in entries(doc) {
        match key.as_str() {
            "version" | "renderer" | "ethernets" | "bonds" | "bridges" | "vlans" => {}
            other => diags.push(tree::warning(
                &e.key_mark,
                &format!("{prefix}{other}"),
                format!("`{other}` is not read by rkos (ignored)"),
            )),
        }
    }
    // The name each ethernet id stands for, for the bonds, bridges and VLANs naming it.
    let mut names: HashMap<String, String> = HashMap::new();
    let mut ethernets = Vec::new();
    if let Some(eths) = doc.get("ethernets") {
        for (id, e) in entries(eths) {
            let path = format!("{prefix}ethernets.{id}");
            let (itf, name) = ethernet(id, &e.node, &e.key_mark, &path, diags);
            names.insert(id.clone(), name);
            ethernets.push(itf);
        }
    }
    let resolve = |n: &Node| -> Node {
        let t = n.as_str().unwrap_or_default();
        tree::text(names.get(t).map_or(t, String::as_str), &n.mark)
    };
    let mut made = Vec::new();
    for (section, kind) in [("bonds", "bond"), ("bridges", "bridge"), ("vlans", "vlan")] {
        let Some(defs) = doc.get(section) else {
            continue;
        };
        for (id, e) in entries(defs) {
            let path = format!("{prefix}{section}.{id}");
            let mut itf = Iface::new(id, &e.key_mark);
            let mut sub = MapB::new(&e.key_mark);
            let mut own: Vec<&str> = vec!["interfaces", "parameters"];
            match kind {
                "vlan" => {
                    own = vec!["id", "link"];
                    sub.put_opt("id", e.node.get("id").cloned());
                    sub.put_opt("link", e.node.get("link").map(&resolve));
                }
                _ => {
                    if let Some(members) = e.node.get("interfaces") {
                        let m: Vec<Node> = items(members).into_iter().map(&resolve).collect();
                        sub.put("interfaces", tree::seq(m, &members.mark));
                    }
                    if let Some(p) = e.node.get("parameters") {
                        parameters(
                            kind,
                            p,
                            &join(&path, "parameters"),
                            &mut sub,
                            &resolve,
                            diags,
                        );
                    }
                }
            }
            common(&mut itf, &e.node, &path, &own, diags);
            itf.map.put(kind, sub.build());
            made.push(itf.build());
        }
    }
    net.interfaces = ethernets;
    net.interfaces.extend(made);
    net
}

/// An ethernet and the name the others refer to it by.
fn ethernet(
    id: &str,
    def: &Node,
    id_mark: &crate::node::Mark,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) -> (Node, String) {
    let mac = def.get("match").and_then(|m| m.get("macaddress"));
    let match_name = def
        .get("match")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str);
    let set_name = def.get("set-name").and_then(Node::as_str);
    if let Some(m) = def.get("match") {
        for (k, e) in entries(m) {
            if k != "macaddress" && k != "name" {
                diags.push(tree::warning(
                    &e.key_mark,
                    &join(&join(path, "match"), k),
                    format!("rkos matches devices by `macaddress` or `name`, not `{k}` (ignored)"),
                ));
            }
        }
    }
    // Without set-name and a MAC, the device keeps its name: a match on a name is that name.
    let name = set_name
        .or(match_name.filter(|_| mac.is_none()))
        .unwrap_or(id)
        .to_string();
    let mut itf = Iface::new(&name, id_mark);
    if let Some(m) = mac {
        itf.map.put("mac", m.clone());
        if set_name.is_some() {
            itf.map.put("rename", tree::plain("true", &m.mark));
        }
    } else if set_name.is_some() && match_name.is_some() {
        diags.push(tree::warning(
            id_mark,
            &join(path, "set-name"),
            "rkos renames a device matched by `macaddress` only; this one keeps its name (ignored)",
        ));
    }
    common(&mut itf, def, path, &["match", "set-name"], diags);
    (itf.build(), name)
}

/// The keys every kind of device has.
fn common(itf: &mut Iface, def: &Node, path: &str, own: &[&str], diags: &mut Vec<Diagnostic>) {
    for (key, e) in entries(def) {
        let n = &e.node;
        let at = join(path, key);
        match key.as_str() {
            k if own.contains(&k) || QUIET.contains(&k) => {}
            "dhcp4" => itf.dhcp4 = Some(n.clone()),
            "dhcp6" => itf.dhcp6 = Some(n.clone()),
            "addresses" => {
                for (i, a) in items(n).into_iter().enumerate() {
                    // `- 10.0.0.5/24` or `- 10.0.0.5/24: {lifetime: 0, label: x}`
                    let addr = match a.as_map() {
                        Some(m) if m.len() == 1 => {
                            let (k, e) = m.iter().next().expect("one entry");
                            Some(tree::text(k, &e.key_mark))
                        }
                        _ => a.as_str().map(|_| a.clone()),
                    };
                    match addr {
                        Some(x) => itf.addresses.push(x),
                        None => diags.push(tree::error(
                            a,
                            &tree::index(&at, i),
                            "expected ADDRESS/PREFIX",
                        )),
                    }
                }
            }
            "gateway4" | "gateway6" => itf.add_gateway(n.clone()),
            "routes" => {
                for (i, r) in items(n).into_iter().enumerate() {
                    if let Some(route) = v2_route(r, &tree::index(&at, i), diags) {
                        itf.routes.push(route);
                    }
                }
            }
            "nameservers" => {
                if let Some(a) = n.get("addresses") {
                    itf.dns.extend(texts(a));
                }
                if let Some(s) = n.get("search") {
                    itf.domains.extend(texts(s));
                }
            }
            "mtu" => {
                itf.map.put("mtu", n.clone());
            }
            "macaddress" => diags.push(tree::warning(
                &e.key_mark,
                &at,
                "rkos does not change a device's MAC address (ignored)",
            )),
            other => diags.push(tree::warning(
                &e.key_mark,
                &at,
                format!("`{other}` is not read by rkos (ignored)"),
            )),
        }
    }
}

fn v2_route(r: &Node, path: &str, diags: &mut Vec<Diagnostic>) -> Option<Node> {
    let Some(to) = r.get("to") else {
        diags.push(tree::error(
            r,
            path,
            "a route needs `to` (ADDRESS/PREFIX or default)",
        ));
        return None;
    };
    let to_text = tree::scalar(to, &join(path, "to"), "ADDRESS/PREFIX or default", diags)?;
    let dest = match destination(to_text, None) {
        Ok(d) => d,
        Err(e) => {
            diags.push(tree::error(to, &join(path, "to"), e));
            return None;
        }
    };
    let mut node = route(
        tree::text(dest, &to.mark),
        r.get("via").cloned(),
        r.get("metric").cloned(),
    );
    if let Some(ol) = r.get("on-link") {
        if let crate::node::Value::Map(m) = &mut node.value {
            m.insert(
                "on_link".into(),
                crate::node::Entry {
                    key_mark: ol.mark.clone(),
                    node: ol.clone(),
                },
            );
        }
    }
    for (k, e) in entries(r) {
        if !matches!(k.as_str(), "to" | "via" | "metric" | "on-link") {
            diags.push(tree::warning(
                &e.key_mark,
                &join(path, k),
                format!("route `{k}` is not read by rkos (ignored)"),
            ));
        }
    }
    Some(node)
}

/// Bond and bridge `parameters`.
fn parameters(
    kind: &str,
    p: &Node,
    path: &str,
    sub: &mut MapB,
    resolve: &dyn Fn(&Node) -> Node,
    diags: &mut Vec<Diagnostic>,
) {
    for (k, e) in entries(p) {
        let n = &e.node;
        match (kind, k.as_str()) {
            ("bond", "mode") => {
                sub.put("mode", n.clone());
            }
            ("bond", "mii-monitor-interval") => {
                // netplan: milliseconds, as a number or with a unit
                let t = n.as_str().unwrap_or_default();
                let ms = t
                    .strip_suffix("ms")
                    .map(str::to_string)
                    .or_else(|| {
                        t.strip_suffix('s')
                            .and_then(|s| s.parse::<u32>().ok())
                            .map(|s| (s * 1000).to_string())
                    })
                    .unwrap_or_else(|| t.to_string());
                sub.put("mii_monitor_interval", tree::plain(ms, &n.mark));
            }
            ("bond", "lacp-rate") => {
                sub.put("lacp_rate", n.clone());
            }
            ("bond", "transmit-hash-policy") => {
                sub.put("transmit_hash_policy", n.clone());
            }
            ("bond", "primary") => {
                sub.put("primary", resolve(n));
            }
            ("bridge", "stp") => {
                sub.put("stp", yaml_bool(n));
            }
            _ => diags.push(tree::warning(
                &e.key_mark,
                &join(path, k),
                format!("{kind} parameter `{k}` is not read by rkos (ignored)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::load::{Source, SourceKind};

    fn load(text: &str) -> (crate::Config, Vec<String>) {
        let loaded = crate::load(&[Source::new(
            SourceKind::CloudNetwork,
            "network-config",
            text,
        )]);
        (
            loaded.config,
            loaded.diagnostics.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn ethernets_bonds_vlans_and_bridges() {
        let (cfg, diags) = load(
            "network:\n  version: 2\n  ethernets:\n    nic0:\n      match: {macaddress: '52:54:00:00:00:01'}\n      set-name: lan0\n\
             \x20     dhcp4: false\n      addresses: [192.168.1.5/24]\n      gateway4: 192.168.1.1\n\
             \x20     nameservers: {addresses: [1.1.1.1], search: [lab.example]}\n\
             \x20   nic1: {match: {macaddress: '52:54:00:00:00:02'}}\n    nic2: {match: {macaddress: '52:54:00:00:00:03'}}\n\
             \x20 bonds:\n    bond0:\n      interfaces: [nic1, nic2]\n      parameters: {mode: 802.3ad, mii-monitor-interval: 100, lacp-rate: fast}\n\
             \x20 vlans:\n    vlan20: {id: 20, link: bond0, addresses: ['10.20.0.9/16'], routes: [{to: 10.0.0.0/8, via: 10.20.0.1}]}\n\
             \x20 bridges:\n    br0: {interfaces: [lan0], parameters: {stp: false}, dhcp4: true}\n",
        );
        assert!(diags.is_empty(), "{diags:#?}");
        let i = &cfg.rkos.network.interfaces;
        let names: Vec<&str> = i.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lan0", "nic1", "nic2", "bond0", "br0", "vlan20"]);
        assert_eq!(i[0].mac.as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(i[0].rename, Some(true));
        assert_eq!((i[0].dhcp, i[0].dhcp6), (Some(false), Some(false)));
        assert_eq!(i[0].gateway.as_deref(), Some("192.168.1.1"));
        assert_eq!(i[0].dns, ["1.1.1.1"]);
        assert_eq!(i[0].domains, ["lab.example"]);
        assert_eq!(i[1].rename, None);
        let bond = i[3].bond.as_ref().unwrap();
        assert_eq!(bond.interfaces, ["nic1", "nic2"]);
        assert_eq!(bond.mii_monitor_interval, Some(100));
        assert_eq!(bond.lacp_rate.as_deref(), Some("fast"));
        assert_eq!(i[4].bridge.as_ref().unwrap().interfaces, ["lan0"]);
        assert_eq!(i[4].dhcp, Some(true));
        assert_eq!(i[5].vlan.as_ref().unwrap().link, "bond0");
        assert_eq!(i[5].routes[0].to, "10.0.0.0/8");
    }

    #[test]
    fn what_rkos_does_not_read_is_named() {
        let (cfg, diags) = load(
            "version: 2\nwifis: {}\nethernets:\n  eth0:\n    match: {driver: virtio_net}\n    dhcp4: yes\n    addresses: [fd00::5/64]\n    gateway6: fd00::1\n    gateway4: 10.0.0.1\n    routes:\n      - {to: default, via: fd00::2, table: 5}\n",
        );
        assert_eq!(
            diags,
            [
                "network-config:2:1: wifis: warning: `wifis` is not read by rkos (ignored)",
                "network-config:5:13: ethernets.eth0.match.driver: warning: rkos matches devices by `macaddress` or `name`, not `driver` (ignored)",
                "network-config:11:37: ethernets.eth0.routes[0].table: warning: route `table` is not read by rkos (ignored)",
            ]
        );
        let e = &cfg.rkos.network.interfaces[0];
        assert_eq!(e.dhcp, Some(true));
        // the first gateway is the interface's, the next one a default route
        assert_eq!(e.gateway.as_deref(), Some("fd00::1"));
        let routes: Vec<(&str, Option<&str>)> = e
            .routes
            .iter()
            .map(|r| (r.to.as_str(), r.via.as_deref()))
            .collect();
        assert_eq!(
            routes,
            [("0.0.0.0/0", Some("10.0.0.1")), ("::/0", Some("fd00::2"))]
        );
    }
}
