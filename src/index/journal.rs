//! The index journal: an append-only file of framed records.
//!
//! # File format (journal format version 1)
//!
//! ```text
//! offset  size  field
//! 0       4     magic "RSKJ"
//! 4       1     journal format version (1)
//! 5       3     reserved, zero
//! 8       8     generation, u64 LE (equals the one in the file name)
//! 16      …     records, each a frame (see super::record), back to back
//! ```
//!
//! The header is written whole (temp file + rename) before any manifest
//! names the journal, so an appender never sees a journal without one.
//!
//! # Appending
//!
//! One record is one `write` on a file opened with `O_APPEND`, made while
//! holding a shared `flock` on the journal and after re-reading the
//! manifest to check the journal is still the current one (see
//! docs/ARCHITECTURE.md, "index rotation"). Appenders from several
//! processes never interleave their bytes.
//!
//! # Reading
//!
//! Readers map the file (or, with [`Access::Read`], read it into memory)
//! and, when it grows, hold its bytes in memory and read only the new tail;
//! frames are parsed from the front. A
//! frame that is cut off at the end of the file (torn by a crash, or still
//! being written) stops the parse there; it is re-examined on the next
//! refresh. A complete frame that fails its checksum is garbage: the reader
//! skips forward to the next offset where a valid frame starts, and records
//! the skipped range. Neither is ever returned as an entry.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::record::{self, FRAME_HEADER_LEN, FrameRead, RECORD_MARKER};
use super::segment::Access;
use crate::error::{Error, IoContext, Result};
use crate::key::{KEY_HASH_LEN, KeyHash};

/// First four bytes of a journal.
pub const MAGIC: [u8; 4] = *b"RSKJ";
/// The journal format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the journal header.
pub const HEADER_LEN: usize = 16;
const OFF_VERSION: usize = 4;
const OFF_RESERVED: usize = 5;
const OFF_GENERATION: usize = 8;

/// Where the newest record of each key hash starts: an open-addressing
/// table over the key hash's first eight bytes (already uniform, so they
/// are the hash), probed linearly and kept at most half full. A slot is
/// 16 bytes: that prefix and the record's offset plus one (0: empty).
/// Prefixes that are equal are told apart by the full key hash stored in
/// the records themselves, so no key hash is kept twice.
#[derive(Debug, Default)]
struct Table {
    slots: Vec<[u64; 2]>,
    len: usize,
}

/// The key hash of the verified record starting at `pos` in `bytes`.
fn hash_at(bytes: &[u8], pos: usize) -> Option<&[u8]> {
    let at = pos + FRAME_HEADER_LEN + 1;
    bytes.get(at..at + KEY_HASH_LEN)
}

fn prefix(hash: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(b)
}

impl Table {
    /// A table sized for about `keys` keys.
    fn with_keys(keys: usize) -> Table {
        Table {
            slots: vec![[0, 0]; (keys.max(8) * 2).next_power_of_two()],
            len: 0,
        }
    }

    /// The slot holding `hash`, or the empty slot where it would go.
    fn slot(&self, bytes: &[u8], hash: &[u8]) -> usize {
        let p = prefix(hash);
        let mask = self.slots.len() - 1;
        let mut i = (p as usize) & mask;
        loop {
            let [sp, pos] = self.slots[i];
            if pos == 0 || (sp == p && hash_at(bytes, (pos - 1) as usize) == Some(hash)) {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    fn get(&self, bytes: &[u8], hash: &[u8]) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        match self.slots[self.slot(bytes, hash)] {
            [_, 0] => None,
            [_, pos] => Some((pos - 1) as usize),
        }
    }

    /// Files the record at `pos` under its key hash (`bytes[pos..]` holds it).
    fn insert(&mut self, bytes: &[u8], pos: usize) {
        let Some(hash) = hash_at(bytes, pos) else {
            return;
        };
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow(bytes);
        }
        let i = self.slot(bytes, hash);
        if self.slots[i][1] == 0 {
            self.len += 1;
        }
        self.slots[i] = [prefix(hash), pos as u64 + 1];
    }

    fn grow(&mut self, bytes: &[u8]) {
        let old = std::mem::replace(self, Table::with_keys(self.slots.len().max(8)));
        for [_, pos] in old.slots {
            if pos != 0 {
                self.insert(bytes, (pos - 1) as usize);
            }
        }
    }

    /// Record offsets, one per key, in no particular order.
    fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .filter(|s| s[1] != 0)
            .map(|s| (s[1] - 1) as usize)
    }

