//! The questions. They only fill an [`Answers`]; nothing is written here. Each answer is
//! checked where it is typed, with the same checks the non-interactive path uses; an error
//! stays on screen until the answer is accepted, then the question leaves one line behind.
//! The flow: what to do, where to install, answers or a config file, the questions
//! ([`questions`], [`role`]), the summary, the confirmation.

mod ask;
mod questions;
mod role;

use std::path::PathBuf;
use std::time::Duration;

use console::style;
pub use console::Term;

use crate::answers::{Action, Answers, Problem};
use crate::net;
use crate::tty;
use ask::{Asker, Text};
use rkos_contract::BootMode;
use rkos_install::disks::{self, Disk};

/// What the questions need from the system, gathered by the caller (so a test can give a
/// fake set of disks and a loopback GitHub).
pub struct Context {
    pub root: PathBuf,
    pub disks: Vec<Disk>,
    pub default_hostname: String,
    /// The MAC address the default host name comes from, to say when it may be shared.
    pub primary_mac: Option<String>,
    pub github_base: String,
    pub net_timeout: Duration,
    /// Wired interfaces for the static address question.
    pub interfaces: Vec<String>,
    /// SSIDs seen by a scan (empty: ask for the SSID).
    pub wifi_scan: Vec<String>,
    /// How the node booted (`None`: not known, e.g. a scratch root).
    pub mode: Option<BootMode>,
    /// The node's current values (from its config), offered as the defaults.
    pub current: Answers,
    /// The node's current `/var/lib/rkos/config.yaml`, whose other settings are kept.
    pub current_file: Option<String>,
}

impl Context {
    /// A node whose configuration is lost at reboot (the live ISO, netboot).
    pub fn ram_only(&self) -> bool {
        self.mode.is_some_and(BootMode::is_ephemeral)
    }
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

/// Leaves at once after Ctrl-C, before anything was written: terminal restored, cursor
/// shown, one message, exit status 130 (as a shell reports SIGINT).
pub fn cancel_exit() -> ! {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tty::restore();
        let _ = Term::stderr().show_cursor();
        eprintln!("\nCancelled: nothing was written.");
    });
    std::process::exit(130)
}

type R<T> = Result<T, UiError>;

/// The warning a node that runs in RAM gets before its configuration is applied (two
/// lines that fit a serial terminal).
pub const RAM_ONLY: [&str; 2] = [
    "This node runs from the live ISO, in RAM: a configuration made now is lost",
    "at the next reboot. Install rkos to a disk to keep it.",
];

