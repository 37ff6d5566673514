//! Index segments: immutable files of records sorted by key hash, searched
//! through a radix table over the key hash's first bits, normally mapped
//! into memory.
//!
//! # File format (segment format version 2)
//!
//! ```text
//! offset        size      field
//! 0             4         magic "RSKX"
//! 4             1         segment format version (2)
//! 5             1         radix bits k, 8..=24
//! 6             2         reserved, zero
//! 8             8         entry count N, u64 LE (at most u32::MAX)
//! 16            8         records area length R, u64 LE
//! 24            8         generation, u64 LE
//! 32            4·(B+1)   radix table, B = 2^k: u32 LE; radix[b] = number of entries
//!                         whose key hash's first k bits are < b (radix[0] = 0,
//!                         radix[B] = N); it is the fan-out over the first byte
//!                         refined to k bits
//! 36+4B         28        padding, zero (so S is a multiple of 64)
//! S = 64+4B     16·N      slots, sorted by key hash, hashes unique: the first 8
//!                         bytes of the key hash, u64 LE offset of its record in
//!                         the records area
//! S+16N         R         records area: frames (see super::record) back to back
//! S+16N+R       32        BLAKE3 of every byte before it
//! ```
//!
//! The file length must equal `64 + 4·2^k + 16·N + R + 32`. Writers pick the
//! smallest k ≥ 8 with 2^k ≥ N/4, so a radix bucket holds about four slots
//! (one cache line) and the radix table is about N bytes. A lookup reads one
//! radix pair, one or two slot lines and the record: two dependent reads
//! of the big areas. The full key hash is not in the slot; it is compared
//! in the record, whose checksum was verified first.
//!
//! Version 1 (a 256-entry fan-out, a prefix array and a 40-byte table of
//! full hashes and offsets) is refused as an unsupported format; compaction
//! sets such a segment aside and its entries are rebuilt as misses.
//!
//! # Invariants
//! - A published segment is never written or truncated; it is replaced by
//!   publishing another one and unlinked only after the manifest stops naming
//!   it. Mapping it is sound only because of that (see `map_file`).
//! - Opening checks the header, the length and the radix table's two ends
//!   (O(1)); it neither hashes the file nor walks the table. Every lookup
//!   bounds-checks what it reads (a radix pair out of order is damage), and
//!   verifies the record's checksum and stored key hash, so bad bytes are a
//!   miss, never a panic and never a wrong value. [`Segment::check`] does
//!   the full check: the whole-file checksum, the radix table, the slot
//!   order and every record.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::record::{self, FrameRead};
use crate::error::{Error, IoContext, Result};
use crate::key::{KEY_HASH_LEN, KeyHash};

/// First four bytes of a segment.
pub const MAGIC: [u8; 4] = *b"RSKX";
/// The segment format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 2;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Fewest radix bits (the radix table is at least a fan-out over the first byte).
pub const MIN_RADIX_BITS: u8 = 8;
/// Most radix bits.
pub const MAX_RADIX_BITS: u8 = 24;
/// Width of one slot: key-hash prefix and record offset.
pub const SLOT_LEN: usize = PREFIX_LEN + 8;
/// Width of the key-hash prefix in a slot.
pub const PREFIX_LEN: usize = 8;
/// Length of the trailing whole-file checksum.
pub const TRAILER_LEN: usize = 32;

const OFF_VERSION: usize = 4;
const OFF_RADIX_BITS: usize = 5;
const OFF_RESERVED: usize = 6;
const OFF_COUNT: usize = 8;
const OFF_RECORDS_LEN: usize = 16;
const OFF_GENERATION: usize = 24;
const OFF_KEY_HASH_IN_BODY: usize = 1;

/// Buckets up to this many slots are scanned, larger ones bisected.
const LINEAR_SCAN: usize = 16;

/// Slots start at a multiple of this (a cache line), so no slot straddles two.
pub const SLOTS_ALIGN: usize = 64;

/// Most hashes one [`Segment::warm`] call reads ahead for.
pub const WARM_BATCH: usize = 32;

/// The radix bits a writer uses for `count` entries: the smallest k ≥ 8
/// with 2^k ≥ count/4, at most 24.
pub fn radix_bits(count: usize) -> u8 {
    let mut k = MIN_RADIX_BITS;
    while k < MAX_RADIX_BITS && (1usize << k) * 4 < count {
        k += 1;
    }
    k
}

