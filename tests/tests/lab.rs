//! `rkos lab` end to end (issue 15): the real command brings up one server and two agents
//! from the stand-in disk image (`RKOS_DISK_IMAGE`, `make test-lab` builds it), each with its
//! name, address and seed; the agents' k3s config points at the server, an agent reaches the
//! server's 6443 (the stand-in k3s listens there); `status`, `console`, `kubeconfig` (none:
//! the stand-in), `reset` (fresh disks: a file written before is gone, the nodes come back)
//! and `down` (no QEMU, no namespace, no host interface, no files). Prints the wall time of
//! `up` and `reset`. Root (namespaces, taps); built with the `qemu` feature.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rkos_tests::host::{disk_image, rkos_bin};

const LAB: &str = "labtest";

/// `rkos lab ARGS` with the lab's directory under `dir`: (success, stdout, stderr).
fn lab(dir: &Path, args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(rkos_bin()?)
        .arg("lab")
        .args(args)
        .env("RKOS_LAB_DIR", dir)
        .output()
        .context("running rkos lab")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("$ rkos lab {}\n{stdout}{stderr}", args.join(" "));
    Ok((out.status.success(), stdout, stderr))
}

fn lab_ok(dir: &Path, args: &[&str]) -> Result<String> {
    let (ok, out, err) = lab(dir, args)?;
    ensure!(ok, "rkos lab {} failed:\n{out}{err}", args.join(" "));
    Ok(out)
}

fn on(dir: &Path, node: &str, cmd: &str) -> Result<String> {
    lab_ok(dir, &["ssh", "--name", LAB, node, "--", cmd])
}

/// The lab's nodes from its state file: (name, role, address).
fn nodes(dir: &Path) -> Result<Vec<(String, String, String)>> {
    let text = std::fs::read_to_string(dir.join(LAB).join("state.json"))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let nodes = v["nodes"].as_array().context("nodes in state.json")?;
    Ok(nodes
        .iter()
        .map(|n| {
            let f = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            (f("name"), f("role"), f("address"))
        })
        .collect())
}

fn all_active(status: &str, names: &[&str]) -> Result<()> {
    for n in names {
        let line = status
            .lines()
            .find(|l| l.starts_with(n))
            .with_context(|| format!("{n} in status:\n{status}"))?;
        ensure!(line.contains("k3s active"), "{n} is not up: {line}");
    }
    Ok(())
}

fn no_qemu_of(dir: &Path) -> Result<()> {
    let marker = dir.join(LAB).display().to_string();
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        ensure!(
            !(cmd.contains("qemu") && cmd.contains(&marker)),
            "a QEMU of the lab is still running: {cmd}"
        );
    }
    Ok(())
}

