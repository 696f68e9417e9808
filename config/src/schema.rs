//! The shape of config.yaml, and normalisation of a parsed tree against it.
//!
//! Normalisation makes every source look the same before the merge: k3OS's forgiving key
//! spellings become the canonical snake_case names (`k3os` -> `rkos`, `sshAuthorizedKeys`
//! -> `ssh_authorized_keys`, `label` -> `labels`), a scalar is wrapped into a one-element
//! list where a list is wanted, `key=value` strings become map entries where a map is
//! wanted, and lists merged by key learn their key. Unknown keys are dropped with a warning
//! and a did-you-mean suggestion.

use indexmap::IndexMap;

use crate::diag::Diagnostic;
use crate::merge::merge;
use crate::node::{path_string, Entry, Mark, Node, PathSeg, Scalar, Value};

#[derive(Debug)]
pub enum Shape {
    /// A string, bool or number (the typed config decides).
    Scalar,
    /// A list of scalars: merged as a union.
    List,
    /// Shell commands: a list of strings, where cloud-init's argv form (`[ls, -l]`) is
    /// turned into one shell-quoted string.
    Commands,
    /// A list of mappings merged by the named field.
    Keyed(&'static str, &'static [Field]),
    /// User keys (labels, sysctls, environment) to scalars.
    StrMap,
    Struct(&'static [Field]),
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    /// Accepted spellings besides the canonical name and its snake_case/singular forms.
    pub aliases: &'static [&'static str],
    pub shape: Shape,
}

const fn f(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        aliases: &[],
        shape,
    }
}

