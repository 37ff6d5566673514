//! The format stamp: the file `format` at the store root.
//!
//! ```text
//! rask-store format 1
//! hash blake3
//! ```
//!
//! Two lines of ASCII, each ending in `\n`. Every open reads it; a store
//! with a newer or unknown format is refused rather than misread. The stamp
//! is written last by `init`, so a half-made store is not mistaken for one.

use std::fs;
use std::io::Write;

use crate::error::{Error, IoContext, Result};
use crate::layout::Layout;
use crate::publish::{self, Access, Durability, SyncQueue};

/// The store format version this build writes: 2, a store that may hold
/// pack files (`docs/FORMAT.md`, "Pack files").
pub const STORE_FORMAT: u32 = 2;
/// The oldest store format this build opens: 1, loose objects only, which
/// version 2 reads unchanged (the stamp is raised before the first pack is
/// made).
pub const OLDEST_FORMAT: u32 = 1;
/// The only hash algorithm this build knows.
pub const HASH_ALGORITHM: &str = "blake3";

const FIRST_LINE_PREFIX: &str = "rask-store format ";

/// The text of a current stamp.
pub fn stamp_text() -> String {
    format!("{FIRST_LINE_PREFIX}{STORE_FORMAT}\nhash {HASH_ALGORITHM}\n")
}

/// Writes the stamp atomically.
pub fn write(layout: &Layout) -> Result<()> {
    let path = layout.stamp();
    let mut temp = publish::temp_file(layout.tmp_dir(), "format-")?;
    temp.write_all(stamp_text().as_bytes())
        .at("write", temp.path())?;
    publish::publish(
        temp,
        &path,
        Access::Replaceable,
        Durability::Full,
        &SyncQueue::default(),
    )
}

/// Reads and checks the stamp of the store at `layout`; returns its format
/// version.
///
/// # Errors
/// [`Error::NotAStore`] when the directory or stamp is missing,
/// [`Error::UnsupportedFormat`] for a newer or different format,
/// [`Error::Corrupt`] for a stamp that cannot be parsed.
pub fn check(layout: &Layout) -> Result<u32> {
    let root = layout.root();
    let path = layout.stamp();
    let text = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let reason = if root.is_dir() {
                format!(
                    "the directory has no `{}` stamp file",
                    crate::layout::STAMP_FILE
                )
            } else if root.exists() {
                "it is not a directory".to_string()
            } else {
                "the directory does not exist".to_string()
            };
            return Err(Error::NotAStore {
                path: root.to_path_buf(),
                reason,
            });
        }
        Err(e) => return Err(Error::io("read the format stamp", &path, e)),
    };
    let text = String::from_utf8_lossy(&text);
    let mut lines = text.lines();
    let version = lines
        .next()
        .and_then(|line| line.strip_prefix(FIRST_LINE_PREFIX))
        .ok_or_else(|| {
            Error::corrupt(
                "format stamp",
                &path,
                format!("first line is not `{FIRST_LINE_PREFIX}<N>`"),
            )
        })?;
    let version: u32 = version.trim().parse().map_err(|_| {
        Error::corrupt(
            "format stamp",
            &path,
            format!("format version {version:?} is not a number"),
        )
    })?;
    if !(OLDEST_FORMAT..=STORE_FORMAT).contains(&version) {
        return Err(Error::UnsupportedFormat {
            path,
            found: version.to_string(),
            supported: format!("{OLDEST_FORMAT} to {STORE_FORMAT}"),
        });
    }
    let hash = lines.next().and_then(|line| line.strip_prefix("hash "));
    if hash != Some(HASH_ALGORITHM) {
        return Err(Error::UnsupportedFormat {
            path,
            found: format!("{version} with hash {}", hash.unwrap_or("(none)")),
            supported: format!("{STORE_FORMAT} with hash {HASH_ALGORITHM}"),
        });
    }
    Ok(version)
}
