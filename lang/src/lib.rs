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
pub mod input;
pub mod interp;
pub mod program;
pub mod source;

mod ast;
mod check;
mod consts;
mod lexer;
mod parser;

pub use diagnostic::{Diagnostic, render};
pub use input::{ItemKind, ItemOutline, input_is_complete, is_expression, items};
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

/// A parsed module and its syntax errors, ready for [`check_parsed`].
#[derive(Debug)]
pub struct Parsed {
    file: Arc<SourceFile>,
    module: ast::Module,
    diagnostics: Vec<Diagnostic>,
}

/// Parses `file`. For each `fn` item, `reuse(name, item_text)` is asked with the item's whole
/// text (from the `fn` keyword through the closing `}` of its body); when it returns true the
/// body is skipped: not parsed, not checked, and its function is marked
/// [`reused`](program::Function::reused).
///
/// Answer true only for text byte-identical to a function whose code the caller has, from a
/// program whose [`Interface`](program::Interface) equals the new one (compare once checked).
/// A function whose header has a syntax error is never offered.
pub fn parse(file: &Arc<SourceFile>, reuse: &dyn Fn(&str, &str) -> bool) -> Parsed {
    let (module, diagnostics) = parser::parse(file.text(), Some(reuse));
    Parsed {
        file: file.clone(),
        module,
        diagnostics,
    }
}

/// Resolves and type-checks a parsed module against the host functions the embedder
/// registered. Returns every diagnostic, syntax errors included, when there is any.
pub fn check_parsed(
    parsed: Parsed,
    hosts: &[HostSignature],
    options: &CheckOptions,
) -> Result<Program, Vec<Diagnostic>> {
    let Parsed {
        file,
        module,
        mut diagnostics,
    } = parsed;
    let checked = check::check_module(&file, &module, hosts, options, &mut diagnostics);
    match checked {
        Some(program) if diagnostics.is_empty() => Ok(program),
        _ => Err(diagnostics),
    }
}

