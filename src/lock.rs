//! The store-wide writers/gc lock, lock files with stale-holder recovery,
//! and pins.
//!
//! # The writers/gc lock: `locks/gc.lock`
//!
//! An empty file used only for `File::lock` (an advisory `flock` on Unix).
//! Everything that makes an object, entry or ref visible holds it **shared**
//! while it publishes; gc holds it **exclusive** for its reachability and
//! delete phase. So gc never deletes while a put is between "this object
//! exists, freshen it" and "publish", and a writer never publishes while gc
//! is deciding what is reachable.
//!
//! A [`crate::Store`] keeps the lock file open for its lifetime and takes the
//! shared lock per call: the first concurrent call in a process takes the
//! `flock`, the last one to finish drops it (a count under a mutex, because a
//! `flock` belongs to the open file, not to the thread). Measured: one
//! `lock_shared` + `unlock` pair on a kept-open file, with the count, costs
//! 0.75–1 µs on a loaded 2-core machine, against hundreds of microseconds
//! for a small put's temp file and rename on the same machine
//! (`cargo test --release --test lock_cost -- --ignored --nocapture`).
//! Holding the lock for a handle's whole life would cost nothing per call,
//! but a long-lived compiler process would then keep gc out forever; per
//! call, gc waits at most for the puts in flight.
//!
//! # Lock files: `<something>.lock`
//!
//! A mutable file (a ref) is changed only by the holder of its lock file.
//! The lock file is created with `O_CREAT|O_EXCL` (`create_new`), so two
//! processes can never both create it; the creator then takes an exclusive
//! `File::lock` on it, checks that the path still names the file it created,
//! and writes `pid <pid>` (and, for refs, the transaction it belongs to)
//! into it. It keeps the `flock` until it has removed the lock file.
//!
//! **Stale rule.** A lock file whose `flock` can be taken is stale: the
//! kernel drops a `flock` when its holder dies (kill -9 included), and a
//! live holder never lets go of it before removing the file. A contender that
//! finds the file takes its `flock` with `try_lock`; if that succeeds and the
//! path still names the same file, the holder is gone and the contender
//! removes the file (still holding the `flock`, so two contenders cannot
//! both remove it, nor remove a newer lock). A creator that was itself
//! removed in the instant between `create_new` and `lock` notices when it
//! re-checks the path, and starts over. No timeout is involved: a lock file
//! of a dead process is recovered at the next attempt, a lock of a live
//! process is never broken. The recorded pid only serves messages.
//!
//! # Pins: `pins/<pid>-<nanos>-<n>`
//!
//! ```text
//! rask-store pin 1\n
//! pid <decimal pid>\n
//! <64 hex>\n            one line per pinned id, appended as the build goes
//! ```
//!
//! A running build pins the ids it produces until its refs are published.
//! The pin file is written in `tmp/`, locked with an exclusive `File::lock`,
//! and only then renamed into `pins/`, so a visible pin is locked for as
//! long as its process lives. A reader tells a live pin from a dead
//! process's leftover with `try_lock_shared`: it fails on a live pin. Pins
//! are created and extended under the shared writers lock, so gc (holding
//! the exclusive lock) always reads complete pins. A dead pin is only ever
//! half-written if its process died mid-append; it protects nothing and may
//! be removed. Pins are never synced: after a power loss no build is running.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::layout::Layout;
use crate::publish::{self, Access, Durability, SyncQueue};
use crate::store::Store;

/// Whether to wait for a lock another process holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Block until the lock is free.
    Block,
    /// Fail at once with [`Error::Locked`] if it is held.
    NoWait,
}

/// Opens (creating if needed) the store-wide writers/gc lock file.
fn open_gc_lock(layout: &Layout) -> Result<File> {
    let path = layout.gc_lock_path();
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
    };
    match open() {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = layout.locks_dir();
            fs::create_dir_all(&dir).at("create directory", &dir)?;
            open().at("open the writers/gc lock", &path)
        }
        // A store on a read-only mount: a read-only descriptor locks as well.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            File::open(&path).at("open the writers/gc lock", &path)
        }
        Err(e) => Err(Error::io("open the writers/gc lock", &path, e)),
    }
}

