//! The keyed-entry index: resolves a composite [`Key`] to an [`Entry`] (named
//! parts, each an object id and size), across processes, in well under a
//! microsecond per lookup.
//!
//! ```
//! use rask_store::{Component, Index, Key, Kind, Lookup, Namespace, Store, StoreOptions};
//!
//! # fn main() -> Result<(), rask_store::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::create(dir.path().join(".rask-cache"), StoreOptions::default())?;
//! let index = Index::open(&store)?;
//! let key = Key::new(
//!     Namespace::new("rask-0.4+release")?,
//!     vec![
//!         Component::str("std"),
//!         Component::str("sort"),
//!         Component::List(vec![Component::str("i32")]),
//!         Component::Hash([7; 32]), // body hash
//!     ],
//! )?;
//! index.put(&store, &key, Kind::Instance, &[("ast", b"..."), ("meta", b"{}")])?;
//!
//! assert_eq!(index.get(&store, &key, "ast")?, Lookup::Hit(b"...".to_vec()));
//! assert_eq!(index.find_missing(&[key])?, Vec::<usize>::new());
//! # Ok(()) }
//! ```
//!
//! # Files (under `index/`, see [`crate::layout`])
//!
//! - `manifest` ([`manifest`]) names the live segments and the current journal;
//!   it is replaced atomically by compaction.
//! - `seg-<gen>.rsx` ([`segment`]): immutable, sorted, memory-mapped.
//! - `journal-<gen>.rsj` ([`journal`]): append-only; new entries go here.
//! - `compact.lock`: held (exclusively) by whoever compacts or initializes.
//!
//! Records ([`record`]) are the same framed, checksummed bytes in both
//! journals and segments. The newest record for a key wins: the journal's
//! last record, else the newest segment's.
//!
//! # Entries are records, not objects
//!
//! A put writes each part as an object (objects first), then appends one
//! record holding the full key and the part table. So a single-part put
//! costs one object file and one `write` to the journal, and an entry is
//! visible only once all of its parts exist. The entry's id is the id it
//! would have as a [`crate::Kind::Entry`] object (see [`record`]).
//!
//! # Invariants
//! - Lookups never trust the index: a record is used only after its
//!   checksum matched and its stored key equals the asked key byte for byte;
//!   [`Index::get`] also verifies the part object. Damage is a [`Miss`] with
//!   a [`MissCause`], never wrong bytes and never a panic.
//! - Readers never wait for writers: lookups take no file lock.
//! - Appends hold the store's shared writers lock (`locks/gc.lock`), so gc's
//!   exclusive phase never overlaps one (docs/ARCHITECTURE.md, "the lock
//!   protocol").
//! - An appender appends only to the journal the manifest names, checked
//!   while it holds a shared lock on that journal; compaction reads the
//!   journal for the last time under the exclusive lock and publishes the
//!   next manifest before releasing it. So no append is lost to a
//!   compaction (docs/ARCHITECTURE.md, "index rotation").
//! - Files are unlinked only after the manifest no longer names them.

mod entries;
pub mod journal;
pub mod manifest;
mod many;
pub mod record;
pub mod segment;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use self::journal::Journal;
pub use self::journal::Skipped;
use self::manifest::Manifest;
pub use self::many::PARALLEL_KEYS;
use self::record::RecordView;
pub use self::record::{PartIter, PartRef, PartView};
pub use self::segment::Access;
use self::segment::Segment;
use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::key::{Key, KeyHash};
use crate::layout::Layout;
use crate::lock::{WriterGuard, WriterLock};
use crate::object::{Kind, ObjectBuf};
use crate::publish::{self, Durability, SyncQueue};
use crate::store::Store;

/// How many times an append re-reads a rotated manifest before giving up.
const MAX_APPEND_ATTEMPTS: u32 = 1000;

/// Most bytes [`Index::put_entries`] hands to one `write`.
pub const BATCH_WRITE_LIMIT: usize = 1 << 20;

/// Journals smaller than this are never compacted automatically.
pub const DEFAULT_COMPACT_MIN_BYTES: u64 = 4 << 20;

/// Whether appends may start a compaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AutoCompact {
    /// Compact when the journal passes the threshold (the default).
    #[default]
    On,
    /// Only compact when asked.
    Off,
}

/// How an index is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexOptions {
    /// Map segments and the journal (default) or read them into memory.
    pub access: Access,
    /// Whether appends start compactions.
    pub auto_compact: AutoCompact,
    /// A journal is compacted automatically once it is larger than this.
    pub compact_min_bytes: u64,
}

impl Default for IndexOptions {
    fn default() -> IndexOptions {
        IndexOptions {
            access: Access::Map,
            auto_compact: AutoCompact::On,
            compact_min_bytes: DEFAULT_COMPACT_MIN_BYTES,
        }
    }
}

impl IndexOptions {
    /// These options with segments held as `access` says.
    pub fn with_access(mut self, access: Access) -> IndexOptions {
        self.access = access;
        self
    }

    /// These options with automatic compaction on or off.
    pub fn with_auto_compact(mut self, auto_compact: AutoCompact) -> IndexOptions {
        self.auto_compact = auto_compact;
        self
    }

    /// These options with another automatic-compaction threshold.
    pub fn with_compact_min_bytes(mut self, bytes: u64) -> IndexOptions {
        self.compact_min_bytes = bytes;
        self
    }
}

/// Why a lookup did not produce a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MissCause {
    /// No entry for the key (or it was removed).
    Absent,
    /// The index record, or a part object, failed validation.
    Corrupt,
    /// The entry names a part object that does not exist.
    Dangling,
}

impl MissCause {
    /// Lowercase name for output.
    pub fn name(self) -> &'static str {
        match self {
            MissCause::Absent => "absent",
            MissCause::Corrupt => "corrupt",
            MissCause::Dangling => "dangling",
        }
    }
}

/// A miss: its cause and a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Miss {
    /// Why.
    pub cause: MissCause,
    /// What exactly (paths, ids, what failed).
    pub detail: String,
}

/// The answer to a lookup: a verified value, or a miss with its cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Found and checked.
    Hit(T),
    /// Not usable; the cache client rebuilds.
    Miss(Miss),
}

impl<T> Lookup<T> {
    /// The value, if it was a hit.
    pub fn hit(self) -> Option<T> {
        match self {
            Lookup::Hit(v) => Some(v),
            Lookup::Miss(_) => None,
        }
    }

    /// True for a hit.
    pub fn is_hit(&self) -> bool {
        matches!(self, Lookup::Hit(_))
    }

    /// The miss cause, if it was a miss.
    pub fn miss_cause(&self) -> Option<MissCause> {
        match self {
            Lookup::Hit(_) => None,
            Lookup::Miss(m) => Some(m.cause),
        }
    }

    fn miss(cause: MissCause, detail: impl Into<String>) -> Lookup<T> {
        Lookup::Miss(Miss {
            cause,
            detail: detail.into(),
        })
    }
}

/// A keyed entry as the index holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    key_hash: KeyHash,
    payload: Vec<u8>,
    parts: Vec<PartRef>,
}

impl Entry {
    /// The entry id: the id of the entry as a [`Kind::Entry`] object.
    pub fn id(&self) -> ObjectId {
        record::entry_id(&self.payload, &self.parts)
    }

    /// The key hash.
    pub fn key_hash(&self) -> KeyHash {
        self.key_hash
    }

    /// The canonical key encoding.
    pub fn key_encoding(&self) -> &[u8] {
        let len = self
            .payload
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        self.payload.get(4..4 + len).unwrap_or(&[])
    }

    /// Decodes the full key.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the stored key does not decode (the record's
    /// checksum matched, so only a writer bug could cause this).
    pub fn key(&self) -> Result<Key> {
        Key::decode(self.key_encoding())
            .map_err(|reason| Error::corrupt("stored key", Path::new("index"), reason))
    }

    /// The parts, sorted by name.
    pub fn parts(&self) -> &[PartRef] {
        &self.parts
    }

    /// The part called `name`.
    pub fn part(&self, name: &str) -> Option<&PartRef> {
        self.parts.iter().find(|p| p.name == name)
    }
}

