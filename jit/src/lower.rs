//! Lowering: one checked Kiln function to one Cranelift IR function.
//!
//! The output is self-contained: a [`LoweredFunction`] names everything outside itself through
//! its own symbol table (script functions, globals and host functions by name, runtime functions,
//! string literals), so it can be compiled, cached and linked into any module that provides those
//! names. Nothing here depends on where functions or globals will live.
//!
//! ABI of a script function: `(vmctx, budget, params...) -> (ret?, trapped)`, where `vmctx`
//! points at the [`VmCtx`](crate::runtime::VmCtx) and `budget` is how many more frames the call
//! depth limit allows below this one (negative: this frame is one too many). A runtime error
//! calls `kiln_rt_trap`, which records it and marks the context as trapped, and returns a zero
//! result with `trapped` (an `i8`, in the second return register) set; every script caller
//! tests `trapped` after each call and returns at once, so an error unwinds through plain
//! returns and never through Rust frames. (The mark in the context is for callers that are not
//! script functions: the entry stubs, and script code after a host call.)

use crate::runtime::{
    INTERRUPT_STACK_LIMIT, NO_SITE, OFFSET_ARRAY_STACK_END, OFFSET_ARRAY_STACK_TOP,
    OFFSET_INTERRUPT, OFFSET_TRAPPED, RuntimeFn, TRAP_LOCATE, trap_code,
};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    self, AbiParam, ExtFuncData, ExternalName, FuncRef, GlobalValue, GlobalValueData, InstBuilder,
    MemFlagsData, StackSlotData, StackSlotKind, UserExternalName, UserFuncName, types,
};
use cranelift_codegen::isa::TargetIsa;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use kiln_lang::program::{
    ArrayRef, ArrayType, BinOp, Block, Builtin, Call, Callee, Const, Expr, ExprKind, FuncId,
    Function, HostSignature, LocalId, Place, PrintArg, Program, Signature, Stmt, TrapKind, Type,
    UnOp, VarType,
};
use kiln_lang::source::Span;
use std::collections::HashMap;

/// Something a lowered function refers to outside itself, by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Symbol {
    /// A script function of the same module.
    Function(String),
    /// The storage of a global (scalar or array).
    Global(String),
    /// A registered host function.
    Host(String),
    Runtime(RuntimeFn),
    /// The bytes of a string literal.
    Str(String),
}

/// The CLIF of one function, with what it refers to and where its runtime errors point.
pub struct LoweredFunction {
    pub clif: ir::Function,
    /// External name `UserExternalName { namespace: 0, index: i }` in `clif` is `symbols[i]`.
    pub symbols: Vec<Symbol>,
    /// Lowered code passes an index into this table when it raises a runtime error.
    pub sites: Vec<Span>,
}

/// The Cranelift type of a scalar.
pub fn clif_type(ty: Type) -> ir::Type {
    match ty {
        Type::Int => types::I64,
        Type::Float => types::F64,
        Type::Bool => types::I8,
    }
}

/// The bytes one element of an array of `ty` takes.
pub fn elem_size(ty: Type) -> u32 {
    match ty {
        Type::Int | Type::Float => 8,
        Type::Bool => 1,
    }
}

/// The bytes an array takes, rounded up to 8 so arrays stay aligned.
pub fn array_bytes(a: ArrayType) -> u64 {
    (u64::from(a.len) * u64::from(elem_size(a.elem))).next_multiple_of(8)
}

/// The native signature of a script function with Kiln signature `sig`.
pub fn clif_signature(isa: &dyn TargetIsa, sig: &Signature) -> ir::Signature {
    let ptr = isa.pointer_type();
    let mut s = ir::Signature::new(isa.default_call_conv());
    s.params.push(AbiParam::new(ptr));
    s.params.push(AbiParam::new(types::I64));
    s.params
        .extend(sig.params.iter().map(|&t| AbiParam::new(clif_type(t))));
    s.returns
        .extend(sig.ret.iter().map(|&t| AbiParam::new(clif_type(t))));
    s.returns.push(AbiParam::new(types::I8));
    s
}

/// Lowers function `id` of `program`. `hosts` are the host functions the program was checked
/// against, indexed by `HostId`.
///
/// Interrupts stop a running call at the next function entry, through its stack check (see
/// [`Interrupt`](crate::runtime::Interrupt)), or at the next loop iteration, where loops poll
/// the flag: between the two, time is bounded.
pub fn lower_function(
    isa: &dyn TargetIsa,
    program: &Program,
    hosts: &[HostSignature],
    id: FuncId,
    fctx: &mut FunctionBuilderContext,
) -> LoweredFunction {
    let func = program.function(id);
    let mut clif = ir::Function::with_name_signature(
        UserFuncName::user(0, id.0),
        clif_signature(isa, &func.sig),
    );
    let builder = FunctionBuilder::new(&mut clif, fctx);
    let mut lowerer = Lowerer::new(isa, program, hosts, func, builder);
    lowerer.lower_body();
    let Lowerer {
        b, symbols, sites, ..
    } = lowerer;
    b.finalize(isa.frontend_config());
    LoweredFunction {
        clif,
        symbols,
        sites,
    }
}

/// Whether `block` has a loop anywhere in it.
fn has_loop(block: &[Stmt]) -> bool {
    block.iter().any(|s| match s {
        Stmt::While { .. } | Stmt::For { .. } => true,
        Stmt::If {
            then_block,
            else_block,
            ..
        } => has_loop(then_block) || has_loop(else_block),
        Stmt::Block(b) => has_loop(b),
        _ => false,
    })
}

/// The most iterations a loop may run between two interrupt polls: a `for` loop with constant
/// bounds, no inner loop and no call that is not inlined runs this many iterations of bounded
/// straight-line code at most, so it need not poll at all (its enclosing loop or function does).
const UNPOLLED_TRIP_LIMIT: i64 = 1 << 16;

/// The largest body, in statements and expression nodes, that is inlined at its calls.
const INLINE_LIMIT: usize = 40;

/// Whether calls to `f` are replaced by its body: a small function that calls nothing but
/// builtins, has no loops, no arrays and no operation that can raise a runtime error.
///
/// Only trap-free functions are inlined, so every error of inlined code would have been raised
/// by the caller anyway (the call's own stack overflow is checked at the call): errors keep
/// naming the function and location they always did. The decision depends on `f`'s text alone,
/// which is what lets a reload know which edits must recompile the callers
/// ([`crate::module::SourceOutline::inlined`]).
pub(crate) fn inline_candidate(f: &Function) -> bool {
    let mut left = INLINE_LIMIT;
    !f.reused
        && f.locals.iter().all(|l| matches!(l.ty, VarType::Scalar(_)))
        && block_fits(&f.body, &mut left).is_some()
}

/// The largest guard (condition and returned value, in expression nodes) that is tested at the
/// calls of its function.
const GUARD_LIMIT: usize = 12;

/// The guard `f` starts with, when calls to `f` test it themselves: `if COND { return VALUE; }`
/// with a small `COND` and `VALUE` that call nothing but builtins and cannot fail (a recursive
/// function's base case, typically). Where it holds the call costs no call; where it does not,
/// `f` is called (and tests it again). Like [`inline_candidate`], this depends on `f`'s text
/// alone; a function that is inlined whole has no guard.
pub(crate) fn guard_of(f: &Function) -> Option<&Stmt> {
    if f.reused || inline_candidate(f) {
        return None;
    }
    let guard @ Stmt::If {
        cond,
        then_block,
        else_block,
    } = f.body.first()?
    else {
        return None;
    };
    let [Stmt::Return(value)] = then_block.as_slice() else {
        return None;
    };
    let mut left = GUARD_LIMIT;
    expr_fits(cond, &mut left)?;
    if let Some(value) = value {
        expr_fits(value, &mut left)?;
    }
    else_block.is_empty().then_some(guard)
}

/// Whether callers of `f` hold some of its code: it is inlined, or its guard is.
pub(crate) fn inlined_in_callers(f: &Function) -> bool {
    inline_candidate(f) || guard_of(f).is_some()
}

/// Takes one node from `left`, the size still allowed; `None` once it is used up. The walks
/// below stop there, so deciding about a large function costs no more than about a small one
/// (the decision is taken at every call site).
fn take(left: &mut usize) -> Option<()> {
    *left = left.checked_sub(1)?;
    Some(())
}

/// `Some` when `block` could be inlined within `left` statements and expression nodes.
fn block_fits(block: &[Stmt], left: &mut usize) -> Option<()> {
    block.iter().try_for_each(|s| stmt_fits(s, left))
}

