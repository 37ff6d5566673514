//! Paths inside a store. No other module joins path components under the
//! store root; they ask this one.
//!
//! ```text
//! <root>/
//!   format              format stamp (see crate::stamp)
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

use std::path::{Path, PathBuf};

use crate::id::{ID_HEX_LEN, ObjectId};

/// Name of the format stamp file at the store root.
pub const STAMP_FILE: &str = "format";
/// Name of the objects directory.
pub const OBJECTS_DIR: &str = "objects";
/// Name of the temp directory.
pub const TMP_DIR: &str = "tmp";
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
/// Suffix given to an unreadable index file that was set aside.
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
        let hex = id.to_hex();
        let mut path = self.objects.join(&hex[..2]);
        path.push(&hex[2..]);
        path
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

    /// Where an unreadable index file is set aside.
    pub fn index_quarantine(&self, file: &Path) -> PathBuf {
        let mut name = file.file_name().unwrap_or_default().to_os_string();
        name.push(QUARANTINE_SUFFIX);
        self.index.join(name)
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
        if fanout.len() != 2 || name.len() != ID_HEX_LEN - 2 {
            return None;
        }
        let mut hex = String::with_capacity(ID_HEX_LEN);
        hex.push_str(fanout);
        hex.push_str(name);
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        ObjectId::from_hex(&hex).ok()
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
