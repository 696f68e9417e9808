//! `rkos config apply`: render onto the system and restart what changed.
//!
//! The edge where config meets the running system: collecting (with the last-good
//! fallback), fetching data sources and remote SSH keys, writing the rendered files,
//! installing the password, restarting units and running the user's commands. Every step
//! reports its failure and goes on: a broken config must never cost console access.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rkos_config::datasource::{DataSourceError, DataSourceUrl};
use rkos_config::render::{DATA_DISKS_REPORT_UNIT, PASSWORD_HASH, USER};
use rkos_config::{source, BootMode, Config, NodeConfig, RenderContext};
use rkos_contract::paths::{self, under};
use rkos_contract::Cmdline;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum Stage {
    /// Before the network: files, hostname, password, init_cmd and boot_cmd.
    Early,
    /// After network-online: data sources, remote SSH keys, re-render, run_cmd.
    Network,
}

#[derive(Args)]
pub struct ApplyArgs {
    #[arg(long, value_enum, default_value = "early")]
    pub stage: Stage,
    /// The system root to apply to.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Kernel command line (default: the root's /proc/cmdline).
    #[arg(long)]
    pub cmdline: Option<String>,
}

const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

pub fn run(a: &ApplyArgs) -> anyhow::Result<()> {
    let root = a.root.as_path();
    let live = root == Path::new("/");
    let cmdline = a
        .cmdline
        .clone()
        .unwrap_or_else(|| rkos_config::node_config::kernel_cmdline(root));
    let mut problems: Vec<String> = Vec::new();

    if a.stage == Stage::Network {
        fetch_nocloud_seed(root, &cmdline, &mut problems);
        let first = load(root, &cmdline);
        fetch_data_sources(root, &first.config, &mut problems);
    }
    let loaded = load(root, &cmdline);
    let diags = &loaded.diagnostics;
    let mut ctx = context(root, &cmdline);
    if a.stage == Stage::Network {
        fetch_keys(root, &loaded.config, &mut problems);
    }
    ctx.fetched_keys = cached_keys(root, &loaded.config);
    let rendered = rkos_config::render_report(&loaded.config, &ctx);
    problems.extend(rendered.warnings.iter().map(|w| format!("render: {w}")));
    let changed = rkos_config::apply::write_rendered(root, &rendered.files)
        .with_context(|| format!("writing the rendered files under {}", root.display()))?;
    for p in &changed {
        tracing::info!(path = %p.display(), "updated");
    }

    if live {
        if changed.iter().any(|p| p == Path::new(PASSWORD_HASH)) || a.stage == Stage::Early {
            install_password(root, &mut problems);
        }
        if changed.iter().any(|p| p == Path::new("/etc/hostname")) {
            set_hostname(root, &mut problems);
        }
        if Path::new("/run/systemd/system").exists() {
            for action in plan_actions(&changed) {
                run_action(&action, &mut problems);
            }
        }
        let cmds: Vec<(&str, &Vec<String>)> = match a.stage {
            Stage::Early => vec![
                ("init_cmd", &loaded.config.init_cmd),
                ("boot_cmd", &loaded.config.boot_cmd),
            ],
            Stage::Network => vec![("run_cmd", &loaded.config.run_cmd)],
        };
        for (what, list) in cmds {
            for (i, cmd) in list.iter().enumerate() {
                run_user_command(what, i, cmd, &mut problems);
            }
        }
    } else {
        tracing::info!("root is not /: units, password, hostname and commands are left alone");
    }

    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .chain(problems.iter().cloned())
        .collect();
    for d in diags {
        eprintln!("{d}");
    }
    for p in &problems {
        eprintln!("rkos config apply: {p}");
    }
    write_errors(root, &errors)?;
    Ok(())
}

/// The node's config as every reader sees it, saving new last good copies: `config apply`
/// runs first thing each boot, so the copies are what the node last loaded cleanly.
fn load(root: &Path, cmdline: &str) -> rkos_config::Loaded {
    NodeConfig::at(root)
        .cmdline(cmdline)
        .save_last_good()
        .load()
}

