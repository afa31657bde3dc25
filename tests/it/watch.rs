//! `kiln watch` and the hot-reload example, driven end to end.
//!
//! Each test runs a real process on a script in a temporary directory, edits the script the way
//! editors do, and waits for what the process prints in answer rather than for a fixed time (the
//! machine may be slow; a debug build more so). A process still running when a test ends, or
//! fails, is killed by [`Watched`]'s `Drop`.

use crate::support::{KILN, kiln, private_cache};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long anything the tests wait for may take: far above what it needs on a quiet machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// A counter kept in a global, printed at every call: the count shows whether state survived a
/// reload, and `version` (the millions) shows which code printed it.
fn counter(version: i64) -> String {
    format!(
        "global n: int = 0;\n\
         fn tick() {{\n    n += 1;\n    print({version} * 1000000 + n);\n}}\n"
    )
}

/// Splits a counter's output line into its version and count.
fn version_and_count(line: &str) -> (i64, i64) {
    let value: i64 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a counter line: {line:?}"));
    (value / 1000000, value % 1000000)
}

/// A running process whose output is collected as it comes; killed when dropped.
struct Watched {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The threads reading the two pipes; they end when the process has ended.
    readers: Vec<thread::JoinHandle<()>>,
}

impl Watched {
    /// Starts `kiln watch SCRIPT ARGS...` in `dir` with the tests' cache.
    fn kiln(dir: &Path, script: &str, args: &[&str]) -> Watched {
        let mut command = crate::support::command(KILN);
        command
            .arg("watch")
            .arg(script)
            .args(args)
            .current_dir(dir)
            .env("KILN_CACHE_DIR", private_cache())
            .env_remove("KILN_CACHE");
        Watched::start(command)
    }

