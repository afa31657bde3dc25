//! The checker: every relocated site decoded with a disassembler, and what it reaches compared
//! with the address it should reach.
//!
//! It shares no code with Kiln's relinker: it reads instructions the way a CPU would (iced-x86
//! for x86-64, yaxpeax-arm for aarch64), so a patch that computes the wrong value, writes it to
//! the wrong place or fills the wrong field shows up as a wrong destination.

use cranelift_codegen::binemit::Reloc;
use iced_x86::{Code, Decoder, DecoderOptions, OpKind};
use kiln_jit::compile::Relocation;
use yaxpeax_arch::{Decoder as _, U8Reader};
use yaxpeax_arm::armv8::a64::{InstDecoder, Instruction, Opcode, Operand, SizeCode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Aarch64,
    X86_64,
}

/// What the instruction at a relocation site reaches, as decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A whole address: where a call lands (past its veneer, if it goes through one), the
    /// address of a rip-relative operand, a 64-bit immediate or literal.
    Address(u64),
    /// An aarch64 `adrp xN`: the 4 KiB page it puts in xN.
    Page { page: u64, reg: u16 },
    /// An aarch64 `add xD, xN, #imm`: the low 12 bits it adds to xN.
    Low12 { low: u64, base: u16 },
}

/// A site that does not reach what it should.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The site's offset in the function, as the relocation gives it.
    pub offset: u32,
    pub kind: Reloc,
    /// What the decoded code reaches there, or why it could not be decoded.
    pub found: Result<u64, String>,
    pub wanted: u64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Mismatch {
            offset,
            kind,
            found,
            wanted,
        } = self;
        match found {
            Ok(found) => write!(
                f,
                "{kind:?} at +{offset:#x} reaches {found:#x}, should reach {wanted:#x}"
            ),
            Err(why) => write!(
                f,
                "{kind:?} at +{offset:#x}: {why} (should reach {wanted:#x})"
            ),
        }
    }
}

/// Checks every relocation of a function relinked at `address`. `image` is its code (`len`
/// bytes) followed by its veneer room; `wanted[i]` is the address `relocs[i]` should reach.
/// Returns the sites that do not reach it.
///
/// An `adrp` is checked for the page of its target and the `add` after it for the whole
/// address, the adrp's page plus its own low bits: together they reach the target exactly when
/// both are right, and a wrong page shows at both sites.
pub fn check(
    arch: Arch,
    image: &[u8],
    len: usize,
    address: u64,
    relocs: &[Relocation],
    wanted: &[u64],
) -> Vec<Mismatch> {
    assert_eq!(
        relocs.len(),
        wanted.len(),
        "one wanted address per relocation"
    );
    let decode = |r: &Relocation| match arch {
        Arch::Aarch64 => aarch64_reach(image, len, address, r.offset as usize, r.kind),
        Arch::X86_64 => x86_reach(&image[..len], address, r.offset as usize, r.kind),
    };
    let mut mismatches = Vec::new();
    for (i, (r, &want)) in relocs.iter().zip(wanted).enumerate() {
        let (found, want) = match decode(r) {
            Ok(Reach::Address(a)) => (Ok(a), want),
            Ok(Reach::Page { page, .. }) => (Ok(page), want & !0xfff),
            Ok(Reach::Low12 { low, base }) => {
                // The adrp this add completes: the closest one before it of the same target
                // that writes the register the add reads.
                let page = relocs[..i]
                    .iter()
                    .rev()
                    .filter(|p| p.kind == Reloc::Aarch64AdrPrelPgHi21 && p.target == r.target)
                    .find_map(|p| match decode(p) {
                        Ok(Reach::Page { page, reg }) if reg == base => Some(page),
                        _ => None,
                    })
                    .ok_or_else(|| format!("no adrp of the same target writes x{base}"));
                (page.map(|page| page.wrapping_add(low)), want)
            }
            Err(why) => (Err(why), want),
        };
        if found != Ok(want) {
            mismatches.push(Mismatch {
                offset: r.offset,
                kind: r.kind,
                found,
                wanted: want,
            });
        }
    }
    mismatches
}

// ---- aarch64 ------------------------------------------------------------------------------

