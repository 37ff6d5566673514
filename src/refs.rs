//! Per-package refs, their reflogs, and all-or-nothing transactions over
//! several refs.
//!
//! ```
//! use rask_store::{Error, Expect, Kind, Namespace, PackageName, RefUpdate, Store, StoreOptions};
//!
//! # fn main() -> Result<(), Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::create(dir.path(), StoreOptions::default())?;
//! let ns = Namespace::new("rask-0.4.2+release")?;
//! let (std_pkg, app) = (PackageName::new("std")?, PackageName::new("app")?);
//! let std_root = store.put_object(Kind::Root, &[], b"std metadata")?;
//! let app_root = store.put_object(Kind::Root, &[std_root], b"app metadata")?;
//!
//! // A build publishes all its packages at once, or none of them.
//! store.update_refs(
//!     &[
//!         RefUpdate::set(ns.clone(), std_pkg.clone(), Expect::Absent, std_root),
//!         RefUpdate::set(ns.clone(), app.clone(), Expect::Absent, app_root),
//!     ],
//!     "build 1",
//! )?;
//!
//! // A second writer that expected the old state loses, and learns the new one.
//! let err = store.update_ref(&ns, &app, Expect::Absent, std_root, "stale build").unwrap_err();
//! assert!(matches!(err, Error::Conflict { .. }));
//! assert_eq!(store.read_ref(&ns, &app)?, Some(app_root));
//! assert_eq!(store.reflog(&ns, &app)?.entries.len(), 1);
//! # Ok(()) }
//! ```
//!
//! # Files
//!
//! - `refs/<ns>/<pkg>`: the id of the package's current metadata root, as
//!   64 lowercase hex digits and `\n` (exactly 65 bytes). Anything else is
//!   [`Error::Corrupt`]. Replaced only by publishing a temp file (rename);
//!   deleted by unlinking.
//! - `refs/<ns>/.<pkg>.lock`: held while the ref is changed (see
//!   [`crate::lock`] for how it is created, held and recovered). Content:
//!   `rask-store ref lock 1\npid <pid>\ntxn <name or ->\n`.
//! - `logs/<ns>/<pkg>`: the reflog, one line per update, appended:
//!
//!   ```text
//!   <old: 64 hex> <new: 64 hex> <unix seconds> <check: 8 hex> <message>\n
//!   ```
//!
//!   An absent ref (before creation, after deletion) is written as 64 zeros.
//!   `check` is the first 4 bytes of BLAKE3 over the line's other fields
//!   joined as `<old> <new> <time> <message>`, in hex, so a torn or damaged
//!   line is detected. Messages have control characters replaced by spaces
//!   and are cut to [`MAX_MESSAGE_LEN`] bytes. An append that finds the file
//!   not ending in `\n` (a torn earlier append) starts with a `\n`, so the
//!   torn line stays one damaged line and does not swallow the new one.
//! - `locks/txn/<name>`: the record of a multi-ref transaction in flight:
//!
//!   ```text
//!   rask-store ref transaction 1
//!   pid <pid>
//!   time <unix seconds>
//!   message <message>
//!   update <ns> <pkg> <old: 64 hex or zeros> <new: 64 hex or zeros>   (one per ref, sorted)
//!   check <16 hex: first 8 bytes of BLAKE3 over every preceding byte>
//!   ```
//!
//! # Update protocol (one ref or several)
//!
//! 1. Take the shared writers lock ([`crate::lock`]).
//! 2. Take every ref's lock file, in sorted `(namespace, package)` order, so
//!    two transactions cannot deadlock; a lock held by a live process is
//!    retried with backoff for up to [`REF_LOCK_TIMEOUT`], then
//!    [`Error::Locked`].
//! 3. Read every ref and check every expectation. One failure: release
//!    everything, change nothing, return [`Error::Conflict`].
//! 4. (Several refs only.) Publish the transaction record, holding a
//!    `File::lock` on it. From here on the transaction is decided.
//! 5. For each ref, in order: append the reflog line, then publish (or
//!    delete) the ref.
//! 6. Remove the record, then the lock files.
//!
//! # Crashes
//!
//! A single-ref update is atomic (one rename or unlink); a crash leaves the
//! old or the new value, and possibly a reflog line for an update that did
//! not happen (the line is written first), which is recognisable because
//! the ref does not hold that line's new value.
//!
//! A transaction killed during step 5 leaves some refs new and some old,
//! their lock files (naming the transaction) and the record. Readers see the
//! mix until recovery; writers do not: the next writer that meets one of
//! those lock files finds it stale, sees that it names a recorded
//! transaction, and **rolls the transaction forward** (sets every ref that
//! still holds its recorded old value to its new value, with a reflog line)
//! before going on. [`crate::Store::recover_ref_transactions`] does the same
//! for every record, for verify. A transaction killed before step 4 changed
//! nothing; its lock files are simply stale.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};
use crate::id::{ID_HEX_LEN, ObjectId};
use crate::layout::Layout;
use crate::lock::{
    Backoff, HeldLockFile, StaleLockFile, TryCreate, describe_holder, still_at, unique_name,
};
use crate::name::{Namespace, PackageName};
use crate::publish::{self, Access, Durability};
use crate::store::Store;

