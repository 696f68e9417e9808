//! rkos-init: the stage-1 init the kernel runs as PID 1 from the initramfs. The boot flow,
//! in order (ARCHITECTURE.md, "Boot flow"): basic mounts, modules, find the image, mount
//! plan, early config, switch_root. Any failure ends in `fail`: a message on every console,
//! then the rescue shell; this function never returns.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;

use rkos_init::cmdline::{self, BootParams, Mode, Slot};
use rkos_init::detect::{self, CIDATA_LABEL, DATA_LABEL, LIVE_LABEL, STATE_LABEL};
use rkos_init::devices::{self, BlockDevice};
use rkos_init::early::ParsedSources;
use rkos_init::kmod;
use rkos_init::kmod::Loader;
use rkos_init::log::{self, KernelWork, Ms, Timings};
use rkos_init::modules::{ModuleIndex, ModulesError};
use rkos_init::plan::{self, PlanInput, Stage, Volume, RUN_RKOS, SYSROOT};
use rkos_init::{early, rescue, system};

/// Stages whose time the init does not control: devices appearing, hashing the image.
const NOT_OWN_WORK: &[&str] = &["wait-devices", "verify-image", "fetch-image", "sync-data"];

/// What the failure message needs, filled in as the boot goes.
struct Ctx {
    consoles: Vec<PathBuf>,
    cmdline: String,
    looked_for: String,
    /// The slot this disk boot runs from, once known: a failure while it is on trial
    /// restarts the machine so GRUB can count the try and fall back.
    disk_slot: Option<Slot>,
}

impl Ctx {
    fn fail(&self, error: impl std::fmt::Display) -> ! {
        let devs = devices::scan(Path::new("/sys/class/block"), Path::new("/dev"));
        let error = error.to_string();
        log::kmsg(log::ERR, &format!("boot failed: {error}"));
        let msg = rescue::failure_message(&error, &self.looked_for, &devs, &self.cmdline);
        log::to_consoles(&self.consoles, &msg);
        if let Some(slot) = self.disk_slot {
            restart_if_on_trial(slot, &self.consoles);
        }
        load_rescue_modules();
        rescue::shell_forever(&self.consoles)
    }
}

/// How long the failure message stays on screen before a failed trial boot restarts.
const TRIAL_RESTART_DELAY: Duration = Duration::from_secs(10);

/// A trial slot that cannot boot must not sit in the rescue shell: only a restart lets GRUB
/// spend the remaining tries and then fall back to the known-good slot by itself. When the
/// state volume is not mounted yet, GRUB's environment cannot be read and the shell is the
/// safe answer (the panic=/watchdog path still covers a hang).
fn restart_if_on_trial(booted: Slot, consoles: &[PathBuf]) {
    let state = rkos_slots::StateDir::new(plan::STATE);
    let on_trial = matches!(state.boot_state(), Ok(s) if s.trial.map(|t| t.slot) == Some(booted));
    if !on_trial {
        return;
    }
    log::to_consoles(
        consoles,
        &format!(
            "rkos-init: slot {booted} is on trial and failed to boot; restarting in {} s so \
             GRUB falls back to the previous slot\n",
            TRIAL_RESTART_DELAY.as_secs()
        ),
    );
    sleep(TRIAL_RESTART_DELAY);
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
}

