//! Paths inside a store. No other module joins path components under the
//! store root; they ask this one.
//!
//! ```text
//! <root>/
//!   format              format stamp (see crate::stamp)
//!   config              store configuration, `key = value` lines (crate::config)
//!   objects/ab/cdef…    objects: first 2 hex digits of the id, then the other 62
//!   tmp/                temp files on their way to being published
//!   quarantine/         damaged files moved aside by `verify --repair`
//!   stats/journal       statistics deltas, appended by every process (crate::stats)
//!   index/              the keyed-entry index (see crate::index)
//!     manifest          names the live segments and journal
//!     seg-<gen>.rsx     immutable sorted segments (16 hex digits of generation)
//!     journal-<gen>.rsj the append-only journal of the current generation
//!     compact.lock      taken by compaction
//! ```
//!
//! Refs, locks and pins (see crate::refs and crate::lock):
//!
//! ```text
//!   refs/<ns>/<pkg>         a package's current metadata root
//!   refs/<ns>/.<pkg>.lock   that ref's lock, while it is being updated
//!   logs/<ns>/<pkg>         the ref's reflog
//!   locks/gc.lock           the store-wide writers/gc lock
//!   locks/txn/<name>        records of multi-ref transactions in flight
//!   pins/<pid>-<hex>-<n>    ids pinned by running builds
//! ```
//!
//! Namespace and package names never start with `.` (see crate::name), so
//! a dot-file beside the refs (`.<pkg>.lock`) can never be mistaken for one.

use std::path::{Path, PathBuf};

use crate::id::{ID_HEX_LEN, ObjectId};
use crate::name::{Namespace, PackageName};

/// Name of the format stamp file at the store root.
pub const STAMP_FILE: &str = "format";
/// Name of the store configuration file.
pub const CONFIG_FILE: &str = "config";
/// Name of the objects directory.
pub const OBJECTS_DIR: &str = "objects";
/// Name of the temp directory.
pub const TMP_DIR: &str = "tmp";
/// Directory under `objects/` holding pack files.
pub const PACK_DIR: &str = "pack";
/// Suffix of a pack's data file.
pub const PACK_DATA_SUFFIX: &str = ".rsp";
/// Suffix of a pack's index file.
pub const PACK_INDEX_SUFFIX: &str = ".rsi";
/// Name of the statistics directory.
pub const STATS_DIR: &str = "stats";
/// Name of the quarantine directory.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Name of the index directory.
pub const INDEX_DIR: &str = "index";
/// Suffix of index segment files.
pub const SEGMENT_SUFFIX: &str = ".rsx";
/// Suffix of index journal files.
pub const JOURNAL_SUFFIX: &str = ".rsj";
/// Suffix older versions gave an unreadable index file they set aside in
/// `index/`; compaction now moves such files into `quarantine/`.
pub const QUARANTINE_SUFFIX: &str = ".bad";

/// The paths of one store.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
    index: PathBuf,
}

impl Layout {
    /// The layout of the store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        let root = root.into();
        Layout {
            objects: root.join(OBJECTS_DIR),
            tmp: root.join(TMP_DIR),
            index: root.join(INDEX_DIR),
            root,
        }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The format stamp.
    pub fn stamp(&self) -> PathBuf {
        self.root.join(STAMP_FILE)
    }

    /// The store configuration.
    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// The objects directory.
    pub fn objects_dir(&self) -> &Path {
        &self.objects
    }

    /// The fanout directory for ids whose first byte is `byte`.
    pub fn fanout_dir(&self, byte: u8) -> PathBuf {
        self.objects.join(hex::encode([byte]))
    }

