use super::*;
use crate::render;
use crate::routes::{answer, Reply};
use std::path::Path;

/// The inventory of docs/netboot.md's example, in small.
pub const FARM: &str = r#"
farm:
  url: http://10.0.2.2:8080
cluster:
  server_url: https://10.0.2.2:6443
  token: K10abc::server:secret
dhcp:
  interface: rkosbr0
  range: 192.168.77.100,192.168.77.150,1h
kernel_args: ["console=ttyS0,115200"]
tags:
  gpu:
    labels: {nvidia.com/gpu.present: "true"}
    taints: [nvidia.com/gpu=true:NoSchedule]
    kernel_args: [nouveau.modeset=0]
    config:
      rkos:
        sysctls:
          vm.max_map_count: "262144"
pools:
  compute:
    tags: [gpu]
    labels: {tier: batch}
    nodes:
      - name: c01
        macs: ["52:54:00:00:00:01", "52-54-00-00-01-01"]
        ip: 192.168.77.21
      - name: c02
        macs: [52:54:00:00:00:02]
  spare:
    catch_all: true
    name_prefix: spare
    taints: [rkos.io/unassigned=true:NoSchedule]
"#;

fn inv() -> Inventory {
    Inventory::parse("farm.yaml", FARM).unwrap_or_else(|e| panic!("{}", render::describe(&e)))
}

fn errors(text: &str) -> Vec<String> {
    Inventory::parse("farm.yaml", text)
        .expect_err("the inventory should be refused")
        .iter()
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn nodes_by_any_of_their_macs_with_pool_and_tags_resolved() {
    let inv = inv();
    let a = inv.lookup("52:54:00:00:00:01").unwrap();
    let b = inv.lookup("52-54-00-00-01-01").unwrap();
    assert_eq!((a.name.as_str(), b.name.as_str()), ("c01", "c01"));
    assert_eq!(b.mac, "52:54:00:00:01:01");
    assert_eq!(a.pool, "compute");
    assert_eq!(a.ip, Some("192.168.77.21".parse().unwrap()));
    assert_eq!(
        a.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        [
            "farm.rkos.io/pool=compute",
            "nvidia.com/gpu.present=true",
            "tier=batch"
        ]
    );
    assert_eq!(a.taints, ["nvidia.com/gpu=true:NoSchedule"]);
    assert_eq!(a.kernel_args, ["console=ttyS0,115200", "nouveau.modeset=0"]);
    assert_eq!(a.fragments.len(), 1);
    assert!(!a.catch_all);
    let c = inv.lookup("52:54:00:00:00:02").unwrap();
    assert_eq!((c.name.as_str(), c.ip), ("c02", None));
}

#[test]
fn an_unknown_mac_gets_the_catch_all_pool_named_from_the_mac() {
    let inv = inv();
    let n = inv.lookup("52:54:00:AA:BB:CC").unwrap();
    assert_eq!(n.name, "spare-525400aabbcc");
    assert_eq!(n.pool, "spare");
    assert!(n.catch_all);
    assert_eq!(n.taints, ["rkos.io/unassigned=true:NoSchedule"]);
    assert_eq!(n.labels["farm.rkos.io/pool"], "spare");
    // Without a catch-all pool, nothing.
    let text = FARM.replace("catch_all: true\n    name_prefix: spare\n", "");
    let inv = Inventory::parse("farm.yaml", &text).unwrap();
    assert_eq!(inv.lookup("52:54:00:aa:bb:cc"), None);
    assert_eq!(inv.lookup("not a mac"), None);
}

#[test]
fn a_mac_in_two_pools_is_an_error_naming_both_places() {
    let text = FARM.replace("macs: [52:54:00:00:00:02]", "macs: [52:54:00:00:01:01]");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("farm.yaml:29:") && e[0].contains("pools.compute.nodes[1].macs[0]"),
        "{e:?}"
    );
    assert!(
        e[0].contains("also at pools.compute.nodes[0].macs[1]"),
        "{e:?}"
    );
    // Across pools too.
    let text = FARM.replace(
        "    taints: [rkos.io/unassigned=true:NoSchedule]\n",
        "    taints: [rkos.io/unassigned=true:NoSchedule]\n    nodes:\n      - name: s1\n        macs: [52:54:00:00:00:01]\n",
    );
    let e = errors(&text);
    assert!(
        e.iter().any(|m| m.contains("pools.spare.nodes[0].macs[0]")
            && m.contains("MAC 52:54:00:00:00:01 is also at pools.compute")),
        "{e:?}"
    );
}

