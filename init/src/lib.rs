//! rkos-init: the stage-1 init (PID 1 in the initramfs). The boot is a list of named stages
//! ([`sequence`]), one function each ([`stages`]). The pure parts (command line, stage order,
//! mount plan, module resolution, superblock probing, manifest check) are unit-tested here;
//! the system side is exercised by `init/tests/qemu-smoke.sh` and the image's boot tests.

pub mod cmdline;
pub mod detect;
pub mod devices;
pub mod early;
pub mod early_work;
pub mod kmod;
pub mod log;
pub mod manifest;
pub mod modules;
pub mod plan;
pub mod probe;
pub mod rescue;
pub mod sequence;
pub mod stages;
pub mod system;
