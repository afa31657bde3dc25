//! The tree-walking reference interpreter: the test oracle the JIT is compared against.
//!
//! It walks a checked [`Program`] directly, one Rust function per node kind, and favours being
//! obviously correct over being fast: every rule of the semantics documented on the nodes of
//! [`crate::program`] appears here once, in plain Rust, next to a comment when it is subtle.
//!
//! Each Kiln call recurses in Rust (a few Rust frames per Kiln frame, plus one per nested
//! statement and expression), so running a script close to the default depth limit of 10,000
//! needs a big thread stack: tests that recurse deeply should run the interpreter on a thread
//! spawned with e.g. `std::thread::Builder::new().stack_size(512 << 20)` (virtual memory only).
//!
//! The interpreter has no interrupts; everything else in LANGUAGE.md section 8 is reported as an
//! [`InterpError`] with the same kind, function and span the JIT reports.

use crate::consts;
use crate::program::{
    ArrayRef, ArrayType, BinOp, Block, Builtin, Call, Callee, Const, Expr, ExprKind, FuncId,
    Function, GlobalId, HostId, Place, PrintArg, Program, Stmt, TrapKind, Type, VarType,
};
use crate::source::Span;
use std::io::Write;

/// The embedder's host functions, as the interpreter calls them.
pub trait Host {
    /// Calls host function `id` (an index into the host signatures the program was checked
    /// against) with arguments of its signature's types. Returns its result (`None` for a
    /// function without one) or the text of a `host error`.
    fn call(&mut self, id: HostId, args: &[Const]) -> Result<Option<Const>, String>;
}

/// The host of a program checked without host functions: scripts can never call it, so a call
/// reaching it is reported as a host error rather than trusted.
pub struct NoHost;

impl Host for NoHost {
    fn call(&mut self, id: HostId, _args: &[Const]) -> Result<Option<Const>, String> {
        Err(format!("no host function #{} is registered", id.0))
    }
}

/// Resource limits of one interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The deepest script call stack allowed; the call from the host counts as depth 1, so a
    /// call from depth `d` fails with `stack overflow` when `d + 1 > max_call_depth`.
    pub max_call_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_call_depth: 10_000,
        }
    }
}

/// A runtime error (LANGUAGE.md section 8), located like the JIT locates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterpError {
    pub kind: TrapKind,
    /// The script function executing the operation that failed (for a stack overflow, the caller
    /// whose call went past the limit).
    pub function: FuncId,
    /// The failing operation: the operator of a division, the `a[i]` of an index, the call for a
    /// stack overflow or host error, the whole assignment for a compound `/=` or `%=`.
    pub span: Span,
    /// The host function's error text, for [`TrapKind::HostError`].
    pub message: Option<String>,
}

impl std::fmt::Display for InterpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind.message())?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InterpError {}

impl InterpError {
    /// The error as `kiln run` reports it: the kind, then `FILE:LINE:COL` and the function.
    pub fn describe(&self, program: &Program) -> String {
        format!(
            "{self}\n  at {} in fn {}",
            program.file.location(self.span.start),
            program.function(self.function).name
        )
    }
}

/// The elements of an array, stored unboxed per element type (a `[float; 2^24]` is 128 MiB,
/// not twice that).
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayValue {
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
}

impl ArrayValue {
    /// `len` zeroes of type `elem` (`0`, `0.0` or `false`).
    pub fn zeroed(ty: ArrayType) -> ArrayValue {
        let len = ty.len as usize;
        match ty.elem {
            Type::Int => ArrayValue::Int(vec![0; len]),
            Type::Float => ArrayValue::Float(vec![0.0; len]),
            Type::Bool => ArrayValue::Bool(vec![false; len]),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ArrayValue::Int(v) => v.len(),
            ArrayValue::Float(v) => v.len(),
            ArrayValue::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element at `i`; panics when `i` is out of range (callers check bounds first).
    pub fn get(&self, i: usize) -> Const {
        match self {
            ArrayValue::Int(v) => Const::Int(v[i]),
            ArrayValue::Float(v) => Const::Float(v[i]),
            ArrayValue::Bool(v) => Const::Bool(v[i]),
        }
    }

    fn set(&mut self, i: usize, value: Const) {
        match (self, value) {
            (ArrayValue::Int(v), Const::Int(x)) => v[i] = x,
            (ArrayValue::Float(v), Const::Float(x)) => v[i] = x,
            (ArrayValue::Bool(v), Const::Bool(x)) => v[i] = x,
            (a, x) => ill_typed(&format!("storing {x:?} into {a:?}")),
        }
    }

    /// Zeroes every element, keeping the length.
    fn zero(&mut self) {
        match self {
            ArrayValue::Int(v) => v.fill(0),
            ArrayValue::Float(v) => v.fill(0.0),
            ArrayValue::Bool(v) => v.fill(false),
        }
    }
}

/// The current value of a variable.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Const),
    Array(ArrayValue),
}

impl Value {
    /// The value a variable of type `ty` has before anything is stored: zero, or a zeroed array.
    fn zero(ty: VarType) -> Value {
        match ty {
            VarType::Scalar(t) => Value::Scalar(zero_of(t)),
            VarType::Array(a) => Value::Array(ArrayValue::zeroed(a)),
        }
    }

    /// The scalar, for tests that read a scalar global.
    pub fn as_scalar(&self) -> Option<Const> {
        match self {
            Value::Scalar(c) => Some(*c),
            Value::Array(_) => None,
        }
    }

