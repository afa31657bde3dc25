//! Kiln facade (being written).
