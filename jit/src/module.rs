//! Loaded modules: their generations of code, their state, and calls into them.
//!
//! A [`Module`] is a cell holding its current [`Generation`] — linked code, function table and
//! the table of global storage — and the state that outlives generations: the runtime context
//! calls run in, the interrupt flag, and the storage of globals a reload keeps.
//!
//! The rules reloading relies on:
//! - A call takes the module's call lock, then the current generation, and runs in that
//!   generation until it returns: script code only calls functions linked into its own
//!   generation, so a call never mixes old and new code.
//! - A reload builds the new generation without the call lock (calls keep running), then swaps
//!   the current-generation pointer. Calls that start afterwards see the new generation.
//! - A generation's code is freed when nothing refers to it: the module has moved on and the
//!   call running in it (there is at most one, calls being serialized) has returned.
//! - Globals are storage shared between generations: a global whose name and type survive a
//!   reload keeps its storage, so old and new code read and write the same value.

use crate::cache::{FunctionMeta, decode_module};
use crate::compile::CompiledFunction;
use crate::engine::{EngineShared, LoadStats, Loader, front_end};
use crate::entry::EntryFn;
use crate::error::{Error, RuntimeError};
use crate::host::HostFunc;
use crate::lower::inlined_in_callers;
use crate::memory::CodeMemory;
use crate::runtime::{Interrupt, Output, RuntimeState, VmCtx};
use crate::value::{ScriptParams, ScriptResult, ScriptType, Value};
use kiln_cache::{Entry, VerifiedArtifact};
use kiln_lang::program::{Const, HostSignature, Interface, Signature, TrapKind, Type, VarType};
use kiln_lang::{CheckOptions, SourceFile, Span};
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The storage of one global: 8-byte words whose address linked code holds.
pub(crate) struct GlobalStorage {
    words: NonNull<[u64]>,
}

// SAFETY: the words are only read or written by script code and by the API while the module's
// call lock is held, so never by two threads at once.
unsafe impl Send for GlobalStorage {}
// SAFETY: as above.
unsafe impl Sync for GlobalStorage {}