const fn fa(name: &'static str, aliases: &'static [&'static str], shape: Shape) -> Field {
    Field {
        name,
        aliases,
        shape,
    }
}

pub const WRITE_FILE: &[Field] = &[
    f("path", Shape::Scalar),
    f("content", Shape::Scalar),
    f("encoding", Shape::Scalar),
    f("owner", Shape::Scalar),
    fa("permissions", &["mode"], Shape::Scalar),
];

pub const WIFI: &[Field] = &[
    fa("name", &["ssid"], Shape::Scalar),
    fa("passphrase", &["password", "psk"], Shape::Scalar),
];

pub const INSTALL: &[Field] = &[
    f("device", Shape::Scalar),
    f("config_url", Shape::Scalar),
    f("force_efi", Shape::Scalar),
    f("silent", Shape::Scalar),
    fa("power_off", &["poweroff"], Shape::Scalar),
    f("reboot", Shape::Scalar),
    f("no_format", Shape::Scalar),
    f("tty", Shape::Scalar),
    f("debug", Shape::Scalar),
    f("iso_url", Shape::Scalar),
];

pub const VLAN: &[Field] = &[f("id", Shape::Scalar), f("link", Shape::Scalar)];
pub const BOND: &[Field] = &[
    f("mode", Shape::Scalar),
    fa("interfaces", &["slaves", "members"], Shape::List),
    fa("mii_monitor_interval", &["miimon"], Shape::Scalar),
    f("lacp_rate", Shape::Scalar),
    f("transmit_hash_policy", Shape::Scalar),
    f("primary", Shape::Scalar),
];
pub const BRIDGE: &[Field] = &[
    fa("interfaces", &["ports", "members"], Shape::List),
    f("stp", Shape::Scalar),
];
pub const ROUTE: &[Field] = &[
    fa("to", &["destination"], Shape::Scalar),
    fa("via", &["gateway"], Shape::Scalar),
    f("metric", Shape::Scalar),
    f("on_link", Shape::Scalar),
];

pub const INTERFACE: &[Field] = &[
    f("name", Shape::Scalar),
    fa("mac", &["mac_address", "macaddress"], Shape::Scalar),
    fa("rename", &["set_name"], Shape::Scalar),
    f("dhcp", Shape::Scalar),
    f("dhcp6", Shape::Scalar),
    fa("addresses", &["address"], Shape::List),
    f("gateway", Shape::Scalar),
    f("routes", Shape::Keyed("to", ROUTE)),
    fa("dns", &["nameservers", "dns_nameservers"], Shape::List),
    fa("domains", &["search", "dns_search"], Shape::List),
    f("mtu", Shape::Scalar),
    f("vlan", Shape::Struct(VLAN)),
    f("bond", Shape::Struct(BOND)),
    f("bridge", Shape::Struct(BRIDGE)),
];

pub const NETWORK: &[Field] = &[fa(
    "interfaces",
    &["interface"],
    Shape::Keyed("name", INTERFACE),
)];

pub const PROXY: &[Field] = &[
    f("http_proxy", Shape::Scalar),
    f("https_proxy", Shape::Scalar),
    f("no_proxy", Shape::Scalar),
];

pub const DATA_DISK: &[Field] = &[
    fa("path", &["mount", "mountpoint", "where"], Shape::Scalar),
    f("label", Shape::Scalar),
    f("uuid", Shape::Scalar),
    fa("fs_type", &["fstype", "type", "filesystem"], Shape::Scalar),
    f("options", Shape::Scalar),
    fa("wait_seconds", &["device_timeout"], Shape::Scalar),
];

pub const UPGRADE: &[Field] = &[f("trusted_keys", Shape::List)];

pub const RKOS: &[Field] = &[
    f("server_url", Shape::Scalar),
    f("token", Shape::Scalar),
    f("role", Shape::Scalar),
    f("labels", Shape::StrMap),
    f("taints", Shape::List),
    fa("k3s_args", &["k3s_arg", "k3sargs"], Shape::List),
    fa("environment", &["env"], Shape::StrMap),
    f("password", Shape::Scalar),
    f("modules", Shape::List),
    f("sysctls", Shape::StrMap),
    f("ntp_servers", Shape::List),
    fa(
        "dns_nameservers",
        &["dns_nameserver", "nameservers"],
        Shape::List,
    ),
    fa("dns_search", &["search_domains"], Shape::List),
    f("wifi", Shape::Keyed("name", WIFI)),
    fa("data_sources", &["datasources", "datasource"], Shape::List),
    f("install", Shape::Struct(INSTALL)),
    f("network", Shape::Struct(NETWORK)),
    f("proxy", Shape::Struct(PROXY)),
    f("persistent_paths", Shape::List),
    f("data_disks", Shape::Keyed("path", DATA_DISK)),
    f("cluster_init", Shape::Scalar),
    f("datastore_endpoint", Shape::Scalar),
    fa("tls_san", &["tls_sans"], Shape::List),
    f("upgrade", Shape::Struct(UPGRADE)),
];

pub const ROOT: &[Field] = &[
    f("hostname", Shape::Scalar),
    f("fqdn", Shape::Scalar),
    f("manage_etc_hosts", Shape::Scalar),
    fa("ssh_authorized_keys", &["authorized_keys"], Shape::List),
    f("write_files", Shape::Keyed("path", WRITE_FILE)),
    fa("init_cmd", &["initcmd"], Shape::Commands),
    fa("boot_cmd", &["bootcmd"], Shape::Commands),
    fa("run_cmd", &["runcmd"], Shape::Commands),
    fa("rkos", &["k3os"], Shape::Struct(RKOS)),
];

/// Canonical spelling of a key: camelCase and kebab-case to snake_case.
pub fn canonical_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut prev_lower = false;
    for c in key.trim().chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c == '-' || c == ' ' {
            out.push('_');
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

fn matches_field(canon: &str, field: &Field) -> bool {
    let plural = |a: &str, b: &str| {
        a.len() < b.len() && b.starts_with(a) && matches!(&b[a.len()..], "s" | "es")
    };
    canon == field.name
        || plural(canon, field.name)
        || plural(field.name, canon)
        || field
            .aliases
            .iter()
            .any(|a| *a == canon || plural(canon, a))
}

/// The field a user's key means, if any.
pub fn find_field<'a>(fields: &'a [Field], key: &str) -> Option<&'a Field> {
    let canon = canonical_key(key);
    fields.iter().find(|f| matches_field(&canon, f))
}

