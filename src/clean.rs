//! `clean`: remove everything, or everything of one namespace — and really
//! delete it.
//!
//! - [`clean_all`] empties the store under the exclusive writers/gc lock:
//!   every object, the index, refs, reflogs, quarantine and statistics. The
//!   format stamp, configuration, locks, pins and temp files of writes in
//!   flight stay, and so do packs a live process is still appending to
//!   (counted in [`CleanReport::packs_in_use`]).
//! - [`clean_namespace`] deletes the namespace's refs and reflogs and its
//!   index entries, then runs gc with a zero grace period, so every object
//!   that only that namespace reached is gone. Objects another namespace (or
//!   a running build's pin) reaches stay.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::gc::{self, GcPolicy};
use crate::index::Index;
use crate::layout::{PACK_DATA_SUFFIX, PACK_INDEX_SUFFIX};
use crate::lock::{ExclusiveGuard, Wait};
use crate::name::Namespace;
use crate::pack;
use crate::packs;
use crate::refs::Expect;
use crate::store::Store;
use crate::walk::{self, FanoutEntry};

/// What a clean removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Refs deleted.
    pub refs: u64,
    /// Index entries removed.
    pub entries: u64,
    /// Object files removed.
    pub objects: u64,
    /// Bytes of object files removed.
    pub bytes: u64,
    /// Packs left because a live process is still appending to them (run
    /// clean again after it exits).
    pub packs_in_use: u64,
}

/// Empties the store: every object, the index, refs, reflogs, quarantine and
/// statistics.
///
/// # Errors
/// [`Error::Io`] naming what could not be removed.
pub fn clean_all(store: &Store) -> Result<CleanReport> {
    let layout = store.layout();
    let mut report = CleanReport::default();
    for ns in store.list_namespaces()? {
        report.refs += store.list_refs(&ns)?.len() as u64;
    }
    report.entries = Index::open(store)?.entries()?.len() as u64;
    let _exclusive = ExclusiveGuard::acquire(layout, Wait::Block)?;
    for byte in 0..=u8::MAX {
        for entry in walk::fanout_entries(layout, byte)? {
            let path = match entry {
                FanoutEntry::Object(id) => store.object_path(&id),
                FanoutEntry::Stray(path) => path,
            };
            let len = fs::symlink_metadata(&path).map_or(0, |m| m.len());
            remove_any(&path)?;
            report.objects += 1;
            report.bytes += len;
        }
    }
    clean_packs(store, &mut report)?;
    for dir in [
        layout.index_dir().to_path_buf(),
        layout.refs_dir(),
        layout.logs_dir(),
        layout.quarantine_dir(),
        layout.stats_dir(),
    ] {
        remove_any(&dir)?;
    }
    fs::create_dir_all(layout.index_dir()).at("create directory", layout.index_dir())?;
    Ok(report)
}

/// Removes every pack no live writer holds, counting its objects.
fn clean_packs(store: &Store, report: &mut CleanReport) -> Result<()> {
    let dir = store.layout().pack_dir();
    store.packs().close_own_pack()?;
    for name in packs::list_packs(&dir)? {
        let data_path = dir.join(format!("{name}{PACK_DATA_SUFFIX}"));
        let index_path = dir.join(format!("{name}{PACK_INDEX_SUFFIX}"));
        // Held while its files are removed, so that no writer claims it.
        let data = match fs::File::open(&data_path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("open pack", &data_path, e)),
        };
        if let Some(file) = &data {
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    report.packs_in_use += 1;
                    continue;
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(Error::io("lock pack", &data_path, e));
                }
            }
        }
        if let Ok(index) = pack::read_index(&index_path) {
            report.objects += index.records.len() as u64;
            // What the data file holds, whatever a damaged record claims.
            let data_len = data
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len());
            let named: u64 = index.records.iter().map(|r| r.len).sum();
            report.bytes += named.min(data_len);
        }
        remove_any(&index_path)?;
        remove_any(&data_path)?;
    }
    // Stray files there (verify reports them) go too.
    if report.packs_in_use == 0 {
        remove_any(&dir)?;
    }
    store.packs().forget()
}

/// Deletes one namespace: its refs and reflogs, its index entries, and every
/// object nothing else reaches.
///
/// # Errors
/// [`Error::Conflict`] when a ref changes while it is being deleted (run
/// again); [`Error::Io`] and index errors.
pub fn clean_namespace(store: &Store, index: &Index, ns: &Namespace) -> Result<CleanReport> {
    let mut report = CleanReport::default();
    for (pkg, id) in store.list_refs(ns)? {
        store.delete_ref(ns, &pkg, Expect::Value(id), "clean --namespace")?;
        report.refs += 1;
    }
    remove_any(&store.layout().logs_dir().join(ns.as_str()))?;
    remove_any(&store.layout().ref_namespace_dir(ns))?;
    for entry in index.entries()? {
        let key = entry.key()?;
        if key.namespace() == ns {
            index.remove(&key)?;
            report.entries += 1;
        }
    }
    if report.entries > 0 {
        index.compact()?;
    }
    let mut policy = GcPolicy::default();
    policy.objects.grace = Duration::ZERO;
    let gc = gc::collect(store, index, policy, &|_| {})?;
    report.objects = gc.objects.removed_objects;
    report.bytes = gc.objects.removed_bytes;
    Ok(report)
}

/// Removes a file or a directory tree; absent is fine.
fn remove_any(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}
