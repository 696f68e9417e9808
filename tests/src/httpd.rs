//! A loopback HTTP server for upgrade bundles: serves the files under a directory with
//! `Range: bytes=N-` support, counts the body bytes it sent per path, and can throttle, so an
//! end-to-end test knows how far a download got and can stop the VM in the middle of one.
//!
//! Written on `std::net` rather than with an HTTP server crate: the test needs to pace and count
//! the bytes of each response body as they leave, which a complete server hides, and only
//! GET/HEAD of whole files or one open-ended range are ever asked for (by `rkos upgrade`).

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Body bytes are written (and paced) in pieces of this size.
const PIECE: usize = 16 * 1024;

struct Shared {
    root: PathBuf,
    /// Body bytes sent per request path (`/v2/rootfs.squashfs`), across all requests.
    sent: Mutex<HashMap<String, u64>>,
    /// Requests seen, as `METHOD PATH RANGE` lines, in order.
    log: Mutex<Vec<String>>,
    /// Bytes per second for response bodies; 0 means as fast as possible.
    rate: AtomicU64,
    stop: AtomicBool,
}

/// A running server; it stops accepting when dropped.
pub struct Httpd {
    shared: Arc<Shared>,
    port: u16,
}

impl Httpd {
    /// Serves `root` on 127.0.0.1 at a free port (a QEMU user-mode guest reaches it at
    /// `10.0.2.2:PORT`).
    pub fn serve(root: &Path) -> Result<Httpd> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            sent: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            rate: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    // A client that goes away mid-body (a killed VM) is the expected case.
                    let _ = handle(&s, conn);
                });
            }
        });
        Ok(Httpd { shared, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Limits response bodies to `bytes_per_second` from now on (0: no limit); transfers
    /// already running follow the new rate from their next piece.
    pub fn set_rate(&self, bytes_per_second: u64) {
        self.shared.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    /// Body bytes sent so far for `path` (as requested, e.g. `/v2/rootfs.squashfs`).
    pub fn sent(&self, path: &str) -> u64 {
        let sent = self.shared.sent.lock().expect("httpd lock");
        sent.get(path).copied().unwrap_or(0)
    }

    /// The requests seen so far, one `METHOD PATH RANGE` line each.
    pub fn requests(&self) -> Vec<String> {
        self.shared.log.lock().expect("httpd lock").clone()
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // wakes the accept loop so it sees the flag
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The file a request path names under `root`; `None` for anything that could leave it.
pub fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.split('?').next()?.trim_start_matches('/'));
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

/// The start offset of a `Range` header value; only the open-ended form `bytes=N-` is
/// understood (the only one `rkos upgrade` sends). `None` for anything else.
pub fn parse_range(value: &str) -> Option<u64> {
    let v = value.trim().strip_prefix("bytes=")?;
    v.strip_suffix('-')?.parse().ok()
}

fn handle(s: &Shared, mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    s.log.lock().expect("httpd lock").push(format!(
        "{method} {path} {}",
        range.as_deref().unwrap_or("-")
    ));
    if method != "GET" && method != "HEAD" {
        return reply(&mut conn, "405 Method Not Allowed", &[]);
    }
    let Some(file) = resolve(&s.root, path).filter(|p| p.is_file()) else {
        return reply(&mut conn, "404 Not Found", &[]);
    };
    let mut f = File::open(&file)?;
    let len = f.metadata()?.len();
    let start = match range.as_deref().map(parse_range) {
        None => 0,
        Some(Some(n)) if n < len => n,
        Some(Some(_)) => {
            let cr = format!("Content-Range: bytes */{len}");
            return reply(&mut conn, "416 Range Not Satisfiable", &[&cr]);
        }
        Some(None) => return reply(&mut conn, "400 Bad Request", &[]),
    };
    let cl = format!("Content-Length: {}", len - start);
    if start > 0 {
        let cr = format!("Content-Range: bytes {start}-{}/{len}", len - 1);
        write_head(&mut conn, "206 Partial Content", &[&cl, &cr])?;
    } else {
        write_head(&mut conn, "200 OK", &[&cl])?;
    }
    if method == "HEAD" {
        return Ok(());
    }
    f.seek(SeekFrom::Start(start))?;
    let began = Instant::now();
    let mut body_sent = 0u64;
    let mut buf = vec![0u8; PIECE];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let rate = s.rate.load(Ordering::SeqCst);
        if rate > 0 {
            // pace against this response's own start so a rate change applies at once
            let due = Duration::from_secs_f64(body_sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                thread::sleep(wait);
            }
        }
        conn.write_all(&buf[..n])?;
        body_sent += n as u64;
        *s.sent
            .lock()
            .expect("httpd lock")
            .entry(path.to_string())
            .or_default() += n as u64;
    }
    conn.flush()?;
    let _ = conn.shutdown(Shutdown::Write);
    Ok(())
}

fn write_head(conn: &mut TcpStream, status: &str, headers: &[&str]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())
}

fn reply(conn: &mut TcpStream, status: &str, headers: &[&str]) -> std::io::Result<()> {
    let mut all = vec!["Content-Length: 0"];
    all.extend_from_slice(headers);
    write_head(conn, status, &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(port: u16, path: &str, range: Option<&str>) -> (String, Vec<u8>) {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n");
        if let Some(r) = range {
            req.push_str(&format!("Range: {r}\r\n"));
        }
        req.push_str("\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8(all[..split].to_vec()).unwrap(),
            all[split + 4..].to_vec(),
        )
    }

    fn server() -> (tempfile::TempDir, Httpd, Vec<u8>) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("b")).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(d.path().join("b/file"), &data).unwrap();
        let h = Httpd::serve(d.path()).unwrap();
        (d, h, data)
    }

    #[test]
    fn whole_file_then_a_range_and_the_bytes_are_counted() {
        let (_d, h, data) = server();
        let (head, body) = get(h.port(), "/b/file", None);
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("Content-Length: 100000"), "{head}");
        assert_eq!(body, data);
        let (head, body) = get(h.port(), "/b/file", Some("bytes=99000-"));
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        assert!(
            head.contains("Content-Range: bytes 99000-99999/100000"),
            "{head}"
        );
        assert_eq!(body, &data[99000..]);
        assert_eq!(h.sent("/b/file"), 101_000);
        assert_eq!(h.requests()[1], "GET /b/file bytes=99000-");
    }

    #[test]
    fn missing_files_escapes_and_bad_ranges_are_refused() {
        let (_d, h, _) = server();
        assert!(get(h.port(), "/b/nope", None).0.contains(" 404 "));
        assert!(get(h.port(), "/b/../b/file", None).0.contains(" 404 "));
        assert!(get(h.port(), "/", None).0.contains(" 404 "));
        let (head, body) = get(h.port(), "/b/file", Some("bytes=100000-"));
        assert!(
            head.contains(" 416 ") && head.contains("bytes */100000"),
            "{head}"
        );
        assert!(body.is_empty());
        assert!(get(h.port(), "/b/file", Some("bytes=1-5"))
            .0
            .contains(" 400 "));
        assert_eq!(h.sent("/b/file"), 0);
    }

    #[test]
    fn a_rate_limit_paces_the_body() {
        let (_d, h, data) = server();
        h.set_rate(400_000);
        let t = Instant::now();
        let (_, body) = get(h.port(), "/b/file", None);
        assert_eq!(body, data);
        // 100 kB at 400 kB/s: the last piece is due after about 0.21 s
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn range_values() {
        assert_eq!(parse_range("bytes=0-"), Some(0));
        assert_eq!(parse_range(" bytes=123- "), Some(123));
        assert_eq!(parse_range("bytes=1-2"), None);
        assert_eq!(parse_range("items=1-"), None);
        assert_eq!(parse_range("bytes=-5"), None);
    }
}
