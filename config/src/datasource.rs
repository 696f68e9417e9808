//! `data_sources`: which URLs the node may fetch config from, how a fetched body is checked
//! before it is parsed, and what a fetched source may not set.
//!
//! A URL is `https://...`, or `http://...#sha256=HEX`: plain http carries no protection, so
//! it is taken only when the body's sha256 is pinned in the URL's fragment (an https URL may
//! carry a pin too). A fetched source is never a trust root: the keys in [`TRUST_ROOTS`] are
//! dropped from it with a warning, so what the node trusts to sign its upgrades comes only
//! from the image and from config the operator put on the node itself (docs/security.md).

use indexmap::IndexMap;

use crate::diag::Diagnostic;
use crate::node::{path_string, Node, PathSeg, Value};

/// The `data_sources` entry (k3OS's name) that lets an installed node read the seed volumes
/// attached to it (NoCloud `CIDATA`, ConfigDrive `config-2`), and its own boot partition's
/// `rkos/config.yaml` (`RKOS_EFI` on the disk it booted from), at every boot. The live ISO
/// always reads them; an installed node only with this, so a stick or a disk someone plugs
/// in cannot reconfigure it. The disk image's own config has it: its clones take their
/// config from their hypervisor's seed.
pub const SEED_VOLUMES: &str = "cdrom";

/// Whether `config` lets an installed node read its seed volumes ([`SEED_VOLUMES`]).
pub fn reads_seed_volumes(config: &crate::Config) -> bool {
    config.rkos.data_sources.iter().any(|s| s == SEED_VOLUMES)
}

/// Whether any of the raw `sources` says [`SEED_VOLUMES`] at all: a config none of whose
/// sources does cannot opt in, which rkos-init learns without a full load. A "yes" is only a
/// maybe (a full load decides); a "no" is certain unless a YAML escape spells the word, and
/// then the seed volumes stay unread, the safe side.
pub fn mentions_seed_volumes(sources: &[crate::Source]) -> bool {
    sources.iter().any(|s| s.text.contains(SEED_VOLUMES))
}

/// The fragment key that pins a body: `URL#sha256=HEX`.
const PIN: &str = "sha256=";

/// Keys a fetched data source may not set, as key paths of the normalised tree: the
/// minisign keys trusted to sign upgrade bundles. SSH keys are not on the list: a data
/// source is how cloud metadata hands out login keys, and it may already run commands as
/// root (`run_cmd`), so dropping them would protect nothing; a signing key would outlive
/// the source in every bundle it lets the node accept.
pub const TRUST_ROOTS: &[&[&str]] = &[&["rkos", "upgrade", "trusted_keys"]];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataSourceError {
    #[error("`{0}` is not a URL")]
    NotUrl(String),
    #[error("expected an https URL (or http pinned by `#sha256=HEX`), found `{0}`")]
    Scheme(String),
    #[error("plain http is refused unless the body is pinned: write `{0}#sha256=HEX`")]
    Unpinned(String),
    #[error("`{0}`: the pin must be `#sha256=` and 64 hex digits")]
    BadPin(String),
    #[error("{url}: the body's sha256 is {got}, the URL pins {want}")]
    Mismatch {
        url: String,
        want: String,
        got: String,
    },
}

/// A data source URL, split into what is fetched and the pin it is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSourceUrl {
    /// The URL without its fragment (a fragment is never sent to the server).
    pub fetch: String,
    /// The body's sha256 in lowercase hex, if pinned.
    pub sha256: Option<String>,
}

impl DataSourceUrl {
    /// Parses an entry of `data_sources`.
    pub fn parse(entry: &str) -> Result<Self, DataSourceError> {
        let url = url::Url::parse(entry).map_err(|_| DataSourceError::NotUrl(entry.into()))?;
        let sha256 = match url.fragment() {
            None => None,
            Some(f) => match f.strip_prefix(PIN) {
                Some(hex) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                    Some(hex.to_ascii_lowercase())
                }
                _ => return Err(DataSourceError::BadPin(entry.into())),
            },
        };
        let mut fetch = url.clone();
        fetch.set_fragment(None);
        let fetch = fetch.to_string();
        match url.scheme() {
            "https" => {}
            "http" if sha256.is_some() => {}
            "http" => return Err(DataSourceError::Unpinned(fetch)),
            _ => return Err(DataSourceError::Scheme(entry.into())),
        }
        Ok(DataSourceUrl { fetch, sha256 })
    }

    /// Checks a fetched body against the pin, if any: a body that fails is never parsed.
    pub fn check(&self, body: &[u8]) -> Result<(), DataSourceError> {
        let Some(want) = &self.sha256 else {
            return Ok(());
        };
        let mut h = rkos_io::Hasher::new();
        h.update(body);
        let got = h.finish().sha256;
        if &got == want {
            Ok(())
        } else {
            Err(DataSourceError::Mismatch {
                url: self.fetch.clone(),
                want: want.clone(),
                got,
            })
        }
    }
}

/// Removes the [`TRUST_ROOTS`] a fetched source set, with a warning naming each.
pub(crate) fn strip_trust_roots(tree: &mut Node, source: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for path in TRUST_ROOTS {
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let Some(map) = map_at(tree, parents) else {
            continue;
        };
        if let Some(entry) = map.shift_remove(*last) {
            let segs: Vec<PathSeg> = path.iter().map(|k| PathSeg::Key(k.to_string())).collect();
            out.push(
                Diagnostic::warning(
                    source,
                    path_string(&segs),
                    "ignored: a fetched data source may not set trust roots (set it in \
                     /var/lib/rkos/config.yaml or on the boot medium)",
                )
                .at(&entry.key_mark),
            );
        }
    }
    out
}

