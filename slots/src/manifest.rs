//! The slot manifest (`slots/<X>/manifest.json`), also the manifest of an upgrade bundle:
//! `{"version","min_version"?,"arch","files":[{"name","size","sha256"}]}`. `rkos-init` checks
//! the rootfs against it at boot; the bundle's signature covers its exact bytes.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use rkos_contract::files::{MANIFEST, SIGNATURE, SLOT_FILES};

use crate::version::compare_versions;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: String,
    /// The release's rollback floor: once a node has run this release as good, it never
    /// installs a version older than this one, `--allow-downgrade` included (see
    /// [`crate::floor`]). Written only when set, so a manifest without a floor keeps the bytes
    /// (and signatures) of before, and nodes that predate the field still read it; a manifest
    /// WITH it is refused by those nodes (`deny_unknown_fields`), which is the price of
    /// setting a floor on a release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
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
        if let Some(min) = &self.min_version {
            match compare_versions(min, &self.version) {
                Some(Ordering::Less | Ordering::Equal) => {}
                Some(Ordering::Greater) => {
                    return bad(format!(
                        "min_version {min:?} is above the release's own version {:?}",
                        self.version
                    ))
                }
                None => {
                    return bad(format!(
                        "min_version {min:?} and version {:?} must both be versions (semver order)",
                        self.version
                    ))
                }
            }
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

/// A valid manifest of `version` for tests: the slot files, 1 byte each.
#[cfg(test)]
pub(crate) fn test_manifest(version: &str, min_version: Option<&str>) -> Manifest {
    Manifest {
        version: version.into(),
        min_version: min_version.map(str::to_string),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Manifest {
        test_manifest("1.2.3", None)
    }

    #[test]
    fn roundtrip() {
        let m = good();
        assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
        assert_eq!(m.total_size(), 3);
    }

    /// The bytes a manifest without a floor had before `min_version` existed: its signature,
    /// and every node that reads it, depend on them.
    #[test]
    fn without_a_floor_the_bytes_are_those_of_before() {
        let mut m = good();
        m.files.truncate(1);
        let json = String::from_utf8(m.to_json()).unwrap();
        let z = "a".repeat(64);
        let before = format!(
            "{{\n  \"version\": \"1.2.3\",\n  \"arch\": \"amd64\",\n  \"files\": [\n    {{\n      \"name\": \"{}\",\n      \"size\": 1,\n      \"sha256\": \"{z}\"\n    }}\n  ]\n}}\n",
            SLOT_FILES[0]
        );
        assert_eq!(json, before);
        assert!(!json.contains("min_version"));
    }

    #[test]
    fn a_floor_round_trips() {
        let mut m = good();
        m.min_version = Some("1.2".into());
        let json = m.to_json();
        assert!(
            String::from_utf8_lossy(&json).contains("\"min_version\": \"1.2\""),
            "{}",
            String::from_utf8_lossy(&json)
        );
        let back = Manifest::parse(&json).unwrap();
        assert_eq!(back.min_version.as_deref(), Some("1.2"));
        assert_eq!(back, m);
        // Its own version is a floor too (nothing older than this release).
        m.min_version = Some("v1.2.3".into());
        Manifest::parse(&m.to_json()).unwrap();
        // Read from text that has it: absent is None, present is the string.
        let z = "0".repeat(64);
        let files: Vec<String> = SLOT_FILES
            .iter()
            .map(|n| format!(r#"{{"name":"{n}","size":1,"sha256":"{z}"}}"#))
            .collect();
        let text = |extra: &str| {
            format!(
                r#"{{"version":"2.0"{extra},"arch":"amd64","files":[{}]}}"#,
                files.join(",")
            )
        };
        assert_eq!(
            Manifest::parse(text("").as_bytes()).unwrap().min_version,
            None
        );
        assert_eq!(
            Manifest::parse(text(r#","min_version":"1.5""#).as_bytes())
                .unwrap()
                .min_version
                .as_deref(),
            Some("1.5")
        );
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
            Box::new(|m| m.min_version = Some("1.2.4".into())),
            Box::new(|m| m.min_version = Some("dev".into())),
            Box::new(|m| {
                m.version = "dev".into();
                m.min_version = Some("1.0".into());
            }),
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
