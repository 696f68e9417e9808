//! Writing a rendered file set under a root directory.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};

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
    #[error("{0}: a symlink not owned by root is in the way; not following it")]
    Symlink(PathBuf),
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
///
/// Directories are opened one by one from `root` without following a symlink that root does
/// not own ([`open_dir`]), and the file is written through the opened directory: a user who
/// plants `~/.ssh -> /etc` under the persistent `/home` cannot make root write, or hand the
/// user, a file elsewhere.
pub fn write_rendered(root: &Path, files: &[RenderedFile]) -> Result<Vec<PathBuf>, ApplyError> {
    let mut changed = Vec::new();
    for f in files {
        let dest = target(root, &f.path)?;
        let rel = dest.strip_prefix(root).unwrap_or(&dest);
        let (Some(rel_dir), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Err(ApplyError::BadPath(f.path.clone()));
        };
        let dir = open_dir(root, rel_dir)?;
        // The opened directory by its descriptor: every later path operation (the temporary,
        // the rename, the fsync) lands in exactly the directory checked above.
        let held = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        if unchanged(&held, f) {
            continue;
        }
        let mut out = AtomicFile::new(&held, f.mode).map_err(io(&dest, "create"))?;
        out.write_all(&f.content).map_err(io(&dest, "write"))?;
        chown_if_needed(out.file(), &dest, f)?;
        out.commit().map_err(io(&dest, "replace"))?;
        changed.push(f.path.clone());
    }
    Ok(changed)
}

/// Opens `root/rel` (normal components only, as [`target`] makes them), creating missing
/// directories (0755), one component at a time. A symlink on the way is followed only when
/// root owns it: only root can create one in a directory root owns (`/lib -> usr/lib`,
/// `/var/run -> /run`), while a user's own link in a user's directory is refused.
fn open_dir(root: &Path, rel: &Path) -> Result<OwnedFd, ApplyError> {
    let dir_flags = OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let mut cur = openat(AT_FDCWD, root, dir_flags, Mode::empty())
        .map_err(|e| io(root, "open directory")(e.into()))?;
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        let name = c.as_os_str();
        let next = match openat(&cur, name, dir_flags | OFlag::O_NOFOLLOW, Mode::empty()) {
            Err(Errno::ENOENT) => {
                match mkdirat(&cur, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io(&at, "create directory")(e.into())),
                }
                openat(&cur, name, dir_flags | OFlag::O_NOFOLLOW, Mode::empty())
            }
            // O_NOFOLLOW met a symlink (ELOOP; ENOTDIR on some kernels with O_DIRECTORY).
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let st = fstatat(&cur, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| io(&at, "stat")(e.into()))?;
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
                    return Err(io(&at, "open directory")(Errno::ENOTDIR.into()));
                }
                if st.st_uid != 0 {
                    return Err(ApplyError::Symlink(at));
                }
                openat(&cur, name, dir_flags, Mode::empty())
            }
            other => other,
        };
        cur = next.map_err(|e| io(&at, "open directory")(e.into()))?;
    }
    Ok(cur)
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
    fn a_planted_symlink_under_home_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let home = d.path().join("home/rkos");
        std::fs::create_dir_all(&home).unwrap();
        // A user's link (given to uid 1000 when the test runs as root; a user's own
        // otherwise): root must not write through it.
        let plant = |link: &Path| {
            std::os::unix::fs::symlink(elsewhere.path(), link).unwrap();
            let _ = std::os::unix::fs::lchown(link, Some(1000), Some(1000));
        };
        plant(&home.join(".ssh"));
        let keys = RenderedFile {
            path: "/home/rkos/.ssh/authorized_keys".into(),
            mode: 0o600,
            uid: 1000,
            gid: 1000,
            content: b"ssh-ed25519 AAAA admin\n".to_vec(),
        };
        let err = write_rendered(d.path(), std::slice::from_ref(&keys)).unwrap_err();
        assert!(matches!(err, ApplyError::Symlink(_)), "{err}");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        // A link one level up is refused the same way, and nothing is created through it.
        std::fs::remove_file(home.join(".ssh")).unwrap();
        std::fs::remove_dir(&home).unwrap();
        plant(&home);
        assert!(matches!(
            write_rendered(d.path(), std::slice::from_ref(&keys)),
            Err(ApplyError::Symlink(_))
        ));
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        // A link as the file itself is replaced, never written through.
        std::fs::remove_file(&home).unwrap();
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        std::os::unix::fs::symlink(&victim, home.join(".ssh/authorized_keys")).unwrap();
        write_rendered(d.path(), &[keys]).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        let written = home.join(".ssh/authorized_keys");
        assert!(std::fs::symlink_metadata(&written).unwrap().is_file());
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
