//! Garbage collection of objects: keep what the roots reach, and anything
//! young; remove the rest.
//!
//! # Algorithm
//! 1. Mark: walk links from every root (breadth first, reading only object
//!    headers and links). A missing or damaged object ends its branch; that
//!    is verify's business, not gc's.
//! 2. Sweep: list every fanout directory; an unmarked object whose
//!    modification time is older than the grace period is removed (its kind
//!    and size are counted first); a younger one is kept, since a writer may
//!    be about to reference it.
//! 3. Temp files in `tmp/` older than the grace period, and at least
//!    [`STALE_TEMP_AGE`], are left from crashed writers and are removed (a
//!    zero grace period must not break writes in flight).
//!
//! With [`GcMode::DryRun`] nothing is removed and the report says what would be.
//!
//! Long runs report [`GcProgress`] to a callback the caller passes (the CLI
//! draws it on a terminal): each [`GcPhase`] when it starts, then marking
//! every few thousand objects, measuring and sweeping per fanout directory,
//! eviction every 256 entries, compaction every few thousand index records. The library itself never prints.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::time::{Duration, SystemTime};

use crate::error::{Error, IoContext, Result};
use crate::id::{DigestState, IdMap, IdSet, ObjectId};
use crate::index::{Entry, Index};
use crate::key::KeyHash;
use crate::layout::{PACK_DATA_SUFFIX, PACK_INDEX_SUFFIX};
use crate::lock::{ExclusiveGuard, Wait};
use crate::object::{self, Header, Kind};
use crate::pack::{self, PackRecord, PackWriter};
use crate::packs;
use crate::stats::GcSummary;
use crate::store::Store;
use crate::walk::{self, FanoutEntry};

/// The default grace period: objects younger than this are never collected.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60 * 60);
/// Temp files younger than this (or than the grace period, if longer) are
/// never removed, whatever the grace period: they belong to writes in flight.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(60 * 60);

/// Whether gc removes anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GcMode {
    /// Remove what is unreachable and old.
    #[default]
    Delete,
    /// Only report what would be removed.
    DryRun,
}

/// How gc runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcOptions {
    /// Delete or only report.
    pub mode: GcMode,
    /// Unreachable objects younger than this are kept.
    pub grace: Duration,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            mode: GcMode::Delete,
            grace: DEFAULT_GRACE,
        }
    }
}

/// What gc found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Roots given.
    pub roots: usize,
    /// Objects reached from the roots.
    pub reachable: u64,
    /// Objects examined in the sweep.
    pub examined: u64,
    /// Unreachable objects kept because they are younger than the grace period.
    pub kept_young: u64,
    /// Objects removed (or that would be, in a dry run).
    pub removed_objects: u64,
    /// Bytes of object files removed (or that would be).
    pub removed_bytes: u64,
    /// Bytes of object files kept.
    pub kept_bytes: u64,
    /// Stale temp files removed (or that would be).
    pub removed_temp_files: u64,
    /// Packs rewritten without their unreachable objects, or merged with
    /// other small ones (or that would be).
    pub rewritten_packs: u64,
    /// Packs written by the rewrite.
    pub written_packs: u64,
    /// Pack data files without an index (left by a writer killed while it
    /// made its pack) removed (or that would be).
    pub removed_pack_leftovers: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Which part of a gc is running, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum GcPhase {
    /// Adding up object file sizes for the size cap, per fanout directory
    /// (only with a size cap or age limit).
    Measuring,
    /// Following links from the roots ([`GcProgress::marked`]). Runs before
    /// eviction (what roots other than entries protect) and again under the
    /// exclusive lock.
    Marking,
    /// Removing evicted entries from the index ([`GcProgress::entries_done`]
    /// of [`GcProgress::entries_total`]).
    Evicting,
    /// Compacting the index without the evicted entries
    /// ([`GcProgress::records_done`] of [`GcProgress::records_total`]).
    Compacting,
    /// Removing unreachable old objects, per fanout directory.
    Sweeping,
}

