//! Engines and loading: from source bytes to a linked generation of a module.
//!
//! Loading a module runs the front end, then for each function the three steps the cache
//! sits between — lower to CLIF ([`crate::lower`]), compile ([`crate::compile`]), link
//! ([`crate::link`]) — and allocates the module's globals. A reload ([`Module::reload`]) runs
//! the same pipeline against the previous generation, whose unchanged functions it relinks.

use crate::cache::{
    FunctionMeta, GlobalDef, Miss, ModuleCache, decode_module, encode_module, pointer_key,
};
use crate::compile::{CodeRef, CodegenOptions, CompiledFunction, Target, compile, target_isa};
use crate::entry::EntryStubs;
use crate::error::{CompileError, Error};
use crate::host::{HostFunc, IntoHostFunc};
use crate::keys::{Fingerprint, function_key, module_key};
use crate::link::{LinkInput, link};
use crate::lower::{Symbol, array_bytes, inlined_in_callers, lower_function};
use crate::module::{
    FunctionInfo, Generation, GlobalChanges, GlobalSlot, GlobalStorage, Module, Origin,
    ReusableCode, SourceOutline, write_scalar,
};
use crate::value::Value;
use cranelift_codegen::Context;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_frontend::FunctionBuilderContext;
use kiln_cache::CacheStore;
use kiln_lang::program::{Const, FuncId, HostSignature, Program, VarType};
use kiln_lang::{CheckOptions, SourceFile, Span};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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
    /// The largest script source a load or reload accepts, in bytes.
    pub max_source_bytes: usize,
    /// The most functions a module may define.
    pub max_functions: usize,
    /// The longest a load or reload may spend checking and compiling; `None` for no limit.
    /// With untrusted scripts, together with the source-size and function-count limits, this
    /// bounds what a script can cost before it runs (`max_call_depth` and interrupts bound it
    /// while it runs).
    pub compile_time_limit: Option<Duration>,
    pub codegen: CodegenOptions,
    /// The machine the code is for. An engine for another target cannot run scripts; it builds
    /// cache artifacts ([`Engine::build_file`]) for machines of that kind.
    pub target: Target,
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
            max_source_bytes,
            max_functions,
            compile_time_limit,
            codegen,
            target,
            cache,
        } = self;
        f.debug_struct("Config")
            .field("max_call_depth", max_call_depth)
            .field("capture_output", capture_output)
            .field("array_stack_size", array_stack_size)
            .field("max_native_stack", max_native_stack)
            .field("max_source_bytes", max_source_bytes)
            .field("max_functions", max_functions)
            .field("compile_time_limit", compile_time_limit)
            .field("codegen", codegen)
            .field("target", target)
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
            max_source_bytes: 64 << 20,
            max_functions: 1_000_000,
            compile_time_limit: None,
            codegen: CodegenOptions::default(),
            target: Target::Host,
            cache: None,
        }
    }
}

pub(crate) struct EngineShared {
    pub config: Config,
    pub isa: OwnedTargetIsa,
    pub fingerprint: Fingerprint,
    pub stubs: EntryStubs,
    /// With a cache: functions this engine compiled, by key, so that modules sharing a
    /// function compile it once.
    compiled: Mutex<CompiledFunctions>,
}

/// Functions an engine compiled, by key, up to a budget of code bytes: past it the memory is
/// dropped (the persistent cache still has the code), so a long session of reloads cannot grow
/// without bound.
#[derive(Default)]
struct CompiledFunctions {
    by_key: HashMap<[u8; 32], Arc<CompiledFunction>>,
    bytes: usize,
}

/// What [`CompiledFunctions`] keeps at most.
const COMPILED_BUDGET: usize = 64 << 20;

impl EngineShared {
    fn check_source_size(&self, len: usize) -> Result<(), Error> {
        let max = self.config.max_source_bytes;
        if len > max {
            return Err(Error::Limit(format!(
                "the script is {len} bytes; this engine accepts at most {max} \
                 (Config::max_source_bytes)"
            )));
        }
        Ok(())
    }

