//! rkos under QEMU on a host. One place decides the accelerator ([`accel`]) for every QEMU
//! user: `make run`, the QEMU tests, the boot report, and what later runs VMs on a host; one
//! place names what goes with each guest architecture ([`arch`]).

pub mod accel;
pub mod arch;
pub mod iso;

pub use accel::{verdict, verdict_for_arch, Accel, Verdict};
pub use arch::Arch;
