//! Atomic publication of files, and durability.
//!
//! Every file the store makes visible goes through [`publish`]: it is
//! written in full to a temp file under `tmp/` (same filesystem as its
//! destination), optionally synced, and renamed into place. A reader sees
//! either the old file, the new file, or nothing, never a partial write.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::NamedTempFile;

use crate::error::{Error, IoContext, Result};

/// How hard the store works to keep what it wrote across a power loss.
///
/// Whatever the choice, a crash never leaves a file that reads back as valid
/// and wrong: objects are hash-checked on every read. Durability decides only
/// what may be *missing* after a power loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// No syncing. After a power loss, recently written objects may be
    /// missing or read as corrupt (a miss); the operating system decides.
    /// A process crash loses nothing that was published.
    None,
    /// New files are synced together at [`crate::Store::flush`] (or when the
    /// store is dropped). After `flush` returns, everything written before it
    /// survives a power loss. One sync per file, but all at the end, so the
    /// disk can batch them.
    #[default]
    Batch,
    /// Every file is synced before it is renamed into place and its
    /// directory after. When a put returns, the object survives a power loss.
    Full,
}

/// Creates a temp file in `tmp_dir` whose name starts with `prefix`.
pub fn temp_file(tmp_dir: &Path, prefix: &str) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(tmp_dir)
        .at("create a temp file in", tmp_dir)
}

/// Creates a temp file in `tmp_dir` whose name starts with `prefix`, already
/// read-only: on Unix it is created with mode 0444 (less the process umask,
/// as for every file a process creates; git does the same for its loose
/// objects), so publishing it with [`Access::CreatedReadOnly`] needs no
/// `fchmod`. The returned handle is open for writing all the same: a mode is
/// checked when a file is opened, and this one is opened as it is created.
pub fn read_only_temp_file(tmp_dir: &Path, prefix: &str) -> Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o444));
    }
    builder
        .tempfile_in(tmp_dir)
        .at("create a temp file in", tmp_dir)
}

/// Files published but not yet synced, for [`Durability::Batch`].
#[derive(Debug, Default)]
pub struct SyncQueue {
    pending: Mutex<Vec<PathBuf>>,
}

impl SyncQueue {
    fn push(&self, path: PathBuf) {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(path);
    }

    /// Syncs every queued file, then every directory holding one.
    pub fn flush(&self) -> Result<()> {
        let pending = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let mut dirs: Vec<&Path> = Vec::new();
        for path in &pending {
            match File::open(path) {
                Ok(file) => file.sync_all().at("sync", path)?,
                // Removed since (gc, repair): nothing left to make durable.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("open for sync", path, e)),
            }
            if let Some(dir) = path.parent() {
                dirs.push(dir);
            }
        }
        dirs.sort_unstable();
        dirs.dedup();
        for dir in dirs {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

/// Syncs a directory so that renames into it survive a power loss.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("sync directory", dir)
}

/// Whether a published file may still be written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Immutable once published (index segments): made mode 0444 before
    /// it is renamed into place.
    ReadOnly,
    /// Immutable, and already read-only since [`read_only_temp_file`]
    /// created it (objects): nothing to change before the rename.
    CreatedReadOnly,
    /// Replaced wholesale by the next publish (refs, configuration).
    Replaceable,
}

/// Makes `file` read-only for everyone who can reach the store: a cache may
/// be shared. On Unix the mode is set outright (0444), with no `fstat` first:
/// one system call per published object instead of two.
#[cfg(unix)]
fn make_read_only(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o444))
}

/// Makes `file` read-only (elsewhere the read-only flag is all there is).
#[cfg(not(unix))]
fn make_read_only(file: &File) -> std::io::Result<()> {
    let mut perms = file.metadata()?.permissions();
    perms.set_readonly(true);
    file.set_permissions(perms)
}

/// Atomically makes `temp`'s contents visible at `dest`.
///
/// Creates the parent directory if it is missing. Replaces an existing file
/// at `dest` in one step.
///
/// # Errors
/// [`Error::Io`] naming `dest` when syncing or renaming fails; the temp file
/// is removed in that case.
pub fn publish(
    temp: NamedTempFile,
    dest: &Path,
    access: Access,
    durability: Durability,
    queue: &SyncQueue,
) -> Result<()> {
    publish_and_keep(temp, dest, access, durability, queue).map(drop)
}

/// As [`publish`], but hands back the open file, now named `dest`.
///
/// For files whose publisher keeps holding a `File::lock` on them (pins,
/// transaction records): lock the temp file first, publish it with this,
/// and the lock is held without a gap from the moment the name appears.
///
/// # Errors
/// As [`publish`].
pub fn publish_and_keep(
    temp: NamedTempFile,
    dest: &Path,
    access: Access,
    durability: Durability,
    queue: &SyncQueue,
) -> Result<File> {
    if access == Access::ReadOnly || (access == Access::CreatedReadOnly && !cfg!(unix)) {
        make_read_only(temp.as_file()).at("make read-only", temp.path())?;
    }
    if durability == Durability::Full {
        temp.as_file().sync_all().at("sync", temp.path())?;
    }
    let file = match temp.persist(dest) {
        Ok(file) => file,
        Err(e) if e.error.kind() == std::io::ErrorKind::NotFound => {
            // The parent directory was removed (by hand, or never made): recreate it once.
            let parent = dest.parent().unwrap_or(dest);
            fs::create_dir_all(parent).at("create directory", parent)?;
            e.file
                .persist(dest)
                .map_err(|e| Error::io("rename a temp file to", dest, e.error))?
        }
        Err(e) => return Err(Error::io("rename a temp file to", dest, e.error)),
    };
    match durability {
        Durability::None => {}
        Durability::Batch => queue.push(dest.to_path_buf()),
        Durability::Full => sync_dir(dest.parent().unwrap_or(dest))?,
    }
    Ok(file)
}
