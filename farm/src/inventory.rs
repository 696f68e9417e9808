//! The farm's inventory (`farm.yaml`): pools of nodes known by their MACs, tags that add
//! labels, taints, kernel arguments and config fragments, the cluster to join, and a
//! catch-all pool for MACs nobody listed. Read with the config's own YAML reader, so every
//! error names the file, line, column and key path as `config.yaml`'s do. The format is
//! documented in docs/netboot.md.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use serde::Deserialize;

use rkos_config::de::from_node;
use rkos_config::node::{parse_yaml, Mark, Node, PathSeg};
use rkos_config::validate::{check_hostname, check_label, check_taint, check_token};
use rkos_config::Diagnostic;
use rkos_contract::normalize_mac;

/// `farm.yaml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub farm: FarmSpec,
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub dhcp: DhcpSpec,
    /// Kernel arguments for every node (`console=ttyS0,115200`, ...).
    #[serde(default)]
    pub kernel_args: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, Tag>,
    pub pools: BTreeMap<String, Pool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FarmSpec {
    /// How nodes reach `rkos farm serve`: `http://ADDRESS:PORT` (an IP address: the
    /// initramfs has no DNS resolver).
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// The k3s server the nodes join (`https://ADDRESS:6443`).
    pub server_url: String,
    /// The join token, or the file holding it (read at each request, so a rotated token is
    /// served from the next boot on; on an rkos server node k3s's own
    /// `/var/lib/rancher/k3s/server/token`).
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<String>,
    /// A file of the farm's own secret (made on first use) from which each node's k3s node
    /// password is derived, so a rebooted node is let back in under its name.
    #[serde(default)]
    pub node_secret_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpSpec {
    /// The interface dnsmasq serves.
    #[serde(default)]
    pub interface: Option<String>,
    /// `START,END[,LEASE]`: dnsmasq hands out addresses (a network of the farm's own). Absent:
    /// proxy DHCP beside the site's DHCP server, for `subnet`.
    #[serde(default)]
    pub range: Option<String>,
    /// Proxy mode: the network dnsmasq answers PXE requests on (`192.168.50.0`).
    #[serde(default)]
    pub subnet: Option<String>,
    /// Where dnsmasq's TFTP serves iPXE from (`undionly.kpxe`, `ipxe.efi`).
    #[serde(default)]
    pub tftp_root: Option<String>,
}

/// What a tag or a pool adds to its nodes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<String>,
    #[serde(default)]
    pub kernel_args: Vec<String>,
    /// A config.yaml fragment, merged into the node's config (read from the tree: any shape).
    #[serde(default)]
    pub config: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<String>,
    #[serde(default)]
    pub kernel_args: Vec<String>,
    #[serde(default)]
    pub config: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// Unknown MACs boot as nodes of this pool, named `<name_prefix>-<MAC hex>`.
    #[serde(default)]
    pub catch_all: bool,
    #[serde(default)]
    pub name_prefix: Option<String>,
}

impl Pool {
    /// What the pool itself adds to its nodes (after its tags').
    pub fn adds(&self) -> Tag {
        Tag {
            labels: self.labels.clone(),
            taints: self.taints.clone(),
            kernel_args: self.kernel_args.clone(),
            config: self.config,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    /// Every NIC the node may boot from.
    pub macs: Vec<String>,
    /// A fixed address (a static lease in dnsmasq's full DHCP mode).
    #[serde(default)]
    pub ip: Option<String>,
}

/// A config fragment from the inventory: where it was written, and its tree.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub at: String,
    pub mark: Mark,
    pub tree: Node,
}

/// What one node boots with, all its pool's and tags' additions resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePlan {
    pub name: String,
    pub pool: String,
    /// The MAC asked for (the booting NIC), `aa:bb:..`.
    pub mac: String,
    pub ip: Option<Ipv4Addr>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<String>,
    pub kernel_args: Vec<String>,
    /// Indexes into [`Inventory::fragments`], lowest first: tags, then the pool.
    pub fragments: Vec<usize>,
    /// From the catch-all pool: its MAC is in no pool.
    pub catch_all: bool,
}

/// A checked inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub spec: Spec,
    pub fragments: Vec<Fragment>,
    /// MAC -> (pool, index of the node in it).
    by_mac: HashMap<String, (String, usize)>,
    catch_all: Option<String>,
    /// (pool, tags and pool's fragments) for each pool.
    pool_fragments: HashMap<String, Vec<usize>>,
}

