//! Index records: the framed, checksummed unit that journals and segments
//! both store, and the entry it carries.
//!
//! # Frame (record format version 1)
//!
//! ```text
//! offset  size  field
//! 0       4     marker "RSR" + record format version (0x01)
//! 4       4     body length L, u32 LE (at most MAX_BODY_LEN)
//! 8       8     checksum: XXH64(body, seed 0), u64 LE
//! 16      L     body
//! ```
//!
//! # Body
//!
//! ```text
//! size  field
//! 1     record type: 1 = put entry, 2 = remove entry
//! 32    key hash (see crate::key)
//! 4     key length k, u32 LE
//! k     canonical key encoding
//! — put only —
//! 2     part count p, u16 LE, 1..=MAX_PARTS
//! p ×   part: 1 byte name length m (1..=MAX_PART_NAME_LEN), m bytes UTF-8 name,
//!             32-byte object id, u64 LE payload size
//! ```
//!
//! Parts are sorted by name, and names are unique. The body must end exactly
//! after the last part.
//!
//! # Entry id
//!
//! The id of an entry is the object id a [`Kind::Entry`] object would have
//! whose links are the part ids (in name order) and whose payload is the
//! body from the key length to the end: `object::compute_id(Kind::Entry,
//! part_ids, body[33..])`. Equal entries (same key, same parts) have equal
//! ids; putting an entry whose id is already current under its key is a
//! no-op.
//!
//! # Invariants
//! - Nothing in a record is trusted before its checksum matched; decoders
//!   bounds-check every field and return an error string, never panic.

use crate::id::{ID_LEN, ObjectId};
use crate::key::{KEY_HASH_LEN, KeyHash, MAX_KEY_LEN};
use crate::object::{self, Kind};

/// The four bytes every record frame starts with; the last is the version.
pub const RECORD_MARKER: [u8; 4] = *b"RSR\x01";
/// Bytes before the body: marker, length, checksum.
pub const FRAME_HEADER_LEN: usize = 16;
/// Most parts one entry may have.
pub const MAX_PARTS: usize = 256;
/// Longest part name, in bytes.
pub const MAX_PART_NAME_LEN: usize = 64;
/// Largest record body.
pub const MAX_BODY_LEN: usize =
    1 + KEY_HASH_LEN + 4 + MAX_KEY_LEN + 2 + MAX_PARTS * (1 + MAX_PART_NAME_LEN + ID_LEN + 8);

const OFF_LEN: usize = 4;
const OFF_SUM: usize = 8;
const TYPE_PUT: u8 = 1;
const TYPE_REMOVE: u8 = 2;
const OFF_KEY_HASH: usize = 1;
const OFF_KEY_LEN: usize = 1 + KEY_HASH_LEN;
const OFF_KEY: usize = OFF_KEY_LEN + 4;

/// One named part of an entry: an object and its payload size.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartRef {
    /// The part's name, unique within its entry (`ast`, `cpp`, `meta`, …).
    pub name: String,
    /// The object holding the part.
    pub id: ObjectId,
    /// The object's payload size in bytes.
    pub size: u64,
}

/// Checks a part name: 1 to 64 bytes of UTF-8 without control characters.
pub fn check_part_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_PART_NAME_LEN {
        return Err(format!(
            "part name {name:?} must be 1 to {MAX_PART_NAME_LEN} bytes long"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("part name {name:?} contains a control character"));
    }
    Ok(())
}

/// Sorts parts by name and checks names and count.
pub fn normalize_parts(mut parts: Vec<PartRef>) -> Result<Vec<PartRef>, String> {
    if parts.is_empty() || parts.len() > MAX_PARTS {
        return Err(format!(
            "an entry has 1 to {MAX_PARTS} parts, not {}",
            parts.len()
        ));
    }
    for part in &parts {
        check_part_name(&part.name)?;
    }
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = parts.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(format!("part name {:?} is given twice", pair[0].name));
    }
    Ok(parts)
}

