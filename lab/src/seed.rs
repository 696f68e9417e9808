//! Each node's NoCloud seed: `meta-data` (instance and host name), `network-config`
//! (version 2: the static address matched by MAC, gateway `.1`, DNS) and `user-data`
//! (`#cloud-config`: SSH keys, an optional console password, and an `rkos:` section with the
//! role, the server URL, the token and `cluster_init`), and the vfat volume labelled
//! `CIDATA` that carries them (mkfs.vfat and mcopy: no mount, no loop device).

use std::path::{Path, PathBuf};
use std::process::Command;

use rkos_contract::{files, label};

use crate::plan::{Node, Plan, Role};
use crate::{Error, Result};

/// What every node's seed shares besides the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedInput {
    /// The cluster's token (k3s's shared secret).
    pub token: String,
    /// Public keys for the login user `rkos` (the lab's own key first).
    pub ssh_keys: Vec<String>,
    /// The console password of `rkos`, if any (SSH stays keys-only).
    pub password: Option<String>,
    pub dns: Vec<String>,
    /// Identifies this incarnation of the lab: a new `up` is a new instance on every node.
    pub instance: String,
}

/// A node's seed files, by their NoCloud names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFiles {
    pub meta_data: String,
    pub network_config: String,
    pub user_data: String,
}

impl SeedFiles {
    /// `(file name, text)` pairs.
    pub fn files(&self) -> [(&'static str, &str); 3] {
        [
            ("meta-data", self.meta_data.as_str()),
            ("network-config", self.network_config.as_str()),
            ("user-data", self.user_data.as_str()),
        ]
    }
}

/// A YAML double-quoted scalar (JSON's string syntax is YAML's).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The seed of `node` in `plan`.
pub fn seed_files(plan: &Plan, node: &Node, input: &SeedInput) -> SeedFiles {
    let meta_data = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        q(&format!("{}-{}", node.name, input.instance)),
        node.name
    );
    let network_config = format!(
        "version: 2\nethernets:\n  lab0:\n    match: {{macaddress: {mac}}}\n    set-name: lab0\n    \
         addresses: [{addr}/24]\n    gateway4: {gw}\n    nameservers: {{addresses: {dns}}}\n",
        mac = q(&node.mac),
        addr = node.address,
        gw = plan.gateway,
        dns = yaml_list(&input.dns),
    );
    let mut ud = String::from("#cloud-config\n");
    ud.push_str(&format!(
        "ssh_authorized_keys: {}\n",
        yaml_list(&input.ssh_keys)
    ));
    ud.push_str("rkos:\n");
    ud.push_str(&format!("  role: {}\n", node.role.as_str()));
    ud.push_str(&format!("  token: {}\n", q(&input.token)));
    let joins = node.role == Role::Agent || node.name != plan.first_server().name;
    if joins {
        ud.push_str(&format!("  server_url: {}\n", q(&plan.server_url())));
    }
    if node.cluster_init {
        ud.push_str("  cluster_init: true\n");
    }
    if let Some(pw) = &input.password {
        ud.push_str(&format!("  password: {}\n", q(pw)));
    }
    SeedFiles {
        meta_data,
        network_config,
        user_data: ud,
    }
}

/// The command lines that make the `CIDATA` vfat volume `img` holding the files in `dir`.
pub fn vfat_commands(img: &Path, dir: &Path, names: &[&str]) -> Vec<Vec<String>> {
    let mut mcopy = vec!["mcopy".to_string(), "-i".into(), img.display().to_string()];
    mcopy.extend(names.iter().map(|n| dir.join(n).display().to_string()));
    mcopy.push("::/".into());
    vec![
        vec![
            "mkfs.vfat".into(),
            "-C".into(),
            "-n".into(),
            label::CIDATA.into(),
            img.display().to_string(),
            "2048".into(),
        ],
        mcopy,
    ]
}

