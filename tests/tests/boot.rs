//! Boot tests: the rkos ISO under QEMU, asserted from the serial console. Built only with the
//! `qemu` feature; `make boot-test` builds the stand-in ISO and runs them with RKOS_ISO set.

use anyhow::{ensure, Context, Result};
use rkos_tests::host::iso;
use rkos_tests::qemu::{extract_kernel, ovmf_vars, Boot, Vm, VmConfig};
use rkos_tests::seed::make_seed;
use std::time::{Duration, Instant};

/// Software emulation boots a full systemd in about a minute; leave room for a loaded CI box.
const BOOT: Duration = Duration::from_secs(420);
const CMD: Duration = Duration::from_secs(60);
/// How long a boot with no image may take to reach the rescue shell (rkos.wait=5 plus
/// kernel start under emulation).
const RESCUE: Duration = Duration::from_secs(120);

const TEST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEywGH0sSOSjJxjadJX+4amLdKAGqMr88tQbgpDAobUN rkos-boot-test";
/// A secure-form join token (K10<hex>::<user>:<password>) made up for the test.
const TOKEN: &str =
    "K10a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90::server:boottestsecret";

fn login(vm: &mut Vm) -> Result<()> {
    // live mode logs rkos in on the console; agetty still prints the login prompt line
    vm.expect(r"login:", BOOT).context("no login prompt")?;
    vm.expect(r"rkos@[^ ]*[:~]|\$ ", BOOT)
        .context("no shell after the login prompt")?;
    vm.prepare_shell()
}

fn fstype(vm: &mut Vm, path: &str) -> Result<String> {
    Ok(vm
        .run_ok(&format!("findmnt -n -o FSTYPE --target {path} | cat"), CMD)?
        .trim()
        .to_string())
}

#[test]
fn live_boot_with_nocloud_seed_is_an_immutable_agent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let user_data = format!(
        "#cloud-config\nhostname: rkos-boot-test\nssh_authorized_keys:\n  - {TEST_KEY}\n\
         rkos:\n  server_url: https://10.0.2.2:6443\n  token: {TOKEN}\n  labels:\n    \
         rkos.dev/test: boot\n    tier: edge\n  taints:\n    - dedicated=boot-test:NoSchedule\n"
    );
    let seed = make_seed(dir.path(), &user_data, "instance-id: rkos-boot-test\n")?;
    let mut vm = Vm::start(&VmConfig {
        name: "live-seed".into(),
        boot: Boot::Iso(iso()?),
        disks: vec![seed],
        memory_mb: 2048,
        extras: Default::default(),
    })?;
    login(&mut vm)?;

    // / is an overlay whose lower layer is the squashfs image
    ensure!(fstype(&mut vm, "/")? == "overlay", "/ is not overlayfs");
    let opts = vm.run_ok("findmnt -n -o OPTIONS / | cat", CMD)?;
    let lower = opts
        .split(',')
        .find_map(|o| o.strip_prefix("lowerdir="))
        .context("no lowerdir in the options of /")?
        .to_string();
    ensure!(
        fstype(&mut vm, &lower)? == "squashfs",
        "overlay lower {lower} is not the squashfs"
    );
    ensure!(
        fstype(&mut vm, "/var/lib/kubelet")? == "tmpfs",
        "/var/lib/kubelet is not tmpfs"
    );

    ensure!(
        vm.run_ok("hostname", CMD)?.trim() == "rkos-boot-test",
        "hostname not applied"
    );
    let keys = vm.run_ok("cat ~rkos/.ssh/authorized_keys", CMD)?;
    ensure!(keys.contains(TEST_KEY), "ssh key not installed: {keys}");

    let k3s_cfg = vm.run_ok("sudo cat /etc/rancher/k3s/config.yaml", CMD)?;
    for want in [
        "rkos.dev/test=boot",
        "tier=edge",
        "dedicated=boot-test:NoSchedule",
        "https://10.0.2.2:6443",
    ] {
        ensure!(
            k3s_cfg.contains(want),
            "k3s config lacks {want}:\n{k3s_cfg}"
        );
    }
    // every file that holds the token is readable by root only
    let holders = vm.run_ok(
        &format!(
            "sudo grep -rlF '{TOKEN}' /etc/rancher /etc/default /etc/systemd 2>/dev/null || true"
        ),
        CMD,
    )?;
    let holders: Vec<&str> = holders.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(!holders.is_empty(), "no rendered file holds the token");
    for f in holders {
        let mode = vm.run_ok(&format!("sudo stat -c %a {f}"), CMD)?;
        ensure!(
            mode.trim() == "600",
            "{f} holds the token with mode {}",
            mode.trim()
        );
    }

    // the stand-in k3s runs as an agent with that config
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (st, _) = vm.run("sudo test -f /run/k3s-standin/argv", CMD)?;
        if st == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "k3s.service never started the stand-in"
        );
        vm.run("sleep 5", CMD)?;
    }
    ensure!(
        vm.run_ok("systemctl is-active k3s.service", CMD)?.trim() == "active",
        "k3s.service not active"
    );
    let argv = vm.run_ok("sudo cat /run/k3s-standin/argv", CMD)?;
    ensure!(
        argv.lines().next() == Some("agent"),
        "k3s not started as agent: {argv:?}"
    );
    vm.run_ok(
        "sudo cmp /run/k3s-standin/config.yaml /etc/rancher/k3s/config.yaml",
        CMD,
    )?;
    // Before k3s started, the upgrade agent's image was put where k3s imports images; the
    // cluster manifests go to servers only.
    vm.run_ok(
        "sudo cmp /usr/lib/rkos/k3s/images/rkos-agent.tar \
         /var/lib/rancher/k3s/agent/images/rkos-agent.tar",
        CMD,
    )
    .context("the agent image is not in k3s's import directory")?;
    ensure!(
        vm.run("sudo test -e /var/lib/rancher/k3s/server/manifests", CMD)?
            .0
            != 0,
        "an agent node got the server's auto-deploy manifests"
    );
    ensure!(
        vm.run_ok("kubectl version", CMD)?.contains("stand-in"),
        "kubectl is not the k3s multi-call"
    );
    ensure!(
        vm.run_ok("grep RKOS_K3S= /etc/os-release", CMD)?
            .contains("stand-in"),
        "os-release"
    );

    // the image is read-only where it matters, and /etc changes do not survive a reboot
    let (st, out) = vm.run("sudo touch /usr/rkos-write-test", CMD)?;
    ensure!(st != 0, "writing to /usr succeeded: {out}");
    vm.run_ok(
        "sudo touch /etc/rkos-reboot-marker && test -f /etc/rkos-reboot-marker",
        CMD,
    )?;
    vm.send("sudo systemctl reboot\n")?;
    login(&mut vm).context("after reboot")?;
    let (st, _) = vm.run("test -e /etc/rkos-reboot-marker", CMD)?;
    ensure!(st != 0, "/etc/rkos-reboot-marker survived the reboot");
    ensure!(
        vm.run_ok("hostname", CMD)?.trim() == "rkos-boot-test",
        "hostname after reboot"
    );
    Ok(())
}

