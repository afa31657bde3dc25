//! Name resolution, constant evaluation and type checking: the syntax tree to a checked
//! [`Program`] (LANGUAGE.md sections 2-7 and the `main` rule of section 10).
//!
//! Every error is reported, and none twice: an expression that failed to check becomes `None`
//! (the internal error type), and whatever consumes it stays silent. A local, global or function
//! whose declared type was wrong is likewise recorded with an unknown type, so its uses do not
//! add follow-on errors. The [`Program`] built alongside is only used when no diagnostic was
//! reported, which is why it may hold placeholders where something failed.

use crate::CheckOptions;
use crate::ast::{self, BinaryOp, Else, ExprKind as AstKind, FnItem, Item, StmtKind, TypeKind};
use crate::consts::{self, FoldError};
use crate::diagnostic::Diagnostic;
use crate::program::*;
use crate::source::{SourceFile, Span};
use std::collections::HashMap;
use std::sync::Arc;

const BUILTINS: &[&str] = &[
    "print", "sqrt", "sin", "cos", "tan", "exp", "ln", "floor", "ceil", "pow", "abs", "min", "max",
    "len",
];

#[derive(Clone, Copy, Debug)]
enum ItemRef {
    Func(u32),
    Global(u32),
    Const(u32),
}

#[derive(Clone, Copy, PartialEq)]
enum Ret {
    Nothing,
    Value(Type),
    /// The declared return type was wrong (already reported).
    Error,
}

struct FuncInfo {
    params: Vec<Option<Type>>,
    ret: Ret,
    /// The header did not parse: calls are not checked against it.
    poisoned: bool,
}

struct LocalInfo {
    ty: Option<VarType>,
    loop_var: bool,
}

enum Resolved {
    Local(u32),
    Item(ItemRef),
    /// A builtin or a host function.
    OtherFunction,
    Unknown,
}

enum ArrayLookup {
    Array(ArrayRef, ArrayType),
    Scalar(Type),
    /// Reported already.
    Failed,
}

/// A checked call: a value, a call without one, or a `print`.
enum CallOut {
    Value(Expr),
    Void(Call),
    Print(PrintArg),
}

#[derive(Clone, Copy, PartialEq)]
enum ConstState {
    Unvisited,
    Visiting,
    Done,
}

pub fn check_module(
    file: &Arc<SourceFile>,
    module: &ast::Module,
    hosts: &[HostSignature],
    options: &CheckOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Program> {
    let mut c = Checker {
        file,
        hosts,
        diagnostics,
        names: HashMap::new(),
        fn_items: Vec::new(),
        global_items: Vec::new(),
        const_items: Vec::new(),
        funcs: Vec::new(),
        global_types: Vec::new(),
        const_values: Vec::new(),
        locals: Vec::new(),
        local_info: Vec::new(),
        scope: HashMap::new(),
        scope_log: Vec::new(),
        loops: 0,
        ret: Ret::Nothing,
        in_const: false,
    };
    c.collect(module);
    c.eval_consts();
    for i in 0..c.global_items.len() {
        let ty = c.resolve_type(&c.global_items[i].ty);
        c.global_types.push(ty);
    }
    for i in 0..c.fn_items.len() {
        let info = c.signature(c.fn_items[i]);
        c.funcs.push(info);
    }
    let globals: Vec<Global> = (0..c.global_items.len())
        .map(|i| c.check_global(i))
        .collect();
    let functions: Vec<Function> = (0..c.fn_items.len()).map(|i| c.check_fn(i)).collect();
    if options.require_main {
        c.check_main();
    }
    let interface = interface(&globals, &functions, &c.const_items, &c.const_values);
    // Items are checked in phases (consts, then signatures, then bodies), after the whole file
    // was parsed; report everything in file order.
    diagnostics.sort_by_key(|d| d.span.start);
    Some(Program {
        file: file.clone(),
        globals,
        functions,
        interface,
    })
}

/// The module's [`Interface`]; only meaningful when checking found no error.
fn interface(
    globals: &[Global],
    functions: &[Function],
    const_items: &[&ast::VarItem],
    const_values: &[Option<Const>],
) -> Interface {
    let functions = functions
        .iter()
        .map(|f| (f.name.clone(), ItemInterface::Function(f.sig.clone())));
    let globals = globals
        .iter()
        .map(|g| (g.name.clone(), ItemInterface::Global(g.ty)));
    let consts = const_items.iter().zip(const_values).filter_map(|(k, v)| {
        let value = (*v)?;
        Some((k.name.text.clone(), ItemInterface::Const(value)))
    });
    let mut items: Vec<_> = functions.chain(globals).chain(consts).collect();
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Interface { items }
}

struct Checker<'a> {
    file: &'a SourceFile,
    hosts: &'a [HostSignature],
    diagnostics: &'a mut Vec<Diagnostic>,
    names: HashMap<&'a str, ItemRef>,
    fn_items: Vec<&'a FnItem>,
    global_items: Vec<&'a ast::VarItem>,
    const_items: Vec<&'a ast::VarItem>,
    funcs: Vec<FuncInfo>,
    global_types: Vec<Option<VarType>>,
    /// `None` until evaluated, and for a const whose definition has an error.
    const_values: Vec<Option<Const>>,
    // The function body being checked.
    locals: Vec<Local>,
    local_info: Vec<LocalInfo>,
    /// Each name's visible bindings, innermost last.
    scope: HashMap<&'a str, Vec<u32>>,
    /// Names declared so far in the open scopes, to undo when a scope closes.
    scope_log: Vec<&'a str>,
    loops: u32,
    ret: Ret,
    /// Checking a constant expression: no globals, no calls.
    in_const: bool,
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 argument".to_string()
    } else {
        format!("{n} arguments")
    }
}

fn op_symbol(op: BinOp) -> &'static str {
    use BinOp::*;
    match op {
        Add => "+",
        Sub => "-",
        Mul => "*",
        Div => "/",
        Rem => "%",
        BitAnd => "&",
        BitOr => "|",
        BitXor => "^",
        Shl => "<<",
        Shr => ">>",
        Eq => "==",
        Ne => "!=",
        Lt => "<",
        Le => "<=",
        Gt => ">",
        Ge => ">=",
    }
}

/// Whether `op` applies to two operands of type `ty`.
fn op_accepts(op: BinOp, ty: Type) -> bool {
    use BinOp::*;
    match op {
        Add | Sub | Mul | Div | Rem | Lt | Le | Gt | Ge => matches!(ty, Type::Int | Type::Float),
        BitAnd | BitOr | BitXor | Shl | Shr => ty == Type::Int,
        Eq | Ne => true,
    }
}

/// Placeholder type for something whose real type is unknown after an error; never seen by a
/// back end, because a program with errors is not returned.
const UNKNOWN: VarType = VarType::Scalar(Type::Int);

impl<'a> Checker<'a> {
    fn error(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    fn mismatch(
        &mut self,
        span: Span,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) {
        self.error(
            Diagnostic::new("mismatched types", span)
                .with_label(format!("expected {expected}, found {found}")),
        );
    }

    fn expect_type(&mut self, e: Option<Expr>, want: Type) -> Option<Expr> {
        let e = e?;
        if e.ty == want {
            Some(e)
        } else {
            self.mismatch(e.span, want, e.ty);
            None
        }
    }

    // ----- items -----

    fn collect(&mut self, module: &'a ast::Module) {
        for item in &module.items {
            let (name, r) = match item {
                Item::Fn(f) => {
                    self.fn_items.push(f);
                    (&f.name, ItemRef::Func(self.fn_items.len() as u32 - 1))
                }
                Item::Global(g) => {
                    self.global_items.push(g);
                    (&g.name, ItemRef::Global(self.global_items.len() as u32 - 1))
                }
                Item::Const(k) => {
                    self.const_items.push(k);
                    (&k.name, ItemRef::Const(self.const_items.len() as u32 - 1))
                }
            };
            self.register(name, r);
        }
        self.const_values = vec![None; self.const_items.len()];
    }

    fn item_name(&self, r: ItemRef) -> &'a ast::Name {
        match r {
            ItemRef::Func(i) => &self.fn_items[i as usize].name,
            ItemRef::Global(i) => &self.global_items[i as usize].name,
            ItemRef::Const(i) => &self.const_items[i as usize].name,
        }
    }

    fn register(&mut self, name: &'a ast::Name, r: ItemRef) {
        let n = name.text.as_str();
        if BUILTINS.contains(&n) {
            self.error(
                Diagnostic::new(
                    format!("`{n}` is a builtin and cannot be redefined"),
                    name.span,
                )
                .with_label("choose another name"),
            );
        } else if self.hosts.iter().any(|h| h.name == n) {
            self.error(
                Diagnostic::new(
                    format!("`{n}` is a registered host function and cannot be redefined"),
                    name.span,
                )
                .with_label("choose another name"),
            );
        } else if let Some(&prev) = self.names.get(n) {
            let at = self.file.location(self.item_name(prev).span.start);
            self.error(
                Diagnostic::new(
                    format!("the name `{n}` is defined multiple times"),
                    name.span,
                )
                .with_label(format!("`{n}` redefined here"))
                .with_note(format!("first defined at {at}")),
            );
        } else {
            self.names.insert(n, r);
        }
    }

    fn resolve_type(&mut self, t: &'a ast::TypeExpr) -> Option<VarType> {
        match &t.kind {
            TypeKind::Scalar(s) => Some(VarType::Scalar(*s)),
            TypeKind::Array(elem, len) => {
                let len = self.array_len(len)?;
                Some(VarType::Array(ArrayType { elem: *elem, len }))
            }
            TypeKind::Error => None,
        }
    }