/// Progress of a long gc: reported when a phase starts, then every few
/// thousand objects or after each fanout directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcProgress {
    /// The phase running.
    pub phase: GcPhase,
    /// Fanout directories done in this phase, out of 256 (measuring, sweeping).
    pub dirs_done: usize,
    /// Objects reached from the roots so far in the current marking.
    pub marked: u64,
    /// Evicted entries removed from the index so far.
    pub entries_done: u64,
    /// Entries chosen for eviction.
    pub entries_total: u64,
    /// Objects removed so far by the sweep.
    pub removed: u64,
    /// Index records merged so far by the compaction.
    pub records_done: u64,
    /// Index records the compaction merges.
    pub records_total: u64,
}

impl GcProgress {
    fn start(phase: GcPhase) -> GcProgress {
        GcProgress {
            phase,
            dirs_done: 0,
            marked: 0,
            entries_done: 0,
            entries_total: 0,
            removed: 0,
            records_done: 0,
            records_total: 0,
        }
    }
}

/// How many objects marking follows between progress reports.
const MARK_PROGRESS_EVERY: usize = 4096;

/// Marks from `roots` and sweeps unreachable, old objects.
///
/// The caller holds the store's exclusive gc lock, so that no writer links
/// a new object to one being removed.
///
/// # Errors
/// [`Error::Io`] when a directory cannot be listed or a file cannot be removed.
pub fn collect_objects(
    store: &Store,
    roots: &[ObjectId],
    options: GcOptions,
    progress: &dyn Fn(GcProgress),
) -> Result<GcReport> {
    let mut report = GcReport {
        roots: roots.len(),
        dry_run: options.mode == GcMode::DryRun,
        ..GcReport::default()
    };
    let marked = mark(store, roots, progress)?;
    report.reachable = marked.len() as u64;
    let mut sweeping = GcProgress::start(GcPhase::Sweeping);
    sweeping.marked = report.reachable;
    progress(sweeping);
    let now = SystemTime::now();
    let is_old = |meta: &fs::Metadata| {
        meta.modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= options.grace)
    };
    let recorder = store.stats_recorder();
    for byte in 0..=u8::MAX {
        for entry in walk::fanout_entries(store.layout(), byte)? {
            let FanoutEntry::Object(id) = entry else {
                continue; // stray files are verify's to report and repair's to move
            };
            report.examined += 1;
            let path = store.object_path(&id);
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read metadata of", &path, e)),
            };
            if marked.contains(&id) {
                report.kept_bytes += meta.len();
                continue;
            }
            if !is_old(&meta) {
                report.kept_young += 1;
                report.kept_bytes += meta.len();
                continue;
            }
            let kind = store
                .object_links_unverified(&id)
                .map(|(header, _)| header.kind)
                .ok();
            if options.mode == GcMode::Delete {
                match fs::remove_file(&path) {
                    Ok(()) => crate::fault::Point::GcObjectRemoved.reached(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("remove object", &path, e)),
                }
                if let Some(kind) = kind {
                    recorder.object_changed(kind, meta.len(), -1);
                }
            }
            report.removed_objects += 1;
            report.removed_bytes += meta.len();
        }
        if options.mode == GcMode::Delete && report.removed_objects > sweeping.removed {
            // Written per directory, so a gc killed mid-sweep leaves the
            // statistics short by at most one directory's removals.
            recorder.flush(store.layout())?;
        }
        sweeping.dirs_done = usize::from(byte) + 1;
        sweeping.removed = report.removed_objects;
        progress(sweeping);
    }
    collect_packs(store, &marked, options, &mut report)?;
    if options.mode == GcMode::Delete {
        recorder.flush(store.layout())?;
    }
    sweeping.removed = report.removed_objects;
    progress(sweeping);
    let temp_age = options.grace.max(STALE_TEMP_AGE);
    let is_stale_temp = |meta: &fs::Metadata| {
        meta.modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= temp_age)
    };
    report.removed_temp_files = sweep_temp(store, options, &is_stale_temp)?;
    if options.mode == GcMode::Delete {
        recorder.gc_finished(GcSummary {
            time: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            objects: report.removed_objects,
            bytes: report.removed_bytes,
            entries: 0,
        });
    }
    Ok(report)
}

