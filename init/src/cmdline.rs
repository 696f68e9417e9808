//! The kernel command line keys `rkos-init` itself acts on (see ARCHITECTURE.md), read from
//! the words `rkos_contract::cmdline` splits (quoting, `--`, the last occurrence wins). Every
//! other `rkos.*` key is configuration and is left to `rkos-config`.

use std::time::Duration;

use rkos_contract::cmdline::{keys, Cmdline};
use rkos_contract::{BootMode, Slot};

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
    pub mode: Option<BootMode>,
    pub slot: Option<Slot>,
    /// `rkos.state=`: the booted disk's `RKOS_STATE` filesystem UUID, lower case.
    pub state_uuid: Option<String>,
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

/// The real root's init when the command line names none.
pub const DEFAULT_INIT: &str = "/sbin/init";

/// What an empty command line gives.
impl Default for BootParams {
    fn default() -> Self {
        BootParams {
            mode: None,
            slot: None,
            state_uuid: None,
            image_url: None,
            image_sha256: None,
            wait: DEFAULT_WAIT,
            consoles: Vec::new(),
            init: DEFAULT_INIT.to_string(),
            debug: false,
        }
    }
}

/// Parses the keys `rkos-init` acts on. A key given twice counts once, the last one (as
/// GRUB appends the operator's additions after the defaults); a bad value is an error, not a
/// guess, so a typo such as `rkos.mode=dsik` stops at the rescue shell with a message.
pub fn parse(cmdline: &str) -> Result<BootParams, CmdlineError> {
    let c = Cmdline::parse(cmdline);
    let image_sha256 = match c.get(keys::IMAGE_SHA256) {
        Some(v) if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Err(CmdlineError::Sha256(v.to_string()))
        }
        v => v.map(str::to_ascii_lowercase),
    };
    Ok(BootParams {
        mode: c.mode().transpose().map_err(|e| CmdlineError::Mode(e.0))?,
        slot: c.slot().transpose().map_err(|e| CmdlineError::Slot(e.0))?,
        state_uuid: c
            .get(keys::STATE)
            .filter(|v| !v.is_empty())
            .map(str::to_ascii_lowercase),
        image_url: c
            .get(keys::IMAGE)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        image_sha256,
        wait: c.get(keys::WAIT).map_or(Ok(DEFAULT_WAIT), parse_wait)?,
        consoles: consoles_of(&c),
        // An empty `init=` leaves the one before it (or the default) in place.
        init: c
            .get_all(keys::INIT)
            .filter(|v| !v.is_empty())
            .last()
            .unwrap_or(DEFAULT_INIT)
            .to_string(),
        debug: c.flag(keys::DEBUG),
    })
}

/// The console devices named by `console=` (options stripped, duplicates dropped), in command
/// line order. Separate from [`parse`] so a failure message can reach the consoles even when
/// another key is bad.
pub fn consoles(cmdline: &str) -> Vec<String> {
    consoles_of(&Cmdline::parse(cmdline))
}

fn consoles_of(c: &Cmdline) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in c.get_all(keys::CONSOLE) {
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
    fn defaults_when_absent() {
        let p = parse("root=/dev/sda quiet").unwrap();
        assert_eq!(p.mode, None);
        assert_eq!(p.slot, None);
        assert_eq!(p.wait, DEFAULT_WAIT);
        assert_eq!(p.init, "/sbin/init");
        assert!(p.consoles.is_empty());
        assert!(!p.debug);
        assert_eq!(p, BootParams::default());
    }

    #[test]
    fn reads_all_keys() {
        let sha = "AB".repeat(32);
        let p = parse(&format!(
            "console=tty0 console=ttyS0,115200n8 console=/dev/hvc0 console=ttyS0 rkos.mode=netboot \
             rkos.slot=b rkos.state=1B4E28BA-2FA1-11D2-883F-B9A761BDE3FB rkos.wait=2.5 rkos.image=http://x/y.squashfs rkos.image.sha256={sha} \
             init=/lib/systemd/systemd rkos.debug"
        ))
        .unwrap();
        assert_eq!(p.mode, Some(BootMode::Netboot));
        assert_eq!(p.slot, Some(Slot::B));
        assert_eq!(
            p.state_uuid.as_deref(),
            Some("1b4e28ba-2fa1-11d2-883f-b9a761bde3fb")
        );
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
        assert_eq!(p.mode, Some(BootMode::Disk));
        let p = parse("rkos.mode=disk rkos.mode=rescue").unwrap();
        assert_eq!(p.mode, Some(BootMode::Rescue));
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
}
