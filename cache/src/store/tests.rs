//! Tests of the stores: round trips, promotion counted, LRU eviction that spares in-use keys,
//! unwritable directories, concurrent writers, and a disk that fills up.

use std::collections::HashSet;
use std::fs::File;
use std::time::{Duration, SystemTime};

use super::*;

fn key(seed: u8) -> Key {
    Key([seed; 32])
}

fn store() -> (tempfile::TempDir, FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("cache")).unwrap();
    (dir, store)
}

/// Sets a file's modification time, which is what the store reads as "last used".
fn set_used(path: &Path, when: SystemTime) {
    File::open(path).unwrap().set_modified(when).unwrap();
}

fn used(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

fn round_trip(store: &dyn CacheStore) {
    assert!(store.get(&key(1)).unwrap().is_none());
    store.insert(&key(1), b"first").unwrap();
    store.insert(&key(2), b"").unwrap();
    assert_eq!(&*store.get(&key(1)).unwrap().unwrap(), b"first");
    assert_eq!(&*store.get(&key(2)).unwrap().unwrap(), b"");
    store.insert(&key(1), b"replaced").unwrap();
    assert_eq!(store.get(&key(1)).unwrap().unwrap().as_ref(), b"replaced");
    assert!(store.get(&key(3)).unwrap().is_none());
}

#[test]
fn memory_store_round_trips() {
    let store = MemoryStore::new();
    round_trip(&store);
    assert_eq!(store.len(), 2);
    assert_eq!(store.bytes(), 8);
    assert!(!store.get(&key(1)).unwrap().unwrap().is_mapped());
    store.clear();
    assert!(store.is_empty());
}

#[test]
fn file_store_round_trips_through_maps() {
    let (_dir, store) = store();
    round_trip(&store);
    let entry = store.get(&key(1)).unwrap().unwrap();
    assert!(entry.is_mapped());
    assert_eq!(format!("{entry:?}"), "Entry { len: 8, mapped: true }");
    // Sharded by the first two hex digits.
    let path = store.path_of(&key(1));
    assert_eq!(path, store.dir().join("01").join(key(1).to_string()));
    assert!(path.is_file());
    // Each file is the entry's bytes and its tag.
    let bytes = 8 + 2 * TAG_LEN as u64;
    assert_eq!(store.stats().unwrap(), StoreStats { files: 2, bytes });
    // Another handle on the same directory sees the same entries.
    let again = FileStore::open(store.dir()).unwrap();
    assert_eq!(&*again.get(&key(1)).unwrap().unwrap(), b"replaced");
}

#[test]
fn stores_work_through_pointers() {
    let shared: Arc<dyn CacheStore> = Arc::new(MemoryStore::new());
    round_trip(&shared);
    let boxed: Box<dyn CacheStore> = Box::new(MemoryStore::new());
    round_trip(&boxed);
}

#[cfg(unix)]
#[test]
fn file_store_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, store) = store();
    store.insert(&key(0xab), b"x").unwrap();
    for dir in [store.dir().to_owned(), store.dir().join("ab")] {
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

#[test]
fn a_mapped_entry_survives_replacement_and_removal() {
    let (_dir, store) = store();
    store.insert(&key(1), b"old bytes").unwrap();
    let old = store.get(&key(1)).unwrap().unwrap();
    store.insert(&key(1), b"new bytes, longer").unwrap();
    assert_eq!(&*old, b"old bytes");
    store.clear().unwrap();
    assert_eq!(&*old, b"old bytes");
    assert!(store.get(&key(1)).unwrap().is_none());
}

#[test]
fn bytes_changed_behind_the_stores_back_are_refused() {
    // Damage done behind the store's back (a truncated or corrupted file, or a file from
    // another cache) fails the tag: the store never hands it out.
    let (_dir, store) = store();
    store.insert(&key(7), b"0123456789").unwrap();
    let path = store.path_of(&key(7));
    let signed = fs::read(&path).unwrap();
    assert_eq!(&signed[..10], b"0123456789");
    for damaged in [&signed[..5], b"", &signed[1..]] {
        fs::write(&path, damaged).unwrap();
        let refused = store.get(&key(7));
        assert!(
            matches!(&refused, Err(StoreError::Untrusted { reason, .. }) if reason.contains("tag")),
            "{refused:?}"
        );
    }
    // Another cache's secret signs differently.
    let (_other_dir, other) = self::store();
    other.insert(&key(7), b"0123456789").unwrap();
    fs::copy(other.path_of(&key(7)), &path).unwrap();
    assert!(matches!(
        store.get(&key(7)),
        Err(StoreError::Untrusted { .. })
    ));
    // A non-file where an entry should be is an error, not a panic.
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    assert!(matches!(store.get(&key(7)), Err(StoreError::Read { .. })));
    assert!(matches!(
        store.insert(&key(7), b"x"),
        Err(StoreError::Write { .. })
    ));
}

#[test]
fn a_cache_prepared_with_a_key_is_used_read_only_with_that_key() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = MacKey::generate().unwrap();
    let writer = FileStore::open_with_key(dir.path().join("cache"), shipped.clone()).unwrap();
    writer.insert(&key(1), b"prepared").unwrap();
    let before = writer.stats().unwrap();

    let reader = FileStore::open_read_only(writer.dir(), shipped).unwrap();
    assert!(reader.is_read_only() && !reader.writable());
    assert_eq!(&*reader.get(&key(1)).unwrap().unwrap(), b"prepared");
    assert!(matches!(
        reader.insert(&key(2), b"x"),
        Err(StoreError::ReadOnly { .. })
    ));
    assert_eq!(reader.stats().unwrap(), before, "nothing was written");

    let wrong = FileStore::open_read_only(writer.dir(), MacKey::generate().unwrap()).unwrap();
    assert!(matches!(
        wrong.get(&key(1)),
        Err(StoreError::Untrusted { .. })
    ));
    // The directory's own secret is not the shipped key either.
    let own = FileStore::open(writer.dir()).unwrap();
    assert!(matches!(
        own.get(&key(1)),
        Err(StoreError::Untrusted { .. })
    ));
    assert!(matches!(
        FileStore::open_read_only(dir.path().join("missing"), MacKey::generate().unwrap()),
        Err(StoreError::Read { .. })
    ));
}

