//! Sources, and loading them: parse, normalise, check each source on its own, merge the
//! good ones in order, deserialize and check the result.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::cmdline;
use crate::de::{from_node, DeError};
use crate::diag::{Diagnostic, Severity};
use crate::merge::{merge, strip_replace};
use crate::model::Config;
use crate::node::{parse_yaml, path_string, Mark, Node, PathSeg, Value};
use crate::schema::Normalizer;
use crate::validate::{check_fields, check_whole, Finding};

/// Where a source came from; sources are merged in the order given, lowest first, and this
/// order is the documented one (see `source::collect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    ImageDefault,
    BootMedium,
    /// A cloud-init seed's meta-data (`meta-data`, `meta_data.json`); see `cloudinit`.
    CloudMetaData,
    /// A cloud-init seed's network config (`network-config`, `network_data.json`).
    CloudNetwork,
    /// cloud-init user-data (and vendor-data).
    CloudInit,
    DataSource,
    Persistent,
    Cmdline,
}

/// One config source: its kind, its name (a path, or `kernel command line`) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(kind: SourceKind, name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            kind,
            name: name.into(),
            text: text.into(),
        }
    }

    pub fn cmdline(text: impl Into<String>) -> Self {
        Source::new(SourceKind::Cmdline, cmdline::CMDLINE_SOURCE, text)
    }

    /// A file given by name (`rkos config validate|show --config`): a cloud-init seed file
    /// by its name (`meta-data`, `network-config`, `user-data`, ...) or its text
    /// (`#cloud-config`, `#!`, a MIME message; [`crate::cloudinit::kind_of`]), else a
    /// config.yaml.
    pub fn given_file(name: impl Into<String>, text: impl Into<String>) -> Self {
        let (name, text) = (name.into(), text.into());
        let kind = crate::cloudinit::kind_of(&name, &text).unwrap_or(SourceKind::Persistent);
        Source::new(kind, name, text)
    }
}

/// The result of loading: the merged config, every diagnostic, and the merged tree (which
/// records, for every value, the source, line and column that set it).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub diagnostics: Vec<Diagnostic>,
    /// The merged, normalised tree: provenance for `rkos config show --explain`.
    pub tree: Node,
    /// Names of the sources left out of the merge because they had errors.
    pub rejected: Vec<String>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// What a source became after parsing and normalising.
