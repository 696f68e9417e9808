//! OpenStack's `network_data.json` (a ConfigDrive's `openstack/latest/`, as OpenStack and
//! Proxmox write it): `links` (physical devices by `ethernet_mac_address`, `bond`, `vlan`),
//! `networks` (addresses, routes and DHCP per link) and `services` (DNS servers).

use crate::diag::Diagnostic;
use crate::node::Node;

use super::network::{cidr, destination, route, texts, usable_name, Iface, Net};
use super::tree::{self, entries, items, join, MapB};

pub(super) fn translate(doc: &Node, diags: &mut Vec<Diagnostic>) -> Net {
    let mut net = Net::default();
    let mut ifaces: Vec<(String, Iface)> = Vec::new();
    let links = doc.get("links").map(items).unwrap_or_default();
    for (i, l) in links.iter().enumerate() {
        let path = tree::index("links", i);
        let Some(id) = l.get("id").and_then(Node::as_str) else {
            diags.push(tree::error(l, &path, "a link needs an `id`"));
            continue;
        };
        let ty = l.get("type").and_then(Node::as_str).unwrap_or("phy");
        // the names the others use: a link's `name` if it has one, else its id
        let resolve = |n: &Node| -> Node {
            let t = n.as_str().unwrap_or_default();
            let name = ifaces
                .iter()
                .find(|(id, _)| id == t)
                .map_or(t, |(_, itf)| itf.name.as_str());
            tree::text(name, &n.mark)
        };
        let given = l.get("name").and_then(Node::as_str);
        let mut sub = MapB::new(&l.mark);
        let name = match ty {
            "vlan" => {
                let parent = l.get("vlan_link").map(&resolve);
                let vid = l.get("vlan_id");
                sub.put_opt("link", parent.clone());
                sub.put_opt("id", vid.cloned());
                let fallback = format!(
                    "{}.{}",
                    parent.as_ref().and_then(Node::as_str).unwrap_or(""),
                    vid.and_then(Node::as_str).unwrap_or("")
                );
                let vid_text = vid.and_then(Node::as_str).unwrap_or("0").to_string();
                usable_name(given.unwrap_or(&fallback), || {
                    usable_name(&fallback, || format!("vlan{vid_text}"))
                })
            }
            "bond" => {
                if let Some(members) = l.get("bond_links") {
                    let m: Vec<Node> = items(members).into_iter().map(&resolve).collect();
                    sub.put("interfaces", tree::seq(m, &members.mark));
                }
                sub.put_opt("mode", l.get("bond_mode").cloned());
                sub.put_opt("mii_monitor_interval", l.get("bond_miimon").cloned());
                sub.put_opt(
                    "transmit_hash_policy",
                    l.get("bond_xmit_hash_policy").cloned(),
                );
                usable_name(given.unwrap_or(id), || format!("bond{i}"))
            }
            _ => usable_name(given.unwrap_or(id), || format!("eth{i}")),
        };
        let id_mark = l.get("id").map_or(l.mark.clone(), |n| n.mark.clone());
        let mut itf = Iface::new(&name, &id_mark);
        match ty {
            "vlan" | "bond" => {
                itf.map.put(ty, sub.build());
            }
            _ => {
                // a physical device keeps its name; the MAC finds it
                itf.map
                    .put_opt("mac", l.get("ethernet_mac_address").cloned());
            }
        }
        itf.map
            .put_opt("mtu", l.get("mtu").filter(|m| !m.is_null()).cloned());
        ifaces.push((id.to_string(), itf));
    }
    let networks = doc.get("networks").map(items).unwrap_or_default();
    for (i, n) in networks.into_iter().enumerate() {
        let path = tree::index("networks", i);
        let link = n.get("link").and_then(Node::as_str).unwrap_or_default();
        let Some((_, itf)) = ifaces.iter_mut().find(|(id, _)| id == link) else {
            diags.push(tree::error(
                n,
                &join(&path, "link"),
                format!("no link with the id `{link}`"),
            ));
            continue;
        };
        network(itf, n, &path, diags);
    }
    for s in doc.get("services").map(items).unwrap_or_default() {
        if s.get("type").and_then(Node::as_str) == Some("dns") {
            if let Some(a) = s.get("address") {
                net.dns.extend(texts(a));
            }
        }
    }
    for (key, e) in entries(doc) {
        if !matches!(key.as_str(), "links" | "networks" | "services") {
            diags.push(tree::warning(
                &e.key_mark,
                key,
                format!("`{key}` is not read by rkos (ignored)"),
            ));
        }
    }
    net.interfaces = ifaces.into_iter().map(|(_, i)| i.build()).collect();
    net
}

