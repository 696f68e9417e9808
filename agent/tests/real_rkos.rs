//! The agent's node side (`HostNodeOps`) against the real `rkos` command (package rkos-cli):
//! real `status --json` and `upgrade --json` output, real signed bundles (made with
//! `rkos bundle keygen/create`, served from a directory or over loopback HTTP), the real slot
//! and GRUB-environment code. What the command prints in each state is also recorded in
//! `tests/fixtures/` (the unit tests of `nodeops` parse those); the tests here check that
//! the current binary still prints exactly that, so the fixtures cannot go stale
//! (`RKOS_UPDATE_FIXTURES=1` records them again after a deliberate change).
//!
//! The host is a temp dir: `HostNodeOps` runs without a chroot, so it points `rkos` at it
//! with `--root`, `--state-dir` and `--keys-dir`. GRUB and the reboot are simulated: the
//! reboot command (a script) asks this test for a power cycle and waits; the test applies
//! GRUB's boot counting with rkos-slots' model of grub.cfg (`BootState::grub_boot`, checked
//! against real GRUB by slots/tests/grub_qemu.rs), writes the booted slot into the host's
//! `/proc/cmdline` and gives the kernel a new boot id. A version listed as broken never comes
//! up: its trial boots fail one after another until GRUB falls back, as on a node whose
//! `rkos-init` restarts the machine.
//!
//! The binary: `RKOS_BIN` if set, else built here with `cargo build -p rkos-cli` (once per
//! test process; cargo has released its build lock by the time tests run).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rkos_agent::lease;
use rkos_agent::machine::Release;
use rkos_agent::nodeops::{self, HostNodeOps, NodeOps};
use rkos_contract::paths;
use rkos_slots::health::{HealthFacts, Seen};
use rkos_slots::{BootState, Slot, StateDir, UpgradeReport};
use support::apiserver_standin::{StandIn, NUS};
use support::node_agent::{phase, released, run_agent, script, seed, wait_for};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ has a parent")
        .to_path_buf()
}

fn rkos_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("RKOS_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-q", "-p", "rkos-cli"])
            .current_dir(workspace())
            .status()
            .expect("running cargo build -p rkos-cli");
        assert!(st.success(), "cargo build -p rkos-cli failed ({st})");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(|t| workspace().join(t))
            .unwrap_or_else(|| workspace().join("target"));
        target.join("debug/rkos")
    })
}

/// The release of a plan without `allowDowngrade`.
fn release(bundle_url: &str, version: &str) -> Release {
    Release {
        bundle_url: bundle_url.to_string(),
        version: version.to_string(),
        allow_downgrade: false,
    }
}