/// Where the slots start: after the radix table, padded to [`SLOTS_ALIGN`].
pub fn slots_offset(bits: u8) -> usize {
    (HEADER_LEN + 4 * ((1usize << bits) + 1)).next_multiple_of(SLOTS_ALIGN)
}

/// The radix bucket of a key hash: its first `bits` bits.
fn bucket_of(hash: &[u8; KEY_HASH_LEN], bits: u8) -> usize {
    let top = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]);
    (top >> (32 - u32::from(bits))) as usize
}

fn prefix_of(hash: &[u8; KEY_HASH_LEN]) -> u64 {
    u64::from_be_bytes([
        hash[0], hash[1], hash[2], hash[3], hash[4], hash[5], hash[6], hash[7],
    ])
}

/// How a segment's bytes are held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Map the file (the default): opening is O(1) in the file size.
    #[default]
    Map,
    /// Read the whole file into memory.
    Read,
}

#[derive(Debug)]
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(vec) => vec,
        }
    }
}

/// Maps an index file (a published segment, or a journal) read-only: one
/// of the crate's three `unsafe` uses (the others call `openat`, in `dirfd`,
/// and lend a caller's job to helper threads, in `helpers`).
///
/// # Errors
/// [`Error::Io`] naming `path` when the mapping fails.
pub(super) fn map_file(file: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: the mapping is read-only and covers the file as long as it is
    // now, and rask-store never changes those bytes or shortens the file:
    // - a published segment is created whole in tmp/, made read-only
    //   (0444), renamed into index/, and only ever unlinked (after the
    //   manifest stops naming it), which leaves this mapping's inode intact;
    // - a journal is only ever appended to (O_APPEND, whole records) and
    //   unlinked once no manifest names it; it is never written in place or
    //   truncated, so the mapped prefix stays as it was (and its records are
    //   checksummed anyway).
    // A process outside rask-store that truncates the file could still make
    // reads fault; that is outside the store's contract, as for any
    // memory-mapped database.
    unsafe { Mmap::map(file) }.at("map the index file", path)
}

/// An open, structurally checked segment.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    generation: u64,
    bytes: Bytes,
    count: usize,
    radix_bits: u8,
    slots_start: usize,
    records_start: usize,
    records_len: usize,
}

