//! End-to-end tests of rkos: a QEMU driver that reads and types on the serial console
//! ([`qemu`]), the NoCloud seed volumes the boot tests attach ([`seed`]), and the boot tests
//! themselves (`tests/boot.rs`, built with the `qemu` feature).

pub mod console;
pub mod qemu;
pub mod seed;