/// How long an update waits for a ref lock held by a live process.
pub const REF_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest reflog message, in bytes; longer ones are cut.
pub const MAX_MESSAGE_LEN: usize = 1000;
/// How an absent ref is written in reflog lines and transaction records.
pub const ABSENT_HEX: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const LOCK_MAGIC_LINE: &str = "rask-store ref lock 1";
const TXN_MAGIC_LINE: &str = "rask-store ref transaction 1";
const REFLOG_CHECK_LEN: usize = 4;
const TXN_CHECK_LEN: usize = 8;

/// What a compare-and-swap expects the ref to hold before it changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this id.
    Value(ObjectId),
    /// No ref at all.
    Absent,
    /// Anything, including no ref (an unconditional update).
    Any,
}

impl Expect {
    fn allows(self, current: Option<ObjectId>) -> bool {
        match self {
            Expect::Value(id) => current == Some(id),
            Expect::Absent => current.is_none(),
            Expect::Any => true,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Value(id) => write!(f, "{id}"),
            Expect::Absent => f.write_str("absent"),
            Expect::Any => f.write_str("any value"),
        }
    }
}

fn show_value(value: Option<ObjectId>) -> String {
    value.map_or_else(|| "absent".to_string(), |id| id.to_hex())
}

/// One ref change inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefUpdate {
    /// The ref's namespace.
    pub namespace: Namespace,
    /// The ref's package.
    pub package: PackageName,
    /// What the ref must hold for the transaction to go ahead.
    pub expect: Expect,
    /// The new value; `None` deletes the ref.
    pub new: Option<ObjectId>,
}

impl RefUpdate {
    /// Sets `namespace/package` to `new` if it holds what `expect` says.
    pub fn set(namespace: Namespace, package: PackageName, expect: Expect, new: ObjectId) -> Self {
        RefUpdate {
            namespace,
            package,
            expect,
            new: Some(new),
        }
    }

    /// Deletes `namespace/package` if it holds what `expect` says.
    pub fn delete(namespace: Namespace, package: PackageName, expect: Expect) -> Self {
        RefUpdate {
            namespace,
            package,
            expect,
            new: None,
        }
    }

    fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.package)
    }
}

/// One line of a reflog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReflogEntry {
    /// The value before the update (`None`: the ref did not exist).
    pub old: Option<ObjectId>,
    /// The value after it (`None`: the ref was deleted).
    pub new: Option<ObjectId>,
    /// When, in seconds since the Unix epoch.
    pub time: u64,
    /// Why.
    pub message: String,
}

/// A reflog line that failed its check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedLine {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// A ref's reflog, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reflog {
    /// The reflog file.
    pub path: PathBuf,
    /// The lines that passed their checks.
    pub entries: Vec<ReflogEntry>,
    /// The lines that did not (torn appends, damage), in file order.
    pub damaged: Vec<DamagedLine>,
}

/// What recovering one transaction record did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredTransaction {
    /// The record.
    pub path: PathBuf,
    /// Refs set to their recorded new value.
    pub completed: Vec<String>,
    /// Refs that hold neither the recorded old nor new value (changed since
    /// by someone else), left as they are.
    pub skipped: Vec<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn clean_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_LEN));
    for c in message.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_MESSAGE_LEN {
            break;
        }
        out.push(c);
    }
    out
}

fn hex_or_zeros(value: Option<ObjectId>) -> String {
    value.map_or_else(|| ABSENT_HEX.to_string(), |id| id.to_hex())
}

fn parse_hex_or_zeros(text: &str) -> Option<Option<ObjectId>> {
    if text == ABSENT_HEX {
        return Some(None);
    }
    if text.len() != ID_HEX_LEN || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    ObjectId::from_hex(text).ok().map(Some)
}

