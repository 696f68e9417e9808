//! Install to disk from the ISO, as a person would, on the QEMU serial console: log in,
//! `sudo os-config`, answer the questions (mistakes included), install to the empty disk,
//! reboot from the disk and find the answers in force; then persistence across a reboot,
//! and a broken slot B on trial that GRUB abandons by itself. A second test installs
//! unattended from the kernel command line and powers off. Built with the `qemu` feature;
//! RKOS_ISO names the (stand-in) ISO, as for the boot tests.

use anyhow::{ensure, Context, Result};
use rkos_tests::qemu::{extract_kernel, Boot, Vm, VmConfig};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(600);
const STEP: Duration = Duration::from_secs(120);
const CMD: Duration = Duration::from_secs(90);
const INSTALL: Duration = Duration::from_secs(900);
const DOWN: &str = "\x1b[B";
const ENTER: &str = "\r";
const PASSWORD: &str = "rkos-test-pw1";
const TOKEN: &str = "K10abcdef0123456789::server:installpass";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2pU7tVqB/RceORxdEERGk8KvkidMAmix4j5cHVIHby test@rkos";

fn iso() -> PathBuf {
    let iso = std::env::var_os("RKOS_ISO")
        .map(PathBuf::from)
        .expect("RKOS_ISO names the ISO to boot (make boot-test sets it)");
    assert!(iso.is_file(), "RKOS_ISO={} is not a file", iso.display());
    iso
}

fn blank_disk(dir: &Path, gib: u64) -> Result<PathBuf> {
    let p = dir.join("disk.img");
    std::fs::File::create(&p)?.set_len(gib << 30)?;
    Ok(p)
}

/// Types into a hidden prompt (password, token) once it is up. The prompt switches echo off
/// with TCSAFLUSH, which throws away whatever was typed before: a person waits for the
/// prompt, and so must the test on a slow emulated machine.
fn type_secret(vm: &mut Vm, text: &str) -> Result<()> {
    std::thread::sleep(Duration::from_millis(1500));
    vm.send(&format!("{text}\r"))
}

/// Waits for literal text on the console.
fn exp(vm: &mut Vm, text: &str, t: Duration) -> Result<String> {
    vm.expect(&regex::escape(text), t)
}

fn live_login(vm: &mut Vm) -> Result<()> {
    vm.expect(r"login:", BOOT).context("no login prompt")?;
    vm.expect(r"rkos@[^ ]*[:~]|\$ ", BOOT)
        .context("no shell (live autologin)")?;
    Ok(())
}

/// Boots the installed disk while the ISO stays attached, as a person picking the disk in a
/// boot menu would: QEMU's firmware starts the CD first, so at the ISO's GRUB menu this
/// opens GRUB's command line and chainloads the disk's own boot sector, which runs the
/// installed GRUB (its grub.cfg, environment block and boot counting) unchanged.
fn boot_installed(vm: &mut Vm) -> Result<()> {
    vm.expect(r"executed automatically in", BOOT)
        .context("no GRUB menu")?;
    vm.send("c")?;
    vm.expect(r"grub> ", STEP).context("no GRUB command line")?;
    vm.send("set root=(hd0)\n")?;
    vm.expect(r"grub> ", STEP)?;
    vm.send("chainloader +1\n")?;
    vm.expect(r"grub> ", STEP)?;
    vm.send("boot\n")?;
    Ok(())
}

/// An installed node: no autologin; the password set by the wizard logs in.
fn password_login(vm: &mut Vm) -> Result<()> {
    vm.expect(r"login: ", BOOT)
        .context("no login prompt on the installed system")?;
    vm.send("rkos\n")?;
    vm.expect(r"Password: ", STEP)
        .context("no password prompt")?;
    vm.send(&format!("{PASSWORD}\n"))?;
    vm.expect(r"rkos@[^ ]*[:~]|\$ ", STEP)
        .context("the password did not log in")?;
    vm.prepare_shell()
}

