//! k3s's config file (`/etc/rancher/k3s/config.yaml`): the role, server URL, token, TLS
//! names, labels, taints and `k3s_args` of the node's config, as k3s reads them.

use super::{
    b, env_quote, list, mark, proxy_vars, s, RenderContext, Rendered, RenderedFile, K3S_CONFIG,
    K3S_ENV,
};
use crate::emit;
use crate::model::{Config, Role};
use crate::node::{Entry, Node, Value};
use crate::validate::server_url_with_port;
use indexmap::IndexMap;

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

pub(super) fn k3s(cfg: &Config, ctx: &RenderContext, r: &mut Rendered) {
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
