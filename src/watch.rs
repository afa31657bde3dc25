//! `kiln watch FILE --call NAME --hz N`: calls a script function at a fixed rate and hot-reloads
//! FILE whenever it changes (LANGUAGE.md section 9: globals keep their values).
//!
//! Two threads share the module. The script thread calls NAME at deadlines `period` apart; a
//! call that overruns skips the deadlines it missed rather than running them in a burst to
//! catch up. The main thread watches FILE and reloads it; a reload compiles without waiting for
//! the running call, so frames keep coming while the new code compiles, and the next call runs
//! the new code.
//!
//! What the user sees: the script's `print` output on stdout, and on stderr nothing but status
//! lines (`watch: ...`), warnings and errors, so stdout can be piped.
//!
//! - **Start.** FILE must exist (it is watched before it is loaded, so no edit is missed). If it
//!   does not compile, the diagnostics are printed and the command waits for FILE to change.
//!   The first version that compiles must have `fn NAME` without parameters (its result, if
//!   any, is ignored); otherwise the command exits with status 1, because that is a mistake in
//!   the command line rather than an edit in progress.
//! - **Edits.** A change reloads FILE and prints the reload report and each global warning. A
//!   bad edit prints the diagnostics (or the read error, while an editor has the file deleted)
//!   and the last good code keeps running.
//! - **Failing calls.** A runtime error is printed in `kiln run`'s format, once, and calls pause
//!   until the next successful reload. The same holds when a reload removes `fn NAME` or gives
//!   it parameters: the error is printed once and calls resume when a reload brings back a
//!   function NAME without parameters. A resumed call that fails again pauses again.
//! - **Ctrl-C** interrupts the running call, stops, prints a summary (calls, reloads) and exits
//!   with status 0. A second Ctrl-C, should the first be stuck behind a long compile, exits at
//!   once with status 130.

use crate::{CacheArgs, SCRIPT_STACK, report};
use kiln::watcher::FileWatcher;
use kiln::{CheckOptions, Engine, Error, InterruptHandle, Module};
use kiln_cache::FileStore;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest the main thread waits for a file change before looking whether Ctrl-C was
/// pressed; it bounds how long stopping takes while nothing else happens.
const STOP_POLL: Duration = Duration::from_millis(50);

