//! The index manifest: the small file that names the live segments and the
//! current journal. Replacing it (temp file + rename) is what makes a
//! compaction visible.
//!
//! # File format (manifest format version 1)
//!
//! ```text
//! offset  size  field
//! 0       4     magic "RSKM"
//! 4       1     manifest format version (1)
//! 5       3     reserved, zero
//! 8       8     generation g, u64 LE: the journal is journal-<g>.rsj
//! 16      4     segment count s, u32 LE (at most MAX_SEGMENTS)
//! 20      4     reserved, zero
//! 24      8·s   segment generations, u64 LE, oldest first: seg-<gen>.rsx
//! 24+8s   32    BLAKE3 of every byte before it
//! ```
//!
//! A store without a manifest has an empty index at generation 0; the first
//! writer creates journal 0 and the manifest under the compaction lock.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::layout::Layout;
use crate::publish::{self, Access, Durability, SyncQueue};

/// First four bytes of a manifest.
pub const MAGIC: [u8; 4] = *b"RSKM";
/// The manifest format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Most segments a manifest may name.
pub const MAX_SEGMENTS: usize = 1024;
const HEADER_LEN: usize = 24;
const OFF_VERSION: usize = 4;
const OFF_RESERVED: usize = 5;
const OFF_GENERATION: usize = 8;
const OFF_COUNT: usize = 16;
const OFF_RESERVED2: usize = 20;

/// What the manifest says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The generation; names the journal.
    pub generation: u64,
    /// Generations of the live segments, oldest first.
    pub segments: Vec<u64>,
}

impl Manifest {
    /// Encodes the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 8 * self.segments.len() + 32);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for g in &self.segments {
            out.extend_from_slice(&g.to_le_bytes());
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// Decodes and checks a manifest.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or [`Error::UnsupportedFormat`] naming `path`.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let corrupt = |reason: String| Error::corrupt("index manifest", path, reason);
        if bytes.len() < HEADER_LEN + 32 {
            return Err(corrupt(format!("file is only {} bytes", bytes.len())));
        }
        if bytes[..4] != MAGIC {
            return Err(corrupt("bad magic, expected \"RSKM\"".into()));
        }
        if bytes[OFF_VERSION] != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                found: format!("index manifest version {}", bytes[OFF_VERSION]),
                supported: format!("index manifest version {FORMAT_VERSION}"),
            });
        }
        let body_len = bytes.len() - 32;
        if blake3::hash(&bytes[..body_len]).as_bytes()[..] != bytes[body_len..] {
            return Err(corrupt("checksum mismatch".into()));
        }
        if bytes[OFF_RESERVED..OFF_GENERATION] != [0; 3]
            || bytes[OFF_RESERVED2..HEADER_LEN] != [0; 4]
        {
            return Err(corrupt("reserved bytes are not zero".into()));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut c = [0u8; 4];
        c.copy_from_slice(&bytes[OFF_COUNT..OFF_RESERVED2]);
        let count = u32::from_le_bytes(c) as usize;
        if count > MAX_SEGMENTS || HEADER_LEN + 8 * count != body_len {
            return Err(corrupt(format!(
                "segment count {count} does not match the file length"
            )));
        }
        Ok(Manifest {
            generation: u64_at(OFF_GENERATION),
            segments: (0..count).map(|i| u64_at(HEADER_LEN + 8 * i)).collect(),
        })
    }
}

/// Reads the manifest; `Ok(None)` when there is none yet.
///
/// # Errors
/// As [`Manifest::decode`], or [`Error::Io`].
pub fn read(layout: &Layout) -> Result<Option<Manifest>> {
    let path = layout.index_manifest();
    match std::fs::read(&path) {
        Ok(bytes) => Manifest::decode(&bytes, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read the index manifest", &path, e)),
    }
}

/// A manifest as read, with its file held open.
///
/// The manifest is only ever replaced by renaming a new file over it, so
/// it changed exactly when its path names another inode. Holding the file
/// open keeps its inode from being reused meanwhile, so comparing device
/// and inode (one `stat`) is exact: [`Held::is_current`].
#[derive(Debug)]
pub struct Held {
    /// What it says.
    pub manifest: Manifest,
    _file: std::fs::File,
    identity: Option<(u64, u64)>,
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

impl Held {
    /// Whether the manifest path still names the file this was read from.
    /// Where files have no inode identity this is always false (the
    /// caller re-reads).
    ///
    /// # Errors
    /// [`Error::Io`] when the path cannot be examined.
    pub fn is_current(&self, layout: &Layout) -> Result<bool> {
        let path = layout.index_manifest();
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => Ok(self.identity.is_some() && identity(&meta) == self.identity),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("examine the index manifest", &path, e)),
        }
    }
}

/// Reads the manifest and keeps its file open; `Ok(None)` when there is none yet.
///
/// # Errors
/// As [`read`].
pub fn load(layout: &Layout) -> Result<Option<Held>> {
    use std::io::Read;
    let path = layout.index_manifest();
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read the index manifest", &path, e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .at("read the index manifest", &path)?;
    let meta = file.metadata().at("read metadata of", &path)?;
    Ok(Some(Held {
        manifest: Manifest::decode(&bytes, &path)?,
        identity: identity(&meta),
        _file: file,
    }))
}

/// Publishes `manifest` atomically, replacing the current one.
///
/// # Errors
/// [`Error::Io`] when it cannot be written.
pub fn write(layout: &Layout, manifest: &Manifest, durability: Durability) -> Result<()> {
    let mut temp = publish::temp_file(layout.tmp_dir(), "manifest-")?;
    temp.write_all(&manifest.encode())
        .at("write", temp.path())?;
    publish::publish(
        temp,
        &layout.index_manifest(),
        Access::Replaceable,
        durability,
        &SyncQueue::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_detect_damage() {
        let m = Manifest {
            generation: 7,
            segments: vec![5, 7],
        };
        let bytes = m.encode();
        let path = Path::new("manifest");
        assert_eq!(Manifest::decode(&bytes, path).unwrap(), m);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 4;
            assert!(Manifest::decode(&bad, path).is_err(), "flip at {i}");
        }
        assert!(Manifest::decode(&bytes[..bytes.len() - 1], path).is_err());
    }
}
