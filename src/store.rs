//! The [`Store`] handle: opens a store and puts and gets objects.
//!
//! The handle composes the format modules ([`crate::object`],
//! [`crate::stamp`]), the path module ([`crate::layout`]), the publishing
//! module ([`crate::publish`]) and its packs (`crate::packs`); it holds no
//! format logic of its own.
//!
//! Objects whose encoding is at most [`StoreOptions::pack_max`] go to the
//! handle's pack; larger ones are loose files. A get looks in the packs'
//! table, then for a loose file, then in the table brought up to date.
//!
//! # Invariants
//! - An object file is never written in place: it is created read-only
//!   (mode 0444) and whole in `tmp/`, and renamed to `objects/ab/cdef…`.
//! - No read returns bytes that were not checked against their id.
//! - A put of an object that already exists reads the existing copy; if it
//!   verifies, it is freshened (a loose file's modification time, a packed
//!   object's record; so gc's grace period counts from the last put), and if
//!   it does not, the good bytes replace it.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use crate::dirfd::FanoutDirs;
use crate::error::{Error, IoContext, Result};
use crate::id::{ID_LEN, IdSpec, ObjectId};
use crate::layout::Layout;
use crate::lock::{WriterGuard, WriterLock};
use crate::object::{self, HEADER_LEN, Header, Kind, Object, ObjectBuf, ObjectRef};
use crate::packs::{DEFAULT_PACK_MAX, Found, Packs, PutOutcome};
use crate::publish::{self, Access, Durability, SyncQueue};
use crate::stamp;
use crate::stats::{self, StatsRecorder, StatsReport};

mod many;
pub(crate) use many::workers;
pub use many::{MAX_WORKERS, PARALLEL_BYTES, PER_OBJECT, PUT_PER_OBJECT};

/// A put of an existing object refreshes its mtime when it is older than this.
pub const FRESHEN_ON_PUT: Duration = Duration::from_secs(60);
/// A read refreshes an object's mtime (its last use) at most this often.
pub const FRESHEN_ON_READ: Duration = Duration::from_secs(60 * 60);
/// Payloads up to this size are read into memory and checked in one pass;
/// larger ones are checked in a first pass and copied out in a second.
pub const IN_MEMORY_LIMIT: u64 = 16 << 20;
/// The smallest read buffer [`Store::check_object`] reads a file with: most
/// objects are smaller, so one `read` takes the whole file.
const CHECK_BUFFER: usize = 256 << 10;
const STREAM_BUF: usize = 256 << 10;

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreOptions {
    /// What survives a power loss; see [`Durability`].
    pub durability: Durability,
    /// Objects whose encoding (header, links and payload) is at most this
    /// many bytes are appended to a pack; larger ones are written as loose
    /// files. `0` writes every object loose. Either is read by every handle
    /// whatever this says; see `docs/FORMAT.md`, "Pack files".
    pub pack_max: u64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            durability: Durability::default(),
            pack_max: DEFAULT_PACK_MAX,
        }
    }
}

impl StoreOptions {
    /// Options with the given durability.
    pub fn with_durability(durability: Durability) -> StoreOptions {
        StoreOptions {
            durability,
            ..StoreOptions::default()
        }
    }

    /// The same options, writing every object as a loose file (no packs).
    pub fn loose(self) -> StoreOptions {
        self.with_pack_max(0)
    }

    /// The same options with another [`StoreOptions::pack_max`].
    pub fn with_pack_max(self, pack_max: u64) -> StoreOptions {
        StoreOptions { pack_max, ..self }
    }
}

/// What an object is, without its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's id.
    pub id: ObjectId,
    /// Its kind.
    pub kind: Kind,
    /// The ids it links to.
    pub links: Vec<ObjectId>,
    /// Payload size in bytes.
    pub payload_len: u64,
    /// The file holding it: its loose object file, or its pack's data file.
    pub path: PathBuf,
    /// Where its encoding starts in that pack, for a packed object.
    pub packed_at: Option<u64>,
}

/// An open rask-store.
///
/// # Concurrency
/// Any number of `Store` handles, in any number of processes, may put and
/// get objects in the same store at once. A `Store` is `Send + Sync`.
#[derive(Debug)]
pub struct Store {
    layout: Layout,
    writer_lock: WriterLock,
    options: StoreOptions,
    sync_queue: SyncQueue,
    stats: StatsRecorder,
    /// Open fanout directories, for opening objects by name (see
    /// [`crate::dirfd`]).
    fanout_dirs: FanoutDirs,
    /// The packs, and this handle's own (see [`crate::packs`]).
    packs: Packs,
    /// The format version the stamp said at open (raised to the current one
    /// before the first pack is made).
    format: AtomicU32,
}

