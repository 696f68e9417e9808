//! The hypervisor gold disk image, as a hypervisor uses it: each VM boots a copy-on-write
//! overlay of the qcow2 (made bigger, as an operator resizes the disk) with its own
//! cloud-init seed, written the way the tools write them.
//!
//! Three boots, one QEMU at a time:
//! 1. clone A, BIOS, a NoCloud seed as cloud-localds writes it (ISO 9660 `cidata` on a
//!    virtio disk; network-config version 2 with `match`/`set-name`): the static address is
//!    on the renamed interface, the default route and DNS are set, the host name is the
//!    meta-data's, the console logs in with the `chpasswd` password, SSH from the host (a
//!    forwarded port to the static address) with the key of the first `users:` entry, and
//!    `RKOS_DATA` grew to the bigger disk;
//! 2. clone B, UEFI, a NoCloud seed as Proxmox writes it (ISO 9660 `cidata` on a CD-ROM;
//!    network-config version 1; `user:`/`password:`/`users: [default]`), without a host
//!    name. B's disk is a copy-on-write overlay of A's after A powered off (a clone of a
//!    disk that has booted, as when an operator clones a VM rather than the gold image): the
//!    same checks, and B is a node of its own, made new for its new instance-id: other SSH
//!    host keys, machine id and default host name than A, the default name in use;
//! 3. clone B rebooted: its host keys, machine id and host name are still its own.
//!
//! Needs RKOS_DISK_IMAGE (the stand-in qcow2: `make K3S_STANDIN=1 disk-image`), QEMU, OVMF,
//! qemu-img, xorriso and an ssh client. Built with the `qemu` feature.

use anyhow::{ensure, Context, Result};
use rkos_tests::host::{disk_image, free_port, qcow2_overlay, ssh, ssh_keygen};
use rkos_tests::qemu::{ovmf_vars, Arch, Boot, Extras, Forward, Vm, VmConfig};
use rkos_tests::seed::make_seed_iso;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(480);
const CMD: Duration = Duration::from_secs(120);
const A_PASSWORD: &str = "clone-a-console-pw";
/// Proxmox writes the password hashed: `openssl passwd -5 -salt px0vmSalt42 proxmox-pw`.
const B_PASSWORD: &str = "proxmox-pw";
const B_HASH: &str = "$5$px0vmSalt42$eZ9HJWQBO2GPpqPda0NXWgKgcYQr7gScNQxWlfkuKLD";

/// A copy-on-write overlay of `image` (the gold image, or a clone's disk), of `size` (bigger
/// than the image: the disk an operator gives the VM).
fn overlay(image: &Path, dir: &Path, name: &str, size: &str) -> Result<PathBuf> {
    let o = dir.join(format!("{name}.qcow2"));
    qcow2_overlay(image, "qcow2", &o, Some(size))?;
    Ok(o)
}

/// What makes a node itself, read on its console.
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    host_key: String,
    machine_id: String,
    default_hostname: String,
    hostname: String,
}