    /// The array, for tests that read a global array.
    pub fn as_array(&self) -> Option<&ArrayValue> {
        match self {
            Value::Scalar(_) => None,
            Value::Array(a) => Some(a),
        }
    }
}

fn zero_of(t: Type) -> Const {
    match t {
        Type::Int => Const::Int(0),
        Type::Float => Const::Float(0.0),
        Type::Bool => Const::Bool(false),
    }
}

/// The checker guarantees well-typed programs; reaching this is a bug in the checker or in a
/// hand-built test program, never a script error.
#[cold]
fn ill_typed(what: &str) -> ! {
    panic!("ill-typed program reached the interpreter: {what}")
}

/// The reference interpreter for one program: the program and the current values of its
/// globals, which persist across [`Interpreter::call`]s (also after a runtime error).
pub struct Interpreter<'p> {
    program: &'p Program,
    limits: Limits,
    globals: Vec<Value>,
    /// The number of script frames currently active.
    depth: u32,
}

/// One active script call: which function runs and its locals (parameters first).
struct Frame {
    func: FuncId,
    locals: Vec<Value>,
}

/// What a statement did to the control flow of its enclosing block.
enum Flow {
    Next,
    Break,
    Continue,
    Return(Option<Const>),
}

/// The outside world of one [`Interpreter::call`].
struct Io<'a> {
    host: &'a mut dyn Host,
    out: &'a mut dyn Write,
}

type Outcome<T> = Result<T, InterpError>;

impl<'p> Interpreter<'p> {
    /// Scalar globals start at their initializers, global arrays zeroed.
    pub fn new(program: &'p Program, limits: Limits) -> Self {
        let globals = program
            .globals
            .iter()
            .map(|g| match (g.ty, g.init) {
                (VarType::Scalar(_), Some(init)) => Value::Scalar(init),
                (ty, _) => Value::zero(ty),
            })
            .collect();
        Interpreter {
            program,
            limits,
            globals,
            depth: 0,
        }
    }

