//! The embedding API: engines, modules, typed calls, globals and interrupts.
//!
//! Loading a module runs the front end, then for each function the three steps the cache
//! will sit between — lower to CLIF ([`crate::lower`]), compile ([`crate::compile`]), link
//! ([`crate::link`]) — and allocates the module's globals and runtime context.

use crate::cache::{
    FunctionMeta, GlobalDef, Miss, ModuleCache, decode_module, encode_module, pointer_key,
};
use crate::compile::{CodeRef, CodegenOptions, CompiledFunction, compile, host_isa};
use crate::entry::{EntryFn, EntryStubs};
use crate::error::{CompileError, Error, RuntimeError};
use crate::host::{HostFunc, IntoHostFunc};
use crate::keys::{Fingerprint, function_key, module_key};
use crate::link::{LinkInput, link};
use crate::lower::{Symbol, array_bytes, clif_signature, lower_function};
use crate::runtime::{Output, RuntimeState, VmCtx};
use crate::value::{ScriptParams, ScriptResult, ScriptType, Value};
use cranelift_codegen::Context;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::JITModule;
use kiln_cache::CacheStore;
use kiln_lang::program::{
    Const, FuncId, HostSignature, Program, Signature, TrapKind, Type, VarType,
};
use kiln_lang::{CheckOptions, SourceFile, Span};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How an engine compiles and runs scripts.
#[derive(Clone)]
pub struct Config {
    /// The deepest script call allowed; the first call from the host is depth 1.
    pub max_call_depth: u32,
    /// Collect `print` output for [`Module::take_output`] instead of writing to stdout.
    pub capture_output: bool,
    /// Bytes available to the local arrays of all active calls together.
    pub array_stack_size: usize,
    /// The most native stack a call may use (it is also bounded by the calling thread's stack).
    pub max_native_stack: usize,
    pub codegen: CodegenOptions,
    /// Where compiled modules are kept between loads and processes; `None` compiles every load.
    /// A `kiln_cache::FileStore` persists them, `kiln_cache::Fallback` puts memory in front.
    /// With a cache, the engine also remembers the functions it compiled, so that a function
    /// shared by several modules is compiled once.
    pub cache: Option<Arc<dyn CacheStore>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Config {
            max_call_depth,
            capture_output,
            array_stack_size,
            max_native_stack,
            codegen,
            cache,
        } = self;
        f.debug_struct("Config")
            .field("max_call_depth", max_call_depth)
            .field("capture_output", capture_output)
            .field("array_stack_size", array_stack_size)
            .field("max_native_stack", max_native_stack)
            .field("codegen", codegen)
            .field("cache", &cache.as_ref().map(|_| "CacheStore"))
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_call_depth: 10_000,
            capture_output: false,
            // Room for one array of the largest size, 2^24 floats, and then some.
            array_stack_size: 256 << 20,
            max_native_stack: 1 << 30,
            codegen: CodegenOptions::default(),
            cache: None,
        }
    }
}

struct EngineShared {
    config: Config,
    isa: OwnedTargetIsa,
    fingerprint: Fingerprint,
    stubs: EntryStubs,
    /// With a cache: every function this engine compiled, by key, so that modules sharing a
    /// function compile it once.
    compiled: Mutex<HashMap<[u8; 32], CompiledFunction>>,
}

/// Compiles modules; holds the configuration and the registered host functions.
pub struct Engine {
    shared: Arc<EngineShared>,
    hosts: Vec<Arc<HostFunc>>,
}

