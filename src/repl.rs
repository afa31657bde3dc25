//! `kiln repl`: an interactive session over one module that grows with each definition.
//!
//! # How a session works
//!
//! The session is one Kiln module named `<repl>`. Its source is the session's definitions (the
//! `fn`, `global` and `const` items typed or loaded so far, in the order they first appeared,
//! each replaced in place when an item of the same name is defined again) followed by one
//! function, `fn __repl_eval()`, whose body holds the statements of the current input. Every
//! input that changes anything reloads the module with `Module::reload_str`:
//!
//! - Statements become the body of `__repl_eval`, which is then called. Its name and signature
//!   never change, so the program's interface stays the same and the reload is incremental:
//!   only that body is parsed and compiled, every definition is relinked as it was, and every
//!   global keeps its value. That is how state survives from one input to the next.
//! - An expression (exactly one, no `;`) is run as `print(EXPR);`, which shows an int, float or
//!   bool the language's way. If that does not compile but `EXPR;` does (a call of a function
//!   that returns nothing), it runs as that statement. When neither compiles, the reading with
//!   fewer errors is reported.
//! - Definitions reload with an empty `__repl_eval`, so that statements of an earlier input are
//!   never run again. Callers of a redefined function call the new one: every function of the
//!   new generation is linked against the new code.
//! - A compile error changes nothing: the module keeps its last good generation, and the
//!   session's definitions are only updated once a reload has succeeded.
//!
//! # Decisions
//!
//! - **Continuation prompt.** Lines are read one at a time and joined until
//!   `kiln_lang::input_is_complete` says no bracket, string or comment is left open, with
//!   `kiln> ` before the first line and `  ... ` before the others. (A rustyline `Validator`
//!   would keep all lines in one edit buffer, but rustyline has no continuation prompt, so an
//!   unfinished input would look like a hung prompt.) The whole input becomes one history
//!   entry: recalling a multi-line definition brings back all of it, to edit and send again.
//! - **Errors point at what was typed.** Diagnostics and runtime errors are mapped from the
//!   synthetic `<repl>` source back to where the text was written: input number N is the file
//!   `repl[N]` (its lines counted from 1), and an item loaded from a file is shown in that file
//!   at its real line. A runtime error keeps the standard format (`at FILE:L:C in fn NAME`;
//!   statements run as `fn __repl_eval`), and the session goes on after any error.
//! - **A definition with a syntax error** (an input that starts with `fn`, `global` or `const`
//!   but does not parse as items) is checked together with the session's definitions, so that
//!   its errors are reported as definition errors rather than as misplaced statements.
//! - **Typing a global again resets it.** A reload keeps the value of a global whose name and
//!   type are unchanged; a typed redefinition of a global is followed by an assignment of its
//!   initializer (zeroing, for an array), because typing `global n: int = 5;` means `n` is 5.
//!   `:load` and `:reload` keep values, as hot reloading does: editing a file must not reset
//!   the state built in the session.
//! - **Files.** `:load FILE` merges FILE's items by name (the file's version wins) and
//!   remembers FILE, even when its items do not compile, so that fixing it in an editor and
//!   typing `:reload` works. `:reload` reads every remembered file again; an item that came
//!   from a file and is no longer in it is removed. A file that cannot be read or does not
//!   compile changes nothing.
//! - **Statements stay in their function.** Input with a `}` that closes nothing it opened
//!   (`} fn f() {`) would end the body of `__repl_eval` and define things behind the session's
//!   back; it is refused, with a caret at that `}`, before compiling.
//! - **The last `;` is optional.** Statements that do not compile as typed are tried once more
//!   with a `;` after them, because `n += 1` at a prompt means `n += 1;`. As for expressions,
//!   the reading with fewer errors is reported when neither compiles.
//! - **Errors past the end of an input** (`x =`, `fn`) are reported at the end of the input,
//!   "found the end of the input", rather than at text the REPL added after it.
//! - **Terminal or not.** When standard input is a terminal, rustyline edits lines, keeps a
//!   history (`$XDG_STATE_HOME/kiln/history`, else `~/.local/state/kiln/history`; a history
//!   that cannot be read or written costs at most one warning line) and Ctrl-C cancels the
//!   input being typed. Otherwise (a pipe or a file) lines are read plainly: no prompt, no
//!   banner, no history and no escape codes, so standard output holds only what the session
//!   printed.
//! - **Ctrl-C while a script runs** (in a terminal) interrupts the call through the module's
//!   interrupt handle: the script stops with `interrupted` and the session goes on. Ctrl-C is
//!   only forwarded while a call runs; one pressed in the instant the call returns may
//!   interrupt the next input's call at its start instead.
//! - **Ending.** `:quit` and end of input (Ctrl-D) end the session with status 0; errors in
//!   inputs never change the status. Input that ends inside an unfinished entry is reported
//!   and not run.
//! - **Stacks.** Each call of `__repl_eval` runs on a fresh thread with `SCRIPT_STACK`, so
//!   scripts may recurse 10,000 deep as under `kiln run`; compiling stays on the main thread.
//! - **Cache.** Reloads go through the compile cache like `kiln run` (a repeated input can be a
//!   whole-module hit), and the cache is trimmed to its size cap when the session ends.

