//! rkos-init: the stage-1 init (PID 1 in the initramfs). The pure parts (command line, mount
//! plan, module resolution, superblock probing, manifest check) are unit-tested here; the
//! system side is exercised by `init/tests/qemu-smoke.sh` and the image's boot tests.

pub mod cmdline;
pub mod detect;
pub mod devices;
pub mod early;
pub mod identity;
pub mod kmod;
pub mod log;
pub mod manifest;
pub mod modules;
pub mod plan;
pub mod probe;
pub mod rescue;
pub mod seeds;
pub mod system;
