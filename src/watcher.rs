//! Watching one file for changes, for hot reload: [`FileWatcher`].
//!
//! Editors save in different ways: some write the file in place, some write a temporary file and
//! rename it over the original, some delete the file and create it again. A watch on the file
//! itself follows its inode, so it goes deaf after a rename or a delete; the watcher therefore
//! watches the file's directory (not its subdirectories) and keeps only the events about the
//! file's own path. Events are debounced: one save is several events (truncate, write, close,
//! rename) arriving within microseconds, and they become one change.
//!
//! ```no_run
//! use kiln::watcher::FileWatcher;
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), kiln::watcher::WatchError> {
//! let watcher = FileWatcher::new("game.kl")?;
//! loop {
//!     if watcher.wait(Duration::from_millis(100)) {
//!         println!("game.kl changed: reload it");
//!     }
//! }
//! # }
//! ```

use notify_debouncer_full::notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify_debouncer_full::notify::{self, EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{
    DebounceEventResult, DebouncedEvent, Debouncer, RecommendedCache, new_debouncer,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the file must have been quiet before a change is reported: about this long after
/// the last event of a save. It is most of the delay between saving a file and running its new
/// code, so it is short; the events of one save arrive within microseconds of each other.
pub const DEBOUNCE: Duration = Duration::from_millis(30);

/// notify-debouncer-full hands events over once they are `COLLECT` old, looking every
/// `COLLECT_TICK`. It times each event on its own, so when a look falls between two events of
/// one save, they come in two batches up to a tick apart: a change is reported only after
/// `QUIET` without a new batch, which merges those. `COLLECT + QUIET` is [`DEBOUNCE`].
const COLLECT: Duration = Duration::from_millis(10);
const COLLECT_TICK: Duration = Duration::from_millis(5);
const QUIET: Duration = Duration::from_millis(20);

/// Watches one file and says when it has changed: written in place, replaced by a rename,
/// deleted, or created again after a delete.
///
/// Events are collected on a background thread from the moment [`FileWatcher::new`] returns;
/// [`changed`](FileWatcher::changed) and [`wait`](FileWatcher::wait) report them. Opening or
/// reading the file is not a change, so reloading it does not trigger another reload. An error
/// of the operating system's watching service (such as its event queue overflowing) counts as a
/// change: the file may have changed, and reading it again is how the caller finds out.
///
/// The watch is on the file's directory as it was when the watcher was made: if that directory
/// itself is removed or renamed, no further change is seen. A symbolic link is watched as a
/// name in its directory; changes to the file it points at elsewhere are not seen.
pub struct FileWatcher {
    path: PathBuf,
    pending: Arc<Pending>,
    /// Delivers events to `pending` for as long as it lives; dropping it stops watching.
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

/// A change not yet reported, shared with the debouncer's thread.
#[derive(Default)]
struct Pending {
    /// When the latest batch of events about the file arrived, until the change is reported.
    last_batch: Mutex<Option<Instant>>,
    arrived: Condvar,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, Option<Instant>> {
        // A plain value: a panic while it was held cannot leave it inconsistent.
        self.last_batch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that a batch of events about the file arrived just now.
    fn mark(&self) {
        *self.lock() = Some(Instant::now());
        self.arrived.notify_all();
    }
}

impl FileWatcher {
    /// Starts watching `path`, which must be an existing file (not a directory) in a directory
    /// the operating system lets this process watch.
    pub fn new(path: impl AsRef<Path>) -> Result<FileWatcher, WatchError> {
        let given = path.as_ref();
        let error = |message: String| WatchError {
            path: given.to_path_buf(),
            message,
        };
        let metadata = std::fs::metadata(given).map_err(|e| error(e.to_string()))?;
        if metadata.is_dir() {
            return Err(error("it is a directory, not a file".into()));
        }
        let name = given
            .file_name()
            .ok_or_else(|| error("the path does not end in a file name".into()))?;
        // `Path::new("game.kl").parent()` is the empty path, which means the current directory.
        let dir = match given.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // Events name paths under the directory as it was watched; a canonical directory makes
        // the file's path comparable with theirs however the caller spelled it (`./a/../b.kl`),
        // and matches backends that report canonical paths (macOS's `/private/var`).
        let dir = std::fs::canonicalize(dir).map_err(|e| error(e.to_string()))?;
        let target = dir.join(name);

        let pending = Arc::new(Pending::default());
        let sink = pending.clone();
        let event_path = target.clone();
        let mut debouncer = new_debouncer(
            COLLECT,
            Some(COLLECT_TICK),
            move |result: DebounceEventResult| {
                let relevant = match result {
                    Ok(events) => events.iter().any(|e| is_change_of(e, &event_path)),
                    Err(_) => true,
                };
                if relevant {
                    sink.mark();
                }
            },
        )
        .map_err(|e| error(describe(&e)))?;
        debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| error(describe(&e)))?;
        Ok(FileWatcher {
            path: target,
            pending,
            _debouncer: debouncer,
        })
    }

    /// The watched file: its canonical directory joined with its name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file changed since the last call of `changed` or `wait` that returned true,
    /// and has been quiet for [`DEBOUNCE`] since; any number of events until then count as one
    /// change. Never blocks.
    pub fn changed(&self) -> bool {
        let mut last_batch = self.pending.lock();
        let settled = last_batch.is_some_and(|at| at.elapsed() >= QUIET);
        if settled {
            *last_batch = None;
        }
        settled
    }

    /// Blocks until the file has changed and been quiet for [`DEBOUNCE`] (true), or `timeout`
    /// passes first (false). Like [`changed`](FileWatcher::changed), it takes the change.
    pub fn wait(&self, timeout: Duration) -> bool {
        // A timeout too large to add to the clock is a wait without end.
        let deadline = Instant::now().checked_add(timeout);
        let mut last_batch = self.pending.lock();
        loop {
            let now = Instant::now();
            let settles = last_batch.map(|at| at + QUIET);
            if settles.is_some_and(|settles| settles <= now) {
                *last_batch = None;
                return true;
            }
            if deadline.is_some_and(|deadline| deadline <= now) {
                return false;
            }
            let wake = match (settles, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let left = wake.map_or(Duration::MAX, |wake| wake - now);
            last_batch = match self.pending.arrived.wait_timeout(last_batch, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatcher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Whether a debounced event says the file at `target` may have new contents.
fn is_change_of(event: &DebouncedEvent, target: &Path) -> bool {
    if event.need_rescan() {
        // The backend dropped events (its queue overflowed): any file may have changed.
        return true;
    }
    let touches_content = match event.kind {
        // Closing the file after writing finishes a save; opening and reading it, as a reload
        // does, changes nothing and must not trigger another reload.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_)
        | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        _ => true,
    };
    touches_content && event.paths.iter().any(|p| p == target)
}

/// A notify error as the reason in a [`WatchError`], without the paths notify appends (the
/// error names the file already).
fn describe(error: &notify::Error) -> String {
    match &error.kind {
        notify::ErrorKind::Io(e) => e.to_string(),
        notify::ErrorKind::Generic(message) => message.clone(),
        notify::ErrorKind::PathNotFound => "its directory does not exist".into(),
        notify::ErrorKind::MaxFilesWatch => "the operating system's limit on watched files is \
                                             reached (on Linux: fs.inotify.max_user_watches)"
            .into(),
        _ => error.to_string(),
    }
}

/// Why a file cannot be watched.
#[derive(Debug)]
pub struct WatchError {
    /// The path as the caller gave it.
    pub path: PathBuf,
    /// What went wrong, as the operating system or the watching service said it.
    pub message: String,
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot watch {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for WatchError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// How long a change that must be seen may take: far above the debounce, because the test
    /// machine may be slow and busy.
    const SEEN: Duration = Duration::from_secs(10);
    /// How long to listen for a change that must not be seen: ten debounce periods.
    const QUIET: Duration = Duration::from_millis(300);

    /// A directory holding `game.kl`, and a watcher on that file.
    fn watched() -> (tempfile::TempDir, PathBuf, FileWatcher) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("game.kl");
        fs::write(&file, "fn tick() {}\n").expect("the script is written");
        let watcher = FileWatcher::new(&file).expect("the file can be watched");
        (dir, file, watcher)
    }

    /// Takes every change still arriving, so that the next assertion sees only what follows.
    fn settle(watcher: &FileWatcher) {
        while watcher.wait(QUIET) {}
    }

    #[test]
    fn nothing_changes_until_the_file_is_written() {
        let (_dir, file, watcher) = watched();
        assert!(!watcher.changed());
        // Reading the file is what a reload does; it must not look like a change.
        fs::read(&file).unwrap();
        assert!(!watcher.wait(QUIET), "reading the file counted as a change");
    }

    #[test]
    fn writing_in_place_is_one_change() {
        let (_dir, file, watcher) = watched();
        fs::write(&file, "fn tick() { print(1); }\n").unwrap();
        assert!(watcher.wait(SEEN), "the write was not seen");
        // Truncating, writing and closing are three events: they must make one change.
        assert!(
            !watcher.wait(QUIET),
            "one write was reported as two changes"
        );
        fs::write(&file, "fn tick() { print(2); }\n").unwrap();
        assert!(watcher.wait(SEEN), "the second write was not seen");
    }

    #[test]
    fn saving_by_rename_is_a_change() {
        let (dir, file, watcher) = watched();
        for round in 0..3 {
            let temp = dir.path().join(format!(".game.kl.{round}.tmp"));
            fs::write(&temp, format!("fn tick() {{ print({round}); }}\n")).unwrap();
            fs::rename(&temp, &file).unwrap();
            assert!(
                watcher.wait(SEEN),
                "rename {round} over the file was not seen"
            );
            settle(&watcher);
        }
    }

    #[test]
    fn deleting_and_creating_again_are_changes() {
        let (_dir, file, watcher) = watched();
        fs::remove_file(&file).unwrap();
        assert!(watcher.wait(SEEN), "the delete was not seen");
        settle(&watcher);
        fs::write(&file, "fn tick() { print(1); }\n").unwrap();
        assert!(watcher.wait(SEEN), "the file created again was not seen");
        settle(&watcher);
        // Some editors delete and create within one debounce period.
        fs::remove_file(&file).unwrap();
        fs::write(&file, "fn tick() { print(2); }\n").unwrap();
        assert!(watcher.wait(SEEN), "a quick delete and create was not seen");
        settle(&watcher);
        fs::write(&file, "fn tick() { print(3); }\n").unwrap();
        assert!(
            watcher.wait(SEEN),
            "a write after the re-creation was not seen"
        );
    }

    #[test]
    fn other_files_in_the_directory_are_ignored() {
        let (dir, file, watcher) = watched();
        let other = dir.path().join("other.kl");
        fs::write(&other, "fn tick() {}\n").unwrap();
        fs::write(&other, "fn tick() { print(1); }\n").unwrap();
        let temp = dir.path().join("other.kl.tmp");
        fs::write(&temp, "fn tick() {}\n").unwrap();
        fs::rename(&temp, &other).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub").join("game.kl"), "fn tick() {}\n").unwrap();
        fs::remove_file(&other).unwrap();
        assert!(
            !watcher.wait(QUIET),
            "a change to another file was reported"
        );
        // The watcher is still listening: the silence above was not a dead watch.
        fs::write(&file, "fn tick() { print(2); }\n").unwrap();
        assert!(watcher.wait(SEEN), "the write was not seen");
    }

    #[test]
    fn a_roundabout_path_watches_the_same_file() {
        let (dir, file, _watcher) = watched();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let roundabout = dir.path().join("sub").join("..").join(".").join("game.kl");
        let watcher = FileWatcher::new(&roundabout).unwrap();
        let canonical = fs::canonicalize(dir.path()).unwrap().join("game.kl");
        assert_eq!(watcher.path(), canonical);
        fs::write(&file, "fn tick() { print(1); }\n").unwrap();
        assert!(watcher.wait(SEEN), "the write was not seen");
    }

    #[test]
    fn unwatchable_paths_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.kl");
        let e = FileWatcher::new(&missing).expect_err("a missing file");
        assert_eq!(e.path, missing);
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("cannot watch {}: ", missing.display())),
            "said {text:?}"
        );

        let in_missing_dir = dir.path().join("nowhere").join("game.kl");
        let e = FileWatcher::new(&in_missing_dir).expect_err("a missing directory");
        assert_eq!(e.path, in_missing_dir);

        let e = FileWatcher::new(dir.path()).expect_err("a directory");
        assert!(e.message.contains("directory"), "said {e}");
    }
}
