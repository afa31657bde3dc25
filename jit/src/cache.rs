//! The function cache as loading uses it: module artifacts encoded from compiled functions,
//! looked up by module key, and decoded back into relinkable code.
//!
//! `kiln-cache` stores opaque bytes; this module decides what they mean. A module artifact holds
//! every function of one module (its code, its relocations with targets as symbol indexes, and as
//! metadata its signature, span, error sites and symbol table) plus, as the module blob, the
//! module key it was written under and the module's globals. Everything read back is checked:
//! the artifact's checksums and fingerprint by `kiln-cache`, the embedded module key and every
//! decoded field here. Anything that does not decode is a miss with a reason, never a panic.

use crate::compile::{CodeRef, CompiledFunction, RelocTarget, Relocation};
use crate::keys::Fingerprint;
use crate::lower::Symbol;
use crate::runtime::RuntimeFn;
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::ir::LibCall;
use kiln_cache::{
    Artifact, ArtifactError, ArtifactWriter, CacheStore, FunctionInput, Key, RelocInput,
    StoreError, VerifiedArtifact,
};
use kiln_lang::Span;
use kiln_lang::program::{ArrayType, Const, Signature, Type, VarType};
use std::collections::HashMap;

/// What loading needs of a function besides its code.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionMeta {
    pub name: String,
    pub sig: Signature,
    pub span: Span,
    pub sites: Vec<Span>,
}

/// A global as the engine allocates it.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalDef {
    pub name: String,
    pub ty: VarType,
    pub init: Option<Const>,
}

/// A function read back from an artifact: its code borrowed from the artifact's bytes (used in
/// place, never copied), its relocations and symbols decoded.
pub struct CachedFunction<'a> {
    /// The function's cache key.
    pub key: [u8; 32],
    pub code: &'a [u8],
    pub alignment: u64,
    pub relocs: Vec<Relocation>,
    pub symbols: Vec<Symbol>,
}

impl<'a> CachedFunction<'a> {
    pub fn as_code(&self) -> CodeRef<'_> {
        CodeRef {
            code: self.code,
            alignment: self.alignment,
            relocs: &self.relocs,
            symbols: &self.symbols,
        }
    }

    pub fn to_owned(&self) -> CompiledFunction {
        CompiledFunction {
            code: self.code.to_vec(),
            alignment: self.alignment,
            relocs: self.relocs.clone(),
            symbols: self.symbols.clone(),
        }
    }
}

/// A module read back from its artifact, ready to link: `functions[i]` is described by
/// `metas[i]`.
pub struct CachedModule<'a> {
    pub functions: Vec<CachedFunction<'a>>,
    pub metas: Vec<FunctionMeta>,
    pub globals: Vec<GlobalDef>,
}

/// Why a lookup found nothing usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Miss {
    NoEntry,
    /// An artifact built by another engine (Cranelift version, target, CPU features, settings).
    FingerprintMismatch,
    /// Truncated, flipped, foreign or otherwise undecodable bytes.
    Corrupt(String),
    /// The store could not be read.
    Unavailable(String),
    /// The store refused the entry: someone else may have written it (see `kiln_cache::trust`).
    Untrusted(String),
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::NoEntry => f.write_str("no entry"),
            Miss::FingerprintMismatch => f.write_str("fingerprint mismatch"),
            Miss::Corrupt(why) => write!(f, "corrupt entry ({why})"),
            Miss::Unavailable(why) => write!(f, "cache unavailable ({why})"),
            Miss::Untrusted(why) => write!(f, "untrusted entry ({why})"),
        }
    }
}

/// The persistent cache of one engine.
#[derive(Clone)]
pub struct ModuleCache {
    store: std::sync::Arc<dyn CacheStore>,
}

impl ModuleCache {
    pub fn new(store: std::sync::Arc<dyn CacheStore>) -> ModuleCache {
        ModuleCache { store }
    }

    /// The artifact stored under `key`, its checksums and fingerprint verified; decode it with
    /// [`decode_module`] while it is alive.
    pub fn artifact(
        &self,
        fingerprint: &Fingerprint,
        key: &[u8; 32],
    ) -> Result<VerifiedArtifact<kiln_cache::Entry>, Miss> {
        let entry = self
            .store
            .get(&Key(*key))
            .map_err(|e| match e {
                StoreError::Untrusted { .. } => Miss::Untrusted(e.to_string()),
                other => Miss::Unavailable(other.to_string()),
            })?
            .ok_or(Miss::NoEntry)?;
        VerifiedArtifact::new(entry, fingerprint.as_bytes()).map_err(|e| match e {
            ArtifactError::FingerprintMismatch => Miss::FingerprintMismatch,
            other => Miss::Corrupt(other.to_string()),
        })
    }

