//! Compiling: one lowered function to machine code plus symbolic relocations.
//!
//! The output, a [`CompiledFunction`], holds no addresses: relocations name their targets
//! ([`Symbol`]s, Cranelift libcalls, offsets in the function itself), so the same bytes can be
//! linked into any module — the property the function cache relies on.

use crate::lower::{LoweredFunction, Symbol};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{ExternalName, LibCall};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, FinalizedRelocTarget};

/// What a relocation points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RelocTarget {
    /// An index into the function's [`CompiledFunction::symbols`]. By index, not by name: a
    /// function's cache key leaves out the names of what it refers to, so cached code is
    /// relinked through the symbol table of the function being loaded now.
    Symbol(u32),
    /// A helper Cranelift calls when the CPU lacks an instruction (e.g. `floor` without SSE4.1).
    LibCall(LibCall),
    /// An offset inside the function itself (constant pools).
    SelfOffset(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Offset of the patched bytes from the function's start.
    pub offset: u32,
    pub kind: Reloc,
    pub target: RelocTarget,
    pub addend: i64,
}

/// Machine code of one function, position-independent until linked.
#[derive(Clone, Debug)]
pub struct CompiledFunction {
    pub code: Vec<u8>,
    pub alignment: u64,
    pub relocs: Vec<Relocation>,
    /// What [`RelocTarget::Symbol`] indexes refer to.
    pub symbols: Vec<Symbol>,
}

/// A borrowed view of machine code to link: from a fresh compile, or straight from a mapped
/// cache artifact (whose bytes are used in place).
#[derive(Clone, Copy, Debug)]
pub struct CodeRef<'a> {
    pub code: &'a [u8],
    pub alignment: u64,
    pub relocs: &'a [Relocation],
    pub symbols: &'a [Symbol],
}

impl CompiledFunction {
    pub fn as_code(&self) -> CodeRef<'_> {
        CodeRef {
            code: &self.code,
            alignment: self.alignment,
            relocs: &self.relocs,
            symbols: &self.symbols,
        }
    }
}

/// How the engine asks Cranelift to compile.
#[derive(Clone, Copy, Debug)]
pub struct CodegenOptions {
    /// Run Cranelift's IR verifier before compiling: about 30% of compile time, so on in debug
    /// builds and off in release builds by default.
    pub verify: bool,
}

impl Default for CodegenOptions {
    fn default() -> Self {
        CodegenOptions {
            verify: cfg!(debug_assertions),
        }
    }
}

/// The machine code an engine produces is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// This machine, with the CPU features it has: code the engine can run.
    #[default]
    Host,
    /// Another target, for building cache artifacts that a machine of that kind will load.
    Cross {
        /// A target triple, e.g. `aarch64-unknown-linux-gnu`.
        triple: String,
        /// Cranelift ISA settings to change from the target's defaults, `name` (set to true) or
        /// `name=value`: the CPU features of the machines that will load the code, as
        /// [`host_target`] prints them there.
        features: Vec<String>,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Host => f.write_str("this machine"),
            Target::Cross { triple, features } if features.is_empty() => f.write_str(triple),
            Target::Cross { triple, features } => write!(f, "{triple} ({})", features.join(",")),
        }
    }
}

/// The shared settings every Kiln ISA has, whatever its target.
fn shared_flags(options: CodegenOptions) -> Result<settings::Flags, String> {
    let mut flags = settings::builder();
    let set = |flags: &mut settings::Builder, name: &str, value: &str| {
        flags
            .set(name, value)
            .map_err(|e| format!("cranelift setting {name}={value}: {e}"))
    };
    set(&mut flags, "opt_level", "speed")?;
    // Kiln's linker patches absolute and PC-relative relocations (no GOT or PLT), and calls
    // runtime functions through absolute addresses.
    set(&mut flags, "is_pic", "false")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(
        &mut flags,
        "enable_verifier",
        if options.verify { "true" } else { "false" },
    )?;
    Ok(settings::Flags::new(flags))
}

