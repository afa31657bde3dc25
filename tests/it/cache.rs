//! The function cache through the real `kiln` binary: cold and warm runs counted with `--stats`,
//! and every failure mode of issue 3's item 9 (damaged, foreign or misplaced entries, unusable
//! directories, a full disk, concurrent processes, a writer killed mid-write).
//!
//! Every run is checked the same way ([`check`]): the output and exit status are exactly what the
//! reference interpreter says, no signal ended the process, standard error holds at most one
//! `warning:` line besides the `--stats` line (and `cache:` lines only with `--verbose`), and the
//! counts add up. Where a run rewrites a damaged entry, the run after it must be a module hit: the
//! cache heals.
//!
//! The tests know only what the CLI promises about the directory: entries are files (at any
//! depth) named by 64 lowercase hex digits, and module artifacts begin with `KILNART\0` in the
//! layout `kiln_cache::artifact` documents. Every run passes `--cache-dir` (a temporary
//! directory), or sets `HOME` and `XDG_CACHE_HOME` to temporary directories, so no test touches
//! the user's cache.

use crate::support::{self, Run, kiln, run_with_limit};
use kiln_cache::{Artifact, ArtifactWriter, FunctionInput, Key, MacKey, RelocInput};
use kiln_lang::generate::{Shape, realistic_program};
use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime};

/// Generous for a debug build on a loaded two-core machine; a run that takes longer is hung.
/// How long a `kiln` process may take (see [`support::patient`]).
fn time_limit() -> Duration {
    support::patient(Duration::from_secs(60))
}

/// The first bytes of every module artifact (`kiln_cache::artifact::MAGIC`).
const MAGIC: &[u8; 8] = b"KILNART\0";

/// SIGKILL, which `Child::kill` sends on Unix.
const SIGKILL: i32 = 9;

// ---------------------------------------------------------------------------------------------
// Scripts and runs

/// A script on disk and what running it must give, according to the reference interpreter.
struct Script {
    path: PathBuf,
    stdout: String,
    status: i32,
}

impl Script {
    /// Writes `source` to `dir/name` and runs it in the interpreter for the expected results.
    fn new(dir: &Path, name: &str, source: &str) -> Script {
        let path = dir.join(name);
        fs::write(&path, source).unwrap();
        let (stdout, status) = interpret(name, source);
        Script {
            path,
            stdout,
            status,
        }
    }

    /// A generated program of `functions` functions shaped like real scripts.
    fn realistic(dir: &Path, name: &str, functions: usize, seed: u64) -> Script {
        let shape = Shape {
            functions,
            host_calls: false,
        };
        Script::new(dir, name, &realistic_program(&shape, seed))
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// `kiln run --cache-dir CACHE --stats [EXTRA...] SCRIPT`, in the script's directory.
    fn args(&self, cache: &Path, extra: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "run".into(),
            "--cache-dir".into(),
            cache.into(),
            "--stats".into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        args.push(self.path.clone().into());
        args
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap()
    }

    /// Runs the script with `cache` and checks the run.
    fn run(&self, what: &str, cache: &Path) -> Stats {
        let run = kiln(self.args(cache, &[]), self.dir(), time_limit());
        check(what, self, &run, Verbose::No)
    }

    /// Runs the script with `cache` and `--verbose`, checks the run and returns its stderr too.
    fn run_verbose(&self, what: &str, cache: &Path) -> (Stats, String) {
        let run = kiln(self.args(cache, &["--verbose"]), self.dir(), time_limit());
        (check(what, self, &run, Verbose::Yes), run.stderr_text())
    }

    /// A cold run (everything compiled) then a warm one (a module hit, nothing compiled).
    fn prime(&self, cache: &Path) -> Stats {
        let cold = self.run(&format!("{}: cold run", self.name()), cache);
        assert_cold(&format!("{}: cold run", self.name()), cold);
        let warm = self.run(&format!("{}: warm run", self.name()), cache);
        assert_warm(&format!("{}: warm run", self.name()), warm);
        cold
    }

    /// Makes sure the cache holds the script: a module hit, or else a cold run and then a hit.
    fn warm_up(&self, cache: &Path) {
        let what = format!("{}: first run", self.name());
        if !self.run(&what, cache).module_hit {
            self.heals(&what, cache);
        }
    }

    /// The run after a damaged one: it must be a module hit again.
    fn heals(&self, what: &str, cache: &Path) {
        let what = format!("{what}: the run after");
        assert_warm(&what, self.run(&what, cache));
    }
}

/// What the interpreter prints for `source` and the exit status `kiln run` must give.
fn interpret(name: &str, source: &str) -> (String, i32) {
    let file = kiln_lang::SourceFile::new(name, source.to_string());
    let options = kiln_lang::CheckOptions { require_main: true };
    let program = kiln_lang::check(&file, &[], &options)
        .unwrap_or_else(|_| panic!("{name}: the test program does not check"));
    let main = program.function_named("main").unwrap();
    let mut out = Vec::new();
    let result = kiln_lang::interp::Interpreter::new(
        &program,
        kiln_lang::interp::Limits::default(),
    )
    .call(main, &[], &mut kiln_lang::interp::NoHost, &mut out);
    let status = match result {
        Ok(Some(kiln_lang::program::Const::Int(v))) => i32::from(v as u8),
        Ok(_) => 0,
        Err(_) => panic!("{name}: the test program fails in the interpreter"),
    };
    (String::from_utf8(out).unwrap(), status)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verbose {
    Yes,
    No,
}

/// The counts of one `--stats` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stats {
    functions: u64,
    compiled: u64,
    cache_hits: u64,
    module_hit: bool,
}

/// Checks everything every run must satisfy, whatever state the cache was in, and returns its
/// `--stats` counts.
fn check(what: &str, script: &Script, run: &Run, verbose: Verbose) -> Stats {
    let stderr = run.stderr_text();
    assert!(
        !run.timed_out && run.signal.is_none(),
        "{what}: {}; stderr:\n{stderr}",
        run.describe()
    );
    assert_eq!(
        run.code,
        Some(script.status),
        "{what}: {}; stderr:\n{stderr}",
        run.describe()
    );
    assert_eq!(
        run.stdout_text(),
        script.stdout,
        "{what}: wrong output; stderr:\n{stderr}"
    );
    let warnings = stderr.lines().filter(|l| l.starts_with("warning:")).count();
    assert!(warnings <= 1, "{what}: {warnings} warnings:\n{stderr}");
    let mut stats = None;
    for line in stderr.lines() {
        if line.starts_with("warning:") || (verbose == Verbose::Yes && line.starts_with("cache:")) {
            continue;
        }
        match parse_stats(line) {
            Some(s) if stats.is_none() => stats = Some(s),
            _ => panic!("{what}: unexpected line {line:?} on stderr:\n{stderr}"),
        }
    }
    let stats = stats.unwrap_or_else(|| panic!("{what}: no --stats line on stderr:\n{stderr}"));
    assert!(stats.functions > 0, "{what}: {stats:?}");
    assert_eq!(
        stats.compiled + stats.cache_hits,
        stats.functions,
        "{what}: every function is either compiled or a cache hit: {stats:?}"
    );
    stats
}

/// Parses the `--stats` JSON line: one flat object of numbers and booleans. `None` if `line` is
/// anything else or lacks a field the CLI promises.
fn parse_stats(line: &str) -> Option<Stats> {
    let body = line.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut fields = HashMap::new();
    for pair in body.split(',') {
        let (key, value) = pair.split_once(':')?;
        let key = key.trim().strip_prefix('"')?.strip_suffix('"')?;
        fields.insert(key, value.trim());
    }
    let number = |key: &str| fields.get(key)?.parse::<u64>().ok();
    for timing in ["parse_us", "lower_us", "codegen_us", "link_us", "total_us"] {
        number(timing)?;
    }
    Some(Stats {
        functions: number("functions")?,
        compiled: number("compiled")?,
        cache_hits: number("cache_hits")?,
        module_hit: match *fields.get("module_hit")? {
            "true" => true,
            "false" => false,
            _ => return None,
        },
    })
}

/// Nothing came from the cache.
fn assert_cold(what: &str, stats: Stats) {
    assert!(
        !stats.module_hit && stats.compiled == stats.functions,
        "{what}: expected everything compiled, got {stats:?}"
    );
}

/// The whole module came from the cache.
fn assert_warm(what: &str, stats: Stats) {
    assert!(
        stats.module_hit && stats.compiled == 0,
        "{what}: expected a module hit, got {stats:?}"
    );
}

/// Whether `text` mentions any of `words`, ignoring case.
fn mentions(text: &str, words: &[&str]) -> bool {
    let text = text.to_lowercase();
    words.iter().any(|w| text.contains(w))
}

/// A temporary directory holding the scripts and (under `cache/`, created by `kiln`) the cache.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }
}

