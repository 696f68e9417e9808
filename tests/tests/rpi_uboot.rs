//! The Raspberry Pi image's boot chain, as far as QEMU goes: the image itself (the bytes a
//! card gets: hybrid MBR, the Pi's firmware files beside GRUB on the ESP) booted on QEMU's
//! `virt` board under software emulation, with Debian's U-Boot for that board
//! (`u-boot-qemu`, qemu_arm64: the same U-Boot source as the Pi's `u-boot-rpi`, another
//! board config) as the firmware -> U-Boot's UEFI -> GRUB arm64-efi from the ESP -> slot A,
//! version 1. The card is a raw copy of the image made bigger (`RKOS_DATA` grows), with
//! `rkos/config.yaml` dropped on its FAT partition as a Pi owner would (the host name) and a
//! NoCloud seed (the password). Then, on the same node, on arm64:
//! 1. `rkos upgrade --tries 1 --reboot` to version 2 (an arm64 bundle of the same image): it
//!    boots from slot B on trial and is marked good;
//! 2. a broken version 3 (its root filesystem is no squashfs) on trial in slot A with one
//!    try: rkos-init fails, restarts, and GRUB goes back to version 2 on slot B by itself.
//!
//! What QEMU cannot show: the Pi's own firmware (start*.elf runs on its GPU) and U-Boot's Pi
//! drivers; docs/rpi.md says what remains unverified.
//!
//! Needs RKOS_RPI_IMAGE (`make disk-image ARCH=arm64 BOARD=rpi K3S_STANDIN=1`),
//! RKOS_ISO_ARM64 (the same build's ISO: the files of the bundles), work/keys/rkos.key (the
//! images trust its public half), QEMU for aarch64, u-boot-qemu, xorriso, mtools, sgdisk.
//! `make test-arm64` runs it (not part of `make test`: emulated arm64 boots take minutes
//! each). Built with the `qemu` feature.

use anyhow::{ensure, Context, Result};
use rkos_contract::label;
use rkos_tests::host::{iso_arm64, mtools_image, rkos_bin, rpi_image, sh};
use rkos_tests::httpd::Httpd;
use rkos_tests::node::{
    bundle_for, edit_grubenv, extract_image, init_report, initrd_with_version, link, login_within,
    marked_good, p, signing_key, status, version_bundle_for, V1,
};
use rkos_tests::qemu::{Arch, Boot, Vm, VmConfig};
use rkos_tests::seed::make_seed;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Debian's U-Boot for QEMU's arm64 `virt` board.
const UBOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
/// An emulated arm64 boot on a 2-core host (a minute or two alone; more when loaded).
const BOOT: Duration = Duration::from_secs(1200);
const CMD: Duration = Duration::from_secs(180);
/// Staging 140 MB through an emulated arm64 guest's user-mode network.
const STAGE: Duration = Duration::from_secs(1200);
const PASSWORD: &str = "arm64-disk-pw";
const HOSTNAME: &str = "pi-from-fat";
const V2: &str = "0.2.0";
const V3: &str = "0.3.0";

fn login(vm: &mut Vm) -> Result<()> {
    login_within(vm, PASSWORD, BOOT)
}

