//! Each requirement as one function of the node's root (and systemd, through [`Units`]).

use std::fs;
use std::path::{Path, PathBuf};

use rkos_contract::paths::{self, under};

use crate::mounts::{self, Mount};
use crate::{iscsi, multipath, Check, Units};

/// Where Longhorn keeps its replicas by default; a persistent path of rkos-init's.
pub const LONGHORN_DIR: &str = "/var/lib/longhorn";
/// The kubelet's directory: CSI plugins mount volumes under it with `Bidirectional`
/// propagation.
pub const KUBELET_DIR: &str = "/var/lib/kubelet";

pub(crate) fn all(root: &Path, units: &dyn Units) -> Vec<Check> {
    let mountinfo = read(root, "/proc/self/mountinfo").unwrap_or_default();
    let mounts = mounts::parse(&mountinfo);
    vec![
        iscsid(units),
        iscsi_tcp(root),
        initiator_name(root),
        nfs4_client(root),
        dm_crypt(root),
        longhorn_persistent(&mounts),
        propagation(&mounts),
        multipathd(root, units),
    ]
}

fn read(root: &Path, path: &str) -> Option<String> {
    fs::read_to_string(under(root, path)).ok()
}

/// A program in the node's `sbin` or `bin` directories.
fn program(root: &Path, name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| under(root, d).join(name))
        .find(|p| p.is_file())
}

/// A kernel module loaded (or built in with a `/sys/module` entry).
fn module_loaded(root: &Path, name: &str) -> bool {
    under(root, "/sys/module").join(name).is_dir()
        || read(root, "/proc/modules")
            .is_some_and(|m| m.lines().any(|l| l.split_whitespace().next() == Some(name)))
}

/// A kernel module the running kernel can load: listed in its modules.dep or built in.
fn module_available(root: &Path, path_in_tree: &str) -> bool {
    let Some(release) = read(root, "/proc/sys/kernel/osrelease") else {
        return false;
    };
    let dir = under(root, "/lib/modules").join(release.trim());
    let listed = |file: &str, sep: char| {
        fs::read_to_string(dir.join(file)).is_ok_and(|t| {
            t.lines().any(|l| {
                let name = l.split(sep).next().unwrap_or("");
                name == path_in_tree || name.starts_with(&format!("{path_in_tree}."))
            })
        })
    };
    listed("modules.dep", ':') || listed("modules.builtin", '\n')
}

pub(crate) fn iscsid(units: &dyn Units) -> Check {
    let active: Vec<&str> = ["iscsid.socket", "iscsid.service"]
        .into_iter()
        .filter(|u| units.is_active(u))
        .collect();
    if active.is_empty() {
        Check::new(
            "iscsid",
            false,
            "neither iscsid.socket nor iscsid.service is active: iscsiadm cannot reach iscsid \
             (systemctl enable --now iscsid.socket)",
        )
    } else {
        Check::new("iscsid", true, format!("{} active", active.join(" and ")))
    }
}

pub(crate) fn iscsi_tcp(root: &Path) -> Check {
    if module_loaded(root, "iscsi_tcp") {
        Check::new("iscsi_tcp", true, "module loaded")
    } else {
        Check::new(
            "iscsi_tcp",
            false,
            "module not loaded (rkos loads it at boot: /usr/lib/modules-load.d/rkos-longhorn.conf)",
        )
    }
}

pub(crate) fn initiator_name(root: &Path) -> Check {
    let fail = |why: String| Check::new("initiator-name", false, why);
    let Some(file) = read(root, iscsi::NAME_FILE) else {
        return fail(format!("{} is missing", iscsi::NAME_FILE));
    };
    let Some(name) = iscsi::parse(&file) else {
        return fail(format!("{} has no InitiatorName= line", iscsi::NAME_FILE));
    };
    if !iscsi::well_formed(&name) {
        return fail(format!("{name} is not a well-formed iSCSI name"));
    }
    let image_file = format!("{}{}", paths::IMAGE_MOUNT, iscsi::NAME_FILE);
    if read(root, &image_file).and_then(|f| iscsi::parse(&f)) == Some(name.clone()) {
        return fail(format!(
            "{name} is the image's, shared by every node made from it \
             (rkos-iscsi-initiator.service did not run?)"
        ));
    }
    match iscsi::machine_id(root) {
        Ok(id) if iscsi::initiator_name(&id) == Some(name.clone()) => Check::new(
            "initiator-name",
            true,
            format!("{name}, this node's (from its machine id)"),
        ),
        Ok(_) => fail(format!(
            "{name} is not the one derived from this node's machine id \
             (rkos initiator-name --write, or restart rkos-iscsi-initiator.service)"
        )),
        Err(e) => fail(e.to_string()),
    }
}

