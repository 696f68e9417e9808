//! An arm64 UEFI machine installed from the arm64 ISO (issue 12: "the same OS on arm64 UEFI
//! machines"), under `qemu-system-aarch64 -M virt` (software emulation): the unattended
//! install from the kernel command line as install_iso runs it on amd64
//! (`node::install_unattended`: the words an operator adds to the ISO's "install" entry),
//! the config fetched over HTTP, installed to the blank virtio disk, powered off; then the
//! disk alone under AAVMF: firmware -> GRUB arm64-efi on the installed ESP -> slot A ->
//! the config in force, a password login, `uname -m` aarch64.
//!
//! Built only with the `qemu` feature; `make test-arm64` runs it with RKOS_ISO_ARM64 (not
//! part of `make test`: emulated arm64 boots take minutes).

use anyhow::{ensure, Context, Result};
use rkos_tests::host::{ensure_rkos_partitions, iso_arm64, sh};
use rkos_tests::node::{install_unattended, login_within, status, CMD};
use rkos_tests::qemu::{uefi_vars, Arch, Boot, Vm, VmConfig};
use std::time::{Duration, Instant};

/// An emulated arm64 boot on a loaded 2-core host: several times the amd64 figure.
const BOOT: Duration = Duration::from_secs(1500);
const INSTALL: Duration = Duration::from_secs(1500);
const PASSWORD: &str = "arm64-install-pw";
const HOSTNAME: &str = "arm64-installed";

#[test]
fn arm64_unattended_install_from_the_iso_boots_from_disk_under_uefi() -> Result<()> {
    let began = Instant::now();
    let dir = tempfile::tempdir()?;
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)?.set_len(6 << 30)?;
    // --- the install -------------------------------------------------------------------------
    let (mut vm, _, _) = install_unattended(
        "arm64-install",
        Arch::Arm64,
        &iso_arm64()?,
        &disk,
        &format!("hostname: {HOSTNAME}\nrkos:\n  password: {PASSWORD}\n"),
        dir.path(),
        INSTALL,
    )?;
    vm.expect(r"reboot: Power down", BOOT)
        .context("the installer did not power off")?;
    drop(vm);
    let installed = began.elapsed();
    ensure_rkos_partitions(&sh("sgdisk", &["-p", &disk.to_string_lossy()])?)?;

    // --- the installed disk under UEFI -------------------------------------------------------
    let t0 = Instant::now();
    let mut vm = Vm::start(&VmConfig {
        name: "arm64-installed".into(),
        arch: Arch::Arm64,
        boot: Boot::Disk {
            uefi_vars: Some(uefi_vars(Arch::Arm64, dir.path())?),
        },
        disks: vec![disk],
        memory_mb: 2048,
        extras: Default::default(),
    })?;
    vm.expect(r"rkos-init: total [0-9.]+ ms.*mode disk", BOOT)
        .context("rkos-init did not boot the installed disk")?;
    login_within(&mut vm, PASSWORD, BOOT)?;
    let to_login = t0.elapsed();
    let machine = vm.run_ok("uname -m", CMD)?;
    ensure!(
        machine.trim() == Arch::Arm64.uname(),
        "uname -m says {machine:?}"
    );
    ensure!(
        vm.run_ok("hostname", CMD)?.trim() == HOSTNAME,
        "the host name is not the served config's"
    );
    status(
        &mut vm,
        &[r"^active slot: +A \(version [^)]+\)", r"^trial: +none"],
    )?;
    vm.run_ok("test -d /sys/firmware/efi", CMD)
        .context("the installed disk did not boot through UEFI")?;
    vm.send("sudo systemctl poweroff\n")?;
    vm.clean_shutdown("the installed arm64 node", "reboot: Power down", CMD)?;
    eprintln!(
        "figure: arm64 unattended install and power-off {:.0} s; installed disk power-on to login {:.0} s; whole test {:.0} s",
        installed.as_secs_f64(),
        to_login.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