    /// An array length: an int literal or an int const, `1..=MAX_ARRAY_LEN`.
    fn array_len(&mut self, e: &'a ast::Expr) -> Option<u32> {
        let value = match &e.kind {
            AstKind::Int(v) => *v,
            AstKind::Error => return None,
            AstKind::Name(n) if matches!(self.names.get(n.as_str()), Some(ItemRef::Const(_))) => {
                match self.check_expr(e)? {
                    Expr {
                        kind: ExprKind::Const(Const::Int(v)),
                        ..
                    } => v,
                    other => {
                        self.mismatch(e.span, Type::Int, other.ty);
                        return None;
                    }
                }
            }
            _ => {
                self.error(
                    Diagnostic::new(
                        "array length must be an integer literal or an int const",
                        e.span,
                    )
                    .with_label("not a literal or a const"),
                );
                return None;
            }
        };
        if (1..=i64::from(MAX_ARRAY_LEN)).contains(&value) {
            Some(value as u32)
        } else {
            self.error(
                Diagnostic::new("array length out of range", e.span).with_label(format!(
                    "must be between 1 and {MAX_ARRAY_LEN}, found {value}"
                )),
            );
            None
        }
    }

    /// The names of consts an expression mentions (its dependencies).
    fn const_deps(&self, e: &'a ast::Expr, out: &mut Vec<u32>) {
        match &e.kind {
            AstKind::Name(n) => {
                if let Some(ItemRef::Const(i)) = self.names.get(n.as_str()) {
                    out.push(*i);
                }
            }
            AstKind::Call { args, .. } => args.iter().for_each(|a| self.const_deps(a, out)),
            AstKind::Index { base, index } => {
                self.const_deps(base, out);
                self.const_deps(index, out);
            }
            AstKind::Unary { operand, .. } => self.const_deps(operand, out),
            AstKind::Binary { lhs, rhs, .. } => {
                self.const_deps(lhs, out);
                self.const_deps(rhs, out);
            }
            AstKind::Cast { expr, .. } => self.const_deps(expr, out),
            AstKind::Int(_)
            | AstKind::Float(_)
            | AstKind::Bool(_)
            | AstKind::Str(_)
            | AstKind::Error => {}
        }
    }

    /// Evaluates every const, each after the consts it mentions. The depth-first walk keeps
    /// its own stack, so a chain of 100,000 consts each naming the next costs no call stack.
    fn eval_consts(&mut self) {
        let n = self.const_items.len();
        let mut state = vec![ConstState::Unvisited; n];
        let mut in_cycle = vec![false; n];
        for root in 0..n {
            if state[root] != ConstState::Unvisited {
                continue;
            }
            // (const, its dependencies, how many of them were visited)
            let mut stack: Vec<(usize, Vec<u32>, usize)> = Vec::new();
            state[root] = ConstState::Visiting;
            stack.push((root, self.deps_of(root), 0));
            while let Some((c, deps, next)) = stack.last_mut() {
                if let Some(&d) = deps.get(*next) {
                    *next += 1;
                    let d = d as usize;
                    match state[d] {
                        ConstState::Unvisited => {
                            state[d] = ConstState::Visiting;
                            let deps = self.deps_of(d);
                            stack.push((d, deps, 0));
                        }
                        ConstState::Visiting => {
                            let from = stack.iter().position(|s| s.0 == d).unwrap_or(0);
                            let cycle: Vec<usize> = stack[from..].iter().map(|s| s.0).collect();
                            self.report_cycle(&cycle, &mut in_cycle);
                        }
                        ConstState::Done => {}
                    }
                    continue;
                }
                let c = *c;
                stack.pop();
                state[c] = ConstState::Done;
                if !in_cycle[c] {
                    self.const_values[c] = self.eval_const(c).or_else(|| self.placeholder(c));
                }
            }
        }
    }

    fn deps_of(&self, c: usize) -> Vec<u32> {
        let mut deps = Vec::new();
        if let Some(init) = &self.const_items[c].init {
            self.const_deps(init, &mut deps);
        }
        deps
    }

    fn report_cycle(&mut self, cycle: &[usize], in_cycle: &mut [bool]) {
        if cycle.iter().any(|&c| in_cycle[c]) {
            return;
        }
        for &c in cycle {
            in_cycle[c] = true;
        }
        let first = self.const_items[cycle[0]];
        let mut path: Vec<&str> = cycle
            .iter()
            .map(|&c| self.const_items[c].name.text.as_str())
            .collect();
        path.push(&first.name.text);
        let d = Diagnostic::new(
            format!("cycle in the definition of const `{}`", first.name.text),
            first.name.span,
        )
        .with_label("this const depends on itself")
        .with_note(format!("the cycle is {}", path.join(" -> ")));
        self.error(d);
    }

    /// A stand-in value for a const whose initializer failed, so that its uses are still
    /// checked against its declared type (`const C: int = 1.5; global H: float = C;` is two
    /// errors). One, not zero, so that dividing by it reports nothing more. The module already
    /// has an error, so no program is ever built from it.
    fn placeholder(&self, c: usize) -> Option<Const> {
        match self.const_items[c].ty.kind {
            TypeKind::Scalar(Type::Int) => Some(Const::Int(1)),
            TypeKind::Scalar(Type::Float) => Some(Const::Float(1.0)),
            TypeKind::Scalar(Type::Bool) => Some(Const::Bool(true)),
            _ => None,
        }
    }

    fn eval_const(&mut self, c: usize) -> Option<Const> {
        let item = self.const_items[c];
        let ty = match &item.ty.kind {
            TypeKind::Scalar(t) => Some(*t),
            TypeKind::Array(..) => {
                self.error(
                    Diagnostic::new("a const must have a scalar type", item.ty.span)
                        .with_label("expected int, float or bool"),
                );
                None
            }
            TypeKind::Error => None,
        };
        let Some(init) = &item.init else {
            self.error(
                Diagnostic::new("missing initializer", item.name.span)
                    .with_label(format!("const `{}` needs a value", item.name.text)),
            );
            return None;
        };
        let value = self.const_expr(init);
        self.expect_type(value, ty?)
            .map(|e| e.kind)
            .and_then(|k| match k {
                ExprKind::Const(c) => Some(c),
                _ => None,
            })
    }

    /// Checks and folds a constant expression; the result is an `ExprKind::Const`.
    fn const_expr(&mut self, e: &'a ast::Expr) -> Option<Expr> {
        self.in_const = true;
        let checked = self.check_expr(e);
        self.in_const = false;
        let checked = checked?;
        match consts::fold(&checked) {
            Ok(c) => Some(Expr {
                kind: ExprKind::Const(c),
                ty: checked.ty,
                span: checked.span,
            }),
            Err(FoldError::DivisionByZero(span)) => {
                self.error(
                    Diagnostic::new("division by zero in a constant expression", span)
                        .with_label("the divisor is zero"),
                );
                None
            }
            // `in_const` made the checker reject variables and calls already.
            Err(FoldError::NotConstant) => None,
        }
    }

    fn check_global(&mut self, i: usize) -> Global {
        let item = self.global_items[i];
        let ty = self.global_types[i];
        let mut init = None;
        match (ty, &item.init) {
            (Some(VarType::Scalar(t)), Some(e)) => {
                let value = self.const_expr(e);
                if let Some(Expr {
                    kind: ExprKind::Const(c),
                    ..
                }) = self.expect_type(value, t)
                {
                    init = Some(c);
                }
            }
            (Some(VarType::Scalar(_)), None) => self.error(
                Diagnostic::new("missing initializer", item.name.span).with_label(format!(
                    "global `{}` needs an initial value",
                    item.name.text
                )),
            ),
            (Some(VarType::Array(_)), Some(e)) => self.error(
                Diagnostic::new("a global array cannot have an initializer", e.span)
                    .with_label("global arrays start zeroed"),
            ),
            (Some(VarType::Array(_)), None) => {}
            (None, Some(e)) => {
                self.const_expr(e);
            }
            (None, None) => {}
        }
        Global {
            name: item.name.text.clone(),
            ty: ty.unwrap_or(UNKNOWN),
            init,
            span: item.name.span,
        }
    }

    fn signature(&mut self, f: &'a FnItem) -> FuncInfo {
        if f.broken {
            return FuncInfo {
                params: Vec::new(),
                ret: Ret::Error,
                poisoned: true,
            };
        }
        let mut params = Vec::new();
        for p in &f.params {
            let ty = match self.resolve_type(&p.ty) {
                Some(VarType::Scalar(t)) => Some(t),
                Some(VarType::Array(_)) => {
                    self.error(
                        Diagnostic::new("arrays cannot be passed to functions", p.ty.span)
                            .with_label("expected int, float or bool"),
                    );
                    None
                }
                None => None,
            };
            params.push(ty);
        }
        let ret = match &f.ret {
            None => Ret::Nothing,
            Some(t) => match self.resolve_type(t) {
                Some(VarType::Scalar(t)) => Ret::Value(t),
                Some(VarType::Array(_)) => {
                    self.error(
                        Diagnostic::new("arrays cannot be returned from functions", t.span)
                            .with_label("expected int, float or bool"),
                    );
                    Ret::Error
                }
                None => Ret::Error,
            },
        };
        FuncInfo {
            params,
            ret,
            poisoned: false,
        }
    }

