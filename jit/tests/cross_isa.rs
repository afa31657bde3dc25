//! Cross-ISA relinking: Kiln scripts compiled on this machine for aarch64 and x86-64, stored as
//! cache entries and read back, relinked by Kiln's own relinker (`link::relocate`) at layouts
//! no real mapping would give, and every patched site decoded with a disassembler and compared
//! with the address it should reach.
//!
//! Nothing is mapped and nothing runs: each function is patched in a plain byte buffer as if it
//! ran at an address the test chooses, with every symbol at an address the test chooses. The
//! checker (`cross_isa/check.rs`) shares no code with the relinker, and the last tests break
//! correct patches the way relinker bugs would and prove the checker names the broken site.
//!
//! What Cranelift emits for Kiln (is_pic = false), as `every_relocation_kind_occurs` asserts:
//! calls between script functions are `Arm64Call` (`bl`) / `X86CallPCRel4` (`call`); a
//! function's own address, which its error path passes to the runtime, is an `adrp`/`add` pair
//! (`Aarch64AdrPrelPgHi21` + `Aarch64AddAbsLo12Nc`) / a rip-relative `lea` (`X86CallPCRel4`);
//! strings, globals, host and runtime functions and libcalls are `Abs8` (a literal loaded by
//! `ldr` / a `movabs` immediate). The PC-relative "data" reference is therefore the function's
//! own symbol: the layouts below move it away from the function to put that target far away.

// A test crate's root is `tests/cross_isa.rs`, so its modules are found in `tests/` unless told.
#[path = "cross_isa/artifacts.rs"]
mod artifacts;
#[path = "cross_isa/check.rs"]
mod check;
#[path = "cross_isa/corrupt.rs"]
mod corrupt;

use artifacts::{Function, functions, triple};
use check::{Arch, Mismatch, Reach, a64_at, aarch64_reach, check, veneer_target};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::ir::LibCall;
use kiln_jit::compile::{RelocTarget, Relocation};
use kiln_jit::link::{Target, relocate, veneer_room};
use kiln_jit::lower::Symbol;
use kiln_jit::reloc::BL_RANGE;
use std::collections::BTreeSet;
use yaxpeax_arm::armv8::a64::{Opcode, Operand};

const ARCHES: [Arch; 2] = [Arch::Aarch64, Arch::X86_64];

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

// ---- relinking at a chosen layout ---------------------------------------------------------

/// Where a layout puts what a function refers to.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Where the function runs.
    address: u64,
    /// Where the other script functions are: the one at symbol index `i` at
    /// `callees + 0x100 * i`, so that no two share an address.
    callees: u64,
    /// What the function's own symbol resolves to: the target of its adrp/add pair (aarch64)
    /// or rip-relative lea (x86-64). A real link gives `address`.
    own: u64,
    /// Where the symbols reached through absolute addresses are (strings, globals, host and
    /// runtime functions, libcalls), each at its own offset from here.
    data: u64,
}

impl Layout {
    /// A layout such as a real link gives: callees 1 MiB on, the function's own symbol its
    /// address.
    fn at(address: u64) -> Layout {
        Layout {
            address,
            callees: address + MIB,
            own: address,
            data: 0x5555_0000_0000,
        }
    }

    fn resolve(&self, f: &Function, target: Target<'_>) -> u64 {
        match target {
            Target::Symbol(Symbol::Function(name)) if *name == f.name => self.own,
            Target::Symbol(symbol) => {
                let i = f.code.symbols.iter().position(|s| s == symbol);
                let i = i.expect("a symbol of the function") as u64;
                match symbol {
                    Symbol::Function(_) => self.callees.wrapping_add(0x100 * i),
                    _ => self.data.wrapping_add(0x18 * i + 8),
                }
            }
            Target::LibCall(lc) => {
                let k = [LibCall::FloorF64, LibCall::CeilF64]
                    .iter()
                    .position(|&l| l == lc)
                    .map_or(2, |k| k as u64);
                self.data.wrapping_add(0x1000 + 0x10 * k)
            }
        }
    }

    fn relink(self, arch: Arch, f: &Function) -> Result<Relinked<'_>, String> {
        relink(arch, f, self.address, &|t| self.resolve(f, t))
    }
}