#[cfg(unix)]
#[test]
fn entries_and_directories_others_can_write_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, store) = store();
    store.insert(&key(0xab), b"x").unwrap();
    let path = store.path_of(&key(0xab));
    let shard = path.parent().unwrap().to_owned();
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();

    mode(&path, 0o666);
    let refused = store.get(&key(0xab));
    assert!(
        matches!(&refused, Err(StoreError::Untrusted { reason, .. }) if reason.contains("writable by other users")),
        "{refused:?}"
    );
    mode(&path, 0o644);
    assert!(store.get(&key(0xab)).is_ok());

    mode(&shard, 0o777);
    assert!(matches!(
        store.get(&key(0xab)),
        Err(StoreError::Untrusted { path, .. }) if path == shard
    ));
    mode(&shard, 0o700);

    mode(store.dir(), 0o777);
    assert!(matches!(
        FileStore::open(store.dir()),
        Err(StoreError::Untrusted { .. })
    ));
    mode(store.dir(), 0o700);

    // A secret others can read could sign entries for them.
    let key_file = store.dir().join(trust::KEY_FILE);
    mode(&key_file, 0o644);
    assert!(matches!(
        FileStore::open(store.dir()),
        Err(StoreError::Untrusted { path, .. }) if path == key_file
    ));
}

