//! The install itself: the steps in order, each with the real tools. Nothing here runs
//! before the caller's final confirmation; everything on the target is erased.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rkos_contract::{label, paths};
use rkos_io::{write_atomic, AtomicFile, HashWriter};
use rkos_slots::{human_size, FileEntry, Manifest, Slot, StateDir};

use crate::grub::{self, GrubPlatforms};
use crate::layout::{
    format_commands, partition_commands, partition_path, FileSystem, Layout, DATA, EFI, STATE,
};
use crate::target::{self, p};
use crate::{cmd, InstallError, InstallReport, InstallRequest, Progress};

/// Installs rkos as `req` says. On an error the new file systems are unmounted (and an
/// image's loop device detached); the target is left partly written.
pub fn run(
    req: &InstallRequest,
    progress: &mut dyn Progress,
) -> Result<InstallReport, InstallError> {
    let platforms = GrubPlatforms::for_arch(&req.source.arch).ok_or_else(|| {
        InstallError::Source(format!(
            "no GRUB platform known for arch {}; nothing was written",
            req.source.arch
        ))
    })?;
    let total = req.source.total_bytes()?;
    let layout = Layout::for_image(total);
    // Declared before the mounts, so dropped after them: unmount, then detach.
    let disk = target::open(&req.target, &layout)?;
    let work = tempfile::Builder::new()
        .prefix("rkos-install")
        .tempdir()
        .map_err(|e| InstallError::io(&std::env::temp_dir(), e))?;
    let dev = disk.dev.as_path();

    progress.step(&format!(
        "partitioning {} (GPT)",
        req.target.path().display()
    ));
    cmd::run("wipefs", &["--all", "--quiet", &p(dev)])?;
    for args in partition_commands(dev, &layout) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cmd::run("sgdisk", &args)?;
    }
    target::reread_partitions(dev, &layout)?;

    progress.step(&format!(
        "making file systems ({})",
        describe_file_systems(&layout)
    ));
    for (prog, args) in format_commands(dev, &layout) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cmd::run(prog, &args)?;
    }
    let state_dev = partition_path(dev, STATE.gpt.number);
    let mut mounts = Mounts(Vec::new());
    let m_state = work.path().join("state");
    let m_data = work.path().join("data");
    mounts.mount(&state_dev, &m_state, "ext4")?;
    mounts.mount(&partition_path(dev, DATA.gpt.number), &m_data, "ext4")?;

    progress.step(&format!(
        "copying {} {} into slot A ({})",
        req.source.version,
        req.source.arch,
        human_size(total)
    ));
    let sd = StateDir::new(&m_state);
    let manifest = write_slot_a(req, &sd, progress, total)?;

    progress.step(&format!("installing GRUB for {}", platforms.describe()));
    if let Some(bios) = platforms.bios {
        grub::install_bios(dev, &m_state, &req.source.grub_lib, bios)?;
    }
    grub::install_efi(
        &platforms,
        &req.source.grub_lib,
        &partition_path(dev, EFI.gpt.number),
        &state_dev,
        &m_state,
        work.path(),
    )?;
    grub::write_boot_config(&sd, req.extra_cmdline.as_deref())?;

    progress.step(&format!(
        "writing the config to {}:{}",
        label::DATA,
        paths::PERSISTENT_CONFIG
    ));
    write_data(req, &m_data, &layout, disk.bytes)?;

    progress.step("syncing and unmounting");
    cmd::run("sync", &[])?;
    mounts.unmount_all()?;
    Ok(InstallReport {
        target: req.target.path().to_path_buf(),
        manifest,
        layout,
        disk_bytes: disk.bytes,
    })
}