/// The record checksum: XXH64 of the body with seed 0, little-endian.
///
/// A record checksum guards against accidental damage (torn writes, bit
/// flips), not against an adversary, and it runs on every lookup, so it is
/// a fast non-cryptographic hash. Part payloads stay guarded by their
/// BLAKE3 object ids.
pub fn checksum(body: &[u8]) -> [u8; 8] {
    xxh64(body, 0).to_le_bytes()
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn xxh_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn xxh_merge(acc: u64, val: u64) -> u64 {
    (acc ^ xxh_round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// XXH64 (the xxHash 64-bit algorithm).
pub fn xxh64(input: &[u8], seed: u64) -> u64 {
    let len = input.len() as u64;
    let mut rest = input;
    let mut h = if rest.len() >= 32 {
        let mut v1 = seed.wrapping_add(P1).wrapping_add(P2);
        let mut v2 = seed.wrapping_add(P2);
        let mut v3 = seed;
        let mut v4 = seed.wrapping_sub(P1);
        while rest.len() >= 32 {
            v1 = xxh_round(v1, read_u64(&rest[0..]));
            v2 = xxh_round(v2, read_u64(&rest[8..]));
            v3 = xxh_round(v3, read_u64(&rest[16..]));
            v4 = xxh_round(v4, read_u64(&rest[24..]));
            rest = &rest[32..];
        }
        let mut h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        xxh_merge(h, v4)
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len);
    while rest.len() >= 8 {
        h ^= xxh_round(0, read_u64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let k = u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
        h ^= k.wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// Wraps a body in a frame.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&RECORD_MARKER);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(body));
    out.extend_from_slice(body);
    out
}

/// Encodes a put record's body. `parts` must be normalized.
pub fn encode_put(key_hash: &KeyHash, key: &[u8], parts: &[PartRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OFF_KEY + key.len() + 2 + parts.len() * 64);
    out.push(TYPE_PUT);
    out.extend_from_slice(key_hash.as_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(parts.len() as u16).to_le_bytes());
    for part in parts {
        out.push(part.name.len() as u8);
        out.extend_from_slice(part.name.as_bytes());
        out.extend_from_slice(part.id.as_bytes());
        out.extend_from_slice(&part.size.to_le_bytes());
    }
    out
}

/// Encodes a remove record's body.
pub fn encode_remove(key_hash: &KeyHash, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OFF_KEY + key.len());
    out.push(TYPE_REMOVE);
    out.extend_from_slice(key_hash.as_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out
}

/// How a frame at some offset looks.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// A complete frame whose checksum matches: its body and total length.
    Good {
        /// The verified body.
        body: &'a [u8],
        /// Frame length including the header.
        len: usize,
    },
    /// The bytes end before the frame does (a torn or in-progress append).
    Incomplete,
    /// The bytes are not a valid frame.
    Bad(String),
}

/// Reads and verifies the frame at the start of `bytes`.
pub fn read_frame(bytes: &[u8]) -> FrameRead<'_> {
    let Some(header) = bytes.get(..FRAME_HEADER_LEN) else {
        return if RECORD_MARKER.starts_with(&bytes[..bytes.len().min(4)]) {
            FrameRead::Incomplete
        } else {
            FrameRead::Bad("not a record marker".into())
        };
    };
    if header[..4] != RECORD_MARKER {
        if header[..3] == RECORD_MARKER[..3] {
            return FrameRead::Bad(format!(
                "record format version {} is not the supported version {}",
                header[3], RECORD_MARKER[3]
            ));
        }
        return FrameRead::Bad("not a record marker".into());
    }
    let len = u32::from_le_bytes([
        header[OFF_LEN],
        header[OFF_LEN + 1],
        header[OFF_LEN + 2],
        header[OFF_LEN + 3],
    ]) as usize;
    if len > MAX_BODY_LEN {
        return FrameRead::Bad(format!("record body length {len} is over the limit"));
    }
    let Some(body) = bytes.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return FrameRead::Incomplete;
    };
    if checksum(body) != header[OFF_SUM..FRAME_HEADER_LEN] {
        return FrameRead::Bad("record checksum mismatch".into());
    }
    FrameRead::Good {
        body,
        len: FRAME_HEADER_LEN + len,
    }
}

/// A decoded record body, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The key hash the record is filed under.
    pub key_hash: KeyHash,
    /// The canonical key encoding.
    pub key: &'a [u8],
    /// `None` for a remove record, else the bytes of the part table
    /// (count included), already checked to decode.
    pub parts: Option<&'a [u8]>,
    /// The body from the key length on (for the entry id).
    pub entry_payload: &'a [u8],
}

/// Decodes the fixed fields of a verified body and checks the part table.
pub fn view(body: &[u8]) -> Result<RecordView<'_>, String> {
    let kind = *body.first().ok_or("empty record body")?;
    let hash = body
        .get(OFF_KEY_HASH..OFF_KEY_LEN)
        .ok_or("record ends inside the key hash")?;
    let mut key_hash = [0u8; KEY_HASH_LEN];
    key_hash.copy_from_slice(hash);
    let key_len = body
        .get(OFF_KEY_LEN..OFF_KEY)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("record ends inside the key length")?;
    let key_end = OFF_KEY
        .checked_add(key_len)
        .filter(|&e| e <= body.len())
        .ok_or("record ends inside the key")?;
    let key = &body[OFF_KEY..key_end];
    let rest = &body[key_end..];
    let parts = match kind {
        TYPE_PUT => {
            walk_parts(rest, |_, _, _| ())?;
            Some(rest)
        }
        TYPE_REMOVE => {
            if !rest.is_empty() {
                return Err("remove record has trailing bytes".into());
            }
            None
        }
        other => return Err(format!("unknown record type {other}")),
    };
    Ok(RecordView {
        key_hash: KeyHash::from_bytes(key_hash),
        key,
        parts,
        entry_payload: &body[OFF_KEY_LEN..],
    })
}

