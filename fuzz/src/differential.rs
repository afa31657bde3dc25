//! The `differential` target: a seed from the input, the random program it generates, run by
//! the reference interpreter and by the JIT, which must agree exactly on the output and on how
//! `main` ended.
//!
//! The comparison is the one `tests/it/differential.rs` makes (kept the same on purpose: a
//! failure here reproduces there with `kiln_lang::generate::random_program(seed)`).

use kiln_jit::{Config, Engine, Error};
use kiln_lang::generate::{expected_error, random_program};
use kiln_lang::interp::{Interpreter, Limits, NoHost};
use kiln_lang::{CheckOptions, SourceFile, check};
use std::sync::OnceLock;

/// What a run of `main` showed a user: its output and how it ended.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub output: String,
    /// `None` for success, else `KIND at FILE:LINE:COL in fn NAME`.
    pub error: Option<String>,
}

/// The seed an input stands for: its first eight bytes, little-endian, zero-padded.
pub fn seed(data: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = data.len().min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(bytes)
}

pub fn interpret(name: &str, source: &str) -> Outcome {
    let file = SourceFile::new(name, source);
    let options = CheckOptions { require_main: true };
    let program = match check(&file, &[], &options) {
        Ok(p) => p,
        Err(d) => panic!(
            "{name}: generated program does not check:\n{}",
            kiln_lang::render(&file, &d)
        ),
    };
    let main = program.function_named("main").expect("main exists");
    let mut interp = Interpreter::new(&program, Limits::default());
    let mut output = Vec::new();
    let result = interp.call(main, &[], &mut NoHost, &mut output);
    Outcome {
        output: String::from_utf8(output).expect("utf-8 output"),
        error: result.err().map(|e| {
            format!(
                "{} at {} in fn {}",
                e.kind,
                program.file.location(e.span.start),
                program.function(e.function).name
            )
        }),
    }
}

pub fn jit(engine: &Engine, name: &str, source: &str) -> Outcome {
    let options = CheckOptions { require_main: true };
    let module = engine
        .load_bytes(name, source.as_bytes(), &options)
        .unwrap_or_else(|e| panic!("{name}: JIT failed to load: {e}"));
    let result = module.call("main", &[]);
    let output = module.take_output();
    let error = match result {
        Ok(_) => None,
        Err(Error::Runtime(e)) => {
            Some(format!("{} at {} in fn {}", e.kind, e.location, e.function))
        }
        Err(e) => panic!("{name}: unexpected error {e}"),
    };
    Outcome { output, error }
}

/// One engine for the whole run, as the test has: what it compiles once (entry stubs) stays.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(Config {
            capture_output: true,
            ..Config::default()
        })
        .expect("engine")
    })
}

/// Generates the program of `seed`, runs it both ways and panics if they disagree.
pub fn compare(seed: u64) {
    let engine = engine();
    // Both back ends may recurse 10,000 script calls deep; the interpreter uses Rust recursion.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(1 << 30)
            .spawn_scoped(scope, move || {
                let name = format!("random_{seed}.kl");
                let source = random_program(seed);
                let expected = interpret(&name, &source);
                let actual = jit(engine, &name, &source);
                assert_eq!(
                    actual, expected,
                    "seed {seed}: JIT (left) and interpreter (right) disagree"
                );
                if let Some(kind) = expected_error(&source) {
                    let error = expected.error.as_deref().unwrap_or("no error");
                    assert!(
                        error.starts_with(kind),
                        "seed {seed}: meant to end with {kind}, got {error}"
                    );
                }
            })
            .expect("spawn")
            .join()
            // The thread's panic has already aborted the process through libFuzzer's panic
            // hook; this is for runs without it.
            .expect("differential thread");
    });
}

pub fn run(data: &[u8]) {
    compare(seed(data));
}
