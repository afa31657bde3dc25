//! Kiln's fuzz targets, as functions of the input bytes; `fuzz_targets/*.rs` only hand each
//! input to one of them. See README.md in this directory.

pub mod artifact;
pub mod differential;
pub mod frontend;
