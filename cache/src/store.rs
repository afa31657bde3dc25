//! Stores: where cache entries are kept, by key. An in-memory map, a directory on disk, and a
//! combinator putting the first in front of the second.
//!
//! Entries are opaque bytes here (in practice artifacts, which carry their own checksums); a store
//! never looks inside them. Whether the bytes are usable is the artifact reader's job; who could
//! have written them is the [`FileStore`]'s: it refuses an entry that others could have written
//! or whose tag is not its key's (see [`crate::trust`]), and otherwise hands back exactly the
//! bytes that were inserted.
//!
//! # The directory store and concurrency
//! [`FileStore`] keeps one file per key, named by the key's hex digits and sharded into
//! subdirectories by its first two; a file holds the entry's bytes, then their tag. Every write
//! goes to a fresh temporary file in the entry's own subdirectory (same file system, so the
//! rename is atomic), is flushed with `sync_all`, and is renamed over the final name. Hence:
//! - readers see either no file or a complete one, never a partial write;
//! - two processes writing the same key both succeed and leave one complete file (the last rename
//!   wins; for a content-addressed key both wrote the same bytes anyway);
//! - no file is ever modified in place, so mapping it ([`Entry`]) is sound: replacing or deleting
//!   its name leaves existing maps of the old file intact;
//! - a writer killed mid-write leaves only a temporary file, which [`FileStore::gc`] removes once
//!   it is old enough that no live writer can own it.
//!
//! No file lock is taken: garbage collection only ever deletes names, and two collections racing
//! at worst both try to delete one file (the loser's "not found" is ignored), so a lock would buy
//! nothing but a way to block. The `sync_all` before the rename makes sure a crash never leaves a
//! complete-looking name over unwritten data; the directory itself is not synced, because losing
//! a just-written entry in a crash only costs a recompile.
//!
//! Recency for eviction is the file's modification time: written on insert, refreshed on every
//! hit. Updating a timestamp does not modify the file's bytes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use memmap2::Mmap;

use crate::Key;
use crate::artifact::map_read_only;
use crate::trust::{self, MacKey, TAG_LEN};

/// The default size cap of a cache directory for [`FileStore::gc`]: 512 MiB.
pub const DEFAULT_SIZE_CAP: u64 = 512 * 1024 * 1024;

/// Temporary files being written start with this, so nothing mistakes them for entries.
const TEMP_PREFIX: &str = ".tmp-";

/// A temporary file older than this cannot belong to a live writer (a write takes milliseconds);
/// it was left by a process killed mid-write, and garbage collection removes it.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60 * 60);

/// Get and insert by key: the interface the JIT's cache layer talks to, in the spirit of
/// Cranelift's `CacheKvStore` and wasmer's `ModuleCache`. Shared between threads, so both take
/// `&self`.
pub trait CacheStore: Send + Sync {
    /// The bytes stored under `key`, or `None` if there are none. The bytes are returned as
    /// stored, without any check of their content.
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError>;

    /// Stores `bytes` under `key`, replacing any previous entry (which is how a corrupt entry
    /// heals).
    fn insert(&self, key: &Key, bytes: &[u8]) -> Result<(), StoreError>;

    /// Whether [`CacheStore::insert`] can succeed at all; a read-only store says no, so callers
    /// do not try (and do not warn) after every compile.
    fn writable(&self) -> bool {
        true
    }
}

impl<T: CacheStore + ?Sized> CacheStore for &T {
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        (**self).get(key)
    }
    fn insert(&self, key: &Key, bytes: &[u8]) -> Result<(), StoreError> {
        (**self).insert(key, bytes)
    }
    fn writable(&self) -> bool {
        (**self).writable()
    }
}

impl<T: CacheStore + ?Sized> CacheStore for Box<T> {
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        (**self).get(key)
    }
    fn insert(&self, key: &Key, bytes: &[u8]) -> Result<(), StoreError> {
        (**self).insert(key, bytes)
    }
    fn writable(&self) -> bool {
        (**self).writable()
    }
}

impl<T: CacheStore + ?Sized> CacheStore for Arc<T> {
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        (**self).get(key)
    }
    fn insert(&self, key: &Key, bytes: &[u8]) -> Result<(), StoreError> {
        (**self).insert(key, bytes)
    }
    fn writable(&self) -> bool {
        (**self).writable()
    }
}

