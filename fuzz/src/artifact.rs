//! The `artifact` target: the cache's reader, `kiln-cache`'s `Artifact::parse` and then
//! `kiln_jit::cache::decode_module` and relocation, on bytes no writer produced.
//!
//! Checksums make almost every mutation of a real artifact fail at the first check, so an
//! input is used in up to three ways, chosen by how it starts:
//!
//! - **Real artifacts** (inputs starting with the magic number; the seed corpus holds artifacts
//!   written by the engine): parsed as they are, then again *resealed*: every section checksum
//!   and the header checksum recomputed from the (mutated) section table, as a writer with a
//!   bug would. A resealed input passes the checksums, so the structural checks of the tables
//!   and the decoder of the metadata and module blob behind them see the mutation.
//! - **Structured** (any other input, read with `arbitrary`): either an `ArtifactWriter` run on
//!   arbitrary functions, relocations, metadata bytes and module blob (valid layout, arbitrary
//!   contents: the decoder's input space), or a module described field by field and encoded by
//!   `kiln_jit::cache::encode_module`, which decoding must give back exactly. Each is then
//!   corrupted at chosen bytes and resealed.
//!
//! Whatever parses and decodes is relocated into a buffer at a made-up address with a dummy
//! resolver, as the linker would, and re-encoded: decoding that must give the same module again.
//! Nothing is ever executed.

use arbitrary::{Arbitrary, Unstructured};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::ir::LibCall;
use kiln_cache::artifact::MAGIC;
use kiln_cache::{Artifact, ArtifactWriter, FunctionInput, Key, RelocInput, VerifiedArtifact};
use kiln_jit::cache::{CachedModule, FunctionMeta, GlobalDef, decode_module, encode_module};
use kiln_jit::compile::{CodegenOptions, CompiledFunction, RelocTarget, Relocation, host_isa};
use kiln_jit::keys::Fingerprint;
use kiln_jit::link::{Target, relocate, veneer_room};
use kiln_jit::lower::Symbol;
use kiln_jit::runtime::{RuntimeFn, libcall_address};
use kiln_lang::Span;
use kiln_lang::program::{ArrayType, Const, MAX_ARRAY_LEN, Signature, Type, VarType};
use std::sync::OnceLock;

// Layout constants of format version 1 (cache/src/artifact.rs), for resealing.
const FIXED_HEADER_LEN: usize = 20;
const SECTION_COUNT: usize = 6;
const SECTION_ENTRY_LEN: usize = 56;
const CHECKSUM_LEN: usize = 32;

pub fn run(data: &[u8]) {
    if data.starts_with(&MAGIC) {
        real(data);
    } else if let Ok(plan) = Plan::arbitrary_take_rest(Unstructured::new(data)) {
        structured(plan);
    }
}

/// A (mutated) real artifact: as it is, then resealed.
fn real(data: &[u8]) {
    // The fingerprint check is one comparison with the engine's; the seed artifacts were
    // written on some machine, so stand in for the engine that wrote them and get past it.
    let fingerprint = claimed_fingerprint(data).unwrap_or(b"").to_vec();
    exercise(data, &fingerprint);
    let mut resealed = data.to_vec();
    if reseal(&mut resealed) && resealed != data {
        let fingerprint = claimed_fingerprint(&resealed).unwrap_or(b"").to_vec();
        exercise(&resealed, &fingerprint);
    }
}