/// Runs the real `rkos`; returns stdout, panicking with stderr on failure.
fn rkos(args: &[&str]) -> String {
    let out = Command::new(rkos_bin())
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running rkos");
    assert!(
        out.status.success(),
        "rkos {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A simulated installed node: host root, RKOS_STATE with slot A holding `version`, a
/// trusted key baked into the "image", an untrusted key pair, GRUB in a thread.
struct Node {
    dir: tempfile::TempDir,
    host: PathBuf,
    state: StateDir,
    ops: HostNodeOps,
    /// Versions whose trial boot never comes up.
    broken: Arc<Mutex<Vec<String>>>,
    reboots: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    grub: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(g) = self.grub.take() {
            let _ = g.join();
        }
    }
}

impl Node {
    fn new(version: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        let image_keys = paths::under(&host, paths::TRUSTED_KEYS_DIR);
        for d in [
            host.join("proc/sys/kernel/random"),
            host.join("run/k3s-standin"),
            image_keys.clone(),
            host.join("usr/bin"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        // The marker the test images' k3s stand-in writes once k3s.service started it.
        std::fs::write(host.join("run/k3s-standin/argv"), "server\n").unwrap();
        std::fs::write(host.join("proc/cmdline"), "rkos.mode=disk rkos.slot=A\n").unwrap();
        std::fs::write(host.join("proc/sys/kernel/random/boot_id"), "boot-0\n").unwrap();
        let state = StateDir::new(paths::under(&host, paths::STATE_MOUNT));
        std::fs::create_dir_all(state.grub_dir()).unwrap();
        state.write_boot_state(&BootState::default()).unwrap();

        let keys = dir.path().join("keys");
        rkos(&["bundle", "keygen", "--out", &keys.display().to_string()]);
        std::fs::copy(keys.join("rkos.pub"), image_keys.join("rkos.pub")).unwrap();
        rkos(&[
            "bundle",
            "keygen",
            "--out",
            &dir.path().join("evil").display().to_string(),
        ]);

        let reboot = host.join("usr/bin/reboot-standin");
        let request = dir.path().join("power-cycle");
        script(
            &reboot,
            &format!(
                "#!/bin/sh\n: > '{r}'\ni=0\nwhile [ -e '{r}' ]; do\n    i=$((i+1)); [ $i -gt 400 ] && exit 1\n    sleep 0.05\ndone\n",
                r = request.display()
            ),
        );

        let broken = Arc::new(Mutex::new(Vec::new()));
        let reboots = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let grub = {
            let (host, broken, reboots, stop) =
                (host.clone(), broken.clone(), reboots.clone(), stop.clone());
            let state = StateDir::new(state.root());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if request.exists() {
                        let n = reboots.fetch_add(1, Ordering::Relaxed) + 1;
                        power_cycle(&host, &state, &broken.lock().unwrap(), n);
                        std::fs::remove_file(&request).unwrap();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        // `systemctl is-active k3s.service` on this host: the stand-in k3s is up.
        let k3s_active = host.join("usr/bin/k3s-active-standin");
        script(
            &k3s_active,
            &format!(
                "#!/bin/sh\ntest -e '{}'\n",
                host.join("run/k3s-standin/argv").display()
            ),
        );
        let ops = HostNodeOps {
            host_root: host.clone(),
            chroot: false,
            rkos: rkos_bin().to_path_buf(),
            reboot: vec![reboot.display().to_string()],
            k3s_active: vec![k3s_active.display().to_string()],
        };
        let node = Node {
            dir,
            host,
            state,
            ops,
            broken,
            reboots,
            stop,
            grub: Some(grub),
        };
        let slot_a = node.state.slot_dir(Slot::A);
        node.bundle_at(version, "keys", &slot_a);
        node
    }

    /// A signed bundle of `version` made with `rkos bundle create`, in the test dir.
    fn bundle(&self, version: &str, key: &str) -> PathBuf {
        let out = self.dir.path().join(format!("bundle-{version}-{key}"));
        self.bundle_at(version, key, &out);
        out
    }

    fn bundle_at(&self, version: &str, key: &str, out: &Path) {
        let src = self.dir.path().join(format!("src-{version}"));
        std::fs::create_dir_all(&src).unwrap();
        let mut files = Vec::new();
        for name in ["vmlinuz", "initrd", "rootfs.squashfs"] {
            let p = src.join(name);
            std::fs::write(&p, format!("{name} of version {version}\n").repeat(2000)).unwrap();
            files.push(p.display().to_string());
        }
        let key = self.dir.path().join(key).join("rkos.key");
        let (key, out) = (key.display().to_string(), out.display().to_string());
        let mut args = vec!["bundle", "create", "--version", version, "--key", &key];
        args.extend(["--out", &out]);
        args.extend(files.iter().map(String::as_str));
        rkos(&args);
    }

    /// `rkos status --json`, checked against its recorded fixture `status/NAME.json`.
    fn status_json(&self, name: &str) -> String {
        let state = self.state.root().display().to_string();
        let host = self.host.display().to_string();
        let out = rkos(&["status", "--json", "--state-dir", &state, "--root", &host]);
        self.recorded(&format!("status/{name}.json"), &out);
        out
    }

    /// `rkos upgrade --json` of `bundle` as the agent runs it (expecting `version`): its exit
    /// code, stdout (checked against the fixture `upgrade/NAME.json`) and stderr.
    fn upgrade_json(&self, name: &str, bundle: &Path, version: &str) -> (i32, String, String) {
        let out = self.upgrade(bundle, version, &["--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        self.recorded(&format!("upgrade/{name}.json"), &stdout);
        let code = out.status.code().expect("rkos exited");
        (
            code,
            stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn upgrade(&self, bundle: &Path, version: &str, more: &[&str]) -> std::process::Output {
        let keys = paths::under(&self.host, paths::TRUSTED_KEYS_DIR);
        Command::new(rkos_bin())
            .args(["upgrade", "--bundle", &bundle.display().to_string()])
            .args(["--expect-version", version])
            .args(["--root", &self.host.display().to_string()])
            .args(["--state-dir", &self.state.root().display().to_string()])
            .args(["--keys-dir", &keys.display().to_string()])
            .args(more)
            .env("RUST_BACKTRACE", "0")
            .env("NO_COLOR", "1")
            .output()
            .expect("running rkos upgrade")
    }

    /// `out` is what `tests/fixtures/NAME` recorded, once what differs from run to run is
    /// replaced by placeholders: the test's directory (`<dir>`), the ids of the trusted and
    /// the untrusted key (`<key>`, `<untrusted-key>`) and the build's arch (`<arch>`). With
    /// `RKOS_UPDATE_FIXTURES=1`, records `out` instead.
    fn recorded(&self, name: &str, out: &str) {
        let key_id = |dir: &str| {
            let text = std::fs::read_to_string(self.dir.path().join(dir).join("rkos.pub")).unwrap();
            let comment = text.lines().next().unwrap_or_default();
            comment
                .split_whitespace()
                .last()
                .unwrap_or_default()
                .to_string()
        };
        let arch = format!("\"arch\": \"{}\"", rkos_contract::arch());
        let text = out
            .replace(&self.dir.path().display().to_string(), "<dir>")
            .replace(&key_id("keys"), "<key>")
            .replace(&key_id("evil"), "<untrusted-key>")
            .replace(&arch, "\"arch\": \"<arch>\"");
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        if std::env::var_os("RKOS_UPDATE_FIXTURES").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (RKOS_UPDATE_FIXTURES=1 records it)",
                path.display()
            )
        });
        assert_eq!(
            text,
            want,
            "`rkos` no longer prints what {} recorded; if that is meant, record it again \
             with RKOS_UPDATE_FIXTURES=1 and check the agent still reads it (its unit tests \
             parse the fixtures)",
            path.display()
        );
    }

    fn status_text(&self) -> String {
        let state = self.state.root().display().to_string();
        let host = self.host.display().to_string();
        rkos(&["status", "--state-dir", &state, "--root", &host])
    }

    fn grubenv(&self) -> Vec<u8> {
        std::fs::read(self.state.grubenv()).unwrap()
    }
}

/// Power off and on: GRUB picks a slot with boot counting; a trial of a broken version fails
/// to come up and the machine restarts until GRUB falls back.
fn power_cycle(host: &Path, state: &StateDir, broken: &[String], n: u32) {
    for _ in 0..=rkos_slots::MAX_TRIES {
        let (slot, next) = state.boot_state().unwrap().grub_boot();
        state.write_boot_state(&next).unwrap();
        let version = state.read_manifest(slot).unwrap().map(|m| m.version);
        let on_trial = next.trial.is_some_and(|t| t.slot == slot);
        if on_trial && version.is_some_and(|v| broken.contains(&v)) {
            continue;
        }
        std::fs::write(
            host.join("proc/cmdline"),
            format!("rkos.mode=disk rkos.slot={slot}\n"),
        )
        .unwrap();
        break;
    }
    std::fs::write(
        host.join("proc/sys/kernel/random/boot_id"),
        format!("boot-{n}\n"),
    )
    .unwrap();
}

/// Serves `dir` over loopback HTTP; returns the base URL. Plain 200 answers (no Range): the
/// bundle client handles servers that ignore Range.
async fn serve(dir: PathBuf) -> String {
    use axum::extract::Path as UrlPath;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/{*file}",
        axum::routing::get(move |UrlPath(file): UrlPath<String>| {
            let path = dir.join(file);
            async move {
                match tokio::fs::read(path).await {
                    Ok(b) => b.into_response(),
                    Err(_) => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}/")
}

fn bundle_size(dir: &Path) -> u64 {
    ["vmlinuz", "initrd", "rootfs.squashfs"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The node side alone.

#[tokio::test]
async fn the_node_side_step_by_step() {
    let node = Node::new("1");
    let ops = &node.ops;
    let f = ops.facts().await.unwrap();
    assert_eq!((f.version.as_str(), f.slot), ("1", Slot::A.into()));
    assert_eq!((f.staged, f.trial_armed), (None, None));
    assert!(!f.running_on_trial && f.rolled_back.is_none());
    assert_eq!(f.boot_id, "boot-0");

    // Stage: the inactive slot gets version 2 and a trial is armed; the byte count is the
    // command's own.
    let b2 = node.bundle("2", "keys");
    let url = b2.display().to_string();
    let report = ops.stage(&release(&url, "2")).await.unwrap();
    assert_eq!(report.bytes, bundle_size(&b2));
    let f = ops.facts().await.unwrap();
    assert_eq!(f.version, "1");
    assert_eq!(f.staged.as_deref(), Some("2"));
    assert_eq!(f.trial_armed.as_deref(), Some("2"));
    let st = node.state.boot_state().unwrap();
    assert_eq!(st.default, Slot::A);
    assert_eq!(st.trial.map(|t| t.slot), Some(Slot::B));
    // Already armed: flip does not run anything that changes the environment.
    let env = node.grubenv();
    ops.flip(&release(&url, "2")).await.unwrap();
    assert_eq!(node.grubenv(), env);

    // Reboot: the command runs, GRUB boots B on trial.
    ops.reboot().await.unwrap();
    assert_eq!(node.reboots.load(Ordering::Relaxed), 1);
    let f = ops.facts().await.unwrap();
    assert_eq!((f.version.as_str(), f.slot), ("2", Slot::B.into()));
    assert_eq!(f.boot_id, "boot-1");
    assert!(f.running_on_trial);
    assert_eq!(f.trial_armed, None, "the trial is the running slot");
    // k3s's unit (here the stand-in's marker) is the node-side half of health.
    let up = HealthFacts {
        k3s_unit: Seen::Holds,
        ..HealthFacts::default()
    };
    assert_eq!(ops.health().await.unwrap(), up);
    std::fs::remove_file(node.host.join("run/k3s-standin/argv")).unwrap();
    assert_eq!(
        ops.health().await.unwrap().k3s_unit,
        Seen::Fails("k3s.service is not active".into())
    );
    std::fs::write(node.host.join("run/k3s-standin/argv"), "server\n").unwrap();

    // Mark good ends the trial: B is the default.
    ops.mark_good().await.unwrap();
    let f = ops.facts().await.unwrap();
    assert!(!f.running_on_trial);
    assert_eq!(f.staged.as_deref(), Some("1"));
    let st = node.state.boot_state().unwrap();
    assert_eq!((st.default, st.trial), (Slot::B, None));
    assert!(
        node.status_text().contains("slot B passed its trial"),
        "{}",
        node.status_text()
    );
    // Again: idempotent (a restarted agent may repeat it).
    ops.mark_good().await.unwrap();

    // The bundle of the version already running: `rkos upgrade` says so and exits 0 without
    // arming anything; stage must not report success (the agent would stage forever).
    let env = node.grubenv();
    let e = ops
        .stage(&release(&url, "2"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already running version 2"), "{e}");
    assert!(e.contains("did not arm a trial boot of 2"), "{e}");
    assert_eq!(node.grubenv(), env, "nothing changed");

    // A plan naming a version its bundle does not hold: `--expect-version` has `rkos
    // upgrade` refuse it before writing anything (else it would arm a trial of 3, which
    // the next reboot would boot and rkos-mark-good.service would keep).
    let b3 = node.bundle("3", "keys");
    let e = ops
        .stage(&release(&b3.display().to_string(), "4"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds version 3, not the expected 4"), "{e}");
    assert_eq!(node.grubenv(), env, "nothing changed");
    let f = ops.facts().await.unwrap();
    assert_eq!((f.staged.as_deref(), f.trial_armed), (Some("1"), None));
}

#[tokio::test]
async fn a_bundle_signed_by_an_untrusted_key_is_refused_and_changes_nothing() {
    let node = Node::new("1");
    let evil = node.bundle("2", "evil");
    let env = node.grubenv();
    let e = node
        .ops
        .stage(&release(&evil.display().to_string(), "2"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not among the node's 1 trusted key(s)"), "{e}");
    assert!(
        e.contains("the running slot and boot configuration are unchanged"),
        "{e}"
    );
    assert!(!e.contains("backtrace") && !e.contains('\x1b'), "{e}");
    assert_eq!(node.grubenv(), env);
    assert!(!node.state.manifest(Slot::B).exists());
    let f = node.ops.facts().await.unwrap();
    assert_eq!((f.staged, f.trial_armed), (None, None));
}

/// The node refuses a downgrade itself, whoever asks: a plan back to an older signed release
/// fails with `rkos upgrade`'s own refusal and nothing written; the plan's `allowDowngrade`
/// (the agent then passes `--allow-downgrade`) lifts it, and the older release is armed.
#[tokio::test]
async fn a_downgrade_is_refused_by_the_node_unless_the_plan_allows_it() {
    let node = Node::new("2");
    let b1 = node.bundle("1", "keys");
    let mut back_to_1 = release(&b1.display().to_string(), "1");
    let env = node.grubenv();
    let e = node.ops.stage(&back_to_1).await.unwrap_err().to_string();
    assert!(
        e.contains("the bundle's version 1 is lower than the running 2: refusing a downgrade"),
        "{e}"
    );
    assert!(e.contains("allowDowngrade in the upgrade plan"), "{e}");
    assert_eq!(node.grubenv(), env, "nothing changed");
    assert!(!node.state.manifest(Slot::B).exists());
    let e = node.ops.flip(&back_to_1).await.unwrap_err().to_string();
    assert!(e.contains("refusing a downgrade"), "{e}");
    assert_eq!(node.grubenv(), env, "nothing changed");

    back_to_1.allow_downgrade = true;
    node.ops.stage(&back_to_1).await.unwrap();
    let f = node.ops.facts().await.unwrap();
    assert_eq!(f.version, "2");
    assert_eq!(f.trial_armed.as_deref(), Some("1"));
}

/// The status JSON in each state a node goes through: what the real `rkos status --json`
/// prints is what `tests/fixtures/status/` recorded, and the agent reads the right facts from
/// it (rkos-slots' `NodeStatus` requires every field, so a rename on either side fails).
#[tokio::test]
async fn status_json_in_every_state() {
    let node = Node::new("1");
    let ops = &node.ops;
    let facts = |name: &str| nodeops::facts_from_status_json(&node.status_json(name), "b");

    let f = facts("fresh").unwrap();
    assert_eq!((f.version.as_str(), f.slot), ("1", Slot::A.into()));
    assert_eq!((f.staged, f.trial_armed), (None, None));

    let b2 = node.bundle("2", "keys");
    ops.stage(&release(&b2.display().to_string(), "2"))
        .await
        .unwrap();
    let f = facts("trial-armed").unwrap();
    assert_eq!((f.version.as_str(), f.slot), ("1", Slot::A.into()));
    assert_eq!(f.trial_armed.as_deref(), Some("2"));

    ops.reboot().await.unwrap();
    let f = facts("on-trial").unwrap();
    assert_eq!((f.version.as_str(), f.slot), ("2", Slot::B.into()));
    assert!(f.running_on_trial);
    assert_eq!(f.trial_armed, None);

    ops.mark_good().await.unwrap();
    let f = facts("marked-good").unwrap();
    assert_eq!((f.version.as_str(), f.slot), ("2", Slot::B.into()));
    assert!(!f.running_on_trial);
    assert_eq!(f.staged.as_deref(), Some("1"));

    // A trial that never comes up: rolled back.
    node.broken.lock().unwrap().push("3".into());
    let b3 = node.bundle("3", "keys");
    ops.stage(&release(&b3.display().to_string(), "3"))
        .await
        .unwrap();
    ops.reboot().await.unwrap();
    let f = facts("rolled-back").unwrap();
    assert_eq!((f.version.as_str(), f.slot), ("2", Slot::B.into()));
    assert_eq!(
        f.rolled_back.as_deref(),
        Some("slot A (3) was never marked good; GRUB fell back to slot B")
    );

    // A live boot (no slot on the command line, no GRUB environment): not installed.
    std::fs::write(node.host.join("proc/cmdline"), "rkos.mode=live\n").unwrap();
    std::fs::remove_file(node.state.grubenv()).unwrap();
    let e = facts("not-installed").unwrap_err().to_string();
    assert!(e.contains("not installed"), "{e}");
    let e = ops.facts().await.unwrap_err().to_string();
    assert!(e.contains("not installed"), "{e}");
}

/// The upgrade report in each outcome: what the real `rkos upgrade --json` prints is what
/// `tests/fixtures/upgrade/` recorded (one JSON object on stdout, whatever the outcome), the
/// agent reads it right, and the human summary is on stderr; without `--json` the human
/// output is as before, on stdout.
#[test]
fn upgrade_json_in_every_outcome() {
    let node = Node::new("1");
    let env = node.grubenv();
    let report = |stdout: &str| serde_json::from_str::<UpgradeReport>(stdout).unwrap();

    let evil = node.bundle("2", "evil");
    let b1 = node.bundle("1", "keys");
    for (name, bundle) in [("untrusted-key", &evil), ("wrong-version", &b1)] {
        let (code, out, err) = node.upgrade_json(name, bundle, "2");
        assert_eq!(code, 1, "{name}: {err}");
        let UpgradeReport::Failed { error } = report(&out) else {
            panic!("{name}: {out}")
        };
        assert!(
            err.contains(&error[0]),
            "{name}: the error on stderr too: {err}"
        );
    }
    let (code, out, _) = node.upgrade_json("already-running", &b1, "1");
    assert_eq!(code, 0);
    assert_eq!(
        report(&out),
        UpgradeReport::AlreadyRunning {
            version: "1".into()
        }
    );
    assert_eq!(node.grubenv(), env, "nothing changed");

    let b2 = node.bundle("2", "keys");
    let (code, out, err) = node.upgrade_json("staged", &b2, "2");
    assert_eq!(code, 0);
    let UpgradeReport::Staged {
        slot,
        downloaded_bytes,
        armed,
        ..
    } = report(&out)
    else {
        panic!("{out}")
    };
    assert_eq!((slot, downloaded_bytes), (Slot::B, bundle_size(&b2)));
    assert_eq!(Some(armed), node.state.boot_state().unwrap().trial);
    assert_eq!(out.lines().count(), 1, "one object on stdout: {out}");
    assert!(err.contains("staged version 2 in slot B"), "{err}");

    // The human output, on stdout, as the QEMU tests and people read it.
    let human = node.upgrade(&b2, "2", &[]);
    assert!(human.status.success());
    let stdout = String::from_utf8_lossy(&human.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("staged version 2 in slot B (signed by key ")
            && lines[0].ends_with(&format!(
                "; {} bytes downloaded, 0 resumed)",
                bundle_size(&b2)
            )),
        "{stdout}"
    );
    assert_eq!(
        lines[1..],
        [
            "next boot: slot B on trial (3 tries), falling back to slot A unless marked good",
            "reboot to switch (or rerun with --reboot)",
        ]
    );
}

/// The paths `HostNodeOps` passes when it runs without a chroot are `rkos`'s own defaults
/// (the ones it uses inside the chroot on a real node).
#[test]
fn host_paths_are_the_commands_defaults() {
    let state = format!("[default: {}]", paths::STATE_MOUNT);
    let keys = format!("[default: {}]", paths::TRUSTED_KEYS_DIR);
    for sub in ["status", "upgrade", "mark-good"] {
        let help = rkos(&[sub, "--help"]);
        assert!(help.contains(&state), "rkos {sub} --help: {help}");
    }
    let help = rkos(&["upgrade", "--help"]);
    assert!(help.contains(&keys), "{help}");
}

/// What `--help` says about one option (its line, and the lines clap wraps it onto).
fn option_help(help: &str, option: &str) -> String {
    // The option's own line: its flags come first, then two spaces and the text.
    let names = |l: &str| l.trim_start().split("  ").next().unwrap_or("").to_string();
    let mut lines = help.lines().skip_while(|l| !names(l).contains(option));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no {option} in {help}"));
    let rest = lines.take_while(|l| !l.trim_start().starts_with('-'));
    std::iter::once(first)
        .chain(rest)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The node-side figures the lease's duration is computed from
/// (`lease::WORST_CASE_TRIAL_SECONDS`) are the command's: the tries `rkos upgrade` gives a
/// trial, and how long `rkos mark-good` waits for health before restarting the node.
#[test]
fn the_worst_case_trial_uses_the_commands_figures() {
    let tries = option_help(&rkos(&["upgrade", "--help"]), "--tries");
    let want = format!("[default: {}]", rkos_slots::DEFAULT_TRIES);
    assert!(tries.contains(&want), "{tries}");
    let timeout = option_help(&rkos(&["mark-good", "--help"]), "--timeout");
    let want = format!("[default: {}]", lease::MARK_GOOD_TIMEOUT_SECONDS);
    assert!(timeout.contains(&want), "{timeout}");
}

// ---------------------------------------------------------------------------------------------
// The agent, against the API server stand-in, driving the real command.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_upgrades_a_node_from_a_bundle_over_http() {
    let node = Node::new("1");
    let b2 = node.bundle("2", "keys");
    let url =
        serve(node.dir.path().to_path_buf()).await + b2.file_name().unwrap().to_str().unwrap();
    let api = StandIn::start().await;
    seed(&api, "2", &url);
    let a = run_agent(&api, node.ops.clone(), |api| phase(api) == "Succeeded").await;
    released(&api).await;
    a.abort();
    let nu = api.get(NUS, "", "n1").unwrap();
    assert_eq!(nu["status"]["currentVersion"], "2");
    assert_eq!(nu["status"]["slot"], "B");
    assert_eq!(nu["status"]["attempts"], 1);
    assert_eq!(nu["status"]["bytesDownloaded"], bundle_size(&b2));
    assert_eq!(node.reboots.load(Ordering::Relaxed), 1);
    let st = node.state.boot_state().unwrap();
    assert_eq!((st.default, st.trial), (Slot::B, None), "marked good");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reports_a_bundle_its_node_does_not_trust() {
    let node = Node::new("1");
    let evil = node.bundle("2", "evil");
    let api = StandIn::start().await;
    seed(&api, "2", &evil.display().to_string());
    let env = node.grubenv();
    let a = run_agent(&api, node.ops.clone(), |api| phase(api) == "Failed").await;
    released(&api).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.abort();
    let nu = api.get(NUS, "", "n1").unwrap();
    assert_eq!(nu["status"]["phase"], "Failed", "stays failed");
    let err = nu["status"]["lastError"].as_str().unwrap();
    assert!(err.contains("staging 2 failed"), "{err}");
    assert!(
        err.contains("not among the node's 1 trusted key(s)"),
        "{err}"
    );
    assert!(!err.contains("backtrace") && !err.contains('\x1b'), "{err}");
    assert_eq!(nu["status"]["currentVersion"], "1");
    assert_eq!(node.grubenv(), env);
    assert_eq!(node.reboots.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reports_a_rollback_and_a_retry_rearms_the_staged_slot() {
    let node = Node::new("1");
    node.broken.lock().unwrap().push("2".into());
    let b2 = node.bundle("2", "keys");
    let api = StandIn::start().await;
    seed(&api, "2", &b2.display().to_string());
    let a = run_agent(&api, node.ops.clone(), |api| phase(api) == "RolledBack").await;
    let nu = api.get(NUS, "", "n1").unwrap();
    let err = nu["status"]["lastError"].as_str().unwrap();
    assert_eq!(
        err,
        "slot B (2) was never marked good; GRUB fell back to slot A"
    );
    assert_eq!(nu["status"]["currentVersion"], "1");
    assert_eq!(nu["status"]["slot"], "A");
    assert_eq!(node.reboots.load(Ordering::Relaxed), 1);
    released(&api).await;

    // Fixed; the operator deletes the NodeUpgrade to retry. Slot B still holds version 2
    // with no trial armed: the agent has `rkos upgrade` check it again and arm it.
    node.broken.lock().unwrap().clear();
    api.delete(NUS, "", "n1");
    wait_for(&api, |api| phase(api) == "Succeeded").await;
    released(&api).await;
    a.abort();
    let nu = api.get(NUS, "", "n1").unwrap();
    assert_eq!(nu["status"]["currentVersion"], "2");
    assert_eq!(node.reboots.load(Ordering::Relaxed), 2);
    let st = node.state.boot_state().unwrap();
    assert_eq!((st.default, st.trial), (Slot::B, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_the_running_version_does_nothing_and_a_stale_bundle_fails_once() {
    // The plan names the version the node runs: Succeeded without staging or rebooting.
    let node = Node::new("1");
    let b1 = node.bundle("1", "keys");
    let api = StandIn::start().await;
    seed(&api, "1", &b1.display().to_string());
    let env = node.grubenv();
    let a = run_agent(&api, node.ops.clone(), |api| phase(api) == "Succeeded").await;
    released(&api).await;
    a.abort();
    let nu = api.get(NUS, "", "n1").unwrap();
    assert_eq!(nu["status"]["attempts"], 0);
    assert_eq!(node.grubenv(), env);
    assert_eq!(node.reboots.load(Ordering::Relaxed), 0);

    // The plan says 2 but its bundle still holds 1 (the version running): the agent fails
    // the node once with `rkos upgrade`'s refusal instead of staging in a loop.
    let api = StandIn::start().await;
    seed(&api, "2", &b1.display().to_string());
    let a = run_agent(&api, node.ops.clone(), |api| phase(api) == "Failed").await;
    released(&api).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.abort();
    let nu = api.get(NUS, "", "n1").unwrap();
    assert_eq!(nu["status"]["phase"], "Failed", "stays failed");
    assert_eq!(nu["status"]["attempts"], 1);
    let err = nu["status"]["lastError"].as_str().unwrap();
    assert!(err.contains("holds version 1, not the expected 2"), "{err}");
    assert!(err.contains("boot configuration are unchanged"), "{err}");
    assert_eq!(node.grubenv(), env);
    assert_eq!(node.reboots.load(Ordering::Relaxed), 0);
}
