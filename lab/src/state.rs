//! Where a lab lives and what it records: one directory per lab,
//!
//! ```text
//! <root>/<name>/state.json          LabState: the plan and what up did (pids, NAT, accel)
//! <root>/<name>/id_ed25519[.pub]    the lab's SSH key (login user rkos on every node)
//! <root>/<name>/kubeconfig          the server's k3s.yaml, its address rewritten (real k3s)
//! <root>/<name>/nodes/<node>/       disk.qcow2 (overlay), seed/ (files and seed.img),
//!                                   console.log (serial), qemu.pid
//! ```
//!
//! `<root>` is `$RKOS_LAB_DIR`, else `/var/lib/rkos-lab` (the lab needs root anyway).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{node_dir, Node, Plan};
use crate::{Error, Result};

pub const DEFAULT_ROOT: &str = "/var/lib/rkos-lab";
pub const STATE_FILE: &str = "state.json";

/// The directory holding every lab: `RKOS_LAB_DIR` (`env`), else [`DEFAULT_ROOT`].
pub fn labs_root(env: Option<&str>) -> PathBuf {
    env.filter(|s| !s.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from)
}

/// The paths of one lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(root: &Path, name: &str) -> Layout {
        Layout {
            dir: root.join(name),
        }
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    pub fn node(&self, node: &str) -> PathBuf {
        node_dir(&self.dir, node)
    }
    pub fn disk(&self, node: &str) -> PathBuf {
        self.node(node).join("disk.qcow2")
    }
    pub fn seed_dir(&self, node: &str) -> PathBuf {
        self.node(node).join("seed")
    }
    pub fn seed_img(&self, node: &str) -> PathBuf {
        self.seed_dir(node).join("seed.img")
    }
    pub fn console(&self, node: &str) -> PathBuf {
        self.node(node).join("console.log")
    }
    pub fn pidfile(&self, node: &str) -> PathBuf {
        self.node(node).join("qemu.pid")
    }
}

/// What the host gave the lab's NAT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nat {
    /// The iptables rules added (each without its `-A`/`-D`), to delete on `down`.
    pub rules: Vec<Vec<String>>,
    /// Why there is none, when there is none.
    pub missing: Option<String>,
}

/// One node as `up` left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    #[serde(flatten)]
    pub node: Node,
    pub overlay: PathBuf,
    pub seed: PathBuf,
    pub console: PathBuf,
    /// QEMU's pid (`None`: not started, or stopped).
    pub pid: Option<u32>,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub plan: Plan,
    pub token: String,
    /// The console password given to `up`, if any.
    pub password: Option<String>,
    /// The seeds' instance suffix (a new `up` is a new instance).
    pub instance: String,
    /// `kvm` or `tcg`, and why.
    pub accel: Option<String>,
    pub nat: Option<Nat>,
    pub nodes: Vec<NodeState>,
}

impl LabState {
    pub fn new(plan: Plan, layout: &Layout, token: String, instance: String) -> LabState {
        let nodes = plan
            .nodes
            .iter()
            .map(|n| NodeState {
                node: n.clone(),
                overlay: layout.disk(&n.name),
                seed: layout.seed_img(&n.name),
                console: layout.console(&n.name),
                pid: None,
            })
            .collect();
        LabState {
            plan,
            token,
            password: None,
            instance,
            accel: None,
            nat: None,
            nodes,
        }
    }

    /// Writes `state.json` atomically (a crash leaves the old or the new one).
    pub fn save(&self, layout: &Layout) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("the state serializes");
        let tmp = layout.dir.join(".state.json.tmp");
        std::fs::write(&tmp, text + "\n")
            .map_err(Error::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, layout.state())
            .map_err(Error::io(format!("writing {}", layout.state().display())))
    }

    /// Reads `state.json`; `Ok(None)` when there is none.
    pub fn load(layout: &Layout) -> Result<Option<LabState>> {
        let path = layout.state();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::State {
                path: path.display().to_string(),
                detail: e.to_string(),
            })
    }

    pub fn node(&self, name: &str) -> Result<&NodeState> {
        let n = self.plan.find(name)?;
        Ok(self
            .nodes
            .iter()
            .find(|s| s.node.name == n.name)
            .expect("every planned node has a state"))
    }
}

/// The labs under `root` (directories with or without a state: a half-made one counts).
pub fn list(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, test_spec};

    fn state(layout: &Layout) -> LabState {
        let p = plan(&test_spec("s", 1, 2)).unwrap();
        LabState::new(p, layout, "tok".into(), "1".into())
    }

    #[test]
    fn the_root_is_the_environments_else_var_lib() {
        assert_eq!(labs_root(None), PathBuf::from("/var/lib/rkos-lab"));
        assert_eq!(labs_root(Some("")), PathBuf::from("/var/lib/rkos-lab"));
        assert_eq!(labs_root(Some("/tmp/x")), PathBuf::from("/tmp/x"));
    }

    #[test]
    fn each_node_has_its_own_files_under_the_labs_directory() {
        let l = Layout::new(Path::new("/r"), "s");
        let s = state(&l);
        assert_eq!(
            s.nodes[1].overlay,
            PathBuf::from("/r/s/nodes/s-agent-1/disk.qcow2")
        );
        assert_eq!(
            s.nodes[1].seed,
            PathBuf::from("/r/s/nodes/s-agent-1/seed/seed.img")
        );
        assert_eq!(
            s.nodes[2].console,
            PathBuf::from("/r/s/nodes/s-agent-2/console.log")
        );
        assert_eq!(l.state(), PathBuf::from("/r/s/state.json"));
        for n in &s.nodes {
            assert!(n.overlay.starts_with(&l.dir));
        }
    }

    #[test]
    fn the_state_round_trips_through_its_file() {
        let t = tempfile::tempdir().unwrap();
        let l = Layout::new(t.path(), "s");
        assert_eq!(LabState::load(&l).unwrap(), None);
        std::fs::create_dir_all(&l.dir).unwrap();
        let mut s = state(&l);
        s.nodes[0].pid = Some(42);
        s.nat = Some(Nat {
            rules: vec![vec!["POSTROUTING".into()]],
            missing: None,
        });
        s.save(&l).unwrap();
        let back = LabState::load(&l).unwrap().unwrap();
        assert_eq!(back, s);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(l.state()).unwrap()).unwrap();
        // the node's fields sit beside its files (flattened), as the docs show
        assert_eq!(json["nodes"][0]["name"], "s-server-1");
        assert_eq!(json["nodes"][0]["pid"], 42);
        assert_eq!(list(t.path()), ["s"]);
        std::fs::write(l.state(), "{").unwrap();
        assert!(LabState::load(&l)
            .unwrap_err()
            .to_string()
            .contains("state.json"));
    }

    #[test]
    fn nodes_are_found_by_name() {
        let l = Layout::new(Path::new("/r"), "s");
        let s = state(&l);
        assert_eq!(
            s.node("s-agent-2").unwrap().node.address,
            s.plan.nodes[2].address
        );
        assert!(s.node("nope").is_err());
    }
}
