//! The module artifact file format: N compiled functions with their code, relocations, names and
//! opaque metadata, behind checksums that are verified before any byte is handed out.
//!
//! # Layout (format version 1)
//! Every integer is little-endian. Offsets in the section table are from the start of the file;
//! offsets inside a section are from the start of that section (or, for strings, of its data).
//!
//! ```text
//! header
//!   0   magic                 8 bytes  b"KILNART\0"
//!   8   format version        u32      1
//!   12  section count         u32      6
//!   16  fingerprint length    u32      F
//!   20  fingerprint           F bytes  opaque, from the caller (the engine fingerprint)
//!       zero padding to a multiple of 8
//!       section table         6 × 56 bytes, in this order: functions, code, relocations,
//!                                          strings, metadata, module
//!         kind u32 (1..=6), flags u32 (0), offset u64, length u64, blake3 of the section [32]
//!       header checksum       32 bytes, blake3 of every header byte before it
//! sections, each starting at the next multiple of 16 after the previous one, zero padding between
//!   functions   count u32, reserved u32 (0), then count × 64-byte entries:
//!                 key [32], name u32 (string id), align u32 (power of two, 1..=4096),
//!                 code offset u32, code length u32, first reloc u32, reloc count u32,
//!                 metadata offset u32, metadata length u32
//!   code        machine code; function i starts at the first multiple of max(16, align) after
//!               the end of function i-1 (the first at 0), zero padding between functions
//!   relocations 24-byte records, each function's in one run, runs in function order:
//!                 offset u32 (in the function's code), kind u32 (the caller's code),
//!                 target u32 (string id), reserved u32 (0), addend i64
//!   strings     count u32, count × (offset u32, length u32) into the data, then the UTF-8 data
//!   metadata    each function's opaque bytes, back to back in function order
//!   module      one opaque blob for the whole module (e.g. the globals layout)
//! ```
//!
//! The file ends exactly at the end of the module section. Every byte is either covered by a
//! checksum or is padding that must be zero, and every offset must equal the one the writer would
//! have chosen, so a file has exactly one valid encoding: a single flipped bit anywhere is always
//! reported, never parsed into something else.
//!
//! Checks run in an order that makes errors useful as "why the cache missed": magic, version,
//! bounds (truncation), header checksum, fingerprint, section placement, section checksums, and
//! only then the tables, so a table is never read from unverified bytes.
//!
//! This module knows nothing about what the bytes mean: relocation kinds are integer codes the
//! caller maps to and from Cranelift's, and metadata is opaque.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::Key;

/// The first eight bytes of every artifact.
pub const MAGIC: [u8; 8] = *b"KILNART\0";

/// The layout version this code writes and the only one it reads. Bump it on any change to the
/// layout above; old files are then refused with [`ArtifactError::UnsupportedVersion`] and
/// recompiled, never misread.
pub const FORMAT_VERSION: u32 = 1;

/// The largest function alignment an artifact may ask for; it bounds the padding a corrupt table
/// could claim and is far above what any code generator uses.
pub const MAX_ALIGN: u32 = 4096;

/// Every function's code starts at a multiple of this (or of its own alignment, if larger).
pub const CODE_ALIGN: u32 = 16;

const FIXED_HEADER_LEN: usize = 20;
const SECTION_COUNT: usize = 6;
const SECTION_ENTRY_LEN: usize = 56;
const CHECKSUM_LEN: usize = 32;
const SECTION_ALIGN: usize = 16;
const FUNCTION_TABLE_HEADER_LEN: usize = 8;
const FUNCTION_ENTRY_LEN: usize = 64;
const RELOC_LEN: usize = 24;
const STRING_ENTRY_LEN: usize = 8;

/// One part of an artifact, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Section {
    Header,
    Functions,
    Code,
    Relocations,
    Strings,
    Metadata,
    Module,
}

impl Section {
    /// The sections in file order; a section's kind code is its position here plus one.
    const ALL: [Section; SECTION_COUNT] = [
        Section::Functions,
        Section::Code,
        Section::Relocations,
        Section::Strings,
        Section::Metadata,
        Section::Module,
    ];
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Header => "header",
            Section::Functions => "function table",
            Section::Code => "code",
            Section::Relocations => "relocations",
            Section::Strings => "string table",
            Section::Metadata => "metadata",
            Section::Module => "module data",
        })
    }
}

