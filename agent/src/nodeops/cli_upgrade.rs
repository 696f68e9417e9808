//! `rkos upgrade --bundle URL --expect-version V --json`: rkos-slots' [`UpgradeReport`], as
//! printed by the node, turned into what staging came to: the bytes downloaded (which the
//! agent reports in the NodeUpgrade's status), or the error that fails the node.

use std::process::Output;

use rkos_slots::UpgradeReport;

use super::cli_error::{command_error, error_line};
use super::{NodeOpsError, StageReport};

/// Reads the report (one JSON object on stdout).
pub fn upgrade_report(stdout: &str) -> Result<UpgradeReport, NodeOpsError> {
    serde_json::from_str(stdout.trim()).map_err(|e| NodeOpsError::Upgrade(e.to_string()))
}

/// What the run `cmd` of `rkos upgrade` that ended with `out` did about `version` from
/// `bundle_url`: success only when it armed a trial boot of that version. It exits 0 without
/// arming anything when the node already runs the version ("already running"): the state
/// machine would then stage over and over, so that is an error here. Pure, so it is tested
/// on recorded outputs.
pub fn stage_outcome(
    cmd: &str,
    out: &Output,
    bundle_url: &str,
    version: &str,
) -> Result<StageReport, NodeOpsError> {
    let report = match upgrade_report(&String::from_utf8_lossy(&out.stdout)) {
        Ok(r) => r,
        // It failed before it could print its report (a usage error, a crash): stderr says why.
        Err(_) if !out.status.success() => return Err(command_error(cmd, out)),
        Err(e) => return Err(e),
    };
    let not_armed = |what: String| {
        NodeOpsError::Failed(format!(
            "`rkos upgrade --bundle {bundle_url}` did not arm a trial boot of {version}: {what}"
        ))
    };
    match report {
        UpgradeReport::Failed { error } => Err(NodeOpsError::Command {
            cmd: cmd.to_string(),
            status: out.status.to_string(),
            error: error_line(error.iter().map(String::as_str)),
        }),
        UpgradeReport::Staged {
            version: staged,
            downloaded_bytes,
            ..
        } if staged == version => Ok(StageReport {
            bytes: downloaded_bytes,
        }),
        // `--expect-version` refuses this before writing anything; checked all the same.
        UpgradeReport::Staged {
            version: staged, ..
        } => Err(not_armed(format!("it staged version {staged}"))),
        already @ UpgradeReport::AlreadyRunning { .. } => Err(not_armed(format!(
            "it says \"{}\"; is {version} the version in that bundle's manifest?",
            already.to_string().trim_end()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use rkos_slots::{Slot, Trial};

    use super::*;

    /// What `rkos upgrade` left: its exit code and output.
    fn ran(code: i32, stdout: &str, stderr: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    fn outcome(out: &Output) -> Result<StageReport, NodeOpsError> {
        stage_outcome("rkos upgrade", out, "http://b/2", "2")
    }

    #[test]
    fn staged_reports_the_bytes_downloaded() {
        let json = fixture!("upgrade/staged.json");
        assert_eq!(
            upgrade_report(json).unwrap(),
            UpgradeReport::Staged {
                version: "2".into(),
                slot: Slot::B,
                key_id: "<key>".into(),
                downloaded_bytes: 140_000,
                reused_bytes: 0,
                armed: Trial {
                    slot: Slot::B,
                    tries_left: 3
                },
            }
        );
        assert_eq!(
            outcome(&ran(0, json, "")).unwrap(),
            StageReport { bytes: 140_000 }
        );
        // Another version than the plan's is never success.
        let e = stage_outcome("rkos upgrade", &ran(0, json, ""), "http://b/3", "3")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("did not arm a trial boot of 3: it staged version 2"),
            "{e}"
        );
    }

    #[test]
    fn already_running_is_an_error_naming_it() {
        let json = fixture!("upgrade/already-running.json");
        let e = stage_outcome("rkos upgrade", &ran(0, json, ""), "http://b/1", "1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "`rkos upgrade --bundle http://b/1` did not arm a trial boot of 1: it says \
                 \"already running version 1; nothing to do\""
            ),
            "{e}"
        );
    }

    #[test]
    fn a_refusal_is_the_commands_error_on_one_line() {
        for (fixture, says) in [
            (
                fixture!("upgrade/untrusted-key.json"),
                "upgrade refused; the running slot and boot configuration are unchanged \
                 (<dir>/bundle-2-evil): manifest is signed by key <untrusted-key>, which is not \
                 among the node's 1 trusted key(s)",
            ),
            (
                fixture!("upgrade/wrong-version.json"),
                "upgrade refused; the running slot and boot configuration are unchanged \
                 (<dir>/bundle-1-keys): the bundle holds version 1, not the expected 2",
            ),
        ] {
            let e = outcome(&ran(1, fixture, "Error: ignored")).unwrap_err();
            let NodeOpsError::Command { error, status, .. } = &e else {
                panic!("{e:?}")
            };
            assert_eq!(error, says);
            assert!(status.contains('1'), "{status}");
        }
    }

    #[test]
    fn without_a_report_the_error_comes_from_stderr() {
        let usage = ran(2, "", "error: unexpected argument '--json' found\n");
        let e = outcome(&usage).unwrap_err().to_string();
        assert!(e.contains("unexpected argument '--json'"), "{e}");
        // Exit 0 without a report: the output is not what the agent reads.
        let e = outcome(&ran(0, "staged version 2 in slot B", ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`rkos upgrade --json` printed something unexpected"),
            "{e}"
        );
    }
}