fn write_errors(root: &Path, errors: &[String]) -> anyhow::Result<()> {
    let mut text = errors.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let file = rkos_config::RenderedFile {
        path: PathBuf::from(paths::CONFIG_ERRORS),
        mode: 0o644,
        uid: 0,
        gid: 0,
        content: text.into_bytes(),
    };
    rkos_config::apply::write_rendered(root, &[file])
        .with_context(|| format!("writing {}", paths::CONFIG_ERRORS))?;
    Ok(())
}

/// Version, boot mode, primary MAC, previous password hash and accounts, read from the root.
fn context(root: &Path, cmdline: &str) -> RenderContext {
    let version = crate::image_version(root);
    let mode = boot_mode(root, cmdline);
    let mut ctx = RenderContext::new(version, mode);
    ctx.primary_mac = rkos_config::primary_mac(&root.join("sys/class/net"));
    // An installed node's machine id is its own, kept per instance by rkos-init (elsewhere
    // systemd makes a new one at every boot): it names the node when the config does not.
    if mode == BootMode::Disk {
        ctx.machine_id = std::fs::read_to_string(root.join("etc/machine-id"))
            .ok()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty());
    }
    ctx.previous_password_hash = std::fs::read_to_string(under(root, PASSWORD_HASH))
        .ok()
        .map(|h| h.trim().to_string());
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut ctx.password_salt);
    }
    for (file, map) in [
        ("etc/passwd", &mut ctx.users),
        ("etc/group", &mut ctx.groups),
    ] {
        if let Ok(text) = std::fs::read_to_string(root.join(file)) {
            map.extend(parse_ids(&text));
        }
    }
    ctx
}

/// `name:x:id:...` lines of /etc/passwd or /etc/group.
pub fn parse_ids(text: &str) -> BTreeMap<String, u32> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            (!name.is_empty()).then(|| (name.to_string(), id))
        })
        .collect()
}

/// `rkos.mode=` on the command line (read as rkos-init reads it), else the mode rkos-init
/// recorded, else live.
pub fn boot_mode(root: &Path, cmdline: &str) -> BootMode {
    Cmdline::parse(cmdline)
        .mode()
        .and_then(Result::ok)
        .or_else(|| crate::upgrade_cmd::init_report(root).map(|r| r.mode))
        .unwrap_or(BootMode::Live)
}

fn http_client() -> anyhow::Result<rkos_http::Client> {
    rkos_http::Client::new(FETCH_TIMEOUT).context("building the HTTP client")
}

/// The text at `url`, refused when it is bigger than a config source may be (checked while
/// reading, so a server cannot make the node buffer more).
pub fn fetch_text(client: &rkos_http::Client, url: &str) -> anyhow::Result<String> {
    Ok(client.get_text(url, source::MAX_SOURCE_BYTES)?)
}

/// A fetched config source, kept at `path` readable by root only (it may hold a token).
fn fetched(path: PathBuf, text: String) -> rkos_config::RenderedFile {
    rkos_config::RenderedFile {
        path,
        mode: 0o600,
        uid: 0,
        gid: 0,
        content: text.into_bytes(),
    }
}

/// Fetches each `data_sources` URL into `run/rkos/datasources/NN.yaml`. A URL that fails,
/// is plain http without a sha256 pin, or whose body does not match its pin keeps no file
/// (the boot continues with the other sources): only checked bytes are ever parsed.
fn fetch_data_sources(root: &Path, cfg: &Config, problems: &mut Vec<String>) {
    if cfg.rkos.data_sources.is_empty() {
        return;
    }
    let client = match http_client() {
        Ok(c) => c,
        Err(e) => return problems.push(format!("{e:#}")),
    };
    let mut files = Vec::new();
    for (i, entry) in cfg.rkos.data_sources.iter().enumerate() {
        let url = match DataSourceUrl::parse(entry) {
            Ok(u) => u,
            // Validation warned about k3OS's provider names, which are skipped.
            Err(DataSourceError::NotUrl(_)) if !entry.contains('/') => continue,
            Err(e) => {
                problems.push(format!("data_sources[{i}]: {e}"));
                continue;
            }
        };
        let body = fetch_text(&client, &url.fetch).and_then(|text| {
            url.check(text.as_bytes())?;
            Ok(text)
        });
        match body {
            Ok(text) => files.push(fetched(
                Path::new(paths::DATASOURCES_DIR).join(format!("{:02}.yaml", i + 1)),
                text,
            )),
            Err(e) => problems.push(format!("data_sources[{i}]: {e:#}")),
        }
    }
    if let Err(e) = rkos_config::apply::write_rendered(root, &files) {
        problems.push(format!("saving data sources: {e}"));
    }
}