impl Engine {
    pub fn new(config: Config) -> Result<Engine, Error> {
        if config.max_call_depth == 0 {
            return Err(Error::Config("max_call_depth must be at least 1".into()));
        }
        let isa = host_isa(config.codegen).map_err(Error::Config)?;
        let fingerprint = Fingerprint::new(&*isa, config.codegen).map_err(Error::Config)?;
        Ok(Engine {
            shared: Arc::new(EngineShared {
                config,
                stubs: EntryStubs::new(isa.clone()),
                fingerprint,
                isa,
                compiled: Mutex::new(HashMap::new()),
            }),
            hosts: Vec::new(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// What compiled code depends on besides the script: artifacts are only reused by an engine
    /// with the same fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.shared.fingerprint
    }

    /// Makes a Rust function or closure callable from scripts loaded afterwards.
    ///
    /// Its arguments are `i64`, `f64` or `bool`; it returns nothing, one of those, or a
    /// `Result` whose error becomes a `host error` of the script call. A panic also becomes a
    /// `host error`. Host functions must not call back into the engine.
    pub fn register<P>(&mut self, name: &str, f: impl IntoHostFunc<P>) -> Result<(), Error> {
        let bad = |message: &str| Error::Host {
            name: name.to_string(),
            message: message.to_string(),
        };
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(bad("not a valid identifier"));
        }
        if self.hosts.iter().any(|h| h.name == name) {
            return Err(bad("a host function of that name is already registered"));
        }
        self.hosts
            .push(Arc::new(f.into_host_func(name.to_string())));
        Ok(())
    }

    fn host_signatures(&self) -> Vec<HostSignature> {
        self.hosts
            .iter()
            .map(|h| HostSignature {
                name: h.name.clone(),
                sig: h.sig.clone(),
            })
            .collect()
    }

    /// Loads a module from source text; `name` is the file name diagnostics show.
    pub fn load_str(&self, name: &str, source: &str) -> Result<Module, Error> {
        self.load_bytes(name, source.as_bytes(), &CheckOptions::default())
    }

    /// Loads a module from a script file.
    pub fn load_file(&self, path: impl AsRef<std::path::Path>) -> Result<Module, Error> {
        let path = path.as_ref();
        let bytes = read_script(path)?;
        self.load_bytes(
            &path.display().to_string(),
            &bytes,
            &CheckOptions::default(),
        )
    }

    /// Runs only the front end: the compile errors `load_bytes` would report.
    pub fn check_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        options: &CheckOptions,
    ) -> Result<(), Error> {
        self.front_end(name, bytes, options).map(|_| ())
    }

    fn front_end(
        &self,
        name: &str,
        bytes: &[u8],
        options: &CheckOptions,
    ) -> Result<kiln_lang::Program, Error> {
        let (file, diagnostics) = kiln_lang::source_from_bytes(name, bytes);
        if !diagnostics.is_empty() {
            return Err(CompileError::new(file, diagnostics).into());
        }
        kiln_lang::check(&file, &self.host_signatures(), options)
            .map_err(|diagnostics| CompileError::new(file, diagnostics).into())
    }

    /// Loads a module from a file's bytes, with extra front-end requirements.
    ///
    /// With a cache configured, an unchanged module is relinked straight from its artifact (no
    /// front end, no Cranelift); a changed one recompiles only the functions whose keys miss. A
    /// cache problem never fails the load: it is reported in [`LoadStats::cache`].
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        options: &CheckOptions,
    ) -> Result<Module, Error> {
        let start = Instant::now();
        let shared = &*self.shared;
        let fingerprint = &shared.fingerprint;
        let hosts = self.host_signatures();
        let mut report = CacheStats::default();
        let cache = shared.config.cache.clone().map(ModuleCache::new);
        // The module's key, and the key of the pointer to the last module of this file name.
        let keys = cache.as_ref().map(|_| {
            (
                module_key(fingerprint, bytes, &hosts, options),
                pointer_key(fingerprint, name),
            )
        });
        if let (Some(cache), Some((module_key, _))) = (&cache, &keys) {
            report.keys_used.push(*module_key);
            let cached = cache
                .artifact(fingerprint, module_key)
                .and_then(|artifact| {
                    let module =
                        decode_module(&artifact.artifact(), module_key).map_err(Miss::Corrupt)?;
                    report.module_hit = true;
                    report.hits = module.functions.len();
                    let file = SourceFile::new(name, String::from_utf8_lossy(bytes).into_owned());
                    let stats = LoadStats {
                        functions: module.functions.len(),
                        cache: std::mem::take(&mut report),
                        ..LoadStats::default()
                    };
                    // The code is linked straight from the mapped artifact, which lives until then.
                    let codes: Vec<_> = module.functions.iter().map(|c| c.as_code()).collect();
                    // Cached code that does not link is one more corrupt entry: recompile.
                    self.instantiate(file, &codes, module.metas, module.globals, stats, start)
                        .map_err(|e| Miss::Corrupt(e.to_string()))
                });
            match cached {
                Ok(module) => return Ok(module),
                Err(miss) => {
                    report = CacheStats {
                        keys_used: vec![*module_key],
                        ..CacheStats::default()
                    };
                    report.miss(format!("module miss: {miss}"), &miss);
                }
            }
        }

        let program = self.front_end(name, bytes, options)?;
        let parsed = Instant::now();
        // Reusable code: the previous version of this file (an edit recompiles only what
        // changed), then whatever this engine compiled for other modules.
        let previous = match (&cache, &keys) {
            (Some(cache), Some((_, pointer))) => cache.previous_functions(fingerprint, pointer),
            _ => HashMap::new(),
        };
        let reuse = |key: &[u8; 32]| {
            previous.get(key).cloned().or_else(|| {
                let seen = shared.compiled.lock().unwrap_or_else(|e| e.into_inner());
                seen.get(key).cloned()
            })
        };
        let keyed = cache.as_ref().map(|_| fingerprint);
        let compiled = compile_program(&shared.isa, keyed, &program, &hosts, &reuse)?;
        let compiled_at = Instant::now();
        if cache.is_some() {
            let mut seen = shared.compiled.lock().unwrap_or_else(|e| e.into_inner());
            for f in compiled.functions.iter().filter(|f| !f.reused) {
                seen.insert(f.key, f.code.clone());
            }
        }

        let globals: Vec<GlobalDef> = program
            .globals
            .iter()
            .map(|g| GlobalDef {
                name: g.name.clone(),
                ty: g.ty,
                init: g.init,
            })
            .collect();
        let (codes, metas): (Vec<CompiledFunction>, Vec<FunctionMeta>) = program
            .functions
            .iter()
            .zip(compiled.functions)
            .map(|(f, c)| {
                let meta = FunctionMeta {
                    name: f.name.clone(),
                    sig: f.sig.clone(),
                    span: f.span,
                    sites: c.sites,
                };
                (c.code, meta)
            })
            .unzip();
        report.hits = compiled.reused;
        report.compiled = codes.len() - compiled.reused;
        if let (Some(cache), Some((module_key, pointer))) = (&cache, &keys) {
            let entries: Vec<_> = compiled
                .keys
                .iter()
                .zip(&codes)
                .zip(&metas)
                .map(|((k, c), m)| (k, c, m))
                .collect();
            let written = encode_module(fingerprint, module_key, &entries, &globals)
                .and_then(|bytes| cache.store(module_key, pointer, &bytes));
            match written {
                Ok(()) => report.keys_used.push(*pointer),
                Err(why) => report.warn(format!("could not write the cache: {why}")),
            }
        }
        let stats = LoadStats {
            functions: codes.len(),
            front_end: parsed - start,
            lower: compiled.lower,
            codegen: compiled.codegen,
            compile_wall: compiled_at - parsed,
            link: Duration::ZERO,
            total: Duration::ZERO,
            cache: report,
        };
        let code_refs: Vec<_> = codes.iter().map(CompiledFunction::as_code).collect();
        self.instantiate(
            program.file.clone(),
            &code_refs,
            metas,
            globals,
            stats,
            start,
        )
    }

