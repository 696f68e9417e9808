//! Any text, as any kind of source, loads, renders and shows without panicking (the fuzz
//! targets in fuzz/ go further; this keeps a cheap version in every test run).

use proptest::prelude::*;
use rkos_config::{load, render, validate_text, BootMode, RenderContext, Source, SourceKind};

/// Text made of YAML's structural characters and the schema's words, so that most inputs
/// get past the parser into normalisation, merge and validation.
fn yamlish() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("rkos:".to_string()),
        Just("k3os:".to_string()),
        Just("write_files:".to_string()),
        Just("- path: /a".to_string()),
        Just("labels:".to_string()),
        Just("wifi:".to_string()),
        Just("network:".to_string()),
        Just("interfaces:".to_string()),
        Just("server_url: https://x".to_string()),
        Just("!replace".to_string()),
        Just("&a".to_string()),
        Just("*a".to_string()),
        "[ \n:\\-\\[\\]{},#'\"|>=a-z0-9./]{1,8}",
    ];
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.join(""))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_source_is_safe(a in yamlish(), b in yamlish(), c in "[ a-z.=\\[\\]\"0-9:/-]{0,80}") {
        let sources = vec![
            Source::new(SourceKind::ImageDefault, "a.yaml", a.clone()),
            Source::new(SourceKind::CloudInit, "user-data", format!("#cloud-config\n{b}")),
            Source::cmdline(format!("rkos.{c}")),
        ];
        let loaded = load(&sources);
        let _ = rkos_config::show::show(&loaded, true);
        let _ = render(&loaded.config, &RenderContext::new("t", BootMode::Disk));
        let _ = validate_text("a.yaml", &a);
    }
}
