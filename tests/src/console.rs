//! What a serial console transcript means: pure functions over the captured text, so the
//! matching rules are unit-tested without a VM.

use regex::Regex;

/// Terminal noise on a serial console (colour and cursor escapes, carriage returns, bracketed
/// paste switches) removed so tests match on the words a person would read.
pub fn clean(raw: &str) -> String {
    // CSI sequences (ESC [ ... final byte) and the two-byte ESC forms systemd and agetty use.
    static_regex(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78cM]")
        .replace_all(raw, "")
        .replace('\r', "")
}

/// The exit status and output of one command typed by [`command_line`]: `Some` once the end
/// marker with its status is in `text`. The typed line itself holds the marker with `$?`
/// unexpanded, so it never matches.
pub fn command_result(text: &str, id: u64) -> Option<(i32, String)> {
    let start = format!("@@rkos-begin-{id}@@");
    let re = Regex::new(&format!(r"@@rkos-end-{id}:(\d+)@@")).expect("valid marker regex");
    let m = re.captures(text)?;
    let whole = m.get(0).expect("group 0");
    let status: i32 = m[1].parse().ok()?;
    let before = &text[..whole.start()];
    // output starts after the last begin marker that was printed (not the typed one)
    let out_start = before
        .rfind(&format!("{start}\n"))
        .map(|i| i + start.len() + 1)?;
    Some((status, before[out_start..].to_string()))
}

/// The shell line that runs `cmd` between begin and end markers carrying `id`.
pub fn command_line(cmd: &str, id: u64) -> String {
    format!(
        "echo @@rkos-begin-{id}''@@; {cmd}; echo @@rkos-end-{id}:$?@@",
        id = id,
        cmd = cmd
    )
}

fn static_regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid regex")
}

/// One `rkos-init: <stage> <ms> ms [(own work <ms> ms)]` line of a boot log; the summary
/// line (`total <ms> ms, own work <ms> ms, ...`) is the stage `total`.
#[derive(Debug, Clone, PartialEq)]
pub struct InitStage {
    pub stage: String,
    pub ms: f64,
    /// The part that is rkos-init's own work (absent for waiting and for older logs).
    pub own_ms: Option<f64>,
}

/// The stage lines of a boot log, in order.
pub fn init_stages(text: &str) -> Vec<InitStage> {
    let re = static_regex(
        r"rkos-init: ([a-z][a-z0-9_-]*) ([0-9]+(?:\.[0-9]+)?) ms\b(?: \(own work ([0-9.]+) ms\)|, own work ([0-9.]+) ms)?",
    );
    re.captures_iter(text)
        .filter_map(|c| {
            Some(InitStage {
                stage: c[1].to_string(),
                ms: c[2].parse().ok()?,
                own_ms: c.get(3).or(c.get(4)).and_then(|m| m.as_str().parse().ok()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_escapes_and_carriage_returns() {
        let raw = "\x1b[0;32m  OK  \x1b[0m] Started x\r\n\x1b[?2004hrkos@n:~$ ";
        assert_eq!(clean(raw), "  OK  ] Started x\nrkos@n:~$ ");
    }

    #[test]
    fn command_result_ignores_the_typed_line() {
        let cmd = command_line("hostname", 7);
        // the console echoes the typed line, then prints the markers expanded
        let text = format!("{cmd}\n@@rkos-begin-7@@\nnode-1\n@@rkos-end-7:0@@\n");
        assert_eq!(command_result(&text, 7), Some((0, "node-1\n".to_string())));
        // only the echo so far: not finished
        assert_eq!(command_result(&format!("{cmd}\n"), 7), None);
    }

    #[test]
    fn command_result_reports_failure_status_and_other_ids_do_not_match() {
        let text = "@@rkos-begin-3@@\ntouch: cannot touch '/usr/x': Read-only file system\n@@rkos-end-3:1@@\n";
        let (status, out) = command_result(text, 3).unwrap();
        assert_eq!(status, 1);
        assert!(out.contains("Read-only"));
        assert_eq!(command_result(text, 4), None);
    }

    #[test]
    fn init_stages_parses_kmsg_lines() {
        let log = "[    2.1] rkos-init: modules 41.5 ms (own work 3.2 ms)\n[ 2.3] rkos-init: wait-devices 120 ms\nrkos-init: boot failed: x ms\n[ 2.5] rkos-init: total 1766.3 ms, own work 98.7 ms (not counted: ...)\n";
        let stage = |s: &str, ms, own| InitStage {
            stage: s.to_string(),
            ms,
            own_ms: own,
        };
        assert_eq!(
            init_stages(log),
            vec![
                stage("modules", 41.5, Some(3.2)),
                stage("wait-devices", 120.0, None),
                stage("total", 1766.3, Some(98.7)),
            ]
        );
    }
}