fn suggestion(fields: &[Field], key: &str) -> Option<&'static str> {
    let canon = canonical_key(key);
    fields
        .iter()
        .map(|f| (strsim::damerau_levenshtein(&canon, f.name), f.name))
        .filter(|(d, name)| *d <= 2.max(name.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// `[ls, -l, "a b"]` -> `ls -l 'a b'`: cloud-init runs an argv list without a shell; as a
/// string for `sh -c`, each word is quoted where needed.
fn argv_to_command(item: &mut Node) {
    let Value::Seq { items, .. } = &item.value else {
        return;
    };
    let words: Option<Vec<String>> = items.iter().map(|w| w.as_str().map(shell_quote)).collect();
    if let Some(words) = words {
        item.value = Value::Scalar(Scalar {
            text: words.join(" "),
            quoted: true,
        });
    }
}

fn shell_quote(w: &str) -> String {
    let safe = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Normalisation context: where diagnostics go and how the source was given.
pub struct Normalizer {
    pub diagnostics: Vec<Diagnostic>,
    /// Kernel command line: a repeated key given for a scalar means "the last one wins".
    pub cmdline: bool,
    /// Extra note for unknown top-level keys (cloud-init keys rkos does not read).
    pub unknown_root_note: Option<&'static str>,
}

impl Normalizer {
    pub fn new(cmdline: bool) -> Self {
        Normalizer {
            diagnostics: Vec::new(),
            cmdline,
            unknown_root_note: None,
        }
    }

    /// Normalises a whole source (the root mapping).
    pub fn root(&mut self, node: Node) -> Node {
        let mut path = Vec::new();
        match node.value {
            Value::Map(_) => self.structure(node, ROOT, &mut path),
            Value::Null => Node::new(Value::Map(IndexMap::new()), node.mark),
            _ => {
                self.diagnostics.push(
                    Diagnostic::error("", "", "expected a mapping of config keys at the top level")
                        .at(&node.mark),
                );
                Node::new(Value::Map(IndexMap::new()), node.mark)
            }
        }
    }

    fn structure(&mut self, node: Node, fields: &'static [Field], path: &mut Vec<PathSeg>) -> Node {
        let Node {
            value,
            mark,
            replace,
        } = node;
        let Value::Map(map) = value else {
            // Leave it: deserialization reports "expected a mapping" at this position.
            return Node {
                value,
                mark,
                replace,
            };
        };
        let mut out: IndexMap<String, Entry> = IndexMap::with_capacity(map.len());
        for (key, entry) in map {
            let Some(field) = find_field(fields, &key) else {
                self.unknown(fields, &key, &entry.key_mark, path);
                continue;
            };
            path.push(PathSeg::Key(field.name.to_string()));
            let node = self.shape(entry.node, &field.shape, path);
            path.pop();
            match out.get_mut(field.name) {
                // Two spellings of one key in one file (`k3os:` and `rkos:`): merge them in
                // document order rather than dropping one.
                Some(prev) => {
                    let earlier =
                        std::mem::replace(&mut prev.node, Node::new(Value::Null, mark.clone()));
                    prev.node = merge(earlier, node);
                }
                None => {
                    out.insert(
                        field.name.to_string(),
                        Entry {
                            key_mark: entry.key_mark,
                            node,
                        },
                    );
                }
            }
        }
        Node {
            value: Value::Map(out),
            mark,
            replace,
        }
    }

    fn unknown(&mut self, fields: &[Field], key: &str, mark: &Mark, path: &[PathSeg]) {
        let mut msg = format!("unknown key `{key}`");
        let in_rkos = path.len() == 1 && path[0] == PathSeg::Key("rkos".into());
        if let Some(s) = suggestion(fields, key) {
            msg.push_str(&format!("; did you mean `{s}`?"));
        } else if let Some(s) = suggestion(ROOT, key).filter(|_| in_rkos) {
            // `rkos.hostnme` on the command line, or a top-level key put under `rkos:`.
            if self.cmdline {
                msg.push_str(&format!("; did you mean `{s}`?"));
            } else if canonical_key(key) == s {
                msg.push_str(&format!(
                    "; `{s}` belongs at the top level, not under `rkos:`"
                ));
            } else {
                msg.push_str(&format!("; did you mean `{s}` at the top level?"));
            }
        } else if path.is_empty() {
            if let Some(field) = find_field(RKOS, key) {
                msg.push_str(&format!("; did you mean `rkos.{}`?", field.name));
            } else if let Some(note) = self.unknown_root_note {
                msg.push_str(note);
            }
        }
        msg.push_str(" (ignored)");
        let mut p = path.to_vec();
        p.push(PathSeg::Key(key.to_string()));
        self.diagnostics
            .push(Diagnostic::warning("", path_string(&p), msg).at(mark));
    }

    fn shape(&mut self, node: Node, shape: &'static Shape, path: &mut Vec<PathSeg>) -> Node {
        if node.is_null() {
            return node;
        }
        match shape {
            Shape::Scalar => self.scalar(node, path),
            Shape::List => self.list(node, None, None, path),
            Shape::Commands => {
                let mut n = self.list(node, None, None, path);
                if let Value::Seq { items, .. } = &mut n.value {
                    for item in items.iter_mut() {
                        argv_to_command(item);
                    }
                }
                n
            }
            Shape::Keyed(key, fields) => self.list(node, Some(key), Some(fields), path),
            Shape::StrMap => self.str_map(node, path),
            Shape::Struct(fields) => self.structure(node, fields, path),
        }
    }

    fn scalar(&mut self, node: Node, path: &[PathSeg]) -> Node {
        if !self.cmdline {
            return node;
        }
        match node.value {
            Value::Seq { mut items, .. } if !items.is_empty() => {
                let last = items.pop().expect("not empty");
                self.diagnostics.push(
                    Diagnostic::warning(
                        "",
                        path_string(path),
                        format!("given {} times; the last one wins", items.len() + 1),
                    )
                    .at(&last.mark),
                );
                last
            }
            value => Node {
                value,
                mark: node.mark,
                replace: node.replace,
            },
        }
    }

    fn list(
        &mut self,
        node: Node,
        key: Option<&'static str>,
        fields: Option<&'static [Field]>,
        path: &mut Vec<PathSeg>,
    ) -> Node {
        let Node {
            value,
            mark,
            replace,
        } = node;
        let items = match value {
            Value::Seq { items, .. } => items,
            // A single value where a list is wanted: k3OS accepted that, and so do we.
            other => vec![Node {
                value: other,
                mark: mark.clone(),
                replace: false,
            }],
        };
        let mut out: Vec<Node> = Vec::with_capacity(items.len());
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            if item.is_null() {
                continue;
            }
            path.push(PathSeg::Index(i));
            let item = match fields {
                Some(fields) => self.structure(item, fields, path),
                None => item,
            };
            path.pop();
            if let Some(k) = key {
                // Within one source a key given twice: keep the later item, say so. This keeps
                // the merge's per-source invariant (keys unique) that its laws rely on.
                let id = item.get(k).and_then(Node::as_str).map(str::to_string);
                if let Some(id) = id {
                    if let Some(&pos) = seen.get(&id) {
                        let mut p = path.clone();
                        p.push(PathSeg::Index(i));
                        self.diagnostics.push(
                            Diagnostic::warning(
                                "",
                                path_string(&p),
                                format!("{k} `{id}` appears twice; the later entry is used"),
                            )
                            .at(&item.mark),
                        );
                        out[pos] = item;
                        continue;
                    }
                    seen.insert(id, out.len());
                }
            }
            out.push(item);
        }
        Node {
            value: Value::Seq { items: out, key },
            mark,
            replace,
        }
    }

    fn str_map(&mut self, node: Node, path: &[PathSeg]) -> Node {
        let Node {
            value,
            mark,
            replace,
        } = node;
        let items = match value {
            Value::Map(map) => {
                return Node {
                    value: Value::Map(map),
                    mark,
                    replace,
                }
            }
            Value::Seq { items, .. } => items,
            other => vec![Node {
                value: other,
                mark: mark.clone(),
                replace: false,
            }],
        };
        // `key=value` strings (the kernel command line's repeated `rkos.labels=a=b`, and a
        // common way to write labels) become entries.
        let mut map: IndexMap<String, Entry> = IndexMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let pair = item
                .as_str()
                .and_then(|s| s.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()));
            match pair {
                Some((k, v)) if !k.is_empty() => {
                    let m = item.mark.clone();
                    map.insert(
                        k,
                        Entry {
                            key_mark: m.clone(),
                            node: Node::new(
                                Value::Scalar(Scalar {
                                    text: v,
                                    quoted: true,
                                }),
                                m,
                            ),
                        },
                    );
                }
                _ => {
                    let mut p = path.to_vec();
                    p.push(PathSeg::Index(i));
                    self.diagnostics.push(
                        Diagnostic::error(
                            "",
                            path_string(&p),
                            "expected `key=value` or a mapping of keys to values",
                        )
                        .at(&item.mark),
                    );
                }
            }
        }
        Node {
            value: Value::Map(map),
            mark,
            replace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::parse_yaml;

    fn norm(text: &str) -> (Node, Vec<Diagnostic>) {
        let mut n = Normalizer::new(false);
        let node = n.root(parse_yaml("f.yaml", text).unwrap());
        (node, n.diagnostics)
    }

    #[test]
    fn canonical_keys() {
        assert_eq!(canonical_key("sshAuthorizedKeys"), "ssh_authorized_keys");
        assert_eq!(canonical_key("k3sArgs"), "k3s_args");
        assert_eq!(canonical_key("serverURL"), "server_url");
        assert_eq!(canonical_key("data-sources"), "data_sources");
    }

    #[test]
    fn spellings_and_alias() {
        let (n, d) = norm("k3os:\n  serverUrl: https://a\n  label:\n    a: b\n  dnsNameserver: 1.1.1.1\nsshAuthorizedKey: ssh-ed25519 AAAA\n");
        assert!(d.is_empty(), "{d:?}");
        let rk = n.get("rkos").unwrap();
        assert_eq!(rk.get("server_url").unwrap().as_str(), Some("https://a"));
        assert!(rk.get("labels").is_some());
        assert!(
            matches!(&rk.get("dns_nameservers").unwrap().value, Value::Seq { items, .. } if items.len() == 1)
        );
        assert!(
            matches!(&n.get("ssh_authorized_keys").unwrap().value, Value::Seq { items, .. } if items.len() == 1)
        );
    }

    #[test]
    fn unknown_keys_suggest() {
        let (_, d) = norm("hostnme: a\nrkos:\n  sever_url: x\nserver_url: y\n");
        let msgs: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "f.yaml:1:1: hostnme: warning: unknown key `hostnme`; did you mean `hostname`? (ignored)",
                "f.yaml:3:3: rkos.sever_url: warning: unknown key `sever_url`; did you mean `server_url`? (ignored)",
                "f.yaml:4:1: server_url: warning: unknown key `server_url`; did you mean `rkos.server_url`? (ignored)",
            ]
        );
    }

    #[test]
    fn both_sections_merge() {
        let (n, _) = norm("k3os:\n  modules: [a]\nrkos:\n  modules: [b]\n");
        let m = n.get("rkos").unwrap().get("modules").unwrap();
        match &m.value {
            Value::Seq { items, .. } => {
                let v: Vec<_> = items.iter().map(|i| i.as_str().unwrap()).collect();
                assert_eq!(v, vec!["a", "b"]);
            }
            _ => panic!(),
        }
    }

    #[test]
    fn argv_commands_become_strings() {
        let (n, d) = norm("runcmd:\n  - [sh, -c, \"echo 'hi there'\"]\n  - echo plain\n");
        assert!(d.is_empty());
        match &n.get("run_cmd").unwrap().value {
            Value::Seq { items, .. } => {
                assert_eq!(items[0].as_str(), Some(r#"sh -c 'echo '\''hi there'\'''"#));
                assert_eq!(items[1].as_str(), Some("echo plain"));
            }
            _ => panic!(),
        }
    }

    #[test]
    fn label_list_becomes_map() {
        let (n, d) = norm("rkos:\n  labels: [zone=a, 'tier = web']\n");
        assert!(d.is_empty());
        let l = n.get("rkos").unwrap().get("labels").unwrap();
        assert_eq!(l.get("zone").unwrap().as_str(), Some("a"));
        assert_eq!(l.get("tier").unwrap().as_str(), Some("web"));
    }

    #[test]
    fn keyed_duplicates_keep_later() {
        let (n, d) = norm("write_files:\n- path: /a\n  content: x\n- path: /a\n  content: y\n");
        assert_eq!(d.len(), 1);
        match &n.get("write_files").unwrap().value {
            Value::Seq { items, key } => {
                assert_eq!(*key, Some("path"));
                assert_eq!(items.len(), 1);
                assert_eq!(items[0].get("content").unwrap().as_str(), Some("y"));
            }
            _ => panic!(),
        }
    }
}
