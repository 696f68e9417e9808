//! Checks of the network model: `rkos.network.interfaces` (written by hand, or translated
//! from cloud-init's network-config and OpenStack's network_data.json) and the node's names.

use std::net::IpAddr;

use super::{check_hostname, check_hostname_loose, Checker};
use crate::model::{Config, Interface};
use crate::node::PathSeg;

/// `fqdn` and `manage_etc_hosts` (cloud-init's names, also valid in config.yaml).
pub(super) fn check_names(c: &mut Checker, cfg: &Config) {
    if let Some(f) = &cfg.fqdn {
        c.key("fqdn", |c| {
            if let Err(e) = check_hostname(f) {
                c.error(e)
            }
        });
    }
    if let Some(m) = &cfg.manage_etc_hosts {
        c.key("manage_etc_hosts", |c| {
            let known = [
                "true",
                "false",
                "yes",
                "no",
                "on",
                "off",
                "localhost",
                "template",
            ];
            if !known.contains(&m.to_ascii_lowercase().as_str()) {
                c.error(format!("expected true, false or localhost, found `{m}`"))
            }
        });
    }
}

const BOND_MODES: &[&str] = &[
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
];
const HASH_POLICIES: &[&str] = &["layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4"];

fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

pub(super) fn check_interface(c: &mut Checker, itf: &Interface) {
    let virtual_kind = itf.vlan.is_some() || itf.bond.is_some() || itf.bridge.is_some();
    if itf.name.is_empty() {
        c.key("name", |c| {
            c.error("missing: every interface needs a `name`")
        });
    } else if itf.name.len() > 15 || itf.name.contains(['/', ' ']) {
        c.key("name", |c| {
            c.error("an interface name is at most 15 characters, without `/` or spaces")
        });
    } else if is_glob(&itf.name) && (virtual_kind || itf.rename == Some(true)) {
        c.key("name", |c| {
            c.error("a name with `*`, `?` or `[` matches devices; a VLAN, bond, bridge or renamed device needs a plain name")
        });
    }
    if let Some(m) = &itf.mac {
        c.key("mac", |c| {
            if let Err(e) = check_mac(m) {
                c.error(e)
            } else if virtual_kind {
                c.error(
                    "`mac` matches a physical device; a VLAN, bond or bridge is made, not matched",
                )
            }
        });
    } else if itf.rename == Some(true) {
        c.key("rename", |c| {
            c.error("`rename` needs `mac`: the device to give the name to")
        });
    }
    c.list("addresses", &itf.addresses, |c, a| {
        if let Err(e) = check_cidr(a) {
            c.error(e)
        }
    });
    if let Some(g) = &itf.gateway {
        c.key("gateway", |c| {
            if g.parse::<IpAddr>().is_err() {
                c.error(format!("expected an IP address, found `{g}`"))
            }
        });
    }
    c.key("routes", |c| {
        for (i, r) in itf.routes.iter().enumerate() {
            c.at(PathSeg::Index(i), |c| check_route(c, r));
        }
    });
    c.list("dns", &itf.dns, |c, s| {
        if s.parse::<IpAddr>().is_err() {
            c.error(format!("expected an IP address, found `{s}`"))
        }
    });
    c.list("domains", &itf.domains, |c, d| {
        if let Err(e) = check_hostname_loose(d) {
            c.error(format!("`{d}` is not a DNS domain: {e}"))
        }
    });
    if let Some(v) = &itf.vlan {
        c.key("vlan", |c| {
            if !(1..=4094).contains(&v.id) {
                c.key("id", |c| c.error("a VLAN id is 1 to 4094"));
            }
            if v.link.is_empty() {
                c.key("link", |c| {
                    c.error("missing: the parent interface of the VLAN")
                });
            }
        });
    }
    if let Some(b) = &itf.bond {
        c.key("bond", |c| {
            if let Some(m) = &b.mode {
                if !BOND_MODES.contains(&m.as_str()) {
                    c.key("mode", |c| {
                        c.error(format!(
                            "expected one of {}, found `{m}`",
                            BOND_MODES.join(", ")
                        ))
                    });
                }
            }
            if b.interfaces.is_empty() {
                c.key("interfaces", |c| {
                    c.error("a bond needs at least one member interface")
                });
            }
            if let Some(r) = &b.lacp_rate {
                if r != "slow" && r != "fast" {
                    c.key("lacp_rate", |c| {
                        c.error(format!("expected slow or fast, found `{r}`"))
                    });
                }
            }
            if let Some(p) = &b.transmit_hash_policy {
                if !HASH_POLICIES.contains(&p.as_str()) {
                    c.key("transmit_hash_policy", |c| {
                        c.error(format!(
                            "expected one of {}, found `{p}`",
                            HASH_POLICIES.join(", ")
                        ))
                    });
                }
            }
            if let Some(p) = &b.primary {
                if !b.interfaces.contains(p) {
                    c.key("primary", |c| {
                        c.error(format!("`{p}` is not one of the bond's interfaces"))
                    });
                }
            }
        });
    }
    if let Some(b) = &itf.bridge {
        c.key("bridge", |c| {
            if b.interfaces.is_empty() {
                c.key("interfaces", |c| {
                    c.error("a bridge needs at least one port")
                });
            }
        });
    }
    let kinds = [itf.vlan.is_some(), itf.bond.is_some(), itf.bridge.is_some()];
    if kinds.iter().filter(|k| **k).count() > 1 {
        c.error("an interface is one of a VLAN, a bond or a bridge, not several");
    }
}

