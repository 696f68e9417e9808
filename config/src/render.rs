//! Render: a pure function from the merged config to the files the node needs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use rkos_contract::paths::DATA_MOUNT;
use sha_crypt::{PasswordHasher, ShaCrypt};

use crate::emit;
use crate::model::{Config, Interface, Role};
use crate::node::{Entry, Mark, Node, Scalar, Value};
use crate::validate::{decode_content, parse_mode, server_url_with_port};
use crate::BootMode;

/// The default user (uid/gid 1000).
pub const USER: &str = "rkos";
pub const USER_ID: u32 = 1000;
pub const K3S_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
pub const K3S_ENV: &str = "/etc/default/k3s";
pub const PASSWORD_HASH: &str = "/etc/rkos/password.hash";
pub const AUTHORIZED_KEYS: &str = "/home/rkos/.ssh/authorized_keys";
pub const WPA_CONF: &str = "/etc/wpa_supplicant/wpa_supplicant-wlan0.conf";

/// Everything render needs besides the config. Plain data, so render stays pure and its
/// output is reproducible in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderContext {
    /// The OS version (`rkos.io/version` label).
    pub version: String,
    pub mode: BootMode,
    /// Drives the default hostname.
    pub primary_mac: Option<String>,
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

/// k3s flags that take several values; repeated in k3s_args they stay a list.
const K3S_LIST_FLAGS: &[&str] = &[
    "node-label",
    "node-taint",
    "tls-san",
    "disable",
    "kubelet-arg",
    "kube-apiserver-arg",
    "kube-controller-manager-arg",
    "kube-scheduler-arg",
    "kube-proxy-arg",
    "etcd-arg",
    "node-ip",
    "node-external-ip",
    "cluster-cidr",
    "service-cidr",
];

/// One k3s flag from `k3s_args`, with every value it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3sFlag {
    pub name: String,
    pub values: Vec<String>,
    /// Given without a value (`--secrets-encryption`).
    pub is_bool: bool,
}

/// `k3s_args` as config keys: `--flag=value` and `--flag value` set `flag: value`, a lone
/// `--flag` sets `flag: true`, a repeated flag becomes a list. A leading `server`/`agent`
/// is the role (k3OS allowed it). Anything else is reported and skipped.
pub fn parse_k3s_args(args: &[String]) -> (Vec<K3sFlag>, Vec<String>) {
    let mut out: Vec<K3sFlag> = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    if matches!(args.first().map(String::as_str), Some("server" | "agent")) {
        i = 1;
    }
    while i < args.len() {
        let a = args[i].trim();
        let Some(flag) = a
            .strip_prefix("--")
            .or_else(|| a.strip_prefix('-'))
            .filter(|f| !f.is_empty())
        else {
            warnings.push(format!(
                "k3s_args: `{a}` is not a --flag and follows no flag; skipped"
            ));
            i += 1;
            continue;
        };
        let (name, value, is_bool) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string(), false),
            None => match args.get(i + 1) {
                Some(next) if !next.starts_with('-') => {
                    i += 1;
                    (flag.to_string(), next.clone(), false)
                }
                _ => (flag.to_string(), "true".to_string(), true),
            },
        };
        match out.iter_mut().find(|f| f.name == name) {
            Some(f) => f.values.push(value),
            None => out.push(K3sFlag {
                name,
                values: vec![value],
                is_bool,
            }),
        }
        i += 1;
    }
    (out, warnings)
}

/// Mode and group of k3s's admin kubeconfig (/etc/rancher/k3s/k3s.yaml) on servers.
pub const KUBECONFIG_MODE: &str = "0640";
/// The node's admin group: the login user `rkos` is its member.
pub const ADMIN_GROUP: &str = "rkos";

