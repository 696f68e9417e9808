//! The KVM probe and the harness's fallback to TCG, on the kinds of host issue 17 names,
//! played by a stand-in QEMU (tests/fixtures/fake-qemu.sh, first on PATH for this test
//! binary only): no VM runs, so this is part of the unit tests. The real boots under the
//! real QEMU are `tests/boot.rs` and the others.

use rkos_tests::qemu::{log_dir, Arch, Boot, Vm, VmConfig};
use rkos_vm::accel::{probe, Accel};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

/// Puts the stand-in first on PATH (as `qemu-system-x86_64`) and shortens the harness's
/// stall timeout, once for the whole test binary.
fn fake_qemu() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = std::env::temp_dir().join(format!("rkos-fake-qemu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fake-qemu.sh");
        let link = dir.join("qemu-system-x86_64");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(script, &link).unwrap();
        let path = std::env::var("PATH").unwrap_or_default();
        // SAFETY: set once, before any test of this binary starts a process.
        unsafe {
            std::env::set_var("PATH", format!("{}:{path}", dir.display()));
            std::env::set_var("RKOS_KVM_STALL_SECS", "2");
        }
    });
}

/// A "kernel" whose first line tells the stand-in how KVM behaves.
fn kernel(dir: &Path, kvm: &str) -> PathBuf {
    let k = dir.join(format!("vmlinuz-{kvm}"));
    std::fs::write(&k, format!("{kvm}\n")).unwrap();
    k
}

fn vm(dir: &Path, name: &str, kvm: &str) -> VmConfig {
    VmConfig {
        name: name.into(),
        boot: Boot::Kernel {
            kernel: kernel(dir, kvm),
            initrd: dir.join("initrd"),
            cmdline: "console=ttyS0".into(),
            medium: None,
        },
        disks: vec![],
        memory_mb: 256,
        extras: Default::default(),
        arch: Arch::Amd64,
    }
}

#[test]
fn the_probe_accepts_kvm_only_when_a_kernel_runs() {
    fake_qemu();
    let dir = tempfile::tempdir().unwrap();
    let v = probe(&kernel(dir.path(), "works"), Duration::from_secs(5));
    assert_eq!(v.accel, Accel::Kvm, "{v}");

    let v = probe(&kernel(dir.path(), "stall"), Duration::from_secs(2));
    assert_eq!(v.accel, Accel::Tcg);
    assert_eq!(
        v.to_string(),
        "accelerator: tcg, because a kernel under KVM stopped after \"Probing EDD (edd=off \
         to disable)... ok\" and printed nothing more in 2 s"
    );

    let v = probe(
        &kernel(dir.path(), "internal-error"),
        Duration::from_secs(5),
    );
    assert_eq!(
        v.to_string(),
        "accelerator: tcg, because QEMU reported \"KVM internal error. Suberror: 1\""
    );

    let v = probe(&kernel(dir.path(), "abort"), Duration::from_secs(5));
    assert_eq!(v.accel, Accel::Tcg);
    assert!(v.to_string().contains("before a kernel ran"), "{v}");
}

/// Boots `kvm` under KVM and expects the login prompt anyway, after one retry under TCG
/// that leaves the KVM try's console beside the new one.
fn retried(name: &str, kvm: &str, kvm_console: &str) {
    fake_qemu();
    let dir = tempfile::tempdir().unwrap();
    let mut vm = Vm::start_under(&vm(dir.path(), name, kvm), Accel::Kvm).unwrap();
    vm.expect("login:", Duration::from_secs(30)).unwrap();
    assert_eq!(vm.accel(), Accel::Tcg, "not retried under TCG");
    let kvm_log = std::fs::read_to_string(log_dir().join(format!("{name}.kvm.log"))).unwrap();
    assert_eq!(kvm_log, kvm_console);
    drop(vm);
}

#[test]
fn a_boot_that_stalls_under_kvm_is_retried_under_tcg() {
    retried(
        "accel-fallback-stall",
        "stall",
        "Probing EDD (edd=off to disable)... ok\n",
    );
}

#[test]
fn a_boot_with_a_kvm_internal_error_is_retried_under_tcg() {
    // the error is on QEMU's stderr, not on the console
    retried("accel-fallback-internal-error", "internal-error", "");
}

#[test]
fn a_boot_where_qemu_aborts_under_kvm_is_retried_under_tcg() {
    retried("accel-fallback-abort", "abort", "");
}

#[test]
fn a_boot_qemu_crashed_in_before_the_kernel_ran_init_is_started_once_more() {
    fake_qemu();
    let dir = tempfile::tempdir().unwrap();
    let name = "accel-tcg-crash";
    let mut vm = Vm::start_under(&vm(dir.path(), name, "tcg-crash-once"), Accel::Tcg).unwrap();
    vm.expect("login:", Duration::from_secs(30)).unwrap();
    assert_eq!(vm.accel(), Accel::Tcg);
    let crashed = std::fs::read_to_string(log_dir().join(format!("{name}.crashed.log"))).unwrap();
    assert!(crashed.contains("Linux version"), "{crashed}");
}

#[test]
fn a_crash_after_the_kernel_ran_init_is_the_tests_business() {
    fake_qemu();
    let dir = tempfile::tempdir().unwrap();
    let mut vm = Vm::start_under(
        &vm(dir.path(), "accel-tcg-crash-late", "tcg-crash-late"),
        Accel::Tcg,
    )
    .unwrap();
    let err = vm.expect("login:", Duration::from_secs(10)).unwrap_err();
    assert!(err.to_string().contains("QEMU exited"), "{err}");
}

#[test]
fn a_boot_that_works_under_kvm_stays_there() {
    fake_qemu();
    let dir = tempfile::tempdir().unwrap();
    let mut vm = Vm::start_under(&vm(dir.path(), "accel-kvm-works", "works"), Accel::Kvm).unwrap();
    vm.expect("login:", Duration::from_secs(30)).unwrap();
    assert_eq!(vm.accel(), Accel::Kvm);
}

#[test]
fn a_boot_already_typed_into_is_not_started_over() {
    fake_qemu();
    let dir = tempfile::tempdir().unwrap();
    let mut vm = Vm::start_under(&vm(dir.path(), "accel-typed", "stall"), Accel::Kvm).unwrap();
    vm.send("\n").unwrap();
    let err = vm.expect("login:", Duration::from_secs(5)).unwrap_err();
    assert!(
        err.to_string().contains("timed out") && err.to_string().contains("under kvm"),
        "{err}"
    );
    assert_eq!(vm.accel(), Accel::Kvm);
}
