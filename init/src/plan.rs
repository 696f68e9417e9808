//! The mount plan: the ordered steps that turn the found devices into the real root at
//! [`SYSROOT`]. Pure: computed from the mode, the slot and the devices, unit-tested here,
//! performed by [`crate::system::Executor`].

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use rkos_contract::paths::{self, DATA_MOUNT, IMAGE_MOUNT, MEDIUM, NETBOOT, RW, STATE_MOUNT};
use rkos_contract::{files, BootMode, Slot, Volume};
use rkos_slots::StateDir;

/// Where the real root is assembled.
pub const SYSROOT: &str = "/sysroot";

/// Paths an installed node keeps on `RKOS_DATA` whatever its config says.
/// - `/var/lib/rancher`: k3s state, containerd images and snapshots;
/// - `/var/lib/kubelet`: pod volumes (emptyDir) would otherwise fill RAM;
/// - `/etc/rancher/node`: k3s's node password; a new one each boot gets the node rejected;
/// - `/etc/ssh/keys`: SSH host keys (a directory, so sshd's `HostKey` lines point into it and
///   key generation can write new files; binding single key files breaks rename-on-write);
/// - `/var/lib/rkos`: the persistent config and rkos state.
pub const DEFAULT_PERSISTENT: &[&str] = &[
    "/var/lib/rancher",
    "/var/lib/kubelet",
    paths::VAR_LIB_RKOS,
    "/var/lib/longhorn",
    "/etc/rancher/node",
    "/etc/ssh/keys",
    "/home",
    "/root",
    "/opt",
    "/var/log",
];

/// Directories that get a tmpfs of their own on an ephemeral node: containerd's overlayfs
/// snapshotter and kubelet cannot keep their state on the overlay root.
pub const EPHEMERAL_TMPFS: &[&str] = &["/var/lib/kubelet", "/var/lib/rancher/k3s/agent/containerd"];

/// What the plan is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInput {
    /// The resolved mode (never `Rescue`: rescue stops before any plan).
    pub mode: BootMode,
    pub slot: Option<Slot>,
    /// Live/install: the `RKOS_LIVE` medium; disk: `RKOS_STATE`; netboot: none.
    pub boot: Option<Volume>,
    /// Disk: `RKOS_DATA`.
    pub data: Option<Volume>,
    pub image_url: Option<String>,
    pub image_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Device(PathBuf),
    /// A loop device attached (read-only) to this file when the step runs.
    LoopOf(PathBuf),
    /// No backing device (tmpfs, overlay).
    None,
}

