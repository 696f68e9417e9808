//! The lab plan: from a name, a shape and an image, every name and address of the lab.
//!
//! Pure: the same spec gives the same plan, so `down` finds a half-built lab's namespace and
//! interfaces from its name alone. The private network is a /24 derived from the name
//! (`10.X.Y.0/24`, X in 64..=191 from sha256 of the name), so two labs with different names
//! get different networks; the bridge in the namespace is `.1` (the nodes' gateway), the
//! host's end of the veth pair `.254`, servers `.11`..`.13`, agents from `.101`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The most agents a lab has (addresses `.101`..`.250`).
pub const MAX_AGENTS: u32 = 150;
/// The longest lab name: node host names stay well under 63 characters.
pub const MAX_NAME: usize = 24;
/// The default lab name.
pub const DEFAULT_NAME: &str = "lab";

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabSpec {
    pub name: String,
    /// 1, or 3 (embedded etcd, `cluster_init` on the first).
    pub servers: u32,
    pub agents: u32,
    /// The gold disk image (qcow2), absolute.
    pub image: PathBuf,
    pub cpus: u32,
    pub memory_mb: u32,
    /// The virtual size of each node's disk (`qemu-img` syntax; bigger than the image).
    pub disk_size: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }
}

/// One VM of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Host name, also the node's directory: `N-server-1`, `N-agent-2`.
    pub name: String,
    pub role: Role,
    /// The first of three servers starts the embedded etcd cluster.
    pub cluster_init: bool,
    pub address: Ipv4Addr,
    pub mac: String,
    /// Its tap inside the lab's namespace.
    pub tap: String,
}

/// The whole lab, decided before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub spec: LabSpec,
    /// The network namespace: `rkos-lab-N`.
    pub namespace: String,
    /// The bridge inside the namespace.
    pub bridge: String,
    /// The host's end of the veth pair (unique on the host: from the name's hash).
    pub veth_host: String,
    /// The namespace's end, a port of the bridge.
    pub veth_lab: String,
    /// `10.X.Y.0`: the network, prefix 24.
    pub network: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub host_address: Ipv4Addr,
    pub nodes: Vec<Node>,
}

/// Checks a lab name: lower-case letters, digits and `-`, starting with a letter, at most
/// [`MAX_NAME`] characters (it becomes host names and a namespace name).
pub fn check_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if name.is_empty() || name.len() > MAX_NAME || !ok_chars || !starts || name.ends_with('-') {
        return Err(Error::Invalid(format!(
            "lab name {name:?}: use 1 to {MAX_NAME} lower-case letters, digits and '-', \
             starting with a letter (it names hosts and a network namespace)"
        )));
    }
    Ok(())
}

fn digest(name: &str) -> [u8; 32] {
    Sha256::digest(format!("rkos-lab:{name}").as_bytes()).into()
}

/// The lab's /24 (its network address): `10.X.Y.0`, X in 64..=191, from the name.
pub fn network_of(name: &str) -> Ipv4Addr {
    let h = digest(name);
    Ipv4Addr::new(10, 64 + h[0] % 128, h[1], 0)
}

fn host_in(network: Ipv4Addr, last: u8) -> Ipv4Addr {
    let [a, b, c, _] = network.octets();
    Ipv4Addr::new(a, b, c, last)
}

/// A MAC address in QEMU's range, unique per lab network and host number.
fn mac_of(address: Ipv4Addr) -> String {
    let [_, b, c, d] = address.octets();
    format!("52:54:00:{b:02x}:{c:02x}:{d:02x}")
}

/// Decides the lab: checks the spec and names every part of it.
pub fn plan(spec: &LabSpec) -> Result<Plan> {
    check_name(&spec.name)?;
    if spec.servers != 1 && spec.servers != 3 {
        return Err(Error::Invalid(format!(
            "--servers {}: a lab has 1 server, or 3 (embedded etcd needs an odd quorum)",
            spec.servers
        )));
    }
    if spec.agents > MAX_AGENTS {
        return Err(Error::Invalid(format!(
            "--agents {}: at most {MAX_AGENTS}",
            spec.agents
        )));
    }
    if spec.cpus == 0 || spec.memory_mb < 512 {
        return Err(Error::Invalid(
            "each node needs at least 1 CPU and 512 MiB of memory".into(),
        ));
    }
    let network = network_of(&spec.name);
    let h = digest(&spec.name);
    let tag = format!("{:02x}{:02x}{:02x}", h[2], h[3], h[4]);
    let mut nodes = Vec::new();
    let roles = (1..=spec.servers)
        .map(|i| (Role::Server, i, 10 + i))
        .chain((1..=spec.agents).map(|i| (Role::Agent, i, 100 + i)));
    for (n, (role, i, last)) in roles.enumerate() {
        let address = host_in(network, last as u8);
        nodes.push(Node {
            name: format!("{}-{}-{i}", spec.name, role.as_str()),
            role,
            cluster_init: role == Role::Server && spec.servers > 1 && i == 1,
            address,
            mac: mac_of(address),
            tap: format!("tap{n}"),
        });
    }
    Ok(Plan {
        spec: spec.clone(),
        namespace: namespace_of(&spec.name),
        bridge: "br0".into(),
        veth_host: format!("rkl{tag}"),
        veth_lab: format!("rkl{tag}n"),
        network,
        gateway: host_in(network, 1),
        host_address: host_in(network, 254),
        nodes,
    })
}

/// The lab's network namespace.
pub fn namespace_of(name: &str) -> String {
    format!("rkos-lab-{name}")
}