/// A pack gc has claimed (its data file's lock is held), with its records.
struct Claimed {
    data: fs::File,
    data_path: std::path::PathBuf,
    index_path: std::path::PathBuf,
    records: Vec<PackRecord>,
    data_len: u64,
    old: bool,
}

/// Rewrites packs whose unreachable, old objects make up at least
/// [`REWRITE_DEAD_SHARE`] of them, and merges packs smaller than
/// [`SMALL_PACK`]: their live objects (reachable, or with a record younger
/// than the grace period) are copied into new packs, synced, and only then
/// are the old packs removed. Packs a live writer holds, and packs whose
/// data file is younger than the grace period, are left alone.
fn collect_packs(
    store: &Store,
    marked: &IdSet,
    options: GcOptions,
    report: &mut GcReport,
) -> Result<()> {
    let dir = store.layout().pack_dir();
    // Data files a killed writer left without an index hold no object.
    for orphan in packs::data_without_index(&dir)? {
        if let Ok(file) = fs::File::open(&orphan)
            && file.try_lock().is_ok()
        {
            report.removed_pack_leftovers += 1;
            if options.mode == GcMode::Delete {
                remove_pack_file(&orphan)?;
            }
        }
    }
    let names = packs::list_packs(&dir)?;
    if names.is_empty() {
        return Ok(());
    }
    // This handle's own pack is closed, so that it can be rewritten too.
    store.packs().close_own_pack()?;
    let now = pack::now_unix_nanos();
    let grace = u64::try_from(options.grace.as_nanos()).unwrap_or(u64::MAX);
    let young = |written: u64| now.saturating_sub(written) < grace;
    // Ids whose copy stays where it is, and the newest record time of every id.
    let mut staying = IdSet::default();
    let mut newest: IdMap<u64> = IdMap::default();
    let mut claimed = Vec::new();
    for name in &names {
        let data_path = dir.join(format!("{name}{PACK_DATA_SUFFIX}"));
        let index_path = dir.join(format!("{name}{PACK_INDEX_SUFFIX}"));
        let data = match fs::File::open(&data_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open pack", &data_path, e)),
        };
        let held = match data.try_lock() {
            Ok(()) => true,
            Err(fs::TryLockError::WouldBlock) => false,
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock pack", &data_path, e)),
        };
        // A damaged or unreadable index is verify's to report: its pack is
        // left as it is.
        let Ok(index) = pack::read_index(&index_path) else {
            continue;
        };
        for record in &index.records {
            let t = newest.entry(record.id).or_default();
            *t = (*t).max(record.written_unix_nanos);
        }
        let meta = data.metadata().at("read metadata of", &data_path)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(now, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let old = !young(mtime);
        if !held || !old {
            report.examined += index.records.len() as u64;
            report.kept_bytes += meta.len();
            staying.extend(index.records.iter().map(|r| r.id));
            continue;
        }
        claimed.push(Claimed {
            data,
            data_path,
            index_path,
            records: index.records,
            data_len: meta.len(),
            old,
        });
    }
    let live = |id: &ObjectId| marked.contains(id) || newest.get(id).is_some_and(|&t| young(t));
    let small = claimed.iter().filter(|c| c.data_len < SMALL_PACK).count();
    let mut rewrite = Vec::new();
    for pack in claimed {
        let mut seen = IdSet::default();
        let dead: u64 = pack
            .records
            .iter()
            .filter(|r| !live(&r.id) || !seen.insert(r.id))
            .map(|r| stored_len(r, pack.data_len))
            .sum();
        let total: u64 = pack
            .records
            .iter()
            .map(|r| stored_len(r, pack.data_len))
            .sum();
        let merge = small > 1 && pack.data_len < SMALL_PACK;
        let worth = (pack.records.is_empty() && pack.old)
            || (dead > 0 && dead as f64 >= total as f64 * REWRITE_DEAD_SHARE)
            || merge;
        if worth {
            rewrite.push(pack);
        } else {
            report.examined += pack.records.len() as u64;
            report.kept_bytes += pack.data_len;
            staying.extend(pack.records.iter().map(|r| r.id));
        }
    }
    if rewrite.is_empty() {
        return Ok(());
    }
    let recorder = store.stats_recorder();
    let mut writer: Option<PackWriter> = None;
    let mut would_write = false;
    let mut removed = IdSet::default();
    let mut buf = Vec::new();
    for pack in &rewrite {
        report.examined += pack.records.len() as u64;
        for record in &pack.records {
            if live(&record.id) {
                if !staying.insert(record.id) {
                    continue; // a copy stays elsewhere, or was copied already
                }
                let Some(encoding) = read_record(pack, record, &mut buf)? else {
                    // Damaged: not copied, so it reads as absent (a miss)
                    // instead of corrupt.
                    staying.remove(&record.id);
                    continue;
                };
                report.kept_bytes += record.len;
                if !marked.contains(&record.id) {
                    report.kept_young += 1;
                }
                if options.mode == GcMode::Delete {
                    let out = match &mut writer {
                        Some(w) if w.data_len() + record.len <= packs::PACK_ROLL => w,
                        _ => {
                            if let Some(full) = writer.take() {
                                full.sync()?;
                            }
                            report.written_packs += 1;
                            writer.insert(new_pack(store, &dir)?)
                        }
                    };
                    out.append_encoded(record.id, encoding, record.written_unix_nanos)?;
                } else if !would_write {
                    would_write = true;
                    report.written_packs += 1;
                }
            } else if !staying.contains(&record.id) && removed.insert(record.id) {
                // The object's last copy: a copy in a pack left alone (a
                // live writer's, a young one) keeps it in the store.
                report.removed_objects += 1;
                report.removed_bytes += stored_len(record, pack.data_len);
                if options.mode == GcMode::Delete
                    && let Some(kind) = record_kind(pack, record)
                {
                    recorder.object_changed(kind, stored_len(record, pack.data_len), -1);
                }
            } else {
                report.removed_bytes += stored_len(record, pack.data_len);
            }
        }
    }
    report.rewritten_packs = rewrite.len() as u64;
    if options.mode != GcMode::Delete {
        return Ok(());
    }
    // The copies must be durable before the only other copies go.
    if let Some(w) = writer {
        w.sync()?;
    }
    crate::publish::sync_dir(&dir)?;
    // This handle's own table names the packs about to go.
    store.packs().forget()?;
    for pack in rewrite {
        remove_pack_file(&pack.index_path)?;
        crate::fault::Point::GcObjectRemoved.reached();
        remove_pack_file(&pack.data_path)?;
        drop(pack.data);
    }
    crate::publish::sync_dir(&dir)
}

/// A pack's live share below which gc rewrites it: a tenth of its bytes dead.
pub const REWRITE_DEAD_SHARE: f64 = 0.1;
/// Packs smaller than this are merged when there are several.
pub const SMALL_PACK: u64 = 16 << 20;

fn new_pack(store: &Store, dir: &std::path::Path) -> Result<PackWriter> {
    let name = packs::new_pack_name();
    PackWriter::create_in(
        &dir.join(format!("{name}{PACK_DATA_SUFFIX}")),
        &dir.join(format!("{name}{PACK_INDEX_SUFFIX}")),
        store.layout().tmp_dir(),
    )
}

/// The encoding a record names, if it is intact.
fn read_record<'b>(
    pack: &Claimed,
    record: &PackRecord,
    buf: &'b mut Vec<u8>,
) -> Result<Option<&'b [u8]>> {
    // A record naming bytes past the data file's end (a damaged index whose
    // checksum holds) is damaged: no buffer is sized by it.
    let inside = record.offset >= pack::HEADER_LEN as u64
        && record
            .offset
            .checked_add(record.len)
            .is_some_and(|end| end <= pack.data_len);
    let Ok(len) = usize::try_from(record.len) else {
        return Ok(None);
    };
    if !inside {
        return Ok(None);
    }
    buf.resize(len, 0);
    let got = pack::read_at(&pack.data, buf, record.offset).at("read pack", &pack.data_path)?;
    let whole = &buf[..got];
    match object::check_read_whole(&record.id, whole) {
        Some(Ok(_)) if got == len => Ok(Some(whole)),
        _ => Ok(None),
    }
}

