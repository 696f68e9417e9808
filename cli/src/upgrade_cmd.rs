//! `rkos upgrade` (stage a signed bundle into the inactive slot and put it on trial) and
//! `rkos mark-good` (end a trial once the node is healthy). The in-cluster agent runs both
//! on the host: it reads `rkos upgrade --json` as `rkos_slots::UpgradeReport`, and decides
//! health with the same rule as `mark-good` (`rkos_slots::health`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rkos_bundle::{
    BundleError, ConsoleProgress, Limits, MinRate, Source, StageOptions, TrustedKeys, UpgradeLock,
    Verified, VersionPolicy,
};
use rkos_contract::{paths, InitReport};
use rkos_slots::health::{self, HealthFacts, Seen};
use rkos_slots::{Slot, StateDir, UpgradeReport};

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The bundle: an http(s) URL of its directory, or a local directory.
    #[arg(long)]
    pub bundle: String,
    /// Reboot into the new version once it is staged.
    #[arg(long)]
    pub reboot: bool,
    /// Where RKOS_STATE is mounted (read-write).
    #[arg(long, default_value = paths::STATE_MOUNT)]
    pub state_dir: PathBuf,
    /// Boots the new version gets to be marked good before GRUB goes back by itself.
    #[arg(long, default_value_t = rkos_slots::DEFAULT_TRIES,
          value_parser = clap::value_parser!(u8).range(1..=rkos_slots::MAX_TRIES as i64))]
    pub tries: u8,
    /// A trusted minisign public key, in addition to the image's and the config's
    /// `rkos.upgrade.trusted_keys` (repeatable; for one-off use).
    #[arg(long = "trusted-key", value_name = "KEY")]
    pub trusted_keys: Vec<String>,
    /// Directory of the image's trusted public keys (`*.pub`).
    #[arg(long, default_value = paths::TRUSTED_KEYS_DIR)]
    pub keys_dir: PathBuf,
    /// Root of the running system (for /proc/cmdline and /run/rkos/init.json; tests).
    #[arg(long, default_value = "/", hide = true)]
    pub root: PathBuf,
    /// Attempts per file on network errors.
    #[arg(long, default_value_t = 6)]
    pub attempts: u32,
    /// Refuse, before writing anything, a bundle whose signed manifest is not this version
    /// (the upgrade agent passes its plan's version, so a plan pointing at the wrong bundle
    /// cannot arm a trial of another version).
    #[arg(long, value_name = "VERSION")]
    pub expect_version: Option<String>,
    /// Accept a bundle whose version is lower than the running one (semver order), or that
    /// cannot be ordered with it; refused otherwise, before anything is written. Never one
    /// below the node's minimum version (`rkos status`), which this does not lift.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Give up staging after this many seconds (all files, retries included; 0: never); the
    /// parts downloaded so far are kept, and the next run resumes them.
    #[arg(long, value_name = "SECONDS", default_value_t = rkos_bundle::pace::DEFAULT_DEADLINE.as_secs())]
    pub deadline: u64,
    /// Drop a transfer that brings less than this many bytes per second over
    /// --min-rate-window (0: no minimum); it is retried from where it stopped.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = rkos_bundle::pace::DEFAULT_MIN_RATE.bytes_per_sec)]
    pub min_rate: u64,
    /// The window --min-rate is measured over, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = rkos_bundle::pace::DEFAULT_MIN_RATE.window.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub min_rate_window: u64,
    /// Print one JSON object on stdout when done (staged, already running, or failed with
    /// the error and its causes); the human summary goes to stderr with the progress.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MarkGoodArgs {
    /// Where RKOS_STATE is mounted (read-write).
    #[arg(long, default_value = paths::STATE_MOUNT)]
    pub state_dir: PathBuf,
    /// Wait until the node is healthy first; if it is not within --timeout and the running
    /// slot is on trial, reboot so GRUB can fall back.
    #[arg(long)]
    pub wait_healthy: bool,
    /// Health deadline for --wait-healthy, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// The health endpoint polled by --wait-healthy: the kubelet's healthz, which k3s serves
    /// on servers and agents alike once the node runs.
    #[arg(long, default_value = health::KUBELET_HEALTHZ)]
    pub health_url: String,
    /// Healthy when this file exists, instead of --health-url (test images whose k3s is a
    /// stand-in set this to the stand-in's marker).
    #[arg(long)]
    pub health_file: Option<PathBuf>,
    /// The systemd unit that must be active too (empty: none).
    #[arg(long, default_value = health::K3S_UNIT)]
    pub unit: String,
    #[arg(long, default_value = "/", hide = true)]
    pub root: PathBuf,
}