/// The fingerprint bytes an artifact's header claims, if the header is long enough.
fn claimed_fingerprint(bytes: &[u8]) -> Option<&[u8]> {
    let len = read_u32(bytes, 16)? as usize;
    bytes.get(FIXED_HEADER_LEN..FIXED_HEADER_LEN.checked_add(len)?)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Recomputes every checksum from the section table, as a writer with a bug would. Sections the
/// table places outside the bytes keep their stored checksum. False if the header is too short
/// to hold a section table.
pub fn reseal(bytes: &mut [u8]) -> bool {
    let Some(fingerprint_len) = read_u32(bytes, 16) else {
        return false;
    };
    let table_start = (FIXED_HEADER_LEN + fingerprint_len as usize).next_multiple_of(8);
    let checksum_start = table_start + SECTION_COUNT * SECTION_ENTRY_LEN;
    if bytes.len() < checksum_start + CHECKSUM_LEN {
        return false;
    }
    for index in 0..SECTION_COUNT {
        let entry = table_start + index * SECTION_ENTRY_LEN;
        let (Some(offset), Some(len)) = (read_u64(bytes, entry + 8), read_u64(bytes, entry + 16))
        else {
            continue;
        };
        let section = usize::try_from(offset).ok().and_then(|offset| {
            let end = offset.checked_add(usize::try_from(len).ok()?)?;
            bytes.get(offset..end)
        });
        if let Some(section) = section {
            let hash = blake3::hash(section);
            bytes[entry + 24..entry + 24 + CHECKSUM_LEN].copy_from_slice(hash.as_bytes());
        }
    }
    let hash = blake3::hash(&bytes[..checksum_start]);
    bytes[checksum_start..checksum_start + CHECKSUM_LEN].copy_from_slice(hash.as_bytes());
    true
}

/// The engine fingerprint of this machine, for artifacts encoded here.
fn host_fingerprint() -> &'static Fingerprint {
    static FINGERPRINT: OnceLock<Fingerprint> = OnceLock::new();
    FINGERPRINT.get_or_init(|| {
        let options = CodegenOptions::default();
        let isa = host_isa(options).expect("host ISA");
        Fingerprint::new(&*isa, options).expect("fingerprint")
    })
}

/// Everything a loader does with artifact bytes, short of running the code.
fn exercise(bytes: &[u8], fingerprint: &[u8]) {
    let verified = match VerifiedArtifact::new(bytes, fingerprint) {
        Ok(verified) => verified,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let artifact = verified.artifact();
    // Every accessor of a verified artifact works, on every function.
    assert_eq!(artifact.fingerprint(), fingerprint);
    assert_eq!(artifact.functions().count(), artifact.len());
    for (index, f) in artifact.functions().enumerate() {
        assert_eq!(f.index(), index);
        assert!(f.align().is_power_of_two());
        let found = artifact.find(f.key()).expect("find a function's own key");
        assert!(found.index() <= index);
        let relocs = f.relocs();
        assert_eq!(relocs.len(), relocs.count());
        for (i, r) in f.relocs().enumerate() {
            assert_eq!(f.relocs().get(i), Some(r));
            assert!((r.offset as usize) < f.code().len());
            assert!(artifact.string(r.target).is_some());
        }
    }
    for id in 0..artifact.string_count() {
        assert!(artifact.string(id as u32).is_some());
    }
    assert!(artifact.string(artifact.string_count() as u32).is_none());

    // The module key the loader looked up is the one embedded in the blob.
    let blob = artifact.module_blob();
    let key: [u8; 32] = match blob.get(..32) {
        Some(key) => key.try_into().expect("32 bytes"),
        None => [0; 32],
    };
    let mut other = key;
    other[0] ^= 1;
    assert!(
        decode_module(&artifact, &other).is_err(),
        "decoded under another module key"
    );
    let Ok(module) = decode_module(&artifact, &key) else {
        return;
    };
    assert_eq!(module.functions.len(), artifact.len());
    assert_eq!(module.metas.len(), artifact.len());
    relink(&module);
    reencode(&key, &module);
}

/// Where the made-up link puts the first function: a typical mmap address.
const FAKE_BASE: u64 = 0x7f3a_5c00_0000;

/// Relocates every function into a buffer as `link` would (same layout, veneer room included),
/// with symbols resolved to made-up addresses: some near, some out of any PC-relative reach,
/// some unresolved.
fn relink(module: &CachedModule<'_>) {
    let mut offsets = Vec::new();
    let mut cursor = 0u64;
    for f in &module.functions {
        let align = f.alignment.max(16);
        cursor = cursor.next_multiple_of(align);
        offsets.push(cursor);
        cursor += (f.code.len() + veneer_room(&f.as_code())) as u64;
    }
    let resolve = |target: Target<'_>| -> Option<u64> {
        match target {
            Target::Symbol(Symbol::Function(name)) => {
                let index = module.metas.iter().position(|m| &m.name == name)?;
                Some(FAKE_BASE + offsets[index])
            }
            Target::Symbol(Symbol::Str(s)) => Some(FAKE_BASE + cursor + s.len() as u64),
            // Globals and host functions live in the host's heap: far away, and sometimes
            // beyond what any 32-bit reference reaches.
            Target::Symbol(Symbol::Global(name)) => Some(0x5555_0000_0000 + name.len() as u64 * 8),
            Target::Symbol(Symbol::Host(name)) if name.starts_with('x') => None,
            Target::Symbol(Symbol::Host(name)) => Some(0x5555_8000_0000 + name.len() as u64 * 16),
            Target::Symbol(Symbol::Runtime(f)) => Some(f.address() as u64),
            Target::LibCall(lc) => libcall_address(lc).map(|p| p as u64),
        }
    };
    for (f, &offset) in module.functions.iter().zip(&offsets) {
        let len = f.code.len();
        let mut image = vec![0u8; len + veneer_room(&f.as_code())];
        image[..len].copy_from_slice(f.code);
        if let Err(e) = relocate(
            &mut image,
            len,
            FAKE_BASE + offset,
            &f.relocs,
            &f.symbols,
            &resolve,
        ) {
            let _ = e.len();
        }
    }
}

