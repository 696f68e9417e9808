//! The system side: mounts, loop devices, the plan executor, seeding persistent directories
//! and the switch to the real root. Paths are parameters wherever a test can use a temp dir.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::kmod::Loader;
use crate::log::{in_kernel, KernelWork};
use crate::plan::{Source, Step};

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{what}: {errno}")]
    Sys {
        what: String,
        errno: nix::errno::Errno,
    },
    #[error(transparent)]
    Verify(#[from] crate::manifest::VerifyError),
    #[error("{0}")]
    Other(String),
}

fn io_ctx(what: impl Into<String>) -> impl FnOnce(io::Error) -> SysError {
    let what = what.into();
    move |source| SysError::Io { what, source }
}

fn sys_ctx(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> SysError {
    let what = what.into();
    move |errno| SysError::Sys { what, errno }
}

/// Splits mount options into the flags `mount(2)` takes as bits and the filesystem's own
/// options (the kernel rejects `noatime` and friends in the data string).
pub fn split_options(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            o => data.push(o),
        }
    }
    (flags, data.join(","))
}

pub fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: &str,
) -> Result<(), SysError> {
    let data = (!data.is_empty()).then_some(data);
    in_kernel(KernelWork::Mount, || {
        mount(Some(source), target, Some(fstype), flags, data)
    })
    .map_err(sys_ctx(format!(
        "mount -t {fstype} {source} {}",
        target.display()
    )))
}

/// The API filesystems every later step needs. Idempotent for directories.
pub fn mount_basic() -> Result<(), SysError> {
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    for (fstype, target, flags, data) in [
        ("proc", "/proc", nosuid_nodev | MsFlags::MS_NOEXEC, ""),
        ("sysfs", "/sys", nosuid_nodev | MsFlags::MS_NOEXEC, ""),
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, "mode=0755"),
        ("tmpfs", "/run", nosuid_nodev, "mode=0755"),
    ] {
        fs::create_dir_all(target).map_err(io_ctx(format!("mkdir {target}")))?;
        // Already there (a kernel that mounts devtmpfs itself, or a re-exec): keep it.
        let root_dev = fs::metadata("/").map(|m| m.dev()).ok();
        if fs::metadata(target).map(|m| m.dev()).ok() != root_dev {
            continue;
        }
        mount_fs(fstype, Path::new(target), fstype, flags, data)?;
    }
    Ok(())
}

mod loop_ioctl {
    //! The loop device ioctls, by hand: the `loopdev` crates generate these bindings with
    //! bindgen, which needs libclang on the build host; the two structs are stable kernel ABI.
    pub const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    pub const LOOP_SET_FD: libc::c_ulong = 0x4C00;
    pub const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
    pub const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
    pub const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
    pub const LO_FLAGS_READ_ONLY: u32 = 1;
    pub const LO_FLAGS_AUTOCLEAR: u32 = 4;

    #[repr(C)]
    pub struct LoopInfo64 {
        pub lo_device: u64,
        pub lo_inode: u64,
        pub lo_rdevice: u64,
        pub lo_offset: u64,
        pub lo_sizelimit: u64,
        pub lo_number: u32,
        pub lo_encrypt_type: u32,
        pub lo_encrypt_key_size: u32,
        pub lo_flags: u32,
        pub lo_file_name: [u8; 64],
        pub lo_crypt_name: [u8; 64],
        pub lo_encrypt_key: [u8; 32],
        pub lo_init: [u64; 2],
    }

    #[repr(C)]
    pub struct LoopConfig {
        pub fd: u32,
        pub block_size: u32,
        pub info: LoopInfo64,
        pub reserved: [u64; 8],
    }
}

/// Attaches `file` read-only to a free loop device and returns the device path with an open
/// handle on it. The device is auto-cleared when its last user goes away, so keep the handle
/// until the device is mounted: dropping it earlier detaches the file at once.
pub fn loop_attach(file: &Path, dev_dir: &Path) -> Result<(PathBuf, File), SysError> {
    in_kernel(KernelWork::Mount, || loop_attach_timed(file, dev_dir))
}

