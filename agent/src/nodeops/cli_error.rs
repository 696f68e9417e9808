//! The error report of a failed `rkos` command (its stderr), as it goes into the
//! NodeUpgrade's `lastError`.

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
}