/// A function patched by `link::relocate` as if it ran at `address`.
struct Relinked<'f> {
    arch: Arch,
    f: &'f Function,
    address: u64,
    /// The code followed by its veneer room.
    image: Vec<u8>,
    /// The address each relocation should reach.
    wanted: Vec<u64>,
}

/// Copies `f`'s code into a buffer with its veneer room and relinks it at `address`, every
/// symbol where `resolve` says.
fn relink<'f>(
    arch: Arch,
    f: &'f Function,
    address: u64,
    resolve: &dyn Fn(Target<'_>) -> u64,
) -> Result<Relinked<'f>, String> {
    let code = &f.code;
    let mut image = code.code.clone();
    image.resize(code.code.len() + veneer_room(&code.as_code()), 0);
    relocate(
        &mut image,
        code.code.len(),
        address,
        &code.relocs,
        &code.symbols,
        &|t| Some(resolve(t)),
    )?;
    // Kiln's symbols carry no offset of their own (addends are only the PC bias of x86's
    // 32-bit fields, see `every_relocation_kind_occurs`), so each site should reach its
    // symbol's address.
    let wanted = code
        .relocs
        .iter()
        .map(|r| match r.target {
            RelocTarget::Symbol(i) => resolve(Target::Symbol(&code.symbols[i as usize])),
            RelocTarget::LibCall(lc) => resolve(Target::LibCall(lc)),
            RelocTarget::SelfOffset(off) => address + u64::from(off),
        })
        .collect();
    Ok(Relinked {
        arch,
        f,
        address,
        image,
        wanted,
    })
}

impl Relinked<'_> {
    fn len(&self) -> usize {
        self.f.code.code.len()
    }

    fn relocs(&self) -> &[Relocation] {
        &self.f.code.relocs
    }

    fn place(&self, r: &Relocation) -> u64 {
        self.address.wrapping_add(u64::from(r.offset))
    }

    fn check(&self) -> Vec<Mismatch> {
        check(
            self.arch,
            &self.image,
            self.len(),
            self.address,
            self.relocs(),
            &self.wanted,
        )
    }

    fn describe(&self, mismatches: &[Mismatch]) -> String {
        let lines: Vec<String> = mismatches.iter().map(|m| format!("  {m}")).collect();
        format!(
            "{} for {} relinked at {:#x}:\n{}",
            self.f.id(),
            triple(self.arch),
            self.address,
            lines.join("\n")
        )
    }

    /// Asserts that every site reaches its target.
    fn assert_reaches_every_target(&self) {
        let mismatches = self.check();
        assert!(mismatches.is_empty(), "{}", self.describe(&mismatches));
    }

    /// Asserts that the checker reports exactly the sites at `offsets`, and returns what it
    /// reported.
    fn assert_caught(&self, offsets: &[u32]) -> Vec<Mismatch> {
        let mismatches = self.check();
        let reported: BTreeSet<u32> = mismatches.iter().map(|m| m.offset).collect();
        let expected: BTreeSet<u32> = offsets.iter().copied().collect();
        assert_eq!(reported, expected, "{}", self.describe(&mismatches));
        mismatches
    }

    /// Where the `bl` of relocation `r` branches, as an offset into the image.
    fn bl_destination(&self, r: &Relocation) -> u64 {
        let insn = a64_at(&self.image, r.offset as usize).expect("an instruction");
        match insn.operands[0] {
            Operand::PCOffset(delta) if insn.opcode == Opcode::BL => self
                .place(r)
                .wrapping_add_signed(delta)
                .wrapping_sub(self.address),
            _ => panic!("`{insn}` is not a bl"),
        }
    }
}

/// Relinks every function of `arch` with `layout(f)`, and asserts that every site reaches its
/// target. Returns the number of sites checked.
fn relink_all(arch: Arch, layout: impl Fn(&Function) -> Layout) -> usize {
    let mut sites = 0;
    for f in functions(arch) {
        let relinked = layout(f)
            .relink(arch, f)
            .unwrap_or_else(|e| panic!("{} for {}: {e}", f.id(), triple(arch)));
        relinked.assert_reaches_every_target();
        sites += f.code.relocs.len();
    }
    sites
}