    /// The functions of the module last stored for the file whose pointer key is `pointer`,
    /// by function key: what an edit of that file can reuse. Best effort: nothing on any error.
    pub fn previous_functions(
        &self,
        fingerprint: &Fingerprint,
        pointer: &[u8; 32],
    ) -> HashMap<[u8; 32], CompiledFunction> {
        let mut reusable = HashMap::new();
        let Ok(Some(entry)) = self.store.get(&Key(*pointer)) else {
            return reusable;
        };
        let Ok(previous) = <[u8; 32]>::try_from(&entry[..]) else {
            return reusable;
        };
        let Ok(artifact) = self.artifact(fingerprint, &previous) else {
            return reusable;
        };
        let artifact = artifact.artifact();
        if module_key_of(&artifact) != Some(previous) {
            return reusable;
        }
        for f in artifact.functions() {
            if let Ok((code, _)) = decode_function(&artifact, &f) {
                reusable.insert(f.key().0, code.to_owned());
            }
        }
        reusable
    }

    /// Stores a module artifact under `key` and points `pointer` (the file's) at it.
    pub fn store(&self, key: &[u8; 32], pointer: &[u8; 32], bytes: &[u8]) -> Result<(), String> {
        if !self.store.writable() {
            // A cache used read-only: compiled code lives only in memory.
            return Ok(());
        }
        self.store
            .insert(&Key(*key), bytes)
            .and_then(|()| self.store.insert(&Key(*pointer), key))
            .map_err(|e| e.to_string())
    }
}

/// The pointer key of a file: where the module key of its last compile is kept.
pub fn pointer_key(fingerprint: &Fingerprint, name: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("kiln 2026 source-file pointer");
    h.update(fingerprint.as_bytes());
    h.update(name.as_bytes());
    *h.finalize().as_bytes()
}

// ---- encoding -----------------------------------------------------------------------------

/// Cranelift's relocation kinds as stored. Part of the artifact's meaning: never renumber.
fn reloc_code(kind: Reloc) -> Option<u32> {
    Some(match kind {
        Reloc::Abs8 => 1,
        Reloc::X86CallPCRel4 => 2,
        Reloc::X86PCRel4 => 3,
        Reloc::Arm64Call => 4,
        Reloc::Aarch64AdrPrelPgHi21 => 5,
        Reloc::Aarch64AddAbsLo12Nc => 6,
        Reloc::Abs4 => 7,
        _ => return None,
    })
}

fn reloc_kind(code: u32) -> Option<Reloc> {
    Some(match code {
        1 => Reloc::Abs8,
        2 => Reloc::X86CallPCRel4,
        3 => Reloc::X86PCRel4,
        4 => Reloc::Arm64Call,
        5 => Reloc::Aarch64AdrPrelPgHi21,
        6 => Reloc::Aarch64AddAbsLo12Nc,
        7 => Reloc::Abs4,
        _ => return None,
    })
}

/// The libcalls Kiln links (see `runtime::libcall_address`), by stored name.
const LIBCALLS: [(LibCall, &str); 4] = [
    (LibCall::FloorF64, "floor"),
    (LibCall::CeilF64, "ceil"),
    (LibCall::TruncF64, "trunc"),
    (LibCall::NearestF64, "nearest"),
];

fn target_string(target: &RelocTarget) -> Option<String> {
    Some(match target {
        RelocTarget::Symbol(i) => format!("s{i}"),
        RelocTarget::SelfOffset(off) => format!("o{off}"),
        RelocTarget::LibCall(lc) => {
            let (_, name) = LIBCALLS.iter().find(|(l, _)| l == lc)?;
            format!("l{name}")
        }
    })
}

fn parse_target(s: &str) -> Option<RelocTarget> {
    let (tag, rest) = s.split_at_checked(1)?;
    Some(match tag {
        "s" => RelocTarget::Symbol(rest.parse().ok()?),
        "o" => RelocTarget::SelfOffset(rest.parse().ok()?),
        "l" => RelocTarget::LibCall(LIBCALLS.iter().find(|(_, n)| *n == rest)?.0),
        _ => return None,
    })
}

