//! Typed answers (text, masked tokens, hidden passwords) on any terminal, serial consoles
//! included, where an answer is often longer than the screen is wide (an SSH key, a k3s
//! token).
//!
//! dialoguer's text prompts were not used for these: they switch the terminal to raw mode
//! for each key and back, so the keys of a paste that arrive in between are echoed by the
//! kernel a second time, and their redraw counts one screen row per prompt whatever the
//! input's length, which leaves fragments of a wrapped line behind. Here the screen model
//! is explicit and tested: the question is a block of rows (an error line, when the last
//! answer was refused, then the prompt and what was typed, wrapping at the terminal's
//! width); appended characters are written as they come, anything else redraws the block
//! from its first row; when an answer is accepted the block is replaced by one line,
//! `✔ question · answer`, so the screen keeps one clean line per question. Only relative
//! cursor moves, erase-to-end and CR/LF are used (VT100), and the cursor is never left in
//! the last column, where terminals differ on what comes next.

use std::io;

use console::{measure_text_width, Term};
use dialoguer::theme::{ColorfulTheme, Theme};

use crate::tty::RawMode;

/// A key, as the editor understands the bytes of a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Backspace,
    /// Ctrl-U: clear the line.
    KillLine,
    /// Ctrl-W: delete the word before the cursor.
    KillWord,
    /// Tab: show or hide a masked answer.
    Tab,
    /// Ctrl-C.
    Cancel,
    /// Anything else (cursor keys, function keys, other control characters): ignored.
    Other,
}

/// Turns terminal bytes into [`Key`]s, across reads: UTF-8 sequences and escape sequences
/// may arrive split.
#[derive(Default)]
pub struct KeyReader {
    pending: Vec<u8>,
    /// Inside an escape sequence: 1 = after ESC, 2 = in a CSI, 3 = after ESC O.
    esc: u8,
    after_cr: bool,
}

impl KeyReader {
    pub fn feed(&mut self, byte: u8) -> Option<Key> {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match self.esc {
            1 => {
                self.esc = match byte {
                    b'[' => 2,
                    b'O' => 3,
                    _ => 0,
                };
                return (self.esc == 0).then_some(Key::Other);
            }
            2 => {
                if (0x40..=0x7e).contains(&byte) {
                    self.esc = 0;
                    return Some(Key::Other);
                }
                return None;
            }
            3 => {
                self.esc = 0;
                return Some(Key::Other);
            }
            _ => {}
        }
        if !self.pending.is_empty() || byte >= 0x80 {
            self.pending.push(byte);
            return match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    let c = s.chars().next();
                    self.pending.clear();
                    c.map(Key::Char)
                }
                Err(e) if e.error_len().is_none() && self.pending.len() < 4 => None,
                Err(_) => {
                    self.pending.clear();
                    Some(Key::Other)
                }
            };
        }
        Some(match byte {
            b'\r' => {
                self.after_cr = true;
                Key::Enter
            }
            // CR LF (a paste from some systems) is one Enter, not two.
            b'\n' if after_cr => return None,
            b'\n' => Key::Enter,
            0x7f | 0x08 => Key::Backspace,
            0x15 => Key::KillLine,
            0x17 => Key::KillWord,
            b'\t' => Key::Tab,
            0x03 => Key::Cancel,
            0x1b => {
                self.esc = 1;
                return None;
            }
            b if b < 0x20 => Key::Other,
            b => Key::Char(b as char),
        })
    }
}

/// How typed characters show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Plain,
    /// One `*` per character; Tab shows the text and hides it again.
    Masked {
        revealed: bool,
    },
    /// Nothing at all (passwords).
    Hidden,
}

/// One question being answered.
pub struct Field {
    /// The prompt as drawn, styles included (`? Question (default) › `).
    prompt: String,
    prompt_width: usize,
    text: String,
    echo: Echo,
    /// The last refusal, as drawn (`✘ message`).
    error: Option<String>,
}

/// What a key did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Submit(String),
    Cancel,
}

/// Rows a text of `width` columns takes on a screen `cols` wide, when a line break follows
/// it: at least one.
fn rows_of(width: usize, cols: usize) -> usize {
    width.div_ceil(cols.max(1)).max(1)
}

