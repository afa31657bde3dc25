//! The syntax tree the parser builds and the checker reads.
//!
//! It mirrors the source: names are unresolved text, types are as written, parentheses are gone
//! (only their span survives). Where the parser found an error it leaves an `Error` node it has
//! already reported, so the checker stays silent about it. Depth is bounded by
//! `parser::MAX_NESTING`, so recursive walks and the recursive drop are safe.

use crate::program::{BinOp, Type, UnOp};
use crate::source::Span;

#[derive(Debug, Default)]
pub struct Module {
    pub items: Vec<Item>,
}

#[derive(Debug)]
pub enum Item {
    Fn(FnItem),
    Global(VarItem),
    Const(VarItem),
}

#[derive(Clone, Debug)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

#[derive(Debug)]
pub struct FnItem {
    pub name: Name,
    pub params: Vec<Param>,
    pub ret: Option<TypeExpr>,
    /// Empty when the body was [`reused`](FnItem::reused).
    pub body: Block,
    /// The whole item, from `fn` through the `}` closing the body.
    pub item: Span,
    /// The header had a syntax error (or the body was cut off): the body is not type-checked,
    /// because names and types in it would give follow-on errors.
    pub broken: bool,
    /// The body had a syntax error: skip the missing-return analysis, which would be misled by
    /// the statements recovery dropped.
    pub body_had_errors: bool,
    /// The caller of the parser already has this function's code, and the text of the item is
    /// the same as when it got it: the body was skipped, not parsed.
    pub reused: bool,
}

#[derive(Debug)]
pub struct Param {
    pub name: Name,
    pub ty: TypeExpr,
}

/// A `global` or `const` item.
#[derive(Debug)]
pub struct VarItem {
    pub name: Name,
    pub ty: TypeExpr,
    pub init: Option<Expr>,
    /// The whole item, from its keyword through its `;`.
    pub item: Span,
}

#[derive(Debug)]
pub struct TypeExpr {
    pub kind: TypeKind,
    pub span: Span,
}

#[derive(Debug)]
pub enum TypeKind {
    Scalar(Type),
    /// `[elem; len]`; the checker requires `len` to be an int literal or an int const.
    Array(Type, Box<Expr>),
    /// Already reported.
    Error,
}

#[derive(Debug)]
pub struct Block {
    pub stmts: Vec<Stmt>,
}

#[derive(Debug)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug)]
pub enum StmtKind {
    Let {
        name: Name,
        ty: Option<TypeExpr>,
        init: Option<Expr>,
    },
    /// `target = value` or, with `op`, `target op= value`; `op_span` is the operator.
    Assign {
        target: Expr,
        op: Option<BinOp>,
        op_span: Span,
        value: Expr,
    },
    /// An expression statement; only a call is valid.
    Expr(Expr),
    If {
        cond: Expr,
        then_block: Block,
        else_branch: Option<Else>,
    },
    While {
        cond: Expr,
        body: Block,
        keyword: Span,
    },
    For {
        var: Name,
        start: Expr,
        end: Expr,
        body: Block,
        keyword: Span,
    },
    Block(Block),
    Break,
    Continue,
    Return(Option<Expr>),
}

#[derive(Debug)]
pub enum Else {
    Block(Block),
    /// `else if ...`: a statement that is always [`StmtKind::If`].
    If(Box<Stmt>),
}

#[derive(Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// The height of this subtree (a leaf is 1); the parser bounds it.
    pub height: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Op(BinOp),
    And,
    Or,
}

#[derive(Debug)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A string literal with escapes applied.
    Str(String),
    Name(String),
    Call {
        name: Name,
        args: Vec<Expr>,
    },
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    Unary {
        op: UnOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        op_span: Span,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Cast {
        expr: Box<Expr>,
        ty: Type,
    },
    /// Already reported.
    Error,
}
