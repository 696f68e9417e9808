//! Against servers on loopback, each written to misbehave in one way.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Path and `Range` header of a request.
struct Req {
    path: String,
    range: Option<u64>,
}

/// Serves each connection with `answer`; returns the base URL.
fn serve(answer: impl Fn(&Req, &mut TcpStream) + Send + 'static) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range = None;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap() <= 2 {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse().ok();
                }
            }
            answer(&Req { path, range }, &mut s);
        }
    });
    format!("http://{addr}")
}

fn reply(s: &mut TcpStream, status: &str, headers: &str, body: &[u8]) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    );
    let _ = s.write_all(body);
}

fn client() -> Client {
    Client::new(Duration::from_secs(5)).unwrap()
}

#[test]
fn text_and_status() {
    let base = serve(|r, s| match r.path.as_str() {
        "/node.yaml" => reply(s, "200 OK", "", b"hostname: n1\n"),
        _ => reply(s, "404 Not Found", "", b"nope"),
    });
    let c = client();
    assert_eq!(
        c.get_text(&format!("{base}/node.yaml"), 100).unwrap(),
        "hostname: n1\n"
    );
    let e = c.get_text(&format!("{base}/gone"), 100).unwrap_err();
    assert!(matches!(e, HttpError::Status { status: 404, .. }), "{e}");
    assert_eq!(e.to_string(), format!("{base}/gone answered HTTP 404"));
    assert!(!e.is_transient());
}

/// A server that streams without end and without a length: the cap must stop the read
/// (issue 16 item 13: the body used to be read whole before its size was checked).
#[test]
fn the_size_cap_is_enforced_while_reading() {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let base = serve(move |_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let chunk = vec![b'x'; 64 << 10];
        // 256 MiB unless the client hangs up first.
        for _ in 0..4096 {
            if s.write_all(&chunk).is_err() {
                break;
            }
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
    let limit = 64 << 10;
    let e = client()
        .get_bytes(&format!("{base}/endless"), limit)
        .unwrap_err();
    assert!(matches!(e, HttpError::TooBig { .. }), "{e}");
    // Give the server a moment to notice the closed connection, then count: what it got
    // out is the cap plus what the socket buffers held, far from the whole stream.
    std::thread::sleep(Duration::from_millis(300));
    let total = sent.load(Ordering::SeqCst);
    assert!(total < 32 << 20, "the client read {total} bytes");
}

#[test]
fn a_declared_length_over_the_cap_is_refused_before_reading() {
    let base = serve(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nx");
    });
    let e = client().get_bytes(&format!("{base}/big"), 10).unwrap_err();
    assert!(matches!(e, HttpError::TooBig { limit: 10, .. }), "{e}");
    // Exactly at the cap is fine.
    let base = serve(|_, s| reply(s, "200 OK", "", b"0123456789"));
    assert_eq!(client().get_bytes(&base, 10).unwrap().len(), 10);
}

#[test]
fn range_requests() {
    let file: &'static [u8] = b"0123456789";
    let honours = serve(move |r, s| match r.range {
        Some(o) if o as usize >= file.len() => reply(s, "416 Range Not Satisfiable", "", b""),
        Some(o) => reply(
            s,
            "206 Partial Content",
            &format!("Content-Range: bytes {o}-9/10\r\n"),
            &file[o as usize..],
        ),
        None => reply(s, "200 OK", "", file),
    });
    let c = client();
    let mut got = String::new();
    let r = c.open(&honours, 4).unwrap();
    assert_eq!((r.start, r.total), (4, Some(10)));
    let mut reader = r.reader;
    reader.read_to_string(&mut got).unwrap();
    assert_eq!(got, "456789");
    let r = c.open(&honours, 0).unwrap();
    assert_eq!((r.start, r.total), (0, Some(10)));
    let r = c.open(&honours, 10).unwrap();
    assert_eq!((r.start, r.total), (10, None));

    let ignores = serve(move |_, s| reply(s, "200 OK", "", file));
    let r = c.open(&ignores, 4).unwrap();
    assert_eq!((r.start, r.total), (0, Some(10)), "the whole file again");

    let failing = serve(|_, s| reply(s, "503 Busy", "", b""));
    let e = c.open(&failing, 4).err().unwrap();
    assert!(e.is_transient(), "{e}");
}

#[test]
fn offline_is_a_plain_message() {
    // A port nothing listens on: connection refused, as when offline.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let e = client()
        .get_text(&format!("http://127.0.0.1:{port}/x"), 10)
        .unwrap_err();
    assert!(e.reason().contains("could not connect"), "{e}");
    assert!(e.is_transient());
    match e {
        HttpError::Request { detail, .. } => assert!(detail.len() > 20, "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn content_range_totals() {
    assert_eq!(content_range_total("bytes 100-199/1000"), Some(1000));
    assert_eq!(content_range_total("bytes 100-199/*"), None);
}

/// A transfer that stalls must fail its read (so the caller can resume), not hang: the
/// timeout is per read, so a slow but steady download is never cut.
#[test]
fn a_stalled_transfer_fails_its_read() {
    let base = serve(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
        std::thread::sleep(Duration::from_secs(10));
    });
    let c = Client::for_downloads(Duration::from_secs(5), Duration::from_millis(500)).unwrap();
    let r = c.open(&base, 0).unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let e = r.reader.take(1000).read_to_end(&mut got).unwrap_err();
    assert_eq!(got, b"0123456789");
    assert!(started.elapsed() < Duration::from_secs(5), "{e}");
}

#[cfg(not(feature = "tls"))]
#[test]
fn https_without_tls_says_so() {
    let e = client().get_text("https://127.0.0.1:1/x", 10).unwrap_err();
    assert!(e.reason().contains("without TLS"), "{e}");
}
