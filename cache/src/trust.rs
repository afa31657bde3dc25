//! Who may have written a cache entry: the checks [`crate::FileStore`] makes before it hands
//! out bytes that will become executable code.
//!
//! - A cache directory is private to its user: created 0700, and refused when another user owns
//!   it or others can write it (they could plant or swap entries).
//! - Each entry file must be owned by the current user and not writable by others.
//! - Each entry carries a tag: BLAKE3 keyed with a secret ([`MacKey`]) over the entry's key and
//!   bytes. The secret is per user, kept 0600 in the cache directory, so an entry copied in
//!   from another user's or machine's cache fails the tag and is recompiled, never run. A cache
//!   prepared elsewhere (CI) is used read-only with a key the user configured, and then the tag
//!   is the whole trust: only whoever holds that key could have written the entries.

use std::fmt;
use std::fs::{self, Metadata};
use std::io::{self, Read, Write};
use std::path::Path;

use crate::Key;

/// Bytes of the tag after each entry's bytes.
pub const TAG_LEN: usize = 32;

/// The name of the per-user secret in a cache directory (not a 64-hex-digit entry name).
pub const KEY_FILE: &str = "key";

/// Separates Kiln's tags from any other use of the same key.
const TAG_CONTEXT: &[u8] = b"kiln 2026 cache entry tag v1";

/// The secret that signs a cache's entries. Its text form is 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq)]
pub struct MacKey([u8; 32]);

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.write_str("MacKey(..)")
    }
}

impl MacKey {
    /// A fresh random key, from the operating system's generator.
    pub fn generate() -> io::Result<MacKey> {
        let mut bytes = [0u8; 32];
        fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(MacKey(bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> MacKey {
        MacKey(bytes)
    }

    /// Parses 64 hex digits, surrounding whitespace allowed.
    pub fn from_hex(text: &str) -> Option<MacKey> {
        Key::from_hex(&text.trim().to_ascii_lowercase()).map(|k| MacKey(k.0))
    }

    pub fn to_hex(&self) -> String {
        Key(self.0).to_string()
    }

    /// Reads a key file: 64 hex digits.
    pub fn read(path: &Path) -> io::Result<MacKey> {
        let text = fs::read_to_string(path)?;
        MacKey::from_hex(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "not a cache key (64 hexadecimal digits)",
            )
        })
    }

    /// Writes a new key file readable only by its owner; fails with `AlreadyExists` if `path`
    /// exists. The file appears complete or not at all: it is written under a temporary name
    /// and then hard-linked into place, so a process racing to create the same key file never
    /// reads a half-written one.
    pub fn write_new(&self, path: &Path) -> io::Result<()> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-key-")
            .tempfile_in(dir.unwrap_or(Path::new(".")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            temp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        writeln!(temp, "{}", self.to_hex())?;
        temp.as_file().sync_all()?;
        // Unlike a rename, a link never replaces an existing file.
        fs::hard_link(temp.path(), path)
    }

    /// The tag of the entry stored under `key`.
    pub fn tag(&self, key: &Key, bytes: &[u8]) -> [u8; TAG_LEN] {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(TAG_CONTEXT);
        hasher.update(&key.0);
        hasher.update(bytes);
        *hasher.finalize().as_bytes()
    }

    /// Whether `tag` is the tag of `bytes` under `key` (compared in constant time).
    pub fn verify(&self, key: &Key, bytes: &[u8], tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; TAG_LEN]>::try_from(tag) else {
            return false;
        };
        blake3::Hash::from(self.tag(key, bytes)) == blake3::Hash::from(tag)
    }
}

/// Why a file or directory is not trusted, if it is not: it must belong to the current user
/// and others must not be able to write it.
pub fn untrusted(metadata: &Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if metadata.uid() != me {
            return Some(format!(
                "owned by user {} (this process runs as {me})",
                metadata.uid()
            ));
        }
        let mode = metadata.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Some(format!("writable by other users (mode {mode:04o})"));
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    None
}

/// Why the key file's permissions let someone else read or change the secret, if they do.
pub fn exposed_key(metadata: &Metadata) -> Option<String> {
    if let Some(why) = untrusted(metadata) {
        return Some(why);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = metadata.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Some(format!("readable by other users (mode {mode:04o})"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_bind_the_key_the_entry_and_the_bytes() {
        let secret = MacKey::from_bytes([7; 32]);
        let other = MacKey::from_bytes([8; 32]);
        let (a, b) = (Key([1; 32]), Key([2; 32]));
        let tag = secret.tag(&a, b"code");
        assert!(secret.verify(&a, b"code", &tag));
        assert!(!secret.verify(&b, b"code", &tag), "moved to another key");
        assert!(!secret.verify(&a, b"cod3", &tag), "changed bytes");
        assert!(!other.verify(&a, b"code", &tag), "another user's secret");
        assert!(!secret.verify(&a, b"code", &tag[1..]), "a short tag");
    }

    #[test]
    fn keys_round_trip_as_hex_and_never_print() {
        let key = MacKey::generate().unwrap();
        assert_eq!(
            MacKey::from_hex(&format!(" {}\n", key.to_hex())),
            Some(key.clone())
        );
        assert_eq!(
            MacKey::from_hex(&key.to_hex().to_uppercase()),
            Some(key.clone())
        );
        assert_eq!(MacKey::from_hex("abc"), None);
        assert_eq!(format!("{key:?}"), "MacKey(..)");
        assert_ne!(MacKey::generate().unwrap(), key);
    }

    #[cfg(unix)]
    #[test]
    fn permissions_that_let_others_in_are_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        MacKey::generate().unwrap().write_new(&path).unwrap();
        assert_eq!(exposed_key(&fs::metadata(&path).unwrap()), None);
        assert!(
            MacKey::generate().unwrap().write_new(&path).is_err(),
            "never overwrites"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let why = exposed_key(&fs::metadata(&path).unwrap()).unwrap();
        assert!(why.contains("readable by other users (mode 0644)"), "{why}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let why = untrusted(&fs::metadata(&path).unwrap()).unwrap();
        assert!(why.contains("writable by other users (mode 0666)"), "{why}");
    }
}
