//! `rkos install`: install to disk without questions (a config file or URL and a device), or
//! unattended from the kernel command line (`rkos.mode=install rkos.install.device=...`,
//! run by rkos-install.service), `rkos install --image FILE` (the same install onto a disk
//! image: how `make disk-image` makes the gold image), and `rkos install --grow-data`
//! (rkos-grow-data.service).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rkos_contract::{label, paths};
use rkos_install::unattended::{self, Unattended};
use rkos_install::{disks, grow, InstallReport, InstallRequest, Target};
use rkos_wizard::progress::BarProgress;
use rkos_wizard::{net, ui};

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// Target disk (`/dev/sda`); everything on it is erased.
    #[arg(long)]
    pub device: Option<String>,
    /// The node's config: a file path or http(s) URL, validated before anything is written.
    #[arg(long, value_name = "PATH|URL")]
    pub config: Option<String>,
    /// Where the OS files are (`boot/vmlinuz`, `boot/initrd`, `rootfs.squashfs`).
    #[arg(long, default_value = paths::MEDIUM)]
    pub source: PathBuf,
    /// Version recorded in slot A's manifest (default: this image's version).
    #[arg(long, value_name = "VERSION")]
    pub image_version: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Take device, config URL and power-off from the kernel command line (rkos.install.*).
    #[arg(long)]
    pub from_cmdline: bool,
    /// Grow RKOS_DATA to the end of its disk (first boot of an installed node).
    #[arg(long, conflicts_with_all = ["device", "config", "from_cmdline"])]
    pub grow_data: bool,
    /// Install onto a raw disk image FILE instead of a disk (created sparse, replaced if it
    /// exists; attached to a loop device for the install, so root is needed).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["device", "from_cmdline", "grow_data"])]
    pub image: Option<PathBuf>,
    /// The image's size (`4G`, `4096M`, bytes); default: the smallest the layout takes.
    /// `RKOS_DATA` grows to the disk's end on the first boot of a bigger disk.
    #[arg(long, value_name = "SIZE", requires = "image", value_parser = parse_size)]
    pub size: Option<u64>,
    /// The image's arch (`amd64`, `arm64`; default: this machine's): a disk image for
    /// another arch is built from that arch's OS files and GRUB modules (`--grub-lib`).
    #[arg(long, value_name = "ARCH", requires = "image")]
    pub arch: Option<String>,
    /// Where GRUB's platform directories are (default /usr/lib/grub, this system's); for
    /// an image of another arch, the `usr/lib/grub` of that arch's root filesystem.
    #[arg(long, value_name = "DIR", requires = "image")]
    pub grub_lib: Option<PathBuf>,
    /// Extra kernel arguments the image's nodes boot with (kept in GRUB's environment,
    /// after the consoles GRUB gives: a board's serial console, say).
    #[arg(long, value_name = "ARGS", requires = "image")]
    pub cmdline: Option<String>,
    /// Power off when the install is done.
    #[arg(long)]
    pub power_off: bool,
    /// Reboot when the install is done.
    #[arg(long, conflicts_with = "power_off")]
    pub reboot: bool,
    /// System root, for /proc/cmdline, /sys and /run/rkos (tests use a temporary directory).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
}

/// Set while the disk is being written: Ctrl-C then cannot stop half-way.
static WRITING: AtomicBool = AtomicBool::new(false);

/// Ctrl-C: before the install starts, leave at once with nothing written; while it writes,
/// refuse (the tools themselves never see it: see `rkos_install::cmd`).
pub fn refuse_ctrlc_while_writing() -> Result<()> {
    ui::install_ctrlc_handler(&WRITING)
        .map_err(|e| anyhow::anyhow!("installing the Ctrl-C handler: {e}"))
}

