//! The `.kl` corpus: every `tests/programs/**/*.kl` run through the real `kiln` binary.
//!
//! Expectations are sibling files, compared byte for byte:
//!
//! - `NAME.stdout`: standard output (absent: empty),
//! - `NAME.stderr`: standard error (absent: empty),
//! - `NAME.status`: the exit status as a decimal number (absent: `0`).
//!
//! Each case runs as `kiln run NAME.kl` with `tests/programs` as the working directory, so
//! messages name files the same way everywhere (`statements/while.kl`). A first line
//! `// args: WORDS...` replaces `run` with those words; the path is still appended.
//!
//! Every case runs twice in a cache directory of its own: cold (compiled, then stored) and warm
//! (relinked from the cache). Both runs must meet the same expectations.
//!
//! `KILN_BLESS=1` rewrites the expectation files from the actual results (deleting those that
//! would be empty or `0`); `KILN_PROGRAMS=TEXT` runs only the cases whose path contains TEXT.
//! Every failing case is reported, each with a diff, before the test fails.

use crate::support::{self, Run};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use std::{env, fs, thread};

/// Fewer cases than this means the walk went wrong (a moved directory, a bad filter on the
/// extension), not that the corpus shrank: the harness must never pass by running nothing.
const MIN_CASES: usize = 150;

/// Generous for a debug build on a loaded two-core machine; a case that takes longer is hung.
/// How long a `kiln` process may take (see [`support::patient`]).
fn time_limit() -> Duration {
    support::patient(Duration::from_secs(60))
}

/// How many lines of a diff to show for one stream before cutting it short.
const MAX_DIFF_LINES: usize = 60;

struct Case {
    /// The path relative to `tests/programs`, with `/` separators, as passed to `kiln`.
    name: String,
    /// The path without the `.kl` extension; expectation files add theirs to it.
    stem: PathBuf,
}

struct Expected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: i32,
}

#[test]
fn programs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs");
    let filter = env::var("KILN_PROGRAMS").ok();
    let bless = env::var("KILN_BLESS").is_ok_and(|v| v == "1");

    let mut cases = Vec::new();
    let mut orphans = Vec::new();
    collect(&root, &root, &mut cases, &mut orphans);
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        orphans.is_empty(),
        "expectation files without a .kl case: {orphans:?}"
    );
    match &filter {
        None => assert!(
            cases.len() >= MIN_CASES,
            "found only {} cases under {}; expected at least {MIN_CASES}",
            cases.len(),
            root.display()
        ),
        Some(text) => {
            cases.retain(|c| c.name.contains(text.as_str()));
            assert!(!cases.is_empty(), "no case matches KILN_PROGRAMS={text}");
        }
    }

    let failures = run_all(&root, &cases, bless);
    eprintln!(
        "programs: {} cases, {} failed{}",
        cases.len(),
        failures.len(),
        if bless { " (blessed)" } else { "" }
    );
    if !failures.is_empty() {
        let mut report = String::new();
        for (_, text) in &failures {
            report.push_str(text);
            report.push('\n');
        }
        let names: Vec<&str> = failures.iter().map(|(name, _)| name.as_str()).collect();
        panic!(
            "{report}{} of {} cases failed:\n  {}\n(KILN_BLESS=1 rewrites the expectations; \
             read tests/programs/README.md first)",
            failures.len(),
            cases.len(),
            names.join("\n  ")
        );
    }
}

/// Every `.kl` file below `dir`; expectation files without a `.kl` beside them (a case renamed
/// or deleted without its expectations) go to `orphans`.
fn collect(root: &Path, dir: &Path, cases: &mut Vec<Case>, orphans: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("reading a directory entry").path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            collect(root, &path, cases, orphans);
        } else if ext == "kl" {
            let relative = path.strip_prefix(root).expect("below the root");
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            cases.push(Case {
                name,
                stem: path.with_extension(""),
            });
        } else if ["stdout", "stderr", "status"].contains(&ext)
            && !path.with_extension("kl").exists()
        {
            orphans.push(path);
        }
    }
}

