//! What the farm serves, generated from the inventory: the iPXE scripts (the generic one
//! every node chains from, and each node's own), each node's `config.yaml`, and dnsmasq's
//! configuration. Pure functions of the inventory, the token and the farm's secret.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use rkos_config::emit::{self, Options};
use rkos_config::{Diagnostic, Source, SourceKind};
use rkos_contract::cmdline::keys;
use rkos_contract::files;

use crate::inventory::{Inventory, NodePlan};

/// Where `rkos farm serve` puts the image directory (`--dir`): `/image/vmlinuz`, ...
pub const IMAGE_PATH: &str = "/image";

/// A MAC as it appears in the farm's URLs: `52-54-00-12-34-56` (iPXE's `${mac:hexhyp}`).
pub fn mac_in_url(mac: &str) -> String {
    mac.replace(':', "-")
}

fn base(inv: &Inventory) -> &str {
    inv.spec.farm.url.trim_end_matches('/')
}

/// The script every node runs first (over TFTP or HTTP): it chains to the booting NIC's own.
pub fn boot_script(inv: &Inventory) -> String {
    format!(
        "#!ipxe\n# rkos farm: chains to this NIC's own script (rkos farm serve, {base}).\n\
         chain --autofree {base}/nodes/${{mac:hexhyp}}/boot.ipxe || goto failed\n\
         :failed\necho rkos farm: no boot script for ${{mac}} from {base}; retrying in 30 s\n\
         sleep 30\nreboot\n",
        base = base(inv)
    )
}

/// The kernel command line a node boots with.
pub fn kernel_cmdline(inv: &Inventory, node: &NodePlan) -> String {
    let base = base(inv);
    let mut args = vec![
        "initrd=initrd".to_string(),
        "rkos.mode=netboot".to_string(),
        format!("{}={base}{IMAGE_PATH}/", keys::IMAGE),
        format!(
            "{}={base}/nodes/{}/config.yaml",
            keys::CONFIG_URL,
            mac_in_url(&node.mac)
        ),
        format!("{}=01-{}", keys::BOOTIF, mac_in_url(&node.mac)),
    ];
    args.extend(node.kernel_args.iter().cloned());
    args.join(" ")
}

/// A node's own iPXE script; for a MAC the farm does not know, one that says so and retries.
pub fn node_script(inv: &Inventory, mac: &str, node: Option<&NodePlan>) -> String {
    let base = base(inv);
    let Some(node) = node else {
        return format!(
            "#!ipxe\necho rkos farm: MAC {mac} is in no pool of the inventory and there is no \
             catch-all pool; retrying in 60 s\nsleep 60\nreboot\n"
        );
    };
    format!(
        "#!ipxe\n# rkos farm: node {name}, pool {pool}, MAC {mac}\n\
         echo rkos farm: booting {name} (pool {pool})\n\
         kernel {base}{IMAGE_PATH}/{kernel} {cmdline}\n\
         initrd {base}{IMAGE_PATH}/{initrd}\nboot\n",
        name = node.name,
        pool = node.pool,
        mac = node.mac,
        kernel = files::VMLINUZ,
        initrd = files::INITRD,
        cmdline = kernel_cmdline(inv, node),
    )
}