/// A keyed entry borrowed from the index's bytes: what
/// [`Index::lookup_with`] hands its closure. Nothing is copied or
/// allocated to produce it; [`EntryRef::to_entry`] makes an owned [`Entry`].
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    key_hash: KeyHash,
    key: &'a [u8],
    payload: &'a [u8],
    parts: &'a [u8],
}

impl<'a> EntryRef<'a> {
    /// The entry a put record describes; `None` for a remove record.
    fn from_view(view: &RecordView<'a>) -> Option<EntryRef<'a>> {
        Some(EntryRef {
            key_hash: view.key_hash,
            key: view.key,
            payload: view.entry_payload,
            parts: view.parts?,
        })
    }

    /// The key hash.
    pub fn key_hash(&self) -> KeyHash {
        self.key_hash
    }

    /// The canonical key encoding (equal to the asked key's).
    pub fn key_encoding(&self) -> &'a [u8] {
        self.key
    }

    /// The parts, in name order.
    pub fn parts(&self) -> record::PartIter<'a> {
        record::parts_iter(self.parts)
    }

    /// The part called `name`.
    pub fn part(&self, name: &str) -> Option<PartView<'a>> {
        self.parts().find(|p| p.name == name)
    }

    /// The entry id (hashes the entry: not free).
    pub fn id(&self) -> ObjectId {
        record::entry_id_of_table(self.payload, self.parts)
    }

    /// An owned copy.
    pub fn to_entry(&self) -> Entry {
        Entry {
            key_hash: self.key_hash,
            payload: self.payload.to_vec(),
            parts: self.parts().map(|p| p.to_part_ref()).collect(),
        }
    }
}

/// A part and its verified payload.
pub type PartBytes = (PartRef, Vec<u8>);

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// A record was appended; the entry is now current.
    Written(ObjectId),
    /// The same entry was already current; nothing was appended.
    Unchanged(ObjectId),
}

impl PutOutcome {
    /// The entry id.
    pub fn entry_id(self) -> ObjectId {
        match self {
            PutOutcome::Written(id) | PutOutcome::Unchanged(id) => id,
        }
    }
}

/// Something wrong with an index file, found at open, lookup or check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexProblem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// One live segment, for stats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentStats {
    /// The file.
    pub path: PathBuf,
    /// Entries it holds.
    pub entries: u64,
    /// File size.
    pub bytes: u64,
}

/// The state of the index, cheaply computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexStats {
    /// The manifest generation.
    pub generation: u64,
    /// Live entries (keys whose newest record is a put).
    pub entries: u64,
    /// Live segments.
    pub segments: Vec<SegmentStats>,
    /// The current journal.
    pub journal_path: PathBuf,
    /// Its size in bytes.
    pub journal_bytes: u64,
    /// Valid records in it (including superseded ones).
    pub journal_records: u64,
    /// Bytes at its end that are not a complete record: `(offset, length)`.
    pub torn_tail: Option<(u64, u64)>,
    /// Garbage ranges skipped inside it.
    pub skipped: Vec<Skipped>,
    /// Files that could not be used.
    pub problems: Vec<IndexProblem>,
}

/// What a compaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactReport {
    /// The new generation.
    pub generation: u64,
    /// Records in the new segment (a delta segment may hold removes).
    pub entries: u64,
    /// Segments and journal records merged.
    pub merged_segments: usize,
    /// Journal records read.
    pub journal_records: u64,
    /// Records dropped because they were damaged.
    pub dropped_damaged: u64,
    /// Unreadable files moved (segments) or copied (a journal whose header
    /// is bad) to `quarantine/index-<file name>.<unix nanos>`, and files an
    /// older version set aside as `index/<file>.bad`, moved there too.
    pub quarantined: Vec<PathBuf>,
}

/// How many records a compaction merges between progress reports.
pub const COMPACT_PROGRESS_EVERY: u64 = 4096;

/// Progress of a compaction's merge ([`Index::compact_with_progress`]):
/// reported when the merge starts (always, even with nothing to merge), every
/// [`COMPACT_PROGRESS_EVERY`] records, and when every record is merged
/// (`records_done == records_total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactProgress {
    /// Records (segment records and the journal's newest record per key)
    /// merged so far.
    pub records_done: u64,
    /// Records to merge.
    pub records_total: u64,
}

#[derive(Debug)]
struct State {
    /// The manifest this view was loaded from (`None`: there was none).
    manifest: Option<manifest::Held>,
    generation: u64,
    segments: Vec<Segment>,
    journal: Option<Journal>,
    problems: Vec<IndexProblem>,
}

enum Resolved<'a> {
    Hit(EntryRef<'a>),
    Removed,
    Absent,
    Damaged(PathBuf, String),
}

/// An entry's parts as [`Index::put`] takes them: (part name, payload) pairs.
pub type NamedParts<'a> = &'a [(&'a str, &'a [u8])];

/// An open index.
///
/// # Concurrency
/// An `Index` is `Send + Sync`. Any number of processes may put and look up
/// at once; lookups take no file lock and never wait for writers.
#[derive(Debug)]
pub struct Index {
    layout: Layout,
    durability: Durability,
    options: IndexOptions,
    state: RwLock<State>,
    append_lock: Mutex<()>,
    writer_lock: WriterLock,
    journal_dirty: AtomicBool,
    /// The last automatic compaction's failure, and the journal length it
    /// failed at (see [`Index::take_compaction_failure`]).
    auto_failure: Mutex<Option<(u64, Option<Error>)>>,
}

impl Index {
    /// Opens the index of `store` with default options.
    ///
    /// Segments are mapped and their structure checked (O(1) in their size);
    /// the journal is mapped and its records checked and filed in a table. Unusable files are recorded as
    /// problems ([`Index::stats`]), not errors: their entries read as misses.
    ///
    /// # Errors
    /// [`Error::Io`] when the index directory cannot be read,
    /// [`Error::Corrupt`] or [`Error::UnsupportedFormat`] for a bad manifest.
    pub fn open(store: &Store) -> Result<Index> {
        Index::open_with(store, IndexOptions::default())
    }