/// What a step is part of, for the per-stage timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Medium,
    Fetch,
    Verify,
    Image,
    Overlay,
    Tmpfs,
    Data,
    Persist,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Medium => "mount-medium",
            Stage::Fetch => "fetch-image",
            Stage::Verify => "verify-image",
            Stage::Image => "mount-image",
            Stage::Overlay => "mount-overlay",
            Stage::Tmpfs => "mount-tmpfs",
            Stage::Data => "mount-data",
            Stage::Persist => "bind-persistent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    MkDir(PathBuf),
    Mount {
        source: Source,
        target: PathBuf,
        fstype: String,
        read_only: bool,
        options: String,
    },
    /// Check `file` against its entry in the slot manifest (size and sha256).
    Verify {
        manifest: PathBuf,
        file: PathBuf,
    },
    /// The network boot: DHCP, then `url` downloaded to `dest` and checked against its
    /// signed manifest, or against `sha256` when the command line gives one.
    Fetch {
        url: String,
        sha256: Option<String>,
        dest: PathBuf,
    },
    /// If `to` does not exist, create it as a copy of `from` (or empty when `from` is absent),
    /// so the first boot of an installed node starts from the image's content.
    Seed {
        from: PathBuf,
        to: PathBuf,
    },
    Bind {
        from: PathBuf,
        to: PathBuf,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::MkDir(p) => write!(f, "mkdir {}", p.display()),
            Step::Mount {
                source,
                target,
                fstype,
                read_only,
                options,
            } => {
                let src = match source {
                    Source::Device(d) => d.display().to_string(),
                    Source::LoopOf(file) => format!("loop:{}", file.display()),
                    Source::None => fstype.clone(),
                };
                let ro = if *read_only { "ro" } else { "rw" };
                let sep = if options.is_empty() { "" } else { "," };
                write!(
                    f,
                    "mount -t {fstype} -o {ro}{sep}{options} {src} {}",
                    target.display()
                )
            }
            Step::Verify { manifest, file } => write!(
                f,
                "verify {} against {}",
                file.display(),
                manifest.display()
            ),
            Step::Fetch { url, dest, .. } => write!(f, "fetch {url} to {}", dest.display()),
            Step::Seed { from, to } => write!(f, "seed {} from {}", to.display(), from.display()),
            Step::Bind { from, to } => write!(f, "bind {} on {}", from.display(), to.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("rescue mode has no mount plan")]
    Rescue,
    #[error("{0} mode needs a boot volume and none was given")]
    NoBootVolume(BootMode),
    #[error("disk mode needs rkos.slot=A or rkos.slot=B on the kernel command line")]
    NoSlot,
    #[error("disk mode needs the RKOS_DATA volume and none was given")]
    NoDataVolume,
    #[error("netboot needs rkos.image=URL on the kernel command line")]
    NoImageUrl,
    #[error("persistent path {path:?}: {reason}")]
    BadPersistentPath { path: String, reason: &'static str },
}

fn mount(source: Source, target: &str, fstype: &str, read_only: bool, options: &str) -> Step {
    Step::Mount {
        source,
        target: PathBuf::from(target),
        fstype: fstype.to_string(),
        read_only,
        options: options.to_string(),
    }
}

fn mkdir(p: impl Into<PathBuf>) -> Step {
    Step::MkDir(p.into())
}

/// The steps up to a complete root at [`SYSROOT`]: image, overlay, and either the tmpfs
/// mounts (ephemeral modes) or `RKOS_DATA` with the default persistent binds (disk).
pub fn root_plan(input: &PlanInput) -> Result<Vec<(Stage, Step)>, PlanError> {
    let mut steps: Vec<(Stage, Step)> = Vec::new();
    let image_file: PathBuf = match input.mode {
        BootMode::Rescue => return Err(PlanError::Rescue),
        BootMode::Live | BootMode::Install => {
            let boot = input
                .boot
                .as_ref()
                .ok_or(PlanError::NoBootVolume(input.mode))?;
            steps.push((Stage::Medium, mkdir(MEDIUM)));
            steps.push((
                Stage::Medium,
                mount(
                    Source::Device(boot.device.clone()),
                    MEDIUM,
                    boot.fstype.mount_type(),
                    true,
                    "",
                ),
            ));
            Path::new(MEDIUM).join(files::ROOTFS)
        }
        BootMode::Disk => {
            let boot = input
                .boot
                .as_ref()
                .ok_or(PlanError::NoBootVolume(BootMode::Disk))?;
            let slot = input.slot.ok_or(PlanError::NoSlot)?;
            if input.data.is_none() {
                return Err(PlanError::NoDataVolume);
            }
            let state = StateDir::new(STATE_MOUNT);
            steps.push((Stage::Medium, mkdir(STATE_MOUNT)));
            steps.push((
                Stage::Medium,
                mount(
                    Source::Device(boot.device.clone()),
                    STATE_MOUNT,
                    boot.fstype.mount_type(),
                    true,
                    "",
                ),
            ));
            let file = state.slot_dir(slot).join(files::ROOTFS);
            steps.push((
                Stage::Verify,
                Step::Verify {
                    manifest: state.manifest(slot),
                    file: file.clone(),
                },
            ));
            file
        }
        BootMode::Netboot => {
            let Some(url) = &input.image_url else {
                return Err(PlanError::NoImageUrl);
            };
            let dest = Path::new(NETBOOT).join(files::ROOTFS);
            steps.push((Stage::Fetch, mkdir(NETBOOT)));
            steps.push((
                Stage::Fetch,
                Step::Fetch {
                    url: url.clone(),
                    sha256: input.image_sha256.clone(),
                    dest: dest.clone(),
                },
            ));
            dest
        }
    };
    steps.push((Stage::Image, mkdir(IMAGE_MOUNT)));
    steps.push((
        Stage::Image,
        mount(
            Source::LoopOf(image_file),
            IMAGE_MOUNT,
            "squashfs",
            true,
            "",
        ),
    ));
    steps.push((Stage::Overlay, mkdir(RW)));
    steps.push((
        Stage::Overlay,
        mount(Source::None, RW, "tmpfs", false, "mode=0755"),
    ));
    steps.push((Stage::Overlay, mkdir(format!("{RW}/upper"))));
    steps.push((Stage::Overlay, mkdir(format!("{RW}/work"))));
    steps.push((Stage::Overlay, mkdir(SYSROOT)));
    steps.push((
        Stage::Overlay,
        mount(
            Source::None,
            SYSROOT,
            "overlay",
            false,
            &format!("lowerdir={IMAGE_MOUNT},upperdir={RW}/upper,workdir={RW}/work"),
        ),
    ));
    // /usr straight from the image: read-only (EROFS) although / is writable, so nothing
    // can change the OS's programs behind the image's back, not even until the next boot.
    steps.push((
        Stage::Overlay,
        Step::Bind {
            from: paths::under(IMAGE_MOUNT, Path::new("/usr")),
            to: paths::under(SYSROOT, Path::new("/usr")),
        },
    ));
    if input.mode.is_ephemeral() {
        for dir in EPHEMERAL_TMPFS {
            let target = paths::under(SYSROOT, Path::new(dir));
            steps.push((Stage::Tmpfs, Step::MkDir(target.clone())));
            steps.push((
                Stage::Tmpfs,
                Step::Mount {
                    source: Source::None,
                    target,
                    fstype: "tmpfs".into(),
                    read_only: false,
                    options: "mode=0700".into(),
                },
            ));
        }
    } else if let Some(data) = &input.data {
        steps.push((Stage::Data, mkdir(DATA_MOUNT)));
        steps.push((
            Stage::Data,
            mount(
                Source::Device(data.device.clone()),
                DATA_MOUNT,
                data.fstype.mount_type(),
                false,
                "noatime",
            ),
        ));
        let defaults: Vec<String> = DEFAULT_PERSISTENT.iter().map(|s| s.to_string()).collect();
        steps.extend(
            persistent_binds(&defaults, &[])?
                .into_iter()
                .map(|s| (Stage::Persist, s)),
        );
    }
    Ok(steps)
}

/// The built-in persistent binds that data disks take the place of: a data disk mounted at
/// `/var/lib/rancher` (k3s state on a USB disk) needs the mount point the data volume's bind
/// holds, as systemd takes a path that is mounted already for its mount unit done.
pub fn binds_replaced_by_data_disks(data_disk_paths: &[String]) -> Vec<PathBuf> {
    data_disk_paths
        .iter()
        .filter_map(|p| normalize_persistent(p).ok())
        .filter(|p| DEFAULT_PERSISTENT.iter().any(|d| p == Path::new(d)))
        .collect()
}

/// Checks and normalises a persistent path: absolute, no `.`/`..`, not `/` and not inside
/// the API filesystems or `/run` (those are not on the image).
pub fn normalize_persistent(path: &str) -> Result<PathBuf, PlanError> {
    let bad = |reason| PlanError::BadPersistentPath {
        path: path.to_string(),
        reason,
    };
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(bad("must be an absolute path"));
    }
    // `Path::components` drops inner `.` silently; a config that writes one is confused.
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err(bad("must not contain . or .."));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(bad("must not contain . or .."));
            }
        }
    }
    if out == Path::new("/") {
        return Err(bad("cannot persist the whole root"));
    }
    for api in ["/proc", "/sys", "/dev", "/run", "/tmp", SYSROOT] {
        if out.starts_with(api) {
            return Err(bad("is not on the image (an API or runtime filesystem)"));
        }
    }
    Ok(out)
}

