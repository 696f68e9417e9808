//! Arbitrary bytes as two YAML sources and a kernel command line (and the first two also as
//! cloud-init meta-data and network config): parse, normalise, merge, deserialize,
//! validate, render and show must never panic, and the merge must not depend on grouping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkos_config::{load, render, BootMode, RenderContext, Source, SourceKind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Split the input into three parts so the merge sees several sources.
    let mut parts = text.splitn(3, "\u{1}");
    let a = parts.next().unwrap_or("");
    let b = parts.next().unwrap_or("");
    let c = parts.next().unwrap_or("");
    let sources = vec![
        Source::new(SourceKind::ImageDefault, "a.yaml", a),
        Source::new(SourceKind::CloudInit, "user-data", b),
        Source::cmdline(c),
    ];
    let mut all = sources.clone();
    all.push(Source::new(SourceKind::CloudMetaData, "meta-data", a));
    all.push(Source::new(SourceKind::CloudNetwork, "network-config", b));
    let loaded = load(&all);
    let _ = rkos_config::show::show(&loaded, true);
    let _ = render(&loaded.config, &RenderContext::new("fuzz", BootMode::Disk));
    let _ = rkos_config::validate_text("a.yaml", a);

    // Grouping law on what the sources parsed to.
    let trees: Vec<_> = sources
        .iter()
        .map(|s| rkos_config::parse_source(s).tree)
        .collect();
    use rkos_config::merge::merge;
    let left = merge(merge(trees[0].clone(), trees[1].clone()), trees[2].clone());
    let right = merge(trees[0].clone(), merge(trees[1].clone(), trees[2].clone()));
    assert_eq!(left, right);
});
