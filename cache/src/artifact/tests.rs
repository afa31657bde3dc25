//! Tests that attack the artifact format: round trips, every truncation, every bit flip,
//! foreign versions and fingerprints, crafted tables behind valid checksums, and a golden file.

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

const FINGERPRINT: &[u8] = b"test-engine x86_64 opt=speed abi=1";

/// One function's inputs, owned, so tests can build and compare them.
#[derive(Clone, Debug, PartialEq)]
struct OwnedFunction {
    key: Key,
    name: String,
    align: u32,
    code: Vec<u8>,
    relocs: Vec<(u32, u32, String, i64)>,
    metadata: Vec<u8>,
}

fn key(seed: u8) -> Key {
    Key(std::array::from_fn(|i| {
        seed.wrapping_mul(31).wrapping_add(i as u8)
    }))
}

/// A small but real-shaped artifact: calls between functions sharing targets, an empty function,
/// an alignment above 16, metadata on some functions and a module blob.
fn sample_functions() -> Vec<OwnedFunction> {
    vec![
        OwnedFunction {
            key: key(1),
            name: "main".into(),
            align: 16,
            code: (0..37).collect(),
            relocs: vec![
                (3, 1, "fib".into(), -4),
                (12, 2, "kiln.global.counter".into(), 0),
                (30, 1, "fib".into(), -4),
            ],
            metadata: b"sites:3;sig:()->int".to_vec(),
        },
        OwnedFunction {
            key: key(2),
            name: "fib".into(),
            align: 32,
            code: (100..121).collect(),
            relocs: vec![(1, 3, "kiln_rt_trap".into(), i64::MIN)],
            metadata: vec![],
        },
        OwnedFunction {
            key: key(3),
            name: "empty".into(),
            align: 1,
            code: vec![],
            relocs: vec![],
            metadata: vec![0xff; 5],
        },
    ]
}

const MODULE_BLOB: &[u8] = b"globals: counter i64 @0";

fn write(fingerprint: &[u8], functions: &[OwnedFunction], module: &[u8]) -> Vec<u8> {
    let mut writer = ArtifactWriter::new(fingerprint);
    writer.set_module_blob(module);
    for (i, f) in functions.iter().enumerate() {
        let relocs: Vec<RelocInput<'_>> = f
            .relocs
            .iter()
            .map(|(offset, kind, target, addend)| RelocInput {
                offset: *offset,
                kind: *kind,
                target,
                addend: *addend,
            })
            .collect();
        let index = writer
            .add_function(&FunctionInput {
                key: f.key,
                name: &f.name,
                align: f.align,
                code: &f.code,
                relocs: &relocs,
                metadata: &f.metadata,
            })
            .unwrap();
        assert_eq!(index, i);
    }
    writer.finish().unwrap()
}

fn sample() -> Vec<u8> {
    write(FINGERPRINT, &sample_functions(), MODULE_BLOB)
}

/// Reads every function back into owned form, checking the views agree with each other.
fn read_back(artifact: &Artifact<'_>) -> Vec<OwnedFunction> {
    artifact
        .functions()
        .enumerate()
        .map(|(i, f)| {
            assert_eq!(f.index(), i);
            assert_eq!(f.relocs().len(), f.relocs().count());
            for (j, reloc) in f.relocs().enumerate() {
                assert_eq!(f.relocs().get(j), Some(reloc));
            }
            assert_eq!(f.relocs().get(f.relocs().len()), None);
            OwnedFunction {
                key: *f.key(),
                name: f.name().to_owned(),
                align: f.align(),
                code: f.code().to_vec(),
                relocs: f
                    .relocs()
                    .map(|r| {
                        let target = artifact.string(r.target).unwrap().to_owned();
                        (r.offset, r.kind, target, r.addend)
                    })
                    .collect(),
                metadata: f.metadata().to_vec(),
            }
        })
        .collect()
}

