//! The questions as a person sees them on an 80x24 serial terminal: the `wizard_scratch`
//! example runs on a pty whose size is unknown (0x0, as a serial line's), and every
//! assertion is on the screen of a VT100 emulator fed with its output (rkos-tests'
//! `Screen`), not on the byte stream: long pasted answers, errors that stay until the
//! answer is accepted, masked tokens, the RAM-only warning, the current values as defaults.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rexpect::process::PtyProcess;
use rkos_tests::screen::Screen;

/// A real ed25519 key (private half thrown away) with a comment that makes the line 105
/// characters: longer than the 80 columns of a serial terminal, as every pasted key is.
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2pU7tVqB/RceORxdEERGk8KvkidMAmix4j5cHVIHby operator@workstation-1";
const DOWN: &str = "\x1b[B";

fn scratch_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/wizard_scratch")
}

/// The wizard on a pty, its output on a [`Screen`].
struct Tty {
    proc: PtyProcess,
    input: File,
    screen: Arc<Mutex<Screen>>,
}

impl Tty {
    /// `answer`: the terminal answers the size query (a terminal emulator), or not (a
    /// plain serial line).
    fn spawn(root: &Path, env: &[(&str, &str)], answer: Option<(u16, u16)>) -> Tty {
        let mut cmd = Command::new(scratch_binary());
        // GitHub is not used: a port nothing listens on.
        cmd.arg(root).arg("http://127.0.0.1:9").env("TERM", "vt220");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proc = PtyProcess::new(cmd).unwrap();
        let mut output = proc.get_file_handle().unwrap();
        let input = proc.get_file_handle().unwrap();
        let (rows, cols) = answer.unwrap_or((24, 80));
        let mut s = Screen::new(rows, cols);
        s.answer_queries(answer.is_some());
        let screen = Arc::new(Mutex::new(s));
        let (shared, mut replies) = (Arc::clone(&screen), input.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let reply = shared.lock().unwrap().process(&buf[..n]);
                if !reply.is_empty() {
                    let _ = replies.write_all(&reply);
                }
            }
        });
        Tty {
            proc,
            input,
            screen,
        }
    }

    fn send(&mut self, keys: &str) {
        self.input.write_all(keys.as_bytes()).unwrap();
        self.input.flush().unwrap();
    }

    fn text(&self) -> String {
        self.screen.lock().unwrap().text()
    }

    /// Waits until the screen shows `what`; returns the screen.
    fn wait(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.text();
            if t.contains(what) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what:?}; it shows:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the prompt `what`, lets the wizard switch the line to raw mode, types.
    fn answer(&mut self, what: &str, keys: &str) -> String {
        let s = self.wait(what);
        std::thread::sleep(Duration::from_millis(100));
        self.send(keys);
        s
    }

    fn winsize(&self) -> (u16, u16) {
        let w = rustix::termios::tcgetwinsize(&self.input).unwrap();
        (w.ws_row, w.ws_col)
    }

    fn exit(&mut self) -> String {
        format!("{:?}", self.proc.wait().unwrap())
    }
}

/// Each row of the screen holding `what`, for assertions on whole rows.
fn rows_with<'a>(screen: &'a str, what: &str) -> Vec<&'a str> {
    screen.lines().filter(|l| l.contains(what)).collect()
}

/// Through the first questions to the SSH key (configure, questions, no GitHub user).
fn to_ssh_key(t: &mut Tty) {
    t.answer("What do you want to do?", &format!("{DOWN}\r"));
    t.answer("How do you want to configure the node?", "\r");
    t.answer("GitHub users whose SSH keys may log in", "\r");
    t.wait("SSH public key to authorize");
}

