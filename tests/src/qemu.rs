//! A QEMU virtual machine driven through its serial console: QEMU's `-serial stdio` is a pair
//! of pipes, read by a thread into a buffer (and a log file under `target/boot-logs/`) and
//! written by [`Vm::send`]. The same bytes also go through an 80x24 terminal emulator
//! ([`crate::screen`]), so a test can assert on what a person at the console sees
//! ([`Vm::expect_screen`]). The VM is killed when the [`Vm`] is dropped.

use crate::console;
use crate::screen::Screen;
use anyhow::{anyhow, bail, ensure, Context, Result};
use rkos_vm::Accel;
pub use rkos_vm::Arch;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How the VM boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// Firmware -> GRUB on the ISO (the path a user takes).
    Iso(PathBuf),
    /// Kernel and initramfs given to QEMU directly with this command line; `medium` is the
    /// ISO attached as a CD-ROM, or none (the "medium detached" case).
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
        medium: Option<PathBuf>,
    },
    /// UEFI firmware (OVMF, AAVMF on arm64) -> GRUB's EFI image on the ISO; `uefi_vars` as
    /// for [`Boot::Disk`].
    IsoUefi { iso: PathBuf, uefi_vars: PathBuf },
    /// Firmware -> the first disk in [`VmConfig::disks`] (an installed node), with SeaBIOS, or
    /// with UEFI when `uefi_vars` names a writable copy of its variable store
    /// ([`uefi_vars`]; arm64 has UEFI only). No CD-ROM is attached.
    Disk { uefi_vars: Option<PathBuf> },
    /// U-Boot as the firmware (`-bios`, Debian's `u-boot-qemu`, arm64) -> its UEFI ->
    /// GRUB on the first disk's ESP: the boot chain of the Raspberry Pi image, on the `virt`
    /// board.
    UBoot { bios: PathBuf },
    /// QEMU's Raspberry Pi 3 board (`-M raspi3b`: its four Cortex-A53, 1 GiB, the SD card,
    /// no PCI): `uboot` started as the kernel with the board's device tree `dtb`, as the Pi's
    /// firmware would start it (QEMU cannot run that firmware), the image as the SD card. The
    /// console read is the mini UART (the GPIO pins' UART on a Pi: `ttyS1`); the PL011 goes
    /// to `target/boot-logs/<name>-uart0.log`.
    Raspi3b {
        uboot: PathBuf,
        dtb: PathBuf,
        card: PathBuf,
    },
    /// SeaBIOS -> the NIC's iPXE option ROM -> the network ([`Nic`] says which).
    Pxe,
}

/// The VM's network card. The default is what every boot test had: QEMU's user-mode network
/// and no option ROM (iPXE would spend seconds of emulated time announcing itself).
#[derive(Debug, Clone, Default)]
pub struct Nic {
    /// Boot from the network with QEMU's own iPXE option ROM; otherwise the NIC has no ROM.
    pub pxe: bool,
    pub backend: NetBackend,
    /// Run QEMU inside this network namespace (`ip netns exec`), where its tap device is.
    pub netns: Option<String>,
}

/// Where the NIC is plugged.
#[derive(Debug, Clone, Default)]
pub enum NetBackend {
    /// QEMU's user-mode network (the host is 10.0.2.2), with its built-in TFTP server serving
    /// `tftp` and DHCP naming `bootfile`, when given.
    #[default]
    User,
    UserTftp {
        tftp: PathBuf,
        bootfile: String,
    },
    /// A tap device the test made (`ip tuntap add ... mode tap`).
    Tap(String),
}

impl Nic {
    /// QEMU's arguments for this NIC; a VM's [`Extras`] add their MAC and, on user-mode
    /// networks, their forwarded host ports.
    fn args(&self, extras: &Extras) -> Vec<String> {
        let mut netdev = match &self.backend {
            NetBackend::User => "user,id=net0".to_string(),
            NetBackend::UserTftp { tftp, bootfile } => {
                format!("user,id=net0,tftp={},bootfile={bootfile}", tftp.display())
            }
            NetBackend::Tap(ifname) => {
                format!("tap,id=net0,ifname={ifname},script=no,downscript=no")
            }
        };
        if !matches!(self.backend, NetBackend::Tap(_)) {
            for f in &extras.forwards {
                netdev.push_str(&format!(
                    ",hostfwd=tcp:127.0.0.1:{}-{}:{}",
                    f.host_port, f.guest, f.guest_port
                ));
            }
        }
        let mut device = "virtio-net-pci,netdev=net0".to_string();
        if let Some(mac) = &extras.mac {
            device.push_str(&format!(",mac={mac}"));
        }
        // A network boot uses the ROM QEMU picks for the NIC by itself (iPXE, from Debian's
        // ipxe-qemu) and makes the NIC the first boot device. Naming that same ROM file with
        // `romfile=`, or asking with `-boot order=n`, left SeaBIOS trying the CD, the disk and
        // the floppy (seen with QEMU 10 and SeaBIOS 1.16). Without PXE: no ROM (iPXE would
        // spend seconds of emulated time announcing itself).
        if self.pxe {
            device.push_str(",bootindex=0");
        } else {
            device.push_str(",romfile=");
        }
        vec!["-netdev".into(), netdev, "-device".into(), device]
    }
}

