//! `rkos config show|validate|render|apply`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use rkos_config::{
    render_report, validate_text, BootMode, Loaded, NodeConfig, RenderContext, Source,
};

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the merged config (secrets redacted).
    Show(ShowArgs),
    /// Check config files; exit 1 if any has an error.
    Validate(ValidateArgs),
    /// Render the config into the files the node needs, under a directory.
    Render(RenderArgs),
    /// Render onto the running system and restart what changed.
    Apply(crate::config_apply::ApplyArgs),
}

/// Where the sources come from: the standard locations under a root, or given files.
#[derive(Args, Clone)]
pub struct SourceArgs {
    /// Use these files (lowest first) instead of the standard sources.
    #[arg(long = "config", value_name = "FILE")]
    pub configs: Vec<PathBuf>,
    /// Kernel command line to use (default: none with --config, else the source root's
    /// /proc/cmdline).
    #[arg(long)]
    pub cmdline: Option<String>,
    /// Root under which the standard sources are read.
    #[arg(long = "source-root", value_name = "DIR", default_value = "/")]
    pub source_root: PathBuf,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Say which source set each value.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Args)]
pub struct ValidateArgs {
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct RenderArgs {
    /// Directory to write the rendered files under.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Boot mode: live, disk, netboot, install or rescue (persistent paths need disk).
    #[arg(long, default_value = "live")]
    pub mode: BootMode,
    /// OS version for the rkos.io/version label (default: this build's).
    #[arg(long)]
    pub version: Option<String>,
    /// Primary MAC address (for the default hostname).
    #[arg(long)]
    pub mac: Option<String>,
}

pub fn run(cmd: ConfigCmd) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Show(a) => show(&a),
        ConfigCmd::Validate(a) => validate(&a),
        ConfigCmd::Render(a) => render_cmd(&a),
        ConfigCmd::Apply(a) => crate::config_apply::run(&a),
    }
}

/// The merged config of the `--config` files (and `--cmdline`), or else the node's: its
/// standard sources under `--source-root`, as the node reads them (`rkos_config::NodeConfig`).
pub fn load(a: &SourceArgs) -> anyhow::Result<Loaded> {
    if a.configs.is_empty() {
        let node = NodeConfig::at(&a.source_root);
        return Ok(match &a.cmdline {
            Some(c) => node.cmdline(c.clone()),
            None => node,
        }
        .load());
    }
    let mut sources = Vec::new();
    for p in &a.configs {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        sources.push(Source::given_file(p.display().to_string(), text));
    }
    if let Some(c) = a.cmdline.as_ref().filter(|c| !c.trim().is_empty()) {
        sources.push(Source::cmdline(c.clone()));
    }
    Ok(rkos_config::load(&sources))
}

fn print_diags(diags: &[rkos_config::Diagnostic]) {
    for d in diags {
        eprintln!("{d}");
    }
}

fn show(a: &ShowArgs) -> anyhow::Result<()> {
    let loaded = load(&a.sources)?;
    print_diags(&loaded.diagnostics);
    print!("{}", rkos_config::show::show(&loaded, a.explain));
    Ok(())
}

fn validate(a: &ValidateArgs) -> anyhow::Result<()> {
    let mut errors = 0;
    let mut warnings = 0;
    for p in &a.files {
        let text = match std::fs::read(p) {
            Ok(b) => match String::from_utf8(b) {
                Ok(t) => t,
                Err(_) => {
                    eprintln!("{}: error: not UTF-8 text", p.display());
                    errors += 1;
                    continue;
                }
            },
            Err(e) => {
                eprintln!("{}: error: cannot read: {e}", p.display());
                errors += 1;
                continue;
            }
        };
        let diags = validate_text(&p.display().to_string(), &text);
        print_diags(&diags);
        errors += rkos_config::count(&diags, rkos_config::Severity::Error);
        warnings += rkos_config::count(&diags, rkos_config::Severity::Warning);
    }
    if errors > 0 {
        eprintln!("{errors} error(s), {warnings} warning(s)");
        // Exit 1 without an error chain: the diagnostics above are the message.
        std::process::exit(1);
    }
    eprintln!("ok: {} file(s), {warnings} warning(s)", a.files.len());
    Ok(())
}

fn render_cmd(a: &RenderArgs) -> anyhow::Result<()> {
    let loaded = load(&a.sources)?;
    print_diags(&loaded.diagnostics);
    let mut ctx = RenderContext::new(
        a.version
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
        a.mode,
    );
    ctx.primary_mac = a.mac.clone();
    let rendered = render_report(&loaded.config, &ctx);
    for w in &rendered.warnings {
        eprintln!("warning: {w}");
    }
    let changed = rkos_config::apply::write_rendered(&a.root, &rendered.files)
        .with_context(|| format!("writing under {}", a.root.display()))?;
    for f in &rendered.files {
        let mark = if changed.contains(&f.path) {
            "written"
        } else {
            "unchanged"
        };
        println!(
            "{:04o} {}:{} {} ({mark})",
            f.mode,
            f.uid,
            f.gid,
            f.path.display()
        );
    }
    Ok(())
}
