//! The keys of the function cache: the engine [`Fingerprint`], the per-function key
//! ([`function_key`]) and the module key ([`module_key`]).
//!
//! This module owns what a cached artifact is *for*: two engines that compute the same key must
//! be able to run the same machine code. It computes keys only; storing bytes under them is the
//! `kiln-cache` crate's job, and deciding when to look them up is loading's.
//!
//! # Why the keys are shaped as they are
//!
//! - **The fingerprint** names everything outside a function that decides its machine code: the
//!   Cranelift version, the target triple and ISA name, every shared setting, every ISA setting
//!   (the CPU features `cranelift-native` detected), and [`KILN_ABI_VERSION`]. Flags are read by
//!   iterating Cranelift's own tables, and Kiln's [`CodegenOptions`] are destructured with every
//!   field named, so a new setting is either hashed automatically or breaks the build until
//!   someone decides whether it changes code. The one setting deliberately left out is the IR
//!   verifier (see [`Fingerprint::new`]).
//! - **A function key** is Cranelift's `incremental_cache::compute_cache_key` plus the
//!   fingerprint. Cranelift hashes the function's body, its signature, the *linkage* of each
//!   callee (colocated or not) and the order its callees were declared in, but not the
//!   function's own name, not its external-name table (so not the identities of its callees or
//!   data) and not its base source location. That is exactly the reuse Kiln wants: renaming a
//!   function, moving it within its file, editing another function or renaming a callee leaves
//!   its key unchanged. Cranelift does not hash its own version (its version marker hashes
//!   nothing), which is one reason the fingerprint does.
//! - **What the function key adds** besides the fingerprint: the *kind* of each entry of the
//!   function's symbol table, in table order, without user-chosen names. A relocation to a script
//!   function, a host function, a global or a string literal is resolved in different ways, so
//!   code that calls a host function must never be reused where a script function is called,
//!   even if some future lowering made the two call sequences identical. Runtime functions are
//!   hashed with their ABI symbol name: it is fixed by Kiln, not chosen by the script.
//! - **A module key** covers everything the front end and lowering read: the source bytes, the
//!   registered host signatures (names and types, in order), the [`CheckOptions`], the
//!   fingerprint and [`KILN_PIPELINE_VERSION`]. A module hit skips parsing, checking and
//!   lowering, so the key must change whenever any of their inputs or their code does.
//!
//! # What a caller must do with a hit
//!
//! Because callee and data names are not in a function key, a cached function's relocations must
//! be resolved through the symbol table of the function being loaded *now*
//! ([`LoweredFunction::symbols`], same length and kinds, by index), never through the names
//! stored when the code was first compiled: after a callee is renamed the old name no longer
//! exists. Likewise the error-site spans ([`LoweredFunction::sites`]) are positions in the
//! current file and come from the current lowering; the code only carries site indices.
//!
//! Compute a function's key before compiling it: compiling optimizes the CLIF in place.
//!
//! Keys are plain `[u8; 32]` BLAKE3 outputs. The cache crate wraps them as `kiln_cache::Key(..)`;
//! keeping this module free of that crate lets the JIT compute keys without depending on the
//! storage layer (and without any Cranelift type leaking into `kiln-cache`).

