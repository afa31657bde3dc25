//! The artifact reader on mutated real artifacts and on structured artifacts behind valid
//! checksums: parsing, decoding and relocating must never panic, and what decodes must encode
//! back to the same module. Nothing is executed.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::artifact::run(data));
