//! The host side the QEMU tests share: the workspace, the ISO under test, the host's `rkos`,
//! and running host commands with their output in the error.

use anyhow::{bail, ensure, Context, Result};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The ISO under test, named by `RKOS_ISO` (`make boot-test` sets it to the stand-in ISO).
pub fn iso() -> Result<PathBuf> {
    iso_named("RKOS_ISO", "make boot-test")
}

/// The arm64 ISO under test, named by `RKOS_ISO_ARM64` (`make test-arm64` sets it to the
/// arm64 stand-in ISO).
pub fn iso_arm64() -> Result<PathBuf> {
    iso_named("RKOS_ISO_ARM64", "make test-arm64")
}

/// The Raspberry Pi image under test (`RKOS_RPI_IMAGE`, raw).
pub fn rpi_image() -> Result<PathBuf> {
    file_named("RKOS_RPI_IMAGE", "Raspberry Pi image", "make test-arm64")
}

fn iso_named(var: &str, target: &str) -> Result<PathBuf> {
    file_named(var, "ISO", target)
}

fn file_named(var: &str, what: &str, target: &str) -> Result<PathBuf> {
    let f = std::env::var_os(var)
        .map(PathBuf::from)
        .with_context(|| format!("{var} names the {what} under test ({target} sets it)"))?;
    ensure!(f.is_file(), "{var}={} is not a file", f.display());
    Ok(f)
}

/// Fails unless the test runs as root; `why` names what needs it.
pub fn ensure_root(why: &str) -> Result<()> {
    ensure!(
        sh("id", &["-u"])?.trim() == "0",
        "this test needs root ({why})"
    );
    Ok(())
}

/// The gold disk image under test (qcow2), named by `RKOS_DISK_IMAGE` (the stand-in disk
/// image, which `make boot-test`, `make test-lab` and `make test-baremetal` build and set).
pub fn disk_image() -> Result<PathBuf> {
    let img = std::env::var_os("RKOS_DISK_IMAGE")
        .map(PathBuf::from)
        .context("RKOS_DISK_IMAGE names the qcow2 under test (make boot-test sets it)")?;
    ensure!(
        img.is_file(),
        "RKOS_DISK_IMAGE={} is not a file",
        img.display()
    );
    Ok(img)
}

/// A mount a test made (`mount ARGS... AT`: options and the source, then the mount point),
/// unmounted when dropped, so a failing test leaves nothing mounted.
pub struct Mount(pub PathBuf);

impl Mount {
    pub fn new(args: &[&str], at: &Path) -> Result<Mount> {
        let at_text = at.to_string_lossy();
        let mut all = args.to_vec();
        all.push(&at_text);
        sh("mount", &all)?;
        Ok(Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Runs a host command; its stdout, or an error with the command line, status and output.
pub fn sh(cmd: impl AsRef<OsStr>, args: &[&str]) -> Result<String> {
    let cmd = cmd.as_ref();
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("starting {}", cmd.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}): {}{}",
            cmd.to_string_lossy(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The host's `rkos` (install, bundle create/keygen): `RKOS_BIN`, else built here (cargo has
/// released its lock by the time tests run).
pub fn rkos_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RKOS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "rkos-cli"])
        .current_dir(workspace())
        .status()?;
    ensure!(status.success(), "cargo build -p rkos-cli failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    Ok(target.join("debug/rkos"))
}

/// A TCP port on 127.0.0.1 free when asked (for QEMU's `hostfwd`): the OS picks one, the
/// socket is closed again.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A new Ed25519 key pair at `dir/NAME` (and `.pub`); returns the public key line.
pub fn ssh_keygen(dir: &Path, name: &str) -> Result<String> {
    Ok(rkos_lab::vm::ssh_keygen(&dir.join(name), name)?)
}

/// Runs `cmd` as `user` over SSH on `127.0.0.1:port` with the private key `key`, retrying
/// for `patience` while sshd is not up yet; returns its stdout. Host keys are neither
/// checked nor remembered: each test VM makes its own.
pub fn ssh(
    key: &Path,
    port: u16,
    user: &str,
    cmd: &str,
    patience: std::time::Duration,
) -> Result<String> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let port_arg = port.to_string();
        let target = format!("{user}@127.0.0.1");
        let res = sh(
            "ssh",
            &[
                "-i",
                &key.to_string_lossy(),
                "-p",
                &port_arg,
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=20",
                "-o",
                "LogLevel=ERROR",
                &target,
                cmd,
            ],
        );
        match res {
            Ok(out) => return Ok(out),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(e.context(format!("ssh to {target} port {port}")))
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_secs(3)),
        }
    }
}

/// Checks `sgdisk -p` output for the rkos layout (`rkos_contract::partition`): BIOS boot,
/// ESP, `RKOS_STATE`, `RKOS_DATA`.
pub fn ensure_rkos_partitions(table: &str) -> Result<()> {
    for p in rkos_contract::partition::ALL {
        let (n, code, name) = (p.number, p.type_code, p.name);
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&n.to_string()))
            .with_context(|| format!("no partition {n}:\n{table}"))?;
        ensure!(
            line.contains(code) && line.ends_with(name),
            "partition {n}: {line}"
        );
    }
    Ok(())
}

/// `out`: a qcow2 copy-on-write overlay of `base` (whose format is `base_format`, `raw` or
/// `qcow2`), replacing any old one; `size` grows the virtual disk (as an operator's bigger
/// disk), `None` keeps the base's.
pub fn qcow2_overlay(base: &Path, base_format: &str, out: &Path, size: Option<&str>) -> Result<()> {
    let _ = std::fs::remove_file(out);
    let (base, out) = (base.to_string_lossy(), out.to_string_lossy());
    let mut args = vec![
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        base_format,
        "-b",
        &base,
        &out,
    ];
    args.extend(size);
    sh("qemu-img", &args).map(|_| ())
}

/// The number and first sector of the GPT partition named `name` on the raw disk `disk`
/// (`sgdisk -p`, `-i`): where a test reaches into an image's file systems with mtools.
pub fn gpt_partition(disk: &Path, name: &str) -> Result<(u32, u64)> {
    let disk = disk.to_string_lossy();
    let table = sh("sgdisk", &["-p", &disk])?;
    let n: u32 = table
        .lines()
        .find(|l| l.split_whitespace().last() == Some(name))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no GPT partition named {name}:\n{table}"))?;
    let info = sh("sgdisk", &["-i", &n.to_string(), &disk])?;
    let first = info
        .lines()
        .find_map(|l| l.strip_prefix("First sector:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no first sector:\n{info}"))?;
    Ok((n, first))
}

/// mtools' name (`-i`) for the FAT file system of the GPT partition `name` on the raw disk
/// `disk`: `DISK@@BYTE_OFFSET`.
pub fn mtools_image(disk: &Path, name: &str) -> Result<String> {
    let (_, first) = gpt_partition(disk, name)?;
    Ok(format!("{}@@{}", disk.to_string_lossy(), first * 512))
}
