//! Render: a pure function from the merged config to the files the node needs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rkos_contract::paths::DATA_MOUNT;
use sha_crypt::{PasswordHasher, ShaCrypt};

use crate::model::Config;
use crate::node::{Mark, Node, Scalar, Value};
use crate::validate::{decode_content, parse_mode};
use crate::BootMode;

mod k3s;
mod network;
use k3s::k3s;
pub use k3s::{parse_k3s_args, K3sFlag};
pub use network::link_files;
use network::network;

/// The default user (uid/gid 1000).
pub const USER: &str = "rkos";
pub const USER_ID: u32 = 1000;
pub const K3S_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
pub const K3S_ENV: &str = "/etc/default/k3s";
pub const PASSWORD_HASH: &str = "/etc/rkos/password.hash";
pub const AUTHORIZED_KEYS: &str = "/home/rkos/.ssh/authorized_keys";
/// Run at boot after the data disks' mounts: `rkos data-disks --report`, what is missing on
/// the console and at the login prompt (overlay/usr/lib/systemd/system).
pub const DATA_DISKS_REPORT_UNIT: &str = "rkos-data-disks.service";
pub const WPA_CONF: &str = "/etc/wpa_supplicant/wpa_supplicant-wlan0.conf";

/// Everything render needs besides the config. Plain data, so render stays pure and its
/// output is reproducible in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderContext {
    /// The OS version (`rkos.io/version` label).
    pub version: String,
    pub mode: BootMode,
    /// Drives the default hostname where there is no `machine_id`.
    pub primary_mac: Option<String>,
    /// The node's persistent machine id (an installed node: made per instance, see
    /// ARCHITECTURE.md "Identity"); drives the default hostname when set.
    pub machine_id: Option<String>,
    /// Salt bytes for hashing a clear-text password (random in production, fixed in tests).
    pub password_salt: [u8; 12],
    /// The hash installed last time: kept when the clear password still matches it, so the
    /// rendered file does not change on every boot.
    pub previous_password_hash: Option<String>,
    /// Keys fetched for `github:USER`, `gitlab:USER` and https entries, by entry.
    pub fetched_keys: BTreeMap<String, Vec<String>>,
    /// Account names for write_files owners (name -> id).
    pub users: BTreeMap<String, u32>,
    pub groups: BTreeMap<String, u32>,
}

impl RenderContext {
    pub fn new(version: impl Into<String>, mode: BootMode) -> Self {
        let ids = |pairs: &[(&str, u32)]| pairs.iter().map(|(n, i)| (n.to_string(), *i)).collect();
        RenderContext {
            version: version.into(),
            mode,
            primary_mac: None,
            machine_id: None,
            password_salt: *b"rkos-default",
            previous_password_hash: None,
            fetched_keys: BTreeMap::new(),
            users: ids(&[("root", 0), (USER, USER_ID)]),
            groups: ids(&[("root", 0), (USER, USER_ID), ("adm", 4), ("sudo", 27)]),
        }
    }
}

/// One file of the rendered set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute.
    pub path: PathBuf,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Vec<u8>,
}

impl RenderedFile {
    fn new(path: &str, mode: u32, content: impl Into<Vec<u8>>) -> Self {
        RenderedFile {
            path: PathBuf::from(path),
            mode,
            uid: 0,
            gid: 0,
            content: content.into(),
        }
    }
}

/// The rendered files and anything render had to skip or guess.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
    /// Problems found while rendering (e.g. an unknown owner name): reported, not fatal.
    pub warnings: Vec<String>,
}

/// Renders the config into files (sorted by path). See [`render_report`] for the warnings.
pub fn render(config: &Config, ctx: &RenderContext) -> Vec<RenderedFile> {
    render_report(config, ctx).files
}

pub fn render_report(config: &Config, ctx: &RenderContext) -> Rendered {
    let mut r = Rendered::default();
    k3s(config, ctx, &mut r);
    environment(config, &mut r);
    network(config, &mut r);
    system(config, ctx, &mut r);
    users(config, ctx, &mut r);
    mounts(config, ctx, &mut r);
    write_files(config, ctx, &mut r);
    r.files.sort_by(|a, b| a.path.cmp(&b.path));
    // write_files may name a path rkos also renders; the user's entry was pushed later and
    // wins (the sort is stable; dedup keeps the first of a run, so run it reversed).
    r.files.reverse();
    r.files
        .dedup_by(|later, earlier| later.path == earlier.path);
    r.files.reverse();
    r
}