    pub fn program(&self) -> &'p Program {
        self.program
    }

    /// The current value of a global.
    pub fn global(&self, id: GlobalId) -> &Value {
        &self.globals[id.0 as usize]
    }

    /// The current value of the global called `name`, if there is one.
    pub fn global_named(&self, name: &str) -> Option<&Value> {
        let i = self.program.globals.iter().position(|g| g.name == name)?;
        Some(&self.globals[i])
    }

    /// Calls script function `func` from the host (depth 1) and returns its result. `print`
    /// output goes to `out` in order; a failed write is ignored, because a closed output is not
    /// one of the script's runtime errors.
    ///
    /// # Panics
    ///
    /// When `args` do not match the function's parameter types, or the call reaches a function
    /// whose body was [`reused`](Function::reused) (a program checked with reused bodies is only
    /// for back ends that kept their code): both are the embedder's bugs.
    pub fn call(
        &mut self,
        func: FuncId,
        args: &[Const],
        host: &mut dyn Host,
        out: &mut dyn Write,
    ) -> Outcome<Option<Const>> {
        let f = self.program.function(func);
        let arg_types: Vec<Type> = args.iter().map(|a| a.ty()).collect();
        assert_eq!(
            arg_types, f.sig.params,
            "arguments of the wrong types for fn {}",
            f.name
        );
        if self.limits.max_call_depth == 0 {
            // No call at all is allowed; the only location there is, is the function itself.
            return Err(InterpError {
                kind: TrapKind::StackOverflow,
                function: func,
                span: f.span,
                message: None,
            });
        }
        self.depth = 0;
        let mut io = Io { host, out };
        let result = self.run_function(func, args.to_vec(), &mut io);
        self.depth = 0;
        result
    }

    /// Runs a function body in a new frame at depth `self.depth + 1`; the caller has checked the
    /// depth limit.
    fn run_function(
        &mut self,
        func: FuncId,
        args: Vec<Const>,
        io: &mut Io,
    ) -> Outcome<Option<Const>> {
        let f: &'p Function = self.program.function(func);
        assert!(
            !f.reused,
            "fn {} was reused from earlier code: its body was never parsed, so it cannot be interpreted",
            f.name
        );
        // Array locals get their storage when their `let` runs, so a deep recursion through a
        // function with a big array that is not reached costs nothing.
        let mut locals: Vec<Value> = f
            .locals
            .iter()
            .map(|l| match l.ty {
                VarType::Scalar(t) => Value::Scalar(zero_of(t)),
                VarType::Array(_) => Value::Array(ArrayValue::Int(Vec::new())),
            })
            .collect();
        for (slot, arg) in locals.iter_mut().zip(args) {
            *slot = Value::Scalar(arg);
        }
        let mut frame = Frame { func, locals };
        self.depth += 1;
        let flow = self.exec_block(&f.body, &mut frame, io);
        self.depth -= 1;
        match flow? {
            Flow::Return(value) => Ok(value),
            Flow::Next if f.sig.ret.is_none() => Ok(None),
            Flow::Next => ill_typed(&format!("fn {} falls off its end", f.name)),
            Flow::Break | Flow::Continue => ill_typed("break or continue outside a loop"),
        }
    }

    fn exec_block(&mut self, block: &'p Block, frame: &mut Frame, io: &mut Io) -> Outcome<Flow> {
        for stmt in block {
            match self.exec_stmt(stmt, frame, io)? {
                Flow::Next => {}
                flow => return Ok(flow),
            }
        }
        Ok(Flow::Next)
    }

    fn exec_stmt(&mut self, stmt: &'p Stmt, frame: &mut Frame, io: &mut Io) -> Outcome<Flow> {
        match stmt {
            Stmt::Let { local, init } => {
                let v = self.eval(init, frame, io)?;
                frame.locals[local.0 as usize] = Value::Scalar(v);
            }
            Stmt::LetZeroedArray { local } => {
                let VarType::Array(ty) =
                    self.program.function(frame.func).locals[local.0 as usize].ty
                else {
                    ill_typed("LetZeroedArray of a scalar local")
                };
                match &mut frame.locals[local.0 as usize] {
                    // Reuse the storage when the statement runs again (e.g. in a loop).
                    Value::Array(a) if a.len() == ty.len as usize => a.zero(),
                    slot => *slot = Value::Array(ArrayValue::zeroed(ty)),
                }
            }
            Stmt::LetCopyArray { local, src } => {
                let copy = self.array(*src, frame).clone();
                frame.locals[local.0 as usize] = Value::Array(copy);
            }
            Stmt::CopyArray { dst, src } => {
                // Cloning first makes copying an array onto itself trivially a no-op.
                let copy = self.array(*src, frame).clone();
                let dst = self.array_mut(*dst, frame);
                assert_eq!(
                    dst.len(),
                    copy.len(),
                    "array copy between different lengths"
                );
                *dst = copy;
            }
            Stmt::Assign {
                place,
                op,
                value,
                span,
            } => self.exec_assign(place, *op, value, *span, frame, io)?,
            Stmt::Call(call) => {
                self.eval_call(call, frame, io)?;
            }
            Stmt::Print(arg) => {
                let text = match arg {
                    PrintArg::Str(s) => s.clone(),
                    PrintArg::Value(e) => format_value(self.eval(e, frame, io)?),
                };
                // See `call`: output failures are not script errors.
                let _ = writeln!(io.out, "{text}");
            }
            Stmt::If {
                cond,
                then_block,
                else_block,
            } => {
                let taken = if self.eval_bool(cond, frame, io)? {
                    then_block
                } else {
                    else_block
                };
                return self.exec_block(taken, frame, io);
            }
            Stmt::While { cond, body, .. } => {
                while self.eval_bool(cond, frame, io)? {
                    match self.exec_block(body, frame, io)? {
                        Flow::Next | Flow::Continue => {}
                        Flow::Break => break,
                        ret @ Flow::Return(_) => return Ok(ret),
                    }
                }
            }
            Stmt::For {
                var,
                start,
                end,
                body,
                ..
            } => {
                let start = self.eval_int(start, frame, io)?;
                let end = self.eval_int(end, frame, io)?;
                // `i < end` before every increment, so `i + 1` never overflows.
                let mut i = start;
                while i < end {
                    frame.locals[var.0 as usize] = Value::Scalar(Const::Int(i));
                    match self.exec_block(body, frame, io)? {
                        Flow::Next | Flow::Continue => {}
                        Flow::Break => break,
                        ret @ Flow::Return(_) => return Ok(ret),
                    }
                    i += 1;
                }
            }
            Stmt::Block(block) => return self.exec_block(block, frame, io),
            Stmt::Break => return Ok(Flow::Break),
            Stmt::Continue => return Ok(Flow::Continue),
            Stmt::Return(value) => {
                let v = match value {
                    Some(e) => Some(self.eval(e, frame, io)?),
                    None => None,
                };
                return Ok(Flow::Return(v));
            }
        }
        Ok(Flow::Next)
    }

    /// `place = value` / `place op= value`: the place's index first, then the value, then the
    /// bounds check at the access, then (compound) read, combine and store.
    fn exec_assign(
        &mut self,
        place: &'p Place,
        op: Option<BinOp>,
        value: &'p Expr,
        span: Span,
        frame: &mut Frame,
        io: &mut Io,
    ) -> Outcome<()> {
        match place {
            Place::Local(id) => {
                let v = self.eval(value, frame, io)?;
                let slot = &mut frame.locals[id.0 as usize];
                let new = match op {
                    Some(op) => binary(op, scalar(slot), v, span, frame.func)?,
                    None => v,
                };
                *slot = Value::Scalar(new);
            }
            Place::Global(id) => {
                let v = self.eval(value, frame, io)?;
                // Read after evaluating `value`: a call in it may have changed the global.
                let slot = &mut self.globals[id.0 as usize];
                let new = match op {
                    Some(op) => binary(op, scalar(slot), v, span, frame.func)?,
                    None => v,
                };
                *slot = Value::Scalar(new);
            }
            Place::Index {
                array,
                index,
                span: place_span,
            } => {
                let i = self.eval_int(index, frame, io)?;
                let v = self.eval(value, frame, io)?;
                let func = frame.func;
                let arr = self.array_mut(*array, frame);
                let i = checked_index(i, arr.len(), *place_span, func)?;
                let new = match op {
                    Some(op) => binary(op, arr.get(i), v, span, func)?,
                    None => v,
                };
                arr.set(i, new);
            }
        }
        Ok(())
    }

    fn array<'a>(&'a self, r: ArrayRef, frame: &'a Frame) -> &'a ArrayValue {
        let v = match r {
            ArrayRef::Local(id) => &frame.locals[id.0 as usize],
            ArrayRef::Global(id) => &self.globals[id.0 as usize],
        };
        match v {
            Value::Array(a) => a,
            Value::Scalar(_) => ill_typed("a scalar used as an array"),
        }
    }

    fn array_mut<'a>(&'a mut self, r: ArrayRef, frame: &'a mut Frame) -> &'a mut ArrayValue {
        let v = match r {
            ArrayRef::Local(id) => &mut frame.locals[id.0 as usize],
            ArrayRef::Global(id) => &mut self.globals[id.0 as usize],
        };
        match v {
            Value::Array(a) => a,
            Value::Scalar(_) => ill_typed("a scalar used as an array"),
        }
    }

    fn eval_bool(&mut self, e: &'p Expr, frame: &mut Frame, io: &mut Io) -> Outcome<bool> {
        match self.eval(e, frame, io)? {
            Const::Bool(b) => Ok(b),
            c => ill_typed(&format!("{c:?} where a bool is needed")),
        }
    }

    fn eval_int(&mut self, e: &'p Expr, frame: &mut Frame, io: &mut Io) -> Outcome<i64> {
        match self.eval(e, frame, io)? {
            Const::Int(i) => Ok(i),
            c => ill_typed(&format!("{c:?} where an int is needed")),
        }
    }

    fn eval(&mut self, e: &'p Expr, frame: &mut Frame, io: &mut Io) -> Outcome<Const> {
        let value = match &e.kind {
            ExprKind::Const(c) => *c,
            ExprKind::Local(id) => scalar(&frame.locals[id.0 as usize]),
            ExprKind::Global(id) => scalar(&self.globals[id.0 as usize]),
            ExprKind::Index { array, index } => {
                let i = self.eval_int(index, frame, io)?;
                let arr = self.array(*array, frame);
                let i = checked_index(i, arr.len(), e.span, frame.func)?;
                arr.get(i)
            }
            ExprKind::Unary { op, operand } => consts::unary(*op, self.eval(operand, frame, io)?),
            ExprKind::Binary {
                op,
                lhs,
                rhs,
                op_span,
            } => {
                let a = self.eval(lhs, frame, io)?;
                let b = self.eval(rhs, frame, io)?;
                binary(*op, a, b, *op_span, frame.func)?
            }
            ExprKind::And(lhs, rhs) => {
                Const::Bool(self.eval_bool(lhs, frame, io)? && self.eval_bool(rhs, frame, io)?)
            }
            ExprKind::Or(lhs, rhs) => {
                Const::Bool(self.eval_bool(lhs, frame, io)? || self.eval_bool(rhs, frame, io)?)
            }
            ExprKind::Cast(operand) => consts::cast(self.eval(operand, frame, io)?, e.ty),
            ExprKind::Call(call) => match self.eval_call(call, frame, io)? {
                Some(v) => v,
                None => ill_typed("a call without a result used as a value"),
            },
        };
        debug_assert_eq!(value.ty(), e.ty, "expression value of the wrong type");
        Ok(value)
    }

    /// Evaluates the arguments left to right, then makes the call.
    fn eval_call(
        &mut self,
        call: &'p Call,
        frame: &mut Frame,
        io: &mut Io,
    ) -> Outcome<Option<Const>> {
        let mut args = Vec::with_capacity(call.args.len());
        for a in &call.args {
            args.push(self.eval(a, frame, io)?);
        }
        match call.callee {
            Callee::Builtin(b) => Ok(Some(builtin(b, &args))),
            Callee::Host(id) => io.host.call(id, &args).map_err(|message| InterpError {
                kind: TrapKind::HostError,
                function: frame.func,
                span: call.span,
                message: Some(message),
            }),
            Callee::Function(id) => {
                // The depth check comes after the arguments, as entering the callee is what
                // would go past the limit.
                if self.depth >= self.limits.max_call_depth {
                    return Err(InterpError {
                        kind: TrapKind::StackOverflow,
                        function: frame.func,
                        span: call.span,
                        message: None,
                    });
                }
                self.run_function(id, args, io)
            }
        }
    }
}

