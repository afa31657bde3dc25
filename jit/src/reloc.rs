//! Relocation arithmetic: patching one site of machine code for a known target address.
//!
//! This is Kiln's own relinker's core, on plain bytes, for every target Kiln compiles for: it
//! never maps memory and never runs code, so the same functions link executable code here and
//! patch aarch64 code in tests on an x86-64 machine. It patches with `is_pic = false`
//! semantics (see CRANELIFT-NOTES.md, "Relocations"), and it overwrites the immediate fields it
//! fills instead of OR-ing into them, so patching bytes that were patched before is still exact.
//!
//! A target out of an instruction's reach is an error, never a truncated offset; for `bl`
//! the linker answers that error with a veneer ([`write_veneer`]).

use cranelift_codegen::binemit::Reloc;

/// Why a site could not be patched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelocError {
    /// The target is farther from the site than the instruction can reach.
    OutOfRange {
        kind: Reloc,
        /// Target minus site (for page-relative kinds, in pages).
        distance: i128,
    },
    /// The target of a branch is not 4-byte aligned.
    Misaligned { kind: Reloc, target: u64 },
    /// The site lies outside the code.
    OutOfBounds { offset: usize, len: usize },
    /// The instruction at the site is not the one the relocation kind patches.
    WrongInstruction { kind: Reloc, found: u32 },
    /// A relocation kind Kiln does not link.
    Unsupported(Reloc),
}

impl std::fmt::Display for RelocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelocError::OutOfRange { kind, distance } => {
                write!(f, "{kind:?} target out of range (distance {distance})")
            }
            RelocError::Misaligned { kind, target } => {
                write!(f, "{kind:?} target {target:#x} is not 4-byte aligned")
            }
            RelocError::OutOfBounds { offset, len } => {
                write!(
                    f,
                    "relocation at offset {offset} outside {len} bytes of code"
                )
            }
            RelocError::WrongInstruction { kind, found } => {
                write!(
                    f,
                    "{kind:?} site holds {found:#010x}, not the instruction it patches"
                )
            }
            RelocError::Unsupported(kind) => write!(f, "unsupported relocation kind {kind:?}"),
        }
    }
}

impl std::error::Error for RelocError {}

/// The reach of aarch64 `bl`: a signed 26-bit count of instructions, ±128 MiB.
pub const BL_RANGE: i64 = 1 << 27;

/// Bytes of an aarch64 veneer: `ldr x16, #8; br x16; .quad target`.
pub const VENEER_SIZE: usize = 16;

/// `ldr x16, #8`: loads the 64-bit literal 8 bytes ahead.
const LDR_X16_LITERAL_8: u32 = 0x5800_0050;
/// `br x16`. x16 is IP0, which the AAPCS64 reserves for exactly this (veneers between a call
/// and its callee), so no live value is clobbered.
const BR_X16: u32 = 0xd61f_0200;

/// Patches the relocation of `kind` at `code[offset..]`. `place` is the address `code[offset]`
/// will have, `target` the address of the symbol, `addend` the relocation's addend.
pub fn patch(
    kind: Reloc,
    code: &mut [u8],
    offset: usize,
    place: u64,
    target: u64,
    addend: i64,
) -> Result<(), RelocError> {
    // Exact arithmetic: an addend must not wrap a small target around the address space
    // before the distance is taken.
    let value = i128::from(target) + i128::from(addend);
    match kind {
        // A 64-bit absolute field holds any value modulo 2^64.
        Reloc::Abs8 => write_bytes(code, offset, &(value as u64).to_le_bytes()),
        Reloc::Abs4 => {
            let v = u32::try_from(value).map_err(|_| RelocError::OutOfRange {
                kind,
                distance: value,
            })?;
            write_bytes(code, offset, &v.to_le_bytes())
        }
        Reloc::X86PCRel4 | Reloc::X86CallPCRel4 => {
            let distance = value - i128::from(place);
            let v =
                i32::try_from(distance).map_err(|_| RelocError::OutOfRange { kind, distance })?;
            write_bytes(code, offset, &v.to_le_bytes())
        }
        Reloc::Arm64Call => {
            let insn = read_insn(code, offset)?;
            // `bl` is 0b100101 in the top six bits.
            if insn >> 26 != 0b10_0101 {
                return Err(RelocError::WrongInstruction { kind, found: insn });
            }
            if value % 4 != 0 {
                return Err(RelocError::Misaligned {
                    kind,
                    target: value as u64,
                });
            }
            let distance = value - i128::from(place);
            if !bl_reaches(distance) {
                return Err(RelocError::OutOfRange { kind, distance });
            }
            let imm26 = ((distance >> 2) as u32) & 0x03ff_ffff;
            write_insn(code, offset, (insn & 0xfc00_0000) | imm26)
        }
        Reloc::Aarch64AdrPrelPgHi21 => {
            let insn = read_insn(code, offset)?;
            // `adrp` is op=1 with 0b10000 in bits 28..24.
            if insn & 0x9f00_0000 != 0x9000_0000 {
                return Err(RelocError::WrongInstruction { kind, found: insn });
            }
            let pages = (value >> 12) - (i128::from(place) >> 12);
            // A signed 21-bit page count: ±4 GiB.
            if !(-(1 << 20)..(1 << 20)).contains(&pages) {
                return Err(RelocError::OutOfRange {
                    kind,
                    distance: pages,
                });
            }
            let imm = (pages as u32) & 0x1f_ffff;
            let (immlo, immhi) = (imm & 0b11, imm >> 2);
            let cleared = insn & !((0b11 << 29) | (0x7_ffff << 5));
            write_insn(code, offset, cleared | (immlo << 29) | (immhi << 5))
        }
        Reloc::Aarch64AddAbsLo12Nc => {
            let insn = read_insn(code, offset)?;
            // 64-bit `add` (immediate), without shift: 0b1001000100 in bits 31..22.
            if insn & 0xffc0_0000 != 0x9100_0000 {
                return Err(RelocError::WrongInstruction { kind, found: insn });
            }
            let imm12 = (value & 0xfff) as u32;
            write_insn(code, offset, (insn & !(0xfff << 10)) | (imm12 << 10))
        }
        other => Err(RelocError::Unsupported(other)),
    }
}

