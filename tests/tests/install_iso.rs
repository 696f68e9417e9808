//! Install to disk from the ISO, as a person would, on the QEMU serial console: log in,
//! `sudo os-config`, answer the questions (mistakes included), install to the empty disk,
//! reboot from the disk and find the answers in force; then persistence across a reboot.
//! A second test installs unattended from the kernel command line, powers off, and the disk
//! is inspected from the host (root: read-only loop devices and mounts). Built with the
//! `qemu` feature; RKOS_ISO names the (stand-in) ISO, as for the boot tests.
//!
//! Boots, for CI's clock: the wizard test boots three times (the ISO, the installed disk,
//! the disk again after the persistence reboot); the unattended test once. Rollback of a
//! broken slot on trial is not repeated here: tests/tests/upgrade_node.rs shows it on an
//! installed node (a broken version 2 put on trial with `rkos upgrade`).

use anyhow::{ensure, Context, Result};
use rkos_slots::{Manifest, Slot, StateDir};
use rkos_tests::host::{ensure_rkos_partitions, iso, sh};
use rkos_tests::node::{install_unattended, password_login};
use rkos_tests::qemu::{Arch, Boot, Vm, VmConfig};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// The installed disk alone, booted by the firmware through the GRUB the installer wrote.
fn boot_disk(name: &str, disk: &Path) -> Result<Vm> {
    Vm::start(&VmConfig {
        name: name.into(),
        arch: Arch::Amd64,
        boot: Boot::Disk { uefi_vars: None },
        disks: vec![disk.to_path_buf()],
        memory_mb: 2048,
        extras: Default::default(),
    })
}

/// The Ed25519 host key sshd offers, as a client sees it (wherever the key file lives).
fn host_key(vm: &mut Vm) -> Result<String> {
    let out = vm.run_ok("ssh-keyscan -t ed25519 127.0.0.1 2>/dev/null", CMD)?;
    let key = out
        .lines()
        .find(|l| l.contains(" ssh-ed25519 "))
        .with_context(|| format!("sshd offers no Ed25519 host key: {out}"))?;
    Ok(key.to_string())
}

#[test]
fn wizard_install_reboot_and_persistence() -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let disk = blank_disk(dir.path(), 8)?;
    let mut vm = Vm::start(&VmConfig {
        name: "install-wizard".into(),
        arch: Arch::Amd64,
        boot: Boot::Iso(iso()?),
        disks: vec![disk.clone()],
        memory_mb: 2048,
        extras: Default::default(),
    })?;
    vm.live_shell(BOOT, STEP)?;
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
    exp(&mut vm, "SSH public key to authorize", STEP)?;
    vm.send(&format!("{KEY}\r"))?;
    exp(&mut vm, "Password for the user rkos", STEP)?;
    type_secret(&mut vm, PASSWORD)?;
    exp(&mut vm, "The password again", STEP)?;
    type_secret(&mut vm, "not-the-same")?;
    exp(&mut vm, "The passwords differ", STEP)?;
    exp(&mut vm, "Password for the user rkos", STEP)?;
    type_secret(&mut vm, PASSWORD)?;
    exp(&mut vm, "The password again", STEP)?;
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
    exp(&mut vm, "Cluster token", STEP)?;
    type_secret(&mut vm, "")?;
    exp(&mut vm, "a token is required", STEP)?;
    exp(&mut vm, "Cluster token", STEP)?;
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
    // The reboot the wizard offers; once the system is down the VM stops and the disk boots
    // alone, as it would with the medium removed.
    vm.clean_shutdown("the wizard's reboot", "reboot: Restarting system", BOOT)?;
    drop(vm);
    eprintln!("wizard and install: {:?}", started.elapsed());

    let mut vm = boot_disk("install-wizard-disk", &disk)?;
    // GRUB's menu offers what can boot: slot A; slot B is empty after an install.
    let menu = vm
        .expect(r"rkos rescue shell", BOOT)
        .context("no GRUB menu on the serial console")?;
    ensure!(
        menu.contains("rkos (slot A") && !menu.contains("slot B"),
        "the GRUB menu offers an empty slot:\n{menu}"
    );
    vm.expect(r"rkos\.mode=disk", BOOT)
        .context("did not boot from the disk")?;
    password_login(&mut vm, PASSWORD, BOOT)?;
    eprintln!("installed node logged in: {:?}", started.elapsed());
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
    let hostkey = host_key(&mut vm)?;
    vm.send("sudo systemctl reboot\n")?;
    vm.clean_shutdown("the installed node", "reboot: Restarting system", BOOT)?;
    vm.expect(r"rkos\.mode=disk", BOOT)
        .context("did not boot from the disk again")?;
    password_login(&mut vm, PASSWORD, BOOT).context("after the reboot")?;
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
    let after = host_key(&mut vm)?;
    ensure!(
        after == hostkey,
        "the SSH host key changed:\n{hostkey}\n{after}"
    );
    eprintln!("wizard test: {:?}", started.elapsed());
    Ok(())
}