    fn remember<'a>(&self, functions: impl Iterator<Item = &'a CompiledOne>) {
        let mut seen = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        for f in functions {
            let Some(key) = f.key else { continue };
            let size = f.code.code.len();
            if seen.bytes + size > COMPILED_BUDGET {
                *seen = CompiledFunctions::default();
            }
            if seen.by_key.insert(key, f.code.clone()).is_none() {
                seen.bytes += size;
            }
        }
    }

    fn compiled(&self, key: &[u8; 32]) -> Option<Arc<CompiledFunction>> {
        let seen = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        seen.by_key.get(key).cloned()
    }
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
        let isa = target_isa(&config.target, config.codegen).map_err(Error::Config)?;
        let fingerprint = Fingerprint::new(&*isa, config.codegen).map_err(Error::Config)?;
        Ok(Engine {
            shared: Arc::new(EngineShared {
                config,
                stubs: EntryStubs::new(isa.clone()),
                fingerprint,
                isa,
                compiled: Mutex::new(CompiledFunctions::default()),
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

    fn loader(&self) -> Loader<'_> {
        Loader {
            shared: &self.shared,
            hosts: &self.hosts,
        }
    }

    /// Loads a module from source text; `name` is the file name diagnostics show.
    pub fn load_str(&self, name: &str, source: &str) -> Result<Module, Error> {
        self.load_bytes(name, source.as_bytes(), &CheckOptions::default())
    }

    /// Loads a module from a script file; [`Module::reload`] reads it again.
    pub fn load_file(&self, path: impl AsRef<std::path::Path>) -> Result<Module, Error> {
        self.load_file_with(path, &CheckOptions::default())
    }

    /// Loads a module from a script file, with extra front-end requirements.
    pub fn load_file_with(
        &self,
        path: impl AsRef<std::path::Path>,
        options: &CheckOptions,
    ) -> Result<Module, Error> {
        let path = path.as_ref();
        let bytes = read_script(path)?;
        self.load_from(&path.display().to_string(), Some(path), &bytes, options)
    }

    /// Compiles a script file for the engine's target and stores its artifact in the cache
    /// (`Config::cache`), without running it: a machine of that target then loads the file as a
    /// module hit. With `Config::target` another target, this is how a build machine pre-warms
    /// caches for devices of another architecture. Use the `options` the loading side will use.
    pub fn build_file(
        &self,
        path: impl AsRef<std::path::Path>,
        options: &CheckOptions,
    ) -> Result<LoadStats, Error> {
        let path = path.as_ref();
        let bytes = read_script(path)?;
        self.loader()
            .build_artifact(&path.display().to_string(), &bytes, options)
    }

    /// Runs only the front end: the compile errors `load_bytes` would report.
    pub fn check_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        options: &CheckOptions,
    ) -> Result<(), Error> {
        let (file, diagnostics) = kiln_lang::source_from_bytes(name, bytes);
        if !diagnostics.is_empty() {
            return Err(CompileError::new(file, diagnostics).into());
        }
        let hosts = self.loader().host_signatures();
        front_end(&file, &hosts, options, &|_, _| false)
            .0
            .map(|_| ())
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
        self.load_from(name, None, bytes, options)
    }

    fn load_from(
        &self,
        name: &str,
        path: Option<&std::path::Path>,
        bytes: &[u8],
        options: &CheckOptions,
    ) -> Result<Module, Error> {
        let loader = self.loader();
        let live = Arc::new(AtomicUsize::new(0));
        let built = loader.build(name, bytes, options, None, 0, &live)?;
        let mut generation = built.generation;
        if let Some(write) = &built.write {
            let mut cache = std::mem::take(&mut generation.stats.cache);
            loader.write_artifact(&generation, write, &mut cache);
            generation.stats.cache = cache;
        }
        let origin = Origin {
            name: name.to_string(),
            path: path.map(std::path::Path::to_path_buf),
            options: options.clone(),
        };
        Ok(Module::new(
            self.shared.clone(),
            self.hosts.clone(),
            origin,
            generation,
            live,
        ))
    }
}

/// The parts of an engine a load or reload uses: its shared state and the host functions the
/// module links against.
pub(crate) struct Loader<'a> {
    pub shared: &'a Arc<EngineShared>,
    pub hosts: &'a [Arc<HostFunc>],
}

/// A generation built by [`Loader::build`], not yet current.
pub(crate) struct Built {
    pub generation: Generation,
    /// Where to store the generation's artifact once it is current, if the cache should learn
    /// it.
    pub write: Option<PendingWrite>,
    pub globals: GlobalChanges,
    /// Function bodies the previous generation had were not parsed again.
    pub incremental: bool,
}

