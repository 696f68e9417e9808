//! The boot NIC and its address: busybox `udhcpc` (already in the initramfs for the rescue
//! shell, so DHCP costs rkos-init no code and the initramfs no bytes) gets the lease; its
//! event script only writes the lease down, and rkos-init sets the address and route with
//! busybox `ip` from it. The NIC is then handed to systemd-networkd with a `.network` file
//! that keeps the address (docs/netboot.md).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{io_err, key_values, normalize_mac, NetbootError};
use crate::log;
use crate::rescue::BUSYBOX;
use rkos_contract::paths;

/// A network interface that can boot: Ethernet, backed by a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    /// `aa:bb:..`, lower-case.
    pub mac: String,
}

/// The Ethernet interfaces under `sys_class_net` (`/sys/class/net`) that have a device
/// (not `lo`, bridges or other virtual ones), in name order.
pub fn ethernet_nics(sys_class_net: &Path) -> Vec<Nic> {
    let Ok(rd) = fs::read_dir(sys_class_net) else {
        return Vec::new();
    };
    let mut nics: Vec<Nic> = rd
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            // ARPHRD_ETHER
            if fs::read_to_string(dir.join("type")).ok()?.trim() != "1" {
                return None;
            }
            fs::symlink_metadata(dir.join("device")).ok()?;
            let mac = normalize_mac(fs::read_to_string(dir.join("address")).ok()?.trim())?;
            Some(Nic {
                name: e.file_name().to_string_lossy().into_owned(),
                mac,
            })
        })
        .collect();
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    nics
}

/// Which NICs to try: the one `BOOTIF` names, else all of them in name order.
pub fn choose(nics: &[Nic], bootif: Option<&str>) -> Vec<Nic> {
    match bootif {
        Some(mac) => nics.iter().filter(|n| n.mac == mac).cloned().collect(),
        None => nics.to_vec(),
    }
}

/// Waits up to `wait` for the boot NIC (or any NIC without `BOOTIF`): drivers were loaded by
/// the modules stage, but a device may register its interface a little later.
pub fn wait_for_nics(
    sys_class_net: &Path,
    bootif: Option<&str>,
    wait: Duration,
) -> Result<Vec<Nic>, NetbootError> {
    let start = Instant::now();
    loop {
        let all = ethernet_nics(sys_class_net);
        let chosen = choose(&all, bootif);
        if !chosen.is_empty() {
            return Ok(chosen);
        }
        if start.elapsed() >= wait {
            let found: Vec<String> = all
                .iter()
                .map(|n| format!("{} {}", n.name, n.mac))
                .collect();
            return Err(NetbootError::NoNic {
                wanted: bootif
                    .map(|m| format!("with MAC {m} (BOOTIF)"))
                    .unwrap_or_else(|| "(Ethernet)".into()),
                secs: wait.as_secs(),
                found: if found.is_empty() {
                    "none; is the NIC's driver in the initramfs?".into()
                } else {
                    found.join(", ")
                },
            });
        }
        sleep(Duration::from_millis(50));
    }
}

/// A DHCP lease, as udhcpc's event script wrote it down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub interface: String,
    pub ip: String,
    pub prefix: u8,
    pub broadcast: Option<String>,
    pub routers: Vec<String>,
    pub dns: Vec<String>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    pub lease_secs: Option<u64>,
    /// The DHCP server.
    pub server: Option<String>,
}

/// The netmask `255.255.255.0` as a prefix length (24); `None` when not contiguous.
pub fn prefix_len(mask: &str) -> Option<u8> {
    let m: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(m);
    let n = bits.leading_ones();
    (bits.checked_shl(n).unwrap_or(0) == 0).then_some(n as u8)
}

