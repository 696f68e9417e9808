//! The early config: copying the boot medium's config and the cloud-init seeds (NoCloud,
//! ConfigDrive) into `/run/rkos`, loading the node's config through `rkos-config`'s one entry
//! point, and the pieces of what must be in place before systemd starts (hostname, sysctls,
//! persistent paths), each with its root as a parameter. Config problems are reported, never
//! fatal.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rkos_config::{Config, ImageDefaults, NodeConfig};
use rkos_contract::files::{CIDATA_FILES, CONFIG_DRIVE_FILES, CONFIG_DRIVE_LATEST, MEDIUM_CONFIG};
use rkos_contract::paths::{self, under};

use crate::plan::{self, Step};

/// Copies `from` to `to` with mode 0600 (a config may hold a cluster token), creating the
/// parent. The copy is written under a temporary name and renamed, so readers never see half.
fn copy_private(from: &Path, to: &Path) -> io::Result<()> {
    let parent = to
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent"))?;
    fs::create_dir_all(parent)?;
    let tmp = to.with_extension("rkos-tmp");
    let data = fs::read(from)?;
    fs::write(&tmp, data)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, to)
}

/// Copies the boot medium's `rkos/config.yaml` to `ROOT/run/rkos/boot/config.yaml`. Returns
/// whether the medium had one.
pub fn copy_boot_config(medium: &Path, root: &Path) -> io::Result<bool> {
    let src = medium.join(MEDIUM_CONFIG);
    if !src.is_file() {
        return Ok(false);
    }
    copy_private(&src, &under(root, paths::BOOT_CONFIG))?;
    Ok(true)
}

/// Copies the NoCloud files found in the mounted seed `seed` to `ROOT/run/rkos/cidata/`.
/// Returns the names copied.
pub fn copy_cidata(seed: &Path, root: &Path) -> io::Result<Vec<String>> {
    copy_named(seed, &CIDATA_FILES, &under(root, paths::CIDATA_DIR))
}

/// Copies the files rkos reads from a mounted ConfigDrive `drive` (`config-2`:
/// `openstack/latest/` `meta_data.json`, `network_data.json`, `user_data`) to
/// `ROOT/run/rkos/config-2/`. Returns the names copied.
pub fn copy_config_drive(drive: &Path, root: &Path) -> io::Result<Vec<String>> {
    copy_named(
        &drive.join(CONFIG_DRIVE_LATEST),
        &CONFIG_DRIVE_FILES,
        &under(root, paths::CONFIG_DRIVE_DIR),
    )
}

/// Copies each of `names` that is a file in `from` into `to`, privately; returns the names
/// copied.
fn copy_named(from: &Path, names: &[&str], to: &Path) -> io::Result<Vec<String>> {
    let mut copied = Vec::new();
    for name in names {
        let src = from.join(name);
        if src.is_file() {
            copy_private(&src, &to.join(name))?;
            copied.push(name.to_string());
        }
    }
    Ok(copied)
}

/// The early config: merged from every source, with the problems found (one line each) and
/// the primary MAC (for the default hostname).
pub struct EarlyConfig {
    pub config: Config,
    pub problems: Vec<String>,
    pub primary_mac: Option<String>,
}

impl EarlyConfig {
    /// The hostname this config gives the machine: the config's, else the default, from the
    /// machine id where the node has one of its own (installed: see `crate::identity`), else
    /// from the primary MAC.
    pub fn hostname(&self, machine_id: Option<&str>) -> String {
        self.config
            .hostname_or_default(machine_id, self.primary_mac.as_deref())
    }
}

/// The node's config from the sources under `sysroot`, read as every reader of it reads it
/// ([`NodeConfig`]: a broken persistent file gives way to its last good copy), and every
/// problem found, one line each (`error: SOURCE:LINE:COL: key: message`). Source names are
/// shown as the booted system will see them (without `sysroot`).
///
/// The image defaults are `defaults` when the initramfs held them (built with a copy from
/// the same image), else they are read from `sysroot`.
pub fn load_config(
    defaults: Option<ImageDefaults>,
    sysroot: &Path,
    cmdline: &str,
    primary_mac: Option<&str>,
) -> EarlyConfig {
    let loaded = NodeConfig::at(sysroot)
        .cmdline(cmdline)
        .image_defaults(defaults)
        .names_as_booted()
        .load();
    EarlyConfig {
        primary_mac: primary_mac.map(str::to_string),
        problems: loaded
            .diagnostics
            .iter()
            .map(|d| format!("{}: {d}", d.severity))
            .collect(),
        config: loaded.config,
    }
}

/// The config's extra persistent paths (beyond [`plan::DEFAULT_PERSISTENT`]) as seed and
/// bind steps grouped by path, parents before their children whatever order the config
/// lists them in, and a problem line for each bad path (which is skipped).
pub fn persistent_groups(extra: &[String]) -> (Vec<(PathBuf, Vec<Step>)>, Vec<String>) {
    let already: Vec<PathBuf> = plan::DEFAULT_PERSISTENT.iter().map(PathBuf::from).collect();
    let mut good = Vec::new();
    let mut problems = Vec::new();
    for p in extra {
        match plan::normalize_persistent(p) {
            Ok(_) => good.push(p.clone()),
            Err(e) => problems.push(format!("error: {e}")),
        }
    }
    let groups = plan::persistent_groups(&good, &already).unwrap_or_default();
    (groups, problems)
}