/// The label every farm node gets: its pool, for node selectors (an `UpgradePlan`, a
/// DaemonSet).
pub const POOL_LABEL: &str = "farm.rkos.io/pool";

/// Collects diagnostics, each placed at the mark of its key path in the tree.
struct Checker<'a> {
    tree: &'a Node,
    source: &'a str,
    out: Vec<Diagnostic>,
}

fn seg(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

fn path_of(segs: &[&str]) -> Vec<PathSeg> {
    segs.iter()
        .map(|s| match s.parse::<usize>() {
            Ok(i) => PathSeg::Index(i),
            Err(_) => seg(s),
        })
        .collect()
}

impl Checker<'_> {
    fn error(&mut self, path: &[PathSeg], message: impl Into<String>) {
        let d = Diagnostic::error(self.source, rkos_config::node::path_string(path), message);
        self.out.push(match self.tree.mark_of(path) {
            Some(m) => d.at(&m),
            None => d,
        });
    }
}

/// Checks a URL the nodes use from the initramfs: `http://` to an IP address.
fn check_farm_url(u: &str) -> Result<(), String> {
    let rest = u.strip_prefix("http://").ok_or(
        "must be an http:// URL (the initramfs has no TLS; the image is checked by its signature)",
    )?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| {
        format!("the host {host:?} must be an IP address (the initramfs has no DNS resolver)")
    })
}

fn check_kernel_arg(a: &str) -> Result<(), String> {
    if a.is_empty() || a.chars().any(char::is_whitespace) || a.contains('"') {
        return Err(format!(
            "{a:?}: one word per entry, without spaces or quotes"
        ));
    }
    Ok(())
}