    /// Links compiled functions into a runnable module with fresh globals.
    fn instantiate(
        &self,
        file: Arc<SourceFile>,
        codes: &[CodeRef<'_>],
        metas: Vec<FunctionMeta>,
        globals: Vec<GlobalDef>,
        mut stats: LoadStats,
        start: Instant,
    ) -> Result<Module, Error> {
        let link_start = Instant::now();
        let isa = &self.shared.isa;
        let mut slots = Vec::with_capacity(globals.len());
        for g in globals {
            let words = match g.ty {
                VarType::Scalar(_) => 1,
                VarType::Array(a) => (array_bytes(a) / 8) as usize,
            };
            let mut storage = vec![0u64; words].into_boxed_slice();
            if let (Some(init), VarType::Scalar(ty)) = (g.init, g.ty) {
                // SAFETY: a scalar global has one 8-byte word, enough for any scalar.
                unsafe {
                    write_scalar(storage.as_mut_ptr().cast(), ty, Value::from(init).to_bits())
                };
            }
            slots.push(GlobalSlot {
                name: g.name,
                ty: g.ty,
                storage,
            });
        }
        let used_hosts: Vec<Arc<HostFunc>> = self.hosts.clone();
        let inputs: Vec<LinkInput> = codes
            .iter()
            .zip(&metas)
            .map(|(&code, meta)| LinkInput {
                name: &meta.name,
                signature: clif_signature(&**isa, &meta.sig),
                code,
            })
            .collect();
        let global_addrs: HashMap<&str, *const u8> = slots
            .iter()
            .map(|g| (g.name.as_str(), g.storage.as_ptr().cast::<u8>()))
            .collect();
        let host_addrs: HashMap<&str, *const u8> = used_hosts
            .iter()
            .map(|h| (h.name.as_str(), Arc::as_ptr(h).cast::<u8>()))
            .collect();
        let linked = link(isa.clone(), &inputs, &|s| match s {
            Symbol::Global(name) => global_addrs.get(name.as_str()).copied(),
            Symbol::Host(name) => host_addrs.get(name.as_str()).copied(),
            _ => None,
        })
        .map_err(Error::Internal)?;
        drop(inputs);
        let functions: Vec<FunctionInfo> = metas
            .into_iter()
            .zip(&linked.addresses)
            .map(|(meta, &address)| FunctionInfo {
                name: meta.name,
                sig: meta.sig,
                span: meta.span,
                sites: meta.sites,
                address: address as usize,
                entry: OnceLock::new(),
            })
            .collect();

        let interrupt = Arc::new(AtomicU8::new(0));
        let output = if self.shared.config.capture_output {
            Output::Capture(Vec::new())
        } else {
            Output::Stdout(std::io::BufWriter::new(std::io::stdout()))
        };
        let mut runtime = Box::new(RuntimeState {
            output,
            pending: None,
        });
        let vmctx = Box::new(VmCtx::new(Arc::as_ptr(&interrupt), &mut *runtime));
        let by_address = functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.address, i))
            .collect();
        let by_name = functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        stats.link = link_start.elapsed();
        stats.total = start.elapsed();
        Ok(Module {
            inner: Arc::new(ModuleInner {
                shared: self.shared.clone(),
                file,
                functions,
                by_name,
                by_address,
                interrupt,
                _hosts: used_hosts,
                stats,
                code: Mutex::new(Some(linked.module)),
                state: Mutex::new(Instance {
                    vmctx,
                    runtime,
                    globals: slots,
                    array_stack: Vec::new(),
                }),
            }),
        })
    }
}

