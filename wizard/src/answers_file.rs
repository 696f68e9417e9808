//! `--answers FILE`: read as rkos-config reads a config, so every problem of the file is
//! reported at once, each as `FILE:LINE:COLUMN: key: message` (the form of every config
//! error on the node), instead of the YAML library's first error only.

use rkos_config::node::{parse_yaml, Entry, Node, Value};

use crate::answers::Answers;

/// The keys of an answers file (the fields of [`Answers`]).
pub const KEYS: &[&str] = &[
    "action",
    "device",
    "config_url",
    "github_users",
    "ssh_keys",
    "password",
    "wifi_ssid",
    "wifi_passphrase",
    "network",
    "interface",
    "address",
    "gateway",
    "dns",
    "hostname",
    "role",
    "cluster_init",
    "server_url",
    "token",
    "skip_probe",
];

/// The answers in `text` (read from `name`), or every problem found in it.
pub fn parse(name: &str, text: &str) -> Result<Answers, Vec<String>> {
    let tree = parse_yaml(name, text).map_err(|d| vec![d.to_string()])?;
    let map = match &tree.value {
        Value::Null => return Ok(Answers::default()),
        Value::Map(m) => m,
        _ => {
            return Err(vec![format!(
                "{}: an answers file is a mapping of keys (see os-config --help)",
                tree.mark
            )])
        }
    };
    let mut problems = Vec::new();
    for (key, entry) in map {
        if !KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "{}: {key}: not an answers key (the keys are {})",
                entry.key_mark,
                KEYS.join(", ")
            ));
            continue;
        }
        if let Err(e) = serde_saphyr::from_str::<Answers>(&one_key(key, entry)) {
            problems.push(format!("{}: {key}: {}", entry.node.mark, message(&e)));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    serde_saphyr::from_str(text).map_err(|e| vec![format!("{name}: {}", message(&e))])
}

/// A document holding only `key: value`, for the value's own check.
fn one_key(key: &str, entry: &Entry) -> String {
    let mut m = indexmap::IndexMap::new();
    m.insert(key.to_string(), entry.clone());
    let doc = Node::new(Value::Map(m), entry.node.mark.clone());
    rkos_config::emit::to_yaml(
        &doc,
        &rkos_config::emit::Options {
            redact: &|_| false,
            comment: &|_| None,
        },
    )
}

/// The YAML library's message without its own location, snippet and "error:" (the caller
/// says where, in the file's terms).
fn message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let first = match first.split_once(": ") {
        Some((at, rest)) if at.starts_with("line ") => rest,
        _ => first,
    };
    // Some messages end with the place in the one-key document checked, not in the file.
    match first.rsplit_once(" at line ") {
        Some((msg, at)) if at.contains(", column ") => msg.to_string(),
        _ => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answers::Role;

    #[test]
    fn keys_are_the_fields_of_answers() {
        let yaml = serde_saphyr::to_string(&Answers::default()).unwrap();
        let fields: Vec<&str> = yaml
            .lines()
            .filter(|l| !l.starts_with([' ', '-']))
            .filter_map(|l| l.split_once(':').map(|(k, _)| k))
            .collect();
        assert_eq!(fields, KEYS);
    }

    #[test]
    fn reads_a_good_file() {
        let a = parse(
            "answers.yaml",
            "role: agent\nserver_url: https://10.0.0.1\ndns: [10.0.0.2]\nskip_probe: true\n",
        )
        .unwrap();
        assert_eq!(a.role, Some(Role::Agent));
        assert_eq!(a.dns, ["10.0.0.2"]);
        assert!(a.skip_probe);
        assert_eq!(parse("a", "").unwrap(), Answers::default());
    }

    #[test]
    fn every_problem_at_once_named_by_file_line_and_key() {
        let errs = parse(
            "answers.yaml",
            "action: instal\nrol: agent\nhostname: [a, b]\nskip_probe: maybe\n",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].starts_with("answers.yaml:1:9: action: unknown variant `instal`"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("answers.yaml:2:1: rol: not an answers key"),
            "{}",
            errs[1]
        );
        assert!(
            errs[2].starts_with("answers.yaml:3:11: hostname: "),
            "{}",
            errs[2]
        );
        assert!(
            errs[3].starts_with("answers.yaml:4:13: skip_probe: "),
            "{}",
            errs[3]
        );
        for e in &errs {
            assert!(
                !e.contains("<input>") && !e.contains("error") && !e.contains(" at line "),
                "{e}"
            );
        }
        let broken = parse("answers.yaml", "a: [\n").unwrap_err();
        assert_eq!(broken.len(), 1);
        assert!(broken[0].starts_with("answers.yaml:"), "{broken:?}");
    }
}