fn check_route(c: &mut Checker, r: &crate::model::Route) {
    if r.to.is_empty() {
        return c.key("to", |c| {
            c.error("missing: the destination (ADDRESS/PREFIX or `default`)")
        });
    }
    let to_v6 = if r.to == "default" {
        None
    } else {
        match check_cidr(&r.to) {
            Ok(()) => Some(r.to.contains(':')),
            Err(e) => {
                c.key("to", |c| c.error(e));
                return;
            }
        }
    };
    if let Some(v) = &r.via {
        c.key("via", |c| match v.parse::<IpAddr>() {
            Err(_) => c.error(format!("expected an IP address, found `{v}`")),
            Ok(ip) if to_v6.is_some_and(|six| six != ip.is_ipv6()) => {
                c.error("the gateway and the destination are not of the same IP version")
            }
            Ok(_) => {}
        });
    } else if r.to == "default" {
        c.key("via", |c| {
            c.error("a default route needs `via` (the gateway)")
        });
    }
}

/// `ADDRESS/PREFIX`, IPv4 or IPv6.
pub fn check_cidr(a: &str) -> Result<(), String> {
    let (ip, prefix) = a
        .split_once('/')
        .ok_or_else(|| format!("expected ADDRESS/PREFIX like 192.168.1.10/24, found `{a}`"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("`{ip}` is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok(()),
        _ => Err(format!("prefix length `{prefix}` must be 0 to {max}")),
    }
}

/// A MAC address: six hex pairs separated by `:` (or `-`).
pub fn check_mac(m: &str) -> Result<(), String> {
    let parts: Vec<&str> = m.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a MAC address like 52:54:00:12:34:56, found `{m}`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bond, Bridge, Route};

    fn check(itf: &Interface) -> Vec<String> {
        let mut c = Checker {
            out: Vec::new(),
            path: Vec::new(),
        };
        check_interface(&mut c, itf);
        c.out
            .into_iter()
            .map(|f| format!("{}: {}", crate::node::path_string(&f.path), f.message))
            .collect()
    }

    #[test]
    fn routes_macs_bridges_and_bond_options() {
        let itf = Interface {
            name: "lan".into(),
            mac: Some("52:54:00:zz:00:01".into()),
            routes: vec![
                Route {
                    to: "default".into(),
                    ..Route::default()
                },
                Route {
                    to: "10.0.0.0/8".into(),
                    via: Some("fd00::1".into()),
                    ..Route::default()
                },
                Route {
                    to: "::/0".into(),
                    via: Some("fd00::1".into()),
                    ..Route::default()
                },
            ],
            ..Interface::default()
        };
        assert_eq!(
            check(&itf),
            [
                "mac: expected a MAC address like 52:54:00:12:34:56, found `52:54:00:zz:00:01`",
                "routes[0].via: a default route needs `via` (the gateway)",
                "routes[1].via: the gateway and the destination are not of the same IP version",
            ]
        );
        let br = Interface {
            name: "br0".into(),
            bridge: Some(Bridge::default()),
            bond: Some(Bond {
                interfaces: vec!["eth0".into()],
                lacp_rate: Some("medium".into()),
                primary: Some("eth1".into()),
                ..Bond::default()
            }),
            ..Interface::default()
        };
        assert_eq!(
            check(&br),
            [
                "bond.lacp_rate: expected slow or fast, found `medium`",
                "bond.primary: `eth1` is not one of the bond's interfaces",
                "bridge.interfaces: a bridge needs at least one port",
                ": an interface is one of a VLAN, a bond or a bridge, not several",
            ]
        );
        let glob = Interface {
            name: "en*".into(),
            rename: Some(true),
            ..Interface::default()
        };
        assert_eq!(
            check(&glob),
            [
                "name: a name with `*`, `?` or `[` matches devices; a VLAN, bond, bridge or renamed device needs a plain name",
                "rename: `rename` needs `mac`: the device to give the name to",
            ]
        );
        assert!(check(&Interface {
            name: "en*".into(),
            ..Interface::default()
        })
        .is_empty());
    }
}
