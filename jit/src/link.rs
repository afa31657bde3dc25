//! Linking: compiled functions into executable memory, every relocation patched by Kiln.
//!
//! A link lays out the functions (each followed by room for the veneers its calls may need)
//! and the string literals in one [`CodeMemory`] mapping, copies the bytes in, resolves each
//! relocation's symbol to an address and patches the site with [`crate::reloc`], then makes the
//! memory executable. [`relocate`] is the per-function step on plain bytes at any address, so
//! tests relink code compiled for another target at layouts no real mapping would give.

use crate::compile::{CodeRef, RelocTarget, Relocation};
use crate::lower::Symbol;
use crate::memory::CodeMemory;
use crate::reloc::{self, RelocError, VENEER_SIZE};
use crate::runtime::libcall_address;
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::ir::LibCall;
use std::collections::HashMap;

/// One function to link: its name in the module and its code.
pub struct LinkInput<'a> {
    pub name: &'a str,
    pub code: CodeRef<'a>,
}

/// Linked code: the memory holding it, and each input function's address.
pub struct Linked {
    pub memory: CodeMemory,
    pub addresses: Vec<*const u8>,
}

/// What a relocation points at, once its symbol index is looked up.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Symbol(&'a Symbol),
    LibCall(LibCall),
}

/// Bytes to reserve after a function's code for the veneers its `bl` calls may need: one per
/// call (any of them may turn out to be out of reach), 8-aligned for the veneers' literals.
pub fn veneer_room(code: &CodeRef<'_>) -> usize {
    let calls = code
        .relocs
        .iter()
        .filter(|r| r.kind == Reloc::Arm64Call)
        .count();
    if calls == 0 {
        return 0;
    }
    code.code.len().next_multiple_of(8) - code.code.len() + calls * VENEER_SIZE
}

