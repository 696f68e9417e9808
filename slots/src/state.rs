//! The `RKOS_STATE` file system (mounted anywhere, given as `root`): where things are, and the
//! boot-state edits made from Linux. Every edit of `grub/grubenv` is one atomic replacement.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::boot::{BootError, BootState};
use crate::grubenv::{EnvError, GrubEnv};
use crate::manifest::{Manifest, ManifestError};
use rkos_contract::files::{MANIFEST, SIGNATURE};
use rkos_contract::Slot;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Env {
        path: PathBuf,
        #[source]
        source: EnvError,
    },
    #[error("{path}: {source}")]
    Boot {
        path: PathBuf,
        #[source]
        source: BootError,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error("{path}: {found:?} is not a version; the node's minimum version cannot be read, so no bundle is installed until the file holds one")]
    MinVersion { path: PathBuf, found: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The layout of an `RKOS_STATE` file system mounted at `root`.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn grub_dir(&self) -> PathBuf {
        self.root.join("grub")
    }
    pub fn grubenv(&self) -> PathBuf {
        self.grub_dir().join("grubenv")
    }
    pub fn grub_cfg(&self) -> PathBuf {
        self.grub_dir().join("grub.cfg")
    }
    pub fn slots_dir(&self) -> PathBuf {
        self.root.join("slots")
    }
    pub fn slot_dir(&self, slot: Slot) -> PathBuf {
        self.slots_dir().join(slot.as_str())
    }
    /// Where a download for `slot` lands before it is renamed into place.
    pub fn staging_dir(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join(".staging")
    }
    pub fn manifest(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join(MANIFEST)
    }
    pub fn signature(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join(SIGNATURE)
    }

    /// Reads `grub/grubenv`.
    pub fn read_env(&self) -> Result<GrubEnv, StateError> {
        let path = self.grubenv();
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        GrubEnv::parse(&bytes).map_err(|source| StateError::Env { path, source })
    }

    /// Reads the boot state from `grub/grubenv`.
    pub fn boot_state(&self) -> Result<BootState, StateError> {
        let env = self.read_env()?;
        BootState::from_env(&env).map_err(|source| StateError::Boot {
            path: self.grubenv(),
            source,
        })
    }

    /// Writes `state` into `grub/grubenv` atomically, keeping the block's other variables;
    /// creates the block when there is none (a fresh install).
    pub fn write_boot_state(&self, state: &BootState) -> Result<(), StateError> {
        let path = self.grubenv();
        let mut env = match fs::read(&path) {
            Ok(bytes) => GrubEnv::parse(&bytes).map_err(|source| StateError::Env {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => GrubEnv::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        state
            .apply_to(&mut env)
            .map_err(|source| StateError::Boot {
                path: path.clone(),
                source,
            })?;
        let bytes = env.serialize().map_err(|source| StateError::Env {
            path: path.clone(),
            source,
        })?;
        rkos_io::write_atomic(&path, &bytes, 0o644).map_err(io_err(&path))?;
        // GRUB must see this edit even if the power goes right now.
        crate::journal::checkpoint_journal(&self.grub_dir());
        Ok(())
    }

    /// Applies `f` to the current boot state and writes the result only if it changed.
    pub fn update_boot_state(
        &self,
        f: impl FnOnce(&BootState) -> Result<BootState, BootError>,
    ) -> Result<BootState, StateError> {
        let cur = self.boot_state()?;
        let next = f(&cur).map_err(|source| StateError::Boot {
            path: self.grubenv(),
            source,
        })?;
        if next != cur {
            self.write_boot_state(&next)?;
        }
        Ok(next)
    }

    /// The slot's manifest, `None` when the slot holds none (empty, or staging was cut).
    pub fn read_manifest(&self, slot: Slot) -> Result<Option<Manifest>, StateError> {
        let path = self.manifest(slot);
        match fs::read(&path) {
            Ok(bytes) => Manifest::parse(&bytes)
                .map(Some)
                .map_err(|source| StateError::Manifest { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::Outcome;

    #[test]
    fn mark_good_flow_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        fs::create_dir_all(st.grub_dir()).unwrap();
        st.write_boot_state(&BootState::default()).unwrap();
        assert_eq!(fs::metadata(st.grubenv()).unwrap().len(), 1024);

        st.update_boot_state(|s| s.put_on_trial(Slot::B, 3))
            .unwrap();
        let booted = st.boot_state().unwrap().grub_boot();
        st.write_boot_state(&booted.1).unwrap();
        let after = st.update_boot_state(|s| s.mark_good(Slot::B)).unwrap();
        assert_eq!(after.default, Slot::B);
        assert_eq!(after.last, Some(Outcome::Good(Slot::B)));
        assert_eq!(st.boot_state().unwrap(), after);
    }

    #[test]
    fn refused_edit_leaves_env_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        fs::create_dir_all(st.grub_dir()).unwrap();
        st.write_boot_state(&BootState::default()).unwrap();
        let before = fs::read(st.grubenv()).unwrap();
        assert!(st
            .update_boot_state(|s| s.put_on_trial(Slot::A, 3))
            .is_err());
        assert!(st.update_boot_state(|s| s.mark_good(Slot::B)).is_err());
        assert_eq!(fs::read(st.grubenv()).unwrap(), before);
    }

    #[test]
    fn missing_or_corrupt_env_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        assert!(matches!(st.boot_state(), Err(StateError::Io { .. })));
        fs::create_dir_all(st.grub_dir()).unwrap();
        fs::write(st.grubenv(), b"garbage").unwrap();
        assert!(matches!(st.boot_state(), Err(StateError::Env { .. })));
        assert!(st.write_boot_state(&BootState::default()).is_err());
        assert_eq!(fs::read(st.grubenv()).unwrap(), b"garbage");
    }
}