#[test]
fn an_artifact_damaged_in_the_store_is_caught_by_its_checksums() {
    use crate::{ArtifactError, ArtifactWriter, FunctionInput, VerifiedArtifact};
    let mut writer = ArtifactWriter::new(b"engine");
    writer
        .add_function(&FunctionInput {
            key: key(5),
            name: "f",
            align: 16,
            code: &[0xc3; 40],
            relocs: &[],
            metadata: b"meta",
        })
        .unwrap();
    let bytes = writer.finish().unwrap();
    let (_dir, store) = store();
    store.insert(&key(1), &bytes).unwrap();
    let entry = store.get(&key(1)).unwrap().unwrap();
    let verified = VerifiedArtifact::new(entry, b"engine").unwrap();
    assert_eq!(
        verified.artifact().find(&key(5)).unwrap().code(),
        &[0xc3; 40]
    );

    // Behind the tag, the artifact's checksums catch what a writer got wrong: bytes damaged
    // before they were signed.
    store.insert(&key(1), &bytes[..bytes.len() - 1]).unwrap();
    let entry = store.get(&key(1)).unwrap().unwrap();
    assert!(matches!(
        VerifiedArtifact::new(entry, b"engine"),
        Err(ArtifactError::Truncated)
    ));
    let mut flipped = bytes.clone();
    let code_at = bytes.windows(40).position(|w| w == [0xc3; 40]).unwrap();
    flipped[code_at + 20] ^= 1;
    store.insert(&key(1), &flipped).unwrap();
    let entry = store.get(&key(1)).unwrap().unwrap();
    assert!(matches!(
        VerifiedArtifact::new(entry, b"engine"),
        Err(ArtifactError::ChecksumMismatch(crate::Section::Code))
    ));
    // The next write heals the entry.
    store.insert(&key(1), &bytes).unwrap();
    let entry = store.get(&key(1)).unwrap().unwrap();
    assert!(VerifiedArtifact::new(entry, b"engine").is_ok());
}

#[test]
fn fallback_promotes_slow_hits_into_the_fast_tier() {
    let (_dir, disk) = store();
    let both = Fallback::new(MemoryStore::new(), disk);
    both.slow().insert(&key(1), b"on disk only").unwrap();

    assert_eq!(&*both.get(&key(1)).unwrap().unwrap(), b"on disk only");
    assert_eq!(both.promotions(), 1);
    assert_eq!(both.fast().len(), 1);
    // The second lookup is served by the fast tier: no further promotion.
    let entry = both.get(&key(1)).unwrap().unwrap();
    assert!(!entry.is_mapped());
    assert_eq!(both.promotions(), 1);

    // Inserts go to both tiers.
    both.insert(&key(2), b"everywhere").unwrap();
    assert_eq!(&*both.fast().get(&key(2)).unwrap().unwrap(), b"everywhere");
    assert_eq!(&*both.slow().get(&key(2)).unwrap().unwrap(), b"everywhere");
    assert_eq!(both.promotions(), 1);

    assert!(both.get(&key(3)).unwrap().is_none());
    assert_eq!(both.promotions(), 1);
    round_trip(&Fallback::new(MemoryStore::new(), MemoryStore::new()));
}

#[test]
fn fallback_survives_a_failing_tier() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FileStore::open(dir.path().join("cache")).unwrap();
    let both = Fallback::new(MemoryStore::new(), disk);
    // Break the disk tier: its directory becomes a regular file.
    fs::remove_dir_all(dir.path().join("cache")).unwrap();
    fs::write(dir.path().join("cache"), b"").unwrap();
    // The insert reaches the memory tier and reports the disk's error.
    assert!(matches!(
        both.insert(&key(1), b"x"),
        Err(StoreError::CreateDir { .. })
    ));
    assert_eq!(&*both.get(&key(1)).unwrap().unwrap(), b"x");
    // A slow-tier failure on a fast-tier miss is reported, not turned into a panic.
    assert!(both.get(&key(2)).is_err());
}

