//! network-config version 1: a `config` list of `physical` (matched by `mac_address` and
//! named `name`, as cloud-init renames it), `bond`, `vlan`, `bridge`, `nameserver` and `route`
//! entries; devices carry `subnets` (`static`, `static6`, `dhcp`, `dhcp4`, `dhcp6`, ...).

use crate::diag::Diagnostic;
use crate::node::Node;

use super::network::{cidr, destination, route, texts, yaml_bool, Iface, Net};
use super::tree::{self, entries, items, join, MapB};

/// Device keys that change nothing rkos can express, accepted quietly.
const QUIET: &[&str] = &["accept-ra", "wakeonlan", "keep_configuration", "control"];

pub(super) fn translate(doc: &Node, prefix: &str, diags: &mut Vec<Diagnostic>) -> Net {
    let mut net = Net::default();
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut routes: Vec<(Node, String)> = Vec::new();
    let list = doc.get("config").map(items).unwrap_or_default();
    for (i, d) in list.into_iter().enumerate() {
        let path = tree::index(&format!("{prefix}config"), i);
        let ty = d.get("type").and_then(Node::as_str).unwrap_or("");
        match ty {
            "physical" | "bond" | "vlan" | "bridge" => {
                if let Some(itf) = device(ty, d, &path, diags) {
                    ifaces.push(itf);
                }
            }
            "nameserver" => {
                let target = d
                    .get("interface")
                    .and_then(Node::as_str)
                    .and_then(|n| ifaces.iter_mut().find(|i| i.name == n));
                let (dns, search) = (
                    d.get("address").map(texts).unwrap_or_default(),
                    d.get("search").map(texts).unwrap_or_default(),
                );
                match target {
                    Some(itf) => {
                        itf.dns.extend(dns);
                        itf.domains.extend(search);
                    }
                    None => {
                        net.dns.extend(dns);
                        net.search.extend(search);
                    }
                }
            }
            "route" => routes.push((d.clone(), path)),
            "" => diags.push(tree::error(
                d,
                &path,
                "a network-config entry needs a `type`",
            )),
            other => diags.push(tree::warning(
                &d.get("type")
                    .map_or_else(|| tree::at(d), |t| t.mark.clone()),
                &join(&path, "type"),
                format!("`{other}` devices are not read by rkos (ignored)"),
            )),
        }
    }
    for (r, path) in routes {
        let Some(node) = v1_route(&r, &path, diags) else {
            continue;
        };
        let via = node
            .get("via")
            .and_then(Node::as_str)
            .unwrap_or("")
            .to_string();
        let on = ifaces
            .iter()
            .position(|i| i.on_subnet(&via))
            .or_else(|| ifaces.iter().position(|i| !i.addresses.is_empty()));
        match on {
            Some(p) => ifaces[p].routes.push(node),
            None => diags.push(tree::warning(
                &tree::at(&r),
                &path,
                "no interface with a static address to put this route on (ignored)",
            )),
        }
    }
    net.interfaces = ifaces.into_iter().map(Iface::build).collect();
    net
}

fn device(ty: &str, d: &Node, path: &str, diags: &mut Vec<Diagnostic>) -> Option<Iface> {
    let Some(name_node) = d.get("name") else {
        diags.push(tree::error(d, path, format!("a {ty} entry needs a `name`")));
        return None;
    };
    let name = tree::scalar(name_node, &join(path, "name"), "an interface name", diags)?;
    let mut itf = Iface::new(name, &name_node.mark);
    let mut sub = MapB::new(&d.mark);
    for (key, e) in entries(d) {
        let n = &e.node;
        let at = join(path, key);
        match (ty, key.as_str()) {
            (_, "type" | "name" | "params") => {}
            (_, k) if QUIET.contains(&k) => {}
            ("physical", "mac_address") => {
                // cloud-init gives the device with this address the entry's name
                itf.map.put("mac", n.clone());
                itf.map.put("rename", tree::plain("true", &n.mark));
            }
            // a bond's or bridge's own MAC: the kernel's choice is kept
            (_, "mac_address") => {}
            (_, "mtu") => {
                itf.map.put("mtu", n.clone());
            }
            (_, "subnets") => {
                for (i, s) in items(n).into_iter().enumerate() {
                    subnet(&mut itf, s, &tree::index(&at, i), diags);
                }
            }
            ("bond", "bond_interfaces") | ("bridge", "bridge_interfaces") => {
                sub.put("interfaces", tree::seq(texts(n), &n.mark));
            }
            ("vlan", "vlan_link") => {
                sub.put("link", n.clone());
            }
            ("vlan", "vlan_id") => {
                sub.put("id", n.clone());
            }
            (_, other) => diags.push(tree::warning(
                &e.key_mark,
                &at,
                format!("`{other}` is not read by rkos (ignored)"),
            )),
        }
    }
    if let Some(p) = d.get("params") {
        params(ty, p, &join(path, "params"), &mut sub, diags);
    }
    if ty != "physical" {
        itf.map.put(ty, sub.build());
    }
    Some(itf)
}