    /// Starts `command` with no standard input, collecting both output streams.
    fn start(mut command: Command) -> Watched {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let (stdout, out_reader) = collect(child.stdout.take().expect("stdout is piped"));
        let (stderr, err_reader) = collect(child.stderr.take().expect("stderr is piped"));
        Watched {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `ready` holds for the stdout and stderr seen so far, and returns them; fails
    /// the test, showing both, if that takes longer than [`PATIENCE`] or the process ends first.
    fn wait_for(&mut self, what: &str, ready: impl Fn(&str, &str) -> bool) -> (String, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (stdout, stderr) = (self.stdout(), self.stderr());
            if ready(&stdout, &stderr) {
                return (stdout, stderr);
            }
            let ended = self.child.try_wait().expect("waiting on the process");
            if ended.is_some() && !self.readers.is_empty() {
                self.finish_reading();
                continue;
            }
            if ended.is_some() || Instant::now() > deadline {
                let how = ended.map_or("is still running".into(), |s| format!("ended: {s}"));
                panic!(
                    "waiting for {what}, the process {how}\nstdout:\n{stdout}\nstderr:\n{stderr}"
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the readers to take the last output from the pipes of the ended process.
    fn finish_reading(&mut self) {
        for reader in self.readers.drain(..) {
            reader.join().expect("the reader does not panic");
        }
    }

    /// Waits for stdout to have more than `lines` lines; returns all of its lines.
    fn wait_for_lines(&mut self, what: &str, lines: usize) -> Vec<String> {
        let (stdout, _) = self.wait_for(what, |out, _| complete_lines(out).len() > lines);
        complete_lines(&stdout)
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("`kill` runs");
        assert!(status.success(), "kill -INT failed: {status}");
    }

    /// Waits for the process to end; fails the test if it takes longer than [`PATIENCE`].
    fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting on the process") {
                self.finish_reading();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not end\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Killing fails only if the process has ended already; `wait` reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a pipe on a thread of its own, appending to a string the test can look at any time.
fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<String>>, thread::JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let reader = thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        // A read error can only mean the process went away; what was read so far is the output.
        while let Ok(n @ 1..) = pipe.read(&mut buffer) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    (text, reader)
}

/// The lines of `text` that are complete: the pipe may have delivered only part of the last.
fn complete_lines(text: &str) -> Vec<String> {
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(str::to_string).collect()
}

/// Replaces `path`'s contents the way editors that save atomically do: write a temporary file
/// beside it, then rename it over the original.
fn save_by_rename(path: &Path, text: &str) {
    let temp = path.with_extension("kl.swp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// A temporary directory holding `game.kl` with `text`.
fn game(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("game.kl");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Checks that `lines` are one counter running without a gap or a restart, its code's version
/// never going back, and that version `to` printed last; returns the first count `to` printed.
fn assert_counts_to(lines: &[String], to: i64) -> i64 {
    let parsed: Vec<(i64, i64)> = lines.iter().map(|l| version_and_count(l)).collect();
    for (k, &(_, count)) in parsed.iter().enumerate() {
        assert_eq!(
            count,
            k as i64 + 1,
            "the count restarted or skipped: {lines:?}"
        );
    }
    assert!(
        parsed.windows(2).all(|w| w[0].0 <= w[1].0),
        "older code ran after newer code: {lines:?}"
    );
    assert_eq!(parsed.last().map(|p| p.0), Some(to), "{lines:?}");
    let first = parsed.iter().position(|&(version, _)| version == to);
    parsed[first.expect("`to` printed last")].1
}

#[test]
fn an_edit_reloads_and_the_counter_carries_on() {
    let (dir, path) = game(&counter(1));
    let mut watch = Watched::kiln(dir.path(), "game.kl", &["--hz", "100"]);
    watch.wait_for_lines("the first calls", 3);
    std::fs::write(&path, counter(2)).unwrap();
    let (stdout, stderr) = watch.wait_for("the new code's output and the report", |out, err| {
        complete_lines(out).iter().any(|l| l.starts_with('2'))
            && err.contains("watch: generation 1 active")
    });
    let lines = complete_lines(&stdout);
    let first_new = assert_counts_to(&lines, 2);
    assert!(first_new > 3, "the counter restarted: {lines:?}");
    assert!(stderr.contains("globals: 1 kept"), "stderr:\n{stderr}");
    assert!(
        stderr.starts_with("watch: calling `tick` 100 times a second"),
        "stderr:\n{stderr}"
    );
    assert!(!stderr.contains("error"), "stderr:\n{stderr}");
}

#[test]
fn a_save_by_rename_reloads() {
    let (dir, path) = game(&counter(1));
    let mut watch = Watched::kiln(dir.path(), "game.kl", &["--hz", "100"]);
    watch.wait_for_lines("the first calls", 1);
    for version in 2..=3 {
        save_by_rename(&path, &counter(version));
        let marker = format!("watch: generation {} active", version - 1);
        let (stdout, _) = watch.wait_for(&format!("version {version}"), |out, err| {
            let digit = char::from(b'0' + version as u8);
            complete_lines(out).iter().any(|l| l.starts_with(digit)) && err.contains(&marker)
        });
        let lines = complete_lines(&stdout);
        assert_counts_to(&lines, version);
    }
}

#[test]
fn a_bad_edit_keeps_the_last_good_code_running_until_a_good_one() {
    let (dir, path) = game(&counter(1));
    let mut watch = Watched::kiln(dir.path(), "game.kl", &["--hz", "100"]);
    watch.wait_for_lines("the first calls", 1);
    std::fs::write(&path, "global n: int = 0;\nfn tick() {\n    n += 1.5;\n}\n").unwrap();
    let (stdout, stderr) =
        watch.wait_for("the diagnostics", |_, err| err.contains("keeps running"));
    assert!(
        stderr.contains("error: mismatched types"),
        "stderr:\n{stderr}"
    );
    assert!(stderr.contains("--> game.kl:3:"), "stderr:\n{stderr}");
    assert!(
        stderr.contains("error: could not compile `game.kl` (1 error)"),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("watch: the last good code (generation 0) keeps running"),
        "stderr:\n{stderr}"
    );
    // The old code is still being called.
    let seen = complete_lines(&stdout).len();
    let lines = watch.wait_for_lines("more calls of the old code", seen + 5);
    assert!(lines.iter().all(|l| l.starts_with('1')), "{lines:?}");

    std::fs::write(&path, counter(2)).unwrap();
    let (stdout, stderr) = watch.wait_for("the fixed code", |out, err| {
        complete_lines(out).iter().any(|l| l.starts_with('2'))
            && err.contains("generation 1 active")
    });
    let lines = complete_lines(&stdout);
    assert_counts_to(&lines, 2);
    assert_eq!(stderr.matches("could not compile").count(), 1, "{stderr}");
}

#[test]
fn ctrl_c_stops_cleanly_with_a_summary() {
    let (dir, _path) = game(&counter(1));
    let mut watch = Watched::kiln(dir.path(), "game.kl", &["--hz", "100"]);
    watch.wait_for_lines("the first calls", 3);
    watch.interrupt();
    let status = watch.wait_for_exit();
    let (stdout, stderr) = watch.wait_for("the summary", |_, err| err.contains("stopped"));
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{stderr}");
    let summary = stderr.lines().last().unwrap();
    let calls: usize = summary
        .strip_prefix("watch: stopped after ")
        .and_then(|rest| rest.strip_suffix(" calls and 0 reloads"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected summary {summary:?}"));
    // Every call prints one line, except one that Ctrl-C interrupted before it printed.
    let printed = stdout.lines().count();
    assert!(
        calls == printed || calls == printed + 1,
        "{calls} calls, {printed} lines"
    );
    assert!(!stderr.contains("error"), "stderr:\n{stderr}");
}

#[test]
fn ctrl_c_interrupts_a_call_that_never_returns() {
    // Output reaches the pipe when the call returns or its buffer fills: this call fills it
    // before it starts looping, so that the test can see the call is running.
    let (dir, _path) = game(
        "fn tick() {\n    for i in 0..10000 {\n        print(i);\n    }\n    while true {}\n}\n",
    );
    let mut watch = Watched::kiln(dir.path(), "game.kl", &[]);
    watch.wait_for_lines("the call to start", 100);
    watch.interrupt();
    let status = watch.wait_for_exit();
    let stderr = watch.stderr();
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{stderr}");
    assert!(
        stderr.ends_with("watch: stopped after 1 calls and 0 reloads\n"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn a_runtime_error_pauses_calls_until_a_fix() {
    let failing = "global n: int = 0;\nfn tick() {\n    n += 1;\n    print(1000000 + n);\n    \
                   if n == 3 {\n        print(1 / (n - 3));\n    }\n}\n";
    let (dir, path) = game(failing);
    let mut watch = Watched::kiln(dir.path(), "game.kl", &["--hz", "100"]);
    let (_, stderr) = watch.wait_for("the runtime error", |_, err| err.contains("paused"));
    assert!(
        stderr.contains("error: division by zero\n  at game.kl:6:17 in fn tick\n"),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("watch: calls to `tick` paused until game.kl reloads successfully"),
        "stderr:\n{stderr}"
    );
    // Paused means no calls: nothing to wait for, so this one check waits a fixed time (at 100
    // calls a second, 30 calls' worth).
    thread::sleep(Duration::from_millis(300));
    let stdout = watch.stdout();
    assert_eq!(stdout, "1000001\n1000002\n1000003\n", "calls went on");

    std::fs::write(&path, counter(2)).unwrap();
    // Stdout and stderr are separate pipes: either may be read first.
    let (stdout, stderr) = watch.wait_for("the calls to resume", |out, err| {
        complete_lines(out)
            .iter()
            .filter(|l| l.starts_with('2'))
            .count()
            >= 3
            && err.contains("watch: calls to `tick` resume in generation ")
    });
    let lines = complete_lines(&stdout);
    assert_eq!(assert_counts_to(&lines, 2), 4, "{lines:?}");
    assert_eq!(stderr.matches("division by zero").count(), 1, "{stderr}");
}

#[test]
fn removing_the_called_function_pauses_calls_until_it_is_back() {
    let (dir, path) = game(&counter(1));
    let mut watch = Watched::kiln(dir.path(), "game.kl", &["--hz", "100"]);
    watch.wait_for_lines("the first calls", 1);
    std::fs::write(&path, "global n: int = 0;\nfn tock() {\n    print(0);\n}\n").unwrap();
    let (_, stderr) = watch.wait_for("the stale function", |_, err| err.contains("paused"));
    assert!(
        stderr.contains("error: game.kl has no function `tick`"),
        "stderr:\n{stderr}"
    );
    std::fs::write(&path, counter(2)).unwrap();
    let (stdout, _) = watch.wait_for("the function back", |out, err| {
        complete_lines(out).iter().any(|l| l.starts_with('2'))
            && err.contains("watch: calls to `tick` resume in generation ")
    });
    let lines = complete_lines(&stdout);
    assert_counts_to(&lines, 2);
}

#[test]
fn a_script_that_does_not_compile_at_first_is_loaded_once_fixed() {
    let (dir, path) = game("fn tick() {\n    print(;\n}\n");
    let mut watch = Watched::kiln(dir.path(), "game.kl", &["--hz", "100"]);
    let (stdout, stderr) = watch.wait_for("the diagnostics", |_, err| err.contains("waiting"));
    assert!(stdout.is_empty(), "stdout:\n{stdout}");
    assert!(
        stderr.contains("error: could not compile `game.kl` (1 error)\n")
            && stderr.ends_with("watch: waiting for game.kl to change\n"),
        "stderr:\n{stderr}"
    );
    save_by_rename(&path, &counter(1));
    let lines = watch.wait_for_lines("the first calls", 2);
    assert_counts_to(&lines, 1);
}

#[test]
fn the_called_function_must_exist_and_take_no_parameters() {
    let (dir, _path) = game("fn tick(dt: float) {\n    print(dt);\n}\n");
    let note = "  note: `--call NAME` chooses the function to call; it must take no parameters\n";
    let cases = [
        (
            "tick",
            "error: function `tick` has signature `fn(float)`, but `kiln watch` calls it \
             without arguments\n",
        ),
        ("step", "error: game.kl has no function `step`\n"),
    ];
    for (name, expected) in cases {
        let run = kiln(["watch", "game.kl", "--call", name], dir.path(), PATIENCE);
        assert_eq!(run.code, Some(1), "--call {name}: {}", run.describe());
        assert_eq!(
            run.stderr_text(),
            format!("{expected}{note}"),
            "--call {name}"
        );
        assert!(run.stdout.is_empty(), "--call {name}");
    }
}

#[test]
fn unusable_arguments_are_clear_errors() {
    let (dir, _path) = game(&counter(1));
    let run = kiln(["watch", "missing.kl"], dir.path(), PATIENCE);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let stderr = run.stderr_text();
    assert!(
        stderr.starts_with("error: cannot watch missing.kl: "),
        "stderr:\n{stderr}"
    );
    for hz in ["0", "-5", "NaN", "inf", "1e12", "1e-9"] {
        let flag = format!("--hz={hz}");
        let run = kiln(["watch", "game.kl", &flag], dir.path(), PATIENCE);
        assert_eq!(run.code, Some(1), "--hz {hz}: {}", run.describe());
        let stderr = run.stderr_text();
        assert!(
            stderr.starts_with("error: --hz must be a number of calls per second"),
            "--hz {hz}: {stderr}"
        );
    }
}

/// The hot-reload example's binary. `cargo test` builds examples, but `cargo test --test it`
/// does not, and an earlier build's binary may be stale; so the test builds it (a no-op when
/// it is up to date), with the profile this test binary was built with.
fn example_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/PROFILE/deps/it-HASH
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary is in target/PROFILE/deps");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a profile directory name");
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "--example", "hot_reload"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the example failed: {status}");
        let binary = profile_dir
            .join("examples")
            .join(format!("hot_reload{}", std::env::consts::EXE_SUFFIX));
        assert!(binary.exists(), "no example binary at {}", binary.display());
        binary
    })
}

/// A copy of the example's script in a temporary directory, so the test can edit it.
fn example_script() -> (tempfile::TempDir, PathBuf) {
    let original = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hot_reload.kl");
    game(&std::fs::read_to_string(original).unwrap())
}

/// The frames drawn in the example's output: each starts with the cursor moving home.
fn frames(stdout: &str) -> Vec<&str> {
    stdout.split("\x1b[H").skip(1).collect()
}

#[test]
fn the_example_draws_the_frames_it_was_asked_for() {
    let (_dir, script) = example_script();
    let mut command = crate::support::command(example_binary());
    command.arg("--frames").arg("20").arg(&script);
    let mut example = Watched::start(command);
    let status = example.wait_for_exit();
    let (stdout, stderr) = example.wait_for("the last line", |out, _| out.contains("stopped"));
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{stderr}");
    assert!(stderr.is_empty(), "stderr:\n{stderr}");
    let frames = frames(&stdout);
    assert_eq!(frames.len(), 20, "stdout:\n{stdout}");
    for frame in &frames {
        // The box's 18 rows between its top and bottom borders, five balls, a status line.
        assert_eq!(frame.matches("+------").count(), 2, "{frame}");
        assert_eq!(frame.matches('O').count(), 5, "{frame}");
        assert!(frame.contains("generation 0 | frame "), "{frame}");
    }
    assert!(stdout.ends_with("stopped after 20 frames at generation 0\n"));
}

#[test]
fn the_example_reloads_an_edited_script() {
    let (_dir, script) = example_script();
    let mut command = crate::support::command(example_binary());
    // Enough frames to outlast any slow machine; Ctrl-C ends the run.
    command.arg("--frames").arg("100000").arg(&script);
    let mut example = Watched::start(command);
    example.wait_for("the first frame", |out, _| frames(out).len() > 1);

    let original = std::fs::read_to_string(&script).unwrap();
    let edited = original.replace("GLYPH: int = 79;", "GLYPH: int = 64;");
    assert_ne!(
        edited, original,
        "the script has no `GLYPH: int = 79;` to edit"
    );
    save_by_rename(&script, &edited);
    example.wait_for("balls drawn as @", |out, _| {
        frames(out).last().is_some_and(|frame| {
            frame.contains('@') && !frame.contains('O') && frame.contains("generation 1 | ")
        })
    });

    save_by_rename(&script, &edited.replace("fn frame(", "fn frame(("));
    example.wait_for("the compile error under the box", |out, _| {
        frames(out).last().is_some_and(|frame| {
            frame.contains("the edit does not compile; generation 1 keeps running")
                && frame.contains("error: ")
                && frame.contains('@')
        })
    });

    example.interrupt();
    let status = example.wait_for_exit();
    let (stdout, stderr) = example.wait_for("the last line", |out, _| out.contains("stopped"));
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{stderr}");
    assert!(
        stdout.trim_end().ends_with("at generation 1"),
        "{}",
        stdout.lines().last().unwrap_or_default()
    );
}