/// Serves one file over HTTP on all interfaces (QEMU's user network reaches the host as
/// 10.0.2.2).
fn sha256(file: &Path) -> Result<String> {
    let out = sh("sha256sum", &[&file.to_string_lossy()])?;
    Ok(out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// Partitions of the installed disk image mounted read-only on the host, each through its
/// own read-only loop device over the partition's byte range (partition scanning of loop
/// devices does not work in every container), with `noload` so no journal is replayed and
/// nothing is written. Undone on drop.
#[derive(Default)]
struct Inspect {
    mounts: Vec<(PathBuf, String)>,
}

impl Inspect {
    /// Mounts partition `n` of `image` at `at`; `table` is `sgdisk -p` of the image.
    fn mount(&mut self, image: &Path, table: &str, n: u32, at: &Path) -> Result<()> {
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&n.to_string()))
            .with_context(|| format!("no partition {n}:\n{table}"))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(2)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("partition {n}: {line}"))?;
        let (first, last) = (f[0], f[1]);
        let dev = sh(
            "losetup",
            &[
                "--find",
                "--show",
                "--read-only",
                "--offset",
                &(first * 512).to_string(),
                "--sizelimit",
                &((last + 1 - first) * 512).to_string(),
                &image.to_string_lossy(),
            ],
        )
        .context("attaching the disk image (needs root and loop devices)")?
        .trim()
        .to_string();
        std::fs::create_dir_all(at)?;
        let mounted = sh(
            "mount",
            &["-t", "ext4", "-o", "ro,noload", &dev, &at.to_string_lossy()],
        );
        if let Err(e) = mounted {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
            return Err(e);
        }
        self.mounts.push((at.to_path_buf(), dev));
        Ok(())
    }
}

impl Drop for Inspect {
    fn drop(&mut self) {
        for (at, dev) in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg(at).status();
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
    }
}

#[test]
fn unattended_install_from_the_kernel_command_line_powers_off() -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let disk = blank_disk(dir.path(), 6)?;
    let config = format!(
        "hostname: unattended-node\nssh_authorized_keys:\n  - {KEY}\nrkos:\n  password: {PASSWORD}\n  token: {TOKEN}\n"
    );
    let (mut vm, kernel, initrd) = install_unattended(
        "install-unattended",
        Arch::Amd64,
        &iso()?,
        &disk,
        &config,
        dir.path(),
        INSTALL,
    )?;
    vm.expect(r"reboot: Power down", BOOT)
        .context("did not power off")?;
    drop(vm);
    eprintln!("unattended install and power-off: {:?}", started.elapsed());

    // The result, from the host.
    let table = sh("sgdisk", &["-p", &disk.to_string_lossy()])?;
    ensure_rkos_partitions(&table)?;
    ensure!(
        table.contains("Sector size (logical): 512 bytes"),
        "not 512-byte sectors:\n{table}"
    );
    let mut img = Inspect::default();
    let (state_mnt, data_mnt) = (dir.path().join("state"), dir.path().join("data"));
    img.mount(&disk, &table, 3, &state_mnt)?;
    img.mount(&disk, &table, 4, &data_mnt)?;

    let sd = StateDir::new(&state_mnt);
    let manifest: Manifest = sd
        .read_manifest(Slot::A)?
        .context("slot A has no manifest")?;
    manifest.validate()?;
    for f in &manifest.files {
        let got = sha256(&sd.slot_dir(Slot::A).join(&f.name))?;
        ensure!(
            got == f.sha256,
            "slot A {}: sha256 {got}, manifest {}",
            f.name,
            f.sha256
        );
    }
    // Slot A holds exactly the medium's kernel and initramfs.
    for (name, from_iso) in [("vmlinuz", &kernel), ("initrd", &initrd)] {
        let entry = manifest
            .file(name)
            .with_context(|| format!("no {name} in slot A's manifest"))?;
        ensure!(
            entry.sha256 == sha256(from_iso)?,
            "slot A {name} is not the ISO's"
        );
    }
    ensure!(sd.grub_cfg().is_file(), "no grub.cfg on RKOS_STATE");
    let boot = sd.boot_state()?;
    ensure!(
        boot.default == Slot::A && boot.trial.is_none(),
        "a fresh install should boot slot A, nothing on trial: {boot:?}"
    );
    let env = sd.read_env()?;
    ensure!(
        env.get("rkos_cmdline").is_some_and(|c| c.contains("gpt")),
        "grubenv: {env:?}"
    );

    let node_cfg = data_mnt.join("var/lib/rkos/config.yaml");
    ensure!(
        std::fs::read_to_string(&node_cfg)? == config,
        "RKOS_DATA's config.yaml is not the served config"
    );
    let mode = std::fs::metadata(&node_cfg)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "config.yaml mode {mode:o}");
    eprintln!("unattended test: {:?}", started.elapsed());
    Ok(())
}
