//! Script values as the host sees them, and the one mapping between Rust types and Kiln's
//! scalar types that host functions, typed calls and globals all use.

use kiln_lang::program::{Const, Type};

/// A scalar value crossing between Rust and a script.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Value {
    pub fn ty(self) -> Type {
        match self {
            Value::Int(_) => Type::Int,
            Value::Float(_) => Type::Float,
            Value::Bool(_) => Type::Bool,
        }
    }

    /// The 64-bit pattern JIT code passes for this value.
    pub(crate) fn to_bits(self) -> u64 {
        match self {
            Value::Int(v) => ScriptType::to_bits(v),
            Value::Float(v) => ScriptType::to_bits(v),
            Value::Bool(v) => ScriptType::to_bits(v),
        }
    }

    pub(crate) fn from_bits(ty: Type, bits: u64) -> Value {
        match ty {
            Type::Int => Value::Int(<i64 as ScriptType>::from_bits(bits)),
            Type::Float => Value::Float(<f64 as ScriptType>::from_bits(bits)),
            Type::Bool => Value::Bool(<bool as ScriptType>::from_bits(bits)),
        }
    }
}

impl From<Const> for Value {
    fn from(c: Const) -> Value {
        match c {
            Const::Int(v) => Value::Int(v),
            Const::Float(v) => Value::Float(v),
            Const::Bool(v) => Value::Bool(v),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v:?}"),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// A Rust type that is one of Kiln's scalar types: `i64`, `f64` or `bool`.
pub trait ScriptType: Copy + Send + 'static + sealed::Sealed {
    const TYPE: Type;
    #[doc(hidden)]
    fn to_bits(self) -> u64;
    #[doc(hidden)]
    fn from_bits(bits: u64) -> Self;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for i64 {}
    impl Sealed for f64 {}
    impl Sealed for bool {}
}

impl ScriptType for i64 {
    const TYPE: Type = Type::Int;
    fn to_bits(self) -> u64 {
        self as u64
    }
    fn from_bits(bits: u64) -> Self {
        bits as i64
    }
}

impl ScriptType for f64 {
    const TYPE: Type = Type::Float;
    fn to_bits(self) -> u64 {
        f64::to_bits(self)
    }
    fn from_bits(bits: u64) -> Self {
        f64::from_bits(bits)
    }
}

impl ScriptType for bool {
    const TYPE: Type = Type::Bool;
    fn to_bits(self) -> u64 {
        self as u64
    }
    fn from_bits(bits: u64) -> Self {
        // JIT code keeps bools in one byte; only the low byte is meaningful.
        bits as u8 != 0
    }
}

/// The result type of a typed call: `()` for a function that returns nothing, or a scalar.
pub trait ScriptResult: Sized + 'static {
    const TYPE: Option<Type>;
    #[doc(hidden)]
    fn from_bits(bits: u64) -> Self;
}

impl ScriptResult for () {
    const TYPE: Option<Type> = None;
    fn from_bits(_: u64) -> Self {}
}

impl<T: ScriptType> ScriptResult for T {
    const TYPE: Option<Type> = Some(T::TYPE);
    fn from_bits(bits: u64) -> Self {
        <T as ScriptType>::from_bits(bits)
    }
}

/// The parameter list of a typed call: a tuple of scalars, `()` for none.
pub trait ScriptParams: 'static {
    #[doc(hidden)]
    fn types() -> Vec<Type>;
    #[doc(hidden)]
    fn to_bits(self) -> Vec<u64>;
}

macro_rules! impl_params {
    ($($p:ident),*) => {
        impl<$($p: ScriptType),*> ScriptParams for ($($p,)*) {
            fn types() -> Vec<Type> {
                vec![$($p::TYPE),*]
            }
            #[allow(non_snake_case, reason = "the type parameters name the tuple fields")]
            fn to_bits(self) -> Vec<u64> {
                let ($($p,)*) = self;
                vec![$($p.to_bits()),*]
            }
        }
    };
}

impl_params!();
impl_params!(A);
impl_params!(A, B);
impl_params!(A, B, C);
impl_params!(A, B, C, D);
impl_params!(A, B, C, D, E);
impl_params!(A, B, C, D, E, F);
impl_params!(A, B, C, D, E, F, G);
impl_params!(A, B, C, D, E, F, G, H);
