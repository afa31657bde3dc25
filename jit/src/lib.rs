//! The Kiln back end and embedding API.
//!
//! It owns lowering checked programs to Cranelift IR ([`lower`]), compiling them to machine code
//! with symbolic relocations for this machine or another target ([`compile`]), the cache keys
//! ([`keys`]) and what loading stores in and reads from the function cache ([`cache`]), linking
//! code into executable memory with Kiln's own relocation patching ([`link`], [`reloc`],
//! [`memory`]), the runtime that JIT code calls ([`runtime`]), loading and reloading
//! ([`engine`], [`module`]) and the API embedders use ([`Engine`], [`Module`], [`TypedFunc`],
//! host functions, globals, interrupts).
//!
//! It knows the language only through `kiln_lang::program`; it never parses source. Lowering,
//! compiling and linking are kept apart with plain data between them, which is where the cache
//! sits: a hit skips the first two, and `kiln-cache` only ever sees opaque bytes.

pub mod cache;
pub mod compile;
pub mod engine;
pub mod entry;
pub mod error;
pub mod host;
pub mod keys;
pub mod link;
pub mod lower;
pub mod memory;
pub mod module;
pub mod reloc;
pub mod runtime;
pub mod value;

pub use compile::{Target, host_target};
pub use engine::{CacheStats, Config, Engine, LoadStats, read_script};
pub use error::{CompileError, Error, RuntimeError};
pub use host::{HostResult, IntoHostFunc};
pub use kiln_lang::program::TrapKind;
pub use module::{GlobalChanges, InterruptHandle, Module, ReloadReport, TypedFunc};
pub use value::{ScriptParams, ScriptResult, ScriptType, Value};