/// Filesystem drivers the operator is likely to need in the rescue shell.
fn load_rescue_modules() {
    if let Some(mut l) = initramfs_loader() {
        for fs in ["ext4", "vfat", "iso9660", "squashfs", "overlay"] {
            l.ensure_fs(fs);
        }
        let _ = l.load("loop");
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn initramfs_index() -> Result<ModuleIndex, ModulesError> {
    ModuleIndex::load(&Path::new("/lib/modules").join(kernel_release()))
}

fn initramfs_loader() -> Option<Loader> {
    initramfs_index().ok().map(Loader::new)
}

/// The early config: merged from every source, with the problems found and the hostname
/// it gives this machine.
struct EarlyConfig {
    config: rkos_config::Config,
    problems: Vec<String>,
    hostname: String,
}

fn load_early_config(defaults: Option<ParsedSources>, root: &Path, cmdline: &str) -> EarlyConfig {
    let (config, problems) = early::load_config(defaults, root, cmdline);
    let mac = rkos_config::primary_mac(Path::new("/sys/class/net"));
    let hostname = early::hostname(&config, mac.as_deref());
    EarlyConfig {
        config,
        problems,
        hostname,
    }
}

/// Work done on a second thread, off the boot's critical path: the module index while the
/// main thread mounts the API filesystems and reads the devices' modaliases, the image's
/// default config while the kernel probes hardware, and, once the main thread says where
/// the other config sources are, loading the config while it mounts the image. On one CPU
/// the thread costs nothing but its start.
/// Where the config loads from (the root its sources are under) and the command line.
type ConfigJob = (PathBuf, String);

struct EarlyWork {
    index: mpsc::Receiver<Result<ModuleIndex, ModulesError>>,
    /// The thread, with the way to tell it where to load the config from; `None` when no
    /// thread could be started.
    thread: Option<(mpsc::Sender<ConfigJob>, JoinHandle<Option<EarlyConfig>>)>,
    /// Where the config loads from, once said.
    config_from: Option<ConfigJob>,
}

impl EarlyWork {
    fn start() -> Self {
        let (index_tx, index) = mpsc::channel();
        let (config_tx, config_rx) = mpsc::channel::<ConfigJob>();
        let thread = std::thread::Builder::new()
            .name("early".into())
            .spawn(move || {
                let _ = index_tx.send(initramfs_index());
                let defaults = early::parse_image_defaults(Path::new("/"));
                // No message: the boot failed before the config stage.
                let (root, cmdline) = config_rx.recv().ok()?;
                Some(load_early_config(defaults, &root, &cmdline))
            })
            // No thread (PID 1 out of memory already): the main thread does it all itself.
            .ok()
            .map(|h| (config_tx, h));
        EarlyWork {
            index,
            thread,
            config_from: None,
        }
    }

    fn index(&self) -> Result<ModuleIndex, ModulesError> {
        match self.thread {
            Some(_) => self.index.recv().unwrap_or_else(|_| initramfs_index()),
            None => initramfs_index(),
        }
    }

    /// Starts loading the config from the sources under `root`; only the first call counts.
    /// Returns where it loads from.
    fn load_config_from(&mut self, root: &Path, cmdline: &str) -> ConfigJob {
        let thread = &self.thread;
        self.config_from
            .get_or_insert_with(|| {
                let job = (root.to_path_buf(), cmdline.to_string());
                if let Some((tx, _)) = thread {
                    let _ = tx.send(job.clone());
                }
                job
            })
            .clone()
    }

    /// The config, loaded from `root` unless [`load_config_from`](Self::load_config_from)
    /// named another.
    fn config(mut self, root: &Path, cmdline: &str) -> EarlyConfig {
        let (root, cmdline) = self.load_config_from(root, cmdline);
        let from_thread = self.thread.take().and_then(|(_, h)| {
            // A panic on the thread is a bug: raised again here (the hook did not stop the
            // thread), it ends in the panic hook's rescue shell like any other.
            h.join().unwrap_or_else(|_| {
                panic!("the early thread failed; its error is in the kernel log")
            })
        });
        from_thread.unwrap_or_else(|| {
            load_early_config(early::parse_image_defaults(Path::new("/")), &root, &cmdline)
        })
    }
}

/// Copies the config sources the boot volumes carry into /run/rkos: the boot medium's
/// config.yaml (live) and the NoCloud seed's files. Returns the seed device, if any, and the
/// problems met.
fn gather_config_sources(
    mode: Mode,
    devs: &[BlockDevice],
    loader: &mut Loader,
) -> (Option<PathBuf>, Vec<String>) {
    let run_rkos = Path::new(RUN_RKOS);
    let mut problems = Vec::new();
    if mode.boots_from_live_medium() {
        if let Err(e) = early::copy_boot_config(Path::new(plan::MEDIUM), run_rkos) {
            problems.push(format!(
                "error: cannot copy the boot medium's rkos/config.yaml: {e}"
            ));
        }
    }
    // The seed is attached with the boot volume (a hypervisor's second drive): the wait
    // loop's scan already saw it, and probing optical drives again is slow.
    let seed = devices::find_label(devs, CIDATA_LABEL, true);
    if let Some(seed) = seed {
        if let Err(e) = copy_cidata(loader, seed, run_rkos) {
            problems.push(format!("error: NoCloud seed {}: {e}", seed.path.display()));
        }
    }
    (seed.map(|s| s.path.clone()), problems)
}

#[derive(Serialize)]
struct InitReport<'a> {
    version: String,
    mode: Mode,
    slot: Option<Slot>,
    boot_device: Option<&'a Volume>,
    data_device: Option<&'a Volume>,
    cidata_device: Option<PathBuf>,
    loop_devices: Vec<(PathBuf, PathBuf)>,
    seeded: &'a [PathBuf],
    modules_loaded: &'a [String],
    modules_failed: &'a [String],
    config_problems: usize,
    started_after_kernel_ms: f64,
    stages: &'a [log::StageTime],
    /// Time inside finit_module outside the device wait (driver probing).
    module_kernel_ms: f64,
    /// Time inside mount(2) and loop device set-up (superblock reads, journal replay, block
    /// device configuration).
    mount_kernel_ms: f64,
    /// Time inside writes to /dev/kmsg: the kernel printing the log lines on the consoles.
    console_kernel_ms: f64,
    /// Wall time minus waiting for devices, checking/fetching the image, module init,
    /// mount(2) and console output: what the init itself computes and the small syscalls it
    /// makes.
    own_ms: f64,
    total_ms: f64,
    cpu_user_ms: f64,
    cpu_sys_ms: f64,
}

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

/// Milliseconds since the kernel started (the clock /proc/uptime shows), without /proc.
fn uptime_ms() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as f64 * 1000.0 + t.tv_nsec() as f64 / 1e6)
        .unwrap_or(0.0)
}

