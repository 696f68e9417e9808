//! The Raspberry Pi image on QEMU's Raspberry Pi 3 board (`-M raspi3b`), as far as QEMU
//! goes: QEMU cannot run the Pi's GPU firmware (`start.elf` reading `config.txt`), so it
//! starts what that firmware would start — the image's own `u-boot.bin` with the image's
//! own `bcm2837-rpi-3-b.dtb`, both read off the card's FAT partition — with the image as the
//! SD card. From there it is the real chain: U-Boot's Pi drivers read the SD card, its UEFI
//! runs GRUB from the ESP (both on the mini UART), GRUB boots slot A, and rkos-init must find
//! its slot on the MMC device, read the config dropped on the FAT partition (the host name)
//! and hand over to systemd, which grows `RKOS_DATA` on the bigger card. The login is not
//! asserted: on this board the console stayed quiet after that (docs/rpi.md). On QEMU's board Linux's mini UART driver finds no clock, so the kernel's
//! console is read on the PL011 (`ttyAMA0`, also on the command line); and its board
//! resets the moment Linux arms the BCM2835 watchdog, so that driver is left out of this
//! boot (`modprobe.blacklist=bcm2835_wdt`, through GRUB's environment on the card).
//!
//! Needs RKOS_RPI_IMAGE (`make disk-image ARCH=arm64 BOARD=rpi K3S_STANDIN=1`), QEMU for
//! aarch64, mtools, sgdisk, root (a loop device). `make test-arm64` runs it. Built with the `qemu` feature.

use anyhow::{ensure, Context, Result};
use rkos_contract::label;
use rkos_tests::host::{ensure_root, gpt_partition, mtools_image, rpi_image, sh, Mount};
use rkos_tests::node::{p, Loop, V1};
use rkos_tests::qemu::{Arch, Boot, Vm, VmConfig};
use std::fs;
use std::time::{Duration, Instant};

/// Four emulated Cortex-A53 on a 2-core host: slower than the `virt` board.
const BOOT: Duration = Duration::from_secs(1800);
const PASSWORD: &str = "raspi3b-pw";
const HOSTNAME: &str = "pi3-emulated";

#[test]
fn rpi_image_on_the_raspi3b_board_finds_its_slot_on_the_sd_card() -> Result<()> {
    let began = Instant::now();
    ensure_root("a loop device")?;
    let image = rpi_image()?;
    let t = tempfile::tempdir()?;
    let dir = t.path();
    // QEMU's SD card must be a power of two in size
    let card = dir.join("card.img");
    sh("cp", &["--sparse=always", p(&image), p(&card)])?;
    sh("truncate", &["-s", "8G", p(&card)])?;
    let fat = mtools_image(&card, label::EFI)?;
    let (uboot, dtb) = (dir.join("u-boot.bin"), dir.join("bcm2837-rpi-3-b.dtb"));
    sh("mcopy", &["-n", "-i", &fat, "::/u-boot.bin", p(&uboot)])?;
    sh(
        "mcopy",
        &["-n", "-i", &fat, "::/bcm2837-rpi-3-b.dtb", p(&dtb)],
    )?;
    let config = dir.join("config.yaml");
    fs::write(
        &config,
        format!("hostname: {HOSTNAME}\nrkos:\n  password: {PASSWORD}\n"),
    )?;
    sh("mcopy", &["-i", &fat, p(&config), "::/rkos/config.yaml"])?;

    // QEMU's board resets the moment Linux arms the BCM2835 watchdog (systemd does, from
    // RuntimeWatchdogSec): its driver stays out for this boot, through GRUB's environment.
    {
        let dev = Loop::attach(&card)?;
        let state = format!("{}p{}", dev.0, gpt_partition(&card, label::STATE)?.0);
        let mnt = dir.join("state");
        fs::create_dir_all(&mnt)?;
        let _m = Mount::new(&[&state], &mnt)?;
        let sd = rkos_slots::StateDir::new(&mnt);
        let mut env = sd.read_env()?;
        let args = env.get("rkos_cmdline").unwrap_or_default().to_string();
        env.set(
            "rkos_cmdline",
            &format!("{args} modprobe.blacklist=bcm2835_wdt"),
        )?;
        fs::write(sd.grubenv(), env.serialize()?)?;
    }
    let mut vm = Vm::start(&VmConfig {
        name: "rpi-raspi3b".into(),
        arch: Arch::Arm64,
        boot: Boot::Raspi3b { uboot, dtb, card },
        disks: Vec::new(),
        memory_mb: 1024,
        extras: Default::default(),
    })?;
    vm.expect(&format!("rkos-init: rkos {V1} started"), BOOT)
        .context("no kernel from U-Boot -> GRUB on the SD card (see the -uart1 log)")?;
    vm.expect(r"rkos-init: mode disk, boot volume /dev/mmcblk0p\d", BOOT)
        .context("rkos-init did not find its slot's state volume on the SD card")?;
    vm.expect(
        r"rkos-init: boot partition /dev/mmcblk0p\d: rkos/config.yaml",
        BOOT,
    )
    .context("rkos-init did not read the card's rkos/config.yaml")?;
    vm.expect(&format!("rkos-init: hostname {HOSTNAME}"), BOOT)
        .context("the host name of the card's rkos/config.yaml")?;
    vm.expect(r"rkos-init: total [0-9.]+ ms", BOOT)
        .context("rkos-init did not hand over to systemd")?;
    let to_init = vm.started.elapsed();
    // systemd runs the first boot's units: RKOS_DATA grows to the (bigger) card
    vm.expect(r"EXT4-fs \(mmcblk0p\d\): resized filesystem", BOOT)
        .context("RKOS_DATA did not grow on the card (rkos-grow-data.service)")?;
    let to_grow = vm.started.elapsed();
    // U-Boot starts on the PL011 and moves to the mini UART, where GRUB writes too
    let uart1 = fs::read_to_string(vm.log_path.with_file_name("rpi-raspi3b-uart1.log"))?;
    let both = format!("{}{uart1}", vm.transcript());
    for want in ["U-Boot 20", "RPI 3 Model B", "rkos (slot A)"] {
        ensure!(
            both.contains(want),
            "neither UART showed {want:?}; the mini UART:\n{uart1}"
        );
    }
    // Not asserted: a login prompt. The run that got this far stayed quiet after the grow
    // for 8 minutes (not diagnosed: docs/rpi.md).
    drop(vm);
    eprintln!(
        "figure: the Pi image on -M raspi3b: rkos-init done after {:.0} s, RKOS_DATA grown \
         after {:.0} s; whole test {:.0} s",
        to_init.as_secs_f64(),
        to_grow.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