fn loop_attach_timed(file: &Path, dev_dir: &Path) -> Result<(PathBuf, File), SysError> {
    use loop_ioctl::*;
    let backing = File::open(file).map_err(io_ctx(format!("open {}", file.display())))?;
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev_dir.join("loop-control"))
        .map_err(io_ctx("open /dev/loop-control (is the loop module there?)"))?;
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    let name = file.as_os_str().as_encoded_bytes();
    let n = name.len().min(63);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);
    // Another process may take the free device between GET_FREE and CONFIGURE: retry.
    for _ in 0..8 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let nr = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if nr < 0 {
            return Err(SysError::Io {
                what: "LOOP_CTL_GET_FREE".into(),
                source: io::Error::last_os_error(),
            });
        }
        let dev = dev_dir.join(format!("loop{nr}"));
        let lo = OpenOptions::new()
            .read(true)
            .open(&dev)
            .map_err(io_ctx(format!("open {}", dev.display())))?;
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        // SAFETY: both are plain-old-data structs laid out as the kernel's uapi ones.
        unsafe { std::ptr::copy_nonoverlapping(&info, &mut cfg.info, 1) };
        // SAFETY: LOOP_CONFIGURE reads a struct loop_config we own for the call's duration.
        let r = unsafe { libc::ioctl(lo.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if r == 0 {
            return Ok((dev, lo));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EBUSY) => continue,
            // Kernels before 5.8 lack LOOP_CONFIGURE: the two-call form.
            Some(libc::EINVAL) | Some(libc::ENOTTY) => {
                // SAFETY: LOOP_SET_FD takes the backing file descriptor by value.
                if unsafe { libc::ioctl(lo.as_raw_fd(), LOOP_SET_FD, backing.as_raw_fd()) } != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EBUSY) {
                        continue;
                    }
                    return Err(SysError::Io {
                        what: format!("LOOP_SET_FD {}", dev.display()),
                        source: e,
                    });
                }
                // SAFETY: LOOP_SET_STATUS64 reads a struct loop_info64 we own.
                if unsafe {
                    libc::ioctl(
                        lo.as_raw_fd(),
                        LOOP_SET_STATUS64,
                        &info as *const LoopInfo64,
                    )
                } != 0
                {
                    let e = io::Error::last_os_error();
                    // SAFETY: detaches what we attached just above.
                    unsafe { libc::ioctl(lo.as_raw_fd(), LOOP_CLR_FD, 0) };
                    return Err(SysError::Io {
                        what: format!("LOOP_SET_STATUS64 {}", dev.display()),
                        source: e,
                    });
                }
                return Ok((dev, lo));
            }
            _ => {
                return Err(SysError::Io {
                    what: format!("LOOP_CONFIGURE {}", dev.display()),
                    source: err,
                })
            }
        }
    }
    Err(SysError::Other("no free loop device after 8 tries".into()))
}

/// Copies the tree at `from` to `to` keeping modes, owners and symlinks (device nodes and
/// sockets are skipped: an image directory that is persisted holds none).
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        symlink(fs::read_link(from)?, to)?;
    } else if ft.is_dir() {
        fs::create_dir(to)?;
        for e in fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else if ft.is_file() {
        fs::copy(from, to)?;
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else {
        return Ok(());
    }
    // Ownership matters (/root, /home/rkos); as non-root (tests) it may fail for foreign owners.
    let _ = std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()));
    Ok(())
}

/// Creates the directories from `base` down to `dir` (inside it) without going through a
/// symlink: under the data volume users own directories (`/home`), and a link planted there
/// (`~/cache -> /etc`) must not make rkos-init write as root elsewhere. Nothing but rkos-init
/// runs yet, so the check cannot race.
fn mkdirs_no_follow(base: &Path, dir: &Path) -> io::Result<()> {
    let rel = dir.strip_prefix(base).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not under {}", dir.display(), base.display()),
        )
    })?;
    // The volume's mount point itself is rkos-init's own.
    fs::create_dir_all(base)?;
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is a symlink: not followed", cur.display()),
                ))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a directory", cur.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&cur)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates `to` (inside `base`, the data volume) from `from` unless `to` exists. The copy