/// Runs the cases on a few threads (each mostly waits on its child process) and returns the
/// failures in case order, each as (name, report).
fn run_all(root: &Path, cases: &[Case], bless: bool) -> Vec<(String, String)> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<String>>> = Mutex::new((0..cases.len()).map(|_| None).collect());
    let workers = thread::available_parallelism().map_or(2, |n| n.get().max(2));
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let failure = run_case(root, case, bless);
                    results.lock().expect("no worker panics holding the lock")[i] = failure;
                }
            });
        }
    });
    let results = results.into_inner().expect("no worker panicked");
    cases
        .iter()
        .zip(results)
        .filter_map(|(case, failure)| failure.map(|f| (case.name.clone(), f)))
        .collect()
}

/// Runs one case twice in a cache of its own, cold (compiled) then warm (from the cache), and
/// checks both runs; returns a report when either does not match the expectations.
fn run_case(root: &Path, case: &Case, bless: bool) -> Option<String> {
    let cache = tempfile::tempdir().expect("a temporary cache directory");
    let cold = run_pass(root, case, bless, cache.path(), "cold");
    if bless || cold.is_some() {
        return cold;
    }
    let compiled = !fs::read(case.stem.with_extension("status"))
        .is_ok_and(|s| String::from_utf8_lossy(&s).trim() == "1");
    let ran = command_words(&fs::read(case.stem.with_extension("kl")).unwrap_or_default())
        .first()
        .is_some_and(|w| w == "run");
    if compiled && ran && entries(cache.path()) == 0 {
        return Some(format!(
            "=== {}: the cold run left nothing in the cache",
            case.name
        ));
    }
    run_pass(root, case, false, cache.path(), "warm")
}

/// The number of files under `dir`.
fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() { entries(&path) } else { 1 }
            })
            .sum()
    })
}

/// One run of a case; `pass` names it in a failure.
fn run_pass(root: &Path, case: &Case, bless: bool, cache: &Path, pass: &str) -> Option<String> {
    let source = fs::read(case.stem.with_extension("kl")).expect("reading the case");
    let mut args = command_words(&source);
    args.push(case.name.clone());
    let run = support::kiln_with_cache(&args, root, time_limit(), cache);
    let Some(status) = run.code else {
        // A crash or a hang is never the expected behaviour, and never blessed.
        return Some(format!(
            "=== {} ({pass}): kiln {} was {}\n{}",
            case.name,
            args.join(" "),
            run.describe(),
            stream_tail("stderr", &run.stderr)
        ));
    };
    if bless {
        write_expectations(case, &run, status);
        return None;
    }
    let expected = match read_expectations(case) {
        Ok(e) => e,
        Err(e) => return Some(format!("=== {}: {e}", case.name)),
    };
    let mut report = String::new();
    if expected.status != status {
        let _ = writeln!(
            report,
            "--- exit status: expected {}, got {status}",
            expected.status
        );
    }
    diff_stream(&mut report, "stdout", &expected.stdout, &run.stdout);
    diff_stream(&mut report, "stderr", &expected.stderr, &run.stderr);
    if report.is_empty() {
        None
    } else {
        Some(format!(
            "=== {} ({pass}: kiln {})\n{report}",
            case.name,
            args.join(" ")
        ))
    }
}

/// The words before the path: `run`, or those of a first line `// args: ...`.
fn command_words(source: &[u8]) -> Vec<String> {
    let first = source.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    match first.trim_end().strip_prefix("// args:") {
        Some(words) => words.split_whitespace().map(str::to_string).collect(),
        None => vec!["run".to_string()],
    }
}

fn read_expectations(case: &Case) -> Result<Expected, String> {
    let read = |ext: &str| -> Result<Vec<u8>, String> {
        let path = case.stem.with_extension(ext);
        match fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    };
    let status_text = read("status")?;
    let status = if status_text.is_empty() {
        0
    } else {
        let text = String::from_utf8_lossy(&status_text);
        text.trim()
            .parse()
            .map_err(|_| format!("the .status file holds {text:?}, not a number"))?
    };
    Ok(Expected {
        stdout: read("stdout")?,
        stderr: read("stderr")?,
        status,
    })
}

