//! A `#cloud-config` document in rkos's terms: cloud-init's own keys (`users`, `user`,
//! `password`, `chpasswd`, `ssh_pwauth`, `fqdn`, `ntp`, `packages`, ...) become the rkos keys
//! that do the same on an immutable node; the keys both share (`hostname`,
//! `ssh_authorized_keys`, `write_files`, `bootcmd`, `runcmd`, `manage_etc_hosts`) and the
//! `rkos:`/`k3os:` section pass through. What cannot apply is a warning, never an error.
//!
//! rkos has one login user, `rkos` (uid 1000, passwordless sudo). The seed's users map onto
//! it: the first named user that is not root, and root, give it their SSH keys and password
//! (with a warning naming the login to use); the `default` user's settings (the top-level
//! `ssh_authorized_keys` and `password`) are rkos's own. Other users are not created: a
//! warning says so. See docs/config.md, "cloud-init".

use crate::diag::Diagnostic;
use crate::node::{Node, Value};

use super::tree::{self, boolean, entries, error, items, join, warning, MapB};

/// Keys that ask for packages: on an immutable OS they cannot apply.
const PACKAGE_KEYS: &[&str] = &[
    "packages",
    "package_update",
    "package_upgrade",
    "package_reboot_if_required",
    "apt",
    "apt_update",
    "apt_upgrade",
    "apt_reboot_if_required",
    "yum_repos",
    "snap",
    "zypper",
];

/// Keys accepted without effect or warning: what they ask for rkos does by itself
/// (`growpart`: `RKOS_DATA` grows on first boot; no root login to disable; host keys made
/// per instance) or they steer cloud-init's own merging.
const SILENT_KEYS: &[&str] = &[
    "growpart",
    "resize_rootfs",
    "disable_root",
    "disable_root_opts",
    "ssh_deletekeys",
    "ssh_genkeytypes",
    "merge_how",
    "merge_type",
];

/// Keys of this module; everything else passes through to the schema.
const OWN_KEYS: &[&str] = &[
    "user",
    "users",
    "password",
    "chpasswd",
    "ssh_pwauth",
    "fqdn",
    "prefer_fqdn_over_hostname",
    "preserve_hostname",
    "ntp",
    "ssh_keys",
];

pub const PACKAGES_WARNING: &str = "rkos is an immutable OS: packages are not installed. Add \
software as a system extension, run it in a container on k3s, or build a custom image \
(docs/image.md) (ignored)";

/// The login user `rkos` as the seed describes it.
#[derive(Default)]
struct Login {
    keys: Vec<Node>,
    /// (priority, password node): see [`Prio`].
    password: Option<(u8, Node)>,
    /// Names that mean the login user in `chpasswd`.
    names: Vec<String>,
}

/// Which password becomes rkos's when the seed gives several: the login user's own (its
/// `chpasswd` entry, then the top-level `password`, then its `passwd`) before root's (its
/// `chpasswd` entry, then its `passwd`), as cloud-init applies them in that order.
struct Prio;

impl Prio {
    const OWN_CHPASSWD: u8 = 6;
    const OWN_PASSWORD: u8 = 5;
    const OWN_PASSWD: u8 = 4;
    const ROOT_CHPASSWD: u8 = 3;
    const ROOT_PASSWD: u8 = 2;
}

impl Login {
    fn set_password(&mut self, prio: u8, node: &Node) {
        if self.password.as_ref().is_none_or(|(p, _)| prio >= *p) {
            self.password = Some((prio, node.clone()));
        }
    }
}