impl Lease {
    /// Reads the `key=value` lines the event script writes (udhcpc's variable names).
    pub fn parse(text: &str) -> Result<Lease, String> {
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let ip = get("ip").ok_or("the lease has no address")?;
        ip.parse::<std::net::Ipv4Addr>()
            .map_err(|_| format!("the lease's address {ip:?} is not IPv4"))?;
        let prefix = match (get("mask"), get("subnet")) {
            (Some(m), _) => m.parse().map_err(|_| format!("bad prefix length {m:?}"))?,
            (None, Some(s)) => prefix_len(s).ok_or_else(|| format!("bad netmask {s:?}"))?,
            (None, None) => 24,
        };
        let list = |k: &str| -> Vec<String> {
            get(k)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        Ok(Lease {
            interface: get("interface")
                .ok_or("the lease names no interface")?
                .to_string(),
            ip: ip.to_string(),
            prefix,
            broadcast: get("broadcast").map(str::to_string),
            routers: list("router"),
            dns: list("dns"),
            domain: get("domain").map(str::to_string),
            hostname: get("hostname").map(str::to_string),
            lease_secs: get("lease").and_then(|v| v.parse().ok()),
            server: get("serverid").map(str::to_string),
        })
    }

    /// The lease as `/run/rkos/netboot/lease` keeps it.
    pub fn to_file(&self) -> String {
        let (routers, dns) = (self.routers.join(" "), self.dns.join(" "));
        let prefix = self.prefix.to_string();
        let lease = self.lease_secs.map(|s| s.to_string()).unwrap_or_default();
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let (domain, hostname, server) =
            (opt(&self.domain), opt(&self.hostname), opt(&self.server));
        key_values(&[
            ("interface", &self.interface),
            ("ip", &self.ip),
            ("mask", &prefix),
            ("router", &routers),
            ("dns", &dns),
            ("domain", &domain),
            ("hostname", &hostname),
            ("lease", &lease),
            ("serverid", &server),
        ])
    }

    /// The busybox `ip` commands that put the lease on its interface.
    pub fn ip_commands(&self) -> Vec<Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut addr = s(&["ip", "addr", "add"]);
        addr.push(format!("{}/{}", self.ip, self.prefix));
        if let Some(b) = &self.broadcast {
            addr.extend(s(&["broadcast", b]));
        }
        addr.extend(s(&["dev", &self.interface]));
        let mut cmds = vec![addr];
        if let Some(r) = self.routers.first() {
            cmds.push(s(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                r,
                "dev",
                &self.interface,
            ]));
        }
        cmds
    }
}

/// udhcpc's event script: it writes the lease down for rkos-init and nothing else (the
/// address is set by rkos-init, which can report what went wrong).
const SCRIPT: &str = r#"#!/bin/busybox sh
# Written by rkos-init: udhcpc's event script. The lease is in the environment.
case "$1" in
bound|renew)
    for k in interface ip mask subnet broadcast router dns domain hostname lease serverid; do
        eval "echo $k=\"\$$k\""
    done > "$RKOS_LEASE.tmp" && /bin/busybox mv "$RKOS_LEASE.tmp" "$RKOS_LEASE"
    ;;
esac
exit 0
"#;

/// Discover packets per udhcpc run and seconds between them.
const DISCOVERS: u32 = 4;
const DISCOVER_GAP_SECS: u32 = 2;

