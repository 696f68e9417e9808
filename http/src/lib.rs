//! rkos-http: the one HTTP client of the node's command (config `data_sources`, remote SSH
//! keys, the wizard's GitHub lookups, `rkos install --config URL`, upgrade bundles).
//!
//! It is also rkos-init's client for a network boot (the image and the node's config), so
//! it is synchronous without an async runtime: ureq, with rustls (ring provider, as the rest
//! of the workspace) and the system's CA roots behind the `tls` feature. rkos-init builds
//! without `tls`: plain HTTP only, what it fetches being checked otherwise (docs/netboot.md).
//! A user agent naming rkos, timeouts on connecting and on every read, bodies read with a
//! size cap that is enforced while reading (a server cannot make the node buffer more than
//! the cap), and `Range` requests so a download resumes where it stopped.

use std::io::{self, Read};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("building the HTTP client: {0}")]
    Build(String),
    /// No response: DNS, connection, TLS, timeout.
    #[error("{url}: {reason}")]
    Request {
        url: String,
        /// What it means to a person (offline, no answer in time).
        reason: String,
        /// The whole error chain, for logs.
        detail: String,
    },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the response is larger than {limit} bytes")]
    TooBig { url: String, limit: u64 },
    #[error("{url}: reading the response: {reason}")]
    Read { url: String, reason: String },
}

impl HttpError {
    /// The message without the URL, for callers whose message names it already.
    pub fn reason(&self) -> String {
        match self {
            HttpError::Build(r) => r.clone(),
            HttpError::Request { reason, .. } | HttpError::Read { reason, .. } => reason.clone(),
            HttpError::Status { status, .. } => format!("HTTP {status}"),
            HttpError::TooBig { limit, .. } => format!("larger than {limit} bytes"),
        }
    }

    /// Whether the same request may succeed later: network trouble, 5xx, 429.
    pub fn is_transient(&self) -> bool {
        match self {
            HttpError::Request { .. } | HttpError::Read { .. } => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 429,
            HttpError::Build(_) | HttpError::TooBig { .. } => false,
        }
    }
}

/// A response body from a byte offset on (see [`Client::open`]).
pub struct Ranged {
    pub reader: Box<dyn Read + Send>,
    /// Where the body starts in the file: the offset asked for, or 0 when the server
    /// ignored the `Range` header and sent the whole file.
    pub start: u64,
    /// The whole file's length, when the server says it.
    pub total: Option<u64>,
}

#[derive(Clone)]
pub struct Client {
    inner: ureq::Agent,
}

const PARTIAL_CONTENT: u16 = 206;
const RANGE_NOT_SATISFIABLE: u16 = 416;

impl Client {
    /// A client whose connect and each read must finish within `timeout`.
    pub fn new(timeout: Duration) -> Result<Client, HttpError> {
        Self::build(timeout, None)
    }

    /// For large downloads: connecting may take `connect`; then each read gets `read`, so a
    /// stalled transfer fails (and can resume) while a slow steady one goes on.
    pub fn for_downloads(connect: Duration, read: Duration) -> Result<Client, HttpError> {
        Self::build(read, Some(connect))
    }

