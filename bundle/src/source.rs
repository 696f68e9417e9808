//! Where a bundle comes from: a local directory or an http(s) base URL. Both give the same
//! things: small files read whole (manifest, signature) and a byte stream of a file from an
//! offset (HTTP `Range`), so staging code is one path for both.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use rkos_http::{Client, HttpError};

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

impl Source {
    /// `http://...` or `https://...` (a base URL: files are fetched as `URL/name`), else a
    /// directory path.
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("http://") || s.starts_with("https://") {
            // A stalled transfer fails its read after a minute and is retried with Range.
            let client = Client::for_downloads(Duration::from_secs(15), Duration::from_secs(60))
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
                let r = client.open(&what, offset).map_err(|e| match e {
                    HttpError::Status { status, .. } => BundleError::HttpStatus { what, status },
                    HttpError::Request { detail, .. } => BundleError::Transfer {
                        what,
                        attempts: 1,
                        last: detail,
                    },
                    other => BundleError::Transfer {
                        what,
                        attempts: 1,
                        last: other.reason(),
                    },
                })?;
                Ok(Opened {
                    reader: r.reader,
                    start: r.start,
                    total: r.total,
                })
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

#[cfg(test)]
mod tests {
    use super::*;

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
