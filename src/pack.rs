//! Pack files: many objects appended to one file, found through a pack
//! index. The two file formats, a writer and a reader, checked against every
//! crash state an append can leave; how a store uses them (which objects,
//! which pack, the table of packed objects) is `crate::packs`'s.
//!
//! # Files
//! A pack is a pair, written by one writer at a time:
//!
//! - the **data file** (`.rsp`): a 16-byte header (magic `RSPK`, format
//!   version, 8 zero bytes), then object encodings back to back. Each
//!   encoding is exactly the bytes a loose object file holds (header, links,
//!   payload; `docs/FORMAT.md`), so a packed object is checked as a loose one
//!   is: against its id, by re-hashing.
//! - the **index file** (`.rsi`): a 16-byte header (magic `RSPI`, version,
//!   8 zero bytes), then 64-byte records, one per object: id (32 bytes),
//!   offset in the data file, length, write time (Unix nanoseconds), each
//!   little-endian `u64`, and an XXH64 of the first 56 bytes (seed
//!   [`RECORD_SEED`]).
//!
//! # Crash states
//! An append writes the object's bytes to the data file first and its record
//! to the index file second, each with one positioned write. So:
//!
//! - a writer killed before the record leaves bytes no record names: the
//!   object is absent (and the space is reclaimed when the pack is
//!   rewritten);
//! - a record cut short (power loss, a full disk) is a torn tail of the
//!   index file: ignored, reported by [`read_index`], never a record;
//! - a record whose bytes were damaged fails its checksum and is skipped,
//!   reported;
//! - a record whose object bytes are missing or damaged (power loss with the
//!   index written back before the data) reads as [`Error::Corrupt`], never
//!   as wrong bytes, since every read re-hashes.
//!
//! One writer per pack: [`PackWriter::create`] takes an exclusive lock on
//! the data file and keeps it while the writer lives; the kernel drops it if
//! the process dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};
use crate::fault::Point;
use crate::id::{ID_LEN, ObjectId};
use crate::index::record::xxh64;
use crate::object::{self, Kind, Object, ObjectBuf, ObjectRef};

/// The data file's magic number.
pub const DATA_MAGIC: [u8; 4] = *b"RSPK";
/// The index file's magic number.
pub const INDEX_MAGIC: [u8; 4] = *b"RSPI";
/// The version of both files this build writes and reads.
pub const PACK_VERSION: u32 = 1;
/// The length of either file's header.
pub const HEADER_LEN: usize = 16;
/// The length of one index record.
pub const RECORD_LEN: usize = 64;
/// The XXH64 seed of a record's checksum.
pub const RECORD_SEED: u64 = 0x7273_7069_6e64_6578;

/// Where one object lives in a pack, as its index record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackRecord {
    /// The object's id.
    pub id: ObjectId,
    /// Where its encoding starts in the data file.
    pub offset: u64,
    /// The encoding's length in bytes.
    pub len: u64,
    /// When it was appended, in nanoseconds since the Unix epoch (gc's grace
    /// period counts from it).
    pub written_unix_nanos: u64,
}

impl PackRecord {
    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[..ID_LEN].copy_from_slice(self.id.as_bytes());
        out[32..40].copy_from_slice(&self.offset.to_le_bytes());
        out[40..48].copy_from_slice(&self.len.to_le_bytes());
        out[48..56].copy_from_slice(&self.written_unix_nanos.to_le_bytes());
        let sum = xxh64(&out[..56], RECORD_SEED);
        out[56..].copy_from_slice(&sum.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8; RECORD_LEN]) -> Option<PackRecord> {
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        if word(56) != xxh64(&bytes[..56], RECORD_SEED) {
            return None;
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&bytes[..ID_LEN]);
        Some(PackRecord {
            id: ObjectId::from_bytes(id),
            offset: word(32),
            len: word(40),
            written_unix_nanos: word(48),
        })
    }
}

fn header(magic: [u8; 4]) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..4].copy_from_slice(&magic);
    out[4..8].copy_from_slice(&PACK_VERSION.to_le_bytes());
    out
}

/// Checks a pack file's header; `what` names the file kind in messages.
fn check_header(bytes: &[u8], magic: [u8; 4], what: &str, path: &Path) -> Result<()> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::corrupt(
            what,
            path,
            format!("file is {} bytes, shorter than its header", bytes.len()),
        ));
    }
    if bytes[..4] != magic {
        return Err(Error::corrupt(
            what,
            path,
            "not a rask-store pack file (bad magic)",
        ));
    }
    let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != PACK_VERSION {
        return Err(Error::UnsupportedFormat {
            path: path.to_path_buf(),
            found: format!("{what} version {version}"),
            supported: format!("{what} version {PACK_VERSION}"),
        });
    }
    Ok(())
}

