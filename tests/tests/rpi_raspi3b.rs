//! The Raspberry Pi image on QEMU's Raspberry Pi 3 board (`-M raspi3b`), as far as QEMU
//! goes: QEMU cannot run the Pi's GPU firmware (`start.elf` reading `config.txt`), so it
//! starts what that firmware would start — the image's own `u-boot.bin` with the image's
//! own `bcm2837-rpi-3-b.dtb`, both read off the card's FAT partition — with the image as the
//! SD card. From there it is the real chain: U-Boot's Pi drivers read the SD card, its UEFI
//! runs GRUB from the ESP (both on the mini UART), GRUB boots slot A, and rkos-init must find
//! its slot on the MMC device, read the config dropped on the FAT partition (the host name)
//! and hand over to systemd, which grows `RKOS_DATA` on the bigger card; then the login
//! prompt, on the mini UART (`ttyS1`, the console on a Pi's GPIO pins, which the test reads
//! as a serial cable would), and a shell there. QEMU's board resets the moment Linux arms
//! the BCM2835 watchdog, so that driver is left out of this boot
//! (`modprobe.blacklist=bcm2835_wdt`, through GRUB's environment on the card).
//!
//! Needs RKOS_RPI_IMAGE (`make disk-image ARCH=arm64 BOARD=rpi K3S_STANDIN=1`), QEMU for
//! aarch64, mtools, sgdisk, root (a loop device). `make test-arm64` runs it. Built with the `qemu` feature.

use anyhow::{ensure, Context, Result};
use rkos_contract::label;
use rkos_tests::host::{ensure_root, mtools_image, rpi_image, sh};
use rkos_tests::node::{edit_grubenv, login_within, p, V1};
use rkos_tests::qemu::{Arch, Boot, Vm, VmConfig};
use std::fs;
use std::time::{Duration, Instant};

/// Four emulated Cortex-A53 on a 2-core host: slower than the `virt` board.
const BOOT: Duration = Duration::from_secs(1800);
const CMD: Duration = Duration::from_secs(180);
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
    edit_grubenv(&card, dir, |env| {
        let args = env.get("rkos_cmdline").unwrap_or_default().to_string();
        env.set(
            "rkos_cmdline",
            &format!("{args} modprobe.blacklist=bcm2835_wdt"),
        )?;
        Ok(())
    })?;
    let mut vm = Vm::start(&VmConfig {
        name: "rpi-raspi3b".into(),
        arch: Arch::Arm64,
        boot: Boot::Raspi3b { uboot, dtb, card },
        disks: Vec::new(),
        memory_mb: 1024,
        extras: Default::default(),
    })?;
    vm.expect(&format!("rkos-init: rkos {V1} started"), BOOT)
        .context(
            "no kernel on the mini UART from U-Boot -> GRUB on the SD card (see the -uart0 log)",
        )?;
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
    // The login on the GPIO pins' UART, where a Pi owner's serial cable is. The prompt came
    // before the grow's last lines (and was read past): Enter asks agetty for a new one.
    vm.send("\n")?;
    login_within(&mut vm, PASSWORD, BOOT)?;
    let to_login = vm.started.elapsed();
    let host = vm.run_ok("hostname", CMD)?;
    ensure!(host.trim() == HOSTNAME, "the host name is {host:?}");
    let tty = vm.run_ok("tty; cat /sys/class/tty/console/active", CMD)?;
    ensure!(
        tty.contains("/dev/ttyS1") && !tty.contains("ttyAMA0"),
        "the login is not on the mini UART alone: {tty}"
    );
    let model = vm.run_ok("tr -d '\\0' < /proc/device-tree/model", CMD)?;
    ensure!(
        model.contains("Raspberry Pi 3 Model B"),
        "the device tree's model: {model}"
    );
    // U-Boot starts on the PL011 and moves to the mini UART, where GRUB writes too
    let uart0 = fs::read_to_string(vm.log_path.with_file_name("rpi-raspi3b-uart0.log"))?;
    let both = format!("{}{uart0}", vm.transcript());
    for want in ["U-Boot 20", "RPI 3 Model B", "rkos (slot A)"] {
        ensure!(
            both.contains(want),
            "neither UART showed {want:?}; the PL011:\n{uart0}"
        );
    }
    vm.send("sudo systemctl poweroff\n")?;
    vm.clean_shutdown("the Pi 3", "reboot: Power down", CMD)?;
    drop(vm);
    eprintln!(
        "figure: the Pi image on -M raspi3b: rkos-init done after {:.0} s, RKOS_DATA grown \
         after {:.0} s, login prompt after {:.0} s; whole test {:.0} s",
        to_init.as_secs_f64(),
        to_grow.as_secs_f64(),
        to_login.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