    fn check_fn(&mut self, i: usize) -> Function {
        let f = self.fn_items[i];
        self.locals.clear();
        self.local_info.clear();
        self.scope.clear();
        self.scope_log.clear();
        self.loops = 0;
        let info = &self.funcs[i];
        self.ret = info.ret;
        let sig = Signature {
            params: info.params.iter().map(|p| p.unwrap_or(Type::Int)).collect(),
            ret: match info.ret {
                Ret::Value(t) => Some(t),
                _ => None,
            },
        };
        let param_types = info.params.clone();
        let mut body = Vec::new();
        if !f.broken {
            for (p, ty) in f.params.iter().zip(param_types) {
                if self
                    .scope
                    .get(p.name.text.as_str())
                    .is_some_and(|v| !v.is_empty())
                {
                    self.error(
                        Diagnostic::new(
                            format!("duplicate parameter `{}`", p.name.text),
                            p.name.span,
                        )
                        .with_label("a parameter of this name already exists"),
                    );
                }
                self.declare(&p.name.text, ty.map(VarType::Scalar), false);
            }
        }
        // A reused body was not parsed: the caller has code compiled from the same text.
        if !f.broken && !f.reused {
            body = self.check_block(&f.body.stmts);
            if let (Ret::Value(t), Some(ret)) = (self.ret, &f.ret)
                && !f.body_had_errors
                && !list_diverges(&f.body.stmts)
            {
                self.error(
                    Diagnostic::new("missing return", ret.span).with_label(format!(
                        "this function must return {t}, but can reach the end of its body"
                    )),
                );
            }
        }
        Function {
            name: f.name.text.clone(),
            span: f.name.span,
            item: f.item,
            sig,
            locals: std::mem::take(&mut self.locals),
            body,
            reused: f.reused,
        }
    }

    fn check_main(&mut self) {
        match self.names.get("main") {
            Some(&ItemRef::Func(i)) => {
                let f = self.fn_items[i as usize];
                if !f.params.is_empty() {
                    self.error(
                        Diagnostic::new("`main` must not take parameters", f.name.span)
                            .with_label("declared with parameters here"),
                    );
                }
                if let Ret::Value(t) = self.funcs[i as usize].ret
                    && t != Type::Int
                {
                    self.error(
                        Diagnostic::new("`main` must return nothing or int", f.name.span)
                            .with_label(format!("returns {t}")),
                    );
                }
            }
            Some(&r) => {
                let name = self.item_name(r);
                self.error(
                    Diagnostic::new("`main` must be a function", name.span)
                        .with_label("expected `fn main()`"),
                );
            }
            None => self.error(
                Diagnostic::new("missing `fn main()`", Span::new(0, 0))
                    .with_label("`kiln run` calls `fn main()`, which this file does not define"),
            ),
        }
    }

    // ----- scopes and names -----

    fn declare(&mut self, name: &'a str, ty: Option<VarType>, loop_var: bool) -> LocalId {
        let id = self.locals.len() as u32;
        self.locals.push(Local {
            name: name.to_string(),
            ty: ty.unwrap_or(UNKNOWN),
        });
        self.local_info.push(LocalInfo { ty, loop_var });
        self.scope.entry(name).or_default().push(id);
        self.scope_log.push(name);
        LocalId(id)
    }

    fn close_scope(&mut self, mark: usize) {
        while self.scope_log.len() > mark {
            if let Some(name) = self.scope_log.pop()
                && let Some(ids) = self.scope.get_mut(name)
            {
                ids.pop();
            }
        }
    }

    fn resolve(&self, name: &str) -> Resolved {
        if let Some(&id) = self.scope.get(name).and_then(|ids| ids.last()) {
            return Resolved::Local(id);
        }
        if let Some(&r) = self.names.get(name) {
            return Resolved::Item(r);
        }
        if BUILTINS.contains(&name) || self.hosts.iter().any(|h| h.name == name) {
            return Resolved::OtherFunction;
        }
        Resolved::Unknown
    }

    fn unknown_name(&mut self, name: &str, span: Span) {
        self.error(
            Diagnostic::new(format!("unknown name `{name}`"), span)
                .with_label("not found in this scope"),
        );
    }

    fn function_as_value(&mut self, name: &str, span: Span) {
        self.error(
            Diagnostic::new(format!("expected a value, found function `{name}`"), span)
                .with_label(format!("call it: `{name}(...)`")),
        );
    }

    fn global_in_const(&mut self, name: &str, span: Span) {
        self.error(
            Diagnostic::new("globals cannot be used in constant expressions", span)
                .with_label(format!("`{name}` is a global")),
        );
    }

    fn array_as_value(&mut self, name: &str, ty: ArrayType, span: Span) {
        self.error(
            Diagnostic::new("array used as a value", span)
                .with_label(format!(
                    "`{name}` is an array of type {}",
                    VarType::Array(ty)
                ))
                .with_note("an array can be indexed, copied with `=` or passed to `len`"),
        );
    }

    /// Resolves a name that should be an array, reporting names that are no variable at all.
    fn lookup_array(&mut self, name: &str, span: Span) -> ArrayLookup {
        let ty = match self.resolve(name) {
            Resolved::Local(id) => self.local_info[id as usize]
                .ty
                .map(|t| (ArrayRef::Local(LocalId(id)), t)),
            Resolved::Item(ItemRef::Global(i)) => {
                if self.in_const {
                    self.global_in_const(name, span);
                    return ArrayLookup::Failed;
                }
                self.global_types[i as usize].map(|t| (ArrayRef::Global(GlobalId(i)), t))
            }
            Resolved::Item(ItemRef::Const(i)) => {
                return match self.const_values[i as usize] {
                    Some(c) => ArrayLookup::Scalar(c.ty()),
                    None => ArrayLookup::Failed,
                };
            }
            Resolved::Item(ItemRef::Func(_)) | Resolved::OtherFunction => {
                self.function_as_value(name, span);
                return ArrayLookup::Failed;
            }
            Resolved::Unknown => {
                self.unknown_name(name, span);
                return ArrayLookup::Failed;
            }
        };
        match ty {
            Some((r, VarType::Array(a))) => ArrayLookup::Array(r, a),
            Some((_, VarType::Scalar(t))) => ArrayLookup::Scalar(t),
            None => ArrayLookup::Failed,
        }
    }

    /// The array variable a name denotes, without reporting anything.
    fn peek_array(&self, e: &ast::Expr) -> Option<(ArrayRef, ArrayType)> {
        let AstKind::Name(name) = &e.kind else {
            return None;
        };
        let (r, ty) = match self.resolve(name) {
            Resolved::Local(id) => (
                ArrayRef::Local(LocalId(id)),
                self.local_info[id as usize].ty?,
            ),
            Resolved::Item(ItemRef::Global(i)) if !self.in_const => (
                ArrayRef::Global(GlobalId(i)),
                self.global_types[i as usize]?,
            ),
            _ => return None,
        };
        match ty {
            VarType::Array(a) => Some((r, a)),
            VarType::Scalar(_) => None,
        }
    }

    /// The source of an array copy into a variable of type `want`.
    fn array_source(&mut self, e: &'a ast::Expr, want: ArrayType) -> Option<ArrayRef> {
        if let Some((r, found)) = self.peek_array(e) {
            if found == want {
                return Some(r);
            }
            self.mismatch(e.span, VarType::Array(want), VarType::Array(found));
            return None;
        }
        if let Some(x) = self.check_expr(e) {
            self.mismatch(e.span, VarType::Array(want), x.ty);
        }
        None
    }

    // ----- statements -----

    fn check_block(&mut self, stmts: &'a [ast::Stmt]) -> Block {
        let mark = self.scope_log.len();
        let mut out = Vec::with_capacity(stmts.len());
        for s in stmts {
            if let Some(s) = self.check_stmt(s) {
                out.push(s);
            }
        }
        self.close_scope(mark);
        out
    }

    /// Like the parser, the functions of the checker's recursion (`check_block`, `check_stmt`,
    /// `check_if`, `check_while`, `check_for`, `check_expr` and the expression functions it
    /// dispatches to) leave diagnostics and node building to helpers, to keep the stack frames
    /// that repeat per level of nesting small in debug builds.
    fn check_stmt(&mut self, s: &'a ast::Stmt) -> Option<Stmt> {
        match &s.kind {
            StmtKind::Let { name, ty, init } => self.check_let(name, ty.as_ref(), init.as_ref()),
            StmtKind::Assign {
                target,
                op,
                op_span,
                value,
            } => self.check_assign(target, *op, *op_span, value),
            StmtKind::Expr(e) => self.check_expr_stmt(e),
            StmtKind::If {
                cond,
                then_block,
                else_branch,
            } => self.check_if(cond, then_block, else_branch.as_ref()),
            StmtKind::While {
                cond,
                body,
                keyword,
            } => self.check_while(cond, body, *keyword),
            StmtKind::For {
                var,
                start,
                end,
                body,
                keyword,
            } => self.check_for(var, start, end, &body.stmts, *keyword),
            StmtKind::Block(b) => self.check_block_stmt(b),
            StmtKind::Break | StmtKind::Continue => self.check_jump(s),
            StmtKind::Return(value) => self.check_return(value.as_ref(), s.span),
        }
    }

    fn check_block_stmt(&mut self, b: &'a ast::Block) -> Option<Stmt> {
        let block = self.check_block(&b.stmts);
        Some(Stmt::Block(block))
    }

    fn check_while(
        &mut self,
        cond: &'a ast::Expr,
        body: &'a ast::Block,
        keyword: Span,
    ) -> Option<Stmt> {
        let cond = self.check_cond(cond);
        self.loops += 1;
        let body = self.check_block(&body.stmts);
        self.loops -= 1;
        finish_while(cond, body, keyword)
    }

