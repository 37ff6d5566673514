//! Enumerating the object files of a store, one fanout directory at a time.
//!
//! Walking is safe beside writers and gc: a directory or file that vanishes
//! mid-walk is skipped, and a file that appears mid-walk may or may not be
//! seen. Names that are not valid object names are reported, not skipped,
//! so verify can point at stray files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::layout::Layout;

/// One entry of a fanout directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FanoutEntry {
    /// A file named like an object.
    Object(ObjectId),
    /// Anything else found there (a stray file or directory).
    Stray(PathBuf),
}

/// Lists the fanout directory for ids starting with `byte`.
///
/// A missing directory is empty (it is re-created by the next put into it).
///
/// # Errors
/// [`Error::Io`] naming the directory when it cannot be listed.
pub fn fanout_entries(layout: &Layout, byte: u8) -> Result<Vec<FanoutEntry>> {
    let dir = layout.fanout_dir(byte);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &dir, e)),
    };
    let fanout = hex::encode([byte]);
    let fanout = fanout.as_bytes();
    let mut out = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        let name = entry.file_name();
        let id = ObjectId::from_object_name(fanout, name.as_encoded_bytes());
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        match id {
            Some(id) if is_file => out.push(FanoutEntry::Object(id)),
            _ => out.push(FanoutEntry::Stray(entry.path())),
        }
    }
    Ok(out)
}

/// The entries of `dir` (none if it does not exist), sorted; an entry that
/// vanishes while the directory is read is skipped.
///
/// # Errors
/// [`Error::Io`] naming the directory when it cannot be listed.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => paths.push(entry.path()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("list", dir, e)),
        }
    }
    paths.sort();
    Ok(paths)
}
