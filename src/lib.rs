//! Kiln: a small statically typed scripting language, JIT-compiled to native code by Cranelift.
//!
//! This crate is the facade embedders depend on. Create an [`Engine`], register host
//! functions, load a [`Module`] from a file or a string, and call its functions through typed
//! handles:
//!
//! ```
//! use kiln::{Config, Engine, Error};
//!
//! # fn main() -> Result<(), Error> {
//! let mut engine = Engine::new(Config::default())?;
//! engine.register("damping", |v: f64| v * 0.5)?;
//! let module = engine.load_str(
//!     "physics.kl",
//!     "global steps: int = 0;
//!      fn step(x: float, dt: float) -> float {
//!          steps += 1;
//!          return x + damping(dt);
//!      }",
//! )?;
//! let step = module.typed::<(f64, f64), f64>("step")?;
//! assert_eq!(step.call((1.0, 0.5))?, 1.25);
//! assert_eq!(module.global::<i64>("steps")?, 1);
//! # Ok(())
//! # }
//! ```
//!
//! Runtime errors (division by zero, index out of bounds, stack overflow, interrupts, failing
//! host functions) come back as [`Error::Runtime`]; the engine stays usable. The `kiln`
//! command line lives in this package too (`src/main.rs`).

pub use kiln_jit::{
    CacheStats, CompileError, Config, Engine, Error, GlobalChanges, HostResult, InterruptHandle,
    IntoHostFunc, LoadStats, Module, ReloadReport, RuntimeError, ScriptParams, ScriptResult,
    ScriptType, TrapKind, TypedFunc, Value,
};
pub use kiln_lang::{CheckOptions, Diagnostic};

pub mod watcher;
