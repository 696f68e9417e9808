//! Hostile configs cost bounded memory: rkos-init loads the config as PID 1, and a seed or a
//! boot medium can carry anything. Each case runs in a child process (this test binary run
//! again) whose peak RSS the parent reads from wait4(2), so the figure is the load's alone.

use rkos_config::{load, Source, SourceKind};
use std::io::Write;
use std::process::Command;

/// Peak RSS allowed for loading a hostile config: the 1 MiB source, its parse, and the
/// expansion up to the text limit, with room for the test harness.
const PEAK_LIMIT_KIB: i64 = 160 * 1024;

/// A 1 MiB anchored scalar and 2,000 aliases of it: about 1 MiB to write, 2 GB to expand.
fn alias_bomb() -> String {
    let mut s = String::with_capacity(1 << 21);
    s.push_str("hostname: &big ");
    s.push_str(&"a".repeat(1 << 20));
    s.push_str("\nrkos:\n  labels:\n");
    for i in 0..2000 {
        s.push_str(&format!("    k{i}: *big\n"));
    }
    s
}

/// Three write_files entries of 30 MiB each, gzip+base64: small to write, 90 MiB to decode.
fn write_files_bomb() -> String {
    use base64::Engine;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 30 << 20]).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let mut s = String::from("write_files:\n");
    for i in 0..3 {
        s.push_str(&format!(
            "  - path: /opt/f{i}\n    encoding: gz+b64\n    content: {b64}\n"
        ));
    }
    s
}

/// Runs `case` in a child and returns (its stdout, its peak RSS in KiB).
// The child is reaped by wait4(2), which std's Child cannot do (it has no rusage).
#[allow(clippy::zombie_processes)]
fn in_child(case: &str) -> (String, i64) {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_load", "--nocapture", "--test-threads=1"])
        .env("RKOS_MEMORY_CASE", case)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.unwrap(), &mut out).unwrap();
    let mut status = 0;
    // SAFETY: plain syscall on our own child, with out-pointers to locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {out}"
    );
    (out, usage.ru_maxrss)
}

/// The child's side: loads the case's config and prints its errors.
#[test]
fn child_load() {
    let Ok(case) = std::env::var("RKOS_MEMORY_CASE") else {
        return; // run directly by the harness: nothing to do
    };
    let text = match case.as_str() {
        "alias" => alias_bomb(),
        "write_files" => write_files_bomb(),
        other => panic!("unknown case {other}"),
    };
    let loaded = load(&[Source::new(SourceKind::BootMedium, "seed", text)]);
    for d in loaded.errors() {
        println!("ERROR {d}");
    }
}

#[test]
fn an_alias_bomb_is_refused_in_bounded_memory() {
    let (out, peak) = in_child("alias");
    assert!(
        out.contains("aliases expand to more than 32 MiB of text"),
        "not refused: {out}"
    );
    assert!(
        peak < PEAK_LIMIT_KIB,
        "peak RSS {} MiB while loading the alias bomb",
        peak / 1024
    );
}

#[test]
fn write_files_that_decode_too_big_are_refused_in_bounded_memory() {
    let (out, peak) = in_child("write_files");
    assert!(
        out.contains("write_files decode to more than 64 MiB in all"),
        "not refused: {out}"
    );
    assert!(
        peak < PEAK_LIMIT_KIB,
        "peak RSS {} MiB while loading the write_files bomb",
        peak / 1024
    );
}