/// Why bytes are not a usable artifact. Each variant is a reason a cache lookup missed, worded for
/// a verbose log; none of them is fatal to the caller, which recompiles.
#[derive(Debug)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The bytes end before the header or a section does.
    Truncated,
    /// The bytes do not start with [`MAGIC`]: not an artifact at all.
    BadMagic,
    /// An artifact of another layout version (older or newer than [`FORMAT_VERSION`]).
    UnsupportedVersion(u32),
    /// A well-formed artifact for another engine fingerprint (another Cranelift version, CPU,
    /// setting or Kiln ABI).
    FingerprintMismatch,
    /// The stored checksum of a section (or of the header) does not match its bytes.
    ChecksumMismatch(Section),
    /// Checksums match but a table breaks the layout rules: only a writer bug or a deliberately
    /// crafted file gets here.
    Malformed(&'static str),
    /// Bytes follow the last section.
    TrailingBytes(u64),
    /// The artifact file could not be opened or mapped.
    Io { path: PathBuf, source: io::Error },
}

impl fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArtifactError::Truncated => f.write_str("artifact is truncated"),
            ArtifactError::BadMagic => f.write_str("not a Kiln artifact (bad magic number)"),
            ArtifactError::UnsupportedVersion(v) => write!(
                f,
                "unsupported artifact format version {v} (this build reads version {FORMAT_VERSION})"
            ),
            ArtifactError::FingerprintMismatch => {
                f.write_str("artifact was built by a different engine (fingerprint mismatch)")
            }
            ArtifactError::ChecksumMismatch(section) => {
                write!(f, "artifact is corrupt: checksum mismatch in the {section}")
            }
            ArtifactError::Malformed(what) => write!(f, "artifact is malformed: {what}"),
            ArtifactError::TrailingBytes(n) => {
                write!(f, "artifact has {n} unexpected trailing bytes")
            }
            ArtifactError::Io { path, source } => {
                write!(f, "cannot read artifact {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for ArtifactError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ArtifactError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why [`ArtifactWriter`] refused its input: the caller passed something the format cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// An alignment that is zero, not a power of two, or above [`MAX_ALIGN`].
    BadAlignment { function: String, align: u32 },
    /// A relocation whose offset is not inside its function's code.
    RelocOutOfRange {
        function: String,
        offset: u32,
        code_len: usize,
    },
    /// A section or count would not fit the format's 32-bit fields.
    TooLarge(Section),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::BadAlignment { function, align } => write!(
                f,
                "function `{function}` asks for alignment {align}, \
                 which is not a power of two between 1 and {MAX_ALIGN}"
            ),
            WriteError::RelocOutOfRange {
                function,
                offset,
                code_len,
            } => write!(
                f,
                "function `{function}` has a relocation at offset {offset}, \
                 outside its {code_len} bytes of code"
            ),
            WriteError::TooLarge(section) => {
                write!(f, "artifact {section} is too large for the format")
            }
        }
    }
}

impl std::error::Error for WriteError {}

/// One relocation as the writer takes it: the target by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelocInput<'s> {
    /// Where in the function's code the relocation applies.
    pub offset: u32,
    /// The relocation kind, as a code the caller defines (e.g. one per Cranelift `Reloc`).
    pub kind: u32,
    /// The symbol the relocation refers to.
    pub target: &'s str,
    pub addend: i64,
}

/// One relocation as the reader gives it: the target as a string id, resolved with
/// [`Artifact::string`]. Ids are shared by every relocation naming the same symbol, so a caller
/// can resolve each symbol once per artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reloc {
    pub offset: u32,
    pub kind: u32,
    pub target: u32,
    pub addend: i64,
}

/// One compiled function as the writer takes it.
#[derive(Clone, Copy, Debug)]
pub struct FunctionInput<'s> {
    /// The caller's key for this function (e.g. its content hash); need not be unique.
    pub key: Key,
    pub name: &'s str,
    /// The alignment the code needs, a power of two up to [`MAX_ALIGN`].
    pub align: u32,
    pub code: &'s [u8],
    pub relocs: &'s [RelocInput<'s>],
    /// Opaque bytes for the caller (error-site tables, signature...).
    pub metadata: &'s [u8],
}

/// Builds the bytes of one artifact. The output is a pure function of the fingerprint, the
/// functions in the order they were added and the module blob: the same input gives the same bytes.
#[derive(Debug, Default)]
pub struct ArtifactWriter {
    fingerprint: Vec<u8>,
    function_count: usize,
    functions: Vec<u8>,
    code: Vec<u8>,
    relocs: Vec<u8>,
    metadata: Vec<u8>,
    module: Vec<u8>,
    strings: Vec<String>,
    string_ids: std::collections::HashMap<String, u32>,
}