impl Inventory {
    /// Parses and checks `text` (named `source` in messages). Every problem is returned, each
    /// with its line, column and key path.
    pub fn parse(source: &str, text: &str) -> Result<Inventory, Vec<Diagnostic>> {
        let tree = parse_yaml(source, text).map_err(|d| vec![d])?;
        let spec: Spec = from_node(&tree).map_err(|e| {
            let d = Diagnostic::error(source, rkos_config::node::path_string(&e.path), e.message);
            vec![match &e.mark {
                Some(m) => d.at(m),
                None => d,
            }]
        })?;
        let mut c = Checker {
            tree: &tree,
            source,
            out: Vec::new(),
        };
        if let Err(e) = check_farm_url(&spec.farm.url) {
            c.error(&path_of(&["farm", "url"]), e);
        }
        if let Err(e) = rkos_config::validate::check_server_url(&spec.cluster.server_url) {
            c.error(&path_of(&["cluster", "server_url"]), e);
        }
        match (&spec.cluster.token, &spec.cluster.token_file) {
            (Some(_), Some(_)) => c.error(
                &path_of(&["cluster", "token_file"]),
                "give `token` or `token_file`, not both",
            ),
            (None, None) => c.error(
                &path_of(&["cluster"]),
                "missing `token` or `token_file`: the nodes need it to join",
            ),
            (Some(t), None) => {
                if let Err(e) = check_token(t) {
                    c.error(&path_of(&["cluster", "token"]), e);
                }
            }
            (None, Some(_)) => {}
        }
        for (i, a) in spec.kernel_args.iter().enumerate() {
            if let Err(e) = check_kernel_arg(a) {
                c.error(&[seg("kernel_args"), PathSeg::Index(i)], e);
            }
        }
        let full_dhcp = spec.dhcp.range.is_some();
        if spec.dhcp.range.is_some() && spec.dhcp.subnet.is_some() {
            c.error(
                &path_of(&["dhcp", "subnet"]),
                "`subnet` is for proxy DHCP; with `range` dnsmasq serves the whole network",
            );
        }

        let mut fragments = Vec::new();
        let mut tag_fragment: HashMap<&str, Option<usize>> = HashMap::new();
        for (name, tag) in &spec.tags {
            let base = [seg("tags"), PathSeg::Key(name.clone())];
            check_adds(&mut c, &base, tag);
            tag_fragment.insert(name, take_fragment(&tree, &base, &mut fragments));
        }

        let mut by_mac: HashMap<String, (String, usize)> = HashMap::new();
        let mut mac_at: HashMap<String, Vec<PathSeg>> = HashMap::new();
        let mut names: HashMap<String, Vec<PathSeg>> = HashMap::new();
        let mut ips: HashMap<Ipv4Addr, Vec<PathSeg>> = HashMap::new();
        let mut catch_all: Option<String> = None;
        let mut pool_fragments = HashMap::new();
        for (pname, pool) in &spec.pools {
            let base = vec![seg("pools"), PathSeg::Key(pname.clone())];
            if let Err(e) = check_label(POOL_LABEL, pname) {
                c.error(
                    &base,
                    format!("the pool's name is its nodes' {POOL_LABEL} label: {e}"),
                );
            }
            check_adds(&mut c, &base, &pool.adds());
            let mut frags = Vec::new();
            for (i, t) in pool.tags.iter().enumerate() {
                match tag_fragment.get(t.as_str()) {
                    Some(f) => frags.extend(*f),
                    None => {
                        let known: Vec<&str> = spec.tags.keys().map(String::as_str).collect();
                        c.error(
                            &[base.clone(), vec![seg("tags"), PathSeg::Index(i)]].concat(),
                            format!("no tag {t:?} (tags: {})", known.join(", ")),
                        );
                    }
                }
            }
            frags.extend(take_fragment(&tree, &base, &mut fragments));
            pool_fragments.insert(pname.clone(), frags);
            if pool.catch_all {
                match &catch_all {
                    Some(other) => c.error(
                        &[base.clone(), vec![seg("catch_all")]].concat(),
                        format!("pool {other:?} is already the catch-all; only one pool can be"),
                    ),
                    None => catch_all = Some(pname.clone()),
                }
            } else if pool.name_prefix.is_some() {
                c.error(
                    &[base.clone(), vec![seg("name_prefix")]].concat(),
                    "only the catch-all pool names its nodes from their MACs",
                );
            }
            if let Some(p) = &pool.name_prefix {
                if let Err(e) = check_hostname(&format!("{p}-525400000000")) {
                    c.error(&[base.clone(), vec![seg("name_prefix")]].concat(), e);
                }
            }
            for (i, node) in pool.nodes.iter().enumerate() {
                let at = [base.clone(), vec![seg("nodes"), PathSeg::Index(i)]].concat();
                if let Err(e) = check_hostname(&node.name) {
                    c.error(&[at.clone(), vec![seg("name")]].concat(), e);
                }
                if let Some(first) = names.get(&node.name) {
                    let first = rkos_config::node::path_string(first);
                    c.error(
                        &[at.clone(), vec![seg("name")]].concat(),
                        format!("node name {:?} is also at {first}", node.name),
                    );
                } else {
                    names.insert(node.name.clone(), at.clone());
                }
                if node.macs.is_empty() {
                    c.error(
                        &[at.clone(), vec![seg("macs")]].concat(),
                        "a node needs at least one MAC",
                    );
                }
                for (j, m) in node.macs.iter().enumerate() {
                    let mat = [at.clone(), vec![seg("macs"), PathSeg::Index(j)]].concat();
                    let Some(mac) = normalize_mac(m) else {
                        c.error(
                            &mat,
                            format!("{m:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"),
                        );
                        continue;
                    };
                    if let Some(first) = mac_at.get(&mac) {
                        let first = rkos_config::node::path_string(first);
                        c.error(&mat, format!("MAC {mac} is also at {first}: a MAC belongs to one node of one pool"));
                        continue;
                    }
                    mac_at.insert(mac.clone(), mat);
                    by_mac.insert(mac, (pname.clone(), i));
                }
                if let Some(ip) = &node.ip {
                    let iat = [at.clone(), vec![seg("ip")]].concat();
                    match ip.parse::<Ipv4Addr>() {
                        Err(_) => c.error(&iat, format!("{ip:?} is not an IPv4 address")),
                        Ok(_) if !full_dhcp => c.error(
                            &iat,
                            "a fixed address needs `dhcp.range` (dnsmasq handing out addresses); with proxy DHCP the site's server chooses them",
                        ),
                        Ok(a) => {
                            if let Some(first) = ips.get(&a) {
                                let first = rkos_config::node::path_string(first);
                                c.error(&iat, format!("address {a} is also at {first}"));
                            } else {
                                ips.insert(a, iat);
                            }
                        }
                    }
                }
            }
        }
        if !c.out.is_empty() {
            return Err(c.out);
        }
        Ok(Inventory {
            spec,
            fragments,
            by_mac,
            catch_all,
            pool_fragments,
        })
    }

