//! Which QEMU accelerator to use: KVM only when a real kernel boots under it.
//!
//! `/dev/kvm` can open and still fail to run a guest: on some hosts QEMU aborts at once
//! (an MSR it cannot set), on others (nested virtualisation) firmware runs but the kernel
//! dies or stops printing right after the real-mode stub ("Probing EDD"). So a firmware-only
//! guest proves nothing. The probe boots the image's own kernel under KVM with no initramfs
//! and no root: a kernel that really runs reaches the end of its initialisation and says so
//! on the serial console (it panics looking for a root file system, which with `panic=-1`
//! and `-no-reboot` ends QEMU at once). Anything else within [`PROBE_TIMEOUT`] means TCG.
//!
//! The verdict is taken once per process ([`verdict`]) and printed once on stderr, so every
//! QEMU user (make run, the tests, the boot report, the lab) agrees and says why.
//! `RKOS_ACCEL=kvm|tcg` forces the choice.
//!
//! A guest of another architecture than the host's (arm64 on an x86_64 machine) never runs
//! under KVM: [`verdict_for_arch`] says TCG without a probe, also once per process.

use crate::Arch;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a kernel under KVM may take to reach the end of its initialisation. A working
/// KVM gets there in one or two seconds; only a host where KVM stalls waits this long.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Lines only a kernel that ran through its initialisation prints (the first is the usual
/// outcome of the probe: no initramfs, no root).
const KERNEL_RAN: &[&str] = &[
    "Kernel panic - not syncing",
    "Run /",
    "Freeing unused kernel",
];

/// QEMU's own report of a vCPU that KVM could not run.
const KVM_INTERNAL_ERROR: &str = "KVM internal error";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The value of QEMU's `-accel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The `-cpu` model that goes with it: the host's CPU under KVM, every emulated feature
    /// under TCG.
    pub fn cpu(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accelerator and, for TCG or a forced choice, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub accel: Accel,
    pub reason: Option<String>,
    /// Chosen by `RKOS_ACCEL`, not by the probe.
    pub forced: bool,
}

impl Verdict {
    fn tcg(reason: impl Into<String>) -> Verdict {
        Verdict {
            accel: Accel::Tcg,
            reason: Some(reason.into()),
            forced: false,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "accelerator: {}", self.accel)?;
        match (&self.reason, self.accel) {
            (Some(r), Accel::Tcg) => write!(f, ", because {r}"),
            (Some(r), Accel::Kvm) => write!(f, " ({r})"),
            (None, _) => Ok(()),
        }
    }
}

/// What a probe run left behind: everything QEMU wrote (serial console and its own
/// stderr), and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRun {
    pub output: String,
    pub end: ProbeEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEnd {
    /// QEMU exited by itself, with this status (`None`: killed by a signal).
    Exited(Option<i32>),
    /// Still running when the probe's time was up.
    TimedOut(Duration),
}

