//! A live boot with a NoCloud seed, checked from the serial console: what the amd64 and arm64
//! boot tests (`tests/boot.rs`, `tests/boot_arm64.rs`) both assert, written once. The limits
//! differ (an arm64 guest on an x86_64 host is emulated instruction by instruction), the
//! checks do not.

use crate::qemu::Vm;
use anyhow::{ensure, Context, Result};
use std::time::{Duration, Instant};

pub const TEST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEywGH0sSOSjJxjadJX+4amLdKAGqMr88tQbgpDAobUN rkos-boot-test";
/// A secure-form join token (K10<hex>::<user>:<password>) made up for the test.
pub const TOKEN: &str =
    "K10a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90::server:boottestsecret";
/// The host name the seed sets.
pub const HOSTNAME: &str = "rkos-boot-test";

/// The seed's user-data: host name, SSH key, and an agent's k3s settings.
pub fn seed_user_data() -> String {
    format!(
        "#cloud-config\nhostname: {HOSTNAME}\nssh_authorized_keys:\n  - {TEST_KEY}\n\
         rkos:\n  server_url: https://10.0.2.2:6443\n  token: {TOKEN}\n  labels:\n    \
         rkos.dev/test: boot\n    tier: edge\n  taints:\n    - dedicated=boot-test:NoSchedule\n"
    )
}

/// The seed's meta-data.
pub const SEED_META_DATA: &str = "instance-id: rkos-boot-test\n";

/// How long a boot, one console command, and k3s's start after the login may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub boot: Duration,
    pub cmd: Duration,
    pub k3s_start: Duration,
}

impl Limits {
    /// Waits for the live console login and prepares the shell.
    pub fn login(&self, vm: &mut Vm) -> Result<()> {
        // live mode logs rkos in on the console; agetty still prints the login prompt line
        vm.expect(r"login:", self.boot).context("no login prompt")?;
        vm.expect(r"rkos@[^ ]*[:~]|\$ ", self.boot)
            .context("no shell after the login prompt")?;
        vm.prepare_shell()
    }

    /// The type of the filesystem holding `path`.
    pub fn fstype(&self, vm: &mut Vm, path: &str) -> Result<String> {
        Ok(vm
            .run_ok(
                &format!("findmnt -n -o FSTYPE --target {path} | cat"),
                self.cmd,
            )?
            .trim()
            .to_string())
    }

