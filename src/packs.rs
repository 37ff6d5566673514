//! The packs of one open store: which pack holds which object, and the pack
//! this handle appends to.
//!
//! Objects whose encoding is at most [`crate::StoreOptions::pack_max`]
//! bytes are appended to packs (`objects/pack/<name>.rsp` and `.rsi`; the
//! file formats are [`crate::pack`]'s); larger ones stay loose files. Both
//! have the same id and bytes, and every read re-hashes either.
//!
//! # The table
//! A handle keeps one table of id → (pack, offset, length), read from every
//! pack index the first time it needs an object and brought up to date on a
//! miss: new packs are opened, and the records other writers appended since
//! are read from where this handle stopped. A pack that was removed (gc or
//! repair rewrote it) drops out of the table on the next miss; the data
//! files a handle has open stay readable after their removal, and their
//! bytes are still checked on every read.
//!
//! # Writing
//! The first packed put of a handle creates its own pack and claims it with
//! an exclusive `flock` on the data file (see [`crate::pack::PackWriter`]);
//! no other writer appends to it, and gc and repair leave it alone while the
//! claim is held. The handle rolls to a new pack at [`PACK_ROLL`] bytes;
//! the claim ends when the handle is dropped or its process dies.
//!
//! # Invariants
//! - A record is appended only after the bytes it names (so a torn append
//!   reads as absent).
//! - An object is never found through a pack without its bytes being hashed
//!   against its id.
//! - A put that finds its object in a pack checks those bytes, and that the
//!   pack is still in the store, before it counts as done.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, TryLockError};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::id::{ID_LEN, IdMap, ObjectId};
use crate::layout::{Layout, PACK_DATA_SUFFIX, PACK_INDEX_SUFFIX};
use crate::lock;
use crate::object::{self, HEADER_LEN, Header, Kind, Object, ObjectBuf, ObjectRef};
use crate::pack::{self, PackRecord, PackWriter, ReadAt};
use crate::publish::Durability;
use crate::walk;

/// The encoding size up to which objects go to packs by default.
pub const DEFAULT_PACK_MAX: u64 = 64 << 10;
/// A handle starts a new pack once its current one holds this many bytes.
pub const PACK_ROLL: u64 = 256 << 20;

/// One pack of the table.
#[derive(Debug)]
pub(crate) struct PackFile {
    /// The pack's name: its files are `<name>.rsp` and `<name>.rsi`.
    pub(crate) name: String,
    pub(crate) data_path: PathBuf,
    pub(crate) index_path: PathBuf,
    pub(crate) data: File,
    index: File,
    /// The data file's device and inode when it was opened: how a handle
    /// tells that gc or repair removed the pack since.
    file_id: (u64, u64),
}

impl PackFile {
    /// Whether the pack is still in the store (its data file still names
    /// the file this handle opened).
    fn still_there(&self) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        match fs::symlink_metadata(&self.data_path) {
            Ok(meta) => Ok((meta.dev(), meta.ino()) == self.file_id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("look up", &self.data_path, e)),
        }
    }
}

fn file_id(file: &File, path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().at("read metadata of", path)?;
    Ok((meta.dev(), meta.ino()))
}

#[derive(Debug)]
struct Slot {
    pack: Arc<PackFile>,
    /// How far the index file has been read (a record boundary).
    index_read: u64,
    /// Removed from the store since it was opened.
    gone: bool,
}

#[derive(Clone, Copy, Debug)]
struct Loc {
    slot: u32,
    offset: u64,
    len: u64,
    written: u64,
}

#[derive(Debug, Default)]
struct Table {
    loaded: bool,
    slots: Vec<Slot>,
    by_name: HashMap<String, u32>,
    ids: IdMap<Loc>,
}

impl Table {
    fn found(&self, id: &ObjectId) -> Option<Found> {
        let loc = self.ids.get(id)?;
        Some(Found {
            pack: Arc::clone(&self.slots[loc.slot as usize].pack),
            offset: loc.offset,
            len: loc.len,
            written: loc.written,
        })
    }

    fn insert(&mut self, slot: u32, records: &[PackRecord]) {
        for record in records {
            self.ids.insert(
                record.id,
                Loc {
                    slot,
                    offset: record.offset,
                    len: record.len,
                    written: record.written_unix_nanos,
                },
            );
        }
    }
}

