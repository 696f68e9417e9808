//! Where a bundle comes from: a local directory or an http(s) base URL. Both give the same
//! things: small files read whole (manifest, signature) and a byte stream of a file from an
//! offset (HTTP `Range`), so staging code is one path for both.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

use crate::error::{BundleError, IoContext, Result};

/// Largest manifest or signature we accept (they are a few hundred bytes).
const SMALL_LIMIT: u64 = 64 * 1024;

pub enum Source {
    Dir(PathBuf),
    Http { base: String, client: Client },
}

/// A stream of one file's bytes from `start`.
pub struct Opened {
    pub reader: Box<dyn Read + Send>,
    /// Where the stream actually starts (0 when a server ignored the Range request).
    pub start: u64,
    /// The file's full length when the source says it.
    pub total: Option<u64>,
}

static RUSTLS_PROVIDER: Once = Once::new();

impl Source {
    /// `http://...` or `https://...` (a base URL: files are fetched as `URL/name`), else a
    /// directory path.
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("http://") || s.starts_with("https://") {
            RUSTLS_PROVIDER.call_once(|| {
                // Another part of the process may have installed one already: either is fine.
                let _ = rustls::crypto::ring::default_provider().install_default();
            });
            let client = Client::builder()
                .connect_timeout(Duration::from_secs(15))
                // Applies to each read, so a stalled transfer fails and is retried with Range.
                .timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| BundleError::Source(s.to_string(), e.to_string()))?;
            Ok(Source::Http {
                base: s.trim_end_matches('/').to_string(),
                client,
            })
        } else if s.contains("://") {
            Err(BundleError::Source(
                s.to_string(),
                "only http://, https:// or a local directory".into(),
            ))
        } else {
            let p = PathBuf::from(s);
            if !p.is_dir() {
                return Err(BundleError::Source(s.to_string(), "not a directory".into()));
            }
            Ok(Source::Dir(p))
        }
    }

    pub fn describe(&self, name: &str) -> String {
        match self {
            Source::Dir(d) => d.join(name).display().to_string(),
            Source::Http { base, .. } => format!("{base}/{name}"),
        }
    }

    /// Reads a small file whole (manifest, signature).
    pub fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let what = self.describe(name);
        let opened = self.open(name, 0)?;
        let mut buf = Vec::new();
        opened
            .reader
            .take(SMALL_LIMIT + 1)
            .read_to_end(&mut buf)
            .map_err(|e| BundleError::Transfer {
                what: what.clone(),
                attempts: 1,
                last: e.to_string(),
            })?;
        if buf.len() as u64 > SMALL_LIMIT {
            return Err(BundleError::SmallFileTooBig {
                what,
                limit: SMALL_LIMIT,
            });
        }
        Ok(buf)
    }

    /// Opens `name` at byte `offset`.
    pub fn open(&self, name: &str, offset: u64) -> Result<Opened> {
        let what = self.describe(name);
        match self {
            Source::Dir(d) => {
                let path = d.join(name);
                let mut f = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
                let total = f
                    .metadata()
                    .ctx(|| format!("stat {}", path.display()))?
                    .len();
                f.seek(SeekFrom::Start(offset.min(total)))
                    .ctx(|| format!("seeking {}", path.display()))?;
                Ok(Opened {
                    reader: Box::new(f),
                    start: offset.min(total),
                    total: Some(total),
                })
            }
            Source::Http { client, .. } => {
                let mut req = client.get(&what);
                if offset > 0 {
                    req = req.header(RANGE, format!("bytes={offset}-"));
                }
                let resp = req.send().map_err(|e| BundleError::Transfer {
                    what: what.clone(),
                    attempts: 1,
                    last: error_chain(&e),
                })?;
                let status = resp.status();
                match status {
                    StatusCode::PARTIAL_CONTENT if offset > 0 => {
                        let total = resp
                            .headers()
                            .get(CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_content_range_total);
                        Ok(Opened {
                            reader: Box::new(resp),
                            start: offset,
                            total,
                        })
                    }
                    StatusCode::OK => {
                        let total = resp.content_length();
                        Ok(Opened {
                            reader: Box::new(resp),
                            start: 0,
                            total,
                        })
                    }
                    StatusCode::RANGE_NOT_SATISFIABLE => Ok(Opened {
                        // Asked past the end: the part on disk is already complete (or too
                        // long, which the size check reports).
                        reader: Box::new(io::empty()),
                        start: offset,
                        total: None,
                    }),
                    s => Err(BundleError::HttpStatus {
                        what,
                        status: s.as_u16(),
                    }),
                }
            }
        }
    }

    /// Whether a failed open/read may succeed when tried again (network trouble, 5xx).
    pub fn is_transient(err: &BundleError) -> bool {
        match err {
            BundleError::Transfer { .. } => true,
            BundleError::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// `bytes 100-199/1000` -> 1000.
fn parse_content_range_total(v: &str) -> Option<u64> {
    v.rsplit_once('/')?.1.trim().parse().ok()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range_total("bytes 100-199/1000"), Some(1000));
        assert_eq!(parse_content_range_total("bytes 100-199/*"), None);
    }

    #[test]
    fn parse_sources() {
        assert!(matches!(
            Source::parse("ftp://x"),
            Err(BundleError::Source(..))
        ));
        assert!(matches!(
            Source::parse("/nonexistent/dir"),
            Err(BundleError::Source(..))
        ));
        assert!(matches!(
            Source::parse("http://127.0.0.1:1/b"),
            Ok(Source::Http { .. })
        ));
    }
}