/// The slot the running system was booted from: `rkos.slot=`, else what rkos-init recorded.
pub fn booted_slot(root: &Path) -> Option<Slot> {
    std::fs::read_to_string(root.join("proc/cmdline"))
        .ok()
        .and_then(|c| rkos_slots::status::booted_slot_from_cmdline(&c))
        .or_else(|| init_report(root)?.slot)
}

/// What rkos-init recorded about this boot (`ROOT/run/rkos/init.json`), if it is readable.
pub fn init_report(root: &Path) -> Option<InitReport> {
    let json = std::fs::read(paths::under(root, paths::INIT_REPORT)).ok()?;
    serde_json::from_slice(&json).ok()
}

/// `rkos.upgrade.trusted_keys` from the node's merged config (its own sources only: image
/// defaults, boot medium, cloud-init, persistent file, kernel command line — never a cluster
/// object), read as at boot (`rkos_config::NodeConfig`).
fn config_trusted_keys(root: &Path) -> Vec<String> {
    rkos_config::NodeConfig::at(root)
        .load()
        .config
        .rkos
        .upgrade
        .trusted_keys
}

pub fn run_upgrade(args: &UpgradeArgs) -> Result<()> {
    let result = stage_and_arm(args);
    if args.json {
        let report = match &result {
            Ok(r) => r.clone(),
            Err(e) => UpgradeReport::Failed {
                error: e.chain().map(ToString::to_string).collect(),
            },
        };
        println!("{}", serde_json::to_string(&report)?);
    }
    let report = result?;
    say(args.json, &report.to_string());
    if let UpgradeReport::Staged { .. } = report {
        if args.reboot {
            reboot(args.json)?;
        } else {
            say(args.json, "reboot to switch (or rerun with --reboot)\n");
        }
    }
    Ok(())
}

