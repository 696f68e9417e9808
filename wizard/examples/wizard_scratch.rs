//! The wizard's questions against a scratch root, nothing installed: try the questions
//! safely (`cargo run -p rkos-wizard --example wizard_scratch -- ROOT [GITHUB_URL]`), and the
//! terminal tests drive it through a pty. Disks come from ROOT/sys/block; the current config
//! (the questions' defaults) from ROOT's config sources; the config is written to
//! ROOT/var/lib/rkos/config.yaml as `os-config` writes it (what it does not ask about is
//! kept); an install is only reported. `WIZARD_SCRATCH_MODE=live` plays a live ISO (the
//! RAM-only warning), `WIZARD_SCRATCH_MAC` sets the primary MAC (default QEMU's).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rkos_contract::BootMode;
use rkos_install::disks;
use rkos_wizard::{answers::Answers, current, join, net, system, ui, Action};

static WRITING: AtomicBool = AtomicBool::new(false);

fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(
        args.next()
            .expect("usage: wizard_scratch ROOT [GITHUB_URL]"),
    );
    let github = args.next().unwrap_or_else(|| net::GITHUB.to_string());
    ui::install_ctrlc_handler(&WRITING).expect("Ctrl-C handler");
    let excluded = disks::boot_disks(&root);
    let mac = std::env::var("WIZARD_SCRATCH_MAC").unwrap_or_else(|_| "52:54:00:12:34:56".into());
    let current_file = std::fs::read_to_string(system::config_path(&root)).ok();
    let ctx = ui::Context {
        disks: disks::list(&root, &excluded),
        root: root.clone(),
        default_hostname: rkos_config::default_hostname(Some(&mac)),
        primary_mac: Some(mac),
        github_base: github,
        net_timeout: Duration::from_secs(3),
        interfaces: vec!["eth0".into()],
        wifi_scan: vec![],
        mode: std::env::var("WIZARD_SCRATCH_MODE")
            .ok()
            .and_then(|m| m.parse::<BootMode>().ok()),
        current: current::answers_from_config(&join::node_config(&root)),
        current_file: current_file.clone(),
    };
    match ui::run(&ctx, Answers::default(), &ui::Term::stderr()) {
        Ok(Some(o)) => {
            if o.answers.action == Some(Action::Install) {
                eprintln!(
                    "SCRATCH: would install to {}",
                    o.disk.map(|d| d.name).unwrap_or_default()
                );
            }
            let yaml = current::text_to_write(current_file.as_deref(), &o.config_yaml, &o.answers);
            let p = system::write_config(&root, &yaml).expect("write config");
            eprintln!("SCRATCH: wrote {}", p.display());
        }
        Ok(None) => eprintln!("SCRATCH: declined"),
        Err(ui::UiError::Cancelled) => ui::cancel_exit(),
        Err(e) => {
            eprintln!("SCRATCH: error: {e}");
            std::process::exit(3);
        }
    }
}