/// A fresh copy of the UEFI firmware's variable store for `arch` in `dir`: the firmware
/// writes its boot entries there, so each VM needs its own.
pub fn uefi_vars(arch: Arch, dir: &Path) -> Result<PathBuf> {
    let (_, template) = arch.uefi_firmware();
    let vars = dir.join(format!("UEFI_VARS_{arch}.fd"));
    std::fs::copy(template, &vars).with_context(|| {
        format!("copying the UEFI variable store {template} (packages ovmf, qemu-efi-aarch64)")
    })?;
    Ok(vars)
}

/// [`uefi_vars`] of OVMF, the amd64 firmware.
pub fn ovmf_vars(dir: &Path) -> Result<PathBuf> {
    uefi_vars(Arch::Amd64, dir)
}

/// What to start.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Names the console log: `target/boot-logs/<name>.log`.
    pub name: String,
    /// The guest's architecture: which QEMU, machine, firmware and accelerator.
    pub arch: Arch,
    pub boot: Boot,
    /// Disk images attached as virtio disks (seed volumes, blank disks): raw, or qcow2 when
    /// the name ends in `.qcow2`.
    pub disks: Vec<PathBuf>,
    pub memory_mb: u32,
    pub extras: Extras,
}

/// What some VMs add: CD-ROMs (a seed as Proxmox attaches it), their NIC's MAC address,
/// host ports forwarded into the guest (QEMU user networking's `hostfwd`).
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub cdroms: Vec<PathBuf>,
    /// Raw disks on the AHCI controller (amd64): `sda`, `sdb`... in the guest, which sort
    /// before the virtio `vda`.
    pub ide_disks: Vec<PathBuf>,
    /// Raw disks on a USB 3 (xHCI) controller, as USB sticks and SSDs are attached.
    pub usb_disks: Vec<PathBuf>,
    /// Raw disks QEMU holds for the xHCI controller but does not attach at power-on: plugged
    /// in later with [`Vm::plug_usb`] (their index here).
    pub usb_hotplug: Vec<PathBuf>,
    pub mac: Option<String>,
    pub forwards: Vec<Forward>,
}

/// TCP from `127.0.0.1:host_port` on the host to `guest:guest_port` (a guest address on
/// QEMU's user network, 10.0.2.0/24).
#[derive(Debug, Clone)]
pub struct Forward {
    pub host_port: u16,
    pub guest: String,
    pub guest_port: u16,
}

/// The accelerator for this test process: [`rkos_vm::verdict_for_arch`] (`RKOS_ACCEL`, or a
/// real kernel booted under KVM; always TCG for a guest of another architecture), probed
/// once with the kernel `probe_kernel` finds for `cfg`.
pub fn accelerator_for(cfg: &VmConfig) -> Accel {
    if Arch::host() != Some(cfg.arch) {
        return rkos_vm::verdict_for_arch(cfg.arch, None).accel;
    }
    rkos_vm::verdict(probe_kernel(&cfg.boot).as_deref()).accel
}

/// The accelerator, probed with the kernel of `RKOS_ISO` when this process has not decided yet.
pub fn accelerator() -> Accel {
    rkos_vm::verdict(probe_kernel(&Boot::Disk { uefi_vars: None }).as_deref()).accel
}

/// The kernel the probe boots: `RKOS_PROBE_KERNEL`, the VM's own kernel, or the one on its
/// ISO (or on `RKOS_ISO`), extracted once under the log directory. Nothing is extracted when
/// `RKOS_ACCEL` decides.
fn probe_kernel(boot: &Boot) -> Option<PathBuf> {
    if rkos_vm::accel::forced().is_some() {
        return None;
    }
    if let Some(k) = std::env::var_os("RKOS_PROBE_KERNEL") {
        return Some(PathBuf::from(k));
    }
    let iso = match boot {
        Boot::Kernel { kernel, .. } => return Some(kernel.clone()),
        Boot::Iso(iso) | Boot::IsoUefi { iso, .. } => Some(iso.clone()),
        Boot::Disk { .. } => std::env::var_os("RKOS_ISO").map(PathBuf::from),
        Boot::Pxe | Boot::UBoot { .. } | Boot::Raspi3b { .. } => None,
    }?;
    let dir = log_dir().join("accel-probe");
    std::fs::create_dir_all(&dir).ok()?;
    match rkos_vm::iso::extract_vmlinuz(&iso, &dir) {
        Ok(k) => Some(k),
        Err(e) => {
            rkos_vm::accel::say(&format!("accelerator probe: {e}"));
            None
        }
    }
}

