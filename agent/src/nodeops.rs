//! The node side of an upgrade, as seen by the agent: a trait, the real implementation that
//! runs the `rkos` command on the host, and a fake for tests.
//!
//! Boundary. The agent never writes slots or the GRUB environment itself: that code lives in
//! rkos-slots / rkos-bundle behind the `rkos` command, the same code an operator runs by hand.
//! The agent (in a privileged DaemonSet pod with the host's `/` mounted at `host_root`)
//! runs, chrooted into the host:
//! - `rkos status --json`: the booted slot, both slots' versions, the trial armed in the GRUB
//!   environment, whether the running slot is on trial, the last boot outcome;
//! - `rkos upgrade --bundle URL --expect-version V`: checks space, verifies the signed
//!   manifest with the node's own trusted keys (and that it is version V), streams the files
//!   into the inactive slot and arms a trial boot of it;
//! - `systemctl reboot`;
//! - `rkos mark-good`: turns the trial slot into the default once the node is healthy.
//!
//! The boot id comes from `/proc/sys/kernel/random/boot_id` (the pod shares the host
//! kernel), so the agent can tell whether the reboot it asked for has happened.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum NodeOpsError {
    #[error("running {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`rkos status --json` printed something unexpected: {0}")]
    Status(String),
    #[error("{0}")]
    Failed(String),
}

/// What the node says about itself. Everything the state machine needs to resume after an
/// agent restart that is not in the NodeUpgrade status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFacts {
    /// The version the node runs (the booted slot's manifest).
    pub version: String,
    /// The booted slot, `A` or `B`.
    pub slot: String,
    /// The kernel's boot id; changes on every boot.
    pub boot_id: String,
    /// The complete version in the slot not running, if any.
    pub staged: Option<String>,
    /// The version a trial boot is armed for (the next reboot boots it), if any.
    pub trial_armed: Option<String>,
    /// The running slot is on trial and not yet marked good.
    pub running_on_trial: bool,
    /// The last boot outcome was a fallback, e.g. `slot B was never marked good`.
    pub rolled_back: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageReport {
    pub bytes: u64,
}

/// The node-side operations. Every method is idempotent, because a restarted agent may
/// repeat the last one.
pub trait NodeOps: Send + Sync + 'static {
    fn facts(&self) -> impl Future<Output = Result<NodeFacts, NodeOpsError>> + Send;
    /// Download, verify and write `bundle_url` into the inactive slot and arm a trial boot.
    fn stage(
        &self,
        bundle_url: &str,
        version: &str,
    ) -> impl Future<Output = Result<StageReport, NodeOpsError>> + Send;
    /// Make sure the next boot is a trial of `version`, already complete in the inactive slot
    /// (it came from `bundle_url`).
    fn flip(
        &self,
        bundle_url: &str,
        version: &str,
    ) -> impl Future<Output = Result<(), NodeOpsError>> + Send;
    /// Ask the init system to reboot. Returns once the request is accepted.
    fn reboot(&self) -> impl Future<Output = Result<(), NodeOpsError>> + Send;
    /// The node-side health check (k3s up) that must hold before the slot is marked good.
    fn healthy(&self) -> impl Future<Output = Result<bool, NodeOpsError>> + Send;
    fn mark_good(&self) -> impl Future<Output = Result<(), NodeOpsError>> + Send;
}

// ---------------------------------------------------------------------------------------------
// Real implementation: the `rkos` command on the host.

/// Runs `rkos` on the host. `host_root` is where the host's `/` is mounted (`/host` in the
/// DaemonSet): the boot id and the k3s socket are read under it, and commands run chrooted
/// into it when `chroot` is set (tests point it at a temp dir and run without a chroot).
#[derive(Clone, Debug)]
pub struct HostNodeOps {
    pub host_root: PathBuf,
    pub chroot: bool,
    /// The `rkos` binary, as seen inside the chroot.
    pub rkos: PathBuf,
    /// The reboot command, as seen inside the chroot.
    pub reboot: Vec<String>,
}

