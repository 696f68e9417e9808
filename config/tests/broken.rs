//! Broken inputs and the exact diagnostics they produce. Each tests/broken/NAME.yaml (or a
//! cloud-init seed file, NAME.user-data, NAME.meta-data, NAME.network-config,
//! NAME.network_data.json) has its expected output, one diagnostic per line, in
//! tests/broken/NAME.expected.
//! `UPDATE_GOLDEN=1` rewrites the expected files (review the diff).

use std::path::Path;

use rkos_config::{load, validate_text, Source, SourceKind};

#[test]
fn broken_inputs_have_precise_messages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    const KINDS: &[&str] = &[
        ".yaml",
        ".user-data",
        ".meta-data",
        ".network-config",
        ".network_data.json",
    ];
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_string();
            let name = KINDS.iter().find_map(|k| file.strip_suffix(k))?.to_string();
            Some((name, file))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (name, file) in files {
        let text = std::fs::read_to_string(dir.join(&file)).unwrap();
        let diags = validate_text(&file, &text);
        assert!(!diags.is_empty(), "{name}: no diagnostics");
        let got: String = diags.iter().map(|d| format!("{d}\n")).collect();
        let expected_path = dir.join(format!("{name}.expected"));
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            failures.push(format!("{name}:\n--- want\n{want}--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn broken_kernel_command_lines() {
    let cases = [
        (
            "rkos.labels[zone=a",
            "kernel command line:1: cannot read key `labels[zone`: expected rkos.KEY=VALUE, rkos.KEY[NAME]=VALUE or rkos.KEY",
        ),
        (
            "quiet rkos.server_url=http://s",
            "kernel command line:7: rkos.server_url: expected an https URL, found scheme `http`",
        ),
        (
            "rkos.server_url=https://a rkos.server_url=https://b rkos.token=t",
            "kernel command line:27: rkos.server_url: warning: given 2 times; the last one wins",
        ),
        (
            "rkos.hostnme=x",
            "kernel command line:1: rkos.hostnme: warning: unknown key `hostnme`; did you mean `hostname`? (ignored)",
        ),
        (
            "rkos.install.silent=perhaps",
            "kernel command line:1: rkos.install.silent: expected true or false, found `perhaps`",
        ),
    ];
    for (cmdline, want) in cases {
        let loaded = load(&[Source::cmdline(cmdline)]);
        let got: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            got.first().map(String::as_str),
            Some(want),
            "{cmdline}: {got:#?}"
        );
    }
}

#[test]
fn a_broken_source_is_left_out_and_the_rest_loads() {
    let good = Source::new(
        SourceKind::ImageDefault,
        "defaults.yaml",
        "hostname: base\nrkos:\n  modules: [a]\n",
    );
    let bad = Source::new(
        SourceKind::Persistent,
        "config.yaml",
        "rkos:\n  modules: [b]\n  token: K10zz::a:b\n",
    );
    let loaded = load(&[good, bad]);
    assert_eq!(loaded.config.hostname.as_deref(), Some("base"));
    assert_eq!(loaded.config.rkos.modules, vec!["a"]);
    assert_eq!(loaded.rejected, vec!["config.yaml"]);
    let msgs: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        vec![
            "config.yaml:3:10: rkos.token: a secure token has the form K10<hex>::<user>:<password> (the part after K10 must be hex)",
            "config.yaml: this source has errors and was left out; the node uses the other sources",
        ]
    );
}