/// Under KVM, a boot that shows nothing new on its console for this long before its kernel
/// has run (and before anything was typed) is taken for a KVM that cannot run a kernel.
/// `RKOS_KVM_STALL_SECS` shortens it for the harness's own tests.
fn kvm_stall() -> Duration {
    std::env::var("RKOS_KVM_STALL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs)
}

/// The directory of console logs: `<workspace>/target/boot-logs` (or under CARGO_TARGET_DIR).
pub fn log_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("boot-logs")
}

struct Shared {
    text: Mutex<Console>,
    changed: Condvar,
    /// The console as a terminal shows it.
    screen: Mutex<Screen>,
    /// QEMU's stdin: the test types on it, and the terminal's answers go there too.
    stdin: Mutex<ChildStdin>,
}

struct Console {
    /// Cleaned console text so far.
    text: String,
    /// QEMU's serial output ended (it exited).
    ended: bool,
    /// When the console last printed.
    last_output: Instant,
    /// QEMU's own stderr (echoed to the test's stderr as well): where it reports a KVM
    /// internal error.
    qemu_errors: String,
}

impl Console {
    /// Whether the guest's kernel started its init (rkos-init, or any init): from then on a
    /// boot has changed what it booted from, and a stop is the test's business.
    fn kernel_ran(&self) -> bool {
        self.text.contains("Run /") || self.text.contains("rkos-init")
    }
}

/// A running VM.
pub struct Vm {
    name: String,
    cfg: VmConfig,
    nic: Nic,
    accel: Accel,
    /// Something was typed on the console: a boot can no longer be retried from scratch.
    typed: bool,
    /// Already started again once (under TCG after KVM failed, or after QEMU crashed).
    retried: bool,
    child: Child,
    shared: Arc<Shared>,
    /// The terminal answers size queries ([`Vm::answer_terminal_queries`]).
    answering: bool,
    /// Byte offset in the cleaned text up to which expectations have consumed it.
    cursor: usize,
    pub log_path: PathBuf,
    pub started: Instant,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Vm {
    pub fn start(cfg: &VmConfig) -> Result<Vm> {
        Self::launch(cfg, &Nic::default(), accelerator_for(cfg))
    }

    /// [`Vm::start`] with another network card (a network boot).
    pub fn start_with_nic(cfg: &VmConfig, nic: &Nic) -> Result<Vm> {
        Self::launch(cfg, nic, accelerator_for(cfg))
    }

    /// [`Vm::start`] under a given accelerator, whatever this process's verdict (the
    /// harness's own tests of the KVM fallback).
    pub fn start_under(cfg: &VmConfig, accel: Accel) -> Result<Vm> {
        Self::launch(cfg, &Nic::default(), accel)
    }

    fn launch(cfg: &VmConfig, nic: &Nic, accel: Accel) -> Result<Vm> {
        let (child, shared, log_path) = spawn(cfg, nic, accel)?;
        Ok(Vm {
            name: cfg.name.clone(),
            cfg: cfg.clone(),
            nic: nic.clone(),
            accel,
            typed: false,
            retried: false,
            child,
            shared,
            answering: false,
            cursor: 0,
            log_path,
            started: Instant::now(),
        })
    }

    /// Why this boot looks like a KVM that cannot run a kernel, while a retry from scratch
    /// is still possible (under KVM, nothing typed yet, not retried before).
    fn kvm_failure(&self, c: &Console) -> Option<String> {
        if self.accel != Accel::Kvm || self.typed || self.retried {
            return None;
        }
        if let Some(line) = c
            .qemu_errors
            .lines()
            .find(|l| l.contains("KVM internal error"))
        {
            return Some(format!("QEMU reported \"{}\"", line.trim()));
        }
        // once the kernel has started its init, a stop is the test's business, not KVM's
        if c.kernel_ran() {
            return None;
        }
        if c.ended {
            return Some("QEMU exited before the kernel ran".into());
        }
        let quiet = c.last_output.elapsed();
        (quiet >= kvm_stall()).then(|| {
            format!(
                "the console printed nothing for {} s before the kernel ran",
                quiet.as_secs()
            )
        })
    }

    /// QEMU itself crashed (an assertion of its own, seen under TCG: `iotlb_to_section`)
    /// before the guest's kernel ran its init: nothing of the guest's can have changed, so
    /// the boot may start again once (nothing typed yet, not retried before).
    fn emulator_crash(&self, c: &Console) -> Option<String> {
        if self.typed || self.retried || !c.ended {
            return None;
        }
        let line = c.qemu_errors.lines().find(|l| l.contains("Assertion"))?;
        (!c.kernel_ran()).then(|| format!("QEMU crashed: \"{}\"", line.trim()))
    }

    /// Starts this VM again from scratch under TCG, keeping the KVM try's console log
    /// beside the new one, and tells the test output and the rest of the process.
    fn retry_under_tcg(&mut self, reason: &str) -> Result<()> {
        rkos_vm::accel::demote(&format!("a boot failed under KVM ({reason})"));
        self.start_again(
            Accel::Tcg,
            &format!("the boot failed under KVM ({reason}); retrying once under TCG"),
            "kvm.log",
        )
    }

    /// Starts this VM again from scratch under `accel`, keeping the failed try's console log
    /// beside the new one (extension `old_ext`), and says `why` on the test output.
    fn start_again(&mut self, accel: Accel, why: &str, old_ext: &str) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let old_log = self.log_path.with_extension(old_ext);
        let _ = std::fs::rename(&self.log_path, &old_log);
        rkos_vm::accel::say(&format!(
            "{}: {why} (console of the failed try: {})",
            self.name,
            old_log.display()
        ));
        let (child, shared, log_path) = spawn(&self.cfg, &self.nic, accel)?;
        self.accel = accel;
        self.retried = true;
        self.child = child;
        self.shared = shared;
        self.answer_terminal_queries(self.answering);
        self.cursor = 0;
        self.log_path = log_path;
        self.started = Instant::now();
        Ok(())
    }

