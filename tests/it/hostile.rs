//! Hostile inputs through the real binary: each must end in a diagnostic (status 1) or, where
//! the input is a valid program, in a normal run, within a time limit; never in a crash or a hang.

use crate::support::{Run, kiln};
use std::time::Duration;

/// Generous for a debug build on a loaded two-core machine, also under qemu (the aarch64 suite
/// runs 10 MB inputs in ~30 s there); the process is killed after it, so a hang still fails.
const TIME_LIMIT: Duration = Duration::from_secs(180);

/// A nesting depth far beyond any reasonable script, and beyond a naive recursive descent.
const DEEP: usize = 100_000;

/// What an input may lead to.
enum Outcome {
    /// Status 1 with at least one diagnostic, nothing on stdout.
    Diagnostic,
    /// A valid program: `check` is silent and `run` prints this.
    Runs(&'static str),
    /// Valid by the language, but an implementation may refuse it for its size (for instance with
    /// a nesting limit): either a normal run printing this, or a diagnostic.
    RunsOrDiagnostic(&'static str),
}

/// Writes `bytes` to a temporary file and runs both `kiln check` and `kiln run` on it.
fn attack(name: &str, bytes: &[u8], outcome: Outcome) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), bytes).unwrap();
    for sub in ["check", "run"] {
        let run = kiln([sub, name], dir.path(), TIME_LIMIT);
        let context = || {
            format!(
                "kiln {sub} {name}: {}\nstdout: {}\nstderr: {}",
                run.describe(),
                excerpt(&run.stdout),
                excerpt(&run.stderr)
            )
        };
        let diagnostic = |run: &Run| {
            run.code == Some(1)
                && run.stdout.is_empty()
                && run.stderr_text().starts_with("error")
                && run.stderr_text().contains(name)
        };
        let ran = |run: &Run, stdout: &str| {
            run.code == Some(0)
                && run.stderr.is_empty()
                && if sub == "run" {
                    run.stdout == stdout.as_bytes()
                } else {
                    run.stdout.is_empty()
                }
        };
        let ok = match outcome {
            Outcome::Diagnostic => diagnostic(&run),
            Outcome::Runs(stdout) => ran(&run, stdout),
            Outcome::RunsOrDiagnostic(stdout) => ran(&run, stdout) || diagnostic(&run),
        };
        assert!(ok, "{}", context());
    }
}

/// The start and end of a possibly huge output, for failure messages.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.chars().count() <= 1200 {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(600).collect();
    let tail: String = {
        let mut t: Vec<char> = text.chars().rev().take(600).collect();
        t.reverse();
        t.into_iter().collect()
    };
    format!("{head:?} ... {tail:?} ({} bytes)", bytes.len())
}

/// Deterministic pseudo-random bytes, so a failure can be reproduced: any byte at all, or
/// printable ASCII with a line break now and then.
fn garbage(len: usize, seed: u64, printable: bool) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len)
        .map(|_| match printable {
            false => rng.u8(..),
            true if rng.u8(..64) == 0 => b'\n',
            true => rng.u8(b' '..=b'~'),
        })
        .collect()
}

#[test]
fn binary_garbage() {
    attack(
        "garbage.kl",
        &garbage(64 * 1024, 1, false),
        Outcome::Diagnostic,
    );
}

#[test]
fn printable_garbage_of_ten_megabytes() {
    attack(
        "noise.kl",
        &garbage(10 * 1024 * 1024, 2, true),
        Outcome::Diagnostic,
    );
}

#[test]
fn garbage_on_one_long_line() {
    // Diagnostics show their source line. When that line is a megabyte long, showing it whole
    // for each of hundreds of errors turns a 1 MB input into hundreds of megabytes of output
    // (and a 10 MB one into gigabytes, for minutes): the output must stay proportionate.
    let mut bytes: Vec<u8> = garbage(1024 * 1024, 3, true)
        .into_iter()
        .filter(|&b| b != b'\n')
        .collect();
    bytes.push(b'\n');
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("line.kl"), &bytes).unwrap();
    let run = kiln(["check", "line.kl"], dir.path(), TIME_LIMIT);
    assert!(
        run.code == Some(1) && run.stderr.len() < 10 * bytes.len(),
        "kiln check line.kl: {}, {} bytes of diagnostics for a {}-byte file",
        run.describe(),
        run.stderr.len(),
        bytes.len()
    );
    attack("line.kl", &bytes, Outcome::Diagnostic);
}

#[test]
fn invalid_utf8_is_reported_where_it_is() {
    let name = "latin1.kl";
    let bytes = b"fn main() {\n    // caf\xe9 au lait\n    print(1);\n}\n";
    attack(name, bytes, Outcome::Diagnostic);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), bytes).unwrap();
    let run = kiln(["check", name], dir.path(), TIME_LIMIT);
    let stderr = run.stderr_text();
    assert!(stderr.contains("latin1.kl:2:11"), "said {stderr:?}");
}

