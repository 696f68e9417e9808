//! `rkos upgrade` (stage a signed bundle into the inactive slot and put it on trial) and
//! `rkos mark-good` (end a trial once the node is healthy). The same library calls as the
//! in-cluster agent: `rkos_bundle::stage` and `rkos_bundle::flip`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rkos_bundle::{BundleError, ConsoleProgress, Source, StageOptions, TrustedKeys};
use rkos_slots::{Slot, StateDir};

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The bundle: an http(s) URL of its directory, or a local directory.
    #[arg(long)]
    pub bundle: String,
    /// Reboot into the new version once it is staged.
    #[arg(long)]
    pub reboot: bool,
    /// Where RKOS_STATE is mounted (read-write).
    #[arg(long, default_value = rkos_slots::DEFAULT_STATE_MOUNT)]
    pub state_dir: PathBuf,
    /// Boots the new version gets to be marked good before GRUB goes back by itself.
    #[arg(long, default_value_t = rkos_slots::DEFAULT_TRIES,
          value_parser = clap::value_parser!(u8).range(1..=rkos_slots::MAX_TRIES as i64))]
    pub tries: u8,
    /// A trusted minisign public key, in addition to the image's (repeatable). The node's
    /// `upgrade.trusted_keys` belong in config.yaml; this flag is for one-off use.
    #[arg(long = "trusted-key", value_name = "KEY")]
    pub trusted_keys: Vec<String>,
    /// Directory of the image's trusted public keys (`*.pub`).
    #[arg(long, default_value = rkos_bundle::IMAGE_KEYS_DIR)]
    pub keys_dir: PathBuf,
    /// Root of the running system (for /proc/cmdline and /run/rkos/init.json; tests).
    #[arg(long, default_value = "/", hide = true)]
    pub root: PathBuf,
    /// Attempts per file on network errors.
    #[arg(long, default_value_t = 6)]
    pub attempts: u32,
}

#[derive(Debug, Args)]
pub struct MarkGoodArgs {
    /// Where RKOS_STATE is mounted (read-write).
    #[arg(long, default_value = rkos_slots::DEFAULT_STATE_MOUNT)]
    pub state_dir: PathBuf,
    /// Wait until the node is healthy first; if it is not within --timeout and the running
    /// slot is on trial, reboot so GRUB can fall back.
    #[arg(long)]
    pub wait_healthy: bool,
    /// Health deadline for --wait-healthy, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// The health endpoint polled by --wait-healthy (k3s's kubelet; the test stand-in
    /// answers it too).
    #[arg(long, default_value = "http://127.0.0.1:10248/healthz")]
    pub health_url: String,
    #[arg(long, default_value = "/", hide = true)]
    pub root: PathBuf,
}

/// The slot the running system was booted from.
pub fn booted_slot(root: &Path) -> Option<Slot> {
    std::fs::read_to_string(root.join("proc/cmdline"))
        .ok()
        .and_then(|c| rkos_slots::status::booted_slot_from_cmdline(&c))
        .or_else(|| {
            std::fs::read(root.join("run/rkos/init.json"))
                .ok()
                .and_then(|j| rkos_slots::status::booted_slot_from_init_json(&j))
        })
}

pub fn run_upgrade(args: &UpgradeArgs) -> Result<()> {
    let state = StateDir::new(&args.state_dir);
    if !state.grubenv().exists() {
        bail!(
            "{} not found: is RKOS_STATE mounted at {}? (`rkos upgrade` needs an installed node)",
            state.grubenv().display(),
            args.state_dir.display()
        );
    }
    let booted = booted_slot(&args.root)
        .context("cannot tell which slot is running (no rkos.slot= on the kernel command line)")?;
    let keys = TrustedKeys::load(&args.keys_dir, &args.trusted_keys)?;
    let source = Source::parse(&args.bundle)?;
    let opts = StageOptions {
        attempts: args.attempts.max(1),
        ..StageOptions::default()
    };
    let mut progress = ConsoleProgress::default();
    let staged = match rkos_bundle::stage(&source, &state, booted, &keys, &opts, &mut progress) {
        Ok(s) => s,
        Err(BundleError::AlreadyRunning(v)) => {
            println!("already running version {v}; nothing to do");
            return Ok(());
        }
        Err(e) => return Err(e).context("upgrade failed; the running slot and boot configuration are unchanged"),
    };
    let boot = rkos_bundle::flip(&state, &staged, args.tries).context("flipping the boot slot")?;
    println!(
        "staged version {} in slot {} (signed by key {}; {} bytes downloaded, {} resumed)",
        staged.manifest.version, staged.slot, staged.key_id, staged.downloaded, staged.reused
    );
    println!(
        "next boot: slot {} on trial ({} tries), falling back to slot {} unless marked good",
        staged.slot,
        boot.trial.map_or(0, |t| t.tries_left),
        boot.default
    );
    if args.reboot {
        reboot()?;
    } else {
        println!("reboot to switch (or rerun with --reboot)");
    }
    Ok(())
}

