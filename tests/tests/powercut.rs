//! Power cuts at random instants of an upgrade, on an installed node in QEMU (issue 16): the
//! stand-in ISO installed once as slot A, version 1 (as in `upgrade_node`); each trial boots a
//! copy-on-write overlay of that disk, starts `rkos upgrade --reboot` to version 2 from the
//! host's loopback bundle server, and SIGKILLs QEMU a seeded random delay later, anywhere
//! from the start of staging to the login prompt of the first boot of the new slot (downloads,
//! fsyncs, the slot write, the grubenv flip, the reboot, GRUB, the trial boot). It then boots
//! the overlay again and asserts that a complete version came up (slot A with version 1, or
//! slot B with version 2) and that `rkos status` tells the truth about it.
//!
//! A first run with no cut measures the window (and proves the upgrade goes through); the
//! kill instants are uniform over it. `RKOS_POWERCUT_N` trials (default 2), seed
//! `RKOS_POWERCUT_SEED` (default: the clock; printed either way, so a run can be repeated).
//! The table of trials goes to stderr and to `target/boot-logs/powercut.md`.
//!
//! A SIGKILL of QEMU loses what the guest had not yet handed to its virtual disk, and the
//! qcow2 overlay's own unflushed metadata: the loss of a power cut. (The host's page cache
//! survives it, so it does not play a disk that drops writes it acknowledged before a flush.)
//!
//! Needs what `upgrade_node` needs (root, xorriso, QEMU, RKOS_ISO trusting work/keys/rkos.pub)
//! and qemu-img. Built with the `qemu` feature; `make test-powercut N=20 SEED=…` runs it.

use anyhow::{bail, ensure, Context, Result};
use rkos_slots::{NodeStatus, Outcome, Slot};
use rkos_tests::httpd::Httpd;
use rkos_tests::node::{booted, login, prepare, start, BOOT, CMD, STAGE, V1};
use rkos_tests::qemu::{log_dir, Vm};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PASSWORD: &str = "powercut-test-pw";
const V2: &str = "0.2.0";

/// What the console showed, in the order an upgrade shows it: the phase of a kill is the last
/// of these seen before it.
const PHASES: &[(&str, &str)] = &[
    (r"file=vmlinuz", "download vmlinuz"),
    (r"file=initrd", "download initrd"),
    (r"file=rootfs.squashfs", "download rootfs"),
    (r"staged version", "slot written, flip"),
    (r"rebooting", "reboot"),
    (r"reboot: Restarting|SeaBIOS|GRUB", "firmware, GRUB"),
    (r"Linux version|Run /init", "trial boot: kernel"),
    (r"rkos-init: rkos 0\.2\.0 started", "trial boot: rkos-init"),
    (
        r"systemd\[1\]|Welcome to|Reached target",
        "trial boot: systemd",
    ),
    (r"login: ", "trial boot: login prompt"),
];

/// The phase the console `text` (since the upgrade started) showed last.
fn phase(text: &str) -> String {
    let mut last = ("started", 0usize);
    for (pattern, name) in PHASES {
        let re = regex::Regex::new(pattern).expect("phase pattern");
        if let Some(m) = re.find_iter(text).last() {
            if m.start() >= last.1 {
                last = (name, m.start());
            }
        }
    }
    let what = last.0.to_string();
    // the percentage of a download, when it printed one
    let tail = &text[last.1..];
    match regex::Regex::new(r"percent=(\d+)")
        .expect("percent")
        .captures_iter(tail)
        .last()
    {
        Some(c) if what.starts_with("download") => format!("{what} {}%", &c[1]),
        _ => what,
    }
}

