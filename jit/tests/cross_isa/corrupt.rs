//! Broken patches: correctly relocated bytes re-encoded the way a buggy relinker would have
//! written them, to prove the checker catches each such bug. Encodings as the Arm ARM gives them
//! (`bl`: imm26; `adrp`: immlo in bits 30..29, immhi in bits 23..5; `add`: imm12 in bits 21..10).

fn word(image: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(image[at..at + 4].try_into().expect("four bytes"))
}

fn set_word(image: &mut [u8], at: usize, word: u32) {
    image[at..at + 4].copy_from_slice(&word.to_le_bytes());
}

/// Re-encodes the `bl` at `image[at..]`, which runs at `place`, to branch to `destination`.
pub fn set_bl_destination(image: &mut [u8], at: usize, place: u64, destination: u64) {
    let delta = destination.wrapping_sub(place) as i64;
    assert!(delta % 4 == 0 && (-(1 << 27)..1 << 27).contains(&delta));
    let imm26 = ((delta >> 2) as u32) & 0x03ff_ffff;
    set_word(image, at, (word(image, at) & 0xfc00_0000) | imm26);
}

/// Re-encodes the `adrp` at `image[at..]` to add `pages` 4 KiB pages to the page it runs in.
pub fn set_adrp_pages(image: &mut [u8], at: usize, pages: i64) {
    let imm = (pages as u32) & 0x1f_ffff;
    let cleared = word(image, at) & !((0b11 << 29) | (0x7_ffff << 5));
    set_word(
        image,
        at,
        cleared | ((imm & 0b11) << 29) | ((imm >> 2) << 5),
    );
}

/// Re-encodes the immediate of the `add` at `image[at..]` as the low 12 bits of `address`.
pub fn set_add_low12(image: &mut [u8], at: usize, address: u64) {
    let imm12 = (address & 0xfff) as u32;
    set_word(
        image,
        at,
        (word(image, at) & !(0xfff << 10)) | (imm12 << 10),
    );
}

/// Writes a 32-bit PC-relative field.
pub fn set_rel32(image: &mut [u8], at: usize, value: i64) {
    let value = i32::try_from(value).expect("a 32-bit offset");
    image[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Writes a 64-bit absolute address.
pub fn set_u64(image: &mut [u8], at: usize, value: u64) {
    image[at..at + 8].copy_from_slice(&value.to_le_bytes());
}
