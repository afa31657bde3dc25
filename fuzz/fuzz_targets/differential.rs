//! The whole pipeline on random valid programs: the input is a seed for
//! `kiln_lang::generate::random_program`, and the JIT must agree exactly with the reference
//! interpreter on its output and on how `main` ends.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::differential::run(data));
