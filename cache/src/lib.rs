//! The persistent cache of compiled functions.
//!
//! This crate will own per-function cache keys, the mmap-backed artifact format and the stores
//! that keep artifacts. It stores opaque bytes under keys its caller computes: it knows nothing of
//! the Kiln language and never parses source.
//!
//! It is empty today; the JIT already keeps "build the CLIF of one function", "compile it" and
//! "link it into a module" as separate steps so that a cache can sit between them.