impl ArtifactWriter {
    /// A writer for an artifact bound to `fingerprint` (the engine fingerprint, opaque here).
    pub fn new(fingerprint: &[u8]) -> ArtifactWriter {
        ArtifactWriter {
            fingerprint: fingerprint.to_vec(),
            ..ArtifactWriter::default()
        }
    }

    /// Sets the module-level opaque blob (empty unless set).
    pub fn set_module_blob(&mut self, blob: &[u8]) {
        self.module = blob.to_vec();
    }

    /// Appends a function and returns its index. On error the writer is unchanged.
    pub fn add_function(&mut self, function: &FunctionInput<'_>) -> Result<usize, WriteError> {
        let align = function.align;
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(WriteError::BadAlignment {
                function: function.name.to_owned(),
                align,
            });
        }
        if let Some(reloc) = function
            .relocs
            .iter()
            .find(|r| r.offset as usize >= function.code.len())
        {
            return Err(WriteError::RelocOutOfRange {
                function: function.name.to_owned(),
                offset: reloc.offset,
                code_len: function.code.len(),
            });
        }
        // Everything that can fail is checked before anything is appended.
        let code_offset = align_up(self.code.len(), align.max(CODE_ALIGN) as usize)
            .ok_or(WriteError::TooLarge(Section::Code))?;
        let code_end = code_offset
            .checked_add(function.code.len())
            .ok_or(WriteError::TooLarge(Section::Code))?;
        let code_offset = to_u32(code_offset, Section::Code)?;
        let code_len = to_u32(function.code.len(), Section::Code)?;
        to_u32(code_end, Section::Code)?;
        let reloc_start = to_u32(self.relocs.len() / RELOC_LEN, Section::Relocations)?;
        let reloc_count = to_u32(function.relocs.len(), Section::Relocations)?;
        reloc_start
            .checked_add(reloc_count)
            .ok_or(WriteError::TooLarge(Section::Relocations))?;
        let meta_offset = to_u32(self.metadata.len(), Section::Metadata)?;
        let meta_len = to_u32(function.metadata.len(), Section::Metadata)?;
        meta_offset
            .checked_add(meta_len)
            .ok_or(WriteError::TooLarge(Section::Metadata))?;
        to_u32(self.function_count + 1, Section::Functions)?;

        let name = self.intern(function.name)?;
        let mut targets = Vec::with_capacity(function.relocs.len());
        for reloc in function.relocs {
            targets.push(self.intern(reloc.target)?);
        }

