//! What a person sees on a terminal: the byte stream of a console run through a VT100
//! emulator (the `vt100` crate) of a fixed size, 80x24 as a serial terminal. Tests assert on
//! these rows, not on the raw log, so a redraw that leaves fragments behind, or a line that
//! wraps where it should not, fails them.
//!
//! Like every terminal emulator, it can answer the cursor-position query (`ESC [ 6 n`),
//! which is how a program on a serial line, whose tty has no size, learns the screen's; the
//! answers are handed back to be typed into the console. Off by default: a plain serial
//! line answers nothing, and boot tests never relied on answers.

use std::num::NonZeroU16;

/// The serial terminal of the tests.
pub const ROWS: u16 = 24;
pub const COLS: u16 = 80;

#[derive(Default)]
struct Replies {
    answer_queries: bool,
    pending: Vec<u8>,
}

impl vt100::Callbacks for Replies {
    fn unhandled_csi(
        &mut self,
        screen: &mut vt100::Screen,
        i1: Option<u8>,
        _i2: Option<u8>,
        params: &[&[u16]],
        c: char,
    ) {
        if self.answer_queries && c == 'n' && i1.is_none() && params == [&[6u16][..]] {
            let (row, col) = screen.cursor_position();
            self.pending
                .extend(format!("\x1b[{};{}R", row + 1, col + 1).into_bytes());
        }
    }
}

pub struct Screen {
    parser: vt100::Parser<Replies>,
}

impl Default for Screen {
    fn default() -> Self {
        Screen::new(ROWS, COLS)
    }
}

impl Screen {
    pub fn new(rows: u16, cols: u16) -> Screen {
        let n = |v: u16| NonZeroU16::new(v.max(1)).expect("not zero");
        Screen {
            parser: vt100::Parser::new_with_callbacks(n(rows), n(cols), 0, Replies::default()),
        }
    }

    /// Answer cursor-position queries from now on, as a terminal emulator does.
    pub fn answer_queries(&mut self, on: bool) {
        self.parser.callbacks_mut().answer_queries = on;
    }

    /// Feeds console output; returns what the terminal answers (to type into the console).
    pub fn process(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.parser.process(bytes);
        std::mem::take(&mut self.parser.callbacks_mut().pending)
    }

    /// The rows as shown, trailing blanks removed.
    pub fn rows(&self) -> Vec<String> {
        let cols = self.parser.screen().size().1.get();
        self.parser
            .screen()
            .rows(0, cols)
            .map(|r| r.trim_end().to_string())
            .collect()
    }

    /// The rows as one text, one line per row, without the empty rows at the bottom.
    pub fn text(&self) -> String {
        let rows = self.rows();
        let used = rows
            .iter()
            .rposition(|r| !r.is_empty())
            .map_or(0, |i| i + 1);
        rows[..used].join("\n")
    }

    /// Row and column of the cursor, from 0.
    pub fn cursor(&self) -> (u16, u16) {
        self.parser.screen().cursor_position()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_what_a_terminal_shows() {
        let mut s = Screen::new(4, 10);
        s.process(b"hello\r\nabcdefghijkl");
        assert_eq!(s.rows(), ["hello", "abcdefghij", "kl", ""]);
        s.process(b"\x1b[2A\r\x1b[J? x");
        assert_eq!(s.text(), "? x");
    }

    #[test]
    fn answers_the_cursor_position_query_only_when_asked_to() {
        let mut s = Screen::default();
        assert!(s.process(b"\x1b7\x1b[999;999H\x1b[6n\x1b8").is_empty());
        s.answer_queries(true);
        let reply = s.process(b"\x1b7\x1b[999;999H\x1b[6n\x1b8");
        assert_eq!(reply, b"\x1b[24;80R");
        assert_eq!(s.cursor(), (0, 0), "the cursor is restored");
        // other status reports are not position queries
        assert!(s.process(b"\x1b[5n").is_empty());
    }
}
