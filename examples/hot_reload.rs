//! Hot reload in a game loop: balls bouncing in a box, drawn in the terminal 60 times a second,
//! with their behaviour in a Kiln script you edit while it runs.
//!
//! ```text
//! cargo run --release --example hot_reload
//! ```
//!
//! Then open `examples/hot_reload.kl` in an editor, change a constant (`GRAVITY`, `BOUNCE`,
//! `GLYPH`, `BALLS`) or the code of `fn frame`, and save. The example reloads the script between
//! two frames; the balls keep their places and speeds (they are script globals), and the status
//! line under the box says what the reload compiled. Save a mistake and its compile error
//! appears under the box while the last good code keeps running; a runtime error (try
//! `bounces / 0`) pauses the balls until the next good save. Ctrl-C stops.
//!
//! `hot_reload [--frames N] [SCRIPT]`: `--frames N` stops after N frames (tests use it), and
//! SCRIPT runs another copy of the script.

use kiln::watcher::FileWatcher;
use kiln::{Config, Engine, Error, ReloadReport};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The inside of the box, in characters; the script asks for it with `width()` and `height()`.
const WIDTH: usize = 60;
const HEIGHT: usize = 18;
const FRAME: Duration = Duration::from_nanos(1_000_000_000 / 60);

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}\nusage: hot_reload [--frames N] [SCRIPT]");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{}", message.trim_end());
            ExitCode::FAILURE
        }
    }
}

struct Options {
    script: PathBuf,
    /// Stop after this many frames; run until Ctrl-C without it.
    frames: Option<u64>,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/hot_reload.kl"),
            frames: None,
        };
        let mut script_given = false;
        while let Some(arg) = args.next() {
            if arg == "--frames" {
                let n = args.next().ok_or("--frames needs a number of frames")?;
                let n = n
                    .parse()
                    .map_err(|_| format!("--frames needs a number of frames, not `{n}`"))?;
                options.frames = Some(n);
            } else if arg.starts_with('-') || script_given {
                return Err(format!("unexpected argument `{arg}`"));
            } else {
                options.script = PathBuf::from(arg);
                script_given = true;
            }
        }
        Ok(options)
    }
}

/// The characters the script plots in one frame.
struct Canvas {
    rows: Vec<[u8; WIDTH]>,
}

impl Canvas {
    fn clear(&mut self) {
        self.rows.iter_mut().for_each(|row| row.fill(b' '));
    }