        let entry = &mut self.functions;
        entry.extend_from_slice(&function.key.0);
        for field in [
            name,
            align,
            code_offset,
            code_len,
            reloc_start,
            reloc_count,
            meta_offset,
            meta_len,
        ] {
            entry.extend_from_slice(&field.to_le_bytes());
        }
        self.code.resize(code_offset as usize, 0);
        self.code.extend_from_slice(function.code);
        for (reloc, target) in function.relocs.iter().zip(targets) {
            self.relocs.extend_from_slice(&reloc.offset.to_le_bytes());
            self.relocs.extend_from_slice(&reloc.kind.to_le_bytes());
            self.relocs.extend_from_slice(&target.to_le_bytes());
            self.relocs.extend_from_slice(&0u32.to_le_bytes());
            self.relocs.extend_from_slice(&reloc.addend.to_le_bytes());
        }
        self.metadata.extend_from_slice(function.metadata);
        self.function_count += 1;
        Ok(self.function_count - 1)
    }

    /// The id of `s` in the string table, adding it on first use. Ids follow first use, so they
    /// are deterministic.
    fn intern(&mut self, s: &str) -> Result<u32, WriteError> {
        if let Some(&id) = self.string_ids.get(s) {
            return Ok(id);
        }
        let id = to_u32(self.strings.len(), Section::Strings)?;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        Ok(id)
    }

    /// The finished artifact.
    pub fn finish(self) -> Result<Vec<u8>, WriteError> {
        let mut functions = Vec::with_capacity(FUNCTION_TABLE_HEADER_LEN + self.functions.len());
        functions
            .extend_from_slice(&to_u32(self.function_count, Section::Functions)?.to_le_bytes());
        functions.extend_from_slice(&0u32.to_le_bytes());
        functions.extend_from_slice(&self.functions);

        let mut strings = Vec::new();
        strings.extend_from_slice(&to_u32(self.strings.len(), Section::Strings)?.to_le_bytes());
        let mut offset = 0usize;
        for s in &self.strings {
            strings.extend_from_slice(&to_u32(offset, Section::Strings)?.to_le_bytes());
            strings.extend_from_slice(&to_u32(s.len(), Section::Strings)?.to_le_bytes());
            offset = offset
                .checked_add(s.len())
                .ok_or(WriteError::TooLarge(Section::Strings))?;
        }
        to_u32(offset, Section::Strings)?;
        for s in &self.strings {
            strings.extend_from_slice(s.as_bytes());
        }

        let sections: [&[u8]; SECTION_COUNT] = [
            &functions,
            &self.code,
            &self.relocs,
            &strings,
            &self.metadata,
            &self.module,
        ];

        let fingerprint_len = to_u32(self.fingerprint.len(), Section::Header)?;
        let table_start = align_up(FIXED_HEADER_LEN + self.fingerprint.len(), 8)
            .ok_or(WriteError::TooLarge(Section::Header))?;
        let header_len = table_start + SECTION_COUNT * SECTION_ENTRY_LEN + CHECKSUM_LEN;

        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(SECTION_COUNT as u32).to_le_bytes());
        out.extend_from_slice(&fingerprint_len.to_le_bytes());
        out.extend_from_slice(&self.fingerprint);
        out.resize(table_start, 0);
        let mut next = header_len;
        for (index, section) in sections.iter().enumerate() {
            let offset =
                align_up(next, SECTION_ALIGN).ok_or(WriteError::TooLarge(Section::ALL[index]))?;
            out.extend_from_slice(&(index as u32 + 1).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&(section.len() as u64).to_le_bytes());
            out.extend_from_slice(blake3::hash(section).as_bytes());
            next = offset
                .checked_add(section.len())
                .ok_or(WriteError::TooLarge(Section::ALL[index]))?;
        }
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        debug_assert_eq!(out.len(), header_len);
        out.reserve(next - out.len());
        for section in sections {
            let start = align_up(out.len(), SECTION_ALIGN).unwrap_or(out.len());
            out.resize(start, 0);
            out.extend_from_slice(section);
        }
        Ok(out)
    }
}

fn to_u32(n: usize, section: Section) -> Result<u32, WriteError> {
    u32::try_from(n).map_err(|_| WriteError::TooLarge(section))
}

fn align_up(n: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// Where each part of a verified artifact lies. Plain offsets, so a verified artifact can keep it
/// next to the bytes it owns ([`VerifiedArtifact`]) without borrowing them.
#[derive(Clone, Copy, Debug)]
struct Layout {
    fingerprint: Span,
    /// Absolute spans of the sections, in [`Section::ALL`] order.
    sections: [Span; SECTION_COUNT],
    function_count: usize,
    string_count: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn of(self, bytes: &[u8]) -> Option<&[u8]> {
        bytes.get(self.start..self.end)
    }
}

/// Indexes of the sections in [`Layout::sections`].
const FUNCTIONS: usize = 0;
const CODE: usize = 1;
const RELOCS: usize = 2;
const STRINGS: usize = 3;
const METADATA: usize = 4;
const MODULE: usize = 5;

/// A bounds-checked little-endian read; `None` past the end.
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// A verified artifact: zero-copy views into bytes whose checksums and tables have all been
/// checked. Cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Artifact<'a> {
    bytes: &'a [u8],
    layout: Layout,
}

impl<'a> Artifact<'a> {
    /// Verifies `bytes` as an artifact for `expected_fingerprint`: magic, version, every bound,
    /// every checksum and every table entry. Never panics; any problem is an [`ArtifactError`].
    pub fn parse(
        bytes: &'a [u8],
        expected_fingerprint: &[u8],
    ) -> Result<Artifact<'a>, ArtifactError> {
        use ArtifactError::{Malformed, Truncated};