    fn check_jump(&mut self, s: &ast::Stmt) -> Option<Stmt> {
        let is_break = matches!(s.kind, StmtKind::Break);
        if self.loops == 0 {
            let word = if is_break { "break" } else { "continue" };
            let at = Span::new(s.span.start, s.span.start + word.len() as u32);
            self.error(
                Diagnostic::new(format!("`{word}` outside of a loop"), at)
                    .with_label("not inside a `while` or `for` loop"),
            );
            return None;
        }
        Some(if is_break {
            Stmt::Break
        } else {
            Stmt::Continue
        })
    }

    fn check_cond(&mut self, cond: &'a ast::Expr) -> Option<Expr> {
        let c = self.check_expr(cond);
        self.expect_type(c, Type::Bool)
    }

    fn check_let(
        &mut self,
        name: &'a ast::Name,
        ty: Option<&'a ast::TypeExpr>,
        init: Option<&'a ast::Expr>,
    ) -> Option<Stmt> {
        // The new name becomes visible only after its initializer is checked.
        let declared = ty.map(|t| self.resolve_type(t));
        match (declared, init) {
            (Some(None), init) => {
                if let Some(e) = init
                    && self.peek_array(e).is_none()
                {
                    self.check_expr(e);
                }
                self.declare(&name.text, None, false);
                None
            }
            (Some(Some(VarType::Scalar(t))), Some(e)) => {
                let value = self.check_expr(e);
                let value = self.expect_type(value, t);
                let local = self.declare(&name.text, Some(VarType::Scalar(t)), false);
                Some(Stmt::Let {
                    local,
                    init: value?,
                })
            }
            (Some(Some(VarType::Scalar(t))), None) => {
                self.error(
                    Diagnostic::new("missing initializer", name.span).with_label(format!(
                        "a scalar must be initialized: `let {}: {t} = ...;`",
                        name.text
                    )),
                );
                self.declare(&name.text, Some(VarType::Scalar(t)), false);
                None
            }
            (Some(Some(VarType::Array(a))), None) => {
                let local = self.declare(&name.text, Some(VarType::Array(a)), false);
                Some(Stmt::LetZeroedArray { local })
            }
            (Some(Some(VarType::Array(a))), Some(e)) => {
                let src = self.array_source(e, a);
                let local = self.declare(&name.text, Some(VarType::Array(a)), false);
                Some(Stmt::LetCopyArray { local, src: src? })
            }
            (None, None) => {
                self.error(
                    Diagnostic::new("missing initializer", name.span).with_label(format!(
                        "give `{}` a value: `let {} = ...;`",
                        name.text, name.text
                    )),
                );
                self.declare(&name.text, None, false);
                None
            }
            (None, Some(e)) => {
                if let Some((src, a)) = self.peek_array(e) {
                    let local = self.declare(&name.text, Some(VarType::Array(a)), false);
                    return Some(Stmt::LetCopyArray { local, src });
                }
                let value = self.check_expr(e);
                let ty = value.as_ref().map(|v| VarType::Scalar(v.ty));
                let local = self.declare(&name.text, ty, false);
                Some(Stmt::Let {
                    local,
                    init: value?,
                })
            }
        }
    }

    fn check_assign(
        &mut self,
        target: &'a ast::Expr,
        op: Option<BinOp>,
        op_span: Span,
        value: &'a ast::Expr,
    ) -> Option<Stmt> {
        enum Target {
            Scalar(Place, Type),
            Array(ArrayRef, ArrayType),
            Failed,
        }
        let t = match &target.kind {
            AstKind::Name(n) => match self.resolve(n) {
                Resolved::Local(id) => {
                    let info = &self.local_info[id as usize];
                    match (info.ty, info.loop_var) {
                        (_, true) => {
                            self.error(
                                Diagnostic::new(
                                    format!("cannot assign to loop variable `{n}`"),
                                    target.span,
                                )
                                .with_label("the variable of a `for` loop cannot be assigned")
                                .with_note(format!("copy it first: `let {n} = {n};`")),
                            );
                            Target::Failed
                        }
                        (Some(VarType::Scalar(t)), _) => {
                            Target::Scalar(Place::Local(LocalId(id)), t)
                        }
                        (Some(VarType::Array(a)), _) => {
                            Target::Array(ArrayRef::Local(LocalId(id)), a)
                        }
                        (None, _) => Target::Failed,
                    }
                }
                Resolved::Item(ItemRef::Global(i)) => match self.global_types[i as usize] {
                    Some(VarType::Scalar(t)) => Target::Scalar(Place::Global(GlobalId(i)), t),
                    Some(VarType::Array(a)) => Target::Array(ArrayRef::Global(GlobalId(i)), a),
                    None => Target::Failed,
                },
                Resolved::Item(ItemRef::Const(_)) => {
                    self.error(
                        Diagnostic::new(format!("cannot assign to const `{n}`"), target.span)
                            .with_label("a const cannot change"),
                    );
                    Target::Failed
                }
                Resolved::Item(ItemRef::Func(_)) | Resolved::OtherFunction => {
                    self.error(
                        Diagnostic::new(format!("cannot assign to function `{n}`"), target.span)
                            .with_label("not a variable"),
                    );
                    Target::Failed
                }
                Resolved::Unknown => {
                    self.unknown_name(n, target.span);
                    Target::Failed
                }
            },
            AstKind::Index { base, index } => match self.check_index_parts(base, index) {
                Some((array, index, elem)) => Target::Scalar(
                    Place::Index {
                        array,
                        index: Box::new(index),
                        span: target.span,
                    },
                    elem,
                ),
                None => Target::Failed,
            },
            AstKind::Error => Target::Failed,
            _ => {
                if self.check_expr(target).is_some() {
                    self.error(
                        Diagnostic::new("invalid assignment target", target.span)
                            .with_label("expected a variable or an array element"),
                    );
                }
                Target::Failed
            }
        };
        match t {
            Target::Scalar(place, ty) => {
                let mut ok = true;
                if let Some(o) = op
                    && !op_accepts(o, ty)
                {
                    self.bad_compound(o, op_span, ty);
                    ok = false;
                }
                let v = self.check_expr(value);
                let value = self.expect_type(v, ty)?;
                ok.then_some(Stmt::Assign {
                    place,
                    op,
                    value,
                    span: op_span,
                })
            }
            Target::Array(dst, ty) => {
                if let Some(o) = op {
                    self.bad_compound(o, op_span, VarType::Array(ty));
                    return None;
                }
                let src = self.array_source(value, ty)?;
                Some(Stmt::CopyArray { dst, src })
            }
            Target::Failed => {
                if self.peek_array(value).is_none() {
                    self.check_expr(value);
                }
                None
            }
        }
    }

    fn bad_compound(&mut self, op: BinOp, span: Span, ty: impl std::fmt::Display) {
        self.error(
            Diagnostic::new(
                format!(
                    "binary assignment operation `{}=` cannot be applied to type `{ty}`",
                    op_symbol(op)
                ),
                span,
            )
            .with_label(format!("the target has type {ty}")),
        );
    }

    fn check_expr_stmt(&mut self, e: &'a ast::Expr) -> Option<Stmt> {
        match &e.kind {
            AstKind::Call { name, args } => match self.check_call(name, args, e.span)? {
                CallOut::Value(Expr {
                    kind: ExprKind::Call(call),
                    ..
                })
                | CallOut::Void(call) => Some(Stmt::Call(call)),
                // `len(a);` folded to a constant: nothing to run.
                CallOut::Value(_) => None,
                CallOut::Print(arg) => Some(Stmt::Print(arg)),
            },
            AstKind::Error => None,
            _ => {
                if self.peek_array(e).is_some() || self.check_expr(e).is_some() {
                    self.error(
                        Diagnostic::new("invalid expression statement", e.span)
                            .with_label("only a call can be used as a statement"),
                    );
                }
                None
            }
        }
    }

    fn check_if(
        &mut self,
        cond: &'a ast::Expr,
        then_block: &'a ast::Block,
        else_branch: Option<&'a Else>,
    ) -> Option<Stmt> {
        let cond = self.check_cond(cond);
        let then_block = self.check_block(&then_block.stmts);
        let else_block = match else_branch {
            None => Vec::new(),
            Some(Else::Block(b)) => self.check_block(&b.stmts),
            Some(Else::If(s)) => self.check_else_if(s),
        };
        finish_if(cond, then_block, else_block)
    }

    fn check_else_if(&mut self, s: &'a ast::Stmt) -> Block {
        self.check_stmt(s).into_iter().collect()
    }

    fn check_for(
        &mut self,
        var: &'a ast::Name,
        start: &'a ast::Expr,
        end: &'a ast::Expr,
        body: &'a [ast::Stmt],
        keyword: Span,
    ) -> Option<Stmt> {
        let start = self.check_expr(start);
        let start = self.expect_type(start, Type::Int);
        let end = self.check_expr(end);
        let end = self.expect_type(end, Type::Int);
        let mark = self.scope_log.len();
        let var = self.declare(&var.text, Some(VarType::Scalar(Type::Int)), true);
        self.loops += 1;
        let body = self.check_block(body);
        self.loops -= 1;
        self.close_scope(mark);
        finish_for(var, start, end, body, keyword)
    }

