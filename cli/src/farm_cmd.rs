//! `rkos farm serve` and `rkos farm dnsmasq`: the netboot farm's edges over `rkos-farm`.
//!
//! The server is axum on tokio, as the agent's: a farm rebooting a rack at once holds many
//! long downloads open, which is what an async server is for, and tower-http's `ServeFile`
//! does `Range`, `HEAD` and conditional requests the way the nodes' resumed downloads need.
//! Everything it answers is decided by `rkos_farm::routes::answer` (pure, tested); this file
//! only reads the inventory, the token and the farm's secret, and speaks HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use clap::{Args, Subcommand};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use rkos_farm::render;
use rkos_farm::routes::{self, Reply};
use rkos_farm::Inventory;

#[derive(Subcommand)]
pub enum FarmCmd {
    /// Serve the netboot image, each node's iPXE script and config.yaml over HTTP.
    Serve(ServeArgs),
    /// Write dnsmasq's configuration (PXE/TFTP to iPXE, then HTTP to `rkos farm serve`).
    Dnsmasq(DnsmasqArgs),
    /// Check the inventory (and every node's config) and print what each MAC boots as.
    Check(CheckArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// The image directory (`make netboot`'s dist/netboot/): vmlinuz, initrd,
    /// rootfs.squashfs, manifest.json and its signature. Read at each request, so pointing
    /// a symlink at a new build serves it from the nodes' next boot on.
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub inventory: PathBuf,
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Where the farm keeps its secret when the inventory names no `cluster.node_secret_file`.
    #[arg(long, default_value = "/var/lib/rkos/farm")]
    pub state_dir: PathBuf,
}

#[derive(Args)]
pub struct DnsmasqArgs {
    #[arg(long)]
    pub inventory: PathBuf,
    /// The directory dnsmasq's TFTP serves iPXE from (`undionly.kpxe`, `ipxe.efi`); default
    /// the inventory's `dhcp.tftp_root`, else /srv/rkos/netboot.
    #[arg(long)]
    pub tftp_root: Option<String>,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct CheckArgs {
    #[arg(long)]
    pub inventory: PathBuf,
}

pub fn run(cmd: FarmCmd) -> Result<()> {
    match cmd {
        FarmCmd::Serve(a) => serve(a),
        FarmCmd::Dnsmasq(a) => {
            let inv = load(&a.inventory)?;
            let root = a
                .tftp_root
                .or_else(|| inv.spec.dhcp.tftp_root.clone())
                .unwrap_or_else(|| "/srv/rkos/netboot".into());
            let text = render::dnsmasq(&inv, &root);
            match a.out {
                Some(p) => rkos_io::write_atomic(&p, text.as_bytes(), 0o644)
                    .with_context(|| format!("writing {}", p.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        FarmCmd::Check(a) => {
            let inv = load(&a.inventory)?;
            let token = read_token(&inv).unwrap_or_else(|_| "K10checkonly::server:x".into());
            let problems = render::check_configs(&inv, &token);
            if !problems.is_empty() {
                bail!(
                    "the inventory makes invalid node configs:\n{}",
                    render::describe(&problems)
                );
            }
            for n in inv.listed() {
                println!(
                    "{}\tpool {}\t{}",
                    n.name,
                    n.pool,
                    render::kernel_cmdline(&inv, &n)
                );
            }
            if let Some(p) = inv.catch_all() {
                println!("(any other MAC)\tpool {p}");
            }
            Ok(())
        }
    }
}

fn load(path: &Path) -> Result<Inventory> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Inventory::parse(&path.display().to_string(), &text)
        .map_err(|d| anyhow::anyhow!("{} has errors:\n{}", path.display(), render::describe(&d)))
}

/// The join token: the inventory's, or its token file's current content.
fn read_token(inv: &Inventory) -> std::result::Result<String, String> {
    let c = &inv.spec.cluster;
    match (&c.token, &c.token_file) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("the join token file {f}: {e}"))
            .and_then(|t| match t.is_empty() {
                true => Err(format!("the join token file {f} is empty")),
                false => Ok(t),
            }),
        (None, None) => Err("the inventory gives no join token".into()),
    }
}

/// The farm's secret for node passwords: read, or made (32 random bytes, 0600) on first use.
fn node_secret(inv: &Inventory, state_dir: &Path) -> Result<Vec<u8>> {
    let path = inv
        .spec
        .cluster
        .node_secret_file
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("node-secret"));
    match std::fs::read(&path) {
        Ok(s) if s.len() >= 16 => return Ok(s),
        Ok(_) => bail!("{} is shorter than 16 bytes", path.display()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("reading {}", path.display()))
        }
        Err(_) => {}
    }
    let mut secret = vec![0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut secret).context("reading /dev/urandom")?;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    rkos_io::write_atomic(&path, &secret, 0o600)
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!("made the farm's node password secret {}", path.display());
    Ok(secret)
}

struct Farm {
    inv: Inventory,
    dir: PathBuf,
    secret: Vec<u8>,
}

fn serve(a: ServeArgs) -> Result<()> {
    let inv = load(&a.inventory)?;
    match read_token(&inv) {
        Ok(t) => {
            let problems = render::check_configs(&inv, &t);
            if !problems.is_empty() {
                bail!(
                    "the inventory makes invalid node configs:\n{}",
                    render::describe(&problems)
                );
            }
        }
        // k3s may write its token after the farm starts: nodes get an error until it does.
        Err(e) => tracing::warn!("{e}; node configs fail until it is readable"),
    }
    let manifest = a.dir.join(rkos_contract::files::MANIFEST);
    if !manifest.is_file() {
        tracing::warn!(
            "{} is missing: nodes will refuse the image",
            manifest.display()
        );
    }
    let secret = node_secret(&inv, &a.state_dir)?;
    let farm = Arc::new(Farm {
        inv,
        dir: a.dir.clone(),
        secret,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let app = axum::Router::new().fallback(handle).with_state(farm);
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("listening on {}", a.listen))?;
        tracing::info!("rkos farm serving {} on {}", a.dir.display(), a.listen);
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
    })
}

async fn handle(
    State(farm): State<Arc<Farm>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_string();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n").into_response();
    }
    let token = || read_token(&farm.inv);
    let reply = routes::answer(&farm.inv, &farm.dir, &path, &token, &farm.secret);
    let resp = match reply {
        Reply::Text { content_type, body } => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Reply::File(p) => match ServeFile::new(&p).oneshot(req).await {
            Ok(r) => r.map(Body::new),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}\n", p.display()),
            )
                .into_response(),
        },
        Reply::NotFound(m) => (StatusCode::NOT_FOUND, format!("{m}\n")).into_response(),
        Reply::Error(m) => {
            tracing::error!(%peer, path, "{m}");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{m}\n")).into_response()
        }
    };
    tracing::info!(%peer, path, status = resp.status().as_u16(), "request");
    resp
}
