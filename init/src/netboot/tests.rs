use super::dhcp::{self, Lease, Nic};
use super::*;

#[test]
fn image_url_is_a_directory_or_the_squashfs() {
    let d = ImageUrl::parse("http://10.0.2.2:8080/image/").unwrap();
    assert_eq!(d.base, "http://10.0.2.2:8080/image");
    assert_eq!(d.file, "rootfs.squashfs");
    assert_eq!(d.manifest(), "http://10.0.2.2:8080/image/manifest.json");
    assert_eq!(ImageUrl::parse("http://10.0.2.2:8080/image").unwrap(), d);
    let f = ImageUrl::parse("http://10.0.0.1/v2/rkos-0.2.0.squashfs").unwrap();
    assert_eq!(f.base, "http://10.0.0.1/v2");
    assert_eq!(f.file, "rkos-0.2.0.squashfs");
    assert_eq!(f.image(), "http://10.0.0.1/v2/rkos-0.2.0.squashfs");
    assert_eq!(f.manifest(), "http://10.0.0.1/v2/manifest.json");
}

#[test]
fn urls_must_be_http_to_an_address() {
    assert!(check_url("k", "http://10.0.0.1/x").is_ok());
    assert!(check_url("k", "http://10.0.0.1:8080").is_ok());
    assert!(check_url("k", "http://[fd00::1]:8080/x").is_ok());
    let e = check_url("rkos.image", "https://10.0.0.1/x")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("rkos.image=\"https://10.0.0.1/x\": https:// is not supported"),
        "{e}"
    );
    let e = check_url("rkos.image", "http://farm.example:8080/x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"farm.example\" is not an IP address"), "{e}");
    assert!(check_url("k", "ftp://10.0.0.1/x").is_err());
    assert!(check_url("k", "/local/path").is_err());
}

#[test]
fn params_from_the_command_line() {
    let p = Params::parse(
        "console=ttyS0 rkos.mode=netboot rkos.image=http://10.0.2.2:9/image/ \
         rkos.config_url=http://10.0.2.2:9/nodes/${mac}/config.yaml BOOTIF=01-52-54-00-AB-cd-01 \
         rkos.netboot.timeout=120",
        "http://10.0.2.2:9/image/",
        Some("AB".repeat(32).as_str()),
    )
    .unwrap();
    assert_eq!(p.image.base, "http://10.0.2.2:9/image");
    assert_eq!(p.sha256, Some("ab".repeat(32)));
    assert_eq!(p.bootif.as_deref(), Some("52:54:00:ab:cd:01"));
    assert_eq!(p.timeout, Duration::from_secs(120));
    assert_eq!(
        p.config_url.as_deref(),
        Some("http://10.0.2.2:9/nodes/${mac}/config.yaml")
    );
    let p = Params::parse("rkos.mode=netboot", "http://10.0.0.1/i/", None).unwrap();
    assert_eq!(
        (p.bootif, p.config_url, p.timeout),
        (None, None, DEFAULT_TIMEOUT)
    );

    for (line, key) in [
        ("BOOTIF=nonsense", "BOOTIF"),
        ("rkos.netboot.timeout=0", "rkos.netboot.timeout"),
        ("rkos.netboot.timeout=9999", "rkos.netboot.timeout"),
        (
            "rkos.config_url=http://10.0.0.1/${serial}",
            "rkos.config_url",
        ),
        ("rkos.config_url=https://10.0.0.1/c", "rkos.config_url"),
    ] {
        let e = Params::parse(line, "http://10.0.0.1/i/", None).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{key}=")), "{line}: {e}");
    }
}

#[test]
fn bootif() {
    assert_eq!(
        parse_bootif("01-52-54-00-ab-cd-ef").as_deref(),
        Some("52:54:00:ab:cd:ef")
    );
    assert_eq!(
        parse_bootif("52:54:00:ab:cd:ef").as_deref(),
        Some("52:54:00:ab:cd:ef")
    );
    assert_eq!(parse_bootif("01-52-54-00"), None);
}

#[test]
fn config_url_templates() {
    let v = Vars {
        mac: "52:54:00:00:00:01".into(),
        uuid: "4c4c4544-0000".into(),
        hostname: "rkos-1a2b".into(),
    };
    assert_eq!(
        expand("http://f/n/${mac}/c.yaml?u=${uuid}&h=${hostname}", &v).unwrap(),
        "http://f/n/52:54:00:00:00:01/c.yaml?u=4c4c4544-0000&h=rkos-1a2b"
    );
    assert_eq!(expand("http://f/plain", &v).unwrap(), "http://f/plain");
    assert!(expand("http://f/${MAC}", &v)
        .unwrap_err()
        .contains("unknown variable ${MAC}"));
    assert!(expand("http://f/${mac", &v)
        .unwrap_err()
        .contains("unterminated"));
}

fn manifest(version: &str, arch: &str) -> Manifest {
    let z = "0".repeat(64);
    Manifest::parse(
        format!(
            r#"{{"version":"{version}","arch":"{arch}","files":[
            {{"name":"vmlinuz","size":1,"sha256":"{z}"}},
            {{"name":"initrd","size":1,"sha256":"{z}"}},
            {{"name":"rootfs.squashfs","size":1,"sha256":"{z}"}}]}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

#[test]
fn the_image_must_match_the_kernel_that_booted() {
    assert!(check_manifest(&manifest("0.2.0", "amd64"), "amd64", "0.2.0").is_ok());
    assert!(check_manifest(&manifest("0.2.0", "amd64"), "amd64", "").is_ok());
    let e = check_manifest(&manifest("0.2.0", "amd64"), "amd64", "0.1.0").unwrap_err();
    assert!(
        e.contains("version 0.2.0") && e.contains("version 0.1.0"),
        "{e}"
    );
    let e = check_manifest(&manifest("0.2.0", "arm64"), "amd64", "0.2.0").unwrap_err();
    assert_eq!(e, "the image is for arm64, this machine is amd64");
}

fn fake_nic(root: &std::path::Path, name: &str, ty: &str, mac: &str, device: bool) {
    let d = root.join(name);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("type"), format!("{ty}\n")).unwrap();
    fs::write(d.join("address"), format!("{mac}\n")).unwrap();
    if device {
        std::os::unix::fs::symlink("/", d.join("device")).unwrap();
    }
}