fn stmt_fits(stmt: &Stmt, left: &mut usize) -> Option<()> {
    take(left)?;
    match stmt {
        Stmt::Let { init, .. } => expr_fits(init, left),
        Stmt::Assign {
            place, op, value, ..
        } => {
            if matches!(place, Place::Index { .. }) || !division_is_safe(*op, value) {
                return None;
            }
            expr_fits(value, left)
        }
        Stmt::Call(call) => call_fits(call, left),
        Stmt::If {
            cond,
            then_block,
            else_block,
        } => {
            expr_fits(cond, left)?;
            block_fits(then_block, left)?;
            block_fits(else_block, left)
        }
        Stmt::Block(b) => block_fits(b, left),
        Stmt::Return(value) => value.as_ref().map_or(Some(()), |e| expr_fits(e, left)),
        Stmt::LetZeroedArray { .. }
        | Stmt::LetCopyArray { .. }
        | Stmt::CopyArray { .. }
        | Stmt::Print(_)
        | Stmt::While { .. }
        | Stmt::For { .. }
        | Stmt::Break
        | Stmt::Continue => None,
    }
}

fn expr_fits(e: &Expr, left: &mut usize) -> Option<()> {
    take(left)?;
    match &e.kind {
        ExprKind::Const(_) | ExprKind::Local(_) | ExprKind::Global(_) => Some(()),
        ExprKind::Index { .. } => None,
        ExprKind::Unary { operand, .. } | ExprKind::Cast(operand) => expr_fits(operand, left),
        ExprKind::Binary { op, lhs, rhs, .. } => {
            if lhs.ty == Type::Int && !division_is_safe(Some(*op), rhs) {
                return None;
            }
            expr_fits(lhs, left)?;
            expr_fits(rhs, left)
        }
        ExprKind::And(lhs, rhs) | ExprKind::Or(lhs, rhs) => {
            expr_fits(lhs, left)?;
            expr_fits(rhs, left)
        }
        ExprKind::Call(call) => call_fits(call, left),
    }
}

fn call_fits(call: &Call, left: &mut usize) -> Option<()> {
    match call.callee {
        Callee::Builtin(_) => call.args.iter().try_for_each(|a| expr_fits(a, left)),
        Callee::Function(_) | Callee::Host(_) => None,
    }
}

/// Whether `op` with right operand `rhs` cannot raise a division by zero: it is no integer
/// division, or it divides by a constant other than 0 and -1 (see `int_div`).
fn division_is_safe(op: Option<BinOp>, rhs: &Expr) -> bool {
    match op {
        Some(BinOp::Div | BinOp::Rem) if rhs.ty == Type::Int => {
            matches!(rhs.kind, ExprKind::Const(Const::Int(d)) if d != 0 && d != -1)
        }
        _ => true,
    }
}

/// Whether a `for` loop with constant bounds `start..end` and body `body` may skip interrupt
/// polls (see [`UNPOLLED_TRIP_LIMIT`]).
fn bounded_without_polls(program: &Program, start: i64, end: i64, body: &[Stmt]) -> bool {
    end.saturating_sub(start) <= UNPOLLED_TRIP_LIMIT
        && !has_loop(body)
        && body.iter().all(|s| stmt_calls_only_inlined(program, s))
}

/// Whether every call in `stmt` is to a builtin or to a function that is inlined.
fn stmt_calls_only_inlined(program: &Program, stmt: &Stmt) -> bool {
    let e = |x: &Expr| expr_calls_only_inlined(program, x);
    let b = |x: &[Stmt]| x.iter().all(|s| stmt_calls_only_inlined(program, s));
    match stmt {
        Stmt::Let { init, .. } => e(init),
        Stmt::Assign { place, value, .. } => {
            e(value)
                && match place {
                    Place::Index { index, .. } => e(index),
                    Place::Local(_) | Place::Global(_) => true,
                }
        }
        Stmt::Call(call) => call_only_inlined(program, call),
        Stmt::Print(PrintArg::Value(x)) => e(x),
        Stmt::If {
            cond,
            then_block,
            else_block,
        } => e(cond) && b(then_block) && b(else_block),
        Stmt::While { cond, body, .. } => e(cond) && b(body),
        Stmt::For {
            start, end, body, ..
        } => e(start) && e(end) && b(body),
        Stmt::Block(block) => b(block),
        Stmt::Return(value) => value.as_ref().is_none_or(e),
        Stmt::LetZeroedArray { .. }
        | Stmt::LetCopyArray { .. }
        | Stmt::CopyArray { .. }
        | Stmt::Print(PrintArg::Str(_))
        | Stmt::Break
        | Stmt::Continue => true,
    }
}

fn expr_calls_only_inlined(program: &Program, e: &Expr) -> bool {
    let x = |e: &Expr| expr_calls_only_inlined(program, e);
    match &e.kind {
        ExprKind::Const(_) | ExprKind::Local(_) | ExprKind::Global(_) => true,
        ExprKind::Index { index, .. } => x(index),
        ExprKind::Unary { operand, .. } | ExprKind::Cast(operand) => x(operand),
        ExprKind::Binary { lhs, rhs, .. } | ExprKind::And(lhs, rhs) | ExprKind::Or(lhs, rhs) => {
            x(lhs) && x(rhs)
        }
        ExprKind::Call(call) => call_only_inlined(program, call),
    }
}

fn call_only_inlined(program: &Program, call: &Call) -> bool {
    let callee_ok = match call.callee {
        Callee::Builtin(_) => true,
        Callee::Function(id) => inline_candidate(program.function(id)),
        Callee::Host(_) => false,
    };
    callee_ok
        && call
            .args
            .iter()
            .all(|a| expr_calls_only_inlined(program, a))
}

/// The first thing a run of some code does that the program or the host could observe.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Effect {
    /// Nothing: no store, output, call or check.
    None,
    /// A call that is inlined, at this span: its frame check.
    InlinedCall(Span),
    /// Anything else (including what this analysis does not look into).
    Other,
}

impl Effect {
    /// `self`, then `next`.
    fn then(self, next: impl FnOnce() -> Effect) -> Effect {
        match self {
            Effect::None => next(),
            first => first,
        }
    }
}

/// The first effect of running `block` from its start.
fn block_effect(program: &Program, block: &[Stmt]) -> Effect {
    block
        .iter()
        .fold(Effect::None, |e, s| e.then(|| stmt_effect(program, s)))
}

fn stmt_effect(program: &Program, stmt: &Stmt) -> Effect {
    let e = |x: &Expr| expr_effect(program, x);
    match stmt {
        Stmt::Let { init, .. } => e(init),
        Stmt::Assign {
            place, op, value, ..
        } => match place {
            Place::Local(_) if division_is_safe(*op, value) => e(value),
            Place::Local(_) => e(value).then(|| Effect::Other),
            // The store, or the bounds check before it.
            Place::Global(_) => e(value).then(|| Effect::Other),
            Place::Index { index, .. } => e(index).then(|| e(value)).then(|| Effect::Other),
        },
        Stmt::Call(call) => call_effect(program, call),
        Stmt::Block(block) => block_effect(program, block),
        _ => Effect::Other,
    }
}

fn expr_effect(program: &Program, e: &Expr) -> Effect {
    let x = |e: &Expr| expr_effect(program, e);
    match &e.kind {
        ExprKind::Const(_) | ExprKind::Local(_) | ExprKind::Global(_) => Effect::None,
        ExprKind::Index { index, .. } => x(index).then(|| Effect::Other),
        ExprKind::Unary { operand, .. } | ExprKind::Cast(operand) => x(operand),
        ExprKind::Binary { op, lhs, rhs, .. } => {
            let division = if lhs.ty == Type::Int && !division_is_safe(Some(*op), rhs) {
                Effect::Other
            } else {
                Effect::None
            };
            x(lhs).then(|| x(rhs)).then(|| division)
        }
        // The right operand may not run at all.
        ExprKind::And(lhs, rhs) | ExprKind::Or(lhs, rhs) => x(lhs).then(|| match x(rhs) {
            Effect::None => Effect::None,
            _ => Effect::Other,
        }),
        ExprKind::Call(call) => call_effect(program, call),
    }
}

fn call_effect(program: &Program, call: &Call) -> Effect {
    let args = call
        .args
        .iter()
        .fold(Effect::None, |e, a| e.then(|| expr_effect(program, a)));
    args.then(|| match call.callee {
        Callee::Builtin(_) => Effect::None,
        // Inlined, or only its guard: either way the frame check comes first.
        Callee::Function(id) if inlined_in_callers(program.function(id)) => {
            Effect::InlinedCall(call.span)
        }
        Callee::Function(_) | Callee::Host(_) => Effect::Other,
    })
}

