//! Linking: compiled functions into a fresh JIT module, relocations resolved by name.
//!
//! Every import (globals, host functions, runtime functions, libcalls) is resolved before
//! cranelift-jit sees it, so a missing symbol is an error value, never a panic inside the JIT.
//! All code and data of one link go into one mapping ([`crate::memory`]), which keeps
//! PC-relative calls between script functions in range.

use crate::compile::{CodeRef, RelocTarget};
use crate::lower::{Symbol, function_symbol_name};
use crate::memory::{CodeMemory, MemorySizes};
use crate::runtime::libcall_address;
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::ir;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{
    DataDescription, DataId, FuncId, Linkage, Module, ModuleReloc, ModuleRelocTarget,
    default_libcall_names,
};
use std::collections::HashMap;

/// One function to link: its module-level name, native signature and code.
pub struct LinkInput<'a> {
    pub name: &'a str,
    pub signature: ir::Signature,
    pub code: CodeRef<'a>,
}

/// Linked code: the JIT module owning the memory, and each input function's address.
pub struct Linked {
    pub module: JITModule,
    pub addresses: Vec<*const u8>,
}

/// A relocation target with its symbol looked up.
enum Target<'a> {
    Symbol(&'a Symbol),
    LibCall(ir::LibCall),
}

fn symbol<'a>(code: &CodeRef<'a>, index: u32) -> Result<&'a Symbol, String> {
    code.symbols.get(index as usize).ok_or_else(|| {
        format!(
            "relocation to symbol #{index} of a table of {}",
            code.symbols.len()
        )
    })
}

/// The name an imported symbol has for the JIT's symbol table.
fn import_name(symbol: &Symbol) -> String {
    match symbol {
        Symbol::Global(name) => format!("kiln.global.{name}"),
        Symbol::Host(name) => format!("kiln.host.{name}"),
        Symbol::Runtime(f) => f.symbol().to_string(),
        Symbol::Function(name) => function_symbol_name(name),
        Symbol::Str(_) => unreachable!("string literals are defined, not imported"),
    }
}