    /// Opens the index of `store` with `options`.
    ///
    /// # Errors
    /// As [`Index::open`].
    pub fn open_with(store: &Store, options: IndexOptions) -> Result<Index> {
        let layout = store.layout().clone();
        fs::create_dir_all(layout.index_dir()).at("create directory", layout.index_dir())?;
        let state = load_state(&layout, options.access)?;
        Ok(Index {
            layout,
            durability: store.options().durability,
            options,
            state: RwLock::new(state),
            append_lock: Mutex::new(()),
            writer_lock: WriterLock::default(),
            journal_dirty: AtomicBool::new(false),
            auto_failure: Mutex::new(None),
        })
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Picks up what other processes appended or compacted since the last
    /// look: the journal's new tail, or the manifest and its files if a
    /// compaction replaced them. When nothing changed this is one `fstat`
    /// of the journal.
    ///
    /// # Errors
    /// [`Error::Io`], or a bad manifest.
    pub fn refresh(&self) -> Result<()> {
        self.catch_up().map(|_| ())
    }

    /// As [`Index::refresh`]; true when anything new was found.
    ///
    /// Cheap when nothing changed: one `fstat` of the journal. Its length
    /// tells whether anything was appended; the manifest is examined (a
    /// `stat`: is it still the file this view was loaded from?) only when
    /// the journal was retired, which a compaction does before it publishes
    /// a new manifest (docs/ARCHITECTURE.md, "index rotation"). The view is
    /// write-locked only when there is something to read.
    fn catch_up(&self) -> Result<bool> {
        let (same, grew) = {
            let state = self.read_state();
            match (&state.manifest, &state.journal) {
                (Some(held), Some(journal)) => {
                    let look = journal.look()?;
                    let same = !look.retired || held.is_current(&self.layout)?;
                    (same, look.len > journal.len())
                }
                (Some(_), None) => (false, false),
                (None, _) => match fs::symlink_metadata(self.layout.index_manifest()) {
                    Ok(_) => (false, false),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (true, false),
                    Err(e) => {
                        return Err(Error::io(
                            "examine the index manifest",
                            self.layout.index_manifest(),
                            e,
                        ));
                    }
                },
            }
        };
        if same && !grew {
            return Ok(false);
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if same {
            match state.journal.as_mut() {
                Some(journal) => {
                    let before = journal.len();
                    journal.refresh()?;
                    Ok(journal.len() != before)
                }
                None => Ok(false),
            }
        } else {
            *state = load_state(&self.layout, self.options.access)?;
            Ok(true)
        }
    }

    /// Looks a key up in the index alone, without touching part objects.
    ///
    /// The record is checked (checksum, stored key equals `key`), but the
    /// parts may since have been deleted: use [`Index::get`] or
    /// [`Index::probe`] before relying on them. On a miss the journal's new
    /// tail is read once, so entries other processes appended are found.
    ///
    /// # Errors
    /// [`Error::Io`] only; damage is a [`Miss`].
    pub fn lookup(&self, key: &Key) -> Result<Lookup<Entry>> {
        self.lookup_with(key, |entry| entry.to_entry())
    }

    /// Looks a key up as [`Index::lookup`] does, and hands a hit to `f`
    /// borrowed from the index's bytes: nothing is copied or allocated, so
    /// this is the hot path for callers that need only an id or a size.
    /// `f` runs while the index's view is read-locked (in this process
    /// only: other processes never wait); it must not call this index.
    ///
    /// ```
    /// # use rask_store::{Component, Index, Key, Kind, Namespace, Store, StoreOptions};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::create(dir.path().join("c"), StoreOptions::default()).unwrap();
    /// # let index = Index::open(&store).unwrap();
    /// # let key = Key::new(Namespace::new("ns").unwrap(), vec![Component::str("f")]).unwrap();
    /// index.put(&store, &key, Kind::Instance, &[("ast", b"...")]).unwrap();
    /// let ast = index.lookup_with(&key, |e| e.part("ast").map(|p| p.id)).unwrap();
    /// assert!(ast.hit().flatten().is_some());
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] only; damage is a [`Miss`].
    pub fn lookup_with<R>(
        &self,
        key: &Key,
        f: impl FnOnce(EntryRef<'_>) -> R,
    ) -> Result<Lookup<R>> {
        {
            let state = self.read_state();
            let resolved = resolve(&state, key);
            if !matches!(resolved, Resolved::Absent) {
                return Ok(answer(resolved, key, f));
            }
        }
        if !self.catch_up()? {
            return Ok(absent(key));
        }
        let state = self.read_state();
        Ok(answer(resolve(&state, key), key, f))
    }

    /// Looks up many keys; the answers are in the order of `keys`.
    ///
    /// # Errors
    /// [`Error::Io`] only.
    pub fn lookup_many(&self, keys: &[Key]) -> Result<Vec<Lookup<Entry>>> {
        let mut out: Vec<Option<Lookup<Entry>>> = Vec::with_capacity(keys.len());
        {
            let state = self.read_state();
            for chunk in keys.chunks(segment::WARM_BATCH) {
                warm(&state, chunk.iter());
                out.extend(chunk.iter().map(|k| to_entry(resolve(&state, k))));
            }
        }
        if out.iter().any(Option::is_none) && self.catch_up()? {
            let state = self.read_state();
            for (slot, key) in out.iter_mut().zip(keys) {
                if slot.is_none() {
                    *slot = to_entry(resolve(&state, key));
                }
            }
        }
        Ok(out
            .into_iter()
            .zip(keys)
            .map(|(slot, key)| slot.unwrap_or_else(|| absent(key)))
            .collect())
    }

    /// The positions in `keys`, in increasing order, of the keys with no
    /// usable index entry (absent, removed or damaged). Part objects are
    /// not checked. From [`PARALLEL_KEYS`] keys on, the lookups are shared
    /// with the crate's helper threads.
    ///
    /// # Errors
    /// [`Error::Io`] only.
    pub fn find_missing(&self, keys: &[Key]) -> Result<Vec<usize>> {
        // In chunks: the reads for a chunk's keys are issued together first
        // (see `Segment::warm`), so their cache misses overlap, and from
        // `PARALLEL_KEYS` keys on the chunks are shared with helper threads,
        // as `find_missing_with` shares them. Keys are not sorted first:
        // measured at 1M entries, sorting 20,000 keys by hash cost more than
        // the locality it bought.
        let present = |state: &State, key: &Key| matches!(resolve(state, key), Resolved::Hit(_));
        let mut missing = {
            let state = self.read_state();
            many::missing_in_chunks(
                keys.len(),
                || (),
                |(), range, missing| {
                    warm(&state, keys[range.clone()].iter());
                    missing.extend(range.filter(|&i| !present(&state, &keys[i])));
                    Ok::<(), Error>(())
                },
            )?
        };
        if !missing.is_empty() && self.catch_up()? {
            let state = self.read_state();
            missing.retain(|&i| !present(&state, &keys[i]));
        }
        Ok(missing)
    }

    /// Looks a key up and checks that every part object exists (without
    /// reading them): a missing part is a [`MissCause::Dangling`] miss.
    ///
    /// # Errors
    /// [`Error::Io`] only.
    pub fn probe(&self, store: &Store, key: &Key) -> Result<Lookup<Entry>> {
        let entry = match self.lookup(key)? {
            Lookup::Hit(entry) => entry,
            miss => return Ok(miss),
        };
        for part in entry.parts() {
            if !store.contains_object(&part.id)? {
                return Ok(dangling(key, part, &store.object_path(&part.id)));
            }
        }
        Ok(Lookup::Hit(entry))
    }

    /// The verified payload of part `part` of the entry for `key`.
    ///
    /// # Errors
    /// [`Error::Io`] only; absent, damaged and dangling entries are misses.
    pub fn get(&self, store: &Store, key: &Key, part: &str) -> Result<Lookup<Vec<u8>>> {
        let entry = match self.lookup(key)? {
            Lookup::Hit(entry) => entry,
            Lookup::Miss(miss) => return Ok(Lookup::Miss(miss)),
        };
        let Some(part_ref) = entry.part(part) else {
            return Ok(Lookup::miss(
                MissCause::Absent,
                format!("the entry for {key} has no part named {part:?}"),
            ));
        };
        Ok(match store.get_object(&part_ref.id) {
            Ok(object) if object.payload().len() as u64 == part_ref.size => {
                Lookup::Hit(object.into_payload())
            }
            Ok(object) => size_mismatch(key, part_ref, object.payload().len() as u64),
            Err(e) => object_miss(key, part_ref, e)?,
        })
    }

    /// As [`Index::get`], reading the part into `buf`, a buffer reused from
    /// one get to the next (see [`Store::get_object_into`]): no allocation
    /// per get once `buf` has grown to the largest part. The hit borrows
    /// the payload from `buf`.
    ///
    /// # Errors
    /// [`Error::Io`] only; damage is a miss, as for [`Index::get`].
    pub fn get_into<'b>(
        &self,
        store: &Store,
        key: &Key,
        part: &str,
        buf: &'b mut ObjectBuf,
    ) -> Result<Lookup<&'b [u8]>> {
        // Borrowed from the mapped record: no copy of the entry.
        let (id, size) = match self.lookup_with(key, |e| e.part(part).map(|p| (p.id, p.size)))? {
            Lookup::Hit(Some(found)) => found,
            Lookup::Hit(None) => {
                return Ok(Lookup::miss(
                    MissCause::Absent,
                    format!("the entry for {key} has no part named {part:?}"),
                ));
            }
            Lookup::Miss(miss) => return Ok(Lookup::Miss(miss)),
        };
        let part_ref = || PartRef {
            name: part.to_string(),
            id,
            size,
        };
        Ok(match store.get_object_into(&id, buf) {
            Ok(object) if object.payload().len() as u64 == size => Lookup::Hit(object.payload()),
            Ok(object) => size_mismatch(key, &part_ref(), object.payload().len() as u64),
            Err(e) => object_miss(key, &part_ref(), e)?,
        })
    }

