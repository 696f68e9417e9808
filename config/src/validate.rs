//! Semantic checks on the typed config. Each finding carries its key path; the caller
//! looks up where that path was written (provenance) to make a positioned diagnostic.

use std::net::IpAddr;

use crate::diag::Severity;
use crate::model::{Config, DataDisk, Role};
use crate::node::PathSeg;

mod network;
mod values;
use network::check_interface;
pub use network::{check_cidr, check_mac};
use values::*;
pub use values::{
    check_abs_path, check_hostname, check_label, check_minisign_key, check_server_url,
    check_ssh_key, check_taint, check_token, decode_content, parse_mode, server_url_with_port,
    DecodeError,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub path: Vec<PathSeg>,
    pub message: String,
}

struct Checker {
    out: Vec<Finding>,
    path: Vec<PathSeg>,
}

impl Checker {
    fn at<R>(&mut self, seg: PathSeg, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(seg);
        let r = f(self);
        self.path.pop();
        r
    }

    fn key<R>(&mut self, k: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.at(PathSeg::Key(k.to_string()), f)
    }

    fn entry<R>(&mut self, k: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.at(PathSeg::Entry(k.to_string()), f)
    }

    fn error(&mut self, msg: impl Into<String>) {
        self.out.push(Finding {
            severity: Severity::Error,
            path: self.path.clone(),
            message: msg.into(),
        });
    }

    fn warn(&mut self, msg: impl Into<String>) {
        self.out.push(Finding {
            severity: Severity::Warning,
            path: self.path.clone(),
            message: msg.into(),
        });
    }

    fn list(&mut self, k: &str, items: &[String], f: impl Fn(&mut Self, &str)) {
        self.key(k, |c| {
            for (i, item) in items.iter().enumerate() {
                c.at(PathSeg::Index(i), |c| f(c, item));
            }
        });
    }
}

/// Checks of each value on its own: run on every source before the merge (a source that
/// fails them is left out) and again on the merged config.
pub fn check_fields(cfg: &Config) -> Vec<Finding> {
    let mut c = Checker {
        out: Vec::new(),
        path: Vec::new(),
    };
    if let Some(h) = &cfg.hostname {
        c.key("hostname", |c| {
            if let Err(e) = check_hostname(h) {
                c.error(e)
            }
        });
    }
    network::check_names(&mut c, cfg);
    c.list("ssh_authorized_keys", &cfg.ssh_authorized_keys, |c, k| {
        if let Err(e) = check_ssh_key(k) {
            c.error(e)
        }
    });
    c.key("write_files", |c| {
        let mut total = 0usize;
        for (i, wf) in cfg.write_files.iter().enumerate() {
            c.at(PathSeg::Index(i), |c| {
                c.key("path", |c| {
                    if wf.path.is_empty() {
                        c.error("missing: every write_files entry needs a `path`")
                    } else if let Err(e) = check_abs_path(&wf.path) {
                        c.error(e)
                    }
                });
                if let Some(p) = &wf.permissions {
                    c.key("permissions", |c| {
                        if parse_mode(p).is_none() {
                            c.error(format!("expected an octal mode like 0644, found `{p}`"))
                        }
                    });
                }
                if let Some(o) = &wf.owner {
                    c.key("owner", |c| {
                        if let Err(e) = check_owner(o) {
                            c.error(e)
                        }
                    });
                }
                match decode_content(&wf.content, wf.encoding.as_deref()) {
                    Err(DecodeError::Encoding(e)) => c.key("encoding", |c| c.error(e)),
                    Err(DecodeError::Content(e)) => c.key("content", |c| c.error(e)),
                    Ok(bytes) => {
                        total += bytes.len();
                        if total > MAX_WRITE_FILES_BYTES {
                            c.key("content", |c| c.error(write_files_too_big()))
                        }
                    }
                }
            });
        }
    });
    for (k, list) in [
        ("init_cmd", &cfg.init_cmd),
        ("boot_cmd", &cfg.boot_cmd),
        ("run_cmd", &cfg.run_cmd),
    ] {
        c.list(k, list, |c, cmd| {
            if cmd.trim().is_empty() {
                c.error("empty command")
            }
        });
    }
    c.key("rkos", |c| check_rkos(c, cfg));
    c.out
}