/// Where a packed object is.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub(crate) pack: Arc<PackFile>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    /// The record's write time (Unix nanoseconds).
    pub(crate) written: u64,
}

impl Found {
    /// Reads and verifies the object into `buf`.
    pub(crate) fn read_into<'b>(
        &self,
        id: &ObjectId,
        buf: &'b mut ObjectBuf,
    ) -> Result<ObjectRef<'b>> {
        let mut at = ReadAt {
            file: &self.pack.data,
            pos: self.offset,
        };
        buf.read(*id, &self.pack.data_path, &mut at, self.len)
            .map_err(|e| in_pack(e, self))
    }

    pub(crate) fn read(&self, id: &ObjectId) -> Result<Object> {
        let mut at = ReadAt {
            file: &self.pack.data,
            pos: self.offset,
        };
        Object::read(*id, &self.pack.data_path, &mut at, self.len).map_err(|e| in_pack(e, self))
    }
}

/// Says where in its pack a damaged object was found.
fn in_pack(e: Error, found: &Found) -> Error {
    match e {
        Error::Corrupt { what, path, reason } => Error::Corrupt {
            what,
            path,
            reason: format!(
                "{reason} (packed at bytes {}..{})",
                found.offset,
                found.offset + found.len
            ),
        },
        other => other,
    }
}

#[derive(Debug)]
struct Active {
    writer: PackWriter,
    slot: u32,
    /// Appended to since the last sync.
    dirty: bool,
}

/// What a packed put found.
pub(crate) enum PutOutcome {
    /// The object was already packed, intact, in a pack still in the store.
    Existing,
    /// It was appended; `new` when no copy of it was known before (a copy
    /// replacing a damaged or removed one is not new).
    Written { new: bool },
}

/// The packs of one open store.
#[derive(Debug)]
pub(crate) struct Packs {
    dir: PathBuf,
    tmp_dir: PathBuf,
    table: RwLock<Table>,
    /// The handle's own packs, one per thread appending at the same time
    /// (a put takes the first one free): a handle used from one thread
    /// has one pack, and threads putting side by side each write their
    /// own instead of taking turns.
    writers: [Mutex<Option<Active>>; WRITERS],
}

/// Packs one handle appends to at once, at most: one per thread of
/// [`crate::Store::put_many`] (the caller and up to
/// [`crate::store::MAX_WORKERS`] workers).
const WRITERS: usize = crate::store::MAX_WORKERS + 1;

impl Packs {
    pub(crate) fn new(layout: &Layout) -> Packs {
        Packs {
            dir: layout.pack_dir(),
            tmp_dir: layout.tmp_dir().to_path_buf(),
            table: RwLock::default(),
            writers: Default::default(),
        }
    }