/// Links `inputs` into a new JIT module. `resolve` gives the address of each global and host
/// function symbol; runtime functions and libcalls are Kiln's own.
pub fn link(
    isa: OwnedTargetIsa,
    inputs: &[LinkInput<'_>],
    resolve: &dyn Fn(&Symbol) -> Option<*const u8>,
) -> Result<Linked, String> {
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());

    // Resolve every import up front.
    let mut imports: HashMap<Symbol, String> = HashMap::new();
    let mut strings: Vec<&str> = Vec::new();
    let own: HashMap<&str, usize> = inputs
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name, i))
        .collect();
    for input in inputs {
        for reloc in input.code.relocs {
            let target = match &reloc.target {
                RelocTarget::Symbol(i) => Target::Symbol(symbol(&input.code, *i)?),
                RelocTarget::LibCall(lc) => Target::LibCall(*lc),
                RelocTarget::SelfOffset(_) => continue,
            };
            match target {
                Target::Symbol(Symbol::Str(s)) => {
                    if !strings.contains(&s.as_str()) {
                        strings.push(s);
                    }
                }
                Target::Symbol(Symbol::Function(name)) => {
                    if !own.contains_key(name.as_str()) {
                        return Err(format!("unresolved script function `{name}`"));
                    }
                }
                Target::Symbol(symbol) => {
                    if imports.contains_key(symbol) {
                        continue;
                    }
                    let address = match symbol {
                        Symbol::Runtime(f) => Some(f.address()),
                        other => resolve(other),
                    }
                    .ok_or_else(|| format!("unresolved symbol {symbol:?}"))?;
                    let name = import_name(symbol);
                    builder.symbol(name.clone(), address);
                    imports.insert(symbol.clone(), name);
                }
                Target::LibCall(lc) => {
                    let address = libcall_address(lc)
                        .ok_or_else(|| format!("unsupported Cranelift libcall {lc:?}"))?;
                    builder.symbol(default_libcall_names()(lc), address);
                }
            }
        }
    }

    // One mapping for everything, sized from what is linked. cranelift-jit reserves a 24-byte
    // veneer after the function for each `Arm64Call`, in case the callee is out of `bl` range.
    let executable: usize = inputs
        .iter()
        .map(|f| {
            let calls = f
                .code
                .relocs
                .iter()
                .filter(|r| r.kind == Reloc::Arm64Call)
                .count();
            f.code.code.len() + f.code.alignment.max(16) as usize + 24 * calls
        })
        .sum();
    let read_only: usize = strings.iter().map(|s| s.len() + 1 + 16).sum();
    // Calls between script functions and references to string literals are PC-relative:
    // ±2 GiB on x86-64 (`X86CallPCRel4`, `X86PCRel4`), ±4 GiB for aarch64's `adrp`. Keeping the
    // whole module in one mapping below 2 GiB keeps every such reference in range; aarch64's
    // `bl` (±128 MiB) gets a veneer from cranelift-jit when a callee is farther.
    const PC_RELATIVE_RANGE: usize = i32::MAX as usize;
    if executable.saturating_add(read_only) > PC_RELATIVE_RANGE {
        return Err(format!(
            "module too large to link: {executable} bytes of code and {read_only} of data \
             exceed the 2 GiB reach of PC-relative references"
        ));
    }
    let memory = CodeMemory::new(MemorySizes {
        executable,
        read_only,
        writable: 0,
    })
    .map_err(|e| e.to_string())?;
    builder.memory_provider(Box::new(memory));
    let mut module = JITModule::new(builder);
    let err = |e: cranelift_module::ModuleError| e.to_string();

    let mut func_ids: Vec<FuncId> = Vec::with_capacity(inputs.len());
    for input in inputs {
        let id = module
            .declare_function(
                &function_symbol_name(input.name),
                Linkage::Local,
                &input.signature,
            )
            .map_err(err)?;
        func_ids.push(id);
    }
    let mut string_ids: HashMap<&str, DataId> = HashMap::new();
    for (i, s) in strings.iter().enumerate() {
        let id = module
            .declare_data(&format!("kiln.str.{i}"), Linkage::Local, false, false)
            .map_err(err)?;
        let mut data = DataDescription::new();
        // An empty literal still needs an address.
        data.define(s.as_bytes().iter().copied().chain([0]).collect());
        module.define_data(id, &data).map_err(err)?;
        string_ids.insert(s, id);
    }
    let mut import_ids: HashMap<&Symbol, DataId> = HashMap::new();
    for (symbol, name) in &imports {
        // Imports are only ever used for their address, so all are declared as data.
        let id = module
            .declare_data(name, Linkage::Import, true, false)
            .map_err(err)?;
        import_ids.insert(symbol, id);
    }

    for (input, &id) in inputs.iter().zip(&func_ids) {
        let relocs: Vec<ModuleReloc> = input
            .code
            .relocs
            .iter()
            .map(|r| {
                let name = match &r.target {
                    // Checked in the first pass.
                    RelocTarget::Symbol(i) => match &input.code.symbols[*i as usize] {
                        Symbol::Function(name) => {
                            ModuleRelocTarget::user(0, func_ids[own[name.as_str()]].as_u32())
                        }
                        Symbol::Str(s) => {
                            ModuleRelocTarget::user(1, string_ids[s.as_str()].as_u32())
                        }
                        symbol => ModuleRelocTarget::user(1, import_ids[symbol].as_u32()),
                    },
                    RelocTarget::LibCall(lc) => ModuleRelocTarget::LibCall(*lc),
                    RelocTarget::SelfOffset(off) => ModuleRelocTarget::FunctionOffset(id, *off),
                };
                ModuleReloc {
                    offset: r.offset,
                    kind: r.kind,
                    name,
                    addend: r.addend,
                }
            })
            .collect();
        module
            .define_function_bytes(id, input.code.alignment, input.code.code, &relocs)
            .map_err(err)?;
    }
    module.finalize_definitions().map_err(err)?;
    let addresses = func_ids
        .iter()
        .map(|&id| module.get_finalized_function(id))
        .collect();
    Ok(Linked { module, addresses })
}
