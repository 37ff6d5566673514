//! `verify`: find every kind of damage in a store, and optionally repair it.
//!
//! # What is checked
//! - the format stamp;
//! - every object file: re-hashed in full (on every core), header, length;
//! - every link: the object it names must exist;
//! - every file in a fanout directory must be named like an object.
//!
//! Every problem is collected with its kind and path; verify never stops at
//! the first.
//!
//! # Repair
//! Repair never deletes evidence: a damaged object or a stray file is moved
//! to `quarantine/` (named `<original name>.<unix nanos>`), and so is every
//! object whose links can no longer be followed to the end (its closure is
//! incomplete, so no build can use it), repeated until every remaining
//! object's closure is whole. After a repair the store verifies clean.
//!
//! # Concurrency
//! Safe beside writers and gc: files that vanish mid-walk are skipped, and a
//! link is reported dangling only if its target is still absent when checked
//! a second time. Each worker holds one file open at a time.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::stamp;
use crate::store::Store;
use crate::walk::{self, FanoutEntry};

/// Whether verify changes anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RepairMode {
    /// Only report.
    #[default]
    ReportOnly,
    /// Move damaged and unusable files to `quarantine/`.
    Repair,
}

/// How verify runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Report only, or repair too.
    pub repair: RepairMode,
    /// Worker threads for hashing; 0 means one per core.
    pub threads: usize,
}

/// The kinds of damage verify finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The format stamp is missing, unreadable or of another format.
    BadStamp,
    /// An object's bytes do not match its id.
    CorruptObject,
    /// An object file could not be read at all.
    UnreadableObject,
    /// An object links to an object that does not exist.
    DanglingLink,
    /// A file in a fanout directory that is not named like an object.
    StrayFile,
}

impl ProblemKind {
    /// A stable kebab-case name for output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::BadStamp => "bad-stamp",
            ProblemKind::CorruptObject => "corrupt-object",
            ProblemKind::UnreadableObject => "unreadable-object",
            ProblemKind::DanglingLink => "dangling-link",
            ProblemKind::StrayFile => "stray-file",
        }
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What kind of damage.
    pub kind: ProblemKind,
    /// The file concerned.
    pub path: PathBuf,
    /// What exactly is wrong.
    pub detail: String,
    /// What repair did about it, if anything.
    pub repaired: Option<String>,
}

/// What verify found (and repaired).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Object files checked.
    pub objects: u64,
    /// Bytes of object files hashed.
    pub bytes: u64,
    /// Every problem, sorted by kind then path.
    pub problems: Vec<Problem>,
    /// Worker threads used.
    pub threads: usize,
}

impl VerifyReport {
    /// True when nothing was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Problems that repair did not fix (all of them when not repairing).
    pub fn unrepaired(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.repaired.is_none())
    }
}

/// Progress of a long verify, reported after each fanout directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Fanout directories finished, out of 256.
    pub dirs_done: usize,
    /// Objects checked so far.
    pub objects: u64,
    /// Bytes hashed so far.
    pub bytes: u64,
}

#[derive(Default)]
struct WorkerResult {
    links: Vec<(ObjectId, ObjectId)>,
    present: Vec<ObjectId>,
    problems: Vec<(Problem, Option<ObjectId>)>,
}