    /// [`Index::get_into`] of part `part` for every key of `keys`, the
    /// objects read and verified on every core ([`Store::get_many`]):
    /// `each` is called once per index into `keys`, in no particular
    /// order, always on the calling thread, with what `get_into` would have
    /// returned for that key. The first error `each` returns stops the call
    /// and is returned.
    ///
    /// # Errors
    /// Only what `each` returns.
    pub fn get_many<E, F>(
        &self,
        store: &Store,
        keys: &[Key],
        part: &str,
        mut each: F,
    ) -> std::result::Result<(), E>
    where
        F: FnMut(usize, Result<Lookup<&[u8]>>) -> std::result::Result<(), E>,
    {
        // Every key is looked up first (a fraction of a microsecond each),
        // so the reads can be shared out.
        let mut ids = Vec::with_capacity(keys.len());
        let mut hits: Vec<(usize, u64)> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            match self.lookup_with(key, |e| e.part(part).map(|p| (p.id, p.size))) {
                Ok(Lookup::Hit(Some((id, size)))) => {
                    ids.push(id);
                    hits.push((i, size));
                }
                Ok(Lookup::Hit(None)) => each(
                    i,
                    Ok(Lookup::miss(
                        MissCause::Absent,
                        format!("the entry for {key} has no part named {part:?}"),
                    )),
                )?,
                Ok(Lookup::Miss(miss)) => each(i, Ok(Lookup::Miss(miss)))?,
                Err(e) => each(i, Err(e))?,
            }
        }
        read_parts(store, &ids, &hits, part, |i| Ok(keys[i].clone()), each)
    }

    /// The verified payloads of every part of the entry for `key`.
    ///
    /// # Errors
    /// [`Error::Io`] only.
    pub fn get_all(&self, store: &Store, key: &Key) -> Result<Lookup<Vec<PartBytes>>> {
        let entry = match self.lookup(key)? {
            Lookup::Hit(entry) => entry,
            Lookup::Miss(miss) => return Ok(Lookup::Miss(miss)),
        };
        let mut out = Vec::with_capacity(entry.parts().len());
        for part in entry.parts() {
            match store.get_object(&part.id) {
                Ok(object) if object.payload().len() as u64 == part.size => {
                    out.push((part.clone(), object.into_payload()))
                }
                Ok(object) => return Ok(size_mismatch(key, part, object.payload().len() as u64)),
                Err(e) => return object_miss(key, part, e),
            }
        }
        Ok(Lookup::Hit(out))
    }

    /// Verifies part `part` of the entry for `key` and writes its payload to
    /// `out` (nothing is written unless it verified). Memory stays bounded
    /// for large parts.
    ///
    /// # Errors
    /// [`Error::Io`], including a failed write to `out` (path `(output)`).
    pub fn write_part(
        &self,
        store: &Store,
        key: &Key,
        part: &str,
        out: &mut dyn Write,
    ) -> Result<Lookup<PartRef>> {
        let entry = match self.lookup(key)? {
            Lookup::Hit(entry) => entry,
            Lookup::Miss(miss) => return Ok(Lookup::Miss(miss)),
        };
        let Some(part_ref) = entry.part(part) else {
            return Ok(Lookup::miss(
                MissCause::Absent,
                format!("the entry for {key} has no part named {part:?}"),
            ));
        };
        let info = match store.object_info(&part_ref.id) {
            Ok(info) => info,
            Err(e) => return object_miss(key, part_ref, e),
        };
        if info.payload_len != part_ref.size {
            return Ok(size_mismatch(key, part_ref, info.payload_len));
        }
        match store.write_payload(&part_ref.id, out) {
            Ok(_) => Ok(Lookup::Hit(part_ref.clone())),
            Err(e) => object_miss(key, part_ref, e),
        }
    }

    /// Stores each part as an object of `kind`, then publishes the entry.
    ///
    /// Putting the entry that is already current appends nothing (its part
    /// objects' modification times, the store's record of last use, are
    /// refreshed by the object puts). A different entry replaces it: last
    /// writer wins.
    ///
    /// # Errors
    /// [`Error::InvalidEntry`] for bad part names; [`Error::Io`].
    pub fn put(
        &self,
        store: &Store,
        key: &Key,
        kind: Kind,
        parts: &[(&str, &[u8])],
    ) -> Result<PutOutcome> {
        // One shared writers lock for the object puts and the append (each
        // would otherwise take and release it: four `flock`s fewer per put).
        let writing = store.writing()?;
        let mut refs = Vec::with_capacity(parts.len());
        for (name, bytes) in parts {
            record::check_part_name(name).map_err(|reason| Error::InvalidEntry { reason })?;
            let id = store.put_object(kind, &[], bytes)?;
            refs.push(PartRef {
                name: (*name).to_string(),
                id,
                size: bytes.len() as u64,
            });
        }
        let (outcome, len) = self.publish(key, refs, self.same_store(store).then_some(&writing))?;
        // Compaction runs without the writers lock, as before: gc may run beside it.
        drop(writing);
        self.compact_if_grown(len);
        Ok(outcome)
    }

    /// Whether `store` is the store this index belongs to, so that holding
    /// its writers lock is holding this index's.
    fn same_store(&self, store: &Store) -> bool {
        store.layout().root() == self.layout.root()
    }

    /// Publishes an entry whose part objects are already in `store`.
    ///
    /// # Errors
    /// [`Error::InvalidEntry`] when a part object does not exist or names
    /// are bad; [`Error::Io`].
    pub fn put_entry(&self, store: &Store, key: &Key, parts: Vec<PartRef>) -> Result<PutOutcome> {
        for part in &parts {
            if !store.contains_object(&part.id)? {
                return Err(Error::InvalidEntry {
                    reason: format!(
                        "part {:?} names object {}, which is not in the store; put it first",
                        part.name, part.id
                    ),
                });
            }
        }
        let (outcome, len) = self.publish(key, parts, None)?;
        self.compact_if_grown(len);
        Ok(outcome)
    }

    /// Publishes many entries whose part objects are already in `store`,
    /// appending their records in as few `write` calls as possible (each
    /// call holds whole records, up to [`BATCH_WRITE_LIMIT`] bytes). The
    /// outcomes are in the order of `entries`.
    ///
    /// # Errors
    /// As [`Index::put_entry`]; nothing is appended if any entry is invalid.
    pub fn put_entries(
        &self,
        store: &Store,
        entries: Vec<(Key, Vec<PartRef>)>,
    ) -> Result<Vec<PutOutcome>> {
        for (key, parts) in &entries {
            for part in parts {
                if !store.contains_object(&part.id)? {
                    return Err(Error::InvalidEntry {
                        reason: format!(
                            "part {:?} of {key} names object {}, which is not in the store",
                            part.name, part.id
                        ),
                    });
                }
            }
        }
        let (keys, parts): (Vec<Key>, Vec<Vec<PartRef>>) = entries.into_iter().unzip();
        let (outcomes, len) = self.publish_many(keys.iter().zip(parts), None)?;
        self.compact_if_grown(len);
        Ok(outcomes)
    }

    /// Stores the parts of many entries as objects of kind `kind`, then
    /// publishes the entries together, as [`Index::put_entries`] does: the
    /// records go to the journal in as few `write` calls as possible, where
    /// [`Index::put`] appends one record per call. What a build publishing
    /// a batch of results calls. The outcomes are in the order of
    /// `entries`.
    ///
    /// # Errors
    /// As [`Index::put`]. Nothing is appended if any part name is bad or
    /// any object cannot be stored (the objects already stored stay, for
    /// gc to reclaim if nothing comes to use them).
    pub fn put_many(
        &self,
        store: &Store,
        kind: Kind,
        entries: &[(&Key, NamedParts<'_>)],
    ) -> Result<Vec<PutOutcome>> {
        // Held across the batch, so each object put below finds the shared
        // writers lock already taken (two `flock`s fewer per object).
        let writing = store.writing()?;
        let mut objects: Vec<(&[ObjectId], &[u8])> = Vec::new();
        for (_, parts) in entries {
            for (name, bytes) in *parts {
                record::check_part_name(name).map_err(|reason| Error::InvalidEntry { reason })?;
                objects.push((&[], bytes));
            }
        }
        // Every part of the batch at once, hashed and written on every core.
        let mut ids = store.put_many(kind, &objects)?.into_iter();
        let mut published = Vec::with_capacity(entries.len());
        for (key, parts) in entries {
            let mut refs = Vec::with_capacity(parts.len());
            for ((name, bytes), id) in parts.iter().zip(ids.by_ref()) {
                refs.push(PartRef {
                    name: (*name).to_string(),
                    id,
                    size: bytes.len() as u64,
                });
            }
            published.push((*key, refs));
        }
        let held = self.same_store(store).then_some(&writing);
        let (outcomes, len) = self.publish_many(published.into_iter(), held)?;
        drop(writing);
        self.compact_if_grown(len);
        Ok(outcomes)
    }

    /// Appends the records of `entries` (parts already stored) in as few
    /// `write` calls as possible, skipping those the index already holds.
    fn publish_many<'k>(
        &self,
        entries: impl Iterator<Item = (&'k Key, Vec<PartRef>)>,
        held: Option<&WriterGuard<'_>>,
    ) -> Result<(Vec<PutOutcome>, u64)> {
        let mut outcomes = Vec::new();
        let mut frames: Vec<Vec<u8>> = Vec::new();
        {
            let state = self.read_state();
            for (key, parts) in entries {
                let parts = record::normalize_parts(parts)
                    .map_err(|reason| Error::InvalidEntry { reason })?;
                let body = record::encode_put(&key.hash(), key.encoding(), &parts);
                let id = record::entry_id(&body[1 + crate::key::KEY_HASH_LEN..], &parts);
                if matches!(resolve(&state, key), Resolved::Hit(current) if current.id() == id) {
                    outcomes.push(PutOutcome::Unchanged(id));
                    continue;
                }
                outcomes.push(PutOutcome::Written(id));
                frames.push(record::frame(&body));
            }
        }
        let mut batch = Vec::new();
        let mut len = 0;
        for frame in frames {
            if !batch.is_empty() && batch.len() + frame.len() > BATCH_WRITE_LIMIT {
                len = self.append(&batch, held)?;
                batch.clear();
            }
            batch.extend_from_slice(&frame);
        }
        if !batch.is_empty() {
            len = self.append(&batch, held)?;
        }
        Ok((outcomes, len))
    }

    fn publish(
        &self,
        key: &Key,
        parts: Vec<PartRef>,
        held: Option<&WriterGuard<'_>>,
    ) -> Result<(PutOutcome, u64)> {
        let parts =
            record::normalize_parts(parts).map_err(|reason| Error::InvalidEntry { reason })?;
        let body = record::encode_put(&key.hash(), key.encoding(), &parts);
        let id = record::entry_id(&body[1 + crate::key::KEY_HASH_LEN..], &parts);
        // The no-op check uses what this handle already sees: a miss here
        // costs no file access, and an entry another process wrote since is
        // at worst appended again (harmless: the same value).
        let unchanged = {
            let state = self.read_state();
            matches!(resolve(&state, key), Resolved::Hit(current) if current.id() == id)
        };
        if unchanged {
            return Ok((PutOutcome::Unchanged(id), 0));
        }
        let len = self.append(&record::frame(&body), held)?;
        Ok((PutOutcome::Written(id), len))
    }

    /// Removes the entry for `key` (its part objects stay until gc).
    /// Returns whether there was one.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn remove(&self, key: &Key) -> Result<bool> {
        if !self.lookup(key)?.is_hit() {
            return Ok(false);
        }
        let len = self.append(
            &record::frame(&record::encode_remove(&key.hash(), key.encoding())),
            None,
        )?;
        self.compact_if_grown(len);
        Ok(true)
    }

    /// Appends framed records to the current journal (see the rotation
    /// protocol in the module docs) and returns the journal's length after
    /// it, for [`Index::compact_if_grown`], which the caller runs once it no
    /// longer holds the writers lock. `held` is the store's writers lock
    /// when the caller already holds it (for this index's store); else the
    /// append takes it.
    fn append(&self, framed: &[u8], held: Option<&WriterGuard<'_>>) -> Result<u64> {
        // Which journal the append went to, and how much of it this view
        // held when it was made.
        let mut before = None;
        {
            let _serial = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
            // gc's exclusive lock excludes appends as it excludes object
            // puts (docs/ARCHITECTURE.md, "the lock protocol").
            let _writing = match held {
                Some(_) => None,
                None => Some(self.writer_lock.enter(&self.layout)?),
            };
            let mut attempts = 0;
            loop {
                {
                    let state = self.read_state();
                    if let Some(journal) = &state.journal {
                        journal.lock_shared()?;
                        // Step 2 of the rotation protocol. The manifest this
                        // view holds open still being the one at its path
                        // (one `stat`) proves it unchanged; otherwise it is
                        // read again.
                        let generation = journal.generation();
                        let current = match &state.manifest {
                            Some(held)
                                if held.manifest.generation == generation
                                    && held.is_current(&self.layout).unwrap_or(false) =>
                            {
                                Ok(true)
                            }
                            _ => manifest::read(&self.layout)
                                .map(|m| m.is_some_and(|m| m.generation == generation)),
                        };
                        let appended = match current {
                            Ok(true) => {
                                before = Some((journal.generation(), journal.len()));
                                journal.append(framed).map(|()| true)
                            }
                            Ok(false) => Ok(false),
                            Err(e) => Err(e),
                        };
                        journal.unlock();
                        if appended? {
                            if self.durability == Durability::Full {
                                journal.sync()?;
                            } else {
                                self.journal_dirty.store(true, Ordering::Relaxed);
                            }
                            break;
                        }
                    }
                }
                // No journal yet, or it was rotated: catch up and retry.
                attempts += 1;
                if attempts > MAX_APPEND_ATTEMPTS {
                    return Err(Error::io(
                        "append to the index journal",
                        self.layout.index_manifest(),
                        std::io::Error::other(
                            "the current journal kept changing or could not be opened",
                        ),
                    ));
                }
                self.initialize()?;
                self.refresh()?;
            }
        };
        // Pick up our own write (and whatever others appended before it).
        let journal_len = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            match state.journal.as_mut() {
                Some(journal) => {
                    match before {
                        // Not rotated since: the same file.
                        Some((generation, before)) if generation == journal.generation() => {
                            journal.refresh_after_append(before, framed)?
                        }
                        _ => journal.refresh()?,
                    }
                    journal.len()
                }
                None => 0,
            }
        };
        Ok(journal_len)
    }

    /// Compacts when an append took the journal past the threshold.
    fn compact_if_grown(&self, journal_len: u64) {
        if self.options.auto_compact == AutoCompact::On
            && journal_len > self.options.compact_min_bytes
        {
            self.auto_compact(journal_len);
        }
    }

    /// Compacts after an append took the journal past the threshold. The
    /// append has succeeded whatever happens here, so a failure does not
    /// fail it: it is kept for [`Index::take_compaction_failure`], and the
    /// next attempt waits until the journal has grown by another threshold
    /// (a full disk would otherwise make every put try again).
    fn auto_compact(&self, journal_len: u64) {
        let min = self.options.compact_min_bytes;
        let failure = || self.auto_failure.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, _)) = &*failure()
            && journal_len < at.saturating_add(min)
        {
            return;
        }
        // Not held while compacting: other appenders must not wait on it.
        let outcome = self.compact_if_free();
        *failure() = match outcome {
            Ok(()) => None,
            Err(e) => Some((journal_len, Some(e))),
        };
    }

    /// The error the last automatic compaction failed with, once: `None`
    /// when it has not failed since the last call. The put that triggered
    /// it succeeded (its entry is in the journal and is found); the journal
    /// only keeps growing until a compaction succeeds, so a caller may want
    /// to report it, e.g. "run `rask-store index compact`".
    pub fn take_compaction_failure(&self) -> Option<Error> {
        let mut failure = self.auto_failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.as_mut().and_then(|(_, e)| e.take())
    }

    /// Makes appended records durable (for [`Durability::Batch`]).
    ///
    /// # Errors
    /// [`Error::Io`] when syncing fails.
    pub fn flush(&self) -> Result<()> {
        if self.journal_dirty.swap(false, Ordering::Relaxed) {
            let state = self.read_state();
            if let Some(journal) = &state.journal {
                journal.sync()?;
            }
        }
        Ok(())
    }

    /// Creates journal 0 and the first manifest if no manifest exists, or
    /// an empty journal for the manifest's generation if its file is gone.
    fn initialize(&self) -> Result<()> {
        if let Some(m) = manifest::read(&self.layout)?
            && self.layout.index_journal(m.generation).exists()
        {
            return Ok(());
        }
        let lock = self.compact_lock()?;
        lock.lock().at("lock", &self.layout.index_compact_lock())?;
        if let Some(m) = manifest::read(&self.layout)? {
            if !self.layout.index_journal(m.generation).exists() {
                self.create_journal(m.generation)?;
            }
        } else {
            self.create_journal(0)?;
            manifest::write(
                &self.layout,
                &Manifest {
                    generation: 0,
                    segments: Vec::new(),
                },
                self.file_durability(),
            )?;
        }
        Ok(())
    }

    fn compact_lock(&self) -> Result<File> {
        let path = self.layout.index_compact_lock();
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at("open", &path)
    }

    fn file_durability(&self) -> Durability {
        match self.durability {
            Durability::None => Durability::None,
            _ => Durability::Full,
        }
    }

    fn create_journal(&self, generation: u64) -> Result<()> {
        let mut temp = publish::temp_file(self.layout.tmp_dir(), "journal-")?;
        temp.write_all(&journal::header(generation))
            .at("write", temp.path())?;
        publish::publish(
            temp,
            &self.layout.index_journal(generation),
            publish::Access::Replaceable,
            self.file_durability(),
            &SyncQueue::default(),
        )
    }

    /// Merges every live segment and the journal into one new segment,
    /// starts a new journal and publishes the manifest naming both; then
    /// unlinks the files it replaced. Waits for a running compaction.
    ///
    /// # Errors
    /// [`Error::Io`]; a bad manifest.
    pub fn compact(&self) -> Result<CompactReport> {
        self.compact_with_progress(&|_| {})
    }

    /// [`Index::compact`], reporting the merge's progress to `progress`
    /// (the library never prints; a command line draws it).
    ///
    /// # Errors
    /// As [`Index::compact`].
    pub fn compact_with_progress(
        &self,
        progress: &dyn Fn(CompactProgress),
    ) -> Result<CompactReport> {
        let lock = self.compact_lock()?;
        lock.lock().at("lock", &self.layout.index_compact_lock())?;
        let report = self.compact_locked(Trigger::OnDemand, progress)?;
        drop(lock);
        self.refresh()?;
        Ok(report)
    }

    fn compact_if_free(&self) -> Result<()> {
        let lock = self.compact_lock()?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("lock", self.layout.index_compact_lock(), e));
            }
        }
        self.compact_locked(Trigger::Auto, &|_| {})?;
        drop(lock);
        self.refresh()
    }

    fn compact_locked(
        &self,
        trigger: Trigger,
        progress: &dyn Fn(CompactProgress),
    ) -> Result<CompactReport> {
        let layout = &self.layout;
        let Some(current) = manifest::read(layout)? else {
            progress(CompactProgress::default());
            self.create_journal(0)?;
            let m = Manifest {
                generation: 0,
                segments: Vec::new(),
            };
            manifest::write(layout, &m, self.file_durability())?;
            return Ok(CompactReport {
                generation: 0,
                entries: 0,
                merged_segments: 0,
                journal_records: 0,
                dropped_damaged: 0,
                quarantined: Vec::new(),
            });
        };
        let mut quarantined = self.quarantine_set_aside()?;
        let mut segments = Vec::new();
        for &g in &current.segments {
            let path = layout.index_segment(g);
            match Segment::open(&path, g, Access::Map) {
                Ok(seg) => segments.push(seg),
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(Error::Io {
                    action,
                    path,
                    source,
                }) => {
                    return Err(Error::Io {
                        action,
                        path,
                        source,
                    });
                }
                Err(_) => {
                    let to = self.quarantine_path(&path)?;
                    fs::rename(&path, &to)
                        .at("move the unreadable segment to quarantine", &path)?;
                    quarantined.push(to);
                }
            }
        }
        let journal_path = layout.index_journal(current.generation);
        let mut journal = match Journal::open(&journal_path, current.generation, Access::Map) {
            Ok(j) => Some(j),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let result = match journal.as_mut() {
            Some(j) => {
                j.lock_exclusive()?;
                // The final read, under the exclusive lock: no append can follow it.
                let result = j.refresh().and_then(|()| {
                    if j.header_problem().is_some() {
                        let to = self.quarantine_path(j.path())?;
                        fs::copy(j.path(), &to)
                            .at("copy the unreadable journal to quarantine", j.path())?;
                        quarantined.push(to);
                    }
                    let scope = scope(trigger, &segments, j.len());
                    let merge = Merge {
                        current: &current,
                        segments: &segments,
                        scope,
                        journal: Some(j),
                        progress,
                    };
                    self.merge_and_publish(merge, quarantined)
                });
                j.unlock();
                result
            }
            None => {
                let merge = Merge {
                    current: &current,
                    segments: &segments,
                    scope: scope(trigger, &segments, 0),
                    journal: None,
                    progress,
                };
                self.merge_and_publish(merge, quarantined)
            }
        };
        let (report, manifest) = result?;
        // The new manifest is published: the old files are no longer named.
        crate::fault::Point::CompactManifestSwitched.reached();
        self.sweep(&manifest);
        Ok(report)
    }

    fn merge_and_publish(
        &self,
        merge: Merge<'_>,
        quarantined: Vec<PathBuf>,
    ) -> Result<(CompactReport, Manifest)> {
        let Merge {
            current,
            segments,
            scope,
            journal,
            progress,
        } = merge;
        let layout = &self.layout;
        let (kept, merging) = match scope {
            Scope::Full => (&segments[..0], segments),
            Scope::Delta => segments.split_at(segments.len().min(1)),
        };
        let total = merging.iter().map(|s| s.len() as u64).sum::<u64>()
            + journal.map_or(0, |j| j.keys() as u64);
        let report = |done: u64| {
            progress(CompactProgress {
                records_done: done,
                records_total: total,
            });
        };
        report(0);
        let mut done = 0u64;
        let mut step = || {
            done += 1;
            if done.is_multiple_of(COMPACT_PROGRESS_EVERY) {
                report(done);
            }
        };
        // Key hash -> newest record body; removes are kept as shadows
        // unless nothing older survives the merge.
        let mut merged: HashMap<KeyHash, (&[u8], bool)> = HashMap::new();
        let mut dropped = 0u64;
        for seg in merging {
            for rec in seg.iter() {
                match rec.and_then(|(hash, body)| record::view(body).map(|v| (hash, body, v))) {
                    Ok((hash, body, view)) if view.key_hash == hash => {
                        merged.insert(hash, (body, view.parts.is_some()));
                    }
                    _ => dropped += 1,
                }
                step();
            }
        }
        let mut journal_records = 0;
        if let Some(j) = journal {
            journal_records = j.records();
            for (hash, body) in j.latest() {
                let put = record::view(body).ok().and_then(|v| v.parts).is_some();
                merged.insert(hash, (body, put));
                step();
            }
        }
        // The journal may yield fewer records than it counted (a record
        // that no longer reads): the end is reported as everything merged.
        if done != total || !done.is_multiple_of(COMPACT_PROGRESS_EVERY) {
            report(total);
        }
        let keep_removes = !kept.is_empty();
        let mut live: Vec<(KeyHash, &[u8])> = merged
            .into_iter()
            .filter(|(_, (_, put))| *put || keep_removes)
            .map(|(h, (body, _))| (h, body))
            .collect();
        live.sort_unstable_by_key(|(hash, _)| *hash);
        let generation = current.generation + 1;
        let mut new_segments: Vec<u64> = kept.iter().map(Segment::generation).collect();
        if !live.is_empty() {
            let mut temp = publish::temp_file(layout.tmp_dir(), "seg-")?;
            let temp_path = temp.path().to_path_buf();
            segment::write(temp.as_file_mut(), &temp_path, generation, &live)?;
            publish::publish(
                temp,
                &layout.index_segment(generation),
                publish::Access::ReadOnly,
                self.file_durability(),
                &SyncQueue::default(),
            )?;
            new_segments.push(generation);
        }
        self.create_journal(generation)?;
        let manifest = Manifest {
            generation,
            segments: new_segments,
        };
        // Readers look at the manifest only once their journal is retired:
        // mark it before the manifest that replaces it is published.
        if let Some(j) = journal {
            j.mark_retired()?;
        }
        crate::fault::Point::CompactSegmentWritten.reached();
        manifest::write(layout, &manifest, self.file_durability())?;
        let report = CompactReport {
            generation,
            entries: live.len() as u64,
            merged_segments: merging.len(),
            journal_records,
            dropped_damaged: dropped,
            quarantined,
        };
        Ok((report, manifest))
    }

    /// Where an unreadable index file goes: `quarantine/index-<file
    /// name>.<unix nanos>`, so the name says where it came from and a later
    /// file of the same name cannot replace it. Creates `quarantine/`.
    fn quarantine_path(&self, file: &Path) -> Result<PathBuf> {
        let dir = self.layout.quarantine_dir();
        fs::create_dir_all(&dir).at("create directory", &dir)?;
        let mut name = file
            .file_name()
            .map_or_else(|| "unnamed".into(), |n| n.to_string_lossy().into_owned());
        if let Some(stem) = name.strip_suffix(crate::layout::QUARANTINE_SUFFIX) {
            name = stem.to_owned();
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut attempt = 0;
        let mut to = self.layout.index_quarantine(&name, nanos, attempt);
        while to.exists() {
            attempt += 1;
            to = self.layout.index_quarantine(&name, nanos, attempt);
        }
        Ok(to)
    }

    /// Moves the files older versions set aside as `index/<file>.bad` into
    /// quarantine. Runs under the compaction lock.
    fn quarantine_set_aside(&self) -> Result<Vec<PathBuf>> {
        let mut moved = Vec::new();
        for path in set_aside_files(&self.layout)? {
            let to = self.quarantine_path(&path)?;
            match fs::rename(&path, &to) {
                Ok(()) => moved.push(to),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("move to quarantine", &path, e)),
            }
        }
        Ok(moved)
    }

    /// Unlinks segment and journal files `manifest` does not name. Runs
    /// under the compaction lock; failures are ignored (a later compaction
    /// retries).
    fn sweep(&self, manifest: &Manifest) {
        let Ok(dir) = fs::read_dir(self.layout.index_dir()) else {
            return;
        };
        let mut keep: Vec<PathBuf> = manifest
            .segments
            .iter()
            .map(|&g| self.layout.index_segment(g))
            .collect();
        keep.push(self.layout.index_journal(manifest.generation));
        for entry in dir.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if Layout::index_file_generation(name).is_some() && !keep.contains(&path) {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Counts entries and describes the files; cheap (no hashing of segments).
    ///
    /// # Errors
    /// [`Error::Io`] when the journal cannot be re-read.
    pub fn stats(&self) -> Result<IndexStats> {
        self.refresh()?;
        let state = self.read_state();
        // A lone segment with nothing missing beside it is a full merge: no
        // removes. Its entries count, less those the journal overrides, plus
        // the journal's puts: O(journal), no segment walk.
        let entries = if let ([only], true) = (&state.segments[..], state.problems.is_empty()) {
            let mut entries: u64 = 0;
            if let Some(j) = &state.journal {
                for (_, body) in j.latest() {
                    if record::view(body).ok().and_then(|v| v.parts).is_some() {
                        entries += 1;
                    }
                }
            }
            let overridden = state.journal.as_ref().map_or(0, |j| {
                j.latest()
                    .filter(|(h, _)| !matches!(only.find(h), Ok(None)))
                    .count()
            });
            entries + only.len().saturating_sub(overridden) as u64
        } else {
            // Several segments (a delta may hold removes that shadow the
            // base): the sorted merge `for_each_entry` walks, with no table
            // of every key (a set of them cost ~290 ms at 1,000,000).
            let mut entries = 0u64;
            entries::merge_live(&state, |_| {
                entries += 1;
                Ok(())
            })?;
            entries
        };
        let mut problems = state.problems.clone();
        let (journal_path, journal_bytes, journal_records, torn_tail, skipped) =
            match &state.journal {
                Some(j) => {
                    if let Some(p) = j.header_problem() {
                        problems.push(IndexProblem {
                            path: j.path().to_path_buf(),
                            message: p.to_string(),
                        });
                    }
                    (
                        j.path().to_path_buf(),
                        j.len(),
                        j.records(),
                        j.unparsed_tail(),
                        j.skipped().to_vec(),
                    )
                }
                None => (
                    self.layout.index_journal(state.generation),
                    0,
                    0,
                    None,
                    Vec::new(),
                ),
            };
        Ok(IndexStats {
            generation: state.generation,
            entries,
            segments: state
                .segments
                .iter()
                .map(|s| SegmentStats {
                    path: s.path().to_path_buf(),
                    entries: s.len() as u64,
                    bytes: s.file_len(),
                })
                .collect(),
            journal_path,
            journal_bytes,
            journal_records,
            torn_tail,
            skipped,
            problems,
        })
    }

    /// Waits (at most `limit`) until no process is in the middle of an
    /// append to the current journal, then picks up what was appended. A
    /// torn tail seen before this returns may have been an append in
    /// progress; one seen after it, at the same offset, was not.
    ///
    /// # Errors
    /// [`Error::Io`], or a bad manifest.
    pub fn wait_for_appends(&self, limit: std::time::Duration) -> Result<()> {
        self.refresh()?;
        let mut backoff = crate::lock::Backoff::new(limit);
        loop {
            let busy = match &self.read_state().journal {
                Some(journal) => journal.busy()?,
                None => false,
            };
            if !busy || !backoff.sleep() {
                break;
            }
        }
        self.refresh()
    }

    /// The full check for verify: everything [`Index::stats`] reports, plus
    /// each segment's whole-file checksum, table order and every record.
    /// Returns every problem found.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn check(&self) -> Result<Vec<IndexProblem>> {
        self.refresh()?;
        let state = self.read_state();
        // What `stats` reports about the files, without its entry count:
        // counting across several segments costs more than this whole check.
        let mut problems = state.problems.clone();
        if let Some(j) = &state.journal {
            if let Some(p) = j.header_problem() {
                problems.push(IndexProblem {
                    path: j.path().to_path_buf(),
                    message: p.to_string(),
                });
            }
            if let Some((offset, len)) = j.unparsed_tail() {
                problems.push(IndexProblem {
                    path: j.path().to_path_buf(),
                    message: format!(
                        "{len} bytes at offset {offset} are not a complete record (torn append)"
                    ),
                });
            }
            for s in j.skipped() {
                problems.push(IndexProblem {
                    path: j.path().to_path_buf(),
                    message: format!(
                        "{} bytes at offset {} skipped: {}",
                        s.len, s.offset, s.reason
                    ),
                });
            }
        }
        for seg in &state.segments {
            for message in seg.check() {
                problems.push(IndexProblem {
                    path: seg.path().to_path_buf(),
                    message,
                });
            }
        }
        Ok(problems)
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Files an older version set aside as `index/<file>.bad` (now moved to
/// quarantine by compaction), sorted.
///
/// # Errors
/// [`Error::Io`] when the index directory cannot be listed.
pub fn set_aside_files(layout: &Layout) -> Result<Vec<PathBuf>> {
    let dir = layout.index_dir();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list directory", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.at("list directory", dir)?;
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.ends_with(crate::layout::QUARANTINE_SUFFIX))
        {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// One compaction's inputs.
struct Merge<'a> {
    current: &'a Manifest,
    segments: &'a [Segment],
    scope: Scope,
    journal: Option<&'a Journal>,
    progress: &'a dyn Fn(CompactProgress),
}

/// Who asked for a compaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    /// `Index::compact`: always merge everything.
    OnDemand,
    /// An append passed the journal threshold.
    Auto,
}

/// What a compaction merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Everything into one segment; removed keys are dropped.
    Full,
    /// The journal and the delta segment (all but the oldest segment) into
    /// a new delta; the oldest (base) segment is kept as it is.
    Delta,
}

/// Automatic compactions keep the journal small (so opening stays cheap)
/// by folding it into a delta segment, and merge into the base segment only
/// once the delta and journal reach a quarter of it, so the big base is
/// rewritten rarely. At most two segments are live.
fn scope(trigger: Trigger, segments: &[Segment], journal_len: u64) -> Scope {
    let Some((base, deltas)) = segments.split_first() else {
        return Scope::Full;
    };
    let upper: u64 = deltas.iter().map(Segment::file_len).sum::<u64>() + journal_len;
    if trigger == Trigger::OnDemand || upper > base.file_len() / 4 {
        Scope::Full
    } else {
        Scope::Delta
    }
}

fn load_state(layout: &Layout, access: Access) -> Result<State> {
    let Some(held) = manifest::load(layout)? else {
        return Ok(State {
            manifest: None,
            generation: 0,
            segments: Vec::new(),
            journal: None,
            problems: Vec::new(),
        });
    };
    let m = &held.manifest;
    let mut problems = Vec::new();
    let mut segments = Vec::new();
    for &g in &m.segments {
        let path = layout.index_segment(g);
        match Segment::open(&path, g, access) {
            Ok(seg) => segments.push(seg),
            Err(e) => problems.push(IndexProblem {
                path,
                message: e.to_string(),
            }),
        }
    }
    let path = layout.index_journal(m.generation);
    let journal = match Journal::open(&path, m.generation, access) {
        Ok(j) => Some(j),
        Err(e) => {
            problems.push(IndexProblem {
                path,
                message: e.to_string(),
            });
            None
        }
    };
    Ok(State {
        generation: m.generation,
        segments,
        journal,
        problems,
        manifest: Some(held),
    })
}

fn resolve<'s>(state: &'s State, key: &Key) -> Resolved<'s> {
    resolve_encoded(state, key.hash(), key.encoding())
}

