//! Whole-module compile throughput: `Engine::load_str` (front end, lowering, Cranelift codegen,
//! linking) on generated programs of 10, 100 and 1000 functions.
//!
//! `cargo bench --bench compile`. Criterion reports functions per second ("elem/s"), counting
//! every compiled function (the generated ones plus `main` and the prelude's utilities). Before
//! measuring each size, the bench prints the `LoadStats` breakdown per function (median of a few
//! loads) to standard error.
//!
//! It also keeps `benches/programs/generated_1000.kl` (timed with `kiln run` in BENCHMARKS.md)
//! in step with the generator: it warns when the file differs, and rewrites it when run with
//! `KILN_BLESS=1`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln::{Config, Engine, LoadStats};
use kiln_lang::generate::{HOST_SAMPLE, Shape, host_sample, realistic_program};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

/// The seed of every generated program in the benches, so figures compare across runs.
const SEED: u64 = 1;

/// Loads used for the printed breakdown.
const BREAKDOWN_LOADS: usize = 5;

fn micros_per_function(d: Duration, functions: usize) -> f64 {
    d.as_secs_f64() * 1e6 / functions as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Prints the median per-function cost of each load phase.
fn print_breakdown(engine: &Engine, size: usize, text: &str) -> usize {
    let stats: Vec<LoadStats> = (0..BREAKDOWN_LOADS)
        .map(|_| {
            engine
                .load_str("generated.kl", text)
                .expect("load")
                .stats()
                .clone()
        })
        .collect();
    let functions = stats[0].functions;
    let phase = |f: fn(&LoadStats) -> Duration| {
        median(
            stats
                .iter()
                .map(|s| micros_per_function(f(s), functions))
                .collect(),
        )
    };
    let front_end = phase(|s| s.parse + s.check);
    let lower = phase(|s| s.lower);
    let codegen = phase(|s| s.codegen);
    let link = phase(|s| s.link);
    // Lowering and codegen run on every core at once: their times are CPU time summed over
    // threads, and the wall-clock total uses the parallel phase's wall time instead.
    let total = phase(|s| (s.parse + s.check) + s.compile_wall + s.link);
    eprintln!(
        "compile/{size}: {functions} functions; µs per function (median of {BREAKDOWN_LOADS} \
         loads): front end {front_end:.2}, lower {lower:.2} (CPU), codegen {codegen:.2} (CPU), \
         link {link:.2}, total {total:.2} (wall)"
    );
    functions
}

/// Warns when the checked-in generated program drifted from the generator; rewrites it under
/// `KILN_BLESS=1`.
fn sync_generated_program() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/programs/generated_1000.kl");
    let text = realistic_program(
        &Shape {
            functions: 1000,
            host_calls: false,
        },
        SEED,
    );
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == text {
        return;
    }
    if std::env::var_os("KILN_BLESS").is_some() {
        std::fs::write(&path, text).expect("write generated_1000.kl");
        eprintln!("wrote {}", path.display());
    } else {
        eprintln!(
            "warning: {} differs from realistic_program(1000 functions, seed {SEED}); \
             rerun with KILN_BLESS=1 to rewrite it",
            path.display()
        );
    }
}

fn compile(c: &mut Criterion) {
    sync_generated_program();
    let mut engine = Engine::new(Config::default()).expect("engine");
    engine.register(HOST_SAMPLE, host_sample).expect("register");
    let mut group = c.benchmark_group("compile");
    for size in [10, 100, 1000] {
        let text = realistic_program(
            &Shape {
                functions: size,
                host_calls: true,
            },
            SEED,
        );
        let functions = print_breakdown(&engine, size, &text);
        group.throughput(Throughput::Elements(functions as u64));
        // One load of 1000 functions takes tens of milliseconds: ten samples are plenty.
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(if size >= 1000 { 8 } else { 3 }));
        group.bench_with_input(BenchmarkId::new("load_str", size), &text, |b, text| {
            // Freeing the module's code memory is not part of compiling.
            b.iter_with_large_drop(|| {
                engine
                    .load_str("generated.kl", black_box(text))
                    .expect("load")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