// ---------------------------------------------------------------------------------------------
// The cache directory, seen from outside

/// Every cache entry under `dir` (files named by 64 lowercase hex digits, at any depth), sorted.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(dir, &mut |path| {
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_key_name)
        {
            found.push(path.to_path_buf());
        }
    });
    found.sort();
    found
}

/// Every regular file under `dir` that is not an entry (temporary files, for example), besides
/// the cache's own secret.
fn other_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(dir, &mut |path| {
        let name = path.file_name().and_then(|n| n.to_str());
        if !name.is_some_and(is_key_name) && path != dir.join(KEY_FILE) {
            found.push(path.to_path_buf());
        }
    });
    found
}

/// The file in a cache directory holding the secret that signs its entries.
const KEY_FILE: &str = "key";

/// Bytes of the tag after each entry file's bytes.
const TAG_LEN: usize = 32;

/// An entry file's bytes, without its tag.
fn unsigned(path: &Path) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    bytes.truncate(bytes.len().saturating_sub(TAG_LEN));
    bytes
}

/// Writes `bytes` as the entry file at `path` with the tag `cache`'s own secret gives them: as
/// if the cache itself had written them, so only the checks behind the tag can refuse them.
fn write_signed(cache: &Path, path: &Path, bytes: &[u8]) {
    let secret = MacKey::read(&cache.join(KEY_FILE)).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let key = Key::from_hex(name).unwrap();
    let mut signed = bytes.to_vec();
    signed.extend_from_slice(&secret.tag(&key, bytes));
    fs::write(path, signed).unwrap();
}

/// Calls `visit` on every regular file under `dir`, without following symbolic links. A missing
/// or unreadable directory has no files.
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    let Ok(read) = fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&entry.path(), visit);
        } else if kind.is_file() {
            visit(&entry.path());
        }
    }
}

fn is_key_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The entries under `dir` that are module artifacts.
fn artifacts(dir: &Path) -> Vec<PathBuf> {
    entries(dir)
        .into_iter()
        .filter(|p| fs::read(p).is_ok_and(|b| b.starts_with(MAGIC)))
        .collect()
}

/// The entries under `dir` that are not module artifacts (pointers and whatever else).
fn pointers(dir: &Path) -> Vec<PathBuf> {
    entries(dir)
        .into_iter()
        .filter(|p| fs::read(p).is_ok_and(|b| !b.starts_with(MAGIC)))
        .collect()
}

/// Applies `damage` to every module artifact under `cache` (there must be at least one) and
/// signs the result: damage a writer did before signing, which the artifact's own checks must
/// catch. (Damage after signing fails the tag; see `trust`.)
fn damage_artifacts(what: &str, cache: &Path, damage: &Damage) {
    let found = artifacts(cache);
    assert!(!found.is_empty(), "{what}: no module artifact to damage");
    for path in found {
        let mut bytes = unsigned(&path);
        damage(&mut bytes);
        write_signed(cache, &path, &bytes);
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn read_u64(bytes: &[u8], at: usize) -> usize {
    usize::try_from(u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())).unwrap()
}

/// Where the parts of an artifact lie (see `kiln_cache::artifact`'s layout).
struct Layout {
    fingerprint: std::ops::Range<usize>,
    /// The section table: 6 entries of 56 bytes.
    table: usize,
    /// One past the header checksum.
    header_end: usize,
    /// The code section.
    code: std::ops::Range<usize>,
}

fn layout(bytes: &[u8]) -> Layout {
    let fingerprint_len = read_u32(bytes, 16) as usize;
    let table = (20 + fingerprint_len).next_multiple_of(8);
    // The code section is the second entry: kind, flags, offset, length, checksum.
    let code_entry = table + 56;
    let code_start = read_u64(bytes, code_entry + 8);
    let code_len = read_u64(bytes, code_entry + 16);
    Layout {
        fingerprint: 20..20 + fingerprint_len,
        table,
        header_end: table + 6 * 56 + 32,
        code: code_start..code_start + code_len,
    }
}

/// The same artifact, rebuilt through `kiln_cache`'s own writer for another engine fingerprint:
/// well formed, every checksum right, only the fingerprint differs.
fn with_fingerprint(bytes: &[u8], fingerprint: &[u8]) -> Vec<u8> {
    let own = &bytes[layout(bytes).fingerprint];
    let artifact = Artifact::parse(bytes, own).expect("the cache wrote a valid artifact");
    let mut writer = ArtifactWriter::new(fingerprint);
    writer.set_module_blob(artifact.module_blob());
    for function in artifact.functions() {
        let relocs: Vec<RelocInput<'_>> = function
            .relocs()
            .map(|r| RelocInput {
                offset: r.offset,
                kind: r.kind,
                target: artifact.string(r.target).unwrap(),
                addend: r.addend,
            })
            .collect();
        writer
            .add_function(&FunctionInput {
                key: *function.key(),
                name: function.name(),
                align: function.align(),
                code: function.code(),
                relocs: &relocs,
                metadata: function.metadata(),
            })
            .unwrap();
    }
    writer.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Cold, warm, edited

/// Four functions and a non-zero exit status; `OFFSET` is the one constant the edit test changes.
const SMALL: &str = "
fn square(x: int) -> int {
    return x * x;
}

fn cube(x: int) -> int {
    return x * square(x);
}

fn offset() -> int {
    return OFFSET;
}

fn main() -> int {
    print(square(3));
    print(cube(2));
    print(offset());
    print(1.5 * 2.0);
    return 7;
}
";

#[test]
fn a_second_run_is_a_module_hit() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let small = Script::new(sandbox.path(), "small.kl", &SMALL.replace("OFFSET", "10"));
    assert_eq!(small.status, 7);
    let (cold, stderr) = small.run_verbose("small.kl: cold run", &cache);
    assert_cold("small.kl: cold run", cold);
    assert_eq!(cold.functions, 4, "{cold:?}");
    assert!(
        mentions(&stderr, &["no entry"]),
        "a cold --verbose run says why it missed:\n{stderr}"
    );
    assert!(
        !stderr.contains("warning:"),
        "a cold run is not a problem:\n{stderr}"
    );
    assert!(
        !artifacts(&cache).is_empty(),
        "the cold run wrote no module artifact: {:?}",
        entries(&cache)
    );
    for _ in 0..2 {
        let warm = small.run("small.kl: warm run", &cache);
        assert_warm("small.kl: warm run", warm);
        assert_eq!(warm.cache_hits, 4, "{warm:?}");
    }

    let big = Script::realistic(sandbox.path(), "big.kl", 60, 1);
    big.prime(&cache);
    // The small script's entry is still there beside the big one's.
    assert_warm("small.kl after big.kl", small.run("small.kl", &cache));
}

#[test]
fn editing_one_function_compiles_only_that_function() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let path = sandbox.path();
    let before = Script::new(path, "edit.kl", &SMALL.replace("OFFSET", "10"));
    let functions = before.prime(&cache).functions;

    let after = Script::new(path, "edit.kl", &SMALL.replace("OFFSET", "20"));
    assert_ne!(after.stdout, before.stdout);
    let edited = after.run("edit.kl with offset() edited", &cache);
    // `main` has `offset` inlined, so it compiles again too; `square` and `cube` are hits.
    assert!(
        !edited.module_hit && edited.compiled == 2 && edited.cache_hits == functions - 2,
        "after editing one function: {edited:?}"
    );
    after.heals("edit.kl with offset() edited", &cache);

    // Back to the first text: its functions are all cached somewhere.
    let reverted = Script::new(path, "edit.kl", &SMALL.replace("OFFSET", "10"));
    let stats = reverted.run("edit.kl edited back", &cache);
    assert_eq!(stats.compiled, 0, "edit.kl edited back: {stats:?}");
    reverted.heals("edit.kl edited back", &cache);
}