#[test]
fn lab_of_one_server_and_two_agents() -> Result<()> {
    let image = disk_image()?;
    let t = tempfile::tempdir()?;
    let dir = t.path();
    let image_arg = image.display().to_string();
    let _ = lab(dir, &["down", "--name", LAB]);

    let t0 = Instant::now();
    let up = lab(
        dir,
        &[
            "up", "--name", LAB, "--agents", "2", "--image", &image_arg, "--cpus", "1", "--memory",
            "1024",
        ],
    );
    let up_secs = t0.elapsed().as_secs();
    eprintln!("TIME rkos lab up (1 server + 2 agents): {up_secs} s");
    let result = (|| -> Result<()> {
        let (ok, out, err) = up?;
        ensure!(ok, "up failed:\n{out}{err}");
        let ns = nodes(dir)?;
        let names: Vec<&str> = ns.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(
            names,
            ["labtest-server-1", "labtest-agent-1", "labtest-agent-2"]
        );
        let mut addrs: Vec<&str> = ns.iter().map(|n| n.2.as_str()).collect();
        addrs.sort();
        addrs.dedup();
        ensure!(addrs.len() == 3, "addresses not distinct: {ns:?}");
        let server = ns[0].2.clone();

        let status = lab_ok(dir, &["status", "--name", LAB])?;
        all_active(&status, &names)?;
        for (name, _, addr) in &ns {
            ensure!(
                status.contains(addr.as_str()),
                "{addr} not in status:\n{status}"
            );
            let host = on(dir, name, "hostname")?;
            ensure!(host.trim() == name, "{name} calls itself {host}");
            let ip = on(dir, name, "ip -4 -o addr show")?;
            ensure!(ip.contains(&format!("{addr}/24")), "{name}: {ip}");
        }
        for (name, _, _) in &ns[1..] {
            let k3s = on(dir, name, "sudo cat /etc/rancher/k3s/config.yaml")?;
            ensure!(
                k3s.contains(&format!("https://{server}:6443")),
                "{name}'s k3s config does not name the server:\n{k3s}"
            );
            let reach = on(
                dir,
                name,
                &format!("timeout 10 bash -c 'exec 3<>/dev/tcp/{server}/6443; head -n1 <&3'"),
            )?;
            ensure!(
                reach.contains("k3s stand-in"),
                "{name} -> {server}:6443: {reach}"
            );
            // the stand-in agent retries every 5 s until it reaches the server: give it time
            let mut logged = String::new();
            for _ in 0..12 {
                logged = on(dir, name, "sudo cat /run/k3s-standin/server-reach || true")?;
                if !logged.trim().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
            ensure!(
                logged.trim() == format!("reached {server}:6443"),
                "{name}'s stand-in: {logged}"
            );
        }
        let console = lab_ok(dir, &["console", "--name", LAB, "labtest-agent-2"])?;
        ensure!(
            console.contains("labtest-agent-2"),
            "the console log names no node:\n{console}"
        );
        let (ok, out, err) = lab(dir, &["kubeconfig", "--name", LAB])?;
        ensure!(
            !ok && err.contains("no Kubernetes"),
            "kubeconfig with the stand-in: {out}{err}"
        );

        on(
            dir,
            "labtest-agent-1",
            "touch /home/rkos/before-reset && sync",
        )?;
        // /home and the machine id live on the node's RKOS_DATA: a fresh disk has neither
        let machine_id = on(dir, "labtest-agent-1", "cat /etc/machine-id")?;
        let t1 = Instant::now();
        lab_ok(dir, &["reset", "--name", LAB])?;
        eprintln!("TIME rkos lab reset: {} s", t1.elapsed().as_secs());
        all_active(&lab_ok(dir, &["status", "--name", LAB])?, &names)?;
        let gone = on(
            dir,
            "labtest-agent-1",
            "test -e /home/rkos/before-reset && echo kept || echo fresh",
        )?;
        ensure!(gone.trim() == "fresh", "reset kept the old disk: {gone}");
        let new_id = on(dir, "labtest-agent-1", "cat /etc/machine-id")?;
        ensure!(
            new_id != machine_id,
            "reset kept the machine id {machine_id}"
        );
        Ok(())
    })();

    let veth = std::fs::read_to_string(dir.join(LAB).join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["plan"]["veth_host"].as_str().map(str::to_string));
    let down = lab_ok(dir, &["down", "--name", LAB]);
    result?;
    down?;
    no_qemu_of(dir)?;
    ensure!(
        !Path::new("/run/netns/rkos-lab-labtest").exists(),
        "the namespace is left"
    );
    ensure!(!dir.join(LAB).exists(), "the lab's files are left");
    if let Some(v) = veth {
        let links = rkos_tests::host::sh("ip", &["-o", "link"])?;
        ensure!(
            !links.contains(&format!("{v}@")) && !links.contains(&format!("{v}:")),
            "{v} is left"
        );
    }
    let (ok, _, err) = lab(dir, &["status", "--name", LAB])?;
    ensure!(!ok && err.contains("no lab"), "status after down: {err}");
    eprintln!("TIME rkos lab up (1 server + 2 agents): {up_secs} s");
    Ok(())
}