/// Encodes a decoded module again (with this machine's fingerprint) and decodes that: the
/// same module must come back.
fn reencode(key: &[u8; 32], module: &CachedModule<'_>) {
    let owned: Vec<CompiledFunction> = module.functions.iter().map(|f| f.to_owned()).collect();
    let parts: Vec<_> = module
        .functions
        .iter()
        .zip(&owned)
        .zip(&module.metas)
        .map(|((f, code), meta)| (&f.key, code, meta))
        .collect();
    let fingerprint = host_fingerprint();
    let bytes = encode_module(fingerprint, key, &parts, &module.globals)
        .unwrap_or_else(|e| panic!("a decoded module does not encode again: {e}"));
    let verified = VerifiedArtifact::new(&bytes[..], fingerprint.as_bytes())
        .unwrap_or_else(|e| panic!("a re-encoded module does not parse: {e}"));
    let again = decode_module(&verified.artifact(), key)
        .unwrap_or_else(|e| panic!("a re-encoded module does not decode: {e}"));
    assert_same(module, &again);
}

fn assert_same(a: &CachedModule<'_>, b: &CachedModule<'_>) {
    assert_eq!(a.metas, b.metas, "function metadata changed");
    // Debug, not ==: float initializers compare by what they print (NaN, -0.0).
    assert_eq!(
        format!("{:?}", a.globals),
        format!("{:?}", b.globals),
        "globals changed"
    );
    assert_eq!(a.functions.len(), b.functions.len());
    for (f, g) in a.functions.iter().zip(&b.functions) {
        assert_eq!(f.key, g.key);
        assert_eq!(f.code, g.code);
        assert_eq!(f.alignment, g.alignment);
        assert_eq!(f.relocs, g.relocs);
        assert_eq!(f.symbols, g.symbols);
    }
}

// ---- structured inputs --------------------------------------------------------------------

#[derive(Arbitrary, Debug)]
enum Plan {
    /// Straight through `ArtifactWriter`: valid layout, arbitrary metadata and module blob.
    Writer {
        functions: Vec<WriterFunction>,
        module: Vec<u8>,
        edits: Vec<Edit>,
    },
    /// A module as the engine describes it, through `encode_module`.
    Module {
        key: [u8; 32],
        functions: Vec<ModuleFunction>,
        globals: Vec<GlobalPlan>,
        edits: Vec<Edit>,
    },
}