impl Plan {
    /// The first server: the one agents and the other servers join.
    pub fn first_server(&self) -> &Node {
        &self.nodes[0]
    }

    /// `https://<first server>:6443`.
    pub fn server_url(&self) -> String {
        format!("https://{}:6443", self.first_server().address)
    }

    /// The network in CIDR form.
    pub fn cidr(&self) -> String {
        format!("{}/24", self.network)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node called `name`, or an error listing the lab's nodes.
    pub fn find(&self, name: &str) -> Result<&Node> {
        self.node(name).ok_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            Error::Invalid(format!(
                "lab {} has no node {name:?} (it has {})",
                self.spec.name,
                names.join(", ")
            ))
        })
    }
}

/// A node's directory under the lab's directory.
pub fn node_dir(lab_dir: &Path, node: &str) -> PathBuf {
    lab_dir.join("nodes").join(node)
}

/// A spec for the crate's tests: 2 CPUs, 2 GiB, a 20G disk of `/img/rkos.qcow2`.
#[cfg(test)]
pub(crate) fn test_spec(name: &str, servers: u32, agents: u32) -> LabSpec {
    LabSpec {
        name: name.into(),
        servers,
        agents,
        image: "/img/rkos.qcow2".into(),
        cpus: 2,
        memory_mb: 2048,
        disk_size: "20G".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_spec as spec;

    #[test]
    fn one_server_two_agents_named_and_addressed() {
        let p = plan(&spec("dev", 1, 2)).unwrap();
        let names: Vec<&str> = p.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["dev-server-1", "dev-agent-1", "dev-agent-2"]);
        let net = p.network.octets();
        assert_eq!((net[0], net[3]), (10, 0));
        assert!((64..=191).contains(&net[1]), "{net:?}");
        let last: Vec<u8> = p.nodes.iter().map(|n| n.address.octets()[3]).collect();
        assert_eq!(last, [11, 101, 102]);
        for n in &p.nodes {
            assert_eq!(n.address.octets()[..3], net[..3]);
        }
        assert_eq!(p.gateway.octets()[3], 1);
        assert_eq!(p.host_address.octets()[3], 254);
        assert!(p.nodes.iter().all(|n| !n.cluster_init));
        assert_eq!(
            p.server_url(),
            format!("https://{}:6443", p.nodes[0].address)
        );
        assert_eq!(p.namespace, "rkos-lab-dev");
    }

    #[test]
    fn three_servers_init_the_cluster_on_the_first_only() {
        let p = plan(&spec("ha", 3, 1)).unwrap();
        let servers: Vec<(&str, bool)> = p
            .nodes
            .iter()
            .filter(|n| n.role == Role::Server)
            .map(|n| (n.name.as_str(), n.cluster_init))
            .collect();
        assert_eq!(
            servers,
            [
                ("ha-server-1", true),
                ("ha-server-2", false),
                ("ha-server-3", false)
            ]
        );
        assert_eq!(p.nodes[3].name, "ha-agent-1");
    }

    #[test]
    fn macs_taps_and_addresses_are_distinct() {
        let p = plan(&spec("big", 3, MAX_AGENTS)).unwrap();
        let mut seen = std::collections::HashSet::new();
        for n in &p.nodes {
            assert!(seen.insert(n.mac.clone()), "{}", n.mac);
            assert!(seen.insert(n.tap.clone()), "{}", n.tap);
            assert!(seen.insert(n.address.to_string()), "{}", n.address);
            assert!(n.mac.starts_with("52:54:00:"));
            assert!(n.tap.len() <= 15);
        }
        assert!(!seen.contains(&p.gateway.to_string()));
        assert!(!seen.contains(&p.host_address.to_string()));
    }

    #[test]
    fn two_labs_get_their_own_network_and_host_interface() {
        let a = plan(&spec("one", 1, 0)).unwrap();
        let b = plan(&spec("two", 1, 0)).unwrap();
        assert_ne!(a.network, b.network);
        assert_ne!(a.veth_host, b.veth_host);
        assert_ne!(a.namespace, b.namespace);
        // Linux interface names are at most 15 bytes
        assert!(a.veth_host.len() <= 15 && a.veth_lab.len() <= 15);
        // and the same name gives the same plan (down finds a half-built lab by name)
        assert_eq!(a, plan(&spec("one", 1, 0)).unwrap());
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        for name in [
            "",
            "Lab",
            "1lab",
            "a_b",
            "lab-",
            "a-very-long-lab-name-indeed-x",
        ] {
            let e = plan(&spec(name, 1, 0)).unwrap_err().to_string();
            assert!(e.contains("lab name"), "{name}: {e}");
        }
        let e = plan(&spec("x", 2, 0)).unwrap_err().to_string();
        assert!(e.contains("--servers 2"), "{e}");
        let e = plan(&spec("x", 1, MAX_AGENTS + 1)).unwrap_err().to_string();
        assert!(e.contains("--agents"), "{e}");
        let mut s = spec("x", 1, 0);
        s.memory_mb = 256;
        assert!(plan(&s).is_err());
    }

    #[test]
    fn find_names_the_nodes_it_has() {
        let p = plan(&spec("dev", 1, 1)).unwrap();
        assert_eq!(p.find("dev-agent-1").unwrap().role, Role::Agent);
        let e = p.find("dev-agent-9").unwrap_err().to_string();
        assert!(e.contains("dev-server-1, dev-agent-1"), "{e}");
    }
}
