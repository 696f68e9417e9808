//! Boot tests: the rkos ISO under QEMU, asserted from the serial console. Built only with the
//! `qemu` feature; `make boot-test` builds the stand-in ISO and runs them with RKOS_ISO set.

use anyhow::{ensure, Context, Result};
use rkos_tests::host::iso;
use rkos_tests::live::{self, Limits};
use rkos_tests::qemu::{extract_kernel, ovmf_vars, Arch, Boot, Vm, VmConfig};
use rkos_tests::seed::make_seed;
use std::time::{Duration, Instant};

/// Software emulation boots a full systemd in about a minute; leave room for a loaded CI box.
const BOOT: Duration = Duration::from_secs(420);
const CMD: Duration = Duration::from_secs(60);
const LIMITS: Limits = Limits {
    boot: BOOT,
    cmd: CMD,
    k3s_start: Duration::from_secs(180),
};
/// How long a boot with no image may take to reach the rescue shell (rkos.wait=5 plus
/// kernel start under emulation).
const RESCUE: Duration = Duration::from_secs(120);

#[test]
fn live_boot_with_nocloud_seed_is_an_immutable_agent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let seed = make_seed(dir.path(), &live::seed_user_data(), live::SEED_META_DATA)?;
    let mut vm = Vm::start(&VmConfig {
        name: "live-seed".into(),
        arch: Arch::Amd64,
        boot: Boot::Iso(iso()?),
        disks: vec![seed],
        memory_mb: 2048,
        extras: Default::default(),
    })?;
    LIMITS.login(&mut vm)?;
    LIMITS.check_immutable_agent(&mut vm)?;
    // /etc changes do not survive a reboot
    LIMITS.check_reboot_forgets_etc(&mut vm)
}

#[test]
fn config_with_errors_still_boots_and_names_the_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // `labels` must be a map: a typo like this must never cost console access
    let user_data = "#cloud-config\nhostname: rkos-bad-config\nrkos:\n  labels: not-a-map\n";
    let seed = make_seed(dir.path(), user_data, "instance-id: rkos-bad-config\n")?;
    let mut vm = Vm::start(&VmConfig {
        name: "config-errors".into(),
        arch: Arch::Amd64,
        boot: Boot::Iso(iso()?),
        disks: vec![seed],
        memory_mb: 2048,
        extras: Default::default(),
    })?;
    vm.expect(r"rkos: config errors", BOOT)
        .context("the console does not announce config errors")?;
    vm.expect(r"labels", BOOT)
        .context("the console does not name the bad key")?;
    LIMITS.login(&mut vm)?;
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
        arch: Arch::Amd64,
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
        arch: Arch::Amd64,
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
        arch: Arch::Amd64,
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