/// Whether a `bl` at `place` reaches `target` directly.
pub fn bl_reaches(distance: i128) -> bool {
    (-i128::from(BL_RANGE)..i128::from(BL_RANGE)).contains(&distance)
}

/// Writes an aarch64 veneer jumping to `target` at `code[offset..offset + VENEER_SIZE]`.
pub fn write_veneer(code: &mut [u8], offset: usize, target: u64) -> Result<(), RelocError> {
    let mut veneer = [0u8; VENEER_SIZE];
    veneer[..4].copy_from_slice(&LDR_X16_LITERAL_8.to_le_bytes());
    veneer[4..8].copy_from_slice(&BR_X16.to_le_bytes());
    veneer[8..].copy_from_slice(&target.to_le_bytes());
    write_bytes(code, offset, &veneer)
}

fn write_bytes(code: &mut [u8], offset: usize, bytes: &[u8]) -> Result<(), RelocError> {
    let len = code.len();
    code.get_mut(offset..)
        .and_then(|rest| rest.get_mut(..bytes.len()))
        .ok_or(RelocError::OutOfBounds { offset, len })?
        .copy_from_slice(bytes);
    Ok(())
}

fn read_insn(code: &[u8], offset: usize) -> Result<u32, RelocError> {
    let bytes =
        code.get(offset..)
            .and_then(|rest| rest.get(..4))
            .ok_or(RelocError::OutOfBounds {
                offset,
                len: code.len(),
            })?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
}