/// [`resolve`] for a key given as its hash and canonical encoding.
fn resolve_encoded<'s>(state: &'s State, hash: KeyHash, encoding: &[u8]) -> Resolved<'s> {
    let found = state
        .journal
        .as_ref()
        .and_then(|j| j.get(&hash).map(|body| (j.path(), Ok(body))))
        .or_else(|| {
            state
                .segments
                .iter()
                .rev()
                .find_map(|seg| match seg.find(&hash) {
                    Ok(None) => None,
                    Ok(Some(body)) => Some((seg.path(), Ok(body))),
                    Err(reason) => Some((seg.path(), Err(reason))),
                })
        });
    let Some((path, body)) = found else {
        return Resolved::Absent;
    };
    let view = match body.and_then(record::view) {
        Ok(view) => view,
        Err(reason) => return Resolved::Damaged(path.to_path_buf(), reason),
    };
    if view.key != encoding || view.key_hash != hash {
        return Resolved::Damaged(
            path.to_path_buf(),
            "the record filed under this key hash holds another key".into(),
        );
    }
    match EntryRef::from_view(&view) {
        Some(entry) => Resolved::Hit(entry),
        None => Resolved::Removed,
    }
}

/// Reads ahead, in the journal's table and every segment, what resolving `keys` (at most
/// [`segment::WARM_BATCH`]) will read, overlapping their cache misses.
fn warm<'k>(state: &State, keys: impl Iterator<Item = &'k Key> + Clone) {
    let hashes: Vec<KeyHash> = keys.map(Key::hash).collect();
    warm_hashes(state, &hashes);
}

