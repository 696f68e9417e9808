//! rkos-config: the config.yaml schema, its sources and merge, validation and render.
//!
//! Pipeline: each [`Source`] is parsed into a position-carrying tree ([`node`]), normalised
//! against the schema ([`schema`]), checked on its own, merged with the others lowest
//! first ([`merge`]), deserialized into the typed [`Config`] and checked as a whole
//! ([`load`]). [`render()`] turns a config into files; [`apply`] writes them under a root.
//! cloud-init seeds (NoCloud, ConfigDrive: meta-data, user-data, network config) are read
//! into the same model by [`cloudinit`].
//!
//! The node's config (its standard sources under a root, with the last good copies of its
//! own files) is read through one entry point, [`NodeConfig`], by every program that reads it.

pub mod apply;
pub mod cloudinit;
pub mod cmdline;
pub mod datasource;
pub mod de;
pub mod diag;
pub mod emit;
mod load;
pub mod merge;
mod model;
pub mod node;
pub mod node_config;
pub mod render;
pub mod schema;
pub mod show;
pub mod source;
pub mod validate;

pub use diag::{Diagnostic, Severity};
pub use load::{
    count, load, load_parsed, parse_source, provenance, validate_text, Loaded, Parsed, Source,
    SourceKind,
};
pub use model::{
    default_hostname, node_default_hostname, primary_mac, Bond, Bridge, Config, DataDisk, Install,
    Interface, Network, Proxy, Rkos, Role, Route, Upgrade, Vlan, Wifi, WriteFile,
};
pub use node_config::{ImageDefaults, NodeConfig};
pub use render::{render, render_report, RenderContext, Rendered, RenderedFile};
/// How the node booted: the contract's type, which rkos-init records in `init.json`.
pub use rkos_contract::{BootMode, BootModeError};