use crate::{CacheArgs, SCRIPT_STACK, report};
use kiln::{CheckOptions, Engine, Error, Module, ReloadReport, TrapKind};
use kiln_cache::FileStore;
use kiln_lang::{Diagnostic, ItemKind, ItemOutline, SourceFile, Span};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use std::collections::HashSet;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `println!`, except that a standard output nobody reads any more (`kiln repl < FILE | head`)
/// is not a panic: the session goes on, printing nowhere.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The function holding the statements of the current input.
const EVAL: &str = "__repl_eval";
/// The name of the session's module, which its synthetic source is known by.
const SESSION_NAME: &str = "<repl>";
const PROMPT: &str = "kiln> ";
const CONTINUATION_PROMPT: &str = "  ... ";
/// A local of the statement that zeroes a redefined global array.
const ZERO_ARRAY: &str = "__repl_zero";

const HELP: &str = "\
Type Kiln definitions, statements or an expression. An input continues on the next line
while a bracket, string or comment is open.

  fn, global, const   define an item, or replace the item of that name: callers of a
                      redefined fn call the new one; a global typed again is reset to its
                      initializer
  statements          run once: `n += 1;`, `print(x);`, `for i in 0..3 { print(i); }`
                      (the last `;` may be left out; `let` bindings last for one input:
                      keep state in globals)
  an expression       is evaluated and its value printed: `add(1, 2)`, `n * 2.0`

Commands:
  :load FILE   add FILE's definitions, replacing those of the same name
  :reload      read the loaded files again (globals keep their values)
  :defs        list the definitions
  :stats       what the last reload compiled and reused, and session totals
  :help        this text
  :quit        end the session (also :q, or Ctrl-D)

Ctrl-C cancels the input being typed, or interrupts the script that is running.
";