enum Existing {
    Absent,
    Good,
    Damaged,
}

impl Store {
    /// Opens the store at `root`, creating it first if there is none.
    ///
    /// # Errors
    /// [`Error::Io`] when the directories cannot be made;
    /// [`Error::UnsupportedFormat`] when `root` holds a store of another format.
    pub fn create(root: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let layout = Layout::new(root.as_ref());
        match stamp::check(&layout) {
            Ok(format) => return Ok(Store::with_layout(layout, options, format)),
            Err(Error::NotAStore { .. }) => {}
            Err(e) => return Err(e),
        }
        fs::create_dir_all(layout.root()).at("create the store directory", layout.root())?;
        fs::create_dir_all(layout.tmp_dir()).at("create directory", layout.tmp_dir())?;
        fs::create_dir_all(layout.index_dir()).at("create directory", layout.index_dir())?;
        for byte in 0..=u8::MAX {
            let dir = layout.fanout_dir(byte);
            fs::create_dir_all(&dir).at("create directory", &dir)?;
        }
        stamp::write(&layout)?;
        Ok(Store::with_layout(layout, options, stamp::STORE_FORMAT))
    }

    /// Opens an existing store.
    ///
    /// # Errors
    /// [`Error::NotAStore`] when `root` holds no store,
    /// [`Error::UnsupportedFormat`] when it holds one of another format.
    pub fn open(root: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let layout = Layout::new(root.as_ref());
        let format = stamp::check(&layout)?;
        Ok(Store::with_layout(layout, options, format))
    }

    fn with_layout(layout: Layout, options: StoreOptions, format: u32) -> Store {
        Store {
            packs: Packs::new(&layout),
            layout,
            writer_lock: WriterLock::default(),
            options,
            sync_queue: SyncQueue::default(),
            stats: StatsRecorder::default(),
            fanout_dirs: FanoutDirs::default(),
            format: AtomicU32::new(format),
        }
    }

    /// The packs of this handle.
    pub(crate) fn packs(&self) -> &Packs {
        &self.packs
    }

    /// Stamps a store opened at an older format with the current one, before
    /// its first pack is made: a build that does not read packs must refuse
    /// the store rather than miss its objects.
    pub(crate) fn stamp_for_packs(&self) -> Result<()> {
        if self.format.load(Ordering::Acquire) < stamp::STORE_FORMAT {
            stamp::write(&self.layout)?;
            self.format.store(stamp::STORE_FORMAT, Ordering::Release);
        }
        Ok(())
    }

    /// Whether an object with this encoding length goes to a pack.
    fn packs_object(&self, encoded_len: u64) -> bool {
        encoded_len <= self.options.pack_max
    }

    /// Puts an object into this handle's pack.
    fn put_packed(
        &self,
        id: ObjectId,
        kind: Kind,
        links: &[ObjectId],
        payload: &[u8],
    ) -> Result<ObjectId> {
        let outcome = self
            .packs
            .put(id, kind, links, payload, self.options.durability, &|| {
                self.stamp_for_packs()
            })?;
        if let PutOutcome::Written { new: true } = outcome {
            let len = object::encoded_len(links.len(), payload.len());
            self.stats.object_changed(kind, len, 1);
        }
        Ok(id)
    }

    /// Files published under [`Durability::Batch`] and not yet synced.
    pub(crate) fn sync_queue(&self) -> &SyncQueue {
        &self.sync_queue
    }

