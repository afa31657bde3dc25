//! Front-end throughput: parsing and checking generated programs of realistic shape.
//!
//! `cargo bench --bench frontend`. Throughput is in source lines, so criterion reports
//! lines per second (its "elem/s").

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln_lang::generate::{Shape, host_sample_signature, realistic_program};
use kiln_lang::{CheckOptions, SourceFile, check, check_parsed, parse};
use std::cell::RefCell;
use std::collections::HashMap;
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
        if functions == 1000 {
            bench_reusing(&mut group, &text, &hosts, &options);
        }
    }
    group.finish();
}

/// A hot reload after one function body was edited: every other body is reused. The `reuse`
/// answer compares each item's text with the text it had before, as a reloading engine does.
/// Throughput is still in lines of the whole program.
fn bench_reusing(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    text: &str,
    hosts: &[kiln_lang::program::HostSignature],
    options: &CheckOptions,
) {
    let before = RefCell::new(HashMap::new());
    let record = |name: &str, item: &str| {
        before
            .borrow_mut()
            .insert(name.to_string(), item.to_string());
        false
    };
    let file = SourceFile::new("generated.kl", text);
    check_parsed(parse(&file, &record), hosts, options).expect("the program checks");
    let before: HashMap<String, String> = before.into_inner();
    let edited = text.replacen(
        "return max(lo, min(x, hi));",
        "return min(hi, max(x, lo));",
        1,
    );
    assert_ne!(edited, text, "the edit must change a body");
    let unchanged = |name: &str, item: &str| before.get(name).is_some_and(|b| b == item);
    let file = SourceFile::new("generated.kl", edited.as_str());
    let program = check_parsed(parse(&file, &unchanged), hosts, options).expect("still checks");
    let parsed_again = program.functions.iter().filter(|f| !f.reused).count();
    assert_eq!(parsed_again, 1, "only the edited function is parsed");
    group.bench_with_input(
        BenchmarkId::new("parse_check_reusing", 1000),
        &edited,
        |b, edited| {
            b.iter(|| {
                let file = SourceFile::new("generated.kl", black_box(edited.as_str()));
                check_parsed(parse(&file, &unchanged), hosts, options).is_ok()
            })
        },
    );
}

criterion_group!(benches, frontend);
criterion_main!(benches);
