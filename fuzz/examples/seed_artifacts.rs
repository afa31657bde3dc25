//! Writes the seed corpus of the `artifact` target: real module artifacts, as the engine stores
//! them, for this machine and for aarch64, whose calls and page-relative references have
//! relocations of their own.
//!
//! ```text
//! cargo +nightly run --manifest-path fuzz/Cargo.toml --example seed_artifacts -- fuzz/corpus/artifact
//! ```
//!
//! The golden artifact of `kiln-cache`'s tests (`cache/tests/data/golden-v1.kilnart`) is copied
//! in beside them. Artifacts from another engine version or machine are as good a seed as any:
//! the target reads the fingerprint an input claims instead of this machine's.

use kiln_cache::artifact::MAGIC;
use kiln_cache::{CacheStore, Entry, Key, StoreError};
use kiln_jit::{Config, Engine, Target};
use kiln_lang::CheckOptions;
use kiln_lang::generate::{Shape, host_sample, random_program, realistic_program};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A store that only remembers what was written to it.
#[derive(Default)]
struct Recorder {
    written: Mutex<Vec<Vec<u8>>>,
}

impl CacheStore for Recorder {
    fn get(&self, _key: &Key) -> Result<Option<Entry>, StoreError> {
        Ok(None)
    }

    fn insert(&self, _key: &Key, bytes: &[u8]) -> Result<(), StoreError> {
        self.written.lock().unwrap().push(bytes.to_vec());
        Ok(())
    }
}

impl Recorder {
    /// The one module artifact written since the last call (the other entry is the file's
    /// pointer).
    fn take_artifact(&self) -> Vec<u8> {
        let mut written = self.written.lock().unwrap();
        let artifacts: Vec<Vec<u8>> = written
            .drain(..)
            .filter(|b| b.starts_with(&MAGIC))
            .collect();
        assert_eq!(artifacts.len(), 1, "one artifact per load");
        artifacts.into_iter().next().unwrap()
    }
}

fn engine(target: Target, cache: &Arc<Recorder>) -> Engine {
    let mut engine = Engine::new(Config {
        target,
        capture_output: true,
        cache: Some(cache.clone()),
        ..Config::default()
    })
    .expect("engine");
    engine
        .register(kiln_lang::generate::HOST_SAMPLE, host_sample)
        .expect("register");
    engine
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: seed_artifacts OUT_DIR"),
    );
    std::fs::create_dir_all(&out).expect("create the output directory");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).expect(path);

    // Small programs with every kind of symbol: functions, globals (scalar and array), string
    // literals, runtime calls (traps, printing, math), a host function.
    let realistic = realistic_program(
        &Shape {
            functions: 3,
            host_calls: true,
        },
        1,
    );
    let sources: Vec<(&str, String)> = vec![
        ("hello", read("examples/hello.kl")),
        ("math", read("tests/programs/builtins/math.kl")),
        ("recursion", read("tests/programs/items/recursion.kl")),
        (
            "array_copy",
            read("tests/programs/statements/array_copy.kl"),
        ),
        ("random_3", random_program(3)),
        ("realistic", realistic),
    ];
    let source = |label: &str| &sources.iter().find(|s| s.0 == label).expect(label).1;
    let options = CheckOptions::default();
    let cache = Arc::new(Recorder::default());
    let mut written = 0;
    let mut save = |label: &str, bytes: Vec<u8>| {
        let path = out.join(format!("{label}.kilnart"));
        std::fs::write(&path, &bytes).expect("write");
        println!("{} ({} bytes)", path.display(), bytes.len());
        written += 1;
    };

    // This machine: loading a module writes its artifact.
    let host = engine(Target::Host, &cache);
    for label in ["hello", "math", "recursion", "array_copy", "realistic"] {
        host.load_bytes(&format!("{label}.kl"), source(label).as_bytes(), &options)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        save(&format!("host-{label}"), cache.take_artifact());
    }
    // aarch64: `build_file`, as `kiln build --target` does.
    let aarch64 = engine(
        Target::Cross {
            triple: "aarch64-unknown-linux-gnu".to_string(),
            features: Vec::new(),
        },
        &cache,
    );
    let dir = std::env::temp_dir().join(format!("kiln-seed-artifacts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for label in ["math", "random_3", "realistic"] {
        let path = dir.join(format!("{label}.kl"));
        std::fs::write(&path, source(label)).expect("write source");
        aarch64
            .build_file(&path, &options)
            .unwrap_or_else(|e| panic!("aarch64 {label}: {e}"));
        save(&format!("aarch64-{label}"), cache.take_artifact());
    }
    let _ = std::fs::remove_dir_all(&dir);

    let golden = std::fs::read(root.join("cache/tests/data/golden-v1.kilnart")).expect("golden");
    save("golden-v1", golden);
    println!("{written} seed artifacts");
}
