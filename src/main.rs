//! The `kiln` command: `kiln run FILE` and `kiln check FILE` (LANGUAGE.md section 10), the
//! cache tools, `kiln watch` (hot reload at a fixed call rate) and `kiln repl`.

mod repl;
mod watch;

use clap::{Args, Parser, Subcommand};
use kiln::{CheckOptions, Config, Engine, Error, LoadStats, Target, Value};
use kiln_cache::{CacheStore, DEFAULT_SIZE_CAP, FileStore, Key, MacKey};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "kiln", version, about = "Run and check Kiln scripts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile FILE (through the cache) and call its `fn main()`; exit with the low 8 bits of
    /// its int result.
    Run {
        file: PathBuf,
        #[command(flatten)]
        cache: CacheArgs,
        /// Write one JSON line of load statistics to stderr after the program's output.
        #[arg(long)]
        stats: bool,
        /// Say on stderr why each cache lookup missed.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Report FILE's compile errors without running it.
    Check {
        file: PathBuf,
        /// Check a module meant for embedding: do not require `fn main()`.
        #[arg(long)]
        lib: bool,
    },
    /// Call a function of FILE at a fixed rate, reloading FILE whenever it changes; global
    /// values survive reloads, and a bad edit keeps the last good code running. Ctrl-C stops.
    Watch {
        file: PathBuf,
        /// The function to call; it takes no parameters.
        #[arg(long, value_name = "NAME", default_value = "tick")]
        call: String,
        /// Calls per second.
        #[arg(long, value_name = "N", default_value_t = 60.0)]
        hz: f64,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Read, evaluate, print: define functions and globals, run statements, see values.
    Repl {
        /// A file whose items are loaded first (as with `:load FILE`).
        file: Option<PathBuf>,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Compile FILE for a target (this machine, or another with --target) and store its
    /// artifact in the cache without running it, so that `kiln run FILE` on a machine of that
    /// target starts without compiling.
    Build {
        file: PathBuf,
        /// The target triple, e.g. aarch64-unknown-linux-gnu [default: this machine].
        #[arg(long, value_name = "TRIPLE")]
        target: Option<String>,
        /// The target machines' CPU features, comma-separated, as `kiln target` prints them
        /// there [default: none beyond the triple's baseline].
        #[arg(long, value_name = "LIST", requires = "target")]
        features: Option<String>,
        /// Build a module meant for embedding: do not require `fn main()`.
        #[arg(long)]
        lib: bool,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Print this machine's target as `kiln build` takes it (`--target T --features F`).
    Target,
    /// Inspect or clean the cache of compiled code.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
        /// The cache directory [default: $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else
        /// ~/.cache/kiln].
        #[arg(long, value_name = "DIR", global = true)]
        cache_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct CacheArgs {
    /// The cache directory [default: $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else
    /// ~/.cache/kiln].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile everything and store nothing (also `KILN_CACHE=off`).
    #[arg(long)]
    no_cache: bool,
    /// Sign and check entries with the key in FILE (64 hex digits; `kiln cache new-key` makes
    /// one) instead of the cache directory's own secret (also `KILN_CACHE_KEY`).
    #[arg(long, value_name = "FILE")]
    cache_key: Option<PathBuf>,
    /// Use a cache prepared elsewhere without writing to it: only entries signed with
    /// --cache-key are used (also `KILN_CACHE_READ_ONLY=1`).
    #[arg(long)]
    cache_read_only: bool,
}

#[derive(Subcommand)]
enum CacheAction {
    /// Print the cache directory.
    Path,
    /// Print the number of entries and their size.
    Stats,
    /// Remove least-recently-used entries until the cache fits its size cap.
    Gc {
        /// The cap in bytes [default: 512 MiB].
        #[arg(long, value_name = "BYTES")]
        max_size: Option<u64>,
    },
    /// Remove every entry.
    Clear,
    /// Write a new random cache key to FILE (readable only by you), for `--cache-key`.
    NewKey { file: PathBuf },
}

/// The cache directory: the flag, else `KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else
/// `~/.cache/kiln`.
fn cache_dir(flag: Option<&Path>) -> Option<PathBuf> {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    flag.map(Path::to_path_buf)
        .or_else(|| env("KILN_CACHE_DIR"))
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("kiln")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("kiln")))
}

/// The store `kiln run` uses, or why there is none. A cache that cannot be opened is one
/// warning, never a failure: the script runs without it.
fn open_cache(args: &CacheArgs) -> (Option<Arc<FileStore>>, Option<String>) {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let off = env("KILN_CACHE").is_some_and(|v| v.eq_ignore_ascii_case("off"));
    if args.no_cache || off {
        return (None, None);
    }
    let Some(dir) = cache_dir(args.cache_dir.as_deref()) else {
        return (
            None,
            Some("no cache directory (set KILN_CACHE_DIR); running without the cache".into()),
        );
    };
    let without = |why: String| (None, Some(format!("{why}; running without the cache")));
    let key_file = args
        .cache_key
        .clone()
        .or_else(|| env("KILN_CACHE_KEY").map(PathBuf::from));
    let key = match key_file.as_deref().map(MacKey::read) {
        None => None,
        Some(Ok(key)) => Some(key),
        Some(Err(e)) => {
            let file = key_file.unwrap_or_default();
            return without(format!("cannot read the cache key {}: {e}", file.display()));
        }
    };
    let read_only = args.cache_read_only || env("KILN_CACHE_READ_ONLY").is_some_and(|v| v == "1");
    let opened = match (read_only, key) {
        (true, None) => {
            return without("a read-only cache needs a key (--cache-key or KILN_CACHE_KEY)".into());
        }
        (true, Some(key)) => FileStore::open_read_only(&dir, key),
        (false, Some(key)) => FileStore::open_with_key(&dir, key),
        (false, None) => FileStore::open(&dir),
    };
    match opened {
        Ok(store) => (Some(Arc::new(store)), None),
        Err(e) => without(format!("cannot use the cache: {e}")),
    }
}

/// Scripts may recurse 10,000 calls deep; `main` runs on a thread whose stack is sure to hold
/// that.
const SCRIPT_STACK: usize = 512 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            file,
            cache,
            stats,
            verbose,
        } => run(&file, &cache, stats, verbose),
        Command::Check { file, lib } => check(&file, !lib),
        Command::Watch {
            file,
            call,
            hz,
            cache,
        } => watch::run(&file, &call, hz, &cache),
        Command::Repl { file, cache } => repl::run(file.as_deref(), &cache),
        Command::Build {
            file,
            target,
            features,
            lib,
            cache,
        } => build(&file, target, features.as_deref(), !lib, &cache),
        Command::Target => print_target(),
        Command::Cache { action, cache_dir } => cache_command(&action, cache_dir.as_deref()),
    }
}