/// Decodes the aarch64 site of a `kind` relocation at `image[offset..]`, where `image[0]` runs
/// at `address` and the veneer room starts at `len`.
pub fn aarch64_reach(
    image: &[u8],
    len: usize,
    address: u64,
    offset: usize,
    kind: Reloc,
) -> Result<Reach, String> {
    let place = address.wrapping_add(offset as u64);
    match kind {
        Reloc::Arm64Call => {
            let insn = a64_at(image, offset)?;
            let destination = match insn.operands[0] {
                Operand::PCOffset(delta) if insn.opcode == Opcode::BL => {
                    place.wrapping_add_signed(delta)
                }
                _ => return Err(format!("`{insn}` is not a bl")),
            };
            // A call into the room after the code goes through a veneer: follow it.
            let into_image = destination.wrapping_sub(address);
            if (len as u64..image.len() as u64).contains(&into_image) {
                return veneer_target(image, into_image as usize).map(Reach::Address);
            }
            Ok(Reach::Address(destination))
        }
        Reloc::Aarch64AdrPrelPgHi21 => {
            let insn = a64_at(image, offset)?;
            match insn.operands {
                [
                    Operand::Register(SizeCode::X, reg),
                    Operand::PCOffset(delta),
                    ..,
                ] if insn.opcode == Opcode::ADRP => Ok(Reach::Page {
                    page: (place & !0xfff).wrapping_add_signed(delta),
                    reg,
                }),
                _ => Err(format!("`{insn}` is not an adrp")),
            }
        }
        Reloc::Aarch64AddAbsLo12Nc => {
            let insn = a64_at(image, offset)?;
            match insn.operands {
                [
                    Operand::RegisterOrSP(SizeCode::X, _),
                    Operand::RegisterOrSP(SizeCode::X, base),
                    Operand::Immediate(low),
                    _,
                ] if insn.opcode == Opcode::ADD => Ok(Reach::Low12 {
                    low: u64::from(low),
                    base,
                }),
                _ => Err(format!(
                    "`{insn}` is not a 64-bit add of an unshifted immediate"
                )),
            }
        }
        Reloc::Abs8 => {
            // Cranelift loads a 64-bit address from a literal in the code, jumping over it:
            // `ldr xN, #8; b #12; .quad ADDRESS`, the relocation on the literal.
            let ldr_at = offset
                .checked_sub(8)
                .ok_or("no room for the ldr before the literal")?;
            let ldr = a64_at(image, ldr_at)?;
            let b = a64_at(image, ldr_at + 4)?;
            let loads_literal = ldr.opcode == Opcode::LDR
                && matches!(
                    ldr.operands,
                    [Operand::Register(SizeCode::X, _), Operand::PCOffset(8), ..]
                );
            let skips_literal =
                b.opcode == Opcode::B && matches!(b.operands, [Operand::PCOffset(12), ..]);
            if !(loads_literal && skips_literal) {
                return Err(format!(
                    "`{ldr}; {b}` does not load the literal at the site"
                ));
            }
            Ok(Reach::Address(u64_at(image, offset)?))
        }
        other => Err(format!("no aarch64 decoding for {other:?}")),
    }
}

/// Where the veneer at `image[at..]` jumps: it must be `ldr x16, #8; br x16; .quad TARGET`.
pub fn veneer_target(image: &[u8], at: usize) -> Result<u64, String> {
    let ldr = a64_at(image, at)?;
    let br = a64_at(image, at + 4)?;
    let loads_x16 = ldr.opcode == Opcode::LDR
        && matches!(
            ldr.operands,
            [Operand::Register(SizeCode::X, 16), Operand::PCOffset(8), ..]
        );
    let jumps_x16 =
        br.opcode == Opcode::BR && matches!(br.operands, [Operand::Register(SizeCode::X, 16), ..]);
    if !(loads_x16 && jumps_x16) {
        return Err(format!("veneer at +{at:#x} is `{ldr}; {br}`"));
    }
    u64_at(image, at + 8)
}

/// The instruction in the one 32-bit word at `image[at..]`. Decoding word by word, never as a
/// stream, keeps literal words in the code from derailing the decoder.
pub fn a64_at(image: &[u8], at: usize) -> Result<Instruction, String> {
    let word = image
        .get(at..at + 4)
        .ok_or_else(|| format!("no instruction at +{at:#x}"))?;
    InstDecoder::default()
        .decode(&mut U8Reader::new(word))
        .map_err(|e| format!("undecodable word {word:02x?} at +{at:#x}: {e}"))
}

fn u64_at(image: &[u8], at: usize) -> Result<u64, String> {
    let bytes = image
        .get(at..at + 8)
        .ok_or_else(|| format!("no 8-byte literal at +{at:#x}"))?;
    Ok(u64::from_le_bytes(bytes.try_into().expect("eight bytes")))
}

// ---- x86-64 -------------------------------------------------------------------------------

/// Decodes the x86-64 site of a `kind` relocation at `code[offset..]`, where `code[0]` runs at
/// `address`: finds the instruction whose encoding holds the relocated field (decoding from the
/// function's start), checks that the field is that instruction's displacement, branch offset
/// or immediate, and returns what the instruction reaches.
pub fn x86_reach(code: &[u8], address: u64, offset: usize, kind: Reloc) -> Result<Reach, String> {
    let place = address.wrapping_add(offset as u64);
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut insn = decoder.decode();
    // Instructions are contiguous from the start, so the first one that ends past the site
    // holds it. (Constant pools come after the last instruction with a relocation.)
    while insn.next_ip().wrapping_sub(address) <= offset as u64 {
        if !decoder.can_decode() {
            return Err("the site is past the last instruction".into());
        }
        insn = decoder.decode();
    }
    if insn.is_invalid() {
        return Err(format!("invalid instruction at {:#x}", insn.ip()));
    }
    let constants = decoder.get_constant_offsets(&insn);
    let field = place.wrapping_sub(insn.ip()) as usize;
    let holds = |at: usize, size: usize, want: usize| at == field && size == want;
    match kind {
        Reloc::X86CallPCRel4 | Reloc::X86PCRel4 => {
            if insn.is_ip_rel_memory_operand()
                && holds(
                    constants.displacement_offset(),
                    constants.displacement_size(),
                    4,
                )
            {
                Ok(Reach::Address(insn.ip_rel_memory_address()))
            } else if insn.op0_kind() == OpKind::NearBranch64
                && holds(constants.immediate_offset(), constants.immediate_size(), 4)
            {
                Ok(Reach::Address(insn.near_branch_target()))
            } else {
                Err(format!(
                    "`{insn}` at {:#x} has no pc-relative 32-bit field at the site",
                    insn.ip()
                ))
            }
        }
        Reloc::Abs8 => {
            if insn.code() == Code::Mov_r64_imm64
                && holds(constants.immediate_offset(), constants.immediate_size(), 8)
            {
                Ok(Reach::Address(insn.immediate64()))
            } else {
                Err(format!(
                    "`{insn}` at {:#x} has no 64-bit immediate at the site",
                    insn.ip()
                ))
            }
        }
        other => Err(format!("no x86-64 decoding for {other:?}")),
    }
}