#[test]
fn round_trip() {
    let bytes = sample();
    let artifact = Artifact::parse(&bytes, FINGERPRINT).unwrap();
    assert_eq!(artifact.len(), 3);
    assert!(!artifact.is_empty());
    assert_eq!(artifact.fingerprint(), FINGERPRINT);
    assert_eq!(artifact.module_blob(), MODULE_BLOB);
    assert_eq!(artifact.as_bytes(), &bytes[..]);
    assert_eq!(read_back(&artifact), sample_functions());
    // Names and targets are interned: main, fib, kiln.global.counter, kiln_rt_trap, empty.
    assert_eq!(artifact.string_count(), 5);
    assert_eq!(artifact.string(5), None);
    assert_eq!(artifact.string(u32::MAX), None);
    assert!(artifact.function(3).is_none());
    assert!(artifact.function(usize::MAX).is_none());
}

#[test]
fn code_is_aligned_within_the_code_section_and_the_file() {
    let bytes = sample();
    let artifact = Artifact::parse(&bytes, FINGERPRINT).unwrap();
    for f in artifact.functions() {
        let offset = f.code().as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(offset % 16, 0, "{}", f.name());
        if f.align() > 16 {
            let code_start = artifact.layout.sections[CODE].start;
            assert_eq!((offset - code_start) % f.align() as usize, 0);
        }
    }
}

#[test]
fn empty_artifact_round_trips() {
    let bytes = write(b"", &[], b"");
    let artifact = Artifact::parse(&bytes, b"").unwrap();
    assert!(artifact.is_empty());
    assert_eq!(artifact.functions().count(), 0);
    assert_eq!(artifact.string_count(), 0);
    assert_eq!(artifact.module_blob(), b"");
    assert!(artifact.find(&key(1)).is_none());
}

#[test]
fn find_returns_the_first_function_with_a_key() {
    let mut functions = sample_functions();
    // Two functions with identical content get the same key; both are kept.
    functions[2].key = functions[1].key;
    let bytes = write(FINGERPRINT, &functions, b"");
    let artifact = Artifact::parse(&bytes, FINGERPRINT).unwrap();
    assert_eq!(artifact.find(&key(1)).unwrap().name(), "main");
    assert_eq!(artifact.find(&key(2)).unwrap().name(), "fib");
    assert!(artifact.find(&key(3)).is_none());
}

#[test]
fn every_truncation_is_reported_as_truncation() {
    let bytes = sample();
    for len in 0..bytes.len() {
        match Artifact::parse(&bytes[..len], FINGERPRINT) {
            Err(ArtifactError::Truncated) => {}
            other => panic!("truncated to {len} of {} bytes: {other:?}", bytes.len()),
        }
    }
}

#[test]
fn every_single_bit_flip_is_refused() {
    // The encoding is canonical and every byte is checksummed or zero padding, so no flip can
    // produce another valid artifact (not even one equal to the original).
    let bytes = sample();
    let mut flipped = bytes.clone();
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            flipped[byte] ^= 1 << bit;
            let result = Artifact::parse(&flipped, FINGERPRINT);
            assert!(
                result.is_err(),
                "flipping bit {bit} of byte {byte} went unnoticed"
            );
            flipped[byte] ^= 1 << bit;
        }
    }
}

#[test]
fn bit_flips_are_reported_where_they_happen() {
    let bytes = sample();
    let artifact = Artifact::parse(&bytes, FINGERPRINT).unwrap();
    let sections = artifact.layout.sections;
    for (index, span) in sections.iter().enumerate() {
        if span.start == span.end {
            continue;
        }
        let mut flipped = bytes.clone();
        flipped[span.start] ^= 0x10;
        match Artifact::parse(&flipped, FINGERPRINT) {
            Err(ArtifactError::ChecksumMismatch(s)) => assert_eq!(s, Section::ALL[index]),
            other => panic!("flip in section {index}: {other:?}"),
        }
    }
    // The fingerprint is header: a flip there is a corrupt header, not another engine.
    let mut flipped = bytes.clone();
    flipped[FIXED_HEADER_LEN] ^= 1;
    assert!(matches!(
        Artifact::parse(&flipped, FINGERPRINT),
        Err(ArtifactError::ChecksumMismatch(Section::Header))
    ));
    // Padding between sections is covered by no checksum, so it must be zero.
    let gap = sections[FUNCTIONS].end;
    assert!(gap < sections[CODE].start, "the sample has padding here");
    let mut flipped = bytes.clone();
    flipped[gap] = 1;
    assert!(matches!(
        Artifact::parse(&flipped, FINGERPRINT),
        Err(ArtifactError::Malformed(_))
    ));
}