fn cache_command(action: &CacheAction, flag: Option<&Path>) -> ExitCode {
    let Some(dir) = cache_dir(flag) else {
        eprintln!("error: no cache directory (set KILN_CACHE_DIR or pass --cache-dir)");
        return ExitCode::FAILURE;
    };
    if let CacheAction::Path = action {
        println!("{}", dir.display());
        return ExitCode::SUCCESS;
    }
    if let CacheAction::NewKey { file } = action {
        return match MacKey::generate().and_then(|key| key.write_new(file)) {
            Ok(()) => {
                println!("{}", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write the key {}: {e}", file.display());
                ExitCode::FAILURE
            }
        };
    }
    let result = FileStore::open(&dir).and_then(|store| match action {
        CacheAction::Path | CacheAction::NewKey { .. } => unreachable!("handled above"),
        CacheAction::Stats => store.stats().map(|s| {
            println!("{}", dir.display());
            println!("entries: {}", s.files);
            println!("bytes: {}", s.bytes);
        }),
        CacheAction::Gc { max_size } => store
            .gc(max_size.unwrap_or(DEFAULT_SIZE_CAP), &HashSet::new())
            .map(|r| {
                println!(
                    "removed {} entries ({} bytes), kept {} ({} bytes)",
                    r.removed.files, r.removed.bytes, r.kept.files, r.kept.bytes
                )
            }),
        CacheAction::Clear => store
            .clear()
            .map(|s| println!("removed {} entries ({} bytes)", s.files, s.bytes)),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn engine(config: Config) -> Result<Engine, ExitCode> {
    Engine::new(config).map_err(|e| report(&e))
}

fn load(engine: &Engine, file: &Path, require_main: bool) -> Result<kiln::Module, Error> {
    engine.load_file_with(file, &CheckOptions { require_main })
}

/// An engine over the cache the command line chose.
struct CachedEngine {
    engine: Engine,
    /// The store, to trim after a session that wrote to it.
    store: Option<Arc<FileStore>>,
    /// Why the cache could not be opened, to print where the command prints warnings.
    open_warning: Option<String>,
}

fn cached_engine(args: &CacheArgs) -> Result<CachedEngine, ExitCode> {
    let (store, open_warning) = open_cache(args);
    let config = Config {
        cache: store.clone().map(|s| s as Arc<dyn CacheStore>),
        ..Config::default()
    };
    Ok(CachedEngine {
        engine: engine(config)?,
        store,
        open_warning,
    })
}

/// Trims the cache to its cap after a session that wrote to it, never evicting the entries in
/// `keys_used` (what the session's modules were loaded from).
fn trim_cache(store: &FileStore, keys_used: &[[u8; 32]]) -> Result<(), kiln_cache::StoreError> {
    let in_use: HashSet<Key> = keys_used.iter().map(|k| Key(*k)).collect();
    store.gc(DEFAULT_SIZE_CAP, &in_use).map(|_| ())
}

fn run(file: &Path, cache: &CacheArgs, show_stats: bool, verbose: bool) -> ExitCode {
    let CachedEngine {
        engine,
        store,
        open_warning,
    } = match cached_engine(cache) {
        Ok(parts) => parts,
        Err(code) => return code,
    };
    let module = load(&engine, file, true);
    if let Some(w) = &open_warning {
        eprintln!("warning: {w}");
    }
    let module = match module {
        Ok(m) => m,
        Err(e) => return report(&e),
    };
    let stats = module.stats();
    if let (None, Some(w)) = (&open_warning, &stats.cache.warning) {
        eprintln!("warning: {w}");
    }
    if verbose {
        for miss in &stats.cache.misses {
            eprintln!("cache: {miss}");
        }
        eprintln!(
            "cache: {} functions from the cache, {} compiled",
            stats.cache.hits, stats.cache.compiled
        );
    }
    if let Some(store) = &store
        && !stats.cache.module_hit
    {
        // Only a run that wrote can have grown the cache past its cap.
        if let Err(e) = trim_cache(store, &stats.cache.keys_used)
            && verbose
        {
            eprintln!("cache: garbage collection failed: {e}");
        }
    }
    let status = match call_main(&module) {
        Ok(Some(Value::Int(status))) => ExitCode::from(status as u8),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    };
    if show_stats {
        eprintln!("{}", stats_json(&stats));
    }
    status
}

/// Calls `main` on a thread whose stack is sure to hold 10,000 script frames. Loading stays on
/// the main thread, whose allocator grows its heap in large steps.
fn call_main(module: &kiln::Module) -> Result<Option<Value>, Error> {
    let module = module.clone();
    std::thread::Builder::new()
        .name("kiln-main".into())
        .stack_size(SCRIPT_STACK)
        .spawn(move || module.call("main", &[]))
        .map_err(|e| Error::Config(format!("cannot start the script thread: {e}")))?
        .join()
        .unwrap_or_else(|_| Err(Error::Internal("the script thread panicked".into())))
}

/// The `--stats` line: what loading did and where its time went, in microseconds.
fn stats_json(stats: &LoadStats) -> String {
    let us = |d: std::time::Duration| d.as_micros();
    format!(
        "{{\"functions\":{},\"compiled\":{},\"cache_hits\":{},\"module_hit\":{},\"parse_us\":{},\
         \"check_us\":{},\"lower_us\":{},\"codegen_us\":{},\"compile_wall_us\":{},\"link_us\":{},\"total_us\":{}}}",
        stats.functions,
        stats.cache.compiled,
        stats.cache.hits,
        stats.cache.module_hit,
        us(stats.parse),
        us(stats.check),
        us(stats.lower),
        us(stats.codegen),
        us(stats.compile_wall),
        us(stats.link),
        us(stats.total),
    )
}

fn check(file: &Path, require_main: bool) -> ExitCode {
    let engine = match engine(Config::default()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let result = kiln_jit::read_script(file).and_then(|bytes| {
        engine.check_bytes(
            &file.display().to_string(),
            &bytes,
            &CheckOptions { require_main },
        )
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

fn build(
    file: &Path,
    triple: Option<String>,
    features: Option<&str>,
    require_main: bool,
    cache: &CacheArgs,
) -> ExitCode {
    let store = match open_cache(cache) {
        (Some(store), _) if store.is_read_only() => {
            eprintln!("error: cannot build into a read-only cache");
            return ExitCode::FAILURE;
        }
        (Some(store), _) => store,
        (None, why) => {
            let why = why.unwrap_or_else(|| "the cache is off (--no-cache or KILN_CACHE)".into());
            eprintln!("error: nothing to build into: {why}");
            return ExitCode::FAILURE;
        }
    };
    let dir = store.dir().to_owned();
    let target = match triple {
        None => Target::Host,
        Some(triple) => Target::Cross {
            triple,
            features: features
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect(),
        },
    };
    let config = Config {
        cache: Some(store),
        target: target.clone(),
        ..Config::default()
    };
    let engine = match engine(config) {
        Ok(e) => e,
        Err(code) => return code,
    };
    match engine.build_file(file, &CheckOptions { require_main }) {
        Ok(stats) if stats.cache.module_hit => {
            eprintln!(
                "{} for {target}: already in {}",
                file.display(),
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(stats) => {
            eprintln!(
                "{} for {target}: {} functions ({} compiled) stored in {} in {:.1} ms",
                file.display(),
                stats.functions,
                stats.cache.compiled,
                dir.display(),
                stats.total.as_secs_f64() * 1e3
            );
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

fn print_target() -> ExitCode {
    match kiln::host_target() {
        Ok(Target::Cross { triple, features }) if features.is_empty() => {
            println!("--target {triple}");
            ExitCode::SUCCESS
        }
        Ok(Target::Cross { triple, features }) => {
            println!("--target {triple} --features {}", features.join(","));
            ExitCode::SUCCESS
        }
        Ok(Target::Host) => unreachable!("host_target names the host"),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints an error the way LANGUAGE.md section 10 says and returns the exit status for it.
fn report(error: &Error) -> ExitCode {
    match error {
        Error::Compile(e) => {
            eprint!("{e}");
            let n = e.diagnostics().len();
            let plural = if n == 1 { "" } else { "s" };
            eprintln!(
                "error: could not compile `{}` ({n} error{plural})",
                e.file().name()
            );
            ExitCode::from(1)
        }
        Error::Runtime(e) => {
            eprintln!("error: {}", e.kind);
            eprintln!("  at {} in fn {}", e.location, e.function);
            if let Some(message) = &e.message {
                eprintln!("  note: {message}");
            }
            ExitCode::from(2)
        }
        other => {
            eprintln!("error: {other}");
            ExitCode::from(1)
        }
    }
}