/// What the lowering knows about integer values where it is lowering, so that a check that
/// cannot fail is left out. `below` and `ranges` hold where they were learned and in what that
/// dominates; the lowering drops them when it leaves a branch or a loop body.
#[derive(Default)]
struct Facts {
    /// The value is below the length: a bounds check of it against that length passed.
    below: Vec<(ir::Value, u32)>,
    /// The (`for`) variable is in `lo..hi` everywhere in its loop's body.
    ranges: Vec<(LocalId, i64, i64)>,
    /// The value is in `lo..=hi` wherever it is defined: values read from a variable in
    /// `ranges`.
    values: HashMap<ir::Value, (i64, i64)>,
    /// The depth limit has room for one more frame: an inlined call's check passed. The budget
    /// does not change during a call, so every later inlined call passes too.
    frame_room: bool,
}

/// Where [`Facts`] were, to go back to when leaving a branch or a loop body.
#[derive(Clone, Copy)]
struct FactsMark {
    below: usize,
    ranges: usize,
    frame_room: bool,
}

/// How many of the latest checked values a bounds check looks through: keeps the lowering
/// linear in the size of a function.
const RECENT_CHECKS: usize = 32;

impl Facts {
    fn mark(&self) -> FactsMark {
        FactsMark {
            below: self.below.len(),
            ranges: self.ranges.len(),
            frame_room: self.frame_room,
        }
    }

    fn reset(&mut self, mark: FactsMark) {
        self.below.truncate(mark.below);
        self.ranges.truncate(mark.ranges);
        self.frame_room = mark.frame_room;
    }

    /// Whether `index` was checked against `len` or a shorter length.
    fn checked(&self, index: ir::Value, len: u32) -> bool {
        let mut below = self.below.iter().rev().take(RECENT_CHECKS);
        below.any(|&(v, l)| v == index && l <= len)
    }

    /// Notes the range of `value`, just read from `local`, if the local has one here.
    fn read(&mut self, local: LocalId, value: ir::Value) {
        if let Some(&(_, lo, hi)) = self.ranges.iter().rev().find(|&&(id, ..)| id == local)
            && lo < hi
        {
            self.values.insert(value, (lo, hi - 1));
        }
    }
}

struct Loop {
    continue_to: ir::Block,
    break_to: ir::Block,
}

/// The lowering's state for the function being lowered, set aside while it lowers a callee's
/// code in its place ([`Lowerer::enter_callee`]).
struct CallerContext<'a> {
    func: &'a Function,
    vars: Vec<Option<Variable>>,
    array_offsets: Vec<Option<u64>>,
    exit: ir::Block,
    loops: Vec<Loop>,
    ranges: Vec<(LocalId, i64, i64)>,
}

struct Lowerer<'a, 'f> {
    isa: &'a dyn TargetIsa,
    program: &'a Program,
    hosts: &'a [HostSignature],
    func: &'a Function,
    b: FunctionBuilder<'f>,
    ptr: ir::Type,
    vmctx: ir::Value,
    /// Frames the call depth limit still allows below this one.
    budget: ir::Value,
    /// The address of the module's [`Interrupt`](crate::runtime::Interrupt).
    interrupt: ir::Value,
    stack_limit: ir::Value,
    /// Start of this call's array frame on the array stack, when it has local arrays.
    frame_base: Option<ir::Value>,
    vars: Vec<Option<Variable>>,
    /// Byte offset of each local array in the frame.
    array_offsets: Vec<Option<u64>>,
    /// Where `return` goes: `function_exit`, or the end of the function being inlined.
    exit: ir::Block,
    /// The function's return block, taking its result (if any) and the `trapped` flag.
    function_exit: ir::Block,
    loops: Vec<Loop>,
    symbols: Vec<Symbol>,
    symbol_index: HashMap<Symbol, u32>,
    func_refs: HashMap<Symbol, FuncRef>,
    data_refs: HashMap<Symbol, GlobalValue>,
    self_ref: FuncRef,
    sites: Vec<Span>,
    /// The cold block every failing check ends in, created on first use.
    trap_block: Option<ir::Block>,
    facts: Facts,
}

/// Loads of fields that do not change during a call; Cranelift may merge or hoist them.
fn readonly() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly()
}

impl<'a, 'f> Lowerer<'a, 'f> {
    fn new(
        isa: &'a dyn TargetIsa,
        program: &'a Program,
        hosts: &'a [HostSignature],
        func: &'a Function,
        mut b: FunctionBuilder<'f>,
    ) -> Self {
        let ptr = isa.pointer_type();
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let params = b.block_params(entry).to_vec();
        let (vmctx, budget) = (params[0], params[1]);
        let interrupt = b.ins().load(ptr, readonly(), vmctx, OFFSET_INTERRUPT);
        // Not read-only: an interrupt request raises it.
        let stack_limit = b.ins().load(
            ptr,
            MemFlagsData::trusted(),
            interrupt,
            INTERRUPT_STACK_LIMIT,
        );

        let exit = b.create_block();
        if let Some(ret) = func.sig.ret {
            b.append_block_param(exit, clif_type(ret));
        }
        b.append_block_param(exit, types::I8);

        let mut vars = Vec::with_capacity(func.locals.len());
        let mut array_offsets = Vec::with_capacity(func.locals.len());
        let mut frame_bytes = 0u64;
        for local in &func.locals {
            match local.ty {
                VarType::Scalar(t) => {
                    vars.push(Some(b.declare_var(clif_type(t))));
                    array_offsets.push(None);
                }
                VarType::Array(a) => {
                    vars.push(None);
                    array_offsets.push(Some(frame_bytes));
                    frame_bytes += array_bytes(a);
                }
            }
        }
        for (i, &p) in params[2..].iter().enumerate() {
            let var = vars[i].expect("parameters are scalars");
            b.def_var(var, p);
        }

        let self_sig = b.func.signature.clone();
        let mut this = Lowerer {
            isa,
            program,
            hosts,
            func,
            b,
            ptr,
            vmctx,
            budget,
            interrupt,
            stack_limit,
            frame_base: None,
            vars,
            array_offsets,
            exit,
            function_exit: exit,
            loops: Vec::new(),
            symbols: Vec::new(),
            symbol_index: HashMap::new(),
            func_refs: HashMap::new(),
            data_refs: HashMap::new(),
            self_ref: FuncRef::from_u32(0),
            sites: Vec::new(),
            trap_block: None,
            facts: Facts::default(),
        };
        this.self_ref = this.import_function(Symbol::Function(func.name.clone()), self_sig, true);
        // The frame comes first: its base must dominate the exit block, which every trap
        // path jumps to.
        if frame_bytes > 0 {
            this.push_array_frame(frame_bytes);
        }
        this.check_stack();
        this
    }

    fn lower_body(&mut self) {
        let body = &self.func.body;
        self.lower_block(body);
        // Falling off the end only happens for functions without a result (the checker
        // rejects the rest), but the block must still be terminated.
        let zero = self.zero_result();
        self.jump_exit(&zero);
        self.finish_trap_block();

        self.b.switch_to_block(self.exit);
        if let Some(base) = self.frame_base {
            self.b.ins().store(
                MemFlagsData::trusted(),
                base,
                self.vmctx,
                OFFSET_ARRAY_STACK_TOP,
            );
        }
        let rets = self.b.block_params(self.exit).to_vec();
        self.b.ins().return_(&rets);
        self.b.seal_all_blocks();
    }

    // ---- symbols -------------------------------------------------------------------------

    fn external_name(&mut self, symbol: Symbol) -> ExternalName {
        let next = self.symbols.len() as u32;
        let index = *self.symbol_index.entry(symbol.clone()).or_insert_with(|| {
            self.symbols.push(symbol);
            next
        });
        let r = self
            .b
            .func
            .declare_imported_user_function(UserExternalName::new(0, index));
        ExternalName::user(r)
    }

    fn import_function(&mut self, symbol: Symbol, sig: ir::Signature, colocated: bool) -> FuncRef {
        if let Some(&r) = self.func_refs.get(&symbol) {
            return r;
        }
        let name = self.external_name(symbol.clone());
        let signature = self.b.import_signature(sig);
        let r = self.b.import_function(ExtFuncData {
            name,
            signature,
            colocated,
            patchable: false,
        });
        self.func_refs.insert(symbol, r);
        r
    }