fn json_field(json: &str, key: &str) -> Result<String> {
    let re = regex::Regex::new(&format!(r#""{key}"\s*:\s*("([^"]*)"|true|false|null)"#))?;
    let c = re
        .captures(json)
        .with_context(|| format!("no {key} in {json}"))?;
    Ok(c.get(2).map_or(&c[1], |m| m.as_str()).to_string())
}

/// The seed loads without errors: none on the login prompt (`/run/rkos/config-errors`).
fn no_config_errors(vm: &mut Vm) -> Result<()> {
    let errors = vm.run_ok("cat /run/rkos/config-errors 2>/dev/null || true", CMD)?;
    ensure!(errors.trim().is_empty(), "config errors:\n{errors}");
    Ok(())
}

fn identity(vm: &mut Vm) -> Result<(Identity, String)> {
    let report = vm.run_ok("cat /run/rkos/identity.json", CMD)?;
    let id = Identity {
        // the first boot makes the keys while the console is already up: wait for them
        host_key: vm
            .run_ok(
                "sudo systemctl start rkos-ssh-keygen.service; \
                 cut -d' ' -f2 /etc/ssh/keys/ssh_host_ed25519_key.pub",
                CMD,
            )?
            .trim()
            .to_string(),
        machine_id: vm.run_ok("cat /etc/machine-id", CMD)?.trim().to_string(),
        default_hostname: json_field(&report, "default_hostname")?,
        hostname: vm.run_ok("hostname", CMD)?.trim().to_string(),
    };
    ensure!(
        id.host_key.len() > 40 && id.machine_id.len() == 32,
        "no identity: {id:?}"
    );
    ensure!(
        json_field(&report, "machine_id")? == id.machine_id,
        "identity.json and /etc/machine-id differ: {report}"
    );
    Ok((id, report))
}

/// The network the seed asked for: `ip` on `iface`, the default route through QEMU's
/// gateway, and QEMU's DNS server with the search domain.
fn check_network(vm: &mut Vm, iface: &str, ip: &str) -> Result<()> {
    let addr = vm.run_ok(&format!("ip -o -4 addr show dev {iface}"), CMD)?;
    ensure!(addr.contains(&format!("inet {ip}/24")), "{iface}: {addr}");
    let route = vm.run_ok("ip route show default", CMD)?;
    ensure!(
        route.contains(&format!("default via 10.0.2.2 dev {iface}")),
        "default route: {route}"
    );
    let resolv = vm.run_ok("cat /run/systemd/resolve/resolv.conf", CMD)?;
    ensure!(
        resolv.contains("nameserver 10.0.2.3") && resolv.contains("rkos.test"),
        "DNS: {resolv}"
    );
    Ok(())
}

/// One VM made from the image: its overlay first, then any seed on a virtio disk.
struct Clone {
    name: &'static str,
    disks: Vec<PathBuf>,
    uefi: Option<PathBuf>,
    extras: Extras,
}

fn start(c: &Clone) -> Result<Vm> {
    Vm::start(&VmConfig {
        name: format!("disk-image-{}", c.name),
        arch: Arch::Amd64,
        boot: Boot::Disk {
            uefi_vars: c.uefi.clone(),
        },
        disks: c.disks.clone(),
        memory_mb: 1536,
        extras: c.extras.clone(),
    })
}

#[test]
fn clones_of_the_gold_image_with_their_seeds() -> Result<()> {
    let began = Instant::now();
    let image = disk_image()?;
    let t = tempfile::tempdir()?;
    let dir = t.path();
    let key = ssh_keygen(dir, "test-key")?;
    let key_file = dir.join("test-key");

    // --- clone A: BIOS, cloud-localds ------------------------------------------------------
    let seed_a = make_seed_iso(
        dir,
        "seed-a",
        "cidata",
        &[
            ("meta-data", "instance-id: clone-a\nlocal-hostname: clone-a\n"),
            (
                "network-config",
                "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: \"52:54:00:aa:00:01\"\n\
                 \x20   set-name: lan0\n    addresses: [10.0.2.50/24]\n    gateway4: 10.0.2.2\n\
                 \x20   nameservers:\n      addresses: [10.0.2.3]\n      search: [rkos.test]\n",
            ),
            (
                "user-data",
                &format!(
                    "#cloud-config\nusers:\n  - default\n  - name: ops\n    ssh_authorized_keys:\n      - {key}\n\
                     chpasswd:\n  list: |\n    ops:{A_PASSWORD}\n  expire: false\nssh_pwauth: false\n"
                ),
            ),
        ],
    )?;
    let port_a = free_port()?;
    // seed A rides on a virtio disk, as virt-install and `qemu -drive` users attach it
    let a = Clone {
        name: "a-bios",
        disks: vec![overlay(&image, dir, "clone-a", "6G")?, seed_a],
        uefi: None,
        extras: Extras {
            mac: Some("52:54:00:aa:00:01".into()),
            forwards: vec![Forward {
                host_port: port_a,
                guest: "10.0.2.50".into(),
                guest_port: 22,
            }],
            ..Extras::default()
        },
    };
    let mut vm = start(&a)?;
    vm.login("rkos", A_PASSWORD, BOOT)
        .context("clone A: the chpasswd password on the console")?;
    let a_login = vm.started.elapsed();
    check_network(&mut vm, "lan0", "10.0.2.50").context("clone A")?;
    ensure!(
        vm.run_ok("hostname", CMD)?.trim() == "clone-a",
        "clone A: host name from meta-data"
    );
    let over_ssh = ssh(&key_file, port_a, "rkos", "hostname; id -un", CMD)?;
    ensure!(
        over_ssh == "clone-a\nrkos\n",
        "clone A over SSH: {over_ssh:?}"
    );
    let data = vm.run_ok(
        "sudo systemctl start rkos-grow-data.service; lsblk -bno SIZE /dev/disk/by-label/RKOS_DATA",
        CMD,
    )?;
    let data_bytes: u64 = data.trim().parse().context(data.clone())?;
    ensure!(
        data_bytes > 3 << 30,
        "RKOS_DATA did not grow to the 6 GiB disk: {data_bytes}"
    );
    no_config_errors(&mut vm).context("clone A")?;
    let (id_a, report_a) = identity(&mut vm)?;
    ensure!(
        json_field(&report_a, "new")? == "true",
        "clone A's first boot: {report_a}"
    );
    // A powers off cleanly, so its identity is on its disk for B to inherit and drop.
    vm.send("sudo systemctl poweroff\n")?;
    vm.expect("reboot: Power down", CMD)
        .context("clone A did not power off")?;
    drop(vm);

    // --- clone B: UEFI, Proxmox, its seed on a CD-ROM ---------------------------------------
    let seed_b = make_seed_iso(
        dir,
        "seed-b",
        "cidata",
        &[
            ("meta-data", "instance-id: 6f1d2c5e9a0b47c3d8e1f2a3b4c5d6e7f8091a2b\n"),
            (
                "network-config",
                "version: 1\nconfig:\n    - type: physical\n      name: eth0\n      mac_address: '52:54:00:bb:00:02'\n\
                 \x20     subnets:\n      - type: static\n        address: '10.0.2.60'\n        netmask: '255.255.255.0'\n\
                 \x20       gateway: '10.0.2.2'\n    - type: nameserver\n      address:\n      - '10.0.2.3'\n\
                 \x20     search:\n      - 'rkos.test'\n",
            ),
            (
                "user-data",
                &format!(
                    "#cloud-config\nmanage_etc_hosts: true\nuser: rkos\npassword: {B_HASH}\nssh_authorized_keys:\n  - {key}\n\
                     chpasswd:\n  expire: False\nusers:\n  - default\npackage_upgrade: true\n"
                ),
            ),
        ],
    )?;
    let port_b = free_port()?;
    let b = Clone {
        name: "b-uefi",
        disks: vec![overlay(&a.disks[0], dir, "clone-b", "6G")?],
        uefi: Some(ovmf_vars(dir)?),
        extras: Extras {
            cdroms: vec![seed_b],
            mac: Some("52:54:00:bb:00:02".into()),
            forwards: vec![Forward {
                host_port: port_b,
                guest: "10.0.2.60".into(),
                guest_port: 22,
            }],
            ..Extras::default()
        },
    };
    let mut vm = start(&b)?;
    vm.login("rkos", B_PASSWORD, BOOT)
        .context("clone B: Proxmox's password on the console")?;
    let b_login = vm.started.elapsed();
    check_network(&mut vm, "eth0", "10.0.2.60").context("clone B")?;
    let over_ssh = ssh(&key_file, port_b, "rkos", "hostname", CMD)?;
    no_config_errors(&mut vm).context("clone B")?;
    let (id_b, report_b) = identity(&mut vm)?;
    ensure!(
        json_field(&report_b, "new")? == "true"
            && json_field(&report_b, "reason")?
                == "instance-id `clone-a` became `6f1d2c5e9a0b47c3d8e1f2a3b4c5d6e7f8091a2b`",
        "clone B's first boot, on A's disk: {report_b}"
    );
    ensure!(
        id_b.hostname == id_b.default_hostname && over_ssh.trim() == id_b.hostname,
        "clone B has no host name in its seed: it uses its default one ({id_b:?}, ssh: {over_ssh})"
    );
    ensure!(
        id_a.host_key != id_b.host_key
            && id_a.machine_id != id_b.machine_id
            && id_a.default_hostname != id_b.default_hostname,
        "two clones share an identity:\nA {id_a:?}\nB {id_b:?}"
    );

    // --- clone B again: the same instance keeps its identity --------------------------------
    vm.send("sudo systemctl reboot\n")?;
    let reboot = Instant::now();
    vm.expect(r"rkos-init: rkos \S+ started", BOOT)
        .context("clone B did not boot again")?;
    vm.login("rkos", B_PASSWORD, BOOT)?;
    let b_relogin = reboot.elapsed();
    no_config_errors(&mut vm).context("clone B rebooted")?;
    let (id_b2, report_b2) = identity(&mut vm)?;
    ensure!(
        json_field(&report_b2, "new")? == "false",
        "clone B rebooted: {report_b2}"
    );
    ensure!(
        id_b2 == id_b,
        "clone B changed across a reboot:\n{id_b:?}\n{id_b2:?}"
    );
    drop(vm);

    eprintln!(
        "disk image figures: first boot to login {:.0} s (clone A, BIOS), {:.0} s (clone B, UEFI); \
         second boot to login {:.0} s (clone B); whole test {:.0} s",
        a_login.as_secs_f64(),
        b_login.as_secs_f64(),
        b_relogin.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
