//! The Kiln front end: source text to a checked [`Program`].
//!
//! It owns the lexer, the parser (which recovers from errors so one run reports them all), name
//! resolution and type checking, the diagnostics they produce, the tree-walking reference
//! interpreter used as a test oracle, and the program generators used by tests and benches.
//!
//! It knows nothing of Cranelift, machine code or caches: its output is plain data
//! ([`program::Program`] or a list of [`diagnostic::Diagnostic`]s with byte spans).

pub mod diagnostic;
pub mod generate;
pub mod interp;
pub mod program;
pub mod source;

mod ast;
mod check;
mod consts;
mod lexer;
mod parser;

pub use diagnostic::{Diagnostic, render};
pub use program::Program;
pub use source::{SourceFile, Span};

use program::HostSignature;
use std::sync::Arc;

/// What the checker requires of a module beyond the language itself.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// `kiln run` requires `fn main()` taking no parameters and returning nothing or `int`.
    pub require_main: bool,
}

/// Decodes a script file's bytes. Invalid UTF-8 is replaced for display and reported as a
/// diagnostic at the first invalid byte, so such a file never yields a program.
pub fn source_from_bytes(name: &str, bytes: &[u8]) -> (Arc<SourceFile>, Vec<Diagnostic>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (SourceFile::new(name, text), Vec::new()),
        Err(e) => {
            let at = e.valid_up_to() as u32;
            let file = SourceFile::new(name, String::from_utf8_lossy(bytes).into_owned());
            let diag = Diagnostic::new("source is not valid UTF-8", Span::new(at, at + 1))
                .with_label("invalid byte sequence here");
            (file, vec![diag])
        }
    }
}

/// Parses, resolves and type-checks one module against the host functions the embedder
/// registered. Returns every diagnostic when there is any.
pub fn check(
    file: &Arc<SourceFile>,
    hosts: &[HostSignature],
    options: &CheckOptions,
) -> Result<Program, Vec<Diagnostic>> {
    let (module, mut diagnostics) = parser::parse(file.text());
    let checked = check::check_module(file, &module, hosts, options, &mut diagnostics);
    match checked {
        Some(program) if diagnostics.is_empty() => Ok(program),
        _ => Err(diagnostics),
    }
}
