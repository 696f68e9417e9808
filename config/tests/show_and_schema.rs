//! `config show` never prints secrets, `--explain` names where values came from, and the
//! schema used for normalisation matches the typed config field for field.

use rkos_config::schema::{Field, Shape, ROOT};
use rkos_config::{load, Config, Source, SourceKind};

const SECRET_CONFIG: &str = r#"
rkos:
  token: K10deadbeef::server:topsecret1
  password: hunter2-secret
  datastore_endpoint: postgres://k3s:dbsecret@db/k3s
  wifi:
    - {name: home, passphrase: wifisecret99}
  environment:
    API_TOKEN: envsecret
    TZ: UTC
  k3s_args: ["--agent-token=argsecret", "--disable=traefik"]
  proxy:
    http_proxy: http://user:proxysecret@proxy:3128
"#;

#[test]
fn show_redacts_secrets_and_explains() {
    let loaded = load(&[
        Source::new(
            SourceKind::Persistent,
            "/var/lib/rkos/config.yaml",
            SECRET_CONFIG,
        ),
        Source::cmdline("rkos.labels[zone]=a"),
    ]);
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    for explain in [false, true] {
        let out = rkos_config::show::show(&loaded, explain);
        for secret in [
            "topsecret1",
            "hunter2",
            "dbsecret",
            "wifisecret99",
            "envsecret",
            "argsecret",
            "proxysecret",
        ] {
            assert!(!out.contains(secret), "{secret} shown:\n{out}");
        }
        assert!(out.contains("TZ: UTC"), "{out}");
        assert!(out.contains("--disable=traefik"), "{out}");
        if explain {
            assert!(
                out.contains("token: <redacted>  # from /var/lib/rkos/config.yaml:3:10"),
                "{out}"
            );
            assert!(
                out.contains("zone: a  # from kernel command line:1"),
                "{out}"
            );
        }
    }
}

#[test]
fn show_output_reads_back_as_the_same_config() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/21-everything.yaml"
    ))
    .unwrap();
    let loaded = load(&[Source::new(SourceKind::Persistent, "a.yaml", text)]);
    let mut expected = loaded.config.clone();
    let shown = rkos_config::show::show(&loaded, true);
    let again = load(&[Source::new(
        SourceKind::Persistent,
        "shown.yaml",
        shown.clone(),
    )]);
    assert!(!again.has_errors(), "{:?}\n{shown}", again.diagnostics);
    // Only the redacted values differ.
    expected.rkos.token = Some("<redacted>".into());
    expected.rkos.password = Some("<redacted>".into());
    assert_eq!(again.config, expected);
}

fn walk(fields: &'static [Field], value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    let obj = value
        .as_object()
        .unwrap_or_else(|| panic!("{path}: not an object"));
    for (k, v) in obj {
        let Some(field) = fields.iter().find(|f| f.name == k) else {
            found.push(format!(
                "{path}.{k} is in the typed config but not in the schema"
            ));
            continue;
        };
        match (&field.shape, v) {
            (Shape::Struct(inner), v) if v.is_object() => {
                walk(inner, v, &format!("{path}.{k}"), found)
            }
            (Shape::Struct(inner), serde_json::Value::Null) => {
                let _ = inner;
            }
            (Shape::Keyed(_, inner), serde_json::Value::Array(items)) => {
                for item in items {
                    walk(inner, item, &format!("{path}.{k}[]"), found);
                }
            }
            _ => {}
        }
    }
    for f in fields {
        if !obj.contains_key(f.name) {
            found.push(format!(
                "{path}.{} is in the schema but not in the typed config",
                f.name
            ));
        }
    }
}

#[test]
fn schema_and_typed_config_agree() {
    let mut cfg = Config::default();
    cfg.write_files.push(Default::default());
    cfg.rkos.wifi.push(Default::default());
    cfg.rkos.data_disks.push(Default::default());
    cfg.rkos.network.interfaces.push(rkos_config::Interface {
        vlan: Some(Default::default()),
        bond: Some(Default::default()),
        ..Default::default()
    });
    let v = serde_json::to_value(&cfg).unwrap();
    let mut found = Vec::new();
    walk(ROOT, &v, "", &mut found);
    assert!(found.is_empty(), "{found:#?}");
}
