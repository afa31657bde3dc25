//! `kiln repl`, driven through its standard input: lines are piped in, and what the session
//! prints on each stream is compared. Standard input is a pipe, so the session reads plainly
//! (no prompt, no history), which is also what these tests check stays clean.

use crate::support::{self, KILN, private_cache};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a `kiln` process may take (see [`support::patient`]).
fn time_limit() -> Duration {
    support::patient(Duration::from_secs(60))
}

/// A running `kiln repl` with piped standard streams, in a scratch directory that is also its
/// home (so nothing of the user's is read or written).
struct Repl {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Standard output, line by line, as the session prints it.
    stdout: Receiver<String>,
    stderr: JoinHandle<String>,
    dir: tempfile::TempDir,
}

/// How a session ended and what it printed.
struct Ended {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    /// The scratch directory the session ran in, still there for the test to look at.
    dir: tempfile::TempDir,
}

impl Repl {
    /// Starts `kiln repl ARGS...` in a fresh scratch directory holding `files` (name, text).
    fn start(args: &[&str], files: &[(&str, &str)]) -> Repl {
        let dir = tempfile::tempdir().expect("a scratch directory");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("writing a test file");
        }
        let mut child = crate::support::command(KILN)
            .arg("repl")
            .args(args)
            .current_dir(dir.path())
            .env("KILN_CACHE_DIR", private_cache())
            .env_remove("KILN_CACHE")
            .env("HOME", dir.path())
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kiln repl");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines, received) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            // A read error can only mean the process went away: what was read is the output.
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Repl {
            stdin: child.stdin.take(),
            child,
            stdout: received,
            stderr,
            dir,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Types `lines` (each ending in a line break).
    fn send(&mut self, lines: &str) {
        let stdin = self.stdin.as_mut().expect("standard input is open");
        stdin
            .write_all(lines.as_bytes())
            .expect("writing to kiln repl");
        stdin.flush().expect("writing to kiln repl");
    }

    /// The next line the session prints on standard output.
    fn next_line(&mut self) -> String {
        match self.stdout.recv_timeout(time_limit()) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                panic!("no line on standard output ({e:?})");
            }
        }
    }

    /// Closes standard input (Ctrl-D) and waits for the session to end.
    fn finish(mut self) -> Ended {
        drop(self.stdin.take());
        let deadline = Instant::now() + time_limit();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting on kiln repl") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "kiln repl did not end within {:?} of its input ending",
                    time_limit()
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        let mut stdout = String::new();
        loop {
            match self.stdout.recv_timeout(time_limit()) {
                Ok(line) => {
                    stdout.push_str(&line);
                    stdout.push('\n');
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("standard output stayed open"),
            }
        }
        Ended {
            status: status.code(),
            stdout,
            stderr: self
                .stderr
                .join()
                .expect("the stderr reader does not panic"),
            dir: self.dir,
        }
    }
}

/// Runs a whole session on `input`, with `files` in its directory.
fn session_with(args: &[&str], files: &[(&str, &str)], input: &str) -> Ended {
    let mut repl = Repl::start(args, files);
    repl.send(input);
    repl.finish()
}

fn session(input: &str) -> Ended {
    session_with(&[], &[], input)
}

/// Asserts a session ended with status 0 and printed `stdout` and nothing on stderr.
fn assert_clean(ended: &Ended, stdout: &str) {
    assert_eq!(ended.stderr, "", "standard error");
    assert_eq!(ended.stdout, stdout, "standard output");
    assert_eq!(ended.status, Some(0), "{}", ended.stderr);
}

#[test]
fn a_function_is_defined_and_an_expression_prints_its_value() {
    let ended = session(
        "fn add(a: int, b: int) -> int { return a + b; }\n\
         add(2, 3)\n",
    );
    assert_clean(&ended, "defined fn add(int, int) -> int\n5\n");
}

#[test]
fn globals_keep_their_values_across_inputs() {
    let ended = session(
        "global n: int = 0;\n\
         n += 1;\n\
         n += 1;\n\
         n\n",
    );
    assert_clean(&ended, "defined global n: int\n2\n");
}