    /// Takes the shared writers/gc lock for one write (see [`crate::lock`]);
    /// blocks while gc holds it exclusively.
    pub(crate) fn writing(&self) -> Result<WriterGuard<'_>> {
        self.writer_lock.enter(&self.layout)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// The paths of this store.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where the object `id` lives (whether or not it exists).
    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        self.layout.object_path(id)
    }

    /// Stores an object and returns its id.
    ///
    /// Links are not checked for existence; a caller that links to objects
    /// it did not just put should check them with [`Store::contains_object`].
    ///
    /// # Errors
    /// [`Error::Io`] when the object cannot be written.
    pub fn put_object(&self, kind: Kind, links: &[ObjectId], payload: &[u8]) -> Result<ObjectId> {
        let _writing = self.writing()?;
        let id = object::compute_id(kind, links, payload);
        if self.packs_object(object::encoded_len(links.len(), payload.len())) {
            return self.put_packed(id, kind, links, payload);
        }
        let path = self.layout.object_path(&id);
        let header = Header {
            kind,
            link_count: links.len() as u32,
            payload_len: payload.len() as u64,
        };
        let existing = self.check_existing(&id, &path, &header)?;
        if let Existing::Good = existing {
            return Ok(id);
        }
        let mut temp = publish::read_only_temp_file(self.layout.tmp_dir(), "obj-")?;
        let prefix = object::encode_prefix(kind, links, payload.len() as u64);
        crate::fault::Point::ObjectWrite.tear(&mut temp, &[&prefix, payload]);
        write_parts(temp.as_file_mut(), &prefix, payload).at("write", temp.path())?;
        self.publish_object(temp, &path, &header, existing)?;
        Ok(id)
    }

    /// Stores an object whose payload is the rest of `reader`, in constant
    /// memory however large it is.
    ///
    /// # Errors
    /// [`Error::Io`] when reading the input (path `(input)`) or writing the
    /// object fails.
    pub fn put_object_from_reader(
        &self,
        kind: Kind,
        links: &[ObjectId],
        reader: impl Read,
    ) -> Result<ObjectId> {
        self.put_streamed(kind, links, reader, Path::new("(input)"))
    }

    /// Stores the contents of the file at `source` as an object, in constant
    /// memory however large it is.
    ///
    /// # Errors
    /// [`Error::Io`] naming `source` when it cannot be read.
    pub fn put_object_from_file(
        &self,
        kind: Kind,
        links: &[ObjectId],
        source: &Path,
    ) -> Result<ObjectId> {
        let file = File::open(source).at("open", source)?;
        let meta = file.metadata().at("read metadata of", source)?;
        if meta.is_dir() {
            let err = io::Error::new(io::ErrorKind::IsADirectory, "it is a directory");
            return Err(Error::io("read", source, err));
        }
        self.put_streamed(kind, links, file, source)
    }

    fn put_streamed(
        &self,
        kind: Kind,
        links: &[ObjectId],
        mut reader: impl Read,
        source: &Path,
    ) -> Result<ObjectId> {
        // A payload small enough for a pack is read into memory first; one
        // that turns out larger goes on to a temp file from there.
        let room = self
            .options
            .pack_max
            .saturating_sub(object::encoded_len(links.len(), 0));
        let mut first = Vec::new();
        if room > 0 {
            (&mut reader)
                .take(room + 1)
                .read_to_end(&mut first)
                .at("read", source)?;
            if first.len() as u64 <= room {
                return self.put_object(kind, links, &first);
            }
        }
        let mut temp = publish::read_only_temp_file(self.layout.tmp_dir(), "obj-")?;
        temp.write_all(&object::encode_prefix(kind, links, 0))
            .at("write", temp.path())?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(&first);
        temp.write_all(&first).at("write", temp.path())?;
        let mut payload_len = first.len() as u64;
        drop(first);
        let mut buf = vec![0u8; STREAM_BUF];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", source, e)),
            };
            hasher.update(&buf[..n]);
            crate::fault::Point::ObjectWrite.tear(&mut temp, &[&buf[..n]]);
            temp.write_all(&buf[..n]).at("write", temp.path())?;
            payload_len += n as u64;
        }
        let header = Header {
            kind,
            link_count: links.len() as u32,
            payload_len,
        };
        temp.seek(SeekFrom::Start(0)).at("seek in", temp.path())?;
        temp.write_all(&header.encode()).at("write", temp.path())?;
        // Not held while streaming: gc waits only for the check and the rename.
        let _writing = self.writing()?;
        let id = object::object_id(kind, links, payload_len, &hasher.finalize());
        let path = self.layout.object_path(&id);
        let existing = self.check_existing(&id, &path, &header)?;
        if let Existing::Good = existing {
            return Ok(id);
        }
        self.publish_object(temp, &path, &header, existing)?;
        Ok(id)
    }

    fn publish_object(
        &self,
        temp: tempfile::NamedTempFile,
        path: &Path,
        header: &Header,
        existing: Existing,
    ) -> Result<()> {
        publish::publish(
            temp,
            path,
            Access::CreatedReadOnly,
            self.options.durability,
            &self.sync_queue,
        )?;
        if let Existing::Absent = existing {
            let file_len = header.file_len().unwrap_or(0);
            self.stats.object_changed(header.kind, file_len, 1);
        }
        Ok(())
    }

    /// Checks the copy of `id` already at `path`, if any, and freshens a good one.
    fn check_existing(&self, id: &ObjectId, path: &Path, header: &Header) -> Result<Existing> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Absent),
            Err(e) => return Err(Error::io("open object", path, e)),
        };
        let meta = file.metadata().at("read metadata of", path)?;
        if Some(meta.len()) != header.file_len() {
            return Ok(Existing::Damaged);
        }
        match verify_file(id, path, &mut file, meta.len()) {
            Ok(_) => {}
            Err(Error::Corrupt { .. }) => return Ok(Existing::Damaged),
            Err(e) => return Err(e),
        }
        if needs_freshening(&meta, FRESHEN_ON_PUT) {
            file.set_modified(SystemTime::now())
                .at("refresh the modification time of", path)?;
        }
        Ok(Existing::Good)
    }

    /// Reads and verifies an object.
    ///
    /// The whole object is read into memory; use [`Store::write_payload`]
    /// for payloads that may not fit.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the object is absent, [`Error::Corrupt`]
    /// when its bytes do not match its id (both are cache misses, see
    /// [`Error::is_cache_miss`]); [`Error::Io`] for other failures.
    pub fn get_object(&self, id: &ObjectId) -> Result<Object> {
        match self.get_packed(id, false) {
            Ok(Some(object)) => return Ok(object),
            Ok(None) => {}
            // Every packed copy is damaged: a loose file of the same id
            // is the last intact copy there can be.
            Err(damage @ Error::Corrupt { .. }) => {
                let path = self.layout.object_path(id);
                return match self.open_object(id, &path) {
                    Ok((mut file, meta)) => Object::read(*id, &path, &mut file, meta.len())
                        .inspect(|_| freshen_on_read(&file, &meta))
                        .map_err(|_| damage),
                    Err(_) => Err(damage),
                };
            }
            Err(e) => return Err(e),
        }
        let path = self.layout.object_path(id);
        let (mut file, meta) = match self.open_object(id, &path) {
            Ok(opened) => opened,
            // Another process may have packed it since the table was read.
            Err(Error::NotFound { .. }) => {
                return self
                    .get_packed(id, true)?
                    .ok_or(Error::NotFound { id: *id, path });
            }
            Err(e) => return Err(e),
        };
        let object = Object::read(*id, &path, &mut file, meta.len())?;
        freshen_on_read(&file, &meta);
        Ok(object)
    }

    /// A packed object, read, checked and freshened; `None` when no pack
    /// holds it (after bringing the table up to date when `refresh`).
    fn get_packed(&self, id: &ObjectId, refresh: bool) -> Result<Option<Object>> {
        let Some((object, found)) = self.packs.get(id, refresh)? else {
            return Ok(None);
        };
        self.freshen_packed_on_read(id, &found, object.kind(), object.links(), object.payload());
        Ok(Some(object))
    }

    /// Reads and verifies an object into `buf`, a buffer reused from one
    /// get to the next; the result borrows the payload from it.
    ///
    /// The same checks as [`Store::get_object`] with less work per get: the
    /// file is read with one `read` into memory that is already there (no
    /// allocation, no page faults once `buf` has grown to the largest
    /// object), where `get_object` allocates and frees a buffer per object
    /// and reads a file longer than 8 KiB in two `read`s. `buf` keeps the size of the
    /// largest object read through it; use [`Store::write_payload`] for
    /// payloads that may not fit in memory.
    ///
    /// # Errors
    /// As [`Store::get_object`]: [`Error::NotFound`], [`Error::Corrupt`]
    /// (both cache misses), [`Error::Io`]. After an error, `buf` holds no
    /// object; nothing of a damaged file is handed out.
    pub fn get_object_into<'b>(
        &self,
        id: &ObjectId,
        buf: &'b mut ObjectBuf,
    ) -> Result<ObjectRef<'b>> {
        if let Some(found) = self.packs.find(id, false)? {
            return match self.read_packed_copy(id, &found, buf) {
                Ok(read_from) => self.packed_read(id, &read_from, buf),
                // Every packed copy is damaged: a loose file of the same
                // id is the last intact copy there can be.
                Err(damage @ Error::Corrupt { .. }) => {
                    let path = self.layout.object_path(id);
                    match self.open_object(id, &path) {
                        Ok((mut file, meta)) => {
                            if buf.read(*id, &path, &mut file, meta.len()).is_err() {
                                return Err(damage);
                            }
                            freshen_on_read(&file, &meta);
                            buf.last_read().ok_or(damage)
                        }
                        Err(_) => Err(damage),
                    }
                }
                Err(e) => Err(e),
            };
        }
        let path = self.layout.object_path(id);
        let (mut file, meta) = match self.open_object(id, &path) {
            Ok(opened) => opened,
            Err(Error::NotFound { .. }) => {
                let Some(found) = self.packs.find(id, true)? else {
                    return Err(Error::NotFound { id: *id, path });
                };
                let read_from = self.read_packed_copy(id, &found, buf)?;
                return self.packed_read(id, &read_from, buf);
            }
            Err(e) => return Err(e),
        };
        let object = buf.read(*id, &path, &mut file, meta.len())?;
        freshen_on_read(&file, &meta);
        Ok(object)
    }

    /// Reads a packed object into `buf` and returns the copy it read: the
    /// one `found` names or, when that is damaged, the first intact other
    /// copy, as [`Packs::get`] does. [`Error::Corrupt`] when every packed
    /// copy is damaged.
    fn read_packed_copy(&self, id: &ObjectId, found: &Found, buf: &mut ObjectBuf) -> Result<Found> {
        let damage = match found.read_into(id, buf) {
            Ok(_) => return Ok(found.clone()),
            Err(e @ Error::Corrupt { .. }) => e,
            Err(e) => return Err(e),
        };
        let intact = self
            .packs
            .other_copies(id, found)?
            .into_iter()
            .find(|other| other.read_into(id, buf).is_ok());
        let Some(other) = intact else {
            return Err(damage);
        };
        self.packs.prefer(id, &other);
        Ok(other)
    }

    /// The object [`Store::read_packed_copy`] left in `buf`, freshened.
    fn packed_read<'b>(
        &self,
        id: &ObjectId,
        read_from: &Found,
        buf: &'b ObjectBuf,
    ) -> Result<ObjectRef<'b>> {
        let Some(object) = buf.last_read() else {
            return Err(Error::io(
                "read object",
                &read_from.pack.data_path,
                io::Error::other("the read buffer lost the object it had just verified"),
            ));
        };
        self.freshen_packed_on_read(
            id,
            read_from,
            object.kind(),
            object.links(),
            object.payload(),
        );
        Ok(object)
    }

    /// A read of a packed object whose newest record is older than
    /// [`FRESHEN_ON_READ`] appends a new one (a copy in this handle's pack),
    /// as a read of a loose object refreshes its modification time: gc's
    /// size cap evicts by last use. Best effort, and skipped while gc holds
    /// the store: a read never waits for it.
    fn freshen_packed_on_read(
        &self,
        id: &ObjectId,
        found: &Found,
        kind: Kind,
        links: &[ObjectId],
        payload: &[u8],
    ) {
        let age = Duration::from_nanos(crate::pack::now_unix_nanos().saturating_sub(found.written));
        if age < FRESHEN_ON_READ {
            return;
        }
        let Some(_writing) = self.writer_lock.try_enter(&self.layout) else {
            return;
        };
        let prefix = object::encode_prefix(kind, links, payload.len() as u64);
        let _ = self.packs.append(
            *id,
            &prefix,
            payload,
            crate::pack::now_unix_nanos(),
            Durability::None,
            &|| self.stamp_for_packs(),
        );
    }

    /// A packed object, looked up in the table as it is and, when the loose
    /// file is absent too, again after bringing the table up to date.
    ///
    /// When every packed copy is damaged and a loose file of the id
    /// exists, `None`: the loose file is read instead.
    fn packed_or_loose(&self, id: &ObjectId) -> Result<Option<(Object, Found)>> {
        match self.packs.get(id, false) {
            Ok(Some(got)) => return Ok(Some(got)),
            Ok(None) => {}
            Err(damage @ Error::Corrupt { .. }) => {
                return if self.contains_loose(id)? {
                    Ok(None)
                } else {
                    Err(damage)
                };
            }
            Err(e) => return Err(e),
        }
        if self.contains_loose(id)? {
            return Ok(None);
        }
        match self.packs.get(id, true)? {
            Some(got) => Ok(Some(got)),
            None => Err(Error::NotFound {
                id: *id,
                path: self.layout.object_path(id),
            }),
        }
    }

    /// Verifies an object, then writes its payload to `out`.
    ///
    /// Nothing is written unless the whole object verified first, so `out`
    /// never receives wrong bytes. Memory use is bounded by
    /// [`IN_MEMORY_LIMIT`] whatever the payload size.
    ///
    /// # Errors
    /// As [`Store::get_object`]; a failed write to `out` is [`Error::Io`]
    /// with the path `(output)`.
    pub fn write_payload(&self, id: &ObjectId, out: &mut dyn Write) -> Result<ObjectInfo> {
        if let Some((object, found)) = self.packed_or_loose(id)? {
            out.write_all(object.payload())
                .and_then(|()| out.flush())
                .map_err(|e| Error::io("write the payload to", "(output)", e))?;
            return Ok(packed_info(&object, &found));
        }
        let path = self.layout.object_path(id);
        let (mut file, meta) = self.open_object(id, &path)?;
        let info = if meta.len() <= IN_MEMORY_LIMIT {
            let object = Object::read(*id, &path, &mut file, meta.len())?;
            out.write_all(object.payload())
                .map_err(|e| Error::io("write the payload to", "(output)", e))?;
            info_of(&object, path.clone())
        } else {
            let (header, links) = verify_file(id, &path, &mut file, meta.len())?;
            file.seek(SeekFrom::Start(header.payload_offset()))
                .at("seek in", &path)?;
            copy_exact(&mut file, &path, out, header.payload_len)?;
            ObjectInfo {
                id: *id,
                kind: header.kind,
                links,
                payload_len: header.payload_len,
                path: path.clone(),
                packed_at: None,
            }
        };
        out.flush()
            .map_err(|e| Error::io("write the payload to", "(output)", e))?;
        freshen_on_read(&file, &meta);
        Ok(info)
    }

    /// Verifies an object and describes it, reading its payload in bounded memory.
    ///
    /// # Errors
    /// As [`Store::get_object`].
    pub fn object_info(&self, id: &ObjectId) -> Result<ObjectInfo> {
        if let Some((object, found)) = self.packed_or_loose(id)? {
            return Ok(packed_info(&object, &found));
        }
        let path = self.layout.object_path(id);
        let (mut file, meta) = self.open_object(id, &path)?;
        let (header, links) = verify_file(id, &path, &mut file, meta.len())?;
        Ok(ObjectInfo {
            id: *id,
            kind: header.kind,
            links,
            payload_len: header.payload_len,
            path,
            packed_at: None,
        })
    }

    /// Verifies an object the way [`Store::object_info`] does, reading it
    /// into `scratch` (reused from call to call) and hashing on the calling
    /// thread only: the per-object check of verify, which keeps every core
    /// busy on its own.
    ///
    /// Costs an `open`, one `read` and a `close` when the file fits in
    /// `scratch` (at least [`CHECK_BUFFER`] bytes, grown to the largest file
    /// seen) and its header describes exactly the bytes read: a read of a
    /// regular file is short only at its end. Anything else (a larger file,
    /// a length that does not match) is checked again the careful way, with
    /// an `fstat` and reads until the end, and reported from there.
    ///
    /// # Errors
    /// As [`Store::get_object`].
    pub(crate) fn check_object(
        &self,
        id: &ObjectId,
        scratch: &mut Vec<u8>,
    ) -> Result<(Header, Vec<ObjectId>)> {
        // The path is made only for a problem or the careful check: this
        // runs once per object of the store.
        let mut file = self.open_object_by_name(id)?;
        if scratch.len() < CHECK_BUFFER {
            scratch.resize(CHECK_BUFFER, 0);
        }
        let got = loop {
            match file.read(scratch) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read object", self.object_path(id), e)),
            }
        };
        if got < scratch.len()
            && let Some(checked) = object::check_read_whole(id, &scratch[..got])
        {
            return checked.map_err(|reason| {
                Error::corrupt(format_args!("object {id}"), &self.object_path(id), reason)
            });
        }
        let path = self.layout.object_path(id);
        file.seek(SeekFrom::Start(0)).at("seek in", &path)?;
        let len = file.metadata().at("read metadata of", &path)?.len();
        if len > IN_MEMORY_LIMIT {
            return verify_file(id, &path, &mut file, len);
        }
        object::check_file(id, &path, &mut file, len, scratch)
    }

    /// Reads an object's header and links without hashing its payload: the
    /// cheap read gc uses to walk the graph. The bytes are NOT verified; use
    /// [`Store::object_info`] for that.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Corrupt`] when the header or length is bad.
    pub fn object_links_unverified(&self, id: &ObjectId) -> Result<(Header, Vec<ObjectId>)> {
        if let Some(got) = self.packs.links_unverified(id, false)? {
            return Ok(got);
        }
        let path = self.layout.object_path(id);
        let (mut file, meta) = match self.open_object(id, &path) {
            Ok(opened) => opened,
            Err(Error::NotFound { .. }) => {
                return self
                    .packs
                    .links_unverified(id, true)?
                    .ok_or(Error::NotFound { id: *id, path });
            }
            Err(e) => return Err(e),
        };
        let mut head = [0u8; HEADER_LEN];
        let got = read_up_to(&mut file, &mut head).at("read object", &path)?;
        let header = object::check_header(&head[..got], meta.len(), id, &path)?;
        let mut link_bytes = vec![0u8; header.link_count as usize * ID_LEN];
        file.read_exact(&mut link_bytes).at("read object", &path)?;
        Ok((header, object::decode_links(&link_bytes)))
    }

    /// Whether an object file named `id` exists. Does not read or verify it;
    /// a later read may still find it corrupt.
    ///
    /// # Errors
    /// [`Error::Io`] when the file's existence cannot be determined.
    pub fn contains_object(&self, id: &ObjectId) -> Result<bool> {
        if self.packs.contains(id, false)? || self.contains_loose(id)? {
            return Ok(true);
        }
        self.packs.contains(id, true)
    }

    /// When an object was last used and how many bytes it takes: a loose
    /// file's modification time (puts and, hourly, reads refresh it) and
    /// length, or a packed object's newest record (puts and, hourly, reads
    /// append one). `None` when it is absent.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be looked up.
    pub(crate) fn object_last_use(&self, id: &ObjectId) -> Result<Option<(SystemTime, u64)>> {
        if let Some(found) = self.packs.find(id, false)? {
            let used = SystemTime::UNIX_EPOCH + Duration::from_nanos(found.written);
            return Ok(Some((used, found.len)));
        }
        let path = self.layout.object_path(id);
        match fs::symlink_metadata(&path) {
            Ok(meta) => Ok(Some((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("look up object", &path, e)),
        }
    }

    /// Whether a loose object file named `id` exists.
    pub(crate) fn contains_loose(&self, id: &ObjectId) -> Result<bool> {
        let path = self.layout.object_path(id);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("look up object", &path, e)),
        }
    }

    /// Turns a full id or a unique prefix into an id.
    ///
    /// # Errors
    /// [`Error::PrefixNotFound`] when no object matches,
    /// [`Error::AmbiguousId`] when several do.
    pub fn resolve(&self, spec: &IdSpec) -> Result<ObjectId> {
        let prefix = match spec {
            IdSpec::Full(id) => return Ok(*id),
            IdSpec::Prefix(prefix) => prefix,
        };
        let dir = self.layout.objects_dir().join(&prefix[..2]);
        let mut found = self.packs.ids_with_prefix(prefix)?;
        let entries: Vec<fs::DirEntry> = match fs::read_dir(&dir) {
            Ok(entries) => entries.collect::<io::Result<_>>().at("list", &dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        for entry in entries {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(&prefix[2..])
                && let Some(id) = Layout::id_from_object_name(&prefix[..2], name)
            {
                found.push(id);
            }
        }
        found.sort_unstable();
        found.dedup();
        match found.len() {
            0 => Err(Error::PrefixNotFound {
                prefix: prefix.clone(),
                dir,
            }),
            1 => Ok(found[0]),
            count => Err(Error::AmbiguousId {
                prefix: prefix.clone(),
                count,
            }),
        }
    }

    /// Makes every object written so far durable (for [`Durability::Batch`];
    /// a no-op otherwise). Called automatically when the store is dropped,
    /// but errors are only reported when it is called explicitly.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file that could not be synced.
    pub fn flush(&self) -> Result<()> {
        // Packs first: a ref queued for syncing may name packed objects.
        self.packs.sync()?;
        self.sync_queue.flush()?;
        self.stats.flush(&self.layout)
    }

    /// This handle's statistics counters; flushed to the store with [`Store::flush`].
    pub fn stats_recorder(&self) -> &StatsRecorder {
        &self.stats
    }

    /// The store's statistics, summed over every process that flushed.
    ///
    /// # Errors
    /// [`Error::Io`] when the statistics journal cannot be read.
    pub fn stats(&self) -> Result<StatsReport> {
        stats::read(&self.layout)
    }

    fn open_object(&self, id: &ObjectId, path: &Path) -> Result<(File, fs::Metadata)> {
        let file = self.open_object_file(id, path)?;
        let meta = file.metadata().at("read metadata of", path)?;
        Ok((file, meta))
    }

    fn open_object_file(&self, id: &ObjectId, path: &Path) -> Result<File> {
        let name = Layout::object_file_name(id);
        self.fanout_dirs
            .open_object(id.as_bytes()[0], name.as_str(), || path)
            .map_err(|e| open_error(id, path, e))
    }

    /// As [`Store::open_object_file`], making the object's full path only
    /// when the open needs it (a miss) or fails.
    fn open_object_by_name(&self, id: &ObjectId) -> Result<File> {
        let name = Layout::object_file_name(id);
        self.fanout_dirs
            .open_object(id.as_bytes()[0], name.as_str(), || {
                self.layout.object_path(id)
            })
            .map_err(|e| open_error(id, &self.layout.object_path(id), e))
    }
}

fn open_error(id: &ObjectId, path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::NotFound {
            id: *id,
            path: path.to_path_buf(),
        }
    } else {
        Error::io("open object", path, e)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

fn packed_info(object: &Object, found: &Found) -> ObjectInfo {
    ObjectInfo {
        packed_at: Some(found.offset),
        ..info_of(object, found.pack.data_path.clone())
    }
}

fn info_of(object: &Object, path: PathBuf) -> ObjectInfo {
    ObjectInfo {
        id: object.id(),
        kind: object.kind(),
        links: object.links().to_vec(),
        payload_len: object.payload().len() as u64,
        path,
        packed_at: None,
    }
}

/// Checks an open object file against `id` in bounded memory.
fn verify_file(
    id: &ObjectId,
    path: &Path,
    file: &mut File,
    file_len: u64,
) -> Result<(Header, Vec<ObjectId>)> {
    let what = format_args!("object {id}");
    let mut head = [0u8; HEADER_LEN];
    let got = read_up_to(file, &mut head).at("read object", path)?;
    let header = object::check_header(&head[..got], file_len, id, path)?;
    let mut link_bytes = vec![0u8; header.link_count as usize * ID_LEN];
    file.read_exact(&mut link_bytes).at("read object", path)?;
    let links = object::decode_links(&link_bytes);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; STREAM_BUF.min(header.payload_len as usize).max(1)];
    let mut left = header.payload_len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let got = read_up_to(file, &mut buf[..want]).at("read object", path)?;
        if got == 0 {
            return Err(Error::corrupt(what, path, "file shrank while it was read"));
        }
        hasher.update(&buf[..got]);
        left -= got as u64;
    }
    let actual = object::object_id(header.kind, &links, header.payload_len, &hasher.finalize());
    if actual != *id {
        return Err(Error::corrupt(
            what,
            path,
            format!("content hashes to {actual}, not to the id it is stored under"),
        ));
    }
    Ok((header, links))
}