    fn runtime_fn(&mut self, f: RuntimeFn) -> FuncRef {
        let ptr = self.ptr;
        let mut sig = ir::Signature::new(self.isa.default_call_conv());
        let p = |t| AbiParam::new(t);
        let (params, rets): (Vec<ir::Type>, Vec<ir::Type>) = match f {
            RuntimeFn::Trap => (vec![ptr, ptr, types::I32, types::I32], vec![]),
            RuntimeFn::CallHost => (vec![ptr, ptr, ptr], vec![types::I64]),
            RuntimeFn::PrintInt => (vec![ptr, types::I64], vec![]),
            RuntimeFn::PrintFloat => (vec![ptr, types::F64], vec![]),
            RuntimeFn::PrintBool => (vec![ptr, types::I64], vec![]),
            RuntimeFn::PrintStr => (vec![ptr, ptr, types::I64], vec![]),
            RuntimeFn::Zero => (vec![ptr, types::I64], vec![]),
            RuntimeFn::Copy => (vec![ptr, ptr, types::I64], vec![]),
            RuntimeFn::Sin | RuntimeFn::Cos | RuntimeFn::Tan | RuntimeFn::Exp | RuntimeFn::Ln => {
                (vec![types::F64], vec![types::F64])
            }
            RuntimeFn::Pow | RuntimeFn::Fmod => (vec![types::F64, types::F64], vec![types::F64]),
        };
        sig.params.extend(params.into_iter().map(p));
        sig.returns.extend(rets.into_iter().map(p));
        self.import_function(Symbol::Runtime(f), sig, false)
    }

    fn data_address(&mut self, symbol: Symbol) -> ir::Value {
        let gv = match self.data_refs.get(&symbol) {
            Some(&gv) => gv,
            None => {
                let name = self.external_name(symbol.clone());
                let gv = self.b.create_global_value(GlobalValueData::Symbol {
                    name,
                    offset: ir::immediates::Imm64::new(0),
                    colocated: false,
                    tls: false,
                });
                self.data_refs.insert(symbol, gv);
                gv
            }
        };
        self.b.ins().symbol_value(self.ptr, gv)
    }

    fn call_runtime(&mut self, f: RuntimeFn, args: &[ir::Value]) -> Option<ir::Value> {
        let r = self.runtime_fn(f);
        let call = self.b.ins().call(r, args);
        self.b.inst_results(call).first().copied()
    }

    // ---- control helpers -----------------------------------------------------------------

    fn site(&mut self, span: Span) -> u32 {
        self.sites.push(span);
        self.sites.len() as u32 - 1
    }

    fn zero_result(&mut self) -> Vec<ir::Value> {
        match self.func.sig.ret {
            Some(t) => vec![self.zero(t)],
            None => vec![],
        }
    }

    fn zero(&mut self, t: Type) -> ir::Value {
        match t {
            Type::Int => self.b.ins().iconst(types::I64, 0),
            Type::Float => self.b.ins().f64const(0.0),
            Type::Bool => self.b.ins().iconst(types::I8, 0),
        }
    }

    /// Jumps to where `return` goes, with the returned value (if any).
    fn jump_exit(&mut self, values: &[ir::Value]) {
        if self.exit == self.function_exit {
            let mut values = values.to_vec();
            values.push(self.b.ins().iconst(types::I8, 0));
            self.jump_to_function_exit(&values);
        } else {
            let args: Vec<ir::BlockArg> = values.iter().map(|&v| v.into()).collect();
            self.jump(self.exit, &args);
        }
    }

    /// Jumps to the return block with the result (if any) and the `trapped` flag.
    fn jump_to_function_exit(&mut self, values: &[ir::Value]) {
        let args: Vec<ir::BlockArg> = values.iter().map(|&v| v.into()).collect();
        self.jump(self.function_exit, &args);
    }

    /// Ends the current block with a jump to `target`, unless no edge reaches the block (code
    /// after `return`, `break`, ...). An edge from there would give `target` a parameter for
    /// every variable live in it (dead paths have no values), and Cranelift keeps those
    /// parameters, and the moves into them, after it deletes the dead code.
    fn jump(&mut self, target: ir::Block, args: &[ir::BlockArg]) {
        if self.b.is_unreachable() {
            self.b.ins().trap(ir::TrapCode::unwrap_user(1));
        } else {
            self.b.ins().jump(target, args);
        }
    }

    /// Continues lowering in a fresh block no edge reaches (after `return`, `break`, ...).
    fn start_unreachable(&mut self) {
        let dead = self.b.create_block();
        self.b.switch_to_block(dead);
        self.b.seal_block(dead);
    }

    /// Branches away when `cond` is true, raising `kind` at `site`.
    ///
    /// The branch goes to a cold stub of its own that sets `site` and `kind`, packed in one
    /// value, and jumps to the function's one trap block, which calls the runtime. The hot path
    /// is a compare and a branch: a constant passed on the branch itself would be materialized
    /// before it, on every pass.
    fn trap_if(&mut self, cond: ir::Value, kind: u32, site: u32) {
        let trap = match self.trap_block {
            Some(b) => b,
            None => {
                let b = self.b.create_block();
                self.b.append_block_param(b, types::I64);
                self.b.set_cold_block(b);
                self.trap_block = Some(b);
                b
            }
        };
        let stub = self.b.create_block();
        self.b.set_cold_block(stub);
        let cont = self.b.create_block();
        self.b.ins().brif(cond, stub, &[], cont, &[]);
        self.b.switch_to_block(stub);
        self.b.seal_block(stub);
        let code = self
            .b
            .ins()
            .iconst(types::I64, (i64::from(site) << 3) | i64::from(kind));
        self.b.ins().jump(trap, &[code.into()]);
        self.b.switch_to_block(cont);
        self.b.seal_block(cont);
    }

    /// Fills in the trap block: tell the runtime, then return a zero through the exit.
    fn finish_trap_block(&mut self) {
        let Some(trap) = self.trap_block else { return };
        self.b.switch_to_block(trap);
        let code = self.b.block_params(trap)[0];
        let site = self.b.ins().ushr_imm_u(code, 3);
        let site = self.b.ins().ireduce(types::I32, site);
        let kind = self.b.ins().band_imm_u(code, 7);
        let kind = self.b.ins().ireduce(types::I32, kind);
        let me = self.b.ins().func_addr(self.ptr, self.self_ref);
        self.call_runtime(RuntimeFn::Trap, &[self.vmctx, me, site, kind]);
        let mut values = self.zero_result();
        values.push(self.b.ins().iconst(types::I8, 1));
        self.jump_to_function_exit(&values);
    }

    fn trap_at(&mut self, cond: ir::Value, kind: TrapKind, span: Span) {
        let site = self.site(span);
        self.trap_if(cond, trap_code(kind), site);
    }

    /// One load and one branch, on a loop's back-edge.
    ///
    /// The load is atomic because another thread sets the flag: Cranelift's redundant-load
    /// elimination would otherwise reuse an earlier iteration's value in a loop without stores
    /// (`while true {}`), and the loop would never see the interrupt.
    fn check_interrupt(&mut self, span: Span) {
        let flag = self
            .b
            .ins()
            .atomic_load(types::I8, MemFlagsData::trusted(), self.interrupt);
        self.trap_at(flag, TrapKind::Interrupted, span);
    }

    /// On entry: is this frame past the call-depth limit or the native stack limit (which an
    /// interrupt request raises past every stack)? Checked here once rather than at every call
    /// site; the error has no location, so the caller's after-call check gives it the call's
    /// (LANGUAGE.md: "the call that went past the limit"). Two compare-and-branch pairs:
    /// cheaper than combining the conditions first.
    fn check_stack(&mut self) {
        let overflow = trap_code(TrapKind::StackOverflow);
        let too_deep = self
            .b
            .ins()
            .icmp_imm_s(IntCC::SignedLessThan, self.budget, 0);
        self.trap_if(too_deep, overflow, NO_SITE);
        let sp = self.b.ins().get_stack_pointer(self.ptr);
        let no_stack = self
            .b
            .ins()
            .icmp(IntCC::UnsignedLessThan, sp, self.stack_limit);
        self.trap_if(no_stack, overflow, NO_SITE);
    }

    /// After a call: if the callee raised an error (`trapped`, the callee's flag or the
    /// context's mark after a host call), give it this call's location if it has none yet,
    /// and return.
    fn check_trapped(&mut self, trapped: ir::Value, span: Span) {
        let site = self.site(span);
        self.trap_if(trapped, TRAP_LOCATE, site);
    }

