//! `verify`: find every kind of damage in a store, and optionally repair it.
//!
//! # What is checked
//! - the format stamp;
//! - every object file: re-hashed in full (on every core), header, length;
//! - every pack (`objects/pack/`, on the same cores): both headers, every
//!   index record's checksum and the index's tail (a record cut short), and
//!   every object a record names: inside the data file (a record past its
//!   end is a corrupt object) and re-hashed in full as an object file is.
//!   Damaged records, a torn tail and a missing header are not reported for
//!   a pack a live writer holds ([`crate::pack::is_being_written`]): an
//!   append in progress looks like that. An object may have several copies
//!   (a loose file, records in several packs): every damaged copy is
//!   reported, but the object counts as intact if any copy is;
//! - every link: the object it names must exist;
//! - every file in a fanout directory must be named like an object, and
//!   every file in `objects/pack/` must be one of a pack's two files with
//!   its partner beside it (a data file a live writer holds is a pack being
//!   made; one no one holds is litter, below);
//! - every index file through [`Index::check`]: manifest, segment checksums,
//!   order and fan-out, every journal record, torn journal tails; and index
//!   files the manifest does not name (left by a compaction that died);
//! - every live index entry: each part must exist, be intact, and reach only
//!   objects that exist (its closure is complete);
//! - every ref: it parses, its target exists and its closure is complete;
//! - every reflog line passes its check;
//! - ref transactions left unfinished by a dead writer (`locks/txn/`);
//! - stale ref lock files and dead pins.
//!
//! Every problem is collected with its kind and path; verify never stops at
//! the first. The object walk's results (which objects are intact, the link
//! graph) are reused for entries and refs: nothing is hashed twice, except
//! objects that appeared after the walk, which are checked when first met.
//!
//! # Damage and litter
//! Most kinds are **damage**: something a build could trip over. Four are
//! **litter** ([`ProblemKind::is_litter`]): a stale ref lock file, a dead
//! pin, an index file the manifest does not name (left by a compaction
//! that died), and what a pack writer killed midway leaves (a pack data
//! file without its index, a record cut short at the end of a pack index:
//! the object being appended is absent, as after any crash). All are left
//! by a process that died and protect nothing; the first three are cleared
//! by the next writer, gc or compaction anyway, a lone pack data file by
//! gc (a torn pack tail stays until its pack is rewritten). Verify reports
//! them, repair removes them (a leftover index file by compacting, a lone
//! pack data file to quarantine, a torn pack tail by rewriting its pack),
//! but they do not make a store unclean (exit 0).
//!
//! # Repair
//! Repair never deletes evidence:
//! - a damaged object file, a stray file (in a fanout directory or in
//!   `objects/pack/`) or a lone pack data file is moved to `quarantine/`
//!   (named `<original name>.<unix nanos>`), and so is every object file
//!   whose links can no longer be followed to the end (its closure is
//!   incomplete);
//! - a pack with damage (a bad header, a damaged record, a corrupt object)
//!   or a torn tail, or holding an object whose closure is incomplete, is
//!   rewritten, since packs are never edited: repair claims it (the data
//!   file's lock, as gc does), copies every intact object it must keep into
//!   a new pack with its record's write time, syncs the new pack and the
//!   directory, and only then moves the old data and index files to
//!   `quarantine/`. A pack whose index cannot be read is moved there whole
//!   (its objects can no longer be found). A pack a live writer holds is
//!   left and reported as not repaired (run repair again once that process
//!   has exited); so is a pack of a format version this build does not read;
//! - each object that leaves the store this way leaves the statistics' size
//!   by kind once, as its header names it (one whose header is unreadable
//!   cannot be attributed); a damaged copy of an object that is intact
//!   elsewhere leaves nothing, since the object stays;
//! - an index entry whose part is missing, corrupt or has an incomplete
//!   closure is removed ([`Index::remove`]: a remove record, so the journal
//!   keeps the trace), then the index is compacted, which also moves
//!   unreadable segments to `quarantine/index-<file>.<unix nanos>` (a journal
//!   whose header is unreadable is copied there), moves the `index/<file>.bad`
//!   files older versions set aside there too, and drops torn journal tails;
//! - a ref whose closure is incomplete is deleted by compare-and-swap
//!   against the value verify read, with a reflog line naming the reason
//!   (the compiler rebuilds that package); a garbage ref is first copied to
//!   `quarantine/ref-<ns>-<pkg>.<nanos>`, then deleted the same way;
//! - unfinished ref transactions are completed
//!   ([`Store::recover_ref_transactions`]) before refs are checked;
//! - a reflog with damaged lines is copied to
//!   `quarantine/reflog-<ns>-<pkg>.<nanos>` and rewritten with its good lines
//!   (under the ref's lock, so no append is lost);
//! - stale ref lock files and dead pins are removed.
//!
//! After a repair the store verifies clean.
//!
//! # Concurrency
//! Safe beside writers and gc. Verify takes no exclusive lock (it takes the
//! shared writers lock while it re-checks links, so that it never sees a gc
//! sweep half done; so it must not run in a process that holds
//! [`crate::lock::ExclusiveGuard`]). Writes it
//! makes in repair go through the ordinary writer paths (shared lock, ref
//! locks, index journal; a pack is rewritten under the shared lock and its
//! own lock, which gc takes too, so they never rewrite one pack at once).
//! The verifying handle's own pack is closed first (as gc does), so that
//! its own appends are not mistaken for a live writer's. Files that vanish
//! mid-walk are skipped. Anything that may just have been written is
//! re-checked before it is reported: a link is dangling only if its target
//! is still absent when checked a second time (against the files: a loose
//! file or a pack index's record, not this handle's memory of records it
//! wrote); an entry or ref only if it still holds the same value; a
//! torn journal tail only if it is still there when read again, a damaged
//! reflog line only if it is still there when read again after its ref's
//! lock is free (appends happen under that lock); a pack file that belongs
//! to no pack only if it still does after the walk. Each hashing worker
//! holds at most two files open at a time (a pack's data file, and an
//! index file while it is read).
//!
//! Remaining window: a garbage ref is retired unconditionally (it has no
//! value to compare against); it is re-read just before, so only a writer
//! that replaces it in that instant is overruled, and its value is then
//! recorded as the old value in the reflog line.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};
use crate::id::{IdMap, IdSet, ObjectId};
use crate::index::{Entry, Index, PartView};
use crate::layout::{Layout, PACK_DATA_SUFFIX, PACK_INDEX_SUFFIX, REF_LOCK_SUFFIX};
use crate::lock::{self, Backoff, HeldLockFile, PinState, SharedGuard, TryCreate, Wait};
use crate::name::{Namespace, PackageName};
use crate::object::{self, Header, Kind};
use crate::pack::{self, PackRecord, PackWriter};
use crate::packs;
use crate::publish::{self, Access};
use crate::refs::{self, Expect};
use crate::stamp;
use crate::store::Store;
use crate::walk::{self, FanoutEntry, list_dir};

/// How long repair waits for a ref lock held by a live process.
const REPAIR_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether verify changes anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RepairMode {
    /// Only report.
    #[default]
    ReportOnly,
    /// Quarantine, drop and retire what is damaged or unusable.
    Repair,
}

/// How verify runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Report only, or repair too.
    pub repair: RepairMode,
    /// Worker threads for hashing; 0 means one per core.
    pub threads: usize,
}

/// The kinds of damage (and litter) verify finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The format stamp is missing, unreadable or of another format.
    BadStamp,
    /// An object's bytes do not match its id.
    CorruptObject,
    /// An object file could not be read at all.
    UnreadableObject,
    /// An object links to an object that does not exist.
    DanglingLink,
    /// A file in a fanout directory that is not named like an object, or a
    /// file in `objects/pack/` that is not part of a pack (an index without
    /// its data file, anything but `.rsp` and `.rsi` files).
    StrayFile,
    /// A pack file is damaged: a bad header, an index record that fails its
    /// checksum, or a format version this build does not read. (A damaged
    /// object in a pack is a [`ProblemKind::CorruptObject`] naming the
    /// pack's data file.)
    DamagedPack,
    /// An index file (manifest, segment, journal) is damaged: checksum,
    /// order, fan-out, a damaged or torn journal record.
    DamagedIndexFile,
    /// A live index entry whose part is missing or reaches a missing object.
    DanglingEntry,
    /// A live index entry whose part object is corrupt.
    CorruptEntryPart,
    /// A ref file that is not an id.
    CorruptRef,
    /// A ref whose target is missing, corrupt, or reaches a missing object.
    DanglingRef,
    /// A reflog line that fails its check (damaged, or a torn append).
    DamagedReflogLine,
    /// A multi-ref transaction whose writer died midway.
    UnfinishedTransaction,
    /// A live pin file that cannot be parsed.
    BadPin,
    /// Litter: a ref lock file whose holder is gone.
    StaleLock,
    /// Litter: a pin file whose process is gone.
    DeadPin,
    /// Litter: an index segment or journal the manifest does not name, left
    /// by a compaction that died before switching the manifest or before
    /// removing the files it replaced.
    LeftoverIndexFile,
    /// Litter: what a pack writer killed midway left: a pack data file
    /// without its index that no live writer holds (a writer killed while
    /// making its pack, or gc or repair killed while removing one; no
    /// reader can find an object in it), or bytes at the end of a pack
    /// index that are not a whole record (an append cut short: its object
    /// is absent).
    PackLeftover,
}