fn subnet(itf: &mut Iface, s: &Node, path: &str, diags: &mut Vec<Diagnostic>) {
    let ty = s.get("type").and_then(Node::as_str).unwrap_or("");
    let on = || tree::plain("true", &s.mark);
    match ty {
        "dhcp" | "dhcp4" => itf.dhcp4 = Some(on()),
        "dhcp6" | "ipv6_dhcpv6-stateful" | "ipv6_dhcpv6-stateless" => itf.dhcp6 = Some(on()),
        // networkd takes router advertisements on its own
        "ipv6_slaac" | "manual" => {}
        "static" | "static6" => {
            let Some(a) = s.get("address") else {
                diags.push(tree::error(s, path, "a static subnet needs an `address`"));
                return;
            };
            let mask = s.get("netmask").or(s.get("prefix")).and_then(Node::as_str);
            for addr in items(a) {
                let text = addr.as_str().unwrap_or_default();
                match cidr(text, mask) {
                    Ok(c) => itf.addresses.push(tree::text(c, &addr.mark)),
                    Err(e) => diags.push(tree::error(addr, &join(path, "address"), e)),
                }
            }
            if let Some(g) = s.get("gateway") {
                itf.add_gateway(g.clone());
            }
        }
        "" => diags.push(tree::error(s, path, "a subnet needs a `type`")),
        other => diags.push(tree::warning(
            &s.get("type")
                .map_or_else(|| tree::at(s), |t| t.mark.clone()),
            &join(path, "type"),
            format!("subnet type `{other}` is not read by rkos (ignored)"),
        )),
    }
    if let Some(d) = s.get("dns_nameservers") {
        itf.dns.extend(texts(d));
    }
    if let Some(d) = s.get("dns_search") {
        itf.domains.extend(texts(d));
    }
    if let Some(rs) = s.get("routes") {
        for (i, r) in items(rs).into_iter().enumerate() {
            if let Some(node) = v1_route(r, &tree::index(&join(path, "routes"), i), diags) {
                itf.routes.push(node);
            }
        }
    }
}

/// A route: `network`/`destination` with `netmask` or `prefix`, `gateway`, `metric`.
fn v1_route(r: &Node, path: &str, diags: &mut Vec<Diagnostic>) -> Option<Node> {
    let Some(to) = r.get("network").or(r.get("destination")) else {
        diags.push(tree::error(
            r,
            path,
            "a route needs `network` (or `destination`)",
        ));
        return None;
    };
    let mask = r.get("netmask").or(r.get("prefix")).and_then(Node::as_str);
    let text = tree::scalar(to, &join(path, "network"), "an address", diags)?;
    match destination(text, mask) {
        Ok(dest) => Some(route(
            tree::text(dest, &to.mark),
            r.get("gateway").cloned(),
            r.get("metric").cloned(),
        )),
        Err(e) => {
            diags.push(tree::error(to, &join(path, "network"), e));
            None
        }
    }
}

