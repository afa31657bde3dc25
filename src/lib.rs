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
//! A module reloads from its file ([`Module::reload`]) or from new source
//! ([`Module::reload_str`]) while the program runs. Functions whose text did not change are
//! relinked, not recompiled; globals keep their values; typed handles call the new code:
//!
//! ```
//! # fn main() -> Result<(), kiln::Error> {
//! # let engine = kiln::Engine::new(kiln::Config::default())?;
//! let module = engine.load_str("ai.kl", "global seen: int = 0;
//!     fn think() -> int { seen += 1; return seen; }")?;
//! let think = module.typed::<(), i64>("think")?;
//! assert_eq!(think.call(())?, 1);
//!
//! let report = module.reload_str("global seen: int = 0;
//!     fn think() -> int { seen += 10; return seen; }")?;
//! assert_eq!((report.compiled(), report.globals.kept.len()), (1, 1));
//! assert_eq!(think.call(())?, 11); // the new code, the old value
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
    ScriptType, Target, TrapKind, TypedFunc, Value, host_target,
};
pub use kiln_lang::{CheckOptions, Diagnostic};

pub mod watcher;
