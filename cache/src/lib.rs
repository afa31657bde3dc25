//! The persistent cache of compiled functions: the artifact file format and the stores.
//!
//! This crate owns how compiled code is laid out on disk ([`artifact`]) and where those bytes are
//! kept ([`store`]). It stores opaque bytes under keys its caller computes: it knows nothing of the
//! Kiln language, never parses source, and never sees a Cranelift type. Machine code, relocation
//! kinds, per-function metadata (error-site tables, signatures) and the module-level blob (globals
//! layout) are all bytes and integer codes whose meaning belongs to the caller (`kiln-jit`), which
//! also computes every [`Key`] and the engine fingerprint.
//!
//! The cache only ever speeds things up. Every way a read can fail (a missing, truncated, corrupt
//! or foreign file, an unreadable directory) is a value ([`ArtifactError`], [`StoreError`]) that
//! the caller turns into at most one warning and a recompile; nothing here panics on bad input.
//!
//! ```
//! use kiln_cache::{Artifact, ArtifactWriter, CacheStore, FunctionInput, Key, MemoryStore};
//! use kiln_cache::{RelocInput, VerifiedArtifact};
//!
//! let fingerprint = b"cranelift 0.135.8 x86_64 opt=speed kiln-abi=1";
//! let mut writer = ArtifactWriter::new(fingerprint);
//! writer.add_function(&FunctionInput {
//!     key: Key([7; 32]),
//!     name: "main",
//!     align: 16,
//!     code: &[0xe8, 0, 0, 0, 0, 0xc3],
//!     relocs: &[RelocInput { offset: 1, kind: 1, target: "helper", addend: -4 }],
//!     metadata: b"",
//! })?;
//! let bytes = writer.finish()?;
//!
//! let store = MemoryStore::new();
//! let module_key = Key([1; 32]);
//! store.insert(&module_key, &bytes)?;
//!
//! let entry = store.get(&module_key)?.expect("just inserted");
//! let verified = VerifiedArtifact::new(entry, fingerprint)?;
//! let artifact: Artifact<'_> = verified.artifact();
//! let main = artifact.find(&Key([7; 32])).expect("stored above");
//! let reloc = main.relocs().next().expect("one relocation");
//! assert_eq!(artifact.string(reloc.target), Some("helper"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layers
//! - [`artifact`]: [`ArtifactWriter`] builds the bytes of one module artifact (N functions with
//!   code, relocations, names and metadata); [`Artifact::parse`] verifies every checksum and every
//!   bound before handing out zero-copy views; [`MappedArtifact`] does the same over a read-only
//!   memory map.
//! - [`store`]: the [`CacheStore`] trait (get and insert by key) with [`MemoryStore`],
//!   [`FileStore`] (a sharded directory, atomic writes, LRU garbage collection under a size cap)
//!   and [`Fallback`] (memory in front of disk, promoting hits from the slower tier).
//!
//! Nothing here is wired into the JIT yet: computing keys, relinking and the CLI build on these
//! pieces.
//!
//! # Dependencies
//! Kept deliberately short; each is widely used and maintained:
//! - `blake3`: the checksum of the header and of every section. It is fast enough (several GB/s
//!   with SIMD) that verifying a whole artifact costs less than mapping it, and being a
//!   cryptographic hash it also makes accidental collisions a non-question. Its 32-byte output is
//!   stored whole.
//! - `memmap2`: read-only maps of artifact files, so a warm start reads code without copying the
//!   file into the heap first.
//! - `tempfile`: the write half of "write a temporary file in the same directory, `sync_all`,
//!   rename over the final name"; it creates unique names with mode 0600 and cleans up on error.
//! - `proptest` (tests only): random function sets round-trip through the writer and reader.
//!
//! No file-lock crate: every write is a rename of a complete file, so concurrent writers of one
//! key both succeed and leave one complete file, and concurrent garbage collections at worst both
//! try to delete the same file (the loser sees "not found", which is ignored). See [`store`].

pub mod artifact;
pub mod store;
pub mod trust;

pub use artifact::{
    Artifact, ArtifactError, ArtifactWriter, Function, FunctionInput, MappedArtifact, Reloc,
    RelocInput, Relocs, Section, VerifiedArtifact, WriteError,
};
pub use store::{
    CacheStore, DEFAULT_SIZE_CAP, Entry, Fallback, FileStore, GcReport, MemoryStore, StoreError,
    StoreStats,
};
pub use trust::MacKey;

use std::fmt;

/// A 32-byte hash naming one cache entry or one function: computed by the caller (for example
/// from Cranelift's cache key and the engine fingerprint); this crate only compares, stores and
/// prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the 64 lowercase hexadecimal digits that [`Key`]'s `Display` prints; `None` for
    /// anything else (uppercase included, so a key has exactly one spelling as a file name).
    pub fn from_hex(text: &str) -> Option<Key> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Key(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn key_hex_round_trips_and_has_one_spelling() {
        let key = Key(std::array::from_fn(|i| (i as u8).wrapping_mul(37)));
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(Key::from_hex(&text), Some(key));
        assert_eq!(Key::from_hex(&text.to_uppercase()), None);
        assert_eq!(Key::from_hex(&text[1..]), None);
        assert_eq!(Key::from_hex(&format!("{}g", &text[1..])), None);
        assert_eq!(format!("{key:?}"), format!("Key({text})"));
    }
}