impl ProblemKind {
    /// A stable kebab-case name for output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::BadStamp => "bad-stamp",
            ProblemKind::CorruptObject => "corrupt-object",
            ProblemKind::UnreadableObject => "unreadable-object",
            ProblemKind::DanglingLink => "dangling-link",
            ProblemKind::StrayFile => "stray-file",
            ProblemKind::DamagedPack => "damaged-pack",
            ProblemKind::DamagedIndexFile => "damaged-index-file",
            ProblemKind::DanglingEntry => "dangling-entry",
            ProblemKind::CorruptEntryPart => "corrupt-entry-part",
            ProblemKind::CorruptRef => "corrupt-ref",
            ProblemKind::DanglingRef => "dangling-ref",
            ProblemKind::DamagedReflogLine => "damaged-reflog-line",
            ProblemKind::UnfinishedTransaction => "unfinished-transaction",
            ProblemKind::BadPin => "bad-pin",
            ProblemKind::StaleLock => "stale-lock",
            ProblemKind::DeadPin => "dead-pin",
            ProblemKind::LeftoverIndexFile => "leftover-index-file",
            ProblemKind::PackLeftover => "pack-leftover",
        }
    }

    /// True for leftovers of dead processes that harm nothing (stale lock
    /// files, dead pins, index files a dead compaction left, what a killed
    /// pack writer left): reported and removed by repair, but not damage.
    pub fn is_litter(self) -> bool {
        matches!(
            self,
            ProblemKind::StaleLock
                | ProblemKind::DeadPin
                | ProblemKind::LeftoverIndexFile
                | ProblemKind::PackLeftover
        )
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What kind of damage.
    pub kind: ProblemKind,
    /// The file concerned.
    pub path: PathBuf,
    /// What exactly is wrong.
    pub detail: String,
    /// What repair did about it, if anything.
    pub repaired: Option<String>,
}

/// What verify found (and repaired).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Objects checked: object files and packed copies (an object with
    /// several copies counts once per copy).
    pub objects: u64,
    /// Bytes of objects hashed (a packed object's bytes are its encoding,
    /// the size its loose file would have).
    pub bytes: u64,
    /// Live index entries checked.
    pub entries: u64,
    /// Refs checked.
    pub refs: u64,
    /// Every problem, sorted by kind then path.
    pub problems: Vec<Problem>,
    /// Worker threads used.
    pub threads: usize,
}

impl VerifyReport {
    /// True when no damage was found (litter may have been).
    pub fn is_clean(&self) -> bool {
        self.problems.iter().all(|p| p.kind.is_litter())
    }

    /// Problems that repair did not fix (all of them when not repairing).
    pub fn unrepaired(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.repaired.is_none())
    }

    /// Damage (not litter) that repair did not fix: what makes verify exit 3.
    pub fn damage_left(&self) -> impl Iterator<Item = &Problem> {
        self.unrepaired().filter(|p| !p.kind.is_litter())
    }
}

/// Progress of a long verify, reported after each pack and each fanout
/// directory (packs are checked first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Fanout directories finished, out of 256.
    pub dirs_done: usize,
    /// Objects checked so far.
    pub objects: u64,
    /// Bytes hashed so far.
    pub bytes: u64,
}

/// Objects checked and their bytes, by one worker in one directory.
#[derive(Default)]
struct Counts {
    objects: u64,
    bytes: u64,
}

#[derive(Default)]
struct WorkerResult {
    links: Vec<(ObjectId, ObjectId)>,
    /// The intact objects of each fanout directory this worker walked.
    present: Vec<(u8, IdSet)>,
    /// The intact objects of the packs this worker checked.
    packed: Vec<ObjectId>,
    /// Damaged object files and stray files: repair moves them to
    /// quarantine (the object's id, unless a stray file).
    problems: Vec<(Problem, Option<ObjectId>)>,
    /// Problems found in packs, with what repair does and the id of the
    /// damaged object, if one.
    pack_problems: Vec<(Problem, Action, Option<ObjectId>)>,
}

/// One pack, as listed before the walk.
struct PackPaths {
    /// Its files are `<name>.rsp` and `<name>.rsi`.
    name: String,
    data: PathBuf,
    index: PathBuf,
    /// Its index, read once by the first of its parts the walk reaches and
    /// shared by the others.
    read: OnceLock<std::result::Result<Arc<pack::PackIndex>, Arc<Error>>>,
}

impl PackPaths {
    fn new(dir: &Path, name: String) -> PackPaths {
        PackPaths {
            data: dir.join(format!("{name}{PACK_DATA_SUFFIX}")),
            index: dir.join(format!("{name}{PACK_INDEX_SUFFIX}")),
            name,
            read: OnceLock::new(),
        }
    }
}

/// One work item of the walk: the records of one pack whose bytes start in
/// one stretch of its data file. A large pack is several items, so that two
/// workers share it instead of one of them checking all of it while the
/// other has nothing left to do.
#[derive(Clone, Copy, Debug)]
struct PackPart {
    /// Which pack (an index into the walk's list).
    pack: usize,
    /// Which stretch, of `parts`.
    part: u64,
    parts: u64,
    /// The length of a stretch.
    stretch: u64,
}

/// The data a pack part covers at most.
const PACK_PART_BYTES: u64 = 64 << 20;

impl PackPart {
    /// Splits each pack into parts of at most [`PACK_PART_BYTES`] of its
    /// data file as it is now. A pack a live writer holds stays one part:
    /// it may grow while it is checked.
    fn plan(packs: &[PackPaths]) -> Vec<PackPart> {
        let mut out = Vec::new();
        for (n, pack) in packs.iter().enumerate() {
            let len = fs::metadata(&pack.data).map_or(0, |m| m.len());
            let live = pack::is_being_written(&pack.data).unwrap_or(false);
            let parts = if live {
                1
            } else {
                len.div_ceil(PACK_PART_BYTES).max(1)
            };
            let stretch = len.div_ceil(parts).max(1);
            out.extend((0..parts).map(|part| PackPart {
                pack: n,
                part,
                parts,
                stretch,
            }));
        }
        out
    }

    /// Where this part's stretch ends (for the last part: nowhere).
    fn end(&self) -> u64 {
        if self.part + 1 == self.parts {
            u64::MAX
        } else {
            (self.part + 1) * self.stretch
        }
    }

    /// Whether the record whose bytes start at `offset` is this part's (a
    /// record past the stretches, appended since, is the last part's).
    fn owns(&self, offset: u64) -> bool {
        (offset / self.stretch).min(self.parts - 1) == self.part
    }
}

/// What a repair must act on, besides the problems themselves.
enum Action {
    None,
    /// Move the problem's file to quarantine (the object's id, unless it is
    /// a stray file).
    Quarantine(Option<ObjectId>),
    /// Rewrite this pack (its number in the walk's list) without its
    /// damaged objects.
    Pack(usize),
    /// This object links to a missing one: its copies are quarantined or
    /// dropped with the other objects whose closure is incomplete.
    Dangling(ObjectId),
    /// Remove this entry (key encoding) if it is still the entry `id`.
    Entry {
        key: Vec<u8>,
        id: ObjectId,
    },
    /// Repaired by compacting the index.
    Compact,
    /// Delete this ref if it still holds `value` (None: garbage).
    Ref {
        ns: Namespace,
        pkg: PackageName,
        value: Option<ObjectId>,
    },
    /// Rewrite this reflog without its damaged lines.
    Reflog {
        ns: Namespace,
        pkg: PackageName,
    },
    /// Recovered by `recover_ref_transactions`.
    Transaction,
    /// Remove this stale lock file.
    Lock,
    /// Remove dead pins.
    Pin,
}

/// The intact objects the walk found, one set per first byte of the id: a
/// fanout directory's set as its worker built it (no merge of every set
/// into one after the walk), with the packed ids that start with that byte
/// added.
struct Present(Vec<IdSet>);

impl Present {
    fn new(
        dirs: impl IntoIterator<Item = (u8, IdSet)>,
        packed: impl IntoIterator<Item = ObjectId>,
    ) -> Present {
        let mut sets: Vec<IdSet> = (0..=u8::MAX).map(|_| IdSet::default()).collect();
        for (dir, set) in dirs {
            let slot = &mut sets[usize::from(dir)];
            if slot.is_empty() {
                *slot = set;
            } else {
                slot.extend(set);
            }
        }
        for id in packed {
            sets[usize::from(id.as_bytes()[0])].insert(id);
        }
        Present(sets)
    }

    fn contains(&self, id: &ObjectId) -> bool {
        self.0[usize::from(id.as_bytes()[0])].contains(id)
    }
}

/// The link graph and the object results of the walk.
struct Graph {
    present: Present,
    /// Objects the walk found corrupt or unreadable.
    bad: IdSet,
    /// Every id whose closure is incomplete, with a missing or damaged
    /// object it reaches (itself, for a missing or damaged one).
    broken: IdMap<ObjectId>,
    /// Results for objects that appeared after the walk.
    late: Mutex<IdMap<Reach>>,
}

/// Whether an object and everything it links to can be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// It and its whole closure exist and are intact.
    Whole,
    /// It does not exist.
    Missing,
    /// It exists but its bytes are damaged.
    Damaged,
    /// It is fine, but reaches this missing or damaged object.
    Reaches(ObjectId),
}

impl Graph {
    fn build(
        store: &Store,
        present: Present,
        bad: IdSet,
        links: &[(ObjectId, ObjectId)],
    ) -> Result<Graph> {
        let mut parents: IdMap<Vec<ObjectId>> = IdMap::default();
        let mut broken: IdMap<ObjectId> = IdMap::default();
        for &id in &bad {
            broken.insert(id, id);
        }
        let mut unseen = IdSet::default();
        for &(from, to) in links {
            parents.entry(to).or_default().push(from);
            if !present.contains(&to) && !bad.contains(&to) {
                unseen.insert(to);
            }
        }
        // Written after the walk listed its directory or pack: not missing.
        let late = on_disk(store, &unseen)?;
        for to in unseen {
            if !late.contains(&to) {
                broken.insert(to, to);
            }
        }
        let mut queue: Vec<ObjectId> = broken.keys().copied().collect();
        while let Some(id) = queue.pop() {
            let witness = broken.get(&id).copied().unwrap_or(id);
            for &parent in parents.get(&id).map_or(&[][..], Vec::as_slice) {
                if let std::collections::hash_map::Entry::Vacant(slot) = broken.entry(parent) {
                    slot.insert(witness);
                    queue.push(parent);
                }
            }
        }
        Ok(Graph {
            present,
            bad,
            broken,
            late: Mutex::new(IdMap::default()),
        })
    }

