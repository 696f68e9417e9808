//! The corpus: k3OS-style configs under tests/corpus/, each validated (no errors) and
//! rendered, with the rendered file set pinned under tests/golden/<case>/.
//! A `<case>.seed/` directory is a node's root holding cloud-init seeds as rkos-init leaves
//! them (`run/rkos/cidata/`, `run/rkos/config-2/`, optionally `var/lib/rkos/config.yaml`),
//! read through `NodeConfig` as on a node, with optional `ctx` and `cmdline` files; its
//! warnings are pinned in the MANIFEST with the rest.
//! `UPDATE_GOLDEN=1 cargo test -p rkos-config --test corpus` rewrites the golden files;
//! review the diff before committing it.

use std::path::{Path, PathBuf};

use rkos_config::{
    load, render_report, validate_text, BootMode, Loaded, NodeConfig, RenderContext, Source,
    SourceKind,
};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

struct Case {
    name: String,
    sources: Vec<Source>,
    ctx: RenderContext,
    /// A seed case: the node's root and kernel command line. Warnings are expected (and
    /// pinned), errors are not.
    seed: Option<(PathBuf, String)>,
}

impl Case {
    /// The merged config: a seed case's as the node reads it, else its sources merged.
    fn load(&self) -> Loaded {
        match &self.seed {
            Some((root, cmdline)) => NodeConfig::at(root)
                .cmdline(cmdline.as_str())
                .names_as_booted()
                .load(),
            None => load(&self.sources),
        }
    }
}

/// The sources of a `.seed` root, named as the node sees them (`/run/rkos/cidata/user-data`),
/// each validated on its own too.
fn seed_sources(root: &Path, cmdline: &str) -> Vec<Source> {
    let (mut sources, problems) = rkos_config::source::collect_report(root, cmdline);
    assert!(problems.is_empty(), "{problems:?}");
    for s in &mut sources {
        if let Ok(rel) = Path::new(&s.name).strip_prefix(root) {
            s.name = format!("/{}", rel.display());
        }
    }
    sources
}

fn cases() -> Vec<Case> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let ext = p.extension()?.to_str()?;
            (ext == "yaml" || ext == "cmdline" || ext == "seed")
                .then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let dir = corpus_dir();
            let seed_root = dir.join(format!("{name}.seed"));
            let seed = seed_root.is_dir();
            let dir = if seed { seed_root.clone() } else { dir };
            let ext_file = |ext: &str| {
                if seed {
                    seed_root.join(ext)
                } else {
                    dir.join(format!("{name}.{ext}"))
                }
            };
            let mut sources = Vec::new();
            let yaml = dir.join(format!("{name}.yaml"));
            if yaml.exists() {
                let text = std::fs::read_to_string(&yaml).unwrap();
                let kind = if text.starts_with("#cloud-config") || text.starts_with("#!") {
                    SourceKind::CloudInit
                } else {
                    SourceKind::Persistent
                };
                sources.push(Source::new(kind, format!("{name}.yaml"), text));
            }
            let mut seed_node = None;
            if seed {
                let cmdline = std::fs::read_to_string(ext_file("cmdline")).unwrap_or_default();
                sources = seed_sources(&seed_root, cmdline.trim());
                seed_node = Some((seed_root.clone(), cmdline.trim().to_string()));
            } else if let Ok(c) = std::fs::read_to_string(ext_file("cmdline")) {
                sources.push(Source::cmdline(c.trim()));
            }
            let mut ctx = RenderContext::new("0.1.0-test", BootMode::Live);
            ctx.password_salt = *b"goldensalt12";
            if let Ok(c) = std::fs::read_to_string(ext_file("ctx")) {
                for line in c.lines() {
                    match line.split_once('=') {
                        Some(("mode", m)) => ctx.mode = m.parse().unwrap(),
                        Some(("mac", m)) => ctx.primary_mac = Some(m.to_string()),
                        Some(("machine_id", m)) => ctx.machine_id = Some(m.to_string()),
                        Some(("fetched", kv)) => {
                            let (entry, key) = kv.split_once('|').unwrap();
                            ctx.fetched_keys
                                .entry(entry.to_string())
                                .or_default()
                                .push(key.to_string());
                        }
                        _ => panic!("{name}.ctx: unknown line {line}"),
                    }
                }
            }
            Case {
                name,
                sources,
                ctx,
                seed: seed_node,
            }
        })
        .collect()
}