fn reflog_check(old: &str, new: &str, time: u64, message: &str) -> String {
    let hash = blake3::hash(format!("{old} {new} {time} {message}").as_bytes());
    hex::encode(&hash.as_bytes()[..REFLOG_CHECK_LEN])
}

/// The text of one reflog line, `\n` included.
pub fn reflog_line(entry: &ReflogEntry) -> String {
    let old = hex_or_zeros(entry.old);
    let new = hex_or_zeros(entry.new);
    let message = clean_message(&entry.message);
    let check = reflog_check(&old, &new, entry.time, &message);
    format!("{old} {new} {} {check} {message}\n", entry.time)
}

/// Parses one reflog line (without its `\n`).
///
/// # Errors
/// A reason, when the line is malformed or fails its check.
pub fn parse_reflog_line(line: &str) -> std::result::Result<ReflogEntry, String> {
    let mut fields = line.splitn(5, ' ');
    let (Some(old), Some(new), Some(time), Some(check), Some(message)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err("fewer than five fields".into());
    };
    let old_id = parse_hex_or_zeros(old).ok_or("old value is not 64 lowercase hex digits")?;
    let new_id = parse_hex_or_zeros(new).ok_or("new value is not 64 lowercase hex digits")?;
    if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) {
        return Err("time is not a decimal number".into());
    }
    let time_value: u64 = time.parse().map_err(|_| "time is out of range")?;
    if check != reflog_check(old, new, time_value, message) {
        return Err("checksum does not match (torn or damaged line)".into());
    }
    Ok(ReflogEntry {
        old: old_id,
        new: new_id,
        time: time_value,
        message: message.to_string(),
    })
}

/// Parses a whole reflog file's bytes.
pub fn parse_reflog(path: &Path, bytes: &[u8]) -> Reflog {
    let mut entries = Vec::new();
    let mut damaged = Vec::new();
    let text = String::from_utf8_lossy(bytes);
    let mut pieces: Vec<&str> = text.split('\n').collect();
    // Text ending in '\n' splits into a last empty piece; anything else is torn.
    let last = pieces.pop().unwrap_or("");
    for (n, line) in pieces.iter().enumerate() {
        match parse_reflog_line(line) {
            Ok(entry) => entries.push(entry),
            Err(reason) => damaged.push(DamagedLine {
                line: n + 1,
                reason,
            }),
        }
    }
    if !last.is_empty() {
        damaged.push(DamagedLine {
            line: pieces.len() + 1,
            reason: "no newline at the end: a torn append".into(),
        });
    }
    Reflog {
        path: path.to_path_buf(),
        entries,
        damaged,
    }
}

/// Reads a ref file: `None` when it does not exist.
fn read_ref_file(path: &Path, name: &str) -> Result<Option<ObjectId>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read ref", path, e)),
    };
    parse_ref(&bytes)
        .map(Some)
        .map_err(|reason| Error::corrupt(format_args!("ref {name}"), path, reason))
}