/// The bytes of its data file a record can name: its length, or less for
/// a damaged record that runs past the end (its length is not trusted).
fn stored_len(record: &PackRecord, data_len: u64) -> u64 {
    record.len.min(data_len.saturating_sub(record.offset))
}

/// The kind a record's header names, for the statistics.
fn record_kind(pack: &Claimed, record: &PackRecord) -> Option<Kind> {
    let mut head = [0u8; object::HEADER_LEN];
    let got = pack::read_at(&pack.data, &mut head, record.offset).ok()?;
    Header::decode(&head[..got]).ok().map(|h| h.kind)
}

fn remove_pack_file(path: &std::path::Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove pack file", path, e)),
    }
}

/// Every object reachable from `roots` through links.
fn mark(store: &Store, roots: &[ObjectId], progress: &dyn Fn(GcProgress)) -> Result<IdSet> {
    let mut marking = GcProgress::start(GcPhase::Marking);
    progress(marking);
    let mut marked = IdSet::with_capacity_and_hasher(roots.len() * 2, DigestState::default());
    let mut queue: Vec<ObjectId> = Vec::new();
    for &root in roots {
        if marked.insert(root) {
            queue.push(root);
        }
    }
    while let Some(id) = queue.pop() {
        let links = match store.object_links_unverified(&id) {
            Ok((_, links)) => links,
            Err(Error::NotFound { .. } | Error::Corrupt { .. }) => continue,
            Err(e) => return Err(e),
        };
        let before = marked.len();
        for link in links {
            if marked.insert(link) {
                queue.push(link);
            }
        }
        if before / MARK_PROGRESS_EVERY != marked.len() / MARK_PROGRESS_EVERY {
            marking.marked = marked.len() as u64;
            progress(marking);
        }
    }
    marking.marked = marked.len() as u64;
    progress(marking);
    Ok(marked)
}