        if bytes.len() < MAGIC.len() {
            return Err(if MAGIC.starts_with(bytes) {
                Truncated
            } else {
                ArtifactError::BadMagic
            });
        }
        if bytes[..MAGIC.len()] != MAGIC {
            return Err(ArtifactError::BadMagic);
        }
        let version = read_u32(bytes, 8).ok_or(Truncated)?;
        if version != FORMAT_VERSION {
            return Err(ArtifactError::UnsupportedVersion(version));
        }
        let section_count = read_u32(bytes, 12).ok_or(Truncated)?;
        let fingerprint_len = read_u32(bytes, 16).ok_or(Truncated)? as usize;
        if section_count as usize != SECTION_COUNT {
            return Err(Malformed("wrong number of sections"));
        }
        let fingerprint_end = FIXED_HEADER_LEN
            .checked_add(fingerprint_len)
            .ok_or(Truncated)?;
        let table_start = align_up(fingerprint_end, 8).ok_or(Truncated)?;
        let checksum_start = table_start
            .checked_add(SECTION_COUNT * SECTION_ENTRY_LEN)
            .ok_or(Truncated)?;
        let header_end = checksum_start.checked_add(CHECKSUM_LEN).ok_or(Truncated)?;
        let header = bytes.get(..header_end).ok_or(Truncated)?;
        if blake3::hash(&header[..checksum_start]).as_bytes()[..] != header[checksum_start..] {
            return Err(ArtifactError::ChecksumMismatch(Section::Header));
        }
        if header[fingerprint_end..table_start].iter().any(|&b| b != 0) {
            return Err(Malformed("nonzero padding in the header"));
        }
        let fingerprint = Span {
            start: FIXED_HEADER_LEN,
            end: fingerprint_end,
        };
        if &header[fingerprint.start..fingerprint.end] != expected_fingerprint {
            return Err(ArtifactError::FingerprintMismatch);
        }

        // Placement: each section exactly where the writer would have put it. Lengths are checked
        // against the file before any checksum is computed, so truncation reads as truncation.
        let mut sections = [Span { start: 0, end: 0 }; SECTION_COUNT];
        let mut previous_end = header_end;
        for (index, span) in sections.iter_mut().enumerate() {
            let entry = table_start + index * SECTION_ENTRY_LEN;
            let kind = read_u32(header, entry).ok_or(Truncated)?;
            let flags = read_u32(header, entry + 4).ok_or(Truncated)?;
            let offset = read_u64(header, entry + 8).ok_or(Truncated)?;
            let len = read_u64(header, entry + 16).ok_or(Truncated)?;
            if kind as usize != index + 1 || flags != 0 {
                return Err(Malformed("unexpected section kind or flags"));
            }
            let start = usize::try_from(offset).map_err(|_| Truncated)?;
            if Some(start) != align_up(previous_end, SECTION_ALIGN) {
                return Err(Malformed("section not where the layout puts it"));
            }
            let len = usize::try_from(len).map_err(|_| Truncated)?;
            let end = start.checked_add(len).ok_or(Truncated)?;
            if end > bytes.len() {
                return Err(Truncated);
            }
            if bytes[previous_end..start].iter().any(|&b| b != 0) {
                return Err(Malformed("nonzero padding between sections"));
            }
            *span = Span { start, end };
            previous_end = end;
        }
        if previous_end != bytes.len() {
            return Err(ArtifactError::TrailingBytes(
                (bytes.len() - previous_end) as u64,
            ));
        }
        for (index, span) in sections.iter().enumerate() {
            let entry = table_start + index * SECTION_ENTRY_LEN;
            let stored = &header[entry + 24..entry + 24 + CHECKSUM_LEN];
            if blake3::hash(&bytes[span.start..span.end]).as_bytes()[..] != *stored {
                return Err(ArtifactError::ChecksumMismatch(Section::ALL[index]));
            }
        }