/// Calls `f(name, id, size)` for each part in a part table, checking its structure.
pub fn walk_parts(table: &[u8], mut f: impl FnMut(&str, ObjectId, u64)) -> Result<usize, String> {
    let count = table
        .get(..2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or("record ends inside the part count")?;
    if count == 0 || count > MAX_PARTS {
        return Err(format!("part count {count} is out of range"));
    }
    let mut pos = 2;
    let mut previous: Option<&str> = None;
    for _ in 0..count {
        let name_len = usize::from(*table.get(pos).ok_or("record ends inside a part")?);
        pos += 1;
        let name = table
            .get(pos..pos + name_len)
            .ok_or("record ends inside a part name")?;
        let name = std::str::from_utf8(name).map_err(|_| "part name is not UTF-8")?;
        check_part_name(name)?;
        if previous.is_some_and(|p| p >= name) {
            return Err("part names are not sorted and unique".into());
        }
        previous = Some(name);
        pos += name_len;
        let fixed = table
            .get(pos..pos + ID_LEN + 8)
            .ok_or("record ends inside a part id")?;
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&fixed[..ID_LEN]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&fixed[ID_LEN..]);
        f(name, ObjectId::from_bytes(id), u64::from_le_bytes(size));
        pos += ID_LEN + 8;
    }
    if pos != table.len() {
        return Err("record has trailing bytes after its parts".into());
    }
    Ok(count)
}

/// One part of an entry, borrowed from its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartView<'a> {
    /// The part's name.
    pub name: &'a str,
    /// The object holding the part.
    pub id: ObjectId,
    /// The object's payload size in bytes.
    pub size: u64,
}

impl PartView<'_> {
    /// An owned copy.
    pub fn to_part_ref(&self) -> PartRef {
        PartRef {
            name: self.name.to_string(),
            id: self.id,
            size: self.size,
        }
    }
}

/// The parts of a part table that [`view`] checked, in name order.
///
/// Every read is still bounds-checked: on a table that was not checked
/// the iteration ends early rather than panic.
#[derive(Clone, Debug)]
pub struct PartIter<'a> {
    table: &'a [u8],
    pos: usize,
    left: usize,
}

/// Iterates over a checked part table without copying it.
pub fn parts_iter(table: &[u8]) -> PartIter<'_> {
    let left = table
        .get(..2)
        .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    PartIter {
        table,
        pos: 2,
        left,
    }
}

impl<'a> Iterator for PartIter<'a> {
    type Item = PartView<'a>;

    fn next(&mut self) -> Option<PartView<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let table = self.table;
        let name_len = usize::from(*table.get(self.pos)?);
        let name_at = self.pos + 1;
        let fixed_at = name_at + name_len;
        let name = std::str::from_utf8(table.get(name_at..fixed_at)?).ok()?;
        let fixed = table.get(fixed_at..fixed_at + ID_LEN + 8)?;
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&fixed[..ID_LEN]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&fixed[ID_LEN..]);
        self.pos = fixed_at + ID_LEN + 8;
        Some(PartView {
            name,
            id: ObjectId::from_bytes(id),
            size: u64::from_le_bytes(size),
        })
    }
}

/// Decodes a checked part table.
pub fn decode_parts(table: &[u8]) -> Result<Vec<PartRef>, String> {
    let mut parts = Vec::new();
    walk_parts(table, |name, id, size| {
        parts.push(PartRef {
            name: name.to_string(),
            id,
            size,
        })
    })?;
    Ok(parts)
}

/// The entry id of a put record (see the module docs).
pub fn entry_id(entry_payload: &[u8], parts: &[PartRef]) -> ObjectId {
    let links: Vec<ObjectId> = parts.iter().map(|p| p.id).collect();
    object::compute_id(Kind::Entry, &links, entry_payload)
}

/// The entry id of a put record from its checked part table.
pub fn entry_id_of_table(entry_payload: &[u8], table: &[u8]) -> ObjectId {
    let links: Vec<ObjectId> = parts_iter(table).map(|p| p.id).collect();
    object::compute_id(Kind::Entry, &links, entry_payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_the_reference_vectors() {
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            xxh64(b"Nobody inspects the spammish repetition", 0),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let parts = normalize_parts(vec![
            PartRef {
                name: "meta".into(),
                id: ObjectId::from_bytes([2; 32]),
                size: 9,
            },
            PartRef {
                name: "ast".into(),
                id: ObjectId::from_bytes([1; 32]),
                size: 5,
            },
        ])
        .unwrap();
        let hash = KeyHash::from_bytes([7; 32]);
        let body = encode_put(&hash, b"key", &parts);
        let framed = frame(&body);
        let FrameRead::Good { body: got, len } = read_frame(&framed) else {
            panic!("frame did not read back")
        };
        assert_eq!(len, framed.len());
        let v = view(got).unwrap();
        assert_eq!(v.key, b"key");
        assert_eq!(decode_parts(v.parts.unwrap()).unwrap(), parts);
        assert_eq!(
            read_frame(&framed[..framed.len() - 1]),
            FrameRead::Incomplete
        );
        for i in 0..framed.len() {
            let mut bad = framed.clone();
            bad[i] ^= 1;
            assert!(
                !matches!(read_frame(&bad), FrameRead::Good { body: b, .. } if b == got),
                "flip at {i} went unnoticed"
            );
        }
        assert!(
            normalize_parts(vec![parts[0].clone(), parts[0].clone()])
                .unwrap_err()
                .contains("twice")
        );
    }
}