/// The first relocation of `kind` in the functions of `arch`, and its function.
fn first_site(arch: Arch, kind: Reloc) -> (&'static Function, &'static Relocation) {
    functions(arch)
        .iter()
        .find_map(|f| {
            f.code
                .relocs
                .iter()
                .find(|r| r.kind == kind)
                .map(|r| (f, r))
        })
        .unwrap_or_else(|| panic!("no {kind:?} relocation for {}", triple(arch)))
}

fn index_of(f: &Function, r: &Relocation) -> usize {
    f.code
        .relocs
        .iter()
        .position(|x| x == r)
        .expect("a relocation of f")
}

// ---- what the code holds ------------------------------------------------------------------

/// What a relocation's target is, as a word for the tables below.
fn target_class(f: &Function, r: &Relocation) -> &'static str {
    match &r.target {
        RelocTarget::Symbol(i) => match &f.code.symbols[*i as usize] {
            Symbol::Function(name) if *name == f.name => "own address",
            Symbol::Function(_) => "script function",
            Symbol::Global(_) => "global",
            Symbol::Host(_) => "host function",
            Symbol::Runtime(_) => "runtime function",
            Symbol::Str(_) => "string",
        },
        RelocTarget::LibCall(_) => "libcall",
        RelocTarget::SelfOffset(_) => "constant pool",
    }
}

/// The functions under test come from the cache: `artifacts::functions` builds each script
/// with `Engine::build_file` and reads its artifact back by module key. This proves they hold
/// every kind of relocation Kiln's code uses, so no test below passes for want of sites.
#[test]
fn every_relocation_kind_occurs() {
    let expected: [(Arch, &[(Reloc, &str)]); 2] = [
        (
            Arch::Aarch64,
            &[
                (Reloc::Abs8, "global"),
                (Reloc::Abs8, "host function"),
                (Reloc::Abs8, "runtime function"),
                (Reloc::Abs8, "string"),
                (Reloc::Arm64Call, "script function"),
                (Reloc::Aarch64AdrPrelPgHi21, "own address"),
                (Reloc::Aarch64AddAbsLo12Nc, "own address"),
            ],
        ),
        (
            Arch::X86_64,
            &[
                (Reloc::Abs8, "global"),
                (Reloc::Abs8, "host function"),
                (Reloc::Abs8, "libcall"),
                (Reloc::Abs8, "runtime function"),
                (Reloc::Abs8, "string"),
                (Reloc::X86CallPCRel4, "own address"),
                (Reloc::X86CallPCRel4, "script function"),
            ],
        ),
    ];
    for (arch, expected) in expected {
        let mut seen = BTreeSet::new();
        for f in functions(arch) {
            for r in &f.code.relocs {
                seen.insert((format!("{:?}", r.kind), target_class(f, r)));
                // The addend is the PC bias of an x86 32-bit field at the end of its
                // instruction, and nothing else: no symbol carries an offset.
                let bias = match r.kind {
                    Reloc::X86CallPCRel4 | Reloc::X86PCRel4 => -4,
                    _ => 0,
                };
                assert_eq!(r.addend, bias, "{} {r:?}", f.id());
            }
        }
        let expected: BTreeSet<(String, &str)> = expected
            .iter()
            .map(|(kind, class)| (format!("{kind:?}"), *class))
            .collect();
        assert_eq!(seen, expected, "relocations of {}", triple(arch));
    }
    // Without SSE4.1, x86-64 rounds through libcalls; aarch64 has instructions for it.
    let libcalls = |arch| {
        let f = functions(arch)
            .iter()
            .find(|f| f.name == "rounded")
            .unwrap();
        let lcs = f.code.relocs.iter().filter_map(|r| match r.target {
            RelocTarget::LibCall(lc) => Some(lc),
            _ => None,
        });
        lcs.collect::<Vec<_>>()
    };
    assert_eq!(
        libcalls(Arch::X86_64),
        [LibCall::FloorF64, LibCall::CeilF64]
    );
    assert_eq!(libcalls(Arch::Aarch64), []);
}

// ---- layouts that must link ---------------------------------------------------------------

