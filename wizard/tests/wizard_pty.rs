//! The questions through a real terminal (a pty), typed as a person would, mistakes
//! included, against a scratch root: the `wizard_scratch` example runs the same `ui::run`
//! and config writing as `os-config`, without touching the machine.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2pU7tVqB/RceORxdEERGk8KvkidMAmix4j5cHVIHby test@rkos";
const DOWN: &str = "\x1b[B";
const ENTER: &str = "\r";

/// The example binary, which `cargo test` builds next to the test binaries.
fn scratch_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples/wizard_scratch")
}

/// GitHub stand-in on loopback: `octocat` has a key, everyone else is unknown.
fn github() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let (code, body) = if line.contains("/octocat.keys ") {
                (200, KEY)
            } else {
                (404, "Not Found")
            };
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

fn fake_disk(root: &Path, name: &str, gib: u64, model: &str) {
    let d = root.join("sys/block").join(name);
    fs::create_dir_all(d.join("device")).unwrap();
    fs::write(d.join("size"), format!("{}\n", gib << 21)).unwrap();
    fs::write(d.join("device/model"), model).unwrap();
    fs::write(d.join("removable"), "0").unwrap();
    fs::write(d.join("ro"), "0").unwrap();
}

fn spawn(root: &Path, github: &str) -> PtySession {
    let mut cmd = Command::new(scratch_binary());
    cmd.arg(root).arg(github).env("TERM", "xterm");
    spawn_with_options(
        cmd,
        Options::default()
            .timeout_ms(Some(20_000))
            .strip_ansi_escape_codes(true),
    )
    .unwrap()
}

/// Types keys (rexpect buffers what it sends until flushed).
fn key(p: &mut PtySession, s: &str) {
    p.send(s).unwrap();
    p.flush().unwrap();
}

fn exit_code(p: &mut PtySession) -> String {
    format!("{:?}", p.process_mut().wait().unwrap())
}

#[test]
fn install_as_an_agent_with_mistakes_along_the_way() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    fake_disk(root, "sda", 16, "QEMU HARDDISK");
    fake_disk(root, "sdb", 1, "TINY");
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_url = format!("https://127.0.0.1:{}", server.local_addr().unwrap().port());
    let mut p = spawn(root, &github());

    p.exp_string("What do you want to do?").unwrap();
    key(&mut p, ENTER); // install
    p.exp_string("Install to which disk?").unwrap();
    p.exp_string("sdb - 1.0 GiB - TINY").unwrap();
    key(&mut p, DOWN);
    key(&mut p, ENTER); // the small one: refused
    p.exp_string("sdb is too small: 1.0 GiB (rkos needs at least 4.0 GiB)")
        .unwrap();
    p.exp_string("Install to which disk?").unwrap();
    key(&mut p, ENTER); // sda
    p.exp_string("How do you want to configure the node?")
        .unwrap();
    key(&mut p, ENTER); // questions

    p.exp_string("GitHub users").unwrap();
    key(&mut p, "ghost\r");
    p.exp_string("There is no GitHub user ghost.").unwrap();
    p.exp_string("GitHub users").unwrap();
    // the refused answer stays on the line for editing: Ctrl-U clears it
    key(&mut p, "\x15octocat\r");
    p.exp_string("octocat: 1 key(s)").unwrap();
    p.exp_string("SSH public key to authorize").unwrap();
    key(&mut p, "ssh-rsa !!!\r");
    p.exp_string("the key data is not valid base64").unwrap();
    // the rejected text stays for editing: clear it first
    key(&mut p, &"\x7f".repeat(20));
    key(&mut p, &format!("{KEY}\r"));

    p.exp_string("Password for the user rkos").unwrap();
    p.send_line("secret123").unwrap();
    p.exp_string("The password again").unwrap();
    p.send_line("secret124").unwrap();
    p.exp_string("The passwords differ; type them again.")
        .unwrap();
    p.exp_string("Password for the user rkos").unwrap();
    p.send_line("secret123").unwrap();
    p.exp_string("The password again").unwrap();
    p.send_line("secret123").unwrap();

    p.exp_string("Configure WiFi?").unwrap();
    key(&mut p, "n");
    p.exp_string("Network").unwrap();
    key(&mut p, ENTER); // DHCP
    p.exp_string("Host name").unwrap();
    p.exp_string("rkos-").unwrap(); // the generated default is offered
    key(&mut p, &"\x7f".repeat(12));
    key(&mut p, "node-7\r");
    p.exp_string("Role of this node").unwrap();
    key(&mut p, DOWN);
    key(&mut p, ENTER); // agent

    p.exp_string("Server URL").unwrap();
    key(&mut p, "http://10.0.0.1\r");
    p.exp_string("must use https").unwrap();
    key(&mut p, &"\x7f".repeat(20));
    key(&mut p, &format!("{server_url}\r"));
    p.exp_string("it answers.").unwrap();
    p.exp_string("Cluster token").unwrap();
    p.send_line("").unwrap();
    p.exp_string("a token is required").unwrap();
    p.exp_string("Cluster token").unwrap();
    p.send_line("K10abc123::server:tokpass").unwrap();

    p.exp_string("Summary").unwrap();
    let (summary, _) = p.exp_regex("Erase ALL data on /dev/sda").unwrap();
    assert!(summary.contains("server URL"), "{summary}");
    assert!(summary.contains("node-7"), "{summary}");
    for secret in ["secret123", "tokpass", "K10abc123"] {
        assert!(
            !summary.contains(secret),
            "{secret} shown in the summary:\n{summary}"
        );
    }
    key(&mut p, "y");
    p.exp_string("SCRATCH: would install to sda").unwrap();
    p.exp_string("SCRATCH: wrote").unwrap();
    assert!(exit_code(&mut p).contains("Exited"), "");

    let cfg = root.join("var/lib/rkos/config.yaml");
    assert_eq!(
        fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("hostname: node-7"), "{text}");
    assert!(
        text.contains(&format!("server_url: {server_url}")),
        "{text}"
    );
    assert!(text.contains("- github:octocat"), "{text}");
    assert!(text.contains(KEY), "{text}");
    assert!(text.contains("role: agent"), "{text}");
    assert!(!text.contains("secret123"), "{text}");
    let (errors, _) = rkos_wizard::validate_config("written", &text);
    assert!(errors.is_empty(), "{errors:?}");
    drop(server);
}

