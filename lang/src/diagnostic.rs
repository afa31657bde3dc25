//! Compile diagnostics as data, and their one text rendering.
//!
//! The parser and checker only collect [`Diagnostic`]s with byte spans; turning them into text
//! for a terminal happens in [`render`], called at the edges (the CLI, an error's `Display`).

use crate::source::{SourceFile, Span};
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Chars, Config};

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

/// Renders diagnostics as plain text (no colour), each as
///
/// ```text
/// error: mismatched types
///  --> game.kl:3:9
///   |
/// 3 |     x = 1.5;
///   |         ^^^ expected int, found float
/// ```
pub fn render(file: &SourceFile, diagnostics: &[Diagnostic]) -> String {
    let files = SimpleFile::new(file.name(), file.text());
    let config = Config {
        chars: Chars::ascii(),
        ..Config::default()
    };
    let mut out = term::termcolor::NoColor::new(Vec::new());
    for d in diagnostics {
        let len = file.text().len();
        let start = (d.span.start as usize).min(len);
        let end = (d.span.end as usize).clamp(start, len);
        let mut cs = CsDiagnostic::error()
            .with_message(&d.message)
            .with_labels(vec![Label::primary((), start..end).with_message(&d.label)]);
        if let Some(note) = &d.note {
            cs = cs.with_notes(vec![note.clone()]);
        }
        // Writing into a Vec cannot fail, and the spans were clamped to the text above.
        let _ = term::emit_to_write_style(&mut out, &config, &files, &cs);
    }
    String::from_utf8_lossy(&out.into_inner()).into_owned()
}
