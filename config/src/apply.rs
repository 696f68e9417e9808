//! Writing a rendered file set under a root directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use rkos_io::AtomicFile;

use crate::render::RenderedFile;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{0}: rendered paths must be absolute and free of `..`")]
    BadPath(PathBuf),
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> ApplyError {
    let path = path.to_path_buf();
    move |source| ApplyError::Io { path, what, source }
}

/// `root` joined with an absolute rendered path, refusing `..` so nothing lands outside.
pub fn target(root: &Path, path: &Path) -> Result<PathBuf, ApplyError> {
    let rel = path
        .strip_prefix("/")
        .map_err(|_| ApplyError::BadPath(path.to_path_buf()))?;
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(ApplyError::BadPath(path.to_path_buf()));
    }
    Ok(root.join(rel))
}

/// Writes each file under `root` unless it is already there with the same content, mode and
/// owner. Each write is atomic (rkos-io's `AtomicFile`): a temporary file in the same
/// directory is created with the final mode (so a secret is never readable by others, not
/// even briefly), written, given its owner, fsynced, renamed over the target, and the
/// directory is fsynced. Returns the paths (as rendered, not joined with root) that changed.
pub fn write_rendered(root: &Path, files: &[RenderedFile]) -> Result<Vec<PathBuf>, ApplyError> {
    let mut changed = Vec::new();
    for f in files {
        let dest = target(root, &f.path)?;
        if unchanged(&dest, f) {
            continue;
        }
        let dir = dest
            .parent()
            .ok_or_else(|| ApplyError::BadPath(f.path.clone()))?;
        std::fs::create_dir_all(dir).map_err(io(dir, "create directory"))?;
        let mut out = AtomicFile::new(&dest, f.mode).map_err(io(&dest, "create"))?;
        out.write_all(&f.content).map_err(io(&dest, "write"))?;
        chown_if_needed(out.file(), &dest, f)?;
        out.commit().map_err(io(&dest, "replace"))?;
        changed.push(f.path.clone());
    }
    Ok(changed)
}

fn chown_if_needed(file: &std::fs::File, dest: &Path, f: &RenderedFile) -> Result<(), ApplyError> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(io(dest, "stat"))?;
    if meta.uid() == f.uid && meta.gid() == f.gid {
        return Ok(());
    }
    match std::os::unix::fs::fchown(file, Some(f.uid), Some(f.gid)) {
        Ok(()) => Ok(()),
        // Tests and `rkos config render` run unprivileged: keep the file, skip the owner.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::debug!(path = %dest.display(), "not root: owner left as is");
            Ok(())
        }
        Err(e) => Err(io(dest, "chown")(e)),
    }
}

fn unchanged(dest: &Path, f: &RenderedFile) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(dest) else {
        return false;
    };
    if !meta.is_file()
        || meta.mode() & 0o7777 != f.mode & 0o7777
        || meta.len() != f.content.len() as u64
    {
        return false;
    }
    let owner_ok = (meta.uid() == f.uid && meta.gid() == f.gid) || not_root();
    owner_ok && std::fs::read(dest).is_ok_and(|c| c == f.content)
}

/// Unprivileged runs cannot set owners, so owners are not compared there.
fn not_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file we just could create tells our euid without libc.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() != 0)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_atomically_with_mode_and_reports_changes() {
        let d = tempfile::tempdir().unwrap();
        let files = vec![
            RenderedFile {
                path: "/etc/rancher/k3s/config.yaml".into(),
                mode: 0o600,
                uid: 0,
                gid: 0,
                content: b"token: x\n".to_vec(),
            },
            RenderedFile {
                path: "/etc/hostname".into(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                content: b"n1\n".to_vec(),
            },
        ];
        let changed = write_rendered(d.path(), &files).unwrap();
        assert_eq!(changed.len(), 2);
        let m = std::fs::metadata(d.path().join("etc/rancher/k3s/config.yaml")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o600);
        assert_eq!(write_rendered(d.path(), &files).unwrap().len(), 0);
        let mut f2 = files.clone();
        f2[1].content = b"n2\n".to_vec();
        assert_eq!(
            write_rendered(d.path(), &f2).unwrap(),
            vec![PathBuf::from("/etc/hostname")]
        );
        let mut names: Vec<_> = std::fs::read_dir(d.path().join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["hostname", "rancher"], "no temporaries left");
    }

    #[test]
    fn refuses_escaping_paths() {
        let d = tempfile::tempdir().unwrap();
        let f = RenderedFile {
            path: "/etc/../../x".into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            content: vec![],
        };
        assert!(matches!(
            write_rendered(d.path(), &[f]),
            Err(ApplyError::BadPath(_))
        ));
        let rel = RenderedFile {
            path: "etc/x".into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            content: vec![],
        };
        assert!(write_rendered(d.path(), &[rel]).is_err());
    }
}