    /// Whether `id` and its closure are usable, from the walk's results,
    /// checking objects that appeared since (once each).
    fn reach(&self, store: &Store, id: ObjectId) -> Result<Reach> {
        if self.present.contains(&id) && self.broken.is_empty() {
            // The common case: a whole store.
            return Ok(Reach::Whole);
        }
        if self.bad.contains(&id) {
            return Ok(Reach::Damaged);
        }
        if let Some(&witness) = self.broken.get(&id) {
            return Ok(if witness == id {
                Reach::Missing
            } else {
                Reach::Reaches(witness)
            });
        }
        if self.present.contains(&id) {
            return Ok(Reach::Whole);
        }
        if let Some(&known) = self.late.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(known);
        }
        let reach = match store.object_info(&id) {
            Ok(info) => {
                let mut reach = Reach::Whole;
                for child in info.links {
                    match self.reach(store, child)? {
                        Reach::Whole => {}
                        Reach::Missing | Reach::Damaged => {
                            reach = Reach::Reaches(child);
                            break;
                        }
                        Reach::Reaches(w) => {
                            reach = Reach::Reaches(w);
                            break;
                        }
                    }
                }
                reach
            }
            Err(Error::NotFound { .. }) => Reach::Missing,
            Err(Error::Corrupt { .. }) => Reach::Damaged,
            Err(e) => return Err(e),
        };
        self.late
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, reach);
        Ok(reach)
    }

    /// Settles which of `ids` the walk did not see are absent from the disk
    /// now (see [`on_disk`]), so that [`Graph::reach`] does not take this
    /// handle's memory of a pack record for the record.
    fn settle_unseen(&self, store: &Store, ids: &[ObjectId]) -> Result<()> {
        let mut late = self.late.lock().unwrap_or_else(|p| p.into_inner());
        let unseen: IdSet = ids
            .iter()
            .filter(|id| {
                !self.present.contains(id)
                    && !self.bad.contains(id)
                    && !self.broken.contains_key(id)
                    && !late.contains_key(id)
            })
            .copied()
            .collect();
        let there = on_disk(store, &unseen)?;
        for id in unseen {
            if !there.contains(&id) {
                late.insert(id, Reach::Missing);
            }
        }
        Ok(())
    }

    /// Objects to quarantine: every present object whose closure is incomplete.
    fn unusable(&self) -> Vec<ObjectId> {
        let mut ids: Vec<ObjectId> = self
            .broken
            .iter()
            .filter(|(id, witness)| id != witness && self.present.contains(id))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }
}

/// Checks the whole store; with [`RepairMode::Repair`], repairs what is
/// damaged or unusable (see the module docs).
///
/// `progress` is called from worker threads after each fanout directory.
///
/// # Errors
/// Only when verify cannot run at all (a fanout directory cannot be listed,
/// quarantine cannot be created); damage is reported in the [`VerifyReport`].
pub fn verify(
    store: &Store,
    options: VerifyOptions,
    progress: &(dyn Fn(VerifyProgress) + Sync),
) -> Result<VerifyReport> {
    let layout = store.layout();
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut report = VerifyReport {
        threads,
        ..VerifyReport::default()
    };
    let mut found: Vec<(Problem, Action)> = Vec::new();
    if let Err(e) = stamp::check(layout) {
        found.push((
            problem(ProblemKind::BadStamp, layout.stamp(), e.to_string()),
            Action::None,
        ));
    }

    // This handle's own pack is closed, so that its appends do not count as
    // a live writer's (a torn tail would go unreported, repair would leave
    // the pack), as gc does before it rewrites packs.
    store.packs().close_own_pack()?;
    let pack_dir = layout.pack_dir();
    let pack_list: Vec<PackPaths> = packs::list_packs(&pack_dir)?
        .into_iter()
        .map(|name| PackPaths::new(&pack_dir, name))
        .collect();
    // Reported only if they are still strays after the walk.
    let pack_strays: Vec<PathBuf> = list_dir(&pack_dir)?
        .into_iter()
        .filter(|path| pack_stray_detail(path).is_some())
        .collect();

    // Work items: the packs first (the largest items, so that the last one
    // does not keep a worker busy after the others are done), then the 256
    // fanout directories.
    let next_item = AtomicUsize::new(0);
    let dirs_done = AtomicUsize::new(0);
    let objects = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let pack_list = &pack_list;
    let pack_parts = &PackPart::plan(pack_list);
    let (results, index_files) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = WorkerResult::default();
                    // One read buffer per worker, grown to the largest file.
                    let mut scratch = Vec::new();
                    loop {
                        let item = next_item.fetch_add(1, Ordering::Relaxed);
                        if let Some(part) = pack_parts.get(item) {
                            let mut counts = Counts::default();
                            let pack = &pack_list[part.pack];
                            check_pack(pack, part, &mut out, &mut scratch, &mut counts);
                            objects.fetch_add(counts.objects, Ordering::Relaxed);
                            bytes.fetch_add(counts.bytes, Ordering::Relaxed);
                            progress(VerifyProgress {
                                dirs_done: dirs_done.load(Ordering::Relaxed),
                                objects: objects.load(Ordering::Relaxed),
                                bytes: bytes.load(Ordering::Relaxed),
                            });
                            continue;
                        }
                        let dir = item - pack_parts.len();
                        if dir > usize::from(u8::MAX) {
                            break;
                        }
                        let entries = match walk::fanout_entries(layout, dir as u8) {
                            Ok(entries) => entries,
                            Err(e) => {
                                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                break;
                            }
                        };
                        // Counted here and added to the shared totals once
                        // per directory: two cores bumping one counter per
                        // object would bounce its cache line between them.
                        let mut counts = Counts::default();
                        let mut present =
                            IdSet::with_capacity_and_hasher(entries.len(), Default::default());
                        for entry in entries {
                            check_entry(
                                store,
                                entry,
                                &mut out,
                                &mut present,
                                &mut scratch,
                                &mut counts,
                            );
                        }
                        out.present.push((dir as u8, present));
                        objects.fetch_add(counts.objects, Ordering::Relaxed);
                        bytes.fetch_add(counts.bytes, Ordering::Relaxed);
                        let done = dirs_done.fetch_add(1, Ordering::Relaxed) + 1;
                        progress(VerifyProgress {
                            dirs_done: done,
                            objects: objects.load(Ordering::Relaxed),
                            bytes: bytes.load(Ordering::Relaxed),
                        });
                    }
                    out
                })
            })
            .collect();
        // Meanwhile, on this thread: the index's files and every entry's
        // parts, which need nothing from the walk.
        let index_files = check_index_files(store);
        let results: Vec<WorkerResult> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect();
        (results, index_files)
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    report.objects = objects.into_inner();
    report.bytes = bytes.into_inner();

    let mut dirs = Vec::new();
    let mut packed = Vec::new();
    // Ids of which a damaged copy was found.
    let mut damaged = IdSet::default();
    let mut links: Vec<(ObjectId, ObjectId)> = Vec::new();
    for result in results {
        dirs.extend(result.present);
        packed.extend(result.packed);
        links.extend(result.links);
        for (p, id) in result.problems {
            if let Some(id) = id {
                damaged.insert(id);
            }
            found.push((p, Action::Quarantine(id)));
        }
        for (p, action, id) in result.pack_problems {
            if let Some(id) = id {
                damaged.insert(id);
            }
            found.push((p, action));
        }
    }
    let present = Present::new(dirs, packed);
    // An object is damaged only if no copy of it is intact; every damaged
    // copy is reported (and repaired) all the same.
    let bad: IdSet = damaged
        .into_iter()
        .filter(|id| !present.contains(id))
        .collect();
    // gc deletes under the exclusive lock, in no particular order: waiting
    // for the shared lock means no sweep is half done while links are
    // re-checked.
    let calm = SharedGuard::acquire(layout, Wait::Block)?;
    let graph = Graph::build(store, present, bad, &links)?;
    // An object with several copies recorded its links once per copy.
    let mut dangling: Vec<(ObjectId, ObjectId)> = Vec::new();
    let mut seen: HashSet<(ObjectId, ObjectId)> = HashSet::new();
    for &(from, to) in &links {
        // gc removing unreachable objects may take the target first and
        // the linking object an instant later: report only what remains.
        if graph.broken.get(&to) == Some(&to)
            && !graph.bad.contains(&to)
            && seen.insert((from, to))
            && store.contains_object(&from)?
        {
            dangling.push((from, to));
        }
    }
    // Named by its loose file, or else by the pack that holds it.
    let mut loose = IdSet::default();
    let mut in_packs = IdSet::default();
    for &(from, _) in &dangling {
        if store.contains_loose(&from)? {
            loose.insert(from);
        } else {
            in_packs.insert(from);
        }
    }
    let holders = packs_holding(pack_list, &in_packs);
    for (from, to) in dangling {
        let path = match holders.get(&from).and_then(|packs| packs.first()) {
            Some(&n) if !loose.contains(&from) => pack_list[n].data.clone(),
            _ => store.object_path(&from),
        };
        let detail = format!("object {from} links to {to}, which does not exist");
        found.push((
            problem(ProblemKind::DanglingLink, path, detail),
            Action::Dangling(from),
        ));
    }
    // Files in the pack directory that belong to no pack, and still do not
    // now that the walk is over: a pack being made or removed is not one.
    for path in pack_strays {
        if let Some((kind, detail)) = pack_stray_detail(&path) {
            found.push((problem(kind, path, detail), Action::Quarantine(None)));
        }
    }

    drop(calm);
    let (index_files, index_found) = index_files?;
    found.extend(index_found);
    let index = check_index(store, &graph, index_files, &mut found, &mut report)?;
    check_transactions(store, options.repair, &mut found)?;
    check_refs(store, &graph, &mut found, &mut report)?;
    check_reflogs(store, &mut found)?;
    check_pins(store, &mut found)?;

    if options.repair == RepairMode::Repair {
        repair(store, index.as_ref(), &graph, pack_list, &mut found)?;
    }
    let mut problems: Vec<Problem> = found.into_iter().map(|(p, _)| p).collect();
    problems.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    report.problems = problems;
    Ok(report)
}