/// Below this many functions per thread, spreading a module's compile over threads costs more
/// than it saves.
const FUNCTIONS_PER_THREAD: usize = 16;

/// One function compiled (or reused) by [`compile_program`].
struct CompiledOne {
    code: CompiledFunction,
    sites: Vec<Span>,
    key: [u8; 32],
    reused: bool,
}

/// Functions compiled by [`compile_program`], in order, with their cache keys, how many were
/// reused, and the time spent lowering and compiling, summed over threads.
struct CompiledProgram {
    functions: Vec<CompiledOne>,
    keys: Vec<[u8; 32]>,
    reused: usize,
    lower: Duration,
    codegen: Duration,
}

/// Lowers every function of `program` and compiles it, spread over the machine's cores. With a
/// fingerprint, each function is keyed, and `reuse` may give its code instead of compiling it.
fn compile_program(
    isa: &OwnedTargetIsa,
    fingerprint: Option<&Fingerprint>,
    program: &Program,
    hosts: &[HostSignature],
    reuse: &(dyn Fn(&[u8; 32]) -> Option<CompiledFunction> + Sync),
) -> Result<CompiledProgram, Error> {
    let n = program.functions.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(n.div_ceil(FUNCTIONS_PER_THREAD))
        .max(1);
    // Thread `t` takes functions t, t + threads, ...: neighbours in a file tend to be alike in
    // size, so interleaving balances the work.
    let work = |t: usize| -> Result<(Vec<CompiledOne>, Duration, Duration), String> {
        let (mut fctx, mut ctx) = (FunctionBuilderContext::new(), Context::new());
        let (mut lower, mut codegen) = (Duration::ZERO, Duration::ZERO);
        let mut out = Vec::with_capacity(n / threads + 1);
        for i in (t..n).step_by(threads) {
            let started = Instant::now();
            let lowered = lower_function(&**isa, program, hosts, FuncId(i as u32), &mut fctx);
            // The key must be taken before compiling, which optimizes the CLIF in place.
            let key = fingerprint.map_or([0; 32], |fp| function_key(fp, &lowered));
            let sites = lowered.sites.clone();
            let lowered_at = Instant::now();
            lower += lowered_at - started;
            let cached = fingerprint.and_then(|_| reuse(&key));
            let (code, reused) = match cached {
                // Same key: same code, relinked through this lowering's symbol table.
                Some(c) => (
                    CompiledFunction {
                        symbols: lowered.symbols,
                        ..c
                    },
                    true,
                ),
                None => (compile(&**isa, lowered, &mut ctx)?, false),
            };
            codegen += lowered_at.elapsed();
            out.push(CompiledOne {
                code,
                sites,
                key,
                reused,
            });
        }
        Ok((out, lower, codegen))
    };
    let parts = if threads == 1 {
        vec![work(0)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|t| scope.spawn(move || work(t))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a compile thread panicked".into()))
                })
                .collect()
        })
    };
    let parts = parts
        .into_iter()
        .collect::<Result<Vec<_>, String>>()
        .map_err(Error::Internal)?;
    let lower = parts.iter().map(|p| p.1).sum();
    let codegen = parts.iter().map(|p| p.2).sum();
    let mut shares: Vec<_> = parts.into_iter().map(|p| p.0.into_iter()).collect();
    let functions: Vec<CompiledOne> = (0..n)
        .map(|i| {
            shares[i % threads]
                .next()
                .expect("each thread compiled its share")
        })
        .collect();
    Ok(CompiledProgram {
        keys: functions.iter().map(|f| f.key).collect(),
        reused: functions.iter().filter(|f| f.reused).count(),
        functions,
        lower,
        codegen,
    })
}

