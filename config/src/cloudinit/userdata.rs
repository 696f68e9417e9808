//! user-data (and vendor-data): `#cloud-config` YAML, a `#!` script, a `#cloud-boothook`, or
//! a MIME multipart message of those (split by [`super::mime`]). Each part becomes an rkos
//! tree; the parts are merged in order by rkos's own merge rules (docs/config.md).

use std::sync::Arc;

use rkos_contract::paths::{USER_DATA_BOOTHOOK, USER_DATA_SCRIPT, VAR_LIB_RKOS};

use crate::diag::Diagnostic;
use crate::load::Source;
use crate::merge::merge;
use crate::node::{parse_yaml, Mark, Node};
use crate::schema::Normalizer;

use super::mime::{self, Part};
use super::tree::{self, MapB};
use super::{cloudconfig, CLOUD_INIT_NOTE};

/// What a part of user-data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CloudConfig,
    /// Run with `run_cmd` once the network is up.
    Script,
    /// Run with `boot_cmd`, before the network.
    Boothook,
    /// Something cloud-init reads and rkos does not; named for the message.
    Unsupported(&'static str),
    Unknown,
}

fn kind_of_text(text: &str) -> Kind {
    let first = text.lines().next().unwrap_or("").trim_end();
    if first == "#cloud-config" || first.starts_with("#cloud-config ") {
        Kind::CloudConfig
    } else if first.starts_with("#cloud-boothook") {
        Kind::Boothook
    } else if first.starts_with("#!") {
        Kind::Script
    } else if first.starts_with("#include") {
        Kind::Unsupported("#include (user-data fetched from URLs)")
    } else if first.starts_with("#cloud-config-archive") {
        Kind::Unsupported("#cloud-config-archive")
    } else if first.starts_with("#part-handler") {
        Kind::Unsupported("#part-handler (Python code run by cloud-init)")
    } else if first.starts_with("## template: jinja") {
        Kind::Unsupported("## template: jinja")
    } else {
        Kind::Unknown
    }
}

fn kind_of_part(p: &Part) -> Kind {
    match p.content_type.as_str() {
        "text/cloud-config" => Kind::CloudConfig,
        "text/x-shellscript"
        | "text/x-shellscript-per-boot"
        | "text/x-shellscript-per-instance"
        | "text/x-shellscript-per-once" => Kind::Script,
        "text/cloud-boothook" => Kind::Boothook,
        "text/x-include-url" | "text/x-include-once-url" => {
            Kind::Unsupported("text/x-include-url (user-data fetched from URLs)")
        }
        "text/cloud-config-archive" => Kind::Unsupported("text/cloud-config-archive"),
        "text/part-handler" => {
            Kind::Unsupported("text/part-handler (Python code run by cloud-init)")
        }
        "text/jinja2" => Kind::Unsupported("text/jinja2 templates"),
        _ => kind_of_text(&p.body),
    }
}

/// The rkos tree of a user-data source, normalised, and what was found on the way; `Err`
/// when nothing of it can be used (not YAML, not a kind rkos reads, a broken message).
pub fn parse(source: &Source) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
    let text = source.text.trim_start_matches('\u{feff}');
    let src: Arc<str> = Arc::from(source.name.as_str());
    let top = Mark::new(&src, Some(1), 1);
    let mut diags = Vec::new();
    if !mime::is_mime(text) {
        let kind = kind_of_text(text);
        if matches!(kind, Kind::Unknown | Kind::Unsupported(_)) {
            let what = match kind {
                Kind::Unsupported(w) => format!("{w} user-data is not supported by rkos"),
                _ => "cloud-init user-data must start with `#cloud-config`, `#!` (a script), \
                      `#cloud-boothook` or be a MIME multipart message; this one does none \
                      of these"
                    .to_string(),
            };
            return Err(Diagnostic::error(
                source.name.clone(),
                "",
                format!("{what} and is ignored"),
            )
            .at(&top));
        }
        let tree = part_tree(kind, text, &top, None, &mut diags)?;
        return Ok((tree, diags));
    }
    let parts = mime::split(text).map_err(|e| {
        Diagnostic::error(
            source.name.clone(),
            "",
            format!("MIME user-data: {}", e.message),
        )
        .at(&Mark::new(&src, Some(e.line), 1))
    })?;
    let mut merged: Option<Node> = None;
    for p in &parts {
        let label = match &p.filename {
            Some(f) => format!("{} (part {}: {f})", source.name, p.index),
            None => format!("{} (part {})", source.name, p.index),
        };
        // A part that is the file's text keeps the file's name and lines; a decoded one is
        // named after the part, with lines counted in it.
        let (name, shift): (Arc<str>, usize) = match p.first_line {
            Some(l) => (src.clone(), l - 1),
            None => (Arc::from(label.as_str()), 0),
        };
        let mark = Mark::new(&name, Some(shift + 1), 1);
        // the part is parsed on its own, then its marks are moved to the file's lines
        let part_mark = Mark::new(&name, Some(1), 1);
        let kind = kind_of_part(p);
        let tree = match kind {
            Kind::Unknown | Kind::Unsupported(_) => {
                let what = match kind {
                    Kind::Unsupported(w) => format!("{w} is not supported by rkos"),
                    _ => format!("a part of type `{}` is not read by rkos", p.content_type),
                };
                diags.push(tree::warning(
                    &mark,
                    "",
                    format!("part {}: {what} (ignored)", p.index),
                ));
                continue;
            }
            _ => {
                let mut local = Vec::new();
                match part_tree(kind, &p.body, &part_mark, Some(p.index), &mut local) {
                    Ok(mut t) => {
                        if shift > 0 {
                            tree::shift(&mut t, shift, &name);
                            for d in &mut local {
                                d.line = d.line.map(|l| l + shift);
                            }
                        }
                        diags.extend(local);
                        t
                    }
                    // one broken part leaves out the whole user-data, as a broken file does
                    Err(mut d) => {
                        d.line = d.line.map(|l| l + shift);
                        d.source = name.to_string();
                        return Err(d);
                    }
                }
            }
        };
        merged = Some(match merged {
            None => tree,
            Some(m) => merge(m, tree),
        });
    }
    Ok((merged.unwrap_or_else(|| MapB::new(&top).build()), diags))
}

