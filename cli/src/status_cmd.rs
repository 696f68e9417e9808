//! `rkos status`: the running slot, the fallback, the versions in both slots, the trial and
//! the last boot outcome.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use rkos_slots::{NodeStatus, StateDir, Status};

use crate::upgrade_cmd::booted_slot;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where RKOS_STATE is mounted.
    #[arg(long, default_value = rkos_contract::paths::STATE_MOUNT)]
    pub state_dir: PathBuf,
    #[arg(long, default_value = "/", hide = true)]
    pub root: PathBuf,
}

pub fn run_status(args: &StatusArgs) -> Result<()> {
    let state = StateDir::new(&args.state_dir);
    let active = booted_slot(&args.root);
    // Live or netboot: no slots to report.
    let status = if active.is_none() && !state.grubenv().exists() {
        NodeStatus::NotInstalled
    } else {
        NodeStatus::Installed(
            Status::read(&state, active)
                .with_context(|| format!("reading the slots under {}", args.state_dir.display()))?,
        )
    };
    match status {
        // The node↔agent contract: the agent reads this back as the same type.
        _ if args.json => println!("{}", serde_json::to_string_pretty(&status)?),
        NodeStatus::NotInstalled => {
            println!("not installed: running from the live medium or the network (no A/B slots)")
        }
        NodeStatus::Installed(st) => print!("{st}"),
    }
    Ok(())
}