/// Reads a script file, with an error that names it.
pub fn read_script(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Where the time of loading a module went, and what the cache did.
#[derive(Clone, Debug, Default)]
pub struct LoadStats {
    pub functions: usize,
    /// Parsing and checking (zero on a module hit).
    pub front_end: Duration,
    /// Building Cranelift IR, summed over the compiling threads.
    pub lower: Duration,
    /// Cranelift compiling to machine code (or taking cached code), summed over the threads.
    pub codegen: Duration,
    /// Wall-clock time of lowering and compiling together (they run in parallel).
    pub compile_wall: Duration,
    /// Linking into executable memory and setting up the module.
    pub link: Duration,
    /// The whole load, wall clock.
    pub total: Duration,
    pub cache: CacheStats,
}

/// What the cache did during one load.
#[derive(Clone, Debug, Default)]
pub struct CacheStats {
    /// The whole module came from its artifact.
    pub module_hit: bool,
    /// Functions whose machine code came from the cache.
    pub hits: usize,
    /// Functions Cranelift compiled.
    pub compiled: usize,
    /// Why each miss missed, for verbose output.
    pub misses: Vec<String>,
    /// The one problem worth telling a user (a corrupt entry, an unwritable cache).
    pub warning: Option<String>,
    /// The entries this load read or wrote: what garbage collection must keep.
    pub keys_used: Vec<[u8; 32]>,
}

impl CacheStats {
    fn miss(&mut self, text: String, why: &Miss) {
        if matches!(
            why,
            Miss::Corrupt(_) | Miss::FingerprintMismatch | Miss::Unavailable(_)
        ) {
            self.warn(format!("{text}; recompiling"));
        }
        self.misses.push(text);
    }

    fn warn(&mut self, text: String) {
        self.warning.get_or_insert(text);
    }
}

struct FunctionInfo {
    name: String,
    sig: Signature,
    span: Span,
    sites: Vec<Span>,
    address: usize,
    /// The entry stub for `sig`, fetched on the first call: a module hit then compiles nothing
    /// for functions the host never calls.
    entry: OnceLock<EntryFn>,
}

struct GlobalSlot {
    name: String,
    ty: VarType,
    /// 8-byte words; JIT code holds its address, so it is never reallocated.
    storage: Box<[u64]>,
}

/// A module's mutable state, used by one call at a time.
struct Instance {
    vmctx: Box<VmCtx>,
    runtime: Box<RuntimeState>,
    globals: Vec<GlobalSlot>,
    /// Allocated on the first call, so modules that are never called cost no memory.
    array_stack: Vec<u64>,
}

// SAFETY: the raw pointers in `vmctx` point into this instance's own boxes and into the module's
// interrupt flag; they are only used by a call, which holds the instance's mutex.
unsafe impl Send for Instance {}

struct ModuleInner {
    shared: Arc<EngineShared>,
    file: Arc<SourceFile>,
    functions: Vec<FunctionInfo>,
    by_name: HashMap<String, usize>,
    by_address: HashMap<usize, usize>,
    interrupt: Arc<AtomicU8>,
    /// Keeps the host functions alive: JIT code holds their addresses.
    _hosts: Vec<Arc<HostFunc>>,
    stats: LoadStats,
    code: Mutex<Option<JITModule>>,
    state: Mutex<Instance>,
}

impl Drop for ModuleInner {
    fn drop(&mut self) {
        if let Some(code) = self
            .code
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            // SAFETY: every call holds a reference to this module, so none is running now and
            // no function pointer into the code survives it.
            unsafe { code.free_memory() };
        }
    }
}

