//! cloud-init seeds as hypervisors write them, read into rkos's config model.
//!
//! - Where seeds are: a NoCloud volume (`CIDATA`/`cidata`: `meta-data`, `network-config`,
//!   `vendor-data`, `user-data`) and a ConfigDrive (`config-2`:
//!   `openstack/latest/{meta_data.json,network_data.json,user_data}`), both copied to
//!   `/run/rkos/` by rkos-init, and a NoCloud seed URL (`ds=nocloud;s=URL` or
//!   `ds=nocloud-net;s=URL` on the kernel command line), fetched into `/run/rkos/nocloud-net/`
//!   by `rkos config apply --stage network`. [`seed_sources`] lists them in merge order.
//! - [`metadata`]: host name, public keys, and the instance id (the node's identity).
//! - [`userdata`]: `#cloud-config` ([`cloudconfig`] maps cloud-init's keys onto rkos's),
//!   scripts, boothooks, MIME multipart ([`mime`]).
//! - [`network`]: network-config v1 ([`netv1`]), v2 ([`netv2`]) and `network_data.json`
//!   ([`configdrive`]) into `rkos.network`. When another source sets `rkos.network`, the
//!   seed's network config is not used ([`network_yields`]).
//!
//! Everything here is pure: text in, position-carrying trees and diagnostics out.

pub mod cloudconfig;
mod configdrive;
pub mod metadata;
pub mod mime;
mod netv1;
mod netv2;
pub mod network;
mod tree;
pub mod userdata;

use std::path::{Path, PathBuf};

use rkos_contract::paths::{self, under};

use crate::diag::Diagnostic;
use crate::load::{Parsed, Source, SourceKind};
use crate::node::PathSeg;

/// Added to the warning for a key of user-data that rkos does not read.
pub const CLOUD_INIT_NOTE: &str =
    "; rkos does not read this cloud-init key (see docs/config.md, \"cloud-init\")";

/// Whether sources of this kind are parsed here.
pub fn is_seed(kind: SourceKind) -> bool {
    matches!(
        kind,
        SourceKind::CloudMetaData | SourceKind::CloudNetwork | SourceKind::CloudInit
    )
}

/// The normalised rkos tree of a seed file and its diagnostics; `Err` when nothing of it can
/// be used.
pub fn parse(source: &Source) -> Result<(crate::node::Node, Vec<Diagnostic>), Diagnostic> {
    match source.kind {
        SourceKind::CloudMetaData => metadata::parse(source),
        SourceKind::CloudNetwork => network::parse(source),
        _ => userdata::parse(source),
    }
}

/// The kind of a seed file by its name (`meta-data`, `network_data.json`, ...), else by its
/// text (`#cloud-config`, `#!`, a MIME message): for `rkos config validate FILE`.
pub fn kind_of(name: &str, text: &str) -> Option<SourceKind> {
    let base = Path::new(name)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `meta-data`, and also `vm1.meta-data`
    let named = |n: &str| base == n || base.ends_with(&format!(".{n}"));
    if ["meta-data", "meta_data.json"].into_iter().any(named) {
        return Some(SourceKind::CloudMetaData);
    }
    if ["network-config", "network_data.json"]
        .into_iter()
        .any(named)
    {
        return Some(SourceKind::CloudNetwork);
    }
    if ["user-data", "user_data", "vendor-data"]
        .into_iter()
        .any(named)
    {
        return Some(SourceKind::CloudInit);
    }
    let t = text.trim_start_matches('\u{feff}');
    let first = t.lines().next().unwrap_or("");
    (first.starts_with("#cloud-config")
        || first.starts_with("#!")
        || first.starts_with("#cloud-boothook")
        || mime::is_mime(t))
    .then_some(SourceKind::CloudInit)
}

/// The seed files under `root` that exist, in merge order, lowest first: every meta-data,
/// every network config, vendor-data, then user-data; within each, the ConfigDrive, the
/// NoCloud volume, then a NoCloud seed fetched from a URL.
pub fn seed_sources(root: &Path) -> Vec<(SourceKind, PathBuf)> {
    let dirs = [
        (under(root, paths::CONFIG_DRIVE_DIR), true),
        (under(root, paths::CIDATA_DIR), false),
        (under(root, paths::NOCLOUD_NET_DIR), false),
    ];
    let file = |drive: bool, nocloud: &str| -> &'static str {
        let pick = |a: &'static str, b: &'static str| if drive { a } else { b };
        match nocloud {
            "meta-data" => pick("meta_data.json", "meta-data"),
            "network-config" => pick("network_data.json", "network-config"),
            "vendor-data" => pick("", "vendor-data"),
            _ => pick("user_data", "user-data"),
        }
    };
    let mut out = Vec::new();
    for (which, kind) in [
        ("meta-data", SourceKind::CloudMetaData),
        ("network-config", SourceKind::CloudNetwork),
        ("vendor-data", SourceKind::CloudInit),
        ("user-data", SourceKind::CloudInit),
    ] {
        for (dir, drive) in &dirs {
            let name = file(*drive, which);
            if name.is_empty() {
                continue;
            }
            let p = dir.join(name);
            if p.is_file() {
                out.push((kind, p));
            }
        }
    }
    out
}

/// The instance id of the seed under `root` (the first meta-data, in [`seed_sources`]'s
/// order, that has one), and the file it came from.
pub fn instance_id(root: &Path) -> Option<(String, PathBuf)> {
    seed_sources(root)
        .into_iter()
        .filter(|(k, _)| *k == SourceKind::CloudMetaData)
        .find_map(|(_, p)| {
            let text = std::fs::read_to_string(&p).ok()?;
            metadata::instance_id(&text).map(|id| (id, p))
        })
}