/// The slowest rate `--hz` accepts: one call a day. Slower rates are almost certainly a typo,
/// and a bounded period keeps every deadline computable.
const LONGEST_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// Runs `kiln watch` until Ctrl-C; the status is 1 only when it cannot start.
pub fn run(file: &Path, call: &str, hz: f64, cache: &CacheArgs) -> ExitCode {
    let Some(period) = call_period(hz) else {
        eprintln!(
            "error: --hz must be a number of calls per second from one a day ({:.8}) to \
             1000000000, not {hz}",
            1.0 / LONGEST_PERIOD.as_secs_f64()
        );
        return ExitCode::FAILURE;
    };
    let crate::CachedEngine {
        engine,
        store,
        open_warning,
    } = match crate::cached_engine(cache) {
        Ok(parts) => parts,
        Err(code) => return code,
    };
    if let Some(w) = &open_warning {
        eprintln!("warning: {w}");
    }
    let watcher = match FileWatcher::new(file) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let control = Arc::new(Control::default());
    if let Err(e) = install_ctrl_c(&control) {
        eprintln!("error: cannot handle Ctrl-C: {e}");
        return ExitCode::FAILURE;
    }
    let mut session = Session {
        file,
        call,
        watcher,
        control,
        reloads: 0,
        failed_reloads: 0,
        keys_in_use: Vec::new(),
        wrote_cache: false,
    };

    let Some(module) = session.first_load(&engine) else {
        session.summary(0);
        return ExitCode::SUCCESS;
    };
    if let Err(message) = callable(&module, call) {
        eprintln!("error: {message}");
        eprintln!("  note: `--call NAME` chooses the function to call; it must take no parameters");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "watch: calling `{call}` {hz} times a second; edit {} to reload it, Ctrl-C to stop",
        file.display()
    );
    let calls = match session.run_calls(&module, period) {
        Ok(calls) => calls,
        Err(e) => {
            eprintln!("error: cannot start the script thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    session.summary(calls);
    if let Some(store) = &store {
        session.collect_garbage(store);
    }
    ExitCode::SUCCESS
}

/// The time between calls at `hz` calls per second, if that is a rate the loop can keep.
fn call_period(hz: f64) -> Option<Duration> {
    let period = Duration::try_from_secs_f64(1.0 / hz).ok()?;
    (hz > 0.0 && !period.is_zero() && period <= LONGEST_PERIOD).then_some(period)
}

/// Why `kiln watch` cannot call function `name` of `module`, if it cannot.
fn callable(module: &Module, name: &str) -> Result<(), String> {
    match module.signature(name) {
        None => Err(format!("{} has no function `{name}`", module.file().name())),
        Some(sig) if !sig.params.is_empty() => Err(format!(
            "function `{name}` has signature `{sig}`, but `kiln watch` calls it without \
             arguments"
        )),
        Some(_) => Ok(()),
    }
}

/// What the Ctrl-C handler shares with the two threads.
#[derive(Default)]
struct Control {
    state: Mutex<ControlState>,
    /// Signalled when Ctrl-C is pressed and after every successful reload.
    wake: Condvar,
}

#[derive(Default)]
struct ControlState {
    stopping: bool,
    /// The loaded module's interrupt handle, once there is a module.
    interrupt: Option<InterruptHandle>,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, ControlState> {
        // Two plain fields: a panic while they were held cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Wakes the script thread. Taking the lock first means a thread that has just checked its
    /// condition under the lock is already waiting, so the wake-up cannot fall between the two.
    fn notify(&self) {
        let _state = self.lock();
        self.wake.notify_all();
    }
}

/// Makes Ctrl-C stop the loops and interrupt the running call, instead of killing the process.
fn install_ctrl_c(control: &Arc<Control>) -> Result<(), ctrlc::Error> {
    let control = control.clone();
    ctrlc::set_handler(move || {
        let mut state = control.lock();
        if state.stopping {
            // The first Ctrl-C has not taken effect: something long (a compile) is in the way.
            std::process::exit(130);
        }
        state.stopping = true;
        if let Some(interrupt) = &state.interrupt {
            interrupt.interrupt();
        }
        control.wake.notify_all();
    })
}

/// One `kiln watch` run: the file, its watcher, and what happened so far.
struct Session<'a> {
    file: &'a Path,
    call: &'a str,
    watcher: FileWatcher,
    control: Arc<Control>,
    reloads: u64,
    failed_reloads: u64,
    /// The cache entries the current code came from or went to, spared by garbage collection.
    keys_in_use: Vec<[u8; 32]>,
    /// Whether any load or reload stored a new entry in the cache.
    wrote_cache: bool,
}

impl Session<'_> {
    /// Loads the file, waiting for it to change after each failure; `None` if Ctrl-C came
    /// first.
    fn first_load(&mut self, engine: &Engine) -> Option<Module> {
        loop {
            match engine.load_file_with(self.file, &CheckOptions::default()) {
                Ok(module) => {
                    let stats = module.stats();
                    if let Some(w) = &stats.cache.warning {
                        eprintln!("warning: {w}");
                    }
                    self.keys_in_use = stats.cache.keys_used.clone();
                    self.wrote_cache |= !stats.cache.module_hit;
                    self.control.lock().interrupt = Some(module.interrupt_handle());
                    return Some(module);
                }
                Err(e) => {
                    report(&e);
                    eprintln!("watch: waiting for {} to change", self.file.display());
                    if !self.wait_for_change() {
                        return None;
                    }
                }
            }
        }
    }

    /// Blocks until the file changes (true) or Ctrl-C is pressed (false).
    fn wait_for_change(&self) -> bool {
        loop {
            if self.control.stopping() {
                return false;
            }
            if self.watcher.wait(STOP_POLL) {
                return true;
            }
        }
    }

    /// Calls the function on the script thread while this thread reloads the file on every
    /// change, until Ctrl-C; returns the number of calls made.
    fn run_calls(&mut self, module: &Module, period: Duration) -> std::io::Result<u64> {
        let caller = Caller {
            module: module.clone(),
            name: self.call.to_string(),
            period,
            control: self.control.clone(),
        };
        let script = std::thread::Builder::new()
            .name("kiln-watch".into())
            .stack_size(SCRIPT_STACK)
            .spawn(move || caller.run())?;
        while self.wait_for_change() {
            self.reload(module);
        }
        // The script thread never panics (calls report errors as values); if it somehow did,
        // the count it would have returned is all that is lost.
        Ok(script.join().unwrap_or(0))
    }

    /// Reloads the file and says how that went; a successful reload wakes paused calls.
    fn reload(&mut self, module: &Module) {
        match module.reload() {
            Ok(report) => {
                self.reloads += 1;
                eprintln!("watch: {report}");
                for w in &report.globals.warnings {
                    eprintln!("warning: {w}");
                }
                if let Some(w) = &report.stats.cache.warning {
                    eprintln!("warning: {w}");
                }
                self.keys_in_use = report.stats.cache.keys_used.clone();
                self.wrote_cache = true;
                self.control.notify();
            }
            Err(e) => {
                self.failed_reloads += 1;
                report(&e);
                eprintln!(
                    "watch: the last good code (generation {}) keeps running",
                    module.generation()
                );
            }
        }
    }

    /// The last line `kiln watch` prints.
    fn summary(&self, calls: u64) {
        let failed = match self.failed_reloads {
            0 => String::new(),
            n => format!(" ({n} failed)"),
        };
        eprintln!(
            "watch: stopped after {calls} calls and {} reloads{failed}",
            self.reloads + self.failed_reloads
        );
    }

    /// Keeps the cache under its size cap, as `kiln run` does after a run that wrote to it.
    fn collect_garbage(&self, store: &FileStore) {
        if self.wrote_cache {
            // A failed collection costs nothing now; the next run that writes tries again.
            let _ = crate::trim_cache(store, &self.keys_in_use);
        }
    }
}

/// The script thread's side: calls at fixed deadlines, pausing after a failed call.
struct Caller {
    module: Module,
    name: String,
    period: Duration,
    control: Arc<Control>,
}

impl Caller {
    /// Calls until Ctrl-C; returns the number of calls made.
    fn run(&self) -> u64 {
        let name = &self.name;
        let mut calls = 0u64;
        let mut deadline = Instant::now();
        // The generation that was current when a call failed: calls wait for a newer one.
        let mut paused_in: Option<u64> = None;
        let mut state = self.control.lock();
        while !state.stopping {
            if let Some(failed) = paused_in {
                let current = self.module.generation();
                if current <= failed {
                    state = self.wait(state, None);
                    continue;
                }
                paused_in = None;
                deadline = Instant::now();
                eprintln!("watch: calls to `{name}` resume in generation {current}");
            }
            let now = Instant::now();
            if now < deadline {
                state = self.wait(state, Some(deadline - now));
                continue;
            }
            drop(state);
            // Read before the call, which runs in this generation or a newer one: if the call
            // fails in a newer one, calls resume at once and the error shows again, rather than
            // waiting for a fix that has already arrived.
            let generation = self.module.generation();
            let result = self.module.call(name, &[]);
            calls += 1;
            state = self.control.lock();
            if state.stopping {
                // The call may have failed with `interrupted`: that is Ctrl-C doing its job.
                break;
            }
            if let Err(e) = result {
                self.report_failure(&e);
                eprintln!(
                    "watch: calls to `{name}` paused until {} reloads successfully",
                    self.module.file().name()
                );
                paused_in = Some(generation);
            }
            deadline = next_deadline(deadline, self.period, Instant::now());
        }
        calls
    }

    /// Waits for a wake-up (Ctrl-C, a reload) or `timeout`, whichever comes first.
    fn wait<'a>(
        &self,
        state: MutexGuard<'a, ControlState>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, ControlState> {
        // The state is two plain fields: a panic elsewhere cannot leave them inconsistent.
        match timeout {
            Some(timeout) => match self.control.wake.wait_timeout(state, timeout) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            },
            None => self
                .control
                .wake
                .wait(state)
                .unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Prints why a call failed, once per failure.
    fn report_failure(&self, error: &Error) {
        match error {
            // A reload removed the function or gave it parameters: say so in the words of the
            // start-up check, unless a newer reload has already put it right.
            Error::NotFound { .. } | Error::Signature { .. } => {
                match callable(&self.module, &self.name) {
                    Err(message) => eprintln!("error: {message}"),
                    Ok(()) => eprintln!("error: {error}"),
                }
            }
            _ => {
                report(error);
            }
        }
    }
}

/// The first deadline after `now` in the series `deadline + k * period`: deadlines that passed
/// while a call ran are skipped, so a slow call never causes a burst of calls to catch up.
fn next_deadline(deadline: Instant, period: Duration, now: Instant) -> Instant {
    let next = deadline + period;
    if next > now {
        return next;
    }
    let missed = (now - next).as_nanos() / period.as_nanos() + 1;
    u64::try_from(missed * period.as_nanos())
        .ok()
        .and_then(|nanos| next.checked_add(Duration::from_nanos(nanos)))
        .unwrap_or(now + period)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_on_time_call_keeps_the_beat() {
        let start = Instant::now();
        assert_eq!(
            next_deadline(start, 10 * MS, start + 3 * MS),
            start + 10 * MS
        );
    }

    #[test]
    fn a_slow_call_skips_the_deadlines_it_missed() {
        let start = Instant::now();
        // Deadlines at 10, 20 and 30 ms passed during a call that ended at 35 ms.
        assert_eq!(
            next_deadline(start, 10 * MS, start + 35 * MS),
            start + 40 * MS
        );
        // Ending exactly on a deadline misses it too: it is not in the future.
        assert_eq!(
            next_deadline(start, 10 * MS, start + 20 * MS),
            start + 30 * MS
        );
    }

    #[test]
    fn rates_out_of_range_are_refused() {
        assert_eq!(call_period(50.0), Some(20 * MS));
        assert_eq!(call_period(1e9), Some(Duration::from_nanos(1)));
        for hz in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-9, 1e10] {
            assert_eq!(call_period(hz), None, "--hz {hz}");
        }
    }
}