fn write_expectations(case: &Case, run: &Run, status: i32) {
    let write = |ext: &str, bytes: &[u8]| {
        let path = case.stem.with_extension(ext);
        if bytes.is_empty() {
            if path.exists() {
                fs::remove_file(&path)
                    .unwrap_or_else(|e| panic!("cannot remove {}: {e}", path.display()));
            }
        } else {
            fs::write(&path, bytes)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
    };
    write("stdout", &run.stdout);
    write("stderr", &run.stderr);
    let status_text = if status == 0 {
        String::new()
    } else {
        format!("{status}\n")
    };
    write("status", status_text.as_bytes());
}

fn stream_tail(name: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(20);
    let mut out = format!("--- last lines of {name}:\n");
    for line in &lines[start..] {
        let _ = writeln!(out, "  {}", visible(line));
    }
    out
}

/// Appends a line diff of one stream to `report` when expected and actual differ.
fn diff_stream(report: &mut String, name: &str, expected: &[u8], actual: &[u8]) {
    if expected == actual {
        return;
    }
    let expected = String::from_utf8_lossy(expected);
    let actual = String::from_utf8_lossy(actual);
    let _ = writeln!(report, "--- {name} differs (- expected, + actual):");
    let lines = diff_lines(&split_lines(&expected), &split_lines(&actual));
    let mut shown = 0;
    for (i, (tag, line)) in lines.iter().enumerate() {
        // Show changes with two lines of context around them.
        let near_change = lines[i.saturating_sub(2)..(i + 3).min(lines.len())]
            .iter()
            .any(|(t, _)| *t != ' ');
        if !near_change {
            continue;
        }
        if shown == MAX_DIFF_LINES {
            let _ = writeln!(report, "  ... (diff cut short)");
            break;
        }
        let _ = writeln!(report, "{tag} {}", visible(line));
        shown += 1;
    }
}

/// Lines with their terminators, so a missing final newline shows up as a difference.
fn split_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// A longest-common-subsequence diff after trimming the common ends; tags are ' ', '-', '+'.
fn diff_lines<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<(char, &'a str)> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (a, b) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    let mut out: Vec<(char, &str)> = old[..prefix].iter().map(|l| (' ', *l)).collect();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        // Too big to align cheaply: show the whole differing middle.
        out.extend(a.iter().map(|l| ('-', *l)));
        out.extend(b.iter().map(|l| ('+', *l)));
    } else {
        // lcs[i][j] = length of the LCS of a[i..] and b[j..].
        let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i][j] = if a[i] == b[j] {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                out.push((' ', a[i]));
                i += 1;
                j += 1;
            } else if j == b.len() || (i < a.len() && lcs[i + 1][j] >= lcs[i][j + 1]) {
                out.push(('-', a[i]));
                i += 1;
            } else {
                out.push(('+', b[j]));
                j += 1;
            }
        }
    }
    out.extend(old[old.len() - suffix..].iter().map(|l| (' ', *l)));
    out
}

/// A line as it can be read in a terminal: control characters escaped, and a note when the
/// line has no terminating newline.
fn visible(line: &str) -> String {
    let (body, newline) = match line.strip_suffix('\n') {
        Some(body) => (body, true),
        None => (line, false),
    };
    let mut out = String::new();
    for c in body.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if !newline {
        out.push_str("  (no newline at end)");
    }
    out
}

#[test]
fn diff_shows_changed_lines_and_missing_newline() {
    let old = split_lines("a\nb\nc\n");
    let new = split_lines("a\nx\nc");
    let tags: Vec<(char, &str)> = diff_lines(&old, &new);
    assert_eq!(
        tags,
        vec![
            (' ', "a\n"),
            ('-', "b\n"),
            ('-', "c\n"),
            ('+', "x\n"),
            ('+', "c")
        ]
    );
    assert_eq!(visible("c"), "c  (no newline at end)");
    assert_eq!(visible("a\r\0\n"), "a\\r\\u{0}");
}

#[test]
fn args_line_replaces_the_subcommand() {
    assert_eq!(
        command_words(b"// args: check --lib\nfn main() {}"),
        ["check", "--lib"]
    );
    assert_eq!(command_words(b"fn main() {}\n// args: check"), ["run"]);
    assert_eq!(command_words(b""), ["run"]);
}