fn write_insn(code: &mut [u8], offset: usize, insn: u32) -> Result<(), RelocError> {
    write_bytes(code, offset, &insn.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BL: u32 = 0x9400_0000;
    const ADRP_X0: u32 = 0x9000_0000;
    const ADD_X0_X0: u32 = 0x9100_0000;

    fn insn_at(code: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(code[offset..offset + 4].try_into().unwrap())
    }

    #[test]
    fn absolute_and_x86_relative_values() {
        let mut code = [0u8; 12];
        patch(Reloc::Abs8, &mut code, 4, 0, 0x1122_3344_5566_7788, -8).unwrap();
        assert_eq!(
            u64::from_le_bytes(code[4..].try_into().unwrap()),
            0x1122_3344_5566_7780
        );
        // A call at 0x1000 whose 4-byte field is at 0x1001 reaching 0x2000 (addend -4).
        patch(Reloc::X86CallPCRel4, &mut code, 0, 0x1001, 0x2000, -4).unwrap();
        assert_eq!(
            i32::from_le_bytes(code[..4].try_into().unwrap()),
            0x2000 - 4 - 0x1001
        );
        let far = patch(Reloc::X86PCRel4, &mut code, 0, 0, 1 << 31, 0);
        assert!(matches!(far, Err(RelocError::OutOfRange { .. })), "{far:?}");
        let abs4 = patch(Reloc::Abs4, &mut code, 0, 0, 1 << 32, 0);
        assert!(matches!(abs4, Err(RelocError::OutOfRange { .. })));
    }

    #[test]
    fn bl_reach_is_exact_at_both_ends() {
        let mut code = BL.to_le_bytes();
        let place = 1 << 30;
        patch(
            Reloc::Arm64Call,
            &mut code,
            0,
            place,
            place + (BL_RANGE as u64) - 4,
            0,
        )
        .unwrap();
        assert_eq!(insn_at(&code, 0), BL | 0x01ff_ffff);
        patch(
            Reloc::Arm64Call,
            &mut code,
            0,
            place,
            place - (BL_RANGE as u64),
            0,
        )
        .unwrap();
        assert_eq!(insn_at(&code, 0), BL | 0x0200_0000);
        let beyond = patch(
            Reloc::Arm64Call,
            &mut code,
            0,
            place,
            place + BL_RANGE as u64,
            0,
        );
        assert!(
            matches!(beyond, Err(RelocError::OutOfRange { .. })),
            "{beyond:?}"
        );
        let odd = patch(Reloc::Arm64Call, &mut code, 0, place, place + 6, 0);
        assert!(matches!(odd, Err(RelocError::Misaligned { .. })));
    }

    #[test]
    fn patching_twice_overwrites() {
        let mut code = [
            BL.to_le_bytes(),
            ADRP_X0.to_le_bytes(),
            ADD_X0_X0.to_le_bytes(),
        ]
        .concat();
        for target in [0x7_f000u64, 0x12_3456, 0x40] {
            patch(Reloc::Arm64Call, &mut code, 0, 0, target & !3, 0).unwrap();
            patch(Reloc::Aarch64AdrPrelPgHi21, &mut code, 4, 4, target, 0).unwrap();
            patch(Reloc::Aarch64AddAbsLo12Nc, &mut code, 8, 8, target, 0).unwrap();
            let mut fresh = [
                BL.to_le_bytes(),
                ADRP_X0.to_le_bytes(),
                ADD_X0_X0.to_le_bytes(),
            ]
            .concat();
            patch(Reloc::Arm64Call, &mut fresh, 0, 0, target & !3, 0).unwrap();
            patch(Reloc::Aarch64AdrPrelPgHi21, &mut fresh, 4, 4, target, 0).unwrap();
            patch(Reloc::Aarch64AddAbsLo12Nc, &mut fresh, 8, 8, target, 0).unwrap();
            assert_eq!(code, fresh, "target {target:#x}");
        }
    }

    #[test]
    fn adrp_pages_and_add_low_bits() {
        let mut code = [ADRP_X0.to_le_bytes(), ADD_X0_X0.to_le_bytes()].concat();
        // The adrp is the last instruction of its page; the target 3 GiB ahead.
        let place = 0x4000_0ffc;
        let target = place + (3 << 30) + 0x123;
        patch(Reloc::Aarch64AdrPrelPgHi21, &mut code, 0, place, target, 0).unwrap();
        patch(
            Reloc::Aarch64AddAbsLo12Nc,
            &mut code,
            4,
            place + 4,
            target,
            0,
        )
        .unwrap();
        let adrp = insn_at(&code, 0);
        let imm = ((adrp >> 5) & 0x7_ffff) << 2 | ((adrp >> 29) & 0b11);
        assert_eq!(u64::from(imm), (target >> 12) - (place >> 12));
        assert_eq!((insn_at(&code, 4) >> 10) & 0xfff, (target & 0xfff) as u32);
        let far = patch(Reloc::Aarch64AdrPrelPgHi21, &mut code, 0, 0, 1 << 32, 0);
        assert!(matches!(far, Err(RelocError::OutOfRange { .. })), "{far:?}");
    }

    #[test]
    fn a_site_that_is_not_the_instruction_is_refused() {
        let mut code = 0xd503_201fu32.to_le_bytes(); // nop
        for kind in [
            Reloc::Arm64Call,
            Reloc::Aarch64AdrPrelPgHi21,
            Reloc::Aarch64AddAbsLo12Nc,
        ] {
            let err = patch(kind, &mut code, 0, 0, 0, 0);
            assert!(
                matches!(err, Err(RelocError::WrongInstruction { .. })),
                "{err:?}"
            );
        }
        let short = patch(Reloc::Abs8, &mut code, 0, 0, 0, 0);
        assert!(matches!(short, Err(RelocError::OutOfBounds { .. })));
    }

    #[test]
    fn a_veneer_loads_and_branches_to_its_literal() {
        let mut code = [0u8; VENEER_SIZE];
        write_veneer(&mut code, 0, 0xdead_beef_0000_1000).unwrap();
        assert_eq!(insn_at(&code, 0), LDR_X16_LITERAL_8);
        assert_eq!(insn_at(&code, 4), BR_X16);
        assert_eq!(
            u64::from_le_bytes(code[8..].try_into().unwrap()),
            0xdead_beef_0000_1000
        );
    }
}
