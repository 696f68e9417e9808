//! GRUB for BIOS and UEFI on the new disk, and its first boot configuration: rkos-slots'
//! `grub.cfg`, slot A as the default with nothing on trial, the kernel arguments.

use std::fs;
use std::path::Path;

use rkos_contract::arch_name;
use rkos_io::write_atomic;
use rkos_slots::{BootState, StateDir};

use crate::cmd;
use crate::target::p;
use crate::InstallError;

/// Kernel arguments every installed node boots with (GRUB's `rkos_cmdline`).
pub const BASE_CMDLINE: &str = "gpt";

/// GRUB's platforms for the machines an image of one arch boots on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrubPlatforms {
    /// The UEFI platform (`grub-install --target=`, `grub-mkimage --format=`); its modules
    /// are in `/usr/lib/grub/<efi>`, from the Debian package `efi_package`.
    pub efi: &'static str,
    pub efi_package: &'static str,
    /// The file the firmware boots from removable media, `EFI/BOOT/<efi_boot_file>` on the
    /// ESP: the installed disk needs no boot entry in the firmware's NVRAM.
    pub efi_boot_file: &'static str,
    /// The BIOS platform, where the arch has one (PCs); the BIOS boot partition stays in
    /// the layout either way, unused elsewhere.
    pub bios: Option<&'static str>,
}

impl GrubPlatforms {
    /// For an image of `arch` (Debian's name, as in its manifest); `None` for an arch rkos
    /// knows no GRUB for.
    pub fn for_arch(arch: &str) -> Option<GrubPlatforms> {
        match arch {
            arch_name::AMD64 => Some(GrubPlatforms {
                efi: "x86_64-efi",
                efi_package: "grub-efi-amd64-bin",
                efi_boot_file: "BOOTX64.EFI",
                bios: Some("i386-pc"),
            }),
            arch_name::ARM64 => Some(GrubPlatforms {
                efi: "arm64-efi",
                efi_package: "grub-efi-arm64-bin",
                efi_boot_file: "BOOTAA64.EFI",
                bios: None,
            }),
            _ => None,
        }
    }

    /// "BIOS and UEFI", or "UEFI".
    pub fn describe(&self) -> &'static str {
        if self.bios.is_some() {
            "BIOS and UEFI"
        } else {
            "UEFI"
        }
    }
}

/// GRUB's BIOS core image (platform `target`) in the BIOS boot partition, its modules in
/// `RKOS_STATE:/grub`.
pub(crate) fn install_bios(
    disk: &Path,
    state_mnt: &Path,
    grub_lib: &Path,
    target: &str,
) -> Result<(), InstallError> {
    // grub-install cannot map some devices (loop devices, some virtual disks) to a BIOS
    // drive by itself; a device map naming the target as the first disk settles it. It
    // serves only this run and is removed afterwards.
    let sd = StateDir::new(state_mnt);
    let map = sd.grub_dir().join("device.map");
    fs::create_dir_all(sd.grub_dir()).map_err(|e| InstallError::io(&sd.grub_dir(), e))?;
    fs::write(&map, format!("(hd0) {}\n", p(disk))).map_err(|e| InstallError::io(&map, e))?;
    cmd::run(
        "grub-install",
        &[
            &format!("--target={target}"),
            &format!("--directory={}", p(&grub_lib.join(target))),
            &format!("--boot-directory={}", p(state_mnt)),
            "--modules=part_gpt ext2",
            &p(disk),
        ],
    )?;
    fs::remove_file(&map).map_err(|e| InstallError::io(&map, e))
}

/// GRUB for UEFI, as `grub-install --target=<efi> --removable` would lay it out, but
/// written into the ESP with mtools instead of through a mount: `grub-install` insists on a
/// mounted FAT directory, and the ESP is the one file system the installer would otherwise
/// need the vfat driver for. The EFI image finds `RKOS_STATE` by UUID and loads its modules
/// and grub.cfg from there, like the BIOS image.
pub(crate) fn install_efi(
    platforms: &GrubPlatforms,
    grub_lib: &Path,
    esp: &Path,
    state_dev: &Path,
    state_mnt: &Path,
    work: &Path,
) -> Result<(), InstallError> {
    let efi = platforms.efi;
    let uuid = cmd::run("blkid", &["-s", "UUID", "-o", "value", &p(state_dev)])?
        .trim()
        .to_string();
    if uuid.is_empty() {
        return Err(InstallError::Target(format!(
            "{} has no UUID",
            state_dev.display()
        )));
    }
    let lib = grub_lib.join(efi);
    if !lib.join("normal.mod").exists() {
        return Err(InstallError::Target(format!(
            "{} is missing: the image needs the {} package (for an image of another arch, \
             the --grub-lib of its root filesystem)",
            lib.display(),
            platforms.efi_package
        )));
    }
    let mods = state_mnt.join("grub").join(efi);
    fs::create_dir_all(&mods).map_err(|e| InstallError::io(&mods, e))?;
    for e in fs::read_dir(&lib)
        .map_err(|e| InstallError::io(&lib, e))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".mod") || name.ends_with(".lst") {
            fs::copy(e.path(), mods.join(&name)).map_err(|err| InstallError::io(&e.path(), err))?;
        }
    }
    let early = work.join("efi-early.cfg");
    let cfg = format!("search --no-floppy --fs-uuid --set=root {uuid}\nset prefix=($root)/grub\n");
    fs::write(&early, cfg).map_err(|e| InstallError::io(&early, e))?;
    let image = work.join(platforms.efi_boot_file);
    cmd::run(
        "grub-mkimage",
        &[
            &format!("--format={efi}"),
            &format!("--directory={}", p(&lib)),
            &format!("--output={}", p(&image)),
            &format!("--config={}", p(&early)),
            "--prefix=/grub",
            "part_gpt",
            "part_msdos",
            "ext2",
            "fat",
            "search",
            "search_fs_uuid",
            "normal",
            "configfile",
        ],
    )?;
    let img = p(esp);
    cmd::run("mmd", &["-i", &img, "::/EFI", "::/EFI/BOOT"])?;
    cmd::run(
        "mcopy",
        &[
            "-i",
            &img,
            &p(&image),
            &format!("::/EFI/BOOT/{}", platforms.efi_boot_file),
        ],
    )?;
    Ok(())
}

