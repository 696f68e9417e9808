//! Install to disk: GPT, file systems, slot A, GRUB for BIOS and UEFI, the config.
//!
//! The layout and the command lines are computed by pure functions ([`Layout`],
//! [`partition_commands`], [`partition_path`]); [`install`] runs them with the real tools
//! (sgdisk, partx, mkfs.vfat, mkfs.ext4, mount, grub-install), so the result is exactly what
//! an operator would get by hand. Nothing here runs before the caller's final confirmation.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rkos_slots::{BootState, FileEntry, Manifest, Slot, StateDir};
use sha2::{Digest, Sha256};

use crate::atomic::write_atomic;
use crate::disks::{human_size, MIN_DISK_BYTES};

pub const LABEL_EFI: &str = "RKOS_EFI";
pub const LABEL_STATE: &str = "RKOS_STATE";
pub const LABEL_DATA: &str = "RKOS_DATA";
/// Partition numbers of the layout (the grow service relies on DATA being the 4th).
pub const PART_BIOS: u32 = 1;
pub const PART_EFI: u32 = 2;
pub const PART_STATE: u32 = 3;
pub const PART_DATA: u32 = 4;

const MIB: u64 = 1 << 20;

/// Kernel arguments every installed node boots with (GRUB's `rkos_cmdline`).
pub const BASE_CMDLINE: &str = "gpt";

/// Partition sizes in MiB. `RKOS_STATE` holds two slots plus the staging copy of an upgrade
/// being downloaded; it is sized from the image so a bigger future image still fits, with a
/// floor of 2 GiB. DATA takes the rest (and grows on first boot if the disk grew).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub bios_mib: u64,
    pub esp_mib: u64,
    pub state_mib: u64,
}

impl Layout {
    pub fn for_image(slot_bytes: u64) -> Layout {
        let need = slot_bytes.saturating_mul(3).div_ceil(MIB) + 256;
        Layout {
            bios_mib: 1,
            esp_mib: 64,
            state_mib: need.max(2048).next_multiple_of(256),
        }
    }

    /// Everything but DATA, plus the 1 MiB alignment gap in front and GPT's backup at the end.
    pub fn fixed_bytes(&self) -> u64 {
        (1 + self.bios_mib + self.esp_mib + self.state_mib + 1) * MIB
    }

    /// The disk must hold the fixed partitions and at least 1 GiB of DATA, and never less
    /// than [`MIN_DISK_BYTES`].
    pub fn min_disk_bytes(&self) -> u64 {
        (self.fixed_bytes() + (1 << 30)).max(MIN_DISK_BYTES)
    }
}

/// `/dev/sda` + 1 -> `/dev/sda1`; `/dev/nvme0n1`, `/dev/loop0`, `/dev/mmcblk0` + 1 -> `...p1`
/// (the kernel adds `p` when the disk name ends in a digit).
pub fn partition_path(disk: &Path, n: u32) -> PathBuf {
    let s = disk.to_string_lossy();
    if s.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{s}p{n}"))
    } else {
        PathBuf::from(format!("{s}{n}"))
    }
}

/// The sgdisk invocations that lay out `disk` (arguments after `sgdisk`).
pub fn partition_commands(disk: &Path, l: &Layout) -> Vec<Vec<String>> {
    let d = disk.to_string_lossy().into_owned();
    vec![
        vec!["--zap-all".into(), d.clone()],
        vec![
            "--clear".into(),
            "--set-alignment=2048".into(),
            format!("--new={PART_BIOS}:1M:+{}M", l.bios_mib),
            format!("--typecode={PART_BIOS}:EF02"),
            format!("--change-name={PART_BIOS}:BIOS"),
            format!("--new={PART_EFI}:0:+{}M", l.esp_mib),
            format!("--typecode={PART_EFI}:EF00"),
            format!("--change-name={PART_EFI}:{LABEL_EFI}"),
            format!("--new={PART_STATE}:0:+{}M", l.state_mib),
            format!("--typecode={PART_STATE}:8300"),
            format!("--change-name={PART_STATE}:{LABEL_STATE}"),
            format!("--new={PART_DATA}:0:0"),
            format!("--typecode={PART_DATA}:8300"),
            format!("--change-name={PART_DATA}:{LABEL_DATA}"),
            d,
        ],
    ]
}