    fn check_return(&mut self, value: Option<&'a ast::Expr>, span: Span) -> Option<Stmt> {
        match (self.ret, value) {
            (Ret::Nothing, None) => Some(Stmt::Return(None)),
            (Ret::Nothing, Some(e)) => {
                if self.check_expr(e).is_some() {
                    self.error(
                        Diagnostic::new("unexpected return value", e.span)
                            .with_label("this function returns nothing"),
                    );
                }
                None
            }
            (Ret::Value(t), Some(e)) => {
                let v = self.check_expr(e);
                Some(Stmt::Return(Some(self.expect_type(v, t)?)))
            }
            (Ret::Value(t), None) => {
                self.error(
                    Diagnostic::new("missing return value", span)
                        .with_label(format!("this function returns {t}")),
                );
                None
            }
            (Ret::Error, value) => {
                if let Some(e) = value {
                    self.check_expr(e);
                }
                None
            }
        }
    }

    // ----- expressions -----

    /// Checks an expression used as a scalar value.
    fn check_expr(&mut self, e: &'a ast::Expr) -> Option<Expr> {
        match &e.kind {
            AstKind::Name(n) => self.check_name(n, e.span),
            AstKind::Call { name, args } => self.check_call_value(name, args, e.span),
            AstKind::Index { base, index } => self.check_index(base, index, e.span),
            AstKind::Unary { op, operand } => self.check_unary(*op, operand, e.span),
            AstKind::Binary {
                op,
                op_span,
                lhs,
                rhs,
            } => self.check_binary(*op, *op_span, lhs, rhs, e.span),
            AstKind::Cast { expr, ty } => self.check_cast(expr, *ty, e.span),
            AstKind::Error => None,
            _ => self.check_literal(e),
        }
    }

    fn check_literal(&mut self, e: &ast::Expr) -> Option<Expr> {
        let c = match &e.kind {
            AstKind::Int(v) => Const::Int(*v),
            AstKind::Float(v) => Const::Float(*v),
            AstKind::Bool(v) => Const::Bool(*v),
            _ => {
                self.string_misplaced(e.span);
                return None;
            }
        };
        Some(Expr {
            kind: ExprKind::Const(c),
            ty: c.ty(),
            span: e.span,
        })
    }

    fn string_misplaced(&mut self, span: Span) {
        self.error(
            Diagnostic::new("string literal outside of `print`", span)
                .with_label("a string literal is only allowed as the argument of `print`"),
        );
    }

    fn check_name(&mut self, n: &str, span: Span) -> Option<Expr> {
        let kind = match self.resolve(n) {
            Resolved::Local(id) => match self.local_info[id as usize].ty? {
                VarType::Scalar(t) => (ExprKind::Local(LocalId(id)), t),
                VarType::Array(a) => {
                    self.array_as_value(n, a, span);
                    return None;
                }
            },
            Resolved::Item(ItemRef::Const(i)) => {
                let c = self.const_values[i as usize]?;
                (ExprKind::Const(c), c.ty())
            }
            Resolved::Item(ItemRef::Global(i)) => {
                if self.in_const {
                    self.global_in_const(n, span);
                    return None;
                }
                match self.global_types[i as usize]? {
                    VarType::Scalar(t) => (ExprKind::Global(GlobalId(i)), t),
                    VarType::Array(a) => {
                        self.array_as_value(n, a, span);
                        return None;
                    }
                }
            }
            Resolved::Item(ItemRef::Func(_)) | Resolved::OtherFunction => {
                self.function_as_value(n, span);
                return None;
            }
            Resolved::Unknown => {
                self.unknown_name(n, span);
                return None;
            }
        };
        Some(Expr {
            kind: kind.0,
            ty: kind.1,
            span,
        })
    }

    fn check_index(
        &mut self,
        base: &'a ast::Expr,
        index: &'a ast::Expr,
        span: Span,
    ) -> Option<Expr> {
        let parts = self.check_index_parts(base, index);
        finish_index(parts, span)
    }

    /// `base[index]`: the array, the checked index and the element type.
    fn check_index_parts(
        &mut self,
        base: &'a ast::Expr,
        index: &'a ast::Expr,
    ) -> Option<(ArrayRef, Expr, Type)> {
        let array = self.index_base(base);
        let i = self.check_expr(index);
        let index = self.expect_type(i, Type::Int);
        let (r, a) = array?;
        Some((r, index?, a.elem))
    }

    fn index_base(&mut self, base: &'a ast::Expr) -> Option<(ArrayRef, ArrayType)> {
        match &base.kind {
            AstKind::Name(n) => match self.lookup_array(n, base.span) {
                ArrayLookup::Array(r, a) => Some((r, a)),
                ArrayLookup::Scalar(t) => {
                    self.not_indexable(base.span, t);
                    None
                }
                ArrayLookup::Failed => None,
            },
            _ => {
                let b = self.check_expr(base);
                if let Some(b) = b {
                    self.not_indexable(base.span, b.ty);
                }
                None
            }
        }
    }

    fn not_indexable(&mut self, span: Span, ty: Type) {
        self.error(
            Diagnostic::new(format!("cannot index a value of type {ty}"), span)
                .with_label("not an array"),
        );
    }

    fn check_unary(&mut self, op: UnOp, operand: &'a ast::Expr, span: Span) -> Option<Expr> {
        let x = self.check_expr(operand);
        self.finish_unary(op, x?, span)
    }

    fn finish_unary(&mut self, op: UnOp, x: Expr, span: Span) -> Option<Expr> {
        let ok = match op {
            UnOp::Neg => matches!(x.ty, Type::Int | Type::Float),
            UnOp::Not => matches!(x.ty, Type::Int | Type::Bool),
        };
        if !ok {
            let sym = if op == UnOp::Neg { "-" } else { "!" };
            self.error(
                Diagnostic::new(
                    format!("cannot apply unary operator `{sym}` to type `{}`", x.ty),
                    span,
                )
                .with_label(format!("the operand has type {}", x.ty)),
            );
            return None;
        }
        Some(Expr {
            ty: x.ty,
            kind: ExprKind::Unary {
                op,
                operand: Box::new(x),
            },
            span,
        })
    }

    fn check_binary(
        &mut self,
        op: BinaryOp,
        op_span: Span,
        lhs: &'a ast::Expr,
        rhs: &'a ast::Expr,
        span: Span,
    ) -> Option<Expr> {
        let l = self.check_expr(lhs);
        let r = self.check_expr(rhs);
        self.finish_binary(op, op_span, l, r, span)
    }

    fn finish_binary(
        &mut self,
        op: BinaryOp,
        op_span: Span,
        l: Option<Expr>,
        r: Option<Expr>,
        span: Span,
    ) -> Option<Expr> {
        let BinaryOp::Op(op) = op else {
            let l = self.expect_type(l, Type::Bool);
            let r = self.expect_type(r, Type::Bool);
            let (l, r) = (Box::new(l?), Box::new(r?));
            let kind = if op == BinaryOp::And {
                ExprKind::And(l, r)
            } else {
                ExprKind::Or(l, r)
            };
            return Some(Expr {
                kind,
                ty: Type::Bool,
                span,
            });
        };
        let l = l?;
        if !op_accepts(op, l.ty) {
            self.error(
                Diagnostic::new(
                    format!(
                        "binary operation `{}` cannot be applied to type `{}`",
                        op_symbol(op),
                        l.ty
                    ),
                    op_span,
                )
                .with_label(format!("the left operand has type {}", l.ty)),
            );
            return None;
        }
        let r = self.expect_type(r, l.ty)?;
        let ty = if op.is_comparison() { Type::Bool } else { l.ty };
        Some(Expr {
            kind: ExprKind::Binary {
                op,
                lhs: Box::new(l),
                rhs: Box::new(r),
                op_span,
            },
            ty,
            span,
        })
    }

    fn check_cast(&mut self, inner: &'a ast::Expr, to: Type, span: Span) -> Option<Expr> {
        let x = self.check_expr(inner);
        self.finish_cast(x?, to, span)
    }

    fn finish_cast(&mut self, x: Expr, to: Type, span: Span) -> Option<Expr> {
        if x.ty == to {
            // An identity cast is removed; the operand keeps its span, which locates any
            // run-time error it raises.
            return Some(x);
        }
        let ok = matches!(
            (x.ty, to),
            (Type::Int, Type::Float) | (Type::Float, Type::Int) | (Type::Bool, Type::Int)
        );
        if !ok {
            let mut d = Diagnostic::new("invalid cast", span)
                .with_label(format!("cannot cast {} to {to}", x.ty));
            if to == Type::Bool {
                d = d.with_note("compare instead: `x != 0`");
            } else if x.ty == Type::Bool {
                d = d.with_note("cast through int: `b as int as float`");
            }
            self.error(d);
            return None;
        }
        Some(Expr {
            kind: ExprKind::Cast(Box::new(x)),
            ty: to,
            span,
        })
    }

    fn check_call_value(
        &mut self,
        name: &'a ast::Name,
        args: &'a [ast::Expr],
        span: Span,
    ) -> Option<Expr> {
        let out = self.check_call(name, args, span);
        self.call_value(name, out?, span)
    }

    fn call_value(&mut self, name: &ast::Name, out: CallOut, span: Span) -> Option<Expr> {
        match out {
            CallOut::Value(e) => Some(e),
            CallOut::Void(_) | CallOut::Print(_) => {
                self.error(
                    Diagnostic::new(format!("`{}` does not return a value", name.text), span)
                        .with_label("this call is used as a value"),
                );
                None
            }
        }
    }

    /// Checks a call of a builtin, a script function or a host function, in that order of
    /// lookup. Calls ignore local variables: a local named `max` does not hide `max(a, b)`.
    fn check_call(
        &mut self,
        name: &'a ast::Name,
        args: &'a [ast::Expr],
        span: Span,
    ) -> Option<CallOut> {
        if BUILTINS.contains(&name.text.as_str()) && !self.in_const {
            return self.check_builtin(name, args, span);
        }
        let Some((callee, params, ret)) = self.call_target(name, span) else {
            self.check_args_silently(args);
            return None;
        };
        let args = self.check_args(&name.text, args, &params, span);
        finish_call(callee, args?, ret, span)
    }