#[test]
fn ctrl_c_leaves_the_previous_config_byte_for_byte() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let dir = root.join("var/lib/rkos");
    fs::create_dir_all(&dir).unwrap();
    let before = b"# the previous config\nhostname: old-node\nrkos:\n  token: keepme\n";
    fs::write(dir.join("config.yaml"), before).unwrap();
    fs::set_permissions(dir.join("config.yaml"), fs::Permissions::from_mode(0o600)).unwrap();
    let mut p = spawn(root, &github());
    p.exp_string("What do you want to do?").unwrap();
    key(&mut p, DOWN);
    key(&mut p, ENTER); // configure
    p.exp_string("How do you want to configure the node?")
        .unwrap();
    key(&mut p, ENTER);
    p.exp_string("GitHub users").unwrap();
    key(&mut p, ENTER);
    p.exp_string("SSH public key to authorize").unwrap();
    key(&mut p, ENTER);
    p.exp_string("Password for the user rkos").unwrap();
    p.send_line("secret123").unwrap();
    p.exp_string("The password again").unwrap();
    p.send_line("secret123").unwrap();
    p.exp_string("Configure WiFi?").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("Cancelled: nothing was written.").unwrap();
    let status = exit_code(&mut p);
    assert!(status.contains("130"), "{status}");
    assert_eq!(fs::read(dir.join("config.yaml")).unwrap(), before);
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn declining_at_the_summary_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let mut p = spawn(root, &github());
    p.exp_string("What do you want to do?").unwrap();
    key(&mut p, DOWN);
    key(&mut p, ENTER);
    p.exp_string("How do you want to configure the node?")
        .unwrap();
    key(&mut p, ENTER);
    p.exp_string("GitHub users").unwrap();
    key(&mut p, ENTER);
    p.exp_string("SSH public key to authorize").unwrap();
    key(&mut p, ENTER);
    p.exp_string("Password for the user rkos").unwrap();
    p.send_line("secret123").unwrap();
    p.exp_string("The password again").unwrap();
    p.send_line("secret123").unwrap();
    p.exp_string("Configure WiFi?").unwrap();
    key(&mut p, "n");
    p.exp_string("Network").unwrap();
    key(&mut p, ENTER);
    p.exp_string("Host name").unwrap();
    key(&mut p, ENTER);
    p.exp_string("Role of this node").unwrap();
    key(&mut p, ENTER); // server
    p.exp_string("Which server?").unwrap();
    key(&mut p, ENTER); // single
    p.exp_string("Cluster token (empty: generate a strong one)")
        .unwrap();
    key(&mut p, ENTER);
    p.exp_string("Generated cluster token").unwrap();
    p.exp_regex("[0-9a-f]{64}").unwrap();
    p.exp_string("Write this configuration and apply it now?")
        .unwrap();
    key(&mut p, "n");
    p.exp_string("Cancelled: nothing was written.").unwrap();
    p.exp_string("SCRATCH: declined").unwrap();
    assert!(!root.join("var/lib/rkos/config.yaml").exists());
}

#[test]
fn a_config_file_with_errors_is_shown_and_asked_again() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let bad = t.path().join("bad.yaml");
    fs::write(
        &bad,
        "hostname: ok-name\nrkos:\n  server_url: http://10.0.0.1\n",
    )
    .unwrap();
    let good = t.path().join("good.yaml");
    let good_text = "hostname: from-file\nrkos:\n  password: secret123\n  token: abc\n";
    fs::write(&good, good_text).unwrap();
    let mut p = spawn(&root, &github());
    p.exp_string("What do you want to do?").unwrap();
    key(&mut p, DOWN);
    key(&mut p, ENTER); // configure
    p.exp_string("How do you want to configure the node?")
        .unwrap();
    key(&mut p, DOWN);
    key(&mut p, ENTER); // a config file
    p.exp_string("Config file path or http(s) URL").unwrap();
    key(&mut p, "/nonexistent/x.yaml\r");
    p.exp_string("Could not read it").unwrap();
    p.exp_string("Config file path or http(s) URL").unwrap();
    key(&mut p, &format!("{}\r", bad.display()));
    p.exp_string("The config has errors").unwrap();
    p.exp_string("bad.yaml:3:").unwrap();
    p.exp_string("Config file path or http(s) URL").unwrap();
    key(&mut p, &format!("{}\r", good.display()));
    p.exp_string("config from").unwrap();
    p.exp_string("Write this configuration and apply it now?")
        .unwrap();
    key(&mut p, "y");
    p.exp_string("SCRATCH: wrote").unwrap();
    assert_eq!(
        fs::read_to_string(root.join("var/lib/rkos/config.yaml")).unwrap(),
        good_text
    );
}