#[test]
fn wrong_magic_is_refused() {
    let mut bytes = sample();
    bytes[0] = b'k';
    assert!(matches!(
        Artifact::parse(&bytes, FINGERPRINT),
        Err(ArtifactError::BadMagic)
    ));
    for not_an_artifact in [&b"\x7fELF\x02\x01\x01\0\0\0\0\0"[..], b"hello", b"KILNARTX"] {
        assert!(matches!(
            Artifact::parse(not_an_artifact, FINGERPRINT),
            Err(ArtifactError::BadMagic)
        ));
    }
    // A prefix of the magic could still become an artifact: it is a truncation.
    assert!(matches!(
        Artifact::parse(b"KILN", FINGERPRINT),
        Err(ArtifactError::Truncated)
    ));
}

#[test]
fn other_format_versions_are_refused_before_anything_else() {
    for version in [0, 2, u32::MAX] {
        let mut bytes = sample();
        bytes[8..12].copy_from_slice(&u32::to_le_bytes(version));
        // Even with nothing else valid after it, the version is what gets reported.
        bytes.truncate(12);
        match Artifact::parse(&bytes, FINGERPRINT) {
            Err(ArtifactError::UnsupportedVersion(v)) => assert_eq!(v, version),
            other => panic!("version {version}: {other:?}"),
        }
    }
    let message = ArtifactError::UnsupportedVersion(2).to_string();
    assert!(message.contains("version 2"), "{message}");
}

#[test]
fn trailing_bytes_are_refused() {
    for extra in [1usize, 15, 16, 1000] {
        let mut bytes = sample();
        bytes.resize(bytes.len() + extra, 0);
        match Artifact::parse(&bytes, FINGERPRINT) {
            Err(ArtifactError::TrailingBytes(n)) => assert_eq!(n, extra as u64),
            other => panic!("{extra} trailing bytes: {other:?}"),
        }
    }
}

#[test]
fn another_fingerprint_is_refused() {
    let bytes = sample();
    for other in [
        &b""[..],
        b"test-engine",
        b"test-engine x86_64 opt=speed abi=2",
    ] {
        assert!(matches!(
            Artifact::parse(&bytes, other),
            Err(ArtifactError::FingerprintMismatch)
        ));
    }
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    assert_eq!(sample(), sample());
    // And a different order of functions gives a different (but valid) artifact.
    let mut reversed = sample_functions();
    reversed.reverse();
    let bytes = write(FINGERPRINT, &reversed, MODULE_BLOB);
    assert_ne!(bytes, sample());
    assert_eq!(
        read_back(&Artifact::parse(&bytes, FINGERPRINT).unwrap()),
        reversed
    );
}

#[test]
fn writer_refuses_what_the_format_cannot_hold_and_stays_unchanged() {
    let mut writer = ArtifactWriter::new(FINGERPRINT);
    let code = [0x90u8; 8];
    for align in [0, 3, 8192] {
        let result = writer.add_function(&FunctionInput {
            key: key(1),
            name: "f",
            align,
            code: &code,
            relocs: &[],
            metadata: &[],
        });
        assert_eq!(
            result,
            Err(WriteError::BadAlignment {
                function: "f".into(),
                align
            })
        );
    }
    let result = writer.add_function(&FunctionInput {
        key: key(1),
        name: "g",
        align: 16,
        code: &code,
        relocs: &[RelocInput {
            offset: 8,
            kind: 1,
            target: "h",
            addend: 0,
        }],
        metadata: &[],
    });
    assert!(matches!(
        result,
        Err(WriteError::RelocOutOfRange { offset: 8, .. })
    ));
    assert!(result.unwrap_err().to_string().contains("`g`"));
    // Nothing of the refused functions (not even their names) reached the output.
    assert_eq!(writer.finish().unwrap(), write(FINGERPRINT, &[], b""));
}