    /// Where the object `id` lives.
    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        // Hex on the stack and one allocation of the final size: this runs
        // on every put and get.
        let mut digits = [0u8; ID_HEX_LEN];
        let encoded = hex::encode_to_slice(id.as_bytes(), &mut digits);
        let hex = match encoded.ok().map(|()| std::str::from_utf8(&digits)) {
            Some(Ok(hex)) => std::borrow::Cow::Borrowed(hex),
            _ => std::borrow::Cow::Owned(id.to_hex()),
        };
        let mut path = PathBuf::with_capacity(self.objects.as_os_str().len() + ID_HEX_LEN + 2);
        path.push(&self.objects);
        path.push(&hex[..2]);
        path.push(&hex[2..]);
        path
    }

    /// The name of the object file `id` inside its fanout directory (the
    /// last 62 hex digits), on the stack: verify opens every object by it
    /// and builds the full path only to report a problem.
    pub(crate) fn object_file_name(id: &ObjectId) -> ObjectFileName {
        let mut digits = [0u8; ID_HEX_LEN - 2];
        // Cannot fail: the buffer is exactly twice the bytes' length.
        let _ = hex::encode_to_slice(&id.as_bytes()[1..], &mut digits);
        ObjectFileName(digits)
    }

    /// The directory that holds pack files (`objects/pack`).
    pub fn pack_dir(&self) -> PathBuf {
        self.objects.join(PACK_DIR)
    }

    /// The directory that holds temp files.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// The statistics directory.
    pub fn stats_dir(&self) -> PathBuf {
        self.root.join(STATS_DIR)
    }

    /// The statistics journal.
    pub fn stats_journal(&self) -> PathBuf {
        self.root.join(STATS_DIR).join("journal")
    }

    /// Where damaged files are moved by repair.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join(QUARANTINE_DIR)
    }

    /// The index directory.
    pub fn index_dir(&self) -> &Path {
        &self.index
    }

    /// The index manifest.
    pub fn index_manifest(&self) -> PathBuf {
        self.index.join("manifest")
    }

    /// The lock file compaction holds.
    pub fn index_compact_lock(&self) -> PathBuf {
        self.index.join("compact.lock")
    }

    /// The index segment of generation `generation`.
    pub fn index_segment(&self, generation: u64) -> PathBuf {
        self.index
            .join(format!("seg-{generation:016x}{SEGMENT_SUFFIX}"))
    }

    /// The index journal of generation `generation`.
    pub fn index_journal(&self, generation: u64) -> PathBuf {
        self.index
            .join(format!("journal-{generation:016x}{JOURNAL_SUFFIX}"))
    }

    /// Where an unreadable index file named `name` is moved:
    /// `quarantine/index-<name>.<nanos>`, or `…-<attempt>` when that exists.
    pub fn index_quarantine(&self, name: &str, nanos: u128, attempt: u32) -> PathBuf {
        let dir = self.quarantine_dir();
        match attempt {
            0 => dir.join(format!("index-{name}.{nanos}")),
            n => dir.join(format!("index-{name}.{nanos}-{n}")),
        }
    }

    /// The generation of an index segment or journal file name, if it is one.
    pub fn index_file_generation(name: &str) -> Option<u64> {
        let hex = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .or_else(|| {
                name.strip_prefix("journal-")
                    .and_then(|n| n.strip_suffix(JOURNAL_SUFFIX))
            })?;
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    }

    /// The id an object file name under a fanout directory stands for, if it is one.
    pub fn id_from_object_name(fanout: &str, name: &str) -> Option<ObjectId> {
        ObjectId::from_object_name(fanout.as_bytes(), name.as_bytes())
    }
}

/// See [`Layout::object_file_name`].
pub(crate) struct ObjectFileName([u8; ID_HEX_LEN - 2]);

impl ObjectFileName {
    pub(crate) fn as_str(&self) -> &str {
        // Hex digits are ASCII; the fallback is never taken.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// Name of the refs directory.
pub const REFS_DIR: &str = "refs";
/// Name of the reflogs directory.
pub const LOGS_DIR: &str = "logs";
/// Name of the lock directory.
pub const LOCKS_DIR: &str = "locks";
/// Name of the store-wide writers/gc lock file inside [`LOCKS_DIR`].
pub const GC_LOCK_FILE: &str = "gc.lock";
/// Name of the directory of transaction records inside [`LOCKS_DIR`].
pub const TXN_DIR: &str = "txn";
/// Name of the pins directory.
pub const PINS_DIR: &str = "pins";
/// Suffix of a ref's lock file (`.<pkg>.lock`).
pub const REF_LOCK_SUFFIX: &str = ".lock";

/// Paths of refs, reflogs, locks and pins.
impl Layout {
    /// The refs directory.
    pub fn refs_dir(&self) -> PathBuf {
        self.root.join(REFS_DIR)
    }

    /// The directory holding the refs of namespace `ns`.
    pub fn ref_namespace_dir(&self, ns: &Namespace) -> PathBuf {
        self.refs_dir().join(ns.as_str())
    }

    /// The ref of package `pkg` in namespace `ns`.
    pub fn ref_path(&self, ns: &Namespace, pkg: &PackageName) -> PathBuf {
        self.ref_namespace_dir(ns).join(pkg.as_str())
    }

    /// The lock file of the ref of `pkg` in `ns`: `.<pkg>.lock` beside it.
    pub fn ref_lock_path(&self, ns: &Namespace, pkg: &PackageName) -> PathBuf {
        self.ref_namespace_dir(ns)
            .join(format!(".{}{REF_LOCK_SUFFIX}", pkg.as_str()))
    }

    /// The reflog of package `pkg` in namespace `ns`.
    pub fn reflog_path(&self, ns: &Namespace, pkg: &PackageName) -> PathBuf {
        let mut path = self.root.join(LOGS_DIR);
        path.push(ns.as_str());
        path.push(pkg.as_str());
        path
    }

    /// The reflogs directory: `logs/<namespace>/<package>`.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join(LOGS_DIR)
    }

    /// The lock directory.
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join(LOCKS_DIR)
    }

    /// The store-wide writers/gc lock file.
    pub fn gc_lock_path(&self) -> PathBuf {
        self.locks_dir().join(GC_LOCK_FILE)
    }

    /// The directory of multi-ref transaction records.
    pub fn txn_dir(&self) -> PathBuf {
        self.locks_dir().join(TXN_DIR)
    }

    /// The pins directory.
    pub fn pins_dir(&self) -> PathBuf {
        self.root.join(PINS_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_use_a_two_digit_fanout() {
        let layout = Layout::new("/cache");
        let id = ObjectId::from_bytes([0x3f; 32]);
        let path = layout.object_path(&id);
        assert_eq!(path, Path::new("/cache/objects/3f").join("3f".repeat(31)));
        assert_eq!(
            Layout::id_from_object_name("3f", &"3f".repeat(31)),
            Some(id)
        );
        assert_eq!(Layout::id_from_object_name("3F", &"3f".repeat(31)), None);
        assert_eq!(Layout::id_from_object_name("3f", "tmp"), None);
    }
}
