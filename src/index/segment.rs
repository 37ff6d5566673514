//! Index segments: immutable files of records sorted by key hash, searched
//! through a fan-out table and a fixed-width hash table, normally mapped
//! into memory.
//!
//! # File format (segment format version 1)
//!
//! ```text
//! offset        size   field
//! 0             4      magic "RSKX"
//! 4             1      segment format version (1)
//! 5             3      reserved, zero
//! 8             8      entry count N, u64 LE (at most u32::MAX)
//! 16            8      records area length R, u64 LE
//! 24            8      generation, u64 LE
//! 32            1024   fan-out: 256 × u32 LE; fanout[b] = number of entries whose
//!                      key hash's first byte is ≤ b (so fanout[255] = N)
//! 1056          8·N    prefixes: the first 8 bytes of each key hash, in table order
//! 1056+8N       40·N   table, sorted by key hash, hashes unique:
//!                      32-byte key hash, u64 LE offset of its record in the records area
//! 1056+48N      R      records area: frames (see super::record) back to back
//! 1056+48N+R    32     BLAKE3 of every byte before it
//! ```
//!
//! The file length must equal `1056 + 48·N + R + 32`. The prefix array is
//! what lookups search: eight prefixes share a cache line, so finding a
//! slot touches a line or two of it, then one table slot and one record.
//!
//! # Invariants
//! - A published segment is never written or truncated; it is replaced by
//!   publishing another one and unlinked only after the manifest stops naming
//!   it. Mapping it is sound only because of that (see [`map_file`]).
//! - Opening checks the header, the length and the fan-out (O(256)); it does
//!   not hash the file. Every lookup bounds-checks what it reads and
//!   verifies the record's checksum, so bad bytes are a miss, never a panic
//!   and never a wrong value. [`Segment::check`] does the full check: the
//!   whole-file checksum, the table order and every record.

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
pub const FORMAT_VERSION: u8 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Length of the fan-out table.
pub const FANOUT_LEN: usize = 256 * 4;
/// Offset of the hash table.
pub const TABLE_OFFSET: usize = HEADER_LEN + FANOUT_LEN;
/// Width of one hash-table slot.
pub const SLOT_LEN: usize = KEY_HASH_LEN + 8;
/// Width of one prefix.
pub const PREFIX_LEN: usize = 8;
/// Length of the trailing whole-file checksum.
pub const TRAILER_LEN: usize = 32;

const OFF_VERSION: usize = 4;
const OFF_RESERVED: usize = 5;
const OFF_COUNT: usize = 8;
const OFF_RECORDS_LEN: usize = 16;
const OFF_GENERATION: usize = 24;

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

/// Maps a published segment file read-only.
///
/// # Errors
/// [`Error::Io`] naming `path` when the mapping fails.
fn map_file(file: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: the mapping is read-only and `path` is a published segment.
    // Published segments are never written or truncated by rask-store: they
    // are created whole in tmp/, made read-only (0444), renamed into index/,
    // and only ever unlinked (after the manifest stops naming them), which
    // leaves this mapping's inode intact. A process outside rask-store that
    // truncates the file could still make reads fault; that is outside the
    // store's contract, as for any memory-mapped database.
    unsafe { Mmap::map(file) }.at("map the index segment", path)
}

