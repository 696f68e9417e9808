//! The node's rollback floor (`RKOS_STATE:/min-version`): the lowest version `rkos upgrade`
//! installs, with or without `--allow-downgrade`.
//!
//! A signed release may carry `min_version` in its manifest. A node raises its floor to that
//! version when the slot holding the release is marked good, and never lowers it, so an old,
//! validly signed bundle with a known hole cannot be installed again by an operator, a plan
//! with `allowDowngrade`, or someone holding that bundle. The floor guards the upgrade path
//! only: root on the node can edit `RKOS_STATE`, and GRUB's menu still boots either slot.

use std::cmp::Ordering;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::boot::BootState;
use crate::state::{StateDir, StateError};
use crate::version::{compare_versions, is_version};
use rkos_contract::Slot;

/// The floor's file name under the `RKOS_STATE` root.
pub const MIN_VERSION_FILE: &str = "min-version";

/// The node's floor, and the file it was read from (named in refusals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinVersion {
    pub version: String,
    pub file: PathBuf,
}

/// The floor after a release whose manifest says `candidate` counts as good: `candidate` when
/// it is above `current` (or there is none), `None` when the floor stays. A floor is never
/// lowered, and a candidate of equal precedence (`1.5` and `1.5.0`) leaves it as it is.
pub fn raised<'a>(current: Option<&str>, candidate: Option<&'a str>) -> Option<&'a str> {
    let candidate = candidate?;
    match current {
        None => Some(candidate),
        Some(cur) => {
            (compare_versions(candidate, cur) == Some(Ordering::Greater)).then_some(candidate)
        }
    }
}

impl StateDir {
    pub fn min_version_file(&self) -> PathBuf {
        self.root().join(MIN_VERSION_FILE)
    }