#[test]
fn config_with_errors_still_boots_and_names_the_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // `labels` must be a map: a typo like this must never cost console access
    let user_data = "#cloud-config\nhostname: rkos-bad-config\nrkos:\n  labels: not-a-map\n";
    let seed = make_seed(dir.path(), user_data, "instance-id: rkos-bad-config\n")?;
    let mut vm = Vm::start(&VmConfig {
        name: "config-errors".into(),
        boot: Boot::Iso(iso()?),
        disks: vec![seed],
        memory_mb: 2048,
        extras: Default::default(),
    })?;
    vm.expect(r"rkos: config errors", BOOT)
        .context("the console does not announce config errors")?;
    vm.expect(r"labels", BOOT)
        .context("the console does not name the bad key")?;
    login(&mut vm)?;
    let errors = vm.run_ok("cat /run/rkos/config-errors", CMD)?;
    ensure!(
        errors.contains("labels"),
        "config-errors does not name the key: {errors}"
    );
    Ok(())
}

#[test]
fn missing_image_reaches_the_rescue_shell_with_a_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (kernel, initrd) = extract_kernel(&iso()?, dir.path())?;
    let mut vm = Vm::start(&VmConfig {
        name: "missing-image".into(),
        boot: Boot::Kernel {
            kernel,
            initrd,
            cmdline: "console=ttyS0,115200n8 rkos.mode=live rkos.wait=5".into(),
            medium: None,
        },
        disks: vec![],
        memory_mb: 1024,
        extras: Default::default(),
    })?;
    let started = Instant::now();
    vm.expect(r"RKOS_LIVE", RESCUE)
        .context("the failure message does not name RKOS_LIVE")?;
    vm.expect(r"(?i)rescue", RESCUE)
        .context("no rescue shell announced")?;
    vm.type_until(
        "echo rescue-$((6*7))",
        r"rescue-42",
        6,
        Duration::from_secs(10),
    )
    .context("the rescue shell does not answer")?;
    eprintln!("missing image: rescue shell after {:?}", started.elapsed());
    Ok(())
}

#[test]
fn rescue_mode_drops_to_the_shell_on_purpose() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let iso = iso()?;
    let (kernel, initrd) = extract_kernel(&iso, dir.path())?;
    let mut vm = Vm::start(&VmConfig {
        name: "rescue-mode".into(),
        boot: Boot::Kernel {
            kernel,
            initrd,
            cmdline: "console=ttyS0,115200n8 rkos.mode=rescue".into(),
            medium: Some(iso),
        },
        disks: vec![],
        memory_mb: 1024,
        extras: Default::default(),
    })?;
    vm.expect(r"rkos\.mode=rescue", RESCUE)?;
    vm.type_until(
        "echo rescue-$((6*7))",
        r"rescue-42",
        6,
        Duration::from_secs(10),
    )?;
    Ok(())
}

/// The ISO's UEFI path: OVMF loads GRUB's EFI image from the ISO's El Torito EFI entry, GRUB
/// shows the menu on the serial console and boots the live entry, and rkos-init finds the
/// medium and hands over to systemd. (The rest of the boot is the same as under BIOS and is
/// covered above; stopping at systemd keeps the test short.)
#[test]
fn iso_boots_under_uefi() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut vm = Vm::start(&VmConfig {
        name: "live-uefi".into(),
        boot: Boot::IsoUefi {
            iso: iso()?,
            uefi_vars: ovmf_vars(dir.path())?,
        },
        disks: vec![],
        memory_mb: 1024,
        extras: Default::default(),
    })?;
    vm.expect(r"rkos live", BOOT)
        .context("no GRUB menu from the ISO under UEFI")?;
    vm.expect(r"rkos-init: total [0-9.]+ ms.*mode live", BOOT)
        .context("rkos-init did not finish a live boot under UEFI")?;
    vm.expect(r"systemd\[1\]|Welcome to", BOOT)
        .context("systemd did not start after rkos-init under UEFI")?;
    Ok(())
}