fn gc_lock_busy(path: PathBuf, mode: &str) -> Error {
    Error::Locked {
        path,
        holder: format!("another process holds it {mode}"),
    }
}

/// The writers/gc lock held shared, by a writer. Released on drop.
#[derive(Debug)]
pub struct SharedGuard {
    _file: File,
}

impl SharedGuard {
    /// Takes the writers/gc lock shared.
    ///
    /// # Errors
    /// [`Error::Locked`] with [`Wait::NoWait`] while gc holds it;
    /// [`Error::Io`] when the lock file cannot be opened or locked.
    pub fn acquire(layout: &Layout, wait: Wait) -> Result<SharedGuard> {
        let file = open_gc_lock(layout)?;
        let path = layout.gc_lock_path();
        match wait {
            Wait::Block => file.lock_shared().at("lock (shared)", &path)?,
            Wait::NoWait => match file.try_lock_shared() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Err(gc_lock_busy(path, "exclusively")),
                Err(TryLockError::Error(e)) => return Err(Error::io("lock (shared)", &path, e)),
            },
        }
        Ok(SharedGuard { _file: file })
    }
}

/// The writers/gc lock held exclusively, by gc. Released on drop.
///
/// # Concurrency
/// While it is held, every put, ref update and pin in every process waits.
/// Taking it in a thread whose own process is in the middle of a put blocks
/// until that put ends; taking it while holding a [`SharedGuard`] in the same
/// thread deadlocks (use [`Wait::NoWait`] where that could happen). While it
/// is held, the same thread must not call the [`Store`] methods that write
/// (puts, ref updates, pins, `recover_ref_transactions`): they wait for it.
/// Reading (`get_object`, `read_ref`, `ref_roots`, `live_pins`) is fine.
#[derive(Debug)]
pub struct ExclusiveGuard {
    _file: File,
}

impl ExclusiveGuard {
    /// Takes the writers/gc lock exclusively.
    ///
    /// # Errors
    /// [`Error::Locked`] with [`Wait::NoWait`] while any writer holds it;
    /// [`Error::Io`] when the lock file cannot be opened or locked.
    pub fn acquire(layout: &Layout, wait: Wait) -> Result<ExclusiveGuard> {
        let file = open_gc_lock(layout)?;
        let path = layout.gc_lock_path();
        match wait {
            Wait::Block => file.lock().at("lock (exclusive)", &path)?,
            Wait::NoWait => match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Err(gc_lock_busy(path, "shared")),
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io("lock (exclusive)", &path, e));
                }
            },
        }
        Ok(ExclusiveGuard { _file: file })
    }
}

/// A store handle's share of the writers/gc lock: one kept-open file and a
/// count of the calls in flight (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct WriterLock {
    state: Mutex<WriterState>,
}

#[derive(Debug, Default)]
struct WriterState {
    file: Option<File>,
    holders: usize,
}

/// Proof that the shared writers lock is held; released on drop.
#[derive(Debug)]
pub(crate) struct WriterGuard<'a> {
    lock: &'a WriterLock,
}

impl WriterLock {
    /// Takes the shared lock for the duration of one write (blocking while
    /// gc holds it exclusively).
    pub(crate) fn enter(&self, layout: &Layout) -> Result<WriterGuard<'_>> {
        self.take(layout, true)
            .map(|guard| guard.expect("a blocking lock is always taken"))
    }

    /// As [`WriterLock::enter`] without waiting: `None` while gc holds the
    /// lock exclusively (or it cannot be taken at all), for work that may
    /// as well be skipped.
    pub(crate) fn try_enter(&self, layout: &Layout) -> Option<WriterGuard<'_>> {
        self.take(layout, false).ok().flatten()
    }

    /// The first holder of this handle takes the file lock (waiting for it
    /// when `wait`); the others only count themselves.
    fn take(&self, layout: &Layout, wait: bool) -> Result<Option<WriterGuard<'_>>> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.holders == 0 {
            if state.file.is_none() {
                state.file = Some(open_gc_lock(layout)?);
            }
            if let Some(file) = &state.file {
                if wait {
                    // The path is built only for the error: no allocation per put.
                    file.lock_shared()
                        .map_err(|e| Error::io("lock (shared)", layout.gc_lock_path(), e))?;
                } else if file.try_lock_shared().is_err() {
                    return Ok(None);
                }
            }
        }
        state.holders += 1;
        Ok(Some(WriterGuard { lock: self }))
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        let mut state = self
            .lock
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.holders = state.holders.saturating_sub(1);
        if state.holders == 0
            && let Some(file) = &state.file
            && file.unlock().is_err()
        {
            // Cannot unlock a descriptor we locked: close it, which must.
            state.file = None;
        }
    }
}