/// A bounds-checked little-endian read.
fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes([
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
    ]))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl Segment {
    /// Opens the segment at `path` and checks its structure.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, [`Error::UnsupportedFormat`] for
    /// another version, [`Error::Corrupt`] for a bad structure.
    pub fn open(path: &Path, generation: u64, access: Access) -> Result<Segment> {
        let mut file = File::open(path).at("open the index segment", path)?;
        let bytes = match access {
            Access::Map => Bytes::Mapped(map_file(&file, path)?),
            Access::Read => {
                let mut buf = Vec::new();
                file.read_to_end(&mut buf)
                    .at("read the index segment", path)?;
                Bytes::Owned(buf)
            }
        };
        Segment::from_bytes(path, generation, bytes)
    }

    fn from_bytes(path: &Path, generation: u64, bytes: Bytes) -> Result<Segment> {
        let corrupt = |reason: String| Error::corrupt("index segment", path, reason);
        if bytes.len() < HEADER_LEN {
            return Err(corrupt(format!(
                "file is {} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        if bytes[..4] != MAGIC {
            return Err(corrupt(format!(
                "bad magic {:02x?}, expected \"RSKX\"",
                &bytes[..4]
            )));
        }
        if bytes[OFF_VERSION] != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                found: format!("index segment version {}", bytes[OFF_VERSION]),
                supported: format!("index segment version {FORMAT_VERSION}"),
            });
        }
        let radix_bits = bytes[OFF_RADIX_BITS];
        if !(MIN_RADIX_BITS..=MAX_RADIX_BITS).contains(&radix_bits) {
            return Err(corrupt(format!(
                "radix bits {radix_bits} are outside {MIN_RADIX_BITS}..={MAX_RADIX_BITS}"
            )));
        }
        if bytes[OFF_RESERVED..OFF_COUNT] != [0, 0] {
            return Err(corrupt("reserved header bytes are not zero".into()));
        }
        let count = le_u64(&bytes, OFF_COUNT).unwrap_or(u64::MAX);
        let records_len = le_u64(&bytes, OFF_RECORDS_LEN).unwrap_or(u64::MAX);
        let found_generation = le_u64(&bytes, OFF_GENERATION).unwrap_or(u64::MAX);
        if found_generation != generation {
            return Err(corrupt(format!(
                "header says generation {found_generation}, the manifest says {generation}"
            )));
        }
        if count > u64::from(u32::MAX) {
            return Err(corrupt(format!("entry count {count} is out of range")));
        }
        let buckets = 1usize << radix_bits;
        let slots_start = slots_offset(radix_bits);
        let expected = (count as u128) * SLOT_LEN as u128
            + records_len as u128
            + (slots_start + TRAILER_LEN) as u128;
        if expected != bytes.len() as u128 {
            return Err(corrupt(format!(
                "file is {} bytes, but its header describes {count} entries, {radix_bits} radix \
                 bits and {records_len} bytes of records ({expected} bytes in all): truncated or \
                 extended",
                bytes.len()
            )));
        }
        let count = count as usize;
        let first = le_u32(&bytes, HEADER_LEN).unwrap_or(u32::MAX);
        let last = le_u32(&bytes, HEADER_LEN + 4 * buckets).unwrap_or(u32::MAX);
        if first != 0 || last as usize != count {
            return Err(corrupt(format!(
                "radix table runs from {first} to {last}, but the header says 0 to {count} entries"
            )));
        }
        Ok(Segment {
            path: path.to_path_buf(),
            generation,
            radix_bits,
            slots_start,
            records_start: slots_start + count * SLOT_LEN,
            records_len: records_len as usize,
            count,
            bytes,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generation the segment was written in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the segment holds no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// File size in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Radix table entry `b`; past the end (only on damage) reads as 0.
    fn radix(&self, b: usize) -> usize {
        le_u32(&self.bytes, HEADER_LEN + 4 * b).map_or(0, |n| n as usize)
    }

    /// Prefix of slot `i` as a big-endian integer; past the end reads as the maximum.
    fn prefix(&self, i: usize) -> u64 {
        let at = self.slots_start + i * SLOT_LEN;
        match self.bytes.get(at..at + PREFIX_LEN) {
            Some(b) => u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            None => u64::MAX,
        }
    }

    /// The slots whose hashes start with `hash`'s radix bits, as `lo..hi`.
    fn bucket(&self, hash: &[u8; KEY_HASH_LEN]) -> std::result::Result<(usize, usize), String> {
        let b = bucket_of(hash, self.radix_bits);
        let (lo, hi) = (self.radix(b), self.radix(b + 1));
        if lo > hi || hi > self.count {
            return Err(format!(
                "radix table entries {b} and {} ({lo}, {hi}) are out of order",
                b + 1
            ));
        }
        Ok((lo, hi))
    }

    /// Finds the record filed under `hash`.
    ///
    /// `Ok(None)`: no slot has this hash. `Err(reason)`: a slot has it but
    /// its record is damaged, or the radix table is.
    ///
    /// The radix pair brackets a handful of slots (about four); they are
    /// scanned (bisected, if there are more than a few) by prefix, and each slot with the same prefix has its
    /// record read and its stored key hash compared. On damaged (unsorted)
    /// bytes it still ends, and at worst misses.
    pub fn find(&self, hash: &KeyHash) -> std::result::Result<Option<&[u8]>, String> {
        let want = hash.as_bytes();
        let want_prefix = prefix_of(want);
        let (mut lo, mut hi) = self.bucket(want)?;
        let end = hi;
        if hi - lo <= LINEAR_SCAN {
            // Front to back: the reads run forward through one or two lines.
            while lo < hi && self.prefix(lo) < want_prefix {
                lo += 1;
            }
        } else {
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.prefix(mid) < want_prefix {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
        }
        let mut i = lo;
        let mut damaged = None;
        while i < end && self.prefix(i) == want_prefix {
            match self.record_at(i) {
                Ok(body)
                    if body.get(OFF_KEY_HASH_IN_BODY..OFF_KEY_HASH_IN_BODY + KEY_HASH_LEN)
                        == Some(&want[..]) =>
                {
                    return Ok(Some(body));
                }
                Ok(_) => {}
                // A damaged record under this prefix may be the one asked for.
                Err(reason) => damaged = Some(reason),
            }
            i += 1;
        }
        damaged.map_or(Ok(None), Err)
    }

    /// Reads, and discards, the bytes a [`Segment::find`] of each of
    /// `hashes` will read: the radix pair, the bucket's slots and the
    /// start of the candidate record. The reads of different hashes do not
    /// depend on one another, so the processor overlaps their cache misses;
    /// the finds that follow hit the cache. Batch lookups call it on a few
    /// dozen hashes at a time. Returns a value only so the reads are kept.
    pub fn warm<'h>(&self, hashes: impl Iterator<Item = &'h KeyHash> + Clone) -> u64 {
        let mut seen = 0u64;
        // Radix pairs, then the first slot of each bucket: each loop's
        // loads are independent of each other.
        let mut starts = [0usize; WARM_BATCH];
        for (slot, hash) in starts.iter_mut().zip(hashes.clone()) {
            *slot = self.radix(bucket_of(hash.as_bytes(), self.radix_bits));
        }
        for &lo in &starts {
            seen ^= self.prefix(lo);
        }
        // Then the start of each hash's candidate record.
        for hash in hashes.take(WARM_BATCH) {
            let want = hash.as_bytes();
            let Ok((lo, hi)) = self.bucket(want) else {
                continue;
            };
            let want_prefix = prefix_of(want);
            if let Some(i) = (lo..hi).find(|&i| self.prefix(i) >= want_prefix)
                && self.prefix(i) == want_prefix
                && let Some(offset) =
                    le_u64(&self.bytes, self.slots_start + i * SLOT_LEN + PREFIX_LEN)
            {
                let at = self.records_start.saturating_add(offset as usize);
                for line in [0, 64, 128] {
                    seen ^= u64::from(
                        self.bytes
                            .get(at.saturating_add(line))
                            .copied()
                            .unwrap_or(0),
                    );
                }
            }
        }
        seen
    }

    fn record_at(&self, i: usize) -> std::result::Result<&[u8], String> {
        let offset = le_u64(&self.bytes, self.slots_start + i * SLOT_LEN + PREFIX_LEN)
            .ok_or("slot out of bounds")?;
        let offset = usize::try_from(offset)
            .ok()
            .filter(|&o| o < self.records_len)
            .ok_or_else(|| format!("record offset {offset} is outside the records area"))?;
        let area = self
            .bytes
            .get(self.records_start + offset..self.records_start + self.records_len)
            .ok_or("records area out of bounds")?;
        match record::read_frame(area) {
            FrameRead::Good { body, .. } => Ok(body),
            FrameRead::Incomplete => Err("record runs past the records area".into()),
            FrameRead::Bad(reason) => Err(reason),
        }
    }

    /// The verified record of slot `i` and the key hash it is filed under.
    fn entry_at(&self, i: usize) -> std::result::Result<(KeyHash, &[u8]), String> {
        let body = self.record_at(i)?;
        let stored = body
            .get(OFF_KEY_HASH_IN_BODY..OFF_KEY_HASH_IN_BODY + KEY_HASH_LEN)
            .ok_or("record ends inside the key hash")?;
        let mut hash = [0u8; KEY_HASH_LEN];
        hash.copy_from_slice(stored);
        if prefix_of(&hash) != self.prefix(i) {
            return Err(format!("record of slot {i} is filed under another prefix"));
        }
        Ok((KeyHash::from_bytes(hash), body))
    }

    /// Every entry in slot order: its key hash and record, or what is wrong with it.
    pub fn iter(&self) -> impl Iterator<Item = std::result::Result<(KeyHash, &[u8]), String>> + '_ {
        (0..self.count).map(move |i| self.entry_at(i))
    }

    /// The full check: whole-file checksum, radix table, slot order, every
    /// record. Returns every problem found, as text.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let body_len = self.bytes.len() - TRAILER_LEN;
        let actual = blake3::hash(&self.bytes[..body_len]);
        if actual.as_bytes()[..] != self.bytes[body_len..] {
            problems.push("whole-file checksum mismatch".to_string());
        }
        let buckets = 1usize << self.radix_bits;
        if let Some(b) = (0..buckets).find(|&b| self.radix(b) > self.radix(b + 1)) {
            problems.push(format!("radix table entry {b} is out of order"));
        }
        let mut previous: Option<KeyHash> = None;
        for (i, entry) in self.iter().enumerate() {
            match entry {
                Ok((hash, body)) => {
                    if previous.is_some_and(|p| p >= hash) {
                        problems.push(format!("slot {i} is out of order"));
                    }
                    let b = bucket_of(hash.as_bytes(), self.radix_bits);
                    if i < self.radix(b) || i >= self.radix(b + 1) {
                        problems.push(format!("slot {i} disagrees with the radix table"));
                    }
                    previous = Some(hash);
                    match record::view(body) {
                        Ok(v) if v.key_hash == hash => {}
                        Ok(_) => problems.push(format!("record of slot {i} is inconsistent")),
                        Err(reason) => problems.push(format!("record of slot {i}: {reason}")),
                    }
                }
                Err(reason) => problems.push(format!("record of slot {i}: {reason}")),
            }
        }
        problems
    }
}

/// Writes a segment holding `records` (sorted by hash, unique) to `out`.
///
/// Each record is a record body; it is framed here.
///
/// # Errors
/// [`Error::Io`] naming `path` when writing fails.
pub fn write(
    out: &mut File,
    path: &Path,
    generation: u64,
    records: &[(KeyHash, &[u8])],
) -> Result<()> {
    if records.len() > u32::MAX as usize {
        return Err(Error::io(
            "write the index segment",
            path,
            std::io::Error::other(format!(
                "{} entries do not fit one segment (at most {})",
                records.len(),
                u32::MAX
            )),
        ));
    }
    let frame_len = |body: &[u8]| (record::FRAME_HEADER_LEN + body.len()) as u64;
    let records_len: u64 = records.iter().map(|(_, b)| frame_len(b)).sum();
    let bits = radix_bits(records.len());
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[OFF_VERSION] = FORMAT_VERSION;
    header[OFF_RADIX_BITS] = bits;
    header[OFF_COUNT..OFF_RECORDS_LEN].copy_from_slice(&(records.len() as u64).to_le_bytes());
    header[OFF_RECORDS_LEN..OFF_GENERATION].copy_from_slice(&records_len.to_le_bytes());
    header[OFF_GENERATION..].copy_from_slice(&generation.to_le_bytes());
    // radix[b + 1] counts the entries in buckets ≤ b, so radix[b] those below b.
    let mut radix = vec![0u32; (1usize << bits) + 1];
    for (hash, _) in records {
        radix[bucket_of(hash.as_bytes(), bits) + 1] += 1;
    }
    let mut running = 0u32;
    for slot in radix.iter_mut() {
        running += *slot;
        *slot = running;
    }
    let mut w = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, out),
        hasher: blake3::Hasher::new(),
    };
    let io = |e| Error::io("write the index segment", path, e);
    w.write_all(&header).map_err(io)?;
    for n in radix {
        w.write_all(&n.to_le_bytes()).map_err(io)?;
    }
    let padding = slots_offset(bits) - (HEADER_LEN + 4 * ((1usize << bits) + 1));
    w.write_all(&[0u8; SLOTS_ALIGN][..padding]).map_err(io)?;
    let mut offset = 0u64;
    for (hash, body) in records {
        w.write_all(&hash.as_bytes()[..PREFIX_LEN]).map_err(io)?;
        w.write_all(&offset.to_le_bytes()).map_err(io)?;
        offset += frame_len(body);
    }
    for (_, body) in records {
        w.write_all(&record::RECORD_MARKER).map_err(io)?;
        w.write_all(&(body.len() as u32).to_le_bytes())
            .map_err(io)?;
        w.write_all(&record::checksum(body)).map_err(io)?;
        w.write_all(body).map_err(io)?;
    }
    let sum = *w.hasher.finalize().as_bytes();
    w.inner.write_all(&sum).map_err(io)?;
    w.inner.flush().map_err(io)?;
    Ok(())
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ObjectId;
    use crate::index::record::{PartRef, encode_put};

    fn build(n: u16) -> (tempfile::TempDir, PathBuf, Vec<KeyHash>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut frames = Vec::new();
        for i in 0..n {
            let key = i.to_le_bytes();
            let hash = KeyHash::of_encoding(&key);
            let part = PartRef {
                name: "p".into(),
                id: ObjectId::from_bytes([i as u8; 32]),
                size: u64::from(i),
            };
            frames.push((hash, encode_put(&hash, &key, &[part])));
        }
        frames.sort();
        let refs: Vec<(KeyHash, &[u8])> = frames.iter().map(|(h, f)| (*h, &f[..])).collect();
        let mut file = File::create(&path).unwrap();
        write(&mut file, &path, 3, &refs).unwrap();
        let hashes = frames.iter().map(|(h, _)| *h).collect();
        (dir, path, hashes)
    }

    #[test]
    fn written_segments_open_and_find_every_entry() {
        let (_dir, path, hashes) = build(200);
        for access in [Access::Map, Access::Read] {
            let seg = Segment::open(&path, 3, access).unwrap();
            assert_eq!(seg.len(), 200);
            assert!(seg.check().is_empty(), "{:?}", seg.check());
            for hash in &hashes {
                let body = seg.find(hash).unwrap().unwrap();
                assert_eq!(record::view(body).unwrap().key_hash, *hash);
            }
            assert_eq!(seg.find(&KeyHash::from_bytes([0; 32])), Ok(None));
        }
        assert!(Segment::open(&path, 4, Access::Map).is_err());
    }

    #[test]
    fn larger_segments_use_more_radix_bits_and_find_every_entry() {
        assert_eq!(radix_bits(0), 8);
        assert_eq!(radix_bits(1024), 8);
        assert_eq!(radix_bits(1025), 9);
        assert_eq!(radix_bits(1_000_000), 18);
        assert_eq!(radix_bits(usize::MAX), MAX_RADIX_BITS);
        let (_dir, path, hashes) = build(5000);
        let seg = Segment::open(&path, 3, Access::Map).unwrap();
        assert_eq!(seg.radix_bits, 11);
        assert!(seg.check().is_empty(), "{:?}", seg.check());
        for hash in &hashes {
            let body = seg.find(hash).unwrap().unwrap();
            assert_eq!(record::view(body).unwrap().key_hash, *hash);
        }
        let absent = KeyHash::of_encoding(b"not in the segment");
        assert_eq!(seg.find(&absent), Ok(None));
        assert_eq!(seg.iter().filter(Result::is_ok).count(), 5000);
    }

    #[test]
    fn a_radix_entry_out_of_order_is_damage_not_a_panic() {
        let (_dir, path, hashes) = build(300);
        let mut bytes = std::fs::read(&path).unwrap();
        // Bucket 7's start pushed past the entry count.
        bytes[HEADER_LEN + 4 * 7..HEADER_LEN + 4 * 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let seg = Segment::from_bytes(&path, 3, Bytes::Owned(bytes)).unwrap();
        assert!(
            seg.check().iter().any(|p| p.contains("radix")),
            "{:?}",
            seg.check()
        );
        let mut damaged = 0;
        for hash in &hashes {
            match seg.find(hash) {
                Ok(Some(body)) => assert_eq!(record::view(body).unwrap().key_hash, *hash),
                Ok(None) => panic!("an entry outside the damaged buckets went missing"),
                Err(reason) => {
                    assert!(reason.contains("radix"), "{reason}");
                    damaged += 1;
                }
            }
        }
        assert!(damaged > 0);
    }

    #[test]
    fn any_single_byte_damage_never_yields_a_wrong_record() {
        let (_dir, path, hashes) = build(5);
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            let seg = match Segment::from_bytes(&path, 3, Bytes::Owned(bad)) {
                Ok(seg) => seg,
                Err(_) => continue,
            };
            assert!(!seg.check().is_empty(), "flip at {i} passed the full check");
            for hash in &hashes {
                if let Ok(Some(body)) = seg.find(hash) {
                    let original = Segment::from_bytes(&path, 3, Bytes::Owned(good.clone()))
                        .unwrap()
                        .find(hash)
                        .unwrap()
                        .unwrap()
                        .to_vec();
                    assert_eq!(body, &original[..], "flip at {i} changed a record");
                }
            }
        }
    }
}
