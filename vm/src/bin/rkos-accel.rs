//! Prints the accelerator QEMU should use on this host (`kvm` or `tcg`) on stdout, and the
//! verdict with its reason on stderr: what `build/run-qemu.sh` and `build/boot-report.sh`
//! ask before starting QEMU, so they decide exactly as the tests do.

use clap::Parser;
use rkos_vm::{accel, Arch};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    about = "Which QEMU accelerator works here: boots a kernel under KVM and prints kvm or tcg"
)]
struct Args {
    /// The kernel to probe with (bzImage).
    #[arg(long, conflicts_with = "iso")]
    kernel: Option<PathBuf>,
    /// An rkos ISO whose /boot/vmlinuz is the kernel to probe with.
    #[arg(long)]
    iso: Option<PathBuf>,
    /// The guest's architecture (amd64, arm64); default: the host's. A guest of another
    /// architecture is emulated without a probe.
    #[arg(long)]
    arch: Option<Arch>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(guest) = args.arch.filter(|a| Some(*a) != Arch::host()) {
        println!("{}", accel::verdict_for_arch(guest, None).accel);
        return ExitCode::SUCCESS;
    }
    let tmp = std::env::temp_dir().join(format!("rkos-accel-{}", std::process::id()));
    let kernel = match (&args.kernel, &args.iso) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(iso)) if accel::forced().is_none() => {
            if let Err(e) = std::fs::create_dir_all(&tmp) {
                eprintln!("rkos-accel: creating {}: {e}", tmp.display());
                return ExitCode::FAILURE;
            }
            match rkos_vm::iso::extract_vmlinuz(iso, &tmp) {
                Ok(k) => Some(k),
                Err(e) => {
                    eprintln!("rkos-accel: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let v = accel::verdict(kernel.as_deref());
    let _ = std::fs::remove_dir_all(&tmp);
    println!("{}", v.accel);
    ExitCode::SUCCESS
}
