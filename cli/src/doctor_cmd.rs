//! `rkos doctor` (the bare-metal storage prerequisites, checked on this node) and `rkos
//! initiator-name` (this node's iSCSI initiator name, written at boot by
//! rkos-iscsi-initiator.service). The checks are rkos-doctor's; here only systemd is asked.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;
use clap::Args;
use rkos_doctor::{iscsi, Units};

#[derive(Args)]
pub struct DoctorArgs {
    /// The report as JSON on stdout: `{"ok": bool, "checks": [{"name", "ok", "detail"}]}`.
    #[arg(long)]
    json: bool,
    /// The node's root (tests; systemd is asked about the running node whatever it is).
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
}

#[derive(Args)]
pub struct InitiatorNameArgs {
    /// Write it into /etc/iscsi/initiatorname.iscsi unless it is there already.
    #[arg(long)]
    write: bool,
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
}

/// `systemctl is-active`.
struct Systemctl;

impl Units for Systemctl {
    fn is_active(&self, unit: &str) -> bool {
        Command::new("systemctl")
            .args(["is-active", "--quiet", unit])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

pub fn run_doctor(a: &DoctorArgs) -> anyhow::Result<()> {
    let report = rkos_doctor::run(&a.root, &Systemctl);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    if !report.ok {
        std::process::exit(1);
    }
    Ok(())
}

pub fn run_initiator_name(a: &InitiatorNameArgs) -> anyhow::Result<()> {
    let name = if a.write {
        let (name, written) = iscsi::write(&a.root).context("writing the initiator name")?;
        let what = if written { "written to" } else { "already in" };
        tracing::info!("{name} {what} {}", iscsi::NAME_FILE);
        name
    } else {
        let id = iscsi::machine_id(&a.root)?;
        iscsi::initiator_name(&id).context("no machine id")?
    };
    println!("{name}");
    Ok(())
}