fn parse_ref(bytes: &[u8]) -> std::result::Result<ObjectId, String> {
    let Some((last, hex)) = bytes.split_last() else {
        return Err("empty file".into());
    };
    if *last != b'\n' || hex.len() != ID_HEX_LEN {
        return Err(format!(
            "expected 64 hex digits and a newline (65 bytes), found {} bytes",
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(hex).map_err(|_| "not hex digits".to_string())?;
    match parse_hex_or_zeros(text) {
        Some(Some(id)) => Ok(id),
        _ => Err("not 64 lowercase hex digits of an id".into()),
    }
}

/// What an attempt to recover a transaction found.
enum Recovery {
    /// Its owner was dead; it is complete now.
    Done(RecoveredTransaction),
    /// The record is gone: finished by its owner or another recoverer.
    Gone,
    /// Its owner is alive, or another process is recovering it.
    Busy,
}

/// What ref updates need from the store.
struct RefContext<'a> {
    layout: &'a Layout,
    store: &'a Store,
}

/// The lock file content for a ref locked by this process.
pub(crate) fn lock_content(txn: Option<&str>) -> String {
    format!(
        "{LOCK_MAGIC_LINE}\npid {}\ntxn {}\n",
        std::process::id(),
        txn.unwrap_or("-")
    )
}

/// The transaction a (stale) lock file names, if any.
fn txn_of(lock_content: &str) -> Option<&str> {
    lock_content
        .lines()
        .find_map(|line| line.strip_prefix("txn "))
        .map(str::trim)
        .filter(|name| *name != "-" && is_txn_name(name))
}

/// Transaction names are `<pid>-<hex>-<n>`: never a path of their own.
fn is_txn_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

impl RefContext<'_> {
    /// Takes a ref's lock, recovering stale locks (and the transactions they
    /// name) on the way.
    fn lock_ref(
        &self,
        ns: &Namespace,
        pkg: &PackageName,
        content: &str,
        backoff: &mut Backoff,
    ) -> Result<HeldLockFile> {
        let path = self.layout.ref_lock_path(ns, pkg);
        loop {
            match HeldLockFile::try_create(&path, content)? {
                TryCreate::Acquired(held) => return Ok(held),
                TryCreate::Retry => {}
                TryCreate::Stale(stale) => self.clear_stale(stale, backoff)?,
                TryCreate::Busy => {
                    if !backoff.sleep() {
                        let holder = describe_holder(&path);
                        return Err(Error::Locked { path, holder });
                    }
                }
            }
        }
    }

    /// Removes a stale ref lock, or rolls its transaction forward.
    fn clear_stale(&self, stale: StaleLockFile, backoff: &mut Backoff) -> Result<()> {
        let Some(txn) = txn_of(stale.content()).map(str::to_string) else {
            return stale.remove();
        };
        let record = self.layout.txn_dir().join(&txn);
        if !record.exists() {
            // The transaction finished (or never decided): nothing to redo.
            return stale.remove();
        }
        // Let go of the lock so the recovery can take it over.
        drop(stale);
        match self.recover(&txn)? {
            Recovery::Done(_) | Recovery::Gone => Ok(()),
            // Another process is completing it; the caller's next attempt will see.
            Recovery::Busy if backoff.sleep() => Ok(()),
            Recovery::Busy => Err(Error::Locked {
                path: record,
                holder: "a transaction another process is completing".into(),
            }),
        }
    }

    /// Rolls the recorded transaction `txn` forward, if its owner is dead.
    fn recover(&self, txn: &str) -> Result<Recovery> {
        let path = self.layout.txn_dir().join(txn);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Recovery::Gone),
            Err(e) => return Err(Error::io("open transaction record", &path, e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(Recovery::Busy),
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::io("lock transaction record", &path, e));
            }
        }
        if !still_at(&file, &path).at("check transaction record", &path)? {
            // Completed and removed by another process while we opened it.
            return Ok(Recovery::Gone);
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .at("read transaction record", &path)?;
        let record = parse_txn_record(&bytes)
            .map_err(|reason| Error::corrupt("ref transaction record", &path, reason))?;
        // Take every lock the dead transaction held (or a fresh one).
        let mut locks = Vec::with_capacity(record.updates.len());
        let mut backoff = Backoff::new(REF_LOCK_TIMEOUT);
        for (ns, pkg, _, _) in &record.updates {
            let lock_path = self.layout.ref_lock_path(ns, pkg);
            loop {
                match HeldLockFile::try_create(&lock_path, &lock_content(Some(txn)))? {
                    TryCreate::Acquired(held) => {
                        locks.push(held);
                        break;
                    }
                    TryCreate::Retry => {}
                    TryCreate::Stale(stale) => {
                        if txn_of(stale.content()) == Some(txn) {
                            locks.push(stale.take_over());
                            break;
                        }
                        self.clear_stale(stale, &mut backoff)?;
                    }
                    TryCreate::Busy => {
                        if !backoff.sleep() {
                            let holder = describe_holder(&lock_path);
                            return Err(Error::Locked {
                                path: lock_path,
                                holder,
                            });
                        }
                    }
                }
            }
        }
        let mut completed = Vec::new();
        let mut skipped = Vec::new();
        let message = format!("{} (completed after its writer died)", record.message);
        for (ns, pkg, old, new) in &record.updates {
            let name = format!("{ns}/{pkg}");
            let current = match read_ref_file(&self.layout.ref_path(ns, pkg), &name) {
                Ok(current) => current,
                // Damaged since: not the recorded old value; verify reports it.
                Err(Error::Corrupt { .. }) => {
                    skipped.push(name);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if current == *new {
                continue;
            }
            if current == *old {
                self.apply(ns, pkg, *old, *new, &message)?;
                completed.push(name);
            } else {
                skipped.push(name);
            }
        }
        self.store.flush()?;
        fs::remove_file(&path).at("remove transaction record", &path)?;
        drop(file);
        for lock in locks {
            lock.release()?;
        }
        Ok(Recovery::Done(RecoveredTransaction {
            path,
            completed,
            skipped,
        }))
    }

    /// Appends the reflog line, then publishes or deletes the ref. The
    /// caller holds the ref's lock.
    fn apply(
        &self,
        ns: &Namespace,
        pkg: &PackageName,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        message: &str,
    ) -> Result<()> {
        let durability = self.store.options().durability;
        let entry = ReflogEntry {
            old,
            new,
            time: now_secs(),
            message: message.to_string(),
        };
        append_reflog(
            &self.layout.reflog_path(ns, pkg),
            &reflog_line(&entry),
            durability,
        )?;
        crate::fault::Point::RefReflogWritten.reached();
        let path = self.layout.ref_path(ns, pkg);
        match new {
            Some(id) => {
                let mut temp = publish::temp_file(self.layout.tmp_dir(), "ref-")?;
                temp.write_all(format!("{id}\n").as_bytes())
                    .at("write", temp.path())?;
                publish::publish(
                    temp,
                    &path,
                    Access::Replaceable,
                    durability,
                    self.store.sync_queue(),
                )
            }
            None => {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("delete ref", &path, e)),
                }
                if durability == Durability::Full {
                    publish::sync_dir(path.parent().unwrap_or(&path))?;
                }
                Ok(())
            }
        }
    }

    /// The whole update protocol (module docs, steps 2–6). The caller holds
    /// the shared writers lock.
    fn transact(&self, updates: &[RefUpdate], message: &str) -> Result<Vec<Option<ObjectId>>> {
        let mut order: Vec<usize> = (0..updates.len()).collect();
        order.sort_by(|&a, &b| {
            (&updates[a].namespace, &updates[a].package)
                .cmp(&(&updates[b].namespace, &updates[b].package))
        });
        for pair in order.windows(2) {
            if let [a, b] = pair
                && updates[*a].namespace == updates[*b].namespace
                && updates[*a].package == updates[*b].package
            {
                return Err(Error::InvalidRequest {
                    reason: format!(
                        "ref {} appears twice in one transaction",
                        updates[*a].name()
                    ),
                });
            }
        }
        // Whatever the refs will point to is made durable before they do;
        // done before locking, so the refs stay locked only briefly.
        self.store.flush()?;
        let txn = (updates.len() > 1).then(unique_name);
        let content = lock_content(txn.as_deref());
        let mut backoff = Backoff::new(REF_LOCK_TIMEOUT);
        let mut locks = Vec::with_capacity(updates.len());
        for &i in &order {
            let update = &updates[i];
            locks.push(self.lock_ref(
                &update.namespace,
                &update.package,
                &content,
                &mut backoff,
            )?);
        }
        let mut olds = vec![None; updates.len()];
        let mut damaged = vec![false; updates.len()];
        for &i in &order {
            let update = &updates[i];
            let path = self.layout.ref_path(&update.namespace, &update.package);
            let current = match read_ref_file(&path, &update.name()) {
                // An unconditional update may replace a damaged ref; its
                // reflog line records the old value as absent.
                Err(Error::Corrupt { .. }) if update.expect == Expect::Any => {
                    damaged[i] = true;
                    None
                }
                other => other?,
            };
            if !update.expect.allows(current) {
                return Err(Error::Conflict {
                    reference: update.name(),
                    expected: update.expect.to_string(),
                    current: show_value(current),
                });
            }
            olds[i] = current;
        }
        let message = clean_message(message);
        let record = match &txn {
            Some(name) => Some(self.write_record(name, updates, &order, &olds, &message)?),
            None => None,
        };
        for &i in &order {
            let update = &updates[i];
            if olds[i].is_none() && update.new.is_none() && !damaged[i] {
                // Deleting what is not there: nothing to do or to log.
                continue;
            }
            let note = if damaged[i] {
                format!("{message} (replaced a corrupt ref)")
            } else {
                message.clone()
            };
            self.apply(
                &update.namespace,
                &update.package,
                olds[i],
                update.new,
                &note,
            )?;
            crate::fault::Point::TxnRefApplied.reached();
        }
        if let Some((path, file)) = record {
            fs::remove_file(&path).at("remove transaction record", &path)?;
            drop(file);
        }
        for lock in locks {
            lock.release()?;
        }
        Ok(olds)
    }

    /// Publishes the transaction record, locked, and returns it still held.
    fn write_record(
        &self,
        name: &str,
        updates: &[RefUpdate],
        order: &[usize],
        olds: &[Option<ObjectId>],
        message: &str,
    ) -> Result<(PathBuf, File)> {
        let mut text = format!(
            "{TXN_MAGIC_LINE}\npid {}\ntime {}\nmessage {message}\n",
            std::process::id(),
            now_secs()
        );
        for &i in order {
            let update = &updates[i];
            text.push_str(&format!(
                "update {} {} {} {}\n",
                update.namespace,
                update.package,
                hex_or_zeros(olds[i]),
                hex_or_zeros(update.new)
            ));
        }
        let check = blake3::hash(text.as_bytes());
        text.push_str(&format!(
            "check {}\n",
            hex::encode(&check.as_bytes()[..TXN_CHECK_LEN])
        ));
        let mut temp = publish::temp_file(self.layout.tmp_dir(), "txn-")?;
        temp.as_file().lock().at("lock", temp.path())?;
        temp.write_all(text.as_bytes()).at("write", temp.path())?;
        let path = self.layout.txn_dir().join(name);
        let durability = match self.store.options().durability {
            Durability::Full => Durability::Full,
            _ => Durability::None,
        };
        let file = publish::publish_and_keep(
            temp,
            &path,
            Access::Replaceable,
            durability,
            self.store.sync_queue(),
        )?;
        Ok((path, file))
    }
}

