//! Tokens to the syntax tree: recursive descent for items and statements, precedence climbing
//! for expressions (LANGUAGE.md sections 3-5).
//!
//! The parser never fails. At an error it records a diagnostic, skips to a point where parsing
//! can resume (the end of the statement, the enclosing `}`, the next item keyword) and goes on,
//! so one run reports every syntax error. A second error at the same token is dropped, which
//! keeps one mistake from being reported twice.
//!
//! Every back end recurses over the tree, so its depth is bounded: [`MAX_NESTING`] limits the
//! depth of blocks, `else if` chains and expressions together, including trees that the parser
//! builds in a loop (`1 + 1 + ...`, `- - x`, `x as int as int`). Past the limit the parser
//! reports once, stops building, and resumes at the next item.

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::lexer::{self, Lexer, Tok, Token};
use crate::program::{BinOp, Type, UnOp};
use crate::source::Span;

/// The deepest tree the parser builds: blocks, `else if` links and expression nodes on any path
/// from a function body to a leaf.
pub const MAX_NESTING: usize = 256;

/// Syntax errors beyond this many are counted, not kept (binary garbage yields thousands).
const MAX_STORED_ERRORS: usize = lexer::MAX_STORED_ERRORS;

/// Asked, for each `fn` item with a well-formed header, whether its body may be skipped: with
/// the function's name and the item's text from `fn` through the `}` closing its body.
pub type Reuse<'a> = &'a dyn Fn(&str, &str) -> bool;

/// Parses a module. Without `reuse` every body is parsed, and not even scanned for its end
/// first; with it, a body it answers true for is skipped unparsed and its item is marked
/// [`FnItem::reused`].
pub fn parse(text: &str, reuse: Option<Reuse>) -> (Module, Vec<Diagnostic>) {
    let mut p = Parser::new(text, reuse);
    let items = p.parse_items();
    let mut diagnostics = p.lexer.diagnostics;
    diagnostics.append(&mut p.diagnostics);
    diagnostics.sort_by_key(|d| d.span.start);
    let dropped = p.lexer.dropped + p.dropped + diagnostics.len().saturating_sub(MAX_STORED_ERRORS);
    diagnostics.truncate(MAX_STORED_ERRORS);
    if dropped > 0 {
        let end = text.len() as u32;
        diagnostics.push(
            Diagnostic::new(
                format!("too many syntax errors; {dropped} more not shown"),
                Span::new(end, end),
            )
            .with_label("giving up on reporting here"),
        );
    }
    (Module { items }, diagnostics)
}

/// Whether `text` is exactly one expression, without syntax errors and with nothing after it.
pub fn is_expression(text: &str) -> bool {
    let mut p = Parser::new(text, None);
    p.parse_expr();
    p.at(Tok::Eof) && !p.had_error && p.lexer.errors == 0
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    text: &'a str,
    /// Asked whether a function body may be skipped; see [`parse`].
    reuse: Option<Reuse<'a>>,
    tok: Token,
    prev_end: u32,
    diagnostics: Vec<Diagnostic>,
    dropped: usize,
    last_error_at: Option<u32>,
    /// Set by every error; read and reset per item.
    had_error: bool,
    /// Current nesting: blocks, `else if` links and expression recursion.
    depth: usize,
    /// The nesting limit was hit: every parse function returns at once, up to the item loop.
    bail: bool,
    /// A lexical error came up while lexing the current token (e.g. an unexpected character
    /// just before it, or an unterminated string), or the previous one. A syntax error there
    /// is most likely a consequence, so it is not reported.
    lex_error_at_tok: bool,
    lex_error_at_prev: bool,
}

fn binary_op(tok: Tok) -> Option<(BinaryOp, u8)> {
    use BinOp::*;
    let (op, prec) = match tok {
        Tok::OrOr => return Some((BinaryOp::Or, 1)),
        Tok::AndAnd => return Some((BinaryOp::And, 2)),
        Tok::EqEq => (Eq, 3),
        Tok::Ne => (Ne, 3),
        Tok::Lt => (Lt, 3),
        Tok::Le => (Le, 3),
        Tok::Gt => (Gt, 3),
        Tok::Ge => (Ge, 3),
        Tok::Pipe => (BitOr, 4),
        Tok::Caret => (BitXor, 5),
        Tok::Amp => (BitAnd, 6),
        Tok::Shl => (Shl, 7),
        Tok::Shr => (Shr, 7),
        Tok::Plus => (Add, 8),
        Tok::Minus => (Sub, 8),
        Tok::Star => (Mul, 9),
        Tok::Slash => (Div, 9),
        Tok::Percent => (Rem, 9),
        _ => return None,
    };
    Some((BinaryOp::Op(op), prec))
}

const COMPARISON: u8 = 3;

fn assign_op(tok: Tok) -> Option<Option<BinOp>> {
    use BinOp::*;
    Some(Some(match tok {
        Tok::Assign => return Some(None),
        Tok::PlusEq => Add,
        Tok::MinusEq => Sub,
        Tok::StarEq => Mul,
        Tok::SlashEq => Div,
        Tok::PercentEq => Rem,
        Tok::AmpEq => BitAnd,
        Tok::PipeEq => BitOr,
        Tok::CaretEq => BitXor,
        Tok::ShlEq => Shl,
        Tok::ShrEq => Shr,
        _ => return None,
    }))
}

fn scalar_type(tok: Tok) -> Option<Type> {
    match tok {
        Tok::IntTy => Some(Type::Int),
        Tok::FloatTy => Some(Type::Float),
        Tok::BoolTy => Some(Type::Bool),
        _ => None,
    }
}

fn is_item_start(tok: Tok) -> bool {
    matches!(tok, Tok::Fn | Tok::Global | Tok::Const)
}

