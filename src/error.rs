//! The top error type: every stage's error folds into [`Error`], which knows
//! its exit code, and [`SourceError`] renders a `file:line:column` excerpt.

use std::fmt;
use std::path::{Path, PathBuf};

/// Ansible's exit codes, which mailrun keeps.
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const HOST_FAILED: i32 = 2;
    pub const UNREACHABLE: i32 = 3;
    pub const PARSE: i32 = 4;
    pub const BAD_OPTIONS: i32 = 5;
    pub const INTERRUPTED: i32 = 99;
    pub const UNEXPECTED: i32 = 250;
}

/// A position in a source file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// An error tied to a place in a file: rendered with an excerpt and a caret.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceError {
    pub file: PathBuf,
    pub pos: Pos,
    pub msg: String,
    /// "did you mean …" or another hint, shown under the excerpt.
    pub help: Option<String>,
    /// The offending line, when the source text is at hand.
    pub line_text: Option<String>,
}

impl SourceError {
    pub fn new(file: &Path, pos: Pos, msg: impl Into<String>) -> Self {
        let line_text = std::fs::read_to_string(file).ok().and_then(|s| {
            s.lines()
                .nth(pos.line.saturating_sub(1))
                .map(str::to_string)
        });
        SourceError {
            file: file.to_path_buf(),
            pos,
            msg: msg.into(),
            help: None,
            line_text,
        }
    }

    /// Like [`SourceError::new`], with the source text already in memory.
    pub fn with_source(file: &Path, src: &str, pos: Pos, msg: impl Into<String>) -> Self {
        let line_text = src
            .lines()
            .nth(pos.line.saturating_sub(1))
            .map(str::to_string);
        SourceError {
            file: file.to_path_buf(),
            pos,
            msg: msg.into(),
            help: None,
            line_text,
        }
    }

    pub fn help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.pos.line,
            self.pos.col,
            self.msg
        )?;
        if let Some(text) = &self.line_text {
            let num = self.pos.line.to_string();
            let pad = " ".repeat(num.len());
            // Tabs are shown as one space so the caret lines up; a long line
            // is shown as a window around the caret.
            let chars: Vec<char> = text
                .chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .collect();
            let col = self.pos.col.saturating_sub(1).min(chars.len());
            let start = col.saturating_sub(60);
            let end = (col + 40).min(chars.len());
            let mut shown: String = chars[start..end].iter().collect();
            if start > 0 {
                shown.insert(0, '…');
            }
            if end < chars.len() {
                shown.push('…');
            }
            let caret_at = col - start + usize::from(start > 0);
            write!(
                f,
                "\n{pad} |\n{num} | {shown}\n{pad} | {}^",
                " ".repeat(caret_at)
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

/// Every error that ends a run before or outside the per-host results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input in a playbook, inventory or vars file: exit 4, nothing ran.
    #[error("{0}")]
    Source(Box<SourceError>),
    /// Several parse errors found in one pass: exit 4.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n\n"))]
    Sources(Vec<SourceError>),
    /// A parse-stage error without a position (a missing file, …): exit 4.
    #[error("{0}")]
    Parse(String),
    /// Bad command-line options: exit 5.
    #[error("{0}")]
    Options(String),
    /// Anything else that stops the run: exit 1.
    #[error("{0}")]
    Other(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Source(_) | Error::Sources(_) | Error::Parse(_) => exit::PARSE,
            Error::Options(_) => exit::BAD_OPTIONS,
            Error::Other(_) | Error::Io(_) => exit::ERROR,
        }
    }
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        Error::Source(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
