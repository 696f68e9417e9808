//! Checking a slot's file against the slot's `manifest.json` (size, then sha256). The
//! manifest format and its validation belong to `rkos-slots`; signature checking
//! (`manifest.json.minisig`) belongs to the upgrade path, not to the boot.

use std::io;
use std::path::{Path, PathBuf};

use rkos_slots::manifest::ManifestError;
pub use rkos_slots::{FileEntry, Manifest};

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
    /// The file itself: unreadable, wrong size or wrong sha256 (rkos-io's check).
    #[error(transparent)]
    File(#[from] rkos_io::VerifyError),
}

pub fn parse(path: &Path, text: &str) -> Result<Manifest, VerifyError> {
    Manifest::parse(text.as_bytes()).map_err(|source| VerifyError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks `file` against the entry named by its file name in `manifest_path`. The size is
/// compared first: a truncated copy fails at once and says so.
pub fn verify_file(manifest_path: &Path, file: &Path) -> Result<FileEntry, VerifyError> {
    let text = std::fs::read_to_string(manifest_path).map_err(|source| VerifyError::Io {
        path: manifest_path.to_path_buf(),
        source,
    })?;
    let manifest = parse(manifest_path, &text)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entry = manifest
        .file(&name)
        .cloned()
        .ok_or_else(|| VerifyError::NoEntry {
            manifest: manifest_path.to_path_buf(),
            name: name.clone(),
        })?;
    entry.verify(file)?;
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
        assert!(matches!(
            e,
            VerifyError::File(rkos_io::VerifyError::Sha256 { .. })
        ));
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
}
