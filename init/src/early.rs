//! The early config: copying the boot medium's config and the cloud-init seeds (NoCloud,
//! ConfigDrive) into `/run/rkos`,
//! loading the merged config with `rkos-config`, and what must be in place before systemd
//! starts (hostname, modules, sysctls). Config problems are reported, never fatal.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rkos_config::{Config, Diagnostic, Parsed, Source};

/// Files a NoCloud seed may carry (all read by `rkos_config::cloudinit`).
pub const CIDATA_FILES: &[&str] = rkos_config::cloudinit::NOCLOUD_FILES;

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

/// Copies the boot medium's `rkos/config.yaml` to `RUN_RKOS/boot/config.yaml`. Returns whether
/// the medium had one.
pub fn copy_boot_config(medium: &Path, run_rkos: &Path) -> io::Result<bool> {
    let src = medium.join("rkos/config.yaml");
    if !src.is_file() {
        return Ok(false);
    }
    copy_private(&src, &run_rkos.join("boot/config.yaml"))?;
    Ok(true)
}

/// Copies the NoCloud files found in the mounted seed `seed` to `RUN_RKOS/cidata/`.
/// Returns the names copied.
pub fn copy_cidata(seed: &Path, run_rkos: &Path) -> io::Result<Vec<String>> {
    let mut copied = Vec::new();
    for name in CIDATA_FILES {
        let src = seed.join(name);
        if src.is_file() {
            copy_private(&src, &run_rkos.join("cidata").join(name))?;
            copied.push(name.to_string());
        }
    }
    Ok(copied)
}

/// Copies the files rkos reads from a mounted ConfigDrive (`config-2`: `openstack/latest/`
/// `meta_data.json`, `network_data.json`, `user_data`) to `RUN_RKOS/config-2/`. Returns the
/// names copied.
pub fn copy_config_drive(drive: &Path, run_rkos: &Path) -> io::Result<Vec<String>> {
    let latest = drive.join("openstack/latest");
    let mut copied = Vec::new();
    for name in rkos_config::cloudinit::CONFIG_DRIVE_FILES {
        let src = latest.join(name);
        if src.is_file() {
            copy_private(&src, &run_rkos.join("config-2").join(name))?;
            copied.push(name.to_string());
        }
    }
    Ok(copied)
}

/// Config sources parsed ahead of the merge, with the problems met reading them. The image
/// defaults are in the initramfs from the start, so rkos-init parses them on a thread while
/// the kernel probes hardware.
pub struct ParsedSources {
    parsed: Vec<(String, Parsed)>,
    read_problems: Vec<Diagnostic>,
}

/// A source name as the booted system sees it: without the `root` it was read under.
fn unroot(root: &Path, name: &mut String) {
    let prefix = root.to_string_lossy();
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return;
    }
    if let Some(rest) = name.strip_prefix(prefix).filter(|r| r.starts_with('/')) {
        *name = rest.to_string();
    }
}

fn parse_all(
    root: &Path,
    (mut sources, mut read_problems): (Vec<Source>, Vec<Diagnostic>),
) -> ParsedSources {
    for s in &mut sources {
        unroot(root, &mut s.name);
    }
    for d in &mut read_problems {
        unroot(root, &mut d.source);
    }
    ParsedSources {
        parsed: sources
            .iter()
            .map(|s| (s.name.clone(), rkos_config::parse_source(s)))
            .collect(),
        read_problems,
    }
}

/// The image defaults under `root` (the initramfs's copy), parsed; `None` when `root` holds
/// none.
pub fn parse_image_defaults(root: &Path) -> Option<ParsedSources> {
    root.join(rkos_config::source::IMAGE_DEFAULTS_DIR)
        .is_dir()
        .then(|| parse_all(root, rkos_config::source::image_defaults(root)))
}

/// The merged config and every problem found, one line each (`error: SOURCE:LINE:COL: key:
/// message`). Source names are shown as the booted system will see them (without `sysroot`
/// or the initramfs root).
///
/// The image defaults are `defaults` when the initramfs held them (built with a copy from
/// the same image), else they are read from `sysroot`.
pub fn load_config(
    defaults: Option<ParsedSources>,
    sysroot: &Path,
    cmdline: &str,
) -> (Config, Vec<String>) {
    let defaults = defaults
        .unwrap_or_else(|| parse_all(sysroot, rkos_config::source::image_defaults(sysroot)));
    let rest = parse_all(
        sysroot,
        rkos_config::source::collect_report_after_defaults(sysroot, cmdline),
    );
    let loaded = rkos_config::load_parsed(defaults.parsed.into_iter().chain(rest.parsed));
    let lines = defaults
        .read_problems
        .iter()
        .chain(&rest.read_problems)
        .chain(&loaded.diagnostics)
        .map(|d| format!("{}: {d}", d.severity))
        .collect();
    (loaded.config, lines)
}

/// Writes the problems for the login prompt (`/run/rkos/config-errors`, one per line); removes
/// a stale file when there are none.
pub fn write_problems(run_rkos: &Path, lines: &[String]) -> io::Result<()> {
    let path = run_rkos.join("config-errors");
    if lines.is_empty() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    fs::create_dir_all(run_rkos)?;
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text)
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

