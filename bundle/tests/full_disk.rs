//! A state file system too small for the bundle: refused before any byte is written.
//! Needs root (mounts a tmpfs); built only with `--features root-tests`.
#![cfg(feature = "root-tests")]

mod common;

use std::process::Command;

use common::Fixture;
use rkos_bundle::BundleError;
use rkos_slots::Slot;

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_refused_and_nothing_changes() {
    let mnt = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=4m",
            "rkos-test",
            mnt.path().to_str().unwrap(),
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mounting a tmpfs failed: this test needs root");
    let _guard = Mount(mnt.path().to_path_buf());

    let fx = Fixture::with_state_root(Some(mnt.path().join("state")));
    let b = fx.bundle("2", 3_300_000);
    let before = fx.snapshot_active();
    let err = fx.stage(b.to_str().unwrap()).unwrap_err();
    match &err {
        BundleError::NoSpace {
            needed, available, ..
        } => assert!(needed > available),
        other => panic!("expected NoSpace, got {other}"),
    }
    assert!(err.to_string().contains("not enough space"), "{err}");
    assert!(fx.snapshot_active() == before);
    assert!(!fx.state.slot_dir(Slot::B).exists());

    // A bundle that fits goes through on the same small disk.
    let small = fx.bundle("3", 1_000_000);
    fx.stage(small.to_str().unwrap()).unwrap();
    rkos_bundle::verify_slot(&fx.state, Slot::B).unwrap();
}