/// Seed and bind steps for the persistent paths `paths`, skipping those in `already`
/// (bound earlier). Parents come before their children so a nested path is bound inside its
/// parent's bind; duplicates are dropped.
pub fn persistent_binds(paths: &[String], already: &[PathBuf]) -> Result<Vec<Step>, PlanError> {
    Ok(persistent_groups(paths, already)?
        .into_iter()
        .flat_map(|(_, steps)| steps)
        .collect())
}

/// Like [`persistent_binds`], the steps grouped by path, so a caller can skip the rest of
/// one path's steps when one fails and go on with the others.
pub fn persistent_groups(
    paths: &[String],
    already: &[PathBuf],
) -> Result<Vec<(PathBuf, Vec<Step>)>, PlanError> {
    let mut norm: Vec<PathBuf> = Vec::new();
    for p in paths {
        let n = normalize_persistent(p)?;
        if !norm.contains(&n) && !already.contains(&n) {
            norm.push(n);
        }
    }
    // Sorting by component count puts every parent before its children, stably.
    norm.sort_by_key(|p| p.components().count());
    Ok(norm
        .into_iter()
        .map(|p| {
            let on_data = paths::under(DATA_MOUNT, &p);
            let target = paths::under(SYSROOT, &p);
            let steps = vec![
                Step::Seed {
                    from: paths::under(IMAGE_MOUNT, &p),
                    to: on_data.clone(),
                },
                Step::MkDir(target.clone()),
                Step::Bind {
                    from: on_data,
                    to: target,
                },
            ];
            (p, steps)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkos_contract::FsType;

    #[test]
    fn data_disks_take_the_place_of_the_built_in_binds_at_their_paths_only() {
        let paths = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            binds_replaced_by_data_disks(&paths(&[
                "/var/lib/rancher/",
                "/mnt/backup",
                "/var/lib/rancher/k3s/storage",
                "/var/lib/longhorn",
                "relative",
            ])),
            [
                PathBuf::from("/var/lib/rancher"),
                PathBuf::from("/var/lib/longhorn")
            ]
        );
        assert!(binds_replaced_by_data_disks(&[]).is_empty());
    }

    #[test]
    fn the_image_carries_every_mount_point_on_the_overlay_root() {
        // A mount point missing from the image is made at boot, copying its parents up
        // into the overlay's upper layer: slow under emulation, and on an installed node a
        // change to the root that nothing asked for. The Debian base has these four;
        // overlay/ carries the rest.
        const IN_DEBIAN_BASE: &[&str] = &["/home", "/root", "/opt", "/var/log"];
        let overlay = Path::new(env!("CARGO_MANIFEST_DIR")).join("../overlay");
        for p in DEFAULT_PERSISTENT.iter().chain(EPHEMERAL_TMPFS) {
            if IN_DEBIAN_BASE.contains(p) {
                continue;
            }
            let dir = overlay.join(p.trim_start_matches('/'));
            assert!(dir.is_dir(), "{} missing from overlay/", dir.display());
        }
    }

    fn vol(dev: &str, fstype: FsType) -> Option<Volume> {
        Some(Volume {
            device: dev.into(),
            fstype,
        })
    }

    fn input(mode: BootMode) -> PlanInput {
        PlanInput {
            mode,
            slot: None,
            boot: None,
            data: None,
            image_url: None,
            image_sha256: None,
        }
    }

    fn lines(steps: &[(Stage, Step)]) -> Vec<String> {
        steps
            .iter()
            .map(|(st, s)| format!("{}: {s}", st.as_str()))
            .collect()
    }

    #[test]
    fn live_plan() {
        let mut i = input(BootMode::Live);
        i.boot = vol("/dev/sr0", FsType::Iso9660);
        let steps = root_plan(&i).unwrap();
        assert_eq!(
            lines(&steps),
            [
                "mount-medium: mkdir /run/rkos/medium",
                "mount-medium: mount -t iso9660 -o ro /dev/sr0 /run/rkos/medium",
                "mount-image: mkdir /run/rkos/image",
                "mount-image: mount -t squashfs -o ro loop:/run/rkos/medium/rootfs.squashfs /run/rkos/image",
                "mount-overlay: mkdir /run/rkos/rw",
                "mount-overlay: mount -t tmpfs -o rw,mode=0755 tmpfs /run/rkos/rw",
                "mount-overlay: mkdir /run/rkos/rw/upper",
                "mount-overlay: mkdir /run/rkos/rw/work",
                "mount-overlay: mkdir /sysroot",
                "mount-overlay: mount -t overlay -o rw,lowerdir=/run/rkos/image,upperdir=/run/rkos/rw/upper,workdir=/run/rkos/rw/work overlay /sysroot",
                "mount-overlay: bind /run/rkos/image/usr on /sysroot/usr",
                "mount-tmpfs: mkdir /sysroot/var/lib/kubelet",
                "mount-tmpfs: mount -t tmpfs -o rw,mode=0700 tmpfs /sysroot/var/lib/kubelet",
                "mount-tmpfs: mkdir /sysroot/var/lib/rancher/k3s/agent/containerd",
                "mount-tmpfs: mount -t tmpfs -o rw,mode=0700 tmpfs /sysroot/var/lib/rancher/k3s/agent/containerd",
            ]
        );
    }

    #[test]
    fn install_mode_mounts_like_live_and_no_data() {
        let mut i = input(BootMode::Install);
        i.boot = vol("/dev/sdb", FsType::Iso9660);
        i.data = vol("/dev/sda3", FsType::Ext4);
        let mut live = i.clone();
        live.mode = BootMode::Live;
        assert_eq!(root_plan(&i).unwrap(), root_plan(&live).unwrap());
        assert!(!lines(&root_plan(&i).unwrap())
            .iter()
            .any(|l| l.contains("RKOS_DATA") || l.contains("/run/rkos/data")));
    }

    #[test]
    fn disk_plan_verifies_then_binds_parents_first() {
        let mut i = input(BootMode::Disk);
        i.slot = Some(Slot::B);
        i.boot = vol("/dev/vda2", FsType::Ext4);
        i.data = vol("/dev/vda3", FsType::Ext4);
        let steps = root_plan(&i).unwrap();
        let l = lines(&steps);
        assert_eq!(
            l[1],
            "mount-medium: mount -t ext4 -o ro /dev/vda2 /run/rkos/state"
        );
        assert_eq!(
            l[2],
            "verify-image: verify /run/rkos/state/slots/B/rootfs.squashfs against /run/rkos/state/slots/B/manifest.json"
        );
        assert_eq!(l[4], "mount-image: mount -t squashfs -o ro loop:/run/rkos/state/slots/B/rootfs.squashfs /run/rkos/image");
        let data = l
            .iter()
            .position(|s| s == "mount-data: mount -t ext4 -o rw,noatime /dev/vda3 /run/rkos/data")
            .unwrap();
        let overlay = l
            .iter()
            .position(|s| s.starts_with("mount-overlay: mount -t overlay"))
            .unwrap();
        assert!(overlay < data);
        assert!(!l.iter().any(|s| s.starts_with("mount-tmpfs")));
        // Every default path is seeded from the image, created and bound, in that order.
        for p in DEFAULT_PERSISTENT {
            let seed = format!("bind-persistent: seed /run/rkos/data{p} from /run/rkos/image{p}");
            let bind = format!("bind-persistent: bind /run/rkos/data{p} on /sysroot{p}");
            let (s, b) = (
                l.iter().position(|x| *x == seed).unwrap(),
                l.iter().position(|x| *x == bind).unwrap(),
            );
            assert!(data < s && s < b, "{p}");
        }
        // /var/lib/rancher (parent) is bound before any deeper path.
        let rancher = l
            .iter()
            .position(|x| x.ends_with("on /sysroot/var/lib/rancher"))
            .unwrap();
        let node = l
            .iter()
            .position(|x| x.ends_with("on /sysroot/etc/rancher/node"))
            .unwrap();
        assert!(rancher < node);
    }

    #[test]
    fn disk_plan_needs_slot_state_and_data() {
        let mut i = input(BootMode::Disk);
        assert_eq!(root_plan(&i), Err(PlanError::NoBootVolume(BootMode::Disk)));
        i.boot = vol("/dev/vda2", FsType::Ext4);
        assert_eq!(root_plan(&i), Err(PlanError::NoSlot));
        i.slot = Some(Slot::A);
        assert_eq!(root_plan(&i), Err(PlanError::NoDataVolume));
        assert_eq!(
            root_plan(&input(BootMode::Live)),
            Err(PlanError::NoBootVolume(BootMode::Live))
        );
        assert_eq!(root_plan(&input(BootMode::Rescue)), Err(PlanError::Rescue));
    }

    #[test]
    fn netboot_plan_fetches_into_ram() {
        let mut i = input(BootMode::Netboot);
        assert_eq!(root_plan(&i), Err(PlanError::NoImageUrl));
        i.image_url = Some("http://10.0.0.1/rootfs.squashfs".into());
        // The signed manifest is the check; a digest on the command line is optional.
        let steps = root_plan(&i).unwrap();
        assert!(matches!(&steps[1].1, Step::Fetch { sha256: None, .. }));
        i.image_sha256 = Some("0".repeat(64));
        let l = lines(&root_plan(&i).unwrap());
        assert_eq!(l[1], "fetch-image: fetch http://10.0.0.1/rootfs.squashfs to /run/rkos/netboot/rootfs.squashfs");
        assert_eq!(l[3], "mount-image: mount -t squashfs -o ro loop:/run/rkos/netboot/rootfs.squashfs /run/rkos/image");
        assert!(l.iter().any(|s| s.starts_with("mount-tmpfs: mount")));
    }

    #[test]
    fn persistent_path_checks() {
        assert_eq!(
            normalize_persistent("/var//lib/x/").unwrap(),
            PathBuf::from("/var/lib/x")
        );
        for bad in [
            "var/lib",
            "/",
            "/var/../etc",
            "/./x",
            "/proc/x",
            "/run",
            "/dev",
            "/sys/fs",
            "/sysroot/x",
            "/tmp/a",
        ] {
            assert!(normalize_persistent(bad).is_err(), "{bad}");
        }
        let e = normalize_persistent("relative").unwrap_err();
        assert_eq!(
            e.to_string(),
            "persistent path \"relative\": must be an absolute path"
        );
        // /procfoo is not /proc.
        assert!(normalize_persistent("/procfoo").is_ok());
    }

    #[test]
    fn extra_binds_skip_defaults_and_duplicates() {
        let already: Vec<PathBuf> = DEFAULT_PERSISTENT.iter().map(PathBuf::from).collect();
        let steps = persistent_binds(
            &[
                "/srv/data/sub".into(),
                "/var/log".into(),
                "/srv/data".into(),
                "/srv/data/".into(),
            ],
            &already,
        )
        .unwrap();
        let l: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            l,
            [
                "seed /run/rkos/data/srv/data from /run/rkos/image/srv/data",
                "mkdir /sysroot/srv/data",
                "bind /run/rkos/data/srv/data on /sysroot/srv/data",
                "seed /run/rkos/data/srv/data/sub from /run/rkos/image/srv/data/sub",
                "mkdir /sysroot/srv/data/sub",
                "bind /run/rkos/data/srv/data/sub on /sysroot/srv/data/sub",
            ]
        );
        assert!(persistent_binds(&["/ok".into(), "../bad".into()], &[]).is_err());
        let groups = persistent_groups(&["/b/c".into(), "/a".into(), "/b".into()], &[]).unwrap();
        let order: Vec<&Path> = groups.iter().map(|(p, _)| p.as_path()).collect();
        assert_eq!(order, [Path::new("/a"), Path::new("/b"), Path::new("/b/c")]);
        assert!(groups.iter().all(|(_, steps)| steps.len() == 3));
    }
}
