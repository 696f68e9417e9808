//! A bundle's signed manifest, fetched and verified once, and the rules on its version.
//!
//! Whatever decides about a bundle (the expected version, no downgrade) and whatever stages
//! it must see the same bytes: a server may answer each request differently, so a manifest
//! fetched twice is two manifests. [`Verified`] holds the exact bytes that were verified;
//! staging writes those bytes into the slot and never asks the source for the manifest again.

use std::cmp::Ordering;

use rkos_contract::files::{MANIFEST, SIGNATURE};
/// The order of versions is rkos-slots' (it also orders the manifest's `min_version` and
/// the node's floor); re-exported where the version rules are.
pub use rkos_slots::compare_versions;
use rkos_slots::{Manifest, MinVersion, Slot, StateDir};

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
    /// Accept a version lower than the running one (or one that cannot be ordered with it);
    /// never one below the node's floor.
    pub allow_downgrade: bool,
}

impl VersionPolicy {
    /// Checks the bundle's `version` against the policy, the `running` version (the running
    /// slot's manifest; `None` when it has none) and the node's `floor` (`RKOS_STATE`'s
    /// `min-version`, see `rkos_slots::floor`). The same version as the running one is
    /// accepted here, floor or not (nothing is installed): staging reports it as already
    /// running.
    pub fn check(
        &self,
        version: &str,
        running: Option<&str>,
        floor: Option<&MinVersion>,
    ) -> Result<()> {
        if let Some(want) = &self.expect {
            if version != want {
                return Err(BundleError::UnexpectedVersion {
                    found: version.to_string(),
                    expected: want.clone(),
                });
            }
        }
        if running == Some(version) {
            return Ok(());
        }
        if let Some(floor) = floor {
            // Not lifted by allow_downgrade: that is the point of a floor.
            let why = match compare_versions(version, &floor.version) {
                Some(Ordering::Less) => Some("lower than"),
                None => Some("not comparable (as semver) with"),
                Some(_) => None,
            };
            if let Some(why) = why {
                return Err(BundleError::BelowFloor {
                    bundle: version.to_string(),
                    floor: floor.version.clone(),
                    file: floor.file.clone(),
                    why,
                });
            }
        }
        let Some(running) = running else {
            return Ok(());
        };
        if self.allow_downgrade {
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

    /// [`VersionPolicy::check`] against the node: the version in the `booted` slot and the
    /// floor, both read from `state`. Returns the running version.
    pub fn check_node(
        &self,
        version: &str,
        state: &StateDir,
        booted: Slot,
    ) -> Result<Option<String>> {
        let running = state.read_manifest(booted)?.map(|m| m.version);
        let floor = state.min_version()?;
        self.check(version, running.as_deref(), floor.as_ref())?;
        Ok(running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_lower_unless_allowed() {
        let p = VersionPolicy::default();
        p.check("2", Some("1.5"), None).unwrap();
        p.check("1.5", Some("1.5"), None).unwrap();
        p.check("2", None, None).unwrap();
        let e = p.check("1.0", Some("1.5"), None).unwrap_err();
        assert!(matches!(e, BundleError::Downgrade { .. }), "{e}");
        assert!(
            e.to_string().contains("1.0 is lower than the running 1.5"),
            "{e}"
        );
        let e = p.check("1.0.0+b", Some("1.0.0+a"), None).unwrap_err();
        assert!(matches!(e, BundleError::Downgrade { .. }), "{e}");
        let e = p.check("dev", Some("1.5"), None).unwrap_err();
        assert!(e.to_string().contains("not comparable"), "{e}");
        let allow = VersionPolicy {
            allow_downgrade: true,
            ..p.clone()
        };
        allow.check("1.0", Some("1.5"), None).unwrap();
        allow.check("dev", Some("1.5"), None).unwrap();
        let expect = VersionPolicy {
            expect: Some("2".into()),
            allow_downgrade: true,
        };
        let e = expect.check("1.0", Some("1.5"), None).unwrap_err();
        assert!(matches!(e, BundleError::UnexpectedVersion { .. }), "{e}");
    }

    fn floor(version: &str) -> MinVersion {
        MinVersion {
            version: version.into(),
            file: "/state/min-version".into(),
        }
    }

    #[test]
    fn a_floor_refuses_older_even_when_downgrades_are_allowed() {
        let f = floor("1.5");
        for p in [
            VersionPolicy::default(),
            VersionPolicy {
                allow_downgrade: true,
                ..VersionPolicy::default()
            },
        ] {
            for (bundle, running) in [("1.2", Some("2.0")), ("1.2", None), ("1.4.9", Some("1.2"))] {
                let e = p.check(bundle, running, Some(&f)).unwrap_err();
                assert!(matches!(e, BundleError::BelowFloor { .. }), "{e}");
                let msg = e.to_string();
                for part in [bundle, "1.5", "/state/min-version", "--allow-downgrade"] {
                    assert!(msg.contains(part), "{part:?} not in {msg}");
                }
            }
            // A version the floor cannot be ordered with is refused too.
            let e = p.check("dev", Some("2.0"), Some(&f)).unwrap_err();
            assert!(e.to_string().contains("not comparable"), "{e}");
            // At or above the floor: only the running version decides.
            p.check("1.5", None, Some(&f)).unwrap();
            p.check("1.5.0", Some("1.2"), Some(&f)).unwrap();
            p.check("3", Some("2.0"), Some(&f)).unwrap();
            // The running version itself, even below the floor (picked in GRUB's menu): no
            // install, staging answers "already running".
            p.check("1.2", Some("1.2"), Some(&f)).unwrap();
        }
        // Above the floor but below the running version: a downgrade, as without a floor.
        let e = VersionPolicy::default()
            .check("1.8", Some("2.0"), Some(&f))
            .unwrap_err();
        assert!(matches!(e, BundleError::Downgrade { .. }), "{e}");
        VersionPolicy {
            allow_downgrade: true,
            ..VersionPolicy::default()
        }
        .check("1.8", Some("2.0"), Some(&f))
        .unwrap();
        // The expected version is checked first, whatever the floor.
        let expect = VersionPolicy {
            expect: Some("2".into()),
            allow_downgrade: true,
        };
        let e = expect.check("1.0", Some("1.5"), Some(&f)).unwrap_err();
        assert!(matches!(e, BundleError::UnexpectedVersion { .. }), "{e}");
    }
}
