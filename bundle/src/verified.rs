//! A bundle's signed manifest, fetched and verified once, and the rules on its version.
//!
//! Whatever decides about a bundle (the expected version, no downgrade) and whatever stages
//! it must see the same bytes: a server may answer each request differently, so a manifest
//! fetched twice is two manifests. [`Verified`] holds the exact bytes that were verified;
//! staging writes those bytes into the slot and never asks the source for the manifest again.

use std::cmp::Ordering;

use rkos_contract::files::{MANIFEST, SIGNATURE};
use rkos_slots::Manifest;

use crate::error::{BundleError, Result};
use crate::keys::TrustedKeys;
use crate::source::Source;

/// A manifest whose signature checked out with one of the node's trusted keys.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The manifest's bytes, exactly as signed.
    pub manifest_bytes: Vec<u8>,
    /// The signature file's bytes.
    pub sig_bytes: Vec<u8>,
    pub manifest: Manifest,
    /// Id of the trusted key that signed the manifest.
    pub key_id: String,
}

impl Verified {
    /// Fetches the manifest and its signature from `source` (one request each) and verifies.
    pub fn fetch(source: &Source, keys: &TrustedKeys) -> Result<Verified> {
        let manifest_bytes = source.read_small(MANIFEST)?;
        let sig_bytes = source.read_small(SIGNATURE)?;
        let sig_text = std::str::from_utf8(&sig_bytes)
            .map_err(|_| BundleError::SignatureFormat("not UTF-8".into()))?;
        let (manifest, key_id) = keys.verify_manifest(&manifest_bytes, sig_text)?;
        Ok(Verified {
            manifest_bytes,
            sig_bytes,
            manifest,
            key_id,
        })
    }
}

/// Which versions a node accepts, beside the signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionPolicy {
    /// Only this version (the upgrade agent passes its plan's).
    pub expect: Option<String>,
    /// Accept a version lower than the running one (or one that cannot be ordered with it).
    pub allow_downgrade: bool,
}

impl VersionPolicy {
    /// Checks the bundle's `version` against the policy and the `running` version (the
    /// running slot's manifest; `None` when it has none). The same version is accepted here:
    /// staging reports it as already running.
    pub fn check(&self, version: &str, running: Option<&str>) -> Result<()> {
        if let Some(want) = &self.expect {
            if version != want {
                return Err(BundleError::UnexpectedVersion {
                    found: version.to_string(),
                    expected: want.clone(),
                });
            }
        }
        let Some(running) = running else {
            return Ok(());
        };
        if self.allow_downgrade || version == running {
            return Ok(());
        }
        match compare_versions(version, running) {
            Some(Ordering::Greater) => Ok(()),
            Some(order) => Err(BundleError::Downgrade {
                bundle: version.to_string(),
                running: running.to_string(),
                // Equal precedence with another build: which is newer cannot be told.
                why: if order == Ordering::Less {
                    "lower than"
                } else {
                    "the same release as"
                },
            }),
            None => Err(BundleError::Downgrade {
                bundle: version.to_string(),
                running: running.to_string(),
                why: "not comparable (as semver) with",
            }),
        }
    }
}

/// Orders two versions by semver precedence (build metadata ignored), `None` when either is
/// not a version. A leading `v` and a short form (`2`, `1.5`: the missing numbers are 0) are
/// accepted, since bundles have been made with such versions.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    Some(parse_version(a)?.cmp_precedence(&parse_version(b)?))
}

fn parse_version(v: &str) -> Option<semver::Version> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let core_end = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(core_end);
    let numbers = core.split('.').count();
    if numbers == 0 || numbers > 3 {
        return None;
    }
    let padded = format!("{core}{}{rest}", ".0".repeat(3 - numbers));
    semver::Version::parse(&padded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_semver() {
        let lt = |a, b| assert_eq!(compare_versions(a, b), Some(Ordering::Less), "{a} < {b}");
        lt("1.0", "1.5");
        lt("1.5.0", "2");
        lt("1.9.0", "1.10.0");
        lt("2", "33");
        lt("v0.1.0", "0.2.0");
        lt("1.0.0-rc.1", "1.0.0");
        lt("1.0.0-alpha", "1.0.0-alpha.1");
        assert_eq!(
            compare_versions("1.0.0+a", "1.0.0+b"),
            Some(Ordering::Equal)
        );
        assert_eq!(compare_versions("1", "1.0.0"), Some(Ordering::Equal));
        for bad in ["", "dev", "1.2.3.4", "1..2", "01.2.3", "1.2.x"] {
            assert_eq!(compare_versions(bad, "1.0.0"), None, "{bad:?}");
        }
    }

    #[test]
    fn policy_refuses_lower_unless_allowed() {
        let p = VersionPolicy::default();
        p.check("2", Some("1.5")).unwrap();
        p.check("1.5", Some("1.5")).unwrap();
        p.check("2", None).unwrap();
        let e = p.check("1.0", Some("1.5")).unwrap_err();
        assert!(matches!(e, BundleError::Downgrade { .. }), "{e}");
        assert!(
            e.to_string().contains("1.0 is lower than the running 1.5"),
            "{e}"
        );
        let e = p.check("1.0.0+b", Some("1.0.0+a")).unwrap_err();
        assert!(matches!(e, BundleError::Downgrade { .. }), "{e}");
        let e = p.check("dev", Some("1.5")).unwrap_err();
        assert!(e.to_string().contains("not comparable"), "{e}");
        let allow = VersionPolicy {
            allow_downgrade: true,
            ..p.clone()
        };
        allow.check("1.0", Some("1.5")).unwrap();
        allow.check("dev", Some("1.5")).unwrap();
        let expect = VersionPolicy {
            expect: Some("2".into()),
            allow_downgrade: true,
        };
        let e = expect.check("1.0", Some("1.5")).unwrap_err();
        assert!(matches!(e, BundleError::UnexpectedVersion { .. }), "{e}");
    }
}