#[test]
fn every_site_reaches_its_target_at_an_ordinary_layout() {
    for arch in ARCHES {
        let sites = relink_all(arch, |_| Layout::at(0x7f12_3456_0000));
        assert!(sites >= 30, "{sites} sites for {}", triple(arch));
    }
}

#[test]
fn callees_100_mib_away_are_called_directly() {
    for arch in ARCHES {
        for distance in [100 * MIB, (100 * MIB).wrapping_neg()] {
            for f in functions(arch) {
                let address: u64 = 0x40_0000_0000;
                let layout = Layout {
                    callees: address.wrapping_add(distance),
                    ..Layout::at(address)
                };
                let relinked = layout.relink(arch, f).unwrap();
                relinked.assert_reaches_every_target();
                let veneers = &relinked.image[relinked.len()..];
                assert!(veneers.iter().all(|&b| b == 0), "{} used a veneer", f.id());
            }
        }
    }
}

#[test]
fn callees_200_mib_away_are_called_through_veneers_on_aarch64() {
    for distance in [200 * MIB, (200 * MIB).wrapping_neg()] {
        let layout = |_: &Function| Layout {
            callees: (0x40_0000_0000u64).wrapping_add(distance),
            ..Layout::at(0x40_0000_0000)
        };
        // x86-64 calls reach ±2 GiB directly.
        relink_all(Arch::X86_64, layout);
        let mut calls = 0;
        for f in functions(Arch::Aarch64) {
            let relinked = layout(f).relink(Arch::Aarch64, f).unwrap();
            relinked.assert_reaches_every_target();
            let mut veneers = BTreeSet::new();
            for (r, &wanted) in relinked.relocs().iter().zip(&relinked.wanted) {
                if r.kind != Reloc::Arm64Call {
                    continue;
                }
                calls += 1;
                // The bl lands on a veneer of its own after the code, which loads the callee's
                // address into x16 and branches there.
                let veneer = relinked.bl_destination(r);
                assert!(
                    (relinked.len() as u64..relinked.image.len() as u64).contains(&veneer),
                    "{}: bl at +{:#x} lands at +{veneer:#x}, not in the veneer room",
                    f.id(),
                    r.offset
                );
                assert!(veneers.insert(veneer), "two calls share a veneer");
                assert_eq!(
                    veneer_target(&relinked.image, veneer as usize),
                    Ok(wanted),
                    "{}: veneer for the bl at +{:#x}",
                    f.id(),
                    r.offset
                );
            }
        }
        assert!(calls >= 5, "only {calls} calls");
    }
}

#[test]
fn bl_reach_is_exact_at_both_ends() {
    let range = BL_RANGE as u64;
    // Callee distance from the bl, and whether the bl reaches it directly.
    let cases = [
        (range - 4, true),
        (range, false),
        (range.wrapping_neg(), true),
        ((range + 4).wrapping_neg(), false),
    ];
    for f in functions(Arch::Aarch64) {
        for r in f.code.relocs.iter().filter(|r| r.kind == Reloc::Arm64Call) {
            let RelocTarget::Symbol(callee) = r.target else {
                panic!("a call to {:?}", r.target)
            };
            let callee = &f.code.symbols[callee as usize];
            for (distance, direct) in cases {
                let layout = Layout::at(0x40_0000_0000);
                let place = layout.address + u64::from(r.offset);
                let resolve = |t: Target<'_>| match t {
                    Target::Symbol(s) if s == callee => place.wrapping_add(distance),
                    other => layout.resolve(f, other),
                };
                let relinked = relink(Arch::Aarch64, f, layout.address, &resolve).unwrap();
                relinked.assert_reaches_every_target();
                let lands = relinked.bl_destination(r);
                assert_eq!(
                    lands < relinked.len() as u64 || lands >= relinked.image.len() as u64,
                    direct,
                    "{}: bl at +{:#x} to a callee {:#x} away lands at +{lands:#x}",
                    f.id(),
                    r.offset,
                    distance as i64
                );
            }
        }
    }
}

#[test]
fn aarch64_adrp_reaches_data_3_gib_away() {
    for distance in [3 * GIB + 0x123, (3 * GIB + 0x123).wrapping_neg()] {
        let sites = relink_all(Arch::Aarch64, |_| Layout {
            own: (0x40_0000_0000u64).wrapping_add(distance),
            ..Layout::at(0x40_0000_0000)
        });
        assert!(sites > 0);
    }
}