/// A loaded script: its functions ready to call, its globals, its output.
///
/// Cloning is cheap and shares the module. Calls are serialized: a call from a second thread
/// waits for the running one.
#[derive(Clone)]
pub struct Module {
    inner: Arc<ModuleInner>,
}

/// Stops running calls of a module from any thread.
#[derive(Clone)]
pub struct InterruptHandle {
    flag: Arc<AtomicU8>,
}

impl InterruptHandle {
    /// Asks the running call to stop with `interrupted` at its next loop iteration or function
    /// entry. If no call is running, the next call stops at its start.
    pub fn interrupt(&self) {
        self.flag.store(1, Ordering::Relaxed);
    }
}

/// A handle to a script function with a signature checked once, when it was made.
pub struct TypedFunc<P, R> {
    module: Module,
    index: usize,
    _sig: PhantomData<fn(P) -> R>,
}

impl<P: ScriptParams, R: ScriptResult> TypedFunc<P, R> {
    pub fn call(&self, params: P) -> Result<R, Error> {
        let bits = self.module.invoke(self.index, &params.to_bits())?;
        Ok(R::from_bits(bits))
    }
}

impl Module {
    /// The source file the module was loaded from.
    pub fn file(&self) -> &SourceFile {
        &self.inner.file
    }

    pub fn stats(&self) -> &LoadStats {
        &self.inner.stats
    }