// ---------------------------------------------------------------------------------------------
// Damaged artifacts

/// A change to an artifact's bytes.
type Damage = dyn Fn(&mut Vec<u8>);

/// A named damage and the words a `--verbose` run should use for it (any one; none if empty).
type Case<'a> = (&'a str, &'a Damage, &'a [&'a str]);

/// Damages every module artifact of the script's cache in one way after another; each damaged run is
/// a full recompile with the right results, and the run after it a module hit again.
fn survives_each(script: &Script, cache: &Path, cases: &[Case<'_>]) {
    script.warm_up(cache);
    for (what, damage, reasons) in cases {
        let what = format!("{}: {what}", script.name());
        damage_artifacts(&what, cache, *damage);
        let (stats, stderr) = script.run_verbose(&what, cache);
        assert_cold(&what, stats);
        assert!(
            reasons.is_empty() || mentions(&stderr, reasons),
            "{what}: --verbose should mention one of {reasons:?}:\n{stderr}"
        );
        script.heals(&what, cache);
    }
}

#[test]
fn truncated_artifacts_are_recompiled_and_rewritten() {
    let sandbox = Sandbox::new();
    let script = Script::realistic(sandbox.path(), "truncated.kl", 30, 2);
    let mut cases: Vec<(String, Box<Damage>)> = Vec::new();
    for len in [0, 1, 7, 8, 12, 19, 20, 64] {
        cases.push((
            format!("truncated to {len} bytes"),
            Box::new(move |b: &mut Vec<u8>| b.truncate(len)),
        ));
    }
    cases.push((
        "truncated at the end of its header".into(),
        Box::new(|b: &mut Vec<u8>| b.truncate(layout(b).header_end)),
    ));
    cases.push((
        "truncated to half its length".into(),
        Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
    ));
    cases.push((
        "without its last byte".into(),
        Box::new(|b: &mut Vec<u8>| {
            b.pop();
        }),
    ));
    cases.push((
        "with 16 zero bytes appended".into(),
        Box::new(|b: &mut Vec<u8>| b.extend([0; 16])),
    ));
    let cases: Vec<Case<'_>> = cases
        .iter()
        .map(|(what, f)| (what.as_str(), &**f, &[][..]))
        .collect();
    survives_each(&script, &sandbox.cache(), &cases);
}

#[test]
fn flipped_bits_are_recompiled_and_rewritten() {
    let sandbox = Sandbox::new();
    let script = Script::realistic(sandbox.path(), "flipped.kl", 30, 3);
    let corrupt: &[&str] = &["corrupt", "checksum"];
    let flip = |at: fn(&[u8]) -> usize, mask: u8| {
        move |b: &mut Vec<u8>| {
            let i = at(b);
            b[i] ^= mask;
        }
    };
    let magic = flip(|_| 3, 0x01);
    let version = flip(|_| 8, 0x01);
    let section_count = flip(|_| 12, 0x01);
    let fingerprint_len = flip(|_| 16, 0x01);
    let section_offset = flip(|b| layout(b).table + 8 + 56 * 2, 0x10);
    let header_checksum = flip(|b| layout(b).header_end - 1, 0x80);
    let code = flip(|b| layout(b).code.start + layout(b).code.len() / 2, 0x04);
    let code_first = flip(|b| layout(b).code.start, 0x01);
    let last = flip(|b| b.len() - 1, 0x80);
    let middle = flip(|b| b.len() / 2, 0x20);
    survives_each(
        &script,
        &sandbox.cache(),
        &[
            ("a bit flipped in the magic number", &magic, &[]),
            ("a bit flipped in the format version", &version, &[]),
            ("a bit flipped in the section count", &section_count, &[]),
            (
                "a bit flipped in the fingerprint length",
                &fingerprint_len,
                &[],
            ),
            ("a bit flipped in the section table", &section_offset, &[]),
            (
                "a bit flipped in the header checksum",
                &header_checksum,
                corrupt,
            ),
            ("a bit flipped in the first code byte", &code_first, corrupt),
            ("a bit flipped in the middle of the code", &code, corrupt),
            ("a bit flipped in the middle of the file", &middle, &[]),
            ("a bit flipped in the last byte", &last, corrupt),
        ],
    );
}

#[test]
fn wrong_magic_and_future_versions_are_recompiled_and_rewritten() {
    let sandbox = Sandbox::new();
    let script = Script::realistic(sandbox.path(), "version.kl", 30, 4);
    let wrong_magic = |b: &mut Vec<u8>| b[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\0");
    let future = |b: &mut Vec<u8>| b[8..12].copy_from_slice(&999u32.to_le_bytes());
    let past = |b: &mut Vec<u8>| b[8..12].copy_from_slice(&0u32.to_le_bytes());
    let garbage = |b: &mut Vec<u8>| {
        let mut rng = fastrand::Rng::with_seed(5);
        b.iter_mut().for_each(|x| *x = rng.u8(..));
    };
    survives_each(
        &script,
        &sandbox.cache(),
        &[
            (
                "an ELF header instead of the magic number",
                &wrong_magic,
                &[],
            ),
            ("format version 999", &future, &[]),
            ("format version 0", &past, &[]),
            ("random bytes of the same length", &garbage, &[]),
        ],
    );
}

#[test]
fn an_artifact_for_another_engine_is_recompiled_and_rewritten() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let script = Script::realistic(sandbox.path(), "foreign.kl", 30, 6);
    script.prime(&cache);

    // The rebuilding below is faithful: with the same fingerprint it gives the same bytes.
    for path in artifacts(&cache) {
        let bytes = unsigned(&path);
        let own = bytes[layout(&bytes).fingerprint].to_vec();
        assert!(!own.is_empty(), "an empty engine fingerprint");
        assert_eq!(with_fingerprint(&bytes, &own), bytes);
    }

    let patched = |b: &mut Vec<u8>| {
        let fingerprint = layout(b).fingerprint;
        b[fingerprint.start + fingerprint.len() / 2] ^= 0x01;
    };
    let rebuilt = |b: &mut Vec<u8>| {
        let mut other = b[layout(b).fingerprint].to_vec();
        *other.last_mut().unwrap() ^= 0x01;
        *b = with_fingerprint(b, &other);
    };
    let rebuilt_longer = |b: &mut Vec<u8>| {
        let mut other = b"another engine: ".to_vec();
        other.extend_from_slice(&b[layout(b).fingerprint]);
        *b = with_fingerprint(b, &other);
    };
    survives_each(
        &script,
        &cache,
        &[
            (
                "a fingerprint byte patched (header checksum now wrong)",
                &patched,
                &["fingerprint", "corrupt", "checksum"],
            ),
            (
                "rebuilt for a fingerprint one bit apart",
                &rebuilt,
                &["fingerprint"],
            ),
            (
                "rebuilt for a longer fingerprint",
                &rebuilt_longer,
                &["fingerprint"],
            ),
        ],
    );
}

/// Two scripts with the same functions and signatures, differing only in constants: an artifact
/// of one would link and run in place of the other, so only a check of what the entry is *for*
/// can tell them apart.
fn twin(value: i64, status: i64) -> String {
    format!(
        "fn value() -> int {{\n    return {value};\n}}\n\n\
         fn main() -> int {{\n    print(value());\n    return {status};\n}}\n"
    )
}

#[test]
fn an_entry_under_another_key_never_runs_in_its_place() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let path = sandbox.path();
    let pairs = [
        (
            Script::new(path, "a.kl", &twin(111, 1)),
            Script::new(path, "b.kl", &twin(222, 2)),
        ),
        (
            Script::realistic(path, "c.kl", 25, 7),
            Script::realistic(path, "d.kl", 25, 8),
        ),
    ];
    for (a, b) in &pairs {
        let before: BTreeSet<PathBuf> = entries(&cache).into_iter().collect();
        a.prime(&cache);
        let a_entries: BTreeSet<PathBuf> = entries(&cache).into_iter().collect();
        let a_artifacts: Vec<PathBuf> = artifacts(&cache)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        let a_pointers: Vec<PathBuf> = pointers(&cache)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        b.prime(&cache);
        let b_artifacts: Vec<PathBuf> = artifacts(&cache)
            .into_iter()
            .filter(|p| !a_entries.contains(p))
            .collect();
        assert!(
            !a_artifacts.is_empty() && !b_artifacts.is_empty(),
            "each script wrote its artifact: {:?}",
            entries(&cache)
        );
        let a_artifact = unsigned(&a_artifacts[0]);
        let (a_name, b_name) = (a.name(), b.name());

        // a's artifact in every file of b's artifacts, signed for b's keys (as a cache with a
        // bug could have written them): the artifact's embedded module key refuses it.
        for p in &b_artifacts {
            write_signed(&cache, p, &a_artifact);
        }
        let what = format!("{b_name} with {a_name}'s artifact in its place");
        let (stats, _) = b.run_verbose(&what, &cache);
        assert!(!stats.module_hit, "{what}: {stats:?}");
        b.heals(&what, &cache);
        a.run(&format!("{a_name} after {what}"), &cache);

        // Every other entry of b (pointers, indexes) replaced by each of a's in turn, with the
        // artifacts replaced too.
        for (i, pointer) in a_pointers.iter().enumerate() {
            let content = unsigned(pointer);
            let b_now: Vec<PathBuf> = entries(&cache)
                .into_iter()
                .filter(|p| !a_entries.contains(p))
                .collect();
            for p in &b_now {
                let is_artifact = fs::read(p).unwrap().starts_with(MAGIC);
                write_signed(&cache, p, if is_artifact { &a_artifact } else { &content });
            }
            let what =
                format!("{b_name} with {a_name}'s entries in place of its own (pointer {i})");
            let (stats, _) = b.run_verbose(&what, &cache);
            assert!(!stats.module_hit, "{what}: {stats:?}");
            b.heals(&what, &cache);
            assert_warm(
                &format!("{a_name} after {what}"),
                a.run(&format!("{a_name} after {what}"), &cache),
            );
        }
    }
}

#[test]
fn every_entry_damaged_at_once_is_still_one_warning_at_most() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let path = sandbox.path();
    let scripts = [
        Script::realistic(path, "one.kl", 20, 9),
        Script::realistic(path, "two.kl", 24, 10),
        Script::new(path, "three.kl", &SMALL.replace("OFFSET", "3")),
    ];
    for script in &scripts {
        script.prime(&cache);
    }
    let rotate = |cache: &Path| {
        let found = entries(cache);
        let contents: Vec<Vec<u8>> = found.iter().map(|p| fs::read(p).unwrap()).collect();
        for (i, p) in found.iter().enumerate() {
            fs::write(p, &contents[(i + 1) % contents.len()]).unwrap();
        }
    };
    type DamageAll = dyn Fn(&Path);
    let damages: [(&str, &DamageAll); 4] = [
        ("every entry emptied", &|cache| {
            for p in entries(cache) {
                fs::write(p, b"").unwrap();
            }
        }),
        ("every entry one byte shorter", &|cache| {
            for p in entries(cache) {
                let bytes = fs::read(&p).unwrap();
                fs::write(&p, &bytes[..bytes.len().saturating_sub(1)]).unwrap();
            }
        }),
        ("every entry with a bit flipped in its middle", &|cache| {
            for p in entries(cache) {
                let mut bytes = fs::read(&p).unwrap();
                if !bytes.is_empty() {
                    let i = bytes.len() / 2;
                    bytes[i] ^= 0x08;
                }
                fs::write(&p, bytes).unwrap();
            }
        }),
        ("every entry holding the next entry's bytes", &rotate),
    ];
    for (what, damage) in damages {
        damage(&cache);
        for script in &scripts {
            let what = format!("{}: {what}", script.name());
            let stats = script.run(&what, &cache);
            assert!(!stats.module_hit, "{what}: {stats:?}");
        }
        for script in &scripts {
            script.heals(&format!("{}: {what}", script.name()), &cache);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Unusable directories

/// Runs `script` twice with a cache directory nothing can be written to: both runs are correct
/// and compile everything.
fn runs_without_the_cache(what: &str, script: &Script, cache: &Path) {
    for attempt in ["first", "second"] {
        let what = format!("{}: {what} ({attempt} run)", script.name());
        assert_cold(&what, script.run(&what, cache));
    }
}

#[test]
fn a_cache_directory_that_cannot_exist_is_not_an_error() {
    let sandbox = Sandbox::new();
    let script = Script::realistic(sandbox.path(), "nodir.kl", 20, 11);
    let file = sandbox.path().join("file.txt");
    fs::write(&file, "a regular file\n").unwrap();

    runs_without_the_cache("the cache directory is a file", &script, &file);
    runs_without_the_cache(
        "the cache directory is under a file",
        &script,
        &file.join("cache"),
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "a regular file\n");

    // The cache commands say so without crashing.
    for dir in [file.clone(), file.join("cache")] {
        for action in [&["stats"][..], &["gc"], &["clear"], &["path"]] {
            let mut args: Vec<OsString> = vec!["cache".into()];
            args.extend(action.iter().map(OsString::from));
            args.extend(["--cache-dir".into(), dir.clone().into()]);
            let run = kiln(&args, sandbox.path(), time_limit());
            assert!(
                !run.timed_out && run.signal.is_none() && run.code.is_some(),
                "kiln {args:?}: {}",
                run.describe()
            );
        }
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "a regular file\n");
}

#[test]
fn unreadable_and_unwritable_entries_are_not_errors() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let script = Script::realistic(sandbox.path(), "blocked.kl", 20, 12);
    script.prime(&cache);

    // The directory holding the artifact is replaced by a file (if entries are in
    // subdirectories): nothing in it can be read or written.
    let artifact = artifacts(&cache).remove(0);
    let holder = artifact.parent().unwrap().to_path_buf();
    if holder != cache {
        let aside = sandbox.path().join("aside");
        fs::rename(&holder, &aside).unwrap();
        fs::write(&holder, "not a directory\n").unwrap();
        runs_without_the_cache("its entry's directory is a file", &script, &cache);
        fs::remove_file(&holder).unwrap();
        fs::rename(&aside, &holder).unwrap();
        assert_warm(
            "blocked.kl: its directory restored",
            script.run("blocked.kl: its directory restored", &cache),
        );
    }

    // The artifact's file is replaced by a non-empty directory: neither readable as an entry
    // nor replaceable by a rename.
    let saved = fs::read(&artifact).unwrap();
    fs::remove_file(&artifact).unwrap();
    fs::create_dir(&artifact).unwrap();
    fs::write(artifact.join("inside"), "x").unwrap();
    let what = "blocked.kl: its artifact is a directory";
    assert!(!script.run(what, &cache).module_hit);
    assert!(!script.run(what, &cache).module_hit);
    fs::remove_dir_all(&artifact).unwrap();
    let what = "blocked.kl: the directory removed again";
    let stats = script.run(what, &cache);
    assert!(!stats.module_hit, "{what}: {stats:?}");
    script.heals(what, &cache);
    assert!(
        artifacts(&cache)
            .iter()
            .any(|p| fs::read(p).unwrap() == saved),
        "the rewritten artifact is the same bytes as the first"
    );
}

#[cfg(unix)]
#[test]
fn a_read_only_cache_directory_is_not_an_error() {
    use std::os::unix::fs::PermissionsExt;

    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let warm = Script::realistic(sandbox.path(), "warm.kl", 20, 13);
    let new = Script::realistic(sandbox.path(), "new.kl", 20, 14);
    warm.prime(&cache);
    let mut dirs = vec![cache.clone()];
    walk_dirs(&cache, &mut dirs);
    let set_mode = |mode: u32| {
        for dir in &dirs {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    set_mode(0o555);
    // As root the permission bits change nothing; the runs must be right either way.
    let cached = warm.run("warm.kl in a read-only cache", &cache);
    let fresh = new.run("new.kl in a read-only cache", &cache);
    new.run("new.kl in a read-only cache, again", &cache);
    set_mode(0o755);
    assert!(cached.module_hit, "reading needs no write: {cached:?}");
    assert_cold("new.kl in a read-only cache", fresh);
    new.run("new.kl with the cache writable again", &cache);
    new.heals("new.kl with the cache writable again", &cache);
}

/// Every directory under `dir`.
fn walk_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            found.push(entry.path());
            walk_dirs(&entry.path(), found);
        }
    }
}

/// A full disk, simulated with a file-size limit on the process (`ulimit -f 64`, 64 blocks of at
/// most 1 KiB): writing the artifact fails with EFBIG, as it would with ENOSPC. The shell ignores
/// SIGXFSZ and `kiln` inherits that, so it sees the error instead of dying of the signal.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_not_an_error() {
    const LIMIT_BYTES: u64 = 64 * 1024;
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let script = Script::realistic(sandbox.path(), "full.kl", 300, 15);

    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64 && exec \"$0\" \"$@\"")
        .args(support::launcher(support::KILN))
        .args(script.args(&cache, &["--verbose"]))
        .current_dir(script.dir());
    let limited = run_with_limit(command, time_limit());
    let what = "full.kl with a 64-block file size limit";
    assert_cold(what, check(what, &script, &limited, Verbose::Yes));
    assert_eq!(
        other_files(&cache),
        Vec::<PathBuf>::new(),
        "{what}: a failed write leaves no temporary file behind"
    );

    // Without the limit: nothing usable was stored, so this run compiles and writes.
    let what = "full.kl without the limit";
    let stats = script.run(what, &cache);
    assert!(!stats.module_hit, "{what}: {stats:?}");
    script.heals(what, &cache);
    let largest = artifacts(&cache)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .max()
        .unwrap();
    assert!(
        largest > LIMIT_BYTES,
        "the artifact ({largest} bytes) must exceed the limit for this test to test anything"
    );
}