impl Field {
    pub fn new(prompt: String, echo: Echo, initial: &str) -> Field {
        Field {
            prompt_width: measure_text_width(&prompt),
            prompt,
            text: initial.to_string(),
            echo,
            error: None,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    fn shown(&self) -> String {
        match self.echo {
            Echo::Plain | Echo::Masked { revealed: true } => self.text.clone(),
            Echo::Masked { revealed: false } => "*".repeat(self.text.chars().count()),
            Echo::Hidden => String::new(),
        }
    }

    fn line_width(&self) -> usize {
        self.prompt_width + measure_text_width(&self.shown())
    }

    fn error_rows(&self, cols: usize) -> usize {
        self.error
            .as_ref()
            .map_or(0, |e| rows_of(measure_text_width(e), cols))
    }

    /// The row of the cursor, counted from the block's first row, once drawn.
    fn cursor_row(&self, cols: usize) -> usize {
        self.error_rows(cols) + self.line_width() / cols.max(1)
    }

    /// The whole block, drawn from the start of its first row; the cursor ends after the
    /// last character (on the next row when the line fills the last column).
    fn draw(&self, cols: usize) -> String {
        let mut out = String::new();
        if let Some(e) = &self.error {
            out.push_str(e);
            out.push_str("\r\n");
        }
        out.push_str(&self.prompt);
        out.push_str(&self.shown());
        if self.line_width().is_multiple_of(cols.max(1)) {
            out.push_str("\r\n");
        }
        out
    }
}

/// The screen side of a [`Field`]: what to write for each event, given the width.
pub struct Editor {
    pub field: Field,
    cols: usize,
    /// Rows between the block's first row and the cursor (None: not drawn yet).
    cursor_row: Option<usize>,
}

impl Editor {
    pub fn new(field: Field, cols: usize) -> Editor {
        Editor {
            field,
            cols: cols.max(1),
            cursor_row: None,
        }
    }

    /// Back to the block's first row and erase it and everything below.
    fn erase(&mut self) -> String {
        let mut out = String::new();
        if let Some(n) = self.cursor_row.take() {
            if n > 0 {
                out.push_str(&format!("\x1b[{n}A"));
            }
            out.push_str("\r\x1b[J");
        }
        out
    }

    pub fn redraw(&mut self) -> String {
        let mut out = self.erase();
        out.push_str(&self.field.draw(self.cols));
        self.cursor_row = Some(self.field.cursor_row(self.cols));
        out
    }

    /// Applies one key; returns what to write and what happened.
    pub fn key(&mut self, key: Key) -> (String, Outcome) {
        match key {
            Key::Enter => (String::new(), Outcome::Submit(self.field.text.clone())),
            Key::Cancel => (String::new(), Outcome::Cancel),
            Key::Char(c) if !c.is_control() => {
                self.field.text.push(c);
                let shown = match self.field.echo {
                    Echo::Plain | Echo::Masked { revealed: true } => c.to_string(),
                    Echo::Masked { revealed: false } => "*".into(),
                    Echo::Hidden => String::new(),
                };
                if self.cursor_row.is_none() {
                    return (self.redraw(), Outcome::Continue);
                }
                let mut out = shown;
                if !out.is_empty() && self.field.line_width().is_multiple_of(self.cols) {
                    out.push_str("\r\n");
                }
                self.cursor_row = Some(self.field.cursor_row(self.cols));
                (out, Outcome::Continue)
            }
            Key::Backspace => {
                if self.field.text.pop().is_none() {
                    return (String::new(), Outcome::Continue);
                }
                (self.redraw(), Outcome::Continue)
            }
            Key::KillLine => {
                self.field.text.clear();
                (self.redraw(), Outcome::Continue)
            }
            Key::KillWord => {
                let t = self.field.text.trim_end();
                let cut = t.rfind(char::is_whitespace).map_or(0, |i| i + 1);
                self.field.text.truncate(cut);
                (self.redraw(), Outcome::Continue)
            }
            Key::Tab => match self.field.echo {
                Echo::Masked { revealed } => {
                    self.field.echo = Echo::Masked {
                        revealed: !revealed,
                    };
                    (self.redraw(), Outcome::Continue)
                }
                _ => (String::new(), Outcome::Continue),
            },
            Key::Char(_) | Key::Other => (String::new(), Outcome::Continue),
        }
    }

    /// The answer was refused: the message above the prompt, the text kept for editing.
    pub fn reject(&mut self, error: String) -> String {
        self.field.error = Some(error);
        self.redraw()
    }

    /// The answer was accepted: the block becomes `record` (one line).
    pub fn accept(&mut self, record: &str) -> String {
        let mut out = self.erase();
        out.push_str(record);
        out.push_str("\r\n");
        out
    }
}

/// `text` in at most `max` columns: the start and the end with `…` between.
pub fn elide(text: &str, max: usize) -> String {
    if measure_text_width(text) <= max {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let keep = max.saturating_sub(1);
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let mut out: String = chars[..head.min(chars.len())].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len().saturating_sub(tail)..]);
    out
}

/// One question as the theme draws it.
pub struct Prompt<'a> {
    pub theme: &'a ColorfulTheme,
    pub prompt: &'a str,
    /// Shown in parentheses after the question (a default, or how to keep the current value).
    pub hint: Option<&'a str>,
    pub echo: Echo,
    /// Text already on the line, for editing (an answer from a file that was refused).
    pub initial: &'a str,
    /// A refusal to show from the start (the last try of a question asked again).
    pub error: Option<&'a str>,
    /// How the accepted answer shows on its record line.
    pub record: &'a dyn Fn(&str) -> String,
}

