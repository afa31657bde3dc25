//! Front-end throughput: parsing and checking generated programs of realistic shape.
//!
//! `cargo bench --bench frontend`. Throughput is in source lines, so criterion reports
//! lines per second (its "elem/s").

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln_lang::generate::{Shape, host_sample_signature, realistic_program};
use kiln_lang::{CheckOptions, SourceFile, check};
use std::hint::black_box;
use std::time::Duration;

/// The seed of every generated program in the benches, so figures compare across runs.
const SEED: u64 = 1;

fn frontend(c: &mut Criterion) {
    let hosts = [host_sample_signature()];
    let options = CheckOptions { require_main: true };
    let mut group = c.benchmark_group("frontend");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for functions in [100, 1000] {
        let text = realistic_program(
            &Shape {
                functions,
                host_calls: true,
            },
            SEED,
        );
        let lines = text.lines().count() as u64;
        eprintln!("frontend/{functions}: {lines} lines, {} bytes", text.len());
        // Check once outside the measurement so a generator or checker bug fails loudly.
        let file = SourceFile::new("generated.kl", text.as_str());
        if let Err(diagnostics) = check(&file, &hosts, &options) {
            panic!("generated program does not check: {diagnostics:?}");
        }
        group.throughput(Throughput::Elements(lines));
        group.bench_with_input(
            BenchmarkId::new("parse_check", functions),
            &text,
            |b, text| {
                b.iter(|| {
                    // Building the `SourceFile` (copying the text, finding line starts) is part
                    // of what every load pays, so it is measured too.
                    let file = SourceFile::new("generated.kl", black_box(text.as_str()));
                    check(&file, &hosts, &options).is_ok()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, frontend);
criterion_main!(benches);