/// The hostname to set: the config's, else the stable default, from the machine id where
/// the node has one of its own (installed: see `identity`), else from the primary MAC.
pub fn hostname(config: &Config, machine_id: Option<&str>, primary_mac: Option<&str>) -> String {
    match config.hostname.as_deref().map(str::trim) {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => rkos_config::node_default_hostname(machine_id, primary_mac),
    }
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
        let (medium, run) = (d.path().join("medium"), d.path().join("run/rkos"));
        assert!(!copy_boot_config(&medium, &run).unwrap());
        fs::create_dir_all(medium.join("rkos")).unwrap();
        fs::write(medium.join("rkos/config.yaml"), "hostname: a\n").unwrap();
        assert!(copy_boot_config(&medium, &run).unwrap());
        let copy = run.join("boot/config.yaml");
        assert_eq!(fs::read_to_string(&copy).unwrap(), "hostname: a\n");
        assert_eq!(fs::metadata(&copy).unwrap().mode() & 0o777, 0o600);
        let seed = d.path().join("seed");
        fs::create_dir_all(&seed).unwrap();
        fs::write(seed.join("user-data"), "#cloud-config\nhostname: b\n").unwrap();
        fs::write(seed.join("meta-data"), "instance-id: x\n").unwrap();
        fs::write(seed.join("other"), "ignored").unwrap();
        assert_eq!(
            copy_cidata(&seed, &run).unwrap(),
            ["meta-data", "user-data"]
        );
        assert!(run.join("cidata/meta-data").is_file());
        assert!(!run.join("cidata/other").exists());
        assert!(!run.join("cidata/user-data.rkos-tmp").exists());
        let drive = d.path().join("drive");
        fs::create_dir_all(drive.join("openstack/latest")).unwrap();
        fs::create_dir_all(drive.join("openstack/2012-08-10")).unwrap();
        fs::write(drive.join("openstack/latest/meta_data.json"), "{}").unwrap();
        fs::write(
            drive.join("openstack/latest/user_data"),
            "#cloud-config
",
        )
        .unwrap();
        fs::write(drive.join("openstack/latest/vendor_data.json"), "{}").unwrap();
        fs::write(drive.join("openstack/2012-08-10/meta_data.json"), "{}").unwrap();
        assert_eq!(
            copy_config_drive(&drive, &run).unwrap(),
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
        fs::create_dir_all(root.join("run/rkos/cidata")).unwrap();
        fs::write(
            root.join("run/rkos/cidata/user-data"),
            "#cloud-config\nhostname: node-1\n",
        )
        .unwrap();
        let (config, problems) = load_config(parse_image_defaults(root), root, "quiet");
        assert_eq!(config.hostname.as_deref(), Some("node-1"));
        assert!(problems.is_empty(), "{problems:?}");
        fs::create_dir_all(root.join("run/rkos/boot")).unwrap();
        fs::write(
            root.join("run/rkos/boot/config.yaml"),
            "hostname: [unclosed\n",
        )
        .unwrap();
        let (config, problems) = load_config(parse_image_defaults(root), root, "");
        assert_eq!(config.hostname.as_deref(), Some("node-1"));
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
        let defaults = rkos_config::source::IMAGE_DEFAULTS_DIR;
        fs::create_dir_all(sysroot.join(defaults)).unwrap();
        fs::write(
            sysroot.join(defaults).join("00-image.yaml"),
            "rkos:\n  modules: [from_sysroot]\n",
        )
        .unwrap();
        // No copy in the initramfs: the sysroot's defaults.
        let (config, _) = load_config(parse_image_defaults(&initramfs), &sysroot, "");
        assert_eq!(config.rkos.modules, ["from_sysroot"]);
        fs::create_dir_all(initramfs.join(defaults)).unwrap();
        fs::write(
            initramfs.join(defaults).join("00-image.yaml"),
            "rkos:\n  modules: [from_initramfs\n",
        )
        .unwrap();
        let (config, problems) = load_config(parse_image_defaults(&initramfs), &sysroot, "");
        assert!(config.rkos.modules.is_empty(), "{:?}", config.rkos.modules);
        // Named as the booted system sees the file, not by the initramfs path.
        assert!(
            problems[0].starts_with("error: /usr/lib/rkos/config.d/00-image.yaml"),
            "{problems:?}"
        );
        fs::write(
            initramfs.join(defaults).join("00-image.yaml"),
            "rkos:\n  modules: [from_initramfs]\n",
        )
        .unwrap();
        let (config, problems) = load_config(parse_image_defaults(&initramfs), &sysroot, "");
        assert_eq!(config.rkos.modules, ["from_initramfs"], "{problems:?}");
    }

    #[test]
    fn problems_file() {
        let d = tempfile::tempdir().unwrap();
        write_problems(d.path(), &["error: a".into(), "warning: b".into()]).unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("config-errors")).unwrap(),
            "error: a\nwarning: b\n"
        );
        write_problems(d.path(), &[]).unwrap();
        assert!(!d.path().join("config-errors").exists());
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
    fn hostname_choice() {
        let mut c = Config::default();
        let default = hostname(&c, None, Some("52:54:00:12:34:56"));
        assert!(
            default.starts_with("rkos-") && default.len() == 9,
            "{default}"
        );
        assert_eq!(
            default,
            rkos_config::default_hostname(Some("52:54:00:12:34:56"))
        );
        c.hostname = Some("  ".into());
        assert_eq!(
            hostname(&c, None, None),
            rkos_config::default_hostname(None)
        );
        let id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
        assert_eq!(
            hostname(&c, Some(id), Some("52:54:00:12:34:56")),
            rkos_config::node_default_hostname(Some(id), None)
        );
        c.hostname = Some("node-7".into());
        assert_eq!(hostname(&c, Some(id), None), "node-7");
        let d = tempfile::tempdir().unwrap();
        write_hostname(d.path(), "node-7").unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("etc/hostname")).unwrap(),
            "node-7\n"
        );
    }
}
