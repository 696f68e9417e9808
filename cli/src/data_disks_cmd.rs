//! `rkos data-disks`: whether the config's `data_disks` are attached and mounted (the checks
//! are rkos-doctor's). `--report` is what rkos-data-disks.service runs at boot once the data
//! disks' mounts are done or given up: the problems on the console (the unit's output) and at
//! the login prompt.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rkos_config::render::mount_unit;
use rkos_config::NodeConfig;
use rkos_doctor::data_disks::{self, DataDisk};

#[derive(Args)]
pub struct DataDisksArgs {
    /// Also write the problems for the login prompt (/run/rkos/data-disks), or clear them.
    #[arg(long)]
    report: bool,
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
}

pub fn run(a: &DataDisksArgs) -> anyhow::Result<()> {
    // Unreadable, the node's config would look like one without data disks: "all mounted".
    if a.root == std::path::Path::new("/") && !crate::is_root() {
        anyhow::bail!("the node's config is readable by root only: run sudo rkos data-disks");
    }
    let config = NodeConfig::at(&a.root).load().config;
    let disks: Vec<DataDisk> = config
        .rkos
        .data_disks
        .iter()
        .filter_map(|d| {
            Some(DataDisk {
                device: d.device()?,
                unit: mount_unit(&d.path),
                path: d.path.clone(),
                wait_seconds: d.device_wait(),
            })
        })
        .collect();
    let problems = data_disks::problems(&a.root, &disks);
    if a.report {
        data_disks::write_report(&a.root, &problems)
            .context("writing the data disks' problems for the login prompt")?;
    }
    for p in &problems {
        println!("rkos: {p}");
    }
    if problems.is_empty() {
        // At boot (--report) the console hears only of problems.
        if !a.report {
            println!("rkos: {} data disk(s), all mounted", disks.len());
        }
        Ok(())
    } else {
        std::process::exit(1)
    }
}
