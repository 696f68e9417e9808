//! Boots an rkos ISO once (firmware -> GRUB -> kernel -> rkos-init -> systemd -> login) and
//! prints, as Markdown, the boot-time breakdown and the sizes of the ISO, its squashfs and
//! initramfs. `build/boot-report.sh` runs it and writes docs/benchmarks.md.
//! Usage: boot-report ISO [ARCH]   (ARCH amd64, the default, or arm64: booted through UEFI)

use anyhow::{bail, Context, Result};
use rkos_contract::files;
use rkos_tests::console::init_stages;
use rkos_tests::qemu::{accelerator_for, extract_kernel, uefi_vars, Arch, Boot, Vm, VmConfig};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(600);

fn main() -> Result<()> {
    let usage = "usage: boot-report ISO [amd64|arm64]";
    let iso = PathBuf::from(std::env::args().nth(1).context(usage)?);
    let arch: Arch = match std::env::args().nth(2) {
        Some(a) => a.parse().map_err(anyhow::Error::msg).context(usage)?,
        None => Arch::Amd64,
    };
    let tmp = tempfile::tempdir()?;
    let (_, initrd) = extract_kernel(&iso, tmp.path())?;
    let squashfs = iso_file_size(&iso, &format!("/{}", files::MEDIUM_ROOTFS))?;

    let boot = match arch {
        Arch::Amd64 => Boot::Iso(iso.clone()),
        Arch::Arm64 => Boot::IsoUefi {
            iso: iso.clone(),
            uefi_vars: uefi_vars(arch, tmp.path())?,
        },
    };
    let cfg = VmConfig {
        name: match arch {
            Arch::Amd64 => "boot-report".into(),
            other => format!("boot-report-{other}"),
        },
        arch,
        boot,
        disks: vec![],
        memory_mb: 2048,
        extras: Default::default(),
    };
    let t0 = Instant::now();
    let mut vm = Vm::start(&cfg)?;
    let line = vm.expect(r"\[ *[0-9]+\.[0-9]+\] Run /init as init process", BOOT)?;
    let t_init_seen = t0.elapsed().as_secs_f64();
    let k_init = kernel_stamp(&line).context("no kernel timestamp on the /init line")?;
    // the kernel started k_init seconds before that line reached us
    let kernel_start = t_init_seen - k_init;
    vm.expect(r"login:", BOOT)?;
    let t_login = t0.elapsed().as_secs_f64();
    let text = vm.transcript();
    drop(vm);

    let stages = init_stages(&text);
    if stages.is_empty() {
        bail!("no `rkos-init: <stage> <ms> ms` lines on the console");
    }
    // rkos-init's summary line separates its own work from waiting on devices and the kernel
    let total = stages.iter().find(|s| s.stage == "total");
    let init_ms: f64 = match total {
        Some(t) => t.ms,
        None => stages.iter().map(|s| s.ms).sum(),
    };
    let own_ms = total.and_then(|t| t.own_ms);
    let systemd = t_login - kernel_start - k_init - init_ms / 1000.0;

    println!("| phase | seconds |\n|---|---:|");
    println!(
        "| firmware + GRUB (menu timeout included) | {:.2} |",
        kernel_start
    );
    println!("| kernel to /init | {:.2} |", k_init);
    println!("| rkos-init (all stages) | {:.3} |", init_ms / 1000.0);
    if let Some(own) = own_ms {
        println!(
            "| of which rkos-init's own work (target < 150 ms) | {:.3} |",
            own / 1000.0
        );
    }
    println!("| systemd to the login prompt | {:.2} |", systemd);
    println!("| **power-on to login prompt** | **{:.2}** |", t_login);
    println!();
    println!(
        "rkos-init stages (its own kmsg lines; own work is the stage minus module init, \
         mount(2) and console output):\n\n| stage | ms | own work ms |\n|---|---:|---:|"
    );
    for s in &stages {
        let own = s
            .own_ms
            .map(|o| format!("{o:.1}"))
            .unwrap_or_else(|| "-".into());
        println!("| {} | {:.1} | {own} |", s.stage, s.ms);
    }
    println!();
    println!("| artefact | size |\n|---|---:|");
    println!(
        "| ISO `{}` | {} |",
        iso.file_name().unwrap_or_default().to_string_lossy(),
        mib(std::fs::metadata(&iso)?.len())
    );
    println!("| rootfs.squashfs | {} |", mib(squashfs));
    println!("| initramfs | {} |", mib(std::fs::metadata(&initrd)?.len()));
    println!();
    println!(
        "Accelerator: {}; QEMU {}, 2 vCPUs, 2 GiB.",
        accelerator_for(&cfg),
        arch.machine()
    );
    Ok(())
}

fn kernel_stamp(line: &str) -> Option<f64> {
    let l = line.rfind('[')?;
    let r = line[l..].find(']')? + l;
    line[l + 1..r].trim().parse().ok()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn iso_file_size(iso: &std::path::Path, path: &str) -> Result<u64> {
    let out = Command::new("xorriso")
        .args(["-indev"])
        .arg(iso)
        .args(["-find", path, "-exec", "lsdl"])
        .output()
        .context("running xorriso")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // `ls -l` style: mode links owner group size ...
    text.lines()
        .find(|l| l.contains(path))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no size for {path} in {}", iso.display()))
}