/// A NoCloud seed named on the kernel command line (`ds=nocloud;s=URL`): its files fetched
/// into `run/rkos/nocloud-net/` (`meta-data` and `user-data` as cloud-init requires them,
/// `network-config` and `vendor-data` when the server has them). A failure keeps what an
/// earlier fetch left (the boot continues with the other sources).
fn fetch_nocloud_seed(root: &Path, cmdline: &str, problems: &mut Vec<String>) {
    let Some(base) = rkos_config::cloudinit::nocloud_seed_url(cmdline) else {
        return;
    };
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return problems.push(format!(
            "ds=nocloud;s={base}: rkos fetches seeds over http(s) only"
        ));
    }
    let client = match http_client() {
        Ok(c) => c,
        Err(e) => return problems.push(format!("{e:#}")),
    };
    let base = if base.ends_with('/') {
        base
    } else {
        format!("{base}/")
    };
    let mut files = Vec::new();
    for name in rkos_contract::files::CIDATA_FILES {
        let url = format!("{base}{name}");
        match fetch_text(&client, &url) {
            Ok(text) => files.push(fetched(Path::new(paths::NOCLOUD_NET_DIR).join(name), text)),
            Err(_) if matches!(name, "network-config" | "vendor-data") => {}
            Err(e) => problems.push(format!("NoCloud seed {url}: {e:#}")),
        }
    }
    if let Err(e) = rkos_config::apply::write_rendered(root, &files) {
        problems.push(format!("saving the NoCloud seed: {e}"));
    }
}

/// The URL serving the keys of an `ssh_authorized_keys` entry, if it is remote.
pub fn key_url(entry: &str) -> Option<String> {
    let e = entry.trim();
    if let Some(u) = e.strip_prefix("github:") {
        return Some(format!("https://github.com/{u}.keys"));
    }
    if let Some(u) = e.strip_prefix("gitlab:") {
        return Some(format!("https://gitlab.com/{u}.keys"));
    }
    e.starts_with("https://").then(|| e.to_string())
}

fn cache_file(root: &Path, entry: &str) -> PathBuf {
    let safe: String = entry
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    under(root, paths::KEY_CACHE_DIR).join(format!("{safe}.keys"))
}

/// Fetches remote key entries into the cache; a failed fetch keeps the cached keys, so an
/// offline boot keeps the last ones.
fn fetch_keys(root: &Path, cfg: &Config, problems: &mut Vec<String>) {
    let remote: Vec<(&String, String)> = cfg
        .ssh_authorized_keys
        .iter()
        .filter_map(|k| key_url(k).map(|u| (k, u)))
        .collect();
    if remote.is_empty() {
        return;
    }
    let client = match http_client() {
        Ok(c) => c,
        Err(e) => return problems.push(format!("{e:#}")),
    };
    for (entry, url) in remote {
        match fetch_text(&client, &url) {
            Ok(text) => {
                let keys: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && rkos_config::validate::check_ssh_key(l).is_ok())
                    .collect();
                let path = cache_file(root, entry);
                let rel = Path::new("/").join(path.strip_prefix(root).unwrap_or(&path));
                let file = rkos_config::RenderedFile {
                    path: rel,
                    mode: 0o600,
                    uid: 0,
                    gid: 0,
                    content: (keys.join("\n") + "\n").into_bytes(),
                };
                if let Err(e) = rkos_config::apply::write_rendered(root, &[file]) {
                    problems.push(format!("caching keys of {entry}: {e}"));
                }
            }
            Err(e) => problems.push(format!(
                "ssh_authorized_keys `{entry}`: {e:#} (using the cached keys, if any)"
            )),
        }
    }
}

fn cached_keys(root: &Path, cfg: &Config) -> BTreeMap<String, Vec<String>> {
    cfg.ssh_authorized_keys
        .iter()
        .filter(|k| key_url(k).is_some())
        .filter_map(|k| {
            let text = std::fs::read_to_string(cache_file(root, k)).ok()?;
            Some((
                k.trim().to_string(),
                text.lines().map(str::to_string).collect(),
            ))
        })
        .collect()
}