/// One entry of `networks` on its link.
fn network(itf: &mut Iface, n: &Node, path: &str, diags: &mut Vec<Diagnostic>) {
    let on = || tree::plain("true", &n.mark);
    match n.get("type").and_then(Node::as_str).unwrap_or("") {
        "ipv4_dhcp" | "dhcp4" => itf.dhcp4 = Some(on()),
        "ipv6_dhcp" | "ipv6_dhcpv6-stateful" | "ipv6_dhcpv6-stateless" | "dhcp6" => {
            itf.dhcp6 = Some(on())
        }
        "ipv6_slaac" => {}
        "ipv4" | "ipv6" => {
            let Some(a) = n.get("ip_address") else {
                diags.push(tree::error(
                    n,
                    path,
                    "a static network needs an `ip_address`",
                ));
                return;
            };
            let mask = n.get("netmask").and_then(Node::as_str);
            match cidr(a.as_str().unwrap_or_default(), mask) {
                Ok(c) => itf.addresses.push(tree::text(c, &a.mark)),
                Err(e) => diags.push(tree::error(a, &join(path, "ip_address"), e)),
            }
            for (i, r) in n
                .get("routes")
                .map(items)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                let rp = tree::index(&join(path, "routes"), i);
                let Some(to) = r.get("network") else {
                    diags.push(tree::error(r, &rp, "a route needs `network`"));
                    continue;
                };
                let mask = r.get("netmask").and_then(Node::as_str);
                match destination(to.as_str().unwrap_or_default(), mask) {
                    Ok(d) => itf.routes.push(route(
                        tree::text(d, &to.mark),
                        r.get("gateway").cloned(),
                        None,
                    )),
                    Err(e) => diags.push(tree::error(to, &join(&rp, "network"), e)),
                }
            }
        }
        other => diags.push(tree::warning(
            &n.get("type")
                .map_or_else(|| tree::at(n), |t| t.mark.clone()),
            &join(path, "type"),
            format!("network type `{other}` is not read by rkos (ignored)"),
        )),
    }
    if let Some(d) = n.get("dns_nameservers") {
        itf.dns.extend(texts(d));
    }
}

#[cfg(test)]
mod tests {
    use crate::load::{Source, SourceKind};

    #[test]
    fn openstack_bond_vlan_and_proxmox_single() {
        let json = r#"{
  "links": [
    {"id": "tap0", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01", "mtu": 9000},
    {"id": "tap1", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:02"},
    {"id": "bond0", "type": "bond", "bond_links": ["tap0", "tap1"], "bond_mode": "802.3ad", "bond_miimon": 100},
    {"id": "vlan0", "type": "vlan", "vlan_link": "bond0", "vlan_id": 101, "vlan_mac_address": "fa:16:3e:00:00:01"}
  ],
  "networks": [
    {"id": "n0", "type": "ipv4", "link": "vlan0", "ip_address": "10.1.0.5", "netmask": "255.255.255.0",
     "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.1.0.1"}], "network_id": "x"},
    {"id": "n1", "type": "ipv6_dhcp", "link": "vlan0"}
  ],
  "services": [{"type": "dns", "address": "10.1.0.2"}, {"type": "ntp", "address": "10.1.0.3"}]
}"#;
        let loaded = crate::load(&[Source::new(
            SourceKind::CloudNetwork,
            "network_data.json",
            json,
        )]);
        assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
        let rk = &loaded.config.rkos;
        assert_eq!(rk.dns_nameservers, ["10.1.0.2"]);
        let i = &rk.network.interfaces;
        assert_eq!(i[0].mac.as_deref(), Some("fa:16:3e:00:00:01"));
        assert_eq!(i[0].mtu, Some(9000));
        assert_eq!(i[0].rename, None);
        assert_eq!(i[2].bond.as_ref().unwrap().interfaces, ["tap0", "tap1"]);
        assert_eq!(i[3].name, "bond0.101");
        assert_eq!(i[3].addresses, ["10.1.0.5/24"]);
        assert_eq!(i[3].routes[0].to, "0.0.0.0/0");
        assert_eq!(i[3].routes[0].via.as_deref(), Some("10.1.0.1"));
        assert_eq!((i[3].dhcp, i[3].dhcp6), (Some(false), Some(true)));
    }
}