fn is_stmt_start(tok: Tok) -> bool {
    matches!(
        tok,
        Tok::Let | Tok::If | Tok::While | Tok::For | Tok::Return | Tok::Break | Tok::Continue
    )
}

fn leaf(kind: ExprKind, span: Span) -> Expr {
    Expr {
        kind,
        span,
        height: 1,
    }
}

fn empty_block() -> Block {
    Block { stmts: Vec::new() }
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, reuse: Option<Reuse<'a>>) -> Parser<'a> {
        let mut lexer = Lexer::new(text);
        let tok = lexer.next_token();
        let lex_error_at_tok = lexer.errors > 0;
        Parser {
            lexer,
            text,
            reuse,
            tok,
            prev_end: 0,
            diagnostics: Vec::new(),
            dropped: 0,
            last_error_at: None,
            had_error: false,
            depth: 0,
            bail: false,
            lex_error_at_tok,
            lex_error_at_prev: false,
        }
    }

    // ----- tokens and errors -----

    fn bump(&mut self) {
        self.prev_end = self.tok.span.end;
        let errors = self.lexer.errors;
        self.tok = self.lexer.next_token();
        self.lex_error_at_prev = self.lex_error_at_tok;
        self.lex_error_at_tok = self.lexer.errors > errors;
    }

    /// Goes on after byte `end`, as if everything up to it had been consumed and its last
    /// token were a `}` (which a skipped body ends with).
    fn jump_to(&mut self, end: u32) {
        self.lexer.seek(end as usize);
        self.tok = Token {
            kind: Tok::RBrace,
            span: Span::new(end - 1, end),
        };
        self.lex_error_at_tok = false;
        self.bump();
    }

    fn at(&self, kind: Tok) -> bool {
        self.tok.kind == kind
    }

    fn eat(&mut self, kind: Tok) -> bool {
        let found = self.at(kind);
        if found {
            self.bump();
        }
        found
    }

    fn error(&mut self, d: Diagnostic) {
        self.had_error = true;
        // While bailing out of a too-deep tree, whatever the unwinding trips over is not news.
        if self.bail || self.lex_error_at_tok || self.lex_error_at_prev {
            return;
        }
        if self.last_error_at == Some(d.span.start) {
            return;
        }
        self.last_error_at = Some(d.span.start);
        if self.diagnostics.len() < MAX_STORED_ERRORS {
            self.diagnostics.push(d);
        } else {
            self.dropped += 1;
        }
    }

    fn describe(&self, tok: Token) -> String {
        let text = &self.text[tok.span.start as usize..tok.span.end as usize];
        match tok.kind {
            Tok::Eof => "end of file".to_string(),
            Tok::Ident => format!("identifier `{}`", lexer::truncate(text)),
            Tok::Int(_) | Tok::IntMinMagnitude | Tok::Float(_) | Tok::BadLiteral => {
                format!("number `{}`", lexer::truncate(text))
            }
            Tok::Str => "string literal".to_string(),
            k if k.is_keyword() => format!("keyword `{text}`"),
            _ => format!("`{text}`"),
        }
    }

    /// Reports "expected WHAT, found TOKEN" at the current token.
    fn error_expected(&mut self, what: &str) {
        let found = self.describe(self.tok);
        let d = Diagnostic::new(format!("expected {what}, found {found}"), self.tok.span)
            .with_label(format!("expected {what}"));
        self.error(d);
    }

    fn expect(&mut self, kind: Tok) -> bool {
        if self.eat(kind) {
            return true;
        }
        let what = format!("`{}`", kind.spelling().unwrap_or("?"));
        self.error_expected(&what);
        false
    }

    fn expect_name(&mut self, what: &str) -> Option<Name> {
        if self.at(Tok::Ident) {
            let span = self.tok.span;
            let text = self.text[span.start as usize..span.end as usize].to_string();
            self.bump();
            Some(Name { text, span })
        } else {
            self.error_expected(what);
            None
        }
    }

    /// Enters one level of nesting; at the limit, reports once and starts bailing out.
    fn enter(&mut self) -> bool {
        if self.bail {
            return false;
        }
        if self.depth >= MAX_NESTING {
            self.too_deep(self.tok.span);
            return false;
        }
        self.depth += 1;
        true
    }

    fn too_deep(&mut self, span: Span) {
        let d = Diagnostic::new(format!("nesting too deep (limit {MAX_NESTING})"), span)
            .with_label("the program nests too deeply here")
            .with_note("split the expression or block into smaller pieces");
        self.error(d);
        self.bail = true;
    }

    /// Whether a node of `height` built at the current depth stays within the limit.
    fn fits(&mut self, height: u32, span: Span) -> bool {
        if self.depth + height as usize > MAX_NESTING {
            self.too_deep(span);
            return false;
        }
        true
    }

    fn error_expr(&self) -> Expr {
        leaf(ExprKind::Error, self.tok.span)
    }

    /// Skips to the next item keyword; item keywords cannot appear inside a body.
    fn skip_to_item(&mut self) {
        while !self.at(Tok::Eof) && !is_item_start(self.tok.kind) {
            self.bump();
        }
    }

    /// Skips the rest of a broken statement: through its `;` or its balanced `{ ... }`, or up
    /// to the `}` closing the enclosing block, a statement keyword or an item keyword.
    fn recover_stmt(&mut self) {
        let mut braces = 0usize;
        // Open `(` and `[` seen while skipping: a `;` inside them does not end the statement.
        let mut groups = 0usize;
        loop {
            match self.tok.kind {
                Tok::Eof | Tok::Fn | Tok::Global | Tok::Const => return,
                Tok::Semi if braces == 0 && groups == 0 => {
                    self.bump();
                    return;
                }
                Tok::LParen | Tok::LBracket => groups += 1,
                Tok::RParen | Tok::RBracket => groups = groups.saturating_sub(1),
                Tok::LBrace => braces += 1,
                Tok::RBrace if braces == 0 => return,
                Tok::RBrace => {
                    braces -= 1;
                    if braces == 0 {
                        self.bump();
                        return;
                    }
                }
                k if braces == 0 && is_stmt_start(k) => return,
                _ => {}
            }
            self.bump();
        }
    }

    /// Ends a statement at `;`, or reports and recovers.
    fn end_stmt(&mut self) {
        if !self.expect(Tok::Semi) {
            self.recover_stmt();
        }
    }

    // ----- items -----

    fn parse_items(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while !self.at(Tok::Eof) {
            self.depth = 0;
            self.had_error = false;
            let item = match self.tok.kind {
                Tok::Fn => self.parse_fn().map(Item::Fn),
                Tok::Global | Tok::Const => self.parse_var_item(),
                _ => {
                    self.error_expected("an item (`fn`, `global` or `const`)");
                    self.bump();
                    self.skip_to_item();
                    None
                }
            };
            let Some(mut item) = item else { continue };
            if self.bail {
                self.bail = false;
                self.skip_to_item();
                match &mut item {
                    Item::Fn(f) => f.broken = true,
                    Item::Global(v) | Item::Const(v) => {
                        v.init = Some(leaf(ExprKind::Error, v.name.span));
                    }
                }
            }
            items.push(item);
        }
        items
    }

    fn parse_fn(&mut self) -> Option<FnItem> {
        let start = self.tok.span.start;
        self.bump();
        let Some(name) = self.expect_name("a function name") else {
            self.skip_to_item();
            return None;
        };
        let mut broken = false;
        let mut params = Vec::new();
        if self.expect(Tok::LParen) {
            if !self.at(Tok::RParen) {
                loop {
                    match self.parse_param() {
                        Some(p) => params.push(p),
                        None => {
                            broken = true;
                            break;
                        }
                    }
                    if !self.eat(Tok::Comma) {
                        break;
                    }
                }
            }
            if !broken && !self.eat(Tok::RParen) {
                self.error_expected("`,` or `)`");
                broken = true;
            }
        } else {
            broken = true;
        }
        let mut ret = None;
        if !broken && self.eat(Tok::Arrow) {
            ret = Some(self.parse_type());
        }
        if !broken && !self.at(Tok::LBrace) {
            self.error_expected("`{`");
            broken = true;
        }
        if broken {
            // Parse the body anyway, for its syntax errors, if one follows the broken header.
            while !matches!(self.tok.kind, Tok::LBrace | Tok::Eof) && !is_item_start(self.tok.kind)
            {
                self.bump();
            }
        }
        let broken = broken || self.had_error;
        if !broken && let Some(end) = self.reusable_body_end(start, &name.text) {
            self.jump_to(end);
            return Some(FnItem {
                name,
                params,
                ret,
                body: empty_block(),
                item: Span::new(start, end),
                broken: false,
                body_had_errors: false,
                reused: true,
            });
        }
        self.had_error = false;
        let body = if self.at(Tok::LBrace) {
            self.parse_block()
        } else {
            empty_block()
        };
        Some(FnItem {
            name,
            params,
            ret,
            body,
            item: Span::new(start, self.prev_end),
            broken,
            body_had_errors: self.had_error,
            reused: false,
        })
    }

    /// The end of the function item starting at `start` whose body opens at the current `{`,
    /// when the caller wants the body skipped.
    fn reusable_body_end(&self, start: u32, name: &str) -> Option<u32> {
        let reuse = self.reuse?;
        let end = lexer::braced_group_end(self.text, self.tok.span.start as usize)?;
        reuse(name, &self.text[start as usize..end]).then_some(end as u32)
    }

    fn parse_param(&mut self) -> Option<Param> {
        let name = self.expect_name("a parameter name")?;
        if !self.expect(Tok::Colon) {
            return None;
        }
        let ty = self.parse_type();
        Some(Param { name, ty })
    }

    fn parse_var_item(&mut self) -> Option<Item> {
        let start = self.tok.span.start;
        let is_const = self.at(Tok::Const);
        self.bump();
        let recover = |p: &mut Parser| {
            // Through the item's `;`, skipping any inside brackets (`[[int; 2]; 2]`).
            let mut groups = 0usize;
            while !matches!(p.tok.kind, Tok::Eof) && !is_item_start(p.tok.kind) {
                let kind = p.tok.kind;
                p.bump();
                match kind {
                    Tok::LParen | Tok::LBracket => groups += 1,
                    Tok::RParen | Tok::RBracket => groups = groups.saturating_sub(1),
                    Tok::Semi if groups == 0 => return,
                    _ => {}
                }
            }
        };
        let Some(name) = self.expect_name("a name") else {
            recover(self);
            return None;
        };
        if !self.expect(Tok::Colon) {
            recover(self);
            return None;
        }
        let ty = self.parse_type();
        let init = if self.eat(Tok::Assign) {
            Some(self.parse_expr())
        } else {
            None
        };
        if !self.bail && !self.expect(Tok::Semi) {
            recover(self);
        }
        let item = VarItem {
            name,
            ty,
            init,
            item: Span::new(start, self.prev_end),
        };
        Some(if is_const {
            Item::Const(item)
        } else {
            Item::Global(item)
        })
    }

    fn parse_type(&mut self) -> TypeExpr {
        let start = self.tok.span;
        if let Some(t) = scalar_type(self.tok.kind) {
            self.bump();
            return TypeExpr {
                kind: TypeKind::Scalar(t),
                span: start,
            };
        }
        let error = |span| TypeExpr {
            kind: TypeKind::Error,
            span,
        };
        if !self.at(Tok::LBracket) {
            self.error_expected("a type");
            return error(start);
        }
        self.bump();
        let Some(elem) = scalar_type(self.tok.kind) else {
            self.error_expected("an element type (`int`, `float` or `bool`)");
            self.skip_past_bracket();
            return error(start);
        };
        self.bump();
        if !self.expect(Tok::Semi) {
            self.skip_past_bracket();
            return error(start);
        }
        let len = self.parse_expr();
        if !self.expect(Tok::RBracket) {
            self.skip_past_bracket();
            return error(start);
        }
        TypeExpr {
            kind: TypeKind::Array(elem, Box::new(len)),
            span: start.to(Span::new(self.prev_end, self.prev_end)),
        }
    }

    /// Skips the rest of a broken array type, through the `]` that closes it.
    fn skip_past_bracket(&mut self) {
        let mut open = 1usize;
        loop {
            match self.tok.kind {
                Tok::Eof | Tok::LBrace | Tok::RBrace => return,
                k if is_item_start(k) => return,
                Tok::LBracket => open += 1,
                Tok::RBracket => {
                    open -= 1;
                    if open == 0 {
                        self.bump();
                        return;
                    }
                }
                _ => {}
            }
            self.bump();
        }
    }

    // ----- statements -----

    /// Parses `{ ... }`; the current token is `{`.
    ///
    /// This function and the ones it recurses through (`parse_stmt`, `parse_if`, `parse_while`,
    /// `parse_for`, `parse_body`) are kept lean, with the work that needs big temporaries in
    /// helpers: a debug build gives every temporary its own stack slot, and these frames are
    /// repeated once per level of nesting.
    fn parse_block(&mut self) -> Block {
        let mut stmts = Vec::new();
        if !self.enter() {
            return Block { stmts };
        }
        self.bump();
        while self.block_continues() {
            let before = self.tok.span.start;
            if let Some(s) = self.parse_stmt() {
                stmts.push(s);
            }
            self.ensure_progress(before);
        }
        self.depth -= 1;
        Block { stmts }
    }

    /// Whether another statement follows in the current block; consumes its `}` (and stray
    /// `;`s) and reports a block cut short by the end of the file or an item.
    fn block_continues(&mut self) -> bool {
        loop {
            if self.bail {
                return false;
            }
            match self.tok.kind {
                Tok::RBrace => {
                    self.bump();
                    return false;
                }
                Tok::Eof | Tok::Fn | Tok::Global | Tok::Const => {
                    self.error_expected("`}`");
                    return false;
                }
                Tok::Semi => self.bump(),
                _ => return true,
            }
        }
    }

    /// Recovery may stop at the token that failed; skip it so the block loop moves on.
    fn ensure_progress(&mut self, before: u32) {
        if self.tok.span.start == before
            && !matches!(self.tok.kind, Tok::RBrace | Tok::Eof)
            && !is_item_start(self.tok.kind)
            && !self.bail
        {
            self.bump();
        }
    }

    fn parse_stmt(&mut self) -> Option<Stmt> {
        match self.tok.kind {
            Tok::Let => self.parse_let(),
            Tok::If => self.parse_if(false),
            Tok::While => self.parse_while(),
            Tok::For => self.parse_for(),
            Tok::LBrace => self.parse_block_stmt(),
            Tok::Break | Tok::Continue => self.parse_jump(),
            Tok::Return => self.parse_return(),
            _ => self.parse_simple_stmt(),
        }
    }

    fn finish_stmt(&self, start: Span, kind: StmtKind) -> Option<Stmt> {
        Some(Stmt {
            kind,
            span: start.to(Span::new(self.prev_end, self.prev_end)),
        })
    }

    fn parse_block_stmt(&mut self) -> Option<Stmt> {
        let start = self.tok.span;
        let block = self.parse_block();
        self.finish_block_stmt(start, block)
    }

    fn finish_block_stmt(&self, start: Span, block: Block) -> Option<Stmt> {
        self.finish_stmt(start, StmtKind::Block(block))
    }

    fn parse_jump(&mut self) -> Option<Stmt> {
        let start = self.tok.span;
        let kind = if self.at(Tok::Break) {
            StmtKind::Break
        } else {
            StmtKind::Continue
        };
        self.bump();
        self.end_stmt();
        self.finish_stmt(start, kind)
    }

    fn parse_return(&mut self) -> Option<Stmt> {
        let start = self.tok.span;
        self.bump();
        let value = if self.at(Tok::Semi) {
            None
        } else {
            Some(self.parse_expr())
        };
        self.end_stmt();
        self.finish_stmt(start, StmtKind::Return(value))
    }

    /// An assignment or an expression statement.
    fn parse_simple_stmt(&mut self) -> Option<Stmt> {
        let start = self.tok.span;
        let target = self.parse_expr();
        let Some(op) = assign_op(self.tok.kind) else {
            self.end_stmt();
            return self.finish_stmt(start, StmtKind::Expr(target));
        };
        let op_span = self.tok.span;
        self.bump();
        let value = self.parse_expr();
        self.end_stmt();
        self.finish_stmt(
            start,
            StmtKind::Assign {
                target,
                op,
                op_span,
                value,
            },
        )
    }

    /// The block of a loop or `if`, or an error and recovery when there is none.
    fn parse_body(&mut self) -> Option<Block> {
        if self.bail {
            return None;
        }
        if !self.at(Tok::LBrace) {
            self.error_expected("`{`");
            self.recover_stmt();
            return None;
        }
        Some(self.parse_block())
    }

    fn parse_let(&mut self) -> Option<Stmt> {
        let start = self.tok.span;
        self.bump();
        let Some(name) = self.expect_name("a variable name") else {
            self.recover_stmt();
            return None;
        };
        let ty = if self.eat(Tok::Colon) {
            Some(self.parse_type())
        } else {
            None
        };
        let init = if self.eat(Tok::Assign) {
            Some(self.parse_expr())
        } else {
            None
        };
        self.end_stmt();
        self.finish_stmt(start, StmtKind::Let { name, ty, init })
    }

    fn parse_while(&mut self) -> Option<Stmt> {
        let keyword = self.tok.span;
        self.bump();
        let cond = self.parse_expr();
        let body = self.parse_body()?;
        self.finish_while(keyword, cond, body)
    }

    fn finish_while(&self, keyword: Span, cond: Expr, body: Block) -> Option<Stmt> {
        self.finish_stmt(
            keyword,
            StmtKind::While {
                cond,
                body,
                keyword,
            },
        )
    }

    /// `if` statements; a `chained` one follows `else` and counts as one more level of nesting.
    fn parse_if(&mut self, chained: bool) -> Option<Stmt> {
        if chained && !self.enter() {
            return None;
        }
        let start = self.tok.span;
        self.bump();
        let cond = self.parse_expr();
        let stmt = match self.parse_body() {
            Some(then_block) => {
                let else_branch = self.parse_else();
                self.finish_if(start, cond, then_block, else_branch)
            }
            None => None,
        };
        if chained && !self.bail {
            self.depth -= 1;
        }
        stmt
    }

    fn parse_else(&mut self) -> Option<Else> {
        if !self.eat(Tok::Else) {
            return None;
        }
        match self.tok.kind {
            Tok::If => self.parse_if(true).map(|s| Else::If(Box::new(s))),
            Tok::LBrace => Some(Else::Block(self.parse_block())),
            _ => {
                self.error_expected("`{` or `if`");
                self.recover_stmt();
                None
            }
        }
    }

    fn finish_if(
        &self,
        start: Span,
        cond: Expr,
        then_block: Block,
        else_branch: Option<Else>,
    ) -> Option<Stmt> {
        self.finish_stmt(
            start,
            StmtKind::If {
                cond,
                then_block,
                else_branch,
            },
        )
    }

    fn parse_for(&mut self) -> Option<Stmt> {
        let keyword = self.tok.span;
        self.bump();
        let Some(var) = self.expect_name("a loop variable") else {
            self.recover_stmt();
            return None;
        };
        if !self.expect(Tok::In) {
            self.recover_stmt();
            return None;
        }
        let start = self.parse_expr();
        if !self.bail && !self.expect(Tok::DotDot) {
            self.recover_stmt();
            return None;
        }
        let end = self.parse_expr();
        let body = self.parse_body()?;
        self.finish_stmt(
            keyword,
            StmtKind::For {
                var,
                start,
                end,
                body,
                keyword,
            },
        )
    }

    // ----- expressions -----

    fn parse_expr(&mut self) -> Expr {
        self.parse_binary(1)
    }

    /// Precedence climbing: operators of precedence `min_prec` and above, left-associative.
    /// Like `parse_block`, the functions of the recursion (`parse_binary`, `parse_operand`,
    /// `parse_postfix`, `parse_primary`, `parse_call`) leave node building to helpers.
    fn parse_binary(&mut self, min_prec: u8) -> Expr {
        if !self.enter() {
            return self.error_expr();
        }
        let mut lhs = self.parse_operand();
        let mut after_comparison = false;
        while let Some((op, prec, op_span)) = self.binary_operator(min_prec) {
            let rhs = self.parse_binary(prec + 1);
            lhs = self.make_binary(lhs, op, prec, op_span, rhs, &mut after_comparison);
        }
        if !self.bail {
            self.depth -= 1;
        }
        lhs
    }

    /// Consumes the next binary operator if it binds at least as tightly as `min_prec`.
    fn binary_operator(&mut self, min_prec: u8) -> Option<(BinaryOp, u8, Span)> {
        if self.bail {
            return None;
        }
        let (op, prec) = binary_op(self.tok.kind)?;
        if prec < min_prec {
            return None;
        }
        let span = self.tok.span;
        self.bump();
        Some((op, prec, span))
    }

    fn make_binary(
        &mut self,
        lhs: Expr,
        op: BinaryOp,
        prec: u8,
        op_span: Span,
        rhs: Expr,
        after_comparison: &mut bool,
    ) -> Expr {
        let span = lhs.span.to(rhs.span);
        let height = lhs.height.max(rhs.height) + 1;
        if prec == COMPARISON && *after_comparison {
            self.error(
                Diagnostic::new("comparison operators cannot be chained", op_span)
                    .with_label("second comparison here")
                    .with_note("use `&&` to combine comparisons: `a < b && b < c`"),
            );
            return leaf(ExprKind::Error, span);
        }
        *after_comparison = prec == COMPARISON;
        if !self.fits(height, op_span) {
            return lhs;
        }
        Expr {
            kind: ExprKind::Binary {
                op,
                op_span,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            },
            span,
            height,
        }
    }

    /// Prefix operators, a primary with its postfix operators, then `as` casts. The chains are
    /// built in loops, not by recursion, so `- - - x` costs no stack.
    fn parse_operand(&mut self) -> Expr {
        let prefix = self.parse_prefix();
        let e = match &prefix {
            Err(e) => return leaf(ExprKind::Error, *e),
            Ok(ops)
                if self.at(Tok::IntMinMagnitude)
                    && ops.last().is_some_and(|o| o.0 == UnOp::Neg) =>
            {
                self.negated_min()
            }
            Ok(_) => self.parse_postfix(),
        };
        self.finish_operand(prefix.unwrap_or_default(), e)
    }

    /// The prefix operators before an operand, or the span where there were too many.
    fn parse_prefix(&mut self) -> Result<Vec<(UnOp, Span)>, Span> {
        let mut prefix = Vec::new();
        loop {
            let op = match self.tok.kind {
                Tok::Minus => UnOp::Neg,
                Tok::Bang => UnOp::Not,
                _ => return Ok(prefix),
            };
            if self.depth + prefix.len() >= MAX_NESTING {
                self.too_deep(self.tok.span);
                return Err(self.tok.span);
            }
            prefix.push((op, self.tok.span));
            self.bump();
        }
    }

    /// The only place `9223372036854775808` is valid: negated, it is `int`'s minimum (and
    /// negating the minimum wraps back to it).
    fn negated_min(&mut self) -> Expr {
        let e = leaf(ExprKind::Int(i64::MIN), self.tok.span);
        self.bump();
        e
    }

    fn finish_operand(&mut self, prefix: Vec<(UnOp, Span)>, mut e: Expr) -> Expr {
        for (op, op_span) in prefix.into_iter().rev() {
            if self.bail {
                break;
            }
            let height = e.height + 1;
            if !self.fits(height, op_span) {
                break;
            }
            e = Expr {
                span: op_span.to(e.span),
                kind: ExprKind::Unary {
                    op,
                    operand: Box::new(e),
                },
                height,
            };
        }
        while !self.bail && self.at(Tok::As) {
            let as_span = self.tok.span;
            self.bump();
            let Some(ty) = scalar_type(self.tok.kind) else {
                self.error_expected("`int`, `float` or `bool`");
                return leaf(ExprKind::Error, e.span);
            };
            let ty_span = self.tok.span;
            self.bump();
            let height = e.height + 1;
            if !self.fits(height, as_span) {
                break;
            }
            e = Expr {
                span: e.span.to(ty_span),
                kind: ExprKind::Cast {
                    expr: Box::new(e),
                    ty,
                },
                height,
            };
        }
        e
    }

    fn parse_postfix(&mut self) -> Expr {
        let mut e = self.parse_primary();
        while !self.bail && self.eat(Tok::LBracket) {
            let index = self.parse_expr();
            e = self.make_index(e, index);
        }
        e
    }

    fn make_index(&mut self, base: Expr, index: Expr) -> Expr {
        if self.bail {
            return base;
        }
        if !self.expect(Tok::RBracket) {
            return leaf(ExprKind::Error, base.span.to(index.span));
        }
        let height = base.height.max(index.height) + 1;
        let span = base.span.to(Span::new(self.prev_end, self.prev_end));
        if !self.fits(height, span) {
            return base;
        }
        Expr {
            kind: ExprKind::Index {
                base: Box::new(base),
                index: Box::new(index),
            },
            span,
            height,
        }
    }

    fn parse_primary(&mut self) -> Expr {
        match self.tok.kind {
            Tok::LParen => {
                let open = self.tok.span;
                self.bump();
                let e = self.parse_expr();
                self.close_paren(open, e)
            }
            Tok::Ident => {
                let name = self.name_here();
                if self.at(Tok::LParen) {
                    return self.parse_call(name);
                }
                leaf(ExprKind::Name(name.text), name.span)
            }
            _ => self.parse_literal(),
        }
    }

    fn close_paren(&mut self, open: Span, mut e: Expr) -> Expr {
        if !self.bail && self.expect(Tok::RParen) {
            e.span = open.to(Span::new(self.prev_end, self.prev_end));
        }
        e
    }

    /// The identifier at the current token, consumed.
    fn name_here(&mut self) -> Name {
        let span = self.tok.span;
        let text = self.text[span.start as usize..span.end as usize].to_string();
        self.bump();
        Name { text, span }
    }

    fn parse_literal(&mut self) -> Expr {
        let span = self.tok.span;
        let kind = match self.tok.kind {
            Tok::Int(v) => ExprKind::Int(v),
            Tok::Float(v) => ExprKind::Float(v),
            Tok::True => ExprKind::Bool(true),
            Tok::False => ExprKind::Bool(false),
            Tok::Str => ExprKind::Str(std::mem::take(&mut self.lexer.string_value)),
            Tok::BadLiteral => ExprKind::Error,
            Tok::IntMinMagnitude => {
                self.error(
                    Diagnostic::new("integer literal out of range", span)
                        .with_label("the largest int is 9223372036854775807")
                        .with_note("`-9223372036854775808` is valid: only unary minus may apply"),
                );
                ExprKind::Error
            }
            _ => {
                self.error_expected("an expression");
                return self.error_expr();
            }
        };
        self.bump();
        leaf(kind, span)
    }

    /// `name(args)`; the current token is `(`.
    fn parse_call(&mut self, name: Name) -> Expr {
        self.bump();
        let mut args = Vec::new();
        if !self.at(Tok::RParen) {
            loop {
                let arg = self.parse_expr();
                args.push(arg);
                if self.bail || !self.eat(Tok::Comma) {
                    break;
                }
            }
        }
        self.finish_call(name, args)
    }

    fn finish_call(&mut self, name: Name, args: Vec<Expr>) -> Expr {
        let height = args.iter().map(|a| a.height + 1).max().unwrap_or(1);
        let span = name.span.to(Span::new(self.prev_end, self.prev_end));
        if !self.bail && !self.eat(Tok::RParen) {
            self.error_expected("`,` or `)`");
            return leaf(ExprKind::Error, span);
        }
        Expr {
            span: name.span.to(Span::new(self.prev_end, self.prev_end)),
            kind: ExprKind::Call { name, args },
            height,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<Diagnostic> {
        parse(text, None).1
    }

    fn messages(text: &str) -> Vec<String> {
        errors(text).into_iter().map(|d| d.message).collect()
    }

    /// The expression of `fn f() { return EXPR; }` with explicit parentheses.
    fn shape(expr: &str) -> String {
        let text = format!("fn f() {{ return {expr}; }}");
        let (module, diags) = parse(&text, None);
        assert!(diags.is_empty(), "{expr}: {diags:?}");
        let Item::Fn(f) = &module.items[0] else {
            unreachable!()
        };
        let StmtKind::Return(Some(e)) = &f.body.stmts[0].kind else {
            unreachable!()
        };
        show(e, &text)
    }

    fn show(e: &Expr, text: &str) -> String {
        match &e.kind {
            ExprKind::Int(v) => v.to_string(),
            ExprKind::Float(v) => format!("{v:?}"),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Str(s) => format!("{s:?}"),
            ExprKind::Name(n) => n.clone(),
            ExprKind::Call { name, args } => {
                let args: Vec<String> = args.iter().map(|a| show(a, text)).collect();
                format!("{}({})", name.text, args.join(", "))
            }
            ExprKind::Index { base, index } => {
                format!("{}[{}]", show(base, text), show(index, text))
            }
            ExprKind::Unary { op, operand, .. } => {
                let op = if *op == UnOp::Neg { "-" } else { "!" };
                format!("({op}{})", show(operand, text))
            }
            ExprKind::Binary {
                op_span, lhs, rhs, ..
            } => format!(
                "({} {} {})",
                show(lhs, text),
                &text[op_span.start as usize..op_span.end as usize],
                show(rhs, text)
            ),
            ExprKind::Cast { expr, ty, .. } => format!("({} as {ty})", show(expr, text)),
            ExprKind::Error => "<error>".to_string(),
        }
    }

    #[test]
    fn precedence_follows_the_table() {
        let cases = [
            ("a || b && c", "(a || (b && c))"),
            ("a && b == c", "(a && (b == c))"),
            ("a == b | c", "(a == (b | c))"),
            ("a | b ^ c", "(a | (b ^ c))"),
            ("a ^ b & c", "(a ^ (b & c))"),
            ("a & b << c", "(a & (b << c))"),
            ("a << b + c", "(a << (b + c))"),
            ("a + b * c", "(a + (b * c))"),
            ("a * b as float", "(a * (b as float))"),
            ("-a as float", "((-a) as float)"),
            ("!f(x)[i]", "(!f(x)[i])"),
            ("a - b - c", "((a - b) - c)"),
            ("a / b % c * d", "(((a / b) % c) * d)"),
            ("a || b || c", "((a || b) || c)"),
            ("(a + b) * c", "((a + b) * c)"),
            ("x as int as float", "((x as int) as float)"),
            ("- -9223372036854775808", "(-(--9223372036854775808))"),
            ("a[i + 1]", "a[(i + 1)]"),
            ("f(1, g(2), -3)", "f(1, g(2), (-3))"),
            ("1.5e3 * 0x_f", "(1500.0 * 15)"),
            ("\"s\\n\"", "\"s\\n\""),
        ];
        for (src, want) in cases {
            assert_eq!(shape(src), want, "{src}");
        }
    }

    #[test]
    fn comparisons_do_not_chain() {
        let d = errors("fn f() { return a < b < c; }");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "comparison operators cannot be chained");
        assert_eq!(d[0].span, Span::new(22, 23));
        assert_eq!(messages("fn f() { return a == b != c; }").len(), 1);
        assert!(errors("fn f() { return (a < b) == c; }").is_empty());
        assert!(errors("fn f() { return a < b && b < c; }").is_empty());
    }

    #[test]
    fn min_int_literal_only_after_unary_minus() {
        assert!(errors("fn f() { let a = -9223372036854775808; }").is_empty());
        for bad in [
            "let a = 9223372036854775808;",
            "let a = -(9223372036854775808);",
            "let a = 1 - 9223372036854775808 + 0;",
        ] {
            let d = errors(&format!("fn f() {{ {bad} }}"));
            assert_eq!(d.len(), 1, "{bad}: {d:?}");
        }
        // `1 -9223372036854775808`: the minus is binary, so the literal is out of range.
        assert_eq!(
            messages("fn f() { let a = 1 -9223372036854775808; }"),
            ["integer literal out of range"]
        );
    }

    #[test]
    fn recovery_reports_every_error_once() {
        let text = "
            fn a() { let x = ; let y = 2; }
            fn b() { x = = 3; }
            global g: int = 1
            fn c() { if x { } else y; }
            const K: int = (1 + 2;
            fn d( { }
            fn e() { f(1 2); let z = 1 }
            fn f() { return; }
        ";
        let d = errors(text);
        let got: Vec<String> = d.iter().map(|d| d.message.clone()).collect();
        assert_eq!(
            got,
            [
                "expected an expression, found `;`",
                "expected an expression, found `=`",
                "expected `;`, found keyword `fn`",
                "expected `{` or `if`, found identifier `y`",
                "expected `)`, found `;`",
                "expected a parameter name, found `{`",
                "expected `,` or `)`, found number `2`",
                "expected `;`, found `}`",
            ]
        );
        let (module, _) = parse(text, None);
        assert_eq!(module.items.len(), 8);
    }

    #[test]
    fn missing_braces_and_stray_tokens() {
        assert_eq!(
            messages("fn a() { if x { }\nfn b() { }"),
            ["expected `}`, found keyword `fn`"]
        );
        assert_eq!(
            messages("fn a() { { {"),
            ["expected `}`, found end of file"]
        );
        assert_eq!(
            messages("let x = 1; fn a() {}"),
            ["expected an item (`fn`, `global` or `const`), found keyword `let`"]
        );
        assert_eq!(messages("fn a() { ) ] ; let x = 1; }").len(), 1);
        assert_eq!(messages("fn a() { x + 1 y(); }").len(), 1);
        assert_eq!(messages("fn a() -> { }"), ["expected a type, found `{`"]);
        assert_eq!(
            messages("fn a() { let x: [int 3]; }"),
            ["expected `;`, found number `3`"]
        );
        assert_eq!(
            messages("fn a() { x = 1 as [int; 2]; }"),
            ["expected `int`, `float` or `bool`, found `[`"]
        );
    }

    #[test]
    fn no_syntax_error_right_after_a_lexical_error() {
        assert_eq!(
            messages("fn f() { let s = @; let t = 1 # 2; }"),
            ["unexpected character `@`", "unexpected character `#`"]
        );
        assert_eq!(
            messages("fn f() { print(\"never closed);\n}"),
            ["unterminated string literal"]
        );
        assert_eq!(
            messages("fn f() { let d = 2.5e+; }"),
            ["invalid number literal"]
        );
        assert_eq!(
            messages("global g: [[int; 2]; 2]; fn f() { }"),
            ["expected an element type (`int`, `float` or `bool`), found `[`"]
        );
    }

    #[test]
    fn empty_and_trivial_inputs() {
        assert!(errors("").is_empty());
        assert!(errors("  // only a comment").is_empty());
        assert!(errors("fn f() { ;; }").is_empty());
    }

    /// Runs `f` on a thread with the 2 MiB stack Rust gives test threads by default, so the
    /// hostile-input tests do not depend on how the harness was started.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("the parser panicked or overflowed");
    }

    fn assert_too_deep(text: String) {
        on_small_stack(move || {
            let (module, d) = parse(&text, None);
            assert!(
                d.iter()
                    .any(|d| d.message == "nesting too deep (limit 256)"),
                "{:?}",
                &d[..d.len().min(3)]
            );
            assert_eq!(d.len(), 1, "{:?}", &d[..d.len().min(3)]);
            drop(module);
        });
    }

    const HUGE: usize = 100_000;

    #[test]
    fn deep_parentheses() {
        let text = format!(
            "fn f() {{ let x = {}1{}; }}",
            "(".repeat(HUGE),
            ")".repeat(HUGE)
        );
        assert_too_deep(text);
    }

    #[test]
    fn deep_blocks() {
        assert_too_deep(format!(
            "fn f() {{ {}{} }}",
            "{".repeat(HUGE),
            "}".repeat(HUGE)
        ));
    }

    #[test]
    fn long_operator_chains() {
        assert_too_deep(format!("fn f() {{ let x = 1{}; }}", "+1".repeat(HUGE)));
        assert_too_deep(format!(
            "fn f() {{ let x = true{}; }}",
            "||true".repeat(HUGE)
        ));
        assert_too_deep(format!("fn f() {{ let x = {}1; }}", "-".repeat(HUGE)));
        assert_too_deep(format!(
            "fn f() {{ let x = {}1{}; }}",
            "-(".repeat(HUGE),
            ")".repeat(HUGE)
        ));
        assert_too_deep(format!("fn f() {{ let x = 1{}; }}", " as int".repeat(HUGE)));
        assert_too_deep(format!("fn f() {{ let x = a{}; }}", "[0]".repeat(HUGE)));
        assert_too_deep(format!(
            "fn f() {{ let x = {}0{}; }}",
            "a[".repeat(HUGE),
            "]".repeat(HUGE)
        ));
        assert_too_deep(format!(
            "fn f() {{ g({}); }}",
            "g(".repeat(HUGE) + &")".repeat(HUGE)
        ));
    }

    #[test]
    fn long_else_if_chain() {
        let text = format!("fn f() {{ if a {{ }}{} }}", " else if a { }".repeat(HUGE));
        assert_too_deep(text);
    }

    #[test]
    fn deep_nesting_error_resumes_at_the_next_item() {
        let text = format!(
            "fn f() {{ let x = {}1{}; }}\nfn g() {{ let y = ; }}",
            "(".repeat(1000),
            ")".repeat(1000)
        );
        on_small_stack(move || {
            let d = messages(&text);
            assert_eq!(
                d,
                [
                    "nesting too deep (limit 256)",
                    "expected an expression, found `;`"
                ]
            );
        });
    }

    #[test]
    fn nesting_just_under_the_limit_is_accepted() {
        let text = format!(
            "fn f() {{ let x = {}1{}; }}",
            "(".repeat(250),
            ")".repeat(250)
        );
        on_small_stack(move || assert!(errors(&text).is_empty()));
        let text = format!("fn f() {{ let x = 1{}; }}", "+1".repeat(250));
        on_small_stack(move || assert!(errors(&text).is_empty()));
    }

    #[test]
    fn long_flat_function() {
        // 100,000 lines, each shadowing `x`; the type error on the last line is still found.
        let mut text = String::from("fn f() {\n    let x = 0;\n");
        for i in 0..HUGE {
            text.push_str(&format!("    let x = x + {i};\n"));
        }
        text.push_str("    let y: float = x;\n}");
        on_small_stack(move || {
            let (module, d) = parse(&text, None);
            assert!(d.is_empty());
            let Item::Fn(f) = &module.items[0] else {
                unreachable!()
            };
            assert_eq!(f.body.stmts.len(), HUGE + 2);
            let file = crate::SourceFile::new("t.kl", text.as_str());
            let d = crate::check(&file, &[], &crate::CheckOptions::default()).unwrap_err();
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].message, "mismatched types");
            assert_eq!(file.line_col(d[0].span.start).line, HUGE as u32 + 3);
        });
    }

    #[test]
    fn binary_garbage() {
        let mut rng = fastrand::Rng::with_seed(7);
        let bytes: Vec<u8> = (0..1 << 20).map(|_| rng.u8(..)).collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        on_small_stack(move || {
            let d = errors(&text);
            assert!(!d.is_empty());
            assert!(d.len() <= MAX_STORED_ERRORS + 1);
        });
    }

    #[test]
    fn ten_megabytes() {
        // Ten megabytes of nonsense statements inside one function, and a huge literal.
        let line = "    x = x + 1 * (y - 2); z[3] += f(1, 2.5, true) ; \n";
        let mut text = String::from("fn f() {\n");
        while text.len() < 10 << 20 {
            text.push_str(line);
        }
        text.push_str("}\nfn g() { let a = ");
        text.push_str(&"9".repeat(1 << 20));
        text.push_str("; }");
        on_small_stack(move || {
            let start = std::time::Instant::now();
            let d = messages(&text);
            assert_eq!(d, ["integer literal out of range"]);
            assert!(start.elapsed().as_secs() < 10);
        });
    }
}