fn busybox(args: &[String]) -> Result<(), String> {
    let out = Command::new(BUSYBOX)
        .args(args)
        .output()
        .map_err(|e| format!("{BUSYBOX}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One udhcpc run on `nic`: its lease, or what went wrong.
fn try_nic(nic: &Nic, script: &Path, lease_file: &Path) -> Result<Lease, String> {
    let _ = fs::remove_file(lease_file);
    busybox(&[
        "ip".into(),
        "link".into(),
        "set".into(),
        nic.name.clone(),
        "up".into(),
    ])?;
    let out = Command::new(BUSYBOX)
        .args(["udhcpc", "-f", "-q", "-n", "-O", "hostname", "-O", "domain"])
        .args([
            "-t",
            &DISCOVERS.to_string(),
            "-T",
            &DISCOVER_GAP_SECS.to_string(),
        ])
        .arg("-i")
        .arg(&nic.name)
        .arg("-s")
        .arg(script)
        .env("RKOS_LEASE", lease_file)
        .output()
        .map_err(|e| format!("{BUSYBOX} udhcpc: {e}"))?;
    let text = fs::read_to_string(lease_file).map_err(|_| {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no offer");
        format!("{} ({}): {}", nic.name, nic.mac, last.trim())
    })?;
    Lease::parse(&text).map_err(|e| format!("{}: {e}", nic.name))
}

/// DHCP on `nics` in turn, rounds with a doubling pause (1 s .. 16 s) until `deadline`; the
/// first lease is put on its interface.
pub fn acquire(
    nics: &[Nic],
    dir: &Path,
    deadline: Instant,
    consoles: &[PathBuf],
) -> Result<(Nic, Lease), NetbootError> {
    let script = dir.join("udhcpc.script");
    fs::write(&script, SCRIPT).map_err(io_err(format!("write {}", script.display())))?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
        .map_err(io_err(format!("chmod {}", script.display())))?;
    let lease_file = dir.join("lease.new");
    let started = Instant::now();
    let mut pause = Duration::from_secs(1);
    let mut last = String::new();
    loop {
        for nic in nics {
            match try_nic(nic, &script, &lease_file) {
                Ok(lease) => {
                    for cmd in lease.ip_commands() {
                        busybox(&cmd).map_err(|e| NetbootError::NoLease {
                            nics: nic.name.clone(),
                            secs: started.elapsed().as_secs(),
                            last: e,
                        })?;
                    }
                    let _ = fs::remove_file(&lease_file);
                    return Ok((nic.clone(), lease));
                }
                Err(e) => last = e,
            }
        }
        if Instant::now() + pause >= deadline {
            let names: Vec<String> = nics
                .iter()
                .map(|n| format!("{} ({})", n.name, n.mac))
                .collect();
            return Err(NetbootError::NoLease {
                nics: names.join(", "),
                secs: started.elapsed().as_secs(),
                last,
            });
        }
        log::to_consoles(
            consoles,
            &format!(
                "rkos-init: netboot: no DHCP lease yet ({last}); trying again in {} s\n",
                pause.as_secs()
            ),
        );
        sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(16));
    }
}

/// The `.network` file that hands the boot NIC to systemd-networkd: matched by its permanent
/// MAC; `KeepConfiguration=yes` keeps the initramfs's address and route when networkd starts
/// (and a lease the farm's DHCP server cannot renew, as systemd does for a root on the
/// network: a farm outage must not take running nodes off the net); the client id is the MAC,
/// as udhcpc sends it, so networkd's own DHCP gets the same lease.
pub fn network_file(nic: &Nic) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by rkos-init: the network boot's NIC, {} at boot. Sorts after the config's\n\
         # own interfaces (10-rkos-*) and before the default (80-rkos-dhcp).",
        nic.name
    );
    let _ = write!(
        s,
        "[Match]\nPermanentMACAddress={}\n\n[Network]\nDHCP=yes\nKeepConfiguration=yes\n\n\
         [DHCPv4]\nClientIdentifier=mac\n",
        nic.mac
    );
    s
}

/// The udev `.link` file for the boot NIC. rkos-init brought the NIC up under its kernel name
/// (`eth0`); udev's default policy would rename it (`enp0s3`), which the kernel refuses for a
/// link that is up, and networkd then waits for udev forever (`networkctl` shows it
/// `pending`) and never renews the lease. So the NIC keeps the name it booted with, as a
/// diskless node's network root must; other NICs are named as usual.
pub fn link_file(nic: &Nic) -> String {
    format!(
        "# Written by rkos-init: the network boot's NIC keeps its name ({name}); renaming a link\n\
         # that is up fails and leaves it unmanaged.\n\
         [Match]\nPermanentMACAddress={mac}\n\n[Link]\nNamePolicy=\nName={name}\n\
         AlternativeNamesPolicy=database onboard slot path\nMACAddressPolicy=persistent\n",
        name = nic.name,
        mac = nic.mac
    )
}

/// Writes [`network_file`] and [`link_file`] for `nic` under `root`, where udev and networkd
/// find them once the booted system starts.
pub fn hand_over(nic: &Nic, root: &Path) -> Result<(), NetbootError> {
    for (path, text) in [
        (paths::NETBOOT_NETWORK, network_file(nic)),
        (paths::NETBOOT_LINK, link_file(nic)),
    ] {
        let path = root.join(path.trim_start_matches('/'));
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(format!("mkdir {}", dir.display())))?;
        }
        fs::write(&path, text).map_err(io_err(format!("write {}", path.display())))?;
    }
    Ok(())
}