pub struct Parsed {
    pub tree: Node,
    pub diagnostics: Vec<Diagnostic>,
    pub kind: SourceKind,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

fn empty_map(name: &str) -> Node {
    let src: Arc<str> = Arc::from(name);
    Node::new(Value::Map(IndexMap::new()), Mark::new(&src, Some(1), 1))
}

/// Parses and normalises one source, and runs the per-value checks on it.
pub fn parse_source(source: &Source) -> Parsed {
    let mut diags = Vec::new();
    let failed = |d: Diagnostic| Parsed {
        tree: empty_map(&source.name),
        diagnostics: vec![d],
        kind: source.kind,
    };
    let tree = if crate::cloudinit::is_seed(source.kind) {
        // cloud-init's formats are translated (and normalised) by the cloudinit module
        match crate::cloudinit::parse(source) {
            Ok((tree, d)) => {
                diags.extend(d);
                tree
            }
            Err(d) => return failed(d),
        }
    } else {
        let raw = match source.kind {
            SourceKind::Cmdline => {
                let (n, d) = cmdline::parse(&source.text);
                diags.extend(d);
                n
            }
            _ => match parse_yaml(&source.name, &source.text) {
                Ok(n) => n,
                Err(d) => return failed(d),
            },
        };
        let mut norm = Normalizer::new(source.kind == SourceKind::Cmdline);
        let tree = norm.root(raw);
        diags.extend(norm.diagnostics);
        tree
    };
    let mut tree = tree;
    // Fetched sources are never trust roots: a data source, or a NoCloud seed fetched from a
    // `ds=nocloud;s=URL`.
    let fetched = source.kind == SourceKind::DataSource
        || source
            .name
            .contains(rkos_contract::paths::NOCLOUD_NET_DIR.trim_start_matches('/'));
    if fetched {
        diags.extend(crate::datasource::strip_trust_roots(
            &mut tree,
            &source.name,
        ));
    }
    for d in &mut diags {
        if d.source.is_empty() {
            d.source = source.name.clone();
        }
    }
    if source.kind == SourceKind::Cmdline {
        diags.extend(cmdline_secrets(&tree, &source.name));
    }
    match from_node::<Config>(&tree) {
        Ok(cfg) => diags.extend(findings(&tree, &source.name, check_fields(&cfg))),
        Err(_) => diags.extend(type_errors(&tree).iter().map(|e| de_diag(e, &source.name))),
    }
    // In the order the user reads the file (stable: same place keeps check order).
    diags.sort_by_key(|d| (d.line, d.column));
    Parsed {
        tree,
        diagnostics: diags,
        kind: source.kind,
    }
}

/// Warnings for secrets given on the kernel command line: `/proc/cmdline` is readable by
/// every process on the node, pods included, and GRUB's menu shows it.
fn cmdline_secrets(tree: &Node, source: &str) -> Vec<Diagnostic> {
    fn walk(
        node: &Node,
        path: &mut Vec<PathSeg>,
        root: &Node,
        out: &mut Vec<(Vec<PathSeg>, Mark)>,
    ) {
        if crate::show::is_secret_path(path, root) && !node.is_null() {
            out.push((path.clone(), node.mark.clone()));
            return;
        }
        match &node.value {
            Value::Map(m) => {
                for (k, e) in m {
                    path.push(PathSeg::Key(k.clone()));
                    walk(&e.node, path, root, out);
                    path.pop();
                }
            }
            Value::Seq { items, .. } => {
                for (i, n) in items.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    walk(n, path, root, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(tree, &mut Vec::new(), tree, &mut found);
    found
        .into_iter()
        .map(|(path, mark)| {
            Diagnostic::warning(
                source,
                path_string(&path),
                "a secret on the kernel command line can be read by every process on the node, \
                 pods included (/proc/cmdline); put it in /var/lib/rkos/config.yaml (mode 0600) \
                 instead",
            )
            .at(&mark)
        })
        .collect()
}

/// serde stops at the first type error; to report them all, each top-level key and each
/// key of the `rkos:` section is deserialized on its own.
fn type_errors(tree: &Node) -> Vec<DeError> {
    let Some(root) = tree.as_map() else {
        return from_node::<Config>(tree).err().into_iter().collect();
    };
    let only = |parent: &Node, key: &str, entry: &crate::node::Entry| {
        let mut m = IndexMap::new();
        m.insert(key.to_string(), entry.clone());
        Node::new(Value::Map(m), parent.mark.clone())
    };
    let mut errors = Vec::new();
    for (k, e) in root {
        let sections: Vec<Node> = match (k.as_str(), e.node.as_map()) {
            ("rkos", Some(rk)) => rk
                .iter()
                .map(|(rk_key, rk_entry)| {
                    let inner = only(&e.node, rk_key, rk_entry);
                    let entry = crate::node::Entry {
                        key_mark: e.key_mark.clone(),
                        node: inner,
                    };
                    only(tree, k, &entry)
                })
                .collect(),
            _ => vec![only(tree, k, e)],
        };
        for part in sections {
            if let Err(err) = from_node::<Config>(&part) {
                errors.push(err);
            }
        }
    }
    if errors.is_empty() {
        // Not reachable for a tree that failed as a whole, but never report nothing.
        errors.extend(from_node::<Config>(tree).err());
    }
    errors
}

fn de_diag(e: &DeError, source: &str) -> Diagnostic {
    let d = Diagnostic::error(source, path_string(&e.path), e.message.clone());
    match &e.mark {
        Some(m) => d.at(m),
        None => d,
    }
}

fn findings(tree: &Node, fallback: &str, fs: Vec<Finding>) -> Vec<Diagnostic> {
    fs.into_iter()
        .map(|f| {
            let d = Diagnostic {
                severity: f.severity,
                source: fallback.to_string(),
                line: None,
                column: None,
                path: path_string(&f.path),
                message: f.message,
            };
            match tree.mark_of(&f.path) {
                Some(m) => d.at(&m),
                None => d,
            }
        })
        .collect()
}

/// Merges sources lowest first. A source with errors is left out (its diagnostics are
/// kept), so one typo never takes the rest of the config, or console access, with it.
pub fn load(sources: &[Source]) -> Loaded {
    load_parsed(sources.iter().map(|s| (s.name.clone(), parse_source(s))))
}

/// [`load`] for sources already parsed with [`parse_source`] (named, lowest first): a caller
/// can parse the sources it has early, on another thread, and merge when the rest are in.
pub fn load_parsed(parsed: impl IntoIterator<Item = (String, Parsed)>) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut rejected = Vec::new();
    let mut tree = empty_map("(defaults)");
    let parsed = crate::cloudinit::network_yields(parsed.into_iter().collect(), &mut diagnostics);
    for (name, p) in parsed {
        let bad = p.has_errors();
        diagnostics.extend(p.diagnostics);
        if bad {
            diagnostics.push(Diagnostic::error(
                name.clone(),
                "",
                "this source has errors and was left out; the node uses the other sources",
            ));
            rejected.push(name);
        } else {
            tree = merge(tree, p.tree);
        }
    }
    strip_replace(&mut tree);
    let config = match from_node::<Config>(&tree) {
        Ok(c) => c,
        Err(e) => {
            // Every merged source deserialized on its own, so this is a merge of
            // incompatible shapes; report it and fall back to nothing rather than panic.
            diagnostics.push(de_diag(&e, "merged config"));
            Config::default()
        }
    };
    let fallback = "merged config";
    diagnostics.extend(findings(&tree, fallback, check_whole(&config)));
    Loaded {
        config,
        diagnostics,
        tree,
        rejected,
    }
}

/// Validates one file on its own (for `rkos config validate` and the wizard): parse, key
/// checks, value checks and the whole-config checks. A cloud-init seed file is read as one
/// (by its name: `meta-data`, `network-config`, `user-data`, ...; or by a text starting with
/// `#cloud-config`, `#!` or a MIME header).
pub fn validate_text(name: &str, text: &str) -> Vec<Diagnostic> {
    let p = parse_source(&Source::given_file(name, text));
    let mut diags = p.diagnostics;
    if !diags.iter().any(Diagnostic::is_error) {
        let mut tree = p.tree;
        strip_replace(&mut tree);
        if let Ok(cfg) = from_node::<Config>(&tree) {
            diags.extend(findings(&tree, name, check_whole(&cfg)));
        }
    }
    diags
}

/// Severity counts, for summaries.
pub fn count(diags: &[Diagnostic], sev: Severity) -> usize {
    diags.iter().filter(|d| d.severity == sev).count()
}

/// The source, line and column that set the value at `path` in the merged tree.
pub fn provenance(loaded: &Loaded, path: &[PathSeg]) -> Option<Mark> {
    loaded.tree.lookup(path).map(|n| n.mark.clone())
}
