//! The errors the embedding API returns.

use kiln_lang::program::TrapKind;
use kiln_lang::{Diagnostic, SourceFile};
use std::sync::Arc;

/// Everything that can go wrong loading or calling a script.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The script has compile errors.
    Compile(CompileError),
    /// A call stopped with a runtime error.
    Runtime(RuntimeError),
    /// A script file could not be read.
    Io { path: String, message: String },
    /// No function or global of that name.
    NotFound { what: &'static str, name: String },
    /// A typed handle or dynamic call does not match the script's signature.
    Signature {
        name: String,
        script: String,
        requested: String,
    },
    /// A typed handle's function was removed by a reload, or its signature changed.
    Stale { name: String, reason: String },
    /// A global was read or written as the wrong type.
    GlobalType {
        name: String,
        script: String,
        requested: String,
    },
    /// A host function could not be registered.
    Host { name: String, message: String },
    /// The script is larger, has more functions or takes longer to compile than the engine's
    /// configuration allows (`Config::max_source_bytes`, `max_functions`, `compile_time_limit`).
    Limit(String),
    /// The engine's configuration is unusable.
    Config(String),
    /// Code generation failed; this is a bug in Kiln.
    Internal(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Compile(e) => write!(f, "{e}"),
            Error::Runtime(e) => write!(f, "{e}"),
            Error::Io { path, message } => write!(f, "cannot read {path}: {message}"),
            Error::NotFound { what, name } => write!(f, "no {what} named `{name}` in the module"),
            Error::Signature {
                name,
                script,
                requested,
            } => write!(
                f,
                "function `{name}` has signature `{script}`, but was requested as `{requested}`"
            ),
            Error::Stale { name, reason } => {
                write!(f, "the handle to function `{name}` is stale: {reason}")
            }
            Error::GlobalType {
                name,
                script,
                requested,
            } => write!(
                f,
                "global `{name}` has type `{script}`, but was accessed as `{requested}`"
            ),
            Error::Host { name, message } => {
                write!(f, "cannot register host function `{name}`: {message}")
            }
            Error::Limit(message) => write!(f, "{message}"),
            Error::Config(message) => write!(f, "invalid engine configuration: {message}"),
            Error::Internal(message) => write!(f, "internal compiler error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<CompileError> for Error {
    fn from(e: CompileError) -> Error {
        Error::Compile(e)
    }
}

impl From<RuntimeError> for Error {
    fn from(e: RuntimeError) -> Error {
        Error::Runtime(e)
    }
}

/// Compile errors of one file; `Display` renders them with source lines and carets.
#[derive(Debug)]
pub struct CompileError {
    file: Arc<SourceFile>,
    diagnostics: Vec<Diagnostic>,
}

impl CompileError {
    pub fn new(file: Arc<SourceFile>, diagnostics: Vec<Diagnostic>) -> CompileError {
        CompileError { file, diagnostics }
    }

    pub fn file(&self) -> &SourceFile {
        &self.file
    }

    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&kiln_lang::render(&self.file, &self.diagnostics))
    }
}

/// A runtime error (LANGUAGE.md section 8) returned from a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeError {
    pub kind: TrapKind,
    /// The script function executing the failing operation.
    pub function: String,
    /// `FILE:LINE:COL` of the failing operation.
    pub location: String,
    /// What a failing host function said.
    pub message: Option<String>,
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {} in fn {}",
            self.kind, self.location, self.function
        )?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}