#[test]
fn errors_have_line_column_and_path() {
    let e = errors(&FARM.replace("ip: 192.168.77.21", "ip: 192.168.777.21"));
    assert_eq!(
        e,
        ["farm.yaml:27:13: pools.compute.nodes[0].ip: \"192.168.777.21\" is not an IPv4 address"]
    );
    let e = errors(&FARM.replace("tags: [gpu]", "tags: [gpu, fpga]"));
    assert!(
        e[0].contains("pools.compute.tags[1]: no tag \"fpga\" (tags: gpu)"),
        "{e:?}"
    );
    let e = errors(&FARM.replace("labels: {tier: batch}", "labels: {tier: Batch Jobs}"));
    assert!(
        e[0].contains("pools.compute.labels[tier]") && e[0].contains("value `Batch Jobs`"),
        "{e:?}"
    );
    let e = errors(&FARM.replace("name: c02", "name: C02"));
    assert!(
        e[0].contains("pools.compute.nodes[1].name") && e[0].contains("upper-case"),
        "{e:?}"
    );
    let e = errors(&FARM.replace("name: c02", "name: c01"));
    assert!(
        e[0].contains("node name \"c01\" is also at pools.compute.nodes[0]"),
        "{e:?}"
    );
    let e = errors(&FARM.replace("http://10.0.2.2:8080", "http://farm.example:8080"));
    assert!(
        e[0].contains("farm.url") && e[0].contains("must be an IP address"),
        "{e:?}"
    );
    let e = errors(&FARM.replace(
        "  url: http://10.0.2.2:8080\n",
        "  url: http://10.0.2.2:8080\n  colour: blue\n",
    ));
    assert!(
        e[0].starts_with("farm.yaml:4:") && e[0].contains("unknown key `colour`"),
        "{e:?}"
    );
    let e = errors(&FARM.replace("[nvidia.com/gpu=true:NoSchedule]", "[gpu:Sometimes]"));
    assert!(
        e[0].contains("tags.gpu.taints[0]") && e[0].contains("unknown effect"),
        "{e:?}"
    );
    // Two catch-all pools; a fixed address without dnsmasq handing out addresses.
    let e = errors(&FARM.replace("tags: [gpu]\n", "tags: [gpu]\n    catch_all: true\n"));
    assert!(
        e.iter().any(|m| m.contains("only one pool can be")),
        "{e:?}"
    );
    let e = errors(&FARM.replace("  range: 192.168.77.100,192.168.77.150,1h\n", ""));
    assert!(
        e[0].contains("pools.compute.nodes[0].ip") && e[0].contains("dhcp.range"),
        "{e:?}"
    );
    let e = errors(&FARM.replace("  token: K10abc::server:secret\n", ""));
    assert!(e[0].contains("missing `token` or `token_file`"), "{e:?}");
}

fn token() -> Result<String, String> {
    Ok("K10abc::server:secret".into())
}

#[test]
fn node_config_has_name_labels_taints_token_and_fragments() {
    let inv = inv();
    let n = inv.lookup("52:54:00:00:00:01").unwrap();
    let cfg = render::node_config(&inv, &n, "K10abc::server:secret", b"s3cret").unwrap();
    // What the node reads back is what the inventory says.
    let diags = rkos_config::validate_text("config.yaml", &cfg);
    assert!(
        diags.iter().all(|d| !d.is_error()),
        "{}",
        render::describe(&diags)
    );
    let loaded = rkos_config::load(&[rkos_config::Source::new(
        rkos_config::SourceKind::BootMedium,
        "config.yaml",
        cfg.clone(),
    )]);
    let c = &loaded.config;
    assert_eq!(c.hostname.as_deref(), Some("c01"));
    assert_eq!(c.rkos.labels.get("tier").map(String::as_str), Some("batch"));
    assert_eq!(
        c.rkos.labels.get(POOL_LABEL).map(String::as_str),
        Some("compute")
    );
    assert_eq!(c.rkos.taints, ["nvidia.com/gpu=true:NoSchedule"]);
    assert_eq!(c.rkos.token.as_deref(), Some("K10abc::server:secret"));
    assert_eq!(
        c.rkos.sysctls.get("vm.max_map_count").map(String::as_str),
        Some("262144")
    );
    let pw = &c.write_files[0];
    assert_eq!(pw.path, render::NODE_PASSWORD_FILE);
    assert_eq!(
        Some(pw.content.as_str()),
        Some(render::node_password(b"s3cret", "c01").as_str())
    );
    // The password depends on the secret and the name only: stable across reboots and
    // token rotations, different per node.
    assert_ne!(
        render::node_password(b"s3cret", "c01"),
        render::node_password(b"s3cret", "c02")
    );
    assert_ne!(
        render::node_password(b"s3cret", "c01"),
        render::node_password(b"other", "c01")
    );
}

#[test]
fn a_broken_fragment_is_named_by_its_place_in_the_inventory() {
    let text = FARM.replace("vm.max_map_count: \"262144\"", "vm.max_map_count: [1, 2]");
    let inv = Inventory::parse("farm.yaml", &text).unwrap();
    let e = render::check_configs(&inv, "K10abc::server:secret");
    assert!(!e.is_empty());
    assert!(
        e[0].to_string().contains("farm.yaml:17:") && e[0].to_string().contains("tags.gpu.config"),
        "{}",
        render::describe(&e)
    );
    assert!(render::check_configs(&self::inv(), "K10abc::server:secret").is_empty());
}

