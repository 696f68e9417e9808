//! Network config from a seed: cloud-init's `network-config` (version 1, or version 2 in
//! netplan's form) and OpenStack's `network_data.json`, translated into `rkos.network` (and
//! the node's `dns_nameservers`/`dns_search`): the same model and the same networkd renderer
//! as a hand-written `rkos.network`. When another source sets `rkos.network`, this one is not
//! used at all (see [`super::network_yields`]).

use std::net::IpAddr;

use crate::diag::Diagnostic;
use crate::load::Source;
use crate::node::{parse_yaml, Mark, Node, Value};
use crate::schema::Normalizer;

use super::tree::{self, MapB};
use super::{configdrive, netv1, netv2};

/// The rkos tree of a network source, normalised.
pub fn parse(source: &Source) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
    let doc = parse_yaml(&source.name, &source.text)?;
    let mut diags = Vec::new();
    let empty = MapB::new(&doc.mark).build();
    if doc.is_null() {
        return Ok((empty, diags));
    }
    if doc.as_map().is_none() {
        return Err(tree::error(
            &doc,
            "",
            format!(
                "network config: expected a mapping, found {}",
                tree::kind(&doc)
            ),
        ));
    }
    let net = if source.name.ends_with("network_data.json")
        || doc.get("links").is_some()
        || doc.get("networks").is_some()
    {
        configdrive::translate(&doc, &mut diags)
    } else {
        // cloud-init takes both `network: {version: ...}` and the inner mapping alone
        let (inner, prefix) = match doc.get("network") {
            Some(n) if n.as_map().is_some() => (n, "network."),
            _ => (&doc, ""),
        };
        if inner.get("config").and_then(Node::as_str) == Some("disabled") {
            return Ok((empty, diags));
        }
        let version = inner.get("version");
        match version.and_then(Node::as_str) {
            Some("1") => netv1::translate(inner, prefix, &mut diags),
            Some("2") => netv2::translate(inner, prefix, &mut diags),
            _ => {
                let at = version.unwrap_or(inner);
                return Err(tree::error(
                    at,
                    &format!("{prefix}version"),
                    "network config: expected `version: 1` or `version: 2` (cloud-init's \
                     formats) or OpenStack's network_data.json",
                ));
            }
        }
    };
    let mut norm = Normalizer::new(false);
    let tree = norm.root(net.build(&doc.mark));
    diags.extend(norm.diagnostics);
    Ok((tree, diags))
}

/// What a translator found: interfaces and the node-wide DNS.
#[derive(Default)]
pub(super) struct Net {
    pub interfaces: Vec<Node>,
    pub dns: Vec<Node>,
    pub search: Vec<Node>,
}

impl Net {
    fn build(self, mark: &Mark) -> Node {
        let mut rk = MapB::new(mark);
        if !self.interfaces.is_empty() {
            let mut network = MapB::new(mark);
            network.put("interfaces", tree::seq(self.interfaces, mark));
            rk.put("network", network.build());
        }
        if !self.dns.is_empty() {
            rk.put("dns_nameservers", tree::seq(self.dns, mark));
        }
        if !self.search.is_empty() {
            rk.put("dns_search", tree::seq(self.search, mark));
        }
        let mut root = MapB::new(mark);
        if !rk.is_empty() {
            root.put("rkos", rk.build());
        }
        root.build()
    }
}

/// One interface being built: what several subnets (v1, OpenStack) or keys (v2) add up to.
pub(super) struct Iface {
    pub name: String,
    pub mark: Mark,
    pub map: MapB,
    pub addresses: Vec<Node>,
    pub routes: Vec<Node>,
    pub dns: Vec<Node>,
    pub domains: Vec<Node>,
    pub dhcp4: Option<Node>,
    pub dhcp6: Option<Node>,
    pub gateway: Option<Node>,
}

impl Iface {
    pub fn new(name: &str, name_mark: &Mark) -> Self {
        let mut map = MapB::new(name_mark);
        map.put("name", tree::text(name, name_mark));
        Iface {
            name: name.to_string(),
            mark: name_mark.clone(),
            map,
            addresses: Vec::new(),
            routes: Vec::new(),
            dns: Vec::new(),
            domains: Vec::new(),
            dhcp4: None,
            dhcp6: None,
            gateway: None,
        }
    }

    /// A gateway: the interface's `gateway` if it has none yet, else a default route.
    pub fn add_gateway(&mut self, via: Node) {
        if self.gateway.is_none() {
            self.gateway = Some(via);
        } else {
            self.routes
                .push(route(tree::text("default", &via.mark), Some(via), None));
        }
    }

    /// Whether one of its static addresses' subnets holds `ip`.
    pub fn on_subnet(&self, ip: &str) -> bool {
        self.addresses
            .iter()
            .filter_map(|a| a.as_str())
            .any(|a| contains(a, ip))
    }

    /// The interface; DHCP is off unless the seed turned it on (cloud-init's default).
    pub fn build(mut self) -> Node {
        let m = self.mark.clone();
        let off = || tree::plain("false", &m);
        self.map.put("dhcp", self.dhcp4.unwrap_or_else(off));
        self.map.put("dhcp6", self.dhcp6.unwrap_or_else(off));
        for (k, v) in [
            ("addresses", self.addresses),
            ("routes", self.routes),
            ("dns", self.dns),
            ("domains", self.domains),
        ] {
            if !v.is_empty() {
                self.map.put(k, tree::seq(v, &m));
            }
        }
        self.map.put_opt("gateway", self.gateway);
        self.map.build()
    }
}

