//! `os-config --yes`: no questions, but what the questions would show all the same: the
//! summary under its heading and the server URL's probe; a broken answers file names every
//! problem once, by file, line and key. Runs the `rkos` binary on a temporary root (written
//! there, never applied).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

fn os_config(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rkos"))
        .arg("os-config")
        .args(["--yes", "--configure", "--root"])
        .arg(root)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("running rkos os-config")
}

#[test]
fn yes_shows_the_summary_and_probes_the_server() {
    let root = tempfile::tempdir().unwrap();
    // a port nobody listens on: the probe must say so, and keep the answer
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let out = os_config(
        root.path(),
        &[
            "--hostname",
            "agent-1",
            "--role",
            "agent",
            "--server-url",
            &url,
            "--token",
            "K10abc::server:secret-1",
            "--password",
            "a-password-1",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("warning: {url} does not answer")),
        "no probe:\n{err}"
    );
    let summary = err
        .split_once("Summary\n")
        .unwrap_or_else(|| panic!("no summary heading:\n{err}"))
        .1;
    for (k, v) in [("hostname", "agent-1"), ("server URL", url.as_str())] {
        assert!(
            summary.contains(&format!("  {k:<26} {v}\n")),
            "{k}:\n{summary}"
        );
    }
    assert!(
        !err.contains("secret-1") && !err.contains("a-password-1"),
        "{err}"
    );
    let written = std::fs::read_to_string(root.path().join("var/lib/rkos/config.yaml")).unwrap();
    assert!(written.contains(&format!("server_url: {url}")), "{written}");
}

#[test]
fn a_broken_answers_file_names_each_problem_once() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("answers.yaml");
    std::fs::write(&file, "hostname: agent-1\nrole: agnt\nsever_url: x\n").unwrap();
    let out = os_config(root.path(), &["--answers", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let name = file.display().to_string();
    assert!(
        err.contains(&format!("{name}:2:7: role: unknown variant `agnt`")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{name}:3:1: sever_url: not an answers key")),
        "{err}"
    );
    assert_eq!(err.matches("rror").count(), 1, "'error' once:\n{err}");
    assert!(
        !err.contains("<input>") && !err.contains(" at line "),
        "{err}"
    );
    assert!(!root.path().join("var/lib/rkos/config.yaml").exists());
}
