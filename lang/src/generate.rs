//! Generators of Kiln source text for tests and benches, deterministic from a seed.
//!
//! [`random_program`] writes small programs that use as much of the language as it can while
//! staying valid, terminating quickly and (mostly) free of runtime errors; the JIT is checked
//! against the reference interpreter on them. [`realistic_program`] writes many functions of the
//! shape a game or tool script has, for the front-end and compile benches and `kiln run`.
//!
//! Both only write text; they never call the front end, so a generator bug shows up as a
//! diagnostic in the tests below rather than as a wrong assumption baked into a checked program.

use crate::program::{HostSignature, Signature, Type};
use fastrand::Rng;

/// The first line of every [`random_program`] starts with this, followed by `ok` or the kind of
/// the runtime error the program deliberately ends with (e.g. `division by zero`), so a test can
/// tell an intended error from a generator bug.
pub const EXPECTED_END_PREFIX: &str = "// expected end: ";

/// The runtime error a random program is built to end with, if any: the text after
/// [`EXPECTED_END_PREFIX`] on its first line, `None` for `ok`.
pub fn expected_error(program_text: &str) -> Option<&str> {
    let first = program_text.lines().next()?;
    let end = first.strip_prefix(EXPECTED_END_PREFIX)?;
    let end = end.split(" (").next().unwrap_or(end);
    (end != "ok").then_some(end)
}

/// A random valid program with `fn main()`, deterministic from `seed`.
///
/// It exercises ints, floats and bools, every operator (shifts, bitwise, casts, comparisons,
/// short-circuit), `let` shadowing, nested blocks, `if`/`else if`, `while` with `break` and
/// `continue`, `for`, local and global arrays (indexing, copying), globals, consts, helper
/// functions with an acyclic call graph plus recursion on a bounded decreasing parameter, the
/// builtins, and prints many intermediate values. Loops are bounded and the total work is
/// budgeted, so it runs in well under a second in the interpreter. About one program in eight
/// deliberately ends with a runtime error (see [`expected_error`]); everywhere else divisors are
/// made nonzero and indexes brought into range.
pub fn random_program(seed: u64) -> String {
    RandomGen::new(seed).program(seed)
}

// ---------------------------------------------------------------------------------------------
// Random programs

/// How deep blocks nest inside a function body, and expressions inside a statement. Together
/// with the parentheses the guards add, this stays far below the parser's nesting limit of 40.
const MAX_BLOCK_DEPTH: u32 = 4;
const MAX_EXPR_DEPTH: u32 = 4;
/// The product of the trip counts of the loops around a statement.
const MAX_LOOP_MULT: u64 = 48;
/// Upper bounds on the statements one call of a function executes, counting callees.
const HELPER_BUDGET: u64 = 1_500;
const MAIN_BUDGET: u64 = 12_000;

/// Precedence levels of LANGUAGE.md section 5, lowest first; an atom binds tightest.
const P_OR: u8 = 1;
const P_AND: u8 = 2;
const P_CMP: u8 = 3;
const P_BOR: u8 = 4;
const P_XOR: u8 = 5;
const P_BAND: u8 = 6;
const P_SHIFT: u8 = 7;
const P_ADD: u8 = 8;
const P_MUL: u8 = 9;
const P_AS: u8 = 10;
const P_UNARY: u8 = 11;
const P_ATOM: u8 = 12;

/// An expression's text and the precedence of its outermost operator, so a parent adds
/// parentheses exactly where they are needed (and randomly elsewhere).
struct E {
    text: String,
    prec: u8,
}

impl E {
    fn atom(text: impl Into<String>) -> E {
        E {
            text: text.into(),
            prec: P_ATOM,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Scalar(Type),
    Array(Type, u32),
}

#[derive(Clone, Debug)]
struct Var {
    name: String,
    kind: Kind,
    /// The generator may assign to it (false for consts, loop variables and loop counters, and
    /// the decreasing parameter of a recursive function).
    mutable: bool,
    /// The generator may `let`-shadow it (false where shadowing would hide a loop counter).
    shadowable: bool,
}

struct FnInfo {
    name: String,
    params: Vec<Type>,
    ret: Option<Type>,
    /// An upper bound on the statements one call executes.
    cost: u64,
    /// For a recursive function, its first parameter must be in `0..bound`.
    rec_bound: Option<i64>,
}

struct LoopCtx {
    /// False in a `while true` that must not get a `break` of its own (it ends a function with a
    /// return type, and LANGUAGE.md section 3 counts it as not falling through only then).
    may_break: bool,
}

struct RandomGen {
    rng: Rng,
    /// The item being written.
    out: String,
    indent: usize,
    /// Scope 0 holds consts and globals; each block pushes one.
    scopes: Vec<Vec<Var>>,
    funcs: Vec<FnInfo>,
    loops: Vec<LoopCtx>,
    block_depth: u32,
    mult: u64,
    cost: u64,
    budget: u64,
    next_name: u32,
    /// The return type of the function being written, and whether it is `main`.
    ret: Option<Type>,
    in_main: bool,
    /// Main may `return` early only when it is not meant to end with a runtime error.
    main_may_return: bool,
}

const SCALARS: [Type; 3] = [Type::Int, Type::Float, Type::Bool];

fn ty_name(t: Type) -> &'static str {
    t.name()
}

impl RandomGen {
    fn new(seed: u64) -> RandomGen {
        RandomGen {
            rng: Rng::with_seed(seed),
            out: String::new(),
            indent: 0,
            scopes: vec![Vec::new()],
            funcs: Vec::new(),
            loops: Vec::new(),
            block_depth: 0,
            mult: 1,
            cost: 0,
            budget: 0,
            next_name: 0,
            ret: None,
            in_main: false,
            main_may_return: true,
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_name += 1;
        format!("{prefix}{}", self.next_name)
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(0..100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.rng.usize(..items.len())])
        }
    }