/// "vfat RKOS_EFI, ext4 RKOS_STATE, ext4 RKOS_DATA"
fn describe_file_systems(layout: &Layout) -> String {
    layout
        .partitions()
        .iter()
        .filter_map(|(part, _)| match part.fs {
            FileSystem::None => None,
            FileSystem::Vfat { label } => Some(format!("vfat {label}")),
            FileSystem::Ext4 { label, .. } => Some(format!("ext4 {label}")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies the OS files into slot A (sha256 on the way), then writes its manifest; creates
/// the empty slot B.
fn write_slot_a(
    req: &InstallRequest,
    sd: &StateDir,
    progress: &mut dyn Progress,
    total: u64,
) -> Result<Manifest, InstallError> {
    let slot = sd.slot_dir(Slot::A);
    fs::create_dir_all(&slot).map_err(|e| InstallError::io(&slot, e))?;
    let slot_b = sd.slot_dir(Slot::B);
    fs::create_dir_all(&slot_b).map_err(|e| InstallError::io(&slot_b, e))?;
    let mut done = 0;
    let mut files = Vec::new();
    for (name, from) in req.source.files() {
        let to = slot.join(name);
        let copied = copy_hashed(from, &to, &mut |n| {
            done += n;
            progress.bytes(done, total);
        })
        .map_err(|source| InstallError::Copy {
            from: from.to_path_buf(),
            to: to.clone(),
            source,
        })?;
        files.push(FileEntry {
            name: name.to_string(),
            size: copied.size,
            sha256: copied.sha256,
        });
    }
    let manifest = Manifest {
        version: req.source.version.clone(),
        min_version: None,
        arch: req.source.arch.clone(),
        files,
    };
    manifest
        .validate()
        .map_err(|e| InstallError::Source(e.to_string()))?;
    write_atomic(&sd.manifest(Slot::A), &manifest.to_json(), 0o644)
        .map_err(|e| InstallError::io(&sd.manifest(Slot::A), e))?;
    Ok(manifest)
}

/// Copies `from` to `to` through a temporary name, hashing on the way; fsynced.
fn copy_hashed(
    from: &Path,
    to: &Path,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<rkos_io::Hashed> {
    let src = fs::File::open(from)?;
    let mut out = HashWriter::new(AtomicFile::new(to, 0o644)?);
    rkos_io::copy(src, &mut out, progress)?;
    let (file, hashed) = out.finish();
    file.commit()?;
    Ok(hashed)
}

/// The node's config (0600 in a 0700 directory) and the installer's stamp on `RKOS_DATA`.
fn write_data(
    req: &InstallRequest,
    m_data: &Path,
    layout: &Layout,
    disk_bytes: u64,
) -> Result<(), InstallError> {
    // Each persistent path P is RKOS_DATA:/P.
    let cfg_dir = paths::under(m_data, paths::VAR_LIB_RKOS);
    fs::create_dir_all(&cfg_dir).map_err(|e| InstallError::io(&cfg_dir, e))?;
    fs::set_permissions(&cfg_dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| InstallError::io(&cfg_dir, e))?;
    let cfg = paths::under(m_data, paths::PERSISTENT_CONFIG);
    write_atomic(&cfg, req.config_yaml.as_bytes(), 0o600).map_err(|e| InstallError::io(&cfg, e))?;
    // Marks the data volume as made by this installer, with the layout, for `rkos status`
    // and for the grow service (which only touches a disk that carries it).
    let stamp = paths::under(m_data, paths::INSTALLED_STAMP);
    let info = serde_json::json!({
        "version": req.source.version,
        "disk_bytes": disk_bytes,
        "state_mib": layout.state_mib,
    });
    write_atomic(&stamp, info.to_string().as_bytes(), 0o644)
        .map_err(|e| InstallError::io(&stamp, e))
}

/// Mounted file systems of the install, unmounted in reverse order on drop (also on error,
/// so a failed install does not leave the new disk mounted).
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn mount(&mut self, dev: &Path, at: &Path, fstype: &str) -> Result<(), InstallError> {
        fs::create_dir_all(at).map_err(|e| InstallError::io(at, e))?;
        cmd::run("mount", &["-t", fstype, &p(dev), &p(at)])?;
        self.0.push(at.to_path_buf());
        Ok(())
    }

    fn unmount_all(&mut self) -> Result<(), InstallError> {
        let mut first_err = None;
        while let Some(at) = self.0.pop() {
            if let Err(e) = cmd::run("umount", &[&p(&at)]) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), |e| Err(e.into()))
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = self.unmount_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_systems_step_names_each_one() {
        assert_eq!(
            describe_file_systems(&Layout::for_image(0)),
            "vfat RKOS_EFI, ext4 RKOS_STATE, ext4 RKOS_DATA"
        );
    }

    #[test]
    fn an_arch_without_grub_is_refused_before_anything_is_written() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("medium");
        fs::create_dir_all(&src).unwrap();
        for f in ["vmlinuz", "initrd", "rootfs.squashfs"] {
            fs::write(src.join(f), b"x").unwrap();
        }
        let image = t.path().join("disk.img");
        let req = InstallRequest {
            target: crate::Target::Image {
                path: image.clone(),
                size_bytes: 8 << 30,
            },
            source: crate::Source::from_dir(&src, "1", "riscv64").unwrap(),
            config_yaml: String::new(),
            extra_cmdline: None,
        };
        let err = run(&req, &mut crate::LogProgress).unwrap_err().to_string();
        assert!(err.contains("arch riscv64"), "{err}");
        assert!(!image.exists());
    }

    #[test]
    fn slot_a_is_copied_hashed_with_its_manifest() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("medium");
        fs::create_dir_all(src.join("boot")).unwrap();
        fs::write(src.join("boot/vmlinuz"), b"kernel").unwrap();
        fs::write(src.join("boot/initrd"), b"initrd").unwrap();
        fs::write(src.join("rootfs.squashfs"), b"hello\n").unwrap();
        let req = InstallRequest {
            target: crate::Target::Device("/dev/null".into()),
            source: crate::Source::from_dir(&src, "1.2.3", "amd64").unwrap(),
            config_yaml: String::new(),
            extra_cmdline: None,
        };
        let sd = StateDir::new(t.path().join("state"));
        struct Count(u64, u64);
        impl Progress for Count {
            fn step(&mut self, _: &str) {}
            fn bytes(&mut self, done: u64, total: u64) {
                self.0 = done;
                self.1 = total;
            }
        }
        let mut count = Count(0, 0);
        let m = write_slot_a(&req, &sd, &mut count, 18).unwrap();
        assert_eq!((count.0, count.1), (18, 18));
        assert_eq!(sd.read_manifest(Slot::A).unwrap().as_ref(), Some(&m));
        let rootfs = m.file("rootfs.squashfs").unwrap();
        assert_eq!(
            rootfs.sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        for f in &m.files {
            rkos_io::verify_file(&sd.slot_dir(Slot::A).join(&f.name), f.size, &f.sha256).unwrap();
        }
        assert!(sd.slot_dir(Slot::B).is_dir());
        // Only the three files and the manifest: no temporaries left.
        assert_eq!(fs::read_dir(sd.slot_dir(Slot::A)).unwrap().count(), 4);
    }
}