/// A parsed transaction record.
struct TxnRecord {
    message: String,
    #[allow(clippy::type_complexity)]
    updates: Vec<(Namespace, PackageName, Option<ObjectId>, Option<ObjectId>)>,
}

fn parse_txn_record(bytes: &[u8]) -> std::result::Result<TxnRecord, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let body_end = text
        .rfind("check ")
        .ok_or_else(|| "no `check` line".to_string())?;
    let (body, check_line) = text.split_at(body_end);
    let expected = blake3::hash(body.as_bytes());
    if check_line.trim_end()
        != format!(
            "check {}",
            hex::encode(&expected.as_bytes()[..TXN_CHECK_LEN])
        )
    {
        return Err("checksum does not match".into());
    }
    let mut lines = body.lines();
    if lines.next() != Some(TXN_MAGIC_LINE) {
        return Err(format!("first line is not `{TXN_MAGIC_LINE}`"));
    }
    let mut message = String::new();
    let mut updates = Vec::new();
    for line in lines {
        if let Some(m) = line.strip_prefix("message ") {
            message = m.to_string();
        } else if let Some(rest) = line.strip_prefix("update ") {
            let fields: Vec<&str> = rest.split(' ').collect();
            let [ns, pkg, old, new] = fields.as_slice() else {
                return Err(format!("malformed update line {line:?}"));
            };
            let ns = Namespace::new(*ns).map_err(|e| e.to_string())?;
            let pkg = PackageName::new(*pkg).map_err(|e| e.to_string())?;
            let old = parse_hex_or_zeros(old).ok_or("bad old value")?;
            let new = parse_hex_or_zeros(new).ok_or("bad new value")?;
            updates.push((ns, pkg, old, new));
        }
    }
    Ok(TxnRecord { message, updates })
}

