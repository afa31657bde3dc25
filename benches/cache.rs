//! The persistent function cache: `Engine::load_str` cold, warm (module hit) and after editing
//! one function, on generated programs of 100, 1000 and 10000 functions.
//!
//! `cargo bench --bench cache`. Cases, per size:
//!
//! - `cold_nocache`: `Config::cache = None`, every function compiled (the baseline).
//! - `cold_memory` (100 and 1000 only): a fresh, empty `MemoryStore` per load; every function
//!   compiled, keyed and written to the store.
//! - `cold_file`: a fresh, empty `FileStore` in a new temporary directory per load; what the
//!   first `kiln run` of a script pays.
//! - `warm`: a `FileStore` populated once; every load is a module hit.
//! - `edited`: a `FileStore`; every load sees the same file name with one function's body
//!   different from the previous load's, so it misses the module, reuses every other function
//!   and compiles exactly one (asserted on every measured load).
//!
//! Engines, stores and sources are built outside the measured code (`iter_batched`), and
//! modules are dropped outside it. Before measuring each size the bench prints a `LoadStats`
//! breakdown (medians) to standard error, including the relink cost per function of a warm load.
//!
//! `KILN_CACHE_BENCH_WRITE=DIR cargo bench --bench cache` instead writes the programs the
//! whole-process timings in BENCHMARKS.md use (`DIR/gen_N.kl`, and `DIR/gen_N_edit_K.kl` for
//! K = 0 and 1, the edited variants) and exits.

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use kiln::{Config, Engine, LoadStats, Module};
use kiln_cache::{CacheStore, FileStore, MemoryStore};
use kiln_lang::generate::{Shape, realistic_program};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// The seed of every generated program in the benches, so figures compare across runs.
const SEED: u64 = 1;

const SIZES: [usize; 3] = [100, 1000, 10000];

/// The file name every load uses: the edited case relies on it staying the same.
const NAME: &str = "generated.kl";

fn program(functions: usize) -> String {
    realistic_program(
        &Shape {
            functions,
            host_calls: false,
        },
        SEED,
    )
}

/// `text` with one statement inserted at the top of the middle function's body. Every `k` gives
/// a different body of the same length, so the variants differ in that one function only (not
/// even in the source positions of the others).
fn edited(text: &str, k: u64) -> String {
    let starts: Vec<usize> = text.match_indices("\nfn ").map(|(i, _)| i).collect();
    let start = starts[starts.len() / 2];
    let body = start + 1 + text[start + 1..].find('\n').expect("a function body");
    let marker = 10_000_000 + k;
    assert!(marker < 100_000_000, "the marker keeps its width");
    format!(
        "{}\n    let edit_marker = {marker};{}",
        &text[..body],
        &text[body..]
    )
}

fn engine(cache: Option<Arc<dyn CacheStore>>) -> Engine {
    Engine::new(Config {
        cache,
        ..Config::default()
    })
    .expect("engine")
}

fn file_engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FileStore::open(dir.path()).expect("file store");
    (dir, engine(Some(Arc::new(store))))
}