pub(crate) struct PendingWrite {
    module_key: [u8; 32],
    pointer: [u8; 32],
}

/// A module's functions compiled (or reused), before linking.
struct CompiledSource {
    file: Arc<SourceFile>,
    functions: Vec<NewFunction>,
    globals: Vec<GlobalDef>,
    stats: LoadStats,
    incremental: bool,
    outline: SourceOutline,
}

/// A function of a generation being built, before linking.
struct NewFunction {
    meta: FunctionMeta,
    code: Option<Arc<CompiledFunction>>,
    key: Option<[u8; 32]>,
}

impl Loader<'_> {
    fn host_signatures(&self) -> Vec<HostSignature> {
        self.hosts
            .iter()
            .map(|h| HostSignature {
                name: h.name.clone(),
                sig: h.sig.clone(),
            })
            .collect()
    }

    /// Builds a generation of module `name` from `bytes`.
    ///
    /// With a `previous` generation (a reload), function items whose text is unchanged are not
    /// parsed again when the program's interface is unchanged too: their code is relinked.
    /// Otherwise the whole program is checked and functions are matched by cache key.
    pub(crate) fn build(
        &self,
        name: &str,
        bytes: &[u8],
        options: &CheckOptions,
        previous: Option<&Generation>,
        id: u64,
        live: &Arc<AtomicUsize>,
    ) -> Result<Built, Error> {
        let start = Instant::now();
        let shared = &**self.shared;
        shared.check_source_size(bytes.len())?;
        if shared.config.target != Target::Host {
            return Err(Error::Config(format!(
                "this engine compiles for {}; it can build cache artifacts for it, not run scripts",
                shared.config.target
            )));
        }
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
                    let (mut generation, globals) = {
                        let module = decode_module(&artifact.artifact(), module_key)
                            .map_err(Miss::Corrupt)?;
                        report.module_hit = true;
                        report.hits = module.functions.len();
                        let file =
                            SourceFile::new(name, String::from_utf8_lossy(bytes).into_owned());
                        let stats = LoadStats {
                            functions: module.functions.len(),
                            cache: std::mem::take(&mut report),
                            ..LoadStats::default()
                        };
                        // The code is linked straight from the mapped artifact, which lives until then.
                        let codes: Vec<_> = module.functions.iter().map(|c| c.as_code()).collect();
                        let functions = module
                            .metas
                            .into_iter()
                            .zip(&module.functions)
                            .map(|(meta, c)| NewFunction {
                                meta,
                                code: None,
                                key: Some(c.key),
                            })
                            .collect();
                        // Cached code that does not link is one more corrupt entry: recompile.
                        self.instantiate(
                            file,
                            &codes,
                            functions,
                            module.globals,
                            stats,
                            previous,
                            id,
                            live,
                        )
                        .map_err(|e| Miss::Corrupt(e.to_string()))?
                    };
                    generation.artifact = Some((artifact, *module_key));
                    generation.stats.total = start.elapsed();
                    Ok((generation, globals))
                });
            match cached {
                Ok((generation, globals)) => {
                    return Ok(Built {
                        generation,
                        write: None,
                        globals,
                        incremental: false,
                    });
                }
                Err(miss) => {
                    report = CacheStats {
                        keys_used: vec![*module_key],
                        ..CacheStats::default()
                    };
                    report.miss(format!("module miss: {miss}"), &miss);
                }
            }
        }

        let compiled =
            self.compile_source(name, bytes, options, previous, &cache, &keys, report)?;
        let codes: Vec<Arc<CompiledFunction>> = compiled
            .functions
            .iter()
            .filter_map(|f| f.code.clone())
            .collect();
        let code_refs: Vec<_> = codes.iter().map(|c| c.as_code()).collect();
        let (mut generation, globals) = self.instantiate(
            compiled.file,
            &code_refs,
            compiled.functions,
            compiled.globals,
            compiled.stats,
            previous,
            id,
            live,
        )?;
        generation.outline = OnceLock::from(Some(compiled.outline));
        generation.stats.total = start.elapsed();
        Ok(Built {
            generation,
            write: keys.map(|(module_key, pointer)| PendingWrite {
                module_key,
                pointer,
            }),
            globals,
            incremental: compiled.incremental,
        })
    }

    /// The front end and the compile of a load: every function's code, compiled or reused
    /// (see [`Loader::build`]), not yet linked.
    #[allow(clippy::too_many_arguments)]
    fn compile_source(
        &self,
        name: &str,
        bytes: &[u8],
        options: &CheckOptions,
        previous: Option<&Generation>,
        cache: &Option<ModuleCache>,
        keys: &Option<([u8; 32], [u8; 32])>,
        mut report: CacheStats,
    ) -> Result<CompiledSource, Error> {
        let started = Instant::now();
        let shared = &**self.shared;
        let fingerprint = &shared.fingerprint;
        let hosts = self.host_signatures();
        let (file, diagnostics) = kiln_lang::source_from_bytes(name, bytes);
        if !diagnostics.is_empty() {
            return Err(CompileError::new(file, diagnostics).into());
        }
        // Reusable code. By name: the previous generation's functions whose item text is
        // unchanged are not even parsed. By key: the previous generation (a reload) or the
        // previous version of this file in the cache (a load), then whatever this engine
        // compiled for other modules.
        let previous_code = previous.map(Generation::reusable_code).unwrap_or_default();
        let outline = previous.and_then(|p| p.outline(&hosts, options));
        let unchanged = |fname: &str, text: &str| {
            let Some((p, outline)) = previous.zip(outline) else {
                return false;
            };
            let same_text = outline.items.get(fname).is_some_and(|span| {
                p.file.text().get(span.start as usize..span.end as usize) == Some(text)
            });
            same_text
                && p.function(fname)
                    .is_some_and(|(i, _)| matches!(previous_code.get(i), Some(Some(_))))
        };
        let (mut program, parse, check) = front_end(&file, &hosts, options, &unchanged);
        let mut timings = (parse, check);
        if let Some(outline) = outline {
            // An edited function that was inlined lives on in its callers' code: parse again,
            // reusing no function whose text names one (every caller does).
            let edited_inlined: Vec<String> = program
                .as_ref()
                .map(|p| {
                    p.functions
                        .iter()
                        .filter(|f| !f.reused && outline.inlined.contains(&f.name))
                        .map(|f| f.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            if !edited_inlined.is_empty() {
                let names_none = |text: &str| !edited_inlined.iter().any(|n| text.contains(n));
                let (again, parse, check) = front_end(&file, &hosts, options, &|name, text| {
                    names_none(text) && unchanged(name, text)
                });
                program = again;
                timings = (timings.0 + parse, timings.1 + check);
            }
            let sound = program
                .as_ref()
                .is_ok_and(|p| p.interface == outline.interface);
            if !sound {
                // Reused bodies were checked against the old interface, or an error may hide in
                // one: check everything.
                let (full, parse, check) = front_end(&file, &hosts, options, &|_, _| false);
                program = full;
                timings = (timings.0 + parse, timings.1 + check);
            }
        }
        let program = program?;
        let config = &shared.config;
        if program.functions.len() > config.max_functions {
            return Err(Error::Limit(format!(
                "the module defines {} functions; this engine accepts at most {} \
                 (Config::max_functions)",
                program.functions.len(),
                config.max_functions
            )));
        }
        let deadline = config.compile_time_limit.map(|limit| started + limit);
        check_deadline(deadline, config)?;
        let parsed = Instant::now();

        let carried = |i: usize| -> Option<CompiledOne> {
            let f = &program.functions[i];
            let (p, outline) = (previous?, outline?);
            let (old_index, old) = p.function(&f.name)?;
            let ReusableCode { code, key } = previous_code.get(old_index)?.clone()?;
            let delta = i64::from(f.item.start) - i64::from(outline.items.get(&f.name)?.start);
            let shift = |s: Span| {
                let at = |x: u32| (i64::from(x) + delta) as u32;
                Span::new(at(s.start), at(s.end))
            };
            Some(CompiledOne {
                code,
                sites: old.meta.sites.iter().map(|&s| shift(s)).collect(),
                key,
                reused: true,
            })
        };
        let by_key: HashMap<[u8; 32], Arc<CompiledFunction>> = match (previous, &cache, &keys) {
            (Some(_), _, _) => previous_code
                .iter()
                .flatten()
                .filter_map(|r| Some((r.key?, r.code.clone())))
                .collect(),
            (None, Some(cache), Some((_, pointer))) => cache
                .previous_functions(fingerprint, pointer)
                .into_iter()
                .map(|(k, c)| (k, Arc::new(c)))
                .collect(),
            _ => HashMap::new(),
        };
        let reuse = |key: &[u8; 32]| by_key.get(key).cloned().or_else(|| shared.compiled(key));
        let keyed = (cache.is_some() || previous.is_some()).then_some(fingerprint);
        let compiled = compile_program(
            &shared.isa,
            keyed,
            &program,
            &hosts,
            &carried,
            &reuse,
            deadline,
        )
        .map_err(|e| match e {
            Error::Limit(_) => check_deadline(deadline, config).err().unwrap_or(e),
            other => other,
        })?;
        let compiled_at = Instant::now();
        if cache.is_some() {
            shared.remember(compiled.functions.iter().filter(|f| !f.reused));
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
        report.hits = compiled.reused;
        report.compiled = program.functions.len() - compiled.reused;
        let incremental = program.functions.iter().any(|f| f.reused);
        let functions: Vec<NewFunction> = program
            .functions
            .iter()
            .zip(&compiled.functions)
            .map(|(f, c)| NewFunction {
                meta: FunctionMeta {
                    name: f.name.clone(),
                    sig: f.sig.clone(),
                    span: f.span,
                    sites: c.sites.clone(),
                },
                code: Some(c.code.clone()),
                key: c.key,
            })
            .collect();
        let stats = LoadStats {
            functions: functions.len(),
            parse: timings.0,
            check: timings.1,
            lower: compiled.lower,
            codegen: compiled.codegen,
            compile_wall: compiled_at - parsed,
            link: Duration::ZERO,
            total: Duration::ZERO,
            cache: report,
        };
        // A reused body is unchanged, and so is whether it is inlined.
        let was_inlined =
            |f: &kiln_lang::program::Function| outline.is_some_and(|o| o.inlined.contains(&f.name));
        let outline = SourceOutline {
            items: program
                .functions
                .iter()
                .map(|f| (f.name.clone(), f.item))
                .collect(),
            inlined: program
                .functions
                .iter()
                .filter(|f| {
                    if f.reused {
                        was_inlined(f)
                    } else {
                        inlined_in_callers(f)
                    }
                })
                .map(|f| f.name.clone())
                .collect(),
            interface: program.interface.clone(),
        };
        Ok(CompiledSource {
            file: program.file.clone(),
            functions,
            globals,
            stats,
            incremental,
            outline,
        })
    }

    /// Stores a generation's artifact in the cache; a failure is a warning in `report`.
    pub(crate) fn write_artifact(
        &self,
        generation: &Generation,
        write: &PendingWrite,
        report: &mut CacheStats,
    ) {
        let functions = generation
            .functions
            .iter()
            .map(|f| (f.key.as_ref(), f.code.as_deref(), &f.meta));
        let globals: Vec<GlobalDef> = generation
            .globals
            .iter()
            .map(|g| GlobalDef {
                name: g.name.clone(),
                ty: g.ty,
                init: g.init,
            })
            .collect();
        self.store_artifact(functions, &globals, write, report);
    }

    /// Encodes and stores a module artifact; a failure is a warning in `report`. Functions
    /// without code or key (a generation linked straight from an artifact) mean nothing to
    /// store.
    fn store_artifact<'f>(
        &self,
        functions: impl Iterator<
            Item = (
                Option<&'f [u8; 32]>,
                Option<&'f CompiledFunction>,
                &'f FunctionMeta,
            ),
        >,
        globals: &[GlobalDef],
        write: &PendingWrite,
        report: &mut CacheStats,
    ) {
        let Some(cache) = self.shared.config.cache.clone().map(ModuleCache::new) else {
            return;
        };
        let entries: Option<Vec<_>> = functions
            .map(|(key, code, meta)| Some((key?, code?, meta)))
            .collect();
        let Some(entries) = entries else {
            return;
        };
        let written = encode_module(
            &self.shared.fingerprint,
            &write.module_key,
            &entries,
            globals,
        )
        .and_then(|bytes| cache.store(&write.module_key, &write.pointer, &bytes));
        match written {
            Ok(()) => report.keys_used.push(write.pointer),
            Err(why) => report.warn(format!("could not write the cache: {why}")),
        }
    }

    /// Compiles a module for the engine's target and stores its artifact in the cache, without
    /// linking or running it: what pre-warms a cache for machines of another kind.
    pub(crate) fn build_artifact(
        &self,
        name: &str,
        bytes: &[u8],
        options: &CheckOptions,
    ) -> Result<LoadStats, Error> {
        let start = Instant::now();
        let shared = &**self.shared;
        let Some(store) = shared.config.cache.clone() else {
            return Err(Error::Config(
                "building an artifact needs a cache to store it in (Config::cache)".into(),
            ));
        };
        shared.check_source_size(bytes.len())?;
        let cache = ModuleCache::new(store);
        let fingerprint = &shared.fingerprint;
        let hosts = self.host_signatures();
        let write = PendingWrite {
            module_key: module_key(fingerprint, bytes, &hosts, options),
            pointer: pointer_key(fingerprint, name),
        };
        let mut report = CacheStats {
            keys_used: vec![write.module_key],
            ..CacheStats::default()
        };
        if cache.artifact(fingerprint, &write.module_key).is_ok() {
            // Verified and in place: nothing to build.
            report.module_hit = true;
            return Ok(LoadStats {
                cache: report,
                total: start.elapsed(),
                ..LoadStats::default()
            });
        }
        let keys = Some((write.module_key, write.pointer));
        let compiled =
            self.compile_source(name, bytes, options, None, &Some(cache), &keys, report)?;
        let mut stats = compiled.stats;
        let functions = compiled
            .functions
            .iter()
            .map(|f| (f.key.as_ref(), f.code.as_deref(), &f.meta));
        self.store_artifact(functions, &compiled.globals, &write, &mut stats.cache);
        if let Some(warning) = &stats.cache.warning {
            return Err(Error::Io {
                path: name.to_string(),
                message: warning.clone(),
            });
        }
        stats.total = start.elapsed();
        Ok(stats)
    }

    /// Links compiled functions into a generation. Globals come from `previous` where it has
    /// one of the same name and type; the others get fresh storage set to their initializers.
    #[allow(clippy::too_many_arguments)]
    fn instantiate(
        &self,
        file: Arc<SourceFile>,
        codes: &[CodeRef<'_>],
        functions: Vec<NewFunction>,
        globals: Vec<GlobalDef>,
        mut stats: LoadStats,
        previous: Option<&Generation>,
        id: u64,
        live: &Arc<AtomicUsize>,
    ) -> Result<(Generation, GlobalChanges), Error> {
        let link_start = Instant::now();
        let mut changes = GlobalChanges::default();
        let mut slots = Vec::with_capacity(globals.len());
        for g in globals {
            let old = previous.and_then(|p| p.global(&g.name));
            let storage = match old {
                Some(old) if old.ty == g.ty => {
                    changes.kept.push(g.name.clone());
                    old.storage.clone()
                }
                _ => {
                    if let Some(old) = old {
                        changes.reinitialized.push(g.name.clone());
                        changes.warnings.push(format!(
                            "global `{}` changed type from {} to {}; it was re-initialized",
                            g.name, old.ty, g.ty
                        ));
                    } else if previous.is_some() {
                        changes.added.push(g.name.clone());
                    }
                    new_global_storage(g.ty, g.init)
                }
            };
            slots.push(GlobalSlot {
                name: g.name,
                ty: g.ty,
                init: g.init,
                storage,
            });
        }
        if let Some(p) = previous {
            changes.removed = p
                .globals
                .iter()
                .filter(|old| !slots.iter().any(|g| g.name == old.name))
                .map(|old| old.name.clone())
                .collect();
        }
        let inputs: Vec<LinkInput> = codes
            .iter()
            .zip(&functions)
            .map(|(&code, f)| LinkInput {
                name: &f.meta.name,
                code,
            })
            .collect();
        let global_addrs: HashMap<&str, *const u8> = slots
            .iter()
            .map(|g| (g.name.as_str(), g.storage.as_ptr().cast_const()))
            .collect();
        let host_addrs: HashMap<&str, *const u8> = self
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), Arc::as_ptr(h).cast::<u8>()))
            .collect();
        let linked = link(&inputs, &|s| match s {
            Symbol::Global(name) => global_addrs.get(name.as_str()).copied(),
            Symbol::Host(name) => host_addrs.get(name.as_str()).copied(),
            _ => None,
        })
        .map_err(Error::Internal)?;
        drop(inputs);
        live.fetch_add(1, Ordering::Relaxed);
        let functions: Vec<FunctionInfo> = functions
            .into_iter()
            .zip(&linked.addresses)
            .map(|(f, &address)| FunctionInfo {
                meta: f.meta,
                address: address as usize,
                entry: OnceLock::new(),
                code: f.code,
                key: f.key,
            })
            .collect();
        let by_address = functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.address, i))
            .collect();
        let by_name = functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.meta.name.clone(), i))
            .collect();
        stats.link = link_start.elapsed();
        let generation = Generation {
            id,
            file,
            functions,
            by_name,
            by_address,
            globals: slots,
            stats,
            outline: OnceLock::new(),
            artifact: None,
            _hosts: self.hosts.to_vec(),
            _code: linked.memory,
            live: live.clone(),
        };
        Ok((generation, changes))
    }
}

