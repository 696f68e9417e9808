//! `rkos lab`: a cluster of rkos VMs on this host (see docs/lab.md). The work is
//! `rkos_lab`'s; this is the command line, the progress on stderr and the tables on stdout.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rkos_lab::ops;
use rkos_lab::plan::DEFAULT_NAME;
use rkos_lab::state::{labs_root, LabState, Layout};

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Create the lab and boot its nodes (root).
    Up(UpArgs),
    /// Each node: role, address, state, how to reach it.
    Status(NameArg),
    /// Log in to a node as rkos with the lab's key (`-- CMD...` runs a command).
    Ssh(SshArgs),
    /// Print a node's serial console log (`--follow`: keep printing).
    Console(ConsoleArgs),
    /// Print the server's kubeconfig, its address rewritten to the server's.
    Kubeconfig(NameArg),
    /// Remove the lab: its VMs, its network namespace, its files (also after a failed up).
    Down(NameArg),
    /// Fresh disks from the image for every node, same seeds, and boot again.
    Reset(ResetArgs),
}

#[derive(Args, Debug)]
pub struct NameArg {
    /// The lab's name.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub lab: NameArg,
    /// 1, or 3 (embedded etcd).
    #[arg(long, default_value_t = 1)]
    pub servers: u32,
    /// Agents joining the first server.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// The gold disk image (qcow2) from `make disk-image` (default: $RKOS_DISK_IMAGE).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Virtual CPUs per node.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Memory per node, in MiB.
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    pub memory: u32,
    /// Each node's virtual disk size (it grows RKOS_DATA on the first boot).
    #[arg(long, default_value = "20G")]
    pub disk: String,
    /// Another public key for the login user rkos (the lab's own key is always there).
    #[arg(long, value_name = "FILE.pub")]
    pub ssh_key: Vec<PathBuf>,
    /// A console password for rkos on every node (SSH stays keys-only).
    #[arg(long)]
    pub password: Option<String>,
    /// Seconds to wait for the nodes (default: 300 under KVM, 1200 under emulation).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

#[derive(Args, Debug)]
pub struct SshArgs {
    #[command(flatten)]
    pub lab: NameArg,
    /// The node (`NAME-server-1`, `NAME-agent-2`, ...).
    pub node: String,
    /// A command to run instead of a login shell.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub lab: NameArg,
    pub node: String,
    /// Keep printing what the console writes (Ctrl-C ends).
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Args, Debug)]
pub struct ResetArgs {
    #[command(flatten)]
    pub lab: NameArg,
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

fn root() -> PathBuf {
    labs_root(std::env::var("RKOS_LAB_DIR").ok().as_deref())
}

fn load(name: &str) -> Result<(LabState, Layout)> {
    let layout = Layout::new(&root(), name);
    let state = LabState::load(&layout)?.with_context(|| {
        if layout.dir.exists() {
            format!("lab {name} was not made to the end: rkos lab down --name {name} cleans it")
        } else {
            format!(
                "no lab {name} under {} (rkos lab up --name {name})",
                root().display()
            )
        }
    })?;
    Ok((state, layout))
}

fn say(line: &str) {
    eprintln!("{line}");
}

pub fn run(cmd: LabCmd) -> Result<()> {
    ops::require_root()?;
    match cmd {
        LabCmd::Up(a) => up(a),
        LabCmd::Status(a) => status(&a.name),
        LabCmd::Ssh(a) => ssh(a),
        LabCmd::Console(a) => console(a),
        LabCmd::Kubeconfig(a) => {
            let (state, layout) = load(&a.name)?;
            print!("{}", ops::kubeconfig(&state, &layout)?);
            Ok(())
        }
        LabCmd::Down(a) => down(&a.name),
        LabCmd::Reset(a) => {
            let t0 = Instant::now();
            ops::reset(
                &root(),
                &a.lab.name,
                a.timeout.map(Duration::from_secs),
                &say,
            )?;
            eprintln!("lab {} reset in {} s", a.lab.name, t0.elapsed().as_secs());
            status(&a.lab.name)
        }
    }
}

fn up(a: UpArgs) -> Result<()> {
    let missing = ops::missing_tools();
    if !missing.is_empty() {
        bail!("rkos lab needs these host programs: {}", missing.join(", "));
    }
    let image = a
        .image
        .or_else(|| std::env::var_os("RKOS_DISK_IMAGE").map(PathBuf::from))
        .context("which disk image? --image FILE (make disk-image makes dist/rkos-*.qcow2)")?;
    let image = image
        .canonicalize()
        .with_context(|| format!("the disk image {}", image.display()))?;
    let mut keys = Vec::new();
    for k in &a.ssh_key {
        let text =
            std::fs::read_to_string(k).with_context(|| format!("reading {}", k.display()))?;
        keys.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    let spec = rkos_lab::LabSpec {
        name: a.lab.name.clone(),
        servers: a.servers,
        agents: a.agents,
        image,
        cpus: a.cpus,
        memory_mb: a.memory,
        disk_size: a.disk,
    };
    let opts = ops::UpOptions {
        password: a.password,
        ssh_keys: keys,
        timeout: a.timeout.map(Duration::from_secs),
    };
    let t0 = Instant::now();
    let r = ops::up(&root(), &spec, &opts, &say);
    let secs = t0.elapsed().as_secs();
    match r {
        Ok(_) => {
            eprintln!("lab {} up in {secs} s", spec.name);
            status(&spec.name)
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "lab {} did not come up ({secs} s); rkos lab down --name {} removes what was made",
                spec.name, spec.name
            )
        }),
    }
}

