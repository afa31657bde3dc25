//! Source text to tokens: comments, identifiers, keywords, literals and punctuation
//! (LANGUAGE.md section 1).
//!
//! The parser pulls one token at a time, so a huge file is never held as a token vector. A
//! lexical error becomes a diagnostic and lexing goes on after the offending text; a malformed
//! literal still yields a [`Tok::BadLiteral`] token so the parser does not report it again.

use crate::diagnostic::Diagnostic;
use crate::source::Span;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tok {
    Ident,
    /// An integer literal that fits in `int`; hex and binary are read as two's complement.
    Int(i64),
    /// The decimal literal `9223372036854775808`, valid only as the operand of unary `-`.
    IntMinMagnitude,
    Float(f64),
    /// A string literal; its text with escapes applied is [`Lexer::string_value`].
    Str,
    /// A malformed number literal, already reported.
    BadLiteral,
    // Keywords.
    Fn,
    Global,
    Const,
    Let,
    If,
    Else,
    While,
    For,
    In,
    Break,
    Continue,
    Return,
    True,
    False,
    As,
    IntTy,
    FloatTy,
    BoolTy,
    // Punctuation.
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Semi,
    Colon,
    Arrow,
    DotDot,
    Assign,
    PlusEq,
    MinusEq,
    StarEq,
    SlashEq,
    PercentEq,
    AmpEq,
    PipeEq,
    CaretEq,
    ShlEq,
    ShrEq,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Amp,
    Pipe,
    Caret,
    Shl,
    Shr,
    EqEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Eof,
}

impl Tok {
    /// The source spelling of a keyword or punctuation token.
    pub fn spelling(self) -> Option<&'static str> {
        use Tok::*;
        Some(match self {
            Fn => "fn",
            Global => "global",
            Const => "const",
            Let => "let",
            If => "if",
            Else => "else",
            While => "while",
            For => "for",
            In => "in",
            Break => "break",
            Continue => "continue",
            Return => "return",
            True => "true",
            False => "false",
            As => "as",
            IntTy => "int",
            FloatTy => "float",
            BoolTy => "bool",
            LParen => "(",
            RParen => ")",
            LBrace => "{",
            RBrace => "}",
            LBracket => "[",
            RBracket => "]",
            Comma => ",",
            Semi => ";",
            Colon => ":",
            Arrow => "->",
            DotDot => "..",
            Assign => "=",
            PlusEq => "+=",
            MinusEq => "-=",
            StarEq => "*=",
            SlashEq => "/=",
            PercentEq => "%=",
            AmpEq => "&=",
            PipeEq => "|=",
            CaretEq => "^=",
            ShlEq => "<<=",
            ShrEq => ">>=",
            Plus => "+",
            Minus => "-",
            Star => "*",
            Slash => "/",
            Percent => "%",
            Amp => "&",
            Pipe => "|",
            Caret => "^",
            Shl => "<<",
            Shr => ">>",
            EqEq => "==",
            Ne => "!=",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            AndAnd => "&&",
            OrOr => "||",
            Bang => "!",
            Ident | Int(_) | IntMinMagnitude | Float(_) | Str | BadLiteral | Eof => return None,
        })
    }

    pub fn is_keyword(self) -> bool {
        use Tok::*;
        matches!(
            self,
            Fn | Global
                | Const
                | Let
                | If
                | Else
                | While
                | For
                | In
                | Break
                | Continue
                | Return
                | True
                | False
                | As
                | IntTy
                | FloatTy
                | BoolTy
        )
    }
}