/// Below this many functions per thread, spreading a module's compile over threads costs more
/// than it saves.
const FUNCTIONS_PER_THREAD: usize = 16;

/// One function compiled (or reused) by [`compile_program`].
pub(crate) struct CompiledOne {
    code: Arc<CompiledFunction>,
    sites: Vec<Span>,
    /// The cache key, when compiling was keyed.
    key: Option<[u8; 32]>,
    reused: bool,
}

/// Functions compiled by [`compile_program`], in order, how many were reused, and the time
/// spent lowering and compiling, summed over threads.
struct CompiledProgram {
    functions: Vec<CompiledOne>,
    reused: usize,
    lower: Duration,
    codegen: Duration,
}

/// What one compile thread did: its functions by index, and its time lowering and compiling.
struct ThreadShare {
    functions: Vec<(usize, CompiledOne)>,
    lower: Duration,
    codegen: Duration,
}

/// Runs the front end on `file`; `unchanged` says which function items need not be parsed
/// (see [`kiln_lang::parse`]). Returns the program and the time parsing and checking took.
pub(crate) fn front_end(
    file: &Arc<SourceFile>,
    hosts: &[HostSignature],
    options: &CheckOptions,
    unchanged: &dyn Fn(&str, &str) -> bool,
) -> (Result<Program, Error>, Duration, Duration) {
    let start = Instant::now();
    let parsed = kiln_lang::parse(file, unchanged);
    let parsed_at = Instant::now();
    let program = kiln_lang::check_parsed(parsed, hosts, options)
        .map_err(|diagnostics| CompileError::new(file.clone(), diagnostics).into());
    (program, parsed_at - start, parsed_at.elapsed())
}

