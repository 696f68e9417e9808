//! The error report of a failed `rkos` command, as it goes into the NodeUpgrade's
//! `lastError`: from the `error` list of a JSON report (`rkos upgrade --json`), or from
//! anyhow's report on stderr (every other command, and anything that fails before it can
//! print JSON, such as a usage error).

use std::process::Output;

use super::NodeOpsError;

/// The error of the command `cmd` that ended with `out` (not successfully), from its stderr.
pub(super) fn command_error(cmd: &str, out: &Output) -> NodeOpsError {
    NodeOpsError::Command {
        cmd: cmd.to_string(),
        status: out.status.to_string(),
        error: error_text(&String::from_utf8_lossy(&out.stderr)),
    }
}

/// An error and its causes (outermost first) on one line, bounded: it is stored in an
/// object's status.
pub fn error_line<'a>(chain: impl IntoIterator<Item = &'a str>) -> String {
    const MAX: usize = 1000;
    let mut text = String::new();
    for cause in chain {
        // Errors often repeat their source's message; say it once.
        if text.ends_with(cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(cause);
    }
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

/// A failed command's stderr on one line: anyhow's `Error: ...` report with its "Caused by"
/// chain when there is one (the lines before it are progress logging), else the last few
/// lines.
pub fn error_text(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.iter().position(|l| l.starts_with("Error: ")) {
        Some(i) => {
            let causes = lines[i + 1..]
                .iter()
                .take_while(|l| !l.starts_with("Stack backtrace:"))
                .filter(|l| **l != "Caused by:")
                // With several causes anyhow numbers them: "0: ...".
                .map(|l| match l.split_once(": ") {
                    Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => rest,
                    _ => l,
                });
            error_line(std::iter::once(&lines[i]["Error: ".len()..]).chain(causes))
        }
        None => error_line([lines[lines.len().saturating_sub(3)..].join("; ").as_str()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_error_chain_on_one_line() {
        assert_eq!(
            error_line(["upgrade refused", "bad key", "bad key", "lower"]),
            "upgrade refused: bad key: lower"
        );
        assert_eq!(
            error_line(["invalid manifest: file missing", "file missing"]),
            "invalid manifest: file missing"
        );
        assert_eq!(error_line([]), "");
    }
}
