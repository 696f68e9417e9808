//! The wizard's ways of asking, one look for all: typed answers through [`crate::line`],
//! choices and yes/no through dialoguer (one screen row each, which it redraws well).

use console::{style, Term};
use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Select};

use super::{UiError, R};
use crate::line::{self, Echo, Prompt};

/// What a secret shows on its record line once accepted.
pub const HIDDEN: &str = "********";

pub struct Asker<'a> {
    pub theme: ColorfulTheme,
    pub term: &'a Term,
}

/// One typed question.
pub struct Text<'a> {
    pub prompt: &'a str,
    /// Shown in parentheses after the question.
    pub hint: Option<String>,
    /// What an empty answer means (a current or default value), checked like a typed one.
    pub default: Option<String>,
    pub echo: Echo,
    /// Text already on the line (an answer from a file that was refused), for editing.
    pub initial: String,
    /// What the record line of a secret says when the answer was empty.
    pub empty_secret: &'static str,
    /// A refusal shown from the start, until the answer is accepted.
    pub error: Option<String>,
}

impl<'a> Text<'a> {
    pub fn new(prompt: &'a str) -> Text<'a> {
        Text {
            prompt,
            hint: None,
            default: None,
            echo: Echo::Plain,
            initial: String::new(),
            empty_secret: "(kept)",
            error: None,
        }
    }

    pub fn error(mut self, error: Option<String>) -> Self {
        self.error = error;
        self
    }

    pub fn empty_secret(mut self, label: &'static str) -> Self {
        self.empty_secret = label;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The value an empty answer takes, shown as the hint unless one is given.
    pub fn default(mut self, value: Option<String>) -> Self {
        if self.hint.is_none() {
            self.hint = value.clone();
        }
        self.default = value;
        self
    }

    pub fn echo(mut self, echo: Echo) -> Self {
        self.echo = echo;
        self
    }

    pub fn initial(mut self, text: Option<String>) -> Self {
        self.initial = text.unwrap_or_default();
        self
    }
}

impl Asker<'_> {
    pub fn say(&self, line: impl AsRef<str>) {
        let _ = self.term.write_line(line.as_ref());
    }

    pub fn warn(&self, line: impl AsRef<str>) {
        let _ = self
            .term
            .write_line(&format!("{}", style(line.as_ref()).yellow()));
    }

    /// Takes back the record lines of the last `n` typed answers (each is one row): a pair
    /// of passwords that differ is asked again in their place.
    pub fn erase_records(&self, n: usize) {
        if n > 0 {
            let _ = self.term.write_str(&format!("\x1b[{n}A\r\x1b[J"));
        }
    }

    /// Asks until `check` accepts the answer (the text as typed, trimmed, or the default
    /// for an empty one); returns that answer.
    pub fn text(&self, q: Text<'_>, check: impl Fn(&str) -> Result<(), String>) -> R<String> {
        let effective = |typed: &str| -> String {
            let t = typed.trim();
            match (&q.default, t.is_empty()) {
                (Some(d), true) => d.clone(),
                _ => t.to_string(),
            }
        };
        let empty_secret = q.empty_secret;
        let plain = q.echo == Echo::Plain;
        let record = |typed: &str| -> String {
            match (plain, effective(typed)) {
                (true, v) if v.is_empty() || v == "-" => "(none)".into(),
                (true, v) => v,
                (false, _) if typed.is_empty() => empty_secret.into(),
                (false, _) => HIDDEN.into(),
            }
        };
        let typed = line::ask(
            self.term,
            &Prompt {
                theme: &self.theme,
                prompt: q.prompt,
                hint: q.hint.as_deref(),
                echo: q.echo,
                initial: &q.initial,
                error: q.error.as_deref(),
                record: &record,
            },
            |typed| check(&effective(typed)),
        )?;
        Ok(effective(&typed))
    }

    /// A choice among `items`; returns its index.
    pub fn select(&self, prompt: &str, items: &[impl AsRef<str>], default: usize) -> R<usize> {
        Ok(Select::with_theme(&self.theme)
            .with_prompt(prompt)
            .items(items.iter().map(AsRef::as_ref))
            .default(default.min(items.len().saturating_sub(1)))
            .interact_on(self.term)?)
    }

    pub fn confirm(&self, prompt: &str, default: bool) -> R<bool> {
        Ok(Confirm::with_theme(&self.theme)
            .with_prompt(prompt)
            .default(default)
            .interact_on(self.term)?)
    }
}

/// Items separated by commas or spaces.
pub fn list(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The hint of a list question: what Enter keeps, and how to say "none".
pub fn keep_hint(current: &[String], what: &str, none: &str) -> String {
    if current.is_empty() {
        none.to_string()
    } else if current.len() == 1 && current[0].len() <= 24 {
        format!("Enter keeps {}; - for none", current[0])
    } else if current.len() == 1 {
        format!("Enter keeps 1 {}; - for none", what.trim_end_matches('s'))
    } else {
        format!("Enter keeps {} {what}; - for none", current.len())
    }
}

impl From<std::io::Error> for UiError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::Interrupted {
            UiError::Cancelled
        } else {
            UiError::Term(dialoguer::Error::IO(e))
        }
    }
}