pub fn run(file: Option<&Path>, cache: &CacheArgs) -> ExitCode {
    let crate::CachedEngine {
        engine,
        store,
        open_warning,
    } = match crate::cached_engine(cache) {
        Ok(parts) => parts,
        Err(code) => return code,
    };
    if let Some(w) = &open_warning {
        eprintln!("warning: {w}");
    }
    let mut session = match Session::new(engine) {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    let mut reader = LineReader::new();
    if let LineReader::Terminal(_) = reader {
        session.interrupt_on_ctrl_c();
        say!(
            "kiln {}: type :help for help, :quit or Ctrl-D to leave",
            env!("CARGO_PKG_VERSION")
        );
    }
    if let Some(file) = file {
        session.load(file);
    }
    let status = loop {
        match read_input(&mut reader) {
            Input::Command(line) => {
                if session.command(&line) == Flow::Quit {
                    break ExitCode::SUCCESS;
                }
            }
            Input::Kiln(text) => session.input(&text),
            Input::End => break ExitCode::SUCCESS,
            Input::Failed(message) => {
                eprintln!("error: cannot read the input: {message}");
                break ExitCode::FAILURE;
            }
        }
    };
    reader.save_history();
    session.trim_cache(store.as_deref());
    status
}

/// Where lines come from: a terminal, through rustyline, or a pipe or file, read plainly.
enum LineReader {
    Terminal(Box<Terminal>),
    Piped(std::io::StdinLock<'static>),
}

struct Terminal {
    editor: DefaultEditor,
    /// Where the history is kept; `None` when there is no place for it.
    history: Option<PathBuf>,
}

/// One read of a line.
enum Line {
    Text(String),
    /// Ctrl-C: drop the input being typed.
    Cancelled,
    End,
    Failed(String),
}

impl LineReader {
    fn new() -> LineReader {
        let piped = || LineReader::Piped(std::io::stdin().lock());
        if !std::io::stdin().is_terminal() {
            return piped();
        }
        let config = rustyline::Config::builder()
            .max_history_size(1000)
            .and_then(|b| b.history_ignore_dups(true))
            .map(|b| b.auto_add_history(false).build());
        let Ok(mut editor) = config.and_then(DefaultEditor::with_config) else {
            return piped();
        };
        let history = history_path();
        if let Some(path) = &history
            && path.exists()
            && let Err(e) = editor.load_history(path)
        {
            eprintln!("warning: cannot read the history {}: {e}", path.display());
        }
        LineReader::Terminal(Box::new(Terminal { editor, history }))
    }

    fn read_line(&mut self, prompt: &str) -> Line {
        match self {
            LineReader::Terminal(t) => match t.editor.readline(prompt) {
                Ok(line) => Line::Text(line),
                Err(ReadlineError::Interrupted) => Line::Cancelled,
                Err(ReadlineError::Eof) => Line::End,
                Err(e) => Line::Failed(e.to_string()),
            },
            LineReader::Piped(stdin) => {
                let mut bytes = Vec::new();
                match stdin.read_until(b'\n', &mut bytes) {
                    Ok(0) => Line::End,
                    Ok(_) => {
                        let line = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        Line::Text(String::from_utf8_lossy(line).into_owned())
                    }
                    Err(e) => Line::Failed(e.to_string()),
                }
            }
        }
    }

    fn remember(&mut self, input: &str) {
        if let LineReader::Terminal(t) = self
            && !input.trim().is_empty()
        {
            // Adding to the history in memory cannot fail; the file is written at the end.
            let _ = t.editor.add_history_entry(input);
        }
    }

    fn save_history(&mut self) {
        let LineReader::Terminal(t) = self else {
            return;
        };
        let Some(path) = &t.history else { return };
        let saved = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|()| t.editor.append_history(path).map_err(|e| e.to_string()));
        if let Err(e) = saved {
            eprintln!(
                "warning: cannot save the history to {}: {e}",
                path.display()
            );
        }
    }
}

/// `$XDG_STATE_HOME/kiln/history`, else `~/.local/state/kiln/history`.
fn history_path() -> Option<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    env("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".local").join("state")))
        .map(|state| state.join("kiln").join("history"))
}

/// One complete input.
enum Input {
    /// A line starting with `:`.
    Command(String),
    /// Kiln text with no bracket, string or comment left open (or with an error no further
    /// line could repair).
    Kiln(String),
    End,
    Failed(String),
}

/// Reads lines until they form a complete input.
fn read_input(reader: &mut LineReader) -> Input {
    let mut text = String::new();
    loop {
        let prompt = if text.is_empty() {
            PROMPT
        } else {
            CONTINUATION_PROMPT
        };
        let line = match reader.read_line(prompt) {
            Line::Text(line) => line,
            Line::Cancelled => {
                text.clear();
                continue;
            }
            Line::End => {
                if !text.trim().is_empty() {
                    eprintln!(
                        "error: the input ended inside an unfinished entry (a bracket, string \
                         or comment is still open); it was not run"
                    );
                }
                return Input::End;
            }
            Line::Failed(message) => return Input::Failed(message),
        };
        if text.is_empty() && line.trim_start().starts_with(':') {
            reader.remember(&line);
            return Input::Command(line);
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&line);
        if kiln_lang::input_is_complete(&text) {
            reader.remember(&text);
            return Input::Kiln(text);
        }
    }
}

/// Whether the session goes on after a command.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// One item of the session, as it was written.
#[derive(Clone)]
struct Definition {
    kind: ItemKind,
    name: String,
    /// The input or file the item was written in: what errors in it point into.
    written_in: Arc<SourceFile>,
    /// The whole item in `written_in`.
    span: Span,
    /// The file it was loaded from; `None` when it was typed.
    file: Option<PathBuf>,
}

impl Definition {
    fn new(outline: ItemOutline, written_in: &Arc<SourceFile>, file: Option<&Path>) -> Self {
        Definition {
            kind: outline.kind,
            name: outline.name,
            written_in: written_in.clone(),
            span: outline.span,
            file: file.map(Path::to_path_buf),
        }
    }

    fn text(&self) -> &str {
        &self.written_in.text()[self.span.start as usize..self.span.end as usize]
    }
}

fn keyword(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Fn => "fn",
        ItemKind::Global => "global",
        ItemKind::Const => "const",
    }
}

/// `defs` with `new` merged in by name: each new item replaces the definition of its name in
/// place, or is appended. Two new items of one name are both kept, so that the checker reports
/// the duplicate.
fn merge(defs: &[Definition], new: Vec<Definition>) -> Vec<Definition> {
    let mut merged = defs.to_vec();
    let mut replaced = vec![false; defs.len()];
    for def in new {
        let old = defs
            .iter()
            .zip(&replaced)
            .position(|(d, &done)| d.name == def.name && !done);
        match old {
            Some(i) => {
                merged[i] = def;
                replaced[i] = true;
            }
            None => merged.push(def),
        }
    }
    merged
}

/// `defs` with the items of `file` (read from `path`) merged in, and without the items that
/// came from `path` before but are no longer in it.
fn merge_file(
    defs: &[Definition],
    path: &Path,
    file: &Arc<SourceFile>,
    items: Vec<ItemOutline>,
) -> Vec<Definition> {
    let names: HashSet<&str> = items.iter().map(|i| i.name.as_str()).collect();
    let kept: Vec<Definition> = defs
        .iter()
        .filter(|d| d.file.as_deref() != Some(path) || names.contains(d.name.as_str()))
        .cloned()
        .collect();
    let new = items
        .into_iter()
        .map(|outline| Definition::new(outline, file, Some(path)))
        .collect();
    merge(&kept, new)
}

/// A refusal of `__repl_eval` as an item name, which the session's own function has.
fn reserved_name(items: &[ItemOutline]) -> Option<String> {
    items.iter().any(|i| i.name == EVAL).then(|| {
        format!(
            "error: `{EVAL}` is the function the REPL runs your statements in; choose another name"
        )
    })
}

