//! The typed config: what the merged tree deserializes into.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The whole `config.yaml` (k3OS's schema plus rkos's additions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub hostname: Option<String>,
    /// The node's fully qualified name (cloud-init `fqdn`): `/etc/hosts` maps it to the
    /// node when `manage_etc_hosts` is on.
    pub fqdn: Option<String>,
    /// cloud-init's `manage_etc_hosts`: `true` (or `localhost`) renders `/etc/hosts` with
    /// the node's names; unset or `false` keeps the image's.
    pub manage_etc_hosts: Option<String>,
    /// Literal keys, `github:USER`, `gitlab:USER`, or an https URL serving keys.
    pub ssh_authorized_keys: Vec<String>,
    pub write_files: Vec<WriteFile>,
    pub init_cmd: Vec<String>,
    pub boot_cmd: Vec<String>,
    pub run_cmd: Vec<String>,
    pub rkos: Rkos,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteFile {
    pub path: String,
    pub content: String,
    /// `b64`, `gz`, `gz+b64` (also spelled `base64`, `gzip`, `gzip+base64`); none is plain text.
    pub encoding: Option<String>,
    /// `user:group`, `user`, or numeric `uid:gid`.
    pub owner: Option<String>,
    /// Octal, e.g. `0644`.
    pub permissions: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rkos {
    pub server_url: Option<String>,
    pub token: Option<String>,
    /// `server` or `agent`; default: agent when `server_url` is set, else server.
    pub role: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<String>,
    pub k3s_args: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// Clear text, or a crypt hash starting with `$`.
    pub password: Option<String>,
    pub modules: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub ntp_servers: Vec<String>,
    pub dns_nameservers: Vec<String>,
    /// DNS search domains for the whole node.
    pub dns_search: Vec<String>,
    pub wifi: Vec<Wifi>,
    pub data_sources: Vec<String>,
    pub install: Install,
    pub network: Network,
    pub proxy: Proxy,
    pub persistent_paths: Vec<String>,
    pub data_disks: Vec<DataDisk>,
    pub cluster_init: Option<bool>,
    pub datastore_endpoint: Option<String>,
    pub tls_san: Vec<String>,
    pub upgrade: Upgrade,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Wifi {
    pub name: String,
    pub passphrase: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Install {
    pub device: Option<String>,
    pub config_url: Option<String>,
    pub force_efi: Option<bool>,
    pub silent: Option<bool>,
    pub power_off: Option<bool>,
    /// Reboot when the install is done (`power_off` wins when both are set).
    pub reboot: Option<bool>,
    pub no_format: Option<bool>,
    pub tty: Option<String>,
    pub debug: Option<bool>,
    pub iso_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    pub interfaces: Vec<Interface>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Interface {
    /// Interface name (`eth0`, `enp1s0`; new names for VLANs, bonds and bridges). With
    /// `mac`, only the config's name for the device unless `rename` is set. A physical
    /// interface may be named by a glob (`en*`).
    pub name: String,
    /// Match the device by this MAC address instead of by name (cloud-init's
    /// `match.macaddress` / `mac_address`).
    pub mac: Option<String>,
    /// With `mac`: give the matched device the name `name` (netplan's `set-name`).
    pub rename: Option<bool>,
    /// Default: true unless `addresses` are given.
    pub dhcp: Option<bool>,
    /// DHCPv6 on its own; default: as `dhcp`.
    pub dhcp6: Option<bool>,
    /// `ADDRESS/PREFIX`.
    pub addresses: Vec<String>,
    pub gateway: Option<String>,
    /// Static routes, merged by destination.
    pub routes: Vec<Route>,
    pub dns: Vec<String>,
    /// DNS search domains reached through this interface.
    pub domains: Vec<String>,
    pub mtu: Option<u32>,
    pub vlan: Option<Vlan>,
    pub bond: Option<Bond>,
    pub bridge: Option<Bridge>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Route {
    /// Destination `ADDRESS/PREFIX`, or `default`.
    pub to: String,
    /// The gateway; none for a route on the link.
    pub via: Option<String>,
    pub metric: Option<u32>,
    /// The gateway is reachable on the link although outside the interface's subnets.
    pub on_link: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Vlan {
    pub id: u16,
    /// The parent interface.
    pub link: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bond {
    /// systemd-networkd bond mode (`active-backup`, `802.3ad`, `balance-rr`, ...).
    pub mode: Option<String>,
    pub interfaces: Vec<String>,
    /// Link monitoring interval in milliseconds (`miimon`).
    pub mii_monitor_interval: Option<u32>,
    /// 802.3ad: `slow` or `fast`.
    pub lacp_rate: Option<String>,
    /// `layer2`, `layer3+4`, `layer2+3`, `encap2+3`, `encap3+4`.
    pub transmit_hash_policy: Option<String>,
    /// active-backup: the member preferred while it is up.
    pub primary: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bridge {
    /// The ports.
    pub interfaces: Vec<String>,
    /// Spanning tree (default: off, as networkd's).
    pub stp: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Proxy {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataDisk {
    /// Where to mount it (absolute).
    pub path: String,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// Default `auto`.
    pub fs_type: Option<String>,
    /// Mount options, default `defaults`.
    pub options: Option<String>,
    /// How long the boot waits for the disk's device (seconds), default
    /// [`DataDisk::DEFAULT_WAIT_SECONDS`]: a slow USB disk may need more.
    pub wait_seconds: Option<u32>,
}

impl DataDisk {
    /// The device wait without `wait_seconds`: enough for a USB disk to enumerate, far
    /// below systemd's default 90 s.
    pub const DEFAULT_WAIT_SECONDS: u32 = 30;
    /// The longest `wait_seconds` validation takes (systemd would read 0 as "forever").
    pub const MAX_WAIT_SECONDS: u32 = 3600;

    /// How long the boot waits for the device before its mount is given up on.
    pub fn device_wait(&self) -> u32 {
        self.wait_seconds.unwrap_or(Self::DEFAULT_WAIT_SECONDS)
    }

    /// The device node the disk appears as: by label, else by UUID; `None` without either
    /// (a validation error).
    pub fn device(&self) -> Option<String> {
        match (&self.label, &self.uuid) {
            (Some(l), _) => Some(format!("/dev/disk/by-label/{l}")),
            (None, Some(u)) => Some(format!("/dev/disk/by-uuid/{}", u.to_ascii_lowercase())),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Upgrade {
    /// minisign public keys (base64) trusted to sign upgrade bundles.
    pub trusted_keys: Vec<String>,
}

/// The k3s role a config asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Agent,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Server => "server",
            Role::Agent => "agent",
        })
    }
}

impl Config {
    /// `rkos.role` if set; else a leading `server`/`agent` in `k3s_args` (k3OS did that);
    /// else agent when `server_url` is set, server otherwise.
    pub fn role(&self) -> Role {
        let explicit = self
            .rkos
            .role
            .as_deref()
            .or_else(|| self.rkos.k3s_args.first().map(String::as_str));
        match explicit {
            Some("server") => Role::Server,
            Some("agent") => Role::Agent,
            _ if self.rkos.server_url.is_some() => Role::Agent,
            _ => Role::Server,
        }
    }

    /// The node's hostname: the config's, else [`node_default_hostname`] (from the machine
    /// id of a node that has one of its own, else from the primary MAC). rkos-init sets it
    /// at boot and `rkos config apply` renders `/etc/hostname` from it.
    pub fn hostname_or_default(
        &self,
        machine_id: Option<&str>,
        primary_mac: Option<&str>,
    ) -> String {
        match self.hostname.as_deref().map(str::trim) {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => node_default_hostname(machine_id, primary_mac),
        }
    }
}

/// The MAC address the default hostname is derived from: the interface backed by a device
/// that sits first on its bus (the `device` link's target, e.g. a PCI address), with a
/// non-zero address. Ordering by bus position rather than by name gives the same answer in
/// the initramfs (`eth0`) and in the booted system (`enp0s2`), whatever the interfaces are
/// called. `sys_class_net` is normally `/sys/class/net`.
pub fn primary_mac(sys_class_net: &std::path::Path) -> Option<String> {
    let mut candidates: Vec<(std::path::PathBuf, String)> = std::fs::read_dir(sys_class_net)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let device = std::fs::canonicalize(dir.join("device")).ok()?;
            let address = std::fs::read_to_string(dir.join("address")).ok()?;
            let address = address.trim().to_string();
            (!address.is_empty() && address != "00:00:00:00:00:00").then_some((device, address))
        })
        .collect();
    candidates.sort();
    candidates.into_iter().next().map(|(_, address)| address)
}

/// The hostname used when the config sets none: `rkos-` and four hex digits derived from
/// the primary MAC address (FNV-1a over its bytes), so it is stable across reboots and
/// differs between clones. Without a MAC: `rkos-0000`.
pub fn default_hostname(primary_mac: Option<&str>) -> String {
    let Some(mac) = primary_mac else {
        return "rkos-0000".to_string();
    };
    let bytes: Vec<u8> = mac
        .split([':', '-', '.'])
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    let input: Vec<u8> = if bytes.is_empty() {
        mac.trim().to_ascii_lowercase().into_bytes()
    } else {
        bytes
    };
    let h = fnv1a(&input);
    let folded = (h >> 16) ^ (h & 0xffff);
    format!("rkos-{folded:04x}")
}

/// The default hostname of a node that has a machine id of its own (an installed node or a
/// clone of the disk image: the id is made per instance, see ARCHITECTURE.md "Identity"):
/// `rkos-` and six hex digits of the id, so clones differ even where they share a MAC address
/// (separate NAT networks), and a fleet of clones rarely meets a collision. Without an id:
/// [`default_hostname`] of the MAC.
pub fn node_default_hostname(machine_id: Option<&str>, primary_mac: Option<&str>) -> String {
    match machine_id.map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => format!("rkos-{:06x}", fnv1a(id.as_bytes()) >> 8),
        None => default_hostname(primary_mac),
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_is_stable_and_spread() {
        let a = default_hostname(Some("52:54:00:12:34:56"));
        assert_eq!(a, default_hostname(Some("52-54-00-12-34-56")));
        assert_eq!(a, default_hostname(Some("52:54:00:12:34:56")));
        assert_ne!(a, default_hostname(Some("52:54:00:12:34:57")));
        assert!(a.starts_with("rkos-") && a.len() == 9);
        assert_eq!(default_hostname(None), "rkos-0000");
    }

    #[test]
    fn a_machine_id_names_the_node() {
        let a = node_default_hostname(Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0\n"), None);
        let b = node_default_hostname(Some("0f1e2d3c4b5a69788796a5b4c3d2e1f1"), None);
        assert!(a.starts_with("rkos-") && a.len() == 11, "{a}");
        assert_ne!(a, b);
        assert_eq!(
            a,
            node_default_hostname(
                Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
                Some("52:54:00:12:34:56")
            )
        );
        // no id: the MAC's name
        assert_eq!(
            node_default_hostname(Some(" "), Some("52:54:00:12:34:56")),
            default_hostname(Some("52:54:00:12:34:56"))
        );
    }

    #[test]
    fn hostname_from_the_config_else_from_the_machine_id_else_from_the_mac() {
        let mac = Some("52:54:00:12:34:56");
        let id = Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0");
        let mut c = Config::default();
        assert_eq!(c.hostname_or_default(None, mac), default_hostname(mac));
        assert_eq!(
            c.hostname_or_default(id, mac),
            node_default_hostname(id, None)
        );
        c.hostname = Some("  ".into());
        assert_eq!(c.hostname_or_default(None, None), "rkos-0000");
        c.hostname = Some("node-7".into());
        assert_eq!(c.hostname_or_default(None, mac), "node-7");
        assert_eq!(c.hostname_or_default(id, mac), "node-7");
    }

    #[test]
    fn primary_mac_is_the_first_device_on_its_bus() {
        let d = tempfile::tempdir().unwrap();
        let net = d.path().join("class/net");
        let pci = d.path().join("devices/pci0000:00");
        std::fs::create_dir_all(&net).unwrap();
        let iface = |name: &str, mac: &str, bus_slot: Option<&str>| {
            let dir = net.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
            if let Some(slot) = bus_slot {
                let dev = pci.join(slot);
                std::fs::create_dir_all(&dev).unwrap();
                std::os::unix::fs::symlink(&dev, dir.join("device")).unwrap();
            }
        };
        assert_eq!(primary_mac(&net), None);
        iface("lo", "00:00:00:00:00:00", None);
        iface("br0", "02:00:00:00:00:01", None);
        assert_eq!(primary_mac(&net), None, "virtual interfaces do not count");
        iface("eth0", "00:00:00:00:00:00", Some("0000:00:01.0"));
        iface("wlan0", "52:54:00:aa:bb:03", Some("0000:00:04.0"));
        assert_eq!(primary_mac(&net).as_deref(), Some("52:54:00:aa:bb:03"));
        // Named after the earlier one by name, but first on the bus: it wins, in the
        // initramfs and in the booted system alike.
        iface("zz9", "52:54:00:aa:bb:02", Some("0000:00:02.0"));
        assert_eq!(primary_mac(&net).as_deref(), Some("52:54:00:aa:bb:02"));
        assert_eq!(primary_mac(&d.path().join("missing")), None);
    }
}