fn sweep_temp(
    store: &Store,
    options: GcOptions,
    is_old: &dyn Fn(&fs::Metadata) -> bool,
) -> Result<u64> {
    let dir = store.layout().tmp_dir();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.at("list", dir)?;
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || !is_old(&meta) {
            continue;
        }
        if options.mode == GcMode::Delete {
            match fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("remove temp file", entry.path(), e)),
            }
        }
        removed += 1;
    }
    Ok(removed)
}

/// Reflog entries newer than this keep their old and new values alive.
pub const DEFAULT_REFLOG_KEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// What a whole-store gc may do beyond removing unreachable objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcPolicy {
    /// Delete or only report; and the grace period for objects.
    pub objects: GcOptions,
    /// Evict least-recently-used index entries until the store's object
    /// files total at most this many bytes.
    pub max_size: Option<u64>,
    /// Evict index entries not used for this long.
    pub max_age: Option<Duration>,
    /// Reflog entries newer than this are roots.
    pub reflog_keep: Duration,
    /// Wait for writers to finish, or give up at once.
    pub wait: Wait,
}

impl Default for GcPolicy {
    fn default() -> GcPolicy {
        GcPolicy {
            objects: GcOptions::default(),
            max_size: None,
            max_age: None,
            reflog_keep: DEFAULT_REFLOG_KEEP,
            wait: Wait::Block,
        }
    }
}

