//! sha256 as I/O adapters: a reader and a writer that hash what passes through them, so a
//! file is hashed in the same pass that copies or downloads it; the sha256 of a file; the
//! check of a file against a manifest entry.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Read and write size of [`copy`] and the whole-file helpers.
const CHUNK: usize = 1 << 20;

/// A sha256 in progress, with the count of the bytes it has seen.
#[derive(Clone, Default)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

/// What a hashing pass saw: the byte count and the sha256 in lowercase hex (the form of
/// `manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    pub size: u64,
    pub sha256: String,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Hashed {
        Hashed {
            size: self.len,
            sha256: hex::encode(self.sha.finalize()),
        }
    }
}

/// A reader that hashes every byte read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    pub fn into_parts(self) -> (R, Hasher) {
        (self.inner, self.hasher)
    }

    pub fn finish(self) -> Hashed {
        self.hasher.finish()
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes every byte the inner writer accepted.
pub struct HashWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        Self::with_hasher(inner, Hasher::new())
    }

    /// Continues a hash begun elsewhere (e.g. over the part of a file already on disk).
    pub fn with_hasher(inner: W, hasher: Hasher) -> Self {
        HashWriter { inner, hasher }
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Forgets what was hashed (the caller starts the content over).
    pub fn restart(&mut self) {
        self.hasher = Hasher::new();
    }

    pub fn finish(self) -> (W, Hashed) {
        (self.inner, self.hasher.finish())
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `r` to `w` in 1 MiB blocks until the end of `r`, calling `progress` with each
/// block's length; returns the bytes copied.
pub fn copy(mut r: impl Read, mut w: impl Write, mut progress: impl FnMut(u64)) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
        progress(n as u64);
    }
}

/// Size and sha256 of a stream read to its end.
pub fn sha256_reader(r: impl Read) -> io::Result<Hashed> {
    let mut h = HashReader::new(r);
    copy(&mut h, io::sink(), |_| {})?;
    Ok(h.finish())
}

/// Size and sha256 of a file, read once.
pub fn sha256_file(path: &Path) -> io::Result<Hashed> {
    sha256_reader(File::open(path)?)
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is {found} bytes, the manifest says {expected}")]
    Size {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path} has sha256 {found}, the manifest says {expected}")]
    Sha256 {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

/// Checks `path` against a manifest entry's `size` and `sha256` (lowercase hex). The size
/// is compared first, from the metadata: a truncated copy fails at once and says so.
pub fn verify_file(path: &Path, size: u64, sha256: &str) -> Result<(), VerifyError> {
    let io_err = |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io_err)?;
    let found = f.metadata().map_err(io_err)?.len();
    if found != size {
        return Err(VerifyError::Size {
            path: path.to_path_buf(),
            expected: size,
            found,
        });
    }
    let h = sha256_reader(f).map_err(io_err)?;
    // The file changed while it was read: report what was hashed.
    if h.size != size {
        return Err(VerifyError::Size {
            path: path.to_path_buf(),
            expected: size,
            found: h.size,
        });
    }
    if h.sha256 != sha256 {
        return Err(VerifyError::Sha256 {
            path: path.to_path_buf(),
            expected: sha256.to_string(),
            found: h.sha256,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("hello\n"), as `sha256sum` prints it.
    const HELLO: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn reader_and_writer_hash_what_passes_through() {
        let mut r = HashReader::new(&b"hello\n"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello\n");
        assert_eq!(
            r.finish(),
            Hashed {
                size: 6,
                sha256: HELLO.into()
            }
        );

        let mut w = HashWriter::new(Vec::new());
        w.write_all(b"hel").unwrap();
        w.write_all(b"lo\n").unwrap();
        assert_eq!(w.len(), 6);
        let (bytes, h) = w.finish();
        assert_eq!(bytes, b"hello\n");
        assert_eq!(h.sha256, HELLO);
    }

    #[test]
    fn a_hash_continues_across_adapters_and_restarts() {
        let mut first = Hasher::new();
        first.update(b"hel");
        let mut w = HashWriter::with_hasher(Vec::new(), first);
        w.write_all(b"lo\n").unwrap();
        assert_eq!(w.finish().1.sha256, HELLO);

        let mut w = HashWriter::new(Vec::new());
        w.write_all(b"garbage").unwrap();
        w.restart();
        assert!(w.is_empty());
        assert_eq!(w.finish().1.sha256, EMPTY);
    }

    /// A writer that takes at most 2 bytes per call: only what it took may be hashed.
    struct Dribble(Vec<u8>);
    impl Write for Dribble {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(2);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_writes_are_hashed_once() {
        let mut w = HashWriter::new(Dribble(Vec::new()));
        let mut seen = 0;
        let n = copy(&b"hello\n"[..], &mut w, |n| seen += n).unwrap();
        assert_eq!((n, seen), (6, 6));
        assert_eq!(w.finish().1.sha256, HELLO);
    }

    #[test]
    fn files_and_manifest_entries() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("rootfs.squashfs");
        std::fs::write(&p, b"hello\n").unwrap();
        assert_eq!(sha256_file(&p).unwrap().sha256, HELLO);
        verify_file(&p, 6, HELLO).unwrap();

        let e = verify_file(&p, 7, HELLO).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} is 6 bytes, the manifest says 7", p.display())
        );
        let other = "0".repeat(64);
        let e = verify_file(&p, 6, &other).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} has sha256 {HELLO}, the manifest says {other}",
                p.display()
            )
        );
        let missing = t.path().join("initrd");
        let e = verify_file(&missing, 6, HELLO).unwrap_err();
        assert!(matches!(e, VerifyError::Io { .. }), "{e}");
        assert!(e.to_string().contains("initrd"), "{e}");
    }
}
