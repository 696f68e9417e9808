//! The Raspberry Pi image as a card reader sees it, checked on the host (no QEMU): the
//! partition table (GPT with the rkos layout, and a hybrid MBR whose FAT entry is the ESP,
//! which is all a Pi 3's boot ROM reads), the firmware partition's files (the Pi firmware for
//! the 3 and 4 families, U-Boot, the boards' device trees, `config.txt`'s keys, GRUB arm64-efi
//! where U-Boot looks for it, the `rkos/` folder for a config), slot A's arm64 manifest and
//! the kernel's serial console on the Pi's GPIO UART; then the first boot's grow of
//! `RKOS_DATA` (the installer's own code) on a bigger card, after which the hybrid MBR must
//! still be there, or a Pi 3 would not boot a second time.
//!
//! Needs RKOS_RPI_IMAGE (`make disk-image ARCH=arm64 BOARD=rpi K3S_STANDIN=1`), root (loop
//! devices), mtools and sgdisk. `make test-arm64` runs it. Built with the `qemu` feature.

use anyhow::{ensure, Context, Result};
use rkos_contract::label;
use rkos_tests::host::{ensure_root, gpt_partition, mtools_image, rpi_image, sh, Mount};
use rkos_tests::node::{p, Loop};
use std::fs;
use std::io::Read;
use std::path::Path;

/// One MBR partition entry: (type, first sector, sectors).
fn mbr_entries(disk: &Path) -> Result<Vec<(u8, u32, u32)>> {
    let mut bytes = [0u8; 512];
    fs::File::open(disk)?.read_exact(&mut bytes)?;
    ensure!(bytes[510..] == [0x55, 0xaa], "no MBR signature");
    Ok((0..4)
        .map(|i| {
            let e = &bytes[446 + 16 * i..462 + 16 * i];
            let u = |o: usize| u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]);
            (e[4], u(8), u(12))
        })
        .filter(|&(t, _, _)| t != 0)
        .collect())
}

/// The hybrid MBR: the ESP as a FAT32 (LBA) entry, first (the Pi's firmware boots from the
/// first FAT partition), and the GPT's protective entry from sector 1 (U-Boot, GRUB and
/// Linux read the GPT through it).
fn check_hybrid_mbr(disk: &Path, esp_first: u64) -> Result<()> {
    let mbr = mbr_entries(disk)?;
    ensure!(
        mbr.first().map(|e| e.0) == Some(0x0c),
        "the first MBR entry is not the FAT boot partition: {mbr:x?}"
    );
    ensure!(
        mbr.iter()
            .any(|&(t, first, _)| t == 0x0c && first as u64 == esp_first),
        "no FAT32 (0x0c) MBR entry at the ESP's sector {esp_first}: {mbr:x?}"
    );
    ensure!(
        mbr.iter().any(|&(t, first, _)| t == 0xee && first == 1),
        "no protective 0xee MBR entry from sector 1: {mbr:x?}"
    );
    Ok(())
}

/// The file `path` of the FAT file system `fat` (an [`mtools_image`]), copied out into `dir`.
fn fat_file(fat: &str, path: &str, dir: &Path) -> Result<Vec<u8>> {
    let to = dir.join(path.rsplit('/').next().context("a file name")?);
    sh("mcopy", &["-n", "-i", fat, path, p(&to)])?;
    Ok(fs::read(&to)?)
}

