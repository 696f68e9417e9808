//! The pure model of the wizard: every answer, how each is checked, and how a complete set
//! becomes a `config.yaml` text. The dialoguer UI ([`crate::ui`]), the flags and the
//! `--answers FILE` all fill this same struct, so the non-interactive path checks exactly what
//! the interactive one does.

use serde::{Deserialize, Serialize};

use crate::checks;
use crate::secrets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Partition a disk, copy the OS into slot A, install GRUB, write the config there.
    Install,
    /// Write `/var/lib/rkos/config.yaml` on the running node and apply it.
    Configure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    #[default]
    Dhcp,
    Static,
    /// Leave the network settings of the node's current config.yaml as they are (offered
    /// when os-config runs again on a node that has some).
    Keep,
}

/// Every answer the wizard can take. Field names are the keys of an `--answers` YAML file
/// (documented in docs/install.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Answers {
    pub action: Option<Action>,
    /// Install target, e.g. `/dev/sda` or `sda`.
    pub device: Option<String>,
    /// A ready config (cloud-init style `config.yaml`), by path or http(s) URL. When set the
    /// questions below are not asked: this file becomes the node's config.
    pub config_url: Option<String>,
    pub github_users: Vec<String>,
    pub ssh_keys: Vec<String>,
    /// Clear text (hashed before it is written) or a `$6$...` crypt hash.
    pub password: Option<String>,
    pub wifi_ssid: Option<String>,
    pub wifi_passphrase: Option<String>,
    pub network: NetMode,
    /// Interface of the static address (default: the first wired one, `en*`/`eth*`).
    pub interface: Option<String>,
    /// `ADDRESS/PREFIX`
    pub address: Option<String>,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
    pub hostname: Option<String>,
    pub role: Option<Role>,
    /// Server role: the first server of an HA cluster (embedded etcd).
    pub cluster_init: bool,
    /// Agent role: the server to join (required). Server role: an existing server to join
    /// as another server of its HA cluster (optional).
    pub server_url: Option<String>,
    /// Required for an agent and for a server that joins; generated for a new server.
    pub token: Option<String>,
    /// Skip the reachability probe of `server_url`.
    pub skip_probe: bool,
}

