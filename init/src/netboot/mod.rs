//! The network boot (`rkos.mode=netboot`): DHCP on the boot NIC, the node's config and the
//! image downloaded into RAM, the image checked against its signed manifest (or
//! `rkos.image.sha256`), and the NIC handed over to systemd-networkd. It runs only from the
//! mount plan's Fetch step (`system.rs`), so no other mode runs any of it. The pure parts
//! (command line, URLs, templates, manifest checks) are here and unit-tested; `dhcp.rs`
//! talks to the NIC and `fetch.rs` to the farm. Decisions and console messages:
//! docs/netboot.md.

pub mod dhcp;
pub mod fetch;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rkos_contract::cmdline::{keys, Cmdline};
use rkos_contract::{files, normalize_mac, paths};
use rkos_slots::Manifest;

use crate::log;

/// How long the whole network boot may take (DHCP and downloads) when `rkos.netboot.timeout`
/// is absent: a farm rebooting many nodes at once serves each slowly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest accepted `rkos.netboot.timeout` (a typo must not park a node for a day).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum NetbootError {
    #[error("{key}={value:?}: {reason}")]
    Param {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("no network interface {wanted} appeared within {secs} s (found: {found})")]
    NoNic {
        wanted: String,
        secs: u64,
        found: String,
    },
    #[error("no DHCP lease on {nics} within {secs} s; last attempt: {last}")]
    NoLease {
        nics: String,
        secs: u64,
        last: String,
    },
    /// A download or check of the image; the text names the URL and what was expected.
    #[error("{0}")]
    Image(String),
    #[error("the node's config {url}: {reason}")]
    Config { url: String, reason: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetbootError {
    let what = what.into();
    move |source| NetbootError::Io { what, source }
}

/// Where the image is: `rkos.image` names the directory the farm serves (the image is its
/// `rootfs.squashfs`) or the squashfs itself; the signed manifest is beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUrl {
    /// The directory, without a trailing `/`.
    pub base: String,
    /// The image's file name there, which is also its name in the manifest.
    pub file: String,
}

impl ImageUrl {
    pub fn parse(url: &str) -> Result<ImageUrl, NetbootError> {
        check_url(keys::IMAGE, url)?;
        let trimmed = url.trim_end_matches('/');
        let last = trimmed.rsplit('/').next().unwrap_or("");
        if !url.ends_with('/') && last.ends_with(".squashfs") {
            let base = &trimmed[..trimmed.len() - last.len() - 1];
            Ok(ImageUrl {
                base: base.to_string(),
                file: last.to_string(),
            })
        } else {
            Ok(ImageUrl {
                base: trimmed.to_string(),
                file: files::ROOTFS.to_string(),
            })
        }
    }

    pub fn image(&self) -> String {
        format!("{}/{}", self.base, self.file)
    }

    pub fn manifest(&self) -> String {
        format!("{}/{}", self.base, files::MANIFEST)
    }
}