fn mark() -> Mark {
    Mark::new(&std::sync::Arc::from("render"), None, 0)
}

fn s(text: impl Into<String>) -> Node {
    Node::new(
        Value::Scalar(Scalar {
            text: text.into(),
            quoted: true,
        }),
        mark(),
    )
}

fn b(v: bool) -> Node {
    Node::scalar(if v { "true" } else { "false" }, mark())
}

fn list(items: Vec<Node>) -> Node {
    Node::new(Value::Seq { items, key: None }, mark())
}

fn proxy_vars(cfg: &Config) -> Vec<(&'static str, String)> {
    let p = &cfg.rkos.proxy;
    let mut v = Vec::new();
    if let Some(x) = &p.http_proxy {
        v.push(("HTTP_PROXY", x.clone()));
    }
    if let Some(x) = &p.https_proxy {
        v.push(("HTTPS_PROXY", x.clone()));
    }
    if let Some(x) = &p.no_proxy {
        v.push(("NO_PROXY", x.clone()));
    }
    v
}

/// Double-quoted for systemd's EnvironmentFile and pam_env alike, when needed.
fn env_quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:,@+=-".contains(c))
    {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn environment(cfg: &Config, r: &mut Rendered) {
    let proxies = proxy_vars(cfg);
    if proxies.is_empty() && cfg.rkos.environment.is_empty() {
        return;
    }
    let mut out = String::from("# Written by rkos from config.yaml.\n");
    for (k, v) in &proxies {
        out.push_str(&format!("{k}={}\n", env_quote(v)));
        out.push_str(&format!("{}={}\n", k.to_ascii_lowercase(), env_quote(v)));
    }
    for (k, v) in &cfg.rkos.environment {
        out.push_str(&format!("{k}={}\n", env_quote(v)));
    }
    // 0600: proxy URLs and variables can hold credentials, and pam_env reads the file as
    // root at login, so nobody else needs to.
    r.files
        .push(RenderedFile::new("/etc/environment", 0o600, out));
}

fn system(cfg: &Config, ctx: &RenderContext, r: &mut Rendered) {
    let rk = &cfg.rkos;
    if !rk.sysctls.is_empty() {
        let mut s = String::from("# Written by rkos from config.yaml.\n");
        for (k, v) in &rk.sysctls {
            s.push_str(&format!("{k} = {v}\n"));
        }
        r.files
            .push(RenderedFile::new("/etc/sysctl.d/90-rkos.conf", 0o644, s));
    }
    if !rk.modules.is_empty() {
        let mut s = String::from("# Written by rkos from config.yaml.\n");
        for m in &rk.modules {
            s.push_str(m);
            s.push('\n');
        }
        r.files
            .push(RenderedFile::new("/etc/modules-load.d/rkos.conf", 0o644, s));
    }
    if !rk.ntp_servers.is_empty() {
        r.files.push(RenderedFile::new(
            "/etc/systemd/timesyncd.conf.d/rkos.conf",
            0o644,
            format!(
                "# Written by rkos from config.yaml.\n[Time]\nNTP={}\n",
                rk.ntp_servers.join(" ")
            ),
        ));
    }
    if !rk.dns_nameservers.is_empty() || !rk.dns_search.is_empty() {
        let mut conf = String::from("# Written by rkos from config.yaml.\n[Resolve]\n");
        if !rk.dns_nameservers.is_empty() {
            conf.push_str(&format!("DNS={}\n", rk.dns_nameservers.join(" ")));
        }
        if !rk.dns_search.is_empty() {
            conf.push_str(&format!("Domains={}\n", rk.dns_search.join(" ")));
        }
        r.files.push(RenderedFile::new(
            "/etc/systemd/resolved.conf.d/rkos.conf",
            0o644,
            conf,
        ));
    }
    let hostname = cfg.hostname_or_default(ctx.machine_id.as_deref(), ctx.primary_mac.as_deref());
    r.files.push(RenderedFile::new(
        "/etc/hostname",
        0o644,
        format!("{hostname}\n"),
    ));
    etc_hosts(cfg, &hostname, r);
}

/// `/etc/hosts` when cloud-init's `manage_etc_hosts` asks for it: the node's names on
/// 127.0.1.1, as Debian and cloud-init write them.
fn etc_hosts(cfg: &Config, hostname: &str, r: &mut Rendered) {
    let on = cfg
        .manage_etc_hosts
        .as_deref()
        .map(str::to_ascii_lowercase)
        .is_some_and(|m| matches!(m.as_str(), "true" | "yes" | "on" | "localhost" | "template"));
    if !on {
        return;
    }
    let names = match cfg.fqdn.as_deref() {
        Some(f) if f != hostname => format!("{f} {hostname}"),
        _ => hostname.to_string(),
    };
    r.files.push(RenderedFile::new(
        "/etc/hosts",
        0o644,
        format!(
            "# Written by rkos from config.yaml (manage_etc_hosts).\n127.0.0.1\tlocalhost\n\
             127.0.1.1\t{names}\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\
             ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"
        ),
    ));
}

fn users(cfg: &Config, ctx: &RenderContext, r: &mut Rendered) {
    let mut keys: Vec<String> = Vec::new();
    for k in &cfg.ssh_authorized_keys {
        let k = k.trim();
        let remote =
            k.starts_with("github:") || k.starts_with("gitlab:") || k.starts_with("https://");
        if remote {
            match ctx.fetched_keys.get(k) {
                Some(found) => keys.extend(found.iter().map(|f| f.trim().to_string())),
                None => r.warnings.push(format!(
                    "ssh_authorized_keys: keys for `{k}` are not fetched yet"
                )),
            }
        } else {
            keys.push(k.to_string());
        }
    }
    let mut uniq: Vec<String> = Vec::new();
    for k in keys {
        if !k.is_empty() && !uniq.contains(&k) {
            uniq.push(k);
        }
    }
    if !uniq.is_empty() {
        let mut f = RenderedFile::new(AUTHORIZED_KEYS, 0o600, uniq.join("\n") + "\n");
        f.uid = USER_ID;
        f.gid = USER_ID;
        r.files.push(f);
    }
    if let Some(p) = &cfg.rkos.password {
        let content = if p.starts_with('$') {
            format!("{p}\n")
        } else {
            let previous = ctx.previous_password_hash.as_deref().and_then(|prev| {
                let mut lines = prev.lines();
                let hash = lines.next()?.trim();
                let check = lines.find_map(|l| l.strip_prefix(CHECK_PREFIX))?;
                (check.trim() == password_check(hash, p)).then_some(hash)
            });
            let hash = match previous {
                Some(h) => h.to_string(),
                None => match ShaCrypt::SHA512
                    .hash_password_with_salt(p.as_bytes(), &ctx.password_salt)
                {
                    Ok(h) => h.to_string(),
                    Err(e) => {
                        r.warnings
                            .push(format!("rkos.password: could not hash the password: {e}"));
                        return;
                    }
                },
            };
            format!("{hash}\n{CHECK_PREFIX}{}\n", password_check(&hash, p))
        };
        r.files
            .push(RenderedFile::new(PASSWORD_HASH, 0o600, content));
    }
}

const CHECK_PREFIX: &str = "# check: ";

/// A fast check that a clear password still matches an existing hash, so a steady-state
/// boot does not re-run sha512-crypt (which costs more than all the rest of render). It is
/// a SHA-256 over the hash (which holds a random salt) and the password, kept next to the
/// hash in the same root-only 0600 file: whoever can read it can read the clear password
/// in the 0600 config it came from anyway.
fn password_check(hash: &str, password: &str) -> String {
    let mut h = rkos_io::Hasher::new();
    h.update(hash.as_bytes());
    h.update(&[0u8]);
    h.update(password.as_bytes());
    h.finish().sha256
}

fn write_files(cfg: &Config, ctx: &RenderContext, r: &mut Rendered) {
    for wf in &cfg.write_files {
        let content = match decode_content(&wf.content, wf.encoding.as_deref()) {
            Ok(c) => c,
            Err(_) => {
                r.warnings.push(format!(
                    "write_files: {}: content does not decode; skipped",
                    wf.path
                ));
                continue;
            }
        };
        let mode = wf
            .permissions
            .as_deref()
            .and_then(parse_mode)
            .unwrap_or(0o644);
        let (uid, gid) = match wf.owner.as_deref() {
            None => (0, 0),
            Some(o) => {
                let (u, g) = o.split_once(':').unwrap_or((o, o));
                let uid = u.parse().ok().or_else(|| ctx.users.get(u).copied());
                let gid = g
                    .parse()
                    .ok()
                    .or_else(|| ctx.groups.get(g).copied())
                    .or(uid);
                match (uid, gid) {
                    (Some(u), Some(g)) => (u, g),
                    _ => {
                        r.warnings.push(format!(
                            "write_files: {}: unknown owner `{o}`; using root",
                            wf.path
                        ));
                        (0, 0)
                    }
                }
            }
        };
        r.files.push(RenderedFile {
            path: PathBuf::from(&wf.path),
            mode,
            uid,
            gid,
            content,
        });
    }
}

/// The systemd mount unit for `path` (`/var/lib/rancher` -> `var-lib-rancher.mount`): the
/// name render writes the unit under and `rkos data-disks` points to.
pub fn mount_unit(path: &str) -> String {
    format!("{}.mount", systemd_escape_path(path))
}

/// systemd's path escaping for unit names (`/var/lib/x-y` -> `var-lib-x\x2dy`). Written by
/// hand: it is a few lines, and the alternative is shelling out to systemd-escape.
pub fn systemd_escape_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return "-".to_string();
    }
    let mut out = String::new();
    for (i, c) in trimmed.chars().enumerate() {
        match c {
            '/' => out.push('-'),
            '.' if i == 0 => out.push_str("\\x2e"),
            c if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == ':' => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
        }
    }
    out
}