/// Appends one line to a reflog, repairing a torn end first (module docs).
fn append_reflog(path: &Path, line: &str, durability: Durability) -> Result<()> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
    };
    let mut file = match open() {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = path.parent().unwrap_or(path);
            fs::create_dir_all(dir).at("create directory", dir)?;
            open().at("open reflog", path)?
        }
        Err(e) => return Err(Error::io("open reflog", path, e)),
    };
    let len = file.metadata().at("read metadata of", path)?.len();
    let mut record = String::with_capacity(line.len() + 1);
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1)).at("seek in", path)?;
        file.read_exact(&mut last).at("read reflog", path)?;
        if last[0] != b'\n' {
            record.push('\n');
        }
    }
    record.push_str(line);
    file.write_all(record.as_bytes())
        .at("append to reflog", path)?;
    if durability == Durability::Full {
        file.sync_data().at("sync", path)?;
    }
    Ok(())
}

impl Store {
    fn refs(&self) -> RefContext<'_> {
        RefContext {
            layout: self.layout(),
            store: self,
        }
    }

    /// The value of a ref: `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the ref file is not an id;
    /// [`Error::Io`] when it cannot be read.
    pub fn read_ref(&self, ns: &Namespace, pkg: &PackageName) -> Result<Option<ObjectId>> {
        read_ref_file(&self.layout().ref_path(ns, pkg), &format!("{ns}/{pkg}"))
    }

    /// Sets a ref to `new` if it holds what `expect` says, logging `message`;
    /// returns the value it replaced.
    ///
    /// # Errors
    /// [`Error::Conflict`] naming the current value when the expectation
    /// fails (nothing changed); [`Error::Locked`] when another live process
    /// held the ref's lock for [`REF_LOCK_TIMEOUT`]; [`Error::Io`].
    ///
    /// # Concurrency
    /// Safe from any number of processes at once: exactly one of several
    /// racing updates with the same expectation wins.
    pub fn update_ref(
        &self,
        ns: &Namespace,
        pkg: &PackageName,
        expect: Expect,
        new: ObjectId,
        message: &str,
    ) -> Result<Option<ObjectId>> {
        let update = RefUpdate::set(ns.clone(), pkg.clone(), expect, new);
        let olds = self.update_refs(std::slice::from_ref(&update), message)?;
        Ok(olds.into_iter().next().flatten())
    }

    /// Deletes a ref if it holds what `expect` says (a compare-and-swap to
    /// absent), logging `message`; returns the value it had.
    ///
    /// # Errors
    /// As [`Store::update_ref`].
    pub fn delete_ref(
        &self,
        ns: &Namespace,
        pkg: &PackageName,
        expect: Expect,
        message: &str,
    ) -> Result<Option<ObjectId>> {
        let update = RefUpdate::delete(ns.clone(), pkg.clone(), expect);
        let olds = self.update_refs(std::slice::from_ref(&update), message)?;
        Ok(olds.into_iter().next().flatten())
    }

    /// Applies several ref updates all-or-nothing: if any expectation fails,
    /// none is applied. Returns each ref's previous value, in input order.
    ///
    /// See the module docs for what a crash in the middle leaves and how it
    /// is completed.
    ///
    /// # Errors
    /// [`Error::Conflict`] for the first failed expectation (in sorted ref
    /// order), with nothing changed; [`Error::InvalidRequest`] when a ref
    /// appears twice; [`Error::Locked`]; [`Error::Io`].
    pub fn update_refs(
        &self,
        updates: &[RefUpdate],
        message: &str,
    ) -> Result<Vec<Option<ObjectId>>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let _writing = self.writing()?;
        self.refs().transact(updates, message)
    }

    /// Every ref of a namespace, sorted by package name.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a ref file that is not an id; [`Error::Io`].
    pub fn list_refs(&self, ns: &Namespace) -> Result<Vec<(PackageName, ObjectId)>> {
        let dir = self.layout().ref_namespace_dir(ns);
        let mut refs = Vec::new();
        for pkg in list_names(&dir, |name| PackageName::new(name).ok(), FileType::File)? {
            if let Some(id) = self.read_ref(ns, &pkg)? {
                refs.push((pkg, id));
            }
        }
        Ok(refs)
    }

    /// Every namespace that has a refs directory, sorted.
    ///
    /// # Errors
    /// [`Error::Io`] when `refs/` cannot be listed.
    pub fn list_namespaces(&self) -> Result<Vec<Namespace>> {
        list_names(
            &self.layout().refs_dir(),
            |name| Namespace::new(name).ok(),
            FileType::Dir,
        )
    }

    /// A ref's reflog, oldest first, with any damaged lines reported apart.
    /// A ref that was never updated has an empty reflog.
    ///
    /// # Errors
    /// [`Error::Io`] when the reflog exists but cannot be read.
    pub fn reflog(&self, ns: &Namespace, pkg: &PackageName) -> Result<Reflog> {
        let path = self.layout().reflog_path(ns, pkg);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("read reflog", &path, e)),
        };
        Ok(parse_reflog(&path, &bytes))
    }

    /// Completes every multi-ref transaction whose writer died midway (see
    /// the module docs); transactions still running are left alone.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a record that fails its check; [`Error::Locked`];
    /// [`Error::Io`].
    pub fn recover_ref_transactions(&self) -> Result<Vec<RecoveredTransaction>> {
        let dir = self.layout().txn_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry.at("list", &dir)?.file_name();
            if let Some(name) = name.to_str().filter(|n| is_txn_name(n)) {
                names.push(name.to_string());
            }
        }
        names.sort();
        let _writing = self.writing()?;
        let refs = self.refs();
        let mut recovered = Vec::new();
        for name in names {
            if let Recovery::Done(done) = refs.recover(&name)? {
                recovered.push(done);
            }
        }
        Ok(recovered)
    }
}