/// Checks the whole store; with [`RepairMode::Repair`], quarantines what is
/// damaged or unusable.
///
/// `progress` is called from worker threads after each fanout directory.
///
/// # Errors
/// Only when verify cannot run at all (a fanout directory cannot be listed,
/// quarantine cannot be created); damage is reported in the [`VerifyReport`].
pub fn verify(
    store: &Store,
    options: VerifyOptions,
    progress: &(dyn Fn(VerifyProgress) + Sync),
) -> Result<VerifyReport> {
    let layout = store.layout();
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut report = VerifyReport {
        threads,
        ..VerifyReport::default()
    };
    let mut problems: Vec<(Problem, Option<ObjectId>)> = Vec::new();
    if let Err(e) = stamp::check(layout) {
        problems.push((
            problem(ProblemKind::BadStamp, layout.stamp(), e.to_string()),
            None,
        ));
    }

    let next_dir = AtomicUsize::new(0);
    let dirs_done = AtomicUsize::new(0);
    let objects = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let results: Vec<WorkerResult> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = WorkerResult::default();
                    loop {
                        let dir = next_dir.fetch_add(1, Ordering::Relaxed);
                        if dir > usize::from(u8::MAX) {
                            break;
                        }
                        let entries = match walk::fanout_entries(layout, dir as u8) {
                            Ok(entries) => entries,
                            Err(e) => {
                                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                break;
                            }
                        };
                        for entry in entries {
                            check_entry(store, entry, &mut out, &objects, &bytes);
                        }
                        let done = dirs_done.fetch_add(1, Ordering::Relaxed) + 1;
                        progress(VerifyProgress {
                            dirs_done: done,
                            objects: objects.load(Ordering::Relaxed),
                            bytes: bytes.load(Ordering::Relaxed),
                        });
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    report.objects = objects.into_inner();
    report.bytes = bytes.into_inner();

    let mut present: HashSet<ObjectId> = HashSet::new();
    let mut links: Vec<(ObjectId, ObjectId)> = Vec::new();
    for result in results {
        present.extend(result.present);
        links.extend(result.links);
        problems.extend(result.problems);
    }
    for &(from, to) in &links {
        if !present.contains(&to) && !store.contains_object(&to)? {
            let detail = format!("object {from} links to {to}, which does not exist");
            problems.push((
                problem(ProblemKind::DanglingLink, store.object_path(&from), detail),
                Some(from),
            ));
        }
    }

    if options.repair == RepairMode::Repair {
        repair(store, &mut problems, &present, &links)?;
    }
    problems.sort_by(|a, b| (a.0.kind, &a.0.path).cmp(&(b.0.kind, &b.0.path)));
    report.problems = problems.into_iter().map(|(p, _)| p).collect();
    Ok(report)
}

fn problem(kind: ProblemKind, path: PathBuf, detail: String) -> Problem {
    Problem {
        kind,
        path,
        detail,
        repaired: None,
    }
}

fn check_entry(
    store: &Store,
    entry: FanoutEntry,
    out: &mut WorkerResult,
    objects: &AtomicU64,
    bytes: &AtomicU64,
) {
    let id = match entry {
        FanoutEntry::Object(id) => id,
        FanoutEntry::Stray(path) => {
            let detail = "not named like an object (62 lowercase hex digits)".to_string();
            out.problems
                .push((problem(ProblemKind::StrayFile, path, detail), None));
            return;
        }
    };
    match store.object_info(&id) {
        Ok(info) => {
            objects.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(
                fs::metadata(&info.path).map_or(info.payload_len, |m| m.len()),
                Ordering::Relaxed,
            );
            out.links.extend(info.links.iter().map(|&to| (id, to)));
            out.present.push(id);
        }
        // Removed since the directory was listed (gc): nothing to check.
        Err(Error::NotFound { .. }) => {}
        Err(Error::Corrupt { path, reason, .. }) => {
            objects.fetch_add(1, Ordering::Relaxed);
            out.problems
                .push((problem(ProblemKind::CorruptObject, path, reason), Some(id)));
        }
        Err(e) => {
            out.problems.push((
                problem(
                    ProblemKind::UnreadableObject,
                    store.object_path(&id),
                    e.to_string(),
                ),
                Some(id),
            ));
        }
    }
}

/// Quarantines damaged files, then every object whose closure is incomplete.
fn repair(
    store: &Store,
    problems: &mut Vec<(Problem, Option<ObjectId>)>,
    present: &HashSet<ObjectId>,
    links: &[(ObjectId, ObjectId)],
) -> Result<()> {
    let quarantine = store.layout().quarantine_dir();
    fs::create_dir_all(&quarantine).at("create directory", &quarantine)?;
    let mut gone: HashSet<ObjectId> = HashSet::new();
    for (problem, id) in problems.iter_mut() {
        match problem.kind {
            ProblemKind::CorruptObject | ProblemKind::UnreadableObject | ProblemKind::StrayFile => {
                let to = move_to_quarantine(&problem.path, &quarantine)?;
                problem.repaired = Some(format!("moved to {}", to.display()));
                if let Some(id) = id {
                    gone.insert(*id);
                }
            }
            ProblemKind::DanglingLink | ProblemKind::BadStamp => {}
        }
    }
    // Objects whose closure is incomplete, found by walking links backwards
    // from everything that is missing.
    let mut parents: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    for &(from, to) in links {
        parents.entry(to).or_default().push(from);
        if !present.contains(&to) {
            gone.insert(to);
        }
    }
    let mut queue: Vec<ObjectId> = gone.iter().copied().collect();
    let mut unusable: Vec<ObjectId> = Vec::new();
    while let Some(id) = queue.pop() {
        for &parent in parents.get(&id).map_or(&[][..], Vec::as_slice) {
            if gone.insert(parent) {
                unusable.push(parent);
                queue.push(parent);
            }
        }
    }
    let mut moved: HashMap<ObjectId, PathBuf> = HashMap::new();
    for id in unusable {
        let path = store.object_path(&id);
        match move_to_quarantine(&path, &quarantine) {
            Ok(to) => {
                moved.insert(id, to);
            }
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    for (problem, id) in problems.iter_mut() {
        if problem.kind == ProblemKind::DanglingLink
            && let Some(to) = id.and_then(|id| moved.get(&id))
        {
            problem.repaired = Some(format!(
                "its closure is incomplete; moved to {}",
                to.display()
            ));
        }
    }
    for (id, to) in moved {
        let already = problems.iter().any(|(_, pid)| *pid == Some(id));
        if !already {
            problems.push((
                Problem {
                    kind: ProblemKind::DanglingLink,
                    path: store.object_path(&id),
                    detail: format!("object {id} reaches a missing or damaged object"),
                    repaired: Some(format!(
                        "its closure is incomplete; moved to {}",
                        to.display()
                    )),
                },
                Some(id),
            ));
        }
    }
    Ok(())
}

fn move_to_quarantine(path: &Path, quarantine: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .map_or_else(|| "unnamed".into(), |n| n.to_string_lossy().into_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let to = quarantine.join(format!("{name}.{nanos}"));
    fs::rename(path, &to).at("move to quarantine", path)?;
    Ok(to)
}