    fn push_array_frame(&mut self, bytes: u64) {
        let top = self.b.ins().load(
            self.ptr,
            MemFlagsData::trusted(),
            self.vmctx,
            OFFSET_ARRAY_STACK_TOP,
        );
        let end = self.b.ins().load(
            self.ptr,
            MemFlagsData::trusted(),
            self.vmctx,
            OFFSET_ARRAY_STACK_END,
        );
        let room = self.b.ins().isub(end, top);
        let over = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, room, bytes as i64);
        // `frame_base` is set only below, but restoring the unchanged `top` on this path is
        // harmless anyway.
        self.frame_base = Some(top);
        self.trap_if(over, trap_code(TrapKind::StackOverflow), NO_SITE);
        let new_top = self.b.ins().iadd_imm_s(top, bytes as i64);
        self.b.ins().store(
            MemFlagsData::trusted(),
            new_top,
            self.vmctx,
            OFFSET_ARRAY_STACK_TOP,
        );
    }

    // ---- statements ----------------------------------------------------------------------

    fn lower_block(&mut self, block: &Block) {
        for stmt in block {
            self.lower_stmt(stmt);
        }
    }

    fn lower_stmt(&mut self, stmt: &Stmt) {
        match stmt {
            Stmt::Let { local, init } => {
                let v = self.lower_expr(init);
                let var = self.vars[local.0 as usize].expect("scalar local");
                self.b.def_var(var, v);
            }
            Stmt::LetZeroedArray { local } => {
                let a = ArrayRef::Local(*local);
                let (base, ty) = self.array(a);
                self.zero_array(base, ty);
            }
            Stmt::LetCopyArray { local, src } => {
                self.copy_array(ArrayRef::Local(*local), *src);
            }
            Stmt::CopyArray { dst, src } => self.copy_array(*dst, *src),
            Stmt::Assign {
                place,
                op,
                value,
                span,
            } => self.lower_assign(place, *op, value, *span),
            Stmt::Call(call) => {
                self.lower_call(call);
            }
            Stmt::Print(arg) => self.lower_print(arg),
            Stmt::If {
                cond,
                then_block,
                else_block,
            } => {
                let c = self.lower_expr(cond);
                let then_b = self.b.create_block();
                let else_b = self.b.create_block();
                let merge = self.b.create_block();
                self.b.ins().brif(c, then_b, &[], else_b, &[]);
                let mark = self.facts.mark();
                self.b.switch_to_block(then_b);
                self.b.seal_block(then_b);
                self.lower_block(then_block);
                self.jump(merge, &[]);
                self.facts.reset(mark);
                self.b.switch_to_block(else_b);
                self.b.seal_block(else_b);
                self.lower_block(else_block);
                self.jump(merge, &[]);
                self.facts.reset(mark);
                self.b.switch_to_block(merge);
                self.b.seal_block(merge);
            }
            Stmt::While { cond, body, span } => {
                // Rotated: the condition is tested before the loop and again at the bottom, so
                // an iteration takes one branch. The body block is the loop header, sealed
                // once its back-edge exists; `Variable`s let the frontend add its parameters.
                let body_b = self.b.create_block();
                let latch = self.b.create_block();
                let exit = self.b.create_block();
                let c = self.lower_expr(cond);
                let mark = self.facts.mark();
                self.enter_loop(c, body, body_b, exit);
                self.lower_loop_body(body, latch, exit);
                self.b.switch_to_block(latch);
                self.b.seal_block(latch);
                self.check_interrupt(*span);
                let c = self.lower_expr(cond);
                self.facts.reset(mark);
                self.b.ins().brif(c, body_b, &[], exit, &[]);
                self.b.seal_block(body_b);
                self.b.switch_to_block(exit);
                self.b.seal_block(exit);
            }
            Stmt::For {
                var,
                start,
                end,
                body,
                span,
            } => {
                let s = self.lower_expr(start);
                let e = self.lower_expr(end);
                let bounds = self.constant(s).zip(self.constant(e));
                let polls = !bounds
                    .is_some_and(|(lo, hi)| bounded_without_polls(self.program, lo, hi, body));
                // The loop variable is the counter: the body cannot assign it, so at the latch
                // it still holds this iteration's value. (A second variable would be a second,
                // equal, loop-carried value for the register allocator.)
                let counter = self.vars[var.0 as usize].expect("loop variable is a scalar");
                self.b.def_var(counter, s);
                let body_b = self.b.create_block();
                let latch = self.b.create_block();
                let exit = self.b.create_block();
                let enter = self.b.ins().icmp(IntCC::SignedLessThan, s, e);
                let mark = self.facts.mark();
                self.enter_loop(enter, body, body_b, exit);
                if let Some((lo, hi)) = bounds {
                    self.facts.ranges.push((*var, lo, hi));
                }
                self.lower_loop_body(body, latch, exit);
                self.b.switch_to_block(latch);
                self.b.seal_block(latch);
                // `c < end <= i64::MAX`, so this never wraps.
                let c = self.b.use_var(counter);
                let next = self.b.ins().iadd_imm_s(c, 1);
                self.b.def_var(counter, next);
                if polls {
                    self.check_interrupt(*span);
                }
                let more = self.b.ins().icmp(IntCC::SignedLessThan, next, e);
                self.facts.reset(mark);
                self.b.ins().brif(more, body_b, &[], exit, &[]);
                self.b.seal_block(body_b);
                self.b.switch_to_block(exit);
                self.b.seal_block(exit);
            }
            Stmt::Block(block) => self.lower_block(block),
            Stmt::Break => {
                let target = self.loops.last().expect("checked: inside a loop").break_to;
                self.b.ins().jump(target, &[]);
                self.start_unreachable();
            }
            Stmt::Continue => {
                let target = self
                    .loops
                    .last()
                    .expect("checked: inside a loop")
                    .continue_to;
                self.b.ins().jump(target, &[]);
                self.start_unreachable();
            }
            Stmt::Return(value) => {
                let rets = match value {
                    Some(e) => vec![self.lower_expr(e)],
                    None => vec![],
                };
                self.jump_exit(&rets);
                self.start_unreachable();
            }
        }
    }

    /// Branches to the first iteration of a rotated loop if `enter`, else to `exit`, and
    /// continues in `body_b`, the loop header. The first iteration passes through a block of
    /// its own, where checks hoisted out of the loop go.
    fn enter_loop(&mut self, enter: ir::Value, body: &Block, body_b: ir::Block, exit: ir::Block) {
        let first = self.b.create_block();
        self.b.ins().brif(enter, first, &[], exit, &[]);
        self.b.switch_to_block(first);
        self.b.seal_block(first);
        self.hoist_frame_check(body);
        self.b.ins().jump(body_b, &[]);
        self.b.switch_to_block(body_b);
    }

    /// Lowers a loop body into the current block, ending in a jump to `latch` (where
    /// `continue` goes; `break` goes to `exit`). Facts learned in the body are dropped: the
    /// latch is also reached from `continue`s before them.
    fn lower_loop_body(&mut self, body: &Block, latch: ir::Block, exit: ir::Block) {
        let mark = self.facts.mark();
        self.loops.push(Loop {
            continue_to: latch,
            break_to: exit,
        });
        self.lower_block(body);
        self.loops.pop();
        self.jump(latch, &[]);
        self.facts.reset(mark);
    }

    fn lower_assign(&mut self, place: &Place, op: Option<BinOp>, value: &Expr, span: Span) {
        match place {
            Place::Local(id) => {
                let var = self.vars[id.0 as usize].expect("scalar local");
                let v = self.lower_expr(value);
                let v = match op {
                    Some(op) => {
                        let cur = self.b.use_var(var);
                        self.binary(op, value.ty, cur, v, span)
                    }
                    None => v,
                };
                self.b.def_var(var, v);
            }
            Place::Global(id) => {
                let g = self.program.global(*id);
                let VarType::Scalar(ty) = g.ty else {
                    unreachable!("checked: scalar global")
                };
                let v = self.lower_expr(value);
                let addr = self.data_address(Symbol::Global(g.name.clone()));
                let v = match op {
                    Some(op) => {
                        let cur =
                            self.b
                                .ins()
                                .load(clif_type(ty), MemFlagsData::trusted(), addr, 0);
                        self.binary(op, ty, cur, v, span)
                    }
                    None => v,
                };
                self.b.ins().store(MemFlagsData::trusted(), v, addr, 0);
            }
            Place::Index {
                array,
                index,
                span: index_span,
            } => {
                let i = self.lower_expr(index);
                let v = self.lower_expr(value);
                let addr = self.element_address(*array, i, *index_span);
                let elem = self.array_type(*array).elem;
                let v = match op {
                    Some(op) => {
                        let cur =
                            self.b
                                .ins()
                                .load(clif_type(elem), MemFlagsData::trusted(), addr, 0);
                        self.binary(op, elem, cur, v, span)
                    }
                    None => v,
                };
                self.b.ins().store(MemFlagsData::trusted(), v, addr, 0);
            }
        }
    }

    fn lower_print(&mut self, arg: &PrintArg) {
        match arg {
            PrintArg::Value(e) => {
                let v = self.lower_expr(e);
                let (f, v) = match e.ty {
                    Type::Int => (RuntimeFn::PrintInt, v),
                    Type::Float => (RuntimeFn::PrintFloat, v),
                    // Widened here: Rust may assume a `u8` argument arrives zero-extended,
                    // which Cranelift does not do for an `i8` (a release build then printed
                    // `true` for a false whose register held other bits above the low byte).
                    Type::Bool => (RuntimeFn::PrintBool, self.b.ins().uextend(types::I64, v)),
                };
                self.call_runtime(f, &[self.vmctx, v]);
            }
            PrintArg::Str(s) => {
                let addr = self.data_address(Symbol::Str(s.clone()));
                let len = self.b.ins().iconst(types::I64, s.len() as i64);
                self.call_runtime(RuntimeFn::PrintStr, &[self.vmctx, addr, len]);
            }
        }
    }

    // ---- arrays --------------------------------------------------------------------------

    fn array_type(&self, a: ArrayRef) -> ArrayType {
        let ty = match a {
            ArrayRef::Local(id) => self.func.locals[id.0 as usize].ty,
            ArrayRef::Global(id) => self.program.global(id).ty,
        };
        match ty {
            VarType::Array(a) => a,
            VarType::Scalar(_) => unreachable!("checked: array variable"),
        }
    }

    fn array(&mut self, a: ArrayRef) -> (ir::Value, ArrayType) {
        let ty = self.array_type(a);
        let base = match a {
            ArrayRef::Local(id) => {
                let offset = self.array_offsets[id.0 as usize].expect("array local");
                let base = self
                    .frame_base
                    .expect("functions with local arrays have a frame");
                self.b.ins().iadd_imm_s(base, offset as i64)
            }
            ArrayRef::Global(id) => {
                let name = self.program.global(id).name.clone();
                self.data_address(Symbol::Global(name))
            }
        };
        (base, ty)
    }

    /// Bounds-checks `index` (error at `span`) and returns the element's address. The check is
    /// left out where it cannot fail: an index whose [`range`](Self::range) is within the
    /// array, or a value already checked against this length or a shorter one.
    fn element_address(&mut self, a: ArrayRef, index: ir::Value, span: Span) -> ir::Value {
        let (base, ty) = self.array(a);
        let in_range = self
            .range(index)
            .is_some_and(|(lo, hi)| lo >= 0 && hi < i64::from(ty.len));
        if !in_range && !self.facts.checked(index, ty.len) {
            // One unsigned comparison also catches negative indexes.
            let out = self.b.ins().icmp_imm_s(
                IntCC::UnsignedGreaterThanOrEqual,
                index,
                i64::from(ty.len),
            );
            self.trap_at(out, TrapKind::IndexOutOfBounds, span);
            self.facts.below.push((index, ty.len));
        }
        let offset = match elem_size(ty.elem) {
            1 => index,
            size => self
                .b
                .ins()
                .ishl_imm_u(index, i64::from(size.trailing_zeros())),
        };
        self.b.ins().iadd(base, offset)
    }

    fn zero_array(&mut self, base: ir::Value, ty: ArrayType) {
        let bytes = array_bytes(ty);
        if bytes <= 64 {
            let zero = self.b.ins().iconst(types::I64, 0);
            for off in (0..bytes).step_by(8) {
                self.b
                    .ins()
                    .store(MemFlagsData::trusted(), zero, base, off as i32);
            }
        } else {
            let n = self.b.ins().iconst(types::I64, bytes as i64);
            self.call_runtime(RuntimeFn::Zero, &[base, n]);
        }
    }

    fn copy_array(&mut self, dst: ArrayRef, src: ArrayRef) {
        let (d, ty) = self.array(dst);
        let (s, _) = self.array(src);
        let n = self.b.ins().iconst(types::I64, array_bytes(ty) as i64);
        self.call_runtime(RuntimeFn::Copy, &[d, s, n]);
    }

    // ---- expressions ---------------------------------------------------------------------

    fn lower_expr(&mut self, e: &Expr) -> ir::Value {
        match &e.kind {
            ExprKind::Const(c) => match *c {
                Const::Int(v) => self.b.ins().iconst(types::I64, v),
                Const::Float(v) => self.b.ins().f64const(v),
                Const::Bool(v) => self.b.ins().iconst(types::I8, i64::from(v)),
            },
            ExprKind::Local(id) => {
                let var = self.vars[id.0 as usize].expect("scalar local");
                let v = self.b.use_var(var);
                self.facts.read(*id, v);
                v
            }
            ExprKind::Global(id) => {
                let name = self.program.global(*id).name.clone();
                let addr = self.data_address(Symbol::Global(name));
                self.b
                    .ins()
                    .load(clif_type(e.ty), MemFlagsData::trusted(), addr, 0)
            }
            ExprKind::Index { array, index } => {
                let i = self.lower_expr(index);
                let addr = self.element_address(*array, i, e.span);
                self.b
                    .ins()
                    .load(clif_type(e.ty), MemFlagsData::trusted(), addr, 0)
            }
            ExprKind::Unary { op, operand } => {
                let v = self.lower_expr(operand);
                match (op, operand.ty) {
                    (UnOp::Neg, Type::Int) => self.b.ins().ineg(v),
                    (UnOp::Neg, Type::Float) => self.b.ins().fneg(v),
                    (UnOp::Not, Type::Int) => self.b.ins().bnot(v),
                    (UnOp::Not, Type::Bool) => self.b.ins().bxor_imm_u(v, 1),
                    (op, ty) => unreachable!("checked: no {op:?} on {ty}"),
                }
            }
            ExprKind::Binary {
                op,
                lhs,
                rhs,
                op_span,
            } => {
                let l = self.lower_expr(lhs);
                let r = self.lower_expr(rhs);
                self.binary(*op, lhs.ty, l, r, *op_span)
            }
            ExprKind::And(lhs, rhs) => self.short_circuit(lhs, rhs, true),
            ExprKind::Or(lhs, rhs) => self.short_circuit(lhs, rhs, false),
            ExprKind::Cast(inner) => {
                let v = self.lower_expr(inner);
                match (inner.ty, e.ty) {
                    (Type::Int, Type::Float) => self.b.ins().fcvt_from_sint(types::F64, v),
                    // Saturating, NaN to 0: exactly the language's rule.
                    (Type::Float, Type::Int) => self.b.ins().fcvt_to_sint_sat(types::I64, v),
                    (Type::Bool, Type::Int) => self.b.ins().uextend(types::I64, v),
                    (from, to) => unreachable!("checked: no cast {from} as {to}"),
                }
            }
            ExprKind::Call(call) => self.lower_call(call).expect("checked: call has a value"),
        }
    }

    fn short_circuit(&mut self, lhs: &Expr, rhs: &Expr, is_and: bool) -> ir::Value {
        let l = self.lower_expr(lhs);
        let rhs_b = self.b.create_block();
        let merge = self.b.create_block();
        let result = self.b.append_block_param(merge, types::I8);
        if is_and {
            self.b.ins().brif(l, rhs_b, &[], merge, &[l.into()]);
        } else {
            self.b.ins().brif(l, merge, &[l.into()], rhs_b, &[]);
        }
        self.b.switch_to_block(rhs_b);
        self.b.seal_block(rhs_b);
        let mark = self.facts.mark();
        let r = self.lower_expr(rhs);
        self.facts.reset(mark);
        self.jump(merge, &[r.into()]);
        self.b.switch_to_block(merge);
        self.b.seal_block(merge);
        result
    }

    /// `l op r` for operands of type `ty`; `span` locates a division by zero.
    fn binary(&mut self, op: BinOp, ty: Type, l: ir::Value, r: ir::Value, span: Span) -> ir::Value {
        match ty {
            Type::Int => match op {
                BinOp::Add => self.b.ins().iadd(l, r),
                BinOp::Sub => self.b.ins().isub(l, r),
                BinOp::Mul => self.b.ins().imul(l, r),
                BinOp::Div | BinOp::Rem => self.int_div(op, l, r, span),
                BinOp::BitAnd => self.b.ins().band(l, r),
                BinOp::BitOr => self.b.ins().bor(l, r),
                BinOp::BitXor => self.b.ins().bxor(l, r),
                // Cranelift takes shift amounts modulo the width, as the language does.
                BinOp::Shl => self.b.ins().ishl(l, r),
                BinOp::Shr => self.b.ins().sshr(l, r),
                cmp => {
                    let cc = match cmp {
                        BinOp::Eq => IntCC::Equal,
                        BinOp::Ne => IntCC::NotEqual,
                        BinOp::Lt => IntCC::SignedLessThan,
                        BinOp::Le => IntCC::SignedLessThanOrEqual,
                        BinOp::Gt => IntCC::SignedGreaterThan,
                        _ => IntCC::SignedGreaterThanOrEqual,
                    };
                    self.b.ins().icmp(cc, l, r)
                }
            },
            Type::Float => match op {
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div
                    if let Some((a, b)) = self.float_constant(l).zip(self.float_constant(r)) =>
                {
                    // Folded here, not by Cranelift, so that the result is a constant the
                    // rules below see (Rust's arithmetic is the same IEEE-754 arithmetic).
                    let folded = match op {
                        BinOp::Add => a + b,
                        BinOp::Sub => a - b,
                        BinOp::Mul => a * b,
                        _ => a / b,
                    };
                    self.b.ins().f64const(folded)
                }
                BinOp::Add | BinOp::Mul => self.float_commutative(op, l, r),
                BinOp::Sub => {
                    let l = self.hoistable_float(l);
                    self.b.ins().fsub(l, r)
                }
                BinOp::Div => {
                    let l = self.hoistable_float(l);
                    self.b.ins().fdiv(l, r)
                }
                BinOp::Rem => self
                    .call_runtime(RuntimeFn::Fmod, &[l, r])
                    .expect("fmod returns"),
                BinOp::Eq => self.b.ins().fcmp(FloatCC::Equal, l, r),
                // Unordered-or-not-equal, so NaN != NaN.
                BinOp::Ne => self.b.ins().fcmp(FloatCC::NotEqual, l, r),
                BinOp::Lt => self.b.ins().fcmp(FloatCC::LessThan, l, r),
                BinOp::Le => self.b.ins().fcmp(FloatCC::LessThanOrEqual, l, r),
                BinOp::Gt => self.b.ins().fcmp(FloatCC::GreaterThan, l, r),
                BinOp::Ge => self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, l, r),
                op => unreachable!("checked: no {op:?} on float"),
            },
            Type::Bool => match op {
                BinOp::Eq => self.b.ins().icmp(IntCC::Equal, l, r),
                BinOp::Ne => self.b.ins().icmp(IntCC::NotEqual, l, r),
                op => unreachable!("checked: no {op:?} on bool"),
            },
        }
    }

    /// The instruction that computes `v` in the IR built so far (none for a block parameter).
    fn definition(&self, v: ir::Value) -> Option<ir::InstructionData> {
        match self.b.func.dfg.value_def(v) {
            ir::ValueDef::Result(inst, _) => Some(self.b.func.dfg.insts[inst]),
            _ => None,
        }
    }

    /// The value of `v` if it is an integer constant in the IR built so far.
    fn constant(&self, v: ir::Value) -> Option<i64> {
        match self.definition(v)? {
            ir::InstructionData::UnaryImm {
                opcode: ir::Opcode::Iconst,
                imm,
            } => Some(imm.bits()),
            _ => None,
        }
    }

    /// Bounds `lo..=hi` of integer value `v`, from constants, `for` variables with constant
    /// bounds and the additions, subtractions, multiplications and shifts between them, as far
    /// as they provably do not wrap.
    fn range(&self, v: ir::Value) -> Option<(i64, i64)> {
        self.range_within(v, 6)
    }

    fn range_within(&self, v: ir::Value, depth: u32) -> Option<(i64, i64)> {
        if let Some(&r) = self.facts.values.get(&v) {
            return Some(r);
        }
        if let Some(c) = self.constant(v) {
            return Some((c, c));
        }
        let depth = depth.checked_sub(1)?;
        let operand = |x: ir::Value| self.range_within(x, depth);
        let (lo, hi): (i128, i128) = match self.definition(v)? {
            ir::InstructionData::Binary { opcode, args } => {
                let (a, b) = (operand(args[0])?, operand(args[1])?);
                let (a, b) = (
                    (i128::from(a.0), i128::from(a.1)),
                    (i128::from(b.0), i128::from(b.1)),
                );
                match opcode {
                    ir::Opcode::Iadd => (a.0 + b.0, a.1 + b.1),
                    ir::Opcode::Isub => (a.0 - b.1, a.1 - b.0),
                    ir::Opcode::Imul => {
                        let corners = [a.0 * b.0, a.0 * b.1, a.1 * b.0, a.1 * b.1];
                        (*corners.iter().min()?, *corners.iter().max()?)
                    }
                    ir::Opcode::Sshr if b.0 == b.1 && (0..64).contains(&b.0) => {
                        (a.0 >> b.0, a.1 >> b.0)
                    }
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some((i64::try_from(lo).ok()?, i64::try_from(hi).ok()?))
    }

    /// The value of `v` if it is a float constant in the IR built so far.
    fn float_constant(&self, v: ir::Value) -> Option<f64> {
        match self.definition(v)? {
            ir::InstructionData::UnaryIeee64 {
                opcode: ir::Opcode::F64const,
                imm,
            } => Some(f64::from_bits(imm.bits())),
            _ => None,
        }
    }

    /// `l + r` or `l * r` on floats, with a constant operand on the right, where x86 can take
    /// it from memory instead of materializing it in a register on every pass; `x * 2.0` is
    /// `x + x`, exactly (the same rounding, infinities, signed zeros and NaNs).
    fn float_commutative(&mut self, op: BinOp, l: ir::Value, r: ir::Value) -> ir::Value {
        let constant_left = self
            .float_constant(l)
            .is_some_and(|c| !c.is_nan() && self.float_constant(r).is_none());
        let (l, r) = if constant_left { (r, l) } else { (l, r) };
        match op {
            BinOp::Mul if self.float_constant(r) == Some(2.0) => self.b.ins().fadd(l, l),
            BinOp::Mul => self.b.ins().fmul(l, r),
            _ => self.b.ins().fadd(l, r),
        }
    }

    /// `v`, or for a float constant the same bits in a form Cranelift hoists out of loops. As
    /// the left operand of a division or subtraction a constant must be in a register, and
    /// Cranelift rematerializes `f64const` (two instructions on x86) in every block using it.
    fn hoistable_float(&mut self, v: ir::Value) -> ir::Value {
        match self.float_constant(v) {
            Some(c) => {
                let bits = self.b.ins().iconst(types::I64, c.to_bits() as i64);
                self.b.ins().bitcast(types::F64, MemFlagsData::new(), bits)
            }
            None => v,
        }
    }

    fn int_div(&mut self, op: BinOp, l: ir::Value, r: ir::Value, span: Span) -> ir::Value {
        // A constant divisor other than 0 and -1 can neither trap nor overflow: no checks.
        match self.constant(r) {
            Some(d) if d > 1 && (d as u64).is_power_of_two() => {
                let k = i64::from(d.trailing_zeros());
                if self.range(l).is_some_and(|(lo, _)| lo >= 0) {
                    return match op {
                        BinOp::Div => self.b.ins().sshr_imm_s(l, k),
                        _ => self.b.ins().band_imm_s(l, d - 1),
                    };
                }
                // Rounding toward zero: add `d - 1` to negative dividends before shifting.
                let sign = self.b.ins().sshr_imm_s(l, 63);
                let bias = self.b.ins().ushr_imm_s(sign, 64 - k);
                let biased = self.b.ins().iadd(l, bias);
                let q = self.b.ins().sshr_imm_s(biased, k);
                return match op {
                    BinOp::Div => q,
                    _ => {
                        let back = self.b.ins().ishl_imm_s(q, k);
                        self.b.ins().isub(l, back)
                    }
                };
            }
            Some(d) if d != 0 && d != -1 => {
                return match op {
                    BinOp::Div => self.b.ins().sdiv(l, r),
                    _ => self.b.ins().srem(l, r),
                };
            }
            _ => {}
        }
        let zero = self.b.ins().icmp_imm_s(IntCC::Equal, r, 0);
        self.trap_at(zero, TrapKind::DivisionByZero, span);
        // `MIN / -1` overflows the machine instruction; the language defines it as `-MIN`
        // (which wraps to MIN) and `MIN % -1` as 0, so divide by 1 instead and fix up.
        let minus_one = self.b.ins().icmp_imm_s(IntCC::Equal, r, -1);
        let one = self.b.ins().iconst(types::I64, 1);
        let safe = self.b.ins().select(minus_one, one, r);
        if op == BinOp::Div {
            let q = self.b.ins().sdiv(l, safe);
            let neg = self.b.ins().ineg(l);
            self.b.ins().select(minus_one, neg, q)
        } else {
            let rem = self.b.ins().srem(l, safe);
            let z = self.b.ins().iconst(types::I64, 0);
            self.b.ins().select(minus_one, z, rem)
        }
    }

    fn lower_call(&mut self, call: &Call) -> Option<ir::Value> {
        let args: Vec<ir::Value> = call.args.iter().map(|a| self.lower_expr(a)).collect();
        match call.callee {
            Callee::Builtin(b) => Some(self.builtin(b, &args)),
            Callee::Function(id) => {
                let callee = self.program.function(id);
                if inline_candidate(callee) {
                    self.inline_call(callee, &args, call.span)
                } else if let Some(guard) = guard_of(callee) {
                    self.guarded_call(callee, guard, &args, call.span)
                } else {
                    self.call_function(callee, &args, call.span)
                }
            }
            Callee::Host(id) => {
                let host = &self.hosts[id.0 as usize];
                let (name, ret) = (host.name.clone(), host.sig.ret);
                let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    (args.len().max(1) * 8) as u32,
                    3,
                ));
                for (i, (&a, e)) in args.iter().zip(&call.args).enumerate() {
                    let bits = match e.ty {
                        Type::Bool => self.b.ins().uextend(types::I64, a),
                        _ => a,
                    };
                    self.b
                        .ins()
                        .stack_store(self.ptr, bits, slot, (i * 8) as i32);
                }
                let args_ptr = self.b.ins().stack_addr(self.ptr, slot, 0);
                let record = self.data_address(Symbol::Host(name));
                let bits = self
                    .call_runtime(RuntimeFn::CallHost, &[self.vmctx, record, args_ptr])
                    .expect("host call returns bits");
                let trapped = self.b.ins().load(
                    types::I8,
                    MemFlagsData::trusted(),
                    self.vmctx,
                    OFFSET_TRAPPED,
                );
                self.check_trapped(trapped, call.span);
                ret.map(|t| match t {
                    Type::Int => bits,
                    Type::Float => self.b.ins().bitcast(types::F64, MemFlagsData::new(), bits),
                    Type::Bool => self.b.ins().ireduce(types::I8, bits),
                })
            }
        }
    }

    /// For an inlined call at `span`: the frame the call would have taken must still fit the
    /// depth limit, the same error at the same call as the callee's entry check would give.
    /// (Its code runs in this frame, so the native stack needs no check.)
    fn check_frame_room(&mut self, span: Span) {
        if self.facts.frame_room {
            return;
        }
        let too_deep = self
            .b
            .ins()
            .icmp_imm_s(IntCC::SignedLessThan, self.budget, 1);
        let site = self.site(span);
        self.trap_if(too_deep, trap_code(TrapKind::StackOverflow), site);
        self.facts.frame_room = true;
    }

    /// Before the first iteration of a loop whose body starts with an inlined call (nothing
    /// observable happens before it): its frame check, once for the whole loop.
    fn hoist_frame_check(&mut self, body: &Block) {
        if let Effect::InlinedCall(span) = block_effect(self.program, body) {
            self.check_frame_room(span);
        }
    }

    /// Lowers a call to [`inline_candidate`] `callee` as its body, in this function.
    fn inline_call(
        &mut self,
        callee: &'a Function,
        args: &[ir::Value],
        span: Span,
    ) -> Option<ir::Value> {
        self.check_frame_room(span);
        let exit = self.result_block(callee);
        let caller = self.enter_callee(callee, callee.locals.len(), args, exit);
        self.lower_block(&callee.body);
        let zero = self.zero_result();
        self.jump_exit(&zero);
        self.leave_callee(caller);
        self.result_of(exit)
    }

    /// Lowers a call to `callee`, which starts with `guard` ([`guard_of`]): the guard is
    /// tested here, and only when it does not hold is `callee` called.
    fn guarded_call(
        &mut self,
        callee: &'a Function,
        guard: &'a Stmt,
        args: &[ir::Value],
        span: Span,
    ) -> Option<ir::Value> {
        // Either way the call takes a frame: the same check, at the same call, as inlining.
        self.check_frame_room(span);
        let exit = self.result_block(callee);
        let caller = self.enter_callee(callee, callee.sig.params.len(), args, exit);
        // `if COND { return VALUE; }`: its `return` goes to `exit`.
        self.lower_stmt(guard);
        self.leave_callee(caller);
        let result = self.call_function(callee, args, span);
        let result: Vec<ir::BlockArg> = result.into_iter().map(Into::into).collect();
        self.jump(exit, &result);
        self.result_of(exit)
    }

    /// The block where `callee`'s code, lowered in this function, delivers its result.
    fn result_block(&mut self, callee: &Function) -> ir::Block {
        let exit = self.b.create_block();
        if let Some(ret) = callee.sig.ret {
            self.b.append_block_param(exit, clif_type(ret));
        }
        exit
    }

    /// Continues after a [`result_block`](Self::result_block), with the result it received.
    fn result_of(&mut self, exit: ir::Block) -> Option<ir::Value> {
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.b.block_params(exit).first().copied()
    }

    /// Switches the lowering to `callee`'s code, in this function: its first `locals` locals
    /// get variables (its parameters, set to `args`, come first), and `return` goes to `exit`.
    fn enter_callee(
        &mut self,
        callee: &'a Function,
        locals: usize,
        args: &[ir::Value],
        exit: ir::Block,
    ) -> CallerContext<'a> {
        let vars: Vec<Option<Variable>> = callee
            .locals
            .iter()
            .enumerate()
            .map(|(i, local)| match local.ty {
                VarType::Scalar(t) if i < locals => Some(self.b.declare_var(clif_type(t))),
                _ => None,
            })
            .collect();
        for (var, &arg) in vars.iter().zip(args) {
            self.b.def_var(var.expect("parameters are scalars"), arg);
        }
        CallerContext {
            func: std::mem::replace(&mut self.func, callee),
            vars: std::mem::replace(&mut self.vars, vars),
            array_offsets: std::mem::replace(
                &mut self.array_offsets,
                vec![None; callee.locals.len()],
            ),
            exit: std::mem::replace(&mut self.exit, exit),
            loops: std::mem::take(&mut self.loops),
            // Ranges name locals, which are the callee's in its code.
            ranges: std::mem::take(&mut self.facts.ranges),
        }
    }

    fn leave_callee(&mut self, caller: CallerContext<'a>) {
        self.func = caller.func;
        self.vars = caller.vars;
        self.array_offsets = caller.array_offsets;
        self.exit = caller.exit;
        self.loops = caller.loops;
        self.facts.ranges = caller.ranges;
    }

    /// A call of script function `callee`, at `span`.
    fn call_function(
        &mut self,
        callee: &Function,
        args: &[ir::Value],
        span: Span,
    ) -> Option<ir::Value> {
        // The callee checks its budget on entry; its error gets this call's location from
        // `check_trapped` below.
        let budget = self.b.ins().iadd_imm_s(self.budget, -1);
        let sig = clif_signature(self.isa, &callee.sig);
        let f = self.import_function(Symbol::Function(callee.name.clone()), sig, true);
        let mut full = vec![self.vmctx, budget];
        full.extend(args);
        let inst = self.b.ins().call(f, &full);
        let results = self.b.inst_results(inst).to_vec();
        let (&trapped, result) = results.split_last().expect("the trapped flag");
        self.check_trapped(trapped, span);
        result.first().copied()
    }

    fn builtin(&mut self, b: Builtin, args: &[ir::Value]) -> ir::Value {
        let unary = |s: &mut Self, f: RuntimeFn| s.call_runtime(f, &args[..1]).expect("returns");
        match b {
            Builtin::Sqrt => self.b.ins().sqrt(args[0]),
            Builtin::Floor => self.b.ins().floor(args[0]),
            Builtin::Ceil => self.b.ins().ceil(args[0]),
            Builtin::Sin => unary(self, RuntimeFn::Sin),
            Builtin::Cos => unary(self, RuntimeFn::Cos),
            Builtin::Tan => unary(self, RuntimeFn::Tan),
            Builtin::Exp => unary(self, RuntimeFn::Exp),
            Builtin::Ln => unary(self, RuntimeFn::Ln),
            Builtin::Pow => self
                .call_runtime(RuntimeFn::Pow, &args[..2])
                .expect("returns"),
            // `iabs` wraps, so abs(MIN) == MIN as the language says.
            Builtin::AbsInt => self.b.ins().iabs(args[0]),
            Builtin::AbsFloat => self.b.ins().fabs(args[0]),
            Builtin::MinInt => self.b.ins().smin(args[0], args[1]),
            Builtin::MaxInt => self.b.ins().smax(args[0], args[1]),
            // Cranelift's fmin/fmax propagate NaN and order -0.0 below 0.0, as the language does.
            Builtin::MinFloat => self.b.ins().fmin(args[0], args[1]),
            Builtin::MaxFloat => self.b.ins().fmax(args[0], args[1]),
        }
    }
}