/// goes to a temporary name first and is renamed into place, so a power cut mid-copy never
/// leaves a half-seeded directory that would be taken for the real one on the next boot.
/// Neither `to` nor a directory between `base` and it may be a symlink. Returns whether it
/// seeded.
pub fn seed(from: &Path, to: &Path, base: &Path) -> io::Result<bool> {
    if let Ok(m) = fs::symlink_metadata(to) {
        if m.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symlink: not followed", to.display()),
            ));
        }
        return Ok(false);
    }
    let parent = to
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent"))?;
    mkdirs_no_follow(base, parent)?;
    let mut tmp_name = to.file_name().unwrap_or(OsStr::new("x")).to_os_string();
    tmp_name.push(".rkos-seed");
    let tmp = parent.join(tmp_name);
    if fs::symlink_metadata(&tmp).is_ok() {
        fs::remove_dir_all(&tmp)?;
    }
    match fs::symlink_metadata(from) {
        Ok(m) if m.is_dir() => copy_tree(from, &tmp)?,
        // Absent in the image (or not a directory): start empty.
        _ => {
            fs::create_dir(&tmp)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        }
    }
    fs::rename(&tmp, to)?;
    // Durability comes from one `sync_fs` after all seeds (see `sync_fs`), not a journal
    // commit per directory.
    Ok(true)
}

/// Flushes the filesystem holding `dir` (after seeding: the renames must be on disk before
/// the node starts writing into the seeded directories).
pub fn sync_fs(dir: &Path) -> Result<(), SysError> {
    let f = File::open(dir).map_err(io_ctx(format!("open {}", dir.display())))?;
    // SAFETY: syncfs takes a descriptor we own and touches no memory of ours.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(SysError::Io {
            what: format!("syncfs {}", dir.display()),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Resolves `path` inside `root` as if `root` were `/` (absolute symlinks are re-rooted),
/// returning the host path of the final target, or `None` if something along the way is
/// missing or the links loop.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut todo: Vec<PathBuf> = vec![PathBuf::from(path)];
    let mut cur = PathBuf::from("/");
    let mut hops = 0;
    while let Some(p) = todo.pop() {
        let mut comps: Vec<Component> = p.components().collect();
        comps.reverse();
        while let Some(c) = comps.pop() {
            match c {
                Component::RootDir => cur = PathBuf::from("/"),
                Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    cur.pop();
                }
                Component::Normal(n) => {
                    let next = cur.join(n);
                    let host = rkos_contract::paths::under(root, &next);
                    let meta = fs::symlink_metadata(&host).ok()?;
                    if meta.file_type().is_symlink() {
                        hops += 1;
                        if hops > 40 {
                            return None;
                        }
                        let target = fs::read_link(&host).ok()?;
                        let rest: PathBuf = comps.iter().rev().collect();
                        todo.push(rest);
                        todo.push(target);
                        comps.clear();
                    } else {
                        cur = next;
                    }
                }
            }
        }
    }
    let host = rkos_contract::paths::under(root, &cur);
    fs::metadata(&host).ok().map(|_| host)
}

/// Performs plan steps.
pub struct Executor<'a> {
    pub loader: &'a mut Loader,
    pub dev_dir: PathBuf,
    /// (image file, loop device) for `init.json`.
    pub loops: Vec<(PathBuf, PathBuf)>,
    pub seeded: Vec<PathBuf>,
}

impl<'a> Executor<'a> {
    pub fn new(loader: &'a mut Loader) -> Self {
        Executor {
            loader,
            dev_dir: PathBuf::from("/dev"),
            loops: Vec::new(),
            seeded: Vec::new(),
        }
    }

