//! The architectures rkos is built for, as QEMU runs them. One place for the names that go
//! with each: Debian's (file names, slot manifests), the kernel's (`uname -m`) and QEMU's.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// Debian's name, as in `rkos-<version>-<arch>.iso` and `make ARCH=...`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// What `uname -m` says on it.
    pub fn uname(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// The architecture of `uname -m` (or Rust's `std::env::consts::ARCH`, the same names).
    pub fn from_uname(machine: &str) -> Option<Arch> {
        [Arch::Amd64, Arch::Arm64]
            .into_iter()
            .find(|a| a.uname() == machine)
    }

    /// The architecture this program runs on, if rkos is built for it.
    pub fn host() -> Option<Arch> {
        Arch::from_uname(std::env::consts::ARCH)
    }

    /// The QEMU system emulator for guests of this architecture.
    pub fn qemu_system(self) -> &'static str {
        match self {
            Arch::Amd64 => "qemu-system-x86_64",
            Arch::Arm64 => "qemu-system-aarch64",
        }
    }

    /// The QEMU machine: a PC with PCIe, or the generic Arm board every arm64 distribution
    /// supports (UEFI firmware, PCIe, virtio, a PL011 serial port: ttyAMA0).
    pub fn machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "q35",
            Arch::Arm64 => "virt",
        }
    }

    /// The `-cpu` model under software emulation. For arm64, `max` with QEMU's own pointer
    /// authentication algorithm: the architected one (QARMA) costs a large share of an
    /// emulated boot and a guest cannot tell the difference.
    pub fn tcg_cpu(self) -> &'static str {
        match self {
            Arch::Amd64 => "max",
            Arch::Arm64 => "max,pauth-impdef=on",
        }
    }

    /// The UEFI firmware's code and the template of its variable store (Debian packages
    /// `ovmf` and `qemu-efi-aarch64`).
    pub fn uefi_firmware(self) -> (&'static str, &'static str) {
        match self {
            Arch::Amd64 => (
                "/usr/share/OVMF/OVMF_CODE_4M.fd",
                "/usr/share/OVMF/OVMF_VARS_4M.fd",
            ),
            Arch::Arm64 => (
                "/usr/share/AAVMF/AAVMF_CODE.fd",
                "/usr/share/AAVMF/AAVMF_VARS.fd",
            ),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Arch, String> {
        match s {
            "amd64" => Ok(Arch::Amd64),
            "arm64" => Ok(Arch::Arm64),
            other => Err(format!("unknown architecture {other} (amd64 or arm64)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in [Arch::Amd64, Arch::Arm64] {
            assert_eq!(a.as_str().parse::<Arch>(), Ok(a));
            assert_eq!(Arch::from_uname(a.uname()), Some(a));
        }
        assert!("x86_64".parse::<Arch>().is_err());
        assert_eq!(Arch::from_uname("riscv64"), None);
    }
}