// ---------------------------------------------------------------------------------------------
// Processes at once, processes killed

#[test]
fn eight_processes_share_one_cache_directory() {
    let sandbox = Sandbox::new();
    let path = sandbox.path();
    let same = Script::realistic(path, "same.kl", 150, 16);
    let others: Vec<Script> = (0..4)
        .map(|i| Script::realistic(path, &format!("other{i}.kl"), 150, 17 + i))
        .collect();
    let mut scripts: Vec<&Script> = vec![&same; 4];
    scripts.extend(&others);

    for round in 0..2 {
        let cache = path.join(format!("cache{round}"));
        let barrier = Barrier::new(scripts.len());
        let runs: Vec<Run> = std::thread::scope(|scope| {
            let handles: Vec<_> = scripts
                .iter()
                .map(|script| {
                    let (barrier, cache) = (&barrier, &cache);
                    scope.spawn(move || {
                        barrier.wait();
                        kiln(script.args(cache, &[]), script.dir(), time_limit())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (script, run) in scripts.iter().zip(&runs) {
            let what = format!("{}: one of 8 at once (round {round})", script.name());
            check(&what, script, run, Verbose::No);
        }
        for script in std::iter::once(&same).chain(&others) {
            script.heals(&format!("{}: after 8 at once", script.name()), &cache);
        }
    }
}

/// When to SIGKILL a cold run of the big script, judged from the clock or from its cache
/// directory.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This long after the start.
    After(Duration),
    /// As soon as a file that is not an entry (a temporary file being written) exists.
    TempFile,
    /// As soon as such a file holds at least this many bytes.
    TempFileOf(u64),
    /// As soon as the first entry exists (before the others are written, if any are).
    FirstEntry,
}

impl KillAt {
    fn now(self, cache: &Path, started: Instant) -> bool {
        match self {
            KillAt::After(delay) => started.elapsed() >= delay,
            KillAt::TempFile => !other_files(cache).is_empty(),
            KillAt::TempFileOf(bytes) => other_files(cache)
                .iter()
                .any(|p| fs::metadata(p).is_ok_and(|m| m.len() >= bytes)),
            KillAt::FirstEntry => !entries(cache).is_empty(),
        }
    }
}

#[test]
fn a_writer_killed_mid_write_leaves_nothing_that_breaks_a_run() {
    let sandbox = Sandbox::new();
    let script = Script::realistic(sandbox.path(), "killed.kl", 2000, 20);

    let reference = sandbox.path().join("ref");
    let started = Instant::now();
    let stats = script.run("killed.kl: reference cold run", &reference);
    let cold = started.elapsed();
    assert_cold("killed.kl: reference cold run", stats);
    let size = artifacts(&reference)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .max()
        .unwrap();

    // Kills at fixed times land while compiling; kills watching the directory land while the
    // entries are written. A watched kill that never fires (the write was over before the
    // directory was looked at) is tried again, a few times.
    let mut plan: Vec<KillAt> = [20, 60, 120, 250]
        .into_iter()
        .map(|ms| KillAt::After(Duration::from_millis(ms)))
        .collect();
    plan.push(KillAt::After(cold.mul_f64(0.9)));
    plan.extend([
        KillAt::TempFile,
        KillAt::TempFileOf(size / 2),
        KillAt::FirstEntry,
    ]);
    let mut report = Vec::new();
    let mut mid_write_kills = 0;
    for (i, kill_at) in plan.into_iter().enumerate() {
        let watched = !matches!(kill_at, KillAt::After(_));
        for attempt in 0..if watched { 5 } else { 1 } {
            let cache = sandbox.path().join(format!("cache{i}-{attempt}"));
            let what = format!("killed.kl killed at {kill_at:?} (attempt {attempt})");
            let mut command = support::command(support::KILN);
            command
                .args(script.args(&cache, &[]))
                .current_dir(script.dir());
            let started = Instant::now();
            let mut fired = false;
            let killed = support::run_until(
                command,
                time_limit(),
                Duration::from_micros(100),
                &mut || {
                    fired = kill_at.now(&cache, started);
                    fired
                },
            );
            let elapsed = started.elapsed();
            if killed.signal == Some(SIGKILL) {
                mid_write_kills += usize::from(watched && fired);
            } else {
                check(
                    &format!("{what} (it finished first)"),
                    &script,
                    &killed,
                    Verbose::No,
                );
            }
            let left: Vec<String> = other_files(&cache)
                .iter()
                .map(|p| format!("{} bytes", fs::metadata(p).unwrap().len()))
                .collect();
            let written = entries(&cache).len();
            let next = script.run(&format!("{what}: the next run"), &cache);
            script.heals(&format!("{what}: the next run"), &cache);
            // The leftovers of a killed writer do not bother the cache commands either.
            // FIXME: `kiln cache gc` keeps a killed writer's temporary file (the report shows
            // it), and `stats` does not count it, so such files escape the size cap.
            for action in ["stats", "gc"] {
                let args: Vec<OsString> = vec![
                    "cache".into(),
                    action.into(),
                    "--cache-dir".into(),
                    cache.clone().into(),
                ];
                let run = kiln(&args, sandbox.path(), time_limit());
                assert_eq!(
                    run.code,
                    Some(0),
                    "{what}: kiln cache {action}: {}",
                    run.stderr_text()
                );
            }
            report.push(format!(
                "{kill_at:?}, attempt {attempt}: {} after {elapsed:?}; left {written} entries and \
                 other files {left:?} ({} after gc); next run compiled {} of {}",
                describe_kill(&killed, watched),
                other_files(&cache).len(),
                next.compiled,
                next.functions,
            ));
            if !watched || fired {
                break;
            }
        }
    }
    // Seen with --nocapture: where the kills landed.
    eprintln!(
        "artifact of {size} bytes, cold run {cold:?}\n{}",
        report.join("\n")
    );
    assert!(
        mid_write_kills > 0,
        "no kill landed while an entry was being written:\n{}",
        report.join("\n")
    );
}

fn describe_kill(run: &Run, watched: bool) -> &'static str {
    match (run.signal == Some(SIGKILL), watched) {
        (true, true) => "killed when the directory showed it",
        (true, false) => "killed by the clock",
        (false, _) => "finished first",
    }
}

// ---------------------------------------------------------------------------------------------
// Where the cache lives, switching it off, the cache commands

/// `kiln ARGS...` with `HOME` and `XDG_CACHE_HOME` inside `sandbox` (so nothing can reach the
/// user's cache) and the given variables set (`Some`) or removed (`None`).
fn kiln_env(sandbox: &Sandbox, args: &[OsString], vars: &[(&str, Option<&Path>)]) -> Run {
    let mut command = support::command(support::KILN);
    command
        .args(args)
        .current_dir(sandbox.path())
        .env("HOME", sandbox.path().join("home"))
        .env("XDG_CACHE_HOME", sandbox.path().join("xdg"))
        .env_remove("KILN_CACHE_DIR")
        .env_remove("KILN_CACHE");
    for (name, value) in vars {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    run_with_limit(command, time_limit())
}

/// `kiln run --stats SCRIPT` (no `--cache-dir`) under [`kiln_env`].
fn run_env(sandbox: &Sandbox, script: &Script, vars: &[(&str, Option<&Path>)]) -> Stats {
    let args = ["run".into(), "--stats".into(), script.path.clone().into()];
    let run = kiln_env(sandbox, &args, vars);
    check(
        &format!("{} with {vars:?}", script.name()),
        script,
        &run,
        Verbose::No,
    )
}

/// What `kiln cache path` prints under [`kiln_env`].
fn cache_path(sandbox: &Sandbox, vars: &[(&str, Option<&Path>)]) -> String {
    let run = kiln_env(sandbox, &["cache".into(), "path".into()], vars);
    assert_eq!(run.code, Some(0), "kiln cache path: {}", run.stderr_text());
    run.stdout_text().trim_end().to_string()
}

#[test]
fn the_cache_directory_comes_from_the_flag_the_environment_or_the_home() {
    let sandbox = Sandbox::new();
    let script = Script::new(sandbox.path(), "where.kl", &SMALL.replace("OFFSET", "4"));
    let home = sandbox.path().join("home");
    let xdg = sandbox.path().join("xdg");
    let env_dir = sandbox.path().join("from-env");

    // XDG_CACHE_HOME/kiln by default.
    assert_cold("default", run_env(&sandbox, &script, &[]));
    assert_warm("default, again", run_env(&sandbox, &script, &[]));
    assert!(!entries(&xdg.join("kiln")).is_empty());
    assert_eq!(
        cache_path(&sandbox, &[]),
        xdg.join("kiln").display().to_string()
    );

    // ~/.cache/kiln without XDG_CACHE_HOME.
    let no_xdg = [("XDG_CACHE_HOME", None)];
    assert_cold("no XDG_CACHE_HOME", run_env(&sandbox, &script, &no_xdg));
    assert!(!entries(&home.join(".cache/kiln")).is_empty());
    assert_eq!(
        cache_path(&sandbox, &no_xdg),
        home.join(".cache/kiln").display().to_string()
    );

    // KILN_CACHE_DIR over both.
    let from_env = [("KILN_CACHE_DIR", Some(env_dir.as_path()))];
    assert_cold("KILN_CACHE_DIR", run_env(&sandbox, &script, &from_env));
    assert!(!entries(&env_dir).is_empty());
    assert_eq!(
        cache_path(&sandbox, &from_env),
        env_dir.display().to_string()
    );

    // --cache-dir over KILN_CACHE_DIR.
    let unused = sandbox.path().join("unused");
    let from_env = [("KILN_CACHE_DIR", Some(unused.as_path()))];
    let flag_dir = sandbox.path().join("from-flag");
    let run = kiln_env(&sandbox, &script.args(&flag_dir, &[]), &from_env);
    assert_cold(
        "--cache-dir",
        check("--cache-dir", &script, &run, Verbose::No),
    );
    let run = kiln_env(
        &sandbox,
        &[
            "cache".into(),
            "path".into(),
            "--cache-dir".into(),
            flag_dir.clone().into(),
        ],
        &from_env,
    );
    assert_eq!(run.stdout_text().trim_end(), flag_dir.display().to_string());
    assert!(!entries(&flag_dir).is_empty());
    assert_eq!(entries(&unused), Vec::<PathBuf>::new());
}

#[test]
fn the_cache_can_be_switched_off() {
    let sandbox = Sandbox::new();
    let script = Script::new(sandbox.path(), "off.kl", &SMALL.replace("OFFSET", "5"));
    let env_dir = sandbox.path().join("from-env");
    let flag_dir = sandbox.path().join("from-flag");

    let off = [
        ("KILN_CACHE", Some(Path::new("off"))),
        ("KILN_CACHE_DIR", Some(env_dir.as_path())),
    ];
    for _ in 0..2 {
        assert_cold("KILN_CACHE=off", run_env(&sandbox, &script, &off));
    }
    for _ in 0..2 {
        let run = kiln_env(&sandbox, &script.args(&flag_dir, &["--no-cache"]), &[]);
        assert_cold(
            "--no-cache",
            check("--no-cache", &script, &run, Verbose::No),
        );
    }
    assert_eq!(entries(&env_dir), Vec::<PathBuf>::new());
    assert_eq!(entries(&flag_dir), Vec::<PathBuf>::new());
    assert_eq!(entries(&sandbox.path().join("xdg")), Vec::<PathBuf>::new());
    assert_eq!(entries(&sandbox.path().join("home")), Vec::<PathBuf>::new());
}

#[test]
fn the_cache_commands_count_collect_and_clear() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let a = Script::realistic(sandbox.path(), "a.kl", 20, 21);
    let b = Script::new(sandbox.path(), "b.kl", &SMALL.replace("OFFSET", "6"));
    a.prime(&cache);
    b.prime(&cache);
    let command = |action: &[&str]| {
        let mut args: Vec<OsString> = vec!["cache".into()];
        args.extend(action.iter().map(OsString::from));
        args.extend(["--cache-dir".into(), cache.clone().into()]);
        let run = kiln(&args, sandbox.path(), time_limit());
        assert_eq!(
            run.code,
            Some(0),
            "kiln {args:?}: {}: {}",
            run.describe(),
            run.stderr_text()
        );
        run.stdout_text()
    };

    assert_eq!(command(&["path"]).trim_end(), cache.display().to_string());
    let found = entries(&cache);
    let bytes: u64 = found.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let stats = command(&["stats"]);
    let numbers: Vec<u64> = stats
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        numbers.contains(&(found.len() as u64)) && numbers.contains(&bytes),
        "kiln cache stats should say {} entries and {bytes} bytes:\n{stats}",
        found.len()
    );

    // A cap far above the size evicts nothing; a cap of zero evicts everything not in use.
    command(&["gc", "--max-size", "1000000000"]);
    assert_eq!(entries(&cache), found);
    assert_warm("a.kl after gc", a.run("a.kl after gc", &cache));
    command(&["gc", "--max-size", "0"]);
    assert_eq!(entries(&cache), Vec::<PathBuf>::new());
    assert_cold(
        "a.kl after gc to zero",
        a.run("a.kl after gc to zero", &cache),
    );
    a.heals("a.kl after gc to zero", &cache);

    command(&["clear"]);
    assert_eq!(entries(&cache), Vec::<PathBuf>::new());
    let (stats, stderr) = b.run_verbose("b.kl after clear", &cache);
    assert_cold("b.kl after clear", stats);
    assert!(mentions(&stderr, &["no entry"]), "{stderr}");
    b.heals("b.kl after clear", &cache);
    // Clearing an empty or missing cache is fine too.
    command(&["clear"]);
    command(&["clear"]);
    fs::remove_dir_all(&cache).unwrap();
    command(&["clear"]);
    command(&["stats"]);
}

/// Modules that share a function compile it once per engine: the second module reuses the
/// code compiled for the first (counted, not timed).
#[test]
fn a_function_shared_by_two_modules_is_compiled_once() {
    let store: std::sync::Arc<dyn kiln_cache::CacheStore> =
        std::sync::Arc::new(kiln_cache::MemoryStore::new());
    let engine = kiln::Engine::new(kiln::Config {
        cache: Some(store),
        capture_output: true,
        ..kiln::Config::default()
    })
    .unwrap();
    let shared = "fn smooth(x: float, k: int) -> float {\n    let y = x;\n    for i in 0..k {\n        y = y * 0.5 + 1.0;\n    }\n    return y;\n}\n";
    let a = format!("{shared}fn main() {{ print(smooth(1.0, 3)); }}\n");
    let b = format!(
        "fn other() -> int {{ return 7; }}\n{shared}fn main() {{ print(smooth(3.0, other())); }}\n"
    );
    let first = engine.load_str("a.kl", &a).unwrap();
    assert_eq!(first.stats().cache.compiled, 2);
    let second = engine.load_str("b.kl", &b).unwrap();
    let stats = &second.stats().cache;
    assert_eq!((stats.compiled, stats.hits), (2, 1), "{stats:?}");
    second.call("main", &[]).unwrap();
    assert_eq!(second.take_output(), "2.0078125\n");
}

// ---------------------------------------------------------------------------------------------
// Artifacts built for a target (`kiln build`, `kiln target`)

impl Script {
    /// `kiln build --cache-dir CACHE [TARGET ARGS...] SCRIPT`, which must succeed.
    fn build(&self, cache: &Path, target: &[String]) -> Run {
        let mut args: Vec<OsString> = vec!["build".into(), "--cache-dir".into(), cache.into()];
        args.extend(target.iter().map(OsString::from));
        args.push(self.path.clone().into());
        let run = kiln(args, self.dir(), time_limit());
        assert_eq!(
            run.code,
            Some(0),
            "kiln build {target:?}: {}",
            run.describe()
        );
        run
    }
}

/// What `kiln target` prints, as arguments for `kiln build`.
fn this_machine_as_target() -> Vec<String> {
    let run = kiln(["target"], Path::new("."), time_limit());
    assert_eq!(run.code, Some(0), "kiln target: {}", run.describe());
    let line = run.stdout_text();
    assert!(
        line.starts_with("--target "),
        "kiln target printed {line:?}"
    );
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn a_cache_built_for_this_machine_starts_warm() {
    let sandbox = Sandbox::new();
    let script = Script::realistic(sandbox.path(), "prebuilt.kl", 20, 11);
    let by_default = sandbox.cache();
    script.build(&by_default, &[]);
    assert_warm(
        "built for this machine",
        script.run("first run", &by_default),
    );

    // Named explicitly, this machine's triple and CPU features are the same fingerprint.
    let named = sandbox.path().join("named");
    let target = this_machine_as_target();
    script.build(&named, &target);
    assert_warm("built for `kiln target`", script.run("first run", &named));
    // Building again finds the artifact in place.
    let again = script.build(&named, &target);
    assert!(
        again.stderr_text().contains("already in"),
        "{}",
        again.describe()
    );
}

#[test]
fn an_artifact_built_for_another_target_never_runs_here() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let script = Script::realistic(sandbox.path(), "device.kl", 20, 12);
    let aarch64 = [
        "--target",
        "aarch64-unknown-linux-gnu",
        "--features",
        "has_lse",
    ]
    .map(str::to_string);
    script.build(&cache, &aarch64);
    let foreign = artifacts(&cache);
    assert_eq!(foreign.len(), 1, "one artifact for aarch64");

    // Its key is the aarch64 engine's: this machine misses it, compiles, and says nothing.
    let first = script.run("run beside an aarch64 artifact", &cache);
    assert_cold("run beside an aarch64 artifact", first);
    assert_warm("second run", script.run("second run", &cache));

    // Put in place of this machine's artifact, it is refused for its fingerprint.
    let own: Vec<PathBuf> = artifacts(&cache)
        .into_iter()
        .filter(|p| !foreign.contains(p))
        .collect();
    assert_eq!(own.len(), 1, "one artifact for this machine");
    // Copied as it is, its tag is for another key: refused before it is read.
    fs::copy(&foreign[0], &own[0]).unwrap();
    let (stats, stderr) = script.run_verbose("the aarch64 artifact copied over ours", &cache);
    assert!(!stats.module_hit, "{stderr}");
    assert!(mentions(&stderr, &["untrusted", "tag"]), "{stderr}");
    script.heals("the aarch64 artifact copied over ours", &cache);
    // Signed for our key, its fingerprint refuses it.
    write_signed(&cache, &own[0], &unsigned(&foreign[0]));
    let (stats, stderr) = script.run_verbose("the aarch64 artifact signed as ours", &cache);
    assert!(!stats.module_hit, "{stderr}");
    assert!(mentions(&stderr, &["fingerprint"]), "{stderr}");
    script.heals("the aarch64 artifact signed as ours", &cache);
}

#[test]
fn kiln_build_refuses_unknown_targets_and_features_clearly() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let script = Script::realistic(sandbox.path(), "bad.kl", 3, 13);
    for (args, says) in [
        (
            &["--target", "sparc-sun-solaris"][..],
            "cannot compile for `sparc-sun-solaris`",
        ),
        (
            &["--target", "nonsense"],
            "invalid target triple `nonsense`",
        ),
        (
            &[
                "--target",
                "aarch64-unknown-linux-gnu",
                "--features",
                "has_warp_drive",
            ],
            "CPU feature `has_warp_drive`",
        ),
    ] {
        let mut all: Vec<OsString> =
            vec!["build".into(), "--cache-dir".into(), cache.clone().into()];
        all.extend(args.iter().map(OsString::from));
        all.push(script.path.clone().into());
        let run = kiln(all, script.dir(), time_limit());
        assert_eq!(run.code, Some(1), "kiln build {args:?}: {}", run.describe());
        let stderr = run.stderr_text();
        assert!(stderr.contains(says), "kiln build {args:?} said {stderr:?}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "kiln build {args:?} said {stderr:?}"
        );
    }
    assert!(artifacts(&cache).is_empty(), "nothing was stored");
}

// ---------------------------------------------------------------------------------------------
// Trust: who may have written an entry (SECURITY.md)

/// Sets a file's or directory's permission bits.
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file under `dir` with its bytes and modification time: to show nothing was written.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut files = Vec::new();
    walk(dir, &mut |p| {
        let modified = fs::metadata(p).unwrap().modified().unwrap();
        files.push((p.to_path_buf(), fs::read(p).unwrap(), modified));
    });
    files.sort();
    files
}

#[test]
fn an_entry_signed_by_another_cache_is_recompiled_not_run() {
    let sandbox = Sandbox::new();
    let (mine, theirs) = (sandbox.cache(), sandbox.path().join("theirs"));
    let script = Script::realistic(sandbox.path(), "copied.kl", 20, 21);
    script.prime(&theirs);
    script.prime(&mine);
    // Their entries, every checksum and fingerprint right, copied over mine.
    for path in entries(&theirs) {
        let relative = path.strip_prefix(&theirs).unwrap();
        fs::copy(&path, mine.join(relative)).unwrap();
    }
    let (stats, stderr) = script.run_verbose("their entries in my cache", &mine);
    assert!(!stats.module_hit && stats.cache_hits == 0, "{stderr}");
    assert!(mentions(&stderr, &["untrusted"]), "{stderr}");
    script.heals("their entries in my cache", &mine);
}

#[test]
fn entries_and_directories_others_can_write_are_refused() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let script = Script::realistic(sandbox.path(), "shared.kl", 20, 22);
    script.prime(&cache);
    let artifact = artifacts(&cache).remove(0);
    let shard = artifact.parent().unwrap().to_path_buf();

    chmod(&artifact, 0o666);
    let (stats, stderr) = script.run_verbose("an artifact others can write", &cache);
    assert!(!stats.module_hit, "{stderr}");
    assert!(mentions(&stderr, &["writable by other users"]), "{stderr}");
    script.heals("an artifact others can write", &cache);

    chmod(&shard, 0o777);
    for run in ["first", "second"] {
        let what = format!("a subdirectory others can write, {run} run");
        let (stats, stderr) = script.run_verbose(&what, &cache);
        assert!(!stats.module_hit, "{what}: {stderr}");
        assert!(
            mentions(&stderr, &["writable by other users"]),
            "{what}: {stderr}"
        );
    }
    chmod(&shard, 0o700);
    script.warm_up(&cache);

    chmod(&cache, 0o777);
    let run = kiln(script.args(&cache, &[]), script.dir(), time_limit());
    let stats = check(
        "a cache directory others can write",
        &script,
        &run,
        Verbose::No,
    );
    assert!(!stats.module_hit, "{}", run.describe());
    let stderr = run.stderr_text();
    assert!(
        stderr.contains("writable by other users") && stderr.contains("without the cache"),
        "{stderr}"
    );
    chmod(&cache, 0o700);
    assert_warm(
        "the directory made private again",
        script.run("again", &cache),
    );
}