/// A run of the session's text that was written somewhere else: an item or an input.
struct Piece {
    /// Where it starts in the session's text.
    at: u32,
    len: u32,
    written_in: Arc<SourceFile>,
    /// Where it starts in `written_in`.
    start: u32,
}

/// The text of one generation of the session's module, and where each part of it was written.
struct SessionSource {
    file: Arc<SourceFile>,
    pieces: Vec<Piece>,
}

#[derive(Default)]
struct SourceBuilder {
    text: String,
    pieces: Vec<Piece>,
}

impl SourceBuilder {
    /// Adds text the REPL wrote itself.
    fn text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Adds `span` of `written_in`, remembering where it came from.
    fn written(&mut self, written_in: &Arc<SourceFile>, span: Span) {
        let at = self.text.len() as u32;
        self.text
            .push_str(&written_in.text()[span.start as usize..span.end as usize]);
        self.pieces.push(Piece {
            at,
            len: span.end - span.start,
            written_in: written_in.clone(),
            start: span.start,
        });
    }

    /// Adds the whole of `written_in`.
    fn all_of(&mut self, written_in: &Arc<SourceFile>) {
        self.written(written_in, Span::new(0, written_in.text().len() as u32));
    }

    fn definitions(&mut self, defs: &[Definition]) {
        for d in defs {
            self.written(&d.written_in, d.span);
            self.text("\n");
        }
    }

    fn finish(self) -> SessionSource {
        SessionSource {
            file: SourceFile::new(SESSION_NAME, self.text),
            pieces: self.pieces,
        }
    }
}

/// The session's source: `defs`, then `__repl_eval` with the body `body` adds. Written text is
/// put on lines of its own, so that a trailing `// comment` cannot swallow the REPL's text.
fn compose(defs: &[Definition], body: impl FnOnce(&mut SourceBuilder)) -> SessionSource {
    let mut b = SourceBuilder::default();
    b.definitions(defs);
    b.text(&format!("fn {EVAL}() {{\n"));
    body(&mut b);
    b.text("\n}\n");
    b.finish()
}

impl SessionSource {
    /// The piece holding session offset `offset` (its end included), and the offset in the
    /// piece's own text.
    fn written_at(&self, offset: u32) -> Option<(&Piece, u32)> {
        self.pieces
            .iter()
            .find(|p| p.at <= offset && offset <= p.at + p.len)
            .map(|p| (p, p.start + (offset - p.at)))
    }

    /// Renders diagnostics against the text they point into, as it was written.
    fn render(&self, diagnostics: &[Diagnostic]) -> String {
        diagnostics
            .iter()
            .map(|d| {
                let mut d = Diagnostic {
                    message: self.map_locations(&d.message),
                    span: d.span,
                    label: self.map_locations(&d.label),
                    note: d.note.as_deref().map(|n| self.map_locations(n)),
                };
                if let Some((piece, start)) = self.written_at(d.span.start) {
                    let end = d.span.end.clamp(d.span.start, piece.at + piece.len);
                    d.span = Span::new(start, start + (end - d.span.start));
                    return kiln_lang::render(&piece.written_in, &[d]);
                }
                match self.pieces.last() {
                    // The parser ran past the end of the input into the REPL's own text.
                    Some(last) if d.span.start > last.at + last.len => {
                        let d = at_end_of_input(d, last.start + last.len);
                        kiln_lang::render(&last.written_in, &[d])
                    }
                    _ => kiln_lang::render(&self.file, &[d]),
                }
            })
            .collect()
    }

    /// `<repl>:LINE:COL` as the place that text was written, e.g. `repl[3]:1:5`; any other
    /// location as it is.
    fn map_location(&self, location: &str) -> String {
        self.session_offset(location)
            .and_then(|offset| self.written_at(offset))
            .map_or_else(
                || location.to_string(),
                |(piece, offset)| piece.written_in.location(offset),
            )
    }

    fn session_offset(&self, location: &str) -> Option<u32> {
        let rest = location.strip_prefix(SESSION_NAME)?.strip_prefix(':')?;
        let (line, col) = rest.split_once(':')?;
        let line: u32 = line.parse().ok()?;
        let col: usize = col.parse().ok()?;
        let range = self.file.line_range(line);
        let text = &self.file.text()[range.clone()];
        let byte = text
            .char_indices()
            .nth(col.checked_sub(1)?)
            .map_or(text.len(), |(i, _)| i);
        Some((range.start + byte) as u32)
    }

    /// `text` with each `<repl>:LINE:COL` in it mapped (a note such as "first defined at ...").
    fn map_locations(&self, text: &str) -> String {
        let mut mapped = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(SESSION_NAME) {
            mapped.push_str(&rest[..i]);
            let len = SESSION_NAME.len() + line_col_len(&rest[i + SESSION_NAME.len()..]);
            mapped.push_str(&self.map_location(&rest[i..i + len]));
            rest = &rest[i + len..];
        }
        mapped.push_str(rest);
        mapped
    }
}

