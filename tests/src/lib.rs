//! End-to-end tests of rkos: a QEMU driver that reads and types on the serial console
//! ([`qemu`]), the NoCloud seed volumes the boot tests attach ([`seed`]), a loopback HTTP
//! server for upgrade bundles ([`httpd`]), the host side they share ([`host`]), an installed
//! node for the upgrade tests ([`node`]), and the boot tests themselves (`tests/*.rs`, built
//! with the `qemu` feature).

pub mod console;
pub mod host;
pub mod httpd;
pub mod node;
pub mod qemu;
pub mod seed;
