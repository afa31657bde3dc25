//! The `kiln` command: `kiln run FILE` and `kiln check FILE` (LANGUAGE.md section 10).

use clap::{Parser, Subcommand};
use kiln::{CheckOptions, Config, Engine, Error, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "kiln", version, about = "Run and check Kiln scripts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile FILE and call its `fn main()`; exit with the low 8 bits of its int result.
    Run { file: PathBuf },
    /// Report FILE's compile errors without running it.
    Check {
        file: PathBuf,
        /// Check a module meant for embedding: do not require `fn main()`.
        #[arg(long)]
        lib: bool,
    },
}

/// Scripts may recurse 10,000 calls deep; run them on a thread whose stack is sure to hold that.
const SCRIPT_STACK: usize = 512 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { file } => {
            let run = std::thread::Builder::new()
                .name("kiln-main".into())
                .stack_size(SCRIPT_STACK)
                .spawn(move || run(&file));
            match run.map(|t| t.join()) {
                Ok(Ok(code)) => code,
                _ => {
                    eprintln!("error: could not start the script thread");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { file, lib } => check(&file, !lib),
    }
}

fn engine() -> Result<Engine, ExitCode> {
    Engine::new(Config::default()).map_err(|e| report(&e))
}

fn load(engine: &Engine, file: &Path, require_main: bool) -> Result<kiln::Module, Error> {
    let bytes = kiln_jit::read_script(file)?;
    engine.load_bytes(
        &file.display().to_string(),
        &bytes,
        &CheckOptions { require_main },
    )
}

fn run(file: &Path) -> ExitCode {
    let engine = match engine() {
        Ok(e) => e,
        Err(code) => return code,
    };
    let module = match load(&engine, file, true) {
        Ok(m) => m,
        Err(e) => return report(&e),
    };
    match module.call("main", &[]) {
        Ok(Some(Value::Int(status))) => ExitCode::from(status as u8),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

fn check(file: &Path, require_main: bool) -> ExitCode {
    let engine = match engine() {
        Ok(e) => e,
        Err(code) => return code,
    };
    let result = kiln_jit::read_script(file).and_then(|bytes| {
        engine.check_bytes(
            &file.display().to_string(),
            &bytes,
            &CheckOptions { require_main },
        )
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

/// Prints an error the way LANGUAGE.md section 10 says and returns the exit status for it.
fn report(error: &Error) -> ExitCode {
    match error {
        Error::Compile(e) => {
            eprint!("{e}");
            let n = e.diagnostics().len();
            let plural = if n == 1 { "" } else { "s" };
            eprintln!(
                "error: could not compile `{}` ({n} error{plural})",
                e.file().name()
            );
            ExitCode::from(1)
        }
        Error::Runtime(e) => {
            eprintln!("error: {}", e.kind);
            eprintln!("  at {} in fn {}", e.location, e.function);
            if let Some(message) = &e.message {
                eprintln!("  note: {message}");
            }
            ExitCode::from(2)
        }
        other => {
            eprintln!("error: {other}");
            ExitCode::from(1)
        }
    }
}