    fn build(read: Duration, connect: Option<Duration>) -> Result<Client, HttpError> {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(connect.unwrap_or(read)))
            .timeout_per_read(Some(read))
            .user_agent(concat!("rkos/", env!("CARGO_PKG_VERSION")))
            // Statuses are this crate's to report (with the URL), not errors of the agent.
            .http_status_as_error(false);
        #[cfg(feature = "tls")]
        let config = config.tls_config(tls::config());
        Ok(Client {
            inner: config.build().into(),
        })
    }

    /// The body of a successful GET of `url`, at most `limit` bytes.
    pub fn get_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>, HttpError> {
        let resp = self.send(url, 0)?;
        if !resp.status().is_success() {
            return Err(status_error(url, resp.status().as_u16()));
        }
        if resp.body().content_length().is_some_and(|n| n > limit) {
            return Err(HttpError::TooBig {
                url: url.to_string(),
                limit,
            });
        }
        // Read one byte past the cap: its presence is the proof of "too big", and nothing
        // beyond it is ever buffered, whatever the server sends (or claims to send).
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| read_error(url, &e))?;
        if body.len() as u64 > limit {
            return Err(HttpError::TooBig {
                url: url.to_string(),
                limit,
            });
        }
        Ok(body)
    }

    /// [`Client::get_bytes`] as text (invalid UTF-8 is replaced, as browsers do).
    pub fn get_text(&self, url: &str, limit: u64) -> Result<String, HttpError> {
        let body = self.get_bytes(url, limit)?;
        Ok(String::from_utf8(body)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// GET `url` from byte `offset` on (`Range: bytes=OFFSET-` when the offset is not 0).
    /// A server that ignores the range sends the whole file ([`Ranged::start`] is then 0);
    /// asked past the end (416), the body is empty and the caller's size check decides.
    pub fn open(&self, url: &str, offset: u64) -> Result<Ranged, HttpError> {
        let resp = self.send(url, offset)?;
        match resp.status().as_u16() {
            PARTIAL_CONTENT if offset > 0 => {
                let total = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range_total);
                Ok(Ranged {
                    reader: Box::new(resp.into_body().into_reader()),
                    start: offset,
                    total,
                })
            }
            200 => {
                let total = resp.body().content_length();
                Ok(Ranged {
                    reader: Box::new(resp.into_body().into_reader()),
                    start: 0,
                    total,
                })
            }
            RANGE_NOT_SATISFIABLE => Ok(Ranged {
                reader: Box::new(io::empty()),
                start: offset,
                total: None,
            }),
            s => Err(status_error(url, s)),
        }
    }

    fn send(&self, url: &str, offset: u64) -> Result<ureq::http::Response<ureq::Body>, HttpError> {
        #[cfg(not(feature = "tls"))]
        if url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        {
            let reason = "https:// is not supported here (built without TLS)".to_string();
            return Err(HttpError::Request {
                url: url.to_string(),
                detail: reason.clone(),
                reason,
            });
        }
        let mut req = self.inner.get(url);
        if offset > 0 {
            req = req.header("range", format!("bytes={offset}-"));
        }
        req.call().map_err(|e| HttpError::Request {
            url: url.to_string(),
            reason: plain(&e),
            detail: chain(&e),
        })
    }
}

fn status_error(url: &str, status: u16) -> HttpError {
    HttpError::Status {
        url: url.to_string(),
        status,
    }
}

fn read_error(url: &str, e: &io::Error) -> HttpError {
    HttpError::Read {
        url: url.to_string(),
        reason: chain(e),
    }
}

/// What a failed request means to the person at the console.
fn plain(e: &ureq::Error) -> String {
    use io::ErrorKind::*;
    match e {
        ureq::Error::Timeout(_) => "no answer in time (is the network up?)".into(),
        ureq::Error::HostNotFound => "could not connect (offline, or DNS does not resolve)".into(),
        ureq::Error::ConnectionFailed => {
            "could not connect (offline, or DNS does not resolve)".into()
        }
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                ConnectionRefused | NetworkUnreachable | HostUnreachable | AddrNotAvailable
            ) =>
        {
            "could not connect (offline, or DNS does not resolve)".into()
        }
        ureq::Error::Io(io) if io.kind() == TimedOut => {
            "no answer in time (is the network up?)".into()
        }
        e => chain(e),
    }
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(feature = "tls")]
mod tls {
    use std::sync::Once;

    static PROVIDER: Once = Once::new();

    /// rustls with the process's ring provider (installed once: with two providers compiled
    /// in, rustls cannot pick a default), verifying against the system's CA store.
    pub fn config() -> ureq::tls::TlsConfig {
        PROVIDER.call_once(|| {
            // Another part of the process may have installed one already: either is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build()
    }
}

/// `bytes 100-199/1000` -> 1000.
fn content_range_total(v: &str) -> Option<u64> {
    v.rsplit_once('/')?.1.trim().parse().ok()
}

#[cfg(test)]
mod tests;