/// An http:// URL whose host is an IP address. The initramfs has no TLS (the image is
/// checked by its signature instead) and no DNS resolver (a static glibc cannot load its
/// NSS modules there), so both are refused up front with the reason, not at the first request.
pub fn check_url(key: &'static str, url: &str) -> Result<(), NetbootError> {
    let bad = |reason: &str| NetbootError::Param {
        key,
        value: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        return Err(bad(
            "https:// is not supported in the initramfs (no TLS there); serve it over http://: \
             the image is checked against its signed manifest",
        ));
    } else {
        return Err(bad("not an http:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.parse::<std::net::IpAddr>().is_err() {
        return Err(bad(&format!(
            "the host {host:?} is not an IP address; the initramfs has no DNS resolver, so \
             the farm's URLs must name its address"
        )));
    }
    Ok(())
}

/// What the network boot reads from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub image: ImageUrl,
    /// `rkos.image.sha256`, lower-case: when given, the image is checked against it and no
    /// manifest is fetched.
    pub sha256: Option<String>,
    /// `rkos.config_url`, before substitution.
    pub config_url: Option<String>,
    /// `BOOTIF`: the boot NIC's MAC, `aa:bb:..` lower-case.
    pub bootif: Option<String>,
    pub timeout: Duration,
}

impl Params {
    /// `image_url` and `sha256` come from the mount plan (which rkos-init's own command line
    /// parser filled); the rest from `cmdline`.
    pub fn parse(
        cmdline: &str,
        image_url: &str,
        sha256: Option<&str>,
    ) -> Result<Params, NetbootError> {
        let c = Cmdline::parse(cmdline);
        let image = ImageUrl::parse(image_url)?;
        let config_url = c.get(keys::CONFIG_URL).filter(|v| !v.is_empty());
        if let Some(u) = config_url {
            check_url(keys::CONFIG_URL, u)?;
            expand(u, &Vars::default()).map_err(|reason| NetbootError::Param {
                key: keys::CONFIG_URL,
                value: u.to_string(),
                reason,
            })?;
        }
        let bootif = match c.get(keys::BOOTIF).filter(|v| !v.is_empty()) {
            Some(v) => Some(parse_bootif(v).ok_or_else(|| NetbootError::Param {
                key: keys::BOOTIF,
                value: v.to_string(),
                reason: "not a MAC address (01-aa-bb-cc-dd-ee-ff or aa:bb:cc:dd:ee:ff)".into(),
            })?),
            None => None,
        };
        let timeout = match c.get(keys::NETBOOT_TIMEOUT) {
            Some(v) => v
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
                .filter(|d| !d.is_zero() && *d <= MAX_TIMEOUT)
                .ok_or_else(|| NetbootError::Param {
                    key: keys::NETBOOT_TIMEOUT,
                    value: v.to_string(),
                    reason: format!(
                        "not a number of seconds from 1 to {}",
                        MAX_TIMEOUT.as_secs()
                    ),
                })?,
            None => DEFAULT_TIMEOUT,
        };
        Ok(Params {
            image,
            sha256: sha256.map(str::to_ascii_lowercase),
            config_url: config_url.map(str::to_string),
            bootif,
            timeout,
        })
    }
}

/// `BOOTIF=01-aa-bb-cc-dd-ee-ff` (PXELINUX's form: hardware type 1, Ethernet, then the MAC),
/// or a bare MAC.
pub fn parse_bootif(v: &str) -> Option<String> {
    let mac = v.strip_prefix("01-").filter(|m| m.len() == 17).unwrap_or(v);
    normalize_mac(mac)
}

/// The values `rkos.config_url` may name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    pub mac: String,
    pub uuid: String,
    pub hostname: String,
}