pub fn run_mark_good(args: &MarkGoodArgs) -> Result<()> {
    let Some(booted) = booted_slot(&args.root) else {
        println!("not booted from an installed slot; nothing to mark");
        return Ok(());
    };
    let state = StateDir::new(&args.state_dir);
    if args.wait_healthy {
        if let Err(e) = wait_healthy(&args.health_url, Duration::from_secs(args.timeout)) {
            let on_trial = state
                .boot_state()
                .ok()
                .and_then(|b| b.trial)
                .is_some_and(|t| t.slot == booted);
            if on_trial {
                eprintln!("{e:#}; slot {booted} is on trial: rebooting so GRUB can fall back");
                reboot()?;
            }
            return Err(e);
        }
    }
    let before = state.boot_state()?;
    let after = state
        .update_boot_state(|b| b.mark_good(booted))
        .context("marking the boot good")?;
    if before != after {
        println!("slot {booted} marked good: it is now the default");
    } else {
        println!("slot {booted} is already the default");
    }
    Ok(())
}

/// Polls `url` until it answers 200 with `ok` (kubelet's healthz) or the deadline passes.
fn wait_healthy(url: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match health_once(url) {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_secs(5).min(timeout));
    }
    bail!("node not healthy after {timeout:?}: {url}: {last}")
}

/// One GET of a plain-http loopback endpoint. Written on std::net: the only target is the
/// kubelet's local healthz, so an HTTP client (and its runtime) would be dead weight here.
fn health_once(url: &str) -> Result<()> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .context("health URL must be http://HOST:PORT/PATH")?;
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)?
        .next()
        .context("health URL host does not resolve")?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n")?;
    let mut resp = String::new();
    s.take(64 * 1024).read_to_string(&mut resp)?;
    let ok_status = resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200");
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    if ok_status && body == "ok" {
        Ok(())
    } else {
        bail!("unhealthy answer: {}", resp.lines().next().unwrap_or(""))
    }
}

fn reboot() -> Result<()> {
    println!("rebooting");
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
        std::fs::create_dir_all(d.path().join("run/rkos")).unwrap();
        std::fs::write(d.path().join("run/rkos/init.json"), r#"{"slot":"B"}"#).unwrap();
        assert_eq!(booted_slot(d.path()), Some(Slot::B));
        std::fs::create_dir_all(d.path().join("proc")).unwrap();
        std::fs::write(d.path().join("proc/cmdline"), "rkos.slot=A quiet\n").unwrap();
        assert_eq!(booted_slot(d.path()), Some(Slot::A));
    }

    #[test]
    fn health_check_against_a_local_endpoint() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let answers = ["HTTP/1.1 500 Internal\r\n\r\nbad", "HTTP/1.1 200 OK\r\n\r\nok"];
        let t = std::thread::spawn(move || {
            for a in answers {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 512];
                let _ = c.read(&mut buf);
                c.write_all(a.as_bytes()).unwrap();
            }
        });
        let url = format!("http://127.0.0.1:{port}/healthz");
        assert!(health_once(&url).is_err());
        assert!(health_once(&url).is_ok());
        t.join().unwrap();
        assert!(health_once("https://x/healthz").is_err());
    }
}