fn status(name: &str) -> Result<()> {
    let (state, layout) = load(name)?;
    let rows = ops::status(&state, &layout);
    println!(
        "{:<22} {:<7} {:<15} {:<32} REACH",
        "NODE", "ROLE", "ADDRESS", "STATE"
    );
    for r in rows {
        println!(
            "{:<22} {:<7} {:<15} {:<32} {}",
            r.node, r.role, r.address, r.state, r.reach
        );
    }
    if let Some(a) = &state.accel {
        println!("{a}");
    }
    match state.nat.as_ref().and_then(|n| n.missing.as_ref()) {
        Some(why) => println!("network {}: {why}", state.plan.cidr()),
        None => println!(
            "network {} (NAT to the outside through the host)",
            state.plan.cidr()
        ),
    }
    Ok(())
}

fn ssh(a: SshArgs) -> Result<()> {
    let (state, layout) = load(&a.lab.name)?;
    let node = state.node(&a.node)?;
    let tty = a.command.is_empty();
    let argv = rkos_lab::vm::ssh_command(
        &state.plan.namespace,
        &layout.key(),
        &node.node.address.to_string(),
        tty,
        &a.command,
    );
    let err = std::process::Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(err).context("running ssh")
}

fn console(a: ConsoleArgs) -> Result<()> {
    let (state, _) = load(&a.lab.name)?;
    let node = state.node(&a.node)?;
    let mut f = std::fs::File::open(&node.console)
        .with_context(|| format!("opening {}", node.console.display()))?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut f, &mut out)?;
    if !a.follow {
        return Ok(());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            out.flush()?;
            std::thread::sleep(Duration::from_millis(300));
            // a reset starts a new log: follow the new file from its start
            let len = std::fs::metadata(&node.console)
                .map(|m| m.len())
                .unwrap_or(0);
            if len < f.stream_position()? {
                f = std::fs::File::open(&node.console)?;
                f.seek(SeekFrom::Start(0))?;
            }
            continue;
        }
        out.write_all(&buf[..n])?;
    }
}

fn down(name: &str) -> Result<()> {
    let r = ops::down(&root(), name)?;
    for n in &r.stopped {
        eprintln!("stopped {n}");
    }
    if !r.failed.is_empty() {
        bail!("lab {name}: left behind:\n  {}", r.failed.join("\n  "));
    }
    eprintln!("lab {name}: down (no VM, no namespace, no files left)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        lab: LabCmd,
    }

    #[test]
    fn ssh_takes_a_command_after_the_double_dash() {
        let t = T::try_parse_from([
            "t",
            "ssh",
            "--name",
            "x",
            "x-agent-1",
            "--",
            "nc",
            "-z",
            "a",
        ])
        .unwrap();
        let LabCmd::Ssh(a) = t.lab else {
            panic!("not ssh")
        };
        assert_eq!((a.lab.name.as_str(), a.node.as_str()), ("x", "x-agent-1"));
        assert_eq!(a.command, ["nc", "-z", "a"]);
    }

    #[test]
    fn up_defaults_to_one_server_and_two_agents_named_lab() {
        let t = T::try_parse_from(["t", "up", "--image", "/i.qcow2"]).unwrap();
        let LabCmd::Up(a) = t.lab else {
            panic!("not up")
        };
        assert_eq!((a.lab.name.as_str(), a.servers, a.agents), ("lab", 1, 2));
        assert_eq!((a.cpus, a.memory), (2, 2048));
        assert!(T::try_parse_from(["t", "up", "--servers", "x"]).is_err());
    }
}
