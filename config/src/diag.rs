//! Diagnostics: every problem found in a source, with where it is and what was expected.

use std::fmt;

/// How bad a diagnostic is. Errors leave the source out of the merge; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem in one source. `Display` renders `SOURCE:LINE:COL: key.path: message`
/// (line and column are left out when unknown, the key path when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A file path, or `kernel command line`.
    pub source: String,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based; on the kernel command line, the character offset of the word plus one.
    pub column: Option<usize>,
    /// Dotted key path, e.g. `rkos.write_files[2].permissions`; empty for the whole source.
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn error(
        source: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Error, source, path, message)
    }

    pub fn warning(
        source: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Warning, source, path, message)
    }

    fn new(
        severity: Severity,
        source: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        // Messages quote what was found; a URL's password must not reach the console banner
        // or the world-readable /run/rkos/config-errors through them.
        let message = match crate::show::mask_userinfo(&message) {
            std::borrow::Cow::Owned(m) => m,
            std::borrow::Cow::Borrowed(_) => message,
        };
        Diagnostic {
            severity,
            source: source.into(),
            line: None,
            column: None,
            path: path.into(),
            message,
        }
    }

    pub fn at(mut self, mark: &crate::node::Mark) -> Self {
        self.source = mark.source.to_string();
        self.line = mark.line;
        self.column = Some(mark.column);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(col) = self.column {
            write!(f, ":{col}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}