    /// The node's floor, `None` when none was ever set. A file that does not hold a version
    /// is an error, not "no floor": whatever damaged it must not lift the floor.
    pub fn min_version(&self) -> Result<Option<MinVersion>, StateError> {
        let file = self.min_version_file();
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path: file, source }),
        };
        let version = text.trim();
        if !is_version(version) {
            return Err(StateError::MinVersion {
                path: file,
                found: version.to_string(),
            });
        }
        Ok(Some(MinVersion {
            version: version.to_string(),
            file,
        }))
    }

    /// The version the floor would be raised to if `slot` counted as good (its manifest's
    /// `min_version`, when above the current floor); `None`: nothing to raise.
    pub fn floor_raise(&self, slot: Slot) -> Result<Option<String>, StateError> {
        let candidate = self.read_manifest(slot)?.and_then(|m| m.min_version);
        let current = self.min_version()?.map(|f| f.version);
        Ok(raised(current.as_deref(), candidate.as_deref()).map(str::to_string))
    }

    /// Raises the floor to `slot`'s `min_version` if that is higher (one atomic replacement);
    /// the new floor, or `None` when it stays.
    pub fn raise_min_version(&self, slot: Slot) -> Result<Option<MinVersion>, StateError> {
        let Some(version) = self.floor_raise(slot)? else {
            return Ok(None);
        };
        let file = self.min_version_file();
        rkos_io::write_atomic(&file, format!("{version}\n").as_bytes(), 0o644).map_err(
            |source| StateError::Io {
                path: file.clone(),
                source,
            },
        )?;
        Ok(Some(MinVersion { version, file }))
    }

    /// Marks `booted` good (the boot state, as [`BootState::mark_good`]), then raises the
    /// floor to its manifest's `min_version`.
    ///
    /// The floor is raised here and never when a bundle is staged: a release that has not
    /// proved itself on this node must not lock the node out of the release it would roll
    /// back to. Were the floor raised at staging, a new release that fails its trial would
    /// leave GRUB on the old slot with a floor above it, and the node could no longer
    /// reinstall the release it actually runs. The boot state is written first: a power cut
    /// in between leaves a good slot with the old floor, which the next `mark-good` (every
    /// boot runs one) raises; the other order could raise the floor for a slot never marked
    /// good.
    pub fn mark_good(&self, booted: Slot) -> Result<(BootState, Option<MinVersion>), StateError> {
        let boot = self.update_boot_state(|b| b.mark_good(booted))?;
        let raised = self.raise_min_version(booted)?;
        Ok((boot, raised))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::test_manifest;

    #[test]
    fn raised_only_goes_up() {
        assert_eq!(raised(None, None), None);
        assert_eq!(raised(None, Some("1.5")), Some("1.5"));
        assert_eq!(raised(Some("1.5"), None), None);
        assert_eq!(raised(Some("1.5"), Some("2")), Some("2"));
        assert_eq!(
            raised(Some("1.5"), Some("1.10")),
            Some("1.10"),
            "semver order"
        );
        assert_eq!(raised(Some("2"), Some("1.5")), None, "never lowered");
        assert_eq!(raised(Some("1.5"), Some("1.5.0")), None, "same precedence");
    }

    fn node() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        fs::create_dir_all(st.grub_dir()).unwrap();
        st.write_boot_state(&BootState::default()).unwrap();
        (dir, st)
    }

    fn put_release(st: &StateDir, slot: Slot, version: &str, min_version: Option<&str>) {
        let m = test_manifest(version, min_version);
        fs::create_dir_all(st.slot_dir(slot)).unwrap();
        fs::write(st.manifest(slot), m.to_json()).unwrap();
    }

    /// Stages `version` into the other slot, lets GRUB boot it and marks it good.
    fn upgrade_and_mark_good(
        st: &StateDir,
        version: &str,
        min_version: Option<&str>,
    ) -> Option<MinVersion> {
        let booted = st.boot_state().unwrap().default.other();
        put_release(st, booted, version, min_version);
        st.update_boot_state(|s| s.put_on_trial(booted, 3)).unwrap();
        st.write_boot_state(&st.boot_state().unwrap().grub_boot().1)
            .unwrap();
        let (boot, raised) = st.mark_good(booted).unwrap();
        assert_eq!(boot.default, booted);
        raised
    }

    #[test]
    fn mark_good_raises_the_floor_and_never_lowers_it() {
        let (_d, st) = node();
        put_release(&st, Slot::A, "1.0", None);
        assert_eq!(st.min_version().unwrap(), None);
        // A release without a floor sets none.
        assert_eq!(upgrade_and_mark_good(&st, "1.2", None), None);
        assert!(!st.min_version_file().exists());

        let raised = upgrade_and_mark_good(&st, "2.0", Some("1.5")).unwrap();
        assert_eq!(raised.version, "1.5");
        assert_eq!(raised.file, st.min_version_file());
        assert_eq!(fs::read_to_string(st.min_version_file()).unwrap(), "1.5\n");
        assert_eq!(st.min_version().unwrap(), Some(raised));

        // A later release with a lower floor, or none, leaves it where it is.
        assert_eq!(upgrade_and_mark_good(&st, "2.1", Some("1.2")), None);
        assert_eq!(upgrade_and_mark_good(&st, "2.2", None), None);
        assert_eq!(st.min_version().unwrap().unwrap().version, "1.5");

        assert_eq!(
            upgrade_and_mark_good(&st, "3.0", Some("2.1"))
                .unwrap()
                .version,
            "2.1"
        );
        assert_eq!(st.min_version().unwrap().unwrap().version, "2.1");
    }

    #[test]
    fn staging_or_a_trial_that_rolled_back_does_not_raise_it() {
        let (_d, st) = node();
        put_release(&st, Slot::A, "1.0", None);
        put_release(&st, Slot::B, "2.0", Some("1.5"));
        st.update_boot_state(|s| s.put_on_trial(Slot::B, 2))
            .unwrap();
        // Staged and armed, A still running: A's mark-good (every boot runs one) keeps B's
        // trial pending and raises nothing, A's manifest having no floor.
        let (boot, raised) = st.mark_good(Slot::A).unwrap();
        assert_eq!(boot.trial.map(|t| t.slot), Some(Slot::B));
        assert_eq!(raised, None);
        assert!(!st.min_version_file().exists());
        // B's trial fails: GRUB goes back to A. B was never marked good, so 1.0 stays
        // installable on this node.
        let mut boot = st.boot_state().unwrap();
        for _ in 0..3 {
            boot = boot.grub_boot().1;
        }
        st.write_boot_state(&boot).unwrap();
        assert_eq!(st.boot_state().unwrap().default, Slot::A);
        assert!(
            st.mark_good(Slot::B).is_err(),
            "not on trial, not the default"
        );
        assert_eq!(st.mark_good(Slot::A).unwrap().1, None);
        assert_eq!(st.min_version().unwrap(), None);
    }

    #[test]
    fn a_damaged_floor_is_an_error_not_no_floor() {
        let (_d, st) = node();
        fs::write(st.min_version_file(), "garbage\n").unwrap();
        let e = st.min_version().unwrap_err();
        assert!(matches!(e, StateError::MinVersion { .. }), "{e}");
        assert!(e.to_string().contains("min-version"), "{e}");
        put_release(&st, Slot::A, "2.0", Some("1.5"));
        assert!(st.raise_min_version(Slot::A).is_err());
        assert_eq!(
            fs::read_to_string(st.min_version_file()).unwrap(),
            "garbage\n"
        );
    }
}