/// The bytes of one entry: shared heap bytes (from memory) or a read-only map of a file (from
/// disk). Derefs to `&[u8]`; cheap to clone.
#[derive(Clone)]
pub struct Entry {
    repr: Repr,
    /// How many of the held bytes are the entry (a file's tag follows them).
    len: usize,
}

#[derive(Clone)]
enum Repr {
    Shared(Arc<[u8]>),
    Mapped(Arc<Mmap>),
}

impl Entry {
    /// Whether the bytes are a map of a file rather than on the heap.
    pub fn is_mapped(&self) -> bool {
        matches!(self.repr, Repr::Mapped(_))
    }

    /// The first `len` bytes of a mapped file.
    fn mapped(map: Mmap, len: usize) -> Entry {
        Entry {
            len: len.min(map.len()),
            repr: Repr::Mapped(Arc::new(map)),
        }
    }
}

impl From<Arc<[u8]>> for Entry {
    fn from(bytes: Arc<[u8]>) -> Entry {
        Entry {
            len: bytes.len(),
            repr: Repr::Shared(bytes),
        }
    }
}

impl From<Vec<u8>> for Entry {
    fn from(bytes: Vec<u8>) -> Entry {
        Entry::from(Arc::<[u8]>::from(bytes))
    }
}

impl From<&[u8]> for Entry {
    fn from(bytes: &[u8]) -> Entry {
        Entry::from(Arc::<[u8]>::from(bytes))
    }
}

impl Deref for Entry {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let bytes: &[u8] = match &self.repr {
            Repr::Shared(bytes) => bytes,
            Repr::Mapped(map) => map,
        };
        &bytes[..self.len]
    }
}

impl AsRef<[u8]> for Entry {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

/// Why a store operation failed. The caller reports at most one of these as a warning and goes
/// on without the cache: a store failure never stops a program from running.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The cache directory (or one of its subdirectories) could not be created.
    CreateDir { path: PathBuf, source: io::Error },
    /// An entry exists but could not be opened or mapped.
    Read { path: PathBuf, source: io::Error },
    /// An entry could not be written (read-only directory, full disk...).
    Write { path: PathBuf, source: io::Error },
    /// The directory could not be listed (for statistics or garbage collection).
    Scan { path: PathBuf, source: io::Error },
    /// An entry could not be deleted.
    Remove { path: PathBuf, source: io::Error },
    /// An entry or directory someone else may have written, or an entry whose tag is not this
    /// cache's (see [`crate::trust`]): refused, never read.
    Untrusted { path: PathBuf, reason: String },
    /// The store was opened read-only.
    ReadOnly { path: PathBuf },
}

impl StoreError {
    /// The file or directory the failed operation was about.
    pub fn path(&self) -> &Path {
        match self {
            StoreError::CreateDir { path, .. }
            | StoreError::Read { path, .. }
            | StoreError::Write { path, .. }
            | StoreError::Scan { path, .. }
            | StoreError::Remove { path, .. }
            | StoreError::Untrusted { path, .. }
            | StoreError::ReadOnly { path } => path,
        }
    }