/// Appends objects to one pack it owns.
#[derive(Debug)]
pub struct PackWriter {
    data: File,
    index: File,
    data_path: PathBuf,
    index_path: PathBuf,
    data_len: u64,
    index_len: u64,
}

impl PackWriter {
    /// Creates a new pack (both files must not exist) and claims it; the
    /// index is made beside its final name first (see [`PackWriter::create_in`]).
    ///
    /// # Errors
    /// [`Error::Io`] when either file exists or cannot be written or locked.
    pub fn create(data_path: &Path, index_path: &Path) -> Result<PackWriter> {
        let beside = index_path.parent().unwrap_or(Path::new("."));
        PackWriter::create_in(data_path, index_path, beside)
    }

    /// Creates a new pack and claims it. Both files are made as temp files
    /// in `tmp_dir` (on the same file system): the data file is locked and
    /// both get their headers there, then each is linked to its name, data
    /// first (a link fails rather than replace a file already there). So a
    /// data file is claimed from the moment it can be seen, and a reader,
    /// which finds packs by their index, never meets an index without its
    /// header or its data file. A writer killed in between leaves temp
    /// files (gc removes them) or a data file without an index that no one
    /// holds, which holds no object and which gc and repair remove.
    ///
    /// # Errors
    /// [`Error::Io`] when either file exists or cannot be written or locked.
    pub fn create_in(data_path: &Path, index_path: &Path, tmp_dir: &Path) -> Result<PackWriter> {
        // Read-only for everyone from the start, as loose objects are: only
        // this writer's descriptor, opened as it creates them, writes.
        let new = |path: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(path)
                .at("create pack file", path)
        };
        let temp_for = |path: &Path| {
            let name = path
                .file_name()
                .map_or_else(|| "pack".into(), |n| n.to_string_lossy().into_owned());
            tmp_dir.join(format!(".{name}.new"))
        };
        let (data_temp, index_temp) = (temp_for(data_path), temp_for(index_path));
        let made = (|| {
            let data = new(&data_temp)?;
            // The only other holder of a file this call just created is an
            // `is_being_written` probe, for an instant: wait for it.
            data.lock()
                .map_err(|e| Error::io("lock pack", &data_temp, e))?;
            data.write_all_at(&header(DATA_MAGIC), 0)
                .at("write pack", &data_temp)?;
            let index = new(&index_temp)?;
            index
                .write_all_at(&header(INDEX_MAGIC), 0)
                .at("write pack index", &index_temp)?;
            std::fs::hard_link(&data_temp, data_path).at("publish pack", data_path)?;
            Point::PackIndexPublish.reached();
            if let Err(e) = std::fs::hard_link(&index_temp, index_path) {
                // Not a pack without its index: leave nothing half made.
                let _ = std::fs::remove_file(data_path);
                return Err(Error::io("publish pack index", index_path, e));
            }
            Ok((data, index))
        })();
        let _ = std::fs::remove_file(&data_temp);
        let _ = std::fs::remove_file(&index_temp);
        let (data, index) = made?;
        Ok(PackWriter {
            data,
            index,
            data_path: data_path.to_path_buf(),
            index_path: index_path.to_path_buf(),
            data_len: HEADER_LEN as u64,
            index_len: HEADER_LEN as u64,
        })
    }

    /// Appends one object: its encoding to the data file, then its record
    /// to the index file. Returns the record.
    ///
    /// # Errors
    /// [`Error::Io`] when a write fails; the object is then absent (a record
    /// is written only after the bytes it names).
    pub fn append(&mut self, kind: Kind, links: &[ObjectId], payload: &[u8]) -> Result<PackRecord> {
        let id = object::compute_id(kind, links, payload);
        self.append_with_id(id, kind, links, payload)
    }

    /// As [`PackWriter::append`], for a caller that has already computed
    /// the object's id (`object::compute_id(kind, links, payload)`) to
    /// decide whether to write it at all. A wrong `id` cannot hand out
    /// wrong bytes: every read re-hashes, so such an object reads as
    /// [`Error::Corrupt`].
    ///
    /// # Errors
    /// As [`PackWriter::append`].
    pub fn append_with_id(
        &mut self,
        id: ObjectId,
        kind: Kind,
        links: &[ObjectId],
        payload: &[u8],
    ) -> Result<PackRecord> {
        let prefix = object::encode_prefix(kind, links, payload.len() as u64);
        self.append_parts(id, &prefix, payload, now_unix_nanos())
    }

    /// Appends an object's whole encoding (a loose file's bytes, or a
    /// record's bytes read from another pack) under `id`, recording
    /// `written_unix_nanos` as its write time: how gc and repair copy an
    /// object from one pack to another without making it younger or older.
    ///
    /// # Errors
    /// As [`PackWriter::append`].
    pub fn append_encoded(
        &mut self,
        id: ObjectId,
        encoding: &[u8],
        written_unix_nanos: u64,
    ) -> Result<PackRecord> {
        self.append_parts(id, encoding, &[], written_unix_nanos)
    }

    /// Appends an object whose encoding is `head` followed by `body`.
    pub(crate) fn append_parts(
        &mut self,
        id: ObjectId,
        head: &[u8],
        body: &[u8],
        written_unix_nanos: u64,
    ) -> Result<PackRecord> {
        let len = (head.len() + body.len()) as u64;
        let record = PackRecord {
            id,
            offset: self.data_len,
            len,
            written_unix_nanos,
        };
        self.data
            .write_all_at(head, record.offset)
            .and_then(|()| {
                self.data
                    .write_all_at(body, record.offset + head.len() as u64)
            })
            .at("write pack", &self.data_path)?;
        self.data_len += len;
        Point::PackObjectWritten.reached();
        let encoded = record.encode();
        Point::PackRecordAppend.tear(
            &mut WriteAt {
                file: &self.index,
                pos: self.index_len,
            },
            &[&encoded],
        );
        self.index
            .write_all_at(&encoded, self.index_len)
            .at("write pack index", &self.index_path)?;
        self.index_len += RECORD_LEN as u64;
        Ok(record)
    }

    /// Makes everything appended so far durable: the data first, then the
    /// index, so no synced record names bytes that were not.
    ///
    /// # Errors
    /// [`Error::Io`] when a sync fails.
    pub fn sync(&self) -> Result<()> {
        self.data.sync_data().at("sync pack", &self.data_path)?;
        self.index
            .sync_data()
            .at("sync pack index", &self.index_path)
    }

    /// The data file's length so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The index file's length so far.
    pub fn index_len(&self) -> u64 {
        self.index_len
    }
}