/// How many roots of each sort gc found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RootCounts {
    /// Ids named by refs (every namespace), reflog entries newer than the
    /// keep period, and unfinished ref transactions.
    pub refs: usize,
    /// Ids pinned by running builds.
    pub pins: usize,
    /// Part ids of live index entries.
    pub entry_parts: usize,
}

/// What a whole-store gc found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreGcReport {
    /// The object sweep.
    pub objects: GcReport,
    /// The roots it kept.
    pub roots: RootCounts,
    /// Index entries evicted (or that would be) by the size cap or age limit.
    pub entries_evicted: u64,
    /// Index entries kept.
    pub entries_kept: u64,
    /// Bytes of object files before gc.
    pub bytes_before: u64,
    /// Whether the size cap (if any) is met afterwards; false when only young
    /// or root-reachable objects are left above it.
    pub within_cap: bool,
}

/// Collects garbage in the whole store: evicts index entries past the size
/// cap or age limit (least recently used first, never one a root needs),
/// then removes every object that no ref, recent reflog entry, live pin or
/// live index entry reaches and that is older than the grace period.
///
/// Index entries are dropped (and the index rewritten without them) before
/// the objects they pointed to are removed. The object phase runs under the
/// exclusive writers/gc lock (see `crate::lock`); eviction runs before it,
/// since removing an entry is itself a write.
///
/// # Errors
/// [`Error::Locked`] with [`Wait::NoWait`] while writers are active;
/// [`Error::Io`] and index errors.
pub fn collect(
    store: &Store,
    index: &Index,
    policy: GcPolicy,
    progress: &dyn Fn(GcProgress),
) -> Result<StoreGcReport> {
    let mut report = StoreGcReport::default();
    let dry_run = policy.objects.mode == GcMode::DryRun;
    let mut evicted: HashSet<KeyHash, DigestState> = HashSet::default();
    if policy.max_size.is_some() || policy.max_age.is_some() {
        let protected = mark(store, &fixed_roots(store, policy.reflog_keep)?.0, progress)?;
        let (chosen, bytes_before, within_cap) =
            choose_evictions(store, index, &protected, &policy, progress)?;
        report.bytes_before = bytes_before;
        report.within_cap = within_cap;
        if !dry_run && !chosen.is_empty() {
            let mut evicting = GcProgress::start(GcPhase::Evicting);
            evicting.entries_total = chosen.len() as u64;
            progress(evicting);
            for (i, entry) in chosen.iter().enumerate() {
                index.remove(&entry.key()?)?;
                if (i + 1) % 256 == 0 || i + 1 == chosen.len() {
                    evicting.entries_done = i as u64 + 1;
                    progress(evicting);
                }
            }
            // The compaction's first report (nothing merged yet) starts the phase.
            index.compact_with_progress(&|c| {
                let mut compacting = GcProgress::start(GcPhase::Compacting);
                compacting.records_done = c.records_done;
                compacting.records_total = c.records_total;
                progress(compacting);
            })?;
        }
        report.entries_evicted = chosen.len() as u64;
        evicted = chosen.iter().map(Entry::key_hash).collect();
    } else {
        report.within_cap = true;
    }

    let _exclusive = ExclusiveGuard::acquire(store.layout(), policy.wait)?;
    let (mut roots, counts) = fixed_roots(store, policy.reflog_keep)?;
    report.roots = counts;
    for entry in index.entries()? {
        if evicted.contains(&entry.key_hash()) {
            continue; // a dry run: still in the index, but gc would have evicted it
        }
        report.entries_kept += 1;
        for part in entry.parts() {
            roots.push(part.id);
            report.roots.entry_parts += 1;
        }
    }
    report.objects = collect_objects(store, &roots, policy.objects, progress)?;
    if !dry_run {
        store.stats_recorder().gc_finished(GcSummary {
            time: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            objects: report.objects.removed_objects,
            bytes: report.objects.removed_bytes,
            entries: report.entries_evicted,
        });
    }
    if report.bytes_before == 0 {
        report.bytes_before = report.objects.kept_bytes + report.objects.removed_bytes;
    }
    if let Some(cap) = policy.max_size {
        report.within_cap = report.objects.kept_bytes <= cap;
    }
    Ok(report)
}

