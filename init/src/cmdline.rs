//! The kernel command line keys `rkos-init` itself acts on (see ARCHITECTURE.md). Every other
//! `rkos.*` key is configuration and is left to `rkos-config`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// How long to wait for the boot volume when `rkos.wait` is absent. PCs and VMs have their
/// disks at once; arm64 boards boot from SD cards and USB disks, which take seconds to show
/// up (on a Pi 4 the USB controller sits behind PCIe and loads its firmware first, then hubs
/// enumerate and a USB hard disk spins up). The boot goes on as soon as the volume is there:
/// this only bounds how long a missing one is looked for.
pub const DEFAULT_WAIT: Duration = if cfg!(target_arch = "aarch64") {
    Duration::from_secs(30)
} else {
    Duration::from_secs(10)
};
/// Longest accepted `rkos.wait`: a typo such as `rkos.wait=100000` must not park a node for a day.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// The boot mode (`rkos.mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Booted from the `RKOS_LIVE` medium; nothing persists.
    Live,
    /// Installed: image from `RKOS_STATE:/slots/<slot>/`, persistent paths from `RKOS_DATA`.
    Disk,
    /// Diskless: the image is downloaded into RAM.
    Netboot,
    /// Like live; the real root starts the installer.
    Install,
    /// Stop after the basic mounts and module loading and start the rescue shell.
    Rescue,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::Live,
        Mode::Disk,
        Mode::Netboot,
        Mode::Install,
        Mode::Rescue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Disk => "disk",
            Mode::Netboot => "netboot",
            Mode::Install => "install",
            Mode::Rescue => "rescue",
        }
    }

    /// Modes whose node keeps nothing across reboots (tmpfs for kubelet and containerd).
    pub fn is_ephemeral(self) -> bool {
        matches!(self, Mode::Live | Mode::Install | Mode::Netboot)
    }

    /// Live and install run from the `RKOS_LIVE` medium, which may carry a config.
    pub fn boots_from_live_medium(self) -> bool {
        matches!(self, Mode::Live | Mode::Install)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = CmdlineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| CmdlineError::Mode(s.to_string()))
    }
}

/// An A/B slot on `RKOS_STATE` (`rkos.slot=`): the same type the upgrade code uses.
pub use rkos_slots::Slot;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    #[error(
        "rkos.mode={0:?} is not a boot mode (expected live, disk, netboot, install or rescue)"
    )]
    Mode(String),
    #[error("rkos.slot={0:?} is not a slot (expected A or B)")]
    Slot(String),
    #[error("rkos.wait={0:?} is not a number of seconds between 0 and 600")]
    Wait(String),
    #[error("rkos.image.sha256={0:?} is not 64 hexadecimal digits")]
    Sha256(String),
}

/// What `rkos-init` reads from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// `None`: detect (`RKOS_STATE` present means disk, else live).
    pub mode: Option<Mode>,
    pub slot: Option<Slot>,
    pub image_url: Option<String>,
    /// Lower-case hex.
    pub image_sha256: Option<String>,
    pub wait: Duration,
    /// Console device names from `console=` (options stripped), in command line order.
    pub consoles: Vec<String>,
    /// The real root's init (`init=`), default `/sbin/init`.
    pub init: String,
    /// `rkos.debug`: log every module load and mount to the kernel log.
    pub debug: bool,
}

/// Splits a command line into `key[=value]` words the way the kernel does: words are
/// separated by whitespace, double quotes group (and are removed), `--` ends the kernel's part.
pub fn words(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let push = |w: &mut String, out: &mut Vec<(String, Option<String>)>| {
        let word = std::mem::take(w);
        match word.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((word, None)),
        }
    };
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    if cur == "--" {
                        return out;
                    }
                    push(&mut cur, &mut out);
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word && cur != "--" {
        push(&mut cur, &mut out);
    }
    out
}

/// Parses the keys `rkos-init` acts on. Later words override earlier ones (as GRUB appends
/// the operator's additions after the defaults); a bad value is an error, not a guess, so a
/// typo such as `rkos.mode=dsik` stops at the rescue shell with a message.
pub fn parse(cmdline: &str) -> Result<BootParams, CmdlineError> {
    let mut p = BootParams {
        mode: None,
        slot: None,
        image_url: None,
        image_sha256: None,
        wait: DEFAULT_WAIT,
        consoles: Vec::new(),
        init: "/sbin/init".to_string(),
        debug: false,
    };
    p.consoles = consoles(cmdline);
    for (key, value) in words(cmdline) {
        let v = value.as_deref().unwrap_or("");
        match key.as_str() {
            "rkos.mode" | "k3os.mode" => p.mode = Some(v.parse()?),
            "rkos.slot" => p.slot = Some(v.parse().map_err(|_| CmdlineError::Slot(v.to_string()))?),
            "rkos.image" => p.image_url = Some(v.to_string()).filter(|s| !s.is_empty()),
            "rkos.image.sha256" => {
                if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(CmdlineError::Sha256(v.to_string()));
                }
                p.image_sha256 = Some(v.to_ascii_lowercase());
            }
            "rkos.wait" => p.wait = parse_wait(v)?,
            "rkos.debug" => p.debug = !matches!(v, "0" | "false" | "no"),
            "init" if !v.is_empty() => p.init = v.to_string(),
            _ => {}
        }
    }
    Ok(p)
}