#[derive(Arbitrary, Debug)]
struct WriterFunction {
    key: u8,
    name: String,
    align_log2: u8,
    code: Vec<u8>,
    relocs: Vec<(u32, u8, TargetPlan, i64)>,
    metadata: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct ModuleFunction {
    key: u8,
    name: String,
    align_log2: u8,
    code: Vec<u8>,
    relocs: Vec<(u32, u8, TargetPlan, i64)>,
    symbols: Vec<SymbolPlan>,
    params: Vec<u8>,
    ret: u8,
    span: (u32, u32),
    sites: Vec<(u32, u32)>,
}

#[derive(Arbitrary, Debug)]
enum TargetPlan {
    Symbol(u32),
    SelfOffset(u32),
    LibCall(u8),
    /// Anything else, as a string (only the `Writer` plan can store it).
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum SymbolPlan {
    Function(String),
    Global(String),
    Host(String),
    Runtime(u8),
    Str(String),
}

#[derive(Arbitrary, Debug)]
struct GlobalPlan {
    name: String,
    ty: u8,
    array_len: Option<u32>,
    init: Option<u64>,
}

/// Overwrite the byte at `at` (modulo the length) with `value`.
#[derive(Arbitrary, Debug)]
struct Edit {
    at: u32,
    value: u8,
}

/// The relocation kinds the cache stores, in its code order.
const KINDS: [Reloc; 7] = [
    Reloc::Abs8,
    Reloc::X86CallPCRel4,
    Reloc::X86PCRel4,
    Reloc::Arm64Call,
    Reloc::Aarch64AdrPrelPgHi21,
    Reloc::Aarch64AddAbsLo12Nc,
    Reloc::Abs4,
];

/// The libcalls the cache names.
const LIBCALLS: [(LibCall, &str); 4] = [
    (LibCall::FloorF64, "floor"),
    (LibCall::CeilF64, "ceil"),
    (LibCall::TruncF64, "trunc"),
    (LibCall::NearestF64, "nearest"),
];

const TYPES: [Type; 3] = [Type::Int, Type::Float, Type::Bool];

fn expand_key(seed: u8) -> [u8; 32] {
    std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
}

fn structured(plan: Plan) {
    match plan {
        Plan::Writer {
            functions,
            module,
            edits,
        } => {
            let fingerprint = b"fuzz-engine";
            let mut writer = ArtifactWriter::new(fingerprint);
            writer.set_module_blob(&module);
            for f in &functions {
                let targets: Vec<String> = f.relocs.iter().map(|r| target_text(&r.2)).collect();
                let relocs: Vec<RelocInput<'_>> = if f.code.is_empty() {
                    Vec::new()
                } else {
                    f.relocs
                        .iter()
                        .zip(&targets)
                        .map(|(r, target)| RelocInput {
                            offset: r.0 % f.code.len() as u32,
                            // Mostly kinds the decoder knows, sometimes not.
                            kind: u32::from(r.1 % 9),
                            target,
                            addend: r.3,
                        })
                        .collect()
                };
                writer
                    .add_function(&FunctionInput {
                        key: Key(expand_key(f.key)),
                        name: &f.name,
                        align: 1 << (f.align_log2 % 13),
                        code: &f.code,
                        relocs: &relocs,
                        metadata: &f.metadata,
                    })
                    .expect("valid writer input");
            }
            let bytes = writer.finish().expect("finish");
            Artifact::parse(&bytes, fingerprint).expect("the writer's output parses");
            exercise(&bytes, fingerprint);
            corrupt(bytes, &edits, fingerprint);
        }
        Plan::Module {
            key,
            functions,
            globals,
            edits,
        } => {
            let globals: Vec<GlobalDef> = globals.iter().map(global_def).collect();
            let built: Vec<([u8; 32], CompiledFunction, FunctionMeta)> =
                functions.iter().map(module_function).collect();
            let parts: Vec<_> = built.iter().map(|(k, c, m)| (k, c, m)).collect();
            let fingerprint = host_fingerprint();
            let bytes = encode_module(fingerprint, &key, &parts, &globals)
                .unwrap_or_else(|e| panic!("encode_module refused a valid module: {e}"));
            let verified = VerifiedArtifact::new(&bytes[..], fingerprint.as_bytes())
                .expect("an encoded module parses");
            let decoded = decode_module(&verified.artifact(), &key)
                .unwrap_or_else(|e| panic!("an encoded module does not decode: {e}"));
            let metas: Vec<FunctionMeta> = built.iter().map(|b| b.2.clone()).collect();
            assert_eq!(decoded.metas, metas, "metadata did not round-trip");
            assert_eq!(
                format!("{:?}", decoded.globals),
                format!("{globals:?}"),
                "globals did not round-trip"
            );
            for (f, (k, code, _)) in decoded.functions.iter().zip(&built) {
                assert_eq!(&f.key, k);
                assert_eq!(f.code, &code.code[..]);
                assert_eq!(f.alignment, code.alignment);
                assert_eq!(f.relocs, code.relocs);
                assert_eq!(f.symbols, code.symbols);
            }
            exercise(&bytes, fingerprint.as_bytes());
            corrupt(bytes, &edits, fingerprint.as_bytes());
        }
    }
}

/// Applies the edits, reseals and exercises the result.
fn corrupt(mut bytes: Vec<u8>, edits: &[Edit], fingerprint: &[u8]) {
    if edits.is_empty() || bytes.is_empty() {
        return;
    }
    for edit in edits {
        let at = edit.at as usize % bytes.len();
        bytes[at] = edit.value;
    }
    reseal(&mut bytes);
    exercise(&bytes, fingerprint);
}

/// A relocation target as `kiln_jit::cache` spells it (`s3`, `o16`, `lfloor`), or any string.
fn target_text(target: &TargetPlan) -> String {
    match target {
        TargetPlan::Symbol(i) => format!("s{i}"),
        TargetPlan::SelfOffset(off) => format!("o{off}"),
        TargetPlan::LibCall(i) => format!("l{}", LIBCALLS[*i as usize % LIBCALLS.len()].1),
        TargetPlan::Other(s) => s.clone(),
    }
}

fn global_def(plan: &GlobalPlan) -> GlobalDef {
    let elem = TYPES[plan.ty as usize % TYPES.len()];
    match plan.array_len {
        Some(len) => GlobalDef {
            name: plan.name.clone(),
            ty: VarType::Array(ArrayType {
                elem,
                len: 1 + len % MAX_ARRAY_LEN,
            }),
            init: None,
        },
        None => GlobalDef {
            name: plan.name.clone(),
            ty: VarType::Scalar(elem),
            init: plan.init.map(|bits| match elem {
                Type::Int => Const::Int(bits as i64),
                Type::Float => Const::Float(f64::from_bits(bits)),
                Type::Bool => Const::Bool(bits & 1 == 1),
            }),
        },
    }
}

fn module_function(plan: &ModuleFunction) -> ([u8; 32], CompiledFunction, FunctionMeta) {
    let symbols: Vec<Symbol> = plan
        .symbols
        .iter()
        .map(|s| match s {
            SymbolPlan::Function(n) => Symbol::Function(n.clone()),
            SymbolPlan::Global(n) => Symbol::Global(n.clone()),
            SymbolPlan::Host(n) => Symbol::Host(n.clone()),
            SymbolPlan::Runtime(i) => {
                Symbol::Runtime(RuntimeFn::ALL[*i as usize % RuntimeFn::ALL.len()])
            }
            SymbolPlan::Str(s) => Symbol::Str(s.clone()),
        })
        .collect();
    let relocs = if plan.code.is_empty() {
        Vec::new()
    } else {
        plan.relocs
            .iter()
            .map(|(offset, kind, target, addend)| Relocation {
                offset: offset % plan.code.len() as u32,
                kind: KINDS[*kind as usize % KINDS.len()],
                target: match target {
                    // What the compiler produces: an index into this function's symbols.
                    TargetPlan::Symbol(i) if !symbols.is_empty() => {
                        RelocTarget::Symbol(i % symbols.len() as u32)
                    }
                    TargetPlan::Symbol(i) | TargetPlan::SelfOffset(i) => {
                        RelocTarget::SelfOffset(*i)
                    }
                    TargetPlan::LibCall(i) => {
                        RelocTarget::LibCall(LIBCALLS[*i as usize % LIBCALLS.len()].0)
                    }
                    TargetPlan::Other(s) => RelocTarget::SelfOffset(s.len() as u32),
                },
                addend: *addend,
            })
            .collect()
    };
    let code = CompiledFunction {
        code: plan.code.clone(),
        alignment: 1 << (plan.align_log2 % 13),
        relocs,
        symbols,
    };
    let meta = FunctionMeta {
        name: plan.name.clone(),
        sig: Signature {
            params: plan
                .params
                .iter()
                .map(|&t| TYPES[t as usize % TYPES.len()])
                .collect(),
            ret: TYPES.get(plan.ret as usize % 4).copied(),
        },
        span: Span::new(plan.span.0, plan.span.1),
        sites: plan.sites.iter().map(|&(a, b)| Span::new(a, b)).collect(),
    };
    (expand_key(plan.key), code, meta)
}
