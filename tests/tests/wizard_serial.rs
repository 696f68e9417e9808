//! The k3OS user's path on the serial console (80x24, its size unknown to the tty), as a
//! person takes it: boot the ISO, `sudo os-config`, a server with a typed token, then an
//! agent on a second VM with `https://ADDR:6443` and the token the server printed, a pasted
//! SSH key longer than the screen, one wrong answer per kind of question. Assertions are on
//! the screen of an 80x24 terminal emulator fed with the console's bytes, which also answers
//! the size query as a person's terminal does; the screens docs/install.md quotes are
//! checked against it; the agent powers off without a `[FAILED]` line. Built with the `qemu`
//! feature; RKOS_ISO names the stand-in ISO.
//!
//! Boots, for CI's clock: two live boots, one after the other (about 2 minutes each on two
//! cores without KVM). The installed node's clean shutdown is tests/tests/install_iso.rs's.

use anyhow::{ensure, Context, Result};
use rkos_tests::host::iso;
use rkos_tests::qemu::{Arch, Boot, Vm, VmConfig};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(600);
const STEP: Duration = Duration::from_secs(120);
const CMD: Duration = Duration::from_secs(90);
const DOWN: &str = "\x1b[B";
const ENTER: &str = "\r";
const CTRL_U: &str = "\x15";
const PASSWORD: &str = "rkos-test-pw1";
/// The secret typed on the server; k3s's node-token wraps it as K10<CA hash>::server:SECRET.
const SECRET: &str = "my-cluster-secret-1";
/// The address QEMU's user network gives a VM.
const ADDR: &str = "10.0.2.15";
/// A real ed25519 key (private half thrown away), 105 characters with its comment.
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2pU7tVqB/RceORxdEERGk8KvkidMAmix4j5cHVIHby operator@workstation-1";

/// A live VM logged in on its serial console, its terminal answering size queries.
fn live(name: &str) -> Result<Vm> {
    let mut vm = Vm::start(&VmConfig {
        name: name.into(),
        arch: Arch::Amd64,
        boot: Boot::Iso(iso()?),
        disks: vec![],
        memory_mb: 2048,
        extras: Default::default(),
    })?;
    vm.live_shell(BOOT, STEP)?;
    vm.answer_terminal_queries(true);
    Ok(vm)
}

/// The rows of `screen` that hold `what`.
fn rows_with<'a>(screen: &'a str, what: &str) -> Vec<&'a str> {
    screen.lines().filter(|l| l.contains(what)).collect()
}

/// The screen block docs/install.md quotes under `<!-- screen: NAME -->`: each of its rows
/// must be a row of `screen`, in order.
fn matches_docs(name: &str, screen: &str) -> Result<()> {
    let docs = include_str!("../../docs/install.md");
    let marker = format!("<!-- screen: {name} -->");
    let after = docs
        .split_once(&marker)
        .with_context(|| format!("docs/install.md has no {marker}"))?
        .1;
    // the block may be indented (inside a list item): as deep as its fence
    let (before, block) = after
        .split_once("```text\n")
        .with_context(|| format!("{marker} is not followed by a text block"))?;
    let indent = before.lines().last().unwrap_or("").len();
    let block = block
        .split_once("```")
        .with_context(|| format!("{marker}: the text block does not end"))?
        .0
        .trim_end();
    let rows: Vec<&str> = screen.lines().collect();
    let mut at = 0;
    for want in block.lines().map(|l| l.get(indent..).unwrap_or("")) {
        let found = rows[at..]
            .iter()
            .position(|r| r.trim_end() == want.trim_end())
            .with_context(|| {
                format!("docs/install.md ({name}) quotes {want:?}, the screen shows:\n{screen}")
            })?;
        at += found + 1;
    }
    Ok(())
}

/// Waits for the next question; the last one left only its record line.
fn accepted(vm: &mut Vm, next: &str, record: &str, refused: &str) -> Result<String> {
    let s = vm.expect_screen(next, STEP)?;
    ensure!(
        rows_with(&s, record).len() == 1,
        "no record line {record:?}:\n{s}"
    );
    ensure!(!s.contains('✘'), "an error outlived its answer:\n{s}");
    ensure!(
        !s.contains(refused),
        "the refused {refused:?} is still shown:\n{s}"
    );
    Ok(s)
}