fn scalar(v: &Value) -> Const {
    match v {
        Value::Scalar(c) => *c,
        Value::Array(_) => ill_typed("an array used as a scalar"),
    }
}

/// `i` as an index into an array of `len` elements, or `index out of bounds` at `span`.
fn checked_index(i: i64, len: usize, span: Span, function: FuncId) -> Outcome<usize> {
    match usize::try_from(i) {
        Ok(i) if i < len => Ok(i),
        _ => Err(InterpError {
            kind: TrapKind::IndexOutOfBounds,
            function,
            span,
            message: None,
        }),
    }
}

/// A binary operator (not `&&`/`||`) on two values of the same type; `span` and `function`
/// locate a division by zero. The operators' semantics are the constant folder's: one
/// implementation of LANGUAGE.md section 5 for the whole front end (the oracle's independence
/// that matters is from the JIT).
fn binary(op: BinOp, a: Const, b: Const, span: Span, function: FuncId) -> Outcome<Const> {
    consts::binary(op, a, b).ok_or(InterpError {
        kind: TrapKind::DivisionByZero,
        function,
        span,
        message: None,
    })
}

fn builtin(b: Builtin, args: &[Const]) -> Const {
    use Builtin::*;
    match (b, args) {
        (Sqrt, &[Const::Float(x)]) => Const::Float(x.sqrt()),
        (Sin, &[Const::Float(x)]) => Const::Float(x.sin()),
        (Cos, &[Const::Float(x)]) => Const::Float(x.cos()),
        (Tan, &[Const::Float(x)]) => Const::Float(x.tan()),
        (Exp, &[Const::Float(x)]) => Const::Float(x.exp()),
        (Ln, &[Const::Float(x)]) => Const::Float(x.ln()),
        (Floor, &[Const::Float(x)]) => Const::Float(x.floor()),
        (Ceil, &[Const::Float(x)]) => Const::Float(x.ceil()),
        (Pow, &[Const::Float(x), Const::Float(y)]) => Const::Float(x.powf(y)),
        (AbsInt, &[Const::Int(x)]) => Const::Int(x.wrapping_abs()),
        (AbsFloat, &[Const::Float(x)]) => Const::Float(x.abs()),
        (MinInt, &[Const::Int(x), Const::Int(y)]) => Const::Int(x.min(y)),
        (MaxInt, &[Const::Int(x), Const::Int(y)]) => Const::Int(x.max(y)),
        (MinFloat, &[Const::Float(x), Const::Float(y)]) => Const::Float(float_min(x, y)),
        (MaxFloat, &[Const::Float(x), Const::Float(y)]) => Const::Float(float_max(x, y)),
        (b, args) => ill_typed(&format!("{b:?} applied to {args:?}")),
    }
}