/// A line for the person at the console: on stdout, or on stderr (with the progress) when
/// stdout carries the JSON report.
fn say(json: bool, text: &str) {
    if json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

/// Verifies and stages the bundle and arms its trial; what was done, or why nothing was.
pub(crate) fn stage_and_arm(args: &UpgradeArgs) -> Result<UpgradeReport> {
    let state = StateDir::new(&args.state_dir);
    if !state.grubenv().exists() {
        bail!(
            "{} not found: is {} mounted at {}? (`rkos upgrade` needs an installed node)",
            state.grubenv().display(),
            rkos_contract::label::STATE,
            args.state_dir.display()
        );
    }
    let booted = booted_slot(&args.root)
        .context("cannot tell which slot is running (no rkos.slot= on the kernel command line)")?;
    // Held until the trial is armed: nothing of the boot state is read before it.
    let _lock = UpgradeLock::acquire(&paths::under(&args.root, paths::UPGRADE_LOCK))
        .context("upgrade refused; the running slot and boot configuration are unchanged")?;
    let _rw = rkos_bundle::remount::ensure_writable(&args.state_dir)?;
    let mut extra = config_trusted_keys(&args.root);
    extra.extend(args.trusted_keys.iter().cloned());
    let keys = TrustedKeys::load(&args.keys_dir, &extra)?;
    let source = Source::parse(&args.bundle)?;
    let opts = StageOptions {
        attempts: args.attempts.max(1),
        versions: VersionPolicy {
            expect: args.expect_version.clone(),
            allow_downgrade: args.allow_downgrade,
        },
        limits: Limits {
            deadline: (args.deadline > 0).then(|| Duration::from_secs(args.deadline)),
            min_rate: (args.min_rate > 0).then(|| MinRate {
                bytes_per_sec: args.min_rate,
                window: Duration::from_secs(args.min_rate_window),
            }),
        },
        ..StageOptions::default()
    };
    // The manifest is fetched and verified once; the version checks and staging all read
    // these bytes (a server may answer a second request with another signed manifest).
    let verified =
        verify_bundle(&source, &keys, &state, booted, &opts.versions).with_context(|| {
            format!(
                "upgrade refused; the running slot and boot configuration are unchanged ({})",
                args.bundle
            )
        })?;
    let mut progress = ConsoleProgress::default();
    let staged =
        match rkos_bundle::stage_verified(&source, &verified, &state, booted, &opts, &mut progress)
        {
            Ok(s) => s,
            Err(BundleError::AlreadyRunning(version)) => {
                return Ok(UpgradeReport::AlreadyRunning { version })
            }
            Err(e) => {
                return Err(e).context(
                    "upgrade failed; the running slot and boot configuration are unchanged",
                )
            }
        };
    let boot = rkos_bundle::flip(&state, &staged, args.tries).context("flipping the boot slot")?;
    let armed = boot
        .trial
        .filter(|t| t.slot == staged.slot)
        .with_context(|| {
            format!(
                "flipping the boot slot armed no trial of slot {}",
                staged.slot
            )
        })?;
    Ok(UpgradeReport::Staged {
        version: staged.manifest.version,
        slot: staged.slot,
        key_id: staged.key_id,
        downloaded_bytes: staged.downloaded,
        reused_bytes: staged.reused,
        armed,
    })
}

/// Fetches and verifies the bundle's signed manifest, and checks its version against the
/// policy, the running slot's version and the node's floor, before anything is written.
fn verify_bundle(
    source: &Source,
    keys: &TrustedKeys,
    state: &StateDir,
    booted: Slot,
    versions: &VersionPolicy,
) -> Result<Verified> {
    let verified = Verified::fetch(source, keys)?;
    versions.check_node(&verified.manifest.version, state, booted)?;
    Ok(verified)
}

pub fn run_mark_good(args: &MarkGoodArgs) -> Result<()> {
    let Some(booted) = booted_slot(&args.root) else {
        println!("not booted from an installed slot; nothing to mark");
        return Ok(());
    };
    let state = StateDir::new(&args.state_dir);
    if args.wait_healthy {
        if let Err(e) = wait_healthy(args, Duration::from_secs(args.timeout)) {
            let on_trial = state
                .boot_state()
                .ok()
                .and_then(|b| b.trial)
                .is_some_and(|t| t.slot == booted);
            if on_trial {
                eprintln!("{e:#}; slot {booted} is on trial: rebooting so GRUB can fall back");
                reboot(false)?;
            }
            return Err(e);
        }
    }
    let before = state.boot_state()?;
    let wanted = before.mark_good(booted).context("marking the boot good")?;
    // Also when the slot is the default already: a power cut after the last mark-good wrote
    // the boot state may have kept the floor from being raised.
    let raise = state
        .floor_raise(booted)
        .context("reading the minimum version")?;
    if wanted == before && raise.is_none() {
        println!("slot {booted} is already the default");
        return Ok(());
    }
    let _rw = rkos_bundle::remount::ensure_writable(&args.state_dir)?;
    let (_, raised) = state.mark_good(booted).context("marking the boot good")?;
    if wanted != before {
        println!("slot {booted} marked good: it is now the default");
    }
    if let Some(floor) = raised {
        println!(
            "minimum version raised to {} ({}): older versions are no longer installed",
            floor.version,
            floor.file.display()
        );
    }
    Ok(())
}

/// Polls until the node is healthy (`rkos_slots::health::verdict`), or the deadline passes.
fn wait_healthy(args: &MarkGoodArgs, timeout: Duration) -> Result<()> {
    let http = rkos_http::Client::new(Duration::from_secs(5))?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("not checked yet");
    while Instant::now() < deadline {
        match health_facts(args, &http).and_then(|f| Ok(health::verdict(&f)?)) {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_secs(5).min(timeout));
    }
    bail!("node not healthy after {timeout:?}: {last}")
}

/// What can be seen of the node's health from the node itself: k3s's unit, and the
/// kubelet's healthz (or the stand-in's marker file standing in for it). The Node's Ready
/// condition is the agent's to see.
fn health_facts(args: &MarkGoodArgs, http: &rkos_http::Client) -> Result<HealthFacts> {
    let k3s_unit = if args.unit.is_empty() {
        Seen::Unseen
    } else {
        let active = Command::new("systemctl")
            .args(["is-active", "--quiet", &args.unit])
            .status()
            .context("running systemctl is-active")?
            .success();
        Seen::check(active, || format!("{} is not active", args.unit))
    };
    let kubelet_healthz = match &args.health_file {
        Some(f) => Seen::check(f.exists(), || format!("{} does not exist yet", f.display())),
        None => kubelet_probe(http, &args.health_url),
    };
    Ok(HealthFacts {
        k3s_unit,
        kubelet_healthz,
        node_ready: Seen::Unseen,
    })
}

/// One GET of the kubelet's healthz: healthy when it answers 2xx with the body `ok`.
fn kubelet_probe(http: &rkos_http::Client, url: &str) -> Seen {
    match http.get_text(url, 4096) {
        Ok(body) => Seen::check(body.trim() == "ok", || {
            format!("{url} answered {:?}, not \"ok\"", body.trim())
        }),
        Err(e) => Seen::Fails(e.to_string()),
    }
}

/// Asks systemd to reboot; says so on stdout, or on stderr when stdout carries JSON.
fn reboot(json: bool) -> Result<()> {
    say(json, "rebooting\n");
    let st = Command::new("systemctl")
        .arg("reboot")
        .status()
        .context("running systemctl reboot")?;
    if !st.success() {
        bail!("systemctl reboot failed ({st})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booted_slot_sources() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(booted_slot(d.path()), None);
        let report = paths::under(d.path(), paths::INIT_REPORT);
        std::fs::create_dir_all(report.parent().unwrap()).unwrap();
        std::fs::write(&report, "{}").unwrap();
        assert_eq!(booted_slot(d.path()), None, "not an init.json");
        std::fs::write(&report, r#"{"mode":"live"}"#).unwrap();
        assert_eq!(booted_slot(d.path()), None);
        std::fs::write(&report, r#"{"mode":"disk","slot":"B"}"#).unwrap();
        assert_eq!(booted_slot(d.path()), Some(Slot::B));
        std::fs::create_dir_all(d.path().join("proc")).unwrap();
        std::fs::write(d.path().join("proc/cmdline"), "rkos.slot=A quiet\n").unwrap();
        assert_eq!(booted_slot(d.path()), Some(Slot::A));
    }

    #[test]
    fn kubelet_probe_against_a_local_endpoint() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let answers = [
            "HTTP/1.1 500 Internal\r\nConnection: close\r\n\r\nbad",
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nnot yet",
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok",
        ];
        let t = std::thread::spawn(move || {
            for a in answers {
                let (mut c, _) = l.accept().unwrap();
                // Read the whole request: closing with unread bytes would reset the
                // connection before the client reads the answer.
                let mut req = Vec::new();
                let mut buf = [0u8; 512];
                while !req.ends_with(b"\r\n\r\n") {
                    let n = c.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                c.write_all(a.as_bytes()).unwrap();
            }
        });
        let http = rkos_http::Client::new(Duration::from_secs(5)).unwrap();
        let url = format!("http://127.0.0.1:{port}/healthz");
        let fails = |s: Seen, want: &str| match s {
            Seen::Fails(why) => assert!(why.contains(want), "{why}"),
            other => panic!("{other:?}"),
        };
        fails(kubelet_probe(&http, &url), "HTTP 500");
        fails(kubelet_probe(&http, &url), "answered \"not yet\"");
        assert_eq!(kubelet_probe(&http, &url), Seen::Holds);
        t.join().unwrap();
        // Nothing listens any more.
        fails(kubelet_probe(&http, &url), &url);
    }

    #[test]
    fn health_file_stands_in_for_the_kubelet() {
        // Test images with the k3s stand-in: healthy once the stand-in wrote its marker.
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("argv");
        let args = MarkGoodArgs {
            state_dir: d.path().into(),
            wait_healthy: true,
            timeout: 1,
            health_url: "http://127.0.0.1:1/never-asked".into(),
            health_file: Some(marker.clone()),
            unit: String::new(),
            root: d.path().into(),
        };
        let http = rkos_http::Client::new(Duration::from_secs(1)).unwrap();
        let facts = health_facts(&args, &http).unwrap();
        let e = health::verdict(&facts).unwrap_err();
        assert!(e.to_string().contains("does not exist yet"), "{e}");
        std::fs::write(&marker, "").unwrap();
        let facts = health_facts(&args, &http).unwrap();
        assert_eq!(facts.k3s_unit, Seen::Unseen, "no unit asked for");
        assert_eq!(health::verdict(&facts), Ok(()));
        assert!(wait_healthy(&args, Duration::from_secs(1)).is_ok());
    }
}
