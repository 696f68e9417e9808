//! The network part of render: systemd-networkd files for `rkos.network.interfaces`
//! (whether written by hand or translated from a cloud-init seed: one model, one renderer),
//! the DHCP fallback, and wifi.

use crate::model::{Config, Interface, Route};

use super::{Rendered, RenderedFile, WPA_CONF};

const DIR: &str = "/etc/systemd/network";
const HEADER: &str = "# Written by rkos from config.yaml.\n";

/// The file name part for an interface: its name, with glob characters (`en*`) replaced.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The interfaces with the ones the config implies added: parents of VLANs, members of bonds
/// and ports of bridges need a .network of their own (naming the VLAN, bond or bridge) even
/// when the config does not list them.
fn with_implied(listed: &[Interface]) -> Vec<Interface> {
    let mut ifaces = listed.to_vec();
    let mut implied: Vec<Interface> = Vec::new();
    for itf in listed {
        let mut want = |name: &str| {
            if !ifaces.iter().any(|i| i.name == name) && !implied.iter().any(|i| i.name == name) {
                implied.push(Interface {
                    name: name.to_string(),
                    ..Interface::default()
                });
            }
        };
        if let Some(v) = &itf.vlan {
            want(&v.link);
        }
        if let Some(bd) = &itf.bond {
            bd.interfaces.iter().for_each(|m| want(m));
        }
        if let Some(br) = &itf.bridge {
            br.interfaces.iter().for_each(|m| want(m));
        }
    }
    ifaces.extend(implied);
    ifaces
}

/// `DHCP=` from `dhcp` (v4, default on without addresses) and `dhcp6` (default: as v4).
fn dhcp_value(itf: &Interface) -> &'static str {
    let v4 = itf.dhcp.unwrap_or(itf.addresses.is_empty());
    match (v4, itf.dhcp6.unwrap_or(v4)) {
        (true, true) => "yes",
        (true, false) => "ipv4",
        (false, true) => "ipv6",
        (false, false) => "no",
    }
}

/// The `[Match]` section: by the device's permanent MAC address when given (a VLAN or bond
/// on top shares the current address, not the permanent one), else by name.
fn match_section(itf: &Interface) -> String {
    match &itf.mac {
        Some(mac) => format!(
            "[Match]\nPermanentMACAddress={}\n",
            mac.to_ascii_lowercase()
        ),
        None => format!("[Match]\nName={}\n", itf.name),
    }
}

fn route_section(r: &Route) -> String {
    let mut s = String::from("\n[Route]\n");
    let to = if r.to == "default" {
        let v6 = r.via.as_deref().is_some_and(|v| v.contains(':'));
        if v6 {
            "::/0"
        } else {
            "0.0.0.0/0"
        }
    } else {
        r.to.as_str()
    };
    s.push_str(&format!("Destination={to}\n"));
    if let Some(v) = &r.via {
        s.push_str(&format!("Gateway={v}\n"));
    }
    if let Some(m) = r.metric {
        s.push_str(&format!("Metric={m}\n"));
    }
    if r.on_link == Some(true) {
        s.push_str("GatewayOnLink=yes\n");
    }
    s
}

pub(super) fn network(cfg: &Config, r: &mut Rendered) {
    let ifaces = with_implied(&cfg.rkos.network.interfaces);
    for itf in &ifaces {
        let stem = file_stem(&itf.name);
        let vlans: Vec<&str> = ifaces
            .iter()
            .filter(|i| i.vlan.as_ref().is_some_and(|v| v.link == itf.name))
            .map(|i| i.name.as_str())
            .collect();
        let bond_of = ifaces.iter().find_map(|i| {
            let b = i.bond.as_ref()?;
            b.interfaces
                .contains(&itf.name)
                .then_some((i.name.as_str(), b.primary.as_deref() == Some(&itf.name)))
        });
        let bridge_of = ifaces.iter().find_map(|i| {
            let b = i.bridge.as_ref()?;
            b.interfaces.contains(&itf.name).then_some(i.name.as_str())
        });
        let mut n = format!("{HEADER}{}", match_section(itf));
        if let Some(mtu) = itf.mtu {
            n.push_str(&format!("\n[Link]\nMTUBytes={mtu}\n"));
        }
        n.push_str("\n[Network]\n");
        if let Some((bond, primary)) = bond_of {
            n.push_str(&format!("Bond={bond}\n"));
            if primary {
                n.push_str("PrimarySlave=yes\n");
            }
        } else if let Some(bridge) = bridge_of {
            n.push_str(&format!("Bridge={bridge}\n"));
        } else {
            n.push_str(&format!("DHCP={}\n", dhcp_value(itf)));
            for a in &itf.addresses {
                n.push_str(&format!("Address={a}\n"));
            }
            if let Some(g) = &itf.gateway {
                n.push_str(&format!("Gateway={g}\n"));
            }
            for d in &itf.dns {
                n.push_str(&format!("DNS={d}\n"));
            }
            if !itf.domains.is_empty() {
                n.push_str(&format!("Domains={}\n", itf.domains.join(" ")));
            }
        }
        for v in &vlans {
            n.push_str(&format!("VLAN={v}\n"));
        }
        if bond_of.is_none() && bridge_of.is_none() {
            for route in &itf.routes {
                n.push_str(&route_section(route));
            }
        }
        r.files.push(RenderedFile::new(
            &format!("{DIR}/10-rkos-{stem}.network"),
            0o644,
            n,
        ));
        r.files.extend(link_file(itf));
        if let Some(netdev) = netdev(itf) {
            r.files.push(RenderedFile::new(
                &format!("{DIR}/10-rkos-{stem}.netdev"),
                0o644,
                netdev,
            ));
        }
    }
    r.files.push(RenderedFile::new(
        &format!("{DIR}/80-rkos-dhcp.network"),
        0o644,
        "# Written by rkos: DHCP on every wired interface the config does not name.\n[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n",
    ));
    wifi(cfg, r);
}

