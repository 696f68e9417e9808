//! The answers model end to end: answers -> config.yaml text -> rkos-config accepts it and
//! reads back what was answered.

use rkos_config::{load, Source, SourceKind};
use rkos_wizard::answers::{parse_answers, Answers, NetMode};
use rkos_wizard::{secrets, validate_config, Action, Role};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2pU7tVqB/RceORxdEERGk8KvkidMAmix4j5cHVIHby test@rkos";

fn loaded(yaml: &str) -> rkos_config::Config {
    let (errors, _) = validate_config("answers", yaml);
    assert!(errors.is_empty(), "{errors:?}\n{yaml}");
    let l = load(&[Source {
        kind: SourceKind::Persistent,
        name: "config.yaml".into(),
        text: yaml.into(),
    }]);
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    l.config
}

fn agent() -> Answers {
    Answers {
        action: Some(Action::Configure),
        github_users: vec!["octocat".into()],
        ssh_keys: vec![KEY.into()],
        password: Some("correct horse".into()),
        hostname: Some("node-7".into()),
        role: Some(Role::Agent),
        server_url: Some("https://10.0.0.1".into()),
        token: Some("K10abcdef::server:s3cret".into()),
        ..Answers::default()
    }
}

#[test]
fn agent_answers_make_a_valid_config() {
    let a = agent();
    assert_eq!(a.problems(), vec![]);
    let yaml = a.to_config_yaml().unwrap();
    assert!(
        !yaml.contains("correct horse"),
        "the password is written hashed:\n{yaml}"
    );
    let c = loaded(&yaml);
    assert_eq!(c.hostname.as_deref(), Some("node-7"));
    assert_eq!(c.rkos.server_url.as_deref(), Some("https://10.0.0.1:6443"));
    assert_eq!(c.rkos.token.as_deref(), Some("K10abcdef::server:s3cret"));
    assert_eq!(c.rkos.role.as_deref(), Some("agent"));
    let hash = c.rkos.password.unwrap();
    assert!(secrets::verify_password("correct horse", &hash), "{hash}");
    let keys = format!("{:?}", c.ssh_authorized_keys);
    assert!(
        keys.contains("github:octocat") && keys.contains("AAAAC3NzaC1lZDI1NTE5AAAAIN2pU7tVqB"),
        "{keys}"
    );
}

#[test]
fn server_gets_a_generated_token_and_ha_flag() {
    let mut a = Answers {
        password: Some("secret123".into()),
        role: Some(Role::Server),
        cluster_init: true,
        ..Answers::default()
    };
    let token = a
        .fill_defaults("rkos-ab12")
        .unwrap()
        .expect("a token is generated");
    assert_eq!(token.len(), 64);
    assert_eq!(a.hostname.as_deref(), Some("rkos-ab12"));
    assert_eq!(a.problems(), vec![]);
    let c = loaded(&a.to_config_yaml().unwrap());
    assert_eq!(c.rkos.token.as_deref(), Some(token.as_str()));
    assert_eq!(c.rkos.cluster_init, Some(true));
    assert_eq!(c.rkos.role.as_deref(), Some("server"));
    assert_eq!(c.rkos.server_url, None);
    // A second fill keeps the token: it is generated once.
    assert_eq!(a.fill_defaults("x").unwrap(), None);
}

#[test]
fn joining_server_keeps_the_server_role() {
    let a = Answers {
        password: Some("secret123".into()),
        role: Some(Role::Server),
        server_url: Some("https://k3s-1.lan:6443".into()),
        token: Some("sharedsecret".into()),
        ..Answers::default()
    };
    assert_eq!(a.problems(), vec![]);
    let c = loaded(&a.to_config_yaml().unwrap());
    assert_eq!(c.rkos.role.as_deref(), Some("server"));
    assert_eq!(c.rkos.server_url.as_deref(), Some("https://k3s-1.lan:6443"));
}

#[test]
fn static_network_and_wifi() {
    let a = Answers {
        network: NetMode::Static,
        interface: Some("enp1s0".into()),
        address: Some("192.168.1.10/24".into()),
        gateway: Some("192.168.1.1".into()),
        dns: vec!["1.1.1.1".into()],
        wifi_ssid: Some("home net".into()),
        wifi_passphrase: Some("longpassphrase".into()),
        ..agent()
    };
    assert_eq!(a.problems(), vec![]);
    let c = loaded(&a.to_config_yaml().unwrap());
    let i = &c.rkos.network.interfaces[0];
    assert_eq!(i.name, "enp1s0");
    assert_eq!(i.addresses, ["192.168.1.10/24"]);
    assert_eq!(i.gateway.as_deref(), Some("192.168.1.1"));
    assert_eq!(i.dns, ["1.1.1.1"]);
    assert_eq!(i.dhcp, Some(false));
    assert_eq!(c.rkos.wifi[0].name, "home net");
    assert_eq!(c.rkos.wifi[0].passphrase.as_deref(), Some("longpassphrase"));
}

#[test]
fn mistakes_are_named_by_key() {
    let a = Answers {
        server_url: Some("http://10.0.0.1:6443".into()),
        token: Some(String::new()),
        password: None,
        hostname: Some("Bad_Host".into()),
        network: NetMode::Static,
        wifi_ssid: Some("x".into()),
        ..agent()
    };
    let keys: Vec<_> = a.problems().iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        [
            "password",
            "wifi_passphrase",
            "interface",
            "address",
            "hostname",
            "server_url",
            "token"
        ]
    );
    let text = a
        .problems()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("server_url: the server URL must use https"),
        "{text}"
    );
    assert!(text.contains("token: a token is required"), "{text}");
    assert!(
        text.contains("password: a password for the user rkos is required"),
        "{text}"
    );
    assert!(Answers::default()
        .problems()
        .iter()
        .any(|p| p.key == "role"));
}

#[test]
fn summary_masks_secrets() {
    let mut a = agent();
    a.wifi_ssid = Some("home".into());
    a.wifi_passphrase = Some("wifisecret99".into());
    let text = a
        .summary()
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect::<String>();
    for secret in ["correct horse", "s3cret", "wifisecret99", "K10abcdef"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert!(text.contains("server URL: https://10.0.0.1"), "{text}");
    assert!(text.contains("token: ******** (24 characters)"), "{text}");
}

#[test]
fn answers_file_and_flags() {
    let file = parse_answers(
        "action: install\ndevice: /dev/vda\nrole: agent\nserver_url: https://10.0.0.1:6443\ntoken: abc\npassword: secret123\ngithub_users: [octocat]\n",
    )
    .unwrap();
    assert_eq!(file.action, Some(Action::Install));
    let flags = Answers {
        token: Some("fromflag".into()),
        hostname: Some("n1".into()),
        ..Answers::default()
    };
    let a = file.overlay(flags);
    assert_eq!(a.token.as_deref(), Some("fromflag"));
    assert_eq!(a.device.as_deref(), Some("/dev/vda"));
    assert_eq!(a.github_users, ["octocat"]);
    assert_eq!(a.hostname.as_deref(), Some("n1"));
    let err = parse_answers("rol: agent\n").unwrap_err();
    assert!(err.contains("rol"), "{err}");
}

#[test]
fn a_broken_config_file_is_refused_with_its_position() {
    let (errors, _) = validate_config("node.yaml", "rkos:\n  server_url: http://x\n  token: t\n");
    assert!(!errors.is_empty());
    assert!(errors[0].starts_with("node.yaml:2:"), "{errors:?}");
}
