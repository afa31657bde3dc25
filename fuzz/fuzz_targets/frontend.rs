//! The front end on arbitrary bytes: decoding, parsing, checking and rendering diagnostics must
//! never panic or hang, and the incremental parse (bodies skipped by brace matching) must agree
//! with the full one.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_fuzz::frontend::run(data));