/// Translates `doc` (a parsed `#cloud-config`, not yet normalised).
pub fn translate(doc: Node, diags: &mut Vec<Diagnostic>) -> Node {
    let Value::Map(map) = doc.value else {
        // the schema reports "expected a mapping" at the document
        return doc;
    };
    let doc = Node::new(Value::Map(map), doc.mark);
    let mut login = Login {
        names: vec!["rkos".into(), "root".into()],
        ..Login::default()
    };
    let mut packages_warned = false;
    let mut pass = MapB::new(&doc.mark);
    // the default user's keys, with those of the users mapped onto it
    let mut default_keys: Vec<Node> = Vec::new();
    for (key, e) in entries(&doc) {
        let canon = crate::schema::canonical_key(key);
        if canon == "ssh_authorized_keys" {
            default_keys.extend(items(&e.node).into_iter().cloned());
        } else if PACKAGE_KEYS.contains(&canon.as_str()) {
            let wanted = match boolean(&e.node) {
                Some(b) => b,
                None => !items(&e.node).is_empty() || e.node.as_map().is_some(),
            };
            if wanted && !packages_warned {
                diags.push(warning(&e.key_mark, key, PACKAGES_WARNING));
                packages_warned = true;
            }
        } else if SILENT_KEYS.contains(&canon.as_str()) {
        } else if !OWN_KEYS.contains(&canon.as_str()) {
            pass.put_entry(key, e);
        }
    }
    let mut out = MapB::new(&doc.mark);
    if let Some(u) = doc.get("user") {
        default_user(u, &mut login, diags);
    }
    if let Some(u) = doc.get("users") {
        users(u, &mut login, diags);
    }
    if let Some(p) = doc.get("password").filter(|p| !p.is_null()) {
        login.set_password(Prio::OWN_PASSWORD, p);
    }
    if let Some(c) = doc.get("chpasswd") {
        chpasswd(c, &mut login, diags);
    }
    if let Some(p) = doc.get("ssh_pwauth") {
        if boolean(p) == Some(true) {
            diags.push(warning(
                &p.mark,
                "ssh_pwauth",
                "rkos keeps SSH to keys only; the password logs in on the console (ignored)",
            ));
        }
    }
    if let Some(p) = doc.get("preserve_hostname") {
        if boolean(p) == Some(true) {
            diags.push(warning(
                &p.mark,
                "preserve_hostname",
                "rkos sets the host name from the config at every boot (ignored)",
            ));
        }
    }
    if let Some(k) = doc.get("ssh_keys") {
        diags.push(warning(
            &tree::at(k),
            "ssh_keys",
            "rkos makes the node's SSH host keys itself, new for each instance-id (ignored)",
        ));
    }
    names(&doc, &mut out, diags);
    let mut keys: Vec<Node> = default_keys;
    keys.extend(login.keys);
    if !keys.is_empty() {
        out.put("ssh_authorized_keys", tree::seq(keys, &doc.mark));
    }
    let mut rk = MapB::new(&doc.mark);
    rk.put_opt("password", login.password.map(|(_, n)| n));
    if let Some(ntp) = doc.get("ntp") {
        let servers: Vec<Node> = ["servers", "pools"]
            .iter()
            .filter_map(|k| ntp.get(k))
            .flat_map(|n| items(n).into_iter().cloned())
            .collect();
        if !servers.is_empty() {
            rk.put("ntp_servers", tree::seq(servers, &ntp.mark));
        }
    }
    // The user's own `rkos:` (or `k3os:`) section is written later and so wins.
    let mut rk_done = rk.is_empty();
    let derived_rk = rk.build();
    for (key, e) in entries(&pass.build()) {
        match key.as_str() {
            "hostname" if out.get(key).is_some() => {}
            k @ ("rkos" | "k3os") if !rk_done => {
                let merged = crate::node::Entry {
                    key_mark: e.key_mark.clone(),
                    node: crate::merge::merge(derived_rk.clone(), e.node.clone()),
                };
                out.put_entry(k, &merged);
                rk_done = true;
            }
            _ => {
                out.put_entry(key, e);
            }
        }
    }
    if !rk_done {
        out.put("rkos", derived_rk);
    }
    out.build()
}

/// `hostname` and `fqdn` as cloud-init derives them: `fqdn` names the node and its first
/// label is the host name unless `hostname` is given; a dotted `hostname` alone is both.
fn names(doc: &Node, out: &mut MapB, diags: &mut Vec<Diagnostic>) {
    let hostname = doc.get("hostname").filter(|n| !n.is_null());
    let fqdn = doc.get("fqdn").filter(|n| !n.is_null());
    let prefer_fqdn = doc
        .get("prefer_fqdn_over_hostname")
        .and_then(boolean)
        .unwrap_or(false);
    let short = |n: &Node| {
        let t = n.as_str().unwrap_or_default();
        tree::text(t.split('.').next().unwrap_or(t), &n.mark)
    };
    match (hostname, fqdn) {
        (_, Some(f)) if f.as_str().is_none() => diags.push(error(
            f,
            "fqdn",
            format!("expected a name, found {}", tree::kind(f)),
        )),
        (h, Some(f)) => {
            out.put("fqdn", f.clone());
            let name = if prefer_fqdn {
                f.clone()
            } else {
                h.cloned().unwrap_or_else(|| short(f))
            };
            out.put("hostname", name);
        }
        (Some(h), None) if h.as_str().is_some_and(|t| t.contains('.')) && !prefer_fqdn => {
            out.put("fqdn", h.clone());
            out.put("hostname", short(h));
        }
        (Some(h), None) => {
            out.put("hostname", h.clone());
        }
        (None, None) => {}
    }
}

