//! The checked program: what the front end hands to every back end.
//!
//! A [`Program`] exists only for a module without compile errors. Every name is resolved (locals
//! to [`LocalId`]s, items to indexes), every expression carries its type, consts are folded into
//! literals and `len(a)` into its value. The JIT lowers it to Cranelift IR and the reference
//! interpreter walks it; both must give the same results, so the semantics of each node are
//! stated here once.
//!
//! Nesting depth is bounded by the parser (see `parser::MAX_NESTING`), so back ends may recurse
//! over statements and expressions.

use crate::source::{SourceFile, Span};
use std::sync::Arc;

/// A scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Int,
    Float,
    Bool,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Int => "int",
            Type::Float => "float",
            Type::Bool => "bool",
        }
    }
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[elem; len]`, with `1 <= len <= MAX_ARRAY_LEN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArrayType {
    pub elem: Type,
    pub len: u32,
}

/// The largest array length the language allows (2^24).
pub const MAX_ARRAY_LEN: u32 = 1 << 24;

/// The type of a variable (local or global): a scalar or an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VarType {
    Scalar(Type),
    Array(ArrayType),
}

impl std::fmt::Display for VarType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VarType::Scalar(t) => write!(f, "{t}"),
            VarType::Array(a) => write!(f, "[{}; {}]", a.elem, a.len),
        }
    }
}

/// A scalar value known at compile time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Const {
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Const {
    pub fn ty(self) -> Type {
        match self {
            Const::Int(_) => Type::Int,
            Const::Float(_) => Type::Float,
            Const::Bool(_) => Type::Bool,
        }
    }
}

/// The signature of a script or host function: scalar parameters, and a scalar result or none.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    pub params: Vec<Type>,
    pub ret: Option<Type>,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fn(")?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{p}")?;
        }
        write!(f, ")")?;
        if let Some(r) = self.ret {
            write!(f, " -> {r}")?;
        }
        Ok(())
    }
}

/// A host function the embedder offers to scripts, as the checker needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostSignature {
    pub name: String,
    pub sig: Signature,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FuncId(pub u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GlobalId(pub u32);
/// Index into the host-signature list the module was checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(pub u32);
/// Index into [`Function::locals`]; parameters are locals `0..params.len()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalId(pub u32);

/// A checked module.
#[derive(Debug)]
pub struct Program {
    pub file: Arc<SourceFile>,
    pub globals: Vec<Global>,
    pub functions: Vec<Function>,
    /// What the module's function bodies can see of its items; see [`Interface`].
    pub interface: Interface,
}

impl Program {
    pub fn function(&self, id: FuncId) -> &Function {
        &self.functions[id.0 as usize]
    }

    pub fn global(&self, id: GlobalId) -> &Global {
        &self.globals[id.0 as usize]
    }

    pub fn function_named(&self, name: &str) -> Option<FuncId> {
        self.functions
            .iter()
            .position(|f| f.name == name)
            .map(|i| FuncId(i as u32))
    }
}

#[derive(Debug)]
pub struct Global {
    pub name: String,
    pub ty: VarType,
    /// The initial value of a scalar global; `None` for an array (zeroed).
    pub init: Option<Const>,
    pub span: Span,
}

#[derive(Debug)]
pub struct Function {
    pub name: String,
    /// The span of the function's name in its `fn` item; the location of an error raised on
    /// entry to a function the host called (a stack overflow or an interrupt), which has no
    /// call site.
    pub span: Span,
    /// The whole item, from `fn` through the `}` closing its body.
    pub item: Span,
    pub sig: Signature,
    /// Every variable of the body, parameters first. A `let` that shadows creates a new local.
    /// Only the parameters when the body was [`reused`](Function::reused).
    pub locals: Vec<Local>,
    /// Empty when the body was [`reused`](Function::reused).
    pub body: Block,
    /// The caller of [`crate::parse`] said it already has this function's code, compiled from
    /// the same item text: the body was neither parsed nor checked, so `body` is empty and
    /// `locals` holds only the parameters. A back end must take the function's code from where
    /// it got it before; the reference interpreter cannot run such a function.
    pub reused: bool,
}

/// Everything the meaning of a function body depends on besides its own text (and the host
/// functions the module is checked against): each item's name, and what a body can see of it.
/// That is a function's signature, a global's type (not its initializer, which only sets the
/// starting value) and a const's value, which bodies fold in. Items are sorted by name, so
/// moving an item or editing any function body leaves the interface equal.
///
/// Two programs with equal interfaces, checked against the same host functions, give the same
/// meaning to the same function text: what makes reusing a body compiled for one of them in
/// the other sound. Item ids ([`FuncId`], [`GlobalId`]) follow the order of the file and are
/// not part of it: reused code must be linked by name.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Interface {
    /// Sorted by name; names are unique.
    pub items: Vec<(String, ItemInterface)>,
}

/// What a function body can see of one item.
#[derive(Clone, Debug)]
pub enum ItemInterface {
    /// A function: how a body calls it.
    Function(Signature),
    /// A global: its type, which a body reads and writes it at; its initializer is left out.
    Global(VarType),
    /// A const: the value bodies fold in (its type is the value's).
    Const(Const),
}

