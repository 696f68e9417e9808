//! Our environment block against the one `grub-editenv` (GRUB's own tool) writes.

use std::path::Path;
use std::process::Command;

use rkos_slots::grubenv::GrubEnv;
use rkos_slots::{BootState, Slot, StateDir};

fn editenv(file: &Path, args: &[&str]) {
    let status = Command::new("grub-editenv")
        .arg(file)
        .args(args)
        .status()
        .expect("grub-editenv must be installed (build/host-deps.sh installs grub-common)");
    assert!(status.success(), "grub-editenv {args:?} failed");
}

#[test]
fn same_bytes_as_grub_editenv() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("grubenv");
    editenv(&f, &["create"]);
    assert_eq!(
        std::fs::read(&f).unwrap(),
        GrubEnv::new().serialize().unwrap()
    );

    editenv(&f, &["set", "a=1", "b=x\\y", "c=l1\nl2", "d="]);
    editenv(&f, &["set", "a=22"]);
    editenv(&f, &["unset", "b"]);
    let real = std::fs::read(&f).unwrap();

    let mut ours = GrubEnv::new();
    ours.set("a", "1").unwrap();
    ours.set("b", "x\\y").unwrap();
    ours.set("c", "l1\nl2").unwrap();
    ours.set("d", "").unwrap();
    ours.set("a", "22").unwrap();
    ours.unset("b");
    assert_eq!(ours.serialize().unwrap(), real);

    let parsed = GrubEnv::parse(&real).unwrap();
    assert_eq!(parsed, ours);
    assert_eq!(parsed.get("c"), Some("l1\nl2"));
}

#[test]
fn grub_editenv_reads_what_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let st = StateDir::new(dir.path());
    std::fs::create_dir_all(st.grub_dir()).unwrap();
    let state = BootState::default().put_on_trial(Slot::B, 3).unwrap();
    st.write_boot_state(&state).unwrap();
    let out = Command::new("grub-editenv")
        .arg(st.grubenv())
        .arg("list")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "rkos_default=A\nrkos_trial=B\nrkos_tries=3\nrkos_last=\n"
    );
    // And the tool's edits read back as the model expects.
    editenv(&st.grubenv(), &["set", "rkos_tries=0"]);
    let back = st.boot_state().unwrap();
    assert_eq!(back.trial.unwrap().tries_left, 0);
    assert_eq!(back.grub_boot().0, Slot::A);
}
