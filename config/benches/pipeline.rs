//! Parse + merge + render: a typical node (image defaults, a persistent config, a kernel
//! command line; target under 2 ms) and a config with 500 write_files.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rkos_config::{load, render, BootMode, RenderContext, Source, SourceKind};

const DEFAULTS: &str = include_str!("../../overlay/usr/lib/rkos/config.d/00-rkos-defaults.yaml");
const TYPICAL: &str = include_str!("../tests/corpus/21-everything.yaml");
const CMDLINE: &str =
    "BOOT_IMAGE=/boot/vmlinuz ro quiet rkos.mode=disk rkos.labels[zone]=a rkos.install.silent";

fn typical() -> Vec<Source> {
    vec![
        Source::new(
            SourceKind::ImageDefault,
            "/usr/lib/rkos/config.d/00-rkos-defaults.yaml",
            DEFAULTS,
        ),
        Source::new(SourceKind::Persistent, "/var/lib/rkos/config.yaml", TYPICAL),
        Source::cmdline(CMDLINE),
    ]
}

fn many_files(n: usize) -> Vec<Source> {
    let mut text = String::from("write_files:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - path: /etc/app/conf.d/{i:04}.conf\n    permissions: \"0640\"\n    owner: root:root\n    content: |\n      # file {i}\n      key{i} = value{i}\n      enabled = true\n"
        ));
    }
    vec![
        Source::new(
            SourceKind::ImageDefault,
            "/usr/lib/rkos/config.d/00-rkos-defaults.yaml",
            DEFAULTS,
        ),
        Source::new(SourceKind::Persistent, "/var/lib/rkos/config.yaml", text),
    ]
}

fn ctx() -> RenderContext {
    let mut c = RenderContext::new("0.1.0", BootMode::Disk);
    c.primary_mac = Some("52:54:00:12:34:56".into());
    // A previous hash that matches: the steady state of a node (no re-hashing each boot).
    c
}

fn bench(c: &mut Criterion) {
    let sources = typical();
    let loaded = load(&sources);
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let mut steady = ctx();
    steady.previous_password_hash = render(&loaded.config, &ctx())
        .iter()
        .find(|f| f.path.ends_with("password.hash"))
        .map(|f| String::from_utf8_lossy(&f.content).trim().to_string());
    c.bench_function("typical: parse+merge+render", |b| {
        b.iter(|| {
            let loaded = load(black_box(&sources));
            black_box(render(&loaded.config, &steady))
        })
    });
    c.bench_function(
        "typical: parse+merge+render, first boot (hashes the password)",
        |b| {
            let first = ctx();
            b.iter(|| {
                let loaded = load(black_box(&sources));
                black_box(render(&loaded.config, &first))
            })
        },
    );
    let no_password: Vec<Source> = typical()
        .into_iter()
        .map(|mut s| {
            s.text = s.text.replace("  password: correct-horse\n", "");
            s
        })
        .collect();
    assert!(load(&no_password).config.rkos.password.is_none());
    c.bench_function("typical without a password: parse+merge+render", |b| {
        b.iter(|| {
            let loaded = load(black_box(&no_password));
            black_box(render(&loaded.config, &steady))
        })
    });
    c.bench_function("typical: parse+merge only", |b| {
        b.iter(|| black_box(load(black_box(&sources))))
    });
    let big = many_files(500);
    assert!(!load(&big).has_errors());
    c.bench_function("500 write_files: parse+merge+render", |b| {
        b.iter(|| {
            let loaded = load(black_box(&big));
            black_box(render(&loaded.config, &steady))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