/// An open, structurally checked segment.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    generation: u64,
    bytes: Bytes,
    count: usize,
    table_start: usize,
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
        if bytes[OFF_RESERVED..OFF_COUNT] != [0, 0, 0] {
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
        let expected = (count as u128) * (PREFIX_LEN + SLOT_LEN) as u128
            + records_len as u128
            + (TABLE_OFFSET + TRAILER_LEN) as u128;
        if expected != bytes.len() as u128 {
            return Err(corrupt(format!(
                "file is {} bytes, but its header describes {count} entries and {records_len} \
                 bytes of records ({expected} bytes in all): truncated or extended",
                bytes.len()
            )));
        }
        let count = count as usize;
        let mut previous = 0u32;
        for b in 0..256 {
            let n = le_u32(&bytes, HEADER_LEN + 4 * b).unwrap_or(u32::MAX);
            if n < previous || n as usize > count {
                return Err(corrupt(format!("fan-out entry {b} ({n}) is out of order")));
            }
            previous = n;
        }
        if previous as usize != count {
            return Err(corrupt(format!(
                "fan-out ends at {previous}, but the header says {count} entries"
            )));
        }
        Ok(Segment {
            path: path.to_path_buf(),
            generation,
            table_start: TABLE_OFFSET + count * PREFIX_LEN,
            records_start: TABLE_OFFSET + count * (PREFIX_LEN + SLOT_LEN),
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

    fn fanout(&self, b: usize) -> usize {
        le_u32(&self.bytes, HEADER_LEN + 4 * b).map_or(0, |n| n as usize)
    }

    fn slot_hash(&self, i: usize) -> Option<&[u8]> {
        let at = self.table_start + i * SLOT_LEN;
        self.bytes.get(at..at + KEY_HASH_LEN)
    }

    /// Prefix `i` as a big-endian integer; past the end reads as the maximum.
    fn prefix(&self, i: usize) -> u64 {
        let at = TABLE_OFFSET + i * PREFIX_LEN;
        match self.bytes.get(at..at + PREFIX_LEN) {
            Some(b) => u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            None => u64::MAX,
        }
    }

    /// Finds the record filed under `hash`.
    ///
    /// `Ok(None)`: no slot has this hash. `Err(reason)`: a slot has it but
    /// its record is damaged.
    ///
    /// Key hashes are uniform, so the slot's position inside its fan-out
    /// bucket is predicted from the hash's next bytes; the search gallops
    /// out from the guess to bracket the slot, then bisects the bracket.
    /// That touches a few neighbouring cache lines instead of a dozen
    /// scattered ones. On damaged (unsorted) bytes it still ends, and at
    /// worst misses.
    pub fn find(&self, hash: &KeyHash) -> std::result::Result<Option<&[u8]>, String> {
        let want = &hash.as_bytes()[..];
        let want_prefix = u64::from_be_bytes([
            want[0], want[1], want[2], want[3], want[4], want[5], want[6], want[7],
        ]);
        let first = usize::from(want[0]);
        let bucket_lo = if first == 0 {
            0
        } else {
            self.fanout(first - 1)
        };
        let bucket_hi = self.fanout(first).min(self.count);
        if bucket_lo >= bucket_hi {
            return Ok(None);
        }
        // Lower bound: the first slot whose prefix is >= want_prefix.
        let (mut lo, mut hi) = (bucket_lo, bucket_hi);
        let fraction = want_prefix & 0x00ff_ffff_ffff_ffff; // uniform in [0, 2^56)
        let guess = lo + ((u128::from(fraction) * (hi - lo) as u128) >> 56) as usize;
        let guess = guess.min(hi - 1);
        if self.prefix(guess) < want_prefix {
            // Gallop right from the guess.
            let mut step = 1;
            let mut below = guess;
            while below + step < hi {
                let probe = below + step;
                if self.prefix(probe) < want_prefix {
                    below = probe;
                    step *= 2;
                } else {
                    hi = probe;
                    break;
                }
            }
            lo = below + 1;
        } else {
            // Gallop left from the guess.
            let mut step = 1;
            let mut at_or_above = guess;
            while at_or_above >= lo + step {
                let probe = at_or_above - step;
                if self.prefix(probe) >= want_prefix {
                    at_or_above = probe;
                    step *= 2;
                } else {
                    lo = probe + 1;
                    break;
                }
            }
            hi = at_or_above;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.prefix(mid) < want_prefix {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut i = lo;
        while i < bucket_hi && self.prefix(i) == want_prefix {
            if self.slot_hash(i) == Some(want) {
                return self.record_at(i).map(Some);
            }
            i += 1;
        }
        Ok(None)
    }

    fn record_at(&self, i: usize) -> std::result::Result<&[u8], String> {
        let offset = le_u64(&self.bytes, self.table_start + i * SLOT_LEN + KEY_HASH_LEN)
            .ok_or("table slot out of bounds")?;
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

    /// Every entry in table order: its hash and its record (or what is wrong with it).
    pub fn iter(&self) -> impl Iterator<Item = (KeyHash, std::result::Result<&[u8], String>)> + '_ {
        (0..self.count).filter_map(move |i| {
            let mut hash = [0u8; KEY_HASH_LEN];
            hash.copy_from_slice(self.slot_hash(i)?);
            Some((KeyHash::from_bytes(hash), self.record_at(i)))
        })
    }

    /// The full check: whole-file checksum, table order, every record.
    /// Returns every problem found, as text.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let body_len = self.bytes.len() - TRAILER_LEN;
        let actual = blake3::hash(&self.bytes[..body_len]);
        if actual.as_bytes()[..] != self.bytes[body_len..] {
            problems.push("whole-file checksum mismatch".to_string());
        }
        let mut previous: Option<KeyHash> = None;
        for (i, (hash, rec)) in self.iter().enumerate() {
            if previous.is_some_and(|p| p >= hash) {
                problems.push(format!("table slot {i} is out of order"));
            }
            if usize::from(hash.as_bytes()[0]) > 0
                && i < self.fanout(usize::from(hash.as_bytes()[0]) - 1)
            {
                problems.push(format!("table slot {i} disagrees with the fan-out"));
            }
            previous = Some(hash);
            let mut p = [0u8; PREFIX_LEN];
            p.copy_from_slice(&hash.as_bytes()[..PREFIX_LEN]);
            if self.prefix(i) != u64::from_be_bytes(p) {
                problems.push(format!("prefix {i} disagrees with its table slot"));
            }
            match rec.and_then(|body| record::view(body).map(|v| v.key_hash)) {
                Ok(h) if h == hash => {}
                Ok(_) => problems.push(format!("record of slot {i} is filed under another hash")),
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
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[OFF_VERSION] = FORMAT_VERSION;
    header[OFF_COUNT..OFF_RECORDS_LEN].copy_from_slice(&(records.len() as u64).to_le_bytes());
    header[OFF_RECORDS_LEN..OFF_GENERATION].copy_from_slice(&records_len.to_le_bytes());
    header[OFF_GENERATION..].copy_from_slice(&generation.to_le_bytes());
    let mut fanout = [0u32; 256];
    for (hash, _) in records {
        fanout[usize::from(hash.as_bytes()[0])] += 1;
    }
    let mut running = 0u32;
    for slot in fanout.iter_mut() {
        running += *slot;
        *slot = running;
    }
    let mut w = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, out),
        hasher: blake3::Hasher::new(),
    };
    let io = |e| Error::io("write the index segment", path, e);
    w.write_all(&header).map_err(io)?;
    for n in fanout {
        w.write_all(&n.to_le_bytes()).map_err(io)?;
    }
    for (hash, _) in records {
        w.write_all(&hash.as_bytes()[..PREFIX_LEN]).map_err(io)?;
    }
    let mut offset = 0u64;
    for (hash, body) in records {
        w.write_all(hash.as_bytes()).map_err(io)?;
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

    fn build(n: u8) -> (tempfile::TempDir, PathBuf, Vec<KeyHash>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut frames = Vec::new();
        for i in 0..n {
            let hash = KeyHash::of_encoding(&[i]);
            let part = PartRef {
                name: "p".into(),
                id: ObjectId::from_bytes([i; 32]),
                size: u64::from(i),
            };
            frames.push((hash, encode_put(&hash, &[i], &[part])));
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