/// [`warm`] for keys given by their hashes.
fn warm_hashes(state: &State, hashes: &[KeyHash]) {
    if let Some(j) = &state.journal {
        let mut seen = 0u64;
        for hash in hashes {
            seen ^= j.warm(hash);
        }
        std::hint::black_box(seen);
    }
    for seg in &state.segments {
        std::hint::black_box(seg.warm(hashes.iter()));
    }
}

/// The second half of [`Index::get_many`] and [`Index::get_many_with`]:
/// reads the objects `ids` (on every core, [`Store::get_many`]) and hands
/// `each` what [`Index::get_into`] would answer for the key at `hits[j]`'s
/// position, given the part's size the entry records there. `key_of`
/// names a key for a miss's detail.
fn read_parts<E, F>(
    store: &Store,
    ids: &[ObjectId],
    hits: &[(usize, u64)],
    part: &str,
    key_of: impl Fn(usize) -> std::result::Result<Key, E>,
    mut each: F,
) -> std::result::Result<(), E>
where
    F: FnMut(usize, Result<Lookup<&[u8]>>) -> std::result::Result<(), E>,
{
    store.get_many(ids, |j, read| {
        let (i, size) = hits[j];
        let answer = match read {
            Ok(object) if object.payload().len() as u64 == size => {
                Ok(Lookup::Hit(object.payload()))
            }
            read => {
                let key = key_of(i)?;
                let part_ref = PartRef {
                    name: part.to_string(),
                    id: ids[j],
                    size,
                };
                match read {
                    Ok(object) => Ok(size_mismatch(
                        &key,
                        &part_ref,
                        object.payload().len() as u64,
                    )),
                    Err(e) => object_miss(&key, &part_ref, e),
                }
            }
        };
        each(i, answer)
    })
}