/// Recomputes every checksum from the section table, as a writer with a bug would: what it
/// produces passes the checksums, so only the structural checks stand between it and a caller.
fn reseal(bytes: &mut [u8]) {
    let fingerprint_len = read_u32(bytes, 16).unwrap() as usize;
    let table_start = align_up(FIXED_HEADER_LEN + fingerprint_len, 8).unwrap();
    for index in 0..SECTION_COUNT {
        let entry = table_start + index * SECTION_ENTRY_LEN;
        let offset = read_u64(bytes, entry + 8).unwrap() as usize;
        let len = read_u64(bytes, entry + 16).unwrap() as usize;
        // A section the edit moved out of the file keeps its old checksum.
        let Some(section) = offset
            .checked_add(len)
            .and_then(|end| bytes.get(offset..end))
        else {
            continue;
        };
        let hash = blake3::hash(section);
        bytes[entry + 24..entry + 24 + CHECKSUM_LEN].copy_from_slice(hash.as_bytes());
    }
    let checksum_start = table_start + SECTION_COUNT * SECTION_ENTRY_LEN;
    let hash = blake3::hash(&bytes[..checksum_start]);
    bytes[checksum_start..checksum_start + CHECKSUM_LEN].copy_from_slice(hash.as_bytes());
}

/// Applies `edit` to the sample at the absolute position `section start + offset`, reseals, and
/// returns the parse error.
fn crafted(section: usize, offset: usize, edit: &[u8]) -> ArtifactError {
    let mut bytes = sample();
    let start = Artifact::parse(&bytes, FINGERPRINT)
        .unwrap()
        .layout
        .sections[section]
        .start;
    bytes[start + offset..start + offset + edit.len()].copy_from_slice(edit);
    reseal(&mut bytes);
    match Artifact::parse(&bytes, FINGERPRINT) {
        Err(error) => error,
        Ok(_) => panic!("crafted edit at section {section} + {offset} was accepted"),
    }
}

#[test]
fn reseal_of_an_untouched_artifact_changes_nothing() {
    let mut bytes = sample();
    reseal(&mut bytes);
    assert_eq!(bytes, sample());
}

#[test]
fn crafted_tables_behind_valid_checksums_are_refused() {
    let entry = |function: usize, field: usize| {
        FUNCTION_TABLE_HEADER_LEN + function * FUNCTION_ENTRY_LEN + 32 + 4 * field
    };
    let cases: Vec<(usize, usize, Vec<u8>)> = vec![
        // Function count larger than the table.
        (FUNCTIONS, 0, 4u32.to_le_bytes().to_vec()),
        (FUNCTIONS, 4, 1u32.to_le_bytes().to_vec()),
        // Name id out of the string table.
        (FUNCTIONS, entry(0, 0), 99u32.to_le_bytes().to_vec()),
        // Alignment zero, not a power of two, too large.
        (FUNCTIONS, entry(1, 1), 0u32.to_le_bytes().to_vec()),
        (FUNCTIONS, entry(1, 1), 24u32.to_le_bytes().to_vec()),
        (FUNCTIONS, entry(1, 1), (1u32 << 31).to_le_bytes().to_vec()),
        // Code offset moved, code running past its section, overlapping code.
        (FUNCTIONS, entry(1, 2), 48u32.to_le_bytes().to_vec()),
        (FUNCTIONS, entry(2, 3), u32::MAX.to_le_bytes().to_vec()),
        (FUNCTIONS, entry(0, 3), 70u32.to_le_bytes().to_vec()),
        // Relocation runs out of order or too long.
        (FUNCTIONS, entry(1, 4), 0u32.to_le_bytes().to_vec()),
        (FUNCTIONS, entry(1, 5), u32::MAX.to_le_bytes().to_vec()),
        // Metadata overlapping or past its section.
        (FUNCTIONS, entry(2, 6), 0u32.to_le_bytes().to_vec()),
        (FUNCTIONS, entry(2, 7), 6u32.to_le_bytes().to_vec()),
        // Nonzero padding between functions' code.
        (CODE, 37, vec![0xcc]),
        // Relocation offset outside the function, target not a string, reserved field set.
        (RELOCS, 0, 37u32.to_le_bytes().to_vec()),
        (RELOCS, 8, 5u32.to_le_bytes().to_vec()),
        (RELOCS, 12, 1u32.to_le_bytes().to_vec()),
        // String count, offsets and UTF-8.
        (STRINGS, 0, 6u32.to_le_bytes().to_vec()),
        (STRINGS, 0, u32::MAX.to_le_bytes().to_vec()),
        (STRINGS, 4 + 8, 1u32.to_le_bytes().to_vec()),
        (STRINGS, 4 + 5 * 8, vec![0xff]),
    ];
    for (section, offset, edit) in cases {
        let error = crafted(section, offset, &edit);
        assert!(
            matches!(error, ArtifactError::Malformed(_)),
            "section {section} + {offset}: {error:?}"
        );
    }
}