impl HostNodeOps {
    pub fn new(host_root: impl Into<PathBuf>) -> Self {
        let host_root = host_root.into();
        HostNodeOps {
            chroot: host_root != Path::new("/"),
            host_root,
            rkos: PathBuf::from("/usr/bin/rkos"),
            reboot: vec!["/usr/bin/systemctl".into(), "reboot".into()],
        }
    }

    /// `rkos SUB...` with the options that point it at the host when it runs without a chroot
    /// (tests, or an agent started on the host itself): `rkos`'s defaults are absolute paths
    /// of the host, right only inside the chroot. `--keys-dir` exists on `upgrade` only.
    fn rkos_args(&self, sub: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = sub.iter().map(|s| s.to_string()).collect();
        if !self.chroot {
            let at = |p: &str| self.host_root.join(p).display().to_string();
            v.extend(["--root".into(), self.host_root.display().to_string()]);
            v.extend(["--state-dir".into(), at(STATE_MOUNT)]);
            if sub.first() == Some(&"upgrade") {
                v.extend(["--keys-dir".into(), at(IMAGE_KEYS_DIR)]);
            }
        }
        v
    }

    /// `rkos upgrade` of the bundle, refusing any version but the plan's: staging and arming
    /// both go through it (arming re-verifies the staged slot).
    async fn upgrade(&self, bundle_url: &str, version: &str) -> Result<String, NodeOpsError> {
        self.rkos(&[
            "upgrade",
            "--bundle",
            bundle_url,
            "--expect-version",
            version,
        ])
        .await
    }