fn check_rkos(c: &mut Checker, cfg: &Config) {
    let r = &cfg.rkos;
    if let Some(u) = &r.server_url {
        c.key("server_url", |c| {
            if let Err(e) = check_server_url(u) {
                c.error(e)
            }
        });
    }
    if let Some(t) = &r.token {
        c.key("token", |c| {
            if let Err(e) = check_token(t) {
                c.error(e)
            }
        });
    }
    if let Some(role) = &r.role {
        c.key("role", |c| {
            if role != "server" && role != "agent" {
                c.error(format!("expected `server` or `agent`, found `{role}`"))
            }
        });
    }
    c.key("labels", |c| {
        for (k, v) in &r.labels {
            c.entry(k, |c| {
                if let Err(e) = check_label(k, v) {
                    c.error(e)
                }
            });
        }
    });
    c.list("taints", &r.taints, |c, t| {
        if let Err(e) = check_taint(t) {
            c.error(e)
        }
    });
    c.key("environment", |c| {
        for (k, v) in &r.environment {
            c.entry(k, |c| {
                if !is_env_name(k) {
                    c.error("not a valid environment variable name (letters, digits and _, not starting with a digit)")
                } else if v.contains('\n') {
                    c.error("environment values cannot span lines")
                }
            });
        }
    });
    if let Some(p) = &r.password {
        c.key("password", |c| {
            if p.is_empty() {
                c.error("empty password")
            } else if p.starts_with('$') && !is_crypt_hash(p) {
                c.error("starts with `$` but is not a crypt hash like `$6$salt$hash`")
            }
        });
    }
    c.list("modules", &r.modules, |c, m| {
        if m.is_empty()
            || !m
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            c.error(format!("`{m}` is not a kernel module name"))
        }
    });
    c.key("sysctls", |c| {
        for (k, v) in &r.sysctls {
            c.entry(k, |c| {
                if k.is_empty()
                    || !k
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "._-/".contains(ch))
                {
                    c.error("not a sysctl name")
                } else if v.contains('\n') {
                    c.error("sysctl values cannot span lines")
                }
            });
        }
    });
    c.list("ntp_servers", &r.ntp_servers, |c, s| {
        if s.parse::<IpAddr>().is_err() && check_hostname_loose(s).is_err() {
            c.error(format!("`{s}` is neither an IP address nor a host name"))
        }
    });
    c.list("dns_nameservers", &r.dns_nameservers, |c, s| {
        if s.parse::<IpAddr>().is_err() {
            c.error(format!("expected an IP address, found `{s}`"))
        }
    });
    c.key("wifi", |c| {
        for (i, w) in r.wifi.iter().enumerate() {
            c.at(PathSeg::Index(i), |c| {
                if w.name.is_empty() {
                    c.key("name", |c| {
                        c.error("missing: every wifi entry needs a `name` (the SSID)")
                    });
                } else if w.name.len() > 32 {
                    c.key("name", |c| c.error("an SSID is at most 32 bytes"));
                }
                c.key("passphrase", |c| match &w.passphrase {
                    None => c.error("missing: every wifi entry needs a `passphrase` (WPA-PSK)"),
                    Some(p) => {
                        let hex = p.len() == 64 && p.chars().all(|ch| ch.is_ascii_hexdigit());
                        if !hex && !(8..=63).contains(&p.len()) {
                            c.error("a WPA passphrase is 8 to 63 characters (or 64 hex digits)")
                        }
                    }
                });
            });
        }
    });
    c.list(
        "data_sources",
        &r.data_sources,
        |c, u| match crate::datasource::DataSourceUrl::parse(u) {
            Ok(_) => {}
            // k3OS named metadata providers here. `cdrom` is the seed volumes (NoCloud
            // `CIDATA`, ConfigDrive `config-2`), which an installed node reads only with it;
            // for the others such a file must still load, so a bare word is only a warning.
            Err(_) if u == crate::datasource::SEED_VOLUMES => {}
            Err(_) if !u.contains('/')
                && url::Url::parse(u) == Err(url::ParseError::RelativeUrlWithoutBase) =>
            {
                c.warn(format!(
                    "`{u}`: of k3OS's provider names only `cdrom` (the seed volumes) is supported; rkos fetches https URLs (ignored)"
                ))
            }
            Err(e) => c.error(e.to_string()),
        },
    );
    c.key("install", |c| {
        if let Some(d) = &r.install.device {
            c.key("device", |c| {
                if !d.starts_with("/dev/") {
                    c.error(format!("expected a device path under /dev, found `{d}`"))
                }
            });
        }
        if let Some(u) = &r.install.config_url {
            c.key("config_url", |c| {
                let ok = u.starts_with('/')
                    || url::Url::parse(u).is_ok_and(|x| matches!(x.scheme(), "http" | "https"));
                if !ok {
                    c.error(format!(
                        "expected an http(s) URL or an absolute path, found `{u}`"
                    ))
                }
            });
        }
    });
    c.list("dns_search", &r.dns_search, |c, d| {
        if let Err(e) = check_hostname_loose(d) {
            c.error(format!("`{d}` is not a DNS domain: {e}"))
        }
    });
    c.key("network", |c| {
        c.key("interfaces", |c| {
            for (i, itf) in r.network.interfaces.iter().enumerate() {
                c.at(PathSeg::Index(i), |c| check_interface(c, itf));
            }
        })
    });
    c.key("proxy", |c| {
        for (k, v) in [
            ("http_proxy", &r.proxy.http_proxy),
            ("https_proxy", &r.proxy.https_proxy),
        ] {
            if let Some(v) = v {
                c.key(k, |c| {
                    if !url::Url::parse(v)
                        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    {
                        // an unparsable URL may still hold a password: quote it only
                        // when it has no user information at all
                        c.error(if v.contains('@') {
                            "expected a proxy URL like http://user:password@proxy:3128 (the \
                             value is not shown: it may hold a password)"
                                .to_string()
                        } else {
                            format!("expected a proxy URL like http://proxy:3128, found `{v}`")
                        })
                    }
                });
            }
        }
        if let Some(v) = &r.proxy.no_proxy {
            c.key("no_proxy", |c| {
                if v.chars().any(char::is_whitespace) {
                    c.error(
                        "a comma-separated list without spaces, e.g. `localhost,10.0.0.0/8,.svc`",
                    )
                }
            });
        }
    });
    c.list("persistent_paths", &r.persistent_paths, |c, p| {
        if let Err(e) = check_abs_path(p) {
            c.error(e)
        } else if p == "/" {
            c.error("`/` cannot be a persistent path")
        }
    });
    c.key("data_disks", |c| {
        for (i, d) in r.data_disks.iter().enumerate() {
            c.at(PathSeg::Index(i), |c| {
                c.key("path", |c| {
                    if d.path.is_empty() {
                        c.error("missing: every data disk needs a mount `path`")
                    } else if let Err(e) = check_abs_path(&d.path) {
                        c.error(e)
                    }
                });
                match (&d.label, &d.uuid) {
                    (None, None) => c.error("give the disk's `label` or `uuid`"),
                    (Some(_), Some(_)) => c.error("give either `label` or `uuid`, not both"),
                    (Some(l), None) => c.key("label", |c| {
                        if l.is_empty() || l.contains('/') {
                            c.error("not a file system label")
                        }
                    }),
                    (None, Some(u)) => c.key("uuid", |c| {
                        if u.is_empty() || !u.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '-')
                        {
                            c.error(format!("not a file system UUID: `{u}`"))
                        }
                    }),
                }
                if let Some(w) = d.wait_seconds {
                    c.key("wait_seconds", |c| {
                        if !(1..=DataDisk::MAX_WAIT_SECONDS).contains(&w) {
                            c.error(format!(
                                "expected 1 to {} seconds, found {w}",
                                DataDisk::MAX_WAIT_SECONDS
                            ))
                        }
                    });
                }
            });
        }
    });
    if let Some(d) = &r.datastore_endpoint {
        c.key("datastore_endpoint", |c| {
            let known = [
                "postgres://",
                "mysql://",
                "https://",
                "http://",
                "sqlite://",
            ];
            if !known.iter().any(|p| d.starts_with(p)) {
                c.error("expected a postgres://, mysql://, http(s):// (etcd) or sqlite:// endpoint")
            }
        });
    }
    c.list("tls_san", &r.tls_san, |c, s| {
        if s.parse::<IpAddr>().is_err() && check_hostname_loose(s).is_err() {
            c.error(format!("`{s}` is neither an IP address nor a DNS name"))
        }
    });
    c.key("upgrade", |c| {
        c.list("trusted_keys", &r.upgrade.trusted_keys, |c, k| {
            if let Err(e) = check_minisign_key(k) {
                c.error(e)
            }
        })
    });
}

