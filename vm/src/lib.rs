//! rkos under QEMU on a host. One place decides the accelerator ([`accel`]) for every QEMU
//! user: `make run`, the QEMU tests, the boot report, and what later runs VMs on a host.

pub mod accel;
pub mod iso;

pub use accel::{verdict, Accel, Verdict};
