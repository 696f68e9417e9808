//! `rkos`: the node's command (config, install, upgrade, status, token, doctor), and on a
//! host the netboot farm and the VM lab. Installed also as `os-config`.

mod bundle_cmd;
mod config_apply;
mod config_cmd;
mod data_disks_cmd;
mod doctor_cmd;
mod farm_cmd;
mod install_cmd;
mod lab_cmd;
#[cfg(test)]
mod last_good_agreement;
mod status_cmd;
mod token_cmd;
mod upgrade_cmd;
#[cfg(test)]
mod upgrade_tests;
mod wizard_cmd;

use std::path::Path;

use clap::{Parser, Subcommand};
use rkos_contract::paths;

#[derive(Parser)]
#[command(name = "rkos", version, about = "rkos node command")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show, validate, render and apply the node's config.yaml.
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Stage a signed upgrade bundle into the inactive slot and boot it on trial.
    Upgrade(upgrade_cmd::UpgradeArgs),
    /// Mark the running slot good (ends its trial); run by rkos-mark-good.service.
    MarkGood(upgrade_cmd::MarkGoodArgs),
    /// Show the active and fallback slots, their versions and the last boot outcome.
    Status(status_cmd::StatusArgs),
    /// Make and check upgrade bundles (build side).
    Bundle(bundle_cmd::BundleArgs),
    /// Install rkos to a disk without questions (or unattended from the kernel command line).
    Install(install_cmd::InstallArgs),
    /// The interactive configurator (also installed as `os-config`).
    #[command(after_help = wizard_cmd::DOCS)]
    OsConfig(Box<wizard_cmd::WizardArgs>),
    /// Print the token agents join this cluster with (`--hint`: how they join).
    Token(token_cmd::TokenArgs),
    /// The netboot farm: serve images and per-node configs, configure dnsmasq.
    #[command(subcommand)]
    Farm(farm_cmd::FarmCmd),
    /// A cluster of rkos VMs on this host (root; docs/lab.md).
    #[command(subcommand)]
    Lab(lab_cmd::LabCmd),
    /// Check this node's bare-metal storage prerequisites (Longhorn: iSCSI, NFSv4, dm_crypt,
    /// persistent /var/lib/longhorn, shared mounts, multipathd); exits 1 when one fails.
    Doctor(doctor_cmd::DoctorArgs),
    /// Print this node's iSCSI initiator name, derived from its machine id (`--write`: into
    /// /etc/iscsi/initiatorname.iscsi, as rkos-iscsi-initiator.service does at boot).
    InitiatorName(doctor_cmd::InitiatorNameArgs),
    /// Whether the config's data_disks are attached and mounted; exits 1 when one is not
    /// (`--report`: also at the login prompt, as at boot when a data disk is missing).
    DataDisks(data_disks_cmd::DataDisksArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(r) = wizard_cmd::run_if_os_config() {
        return r;
    }
    match Cli::parse().command {
        Command::Config(c) => config_cmd::run(c),
        Command::Upgrade(a) => upgrade_cmd::run_upgrade(&a),
        Command::MarkGood(a) => upgrade_cmd::run_mark_good(&a),
        Command::Status(a) => status_cmd::run_status(&a),
        Command::Bundle(a) => bundle_cmd::run_bundle(&a),
        Command::Install(a) => install_cmd::run(a),
        Command::OsConfig(a) => wizard_cmd::run(*a),
        Command::Token(a) => token_cmd::run(&a),
        Command::Farm(c) => farm_cmd::run(c),
        Command::Lab(c) => lab_cmd::run(c),
        Command::Doctor(a) => doctor_cmd::run_doctor(&a),
        Command::InitiatorName(a) => doctor_cmd::run_initiator_name(&a),
        Command::DataDisks(a) => data_disks_cmd::run(&a),
    }
}

/// Whether this process runs as root (effective uid 0).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The version of the image running at `root` (`ROOT/etc/rkos/version`, which rkos-init and
/// the boot banner read too), else this binary's.
pub(crate) fn image_version(root: &Path) -> String {
    std::fs::read_to_string(paths::under(root, paths::IMAGE_VERSION))
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn image_version_from_the_root_else_the_binarys() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(super::image_version(t.path()), env!("CARGO_PKG_VERSION"));
        std::fs::create_dir_all(t.path().join("etc/rkos")).unwrap();
        std::fs::write(t.path().join("etc/rkos/version"), "").unwrap();
        assert_eq!(super::image_version(t.path()), env!("CARGO_PKG_VERSION"));
        std::fs::write(t.path().join("etc/rkos/version"), "2.0.1\n").unwrap();
        assert_eq!(super::image_version(t.path()), "2.0.1");
    }
}
