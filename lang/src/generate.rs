//! Program generators for tests and benches (to be written).