    /// Waits until the console, past what earlier expectations consumed, matches `pattern`
    /// (a regex); returns the text up to and including the match and consumes it.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let re = regex::Regex::new(pattern).with_context(|| format!("bad pattern {pattern}"))?;
        let mut deadline = Instant::now() + timeout;
        loop {
            let shared = Arc::clone(&self.shared);
            let g = shared.text.lock().expect("console lock");
            if let Some(m) = re.find(&g.text[self.cursor..]) {
                let end = self.cursor + m.end();
                let got = g.text[self.cursor..end].to_string();
                self.cursor = end;
                return Ok(got);
            }
            if let Some(reason) = self.kvm_failure(&g) {
                drop(g);
                self.retry_under_tcg(&reason)?;
                // the retry starts the boot over: so does the wait
                deadline = Instant::now() + timeout;
                continue;
            }
            if let Some(reason) = self.emulator_crash(&g) {
                drop(g);
                let accel = self.accel;
                self.start_again(
                    accel,
                    &format!("{reason} before the kernel ran; starting the boot once more"),
                    "crashed.log",
                )?;
                deadline = Instant::now() + timeout;
                continue;
            }
            let now = Instant::now();
            if g.ended || now >= deadline {
                let tail_from = g.text.len().saturating_sub(3000);
                let tail_from = (tail_from..g.text.len())
                    .find(|i| g.text.is_char_boundary(*i))
                    .unwrap_or(0);
                bail!(
                    "{}: {} waiting for /{}/ after {:?} under {}; console log {}; last output:\n{}",
                    self.name,
                    if g.ended { "QEMU exited" } else { "timed out" },
                    pattern,
                    self.started.elapsed(),
                    self.accel,
                    self.log_path.display(),
                    &g.text[tail_from..]
                );
            }
            // wake at least every second under KVM to notice a stall
            let wait = (deadline - now).min(Duration::from_secs(1));
            drop(shared.changed.wait_timeout(g, wait).expect("console lock"));
        }
    }

    /// The accelerator this VM runs under now (TCG after a retry).
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The whole cleaned console text so far.
    pub fn transcript(&self) -> String {
        self.shared.text.lock().expect("console lock").text.clone()
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) -> Result<()> {
        self.typed = true;
        let mut stdin = self.shared.stdin.lock().expect("stdin lock");
        stdin
            .write_all(text.as_bytes())
            .context("writing to the serial console")?;
        stdin.flush().context("writing to the serial console")
    }

    /// From now on the console's terminal answers the cursor-position query, as the
    /// terminal emulator of a person at a serial console does (how a program learns the
    /// screen's size on a line that has none).
    pub fn answer_terminal_queries(&mut self, on: bool) {
        self.answering = on;
        self.shared
            .screen
            .lock()
            .expect("screen lock")
            .answer_queries(on);
    }

    /// What the 80x24 terminal shows now, one line per row.
    pub fn screen(&self) -> String {
        self.shared.screen.lock().expect("screen lock").text()
    }

    /// Waits until the terminal shows `what` (literal text within one row, or across rows
    /// when it holds a newline); returns the screen.
    pub fn expect_screen(&mut self, what: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let shared = Arc::clone(&self.shared);
            let g = shared.text.lock().expect("console lock");
            let screen = self.screen();
            if screen.contains(what) {
                return Ok(screen);
            }
            if g.ended || Instant::now() >= deadline {
                bail!(
                    "{}: {} waiting for the screen to show {what:?} after {:?}; console log {}; \
                     the screen:\n{screen}",
                    self.name,
                    if g.ended { "QEMU exited" } else { "timed out" },
                    self.started.elapsed(),
                    self.log_path.display(),
                );
            }
            drop(
                shared
                    .changed
                    .wait_timeout(g, Duration::from_millis(500))
                    .expect("console lock"),
            );
        }
    }

    /// Waits for `prompt` on the screen, gives the program a moment to take the line
    /// (a question switches the terminal mode when it is drawn), and types `keys`.
    pub fn answer(&mut self, prompt: &str, keys: &str, timeout: Duration) -> Result<String> {
        let screen = self.expect_screen(prompt, timeout)?;
        thread::sleep(Duration::from_millis(300));
        self.send(keys)?;
        Ok(screen)
    }

    /// Types `line` until the console answers with `pattern`: a shell that has just started
    /// may swallow the first keystrokes (busybox ash asks the terminal for the cursor position
    /// and reads the reply from the same line), so one try is not enough.
    pub fn type_until(
        &mut self,
        line: &str,
        pattern: &str,
        tries: u32,
        each: Duration,
    ) -> Result<String> {
        let mut last = None;
        for _ in 0..tries.max(1) {
            self.send(&format!("{line}\n"))?;
            match self.expect(pattern, each) {
                Ok(got) => return Ok(got),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .expect("at least one try")
            .context(format!("typing `{line}`")))
    }

    /// Waits for the live system's autologin shell, then quiets the kernel on the console:
    /// messages of drivers still loading would land in the screens the tests read.
    pub fn live_shell(&mut self, boot: Duration, step: Duration) -> Result<()> {
        self.expect(r"login:", boot).context("no login prompt")?;
        self.expect(r"rkos@[^ ]*[:~]|\$ ", boot)
            .context("no shell (live autologin)")?;
        self.send("sudo -n dmesg -n 1; echo console-$((6*7))\n")?;
        self.expect(r"console-42", step)
            .context("the shell does not answer")?;
        Ok(())
    }

    /// Waits for `done` (the kernel's last words of a reboot or power-off) and fails when a
    /// unit failed on the way down: a clean shutdown looks it (the data volume and its binds
    /// unmounted, or read-only, before the power-off). Returns the shutdown's console.
    pub fn clean_shutdown(&mut self, what: &str, done: &str, timeout: Duration) -> Result<String> {
        let log = self
            .expect(&regex::escape(done), timeout)
            .with_context(|| format!("{what}: no {done:?}"))?;
        let failed: Vec<&str> = log.lines().filter(|l| l.contains("FAILED")).collect();
        anyhow::ensure!(
            failed.is_empty(),
            "{what} did not shut down cleanly:\n{}",
            failed.join("\n")
        );
        Ok(log)
    }

    /// Puts the logged-in shell into a mode fit for scripting: no line editing, no echo, no
    /// prompt, so command output is all that comes back.
    pub fn prepare_shell(&mut self) -> Result<()> {
        self.send("set +o emacs +o vi; stty -echo -onlcr 2>/dev/null; PS1=''; PS2=''; unset PROMPT_COMMAND; export TERM=dumb\n")?;
        self.run_ok("true", Duration::from_secs(60))?;
        // The login can come before udev has loaded every driver; their kernel messages on
        // the same console would land inside command output.
        self.run_ok(
            "sudo -n dmesg -n 1 2>/dev/null || true",
            Duration::from_secs(60),
        )
        .map(|_| ())
    }

    /// Runs `cmd` in the shell on the console; returns its exit status and output.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(i32, String)> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        self.send(&format!("{}\n", console::command_line(cmd, id)))?;
        let end = format!(r"@@rkos-end-{id}:\d+@@");
        let upto = self
            .expect(&end, timeout)
            .with_context(|| format!("running `{cmd}`"))?;
        console::command_result(&upto, id)
            .ok_or_else(|| anyhow!("`{cmd}`: no begin marker in {upto:?}"))
    }

    /// Logs `user` in on the console's login prompt with `password` (an installed node: no
    /// autologin), readies the shell for commands and quiets the kernel's and systemd's
    /// status lines, which would interleave with command output (a reboot sets both back).
    /// `boot` bounds the wait for the prompt.
    pub fn login(&mut self, user: &str, password: &str, boot: Duration) -> Result<()> {
        let step = Duration::from_secs(120);
        self.expect(r"login: ", boot).context("no login prompt")?;
        self.send(&format!("{user}\n"))?;
        self.expect(r"Password: ", step)
            .context("no password prompt")?;
        self.send(&format!("{password}\n"))?;
        self.expect(&format!(r"{user}@[^ ]*[:~]|\$ "), step)
            .context("the password did not log in")?;
        self.prepare_shell()?;
        self.run_ok("sudo dmesg -n 1; sudo kill -s RTMIN+21 1", step)
            .map(|_| ())
    }

    /// Runs `cmd` and fails unless it exits 0; returns its output.
    pub fn run_ok(&mut self, cmd: &str, timeout: Duration) -> Result<String> {
        let (status, out) = self.run(cmd, timeout)?;
        if status != 0 {
            bail!("{}: `{cmd}` exited {status}:\n{out}", self.name);
        }
        Ok(out)
    }
}