    /// What a call's name refers to, or `None` after reporting why it cannot be called.
    fn call_target(
        &mut self,
        name: &ast::Name,
        span: Span,
    ) -> Option<(Callee, Vec<Option<Type>>, Ret)> {
        let n = name.text.as_str();
        if self.in_const {
            self.error(
                Diagnostic::new("calls are not allowed in constant expressions", span)
                    .with_label("a constant expression uses only literals, consts and operators"),
            );
            return None;
        }
        match self.names.get(n) {
            Some(&ItemRef::Func(i)) => {
                let info = &self.funcs[i as usize];
                if info.poisoned {
                    return None;
                }
                Some((Callee::Function(FuncId(i)), info.params.clone(), info.ret))
            }
            Some(&r) => {
                let what = if matches!(r, ItemRef::Global(_)) {
                    "a global"
                } else {
                    "a const"
                };
                self.error(
                    Diagnostic::new(format!("`{n}` is not a function"), name.span)
                        .with_label(format!("`{n}` is {what}")),
                );
                None
            }
            None => match self.hosts.iter().position(|h| h.name == n) {
                Some(i) => {
                    let sig = &self.hosts[i].sig;
                    let ret = sig.ret.map_or(Ret::Nothing, Ret::Value);
                    let params = sig.params.iter().map(|&p| Some(p)).collect();
                    Some((Callee::Host(HostId(i as u32)), params, ret))
                }
                None => {
                    self.error(
                        Diagnostic::new(format!("unknown function `{n}`"), name.span).with_label(
                            "not a function of this module, a builtin or a host function",
                        ),
                    );
                    None
                }
            },
        }
    }

    /// Reports the errors inside arguments whose call is already known to be wrong.
    fn check_args_silently(&mut self, args: &'a [ast::Expr]) {
        for a in args {
            if self.peek_array(a).is_none() {
                self.check_expr(a);
            }
        }
    }

    fn arity(&mut self, name: &str, want: usize, got: usize, span: Span) -> bool {
        if want == got {
            return true;
        }
        let were = if got == 1 { "was" } else { "were" };
        self.error(
            Diagnostic::new(
                format!("`{name}` takes {} but {got} {were} supplied", plural(want)),
                span,
            )
            .with_label(format!("expected {}", plural(want))),
        );
        false
    }

    fn check_args(
        &mut self,
        name: &str,
        args: &'a [ast::Expr],
        params: &[Option<Type>],
        span: Span,
    ) -> Option<Vec<Expr>> {
        let mut ok = self.arity(name, params.len(), args.len(), span);
        let mut out = Vec::with_capacity(args.len());
        for (i, a) in args.iter().enumerate() {
            let e = self.check_expr(a);
            ok &= self.push_arg(e, params.get(i).copied().flatten(), &mut out);
        }
        ok.then_some(out)
    }

    fn push_arg(&mut self, e: Option<Expr>, param: Option<Type>, out: &mut Vec<Expr>) -> bool {
        let Some(t) = param else { return false };
        match self.expect_type(e, t) {
            Some(e) => {
                out.push(e);
                true
            }
            None => false,
        }
    }

    fn check_builtin(
        &mut self,
        name: &'a ast::Name,
        args: &'a [ast::Expr],
        span: Span,
    ) -> Option<CallOut> {
        let n = name.text.as_str();
        let want = if matches!(n, "pow" | "min" | "max") {
            2
        } else {
            1
        };
        if !self.arity(n, want, args.len(), span) {
            self.check_args_silently(args);
            return None;
        }
        match n {
            "print" => self.check_print(&args[0]),
            "len" => self.check_len(&args[0], span),
            "pow" => self.check_pow(args, span),
            "abs" | "min" | "max" => self.check_overloaded(n, args, span),
            _ => self.check_math(n, &args[0], span),
        }
    }

    fn check_print(&mut self, arg: &'a ast::Expr) -> Option<CallOut> {
        if let AstKind::Str(s) = &arg.kind {
            return Some(CallOut::Print(PrintArg::Str(s.clone())));
        }
        let x = self.check_expr(arg);
        Some(CallOut::Print(PrintArg::Value(x?)))
    }

    /// `len(a)` is folded to the array's length.
    fn check_len(&mut self, a: &'a ast::Expr, span: Span) -> Option<CallOut> {
        let found: VarType = match &a.kind {
            AstKind::Name(v) => match self.lookup_array(v, a.span) {
                ArrayLookup::Array(_, ty) => {
                    return Some(CallOut::Value(Expr {
                        kind: ExprKind::Const(Const::Int(i64::from(ty.len))),
                        ty: Type::Int,
                        span,
                    }));
                }
                ArrayLookup::Scalar(t) => VarType::Scalar(t),
                ArrayLookup::Failed => return None,
            },
            _ => VarType::Scalar(self.check_expr(a)?.ty),
        };
        self.mismatch(a.span, "an array", found);
        None
    }

    fn check_math(&mut self, n: &str, arg: &'a ast::Expr, span: Span) -> Option<CallOut> {
        let x = self.check_expr(arg);
        let x = self.expect_type(x, Type::Float)?;
        let b = match n {
            "sqrt" => Builtin::Sqrt,
            "sin" => Builtin::Sin,
            "cos" => Builtin::Cos,
            "tan" => Builtin::Tan,
            "exp" => Builtin::Exp,
            "ln" => Builtin::Ln,
            "floor" => Builtin::Floor,
            _ => Builtin::Ceil,
        };
        builtin_call(b, vec![x], span)
    }

    fn check_pow(&mut self, args: &'a [ast::Expr], span: Span) -> Option<CallOut> {
        let x = self.check_expr(&args[0]);
        let y = self.check_expr(&args[1]);
        let x = self.expect_type(x, Type::Float);
        let y = self.expect_type(y, Type::Float);
        builtin_call(Builtin::Pow, vec![x?, y?], span)
    }

    /// `abs`, `min` and `max`: overloaded on int and float, chosen by the first argument.
    fn check_overloaded(&mut self, n: &str, args: &'a [ast::Expr], span: Span) -> Option<CallOut> {
        let x = self.check_expr(&args[0]);
        let y = match args.get(1) {
            Some(a) => self.check_expr(a),
            None => None,
        };
        self.finish_overloaded(n, x?, y, span)
    }

    fn finish_overloaded(
        &mut self,
        n: &str,
        x: Expr,
        y: Option<Expr>,
        span: Span,
    ) -> Option<CallOut> {
        if !matches!(x.ty, Type::Int | Type::Float) {
            self.mismatch(x.span, "int or float", x.ty);
            return None;
        }
        let is_int = x.ty == Type::Int;
        if n == "abs" {
            let b = if is_int {
                Builtin::AbsInt
            } else {
                Builtin::AbsFloat
            };
            return builtin_call(b, vec![x], span);
        }
        let y = self.expect_type(y, x.ty)?;
        let b = match (n, is_int) {
            ("min", true) => Builtin::MinInt,
            ("min", false) => Builtin::MinFloat,
            (_, true) => Builtin::MaxInt,
            (_, false) => Builtin::MaxFloat,
        };
        builtin_call(b, vec![x, y], span)
    }
}

fn finish_call(callee: Callee, args: Vec<Expr>, ret: Ret, span: Span) -> Option<CallOut> {
    let call = Call { callee, args, span };
    match ret {
        Ret::Value(ty) => Some(CallOut::Value(Expr {
            kind: ExprKind::Call(call),
            ty,
            span,
        })),
        Ret::Nothing => Some(CallOut::Void(call)),
        Ret::Error => None,
    }
}

fn builtin_call(b: Builtin, args: Vec<Expr>, span: Span) -> Option<CallOut> {
    let ty = args[0].ty;
    Some(CallOut::Value(Expr {
        kind: ExprKind::Call(Call {
            callee: Callee::Builtin(b),
            args,
            span,
        }),
        ty,
        span,
    }))
}

fn finish_while(cond: Option<Expr>, body: Block, span: Span) -> Option<Stmt> {
    Some(Stmt::While {
        cond: cond?,
        body,
        span,
    })
}

fn finish_if(cond: Option<Expr>, then_block: Block, else_block: Block) -> Option<Stmt> {
    Some(Stmt::If {
        cond: cond?,
        then_block,
        else_block,
    })
}

fn finish_for(
    var: LocalId,
    start: Option<Expr>,
    end: Option<Expr>,
    body: Block,
    span: Span,
) -> Option<Stmt> {
    Some(Stmt::For {
        var,
        start: start?,
        end: end?,
        body,
        span,
    })
}

fn finish_index(parts: Option<(ArrayRef, Expr, Type)>, span: Span) -> Option<Expr> {
    let (array, index, ty) = parts?;
    Some(Expr {
        kind: ExprKind::Index {
            array,
            index: Box::new(index),
        },
        ty,
        span,
    })
}

/// Whether a statement list cannot reach its end, by the rules of LANGUAGE.md section 3: it
/// contains a `return`, an `if` with an `else` whose branches both cannot fall through, or a
/// `while true` without a `break` of its own. A nested block counts as the list it contains.
fn list_diverges(stmts: &[ast::Stmt]) -> bool {
    stmts.iter().any(stmt_diverges)
}

