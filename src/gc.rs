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
//! 3. Temp files in `tmp/` older than the grace period are left from crashed
//!    writers and are removed.
//!
//! With [`GcMode::DryRun`] nothing is removed and the report says what would be.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::time::{Duration, SystemTime};

use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::stats::GcSummary;
use crate::store::Store;
use crate::walk::{self, FanoutEntry};

/// The default grace period: objects younger than this are never collected.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60 * 60);

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
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Progress of a long gc, reported after each fanout directory swept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcProgress {
    /// Fanout directories swept, out of 256.
    pub dirs_done: usize,
    /// Objects removed so far.
    pub removed: u64,
}

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
    let marked = mark(store, roots)?;
    report.reachable = marked.len() as u64;
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
                    Ok(()) => {}
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
        progress(GcProgress {
            dirs_done: usize::from(byte) + 1,
            removed: report.removed_objects,
        });
    }
    report.removed_temp_files = sweep_temp(store, options, &is_old)?;
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

/// Every object reachable from `roots` through links.
fn mark(store: &Store, roots: &[ObjectId]) -> Result<HashSet<ObjectId>> {
    let mut marked: HashSet<ObjectId> = HashSet::with_capacity(roots.len() * 2);
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
        for link in links {
            if marked.insert(link) {
                queue.push(link);
            }
        }
    }
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