fn problem(kind: ProblemKind, path: PathBuf, detail: String) -> Problem {
    Problem {
        kind,
        path,
        detail,
        repaired: None,
    }
}

/// Index files, then every live entry's parts. Returns the open index, or
/// `None` when its manifest is unreadable (reported).
/// Problems found, each with what repair does about it.
type Found = Vec<(Problem, Action)>;

/// What [`check_index_files`] found, while the object walk ran.
struct IndexFiles {
    index: Index,
    /// How many live entries there were and the part ids of all of them,
    /// to be looked up in the walk's results; `None` when listing them
    /// failed (they are listed again after the walk).
    parts: Option<(u64, Vec<ObjectId>)>,
}

/// The index files, and the part ids of every live entry: the index's
/// share of verify that needs nothing from the object walk, run beside it.
/// `None` when the manifest is unreadable (reported in `found`).
fn check_index_files(store: &Store) -> Result<(Option<IndexFiles>, Found)> {
    let mut found = Vec::new();
    let index = match Index::open(store) {
        Ok(index) => index,
        Err(e @ (Error::Corrupt { .. } | Error::UnsupportedFormat { .. })) => {
            found.push((
                problem(
                    ProblemKind::DamagedIndexFile,
                    store.layout().index_manifest(),
                    e.to_string(),
                ),
                Action::None,
            ));
            return Ok((None, found));
        }
        Err(e) => return Err(e),
    };
    check_leftover_index_files(store.layout(), &mut found)?;
    for path in crate::index::set_aside_files(store.layout())? {
        found.push((
            problem(
                ProblemKind::DamagedIndexFile,
                path,
                "an unreadable index file an older version set aside; repair moves it to \
                 quarantine/"
                    .into(),
            ),
            Action::Compact,
        ));
    }
    let first = index.check()?;
    if !first.is_empty() {
        // A torn tail may be an append in progress: report what persists
        // once no append is under way.
        index.wait_for_appends(refs::REF_LOCK_TIMEOUT)?;
        let second = index.check()?;
        for p in first.into_iter().filter(|p| second.contains(p)) {
            found.push((
                problem(ProblemKind::DamagedIndexFile, p.path, p.message),
                Action::Compact,
            ));
        }
    }
    let mut parts = Vec::new();
    let mut entries = 0u64;
    let listed = index.for_each_entry(|entry| {
        entries += 1;
        parts.extend(entry.parts().map(|p| p.id));
        Ok(())
    });
    let files = IndexFiles {
        index,
        parts: listed.ok().map(|()| (entries, parts)),
    };
    Ok((Some(files), found))
}

/// Every live entry's parts against the object walk's results. Returns the
/// open index, or `None` when its manifest is unreadable (reported).
fn check_index(
    store: &Store,
    graph: &Graph,
    files: Option<IndexFiles>,
    found: &mut Vec<(Problem, Action)>,
    report: &mut VerifyReport,
) -> Result<Option<Index>> {
    let Some(files) = files else {
        return Ok(None);
    };
    let index = files.index;
    // The common case, a whole store: every part listed beside the walk is
    // intact, and there is nothing more to look at.
    if let Some((entries, parts)) = &files.parts {
        graph.settle_unseen(store, parts)?;
        let mut whole = true;
        for &id in parts {
            if graph.reach(store, id)? != Reach::Whole {
                whole = false;
                break;
            }
        }
        if whole {
            report.entries = *entries;
            return Ok(Some(index));
        }
    }
    // Entries whose parts are not whole, looked at again below (the walk
    // holds the index's read lock).
    let mut suspects: Vec<(Entry, ProblemKind, String)> = Vec::new();
    let mut entries = 0u64;
    index.for_each_entry(|entry| {
        entries += 1;
        if let Some((kind, detail)) = entry_problem(store, graph, entry.parts())? {
            suspects.push((entry.to_entry(), kind, detail));
        }
        Ok(())
    })?;
    report.entries = entries;
    for (entry, kind, detail) in suspects {
        // Re-check: the entry may have been replaced or removed meanwhile.
        let Ok(key) = entry.key() else { continue };
        index.refresh()?;
        let still = index
            .lookup(&key)?
            .hit()
            .is_some_and(|e| e.id() == entry.id());
        if !still {
            continue;
        }
        let path = store.layout().index_dir().to_path_buf();
        found.push((
            problem(
                kind,
                path,
                format!("entry {} (key {}): {detail}", entry.id(), key.hash()),
            ),
            Action::Entry {
                key: entry.key_encoding().to_vec(),
                id: entry.id(),
            },
        ));
    }
    Ok(Some(index))
}

/// Segment and journal files the manifest does not name. Skipped while a
/// compaction runs (it holds the compaction lock): its new files are not
/// named yet, and its old ones are about to be removed.
fn check_leftover_index_files(layout: &Layout, found: &mut Vec<(Problem, Action)>) -> Result<()> {
    let lock_path = layout.index_compact_lock();
    let lock = match File::open(&lock_path) {
        Ok(lock) => lock,
        // No compaction ever ran, so none left anything.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("open", &lock_path, e)),
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(()),
        Err(TryLockError::Error(e)) => return Err(Error::io("lock", &lock_path, e)),
    }
    let Some(manifest) = crate::index::manifest::read(layout)? else {
        return Ok(());
    };
    for path in list_dir(layout.index_dir())? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(generation) = Layout::index_file_generation(name) else {
            continue;
        };
        let named = if name.starts_with("seg-") {
            manifest.segments.contains(&generation)
        } else {
            generation == manifest.generation
        };
        if !named {
            let detail = format!(
                "not named by the index manifest (generation {}): left by a compaction that \
                 did not finish",
                manifest.generation
            );
            found.push((
                problem(ProblemKind::LeftoverIndexFile, path, detail),
                Action::Compact,
            ));
        }
    }
    Ok(())
}

fn entry_problem<'a>(
    store: &Store,
    graph: &Graph,
    parts: impl Iterator<Item = PartView<'a>>,
) -> Result<Option<(ProblemKind, String)>> {
    for part in parts {
        let id = part.id;
        let found = match graph.reach(store, id)? {
            Reach::Whole => continue,
            Reach::Missing => (
                ProblemKind::DanglingEntry,
                format!("part {:?} is object {id}, which does not exist", part.name),
            ),
            Reach::Damaged => (
                ProblemKind::CorruptEntryPart,
                format!("part {:?} is object {id}, which is corrupt", part.name),
            ),
            Reach::Reaches(w) => (
                ProblemKind::DanglingEntry,
                format!(
                    "part {:?} (object {id}) reaches object {w}, which is missing or corrupt",
                    part.name
                ),
            ),
        };
        return Ok(Some(found));
    }
    Ok(None)
}

/// Transaction records of dead writers. With repair, they are completed
/// now, before refs are read.
fn check_transactions(
    store: &Store,
    mode: RepairMode,
    found: &mut Vec<(Problem, Action)>,
) -> Result<()> {
    let dir = store.layout().txn_dir();
    let mut dead = Vec::new();
    for path in list_dir(&dir)? {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        // The owner holds the record locked for as long as it lives, and
        // removes it before letting go: a lock taken on a file the path no
        // longer names is one whose owner just finished.
        if file.try_lock().is_ok() && crate::lock::still_at(&file, &path).unwrap_or(false) {
            dead.push(path);
        }
    }
    if dead.is_empty() {
        return Ok(());
    }
    let outcome = match mode {
        RepairMode::Repair => Some(store.recover_ref_transactions()),
        RepairMode::ReportOnly => None,
    };
    for path in dead {
        let mut p = problem(
            ProblemKind::UnfinishedTransaction,
            path.clone(),
            "a multi-ref transaction whose writer died before finishing".into(),
        );
        match &outcome {
            Some(Ok(done)) => {
                if let Some(t) = done.iter().find(|t| t.path == path) {
                    p.repaired = Some(format!(
                        "completed: {} set, {} changed since and left",
                        t.completed.len(),
                        t.skipped.len()
                    ));
                } else if !path.exists() {
                    p.repaired = Some("completed by another process".into());
                }
            }
            Some(Err(e)) => p.detail.push_str(&format!("; recovery failed: {e}")),
            None => {}
        }
        found.push((p, Action::Transaction));
    }
    Ok(())
}

/// Every ref of every namespace, and the lock files beside them.
fn check_refs(
    store: &Store,
    graph: &Graph,
    found: &mut Vec<(Problem, Action)>,
    report: &mut VerifyReport,
) -> Result<()> {
    let layout = store.layout();
    for ns in store.list_namespaces()? {
        for path in list_dir(&layout.ref_namespace_dir(&ns))? {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') && name.ends_with(REF_LOCK_SUFFIX) {
                if lock_is_stale(&path) {
                    found.push((
                        problem(
                            ProblemKind::StaleLock,
                            path.clone(),
                            "ref lock file of a process that is gone".into(),
                        ),
                        Action::Lock,
                    ));
                }
                continue;
            }
            let Ok(pkg) = PackageName::new(name) else {
                continue;
            };
            report.refs += 1;
            if let Some((p, action)) = ref_problem(store, graph, &ns, &pkg)? {
                found.push((p, action));
            }
        }
    }
    Ok(())
}