/// Asks on `term` until `check` accepts the typed text (its `Err` is shown, the text is
/// kept for editing); returns the text as typed. `Err(Interrupted)` on Ctrl-C.
pub fn ask(
    term: &Term,
    p: &Prompt<'_>,
    mut check: impl FnMut(&str) -> Result<(), String>,
) -> io::Result<String> {
    let mut prompt = String::new();
    let _ = p.theme.format_input_prompt(&mut prompt, p.prompt, p.hint);
    let cols = usize::from(term.size().1);
    let mut ed = Editor::new(Field::new(prompt, p.echo, p.initial), cols);
    if let Some(e) = p.error {
        let mut err = String::new();
        let _ = p.theme.format_error(&mut err, e);
        ed.field.error = Some(err);
    }
    let raw = RawMode::enter()?;
    term.write_str(&ed.redraw())?;
    let mut keys = KeyReader::default();
    let mut byte = [0u8; 1];
    loop {
        raw.read(&mut byte)?;
        let Some(key) = keys.feed(byte[0]) else {
            continue;
        };
        let (out, outcome) = ed.key(key);
        term.write_str(&out)?;
        match outcome {
            Outcome::Continue => {}
            Outcome::Cancel => {
                term.write_str(&ed.erase())?;
                return Err(io::ErrorKind::Interrupted.into());
            }
            Outcome::Submit(text) => match check(&text) {
                Ok(()) => {
                    // `✔ question · answer` on one row: the answer elided to fit.
                    let room = cols.saturating_sub(measure_text_width(p.prompt) + 6);
                    let mut record = String::new();
                    let _ = p.theme.format_input_prompt_selection(
                        &mut record,
                        p.prompt,
                        &elide(&(p.record)(&text), room),
                    );
                    term.write_str(&ed.accept(&record))?;
                    return Ok(text);
                }
                Err(e) => {
                    let mut err = String::new();
                    let _ = p.theme.format_error(&mut err, &e);
                    term.write_str(&ed.reject(err))?;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> Vec<Key> {
        let mut r = KeyReader::default();
        bytes.iter().filter_map(|b| r.feed(*b)).collect()
    }

    #[test]
    fn bytes_become_keys() {
        assert_eq!(
            keys(b"a\x7f\x15\x17\t\x03\r"),
            [
                Key::Char('a'),
                Key::Backspace,
                Key::KillLine,
                Key::KillWord,
                Key::Tab,
                Key::Cancel,
                Key::Enter
            ]
        );
        // cursor keys, bracketed paste markers and SS3 keys are ignored as one key each
        assert_eq!(
            keys(b"\x1b[A\x1b[200~x\x1b[201~\x1bOP"),
            [
                Key::Other,
                Key::Other,
                Key::Char('x'),
                Key::Other,
                Key::Other
            ]
        );
        // CR LF is one Enter; a lone LF is one too
        assert_eq!(keys(b"\r\n\n"), [Key::Enter, Key::Enter]);
        assert_eq!(keys("é→".as_bytes()), [Key::Char('é'), Key::Char('→')]);
    }

    /// What a VT100 of `cols` columns shows after `out`, rows right-trimmed.
    fn screen(out: &str, cols: u16) -> Vec<String> {
        let size = |n| std::num::NonZeroU16::new(n).unwrap();
        let mut p = vt100::Parser::new(size(24), size(cols), 0);
        p.process(out.as_bytes());
        p.screen()
            .rows(0, cols)
            .map(|r| r.trim_end().to_string())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .skip_while(String::is_empty)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    }

    fn type_all(ed: &mut Editor, text: &str) -> String {
        text.chars().map(|c| ed.key(Key::Char(c)).0).collect()
    }

    #[test]
    fn a_long_answer_wraps_and_edits_cleanly_at_every_length() {
        // Every length around the row boundaries: appends, then backspaces back down.
        let prompt = "? key › ".to_string();
        for n in 60..=175 {
            let text: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let mut out = String::from("before\r\n");
            let mut ed = Editor::new(Field::new(prompt.clone(), Echo::Plain, ""), 80);
            out += &ed.redraw();
            out += &type_all(&mut ed, &text);
            let full = format!("{prompt}{text}");
            let want: Vec<String> = std::iter::once("before".to_string())
                .chain(
                    full.chars()
                        .collect::<Vec<_>>()
                        .chunks(80)
                        .map(|c| c.iter().collect()),
                )
                .collect();
            assert_eq!(screen(&out, 80), want, "typing {n} characters");
            for _ in 0..20 {
                out += &ed.key(Key::Backspace).0;
            }
            let kept = format!("{prompt}{}", &text[..n - 20]);
            let want: Vec<String> = std::iter::once("before".to_string())
                .chain(
                    kept.chars()
                        .collect::<Vec<_>>()
                        .chunks(80)
                        .map(|c| c.iter().collect()),
                )
                .collect();
            assert_eq!(screen(&out, 80), want, "{n} characters less 20");
            out += &ed.accept("✔ key · done");
            assert_eq!(screen(&out, 80), ["before", "✔ key · done"], "{n}");
        }
    }

    #[test]
    fn an_error_shows_above_the_kept_text_until_accepted() {
        let mut ed = Editor::new(Field::new("? url › ".into(), Echo::Plain, ""), 40);
        let mut out = ed.redraw();
        out += &type_all(&mut ed, "http://a-very-long-host-name.example:6443");
        out += &ed.reject("✘ must use https, not http; write it as https://HOST:PORT".into());
        let s = screen(&out, 40);
        assert_eq!(
            s,
            [
                "✘ must use https, not http; write it as",
                "https://HOST:PORT",
                "? url › http://a-very-long-host-name.exa",
                "mple:6443"
            ]
        );
        out += &ed.key(Key::KillLine).0;
        out += &type_all(&mut ed, "https://h");
        assert_eq!(
            screen(&out, 40),
            [
                "✘ must use https, not http; write it as",
                "https://HOST:PORT",
                "? url › https://h"
            ]
        );
        out += &ed.accept("✔ url · https://h:6443");
        assert_eq!(screen(&out, 40), ["✔ url · https://h:6443"]);
    }

    #[test]
    fn masked_answers_show_stars_and_tab_reveals() {
        let mut ed = Editor::new(
            Field::new("? token › ".into(), Echo::Masked { revealed: false }, ""),
            80,
        );
        let mut out = ed.redraw();
        out += &type_all(&mut ed, "s3cret");
        assert_eq!(screen(&out, 80), ["? token › ******"]);
        out += &ed.key(Key::Tab).0;
        assert_eq!(screen(&out, 80), ["? token › s3cret"]);
        out += &type_all(&mut ed, "!");
        out += &ed.key(Key::Tab).0;
        assert_eq!(screen(&out, 80), ["? token › *******"]);
        assert_eq!(ed.key(Key::Enter).1, Outcome::Submit("s3cret!".into()));
        let mut hidden = Editor::new(Field::new("? pw › ".into(), Echo::Hidden, ""), 80);
        let mut out = hidden.redraw();
        out += &type_all(&mut hidden, "pass");
        out += &hidden.key(Key::Tab).0;
        assert_eq!(screen(&out, 80), ["? pw ›"]);
    }

    #[test]
    fn kill_word_and_initial_text() {
        let mut ed = Editor::new(Field::new("? x › ".into(), Echo::Plain, "a bc "), 80);
        let mut out = ed.redraw();
        out += &ed.key(Key::KillWord).0;
        assert_eq!(ed.field.text(), "a ");
        out += &type_all(&mut ed, "d");
        assert_eq!(screen(&out, 80), ["? x › a d"]);
    }

    #[test]
    fn elides_in_the_middle() {
        assert_eq!(elide("short", 10), "short");
        assert_eq!(
            elide("ssh-ed25519 AAAAC3NzaC1 test@rkos", 15),
            "ssh-ed2…st@rkos"
        );
        assert_eq!(measure_text_width(&elide(&"x".repeat(200), 60)), 60);
    }
}