/// What `rkos install` and `os-config` install: the OS files in `source` for this machine's
/// arch, as version `image_version` (default: the running image's, under `root`), onto
/// `disk`, keeping the consoles of this boot (`root`'s `/proc/cmdline`).
pub fn request(
    root: &Path,
    source: &Path,
    image_version: Option<&str>,
    disk: &disks::Disk,
    config_yaml: String,
) -> Result<InstallRequest> {
    let version = image_version.map_or_else(|| crate::image_version(root), str::to_string);
    Ok(InstallRequest {
        target: Target::Device(disk.dev_path()),
        source: rkos_install::Source::from_dir(source, &version, rkos_contract::arch())?,
        config_yaml,
        extra_cmdline: unattended::extra_cmdline(root),
    })
}

/// The install with a progress bar on the terminal, Ctrl-C refused while it runs.
pub fn install(req: &InstallRequest) -> Result<InstallReport> {
    WRITING.store(true, Ordering::SeqCst);
    let res = rkos_install::run(req, &mut BarProgress::new());
    WRITING.store(false, Ordering::SeqCst);
    Ok(res?)
}

/// `4G`, `4GiB`, `512M`, `4294967296`: a size in bytes (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 4G"))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("`{s}`: unknown unit (K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too big"))
}

/// The config a disk image carries: only the opt-in to seed volumes (an installed node
/// ignores them without it), so every clone takes its config from its cloud-init seed (or
/// from `os-config` on its console).
const IMAGE_CONFIG: &str =
    "# rkos disk image: each node made from it takes its config from its cloud-init
# seed (NoCloud or ConfigDrive), from rkos/config.yaml on its boot partition (RKOS_EFI: a
# Raspberry Pi card's FAT partition), or from `sudo os-config` on its console. See
# docs/disk-image.md and docs/rpi.md.
# `cdrom`: read the seed volumes attached to this node (CIDATA, config-2) and the boot
# partition's rkos/config.yaml at every boot.
rkos:
  data_sources:
    - cdrom
";

/// `rkos install --image FILE`: the installer's own install onto a raw image file.
fn install_image(args: &InstallArgs, image: &Path) -> Result<()> {
    let version = args
        .image_version
        .clone()
        .unwrap_or_else(|| crate::image_version(&args.root));
    let arch = args.arch.as_deref().unwrap_or(rkos_contract::arch());
    let mut source = rkos_install::Source::from_dir(&args.source, &version, arch)?;
    if let Some(dir) = &args.grub_lib {
        source = source.with_grub_lib(dir.clone());
    }
    let config_yaml = match &args.config {
        Some(src) => checked_config(src, fetch_with_retry(src, false)?)?,
        None => IMAGE_CONFIG.to_string(),
    };
    let min = rkos_install::Layout::for_image(source.total_bytes()?).min_disk_bytes();
    let req = InstallRequest {
        target: Target::Image {
            path: image.to_path_buf(),
            size_bytes: args.size.unwrap_or(min),
        },
        source,
        config_yaml,
        extra_cmdline: args.cmdline.clone(),
    };
    let done = rkos_install::run(&req, &mut rkos_install::LogProgress)?;
    eprintln!(
        "rkos-install: disk image {} with rkos {} ({}, {} {} MiB)",
        done.target.display(),
        done.manifest.version,
        rkos_slots::human_size(done.disk_bytes),
        label::STATE,
        done.layout.state_mib
    );
    Ok(())
}