fn ref_problem(
    store: &Store,
    graph: &Graph,
    ns: &Namespace,
    pkg: &PackageName,
) -> Result<Option<(Problem, Action)>> {
    let path = store.layout().ref_path(ns, pkg);
    let value = match store.read_ref(ns, pkg) {
        Ok(Some(value)) => value,
        Ok(None) => return Ok(None),
        Err(Error::Corrupt { reason, .. }) => {
            let action = Action::Ref {
                ns: ns.clone(),
                pkg: pkg.clone(),
                value: None,
            };
            return Ok(Some((
                problem(ProblemKind::CorruptRef, path, reason),
                action,
            )));
        }
        Err(e) => return Err(e),
    };
    let detail = match graph.reach(store, value)? {
        Reach::Whole => return Ok(None),
        Reach::Missing => format!("points to {value}, which does not exist"),
        Reach::Damaged => format!("points to {value}, which is corrupt"),
        Reach::Reaches(w) => {
            format!("points to {value}, which reaches {w}, which is missing or corrupt")
        }
    };
    // A writer may have moved the ref on meanwhile.
    if !matches!(store.read_ref(ns, pkg), Ok(Some(now)) if now == value) {
        return Ok(None);
    }
    let action = Action::Ref {
        ns: ns.clone(),
        pkg: pkg.clone(),
        value: Some(value),
    };
    Ok(Some((
        problem(ProblemKind::DanglingRef, path, detail),
        action,
    )))
}

/// Every reflog's damaged lines, re-read once to let appends in progress finish.
fn check_reflogs(store: &Store, found: &mut Vec<(Problem, Action)>) -> Result<()> {
    let logs = store.layout().logs_dir();
    for ns_dir in list_dir(&logs)? {
        let Some(ns) = ns_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| Namespace::new(n).ok())
        else {
            continue;
        };
        for path in list_dir(&ns_dir)? {
            let Some(pkg) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| PackageName::new(n).ok())
            else {
                continue;
            };
            let first = store.reflog(&ns, &pkg)?;
            if first.damaged.is_empty() {
                continue;
            }
            let second = reread_after_writer(store, &ns, &pkg)?;
            for line in first.damaged.iter().filter(|l| second.damaged.contains(l)) {
                found.push((
                    problem(
                        ProblemKind::DamagedReflogLine,
                        path.clone(),
                        format!("line {}: {}", line.line, line.reason),
                    ),
                    Action::Reflog {
                        ns: ns.clone(),
                        pkg: pkg.clone(),
                    },
                ));
            }
        }
    }
    Ok(())
}

/// Re-reads a reflog once no live process holds its ref's lock (a writer
/// appending under it may have been caught between the pages of one line),
/// waiting at most [`refs::REF_LOCK_TIMEOUT`].
fn reread_after_writer(store: &Store, ns: &Namespace, pkg: &PackageName) -> Result<refs::Reflog> {
    let lock = store.layout().ref_lock_path(ns, pkg);
    let mut backoff = Backoff::new(refs::REF_LOCK_TIMEOUT);
    while lock::held_by_live_process(&lock).at("check ref lock", &lock)? {
        if !backoff.sleep() {
            break;
        }
    }
    store.reflog(ns, pkg)
}

