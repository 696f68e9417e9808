//! `os-config` (also `rkos os-config`): the interactive configurator, or the same answers
//! given as flags / `--answers FILE` with `--yes`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use rkos_install::disks;
use rkos_wizard::answers::{Action, Answers, NetMode, Role};
use rkos_wizard::{answers_file, checks, current, join, net, system, ui};

#[derive(clap::Args, Debug, Default)]
pub struct WizardArgs {
    /// Answers as YAML, keys as in the table of install.md (flags override them).
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,
    /// Ask nothing: every required answer must be given; no confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Install to a disk.
    #[arg(long, conflicts_with = "configure")]
    pub install: bool,
    /// Configure this node as it runs (no install; in RAM only on the live ISO).
    #[arg(long)]
    pub configure: bool,
    /// Install target (`sda`, `/dev/sda`, `/dev/disk/by-id/...`).
    #[arg(long, value_name = "DISK")]
    pub device: Option<String>,
    /// Use this config file (path or http(s) URL) instead of the questions.
    #[arg(long, value_name = "PATH|URL")]
    pub config_url: Option<String>,
    /// A GitHub user whose SSH keys may log in as rkos (repeatable; fetched at every boot).
    #[arg(long = "github-user", value_name = "USER")]
    pub github_users: Vec<String>,
    /// An SSH public key allowed to log in as rkos (repeatable; the whole line, quoted).
    #[arg(long = "ssh-key", value_name = "KEY")]
    pub ssh_keys: Vec<String>,
    /// Password for `rkos` (clear text, hashed before it is written, or a `$6$` hash).
    #[arg(long)]
    pub password: Option<String>,
    /// WiFi network name to join (needs --wifi-passphrase).
    #[arg(long, value_name = "SSID")]
    pub wifi_ssid: Option<String>,
    /// WPA passphrase of --wifi-ssid (8-63 characters).
    #[arg(long)]
    pub wifi_passphrase: Option<String>,
    /// Static address `ADDRESS/PREFIX` (default: DHCP).
    #[arg(long, value_name = "ADDRESS/PREFIX")]
    pub address: Option<String>,
    /// Interface of the static address (e.g. `enp1s0`).
    #[arg(long, value_name = "NAME")]
    pub interface: Option<String>,
    /// Default gateway of the static address.
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// A DNS server (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Host name (default: `rkos-` and 4 hex digits from the primary MAC address).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// k3s role: `server` (control plane) or `agent` (joins --server-url).
    #[arg(long, value_parser = ["server", "agent"])]
    pub role: Option<String>,
    /// First server of an HA cluster (embedded etcd).
    #[arg(long)]
    pub cluster_init: bool,
    /// The server to join, `https://HOST:6443` (an agent, or another server of an HA cluster).
    #[arg(long, value_name = "URL")]
    pub server_url: Option<String>,
    /// Cluster token (`sudo rkos token` on the server prints it; a new server generates one).
    #[arg(long)]
    pub token: Option<String>,
    /// Do not check that the server URL answers.
    #[arg(long)]
    pub skip_probe: bool,
    /// System root (tests use a temporary directory).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Where the OS files to install are (the live medium by default).
    #[arg(long, default_value = rkos_contract::paths::MEDIUM, value_name = "DIR")]
    pub source: PathBuf,
    /// Version recorded in slot A's manifest (default: this image's version).
    #[arg(long, value_name = "VERSION")]
    pub image_version: Option<String>,
    /// Write the config but do not run `rkos config apply`.
    #[arg(long)]
    pub no_apply: bool,
    /// GitHub's address (tests point it at a local server).
    #[arg(long, default_value = net::GITHUB, hide = true)]
    pub github_url: String,
}

impl WizardArgs {
    fn flag_answers(&self) -> Result<Answers> {
        Ok(Answers {
            action: if self.install {
                Some(Action::Install)
            } else if self.configure {
                Some(Action::Configure)
            } else {
                None
            },
            device: self.device.clone(),
            config_url: self.config_url.clone(),
            github_users: self.github_users.clone(),
            ssh_keys: self.ssh_keys.clone(),
            password: self.password.clone(),
            wifi_ssid: self.wifi_ssid.clone(),
            wifi_passphrase: self.wifi_passphrase.clone(),
            network: if self.address.is_some() {
                NetMode::Static
            } else {
                NetMode::Dhcp
            },
            interface: self.interface.clone(),
            address: self.address.clone(),
            gateway: self.gateway.clone(),
            dns: self.dns.clone(),
            hostname: self.hostname.clone(),
            role: match self.role.as_deref() {
                Some("server") => Some(Role::Server),
                Some("agent") => Some(Role::Agent),
                _ => None,
            },
            cluster_init: self.cluster_init,
            server_url: self.server_url.clone(),
            token: self.token.clone(),
            skip_probe: self.skip_probe,
        })
    }
}