#[test]
fn a_pasted_key_longer_than_a_serial_screen_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tty::spawn(dir.path(), &[], None);
    to_ssh_key(&mut t);
    // a serial line answers no size query: the wizard takes 80x24 and tells the tty
    assert_eq!(t.winsize(), (24, 80));
    // a wrong key, pasted whole: the error above, the pasted text kept below, wrapped
    let broken = KEY.replace("AAAAC3Nz", "AAAAB3Nz");
    t.send(&format!("{broken}\r"));
    let s = t.wait("does not hold");
    let prompt = "? SSH public key to authorize (paste one; empty: none) › ";
    let all: String = format!("{prompt}{broken}");
    let (first, rest) = all.split_at(all.char_indices().nth(80).unwrap().0);
    assert!(
        s.contains(&format!("{first}\n{rest}")),
        "wrapped wrongly:\n{s}"
    );
    assert_eq!(rows_with(&s, "does not hold").len(), 1, "{s}");
    // Ctrl-U clears the line, the right key is pasted; the question becomes one line
    t.send("\x15");
    t.send(&format!("{KEY}\r"));
    let s = t.wait("Password for the user rkos");
    assert!(
        !s.contains("does not hold"),
        "the error outlived the answer:\n{s}"
    );
    assert!(
        !s.contains("AAAAB3Nz"),
        "a fragment of the wrong key is left:\n{s}"
    );
    let record = rows_with(&s, "✔ SSH public key to authorize · ssh-ed25519");
    assert_eq!(record.len(), 1, "{s}");
    assert!(
        record[0].ends_with("workstation-1") && record[0].contains('…'),
        "{s}"
    );
    assert!(s.lines().all(|l| l.chars().count() <= 80));
    t.send("\x03");
    assert!(t.exit().contains("130"));
}

#[test]
fn the_size_comes_from_the_terminal_when_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tty::spawn(dir.path(), &[], Some((30, 100)));
    t.wait("What do you want to do?");
    assert_eq!(t.winsize(), (30, 100));
    t.send("\x03");
    t.exit();
}

/// Waits for the next question; the last one must have left only its record line, no
/// error and no fragment of the refused answer.
fn accepted(t: &Tty, next: &str, record: &str, refused: &str) -> String {
    let s = t.wait(next);
    assert_eq!(rows_with(&s, record).len(), 1, "no record {record:?}:\n{s}");
    assert!(!s.contains('✘'), "an error outlived its answer:\n{s}");
    assert!(
        !s.contains(refused),
        "the refused {refused:?} is still shown:\n{s}"
    );
    s
}

/// A refused answer corrected: waits for `error`, types `fix`, then [`accepted`]. Returns
/// the screen that showed the error.
fn corrected(
    t: &mut Tty,
    error: &str,
    fix: &str,
    (next, record, refused): (&str, &str, &str),
) -> String {
    let s = t.wait(error);
    t.send(fix);
    accepted(t, next, record, refused);
    s
}

#[test]
fn one_wrong_answer_per_kind_shows_until_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tty::spawn(dir.path(), &[("WIZARD_SCRATCH_MODE", "live")], None);
    let s = t.answer("What do you want to do?", &format!("{DOWN}\r"));
    assert!(
        s.contains("❯ Install rkos to a disk"),
        "live: install first\n{s}"
    );
    let s = t.wait("How do you want to configure the node?");
    for line in rkos_wizard::ui::RAM_ONLY {
        assert!(s.contains(line), "{s}");
    }
    t.send("\r");
    // a list of names
    t.answer(
        "GitHub users whose SSH keys may log in",
        "octo, not a user!\r",
    );
    let s = corrected(
        &mut t,
        "`user!` is not a GitHub user name",
        "\x15\r",
        (
            "SSH public key to authorize",
            "✔ GitHub users whose SSH keys may log in · (none)",
            "user!",
        ),
    );
    // the refused text stayed on the line (wrapped at 80 columns), for editing
    assert!(s.contains("› octo,\nnot a user!"), "{s}");
    t.send("\r");
    // a password typed twice, differently
    t.answer("Password for the user rkos", "secret123\r");
    t.answer("The password again", "secret124\r");
    let s = t.wait("The passwords differ");
    assert!(!s.contains("secret12"), "a password shown:\n{s}");
    assert!(s.contains("? Password for the user rkos"), "{s}");
    t.send("secret123\r");
    t.answer("The password again", "secret123\r");
    accepted(
        &t,
        "Configure WiFi?",
        "✔ The password again · ********",
        "differ",
    );
    t.send("n");
    // a static address without its prefix
    t.answer("Network", &format!("{DOWN}\r"));
    t.answer("Interface", "\r");
    t.answer("Address/prefix", "10.0.2.15\r");
    corrected(
        &mut t,
        "needs a prefix length",
        "/24\r",
        (
            "Gateway",
            "✔ Address/prefix · 10.0.2.15/24",
            "prefix length",
        ),
    );
    t.send("10.0.2.2\r");
    t.answer("DNS servers", "10.0.2.3\r");
    // the host name: QEMU's MAC is said, and a bad name is refused
    let s = t.wait("Host name");
    assert!(s.contains("QEMU's default MAC address"), "{s}");
    assert!(s.contains("Suggestion: rkos-"), "{s}");
    t.send("\x15Server_1\r");
    let s = corrected(
        &mut t,
        "✘",
        "\x15server-1\r",
        ("Role of this node", "✔ Host name · server-1", "Server_1"),
    );
    assert!(s.contains("› Server_1"), "{s}");
    t.send("\r");
    t.answer("Which server?", "\r");
    // the token: masked as typed, Tab shows it, a space is refused
    t.answer("Cluster token", "my token");
    let s = t.wait("› ********");
    assert!(!s.contains("my token"), "{s}");
    t.send("\t");
    t.wait("› my token");
    t.send("\t\r");
    let s = t.wait("spaces");
    assert!(
        !s.contains("my token"),
        "the refused token is masked again:\n{s}"
    );
    t.send("\x15my-cluster-secret-1\r");
    let s = accepted(
        &t,
        "Apply this configuration?",
        "✔ Cluster token · ********",
        "my-cluster",
    );
    assert!(s.contains("the next reboot (RAM only)"), "{s}");
    assert!(s.contains("Install rkos to a disk instead"), "{s}");
    t.send("\r");
    t.wait("SCRATCH: wrote");
    let cfg = std::fs::read_to_string(dir.path().join("var/lib/rkos/config.yaml")).unwrap();
    assert!(cfg.contains("token: my-cluster-secret-1"), "{cfg}");
    assert!(cfg.contains("10.0.2.15/24"), "{cfg}");
}