#[test]
fn pc_relative_targets_out_of_reach_are_an_error() {
    let address = 0x40_0000_0000;
    // Each layout puts one kind of target out of reach: the functions that refer to it must
    // not link, with an error naming the relocation kind; the others link as usual.
    let cases = [
        // x86-64's rip-relative lea and call reach ±2 GiB.
        (
            Arch::X86_64,
            Layout {
                own: address + 3 * GIB,
                ..Layout::at(address)
            },
            "own address",
        ),
        (
            Arch::X86_64,
            Layout {
                own: address - 2 * GIB - 0x10,
                ..Layout::at(address)
            },
            "own address",
        ),
        (
            Arch::X86_64,
            Layout {
                callees: address + 3 * GIB,
                ..Layout::at(address)
            },
            "script function",
        ),
        // aarch64's adrp reaches ±4 GiB of pages.
        (
            Arch::Aarch64,
            Layout {
                own: address + 5 * GIB,
                ..Layout::at(address)
            },
            "own address",
        ),
        (
            Arch::Aarch64,
            Layout {
                own: address - 4 * GIB - 0x1000,
                ..Layout::at(address)
            },
            "own address",
        ),
    ];
    for (arch, layout, class) in cases {
        let kind = match arch {
            Arch::X86_64 => "X86CallPCRel4",
            Arch::Aarch64 => "Aarch64AdrPrelPgHi21",
        };
        let mut refused = 0;
        for f in functions(arch) {
            let affected = f.code.relocs.iter().any(|r| target_class(f, r) == class);
            match layout.relink(arch, f) {
                Ok(relinked) if !affected => relinked.assert_reaches_every_target(),
                Ok(_) => panic!("{} for {} linked at {layout:x?}", f.id(), triple(arch)),
                Err(e) => {
                    assert!(
                        affected && e.contains(kind) && e.contains("out of range"),
                        "{} for {}: {e}",
                        f.id(),
                        triple(arch)
                    );
                    refused += 1;
                }
            }
        }
        assert!(refused > 0, "{layout:x?}");
    }
}

#[test]
fn an_adrp_add_pair_straddling_a_page_boundary() {
    let mut pairs = 0;
    for f in functions(Arch::Aarch64) {
        for (i, adrp) in f.code.relocs.iter().enumerate() {
            if adrp.kind != Reloc::Aarch64AdrPrelPgHi21 {
                continue;
            }
            let add = &f.code.relocs[i + 1];
            assert_eq!(
                (add.kind, add.offset),
                (Reloc::Aarch64AddAbsLo12Nc, adrp.offset + 4)
            );
            pairs += 1;
            // The adrp is the last instruction of its page, the add the first of the next.
            let page = 0x12_3456_7000;
            let address = page + 0xffc - u64::from(adrp.offset);
            let far = page + 3 * GIB;
            // Targets on both sides of page boundaries: the adrp's own page and the add's,
            // and 3 GiB on; and the function's own address, as a real link gives.
            for own in [
                page + 0xfff,
                page + 0x1000,
                page - 1,
                far + 0xfff,
                far + 0x1000,
                far - 1,
                address,
            ] {
                let layout = Layout {
                    own,
                    ..Layout::at(address)
                };
                let relinked = layout.relink(Arch::Aarch64, f).unwrap();
                assert_eq!(relinked.place(adrp) & 0xfff, 0xffc);
                assert_eq!(relinked.place(add) & 0xfff, 0);
                relinked.assert_reaches_every_target();
                // Decoded together, the pair gives the whole address.
                let reach = |r: &Relocation| {
                    let (len, offset) = (relinked.len(), r.offset as usize);
                    aarch64_reach(&relinked.image, len, address, offset, r.kind).unwrap()
                };
                let (Reach::Page { page, reg }, Reach::Low12 { low, base }) =
                    (reach(adrp), reach(add))
                else {
                    panic!("not an adrp/add pair")
                };
                assert_eq!((reg, page + low), (base, own), "{}", f.id());
            }
        }
    }
    assert!(pairs >= 6, "only {pairs} adrp/add pairs");
}