#[test]
fn crafted_headers_behind_valid_checksums_are_refused() {
    let bytes = sample();
    let table_start = align_up(FIXED_HEADER_LEN + FINGERPRINT.len(), 8).unwrap();
    let edit = |at: usize, value: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + value.len()].copy_from_slice(value);
        reseal(&mut b);
        Artifact::parse(&b, FINGERPRINT).unwrap_err()
    };
    // Section kinds swapped, flags set, offsets moved, a length that overruns.
    assert!(matches!(
        edit(table_start, &2u32.to_le_bytes()),
        ArtifactError::Malformed(_)
    ));
    assert!(matches!(
        edit(table_start + 4, &1u32.to_le_bytes()),
        ArtifactError::Malformed(_)
    ));
    assert!(matches!(
        edit(table_start + 8, &u64::MAX.to_le_bytes()),
        ArtifactError::Malformed(_)
    ));
    let fingerprint_len = FINGERPRINT.len();
    let mut b = bytes.clone();
    b[table_start + SECTION_ENTRY_LEN * 5 + 16..][..8].copy_from_slice(&u64::MAX.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        Artifact::parse(&b, FINGERPRINT),
        Err(ArtifactError::Truncated)
    ));
    // Nonzero padding after the fingerprint.
    assert!(
        !(FIXED_HEADER_LEN + fingerprint_len).is_multiple_of(8),
        "the sample has header padding"
    );
    assert!(matches!(
        edit(FIXED_HEADER_LEN + fingerprint_len, &[1]),
        ArtifactError::Malformed(_)
    ));
    // A section count other than six.
    assert!(matches!(
        edit(12, &7u32.to_le_bytes()),
        ArtifactError::Malformed(_)
    ));
}

#[test]
fn errors_say_why_the_cache_missed() {
    let cases = [
        (ArtifactError::Truncated, "truncated"),
        (ArtifactError::BadMagic, "magic"),
        (ArtifactError::UnsupportedVersion(7), "version 7"),
        (ArtifactError::FingerprintMismatch, "fingerprint"),
        (
            ArtifactError::ChecksumMismatch(Section::Code),
            "checksum mismatch in the code",
        ),
        (ArtifactError::Malformed("x"), "malformed: x"),
        (
            ArtifactError::TrailingBytes(3),
            "3 unexpected trailing bytes",
        ),
    ];
    for (error, text) in cases {
        assert!(error.to_string().contains(text), "{error}");
    }
}

#[test]
fn verified_artifact_keeps_its_bytes() {
    let verified = VerifiedArtifact::new(sample(), FINGERPRINT).unwrap();
    assert_eq!(read_back(&verified.artifact()), sample_functions());
    assert_eq!(verified.into_inner(), sample());
    assert!(matches!(
        VerifiedArtifact::new(vec![1, 2, 3], FINGERPRINT),
        Err(ArtifactError::BadMagic)
    ));
}