/// Whether `file` is still the file named `path` (same device and inode).
pub(crate) fn still_at(file: &File, path: &Path) -> io::Result<bool> {
    let named = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let held = file.metadata()?;
        Ok(held.dev() == named.dev() && held.ino() == named.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = (file, named);
        Ok(true)
    }
}

/// Whether a live process holds the lock file at `path` (its `flock` is
/// taken). A missing file, or one whose holder is dead, is not held.
pub(crate) fn held_by_live_process(path: &Path) -> io::Result<bool> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// A lock file this process created and holds (see the module docs).
/// Dropping it removes the file, then releases the `flock`.
#[derive(Debug)]
pub(crate) struct HeldLockFile {
    path: PathBuf,
    file: Option<File>,
}

/// A lock file left by a dead process; we hold its `flock`, so nobody else
/// can remove or take it over until this is dropped.
#[derive(Debug)]
pub(crate) struct StaleLockFile {
    path: PathBuf,
    file: File,
    content: String,
}

/// What [`HeldLockFile::try_create`] found.
#[derive(Debug)]
pub(crate) enum TryCreate {
    /// We hold the lock.
    Acquired(HeldLockFile),
    /// A live process holds it (see [`describe_holder`] for who).
    Busy,
    /// The holder is dead; the caller decides how to clean up.
    Stale(StaleLockFile),
    /// The lock changed hands while we looked: try again at once.
    Retry,
}

impl HeldLockFile {
    /// One attempt to create and lock `path`, writing `content` into it.
    pub(crate) fn try_create(path: &Path, content: &str) -> Result<TryCreate> {
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(file) => {
                file.lock().at("lock", path)?;
                if !still_at(&file, path).at("check lock file", path)? {
                    // A contender took it for stale before we locked it.
                    return Ok(TryCreate::Retry);
                }
                let held = HeldLockFile {
                    path: path.to_path_buf(),
                    file: Some(file),
                };
                if let Some(file) = &held.file {
                    (&*file).write_all(content.as_bytes()).at("write", path)?;
                }
                Ok(TryCreate::Acquired(held))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::inspect(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = path.parent().unwrap_or(path);
                fs::create_dir_all(dir).at("create directory", dir)?;
                Ok(TryCreate::Retry)
            }
            Err(e) => Err(Error::io("create lock file", path, e)),
        }
    }

    /// Looks at an existing lock file: busy, stale, or gone meanwhile.
    fn inspect(path: &Path) -> Result<TryCreate> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TryCreate::Retry),
            Err(e) => return Err(Error::io("open lock file", path, e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(TryCreate::Busy),
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
        if !still_at(&file, path).at("check lock file", path)? {
            return Ok(TryCreate::Retry);
        }
        let mut content = String::new();
        // Unreadable bytes make no difference to a lock whose holder is dead.
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_ok() {
            content = String::from_utf8_lossy(&bytes).into_owned();
        }
        Ok(TryCreate::Stale(StaleLockFile {
            path: path.to_path_buf(),
            file,
            content,
        }))
    }

    /// Removes the lock file and releases it.
    pub(crate) fn release(mut self) -> Result<()> {
        self.remove()
    }

    fn remove(&mut self) -> Result<()> {
        if let Some(file) = self.file.take() {
            let result = match fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io("remove lock file", &self.path, e)),
            };
            drop(file);
            return result;
        }
        Ok(())
    }
}