#[test]
fn gc_evicts_least_recently_used_first_but_never_what_is_in_use() {
    let (_dir, store) = store();
    let long_ago = SystemTime::now() - Duration::from_secs(24 * 60 * 60);
    for seed in 1..=5u8 {
        store.insert(&key(seed), &[seed; 100]).unwrap();
        set_used(
            &store.path_of(&key(seed)),
            long_ago + Duration::from_secs(seed.into()),
        );
    }
    // Reading 2 makes it the most recently used.
    let before = used(&store.path_of(&key(2)));
    store.get(&key(2)).unwrap().unwrap();
    assert!(used(&store.path_of(&key(2))) > before);

    // Order of use, oldest first: 1, 3, 4, 5, 2. Key 1 is in use, so 3 and 4 go. Each file
    // holds 100 bytes and its tag.
    let file = 100 + TAG_LEN as u64;
    let in_use = HashSet::from([key(1)]);
    let report = store.gc(3 * file, &in_use).unwrap();
    assert_eq!(
        report,
        GcReport {
            removed: StoreStats {
                files: 2,
                bytes: 2 * file
            },
            kept: StoreStats {
                files: 3,
                bytes: 3 * file
            },
            stale_temp_files: 0,
        }
    );
    let left: Vec<bool> = (1..=5u8)
        .map(|seed| store.get(&key(seed)).unwrap().is_some())
        .collect();
    assert_eq!(left, [true, true, false, false, true]);

    // Under the cap, nothing goes.
    assert_eq!(
        store.gc(3 * file, &HashSet::new()).unwrap().removed,
        StoreStats::default()
    );
    // In-use entries are kept even when they alone exceed the cap.
    let all = HashSet::from([key(1), key(2), key(5)]);
    let report = store.gc(0, &all).unwrap();
    assert_eq!(report.removed, StoreStats::default());
    assert_eq!(report.kept.bytes, 3 * file);
    assert_eq!(
        store.gc(0, &HashSet::new()).unwrap().kept,
        StoreStats::default()
    );
}

#[test]
fn gc_removes_stale_temporary_files_and_ignores_strangers() {
    let (_dir, store) = store();
    store.insert(&key(0xab), b"entry").unwrap();
    let shard = store.dir().join("ab");
    let stale = shard.join(".tmp-killed-writer");
    let fresh = shard.join(".tmp-live-writer");
    fs::write(&stale, b"partial").unwrap();
    fs::write(&fresh, b"partial").unwrap();
    set_used(&stale, SystemTime::now() - Duration::from_secs(2 * 60 * 60));
    // Files that are not entries: a stranger, an entry name in the wrong shard.
    fs::write(store.dir().join("README"), b"not ours").unwrap();
    fs::write(shard.join(key(0xcd).to_string()), b"misplaced").unwrap();

    let bytes = 5 + TAG_LEN as u64;
    assert_eq!(store.stats().unwrap(), StoreStats { files: 1, bytes });
    let report = store.gc(DEFAULT_SIZE_CAP, &HashSet::new()).unwrap();
    assert_eq!(report.stale_temp_files, 1);
    assert!(!stale.exists());
    assert!(fresh.exists());
    assert!(store.dir().join("README").exists());

    let removed = store.clear().unwrap();
    assert_eq!(removed, StoreStats { files: 1, bytes });
    assert!(!fresh.exists());
    assert!(store.dir().join("README").exists());
    assert_eq!(store.stats().unwrap(), StoreStats::default());
}