/// Bond and bridge `params` (`bond-mode`, `bond_miimon`, `bridge_stp`, ...).
fn params(ty: &str, p: &Node, path: &str, sub: &mut MapB, diags: &mut Vec<Diagnostic>) {
    for (k, e) in entries(p) {
        let n = &e.node;
        let key = k.replace('-', "_");
        let key = key.strip_prefix(&format!("{ty}_")).unwrap_or(&key);
        match (ty, key) {
            ("bond", "mode") => {
                sub.put("mode", n.clone());
            }
            ("bond", "miimon") => {
                sub.put("mii_monitor_interval", n.clone());
            }
            ("bond", "lacp_rate") => {
                sub.put("lacp_rate", n.clone());
            }
            ("bond", "xmit_hash_policy") => {
                sub.put("transmit_hash_policy", n.clone());
            }
            ("bond", "primary") => {
                sub.put("primary", n.clone());
            }
            ("bridge", "stp") => {
                sub.put("stp", yaml_bool(n));
            }
            _ => diags.push(tree::warning(
                &e.key_mark,
                &join(path, k),
                format!("{ty} parameter `{k}` is not read by rkos (ignored)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::load::{Source, SourceKind};

    #[test]
    fn proxmox_style_static_with_bond_and_vlan() {
        let text = r#"version: 1
config:
    - type: physical
      name: eth0
      mac_address: 'bc:24:11:2a:3b:4c'
      subnets:
      - type: static
        address: '192.168.1.10'
        netmask: '255.255.255.0'
        gateway: '192.168.1.1'
      - type: static6
        address: 'fd00::10/64'
        gateway: 'fd00::1'
    - {type: physical, name: eth1, mac_address: 'bc:24:11:00:00:01'}
    - {type: physical, name: eth2, mac_address: 'bc:24:11:00:00:02'}
    - {type: bond, name: bond0, bond_interfaces: [eth1, eth2], params: {bond-mode: active-backup, bond-miimon: 100, bond-primary: eth1}}
    - {type: vlan, name: bond0.30, vlan_link: bond0, vlan_id: 30, subnets: [{type: dhcp}]}
    - {type: route, destination: 10.9.0.0/16, gateway: 192.168.1.254}
    - type: nameserver
      address: ['1.1.1.1', '9.9.9.9']
      search: [example.com]
"#;
        let loaded = crate::load(&[Source::new(
            SourceKind::CloudNetwork,
            "network-config",
            text,
        )]);
        assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
        let rk = &loaded.config.rkos;
        assert_eq!(rk.dns_nameservers, ["1.1.1.1", "9.9.9.9"]);
        assert_eq!(rk.dns_search, ["example.com"]);
        let i = &rk.network.interfaces;
        assert_eq!(i[0].name, "eth0");
        assert_eq!(i[0].rename, Some(true));
        assert_eq!(i[0].addresses, ["192.168.1.10/24", "fd00::10/64"]);
        assert_eq!(i[0].gateway.as_deref(), Some("192.168.1.1"));
        let routes: Vec<&str> = i[0].routes.iter().map(|r| r.to.as_str()).collect();
        assert_eq!(routes, ["::/0", "10.9.0.0/16"]);
        let bond = i[3].bond.as_ref().unwrap();
        assert_eq!(bond.mode.as_deref(), Some("active-backup"));
        assert_eq!(bond.primary.as_deref(), Some("eth1"));
        assert_eq!(i[4].vlan.as_ref().unwrap().id, 30);
        assert_eq!(i[4].dhcp, Some(true));
    }

    #[test]
    fn broken_v1() {
        let loaded = crate::load(&[Source::new(
            SourceKind::CloudNetwork,
            "network-config",
            "version: 1\nconfig:\n  - type: physical\n    subnets: []\n  - type: physical\n    name: eth0\n    subnets:\n      - type: static\n        address: 10.0.0.300\n  - type: infiniband\n    name: ib0\n",
        )]);
        let d: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            d,
            [
                "network-config:3:5: config[0]: a physical entry needs a `name`",
                "network-config:9:18: config[1].subnets[0].address: `10.0.0.300` is not an IP address",
                "network-config:10:11: config[2].type: warning: `infiniband` devices are not read by rkos (ignored)",
                "network-config: this source has errors and was left out; the node uses the other sources",
            ]
        );
    }
}
