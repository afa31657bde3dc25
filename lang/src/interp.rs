//! The tree-walking reference interpreter (to be written).