    /// Puts `glyph` (an ASCII code) at column `x`, row `y`; a point outside the box is not
    /// drawn, and a code that is not a visible ASCII character is drawn as `?`.
    fn plot(&mut self, x: i64, y: i64, glyph: i64) {
        let (Ok(x), Ok(y)) = (usize::try_from(x), usize::try_from(y)) else {
            return;
        };
        if let Some(cell) = self.rows.get_mut(y).and_then(|row| row.get_mut(x)) {
            *cell = u8::try_from(glyph)
                .ok()
                .filter(u8::is_ascii_graphic)
                .unwrap_or(b'?');
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    let canvas = Arc::new(Mutex::new(Canvas {
        rows: vec![[b' '; WIDTH]; HEIGHT],
    }));
    let engine = engine_drawing_on(&canvas).map_err(|e| describe(&e))?;
    // Watching starts before loading, so that an edit saved while the script compiles is seen.
    let watcher = FileWatcher::new(&options.script).map_err(|e| format!("error: {e}"))?;
    let module = engine
        .load_file(&options.script)
        .map_err(|e| describe(&e))?;
    // A typed handle follows reloads; it fails with `Error::Stale` while a reload has removed
    // `frame` or changed its signature, and works again once a reload brings it back.
    let frame = module
        .typed::<(f64,), ()>("frame")
        .map_err(|e| describe(&e))?;

    let stop = Arc::new(AtomicBool::new(false));
    let on_ctrl_c = stop.clone();
    let interrupt = module.interrupt_handle();
    ctrlc::set_handler(move || {
        on_ctrl_c.store(true, Ordering::Relaxed);
        // Stops a frame that never returns, such as one caught in an endless loop by an edit.
        interrupt.interrupt();
    })
    .map_err(|e| format!("error: cannot handle Ctrl-C: {e}"))?;

    // The lines under the box: what the last reload did, or what went wrong.
    let mut status = "loaded; waiting for an edit".to_string();
    // After a failed call, frames stop until a reload succeeds (the error would only repeat).
    let mut paused = false;
    let name = options.script.file_name().map_or_else(
        || options.script.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let mut out = std::io::stdout().lock();
    let mut drawn = 0u64;
    let mut deadline = Instant::now();
    // Clear the screen once; each frame then only moves the cursor home and overwrites.
    write!(out, "\x1b[2J").map_err(|e| e.to_string())?;
    while !stop.load(Ordering::Relaxed) && options.frames.is_none_or(|n| drawn < n) {
        if watcher.changed() {
            match module.reload() {
                Ok(report) => {
                    status = summarize(&report);
                    paused = false;
                }
                Err(e) => {
                    let still = if paused {
                        "the balls stay paused".to_string()
                    } else {
                        format!("generation {} keeps running", module.generation())
                    };
                    status = format!("the edit does not compile; {still}\n{}", describe(&e));
                }
            }
        }
        if !paused {
            canvas
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            if let Err(e) = frame.call((FRAME.as_secs_f64(),)) {
                status = format!("paused until the next good save\n{}", describe(&e));
                paused = true;
            }
        }
        let header = format!(
            "generation {} | frame {drawn} | bounces {} | edit {name} and save",
            module.generation(),
            // The script may have dropped or retyped the global in an edit.
            module
                .global::<i64>("bounces")
                .map_or_else(|_| "-".to_string(), |n| n.to_string()),
        );
        let picture = draw(
            &canvas.lock().unwrap_or_else(PoisonError::into_inner),
            &header,
            &status,
        );
        out.write_all(picture.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
        drawn += 1;

        // Sleep until the next frame is due; frames missed while this one ran are skipped, not
        // drawn in a burst.
        deadline += FRAME;
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        } else {
            deadline = now;
        }
    }
    writeln!(
        out,
        "stopped after {drawn} frames at generation {}",
        module.generation()
    )
    .map_err(|e| e.to_string())
}

/// An engine whose scripts draw on `canvas`: `plot(x, y, glyph)` puts a character on it, and
/// `width()` and `height()` give its size.
fn engine_drawing_on(canvas: &Arc<Mutex<Canvas>>) -> Result<Engine, Error> {
    let mut engine = Engine::new(Config::default())?;
    let canvas = canvas.clone();
    engine.register("plot", move |x: i64, y: i64, glyph: i64| {
        // A poisoned lock still guards a usable canvas: plotting only ever sets whole cells.
        let mut canvas = canvas.lock().unwrap_or_else(PoisonError::into_inner);
        canvas.plot(x, y, glyph);
    })?;
    engine.register("width", || WIDTH as i64)?;
    engine.register("height", || HEIGHT as i64)?;
    Ok(engine)
}

/// One frame as terminal output: cursor home, the box, the header and status lines, then clear
/// whatever an earlier, longer frame left below. Each line ends by clearing to the end of the
/// line, so a shorter line leaves nothing of a longer one behind.
fn draw(canvas: &Canvas, header: &str, status: &str) -> String {
    let border = format!("+{}+", "-".repeat(WIDTH));
    let mut picture = String::from("\x1b[H");
    let rows = canvas
        .rows
        .iter()
        .map(|row| format!("|{}|", String::from_utf8_lossy(row)));
    let lines = std::iter::once(border.clone())
        .chain(rows)
        .chain([border, header.to_string()])
        .chain(status.lines().map(str::to_string));
    for line in lines {
        picture.push_str(&line);
        picture.push_str("\x1b[K\n");
    }
    picture.push_str("\x1b[J");
    picture
}

/// A reload's report as the status lines show it: its time and counts, and a line for each
/// global it re-initialized.
fn summarize(report: &ReloadReport) -> String {
    let mut summary = format!(
        "reloaded in {:.2} ms: {} compiled, {} reused",
        report.active.as_secs_f64() * 1e3,
        report.compiled(),
        report.reused()
    );
    for warning in &report.globals.warnings {
        summary.push_str(&format!("\nwarning: {warning}"));
    }
    summary
}

/// An error as the example shows it: compile errors render as diagnostics (each starting with
/// `error:`), anything else as one `error:` line.
fn describe(error: &Error) -> String {
    match error {
        Error::Compile(e) => e.to_string(),
        other => format!("error: {other}"),
    }
}
