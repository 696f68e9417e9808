//! Collecting the config sources from a root directory (see ARCHITECTURE.md for the list).

use std::path::{Path, PathBuf};

use rkos_contract::paths::{
    under, BOOT_CONFIG, CIDATA_USER_DATA, DATASOURCES_DIR, IMAGE_DEFAULTS_DIR, LAST_GOOD_DIR,
    PERSISTENT_CONFIG, PERSISTENT_CONFIG_DIR, VAR_LIB_RKOS,
};

use crate::diag::Diagnostic;
use crate::load::{Source, SourceKind};

/// Files bigger than this are not config (and are refused rather than read into memory).
pub const MAX_SOURCE_BYTES: u64 = 16 * 1024 * 1024;

/// The sources under `root`, lowest first, and the kernel command line last. Missing files
/// are skipped; unreadable ones are in [`collect_report`]'s diagnostics.
pub fn collect(root: &Path, cmdline: &str) -> Vec<Source> {
    collect_report(root, cmdline).0
}

/// The `*.yaml` (and `*.yml`) files of a directory in name order.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Like [`collect`], also returning a diagnostic for each file that exists but cannot be
/// read (permissions, not UTF-8, too big).
pub fn collect_report(root: &Path, cmdline: &str) -> (Vec<Source>, Vec<Diagnostic>) {
    collect_report_with_defaults(root, root, cmdline)
}

/// Like [`collect_report`], with the image defaults read under `defaults_root` instead of
/// `root`. rkos-init reads them from its initramfs, which carries a copy made from the same
/// image: reading them from the squashfs would decompress a whole 1 MiB block, most of the
/// init's own time under emulation.
pub fn collect_report_with_defaults(
    defaults_root: &Path,
    root: &Path,
    cmdline: &str,
) -> (Vec<Source>, Vec<Diagnostic>) {
    let (mut out, mut diags) = image_defaults(defaults_root);
    let (rest, rest_diags) = collect_report_after_defaults(root, cmdline);
    out.extend(rest);
    diags.extend(rest_diags);
    (out, diags)
}

/// The image defaults under `root`, the lowest sources.
pub fn image_defaults(root: &Path) -> (Vec<Source>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let out = yaml_files(&under(root, IMAGE_DEFAULTS_DIR))
        .into_iter()
        .filter_map(|p| read(SourceKind::ImageDefault, &p, &mut diags))
        .collect();
    (out, diags)
}

/// The sources above the image defaults under `root`, lowest first, and the kernel command
/// line last.
pub fn collect_report_after_defaults(root: &Path, cmdline: &str) -> (Vec<Source>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut diags = Vec::new();
    let mut add = |kind: SourceKind, path: PathBuf| {
        if let Some(s) = read(kind, &path, &mut diags) {
            out.push(s);
        }
    };
    add(SourceKind::BootMedium, under(root, BOOT_CONFIG));
    add(SourceKind::CloudInit, under(root, CIDATA_USER_DATA));
    for p in yaml_files(&under(root, DATASOURCES_DIR)) {
        add(SourceKind::DataSource, p);
    }
    add(SourceKind::Persistent, under(root, PERSISTENT_CONFIG));
    for p in yaml_files(&under(root, PERSISTENT_CONFIG_DIR)) {
        add(SourceKind::Persistent, p);
    }
    if !cmdline.trim().is_empty() {
        out.push(Source::cmdline(cmdline));
    }
    (out, diags)
}

fn read(kind: SourceKind, path: &Path, diags: &mut Vec<Diagnostic>) -> Option<Source> {
    let name = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            diags.push(Diagnostic::error(name, "", format!("cannot read: {e}")));
            return None;
        }
    };
    if meta.len() > MAX_SOURCE_BYTES {
        diags.push(Diagnostic::error(
            name,
            "",
            format!(
                "{} bytes is too big for a config file (limit {MAX_SOURCE_BYTES})",
                meta.len()
            ),
        ));
        return None;
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(Source::new(kind, name, text)),
            Err(_) => {
                diags.push(Diagnostic::error(name, "", "not UTF-8 text"));
                None
            }
        },
        Err(e) => {
            diags.push(Diagnostic::error(name, "", format!("cannot read: {e}")));
            None
        }
    }
}

/// Where the last good copy of a persistent source is kept: its path relative to
/// `/var/lib/rkos`, under [`LAST_GOOD_DIR`].
pub(crate) fn last_good_path(root: &Path, source_name: &str) -> Option<PathBuf> {
    let (source, last_good) = (Path::new(source_name), under(root, LAST_GOOD_DIR));
    if source.starts_with(&last_good) {
        return None;
    }
    let rel = source.strip_prefix(under(root, VAR_LIB_RKOS)).ok()?;
    Some(last_good.join(rel))
}

/// Saves a copy of every persistent source that loads without errors as its last good copy
/// (atomically), and removes copies whose source no longer exists.
pub fn save_last_good(root: &Path, sources: &[Source]) -> Result<(), crate::apply::ApplyError> {
    let mut files = Vec::new();
    for s in sources.iter().filter(|s| s.kind == SourceKind::Persistent) {
        let Some(copy) = last_good_path(root, &s.name) else {
            continue;
        };
        if crate::parse_source(s).has_errors() {
            continue;
        }
        let rel = copy.strip_prefix(root).unwrap_or(&copy);
        files.push(crate::RenderedFile {
            path: Path::new("/").join(rel),
            mode: 0o600,
            uid: 0,
            gid: 0,
            content: s.text.clone().into_bytes(),
        });
    }
    crate::apply::write_rendered(root, &files)?;
    let keep: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    let dir = under(root, LAST_GOOD_DIR);
    let mut stale = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                if !keep.contains(&Path::new("/").join(rel)) {
                    stale.push(p);
                }
            }
        }
    }
    // Only copies whose source is gone: a broken source keeps its last good copy.
    for p in stale {
        let rel = p.strip_prefix(under(root, LAST_GOOD_DIR)).unwrap_or(&p);
        if !under(root, VAR_LIB_RKOS).join(rel).exists() {
            let _ = std::fs::remove_file(&p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_skips() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let w = |p: &str, t: &str| {
            let f = r.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, t).unwrap();
        };
        w("usr/lib/rkos/config.d/20-b.yaml", "hostname: b\n");
        w("usr/lib/rkos/config.d/10-a.yaml", "hostname: a\n");
        w("usr/lib/rkos/config.d/README", "not config");
        w("run/rkos/cidata/user-data", "#cloud-config\nhostname: c\n");
        w("var/lib/rkos/config.yaml", "hostname: p\n");
        w("var/lib/rkos/config.d/01.yaml", "hostname: q\n");
        w("run/rkos/boot/config.yaml", "\u{ff}");
        std::fs::write(r.join("run/rkos/boot/config.yaml"), [0xffu8, 0xfe]).unwrap();
        let (s, diags) = collect_report(r, "rkos.hostname=k");
        let kinds: Vec<SourceKind> = s.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                SourceKind::ImageDefault,
                SourceKind::ImageDefault,
                SourceKind::CloudInit,
                SourceKind::Persistent,
                SourceKind::Persistent,
                SourceKind::Cmdline
            ]
        );
        assert!(s[0].name.ends_with("10-a.yaml"));
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0]
                .to_string()
                .ends_with("boot/config.yaml: not UTF-8 text"),
            "{}",
            diags[0]
        );
        let loaded = crate::load(&s);
        assert_eq!(loaded.config.hostname.as_deref(), Some("k"));
    }
}
