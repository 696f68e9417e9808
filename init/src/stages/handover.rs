//! The end of the init: what it did recorded (`init.json`, the summary line), then the new
//! root becomes `/` and its init runs.

use std::fs;
use std::path::Path;

use rkos_contract::{paths, BootMode, InitReport};

use super::find::DEVKMSG;
use super::Boot;
use crate::log::{self, KernelWork, Ms};
use crate::plan::SYSROOT;
use crate::system;

/// Milliseconds since the kernel started (the clock /proc/uptime shows), without /proc.
pub(super) fn uptime_ms() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as f64 * 1000.0 + t.tv_nsec() as f64 / 1e6)
        .unwrap_or(0.0)
}

/// User and system CPU time of the whole process (both threads), in ms.
fn cpu_ms() -> (f64, f64) {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let ms = |tv: nix::sys::time::TimeVal| {
                tv.tv_sec() as f64 * 1000.0 + tv.tv_usec() as f64 / 1000.0
            };
            (
                log::tenths(ms(u.user_time())),
                log::tenths(ms(u.system_time())),
            )
        }
        Err(_) => (0.0, 0.0),
    }
}

/// `init.json` and the summary line: the figures of every stage, own work apart from what
/// the init does not control.
pub(super) fn report(b: &mut Boot) -> Result<(), String> {
    let t = &mut b.t;
    let elapsed = t.elapsed();
    let module_kernel_ms = t.kernel_ms(KernelWork::ModuleInit);
    let mount_kernel_ms = t.kernel_ms(KernelWork::Mount);
    let console_kernel_ms = t.kernel_ms(KernelWork::Console);
    let own_ms = t.own_ms(elapsed);
    let total_ms = log::ms(elapsed);
    let (cpu_user_ms, cpu_sys_ms) = cpu_ms();
    let mode = b.mode;
    let modules = b.loader.loaded.len();
    let report = InitReport {
        version: std::mem::take(&mut b.version),
        mode,
        slot: b.params.slot.filter(|_| mode == BootMode::Disk),
        boot_device: b.boot.take(),
        data_device: b.data.take(),
        cidata_device: b.cidata_device.take(),
        loop_devices: std::mem::take(&mut b.loop_devices),
        seeded: std::mem::take(&mut b.seeded),
        modules_loaded: std::mem::take(&mut b.loader.loaded),
        modules_failed: std::mem::take(&mut b.loader.failed),
        config_problems: b.config_problems.len(),
        started_after_kernel_ms: log::tenths(b.started_after_kernel_ms),
        stages: std::mem::take(&mut t.stages),
        module_kernel_ms,
        mount_kernel_ms,
        console_kernel_ms,
        own_ms,
        total_ms,
        cpu_user_ms,
        cpu_sys_ms,
    };
    if let Ok(json) = serde_json::to_string_pretty(&report) {
        let _ = fs::write(paths::INIT_REPORT, json + "\n");
    }
    log::kmsg(
        log::INFO,
        &format!(
            "total {} ms, own work {} ms (not counted: waiting for devices, checking the image, \
             module init {} ms, mount(2) and loop set-up {} ms, console output {} ms), \
             cpu user {} ms sys {} ms, mode {mode}, {modules} modules",
            Ms(total_ms),
            Ms(own_ms),
            Ms(module_kernel_ms),
            Ms(mount_kernel_ms),
            Ms(console_kernel_ms),
            Ms(cpu_user_ms),
            Ms(cpu_sys_ms),
        ),
    );
    if b.devkmsg_changed {
        let _ = fs::write(DEVKMSG, "ratelimit\n");
    }
    Ok(())
}

/// Hands over to the new root's init; returns only when that failed.
pub(super) fn switch_root(b: &mut Boot) -> Result<(), String> {
    let e = system::switch_root(Path::new(SYSROOT), &b.params.init);
    Err(format!("switch_root to {SYSROOT}: {e}"))
}