/// The decision on a recorded probe run (pure, so it is tested on recorded consoles).
pub fn decide(run: &ProbeRun) -> Verdict {
    // a vCPU that died is not a working KVM, whatever the kernel printed before
    if let Some(line) = run.output.lines().find(|l| l.contains(KVM_INTERNAL_ERROR)) {
        return Verdict::tcg(format!("QEMU reported \"{}\"", line.trim()));
    }
    if run
        .output
        .lines()
        .any(|l| KERNEL_RAN.iter().any(|m| l.contains(m)))
    {
        return Verdict {
            accel: Accel::Kvm,
            reason: None,
            forced: false,
        };
    }
    let last = last_line(&run.output);
    match &run.end {
        ProbeEnd::Exited(status) => {
            let status = status.map_or_else(|| "a signal".to_string(), |s| format!("status {s}"));
            Verdict::tcg(match last {
                Some(l) => format!("QEMU under KVM ended ({status}) before a kernel ran: \"{l}\""),
                None => format!("QEMU under KVM ended ({status}) before a kernel ran"),
            })
        }
        ProbeEnd::TimedOut(after) => Verdict::tcg(match last {
            Some(l) => format!(
                "a kernel under KVM stopped after \"{l}\" and printed nothing more in {} s",
                after.as_secs()
            ),
            None => format!(
                "a kernel under KVM printed nothing in {} s",
                after.as_secs()
            ),
        }),
    }
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

/// Boots `kernel` under KVM as described in the module docs and decides. The caller checks
/// `/dev/kvm` first ([`verdict_for`] does).
pub fn probe(kernel: &Path, timeout: Duration) -> Verdict {
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-m", "256",
        ])
        .args(["-nodefaults", "-display", "none", "-monitor", "none"])
        .args(["-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 loglevel=7"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Verdict::tcg(format!("qemu-system-x86_64 could not start: {e}")),
    };
    // Both streams into one text: the console on stdout, QEMU's own complaints on stderr.
    let text = std::sync::Arc::new(Mutex::new(String::new()));
    let mut readers = Vec::new();
    let streams: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("piped stdout")),
        Box::new(child.stderr.take().expect("piped stderr")),
    ];
    for mut stream in streams {
        let text = std::sync::Arc::clone(&text);
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
                text.lock().expect("probe text").push_str(&chunk);
            }
        }));
    }
    let start = Instant::now();
    let end = loop {
        match child.try_wait() {
            Ok(Some(status)) => break ProbeEnd::Exited(status.code()),
            Ok(None) => {}
            Err(_) => break ProbeEnd::Exited(None),
        }
        let seen = text.lock().expect("probe text").clone();
        if KERNEL_RAN.iter().any(|m| seen.contains(m)) || seen.contains(KVM_INTERNAL_ERROR) {
            // the answer is in: no need to wait for the reboot
            let _ = child.kill();
            let _ = child.wait();
            break ProbeEnd::Exited(None);
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break ProbeEnd::TimedOut(timeout);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for r in readers {
        let _ = r.join();
    }
    let output = text.lock().expect("probe text").clone();
    decide(&ProbeRun { output, end })
}

/// `RKOS_ACCEL`, if set: `Some(Ok)` for kvm/tcg, `Some(Err)` for anything else.
pub fn forced() -> Option<Result<Accel, String>> {
    let v = std::env::var("RKOS_ACCEL").ok()?;
    Some(match v.trim() {
        "kvm" => Ok(Accel::Kvm),
        "tcg" => Ok(Accel::Tcg),
        other => Err(format!("RKOS_ACCEL={other}: expected kvm or tcg")),
    })
}

/// The verdict without the per-process cache: `RKOS_ACCEL`, else `/dev/kvm`, else the
/// probe of `kernel` (`None`: no kernel to probe with, so TCG).
pub fn verdict_for(kernel: Option<&Path>) -> Verdict {
    match forced() {
        Some(Ok(accel)) => {
            return Verdict {
                accel,
                reason: Some("forced by RKOS_ACCEL".into()),
                forced: true,
            }
        }
        Some(Err(e)) => return Verdict::tcg(e),
        None => {}
    }
    if std::env::consts::ARCH != "x86_64" {
        return Verdict::tcg(format!(
            "the probe runs x86_64 guests and this host is {}",
            std::env::consts::ARCH
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Verdict::tcg(format!("/dev/kvm cannot be opened ({e})"));
    }
    match kernel {
        Some(k) if k.is_file() => probe(k, PROBE_TIMEOUT),
        Some(k) => Verdict::tcg(format!("no kernel at {} to probe KVM with", k.display())),
        None => Verdict::tcg("no kernel was given to probe KVM with"),
    }
}

/// The verdict for a guest of another architecture than `host`, given what `RKOS_ACCEL`
/// asked for ([`forced`]): always TCG, since KVM runs guests of the host's own architecture
/// only; a forced kvm is named as ignored.
pub fn foreign_verdict(guest: Arch, host: &str, forced: Option<Result<Accel, String>>) -> Verdict {
    let why = format!(
        "an {} guest cannot run under KVM on this {host} host (software emulation)",
        guest.uname()
    );
    match forced {
        Some(Ok(Accel::Kvm)) => Verdict::tcg(format!("{why}; RKOS_ACCEL=kvm ignored")),
        _ => Verdict::tcg(why),
    }
}

static VERDICT: OnceLock<Mutex<Verdict>> = OnceLock::new();
static FOREIGN_VERDICT: OnceLock<Verdict> = OnceLock::new();

/// The verdict for a guest of architecture `guest`: [`verdict`] (probed with `kernel`) when
/// it is the host's, else [`foreign_verdict`], printed once on stderr as well.
pub fn verdict_for_arch(guest: Arch, kernel: Option<&Path>) -> Verdict {
    if Arch::host() == Some(guest) {
        return verdict(kernel);
    }
    FOREIGN_VERDICT
        .get_or_init(|| {
            let v = foreign_verdict(guest, std::env::consts::ARCH, forced());
            eprintln!("{v}");
            v
        })
        .clone()
}

/// One line on the process's real stderr. Not `eprintln!`: the test harness captures that
/// for passing tests, and the verdict must show in every test run's output.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The process's verdict: probed (with `kernel`) the first time, printed once on stderr,
/// then the same for every later caller whatever kernel it names.
pub fn verdict(kernel: Option<&Path>) -> Verdict {
    VERDICT
        .get_or_init(|| {
            let v = verdict_for(kernel);
            say(&v.to_string());
            Mutex::new(v)
        })
        .lock()
        .expect("accelerator verdict")
        .clone()
}

/// After a real boot died under KVM although the probe passed: TCG for the rest of the
/// process, said once.
pub fn demote(reason: &str) {
    let cell = VERDICT.get_or_init(|| Mutex::new(Verdict::tcg(reason)));
    let mut v = cell.lock().expect("accelerator verdict");
    if v.accel == Accel::Kvm {
        *v = Verdict::tcg(reason);
        say(&format!("{v} (from now on in this process)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of a Debian kernel's console under a KVM that works (probe: no initramfs).
    const WORKING: &str = "\
[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1\n\
[    0.000000] Command line: console=ttyS0 panic=-1 loglevel=7\n\
[    0.412345] VFS: Cannot open root device \"\" or unknown-block(0,0): error -6\n\
[    0.412400] Please append a correct \"root=\" boot option; here are the available partitions:\n\
[    0.412500] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n\
[    0.412600] Rebooting immediately..\n";

    /// What a host that fails inside the guest prints (QEMU's stderr).
    const INTERNAL_ERROR: &str = "\
KVM internal error. Suberror: 1\n\
extra data[0]: 0x0000000000000001\n\
extra data[1]: 0x0000000000000031\n\
EAX=00000000 EBX=00000000 ECX=00000000 EDX=000806f8\n";

    /// A host where QEMU aborts before the guest starts (seen on this kind of machine).
    const ABORTED: &str = "\
qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069\n\
qemu-system-x86_64: target/i386/kvm/kvm.c:3849: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";

    /// A nested host where the real-mode stub runs and the kernel proper never speaks.
    const STALL: &str = "Probing EDD (edd=off to disable)... ok\n";

    #[test]
    fn a_kernel_that_reaches_its_root_mount_means_kvm() {
        let v = decide(&ProbeRun {
            output: WORKING.into(),
            end: ProbeEnd::Exited(Some(0)),
        });
        assert_eq!(v.accel, Accel::Kvm);
        assert_eq!(v.to_string(), "accelerator: kvm");
    }

    #[test]
    fn an_internal_error_means_tcg_and_names_it() {
        for end in [ProbeEnd::Exited(Some(1)), ProbeEnd::TimedOut(PROBE_TIMEOUT)] {
            let v = decide(&ProbeRun {
                output: INTERNAL_ERROR.into(),
                end,
            });
            assert_eq!(v.accel, Accel::Tcg);
            assert_eq!(
                v.to_string(),
                "accelerator: tcg, because QEMU reported \"KVM internal error. Suberror: 1\""
            );
        }
        // even after kernel lines: a vCPU that died is not a working KVM
        let v = decide(&ProbeRun {
            output: format!("{WORKING}{INTERNAL_ERROR}"),
            end: ProbeEnd::Exited(Some(1)),
        });
        assert_eq!(v.accel, Accel::Tcg);
    }

    #[test]
    fn a_silent_stall_means_tcg_and_quotes_the_last_line() {
        let v = decide(&ProbeRun {
            output: STALL.into(),
            end: ProbeEnd::TimedOut(Duration::from_secs(20)),
        });
        assert_eq!(v.accel, Accel::Tcg);
        assert_eq!(
            v.reason.as_deref(),
            Some("a kernel under KVM stopped after \"Probing EDD (edd=off to disable)... ok\" and printed nothing more in 20 s")
        );
        let v = decide(&ProbeRun {
            output: String::new(),
            end: ProbeEnd::TimedOut(Duration::from_secs(20)),
        });
        assert_eq!(
            v.reason.as_deref(),
            Some("a kernel under KVM printed nothing in 20 s")
        );
    }

    #[test]
    fn qemu_aborting_at_once_means_tcg() {
        let v = decide(&ProbeRun {
            output: ABORTED.into(),
            end: ProbeEnd::Exited(None),
        });
        assert_eq!(v.accel, Accel::Tcg);
        let r = v.reason.unwrap();
        assert!(
            r.starts_with("QEMU under KVM ended (a signal) before a kernel ran"),
            "{r}"
        );
        assert!(r.contains("kvm_buf_set_msrs"), "{r}");
    }

    #[test]
    fn a_foreign_guest_is_emulated_and_says_why() {
        for forced in [None, Some(Ok(Accel::Tcg))] {
            let v = foreign_verdict(Arch::Arm64, "x86_64", forced);
            assert_eq!(v.accel, Accel::Tcg);
            assert!(!v.forced);
            assert_eq!(
                v.to_string(),
                "accelerator: tcg, because an aarch64 guest cannot run under KVM on this \
                 x86_64 host (software emulation)"
            );
        }
        let v = foreign_verdict(Arch::Amd64, "aarch64", Some(Ok(Accel::Kvm)));
        assert_eq!(v.accel, Accel::Tcg);
        assert_eq!(
            v.reason.as_deref(),
            Some(
                "an x86_64 guest cannot run under KVM on this aarch64 host (software \
                 emulation); RKOS_ACCEL=kvm ignored"
            )
        );
    }

    #[test]
    fn early_kernel_lines_alone_are_not_enough() {
        // the kernel started printing, then died before its initialisation ended
        let v = decide(&ProbeRun {
            output: "[    0.000000] Linux version 6.1.0-28-amd64\n".into(),
            end: ProbeEnd::TimedOut(Duration::from_secs(20)),
        });
        assert_eq!(v.accel, Accel::Tcg);
    }
}