/// The answer for a resolved key, `f` applied to a hit.
fn answer<R>(resolved: Resolved<'_>, key: &Key, f: impl FnOnce(EntryRef<'_>) -> R) -> Lookup<R> {
    match resolved {
        Resolved::Absent => absent(key),
        Resolved::Removed => Lookup::miss(MissCause::Absent, "the entry was removed"),
        Resolved::Damaged(path, reason) => damaged(&path, &reason),
        Resolved::Hit(entry) => Lookup::Hit(f(entry)),
    }
}

fn damaged<T>(path: &Path, reason: &str) -> Lookup<T> {
    Lookup::miss(
        MissCause::Corrupt,
        format!("index record in {} is damaged: {reason}", path.display()),
    )
}

/// `None` for an absent key (worth a refresh), else the answer.
fn to_entry(resolved: Resolved<'_>) -> Option<Lookup<Entry>> {
    match resolved {
        Resolved::Absent => None,
        Resolved::Removed => Some(Lookup::miss(MissCause::Absent, "the entry was removed")),
        Resolved::Damaged(path, reason) => Some(damaged(&path, &reason)),
        Resolved::Hit(entry) => Some(Lookup::Hit(entry.to_entry())),
    }
}

fn absent<T>(key: &Key) -> Lookup<T> {
    Lookup::miss(MissCause::Absent, format!("no entry for {key}"))
}

fn dangling<T>(key: &Key, part: &PartRef, path: &Path) -> Lookup<T> {
    Lookup::miss(
        MissCause::Dangling,
        format!(
            "part {:?} of the entry for {key} names object {}, which is missing (no file at {})",
            part.name,
            part.id,
            path.display()
        ),
    )
}

fn size_mismatch<T>(key: &Key, part: &PartRef, actual: u64) -> Lookup<T> {
    Lookup::miss(
        MissCause::Corrupt,
        format!(
            "part {:?} of the entry for {key} should be {} bytes, but object {} has {actual}",
            part.name, part.size, part.id
        ),
    )
}

fn object_miss<T>(key: &Key, part: &PartRef, err: Error) -> Result<Lookup<T>> {
    match err {
        Error::NotFound { path, .. } => Ok(dangling(key, part, &path)),
        Error::Corrupt { .. } => Ok(Lookup::miss(
            MissCause::Corrupt,
            format!("part {:?} of the entry for {key}: {err}", part.name),
        )),
        other => Err(other),
    }
}