fn k3s(cfg: &Config, ctx: &RenderContext, r: &mut Rendered) {
    let rk = &cfg.rkos;
    let role = cfg.role();
    let mut m: IndexMap<String, Node> = IndexMap::new();
    if let Some(u) = &rk.server_url {
        m.insert("server".into(), s(server_url_with_port(u)));
    }
    if let Some(t) = &rk.token {
        m.insert("token".into(), s(t.clone()));
    }
    let mut labels: Vec<Node> = rk
        .labels
        .iter()
        .map(|(k, v)| s(format!("{k}={v}")))
        .collect();
    labels.push(s(format!("rkos.io/version={}", ctx.version)));
    labels.push(s(format!("rkos.io/mode={}", ctx.mode)));
    m.insert("node-label".into(), list(labels));
    if !rk.taints.is_empty() {
        m.insert(
            "node-taint".into(),
            list(rk.taints.iter().map(|t| s(t.clone())).collect()),
        );
    }
    if role == Role::Server {
        if rk.cluster_init == Some(true) {
            m.insert("cluster-init".into(), b(true));
        }
        if let Some(d) = &rk.datastore_endpoint {
            m.insert("datastore-endpoint".into(), s(d.clone()));
        }
        if !rk.tls_san.is_empty() {
            m.insert(
                "tls-san".into(),
                list(rk.tls_san.iter().map(|t| s(t.clone())).collect()),
            );
        }
        // The cluster-admin kubeconfig: readable by the node's admin user (group rkos)
        // for kubectl without sudo, by nobody else (not by pods with a host mount).
        // k3s has had --write-kubeconfig-group since v1.27.14/1.28.10/1.29.5/1.30.1.
        m.insert(
            "write-kubeconfig-mode".into(),
            s(KUBECONFIG_MODE.to_string()),
        );
        m.insert("write-kubeconfig-group".into(), s(ADMIN_GROUP.to_string()));
    }
    let (flags, warnings) = parse_k3s_args(&rk.k3s_args);
    r.warnings.extend(warnings);
    if let Some(mode) = flags
        .iter()
        .find(|f| f.name == "write-kubeconfig-mode")
        .and_then(|f| f.values.last())
        .and_then(|v| u32::from_str_radix(v.trim_start_matches("0o"), 8).ok())
    {
        if mode & 0o004 != 0 {
            r.warnings.push(format!(
                "k3s_args: --write-kubeconfig-mode {mode:04o} lets every local user and every pod \
                 with a host mount read the cluster-admin kubeconfig; rkos's default is \
                 {KUBECONFIG_MODE} with group {ADMIN_GROUP}"
            ));
        }
    }
    for K3sFlag {
        name,
        values: vals,
        is_bool,
    } in flags
    {
        let listy = K3S_LIST_FLAGS.contains(&name.as_str());
        let node = if is_bool && vals.len() == 1 {
            b(true)
        } else if listy || vals.len() > 1 {
            list(vals.into_iter().map(s).collect())
        } else {
            s(vals.into_iter().next().unwrap_or_default())
        };
        match m.get_mut(&name) {
            Some(existing) => match (&mut existing.value, node.value) {
                (Value::Seq { items, .. }, Value::Seq { items: more, .. }) => items.extend(more),
                (_, v) => {
                    r.warnings.push(format!(
                        "k3s_args: --{name} overrides the value rkos derived from the config"
                    ));
                    existing.value = v;
                }
            },
            None => {
                m.insert(name, node);
            }
        }
    }
    let map: IndexMap<String, Entry> = m
        .into_iter()
        .map(|(k, node)| {
            (
                k,
                Entry {
                    key_mark: mark(),
                    node,
                },
            )
        })
        .collect();
    let yaml = emit::to_yaml(
        &Node::new(Value::Map(map), mark()),
        &emit::Options {
            redact: &|_| false,
            comment: &|_| None,
        },
    );
    let content =
        format!("# Written by rkos from config.yaml; edits are lost at the next apply.\n{yaml}");
    r.files.push(RenderedFile::new(K3S_CONFIG, 0o600, content));

    let mut env = String::from("# Written by rkos: environment of k3s.service.\n");
    env.push_str(&format!("RKOS_K3S_ROLE={role}\n"));
    for (k, v) in proxy_vars(cfg) {
        env.push_str(&format!("{k}={}\n", env_quote(&v)));
        env.push_str(&format!("CONTAINERD_{k}={}\n", env_quote(&v)));
    }
    for (k, v) in &rk.environment {
        env.push_str(&format!("{k}={}\n", env_quote(v)));
    }
    r.files.push(RenderedFile::new(K3S_ENV, 0o600, env));
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

fn network(cfg: &Config, r: &mut Rendered) {
    let dir = "/etc/systemd/network";
    let mut ifaces: Vec<Interface> = cfg.rkos.network.interfaces.clone();
    // Parents of VLANs and members of bonds need a .network of their own (naming the
    // VLAN, or the bond) even when the config does not list them.
    let mut implied: Vec<Interface> = Vec::new();
    for itf in &ifaces {
        let mut want = |name: &str| {
            if !ifaces.iter().any(|i| i.name == name) && !implied.iter().any(|i| i.name == name) {
                implied.push(Interface {
                    name: name.to_string(),
                    ..Interface::default()
                });
            }
        };
        if let Some(v) = &itf.vlan {
            want(&v.link);
        }
        if let Some(bd) = &itf.bond {
            bd.interfaces.iter().for_each(|m| want(m));
        }
    }
    ifaces.extend(implied);
    for itf in &ifaces {
        let vlans: Vec<&str> = ifaces
            .iter()
            .filter(|i| i.vlan.as_ref().is_some_and(|v| v.link == itf.name))
            .map(|i| i.name.as_str())
            .collect();
        let bond_of = ifaces
            .iter()
            .find(|i| {
                i.bond
                    .as_ref()
                    .is_some_and(|bd| bd.interfaces.contains(&itf.name))
            })
            .map(|i| i.name.as_str());
        let mut n = format!(
            "# Written by rkos from config.yaml.\n[Match]\nName={}\n",
            itf.name
        );
        if let Some(mtu) = itf.mtu {
            n.push_str(&format!("\n[Link]\nMTUBytes={mtu}\n"));
        }
        n.push_str("\n[Network]\n");
        if let Some(bond) = bond_of {
            n.push_str(&format!("Bond={bond}\n"));
        } else {
            let dhcp = itf.dhcp.unwrap_or(itf.addresses.is_empty());
            n.push_str(if dhcp { "DHCP=yes\n" } else { "DHCP=no\n" });
            for a in &itf.addresses {
                n.push_str(&format!("Address={a}\n"));
            }
            if let Some(g) = &itf.gateway {
                n.push_str(&format!("Gateway={g}\n"));
            }
            for d in &itf.dns {
                n.push_str(&format!("DNS={d}\n"));
            }
        }
        for v in &vlans {
            n.push_str(&format!("VLAN={v}\n"));
        }
        r.files.push(RenderedFile::new(
            &format!("{dir}/10-rkos-{}.network", itf.name),
            0o644,
            n,
        ));
        if let Some(v) = &itf.vlan {
            let nd = format!(
                "# Written by rkos from config.yaml.\n[NetDev]\nName={}\nKind=vlan\n\n[VLAN]\nId={}\n",
                itf.name, v.id
            );
            r.files.push(RenderedFile::new(
                &format!("{dir}/10-rkos-{}.netdev", itf.name),
                0o644,
                nd,
            ));
        }
        if let Some(bd) = &itf.bond {
            let mut nd = format!(
                "# Written by rkos from config.yaml.\n[NetDev]\nName={}\nKind=bond\n",
                itf.name
            );
            if let Some(mode) = &bd.mode {
                nd.push_str(&format!("\n[Bond]\nMode={mode}\n"));
            }
            r.files.push(RenderedFile::new(
                &format!("{dir}/10-rkos-{}.netdev", itf.name),
                0o644,
                nd,
            ));
        }
    }
    r.files.push(RenderedFile::new(
        &format!("{dir}/80-rkos-dhcp.network"),
        0o644,
        "# Written by rkos: DHCP on every wired interface the config does not name.\n[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n",
    ));
    if !cfg.rkos.wifi.is_empty() {
        r.files.push(RenderedFile::new(
            &format!("{dir}/20-rkos-wlan0.network"),
            0o644,
            "# Written by rkos: wifi (see wpa_supplicant-wlan0.conf).\n[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\n",
        ));
        let mut w = String::from("# Written by rkos from config.yaml.\nctrl_interface=/run/wpa_supplicant\nupdate_config=0\n");
        for net in &cfg.rkos.wifi {
            w.push_str("\nnetwork={\n");
            w.push_str(&format!("\tssid={}\n", wpa_string(&net.name)));
            if let Some(p) = &net.passphrase {
                let hex = p.len() == 64 && p.chars().all(|c| c.is_ascii_hexdigit());
                if hex {
                    w.push_str(&format!("\tpsk={p}\n"));
                } else {
                    w.push_str(&format!("\tpsk={}\n", wpa_string(p)));
                }
                w.push_str("\tkey_mgmt=WPA-PSK\n");
            } else {
                w.push_str("\tkey_mgmt=NONE\n");
            }
            w.push_str("}\n");
        }
        r.files.push(RenderedFile::new(WPA_CONF, 0o600, w));
    }
}

/// wpa_supplicant strings: quoted when printable without quotes, else hex (which it also
/// accepts and which needs no escaping).
fn wpa_string(v: &str) -> String {
    if v.chars()
        .all(|c| c.is_ascii_graphic() && c != '"' || c == ' ')
    {
        format!("\"{v}\"")
    } else {
        v.bytes().map(|b| format!("{b:02x}")).collect()
    }
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
    if !rk.dns_nameservers.is_empty() {
        r.files.push(RenderedFile::new(
            "/etc/systemd/resolved.conf.d/rkos.conf",
            0o644,
            format!(
                "# Written by rkos from config.yaml.\n[Resolve]\nDNS={}\n",
                rk.dns_nameservers.join(" ")
            ),
        ));
    }
    let hostname = cfg.hostname_or_default(ctx.primary_mac.as_deref());
    r.files.push(RenderedFile::new(
        "/etc/hostname",
        0o644,
        format!("{hostname}\n"),
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
        let what = match (&d.label, &d.uuid) {
            (Some(l), _) => format!("/dev/disk/by-label/{l}"),
            (None, Some(u)) => format!("/dev/disk/by-uuid/{}", u.to_ascii_lowercase()),
            (None, None) => continue,
        };
        let unit = format!("{}.mount", systemd_escape_path(&d.path));
        let body = format!(
            "# Written by rkos from config.yaml (data_disks).\n[Unit]\nDescription=rkos data disk at {path}\nBefore=k3s.service\n\n[Mount]\nWhat={what}\nWhere={path}\nType={ty}\nOptions={opts}\n",
            path = d.path,
            ty = d.fs_type.as_deref().unwrap_or("auto"),
            opts = d.options.as_deref().unwrap_or("defaults"),
        );
        r.files
            .push(RenderedFile::new(&format!("{dir}/{unit}"), 0o644, body));
        units.push(unit);
    }
    // Persistent paths live on RKOS_DATA, which only an installed node has.
    if ctx.mode == BootMode::Disk {
        for p in &cfg.rkos.persistent_paths {
            let unit = format!("{}.mount", systemd_escape_path(p));
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
