//! The terminal the wizard runs on, as a serial console needs it handled.
//!
//! - A serial line has no size: the tty reports 0x0 and every program guesses. A
//!   [`Session`] asks the terminal itself (the cursor-position report every VT100-compatible
//!   emulator answers) and records the answer on the tty, or VT100's 80x24 when nothing
//!   answers within a second, so redraws and `stty size` agree with the screen.
//! - For the whole session the line discipline neither echoes nor edits: keys typed while
//!   the wizard is busy (a probe, a lookup, between two reads of a menu) would otherwise be
//!   echoed by the kernel at the cursor and garble the screen, or eaten by its own line
//!   editing. Ctrl-C still raises SIGINT.
//! - [`RawMode`] holds raw mode for a whole question ([`crate::line`]), not per key, so a
//!   pasted line arrives byte for byte.
//!
//! The original settings come back when the session ends, and from [`restore`] on the way
//! out after Ctrl-C (which leaves through `process::exit`, past every destructor).

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::termios::{
    tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, LocalModes, OptionalActions,
    SpecialCodeIndex, Termios, Winsize,
};

/// VT100's screen: what a serial terminal that does not answer is taken to be.
pub const FALLBACK_SIZE: (u16, u16) = (24, 80);

/// How long a terminal may take to answer the size query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// The settings of the terminal before the session, for [`restore`].
static ORIGINAL: Mutex<Option<Termios>> = Mutex::new(None);

fn stdin() -> BorrowedFd<'static> {
    // SAFETY-free: fd 0 lives as long as the process.
    rustix::stdio::stdin()
}

/// Where the terminal's size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSource {
    /// The tty already knew it (a pty of ssh or a terminal emulator).
    Known,
    /// The terminal answered the cursor-position query.
    Asked,
    /// Nothing answered: VT100's 80x24 was assumed.
    Assumed,
}

/// The wizard's hold on the terminal, from [`Session::start`] until dropped.
pub struct Session {
    pub rows: u16,
    pub cols: u16,
    pub size_source: SizeSource,
}

impl Session {
    /// Takes the terminal on stdin: sets its size if it has none, then no echo and no line
    /// editing until the session ends.
    pub fn start() -> io::Result<Session> {
        let fd = stdin();
        let original = tcgetattr(fd)?;
        *ORIGINAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(original.clone());
        let mut quiet = original.clone();
        quiet
            .local_modes
            .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::IEXTEN);
        quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
        quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
        // TCSANOW, not TCSAFLUSH: keys already typed stay, they are answers.
        tcsetattr(fd, OptionalActions::Now, &quiet)?;
        let (rows, cols, size_source) = match tcgetwinsize(fd) {
            Ok(w) if w.ws_row > 0 && w.ws_col > 0 => (w.ws_row, w.ws_col, SizeSource::Known),
            _ => {
                let (size, source) = match query_size(fd) {
                    Some(s) => (s, SizeSource::Asked),
                    None => (FALLBACK_SIZE, SizeSource::Assumed),
                };
                let _ = tcsetwinsize(
                    fd,
                    Winsize {
                        ws_row: size.0,
                        ws_col: size.1,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    },
                );
                (size.0, size.1, source)
            }
        };
        Ok(Session {
            rows,
            cols,
            size_source,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as the session found it (the size it learnt stays: it is true).
pub fn restore() {
    if let Some(t) = ORIGINAL.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = tcsetattr(stdin(), OptionalActions::Now, &t);
    }
}

/// Asks the terminal where the cursor is after moving it as far down and right as it goes:
/// the answer is the screen's size. The cursor is saved and restored around the move.
fn query_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut err = io::stderr();
    err.write_all(b"\x1b7\x1b[999;999H\x1b[6n\x1b8").ok()?;
    err.flush().ok()?;
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let mut got = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let byte = read_byte(fd, left).ok()??;
        got.push(byte);
        if let Some(size) = parse_cursor_report(&got) {
            return Some(size);
        }
        if got.len() > 32 {
            return None;
        }
    }
    None
}

/// `ESC [ ROW ; COL R` at the end of `bytes` (anything typed before it is skipped).
pub fn parse_cursor_report(bytes: &[u8]) -> Option<(u16, u16)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let body = text.strip_suffix('R')?;
    let start = body.rfind("\x1b[")?;
    let (row, col) = body[start + 2..].split_once(';')?;
    let (row, col) = (row.parse::<u16>().ok()?, col.parse::<u16>().ok()?);
    (row > 0 && col > 0).then_some((row, col))
}

/// One byte from `fd` within `timeout`; `Ok(None)` when none came.
pub fn read_byte(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<Option<u8>> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ts = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    });
    if poll(&mut fds, Some(&ts))? == 0 {
        return Ok(None);
    }
    let mut b = [0u8; 1];
    match rustix::io::read(fd, &mut b)? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(Some(b[0])),
    }
}

/// Raw mode on stdin while it lives: every byte as it comes, no signals from keys (Ctrl-C
/// arrives as a byte and the editor cancels), output processing kept.
pub struct RawMode {
    before: Termios,
}

impl RawMode {
    pub fn enter() -> io::Result<RawMode> {
        let fd = stdin();
        let before = tcgetattr(fd)?;
        let mut raw = before.clone();
        raw.make_raw();
        raw.output_modes = before.output_modes;
        tcsetattr(fd, OptionalActions::Now, &raw)?;
        Ok(RawMode { before })
    }

    /// Reads what is there (at least one byte, waiting for it).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match rustix::io::read(stdin().as_fd(), &mut *buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(stdin(), OptionalActions::Now, &self.before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reports() {
        assert_eq!(parse_cursor_report(b"\x1b[24;80R"), Some((24, 80)));
        assert_eq!(parse_cursor_report(b"x\x1b[50;132R"), Some((50, 132)));
        assert_eq!(parse_cursor_report(b"\x1b[24;80"), None);
        assert_eq!(parse_cursor_report(b"\x1b[0;80R"), None);
        assert_eq!(parse_cursor_report(b"\x1b[a;bR"), None);
    }
}