    /// The names of the module's functions, in source order.
    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.inner.functions.iter().map(|f| f.name.as_str())
    }

    /// The signature of a function.
    pub fn signature(&self, name: &str) -> Option<&Signature> {
        self.inner
            .by_name
            .get(name)
            .map(|&i| &self.inner.functions[i].sig)
    }

    fn function_index(&self, name: &str) -> Result<usize, Error> {
        self.inner
            .by_name
            .get(name)
            .copied()
            .ok_or_else(|| Error::NotFound {
                what: "function",
                name: name.to_string(),
            })
    }

    /// A typed handle to function `name`, e.g. `module.typed::<(i64, f64), f64>("step")`.
    pub fn typed<P: ScriptParams, R: ScriptResult>(
        &self,
        name: &str,
    ) -> Result<TypedFunc<P, R>, Error> {
        let index = self.function_index(name)?;
        let requested = Signature {
            params: P::types(),
            ret: R::TYPE,
        };
        let sig = &self.inner.functions[index].sig;
        if *sig != requested {
            return Err(Error::Signature {
                name: name.to_string(),
                script: sig.to_string(),
                requested: requested.to_string(),
            });
        }
        Ok(TypedFunc {
            module: self.clone(),
            index,
            _sig: PhantomData,
        })
    }

    /// Calls function `name` with dynamically typed arguments.
    pub fn call(&self, name: &str, args: &[Value]) -> Result<Option<Value>, Error> {
        let index = self.function_index(name)?;
        let sig = &self.inner.functions[index].sig;
        if !args.iter().map(|a| a.ty()).eq(sig.params.iter().copied()) {
            let requested = Signature {
                params: args.iter().map(|a| a.ty()).collect(),
                ret: sig.ret,
            };
            return Err(Error::Signature {
                name: name.to_string(),
                script: sig.to_string(),
                requested: requested.to_string(),
            });
        }
        let bits: Vec<u64> = args.iter().map(|a| a.to_bits()).collect();
        let ret = sig.ret;
        let result = self.invoke(index, &bits)?;
        Ok(ret.map(|t| Value::from_bits(t, result)))
    }

    pub fn interrupt_handle(&self) -> InterruptHandle {
        InterruptHandle {
            flag: self.inner.interrupt.clone(),
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
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn invoke(&self, index: usize, args: &[u64]) -> Result<u64, Error> {
        let inner = &*self.inner;
        let f = &inner.functions[index];
        let config = &inner.shared.config;
        let mut state = self.lock();
        let state = &mut *state;
        if state.array_stack.is_empty() {
            state.array_stack = vec![0u64; config.array_stack_size.div_ceil(8).max(1)];
        }
        let ctx = &mut *state.vmctx;
        ctx.trapped = 0;
        ctx.max_depth = i64::from(config.max_call_depth);
        ctx.stack_limit = native_stack_limit(config.max_native_stack);
        let base = state.array_stack.as_mut_ptr() as usize;
        ctx.array_stack_top = base;
        ctx.array_stack_end = base + state.array_stack.len() * 8;
        state.runtime.pending = None;

        let entry = match f.entry.get() {
            Some(&entry) => entry,
            None => {
                let entry = inner.shared.stubs.get(&f.sig).map_err(Error::Internal)?;
                *f.entry.get_or_init(|| entry)
            }
        };
        let mut ret = 0u64;
        // SAFETY: `entry` is the stub for `f.sig`, `f.address` a function of this module with
        // that signature, `args` were checked against it by the caller (typed handle or
        // `call`), and the context, its runtime state, globals and array stack are live and
        // exclusively ours for the duration of the call (we hold the lock).
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
                let g = &inner.functions[*inner.by_address.get(&addr)?];
                Some((g.name.clone(), *g.sites.get(site as usize)?))
            })
            .unwrap_or_else(|| (f.name.clone(), f.span));
        Err(Error::Runtime(RuntimeError {
            kind: pending.kind,
            function,
            location: inner.file.location(span.start),
            message: pending.message,
        }))
    }

    /// The index of global `name`, if it has the kind and element type of `want` (an array's
    /// length in `want` is ignored).
    fn global_slot(state: &Instance, name: &str, want: VarType) -> Result<usize, Error> {
        let i = state
            .globals
            .iter()
            .position(|g| g.name == name)
            .ok_or_else(|| Error::NotFound {
                what: "global",
                name: name.to_string(),
            })?;
        let g = &state.globals[i];
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
        Ok(i)
    }

    /// The current value of a scalar global.
    pub fn global<T: ScriptType>(&self, name: &str) -> Result<T, Error> {
        let state = self.lock();
        let i = Self::global_slot(&state, name, VarType::Scalar(T::TYPE))?;
        let ptr = state.globals[i].storage.as_ptr().cast::<u8>();
        // SAFETY: the slot holds a scalar of type `T::TYPE`.
        Ok(T::from_bits(unsafe { read_scalar(ptr, T::TYPE) }))
    }

    /// Sets a scalar global.
    pub fn set_global<T: ScriptType>(&self, name: &str, value: T) -> Result<(), Error> {
        let mut state = self.lock();
        let i = Self::global_slot(&state, name, VarType::Scalar(T::TYPE))?;
        let ptr = state.globals[i].storage.as_mut_ptr().cast::<u8>();
        // SAFETY: the slot holds a scalar of type `T::TYPE`.
        unsafe { write_scalar(ptr, T::TYPE, value.to_bits()) };
        Ok(())
    }

    /// The elements of a global array.
    pub fn global_array<T: ScriptType>(&self, name: &str) -> Result<Vec<T>, Error> {
        let state = self.lock();
        let want = VarType::Array(kiln_lang::program::ArrayType {
            elem: T::TYPE,
            len: 1,
        });
        let i = Self::global_slot(&state, name, want)?;
        let g = &state.globals[i];
        let VarType::Array(a) = g.ty else {
            unreachable!()
        };
        let size = crate::lower::elem_size(a.elem) as usize;
        let base = g.storage.as_ptr().cast::<u8>();
        Ok((0..a.len as usize)
            // SAFETY: element `k` of an array of `a.len` elements of `size` bytes.
            .map(|k| T::from_bits(unsafe { read_scalar(base.add(k * size), a.elem) }))
            .collect())
    }

    /// Sets the elements of a global array; `values` must have the array's length.
    pub fn set_global_array<T: ScriptType>(&self, name: &str, values: &[T]) -> Result<(), Error> {
        let mut state = self.lock();
        let want = VarType::Array(kiln_lang::program::ArrayType {
            elem: T::TYPE,
            len: 1,
        });
        let i = Self::global_slot(&state, name, want)?;
        let g = &mut state.globals[i];
        let VarType::Array(a) = g.ty else {
            unreachable!()
        };
        if values.len() != a.len as usize {
            return Err(Error::GlobalType {
                name: name.to_string(),
                script: g.ty.to_string(),
                requested: format!("[{}; {}]", T::TYPE, values.len()),
            });
        }
        let size = crate::lower::elem_size(a.elem) as usize;
        let base = g.storage.as_mut_ptr().cast::<u8>();
        for (k, v) in values.iter().enumerate() {
            // SAFETY: element `k` of an array of `a.len` elements of `size` bytes.
            unsafe { write_scalar(base.add(k * size), a.elem, v.to_bits()) };
        }
        Ok(())
    }
}

/// # Safety
/// `ptr` must point at a readable scalar of type `ty` in Kiln's layout.
unsafe fn read_scalar(ptr: *const u8, ty: Type) -> u64 {
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
unsafe fn write_scalar(ptr: *mut u8, ty: Type, bits: u64) {
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

/// Converts a checker constant to the value the API shows.
impl From<&Const> for Value {
    fn from(c: &Const) -> Value {
        Value::from(*c)
    }
}