        // Tables, now known to be what the writer wrote (or a crafted file with valid checksums:
        // every field is still checked).
        let section = |i: usize| &bytes[sections[i].start..sections[i].end];
        let string_count = check_strings(section(STRINGS))?;
        let function_table = section(FUNCTIONS);
        let function_count =
            read_u32(function_table, 0).ok_or(Malformed("short function table"))?;
        if read_u32(function_table, 4) != Some(0) {
            return Err(Malformed(
                "reserved field in the function table is not zero",
            ));
        }
        let function_count = function_count as usize;
        if Some(function_table.len())
            != function_count
                .checked_mul(FUNCTION_ENTRY_LEN)
                .and_then(|n| n.checked_add(FUNCTION_TABLE_HEADER_LEN))
        {
            return Err(Malformed("function table length does not match its count"));
        }
        let code = section(CODE);
        let relocs = section(RELOCS);
        if !relocs.len().is_multiple_of(RELOC_LEN) {
            return Err(Malformed("relocation section length"));
        }
        let reloc_total = relocs.len() / RELOC_LEN;
        let metadata_len = section(METADATA).len();
        let (mut code_end, mut reloc_end, mut meta_end) = (0usize, 0usize, 0usize);
        for index in 0..function_count {
            let raw =
                RawFunction::read(function_table, index).ok_or(Malformed("function table"))?;
            if raw.name as usize >= string_count {
                return Err(Malformed("function name is not in the string table"));
            }
            if !raw.align.is_power_of_two() || raw.align > MAX_ALIGN {
                return Err(Malformed("function alignment"));
            }
            let start = raw.code_offset as usize;
            if Some(start) != align_up(code_end, raw.align.max(CODE_ALIGN) as usize) {
                return Err(Malformed("function code not where the layout puts it"));
            }
            let end = start
                .checked_add(raw.code_len as usize)
                .filter(|&end| end <= code.len())
                .ok_or(Malformed("function code outside the code section"))?;
            if code[code_end..start].iter().any(|&b| b != 0) {
                return Err(Malformed("nonzero padding between functions"));
            }
            code_end = end;

            if raw.reloc_start as usize != reloc_end {
                return Err(Malformed("relocation runs out of order"));
            }
            let run_end = reloc_end
                .checked_add(raw.reloc_count as usize)
                .filter(|&e| e <= reloc_total)
                .ok_or(Malformed("relocations outside the relocation section"))?;
            let (run, _) =
                relocs[reloc_end * RELOC_LEN..run_end * RELOC_LEN].as_chunks::<RELOC_LEN>();
            for record in run {
                let reloc = decode_reloc(record);
                if reloc.offset >= raw.code_len {
                    return Err(Malformed("relocation outside its function's code"));
                }
                if reloc.target as usize >= string_count {
                    return Err(Malformed("relocation target is not in the string table"));
                }
                if read_u32(record, 12) != Some(0) {
                    return Err(Malformed("reserved field in a relocation is not zero"));
                }
            }
            reloc_end = run_end;

            if raw.meta_offset as usize != meta_end {
                return Err(Malformed("metadata out of order"));
            }
            meta_end = meta_end
                .checked_add(raw.meta_len as usize)
                .filter(|&e| e <= metadata_len)
                .ok_or(Malformed("metadata outside the metadata section"))?;
        }
        if code_end != code.len() || reloc_end != reloc_total || meta_end != metadata_len {
            return Err(Malformed("bytes in a section that no function owns"));
        }

        Ok(Artifact {
            bytes,
            layout: Layout {
                fingerprint,
                sections,
                function_count,
                string_count,
            },
        })
    }

    /// The whole artifact's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The engine fingerprint the artifact was written for (equal to the expected one).
    pub fn fingerprint(&self) -> &'a [u8] {
        self.layout.fingerprint.of(self.bytes).unwrap_or_default()
    }

    /// The number of functions.
    pub fn len(&self) -> usize {
        self.layout.function_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Function `index`, in the order the writer added them; `None` past the end.
    pub fn function(&self, index: usize) -> Option<Function<'a>> {
        if index >= self.layout.function_count {
            return None;
        }
        let table = self.section(FUNCTIONS);
        let raw = RawFunction::read(table, index)?;
        let code_start = raw.code_offset as usize;
        let reloc_start = (raw.reloc_start as usize).checked_mul(RELOC_LEN)?;
        let meta_start = raw.meta_offset as usize;
        Some(Function {
            index,
            key: raw.key,
            name: self.string(raw.name)?,
            align: raw.align,
            code: self
                .section(CODE)
                .get(code_start..code_start.checked_add(raw.code_len as usize)?)?,
            relocs: Relocs {
                bytes: self.section(RELOCS).get(
                    reloc_start
                        ..reloc_start
                            .checked_add((raw.reloc_count as usize).checked_mul(RELOC_LEN)?)?,
                )?,
            },
            metadata: self
                .section(METADATA)
                .get(meta_start..meta_start.checked_add(raw.meta_len as usize)?)?,
        })
    }

    /// Every function, in order.
    pub fn functions(&self) -> impl Iterator<Item = Function<'a>> + use<'a> {
        let artifact = *self;
        (0..self.len()).filter_map(move |i| artifact.function(i))
    }

    /// The first function whose key is `key`. A linear scan over the table's keys; a caller
    /// looking up many keys builds its own index once.
    pub fn find(&self, key: &Key) -> Option<Function<'a>> {
        let table = self.section(FUNCTIONS).get(FUNCTION_TABLE_HEADER_LEN..)?;
        let index = table
            .chunks_exact(FUNCTION_ENTRY_LEN)
            .position(|entry| entry.get(..32) == Some(&key.0[..]))?;
        self.function(index)
    }

    /// The number of strings (function names and relocation targets).
    pub fn string_count(&self) -> usize {
        self.layout.string_count
    }

    /// String `id`, as named by [`Reloc::target`]; `None` for an id not in this artifact.
    pub fn string(&self, id: u32) -> Option<&'a str> {
        let section = self.section(STRINGS);
        let count = read_u32(section, 0)? as usize;
        let id = id as usize;
        if id >= count {
            return None;
        }
        let entry = 4 + id * STRING_ENTRY_LEN;
        let offset = read_u32(section, entry)? as usize;
        let len = read_u32(section, entry + 4)? as usize;
        let data_start = 4 + count * STRING_ENTRY_LEN;
        let start = data_start.checked_add(offset)?;
        // Validated in `parse`; checking again here costs little and keeps this free of `unsafe`.
        std::str::from_utf8(section.get(start..start.checked_add(len)?)?).ok()
    }

    /// The module-level opaque blob.
    pub fn module_blob(&self) -> &'a [u8] {
        self.section(MODULE)
    }

    fn section(&self, index: usize) -> &'a [u8] {
        self.layout.sections[index]
            .of(self.bytes)
            .unwrap_or_default()
    }
}

