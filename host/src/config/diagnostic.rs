//! Problems in a config file, printed with file, line, column and a caret under the culprit. The quoted
//! line and the message never show a secret (see `redact`).

use super::redact::redact_line;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// Byte range in the file; `None` for problems that concern the whole file.
    pub span: Option<Range<usize>>,
    pub message: String,
    /// Where a position was found: 1-based line and column, and the line's text.
    location: Option<(usize, usize, String)>,
}

impl Diagnostic {
    pub fn new(
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let location = span.as_ref().map(|s| {
            let (line, col, src) = locate(text, s.start);
            let (src, col) = redact_line(&src, col);
            (line, col, src)
        });
        Diagnostic {
            file: file.to_path_buf(),
            span,
            message: redact_line(&message.into(), 1).0,
            location,
        }
    }

    pub fn line_col(&self) -> Option<(usize, usize)> {
        self.location.as_ref().map(|(l, c, _)| (*l, *c))
    }
}

/// 1-based line and column (in characters) of a byte offset, and that line's text.
fn locate(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[..offset].matches('\n').count() + 1;
    let col = text[line_start..offset].chars().count() + 1;
    (
        line,
        col,
        text[line_start..line_end]
            .trim_end_matches('\r')
            .to_string(),
    )
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            None => write!(f, "{}: error: {}", self.file.display(), self.message),
            Some((line, col, src)) => {
                writeln!(
                    f,
                    "{}:{line}:{col}: error: {}",
                    self.file.display(),
                    self.message
                )?;
                let width = line.to_string().len();
                let span_len = self.span.as_ref().map_or(1, |s| s.len());
                let carets = span_len.clamp(1, src.chars().count().saturating_sub(col - 1).max(1));
                writeln!(f, "{:width$} |", "")?;
                writeln!(f, "{line} | {src}")?;
                write!(
                    f,
                    "{:width$} | {}{}",
                    "",
                    " ".repeat(col - 1),
                    "^".repeat(carets)
                )
            }
        }
    }
}

/// Every problem found in one config file, reported together.
#[derive(Debug, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} problem{} found", if n == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let text = "a = 1\nbad = oops\n";
        let d = Diagnostic::new(Path::new("p.toml"), text, Some(12..16), "no");
        assert_eq!(d.line_col(), Some((2, 7)));
        assert_eq!(
            d.to_string(),
            "p.toml:2:7: error: no\n  |\n2 | bad = oops\n  |       ^^^^"
        );
    }

    #[test]
    fn never_quotes_a_secret() {
        let cases = [
            // A librdkafka property the client refuses, next to a password.
            (
                "properties = { \"sasl.password\" = \"hunter2\", \"no.such\" = \"1\" }",
                "properties",
            ),
            // A mistyped field holding a connection string.
            ("url = \"mongodb://app:hunter2@db.example.com/\"", "url"),
            // An inline table nobody knows.
            (
                "creds = { user = \"app\", password = \"hunter2\" }",
                "creds",
            ),
            // A syntax error.
            ("sasl.password = \"hunter2", "sasl"),
        ];
        for (line, at) in cases {
            let text = format!("[stages.x]\n{line}\n");
            let start = text.find(at).unwrap();
            let span = Some(start..start + at.len());
            let shown = Diagnostic::new(Path::new("p.toml"), &text, span, "problem").to_string();
            assert!(
                !shown.contains("hunter2") && shown.contains("***"),
                "{shown}"
            );
            assert!(
                shown.contains(&format!("| {at}")),
                "the caret line is kept: {shown}"
            );
        }
        let d = Diagnostic::new(
            Path::new("p.toml"),
            "",
            None,
            "cannot reach mongodb://a:hunter2@h",
        );
        assert_eq!(d.message, "cannot reach mongodb://a:***@h");
    }
}