#[test]
fn nics_are_ethernet_devices_chosen_by_bootif() {
    let t = tempfile::tempdir().unwrap();
    fake_nic(t.path(), "lo", "772", "00:00:00:00:00:00", false);
    fake_nic(t.path(), "enp0s4", "1", "52:54:00:00:00:02", true);
    fake_nic(t.path(), "enp0s3", "1", "52:54:00:00:00:01", true);
    fake_nic(t.path(), "br0", "1", "52:54:00:00:00:09", false);
    fake_nic(t.path(), "ib0", "32", "80:00:00:00:00:01", true);
    let all = dhcp::ethernet_nics(t.path());
    let names: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["enp0s3", "enp0s4"]);
    assert_eq!(dhcp::choose(&all, None), all);
    assert_eq!(
        dhcp::choose(&all, Some("52:54:00:00:00:02")),
        [Nic {
            name: "enp0s4".into(),
            mac: "52:54:00:00:00:02".into()
        }]
    );
    assert!(dhcp::choose(&all, Some("52:54:00:00:00:07")).is_empty());
    let e = dhcp::wait_for_nics(
        t.path(),
        Some("52:54:00:00:00:07"),
        Duration::from_millis(60),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("with MAC 52:54:00:00:00:07 (BOOTIF)") && e.contains("enp0s3 52:54:00:00:00:01"),
        "{e}"
    );
}

#[test]
fn leases_as_udhcpc_reports_them() {
    let l = Lease::parse(
        "interface=eth0\nip=10.0.2.15\nmask=24\nsubnet=255.255.255.0\nbroadcast=10.0.2.255\n\
         router=10.0.2.2 10.0.2.3\ndns=10.0.2.3\ndomain=\nhostname=node-7\nlease=86400\n\
         serverid=10.0.2.2\n",
    )
    .unwrap();
    assert_eq!((l.ip.as_str(), l.prefix), ("10.0.2.15", 24));
    assert_eq!(l.routers, ["10.0.2.2", "10.0.2.3"]);
    assert_eq!(l.domain, None);
    assert_eq!(l.hostname.as_deref(), Some("node-7"));
    assert_eq!(l.lease_secs, Some(86400));
    assert_eq!(
        l.ip_commands(),
        [
            vec![
                "ip",
                "addr",
                "add",
                "10.0.2.15/24",
                "broadcast",
                "10.0.2.255",
                "dev",
                "eth0"
            ],
            vec!["ip", "route", "add", "default", "via", "10.0.2.2", "dev", "eth0"],
        ]
    );
    // The file rkos-init keeps reads back as the same lease.
    assert_eq!(Lease::parse(&l.to_file()).unwrap().routers, l.routers);
    assert_eq!(Lease::parse(&l.to_file()).unwrap().ip, l.ip);
    // Without udhcpc's prefix length, from the netmask; no router, no route.
    let l = Lease::parse("interface=eth1\nip=192.168.7.9\nsubnet=255.255.252.0\n").unwrap();
    assert_eq!(l.prefix, 22);
    assert_eq!(l.ip_commands().len(), 1);
    assert!(Lease::parse("interface=eth0\n").is_err());
    assert!(Lease::parse("interface=eth0\nip=fe80::1\n").is_err());
    assert_eq!(dhcp::prefix_len("255.255.255.255"), Some(32));
    assert_eq!(dhcp::prefix_len("0.0.0.0"), Some(0));
    assert_eq!(dhcp::prefix_len("255.0.255.0"), None);
}

#[test]
fn networkd_takes_the_nic_over_keeping_its_address() {
    let nic = Nic {
        name: "enp0s3".into(),
        mac: "52:54:00:00:00:01".into(),
    };
    let f = dhcp::network_file(&nic);
    assert!(
        f.contains("[Match]\nPermanentMACAddress=52:54:00:00:00:01\n"),
        "{f}"
    );
    assert!(f.contains("KeepConfiguration=yes"), "{f}");
    assert!(f.contains("[DHCPv4]\nClientIdentifier=mac\n"), "{f}");
    // It must sort between the config's interfaces and the catch-all DHCP file.
    let name = Path::new(paths::NETBOOT_NETWORK)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!("10-rkos-eth0.network" < name && name < "80-rkos-dhcp.network");
    let t = tempfile::tempdir().unwrap();
    dhcp::hand_over(&nic, t.path()).unwrap();
    let p = t.path().join("run/systemd/network/70-rkos-netboot.network");
    assert_eq!(fs::read_to_string(p).unwrap(), f);
    // udev must not rename the NIC that is up (networkd would wait for it forever): the link
    // file names it as it is, and sorts before udev's 99-default.link.
    let l = fs::read_to_string(t.path().join("run/systemd/network/70-rkos-netboot.link")).unwrap();
    assert_eq!(l, dhcp::link_file(&nic));
    assert!(
        l.contains("[Match]\nPermanentMACAddress=52:54:00:00:00:01\n"),
        "{l}"
    );
    assert!(l.contains("[Link]\nNamePolicy=\nName=enp0s3\n"), "{l}");
    let link = Path::new(paths::NETBOOT_LINK)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(link < "99-default.link");
}
