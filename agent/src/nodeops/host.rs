//! The real node side: the `rkos` command on the host, chrooted into its root.

use std::path::{Path, PathBuf};
use std::process::Output;

use rkos_contract::paths;
use rkos_slots::health::{self, HealthFacts, Seen};

use super::cli_error::command_error;
use super::cli_status::facts_from_status_json;
use super::cli_upgrade::stage_outcome;
use super::{netboot, NodeFacts, NodeOps, NodeOpsError, StageReport};
use crate::machine::Release;

/// Runs `rkos` on the host. `host_root` is where the host's `/` is mounted (`/host` in the
/// DaemonSet): the boot id is read under it, and commands run chrooted into it when `chroot`
/// is set (tests point it at a temp dir and run without a chroot).
#[derive(Clone, Debug)]
pub struct HostNodeOps {
    pub host_root: PathBuf,
    pub chroot: bool,
    /// The `rkos` binary, as seen inside the chroot.
    pub rkos: PathBuf,
    /// The reboot command, as seen inside the chroot.
    pub reboot: Vec<String>,
    /// The command that exits 0 when k3s's unit is active, as seen inside the chroot.
    pub k3s_active: Vec<String>,
}

impl HostNodeOps {
    pub fn new(host_root: impl Into<PathBuf>) -> Self {
        let host_root = host_root.into();
        let systemctl = "/usr/bin/systemctl".to_string();
        HostNodeOps {
            chroot: host_root != Path::new("/"),
            host_root,
            rkos: PathBuf::from("/usr/bin/rkos"),
            reboot: vec![systemctl.clone(), "reboot".into()],
            k3s_active: vec![
                systemctl,
                "is-active".into(),
                "--quiet".into(),
                health::K3S_UNIT.into(),
            ],
        }
    }

    /// `rkos SUB...` with the options that point it at the host when it runs without a chroot
    /// (tests, or an agent started on the host itself): `rkos`'s defaults are absolute paths
    /// of the host, right only inside the chroot. `--keys-dir` exists on `upgrade` only.
    fn rkos_args(&self, sub: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = sub.iter().map(|s| s.to_string()).collect();
        if !self.chroot {
            let at = |p: &str| paths::under(&self.host_root, p).display().to_string();
            v.extend(["--root".into(), self.host_root.display().to_string()]);
            v.extend(["--state-dir".into(), at(paths::STATE_MOUNT)]);
            if sub.first() == Some(&"upgrade") {
                v.extend(["--keys-dir".into(), at(paths::TRUSTED_KEYS_DIR)]);
            }
        }
        v
    }

    /// `rkos upgrade --json` of the bundle, refusing any version but the plan's: staging and
    /// arming both go through it (arming re-verifies the staged slot). `--allow-downgrade`
    /// only when the plan says so; without it `rkos` itself refuses a lower version.
    async fn upgrade(&self, release: &Release) -> Result<StageReport, NodeOpsError> {
        let mut sub = vec![
            "upgrade",
            "--bundle",
            &release.bundle_url,
            "--expect-version",
            &release.version,
            "--json",
        ];
        if release.allow_downgrade {
            sub.push("--allow-downgrade");
        }
        let args = self.rkos_args(&sub);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (cmd, out) = self.output(&self.rkos, &args).await?;
        stage_outcome(&cmd, &out, &release.bundle_url, &release.version)
    }