#[test]
fn a_last_statement_may_leave_out_its_semicolon() {
    let ended = session(
        "global n: int = 1;\n\
         n += 1\n\
         if n > 1 { n *= 10; }\n\
         n\n\
         n =\n",
    );
    assert_eq!(ended.stdout, "defined global n: int\n20\n");
    // An error past the end of the input is reported at its end.
    assert_eq!(
        ended.stderr,
        "error: expected an expression, found the end of the input\n  \
         --> repl[5]:1:4\n  \
         |\n\
         1 | n =\n  \
         |    ^ expected an expression\n\
         \n"
    );
    assert_eq!(ended.status, Some(0));
}

#[test]
fn a_definition_may_span_several_lines() {
    let ended = session(
        "fn clamp(x: int, lo: int, hi: int) -> int {\n\
         \n\
             if x < lo {\n\
                 return lo;\n\
             }\n\
             return min(x, hi);\n\
         }\n\
         clamp(-5, 0, 10) + clamp(50, 0, 10)\n\
         print(\n\
             clamp(3, 0, 10)\n\
         );\n",
    );
    assert_clean(&ended, "defined fn clamp(int, int, int) -> int\n10\n3\n");
}

#[test]
fn expressions_of_each_type_print_the_languages_way() {
    let ended = session(
        "6 * 7\n\
         1.0 / 4.0\n\
         2.0 * 3.0\n\
         1.0 / 0.0\n\
         3 > 2 && false\n\
         \"text\"\n",
    );
    assert_clean(&ended, "42\n0.25\n6.0\ninf\nfalse\ntext\n");
}

#[test]
fn a_call_of_a_function_returning_nothing_runs_as_a_statement() {
    let ended = session(
        "fn greet(times: int) { for i in 0..times { print(\"hello\"); } }\n\
         greet(2)\n\
         greet(1);\n\
         let x = 20; print(x + 1);\n",
    );
    assert_clean(&ended, "defined fn greet(int)\nhello\nhello\nhello\n21\n");
}

#[test]
fn a_compile_error_is_reported_and_the_session_goes_on() {
    let ended = session(
        "let x: int = 1.5;\n\
         nope + 1\n\
         1 + 1\n",
    );
    assert_eq!(ended.stdout, "2\n");
    assert_eq!(ended.status, Some(0));
    assert_eq!(
        ended.stderr,
        "error: mismatched types\n  \
         --> repl[1]:1:14\n  \
         |\n\
         1 | let x: int = 1.5;\n  \
         |              ^^^ expected int, found float\n\
         \n\
         error: unknown name `nope`\n  \
         --> repl[2]:1:1\n  \
         |\n\
         1 | nope + 1\n  \
         | ^^^^ not found in this scope\n\
         \n"
    );
}

#[test]
fn a_runtime_error_is_reported_and_the_session_goes_on() {
    let ended = session(
        "fn div(a: int, b: int) -> int { return a / b; }\n\
         global calls: int = 0;\n\
         calls += 1; print(div(1, 0)); calls += 100;\n\
         div(6, 3)\n\
         calls\n",
    );
    assert_eq!(
        ended.stdout,
        "defined fn div(int, int) -> int\ndefined global calls: int\n2\n1\n"
    );
    assert_eq!(
        ended.stderr,
        "error: division by zero\n  at repl[1]:1:42 in fn div\n"
    );
    assert_eq!(ended.status, Some(0));
}

#[test]
fn redefining_a_function_changes_what_its_callers_call() {
    let ended = session(
        "fn base() -> int { return 1; }\n\
         fn twice() -> int { return base() * 2; }\n\
         twice()\n\
         fn base() -> int {\n    return 21;\n}\n\
         twice()\n",
    );
    assert_clean(
        &ended,
        "defined fn base() -> int\ndefined fn twice() -> int\n2\nredefined fn base() -> int\n42\n",
    );
}

