//! Compile diagnostics as data, and their one text rendering.
//!
//! The parser and checker only collect [`Diagnostic`]s with byte spans; turning them into text
//! for a terminal happens in [`render`], called at the edges (the CLI, an error's `Display`).

use crate::source::{SourceFile, Span};
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::{self, Files};
use codespan_reporting::term::{self, Chars, Config};
use std::ops::Range;

/// One compile error at a span of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// One line saying what is wrong, e.g. "mismatched types".
    pub message: String,
    pub span: Span,
    /// Text shown beside the caret, e.g. "expected int, found float".
    pub label: String,
    /// An optional hint shown below the source line.
    pub note: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span,
            label: String::new(),
            note: None,
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.note = Some(note.into());
        self
    }
}

/// At most this many characters of a source line are shown on each side of a caret, so a
/// megabyte-long line (minified or binary input) costs the same to report as a short one.
const CONTEXT_CHARS: usize = 80;

/// The part of one source line a diagnostic shows, presented to codespan-reporting as a whole
/// file while it reports the real line and column numbers.
struct LineWindow<'a> {
    name: &'a str,
    text: &'a str,
    line: usize,
    /// The real column of `text`'s first character.
    first_col: usize,
}

impl<'a> Files<'a> for LineWindow<'a> {
    type FileId = ();
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, (): ()) -> Result<&'a str, files::Error> {
        Ok(self.name)
    }

    fn source(&'a self, (): ()) -> Result<&'a str, files::Error> {
        Ok(self.text)
    }

    fn line_index(&'a self, (): (), _byte_index: usize) -> Result<usize, files::Error> {
        Ok(0)
    }

    fn line_number(&'a self, (): (), _line_index: usize) -> Result<usize, files::Error> {
        Ok(self.line)
    }

    fn column_number(
        &'a self,
        (): (),
        _line_index: usize,
        byte_index: usize,
    ) -> Result<usize, files::Error> {
        let byte_index = byte_index.min(self.text.len());
        Ok(self.first_col + self.text[..byte_index].chars().count())
    }

    fn line_range(&'a self, (): (), _line_index: usize) -> Result<Range<usize>, files::Error> {
        Ok(0..self.text.len())
    }
}

/// Moves `from` by up to `n` characters within `text`, backwards or forwards.
fn step_chars(text: &str, from: usize, n: usize, forward: bool) -> usize {
    if forward {
        text[from..]
            .char_indices()
            .nth(n)
            .map_or(text.len(), |(i, _)| from + i)
    } else {
        text[..from]
            .char_indices()
            .rev()
            .nth(n.saturating_sub(1))
            .map_or(0, |(i, _)| i)
    }
}

/// Renders diagnostics as plain text (no colour), each as
///
/// ```text
/// error: mismatched types
///  --> game.kl:3:9
///   |
/// 3 |     x = 1.5;
///   |         ^^^ expected int, found float
/// ```
///
/// Only the first line of a span is shown, and at most [`CONTEXT_CHARS`] characters on each side.
pub fn render(file: &SourceFile, diagnostics: &[Diagnostic]) -> String {
    let config = Config {
        chars: Chars::ascii(),
        ..Config::default()
    };
    let text = file.text();
    let mut out = term::termcolor::NoColor::new(Vec::new());
    for d in diagnostics {
        let mut start = (d.span.start as usize).min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let position = file.line_col(start as u32);
        let line = file.line_range(position.line);
        let start = start.clamp(line.start, line.end);
        let mut end = (d.span.end as usize).clamp(start, line.end);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let line_text = &text[line.clone()];
        let (s, e) = (start - line.start, end - line.start);
        let window_start = step_chars(line_text, s, CONTEXT_CHARS, false);
        let window_end = step_chars(line_text, e.max(s), CONTEXT_CHARS, true).min(step_chars(
            line_text,
            s,
            2 * CONTEXT_CHARS,
            true,
        ));
        let window = LineWindow {
            name: file.name(),
            text: &line_text[window_start..window_end],
            line: position.line as usize,
            first_col: position.col as usize - line_text[window_start..s].chars().count(),
        };
        let label = (s - window_start)..(e.min(window_end) - window_start);
        let mut cs = CsDiagnostic::error()
            .with_message(&d.message)
            .with_labels(vec![Label::primary((), label).with_message(&d.label)]);
        if let Some(note) = &d.note {
            cs = cs.with_notes(vec![note.clone()]);
        }
        // Writing into a Vec cannot fail, and the label lies inside the window.
        let _ = term::emit_to_write_style(&mut out, &config, &window, &cs);
    }
    String::from_utf8_lossy(&out.into_inner()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_show_a_window_with_the_true_column() {
        let text = format!("fn main() {{ {}oops }}", "x ".repeat(500_000));
        let file = SourceFile::new("long.kl", text.clone());
        let at = text.find("oops").unwrap() as u32;
        let d = Diagnostic::new("unknown name `oops`", Span::new(at, at + 4)).with_label("here");
        let out = render(&file, &[d]);
        assert!(out.contains(&format!("long.kl:1:{}", at + 1)), "{out}");
        assert!(out.len() < 1000, "rendered {} bytes", out.len());
        assert!(out.contains("^^^^ here"), "{out}");
    }

    #[test]
    fn spans_at_the_end_and_past_it_render() {
        let file = SourceFile::new("t.kl", "fn main() {\r\n  print(1)\n");
        let d = |a, b| Diagnostic::new("m", Span::new(a, b));
        // Line 2 starts at byte 13, after "\r\n"; line 3 (empty) at 24.
        let out = render(&file, &[d(0, 0), d(15, 20), d(100, 200), d(13, 40)]);
        assert!(out.contains("t.kl:1:1"), "{out}");
        assert!(out.contains("t.kl:2:3"), "{out}");
        assert!(out.contains("t.kl:3:1"), "{out}");
        assert!(out.contains("t.kl:2:1"), "{out}");
        assert!(!out.contains('\r'), "{out}");
    }
}