impl Store {
    /// The ids gc must keep on account of refs: every ref's value in every
    /// namespace, both ids of every reflog entry newer than `reflog_keep`,
    /// and every id named by a transaction record still on disk (a dead
    /// transaction's new values are what its roll-forward will publish).
    /// Sorted, without duplicates. Live pins are [`Store::live_pins`].
    ///
    /// Call it under the exclusive writers/gc lock
    /// ([`crate::lock::ExclusiveGuard`]): ref updates hold the shared lock
    /// from their first check to their last rename, so none is half-seen.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a ref that is not an id or a record that fails
    /// its check (gc must not guess); [`Error::Io`].
    pub fn ref_roots(&self, reflog_keep: Duration) -> Result<Vec<ObjectId>> {
        let cutoff = now_secs().saturating_sub(reflog_keep.as_secs());
        let mut roots = Vec::new();
        for ns in self.list_namespaces()? {
            for (_, id) in self.list_refs(&ns)? {
                roots.push(id);
            }
        }
        let logs = self.layout().root().join(crate::layout::LOGS_DIR);
        for ns in list_names(&logs, |n| Namespace::new(n).ok(), FileType::Dir)? {
            let dir = logs.join(ns.as_str());
            for pkg in list_names(&dir, |n| PackageName::new(n).ok(), FileType::File)? {
                for entry in self.reflog(&ns, &pkg)?.entries {
                    if entry.time >= cutoff {
                        roots.extend(entry.old);
                        roots.extend(entry.new);
                    }
                }
            }
        }
        let txn_dir = self.layout().txn_dir();
        let entries = match fs::read_dir(&txn_dir) {
            Ok(entries) => Some(entries),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("list", &txn_dir, e)),
        };
        for entry in entries.into_iter().flatten() {
            let path = entry.at("list", &txn_dir)?.path();
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                // Finished meanwhile: its values are in the refs now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read transaction record", &path, e)),
            };
            let record = parse_txn_record(&bytes)
                .map_err(|reason| Error::corrupt("ref transaction record", &path, reason))?;
            for (_, _, old, new) in record.updates {
                roots.extend(old);
                roots.extend(new);
            }
        }
        roots.sort_unstable();
        roots.dedup();
        Ok(roots)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FileType {
    File,
    Dir,
}