    /// Finds `id` in the table; on a miss with `refresh`, brings the table
    /// up to date and looks again.
    pub(crate) fn find(&self, id: &ObjectId, refresh: bool) -> Result<Option<Found>> {
        {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            if table.loaded {
                if let Some(found) = table.found(id) {
                    return Ok(Some(found));
                }
                if !refresh {
                    return Ok(None);
                }
            }
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        self.refresh(&mut table)?;
        Ok(table.found(id))
    }

    /// Whether a pack in the store holds `id`: a table hit counts only if
    /// its pack was not removed since the table was read (a caller about to
    /// link to the object must not be told of one gc took).
    pub(crate) fn contains(&self, id: &ObjectId, refresh: bool) -> Result<bool> {
        match self.find(id, refresh)? {
            Some(found) if found.pack.still_there()? => Ok(true),
            Some(_) => {
                let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
                self.refresh(&mut table)?;
                match table.found(id) {
                    Some(found) => found.pack.still_there(),
                    None => Ok(false),
                }
            }
            None => Ok(false),
        }
    }

    /// Brings the table up to date with the pack directory now.
    pub(crate) fn refresh_now(&self) -> Result<()> {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        self.refresh(&mut table)
    }

    /// Drops the whole table, so that the next lookup reads every pack
    /// index again: for a handle that has just rewritten or removed packs
    /// itself. The handle's own pack is closed too (its place in the table
    /// goes with the table); the next packed put starts a new one.
    pub(crate) fn forget(&self) -> Result<()> {
        // The writers first, as `append` takes them, in order.
        let mut writers: Vec<_> = self.writers.iter().map(lock).collect();
        let own: Vec<Active> = writers.iter_mut().filter_map(|w| w.take()).collect();
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        *table = Table::default();
        drop(table);
        drop(writers);
        for active in own {
            if active.dirty {
                active.writer.sync()?;
            }
        }
        Ok(())
    }

    /// Reads and verifies a packed object; `None` when no pack holds it
    /// (after bringing the table up to date when `refresh`).
    ///
    /// When the copy the table names is damaged, every other copy in the
    /// packs is tried, newest first, and the first intact one is read and
    /// named in the table from then on ([`Packs::other_copies`]).
    pub(crate) fn get(&self, id: &ObjectId, refresh: bool) -> Result<Option<(Object, Found)>> {
        let Some(found) = self.find(id, refresh)? else {
            return Ok(None);
        };
        match found.read(id) {
            Ok(object) => Ok(Some((object, found))),
            Err(damage @ Error::Corrupt { .. }) => {
                for other in self.other_copies(id, &found)? {
                    if let Ok(object) = other.read(id) {
                        self.prefer(id, &other);
                        return Ok(Some((object, other)));
                    }
                }
                Err(damage)
            }
            Err(e) => Err(e),
        }
    }

    /// Every copy of `id` in the packs this handle knows other than `but`,
    /// newest first: for a read whose copy turned out damaged. Each pack's
    /// index is read again from disk (only damage pays for that), and a
    /// record naming bytes past its data file's end is left out, as the
    /// table leaves it out.
    ///
    /// # Errors
    /// [`Error::Io`] when an index cannot be read.
    pub(crate) fn other_copies(&self, id: &ObjectId, but: &Found) -> Result<Vec<Found>> {
        let packs: Vec<Arc<PackFile>> = {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            table
                .slots
                .iter()
                .filter(|slot| !slot.gone)
                .map(|slot| Arc::clone(&slot.pack))
                .collect()
        };
        let mut out = Vec::new();
        for pack in packs {
            let (records, _) =
                pack::read_records_from(&pack.index, &pack.index_path, pack::HEADER_LEN as u64)?;
            let data_len = pack
                .data
                .metadata()
                .at("read metadata of", &pack.data_path)?
                .len();
            for record in records.records.iter().filter(|r| r.id == *id) {
                let same = pack.name == but.pack.name && record.offset == but.offset;
                let within = record.offset >= pack::HEADER_LEN as u64
                    && record
                        .offset
                        .checked_add(record.len)
                        .is_some_and(|end| end <= data_len);
                if !same && within {
                    out.push(Found {
                        pack: Arc::clone(&pack),
                        offset: record.offset,
                        len: record.len,
                        written: record.written_unix_nanos,
                    });
                }
            }
        }
        out.sort_by_key(|found| std::cmp::Reverse(found.written));
        Ok(out)
    }

    /// Names `found` as the copy of `id` in the table (an intact copy found
    /// after the one named was damaged), if its pack is still in the table.
    pub(crate) fn prefer(&self, id: &ObjectId, found: &Found) {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(&slot) = table.by_name.get(&found.pack.name) {
            table.ids.insert(
                *id,
                Loc {
                    slot,
                    offset: found.offset,
                    len: found.len,
                    written: found.written,
                },
            );
        }
    }

    /// Reads a packed object's header and links without hashing it (gc's
    /// walk of the graph).
    pub(crate) fn links_unverified(
        &self,
        id: &ObjectId,
        refresh: bool,
    ) -> Result<Option<(Header, Vec<ObjectId>)>> {
        let Some(found) = self.find(id, refresh)? else {
            return Ok(None);
        };
        let path = &found.pack.data_path;
        let mut head = [0u8; HEADER_LEN];
        let got = pack::read_at(&found.pack.data, &mut head, found.offset).at("read pack", path)?;
        let header = object::check_header(&head[..got], found.len, id, path)
            .map_err(|e| in_pack(e, &found))?;
        let mut links = vec![0u8; header.link_count as usize * ID_LEN];
        let got = pack::read_at(
            &found.pack.data,
            &mut links,
            found.offset + HEADER_LEN as u64,
        )
        .at("read pack", path)?;
        if got < links.len() {
            let e = Error::corrupt(format_args!("object {id}"), path, "pack ends inside it");
            return Err(in_pack(e, &found));
        }
        Ok(Some((header, object::decode_links(&links))))
    }

    /// Puts an object into this handle's pack unless an intact, recent copy
    /// is already packed (see [`Packs::freshen`]). `before_first_pack` is
    /// called before the store's first pack is made (the store stamps its
    /// format then).
    pub(crate) fn put(
        &self,
        id: ObjectId,
        kind: Kind,
        links: &[ObjectId],
        payload: &[u8],
        durability: Durability,
        before_first_pack: &dyn Fn() -> Result<()>,
    ) -> Result<PutOutcome> {
        let known = self.find(&id, false)?;
        if let Some(found) = &known {
            let mut buf = ObjectBuf::new();
            match found.read_into(&id, &mut buf) {
                Ok(_) => {
                    if Packs::freshen(found)? {
                        return Ok(PutOutcome::Existing);
                    }
                }
                Err(Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let prefix = object::encode_prefix(kind, links, payload.len() as u64);
        self.append(
            id,
            &prefix,
            payload,
            pack::now_unix_nanos(),
            durability,
            before_first_pack,
        )?;
        Ok(PutOutcome::Written {
            new: known.is_none(),
        })
    }

    /// Whether a found, intact copy counts as put now: its pack must still
    /// be in the store (gc or repair may have rewritten it since the table
    /// was read), and its record younger than
    /// [`crate::store::FRESHEN_ON_PUT`], since a record's write time is what
    /// gc's grace period counts from. Otherwise the object is written again.
    fn freshen(found: &Found) -> Result<bool> {
        let age = Duration::from_nanos(pack::now_unix_nanos().saturating_sub(found.written));
        if age >= crate::store::FRESHEN_ON_PUT {
            return Ok(false);
        }
        lock::still_at(&found.pack.data, &found.pack.data_path).at("look up", &found.pack.data_path)
    }

    /// Appends an encoding to this handle's pack (made or rolled first when
    /// needed) and adds it to the table.
    pub(crate) fn append(
        &self,
        id: ObjectId,
        head: &[u8],
        body: &[u8],
        written_unix_nanos: u64,
        durability: Durability,
        before_first_pack: &dyn Fn() -> Result<()>,
    ) -> Result<PackRecord> {
        let mut writer = self.free_writer();
        let len = (head.len() + body.len()) as u64;
        let full = writer
            .as_ref()
            .is_some_and(|active| active.writer.data_len() + len > PACK_ROLL);
        if full
            && let Some(old) = writer.take()
            && old.dirty
        {
            old.writer.sync()?;
        }
        if writer.is_none() {
            *writer = Some(self.start_pack(durability, before_first_pack)?);
        }
        let Some(active) = writer.as_mut() else {
            unreachable!("a pack was just started");
        };
        let record = active
            .writer
            .append_parts(id, head, body, written_unix_nanos)?;
        match durability {
            Durability::Full => active.writer.sync()?,
            Durability::Batch => active.dirty = true,
            Durability::None => {}
        }
        let slot = active.slot;
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        table.insert(slot, &[record]);
        if let Some(s) = table.slots.get_mut(slot as usize) {
            s.index_read = s.index_read.max(active.writer.index_len());
        }
        Ok(record)
    }

    fn start_pack(
        &self,
        durability: Durability,
        before_first_pack: &dyn Fn() -> Result<()>,
    ) -> Result<Active> {
        if !self.dir.is_dir() {
            before_first_pack()?;
            fs::create_dir_all(&self.dir).at("create directory", &self.dir)?;
        }
        let name = new_pack_name();
        let data_path = self.dir.join(format!("{name}{PACK_DATA_SUFFIX}"));
        let index_path = self.dir.join(format!("{name}{PACK_INDEX_SUFFIX}"));
        let writer = PackWriter::create_in(&data_path, &index_path, &self.tmp_dir)?;
        if durability != Durability::None {
            // The new names must survive a power loss with the bytes.
            crate::publish::sync_dir(&self.dir)?;
        }
        let data = File::open(&data_path).at("open pack", &data_path)?;
        let index = File::open(&index_path).at("open pack index", &index_path)?;
        let file_id = file_id(&data, &data_path)?;
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let slot = table.slots.len() as u32;
        table.slots.push(Slot {
            pack: Arc::new(PackFile {
                name: name.clone(),
                data_path,
                index_path,
                data,
                index,
                file_id,
            }),
            index_read: pack::HEADER_LEN as u64,
            gone: false,
        });
        table.by_name.insert(name, slot);
        Ok(Active {
            writer,
            slot,
            dirty: false,
        })
    }

    /// Makes this handle's appends durable (for [`Durability::Batch`]).
    pub(crate) fn sync(&self) -> Result<()> {
        for writer in &self.writers {
            let mut writer = lock(writer);
            if let Some(active) = writer.as_mut()
                && active.dirty
            {
                active.writer.sync()?;
                active.dirty = false;
            }
        }
        Ok(())
    }

    /// Ends this handle's current packs, so that the next packed put starts
    /// another (gc does this before it rewrites packs, so its own packs are
    /// among them).
    pub(crate) fn close_own_pack(&self) -> Result<()> {
        for writer in &self.writers {
            if let Some(active) = lock(writer).take()
                && active.dirty
            {
                active.writer.sync()?;
            }
        }
        Ok(())
    }

    /// The first of the handle's pack writers no other thread is using,
    /// or the first one when all are (waiting for it).
    fn free_writer(&self) -> MutexGuard<'_, Option<Active>> {
        for writer in &self.writers {
            match writer.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        lock(&self.writers[0])
    }

    /// The bytes of every packed object, one copy each (gc's size cap).
    pub(crate) fn total_bytes(&self) -> Result<u64> {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        self.refresh(&mut table)?;
        Ok(table.ids.values().map(|loc| loc.len).sum())
    }

    /// Every packed id with `prefix` (hex, lowercase), for resolving short ids.
    pub(crate) fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<ObjectId>> {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        self.refresh(&mut table)?;
        Ok(table
            .ids
            .keys()
            .filter(|id| id.to_hex().starts_with(prefix))
            .copied()
            .collect())
    }

    /// Brings the table up to date with the pack directory.
    fn refresh(&self, table: &mut Table) -> Result<()> {
        let names = list_packs(&self.dir)?;
        let mut removed = false;
        for slot in &mut table.slots {
            if !slot.gone && names.binary_search(&slot.pack.name).is_err() {
                slot.gone = true;
                removed = true;
            }
        }
        if removed {
            let slots = &table.slots;
            table.ids.retain(|_, loc| !slots[loc.slot as usize].gone);
        }
        for name in names {
            if table.by_name.contains_key(&name) {
                continue;
            }
            let Some(pack) = open_pack(&self.dir, &name)? else {
                continue;
            };
            let slot = table.slots.len() as u32;
            table.slots.push(Slot {
                pack: Arc::new(pack),
                index_read: pack::HEADER_LEN as u64,
                gone: false,
            });
            table.by_name.insert(name, slot);
        }
        if !table.loaded {
            // The first read takes in every record: room for all of them at
            // once, instead of growing (and for a moment holding twice) a
            // table of a million entries.
            let records: u64 = table
                .slots
                .iter()
                .filter_map(|slot| slot.pack.index.metadata().ok())
                .map(|meta| {
                    meta.len().saturating_sub(pack::HEADER_LEN as u64) / pack::RECORD_LEN as u64
                })
                .sum();
            table.ids.reserve(usize::try_from(records).unwrap_or(0));
        }
        for n in 0..table.slots.len() {
            let slot = &table.slots[n];
            if slot.gone {
                continue;
            }
            let pack = Arc::clone(&slot.pack);
            Packs::read_tail(table, n, &pack)?;
        }
        table.loaded = true;
        Ok(())
    }

    /// Reads the records of slot `n`'s index from where the table stopped,
    /// a megabyte at a time (a large index is never all in memory at once,
    /// beside the table it fills).
    fn read_tail(table: &mut Table, n: usize, pack: &PackFile) -> Result<()> {
        const PIECE: u64 = 1 << 20;
        loop {
            let from = table.slots[n].index_read;
            let (records, read_to) =
                pack::read_records_up_to(&pack.index, &pack.index_path, from, PIECE)?;
            table.slots[n].index_read = read_to;
            if read_to == from {
                return Ok(());
            }
            // A record is written after the bytes it names, so every record
            // just read names bytes the data file has now. One that does not
            // (a damaged index whose checksum still holds) is left out:
            // verify reports it, and no read sizes a buffer by it.
            let data_len = pack
                .data
                .metadata()
                .at("read metadata of", &pack.data_path)?
                .len();
            let within = |r: &PackRecord| {
                r.offset >= pack::HEADER_LEN as u64
                    && r.offset
                        .checked_add(r.len)
                        .is_some_and(|end| end <= data_len)
            };
            // A record already in the table keeps its place; a removed
            // pack's records were dropped above, so what is found is live.
            for record in records.records.iter().filter(|r| within(r)) {
                let loc = table.ids.entry(record.id).or_insert(Loc {
                    slot: n as u32,
                    offset: record.offset,
                    len: record.len,
                    written: record.written_unix_nanos,
                });
                // The newest copy is the one a put's freshening looks at.
                if record.written_unix_nanos > loc.written {
                    *loc = Loc {
                        slot: n as u32,
                        offset: record.offset,
                        len: record.len,
                        written: record.written_unix_nanos,
                    };
                }
            }
        }
    }
}

/// A new pack's name: the creation time first, so names sort by age, then
/// a part unique to this process and call.
pub(crate) fn new_pack_name() -> String {
    format!("{:020}-{}", pack::now_unix_nanos(), lock::unique_name())
}

/// The names of the packs in `dir`: every `<name>.rsi` (its data file may be
/// missing; a reader skips such a pack, verify reports it), sorted.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be listed.
pub(crate) fn list_packs(dir: &Path) -> Result<Vec<String>> {
    Ok(stems(&walk::list_dir(dir)?, PACK_INDEX_SUFFIX))
}

/// The names in `paths` that end in `suffix`, without it, sorted.
fn stems(paths: &[PathBuf], suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = paths
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.strip_suffix(suffix))
        .map(str::to_string)
        .collect();
    names.sort_unstable();
    names
}

/// The data files in `dir` without an index beside them: a pack being made
/// (its writer holds it) or left by a writer killed while making it (no one
/// holds it, and it holds no object).
///
/// # Errors
/// [`Error::Io`] when the directory cannot be listed.
pub(crate) fn data_without_index(dir: &Path) -> Result<Vec<PathBuf>> {
    let paths = walk::list_dir(dir)?;
    let indexes = stems(&paths, PACK_INDEX_SUFFIX);
    Ok(stems(&paths, PACK_DATA_SUFFIX)
        .into_iter()
        .filter(|stem| indexes.binary_search(stem).is_err())
        .map(|stem| dir.join(format!("{stem}{PACK_DATA_SUFFIX}")))
        .collect())
}

/// Opens a pack for reading; `None` when either file is gone (removed since
/// it was listed) or its headers do not check (verify reports those).
fn open_pack(dir: &Path, name: &str) -> Result<Option<PackFile>> {
    let data_path = dir.join(format!("{name}{PACK_DATA_SUFFIX}"));
    let index_path = dir.join(format!("{name}{PACK_INDEX_SUFFIX}"));
    let open = |path: &Path| match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("open pack", path, e)),
    };
    let (Some(data), Some(index)) = (open(&data_path)?, open(&index_path)?) else {
        return Ok(None);
    };
    if pack::check_index_header(&index, &index_path).is_err() {
        return Ok(None);
    }
    let file_id = file_id(&data, &data_path)?;
    Ok(Some(PackFile {
        name: name.to_string(),
        data_path,
        index_path,
        data,
        index,
        file_id,
    }))
}

/// Locks one of the handle's pack writers (a poisoned lock is taken as it
/// is, as the table's is).
fn lock(writer: &Mutex<Option<Active>>) -> MutexGuard<'_, Option<Active>> {
    writer.lock().unwrap_or_else(PoisonError::into_inner)
}