fn keyword(word: &str) -> Option<Tok> {
    use Tok::*;
    // Most identifiers are not keywords; skip the string comparisons for them.
    if !(2..=8).contains(&word.len()) || !b"abcefgilrtw".contains(&word.as_bytes()[0]) {
        return None;
    }
    Some(match word {
        "fn" => Fn,
        "global" => Global,
        "const" => Const,
        "let" => Let,
        "if" => If,
        "else" => Else,
        "while" => While,
        "for" => For,
        "in" => In,
        "break" => Break,
        "continue" => Continue,
        "return" => Return,
        "true" => True,
        "false" => False,
        "as" => As,
        "int" => IntTy,
        "float" => FloatTy,
        "bool" => BoolTy,
        _ => return None,
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Token {
    pub kind: Tok,
    pub span: Span,
}

/// Lexical errors beyond this many are counted but not stored: binary garbage would otherwise
/// produce one per few bytes.
pub const MAX_STORED_ERRORS: usize = 1000;

pub struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// The text of the last [`Tok::Str`] returned, escapes applied.
    pub string_value: String,
    pub diagnostics: Vec<Diagnostic>,
    /// Errors found after [`MAX_STORED_ERRORS`] were stored.
    pub dropped: usize,
    /// Every error so far, stored or dropped; the parser compares counts to tell whether a
    /// token came right after a lexical error.
    pub errors: usize,
    /// The text ended inside a string literal or a block comment: more text could still close
    /// it (a REPL keeps reading), unlike a string cut off by a line break.
    pub cut_off_at_end: bool,
}

fn span(start: usize, end: usize) -> Span {
    Span::new(start as u32, end as u32)
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_digit_or_underscore(b: u8) -> bool {
    b.is_ascii_digit() || b == b'_'
}

/// Whether a byte can begin a token or whitespace; anything else is reported as unexpected.
fn can_start_token(b: u8) -> bool {
    is_ident_continue(b) || b"\"(){}[],;:-.=+*/%&|^<>! \t\r\n".contains(&b)
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            string_value: String::new(),
            diagnostics: Vec::new(),
            dropped: 0,
            errors: 0,
            cut_off_at_end: false,
        }
    }

    /// Resumes lexing at byte `offset`, which must be where a token or trivia may start (the
    /// parser jumps past a function body it was told to skip).
    pub fn seek(&mut self, offset: usize) {
        self.pos = offset;
    }

    fn peek_at(&self, offset: usize) -> u8 {
        let i = self.pos + offset;
        if i < self.bytes.len() {
            self.bytes[i]
        } else {
            0
        }
    }

    fn error(&mut self, d: Diagnostic) {
        self.errors += 1;
        if self.diagnostics.len() < MAX_STORED_ERRORS {
            self.diagnostics.push(d);
        } else {
            self.dropped += 1;
        }
    }

    pub fn next_token(&mut self) -> Token {
        loop {
            self.skip_trivia();
            let start = self.pos;
            let Some(&b) = self.bytes.get(start) else {
                return Token {
                    kind: Tok::Eof,
                    span: span(start, start),
                };
            };
            if let Some(kind) = self.lex_token(b) {
                return Token {
                    kind,
                    span: span(start, self.pos),
                };
            }
        }
    }

    fn skip_trivia(&mut self) {
        loop {
            match self.peek_at(0) {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'/' if self.peek_at(1) == b'/' => {
                    self.pos = match self.bytes[self.pos..].iter().position(|&c| c == b'\n') {
                        Some(i) => self.pos + i + 1,
                        None => self.bytes.len(),
                    };
                }
                b'/' if self.peek_at(1) == b'*' => self.skip_block_comment(),
                _ => return,
            }
        }
    }

    /// Inside a block comment only `/*` and `*/` mean anything, and they nest.
    fn skip_block_comment(&mut self) {
        let start = self.pos;
        self.pos += 2;
        let mut depth = 1usize;
        while depth > 0 {
            match self.peek_at(0) {
                _ if self.pos >= self.bytes.len() => {
                    self.cut_off_at_end = true;
                    self.error(
                        Diagnostic::new("unterminated block comment", span(start, start + 2))
                            .with_label("this comment is never closed"),
                    );
                    return;
                }
                b'/' if self.peek_at(1) == b'*' => {
                    depth += 1;
                    self.pos += 2;
                }
                b'*' if self.peek_at(1) == b'/' => {
                    depth -= 1;
                    self.pos += 2;
                }
                _ => self.pos += 1,
            }
        }
    }

    /// Lexes the token starting with byte `b`; `None` after reporting text that is no token.
    fn lex_token(&mut self, b: u8) -> Option<Tok> {
        use Tok::*;
        let start = self.pos;
        let next = self.peek_at(1);
        let (kind, len) = match (b, next) {
            (b'a'..=b'z' | b'A'..=b'Z' | b'_', _) => {
                let end = self.digits_end(start, is_ident_continue);
                self.pos = end;
                return Some(keyword(&self.text[start..end]).unwrap_or(Ident));
            }
            (b'0'..=b'9', _) => return Some(self.lex_number()),
            (b'"', _) => return Some(self.lex_string()),
            (b'(', _) => (LParen, 1),
            (b')', _) => (RParen, 1),
            (b'{', _) => (LBrace, 1),
            (b'}', _) => (RBrace, 1),
            (b'[', _) => (LBracket, 1),
            (b']', _) => (RBracket, 1),
            (b',', _) => (Comma, 1),
            (b';', _) => (Semi, 1),
            (b':', _) => (Colon, 1),
            (b'-', b'>') => (Arrow, 2),
            (b'.', b'.') => (DotDot, 2),
            (b'<', b'<') if self.peek_at(2) == b'=' => (ShlEq, 3),
            (b'>', b'>') if self.peek_at(2) == b'=' => (ShrEq, 3),
            (b'<', b'<') => (Shl, 2),
            (b'>', b'>') => (Shr, 2),
            (b'&', b'&') => (AndAnd, 2),
            (b'|', b'|') => (OrOr, 2),
            (b'+', b'=') => (PlusEq, 2),
            (b'-', b'=') => (MinusEq, 2),
            (b'*', b'=') => (StarEq, 2),
            (b'/', b'=') => (SlashEq, 2),
            (b'%', b'=') => (PercentEq, 2),
            (b'&', b'=') => (AmpEq, 2),
            (b'|', b'=') => (PipeEq, 2),
            (b'^', b'=') => (CaretEq, 2),
            (b'=', b'=') => (EqEq, 2),
            (b'!', b'=') => (Ne, 2),
            (b'<', b'=') => (Le, 2),
            (b'>', b'=') => (Ge, 2),
            (b'=', _) => (Assign, 1),
            (b'+', _) => (Plus, 1),
            (b'-', _) => (Minus, 1),
            (b'*', _) => (Star, 1),
            (b'/', _) => (Slash, 1),
            (b'%', _) => (Percent, 1),
            (b'&', _) => (Amp, 1),
            (b'|', _) => (Pipe, 1),
            (b'^', _) => (Caret, 1),
            (b'<', _) => (Lt, 1),
            (b'>', _) => (Gt, 1),
            (b'!', _) => (Bang, 1),
            (b'.', next) => {
                let after_digit = start > 0 && self.bytes[start - 1].is_ascii_digit();
                let label = if after_digit {
                    "a float literal needs digits after `.`: write `1.0`, not `1.`"
                } else if next.is_ascii_digit() {
                    "a float literal needs digits before `.`: write `0.5`, not `.5`"
                } else {
                    "a lone `.` is not a token"
                };
                self.pos += 1;
                self.error(
                    Diagnostic::new("unexpected character `.`", span(start, start + 1))
                        .with_label(label),
                );
                return None;
            }
            _ => {
                self.skip_unexpected();
                return None;
            }
        };
        self.pos += len;
        Some(kind)
    }

    /// Reports a run of characters that cannot start a token as one diagnostic.
    fn skip_unexpected(&mut self) {
        let start = self.pos;
        let mut count = 0;
        while let Some(c) = self.text[self.pos..].chars().next() {
            if c.is_ascii() && can_start_token(c as u8) {
                break;
            }
            self.pos += c.len_utf8();
            count += 1;
        }
        let d = if count == 1 {
            let c = self.text[start..].chars().next().unwrap_or('?');
            Diagnostic::new(
                format!("unexpected character `{}`", c.escape_debug()),
                span(start, self.pos),
            )
        } else {
            Diagnostic::new("unexpected characters", span(start, self.pos))
        };
        self.error(d.with_label("not valid in Kiln source"));
    }

    /// The end of the run of bytes from `from` that satisfy `ok`.
    fn digits_end(&self, from: usize, ok: fn(u8) -> bool) -> usize {
        let mut end = from;
        while end < self.bytes.len() && ok(self.bytes[end]) {
            end += 1;
        }
        end
    }

    fn bad_literal(&mut self, message: &str, at: Span, label: &str) -> Tok {
        self.error(Diagnostic::new(message, at).with_label(label));
        Tok::BadLiteral
    }

    fn lex_number(&mut self) -> Tok {
        let start = self.pos;
        let radix = match (self.peek_at(0), self.peek_at(1)) {
            (b'0', b'x') => 16,
            (b'0', b'b') => 2,
            _ => 10,
        };
        if radix != 10 {
            // Everything alphanumeric after the prefix belongs to the literal, so `0b102` is one
            // bad literal rather than `0b10` followed by `2`.
            let body = start + 2;
            self.pos = self.digits_end(body, is_ident_continue);
            return self.radix_value(start, body, radix);
        }
        let int_end = self.digits_end(start, is_digit_or_underscore);
        self.pos = int_end;
        let mut is_float = false;
        // Each digit group must end in a digit: `_` only stands between digits.
        let mut group_ends = [int_end; 3];
        if self.peek_at(0) == b'.' && self.peek_at(1).is_ascii_digit() {
            is_float = true;
            self.pos = self.digits_end(self.pos + 1, is_digit_or_underscore);
            group_ends[1] = self.pos;
        }
        let sign = matches!(self.peek_at(1), b'+' | b'-') as usize;
        if matches!(self.peek_at(0), b'e' | b'E') && self.peek_at(1 + sign).is_ascii_digit() {
            is_float = true;
            self.pos = self.digits_end(self.pos + 1 + sign, is_digit_or_underscore);
            group_ends[2] = self.pos;
        }
        let literal_end = self.pos;
        let exponent_without_digits = matches!(self.peek_at(0), b'e' | b'E');
        if exponent_without_digits {
            // `1e+` is one bad literal, not `1e` followed by a `+` that confuses the parser.
            self.pos += 1 + matches!(self.peek_at(1), b'+' | b'-') as usize;
        }
        self.pos = self.digits_end(self.pos, is_ident_continue);
        let whole = span(start, self.pos);
        if self.pos > literal_end {
            let suffix = &self.text[literal_end..self.pos];
            let label = if exponent_without_digits {
                "expected digits after the exponent".to_string()
            } else {
                format!("invalid suffix `{}`", truncate(suffix))
            };
            return self.bad_literal("invalid number literal", whole, &label);
        }
        if let Some(&end) = group_ends.iter().find(|&&e| self.bytes[e - 1] == b'_') {
            return self.bad_literal(
                "invalid number literal",
                span(end - 1, end),
                "`_` must be followed by a digit",
            );
        }
        let literal = &self.text[start..literal_end];
        if is_float {
            let digits = if literal.contains('_') {
                literal.replace('_', "")
            } else {
                literal.to_string()
            };
            return match digits.parse::<f64>() {
                Ok(v) if v.is_finite() => Tok::Float(v),
                _ => self.bad_literal("float literal out of range", whole, "too large for a float"),
            };
        }
        let mut value: u64 = 0;
        for d in literal.bytes().filter(|&d| d != b'_') {
            match value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
            {
                Some(v) if v <= 1 << 63 => value = v,
                _ => {
                    return self.bad_literal(
                        "integer literal out of range",
                        whole,
                        "the largest int is 9223372036854775807",
                    );
                }
            }
        }
        if value == 1 << 63 {
            Tok::IntMinMagnitude
        } else {
            Tok::Int(value as i64)
        }
    }

    fn radix_value(&mut self, start: usize, body: usize, radix: u32) -> Tok {
        let whole = span(start, self.pos);
        let name = if radix == 16 { "hexadecimal" } else { "binary" };
        let mut value: u64 = 0;
        let mut any_digit = false;
        for i in body..self.pos {
            let c = self.bytes[i];
            if c == b'_' {
                continue;
            }
            let Some(d) = (c as char).to_digit(radix) else {
                let label = format!("invalid digit `{}` in {name} literal", c as char);
                return self.bad_literal("invalid number literal", span(i, i + 1), &label);
            };
            any_digit = true;
            match value
                .checked_mul(u64::from(radix))
                .and_then(|v| v.checked_add(u64::from(d)))
            {
                Some(v) => value = v,
                None => {
                    return self.bad_literal(
                        "integer literal out of range",
                        whole,
                        "more than 64 bits",
                    );
                }
            }
        }
        let prefix = &self.text[start..body];
        if !any_digit {
            let label = format!("expected digits after `{prefix}`");
            return self.bad_literal("invalid number literal", whole, &label);
        }
        if self.bytes[self.pos - 1] == b'_' {
            return self.bad_literal(
                "invalid number literal",
                span(self.pos - 1, self.pos),
                "`_` must be followed by a digit",
            );
        }
        Tok::Int(value as i64)
    }

    fn lex_string(&mut self) -> Tok {
        let start = self.pos;
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.bytes.get(self.pos) else {
                self.cut_off_at_end = true;
                self.unterminated_string(start);
                break;
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\n' | b'\r' => {
                    self.unterminated_string(start);
                    break;
                }
                b'\\' => {
                    let escaped = match self.peek_at(1) {
                        b'n' => Some(b'\n'),
                        b't' => Some(b'\t'),
                        b'r' => Some(b'\r'),
                        b'\\' => Some(b'\\'),
                        b'"' => Some(b'"'),
                        b'0' => Some(0),
                        _ => None,
                    };
                    if let Some(e) = escaped {
                        out.push(e);
                        self.pos += 2;
                        continue;
                    }
                    let next = self.text[self.pos + 1..].chars().next();
                    match next {
                        // The line break is reported as an unterminated string next time round.
                        None | Some('\n' | '\r') => self.pos += 1,
                        Some(n) => {
                            let end = self.pos + 1 + n.len_utf8();
                            self.error(
                                Diagnostic::new(
                                    format!("unknown escape `\\{}`", n.escape_debug()),
                                    span(self.pos, end),
                                )
                                .with_label(r#"valid escapes are \n \t \r \\ \" \0"#),
                            );
                            self.pos = end;
                        }
                    }
                }
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        // Only whole UTF-8 sequences were copied (every split is at an ASCII byte).
        self.string_value = String::from_utf8(out).unwrap_or_default();
        Tok::Str
    }

    fn unterminated_string(&mut self, start: usize) {
        self.error(
            Diagnostic::new("unterminated string literal", span(start, self.pos))
                .with_label("missing closing `\"` before the end of the line"),
        );
    }
}

/// Just past the `}` that closes the `{` at byte `open` of `text`, or `None` when the text ends
/// first. Braces are counted only where the lexer would see brace tokens: not inside string
/// literals (which end at `"` or at a line break, as [`Lexer`] ends them) nor comments (block
/// comments nest). Scanning bytes is an order of magnitude cheaper than lexing, which is the
/// point: the parser uses it to skip function bodies the caller already has.
pub fn braced_group_end(text: &str, open: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    loop {
        i = next_brace_quote_or_slash(bytes, i)?;
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'"' => {
                i = string_literal_end(bytes, i + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = bytes[i..].iter().position(|&c| c == b'\n')? + i;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = block_comment_end(bytes, i)?;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

/// The first `{`, `}`, `"` or `/` at or after `from`: the only bytes that matter to
/// [`braced_group_end`] outside strings and comments. Eight bytes are tested at a time, which
/// halves the time to skip a body compared with a byte loop.
fn next_brace_quote_or_slash(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut i = from;
    while let Some(chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let word = u64::from_le_bytes(*chunk);
        // The classic test for a zero byte, on `word` XOR each wanted byte: the lowest marked
        // byte is exact (only bytes above a match can be marked falsely).
        let marks = [b'{', b'}', b'"', b'/'].iter().fold(0, |marks, &wanted| {
            let v = word ^ (ONES * u64::from(wanted));
            marks | (v.wrapping_sub(ONES) & !v & HIGH_BITS)
        });
        if marks != 0 {
            return Some(i + marks.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    let rest = bytes.get(i..)?;
    let found = rest
        .iter()
        .position(|b| matches!(b, b'{' | b'}' | b'"' | b'/'))?;
    Some(i + found)
}

/// Where the string literal whose contents start at `from` ends: past its closing `"`, or at
/// the line break or end of text that cuts it off.
fn string_literal_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'"' => return i + 1,
            b'\n' | b'\r' => return i,
            // An escape hides the byte after the backslash, unless that is a line break: the
            // lexer ends the string there.
            b'\\' if !matches!(bytes.get(i + 1), Some(b'\n' | b'\r')) => i += 2,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Just past the `*/` that closes the (nesting) block comment opening at `start`.
fn block_comment_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Shortens long source text quoted in a message.
pub fn truncate(s: &str) -> String {
    match s.char_indices().nth(24) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(text: &str) -> (Vec<Tok>, Vec<Diagnostic>) {
        let mut lx = Lexer::new(text);
        let mut toks = Vec::new();
        loop {
            let t = lx.next_token();
            if t.kind == Tok::Eof {
                break;
            }
            toks.push(t.kind);
        }
        (toks, lx.diagnostics)
    }

    fn one(text: &str) -> Tok {
        let (toks, diags) = lex(text);
        assert_eq!(toks.len(), 1, "{text}: {toks:?}");
        if toks[0] != Tok::BadLiteral {
            assert!(diags.is_empty(), "{text}: {diags:?}");
        } else {
            assert_eq!(diags.len(), 1, "{text}: {diags:?}");
        }
        toks[0]
    }

    #[test]
    fn integer_literals() {
        assert_eq!(one("0"), Tok::Int(0));
        assert_eq!(one("007"), Tok::Int(7));
        assert_eq!(one("1_000_000"), Tok::Int(1_000_000));
        assert_eq!(one("1__0"), Tok::Int(10));
        assert_eq!(one("0xff"), Tok::Int(255));
        assert_eq!(one("0xDeadBeef"), Tok::Int(0xdead_beef));
        assert_eq!(one("0x_ff"), Tok::Int(255));
        assert_eq!(one("0b_1010"), Tok::Int(10));
        assert_eq!(one("0xFFFF_FFFF_FFFF_FFFF"), Tok::Int(-1));
        assert_eq!(one("0x8000000000000000"), Tok::Int(i64::MIN));
        assert_eq!(one("9223372036854775807"), Tok::Int(i64::MAX));
        assert_eq!(one("9223372036854775808"), Tok::IntMinMagnitude);
        for bad in [
            "9223372036854775809",
            "99999999999999999999999",
            "0x1_0000_0000_0000_0000",
            "1_",
            "0x",
            "0x_",
            "0xff_",
            "0b102",
            "0xfg",
            "0X1",
            "12abc",
            "0b",
            "1e",
            "1e+",
            "2.5E-",
            "2.5E-",
            "1_e5",
        ] {
            assert_eq!(one(bad), Tok::BadLiteral, "{bad}");
        }
    }

    #[test]
    fn float_literals() {
        assert_eq!(one("1.5"), Tok::Float(1.5));
        assert_eq!(one("1e9"), Tok::Float(1e9));
        assert_eq!(one("1E+9"), Tok::Float(1e9));
        assert_eq!(one("2.5e-3"), Tok::Float(2.5e-3));
        assert_eq!(one("1_000.0"), Tok::Float(1000.0));
        assert_eq!(one("1e1_0"), Tok::Float(1e10));
        assert_eq!(one("1e-400"), Tok::Float(0.0));
        assert_eq!(one("1.7976931348623157e308"), Tok::Float(f64::MAX));
        for bad in ["1e309", "1_.5", "1.5_", "1.5e3_", "1.5x"] {
            assert_eq!(one(bad), Tok::BadLiteral, "{bad}");
        }
        // `1.` and `.5` are not literals; `1..2` is a range.
        let (toks, diags) = lex("1.");
        assert_eq!(toks, vec![Tok::Int(1)]);
        assert_eq!(diags.len(), 1);
        let (toks, diags) = lex(".5");
        assert_eq!(toks, vec![Tok::Int(5)]);
        assert_eq!(diags.len(), 1);
        assert_eq!(lex("1..2").0, vec![Tok::Int(1), Tok::DotDot, Tok::Int(2)]);
    }

    #[test]
    fn strings_and_escapes() {
        let mut lx = Lexer::new(r#""a\tb\n\\\"\0\r é""#);
        assert_eq!(lx.next_token().kind, Tok::Str);
        assert_eq!(lx.string_value, "a\tb\n\\\"\0\r é");
        assert!(lx.diagnostics.is_empty());

        let (toks, diags) = lex(r#""bad \q escape" 1"#);
        assert_eq!(toks, vec![Tok::Str, Tok::Int(1)]);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].message, "unknown escape `\\q`");
        assert_eq!(diags[0].span, Span::new(5, 7));

        let (toks, diags) = lex("\"line\nbreak\" x");
        assert_eq!(diags[0].message, "unterminated string literal");
        assert!(toks.starts_with(&[Tok::Str, Tok::Break]));
        let (_, diags) = lex("\"never closed");
        assert_eq!(diags.len(), 1);
    }

    #[test]
    fn comments_nest() {
        let (toks, diags) = lex("/* a /* b */ c // */ 1 // x\n 2 /**/ /***/");
        assert_eq!(toks, vec![Tok::Int(1), Tok::Int(2)]);
        assert!(diags.is_empty());
        let (toks, diags) = lex("1 /* /* */");
        assert_eq!(toks, vec![Tok::Int(1)]);
        assert_eq!(diags[0].message, "unterminated block comment");
        assert_eq!(diags[0].span, Span::new(2, 4));
    }

    #[test]
    fn every_punctuation_token() {
        let text = "( ) { } [ ] , ; : -> .. = += -= *= /= %= &= |= ^= <<= >>= + - * / % & | ^ \
                    << >> == != < <= > >= && || !";
        let (toks, diags) = lex(text);
        assert!(diags.is_empty());
        let spelled: Vec<&str> = toks.iter().map(|t| t.spelling().unwrap()).collect();
        assert_eq!(spelled.join(" "), text);
        assert_eq!(lex("a<<=b").0, vec![Tok::Ident, Tok::ShlEq, Tok::Ident]);
        assert_eq!(lex("-->").0, vec![Tok::Minus, Tok::Arrow]);
    }

    #[test]
    fn keywords_and_identifiers() {
        let (toks, _) = lex("fn fn_ _ int intx as");
        assert_eq!(
            toks,
            vec![
                Tok::Fn,
                Tok::Ident,
                Tok::Ident,
                Tok::IntTy,
                Tok::Ident,
                Tok::As
            ]
        );
    }

    /// Where the `}` matching each `{` token ends, by counting brace tokens.
    fn braced_group_ends_by_tokens(text: &str) -> Vec<(usize, Option<usize>)> {
        let mut lx = Lexer::new(text);
        let mut tokens = Vec::new();
        loop {
            let t = lx.next_token();
            if t.kind == Tok::Eof {
                break;
            }
            tokens.push(t);
        }
        let mut ends = Vec::new();
        for (i, open) in tokens.iter().enumerate() {
            if open.kind != Tok::LBrace {
                continue;
            }
            let mut depth = 0usize;
            let mut end = None;
            for t in &tokens[i..] {
                match t.kind {
                    Tok::LBrace => depth += 1,
                    Tok::RBrace => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(t.span.end as usize);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            ends.push((open.span.start as usize, end));
        }
        ends
    }

    #[test]
    fn braced_group_end_agrees_with_the_lexer() {
        let mut texts: Vec<String> = [
            "{ a } }",
            "{ \"}\" }",
            "{ \"\\\"}\" }",
            "{ \"\\\\\" } }",
            "{ \"cut off\n} }",
            "{ \"cut \\\n} }",
            "{ \"\\é}\" }",
            "{ // }\n }",
            "{ /* } /* } */ } */ } }",
            "{ /* // } */ } }",
            "{ // /* \n } */ }",
            "{ a *//* } */ } }",
            "{ x /= y; /**/ } }",
            "{ 1e}",
            "{ { }",
            "{ \"never closed }",
            "{ /* never closed }",
            "{ // no line break }",
            "{ é { ü } }",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        texts.extend((0..40).map(crate::generate::random_program));
        let shape = crate::generate::Shape {
            functions: 50,
            host_calls: true,
        };
        texts.push(crate::generate::realistic_program(&shape, 3));
        for text in &texts {
            for (open, end) in braced_group_ends_by_tokens(text) {
                assert_eq!(
                    braced_group_end(text, open),
                    end,
                    "{{ at {open} in {text:?}"
                );
            }
        }
    }

    #[test]
    fn unexpected_characters_are_merged() {
        let (toks, diags) = lex("1 #$ é 2 @");
        assert_eq!(toks, vec![Tok::Int(1), Tok::Int(2)]);
        assert_eq!(diags.len(), 3);
        assert_eq!(diags[0].message, "unexpected characters");
        assert_eq!(diags[1].message, "unexpected character `é`");
    }
}
