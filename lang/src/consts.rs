//! Compile-time evaluation of constant expressions, with exactly the run-time semantics of
//! LANGUAGE.md sections 2 and 5 (wrapping int arithmetic, `MIN / -1 == MIN`, shifts modulo 64,
//! saturating float-to-int casts, C's `fmod`).

use crate::program::{BinOp, Const, Expr, ExprKind, Type, UnOp};
use crate::source::Span;

/// Why a checked expression has no compile-time value.
#[derive(Debug, PartialEq)]
pub enum FoldError {
    /// An int division or remainder by zero, at the operator.
    DivisionByZero(Span),
    /// The expression reads a variable or calls a function; the checker rejects those in
    /// constant expressions before folding.
    NotConstant,
}

pub fn unary(op: UnOp, c: Const) -> Const {
    match (op, c) {
        (UnOp::Neg, Const::Int(v)) => Const::Int(v.wrapping_neg()),
        (UnOp::Neg, Const::Float(v)) => Const::Float(-v),
        (UnOp::Not, Const::Int(v)) => Const::Int(!v),
        (UnOp::Not, Const::Bool(v)) => Const::Bool(!v),
        // The checker rejects the other combinations.
        (_, c) => c,
    }
}

/// `None` for an int division or remainder by zero.
pub fn binary(op: BinOp, a: Const, b: Const) -> Option<Const> {
    use BinOp::*;
    Some(match (a, b) {
        (Const::Int(x), Const::Int(y)) => match op {
            Add => Const::Int(x.wrapping_add(y)),
            Sub => Const::Int(x.wrapping_sub(y)),
            Mul => Const::Int(x.wrapping_mul(y)),
            Div if y == 0 => return None,
            Rem if y == 0 => return None,
            Div => Const::Int(x.wrapping_div(y)),
            Rem => Const::Int(x.wrapping_rem(y)),
            BitAnd => Const::Int(x & y),
            BitOr => Const::Int(x | y),
            BitXor => Const::Int(x ^ y),
            // `wrapping_shl` masks the amount to its low six bits: modulo 64, for negative
            // amounts too (2^32 is a multiple of 64).
            Shl => Const::Int(x.wrapping_shl(y as u32)),
            Shr => Const::Int(x.wrapping_shr(y as u32)),
            _ => Const::Bool(compare(op, x.cmp(&y))),
        },
        (Const::Float(x), Const::Float(y)) => match op {
            Add => Const::Float(x + y),
            Sub => Const::Float(x - y),
            Mul => Const::Float(x * y),
            Div => Const::Float(x / y),
            // Rust's `%` on floats is C's `fmod`.
            Rem => Const::Float(x % y),
            Eq => Const::Bool(x == y),
            Ne => Const::Bool(x != y),
            Lt => Const::Bool(x < y),
            Le => Const::Bool(x <= y),
            Gt => Const::Bool(x > y),
            Ge => Const::Bool(x >= y),
            _ => a,
        },
        (Const::Bool(x), Const::Bool(y)) => match op {
            Ne => Const::Bool(x != y),
            _ => Const::Bool(x == y),
        },
        _ => a,
    })
}

fn compare(op: BinOp, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        BinOp::Eq => ord == Equal,
        BinOp::Ne => ord != Equal,
        BinOp::Lt => ord == Less,
        BinOp::Le => ord != Greater,
        BinOp::Gt => ord == Greater,
        _ => ord != Less,
    }
}

pub fn cast(c: Const, to: Type) -> Const {
    match (c, to) {
        (Const::Int(v), Type::Float) => Const::Float(v as f64),
        // Rust's `as` truncates toward zero, saturates, and maps NaN to 0.
        (Const::Float(v), Type::Int) => Const::Int(v as i64),
        (Const::Bool(v), Type::Int) => Const::Int(i64::from(v)),
        (c, _) => c,
    }
}