/// `user:` — the default user, by name or described in full.
fn default_user(u: &Node, login: &mut Login, diags: &mut Vec<Diagnostic>) {
    match &u.value {
        Value::Scalar(s) => login.names.push(s.text.clone()),
        Value::Map(_) => {
            if let Some(n) = u.get("name").and_then(Node::as_str) {
                login.names.push(n.to_string());
            }
            user_settings(u, "user", false, login, diags);
        }
        Value::Null => {}
        Value::Seq { .. } => diags.push(error(u, "user", "expected a user name or a mapping")),
    }
}

/// `users:` — `default`, names, or user mappings (also a comma-separated string).
fn users(list: &Node, login: &mut Login, diags: &mut Vec<Diagnostic>) {
    let mut mapped_named = false;
    let split: Vec<Node>;
    let entries: Vec<&Node> = match list.as_str() {
        Some(s) => {
            split = s
                .split(',')
                .map(|n| tree::text(n.trim(), &list.mark))
                .collect();
            split.iter().collect()
        }
        None => items(list),
    };
    for (i, u) in entries.into_iter().enumerate() {
        let path = tree::index("users", i);
        let name = match &u.value {
            Value::Scalar(s) => s.text.clone(),
            Value::Map(_) => match u.get("name").and_then(Node::as_str) {
                Some(n) => n.to_string(),
                None => {
                    diags.push(error(u, &path, "a user needs a `name`"));
                    continue;
                }
            },
            _ => {
                diags.push(error(
                    u,
                    &path,
                    "expected `default`, a user name or a user mapping",
                ));
                continue;
            }
        };
        if name == "default" {
            continue;
        }
        let is_root = name == "root";
        if !is_root && mapped_named {
            diags.push(warning(
                &tree::at(u),
                &path,
                format!(
                    "`{name}` is not created: rkos has one login user, `rkos` (with sudo); the \
                     first user's SSH keys and password are its own (ignored)"
                ),
            ));
            continue;
        }
        if name != "rkos" {
            let why = if is_root {
                "root has no login on rkos"
            } else {
                "rkos has one login user"
            };
            diags.push(warning(
                &tree::at(u),
                &path,
                format!(
                    "{why}: the SSH keys and password of `{name}` are given to `rkos` (log in \
                     as rkos; sudo needs no password)"
                ),
            ));
        }
        mapped_named |= !is_root;
        login.names.push(name);
        if u.as_map().is_some() {
            user_settings(u, &path, is_root, login, diags);
        }
    }
}

/// The settings of a user mapped onto `rkos`: SSH keys (also from `ssh_import_id`), password
/// (`passwd`, `hashed_passwd`, `plain_text_passwd`) unless `lock_passwd` (cloud-init's
/// default: true) locks it.
fn user_settings(u: &Node, path: &str, root: bool, login: &mut Login, diags: &mut Vec<Diagnostic>) {
    for (key, e) in entries(u) {
        let canon = crate::schema::canonical_key(key);
        match canon.as_str() {
            "ssh_authorized_keys" => login.keys.extend(items(&e.node).into_iter().cloned()),
            "ssh_import_id" => {
                for id in items(&e.node) {
                    let t = id.as_str().unwrap_or_default();
                    match t.strip_prefix("gh:") {
                        Some(user) => login.keys.push(tree::text(format!("github:{user}"), &id.mark)),
                        None => diags.push(warning(
                            &id.mark,
                            &join(path, key),
                            format!("`{t}`: rkos imports keys from GitHub (gh:USER) only; list the others in ssh_authorized_keys (ignored)"),
                        )),
                    }
                }
            }
            _ => {}
        }
    }
    let password = tree::first(u, &["passwd", "hashed_passwd", "plain_text_passwd"]);
    let locked = u.get("lock_passwd").and_then(boolean).unwrap_or(true);
    if let Some((key, p)) = password {
        if locked {
            diags.push(warning(
                &p.mark,
                &join(path, key),
                "lock_passwd is true (cloud-init's default), so this password is locked and \
                 not set; add `lock_passwd: false` to log in with it (ignored)",
            ));
        } else {
            let prio = if root {
                Prio::ROOT_PASSWD
            } else {
                Prio::OWN_PASSWD
            };
            login.set_password(prio, p);
        }
    }
}

