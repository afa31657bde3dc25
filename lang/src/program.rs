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

    /// For each function, whether it can call itself, directly or through other functions: a
    /// run of it is bounded only by the call depth. A function that cannot runs for a bounded
    /// time apart from its loops, which a back end may use to poll for interrupts only where
    /// time can be unbounded.
    ///
    /// When some bodies were not parsed ([`Function::reused`]) their calls are unknown, so every
    /// function counts as recursive.
    pub fn recursive(&self) -> Vec<bool> {
        let n = self.functions.len();
        if self.functions.iter().any(|f| f.reused) {
            return vec![true; n];
        }
        let callees: Vec<Vec<usize>> = self
            .functions
            .iter()
            .map(|f| {
                let mut out = Vec::new();
                calls_in_block(&f.body, &mut out);
                out.sort_unstable();
                out.dedup();
                out
            })
            .collect();
        // Recursive: in a strongly connected component of more than one function, or calling
        // itself. Tarjan's algorithm, iterative so that long call chains cannot overflow the
        // stack; linear in functions and calls.
        const UNVISITED: usize = usize::MAX;
        let mut index = vec![UNVISITED; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut recursive: Vec<bool> = (0..n).map(|f| callees[f].contains(&f)).collect();
        let mut next = 0;
        for root in 0..n {
            if index[root] != UNVISITED {
                continue;
            }
            // (function, how many of its callees were visited)
            let mut path = vec![(root, 0usize)];
            index[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&mut (f, ref mut done)) = path.last_mut() {
                if let Some(&g) = callees[f].get(*done) {
                    *done += 1;
                    if index[g] == UNVISITED {
                        index[g] = next;
                        low[g] = next;
                        next += 1;
                        stack.push(g);
                        on_stack[g] = true;
                        path.push((g, 0));
                    } else if on_stack[g] {
                        low[f] = low[f].min(index[g]);
                    }
                    continue;
                }
                path.pop();
                if let Some(&(parent, _)) = path.last() {
                    low[parent] = low[parent].min(low[f]);
                }
                if low[f] == index[f] {
                    let mut component = Vec::new();
                    while let Some(g) = stack.pop() {
                        on_stack[g] = false;
                        component.push(g);
                        if g == f {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        for g in component {
                            recursive[g] = true;
                        }
                    }
                }
            }
        }
        recursive
    }
}

/// Appends the script functions `block` calls.
fn calls_in_block(block: &Block, out: &mut Vec<usize>) {
    for stmt in block {
        match stmt {
            Stmt::Let { init, .. } => calls_in_expr(init, out),
            Stmt::LetZeroedArray { .. }
            | Stmt::LetCopyArray { .. }
            | Stmt::CopyArray { .. }
            | Stmt::Break
            | Stmt::Continue => {}
            Stmt::Assign { place, value, .. } => {
                if let Place::Index { index, .. } = place {
                    calls_in_expr(index, out);
                }
                calls_in_expr(value, out);
            }
            Stmt::Call(call) => calls_in_call(call, out),
            Stmt::Print(arg) => {
                if let PrintArg::Value(e) = arg {
                    calls_in_expr(e, out);
                }
            }
            Stmt::If {
                cond,
                then_block,
                else_block,
            } => {
                calls_in_expr(cond, out);
                calls_in_block(then_block, out);
                calls_in_block(else_block, out);
            }
            Stmt::While { cond, body, .. } => {
                calls_in_expr(cond, out);
                calls_in_block(body, out);
            }
            Stmt::For {
                start, end, body, ..
            } => {
                calls_in_expr(start, out);
                calls_in_expr(end, out);
                calls_in_block(body, out);
            }
            Stmt::Block(b) => calls_in_block(b, out),
            Stmt::Return(e) => {
                if let Some(e) = e {
                    calls_in_expr(e, out);
                }
            }
        }
    }
}

fn calls_in_call(call: &Call, out: &mut Vec<usize>) {
    if let Callee::Function(id) = call.callee {
        out.push(id.0 as usize);
    }
    for a in &call.args {
        calls_in_expr(a, out);
    }
}

fn calls_in_expr(e: &Expr, out: &mut Vec<usize>) {
    match &e.kind {
        ExprKind::Const(_) | ExprKind::Local(_) | ExprKind::Global(_) => {}
        ExprKind::Index { index, .. } => calls_in_expr(index, out),
        ExprKind::Unary { operand, .. } | ExprKind::Cast(operand) => calls_in_expr(operand, out),
        ExprKind::Binary { lhs, rhs, .. } | ExprKind::And(lhs, rhs) | ExprKind::Or(lhs, rhs) => {
            calls_in_expr(lhs, out);
            calls_in_expr(rhs, out);
        }
        ExprKind::Call(call) => calls_in_call(call, out),
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
    /// The span of the function's name in its `fn` item; the location of an `interrupted` error
    /// caught at function entry.
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

#[cfg(test)]
mod tests {
    use crate::{CheckOptions, SourceFile, check, check_parsed, parse};

    const CALLS: &str = "
        fn leaf() -> int { return 1; }
        fn chain() -> int { return leaf() + leaf(); }
        fn ping(n: int) -> int { if n > 0 { return pong(n - 1); } return leaf(); }
        fn pong(n: int) -> int { return ping(n) + 1; }
        fn own(n: int) -> int { if n > 0 { return own(n - 1); } return 0; }
        fn calls_cycle() -> int { return ping(3); }
    ";

    #[test]
    fn recursion_through_any_number_of_calls_is_found() {
        let file = SourceFile::new("calls.kl", CALLS);
        let program = check(&file, &[], &CheckOptions::default()).unwrap();
        let recursive: Vec<(&str, bool)> = program
            .functions
            .iter()
            .map(|f| f.name.as_str())
            .zip(program.recursive())
            .collect();
        assert_eq!(
            recursive,
            [
                ("leaf", false),
                ("chain", false),
                ("ping", true),
                ("pong", true),
                ("own", true),
                ("calls_cycle", false),
            ]
        );
    }

    #[test]
    fn unparsed_bodies_make_every_function_count_as_recursive() {
        let file = SourceFile::new("calls.kl", CALLS);
        let parsed = parse(&file, &|name, _| name == "leaf");
        let program = check_parsed(parsed, &[], &CheckOptions::default()).unwrap();
        assert!(program.recursive().iter().all(|&r| r));
    }

    #[test]
    fn a_long_call_chain_does_not_overflow_the_analysis() {
        let mut source = String::from("fn f0() {}\n");
        for i in 1..20_000 {
            source.push_str(&format!("fn f{i}() {{ f{}(); }}\n", i - 1));
        }
        source.push_str("fn f0_again() { f19999(); }\n");
        let file = SourceFile::new("chain.kl", source);
        let program = check(&file, &[], &CheckOptions::default()).unwrap();
        assert!(program.recursive().iter().all(|&r| !r));
    }
}
