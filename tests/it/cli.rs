//! The `kiln` command's behaviour around files it cannot read and arguments it cannot use;
//! everything about running scripts is in the `.kl` corpus (`programs.rs`).

use crate::support::{self, kiln};
use std::time::Duration;

/// How long a `kiln` process may take (see [`support::patient`]).
fn time_limit() -> Duration {
    support::patient(Duration::from_secs(60))
}

#[test]
fn missing_file_is_one_line_and_status_1() {
    let dir = tempfile::tempdir().unwrap();
    for sub in [&["run"][..], &["check"], &["check", "--lib"]] {
        let mut args: Vec<&str> = sub.to_vec();
        args.push("nowhere/missing.kl");
        let run = kiln(&args, dir.path(), time_limit());
        assert_eq!(run.code, Some(1), "kiln {args:?}: {}", run.describe());
        assert!(
            run.stdout.is_empty(),
            "kiln {args:?} printed {:?}",
            run.stdout_text()
        );
        let stderr = run.stderr_text();
        assert!(
            stderr.starts_with("error: cannot read nowhere/missing.kl: "),
            "kiln {args:?} said {stderr:?}"
        );
        assert_eq!(stderr.lines().count(), 1, "kiln {args:?} said {stderr:?}");
    }
}

#[test]
fn a_directory_is_not_a_script() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("folder.kl")).unwrap();
    let run = kiln(["run", "folder.kl"], dir.path(), time_limit());
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let stderr = run.stderr_text();
    assert!(
        stderr.starts_with("error: cannot read folder.kl: "),
        "said {stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "said {stderr:?}");
}

#[test]
fn absolute_paths_are_named_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abs.kl");
    std::fs::write(
        &path,
        "fn main() {\n    let a: [int; 2];\n    print(a[2]);\n}\n",
    )
    .unwrap();
    let run = kiln(
        [std::ffi::OsStr::new("run"), path.as_os_str()],
        dir.path(),
        time_limit(),
    );
    assert_eq!(run.code, Some(2), "{}", run.describe());
    assert_eq!(
        run.stderr_text(),
        format!(
            "error: index out of bounds\n  at {}:3:11 in fn main\n",
            path.display()
        )
    );
}

#[test]
fn usage_errors_fail_without_running_anything() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hello.kl"),
        "fn main() {\n    print(1);\n}\n",
    )
    .unwrap();
    // A missing FILE and an unknown subcommand: what exactly is printed is clap's business.
    for args in [&["run"][..], &["frobnicate", "hello.kl"]] {
        let run = kiln(args, dir.path(), time_limit());
        let code = run
            .code
            .unwrap_or_else(|| panic!("kiln {args:?}: {}", run.describe()));
        assert_ne!(code, 0, "kiln {args:?} succeeded");
        assert!(
            run.stdout.is_empty(),
            "kiln {args:?} printed {:?}",
            run.stdout_text()
        );
        assert!(!run.stderr.is_empty(), "kiln {args:?} said nothing");
    }
}

/// The README's first command: `kiln run examples/hello.kl`.
#[test]
fn the_readme_example_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = kiln(["run", "examples/hello.kl"], root, time_limit());
    assert_eq!(
        run.code,
        Some(0),
        "{}: {}",
        run.describe(),
        run.stderr_text()
    );
    assert_eq!(
        run.stdout_text(),
        "Hello from Kiln!\n\
         The sum of the first ten primes:\n\
         129\n\
         Fibonacci ratios:\n\
         1.6\n\
         1.6181818181818182\n\
         1.6180339985218033\n\
         1.618033988749895\n\
         The golden ratio:\n\
         1.618033988749895\n"
    );
}

/// Issue 2's bar: `kiln run` on a generated 1000-function program (the one the benches use)
/// works, and prints exactly what the reference interpreter prints for it.
#[test]
fn a_generated_thousand_function_program_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = "benches/programs/generated_1000.kl";
    let run = kiln(["run", path], root, time_limit());
    assert_eq!(
        run.code,
        Some(0),
        "{}: {}",
        run.describe(),
        run.stderr_text()
    );

    let source = std::fs::read_to_string(root.join(path)).unwrap();
    let file = kiln_lang::SourceFile::new(path, source);
    let options = kiln_lang::CheckOptions { require_main: true };
    let program = kiln_lang::check(&file, &[], &options).expect("the program checks");
    assert!(
        program.functions.len() > 1000,
        "{} functions",
        program.functions.len()
    );
    let main = program.function_named("main").unwrap();
    let mut expected = Vec::new();
    let limits = kiln_lang::interp::Limits::default();
    kiln_lang::interp::Interpreter::new(&program, limits)
        .call(main, &[], &mut kiln_lang::interp::NoHost, &mut expected)
        .expect("the interpreter runs it");
    assert!(!expected.is_empty());
    assert_eq!(run.stdout_text(), String::from_utf8(expected).unwrap());
}
