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
        Just("users:".to_string()),
        Just("- default".to_string()),
        Just("chpasswd:".to_string()),
        Just("list:".to_string()),
        Just("version: 2".to_string()),
        Just("version: 1".to_string()),
        Just("ethernets:".to_string()),
        Just("config:".to_string()),
        Just("type: physical".to_string()),
        Just("subnets:".to_string()),
        Just("links:".to_string()),
        Just("bond_links:".to_string()),
        Just("routes:".to_string()),
        Just("- to: default".to_string()),
        Just("--b\nContent-Type: text/cloud-config\n".to_string()),
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
            Source::new(SourceKind::CloudMetaData, "meta-data", a.clone()),
            Source::new(SourceKind::CloudNetwork, "network-config", b.clone()),
            Source::new(SourceKind::CloudNetwork, "network_data.json", a.clone()),
            Source::new(SourceKind::CloudInit, "user-data", format!("#cloud-config\n{b}")),
            Source::new(
                SourceKind::CloudInit,
                "vendor-data",
                format!("Content-Type: multipart/mixed; boundary=b\n\n--b\n\n#cloud-config\n{a}\n--b\n{b}"),
            ),
            Source::cmdline(format!("rkos.{c}")),
        ];
        let loaded = load(&sources);
        let _ = rkos_config::show::show(&loaded, true);
        let _ = render(&loaded.config, &RenderContext::new("t", BootMode::Disk));
        let _ = validate_text("a.yaml", &a);
    }
}