    fn io(&self) -> Option<&io::Error> {
        match self {
            StoreError::CreateDir { source, .. }
            | StoreError::Read { source, .. }
            | StoreError::Write { source, .. }
            | StoreError::Scan { source, .. }
            | StoreError::Remove { source, .. } => Some(source),
            StoreError::Untrusted { .. } | StoreError::ReadOnly { .. } => None,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path().display();
        match self {
            StoreError::CreateDir { source, .. } => {
                write!(f, "cannot create cache directory {path}: {source}")
            }
            StoreError::Read { source, .. } => {
                write!(f, "cannot read cache entry {path}: {source}")
            }
            StoreError::Write { source, .. } => {
                write!(f, "cannot write cache entry {path}: {source}")
            }
            StoreError::Scan { source, .. } => {
                write!(f, "cannot list cache directory {path}: {source}")
            }
            StoreError::Remove { source, .. } => {
                write!(f, "cannot remove cache entry {path}: {source}")
            }
            StoreError::Untrusted { reason, .. } => write!(f, "refusing {path}: {reason}"),
            StoreError::ReadOnly { .. } => write!(f, "the cache {path} is read-only"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io().map(|e| e as _)
    }
}

/// Entries in a hash map: the fast tier, and the store for tests and embedders that want no
/// files. Never fails.
#[derive(Default)]
pub struct MemoryStore {
    entries: RwLock<HashMap<Key, Arc<[u8]>>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total size of the entries in bytes.
    pub fn bytes(&self) -> u64 {
        self.read().values().map(|v| v.len() as u64).sum()
    }

    pub fn clear(&self) {
        self.write().clear();
    }

    // A panic while the lock was held cannot leave the map half-updated (each operation is one
    // `HashMap` call), so a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Arc<[u8]>>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, Arc<[u8]>>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.len())
            .finish()
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        Ok(self.read().get(key).cloned().map(Entry::from))
    }

    fn insert(&self, key: &Key, bytes: &[u8]) -> Result<(), StoreError> {
        self.write().insert(*key, Arc::from(bytes));
        Ok(())
    }
}

/// A fast store in front of a slow one (memory in front of disk). A hit in the slow tier is
/// promoted into the fast one; inserts go to both.
#[derive(Debug)]
pub struct Fallback<A, B> {
    fast: A,
    slow: B,
    promotions: AtomicU64,
}

impl<A: CacheStore, B: CacheStore> Fallback<A, B> {
    pub fn new(fast: A, slow: B) -> Fallback<A, B> {
        Fallback {
            fast,
            slow,
            promotions: AtomicU64::new(0),
        }
    }

    pub fn fast(&self) -> &A {
        &self.fast
    }

    pub fn slow(&self) -> &B {
        &self.slow
    }

    /// How many slow-tier hits were copied into the fast tier, for tests and statistics.
    pub fn promotions(&self) -> u64 {
        self.promotions.load(Ordering::Relaxed)
    }
}

impl<A: CacheStore, B: CacheStore> CacheStore for Fallback<A, B> {
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        let fast_error = match self.fast.get(key) {
            Ok(Some(entry)) => return Ok(Some(entry)),
            Ok(None) => None,
            // A broken fast tier must not hide what the slow tier has.
            Err(error) => Some(error),
        };
        match self.slow.get(key)? {
            Some(entry) => {
                // A failed promotion costs only speed on the next lookup; the entry was found.
                if self.fast.insert(key, &entry).is_ok() {
                    self.promotions.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(entry))
            }
            None => fast_error.map_or(Ok(None), Err),
        }
    }

    fn insert(&self, key: &Key, bytes: &[u8]) -> Result<(), StoreError> {
        // Both tiers are written even if the first fails; the first error is reported.
        let fast = self.fast.insert(key, bytes);
        let slow = self.slow.insert(key, bytes);
        fast.and(slow)
    }
}

/// Entries as files in a directory: `DIR/ab/abcd...` for the key `abcd...`. See the module
/// documentation for how writes stay atomic and why reading by memory map is sound.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    /// Signs what this store writes and verifies what it reads.
    key: MacKey,
    /// A cache prepared elsewhere: never written, trusted by its tags alone.
    read_only: bool,
}

/// How many entries a directory holds and their total size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub files: u64,
    pub bytes: u64,
}

/// What [`FileStore::gc`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Entries evicted, and their total size.
    pub removed: StoreStats,
    /// Entries left, and their total size (above the cap only if in-use entries alone exceed it).
    pub kept: StoreStats,
    /// Temporary files left behind by killed writers, removed.
    pub stale_temp_files: u64,
}

/// One entry file found by a scan.
struct Found {
    key: Key,
    path: PathBuf,
    len: u64,
    used: SystemTime,
}

/// Everything a scan of the directory found.
#[derive(Default)]
struct Scan {
    entries: Vec<Found>,
    temp_files: Vec<(PathBuf, SystemTime)>,
}