/// The instruction set of this machine, with the CPU features it has, at opt level `speed`.
pub fn host_isa(options: CodegenOptions) -> Result<OwnedTargetIsa, String> {
    target_isa(&Target::Host, options)
}

/// The instruction set for `target`, at opt level `speed`.
pub fn target_isa(target: &Target, options: CodegenOptions) -> Result<OwnedTargetIsa, String> {
    let flags = shared_flags(options)?;
    match target {
        Target::Host => cranelift_native::builder()
            .map_err(|e| format!("unsupported host: {e}"))?
            .finish(flags)
            .map_err(|e| format!("cannot configure Cranelift for this host: {e}")),
        Target::Cross { triple, features } => {
            let parsed: target_lexicon::Triple = triple
                .parse()
                .map_err(|e| format!("invalid target triple `{triple}`: {e}"))?;
            let mut builder = cranelift_codegen::isa::lookup(parsed)
                .map_err(|e| format!("cannot compile for `{triple}`: {e}"))?;
            for feature in features {
                let (name, value) = feature.split_once('=').unwrap_or((feature, "true"));
                builder
                    .set(name, value)
                    .map_err(|e| format!("CPU feature `{feature}` for `{triple}`: {e}"))?;
            }
            builder
                .finish(flags)
                .map_err(|e| format!("cannot configure Cranelift for `{triple}`: {e}"))
        }
    }
}

/// This machine as a [`Target::Cross`]: its triple, and the ISA settings cranelift-native
/// detected that differ from the triple's defaults. An engine built for it on another machine
/// has this machine's fingerprint, so the artifacts it writes are module hits here.
pub fn host_target() -> Result<Target, String> {
    let options = CodegenOptions::default();
    let host = host_isa(options)?;
    let triple = host.triple().to_string();
    let defaults = target_isa(
        &Target::Cross {
            triple: triple.clone(),
            features: Vec::new(),
        },
        options,
    )?;
    let default_values: Vec<(&str, String)> = defaults
        .isa_flags()
        .iter()
        .map(|v| (v.name, v.value_string()))
        .collect();
    let features = host
        .isa_flags()
        .iter()
        .filter(|v| !default_values.contains(&(v.name, v.value_string())))
        .map(|v| match v.as_bool() {
            Some(true) => v.name.to_string(),
            _ => format!("{}={}", v.name, v.value_string()),
        })
        .collect();
    Ok(Target::Cross { triple, features })
}

/// Compiles a lowered function. `ctx` is reused between calls to keep its allocations.
pub fn compile(
    isa: &dyn TargetIsa,
    lowered: LoweredFunction,
    ctx: &mut Context,
) -> Result<CompiledFunction, String> {
    let LoweredFunction { clif, symbols, .. } = lowered;
    ctx.clear();
    ctx.func = clif;
    let code = match ctx.compile(isa, &mut ControlPlane::default()) {
        Ok(code) => code,
        Err(e) => {
            return Err(cranelift_codegen::print_errors::pretty_error(
                e.func, e.inner,
            ));
        }
    };
    let alignment = u64::from(code.buffer.alignment);
    let bytes = code.code_buffer().to_vec();
    let mach_relocs = code.buffer.relocs().to_vec();
    let relocs = mach_relocs
        .iter()
        .map(|r| {
            let target = match &r.target {
                FinalizedRelocTarget::ExternalName(ExternalName::User(name)) => {
                    RelocTarget::Symbol(ctx.func.params.user_named_funcs()[*name].index)
                }
                FinalizedRelocTarget::ExternalName(ExternalName::LibCall(lc)) => {
                    RelocTarget::LibCall(*lc)
                }
                FinalizedRelocTarget::Func(offset) => RelocTarget::SelfOffset(*offset),
                other => return Err(format!("unexpected relocation target {other:?}")),
            };
            Ok(Relocation {
                offset: r.offset,
                kind: r.kind,
                target,
                addend: r.addend,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(CompiledFunction {
        code: bytes,
        alignment,
        relocs,
        symbols,
    })
}