/// Substitutes `${mac}`, `${uuid}` and `${hostname}` in `template`; any other `${...}` is an
/// error (a typo would otherwise fetch some other node's config, or none).
pub fn expand(template: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ at {:?}", &rest[i..]))?;
        let value = match &after[..end] {
            "mac" => &vars.mac,
            "uuid" => &vars.uuid,
            "hostname" => &vars.hostname,
            other => {
                return Err(format!(
                    "unknown variable ${{{other}}} (known: ${{mac}}, ${{uuid}}, ${{hostname}})"
                ))
            }
        };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The checks beyond the signature: the image is for this machine's arch, and of the same
/// build as the running kernel and initramfs (the image's kernel modules must match the
/// running kernel; a farm that serves a new image with an old kernel makes a node that
/// half-works). `initramfs_version` empty: not checked.
pub fn check_manifest(
    manifest: &Manifest,
    arch: &str,
    initramfs_version: &str,
) -> Result<(), String> {
    if manifest.arch != arch {
        return Err(format!(
            "the image is for {}, this machine is {arch}",
            manifest.arch
        ));
    }
    if !initramfs_version.is_empty() && manifest.version != initramfs_version {
        return Err(format!(
            "the image is version {}, the kernel and initramfs that booted are version \
             {initramfs_version}: serve the three from one build",
            manifest.version
        ));
    }
    Ok(())
}

/// `key=value` lines, the format of the lease and source files in `/run/rkos/netboot`.
pub fn key_values(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// The DMI system UUID (`${uuid}`), lower-case; empty when the firmware gives none.
fn dmi_uuid() -> String {
    fs::read_to_string("/sys/class/dmi/id/product_uuid")
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The network boot, from DHCP to the image at `dest`: the plan's Fetch step. Messages go to
/// the consoles as it goes; the error names the URL and what was expected.
pub fn run(image_url: &str, sha256: Option<&str>, dest: &Path) -> Result<(), NetbootError> {
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let consoles = log::console_paths(&crate::cmdline::consoles(&cmdline));
    let params = Params::parse(&cmdline, image_url, sha256)?;
    let wait = crate::cmdline::parse(&cmdline)
        .map(|p| p.wait)
        .unwrap_or(crate::cmdline::DEFAULT_WAIT);
    let started = Instant::now();
    let deadline = started + params.timeout;
    let dir = dest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(paths::NETBOOT));
    fs::create_dir_all(&dir).map_err(io_err(format!("mkdir {}", dir.display())))?;

    let nics = dhcp::wait_for_nics(Path::new("/sys/class/net"), params.bootif.as_deref(), wait)?;
    let (nic, lease) = dhcp::acquire(&nics, &dir, deadline, &consoles)?;
    let say = |text: String| log::to_consoles(&consoles, &format!("rkos-init: {text}\n"));
    say(format!(
        "netboot: {} ({}) has {}/{} from {} in {} ms",
        nic.name,
        nic.mac,
        lease.ip,
        lease.prefix,
        lease.server.as_deref().unwrap_or("?"),
        started.elapsed().as_millis()
    ));
    fs::write(paths::NETBOOT_LEASE, lease.to_file())
        .map_err(io_err(format!("write {}", paths::NETBOOT_LEASE)))?;

    let mut source = vec![("image".to_string(), params.image.image())];
    if let Some(template) = &params.config_url {
        let hostname = lease
            .hostname
            .clone()
            .unwrap_or_else(|| rkos_config::default_hostname(Some(&nic.mac)));
        let vars = Vars {
            mac: nic.mac.clone(),
            uuid: dmi_uuid(),
            hostname,
        };
        let url = expand(template, &vars).map_err(|reason| NetbootError::Param {
            key: keys::CONFIG_URL,
            value: template.clone(),
            reason,
        })?;
        if template.contains("${uuid}") && vars.uuid.is_empty() {
            return Err(NetbootError::Config {
                url,
                reason: "the firmware gives no DMI system UUID for ${uuid}".into(),
            });
        }
        let bytes = fetch::config(&url, Path::new(paths::BOOT_CONFIG), deadline, &consoles)?;
        say(format!("netboot: config {url} ({bytes} bytes)"));
        source.push(("config".into(), url));
    }

    let version = fs::read_to_string(paths::IMAGE_VERSION)
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let got = fetch::image(&params, &dir, &version, deadline, &consoles)?;
    if let Some(v) = &got.version {
        source.push(("version".into(), v.clone()));
    }
    if let Some(k) = &got.key_id {
        source.push(("key".into(), k.clone()));
    }
    let pairs: Vec<(&str, &str)> = source
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    fs::write(paths::NETBOOT_SOURCE, key_values(&pairs))
        .map_err(io_err(format!("write {}", paths::NETBOOT_SOURCE)))?;
    if got.file != dest {
        fs::rename(&got.file, dest).map_err(io_err(format!("rename {}", got.file.display())))?;
    }
    dhcp::hand_over(&nic, Path::new("/"))?;
    Ok(())
}

#[cfg(test)]
mod tests;