    /// A logged-in live node booted with [`seed_user_data`] is an immutable k3s agent: `/` an
    /// overlay on the squashfs, kubelet's state on tmpfs, the seed's host name and key, the
    /// k3s config rendered from the seed (token readable by root only), the stand-in k3s
    /// running as an agent with it, the upgrade agent's image ready for k3s, `/usr`
    /// read-only.
    pub fn check_immutable_agent(&self, vm: &mut Vm) -> Result<()> {
        let cmd = self.cmd;
        // / is an overlay whose lower layer is the squashfs image
        ensure!(self.fstype(vm, "/")? == "overlay", "/ is not overlayfs");
        let opts = vm.run_ok("findmnt -n -o OPTIONS / | cat", cmd)?;
        let lower = opts
            .split(',')
            .find_map(|o| o.strip_prefix("lowerdir="))
            .context("no lowerdir in the options of /")?
            .to_string();
        ensure!(
            self.fstype(vm, &lower)? == "squashfs",
            "overlay lower {lower} is not the squashfs"
        );
        ensure!(
            self.fstype(vm, "/var/lib/kubelet")? == "tmpfs",
            "/var/lib/kubelet is not tmpfs"
        );

        ensure!(
            vm.run_ok("hostname", cmd)?.trim() == HOSTNAME,
            "hostname not applied"
        );
        let keys = vm.run_ok("cat ~rkos/.ssh/authorized_keys", cmd)?;
        ensure!(keys.contains(TEST_KEY), "ssh key not installed: {keys}");

        let k3s_cfg = vm.run_ok("sudo cat /etc/rancher/k3s/config.yaml", cmd)?;
        for want in [
            "rkos.dev/test=boot",
            "tier=edge",
            "dedicated=boot-test:NoSchedule",
            "https://10.0.2.2:6443",
        ] {
            ensure!(
                k3s_cfg.contains(want),
                "k3s config lacks {want}:\n{k3s_cfg}"
            );
        }
        // every file that holds the token is readable by root only
        let holders = vm.run_ok(
            &format!(
                "sudo grep -rlF '{TOKEN}' /etc/rancher /etc/default /etc/systemd 2>/dev/null || true"
            ),
            cmd,
        )?;
        let holders: Vec<&str> = holders.lines().filter(|l| !l.trim().is_empty()).collect();
        ensure!(!holders.is_empty(), "no rendered file holds the token");
        for f in holders {
            let mode = vm.run_ok(&format!("sudo stat -c %a {f}"), cmd)?;
            ensure!(
                mode.trim() == "600",
                "{f} holds the token with mode {}",
                mode.trim()
            );
        }

        // the stand-in k3s runs as an agent with that config
        let deadline = Instant::now() + self.k3s_start;
        loop {
            let (st, _) = vm.run("sudo test -f /run/k3s-standin/argv", cmd)?;
            if st == 0 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "k3s.service never started the stand-in"
            );
            vm.run("sleep 5", cmd)?;
        }
        ensure!(
            vm.run_ok("systemctl is-active k3s.service", cmd)?.trim() == "active",
            "k3s.service not active"
        );
        let argv = vm.run_ok("sudo cat /run/k3s-standin/argv", cmd)?;
        ensure!(
            argv.lines().next() == Some("agent"),
            "k3s not started as agent: {argv:?}"
        );
        vm.run_ok(
            "sudo cmp /run/k3s-standin/config.yaml /etc/rancher/k3s/config.yaml",
            cmd,
        )?;
        // Before k3s started, the upgrade agent's image was put where k3s imports images; the
        // cluster manifests go to servers only.
        vm.run_ok(
            "sudo cmp /usr/lib/rkos/k3s/images/rkos-agent.tar \
             /var/lib/rancher/k3s/agent/images/rkos-agent.tar",
            cmd,
        )
        .context("the agent image is not in k3s's import directory")?;
        ensure!(
            vm.run("sudo test -e /var/lib/rancher/k3s/server/manifests", cmd)?
                .0
                != 0,
            "an agent node got the server's auto-deploy manifests"
        );
        ensure!(
            vm.run_ok("kubectl version", cmd)?.contains("stand-in"),
            "kubectl is not the k3s multi-call"
        );
        ensure!(
            vm.run_ok("grep RKOS_K3S= /etc/os-release", cmd)?
                .contains("stand-in"),
            "os-release"
        );

        // the image is read-only where it matters
        let (st, out) = vm.run("sudo touch /usr/rkos-write-test", cmd)?;
        ensure!(st != 0, "writing to /usr succeeded: {out}");
        Ok(())
    }

    /// A change to /etc does not survive a reboot, and the seed's host name is applied again.
    pub fn check_reboot_forgets_etc(&self, vm: &mut Vm) -> Result<()> {
        let cmd = self.cmd;
        vm.run_ok(
            "sudo touch /etc/rkos-reboot-marker && test -f /etc/rkos-reboot-marker",
            cmd,
        )?;
        vm.send("sudo systemctl reboot\n")?;
        self.login(vm).context("after reboot")?;
        let (st, _) = vm.run("test -e /etc/rkos-reboot-marker", cmd)?;
        ensure!(st != 0, "/etc/rkos-reboot-marker survived the reboot");
        ensure!(
            vm.run_ok("hostname", cmd)?.trim() == HOSTNAME,
            "hostname after reboot"
        );
        Ok(())
    }
}
