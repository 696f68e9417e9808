//! A QEMU virtual machine driven through its serial console: QEMU's `-serial stdio` is a pair
//! of pipes, read by a thread into a buffer (and a log file under `target/boot-logs/`) and
//! written by [`Vm::send`]. The VM is killed when the [`Vm`] is dropped.

use crate::console;
use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
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
    /// Raw disk images attached as virtio disks (seed volumes, blank disks).
    pub disks: Vec<PathBuf>,
    pub memory_mb: u32,
}

/// The accelerator to use: KVM when a vCPU really runs (a device node alone is not enough:
/// it can exist and fail), else TCG. Probed once per test process.
pub fn accelerator() -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| {
        if std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
        {
            return "tcg";
        }
        // A working KVM guest sits in the firmware looking for a boot device until killed;
        // a broken one aborts at once.
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                "kvm",
                "-cpu",
                "host",
                "-machine",
                "q35",
                "-nodefaults",
            ])
            .args([
                "-display", "none", "-m", "64", "-monitor", "none", "-serial", "none",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else { return "tcg" };
        thread::sleep(Duration::from_secs(3));
        match child.try_wait() {
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                "kvm"
            }
            _ => "tcg",
        }
    })
}

/// The directory of console logs: `<workspace>/target/boot-logs` (or under CARGO_TARGET_DIR).
pub fn log_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("boot-logs")
}

struct Shared {
    text: Mutex<(String, bool)>, // console text so far, and whether QEMU's output ended
    changed: Condvar,
}

/// A running VM.
pub struct Vm {
    name: String,
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
        let accel = accelerator();
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            accel,
            "-cpu",
            if accel == "kvm" { "host" } else { "max" },
        ]);
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
            cmd.arg("-drive")
                .arg(format!("file={},format=raw,if=virtio", d.display()));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .context("starting qemu-system-x86_64 (is QEMU installed?)")?;
        let stdin = child.stdin.take().context("qemu stdin")?;
        let mut stdout = child.stdout.take().context("qemu stdout")?;

        let dir = log_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log_path = dir.join(format!("{}.log", cfg.name));
        let mut log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let shared = Arc::new(Shared {
            text: Mutex::new((String::new(), false)),
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
                g.0.push_str(&console::clean(&chunk));
                reader.changed.notify_all();
            }
            let mut g = reader.text.lock().expect("console lock");
            g.1 = true;
            reader.changed.notify_all();
        });
        Ok(Vm {
            name: cfg.name.clone(),
            child,
            stdin,
            shared,
            cursor: 0,
            log_path,
            started: Instant::now(),
        })
    }

    /// Waits until the console, past what earlier expectations consumed, matches `pattern`
    /// (a regex); returns the text up to and including the match and consumes it.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let re = regex::Regex::new(pattern).with_context(|| format!("bad pattern {pattern}"))?;
        let deadline = Instant::now() + timeout;
        let mut g = self.shared.text.lock().expect("console lock");
        loop {
            if let Some(m) = re.find(&g.0[self.cursor..]) {
                let end = self.cursor + m.end();
                let got = g.0[self.cursor..end].to_string();
                self.cursor = end;
                return Ok(got);
            }
            let now = Instant::now();
            if g.1 || now >= deadline {
                let tail_from = g.0.len().saturating_sub(3000);
                let tail_from = (tail_from..g.0.len())
                    .find(|i| g.0.is_char_boundary(*i))
                    .unwrap_or(0);
                bail!(
                    "{}: {} waiting for /{}/ after {:?}; console log {}; last output:\n{}",
                    self.name,
                    if g.1 { "QEMU exited" } else { "timed out" },
                    pattern,
                    self.started.elapsed(),
                    self.log_path.display(),
                    &g.0[tail_from..]
                );
            }
            g = self
                .shared
                .changed
                .wait_timeout(g, deadline - now)
                .expect("console lock")
                .0;
        }
    }

    /// The whole cleaned console text so far.
    pub fn transcript(&self) -> String {
        self.shared.text.lock().expect("console lock").0.clone()
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) -> Result<()> {
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
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd");
    let status = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .arg("-extract")
        .arg("/boot/vmlinuz")
        .arg(&kernel)
        .arg("-extract")
        .arg("/boot/initrd")
        .arg(&initrd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running xorriso")?;
    if !status.success() || !kernel.is_file() || !initrd.is_file() {
        bail!(
            "could not extract /boot/vmlinuz and /boot/initrd from {}",
            iso.display()
        );
    }
    Ok((kernel, initrd))
}
