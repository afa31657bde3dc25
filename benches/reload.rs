//! Hot reload latency: `Module::reload` of a generated program after one function was edited,
//! from reading the file to the new generation being active (LANGUAGE.md section 9).
//!
//! `cargo bench --bench reload`. Cases, per size (100, 1000 and 10000 functions):
//!
//! - `edit_one`: a module loaded from a file with a `FileStore` cache (what `kiln watch`
//!   does); before each measured reload the file gets one function body different from every
//!   earlier version, so exactly one function is compiled (asserted). The measured time is the
//!   reload's `active` figure: reading the file, parsing and checking what changed, compiling,
//!   relinking every function and swapping the generation. Writing the new artifact to the
//!   cache happens after the swap and is reported separately.
//!
//! Before measuring each size the bench prints the median breakdown of the reports to standard
//! error.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kiln::{Config, Engine, ReloadReport};
use kiln_cache::FileStore;
use kiln_lang::generate::{Shape, realistic_program};
use std::sync::Arc;
use std::time::Duration;

/// The seed of every generated program in the benches, so figures compare across runs.
const SEED: u64 = 1;

const SIZES: [usize; 3] = [100, 1000, 10000];

/// `text` with a statement setting `k` inserted at the top of the middle function's body: every
/// `k` gives a body no earlier reload saw, and the functions after it move by a few bytes.
fn edited(text: &str, k: u64) -> String {
    let starts: Vec<usize> = text.match_indices("\nfn ").map(|(i, _)| i).collect();
    let start = starts[starts.len() / 2];
    let body = start + 1 + text[start + 1..].find('\n').expect("a function body");
    format!(
        "{}\n    let edit_marker = {k};{}",
        &text[..body],
        &text[body..]
    )
}

struct Session {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    text: String,
    module: kiln::Module,
    edits: u64,
}

impl Session {
    fn new(functions: usize) -> Session {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = FileStore::open(dir.path().join("cache")).expect("file store");
        let engine = Engine::new(Config {
            cache: Some(Arc::new(store)),
            ..Config::default()
        })
        .expect("engine");
        let text = realistic_program(
            &Shape {
                functions,
                host_calls: false,
            },
            SEED,
        );
        let path = dir.path().join("generated.kl");
        std::fs::write(&path, &text).expect("write the script");
        let module = engine.load_file(&path).expect("the program loads");
        Session {
            _dir: dir,
            path,
            text,
            module,
            edits: 0,
        }
    }

    /// Edits one function in the file and reloads.
    fn edit_and_reload(&mut self) -> ReloadReport {
        self.edits += 1;
        std::fs::write(&self.path, edited(&self.text, self.edits)).expect("write the edit");
        let report = self.module.reload().expect("the edit reloads");
        assert_eq!(report.compiled(), 1, "exactly the edited function compiles");
        report
    }
}

fn median(mut values: Vec<Duration>) -> f64 {
    values.sort();
    values[values.len() / 2].as_secs_f64() * 1e3
}

fn breakdown(functions: usize, reports: &[ReloadReport]) {
    let phase = |f: fn(&ReloadReport) -> Duration| median(reports.iter().map(f).collect());
    eprintln!(
        "reload/{functions} (median of {} reloads, ms): active {:.2} = parse {:.2}, check {:.2}, \
         lower {:.2}, codegen {:.2}, link {:.2}, swap {:.3}, other {:.2}; then cache write {:.2}",
        reports.len(),
        phase(|r| r.active),
        phase(|r| r.stats.parse),
        phase(|r| r.stats.check),
        phase(|r| r.stats.lower),
        phase(|r| r.stats.codegen),
        phase(|r| r.stats.link),
        phase(|r| r.swap),
        phase(|r| r.active.saturating_sub(
            r.stats.parse + r.stats.check + r.stats.compile_wall + r.stats.link + r.swap
        )),
        phase(|r| r.cache_write),
    );
}

fn reload(c: &mut Criterion) {
    let mut group = c.benchmark_group("reload");
    group.sample_size(30).warm_up_time(Duration::from_secs(1));
    for functions in SIZES {
        let mut session = Session::new(functions);
        let reports: Vec<ReloadReport> = (0..31).map(|_| session.edit_and_reload()).collect();
        breakdown(functions, &reports);
        group.bench_function(BenchmarkId::new("edit_one", functions), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| session.edit_and_reload().active).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, reload);
criterion_main!(benches);