/// The `.link` that renames a device matched by its MAC (`rename`).
fn link_file(itf: &Interface) -> Option<RenderedFile> {
    let (Some(mac), Some(true)) = (&itf.mac, itf.rename) else {
        return None;
    };
    let link = format!(
        "{HEADER}[Match]\nPermanentMACAddress={}\n\n[Link]\nName={}\n",
        mac.to_ascii_lowercase(),
        itf.name
    );
    Some(RenderedFile::new(
        &format!("{DIR}/10-rkos-{}.link", file_stem(&itf.name)),
        0o644,
        link,
    ))
}

/// The `.link` files of the config: udev applies them as devices appear, so rkos-init writes
/// them into the new root before udev's first coldplug renames the devices its own way
/// (`rkos config apply` writes the same files again, unchanged). A rename cannot apply to a
/// device that is up: one asked for later takes effect at the next boot.
pub fn link_files(cfg: &Config) -> Vec<RenderedFile> {
    cfg.rkos
        .network
        .interfaces
        .iter()
        .filter_map(link_file)
        .collect()
}

/// The `.netdev` of a VLAN, bond or bridge.
fn netdev(itf: &Interface) -> Option<String> {
    let head = |kind: &str| format!("{HEADER}[NetDev]\nName={}\nKind={kind}\n", itf.name);
    if let Some(v) = &itf.vlan {
        return Some(format!("{}\n[VLAN]\nId={}\n", head("vlan"), v.id));
    }
    if let Some(bd) = &itf.bond {
        let mut params = String::new();
        if let Some(mode) = &bd.mode {
            params.push_str(&format!("Mode={mode}\n"));
        }
        if let Some(ms) = bd.mii_monitor_interval {
            params.push_str(&format!("MIIMonitorSec={ms}ms\n"));
        }
        if let Some(rate) = &bd.lacp_rate {
            params.push_str(&format!("LACPTransmitRate={rate}\n"));
        }
        if let Some(p) = &bd.transmit_hash_policy {
            params.push_str(&format!("TransmitHashPolicy={p}\n"));
        }
        let mut nd = head("bond");
        if !params.is_empty() {
            nd.push_str(&format!("\n[Bond]\n{params}"));
        }
        return Some(nd);
    }
    if let Some(br) = &itf.bridge {
        let mut nd = head("bridge");
        if let Some(stp) = br.stp {
            nd.push_str(&format!(
                "\n[Bridge]\nSTP={}\n",
                if stp { "yes" } else { "no" }
            ));
        }
        return Some(nd);
    }
    None
}

fn wifi(cfg: &Config, r: &mut Rendered) {
    if cfg.rkos.wifi.is_empty() {
        return;
    }
    r.files.push(RenderedFile::new(
        &format!("{DIR}/20-rkos-wlan0.network"),
        0o644,
        "# Written by rkos: wifi (see wpa_supplicant-wlan0.conf).\n[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\n",
    ));
    let mut w = String::from(
        "# Written by rkos from config.yaml.\nctrl_interface=/run/wpa_supplicant\nupdate_config=0\n",
    );
    for net in &cfg.rkos.wifi {
        w.push_str("\nnetwork={\n");
        w.push_str(&format!("\tssid={}\n", wpa_string(&net.name)));
        if let Some(p) = &net.passphrase {
            let hex = p.len() == 64 && p.chars().all(|c| c.is_ascii_hexdigit());
            if hex {
                w.push_str(&format!("\tpsk={p}\n"));
            } else {
                w.push_str(&format!("\tpsk={}\n", wpa_string(p)));
            }
            w.push_str("\tkey_mgmt=WPA-PSK\n");
        } else {
            w.push_str("\tkey_mgmt=NONE\n");
        }
        w.push_str("}\n");
    }
    r.files.push(RenderedFile::new(WPA_CONF, 0o600, w));
}