#[test]
fn an_artifact_another_user_owns_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let script = Script::realistic(sandbox.path(), "owned.kl", 20, 23);
    script.prime(&cache);
    let artifact = artifacts(&cache).remove(0);
    if fs::metadata(&artifact).unwrap().uid() != 0 {
        // Only root can give a file away; the unit tests of `kiln_cache::trust` cover the check.
        eprintln!("note: not root; the ownership refusal is not exercised end to end");
        return;
    }
    std::os::unix::fs::chown(&artifact, Some(65534), None).unwrap();
    let (stats, stderr) = script.run_verbose("an artifact owned by user 65534", &cache);
    assert!(!stats.module_hit, "{stderr}");
    assert!(mentions(&stderr, &["owned by user 65534"]), "{stderr}");
    script.heals("an artifact owned by user 65534", &cache);
}

#[test]
fn a_key_file_others_can_read_turns_the_cache_off() {
    let sandbox = Sandbox::new();
    let cache = sandbox.cache();
    let script = Script::realistic(sandbox.path(), "exposed.kl", 10, 24);
    script.prime(&cache);
    chmod(&cache.join(KEY_FILE), 0o644);
    let run = kiln(script.args(&cache, &[]), script.dir(), time_limit());
    let stats = check("an exposed key", &script, &run, Verbose::No);
    assert!(!stats.module_hit);
    let stderr = run.stderr_text();
    assert!(
        stderr.contains("readable by other users") && stderr.contains("without the cache"),
        "{stderr}"
    );
}

