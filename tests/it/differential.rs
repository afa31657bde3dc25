//! The JIT against the reference interpreter on seeded random programs: same output, same
//! runtime errors (kind, function and `FILE:LINE:COL`).
//!
//! `KILN_DIFF_SEEDS=N` runs N programs instead of the default; a failure names the seed, and
//! `kiln_lang::generate::random_program(seed)` reproduces it.

use kiln::{CheckOptions, Config, Engine, Error};
use kiln_lang::generate::{expected_error, random_program};
use kiln_lang::interp::{Interpreter, Limits, NoHost};
use kiln_lang::{SourceFile, check};

/// What a run of `main` showed a user: its output and how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    output: String,
    /// `None` for success, else `KIND at FILE:LINE:COL in fn NAME`.
    error: Option<String>,
}

fn interpret(name: &str, source: &str) -> Outcome {
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

fn jit(engine: &Engine, name: &str, source: &str) -> Outcome {
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

#[test]
fn jit_agrees_with_interpreter_on_random_programs() {
    let seeds: u64 = std::env::var("KILN_DIFF_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    // Both back ends may recurse 10,000 script calls deep; the interpreter uses Rust recursion.
    let run = std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || {
            let engine = Engine::new(Config {
                capture_output: true,
                ..Config::default()
            })
            .expect("engine");
            let mut with_errors = 0;
            for seed in 0..seeds {
                let name = format!("random_{seed}.kl");
                let source = random_program(seed);
                let expected = interpret(&name, &source);
                let actual = jit(&engine, &name, &source);
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
                    with_errors += 1;
                }
            }
            with_errors
        })
        .expect("spawn");
    let with_errors = run.join().expect("differential test thread");
    // The generator is meant to end about one program in eight with a runtime error; make sure
    // the comparison of errors is actually exercised.
    assert!(
        with_errors > 0,
        "no random program ended with a runtime error"
    );
}