fn mounts(cfg: &Config, ctx: &RenderContext, r: &mut Rendered) {
    let dir = "/etc/systemd/system";
    let mut units = Vec::new();
    for d in &cfg.rkos.data_disks {
        let Some(what) = d.device() else { continue };
        let unit = mount_unit(&d.path);
        // `nofail`: the boot does not wait for the disk (a missing USB disk must not keep the
        // node from booting); k3s, which does need it, waits through its drop-in below.
        let mut opts = d.options.clone().unwrap_or_else(|| "defaults".into());
        if !opts.split(',').any(|o| o == "nofail") {
            opts.push_str(",nofail");
        }
        let body = format!(
            "# Written by rkos from config.yaml (data_disks).\n[Unit]\nDescription=rkos data disk at {path}\nBefore=k3s.service\n\n[Mount]\nWhat={what}\nWhere={path}\nType={ty}\nOptions={opts}\n",
            path = d.path,
            ty = d.fs_type.as_deref().unwrap_or("auto"),
        );
        r.files
            .push(RenderedFile::new(&format!("{dir}/{unit}"), 0o644, body));
        // What fstab's x-systemd.device-timeout= does: a bounded wait for the device, not
        // systemd's default 90 s. A disk that comes after the boot gave up on it (plugged in
        // late) starts what waited for it: systemd starts a device's Wants= when the device
        // appears without a job of its own (as udev's SYSTEMD_WANTS).
        r.files.push(RenderedFile::new(
            &format!(
                "{dir}/{}.device.d/50-rkos.conf",
                systemd_escape_path(&what)
            ),
            0o644,
            format!(
                "# Written by rkos from config.yaml (data_disks).\n[Unit]\nJobRunningTimeoutSec={}s\nWants={unit} k3s.service {DATA_DISKS_REPORT_UNIT}\n",
                d.device_wait()
            ),
        ));
        units.push(unit);
    }
    // So far the units are the data disks' (the persistent paths' come below).
    if !units.is_empty() {
        let disks = units.join(" ");
        let head = "# Written by rkos from config.yaml (data_disks).\n[Unit]\n";
        // k3s never starts without its disks: on the boot disk's empty state a server
        // would start a new cluster, an agent register again.
        r.files.push(RenderedFile::new(
            &format!("{dir}/k3s.service.d/50-rkos-data-disks.conf"),
            0o644,
            format!("{head}Requires={disks}\nAfter={disks}\n"),
        ));
        // Once every disk is mounted or given up on, what is missing is said on the console
        // and at the login prompt (`rkos config apply` starts it with the mounts). A mount
        // whose device never came does not enter the failed state, so OnFailure= would not
        // run; a unit ordered after them does.
        r.files.push(RenderedFile::new(
            &format!("{dir}/{DATA_DISKS_REPORT_UNIT}.d/50-rkos.conf"),
            0o644,
            format!("{head}Wants={disks}\nAfter={disks}\n"),
        ));
    }
    // Persistent paths live on RKOS_DATA, which only an installed node has.
    if ctx.mode == BootMode::Disk {
        for p in &cfg.rkos.persistent_paths {
            let unit = mount_unit(p);
            if units.contains(&unit) {
                continue;
            }
            let body = format!(
                "# Written by rkos from config.yaml (persistent_paths).\n[Unit]\nDescription=rkos persistent path {p}\nBefore=k3s.service\n\n[Mount]\nWhat={DATA_MOUNT}{p}\nWhere={p}\nType=none\nOptions=bind\n"
            );
            r.files
                .push(RenderedFile::new(&format!("{dir}/{unit}"), 0o644, body));
            units.push(unit);
        }
    }
    if !units.is_empty() {
        // A drop-in rather than enablement symlinks: the rendered set is plain files.
        let body = format!(
            "# Written by rkos from config.yaml.\n[Unit]\nWants={}\n",
            units.join(" ")
        );
        r.files.push(RenderedFile::new(
            &format!("{dir}/local-fs.target.d/50-rkos-mounts.conf"),
            0o644,
            body,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha_crypt::PasswordVerifier;

    #[test]
    fn escape() {
        assert_eq!(systemd_escape_path("/var/lib/rancher"), "var-lib-rancher");
        assert_eq!(systemd_escape_path("/mnt/usb-disk"), "mnt-usb\\x2ddisk");
        assert_eq!(systemd_escape_path("/"), "-");
    }

    #[test]
    fn k3s_args_forms() {
        let args: Vec<String> = [
            "server",
            "--disable=traefik",
            "--disable",
            "servicelb",
            "--write-kubeconfig-mode",
            "0644",
            "--secrets-encryption",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (flags, w) = parse_k3s_args(&args);
        assert!(w.is_empty());
        let got: Vec<(&str, Vec<&str>, bool)> = flags
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.values.iter().map(String::as_str).collect(),
                    f.is_bool,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("disable", vec!["traefik", "servicelb"], false),
                ("write-kubeconfig-mode", vec!["0644"], false),
                ("secrets-encryption", vec!["true"], true),
            ]
        );
    }

    /// `openssl passwd -6 -salt n34PoBLMgFrQVl4R rancher` (an independent implementation).
    const OPENSSL_HASH: &str =
        "$6$n34PoBLMgFrQVl4R$RL41oTplz3.LS5ctqEjIKmaex/FNUy/otX7HOMmC.lGfCtFoDWVYITzvmLrVE.jATakjsxzDauKh1z2q04ZHa1";

    #[test]
    fn password_matches_openssl() {
        let mut cfg = Config::default();
        cfg.rkos.password = Some("rancher".into());
        let mut ctx = RenderContext::new("v1", BootMode::Live);
        ctx.password_salt = *b"saltsaltsalt";
        let files = render(&cfg, &ctx);
        let f = files
            .iter()
            .find(|f| f.path.as_path() == std::path::Path::new(PASSWORD_HASH))
            .unwrap();
        let content = String::from_utf8(f.content.clone()).unwrap();
        let hash = content.lines().next().unwrap();
        assert!(ShaCrypt::SHA512.verify_password(b"rancher", hash).is_ok());
        // `rounds=5000` is the default that openssl leaves out.
        assert_eq!(hash.replace("rounds=5000$", ""), OPENSSL_HASH);
        // Reused when it still matches; the check line alone is not enough with another password.
        ctx.previous_password_hash = Some(content.clone());
        ctx.password_salt = *b"othersaltxyz";
        let again = render(&cfg, &ctx);
        assert_eq!(
            again
                .iter()
                .find(|f| f.path.as_path() == std::path::Path::new(PASSWORD_HASH))
                .unwrap()
                .content,
            f.content
        );
    }
}