#[test]
fn a_read_only_cache_is_used_only_with_its_key() {
    let sandbox = Sandbox::new();
    let prepared = sandbox.path().join("prepared");
    let script = Script::realistic(sandbox.path(), "shipped.kl", 20, 25);
    let key = sandbox.path().join("ci.key");
    let other = sandbox.path().join("other.key");
    for file in [&key, &other] {
        let run = kiln(
            [OsString::from("cache"), "new-key".into(), file.into()],
            sandbox.path(),
            time_limit(),
        );
        assert_eq!(run.code, Some(0), "{}", run.describe());
    }
    let key_arg = |file: &Path| vec!["--cache-key".to_string(), file.display().to_string()];
    script.build(&prepared, &key_arg(&key));
    let before = snapshot(&prepared);

    let read_only = |file: &Path| {
        let mut extra = key_arg(file);
        extra.push("--cache-read-only".into());
        extra
    };
    let run_with = |extra: &[String], what: &str| {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let run = kiln(script.args(&prepared, &extra), script.dir(), time_limit());
        (check(what, &script, &run, Verbose::No), run.stderr_text())
    };
    let (stats, _) = run_with(&read_only(&key), "read-only with the key it was built with");
    assert_warm("read-only with its key", stats);

    let (stats, stderr) = run_with(&read_only(&other), "read-only with another key");
    assert!(!stats.module_hit, "{stderr}");
    assert!(mentions(&stderr, &["untrusted"]), "{stderr}");

    let (stats, stderr) = run_with(
        &["--cache-read-only".to_string()],
        "read-only without a key",
    );
    assert!(!stats.module_hit, "{stderr}");
    assert!(stderr.contains("needs a key"), "{stderr}");
    assert_eq!(
        snapshot(&prepared),
        before,
        "a read-only cache is never written"
    );

    // The directory's own secret is not the key it was built with either.
    let (stats, stderr) = run_with(&[], "the prepared cache opened as a private one");
    assert!(!stats.module_hit, "{stderr}");
}