#[test]
fn rpi_image_boots_through_uboot_upgrades_and_rolls_back() -> Result<()> {
    let began = Instant::now();
    let image = rpi_image()?;
    let iso = iso_arm64()?;
    ensure!(
        std::path::Path::new(UBOOT).is_file(),
        "{UBOOT} is missing (apt-get install u-boot-qemu; make host-deps-arm64)"
    );
    let rkos = rkos_bin()?;
    let key = signing_key()?;
    let t = tempfile::tempdir()?;
    let dir = t.path();

    // the bundles: version 2 (the same image, an initramfs that says 0.2.0) and a broken 3
    let src = dir.join("src");
    extract_image(&iso, &src)?;
    let www = dir.join("www");
    fs::create_dir_all(&www)?;
    version_bundle_for(Arch::Arm64, &rkos, &src, V2, &key, dir, &www.join("v2"))?;
    let v3 = dir.join("v3-files");
    fs::create_dir_all(&v3)?;
    link(&src.join("boot/vmlinuz"), &v3.join("vmlinuz"))?;
    initrd_with_version(&src.join("boot/initrd"), V3, dir, &v3.join("initrd"))?;
    fs::write(
        v3.join("rootfs.squashfs"),
        b"not a squashfs\n".repeat(70_000),
    )?;
    bundle_for(Arch::Arm64, &rkos, &v3, V3, &key, &www.join("v3"))?;
    let httpd = Httpd::serve(&www)?;
    let url = |name: &str| format!("http://10.0.2.2:{}/{name}", httpd.port());

    // the disk as a card is written: raw, bigger than the image, with the owner's
    // rkos/config.yaml dropped on the boot partition (the host name comes from there)
    let disk: PathBuf = dir.join("card.img");
    sh("cp", &["--sparse=always", p(&image), p(&disk)])?;
    sh("truncate", &["-s", "8G", p(&disk)])?;
    let fat = mtools_image(&disk, label::EFI)?;
    let config = dir.join("config.yaml");
    fs::write(&config, format!("hostname: {HOSTNAME}\n"))?;
    sh("mcopy", &["-i", &fat, p(&config), "::/rkos/config.yaml"])?;
    // The Pi's consoles are the screen and its mini UART (ttyS1); the virt board has neither
    // the UART nor its driver's device, only a PL011: the stand-in board's console.
    edit_grubenv(&disk, dir, |env| {
        ensure!(
            env.get("rkos_consoles") == Some("console=tty0 console=ttyS1,115200"),
            "the Pi image's consoles: {:?}",
            env.get("rkos_consoles")
        );
        env.set("rkos_consoles", "console=tty0 console=ttyAMA0,115200n8")?;
        Ok(())
    })?;
    let seed = make_seed(
        dir,
        &format!("#cloud-config\nchpasswd:\n  list: |\n    rkos:{PASSWORD}\n  expire: false\n"),
        "instance-id: arm64-disk-1\n",
    )?;
    eprintln!("prepared in {:?}", began.elapsed());

    // --- boot 1: U-Boot -> GRUB -> slot A, version 1 ---------------------------------------
    let mut vm = Vm::start(&VmConfig {
        name: "rpi-uboot".into(),
        arch: Arch::Arm64,
        boot: Boot::UBoot {
            bios: PathBuf::from(UBOOT),
        },
        disks: vec![disk.clone(), seed],
        memory_mb: 2048,
        extras: Default::default(),
    })?;
    vm.expect(r"U-Boot 20\d\d", BOOT)
        .context("U-Boot did not start")?;
    vm.expect(r"rkos \(slot A\)", BOOT)
        .context("U-Boot did not run GRUB from the ESP (or GRUB found no grub.cfg)")?;
    vm.expect(&format!("rkos-init: rkos {V1} started"), BOOT)
        .context("GRUB did not boot slot A")?;
    login(&mut vm)?;
    let first_login = vm.started.elapsed();
    let machine = vm.run_ok("uname -m", CMD)?;
    ensure!(machine.trim() == "aarch64", "uname -m says {machine:?}");
    init_report(&mut vm, V1, "A")?;
    let cmdline = vm.run_ok("cat /proc/cmdline", CMD)?;
    ensure!(
        cmdline.contains("console=ttyAMA0") && !cmdline.contains("ttyS"),
        "GRUB did not give the environment block's consoles: {cmdline}"
    );
    ensure!(
        vm.run_ok("hostname", CMD)?.trim() == HOSTNAME,
        "the host name of the boot partition's rkos/config.yaml"
    );
    let data = vm.run_ok(
        "sudo systemctl start rkos-grow-data.service; lsblk -bno SIZE /dev/disk/by-label/RKOS_DATA",
        CMD,
    )?;
    let data_bytes: u64 = data.trim().parse().context(data.clone())?;
    // 1.9 GiB in the image; the 8 GiB card less the 2 GiB state volume and the ESP after
    ensure!(
        data_bytes > 5 << 30,
        "RKOS_DATA did not grow to the 8 GiB card: {data_bytes} bytes"
    );
    status(
        &mut vm,
        &[
            &format!(r"^active slot: +A \(version {V1}\)"),
            r"^trial: +none",
        ],
    )?;

    // --- boot 2: version 2 on trial in slot B, marked good -------------------------------
    let t0 = Instant::now();
    vm.send(&format!(
        "sudo rkos upgrade --bundle {} --tries 1 --reboot\n",
        url("v2")
    ))?;
    vm.expect(&format!("rkos-init: rkos {V2} started"), STAGE + BOOT)
        .context("version 2 did not boot from slot B")?;
    eprintln!("staged and rebooted into version 2 in {:?}", t0.elapsed());
    login(&mut vm)?;
    init_report(&mut vm, V2, "B")?;
    marked_good(&mut vm, V2, "B", Duration::from_secs(600))?;

    // --- boots 3 and 4: broken version 3 on trial in slot A, GRUB falls back to B ----------
    vm.send(&format!(
        "sudo rkos upgrade --bundle {} --tries 1 --reboot\n",
        url("v3")
    ))?;
    vm.expect(&format!("rkos-init: rkos {V3} started"), STAGE + BOOT)
        .context("the trial slot A did not boot version 3")?;
    vm.expect(r"restarting in 10 s so GRUB counts the try", BOOT)
        .context("rkos-init did not restart the failed trial")?;
    vm.expect(&format!("rkos-init: rkos {V2} started"), BOOT)
        .context("GRUB did not fall back to slot B")?;
    login(&mut vm)?;
    init_report(&mut vm, V2, "B")?;
    status(
        &mut vm,
        &[
            &format!(r"^active slot: +B \(version {V2}\)"),
            r"^default slot: +B",
            r"^trial: +none",
            r"^last outcome: +slot A was never marked good; GRUB rolled back to slot B",
        ],
    )?;
    drop(vm);
    eprintln!(
        "figure: the Pi image through U-Boot on QEMU virt: power-on to login {:.0} s; whole test {:.0} s",
        first_login.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
