//! `rkos lab`: a cluster of rkos VMs on one host, from the gold disk image.
//!
//! The pure part decides everything a lab is: its [`plan`] (node names, the private /24,
//! addresses, MACs, the interfaces' names), each node's NoCloud [`seed`] files, the
//! [`state`] directory's layout and its JSON record. The system part (root) carries that out:
//! [`net`] (a network namespace with a bridge, one tap per VM, a veth pair to the host and NAT
//! where the host has iptables) and [`vm`] (copy-on-write overlays, the seed volumes, QEMU
//! inside the namespace, the wait over SSH). Every command line the system part runs is built
//! by a pure function first, so the tests check them without root.

pub mod net;
pub mod ops;
pub mod plan;
pub mod seed;
pub mod state;
pub mod vm;

pub use plan::{LabSpec, Node, Plan, Role};
pub use state::{LabState, NodeState};

/// What can go wrong in a lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("reading the lab's state {path}: {detail}")]
    State { path: String, detail: String },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `argv` (a program and its arguments), its output captured; an error carries stderr.
pub fn run(argv: &[String]) -> Result<String> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| Error::Invalid("an empty command".into()))?;
    let out = std::process::Command::new(prog)
        .args(args)
        .output()
        .map_err(Error::io(format!("running {prog}")))?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: argv.join(" "),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `argv` as owned strings.
pub(crate) fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}