/// The normalised rkos tree of one part (or of a whole non-MIME user-data). `part` numbers
/// the scripts of a MIME message.
fn part_tree(
    kind: Kind,
    text: &str,
    mark: &Mark,
    part: Option<usize>,
    diags: &mut Vec<Diagnostic>,
) -> Result<Node, Diagnostic> {
    let raw = match kind {
        Kind::CloudConfig => {
            let doc = parse_yaml(&mark.source, text)?;
            let mut local = Vec::new();
            let t = cloudconfig::translate(doc, &mut local);
            diags.extend(local);
            t
        }
        Kind::Script | Kind::Boothook => script(kind, text, mark, part),
        Kind::Unknown | Kind::Unsupported(_) => MapB::new(mark).build(),
    };
    let mut norm = Normalizer::new(false);
    norm.unknown_root_note = Some(CLOUD_INIT_NOTE);
    let tree = norm.root(raw);
    diags.extend(norm.diagnostics);
    Ok(tree)
}

/// A script part: written to a file under /var/lib/rkos (0700) and run by `run_cmd`, or
/// `boot_cmd` for a boothook.
fn script(kind: Kind, text: &str, mark: &Mark, part: Option<usize>) -> Node {
    let path = match (kind, part) {
        (Kind::Boothook, None) => USER_DATA_BOOTHOOK.to_string(),
        (Kind::Boothook, Some(n)) => format!("{VAR_LIB_RKOS}/user-data-part{n}-boothook.sh"),
        (_, None) => USER_DATA_SCRIPT.to_string(),
        (_, Some(n)) => format!("{VAR_LIB_RKOS}/user-data-part{n}.sh"),
    };
    let mut file = MapB::new(mark);
    file.put("path", tree::text(&path, mark))
        .put("content", tree::text(text, mark))
        .put("permissions", tree::text("0700", mark));
    let mut m = MapB::new(mark);
    m.put("write_files", tree::seq(vec![file.build()], mark));
    let run = if kind == Kind::Boothook {
        "boot_cmd"
    } else {
        "run_cmd"
    };
    m.put(run, tree::seq(vec![tree::text(&path, mark)], mark));
    m.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::SourceKind;

    fn parse_text(text: &str) -> Result<(Node, Vec<String>), String> {
        parse(&Source::new(SourceKind::CloudInit, "user-data", text))
            .map(|(n, d)| (n, d.iter().map(ToString::to_string).collect()))
            .map_err(|d| d.to_string())
    }

    #[test]
    fn mime_parts_merge_in_order_and_keep_their_lines() {
        let msg = "Content-Type: multipart/mixed; boundary=\"b\"\nMIME-Version: 1.0\n\n--b\n\
Content-Type: text/cloud-config\n\n#cloud-config\nhostname: first\nruncmd: [echo a]\n\n--b\n\
Content-Type: text/x-shellscript\n\n#!/bin/sh\necho part2\n\n--b\n\
Content-Type: text/cloud-config\n\n#cloud-config\nhostname: second\nbogus: 1\n\n--b\n\
Content-Type: text/x-include-url\n\nhttps://example.com/more\n\n--b--\n";
        let (tree, diags) = parse_text(msg).unwrap();
        assert_eq!(tree.get("hostname").unwrap().as_str(), Some("second"));
        let run: Vec<&str> = tree::items(tree.get("run_cmd").unwrap())
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(run, ["echo a", "/var/lib/rkos/user-data-part2.sh"]);
        assert_eq!(
            diags,
            [
                format!("user-data:22:1: bogus: warning: unknown key `bogus`{CLOUD_INIT_NOTE} (ignored)"),
                "user-data:27:1: warning: part 4: text/x-include-url (user-data fetched from URLs) is not supported by rkos (ignored)".to_string(),
            ]
        );
    }

    #[test]
    fn what_cannot_be_read_is_an_error_at_its_place() {
        assert_eq!(
            parse_text("#include\nhttps://example.com/ud\n").unwrap_err(),
            "user-data:1:1: #include (user-data fetched from URLs) user-data is not supported by rkos and is ignored"
        );
        let broken = "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/cloud-config\n\n#cloud-config\nhostname: [x\n--b--\n";
        let e = parse_text(broken).unwrap_err();
        assert!(e.starts_with("user-data:8:1: not valid YAML"), "{e}");
        let (boothook, _) = parse_text("#cloud-boothook\n#!/bin/sh\necho early\n").unwrap();
        assert_eq!(
            tree::items(boothook.get("boot_cmd").unwrap())[0].as_str(),
            Some(USER_DATA_BOOTHOOK)
        );
    }
}