impl FileStore {
    /// A store in `dir`, creating it (and missing parents) with mode 0700 if needed: cached code
    /// is executed, so other users must not be able to plant entries. A directory owned by
    /// someone else or writable by others is refused. Entries are signed with the per-user
    /// secret in `dir/key`, created (0600) on first use.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let dir = dir.into();
        open_private_dir(&dir)?;
        let key = own_key(&dir)?;
        Ok(FileStore {
            dir,
            key,
            read_only: false,
        })
    }

    /// Like [`FileStore::open`], signing with `key` instead of the directory's own secret: how a
    /// build machine prepares a cache for users who will open it with
    /// [`FileStore::open_read_only`] and the same key.
    pub fn open_with_key(dir: impl Into<PathBuf>, key: MacKey) -> Result<FileStore, StoreError> {
        let dir = dir.into();
        open_private_dir(&dir)?;
        Ok(FileStore {
            dir,
            key,
            read_only: false,
        })
    }

    /// A cache prepared elsewhere, used read-only: an entry is used only if its tag proves it
    /// was written with `key`; nothing is ever written, timestamps included. Ownership is not
    /// checked (the directory may be shipped with an application): the key is the trust.
    pub fn open_read_only(dir: impl Into<PathBuf>, key: MacKey) -> Result<FileStore, StoreError> {
        let dir = dir.into();
        let metadata = fs::metadata(&dir).map_err(|source| StoreError::Read {
            path: dir.clone(),
            source,
        })?;
        if !metadata.is_dir() {
            return Err(StoreError::Read {
                path: dir,
                source: io::Error::other("not a directory"),
            });
        }
        Ok(FileStore {
            dir,
            key,
            read_only: true,
        })
    }

    /// Whether the store only reads (see [`FileStore::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for `key` lives (whether or not it exists).
    pub fn path_of(&self, key: &Key) -> PathBuf {
        let name = key.to_string();
        self.dir.join(&name[..2]).join(name)
    }

    /// The number and total size of the entries.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let scan = self.scan()?;
        Ok(StoreStats {
            files: scan.entries.len() as u64,
            bytes: scan.entries.iter().map(|e| e.len).sum(),
        })
    }

    /// Evicts least recently used entries until the total size is at most `cap` bytes, never
    /// evicting a key in `in_use` (what the current run used), and removes temporary files left
    /// behind by killed writers. Entries written or read by other processes meanwhile are fine:
    /// a deleted name does not disturb anyone who has the file mapped.
    pub fn gc(&self, cap: u64, in_use: &HashSet<Key>) -> Result<GcReport, StoreError> {
        let mut scan = self.scan()?;
        let mut report = GcReport::default();
        let now = SystemTime::now();
        for (path, modified) in &scan.temp_files {
            let age = now.duration_since(*modified).unwrap_or_default();
            if age > STALE_TEMP_AGE && remove_file(path)? {
                report.stale_temp_files += 1;
            }
        }
        // Oldest first; the key breaks ties so the order never depends on the directory listing.
        scan.entries.sort_by_key(|e| (e.used, e.key));
        let mut total: u64 = scan.entries.iter().map(|e| e.len).sum();
        let mut kept = scan.entries.len() as u64;
        for entry in &scan.entries {
            if total <= cap {
                break;
            }
            if in_use.contains(&entry.key) {
                continue;
            }
            remove_file(&entry.path)?;
            total -= entry.len;
            kept -= 1;
            report.removed.files += 1;
            report.removed.bytes += entry.len;
        }
        report.kept = StoreStats {
            files: kept,
            bytes: total,
        };
        Ok(report)
    }

    /// Removes every entry and every temporary file, whatever its age (so do not call it while
    /// another process may be writing). Returns what was removed. The subdirectories stay: a
    /// concurrent insert may be about to use one.
    pub fn clear(&self) -> Result<StoreStats, StoreError> {
        let scan = self.scan()?;
        let mut removed = StoreStats::default();
        for (path, _) in &scan.temp_files {
            remove_file(path)?;
        }
        for entry in &scan.entries {
            if remove_file(&entry.path)? {
                removed.files += 1;
                removed.bytes += entry.len;
            }
        }
        Ok(removed)
    }

    /// Lists entry files and temporary files. Anything else (files of other programs, entries in
    /// the wrong subdirectory, symbolic links) is neither counted nor touched.
    fn scan(&self) -> Result<Scan, StoreError> {
        let scan_error = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Scan { path, source }
        };
        let mut scan = Scan::default();
        for shard in fs::read_dir(&self.dir).map_err(scan_error(&self.dir))? {
            let shard = shard.map_err(scan_error(&self.dir))?;
            let shard_name = shard.file_name();
            let Some(shard_name) = shard_name.to_str() else {
                continue;
            };
            let is_shard = shard_name.len() == 2
                && shard_name
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
            if !is_shard || !shard.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let shard_path = shard.path();
            let files = match fs::read_dir(&shard_path) {
                Ok(files) => files,
                // Only a concurrent `rm -r` gets here; there is nothing left to count.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(scan_error(&shard_path)(e)),
            };
            for file in files {
                let file = file.map_err(scan_error(&shard_path))?;
                let name = file.file_name();
                let Some(name) = name.to_str() else { continue };
                let metadata = match file.metadata() {
                    Ok(metadata) => metadata,
                    // Removed by another process since the listing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(scan_error(&file.path())(e)),
                };
                if !metadata.is_file() {
                    continue;
                }
                let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                if name.starts_with(TEMP_PREFIX) {
                    scan.temp_files.push((file.path(), modified));
                } else if let Some(key) = Key::from_hex(name)
                    && name.starts_with(shard_name)
                {
                    scan.entries.push(Found {
                        key,
                        path: file.path(),
                        len: metadata.len(),
                        used: modified,
                    });
                }
            }
        }
        Ok(scan)
    }
}

