//! Entry stubs: how Rust calls a script function of any signature.
//!
//! A stub takes the arguments as an array of 64-bit patterns, calls the target with the script
//! ABI as the first frame (a call budget of `max_depth - 1`), and stores the result. It depends only on the signature, so an engine
//! compiles one stub per distinct signature and shares it between all modules.

use crate::compile::compile;
use crate::link::{LinkInput, link};
use crate::lower::{LoweredFunction, clif_signature, clif_type};
use crate::memory::CodeMemory;
use crate::runtime::{OFFSET_MAX_DEPTH, VmCtx};
use cranelift_codegen::Context;
use cranelift_codegen::ir::{self, AbiParam, InstBuilder, MemFlagsData, UserFuncName, types};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use kiln_lang::program::{Signature, Type};
use std::collections::HashMap;
use std::sync::Mutex;

/// `stub(vmctx, target, args, ret)`.
pub type EntryFn = unsafe extern "C" fn(*mut VmCtx, *const u8, *const u64, *mut u64);

/// The engine's stubs, compiled on first use of each signature.
pub struct EntryStubs {
    isa: OwnedTargetIsa,
    stubs: Mutex<HashMap<Signature, EntryFn>>,
    /// Owns the stubs' code for the engine's lifetime.
    memory: Mutex<Vec<CodeMemory>>,
}

impl EntryStubs {
    pub fn new(isa: OwnedTargetIsa) -> EntryStubs {
        EntryStubs {
            isa,
            stubs: Mutex::new(HashMap::new()),
            memory: Mutex::new(Vec::new()),
        }
    }

    pub fn get(&self, sig: &Signature) -> Result<EntryFn, String> {
        let mut stubs = self.stubs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&stub) = stubs.get(sig) {
            return Ok(stub);
        }
        let lowered = build_stub(&self.isa, sig);
        let code = compile(&*self.isa, lowered, &mut Context::new())?;
        let name = format!("entry {sig}");
        let linked = link(
            &[LinkInput {
                name: &name,
                code: code.as_code(),
            }],
            &|_| None,
        )?;
        // SAFETY: the stub was compiled from `build_stub` with exactly the `EntryFn` ABI.
        let stub: EntryFn = unsafe { std::mem::transmute(linked.addresses[0]) };
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(linked.memory);
        stubs.insert(sig.clone(), stub);
        Ok(stub)
    }
}

fn build_stub(isa: &OwnedTargetIsa, sig: &Signature) -> LoweredFunction {
    let ptr = isa.pointer_type();
    let mut stub_sig = ir::Signature::new(isa.default_call_conv());
    stub_sig.params.extend([AbiParam::new(ptr); 4]);
    let mut clif = ir::Function::with_name_signature(UserFuncName::user(1, 0), stub_sig);
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut clif, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let (vmctx, target, args, ret) = (p[0], p[1], p[2], p[3]);
    // The called function is frame 1: below it, the limit allows `max_depth - 1` more.
    let max_depth = b
        .ins()
        .load(types::I64, MemFlagsData::trusted(), vmctx, OFFSET_MAX_DEPTH);
    let budget = b.ins().iadd_imm_s(max_depth, -1);
    let mut call_args = vec![vmctx, budget];
    for (i, &t) in sig.params.iter().enumerate() {
        // Bools travel as 0 or 1 in the low byte (both supported hosts are little-endian).
        let v = b
            .ins()
            .load(clif_type(t), MemFlagsData::trusted(), args, (i * 8) as i32);
        call_args.push(v);
    }
    let target_sig = b.import_signature(clif_signature(&**isa, sig));
    let call = b.ins().call_indirect(target_sig, target, &call_args);
    if let Some(t) = sig.ret {
        let v = b.inst_results(call)[0];
        let v = match t {
            Type::Bool => b.ins().uextend(types::I64, v),
            _ => v,
        };
        b.ins().store(MemFlagsData::trusted(), v, ret, 0);
    }
    b.ins().return_(&[]);
    b.finalize(isa.frontend_config());
    LoweredFunction {
        clif,
        symbols: Vec::new(),
        sites: Vec::new(),
    }
}