#[test]
fn run_again_the_current_values_are_the_defaults_and_the_rest_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("var/lib/rkos");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("config.yaml"),
        format!(
            "hostname: edge-7\nssh_authorized_keys:\n  - {KEY}\nrkos:\n  role: agent\n  server_url: https://127.0.0.1:9\n  token: K10abc::server:s3cret\n  password: $6$saltsalt$oip3pQ/XC.H2iXxJ453dIAovPOtv9ivIELb1pH9bUyyW9X19wGxm34dvML9G0Xvtx/SR34v32a0LtwLxE1.F41\n  labels:\n    zone: lab\n"
        ),
    )
    .unwrap();
    let mut t = Tty::spawn(dir.path(), &[], None);
    t.answer("What do you want to do?", &format!("{DOWN}\r"));
    t.answer("How do you want to configure the node?", "\r");
    t.answer("GitHub users whose SSH keys may log in", "\r");
    t.answer(
        "SSH public key to authorize (Enter keeps 1 key; - for none)",
        "\r",
    );
    t.answer(
        "Password for the user rkos (Enter keeps the current one)",
        "\r",
    );
    t.answer("Configure WiFi?", "\r");
    let s = t.answer("Network", "\r");
    assert!(s.contains("❯ DHCP"), "{s}");
    t.answer("Host name (edge-7)", "\r");
    let s = t.wait("Role of this node");
    assert!(
        s.contains("❯ agent"),
        "the current role is the default:\n{s}"
    );
    t.send("\r");
    t.answer("Server URL (https://127.0.0.1:9)", "\r");
    t.wait("does not answer");
    t.answer("What now?", &format!("{DOWN}\r"));
    t.answer("Cluster token (Enter keeps the current one)", "\r");
    let s = t.wait("Write this configuration and apply it now?");
    let kept = rows_with(&s, "kept from config.yaml");
    assert!(kept.len() == 1 && kept[0].ends_with(" rkos.labels"), "{s}");
    assert!(
        s.contains("password for rkos          set (as a hash)"),
        "{s}"
    );
    assert!(!s.contains("s3cret"), "{s}");
    t.send("y");
    t.wait("SCRATCH: wrote");
    let text = std::fs::read_to_string(cfg_dir.join("config.yaml")).unwrap();
    for kept in [
        "hostname: edge-7",
        "server_url: https://127.0.0.1:9",
        "token: K10abc::server:s3cret",
        "$6$saltsalt$",
        "zone: lab",
        "operator@workstation-1",
        "role: agent",
    ] {
        assert!(text.contains(kept), "{kept} lost:\n{text}");
    }
}
