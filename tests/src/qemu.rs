//! A QEMU virtual machine driven through its serial console: QEMU's `-serial stdio` is a pair
//! of pipes, read by a thread into a buffer (and a log file under `target/boot-logs/`) and
//! written by [`Vm::send`]. The VM is killed when the [`Vm`] is dropped.

use crate::console;
use anyhow::{anyhow, bail, Context, Result};
use rkos_vm::Accel;
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
    /// OVMF (UEFI) -> GRUB's EFI image on the ISO; `uefi_vars` as for [`Boot::Disk`].
    IsoUefi { iso: PathBuf, uefi_vars: PathBuf },
    /// Firmware -> the first disk in [`VmConfig::disks`] (an installed node), with SeaBIOS, or
    /// with OVMF when `uefi_vars` names a writable copy of its variable store
    /// ([`ovmf_vars`]). No CD-ROM is attached.
    Disk { uefi_vars: Option<PathBuf> },
}

/// OVMF's firmware code, read-only (Debian package `ovmf`).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";

/// A fresh copy of OVMF's variable store in `dir`, for [`Boot::Disk`] under UEFI: the
/// firmware writes its boot entries there, so each VM needs its own.
pub fn ovmf_vars(dir: &Path) -> Result<PathBuf> {
    let vars = dir.join("OVMF_VARS.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)
        .context("copying OVMF's variable store (package ovmf)")?;
    Ok(vars)
}

/// What to start.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Names the console log: `target/boot-logs/<name>.log`.
    pub name: String,
    pub boot: Boot,
    /// Disk images attached as virtio disks (seed volumes, blank disks): raw, or qcow2 when
    /// the name ends in `.qcow2`.
    pub disks: Vec<PathBuf>,
    pub memory_mb: u32,
}

/// The accelerator for this test process: [`rkos_vm::accel::verdict`] (`RKOS_ACCEL`, or a
/// real kernel booted under KVM), probed once with the kernel `probe_kernel` finds for `cfg`.
pub fn accelerator_for(cfg: &VmConfig) -> Accel {
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

/// A running VM.
pub struct Vm {
    name: String,
    cfg: VmConfig,
    accel: Accel,
    /// Something was typed on the console: a boot can no longer be retried from scratch.
    typed: bool,
    /// Already retried under TCG once.
    retried: bool,
    child: Child,
    stdin: ChildStdin,
    shared: Arc<Shared>,
    /// Byte offset in the cleaned text up to which expectations have consumed it.
    cursor: usize,
    pub log_path: PathBuf,
    pub started: Instant,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Vm {
    pub fn start(cfg: &VmConfig) -> Result<Vm> {
        Self::start_under(cfg, accelerator_for(cfg))
    }

    /// [`Vm::start`] under a given accelerator, whatever this process's verdict (the
    /// harness's own tests of the KVM fallback).
    pub fn start_under(cfg: &VmConfig, accel: Accel) -> Result<Vm> {
        let (child, stdin, shared, log_path) = spawn(cfg, accel)?;
        Ok(Vm {
            name: cfg.name.clone(),
            cfg: cfg.clone(),
            accel,
            typed: false,
            retried: false,
            child,
            stdin,
            shared,
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
        let kernel_ran = c.text.contains("Run /") || c.text.contains("rkos-init");
        if kernel_ran {
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

    /// Starts this VM again from scratch under TCG, keeping the KVM try's console log
    /// beside the new one, and tells the test output and the rest of the process.
    fn retry_under_tcg(&mut self, reason: &str) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let kvm_log = self.log_path.with_extension("kvm.log");
        let _ = std::fs::rename(&self.log_path, &kvm_log);
        rkos_vm::accel::say(&format!(
            "{}: the boot failed under KVM ({reason}); retrying once under TCG (console of the \
             KVM try: {})",
            self.name,
            kvm_log.display()
        ));
        rkos_vm::accel::demote(&format!("a boot failed under KVM ({reason})"));
        let (child, stdin, shared, log_path) = spawn(&self.cfg, Accel::Tcg)?;
        self.accel = Accel::Tcg;
        self.retried = true;
        self.child = child;
        self.stdin = stdin;
        self.shared = shared;
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
        self.stdin
            .write_all(text.as_bytes())
            .context("writing to the serial console")?;
        self.stdin.flush().context("writing to the serial console")
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

    /// Runs `cmd` and fails unless it exits 0; returns its output.
    pub fn run_ok(&mut self, cmd: &str, timeout: Duration) -> Result<String> {
        let (status, out) = self.run(cmd, timeout)?;
        if status != 0 {
            bail!("{}: `{cmd}` exited {status}:\n{out}", self.name);
        }
        Ok(out)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts QEMU for `cfg` under `accel` with its console read into a [`Shared`] buffer (and
/// the log file) by a thread, and QEMU's stderr by another.
fn spawn(cfg: &VmConfig, accel: Accel) -> Result<(Child, ChildStdin, Arc<Shared>, PathBuf)> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", accel.as_str(), "-cpu", accel.cpu()]);
    cmd.args([
        "-machine",
        "q35",
        "-smp",
        "2",
        "-m",
        &cfg.memory_mb.to_string(),
    ]);
    cmd.args(["-display", "none", "-monitor", "none", "-serial", "stdio"]);
    // No option ROM: iPXE would spend seconds of emulated time announcing itself.
    cmd.args([
        "-netdev",
        "user,id=net0",
        "-device",
        "virtio-net-pci,netdev=net0,romfile=",
    ]);
    match &cfg.boot {
        Boot::Iso(iso) => {
            // CD first: SeaBIOS would otherwise try a seed disk's FAT boot sector first
            // and stop there ("not a bootable disk", on VGA only)
            cmd.arg("-drive")
                .arg(cdrom(iso))
                .args(["-boot", "order=d,menu=off"]);
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
                cmd.arg("-drive").arg(cdrom(iso));
            }
        }
        Boot::IsoUefi { iso, uefi_vars } => {
            ovmf(&mut cmd, uefi_vars);
            cmd.arg("-drive").arg(cdrom(iso));
        }
        Boot::Disk { uefi_vars } => {
            if let Some(vars) = uefi_vars {
                ovmf(&mut cmd, vars);
            }
            cmd.args(["-boot", "order=c,menu=off"]);
        }
    }
    for d in &cfg.disks {
        // a copy-on-write overlay (`qemu-img create -b`) per run of an installed disk
        let format = if d.extension().is_some_and(|e| e == "qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        cmd.arg("-drive")
            .arg(format!("file={},format={format},if=virtio", d.display()));
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .context("starting qemu-system-x86_64 (is QEMU installed?)")?;
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
    Ok((child, stdin, shared, log_path))
}

fn ovmf(cmd: &mut Command, vars: &Path) {
    cmd.arg("-drive")
        .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
    cmd.arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()));
}

fn cdrom(iso: &Path) -> String {
    format!("file={},media=cdrom,if=ide,readonly=on", iso.display())
}

/// Extracts `/boot/vmlinuz` and `/boot/initrd` from an rkos ISO into `dir` (xorriso), for
/// boots that need their own kernel command line.
pub fn extract_kernel(iso: &Path, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    Ok(rkos_vm::iso::extract_kernel(iso, dir)?)
}
