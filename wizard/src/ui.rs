//! The questions (dialoguer). They only fill an [`Answers`]; nothing is written here. Each
//! answer is checked where it is typed, with the same checks the non-interactive path uses.

use std::path::PathBuf;
use std::time::Duration;

use console::style;
pub use console::Term;
use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, Password, Select};

use crate::answers::{Action, Answers, NetMode, Role};
use crate::checks;
use crate::net::{self, KeysLookup, Probe};
use rkos_install::disks::{self, Disk};

/// What the questions need from the system, gathered by the caller (so a test can give a
/// fake set of disks and a loopback GitHub).
pub struct Context {
    pub root: PathBuf,
    pub disks: Vec<Disk>,
    pub default_hostname: String,
    pub github_base: String,
    pub net_timeout: Duration,
    /// Wired interfaces for the static address question.
    pub interfaces: Vec<String>,
    /// SSIDs seen by a scan (empty: ask for the SSID).
    pub wifi_scan: Vec<String>,
}

/// The wizard's result: the answers and the config text they make.
pub struct Outcome {
    pub answers: Answers,
    pub config_yaml: String,
    pub disk: Option<Disk>,
}

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("terminal: {0}")]
    Term(dialoguer::Error),
    /// Ctrl-C during a question (the terminal was in raw mode, so it came as a key).
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

impl From<dialoguer::Error> for UiError {
    fn from(e: dialoguer::Error) -> Self {
        match e {
            dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => {
                UiError::Cancelled
            }
            other => UiError::Term(other),
        }
    }
}

/// Leaves at once after Ctrl-C, before anything was written: cursor shown, one message,
/// exit status 130 (as a shell reports SIGINT).
pub fn cancel_exit() -> ! {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = Term::stderr().show_cursor();
        eprintln!("\nCancelled: nothing was written.");
    });
    std::process::exit(130)
}

type R<T> = Result<T, UiError>;

fn say(term: &Term, line: impl AsRef<str>) {
    let _ = term.write_line(line.as_ref());
}

fn warn(term: &Term, line: impl AsRef<str>) {
    let _ = term.write_line(&format!("{}", style(line.as_ref()).yellow()));
}

/// Runs the questions; answers already given (flags, `--answers`) are not asked again.
/// Returns `None` when the user declines at the confirmation.
pub fn run(ctx: &Context, preset: Answers, term: &Term) -> R<Option<Outcome>> {
    let theme = ColorfulTheme::default();
    let mut a = preset;
    say(term, format!("{}", style("rkos configuration").bold()));
    say(term, "Ctrl-C at any time leaves everything as it was.");

    let action = match a.action {
        Some(x) => x,
        None => {
            let i = Select::with_theme(&theme)
                .with_prompt("What do you want to do?")
                .items([
                    "Install rkos to a disk",
                    "Configure this node as it runs (no install)",
                ])
                .default(0)
                .interact_on(term)?;
            if i == 0 {
                Action::Install
            } else {
                Action::Configure
            }
        }
    };
    a.action = Some(action);

    let mut disk = None;
    if action == Action::Install {
        disk = Some(ask_disk(ctx, &a, &theme, term)?);
        a.device = disk
            .as_ref()
            .map(|d| d.dev_path().to_string_lossy().into_owned());
    }

    let config_text = if a.config_url.is_some() {
        Some(load_config(
            ctx,
            a.config_url.clone().unwrap_or_default(),
            term,
        )?)
    } else {
        let i = Select::with_theme(&theme)
            .with_prompt("How do you want to configure the node?")
            .items([
                "Answer a few questions",
                "Use a config file (cloud-init style) from a path or URL",
            ])
            .default(0)
            .interact_on(term)?;
        if i == 1 {
            let (src, text) = ask_config_file(ctx, &theme, term)?;
            a.config_url = Some(src);
            Some(text)
        } else {
            None
        }
    };

    let config_yaml = match config_text {
        Some(text) => text,
        None => {
            ask_questions(ctx, &mut a, &theme, term)?;
            let yaml = a
                .to_config_yaml()
                .map_err(|e| UiError::Other(e.to_string()))?;
            let (errors, _) = crate::validate_config("os-config answers", &yaml);
            if !errors.is_empty() {
                return Err(UiError::Other(format!(
                    "the answers make a config that does not validate:\n{}",
                    errors.join("\n")
                )));
            }
            yaml
        }
    };

    say(term, "");
    say(term, format!("{}", style("Summary").bold()));
    for (k, v) in a.summary() {
        say(term, format!("  {k:<26} {v}"));
    }
    say(term, "");
    let go = match (&disk, action) {
        (Some(d), Action::Install) => Confirm::with_theme(&theme)
            .with_prompt(format!(
                "Erase ALL data on {} ({}) and install rkos?",
                d.dev_path().display(),
                d.describe()
            ))
            .default(false)
            .interact_on(term)?,
        _ => Confirm::with_theme(&theme)
            .with_prompt("Write this configuration and apply it now?")
            .default(true)
            .interact_on(term)?,
    };
    if !go {
        say(term, "Cancelled: nothing was written.");
        return Ok(None);
    }
    Ok(Some(Outcome {
        answers: a,
        config_yaml,
        disk,
    }))
}

