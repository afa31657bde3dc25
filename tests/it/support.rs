//! Running the real `kiln` binary from tests: with a time limit, capturing both output streams.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The binary Cargo built for this test run.
pub const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// The environment variable naming the program that runs this crate's binaries when this
/// machine cannot run them itself: the suite built for aarch64 and run under qemu-user on
/// x86-64 sets `KILN_TEST_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"` (words split on
/// whitespace), because the kernel cannot exec an aarch64 `kiln` without binfmt_misc. Unset, or
/// empty, the binaries run directly.
pub const RUNNER_VAR: &str = "KILN_TEST_RUNNER";

/// `limit` for a wait on `kiln`, stretched under a runner: qemu-user runs every process 10 to 20
/// times slower, and the suite's own processes compete for the same cores, so a run that takes a
/// second natively can take a minute there. A hang still fails: the emulated suite has a limit of
/// its own (scripts/test-aarch64.sh).
pub fn patient(limit: Duration) -> Duration {
    let emulated = std::env::var(RUNNER_VAR).is_ok_and(|r| !r.trim().is_empty());
    if emulated { limit * 5 } else { limit }
}

/// The words that start `program` (`kiln`, or another binary this crate built) on this machine:
/// the runner from [`RUNNER_VAR`], if any, then `program`. For a wrapper that takes the command
/// as arguments (`sh -c '... exec "$0" "$@"'`); otherwise use [`command`].
pub fn launcher(program: impl AsRef<OsStr>) -> Vec<OsString> {
    let runner = std::env::var(RUNNER_VAR).unwrap_or_default();
    let mut words: Vec<OsString> = runner.split_whitespace().map(OsString::from).collect();
    words.push(program.as_ref().to_os_string());
    words
}

/// A `Command` that starts `program` through [`launcher`]. Every test that spawns `kiln` (or the
/// examples) builds its command here, so that under emulation each one goes through the runner.
/// A signal sent to the child then reaches the runner: qemu-user passes SIGINT on to the
/// program, and SIGKILL ends both.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut words = launcher(program).into_iter();
    let mut command = Command::new(words.next().expect("the launcher names the program"));
    command.args(words);
    command
}

/// How one run of the binary ended, and what it wrote.
pub struct Run {
    /// The exit code; `None` when the process was killed (by a signal or the time limit).
    pub code: Option<i32>,
    /// The signal that ended the process, if one did (Unix only).
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    /// How the process ended, for failure messages.
    pub fn describe(&self) -> String {
        match (self.timed_out, self.code, self.signal) {
            (true, _, _) => "killed after exceeding its time limit".to_string(),
            (false, Some(code), _) => format!("exit status {code}"),
            (false, None, Some(signal)) => format!("killed by signal {signal}"),
            (false, None, None) => "ended without an exit status".to_string(),
        }
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `kiln ARGS...` in `cwd` with no standard input, killing it once `limit` has passed.
///
/// Both output streams are drained on their own threads while the process runs, so a process
/// that writes a lot can never block on a full pipe and be mistaken for a hang.
pub fn kiln<I, S>(args: I, cwd: &Path, limit: Duration) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    kiln_with_cache(args, cwd, limit, private_cache())
}

/// Like [`kiln`], with the compile cache in `cache_dir`.
pub fn kiln_with_cache<I, S>(args: I, cwd: &Path, limit: Duration, cache_dir: &Path) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = command(KILN);
    command
        .args(args)
        .current_dir(cwd)
        .env("KILN_CACHE_DIR", cache_dir)
        .env_remove("KILN_CACHE");
    run_with_limit(command, limit)
}

/// A cache directory of this test process's own, so that tests never read or write the user's
/// real cache (`--cache-dir` in a test's arguments still takes precedence).
pub fn private_cache() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary cache directory"))
        .path()
}

/// Runs a prepared command (the binary under a wrapper, or with its own environment) the way
/// [`kiln`] runs the binary: no standard input, both streams captured, killed (SIGKILL on Unix)
/// once `limit` has passed. A short `limit` is also how a test kills a run part-way through.
pub fn run_with_limit(command: Command, limit: Duration) -> Run {
    run_until(command, limit, Duration::from_millis(5), &mut || false)
}

/// [`run_with_limit`], also killing the process as soon as `stop` returns true; `stop` is asked
/// every `poll` while the process runs (so a test can kill it at a moment it observes, such as a
/// file appearing). Its `Run` has `timed_out` false when `stop` ended it.
pub fn run_until(
    mut command: Command,
    limit: Duration,
    poll: Duration,
    stop: &mut dyn FnMut() -> bool,
) -> Run {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let (status, timed_out) = wait_with_limit(&mut child, limit, poll, stop);
    Run {
        code: status.code(),
        signal: signal_of(&status),
        timed_out,
        stdout: stdout.join().expect("the stdout reader does not panic"),
        stderr: stderr.join().expect("the stderr reader does not panic"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error can only mean the process went away; what was read so far is the output.
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn wait_with_limit(
    child: &mut Child,
    limit: Duration,
    poll: Duration,
    stop: &mut dyn FnMut() -> bool,
) -> (std::process::ExitStatus, bool) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waiting on kiln") {
            return (status, false);
        }
        let timed_out = Instant::now() >= deadline;
        if timed_out || stop() {
            // Killing can only fail if the process has just exited; `wait` reaps it either way.
            let _ = child.kill();
            return (child.wait().expect("waiting on killed kiln"), timed_out);
        }
        thread::sleep(poll);
    }
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn signal_of(_status: &std::process::ExitStatus) -> Option<i32> {
    None
}