    async fn rkos(&self, sub: &[&str]) -> Result<String, NodeOpsError> {
        let args = self.rkos_args(sub);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&self.rkos, &args).await
    }

    async fn run(&self, program: &Path, args: &[&str]) -> Result<String, NodeOpsError> {
        let cmd = format!("{} {}", program.display(), args.join(" "));
        let mut command = tokio::process::Command::new(program);
        // The command's error ends up in the NodeUpgrade's lastError: no backtraces (the
        // agent's own RUST_BACKTRACE must not leak into them) and no colour codes.
        command
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        if self.chroot {
            let root = self.host_root.clone();
            // SAFETY: between fork and exec only async-signal-safe calls are allowed; chroot
            // and chdir are plain system calls. std's chroot is used rather than a `chroot`
            // binary because the agent's image holds nothing but the agent.
            unsafe {
                command.pre_exec(move || {
                    std::os::unix::fs::chroot(&root)?;
                    std::env::set_current_dir("/")
                });
            }
        }
        let out = command
            .output()
            .await
            .map_err(|source| NodeOpsError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(NodeOpsError::Command {
                cmd,
                status: out.status.to_string(),
                stderr: error_text(&String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Where `rkos` looks for RKOS_STATE and the image's trusted keys by default (rkos-slots'
/// `DEFAULT_STATE_MOUNT`, rkos-bundle's `IMAGE_KEYS_DIR`), relative to the host's `/`; the
/// contract test (`tests/real_rkos.rs`) checks they still match.
pub const STATE_MOUNT: &str = "run/rkos/state";
pub const IMAGE_KEYS_DIR: &str = "usr/lib/rkos/trusted-keys";

/// The subset of `rkos status --json` (rkos-slots' `Status`) the agent reads. Every field is
/// required, `null` included (`Option::deserialize` turns off serde's "missing means None"):
/// a field renamed on either side must fail loudly here, not read as "no trial" or "not on
/// trial", which would make the agent stage forever or never mark the slot good.
#[derive(Deserialize)]
struct StatusJson {
    #[serde(deserialize_with = "Option::deserialize")]
    active: Option<String>,
    default: String,
    #[serde(deserialize_with = "Option::deserialize")]
    trial: Option<TrialJson>,
    running_on_trial: bool,
    #[serde(deserialize_with = "Option::deserialize")]
    last_outcome: Option<OutcomeJson>,
    slots: Vec<SlotJson>,
}

#[derive(Deserialize)]
struct TrialJson {
    slot: String,
}

#[derive(Deserialize)]
struct OutcomeJson {
    outcome: String,
    slot: String,
}

#[derive(Deserialize)]
struct SlotJson {
    slot: String,
    #[serde(deserialize_with = "Option::deserialize")]
    version: Option<String>,
}

/// Turns `rkos status --json` output into facts. Pure, so it is unit-tested.
pub fn facts_from_status_json(json: &str, boot_id: &str) -> Result<NodeFacts, NodeOpsError> {
    let installed = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("installed").and_then(serde_json::Value::as_bool));
    if installed == Some(false) {
        return Err(NodeOpsError::Status(
            "this node is not installed (live or netboot): it has no A/B slots to upgrade".into(),
        ));
    }
    let s: StatusJson =
        serde_json::from_str(json).map_err(|e| NodeOpsError::Status(e.to_string()))?;
    let active = s.active.clone().unwrap_or_else(|| s.default.clone());
    let version_of = |slot: &str| {
        s.slots
            .iter()
            .find(|x| x.slot == slot)
            .and_then(|x| x.version.clone())
    };
    let version = version_of(&active)
        .ok_or_else(|| NodeOpsError::Status(format!("the running slot {active} has no version")))?;
    let other = s.slots.iter().find(|x| x.slot != active);
    let trial_armed = s
        .trial
        .as_ref()
        .filter(|t| t.slot != active)
        .and_then(|t| version_of(&t.slot));
    let rolled_back = s
        .last_outcome
        .as_ref()
        .filter(|o| o.outcome == "rolled-back")
        .map(|o| {
            format!(
                "slot {} ({}) was never marked good; GRUB fell back to slot {active}",
                o.slot,
                version_of(&o.slot).unwrap_or_else(|| "no version".into())
            )
        });
    Ok(NodeFacts {
        version,
        slot: active,
        boot_id: boot_id.trim().to_string(),
        staged: other.and_then(|o| o.version.clone()),
        trial_armed,
        running_on_trial: s.running_on_trial,
        rolled_back,
    })
}

impl NodeOps for HostNodeOps {
    async fn facts(&self) -> Result<NodeFacts, NodeOpsError> {
        let path = self.host_root.join("proc/sys/kernel/random/boot_id");
        let boot_id = tokio::fs::read_to_string(&path)
            .await
            .map_err(|source| NodeOpsError::Read { path, source })?;
        let json = self.rkos(&["status", "--json"]).await?;
        facts_from_status_json(&json, &boot_id)
    }

    async fn stage(&self, bundle_url: &str, version: &str) -> Result<StageReport, NodeOpsError> {
        let out = self.upgrade(bundle_url, version).await?;
        let after = self.armed(bundle_url, version, &out).await?;
        let bytes = downloaded_bytes(&out)
            // Output without the figure: count what the staged slot holds.
            .or_else(|| slot_bytes(&self.host_root, &after.slot))
            .unwrap_or(0);
        Ok(StageReport { bytes })
    }

    async fn flip(&self, bundle_url: &str, version: &str) -> Result<(), NodeOpsError> {
        let f = self.facts().await?;
        if f.trial_armed.as_deref() == Some(version) {
            return Ok(());
        }
        // `rkos upgrade` arms the trial only right after verifying every staged file against
        // the signed manifest; running it again re-checks the slot and arms it. There is
        // deliberately no way to arm a slot without that check.
        let out = self.upgrade(bundle_url, version).await?;
        self.armed(bundle_url, version, &out).await.map(|_| ())
    }

    async fn reboot(&self) -> Result<(), NodeOpsError> {
        let (program, args) = self
            .reboot
            .split_first()
            .ok_or_else(|| NodeOpsError::Failed("no reboot command configured".into()))?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(Path::new(program), &args).await.map(|_| ())
    }

    async fn healthy(&self) -> Result<bool, NodeOpsError> {
        // k3s answering is the node-side half; the agent also requires the Node to be Ready.
        let sock = self.host_root.join("run/k3s/containerd/containerd.sock");
        Ok(tokio::fs::metadata(&sock).await.is_ok())
    }

    async fn mark_good(&self) -> Result<(), NodeOpsError> {
        self.rkos(&["mark-good"]).await.map(|_| ())
    }
}

impl HostNodeOps {
    /// Checks that the `rkos upgrade` that just succeeded armed a trial boot of `version`.
    /// `--expect-version` makes it refuse a bundle of another version, but it exits 0
    /// without arming anything when the node already runs that version ("already running
    /// version V; nothing to do"): the state machine would then stage over and over. Returns
    /// the facts read.
    async fn armed(
        &self,
        bundle_url: &str,
        version: &str,
        out: &str,
    ) -> Result<NodeFacts, NodeOpsError> {
        let f = self.facts().await?;
        if f.trial_armed.as_deref() == Some(version) {
            return Ok(f);
        }
        let said = out
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("nothing");
        Err(NodeOpsError::Failed(format!(
            "`rkos upgrade --bundle {bundle_url}` did not arm a trial boot of {version}: it said \
             \"{said}\" (running {}, inactive slot holds {}, trial armed for {}); \
             is {version} the version in that bundle's manifest?",
            f.version,
            f.staged.as_deref().unwrap_or("nothing"),
            f.trial_armed.as_deref().unwrap_or("nothing"),
        )))
    }
}

/// What of a failed command's stderr goes into the NodeUpgrade's `lastError`: anyhow's
/// `Error: ...` report with its "Caused by" chain on one line when there is one (the lines
/// before it are progress logging), else the last few lines. Bounded: it is stored in an
/// object's status.
pub fn error_text(stderr: &str) -> String {
    const MAX: usize = 1000;
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = match lines.iter().position(|l| l.starts_with("Error: ")) {
        Some(i) => {
            let mut text = lines[i]["Error: ".len()..].to_string();
            for l in &lines[i + 1..] {
                if l.starts_with("Stack backtrace:") {
                    break;
                }
                if *l == "Caused by:" {
                    continue;
                }
                // With several causes anyhow numbers them: "0: ...".
                let cause = match l.split_once(": ") {
                    Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => rest,
                    _ => l,
                };
                // Errors often repeat their source's message; say it once.
                if !text.ends_with(cause) {
                    text.push_str(": ");
                    text.push_str(cause);
                }
            }
            text
        }
        None => lines[lines.len().saturating_sub(3)..].join("; "),
    };
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// The byte count in `rkos upgrade`'s summary line ("... N bytes downloaded, M resumed").
pub fn downloaded_bytes(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|l| {
        let before = &l[..l.find(" bytes downloaded")?];
        before.rsplit([' ', '(', ';']).next()?.parse().ok()
    })
}

/// Size of the files in the slot that is not `active` (the one just staged).
fn slot_bytes(host_root: &Path, active: &str) -> Option<u64> {
    let other = if active == "A" { "B" } else { "A" };
    for state in [STATE_MOUNT, "mnt/state"] {
        let dir = host_root.join(state).join("slots").join(other);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            return Some(
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum(),
            );
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Fake for tests: a simulated A/B node with boot counting.

/// State of a simulated node. Reboots are applied at once (the new boot id, the trial slot
/// booted, or a fallback when the version is in `broken`).
#[derive(Clone, Debug)]
pub struct FakeNode {
    pub slots: [Option<String>; 2],
    /// Index of the booted slot.
    pub active: usize,
    /// Index of the slot armed for a trial boot.
    pub trial: Option<usize>,
    pub running_on_trial: bool,
    pub last_rolled_back: Option<String>,
    pub boots: u32,
    /// Versions whose trial boot never becomes healthy: GRUB falls back by itself.
    pub broken: Vec<String>,
    pub healthy: bool,
    /// Make the next `stage` fail with this message.
    pub fail_stage: Option<String>,
    pub stage_bytes: u64,
    /// How long a stage takes (lets tests kill an agent mid-stage).
    pub stage_delay: std::time::Duration,
    pub stages: u32,
    pub reboots: u32,
    pub calls: Vec<String>,
}

impl FakeNode {
    pub fn new(version: &str) -> Self {
        FakeNode {
            slots: [Some(version.to_string()), None],
            active: 0,
            trial: None,
            running_on_trial: false,
            last_rolled_back: None,
            boots: 1,
            broken: Vec::new(),
            healthy: true,
            fail_stage: None,
            stage_bytes: 1 << 20,
            stage_delay: std::time::Duration::ZERO,
            stages: 0,
            reboots: 0,
            calls: Vec::new(),
        }
    }

    pub fn facts(&self) -> NodeFacts {
        let name = |i: usize| if i == 0 { "A" } else { "B" };
        let other = 1 - self.active;
        NodeFacts {
            version: self.slots[self.active].clone().unwrap_or_default(),
            slot: name(self.active).into(),
            boot_id: format!("boot-{}", self.boots),
            staged: self.slots[other].clone(),
            trial_armed: self
                .trial
                .filter(|&t| t != self.active)
                .and_then(|t| self.slots[t].clone()),
            running_on_trial: self.running_on_trial,
            rolled_back: self.last_rolled_back.clone(),
        }
    }

    pub fn stage(&mut self, version: &str) -> Result<StageReport, NodeOpsError> {
        self.calls.push(format!("stage {version}"));
        self.stages += 1;
        if let Some(msg) = self.fail_stage.take() {
            return Err(NodeOpsError::Failed(msg));
        }
        let other = 1 - self.active;
        self.slots[other] = Some(version.to_string());
        self.trial = Some(other);
        Ok(StageReport {
            bytes: self.stage_bytes,
        })
    }

    pub fn flip(&mut self, version: &str) -> Result<(), NodeOpsError> {
        self.calls.push(format!("flip {version}"));
        let other = 1 - self.active;
        if self.slots[other].as_deref() != Some(version) {
            return Err(NodeOpsError::Failed(format!("{version} is not staged")));
        }
        self.trial = Some(other);
        Ok(())
    }

    /// A reboot, with GRUB's boot counting: a trial of a broken version never gets marked
    /// good, so its tries run out and the old default boots again.
    pub fn reboot(&mut self) {
        self.calls.push("reboot".into());
        self.reboots += 1;
        self.boots += 1;
        if let Some(t) = self.trial.filter(|&t| t != self.active) {
            let v = self.slots[t].clone().unwrap_or_default();
            if self.broken.contains(&v) {
                self.boots += 2; // the failed trial boots
                self.trial = None;
                self.running_on_trial = false;
                self.last_rolled_back = Some(format!(
                    "slot {} ({v}) was never marked good; GRUB fell back to slot {}",
                    if t == 0 { "A" } else { "B" },
                    if self.active == 0 { "A" } else { "B" }
                ));
            } else {
                self.active = t;
                self.running_on_trial = true;
                self.last_rolled_back = None;
            }
        }
    }

    pub fn mark_good(&mut self) {
        self.calls.push("mark-good".into());
        if self.running_on_trial {
            self.running_on_trial = false;
            self.trial = None;
        }
    }
}

/// A shared handle on a [`FakeNode`], so a test can inspect and change it while an agent
/// runs.
#[derive(Clone, Debug)]
pub struct FakeNodeOps(pub Arc<Mutex<FakeNode>>);

impl FakeNodeOps {
    pub fn new(version: &str) -> Self {
        FakeNodeOps(Arc::new(Mutex::new(FakeNode::new(version))))
    }
    pub fn with<R>(&self, f: impl FnOnce(&mut FakeNode) -> R) -> R {
        f(&mut self.0.lock().expect("fake node lock"))
    }
}

impl NodeOps for FakeNodeOps {
    async fn facts(&self) -> Result<NodeFacts, NodeOpsError> {
        Ok(self.with(|n| n.facts()))
    }
    async fn stage(&self, _bundle_url: &str, version: &str) -> Result<StageReport, NodeOpsError> {
        let delay = self.with(|n| n.stage_delay);
        tokio::time::sleep(delay).await;
        self.with(|n| n.stage(version))
    }
    async fn flip(&self, _bundle_url: &str, version: &str) -> Result<(), NodeOpsError> {
        self.with(|n| n.flip(version))
    }
    async fn reboot(&self) -> Result<(), NodeOpsError> {
        self.with(|n| n.reboot());
        Ok(())
    }
    async fn healthy(&self) -> Result<bool, NodeOpsError> {
        Ok(self.with(|n| n.healthy))
    }
    async fn mark_good(&self) -> Result<(), NodeOpsError> {
        self.with(|n| n.mark_good());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_TRIAL_ARMED: &str = r#"{"active":"A","default":"A","fallback":null,
        "trial":{"slot":"B","tries_left":3},"running_on_trial":false,"last_outcome":null,
        "slots":[{"slot":"A","version":"1","arch":"amd64","error":null},
                 {"slot":"B","version":"2","arch":"amd64","error":null}]}"#;

    #[test]
    fn status_json_with_trial_armed() {
        let f = facts_from_status_json(STATUS_TRIAL_ARMED, "abc\n").unwrap();
        assert_eq!(f.version, "1");
        assert_eq!(f.slot, "A");
        assert_eq!(f.boot_id, "abc");
        assert_eq!(f.staged.as_deref(), Some("2"));
        assert_eq!(f.trial_armed.as_deref(), Some("2"));
        assert!(!f.running_on_trial);
        assert_eq!(f.rolled_back, None);
    }

    #[test]
    fn status_json_after_fallback_and_on_trial() {
        let rolled = r#"{"active":"A","default":"A","trial":null,"running_on_trial":false,
            "last_outcome":{"outcome":"rolled-back","slot":"B"},
            "slots":[{"slot":"A","version":"1"},{"slot":"B","version":"2"}]}"#;
        let f = facts_from_status_json(rolled, "x").unwrap();
        assert_eq!(f.version, "1");
        assert!(f
            .rolled_back
            .unwrap()
            .contains("slot B (2) was never marked good"));
        let trial = r#"{"active":"B","default":"A","trial":{"slot":"B","tries_left":2},
            "running_on_trial":true,"last_outcome":null,
            "slots":[{"slot":"A","version":"1"},{"slot":"B","version":"2"}]}"#;
        let f = facts_from_status_json(trial, "x").unwrap();
        assert_eq!(f.version, "2");
        assert_eq!(f.slot, "B");
        assert!(f.running_on_trial);
        assert_eq!(f.trial_armed, None);
    }

    #[test]
    fn byte_count_from_the_upgrade_summary() {
        let out = "verifying...\nstaged version 2 in slot B (signed by key 1A2B; 734003200 bytes downloaded, 0 resumed)\nreboot to switch\n";
        assert_eq!(downloaded_bytes(out), Some(734_003_200));
        assert_eq!(
            downloaded_bytes("already running version 2; nothing to do"),
            None
        );
    }

    #[test]
    fn live_node_is_reported_as_not_installed() {
        let e = facts_from_status_json(r#"{"installed":false}"#, "x").unwrap_err();
        assert!(e.to_string().contains("not installed"), "{e}");
    }

    #[test]
    fn bad_status_json_is_a_clear_error() {
        let e = facts_from_status_json("not json", "x").unwrap_err();
        assert!(e.to_string().contains("rkos status --json"), "{e}");
        let empty = r#"{"active":"A","default":"A","trial":null,"last_outcome":null,
            "running_on_trial":false,
            "slots":[{"slot":"A","version":null},{"slot":"B","version":null}]}"#;
        let e = facts_from_status_json(empty, "x").unwrap_err();
        assert!(e.to_string().contains("no version"), "{e}");
    }

    #[test]
    fn every_field_read_from_the_status_is_required() {
        // Dropping any one field the agent reads must be an error naming it, never a silent
        // default (null is a value, absence is a renamed field).
        let full: serde_json::Value = serde_json::from_str(STATUS_TRIAL_ARMED).unwrap();
        facts_from_status_json(&full.to_string(), "x").unwrap();
        for (pointer, field) in [
            ("", "active"),
            ("", "default"),
            ("", "trial"),
            ("", "running_on_trial"),
            ("", "last_outcome"),
            ("", "slots"),
            ("/trial", "slot"),
            ("/slots/0", "slot"),
            ("/slots/0", "version"),
        ] {
            let mut v = full.clone();
            v.pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(field)
                .unwrap();
            let e = facts_from_status_json(&v.to_string(), "x").unwrap_err();
            assert!(e.to_string().contains(field), "{pointer}/{field}: {e}");
        }
        let mut v = full.clone();
        v["last_outcome"] = serde_json::json!({"outcome": "rolled-back", "slot": "B"});
        facts_from_status_json(&v.to_string(), "x").unwrap();
        for field in ["outcome", "slot"] {
            let mut w = v.clone();
            w["last_outcome"].as_object_mut().unwrap().remove(field);
            let e = facts_from_status_json(&w.to_string(), "x").unwrap_err();
            assert!(e.to_string().contains(field), "last_outcome/{field}: {e}");
        }
    }

    #[test]
    fn command_errors_keep_the_report_not_the_noise() {
        let stderr = "\x1b[2m2026-11-22T18:14:03Z\x1b[0m INFO downloading file=\"initrd\"\n\
            Error: upgrade failed; the running slot and boot configuration are unchanged\n\n\
            Caused by:\n    manifest is signed by key 4BE0, which is not trusted\n\n\
            Stack backtrace:\n   0: anyhow::error\n";
        assert_eq!(
            error_text(stderr),
            "upgrade failed; the running slot and boot configuration are unchanged: \
             manifest is signed by key 4BE0, which is not trusted"
        );
        let repeated = "Error: invalid manifest: required file \"vmlinuz\" missing\n\n\
            Caused by:\n    0: required file \"vmlinuz\" missing\n    1: lower\n";
        assert_eq!(
            error_text(repeated),
            "invalid manifest: required file \"vmlinuz\" missing: lower"
        );
        assert_eq!(error_text("a\nb\n\nc\nd\n"), "b; c; d");
        let long = format!("Error: {}", "\u{e9}".repeat(2000));
        let t = error_text(&long);
        assert!(t.len() <= 1003 && t.ends_with("..."), "{}", t.len());
    }

    #[test]
    fn fake_node_boot_counting() {
        let mut n = FakeNode::new("1");
        n.stage("2").unwrap();
        assert_eq!(n.facts().trial_armed.as_deref(), Some("2"));
        n.reboot();
        let f = n.facts();
        assert_eq!((f.version.as_str(), f.slot.as_str()), ("2", "B"));
        assert!(f.running_on_trial);
        n.mark_good();
        assert!(!n.facts().running_on_trial);

        let mut b = FakeNode::new("1");
        b.broken.push("2".into());
        b.stage("2").unwrap();
        b.reboot();
        let f = b.facts();
        assert_eq!(f.version, "1");
        assert!(f.rolled_back.is_some());
    }

    #[tokio::test]
    async fn host_ops_report_a_missing_command_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let ops = HostNodeOps {
            rkos: dir.path().join("no-such-rkos"),
            ..HostNodeOps::new("/")
        };
        let e = ops.run(&ops.rkos.clone(), &["status"]).await.unwrap_err();
        assert!(e.to_string().contains("no-such-rkos"), "{e}");
    }

    #[tokio::test]
    async fn host_ops_parse_a_real_command() {
        // A stand-in `rkos` script prints a status; the facts come from it and the boot id
        // file under the given root.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("rkos");
        std::fs::write(
            &script,
            format!("#!/bin/sh\ncat <<'EOF'\n{STATUS_TRIAL_ARMED}\nEOF\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ops = HostNodeOps {
            rkos: script,
            ..HostNodeOps::new("/")
        };
        let f = ops
            .run(&ops.rkos.clone(), &["status", "--json"])
            .await
            .unwrap();
        assert_eq!(
            facts_from_status_json(&f, "b")
                .unwrap()
                .trial_armed
                .as_deref(),
            Some("2")
        );
        let failing = dir.path().join("fail");
        std::fs::write(&failing, "#!/bin/sh\necho 'bad signature' >&2\nexit 3\n").unwrap();
        std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = ops
            .run(&failing, &["upgrade"])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad signature"), "{e}");
    }
}