#[test]
fn mapped_artifact_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("module.kilnart");
    std::fs::write(&path, sample()).unwrap();
    let mapped = MappedArtifact::open(&path, FINGERPRINT).unwrap();
    assert_eq!(read_back(&mapped.artifact()), sample_functions());
    assert!(matches!(
        MappedArtifact::open(&path, b"other"),
        Err(ArtifactError::FingerprintMismatch)
    ));

    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        MappedArtifact::open(&path, FINGERPRINT),
        Err(ArtifactError::Truncated)
    ));
    let missing = dir.path().join("missing");
    match MappedArtifact::open(&missing, FINGERPRINT) {
        Err(error @ ArtifactError::Io { .. }) => {
            assert!(error.to_string().contains("missing"), "{error}");
            assert!(std::error::Error::source(&error).is_some());
        }
        other => panic!("{other:?}"),
    }
}

/// The golden artifact: written by this test under `KILN_BLESS=1`, otherwise compared
/// byte-for-byte with what the writer produces now and parsed. Changing the layout without
/// bumping [`FORMAT_VERSION`] (and blessing) fails here, so writer and reader cannot drift
/// together unnoticed.
#[test]
fn golden_artifact() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden-v1.kilnart");
    let bytes = sample();
    if std::env::var_os("KILN_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
    }
    let golden = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run with KILN_BLESS=1 to create it",
            path.display()
        )
    });
    let artifact = Artifact::parse(&golden, FINGERPRINT).unwrap();
    assert_eq!(read_back(&artifact), sample_functions());
    assert_eq!(artifact.module_blob(), MODULE_BLOB);
    assert!(
        golden == bytes,
        "the writer no longer produces {}; if the layout changed on purpose, bump FORMAT_VERSION \
         and rerun with KILN_BLESS=1",
        path.display()
    );
}

fn arbitrary_functions() -> impl Strategy<Value = Vec<OwnedFunction>> {
    let names = prop::sample::select(vec!["a", "b", "fib", "kiln.global.x", "", "ünïcödé"]);
    let function = (
        any::<[u8; 32]>(),
        names.clone(),
        0u32..8,
        prop::collection::vec(any::<u8>(), 0..80),
        prop::collection::vec((any::<u32>(), any::<u32>(), names, any::<i64>()), 0..5),
        prop::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(key, name, align_log2, code, relocs, metadata)| {
            let relocs = if code.is_empty() {
                Vec::new()
            } else {
                let len = code.len() as u32;
                relocs
                    .into_iter()
                    .map(|(offset, kind, target, addend)| {
                        (offset % len, kind, target.to_owned(), addend)
                    })
                    .collect()
            };
            OwnedFunction {
                key: Key(key),
                name: name.to_owned(),
                align: 1 << align_log2,
                code,
                relocs,
                metadata,
            }
        });
    prop::collection::vec(function, 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_function_sets_round_trip(
        functions in arbitrary_functions(),
        fingerprint in prop::collection::vec(any::<u8>(), 0..40),
        module in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let bytes = write(&fingerprint, &functions, &module);
        let artifact = Artifact::parse(&bytes, &fingerprint).unwrap();
        prop_assert_eq!(read_back(&artifact), functions.clone());
        prop_assert_eq!(artifact.module_blob(), &module[..]);
        for f in &functions {
            let found = artifact.find(&f.key).unwrap();
            prop_assert_eq!(found.key(), &f.key);
        }
        prop_assert_eq!(write(&fingerprint, &functions, &module), bytes);
    }

    /// Garbage, and garbage behind a valid magic and version, is refused without a panic.
    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(Artifact::parse(&tail, FINGERPRINT).is_err());
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&tail);
        prop_assert!(Artifact::parse(&bytes, FINGERPRINT).is_err());
    }

    /// Random overwrites behind valid checksums: the structural checks alone must refuse them or
    /// yield an artifact whose every accessor works; nothing may panic.
    #[test]
    fn crafted_garbage_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = sample();
        let header_end = Artifact::parse(&bytes, FINGERPRINT).unwrap().layout.sections[0].start;
        for (at, value) in edits {
            // Leave the header alone (reseal needs its section table) and edit the sections.
            let at = header_end + at.index(bytes.len() - header_end);
            bytes[at] = value;
        }
        reseal(&mut bytes);
        if let Ok(artifact) = Artifact::parse(&bytes, FINGERPRINT) {
            let functions = read_back(&artifact);
            prop_assert_eq!(functions.len(), artifact.len());
        }
    }
}