/// A diagnostic the parser reported past the end of an input, moved to offset `end` of the
/// input: "expected `;`, found `}`" becomes "expected `;`, found the end of the input".
fn at_end_of_input(mut d: Diagnostic, end: u32) -> Diagnostic {
    d.span = Span::new(end, end);
    if let Some(i) = d.message.rfind(", found ") {
        d.message.truncate(i);
        d.message.push_str(", found the end of the input");
    }
    d
}

/// The offset of the first `}` of `text` that closes no `{` of `text`, outside strings and
/// comments: it would end the body of `__repl_eval`, and what follows would be compiled as
/// items of the session.
fn unmatched_close_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            i += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            continue;
        }
        if rest.starts_with(b"/*") {
            i += block_comment_len(rest);
            continue;
        }
        match bytes[i] {
            b'"' => {
                // A string ends at its closing quote, or (as an error) at the end of its line.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The length of the block comment `text` starts with (they nest), up to the end of `text`
/// if it is never closed.
fn block_comment_len(text: &[u8]) -> usize {
    let mut depth = 0;
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if text[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    text.len()
}

/// The length of the `:LINE:COL` that `text` starts with, or 0.
fn line_col_len(text: &str) -> usize {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = text.strip_prefix(':') else {
        return 0;
    };
    let line = digits(after);
    match after[line..].strip_prefix(':') {
        Some(col) if line > 0 && digits(col) > 0 => 2 + line + digits(col),
        _ => 0,
    }
}

/// `text` with its comments replaced by spaces. Only for items that parsed and cannot hold a
/// string literal (`global` and `const`), so a `//` or `/*` always starts a comment.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
            out.push(' ');
        } else if rest.starts_with("/*") {
            // A comment ends right after an ASCII `*/`, so this is a character boundary.
            rest = &rest[block_comment_len(rest.as_bytes())..];
            out.push(' ');
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The declared type of a `global` or `const` item and its initializer, if it has one, with
/// comments removed and spaces collapsed: `("[int; N]", None)`, `("int", Some("2 * K"))`.
fn typed_item_parts(text: &str) -> (String, Option<String>) {
    let text = strip_comments(text);
    let collapse = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let after_name = text.split_once(':').map_or("", |(_, rest)| rest);
    let body = after_name.trim_end();
    let body = body.strip_suffix(';').unwrap_or(body);
    match body.split_once('=') {
        Some((ty, init)) => (collapse(ty), Some(collapse(init))),
        None => (collapse(body), None),
    }
}

/// The statement that sets global `def` back to its initializer: an assignment for a scalar,
/// a copy of a fresh (zeroed) local for an array.
fn reset_statement(def: &Definition) -> Option<String> {
    let (ty, init) = typed_item_parts(def.text());
    let name = &def.name;
    if ty.starts_with('[') {
        return Some(format!(
            "{{ let {ZERO_ARRAY}: {ty}; {name} = {ZERO_ARRAY}; }}\n"
        ));
    }
    init.map(|init| format!("{name} = {init};\n"))
}

/// Whether `text` starts with an item keyword, after blanks and whole-line comments: such an
/// input is meant as definitions, whatever its errors.
fn starts_with_item_keyword(text: &str) -> bool {
    let first_line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("//"))
        .unwrap_or("");
    let word: String = first_line
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    matches!(word.as_str(), "fn" | "global" | "const")
}

/// "1 fn", "2 globals".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A reload that did not happen: the source it tried and why.
struct Rejected {
    source: SessionSource,
    error: Error,
}

impl Rejected {
    /// Whether an error points outside `input`: the input broke other definitions.
    fn blames_other_text(&self, input: &Arc<SourceFile>) -> bool {
        let Error::Compile(e) = &self.error else {
            return false;
        };
        e.diagnostics().iter().any(|d| {
            self.source
                .written_at(d.span.start)
                .is_none_or(|(piece, _)| !Arc::ptr_eq(&piece.written_in, input))
        })
    }

    fn errors(&self) -> usize {
        match &self.error {
            Error::Compile(e) => e.diagnostics().len(),
            _ => usize::MAX,
        }
    }
}

/// What the session's reloads did together.
#[derive(Default)]
struct Totals {
    reloads: usize,
    module_hits: usize,
    compiled: usize,
    reused: usize,
    active: Duration,
    codegen: Duration,
}

struct Session {
    engine: Engine,
    module: Module,
    defs: Vec<Definition>,
    /// The source of the module's current generation: where its errors point.
    current: SessionSource,
    /// The files `:load`ed, in order, for `:reload`.
    files: Vec<PathBuf>,
    /// Typed inputs so far; input N is written in `repl[N]`.
    inputs: usize,
    last: Option<ReloadReport>,
    totals: Totals,
    /// A reload wrote to the cache, which may have grown past its cap.
    cache_written: bool,
    cache_warned: bool,
    /// A call of `__repl_eval` is running: Ctrl-C interrupts it.
    running: Arc<AtomicBool>,
}

impl Session {
    fn new(engine: Engine) -> Result<Session, Error> {
        let current = compose(&[], |_| {});
        let module = engine.load_str(SESSION_NAME, current.file.text())?;
        Ok(Session {
            engine,
            module,
            defs: Vec::new(),
            current,
            files: Vec::new(),
            inputs: 0,
            last: None,
            totals: Totals::default(),
            cache_written: false,
            cache_warned: false,
            running: Arc::new(AtomicBool::new(false)),
        })
    }

    fn interrupt_on_ctrl_c(&self) {
        let handle = self.module.interrupt_handle();
        let running = self.running.clone();
        // Without the handler Ctrl-C during a call ends the process, as it would anyway.
        let _ = ctrlc::set_handler(move || {
            if running.load(Ordering::SeqCst) {
                handle.interrupt();
            }
        });
    }

    fn command(&mut self, line: &str) -> Flow {
        let line = line.trim();
        let (name, argument) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(n, a)| (n, a.trim()));
        let no_argument = |this: &mut Session, run: fn(&mut Session)| {
            if argument.is_empty() {
                run(this);
            } else {
                eprintln!("error: `{name}` takes no argument");
            }
        };
        match name {
            ":quit" | ":q" if argument.is_empty() => return Flow::Quit,
            ":quit" | ":q" => eprintln!("error: `{name}` takes no argument"),
            ":help" => no_argument(self, |_| say!("{}", HELP.trim_end())),
            ":defs" => no_argument(self, Session::list_definitions),
            ":stats" => no_argument(self, Session::stats),
            ":reload" => no_argument(self, Session::reload_files),
            ":load" if argument.is_empty() => {
                eprintln!("error: `:load` needs a file: `:load FILE`")
            }
            ":load" => self.load(Path::new(argument)),
            _ => eprintln!("error: unknown command `{name}`; type :help for the commands"),
        }
        Flow::Continue
    }

    /// Runs one typed input: definitions, an expression or statements.
    fn input(&mut self, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        self.inputs += 1;
        let input = SourceFile::new(format!("repl[{}]", self.inputs), text);
        match kiln_lang::items(text) {
            // Only comments.
            Some(items) if items.is_empty() => {}
            Some(items) => self.define(&input, items),
            None if starts_with_item_keyword(text) => self.report_syntax_errors(&input),
            None if kiln_lang::is_expression(text) => self.evaluate(&input),
            None => self.run_statements(&input),
        }
    }

    fn define(&mut self, input: &Arc<SourceFile>, items: Vec<ItemOutline>) {
        if let Some(refusal) = reserved_name(&items) {
            eprintln!("{refusal}");
            return;
        }
        let new: Vec<Definition> = items
            .into_iter()
            .map(|outline| Definition::new(outline, input, None))
            .collect();
        let old_globals: HashSet<&str> = self
            .defs
            .iter()
            .filter(|d| d.kind == ItemKind::Global)
            .map(|d| d.name.as_str())
            .collect();
        let resets: String = new
            .iter()
            .filter(|d| d.kind == ItemKind::Global && old_globals.contains(d.name.as_str()))
            .filter_map(reset_statement)
            .collect();
        let redefined: Vec<bool> = new
            .iter()
            .map(|d| self.defs.iter().any(|old| old.name == d.name))
            .collect();
        let defs = merge(&self.defs, new.clone());
        let source = compose(&defs, |b| b.text(&resets));
        if let Err(rejected) = self.reload(source) {
            self.show(&rejected);
            if rejected.blames_other_text(input) {
                eprintln!(
                    "note: nothing was defined: the other definitions would not compile with it"
                );
            }
            return;
        }
        self.defs = defs;
        if !resets.is_empty() {
            self.call_eval();
        }
        for (def, again) in new.iter().zip(redefined) {
            let verb = if again { "redefined" } else { "defined" };
            say!("{verb} {}", self.describe(def));
        }
    }

    /// Reports the errors of text that does not parse as items (a typed definition or a file):
    /// checked ahead of the session's definitions, so that names it uses are found and an item
    /// it redefines is reported as a duplicate in the definitions, which is not shown.
    fn report_syntax_errors(&self, written_in: &Arc<SourceFile>) {
        let mut b = SourceBuilder::default();
        b.all_of(written_in);
        b.text("\n");
        b.definitions(&self.defs);
        let source = b.finish();
        let checked = self.engine.check_bytes(
            SESSION_NAME,
            source.file.text().as_bytes(),
            &CheckOptions::default(),
        );
        let own_end = written_in.text().len() as u32;
        match checked {
            Err(Error::Compile(e)) => {
                let mut own: Vec<Diagnostic> = e
                    .diagnostics()
                    .iter()
                    .filter(|d| d.span.start <= own_end)
                    .cloned()
                    .collect();
                if own.is_empty() {
                    // The parser only found out at the next item: the text stops short.
                    own.extend(
                        e.diagnostics()
                            .first()
                            .map(|d| at_end_of_input(d.clone(), own_end)),
                    );
                }
                eprint!("{}", source.render(&own));
            }
            Err(other) => {
                report(&other);
            }
            Ok(()) => eprintln!(
                "error: {} is not a sequence of definitions",
                written_in.name()
            ),
        }
    }

    /// Prints the value of an expression, or runs it as a statement when it has none.
    fn evaluate(&mut self, input: &Arc<SourceFile>) {
        let printed = compose(&self.defs, |b| {
            b.text("print(\n");
            b.all_of(input);
            b.text("\n);");
        });
        let called = compose(&self.defs, |b| {
            b.all_of(input);
            b.text("\n;");
        });
        self.run_first_compiling(vec![printed, called]);
    }

    /// Runs statements as typed, or with the `;` a last statement often lacks at a prompt
    /// (`n += 1`).
    fn run_statements(&mut self, input: &Arc<SourceFile>) {
        if let Some(at) = unmatched_close_brace(input.text()) {
            let at = at as u32;
            let unmatched = Diagnostic::new("unmatched `}`", Span::new(at, at + 1))
                .with_label("this closes a block the input did not open");
            eprint!("{}", kiln_lang::render(input, &[unmatched]));
            return;
        }
        let as_typed = compose(&self.defs, |b| b.all_of(input));
        let completed = compose(&self.defs, |b| {
            b.all_of(input);
            b.text("\n;");
        });
        self.run_first_compiling(vec![as_typed, completed]);
    }

    /// Runs the first of `readings` (sources holding one input, read in different ways) that
    /// compiles. When none does, reports the reading with the fewest errors, the first of
    /// those on a tie: `f(1.5)` for a `fn f(x: int)` gets one error about its argument, not a
    /// second one about printing nothing.
    fn run_first_compiling(&mut self, readings: Vec<SessionSource>) {
        let mut best: Option<Rejected> = None;
        for source in readings {
            match self.reload(source) {
                Ok(_) => return self.call_eval(),
                Err(rejected) => {
                    if best.as_ref().is_none_or(|b| rejected.errors() < b.errors()) {
                        best = Some(rejected);
                    }
                }
            }
        }
        if let Some(rejected) = best {
            self.show(&rejected);
        }
    }

    /// `:load FILE`.
    fn load(&mut self, path: &Path) {
        let Some((file, items)) = self.read_definitions(path) else {
            return;
        };
        let counts = [ItemKind::Fn, ItemKind::Global, ItemKind::Const].map(|kind| {
            let n = items.iter().filter(|i| i.kind == kind).count();
            (n > 0).then(|| count(n, keyword(kind)))
        });
        let defs = merge_file(&self.defs, path, &file, items);
        match self.reload(compose(&defs, |_| {})) {
            Ok(reloaded) => {
                let counts: Vec<String> = counts.into_iter().flatten().collect();
                let what = if counts.is_empty() {
                    "no definitions".to_string()
                } else {
                    counts.join(", ")
                };
                let removed = removed(&self.defs, &defs);
                say!("loaded {}: {what}{removed}", path.display());
                self.defs = defs;
                warn_about_globals(&reloaded);
            }
            Err(rejected) => {
                self.show(&rejected);
                eprintln!(
                    "error: could not load {}; the definitions are unchanged",
                    path.display()
                );
            }
        }
    }

    /// `:reload`.
    fn reload_files(&mut self) {
        if self.files.is_empty() {
            eprintln!("error: no files loaded; `:load FILE` first");
            return;
        }
        let mut defs = self.defs.clone();
        for path in self.files.clone() {
            let Some((file, items)) = self.read_definitions(&path) else {
                eprintln!("error: nothing was reloaded");
                return;
            };
            defs = merge_file(&defs, &path, &file, items);
        }
        let names: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        match self.reload(compose(&defs, |_| {})) {
            Ok(reloaded) => {
                let removed = removed(&self.defs, &defs);
                self.defs = defs;
                say!(
                    "reloaded {}: {} compiled, {} reused{removed}",
                    names.join(", "),
                    count(reloaded.compiled(), "function"),
                    reloaded.reused()
                );
                warn_about_globals(&reloaded);
            }
            Err(rejected) => {
                self.show(&rejected);
                eprintln!("error: could not reload; the definitions are unchanged");
            }
        }
    }

    /// Reads a file's items, remembering the file for `:reload` once it could be read; reports
    /// why not when it cannot be read or is not a sequence of items.
    fn read_definitions(&mut self, path: &Path) -> Option<(Arc<SourceFile>, Vec<ItemOutline>)> {
        let bytes = match kiln_jit::read_script(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                report(&e);
                return None;
            }
        };
        if !self.files.iter().any(|f| f == path) {
            self.files.push(path.to_path_buf());
        }
        let (file, diagnostics) = kiln_lang::source_from_bytes(&path.display().to_string(), &bytes);
        if !diagnostics.is_empty() {
            eprint!("{}", kiln_lang::render(&file, &diagnostics));
            return None;
        }
        let Some(items) = kiln_lang::items(file.text()) else {
            self.report_syntax_errors(&file);
            return None;
        };
        if let Some(refusal) = reserved_name(&items) {
            eprintln!("{refusal} (in {})", path.display());
            return None;
        }
        Some((file, items))
    }

    /// Makes `source` the module's current generation, or says why it cannot be.
    fn reload(&mut self, source: SessionSource) -> Result<ReloadReport, Rejected> {
        match self.module.reload_str(source.file.text()) {
            Ok(report) => {
                self.count_reload(&report);
                self.current = source;
                Ok(report)
            }
            Err(error) => Err(Rejected { source, error }),
        }
    }

    fn count_reload(&mut self, report: &ReloadReport) {
        let t = &mut self.totals;
        t.reloads += 1;
        t.module_hits += usize::from(report.stats.cache.module_hit);
        t.compiled += report.compiled();
        t.reused += report.reused();
        t.active += report.active;
        t.codegen += report.stats.codegen;
        self.cache_written |= !report.stats.cache.module_hit;
        if let Some(w) = &report.stats.cache.warning
            && !self.cache_warned
        {
            eprintln!("warning: {w}");
            self.cache_warned = true;
        }
        self.last = Some(report.clone());
    }

    fn show(&self, rejected: &Rejected) {
        match &rejected.error {
            Error::Compile(e) => eprint!("{}", rejected.source.render(e.diagnostics())),
            other => {
                report(other);
            }
        }
    }

    /// Calls `__repl_eval` on a thread with room for deep recursion, and reports a runtime error
    /// at the place it was written.
    fn call_eval(&mut self) {
        let module = self.module.clone();
        self.running.store(true, Ordering::SeqCst);
        let result = std::thread::Builder::new()
            .name("kiln-repl-call".into())
            .stack_size(SCRIPT_STACK)
            .spawn(move || module.call(EVAL, &[]))
            .map_err(|e| Error::Config(format!("cannot start the script thread: {e}")))
            .and_then(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err(Error::Internal("the script thread panicked".into())))
            });
        self.running.store(false, Ordering::SeqCst);
        match result {
            Ok(_) => {}
            Err(Error::Runtime(mut e)) => {
                if e.kind == TrapKind::Interrupted {
                    // The terminal echoed `^C` without a line break.
                    eprintln!();
                }
                e.location = self.current.map_location(&e.location);
                report(&Error::Runtime(e));
            }
            Err(other) => {
                report(&other);
            }
        }
    }

    /// `fn add(int, int) -> int`, `global score: int`, `const N: int`.
    fn describe(&self, def: &Definition) -> String {
        let name = &def.name;
        match def.kind {
            ItemKind::Fn => match self.module.signature(name) {
                Some(sig) => {
                    let sig = sig.to_string();
                    format!("fn {name}{}", sig.strip_prefix("fn").unwrap_or(&sig))
                }
                None => format!("fn {name}"),
            },
            ItemKind::Global | ItemKind::Const => {
                format!(
                    "{} {name}: {}",
                    keyword(def.kind),
                    typed_item_parts(def.text()).0
                )
            }
        }
    }

    /// `:defs`.
    fn list_definitions(&mut self) {
        if self.defs.is_empty() {
            say!("no definitions yet");
        }
        for def in &self.defs {
            match &def.file {
                Some(file) => say!("{}  ({})", self.describe(def), file.display()),
                None => say!("{}", self.describe(def)),
            }
        }
    }

    /// `:stats`.
    fn stats(&mut self) {
        let Some(last) = &self.last else {
            say!("no reloads yet");
            return;
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let t = &self.totals;
        say!("last reload: {last}");
        say!(
            "session: {} ({} from the cache), {} compiled, {} reused; {:.2} ms until active, \
             {:.2} ms in codegen",
            count(t.reloads, "reload"),
            t.module_hits,
            count(t.compiled, "function"),
            t.reused,
            ms(t.active),
            ms(t.codegen),
        );
    }

    /// Trims the cache to its size cap if the session wrote to it, sparing what the current
    /// generation uses.
    fn trim_cache(&self, store: Option<&FileStore>) {
        let Some(store) = store else { return };
        if !self.cache_written {
            return;
        }
        // A cache that cannot be trimmed only stays larger; the next `kiln run` tries again.
        let _ = crate::trim_cache(store, &self.module.stats().cache.keys_used);
    }
}

/// `; removed fn f, const K` for the definitions `old` has and `new` has not; empty if none.
fn removed(old: &[Definition], new: &[Definition]) -> String {
    let kept: HashSet<&str> = new.iter().map(|d| d.name.as_str()).collect();
    let gone: Vec<String> = old
        .iter()
        .filter(|d| !kept.contains(d.name.as_str()))
        .map(|d| format!("{} {}", keyword(d.kind), d.name))
        .collect();
    if gone.is_empty() {
        String::new()
    } else {
        format!("; removed {}", gone.join(", "))
    }
}

/// Warns about globals a `:load` or `:reload` re-initialized because their type changed.
fn warn_about_globals(report: &ReloadReport) {
    for w in &report.globals.warnings {
        eprintln!("warning: {w}");
    }
}
