//! The slot manifest (`slots/<X>/manifest.json`), also the manifest of an upgrade bundle:
//! `{"version","arch","files":[{"name","size","sha256"}]}`. `rkos-init` checks the rootfs
//! against it at boot; the bundle's signature covers its exact bytes.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use rkos_contract::files::{MANIFEST, SIGNATURE, SLOT_FILES};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: String,
    pub arch: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl FileEntry {
    /// Checks the file at `path` against this entry: size first, then sha256.
    pub fn verify(&self, path: &Path) -> Result<(), rkos_io::VerifyError> {
        rkos_io::verify_file(path, self.size, &self.sha256)
    }
}

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Parses and validates a manifest.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)?;
        m.validate()?;
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn validate(&self) -> Result<(), ManifestError> {
        let bad = |s: String| Err(ManifestError::Invalid(s));
        if self.version.is_empty() || self.version.chars().any(|c| c.is_control()) {
            return bad(format!("invalid version {:?}", self.version));
        }
        if self.arch.is_empty()
            || !self
                .arch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return bad(format!("invalid arch {:?}", self.arch));
        }
        let mut seen = HashSet::new();
        for f in &self.files {
            if !is_plain_name(&f.name) {
                return bad(format!("file name {:?} is not a plain file name", f.name));
            }
            if f.name == MANIFEST || f.name == SIGNATURE {
                return bad(format!("file name {:?} is reserved", f.name));
            }
            if !seen.insert(f.name.as_str()) {
                return bad(format!("file {:?} listed twice", f.name));
            }
            if f.sha256.len() != 64
                || !f
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return bad(format!(
                    "file {:?}: sha256 must be 64 lowercase hex digits",
                    f.name
                ));
            }
        }
        for req in SLOT_FILES {
            if !seen.contains(req) {
                return bad(format!("required file {req:?} missing"));
            }
        }
        Ok(())
    }
}

/// A name usable as one file in a slot directory: no separators, no dot files, no `..`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Manifest {
        Manifest {
            version: "1.2.3".into(),
            arch: "amd64".into(),
            files: SLOT_FILES
                .iter()
                .map(|n| FileEntry {
                    name: n.to_string(),
                    size: 1,
                    sha256: "a".repeat(64),
                })
                .collect(),
        }
    }

    #[test]
    fn roundtrip() {
        let m = good();
        assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
        assert_eq!(m.total_size(), 3);
    }

    #[test]
    fn rejects_bad_manifests() {
        type Edit = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<Edit> = vec![
            Box::new(|m| m.files[0].name = "../etc/passwd".into()),
            Box::new(|m| m.files[0].name = ".staging".into()),
            Box::new(|m| m.files[0].name = MANIFEST.into()),
            Box::new(|m| m.files[1].name = m.files[0].name.clone()),
            Box::new(|m| m.files[0].sha256 = "A".repeat(64)),
            Box::new(|m| m.files[0].sha256 = "a".repeat(63)),
            Box::new(|m| {
                m.files.pop();
            }),
            Box::new(|m| m.version = String::new()),
            Box::new(|m| m.arch = "x86/64".into()),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut m = good();
            f(&mut m);
            assert!(Manifest::parse(&m.to_json()).is_err(), "case {i} accepted");
        }
        assert!(Manifest::parse(b"{\"version\":1}").is_err());
        assert!(
            Manifest::parse(b"{\"version\":\"1\",\"arch\":\"amd64\",\"files\":[],\"x\":1}")
                .is_err()
        );
    }
}
