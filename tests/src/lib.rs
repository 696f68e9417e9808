//! End-to-end tests of rkos: a QEMU driver that reads and types on the serial console
//! ([`qemu`]), what that console shows as a terminal would ([`screen`]), the cloud-init seed
//! volumes the boot tests attach (NoCloud, ConfigDrive: [`seed`]), a loopback HTTP server for
//! upgrade bundles ([`httpd`]), the host side they share ([`host`]), an installed node for the
//! upgrade tests ([`node`]), the checks of a seeded live boot both architectures run
//! ([`live`]), and the boot tests themselves (`tests/*.rs`, built with the `qemu` feature).

pub mod console;
pub mod host;
pub mod httpd;
pub mod live;
pub mod node;
pub mod qemu;
pub mod screen;
pub mod seed;