/// Sets the password of the default user from the rendered hash (via stdin, so the hash is
/// never on a command line).
fn install_password(root: &Path, problems: &mut Vec<String>) {
    let Ok(hash) = std::fs::read_to_string(root.join(PASSWORD_HASH.trim_start_matches('/'))) else {
        return;
    };
    // The first line is the hash; a second line may hold render's quick re-use check.
    let Some(hash) = hash
        .lines()
        .next()
        .map(str::trim)
        .filter(|h| h.starts_with('$'))
    else {
        return problems.push(format!("{PASSWORD_HASH}: no crypt hash on its first line"));
    };
    let input = format!("{USER}:{hash}\n");
    let res = Command::new("chpasswd")
        .arg("-e")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            if let Some(mut stdin) = c.stdin.take() {
                stdin.write_all(input.as_bytes())?;
            }
            c.wait()
        });
    match res {
        Ok(s) if s.success() => {}
        Ok(s) => problems.push(format!(
            "setting the password of {USER}: chpasswd failed ({s})"
        )),
        Err(e) => problems.push(format!("setting the password of {USER}: {e}")),
    }
}

fn set_hostname(root: &Path, problems: &mut Vec<String>) {
    let Ok(name) = std::fs::read_to_string(root.join("etc/hostname")) else {
        return;
    };
    match Command::new("hostname").arg(name.trim()).status() {
        Ok(s) if s.success() => {}
        Ok(s) => problems.push(format!("setting the hostname: hostname failed ({s})")),
        Err(e) => problems.push(format!("setting the hostname: {e}")),
    }
}

/// What to do about the units whose files changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    DaemonReload,
    /// Restart only if running (`systemctl try-restart`).
    TryRestart(String),
    /// Start or restart (`systemctl restart`): services that must run once configured.
    Restart(String),
    Start(String),
}

/// Pure: the systemctl actions for a set of changed paths, in order.
pub fn plan_actions(changed: &[PathBuf]) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::new();
    let mut push = |a: Action| {
        if !out.contains(&a) {
            out.push(a);
        }
    };
    let under = |p: &Path, d: &str| p.starts_with(d);
    let data_disks_report = format!("/etc/systemd/system/{DATA_DISKS_REPORT_UNIT}.d");
    if changed.iter().any(|p| under(p, "/etc/systemd/system")) {
        push(Action::DaemonReload);
    }
    for p in changed {
        let p = p.as_path();
        if under(p, "/etc/systemd/system") && p.extension().is_some_and(|e| e == "mount") {
            if let Some(n) = p.file_name() {
                push(Action::Start(n.to_string_lossy().into_owned()));
            }
        } else if under(p, &data_disks_report) {
            // After the mounts: it waits for them, then says what is missing.
            push(Action::Start(DATA_DISKS_REPORT_UNIT.into()));
        } else if under(p, "/etc/systemd/network") {
            push(Action::TryRestart("systemd-networkd.service".into()));
        } else if under(p, "/etc/systemd/resolved.conf.d") {
            push(Action::TryRestart("systemd-resolved.service".into()));
        } else if under(p, "/etc/systemd/timesyncd.conf.d") {
            push(Action::TryRestart("systemd-timesyncd.service".into()));
        } else if under(p, "/etc/sysctl.d") {
            push(Action::Restart("systemd-sysctl.service".into()));
        } else if under(p, "/etc/modules-load.d") {
            push(Action::Restart("systemd-modules-load.service".into()));
        } else if p == Path::new(rkos_config::render::WPA_CONF) {
            push(Action::Restart("wpa_supplicant@wlan0.service".into()));
        } else if p == Path::new(rkos_config::render::K3S_CONFIG)
            || p == Path::new(rkos_config::render::K3S_ENV)
        {
            push(Action::TryRestart("k3s.service".into()));
        }
    }
    out
}

