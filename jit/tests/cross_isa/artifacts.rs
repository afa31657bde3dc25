//! The code under test: Kiln scripts compiled by an engine for each target, stored in its cache
//! as module artifacts and read back from there, as a machine of that target would.

use crate::check::Arch;
use kiln_cache::{CacheStore, Key, MemoryStore, VerifiedArtifact};
use kiln_jit::cache::decode_module;
use kiln_jit::compile::CompiledFunction;
use kiln_jit::keys::module_key;
use kiln_jit::{Config, Engine, Target};
use kiln_lang::CheckOptions;
use kiln_lang::program::{HostSignature, Signature, Type};
use std::sync::{Arc, OnceLock};

/// Calls between script functions: callees defined before and after their callers, several
/// sites calling one callee. Every function also takes its own address, for the runtime's
/// error reports (its entry checks the call depth and the stack, so every function can fail).
/// `leaf` prints, so it is called, not inlined.
const CALLS: &str = r#"
fn leaf(x: int) -> int {
    print(x);
    return x * 3 + 1;
}

fn twice(x: int) -> int {
    return leaf(leaf(x));
}

fn fold(n: int) -> int {
    let total = 0;
    for i in 0..n {
        total += twice(i) - later(i, n);
    }
    return total;
}

fn later(x: int, d: int) -> int {
    if x > 10 {
        return leaf(x);
    }
    return x / d;
}
"#;

/// Everything reached through an absolute address: string literals, globals, a host function,
/// runtime functions and, on x86-64 without SSE4.1, the libcalls for `floor` and `ceil`.
const EFFECTS: &str = r#"
global counter: int = 0;
global samples: [float; 8];

fn rounded(x: float) -> float {
    return floor(x) + ceil(x);
}

fn main() -> int {
    print("hello from another machine");
    print("");
    counter += 1;
    samples[counter % 8] = rounded(1.5) + sin(0.5);
    print(samples[1]);
    return scale(counter);
}
"#;

const SCRIPTS: [(&str, &str); 2] = [("calls.kl", CALLS), ("effects.kl", EFFECTS)];

/// The host function the scripts call.
const HOST: &str = "scale";

/// One function as read back from its module's artifact.
pub struct Function {
    pub module: &'static str,
    pub name: String,
    pub code: CompiledFunction,
}

impl Function {
    /// `module::name`, for messages.
    pub fn id(&self) -> String {
        format!("{}::{}", self.module, self.name)
    }
}

/// The functions of every script, compiled for `arch` (once per test binary).
pub fn functions(arch: Arch) -> &'static [Function] {
    static AARCH64: OnceLock<Vec<Function>> = OnceLock::new();
    static X86_64: OnceLock<Vec<Function>> = OnceLock::new();
    match arch {
        Arch::Aarch64 => AARCH64.get_or_init(|| build(arch)),
        Arch::X86_64 => X86_64.get_or_init(|| build(arch)),
    }
}

pub fn triple(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "aarch64-unknown-linux-gnu",
        Arch::X86_64 => "x86_64-unknown-linux-gnu",
    }
}

/// Builds every script with `Engine::build_file` for `arch` (default CPU features: no SSE4.1 on
/// x86-64) into a `MemoryStore`, then fetches each module artifact by its module key, verifies
/// and decodes it.
fn build(arch: Arch) -> Vec<Function> {
    let store = Arc::new(MemoryStore::new());
    let mut engine = Engine::new(Config {
        target: Target::Cross {
            triple: triple(arch).into(),
            features: Vec::new(),
        },
        cache: Some(store.clone()),
        ..Config::default()
    })
    .unwrap_or_else(|e| panic!("an engine for {}: {e}", triple(arch)));
    engine.register(HOST, |x: i64| x * 2).expect("register");
    let hosts = [HostSignature {
        name: HOST.into(),
        sig: Signature {
            params: vec![Type::Int],
            ret: Some(Type::Int),
        },
    }];
    let options = CheckOptions::default();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut functions = Vec::new();
    for (file, source) in SCRIPTS {
        let path = dir.path().join(file);
        std::fs::write(&path, source).expect("write the script");
        let stats = engine
            .build_file(&path, &options)
            .unwrap_or_else(|e| panic!("building {file} for {}: {e}", triple(arch)));
        let key = module_key(engine.fingerprint(), source.as_bytes(), &hosts, &options);
        assert!(
            stats.cache.keys_used.contains(&key),
            "{file}: build_file used another module key"
        );
        let entry = store
            .get(&Key(key))
            .expect("a memory store reads")
            .unwrap_or_else(|| panic!("{file}: no artifact under its module key"));
        let verified = VerifiedArtifact::new(entry, engine.fingerprint().as_bytes())
            .unwrap_or_else(|e| panic!("{file}: the stored artifact does not verify: {e}"));
        let module = decode_module(&verified.artifact(), &key)
            .unwrap_or_else(|e| panic!("{file}: the stored artifact does not decode: {e}"));
        for (f, meta) in module.functions.iter().zip(&module.metas) {
            functions.push(Function {
                module: file,
                name: meta.name.clone(),
                code: f.to_owned(),
            });
        }
    }
    functions
}