pub fn run(args: InstallArgs) -> Result<()> {
    if args.grow_data {
        return grow_data(&args.root);
    }
    if let Some(image) = &args.image {
        return install_image(&args, image);
    }
    refuse_ctrlc_while_writing()?;
    let (settings, fallback_config) = settings(&args);
    if args.from_cmdline && settings.start() == unattended::Start::Interactive {
        return os_config_on_this_terminal();
    }
    let Unattended {
        device,
        config_url: config,
        power_off,
        reboot,
        ..
    } = settings;
    let boot = disks::boot_disks(&args.root);
    let mut candidates = disks::list(&args.root, &boot);
    // Loop devices are never offered, but one named explicitly is how a disk image is made
    // (and how the installer is tested): accept it unless it holds the boot medium.
    if let Some(name) = device.as_deref().map(|d| d.trim_start_matches("/dev/")) {
        if name.starts_with("loop") && !boot.contains(name) {
            candidates.extend(disks::lookup(&args.root, name));
        }
    }
    let dev = match device {
        Some(d) => d,
        None if args.from_cmdline && candidates.len() == 1 => {
            eprintln!(
                "rkos.install.device not given: installing to the only disk, {}",
                candidates[0].describe()
            );
            candidates[0].name.clone()
        }
        None => bail!(
            "say which disk: --device (or rkos.install.device=); candidates: {}",
            candidates
                .iter()
                .map(|d| d.describe())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    let disk = disks::resolve_choice(&args.root, &dev, &candidates).map_err(anyhow::Error::msg)?;

    let config_yaml = match config.as_ref().or(fallback_config.as_ref()) {
        Some(src) => checked_config(src, fetch_with_retry(src, args.from_cmdline)?)?,
        None => {
            eprintln!(
                "warning: no config given: the installed node has only its defaults (no password, no SSH key);\n\
                 run `sudo os-config` on it from the console, or reinstall with --config"
            );
            String::from("# Written by rkos install without a config.\n")
        }
    };

    if !args.yes && !args.from_cmdline {
        let ok = ui::confirm(
            &format!("Erase ALL data on {} and install rkos?", disk.describe()),
            false,
        );
        if !ok {
            eprintln!("Cancelled: nothing was written.");
            return Ok(());
        }
    }
    let req = request(
        &args.root,
        &args.source,
        args.image_version.as_deref(),
        &disk,
        config_yaml,
    )?;
    let done = install(&req)?;
    eprintln!(
        "rkos-install: installed rkos {} on {} ({} {} MiB)",
        done.manifest.version,
        done.target.display(),
        label::STATE,
        done.layout.state_mib
    );
    if power_off || reboot {
        let what = if power_off { "poweroff" } else { "reboot" };
        eprintln!("rkos-install: {what}");
        std::process::Command::new("systemctl")
            .arg(what)
            .status()
            .with_context(|| format!("systemctl {what}"))?;
    }
    Ok(())
}

/// The ISO's plain "rkos install" entry named no disk and no config: erase nothing and hand
/// the console (rkos-install.service's terminal) to `os-config`.
fn os_config_on_this_terminal() -> Result<()> {
    use std::os::unix::process::CommandExt;
    eprintln!(
        "rkos-install: no disk and no config named (rkos.install.device=, rkos.install.config_url=): \
         nothing is erased without a question; starting os-config"
    );
    let tty = |what| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .with_context(|| format!("opening the terminal for os-config's {what}"))
    };
    let err = std::process::Command::new("os-config")
        .stdin(tty("input")?)
        .stdout(tty("output")?)
        .stderr(tty("messages")?)
        .exec();
    Err(err).context("starting os-config")
}

/// What to install where: the flags, and with `--from-cmdline` what they leave unset taken
/// from the live system's merged config (`install:`, where the kernel command line's
/// `rkos.install.*` words land); also a config on the boot medium to fall back on.
fn settings(args: &InstallArgs) -> (Unattended, Option<String>) {
    let settings = Unattended {
        device: args.device.clone(),
        config_url: args.config.clone(),
        power_off: args.power_off,
        reboot: args.reboot,
        tty: None,
    };
    if !args.from_cmdline {
        return (settings, None);
    }
    // As with k3OS, the settings may come from the kernel command line, the boot medium's
    // config or a NoCloud seed: all of them are sources of the live system's config, and the
    // command line wins as it always does. A source with errors gives none: say why.
    let merged = rkos_config::NodeConfig::at(&args.root).load();
    for e in merged.errors() {
        eprintln!("rkos-install: config: {e}");
    }
    let settings = settings.or(Unattended::from_config(&merged.config.rkos.install));
    // Without a config URL, a config on the boot medium (rkos/config.yaml on the ISO or
    // stick, copied by rkos-init) becomes the installed node's config.
    let boot_cfg = paths::under(&args.root, paths::BOOT_CONFIG);
    let fallback = boot_cfg
        .is_file()
        .then(|| boot_cfg.to_string_lossy().into_owned());
    (settings, fallback)
}

/// `text`, the config read from `src`, when it has no errors (its warnings are printed).
fn checked_config(src: &str, text: String) -> Result<String> {
    let (errors, warnings) = rkos_wizard::validate_config(src, &text);
    warnings.iter().for_each(|w| eprintln!("warning: {w}"));
    if !errors.is_empty() {
        bail!(
            "{src} has errors; nothing was written:\n{}",
            errors.join("\n")
        );
    }
    Ok(text)
}

/// The network may come up after the install unit starts: retry a URL for a minute.
fn fetch_with_retry(src: &str, patient: bool) -> Result<String> {
    let deadline = Instant::now()
        + if patient {
            Duration::from_secs(60)
        } else {
            Duration::ZERO
        };
    loop {
        match net::fetch_text(src, Duration::from_secs(10)) {
            Ok(t) => return Ok(t),
            Err(e) if Instant::now() < deadline && src.contains("://") => {
                eprintln!("rkos-install: {e}; retrying");
                std::thread::sleep(Duration::from_secs(3));
            }
            Err(e) => bail!("cannot read the config {src}: {e}; nothing was written"),
        }
    }
}

fn grow_data(root: &Path) -> Result<()> {
    let link = root.join("dev/disk/by-label").join(label::DATA);
    let part = std::fs::canonicalize(&link)
        .with_context(|| format!("no {} volume ({})", label::DATA, link.display()))?;
    let disk = disks::parent_disk(root, &part.to_string_lossy())
        .with_context(|| format!("cannot find the disk holding {}", part.display()))?;
    let disk = PathBuf::from("/dev").join(disk);
    match grow::grow_data(&disk, &part)? {
        grow::Grown::AlreadyFull => {
            eprintln!("{} already fills {}", part.display(), disk.display())
        }
        grow::Grown::Grown { from, to } => eprintln!(
            "grew {} to the end of {} (last sector {from} -> {to})",
            part.display(),
            disk.display()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstallArgs,
    }

    #[test]
    fn install_command_line_is_well_formed() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["rkos", "--grow-data", "--device", "/dev/sda"]).is_err());
        assert!(Cli::try_parse_from(["rkos", "--power-off", "--reboot"]).is_err());
        let c = Cli::try_parse_from(["rkos", "--from-cmdline", "--image-version", "2"]).unwrap();
        assert!(c.args.from_cmdline);
        assert_eq!(c.args.image_version.as_deref(), Some("2"));
        let c = Cli::try_parse_from(["rkos", "--image", "x.raw", "--size", "4G"]).unwrap();
        assert_eq!(c.args.size, Some(4 << 30));
        assert!(
            Cli::try_parse_from(["rkos", "--size", "4G"]).is_err(),
            "--size needs --image"
        );
        assert!(Cli::try_parse_from(["rkos", "--image", "x", "--device", "/dev/sda"]).is_err());
        let c = Cli::try_parse_from([
            "rkos",
            "--image",
            "x",
            "--arch",
            "arm64",
            "--grub-lib",
            "/r/usr/lib/grub",
        ])
        .unwrap();
        assert_eq!(c.args.arch.as_deref(), Some("arm64"));
        assert!(
            Cli::try_parse_from(["rkos", "--arch", "arm64"]).is_err(),
            "--arch needs --image: a disk is installed with this machine's arch"
        );
        assert!(Cli::try_parse_from(["rkos", "--grub-lib", "/g"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn the_disk_image_config_lets_clones_read_their_seed() {
        let loaded = rkos_config::load(&[rkos_config::Source::given_file(
            "image-config.yaml",
            IMAGE_CONFIG,
        )]);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        assert!(rkos_config::datasource::reads_seed_volumes(&loaded.config));
    }
}
