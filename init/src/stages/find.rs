//! The prelude: from the first mounts to the mount plan, finding out how this machine boots.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rkos_contract::{label, paths, BootMode};

use super::Boot;
use crate::kmod::{self, Loader};
use crate::log;
use crate::modules::ModuleIndex;
use crate::plan::{self, PlanInput};
use crate::{cmdline, detect, devices, rescue, system};

/// User writes to /dev/kmsg are rate limited (10 lines per 5 s by default), which would drop
/// stage lines. The setting can be changed only when the command line did not set
/// printk.devkmsg, so a change succeeds only over the default, which is put back before
/// handing over.
pub(super) const DEVKMSG: &str = "/proc/sys/kernel/printk_devkmsg";

pub(super) fn mount_basic(b: &mut Boot) -> Result<(), String> {
    let mounted = system::mount_basic();
    log::open_kmsg();
    b.devkmsg_changed = fs::write(DEVKMSG, "on\n").is_ok();
    mounted.map_err(|e| format!("cannot mount the API filesystems: {e}"))
}

pub(super) fn boot_params(b: &mut Boot) -> Result<(), String> {
    b.cmdline = fs::read_to_string(paths::PROC_CMDLINE).unwrap_or_default();
    b.consoles = log::console_paths(&cmdline::consoles(&b.cmdline));
    b.params = cmdline::parse(&b.cmdline).map_err(|e| format!("bad kernel command line: {e}"))?;
    log::init_tracing(b.params.debug);
    b.version = fs::read_to_string(paths::IMAGE_VERSION)
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    tracing::info!(
        "rkos {} started {} ms after the kernel",
        b.version,
        b.started_after_kernel_ms.round() as u64
    );
    // The kernel's own module requests (request_module) run /sbin/modprobe, the kernel's
    // default, which the initramfs links to busybox.
    tracing::debug!("prelude done at {:.1} ms", b.at_ms());
    Ok(())
}

pub(super) fn modules(b: &mut Boot) -> Result<(), String> {
    // Read while the index is parsed on the other thread.
    let mut seen_devices = Default::default();
    let first_modaliases = kmod::read_new_modaliases(Path::new("/sys/bus"), &mut seen_devices);
    tracing::debug!("first modaliases read at {:.1} ms", b.at_ms());
    b.loader = match b.early_work.index() {
        Ok(idx) => Loader::new(idx),
        Err(e) => {
            // Built-in drivers may still be enough; the failure message shows what was found.
            tracing::warn!("no kernel modules: {e}");
            Loader::new(ModuleIndex::default())
        }
    }
    .with_seen_devices(seen_devices);
    tracing::debug!("module index ready at {:.1} ms", b.at_ms());
    if b.loader.load_for_modaliases(first_modaliases) > 0 {
        for _ in 0..6 {
            if b.loader.coldplug(Path::new("/sys/bus")) == 0 {
                break;
            }
        }
    }
    Ok(())
}

pub(super) fn rescue_if_asked(b: &mut Boot) -> Result<(), String> {
    if b.params.mode == Some(BootMode::Rescue) {
        log::to_consoles(
            &b.consoles,
            "rkos-init: rkos.mode=rescue: starting the rescue shell as asked\n",
        );
        rescue::load_rescue_modules();
        rescue::shell_forever(&b.consoles);
    }
    Ok(())
}

/// Probes the block devices every 20 ms until the boot volume is there, re-running
/// coldplug every 100 ms: USB and SD devices show up late and bring new modaliases
/// (usb-storage, mmc_block). A wait past [`detect::WAIT_NOTICE`] is said once on the consoles.
pub(super) fn wait_devices(b: &mut Boot) -> Result<(), String> {
    let p = &b.params;
    b.looked_for = detect::looked_for(p.mode, p.slot, p.wait);
    let start = Instant::now();
    let mut rounds = 0u32;
    let mut announced = false;
    let (mode, boot, data) = loop {
        let scan_start = Instant::now();
        let devs = devices::scan(Path::new("/sys/class/block"), Path::new("/dev"));
        tracing::debug!(
            "scan of {} block devices: {:.1} ms",
            devs.len(),
            scan_start.elapsed().as_secs_f64() * 1000.0
        );
        let found = detect::decide(b.params.mode, b.params.state_uuid.as_deref(), &devs);
        b.devices = devs;
        if let Some(found) = found {
            break found;
        }
        if !announced && start.elapsed() >= detect::WAIT_NOTICE {
            announced = true;
            let line = detect::still_waiting(&b.looked_for, start.elapsed());
            log::to_consoles(&b.consoles, &line);
        }
        if start.elapsed() >= b.params.wait {
            return Err(format!(
                "no boot volume found after {:.1} s",
                start.elapsed().as_secs_f64()
            ));
        }
        sleep(Duration::from_millis(20));
        rounds += 1;
        if rounds >= 5 {
            rounds = 0;
            b.loader.coldplug(Path::new("/sys/bus"));
        }
    };
    if mode == BootMode::Disk {
        // Another disk's volumes are not this node's: say so, once, where an operator looks.
        let why = match b.params.state_uuid {
            Some(_) => "not on the disk GRUB booted",
            None => "another volume has the label (first in name order taken)",
        };
        for (d, label) in detect::ignored(&b.devices, b.params.state_uuid.as_deref()) {
            log::to_consoles(
                &b.consoles,
                &format!(
                    "rkos-init: warning: ignoring {} labelled {label}: {why}\n",
                    d.path.display()
                ),
            );
        }
    }
    if devices::count_label(&b.devices, label::LIVE) > 1 {
        tracing::warn!(
            "more than one volume labelled {}; using the first in name order",
            label::LIVE
        );
    }
    tracing::info!(
        "mode {mode}, boot volume {}",
        boot.as_ref()
            .map(|b| b.device.display().to_string())
            .unwrap_or_else(|| "none".into())
    );
    (b.mode, b.boot, b.data) = (mode, boot, data);
    Ok(())
}

pub(super) fn plan(b: &mut Boot) -> Result<(), String> {
    let input = PlanInput {
        mode: b.mode,
        slot: b.params.slot,
        boot: b.boot.clone(),
        data: b.data.clone(),
        image_url: b.params.image_url.clone(),
        image_sha256: b.params.image_sha256.clone(),
    };
    let steps = plan::root_plan(&input).map_err(|e| e.to_string())?;
    // Consecutive steps of one plan stage make one timed stage.
    for (stage, step) in steps {
        match b.mounts.back_mut() {
            Some((last, group)) if *last == stage => group.push(step),
            _ => b.mounts.push_back((stage, vec![step])),
        }
    }
    Ok(())
}