#[test]
fn wizard_install_reboot_persistence_and_rollback() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let disk = blank_disk(dir.path(), 8)?;
    let mut vm = Vm::start(&VmConfig {
        name: "install-wizard".into(),
        boot: Boot::Iso(iso()),
        disks: vec![disk],
        memory_mb: 2048,
    })?;
    live_login(&mut vm)?;
    vm.send("sudo TERM=vt220 os-config\n")?;

    exp(&mut vm, "What do you want to do?", STEP)?;
    vm.send(ENTER)?; // install
    exp(&mut vm, "Install to which disk?", STEP)?;
    let menu = exp(&mut vm, "vda - 8.0 GiB", STEP)?;
    ensure!(!menu.contains("sr0"), "the boot medium is offered: {menu}");
    vm.send(ENTER)?;
    exp(&mut vm, "How do you want to configure the node?", STEP)?;
    vm.send(ENTER)?; // questions
    exp(&mut vm, "GitHub users", STEP)?;
    vm.send(ENTER)?; // none (the VM may be offline)
    exp(&mut vm, "Paste an SSH public key", STEP)?;
    vm.send(&format!("{KEY}\r"))?;
    exp(&mut vm, "Password for the user rkos", STEP)?;
    type_secret(&mut vm, PASSWORD)?;
    exp(&mut vm, "Password again", STEP)?;
    type_secret(&mut vm, "not-the-same")?;
    exp(&mut vm, "The passwords differ", STEP)?;
    exp(&mut vm, "Password for the user rkos", STEP)?;
    type_secret(&mut vm, PASSWORD)?;
    exp(&mut vm, "Password again", STEP)?;
    type_secret(&mut vm, PASSWORD)?;
    exp(&mut vm, "Configure WiFi?", STEP)?;
    vm.send("n")?;
    exp(&mut vm, "Network", STEP)?;
    vm.send(ENTER)?; // DHCP
    exp(&mut vm, "Host name", STEP)?;
    vm.send(&"\x7f".repeat(12))?;
    vm.send("installed-agent\r")?;
    exp(&mut vm, "Role of this node", STEP)?;
    vm.send(DOWN)?;
    vm.send(ENTER)?; // agent
    exp(&mut vm, "Server URL", STEP)?;
    vm.send("http://10.0.2.2:6443\r")?;
    exp(&mut vm, "must use https", STEP)?;
    vm.send(&"\x7f".repeat(30))?;
    vm.send("https://10.0.2.2:6443\r")?;
    exp(&mut vm, "does not answer", STEP)?;
    exp(&mut vm, "What now?", STEP)?;
    vm.send(DOWN)?;
    vm.send(ENTER)?; // keep it
    exp(&mut vm, "Token of the cluster", STEP)?;
    type_secret(&mut vm, "")?;
    exp(&mut vm, "a token is required", STEP)?;
    exp(&mut vm, "Token of the cluster", STEP)?;
    type_secret(&mut vm, TOKEN)?;
    let summary = exp(&mut vm, "Erase ALL data on /dev/vda", STEP)?;
    for secret in [PASSWORD, "installpass"] {
        ensure!(
            !summary.contains(secret),
            "{secret} in the summary:\n{summary}"
        );
    }
    vm.send("y")?;
    exp(&mut vm, "Installed rkos", INSTALL).context("the install did not finish")?;
    exp(&mut vm, "Reboot now?", STEP)?;
    vm.send("y")?;

    boot_installed(&mut vm)?;
    vm.expect(r"rkos\.mode=disk", BOOT)
        .context("did not boot from the disk")?;
    password_login(&mut vm)?;
    let cmdline = vm.run_ok("cat /proc/cmdline", CMD)?;
    ensure!(
        cmdline.contains("rkos.mode=disk") && cmdline.contains("rkos.slot=A"),
        "{cmdline}"
    );
    ensure!(
        vm.run_ok("hostname", CMD)?.trim() == "installed-agent",
        "hostname"
    );
    let k3s = vm.run_ok("sudo cat /etc/rancher/k3s/config.yaml", CMD)?;
    ensure!(
        k3s.contains("https://10.0.2.2:6443") && k3s.contains(TOKEN),
        "k3s config:\n{k3s}"
    );
    let role = vm.run_ok("sudo cat /etc/default/k3s", CMD)?;
    ensure!(role.contains("RKOS_K3S_ROLE=agent"), "{role}");
    let keys = vm.run_ok("cat /home/rkos/.ssh/authorized_keys", CMD)?;
    ensure!(
        keys.contains("AAAAC3NzaC1lZDI1NTE5AAAAIN2pU7tVqB"),
        "authorized_keys:\n{keys}"
    );
    let mode = vm.run_ok("sudo stat -c %a /var/lib/rkos/config.yaml", CMD)?;
    ensure!(mode.trim() == "600", "config.yaml mode {mode}");

    // Persistence across a reboot.
    vm.run_ok(
        "sudo sh -c 'mkdir -p /var/lib/rancher/k3s && echo p > /var/lib/rkos/persist-test && \
         echo p > /var/lib/rancher/k3s/persist-test && echo p > /etc/persist-test' && \
         echo p > /home/rkos/persist-test",
        CMD,
    )?;
    let (usr, _) = vm.run("sudo touch /usr/persist-test", CMD)?;
    ensure!(usr != 0, "/usr is writable");
    let hostkey = vm.run_ok("sudo sha256sum /etc/ssh/ssh_host_ed25519_key.pub", CMD)?;
    vm.send("sudo systemctl reboot\n")?;
    boot_installed(&mut vm)?;
    password_login(&mut vm).context("after the reboot")?;
    for p in [
        "/var/lib/rkos/persist-test",
        "/var/lib/rancher/k3s/persist-test",
        "/home/rkos/persist-test",
    ] {
        vm.run_ok(&format!("sudo test -f {p}"), CMD)
            .with_context(|| format!("{p} did not survive"))?;
    }
    let (etc, _) = vm.run("test -e /etc/persist-test", CMD)?;
    ensure!(etc != 0, "/etc/persist-test survived the reboot");
    ensure!(
        vm.run_ok("sudo sha256sum /etc/ssh/ssh_host_ed25519_key.pub", CMD)? == hostkey,
        "the SSH host key changed"
    );

    // Rollback: slot B holds slot A's kernel with an initramfs whose init fails (the kernel
    // panics, and `panic=` from the installed command line reboots it); put on trial with
    // one try, GRUB boots it once, then comes back to A by itself.
    vm.run_ok(
        "sudo mount -o remount,rw /run/rkos/state && \
         sudo mkdir -p /run/rkos/state/slots/B /tmp/broken && \
         sudo cp /run/rkos/state/slots/A/vmlinuz /run/rkos/state/slots/A/rootfs.squashfs /run/rkos/state/slots/B/ && \
         printf '#!/bin/false\\n' > /tmp/broken/init && chmod +x /tmp/broken/init && \
         (cd /tmp/broken && echo init | cpio -o -H newc 2>/dev/null | gzip) | sudo tee /run/rkos/state/slots/B/initrd >/dev/null && \
         sudo sed 's/\"version\": *\"[^\"]*\"/\"version\": \"broken\"/' /run/rkos/state/slots/A/manifest.json | sudo tee /run/rkos/state/slots/B/manifest.json >/dev/null && \
         sudo grub-editenv /run/rkos/state/grub/grubenv set rkos_trial=B rkos_tries=1 && sync",
        CMD,
    )?;
    vm.send("sudo systemctl reboot\n")?;
    boot_installed(&mut vm)?;
    vm.expect(r"rkos\.slot=B", BOOT)
        .context("GRUB did not try slot B")?;
    vm.expect(r"Kernel panic|not syncing", BOOT)
        .context("the broken slot did not fail")?;
    boot_installed(&mut vm).context("no reboot after the panic")?;
    password_login(&mut vm).context("did not come back on slot A")?;
    let cmdline = vm.run_ok("cat /proc/cmdline", CMD)?;
    ensure!(cmdline.contains("rkos.slot=A"), "{cmdline}");
    let status = vm.run_ok("rkos status", CMD)?;
    ensure!(
        status.contains("slot B was never marked good") && status.contains("rolled back to slot A"),
        "rkos status:\n{status}"
    );
    Ok(())
}