fn run_action(a: &Action, problems: &mut Vec<String>) {
    let args: Vec<&str> = match a {
        Action::DaemonReload => vec!["daemon-reload"],
        Action::TryRestart(u) => vec!["try-restart", u],
        Action::Restart(u) => vec!["restart", u],
        Action::Start(u) => vec!["start", "--no-block", u],
    };
    match Command::new("systemctl").args(&args).status() {
        Ok(s) if s.success() => {}
        Ok(s) => problems.push(format!("systemctl {}: {s}", args.join(" "))),
        Err(e) => problems.push(format!("systemctl {}: {e}", args.join(" "))),
    }
}

/// Runs one of the user's commands with `sh -c`; a failure is reported, not fatal. The
/// command's own output goes to the journal (inherited stdout/stderr).
fn run_user_command(what: &str, i: usize, cmd: &str, problems: &mut Vec<String>) {
    tracing::info!("{what}[{i}]: running");
    match Command::new("sh").arg("-c").arg(cmd).status() {
        Ok(s) if s.success() => {}
        Ok(s) => problems.push(format!("{what}[{i}] failed ({s})")),
        Err(e) => problems.push(format!("{what}[{i}] could not start: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_for_changes() {
        let changed: Vec<PathBuf> = [
            "/etc/systemd/system/var-lib-rancher.mount",
            "/etc/systemd/system/local-fs.target.d/50-rkos-mounts.conf",
            "/etc/systemd/system/k3s.service.d/50-rkos-data-disks.conf",
            "/etc/systemd/system/rkos-data-disks.service.d/50-rkos.conf",
            "/etc/systemd/network/10-rkos-eth0.network",
            "/etc/systemd/network/80-rkos-dhcp.network",
            "/etc/rancher/k3s/config.yaml",
            "/etc/default/k3s",
            "/etc/sysctl.d/90-rkos.conf",
            "/etc/hostname",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(
            plan_actions(&changed),
            vec![
                Action::DaemonReload,
                Action::Start("var-lib-rancher.mount".into()),
                Action::Start("rkos-data-disks.service".into()),
                Action::TryRestart("systemd-networkd.service".into()),
                Action::TryRestart("k3s.service".into()),
                Action::Restart("systemd-sysctl.service".into()),
            ]
        );
        assert!(plan_actions(&[]).is_empty());
    }

    #[test]
    fn ids_and_mode_and_urls() {
        let ids = parse_ids(
            "root:x:0:0:root:/root:/bin/sh\nrkos:x:1000:1000::/home/rkos:/bin/bash\nbad\n",
        );
        assert_eq!(ids.get("rkos"), Some(&1000));
        assert_eq!(ids.len(), 2);
        let d = tempfile::tempdir().unwrap();
        assert_eq!(boot_mode(d.path(), "ro rkos.mode=disk"), BootMode::Disk);
        let report = under(d.path(), paths::INIT_REPORT);
        std::fs::create_dir_all(report.parent().unwrap()).unwrap();
        std::fs::write(report, r#"{"mode":"netboot"}"#).unwrap();
        assert_eq!(boot_mode(d.path(), ""), BootMode::Netboot);
        // A malformed mode on the command line is rkos-init's to report: the recorded one counts.
        assert_eq!(boot_mode(d.path(), "rkos.mode=dsik"), BootMode::Netboot);
        assert_eq!(
            boot_mode(
                d.path(),
                "rkos.mode=live k3os.mode=disk -- rkos.mode=rescue"
            ),
            BootMode::Disk
        );
        assert_eq!(
            key_url("github:octo"),
            Some("https://github.com/octo.keys".into())
        );
        assert_eq!(
            key_url("gitlab:octo"),
            Some("https://gitlab.com/octo.keys".into())
        );
        assert_eq!(key_url("ssh-ed25519 AAAA"), None);
    }

    #[test]
    fn apply_to_a_root_writes_files_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let config = under(r, paths::PERSISTENT_CONFIG);
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(
            config,
            "hostname: node-1\nrkos:\n  server_url: https://s.example\n",
        )
        .unwrap();
        run(&ApplyArgs {
            stage: Stage::Early,
            root: r.to_path_buf(),
            cmdline: Some("rkos.labels[zone]=a".into()),
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(r.join("etc/hostname")).unwrap(),
            "node-1\n"
        );
        let k3s = std::fs::read_to_string(r.join("etc/rancher/k3s/config.yaml")).unwrap();
        assert!(k3s.contains("zone=a"), "{k3s}");
        let errors = std::fs::read_to_string(under(r, paths::CONFIG_ERRORS)).unwrap();
        assert!(
            errors.contains("rkos.token: an agent needs a `token`"),
            "{errors}"
        );
        // The good persistent file was saved as last good.
        assert!(under(r, paths::LAST_GOOD_DIR).join("config.yaml").exists());
    }

    /// A loopback HTTP server answering `requests` requests, each with `body(request line)`
    /// (404 when `None`).
    fn serve(
        requests: usize,
        body: impl Fn(&str) -> Option<&'static str> + Send + 'static,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..requests {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let (status, body) = match body(req.lines().next().unwrap_or("")) {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", ""),
                };
                write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        (addr, server)
    }

    #[test]
    fn a_nocloud_seed_url_is_fetched_over_loopback() {
        // meta-data, network-config (missing), vendor-data (missing), user-data
        let (addr, server) = serve(4, |req| match req.split(' ').nth(1)? {
            "/seed/meta-data" => Some("instance-id: net-1\nlocal-hostname: from-url\n"),
            "/seed/user-data" => Some("#cloud-config\nrkos:\n  labels: {seeded: url}\n"),
            _ => None,
        });
        let d = tempfile::tempdir().unwrap();
        let mut problems = Vec::new();
        let cmdline = format!("quiet ds=nocloud-net;s=http://{addr}/seed");
        fetch_nocloud_seed(d.path(), &cmdline, &mut problems);
        server.join().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let loaded = load(d.path(), "");
        assert_eq!(loaded.config.hostname.as_deref(), Some("from-url"));
        assert_eq!(loaded.config.rkos.labels["seeded"], "url");
        assert!(!under(d.path(), paths::NOCLOUD_NET_DIR)
            .join("network-config")
            .exists());
        let mut problems = Vec::new();
        fetch_nocloud_seed(d.path(), "ds=nocloud;s=file:///seed/", &mut problems);
        assert_eq!(
            problems,
            ["ds=nocloud;s=file:///seed/: rkos fetches seeds over http(s) only"]
        );
    }

    /// A loopback server answering each of `n` requests with `body`, and its URL.
    fn serve_cfg(body: &'static str, n: usize) -> (String, std::thread::JoinHandle<()>) {
        let (addr, server) = serve(n, move |_| Some(body));
        (format!("http://{addr}/cfg"), server)
    }

    fn sha256(text: &str) -> String {
        rkos_io::sha256_reader(text.as_bytes()).unwrap().sha256
    }

    /// `fetch_data_sources` of these entries into a new root, once `server` has answered.
    fn fetch_all(
        entries: Vec<String>,
        server: std::thread::JoinHandle<()>,
    ) -> (tempfile::TempDir, Vec<String>) {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.rkos.data_sources = entries;
        let mut problems = Vec::new();
        fetch_data_sources(d.path(), &cfg, &mut problems);
        server.join().unwrap();
        (d, problems)
    }

    #[test]
    fn data_sources_are_fetched_over_loopback() {
        let body = "hostname: from-url\n";
        let (url, server) = serve_cfg(body, 1);
        let (d, problems) = fetch_all(vec![format!("{url}#sha256={}", sha256(body))], server);
        assert!(problems.is_empty(), "{problems:?}");
        let got = std::fs::read_to_string(under(d.path(), paths::DATASOURCES_DIR).join("01.yaml"))
            .unwrap();
        assert_eq!(got, body);
        let loaded = NodeConfig::at(d.path()).cmdline("").load();
        assert_eq!(loaded.config.hostname.as_deref(), Some("from-url"));
    }

    #[test]
    fn plain_http_data_sources_need_a_matching_pin() {
        let body = "hostname: swapped\n";
        // One request: the unpinned URL is refused without being fetched.
        let (url, server) = serve_cfg(body, 1);
        let pinned = format!("{url}#sha256={}", sha256("hostname: pinned\n"));
        let (d, problems) = fetch_all(vec![url, pinned], server);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("pinned"), "{}", problems[0]);
        assert!(problems[1].contains("the URL pins"), "{}", problems[1]);
        let dir = under(d.path(), paths::DATASOURCES_DIR);
        assert!(rkos_config::source::yaml_files(&dir).is_empty());
    }
}