/// A NoCloud seed named on the kernel command line: `ds=nocloud;s=URL` (also
/// `ds=nocloud-net`, `seedfrom=`); cloud-init's own syntax, `;`-separated, in one word (the
/// last `ds=` counts, as for every key: `rkos_contract::cmdline`).
pub fn nocloud_seed_url(cmdline: &str) -> Option<String> {
    let line = rkos_contract::cmdline::Cmdline::parse(cmdline);
    let mut fields = line.get("ds")?.split(';');
    let ds = fields.next()?;
    if ds != "nocloud" && ds != "nocloud-net" {
        return None;
    }
    fields.find_map(|f| {
        let (k, v) = f.split_once('=')?;
        (k == "s" || k == "seedfrom").then(|| v.to_string())
    })
}

/// When a source other than the seed's network config sets `rkos.network.interfaces`, the
/// seed's network config (all of it, DNS too) is not used: rkos's own wins, whole, rather
/// than two descriptions of one network being mixed. Returns the sources to merge, with a
/// warning for each network config left out.
pub fn network_yields(
    parsed: Vec<(String, Parsed)>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(String, Parsed)> {
    let path = [
        PathSeg::Key("rkos".into()),
        PathSeg::Key("network".into()),
        PathSeg::Key("interfaces".into()),
    ];
    let sets_network = |p: &Parsed| {
        p.tree
            .lookup(&path)
            .is_some_and(|n| !tree::items(n).is_empty())
    };
    let owner = parsed
        .iter()
        .rev()
        .find(|(_, p)| p.kind != SourceKind::CloudNetwork && !p.has_errors() && sets_network(p))
        .map(|(name, _)| name.clone());
    let Some(owner) = owner else {
        return parsed;
    };
    parsed
        .into_iter()
        .map(|(name, mut p)| {
            if p.kind == SourceKind::CloudNetwork && !p.has_errors() && !p.tree.as_map().is_some_and(|m| m.is_empty()) {
                diags.push(Diagnostic::warning(
                    name.clone(),
                    "",
                    format!("not used: rkos.network is set in {owner}, and rkos's own network config wins over the seed's"),
                ));
                p.tree = tree::MapB::new(&p.tree.mark).build();
            }
            (name, p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_found_in_order() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let w = |p: &str, t: &str| crate::source::write_under(r, p, t);
        w("run/rkos/cidata/user-data", "#cloud-config\n");
        w("run/rkos/cidata/meta-data", "local-hostname: a\n");
        w(
            "run/rkos/config-2/meta_data.json",
            r#"{"uuid": "drive-id"}"#,
        );
        w("run/rkos/config-2/network_data.json", "{}");
        w("run/rkos/nocloud-net/vendor-data", "#cloud-config\n");
        let got: Vec<(SourceKind, String)> = seed_sources(r)
            .into_iter()
            .map(|(k, p)| (k, p.strip_prefix(r).unwrap().display().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    SourceKind::CloudMetaData,
                    "run/rkos/config-2/meta_data.json".into()
                ),
                (
                    SourceKind::CloudMetaData,
                    "run/rkos/cidata/meta-data".into()
                ),
                (
                    SourceKind::CloudNetwork,
                    "run/rkos/config-2/network_data.json".into()
                ),
                (
                    SourceKind::CloudInit,
                    "run/rkos/nocloud-net/vendor-data".into()
                ),
                (SourceKind::CloudInit, "run/rkos/cidata/user-data".into()),
            ]
        );
        let (id, from) = instance_id(r).unwrap();
        assert_eq!(id, "drive-id");
        assert!(from.ends_with("meta_data.json"));
    }

    #[test]
    fn kinds_and_seed_urls() {
        assert_eq!(
            kind_of("/tmp/x/network-config", ""),
            Some(SourceKind::CloudNetwork)
        );
        assert_eq!(
            kind_of("meta_data.json", "{}"),
            Some(SourceKind::CloudMetaData)
        );
        assert_eq!(
            kind_of("seed.txt", "Content-Type: multipart/mixed; boundary=x\n"),
            Some(SourceKind::CloudInit)
        );
        assert_eq!(kind_of("config.yaml", "hostname: a\n"), None);
        assert_eq!(
            nocloud_seed_url("quiet ds=nocloud-net;s=http://10.0.2.2:8000/seed/ rkos.x=1")
                .as_deref(),
            Some("http://10.0.2.2:8000/seed/")
        );
        assert_eq!(
            nocloud_seed_url("ds=nocloud;h=node;seedfrom=https://s/").as_deref(),
            Some("https://s/")
        );
        assert_eq!(nocloud_seed_url("ds=ec2;s=http://x/"), None);
        assert_eq!(nocloud_seed_url("ds=nocloud"), None);
    }

    #[test]
    fn the_node_own_network_wins_whole() {
        let seed = Source::new(
            SourceKind::CloudNetwork,
            "network-config",
            "version: 2\nethernets:\n  eth0: {addresses: [10.0.0.5/24], nameservers: {addresses: [10.0.0.1]}}\n",
        );
        let mine = Source::new(
            SourceKind::Persistent,
            "config.yaml",
            "rkos:\n  network:\n    interfaces:\n      - {name: eth1, dhcp: true}\n",
        );
        let loaded = crate::load(&[seed.clone(), mine]);
        let names: Vec<&str> = loaded
            .config
            .rkos
            .network
            .interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, ["eth1"]);
        assert!(loaded.config.rkos.network.interfaces[0].dns.is_empty());
        let d: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(d, ["network-config: warning: not used: rkos.network is set in config.yaml, and rkos's own network config wins over the seed's"]);
        // alone, it is used
        let alone = crate::load(&[seed]);
        assert_eq!(
            alone.config.rkos.network.interfaces[0].addresses,
            ["10.0.0.5/24"]
        );
    }
}
