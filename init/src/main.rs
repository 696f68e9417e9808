//! rkos-init: the stage-1 init the kernel runs as PID 1 from the initramfs.

fn main() {
    eprintln!("rkos-init must run as PID 1 from the rkos initramfs");
    std::process::exit(1);
}