#[test]
fn addresses_near_zero_and_near_the_top_of_the_48_bit_space() {
    let top = 1u64 << 48;
    let layouts = [
        // Everything in the first pages.
        Layout {
            address: 0x1_0000,
            callees: 0x4_0000,
            own: 0x4,
            data: 0x40,
        },
        // Everything in the last pages below 2^48.
        Layout {
            address: top - 0x10_0000,
            callees: top - 0x40_0000,
            own: top - 0x8,
            data: top - 0x1_0000,
        },
        // Code at the top calling and addressing the bottom: veneers and 64-bit literals on
        // aarch64; x86 cannot link it (see `pc_relative_targets_out_of_reach_are_an_error`).
        Layout {
            address: top - 0x10_0000,
            callees: 0x4_0000,
            own: top - 0x8,
            data: 0x40,
        },
    ];
    for (n, layout) in layouts.into_iter().enumerate() {
        relink_all(Arch::Aarch64, |_| layout);
        if n < 2 {
            relink_all(Arch::X86_64, |_| layout);
        }
    }
    // An x86 PC-relative field's -4 addend must not wrap a target below 4 around the address
    // space: a site 64 KiB above address 0 reaches it.
    let f = &functions(Arch::X86_64)[0];
    let below_4 = Layout {
        own: 0,
        ..Layout::at(0x1_0000)
    };
    below_4
        .relink(Arch::X86_64, f)
        .unwrap_or_else(|e| panic!("a target at 0 is in reach: {e}"))
        .assert_reaches_every_target();
}

// ---- broken patches the checker must catch ------------------------------------------------

#[test]
fn a_bl_off_by_four_is_caught() {
    let (f, r) = first_site(Arch::Aarch64, Reloc::Arm64Call);
    let mut relinked = Layout::at(0x40_0000_0000).relink(Arch::Aarch64, f).unwrap();
    relinked.assert_reaches_every_target();
    let (place, wanted) = (relinked.place(r), relinked.wanted[index_of(f, r)]);
    corrupt::set_bl_destination(&mut relinked.image, r.offset as usize, place, wanted + 4);
    let caught = relinked.assert_caught(&[r.offset]);
    assert_eq!(caught[0].found, Ok(wanted + 4));
}

#[test]
fn an_x86_call_off_by_four_is_caught() {
    let (f, r) = first_site(Arch::X86_64, Reloc::X86CallPCRel4);
    let mut relinked = Layout::at(0x40_0000_0000).relink(Arch::X86_64, f).unwrap();
    relinked.assert_reaches_every_target();
    let (place, wanted) = (relinked.place(r), relinked.wanted[index_of(f, r)]);
    let off_by_four = (wanted - 4).wrapping_sub(4).wrapping_sub(place) as i64;
    corrupt::set_rel32(&mut relinked.image, r.offset as usize, off_by_four);
    let caught = relinked.assert_caught(&[r.offset]);
    assert_eq!(caught[0].found, Ok(wanted - 4));
}

#[test]
fn an_x86_rel32_without_its_addend_is_caught() {
    // Every 32-bit PC-relative site of one function, calls and the lea of its own address,
    // patched with target - place instead of target - 4 - place.
    let f = functions(Arch::X86_64)
        .iter()
        .find(|f| f.name == "twice")
        .unwrap();
    let mut relinked = Layout::at(0x40_0000_0000).relink(Arch::X86_64, f).unwrap();
    let sites: Vec<(usize, u64, u64)> = relinked
        .relocs()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == Reloc::X86CallPCRel4)
        .map(|(i, r)| (r.offset as usize, relinked.place(r), relinked.wanted[i]))
        .collect();
    assert!(sites.len() >= 3, "{sites:?}");
    for &(at, place, wanted) in &sites {
        corrupt::set_rel32(&mut relinked.image, at, wanted.wrapping_sub(place) as i64);
    }
    let offsets: Vec<u32> = sites.iter().map(|&(at, ..)| at as u32).collect();
    let caught = relinked.assert_caught(&offsets);
    for (m, &(_, _, wanted)) in caught.iter().zip(&sites) {
        assert_eq!(m.found, Ok(wanted + 4), "{m}");
    }
}