/// Writes `head` then `body` with one `writev` (no copy into one buffer),
/// finishing with plain writes if the kernel took less than all of it.
fn write_parts(file: &mut File, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut parts = [io::IoSlice::new(head), io::IoSlice::new(body)];
    let mut parts = &mut parts[..];
    while !parts.is_empty() {
        match file.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn copy_exact(file: &mut File, path: &Path, out: &mut dyn Write, len: u64) -> Result<()> {
    let mut buf = vec![0u8; STREAM_BUF];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let got = read_up_to(file, &mut buf[..want]).at("read object", path)?;
        if got == 0 {
            return Err(Error::corrupt(
                format_args!("object at {}", path.display()),
                path,
                "file shrank while it was read",
            ));
        }
        out.write_all(&buf[..got])
            .map_err(|e| Error::io("write the payload to", "(output)", e))?;
        left -= got as u64;
    }
    Ok(())
}

fn needs_freshening(meta: &fs::Metadata, interval: Duration) -> bool {
    match meta.modified() {
        Ok(mtime) => SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age > interval),
        Err(_) => false,
    }
}

/// Records a read as the object's last use, at most once per [`FRESHEN_ON_READ`].
/// Best effort: a read-only store still serves reads.
fn freshen_on_read(file: &File, meta: &fs::Metadata) {
    if needs_freshening(meta, FRESHEN_ON_READ) {
        let _ = file.set_modified(SystemTime::now());
    }
}