    pub fn run(&mut self, step: &Step) -> Result<(), SysError> {
        tracing::debug!("{step}");
        match step {
            Step::MkDir(p) => {
                fs::create_dir_all(p).map_err(io_ctx(format!("mkdir {}", p.display())))
            }
            Step::Mount {
                source,
                target,
                fstype,
                read_only,
                options,
            } => {
                if fstype != "tmpfs" {
                    self.loader.ensure_fs(fstype);
                }
                let (mut flags, data) = split_options(options);
                if *read_only {
                    flags |= MsFlags::MS_RDONLY;
                }
                // Holds the loop device open until it is mounted (see `loop_attach`).
                let mut _loop_handle = None;
                let src = match source {
                    Source::Device(d) => d.to_string_lossy().into_owned(),
                    Source::None => fstype.clone(),
                    Source::LoopOf(file) => {
                        let _ = self.loader.load("loop");
                        let (dev, handle) = loop_attach(file, &self.dev_dir)?;
                        _loop_handle = Some(handle);
                        self.loops.push((file.clone(), dev.clone()));
                        dev.to_string_lossy().into_owned()
                    }
                };
                mount_fs(&src, target, fstype, flags, &data)
            }
            Step::Verify { manifest, file } => {
                crate::manifest::verify_file(manifest, file)?;
                Ok(())
            }
            // The network boot (rkos.mode=netboot only): crate::netboot.
            Step::Fetch { url, sha256, dest } => crate::netboot::run(url, sha256.as_deref(), dest)
                .map_err(|e| SysError::Other(format!("netboot: {e}"))),
            Step::Seed { from, to } => {
                if seed(from, to, Path::new(rkos_contract::paths::DATA_MOUNT)).map_err(io_ctx(
                    format!("seed {} from {}", to.display(), from.display()),
                ))? {
                    self.seeded.push(to.clone());
                }
                Ok(())
            }
            Step::Bind { from, to } => {
                let meta = fs::symlink_metadata(to)
                    .map_err(io_ctx(format!("bind target {}", to.display())))?;
                if meta.file_type().is_symlink() {
                    return Err(SysError::Other(format!(
                        "bind target {} is a symlink in the image; persist its target instead",
                        to.display()
                    )));
                }
                in_kernel(KernelWork::Mount, || {
                    mount(
                        Some(from.as_path()),
                        to.as_path(),
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                })
                .map_err(sys_ctx(format!(
                    "bind {} on {}",
                    from.display(),
                    to.display()
                )))
            }
        }
    }
}

/// Moves the mount at `from` to `to`, creating `to` if needed.
pub fn move_mount(from: &Path, to: &Path) -> Result<(), SysError> {
    fs::create_dir_all(to).map_err(io_ctx(format!("mkdir {}", to.display())))?;
    in_kernel(KernelWork::Mount, || {
        mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
    })
    .map_err(sys_ctx(format!(
        "move {} to {}",
        from.display(),
        to.display()
    )))
}

/// Deletes everything on the initramfs (the filesystem of `/`) without crossing into other
/// mounts, to give its memory back; as busybox `switch_root` does.
fn wipe_initramfs(dir: &Path, root_dev: u64) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.dev() != root_dev {
            continue;
        }
        if m.is_dir() {
            wipe_initramfs(&p, root_dev);
            let _ = fs::remove_dir(&p);
        } else {
            let _ = fs::remove_file(&p);
        }
    }
}