fn wired_interfaces(root: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(root.join("sys/class/net"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("en") || n.starts_with("eth"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn run(args: WizardArgs) -> Result<()> {
    if args.root == Path::new("/") && !crate::is_root() {
        bail!("os-config changes the system: run it as root (sudo os-config)");
    }
    crate::install_cmd::refuse_ctrlc_while_writing()?;

    let mut preset = match &args.answers {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            answers_file::parse(&p.display().to_string(), &text).map_err(|problems| {
                anyhow::anyhow!(
                    "{} cannot be used:\n  {}",
                    p.display(),
                    problems.join("\n  ")
                )
            })?
        }
        None => Answers::default(),
    };
    preset = preset.overlay(args.flag_answers()?);

    let excluded = disks::boot_disks(&args.root);
    let candidates = disks::list(&args.root, &excluded);
    let primary_mac = rkos_config::primary_mac(&args.root.join("sys/class/net"));
    let default_hostname = rkos_config::default_hostname(primary_mac.as_deref());
    let net_timeout = Duration::from_secs(5);
    let mode = crate::upgrade_cmd::init_report(&args.root).map(|r| r.mode);
    let current_file = std::fs::read_to_string(system::config_path(&args.root)).ok();

    let interactive = !args.yes && std::io::stdin().is_terminal();
    let outcome = if interactive {
        let ctx = ui::Context {
            root: args.root.clone(),
            disks: candidates,
            default_hostname,
            primary_mac,
            github_base: args.github_url.clone(),
            net_timeout,
            interfaces: wired_interfaces(&args.root),
            wifi_scan: net::scan_wifi(&args.root),
            mode,
            current: current::answers_from_config(&join::node_config(&args.root)),
            current_file: current_file.clone(),
        };
        match ui::run(&ctx, preset, &ui::Term::stderr()) {
            Ok(Some(o)) => o,
            Ok(None) => return Ok(()),
            Err(ui::UiError::Cancelled) => ui::cancel_exit(),
            Err(e) => return Err(e.into()),
        }
    } else {
        non_interactive(&args, preset, &candidates, &default_hostname, net_timeout)?
    };
    let ram_only = mode.is_some_and(|m| m.is_ephemeral());
    execute(
        &args,
        outcome,
        interactive,
        current_file.as_deref(),
        ram_only,
    )
}

fn non_interactive(
    args: &WizardArgs,
    mut a: Answers,
    candidates: &[disks::Disk],
    default_hostname: &str,
    net_timeout: Duration,
) -> Result<ui::Outcome> {
    if !args.yes {
        bail!("no terminal to ask on: give every answer (flags or --answers FILE) and --yes");
    }
    let action = a
        .action
        .context("say --install or --configure (or `action:` in the answers file)")?;
    let disk = if action == Action::Install {
        let dev = a.device.clone().context("--install needs --device")?;
        Some(disks::resolve_choice(&args.root, &dev, candidates).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let yaml = if let Some(src) = &a.config_url {
        let text = net::fetch_text(src, net_timeout).map_err(anyhow::Error::msg)?;
        let (errors, warnings) = rkos_wizard::validate_config(src, &text);
        warnings.iter().for_each(|w| eprintln!("warning: {w}"));
        if !errors.is_empty() {
            bail!("{src} has errors:\n{}", errors.join("\n"));
        }
        text
    } else {
        if let Some(token) = a.fill_defaults(default_hostname)? {
            for line in join::generated_token_lines(&token) {
                eprintln!("{line}");
            }
        }
        let problems = a.problems();
        if !problems.is_empty() {
            bail!(
                "the answers are incomplete or wrong:\n{}",
                problems
                    .iter()
                    .map(|p| format!("  {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        probe(&a, net_timeout);
        let yaml = a.to_config_yaml()?;
        let (errors, _) = rkos_wizard::validate_config("os-config answers", &yaml);
        if !errors.is_empty() {
            bail!(
                "the answers make a config that does not validate:\n{}",
                errors.join("\n")
            );
        }
        yaml
    };
    eprintln!("Summary");
    for (k, v) in a.summary() {
        eprintln!("  {k:<26} {v}");
    }
    Ok(ui::Outcome {
        answers: a,
        config_yaml: yaml,
        disk,
    })
}

/// The same reachability check the questions make, as a warning: without questions the
/// server may well not be up yet.
fn probe(a: &Answers, timeout: Duration) {
    let Some(url) = a.server_url.as_deref().filter(|_| !a.skip_probe) else {
        return;
    };
    let Ok(url) = checks::server_url(url) else {
        return;
    };
    match net::probe_server(&url, timeout) {
        net::Probe::Reachable => eprintln!("{} answers.", url.as_url()),
        net::Probe::Unreachable(why) => eprintln!(
            "warning: {} does not answer ({why}); kept: the server may not be up yet",
            url.as_url()
        ),
    }
}

fn execute(
    args: &WizardArgs,
    o: ui::Outcome,
    interactive: bool,
    current_file: Option<&str>,
    ram_only: bool,
) -> Result<()> {
    match o.answers.action {
        Some(Action::Configure) | None => {
            let yaml = current::text_to_write(current_file, &o.config_yaml, &o.answers);
            let path = system::write_config(&args.root, &yaml).with_context(|| {
                format!("writing {}", system::config_path(&args.root).display())
            })?;
            eprintln!("Wrote {}.", path.display());
            if args.no_apply || args.root != Path::new("/") {
                eprintln!(
                    "Not applied (--no-apply or --root): run `rkos config apply` to apply it."
                );
                return Ok(());
            }
            let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rkos"));
            system::apply(&me).map_err(anyhow::Error::msg)?;
            system::refresh_banner();
            let cfg = join::node_config(&args.root);
            let role = cfg.role();
            eprintln!(
                "Applied: k3s restarted as {} {role}.",
                if role == rkos_config::Role::Agent {
                    "an"
                } else {
                    "a"
                }
            );
            eprintln!();
            for line in join::hint(&cfg, &join::addresses()) {
                eprintln!("{line}");
            }
            if ram_only {
                eprintln!();
                eprintln!("Reminder: {}\n{}", ui::RAM_ONLY[0], ui::RAM_ONLY[1]);
            }
            Ok(())
        }
        Some(Action::Install) => {
            let disk = o.disk.context("no install target")?;
            let req = crate::install_cmd::request(
                &args.root,
                &args.source,
                args.image_version.as_deref(),
                &disk,
                o.config_yaml,
            )?;
            let done = crate::install_cmd::install(&req)?;
            eprintln!(
                "Installed rkos {} on {}. Remove the installation medium and reboot.",
                done.manifest.version,
                done.target.display()
            );
            if o.answers.role == Some(Role::Server) {
                eprintln!(
                    "Once it runs, its login banner shows the URL agents join, and `{}` prints the token.",
                    join::TOKEN_COMMAND
                );
            }
            if interactive && ui::confirm("Reboot now?", true) {
                let _ = std::process::Command::new("systemctl")
                    .arg("reboot")
                    .status();
            }
            Ok(())
        }
    }
}

/// Where the node's own copy of the documentation is (the image ships docs/*.md there).
pub const DOCS: &str =
    "The questions, the answers file and every flag: /usr/share/doc/rkos/install.md";

#[derive(clap::Parser)]
#[command(
    name = "os-config",
    version,
    about = "Configure this rkos node, or install it to a disk",
    after_help = DOCS
)]
struct OsConfigCli {
    #[command(flatten)]
    args: WizardArgs,
}

/// `os-config` is the `rkos` binary under another name: when invoked so, parse the wizard's
/// flags directly.
pub fn run_if_os_config() -> Option<Result<()>> {
    let argv0 = std::env::args_os().next()?;
    let name = Path::new(&argv0)
        .file_name()?
        .to_string_lossy()
        .into_owned();
    (name == "os-config").then(|| run(<OsConfigCli as clap::Parser>::parse().args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn os_config_command_line_is_well_formed() {
        OsConfigCli::command().debug_assert();
        let cli = OsConfigCli::try_parse_from([
            "os-config",
            "--yes",
            "--install",
            "--device",
            "/dev/vda",
            "--github-user",
            "a",
            "--github-user",
            "b",
            "--role",
            "agent",
            "--image-version",
            "1.2.3",
        ])
        .unwrap();
        let a = cli.args.flag_answers().unwrap();
        assert_eq!(a.action, Some(Action::Install));
        assert_eq!(a.github_users, ["a", "b"]);
        assert_eq!(a.role, Some(Role::Agent));
        assert_eq!(cli.args.image_version.as_deref(), Some("1.2.3"));
        assert!(OsConfigCli::try_parse_from(["os-config", "--install", "--configure"]).is_err());
        assert!(OsConfigCli::try_parse_from(["os-config", "--role", "boss"]).is_err());
    }

    #[test]
    fn every_flag_says_what_it_does() {
        let cmd = OsConfigCli::command();
        for arg in cmd.get_arguments() {
            if arg.is_hide_set() || ["help", "version"].contains(&arg.get_id().as_str()) {
                continue;
            }
            assert!(
                arg.get_help()
                    .is_some_and(|h| !h.to_string().trim().is_empty()),
                "--{} has no description",
                arg.get_id()
            );
        }
        let help = OsConfigCli::command().render_long_help().to_string();
        assert!(help.contains("/usr/share/doc/rkos/install.md"), "{help}");
        assert!(!help.contains("docs/install.md"), "{help}");
    }
}