#[test]
fn ipxe_scripts() {
    let inv = inv();
    let boot = render::boot_script(&inv);
    assert!(boot.starts_with("#!ipxe\n"));
    assert!(
        boot.contains("chain --autofree http://10.0.2.2:8080/nodes/${mac:hexhyp}/boot.ipxe"),
        "{boot}"
    );
    let n = inv.lookup("52:54:00:00:01:01").unwrap();
    let s = render::node_script(&inv, &n.mac, Some(&n));
    assert!(
        s.contains(
            "kernel http://10.0.2.2:8080/image/vmlinuz initrd=initrd rkos.mode=netboot \
         rkos.image=http://10.0.2.2:8080/image/ \
         rkos.config_url=http://10.0.2.2:8080/nodes/52-54-00-00-01-01/config.yaml \
         BOOTIF=01-52-54-00-00-01-01 console=ttyS0,115200 nouveau.modeset=0\n"
        ),
        "{s}"
    );
    assert!(
        s.contains("initrd http://10.0.2.2:8080/image/initrd\nboot\n"),
        "{s}"
    );
    let unknown = render::node_script(&inv, "52:54:00:99:99:99", None);
    assert!(
        unknown.contains("MAC 52:54:00:99:99:99 is in no pool") && unknown.contains("reboot"),
        "{unknown}"
    );
}

#[test]
fn dnsmasq_full_and_proxy() {
    let inv = inv();
    let d = render::dnsmasq(&inv, "/srv/rkos/tftp");
    for want in [
        "port=0\n",
        "interface=rkosbr0\nbind-interfaces\n",
        "tftp-root=/srv/rkos/tftp\n",
        "dhcp-range=192.168.77.100,192.168.77.150,1h\n",
        "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe\n",
        "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi\n",
        "dhcp-host=52:54:00:00:00:01,192.168.77.21,c01\n",
        "dhcp-host=52:54:00:00:01:01,192.168.77.21,c01\n",
        "dhcp-boot=tag:ipxe,http://10.0.2.2:8080/boot.ipxe\n",
    ] {
        assert!(d.contains(want), "{want:?} missing from:\n{d}");
    }
    assert!(
        !d.contains("52:54:00:00:00:02,"),
        "c02 has no fixed address:\n{d}"
    );
    let text = FARM
        .replace(
            "  range: 192.168.77.100,192.168.77.150,1h\n",
            "  subnet: 192.168.1.0\n",
        )
        .replace("        ip: 192.168.77.21\n", "");
    let inv = Inventory::parse("farm.yaml", &text).unwrap();
    let d = render::dnsmasq(&inv, "/tftp");
    assert!(d.contains("dhcp-range=192.168.1.0,proxy\n"), "{d}");
    assert!(
        d.contains("pxe-service=tag:!ipxe,x86PC,\"rkos (BIOS)\",undionly\n"),
        "{d}"
    );
    assert!(!d.contains("dhcp-host"), "{d}");
}

#[test]
fn the_url_space_of_the_farm() {
    let inv = inv();
    let dir = Path::new("/srv/netboot");
    let get = |p: &str| answer(&inv, dir, p, &token, b"s");
    assert!(matches!(get("/boot.ipxe"), Reply::Text { .. }));
    assert_eq!(
        get("/image/rootfs.squashfs"),
        Reply::File(dir.join("rootfs.squashfs"))
    );
    assert_eq!(
        get("/image/manifest.json.minisig"),
        Reply::File(dir.join("manifest.json.minisig"))
    );
    for bad in [
        "/image/../etc/shadow",
        "/image/",
        "/image/farm.yaml",
        "/etc/passwd",
        "/nodes/x/boot.ipxe",
        "/nodes/52-54-00-00-00-01/other",
    ] {
        assert!(matches!(get(bad), Reply::NotFound(_)), "{bad}");
    }
    match get("/nodes/52-54-00-00-00-02/config.yaml") {
        Reply::Text { body, content_type } => {
            assert_eq!(content_type, "application/yaml");
            assert!(body.contains("hostname: c02"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    match get("/nodes/52-54-00-00-00-02/boot.ipxe?x=1") {
        Reply::Text { body, .. } => assert!(body.contains("node c02"), "{body}"),
        other => panic!("{other:?}"),
    }
    // The token file cannot be read: an error for that node, not a config without a token.
    let failing = || -> Result<String, String> {
        Err("/var/lib/rancher/k3s/server/token: no such file".into())
    };
    let r = answer(
        &inv,
        dir,
        "/nodes/52-54-00-00-00-02/config.yaml",
        &failing,
        b"s",
    );
    assert!(
        matches!(r, Reply::Error(ref m) if m.contains("token")),
        "{r:?}"
    );
    let text = FARM.replace("catch_all: true\n    name_prefix: spare\n", "");
    let inv = Inventory::parse("farm.yaml", &text).unwrap();
    let r = answer(
        &inv,
        dir,
        "/nodes/52-54-00-99-99-99/config.yaml",
        &token,
        b"s",
    );
    assert!(
        matches!(r, Reply::NotFound(ref m) if m.contains("no catch-all pool")),
        "{r:?}"
    );
}