    /// Reads ahead the slot `hash` starts probing at.
    fn warm(&self, hash: &[u8]) -> u64 {
        if self.len == 0 {
            return 0;
        }
        self.slots[(prefix(hash) as usize) & (self.slots.len() - 1)][0]
    }
}

/// A journal this long is read expecting about this many bytes per record.
const BYTES_PER_RECORD_GUESS: usize = 128;

/// The bytes of a new journal's header.
pub fn header(generation: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[OFF_VERSION] = FORMAT_VERSION;
    out[OFF_GENERATION..].copy_from_slice(&generation.to_le_bytes());
    out
}

/// A range of journal bytes that is not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Offset from the start of the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// What was wrong there.
    pub reason: String,
}

/// What one `fstat` tells of a journal: see [`Journal::look`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Look {
    /// File length in bytes.
    pub len: u64,
    /// A compaction retired it (or it was unlinked).
    pub retired: bool,
}

/// A journal, mapped or read into memory, and its table.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    generation: u64,
    file: File,
    bytes: Buf,
    access: Access,
    parsed: usize,
    table: Table,
    records: u64,
    skipped: Vec<Skipped>,
    header_checked: bool,
    header_problem: Option<Error>,
}

impl Journal {
    /// Opens the journal at `path` for reading and appending and loads it.
    ///
    /// A bad header is not an error here: it is kept in
    /// [`Journal::header_problem`], the records are ignored, and appends are refused.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened or read.
    pub fn open(path: &Path, generation: u64, access: Access) -> Result<Journal> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    File::open(path)
                } else {
                    Err(e)
                }
            })
            .at("open the index journal", path)?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            generation,
            file,
            bytes: Buf::Owned(Vec::new()),
            access,
            parsed: HEADER_LEN,
            table: Table::default(),
            records: 0,
            skipped: Vec::new(),
            header_checked: false,
            header_problem: None,
        };
        journal.refresh()?;
        Ok(journal)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generation the journal belongs to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// One `fstat` of the open journal: its length now, and whether it was
    /// retired (a compaction marked it before publishing the manifest that
    /// replaces it, or it was unlinked). Only a retired journal means the
    /// manifest may have been replaced, so a reader that finds neither
    /// growth nor the mark has nothing to catch up on.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be examined.
    pub fn look(&self) -> Result<Look> {
        let meta = self.file.metadata().at("read metadata of", &self.path)?;
        let marked = meta
            .modified()
            .is_ok_and(|t| t == std::time::SystemTime::UNIX_EPOCH);
        Ok(Look {
            len: meta.len(),
            retired: marked || std::os::unix::fs::MetadataExt::nlink(&meta) == 0,
        })
    }

    /// Marks the journal retired: sets its modification time to the Unix
    /// epoch (no append can: one would set it to the present). Compaction
    /// calls it under the exclusive lock, before publishing the manifest
    /// that names the next journal.
    ///
    /// # Errors
    /// [`Error::Io`] when the time cannot be set; the compaction must then
    /// not publish.
    pub fn mark_retired(&self) -> Result<()> {
        self.file
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .at("mark the index journal retired", &self.path)
    }

    /// Reads whatever was appended since the last read and parses it.
    /// Cheap when nothing was: one `fstat`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read.
    pub fn refresh(&mut self) -> Result<()> {
        self.refresh_knowing(&[])
    }

    /// As [`Journal::refresh`], right after this handle appended `own` to
    /// a journal its view held `before` bytes of. When the view still ends
    /// at `before` and the file ends at `before + own.len()`, nothing else
    /// was appended after `before` (ours is in there), so the new tail is
    /// `own` and is taken from memory instead of read back: one `pread`
    /// fewer per keyed put. Otherwise (another process appended, or another
    /// thread's refresh already took our record) the tail is read.
    ///
    /// # Errors
    /// As [`Journal::refresh`].
    pub fn refresh_after_append(&mut self, before: u64, own: &[u8]) -> Result<()> {
        if self.len() == before {
            self.refresh_knowing(own)
        } else {
            self.refresh_knowing(&[])
        }
    }

    fn refresh_knowing(&mut self, own: &[u8]) -> Result<()> {
        let len = self
            .file
            .metadata()
            .at("read metadata of", &self.path)?
            .len() as usize;
        if len > self.bytes.len() {
            if self.bytes.is_empty() && self.access != Access::Read {
                // The first read maps the file: O(1), and only the pages
                // parsed are faulted in.
                self.bytes = Buf::Mapped(super::segment::map_file(&self.file, &self.path)?);
            } else {
                // Grown since (an append: this handle's own, after every
                // put): the new tail is read into memory. Mapping the whole
                // file again cost an `munmap` (a TLB flush on every core the
                // process runs on) and fresh page faults per append, ~6 µs
                // of every keyed put; the copy costs one memcpy of at most
                // a journal's size (compaction keeps it near
                // `compact_min_bytes`), once.
                let mut owned = match std::mem::replace(&mut self.bytes, Buf::Owned(Vec::new())) {
                    Buf::Mapped(map) => map.to_vec(),
                    Buf::Owned(bytes) => bytes,
                };
                let read = if !own.is_empty() && owned.len() + own.len() == len {
                    owned.extend_from_slice(own);
                    Ok(())
                } else {
                    read_into(&self.file, &self.path, &mut owned, len)
                };
                self.bytes = Buf::Owned(owned);
                read?;
            }
            if self.table.slots.is_empty() {
                self.table = Table::with_keys(self.bytes.len() / BYTES_PER_RECORD_GUESS);
            }
        }
        if !self.header_checked {
            self.header_checked = true;
            self.header_problem = if self.bytes.len() < HEADER_LEN {
                Some(Error::corrupt(
                    "index journal",
                    &self.path,
                    format!(
                        "file is {} bytes, shorter than its header",
                        self.bytes.len()
                    ),
                ))
            } else {
                check_header(&self.bytes, &self.path, self.generation).err()
            };
        }
        if self.header_problem.is_none() {
            self.parse();
        }
        Ok(())
    }

    fn parse(&mut self) {
        let mut pos = self.parsed;
        while pos < self.bytes.len() {
            match record::read_frame(&self.bytes[pos..]) {
                FrameRead::Good { body, len } => match record::view(body) {
                    Ok(_) => {
                        self.table.insert(&self.bytes, pos);
                        self.records += 1;
                        pos += len;
                    }
                    Err(reason) => match self.resync(pos, reason) {
                        Some(next) => pos = next,
                        None => break,
                    },
                },
                // Cut off at the end of the file: torn, or still being written.
                // If a valid frame follows, it was torn by a crash; skip it.
                FrameRead::Incomplete => match self.resync(pos, "record cut off".into()) {
                    Some(next) => pos = next,
                    None => break,
                },
                FrameRead::Bad(reason) => match self.resync(pos, reason) {
                    Some(next) => pos = next,
                    None => break,
                },
            }
        }
        self.parsed = pos;
    }

    /// Finds the next valid frame after a bad one at `pos`, recording the skip.
    fn resync(&mut self, pos: usize, reason: String) -> Option<usize> {
        let mut at = pos + 1;
        while let Some(found) = find_marker(&self.bytes[at..]) {
            let candidate = at + found;
            if let FrameRead::Good { body, .. } = record::read_frame(&self.bytes[candidate..])
                && record::view(body).is_ok()
            {
                self.skipped.push(Skipped {
                    offset: pos as u64,
                    len: (candidate - pos) as u64,
                    reason,
                });
                return Some(candidate);
            }
            at = candidate + 1;
        }
        None
    }

    /// The verified body of the newest record for `hash`, if any.
    pub fn get(&self, hash: &KeyHash) -> Option<&[u8]> {
        let pos = self.table.get(&self.bytes, hash.as_bytes())?;
        match record::read_frame(self.bytes.get(pos..)?) {
            FrameRead::Good { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Whether any record is filed under `hash`.
    pub fn contains(&self, hash: &KeyHash) -> bool {
        self.table.get(&self.bytes, hash.as_bytes()).is_some()
    }

    /// Reads ahead the table slot a lookup of `hash` starts at; returns a
    /// value only so the read is kept.
    pub fn warm(&self, hash: &KeyHash) -> u64 {
        self.table.warm(hash.as_bytes())
    }

    /// Every key hash with its newest record body.
    pub fn latest(&self) -> impl Iterator<Item = (KeyHash, &[u8])> {
        self.table
            .positions()
            .filter_map(|pos| match record::read_frame(self.bytes.get(pos..)?) {
                FrameRead::Good { body, .. } => {
                    let mut hash = [0u8; KEY_HASH_LEN];
                    hash.copy_from_slice(body.get(1..1 + KEY_HASH_LEN)?);
                    Some((KeyHash::from_bytes(hash), body))
                }
                _ => None,
            })
    }

    /// Number of valid records read (including superseded ones).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Number of distinct keys with a record.
    pub fn keys(&self) -> usize {
        self.table.len
    }

    /// File size as last read.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// True when the journal has no records.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Garbage ranges skipped so far.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The bytes at the end that do not (yet) form a complete record:
    /// `(offset, length)`, if any.
    pub fn unparsed_tail(&self) -> Option<(u64, u64)> {
        if self.header_problem.is_some() || self.parsed >= self.bytes.len() {
            return None;
        }
        Some((self.parsed as u64, (self.bytes.len() - self.parsed) as u64))
    }

    /// What is wrong with the header, if anything.
    pub fn header_problem(&self) -> Option<&Error> {
        self.header_problem.as_ref()
    }

    /// Appends framed records (one, or a batch of whole ones) in a single `write`.
    ///
    /// The caller holds the shared lock (see [`Journal::lock_shared`]).
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails; [`Error::Corrupt`] when the
    /// journal's header is bad (nothing is appended to it).
    pub fn append(&self, framed: &[u8]) -> Result<()> {
        if let Some(problem) = &self.header_problem {
            return Err(Error::corrupt(
                "index journal",
                &self.path,
                format!("refusing to append to it ({problem}); run `rask-store index compact`"),
            ));
        }
        crate::fault::Point::JournalAppend.tear(&mut &self.file, &[framed]);
        let written = (&self.file)
            .write(framed)
            .at("append to the index journal", &self.path)?;
        if written != framed.len() {
            return Err(Error::io(
                "append to the index journal",
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("only {written} of {} bytes were written", framed.len()),
                ),
            ));
        }
        Ok(())
    }

    /// Takes the shared append lock, blocking while a compaction holds it.
    ///
    /// # Errors
    /// [`Error::Io`] when locking fails.
    pub fn lock_shared(&self) -> Result<()> {
        self.file
            .lock_shared()
            .at("lock the index journal", &self.path)
    }

    /// Takes the exclusive lock compaction holds for its final read.
    ///
    /// # Errors
    /// [`Error::Io`] when locking fails.
    pub fn lock_exclusive(&self) -> Result<()> {
        self.file.lock().at("lock the index journal", &self.path)
    }

    /// Whether some process holds the append lock (an append or a
    /// compaction's final read is in progress). Takes and releases the
    /// exclusive lock to find out, so it never blocks.
    ///
    /// # Errors
    /// [`Error::Io`] when locking fails for another reason.
    pub fn busy(&self) -> Result<bool> {
        match self.file.try_lock() {
            Ok(()) => {
                self.unlock();
                Ok(false)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(true),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io("lock the index journal", &self.path, e))
            }
        }
    }

    /// Releases a lock taken with either method.
    pub fn unlock(&self) {
        let _ = self.file.unlock();
    }

    /// Syncs the journal to disk.
    ///
    /// # Errors
    /// [`Error::Io`] when syncing fails.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().at("sync", &self.path)
    }
}