/// Roots that do not come from the index: refs, recent reflog entries,
/// unfinished ref transactions ([`Store::ref_roots`]), and live pins.
fn fixed_roots(store: &Store, reflog_keep: Duration) -> Result<(Vec<ObjectId>, RootCounts)> {
    let mut roots = store.ref_roots(reflog_keep)?;
    let mut counts = RootCounts {
        refs: roots.len(),
        ..RootCounts::default()
    };
    for pin in store.live_pins()? {
        counts.pins += pin.ids.len();
        roots.extend_from_slice(&pin.ids);
    }
    Ok((roots, counts))
}

/// Picks the entries to evict: past the age limit, then least recently used
/// first until the object files fit under the size cap. An entry all of whose
/// parts a root reaches is never chosen. Returns the entries, the bytes of
/// object files before, and whether the cap is met after.
fn choose_evictions(
    store: &Store,
    index: &Index,
    protected: &IdSet,
    policy: &GcPolicy,
    progress: &dyn Fn(GcProgress),
) -> Result<(Vec<Entry>, u64, bool)> {
    let now = SystemTime::now();
    let mut total: u64 = 0;
    let mut measuring = GcProgress::start(GcPhase::Measuring);
    progress(measuring);
    for byte in 0..=u8::MAX {
        for entry in walk::fanout_entries(store.layout(), byte)? {
            if let FanoutEntry::Object(id) = entry
                && let Ok(meta) = fs::symlink_metadata(store.object_path(&id))
            {
                total += meta.len();
            }
        }
        measuring.dirs_done = usize::from(byte) + 1;
        progress(measuring);
    }
    total += store.packs().total_bytes()?;
    let bytes_before = total;
    let entries = index.entries()?;
    let mut refcount: IdMap<u32> = IdMap::default();
    for entry in &entries {
        for part in entry.parts() {
            *refcount.entry(part.id).or_default() += 1;
        }
    }
    // (last use, entry): last use is the newest mtime among its parts, since
    // reads and puts freshen them; an entry with a missing part is useless.
    // (id, file bytes, older than the grace period) of each part.
    type PartFiles = Vec<(ObjectId, u64, bool)>;
    let mut by_use: Vec<(SystemTime, PartFiles, Entry)> = Vec::new();
    for entry in entries {
        let mut last_use = SystemTime::UNIX_EPOCH;
        let mut parts = Vec::new();
        let mut complete = true;
        for part in entry.parts() {
            match store.object_last_use(&part.id)? {
                Some((used, len)) => {
                    last_use = last_use.max(used);
                    let old = now
                        .duration_since(used)
                        .is_ok_and(|age| age >= policy.objects.grace);
                    parts.push((part.id, len, old));
                }
                None => complete = false,
            }
        }
        if !complete {
            last_use = SystemTime::UNIX_EPOCH;
        }
        by_use.push((last_use, parts, entry));
    }
    by_use.sort_by_key(|(last_use, _, entry)| (*last_use, entry.key_hash()));
    let mut chosen = Vec::new();
    for (last_use, parts, entry) in by_use {
        if !parts.is_empty() && parts.iter().all(|(id, _, _)| protected.contains(id)) {
            continue;
        }
        let too_old = policy
            .max_age
            .is_some_and(|age| now.duration_since(last_use).is_ok_and(|a| a > age));
        let too_big = policy.max_size.is_some_and(|cap| total > cap);
        if !too_old && !too_big {
            if policy.max_age.is_none() {
                break;
            }
            continue;
        }
        for (id, len, old) in parts {
            let count = refcount.entry(id).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 && old && !protected.contains(&id) {
                total = total.saturating_sub(len);
            }
        }
        chosen.push(entry);
    }
    let within_cap = policy.max_size.is_none_or(|cap| total <= cap);
    Ok((chosen, bytes_before, within_cap))
}