/// Checks the string table and returns the number of strings.
fn check_strings(section: &[u8]) -> Result<usize, ArtifactError> {
    use ArtifactError::Malformed;
    let count = read_u32(section, 0).ok_or(Malformed("short string table"))? as usize;
    let data_start = count
        .checked_mul(STRING_ENTRY_LEN)
        .and_then(|n| n.checked_add(4))
        .filter(|&n| n <= section.len())
        .ok_or(Malformed("string table longer than its section"))?;
    let data = &section[data_start..];
    let mut expected = 0usize;
    for id in 0..count {
        let entry = 4 + id * STRING_ENTRY_LEN;
        let offset = read_u32(section, entry).ok_or(Malformed("string table"))? as usize;
        let len = read_u32(section, entry + 4).ok_or(Malformed("string table"))? as usize;
        if offset != expected {
            return Err(Malformed("strings out of order"));
        }
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= data.len())
            .ok_or(Malformed("string outside the string table"))?;
        if std::str::from_utf8(&data[offset..end]).is_err() {
            return Err(Malformed("string is not UTF-8"));
        }
        expected = end;
    }
    if expected != data.len() {
        return Err(Malformed("bytes in the string table that no string owns"));
    }
    Ok(count)
}

/// One function-table entry, decoded.
struct RawFunction {
    key: Key,
    name: u32,
    align: u32,
    code_offset: u32,
    code_len: u32,
    reloc_start: u32,
    reloc_count: u32,
    meta_offset: u32,
    meta_len: u32,
}

impl RawFunction {
    fn read(table: &[u8], index: usize) -> Option<RawFunction> {
        let at = index
            .checked_mul(FUNCTION_ENTRY_LEN)?
            .checked_add(FUNCTION_TABLE_HEADER_LEN)?;
        let entry = table.get(at..at.checked_add(FUNCTION_ENTRY_LEN)?)?;
        let field = |i: usize| read_u32(entry, 32 + 4 * i);
        Some(RawFunction {
            key: Key(entry.get(..32)?.try_into().ok()?),
            name: field(0)?,
            align: field(1)?,
            code_offset: field(2)?,
            code_len: field(3)?,
            reloc_start: field(4)?,
            reloc_count: field(5)?,
            meta_offset: field(6)?,
            meta_len: field(7)?,
        })
    }
}

/// Decodes one 24-byte relocation record.
fn decode_reloc(record: &[u8; RELOC_LEN]) -> Reloc {
    let u32_at =
        |i: usize| u32::from_le_bytes([record[i], record[i + 1], record[i + 2], record[i + 3]]);
    let mut addend = [0u8; 8];
    addend.copy_from_slice(&record[16..24]);
    Reloc {
        offset: u32_at(0),
        kind: u32_at(4),
        target: u32_at(8),
        addend: i64::from_le_bytes(addend),
    }
}

/// A zero-copy view of one function in a verified artifact.
#[derive(Clone, Copy, Debug)]
pub struct Function<'a> {
    index: usize,
    key: Key,
    name: &'a str,
    align: u32,
    code: &'a [u8],
    relocs: Relocs<'a>,
    metadata: &'a [u8],
}