/// Whether a live writer holds the pack whose data file is `data_path`
/// (gc must leave such a pack alone). Released when the writer is dropped
/// or its process dies. A pack created an instant ago may not be claimed
/// yet, so gc must also keep packs younger than its grace period.
///
/// # Errors
/// [`Error::Io`] when the file cannot be opened or the lock asked.
pub fn is_being_written(data_path: &Path) -> Result<bool> {
    let file = File::open(data_path).at("open pack", data_path)?;
    match file.try_lock() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(Error::io("lock pack", data_path, e)),
    }
}

/// What an index file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackIndex {
    /// The records whose checksum holds, in file order.
    pub records: Vec<PackRecord>,
    /// Records skipped because their checksum failed: (offset, what).
    pub damaged: Vec<(u64, String)>,
    /// Bytes at the end that are not a whole record: `(offset, length)`; a
    /// record being appended, or one cut short.
    pub torn_tail: Option<(u64, u64)>,
}

/// Reads a pack index file.
///
/// # Errors
/// [`Error::Corrupt`] for a bad header, [`Error::UnsupportedFormat`] for
/// another version, [`Error::Io`] when the file cannot be read.
pub fn read_index(path: &Path) -> Result<PackIndex> {
    let bytes = std::fs::read(path).at("read pack index", path)?;
    check_header(&bytes, INDEX_MAGIC, "pack index", path)?;
    let mut out = PackIndex::default();
    let whole = decode_records(&bytes[HEADER_LEN..], HEADER_LEN as u64, &mut out);
    let rest = bytes.len() - HEADER_LEN - whole;
    if rest > 0 {
        out.torn_tail = Some(((bytes.len() - rest) as u64, rest as u64));
    }
    Ok(out)
}

/// Decodes the whole records at the start of `body`, which starts at byte
/// `at` of its index file, into `out`; returns how many bytes they took.
fn decode_records(body: &[u8], at: u64, out: &mut PackIndex) -> usize {
    let mut chunks = body.chunks_exact(RECORD_LEN);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let offset = at + (i * RECORD_LEN) as u64;
        let mut raw = [0u8; RECORD_LEN];
        raw.copy_from_slice(chunk);
        match PackRecord::decode(&raw) {
            Some(record) => out.records.push(record),
            None => out
                .damaged
                .push((offset, "record checksum mismatch".to_string())),
        }
    }
    body.len() - chunks.remainder().len()
}