#[test]
fn an_adrp_of_the_adds_page_is_caught() {
    // The pair straddles a page boundary, and the adrp's page delta is computed from the
    // add's address (the next page) instead of its own.
    let (f, adrp) = first_site(Arch::Aarch64, Reloc::Aarch64AdrPrelPgHi21);
    let add = &f.code.relocs[index_of(f, adrp) + 1];
    let address = 0x12_3456_7000 + 0xffc - u64::from(adrp.offset);
    let target = address + 3 * GIB + 0xabc;
    let layout = Layout {
        own: target,
        ..Layout::at(address)
    };
    let mut relinked = layout.relink(Arch::Aarch64, f).unwrap();
    relinked.assert_reaches_every_target();
    let from_add = (target >> 12) as i64 - (relinked.place(add) >> 12) as i64;
    corrupt::set_adrp_pages(&mut relinked.image, adrp.offset as usize, from_add);
    let caught = relinked.assert_caught(&[adrp.offset, add.offset]);
    assert_eq!(caught[0].found, Ok((target & !0xfff) - 0x1000));
    assert_eq!(caught[1].found, Ok(target - 0x1000));
}

#[test]
fn an_add_with_another_addresses_low_bits_is_caught() {
    // The add gets the low 12 bits of its own address instead of the target's.
    let (f, adrp) = first_site(Arch::Aarch64, Reloc::Aarch64AdrPrelPgHi21);
    let add = &f.code.relocs[index_of(f, adrp) + 1];
    let target = 0x40_0000_0000 - 3 * GIB + 0xabc;
    let layout = Layout {
        own: target,
        ..Layout::at(0x40_0000_0000)
    };
    let mut relinked = layout.relink(Arch::Aarch64, f).unwrap();
    relinked.assert_reaches_every_target();
    let place = relinked.place(add);
    assert_ne!(place & 0xfff, target & 0xfff);
    corrupt::set_add_low12(&mut relinked.image, add.offset as usize, place);
    let caught = relinked.assert_caught(&[add.offset]);
    assert_eq!(caught[0].found, Ok((target & !0xfff) + (place & 0xfff)));
}

#[test]
fn an_abs8_one_byte_off_is_caught() {
    for arch in ARCHES {
        let (f, r) = first_site(arch, Reloc::Abs8);
        let relinked = Layout::at(0x40_0000_0000).relink(arch, f).unwrap();
        relinked.assert_reaches_every_target();
        let (at, wanted) = (r.offset as usize, relinked.wanted[index_of(f, r)]);
        // The right address written one byte too far into the code (the site left as
        // compiled), and an address one byte off.
        let mut shifted = Layout::at(0x40_0000_0000).relink(arch, f).unwrap();
        shifted.image[at..at + 8].copy_from_slice(&f.code.code[at..at + 8]);
        corrupt::set_u64(&mut shifted.image, at + 1, wanted);
        shifted.assert_caught(&[r.offset]);
        let mut plus_one = Layout::at(0x40_0000_0000).relink(arch, f).unwrap();
        corrupt::set_u64(&mut plus_one.image, at, wanted + 1);
        let caught = plus_one.assert_caught(&[r.offset]);
        assert_eq!(caught[0].found, Ok(wanted + 1), "{}", triple(arch));
    }
}

#[test]
fn a_veneer_literal_pointing_elsewhere_is_caught() {
    let (f, r) = first_site(Arch::Aarch64, Reloc::Arm64Call);
    let layout = Layout {
        callees: 0x40_0000_0000 + 200 * MIB,
        ..Layout::at(0x40_0000_0000)
    };
    let mut relinked = layout.relink(Arch::Aarch64, f).unwrap();
    relinked.assert_reaches_every_target();
    let veneer = relinked.bl_destination(r) as usize;
    let wanted = relinked.wanted[index_of(f, r)];
    // The literal of the next callee's slot, as an off-by-one veneer table would give.
    corrupt::set_u64(&mut relinked.image, veneer + 8, wanted + 0x100);
    let caught = relinked.assert_caught(&[r.offset]);
    assert_eq!(caught[0].found, Ok(wanted + 0x100));
}