/// Encodes a module artifact. Fails (and nothing should be stored) when a function uses a
/// relocation or libcall the cache cannot represent.
pub fn encode_module(
    fingerprint: &Fingerprint,
    module_key: &[u8; 32],
    functions: &[(&[u8; 32], &CompiledFunction, &FunctionMeta)],
    globals: &[GlobalDef],
) -> Result<Vec<u8>, String> {
    let mut writer = ArtifactWriter::new(fingerprint.as_bytes());
    let mut blob = Bytes::default();
    blob.raw(module_key);
    blob.u32(globals.len() as u32);
    for g in globals {
        blob.str(&g.name);
        blob.var_type(g.ty);
        match g.init {
            None => blob.u8(0),
            Some(c) => {
                blob.u8(1);
                blob.u8(type_code(c.ty()));
                blob.u64(match c {
                    Const::Int(v) => v as u64,
                    Const::Float(v) => v.to_bits(),
                    Const::Bool(v) => u64::from(v),
                });
            }
        }
    }
    writer.set_module_blob(&blob.0);
    for (key, code, meta) in functions {
        let targets: Vec<String> = code
            .relocs
            .iter()
            .map(|r| target_string(&r.target).ok_or("a libcall the cache cannot name"))
            .collect::<Result<_, _>>()?;
        let relocs: Vec<RelocInput> = code
            .relocs
            .iter()
            .zip(&targets)
            .map(|(r, target)| {
                Ok(RelocInput {
                    offset: r.offset,
                    kind: reloc_code(r.kind)
                        .ok_or_else(|| format!("relocation kind {:?}", r.kind))?,
                    target,
                    addend: r.addend,
                })
            })
            .collect::<Result<_, String>>()?;
        let mut m = Bytes::default();
        m.signature(&meta.sig);
        m.span(meta.span);
        m.u32(meta.sites.len() as u32);
        for &s in &meta.sites {
            m.span(s);
        }
        m.u32(code.symbols.len() as u32);
        for s in &code.symbols {
            m.symbol(s);
        }
        writer
            .add_function(&FunctionInput {
                key: Key(**key),
                name: &meta.name,
                align: code.alignment as u32,
                code: &code.code,
                relocs: &relocs,
                metadata: &m.0,
            })
            .map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())
}

/// The module key an artifact says it was written under.
fn module_key_of(artifact: &Artifact<'_>) -> Option<[u8; 32]> {
    Reader(artifact.module_blob()).array()
}

/// Decodes a verified artifact that should hold the module with key `key`.
pub fn decode_module<'a>(
    artifact: &Artifact<'a>,
    key: &[u8; 32],
) -> Result<CachedModule<'a>, String> {
    let mut blob = Reader(artifact.module_blob());
    // The store names entries by key but cannot vouch for what a file holds; the artifact does.
    if blob.array() != Some(*key) {
        return Err("the entry holds another module".into());
    }
    let n = blob.u32().ok_or("globals")?;
    let mut globals = Vec::new();
    for _ in 0..n {
        let name = blob.str().ok_or("global name")?;
        let ty = blob.var_type().ok_or("global type")?;
        let init = match blob.u8().ok_or("global init")? {
            0 => None,
            1 => {
                let ty = decode_type(blob.u8().ok_or("init type")?).ok_or("init type")?;
                let bits = blob.u64().ok_or("init value")?;
                Some(match ty {
                    Type::Int => Const::Int(bits as i64),
                    Type::Float => Const::Float(f64::from_bits(bits)),
                    Type::Bool => Const::Bool(bits != 0),
                })
            }
            _ => return Err("global init tag".into()),
        };
        globals.push(GlobalDef { name, ty, init });
    }
    let (functions, metas) = artifact
        .functions()
        .map(|f| decode_function(artifact, &f))
        .collect::<Result<Vec<_>, String>>()?
        .into_iter()
        .unzip();
    Ok(CachedModule {
        functions,
        metas,
        globals,
    })
}