    fn line(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn take_item(&mut self) -> String {
        std::mem::take(&mut self.out)
    }

    // --- scopes ------------------------------------------------------------------------------

    fn declare(&mut self, var: Var) {
        self.scopes.last_mut().unwrap().push(var);
    }

    /// Every binding visible here, innermost first, hidden ones left out.
    fn visible(&self) -> Vec<Var> {
        let mut seen = std::collections::HashSet::new();
        let mut vars = Vec::new();
        for scope in self.scopes.iter().rev() {
            for v in scope.iter().rev() {
                if seen.insert(v.name.clone()) {
                    vars.push(v.clone());
                }
            }
        }
        vars
    }

    fn vars_where(&self, f: impl Fn(&Var) -> bool) -> Vec<Var> {
        self.visible().into_iter().filter(|v| f(v)).collect()
    }

    fn scalar_vars(&self, t: Type) -> Vec<Var> {
        self.vars_where(|v| v.kind == Kind::Scalar(t))
    }

    fn arrays(&self) -> Vec<Var> {
        self.vars_where(|v| matches!(v.kind, Kind::Array(..)))
    }

    fn open_block(&mut self) {
        self.scopes.push(Vec::new());
        self.indent += 1;
        self.block_depth += 1;
    }

    fn close_block(&mut self) {
        self.scopes.pop();
        self.indent -= 1;
        self.block_depth -= 1;
    }

    // --- expressions -------------------------------------------------------------------------

    /// `e` as an operand that needs at least precedence `min`: parenthesized when it binds
    /// more loosely, and sometimes anyway.
    fn operand(&mut self, e: E, min: u8) -> String {
        if e.prec < min || (e.prec < P_ATOM && self.chance(25)) {
            format!("({})", e.text)
        } else {
            e.text
        }
    }

    fn paren(e: E) -> String {
        if e.prec < P_ATOM {
            format!("({})", e.text)
        } else {
            e.text
        }
    }

    /// A left-associative binary operator at level `prec`; comparisons do not chain, so their
    /// left operand must bind tighter too.
    fn binary(&mut self, op: &str, prec: u8, lhs: E, rhs: E) -> E {
        let left_min = if prec == P_CMP { prec + 1 } else { prec };
        let l = self.operand(lhs, left_min);
        let r = self.operand(rhs, prec + 1);
        E {
            text: format!("{l} {op} {r}"),
            prec,
        }
    }

    fn unary(&mut self, op: &str, e: E) -> E {
        let x = self.operand(e, P_UNARY);
        // `- -x` rather than `--x`, which reads like a decrement.
        let sep = if x.starts_with('-') { " " } else { "" };
        E {
            text: format!("{op}{sep}{x}"),
            prec: P_UNARY,
        }
    }

    fn cast(&mut self, e: E, to: Type) -> E {
        let x = self.operand(e, P_AS);
        E {
            text: format!("{x} as {}", ty_name(to)),
            prec: P_AS,
        }
    }

    fn call_text(name: &str, args: Vec<E>) -> E {
        let args: Vec<String> = args.into_iter().map(|a| a.text).collect();
        E::atom(format!("{name}({})", args.join(", ")))
    }

    fn int_literal(&mut self) -> E {
        let text = match self.rng.u32(0..40) {
            0 => "9223372036854775807".to_string(),
            1 => "0x8000_0000_0000_0000".to_string(),
            2 => "0xFFFF_FFFF_FFFF_FFFF".to_string(),
            3 => format!("0x{:x}", self.rng.u32(0..4096)),
            4 => format!("0x_{:X}", self.rng.u32(0..256)),
            5 => format!("0b{:b}", self.rng.u32(0..64)),
            6 => "1_000_000".to_string(),
            7 => format!("00{}", self.rng.u32(0..10)),
            8..=9 => self.rng.i64(1 << 32..1 << 40).to_string(),
            10..=14 => {
                let x = E::atom(self.rng.u32(1..50).to_string());
                return self.unary("-", x);
            }
            _ => self.rng.u32(0..30).to_string(),
        };
        E::atom(text)
    }

    fn float_literal(&mut self) -> E {
        let text = match self.rng.u32(0..30) {
            0 => "1e9".to_string(),
            1 => "2.5e-3".to_string(),
            2 => "1E+2".to_string(),
            3 => "1_000.0".to_string(),
            4 => "0.1".to_string(),
            5 => "3.14159".to_string(),
            6 => "1e300".to_string(),
            7..=10 => {
                let x = self.rng.u32(1..80) as f64 / 8.0;
                return self.unary("-", E::atom(format!("{x:?}")));
            }
            _ => format!("{:?}", self.rng.u32(0..80) as f64 / 4.0),
        };
        E::atom(text)
    }

    fn literal(&mut self, t: Type) -> E {
        match t {
            Type::Int => self.int_literal(),
            Type::Float => self.float_literal(),
            Type::Bool => E::atom(if self.rng.bool() { "true" } else { "false" }),
        }
    }

    fn leaf(&mut self, t: Type) -> E {
        let r = self.rng.u32(0..100);
        if r < 55 {
            let vars = self.scalar_vars(t);
            if let Some(v) = self.pick(&vars) {
                return E::atom(v.name.clone());
            }
        } else if r < 70 {
            let arrays = self.vars_where(|v| matches!(v.kind, Kind::Array(e, _) if e == t));
            if let Some(a) = self.pick(&arrays).cloned() {
                return self.index_read(&a, 0);
            }
        } else if r < 75 && t == Type::Int {
            let arrays = self.arrays();
            if let Some(a) = self.pick(&arrays) {
                return E::atom(format!("len({})", a.name));
            }
        }
        self.literal(t)
    }

    fn index_read(&mut self, array: &Var, depth: u32) -> E {
        let Kind::Array(_, len) = array.kind else {
            unreachable!("index_read of a scalar")
        };
        let idx = self.index(&array.name, len, depth);
        E::atom(format!("{}[{}]", array.name, idx.text))
    }

    /// An int expression always in `0..len`.
    fn index(&mut self, array: &str, len: u32, depth: u32) -> E {
        let r = self.rng.u32(0..10);
        if r < 3 {
            return E::atom(self.rng.u32(0..len).to_string());
        }
        let e = self.int_expr(depth.saturating_sub(1));
        let l = if self.rng.bool() {
            E::atom(len.to_string())
        } else {
            E::atom(format!("len({array})"))
        };
        if r < 5 && len.is_power_of_two() {
            // A nonnegative mask keeps any int, negative ones included, in range.
            let mask = E::atom((len - 1).to_string());
            return self.binary("&", P_BAND, e, mask);
        }
        // `(e % L + L) % L`: `e % L` is in `-L+1..L`, so the sum is positive and cannot overflow.
        let l2 = E::atom(l.text.clone());
        let l3 = E::atom(l.text.clone());
        let m = self.binary("%", P_MUL, e, l);
        let s = self.binary("+", P_ADD, m, l2);
        self.binary("%", P_MUL, s, l3)
    }

    /// An int expression that is never zero.
    fn divisor(&mut self, depth: u32) -> E {
        if self.chance(40) {
            let d = *self.pick(&[1i64, 2, 3, 7, 10, -1, -3]).unwrap();
            if d < 0 {
                return self.unary("-", E::atom((-d).to_string()));
            }
            return E::atom(d.to_string());
        }
        // An odd number is never zero; `-1` happens, so `MIN / -1` can too.
        let e = self.int_expr(depth);
        let d = self.binary("|", P_BOR, e, E::atom("1"));
        E::atom(format!("({})", d.text))
    }

    fn expr(&mut self, t: Type, depth: u32) -> E {
        match t {
            Type::Int => self.int_expr(depth),
            Type::Float => self.float_expr(depth),
            Type::Bool => self.bool_expr(depth),
        }
    }

    fn int_expr(&mut self, depth: u32) -> E {
        if depth == 0 || self.chance(25) {
            return self.leaf(Type::Int);
        }
        let d = depth - 1;
        match self.rng.u32(0..22) {
            0..=5 => {
                let op = *self.pick(&["+", "-", "*"]).unwrap();
                let prec = if op == "*" { P_MUL } else { P_ADD };
                let (a, b) = (self.int_expr(d), self.int_expr(d));
                self.binary(op, prec, a, b)
            }
            6..=8 => {
                let (op, prec) = *self
                    .pick(&[("&", P_BAND), ("|", P_BOR), ("^", P_XOR)])
                    .unwrap();
                let (a, b) = (self.int_expr(d), self.int_expr(d));
                self.binary(op, prec, a, b)
            }
            9 => {
                let op = if self.rng.bool() { "<<" } else { ">>" };
                let (a, b) = (self.int_expr(d), self.int_expr(d));
                self.binary(op, P_SHIFT, a, b)
            }
            10..=11 => {
                let op = if self.rng.bool() { "/" } else { "%" };
                let a = self.int_expr(d);
                let b = self.divisor(d);
                self.binary(op, P_MUL, a, b)
            }
            12 => {
                let op = if self.rng.bool() { "-" } else { "!" };
                let a = self.int_expr(d);
                self.unary(op, a)
            }
            13 => {
                let f = self.float_expr(d);
                self.cast(f, Type::Int)
            }
            14 => {
                let b = self.bool_expr(d);
                self.cast(b, Type::Int)
            }
            15 => {
                // A chain through float and back.
                let a = self.int_expr(d);
                let f = self.cast(a, Type::Float);
                self.cast(f, Type::Int)
            }
            16 => {
                let a = self.int_expr(d);
                RandomGen::call_text("abs", vec![a])
            }
            17 => {
                let name = if self.rng.bool() { "min" } else { "max" };
                let (a, b) = (self.int_expr(d), self.int_expr(d));
                RandomGen::call_text(name, vec![a, b])
            }
            18..=19 => self
                .call_expr(Some(Type::Int), d)
                .unwrap_or_else(|| self.leaf(Type::Int)),
            20 => self.array_read_or_leaf(Type::Int, d),
            _ => self.leaf(Type::Int),
        }
    }

    /// A read of a random array of element type `ty`, or a leaf when there is none.
    fn array_read_or_leaf(&mut self, ty: Type, depth: u32) -> E {
        let arrays = self.vars_where(|v| matches!(v.kind, Kind::Array(t, _) if t == ty));
        match self.pick(&arrays).cloned() {
            Some(a) => self.index_read(&a, depth),
            None => self.leaf(ty),
        }
    }

    fn float_expr(&mut self, depth: u32) -> E {
        if depth == 0 || self.chance(25) {
            return self.leaf(Type::Float);
        }
        let d = depth - 1;
        match self.rng.u32(0..20) {
            0..=6 => {
                let (op, prec) = *self
                    .pick(&[
                        ("+", P_ADD),
                        ("-", P_ADD),
                        ("*", P_MUL),
                        ("/", P_MUL),
                        ("%", P_MUL),
                    ])
                    .unwrap();
                let (a, b) = (self.float_expr(d), self.float_expr(d));
                self.binary(op, prec, a, b)
            }
            7 => {
                let a = self.float_expr(d);
                self.unary("-", a)
            }
            8..=9 => {
                let a = self.int_expr(d);
                self.cast(a, Type::Float)
            }
            10..=12 => {
                let name = *self
                    .pick(&[
                        "sqrt", "sin", "cos", "tan", "exp", "ln", "floor", "ceil", "abs",
                    ])
                    .unwrap();
                let a = self.float_expr(d);
                RandomGen::call_text(name, vec![a])
            }
            13..=14 => {
                let name = *self.pick(&["min", "max", "pow"]).unwrap();
                let (a, b) = (self.float_expr(d), self.float_expr(d));
                RandomGen::call_text(name, vec![a, b])
            }
            15..=16 => self
                .call_expr(Some(Type::Float), d)
                .unwrap_or_else(|| self.leaf(Type::Float)),
            17 => self.array_read_or_leaf(Type::Float, d),
            _ => self.leaf(Type::Float),
        }
    }

    fn bool_expr(&mut self, depth: u32) -> E {
        if depth == 0 || self.chance(20) {
            return self.leaf(Type::Bool);
        }
        let d = depth - 1;
        match self.rng.u32(0..16) {
            0..=7 => {
                let t = *self.pick(&SCALARS).unwrap();
                let ops: &[&str] = if t == Type::Bool {
                    &["==", "!="]
                } else {
                    &["==", "!=", "<", "<=", ">", ">="]
                };
                let op = *self.pick(ops).unwrap();
                let (a, b) = (self.expr(t, d), self.expr(t, d));
                self.binary(op, P_CMP, a, b)
            }
            8..=9 => {
                let (a, b) = (self.bool_expr(d), self.bool_expr(d));
                self.binary("&&", P_AND, a, b)
            }
            10..=11 => {
                let (a, b) = (self.bool_expr(d), self.bool_expr(d));
                self.binary("||", P_OR, a, b)
            }
            12 => {
                let a = self.bool_expr(d);
                self.unary("!", a)
            }
            13 => self
                .call_expr(Some(Type::Bool), d)
                .unwrap_or_else(|| self.leaf(Type::Bool)),
            _ => self.leaf(Type::Bool),
        }
    }

    /// A call to an already written function returning `ret` (`None`: any function) whose cost
    /// fits the budget, or `None` when there is none.
    fn call_expr(&mut self, ret: Option<Type>, depth: u32) -> Option<E> {
        let candidates: Vec<usize> = (0..self.funcs.len())
            .filter(|&i| {
                let f = &self.funcs[i];
                (ret.is_none() || f.ret == ret)
                    && self.cost + self.mult * (f.cost + 1) <= self.budget
            })
            .collect();
        let &i = self.pick(&candidates)?;
        self.cost += self.mult * (self.funcs[i].cost + 1);
        let (name, params, bound) = {
            let f = &self.funcs[i];
            (f.name.clone(), f.params.clone(), f.rec_bound)
        };
        let mut args = Vec::new();
        for (k, &p) in params.iter().enumerate() {
            let arg = match bound {
                Some(b) if k == 0 => self.bounded(b, depth),
                _ => self.expr(p, depth.min(2)),
            };
            args.push(arg);
        }
        Some(RandomGen::call_text(&name, args))
    }

    /// An int expression in `0..bound`.
    fn bounded(&mut self, bound: i64, depth: u32) -> E {
        if self.chance(40) {
            return E::atom(self.rng.i64(0..bound).to_string());
        }
        let e = self.int_expr(depth.min(1));
        let b = || E::atom(bound.to_string());
        let m = self.binary("%", P_MUL, e, b());
        let s = self.binary("+", P_ADD, m, b());
        self.binary("%", P_MUL, s, b())
    }

    /// A const expression of type `t` (literals, consts, operators and `as`; no division, so no
    /// division by zero).
    fn const_expr(&mut self, t: Type, depth: u32) -> E {
        if depth == 0 || self.chance(30) {
            let consts = self.vars_where(|v| !v.mutable && v.kind == Kind::Scalar(t));
            if self.chance(50)
                && let Some(c) = self.pick(&consts)
            {
                return E::atom(c.name.clone());
            }
            return self.literal(t);
        }
        let d = depth - 1;
        match t {
            Type::Int => match self.rng.u32(0..5) {
                0 => {
                    let (a, b) = (self.const_expr(Type::Int, d), self.const_expr(Type::Int, d));
                    self.binary("+", P_ADD, a, b)
                }
                1 => {
                    let (a, b) = (self.const_expr(Type::Int, d), self.const_expr(Type::Int, d));
                    self.binary("*", P_MUL, a, b)
                }
                2 => {
                    let (a, b) = (self.const_expr(Type::Int, d), self.const_expr(Type::Int, d));
                    self.binary("<<", P_SHIFT, a, b)
                }
                3 => {
                    let a = self.const_expr(Type::Float, d);
                    self.cast(a, Type::Int)
                }
                _ => {
                    let a = self.const_expr(Type::Int, d);
                    self.unary("!", a)
                }
            },
            Type::Float => match self.rng.u32(0..3) {
                0 => {
                    let (a, b) = (
                        self.const_expr(Type::Float, d),
                        self.const_expr(Type::Float, d),
                    );
                    self.binary("*", P_MUL, a, b)
                }
                1 => {
                    let a = self.const_expr(Type::Float, d);
                    let b = E::atom(*self.pick(&["60.0", "3.0", "7.5"]).unwrap());
                    self.binary("/", P_MUL, a, b)
                }
                _ => {
                    let a = self.const_expr(Type::Int, d);
                    self.cast(a, Type::Float)
                }
            },
            Type::Bool => {
                let (a, b) = (self.const_expr(Type::Int, d), self.const_expr(Type::Int, d));
                self.binary("<", P_CMP, a, b)
            }
        }
    }

    // --- statements --------------------------------------------------------------------------

    fn depth(&mut self) -> u32 {
        self.rng.u32(1..=MAX_EXPR_DEPTH)
    }

    fn stmts(&mut self, n: usize) {
        for _ in 0..n {
            if self.cost >= self.budget {
                break;
            }
            self.stmt();
        }
    }

    fn stmt(&mut self) {
        self.cost += self.mult;
        if self.chance(3) {
            let c = *self
                .pick(&[
                    "// a comment",
                    "/* a /* nested */ comment */",
                    "// x = 1 / 0;",
                ])
                .unwrap();
            self.line(c);
        }
        let can_nest = self.block_depth < MAX_BLOCK_DEPTH;
        let done = match self.rng.u32(0..100) {
            0..=10 => self.let_scalar(),
            11..=14 => self.let_shadow(),
            15..=17 => self.let_array(),
            18..=19 => self.let_copy(),
            20..=28 => self.assign(false),
            29..=35 => self.assign(true),
            36..=41 => self.assign_element(),
            42..=43 => self.copy_array(),
            44..=57 => self.print_expr(),
            58..=59 => self.print_string(),
            60..=67 if can_nest => self.if_stmt(),
            68..=71 if can_nest => self.while_stmt(),
            72..=76 if can_nest => self.for_stmt(),
            77..=78 if can_nest => self.block_stmt(),
            79..=83 => self.call_stmt(),
            84..=88 => self.loop_exit(),
            89..=90 => self.early_return(),
            _ => false,
        };
        if !done {
            self.print_var();
        }
    }

    fn scalar_type(&mut self) -> Type {
        *self.pick(&SCALARS).unwrap()
    }

    fn let_scalar(&mut self) -> bool {
        let t = self.scalar_type();
        let d = self.depth();
        let e = self.expr(t, d);
        let name = self.fresh("v");
        if self.chance(30) {
            self.line(&format!("let {name}: {} = {};", ty_name(t), e.text));
        } else {
            self.line(&format!("let {name} = {};", e.text));
        }
        self.declare(Var {
            name,
            kind: Kind::Scalar(t),
            mutable: true,
            shadowable: true,
        });
        true
    }

    /// `let x = ...x...;` with a possibly different type: the initializer still sees the old `x`.
    fn let_shadow(&mut self) -> bool {
        let candidates = self.vars_where(|v| v.shadowable && matches!(v.kind, Kind::Scalar(_)));
        let Some(old) = self.pick(&candidates).cloned() else {
            return false;
        };
        let Kind::Scalar(old_t) = old.kind else {
            unreachable!()
        };
        let t = self.scalar_type();
        let e = if t == old_t && t != Type::Bool && self.chance(60) {
            let other = self.expr(t, 1);
            self.binary("+", P_ADD, E::atom(old.name.clone()), other)
        } else if t == Type::Float && old_t == Type::Int {
            self.cast(E::atom(old.name.clone()), Type::Float)
        } else {
            let d = self.depth();
            self.expr(t, d)
        };
        self.line(&format!("let {} = {};", old.name, e.text));
        self.declare(Var {
            name: old.name,
            kind: Kind::Scalar(t),
            mutable: true,
            shadowable: true,
        });
        self.print_name_sometimes();
        true
    }

    fn print_name_sometimes(&mut self) {
        if self.chance(50) {
            let vars = self.vars_where(|v| matches!(v.kind, Kind::Scalar(_)));
            if let Some(v) = self.pick(&vars) {
                let name = v.name.clone();
                self.line(&format!("print({name});"));
            }
        }
    }

    fn let_array(&mut self) -> bool {
        let t = self.scalar_type();
        let (len, len_text) = self.array_len();
        let name = self.fresh("a");
        self.line(&format!("let {name}: [{}; {len_text}];", ty_name(t)));
        self.declare(Var {
            name,
            kind: Kind::Array(t, len),
            mutable: true,
            shadowable: false,
        });
        true
    }

    /// A length for a new array: a literal or an int const of known value.
    fn array_len(&mut self) -> (u32, String) {
        let lens: Vec<(u32, String)> = self.scopes[0]
            .iter()
            .filter_map(|v| {
                let n = v.name.strip_prefix("LEN_")?;
                Some((n.parse().ok()?, v.name.clone()))
            })
            .collect();
        if self.chance(40)
            && let Some(l) = self.pick(&lens)
        {
            return l.clone();
        }
        let len = *self.pick(&[1u32, 2, 3, 4, 5, 8, 10, 16]).unwrap();
        (len, len.to_string())
    }

    fn let_copy(&mut self) -> bool {
        let arrays = self.arrays();
        let Some(src) = self.pick(&arrays).cloned() else {
            return false;
        };
        let name = self.fresh("a");
        self.line(&format!("let {name} = {};", src.name));
        self.declare(Var {
            name,
            kind: src.kind,
            mutable: true,
            shadowable: false,
        });
        true
    }

    fn copy_array(&mut self) -> bool {
        let arrays = self.arrays();
        let Some(dst) = self.pick(&arrays).cloned() else {
            return false;
        };
        let same: Vec<Var> = arrays.into_iter().filter(|a| a.kind == dst.kind).collect();
        let src = self.pick(&same).unwrap().clone();
        self.line(&format!("{} = {};", dst.name, src.name));
        true
    }

    /// The compound operators of a type, with whether the right-hand side must be nonzero.
    fn compound_op(&mut self, t: Type) -> Option<(&'static str, bool)> {
        match t {
            Type::Int => Some(
                *self
                    .pick(&[
                        ("+=", false),
                        ("-=", false),
                        ("*=", false),
                        ("/=", true),
                        ("%=", true),
                        ("&=", false),
                        ("|=", false),
                        ("^=", false),
                        ("<<=", false),
                        (">>=", false),
                    ])
                    .unwrap(),
            ),
            Type::Float => Some(
                *self
                    .pick(&[
                        ("+=", false),
                        ("-=", false),
                        ("*=", false),
                        ("/=", false),
                        ("%=", false),
                    ])
                    .unwrap(),
            ),
            Type::Bool => None,
        }
    }

    /// The right-hand side of an assignment to a `t`, for operator `op` (`=` or compound).
    fn assign_value(&mut self, t: Type, nonzero: bool) -> E {
        let d = self.depth();
        if nonzero {
            self.divisor(d.min(2))
        } else {
            self.expr(t, d)
        }
    }

    fn assign(&mut self, compound: bool) -> bool {
        let targets = self.vars_where(|v| v.mutable && matches!(v.kind, Kind::Scalar(_)));
        let Some(v) = self.pick(&targets).cloned() else {
            return false;
        };
        let Kind::Scalar(t) = v.kind else {
            unreachable!()
        };
        let (op, nonzero) = compound
            .then(|| self.compound_op(t))
            .flatten()
            .unwrap_or(("=", false));
        let e = self.assign_value(t, nonzero);
        self.line(&format!("{} {op} {};", v.name, e.text));
        if self.chance(40) {
            self.line(&format!("print({});", v.name));
        }
        true
    }

    fn assign_element(&mut self) -> bool {
        let arrays = self.arrays();
        let Some(a) = self.pick(&arrays).cloned() else {
            return false;
        };
        let Kind::Array(t, len) = a.kind else {
            unreachable!()
        };
        let idx = self.index(&a.name, len, 2);
        let (op, nonzero) = self
            .chance(50)
            .then(|| self.compound_op(t))
            .flatten()
            .unwrap_or(("=", false));
        let e = self.assign_value(t, nonzero);
        self.line(&format!("{}[{}] {op} {};", a.name, idx.text, e.text));
        if self.chance(40) {
            let read = self.index_read(&a, 1);
            self.line(&format!("print({});", read.text));
        }
        true
    }

    fn print_expr(&mut self) -> bool {
        let t = self.scalar_type();
        let d = self.depth();
        let e = self.expr(t, d);
        self.line(&format!("print({});", e.text));
        true
    }

    fn print_var(&mut self) {
        let vars = self.vars_where(|v| matches!(v.kind, Kind::Scalar(_)));
        match self.pick(&vars) {
            Some(v) => {
                let name = v.name.clone();
                self.line(&format!("print({name});"));
            }
            None => self.line("print(0);"),
        }
    }

    fn print_string(&mut self) -> bool {
        let s = *self
            .pick(&[
                r#""checkpoint""#,
                r#""tab\there""#,
                r#""quote \" and backslash \\""#,
                r#""""#,
                r#""multi\nline\r""#,
                r#""nul \0 byte""#,
                r#""é ünïcode ✓""#,
            ])
            .unwrap();
        self.line(&format!("print({s});"));
        true
    }

    fn cond(&mut self) -> String {
        let d = self.rng.u32(1..=3);
        self.bool_expr(d).text
    }

    /// A nested block of `n` statements, in its own scope.
    fn body(&mut self, n: usize) {
        self.open_block();
        self.stmts(n);
        self.close_block();
    }

    fn if_stmt(&mut self) -> bool {
        let c = self.cond();
        self.line(&format!("if {c} {{"));
        let n = self.rng.usize(1..4);
        self.body(n);
        let mut else_ifs = if self.chance(30) {
            self.rng.u32(1..3)
        } else {
            0
        };
        while else_ifs > 0 {
            let c = self.cond();
            self.line(&format!("}} else if {c} {{"));
            let n = self.rng.usize(1..3);
            self.body(n);
            else_ifs -= 1;
        }
        if self.chance(50) {
            self.line("} else {");
            let n = self.rng.usize(1..4);
            self.body(n);
        }
        self.line("}");
        true
    }

    /// Trip count for a new loop, or `None` when the loops around allow no more work.
    fn trips(&mut self) -> Option<u64> {
        let max = (MAX_LOOP_MULT / self.mult).min(6);
        if max < 2 || self.cost >= self.budget {
            return None;
        }
        Some(self.rng.u64(2..=max))
    }

    /// Writes a loop body with the multiplier and loop context set.
    fn loop_body(&mut self, trips: u64, may_break: bool, prologue: &[String], n: usize) {
        let saved = self.mult;
        self.mult *= trips;
        self.loops.push(LoopCtx { may_break });
        self.open_block();
        for l in prologue {
            self.line(l);
        }
        self.stmts(n);
        self.close_block();
        self.loops.pop();
        self.mult = saved;
    }

    fn while_stmt(&mut self) -> bool {
        let Some(trips) = self.trips() else {
            return false;
        };
        let w = self.fresh("w");
        self.line(&format!("let {w} = 0;"));
        self.declare(Var {
            name: w.clone(),
            kind: Kind::Scalar(Type::Int),
            mutable: false,
            shadowable: false,
        });
        let n = self.rng.usize(1..5);
        // The counter is bumped first, so a `continue` anywhere in the body still counts.
        if self.chance(70) {
            let mut c = format!("{w} < {trips}");
            if self.chance(30) {
                let extra = self.bool_expr(1);
                c = self
                    .binary(
                        "&&",
                        P_AND,
                        E {
                            text: c,
                            prec: P_CMP,
                        },
                        extra,
                    )
                    .text;
            }
            self.line(&format!("while {c} {{"));
            self.loop_body(trips, true, &[format!("{w} += 1;")], n);
        } else {
            self.line("while true {");
            let prologue = [
                format!("{w} += 1;"),
                format!("if {w} > {trips} {{ break; }}"),
            ];
            self.loop_body(trips, true, &prologue, n);
        }
        self.line("}");
        true
    }

    fn for_stmt(&mut self) -> bool {
        let Some(trips) = self.trips() else {
            return false;
        };
        // Start in 0..3 and end at most `trips`, so at most `trips` iterations.
        let start = if self.chance(60) {
            self.rng.u64(0..3).to_string()
        } else {
            RandomGen::paren(self.bounded(3, 1))
        };
        let end = if self.chance(60) {
            trips.to_string()
        } else {
            let e = self.int_expr(1);
            format!("min({}, {trips})", e.text)
        };
        let var = self.fresh("i");
        self.line(&format!("for {var} in {start}..{end} {{"));
        let saved = self.mult;
        self.mult *= trips;
        self.loops.push(LoopCtx { may_break: true });
        self.open_block();
        self.declare(Var {
            name: var,
            kind: Kind::Scalar(Type::Int),
            mutable: false,
            shadowable: true,
        });
        let n = self.rng.usize(1..5);
        self.stmts(n);
        self.close_block();
        self.loops.pop();
        self.mult = saved;
        self.line("}");
        true
    }

    fn block_stmt(&mut self) -> bool {
        self.line("{");
        let n = self.rng.usize(1..4);
        self.body(n);
        self.line("}");
        true
    }

    fn call_stmt(&mut self) -> bool {
        let d = self.rng.u32(1..3);
        match self.call_expr(None, d) {
            Some(call) => {
                self.line(&format!("{};", call.text));
                true
            }
            None => false,
        }
    }

    /// `if c { break; }` or `if c { continue; }` inside a loop, sometimes with dead code after.
    fn loop_exit(&mut self) -> bool {
        let Some(ctx) = self.loops.last() else {
            return false;
        };
        let kw = if ctx.may_break && self.rng.bool() {
            "break"
        } else {
            "continue"
        };
        let c = self.cond();
        if self.chance(15) {
            // Statements after `break`/`continue` in the same block are allowed and never run.
            self.line(&format!("if {c} {{ {kw}; print(\"unreachable\"); }}"));
        } else {
            self.line(&format!("if {c} {{ {kw}; }}"));
        }
        true
    }

    fn early_return(&mut self) -> bool {
        if self.in_main && !(self.main_may_return && self.chance(10)) {
            return false;
        }
        let c = self.cond();
        let value = match self.ret {
            Some(t) => {
                let e = self.expr(t, 2);
                format!(" {}", e.text)
            }
            None => String::new(),
        };
        self.line(&format!("if {c} {{ return{value}; }}"));
        true
    }

    // --- items -------------------------------------------------------------------------------

    fn start_function(&mut self, budget: u64) {
        self.cost = 0;
        self.mult = 1;
        self.budget = budget;
        self.indent = 0;
        self.block_depth = 0;
    }

    fn params(&mut self, types: &[Type], first_immutable: bool) -> String {
        let mut text = Vec::new();
        self.scopes.push(Vec::new());
        for (k, &t) in types.iter().enumerate() {
            let name = self.fresh("p");
            text.push(format!("{name}: {}", ty_name(t)));
            let fixed = first_immutable && k == 0;
            self.declare(Var {
                name,
                kind: Kind::Scalar(t),
                mutable: !fixed,
                shadowable: !fixed,
            });
        }
        text.join(", ")
    }

    fn ret_text(ret: Option<Type>) -> String {
        match ret {
            Some(t) => format!(" -> {}", ty_name(t)),
            None => String::new(),
        }
    }

    fn helper(&mut self) -> String {
        let name = self.fresh("f");
        let n_params = self.rng.usize(0..4);
        let params: Vec<Type> = (0..n_params).map(|_| self.scalar_type()).collect();
        let ret = if self.chance(75) {
            Some(self.scalar_type())
        } else {
            None
        };
        self.start_function(HELPER_BUDGET);
        self.ret = ret;
        let ptext = self.params(&params, false);
        self.line(&format!(
            "fn {name}({ptext}){} {{",
            RandomGen::ret_text(ret)
        ));
        self.indent = 1;
        self.block_depth = 1;
        let n = self.rng.usize(2..8);
        self.stmts(n);
        if let Some(t) = ret {
            self.function_end(t);
        }
        self.scopes.pop();
        self.indent = 0;
        self.line("}");
        self.funcs.push(FnInfo {
            name,
            params,
            ret,
            cost: self.cost.max(1),
            rec_bound: None,
        });
        self.take_item()
    }

    /// The end of a function returning `t`, in one of the forms LANGUAGE.md section 3 accepts as
    /// not falling through.
    fn function_end(&mut self, t: Type) {
        match self.rng.u32(0..10) {
            0..=5 => {
                let e = self.expr(t, 3);
                self.line(&format!("return {};", e.text));
            }
            6..=7 => {
                let c = self.cond();
                self.line(&format!("if {c} {{"));
                self.open_block();
                self.stmts(1);
                let e = self.expr(t, 2);
                self.line(&format!("return {};", e.text));
                self.close_block();
                self.line("} else {");
                self.open_block();
                let e = self.expr(t, 2);
                self.line(&format!("return {};", e.text));
                self.close_block();
                self.line("}");
            }
            _ => {
                // `while true` with no `break` of its own never falls through; it returns once
                // its counter passes the trip count.
                let trips = self.rng.u64(1..4);
                let w = self.fresh("w");
                self.line(&format!("let {w} = 0;"));
                self.declare(Var {
                    name: w.clone(),
                    kind: Kind::Scalar(Type::Int),
                    mutable: false,
                    shadowable: false,
                });
                self.line("while true {");
                let e = self.expr(t, 2);
                let prologue = [
                    format!("{w} += 1;"),
                    format!("if {w} > {trips} {{ return {}; }}", e.text),
                ];
                self.loop_body(trips, false, &prologue, 2);
                self.line("}");
            }
        }
    }

    /// A function recursing on a first parameter `n` that decreases by 1 or 2 per call and is
    /// in `0..bound` when called from elsewhere.
    fn recursive(&mut self) -> String {
        let name = self.fresh("rec");
        let tree = self.chance(30);
        let bound: i64 = if tree { 7 } else { 9 };
        let calls: u64 = if tree { 1 << bound } else { bound as u64 };
        let mut params = vec![Type::Int];
        for _ in 0..self.rng.usize(0..3) {
            params.push(self.scalar_type());
        }
        let ret = if self.chance(80) {
            Some(*self.pick(&[Type::Int, Type::Float]).unwrap())
        } else {
            None
        };
        self.start_function(HELPER_BUDGET / calls);
        self.ret = ret;
        let ptext = self.params(&params, true);
        let n = self.scopes.last().unwrap()[0].name.clone();
        self.line(&format!(
            "fn {name}({ptext}){} {{",
            RandomGen::ret_text(ret)
        ));
        self.indent = 1;
        // The loops and nesting depth stay small: the body runs once per call.
        self.block_depth = MAX_BLOCK_DEPTH - 1;
        let base = match ret {
            Some(t) => format!("return {};", self.leaf(t).text),
            None => "return;".to_string(),
        };
        let cmp = if self.rng.bool() { "<= 0" } else { "< 1" };
        self.line(&format!("if {n} {cmp} {{ {base} }}"));
        let k = self.rng.usize(0..3);
        self.stmts(k);
        let self_call = |g: &mut RandomGen, step: i64| {
            let mut args = vec![format!("{n} - {step}")];
            for &p in &params[1..] {
                args.push(g.expr(p, 1).text);
            }
            format!("{name}({})", args.join(", "))
        };
        let first = self_call(self, 1);
        let second = tree.then(|| self_call(self, 2));
        match ret {
            Some(t) => {
                let rest = match second {
                    Some(s) => E {
                        text: s,
                        prec: P_ATOM,
                    },
                    None => self.expr(t, 1),
                };
                let op = *self.pick(&["+", "-", "*"]).unwrap();
                let prec = if op == "*" { P_MUL } else { P_ADD };
                let e = self.binary(op, prec, E::atom(first), rest);
                self.line(&format!("return {};", e.text));
            }
            None => {
                self.line(&format!("print({n});"));
                self.line(&format!("{first};"));
                if let Some(s) = second {
                    self.line(&format!("{s};"));
                }
            }
        }
        self.scopes.pop();
        self.block_depth = 0;
        self.indent = 0;
        self.line("}");
        self.funcs.push(FnInfo {
            name,
            params,
            ret,
            cost: (self.cost.max(1) + 1) * calls,
            rec_bound: Some(bound),
        });
        self.take_item()
    }

    fn consts_and_globals(&mut self, items: &mut Vec<String>) {
        // Array lengths as consts named by their value, so `array_len` can reuse them.
        for _ in 0..self.rng.usize(0..3) {
            let len = *self.pick(&[2u32, 4, 6, 8, 12]).unwrap();
            let name = format!("LEN_{len}");
            if self.scopes[0].iter().any(|v| v.name == name) {
                continue;
            }
            let text = if len.is_multiple_of(2) && self.rng.bool() {
                format!("const {name}: int = {} * 2;", len / 2)
            } else {
                format!("const {name}: int = {len};")
            };
            items.push(text);
            self.declare(Var {
                name,
                kind: Kind::Scalar(Type::Int),
                mutable: false,
                shadowable: false,
            });
        }
        for _ in 0..self.rng.usize(1..5) {
            let t = self.scalar_type();
            let e = self.const_expr(t, 2);
            let name = self.fresh("K");
            items.push(format!("const {name}: {} = {};", ty_name(t), e.text));
            self.declare(Var {
                name,
                kind: Kind::Scalar(t),
                mutable: false,
                shadowable: false,
            });
        }
        for _ in 0..self.rng.usize(1..5) {
            let t = self.scalar_type();
            let e = self.const_expr(t, 2);
            let name = self.fresh("g");
            items.push(format!("global {name}: {} = {};", ty_name(t), e.text));
            self.declare(Var {
                name,
                kind: Kind::Scalar(t),
                mutable: true,
                shadowable: true,
            });
        }
        for _ in 0..self.rng.usize(1..3) {
            let t = self.scalar_type();
            let (len, len_text) = self.array_len();
            let name = self.fresh("ga");
            items.push(format!("global {name}: [{}; {len_text}];", ty_name(t)));
            self.declare(Var {
                name,
                kind: Kind::Array(t, len),
                mutable: true,
                shadowable: false,
            });
        }
    }

    fn main_fn(&mut self, error: Option<ErrorEnd>, items: &mut Vec<String>) -> String {
        self.start_function(MAIN_BUDGET);
        self.ret = None;
        self.in_main = true;
        self.main_may_return = error.is_none();
        self.scopes.push(Vec::new());
        self.line("fn main() {");
        self.indent = 1;
        self.block_depth = 1;
        let n = self.rng.usize(8..25);
        self.stmts(n);
        // Every global at the end, so a wrong store anywhere shows in the output.
        let globals: Vec<Var> = self.scopes[0]
            .iter()
            .filter(|v| v.mutable)
            .cloned()
            .collect();
        for g in globals {
            match g.kind {
                Kind::Scalar(_) => self.line(&format!("print({});", g.name)),
                Kind::Array(_, len) => {
                    for i in 0..len.min(4) {
                        self.line(&format!("print({}[{i}]);", g.name));
                    }
                }
            }
        }
        if let Some(end) = error {
            self.error_end(end, items);
            self.line("print(\"not reached\");");
        }
        self.scopes.pop();
        self.indent = 0;
        self.line("}");
        self.in_main = false;
        self.take_item()
    }

    /// Statements that end main with the chosen runtime error; a helper it needs goes to `items`.
    fn error_end(&mut self, end: ErrorEnd, items: &mut Vec<String>) {
        let z = self.fresh("z");
        match (end, self.rng.u32(0..3)) {
            (ErrorEnd::DivisionByZero, 0) => {
                self.line(&format!("let {z} = 0;"));
                let e = self.int_expr(2);
                let op = if self.rng.bool() { "/" } else { "%" };
                let l = self.operand(e, P_MUL);
                self.line(&format!("print({l} {op} {z});"));
            }
            (ErrorEnd::DivisionByZero, 1) => {
                let v = self.fresh("v");
                self.line(&format!("let {v} = 17;"));
                self.line(&format!("let {z} = {v} - 17;"));
                self.line(&format!("{v} %= {z};"));
            }
            (ErrorEnd::DivisionByZero, _) => {
                let f = self.fresh("fail");
                items.push(format!(
                    "fn {f}(d: int) -> int {{\n    print(d);\n    return 100 / d;\n}}\n"
                ));
                self.line(&format!("print({f}(0));"));
            }
            (ErrorEnd::IndexOutOfBounds, k) => {
                let a = self.fresh("a");
                let len = self.rng.u32(1..6);
                self.line(&format!("let {a}: [int; {len}];"));
                let idx = if k == 0 {
                    format!("len({a}) + {}", self.rng.u32(0..3))
                } else {
                    format!("0 - {}", self.rng.u32(1..3))
                };
                self.line(&format!("let {z} = {idx};"));
                if self.rng.bool() {
                    self.line(&format!("print({a}[{z}]);"));
                } else {
                    self.line(&format!("{a}[{z}] = 1;"));
                }
            }
            (ErrorEnd::StackOverflow, _) => {
                let f = self.fresh("runaway");
                items.push(format!(
                    "fn {f}(n: int) -> int {{\n    if n < 0 {{ return 0; }}\n    return {f}(n + 1) + 1;\n}}\n"
                ));
                self.line(&format!("print({f}(0));"));
            }
        }
    }

    fn program(mut self, seed: u64) -> String {
        let error = if self.rng.u32(0..8) == 0 {
            Some(
                *self
                    .pick(&[
                        ErrorEnd::DivisionByZero,
                        ErrorEnd::IndexOutOfBounds,
                        ErrorEnd::StackOverflow,
                    ])
                    .unwrap(),
            )
        } else {
            None
        };
        let mut items = Vec::new();
        self.consts_and_globals(&mut items);
        for _ in 0..self.rng.usize(1..7) {
            let item = if self.chance(25) {
                self.recursive()
            } else {
                self.helper()
            };
            items.push(item);
        }
        let main = self.main_fn(error, &mut items);
        items.push(main);
        // Items may come in any order (LANGUAGE.md section 3).
        self.rng.shuffle(&mut items);
        let end = match error {
            None => "ok",
            Some(e) => e.message(),
        };
        let mut text = format!("{EXPECTED_END_PREFIX}{end} (random program, seed {seed})\n");
        for item in items {
            text.push('\n');
            text.push_str(&item);
        }
        text
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorEnd {
    DivisionByZero,
    IndexOutOfBounds,
    StackOverflow,
}

impl ErrorEnd {
    fn message(self) -> &'static str {
        match self {
            ErrorEnd::DivisionByZero => "division by zero",
            ErrorEnd::IndexOutOfBounds => "index out of bounds",
            ErrorEnd::StackOverflow => "stack overflow",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Realistic programs

/// The shape of a [`realistic_program`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// How many functions besides `main` (and two small utilities every program has).
    pub functions: usize,
    /// Whether functions call the host function [`HOST_SAMPLE`]; the program must then be
    /// checked against [`host_sample_signature`].
    pub host_calls: bool,
}

/// The host function realistic programs call when [`Shape::host_calls`] is set.
pub const HOST_SAMPLE: &str = "host_sample";

/// `host_sample(x: float) -> float`.
pub fn host_sample_signature() -> HostSignature {
    HostSignature {
        name: HOST_SAMPLE.to_string(),
        sig: Signature {
            params: vec![Type::Float],
            ret: Some(Type::Float),
        },
    }
}

/// A suggested implementation of [`HOST_SAMPLE`], so every harness registers the same one.
pub fn host_sample(x: f64) -> f64 {
    x * 0.5 + 1.0
}

/// How many functions `main` of a realistic program calls (each three times).
const REALISTIC_MAIN_CALLS: usize = 40;
/// A function is called from another only when one call of it costs at most this many
/// statements and its call chain is at most this deep, which keeps every call cheap.
const REALISTIC_CALLEE_COST: u64 = 1_000;
const REALISTIC_CALLEE_DEPTH: u32 = 3;

/// A program of `shape.functions` functions shaped like game or tool scripts (a few to a few
/// dozen lines: loops, float math, calls to earlier functions, reads and writes of a handful of
/// globals including global arrays, host calls when enabled), and `fn main()` that calls at most
/// 40 of them three times each and prints a checksum. Its run time stays small (well under a
/// second in the interpreter) however many functions it has. Deterministic from `seed`.
pub fn realistic_program(shape: &Shape, seed: u64) -> String {
    let mut g = RealisticGen {
        rng: Rng::with_seed(seed),
        host_calls: shape.host_calls,
        funcs: Vec::new(),
    };
    let mut text = format!(
        "// realistic program: {} functions (seed {seed})\n{REALISTIC_PRELUDE}",
        shape.functions
    );
    for i in 0..shape.functions {
        text.push('\n');
        text.push_str(&g.function(i));
    }
    text.push('\n');
    text.push_str(&g.main());
    text
}

const REALISTIC_PRELUDE: &str = "
const SIZE: int = 64;
const BINS: int = 16;
const DT: float = 1.0 / 60.0;

global frame: int = 0;
global energy: float = 0.0;
global rng_state: int = 12345;
global paused: bool = false;
global samples: [float; SIZE];
global counts: [int; BINS];

// A 64-bit linear congruential generator; wrapping multiplication is part of the language.
fn next_random() -> int {
    rng_state = rng_state * 6364136223846793005 + 1442695040888963407;
    return (rng_state >> 33) & 0x7fff_ffff;
}

fn clampf(x: float, lo: float, hi: float) -> float {
    return max(lo, min(x, hi));
}
";

struct RealFn {
    name: String,
    params: Vec<Type>,
    ret: Option<Type>,
    cost: u64,
    depth: u32,
}

struct RealisticGen {
    rng: Rng,
    host_calls: bool,
    funcs: Vec<RealFn>,
}

impl RealisticGen {
    fn float(&mut self, lo: u32, hi: u32) -> String {
        format!("{:?}", self.rng.u32(lo..hi) as f64 / 8.0)
    }

    fn host(&mut self) -> bool {
        self.host_calls && self.rng.u32(0..3) == 0
    }

    /// Up to two calls to cheap earlier functions, written as statements that fold their result
    /// into `float_acc` / `int_acc` (locals of the caller) or a global. Returns the lines, the
    /// cost they add and the deepest callee.
    fn calls(
        &mut self,
        float_arg: &str,
        int_arg: &str,
        float_acc: &str,
        int_acc: &str,
    ) -> (Vec<String>, u64, u32) {
        let mut lines = Vec::new();
        let (mut cost, mut depth) = (0, 0);
        if self.funcs.is_empty() {
            return (lines, cost, depth);
        }
        for _ in 0..self.rng.usize(0..3) {
            // Mostly nearby functions, as in a file where helpers precede their users.
            let lo = self.funcs.len().saturating_sub(50);
            let j = self.rng.usize(lo..self.funcs.len());
            let f = &self.funcs[j];
            if f.cost > REALISTIC_CALLEE_COST || f.depth >= REALISTIC_CALLEE_DEPTH {
                continue;
            }
            cost += f.cost;
            depth = depth.max(f.depth);
            let args: Vec<&str> = f
                .params
                .iter()
                .map(|p| {
                    if *p == Type::Float {
                        float_arg
                    } else {
                        int_arg
                    }
                })
                .collect();
            let call = format!("{}({})", f.name, args.join(", "));
            lines.push(match f.ret {
                Some(Type::Float) => format!("{float_acc} += {call} * 0.001;"),
                Some(Type::Int) => format!("{int_acc} = {int_acc} ^ ({call} & 1023);"),
                Some(Type::Bool) => format!("if {call} {{ {int_acc} += 1; }}"),
                None => format!("{call};"),
            });
        }
        (lines, cost, depth)
    }

    fn function(&mut self, i: usize) -> String {
        let mut body: Vec<String> = Vec::new();
        let (name, params, ret, own_cost);
        let calls;
        match self.rng.u32(0..5) {
            0 => {
                name = format!("integrate_{i}");
                params = vec![Type::Float, Type::Int];
                ret = Some(Type::Float);
                let steps = self.rng.u32(4..17);
                body.push(format!("let acc = {};", self.float(0, 16)));
                body.push(format!("let steps = min(abs(n), {steps});"));
                body.push("for i in 0..steps {".to_string());
                body.push("    let t = i as float * DT + x;".to_string());
                body.push(format!(
                    "    acc += sin(t * {}) * {} + cos(t) * {};",
                    self.float(1, 40),
                    self.float(1, 8),
                    self.float(1, 8)
                ));
                if self.rng.bool() {
                    body.push(format!("    if acc > {} {{", self.float(8, 200)));
                    body.push("        acc = acc * 0.5;".to_string());
                    body.push("    }".to_string());
                }
                if self.rng.bool() {
                    body.push(format!(
                        "    samples[(i + {}) % SIZE] = acc;",
                        self.rng.u32(0..64)
                    ));
                }
                if self.host() {
                    body.push(format!("    acc += {HOST_SAMPLE}(t) * 0.01;"));
                }
                body.push("}".to_string());
                calls = self.calls("acc", "steps", "acc", "steps");
                body.push(format!("energy += acc * {};", self.float(1, 8)));
                body.push("return acc;".to_string());
                own_cost = steps as u64 * 5 + 6;
            }
            1 => {
                name = format!("hash_{i}");
                params = vec![Type::Int];
                ret = Some(Type::Int);
                let rounds = self.rng.u32(2..9);
                body.push(format!("let h = seed ^ 0x{:x};", self.rng.u32(..)));
                body.push(format!("for r in 0..{rounds} {{"));
                body.push(format!(
                    "    h = (h << {}) ^ (h >> {});",
                    self.rng.u32(1..13),
                    self.rng.u32(1..13)
                ));
                body.push(format!("    h = h * {} + r;", self.rng.u32(3..1000) | 1));
                if self.rng.bool() {
                    body.push(format!("    if h % {} == 0 {{", self.rng.u32(2..9)));
                    body.push("        h += next_random();".to_string());
                    body.push("    }".to_string());
                }
                body.push("}".to_string());
                body.push("counts[h & (BINS - 1)] += 1;".to_string());
                body.push("let f = (h & 255) as float;".to_string());
                calls = self.calls("f", "r0", "f", "h");
                body.insert(0, "let r0 = seed % 8;".to_string());
                body.push("return h;".to_string());
                own_cost = rounds as u64 * 4 + 6;
            }
            2 => {
                name = format!("step_{i}");
                params = vec![Type::Int, Type::Float];
                ret = Some(Type::Int);
                body.push("let s = state;".to_string());
                body.push(format!("let t = dt * {};", self.float(1, 40)));
                if self.host() {
                    body.push(format!("t = {HOST_SAMPLE}(t);"));
                }
                body.push("if s % 3 == 0 {".to_string());
                body.push("    frame += 1;".to_string());
                body.push(format!("    s = s + {};", self.rng.u32(1..100)));
                body.push("} else if s % 3 == 1 || s % 3 == -1 {".to_string());
                body.push("    energy -= t;".to_string());
                body.push(format!("    s = s * 2 - {};", self.rng.u32(1..100)));
                body.push("} else {".to_string());
                body.push("    paused = !paused;".to_string());
                body.push("    s = s / 2;".to_string());
                body.push("}".to_string());
                body.push("let guard = 0;".to_string());
                body.push(format!(
                    "while s > {} && guard < 8 {{",
                    self.rng.u32(10..10_000)
                ));
                body.push("    s = s / 3;".to_string());
                body.push("    guard += 1;".to_string());
                body.push("}".to_string());
                calls = self.calls("t", "guard", "t", "s");
                body.push("return s;".to_string());
                own_cost = 30;
            }
            3 => {
                name = format!("tick_{i}");
                params = vec![Type::Float];
                ret = None;
                body.push("frame += 1;".to_string());
                body.push(format!("energy = energy * {} + dt;", self.float(4, 8)));
                body.push(format!("if frame % {} == 0 {{", self.rng.u32(2..60)));
                body.push("    paused = !paused;".to_string());
                body.push("}".to_string());
                body.push("let slot = (frame % SIZE + SIZE) % SIZE;".to_string());
                body.push("samples[slot] = energy;".to_string());
                body.push("let local = 0;".to_string());
                calls = self.calls("dt", "slot", "energy", "local");
                body.push("counts[local & (BINS - 1)] += 1;".to_string());
                own_cost = 10;
            }
            _ => {
                name = format!("blend_{i}");
                params = vec![Type::Float, Type::Int];
                ret = Some(Type::Float);
                let k = self.rng.u32(2..13);
                body.push(format!("let x = a * {};", self.float(1, 16)));
                body.push("let y = b as float;".to_string());
                body.push("let total = 0.0;".to_string());
                body.push(format!("for k in 0..{k} {{"));
                body.push("    total += sqrt(abs(x * k as float + y)) - floor(x);".to_string());
                body.push(format!("    if total > {} {{", self.float(80, 800)));
                body.push("        break;".to_string());
                body.push("    }".to_string());
                body.push("}".to_string());
                if self.host() {
                    body.push(format!("total = total + {HOST_SAMPLE}(y) * 0.5;"));
                }
                calls = self.calls("total", "b", "total", "b");
                body.push("if paused {".to_string());
                body.push("    total = -total;".to_string());
                body.push("}".to_string());
                body.push("return clampf(total, -1000.0, 1000.0);".to_string());
                own_cost = k as u64 * 3 + 8;
            }
        }
        let (call_lines, call_cost, call_depth) = calls;
        // The calls go just before the last statement (a `return` or a final store).
        let at = body.len() - 1;
        body.splice(at..at, call_lines);
        let names: &[&str] = match name.split('_').next().unwrap() {
            "integrate" => &["x", "n"],
            "hash" => &["seed"],
            "step" => &["state", "dt"],
            "tick" => &["dt"],
            _ => &["a", "b"],
        };
        let ptext: Vec<String> = names
            .iter()
            .zip(&params)
            .map(|(n, t)| format!("{n}: {}", t.name()))
            .collect();
        let ret_text = ret.map(|t| format!(" -> {}", t.name())).unwrap_or_default();
        let mut text = format!("fn {name}({}){ret_text} {{\n", ptext.join(", "));
        for line in body {
            text.push_str("    ");
            text.push_str(&line);
            text.push('\n');
        }
        text.push_str("}\n");
        self.funcs.push(RealFn {
            name,
            params,
            ret,
            cost: own_cost + call_cost,
            depth: call_depth + 1,
        });
        text
    }

    fn main(&mut self) -> String {
        let n = self.funcs.len();
        let mut picks: Vec<usize> = if n <= REALISTIC_MAIN_CALLS {
            (0..n).collect()
        } else {
            (0..REALISTIC_MAIN_CALLS - 1)
                .map(|k| k * n / (REALISTIC_MAIN_CALLS - 1))
                .chain([n - 1])
                .collect()
        };
        picks.dedup();
        let mut text = String::from("fn main() {\n    let checksum = 0.0;\n    let bits = 0;\n");
        text.push_str("    for round in 0..3 {\n        let x = round as float * 0.25 + 0.5;\n");
        if self.host_calls {
            // Every program with host calls makes some, however few functions it has.
            text.push_str(&format!("        checksum += {HOST_SAMPLE}(x) * 0.001;\n"));
        }
        for k in picks {
            let f = &self.funcs[k];
            let args: Vec<&str> = f
                .params
                .iter()
                .map(|p| if *p == Type::Float { "x" } else { "round + 2" })
                .collect();
            let call = format!("{}({})", f.name, args.join(", "));
            let line = match f.ret {
                Some(Type::Float) => format!("checksum += {call};"),
                Some(Type::Int) => format!("bits = bits * 31 + {call};"),
                Some(Type::Bool) => format!("if {call} {{ bits += 1; }}"),
                None => format!("{call};"),
            };
            text.push_str("        ");
            text.push_str(&line);
            text.push('\n');
        }
        text.push_str("    }\n");
        for v in [
            "checksum",
            "bits",
            "frame",
            "energy",
            "paused",
            "samples[3]",
            "counts[5]",
        ] {
            text.push_str(&format!("    print({v});\n"));
        }
        text.push_str("}\n");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::{Host, InterpError, Interpreter, Limits, NoHost};
    use crate::program::{Const, HostId, TrapKind};
    use crate::{CheckOptions, Program, SourceFile};

    /// The text with line numbers, for failure messages.
    fn numbered(text: &str) -> String {
        text.lines()
            .enumerate()
            .map(|(i, l)| format!("{:4} {l}\n", i + 1))
            .collect()
    }

    fn check(name: &str, text: &str, hosts: &[HostSignature]) -> Program {
        let file = SourceFile::new(name, text);
        let options = CheckOptions { require_main: true };
        match crate::check(&file, hosts, &options) {
            Ok(p) => p,
            Err(diags) => panic!(
                "{name} does not check:\n{}\n{}",
                crate::render(&file, &diags),
                numbered(text)
            ),
        }
    }

    /// Runs `main` and returns its result and output.
    fn run_main(p: &Program, host: &mut dyn Host) -> (Result<Option<Const>, InterpError>, String) {
        let main = p
            .function_named("main")
            .expect("a checked program has main");
        let mut interp = Interpreter::new(p, Limits::default());
        let mut out = Vec::new();
        let r = interp.call(main, &[], host, &mut out);
        (r, String::from_utf8(out).expect("output is UTF-8"))
    }

    /// Runs `f` on a thread with a stack big enough for the interpreter at the default depth
    /// limit (the runaway-recursion programs reach it).
    fn with_big_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(512 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    struct SampleHost;

    impl Host for SampleHost {
        fn call(&mut self, id: HostId, args: &[Const]) -> Result<Option<Const>, String> {
            match (id, args) {
                (HostId(0), &[Const::Float(x)]) => Ok(Some(Const::Float(host_sample(x)))),
                _ => Err(format!("unexpected host call {id:?}{args:?}")),
            }
        }
    }

    #[test]
    fn generators_are_deterministic() {
        for seed in [0, 1, 42, u64::MAX] {
            assert_eq!(random_program(seed), random_program(seed));
        }
        assert_ne!(random_program(1), random_program(2));
        let shape = Shape {
            functions: 50,
            host_calls: true,
        };
        assert_eq!(realistic_program(&shape, 7), realistic_program(&shape, 7));
        assert_ne!(realistic_program(&shape, 7), realistic_program(&shape, 8));
    }

    /// Guards against the generator quietly losing a feature: across a few dozen programs, every
    /// construct it is meant to produce appears.
    #[test]
    fn random_programs_cover_the_language() {
        let all: String = (0..60).map(random_program).collect();
        for needle in [
            "const ",
            "global ",
            "let ",
            ": [",
            "while ",
            "while true",
            "for ",
            "break;",
            "continue;",
            "else if",
            "} else {",
            "return ",
            "<<",
            ">>",
            " & ",
            " | ",
            " ^ ",
            " && ",
            " || ",
            "!",
            " as float",
            " as int",
            " / ",
            " % ",
            " == ",
            " != ",
            " < ",
            " <= ",
            " > ",
            " >= ",
            "+=",
            "-=",
            "*=",
            "/=",
            "%=",
            "&=",
            "|=",
            "^=",
            "<<=",
            ">>=",
            "sqrt(",
            "sin(",
            "cos(",
            "tan(",
            "exp(",
            "ln(",
            "floor(",
            "ceil(",
            "pow(",
            "abs(",
            "min(",
            "max(",
            "len(",
            "print(\"",
            "0x",
            "0b",
            "1_000",
            "e-3",
            "/* a /*",
            "rec",
            "0x8000_0000_0000_0000",
            "true",
            "false",
        ] {
            assert!(
                all.contains(needle),
                "no random program contains {needle:?}"
            );
        }
        let texts: Vec<String> = (0..300).map(random_program).collect();
        let ends: Vec<Option<&str>> = texts.iter().map(|t| expected_error(t)).collect();
        for kind in [
            TrapKind::DivisionByZero,
            TrapKind::IndexOutOfBounds,
            TrapKind::StackOverflow,
        ] {
            assert!(
                ends.contains(&Some(kind.message())),
                "no program ends in {kind}"
            );
        }
        let errors = ends.iter().filter(|e| e.is_some()).count();
        assert!(
            (15..=70).contains(&errors),
            "{errors} of 300 programs end in an error"
        );
    }

    #[test]
    fn random_programs_check() {
        for seed in 0..200 {
            check(&format!("random{seed}.kl"), &random_program(seed), &[]);
        }
    }

    #[test]
    fn realistic_programs_check() {
        for (functions, host_calls) in [
            (0, false),
            (10, false),
            (10, true),
            (1000, false),
            (1000, true),
        ] {
            let shape = Shape {
                functions,
                host_calls,
            };
            let text = realistic_program(&shape, functions as u64);
            let hosts = if host_calls {
                vec![host_sample_signature()]
            } else {
                vec![]
            };
            check("realistic.kl", &text, &hosts);
            assert_eq!(text.contains(HOST_SAMPLE), host_calls);
        }
    }

    /// Every random program runs to its expected end in the reference interpreter: completion,
    /// or exactly the runtime error it was built to end with. This validates the generator's
    /// guards and bounds and the interpreter on a wide range of programs.
    #[test]
    fn random_programs_run_to_their_expected_end() {
        with_big_stack(|| {
            for seed in 0..300 {
                let text = random_program(seed);
                let p = check(&format!("random{seed}.kl"), &text, &[]);
                let (result, out) = run_main(&p, &mut NoHost);
                match (expected_error(&text), result) {
                    (None, Ok(_)) => {}
                    // The error comes from the statements built to raise it, not a guard
                    // that failed somewhere else.
                    (Some(kind), Err(e))
                        if e.kind.message() == kind
                            && ["main", "fail", "runaway"]
                                .iter()
                                .any(|f| p.function(e.function).name.starts_with(f)) => {}
                    (expected, result) => panic!(
                        "seed {seed}: expected {expected:?}, got {result:?}\noutput:\n{out}\n{}",
                        numbered(&text)
                    ),
                }
                assert!(
                    !out.contains("not reached"),
                    "seed {seed} printed past its error"
                );
                assert!(!out.is_empty(), "seed {seed} printed nothing");
            }
        });
    }

    #[test]
    fn realistic_program_runs_in_the_interpreter() {
        with_big_stack(|| {
            let shape = Shape {
                functions: 1000,
                host_calls: true,
            };
            let text = realistic_program(&shape, 3);
            let p = check("realistic.kl", &text, &[host_sample_signature()]);
            let (result, out) = run_main(&p, &mut SampleHost);
            assert_eq!(result, Ok(None));
            // checksum, bits, frame, energy, paused, samples[3], counts[5].
            assert_eq!(out.lines().count(), 7, "{out}");
        });
    }
}