/// Where the OS files come from: the live medium (`/run/rkos/medium` on the ISO: its
/// `boot/vmlinuz`, `boot/initrd`, `rootfs.squashfs`) or any directory laid out the same way.
#[derive(Debug, Clone)]
pub struct Source {
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    pub rootfs: PathBuf,
    pub version: String,
    pub arch: String,
}

impl Source {
    /// The ISO layout under `dir`; also accepts a slot layout (`vmlinuz`, `initrd` at top).
    pub fn from_dir(dir: &Path, version: &str, arch: &str) -> Result<Source, InstallError> {
        let pick = |a: &str, b: &str| -> Result<PathBuf, InstallError> {
            [dir.join(a), dir.join(b)]
                .into_iter()
                .find(|p| p.is_file())
                .ok_or_else(|| InstallError::Source(format!("no {a} or {b} in {}", dir.display())))
        };
        Ok(Source {
            vmlinuz: pick("boot/vmlinuz", "vmlinuz")?,
            initrd: pick("boot/initrd", "initrd")?,
            rootfs: pick("rootfs.squashfs", "rootfs.squashfs")?,
            version: version.to_string(),
            arch: arch.to_string(),
        })
    }

    fn files(&self) -> [(&'static str, &Path); 3] {
        [
            ("vmlinuz", self.vmlinuz.as_path()),
            ("initrd", self.initrd.as_path()),
            ("rootfs.squashfs", self.rootfs.as_path()),
        ]
    }

    pub fn total_bytes(&self) -> Result<u64, InstallError> {
        let mut total = 0;
        for (_, p) in self.files() {
            total += fs::metadata(p).map_err(|e| InstallError::io(p, e))?.len();
        }
        Ok(total)
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub disk: PathBuf,
    pub source: Source,
    /// The node's config, written to `RKOS_DATA:/var/lib/rkos/config.yaml` (0600).
    pub config_yaml: String,
    /// Extra kernel arguments kept in GRUB's environment (`rkos_cmdline`), e.g. a console.
    pub extra_cmdline: Option<String>,
    /// Where to mount the new file systems while installing.
    pub work_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Source(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("{0}")]
    Target(String),
    #[error(transparent)]
    Slots(#[from] rkos_slots::StateError),
}

impl InstallError {
    fn io(p: &Path, e: io::Error) -> Self {
        InstallError::Io {
            path: p.to_path_buf(),
            source: e,
        }
    }
}

/// Progress of the long steps; the UI shows it with indicatif, the unattended path logs it.
pub trait Progress {
    fn step(&mut self, what: &str);
    /// Bytes copied in the current step, out of `total`.
    fn bytes(&mut self, done: u64, total: u64);
}

/// A [`Progress`] that logs each step through tracing.
pub struct LogProgress;

impl Progress for LogProgress {
    fn step(&mut self, what: &str) {
        tracing::info!("install: {what}");
    }
    fn bytes(&mut self, _: u64, _: u64) {}
}

fn run(cmd: &str, args: &[String]) -> Result<String, InstallError> {
    tracing::debug!("running {cmd} {}", args.join(" "));
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| InstallError::Command {
            cmd: cmd.to_string(),
            status: "could not start".into(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(InstallError::Command {
            cmd: format!("{cmd} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s<I: IntoIterator<Item = T>, T: AsRef<str>>(v: I) -> Vec<String> {
    v.into_iter().map(|x| x.as_ref().to_string()).collect()
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Size of a block device (or a plain file, for images).
pub fn device_size(dev: &Path) -> Result<u64, InstallError> {
    let out = run("blockdev", &s(["--getsize64", &p(dev)]))?;
    out.trim()
        .parse()
        .map_err(|_| InstallError::Target(format!("cannot read the size of {}", dev.display())))
}

/// Refuses a target that is not a block device, is too small, or has a mounted partition.
pub fn check_target(disk: &Path, layout: &Layout) -> Result<u64, InstallError> {
    let meta = fs::metadata(disk).map_err(|e| InstallError::io(disk, e))?;
    if !meta.file_type().is_block_device() {
        return Err(InstallError::Target(format!(
            "{} is not a block device",
            disk.display()
        )));
    }
    let size = device_size(disk)?;
    if size < layout.min_disk_bytes() {
        return Err(InstallError::Target(format!(
            "{} is too small: {} (this image needs at least {})",
            disk.display(),
            human_size(size),
            human_size(layout.min_disk_bytes())
        )));
    }
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let canon = fs::canonicalize(disk).unwrap_or_else(|_| disk.to_path_buf());
    let canon = p(&canon);
    for line in mounts.lines() {
        let src = line.split_whitespace().next().unwrap_or("");
        let src_canon = fs::canonicalize(src).map(|c| p(&c)).unwrap_or_default();
        if src_canon == canon || is_partition_of(&src_canon, &canon) {
            return Err(InstallError::Target(format!(
                "{} is in use: {src} is mounted; unmount it first",
                disk.display()
            )));
        }
    }
    Ok(size)
}

/// Whether `part` names a partition of `disk` (`/dev/sda1` of `/dev/sda`, `/dev/loop1p2` of
/// `/dev/loop1`, but not `/dev/loop10` of `/dev/loop1`).
fn is_partition_of(part: &str, disk: &str) -> bool {
    let Some(rest) = part.strip_prefix(disk) else {
        return false;
    };
    let digits = if disk.ends_with(|c: char| c.is_ascii_digit()) {
        match rest.strip_prefix('p') {
            Some(d) => d,
            None => return false,
        }
    } else {
        rest
    };
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Mounted file systems of the install, unmounted in reverse order on drop (also on error,
/// so a failed install does not leave the new disk mounted).
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn mount(&mut self, dev: &Path, at: &Path, fstype: &str) -> Result<(), InstallError> {
        fs::create_dir_all(at).map_err(|e| InstallError::io(at, e))?;
        run("mount", &s(["-t", fstype, &p(dev), &p(at)]))?;
        self.0.push(at.to_path_buf());
        Ok(())
    }
    fn unmount_all(&mut self) -> Result<(), InstallError> {
        let mut first_err = None;
        while let Some(at) = self.0.pop() {
            if let Err(e) = run("umount", &s([p(&at)])) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = self.unmount_all();
    }
}

fn wait_for(paths: &[PathBuf], timeout: Duration) -> Result<(), InstallError> {
    let start = Instant::now();
    loop {
        let missing: Vec<_> = paths.iter().filter(|p| !p.exists()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(InstallError::Target(format!(
                "the new partitions did not appear: {}",
                missing
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies `from` to `to` through a temporary name, hashing on the way; fsyncs.
fn copy_hashed(
    from: &Path,
    to: &Path,
    progress: &mut dyn Progress,
    done: &mut u64,
    total: u64,
) -> Result<FileEntry, InstallError> {
    let tmp = to.with_extension("part");
    let mut src = fs::File::open(from).map_err(|e| InstallError::io(from, e))?;
    let mut dst = fs::File::create(&tmp).map_err(|e| InstallError::io(&tmp, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(|e| InstallError::io(from, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])
            .map_err(|e| InstallError::io(&tmp, e))?;
        size += n as u64;
        *done += n as u64;
        progress.bytes(*done, total);
    }
    dst.sync_all().map_err(|e| InstallError::io(&tmp, e))?;
    fs::rename(&tmp, to).map_err(|e| InstallError::io(to, e))?;
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(FileEntry { name, size, sha256 })
}

/// GRUB for UEFI, as `grub-install --target=x86_64-efi --removable` would lay it out, but
/// written into the ESP with mtools instead of through a mount: `grub-install` insists on a
/// mounted FAT directory, and the ESP is the one file system the installer would otherwise
/// need the vfat driver for. The EFI image finds `RKOS_STATE` by UUID and loads its modules
/// and grub.cfg from there, like the BIOS image.
fn install_efi(
    esp: &Path,
    state_dev: &Path,
    state_mnt: &Path,
    work: &Path,
) -> Result<(), InstallError> {
    let uuid = run("blkid", &s(["-s", "UUID", "-o", "value", &p(state_dev)]))?
        .trim()
        .to_string();
    if uuid.is_empty() {
        return Err(InstallError::Target(format!(
            "{} has no UUID",
            state_dev.display()
        )));
    }
    let lib = Path::new("/usr/lib/grub/x86_64-efi");
    if !lib.join("normal.mod").exists() {
        return Err(InstallError::Target(format!(
            "{} is missing: the image needs the grub-efi-amd64-bin package",
            lib.display()
        )));
    }
    let mods = state_mnt.join("grub/x86_64-efi");
    fs::create_dir_all(&mods).map_err(|e| InstallError::io(&mods, e))?;
    for e in fs::read_dir(lib)
        .map_err(|e| InstallError::io(lib, e))?
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
    let image = work.join("BOOTX64.EFI");
    run(
        "grub-mkimage",
        &s([
            "--format=x86_64-efi",
            &format!("--directory={}", p(lib)),
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
        ]),
    )?;
    let img = p(esp);
    run("mmd", &s(["-i", &img, "::/EFI", "::/EFI/BOOT"]))?;
    run(
        "mcopy",
        &s(["-i", &img, &p(&image), "::/EFI/BOOT/BOOTX64.EFI"]),
    )?;
    Ok(())
}

/// What the install did, for the report and the tests.
#[derive(Debug, Clone)]
pub struct Installed {
    pub manifest: Manifest,
    pub layout: Layout,
    pub disk_bytes: u64,
}

/// Installs onto `req.disk`. Everything on it is erased.
pub fn install(req: &Request, progress: &mut dyn Progress) -> Result<Installed, InstallError> {
    let total = req.source.total_bytes()?;
    let layout = Layout::for_image(total);
    let disk_bytes = check_target(&req.disk, &layout)?;

    progress.step(&format!("partitioning {} (GPT)", req.disk.display()));
    run("wipefs", &s(["--all", "--quiet", &p(&req.disk)]))?;
    for args in partition_commands(&req.disk, &layout) {
        run("sgdisk", &args)?;
    }
    // The kernel must see the new table; partx works for loop devices too, where partprobe
    // may not. Then udev (if any) settles and the nodes appear.
    let _ = run("partx", &s(["--update", &p(&req.disk)]));
    if run("partx", &s(["--show", &p(&req.disk)])).is_err() {
        let _ = run("partx", &s(["--add", &p(&req.disk)]));
    }
    let _ = run("udevadm", &s(["settle", "--timeout=10"]));
    let parts: Vec<PathBuf> = (1..=4).map(|n| partition_path(&req.disk, n)).collect();
    wait_for(&parts, Duration::from_secs(15))?;
    let (efi, state, data) = (&parts[1], &parts[2], &parts[3]);

    progress.step("making file systems (vfat RKOS_EFI, ext4 RKOS_STATE, ext4 RKOS_DATA)");
    run("mkfs.vfat", &s(["-F", "32", "-n", LABEL_EFI, &p(efi)]))?;
    run(
        "mkfs.ext4",
        &s(["-q", "-F", "-m", "0", "-L", LABEL_STATE, &p(state)]),
    )?;
    run("mkfs.ext4", &s(["-q", "-F", "-L", LABEL_DATA, &p(data)]))?;

    let mut mounts = Mounts(Vec::new());
    let m_state = req.work_dir.join("state");
    let m_data = req.work_dir.join("data");
    mounts.mount(state, &m_state, "ext4")?;
    mounts.mount(data, &m_data, "ext4")?;

    progress.step(&format!(
        "copying {} {} into slot A ({})",
        req.source.version,
        req.source.arch,
        human_size(total)
    ));
    let sd = StateDir::new(&m_state);
    let slot = sd.slot_dir(Slot::A);
    fs::create_dir_all(&slot).map_err(|e| InstallError::io(&slot, e))?;
    fs::create_dir_all(sd.slot_dir(Slot::B)).map_err(|e| InstallError::io(&slot, e))?;
    let mut done = 0;
    let mut files = Vec::new();
    for (name, from) in req.source.files() {
        files.push(copy_hashed(
            from,
            &slot.join(name),
            progress,
            &mut done,
            total,
        )?);
    }
    let manifest = Manifest {
        version: req.source.version.clone(),
        arch: req.source.arch.clone(),
        files,
    };
    manifest
        .validate()
        .map_err(|e| InstallError::Source(e.to_string()))?;
    write_atomic(&sd.manifest(Slot::A), &manifest.to_json(), 0o644)
        .map_err(|e| InstallError::io(&sd.manifest(Slot::A), e))?;

    progress.step("installing GRUB for BIOS and UEFI");
    // grub-install cannot map some devices (loop devices, some virtual disks) to a BIOS
    // drive by itself; a device map naming the target as the first disk settles it. It
    // serves only this run and is removed afterwards.
    let map = sd.grub_dir().join("device.map");
    fs::create_dir_all(sd.grub_dir()).map_err(|e| InstallError::io(&sd.grub_dir(), e))?;
    fs::write(&map, format!("(hd0) {}\n", p(&req.disk))).map_err(|e| InstallError::io(&map, e))?;
    run(
        "grub-install",
        &s([
            "--target=i386-pc",
            &format!("--boot-directory={}", p(&m_state)),
            "--modules=part_gpt ext2",
            &p(&req.disk),
        ]),
    )?;
    fs::remove_file(&map).map_err(|e| InstallError::io(&map, e))?;
    install_efi(efi, state, &m_state, &req.work_dir)?;
    write_atomic(&sd.grub_cfg(), rkos_slots::GRUB_CFG.as_bytes(), 0o644)
        .map_err(|e| InstallError::io(&sd.grub_cfg(), e))?;
    sd.write_boot_state(&BootState::default())?;
    // `gpt`: the kernel otherwise ignores a GPT whose protective MBR no longer matches the
    // disk's size, which is what a disk image written to a bigger disk (or a VM disk that
    // was enlarged) looks like until rkos-grow-data.service has run.
    let cmdline = match &req.extra_cmdline {
        Some(extra) => format!("{BASE_CMDLINE} {extra}"),
        None => BASE_CMDLINE.to_string(),
    };
    let mut env = sd.read_env()?;
    env.set("rkos_cmdline", &cmdline)
        .map_err(|e| InstallError::Source(format!("kernel arguments: {e}")))?;
    let bytes = env
        .serialize()
        .map_err(|e| InstallError::Source(format!("kernel arguments: {e}")))?;
    write_atomic(&sd.grubenv(), &bytes, 0o644).map_err(|e| InstallError::io(&sd.grubenv(), e))?;

    progress.step("writing the config to RKOS_DATA:/var/lib/rkos/config.yaml");
    let cfg_dir = m_data.join("var/lib/rkos");
    fs::create_dir_all(&cfg_dir).map_err(|e| InstallError::io(&cfg_dir, e))?;
    fs::set_permissions(&cfg_dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| InstallError::io(&cfg_dir, e))?;
    write_atomic(
        &cfg_dir.join("config.yaml"),
        req.config_yaml.as_bytes(),
        0o600,
    )
    .map_err(|e| InstallError::io(&cfg_dir, e))?;
    // Marks the data volume as made by this installer, with the layout, for `rkos status`
    // and for the grow service (which only touches a disk that carries it).
    let stamp = m_data.join("var/lib/rkos/installed.json");
    let info = serde_json::json!({
        "version": req.source.version,
        "disk_bytes": disk_bytes,
        "state_mib": layout.state_mib,
    });
    write_atomic(&stamp, info.to_string().as_bytes(), 0o644)
        .map_err(|e| InstallError::io(&stamp, e))?;

    progress.step("syncing and unmounting");
    run("sync", &[])?;
    mounts.unmount_all()?;
    Ok(Installed {
        manifest,
        layout,
        disk_bytes,
    })
}

/// Opens `path` for writing with `mode` set at creation (used by [`crate::atomic`]).
pub(crate) fn create_with_mode(path: &Path, mode: u32) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        assert_eq!(
            partition_path(Path::new("/dev/sda"), 4),
            Path::new("/dev/sda4")
        );
        assert_eq!(
            partition_path(Path::new("/dev/vdb"), 1),
            Path::new("/dev/vdb1")
        );
        assert_eq!(
            partition_path(Path::new("/dev/nvme0n1"), 2),
            Path::new("/dev/nvme0n1p2")
        );
        assert_eq!(
            partition_path(Path::new("/dev/loop7"), 3),
            Path::new("/dev/loop7p3")
        );
        assert_eq!(
            partition_path(Path::new("/dev/mmcblk0"), 1),
            Path::new("/dev/mmcblk0p1")
        );
    }

    #[test]
    fn partitions_of_a_disk() {
        assert!(is_partition_of("/dev/sda1", "/dev/sda"));
        assert!(is_partition_of("/dev/loop1p2", "/dev/loop1"));
        assert!(!is_partition_of("/dev/loop10", "/dev/loop1"));
        assert!(!is_partition_of("/dev/sdab", "/dev/sda"));
        assert!(!is_partition_of("/dev/sda", "/dev/sda"));
    }

    #[test]
    fn layout_sizes() {
        let small = Layout::for_image(300 * MIB);
        assert_eq!(small.state_mib, 2048);
        assert_eq!(small.min_disk_bytes(), MIN_DISK_BYTES);
        let big = Layout::for_image(1500 * MIB);
        assert_eq!(big.state_mib, 4864); // 3 x 1500 + 256 = 4756, rounded up to 256 MiB
        assert!(big.min_disk_bytes() > MIN_DISK_BYTES);
    }

    #[test]
    fn sgdisk_command_lines() {
        let cmds = partition_commands(Path::new("/dev/vda"), &Layout::for_image(100 * MIB));
        assert_eq!(cmds[0], ["--zap-all", "/dev/vda"]);
        let joined = cmds[1].join(" ");
        assert!(
            joined.contains("--new=1:1M:+1M --typecode=1:EF02"),
            "{joined}"
        );
        assert!(joined.contains("--new=2:0:+64M --typecode=2:EF00 --change-name=2:RKOS_EFI"));
        assert!(joined.contains("--new=3:0:+2048M --typecode=3:8300 --change-name=3:RKOS_STATE"));
        assert!(joined.contains("--new=4:0:0 --typecode=4:8300 --change-name=4:RKOS_DATA"));
        assert!(joined.ends_with("/dev/vda"));
    }

    #[test]
    fn source_from_iso_layout_or_slot_layout() {
        let t = tempfile::tempdir().unwrap();
        assert!(Source::from_dir(t.path(), "1", "amd64")
            .unwrap_err()
            .to_string()
            .contains("no boot/vmlinuz"));
        fs::create_dir_all(t.path().join("boot")).unwrap();
        fs::write(t.path().join("boot/vmlinuz"), b"k").unwrap();
        fs::write(t.path().join("initrd"), b"ii").unwrap();
        fs::write(t.path().join("rootfs.squashfs"), b"rrr").unwrap();
        let src = Source::from_dir(t.path(), "1", "amd64").unwrap();
        assert_eq!(src.total_bytes().unwrap(), 6);
        assert!(src.initrd.ends_with("initrd"));
    }

    #[test]
    fn refuses_a_plain_file_as_target() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let e = check_target(t.path(), &Layout::for_image(0)).unwrap_err();
        assert!(e.to_string().contains("not a block device"), "{e}");
    }
}