#[test]
fn an_uncreatable_directory_is_an_error() {
    // Works as root too: no permission bit stops root, but a regular file where a directory
    // should be stops everyone.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let error = FileStore::open(file.join("cache")).unwrap_err();
    assert!(matches!(error, StoreError::CreateDir { .. }));
    assert!(
        error
            .to_string()
            .starts_with("cannot create cache directory"),
        "{error}"
    );
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn an_unwritable_shard_is_an_error_and_reads_go_on() {
    let (_dir, store) = store();
    store.insert(&key(0x12), b"kept").unwrap();
    // A regular file where the shard directory for key 0x34.. should be.
    fs::write(store.dir().join("34"), b"").unwrap();
    let error = store.insert(&key(0x34), b"lost").unwrap_err();
    assert!(matches!(error, StoreError::CreateDir { .. }), "{error:?}");
    assert_eq!(error.path(), store.dir().join("34"));
    assert!(store.get(&key(0x34)).is_err());
    assert_eq!(&*store.get(&key(0x12)).unwrap().unwrap(), b"kept");
}

#[cfg(unix)]
#[test]
fn a_read_only_directory_is_an_error_and_reads_go_on() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, store) = store();
    store.insert(&key(0x12), b"kept").unwrap();
    let shard = store.dir().join("12");
    fs::set_permissions(&shard, fs::Permissions::from_mode(0o500)).unwrap();
    // Root (as in this project's CI) ignores permission bits; there the probe succeeds and
    // `an_uncreatable_directory_is_an_error` and `an_unwritable_shard_is_an_error_and_reads_go_on`
    // cover the unwritable case instead.
    let privileged = File::create(shard.join("probe")).is_ok();
    if !privileged {
        let error = store.insert(&key(0x12), b"new").unwrap_err();
        assert!(matches!(error, StoreError::Write { .. }), "{error:?}");
        assert_eq!(&*store.get(&key(0x12)).unwrap().unwrap(), b"kept");
    }
    fs::set_permissions(&shard, fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn concurrent_writers_of_one_key_leave_one_complete_file() {
    // Threads stand in for processes: the guarantee comes from rename(2), which is atomic
    // between processes and threads alike.
    let (_dir, store) = store();
    let contents: Vec<Vec<u8>> = (0..4u8).map(|t| vec![t; 64 * 1024 + t as usize]).collect();
    std::thread::scope(|scope| {
        for content in &contents {
            let store = &store;
            scope.spawn(move || {
                for _ in 0..5 {
                    store.insert(&key(9), content).unwrap();
                }
            });
        }
        // A reader meanwhile only ever sees nothing or one complete write.
        let store = &store;
        let contents = &contents;
        scope.spawn(move || {
            for _ in 0..200 {
                if let Some(entry) = store.get(&key(9)).unwrap() {
                    assert!(contents.iter().any(|c| **c == *entry), "torn read");
                }
            }
        });
    });
    let entry = store.get(&key(9)).unwrap().unwrap();
    assert!(contents.iter().any(|c| **c == *entry));
    assert_eq!(store.stats().unwrap().files, 1);
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(store.dir().join("09")).unwrap().count(), 1);
}

/// Set in the environment of the child process `a_full_disk_is_an_error` starts.
const FULL_DISK_CHILD: &str = "KILN_CACHE_TEST_FULL_DISK_DIR";

/// A full disk, simulated with a file-size limit (`ulimit -f`) on a child process running
/// `full_disk_child`: writes past the limit fail with EFBIG, as they would with ENOSPC. The child
/// ignores SIGXFSZ (inherited from the shell's `trap`), so it gets the error instead of dying.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_an_error() {
    let (_dir, store) = store();
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64 && exec \"$0\" \"$@\"")
        .arg(exe)
        .args(["--exact", "store::tests::full_disk_child", "--nocapture"])
        .env(FULL_DISK_CHILD, store.dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The failed write left nothing behind; the small one is complete.
    assert!(store.get(&key(1)).unwrap().is_none());
    assert_eq!(&*store.get(&key(2)).unwrap().unwrap(), b"small");
    assert_eq!(fs::read_dir(store.dir().join("01")).unwrap().count(), 0);
}

/// The child half of `a_full_disk_is_an_error`; does nothing when run on its own.
#[test]
fn full_disk_child() {
    let Some(dir) = std::env::var_os(FULL_DISK_CHILD) else {
        return;
    };
    let store = FileStore::open(dir).unwrap();
    // 64 blocks of 512 bytes is the limit; one megabyte is far past it.
    let error = store.insert(&key(1), &vec![7u8; 1 << 20]).unwrap_err();
    assert!(matches!(error, StoreError::Write { .. }), "{error:?}");
    assert!(error.to_string().starts_with("cannot write cache entry"));
    store.insert(&key(2), b"small").unwrap();
}