    /// The node that boots from `mac` (any spelling), or the catch-all pool's node for a MAC
    /// no pool lists; `None` when neither.
    pub fn lookup(&self, mac: &str) -> Option<NodePlan> {
        let mac = normalize_mac(mac)?;
        let (pool_name, node, catch_all) = match self.by_mac.get(&mac) {
            Some((p, i)) => (p.clone(), Some(&self.spec.pools[p].nodes[*i]), false),
            None => (self.catch_all.clone()?, None, true),
        };
        let pool = &self.spec.pools[&pool_name];
        let name = match node {
            Some(n) => n.name.clone(),
            None => format!(
                "{}-{}",
                pool.name_prefix.as_deref().unwrap_or("rkos"),
                mac.replace(':', "")
            ),
        };
        let mut labels = BTreeMap::new();
        let mut taints: Vec<String> = Vec::new();
        let mut kernel_args = self.spec.kernel_args.clone();
        let own = pool.adds();
        let tags = pool.tags.iter().filter_map(|t| self.spec.tags.get(t));
        for adds in tags.chain(std::iter::once(&own)) {
            labels.extend(adds.labels.clone());
            for t in &adds.taints {
                if !taints.contains(t) {
                    taints.push(t.clone());
                }
            }
            kernel_args.extend(adds.kernel_args.iter().cloned());
        }
        labels.insert(POOL_LABEL.to_string(), pool_name.clone());
        Some(NodePlan {
            name,
            mac,
            ip: node
                .and_then(|n| n.ip.as_deref())
                .and_then(|ip| ip.parse().ok()),
            labels,
            taints,
            kernel_args,
            fragments: self
                .pool_fragments
                .get(&pool_name)
                .cloned()
                .unwrap_or_default(),
            pool: pool_name,
            catch_all,
        })
    }

    /// Every listed node's first MAC, for static leases and for checking every node's config.
    pub fn listed(&self) -> Vec<NodePlan> {
        let mut out: Vec<NodePlan> = self
            .spec
            .pools
            .values()
            .flat_map(|p| p.nodes.iter())
            .filter_map(|n| n.macs.first().and_then(|m| self.lookup(m)))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Every listed MAC with its node, for dnsmasq's static leases.
    pub fn macs(&self) -> Vec<(String, NodePlan)> {
        let mut out: Vec<(String, NodePlan)> = self
            .by_mac
            .keys()
            .filter_map(|m| self.lookup(m).map(|n| (m.clone(), n)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn catch_all(&self) -> Option<&str> {
        self.catch_all.as_deref()
    }
}

/// Labels, taints and kernel arguments of a tag or pool.
fn check_adds(c: &mut Checker<'_>, base: &[PathSeg], adds: &Tag) {
    for (k, v) in &adds.labels {
        if let Err(e) = check_label(k, v) {
            c.error(
                &[base, &[seg("labels"), PathSeg::Entry(k.clone())]].concat(),
                e,
            );
        }
    }
    for (i, t) in adds.taints.iter().enumerate() {
        if let Err(e) = check_taint(t) {
            c.error(&[base, &[seg("taints"), PathSeg::Index(i)]].concat(), e);
        }
    }
    for (i, a) in adds.kernel_args.iter().enumerate() {
        if let Err(e) = check_kernel_arg(a) {
            c.error(
                &[base, &[seg("kernel_args"), PathSeg::Index(i)]].concat(),
                e,
            );
        }
    }
}

/// The `config` fragment under `base`, if any, added to `fragments`; its index.
fn take_fragment(tree: &Node, base: &[PathSeg], fragments: &mut Vec<Fragment>) -> Option<usize> {
    let path = [base, &[seg("config")]].concat();
    let node = tree.lookup(&path).filter(|n| !n.is_null())?;
    fragments.push(Fragment {
        at: rkos_config::node::path_string(&path),
        mark: node.mark.clone(),
        tree: node.clone(),
    });
    Some(fragments.len() - 1)
}

#[cfg(test)]
mod tests;
