//! Kiln back end (being written).