/// Evaluates a checked constant expression; `&&` and `||` short-circuit as at run time.
pub fn fold(e: &Expr) -> Result<Const, FoldError> {
    match &e.kind {
        ExprKind::Const(c) => Ok(*c),
        ExprKind::Unary { op, operand } => Ok(unary(*op, fold(operand)?)),
        ExprKind::Binary {
            op,
            lhs,
            rhs,
            op_span,
        } => {
            let (a, b) = (fold(lhs)?, fold(rhs)?);
            binary(*op, a, b).ok_or(FoldError::DivisionByZero(*op_span))
        }
        ExprKind::And(a, b) => match fold(a)? {
            Const::Bool(false) => Ok(Const::Bool(false)),
            _ => fold(b),
        },
        ExprKind::Or(a, b) => match fold(a)? {
            Const::Bool(true) => Ok(Const::Bool(true)),
            _ => fold(b),
        },
        ExprKind::Cast(inner) => Ok(cast(fold(inner)?, e.ty)),
        ExprKind::Local(_) | ExprKind::Global(_) | ExprKind::Index { .. } | ExprKind::Call(_) => {
            Err(FoldError::NotConstant)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BinOp::*;

    fn int(op: BinOp, a: i64, b: i64) -> Option<Const> {
        binary(op, Const::Int(a), Const::Int(b))
    }

    #[test]
    fn int_arithmetic_wraps() {
        assert_eq!(int(Add, i64::MAX, 1), Some(Const::Int(i64::MIN)));
        assert_eq!(int(Mul, i64::MIN, -1), Some(Const::Int(i64::MIN)));
        assert_eq!(int(Div, i64::MIN, -1), Some(Const::Int(i64::MIN)));
        assert_eq!(int(Rem, i64::MIN, -1), Some(Const::Int(0)));
        assert_eq!(int(Div, -7, 2), Some(Const::Int(-3)));
        assert_eq!(int(Rem, -7, 2), Some(Const::Int(-1)));
        assert_eq!(int(Div, 1, 0), None);
        assert_eq!(int(Rem, 1, 0), None);
        assert_eq!(unary(UnOp::Neg, Const::Int(i64::MIN)), Const::Int(i64::MIN));
        assert_eq!(unary(UnOp::Not, Const::Int(0)), Const::Int(-1));
    }

    #[test]
    fn shifts_take_the_amount_modulo_64() {
        assert_eq!(int(Shl, 1, 65), Some(Const::Int(2)));
        assert_eq!(int(Shl, 1, -1), Some(Const::Int(i64::MIN)));
        assert_eq!(int(Shr, -16, 2), Some(Const::Int(-4)));
        assert_eq!(int(Shr, -1, 64), Some(Const::Int(-1)));
    }

    #[test]
    fn casts_saturate_and_round() {
        assert_eq!(cast(Const::Float(f64::NAN), Type::Int), Const::Int(0));
        assert_eq!(cast(Const::Float(1e300), Type::Int), Const::Int(i64::MAX));
        assert_eq!(cast(Const::Float(-2.9), Type::Int), Const::Int(-2));
        assert_eq!(cast(Const::Bool(true), Type::Int), Const::Int(1));
        assert_eq!(
            cast(Const::Int(9007199254740993), Type::Float),
            Const::Float(9007199254740992.0)
        );
    }

    #[test]
    fn float_operations_follow_ieee() {
        let f = |op, a, b| binary(op, Const::Float(a), Const::Float(b));
        assert_eq!(f(Rem, -5.5, 2.0), Some(Const::Float(-1.5)));
        assert_eq!(f(Div, 1.0, 0.0), Some(Const::Float(f64::INFINITY)));
        assert_eq!(f(Eq, f64::NAN, f64::NAN), Some(Const::Bool(false)));
        assert_eq!(f(Ne, f64::NAN, f64::NAN), Some(Const::Bool(true)));
    }
}