/// A refused answer: `error` shows, the line is cleared and `fix` typed, then
/// [`accepted`].
fn corrected(
    vm: &mut Vm,
    error: &str,
    fix: &str,
    (next, record, refused): (&str, &str, &str),
) -> Result<String> {
    vm.expect_screen(error, STEP)?;
    vm.send(&format!("{CTRL_U}{fix}\r"))?;
    accepted(vm, next, record, refused)
}

/// The two passwords, the first pair differing.
fn passwords(vm: &mut Vm) -> Result<()> {
    vm.answer("Password for the user rkos", &format!("{PASSWORD}\r"), STEP)?;
    vm.answer("The password again", "not-the-same\r", STEP)?;
    let s = vm.expect_screen("The passwords differ", STEP)?;
    ensure!(!s.contains(PASSWORD), "a password is shown:\n{s}");
    vm.send(&format!("{PASSWORD}\r"))?;
    vm.answer("The password again", &format!("{PASSWORD}\r"), STEP)?;
    accepted(
        vm,
        "Configure WiFi?",
        "✔ The password again · ********",
        "differ",
    )?;
    vm.send("n")
}

/// The server: a typed token (masked), the join hint; then the token k3s wrote, the login
/// banner, kubectl as rkos, and os-config again with the current values as defaults.
fn server(started: Instant) -> Result<String> {
    let mut vm = live("wizard-server")?;
    let banner = vm.transcript();
    ensure!(
        banner.contains("Log in as rkos (k3OS users: rkos replaces rancher)."),
        "the login banner does not name the user:\n{banner}"
    );
    vm.send("sudo os-config\n")?;
    // The options are drawn after the question over the slow serial line: the screen is
    // checked once they are there (a busy host showed the question alone).
    vm.expect_screen("What do you want to do?", STEP)?;
    vm.expect_screen("❯ Install rkos to a disk", STEP)
        .context("the menu does not offer the install first")?;
    vm.answer("What do you want to do?", &format!("{DOWN}{ENTER}"), STEP)?;
    vm.expect_screen("How do you want to configure the node?", STEP)?;
    // its options too come after the question (a fresh CI machine read the screen between)
    let s = vm.expect_screen(
        "  Use a config file (cloud-init style) from a path or URL",
        STEP,
    )?;
    matches_docs("ram-only", &s)?;
    vm.send(ENTER)?;
    // a list of names
    vm.answer(
        "GitHub users whose SSH keys may log in",
        "not a user!\r",
        STEP,
    )?;
    corrected(
        &mut vm,
        "is not a GitHub user name",
        "",
        (
            "SSH public key to authorize",
            "✔ GitHub users whose SSH keys may log in · (none)",
            "user!",
        ),
    )?;
    vm.send(ENTER)?;
    passwords(&mut vm)?;
    vm.answer("Network", ENTER, STEP)?;
    // QEMU gave both VMs the same MAC, and with it the same default name: said
    let s = vm.expect_screen("Host name", STEP)?;
    ensure!(
        s.contains("52:54:00:12:34:56 is QEMU's default MAC address")
            && s.contains("Suggestion: rkos-"),
        "{s}"
    );
    vm.send("Server_1\r")?;
    corrected(
        &mut vm,
        "✘",
        "server-1",
        ("Role of this node", "✔ Host name · server-1", "Server_1"),
    )?;
    vm.send(ENTER)?;
    vm.answer("Which server?", ENTER, STEP)?;
    // the token: * as typed, Tab shows it and hides it again, a space is refused
    vm.answer("Cluster token", "my secret", STEP)?;
    let s = vm.expect_screen("› *********", STEP)?;
    ensure!(
        !s.contains("my secret"),
        "the token is shown as typed:\n{s}"
    );
    vm.send("\t")?;
    vm.expect_screen("› my secret", STEP)?;
    vm.send("\t\r")?;
    let s = vm.expect_screen("a token cannot contain spaces", STEP)?;
    ensure!(!s.contains("my secret"), "{s}");
    vm.send(&format!("{CTRL_U}{SECRET}\r"))?;
    let s = accepted(
        &mut vm,
        "Apply this configuration?",
        "✔ Cluster token · ********",
        SECRET,
    )?;
    ensure!(s.contains("the next reboot (RAM only)"), "{s}");
    // the menu's choices come after its question, over the slow serial line
    vm.expect_screen("Install rkos to a disk instead", STEP)?;
    vm.send(ENTER)?;
    let s = vm.expect_screen("(prints it, on this node)", STEP)?;
    ensure!(s.contains("Applied: k3s restarted as a server."), "{s}");
    matches_docs("server-joined", &s)?;
    ensure!(!s.contains(" INFO "), "log lines shown to the user:\n{s}");
    eprintln!("server configured: {:?}", started.elapsed());

    back_at_the_prompt(&mut vm, "server")?;
    vm.prepare_shell()?;
    let token = vm.run_ok("sudo rkos token 2>/dev/null", CMD)?;
    let token = token.trim().to_string();
    ensure!(
        token.starts_with("K10") && token.ends_with(&format!("::server:{SECRET}")),
        "sudo rkos token: {token}"
    );
    let issue = vm.run_ok("/sbin/agetty --show-issue", CMD)?;
    ensure!(
        issue.contains(&format!("server URL  https://{ADDR}:6443"))
            && issue.contains("sudo rkos token"),
        "the login banner has no join hint:\n{issue}"
    );
    // the seed's next step: curl and kubectl as rkos, no sudo
    vm.run_ok("curl --version", CMD)?;
    let kc = vm.run_ok("stat -c '%a %G' \"$KUBECONFIG\"", CMD)?;
    ensure!(kc.trim() == "640 rkos", "kubeconfig: {kc}");
    ensure!(vm.run_ok("kubectl get nodes", CMD)?.contains("stand-in"));
    let (st, out) = vm.run("rkos config show", CMD)?;
    ensure!(
        st != 0 && out.contains("only root can read it"),
        "rkos config show without root: {st} {out}"
    );

    // os-config again: the current values are the defaults
    vm.send("stty echo onlcr; export TERM=vt220; sudo os-config --configure\n")?;
    vm.answer("How do you want to configure the node?", ENTER, STEP)?;
    vm.answer("GitHub users whose SSH keys may log in", ENTER, STEP)?;
    vm.answer("SSH public key to authorize", ENTER, STEP)?;
    vm.answer(
        "Password for the user rkos (Enter keeps the current one)",
        ENTER,
        STEP,
    )?;
    vm.answer("Configure WiFi?", "n", STEP)?;
    vm.answer("Network", ENTER, STEP)?;
    vm.answer("Host name (server-1)", ENTER, STEP)?;
    let s = vm.expect_screen("Role of this node", STEP)?;
    ensure!(s.contains("❯ server"), "{s}");
    vm.send(ENTER)?;
    vm.answer("Which server?", ENTER, STEP)?;
    vm.answer("Cluster token (Enter keeps the current one)", ENTER, STEP)?;
    let s = vm.expect_screen("Apply this configuration?", STEP)?;
    for (k, v) in [
        ("hostname", "server-1"),
        ("password for rkos", "set (as a hash)"),
    ] {
        ensure!(
            s.contains(&format!("  {k:<26} {v}")),
            "summary without {k}: {v}\n{s}"
        );
    }
    vm.send(&format!("{DOWN}{DOWN}{ENTER}"))?;
    vm.expect_screen("Cancelled: nothing was written.", STEP)?;
    eprintln!("server done: {:?}", started.elapsed());
    Ok(token)
}

