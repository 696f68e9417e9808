//! The arm64 ISO under `qemu-system-aarch64 -M virt` (AAVMF, software emulation): firmware ->
//! GRUB arm64-efi on the ISO -> the arm64 kernel and rkos-init -> systemd, asserted from the
//! serial console (ttyAMA0) with the same checks as the amd64 live boot (`rkos_tests::live`).
//! Built only with the `qemu` feature; `make test-arm64` builds the arm64 stand-in ISO and
//! runs it with RKOS_ISO_ARM64 set (not part of `make test`: an emulated arm64 boot takes
//! minutes).

use anyhow::{ensure, Context, Result};
use rkos_tests::host::iso_arm64;
use rkos_tests::live::{self, Limits};
use rkos_tests::qemu::{uefi_vars, Arch, Boot, Vm, VmConfig};
use rkos_tests::seed::make_seed;
use std::time::{Duration, Instant};

/// An emulated arm64 boot on a loaded 2-core host: several times the amd64 figure.
const LIMITS: Limits = Limits {
    boot: Duration::from_secs(1500),
    cmd: Duration::from_secs(120),
    k3s_start: Duration::from_secs(600),
};

#[test]
fn arm64_live_boot_with_nocloud_seed_is_an_immutable_agent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let seed = make_seed(dir.path(), &live::seed_user_data(), live::SEED_META_DATA)?;
    let mut vm = Vm::start(&VmConfig {
        name: "arm64-live-seed".into(),
        arch: Arch::Arm64,
        boot: Boot::IsoUefi {
            iso: iso_arm64()?,
            uefi_vars: uefi_vars(Arch::Arm64, dir.path())?,
        },
        disks: vec![seed],
        memory_mb: 2048,
        extras: Default::default(),
    })?;
    let started = Instant::now();
    vm.expect(r"rkos live", LIMITS.boot)
        .context("no GRUB menu from the arm64 ISO under AAVMF")?;
    vm.expect(r"rkos-init: total [0-9.]+ ms.*mode live", LIMITS.boot)
        .context("rkos-init did not finish a live boot")?;
    LIMITS.login(&mut vm)?;
    eprintln!("arm64: login after {:?}", started.elapsed());

    let machine = vm.run_ok("uname -m", LIMITS.cmd)?;
    ensure!(
        machine.trim() == Arch::Arm64.uname(),
        "uname -m says {machine:?}"
    );
    LIMITS.check_immutable_agent(&mut vm)?;
    LIMITS.check_reboot_forgets_etc(&mut vm)?;
    eprintln!("arm64: checks done after {:?}", started.elapsed());
    Ok(())
}
