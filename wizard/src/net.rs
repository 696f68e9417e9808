//! What the wizard asks of the network: GitHub users' keys (to check the users exist) and
//! whether the server URL answers. Both with a short timeout and a plain message offline.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use rkos_http::{Client, HttpError};

use crate::checks::ServerUrl;

pub const GITHUB: &str = "https://github.com";

#[derive(Debug, PartialEq, Eq)]
pub enum KeysLookup {
    /// The user exists and has these keys.
    Found(Vec<String>),
    /// The user exists but has no public key: SSH would not let them in.
    NoKeys,
    NotFound,
    /// No answer (offline, DNS, timeout): the keys are fetched again at every boot.
    Unreachable(String),
}

/// Largest key listing or config text the wizard reads (a config is capped as the node caps
/// its own sources).
const MAX_BYTES: u64 = rkos_config::source::MAX_SOURCE_BYTES;

/// `BASE/USER.keys`, GitHub's public key listing. `base` is a parameter so tests use a
/// server on loopback.
pub fn github_keys(base: &str, user: &str, timeout: Duration) -> KeysLookup {
    let url = format!("{}/{user}.keys", base.trim_end_matches('/'));
    let body = match Client::new(timeout).and_then(|c| c.get_text(&url, MAX_BYTES)) {
        Ok(body) => body,
        Err(HttpError::Status { status: 404, .. }) => return KeysLookup::NotFound,
        Err(e @ HttpError::Status { .. }) => return KeysLookup::Unreachable(e.to_string()),
        Err(e) => return KeysLookup::Unreachable(e.reason()),
    };
    let keys: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if keys.is_empty() {
        KeysLookup::NoKeys
    } else {
        KeysLookup::Found(keys)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    Reachable,
    Unreachable(String),
}

/// Whether a TCP connection to the server's host:port opens within `timeout`.
pub fn probe_server(url: &ServerUrl, timeout: Duration) -> Probe {
    let addrs = match (url.host.as_str(), url.port).to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return Probe::Unreachable(format!("{} does not resolve: {e}", url.host)),
    };
    let mut last = format!("{} has no address", url.host);
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Probe::Reachable,
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Probe::Unreachable(last)
}

/// SSIDs from the output of `iw dev IFACE scan`, strongest first as iw lists them, without
/// duplicates or hidden networks.
pub fn parse_iw_scan(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(ssid) = line.trim().strip_prefix("SSID: ") {
            let ssid = ssid.trim();
            if !ssid.is_empty() && !out.iter().any(|s| s == ssid) {
                out.push(ssid.to_string());
            }
        }
    }
    out
}

/// Wireless interfaces under `ROOT/sys/class/net` (those with a `wireless` or `phy80211`).
pub fn wireless_interfaces(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root.join("sys/class/net")) {
        for e in rd.flatten() {
            let p = e.path();
            if p.join("wireless").exists() || p.join("phy80211").exists() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Scans with `iw` when there is a wireless interface and `iw` is installed; empty
/// otherwise (the UI then asks for the SSID).
pub fn scan_wifi(root: &std::path::Path) -> Vec<String> {
    for iface in wireless_interfaces(root) {
        let _ = std::process::Command::new("ip")
            .args(["link", "set", &iface, "up"])
            .status();
        if let Ok(out) = std::process::Command::new("iw")
            .args(["dev", &iface, "scan"])
            .output()
        {
            let list = parse_iw_scan(&String::from_utf8_lossy(&out.stdout));
            if !list.is_empty() {
                return list;
            }
        }
    }
    Vec::new()
}

/// The text of a config given by path or http(s) URL (`rkos.install.config_url`, or the
/// wizard's "use a config file" answer).
pub fn fetch_text(src: &str, timeout: Duration) -> Result<String, String> {
    if src.starts_with("http://") || src.starts_with("https://") {
        Client::new(timeout)
            .and_then(|c| c.get_text(src, MAX_BYTES))
            .map_err(|e| e.to_string())
    } else {
        let path = src.strip_prefix("file://").unwrap_or(src);
        std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A one-shot HTTP server on loopback answering each request by path.
    fn serve(routes: &'static [(&'static str, u16, &'static str)]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap() <= 2 {
                        break;
                    }
                }
                let (code, body) = routes
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map(|(_, c, b)| (*c, *b))
                    .unwrap_or((404, ""));
                let mut s = s;
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn github_lookups() {
        let base = serve(&[
            (
                "/octo.keys",
                200,
                "ssh-ed25519 AAAA one\nssh-rsa BBBB two\n",
            ),
            ("/nokeys.keys", 200, "\n"),
        ]);
        let t = Duration::from_secs(5);
        assert_eq!(
            github_keys(&base, "octo", t),
            KeysLookup::Found(vec![
                "ssh-ed25519 AAAA one".into(),
                "ssh-rsa BBBB two".into()
            ])
        );
        assert_eq!(github_keys(&base, "nokeys", t), KeysLookup::NoKeys);
        assert_eq!(github_keys(&base, "ghost", t), KeysLookup::NotFound);
    }

    #[test]
    fn fetches_config_by_url_or_path() {
        let base = serve(&[("/node.yaml", 200, "hostname: n1\n")]);
        let t = Duration::from_secs(5);
        assert_eq!(
            fetch_text(&format!("{base}/node.yaml"), t).unwrap(),
            "hostname: n1\n"
        );
        assert!(fetch_text(&format!("{base}/missing"), t)
            .unwrap_err()
            .contains("404"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "x: 1").unwrap();
        assert_eq!(fetch_text(f.to_str().unwrap(), t).unwrap(), "x: 1");
        assert!(fetch_text("/nonexistent/c.yaml", t).is_err());
    }

    #[test]
    fn github_offline_is_a_plain_message() {
        // A port nothing listens on: connection refused, as when offline.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        match github_keys(
            &format!("http://127.0.0.1:{port}"),
            "octo",
            Duration::from_secs(2),
        ) {
            KeysLookup::Unreachable(m) => assert!(m.contains("could not connect"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn probes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let url = ServerUrl {
            host: "127.0.0.1".into(),
            port,
        };
        assert_eq!(probe_server(&url, Duration::from_secs(2)), Probe::Reachable);
        drop(l);
        assert!(matches!(
            probe_server(&url, Duration::from_secs(2)),
            Probe::Unreachable(_)
        ));
        let bad = ServerUrl {
            host: "no-such-host.invalid".into(),
            port: 6443,
        };
        assert!(matches!(
            probe_server(&bad, Duration::from_secs(2)),
            Probe::Unreachable(_)
        ));
    }

    #[test]
    fn iw_scan_output() {
        let text = "BSS 11:22:33:44:55:66(on wlan0)\n\tsignal: -40.00 dBm\n\tSSID: home\nBSS aa:bb(on wlan0)\n\tSSID: \nBSS cc(on wlan0)\n\tSSID: cafe net\nBSS dd\n\tSSID: home\n";
        assert_eq!(parse_iw_scan(text), ["home", "cafe net"]);
    }

    #[test]
    fn finds_wireless_interfaces() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("sys/class/net/wlan0/wireless")).unwrap();
        std::fs::create_dir_all(t.path().join("sys/class/net/eth0")).unwrap();
        assert_eq!(wireless_interfaces(t.path()), ["wlan0"]);
    }
}