impl PartialEq for ItemInterface {
    /// Consts compare exactly: floats by their bits, so `NaN` equals itself and `-0.0` differs
    /// from `0.0` (each folds into a body differently).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ItemInterface::Function(a), ItemInterface::Function(b)) => a == b,
            (ItemInterface::Global(a), ItemInterface::Global(b)) => a == b,
            (ItemInterface::Const(Const::Float(a)), ItemInterface::Const(Const::Float(b))) => {
                a.to_bits() == b.to_bits()
            }
            (ItemInterface::Const(a), ItemInterface::Const(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for ItemInterface {}

#[derive(Debug)]
pub struct Local {
    pub name: String,
    pub ty: VarType,
}

pub type Block = Vec<Stmt>;

#[derive(Debug)]
pub enum Stmt {
    /// `let x = e;` / `let x: T = e;` for a scalar.
    Let {
        local: LocalId,
        init: Expr,
    },
    /// `let a: [T; N];`: the array is zeroed every time the statement runs.
    LetZeroedArray {
        local: LocalId,
    },
    /// `let b = a;` (or `b = a;` as [`Stmt::CopyArray`]): copies every element.
    LetCopyArray {
        local: LocalId,
        src: ArrayRef,
    },
    /// `dst = src;` for arrays of the same type. Copying an array onto itself is a no-op.
    CopyArray {
        dst: ArrayRef,
        src: ArrayRef,
    },
    /// `place = value;` or, with `op`, `place op= value`. The index of an indexed place is
    /// evaluated first (and bounds-checked only when the store happens, after `value`), then
    /// `value`; a compound assignment then reads the place, combines with `op` and stores.
    /// `span` is the location of a runtime error raised by `op` (division by zero).
    Assign {
        place: Place,
        op: Option<BinOp>,
        value: Expr,
        span: Span,
    },
    /// A call whose result, if any, is discarded.
    Call(Call),
    Print(PrintArg),
    If {
        cond: Expr,
        then_block: Block,
        else_block: Block,
    },
    /// `span` (the `while` keyword) is where an `interrupted` error at the back-edge points.
    While {
        cond: Expr,
        body: Block,
        span: Span,
    },
    /// `for var in start..end { body }`: `start` then `end` are evaluated once; `var` takes each
    /// value of `start..end` in order (none when `start >= end`).
    For {
        var: LocalId,
        start: Expr,
        end: Expr,
        body: Block,
        span: Span,
    },
    Block(Block),
    Break,
    Continue,
    Return(Option<Expr>),
}

/// An array variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrayRef {
    Local(LocalId),
    Global(GlobalId),
}

/// What an assignment stores into.
#[derive(Debug)]
pub enum Place {
    Local(LocalId),
    Global(GlobalId),
    /// `array[index]`; `span` covers `array[index]` and locates `index out of bounds`.
    Index {
        array: ArrayRef,
        index: Box<Expr>,
        span: Span,
    },
}

#[derive(Debug)]
pub enum PrintArg {
    Value(Expr),
    /// A string literal with its escapes already applied.
    Str(String),
}

#[derive(Debug)]
pub struct Call {
    pub callee: Callee,
    pub args: Vec<Expr>,
    /// The whole call; locates `stack overflow` and `host error`.
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callee {
    Function(FuncId),
    Host(HostId),
    Builtin(Builtin),
}

/// Builtins that return a value (`print` is [`Stmt::Print`], `len` is folded to a constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    Sqrt,
    Sin,
    Cos,
    Tan,
    Exp,
    Ln,
    Floor,
    Ceil,
    /// `f64::powf`.
    Pow,
    /// Wrapping: `abs(i64::MIN) == i64::MIN`.
    AbsInt,
    AbsFloat,
    MinInt,
    MaxInt,
    /// NaN if either operand is NaN; `-0.0 < 0.0`.
    MinFloat,
    /// NaN if either operand is NaN; `-0.0 < 0.0`.
    MaxFloat,
}

#[derive(Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: Type,
    pub span: Span,
}

#[derive(Debug)]
pub enum ExprKind {
    Const(Const),
    Local(LocalId),
    Global(GlobalId),
    /// `array[index]`; an index outside `0..len` is `index out of bounds` at `Expr::span`.
    Index {
        array: ArrayRef,
        index: Box<Expr>,
    },
    Unary {
        op: UnOp,
        operand: Box<Expr>,
    },
    /// Both operands have the same type (the operand type), evaluated left then right. For
    /// comparisons `Expr::ty` is `Bool`. `op_span` locates `division by zero`.
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        op_span: Span,
    },
    /// Short-circuit `&&`.
    And(Box<Expr>, Box<Expr>),
    /// Short-circuit `||`.
    Or(Box<Expr>, Box<Expr>),
    /// `expr as ty`, where `expr.ty != ty` (an identity cast is removed by the checker):
    /// int→float rounds to nearest; float→int truncates, saturates, NaN→0; bool→int is 0/1.
    Cast(Box<Expr>),
    Call(Call),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    /// Wrapping on int, IEEE negation on float.
    Neg,
    /// Logical not on bool, bitwise not on int.
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// Wrapping on int.
    Add,
    Sub,
    Mul,
    /// Int: truncates toward zero; zero divisor is `division by zero`; `MIN / -1 == MIN`.
    /// Float: IEEE.
    Div,
    /// Int: sign of the dividend; zero divisor is `division by zero`; `MIN % -1 == 0`.
    /// Float: C's `fmod`.
    Rem,
    BitAnd,
    BitOr,
    BitXor,
    /// Shift amount taken modulo 64.
    Shl,
    /// Arithmetic; shift amount taken modulo 64.
    Shr,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }
}

/// The kinds of runtime error (LANGUAGE.md section 8), shared by every back end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrapKind {
    DivisionByZero,
    IndexOutOfBounds,
    StackOverflow,
    Interrupted,
    HostError,
}

impl TrapKind {
    /// The text users see after `error: `.
    pub fn message(self) -> &'static str {
        match self {
            TrapKind::DivisionByZero => "division by zero",
            TrapKind::IndexOutOfBounds => "index out of bounds",
            TrapKind::StackOverflow => "stack overflow",
            TrapKind::Interrupted => "interrupted",
            TrapKind::HostError => "host error",
        }
    }
}

impl std::fmt::Display for TrapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}