pub(crate) fn nfs4_client(root: &Path) -> Check {
    let Some(mount) = program(root, "mount.nfs4") else {
        return Check::new("nfs4-client", false, "mount.nfs4 missing (nfs-common)");
    };
    let kernel = read(root, "/proc/filesystems").is_some_and(|f| {
        f.lines()
            .any(|l| l.split_whitespace().last() == Some("nfs4"))
    }) || module_loaded(root, "nfsv4")
        || module_available(root, "kernel/fs/nfs/nfsv4.ko");
    if kernel {
        let bin = Path::new("/").join(mount.strip_prefix(root).unwrap_or(&mount));
        Check::new(
            "nfs4-client",
            true,
            format!("{} and the kernel's NFSv4 client", bin.display()),
        )
    } else {
        Check::new(
            "nfs4-client",
            false,
            "the kernel has no NFSv4 client: nfs4 not in /proc/filesystems, nfsv4 neither \
             loaded nor in modules.dep",
        )
    }
}

pub(crate) fn dm_crypt(root: &Path) -> Check {
    match (program(root, "cryptsetup"), module_loaded(root, "dm_crypt")) {
        (Some(_), true) => Check::new("dm-crypt", true, "cryptsetup present, dm_crypt loaded"),
        (None, _) => Check::new(
            "dm-crypt",
            false,
            "cryptsetup missing: encrypted volumes cannot be opened",
        ),
        (Some(_), false) => Check::new(
            "dm-crypt",
            false,
            "dm_crypt not loaded (rkos loads it at boot: /usr/lib/modules-load.d/rkos-longhorn.conf)",
        ),
    }
}

pub(crate) fn longhorn_persistent(mounts: &[Mount]) -> Check {
    let fail = |why: String| Check::new("longhorn-data", false, why);
    let Some(data) = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == paths::DATA_MOUNT)
    else {
        return fail(format!(
            "no RKOS_DATA at {} (a live or network-booted node): {LONGHORN_DIR} is lost at \
             every reboot; install rkos to a disk",
            paths::DATA_MOUNT
        ));
    };
    match mounts::containing(mounts, LONGHORN_DIR) {
        Some(m) if m.device == data.device => Check::new(
            "longhorn-data",
            true,
            format!("{LONGHORN_DIR} is on RKOS_DATA ({})", data.source),
        ),
        Some(m) => fail(format!(
            "{LONGHORN_DIR} is on {} ({} at {}), not on RKOS_DATA: lost at reboot",
            m.source, m.fstype, m.mount_point
        )),
        None => fail(format!("no mount holds {LONGHORN_DIR}")),
    }
}

pub(crate) fn propagation(mounts: &[Mount]) -> Check {
    let mut not_shared = Vec::new();
    for path in ["/", KUBELET_DIR, LONGHORN_DIR] {
        match mounts::containing(mounts, path) {
            Some(m) if m.shared() => {}
            Some(m) => not_shared.push(format!("{path} (mount {})", m.mount_point)),
            None => not_shared.push(format!("{path} (no mount)")),
        }
    }
    if not_shared.is_empty() {
        Check::new(
            "mount-propagation",
            true,
            format!("shared on /, {KUBELET_DIR} and {LONGHORN_DIR}"),
        )
    } else {
        Check::new(
            "mount-propagation",
            false,
            format!(
                "not shared: {} (CSI mounts with Bidirectional propagation need it)",
                not_shared.join(", ")
            ),
        )
    }
}

pub(crate) fn multipathd(root: &Path, units: &dyn Units) -> Check {
    if program(root, "multipathd").is_none() {
        return Check::new("multipathd", true, "not installed");
    }
    if !units.is_active("multipathd.service") && !units.is_active("multipathd.socket") {
        return Check::new("multipathd", true, "installed but not running");
    }
    let mut confs = vec![under(root, "/etc/multipath.conf")];
    if let Ok(dir) = fs::read_dir(under(root, "/etc/multipath/conf.d")) {
        let mut more: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        more.sort();
        confs.extend(more);
    }
    let patterns: Vec<String> = confs
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|t| multipath::blacklisted_devnodes(&t))
        .collect();
    if multipath::covers_scsi_disks(&patterns) {
        Check::new("multipathd", true, "running, blacklisting sd devices")
    } else {
        Check::new(
            "multipathd",
            false,
            "running without blacklisting Longhorn's sd devices: add `blacklist { devnode \
             \"^sd[a-z0-9]+\" }` to /etc/multipath.conf",
        )
    }
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