#[test]
fn rpi_image_has_the_pi_boot_chain_and_keeps_it_after_the_first_grow() -> Result<()> {
    ensure_root("loop devices")?;
    let image = rpi_image()?;

    // --- partitions ------------------------------------------------------------------------
    let (_, esp_first) = gpt_partition(&image, label::EFI)?;
    gpt_partition(&image, label::STATE)?;
    let (data, _) = gpt_partition(&image, label::DATA)?;
    check_hybrid_mbr(&image, esp_first)?;
    let fat = mtools_image(&image, label::EFI)?;

    // --- the firmware partition ------------------------------------------------------------
    let listing = sh("mdir", &["-/", "-b", "-i", &fat, "::/"])?;
    let has = |name: &str| {
        listing.lines().any(|l| {
            l.trim_end_matches('/')
                .eq_ignore_ascii_case(&format!("::/{name}"))
        })
    };
    for f in [
        "bootcode.bin",
        "start.elf",
        "fixup.dat",
        "start4.elf",
        "fixup4.dat",
        "u-boot.bin",
        "config.txt",
        "README.txt",
        "bcm2711-rpi-4-b.dtb",
        "bcm2711-rpi-400.dtb",
        "bcm2837-rpi-3-b.dtb",
        "bcm2837-rpi-3-b-plus.dtb",
        "EFI/BOOT/BOOTAA64.EFI",
        "rkos",
    ] {
        ensure!(has(f), "the boot partition lacks {f}:\n{listing}");
    }
    let config = sh("mtype", &["-i", &fat, "::/config.txt"])?;
    let keys: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for want in [
        "arm_64bit=1",
        "kernel=u-boot.bin",
        "enable_uart=1",
        "upstream_kernel=1",
    ] {
        ensure!(keys.contains(&want), "config.txt lacks {want}:\n{config}");
    }
    // GRUB is an arm64 EFI application (PE machine 0xaa64) where U-Boot's EFI boot looks
    let t = tempfile::tempdir()?;
    let pe = fat_file(&fat, "::/EFI/BOOT/BOOTAA64.EFI", t.path())?;
    let at = u32::from_le_bytes(pe[0x3c..0x40].try_into()?) as usize;
    ensure!(
        &pe[at..at + 4] == b"PE\0\0" && pe[at + 4..at + 6] == 0xaa64u16.to_le_bytes(),
        "BOOTAA64.EFI is not an arm64 EFI application"
    );
    let uboot = fat_file(&fat, "::/u-boot.bin", t.path())?;
    ensure!(
        uboot.windows(6).any(|w| w == b"U-Boot") && uboot.windows(3).any(|w| w == b"rpi"),
        "u-boot.bin is not Debian's U-Boot for the Pi"
    );

    // --- slot A, the kernel's console, and the first boot's grow on a bigger card -----------
    let card = t.path().join("card.img");
    sh("cp", &["--sparse=always", p(&image), p(&card)])?;
    sh("truncate", &["-s", "+1G", p(&card)])?;
    {
        let dev = Loop::attach(&card)?;
        let part = |n: u32| format!("{}p{n}", dev.0);
        let mnt = t.path().join("state");
        fs::create_dir_all(&mnt)?;
        let state_part = part(gpt_partition(&card, label::STATE)?.0);
        let m = Mount::new(&["-o", "ro", &state_part], &mnt)?;
        let manifest = fs::read_to_string(mnt.join("slots/A/manifest.json"))?;
        ensure!(
            manifest.contains("\"arm64\""),
            "slot A is not arm64: {manifest}"
        );
        let env = fs::read_to_string(mnt.join("grub/grubenv"))?;
        // The screen and the GPIO UART (last: /dev/console), replacing GRUB's platform list,
        // whose ttyS0 would take the kernel's one 8250 console away from ttyS1.
        ensure!(
            env.lines()
                .any(|l| l == "rkos_consoles=console=tty0 console=ttyS1,115200"),
            "the kernel gets no console on the Pi's GPIO UART (ttyS1) alone:\n{env}"
        );
        drop(m);
        let grown = rkos_install::grow::grow_data(Path::new(&dev.0), Path::new(&part(data)))?;
        ensure!(
            matches!(grown, rkos_install::grow::Grown::Grown { .. }),
            "RKOS_DATA did not grow on the bigger card: {grown:?}"
        );
    }
    check_hybrid_mbr(&card, esp_first).context("after the first boot's grow of RKOS_DATA")?;
    Ok(())
}