impl<'a> Function<'a> {
    /// The function's position in the artifact.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The alignment the code needs when copied into executable memory.
    pub fn align(&self) -> u32 {
        self.align
    }

    /// The machine code, unrelocated: patch a copy, never these bytes.
    pub fn code(&self) -> &'a [u8] {
        self.code
    }

    /// The function's relocations; each offset is inside [`Function::code`] and each target is a
    /// valid [`Artifact::string`] id. Whether the patch width fits is the caller's to check, since
    /// only it knows what the kind codes mean.
    pub fn relocs(&self) -> Relocs<'a> {
        self.relocs
    }

    /// The caller's opaque per-function bytes.
    pub fn metadata(&self) -> &'a [u8] {
        self.metadata
    }
}

/// The relocations of one function, decoded on the fly from the mapped bytes.
#[derive(Clone, Copy, Debug)]
pub struct Relocs<'a> {
    /// A whole number of records.
    bytes: &'a [u8],
}

impl Relocs<'_> {
    /// Relocation `index` of this function.
    pub fn get(&self, index: usize) -> Option<Reloc> {
        let start = index.checked_mul(RELOC_LEN)?;
        let record = self.bytes.get(start..start.checked_add(RELOC_LEN)?)?;
        Some(decode_reloc(record.try_into().ok()?))
    }
}

impl Iterator for Relocs<'_> {
    type Item = Reloc;

    fn next(&mut self) -> Option<Reloc> {
        let (record, rest) = self.bytes.split_first_chunk::<RELOC_LEN>()?;
        self.bytes = rest;
        Some(decode_reloc(record))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.bytes.len() / RELOC_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Relocs<'_> {}

/// Verified artifact bytes kept together with where their parts lie, so views can be handed out
/// again without re-verifying. `B` is anything that derefs to the bytes: a `Vec<u8>`, a store
/// [`Entry`](crate::Entry), or a memory map ([`MappedArtifact`]).
#[derive(Debug)]
pub struct VerifiedArtifact<B> {
    bytes: B,
    layout: Layout,
}

impl<B: Deref<Target = [u8]>> VerifiedArtifact<B> {
    /// Verifies `bytes` (see [`Artifact::parse`]) and keeps them.
    pub fn new(
        bytes: B,
        expected_fingerprint: &[u8],
    ) -> Result<VerifiedArtifact<B>, ArtifactError> {
        let layout = Artifact::parse(&bytes, expected_fingerprint)?.layout;
        Ok(VerifiedArtifact { bytes, layout })
    }

    /// Views into the verified bytes. Accessors stay bounds-checked, so even a `B` whose `deref`
    /// changed its answer could not make them panic or read out of bounds.
    pub fn artifact(&self) -> Artifact<'_> {
        Artifact {
            bytes: &self.bytes,
            layout: self.layout,
        }
    }

    pub fn into_inner(self) -> B {
        self.bytes
    }
}

/// An artifact file mapped read-only and verified.
pub type MappedArtifact = VerifiedArtifact<Mmap>;

impl VerifiedArtifact<Mmap> {
    /// Maps the file at `path` read-only and verifies it for `expected_fingerprint`.
    pub fn open(path: &Path, expected_fingerprint: &[u8]) -> Result<MappedArtifact, ArtifactError> {
        let io_error = |source| ArtifactError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        // An empty file cannot be an artifact; refusing it here also avoids asking for a
        // zero-length map, which some platforms reject.
        if file.metadata().map_err(io_error)?.len() == 0 {
            return Err(ArtifactError::Truncated);
        }
        let map = map_read_only(&file).map_err(io_error)?;
        VerifiedArtifact::new(map, expected_fingerprint)
    }
}

/// Maps `file` read-only.
///
/// Soundness rests on how Kiln writes cache files: a file is only ever written under a temporary
/// name and renamed into place once complete ([`FileStore`](crate::FileStore)), so no Kiln
/// process modifies or truncates a file anyone may have mapped. Replacing or deleting the name
/// (a newer write, garbage collection) leaves existing maps of the old file intact. A process
/// outside Kiln writing into the cache directory could still change mapped bytes; that is the
/// same assumption every mmap-based cache (wasmtime's included) makes, and the checksums then
/// catch the change on the next open.
pub(crate) fn map_read_only(file: &File) -> io::Result<Mmap> {
    // SAFETY: the map is read-only and the file is never modified in place while it may be
    // mapped (see above), so the mapped bytes stay valid and unchanged for the map's lifetime.
    unsafe { Mmap::map(file) }
}

#[cfg(test)]
mod tests;
