//! The boot's stages, one function each, run in the order `crate::sequence` lists them and
//! timed by [`Boot::run`]: each timed stage's wall time and own work go to the kernel log
//! (`rkos-init: <stage> <ms> ms (own work <ms> ms)`) and to `init.json`. A stage that fails
//! returns what went wrong; [`Boot::fail`] shows it on every console with what was looked
//! for, then starts the rescue shell.

mod config;
mod find;
mod handover;
mod root;
mod seeds;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use rkos_contract::{BootMode, Volume};

use crate::cmdline::BootParams;
use crate::devices::{self, BlockDevice};
use crate::early_work::EarlyWork;
use crate::identity::Identity;
use crate::kmod::Loader;
use crate::log::{self, Timings};
use crate::modules::ModuleIndex;
use crate::plan::{self, Step};
use crate::rescue;
use crate::sequence::{StageId, NOT_OWN_WORK};

/// What the boot knows so far, filled in stage by stage.
pub struct Boot {
    t: Timings,
    /// Milliseconds from the kernel's start to the init's.
    started_after_kernel_ms: f64,
    /// The second thread's work (module index, config); taken by the config stage.
    early_work: EarlyWork,
    /// Whether `/dev/kmsg`'s rate limit was lifted (and must be put back).
    devkmsg_changed: bool,
    cmdline: String,
    /// Whether /run is in the new root yet (`move-run`).
    run_moved: bool,
    consoles: Vec<PathBuf>,
    params: BootParams,
    version: String,
    /// What the failure message says was looked for.
    looked_for: String,
    loader: Loader,
    mode: BootMode,
    boot: Option<Volume>,
    data: Option<Volume>,
    devices: Vec<BlockDevice>,
    /// The mount plan's steps not run yet, by plan stage.
    mounts: VecDeque<(plan::Stage, Vec<Step>)>,
    /// (image file, loop device) for `init.json`.
    loop_devices: Vec<(PathBuf, PathBuf)>,
    /// What was created on the data volume (seeded from the image, the machine id).
    seeded: Vec<PathBuf>,
    /// The first cloud-init seed volume found (NoCloud or ConfigDrive).
    cidata_device: Option<PathBuf>,
    /// An installed node's instance, and why its identity is new when it is.
    instance: Option<(Identity, Option<String>)>,
    /// An installed node's machine id, kept on the data volume (it names the node when the
    /// config does not).
    machine_id: Option<String>,
    /// Config problems, one line each: shown on the consoles and at the login prompt.
    config_problems: Vec<String>,
}

impl Boot {
    /// The boot at the init's first instruction: the clock starts, the binary is locked in
    /// memory and the second thread starts.
    pub fn start() -> Self {
        let started_after_kernel_ms = handover::uptime_ms();
        let t = Timings::new(NOT_OWN_WORK);
        // Fault the whole binary in at once: under emulation each page fault taken one by
        // one as the code first runs costs far more than populating the pages in one call.
        // SAFETY: mlockall takes flags only; the exec of the real init drops the locks.
        unsafe { libc::mlockall(libc::MCL_CURRENT) };
        // After mlockall: the thread's stack is not locked (faulting it all in would cost
        // more than the thread saves).
        let early_work = EarlyWork::start();
        Boot {
            t,
            started_after_kernel_ms,
            early_work,
            devkmsg_changed: false,
            cmdline: String::new(),
            run_moved: false,
            consoles: log::console_paths(&[]),
            params: BootParams::default(),
            version: String::new(),
            looked_for: String::new(),
            loader: Loader::new(ModuleIndex::default()),
            mode: BootMode::Live,
            boot: None,
            data: None,
            devices: Vec::new(),
            mounts: VecDeque::new(),
            loop_devices: Vec::new(),
            seeded: Vec::new(),
            cidata_device: None,
            instance: None,
            machine_id: None,
            config_problems: Vec::new(),
        }
    }

    /// The boot mode, once the prelude has found it.
    pub fn mode(&self) -> BootMode {
        self.mode
    }

    /// The plan stages of the mount plan, in order, once the prelude has made it.
    pub fn mount_stages(&self) -> Vec<plan::Stage> {
        self.mounts.iter().map(|(s, _)| *s).collect()
    }

    /// Runs the stage `id`, timed under its name; a failure ends in [`Boot::fail`].
    pub fn run(&mut self, id: StageId) {
        if id == StageId::SyncData && self.seeded.is_empty() {
            return;
        }
        let since = Timings::mark();
        let result = match id {
            StageId::MountBasic => find::mount_basic(self),
            StageId::BootParams => find::boot_params(self),
            StageId::Modules => find::modules(self),
            StageId::RescueIfAsked => find::rescue_if_asked(self),
            StageId::WaitDevices => find::wait_devices(self),
            StageId::Plan => find::plan(self),
            StageId::Mount(stage) => root::mount(self, stage),
            StageId::ConfigSources => root::config_sources(self),
            StageId::MoveRun => root::move_run(self),
            StageId::Identity => root::identity(self),
            StageId::MachineId => root::machine_id(self),
            StageId::SyncData => root::sync_data(self),
            StageId::Config => config::config(self),
            StageId::Report => handover::report(self),
            StageId::SwitchRoot => handover::switch_root(self),
        };
        match id.timed_name() {
            Some(name) => self.t.record(name, since),
            None => tracing::debug!("{id:?}: {:.1} ms", since.elapsed().as_secs_f64() * 1000.0),
        }
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// Milliseconds since the init started, for debug lines.
    fn at_ms(&self) -> f64 {
        self.t.elapsed().as_secs_f64() * 1000.0
    }

    /// The end of a boot that cannot go on: a message on every console naming what was
    /// looked for and what was found, then the rescue shell (or, for a slot on trial, a
    /// restart so GRUB falls back).
    pub fn fail(&self, error: impl std::fmt::Display) -> ! {
        let devs = devices::scan(Path::new("/sys/class/block"), Path::new("/dev"));
        let error = error.to_string();
        log::kmsg(log::ERR, &format!("boot failed: {error}"));
        // The command line is read in a stage of its own; a failure before it reads it here.
        let cmdline = match self.cmdline.as_str() {
            "" => std::fs::read_to_string(rkos_contract::paths::PROC_CMDLINE).unwrap_or_default(),
            c => c.to_string(),
        };
        let then = rescue::decide(&cmdline);
        let msg = rescue::failure_message(&error, &self.looked_for, &devs, &cmdline, then);
        log::to_consoles(&self.consoles, &msg);
        if then == rescue::OnFailure::Restart {
            rescue::restart(&self.consoles);
        }
        rescue::load_rescue_modules();
        rescue::shell_forever(&self.consoles)
    }
}