/// One problem with the answers, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Answers {
    /// Merge: every answer set in `over` replaces the one in `self` (flags over a file).
    pub fn overlay(mut self, over: Answers) -> Answers {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            action,
            device,
            config_url,
            password,
            wifi_ssid,
            wifi_passphrase,
            interface,
            address,
            gateway,
            hostname,
            role,
            server_url,
            token
        );
        if !over.github_users.is_empty() {
            self.github_users = over.github_users;
        }
        if !over.ssh_keys.is_empty() {
            self.ssh_keys = over.ssh_keys;
        }
        if !over.dns.is_empty() {
            self.dns = over.dns;
        }
        if over.network != NetMode::Dhcp {
            self.network = over.network;
        }
        self.cluster_init |= over.cluster_init;
        self.skip_probe |= over.skip_probe;
        self
    }

    /// Every problem of a complete set of answers (empty = ready to write). Uses the same
    /// single-answer checks as the interactive questions.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut push = |key, r: Result<(), String>| {
            if let Err(message) = r {
                out.push(Problem { key, message });
            }
        };
        if self.config_url.is_some() {
            // The file is the whole config; it is validated by rkos-config when loaded.
            return out;
        }
        for u in &self.github_users {
            push("github_users", checks::github_user(u));
        }
        for k in &self.ssh_keys {
            push("ssh_keys", checks::ssh_key(k));
        }
        match &self.password {
            Some(p) => push("password", checks::password(p)),
            None => push(
                "password",
                Err("a password for the user rkos is required (console login)".into()),
            ),
        }
        match (&self.wifi_ssid, &self.wifi_passphrase) {
            (None, None) => {}
            (Some(s), Some(p)) => {
                push("wifi_ssid", checks::ssid(s));
                push("wifi_passphrase", checks::wifi_passphrase(p));
            }
            (Some(_), None) => push("wifi_passphrase", Err("WiFi needs a passphrase".into())),
            (None, Some(_)) => push("wifi_ssid", Err("WiFi needs an SSID".into())),
        }
        if self.network == NetMode::Static {
            if self.interface.as_deref().unwrap_or("").is_empty() {
                push(
                    "interface",
                    Err("a static address needs the interface it goes on (e.g. enp1s0)".into()),
                );
            }
            match &self.address {
                Some(a) => push("address", checks::cidr(a)),
                None => push(
                    "address",
                    Err("a static network needs ADDRESS/PREFIX".into()),
                ),
            }
            if let Some(g) = &self.gateway {
                push("gateway", checks::ip(g));
            }
        }
        if self.network != NetMode::Keep {
            for d in &self.dns {
                push("dns", checks::ip(d));
            }
        }
        if let Some(h) = &self.hostname {
            push("hostname", checks::hostname(h));
        }
        match self.role {
            None => push("role", Err("choose server or agent".into())),
            Some(Role::Agent) => {
                push(
                    "server_url",
                    checks::server_url(self.server_url.as_deref().unwrap_or("")).map(|_| ()),
                );
                push("token", checks::token(self.token.as_deref().unwrap_or("")));
                if self.cluster_init {
                    push(
                        "cluster_init",
                        Err("cluster_init applies to a server only".into()),
                    );
                }
            }
            Some(Role::Server) => {
                if let Some(url) = &self.server_url {
                    push("server_url", checks::server_url(url).map(|_| ()));
                    push("token", checks::token(self.token.as_deref().unwrap_or("")));
                    if self.cluster_init {
                        push(
                            "cluster_init",
                            Err("a server that joins an existing one cannot also start a new cluster".into()),
                        );
                    }
                } else if let Some(t) = &self.token {
                    push("token", checks::token(t));
                }
            }
        }
        out
    }

    /// Fill what has a default: a generated token for a new server (returned so the UI can
    /// show it once) and the generated host name.
    pub fn fill_defaults(
        &mut self,
        default_hostname: &str,
    ) -> Result<Option<String>, secrets::SecretError> {
        if self.config_url.is_some() {
            return Ok(None);
        }
        if self.hostname.is_none() {
            self.hostname = Some(default_hostname.to_string());
        }
        if self.role == Some(Role::Server) && self.server_url.is_none() && self.token.is_none() {
            let t = secrets::generate_token()?;
            self.token = Some(t.clone());
            return Ok(Some(t));
        }
        Ok(None)
    }

    /// The config.yaml text for these answers (the password hashed). Call after
    /// [`Answers::problems`] is empty.
    pub fn to_config_yaml(&self) -> Result<String, ModelError> {
        let password = match &self.password {
            Some(p) => Some(secrets::hash_password(p)?),
            None => None,
        };
        let server_url = match &self.server_url {
            Some(u) => Some(checks::server_url(u).map_err(ModelError::Answer)?.as_url()),
            None => None,
        };
        let mut keys: Vec<String> = self
            .github_users
            .iter()
            .map(|u| format!("github:{u}"))
            .collect();
        keys.extend(self.ssh_keys.iter().map(|k| k.trim().to_string()));
        let wifi = match (&self.wifi_ssid, &self.wifi_passphrase) {
            (Some(name), Some(passphrase)) => vec![OutWifi {
                name: name.clone(),
                passphrase: passphrase.clone(),
            }],
            _ => vec![],
        };
        let network = (self.network == NetMode::Static).then(|| OutNetwork {
            interfaces: vec![OutInterface {
                name: self.interface.clone().unwrap_or_default(),
                dhcp: false,
                addresses: self.address.iter().cloned().collect(),
                gateway: self.gateway.clone(),
                dns: self.dns.clone(),
            }],
        });
        let dns_nameservers = if self.network == NetMode::Dhcp {
            self.dns.clone()
        } else {
            vec![]
        };
        // Kept settings are copied from the current file by `current::keep_unasked`.
        let out = OutConfig {
            hostname: self.hostname.clone(),
            ssh_authorized_keys: keys,
            rkos: OutRkos {
                password,
                role: self.role.map(|r| match r {
                    Role::Server => "server",
                    Role::Agent => "agent",
                }),
                server_url,
                token: self.token.clone(),
                cluster_init: self.cluster_init,
                wifi,
                network,
                dns_nameservers,
            },
        };
        // One line per value: keys and hashes stay greppable and copy-pasteable.
        let mut options = serde_saphyr::SerializerOptions::default();
        options.prefer_block_scalars = false;
        let body = serde_saphyr::to_string_with_options(&out, options)
            .map_err(|e| ModelError::Yaml(e.to_string()))?;
        Ok(format!(
            "# Written by os-config. See docs/install.md and docs/config.md.\n{body}"
        ))
    }

    /// The summary shown before confirmation, secrets masked.
    pub fn summary(&self) -> Vec<(String, String)> {
        let mut rows = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
        if let Some(a) = self.action {
            row("action", format!("{a:?}").to_lowercase());
        }
        if let Some(d) = &self.device {
            row("install to", d.clone());
        }
        if let Some(c) = &self.config_url {
            row("config from", c.clone());
            return rows;
        }
        if let Some(h) = &self.hostname {
            row("hostname", h.clone());
        }
        match self.role {
            Some(Role::Server) if self.server_url.is_some() => {
                row("role", "server (joins an existing server)".into())
            }
            Some(Role::Server) if self.cluster_init => row(
                "role",
                "server, first of an HA cluster (embedded etcd)".into(),
            ),
            Some(Role::Server) => row("role", "server".into()),
            Some(Role::Agent) => row("role", "agent".into()),
            None => {}
        }
        if let Some(u) = &self.server_url {
            row("server URL", u.clone());
        }
        if let Some(t) = &self.token {
            row("token", secrets::mask(t));
        }
        if let Some(p) = &self.password {
            // A crypt hash is a password set before (kept, or given as a hash).
            let shown = if p.starts_with('$') {
                "set (as a hash)".to_string()
            } else {
                secrets::mask(p)
            };
            row("password for rkos", shown);
        }
        if !self.github_users.is_empty() {
            row("SSH keys of GitHub users", self.github_users.join(", "));
        }
        for k in &self.ssh_keys {
            let mut parts = k.split_whitespace();
            let kind = parts.next().unwrap_or("");
            let blob = parts.next().unwrap_or("");
            let tail: String = blob
                .chars()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            row("SSH key", format!("{kind} ...{tail}"));
        }
        if let Some(s) = &self.wifi_ssid {
            row(
                "WiFi",
                format!(
                    "{s}, passphrase {}",
                    secrets::mask(self.wifi_passphrase.as_deref().unwrap_or(""))
                ),
            );
        }
        match self.network {
            NetMode::Dhcp => row("network", "DHCP".into()),
            NetMode::Keep => row("network", "as configured now (kept)".into()),
            NetMode::Static => row(
                "network",
                format!(
                    "static {} on {}, gateway {}",
                    self.address.as_deref().unwrap_or("?"),
                    self.interface.as_deref().unwrap_or("the wired interfaces"),
                    self.gateway.as_deref().unwrap_or("(none)")
                ),
            ),
        }
        if !self.dns.is_empty() && self.network != NetMode::Keep {
            row("DNS", self.dns.join(", "));
        }
        rows
    }

    /// Takes out each given answer that its check refuses, so the questions ask it again;
    /// returns the problems with the refused values (shown, and offered for editing).
    pub fn take_invalid(&mut self) -> Vec<(Problem, String)> {
        let mut out = Vec::new();
        let mut refuse = |key: &'static str, value: String, r: Result<(), String>| {
            r.err()
                .map(|message| out.push((Problem { key, message }, value)))
        };
        macro_rules! one {
            ($field:ident, $key:literal, $check:expr) => {
                if let Some(v) = self.$field.clone() {
                    if refuse($key, v.clone(), $check(&v)).is_some() {
                        self.$field = None;
                    }
                }
            };
        }
        macro_rules! many {
            ($field:ident, $key:literal, $check:expr) => {
                if let Some(bad) = self.$field.iter().find(|v| $check(v).is_err()).cloned() {
                    refuse($key, self.$field.join(", "), $check(&bad));
                    self.$field.clear();
                }
            };
        }
        one!(password, "password", |v: &String| checks::password(v));
        one!(wifi_ssid, "wifi_ssid", |v: &String| checks::ssid(v));
        one!(wifi_passphrase, "wifi_passphrase", |v: &String| {
            checks::wifi_passphrase(v)
        });
        one!(address, "address", |v: &String| checks::cidr(v));
        one!(gateway, "gateway", |v: &String| checks::ip(v));
        one!(hostname, "hostname", |v: &String| checks::hostname(v));
        one!(server_url, "server_url", |v: &String| checks::server_url(v)
            .map(|_| ()));
        one!(token, "token", |v: &String| checks::token(v));
        many!(github_users, "github_users", |v: &String| {
            checks::github_user(v)
        });
        many!(ssh_keys, "ssh_keys", |v: &String| checks::ssh_key(v));
        many!(dns, "dns", |v: &String| checks::ip(v));
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error("{0}")]
    Answer(String),
    #[error("could not write the config as YAML: {0}")]
    Yaml(String),
}

#[derive(Serialize)]
struct OutConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh_authorized_keys: Vec<String>,
    rkos: OutRkos,
}

#[derive(Serialize)]
struct OutRkos {
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cluster_init: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    wifi: Vec<OutWifi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<OutNetwork>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns_nameservers: Vec<String>,
}

#[derive(Serialize)]
struct OutWifi {
    name: String,
    passphrase: String,
}

#[derive(Serialize)]
struct OutNetwork {
    interfaces: Vec<OutInterface>,
}

#[derive(Serialize)]
struct OutInterface {
    name: String,
    dhcp: bool,
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns: Vec<String>,
}

/// Parse an `--answers` file.
pub fn parse_answers(text: &str) -> Result<Answers, String> {
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}
