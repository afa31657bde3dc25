//! The `frontend` target: arbitrary bytes through everything that reads script text.
//!
//! Beyond "no panic, no hang", it checks what holds between the entry points:
//! - `parse` with a reuse callback that says no is `check` (same diagnostics, same interface);
//! - when the whole module checks, skipping the bodies of some functions (the reload path,
//!   which finds a body's end by brace matching instead of parsing it) also checks, with the
//!   same interface and the same item spans, and exactly the functions whose text was offered
//!   and accepted are marked reused;
//! - a module that checks is, for the REPL helpers, complete input and a list of items.

use kiln_lang::program::{HostSignature, Program, Signature, Type};
use kiln_lang::{
    CheckOptions, Diagnostic, ItemKind, SourceFile, check, check_parsed, input_is_complete,
    is_expression, items, parse, render, source_from_bytes,
};
use std::cell::RefCell;
use std::sync::Arc;

/// Host functions the checked text may call: one of each shape that matters to the checker.
fn hosts() -> Vec<HostSignature> {
    let host = |name: &str, params: &[Type], ret: Option<Type>| HostSignature {
        name: name.to_string(),
        sig: Signature {
            params: params.to_vec(),
            ret,
        },
    };
    vec![
        kiln_lang::generate::host_sample_signature(),
        host("spawn", &[Type::Int, Type::Float, Type::Bool], None),
        host("ready", &[], Some(Type::Bool)),
    ]
}

pub fn run(data: &[u8]) {
    let (file, utf8) = source_from_bytes("fuzz.kl", data);
    let _ = render(&file, &utf8);
    // The rest runs on the text even when it was not UTF-8 (the engine stops at the diagnostic
    // above): the lossy text is just more text.
    let text = file.text();
    let hosts = hosts();
    // One bit of the input that the parser barely sees: the length.
    let options = CheckOptions {
        require_main: data.len() % 2 == 1,
    };

    let full = check(&file, &hosts, &options);
    if let Err(diagnostics) = &full {
        rendered(&file, diagnostics);
    }

    let none = check_parsed(parse(&file, &|_, _| false), &hosts, &options);
    match (&full, &none) {
        (Ok(a), Ok(b)) => assert_eq!(a.interface, b.interface, "parse without reuse"),
        (Err(a), Err(b)) => assert_eq!(a, b, "parse without reuse"),
        _ => panic!(
            "check and parse-without-reuse disagree: {:?} vs {:?}",
            full.as_ref().err(),
            none.as_ref().err()
        ),
    }

    // Which bodies to skip: a hash of the function's name and text, salted by the first byte,
    // so every function is skipped in some inputs and kept in others.
    let salt = data.first().copied().unwrap_or(0);
    let offered = RefCell::new(Vec::new());
    let reuse = |name: &str, item: &str| {
        let yes = fnv(&[&[salt], name.as_bytes(), item.as_bytes()]) & 1 == 0;
        offered
            .borrow_mut()
            .push((name.to_string(), item.to_string(), yes));
        yes
    };
    let partial = check_parsed(parse(&file, &reuse), &hosts, &options);
    let offered = offered.into_inner();
    match (&full, &partial) {
        (Ok(full), Ok(partial)) => agree(text, full, partial, &offered),
        (Ok(_), Err(d)) => panic!(
            "the module checks, but not with the bodies of {:?} skipped:\n{}",
            offered
                .iter()
                .filter(|o| o.2)
                .map(|o| o.0.as_str())
                .collect::<Vec<_>>(),
            render(&file, d)
        ),
        (Err(_), Err(d)) => rendered(&file, d),
        // Skipped bodies are not checked, so their errors go away.
        (Err(_), Ok(_)) => {}
    }

    let complete = input_is_complete(text);
    let outline = items(text);
    let _ = is_expression(text);
    if let Some(outline) = &outline {
        for item in outline {
            let span = item.span.start as usize..item.span.end as usize;
            let Some(item_text) = text.get(span) else {
                panic!("item {} at {:?} outside the text", item.name, item.span);
            };
            let keyword = match item.kind {
                ItemKind::Fn => "fn",
                ItemKind::Global => "global",
                ItemKind::Const => "const",
            };
            assert!(
                item_text.starts_with(keyword)
                    && (item_text.ends_with('}') || item_text.ends_with(';')),
                "item outline {item:?} is {item_text:?}"
            );
        }
    }
    if let Ok(program) = &full {
        assert!(complete, "a module that checks is incomplete input");
        let outline = outline.expect("a module that checks has no syntax error");
        assert_eq!(
            outline.len(),
            program.interface.items.len(),
            "items() and the checked interface count different items"
        );
    }
}

/// Renders `diagnostics`, which must then say something about each.
fn rendered(file: &Arc<SourceFile>, diagnostics: &[Diagnostic]) {
    assert!(!diagnostics.is_empty(), "an error without diagnostics");
    let out = render(file, diagnostics);
    assert!(
        out.matches("error").count() >= diagnostics.len(),
        "{diagnostics:?} rendered as {out:?}"
    );
}

/// The checks of a module checked whole and with some bodies skipped.
fn agree(text: &str, full: &Program, partial: &Program, offered: &[(String, String, bool)]) {
    assert_eq!(full.interface, partial.interface, "interface changed");
    assert_eq!(full.globals.len(), partial.globals.len(), "globals changed");
    assert_eq!(
        full.functions.len(),
        partial.functions.len(),
        "functions changed"
    );
    for (a, b) in full.functions.iter().zip(&partial.functions) {
        assert_eq!(
            (&a.name, a.span, a.item, &a.sig),
            (&b.name, b.span, b.item, &b.sig),
            "function changed by skipping bodies"
        );
        // Names are unique in a module that checks.
        let offer = offered.iter().find(|o| o.0 == b.name);
        let item_text = &text[b.item.start as usize..b.item.end as usize];
        match offer {
            Some((_, offered_text, yes)) => {
                assert_eq!(
                    offered_text, item_text,
                    "fn {} offered as other text",
                    b.name
                );
                assert_eq!(
                    b.reused, *yes,
                    "fn {}: reused is not what was answered",
                    b.name
                );
            }
            None => panic!("fn {} was never offered for reuse", b.name),
        }
    }
}

/// FNV-1a over the parts, for deterministic choices.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