/// Lowers every function of `program` and compiles it, spread over the machine's cores.
///
/// A function whose body the front end did not parse (it is unchanged since the previous
/// generation) must be given by `carried`. With a fingerprint, each other function is keyed, and
/// `reuse` may give its code instead of compiling it.
fn compile_program(
    isa: &OwnedTargetIsa,
    fingerprint: Option<&Fingerprint>,
    program: &Program,
    hosts: &[HostSignature],
    carried: &dyn Fn(usize) -> Option<CompiledOne>,
    reuse: &(dyn Fn(&[u8; 32]) -> Option<Arc<CompiledFunction>> + Sync),
    deadline: Option<Instant>,
) -> Result<CompiledProgram, Error> {
    // Only the functions to lower are spread over threads: after a small edit, that is one.
    let (carried_in, to_lower): (Vec<usize>, Vec<usize>) =
        (0..program.functions.len()).partition(|&i| program.functions[i].reused);
    let mut slots: Vec<Option<CompiledOne>> = (0..program.functions.len()).map(|_| None).collect();
    for i in carried_in {
        let f = carried(i).ok_or_else(|| {
            Error::Internal(format!(
                "the body of `{}` was not parsed, but its code is gone",
                program.functions[i].name
            ))
        })?;
        slots[i] = Some(f);
    }
    let n = to_lower.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(n.div_ceil(FUNCTIONS_PER_THREAD))
        .max(1);
    // Thread `t` takes functions t, t + threads, ...: neighbours in a file tend to be alike in
    // size, so interleaving balances the work.
    let to_lower = &to_lower;
    let work = |t: usize| -> Result<ThreadShare, String> {
        let (mut fctx, mut ctx) = (FunctionBuilderContext::new(), Context::new());
        let (mut lower, mut codegen) = (Duration::ZERO, Duration::ZERO);
        let mut out = Vec::with_capacity(n / threads + 1);
        for &i in to_lower.iter().skip(t).step_by(threads) {
            let started = Instant::now();
            if deadline.is_some_and(|d| started > d) {
                return Err(OVER_TIME.to_string());
            }
            let lowered = lower_function(&**isa, program, hosts, FuncId(i as u32), &mut fctx);
            // The key must be taken before compiling, which optimizes the CLIF in place.
            let key = fingerprint.map(|fp| function_key(fp, &lowered));
            let sites = lowered.sites.clone();
            let lowered_at = Instant::now();
            lower += lowered_at - started;
            let cached = key.as_ref().and_then(reuse);
            let (code, reused) = match cached {
                // Same key: same code, relinked through this lowering's symbol table.
                Some(c) => (
                    Arc::new(CompiledFunction {
                        symbols: lowered.symbols,
                        ..(*c).clone()
                    }),
                    true,
                ),
                None => (Arc::new(compile(&**isa, lowered, &mut ctx)?), false),
            };
            codegen += lowered_at.elapsed();
            out.push((
                i,
                CompiledOne {
                    code,
                    sites,
                    key,
                    reused,
                },
            ));
        }
        Ok(ThreadShare {
            functions: out,
            lower,
            codegen,
        })
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
        .map_err(|e| match e.as_str() {
            OVER_TIME => Error::Limit(e),
            _ => Error::Internal(e),
        })?;
    let lower = parts.iter().map(|p| p.lower).sum();
    let codegen = parts.iter().map(|p| p.codegen).sum();
    for (i, f) in parts.into_iter().flat_map(|p| p.functions) {
        slots[i] = Some(f);
    }
    let functions: Vec<CompiledOne> = slots
        .into_iter()
        .map(|f| f.expect("every function was carried or lowered"))
        .collect();
    Ok(CompiledProgram {
        reused: functions.iter().filter(|f| f.reused).count(),
        functions,
        lower,
        codegen,
    })
}

/// What a compile thread returns when the compile-time limit passed; the caller words the error.
const OVER_TIME: &str = "over the compile-time limit";

/// Fails once `deadline` has passed.
fn check_deadline(deadline: Option<Instant>, config: &Config) -> Result<(), Error> {
    match (deadline, config.compile_time_limit) {
        (Some(deadline), Some(limit)) if Instant::now() > deadline => Err(Error::Limit(format!(
            "compiling the module took longer than this engine allows ({} ms, \
             Config::compile_time_limit)",
            limit.as_millis()
        ))),
        _ => Ok(()),
    }
}

/// Fresh storage for a global of type `ty`, set to `init`.
fn new_global_storage(ty: VarType, init: Option<Const>) -> Arc<GlobalStorage> {
    let words = match ty {
        VarType::Scalar(_) => 1,
        VarType::Array(a) => (array_bytes(a) / 8) as usize,
    };
    let storage = GlobalStorage::zeroed(words);
    if let (Some(init), VarType::Scalar(ty)) = (init, ty) {
        // SAFETY: a scalar global has one 8-byte word, enough for any scalar, and the storage
        // is not shared yet.
        unsafe { write_scalar(storage.as_ptr(), ty, Value::from(init).to_bits()) };
    }
    Arc::new(storage)
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
    /// Parsing (zero on a module hit).
    pub parse: Duration,
    /// Name resolution and type checking (zero on a module hit).
    pub check: Duration,
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
    pub(crate) fn miss(&mut self, text: String, why: &Miss) {
        if matches!(
            why,
            Miss::Corrupt(_)
                | Miss::FingerprintMismatch
                | Miss::Unavailable(_)
                | Miss::Untrusted(_)
        ) {
            self.warn(format!("{text}; recompiling"));
        }
        self.misses.push(text);
    }

    pub(crate) fn warn(&mut self, text: String) {
        self.warning.get_or_insert(text);
    }
}

/// Converts a checker constant to the value the API shows.
impl From<&Const> for Value {
    fn from(c: &Const) -> Value {
        Value::from(*c)
    }
}