use crate::compile::CodegenOptions;
use crate::lower::{LoweredFunction, Symbol};
use cranelift_codegen::incremental_cache::compute_cache_key;
use cranelift_codegen::isa::{self, OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use kiln_lang::CheckOptions;
use kiln_lang::program::{HostSignature, Signature, Type};
use std::fmt;
use std::hash::{Hash, Hasher};

/// The version of the contract between JIT code and the Rust side of Kiln.
///
/// Bump it on any change to: the [`VmCtx`](crate::runtime::VmCtx) layout or its `OFFSET_*`
/// constants; the trap codes ([`trap_code`](crate::runtime::trap_code), `TRAP_LOCATE`,
/// `NO_SITE`); the name or signature of any [`RuntimeFn`](crate::runtime::RuntimeFn) or of the
/// libcalls Kiln provides; the script-function ABI (`(vmctx, budget, params...) -> ret?`, the
/// scalar type mapping, the after-call trap check); how host calls pass arguments and results
/// (`kiln_rt_call_host`, the host record); or the builtin table. Cached code compiled against an
/// older contract would call the new runtime with the old conventions; bumping this changes
/// every fingerprint, so such code is never found again.
pub const KILN_ABI_VERSION: u32 = 4;

/// The version of what the front end and lowering produce from a given source.
///
/// Only the module key hashes it: a module hit skips parsing, checking and lowering, so a change
/// to any of them (a bug fix in constant folding, a new way to lower a loop) must invalidate
/// module entries even when the crate version stays the same, as it does between commits. Bump
/// it on any change to `kiln-lang`'s checker or to `lower` that can change the program or CLIF a
/// source produces. Function keys need no such number: they hash the CLIF itself.
pub const KILN_PIPELINE_VERSION: u32 = 2;

/// Shared Cranelift settings that only make Cranelift check its own work: with them on, a
/// function either compiles to the same bytes as with them off or does not compile at all.
/// They are kept out of the fingerprint and neutralised in the key ISA so that debug builds
/// (verifier on by default) and release builds (off) share one cache.
const CHECK_ONLY_SHARED_FLAGS: &[&str] = &["enable_verifier"];

// Distinct BLAKE3 key-derivation contexts: a fingerprint, a function key and a module key can
// never collide with one another, even over identical bytes.
const FINGERPRINT_CONTEXT: &str = "kiln 2025 engine fingerprint v1";
const FUNCTION_CONTEXT: &str = "kiln 2025 function cache key v1";
const MODULE_CONTEXT: &str = "kiln 2025 module cache key v1";

/// Identifies the machine code an engine produces: what every cache key and artifact carries.
///
/// Two engines with equal fingerprints compile equal CLIF to equal bytes. Artifacts for
/// different fingerprints live side by side: the fingerprint is part of every key.
#[derive(Clone)]
pub struct Fingerprint {
    hash: [u8; 32],
    description: String,
    /// The ISA function keys are computed against: the engine's ISA with the check-only
    /// settings at fixed values, because Cranelift's own key hashes every shared flag.
    key_isa: OwnedTargetIsa,
}

impl Fingerprint {
    /// The fingerprint of code compiled by `isa` (as built by
    /// [`host_isa`](crate::compile::host_isa)) under `options`.
    ///
    /// Fails only if the ISA cannot be rebuilt from its own settings, which would mean Cranelift
    /// derives some setting it does not report; keys computed then could not be trusted.
    pub fn new(isa: &dyn TargetIsa, options: CodegenOptions) -> Result<Fingerprint, String> {
        let CodegenOptions {
            // Not hashed. The verifier only checks the IR before compiling: a function either
            // passes and compiles to exactly the bytes it would without the check, or fails and
            // compiles to nothing, so it never changes code that reaches the cache. Hashing it
            // would split the cache between debug and release builds, whose defaults differ.
            // It reaches Cranelift as `enable_verifier`, one of `CHECK_ONLY_SHARED_FLAGS`.
            verify: _,
        } = options;

        let mut shared: Vec<(&'static str, String)> = isa
            .flags()
            .iter()
            .filter(|v| !CHECK_ONLY_SHARED_FLAGS.contains(&v.name))
            .map(|v| (v.name, v.value_string()))
            .collect();
        let mut isa_flags: Vec<(&'static str, String)> = isa
            .isa_flags()
            .iter()
            .map(|v| (v.name, v.value_string()))
            .collect();
        // Sorted by name, so the encoding does not depend on the order Cranelift's generated
        // tables happen to list settings in.
        shared.sort_unstable();
        isa_flags.sort_unstable();

        let triple = isa.triple().to_string();
        let mut e = Encoder::new(FINGERPRINT_CONTEXT);
        e.str(cranelift_codegen::VERSION);
        e.u32(KILN_ABI_VERSION);
        e.str(&triple);
        e.str(isa.name());
        // The opt level is one of the shared settings (`opt_level`), hashed with the rest.
        for list in [&shared, &isa_flags] {
            e.len(list.len());
            for (name, value) in list {
                e.str(name);
                e.str(value);
            }
        }

        let opt_level = shared
            .iter()
            .find(|(name, _)| *name == "opt_level")
            .map_or("?", |(_, v)| v.as_str());
        let join = |list: &[(&str, String)]| {
            list.iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let description = format!(
            "cranelift {}, kiln abi {}, {} ({}), opt_level={}\nshared flags: {}\nisa flags: {}",
            cranelift_codegen::VERSION,
            KILN_ABI_VERSION,
            triple,
            isa.name(),
            opt_level,
            join(&shared),
            join(&isa_flags),
        );

        let overrides: Vec<(&str, &str)> = CHECK_ONLY_SHARED_FLAGS
            .iter()
            .map(|&name| (name, "false"))
            .collect();
        let key_isa = rebuild_isa(isa, &overrides)?;
        check_same_settings(isa, &*key_isa)?;

        Ok(Fingerprint {
            hash: e.finish(),
            description,
            key_isa,
        })
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.hash
    }

    /// Every hashed input, for `kiln cache stats` and verbose logs: a summary line (Cranelift
    /// version, ABI version, target, opt level), then the shared and ISA settings.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The hash in lowercase hexadecimal.
    pub fn to_hex(&self) -> String {
        hex(&self.hash)
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}

impl Eq for Fingerprint {}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fingerprint")
            .field("hash", &self.to_hex())
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// The summary line and the first 16 hex digits of the hash.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = self.description.lines().next().unwrap_or("");
        write!(f, "{summary} [{}]", &self.to_hex()[..16])
    }
}

/// The cache key of one lowered function under `fingerprint`.
///
/// Call it before compiling `lowered`. Equal keys mean equal machine code and equal relocations
/// *by symbol index*: resolve a hit's relocations through `lowered.symbols` (see the module
/// documentation).
pub fn function_key(fingerprint: &Fingerprint, lowered: &LoweredFunction) -> [u8; 32] {
    let LoweredFunction {
        clif,
        symbols,
        // Not hashed: spans are positions in the file, kept beside the code, never in it. The
        // code passes a site *index* to the runtime, and that index is an immediate in the CLIF
        // Cranelift hashes. Leaving spans out is what lets a function move within its file.
        sites: _,
    } = lowered;
    let cranelift_key = compute_cache_key(&*fingerprint.key_isa, clif);

    let mut e = Encoder::new(FUNCTION_CONTEXT);
    e.fixed(&fingerprint.hash);
    // `CacheKeyHash` keeps its 32 bytes private; its `Hash` impl writes all of them.
    cranelift_key.hash(&mut e);
    e.len(symbols.len());
    for symbol in symbols {
        match symbol {
            // User-chosen names are left out so that renaming a callee, a global or editing a
            // string literal of the same length reuses the code; a hit is relinked against the
            // current names by index.
            Symbol::Function(_) => e.u8(1),
            Symbol::Global(_) => e.u8(2),
            Symbol::Host(_) => e.u8(3),
            Symbol::Runtime(f) => {
                e.u8(4);
                e.str(f.symbol());
            }
            Symbol::Str(_) => e.u8(5),
        }
    }
    e.finish()
}

/// The cache key of a whole module: a hit may skip the front end and lowering entirely.
///
/// `source` is the file's bytes as read (before UTF-8 decoding, so a file that fails to decode
/// has a key too). The file's name is not an input: runtime errors name the file the loader was
/// given, and the same bytes at two paths share one entry.
pub fn module_key(
    fingerprint: &Fingerprint,
    source: &[u8],
    hosts: &[HostSignature],
    options: &CheckOptions,
) -> [u8; 32] {
    let mut e = Encoder::new(MODULE_CONTEXT);
    e.fixed(&fingerprint.hash);
    e.u32(KILN_PIPELINE_VERSION);
    // A release changes the front end and lowering without anyone remembering to bump
    // `KILN_PIPELINE_VERSION`; the crate version catches that case.
    e.str(env!("CARGO_PKG_VERSION"));
    e.bytes(source);
    // In order: the checker turns a host call into an index into this list.
    e.len(hosts.len());
    for HostSignature {
        name,
        sig: Signature { params, ret },
    } in hosts
    {
        e.str(name);
        e.len(params.len());
        for &param in params {
            e.u8(type_code(param));
        }
        match ret {
            None => e.u8(0),
            Some(t) => {
                e.u8(1);
                e.u8(type_code(*t));
            }
        }
    }
    let CheckOptions {
        // Hashed: a module checked without requiring `main` (`kiln check --lib`, an embedder)
        // must not satisfy `kiln run`, which needs the checker's verdict on `main`.
        require_main,
    } = options;
    e.u8(u8::from(*require_main));
    e.finish()
}

/// A stable code per scalar type; a new type breaks the build here rather than reusing a code.
fn type_code(ty: Type) -> u8 {
    match ty {
        Type::Int => 1,
        Type::Float => 2,
        Type::Bool => 3,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rebuilds `isa` from its own settings, with `overrides` (shared or ISA setting name, value)
/// applied, through `isa::lookup` rather than `cranelift_native`, so the result does not depend
/// on the CPU it is built on.
fn rebuild_isa(isa: &dyn TargetIsa, overrides: &[(&str, &str)]) -> Result<OwnedTargetIsa, String> {
    let mut used = vec![false; overrides.len()];
    let mut value_of = |v: &settings::Value| match overrides.iter().position(|(n, _)| *n == v.name)
    {
        Some(i) => {
            used[i] = true;
            overrides[i].1.to_string()
        }
        None => v.value_string(),
    };
    let mut shared = settings::builder();
    for v in isa.flags().iter() {
        let value = value_of(&v);
        shared
            .set(v.name, &value)
            .map_err(|e| format!("cranelift setting {}={value}: {e}", v.name))?;
    }
    let mut builder = isa::lookup(isa.triple().clone())
        .map_err(|e| format!("cranelift has no ISA for {}: {e}", isa.triple()))?;
    for v in isa.isa_flags() {
        let value = value_of(&v);
        builder
            .set(v.name, &value)
            .map_err(|e| format!("cranelift ISA setting {}={value}: {e}", v.name))?;
    }
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(format!("no cranelift setting is named {}", overrides[i].0));
    }
    builder
        .finish(settings::Flags::new(shared))
        .map_err(|e| format!("cannot rebuild the ISA for {}: {e}", isa.triple()))
}

/// Checks that `rebuilt` has every setting of `isa` except the check-only ones, so keys computed
/// against it stand for code compiled by `isa`.
fn check_same_settings(isa: &dyn TargetIsa, rebuilt: &dyn TargetIsa) -> Result<(), String> {
    let list = |values: Vec<settings::Value>| -> Vec<(&'static str, String)> {
        values
            .iter()
            .filter(|v| !CHECK_ONLY_SHARED_FLAGS.contains(&v.name))
            .map(|v| (v.name, v.value_string()))
            .collect()
    };
    let same = isa.name() == rebuilt.name()
        && isa.triple() == rebuilt.triple()
        && list(isa.flags().iter().collect()) == list(rebuilt.flags().iter().collect())
        && list(isa.isa_flags()) == list(rebuilt.isa_flags());
    if same {
        Ok(())
    } else {
        Err(format!(
            "cannot reproduce the {} ISA from its settings; the function cache cannot key its code",
            isa.triple()
        ))
    }
}

/// Feeds an unambiguous encoding into BLAKE3: fixed-width little-endian integers, and every
/// variable-length item (string, byte string, list) preceded by its length.
struct Encoder(blake3::Hasher);

impl Encoder {
    fn new(context: &str) -> Encoder {
        Encoder(blake3::Hasher::new_derive_key(context))
    }

    fn u8(&mut self, v: u8) {
        self.0.update(&[v]);
    }

    fn u32(&mut self, v: u32) {
        self.0.update(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.0.update(&(n as u64).to_le_bytes());
    }

    fn fixed(&mut self, bytes: &[u8; 32]) {
        self.0.update(bytes);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.0.update(bytes);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn finish(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// Lets `Hash` impls (Cranelift's `CacheKeyHash`) write into the encoding. `Hash` for byte
/// arrays writes a length and then the bytes, so the encoding stays unambiguous.
impl Hasher for Encoder {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Never called: the encoder is only ever finished through [`Encoder::finish`]. Returns the
    /// first eight bytes of the hash so far rather than panicking.
    fn finish(&self) -> u64 {
        let hash = self.0.finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::host_isa;
    use crate::lower::lower_function;
    use cranelift_codegen::ir::ExternalName;
    use cranelift_frontend::FunctionBuilderContext;
    use std::collections::{BTreeMap, BTreeSet};

    fn isa(verify: bool) -> OwnedTargetIsa {
        host_isa(CodegenOptions { verify }).unwrap()
    }

    fn fingerprint(isa: &dyn TargetIsa, verify: bool) -> Fingerprint {
        Fingerprint::new(isa, CodegenOptions { verify }).unwrap()
    }

    #[test]
    fn this_machine_named_as_a_target_has_the_host_fingerprint() {
        use crate::compile::{Target, host_target, target_isa};
        let options = CodegenOptions::default();
        let host = fingerprint(&*isa(options.verify), options.verify);
        let named = target_isa(&host_target().unwrap(), options).unwrap();
        assert_eq!(fingerprint(&*named, options.verify), host);

        // The same triple with its baseline features, or another architecture, is another
        // machine.
        let Target::Cross { triple, features } = host_target().unwrap() else {
            unreachable!()
        };
        let other_arch = if triple.starts_with("x86_64") {
            "aarch64-unknown-linux-gnu"
        } else {
            "x86_64-unknown-linux-gnu"
        };
        for target in [
            Target::Cross {
                triple: other_arch.to_string(),
                features: Vec::new(),
            },
            Target::Cross {
                triple: triple.clone(),
                features: features.iter().skip(1).cloned().collect(),
            },
        ] {
            let isa = target_isa(&target, options).unwrap();
            let other = fingerprint(&*isa, options.verify);
            // Without features, the host's baseline may equal its detected set (no features).
            if target != host_target().unwrap() {
                assert_ne!(other, host, "{target}");
            }
        }
    }

    fn host_fn(name: &str, params: &[Type], ret: Option<Type>) -> HostSignature {
        HostSignature {
            name: name.to_string(),
            sig: Signature {
                params: params.to_vec(),
                ret,
            },
        }
    }

    fn lower_all(
        isa: &dyn TargetIsa,
        src: &str,
        hosts: &[HostSignature],
    ) -> BTreeMap<String, LoweredFunction> {
        let file = kiln_lang::SourceFile::new("t.kl", src);
        let program = kiln_lang::check(&file, hosts, &CheckOptions::default()).unwrap();
        let mut fctx = FunctionBuilderContext::new();
        program
            .functions
            .iter()
            .map(|f| {
                let id = program.function_named(&f.name).unwrap();
                let lowered = lower_function(isa, &program, hosts, id, &mut fctx);
                (f.name.clone(), lowered)
            })
            .collect()
    }

    /// Every function's key, by name.
    fn keys(
        isa: &dyn TargetIsa,
        fp: &Fingerprint,
        src: &str,
        hosts: &[HostSignature],
    ) -> BTreeMap<String, [u8; 32]> {
        lower_all(isa, src, hosts)
            .iter()
            .map(|(name, lowered)| (name.clone(), function_key(fp, lowered)))
            .collect()
    }

    /// What loading `after` against a cache filled by loading `before` would compile: the names
    /// of the functions whose key misses.
    fn misses(
        before: &BTreeMap<String, [u8; 32]>,
        after: &BTreeMap<String, [u8; 32]>,
    ) -> Vec<String> {
        let cached: BTreeSet<[u8; 32]> = before.values().copied().collect();
        after
            .iter()
            .filter(|(_, key)| !cached.contains(*key))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// No function here is inlined (`helper` and `other` print, `f` and `main` call): these
    /// tests are about keys of functions that call each other.
    const BASE: &str = "\
fn helper(x: int) -> int {
    print(x);
    return x * 3 + 1;
}

fn f(x: int) -> int {
    return helper(x) + 1;
}

fn other(a: int, b: int) -> int {
    print(a);
    return a - b;
}

fn main() {
    print(f(2));
    print(other(5, 3));
}
";

    /// Keys of `BASE` and of `edited` under the host ISA.
    fn before_after(edited: &str) -> (BTreeMap<String, [u8; 32]>, BTreeMap<String, [u8; 32]>) {
        let isa = isa(true);
        let fp = fingerprint(&*isa, true);
        (keys(&*isa, &fp, BASE, &[]), keys(&*isa, &fp, edited, &[]))
    }

    #[test]
    fn the_same_program_twice_hits_every_function() {
        let (before, after) = before_after(BASE);
        assert_eq!(after.len(), 4);
        assert_eq!(misses(&before, &after), Vec::<String>::new());
        // Four functions, four different bodies: no two share a key.
        assert_eq!(after.values().collect::<BTreeSet<_>>().len(), 4);
    }

    #[test]
    fn renaming_a_function_keeps_its_key() {
        // `f` becomes `renamed`, and `main`'s call follows: nothing recompiles, not even `main`,
        // whose callee changed name only.
        let edited = BASE
            .replace("fn f(", "fn renamed(")
            .replace("f(2)", "renamed(2)");
        let (before, after) = before_after(&edited);
        assert_eq!(misses(&before, &after), Vec::<String>::new());
        assert_eq!(before["f"], after["renamed"]);
        assert_eq!(before["main"], after["main"]);
    }

    #[test]
    fn moving_a_function_keeps_its_key() {
        // Lines and a new function above everything shift every position and every function
        // index; `f` also moves to the end of the file. Only the new function compiles.
        let f = "fn f(x: int) -> int {\n    return helper(x) + 1;\n}\n";
        let edited = format!(
            "// a comment\n\n\nfn added() -> int {{\n    return 7;\n}}\n\n{}\n{f}",
            BASE.replace(f, "")
        );
        let (before, after) = before_after(&edited);
        assert_eq!(misses(&before, &after), ["added"]);
        assert_eq!(before["f"], after["f"]);
    }

    #[test]
    fn editing_one_function_recompiles_only_it() {
        let edited = BASE.replace("return a - b;", "return a + b;");
        let (before, after) = before_after(&edited);
        assert_eq!(misses(&before, &after), ["other"]);
    }

    #[test]
    fn renaming_a_callee_keeps_the_callers_key() {
        let edited = BASE.replace("helper", "assist");
        let (before, after) = before_after(&edited);
        assert_eq!(misses(&before, &after), Vec::<String>::new());
        assert_eq!(before["f"], after["f"]);
    }

    #[test]
    fn changing_a_body_changes_its_key() {
        let edited = BASE.replace("return helper(x) + 1;", "return helper(x) + 2;");
        let (before, after) = before_after(&edited);
        assert_eq!(misses(&before, &after), ["f"]);
    }

    #[test]
    fn a_host_callee_is_not_a_script_callee() {
        // The same call `helper(x)` resolves to a host function of the same signature once the
        // script's `helper` is gone.
        let isa = isa(true);
        let fp = fingerprint(&*isa, true);
        let hosts = [host_fn("helper", &[Type::Int], Some(Type::Int))];
        let script = keys(&*isa, &fp, BASE, &[]);
        let without = BASE.replace(
            "fn helper(x: int) -> int {\n    print(x);\n    return x * 3 + 1;\n}\n",
            "",
        );
        let hosted = keys(&*isa, &fp, &without, &hosts);
        assert_eq!(misses(&script, &hosted), ["f"]);
    }

    /// `f` lowered from `BASE`, and the index of its `helper` callee in its symbol table.
    fn lowered_f(isa: &dyn TargetIsa) -> (LoweredFunction, usize) {
        let lowered = lower_all(isa, BASE, &[]).remove("f").unwrap();
        let helper = lowered
            .symbols
            .iter()
            .position(|s| *s == Symbol::Function("helper".into()))
            .unwrap();
        (lowered, helper)
    }

    #[test]
    fn symbol_kinds_are_part_of_the_key() {
        // The CLIF is untouched; only the table says the callee is now a host function. This is
        // the part of the key Kiln adds to Cranelift's.
        let isa = isa(true);
        let fp = fingerprint(&*isa, true);
        let (mut lowered, helper) = lowered_f(&*isa);
        let before = function_key(&fp, &lowered);
        lowered.symbols[helper] = Symbol::Function("elsewhere".into());
        assert_eq!(function_key(&fp, &lowered), before, "names are not hashed");
        lowered.symbols[helper] = Symbol::Host("helper".into());
        assert_ne!(function_key(&fp, &lowered), before);
    }

    #[test]
    fn callee_linkage_is_part_of_the_key() {
        let isa = isa(true);
        let fp = fingerprint(&*isa, true);
        let (mut lowered, helper) = lowered_f(&*isa);
        let before = function_key(&fp, &lowered);
        let clif = &mut lowered.clif;
        let user_names = clif.params.user_named_funcs().clone();
        let ext = clif
            .dfg
            .ext_funcs
            .values_mut()
            .find(|ext| match &ext.name {
                ExternalName::User(r) => user_names[*r].index as usize == helper,
                _ => false,
            })
            .unwrap();
        assert!(ext.colocated, "script callees are colocated");
        ext.colocated = false;
        assert_ne!(function_key(&fp, &lowered), before);
    }

    #[test]
    fn sites_are_not_part_of_the_key() {
        let isa = isa(true);
        let fp = fingerprint(&*isa, true);
        let (mut lowered, _) = lowered_f(&*isa);
        let before = function_key(&fp, &lowered);
        lowered.sites.reverse();
        lowered.sites.push(kiln_lang::Span::new(1000, 1001));
        assert_eq!(function_key(&fp, &lowered), before);
    }

    #[test]
    fn another_fingerprint_misses_every_function() {
        let speed = isa(true);
        let none = rebuild_isa(&*speed, &[("opt_level", "none")]).unwrap();
        let before = keys(&*speed, &fingerprint(&*speed, true), BASE, &[]);
        let after = keys(&*none, &fingerprint(&*none, true), BASE, &[]);
        assert_eq!(misses(&before, &after).len(), 4);
    }

    #[test]
    fn the_verifier_does_not_split_the_cache() {
        let on = isa(true);
        let off = isa(false);
        assert!(on.flags().enable_verifier() && !off.flags().enable_verifier());
        let (fp_on, fp_off) = (fingerprint(&*on, true), fingerprint(&*off, false));
        assert_eq!(fp_on, fp_off);
        assert_eq!(fp_on.description(), fp_off.description());
        let before = keys(&*on, &fp_on, BASE, &[]);
        let after = keys(&*off, &fp_off, BASE, &[]);
        assert_eq!(misses(&before, &after), Vec::<String>::new());
        // Why the key ISA exists: Cranelift's own key hashes every shared flag, the verifier's
        // included, so keying against the engine's ISA would split the cache after all.
        let (f, _) = lowered_f(&*on);
        assert!(compute_cache_key(&*on, &f.clif) != compute_cache_key(&*off, &f.clif));
    }

    #[test]
    fn the_same_isa_gives_the_same_fingerprint() {
        let (a, b) = (isa(true), isa(true));
        let (fa, fb) = (fingerprint(&*a, true), fingerprint(&*b, true));
        assert_eq!(fa, fb);
        assert_eq!(fa.as_bytes(), fb.as_bytes());
        assert_eq!(fa.description(), fb.description());
        // A rebuilt ISA with no overrides is the same ISA.
        let rebuilt = rebuild_isa(&*a, &[]).unwrap();
        assert_eq!(fingerprint(&*rebuilt, true), fa);
    }

    #[test]
    fn the_opt_level_changes_the_fingerprint() {
        let speed = isa(true);
        let none = rebuild_isa(&*speed, &[("opt_level", "none")]).unwrap();
        let (a, b) = (fingerprint(&*speed, true), fingerprint(&*none, true));
        assert_ne!(a, b);
        assert!(a.description().contains("opt_level=speed"));
        assert!(b.description().contains("opt_level=none"));
    }

    #[test]
    fn every_isa_flag_changes_the_fingerprint() {
        // Each CPU feature flag the host reports, toggled alone, gives a new fingerprint: an
        // artifact from a machine with different features is never reused.
        let host = isa(true);
        let base = fingerprint(&*host, true);
        let mut toggled = 0;
        for v in host.isa_flags() {
            let Some(on) = v.as_bool() else { continue };
            let flipped = if on { "false" } else { "true" };
            let other = rebuild_isa(&*host, &[(v.name, flipped)]).unwrap();
            assert_ne!(fingerprint(&*other, true), base, "{}", v.name);
            toggled += 1;
        }
        assert!(toggled > 0, "the host ISA reports no boolean CPU features");
    }

    #[test]
    fn the_description_lists_every_hashed_setting() {
        let host = isa(true);
        let fp = fingerprint(&*host, true);
        let text = fp.description();
        assert!(text.starts_with(&format!(
            "cranelift {}, kiln abi {KILN_ABI_VERSION}, {} ({})",
            cranelift_codegen::VERSION,
            host.triple(),
            host.name()
        )));
        for v in host.flags().iter().chain(host.isa_flags()) {
            let setting = format!("{}={}", v.name, v.value_string());
            let listed = text.split_whitespace().any(|word| word == setting);
            assert_eq!(listed, v.name != "enable_verifier", "{setting}");
        }
        let shown = fp.to_string();
        assert!(
            shown.ends_with(&format!("[{}]", &fp.to_hex()[..16])),
            "{shown}"
        );
    }

    #[test]
    fn rebuild_isa_rejects_unknown_settings() {
        let host = isa(true);
        let Err(err) = rebuild_isa(&*host, &[("no_such_setting", "true")]) else {
            panic!("an unknown setting was accepted");
        };
        assert!(err.contains("no_such_setting"), "{err}");
    }

    #[test]
    fn module_keys_cover_every_input() {
        let host = isa(true);
        let fp = fingerprint(&*host, true);
        let none = rebuild_isa(&*host, &[("opt_level", "none")]).unwrap();
        let other_fp = fingerprint(&*none, true);
        let hosts = vec![
            host_fn("clock", &[], Some(Type::Float)),
            host_fn("log", &[Type::Int, Type::Bool], None),
        ];
        let run = CheckOptions { require_main: true };
        let lib = CheckOptions {
            require_main: false,
        };
        let src = BASE.as_bytes();
        let key = |fp: &Fingerprint, src: &[u8], hosts: &[HostSignature], o: &CheckOptions| {
            module_key(fp, src, hosts, o)
        };
        let base = key(&fp, src, &hosts, &run);
        assert_eq!(key(&fp, src, &hosts.clone(), &run.clone()), base);

        let mut edited = src.to_vec();
        edited[src.len() - 3] ^= 1;
        let mut renamed = hosts.clone();
        renamed[1].name = "logs".into();
        let mut retyped = hosts.clone();
        retyped[1].sig.params[1] = Type::Int;
        let mut no_result = hosts.clone();
        no_result[0].sig.ret = None;
        let reordered = vec![hosts[1].clone(), hosts[0].clone()];
        let variants = [
            ("fingerprint", key(&other_fp, src, &hosts, &run)),
            ("one source bit", key(&fp, &edited, &hosts, &run)),
            (
                "a trailing byte",
                key(&fp, &[src, b"\n"].concat(), &hosts, &run),
            ),
            ("no hosts", key(&fp, src, &[], &run)),
            ("a host name", key(&fp, src, &renamed, &run)),
            ("a host parameter type", key(&fp, src, &retyped, &run)),
            ("a host result", key(&fp, src, &no_result, &run)),
            ("host order", key(&fp, src, &reordered, &run)),
            ("require_main", key(&fp, src, &hosts, &lib)),
        ];
        let mut seen = BTreeSet::from([base]);
        for (what, k) in variants {
            assert!(
                seen.insert(k),
                "changing {what} did not give a new module key"
            );
        }
    }

    #[test]
    fn module_keys_are_not_ambiguous_across_boundaries() {
        // Length prefixes keep bytes from sliding between the source and a host name.
        let host = isa(true);
        let fp = fingerprint(&*host, true);
        let opts = CheckOptions::default();
        let a = module_key(&fp, b"ab", &[host_fn("c", &[], None)], &opts);
        let b = module_key(&fp, b"a", &[host_fn("bc", &[], None)], &opts);
        assert_ne!(a, b);
    }
}