/// A route mapping. A default route is written for its gateway's IP version (`0.0.0.0/0`,
/// `::/0`): routes merge by destination, and an IPv4 and an IPv6 default route both stay.
pub(super) fn route(to: Node, via: Option<Node>, metric: Option<Node>) -> Node {
    let to = match (to.as_str(), via.as_ref().and_then(Node::as_str)) {
        (Some("default"), Some(v)) => {
            tree::text(if v.contains(':') { "::/0" } else { "0.0.0.0/0" }, &to.mark)
        }
        _ => to,
    };
    let mut r = MapB::new(&to.mark);
    r.put("to", to);
    r.put_opt("via", via);
    r.put_opt("metric", metric);
    r.build()
}

/// The prefix length of a netmask: dotted (`255.255.255.0`), IPv6 (`ffff:ffff::`), or the
/// length itself (`24`).
pub(super) fn prefix_len(mask: &str) -> Option<u8> {
    let mask = mask.trim();
    if let Ok(n) = mask.parse::<u8>() {
        return Some(n);
    }
    let bits: u128 = match mask.parse::<IpAddr>().ok()? {
        IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
        IpAddr::V6(v) => u128::from(v),
    };
    let ones = bits.leading_ones();
    // contiguous ones only
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// `ADDRESS/PREFIX` from an address (which may carry its prefix) and a netmask or prefix.
/// An address alone is a host address (/32, /128).
pub(super) fn cidr(address: &str, mask: Option<&str>) -> Result<String, String> {
    let address = address.trim();
    if address.contains('/') {
        return Ok(address.to_string());
    }
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("`{address}` is not an IP address"))?;
    let prefix = match mask {
        Some(m) => prefix_len(m).ok_or_else(|| format!("`{m}` is not a netmask"))?,
        None if ip.is_ipv4() => 32,
        None => 128,
    };
    Ok(format!("{ip}/{prefix}"))
}

/// A destination (`0.0.0.0` with netmask `0.0.0.0`, `10.0.0.0/8`, `default`) as rkos writes
/// it.
pub(super) fn destination(to: &str, mask: Option<&str>) -> Result<String, String> {
    let to = to.trim();
    if to == "default" {
        return Ok("default".into());
    }
    let c = cidr(to, mask)?;
    Ok(match c.as_str() {
        "0.0.0.0/0" | "::/0" => "default".into(),
        _ => c,
    })
}

/// Whether `ip` is inside the subnet of `addr` (`ADDRESS/PREFIX`).
fn contains(addr: &str, ip: &str) -> bool {
    let Some((a, p)) = addr.split_once('/') else {
        return false;
    };
    let (Ok(a), Ok(ip), Ok(p)) = (a.parse::<IpAddr>(), ip.parse::<IpAddr>(), p.parse::<u32>())
    else {
        return false;
    };
    let (a, b, width) = match (a, ip) {
        (IpAddr::V4(x), IpAddr::V4(y)) => (u128::from(u32::from(x)), u128::from(u32::from(y)), 32),
        (IpAddr::V6(x), IpAddr::V6(y)) => (u128::from(x), u128::from(y), 128),
        _ => return false,
    };
    if p > width {
        return false;
    }
    let shift = width - p;
    shift >= 128 || (a >> shift) == (b >> shift)
}

/// A YAML 1.1 boolean (`on`, `yes`, ...) as rkos writes one (`true`, `false`); anything else
/// as it is, for the schema to report.
pub(super) fn yaml_bool(n: &Node) -> Node {
    tree::boolean(n).map_or_else(|| n.clone(), |b| tree::plain(b.to_string(), &n.mark))
}

/// A list of scalars as text nodes (one scalar counts as a list of one).
pub(super) fn texts(n: &Node) -> Vec<Node> {
    tree::items(n)
        .into_iter()
        .filter(|i| matches!(i.value, Value::Scalar(_)))
        .cloned()
        .collect()
}

/// An interface name from a seed: itself when it is a valid one, else `fallback`.
pub(super) fn usable_name(name: &str, fallback: impl FnOnce() -> String) -> String {
    if !name.is_empty() && name.len() <= 15 && !name.contains(['/', ' ']) {
        name.to_string()
    } else {
        fallback()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_and_subnets() {
        assert_eq!(prefix_len("255.255.255.0"), Some(24));
        assert_eq!(prefix_len("255.255.0.255"), None);
        assert_eq!(prefix_len("ffff:ffff:ffff:ffff::"), Some(64));
        assert_eq!(prefix_len("0.0.0.0"), Some(0));
        assert_eq!(prefix_len("64"), Some(64));
        assert_eq!(
            cidr("10.0.0.5", Some("255.255.255.0")).unwrap(),
            "10.0.0.5/24"
        );
        assert_eq!(
            cidr("10.0.0.5/16", Some("255.255.255.0")).unwrap(),
            "10.0.0.5/16"
        );
        assert_eq!(cidr("fd00::5", None).unwrap(), "fd00::5/128");
        assert!(cidr("10.0.0.300", None).is_err());
        assert_eq!(destination("0.0.0.0", Some("0.0.0.0")).unwrap(), "default");
        assert_eq!(
            destination("10.1.0.0", Some("255.255.0.0")).unwrap(),
            "10.1.0.0/16"
        );
        assert!(contains("10.0.2.50/24", "10.0.2.2"));
        assert!(!contains("10.0.2.50/24", "10.0.3.2"));
        assert!(contains("fd00::5/64", "fd00::1"));
        assert!(!contains("fd00::5/64", "10.0.0.1"));
        assert!(contains("0.0.0.0/0", "1.2.3.4"));
    }
}
