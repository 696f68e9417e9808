//! rkos-init: the stage-1 init the kernel runs as PID 1 from the initramfs. The boot is a list
//! of named stages (`rkos_init::sequence`; ARCHITECTURE.md, "Boot flow"): the prelude finds
//! how this machine boots, then the stages of that mode build the new root, apply the early
//! config and hand over to it. Any failure ends in a message on every console, then the
//! rescue shell; this function never returns.

use std::fs;

use rkos_contract::paths;
use rkos_init::sequence::{self, PRELUDE};
use rkos_init::stages::Boot;
use rkos_init::{cmdline, log, rescue};

fn main() {
    if nix::unistd::getpid().as_raw() != 1 {
        eprintln!("rkos-init is PID 1 of the rkos initramfs; it does nothing when run otherwise");
        std::process::exit(2);
    }
    // A bug must not end PID 1: the kernel would panic (and with panic=N reboot in a loop).
    std::panic::set_hook(Box::new(|info| {
        // On the early thread: let it unwind; the main thread re-raises the panic when it
        // collects the thread's work, and only one rescue shell starts, from there.
        if std::thread::current().name() != Some("main") {
            log::kmsg(
                log::ERR,
                &format!("internal error on a helper thread: {info}"),
            );
            return;
        }
        let line = fs::read_to_string(paths::PROC_CMDLINE).unwrap_or_default();
        let consoles = log::console_paths(&cmdline::consoles(&line));
        log::kmsg(log::ERR, &format!("internal error: {info}"));
        // An installed slot restarts, as on any failure (rescue::on_failure).
        let then = rescue::decide(&line);
        let next = match then {
            rescue::OnFailure::Rescue => "Starting a rescue shell.",
            rescue::OnFailure::Restart => "Restarting, so GRUB can fall back.",
        };
        log::to_consoles(
            &consoles,
            &format!("\nrkos-init: internal error: {info}\n{next}\n"),
        );
        if then == rescue::OnFailure::Restart {
            rescue::restart(&consoles);
        }
        rescue::shell_forever(&consoles)
    }));
    let mut boot = Boot::start();
    for stage in PRELUDE {
        boot.run(stage);
    }
    for stage in sequence::after_detection(boot.mode(), &boot.mount_stages()) {
        boot.run(stage);
    }
    // The last stage hands over to the new root's init or fails; never here.
    boot.fail("the boot sequence ended without handing over")
}