impl GlobalStorage {
    pub(crate) fn zeroed(words: usize) -> GlobalStorage {
        let boxed: Box<[u64]> = vec![0u64; words].into_boxed_slice();
        GlobalStorage {
            words: NonNull::from(Box::leak(boxed)),
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.words.as_ptr().cast()
    }
}

impl Drop for GlobalStorage {
    fn drop(&mut self) {
        // SAFETY: `words` came from `Box::leak` in `zeroed` and is dropped once, here; no code
        // that holds its address survives it (generations hold the storage they link against).
        drop(unsafe { Box::from_raw(self.words.as_ptr()) });
    }
}

pub(crate) struct GlobalSlot {
    pub name: String,
    pub ty: VarType,
    /// The initializer, which the cache artifact records.
    pub init: Option<Const>,
    pub storage: Arc<GlobalStorage>,
}

/// One script function of a generation.
pub(crate) struct FunctionInfo {
    pub meta: FunctionMeta,
    pub address: usize,
    /// The entry stub for the signature, fetched on the first call: a module hit then compiles
    /// nothing for functions the host never calls.
    pub entry: OnceLock<EntryFn>,
    /// The function's machine code before linking, kept so that a reload can relink it; `None`
    /// when the generation was linked straight from a cache artifact (see
    /// [`Generation::artifact`]).
    pub code: Option<Arc<CompiledFunction>>,
    /// The function's cache key, when the generation was keyed.
    pub key: Option<[u8; 32]>,
}

/// What a reload needs to know about the source of a generation to reuse function bodies
/// without parsing them: the program's interface and each function's item text.
pub(crate) struct SourceOutline {
    pub interface: Interface,
    /// Each function's whole item (`fn` through `}`) in the generation's source.
    pub items: HashMap<String, Span>,
    /// The functions whose code (body or guard) other functions' code may hold
    /// ([`crate::lower::inlined_in_callers`]): editing one must recompile its callers, which a
    /// reload finds by parsing again every function whose text names it.
    pub inlined: HashSet<String>,
}

/// A previous generation's function, as a reload may relink it.
#[derive(Clone)]
pub(crate) struct ReusableCode {
    pub code: Arc<CompiledFunction>,
    pub key: Option<[u8; 32]>,
}

/// One linked version of a module's code.
pub(crate) struct Generation {
    pub id: u64,
    pub file: Arc<SourceFile>,
    pub functions: Vec<FunctionInfo>,
    pub by_name: HashMap<String, usize>,
    pub by_address: HashMap<usize, usize>,
    pub globals: Vec<GlobalSlot>,
    pub stats: LoadStats,
    /// Known when the generation came from the front end; computed on demand otherwise.
    pub outline: OnceLock<Option<SourceOutline>>,
    /// The artifact a module hit linked from, with its module key: where a reload finds this
    /// generation's machine code.
    pub artifact: Option<(VerifiedArtifact<Entry>, [u8; 32])>,
    /// Keeps host functions alive: linked code holds their addresses.
    pub _hosts: Vec<Arc<HostFunc>>,
    /// The linked code, unmapped when the generation is dropped.
    pub _code: CodeMemory,
    pub live: Arc<AtomicUsize>,
}

impl Drop for Generation {
    fn drop(&mut self) {
        // Dropping `_code` unmaps it. That is sound: a call holds its generation for as long
        // as it runs, and function addresses never leave the generation.
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Generation {
    pub(crate) fn function(&self, name: &str) -> Option<(usize, &FunctionInfo)> {
        let &i = self.by_name.get(name)?;
        Some((i, &self.functions[i]))
    }

    pub(crate) fn global(&self, name: &str) -> Option<&GlobalSlot> {
        self.globals.iter().find(|g| g.name == name)
    }

    /// The interface and function items of this generation's source. A generation linked
    /// from a cache artifact never ran the front end: its source is parsed once, now, without
    /// its function bodies.
    pub(crate) fn outline(
        &self,
        hosts: &[HostSignature],
        options: &CheckOptions,
    ) -> Option<&SourceOutline> {
        self.outline
            .get_or_init(|| {
                // Bodies too: which functions are inlined depends on them.
                let (program, ..) = front_end(&self.file, hosts, options, &|_, _| false);
                let program = program.ok()?;
                Some(SourceOutline {
                    items: program
                        .functions
                        .iter()
                        .map(|f| (f.name.clone(), f.item))
                        .collect(),
                    inlined: program
                        .functions
                        .iter()
                        .filter(|f| inlined_in_callers(f))
                        .map(|f| f.name.clone())
                        .collect(),
                    interface: program.interface,
                })
            })
            .as_ref()
    }

    /// Each function's machine code and cache key (if it was keyed), for a reload to relink;
    /// `None` where the code is gone (an artifact that no longer decodes).
    pub(crate) fn reusable_code(&self) -> Vec<Option<ReusableCode>> {
        if let Some((artifact, module_key)) = &self.artifact {
            let decoded = decode_module(&artifact.artifact(), module_key);
            if let Ok(module) = decoded {
                return module
                    .functions
                    .iter()
                    .map(|c| {
                        Some(ReusableCode {
                            code: Arc::new(c.to_owned()),
                            key: Some(c.key),
                        })
                    })
                    .collect();
            }
            return Vec::new();
        }
        self.functions
            .iter()
            .map(|f| {
                Some(ReusableCode {
                    code: f.code.clone()?,
                    key: f.key,
                })
            })
            .collect()
    }
}

/// The state calls run in, shared by every generation; used by one call at a time.
pub(crate) struct Instance {
    pub vmctx: Box<VmCtx>,
    pub runtime: Box<RuntimeState>,
    /// Allocated on the first call, so modules that are never called cost no memory.
    pub array_stack: Vec<u64>,
}

// SAFETY: the raw pointers in `vmctx` point into this instance's own boxes and into the module's
// interrupt flag; they are only used by a call, which holds the instance's mutex.
unsafe impl Send for Instance {}

impl Instance {
    pub(crate) fn new(capture_output: bool, interrupt: &Arc<Interrupt>) -> Instance {
        let output = if capture_output {
            Output::Capture(Vec::new())
        } else {
            Output::Stdout(std::io::BufWriter::new(std::io::stdout()))
        };
        let mut runtime = Box::new(RuntimeState {
            output,
            pending: None,
        });
        let vmctx = Box::new(VmCtx::new(Arc::as_ptr(interrupt), &mut *runtime));
        Instance {
            vmctx,
            runtime,
            array_stack: Vec::new(),
        }
    }
}

/// Where a module's source came from, so that it can be reloaded.
pub(crate) struct Origin {
    pub name: String,
    pub path: Option<PathBuf>,
    pub options: CheckOptions,
}

pub(crate) struct ModuleShared {
    pub engine: Arc<EngineShared>,
    /// The host functions registered when the module was loaded; reloads link against these.
    pub hosts: Vec<Arc<HostFunc>>,
    pub origin: Origin,
    pub current: Mutex<Arc<Generation>>,
    /// Serializes reloads; holds the number of the last generation made.
    pub reloading: Mutex<u64>,
    pub instance: Mutex<Instance>,
    pub interrupt: Arc<Interrupt>,
    pub live: Arc<AtomicUsize>,
}

/// A loaded script: its functions ready to call, its globals, its output.
///
/// Cloning is cheap and shares the module, reloads included. Calls are serialized: a call from
/// a second thread waits for the running one. A reload does not wait for a running call: that
/// call finishes in the code it started in, and later calls run the new code.
#[derive(Clone)]
pub struct Module {
    pub(crate) inner: Arc<ModuleShared>,
}

/// Stops running calls of a module from any thread.
#[derive(Clone)]
pub struct InterruptHandle {
    interrupt: Arc<Interrupt>,
}

impl InterruptHandle {
    /// Asks the running call to stop with `interrupted` at its next loop iteration or function
    /// entry. If no call is running, the next call stops at its start.
    pub fn interrupt(&self) {
        self.interrupt.request();
    }
}

/// A handle to a script function, its signature checked when it was made.
///
/// The handle follows reloads: each call runs the function of that name in the module's
/// current generation. If a reload removed the function or changed its signature, calls fail
/// with [`Error::Stale`] until a later reload brings back a function of that name and
/// signature.
pub struct TypedFunc<P, R> {
    module: Module,
    name: String,
    sig: Signature,
    /// The generation the handle last resolved its function in, and the function's index there:
    /// `generation << 32 | index`, so that calls within one generation skip the name lookup.
    resolved: AtomicU64,
    _sig: PhantomData<fn(P) -> R>,
}

impl<P: ScriptParams, R: ScriptResult> TypedFunc<P, R> {
    pub fn call(&self, params: P) -> Result<R, Error> {
        let bits = self
            .module
            .invoke(&Target::Typed(self), &params.to_bits())?;
        Ok(R::from_bits(bits))
    }

    /// The name of the function this handle calls.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What a call asks for: a checked handle, or a function by name with its arguments' types.
enum Target<'a> {
    Typed(&'a dyn TypedTarget),
    Named(&'a str, &'a [Type]),
}

/// A typed handle with its type parameters erased.
trait TypedTarget {
    fn resolve(&self, generation: &Generation) -> Result<usize, Error>;
}

impl<P, R> TypedTarget for TypedFunc<P, R> {
    fn resolve(&self, generation: &Generation) -> Result<usize, Error> {
        let resolved = self.resolved.load(Ordering::Relaxed);
        if resolved >> 32 == generation.id {
            return Ok((resolved & 0xffff_ffff) as usize);
        }
        let stale = |reason: String| Error::Stale {
            name: self.name.clone(),
            reason,
        };
        let (index, f) = generation
            .function(&self.name)
            .ok_or_else(|| stale("a reload removed the function".into()))?;
        if f.meta.sig != self.sig {
            return Err(stale(format!(
                "a reload changed its signature to `{}`; the handle calls it as `{}`",
                f.meta.sig, self.sig
            )));
        }
        self.resolved
            .store(generation.id << 32 | index as u64, Ordering::Relaxed);
        Ok(index)
    }
}

impl Module {
    pub(crate) fn new(
        engine: Arc<EngineShared>,
        hosts: Vec<Arc<HostFunc>>,
        origin: Origin,
        generation: Generation,
        live: Arc<AtomicUsize>,
    ) -> Module {
        let interrupt = Arc::new(Interrupt::new());
        let instance = Instance::new(engine.config.capture_output, &interrupt);
        Module {
            inner: Arc::new(ModuleShared {
                engine,
                hosts,
                origin,
                reloading: Mutex::new(generation.id),
                current: Mutex::new(Arc::new(generation)),
                instance: Mutex::new(instance),
                interrupt,
                live,
            }),
        }
    }

    pub(crate) fn current(&self) -> Arc<Generation> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The source file of the current generation.
    pub fn file(&self) -> Arc<SourceFile> {
        self.current().file.clone()
    }

    /// How the current generation was loaded.
    pub fn stats(&self) -> LoadStats {
        self.current().stats.clone()
    }

    /// The number of the current generation: 0 after loading, one more after each successful
    /// reload.
    pub fn generation(&self) -> u64 {
        self.current().id
    }

    /// How many generations of this module still hold code: the current one, plus an old one
    /// while a call that started in it is still running.
    pub fn live_generations(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// The names of the module's functions, in source order.
    pub fn function_names(&self) -> Vec<String> {
        let generation = self.current();
        generation
            .functions
            .iter()
            .map(|f| f.meta.name.clone())
            .collect()
    }

    /// The signature of a function.
    pub fn signature(&self, name: &str) -> Option<Signature> {
        let generation = self.current();
        generation.function(name).map(|(_, f)| f.meta.sig.clone())
    }

    /// A typed handle to function `name`, e.g. `module.typed::<(i64, f64), f64>("step")`.
    pub fn typed<P: ScriptParams, R: ScriptResult>(
        &self,
        name: &str,
    ) -> Result<TypedFunc<P, R>, Error> {
        let generation = self.current();
        let (index, f) = generation.function(name).ok_or_else(|| Error::NotFound {
            what: "function",
            name: name.to_string(),
        })?;
        let requested = Signature {
            params: P::types(),
            ret: R::TYPE,
        };
        if f.meta.sig != requested {
            return Err(Error::Signature {
                name: name.to_string(),
                script: f.meta.sig.to_string(),
                requested: requested.to_string(),
            });
        }
        Ok(TypedFunc {
            module: self.clone(),
            name: name.to_string(),
            sig: requested,
            resolved: AtomicU64::new(generation.id << 32 | index as u64),
            _sig: PhantomData,
        })
    }

    /// Calls function `name` with dynamically typed arguments.
    pub fn call(&self, name: &str, args: &[Value]) -> Result<Option<Value>, Error> {
        let types: Vec<Type> = args.iter().map(|a| a.ty()).collect();
        let bits: Vec<u64> = args.iter().map(|a| a.to_bits()).collect();
        let (result, ret) = self.invoke_returning(&Target::Named(name, &types), &bits)?;
        Ok(ret.map(|t| Value::from_bits(t, result)))
    }

    pub fn interrupt_handle(&self) -> InterruptHandle {
        InterruptHandle {
            interrupt: self.inner.interrupt.clone(),
        }
    }

    /// Output `print` produced since the last call of this, when the engine captures output.
    pub fn take_output(&self) -> String {
        let mut state = self.lock();
        match &mut state.runtime.output {
            Output::Capture(buf) => String::from_utf8_lossy(&std::mem::take(buf)).into_owned(),
            Output::Stdout(_) => String::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Instance> {
        // A panic while the lock was held cannot leave the instance inconsistent: calls do not
        // panic, and every call resets the context before it starts.
        self.inner
            .instance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn invoke(&self, target: &Target<'_>, args: &[u64]) -> Result<u64, Error> {
        self.invoke_returning(target, args).map(|(bits, _)| bits)
    }

    /// Runs a call in the current generation; returns the result's bits and type.
    fn invoke_returning(
        &self,
        target: &Target<'_>,
        args: &[u64],
    ) -> Result<(u64, Option<Type>), Error> {
        let mut state = self.lock();
        // Taken under the call lock: the call runs in the newest generation, and holding it
        // keeps that generation's code alive until the call returns, whatever reloads happen.
        let generation = self.current();
        let index = match target {
            Target::Typed(typed) => typed.resolve(&generation)?,
            Target::Named(name, types) => {
                let (index, f) = generation.function(name).ok_or_else(|| Error::NotFound {
                    what: "function",
                    name: name.to_string(),
                })?;
                let sig = &f.meta.sig;
                if sig.params != *types {
                    let requested = Signature {
                        params: types.to_vec(),
                        ret: sig.ret,
                    };
                    return Err(Error::Signature {
                        name: name.to_string(),
                        script: sig.to_string(),
                        requested: requested.to_string(),
                    });
                }
                index
            }
        };
        let ret = generation.functions[index].meta.sig.ret;
        let bits = self.run(&mut state, &generation, index, args)?;
        Ok((bits, ret))
    }

    fn run(
        &self,
        state: &mut Instance,
        generation: &Generation,
        index: usize,
        args: &[u64],
    ) -> Result<u64, Error> {
        let f = &generation.functions[index];
        let engine = &*self.inner.engine;
        let config = &engine.config;
        if state.array_stack.is_empty() {
            state.array_stack = vec![0u64; config.array_stack_size.div_ceil(8).max(1)];
        }
        let ctx = &mut *state.vmctx;
        ctx.trapped = 0;
        ctx.max_depth = i64::from(config.max_call_depth);
        self.inner
            .interrupt
            .start_call(native_stack_limit(config.max_native_stack));
        let base = state.array_stack.as_mut_ptr() as usize;
        ctx.array_stack_top = base;
        ctx.array_stack_end = base + state.array_stack.len() * 8;
        state.runtime.pending = None;

        let entry = match f.entry.get() {
            Some(&entry) => entry,
            None => {
                let entry = engine.stubs.get(&f.meta.sig).map_err(Error::Internal)?;
                *f.entry.get_or_init(|| entry)
            }
        };
        let mut ret = 0u64;
        // SAFETY: `entry` is the stub for `f`'s signature, `f.address` a function of this
        // generation with that signature, `args` were checked against it by the caller (typed
        // handle or `call`), the generation is alive (the caller holds it), and the context,
        // its runtime state, the globals and the array stack are live and exclusively ours for
        // the duration of the call (we hold the call lock).
        unsafe {
            entry(ctx, f.address as *const u8, args.as_ptr(), &mut ret);
        }
        state.runtime.output.flush();
        if state.vmctx.trapped == 0 {
            return Ok(ret);
        }
        let pending = state
            .runtime
            .pending
            .take()
            .unwrap_or(crate::runtime::PendingTrap {
                kind: TrapKind::HostError,
                location: None,
                message: Some("unknown runtime error".into()),
            });
        // An error without a location was raised on entry to the function the host called.
        let (function, span) = pending
            .location
            .and_then(|(addr, site)| {
                let g = &generation.functions[*generation.by_address.get(&addr)?];
                Some((g.meta.name.clone(), *g.meta.sites.get(site as usize)?))
            })
            .unwrap_or_else(|| (f.meta.name.clone(), f.meta.span));
        Err(Error::Runtime(RuntimeError {
            kind: pending.kind,
            function,
            location: generation.file.location(span.start),
            message: pending.message,
        }))
    }

    /// The global `name`, if it has the kind and element type of `want` (an array's length in
    /// `want` is ignored).
    fn global_slot<'g>(
        generation: &'g Generation,
        name: &str,
        want: VarType,
    ) -> Result<&'g GlobalSlot, Error> {
        let g = generation.global(name).ok_or_else(|| Error::NotFound {
            what: "global",
            name: name.to_string(),
        })?;
        let matches = match (g.ty, want) {
            (VarType::Scalar(a), VarType::Scalar(b)) => a == b,
            (VarType::Array(a), VarType::Array(b)) => a.elem == b.elem,
            _ => false,
        };
        if !matches {
            let requested = match want {
                VarType::Scalar(t) => t.to_string(),
                VarType::Array(a) => format!("[{}; _]", a.elem),
            };
            return Err(Error::GlobalType {
                name: name.to_string(),
                script: g.ty.to_string(),
                requested,
            });
        }
        Ok(g)
    }

    /// The current value of a scalar global.
    pub fn global<T: ScriptType>(&self, name: &str) -> Result<T, Error> {
        let _state = self.lock();
        let generation = self.current();
        let g = Self::global_slot(&generation, name, VarType::Scalar(T::TYPE))?;
        // SAFETY: the slot holds a scalar of type `T::TYPE`; the call lock is held.
        Ok(T::from_bits(unsafe {
            read_scalar(g.storage.as_ptr(), T::TYPE)
        }))
    }

    /// Sets a scalar global.
    pub fn set_global<T: ScriptType>(&self, name: &str, value: T) -> Result<(), Error> {
        let _state = self.lock();
        let generation = self.current();
        let g = Self::global_slot(&generation, name, VarType::Scalar(T::TYPE))?;
        // SAFETY: the slot holds a scalar of type `T::TYPE`; the call lock is held.
        unsafe { write_scalar(g.storage.as_ptr(), T::TYPE, value.to_bits()) };
        Ok(())
    }

    fn array_of<T: ScriptType>() -> VarType {
        VarType::Array(kiln_lang::program::ArrayType {
            elem: T::TYPE,
            len: 1,
        })
    }

    /// The elements of a global array.
    pub fn global_array<T: ScriptType>(&self, name: &str) -> Result<Vec<T>, Error> {
        let _state = self.lock();
        let generation = self.current();
        let g = Self::global_slot(&generation, name, Self::array_of::<T>())?;
        let VarType::Array(a) = g.ty else {
            unreachable!("global_slot checked the kind")
        };
        let size = crate::lower::elem_size(a.elem) as usize;
        let base = g.storage.as_ptr();
        Ok((0..a.len as usize)
            // SAFETY: element `k` of an array of `a.len` elements of `size` bytes.
            .map(|k| T::from_bits(unsafe { read_scalar(base.add(k * size), a.elem) }))
            .collect())
    }

    /// Sets the elements of a global array; `values` must have the array's length.
    pub fn set_global_array<T: ScriptType>(&self, name: &str, values: &[T]) -> Result<(), Error> {
        let _state = self.lock();
        let generation = self.current();
        let g = Self::global_slot(&generation, name, Self::array_of::<T>())?;
        let VarType::Array(a) = g.ty else {
            unreachable!("global_slot checked the kind")
        };
        if values.len() != a.len as usize {
            return Err(Error::GlobalType {
                name: name.to_string(),
                script: g.ty.to_string(),
                requested: format!("[{}; {}]", T::TYPE, values.len()),
            });
        }
        let size = crate::lower::elem_size(a.elem) as usize;
        let base = g.storage.as_ptr();
        for (k, v) in values.iter().enumerate() {
            // SAFETY: element `k` of an array of `a.len` elements of `size` bytes.
            unsafe { write_scalar(base.add(k * size), a.elem, v.to_bits()) };
        }
        Ok(())
    }

    /// Reloads the module from the file it was loaded from.
    pub fn reload(&self) -> Result<ReloadReport, Error> {
        let Some(path) = &self.inner.origin.path else {
            return Err(Error::Io {
                path: self.inner.origin.name.clone(),
                message: "the module was loaded from a string; reload it with `reload_str`".into(),
            });
        };
        let start = Instant::now();
        let bytes = crate::engine::read_script(path)?;
        self.reload_since(&bytes, start)
    }

    /// Reloads the module from new source text.
    pub fn reload_str(&self, source: &str) -> Result<ReloadReport, Error> {
        self.reload_bytes(source.as_bytes())
    }

    /// Reloads the module from new source bytes: builds a new generation (compiling the
    /// functions that changed, relinking the others), then makes it current between calls.
    ///
    /// On a compile error the current generation stays and the error carries the diagnostics.
    /// Globals whose name and type are unchanged keep their values; new globals start at
    /// their initializers, and a global whose type changed is re-initialized with a warning.
    pub fn reload_bytes(&self, bytes: &[u8]) -> Result<ReloadReport, Error> {
        self.reload_since(bytes, Instant::now())
    }

    /// A reload that started at `start` (reading the file counts).
    fn reload_since(&self, bytes: &[u8], start: Instant) -> Result<ReloadReport, Error> {
        let inner = &*self.inner;
        let mut last_id = inner.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.current();
        let loader = Loader {
            shared: &inner.engine,
            hosts: &inner.hosts,
        };
        let built = loader.build(
            &inner.origin.name,
            bytes,
            &inner.origin.options,
            Some(&previous),
            *last_id + 1,
            &inner.live,
        )?;
        let mut generation = built.generation;
        let swap_start = Instant::now();
        generation.stats.total = swap_start - start;
        let generation = Arc::new(generation);
        *inner.current.lock().unwrap_or_else(|e| e.into_inner()) = generation.clone();
        let active = start.elapsed();
        let swap = active - (swap_start - start);
        *last_id = generation.id;
        let removed = previous
            .functions
            .iter()
            .filter(|f| !generation.by_name.contains_key(&f.meta.name))
            .map(|f| f.meta.name.clone())
            .collect();
        let added = generation
            .functions
            .iter()
            .filter(|f| !previous.by_name.contains_key(&f.meta.name))
            .map(|f| f.meta.name.clone())
            .collect();
        // The old generation is freed here, unless a call is still running in it.
        drop(previous);

        let write_start = Instant::now();
        let mut stats = generation.stats.clone();
        if let Some(write) = &built.write {
            loader.write_artifact(&generation, write, &mut stats.cache);
        }
        Ok(ReloadReport {
            generation: generation.id,
            stats,
            incremental: built.incremental,
            added,
            removed,
            globals: built.globals,
            swap,
            active,
            cache_write: write_start.elapsed(),
        })
    }
}

/// What happened to the globals in a reload.
#[derive(Clone, Debug, Default)]
pub struct GlobalChanges {
    /// Same name and type: the value was kept.
    pub kept: Vec<String>,
    /// New globals, set to their initializers.
    pub added: Vec<String>,
    /// Globals whose type changed: re-initialized.
    pub reinitialized: Vec<String>,
    /// Globals the new source no longer has.
    pub removed: Vec<String>,
    /// One line per re-initialized global, saying what changed.
    pub warnings: Vec<String>,
}

/// What a reload did and where its time went.
#[derive(Clone, Debug)]
pub struct ReloadReport {
    /// The number of the generation now current.
    pub generation: u64,
    /// How the new generation was built: functions, time per step (parsing covers only the
    /// changed bodies when `incremental`), and what the cache did.
    pub stats: LoadStats,
    /// Only the changed function bodies were parsed and checked.
    pub incremental: bool,
    /// Functions new in this generation, and functions it no longer has.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub globals: GlobalChanges,
    /// Making the new generation current.
    pub swap: Duration,
    /// From the start of the reload until the new code was active.
    pub active: Duration,
    /// Writing the new artifact to the cache, after the new code was active.
    pub cache_write: Duration,
}

impl ReloadReport {
    /// Functions Cranelift compiled.
    pub fn compiled(&self) -> usize {
        self.stats.cache.compiled
    }

    /// Functions whose machine code was relinked from before (the previous generation or the
    /// cache).
    pub fn reused(&self) -> usize {
        self.stats.functions - self.stats.cache.compiled
    }
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "generation {} active in {:.2} ms: {} compiled, {} reused",
            self.generation,
            ms(self.active),
            self.compiled(),
            self.reused(),
        )?;
        let names = |v: &[String]| v.join(", ");
        if !self.added.is_empty() {
            write!(f, "; new: {}", names(&self.added))?;
        }
        if !self.removed.is_empty() {
            write!(f, "; removed: {}", names(&self.removed))?;
        }
        let g = &self.globals;
        write!(f, "; globals: {} kept", g.kept.len())?;
        if !g.added.is_empty() {
            write!(f, ", {} new", g.added.len())?;
        }
        if !g.reinitialized.is_empty() {
            write!(f, ", re-initialized: {}", names(&g.reinitialized))?;
        }
        let s = &self.stats;
        write!(
            f,
            " (parse {:.2}, check {:.2}, lower {:.2}, codegen {:.2}, link {:.2}, swap {:.3} ms)",
            ms(s.parse),
            ms(s.check),
            ms(s.lower),
            ms(s.codegen),
            ms(s.link),
            ms(self.swap),
        )
    }
}

/// # Safety
/// `ptr` must point at a readable scalar of type `ty` in Kiln's layout.
pub(crate) unsafe fn read_scalar(ptr: *const u8, ty: Type) -> u64 {
    // SAFETY: per the contract; global storage is 8-byte aligned and elements are naturally
    // aligned within it.
    unsafe {
        match ty {
            Type::Int | Type::Float => ptr.cast::<u64>().read(),
            Type::Bool => u64::from(ptr.read()),
        }
    }
}

/// # Safety
/// `ptr` must point at a writable scalar of type `ty` in Kiln's layout.
pub(crate) unsafe fn write_scalar(ptr: *mut u8, ty: Type, bits: u64) {
    // SAFETY: as for `read_scalar`.
    unsafe {
        match ty {
            Type::Int | Type::Float => ptr.cast::<u64>().write(bits),
            Type::Bool => ptr.write(bits as u8),
        }
    }
}

/// Stack that must stay free below the limit for the frame that passed the check, runtime
/// functions and host functions it calls.
const RED_ZONE: usize = 256 * 1024;

/// The lowest stack address script code may start a call at, on this thread.
fn native_stack_limit(max_native_stack: usize) -> usize {
    let marker = 0u8;
    let sp = std::ptr::addr_of!(marker) as usize;
    let by_budget = sp.saturating_sub(max_native_stack);
    let by_thread = thread_stack_low().map_or(sp.saturating_sub(1 << 20), |low| low + RED_ZONE);
    by_budget.max(by_thread)
}

/// The lowest address of the current thread's stack, where the platform tells it.
fn thread_stack_low() -> Option<usize> {
    thread_local! {
        static LOW: Option<usize> = query_stack_low();
    }
    LOW.with(|l| *l)
}

#[cfg(target_os = "linux")]
fn query_stack_low() -> Option<usize> {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; it is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then_some(addr as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn query_stack_low() -> Option<usize> {
    None
}