/// The console devices named by `console=` (options stripped, duplicates dropped), in command
/// line order. Separate from [`parse`] so a failure message can reach the consoles even when
/// another key is bad.
pub fn consoles(cmdline: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (key, value) in words(cmdline) {
        if key != "console" {
            continue;
        }
        let v = value.unwrap_or_default();
        let name = v.split(',').next().unwrap_or("");
        let name = name.strip_prefix("/dev/").unwrap_or(name);
        if !name.is_empty() && !out.iter().any(|c| c == name) {
            out.push(name.to_string());
        }
    }
    out
}

fn parse_wait(v: &str) -> Result<Duration, CmdlineError> {
    let secs: f64 = v.parse().map_err(|_| CmdlineError::Wait(v.to_string()))?;
    if !secs.is_finite() || secs < 0.0 || secs > MAX_WAIT.as_secs_f64() {
        return Err(CmdlineError::Wait(v.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_kernel_quoting() {
        let w = words(
            r#"BOOT_IMAGE=/boot/vmlinuz  quiet rkos.hostname="my node" "a=b c" -- rkos.mode=disk"#,
        );
        assert_eq!(
            w,
            vec![
                ("BOOT_IMAGE".into(), Some("/boot/vmlinuz".into())),
                ("quiet".into(), None),
                ("rkos.hostname".into(), Some("my node".into())),
                ("a".into(), Some("b c".into())),
            ]
        );
    }

    #[test]
    fn defaults_when_absent() {
        let p = parse("root=/dev/sda quiet").unwrap();
        assert_eq!(p.mode, None);
        assert_eq!(p.slot, None);
        assert_eq!(p.wait, DEFAULT_WAIT);
        assert_eq!(p.init, "/sbin/init");
        assert!(p.consoles.is_empty());
        assert!(!p.debug);
    }

    #[test]
    fn reads_all_keys() {
        let sha = "AB".repeat(32);
        let p = parse(&format!(
            "console=tty0 console=ttyS0,115200n8 console=/dev/hvc0 console=ttyS0 rkos.mode=netboot \
             rkos.slot=b rkos.wait=2.5 rkos.image=http://x/y.squashfs rkos.image.sha256={sha} \
             init=/lib/systemd/systemd rkos.debug"
        ))
        .unwrap();
        assert_eq!(p.mode, Some(Mode::Netboot));
        assert_eq!(p.slot, Some(Slot::B));
        assert_eq!(p.wait, Duration::from_millis(2500));
        assert_eq!(p.image_url.as_deref(), Some("http://x/y.squashfs"));
        assert_eq!(p.image_sha256, Some("ab".repeat(32)));
        assert_eq!(p.consoles, vec!["tty0", "ttyS0", "hvc0"]);
        assert_eq!(p.init, "/lib/systemd/systemd");
        assert!(p.debug);
    }

    #[test]
    fn later_words_win_and_k3os_alias_works() {
        let p = parse("rkos.mode=live k3os.mode=disk").unwrap();
        assert_eq!(p.mode, Some(Mode::Disk));
        let p = parse("rkos.mode=disk rkos.mode=rescue").unwrap();
        assert_eq!(p.mode, Some(Mode::Rescue));
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let e = parse("rkos.mode=dsik").unwrap_err();
        assert_eq!(e, CmdlineError::Mode("dsik".into()));
        assert_eq!(consoles("rkos.mode=dsik console=ttyS0,115200"), ["ttyS0"]);
        assert!(e.to_string().contains("rkos.mode=\"dsik\""));
        assert_eq!(
            parse("rkos.mode").unwrap_err(),
            CmdlineError::Mode(String::new())
        );
        assert_eq!(
            parse("rkos.slot=C").unwrap_err(),
            CmdlineError::Slot("C".into())
        );
        assert_eq!(
            parse("rkos.wait=ten").unwrap_err(),
            CmdlineError::Wait("ten".into())
        );
        assert_eq!(
            parse("rkos.wait=-1").unwrap_err(),
            CmdlineError::Wait("-1".into())
        );
        assert_eq!(
            parse("rkos.wait=601").unwrap_err(),
            CmdlineError::Wait("601".into())
        );
        assert_eq!(
            parse("rkos.wait=NaN").unwrap_err(),
            CmdlineError::Wait("NaN".into())
        );
        assert!(matches!(
            parse("rkos.image.sha256=abc"),
            Err(CmdlineError::Sha256(_))
        ));
        let bad = format!("rkos.image.sha256={}", "g".repeat(64));
        assert!(matches!(parse(&bad), Err(CmdlineError::Sha256(_))));
    }

    #[test]
    fn ephemeral_modes() {
        assert!(Mode::Live.is_ephemeral());
        assert!(Mode::Install.is_ephemeral());
        assert!(Mode::Netboot.is_ephemeral());
        assert!(!Mode::Disk.is_ephemeral());
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
        }
    }
}
