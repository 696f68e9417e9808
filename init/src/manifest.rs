//! Checking a slot's file against the slot's `manifest.json` (size, then sha256). The
//! manifest format and its validation belong to `rkos-slots`; signature checking
//! (`manifest.json.minisig`) belongs to the upgrade path, not to the boot.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rkos_slots::manifest::ManifestError;
pub use rkos_slots::{FileEntry, Manifest};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: ManifestError,
    },
    #[error("{manifest} has no entry for {name:?}")]
    NoEntry { manifest: PathBuf, name: String },
    #[error("{path} is {actual} bytes, the manifest says {expected}")]
    Size {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{path} has sha256 {actual}, the manifest says {expected}")]
    Sha256 {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

pub fn parse(path: &Path, text: &str) -> Result<Manifest, VerifyError> {
    Manifest::parse(text.as_bytes()).map_err(|source| VerifyError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// sha256 of a stream, read in 1 MiB blocks.
pub fn sha256_reader(mut r: impl Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((hex(&h.finalize()), total))
}

/// Checks `file` against the entry named by its file name in `manifest_path`. The size is
/// compared first: a truncated copy fails at once and says so.
pub fn verify_file(manifest_path: &Path, file: &Path) -> Result<FileEntry, VerifyError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| VerifyError::Io { path, source }
    };
    let text = std::fs::read_to_string(manifest_path).map_err(io_err(manifest_path))?;
    let manifest = parse(manifest_path, &text)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entry = manifest
        .files
        .iter()
        .find(|f| f.name == name)
        .cloned()
        .ok_or_else(|| VerifyError::NoEntry {
            manifest: manifest_path.to_path_buf(),
            name: name.clone(),
        })?;
    let f = File::open(file).map_err(io_err(file))?;
    let actual_size = f.metadata().map_err(io_err(file))?.len();
    if actual_size != entry.size {
        return Err(VerifyError::Size {
            path: file.to_path_buf(),
            expected: entry.size,
            actual: actual_size,
        });
    }
    let (actual, _) = sha256_reader(f).map_err(io_err(file))?;
    if !actual.eq_ignore_ascii_case(&entry.sha256) {
        return Err(VerifyError::Sha256 {
            path: file.to_path_buf(),
            expected: entry.sha256.to_ascii_lowercase(),
            actual,
        });
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("hello\n")
    const HELLO: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    fn setup(manifest: &str, content: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("manifest.json");
        let f = d.path().join("rootfs.squashfs");
        std::fs::write(&m, manifest).unwrap();
        std::fs::write(&f, content).unwrap();
        (d, m, f)
    }

    fn manifest(size: u64, sha: &str) -> String {
        let z = "0".repeat(64);
        format!(
            r#"{{"version":"0.1.0","arch":"amd64","files":[
                {{"name":"vmlinuz","size":1,"sha256":"{z}"}},
                {{"name":"initrd","size":1,"sha256":"{z}"}},
                {{"name":"rootfs.squashfs","size":{size},"sha256":"{sha}"}}]}}"#
        )
    }

    #[test]
    fn good_file_passes() {
        let (_d, m, f) = setup(&manifest(6, HELLO), b"hello\n");
        let e = verify_file(&m, &f).unwrap();
        assert_eq!(e.name, "rootfs.squashfs");
    }

    #[test]
    fn corrupted_file_fails_naming_both_sums() {
        let (_d, m, f) = setup(&manifest(6, HELLO), b"hellO\n");
        let e = verify_file(&m, &f).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, VerifyError::Sha256 { .. }));
        assert!(
            msg.contains(HELLO) && msg.contains("rootfs.squashfs"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_file_fails_on_size() {
        let (_d, m, f) = setup(&manifest(6, HELLO), b"hel");
        let e = verify_file(&m, &f).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} is 3 bytes, the manifest says 6", f.display())
        );
    }

    #[test]
    fn bad_or_missing_manifests() {
        let (_d, m, f) = setup("{not json", b"x");
        assert!(matches!(
            verify_file(&m, &f),
            Err(VerifyError::Parse { .. })
        ));
        // The format's own rules (rkos-slots): unknown fields, upper-case digests, missing files.
        let (_d, m, f) = setup(
            &manifest(6, HELLO).replace(r#""arch""#, r#""extra":1,"arch""#),
            b"x",
        );
        assert!(matches!(
            verify_file(&m, &f),
            Err(VerifyError::Parse { .. })
        ));
        let (_d, m, f) = setup(&manifest(6, &HELLO.to_uppercase()), b"hello\n");
        assert!(matches!(
            verify_file(&m, &f),
            Err(VerifyError::Parse { .. })
        ));
        let (_d, m, f) = setup(r#"{"version":"1","arch":"amd64","files":[]}"#, b"x");
        let e = verify_file(&m, &f).unwrap_err();
        assert!(
            e.to_string().contains("manifest.json") && e.to_string().contains("missing"),
            "{e}"
        );
        let (d, _m, f) = setup("", b"x");
        assert!(matches!(
            verify_file(&d.path().join("nope.json"), &f),
            Err(VerifyError::Io { .. })
        ));
        let (d, m, _f) = setup(&manifest(6, HELLO), b"x");
        let e = verify_file(&m, &d.path().join("rootfs.squashfs.missing")).unwrap_err();
        assert!(matches!(e, VerifyError::NoEntry { .. }));
    }

    #[test]
    fn hex_and_stream_hash() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
        assert_eq!(
            sha256_reader(&b"hello\n"[..]).unwrap(),
            (HELLO.to_string(), 6)
        );
    }
}
