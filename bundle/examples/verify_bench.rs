//! Verify throughput: sha256 in memory, and `verify_file` (read + sha256, one pass) on a
//! file in the page cache. Target: at least 1 GB/s with the CPU's SHA instructions.
//!
//!   cargo run --release -p rkos-bundle --example verify_bench -- [SIZE_MIB] [DIR]

use std::io::Write;
use std::time::{Duration, Instant};

use rkos_slots::FileEntry;

/// CPU time of this thread: on a shared machine wall time measures the neighbours too.
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn report(what: &str, mib: usize, wall: Duration, cpu: Duration) {
    let bytes = (mib << 20) as f64;
    println!(
        "{what}: {mib} MiB: wall {:.3} s = {:.2} GB/s; cpu {:.3} s = {:.2} GB/s (target >= 1 GB/s)",
        wall.as_secs_f64(),
        bytes / wall.as_secs_f64() / 1e9,
        cpu.as_secs_f64(),
        bytes / cpu.as_secs_f64() / 1e9
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(1024, |a| a.parse().expect("SIZE_MIB"));
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);

    #[cfg(target_arch = "x86_64")]
    println!(
        "cpu: sha_ni={} avx2={}",
        std::arch::is_x86_feature_detected!("sha"),
        std::arch::is_x86_feature_detected!("avx2")
    );

    let mut chunk = vec![0u8; 1 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in chunk.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }

    // In memory: the hash alone.
    let (t, c) = (Instant::now(), cpu_time());
    let mut h = rkos_io::Hasher::new();
    for i in 0..mib {
        chunk[0] = i as u8;
        h.update(&chunk);
    }
    let digest = h.finish().sha256;
    report("sha256 in memory", mib, t.elapsed(), cpu_time() - c);

    // A file: write it, then verify it (warm page cache, so this measures read + hash).
    let file = tempfile::NamedTempFile::new_in(&dir).expect("temp file");
    {
        let mut w = std::io::BufWriter::new(file.as_file());
        for i in 0..mib {
            chunk[0] = i as u8;
            w.write_all(&chunk).unwrap();
        }
        w.flush().unwrap();
    }
    let entry = FileEntry {
        name: "bench".into(),
        size: (mib as u64) << 20,
        sha256: digest,
    };
    for round in 1..=2 {
        let (t, c) = (Instant::now(), cpu_time());
        rkos_bundle::verify_file(file.path(), &entry).expect("verify");
        report(
            &format!("verify_file (read + sha256) round {round}"),
            mib,
            t.elapsed(),
            cpu_time() - c,
        );
    }
}