/// Waits for the shell's prompt after os-config applied a `role` config: sudo relays the
/// keyboard to the wizard through a pty of its own until the wizard exits, and what is typed
/// before then is lost with that pty.
fn back_at_the_prompt(vm: &mut Vm, role: &str) -> Result<()> {
    vm.expect(
        &format!(r"(?s)Applied: k3s restarted as an? {role}\..*rkos@\S+:~\$ "),
        STEP,
    )
    .map(|_| ())
}

/// The agent: a pasted key longer than the screen, the server's URL and token.
fn agent(token: &str, started: Instant) -> Result<()> {
    let mut vm = live("wizard-agent")?;
    // Under QEMU's user networking both VMs are 10.0.2.15, and this live node's own k3s (the
    // stand-in, as real k3s, serves 6443 while the node is unconfigured) would answer the
    // server's URL: with 6443 refused here, this VM plays a machine from which the server
    // is unreachable.
    vm.send(
        "sudo iptables -I INPUT -p tcp --dport 6443 -j REJECT --reject-with tcp-reset; \
         echo fw-$((6*7))\n",
    )?;
    vm.expect_screen("fw-42", STEP)?;
    vm.send("sudo os-config\n")?;
    vm.answer("What do you want to do?", &format!("{DOWN}{ENTER}"), STEP)?;
    vm.answer("How do you want to configure the node?", ENTER, STEP)?;
    vm.answer("GitHub users whose SSH keys may log in", ENTER, STEP)?;
    // a key pasted whole, wrong: the error above it, the key kept, wrapped at 80
    let broken = KEY.replace("AAAAC3Nz", "AAAAB3Nz");
    vm.answer("SSH public key to authorize", &format!("{broken}\r"), STEP)?;
    vm.expect_screen("does not hold a ssh-ed25519 key", STEP)?;
    let line = format!("? SSH public key to authorize (paste one; empty: none) › {broken}");
    let cut = line.char_indices().nth(80).map_or(line.len(), |(i, _)| i);
    // the question is redrawn below the error over the slow serial line: wait for all of it
    vm.expect_screen(&format!("{}\n{}", &line[..cut], &line[cut..]), STEP)
        .context("the pasted key is not shown whole")?;
    vm.send(CTRL_U)?;
    vm.send(&format!("{KEY}\r"))?;
    let s = accepted(
        &mut vm,
        "Password for the user rkos",
        "✔ SSH public key to authorize · ssh-ed25519",
        "AAAAB3Nz",
    )?;
    matches_docs("pasted-key", &s)?;
    passwords(&mut vm)?;
    vm.answer("Network", ENTER, STEP)?;
    vm.answer("Host name", "agent-1\r", STEP)?;
    vm.answer("Role of this node", &format!("{DOWN}{ENTER}"), STEP)?;
    // a URL without its scheme, in plain words
    vm.answer("Server URL", &format!("{ADDR}:6443\r"), STEP)?;
    let s = vm.expect_screen("lacks https://", STEP)?;
    ensure!(!s.contains("relative URL"), "{s}");
    vm.send(&format!("{CTRL_U}https://{ADDR}:6443\r"))?;
    // both VMs are alone on their own user network: the server is not reachable from here
    vm.expect_screen("does not answer", STEP)?;
    vm.answer("What now?", &format!("{DOWN}{ENTER}"), STEP)?;
    // the token k3s wrote on the server, typed (masked, longer than a row); first a wrong one
    vm.answer("Cluster token", "K10xyz::server:x\r", STEP)?;
    let s = corrected(
        &mut vm,
        "a secure token has the form",
        token,
        (
            "Apply this configuration?",
            "✔ Cluster token · ********",
            "must be hex",
        ),
    )?;
    ensure!(!s.contains(SECRET), "the token is shown:\n{s}");
    vm.send(ENTER)?;
    let s = vm.expect_screen(
        &format!("This node is a k3s agent of https://{ADDR}:6443."),
        STEP,
    )?;
    ensure!(s.contains("Applied: k3s restarted as an agent."), "{s}");
    back_at_the_prompt(&mut vm, "agent")?;
    vm.prepare_shell()?;
    let argv = vm.run_ok("sudo cat /run/k3s-standin/argv", CMD)?;
    ensure!(
        argv.lines().next() == Some("agent"),
        "k3s started as {argv}"
    );
    let k3s = vm.run_ok("sudo cat /run/k3s-standin/config.yaml", CMD)?;
    ensure!(
        k3s.contains(&format!("server: https://{ADDR}:6443")) && k3s.contains(token),
        "k3s config:\n{k3s}"
    );
    let keys = vm.run_ok("cat /home/rkos/.ssh/authorized_keys", CMD)?;
    ensure!(keys.contains(KEY), "authorized_keys:\n{keys}");
    // the live system's mounts the root is built on are left to systemd-shutdown
    vm.send("sudo systemctl poweroff\n")?;
    vm.clean_shutdown("the live agent", "reboot: Power down", BOOT)?;
    eprintln!("agent done: {:?}", started.elapsed());
    Ok(())
}

#[test]
fn server_then_agent_on_the_serial_console() -> Result<()> {
    let started = Instant::now();
    let token = server(started)?;
    agent(&token, started)
}