/// How a trial ended.
struct Trial {
    kill_at: f64,
    phase: String,
    /// "old" (A, version 1), "new" (B, version 2), or what came up instead.
    outcome: String,
    /// `rkos status` agreed with what booted; the disagreement otherwise.
    truthful: Result<()>,
    wall: Duration,
    log: String,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// A copy-on-write overlay of the installed disk for one run.
fn overlay(base: &Path, dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let o = dir.join(format!("{name}.qcow2"));
    rkos_tests::host::qcow2_overlay(base, "raw", &o, None)?;
    Ok(o)
}

/// Boots `disk`, logs in and starts the upgrade to version 2 (its output on the console, as
/// log lines); returns the VM, when the command was typed, and where the console was then.
fn boot_and_upgrade(disk: &Path, name: &str, url: &str) -> Result<(Vm, Instant, usize)> {
    let mut vm = start(disk, name)?;
    vm.expect(&format!("rkos-init: rkos {V1} started"), BOOT)?;
    login(&mut vm, PASSWORD)?;
    let from = vm.transcript().len();
    // through a pipe: progress as a log line every 10 %, not a bar
    vm.send(&format!(
        "sudo rkos upgrade --bundle {url} --tries 1 --reboot 2>&1 | cat\n"
    ))?;
    Ok((vm, Instant::now(), from))
}

/// Checks what came up on `vm` after a cut: a complete version, and `rkos status` saying so.
/// `flipped`: the console had shown the armed trial before the cut, so it was on disk for sure. Returns the outcome ("old"/"new") and the truthfulness verdict.
fn check(vm: &mut Vm, flipped: bool) -> Result<(String, Result<()>)> {
    let (slot, version) = booted(vm)?;
    let outcome = match (slot.as_str(), version.as_str()) {
        ("A", v) if v == V1 => "old",
        ("B", v) if v == V2 => "new",
        _ => bail!("slot {slot} booted version {version}: neither the old nor the new one"),
    };
    let json = vm.run_ok("rkos status --json", CMD)?;
    let st: NodeStatus =
        serde_json::from_str(json.trim()).with_context(|| format!("rkos status --json: {json}"))?;
    let NodeStatus::Installed(st) = st else {
        return Ok((
            outcome.into(),
            Err(anyhow::anyhow!("status: not installed")),
        ));
    };
    let truth = (|| -> Result<()> {
        let active: Slot = slot.parse()?;
        ensure!(
            st.active == Some(active),
            "active {:?}, booted {slot}",
            st.active
        );
        ensure!(
            st.version_of(active) == Some(version.as_str()),
            "slot {slot} version {:?}, booted {version}",
            st.version_of(active)
        );
        if outcome == "old" {
            // a trial still armed would have booted B: none may be reported
            ensure!(st.trial.is_none(), "trial {:?} while A runs", st.trial);
            ensure!(!st.running_on_trial, "running on trial while A runs");
            ensure!(st.default == Slot::A, "default {}", st.default);
            match st.last_outcome {
                Some(Outcome::RolledBack(Slot::B)) => {}
                None if !flipped => {}
                other => bail!("last outcome {other:?} (flipped before the cut: {flipped})"),
            }
        } else {
            // on trial, or already marked good by rkos-mark-good.service
            match (st.trial, st.last_outcome) {
                (Some(t), _) => ensure!(
                    t.slot == Slot::B && st.running_on_trial,
                    "trial {t:?}, running on it: {}",
                    st.running_on_trial
                ),
                (None, Some(Outcome::Good(Slot::B))) => {
                    ensure!(st.default == Slot::B, "marked good, default {}", st.default)
                }
                (None, other) => bail!("B runs with no trial, last outcome {other:?}"),
            }
        }
        Ok(())
    })()
    .with_context(|| format!("rkos status --json:\n{json}"));
    Ok((outcome.into(), truth))
}

fn table(seed: u64, window: f64, accel: &str, trials: &[Trial]) -> String {
    let mut t = format!(
        "seed {seed}; kill instants uniform over {window:.0} s from typing `rkos upgrade --reboot` \
         (the uncut run's time to the new slot's login prompt); QEMU under {accel}\n\n\
         | trial | kill at (s) | console showed last | came up | status truthful | wall (s) |\n\
         |---:|---:|---|---|---|---:|\n"
    );
    for (i, r) in trials.iter().enumerate() {
        let truth = match &r.truthful {
            Ok(()) => "yes".to_string(),
            Err(e) => format!("**no**: {}", format!("{e:#}").lines().next().unwrap_or("")),
        };
        let _ = writeln!(
            t,
            "| {} | {:.1} | {} | {} | {} | {:.0} |",
            i + 1,
            r.kill_at,
            r.phase,
            r.outcome,
            truth,
            r.wall.as_secs_f64()
        );
    }
    t
}

#[test]
fn power_cuts_anywhere_in_an_upgrade_leave_a_complete_version_and_a_truthful_status() -> Result<()>
{
    let n = env_u64("RKOS_POWERCUT_N").unwrap_or(2);
    let seed = env_u64("RKOS_POWERCUT_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    eprintln!("power cuts: {n} trials, seed {seed} (RKOS_POWERCUT_SEED={seed} repeats them)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let began = Instant::now();
    let node = prepare("powercut-node", PASSWORD, V2)?;
    let (dir, disk) = (node.tmp.path(), &node.disk);
    let httpd = Httpd::serve(&node.www)?;
    let url = format!("http://10.0.2.2:{}/v2", httpd.port());
    eprintln!("prepared in {:?}", began.elapsed());

    // --- no cut: the window, from typing the command to the new slot's login prompt ----------
    let t0 = Instant::now();
    let (mut vm, typed, _) =
        boot_and_upgrade(&overlay(disk, dir, "calibrate")?, "powercut-0", &url)?;
    vm.expect(&format!("rkos-init: rkos {V2} started"), STAGE + BOOT)
        .context("the upgrade without a cut did not boot version 2")?;
    vm.expect("login: ", BOOT)?;
    let window = typed.elapsed().as_secs_f64();
    let accel = vm.accel().to_string();
    drop(vm);
    eprintln!(
        "no cut: version 2's login prompt {window:.0} s after `rkos upgrade` was typed; run {:.0} s",
        t0.elapsed().as_secs_f64()
    );

    // --- the cuts -----------------------------------------------------------------------------
    let mut trials = Vec::new();
    for i in 1..=n {
        let t0 = Instant::now();
        let kill_at = rng.f64() * window;
        let name = format!("powercut-{i}");
        let ov = overlay(disk, dir, &name)?;
        let (vm, typed, from) = boot_and_upgrade(&ov, &name, &url)?;
        std::thread::sleep(Duration::from_secs_f64(kill_at).saturating_sub(typed.elapsed()));
        let text = vm.transcript();
        drop(vm); // SIGKILL
        let shown = &text[from..];
        let phase = phase(shown);
        // `rkos upgrade` prints its report once the flip is on disk
        let flipped = shown.contains("next boot: slot B on trial");
        let log = format!("{name}-after");
        let mut vm = start(&ov, &log)?;
        let log = vm.log_path.display().to_string();
        let (outcome, truthful) =
            match login(&mut vm, PASSWORD).and_then(|()| check(&mut vm, flipped)) {
                Ok(r) => r,
                Err(e) => ("**neither**".into(), Err(e)),
            };
        drop(vm);
        let r = Trial {
            kill_at,
            phase,
            outcome,
            truthful,
            wall: t0.elapsed(),
            log,
        };
        eprintln!(
            "trial {i}/{n}: killed {kill_at:.1} s after the upgrade started ({}); came up {}; \
             status truthful: {:?}; {:.0} s; console {}",
            r.phase,
            r.outcome,
            r.truthful.as_ref().map_err(|e| format!("{e:#}")),
            r.wall.as_secs_f64(),
            r.log
        );
        let _ = std::fs::remove_file(&ov);
        trials.push(r);
        // after each trial: a long run stopped early still leaves its table
        std::fs::write(
            log_dir().join("powercut.md"),
            table(seed, window, &accel, &trials),
        )?;
    }
    eprintln!("\n{}", table(seed, window, &accel, &trials));
    let bad: Vec<String> = trials
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.truthful
                .as_ref()
                .err()
                .map(|e| format!("trial {}: {e:#} (console {})", i + 1, r.log))
        })
        .collect();
    ensure!(
        bad.is_empty(),
        "{} of {n} trials failed:\n{}",
        bad.len(),
        bad.join("\n")
    );
    eprintln!("whole test: {:?}", began.elapsed());
    Ok(())
}