/// wpa_supplicant strings: quoted when printable without quotes, else hex (which it also
/// accepts and which needs no escaping).
fn wpa_string(v: &str) -> String {
    if v.chars()
        .all(|c| c.is_ascii_graphic() && c != '"' || c == ' ')
    {
        format!("\"{v}\"")
    } else {
        v.bytes().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bond, Bridge};

    fn rendered(ifaces: Vec<Interface>) -> Vec<(String, String)> {
        let mut cfg = Config::default();
        cfg.rkos.network.interfaces = ifaces;
        let mut r = Rendered::default();
        network(&cfg, &mut r);
        r.files
            .into_iter()
            .map(|f| {
                (
                    f.path.display().to_string(),
                    String::from_utf8(f.content).unwrap(),
                )
            })
            .collect()
    }

    fn file<'a>(files: &'a [(String, String)], name: &str) -> &'a str {
        &files
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .unwrap_or_else(|| panic!("no {name} in {files:?}"))
            .1
    }

    #[test]
    fn a_device_matched_by_mac_and_renamed_with_routes() {
        let files = rendered(vec![Interface {
            name: "lan0".into(),
            mac: Some("52:54:00:AA:BB:CC".into()),
            rename: Some(true),
            dhcp6: Some(true),
            addresses: vec!["10.0.0.5/24".into()],
            routes: vec![
                Route {
                    to: "default".into(),
                    via: Some("10.0.0.1".into()),
                    on_link: Some(true),
                    ..Route::default()
                },
                Route {
                    to: "default".into(),
                    via: Some("fd00::1".into()),
                    metric: Some(100),
                    ..Route::default()
                },
            ],
            domains: vec!["example.com".into()],
            ..Interface::default()
        }]);
        assert_eq!(
            file(&files, "10-rkos-lan0.network"),
            "# Written by rkos from config.yaml.\n[Match]\nPermanentMACAddress=52:54:00:aa:bb:cc\n\n\
             [Network]\nDHCP=ipv6\nAddress=10.0.0.5/24\nDomains=example.com\n\n\
             [Route]\nDestination=0.0.0.0/0\nGateway=10.0.0.1\nGatewayOnLink=yes\n\n\
             [Route]\nDestination=::/0\nGateway=fd00::1\nMetric=100\n"
        );
        assert_eq!(
            file(&files, "10-rkos-lan0.link"),
            "# Written by rkos from config.yaml.\n[Match]\nPermanentMACAddress=52:54:00:aa:bb:cc\n\n[Link]\nName=lan0\n"
        );
        let mut cfg = Config::default();
        cfg.rkos.network.interfaces = vec![Interface {
            name: "lan0".into(),
            mac: Some("52:54:00:AA:BB:CC".into()),
            rename: Some(true),
            ..Interface::default()
        }];
        let links = link_files(&cfg);
        assert_eq!(links.len(), 1);
        assert_eq!(
            String::from_utf8(links[0].content.clone()).unwrap(),
            file(&files, "10-rkos-lan0.link"),
            "rkos-init's copy is render's"
        );
    }

    #[test]
    fn bridges_over_bonds_and_globs() {
        let files = rendered(vec![
            Interface {
                name: "bond0".into(),
                bond: Some(Bond {
                    mode: Some("active-backup".into()),
                    interfaces: vec!["eth0".into(), "eth1".into()],
                    mii_monitor_interval: Some(100),
                    primary: Some("eth1".into()),
                    ..Bond::default()
                }),
                ..Interface::default()
            },
            Interface {
                name: "br0".into(),
                bridge: Some(Bridge {
                    interfaces: vec!["bond0".into()],
                    stp: Some(false),
                }),
                addresses: vec!["192.168.1.2/24".into()],
                ..Interface::default()
            },
            Interface {
                name: "en*".into(),
                dhcp: Some(true),
                dhcp6: Some(false),
                ..Interface::default()
            },
        ]);
        assert_eq!(
            file(&files, "10-rkos-bond0.netdev"),
            "# Written by rkos from config.yaml.\n[NetDev]\nName=bond0\nKind=bond\n\n[Bond]\nMode=active-backup\nMIIMonitorSec=100ms\n"
        );
        assert!(file(&files, "10-rkos-bond0.network").contains("[Network]\nBridge=br0\n"));
        assert!(file(&files, "10-rkos-eth1.network").contains("Bond=bond0\nPrimarySlave=yes\n"));
        assert!(!file(&files, "10-rkos-eth0.network").contains("PrimarySlave"));
        assert_eq!(
            file(&files, "10-rkos-br0.netdev"),
            "# Written by rkos from config.yaml.\n[NetDev]\nName=br0\nKind=bridge\n\n[Bridge]\nSTP=no\n"
        );
        assert!(file(&files, "10-rkos-br0.network").contains("DHCP=no\nAddress=192.168.1.2/24\n"));
        assert!(file(&files, "10-rkos-en_.network").contains("Name=en*\n\n[Network]\nDHCP=ipv4\n"));
    }
}