fn check_pins(store: &Store, found: &mut Vec<(Problem, Action)>) -> Result<()> {
    match store.pins() {
        Ok(pins) => {
            for pin in pins.into_iter().filter(|p| p.state == PinState::Dead) {
                let detail = match pin.pid {
                    Some(pid) => format!("pin of process {pid}, which is gone"),
                    None => "pin of a process that is gone".to_string(),
                };
                found.push((problem(ProblemKind::DeadPin, pin.path, detail), Action::Pin));
            }
        }
        Err(Error::Corrupt { path, reason, .. }) => {
            found.push((problem(ProblemKind::BadPin, path, reason), Action::None));
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// A lock file nobody holds (see crate::lock, "Stale rule"). The `flock`
/// taken to look is dropped at once; a creator that is about to lock the
/// file waits for that instant and goes on.
fn lock_is_stale(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => true,
        Err(TryLockError::WouldBlock | TryLockError::Error(_)) => false,
    }
}

/// Takes a ref's lock file, clearing a stale one; `None` if a live process
/// kept it for [`REPAIR_LOCK_TIMEOUT`].
fn lock_ref(layout: &Layout, ns: &Namespace, pkg: &PackageName) -> Result<Option<HeldLockFile>> {
    let path = layout.ref_lock_path(ns, pkg);
    let deadline = std::time::Instant::now() + REPAIR_LOCK_TIMEOUT;
    loop {
        match HeldLockFile::try_create(&path, &refs::lock_content(None))? {
            TryCreate::Acquired(held) => return Ok(Some(held)),
            TryCreate::Stale(stale) => stale.remove()?,
            TryCreate::Retry => {}
            TryCreate::Busy => {
                if std::time::Instant::now() > deadline {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Applies every repair (module docs, "Repair").
fn repair(
    store: &Store,
    index: Option<&Index>,
    graph: &Graph,
    packs: &[PackPaths],
    found: &mut Vec<(Problem, Action)>,
) -> Result<()> {
    let layout = store.layout();
    let quarantine = layout.quarantine_dir();
    fs::create_dir_all(&quarantine).at("create directory", &quarantine)?;

    // Objects: damaged ones and stray files, then every object whose closure
    // is incomplete.
    let recorder = store.stats_recorder();
    // Objects whose leaving the statistics have counted (once per object,
    // however many copies it had).
    let mut uncounted = IdSet::default();
    for (p, action) in found.iter_mut() {
        if let Action::Quarantine(id) = action {
            // A damaged copy of an object intact elsewhere: the object stays.
            let counted = id
                .filter(|id| !graph.present.contains(id))
                .and_then(|id| Some((id, counted_as(&p.path)?)));
            match move_to_quarantine(&p.path, &quarantine) {
                Ok(to) => {
                    p.repaired = Some(format!("moved to {}", to.display()));
                    if let Some((id, (kind, len))) = counted
                        && uncounted.insert(id)
                    {
                        recorder.object_changed(kind, len, -1);
                    }
                }
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    p.repaired = Some("removed by another process meanwhile".into());
                }
                Err(e) => return Err(e),
            }
        }
    }
    let unusable = graph.unusable();
    let mut moved: IdMap<PathBuf> = IdMap::default();
    for &id in &unusable {
        let path = store.object_path(&id);
        let counted = counted_as(&path);
        match move_to_quarantine(&path, &quarantine) {
            Ok(to) => {
                moved.insert(id, to);
                if let Some((kind, len)) = counted
                    && uncounted.insert(id)
                {
                    recorder.object_changed(kind, len, -1);
                }
            }
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }

    // Packs: every pack with damage, or holding an object whose closure is
    // incomplete, is rewritten without them.
    let drop_ids: IdSet = unusable.iter().copied().collect();
    let holders = packs_holding(packs, &drop_ids);
    let mut rewrite: BTreeSet<usize> = found
        .iter()
        .filter_map(|(_, action)| match action {
            Action::Pack(n) => Some(*n),
            _ => None,
        })
        .collect();
    rewrite.extend(holders.values().flatten().copied());
    let mut outcomes: HashMap<usize, Rewrite> = HashMap::new();
    if !rewrite.is_empty() {
        let _writing = store.writing()?;
        let cut = Cut {
            drop: &drop_ids,
            present: &graph.present,
            recorder,
            quarantine: &quarantine,
            tmp_dir: layout.tmp_dir(),
        };
        for n in rewrite {
            outcomes.insert(n, rewrite_pack(&packs[n], &cut, &mut uncounted)?);
        }
        forget_removed_packs(store)?;
    }
    for (p, action) in found.iter_mut() {
        if let Action::Pack(n) = action {
            match &outcomes[n] {
                Rewrite::Left(why) => not_repaired(p, why),
                outcome => p.repaired = Some(outcome.note()),
            }
        }
    }

    for id in unusable {
        let mut done = Vec::new();
        let mut left = Vec::new();
        if let Some(to) = moved.get(&id) {
            done.push(format!("moved to {}", to.display()));
        }
        let in_packs = holders.get(&id).map_or(&[][..], Vec::as_slice);
        for &n in in_packs {
            match &outcomes[&n] {
                Rewrite::Left(why) => left.push(format!("left in pack {}: {why}", packs[n].name)),
                // gc copies what a root reaches: it may have kept a copy.
                Rewrite::Gone => left.push(format!(
                    "pack {} was rewritten by another process meanwhile; run `rask-store \
                     verify --repair` again",
                    packs[n].name
                )),
                outcome => done.push(format!(
                    "dropped from pack {}: {}",
                    packs[n].name,
                    outcome.note()
                )),
            }
        }
        if done.is_empty() && left.is_empty() {
            continue; // removed by another process meanwhile
        }
        let note = format!("its closure is incomplete; {}", done.join("; "));
        let apply = |p: &mut Problem| {
            if left.is_empty() {
                p.repaired = Some(note.clone());
            } else {
                if !done.is_empty() {
                    p.detail.push_str(&format!("; {note}"));
                }
                not_repaired(p, &left.join("; "));
            }
        };
        let mut reported = false;
        for (p, action) in found.iter_mut() {
            if let Action::Dangling(from) = action
                && *from == id
            {
                apply(p);
                reported = true;
            }
        }
        if !reported {
            let witness = graph.broken.get(&id).copied().unwrap_or(id);
            let path = match in_packs.first() {
                Some(&n) if !moved.contains_key(&id) => packs[n].data.clone(),
                _ => store.object_path(&id),
            };
            let mut p = problem(
                ProblemKind::DanglingLink,
                path,
                format!("object {id} reaches {witness}, which is missing or damaged"),
            );
            apply(&mut p);
            found.push((p, Action::None));
        }
    }

    // Index: remove unusable entries, then compact.
    if let Some(index) = index {
        let mut compact = false;
        for (p, action) in found.iter_mut() {
            match action {
                Action::Entry { key, id } => {
                    let Ok(key) = crate::key::Key::decode(key) else {
                        continue;
                    };
                    let current = index.lookup(&key)?.hit().map(|e| e.id());
                    if current == Some(*id) {
                        index.remove(&key)?;
                        p.repaired = Some("entry removed from the index".into());
                    } else {
                        p.repaired = Some("entry replaced by another process meanwhile".into());
                    }
                    compact = true;
                }
                Action::Compact => compact = true,
                _ => {}
            }
        }
        if compact {
            let done = index.compact()?;
            let left = index.check()?;
            for (p, action) in found.iter_mut() {
                if let Action::Compact = action
                    && !left.iter().any(|l| l.path == p.path)
                {
                    let mut note = format!("index compacted to generation {}", done.generation);
                    if !done.quarantined.is_empty() {
                        let names: Vec<String> = done
                            .quarantined
                            .iter()
                            .map(|q| q.display().to_string())
                            .collect();
                        note.push_str(&format!("; quarantined {}", names.join(", ")));
                    }
                    p.repaired = Some(note);
                }
            }
        }
    }

    // Refs, reflogs, locks, pins.
    for (p, action) in found.iter_mut() {
        match action {
            Action::Ref { ns, pkg, value } => {
                p.repaired = retire_ref(store, ns, pkg, *value, &p.detail)?;
            }
            Action::Lock => {
                if let Some((ns, pkg)) = lock_owner(&p.path) {
                    match lock_ref(layout, &ns, &pkg)? {
                        Some(held) => {
                            held.release()?;
                            p.repaired = Some("removed".into());
                        }
                        None => p.repaired = Some("now held by a live process".into()),
                    }
                }
            }
            _ => {}
        }
    }
    let mut rewritten: HashMap<PathBuf, Option<String>> = HashMap::new();
    for (p, action) in found.iter_mut() {
        if let Action::Reflog { ns, pkg } = action {
            let note = match rewritten.get(&p.path) {
                Some(note) => note.clone(),
                None => {
                    let note = rewrite_reflog(store, ns, pkg)?;
                    rewritten.insert(p.path.clone(), note.clone());
                    note
                }
            };
            p.repaired = note;
        }
    }
    if found.iter().any(|(_, a)| matches!(a, Action::Pin)) {
        let removed = store.remove_dead_pins()?;
        for (p, action) in found.iter_mut() {
            if let Action::Pin = action {
                p.repaired = Some(if removed.contains(&p.path) {
                    "removed".into()
                } else {
                    "removed by another process meanwhile".into()
                });
            }
        }
    }
    Ok(())
}

/// `(namespace, package)` of a ref lock file path `refs/<ns>/.<pkg>.lock`.
fn lock_owner(path: &Path) -> Option<(Namespace, PackageName)> {
    let name = path.file_name()?.to_str()?;
    let pkg = name.strip_prefix('.')?.strip_suffix(REF_LOCK_SUFFIX)?;
    let ns = path.parent()?.file_name()?.to_str()?;
    Some((Namespace::new(ns).ok()?, PackageName::new(pkg).ok()?))
}

/// Deletes a ref whose closure is incomplete (`value`) or that is garbage
/// (`None`), recording why in its reflog.
fn retire_ref(
    store: &Store,
    ns: &Namespace,
    pkg: &PackageName,
    value: Option<ObjectId>,
    reason: &str,
) -> Result<Option<String>> {
    let path = store.layout().ref_path(ns, pkg);
    let (expect, message, kept) = match value {
        Some(value) => (
            Expect::Value(value),
            format!("verify --repair: retired: {reason}"),
            None,
        ),
        None => {
            // Re-read just before: a writer may have replaced it since.
            match store.read_ref(ns, pkg) {
                Err(Error::Corrupt { .. }) => {}
                _ => return Ok(Some("rewritten by another process meanwhile".into())),
            }
            let bytes = fs::read(&path).at("read ref", &path)?;
            let to = store
                .layout()
                .quarantine_dir()
                .join(format!("ref-{ns}-{pkg}.{}", now_nanos()));
            fs::write(&to, bytes).at("write", &to)?;
            (
                Expect::Any,
                format!(
                    "verify --repair: retired a corrupt ref ({reason}); its bytes are in {}",
                    to.display()
                ),
                Some(to),
            )
        }
    };
    match store.delete_ref(ns, pkg, expect, &message) {
        Ok(_) => Ok(Some(match kept {
            Some(to) => format!(
                "ref deleted (logged in its reflog); bytes kept in {}",
                to.display()
            ),
            None => "ref deleted (old value and reason logged in its reflog)".into(),
        })),
        Err(Error::Conflict { .. }) => Ok(Some("the ref was changed meanwhile; left".into())),
        Err(Error::Locked { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Rewrites a reflog with only its good lines, the original copied to
/// quarantine first. Holds the ref's lock, so no append is lost.
fn rewrite_reflog(store: &Store, ns: &Namespace, pkg: &PackageName) -> Result<Option<String>> {
    let layout = store.layout();
    let _writing = store.writing()?;
    let Some(lock) = lock_ref(layout, ns, pkg)? else {
        return Ok(None);
    };
    let path = layout.reflog_path(ns, pkg);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            lock.release()?;
            return Ok(Some("removed by another process meanwhile".into()));
        }
        Err(e) => return Err(Error::io("read reflog", &path, e)),
    };
    let to = layout
        .quarantine_dir()
        .join(format!("reflog-{ns}-{pkg}.{}", now_nanos()));
    fs::write(&to, &bytes).at("write", &to)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut good = String::with_capacity(text.len());
    let mut dropped = 0usize;
    for line in text.split_inclusive('\n') {
        let complete = line.ends_with('\n');
        if complete && refs::parse_reflog_line(line.trim_end_matches('\n')).is_ok() {
            good.push_str(line);
        } else if !line.is_empty() {
            dropped += 1;
        }
    }
    let mut temp = publish::temp_file(layout.tmp_dir(), "reflog-")?;
    temp.write_all(good.as_bytes()).at("write", temp.path())?;
    publish::publish(
        temp,
        &path,
        Access::Replaceable,
        store.options().durability,
        store.sync_queue(),
    )?;
    lock.release()?;
    Ok(Some(format!(
        "rewrote the reflog without {dropped} damaged lines; original kept in {}",
        to.display()
    )))
}

fn check_entry(
    store: &Store,
    entry: FanoutEntry,
    out: &mut WorkerResult,
    present: &mut IdSet,
    scratch: &mut Vec<u8>,
    counts: &mut Counts,
) {
    let id = match entry {
        FanoutEntry::Object(id) => id,
        FanoutEntry::Stray(path) => {
            let detail = "not named like an object (62 lowercase hex digits)".to_string();
            out.problems
                .push((problem(ProblemKind::StrayFile, path, detail), None));
            return;
        }
    };
    match store.check_object(&id, scratch) {
        Ok((header, links)) => {
            counts.objects += 1;
            // The file's size: the header was checked against it.
            counts.bytes += header.file_len().unwrap_or(0);
            out.links.extend(links.iter().map(|&to| (id, to)));
            present.insert(id);
        }
        // Removed since the directory was listed (gc): nothing to check.
        Err(Error::NotFound { .. }) => {}
        Err(Error::Corrupt { path, reason, .. }) => {
            counts.objects += 1;
            out.problems
                .push((problem(ProblemKind::CorruptObject, path, reason), Some(id)));
        }
        Err(e) => {
            out.problems.push((
                problem(
                    ProblemKind::UnreadableObject,
                    store.object_path(&id),
                    e.to_string(),
                ),
                Some(id),
            ));
        }
    }
}

/// The kind and file size an object file was counted with in the
/// statistics when it was put: what its header says (the payload may be
/// damaged or cut short; the put counted the whole file). `None` when the
/// header itself cannot be read, so the object cannot be attributed.
fn counted_as(path: &Path) -> Option<(crate::object::Kind, u64)> {
    use std::io::Read;
    let mut head = [0u8; crate::object::HEADER_LEN];
    let mut file = File::open(path).ok()?;
    file.read_exact(&mut head).ok()?;
    let header = crate::object::Header::decode(&head).ok()?;
    Some((header.kind, header.file_len()?))
}

fn move_to_quarantine(path: &Path, quarantine: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .map_or_else(|| "unnamed".into(), |n| n.to_string_lossy().into_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let to = quarantine.join(format!("{name}.{nanos}"));
    fs::rename(path, &to).at("move to quarantine", path)?;
    Ok(to)
}

/// Whether an error is a file that is not there.
fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// `offset..end` of a record's bytes in its data file.
fn byte_range(record: &PackRecord) -> String {
    match record.offset.checked_add(record.len) {
        Some(end) => format!("{}..{end}", record.offset),
        None => format!("{}.. (a length of {} overflows)", record.offset, record.len),
    }
}

/// What a pack data file's header says.
enum DataHeader {
    Good,
    Damaged(String),
    /// Another format version (this build reads [`pack::PACK_VERSION`]).
    Version(u32),
}

fn data_header(bytes: &[u8]) -> DataHeader {
    if bytes.len() < pack::HEADER_LEN {
        return DataHeader::Damaged(format!(
            "the data file is {} bytes, shorter than its {}-byte header",
            bytes.len(),
            pack::HEADER_LEN
        ));
    }
    if bytes[..4] != pack::DATA_MAGIC {
        return DataHeader::Damaged("the data file's header is not a pack's (bad magic)".into());
    }
    let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != pack::PACK_VERSION {
        return DataHeader::Version(version);
    }
    DataHeader::Good
}

/// Why a record's object cannot be used.
enum RecordFault {
    /// Its bytes are missing or do not check.
    Corrupt(String),
    /// They could not be read.
    Io(io::Error),
}

/// The bytes a record names, read into `scratch` (grown to fit, never
/// shrunk); not yet checked against the id.
fn read_record<'b>(
    data: &File,
    record: &PackRecord,
    file_len: u64,
    scratch: &'b mut Vec<u8>,
) -> std::result::Result<&'b [u8], RecordFault> {
    let end = record.offset.checked_add(record.len);
    if record.offset < pack::HEADER_LEN as u64 || end.is_none_or(|end| end > file_len) {
        return Err(RecordFault::Corrupt(format!(
            "its index record places it outside the objects of the {file_len}-byte data file \
             (the pack was cut short, or the record is wrong)"
        )));
    }
    // No larger than the file, which was just checked.
    let len = record.len as usize;
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    let got = pack::read_at(data, &mut scratch[..len], record.offset).map_err(RecordFault::Io)?;
    if got < len {
        return Err(RecordFault::Corrupt(format!(
            "the data file ends {got} bytes into it (it shrank while verify read it)"
        )));
    }
    Ok(&scratch[..len])
}

/// The bytes `start..start + len` of a data file, held at the front of a
/// worker's scratch buffer.
#[derive(Default)]
struct Window {
    start: u64,
    len: usize,
}

/// How much of a data file one read takes in at least, while the part goes on.
const WINDOW_BYTES: u64 = 4 << 20;

impl Window {
    /// As [`read_record`], from the window when the record lies in it, else
    /// from a new window starting at the record (at least [`WINDOW_BYTES`],
    /// not past `part_end` unless the record itself goes on).
    fn read<'b>(
        &mut self,
        data: &File,
        record: &PackRecord,
        file_len: u64,
        part_end: u64,
        scratch: &'b mut Vec<u8>,
    ) -> std::result::Result<&'b [u8], RecordFault> {
        let end = record.offset.checked_add(record.len);
        if record.offset < pack::HEADER_LEN as u64 || end.is_none_or(|end| end > file_len) {
            return read_record(data, record, file_len, scratch);
        }
        let len = record.len as usize;
        let held = record.offset >= self.start
            && record.offset + record.len <= self.start + self.len as u64;
        if !held {
            let want = record
                .len
                .max(WINDOW_BYTES.min(part_end.saturating_sub(record.offset)))
                as usize;
            if scratch.len() < want {
                scratch.resize(want, 0);
            }
            let got = pack::read_at(data, &mut scratch[..want], record.offset)
                .map_err(RecordFault::Io)?;
            (self.start, self.len) = (record.offset, got);
            if got < len {
                return Err(RecordFault::Corrupt(format!(
                    "the data file ends {got} bytes into it (it shrank while verify read it)"
                )));
            }
        }
        let at = (record.offset - self.start) as usize;
        Ok(&scratch[at..at + len])
    }
}

/// Checks a packed object's encoding as a loose file is checked: header
/// against its length, then the id by re-hashing. Returns its links.
fn check_encoding(id: &ObjectId, bytes: &[u8]) -> std::result::Result<Vec<ObjectId>, String> {
    match object::check_read_whole(id, bytes) {
        Some(checked) => checked.map(|(_, links)| links),
        None => Err(match Header::decode(bytes) {
            Err(reason) => reason,
            Ok(header) => format!(
                "its header describes {} bytes, its index record {}",
                header
                    .file_len()
                    .map_or_else(|| "more than 2^64".to_string(), |n| n.to_string()),
                bytes.len()
            ),
        }),
    }
}

/// The kind a packed object's header names (for the statistics), if its
/// header is readable.
fn record_kind(data: &File, record: &PackRecord) -> Option<Kind> {
    let mut head = [0u8; object::HEADER_LEN];
    let got = pack::read_at(data, &mut head, record.offset).ok()?;
    Header::decode(&head[..got]).ok().map(|h| h.kind)
}

/// A pack opened for its records to be checked.
struct Opened {
    /// A live writer still appends to it.
    live: bool,
    index: Arc<pack::PackIndex>,
    data: File,
    file_len: u64,
    /// What is wrong with the data file's header, when the pack is not
    /// live (the records are checked all the same).
    header_damage: Option<String>,
}

/// Why a pack's records are not checked: the report to make (the file,
/// what is wrong, what repair does), or none when the pack went away
/// since it was listed (gc rewrote it) or is a live writer's pack caught
/// mid-append.
type NotChecked<'p> = Option<(&'p Path, String, Action)>;

/// Opens `pack` (number `n`) for [`check_pack`]: its writer lock, its
/// index (read once for all its parts), its data file and header.
fn open_for_check<'p>(
    pack: &'p PackPaths,
    n: usize,
) -> std::result::Result<Opened, NotChecked<'p>> {
    let unreadable = |path: &'p Path, verb, e: &dyn std::fmt::Display| -> NotChecked<'p> {
        Some((path, format!("cannot be {verb}: {e}"), Action::None))
    };
    // A live writer's pack may end in a record being appended, or lack its
    // headers for an instant after it was made: normal, not damage. No
    // writer starts appending to a pack that exists, so once a pack is not
    // being written, what follows reads a pack that no longer changes.
    let live = match pack::is_being_written(&pack.data) {
        Ok(live) => live,
        // Removed since it was listed (gc rewrote it), or an index without
        // its data file (a stray of the pack directory).
        Err(e) if is_not_found(&e) => return Err(None),
        Err(e) => return Err(unreadable(&pack.data, "read", &e)),
    };
    let read = pack.read.get_or_init(|| {
        pack::read_index(&pack.index)
            .map(Arc::new)
            .map_err(Arc::new)
    });
    let index = match read.as_ref().map_err(|e| &**e) {
        Ok(index) => Arc::clone(index),
        Err(e) if is_not_found(e) => return Err(None),
        Err(Error::Corrupt { .. }) if live => return Err(None),
        Err(Error::Corrupt { reason, .. }) => {
            return Err(Some((
                &pack.index,
                format!("the pack's index: {reason}; none of its objects can be found"),
                Action::Pack(n),
            )));
        }
        Err(e @ Error::UnsupportedFormat { .. }) => {
            return Err(Some((
                &pack.index,
                format!("{e}; its objects are not checked, and repair leaves the pack as it is"),
                Action::None,
            )));
        }
        Err(e) => return Err(unreadable(&pack.index, "read", e)),
    };
    let data = match File::open(&pack.data) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(unreadable(&pack.data, "opened", &e)),
    };
    // Read after the index: every record read names bytes written before it.
    let header = data.metadata().and_then(|meta| {
        let mut head = [0u8; pack::HEADER_LEN];
        let got = pack::read_at(&data, &mut head, 0)?;
        Ok((meta.len(), data_header(&head[..got])))
    });
    let (file_len, header_damage) = match header {
        Ok((file_len, DataHeader::Good)) => (file_len, None),
        Ok((file_len, DataHeader::Damaged(reason))) => (file_len, (!live).then_some(reason)),
        Ok((_, DataHeader::Version(version))) => {
            return Err(Some((
                &pack.data,
                format!(
                    "a pack data file of version {version}, but this rask-store reads version \
                     {}; its objects are not checked, and repair leaves the pack as it is",
                    pack::PACK_VERSION
                ),
                Action::None,
            )));
        }
        Err(e) => return Err(unreadable(&pack.data, "read", &e)),
    };
    Ok(Opened {
        live,
        index,
        data,
        file_len,
        header_damage,
    })
}

/// Checks pack number `n` (module docs, "What is checked"): problems go to
/// `out.pack_problems`, intact objects to `out.packed` and their links to
/// `out.links`.
fn check_pack(
    pack: &PackPaths,
    part: &PackPart,
    out: &mut WorkerResult,
    scratch: &mut Vec<u8>,
    counts: &mut Counts,
) {
    let n = part.pack;
    // What concerns the whole pack is reported by its first part only.
    let first = part.part == 0;
    let mut report = |kind: ProblemKind, path: &Path, detail: String, action: Action| {
        if first {
            out.pack_problems
                .push((problem(kind, path.to_path_buf(), detail), action, None));
        }
    };
    let Opened {
        live,
        index,
        data,
        file_len,
        header_damage,
    } = match open_for_check(pack, n) {
        Ok(opened) => opened,
        Err(None) => return,
        Err(Some((path, detail, action))) => {
            report(ProblemKind::DamagedPack, path, detail, action);
            return;
        }
    };
    if let Some(reason) = header_damage {
        report(
            ProblemKind::DamagedPack,
            &pack.data,
            reason,
            Action::Pack(n),
        );
    }
    if !live {
        for (offset, what) in &index.damaged {
            report(
                ProblemKind::DamagedPack,
                &pack.index,
                format!(
                    "the index record at byte {offset}: {what}; the object it named can no \
                     longer be found"
                ),
                Action::Pack(n),
            );
        }
        if let Some((offset, len)) = index.torn_tail {
            report(
                ProblemKind::PackLeftover,
                &pack.index,
                format!(
                    "the last {len} bytes (from byte {offset}) are not a whole record: an append \
                     cut short, whose object is absent"
                ),
                Action::Pack(n),
            );
        }
    }
    // The part's records are read out of large sequential reads, not one
    // `pread` each: records lie back to back in the data file.
    let mut window = Window::default();
    let part_end = part.end().min(file_len);
    for record in index.records.iter().filter(|r| part.owns(r.offset)) {
        counts.objects += 1;
        let fault = match window.read(&data, record, file_len, part_end, scratch) {
            Ok(bytes) => match check_encoding(&record.id, bytes) {
                Ok(links) => {
                    counts.bytes += record.len;
                    out.links.extend(links.iter().map(|&to| (record.id, to)));
                    out.packed.push(record.id);
                    continue;
                }
                Err(reason) => RecordFault::Corrupt(reason),
            },
            Err(fault) => fault,
        };
        let (kind, reason) = match fault {
            RecordFault::Corrupt(reason) => (ProblemKind::CorruptObject, reason),
            RecordFault::Io(e) => (
                ProblemKind::UnreadableObject,
                format!("cannot be read: {e}"),
            ),
        };
        let detail = format!(
            "object {} at bytes {} of the pack: {reason}",
            record.id,
            byte_range(record)
        );
        out.pack_problems.push((
            problem(kind, pack.data.clone(), detail),
            Action::Pack(n),
            Some(record.id),
        ));
    }
}

/// Why a file in the pack directory is not part of a pack, and whether
/// that is litter or damage; `None` when it is part of one (a data file
/// with its index beside it, or the reverse), when it is gone, or when it
/// is a data file a live writer holds (a pack being made: its index comes
/// next).
fn pack_stray_detail(path: &Path) -> Option<(ProblemKind, String)> {
    let meta = fs::symlink_metadata(path).ok()?;
    let exists = |p: &Path| fs::symlink_metadata(p).is_ok();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| meta.is_file());
    if let Some(name) = name {
        if let Some(stem) = name.strip_suffix(PACK_DATA_SUFFIX) {
            let partner = path.with_file_name(format!("{stem}{PACK_INDEX_SUFFIX}"));
            if exists(&partner) || matches!(pack::is_being_written(path), Ok(true)) {
                return None;
            }
            return Some((
                ProblemKind::PackLeftover,
                format!(
                    "a pack data file without its index ({}), which no live writer holds: left \
                     by a writer killed while making its pack, or by gc or repair killed while \
                     removing one; no reader finds an object in it",
                    partner.display()
                ),
            ));
        }
        if let Some(stem) = name.strip_suffix(PACK_INDEX_SUFFIX) {
            let partner = path.with_file_name(format!("{stem}{PACK_DATA_SUFFIX}"));
            if exists(&partner) {
                return None;
            }
            return Some((
                ProblemKind::StrayFile,
                format!(
                    "a pack index without its data file ({}): the objects it names are gone",
                    partner.display()
                ),
            ));
        }
    }
    Some((
        ProblemKind::StrayFile,
        format!(
            "not a pack file (a pack is <name>{PACK_DATA_SUFFIX} with <name>{PACK_INDEX_SUFFIX})"
        ),
    ))
}

/// The ids of `ids` that are on disk now: a loose file, or a record in the
/// index of a pack in the directory now. Asked of the files, not of this
/// handle's table of packs, which remembers the records it read or wrote
/// even after the index on disk lost them. Reads every pack index once;
/// nothing when every id is loose.
fn on_disk(store: &Store, ids: &IdSet) -> Result<IdSet> {
    let mut out = IdSet::default();
    let mut rest = IdSet::default();
    for &id in ids {
        if store.contains_loose(&id)? {
            out.insert(id);
        } else {
            rest.insert(id);
        }
    }
    if !rest.is_empty() {
        let dir = store.layout().pack_dir();
        let packs: Vec<PackPaths> = packs::list_packs(&dir)?
            .into_iter()
            .map(|name| PackPaths::new(&dir, name))
            .collect();
        out.extend(packs_holding(&packs, &rest).into_keys());
    }
    Ok(out)
}

/// For each id of `wanted`, the packs of `packs` (by number) whose index
/// names it. Reads every index once; nothing when `wanted` is empty.
fn packs_holding(packs: &[PackPaths], wanted: &IdSet) -> IdMap<Vec<usize>> {
    let mut out: IdMap<Vec<usize>> = IdMap::default();
    if wanted.is_empty() {
        return out;
    }
    for (n, pack) in packs.iter().enumerate() {
        // An unreadable index names nothing (it is reported as damaged).
        let Ok(index) = pack::read_index(&pack.index) else {
            continue;
        };
        for record in &index.records {
            if wanted.contains(&record.id) {
                let holders = out.entry(record.id).or_default();
                if holders.last() != Some(&n) {
                    holders.push(n);
                }
            }
        }
    }
    out
}

/// What rewriting a pack came to.
enum Rewrite {
    /// Rewritten: the new pack (none when nothing was left to copy), the
    /// objects copied and dropped, and where the old files went.
    Done {
        new: Option<String>,
        kept: u64,
        dropped: u64,
        quarantined: Vec<PathBuf>,
    },
    /// Removed or replaced by another process (gc) since the walk.
    Gone,
    /// Left as it is, for this reason.
    Left(String),
}

impl Rewrite {
    /// What repair did, for a problem's `repaired`.
    fn note(&self) -> String {
        match self {
            Rewrite::Done {
                new,
                kept,
                dropped,
                quarantined,
            } => {
                let moved: Vec<String> = quarantined
                    .iter()
                    .map(|q| q.display().to_string())
                    .collect();
                let moved = if moved.is_empty() {
                    "gone meanwhile".to_string()
                } else {
                    format!("moved to {}", moved.join(" and "))
                };
                match new {
                    Some(new) => format!(
                        "pack rewritten as {new}{PACK_DATA_SUFFIX} ({kept} objects copied, \
                         {dropped} dropped); its old files {moved}"
                    ),
                    None => format!(
                        "pack removed: no intact object of it to keep ({dropped} dropped); its \
                         files {moved}"
                    ),
                }
            }
            Rewrite::Gone => {
                "the pack was rewritten or removed by another process meanwhile".into()
            }
            Rewrite::Left(why) => why.clone(),
        }
    }
}

/// Marks a problem as left, saying why: it stays damage (`repaired` stays
/// `None`, so verify still exits non-zero).
fn not_repaired(p: &mut Problem, why: &str) {
    p.detail.push_str(&format!("; not repaired: {why}"));
}

/// What a pack rewrite drops, and where it reports to.
struct Cut<'a> {
    /// Objects whose closure is incomplete: dropped from every pack.
    drop: &'a IdSet,
    /// Objects intact somewhere (a damaged copy of one leaves the
    /// statistics nothing).
    present: &'a Present,
    recorder: &'a crate::stats::StatsRecorder,
    quarantine: &'a Path,
    /// Where a new pack's files are made before they are linked into place.
    tmp_dir: &'a Path,
}