fn stmt_diverges(s: &ast::Stmt) -> bool {
    match &s.kind {
        StmtKind::Return(_) => true,
        StmtKind::If {
            then_block,
            else_branch: Some(else_branch),
            ..
        } => {
            list_diverges(&then_block.stmts)
                && match else_branch {
                    Else::Block(b) => list_diverges(&b.stmts),
                    Else::If(s) => stmt_diverges(s),
                }
        }
        StmtKind::While { cond, body, .. } => {
            matches!(cond.kind, AstKind::Bool(true)) && !has_own_break(&body.stmts)
        }
        StmtKind::Block(b) => list_diverges(&b.stmts),
        _ => false,
    }
}

/// Whether a loop body contains a `break` for this loop (not one of a nested loop).
fn has_own_break(stmts: &[ast::Stmt]) -> bool {
    stmts.iter().any(|s| match &s.kind {
        StmtKind::Break => true,
        StmtKind::If {
            then_block,
            else_branch,
            ..
        } => {
            has_own_break(&then_block.stmts)
                || match else_branch {
                    None => false,
                    Some(Else::Block(b)) => has_own_break(&b.stmts),
                    Some(Else::If(s)) => has_own_break(std::slice::from_ref(s)),
                }
        }
        StmtKind::Block(b) => has_own_break(&b.stmts),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<HostSignature> {
        vec![HostSignature {
            name: "spawn".to_string(),
            sig: Signature {
                params: vec![Type::Float, Type::Bool],
                ret: Some(Type::Int),
            },
        }]
    }

    fn run(text: &str, require_main: bool) -> Result<Program, Vec<Diagnostic>> {
        let file = SourceFile::new("t.kl", text);
        crate::check(&file, &hosts(), &CheckOptions { require_main })
    }

    fn ok(text: &str) -> Program {
        match run(text, false) {
            Ok(p) => p,
            Err(d) => panic!(
                "{text}\n{}",
                crate::render(&SourceFile::new("t.kl", text), &d)
            ),
        }
    }

    /// Each diagnostic as `message @ the source text it points at`.
    fn errs(text: &str) -> Vec<String> {
        errs_with(text, false)
    }

    fn errs_with(text: &str, require_main: bool) -> Vec<String> {
        match run(text, require_main) {
            Ok(_) => panic!("no error in {text}"),
            Err(d) => d
                .iter()
                .map(|d| {
                    format!(
                        "{} @ {}",
                        d.message,
                        &text[d.span.start as usize..d.span.end as usize]
                    )
                })
                .collect(),
        }
    }

    fn body<'p>(p: &'p Program, name: &str) -> &'p Function {
        p.function(p.function_named(name).unwrap())
    }

    #[test]
    fn resolves_items_in_any_order() {
        let p = ok("
            global total: int = BASE * 2;
            fn main() { total += later(1); cells[LAST] = 1; }
            fn later(x: int) -> int { return x + BASE; }
            const LAST: int = SIZE - 1;
            global cells: [int; SIZE];
            const SIZE: int = 3;
            const BASE: int = 20;
        ");
        assert_eq!(p.globals[0].init, Some(Const::Int(40)));
        assert_eq!(
            p.globals[1].ty,
            VarType::Array(ArrayType {
                elem: Type::Int,
                len: 3
            })
        );
        let Stmt::Assign {
            place: Place::Index { index, .. },
            ..
        } = &body(&p, "main").body[1]
        else {
            panic!()
        };
        assert!(matches!(index.kind, ExprKind::Const(Const::Int(2))));
    }

    #[test]
    fn shadowing_reads_the_outer_binding() {
        let p = ok(
            "fn f(x: int) -> float { let x = x + 1; { let x = 2.5; } let x = x as float; return x; }",
        );
        let f = body(&p, "f");
        let names: Vec<(&str, VarType)> =
            f.locals.iter().map(|l| (l.name.as_str(), l.ty)).collect();
        use VarType::Scalar as S;
        assert_eq!(
            names,
            [
                ("x", S(Type::Int)),
                ("x", S(Type::Int)),
                ("x", S(Type::Float)),
                ("x", S(Type::Float))
            ]
        );
        let Stmt::Let { local, init } = &f.body[0] else {
            panic!()
        };
        assert_eq!(*local, LocalId(1));
        let ExprKind::Binary { lhs, .. } = &init.kind else {
            panic!()
        };
        assert!(matches!(lhs.kind, ExprKind::Local(LocalId(0))));
        let Stmt::Let { local, init } = &f.body[2] else {
            panic!()
        };
        assert_eq!(*local, LocalId(3));
        let ExprKind::Cast(inner) = &init.kind else {
            panic!()
        };
        assert!(matches!(inner.kind, ExprKind::Local(LocalId(1))));
        let Stmt::Return(Some(r)) = &f.body[3] else {
            panic!()
        };
        assert!(matches!(r.kind, ExprKind::Local(LocalId(3))));
        // The inner block's `x` is gone after it.
        assert_eq!(
            errs("fn f() { { let y = 1; } y = 2; }"),
            ["unknown name `y` @ y"]
        );
    }

    #[test]
    fn folds_consts_len_and_identity_casts() {
        let p = ok("
            const A: int = -9223372036854775808 / -1;
            const B: float = 1.0 / 0.0;
            const C: bool = false && 1 / 0 == 0;
            const D: int = 1 << 65;
            fn f() -> int { let a: [float; A2]; print(B); return len(a) + A + (D as int); }
            const A2: int = 4;
        ");
        let f = body(&p, "f");
        let Stmt::Print(PrintArg::Value(b)) = &f.body[1] else {
            panic!()
        };
        assert!(matches!(b.kind, ExprKind::Const(Const::Float(v)) if v == f64::INFINITY));
        let Stmt::Return(Some(e)) = &f.body[2] else {
            panic!()
        };
        let ExprKind::Binary { lhs, rhs, .. } = &e.kind else {
            panic!()
        };
        assert!(matches!(rhs.kind, ExprKind::Const(Const::Int(2))));
        let ExprKind::Binary { lhs, rhs, .. } = &lhs.kind else {
            panic!()
        };
        assert!(matches!(lhs.kind, ExprKind::Const(Const::Int(4))));
        assert!(matches!(rhs.kind, ExprKind::Const(Const::Int(i64::MIN))));
    }

    #[test]
    fn const_errors() {
        assert_eq!(
            errs("const A: int = B + 1; const B: int = A; const S: int = S; const C: int = A;"),
            [
                "cycle in the definition of const `A` @ A",
                "cycle in the definition of const `S` @ S"
            ]
        );
        assert_eq!(
            errs("const A: int = 5 % (2 - 2); const B: int = A + 1;"),
            ["division by zero in a constant expression @ %"]
        );
        assert_eq!(
            errs(
                "global g: int = 1; const A: int = g; global h: int = g + f(); fn f() -> int { return 1; }"
            ),
            [
                "globals cannot be used in constant expressions @ g",
                "globals cannot be used in constant expressions @ g",
                "calls are not allowed in constant expressions @ f()",
            ]
        );
        assert_eq!(errs("const A: float = 1;"), ["mismatched types @ 1"]);
        assert_eq!(
            errs("const A: int = 1.5 as bool;"),
            ["invalid cast @ 1.5 as bool"]
        );
        assert_eq!(
            errs("const A: [int; 2] = 1;"),
            ["a const must have a scalar type @ [int; 2]"]
        );
        assert_eq!(
            errs(
                "const Z: int = 0; const F: float = 2.0; global a: [int; Z]; global b: [int; F]; global c: [int; 16777217]; global d: [int; 2 + 2]; global e: [int; 16777216];"
            ),
            [
                "array length out of range @ Z",
                "mismatched types @ F",
                "array length out of range @ 16777217",
                "array length must be an integer literal or an int const @ 2 + 2",
            ]
        );
    }

    #[test]
    fn a_long_const_chain_uses_no_call_stack() {
        let n = 100_000;
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!("const C{i}: int = C{} + 1;\n", i + 1));
        }
        text.push_str(&format!(
            "const C{n}: int = 0;\nfn f() -> int {{ return C0; }}"
        ));
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let p = ok(&text);
                let Stmt::Return(Some(e)) = &body(&p, "f").body[0] else {
                    panic!()
                };
                assert!(matches!(e.kind, ExprKind::Const(Const::Int(100_000))));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn missing_return_follows_section_3() {
        ok("fn a(x: int) -> int { if x > 0 { return 1; } else if x < 0 { return 2; } else { return 3; } }
            fn b() -> int { while true { while true { break; } } }
            fn c() -> int { return 1; print(2); }
            fn d() -> int { { return 1; } }
            fn e(x: int) -> int { while true { if x > 0 { return 1; } } }");
        assert_eq!(
            errs("fn a(x: int) -> int { if x > 0 { return 1; } }
                  fn b() -> int { while true { if true { break; } } }
                  fn c() -> int { while 1 < 2 { return 1; } }
                  fn d() -> int { for i in 0..1 { return i; } }
                  fn e() -> float {}
                  fn f(x: int) -> bool { if x > 0 { return true; } else if x < 0 { return false; } }"),
            [
                "missing return @ int",
                "missing return @ int",
                "missing return @ int",
                "missing return @ int",
                "missing return @ float",
                "missing return @ bool",
            ]
        );
    }

    #[test]
    fn statement_errors() {
        assert_eq!(
            errs("fn f() { break; for i in 0..3 { i = 1; continue; } continue; }"),
            [
                "`break` outside of a loop @ break",
                "cannot assign to loop variable `i` @ i",
                "`continue` outside of a loop @ continue",
            ]
        );
        assert_eq!(
            errs("fn f() -> int { if 1 { } while 2.0 { } for i in 0.0..true { } return; }"),
            [
                "mismatched types @ 1",
                "mismatched types @ 2.0",
                "mismatched types @ 0.0",
                "mismatched types @ true",
                "missing return value @ return;",
            ]
        );
        assert_eq!(
            errs(
                "const K: int = 1; fn g() {} fn f() { let x; let y: int; K = 2; g = 1; x + 1; return 1; }"
            ),
            [
                "missing initializer @ x",
                "missing initializer @ y",
                "cannot assign to const `K` @ K",
                "cannot assign to function `g` @ g",
                "unexpected return value @ 1",
            ]
        );
        assert_eq!(
            errs("fn f() { 1 + 2; }"),
            ["invalid expression statement @ 1 + 2"]
        );
    }

    #[test]
    fn expression_errors() {
        assert_eq!(
            errs("fn f(b: bool) { let x = 1.5 + 1; let y = true + 1; let z = -b; let w = !1.5;
                  let c = 1 < 2.0; let d = b < b; let e = 1.5 | 2.0; let s = \"str\"; let t = 1 && b; }"),
            [
                "mismatched types @ 1",
                "binary operation `+` cannot be applied to type `bool` @ +",
                "cannot apply unary operator `-` to type `bool` @ -b",
                "cannot apply unary operator `!` to type `float` @ !1.5",
                "mismatched types @ 2.0",
                "binary operation `<` cannot be applied to type `bool` @ <",
                "binary operation `|` cannot be applied to type `float` @ |",
                "string literal outside of `print` @ \"str\"",
                "mismatched types @ 1",
            ]
        );
        assert_eq!(
            errs(
                "fn f() { let a = true as float; let b = 1 as bool; let c = 1.0 as int as float; }"
            ),
            ["invalid cast @ true as float", "invalid cast @ 1 as bool"]
        );
        // No cascade: `x` has an unknown type after its failed initializer.
        assert_eq!(
            errs("fn f() { let x = nope; let y = x + 1.5; x = true; }"),
            ["unknown name `nope` @ nope"]
        );
    }

    #[test]
    fn arrays() {
        let p = ok("global g: [int; 3];
            fn f() { let a: [int; 3]; let b = a; a = g; g = b; let c: [int; 3] = g; a[1] += c[2]; }");
        let f = body(&p, "f");
        assert!(matches!(
            f.body[1],
            Stmt::LetCopyArray {
                local: LocalId(1),
                src: ArrayRef::Local(LocalId(0))
            }
        ));
        assert!(matches!(
            f.body[2],
            Stmt::CopyArray {
                dst: ArrayRef::Local(LocalId(0)),
                src: ArrayRef::Global(GlobalId(0))
            }
        ));
        assert_eq!(
            errs("global g: [int; 3]; global h: [float; 3] = 0;
                  fn f(a: [int; 2]) -> [int; 2] { let b: [int; 4] = g; g = 1; let x = g + 1; g += g; print(g);
                  let y = g[1.5]; let n = 1; let z = n[0]; hh(g); }
                  fn hh(x: int) {}"),
            [
                "a global array cannot have an initializer @ 0",
                "arrays cannot be passed to functions @ [int; 2]",
                "arrays cannot be returned from functions @ [int; 2]",
                "mismatched types @ g",
                "mismatched types @ 1",
                "array used as a value @ g",
                "binary assignment operation `+=` cannot be applied to type `[int; 3]` @ +=",
                "array used as a value @ g",
                "mismatched types @ 1.5",
                "cannot index a value of type int @ n",
                "array used as a value @ g",
            ]
        );
    }

    #[test]
    fn calls_and_builtins() {
        let p = ok("fn f() -> int { let a: [int; 2]; print(\"hi\\n\"); print(abs(-1.5)); len(a);
                    return spawn(1.0, true) + min(1, 2) + abs(-1) + max(1, 2) + (pow(2.0, sqrt(4.0)) as int); }");
        let f = body(&p, "f");
        assert!(matches!(&f.body[1], Stmt::Print(PrintArg::Str(s)) if s == "hi\n"));
        assert_eq!(f.body.len(), 4, "`len(a);` runs nothing");
        let Stmt::Return(Some(e)) = &f.body[3] else {
            panic!()
        };
        let mut callees = Vec::new();
        let mut e: &Expr = e;
        while let ExprKind::Binary { lhs, rhs, .. } = &e.kind {
            callees.push(&rhs.kind);
            e = lhs.as_ref();
        }
        callees.push(&e.kind);
        let callee = |k: &ExprKind| match k {
            ExprKind::Call(c) => Some(c.callee),
            ExprKind::Cast(inner) => match &inner.kind {
                ExprKind::Call(c) => Some(c.callee),
                _ => None,
            },
            _ => None,
        };
        let got: Vec<_> = callees.into_iter().map(callee).collect();
        assert_eq!(
            got,
            [
                Some(Callee::Builtin(Builtin::Pow)),
                Some(Callee::Builtin(Builtin::MaxInt)),
                Some(Callee::Builtin(Builtin::AbsInt)),
                Some(Callee::Builtin(Builtin::MinInt)),
                Some(Callee::Host(HostId(0))),
            ]
        );
        assert_eq!(
            errs("global g: int = 0; fn v() {} fn f() { let x = v(); let y = print(1); nope(1 + true); g(); sqrt(1);
                  pow(1.0); min(1, 2.0); abs(true); len(g); spawn(1.0, 1); let max = 3; print(max(max, 1)); print(len); }"),
            [
                "`v` does not return a value @ v()",
                "`print` does not return a value @ print(1)",
                "unknown function `nope` @ nope",
                "mismatched types @ true",
                "`g` is not a function @ g",
                "mismatched types @ 1",
                "`pow` takes 2 arguments but 1 was supplied @ pow(1.0)",
                "mismatched types @ 2.0",
                "mismatched types @ true",
                "mismatched types @ g",
                "mismatched types @ 1",
                "expected a value, found function `len` @ len",
            ]
        );
    }

    #[test]
    fn names_clash_with_builtins_hosts_and_each_other() {
        assert_eq!(
            errs(
                "fn len() {} global spawn: int = 1; const x: int = 1; fn x() {} global x: bool = true;"
            ),
            [
                "`len` is a builtin and cannot be redefined @ len",
                "`spawn` is a registered host function and cannot be redefined @ spawn",
                "the name `x` is defined multiple times @ x",
                "the name `x` is defined multiple times @ x",
            ]
        );
        assert_eq!(
            errs("fn f(a: int, a: float) {}"),
            ["duplicate parameter `a` @ a"]
        );
    }

    #[test]
    fn main_rules() {
        assert!(run("fn main() {}", true).is_ok());
        assert!(run("fn main() -> int { return 0; }", true).is_ok());
        assert_eq!(errs_with("fn f() {}", true), ["missing `fn main()` @ "]);
        assert_eq!(
            errs_with("fn main(a: int) {}", true),
            ["`main` must not take parameters @ main"]
        );
        assert_eq!(
            errs_with("fn main() -> float { return 1.0; }", true),
            ["`main` must return nothing or int @ main"]
        );
        assert_eq!(
            errs_with("global main: int = 1;", true),
            ["`main` must be a function @ main"]
        );
        assert!(run("fn f() {}", false).is_ok());
    }

    #[test]
    fn syntax_errors_do_not_cascade_into_type_errors() {
        // The broken header leaves `g` unchecked; calls to it are not reported either.
        assert_eq!(
            errs(
                "fn g(a int) -> int { return nope; } fn f() -> int { let x = g(1, 2); let y = ; return x; }"
            ),
            [
                "expected `:`, found keyword `int` @ int",
                "expected an expression, found `;` @ ;"
            ]
        );
    }

    /// Programs nested just under the parser's limit parse, check and drop within half of the
    /// 2 MiB stack a test thread gets by default, in a debug build: the headroom is for the
    /// caller's frames and for back ends that recurse over the same tree.
    #[test]
    fn deep_but_legal_nesting_fits_in_half_the_default_stack() {
        let n = 240;
        let mut blocks = String::from("fn b(x: int) -> int {\n");
        for _ in 0..n / 3 {
            blocks.push_str("if x > 0 { while x < 3 { for i in 0..x { ");
        }
        blocks.push_str("x += 1;");
        blocks.push_str(&"} } }".repeat(n / 3));
        blocks.push_str("return x; }\n");
        let chain: String = (0..n).map(|i| format!(" else if {i} > 0 {{ }}")).collect();
        let cases = [
            blocks,
            format!("fn k() {{ if false {{ }}{chain} }}"),
            format!(
                "fn p(x: int) -> int {{ return {}x{}; }}",
                "(".repeat(n),
                " + 1)".repeat(n)
            ),
            format!("fn q() -> int {{ return 1{}; }}", " * 2 - 1".repeat(n / 2)),
            format!("fn u() -> int {{ return {}1; }}", "-".repeat(n)),
            format!(
                "fn g(x: int) -> int {{ return {}x{}; }}",
                "g(".repeat(n),
                ")".repeat(n)
            ),
            format!(
                "fn s() -> float {{ return {}1.0{}; }}",
                "sqrt(".repeat(n),
                ")".repeat(n)
            ),
            format!(
                "fn i() -> int {{ let a: [int; 2]; return {}0{}; }}",
                "a[".repeat(n),
                "]".repeat(n)
            ),
        ];
        for text in cases {
            std::thread::Builder::new()
                .stack_size(1 << 20)
                .spawn(move || drop(ok(&text)))
                .unwrap()
                .join()
                .unwrap();
        }
    }
}