/// A USB disk on the xHCI controller, backed by the drive `drive` (a `-device` argument, or
/// `device_add`'s).
fn usb_storage(drive: &str) -> String {
    format!("usb-storage,bus=xhci.0,drive={drive}")
}

/// The drive id of the `i`-th of [`Extras::usb_hotplug`].
fn hotplug_drive(i: usize) -> String {
    format!("hot{i}")
}

/// Where the human monitor of the VM `name` listens (with [`Extras::usb_hotplug`]).
fn monitor_path(name: &str) -> PathBuf {
    log_dir().join(format!("{name}.monitor"))
}

/// Reads the human monitor until its `(qemu) ` prompt; what came before it.
fn monitor_reply(s: &mut std::os::unix::net::UnixStream) -> Result<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.ends_with(b"(qemu) ") {
        let n = s.read(&mut buf).context("reading QEMU's monitor")?;
        ensure!(
            n > 0,
            "QEMU's monitor closed: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

impl Vm {
    /// Plugs the `i`-th of [`Extras::usb_hotplug`] into the xHCI controller, as a person
    /// plugs a USB disk into a running machine.
    pub fn plug_usb(&mut self, i: usize) -> Result<()> {
        ensure!(
            i < self.cfg.extras.usb_hotplug.len(),
            "no hot-plug USB disk {i}"
        );
        let path = monitor_path(&self.cfg.name);
        let mut s = std::os::unix::net::UnixStream::connect(&path)
            .with_context(|| format!("connecting to QEMU's monitor {}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        monitor_reply(&mut s)?;
        let device = usb_storage(&hotplug_drive(i));
        s.write_all(format!("device_add {device},id=hotdev{i}\n").as_bytes())?;
        let reply = monitor_reply(&mut s)?;
        // The monitor echoes the command; anything it says besides is an error.
        ensure!(
            !reply.to_ascii_lowercase().contains("error"),
            "device_add of the USB disk: {reply}"
        );
        Ok(())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts QEMU for `cfg` under `accel` with its console read into a [`Shared`] buffer (and
/// the log file, and the terminal) by a thread, and QEMU's stderr by another.
fn spawn(cfg: &VmConfig, nic: &Nic, accel: Accel) -> Result<(Child, Arc<Shared>, PathBuf)> {
    let arch = cfg.arch;
    let mut cmd = match &nic.netns {
        Some(ns) => {
            // `ip netns exec` execs QEMU: the child's pid is QEMU's.
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, arch.qemu_system()]);
            c
        }
        None => Command::new(arch.qemu_system()),
    };
    let pi = matches!(cfg.boot, Boot::Raspi3b { .. });
    if pi {
        // The board fixes its CPUs and memory; its first UART is the Bluetooth chip's.
        ensure!(arch == Arch::Arm64, "-M raspi3b is an arm64 board");
        ensure!(
            cfg.disks.is_empty(),
            "-M raspi3b has no virtio: its one disk is the SD card"
        );
        cmd.args(["-accel", accel.as_str(), "-machine", "raspi3b", "-m", "1G"]);
        // The console read is the mini UART (the second serial port), as on a Pi's GPIO
        // pins: U-Boot, GRUB and, with the Pi image's consoles, the kernel and the login.
        // The PL011 (the Bluetooth chip's UART on a Pi) goes to a file.
        std::fs::create_dir_all(log_dir())?;
        cmd.arg("-serial").arg(format!(
            "file:{}",
            log_dir().join(format!("{}-uart0.log", cfg.name)).display()
        ));
        cmd.args(["-serial", "stdio"]);
    } else {
        let cpu = match accel {
            Accel::Tcg => arch.tcg_cpu(),
            Accel::Kvm => accel.cpu(),
        };
        cmd.args(["-accel", accel.as_str(), "-cpu", cpu]);
        cmd.args([
            "-machine",
            arch.machine(),
            "-smp",
            "2",
            "-m",
            &cfg.memory_mb.to_string(),
        ]);
        cmd.args(["-serial", "stdio"]);
    }
    cmd.args(["-display", "none", "-monitor"]);
    if cfg.extras.usb_hotplug.is_empty() {
        cmd.arg("none");
    } else {
        // The human monitor on a socket, for device_add ([`Vm::plug_usb`]).
        let mon = monitor_path(&cfg.name);
        std::fs::create_dir_all(log_dir())?;
        let _ = std::fs::remove_file(&mon);
        cmd.arg(format!("unix:{},server=on,wait=off", mon.display()));
    }
    // A hardware watchdog, as on real servers: systemd arms it (RuntimeWatchdogSec in the
    // image), so a node that hangs after rkos-init is reset (QEMU's default action) and GRUB
    // counts the try.
    if arch == Arch::Amd64 {
        cmd.args(["-device", "i6300esb"]);
    }
    if !pi {
        cmd.args(nic.args(&cfg.extras));
    }
    match &cfg.boot {
        Boot::Iso(iso) => {
            ensure!(
                arch == Arch::Amd64,
                "{arch} boots through UEFI only: use Boot::IsoUefi"
            );
            // CD first: SeaBIOS would otherwise try a seed disk's FAT boot sector first
            // and stop there ("not a bootable disk", on VGA only)
            cdrom(&mut cmd, arch, iso);
            cmd.args(["-boot", "order=d,menu=off"]);
        }
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
            medium,
        } => {
            cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd);
            cmd.arg("-append").arg(cmdline);
            if let Some(iso) = medium {
                cdrom(&mut cmd, arch, iso);
            }
        }
        Boot::IsoUefi { iso, uefi_vars } => {
            uefi(&mut cmd, arch, uefi_vars);
            cdrom(&mut cmd, arch, iso);
        }
        Boot::Disk { uefi_vars } => {
            match uefi_vars {
                Some(vars) => uefi(&mut cmd, arch, vars),
                None => ensure!(
                    arch == Arch::Amd64,
                    "{arch} boots through UEFI only: give Boot::Disk its uefi_vars"
                ),
            }
            cmd.args(["-boot", "order=c,menu=off"]);
        }
        Boot::UBoot { bios } => {
            ensure!(
                arch == Arch::Arm64,
                "U-Boot boots the arm64 virt board here: {arch} has UEFI firmware"
            );
            cmd.arg("-bios").arg(bios);
        }
        Boot::Raspi3b { uboot, dtb, card } => {
            cmd.arg("-kernel").arg(uboot).arg("-dtb").arg(dtb);
            cmd.arg("-drive")
                .arg(format!("if=sd,format=raw,file={}", card.display()));
        }
        Boot::Pxe => {
            // SeaBIOS's console on the serial line too (its `etc/sercon-port`, the port as a
            // little-endian integer), so iPXE's messages reach the log.
            let port = log_dir().join("sercon-port.bin");
            std::fs::create_dir_all(log_dir())?;
            std::fs::write(&port, 0x3f8u16.to_le_bytes())?;
            cmd.arg("-fw_cfg")
                .arg(format!("name=etc/sercon-port,file={}", port.display()));
        }
    }
    for (i, d) in cfg.disks.iter().enumerate() {
        // a copy-on-write overlay (`qemu-img create -b`) per run of an installed disk
        let format = if d.extension().is_some_and(|e| e == "qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        if i == 0 && !(cfg.extras.ide_disks.is_empty() && cfg.extras.usb_disks.is_empty()) {
            // SeaBIOS would try the AHCI (or USB) disks first and stop at one that cannot boot
            cmd.arg("-drive").arg(format!(
                "file={},format={format},if=none,id=disk0",
                d.display()
            ));
            cmd.args(["-device", "virtio-blk-pci,drive=disk0,bootindex=0"]);
        } else {
            cmd.arg("-drive")
                .arg(format!("file={},format={format},if=virtio", d.display()));
        }
    }
    ensure!(
        arch == Arch::Amd64 || cfg.extras.cdroms.is_empty(),
        "extra CD-ROMs are attached to amd64 guests only"
    );
    for c in &cfg.extras.cdroms {
        cdrom(&mut cmd, arch, c);
    }
    ensure!(
        arch == Arch::Amd64 || cfg.extras.ide_disks.is_empty(),
        "extra IDE disks are attached to amd64 guests only"
    );
    for d in &cfg.extras.ide_disks {
        cmd.arg("-drive")
            .arg(format!("file={},format=raw,if=ide", d.display()));
    }
    if !(cfg.extras.usb_disks.is_empty() && cfg.extras.usb_hotplug.is_empty()) {
        cmd.args(["-device", "qemu-xhci,id=xhci"]);
    }
    for (i, d) in cfg.extras.usb_hotplug.iter().enumerate() {
        cmd.arg("-drive").arg(format!(
            "file={},format=raw,if=none,id={}",
            d.display(),
            hotplug_drive(i)
        ));
    }
    for (i, d) in cfg.extras.usb_disks.iter().enumerate() {
        cmd.arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=usb{i}", d.display()));
        cmd.arg("-device").arg(usb_storage(&format!("usb{i}")));
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} (is QEMU installed?)", arch.qemu_system()))?;
    let stdin = child.stdin.take().context("qemu stdin")?;
    let mut stdout = child.stdout.take().context("qemu stdout")?;
    let mut stderr = child.stderr.take().context("qemu stderr")?;

    let dir = log_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join(format!("{}.log", cfg.name));
    let mut log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let shared = Arc::new(Shared {
        text: Mutex::new(Console {
            text: String::new(),
            ended: false,
            last_output: Instant::now(),
            qemu_errors: String::new(),
        }),
        changed: Condvar::new(),
        screen: Mutex::new(Screen::default()),
        stdin: Mutex::new(stdin),
    });
    let reader = Arc::clone(&shared);
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        // bytes of a UTF-8 sequence split across reads wait for the rest
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let _ = log.write_all(&buf[..n]);
            let reply = reader
                .screen
                .lock()
                .expect("screen lock")
                .process(&buf[..n]);
            if !reply.is_empty() {
                let mut stdin = reader.stdin.lock().expect("stdin lock");
                let _ = stdin.write_all(&reply).and_then(|()| stdin.flush());
            }
            pending.extend_from_slice(&buf[..n]);
            let valid = match std::str::from_utf8(&pending) {
                Ok(s) => s.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => pending.len(),
            };
            let chunk = String::from_utf8_lossy(&pending[..valid]).into_owned();
            pending.drain(..valid);
            let mut g = reader.text.lock().expect("console lock");
            g.text.push_str(&console::clean(&chunk));
            g.last_output = Instant::now();
            reader.changed.notify_all();
        }
        let mut g = reader.text.lock().expect("console lock");
        g.ended = true;
        reader.changed.notify_all();
    });
    let errors = Arc::clone(&shared);
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = std::io::stderr().write_all(&buf[..n]);
            let mut g = errors.text.lock().expect("console lock");
            g.qemu_errors.push_str(&String::from_utf8_lossy(&buf[..n]));
            errors.changed.notify_all();
        }
    });
    Ok((child, shared, log_path))
}