#[test]
fn ten_megabytes_of_comments_then_main() {
    let mut src = String::with_capacity(10 * 1024 * 1024 + 100);
    while src.len() < 10 * 1024 * 1024 {
        src.push_str("// a comment line that goes on for a while to fill the file up quickly\n");
    }
    src.push_str("/* block\n");
    src.push_str(&"/* nested */ text\n".repeat(10_000));
    src.push_str("*/\nfn main() {\n    print(1);\n}\n");
    attack("comments.kl", src.as_bytes(), Outcome::Runs("1\n"));
}

#[test]
fn ten_megabytes_of_statements_checked() {
    // Front end only: compiling a million statements to machine code is not the point here.
    let mut src = String::from("fn main() {\n    let x = 0;\n");
    while src.len() < 10 * 1024 * 1024 {
        src.push_str("    x = x + 1;\n");
    }
    src.push_str("}\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.kl"), &src).unwrap();
    let run = kiln(["check", "big.kl"], dir.path(), TIME_LIMIT);
    assert_eq!(
        run.code,
        Some(0),
        "{}: {}",
        run.describe(),
        excerpt(&run.stderr)
    );
    assert!(run.stdout.is_empty() && run.stderr.is_empty());
}

#[test]
fn nested_parentheses() {
    let src = format!(
        "fn main() {{\n    print({}1{});\n}}\n",
        "(".repeat(DEEP),
        ")".repeat(DEEP)
    );
    attack(
        "parens.kl",
        src.as_bytes(),
        Outcome::RunsOrDiagnostic("1\n"),
    );
}

#[test]
fn unbalanced_nested_parentheses() {
    let src = format!("fn main() {{\n    print({}1);\n}}\n", "(".repeat(DEEP));
    attack("open_parens.kl", src.as_bytes(), Outcome::Diagnostic);
}

#[test]
fn nested_unary_operators() {
    let src = format!("fn main() {{\n    print({}1);\n}}\n", "-".repeat(DEEP));
    attack("minus.kl", src.as_bytes(), Outcome::RunsOrDiagnostic("1\n"));
}

#[test]
fn nested_blocks() {
    let src = format!(
        "fn main() {{\n{}print(1);{}\n}}\n",
        "{".repeat(DEEP),
        "}".repeat(DEEP)
    );
    attack(
        "blocks.kl",
        src.as_bytes(),
        Outcome::RunsOrDiagnostic("1\n"),
    );
}

#[test]
fn nested_ifs() {
    let src = format!(
        "fn main() {{\n{}print(1);{}\n}}\n",
        "if true {".repeat(DEEP),
        "}".repeat(DEEP)
    );
    attack("ifs.kl", src.as_bytes(), Outcome::RunsOrDiagnostic("1\n"));
}

#[test]
fn long_function() {
    // Every line shadows `x`: a hundred thousand locals in one scope.
    let mut src = String::from("fn main() {\n    let x = 0;\n");
    for _ in 0..100_000 {
        src.push_str("    let x = x + 1;\n");
    }
    src.push_str("    print(x);\n}\n");
    attack("long.kl", src.as_bytes(), Outcome::Runs("100000\n"));
}

#[test]
fn long_operator_chain() {
    let src = format!("fn main() {{\n    print(1{});\n}}\n", "+1".repeat(DEEP));
    attack(
        "chain.kl",
        src.as_bytes(),
        Outcome::RunsOrDiagnostic("100001\n"),
    );
}

#[test]
fn many_errors() {
    // One error per line: every one is reported, and reporting them stays fast.
    let mut src = String::from("fn main() {\n");
    for _ in 0..20_000 {
        src.push_str("    let x: int = true;\n");
    }
    src.push_str("}\n");
    attack("errors.kl", src.as_bytes(), Outcome::Diagnostic);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("errors.kl"), &src).unwrap();
    let run = kiln(["check", "errors.kl"], dir.path(), TIME_LIMIT);
    // Each diagnostic has one location line, ` --> FILE:LINE:COL`.
    let reported = run
        .stderr_text()
        .lines()
        .filter(|l| l.trim_start().starts_with("--> errors.kl:"))
        .count();
    assert_eq!(reported, 20_000, "{}", excerpt(&run.stderr));
}

#[test]
fn many_functions() {
    // Sized for a debug build, where Cranelift compiles well under a thousand functions a second.
    let mut src = String::new();
    for i in 0..5_000 {
        src.push_str(&format!(
            "fn f{i}(a: int) -> int {{\n    return a + {i};\n}}\n"
        ));
    }
    src.push_str("fn main() {\n    print(f4999(1));\n}\n");
    attack("fns.kl", src.as_bytes(), Outcome::Runs("5000\n"));
}