/// The language's float `min`: NaN if either operand is NaN, and `-0.0 < 0.0`. (Rust's
/// `f64::min` returns the other operand when one is NaN, so it is not used.)
pub fn float_min(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == y {
        // The same value, or `0.0` and `-0.0` in some order: the minimum is the negative one.
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

/// The language's float `max`: NaN if either operand is NaN, and `-0.0 < 0.0`.
pub fn float_max(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == y {
        // The same value, or `0.0` and `-0.0` in some order: the maximum is the positive one.
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// A value as `print` writes it (without the newline): ints in decimal, bools as `true`/`false`,
/// floats as Rust's `{:?}` (`1.0`, `1e16`, `-0.0`, `NaN`, `inf`).
pub fn format_value(v: Const) -> String {
    match v {
        Const::Int(x) => x.to_string(),
        Const::Float(x) => format!("{x:?}"),
        Const::Bool(b) => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    //! Hand-built programs for the subtle rules; `generate.rs` runs generated source text through
    //! the checker and this interpreter.

    use super::*;
    use crate::program::{Global, Interface, Local, LocalId, Signature};
    use crate::source::SourceFile;

    /// Every node built here gets a distinct span, so tests can tell which one an error names.
    struct Spans(u32);

    impl Spans {
        fn next(&mut self) -> Span {
            self.0 += 10;
            Span::new(self.0, self.0 + 5)
        }
    }

    fn expr(kind: ExprKind, ty: Type, sp: &mut Spans) -> Expr {
        Expr {
            kind,
            ty,
            span: sp.next(),
        }
    }

    fn lit(c: Const, sp: &mut Spans) -> Expr {
        expr(ExprKind::Const(c), c.ty(), sp)
    }

    fn int(x: i64, sp: &mut Spans) -> Expr {
        lit(Const::Int(x), sp)
    }

    fn float(x: f64, sp: &mut Spans) -> Expr {
        lit(Const::Float(x), sp)
    }

    fn bin(op: BinOp, lhs: Expr, rhs: Expr, sp: &mut Spans) -> Expr {
        let ty = if op.is_comparison() {
            Type::Bool
        } else {
            lhs.ty
        };
        let op_span = sp.next();
        expr(
            ExprKind::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                op_span,
            },
            ty,
            sp,
        )
    }

    fn call(callee: Callee, args: Vec<Expr>, sp: &mut Spans) -> Call {
        Call {
            callee,
            args,
            span: sp.next(),
        }
    }

    fn builtin_call(b: Builtin, args: Vec<Expr>, ty: Type, sp: &mut Spans) -> Expr {
        let c = call(Callee::Builtin(b), args, sp);
        expr(ExprKind::Call(c), ty, sp)
    }

    fn cast_to(e: Expr, ty: Type, sp: &mut Spans) -> Expr {
        expr(ExprKind::Cast(Box::new(e)), ty, sp)
    }

    fn local(id: u32, ty: Type, sp: &mut Spans) -> Expr {
        expr(ExprKind::Local(LocalId(id)), ty, sp)
    }

    fn func(
        name: &str,
        params: Vec<Type>,
        ret: Option<Type>,
        locals: Vec<VarType>,
        body: Block,
    ) -> Function {
        Function {
            name: name.to_string(),
            span: Span::new(0, 1),
            item: Span::new(0, 1),
            sig: Signature { params, ret },
            locals: locals
                .into_iter()
                .enumerate()
                .map(|(i, ty)| Local {
                    name: format!("l{i}"),
                    ty,
                })
                .collect(),
            body,
            reused: false,
        }
    }

    fn program(globals: Vec<Global>, functions: Vec<Function>) -> Program {
        Program {
            file: SourceFile::new("test.kl", ""),
            globals,
            functions,
            interface: Interface::default(),
        }
    }

    fn run(p: &Program, limits: Limits) -> (Result<Option<Const>, InterpError>, String) {
        let mut out = Vec::new();
        let mut interp = Interpreter::new(p, limits);
        let r = interp.call(FuncId(0), &[], &mut NoHost, &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    /// The value of `fn f() -> T { return e; }`.
    fn value_of(e: Expr) -> Result<Const, InterpError> {
        let ty = e.ty;
        let p = program(
            vec![],
            vec![func(
                "f",
                vec![],
                Some(ty),
                vec![],
                vec![Stmt::Return(Some(e))],
            )],
        );
        run(&p, Limits::default()).0.map(|v| v.unwrap())
    }

    fn int_value(e: Expr) -> i64 {
        match value_of(e) {
            Ok(Const::Int(x)) => x,
            other => panic!("expected an int, got {other:?}"),
        }
    }

    fn float_value(e: Expr) -> f64 {
        match value_of(e) {
            Ok(Const::Float(x)) => x,
            other => panic!("expected a float, got {other:?}"),
        }
    }

    fn int_op(op: BinOp, a: i64, b: i64) -> i64 {
        let sp = &mut Spans(0);
        let (a, b) = (int(a, sp), int(b, sp));
        int_value(bin(op, a, b, sp))
    }

    fn float_op(op: BinOp, a: f64, b: f64) -> f64 {
        let sp = &mut Spans(0);
        let (a, b) = (float(a, sp), float(b, sp));
        float_value(bin(op, a, b, sp))
    }

    fn float_builtin(b: Builtin, x: f64, y: f64) -> f64 {
        let sp = &mut Spans(0);
        let args = vec![float(x, sp), float(y, sp)];
        float_value(builtin_call(b, args, Type::Float, sp))
    }

    fn same_float(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }

    #[test]
    fn integer_division_truncates_and_wraps_at_min() {
        use BinOp::{Div, Rem};
        assert_eq!(int_op(Div, i64::MIN, -1), i64::MIN);
        assert_eq!(int_op(Rem, i64::MIN, -1), 0);
        assert_eq!(int_op(Div, -7, 2), -3);
        assert_eq!(int_op(Rem, -7, 2), -1);
        assert_eq!(int_op(Rem, 7, -2), 1);
        assert_eq!(int_op(BinOp::Add, i64::MAX, 1), i64::MIN);
        assert_eq!(int_op(BinOp::Mul, i64::MIN, -1), i64::MIN);
    }

    #[test]
    fn division_by_zero_points_at_the_operator() {
        for op in [BinOp::Div, BinOp::Rem] {
            let sp = &mut Spans(0);
            let (a, b) = (int(1, sp), int(0, sp));
            let e = bin(op, a, b, sp);
            let ExprKind::Binary { op_span, .. } = e.kind else {
                unreachable!()
            };
            let err = value_of(e).unwrap_err();
            assert_eq!(err.kind, TrapKind::DivisionByZero);
            assert_eq!(err.span, op_span);
            assert_eq!(err.function, FuncId(0));
        }
        // Float division by zero is IEEE, not an error.
        assert_eq!(float_op(BinOp::Div, -1.0, 0.0), f64::NEG_INFINITY);
        assert!(float_op(BinOp::Rem, 1.0, 0.0).is_nan());
    }

    #[test]
    fn float_remainder_is_fmod() {
        assert_eq!(float_op(BinOp::Rem, -7.5, 2.0), -1.5);
        assert_eq!(float_op(BinOp::Rem, 7.5, -2.0), 1.5);
        assert!(same_float(float_op(BinOp::Rem, -4.0, 2.0), -0.0));
    }

    #[test]
    fn shifts_take_the_amount_modulo_64_and_right_shift_is_arithmetic() {
        use BinOp::{Shl, Shr};
        assert_eq!(int_op(Shl, 1, 65), 2);
        assert_eq!(int_op(Shl, 1, -1), i64::MIN);
        assert_eq!(int_op(Shr, -16, 66), -4);
        assert_eq!(int_op(Shr, i64::MIN, 63), -1);
        assert_eq!(int_op(Shl, 3, 64), 3);
    }

    #[test]
    fn float_min_max_propagate_nan_and_order_signed_zeros() {
        use Builtin::{MaxFloat, MinFloat};
        assert!(float_builtin(MinFloat, f64::NAN, 1.0).is_nan());
        assert!(float_builtin(MinFloat, 1.0, f64::NAN).is_nan());
        assert!(float_builtin(MaxFloat, f64::NAN, 1.0).is_nan());
        assert!(float_builtin(MaxFloat, 1.0, f64::NAN).is_nan());
        for (a, b) in [(0.0, -0.0), (-0.0, 0.0)] {
            assert!(same_float(float_builtin(MinFloat, a, b), -0.0));
            assert!(same_float(float_builtin(MaxFloat, a, b), 0.0));
        }
        assert_eq!(float_builtin(MinFloat, 2.0, -3.0), -3.0);
        assert_eq!(float_builtin(MaxFloat, 2.0, -3.0), 2.0);
        assert_eq!(float_builtin(MaxFloat, f64::NEG_INFINITY, -3.0), -3.0);
    }

    #[test]
    fn abs_of_min_wraps() {
        let sp = &mut Spans(0);
        let args = vec![int(i64::MIN, sp)];
        assert_eq!(
            int_value(builtin_call(Builtin::AbsInt, args, Type::Int, sp)),
            i64::MIN
        );
        let sp = &mut Spans(0);
        let args = vec![float(-0.0, sp)];
        let v = float_value(builtin_call(Builtin::AbsFloat, args, Type::Float, sp));
        assert!(same_float(v, 0.0));
    }

    #[test]
    fn casts_round_truncate_and_saturate() {
        let to_int = |x: f64| {
            let sp = &mut Spans(0);
            let e = float(x, sp);
            int_value(cast_to(e, Type::Int, sp))
        };
        assert_eq!(to_int(1e300), i64::MAX);
        assert_eq!(to_int(f64::INFINITY), i64::MAX);
        assert_eq!(to_int(f64::NEG_INFINITY), i64::MIN);
        assert_eq!(to_int(f64::NAN), 0);
        assert_eq!(to_int(-2.7), -2);
        assert_eq!(to_int(2.7), 2);
        let to_float = |x: i64| {
            let sp = &mut Spans(0);
            let e = int(x, sp);
            float_value(cast_to(e, Type::Float, sp))
        };
        // 2^53 + 1 is halfway between two floats; ties go to the even one, 2^53.
        assert_eq!(to_float((1 << 53) + 1), 9007199254740992.0);
        assert_eq!(to_float((1 << 53) + 3), 9007199254740996.0);
        assert_eq!(to_float(i64::MIN), -9223372036854775808.0);
        let sp = &mut Spans(0);
        let e = lit(Const::Bool(true), sp);
        assert_eq!(int_value(cast_to(e, Type::Int, sp)), 1);
    }

    #[test]
    fn print_formats_like_the_language_says() {
        let sp = &mut Spans(0);
        let mut body: Block = [1.0, 0.1, 1e16, 1e-5, f64::INFINITY, -0.0, f64::NAN]
            .into_iter()
            .map(|x| Stmt::Print(PrintArg::Value(float(x, sp))))
            .collect();
        body.push(Stmt::Print(PrintArg::Value(int(-42, sp))));
        body.push(Stmt::Print(PrintArg::Value(lit(Const::Bool(false), sp))));
        body.push(Stmt::Print(PrintArg::Str("a\tb".to_string())));
        let p = program(vec![], vec![func("main", vec![], None, vec![], body)]);
        let (r, out) = run(&p, Limits::default());
        assert_eq!(r, Ok(None));
        assert_eq!(
            out,
            "1.0\n0.1\n1e16\n1e-5\ninf\n-0.0\nNaN\n-42\nfalse\na\tb\n"
        );
    }

    /// `fn main() { f(1); }` and `fn f(n: int) { print(n); f(n + 1); }`.
    fn runaway(sp: &mut Spans) -> (Program, Span, Span) {
        let main_call = call(Callee::Function(FuncId(1)), vec![int(1, sp)], sp);
        let main_span = main_call.span;
        let main = func("main", vec![], None, vec![], vec![Stmt::Call(main_call)]);
        let n = local(0, Type::Int, sp);
        let next = bin(BinOp::Add, n, int(1, sp), sp);
        let inner = call(Callee::Function(FuncId(1)), vec![next], sp);
        let inner_span = inner.span;
        let print = Stmt::Print(PrintArg::Value(local(0, Type::Int, sp)));
        let body = vec![print, Stmt::Call(inner)];
        let f = func(
            "f",
            vec![Type::Int],
            None,
            vec![VarType::Scalar(Type::Int)],
            body,
        );
        (program(vec![], vec![main, f]), main_span, inner_span)
    }

    #[test]
    fn stack_overflow_is_the_call_past_the_limit() {
        let sp = &mut Spans(0);
        let (p, main_span, inner_span) = runaway(sp);
        // main is depth 1, so f runs at depths 2 and 3 and its call to depth 4 fails.
        let (r, out) = run(&p, Limits { max_call_depth: 3 });
        let err = r.unwrap_err();
        assert_eq!(err.kind, TrapKind::StackOverflow);
        assert_eq!(err.function, FuncId(1));
        assert_eq!(err.span, inner_span);
        assert_eq!(out, "1\n2\n");
        // With room for main only, main's own call is the one that fails.
        let (r, out) = run(&p, Limits { max_call_depth: 1 });
        let err = r.unwrap_err();
        assert_eq!((err.function, err.span), (FuncId(0), main_span));
        assert_eq!(out, "");
    }

    #[test]
    fn stack_overflow_at_the_default_limit() {
        // Ten thousand interpreted frames need more than a default test thread's stack.
        let handle = std::thread::Builder::new()
            .stack_size(512 << 20)
            .spawn(|| {
                let (p, _, inner_span) = runaway(&mut Spans(0));
                let (r, out) = run(&p, Limits::default());
                assert_eq!(r.unwrap_err().span, inner_span);
                assert_eq!(out.lines().count(), 9_999);
                assert_eq!(out.lines().last(), Some("9999"));
            })
            .unwrap();
        handle.join().unwrap();
    }

    fn global_array(name: &str, elem: Type, len: u32) -> Global {
        Global {
            name: name.to_string(),
            ty: VarType::Array(ArrayType { elem, len }),
            init: None,
            span: Span::new(0, 1),
        }
    }

    fn global_scalar(name: &str, init: Const) -> Global {
        Global {
            name: name.to_string(),
            ty: VarType::Scalar(init.ty()),
            init: Some(init),
            span: Span::new(0, 1),
        }
    }

    #[test]
    fn index_out_of_bounds_on_read_points_at_the_index_expression() {
        for bad in [4, -1, i64::MIN] {
            let sp = &mut Spans(0);
            let index = int(bad, sp);
            let e = expr(
                ExprKind::Index {
                    array: ArrayRef::Global(GlobalId(0)),
                    index: Box::new(index),
                },
                Type::Int,
                sp,
            );
            let span = e.span;
            let f = func(
                "f",
                vec![],
                Some(Type::Int),
                vec![],
                vec![Stmt::Return(Some(e))],
            );
            let p = program(vec![global_array("a", Type::Int, 4)], vec![f]);
            let err = run(&p, Limits::default()).0.unwrap_err();
            assert_eq!((err.kind, err.span), (TrapKind::IndexOutOfBounds, span));
        }
    }

    /// `g = 5; a[IDX] OP= { print("value"); VALUE };` where the value is a call to a function
    /// that prints, so the test sees whether it ran before the error.
    fn indexed_assign(index: i64, op: Option<BinOp>, value: i64) -> (Program, Span, Span) {
        let sp = &mut Spans(0);
        let set_g = Stmt::Assign {
            place: Place::Global(GlobalId(1)),
            op: None,
            value: int(5, sp),
            span: sp.next(),
        };
        let place_span = sp.next();
        let place = Place::Index {
            array: ArrayRef::Global(GlobalId(0)),
            index: Box::new(int(index, sp)),
            span: place_span,
        };
        let value_call = call(Callee::Function(FuncId(1)), vec![], sp);
        let assign_span = sp.next();
        let assign = Stmt::Assign {
            place,
            op,
            value: expr(ExprKind::Call(value_call), Type::Int, sp),
            span: assign_span,
        };
        let main = func("main", vec![], None, vec![], vec![set_g, assign]);
        let body = vec![
            Stmt::Print(PrintArg::Str("value".to_string())),
            Stmt::Return(Some(int(value, sp))),
        ];
        let v = func("v", vec![], Some(Type::Int), vec![], body);
        let globals = vec![
            global_array("a", Type::Int, 4),
            global_scalar("g", Const::Int(0)),
        ];
        (program(globals, vec![main, v]), place_span, assign_span)
    }

    #[test]
    fn assignment_evaluates_the_value_before_the_bounds_check() {
        let (p, place_span, _) = indexed_assign(4, None, 1);
        let mut out = Vec::new();
        let mut interp = Interpreter::new(&p, Limits::default());
        let err = interp
            .call(FuncId(0), &[], &mut NoHost, &mut out)
            .unwrap_err();
        assert_eq!(
            (err.kind, err.span),
            (TrapKind::IndexOutOfBounds, place_span)
        );
        assert_eq!(out, b"value\n");
        // Globals keep the values they had when the error happened.
        assert_eq!(
            interp.global_named("g"),
            Some(&Value::Scalar(Const::Int(5)))
        );
        // Out of bounds wins over the division by zero the compound store would do.
        let (p, place_span, _) = indexed_assign(-1, Some(BinOp::Div), 0);
        let err = run(&p, Limits::default()).0.unwrap_err();
        assert_eq!(
            (err.kind, err.span),
            (TrapKind::IndexOutOfBounds, place_span)
        );
    }

    #[test]
    fn compound_assignment_reads_combines_and_stores() {
        let (p, _, assign_span) = indexed_assign(2, Some(BinOp::Rem), 0);
        let err = run(&p, Limits::default()).0.unwrap_err();
        assert_eq!(
            (err.kind, err.span),
            (TrapKind::DivisionByZero, assign_span)
        );
        let (p, _, _) = indexed_assign(3, Some(BinOp::Sub), 7);
        let mut interp = Interpreter::new(&p, Limits::default());
        let r = interp.call(FuncId(0), &[], &mut NoHost, &mut Vec::new());
        assert_eq!(r, Ok(None));
        let a = interp.global(GlobalId(0)).as_array().unwrap();
        assert_eq!(a, &ArrayValue::Int(vec![0, 0, 0, -7]));
    }

    #[test]
    fn local_arrays_are_zeroed_each_time_their_let_runs() {
        // for i in 0..3 { let a: [int; 2]; a[0] += i + 1; print(a[0]); } then b = a copies.
        let sp = &mut Spans(0);
        let arr = VarType::Array(ArrayType {
            elem: Type::Int,
            len: 2,
        });
        let int_ty = VarType::Scalar(Type::Int);
        let add = Stmt::Assign {
            place: Place::Index {
                array: ArrayRef::Local(LocalId(1)),
                index: Box::new(int(0, sp)),
                span: sp.next(),
            },
            op: Some(BinOp::Add),
            value: bin(BinOp::Add, local(0, Type::Int, sp), int(1, sp), sp),
            span: sp.next(),
        };
        let read = |sp: &mut Spans| {
            expr(
                ExprKind::Index {
                    array: ArrayRef::Local(LocalId(1)),
                    index: Box::new(int(0, sp)),
                },
                Type::Int,
                sp,
            )
        };
        let body = vec![
            Stmt::LetZeroedArray { local: LocalId(1) },
            add,
            Stmt::Print(PrintArg::Value(read(sp))),
            Stmt::LetCopyArray {
                local: LocalId(2),
                src: ArrayRef::Local(LocalId(1)),
            },
            Stmt::CopyArray {
                dst: ArrayRef::Global(GlobalId(0)),
                src: ArrayRef::Local(LocalId(2)),
            },
            Stmt::CopyArray {
                dst: ArrayRef::Local(LocalId(2)),
                src: ArrayRef::Local(LocalId(2)),
            },
        ];
        let lp = Stmt::For {
            var: LocalId(0),
            start: int(0, sp),
            end: int(3, sp),
            body,
            span: sp.next(),
        };
        let main = func("main", vec![], None, vec![int_ty, arr, arr], vec![lp]);
        let p = program(vec![global_array("g", Type::Int, 2)], vec![main]);
        let mut interp = Interpreter::new(&p, Limits::default());
        let mut out = Vec::new();
        assert_eq!(interp.call(FuncId(0), &[], &mut NoHost, &mut out), Ok(None));
        assert_eq!(out, b"1\n2\n3\n");
        let g = interp.global(GlobalId(0)).as_array().unwrap();
        assert_eq!(g, &ArrayValue::Int(vec![3, 0]));
    }

    #[test]
    fn host_errors_carry_the_message_and_the_call() {
        struct Failing;
        impl Host for Failing {
            fn call(&mut self, id: HostId, args: &[Const]) -> Result<Option<Const>, String> {
                assert_eq!((id, args), (HostId(0), &[Const::Float(2.0)][..]));
                Err("sensor offline".to_string())
            }
        }
        let sp = &mut Spans(0);
        let c = call(Callee::Host(HostId(0)), vec![float(2.0, sp)], sp);
        let span = c.span;
        let main = func("main", vec![], None, vec![], vec![Stmt::Call(c)]);
        let p = program(vec![], vec![main]);
        let mut interp = Interpreter::new(&p, Limits::default());
        let err = interp
            .call(FuncId(0), &[], &mut Failing, &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind, TrapKind::HostError);
        assert_eq!(err.span, span);
        assert_eq!(err.message.as_deref(), Some("sensor offline"));
        assert_eq!(err.to_string(), "host error: sensor offline");
    }

    #[test]
    fn short_circuit_skips_the_right_operand() {
        // false && (1 / 0 == 0) is false without dividing.
        let sp = &mut Spans(0);
        let (one, zero) = (int(1, sp), int(0, sp));
        let div = bin(BinOp::Div, one, zero, sp);
        let rhs = bin(BinOp::Eq, div, int(0, sp), sp);
        let f = lit(Const::Bool(false), sp);
        let and = expr(ExprKind::And(Box::new(f), Box::new(rhs)), Type::Bool, sp);
        assert_eq!(value_of(and), Ok(Const::Bool(false)));
    }
}