/// `chpasswd:` — `list` (a `user:password` string or list) and `users` forms.
fn chpasswd(c: &Node, login: &mut Login, diags: &mut Vec<Diagnostic>) {
    if c.get("expire").and_then(boolean) == Some(true) {
        diags.push(warning(
            &c.get("expire").expect("just read").mark,
            "chpasswd.expire",
            "rkos sets the password again at every boot, so it cannot expire (ignored)",
        ));
    }
    let mut pairs: Vec<(String, Node, String)> = Vec::new();
    if let Some(list) = c.get("list") {
        // a block of `user:password` lines: each line at its own place in the file
        let lines: Vec<(String, Node)> = match list.as_str() {
            Some(s) => s
                .lines()
                .enumerate()
                .map(|(i, l)| {
                    let mut at = list.clone();
                    at.mark.line = at.mark.line.map(|first| first + i);
                    (l.to_string(), at)
                })
                .collect(),
            None => items(list)
                .into_iter()
                .map(|n| (n.as_str().unwrap_or_default().to_string(), n.clone()))
                .collect(),
        };
        for (i, (line, node)) in lines.iter().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let path = tree::index("chpasswd.list", i);
            match line.split_once(':') {
                Some((u, p)) if !u.is_empty() => {
                    pairs.push((u.to_string(), tree::text(p, &node.mark), path))
                }
                _ => diags.push(error(node, &path, "expected `user:password`")),
            }
        }
    }
    if let Some(us) = c.get("users") {
        for (i, u) in items(us).into_iter().enumerate() {
            let path = tree::index("chpasswd.users", i);
            let Some(name) = u.get("name").and_then(Node::as_str) else {
                diags.push(error(u, &path, "a chpasswd user needs a `name`"));
                continue;
            };
            let ty = u.get("type").and_then(Node::as_str).unwrap_or("hash");
            match (u.get("password"), ty.to_ascii_lowercase().as_str()) {
                (_, "random") => pairs.push((name.into(), tree::text("RANDOM", &u.mark), path)),
                (Some(p), _) => pairs.push((name.into(), p.clone(), path)),
                (None, _) => diags.push(error(u, &path, "a chpasswd user needs a `password`")),
            }
        }
    }
    for (user, pw, path) in pairs {
        let t = pw.as_str().unwrap_or_default();
        if t == "R" || t == "RANDOM" {
            diags.push(warning(
                &pw.mark,
                &path,
                format!("a random password for `{user}` would only be shown on the console once; rkos does not make one (ignored)"),
            ));
        } else if login.names.contains(&user) {
            let prio = if user == "root" {
                Prio::ROOT_CHPASSWD
            } else {
                Prio::OWN_CHPASSWD
            };
            login.set_password(prio, &pw);
        } else {
            diags.push(warning(
                &pw.mark,
                &path,
                format!("`{user}` is not rkos's login user `rkos` (ignored)"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::load::{Source, SourceKind};

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICYc7aNrQpkm91VemglhbWJX9fNo4ikttrD9k7PI4nWN";
    const HASH: &str = "$6$saltsalt$Qz0wZQ1d6oJmQ7QfF2Vw6PCbq8Vr8sX3/9gk1yGqI0ZsR0y7QbNm1GkzB1hV2Yx5N3dQqL7c6jT8mE0pW4uA1.";

    fn load(text: &str) -> (crate::Config, Vec<String>) {
        let loaded = crate::load(&[Source::new(SourceKind::CloudInit, "user-data", text)]);
        (
            loaded.config,
            loaded.diagnostics.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn proxmox_default_user_with_password_and_names() {
        let (cfg, diags) = load(&format!(
            "#cloud-config\nhostname: vm100\nmanage_etc_hosts: true\nfqdn: vm100.lab.example\nuser: debian\n\
             password: {HASH}\nssh_authorized_keys:\n  - {KEY}\nchpasswd:\n  expire: False\nusers:\n  - default\n\
             package_upgrade: true\n"
        ));
        assert_eq!(
            diags,
            ["user-data:13:1: package_upgrade: warning: rkos is an immutable OS: packages are not installed. Add software as a system extension, run it in a container on k3s, or build a custom image (docs/image.md) (ignored)"]
        );
        assert_eq!(cfg.hostname.as_deref(), Some("vm100"));
        assert_eq!(cfg.fqdn.as_deref(), Some("vm100.lab.example"));
        assert_eq!(cfg.manage_etc_hosts.as_deref(), Some("true"));
        assert_eq!(cfg.rkos.password.as_deref(), Some(HASH));
        assert_eq!(cfg.ssh_authorized_keys, [KEY]);
    }

    #[test]
    fn the_first_named_user_and_root_map_onto_rkos() {
        let (cfg, diags) = load(&format!(
            "#cloud-config\nusers:\n  - default\n  - name: ci\n    ssh-authorized-keys: ['{KEY} ci']\n    passwd: '{HASH}'\n    lock_passwd: false\n\
             \x20 - name: root\n    ssh_import_id: [gh:octo, lp:someone]\n  - name: alice\n\
             chpasswd:\n  list: |\n    root:rootpw\n    bob:x\n  expire: true\nssh_pwauth: true\n"
        ));
        // ci's own password beats root's
        assert_eq!(cfg.rkos.password.as_deref(), Some(HASH));
        assert_eq!(
            cfg.ssh_authorized_keys,
            [format!("{KEY} ci"), "github:octo".into()]
        );
        assert_eq!(
            diags,
            [
                "user-data:4:5: users[1]: warning: rkos has one login user: the SSH keys and password of `ci` are given to `rkos` (log in as rkos; sudo needs no password)",
                "user-data:8:5: users[2]: warning: root has no login on rkos: the SSH keys and password of `root` are given to `rkos` (log in as rkos; sudo needs no password)",
                "user-data:9:30: users[2].ssh_import_id: warning: `lp:someone`: rkos imports keys from GitHub (gh:USER) only; list the others in ssh_authorized_keys (ignored)",
                "user-data:10:5: users[3]: warning: `alice` is not created: rkos has one login user, `rkos` (with sudo); the first user's SSH keys and password are its own (ignored)",
                "user-data:14:5: chpasswd.list[1]: warning: `bob` is not rkos's login user `rkos` (ignored)",
                "user-data:15:11: chpasswd.expire: warning: rkos sets the password again at every boot, so it cannot expire (ignored)",
                "user-data:16:13: ssh_pwauth: warning: rkos keeps SSH to keys only; the password logs in on the console (ignored)",
            ]
        );
    }

    #[test]
    fn virt_install_root_and_locked_passwords() {
        let (cfg, _) = load(&format!(
            "#cloud-config\nchpasswd:\n  list: |\n    root:s3cret\n  expire: False\nusers:\n  - name: root\n    ssh_authorized_keys:\n      - {KEY}\n"
        ));
        assert_eq!(cfg.rkos.password.as_deref(), Some("s3cret"));
        assert_eq!(cfg.ssh_authorized_keys, [KEY]);
        let (cfg, diags) = load(&format!(
            "#cloud-config\nusers:\n  - name: ops\n    passwd: '{HASH}'\nchpasswd:\n  users:\n    - {{name: ops, password: clear-pw, type: text}}\n    - {{name: rkos, type: RANDOM}}\n"
        ));
        assert_eq!(cfg.rkos.password.as_deref(), Some("clear-pw"));
        assert!(
            diags[1].contains("users[0].passwd: warning: lock_passwd is true"),
            "{diags:#?}"
        );
        assert!(
            diags[2].contains("chpasswd.users[1]: warning: a random password"),
            "{diags:#?}"
        );
        let (cfg, _) = load("#cloud-config\nhostname: web1.example.org\nntp: {servers: [ntp1.example], pools: [pool.example]}\nrkos:\n  ntp_servers: [mine.example]\n");
        assert_eq!(cfg.hostname.as_deref(), Some("web1"));
        assert_eq!(cfg.fqdn.as_deref(), Some("web1.example.org"));
        assert_eq!(
            cfg.rkos.ntp_servers,
            ["ntp1.example", "pool.example", "mine.example"]
        );
    }
}