fn uefi(cmd: &mut Command, arch: Arch, vars: &Path) {
    let (code, _) = arch.uefi_firmware();
    cmd.arg("-drive")
        .arg(format!("if=pflash,format=raw,readonly=on,file={code}"));
    cmd.arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()));
}

/// The ISO as a CD-ROM: on the PC's IDE controller, or on virtio-scsi on the Arm `virt`
/// board, which has no IDE.
fn cdrom(cmd: &mut Command, arch: Arch, iso: &Path) {
    match arch {
        Arch::Amd64 => {
            cmd.arg("-drive").arg(format!(
                "file={},media=cdrom,if=ide,readonly=on",
                iso.display()
            ));
        }
        Arch::Arm64 => {
            cmd.args(["-device", "virtio-scsi-pci,id=scsi0"]);
            cmd.arg("-drive").arg(format!(
                "file={},media=cdrom,if=none,id=cd0,readonly=on",
                iso.display()
            ));
            cmd.args(["-device", "scsi-cd,drive=cd0,bus=scsi0.0"]);
        }
    }
}

/// Extracts `/boot/vmlinuz` and `/boot/initrd` from an rkos ISO into `dir` (xorriso), for
/// boots that need their own kernel command line.
pub fn extract_kernel(iso: &Path, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    Ok(rkos_vm::iso::extract_kernel(iso, dir)?)
}
