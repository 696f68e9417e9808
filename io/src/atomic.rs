//! Crash-safe file replacement: a temporary file in the target's directory is created with
//! the final mode, written, fsynced and renamed over the target, then the directory is
//! fsynced so the rename itself survives a power cut. Readers (GRUB included) see the old
//! file or the new one, never a mix, and a secret is never readable by others, not even
//! while it is being written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file being written under a temporary name beside its destination. [`AtomicFile::commit`]
/// puts it in place; dropped without a commit, the temporary is removed and the destination
/// is untouched.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

/// Distinguishes temporaries of one process, so two writers of the same file (threads or
/// processes) never share a temporary: the last rename wins, each with complete content.
static SEQ: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Starts replacing `dest`, whose directory must exist. `mode` (permission bits, the
    /// umask notwithstanding) is the new file's from its first byte.
    pub fn new(dest: &Path, mode: u32) -> io::Result<AtomicFile> {
        let dir = parent(dest)?;
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & 0o7777)
                .open(&tmp)
        };
        let file = match open() {
            // Left by a crashed run whose process id this one reuses.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                open()?
            }
            other => other?,
        };
        let atomic = AtomicFile {
            file: Some(file),
            tmp,
            dest: dest.to_path_buf(),
        };
        // open() applied the umask; the mode asked for is the mode kept.
        atomic
            .file()
            .set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        Ok(atomic)
    }

    /// The open temporary (for its metadata, or `fchown` before the commit).
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("the file is open until commit")
    }

    /// Where the new content is being written.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// fsyncs the content, renames it over the destination, fsyncs the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("commit happens once");
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp, &self.dest)?;
        fsync_dir(parent(&self.dest)?)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("open until commit").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Replaces `path` with `bytes`, mode `mode`, as [`AtomicFile`] does.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = AtomicFile::new(path, mode)?;
    f.write_all(bytes)?;
    f.commit()
}

/// A list of problem lines for the login prompt: written one per line (the directory made if
/// need be), or the file removed when there are none, so a stale list never shows.
pub fn write_lines_or_remove(path: &Path, lines: &[String]) -> io::Result<()> {
    if lines.is_empty() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    fs::create_dir_all(parent(path)?)?;
    let mut text = lines.join("\n");
    text.push('\n');
    write_atomic(path, text.as_bytes(), 0o644)
}

/// Makes directory entries (creations, renames, removals) in `dir` durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(p) => Ok(p),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no parent directory",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn replaces_with_the_exact_mode_and_leaves_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.yaml");
        fs::write(&p, "old").unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(mode(&p), 0o600);
        // A mode the usual umask (022) would cut is kept as asked.
        write_atomic(&p, b"newer", 0o666).unwrap();
        assert_eq!(mode(&p), 0o666);
        assert_eq!(names(t.path()), ["config.yaml"]);
    }

    #[test]
    fn the_temporary_has_the_final_mode_before_any_content() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("secret");
        let f = AtomicFile::new(&p, 0o600).unwrap();
        assert_eq!(mode(f.temp_path()), 0o600);
        assert_eq!(f.temp_path().parent(), Some(t.path()));
        assert!(!p.exists(), "nothing at the destination before the commit");
    }

    #[test]
    fn an_uncommitted_file_leaves_the_old_one_and_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("grubenv");
        fs::write(&p, "old").unwrap();
        {
            let mut f = AtomicFile::new(&p, 0o644).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert_eq!(fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(names(t.path()), ["grubenv"]);
    }

    #[test]
    fn two_writers_of_one_file_do_not_share_a_temporary() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        let mut a = AtomicFile::new(&p, 0o644).unwrap();
        let mut b = AtomicFile::new(&p, 0o644).unwrap();
        assert_ne!(a.temp_path(), b.temp_path());
        a.write_all(b"aaaa").unwrap();
        b.write_all(b"bb").unwrap();
        a.commit().unwrap();
        b.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"bb");
        assert_eq!(names(t.path()), ["f"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_and_writes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("missing-dir/config.yaml");
        assert!(write_atomic(&p, b"x", 0o600).is_err());
        assert!(!p.exists());
        assert!(write_atomic(Path::new("/"), b"x", 0o600).is_err());
    }

    #[test]
    fn a_relative_name_goes_to_the_current_directory() {
        assert_eq!(parent(Path::new("f")).unwrap(), Path::new("."));
    }
}