/// The k3s node password of `name`, derived from the farm's secret: a netboot node forgets
/// everything at a reboot, and k3s refuses a node that comes back under its name with
/// another password. Derived from a secret of the farm's own rather than from the join
/// token, so rotating the token does not lock every node out.
pub fn node_password(secret: &[u8], name: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"rkos farm node password\0");
    h.update(secret);
    h.update(b"\0");
    h.update(name.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Where k3s keeps a node's password.
pub const NODE_PASSWORD_FILE: &str = "/etc/rancher/node/password";

/// A node's `config.yaml`: the pool's and its tags' fragments (lowest first), then what the
/// inventory says of the node (name, cluster, labels, taints, node password), merged by the
/// config's own rules. Problems name the fragment's place in the inventory.
pub fn node_config(
    inv: &Inventory,
    node: &NodePlan,
    token: &str,
    secret: &[u8],
) -> Result<String, Vec<Diagnostic>> {
    let q = |s: &str| emit::scalar(s, true);
    let mut own = String::new();
    let _ = writeln!(own, "hostname: {}", q(&node.name));
    own.push_str("rkos:\n");
    let _ = writeln!(own, "  server_url: {}", q(&inv.spec.cluster.server_url));
    let _ = writeln!(own, "  token: {}", q(token));
    own.push_str("  labels:\n");
    for (k, v) in &node.labels {
        let _ = writeln!(own, "    {}: {}", q(k), q(v));
    }
    if !node.taints.is_empty() {
        own.push_str("  taints:\n");
        for t in &node.taints {
            let _ = writeln!(own, "    - {}", q(t));
        }
    }
    let _ = write!(
        own,
        "write_files:\n  - path: {NODE_PASSWORD_FILE}\n    permissions: \"0600\"\n    content: {}\n",
        q(&node_password(secret, &node.name))
    );

    let none = |_: &[rkos_config::node::PathSeg]| false;
    let no_comment = |_: &rkos_config::node::Node| None;
    let opts = Options {
        redact: &none,
        comment: &no_comment,
    };
    let mut sources: Vec<Source> = node
        .fragments
        .iter()
        .map(|&i| {
            let f = &inv.fragments[i];
            Source::new(
                SourceKind::BootMedium,
                format!("{} ({})", f.mark, f.at),
                emit::to_yaml(&f.tree, &opts),
            )
        })
        .collect();
    sources.push(Source::new(
        SourceKind::BootMedium,
        "(the inventory's node)",
        own,
    ));
    let loaded = rkos_config::load(&sources);
    let errors: Vec<Diagnostic> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && !d.message.contains("was left out"))
        .map(|d| {
            // The fragment is re-emitted: its own lines mean nothing in farm.yaml, so the
            // error is placed at the fragment and names the key inside it.
            let mut e = d.clone();
            e.line = None;
            e.column = None;
            e
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = format!(
        "# rkos farm: node {}, pool {}, MAC {}. Generated from the inventory by `rkos farm \
         serve`; holds the join token.\n",
        node.name, node.pool, node.mac
    );
    out.push_str(&emit::to_yaml(&loaded.tree, &opts));
    Ok(out)
}

/// Checks that every listed node, and the catch-all pool, gets a valid config: what `rkos
/// farm serve` refuses to start without.
pub fn check_configs(inv: &Inventory, token: &str) -> Vec<Diagnostic> {
    let mut nodes = inv.listed();
    if inv.catch_all().is_some() {
        nodes.extend(inv.lookup("02:00:00:00:00:00"));
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for n in nodes {
        if let Err(e) = node_config(inv, &n, token, b"check") {
            for d in e {
                if seen.insert(d.to_string()) {
                    out.push(d);
                }
            }
        }
    }
    out
}

/// dnsmasq's configuration: PXE to iPXE (TFTP), then iPXE to the farm's boot script (HTTP);
/// proxy DHCP beside the site's server unless `dhcp.range` makes dnsmasq the DHCP server,
/// with a static lease for each node the inventory gives an address.
pub fn dnsmasq(inv: &Inventory, tftp_root: &str) -> String {
    let d = &inv.spec.dhcp;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Generated by `rkos farm dnsmasq` from the inventory: legacy PXE and UEFI clients get\n\
         # iPXE over TFTP, iPXE gets the farm's boot script over HTTP ({}/boot.ipxe).",
        base(inv)
    );
    s.push_str("# No DNS: dnsmasq only answers DHCP (or proxy DHCP) and TFTP.\nport=0\n");
    if let Some(i) = &d.interface {
        let _ = writeln!(s, "interface={i}\nbind-interfaces");
    }
    s.push_str("log-dhcp\nenable-tftp\n");
    let _ = writeln!(s, "tftp-root={tftp_root}");
    s.push_str(
        "# iPXE says who it is with option 175; UEFI clients with their architecture.\n\
         dhcp-match=set:ipxe,175\ndhcp-match=set:efi64,option:client-arch,7\n\
         dhcp-match=set:efi64,option:client-arch,9\n",
    );
    match &d.range {
        Some(range) => {
            let _ = writeln!(s, "dhcp-range={range}");
            s.push_str(
                "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe\ndhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi\n",
            );
            for (mac, n) in inv.macs() {
                if let Some(ip) = n.ip {
                    let _ = writeln!(s, "dhcp-host={mac},{ip},{}", n.name);
                }
            }
        }
        None => {
            let subnet = d.subnet.as_deref().unwrap_or("0.0.0.0");
            let _ = writeln!(
                s,
                "# Proxy DHCP: the site's DHCP server gives the addresses, dnsmasq only the boot.\n\
                 dhcp-range={subnet},proxy"
            );
            s.push_str(
                "pxe-service=tag:!ipxe,x86PC,\"rkos (BIOS)\",undionly\n\
                 pxe-service=tag:!ipxe,X86-64_EFI,\"rkos (UEFI)\",ipxe.efi\n",
            );
        }
    }
    let _ = writeln!(s, "dhcp-boot=tag:ipxe,{}/boot.ipxe", base(inv));
    s
}

/// A diagnostic's text for an operator: `FILE:LINE:COL: path: message`.
pub fn describe(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| format!("{d}\n")).collect()
}