/// Runs the questions; answers already given (flags, `--answers`) are not asked again,
/// unless their check refuses them: then they are asked with the refused value to edit.
/// Returns `None` when the user declines at the confirmation.
pub fn run(ctx: &Context, preset: Answers, term: &Term) -> R<Option<Outcome>> {
    let _session = tty::Session::start().map_err(|e| UiError::Other(format!("terminal: {e}")))?;
    let ask = Asker {
        theme: dialoguer::theme::ColorfulTheme::default(),
        term,
    };
    let mut a = preset;
    ask.say(format!("{}", style("rkos configuration").bold()));
    ask.say("Ctrl-C leaves everything as it was. Ctrl-U clears a typed answer.");
    let refused = refuse_invalid(&ask, &mut a);

    let mut action = match a.action {
        Some(x) => x,
        None => {
            // On a node booted from a disk, configuring it is the usual errand.
            let default = usize::from(ctx.mode == Some(BootMode::Disk));
            let i = ask.select(
                "What do you want to do?",
                &[
                    "Install rkos to a disk",
                    "Configure this node as it runs (no install)",
                ],
                default,
            )?;
            [Action::Install, Action::Configure][i]
        }
    };
    if action == Action::Configure && ctx.ram_only() {
        warn_ram_only(&ask);
    }

    let mut disk = None;
    if action == Action::Install {
        disk = Some(ask_disk(ctx, &a, &ask)?);
    }

    let config_text = match a.config_url.clone() {
        Some(src) => Some(load_config(ctx, &src, &ask)?),
        None => loop {
            let i = ask.select(
                "How do you want to configure the node?",
                &[
                    "Answer a few questions",
                    "Use a config file (cloud-init style) from a path or URL",
                ],
                0,
            )?;
            if i == 0 {
                break None;
            }
            if let Some((src, text)) = ask_config_file(ctx, &ask)? {
                a.config_url = Some(src);
                break Some(text);
            }
        },
    };

    let config_yaml = match config_text {
        Some(text) => text,
        None => {
            questions::ask_all(ctx, &mut a, &refused, &ask)?;
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

    loop {
        a.action = Some(action);
        a.device = disk
            .as_ref()
            .map(|d: &Disk| d.dev_path().to_string_lossy().into_owned());
        ask.say("");
        ask.say(format!("{}", style("Summary").bold()));
        for (k, v) in summary_rows(ctx, &a) {
            ask.say(format!("  {k:<26} {v}"));
        }
        ask.say("");
        match confirm_step(ctx, action, disk.as_ref(), &ask)? {
            Confirmed::Yes => break,
            Confirmed::No => {
                ask.say("Cancelled: nothing was written.");
                return Ok(None);
            }
            Confirmed::InstallInstead => {
                action = Action::Install;
                disk = Some(ask_disk(ctx, &a, &ask)?);
            }
        }
    }
    Ok(Some(Outcome {
        answers: a,
        config_yaml,
        disk,
    }))
}

/// The summary's rows: the answers, secrets masked, and what else the node keeps.
fn summary_rows(ctx: &Context, a: &Answers) -> Vec<(String, String)> {
    let mut rows = a.summary();
    if a.action == Some(Action::Configure) && a.config_url.is_none() {
        if let Some(current) = &ctx.current_file {
            let kept = crate::current::kept_keys(current, a);
            if !kept.is_empty() {
                rows.push(("kept from config.yaml".into(), kept.join(", ")));
            }
        }
        if ctx.ram_only() {
            rows.push(("kept until".into(), "the next reboot (RAM only)".into()));
        }
    }
    rows
}

enum Confirmed {
    Yes,
    No,
    InstallInstead,
}

fn confirm_step(ctx: &Context, action: Action, disk: Option<&Disk>, ask: &Asker) -> R<Confirmed> {
    let yes = |b: bool| if b { Confirmed::Yes } else { Confirmed::No };
    match (action, disk) {
        (Action::Install, Some(d)) => {
            ask.warn(format!(
                "! Everything on {} ({}) will be erased.",
                d.dev_path().display(),
                d.describe()
            ));
            let prompt = format!(
                "Erase ALL data on {} and install rkos?",
                d.dev_path().display()
            );
            Ok(yes(ask.confirm(&prompt, false)?))
        }
        _ if ctx.ram_only() => {
            warn_ram_only(ask);
            let i = ask.select(
                "Apply this configuration?",
                &[
                    "Apply it now (in RAM until the next reboot)",
                    "Install rkos to a disk instead (keeps it)",
                    "Cancel (nothing is written)",
                ],
                0,
            )?;
            Ok([Confirmed::Yes, Confirmed::InstallInstead, Confirmed::No]
                .into_iter()
                .nth(i)
                .unwrap_or(Confirmed::No))
        }
        _ => Ok(yes(
            ask.confirm("Write this configuration and apply it now?", true)?
        )),
    }
}

fn warn_ram_only(ask: &Asker) {
    ask.warn(format!("! {}", RAM_ONLY[0]));
    ask.warn(format!("  {}", RAM_ONLY[1]));
}

/// Answers from flags or a file that their check refuses are taken out (and said), so the
/// questions ask them again with the refused value on the line.
fn refuse_invalid(ask: &Asker, a: &mut Answers) -> Vec<(Problem, String)> {
    let refused = a.take_invalid();
    for (p, _) in &refused {
        ask.warn(format!("! given {}: {} (asked again)", p.key, p.message));
    }
    refused
}

fn ask_disk(ctx: &Context, a: &Answers, ask: &Asker) -> R<Disk> {
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
        let i = ask.select(
            "Install to which disk? (everything on it will be erased)",
            &items,
            0,
        )?;
        match disks::resolve_choice(&ctx.root, &ctx.disks[i].name, &ctx.disks) {
            Ok(d) => return Ok(d),
            Err(e) => ask.warn(e),
        }
    }
}

fn load_config(ctx: &Context, src: &str, ask: &Asker) -> R<String> {
    let text = net::fetch_text(src, ctx.net_timeout).map_err(UiError::Other)?;
    let (errors, warnings) = crate::validate_config(src, &text);
    for w in warnings {
        ask.warn(w);
    }
    if !errors.is_empty() {
        return Err(UiError::Other(format!(
            "{src} has errors:\n{}",
            errors.join("\n")
        )));
    }
    Ok(text)
}

/// A config file by path or URL, asked until one validates; `None` when the answer is
/// empty: back to the choice between questions and a file.
fn ask_config_file(ctx: &Context, ask: &Asker) -> R<Option<(String, String)>> {
    loop {
        let src = ask.text(
            Text::new("Config file path or http(s) URL").hint("empty: go back"),
            |_| Ok(()),
        )?;
        if src.is_empty() {
            return Ok(None);
        }
        let text = match net::fetch_text(&src, ctx.net_timeout) {
            Ok(t) => t,
            Err(e) => {
                ask.warn(format!("Could not read it: {e}"));
                continue;
            }
        };
        if text.starts_with("#!") {
            ask.warn("That is a script, not a config: give a YAML config file.");
            continue;
        }
        let (errors, warnings) = crate::validate_config(&src, &text);
        for w in &warnings {
            ask.warn(w);
        }
        if errors.is_empty() {
            return Ok(Some((src, text)));
        }
        ask.warn("The config has errors; fix them and give it again:");
        for e in errors {
            ask.warn(format!("  {e}"));
        }
    }
}

/// A yes/no question outside the wizard's flow, in the wizard's look; `false` when it
/// cannot be asked.
pub fn confirm(prompt: &str, default: bool) -> bool {
    dialoguer::Confirm::with_theme(&dialoguer::theme::ColorfulTheme::default())
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