fn decode_function<'a>(
    artifact: &Artifact<'a>,
    f: &kiln_cache::Function<'a>,
) -> Result<(CachedFunction<'a>, FunctionMeta), String> {
    let mut m = Reader(f.metadata());
    let sig = m.signature().ok_or("signature")?;
    let span = m.span().ok_or("span")?;
    let n = m.u32().ok_or("sites")?;
    let sites = (0..n)
        .map(|_| m.span().ok_or("site"))
        .collect::<Result<Vec<_>, _>>()?;
    let n = m.u32().ok_or("symbols")?;
    let symbols = (0..n)
        .map(|_| m.symbol().ok_or("symbol"))
        .collect::<Result<Vec<_>, _>>()?;
    let relocs = f
        .relocs()
        .map(|r| {
            let target = artifact
                .string(r.target)
                .and_then(parse_target)
                .ok_or("relocation target")?;
            if let RelocTarget::Symbol(i) = target
                && i as usize >= symbols.len()
            {
                return Err("relocation symbol out of range");
            }
            Ok(Relocation {
                offset: r.offset,
                kind: reloc_kind(r.kind).ok_or("relocation kind")?,
                target,
                addend: r.addend,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let code = CachedFunction {
        key: f.key().0,
        code: f.code(),
        alignment: u64::from(f.align()),
        relocs,
        symbols,
    };
    let meta = FunctionMeta {
        name: f.name().to_string(),
        sig,
        span,
        sites,
    };
    Ok((code, meta))
}

fn type_code(t: Type) -> u8 {
    match t {
        Type::Int => 0,
        Type::Float => 1,
        Type::Bool => 2,
    }
}

fn decode_type(code: u8) -> Option<Type> {
    Some(match code {
        0 => Type::Int,
        1 => Type::Float,
        2 => Type::Bool,
        _ => return None,
    })
}

/// Little-endian encoding of metadata fields.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.raw(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.raw(s.as_bytes());
    }
    fn span(&mut self, s: Span) {
        self.u32(s.start);
        self.u32(s.end);
    }
    fn signature(&mut self, sig: &Signature) {
        self.u32(sig.params.len() as u32);
        for &p in &sig.params {
            self.u8(type_code(p));
        }
        self.u8(sig.ret.map_or(3, type_code));
    }
    fn var_type(&mut self, ty: VarType) {
        match ty {
            VarType::Scalar(t) => {
                self.u8(0);
                self.u8(type_code(t));
            }
            VarType::Array(a) => {
                self.u8(1);
                self.u8(type_code(a.elem));
                self.u32(a.len);
            }
        }
    }
    fn symbol(&mut self, s: &Symbol) {
        let (tag, name) = match s {
            Symbol::Function(n) => (0, n.as_str()),
            Symbol::Global(n) => (1, n.as_str()),
            Symbol::Host(n) => (2, n.as_str()),
            Symbol::Runtime(f) => (3, f.symbol()),
            Symbol::Str(s) => (4, s.as_str()),
        };
        self.u8(tag);
        self.str(name);
    }
}

/// Reads what [`Bytes`] wrote; `None` on anything short or malformed.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn span(&mut self) -> Option<Span> {
        Some(Span::new(self.u32()?, self.u32()?))
    }
    fn signature(&mut self) -> Option<Signature> {
        let n = self.u32()?;
        let params = (0..n)
            .map(|_| decode_type(self.u8()?))
            .collect::<Option<Vec<_>>>()?;
        let ret = match self.u8()? {
            3 => None,
            t => Some(decode_type(t)?),
        };
        Some(Signature { params, ret })
    }
    fn var_type(&mut self) -> Option<VarType> {
        match self.u8()? {
            0 => Some(VarType::Scalar(decode_type(self.u8()?)?)),
            1 => {
                let elem = decode_type(self.u8()?)?;
                let len = self.u32()?;
                let valid = (1..=kiln_lang::program::MAX_ARRAY_LEN).contains(&len);
                valid.then_some(VarType::Array(ArrayType { elem, len }))
            }
            _ => None,
        }
    }
    fn symbol(&mut self) -> Option<Symbol> {
        let tag = self.u8()?;
        let name = self.str()?;
        Some(match tag {
            0 => Symbol::Function(name),
            1 => Symbol::Global(name),
            2 => Symbol::Host(name),
            3 => Symbol::Runtime(RuntimeFn::from_symbol(&name)?),
            4 => Symbol::Str(name),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{CodegenOptions, host_isa};

    fn fingerprint() -> Fingerprint {
        let isa = host_isa(CodegenOptions::default()).unwrap();
        Fingerprint::new(&*isa, CodegenOptions::default()).unwrap()
    }

    fn sample() -> (CompiledFunction, FunctionMeta) {
        let symbols = vec![
            Symbol::Function("callee".into()),
            Symbol::Global("score".into()),
            Symbol::Host("spawn".into()),
            Symbol::Runtime(RuntimeFn::Trap),
            Symbol::Str("hé\n\0".into()),
        ];
        let relocs = vec![
            Relocation {
                offset: 1,
                kind: Reloc::X86CallPCRel4,
                target: RelocTarget::Symbol(0),
                addend: -4,
            },
            Relocation {
                offset: 8,
                kind: Reloc::Abs8,
                target: RelocTarget::Symbol(4),
                addend: 0,
            },
            Relocation {
                offset: 16,
                kind: Reloc::Abs8,
                target: RelocTarget::LibCall(LibCall::FloorF64),
                addend: 0,
            },
            Relocation {
                offset: 24,
                kind: Reloc::X86PCRel4,
                target: RelocTarget::SelfOffset(40),
                addend: -4,
            },
        ];
        let code = CompiledFunction {
            code: (0..48).collect(),
            alignment: 16,
            relocs,
            symbols,
        };
        let meta = FunctionMeta {
            name: "f".into(),
            sig: Signature {
                params: vec![Type::Int, Type::Float, Type::Bool],
                ret: Some(Type::Float),
            },
            span: Span::new(10, 11),
            sites: vec![Span::new(20, 25), Span::new(30, 31)],
        };
        (code, meta)
    }

    fn globals() -> Vec<GlobalDef> {
        let scalar = |name: &str, init: Const| GlobalDef {
            name: name.into(),
            ty: VarType::Scalar(init.ty()),
            init: Some(init),
        };
        vec![
            scalar("i", Const::Int(i64::MIN)),
            scalar("x", Const::Float(-0.0)),
            scalar("b", Const::Bool(true)),
            GlobalDef {
                name: "grid".into(),
                ty: VarType::Array(ArrayType {
                    elem: Type::Bool,
                    len: 1 << 24,
                }),
                init: None,
            },
        ]
    }

    #[test]
    fn a_module_round_trips_through_its_artifact() {
        let fp = fingerprint();
        let (code, meta) = sample();
        let key = [7; 32];
        let bytes = encode_module(&fp, &[1; 32], &[(&key, &code, &meta)], &globals()).unwrap();
        let artifact = VerifiedArtifact::new(&bytes[..], fp.as_bytes()).unwrap();
        let module = decode_module(&artifact.artifact(), &[1; 32]).unwrap();
        assert_eq!(module.metas, vec![meta]);
        assert_eq!(module.globals.len(), 4);
        assert_eq!(module.globals[0], globals()[0]);
        assert_eq!(module.globals[3], globals()[3]);
        // -0.0 == 0.0, so compare the float's bits.
        assert_eq!(
            module.globals[1].init.map(|c| match c {
                Const::Float(v) => v.to_bits(),
                _ => 0,
            }),
            Some((-0.0f64).to_bits())
        );
        let f = &module.functions[0];
        assert_eq!(f.code, &code.code[..]);
        assert_eq!(f.alignment, 16);
        assert_eq!(f.relocs, code.relocs);
        assert_eq!(f.symbols, code.symbols);
        assert_eq!(artifact.artifact().function(0).unwrap().key().0, key);
    }

    #[test]
    fn an_artifact_of_another_module_is_refused() {
        let fp = fingerprint();
        let (code, meta) = sample();
        let bytes = encode_module(&fp, &[1; 32], &[(&[7; 32], &code, &meta)], &[]).unwrap();
        let artifact = VerifiedArtifact::new(&bytes[..], fp.as_bytes()).unwrap();
        let err = decode_module(&artifact.artifact(), &[2; 32]).err().unwrap();
        assert!(err.contains("another module"), "{err}");
    }

    #[test]
    fn code_the_cache_cannot_name_is_not_stored() {
        let fp = fingerprint();
        let (mut code, meta) = sample();
        code.relocs[2].target = RelocTarget::LibCall(LibCall::Memcpy);
        assert!(encode_module(&fp, &[1; 32], &[(&[7; 32], &code, &meta)], &[]).is_err());
        let (mut code, meta) = sample();
        code.relocs[0].kind = Reloc::S390xPCRel32Dbl;
        assert!(encode_module(&fp, &[1; 32], &[(&[7; 32], &code, &meta)], &[]).is_err());
    }

    #[test]
    fn relocation_codes_and_targets_round_trip() {
        for code in 0..16 {
            if let Some(kind) = reloc_kind(code) {
                assert_eq!(reloc_code(kind), Some(code));
            }
        }
        for target in [
            RelocTarget::Symbol(0),
            RelocTarget::Symbol(u32::MAX),
            RelocTarget::SelfOffset(123),
            RelocTarget::LibCall(LibCall::NearestF64),
        ] {
            assert_eq!(parse_target(&target_string(&target).unwrap()), Some(target));
        }
        for bad in ["", "s", "sx", "o-1", "lsin", "x1", "s99999999999"] {
            assert_eq!(parse_target(bad), None, "{bad:?}");
        }
    }
}