fn main() {
    if nix::unistd::getpid().as_raw() != 1 {
        eprintln!("rkos-init is PID 1 of the rkos initramfs; it does nothing when run otherwise");
        std::process::exit(2);
    }
    // A bug must not end PID 1: the kernel would panic (and with panic=N reboot in a loop).
    std::panic::set_hook(Box::new(|info| {
        // On the early thread: let it unwind; the main thread re-raises the panic when it
        // collects the thread's work, and only one rescue shell starts, from there.
        if std::thread::current().name() != Some("main") {
            log::kmsg(
                log::ERR,
                &format!("internal error on a helper thread: {info}"),
            );
            return;
        }
        let consoles = log::console_paths(&cmdline::consoles(
            &fs::read_to_string("/proc/cmdline").unwrap_or_default(),
        ));
        log::kmsg(log::ERR, &format!("internal error: {info}"));
        log::to_consoles(
            &consoles,
            &format!("\nrkos-init: internal error: {info}\nStarting a rescue shell.\n"),
        );
        rescue::shell_forever(&consoles)
    }));
    let started_after_kernel_ms = uptime_ms();
    let mut t = Timings::new(NOT_OWN_WORK);
    // Fault the whole binary in at once: under emulation each page fault taken one by one as
    // the code first runs costs far more than populating the pages in one call.
    // SAFETY: mlockall takes flags only; the exec of the real init drops the locks.
    unsafe { libc::mlockall(libc::MCL_CURRENT) };
    // After mlockall: the thread's stack is not locked (faulting it all in would cost more
    // than the thread saves).
    let mut early_work = EarlyWork::start();
    let mut ctx = Ctx {
        consoles: log::console_paths(&[]),
        cmdline: String::new(),
        looked_for: String::new(),
        disk_slot: None,
    };

    let basic = t.stage("mount-basic", system::mount_basic);
    log::open_kmsg();
    // User writes to /dev/kmsg are rate limited (10 lines per 5 s by default), which would
    // drop stage lines. The setting can be changed only when the command line did not set
    // printk.devkmsg, so a change succeeds only over the default, which is put back before
    // handing over.
    const DEVKMSG: &str = "/proc/sys/kernel/printk_devkmsg";
    let devkmsg_changed = fs::write(DEVKMSG, "on\n").is_ok();
    if let Err(e) = basic {
        ctx.fail(format!("cannot mount the API filesystems: {e}"));
    }
    ctx.cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    ctx.consoles = log::console_paths(&cmdline::consoles(&ctx.cmdline));
    let params: BootParams = match cmdline::parse(&ctx.cmdline) {
        Ok(p) => p,
        Err(e) => ctx.fail(format!("bad kernel command line: {e}")),
    };
    log::init_tracing(params.debug);
    let version = fs::read_to_string("/etc/rkos/version")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    tracing::info!(
        "rkos {version} started {} ms after the kernel",
        started_after_kernel_ms.round() as u64
    );
    // The kernel's own module requests (request_module) run /sbin/modprobe, the kernel's
    // default, which the initramfs links to busybox.

    tracing::debug!(
        "prelude done at {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let kver = kernel_release();
    let modules_start = Timings::mark();
    // Read while the index is parsed on the other thread.
    let mut seen_devices = Default::default();
    let first_modaliases = kmod::read_new_modaliases(Path::new("/sys/bus"), &mut seen_devices);
    tracing::debug!(
        "first modaliases read at {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let mut loader = match early_work.index() {
        Ok(idx) => Loader::new(idx),
        Err(e) => {
            // Built-in drivers may still be enough; the failure message shows what was found.
            tracing::warn!("no kernel modules: {e}");
            Loader::new(ModuleIndex::default())
        }
    }
    .with_seen_devices(seen_devices);
    tracing::debug!(
        "module index ready at {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    if loader.load_for_modaliases(first_modaliases) > 0 {
        for _ in 0..6 {
            if loader.coldplug(Path::new("/sys/bus")) == 0 {
                break;
            }
        }
    }
    t.record("modules", modules_start);

    if params.mode == Some(Mode::Rescue) {
        log::to_consoles(
            &ctx.consoles,
            "rkos-init: rkos.mode=rescue: starting the rescue shell as asked\n",
        );
        load_rescue_modules();
        rescue::shell_forever(&ctx.consoles);
    }

    ctx.looked_for = detect::looked_for(params.mode, params.slot, params.wait);
    let wait_start = Timings::mark();
    let mut rounds = 0u32;
    let mut announced = false;
    let (mode, boot, data, devs) = loop {
        let scan_start = Instant::now();
        let devs = devices::scan(Path::new("/sys/class/block"), Path::new("/dev"));
        tracing::debug!(
            "scan of {} block devices: {:.1} ms",
            devs.len(),
            scan_start.elapsed().as_secs_f64() * 1000.0
        );
        if let Some((m, b, d)) = detect::decide(params.mode, &devs) {
            break (m, b, d, devs);
        }
        if !announced && wait_start.elapsed() >= detect::WAIT_NOTICE {
            announced = true;
            let line = detect::still_waiting(&ctx.looked_for, wait_start.elapsed());
            log::to_consoles(&ctx.consoles, &line);
        }
        if wait_start.elapsed() >= params.wait {
            t.record("wait-devices", wait_start);
            ctx.fail(format!(
                "no boot volume found after {:.1} s",
                wait_start.elapsed().as_secs_f64()
            ));
        }
        sleep(Duration::from_millis(20));
        rounds += 1;
        // USB and SD devices show up late and bring new modaliases (usb-storage, mmc_block).
        if rounds >= 5 {
            rounds = 0;
            loader.coldplug(Path::new("/sys/bus"));
        }
    };
    t.record("wait-devices", wait_start);
    for label in [LIVE_LABEL, STATE_LABEL, DATA_LABEL] {
        if devices::count_label(&devs, label) > 1 {
            tracing::warn!("more than one volume labelled {label}; using the first in name order");
        }
    }
    tracing::info!(
        "mode {mode}, boot volume {}",
        boot.as_ref()
            .map(|b| b.device.display().to_string())
            .unwrap_or_else(|| "none".into())
    );

    if mode == Mode::Disk {
        ctx.disk_slot = params.slot;
    }
    let input = PlanInput {
        mode,
        slot: params.slot,
        boot: boot.clone(),
        data: data.clone(),
        image_url: params.image_url.clone(),
        image_sha256: params.image_sha256.clone(),
    };
    let steps = match plan::root_plan(&input) {
        Ok(s) => s,
        Err(e) => ctx.fail(e),
    };
    let mut exec = system::Executor::new(&mut loader);
    let mut stage: Option<(Stage, log::Mark)> = None;
    // Booted from the live medium (live and install modes), every config source is in place
    // once the medium is mounted (the image defaults are in the initramfs; nothing
    // persists): the config loads on the other thread while the image is mounted. Elsewhere
    // the config stage loads it.
    let mut config_sources: Option<(Option<PathBuf>, Vec<String>)> = None;
    for (st, step) in &steps {
        match stage {
            Some((cur, _)) if cur == *st => {}
            _ => {
                if let Some((prev, since)) = stage {
                    t.record(prev.as_str(), since);
                    if prev == Stage::Medium && mode.boots_from_live_medium() {
                        config_sources = Some(t.stage("config-sources", || {
                            gather_config_sources(mode, &devs, exec.loader)
                        }));
                        early_work.load_config_from(Path::new("/"), &ctx.cmdline);
                    }
                }
                stage = Some((*st, Timings::mark()));
            }
        }
        let step_start = Instant::now();
        if let Err(e) = exec.run(step) {
            ctx.fail(format!("{step}: {e}"));
        }
        tracing::debug!(
            "{step}: {:.1} ms",
            step_start.elapsed().as_secs_f64() * 1000.0
        );
    }
    if let Some((prev, since)) = stage {
        t.record(prev.as_str(), since);
    }
    let loop_devices = std::mem::take(&mut exec.loops);
    let mut seeded = std::mem::take(&mut exec.seeded);
    // Put /run into the real root now, so the config sources under /run/rkos are where
    // `rkos_config::source::collect(SYSROOT)` reads them; a symlink keeps /run/... paths
    // (the data volume's mount among them) working.
    let sysroot = Path::new(SYSROOT);
    let moved = t.stage("move-run", || -> Result<(), String> {
        system::move_mount(Path::new("/run"), &sysroot.join("run")).map_err(|e| e.to_string())?;
        fs::remove_dir("/run").map_err(|e| format!("rmdir /run: {e}"))?;
        std::os::unix::fs::symlink("/sysroot/run", "/run").map_err(|e| format!("symlink /run: {e}"))
    });
    if let Err(e) = moved {
        ctx.fail(e);
    }

    // Everywhere but live and install, the config sources are in place only now: the config
    // loads on the other thread while the machine id is written and the data volume synced.
    let (cidata_device, gather_problems) = match config_sources {
        Some(gathered) => gathered,
        None => {
            let gathered = t.stage("config-sources", || {
                gather_config_sources(mode, &devs, &mut loader)
            });
            early_work.load_config_from(sysroot, &ctx.cmdline);
            gathered
        }
    };

    if mode == Mode::Disk {
        let id = t.stage("machine-id", || {
            system::persist_machine_id(Path::new(plan::DATA), Path::new(SYSROOT), || {
                fs::read_to_string("/proc/sys/kernel/random/uuid")
            })
        });
        match id {
            Ok((_, true)) => seeded.push(Path::new(plan::DATA).join("etc/machine-id")),
            Ok(_) => {}
            Err(e) => tracing::warn!("machine id not kept on RKOS_DATA: {e}"),
        }
    }

    if !seeded.is_empty() {
        if let Err(e) = t.stage("sync-data", || system::sync_fs(Path::new(plan::DATA))) {
            ctx.fail(e);
        }
    }

    let run_rkos = Path::new(RUN_RKOS);
    let mut problems: Vec<String> = gather_problems;
    t.stage("config", || {
        let EarlyConfig {
            config,
            problems: config_problems,
            hostname: name,
        } = early_work.config(sysroot, &ctx.cmdline);
        problems.extend(config_problems);
        if let Err(e) = nix::unistd::sethostname(&name) {
            problems.push(format!("error: hostname {name:?}: {e}"));
        }
        if let Err(e) = early::write_hostname(sysroot, &name) {
            problems.push(format!("error: /etc/hostname: {e}"));
        }
        // The initramfs carries the modules the image's default config asks for; the real
        // root carries every module, but reading its index from the squashfs costs more than
        // the rest of the init together, so it is opened only for a module the initramfs
        // lacks.
        let mut full: Option<Loader> = None;
        for m in &config.rkos.modules {
            if loader.load(m).is_ok() {
                continue;
            }
            let full = full.get_or_insert_with(|| {
                Loader::new(
                    ModuleIndex::load(&sysroot.join("lib/modules").join(&kver)).unwrap_or_default(),
                )
            });
            if let Err(e) = full.load(m) {
                problems.push(format!("error: module {m}: {e}"));
            }
        }
        if let Some(l) = full {
            for f in l.failed {
                problems.push(format!("error: module {f}"));
            }
        }
        problems.extend(
            early::write_sysctls(Path::new("/proc/sys"), &config.rkos.sysctls)
                .into_iter()
                .map(|p| format!("error: {p}")),
        );
        if mode == Mode::Disk && !config.rkos.persistent_paths.is_empty() {
            let already: Vec<PathBuf> =
                plan::DEFAULT_PERSISTENT.iter().map(PathBuf::from).collect();
            // Bad paths are reported and skipped; the good ones are bound together so parents
            // come before children whatever order the config lists them in.
            let mut good = Vec::new();
            for p in &config.rkos.persistent_paths {
                match plan::normalize_persistent(p) {
                    Ok(_) => good.push(p.clone()),
                    Err(e) => problems.push(format!("error: {e}")),
                }
            }
            let groups = plan::persistent_groups(&good, &already).unwrap_or_default();
            let mut exec = system::Executor::new(&mut loader);
            for (path, steps) in &groups {
                // A failed seed or bind skips the rest of that path only.
                for step in steps {
                    if let Err(e) = exec.run(step) {
                        problems.push(format!(
                            "error: persistent path {}: {step}: {e}",
                            path.display()
                        ));
                        break;
                    }
                }
            }
            if !exec.seeded.is_empty() {
                if let Err(e) = system::sync_fs(Path::new(plan::DATA)) {
                    problems.push(format!("error: {e}"));
                }
            }
            seeded.extend(exec.seeded);
        }
        if !problems.is_empty() {
            let mut text = format!(
                "rkos-init: {} config problem(s); booting anyway:\n",
                problems.len()
            );
            for p in &problems {
                text.push_str(&format!("  {p}\n"));
            }
            log::to_consoles(&ctx.consoles, &text);
        }
        if let Err(e) = early::write_problems(run_rkos, &problems) {
            tracing::warn!("cannot write {RUN_RKOS}/config-errors: {e}");
        }
        tracing::info!("hostname {name}");
    });

    let elapsed = t.elapsed();
    let module_kernel_ms = t.kernel_ms(KernelWork::ModuleInit);
    let mount_kernel_ms = t.kernel_ms(KernelWork::Mount);
    let console_kernel_ms = t.kernel_ms(KernelWork::Console);
    let own_ms = t.own_ms(elapsed);
    let total_ms = log::ms(elapsed);
    let (cpu_user_ms, cpu_sys_ms) = cpu_ms();
    let report = InitReport {
        version,
        mode,
        slot: params.slot.filter(|_| mode == Mode::Disk),
        boot_device: boot.as_ref(),
        data_device: data.as_ref(),
        cidata_device,
        loop_devices,
        seeded: &seeded,
        modules_loaded: &loader.loaded,
        modules_failed: &loader.failed,
        config_problems: problems.len(),
        started_after_kernel_ms: log::tenths(started_after_kernel_ms),
        stages: &t.stages,
        module_kernel_ms,
        mount_kernel_ms,
        console_kernel_ms,
        own_ms,
        total_ms,
        cpu_user_ms,
        cpu_sys_ms,
    };
    if let Ok(json) = serde_json::to_string_pretty(&report) {
        let _ = fs::write(run_rkos.join("init.json"), json + "\n");
    }
    log::kmsg(
        log::INFO,
        &format!(
            "total {} ms, own work {} ms (not counted: waiting for devices, checking the image, \
             module init {} ms, mount(2) and loop set-up {} ms, console output {} ms), \
             cpu user {} ms sys {} ms, mode {mode}, {} modules",
            Ms(total_ms),
            Ms(own_ms),
            Ms(module_kernel_ms),
            Ms(mount_kernel_ms),
            Ms(console_kernel_ms),
            Ms(cpu_user_ms),
            Ms(cpu_sys_ms),
            loader.loaded.len()
        ),
    );
    if devkmsg_changed {
        let _ = fs::write(DEVKMSG, "ratelimit\n");
    }
    let e = system::switch_root(sysroot, &params.init);
    ctx.fail(format!("switch_root to {SYSROOT}: {e}"));
}

/// Mounts the NoCloud seed read-only, copies its files, unmounts it.
fn copy_cidata(loader: &mut Loader, seed: &BlockDevice, run_rkos: &Path) -> Result<(), String> {
    let fstype = seed.fstype().ok_or("unknown filesystem")?.mount_type();
    loader.ensure_fs(fstype);
    let mnt = run_rkos.join("cidata.mnt");
    fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    system::mount_fs(
        &seed.path.to_string_lossy(),
        &mnt,
        fstype,
        nix::mount::MsFlags::MS_RDONLY,
        "",
    )
    .map_err(|e| e.to_string())?;
    let copied = early::copy_cidata(&mnt, run_rkos);
    let _ = nix::mount::umount(&mnt);
    let _ = fs::remove_dir(&mnt);
    let copied = copied.map_err(|e| e.to_string())?;
    tracing::info!(
        "NoCloud seed {}: {}",
        seed.path.display(),
        copied.join(", ")
    );
    Ok(())
}