fn load(engine: &Engine, text: &str) -> Module {
    engine.load_str(NAME, black_box(text)).expect("load")
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Prints the medians of `stats`: phases in µs for the whole load, link also per function.
fn print_breakdown(case: &str, size: usize, stats: &[LoadStats]) {
    let phase = |f: fn(&LoadStats) -> Duration| median(stats.iter().map(|s| us(f(s))).collect());
    let functions = stats[0].functions;
    let link = phase(|s| s.link);
    let total = phase(|s| s.total);
    // On a module hit: hashing the source, finding, mapping and verifying the artifact. On a
    // miss: writing the artifact to the store.
    let other = phase(|s| s.total - (s.parse + s.check) - s.compile_wall - s.link);
    eprintln!(
        "cache/{case}/{size}: {functions} functions, compiled {}, hits {}, module_hit {}; \
         medians of {} loads in µs: front end {:.0}, compile wall {:.0}, link {link:.0} \
         ({:.3} per function), other {other:.0}, total {total:.0}",
        stats[0].cache.compiled,
        stats[0].cache.hits,
        stats[0].cache.module_hit,
        stats.len(),
        phase(|s| s.parse + s.check),
        phase(|s| s.compile_wall),
        link / functions as f64,
    );
}

fn write_programs(dir: &str) {
    std::fs::create_dir_all(dir).expect("create the output directory");
    for size in SIZES {
        let text = program(size);
        let path = format!("{dir}/gen_{size}.kl");
        std::fs::write(&path, &text).expect("write a program");
        eprintln!("wrote {path}");
        for k in 0..2 {
            let path = format!("{dir}/gen_{size}_edit_{k}.kl");
            std::fs::write(&path, edited(&text, k)).expect("write a program");
            eprintln!("wrote {path}");
        }
    }
}

fn cache(c: &mut Criterion) {
    if let Some(dir) = std::env::var_os("KILN_CACHE_BENCH_WRITE") {
        write_programs(&dir.to_string_lossy());
        return;
    }
    let nocache = engine(None);
    let mut group = c.benchmark_group("cache");
    for size in SIZES {
        let text = program(size);
        // A cold load of 10000 functions takes ~1.5 s on two cores: few, flat samples.
        let (samples, measure) = match size {
            100 => (20, 3),
            1000 => (10, 4),
            _ => (10, 2),
        };
        group
            .sample_size(samples)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(measure));

        // Warm: populate once, then every load is a module hit.
        let (_warm_dir, warm) = file_engine();
        let first = load(&warm, &text);
        assert_eq!(first.stats().cache.compiled, first.stats().functions);
        drop(first);
        let stats: Vec<LoadStats> = (0..21)
            .map(|_| load(&warm, &text).stats().clone())
            .collect();
        assert!(stats.iter().all(|s| s.cache.module_hit), "warm loads hit");
        print_breakdown("warm", size, &stats);

        // Edited: each load differs from the previous one in one function's body.
        let (_edit_dir, edit) = file_engine();
        let mut k = 0;
        load(&edit, &edited(&text, k));
        let stats: Vec<LoadStats> = (0..if size >= 10000 { 3 } else { 5 })
            .map(|_| {
                k += 1;
                load(&edit, &edited(&text, k)).stats().clone()
            })
            .collect();
        for s in &stats {
            assert!(
                !s.cache.module_hit && s.cache.compiled == 1 && s.cache.hits == s.functions - 1,
                "an edited load compiles exactly one function: {:?}",
                s.cache
            );
        }
        print_breakdown("edited", size, &stats);

        // Cold, for the breakdown (the 10000-function loads are expensive: three).
        let stats: Vec<LoadStats> = (0..if size >= 10000 { 3 } else { 5 })
            .map(|_| {
                let (_dir, engine) = file_engine();
                load(&engine, &text).stats().clone()
            })
            .collect();
        print_breakdown("cold_file", size, &stats);

        group.sampling_mode(SamplingMode::Flat);
        group.bench_with_input(BenchmarkId::new("cold_nocache", size), &text, |b, text| {
            b.iter_with_large_drop(|| load(&nocache, text))
        });
        if size <= 1000 {
            group.bench_with_input(BenchmarkId::new("cold_memory", size), &text, |b, text| {
                b.iter_batched(
                    || engine(Some(Arc::new(MemoryStore::new()))),
                    |engine| {
                        let module = load(&engine, text);
                        (engine, module)
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        group.bench_with_input(BenchmarkId::new("cold_file", size), &text, |b, text| {
            b.iter_batched(
                file_engine,
                |(dir, engine)| {
                    let module = load(&engine, text);
                    (module, engine, dir)
                },
                BatchSize::PerIteration,
            )
        });

        group.sampling_mode(SamplingMode::Auto);
        group.bench_with_input(BenchmarkId::new("warm", size), &text, |b, text| {
            b.iter_with_large_drop(|| load(&warm, text))
        });
        group.bench_with_input(BenchmarkId::new("edited", size), &text, |b, text| {
            b.iter_batched(
                || {
                    k += 1;
                    edited(text, k)
                },
                |source| {
                    let module = load(&edit, &source);
                    // Every measured load is a genuine one-function edit (an integer compare).
                    assert_eq!(module.stats().cache.compiled, 1);
                    module
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