/// Writes the problems for the login prompt (`ROOT/run/rkos/config-errors`, one per line);
/// removes a stale file when there are none.
pub fn write_problems(root: &Path, lines: &[String]) -> io::Result<()> {
    rkos_io::write_lines_or_remove(&under(root, paths::CONFIG_ERRORS), lines)
}

/// `net.ipv4.ip_forward` -> `PROC_SYS/net/ipv4/ip_forward`. Keys with `/` are taken as paths
/// (as sysctl(8) does) so interface names with dots can be written.
pub fn sysctl_path(proc_sys: &Path, key: &str) -> Result<PathBuf, String> {
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    let rel = rel.trim_start_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!("sysctl {key:?}: not a sysctl name"));
    }
    Ok(proc_sys.join(rel))
}

/// Writes each sysctl; returns a line per failure.
pub fn write_sysctls<'a>(
    proc_sys: &Path,
    sysctls: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (k, v) in sysctls {
        match sysctl_path(proc_sys, k) {
            Ok(p) => {
                if !p.exists() {
                    problems.push(format!(
                        "sysctl {k}: no such setting ({} missing)",
                        p.display()
                    ));
                } else if let Err(e) = fs::write(&p, format!("{v}\n")) {
                    problems.push(format!("sysctl {k}={v}: {e}"));
                }
            }
            Err(e) => problems.push(e),
        }
    }
    problems
}