/// Serves one file over HTTP on all interfaces (QEMU's user network reaches the host as
/// 10.0.2.2).
fn serve_file(body: String) -> Result<u16> {
    let l = TcpListener::bind("0.0.0.0:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(match s.try_clone() {
                Ok(c) => c,
                Err(_) => continue,
            });
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let mut s = s;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

#[test]
fn unattended_install_from_the_kernel_command_line_powers_off() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let disk = blank_disk(dir.path(), 6)?;
    let config = format!(
        "hostname: unattended-node\nssh_authorized_keys:\n  - {KEY}\nrkos:\n  password: {PASSWORD}\n  token: {TOKEN}\n"
    );
    let port = serve_file(config)?;
    let (kernel, initrd) = extract_kernel(&iso(), dir.path())?;
    let mut vm = Vm::start(&VmConfig {
        name: "install-unattended".into(),
        boot: Boot::Kernel {
            kernel,
            initrd,
            cmdline: format!(
                "rkos.mode=install rkos.install.device=/dev/vda rkos.install.config_url=http://10.0.2.2:{port}/node.yaml \
                 rkos.install.power_off console=tty0 console=ttyS0,115200n8"
            ),
            medium: Some(iso()),
        },
        disks: vec![disk.clone()],
        memory_mb: 2048,
    })?;
    exp(&mut vm, "rkos-install: installed rkos", INSTALL).context("no install")?;
    vm.expect(r"reboot: Power down|Powering off", STEP)
        .context("did not power off")?;
    drop(vm);

    let mut vm = Vm::start(&VmConfig {
        name: "install-unattended-boot".into(),
        boot: Boot::Iso(iso()),
        disks: vec![disk],
        memory_mb: 2048,
    })?;
    boot_installed(&mut vm)?;
    password_login(&mut vm)?;
    ensure!(
        vm.run_ok("hostname", CMD)?.trim() == "unattended-node",
        "hostname"
    );
    let cmdline = vm.run_ok("cat /proc/cmdline", CMD)?;
    ensure!(cmdline.contains("rkos.mode=disk"), "{cmdline}");
    Ok(())
}