/// Hands over to the real root at `new_root`: moves /dev /proc /sys in (/run was moved
/// earlier), frees the initramfs, makes `new_root` the root and execs `init`. Returns only on
/// failure, before anything irreversible when the init is missing.
pub fn switch_root(new_root: &Path, init: &str) -> SysError {
    match try_switch_root(new_root, init) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_switch_root(new_root: &Path, init: &str) -> Result<std::convert::Infallible, SysError> {
    use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
    // nix names no constant for ramfs (the initramfs is ramfs when the kernel has no tmpfs).
    const RAMFS_MAGIC: FsType = FsType(0x858458f6);
    if resolve_in_root(new_root, init).is_none() {
        return Err(SysError::Other(format!(
            "{init} does not exist in the new root {}",
            new_root.display()
        )));
    }
    let fs_type = statfs("/").map_err(sys_ctx("statfs /"))?.filesystem_type();
    if fs_type != RAMFS_MAGIC && fs_type != TMPFS_MAGIC {
        return Err(SysError::Other(
            "/ is not an initramfs; refusing to switch root".into(),
        ));
    }
    for api in ["/dev", "/proc", "/sys"] {
        move_mount(Path::new(api), &rkos_contract::paths::under(new_root, api))?;
    }
    let root_dev = fs::symlink_metadata("/").map_err(io_ctx("stat /"))?.dev();
    wipe_initramfs(Path::new("/"), root_dev);
    nix::unistd::chdir(new_root).map_err(sys_ctx(format!("chdir {}", new_root.display())))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(sys_ctx("move the new root to /"))?;
    nix::unistd::chroot(".").map_err(sys_ctx("chroot"))?;
    nix::unistd::chdir("/").map_err(sys_ctx("chdir /"))?;
    let prog = std::ffi::CString::new(init)
        .map_err(|_| SysError::Other("init path holds a NUL".into()))?;
    let err = nix::unistd::execv(&prog, &[&prog]).unwrap_err();
    Err(SysError::Sys {
        what: format!("exec {init}"),
        errno: err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, d) = split_options("noatime,mode=0755,ro,lowerdir=/a,nosuid");
        assert_eq!(
            f,
            MsFlags::MS_NOATIME | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
        assert_eq!(d, "mode=0755,lowerdir=/a");
        assert_eq!(split_options(""), (MsFlags::empty(), String::new()));
    }

    #[test]
    fn seed_copies_once_with_modes_and_links() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("image/root");
        fs::create_dir_all(img.join(".ssh")).unwrap();
        fs::write(img.join(".bashrc"), "x").unwrap();
        fs::set_permissions(img.join(".bashrc"), fs::Permissions::from_mode(0o640)).unwrap();
        symlink("../etc/profile", img.join("link")).unwrap();
        fs::set_permissions(&img, fs::Permissions::from_mode(0o700)).unwrap();
        let to = d.path().join("data/root");
        let data = d.path().join("data");
        assert!(seed(&img, &to, &data).unwrap());
        assert_eq!(fs::read_to_string(to.join(".bashrc")).unwrap(), "x");
        assert_eq!(
            fs::metadata(to.join(".bashrc")).unwrap().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::metadata(&to).unwrap().mode() & 0o777, 0o700);
        assert!(to.join(".ssh").is_dir());
        assert_eq!(
            fs::read_link(to.join("link")).unwrap(),
            PathBuf::from("../etc/profile")
        );
        assert!(!d.path().join("data/root.rkos-seed").exists());
        // The data volume's content is kept on later boots, whatever the image holds.
        fs::write(to.join(".bashrc"), "mine").unwrap();
        assert!(!seed(&img, &to, &data).unwrap());
        assert_eq!(fs::read_to_string(to.join(".bashrc")).unwrap(), "mine");
    }

    #[test]
    fn seed_absent_source_and_leftover_temp() {
        let d = tempfile::tempdir().unwrap();
        let to = d.path().join("data/var/lib/longhorn");
        // A copy interrupted on an earlier boot.
        fs::create_dir_all(d.path().join("data/var/lib/longhorn.rkos-seed/junk")).unwrap();
        assert!(seed(
            &d.path().join("image/var/lib/longhorn"),
            &to,
            &d.path().join("data")
        )
        .unwrap());
        assert!(to.is_dir());
        assert_eq!(fs::read_dir(&to).unwrap().count(), 0);
        assert!(!d.path().join("data/var/lib/longhorn.rkos-seed").exists());
    }

    #[test]
    fn seeding_never_goes_through_a_symlink_under_the_data_volume() {
        let d = tempfile::tempdir().unwrap();
        let (data, elsewhere) = (d.path().join("data"), d.path().join("elsewhere"));
        fs::create_dir_all(data.join("home/rkos")).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        let img = d.path().join("image/home/rkos/cache/app");
        fs::create_dir_all(&img).unwrap();
        fs::write(img.join("f"), "x").unwrap();
        // A user's link on the way to a persistent path...
        symlink(&elsewhere, data.join("home/rkos/cache")).unwrap();
        let e = seed(&img, &data.join("home/rkos/cache/app"), &data).unwrap_err();
        assert!(
            e.to_string().contains("home/rkos/cache is a symlink"),
            "{e}"
        );
        // ...and as the persistent path itself.
        symlink(&elsewhere, data.join("home/rkos/other")).unwrap();
        let e = seed(&img, &data.join("home/rkos/other"), &data).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "written through a link"
        );
        // Missing directories on the way are made.
        assert!(seed(&img, &data.join("srv/a/b"), &data).unwrap());
        assert_eq!(fs::read_to_string(data.join("srv/a/b/f")).unwrap(), "x");
    }

    #[test]
    fn resolves_links_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("usr/sbin")).unwrap();
        fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
        fs::write(r.join("usr/lib/systemd/systemd"), "").unwrap();
        symlink("usr/sbin", r.join("sbin")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("../lib/systemd/systemd", r.join("usr/sbin/init")).unwrap();
        symlink("/lib/systemd/systemd", r.join("usr/sbin/init-abs")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        let want = Some(r.join("usr/lib/systemd/systemd"));
        assert_eq!(resolve_in_root(r, "/sbin/init"), want);
        assert_eq!(resolve_in_root(r, "/sbin/init-abs"), want);
        assert_eq!(resolve_in_root(r, "/lib/systemd/systemd"), want);
        assert_eq!(resolve_in_root(r, "/sbin/missing"), None);
        assert_eq!(resolve_in_root(r, "/loop1"), None);
        // `..` cannot climb out of the root.
        assert_eq!(resolve_in_root(r, "/../../usr/lib/systemd/systemd"), want);
    }
}