    async fn rkos(&self, sub: &[&str]) -> Result<String, NodeOpsError> {
        let args = self.rkos_args(sub);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&self.rkos, &args).await
    }

    /// Runs a command to success; its stdout.
    async fn run(&self, program: &Path, args: &[&str]) -> Result<String, NodeOpsError> {
        let (cmd, out) = self.output(program, args).await?;
        if !out.status.success() {
            return Err(command_error(&cmd, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a command; the command line (for messages) and what it left, whatever its exit.
    async fn output(
        &self,
        program: &Path,
        args: &[&str],
    ) -> Result<(String, Output), NodeOpsError> {
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
        match command.output().await {
            Ok(out) => Ok((cmd, out)),
            Err(source) => Err(NodeOpsError::Spawn { cmd, source }),
        }
    }
}

/// A configured command line as program and arguments.
fn argv(command: &[String]) -> Result<(&Path, Vec<&str>), NodeOpsError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| NodeOpsError::Failed("an empty command is configured".into()))?;
    Ok((
        Path::new(program),
        args.iter().map(String::as_str).collect(),
    ))
}

impl HostNodeOps {
    async fn boot_id(&self) -> Result<String, NodeOpsError> {
        let path = self.host_root.join("proc/sys/kernel/random/boot_id");
        tokio::fs::read_to_string(&path)
            .await
            .map_err(|source| NodeOpsError::Read { path, source })
    }

    /// The boot report, when the node booted from the network.
    async fn netboot(&self) -> Option<rkos_contract::InitReport> {
        let path = paths::under(&self.host_root, paths::INIT_REPORT);
        let json = tokio::fs::read_to_string(path).await.ok()?;
        netboot::netboot_report(&json)
    }

    fn netboot_marker(&self) -> PathBuf {
        paths::under(&self.host_root, paths::NETBOOT_UPGRADE)
    }
}

impl NodeOps for HostNodeOps {
    async fn facts(&self) -> Result<NodeFacts, NodeOpsError> {
        let boot_id = self.boot_id().await?;
        if let Some(report) = self.netboot().await {
            let marker = tokio::fs::read_to_string(self.netboot_marker()).await.ok();
            return Ok(netboot::facts(&report, &boot_id, marker.as_deref()));
        }
        let json = self.rkos(&["status", "--json"]).await?;
        facts_from_status_json(&json, &boot_id)
    }

    async fn stage(&self, release: &Release) -> Result<StageReport, NodeOpsError> {
        if self.netboot().await.is_some() {
            // Nothing to download: the reboot boots what the farm serves.
            let path = self.netboot_marker();
            let marker = netboot::armed_marker(&release.version, &self.boot_id().await?);
            tokio::fs::write(&path, marker)
                .await
                .map_err(|e| NodeOpsError::Failed(format!("writing {}: {e}", path.display())))?;
            return Ok(StageReport { bytes: 0 });
        }
        self.upgrade(release).await
    }

    async fn flip(&self, release: &Release) -> Result<(), NodeOpsError> {
        let f = self.facts().await?;
        if f.trial_armed.as_deref() == Some(release.version.as_str()) {
            return Ok(());
        }
        // `rkos upgrade` arms the trial only right after verifying every staged file against
        // the signed manifest; running it again re-checks the slot and arms it. There is
        // deliberately no way to arm a slot without that check.
        self.upgrade(release).await.map(|_| ())
    }

    async fn reboot(&self) -> Result<(), NodeOpsError> {
        let (program, args) = argv(&self.reboot)?;
        self.run(program, &args).await.map(|_| ())
    }

    async fn health(&self) -> Result<HealthFacts, NodeOpsError> {
        // The same question `rkos mark-good` asks; the kubelet's healthz is on the host's
        // loopback, out of this pod's reach (the machine adds the Node's Ready condition).
        let (program, args) = argv(&self.k3s_active)?;
        let (_, out) = self.output(program, &args).await?;
        Ok(HealthFacts {
            k3s_unit: Seen::check(out.status.success(), || {
                format!("{} is not active", health::K3S_UNIT)
            }),
            ..HealthFacts::default()
        })
    }

    async fn mark_good(&self) -> Result<(), NodeOpsError> {
        self.rkos(&["mark-good"]).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn a_netboot_node_stages_nothing_and_reboots_for_the_plan() {
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| rkos_contract::paths::under(root.path(), p);
        std::fs::create_dir_all(at("/proc/sys/kernel/random")).unwrap();
        std::fs::create_dir_all(at(rkos_contract::paths::NETBOOT)).unwrap();
        std::fs::write(at("/proc/sys/kernel/random/boot_id"), "boot-1\n").unwrap();
        let report = rkos_contract::InitReport::new("0.1.0", rkos_contract::BootMode::Netboot);
        std::fs::write(
            at(rkos_contract::paths::INIT_REPORT),
            serde_json::to_string(&report).unwrap(),
        )
        .unwrap();
        // No `rkos` is run for such a node: a missing binary proves it.
        let ops = HostNodeOps {
            rkos: root.path().join("no-such-rkos"),
            chroot: false,
            ..HostNodeOps::new(root.path())
        };
        let f = ops.facts().await.unwrap();
        assert_eq!((f.version.as_str(), f.trial_armed), ("0.1.0", None));
        let release = Release {
            bundle_url: "http://farm/image/".into(),
            version: "0.2.0".into(),
            allow_downgrade: false,
        };
        assert_eq!(ops.stage(&release).await.unwrap().bytes, 0);
        let f = ops.facts().await.unwrap();
        assert_eq!(f.trial_armed.as_deref(), Some("0.2.0"));
        assert_eq!(f.slot, super::super::Booted::Netboot);
    }

    /// `rkos upgrade` gets `--allow-downgrade` exactly when the plan allows it, for staging
    /// and for arming alike; the rest of its command line is the same either way.
    #[tokio::test]
    async fn allow_downgrade_reaches_the_command_only_when_the_plan_says_so() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc/sys/kernel/random")).unwrap();
        std::fs::write(root.path().join("proc/sys/kernel/random/boot_id"), "b\n").unwrap();
        // The stand-in records each `upgrade` command line (one argument a line, then `--`)
        // and reports version 2 staged; `status` shows nothing armed, so `flip` runs it too.
        let script = root.path().join("rkos");
        let argv = root.path().join("argv");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n\
                 status) cat <<'EOF'\n{}\nEOF\n;;\n\
                 upgrade) printf '%s\\n' \"$@\" -- >> '{}'; cat <<'EOF'\n{}\nEOF\n;;\n\
                 esac\n",
                fixture!("status/fresh.json"),
                argv.display(),
                fixture!("upgrade/staged.json"),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ops = HostNodeOps {
            rkos: script,
            chroot: false,
            ..HostNodeOps::new(root.path())
        };
        let mut release = Release {
            bundle_url: "http://bundles/rkos-2".into(),
            version: "2".into(),
            allow_downgrade: false,
        };
        ops.stage(&release).await.unwrap();
        ops.flip(&release).await.unwrap();
        release.allow_downgrade = true;
        ops.stage(&release).await.unwrap();
        ops.flip(&release).await.unwrap();

        let log = std::fs::read_to_string(&argv).unwrap();
        let runs: Vec<Vec<&str>> = log
            .split_terminator("--\n")
            .map(|run| run.lines().collect())
            .collect();
        assert_eq!(runs.len(), 4, "{log}");
        let upgrade = |extra: &[&str]| {
            let mut sub = vec!["upgrade", "--bundle", "http://bundles/rkos-2"];
            sub.extend(["--expect-version", "2", "--json"]);
            sub.extend(extra);
            ops.rkos_args(&sub)
        };
        let (base, allowed) = (upgrade(&[]), upgrade(&["--allow-downgrade"]));
        for (i, run) in runs.iter().enumerate() {
            let want = if i < 2 { &base } else { &allowed };
            assert_eq!(run, want, "run {i}");
        }
        assert!(!base.iter().any(|a| a == "--allow-downgrade"));
    }

    #[tokio::test]
    async fn host_ops_parse_a_real_command() {
        // A stand-in `rkos` script prints a status; the facts come from it and the boot id
        // file under the given root.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("rkos");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat <<'EOF'\n{}\nEOF\n",
                fixture!("status/trial-armed.json")
            ),
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