#[test]
fn a_definition_that_does_not_compile_changes_nothing() {
    let ended = session(
        "fn base() -> int { return 1; }\n\
         fn twice() -> int { return base() * 2; }\n\
         fn base() -> float { return 1.5; }\n\
         fn base() -> int { return 1.5; }\n\
         fn broken(x int) {}\n\
         twice()\n",
    );
    assert_eq!(
        ended.stdout,
        "defined fn base() -> int\ndefined fn twice() -> int\n2\n"
    );
    let stderr = &ended.stderr;
    // Changing the signature breaks the caller: the error points at the caller, as typed.
    assert!(
        stderr.contains("--> repl[2]:1:37\n") && stderr.contains("1 | fn twice() -> int"),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: nothing was defined: the other definitions would not compile"),
        "{stderr}"
    );
    assert!(stderr.contains("--> repl[4]:1:27\n"), "{stderr}");
    // A syntax error in a definition is reported as such, not as a misplaced statement.
    assert!(
        stderr.contains("error: expected `:`, found keyword `int`\n  --> repl[5]:1:13\n"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error:").count(), 3, "{stderr}");
    assert_eq!(ended.status, Some(0));
}

#[test]
fn typing_a_global_again_resets_it() {
    let ended = session(
        "global n: int = 5; global cells: [int; 3];\n\
         n += 1; cells[2] = 7;\n\
         n * 10 + cells[2]\n\
         global n: int = 1 /* one */ + 1; global cells: [int; 3];\n\
         n * 10 + cells[2]\n",
    );
    assert_clean(
        &ended,
        "defined global n: int\ndefined global cells: [int; 3]\n67\n\
         redefined global n: int\nredefined global cells: [int; 3]\n20\n",
    );
}

#[test]
fn load_then_reload_picks_up_an_edited_file() {
    let lib = "const K: int = 3;\n\
               global total: int = 10;\n\
               fn step(x: int) -> int {\n    total += x;\n    return total * K;\n}\n\
               fn helper() {}\n";
    let mut repl = Repl::start(&[], &[("lib.kl", lib)]);
    repl.send(":load lib.kl\nstep(1)\n");
    assert_eq!(repl.next_line(), "loaded lib.kl: 2 fns, 1 global, 1 const");
    assert_eq!(repl.next_line(), "33");

    let edited = lib
        .replace("total * K", "total * K * 100")
        .replace("fn helper() {}\n", "");
    std::fs::write(repl.path("lib.kl"), edited).unwrap();
    repl.send(":reload\nstep(1)\n:defs\n");
    let ended = repl.finish();
    // `total` kept its value, 11, across the reload; `helper` left with the file's text.
    assert_clean(
        &ended,
        "reloaded lib.kl: 1 function compiled, 1 reused; removed fn helper\n\
         3600\n\
         const K: int  (lib.kl)\n\
         global total: int  (lib.kl)\n\
         fn step(int) -> int  (lib.kl)\n",
    );
}

#[test]
fn a_file_that_cannot_be_loaded_changes_nothing() {
    let files = [
        ("good.kl", "fn f() -> int { return 1; }\n"),
        ("syntax.kl", "fn g() -> int {\n    return 1 +;\n}\n"),
        ("types.kl", "fn f() -> int {\n    return true;\n}\n"),
    ];
    let ended = session_with(
        &["good.kl"],
        &files,
        ":load missing.kl\n:load syntax.kl\n:load types.kl\nf()\n",
    );
    assert_eq!(ended.stdout, "loaded good.kl: 1 fn\n1\n");
    let stderr = &ended.stderr;
    assert!(
        stderr.starts_with("error: cannot read missing.kl: "),
        "{stderr}"
    );
    // Errors point into the files, at their own lines.
    assert!(stderr.contains("--> syntax.kl:2:15\n"), "{stderr}");
    assert!(stderr.contains("--> types.kl:2:12\n"), "{stderr}");
    assert!(
        stderr.ends_with("error: could not load types.kl; the definitions are unchanged\n"),
        "{stderr}"
    );
    assert_eq!(ended.status, Some(0));
}

#[test]
fn stats_reports_the_last_reload_and_the_session() {
    let ended = session(
        ":stats\n\
         fn f(x: int) -> int { return x + 1; }\n\
         f(1)\n\
         :stats\n",
    );
    assert_eq!(ended.stderr, "");
    let lines: Vec<&str> = ended.stdout.lines().collect();
    assert_eq!(
        lines[..3],
        ["no reloads yet", "defined fn f(int) -> int", "2"]
    );
    let last = lines[3];
    assert!(
        last.starts_with("last reload: generation 2 active in "),
        "{last}"
    );
    // Evaluating `f(1)` compiled only `__repl_eval`; `f` was relinked.
    assert!(last.contains(": 1 compiled, 1 reused;"), "{last}");
    let totals = lines[4];
    assert!(totals.starts_with("session: 2 reloads ("), "{totals}");
    assert!(totals.contains(" ms until active, "), "{totals}");
    assert!(totals.ends_with(" ms in codegen"), "{totals}");
    assert_eq!(lines.len(), 5, "{}", ended.stdout);
}

#[test]
fn help_lists_the_commands() {
    let ended = session(":help\n");
    assert_eq!(ended.stderr, "");
    for command in [":load FILE", ":reload", ":defs", ":stats", ":help", ":quit"] {
        assert!(
            ended.stdout.contains(command),
            "{command}: {}",
            ended.stdout
        );
    }
    assert!(ended.stdout.contains("`let` bindings last for one input"));
}

#[test]
fn quit_ends_the_session_and_later_lines_do_not_run() {
    let ended = session("1 + 1\n:quit\nprint(99);\n");
    assert_clean(&ended, "2\n");
    // Piped input is read plainly: no history is written.
    assert!(!ended.dir.path().join("state").exists());
}

#[test]
fn unknown_commands_and_bad_arguments_are_errors() {
    let ended = session(":frobnicate\n:load\n:stats now\n1 + 1\n");
    assert_eq!(ended.stdout, "2\n");
    assert_eq!(
        ended.stderr,
        "error: unknown command `:frobnicate`; type :help for the commands\n\
         error: `:load` needs a file: `:load FILE`\n\
         error: `:stats` takes no argument\n"
    );
    assert_eq!(ended.status, Some(0));
}

#[test]
fn statements_cannot_reach_outside_their_input() {
    let ended = session("} fn sneaky() { print(1);\nfn __repl_eval() {}\n:defs\n");
    assert_eq!(ended.stdout, "no definitions yet\n");
    assert_eq!(
        ended.stderr,
        "error: unmatched `}`\n  \
         --> repl[1]:1:1\n  \
         |\n\
         1 | } fn sneaky() { print(1);\n  \
         | ^ this closes a block the input did not open\n\
         \n\
         error: `__repl_eval` is the function the REPL runs your statements in; choose another name\n"
    );
}

#[test]
fn input_ending_inside_an_open_bracket_is_not_run() {
    let ended = session("print(1);\nfn f() {\n    print(2);\n");
    assert_eq!(ended.stdout, "1\n");
    assert!(
        ended
            .stderr
            .starts_with("error: the input ended inside an unfinished entry"),
        "{}",
        ended.stderr
    );
    assert_eq!(ended.status, Some(0));
}

#[test]
fn deep_recursion_has_the_stack_it_needs() {
    // 9,998 frames of `depth` below `__repl_eval`: within the 10,000 `kiln run` allows.
    let ended = session(
        "fn depth(n: int) -> int { if n == 0 { return 0; } return depth(n - 1) + 1; }\n\
         depth(9998)\n\
         depth(20000)\n\
         1\n",
    );
    assert_eq!(ended.stdout, "defined fn depth(int) -> int\n9998\n1\n");
    assert!(
        ended
            .stderr
            .starts_with("error: stack overflow\n  at repl[1]:"),
        "{}",
        ended.stderr
    );
}

#[test]
fn a_missing_file_on_the_command_line_does_not_end_the_session() {
    let path = Path::new("nowhere").join("lib.kl");
    let ended = session_with(&[path.to_str().unwrap()], &[], "2 + 2\n");
    assert_eq!(ended.stdout, "4\n");
    assert!(
        ended.stderr.starts_with("error: cannot read "),
        "{}",
        ended.stderr
    );
    assert_eq!(ended.status, Some(0));
}