impl Drop for HeldLockFile {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

impl StaleLockFile {
    /// What the dead holder wrote into the lock file.
    pub(crate) fn content(&self) -> &str {
        &self.content
    }

    /// Removes the stale lock file.
    pub(crate) fn remove(self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove stale lock file", &self.path, e)),
        }
    }

    /// Takes the stale lock over: from now on it is ours, with its old content.
    pub(crate) fn take_over(self) -> HeldLockFile {
        HeldLockFile {
            path: self.path,
            file: Some(self.file),
        }
    }
}

/// Who holds the lock file at `path`, from its `pid N` line, for messages.
pub(crate) fn describe_holder(path: &Path) -> String {
    holder_of(&fs::read_to_string(path).unwrap_or_default())
}

fn holder_of(content: &str) -> String {
    content
        .lines()
        .find_map(|line| line.strip_prefix("pid "))
        .map(|pid| format!("held by pid {}", pid.trim()))
        .unwrap_or_else(|| "held by another process".to_string())
}

/// Exponential backoff with jitter, up to a deadline.
#[derive(Debug)]
pub(crate) struct Backoff {
    deadline: Instant,
    next: Duration,
    seed: u64,
}

const BACKOFF_FIRST: Duration = Duration::from_micros(100);
const BACKOFF_MAX: Duration = Duration::from_millis(5);

impl Backoff {
    pub(crate) fn new(limit: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + limit,
            next: BACKOFF_FIRST,
            seed: unique_seed(),
        }
    }

    /// Sleeps a little longer each time; false once the deadline has passed.
    pub(crate) fn sleep(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        // xorshift: spread contenders so they do not retry in lockstep.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let max = self.next.as_micros().max(1) as u64;
        let pause = Duration::from_micros(max / 2 + self.seed % (max / 2 + 1));
        std::thread::sleep(pause.min(self.deadline - now));
        self.next = (self.next * 2).min(BACKOFF_MAX);
        true
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A number unique within this process and unlikely to repeat across processes.
pub(crate) fn unique_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}

/// A name unique to this process and call: `<pid>-<nanos hex>-<n>`.
pub(crate) fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{nanos:x}-{n}", std::process::id())
}

/// First line of a pin file.
pub const PIN_MAGIC_LINE: &str = "rask-store pin 1";

/// Ids a running build is producing, kept from gc until the guard is
/// dropped (or [`PinGuard::release`]d), or the process dies.
#[derive(Debug)]
pub struct PinGuard<'s> {
    store: &'s Store,
    path: PathBuf,
    file: Option<File>,
    ids: Vec<ObjectId>,
}

/// Whether a pin's process is still running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinState {
    /// Its process holds the pin's lock: the ids must be kept.
    Live,
    /// Nobody holds the lock: its process is gone and the file is litter.
    Dead,
}

/// A pin file as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinFile {
    /// The pin file.
    pub path: PathBuf,
    /// The pid recorded in it, if readable.
    pub pid: Option<u32>,
    /// The pinned ids (for a dead pin, those that could be read).
    pub ids: Vec<ObjectId>,
    /// Live or dead.
    pub state: PinState,
}

fn pin_lines(ids: &[ObjectId]) -> String {
    let mut text = String::with_capacity(ids.len() * 65);
    for id in ids {
        text.push_str(&id.to_hex());
        text.push('\n');
    }
    text
}

/// Creates a pin of `ids`.
fn create_pin<'s>(store: &'s Store, ids: &[ObjectId]) -> Result<PinGuard<'s>> {
    let layout = store.layout();
    let _writing = store.writing()?;
    let mut temp = publish::temp_file(layout.tmp_dir(), "pin-")?;
    temp.as_file().lock().at("lock", temp.path())?;
    let mut text = format!("{PIN_MAGIC_LINE}\npid {}\n", std::process::id());
    text.push_str(&pin_lines(ids));
    temp.write_all(text.as_bytes()).at("write", temp.path())?;
    let path = layout.pins_dir().join(unique_name());
    let file = publish::publish_and_keep(
        temp,
        &path,
        Access::Replaceable,
        Durability::None,
        &SyncQueue::default(),
    )?;
    Ok(PinGuard {
        store,
        path,
        file: Some(file),
        ids: ids.to_vec(),
    })
}

