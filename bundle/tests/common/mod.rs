//! Test fixtures: a key pair, an RKOS_STATE tree with slot A installed, bundles, and a small
//! HTTP server (std::net, hand-rolled so a test can make it drop a connection mid-file or
//! ignore Range) on 127.0.0.1.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rkos_bundle::{sign, NoProgress, Source, StageOptions, Staged, TrustedKeys};
use rkos_slots::{BootState, Slot, StateDir};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub state: StateDir,
    pub keys_dir: PathBuf,
    pub secret: PathBuf,
}

/// Deterministic pseudo-random bytes (xorshift), so files differ without a rand dependency.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn make_files(dir: &Path, seed: u64, rootfs_len: usize) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    let spec = [
        ("vmlinuz", 200_000, seed),
        ("initrd", 150_000, seed + 1),
        ("rootfs.squashfs", rootfs_len, seed + 2),
    ];
    spec.iter()
        .map(|(n, len, s)| {
            let p = dir.join(n);
            fs::write(&p, bytes(*len, *s)).unwrap();
            p
        })
        .collect()
}

impl Fixture {
    /// Keys, and a state tree with version 1 installed in slot A (default, nothing on trial).
    pub fn new() -> Fixture {
        Self::with_state_root(None)
    }

    /// As [`new`], with the state tree at `root` (e.g. a small tmpfs).
    pub fn with_state_root(root: Option<PathBuf>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        let (_, secret) = sign::keygen(&keys_dir).unwrap();
        let state = StateDir::new(root.unwrap_or_else(|| dir.path().join("state")));
        fs::create_dir_all(state.grub_dir()).unwrap();
        state.write_boot_state(&BootState::default()).unwrap();
        let src = dir.path().join("v1-src");
        let files = make_files(&src, 100, 100_000);
        sign::create("1", "amd64", &secret, &state.slot_dir(Slot::A), &files).unwrap();
        Fixture {
            dir,
            state,
            keys_dir,
            secret,
        }
    }

    pub fn keys(&self) -> TrustedKeys {
        TrustedKeys::load(&self.keys_dir, &[]).unwrap()
    }

    /// A signed bundle of `version` in a new directory; returns its path.
    pub fn bundle(&self, version: &str, rootfs_len: usize) -> PathBuf {
        let src = self.dir.path().join(format!("src-{version}"));
        let files = make_files(&src, version.len() as u64 * 1000 + 7, rootfs_len);
        let out = self.dir.path().join(format!("bundle-{version}"));
        sign::create(version, "amd64", &self.secret, &out, &files).unwrap();
        out
    }

    pub fn opts() -> StageOptions {
        StageOptions {
            arch: "amd64".into(),
            attempts: 4,
            backoff: Duration::from_millis(10),
            ..StageOptions::default()
        }
    }

    pub fn stage(&self, source: &str) -> rkos_bundle::Result<Staged> {
        self.stage_on(source, &Self::opts().arch)
    }

    /// [`Fixture::stage`] on a node of the architecture `arch`.
    pub fn stage_on(&self, source: &str, arch: &str) -> rkos_bundle::Result<Staged> {
        let src = Source::parse(source)?;
        let opts = StageOptions {
            arch: arch.into(),
            ..Self::opts()
        };
        rkos_bundle::stage(
            &src,
            &self.state,
            Slot::A,
            &self.keys(),
            &opts,
            &mut NoProgress,
        )
    }

    /// Every file under the state tree and its bytes: to prove a failure changed nothing
    /// that matters (slot A and grubenv).
    pub fn snapshot_active(&self) -> BTreeMap<String, Vec<u8>> {
        let mut m = BTreeMap::new();
        m.insert("grubenv".into(), fs::read(self.state.grubenv()).unwrap());
        for e in fs::read_dir(self.state.slot_dir(Slot::A)).unwrap() {
            let p = e.unwrap().path();
            m.insert(
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            );
        }
        m
    }

    /// Files left anywhere in slot B (recursively), names relative to it.
    pub fn slot_b_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(
            &self.state.slot_dir(Slot::B),
            &self.state.slot_dir(Slot::B),
            &mut out,
        );
        out.sort();
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(base, &p, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

/// How the test server misbehaves.
#[derive(Default, Clone)]
pub struct Faults {
    /// File name -> (bytes to send before closing, how many requests to cut).
    pub cut: HashMap<String, (u64, u32)>,
    /// Answer 200 with the whole file even when asked for a range.
    pub ignore_range: bool,
    /// File name -> send its body this many bytes at a time, pausing this long after each.
    pub trickle: HashMap<String, (usize, Duration)>,
}

/// Each request: (path, Range header if any).
pub type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

pub struct TestServer {
    pub url: String,
    pub log: RequestLog,
    pub faults: Arc<Mutex<Faults>>,
}

impl TestServer {
    /// Serves `root` under `http://127.0.0.1:PORT/bundle/`.
    pub fn start(root: &Path) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let root = root.to_path_buf();
        let (l2, f2) = (log.clone(), faults.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (root, log, faults) = (root.clone(), l2.clone(), f2.clone());
                thread::spawn(move || {
                    let _ = serve(conn, &root, &log, &faults);
                });
            }
        });
        TestServer {
            url: format!("http://{addr}/bundle"),
            log,
            faults,
        }
    }

    pub fn ranges_for(&self, name: &str) -> Vec<Option<String>> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.ends_with(&format!("/{name}")))
            .map(|(_, r)| r.clone())
            .collect()
    }
}

fn serve(
    conn: TcpStream,
    root: &Path,
    log: &RequestLog,
    faults: &Mutex<Faults>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let mut out = conn;
    let name = path.strip_prefix("/bundle/").unwrap_or("");
    let file = root.join(name);
    let data = match (name.contains('/') || name.is_empty(), fs::read(&file)) {
        (false, Ok(d)) => d,
        _ => {
            out.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
    };
    let mut f = faults.lock().unwrap();
    let start = match (&range, f.ignore_range) {
        (Some(r), false) => r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0),
        _ => 0,
    };
    let cut = match f.cut.get_mut(name) {
        Some((n, left)) if *left > 0 => {
            *left -= 1;
            Some(*n as usize)
        }
        _ => None,
    };
    let trickle = f.trickle.get(name).copied();
    drop(f);
    if start > data.len() {
        out.write_all(
            b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let body = &data[start..];
    let head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\nConnection: close\r\n\r\n",
            body.len(),
            start,
            data.len() - 1,
            data.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
    };
    out.write_all(head.as_bytes())?;
    match (cut, trickle) {
        (_, Some((piece, pause))) => {
            for chunk in body.chunks(piece) {
                out.write_all(chunk)?;
                out.flush()?;
                thread::sleep(pause);
            }
        }
        (Some(n), None) => {
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            // Drop the connection mid-body.
            out.shutdown(std::net::Shutdown::Both)?;
        }
        (None, None) => out.write_all(body)?,
    }
    Ok(())
}