impl CacheStore for FileStore {
    /// Maps the entry's file read-only, checks who could have written it and its tag, and marks
    /// it as recently used.
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        let path = self.path_of(key);
        let read_error = |source| StoreError::Read {
            path: path.clone(),
            source,
        };
        let refuse = |path: &Path, reason: String| StoreError::Untrusted {
            path: path.to_owned(),
            reason,
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_error(e)),
        };
        let metadata = file.metadata().map_err(read_error)?;
        if !metadata.is_file() {
            return Err(read_error(io::Error::other("not a regular file")));
        }
        if !self.read_only {
            if let Some(why) = trust::untrusted(&metadata) {
                return Err(refuse(&path, why));
            }
            let shard = path.parent().unwrap_or(&self.dir);
            let shard_metadata = fs::metadata(shard).map_err(read_error)?;
            if let Some(why) = trust::untrusted(&shard_metadata) {
                return Err(refuse(shard, why));
            }
            // Recency for LRU eviction. Best effort: if the timestamp cannot be set, eviction
            // order is merely less precise.
            let _ = file.set_modified(SystemTime::now());
        }
        let unsigned = || refuse(&path, "it has no valid tag for this cache's key".into());
        if metadata.len() < TAG_LEN as u64 {
            return Err(unsigned());
        }
        let map = map_read_only(&file).map_err(read_error)?;
        // The map, not the earlier metadata, says how long the file is now.
        let Some(entry_len) = map.len().checked_sub(TAG_LEN) else {
            return Err(unsigned());
        };
        let (bytes, tag) = map.split_at(entry_len);
        if !self.key.verify(key, bytes, tag) {
            return Err(unsigned());
        }
        Ok(Some(Entry::mapped(map, entry_len)))
    }

    /// Writes a temporary file next to the entry, syncs it and renames it into place.
    fn insert(&self, key: &Key, bytes: &[u8]) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.dir.clone(),
            });
        }
        let path = self.path_of(key);
        let shard = path.parent().unwrap_or(&self.dir);
        create_private_dir(shard).map_err(|source| StoreError::CreateDir {
            path: shard.to_owned(),
            source,
        })?;
        let write_error = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        // On any error below, dropping `temp` deletes the temporary file.
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(shard)
            .map_err(write_error)?;
        temp.write_all(bytes).map_err(write_error)?;
        temp.write_all(&self.key.tag(key, bytes))
            .map_err(write_error)?;
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(&path).map_err(|e| write_error(e.error))?;
        Ok(())
    }

    fn writable(&self) -> bool {
        !self.read_only
    }
}

/// Creates a private cache directory if needed, and refuses one someone else could write.
fn open_private_dir(dir: &Path) -> Result<(), StoreError> {
    create_private_dir(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let metadata = fs::metadata(dir).map_err(|source| StoreError::Read {
        path: dir.to_owned(),
        source,
    })?;
    match trust::untrusted(&metadata) {
        Some(reason) => Err(StoreError::Untrusted {
            path: dir.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The directory's own secret, created on first use. A key file others could read or write is
/// refused: with it they could sign entries this user would run.
fn own_key(dir: &Path) -> Result<MacKey, StoreError> {
    let path = dir.join(trust::KEY_FILE);
    let read = |path: &Path| -> Result<MacKey, StoreError> {
        let metadata = fs::metadata(path).map_err(|source| StoreError::Read {
            path: path.to_owned(),
            source,
        })?;
        if let Some(reason) = trust::exposed_key(&metadata) {
            return Err(StoreError::Untrusted {
                path: path.to_owned(),
                reason,
            });
        }
        MacKey::read(path).map_err(|source| StoreError::Read {
            path: path.to_owned(),
            source,
        })
    };
    if path.exists() {
        return read(&path);
    }
    let key = MacKey::generate().map_err(|source| StoreError::Write {
        path: path.clone(),
        source,
    })?;
    match key.write_new(&path) {
        Ok(()) => Ok(key),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(&path),
        Err(source) => Err(StoreError::Write { path, source }),
    }
}

/// Creates `dir` and its missing parents, with mode 0700 on Unix.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Removes a file; `Ok(false)` if it was already gone (another process's gc got there first).
fn remove_file(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StoreError::Remove {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests;
