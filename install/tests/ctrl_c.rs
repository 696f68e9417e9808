//! Ctrl-C at the terminal while a tool runs (issue 16 item 11): the terminal sends SIGINT to
//! its whole foreground process group, which used to include sgdisk, mkfs and grub-install,
//! so they died half-way while the wizard itself refused to stop. The tools now run in a
//! process group of their own and finish their step.
//!
//! One test in its own binary: it signals its own process group, which must hold nothing
//! but this test and the tool it runs.

use std::time::Duration;

extern "C" fn ignore(_: libc::c_int) {}

#[test]
fn a_tool_outlives_a_ctrl_c_at_the_terminal() {
    // SAFETY: plain libc calls on this process: a process group of its own (so the signal
    // below reaches no other process of the test run), and a SIGINT handler that does
    // nothing (a handler, not SIG_IGN: an ignored signal would stay ignored in the tool
    // across exec, and the test would pass without the fix).
    unsafe {
        assert_eq!(libc::setpgid(0, 0), 0, "setpgid");
        let handler: extern "C" fn(libc::c_int) = ignore;
        assert_ne!(
            libc::signal(libc::SIGINT, handler as libc::sighandler_t),
            libc::SIG_ERR
        );
    }
    let tool =
        std::thread::spawn(|| rkos_install::cmd::run("sh", &["-c", "sleep 1; echo finished"]));
    std::thread::sleep(Duration::from_millis(300));
    // What the terminal does on Ctrl-C: SIGINT to the foreground process group.
    // SAFETY: kill(0, ...) signals this process's own group, made above.
    assert_eq!(unsafe { libc::kill(0, libc::SIGINT) }, 0);
    let out = tool.join().unwrap();
    assert_eq!(out.unwrap(), "finished\n");
}