/// The extra kernel arguments split into the consoles they name (`console=...`, in order)
/// and the rest.
fn split_consoles(extra: &str) -> (Vec<&str>, Vec<&str>) {
    extra
        .split_whitespace()
        .partition(|w| w.starts_with("console="))
}

/// rkos-slots' `grub.cfg`, the default boot state (slot A, nothing on trial) and the kernel
/// arguments in the GRUB environment. Consoles named in `extra_cmdline` replace grub.cfg's
/// default ones (`rkos_consoles`) rather than being added after them: the kernel's 8250
/// driver has one console, the first `ttyS` named, so `console=ttyS1` after the default
/// `console=ttyS0` would never be the console (the Raspberry Pi's mini UART, a PC's COM2).
pub(crate) fn write_boot_config(
    sd: &StateDir,
    extra_cmdline: Option<&str>,
) -> Result<(), InstallError> {
    write_atomic(&sd.grub_cfg(), rkos_slots::GRUB_CFG.as_bytes(), 0o644)
        .map_err(|e| InstallError::io(&sd.grub_cfg(), e))?;
    sd.write_boot_state(&BootState::default())?;
    // `gpt`: the kernel otherwise ignores a GPT whose protective MBR no longer matches the
    // disk's size, which is what a disk image written to a bigger disk (or a VM disk that
    // was enlarged) looks like until rkos-grow-data.service has run.
    let (consoles, rest) = split_consoles(extra_cmdline.unwrap_or_default());
    let cmdline = std::iter::once(BASE_CMDLINE)
        .chain(rest)
        .collect::<Vec<_>>()
        .join(" ");
    let mut env = sd.read_env()?;
    let too_big = |e| InstallError::Source(format!("kernel arguments: {e}"));
    env.set("rkos_cmdline", &cmdline).map_err(too_big)?;
    if consoles.is_empty() {
        env.unset("rkos_consoles");
    } else {
        env.set("rkos_consoles", &consoles.join(" "))
            .map_err(too_big)?;
    }
    let bytes = env
        .serialize()
        .map_err(|e| InstallError::Source(format!("kernel arguments: {e}")))?;
    write_atomic(&sd.grubenv(), &bytes, 0o644).map_err(|e| InstallError::io(&sd.grubenv(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_platforms_follow_the_arch() {
        let pc = GrubPlatforms::for_arch(arch_name::AMD64).unwrap();
        assert_eq!((pc.efi, pc.bios), ("x86_64-efi", Some("i386-pc")));
        assert_eq!(pc.efi_boot_file, "BOOTX64.EFI");
        assert_eq!(pc.describe(), "BIOS and UEFI");
        let arm = GrubPlatforms::for_arch(arch_name::ARM64).unwrap();
        assert_eq!((arm.efi, arm.bios), ("arm64-efi", None));
        assert_eq!(arm.efi_boot_file, "BOOTAA64.EFI");
        assert_eq!(arm.describe(), "UEFI");
        assert_eq!(GrubPlatforms::for_arch("riscv64"), None);
        assert_eq!(
            GrubPlatforms::for_arch("x86_64"),
            None,
            "Debian's names only"
        );
        // The machine the tests run on is one an image can be installed for.
        assert!(GrubPlatforms::for_arch(rkos_contract::arch()).is_some());
    }

    #[test]
    fn first_boot_configuration() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::new(t.path());
        fs::create_dir_all(sd.grub_dir()).unwrap();
        write_boot_config(&sd, Some("console=tty0 quiet console=ttyS1,9600")).unwrap();
        assert_eq!(
            fs::read_to_string(sd.grub_cfg()).unwrap(),
            rkos_slots::GRUB_CFG
        );
        assert_eq!(sd.boot_state().unwrap(), BootState::default());
        let env = sd.read_env().unwrap();
        assert_eq!(env.get("rkos_cmdline"), Some("gpt quiet"));
        assert_eq!(
            env.get("rkos_consoles"),
            Some("console=tty0 console=ttyS1,9600")
        );
        assert_eq!(env.get("rkos_default"), Some("A"));
        // GRUB reads a fixed 1024-byte block.
        assert_eq!(fs::metadata(sd.grubenv()).unwrap().len(), 1024);
        // No consoles named: grub.cfg's default ones.
        write_boot_config(&sd, Some("quiet")).unwrap();
        let env = sd.read_env().unwrap();
        assert_eq!(env.get("rkos_consoles"), None);
        assert_eq!(env.get("rkos_cmdline"), Some("gpt quiet"));
    }
}