/// Rewrites one pack without its damaged records and the objects of
/// `cut.drop` (module docs, "Repair").
fn rewrite_pack(pack: &PackPaths, cut: &Cut<'_>, uncounted: &mut IdSet) -> Result<Rewrite> {
    let data = match File::open(&pack.data) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Rewrite::Gone),
        Err(e) => return Err(Error::io("open pack", &pack.data, e)),
    };
    // Claimed as gc claims a pack: a live writer (or gc, or another repair)
    // holding it keeps it.
    match data.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Ok(Rewrite::Left(
                "the pack is being written by a live process; run `rask-store verify \
                 --repair` again after that process has exited"
                    .into(),
            ));
        }
        Err(TryLockError::Error(e)) => return Err(Error::io("lock pack", &pack.data, e)),
    }
    // gc may have rewritten it between the walk and the lock.
    if !lock::still_at(&data, &pack.data).at("look up", &pack.data)? {
        return Ok(Rewrite::Gone);
    }
    let index = match pack::read_index(&pack.index) {
        Ok(index) => Some(index),
        Err(e) if is_not_found(&e) => return Ok(Rewrite::Gone),
        // Its objects cannot be found: the pack goes to quarantine whole.
        Err(Error::Corrupt { .. }) => None,
        Err(Error::UnsupportedFormat { .. }) => {
            return Ok(Rewrite::Left(
                "its index is of a pack format version this build does not read".into(),
            ));
        }
        Err(e) => return Err(e),
    };
    let mut head = [0u8; pack::HEADER_LEN];
    let got = pack::read_at(&data, &mut head, 0).at("read pack", &pack.data)?;
    if let DataHeader::Version(version) = data_header(&head[..got]) {
        return Ok(Rewrite::Left(format!(
            "its data file is of pack format version {version}, which this build does not read"
        )));
    }
    let file_len = data.metadata().at("read metadata of", &pack.data)?.len();
    let dir = pack.data.parent().unwrap_or(Path::new("."));
    let mut writer: Option<(PackWriter, String)> = None;
    let (mut kept, mut dropped) = (0u64, 0u64);
    let records = index.as_ref().map_or(&[][..], |i| i.records.as_slice());
    // A copy keeps the newest write time of its object's records (gc's
    // grace period and size cap count from it).
    let mut newest: IdMap<u64> = IdMap::default();
    for record in records {
        let t = newest.entry(record.id).or_default();
        *t = (*t).max(record.written_unix_nanos);
    }
    let mut copied = IdSet::default();
    let mut buf = Vec::new();
    for record in records {
        if copied.contains(&record.id) {
            continue; // a second copy in this pack: one is enough
        }
        let unusable = cut.drop.contains(&record.id);
        let intact = match (unusable, read_record(&data, record, file_len, &mut buf)) {
            (false, Ok(bytes)) if check_encoding(&record.id, bytes).is_ok() => Some(bytes),
            _ => None,
        };
        let Some(bytes) = intact else {
            dropped += 1;
            let gone = unusable || !cut.present.contains(&record.id);
            if gone
                && uncounted.insert(record.id)
                && let Some(kind) = record_kind(&data, record)
            {
                cut.recorder.object_changed(kind, record.len, -1);
            }
            continue;
        };
        let out = match &mut writer {
            Some((w, _)) => w,
            None => {
                let name = packs::new_pack_name();
                let w = PackWriter::create_in(
                    &dir.join(format!("{name}{PACK_DATA_SUFFIX}")),
                    &dir.join(format!("{name}{PACK_INDEX_SUFFIX}")),
                    cut.tmp_dir,
                )?;
                &mut writer.insert((w, name)).0
            }
        };
        let written = newest
            .get(&record.id)
            .copied()
            .unwrap_or(record.written_unix_nanos);
        out.append_encoded(record.id, bytes, written)?;
        copied.insert(record.id);
        kept += 1;
    }
    let new = match writer {
        Some((w, name)) => {
            w.sync()?;
            Some(name)
        }
        None => None,
    };
    // The copies must be durable before the only other copies go.
    crate::publish::sync_dir(dir)?;
    let mut quarantined = Vec::new();
    // The index first: the pack stops being listed before its data goes.
    for path in [&pack.index, &pack.data] {
        match move_to_quarantine(path, cut.quarantine) {
            Ok(to) => quarantined.push(to),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    crate::publish::sync_dir(dir)?;
    drop(data);
    Ok(Rewrite::Done {
        new,
        kept,
        dropped,
        quarantined,
    })
}

/// Brings this handle's pack table up to date, so that it stops finding
/// objects in the packs repair moved to quarantine (it would still read
/// them from the files it has open).
fn forget_removed_packs(store: &Store) -> Result<()> {
    store.packs().refresh_now()
}