/// Parses, resolves and type-checks one module against the host functions the embedder
/// registered. Returns every diagnostic when there is any.
pub fn check(
    file: &Arc<SourceFile>,
    hosts: &[HostSignature],
    options: &CheckOptions,
) -> Result<Program, Vec<Diagnostic>> {
    // The same as `parse(file, &|_, _| false)`, without scanning each body for its end first.
    let (module, diagnostics) = parser::parse(file.text(), None);
    let parsed = Parsed {
        file: file.clone(),
        module,
        diagnostics,
    };
    check_parsed(parsed, hosts, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{Const, Interface, ItemInterface};
    use std::cell::RefCell;

    const MODULE: &str = "const K: int = 3;
global g: [int; K];
global count: int = 0;

// `{` and `}` in comments and strings must not confuse the skipping scan.
fn tricky(x: int) -> int {
    /* a } in /* a nested */ comment { */
    print(\"} \\\" {\"); // }
    if x > 0 { return tricky(x - 1); }
    return x;
}

fn bump() {
    count += K;
    g[0] = tricky(count);
}

fn twice(x: float) -> float {
    return x * 2.0;
}
";

    fn file(text: &str) -> Arc<SourceFile> {
        SourceFile::new("m.kl", text)
    }

    /// Checks `text`, reusing the bodies of the functions named in `reused`.
    fn check_reusing(text: &str, reused: &[&str]) -> Result<Program, Vec<Diagnostic>> {
        let reuse = |name: &str, _: &str| reused.contains(&name);
        check_parsed(parse(&file(text), &reuse), &[], &CheckOptions::default())
    }

    fn messages_at(file: &SourceFile, diagnostics: &[Diagnostic]) -> Vec<String> {
        diagnostics
            .iter()
            .map(|d| format!("{} at {}", d.message, file.location(d.span.start)))
            .collect()
    }

    fn interface(text: &str) -> Interface {
        check(&file(text), &[], &CheckOptions::default())
            .unwrap_or_else(|d| panic!("{text}: {d:?}"))
            .interface
    }

    #[test]
    fn reuse_is_asked_with_each_whole_fn_item() {
        let asked = RefCell::new(Vec::new());
        let reuse = |name: &str, text: &str| {
            asked
                .borrow_mut()
                .push((name.to_string(), text.to_string()));
            false
        };
        parse(&file(MODULE), &reuse);
        let asked = asked.into_inner();
        let names: Vec<&str> = asked.iter().map(|a| a.0.as_str()).collect();
        assert_eq!(names, ["tricky", "bump", "twice"]);
        for (name, text) in &asked {
            assert!(text.starts_with(&format!("fn {name}(")), "{text}");
            assert!(text.ends_with("}"), "{text}");
            let rest = &MODULE[MODULE.find(text.as_str()).unwrap() + text.len()..];
            assert!(
                rest.starts_with("\n\n") || rest == "\n",
                "{name} ends early"
            );
        }
    }

    #[test]
    fn a_reused_body_is_not_checked() {
        let text = "fn bad() -> int { return 1.5; }\nfn nothing() -> int { }";
        assert!(check_reusing(text, &["bad", "nothing"]).is_ok());
        let f = file(text);
        let d = check(&f, &[], &CheckOptions::default()).unwrap_err();
        assert_eq!(
            messages_at(&f, &d),
            [
                "mismatched types at m.kl:1:26",
                "missing return at m.kl:2:17"
            ]
        );
        // Syntax errors in a reused body are not seen either: the caller vouched for the text.
        assert!(check_reusing("fn f() { let x = ; }", &["f"]).is_ok());
    }

    #[test]
    fn errors_outside_reused_bodies_keep_their_locations() {
        let text = MODULE.replace("return x * 2.0;", "return x * 2;");
        let f = file(&text);
        let reuse = |name: &str, _: &str| name != "twice";
        let d = check_parsed(parse(&f, &reuse), &[], &CheckOptions::default()).unwrap_err();
        assert_eq!(messages_at(&f, &d), ["mismatched types at m.kl:19:16"]);
        // A signature is still checked when the body is reused.
        let text = MODULE.replace("fn bump() {", "fn bump(a: [int; 2], a: int) {");
        let f = file(&text);
        let d = check_parsed(parse(&f, &|_, _| true), &[], &CheckOptions::default()).unwrap_err();
        assert_eq!(
            messages_at(&f, &d),
            [
                "arrays cannot be passed to functions at m.kl:13:12",
                "duplicate parameter `a` at m.kl:13:22"
            ]
        );
    }

    #[test]
    fn a_body_running_into_the_end_of_the_file_is_parsed() {
        let text = "fn f() { if true { print(1); }";
        let f = file(text);
        let d = check_parsed(parse(&f, &|_, _| true), &[], &CheckOptions::default()).unwrap_err();
        assert_eq!(
            messages_at(&f, &d),
            ["expected `}`, found end of file at m.kl:1:31"]
        );
        // A header with a syntax error is never offered for reuse.
        let d = check_reusing("fn f(x int) { }", &["f"]).unwrap_err();
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn reusing_changes_only_bodies_and_locals() {
        let full = check_reusing(MODULE, &[]).unwrap();
        let reusing = check_reusing(MODULE, &["tricky", "bump", "twice"]).unwrap();
        assert_eq!(full.functions.len(), reusing.functions.len());
        assert_eq!(full.interface, reusing.interface);
        for (a, b) in full.functions.iter().zip(&reusing.functions) {
            assert_eq!(
                (&a.name, a.span, a.item, &a.sig),
                (&b.name, b.span, b.item, &b.sig)
            );
            let item = &MODULE[b.item.start as usize..b.item.end as usize];
            assert!(item.starts_with("fn ") && item.ends_with('}'), "{item}");
            assert!(!a.reused && !a.body.is_empty());
            assert!(b.reused && b.body.is_empty());
            let params: Vec<&str> = b.locals.iter().map(|l| l.name.as_str()).collect();
            let expected: Vec<&str> = a.locals[..a.sig.params.len()]
                .iter()
                .map(|l| l.name.as_str())
                .collect();
            assert_eq!(params, expected);
        }
        assert_eq!(full.globals.len(), reusing.globals.len());
        // Spans of reused functions are positions in the new file, wherever their text moved.
        let grown = MODULE.replace(
            "count += K;",
            "count += K;\n    count -= 1;\n    count += 1;",
        );
        let program = check_reusing(&grown, &["twice"]).unwrap();
        let twice = program.function(program.function_named("twice").unwrap());
        let start = grown.find("fn twice").unwrap() as u32;
        assert!(twice.reused);
        assert_eq!(twice.item.start, start);
        assert_eq!(twice.span.start, start + 3);
        assert_eq!(twice.item.end as usize, grown.len() - 1);
    }

    #[test]
    #[should_panic(expected = "fn twice was reused")]
    fn the_interpreter_refuses_a_reused_function() {
        let program = check_reusing(MODULE, &["twice"]).unwrap();
        let twice = program.function_named("twice").unwrap();
        let mut interp = interp::Interpreter::new(&program, interp::Limits::default());
        let _ = interp.call(
            twice,
            &[Const::Float(1.0)],
            &mut interp::NoHost,
            &mut Vec::new(),
        );
    }

    #[test]
    fn interface_lists_what_bodies_see() {
        assert_eq!(
            interface("fn f(a: int) -> bool { return a > 0; } global g: float = 1.0; const K: int = 2 + 3;")
                .items,
            [
                (
                    "K".to_string(),
                    ItemInterface::Const(Const::Int(5))
                ),
                (
                    "f".to_string(),
                    ItemInterface::Function(program::Signature {
                        params: vec![program::Type::Int],
                        ret: Some(program::Type::Bool),
                    })
                ),
                (
                    "g".to_string(),
                    ItemInterface::Global(program::VarType::Scalar(program::Type::Float))
                ),
            ]
        );
    }

    #[test]
    fn interface_ignores_bodies_order_and_initializers() {
        let base = interface(MODULE);
        let edited_body = MODULE.replace("return x * 2.0;", "let y = x; return y + y;");
        let moved = format!(
            "fn twice(x: float) -> float {{ return x; }}\n{}",
            MODULE.replace(
                "fn twice(x: float) -> float {\n    return x * 2.0;\n}\n",
                ""
            )
        );
        let new_initializer = MODULE.replace("global count: int = 0;", "global count: int = 7;");
        let new_const_expression = MODULE.replace("const K: int = 3;", "const K: int = 1 + 2;");
        for text in [edited_body, moved, new_initializer, new_const_expression] {
            assert_eq!(interface(&text), base, "{text}");
        }
    }

    #[test]
    fn interface_changes_with_what_bodies_see() {
        let base = interface(MODULE);
        let changed = [
            MODULE.replace("-> float {\n    return x * 2.0;", "-> int {\n    return 2;"),
            MODULE.replace("fn twice(x: float)", "fn twice(x: float, y: int)"),
            MODULE.replace("global g: [int; K];", "global g: [int; 4];"),
            MODULE.replace("const K: int = 3;", "const K: int = 4;"),
            MODULE.replace("const K: int = 3;", "const K: int = 3; const L: int = 3;"),
            MODULE.replace(
                "global count: int = 0;",
                "global count: int = 0; fn extra() {}",
            ),
            MODULE
                .replace("global g: [int; K];", "")
                .replace("g[0] = tricky(count);", "print(tricky(count));"),
        ];
        for text in changed {
            assert_ne!(interface(&text), base, "{text}");
        }
        assert_ne!(
            interface("global h: int = 0;"),
            interface("global h: float = 0.0;")
        );
        assert_ne!(
            interface("const C: int = 1; fn f() {}"),
            interface("global C: int = 1; fn f() {}")
        );
        // Float consts compare by bits: exactly what a body folds in.
        let float_const = |v: &str| interface(&format!("const F: float = {v};"));
        assert_ne!(float_const("0.0"), float_const("-0.0"));
        assert_eq!(float_const("0.0 / 0.0"), float_const("0.0 / 0.0"));
        assert_ne!(float_const("0.1 + 0.2"), float_const("0.3"));
    }
}