/// Keeps systemd's machine id across boots of an installed node: the id on the data volume
/// (`DATA/etc/machine-id`) is written into the new root, and made from `new_id` on the first
/// boot. Without it every boot would get a new id, and the journal under /var/log a new
/// directory. Returns the id and whether it was made now.
pub fn persist_machine_id(
    data: &Path,
    sysroot: &Path,
    new_id: impl FnOnce() -> io::Result<String>,
) -> io::Result<(String, bool)> {
    let valid = |s: &str| {
        s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let stored = data.join("etc/machine-id");
    let (id, made) = match fs::read_to_string(&stored) {
        Ok(s) if valid(s.trim()) => (s.trim().to_string(), false),
        _ => {
            let id: String = new_id()?
                .trim()
                .chars()
                .filter(|c| *c != '-')
                .collect::<String>()
                .to_ascii_lowercase();
            if !valid(&id) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad machine id {id:?}"),
                ));
            }
            fs::create_dir_all(data.join("etc"))?;
            let tmp = data.join("etc/machine-id.rkos-tmp");
            fs::write(&tmp, format!("{id}\n"))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444))?;
            fs::rename(&tmp, &stored)?;
            (id, true)
        }
    };
    let target = sysroot.join("etc/machine-id");
    let _ = fs::remove_file(&target);
    fs::write(&target, format!("{id}\n"))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o444))?;
    Ok((id, made))
}

#[cfg(test)]
mod machine_id_tests {
    use super::*;

    #[test]
    fn made_once_then_kept() {
        let d = tempfile::tempdir().unwrap();
        let (data, root) = (d.path().join("data"), d.path().join("root"));
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/machine-id"), "uninitialized\n").unwrap();
        let id = persist_machine_id(&data, &root, || {
            Ok("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0\n".into())
        })
        .unwrap();
        assert_eq!(id, ("0f1e2d3c4b5a69788796a5b4c3d2e1f0".to_string(), true));
        let id = id.0;
        assert_eq!(
            fs::read_to_string(root.join("etc/machine-id")).unwrap(),
            format!("{id}\n")
        );
        assert_eq!(
            fs::read_to_string(data.join("etc/machine-id")).unwrap(),
            format!("{id}\n")
        );
        // Next boot: a fresh root, the stored id wins and no new one is made.
        let root2 = d.path().join("root2");
        fs::create_dir_all(root2.join("etc")).unwrap();
        let again = persist_machine_id(&data, &root2, || panic!("must not make a new id")).unwrap();
        assert_eq!(again, (id.clone(), false));
        assert_eq!(
            fs::read_to_string(root2.join("etc/machine-id")).unwrap(),
            format!("{id}\n")
        );
    }

    #[test]
    fn bad_stored_or_new_ids() {
        let d = tempfile::tempdir().unwrap();
        let (data, root) = (d.path().join("data"), d.path().join("root"));
        fs::create_dir_all(data.join("etc")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(data.join("etc/machine-id"), "garbage\n").unwrap();
        let id = persist_machine_id(&data, &root, || {
            Ok("00112233445566778899aabbccddeeff".into())
        })
        .unwrap();
        assert_eq!(id.0, "00112233445566778899aabbccddeeff");
        fs::remove_file(data.join("etc/machine-id")).unwrap();
        let e = persist_machine_id(&data, &root, || Ok("short".into())).unwrap_err();
        assert!(e.to_string().contains("bad machine id"), "{e}");
        assert!(!data.join("etc/machine-id").exists());
    }
}