/// Writes `files` into `dir` and makes the `CIDATA` volume `dir/seed.img` from them.
pub fn write_vfat(dir: &Path, files: &[(&str, &str)]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    for (name, text) in files {
        debug_assert!(files::CIDATA_FILES.contains(name), "{name}");
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(Error::io(format!("writing {}", p.display())))?;
    }
    let img = dir.join("seed.img");
    let _ = std::fs::remove_file(&img);
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    for argv in vfat_commands(&img, dir, &names) {
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .map_err(Error::io(format!(
                "running {} (dosfstools, mtools)",
                argv[0]
            )))?;
        if !out.status.success() {
            return Err(Error::Command {
                cmd: argv.join(" "),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, test_spec};
    use rkos_config::{load, Role as CfgRole, Source};

    fn input() -> SeedInput {
        SeedInput {
            token: "0123abcd\"quoted".into(),
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHUjgfQ9f2utEoQE+aawuSj1kcmRUXLmk8J914i+LZLF lab@rkos".into()],
            password: Some("pw: with colon".into()),
            dns: vec!["10.0.0.53".into()],
            instance: "i1".into(),
        }
    }

    fn lab(servers: u32, agents: u32) -> Plan {
        plan(&test_spec("t", servers, agents)).unwrap()
    }

    /// The node's config as rkos loads it from this seed: no diagnostics at all.
    fn loaded(s: &SeedFiles) -> rkos_config::Config {
        let sources: Vec<Source> = s
            .files()
            .iter()
            .map(|(n, t)| Source::given_file(*n, *t))
            .collect();
        let l = load(&sources);
        let noisy: Vec<String> = l.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(noisy.is_empty(), "{noisy:?}\n{s:?}");
        l.config
    }

    #[test]
    fn every_node_of_a_three_server_lab_loads_as_planned() {
        let p = lab(3, 2);
        for node in &p.nodes {
            let s = seed_files(&p, node, &input());
            let c = loaded(&s);
            assert_eq!(c.hostname.as_deref(), Some(node.name.as_str()), "{s:?}");
            let want = match node.role {
                Role::Server => CfgRole::Server,
                Role::Agent => CfgRole::Agent,
            };
            assert_eq!(c.role(), want, "{}", node.name);
            assert_eq!(c.rkos.token.as_deref(), Some("0123abcd\"quoted"));
            assert_eq!(c.rkos.password.as_deref(), Some("pw: with colon"));
            assert_eq!(c.ssh_authorized_keys, input().ssh_keys);
            let first = node.name == "t-server-1";
            assert_eq!(c.rkos.cluster_init, first.then_some(true), "{}", node.name);
            let url = (!first).then(|| p.server_url());
            assert_eq!(c.rkos.server_url, url, "{}", node.name);
            let iface = &c.rkos.network.interfaces;
            assert_eq!(iface.len(), 1, "{iface:?}");
            assert_eq!(iface[0].mac.as_deref(), Some(node.mac.as_str()));
            assert_eq!(iface[0].addresses, [format!("{}/24", node.address)]);
            assert_eq!(iface[0].gateway, Some(p.gateway.to_string()));
        }
    }

    #[test]
    fn a_single_server_joins_nothing_and_agents_join_it() {
        let p = lab(1, 1);
        let mut i = input();
        i.password = None;
        let server = loaded(&seed_files(&p, &p.nodes[0], &i));
        assert_eq!(server.rkos.server_url, None);
        assert_eq!(server.rkos.cluster_init, None);
        assert_eq!(server.rkos.password, None);
        let agent = loaded(&seed_files(&p, &p.nodes[1], &i));
        assert_eq!(
            agent.rkos.server_url,
            Some(format!("https://{}:6443", p.nodes[0].address))
        );
    }

    #[test]
    fn the_instance_id_changes_with_the_incarnation() {
        let p = lab(1, 0);
        let a = seed_files(&p, &p.nodes[0], &input());
        let mut other = input();
        other.instance = "i2".into();
        let b = seed_files(&p, &p.nodes[0], &other);
        assert_ne!(a.meta_data, b.meta_data);
        assert!(a.meta_data.contains("t-server-1-i1"), "{}", a.meta_data);
    }

    /// The volume itself is made and read back by `rkos-tests`' seed test (through
    /// [`write_vfat`]); here, what it is made of.
    #[test]
    fn the_seed_volume_is_cidata_with_the_three_files() {
        let p = lab(1, 0);
        let s = seed_files(&p, &p.nodes[0], &input());
        let names: Vec<&str> = s.files().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["meta-data", "network-config", "user-data"]);
        let cmds = vfat_commands(Path::new("/d/seed.img"), Path::new("/d"), &names);
        let joined: Vec<String> = cmds.iter().map(|c| c.join(" ")).collect();
        assert_eq!(joined[0], "mkfs.vfat -C -n CIDATA /d/seed.img 2048");
        assert_eq!(
            joined[1],
            "mcopy -i /d/seed.img /d/meta-data /d/network-config /d/user-data ::/"
        );
    }
}
