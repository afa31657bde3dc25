//! Questions an interactive front end (a REPL, `:load`) asks about text before checking it:
//! is the input finished, is it a list of definitions, is it an expression to print.
//!
//! Each answers from the lexer and parser alone, without name resolution or types, so it is
//! cheap enough to ask after every line typed.

use crate::ast::Item;
use crate::lexer::{Lexer, Tok};
use crate::parser;
use crate::source::Span;

/// Whether `text` is ready to be checked: false while a `(`, `[` or `{` is still open, or the
/// text ends inside a string literal or a block comment, so that more lines could finish it.
///
/// True otherwise, and as soon as the text has an error that no further text can repair (a
/// closing bracket that matches nothing open, an unexpected character, a string literal cut
/// off by a line break, which Kiln strings cannot contain): the checker will report it.
pub fn input_is_complete(text: &str) -> bool {
    let mut lexer = Lexer::new(text);
    let mut open = Vec::new();
    loop {
        let kind = lexer.next_token().kind;
        let opener = match kind {
            Tok::Eof => break,
            Tok::LParen | Tok::LBracket | Tok::LBrace => {
                open.push(kind);
                continue;
            }
            Tok::RParen => Tok::LParen,
            Tok::RBracket => Tok::LBracket,
            Tok::RBrace => Tok::LBrace,
            _ => continue,
        };
        if open.pop() != Some(opener) {
            return true;
        }
    }
    // Running into the end of the text is the one lexical error more text can undo.
    let lasting_errors = lexer.errors - usize::from(lexer.cut_off_at_end);
    lasting_errors > 0 || (open.is_empty() && !lexer.cut_off_at_end)
}

/// The kind of a top-level item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemKind {
    Fn,
    Global,
    Const,
}

/// One item of a text that is a sequence of items: see [`items`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemOutline {
    pub kind: ItemKind,
    pub name: String,
    /// The whole item, from its keyword through its closing `}` or `;`.
    pub span: Span,
}

/// The items of `text`, in order, when it parses without any syntax error as a sequence of
/// items (possibly none); `None` otherwise. Names are not resolved: two items may share a name.
pub fn items(text: &str) -> Option<Vec<ItemOutline>> {
    let (module, diagnostics) = parser::parse(text, None);
    if !diagnostics.is_empty() {
        return None;
    }
    let outlines = module
        .items
        .into_iter()
        .map(|item| match item {
            Item::Fn(f) => ItemOutline {
                kind: ItemKind::Fn,
                name: f.name.text,
                span: f.item,
            },
            Item::Global(v) => ItemOutline {
                kind: ItemKind::Global,
                name: v.name.text,
                span: v.item,
            },
            Item::Const(v) => ItemOutline {
                kind: ItemKind::Const,
                name: v.name.text,
                span: v.item,
            },
        })
        .collect();
    Some(outlines)
}

/// Whether `text` is exactly one expression, without syntax errors, with nothing but
/// whitespace and comments around it (so no trailing `;`). Types are not checked: `print(1)`
/// and `nope + 1.5` are expressions.
pub fn is_expression(text: &str) -> bool {
    parser::is_expression(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_incomplete_while_something_is_open() {
        for text in [
            "fn f() {",
            "fn f() {\n    let x = (1 +\n",
            "fn f() { let a: [int; 3]; a[",
            "print(\"hello",
            "print(\"a\\\"",
            "fn f() { /* a comment\n",
            "/* /* nested */",
            "f(1, {",
        ] {
            assert!(!input_is_complete(text), "{text:?}");
        }
    }

    #[test]
    fn input_is_complete_when_balanced_or_irreparable() {
        for text in [
            "",
            "  // only a comment",
            "1 + 2",
            "fn f() { let s = \"{ ( [\"; } // {",
            "fn f() {\n  /* { */\n}",
            "let x = 1;",
            // Errors no further text can repair: the checker reports them.
            "fn f() { }}",
            "f(1]",
            "fn f() { g(1; }",
            ")(",
            "print(\"cut off\nby a line break); {",
            "fn f() { let x = 1 # 2;",
        ] {
            assert!(input_is_complete(text), "{text:?}");
        }
    }

    fn outline(text: &str) -> Vec<(ItemKind, String, String)> {
        items(text)
            .unwrap_or_else(|| panic!("not items: {text:?}"))
            .into_iter()
            .map(|o| {
                let span = &text[o.span.start as usize..o.span.end as usize];
                (o.kind, o.name, span.to_string())
            })
            .collect()
    }

    #[test]
    fn items_outline_each_definition() {
        let text = "// defs\nconst K: int = 2 * 3;\nfn f(x: int) -> int {\n    { print(\"}\"); } // }\n    return x;\n}\n\
                    global g: [int; K];  global h: float = 1.5;\nfn f() {}";
        let own = |s: &str| s.to_string();
        assert_eq!(
            outline(text),
            [
                (ItemKind::Const, own("K"), own("const K: int = 2 * 3;")),
                (
                    ItemKind::Fn,
                    own("f"),
                    own("fn f(x: int) -> int {\n    { print(\"}\"); } // }\n    return x;\n}")
                ),
                (ItemKind::Global, own("g"), own("global g: [int; K];")),
                (ItemKind::Global, own("h"), own("global h: float = 1.5;")),
                (ItemKind::Fn, own("f"), own("fn f() {}")),
            ]
        );
        assert_eq!(items(""), Some(Vec::new()));
        assert_eq!(items("  /* nothing */ "), Some(Vec::new()));
    }

    #[test]
    fn items_reject_statements_and_syntax_errors() {
        for text in [
            "let x = 1;",
            "x = 2;",
            "1 + 2",
            "print(1);",
            "fn f() { let x = ; }",
            "fn f() {",
            "const K: int = 1",
            "global g: int = 0x;",
            "fn f() {} let y = 2;",
        ] {
            assert_eq!(items(text), None, "{text:?}");
        }
    }

    #[test]
    fn expressions_are_told_from_statements() {
        for text in [
            "1",
            "  1 + 2 * x  ",
            "f(1, 2.5) as int",
            "print(1)",
            "a[i] < b && !c // trailing comment",
            "-9223372036854775808",
            "(((1)))",
        ] {
            assert!(is_expression(text), "{text:?}");
        }
        for text in [
            "",
            "1;",
            "1 2",
            "x = 1",
            "let x = 1",
            "fn f() {}",
            "(1",
            "1 +",
            "a < b < c",
            "9223372036854775808",
            "\"str",
            "1 # 2",
        ] {
            assert!(!is_expression(text), "{text:?}");
        }
    }
}
