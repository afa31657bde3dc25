//! Host functions: ordinary Rust functions and closures made callable from scripts.

use crate::value::ScriptType;
use kiln_lang::program::{Signature, Type};

/// A registered host function, type-erased to "64-bit patterns in, a 64-bit pattern out".
///
/// JIT code reaches it through `kiln_rt_call_host`, which catches panics, so a failing or
/// panicking host function becomes a `host error` of the script call.
pub struct HostFunc {
    pub name: String,
    pub sig: Signature,
    pub call: ErasedHostFn,
}

/// A host function taking and returning 64-bit patterns; `Err` carries a `host error`'s text.
pub type ErasedHostFn = Box<dyn Fn(&[u64]) -> Result<u64, String> + Send + Sync>;

/// What a host function may return: nothing, a scalar, or a `Result` whose error becomes a
/// `host error` carrying the error's text.
pub trait HostResult {
    #[doc(hidden)]
    const TYPE: Option<Type>;
    #[doc(hidden)]
    fn into_bits(self) -> Result<u64, String>;
}

impl HostResult for () {
    const TYPE: Option<Type> = None;
    fn into_bits(self) -> Result<u64, String> {
        Ok(0)
    }
}

impl<T: ScriptType> HostResult for T {
    const TYPE: Option<Type> = Some(T::TYPE);
    fn into_bits(self) -> Result<u64, String> {
        Ok(self.to_bits())
    }
}

impl<T: HostResult, E: std::fmt::Display> HostResult for Result<T, E> {
    const TYPE: Option<Type> = T::TYPE;
    fn into_bits(self) -> Result<u64, String> {
        self.map_err(|e| e.to_string())?.into_bits()
    }
}

/// A Rust function or closure usable as a host function: `Fn(A, B, ...) -> R` where the
/// arguments are `i64`, `f64` or `bool` and `R` is a [`HostResult`].
///
/// `Params` is the tuple of argument types; it only exists to tell the implementations apart.
pub trait IntoHostFunc<Params>: Send + Sync + 'static {
    #[doc(hidden)]
    fn into_host_func(self, name: String) -> HostFunc;
}

macro_rules! impl_into_host_func {
    ($($p:ident),*) => {
        impl<Func, Ret, $($p: ScriptType),*> IntoHostFunc<($($p,)*)> for Func
        where
            Func: Fn($($p),*) -> Ret + Send + Sync + 'static,
            Ret: HostResult,
        {
            fn into_host_func(self, name: String) -> HostFunc {
                let sig = Signature { params: vec![$($p::TYPE),*], ret: Ret::TYPE };
                HostFunc {
                    name,
                    sig,
                    call: Box::new(move |args: &[u64]| {
                        #[allow(unused_mut, unused_variables, reason = "empty for no parameters")]
                        let mut args = args.iter().copied();
                        // The checker guarantees the arity; a short slice reads as zeros.
                        self($($p::from_bits(args.next().unwrap_or(0))),*).into_bits()
                    }),
                }
            }
        }
    };
}

impl_into_host_func!();
impl_into_host_func!(A);
impl_into_host_func!(A, B);
impl_into_host_func!(A, B, C);
impl_into_host_func!(A, B, C, D);
impl_into_host_func!(A, B, C, D, E);
impl_into_host_func!(A, B, C, D, E, F);