/// The entries of `dir` that are valid names of the wanted type, sorted.
fn list_names<T: Ord>(
    dir: &Path,
    parse: impl Fn(&str) -> Option<T>,
    want: FileType,
) -> Result<Vec<T>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.at("list", dir)?;
        let file_type = entry.file_type().at("read the type of", &entry.path())?;
        let matches = match want {
            FileType::File => file_type.is_file(),
            FileType::Dir => file_type.is_dir(),
        };
        if !matches {
            continue;
        }
        if let Some(name) = entry.file_name().to_str().and_then(&parse) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflog_lines_round_trip_and_damage_is_detected() {
        let entry = ReflogEntry {
            old: None,
            new: Some(ObjectId::from_bytes([1; 32])),
            time: 1_700_000_000,
            message: "build\nof std".into(),
        };
        let line = reflog_line(&entry);
        assert!(line.starts_with(ABSENT_HEX));
        assert!(line.ends_with(" build of std\n"), "{line}");
        let parsed = parse_reflog_line(line.trim_end_matches('\n')).unwrap();
        assert_eq!(parsed.message, "build of std");
        assert_eq!(parsed.new, entry.new);
        let flipped = line.replacen("1700", "1701", 1);
        assert!(
            parse_reflog_line(flipped.trim_end_matches('\n'))
                .unwrap_err()
                .contains("checksum")
        );
    }

    #[test]
    fn ref_files_must_be_exactly_an_id_and_a_newline() {
        let id = ObjectId::from_bytes([0xab; 32]);
        assert_eq!(parse_ref(format!("{id}\n").as_bytes()).unwrap(), id);
        assert!(parse_ref(format!("{id}").as_bytes()).is_err());
        assert!(parse_ref(format!("{id}\n\n").as_bytes()).is_err());
        assert!(parse_ref(format!("{}\n", id.to_hex().to_uppercase()).as_bytes()).is_err());
        assert!(parse_ref(b"").is_err());
    }

    #[test]
    fn messages_lose_control_characters_and_are_bounded() {
        assert_eq!(clean_message("a\tb\0c"), "a b c");
        assert_eq!(
            clean_message(&"é".repeat(MAX_MESSAGE_LEN)).len(),
            MAX_MESSAGE_LEN
        );
    }
}