/// Writes `SYSROOT/etc/hostname`.
pub fn write_hostname(sysroot: &Path, name: &str) -> io::Result<()> {
    let etc = sysroot.join("etc");
    fs::create_dir_all(&etc)?;
    fs::write(etc.join("hostname"), format!("{name}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copies_boot_config_and_seed_privately() {
        let d = tempfile::tempdir().unwrap();
        let (medium, root) = (d.path().join("medium"), d.path());
        let run = root.join("run/rkos");
        assert!(!copy_boot_config(&medium, root).unwrap());
        fs::create_dir_all(medium.join("rkos")).unwrap();
        fs::write(medium.join("rkos/config.yaml"), "hostname: a\n").unwrap();
        assert!(copy_boot_config(&medium, root).unwrap());
        let copy = run.join("boot/config.yaml");
        assert_eq!(fs::read_to_string(&copy).unwrap(), "hostname: a\n");
        assert_eq!(fs::metadata(&copy).unwrap().mode() & 0o777, 0o600);
        let seed = d.path().join("seed");
        fs::create_dir_all(&seed).unwrap();
        fs::write(seed.join("user-data"), "#cloud-config\nhostname: b\n").unwrap();
        fs::write(seed.join("meta-data"), "instance-id: x\n").unwrap();
        fs::write(seed.join("other"), "ignored").unwrap();
        assert_eq!(
            copy_cidata(&seed, root).unwrap(),
            ["meta-data", "user-data"]
        );
        assert!(run.join("cidata/meta-data").is_file());
        assert!(!run.join("cidata/other").exists());
        assert!(!run.join("cidata/user-data.rkos-tmp").exists());
        let drive = d.path().join("drive");
        fs::create_dir_all(drive.join("openstack/latest")).unwrap();
        fs::create_dir_all(drive.join("openstack/2012-08-10")).unwrap();
        fs::write(drive.join("openstack/latest/meta_data.json"), "{}").unwrap();
        fs::write(drive.join("openstack/latest/user_data"), "#cloud-config\n").unwrap();
        fs::write(drive.join("openstack/latest/vendor_data.json"), "{}").unwrap();
        fs::write(drive.join("openstack/2012-08-10/meta_data.json"), "{}").unwrap();
        assert_eq!(
            copy_config_drive(&drive, root).unwrap(),
            ["meta_data.json", "user_data"]
        );
        let copy = run.join("config-2/user_data");
        assert_eq!(fs::metadata(&copy).unwrap().mode() & 0o777, 0o600);
        assert!(!run.join("config-2/vendor_data.json").exists());
    }

    #[test]
    fn config_from_sysroot_with_problems_named_as_booted() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let mac = Some("52:54:00:12:34:56");
        fs::create_dir_all(root.join("run/rkos/cidata")).unwrap();
        let load = |cmdline| load_config(ImageDefaults::parse(root), root, cmdline, mac);
        let early = load("quiet");
        assert_eq!(early.hostname(None), rkos_config::default_hostname(mac));
        // A node with a machine id of its own is named after it.
        let id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
        assert_eq!(
            early.hostname(Some(id)),
            rkos_config::node_default_hostname(Some(id), None)
        );
        fs::write(
            root.join("run/rkos/cidata/user-data"),
            "#cloud-config\nhostname: node-1\n",
        )
        .unwrap();
        let early = load("quiet");
        assert_eq!(early.hostname(Some(id)), "node-1");
        assert!(early.problems.is_empty(), "{:?}", early.problems);
        fs::create_dir_all(root.join("run/rkos/boot")).unwrap();
        fs::write(
            root.join("run/rkos/boot/config.yaml"),
            "hostname: [unclosed\n",
        )
        .unwrap();
        let early = load("");
        assert_eq!(
            (early.config.hostname.as_deref(), &*early.hostname(None)),
            (Some("node-1"), "node-1")
        );
        let problems = early.problems;
        assert!(!problems.is_empty());
        assert!(
            problems[0].starts_with("error: /run/rkos/boot/config.yaml"),
            "{problems:?}"
        );
        assert!(
            !problems
                .iter()
                .any(|p| p.contains(&*root.to_string_lossy())),
            "{problems:?}"
        );
    }

    #[test]
    fn image_defaults_come_from_the_initramfs_copy_when_there() {
        let d = tempfile::tempdir().unwrap();
        let (initramfs, sysroot) = (d.path().join("initramfs"), d.path().join("sysroot"));
        let load = || load_config(ImageDefaults::parse(&initramfs), &sysroot, "", None);
        let write = |root: &Path, text: &str| {
            let dir = under(root, paths::IMAGE_DEFAULTS_DIR);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("00-image.yaml"), text).unwrap();
        };
        write(&sysroot, "rkos:\n  modules: [from_sysroot]\n");
        // No copy in the initramfs: the sysroot's defaults.
        assert_eq!(load().config.rkos.modules, ["from_sysroot"]);
        write(&initramfs, "rkos:\n  modules: [from_initramfs\n");
        let early = load();
        assert!(early.config.rkos.modules.is_empty());
        // Named as the booted system sees the file, not by the initramfs path.
        assert!(
            early.problems[0].starts_with("error: /usr/lib/rkos/config.d/00-image.yaml"),
            "{:?}",
            early.problems
        );
        write(&initramfs, "rkos:\n  modules: [from_initramfs]\n");
        assert_eq!(load().config.rkos.modules, ["from_initramfs"]);
    }

    #[test]
    fn extra_persistent_paths_parents_first_bad_ones_reported() {
        let extra = [
            "/srv/data/db",
            "/srv/data",
            "relative",
            "/var/lib/rkos",
            "/srv/data/",
        ];
        let (groups, problems) = persistent_groups(&extra.map(String::from));
        let paths: Vec<&Path> = groups.iter().map(|(p, _)| p.as_path()).collect();
        // Built-in paths are bound already; a path given twice is bound once.
        assert_eq!(paths, [Path::new("/srv/data"), Path::new("/srv/data/db")]);
        assert!(matches!(
            groups[0].1.last(),
            Some(Step::Bind { to, .. }) if to == Path::new("/sysroot/srv/data")
        ));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("relative"), "{problems:?}");
    }

    #[test]
    fn problems_file() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("run/rkos/config-errors");
        write_problems(d.path(), &["error: a".into(), "warning: b".into()]).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "error: a\nwarning: b\n");
        write_problems(d.path(), &[]).unwrap();
        assert!(!file.exists());
        write_problems(d.path(), &[]).unwrap();
    }

    #[test]
    fn sysctls() {
        let d = tempfile::tempdir().unwrap();
        let ps = d.path();
        fs::create_dir_all(ps.join("net/ipv4")).unwrap();
        fs::write(ps.join("net/ipv4/ip_forward"), "0\n").unwrap();
        fs::create_dir_all(ps.join("net/ipv4/conf/eth0.100")).unwrap();
        fs::write(ps.join("net/ipv4/conf/eth0.100/forwarding"), "0\n").unwrap();
        let mut m = BTreeMap::new();
        m.insert("net.ipv4.ip_forward".to_string(), "1".to_string());
        m.insert(
            "net/ipv4/conf/eth0.100/forwarding".to_string(),
            "1".to_string(),
        );
        m.insert("vm.nope".to_string(), "1".to_string());
        m.insert("net..x".to_string(), "1".to_string());
        let problems = write_sysctls(ps, &m);
        assert_eq!(
            fs::read_to_string(ps.join("net/ipv4/ip_forward")).unwrap(),
            "1\n"
        );
        assert_eq!(
            fs::read_to_string(ps.join("net/ipv4/conf/eth0.100/forwarding")).unwrap(),
            "1\n"
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.starts_with("sysctl vm.nope: no such setting")));
        assert!(problems.iter().any(|p| p.contains("not a sysctl name")));
        assert!(sysctl_path(ps, "../../etc/passwd").is_err());
        assert!(sysctl_path(ps, "").is_err());
    }

    #[test]
    fn hostname_file() {
        let d = tempfile::tempdir().unwrap();
        write_hostname(d.path(), "node-7").unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("etc/hostname")).unwrap(),
            "node-7\n"
        );
    }
}