fn ask_disk(ctx: &Context, a: &Answers, theme: &ColorfulTheme, term: &Term) -> R<Disk> {
    if ctx.disks.is_empty() {
        return Err(UiError::Other(
            "no disk to install to: the boot medium is never offered, and no other disk was found"
                .into(),
        ));
    }
    if let Some(dev) = &a.device {
        return disks::resolve_choice(&ctx.root, dev, &ctx.disks).map_err(UiError::Other);
    }
    let items: Vec<String> = ctx.disks.iter().map(Disk::describe).collect();
    loop {
        let i = Select::with_theme(theme)
            .with_prompt("Install to which disk? (everything on it will be erased)")
            .items(&items)
            .default(0)
            .interact_on(term)?;
        match disks::resolve_choice(&ctx.root, &ctx.disks[i].name, &ctx.disks) {
            Ok(d) => return Ok(d),
            Err(e) => warn(term, e),
        }
    }
}

fn load_config(ctx: &Context, src: String, term: &Term) -> R<String> {
    let text = net::fetch_text(&src, ctx.net_timeout).map_err(UiError::Other)?;
    let (errors, warnings) = crate::validate_config(&src, &text);
    for w in warnings {
        warn(term, w);
    }
    if !errors.is_empty() {
        return Err(UiError::Other(format!(
            "{src} has errors:\n{}",
            errors.join("\n")
        )));
    }
    Ok(text)
}

fn ask_config_file(ctx: &Context, theme: &ColorfulTheme, term: &Term) -> R<(String, String)> {
    loop {
        let src: String = Input::with_theme(theme)
            .with_prompt("Config file path or http(s) URL")
            .interact_text_on(term)?;
        let text = match net::fetch_text(src.trim(), ctx.net_timeout) {
            Ok(t) => t,
            Err(e) => {
                warn(term, format!("Could not read it: {e}"));
                continue;
            }
        };
        if text.starts_with("#!") {
            warn(
                term,
                "That is a script, not a config: give a YAML config file.",
            );
            continue;
        }
        let (errors, warnings) = crate::validate_config(src.trim(), &text);
        for w in &warnings {
            warn(term, w);
        }
        if errors.is_empty() {
            return Ok((src.trim().to_string(), text));
        }
        warn(term, "The config has errors; fix them and give it again:");
        for e in errors {
            warn(term, format!("  {e}"));
        }
    }
}