fn map_at<'a>(
    tree: &'a mut Node,
    path: &[&str],
) -> Option<&'a mut IndexMap<String, crate::node::Entry>> {
    let mut cur = tree;
    for key in path {
        cur = match &mut cur.value {
            Value::Map(m) => &mut m.get_mut(*key)?.node,
            _ => return None,
        };
    }
    match &mut cur.value {
        Value::Map(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{load, parse_source, Source, SourceKind};

    #[test]
    fn only_sources_that_say_cdrom_may_opt_in_to_the_seed_volumes() {
        let src = |t: &str| Source::new(SourceKind::Persistent, "c.yaml", t);
        let yes = src("rkos:\n  data_sources: [cdrom]\n");
        let no = src("rkos:\n  data_sources: [\"https://example.com/c.yaml\"]\n");
        assert!(mentions_seed_volumes(&[no.clone(), yes.clone()]));
        assert!(!mentions_seed_volumes(std::slice::from_ref(&no)));
        assert!(!mentions_seed_volumes(&[]));
        assert!(reads_seed_volumes(&load(&[yes]).config));
    }

    const BODY: &[u8] = b"hostname: pinned\n";
    // sha256 of BODY.
    fn pin() -> String {
        let mut h = rkos_io::Hasher::new();
        h.update(BODY);
        h.finish().sha256
    }

    #[test]
    fn https_is_taken_plain_http_only_when_pinned() {
        let u = DataSourceUrl::parse("https://cfg.example/n.yaml").unwrap();
        assert_eq!(u.fetch, "https://cfg.example/n.yaml");
        assert_eq!(u.sha256, None);
        assert_eq!(
            DataSourceUrl::parse("http://10.0.0.2/n.yaml"),
            Err(DataSourceError::Unpinned("http://10.0.0.2/n.yaml".into()))
        );
        let pinned = format!("http://10.0.0.2/n.yaml#sha256={}", pin().to_uppercase());
        let u = DataSourceUrl::parse(&pinned).unwrap();
        assert_eq!(
            u.fetch, "http://10.0.0.2/n.yaml",
            "the fragment is not fetched"
        );
        assert_eq!(u.sha256, Some(pin()));
        for bad in [
            "http://h/x#sha256=abc",
            "http://h/x#md5=0123",
            &format!("http://h/x#sha256={}g", &pin()[..63]),
        ] {
            assert!(
                matches!(DataSourceUrl::parse(bad), Err(DataSourceError::BadPin(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            DataSourceUrl::parse("ftp://h/x"),
            Err(DataSourceError::Scheme(_))
        ));
        assert!(matches!(
            DataSourceUrl::parse("aws"),
            Err(DataSourceError::NotUrl(_))
        ));
    }

    #[test]
    fn a_pinned_body_is_checked_before_use() {
        let u = DataSourceUrl::parse(&format!("http://h/x#sha256={}", pin())).unwrap();
        assert_eq!(u.check(BODY), Ok(()));
        let err = u.check(b"hostname: swapped\n").unwrap_err();
        assert!(matches!(err, DataSourceError::Mismatch { .. }), "{err}");
        // Unpinned https: TLS is the protection, any body passes.
        let u = DataSourceUrl::parse("https://h/x").unwrap();
        assert_eq!(u.check(b"anything"), Ok(()));
    }

    #[test]
    fn an_unpinned_http_source_is_an_error() {
        let text = "rkos:\n  data_sources: [http://10.0.0.2/n.yaml]\n";
        let p = parse_source(&Source::new(SourceKind::Persistent, "c.yaml", text));
        let errors: Vec<String> = p
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("pinned"), "{}", errors[0]);
        let text = format!(
            "rkos:\n  data_sources: ['http://10.0.0.2/n.yaml#sha256={}']\n",
            pin()
        );
        let p = parse_source(&Source::new(SourceKind::Persistent, "c.yaml", text));
        assert!(!p.has_errors(), "{:?}", p.diagnostics);
    }

    #[test]
    fn a_fetched_source_cannot_add_trusted_keys() {
        const OWN: &str = "RWQBAgMEBQYHCGRlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKD";
        const EVIL: &str = "RWQRERERERERERERERERERERERERERERERERERERERERERERERERERER";
        let own = format!("rkos:\n  upgrade:\n    trusted_keys: [{OWN}]\n");
        let fetched = format!("hostname: fetched\nk3os:\n  upgrade:\n    trusted_keys: [{EVIL}]\n");
        let loaded = load(&[
            Source::new(SourceKind::Persistent, "own.yaml", own.as_str()),
            Source::new(SourceKind::DataSource, "01.yaml", fetched.as_str()),
        ]);
        assert_eq!(loaded.config.rkos.upgrade.trusted_keys, vec![OWN]);
        // The rest of the fetched source still counts.
        assert_eq!(loaded.config.hostname.as_deref(), Some("fetched"));
        let warned: Vec<String> = loaded
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .filter(|d| d.contains("trust roots"))
            .collect();
        assert_eq!(warned.len(), 1, "{:?}", loaded.diagnostics);
        assert!(warned[0].contains("01.yaml:4"), "{}", warned[0]);
        // The same keys from the node's own files are kept.
        let loaded = load(&[Source::new(
            SourceKind::Persistent,
            "own.yaml",
            fetched.as_str(),
        )]);
        assert_eq!(
            loaded.config.rkos.upgrade.trusted_keys,
            vec![EVIL],
            "{:?}",
            loaded.diagnostics
        );
    }
}