/// Checks the header of the open index file `file`.
///
/// # Errors
/// As [`read_index`].
pub fn check_index_header(file: &File, path: &Path) -> Result<()> {
    let mut head = [0u8; HEADER_LEN];
    let got = read_at_most(file, &mut head, 0).at("read pack index", path)?;
    check_header(&head[..got], INDEX_MAGIC, "pack index", path)
}

/// Reads the whole records of the open index file `file` from byte `from`
/// (a record boundary past the header) to its end: how a reader takes in
/// what a writer appended since it last looked. Returns the records (and
/// any damaged ones) and the offset just past the last whole record; a
/// record still being written is left for the next read.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn read_records_from(file: &File, path: &Path, from: u64) -> Result<(PackIndex, u64)> {
    read_records_up_to(file, path, from, u64::MAX)
}

/// As [`read_records_from`], reading at most `max` bytes of records (at
/// least one record's worth): how a reader takes in a large index a piece
/// at a time, without holding all of it in memory at once.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn read_records_up_to(
    file: &File,
    path: &Path,
    from: u64,
    max: u64,
) -> Result<(PackIndex, u64)> {
    let len = file.metadata().at("read metadata of", path)?.len();
    let mut out = PackIndex::default();
    if len < from + RECORD_LEN as u64 {
        return Ok((out, from));
    }
    let whole =
        (len - from).min(max.max(RECORD_LEN as u64)) / RECORD_LEN as u64 * RECORD_LEN as u64;
    let mut bytes = vec![0u8; whole as usize];
    let got = read_at_most(file, &mut bytes, from).at("read pack index", path)?;
    let used = decode_records(&bytes[..got], from, &mut out);
    Ok((out, from + used as u64))
}

/// The current time in nanoseconds since the Unix epoch, as records hold it.
pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Reads exactly `buf.len()` bytes at `offset`, or fewer where the file ends.
///
/// # Errors
/// The read's I/O error.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    read_at_most(file, buf, offset)
}

/// A pack's data file, open for reading.
#[derive(Debug)]
pub struct Pack {
    file: File,
    path: PathBuf,
}

impl Pack {
    /// Opens a data file and checks its header.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be opened or read (a missing pack too:
    /// packs are named by their index, not by an object id);
    /// [`Error::Corrupt`] or [`Error::UnsupportedFormat`] for a bad header.
    pub fn open(path: &Path) -> Result<Pack> {
        let file = File::open(path).at("open pack", path)?;
        let mut head = [0u8; HEADER_LEN];
        let got = read_at_most(&file, &mut head, 0).at("read pack", path)?;
        check_header(&head[..got], DATA_MAGIC, "pack", path)?;
        Ok(Pack {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The pack's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and verifies the object `record` names.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the pack when the bytes are missing (the
    /// record points past the end of the data file) or do not hash to the
    /// record's id; [`Error::Io`] when reading fails.
    pub fn read(&self, record: &PackRecord) -> Result<Object> {
        self.check_bounds(record)?;
        let mut at = ReadAt {
            file: &self.file,
            pos: record.offset,
        };
        Object::read(record.id, &self.path, &mut at, record.len)
    }

    /// As [`Pack::read`], into a buffer reused from one read to the next
    /// (as [`crate::Store::get_object_into`]); the result borrows from it.
    ///
    /// # Errors
    /// As [`Pack::read`].
    pub fn read_into<'b>(
        &self,
        record: &PackRecord,
        buf: &'b mut ObjectBuf,
    ) -> Result<ObjectRef<'b>> {
        self.check_bounds(record)?;
        let mut at = ReadAt {
            file: &self.file,
            pos: record.offset,
        };
        buf.read(record.id, &self.path, &mut at, record.len)
    }

    /// Checks that the record's bytes lie inside the data file, after its
    /// header.
    fn check_bounds(&self, record: &PackRecord) -> Result<()> {
        let end = record.offset.checked_add(record.len);
        let file_len = self
            .file
            .metadata()
            .at("read metadata of", &self.path)?
            .len();
        if record.offset < HEADER_LEN as u64 || end.is_none_or(|end| end > file_len) {
            return Err(Error::corrupt(
                format_args!("object {}", record.id),
                &self.path,
                format!(
                    "its pack index places it at bytes {}..{}, outside the pack's {} bytes of \
                     objects (the pack was cut short or its index is damaged)",
                    record.offset,
                    end.map_or_else(|| "overflow".to_string(), |e| e.to_string()),
                    file_len
                ),
            ));
        }
        Ok(())
    }
}

/// Writes to a file at a moving position, with positioned writes (what a
/// torn record is written through).
struct WriteAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Write for WriteAt<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads from a file at a moving position, with positioned reads.
pub(crate) struct ReadAt<'a> {
    pub(crate) file: &'a File,
    pub(crate) pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
