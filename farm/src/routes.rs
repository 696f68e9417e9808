//! What `rkos farm serve` answers for each path: pure, so the whole URL space is tested
//! without a server (the HTTP side is `rkos farm serve`, cli/src/farm_cmd.rs).

use std::path::{Path, PathBuf};

use rkos_contract::files;

use crate::inventory::Inventory;
use crate::render::{self, IMAGE_PATH};

/// The files of the image directory the farm serves (and nothing else from it: no path
/// from a request ever reaches the file system).
pub const IMAGE_FILES: [&str; 7] = [
    files::VMLINUZ,
    files::INITRD,
    files::ROOTFS,
    files::MANIFEST,
    files::SIGNATURE,
    "undionly.kpxe",
    "ipxe.efi",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A generated text: an iPXE script or a config.yaml.
    Text {
        content_type: &'static str,
        body: String,
    },
    /// A file of the image directory, served with `Range` support.
    File(PathBuf),
    NotFound(String),
    /// The inventory cannot make this node's answer (a broken config fragment, the token
    /// file unreadable).
    Error(String),
}

const IPXE: &str = "text/plain; charset=utf-8";
const YAML: &str = "application/yaml";

/// The answer to `GET path`. `token` reads the join token (the file may have been rotated
/// since the last request); `secret` is the farm's node password secret.
pub fn answer(
    inv: &Inventory,
    dir: &Path,
    path: &str,
    token: &dyn Fn() -> Result<String, String>,
    secret: &[u8],
) -> Reply {
    let path = path.split('?').next().unwrap_or("");
    if path == "/boot.ipxe" {
        return Reply::Text {
            content_type: IPXE,
            body: render::boot_script(inv),
        };
    }
    if let Some(name) = path
        .strip_prefix(IMAGE_PATH)
        .and_then(|p| p.strip_prefix('/'))
    {
        return match IMAGE_FILES.contains(&name) {
            true => Reply::File(dir.join(name)),
            false => Reply::NotFound(format!(
                "{path}: the farm serves only {}",
                IMAGE_FILES.join(", ")
            )),
        };
    }
    let Some((mac, what)) = path.strip_prefix("/nodes/").and_then(|p| p.split_once('/')) else {
        return Reply::NotFound(format!("{path}: not a path of the farm"));
    };
    let Some(mac) = rkos_contract::normalize_mac(mac) else {
        return Reply::NotFound(format!("{path}: {mac:?} is not a MAC address"));
    };
    let node = inv.lookup(&mac);
    match what {
        "boot.ipxe" => Reply::Text {
            content_type: IPXE,
            body: render::node_script(inv, &mac, node.as_ref()),
        },
        "config.yaml" => {
            let Some(node) = node else {
                return Reply::NotFound(format!(
                    "MAC {mac} is in no pool of the inventory and there is no catch-all pool"
                ));
            };
            let token = match token() {
                Ok(t) => t,
                Err(e) => return Reply::Error(e),
            };
            match render::node_config(inv, &node, &token, secret) {
                Ok(body) => Reply::Text {
                    content_type: YAML,
                    body,
                },
                Err(d) => Reply::Error(render::describe(&d)),
            }
        }
        _ => Reply::NotFound(format!("{path}: not a path of the farm")),
    }
}
