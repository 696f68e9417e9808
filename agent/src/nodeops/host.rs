//! The real node side: the `rkos` command on the host, chrooted into its root.

use std::path::{Path, PathBuf};
use std::process::Output;

use rkos_contract::paths;
use rkos_slots::health::{self, HealthFacts, Seen};

use super::cli_error::command_error;
use super::cli_status::facts_from_status_json;
use super::cli_upgrade::stage_outcome;
use super::{NodeFacts, NodeOps, NodeOpsError, StageReport};

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
    /// arming both go through it (arming re-verifies the staged slot).
    async fn upgrade(&self, bundle_url: &str, version: &str) -> Result<StageReport, NodeOpsError> {
        let args = self.rkos_args(&[
            "upgrade",
            "--bundle",
            bundle_url,
            "--expect-version",
            version,
            "--json",
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (cmd, out) = self.output(&self.rkos, &args).await?;
        stage_outcome(&cmd, &out, bundle_url, version)
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
        self.upgrade(bundle_url, version).await
    }

    async fn flip(&self, bundle_url: &str, version: &str) -> Result<(), NodeOpsError> {
        let f = self.facts().await?;
        if f.trial_armed.as_deref() == Some(version) {
            return Ok(());
        }
        // `rkos upgrade` arms the trial only right after verifying every staged file against
        // the signed manifest; running it again re-checks the slot and arms it. There is
        // deliberately no way to arm a slot without that check.
        self.upgrade(bundle_url, version).await.map(|_| ())
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