/// All `write_files` together may decode to at most this much: each entry is decoded on its
/// own, but every one is written to the tmpfs root at boot (and into RAM on a live node).
pub const MAX_WRITE_FILES_BYTES: usize = 64 * 1024 * 1024;

fn write_files_too_big() -> String {
    format!(
        "write_files decode to more than {} MiB in all; ship large files another way \
         (a data_disks volume, a container image)",
        MAX_WRITE_FILES_BYTES >> 20
    )
}

/// Checks that need the whole merged config (a lone source may legitimately lack them).
pub fn check_whole(cfg: &Config) -> Vec<Finding> {
    let mut c = Checker {
        out: Vec::new(),
        path: Vec::new(),
    };
    // each source was within the limit on its own; together they may not be
    let mut total = 0usize;
    for (i, wf) in cfg.write_files.iter().enumerate() {
        total += decode_content(&wf.content, wf.encoding.as_deref()).map_or(0, |b| b.len());
        if total > MAX_WRITE_FILES_BYTES {
            c.key("write_files", |c| {
                c.at(PathSeg::Index(i), |c| {
                    c.key("content", |c| c.error(write_files_too_big()))
                })
            });
            break;
        }
    }
    c.key("rkos", |c| {
        let r = &cfg.rkos;
        if cfg.role() == Role::Agent {
            if r.server_url.is_none() {
                c.key("server_url", |c| c.error("an agent needs `server_url` (the server to join)"));
            }
            if r.token.is_none() {
                c.key("token", |c| c.error("an agent needs a `token` to join the cluster"));
            }
            if r.cluster_init == Some(true) {
                c.key("cluster_init", |c| c.error("`cluster_init` is for the first server, not an agent"));
            }
        }
        if r.cluster_init == Some(true) && r.datastore_endpoint.is_some() {
            c.key("cluster_init", |c| {
                c.error("`cluster_init` (embedded etcd) and `datastore_endpoint` (external datastore) exclude each other")
            });
        }
    });
    c.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_proxy_url_with_credentials_is_not_echoed() {
        let mut cfg = Config::default();
        // an unparsable URL: a space in the host
        cfg.rkos.proxy.http_proxy = Some("http://user:SECRET@pro xy:3128".into());
        let msgs: Vec<String> = check_fields(&cfg).into_iter().map(|f| f.message).collect();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(!msgs[0].contains("SECRET"), "{msgs:?}");
        cfg.rkos.proxy.http_proxy = Some("proxy:3128 x".into());
        let msgs: Vec<String> = check_fields(&cfg).into_iter().map(|f| f.message).collect();
        assert!(msgs[0].contains("`proxy:3128 x`"), "{msgs:?}");
    }

    #[test]
    fn tokens() {
        assert!(check_token("K10abc123::server:secret").is_ok());
        assert!(check_token("plainsecret").is_ok());
        assert!(check_token("K10xyz::server:secret").is_err());
        assert!(check_token("K10abc::server").is_err());
        assert!(check_token("has space").is_err());
    }

    #[test]
    fn taints_and_labels() {
        assert!(check_taint("dedicated=gpu:NoSchedule").is_ok());
        assert!(check_taint("node.kubernetes.io/edge:NoExecute").is_ok());
        assert!(check_taint("a=b:Sometimes").is_err());
        assert!(check_label("example.com/zone", "eu-1").is_ok());
        assert!(check_label("-bad", "x").is_err());
        assert!(check_label("ok", "bad value").is_err());
    }

    #[test]
    fn ssh_keys() {
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICYc7aNrQpkm91VemglhbWJX9fNo4ikttrD9k7PI4nWN ops@example";
        assert!(check_ssh_key(ed).is_ok(), "{:?}", check_ssh_key(ed));
        assert!(check_ssh_key("github:octo-cat").is_ok());
        assert!(check_ssh_key("https://example.com/keys").is_ok());
        assert!(check_ssh_key("http://example.com/keys").is_err());
        assert!(check_ssh_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIG7a").is_err());
        assert!(check_ssh_key("hello").is_err());
    }

    #[test]
    fn modes_and_urls() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("755"), Some(0o755));
        assert_eq!(parse_mode("0999"), None);
        assert_eq!(server_url_with_port("https://a.b"), "https://a.b:6443");
        assert_eq!(server_url_with_port("https://a.b:443/"), "https://a.b:443");
        assert_eq!(
            server_url_with_port("https://[fd00::1]"),
            "https://[fd00::1]:6443"
        );
        assert_eq!(
            server_url_with_port("https://[fd00::1]:7443"),
            "https://[fd00::1]:7443"
        );
        assert!(check_server_url("http://a").is_err());
        assert!(check_server_url("https://a").is_ok());
        let bare = check_server_url("10.0.0.1:6443").unwrap_err();
        assert!(
            bare.contains("lacks https://") && !bare.contains("relative"),
            "{bare}"
        );
    }
}