/// The journal's bytes: mapped (the default) or read into memory.
#[derive(Debug)]
enum Buf {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Buf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Buf::Mapped(map) => map,
            Buf::Owned(vec) => vec,
        }
    }
}

/// Reads `file` from `bytes.len()` to `len` onto the end of `bytes`, with `pread`.
fn read_into(file: &File, path: &Path, bytes: &mut Vec<u8>, len: usize) -> Result<()> {
    let mut got = bytes.len();
    bytes.resize(len, 0);
    while got < len {
        match file.read_at(&mut bytes[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                bytes.truncate(got);
                return Err(Error::io("read the index journal", path, e));
            }
        }
    }
    bytes.truncate(got);
    Ok(())
}

fn find_marker(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == RECORD_MARKER)
}

fn check_header(bytes: &[u8], path: &Path, generation: u64) -> Result<()> {
    if bytes[..4] != MAGIC {
        return Err(Error::corrupt(
            "index journal",
            path,
            format!("bad magic {:02x?}, expected \"RSKJ\"", &bytes[..4]),
        ));
    }
    if bytes[OFF_VERSION] != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            path: path.to_path_buf(),
            found: format!("index journal version {}", bytes[OFF_VERSION]),
            supported: format!("index journal version {FORMAT_VERSION}"),
        });
    }
    if bytes[OFF_RESERVED..OFF_GENERATION] != [0, 0, 0] {
        return Err(Error::corrupt(
            "index journal",
            path,
            "reserved header bytes are not zero",
        ));
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&bytes[OFF_GENERATION..HEADER_LEN]);
    let found = u64::from_le_bytes(g);
    if found != generation {
        return Err(Error::corrupt(
            "index journal",
            path,
            format!("header says generation {found}, the file name says {generation}"),
        ));
    }
    Ok(())
}