impl PinGuard<'_> {
    /// Adds ids to the pin, e.g. each object as the build produces it.
    ///
    /// # Errors
    /// [`Error::Io`] when the pin file cannot be written.
    pub fn add(&mut self, ids: &[ObjectId]) -> Result<()> {
        let _writing = self.store.writing()?;
        if let Some(file) = &mut self.file {
            file.seek(SeekFrom::End(0)).at("seek in", &self.path)?;
            file.write_all(pin_lines(ids).as_bytes())
                .at("append to pin", &self.path)?;
        }
        self.ids.extend_from_slice(ids);
        Ok(())
    }

    /// The pinned ids.
    pub fn ids(&self) -> &[ObjectId] {
        &self.ids
    }

    /// The pin file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the pin now, reporting a failure to remove it.
    ///
    /// # Errors
    /// [`Error::Io`] when the pin file cannot be removed (it is then left
    /// dead, which gc treats as litter).
    pub fn release(mut self) -> Result<()> {
        self.remove()
    }

    fn remove(&mut self) -> Result<()> {
        if let Some(file) = self.file.take() {
            let result = fs::remove_file(&self.path).at("remove pin", &self.path);
            drop(file);
            return result;
        }
        Ok(())
    }
}

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

impl Store {
    /// Pins `ids` until the returned guard is dropped or this process ends:
    /// gc keeps them (and what they reach) meanwhile. A build pins what it
    /// produces, adds to the pin as it goes ([`PinGuard::add`]), and drops
    /// the pin once its refs are published.
    ///
    /// # Errors
    /// [`Error::Io`] when the pin file cannot be written.
    pub fn pin(&self, ids: &[ObjectId]) -> Result<PinGuard<'_>> {
        create_pin(self, ids)
    }

    /// Every pin file, live or dead, sorted by path.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a live pin that cannot be parsed (gc must not
    /// guess what a running build needs); [`Error::Io`] when `pins/` cannot
    /// be read.
    pub fn pins(&self) -> Result<Vec<PinFile>> {
        list_pins(self.layout())
    }

    /// The pins of running processes: the roots gc must keep.
    ///
    /// # Errors
    /// As [`Store::pins`].
    pub fn live_pins(&self) -> Result<Vec<PinFile>> {
        let mut pins = self.pins()?;
        pins.retain(|pin| pin.state == PinState::Live);
        Ok(pins)
    }

    /// Removes the pin files of processes that are gone; returns their paths.
    ///
    /// # Errors
    /// [`Error::Io`] when `pins/` cannot be listed or a file removed.
    pub fn remove_dead_pins(&self) -> Result<Vec<PathBuf>> {
        remove_dead_pins(self.layout())
    }
}

/// Every pin file under `pins/`, live or dead.
fn list_pins(layout: &Layout) -> Result<Vec<PinFile>> {
    let dir = layout.pins_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &dir, e)),
    };
    let mut pins = Vec::new();
    for entry in entries {
        let entry = entry.at("list", &dir)?;
        let path = entry.path();
        let mut file = match File::open(&path) {
            Ok(file) => file,
            // Released while we listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open pin", &path, e)),
        };
        let state = match file.try_lock_shared() {
            Ok(()) => PinState::Dead,
            Err(TryLockError::WouldBlock) => PinState::Live,
            // Cannot tell: keep what it pins.
            Err(TryLockError::Error(_)) => PinState::Live,
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).at("read pin", &path)?;
        match parse_pin(&bytes) {
            Ok((pid, ids)) => pins.push(PinFile {
                path,
                pid,
                ids,
                state,
            }),
            Err(reason) if state == PinState::Live => {
                return Err(Error::corrupt("pin", &path, reason));
            }
            Err(_) => {
                let (pid, ids) = parse_pin_leniently(&bytes);
                pins.push(PinFile {
                    path,
                    pid,
                    ids,
                    state,
                });
            }
        }
    }
    pins.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(pins)
}

