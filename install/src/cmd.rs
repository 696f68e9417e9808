//! Running the system tools (sgdisk, mkfs, mount, grub-install, ...), each in a process
//! group of its own: a Ctrl-C at the terminal goes to the foreground process group, and a
//! tool killed half-way (a partition table or a file system half-written) would leave the
//! disk worse than either before or after. The caller decides what Ctrl-C means for itself;
//! the tools always finish their step.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Output};

#[derive(Debug, thiserror::Error)]
#[error("`{cmd}` failed ({status}): {output}")]
pub struct CommandError {
    /// The command line as run.
    pub cmd: String,
    pub status: String,
    /// Its stderr, then its stdout, trimmed.
    pub output: String,
}

fn command(cmd: &str, args: &[&str]) -> Command {
    tracing::debug!("running {cmd} {}", args.join(" "));
    let mut c = Command::new(cmd);
    c.args(args).process_group(0);
    c
}

fn could_not_start(cmd: &str, args: &[&str], e: std::io::Error) -> CommandError {
    CommandError {
        cmd: line(cmd, args),
        status: "could not start".into(),
        output: e.to_string(),
    }
}

fn line(cmd: &str, args: &[&str]) -> String {
    std::iter::once(cmd)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with its output captured; its stdout when it succeeds.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, CommandError> {
    let out: Output = command(cmd, args)
        .output()
        .map_err(|e| could_not_start(cmd, args, e))?;
    if !out.status.success() {
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
        return Err(CommandError {
            cmd: line(cmd, args),
            status: out.status.to_string(),
            output: text.trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with the caller's stdout and stderr (for tools whose output is the progress
/// report, e.g. e2fsck) and returns its exit status, whatever it is.
pub fn status(cmd: &str, args: &[&str]) -> Result<ExitStatus, CommandError> {
    command(cmd, args)
        .status()
        .map_err(|e| could_not_start(cmd, args, e))
}

/// [`status`] that accepts only the exit codes in `ok`.
pub fn run_accepting(cmd: &str, args: &[&str], ok: &[i32]) -> Result<(), CommandError> {
    let st = status(cmd, args)?;
    if st.code().is_some_and(|c| ok.contains(&c)) {
        return Ok(());
    }
    Err(CommandError {
        cmd: line(cmd, args),
        status: st.to_string(),
        output: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_failures() {
        assert_eq!(run("sh", &["-c", "echo hi"]).unwrap(), "hi\n");
        let e = run("sh", &["-c", "echo out; echo err >&2; exit 3"]).unwrap_err();
        assert_eq!(e.cmd, "sh -c echo out; echo err >&2; exit 3");
        assert_eq!(e.output, "err\nout");
        assert!(e.status.contains('3'), "{}", e.status);
        let e = run("/nonexistent/tool", &["x"]).unwrap_err();
        assert_eq!(e.status, "could not start");
        assert!(run_accepting("sh", &["-c", "exit 1"], &[0, 1]).is_ok());
        assert!(run_accepting("sh", &["-c", "exit 4"], &[0, 1]).is_err());
    }

    #[test]
    fn each_tool_runs_in_a_process_group_of_its_own() {
        // Field 5 of /proc/PID/stat is the process group; it must be the shell's own pid.
        let out = run("sh", &["-c", "echo $$; cut -d' ' -f5 /proc/$$/stat"]).unwrap();
        let mut lines = out.split_whitespace();
        let (pid, pgid) = (lines.next().unwrap(), lines.next().unwrap_or("?"));
        assert_eq!(pid, pgid, "{out}");
    }
}