fn list(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn ask_questions(ctx: &Context, a: &mut Answers, theme: &ColorfulTheme, term: &Term) -> R<()> {
    // SSH
    if a.github_users.is_empty() {
        a.github_users = ask_github_users(ctx, theme, term)?;
    }
    if a.ssh_keys.is_empty() {
        let key: String = Input::with_theme(theme)
            .with_prompt("Paste an SSH public key to authorize (empty for none)")
            .allow_empty(true)
            .validate_with(|s: &String| {
                if s.trim().is_empty() {
                    Ok(())
                } else {
                    checks::ssh_key(s.trim())
                }
            })
            .interact_text_on(term)?;
        if !key.trim().is_empty() {
            a.ssh_keys.push(key.trim().to_string());
        }
    }

    // Password: always asked (SSH keys do not help on the console).
    if a.password.is_none() {
        let p = Password::with_theme(theme)
            .with_prompt("Password for the user rkos (console login)")
            .with_confirmation("Password again", "The passwords differ; type them again.")
            .validate_with(|s: &String| checks::password(s))
            .interact_on(term)?;
        a.password = Some(p);
    }

    // WiFi
    if a.wifi_ssid.is_none()
        && Confirm::with_theme(theme)
            .with_prompt("Configure WiFi?")
            .default(false)
            .interact_on(term)?
    {
        let ssid = if ctx.wifi_scan.is_empty() {
            Input::<String>::with_theme(theme)
                .with_prompt("WiFi network name (SSID)")
                .validate_with(|s: &String| checks::ssid(s))
                .interact_text_on(term)?
        } else {
            let mut items = ctx.wifi_scan.clone();
            items.push("Other (type its name)".into());
            let i = Select::with_theme(theme)
                .with_prompt("WiFi network")
                .items(&items)
                .default(0)
                .interact_on(term)?;
            if i + 1 == items.len() {
                Input::<String>::with_theme(theme)
                    .with_prompt("WiFi network name (SSID)")
                    .validate_with(|s: &String| checks::ssid(s))
                    .interact_text_on(term)?
            } else {
                items[i].clone()
            }
        };
        let pass = Password::with_theme(theme)
            .with_prompt(format!("Passphrase of {ssid}"))
            .validate_with(|s: &String| checks::wifi_passphrase(s))
            .interact_on(term)?;
        a.wifi_ssid = Some(ssid);
        a.wifi_passphrase = Some(pass);
    }

    // Network
    if a.network == NetMode::Dhcp && a.address.is_none() {
        let i = Select::with_theme(theme)
            .with_prompt("Network")
            .items(["DHCP (automatic)", "Static address"])
            .default(0)
            .interact_on(term)?;
        if i == 1 {
            a.network = NetMode::Static;
        }
    }
    if a.network == NetMode::Static {
        if a.interface.is_none() {
            let mut input = Input::<String>::with_theme(theme).with_prompt("Interface");
            if let Some(first) = ctx.interfaces.first() {
                input = input.default(first.clone());
            }
            a.interface = Some(input.interact_text_on(term)?);
        }
        if a.address.is_none() {
            a.address = Some(
                Input::<String>::with_theme(theme)
                    .with_prompt("Address/prefix (e.g. 192.168.1.10/24)")
                    .validate_with(|s: &String| checks::cidr(s.trim()))
                    .interact_text_on(term)?
                    .trim()
                    .to_string(),
            );
        }
        if a.gateway.is_none() {
            let g: String = Input::with_theme(theme)
                .with_prompt("Gateway (empty for none)")
                .allow_empty(true)
                .validate_with(|s: &String| {
                    if s.trim().is_empty() {
                        Ok(())
                    } else {
                        checks::ip(s.trim())
                    }
                })
                .interact_text_on(term)?;
            a.gateway = Some(g.trim().to_string()).filter(|g| !g.is_empty());
        }
        if a.dns.is_empty() {
            let d: String = Input::with_theme(theme)
                .with_prompt("DNS servers (comma-separated, empty for none)")
                .allow_empty(true)
                .validate_with(|s: &String| list(s).iter().try_for_each(|x| checks::ip(x)))
                .interact_text_on(term)?;
            a.dns = list(&d);
        }
    }

    // Hostname
    if a.hostname.is_none() {
        let h: String = Input::with_theme(theme)
            .with_prompt("Host name")
            .default(ctx.default_hostname.clone())
            .validate_with(|s: &String| checks::hostname(s.trim()))
            .interact_text_on(term)?;
        a.hostname = Some(h.trim().to_string());
    }

    // Role
    if a.role.is_none() {
        let i = Select::with_theme(theme)
            .with_prompt("Role of this node")
            .items([
                "server (runs the Kubernetes control plane)",
                "agent (joins a server)",
            ])
            .default(0)
            .interact_on(term)?;
        a.role = Some(if i == 0 { Role::Server } else { Role::Agent });
    }
    match a.role {
        Some(Role::Server) => ask_server(ctx, a, theme, term)?,
        Some(Role::Agent) => {
            if a.server_url.is_none() {
                a.server_url = Some(ask_server_url(ctx, a.skip_probe, theme, term)?);
            }
            if a.token.is_none() {
                a.token = Some(ask_token(theme, term)?);
            }
        }
        None => {}
    }
    let problems = a.problems();
    if !problems.is_empty() {
        return Err(UiError::Other(
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    Ok(())
}

fn ask_github_users(ctx: &Context, theme: &ColorfulTheme, term: &Term) -> R<Vec<String>> {
    'again: loop {
        let text: String = Input::with_theme(theme)
            .with_prompt("GitHub users whose SSH keys may log in (comma-separated, empty for none)")
            .allow_empty(true)
            .validate_with(|s: &String| list(s).iter().try_for_each(|u| checks::github_user(u)))
            .interact_text_on(term)?;
        let users = list(&text);
        for u in &users {
            say(term, format!("Checking GitHub user {u}..."));
            match net::github_keys(&ctx.github_base, u, ctx.net_timeout) {
                KeysLookup::Found(keys) => say(term, format!("  {u}: {} key(s)", keys.len())),
                KeysLookup::NoKeys => {
                    warn(
                        term,
                        format!("  {u} has no SSH key on GitHub; it would not let anyone in."),
                    );
                    continue 'again;
                }
                KeysLookup::NotFound => {
                    warn(term, format!("  There is no GitHub user {u}."));
                    continue 'again;
                }
                KeysLookup::Unreachable(why) => {
                    warn(term, format!("  Could not check {u} on GitHub: {why}."));
                    let keep = Confirm::with_theme(theme)
                        .with_prompt(format!(
                            "Keep {u} anyway? (the keys are fetched at every boot)"
                        ))
                        .default(true)
                        .interact_on(term)?;
                    if !keep {
                        continue 'again;
                    }
                }
            }
        }
        return Ok(users);
    }
}

fn ask_server_url(
    ctx: &Context,
    skip_probe: bool,
    theme: &ColorfulTheme,
    term: &Term,
) -> R<String> {
    loop {
        let text: String = Input::with_theme(theme)
            .with_prompt("Server URL (https://HOST:PORT)")
            .validate_with(|s: &String| checks::server_url(s).map(|_| ()))
            .interact_text_on(term)?;
        let url = checks::server_url(&text).map_err(UiError::Other)?;
        if skip_probe {
            return Ok(url.as_url());
        }
        say(term, format!("Checking that {} answers...", url.as_url()));
        match net::probe_server(&url, ctx.net_timeout) {
            Probe::Reachable => {
                say(term, "  it answers.");
                return Ok(url.as_url());
            }
            Probe::Unreachable(why) => {
                warn(term, format!("  {} does not answer: {why}", url.as_url()));
                let i = Select::with_theme(theme)
                    .with_prompt("What now?")
                    .items([
                        "Enter the URL again",
                        "Keep it (the server may not be up yet)",
                    ])
                    .default(0)
                    .interact_on(term)?;
                if i == 1 {
                    return Ok(url.as_url());
                }
            }
        }
    }
}

fn ask_token(theme: &ColorfulTheme, term: &Term) -> R<String> {
    Ok(Password::with_theme(theme)
        .with_prompt(
            "Token of the cluster (from the server's /var/lib/rancher/k3s/server/node-token)",
        )
        .allow_empty_password(true)
        .validate_with(|s: &String| checks::token(s.trim()))
        .interact_on(term)?
        .trim()
        .to_string())
}

fn ask_server(ctx: &Context, a: &mut Answers, theme: &ColorfulTheme, term: &Term) -> R<()> {
    if a.server_url.is_none() && !a.cluster_init {
        let i = Select::with_theme(theme)
            .with_prompt("Which server?")
            .items([
                "A new cluster (single server)",
                "The first server of a new HA cluster (embedded etcd)",
                "Another server joining an existing HA cluster",
            ])
            .default(0)
            .interact_on(term)?;
        match i {
            1 => a.cluster_init = true,
            2 => a.server_url = Some(ask_server_url(ctx, a.skip_probe, theme, term)?),
            _ => {}
        }
    }
    if a.server_url.is_some() {
        if a.token.is_none() {
            a.token = Some(ask_token(theme, term)?);
        }
        return Ok(());
    }
    if a.token.is_none() {
        let t: String = Input::with_theme(theme)
            .with_prompt("Cluster token (empty: generate a strong one)")
            .allow_empty(true)
            .validate_with(|s: &String| {
                if s.is_empty() {
                    Ok(())
                } else {
                    checks::token(s)
                }
            })
            .interact_text_on(term)?;
        if t.is_empty() {
            let token =
                crate::secrets::generate_token().map_err(|e| UiError::Other(e.to_string()))?;
            say(term, "");
            say(
                term,
                format!(
                    "{}",
                    style(
                        "Generated cluster token (shown only this once; agents need it to join):"
                    )
                    .bold()
                ),
            );
            say(term, format!("  {token}"));
            say(term, "");
            a.token = Some(token);
        } else {
            a.token = Some(t);
        }
    }
    Ok(())
}

/// A yes/no question outside the wizard's flow; `false` when it cannot be asked.
pub fn confirm(prompt: &str, default: bool) -> bool {
    Confirm::new()
        .with_prompt(prompt)
        .default(default)
        .interact()
        .unwrap_or(false)
}

/// Ctrl-C: before anything is written, leave at once (the terminal restored, nothing
/// changed); while `writing` is set, refuse to stop half-way through the disk.
pub fn install_ctrlc_handler(
    writing: &'static std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    ctrlc::set_handler(move || {
        if writing.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("\nThe disk is being written; stopping now would leave it half-installed. Please wait.");
            return;
        }
        cancel_exit();
    })
    .map_err(|e| e.to_string())
}