/// Patches every relocation of one function.
///
/// `image` holds the function's code (`len` bytes) followed by its [`veneer_room`]; `address`
/// is where `image[0]` runs. `resolve` gives each target's address. A `bl` whose callee is out
/// of reach goes through a veneer written into the room after the code.
pub fn relocate(
    image: &mut [u8],
    len: usize,
    address: u64,
    relocs: &[Relocation],
    symbols: &[Symbol],
    resolve: &dyn Fn(Target<'_>) -> Option<u64>,
) -> Result<(), String> {
    let mut next_veneer = len.next_multiple_of(8);
    for r in relocs {
        let target = match &r.target {
            RelocTarget::Symbol(i) => {
                let symbol = symbols.get(*i as usize).ok_or_else(|| {
                    format!("relocation to symbol #{i} of a table of {}", symbols.len())
                })?;
                resolve(Target::Symbol(symbol))
                    .ok_or_else(|| format!("unresolved symbol {symbol:?}"))?
            }
            RelocTarget::LibCall(lc) => resolve(Target::LibCall(*lc))
                .ok_or_else(|| format!("unsupported Cranelift libcall {lc:?}"))?,
            RelocTarget::SelfOffset(off) => address + u64::from(*off),
        };
        let offset = r.offset as usize;
        let field = if r.kind == Reloc::Abs8 { 8 } else { 4 };
        if offset.checked_add(field).is_none_or(|end| end > len) {
            return Err(format!(
                "{:?} relocation at offset {offset} runs past {len} bytes of code",
                r.kind
            ));
        }
        let place = address + r.offset as u64;
        let site = |e: &dyn std::fmt::Display| {
            format!("{:?} at offset {offset} to {:?}: {e}", r.kind, r.target)
        };
        let patched = reloc::patch(r.kind, image, offset, place, target, r.addend);
        match patched {
            Err(RelocError::OutOfRange { .. }) if r.kind == Reloc::Arm64Call => {
                // Too far for `bl`: call a veneer next to the function that jumps to the
                // absolute address.
                let veneer = next_veneer;
                next_veneer += VENEER_SIZE;
                let destination = target.wrapping_add(r.addend as u64);
                reloc::write_veneer(image, veneer, destination).map_err(|e| site(&e))?;
                reloc::patch(r.kind, image, offset, place, address + veneer as u64, 0)
                    .map_err(|e| site(&format!("call through a veneer: {e}")))?;
            }
            other => other.map_err(|e| site(&e))?,
        }
    }
    Ok(())
}

/// The reach of x86-64's PC-relative references (calls between script functions, string
/// literals): ±2 GiB. aarch64's `adrp` reaches ±4 GiB and `bl` gets veneers, so keeping a whole
/// module within 2 GiB keeps every PC-relative reference in range on both.
const PC_RELATIVE_RANGE: usize = i32::MAX as usize;

/// Links `inputs` into new executable memory. `resolve` gives the address of each global and
/// host function symbol; runtime functions and libcalls are Kiln's own.
pub fn link(
    inputs: &[LinkInput<'_>],
    resolve: &dyn Fn(&Symbol) -> Option<*const u8>,
) -> Result<Linked, String> {
    // Layout: functions (each with its veneer room), then the string literals.
    let mut offsets = Vec::with_capacity(inputs.len());
    let mut cursor = 0usize;
    for input in inputs {
        let align = usize::try_from(input.code.alignment)
            .unwrap_or(usize::MAX)
            .max(16);
        if !align.is_power_of_two() {
            return Err(format!(
                "function `{}` asks for alignment {align}",
                input.name
            ));
        }
        cursor = cursor.next_multiple_of(align);
        offsets.push(cursor);
        cursor += input.code.code.len() + veneer_room(&input.code);
    }
    let code_size = cursor;
    let mut strings: HashMap<&str, usize> = HashMap::new();
    let mut data_size = 0usize;
    for input in inputs {
        for s in input.code.symbols {
            if let Symbol::Str(s) = s
                && !strings.contains_key(s.as_str())
            {
                strings.insert(s, data_size);
                // NUL-terminated, so an empty literal still has an address.
                data_size += s.len() + 1;
            }
        }
    }
    if code_size.saturating_add(data_size) > PC_RELATIVE_RANGE {
        return Err(format!(
            "module too large to link: {code_size} bytes of code and {data_size} of data \
             exceed the 2 GiB reach of PC-relative references"
        ));
    }

    let mut memory = CodeMemory::new(code_size, data_size).map_err(|e| e.to_string())?;
    let base = memory.base() as u64;
    let data_base = memory.data_offset();
    let own: HashMap<&str, u64> = inputs
        .iter()
        .zip(&offsets)
        .map(|(f, &off)| (f.name, base + off as u64))
        .collect();
    let resolve_any = |target: Target<'_>| -> Option<u64> {
        match target {
            Target::Symbol(Symbol::Function(name)) => own.get(name.as_str()).copied(),
            Target::Symbol(Symbol::Str(s)) => strings
                .get(s.as_str())
                .map(|&off| base + (data_base + off) as u64),
            Target::Symbol(Symbol::Runtime(f)) => Some(f.address() as u64),
            Target::Symbol(other) => resolve(other).map(|p| p as u64),
            Target::LibCall(lc) => libcall_address(lc).map(|p| p as u64),
        }
    };
    let bytes = memory.bytes_mut().map_err(|e| e.to_string())?;
    for (s, &off) in &strings {
        let at = data_base + off;
        bytes[at..at + s.len()].copy_from_slice(s.as_bytes());
    }
    for (input, &off) in inputs.iter().zip(&offsets) {
        let code = input.code;
        let len = code.code.len();
        let image = &mut bytes[off..off + len + veneer_room(&code)];
        image[..len].copy_from_slice(code.code);
        relocate(
            image,
            len,
            base + off as u64,
            code.relocs,
            code.symbols,
            &resolve_any,
        )
        .map_err(|e| format!("cannot link `{}`: {e}", input.name))?;
    }
    memory.finalize().map_err(|e| e.to_string())?;
    let addresses = offsets
        .iter()
        .map(|&off| (base + off as u64) as *const u8)
        .collect();
    Ok(Linked { memory, addresses })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_running_past_the_code_is_refused() {
        let mut image = [0u8; 12];
        let reloc = Relocation {
            offset: 8,
            kind: Reloc::Abs8,
            target: RelocTarget::SelfOffset(0),
            addend: 0,
        };
        let err = relocate(&mut image, 12, 0x1000, &[reloc], &[], &|_| None).unwrap_err();
        assert!(err.contains("runs past 12 bytes"), "{err}");
        assert_eq!(image, [0; 12], "nothing was written");
    }
}