/// The rendered set as text: a manifest (mode, owner, path) and the warnings, then each file.
fn snapshot(case: &Case) -> (String, Vec<(PathBuf, Vec<u8>)>) {
    let loaded = case.load();
    let rendered = render_report(&loaded.config, &case.ctx);
    let mut manifest = String::new();
    for d in &loaded.diagnostics {
        manifest.push_str(&format!("# diagnostic: {d}\n"));
    }
    for w in &rendered.warnings {
        manifest.push_str(&format!("# render warning: {w}\n"));
    }
    let mut files = Vec::new();
    for f in &rendered.files {
        manifest.push_str(&format!(
            "{:04o} {}:{} {}\n",
            f.mode,
            f.uid,
            f.gid,
            f.path.display()
        ));
        files.push((f.path.clone(), f.content.clone()));
    }
    (manifest, files)
}

#[test]
fn corpus_is_large_enough() {
    assert!(
        cases().len() >= 15,
        "the corpus must hold at least 15 configs"
    );
}

#[test]
fn corpus_validates_without_errors() {
    for case in cases() {
        for s in &case.sources {
            if s.kind == SourceKind::Cmdline {
                continue;
            }
            let diags = validate_text(&s.name, &s.text);
            // a seed's warnings are part of what its golden MANIFEST pins
            let diags: Vec<_> = diags
                .into_iter()
                .filter(|d| case.seed.is_none() || d.is_error())
                .collect();
            assert!(
                diags.is_empty(),
                "{}: {:#?}",
                case.name,
                diags.iter().map(ToString::to_string).collect::<Vec<_>>()
            );
        }
        let loaded = case.load();
        assert!(
            !loaded.has_errors(),
            "{}: {:?}",
            case.name,
            loaded.diagnostics
        );
    }
}

#[test]
fn corpus_renders_as_pinned() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in cases() {
        let (manifest, files) = snapshot(&case);
        let dir = golden_dir().join(&case.name);
        if update {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("MANIFEST"), &manifest).unwrap();
            for (p, c) in &files {
                let dest = dir.join("files").join(p.strip_prefix("/").unwrap());
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::write(dest, c).unwrap();
            }
            continue;
        }
        let want = std::fs::read_to_string(dir.join("MANIFEST")).unwrap_or_default();
        if want != manifest {
            failures.push(format!(
                "{}: MANIFEST differs\n--- want\n{want}--- got\n{manifest}",
                case.name
            ));
            continue;
        }
        for (p, c) in &files {
            let dest = dir.join("files").join(p.strip_prefix("/").unwrap());
            let want = std::fs::read(&dest).unwrap_or_default();
            if &want != c {
                failures.push(format!(
                    "{}: {} differs\n--- want\n{}--- got\n{}",
                    case.name,
                    p.display(),
                    String::from_utf8_lossy(&want),
                    String::from_utf8_lossy(c)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(run with UPDATE_GOLDEN=1 to accept)",
        failures.join("\n")
    );
}

#[test]
fn image_defaults_are_clean_and_lowest() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../overlay/usr/lib/rkos/config.d");
    let files = rkos_config::source::yaml_files(&dir);
    assert!(!files.is_empty(), "no image defaults in {}", dir.display());
    let mut sources = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.display().to_string();
        let diags = validate_text(&name, &text);
        assert!(diags.is_empty(), "{diags:?}");
        sources.push(Source::new(SourceKind::ImageDefault, name, text));
    }
    // A user's value wins over the default; lists add up.
    sources.push(Source::new(
        SourceKind::Persistent,
        "config.yaml",
        "rkos:\n  sysctls:\n    net.ipv4.ip_forward: \"0\"\n  modules: [rbd]\n",
    ));
    let loaded = load(&sources);
    assert!(!loaded.has_errors());
    assert_eq!(loaded.config.rkos.sysctls["net.ipv4.ip_forward"], "0");
    assert_eq!(
        loaded.config.rkos.modules,
        vec!["br_netfilter", "overlay", "rbd"]
    );
}