/// Parses a pin file. A last line without its newline is an append in
/// progress (or a dead writer's) and is skipped.
fn parse_pin(bytes: &[u8]) -> std::result::Result<(Option<u32>, Vec<ObjectId>), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => return Err("no complete line".into()),
    };
    let mut lines = complete.split('\n');
    if lines.next() != Some(PIN_MAGIC_LINE) {
        return Err(format!("first line is not `{PIN_MAGIC_LINE}`"));
    }
    let pid = lines
        .next()
        .and_then(|line| line.strip_prefix("pid "))
        .and_then(|pid| pid.parse::<u32>().ok())
        .ok_or_else(|| "second line is not `pid <number>`".to_string())?;
    let mut ids = Vec::new();
    for (n, line) in lines.enumerate() {
        let id = ObjectId::from_hex(line)
            .map_err(|_| format!("line {} is not a 64-hex-digit id", n + 3))?;
        ids.push(id);
    }
    Ok((Some(pid), ids))
}

fn parse_pin_leniently(bytes: &[u8]) -> (Option<u32>, Vec<ObjectId>) {
    let text = String::from_utf8_lossy(bytes);
    let pid = text
        .lines()
        .find_map(|line| line.strip_prefix("pid "))
        .and_then(|pid| pid.parse().ok());
    let ids = text
        .lines()
        .filter_map(|line| ObjectId::from_hex(line).ok())
        .collect();
    (pid, ids)
}

/// Removes pin files whose process is gone; returns their paths.
fn remove_dead_pins(layout: &Layout) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let dir = layout.pins_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io("list", &dir, e)),
    };
    for entry in entries {
        let path = entry.at("list", &dir)?.path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open pin", &path, e)),
        };
        // Exclusive, so that two removers cannot race; a live pin refuses it.
        if file.try_lock().is_ok() && still_at(&file, &path).at("check pin", &path)? {
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove dead pin", &path, e)),
            }
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_files_parse_and_torn_last_lines_are_skipped() {
        let id = ObjectId::from_bytes([7; 32]);
        let text = format!("{PIN_MAGIC_LINE}\npid 42\n{id}\n{}", &id.to_hex()[..10]);
        assert_eq!(parse_pin(text.as_bytes()).unwrap(), (Some(42), vec![id]));
        let bad = format!("{PIN_MAGIC_LINE}\npid 42\nnot-an-id\n");
        assert!(parse_pin(bad.as_bytes()).unwrap_err().contains("line 3"));
        assert!(parse_pin(b"garbage\n").is_err());
    }

    #[test]
    fn a_lock_file_is_exclusive_and_a_dead_holders_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".x.lock");
        let TryCreate::Acquired(held) = HeldLockFile::try_create(&path, "pid 1\n").unwrap() else {
            panic!("first create must acquire");
        };
        // Same process, other open file: the flock is held, so it is busy.
        match HeldLockFile::try_create(&path, "pid 2\n").unwrap() {
            TryCreate::Busy => assert_eq!(describe_holder(&path), "held by pid 1"),
            other => panic!("expected busy, got {other:?}"),
        }
        held.release().unwrap();
        assert!(!path.exists(), "releasing removes the lock file");
        // A lock file nobody holds a flock on: its holder is dead.
        let other = dir.path().join(".y.lock");
        fs::write(&other, "pid 99999999\n").unwrap();
        match HeldLockFile::try_create(&other, "pid 3\n").unwrap() {
            TryCreate::Stale(stale) => {
                assert_eq!(stale.content(), "pid 99999999\n");
                stale.remove().unwrap();
            }
            other => panic!("expected stale, got {other:?}"),
        }
        assert!(matches!(
            HeldLockFile::try_create(&other, "pid 3\n").unwrap(),
            TryCreate::Acquired(_)
        ));
    }
}
