//! Fault points: named steps at which a test can make the process die the
//! way `kill -9` would, to reach every crash state on purpose.
//!
//! Each point is one call in the module that owns the step
//! ([`Point::reached`], or [`Point::tear`] for a write cut in half). Nothing is armed unless the binary
//! arms a point ([`arm`]); the `rask-store` CLI does so only from a hidden
//! option or an environment variable, for the crash tests. An unarmed point
//! costs one relaxed atomic load.
//!
//! A fired point calls the hook given to [`arm`] (the CLI prints which point
//! fired), then [`std::process::abort`]: no destructor runs, no buffer is
//! flushed, no lock file is removed — only the kernel releases `flock`s, as
//! it does for a killed process. Data already written stays in the page
//! cache, as after `kill -9` (not as after a power cut).
//!
//! | point | where | what it simulates |
//! |---|---|---|
//! | `object-write` | `store.rs`, put | a temp object file half written under `tmp/`, never renamed |
//! | `journal-append` | `index/journal.rs` | a torn record: half its bytes appended to the index journal |
//! | `compact-segment-written` | `index/mod.rs`, compaction | the new segment and journal published, the manifest not yet switched |
//! | `compact-manifest-switched` | `index/mod.rs`, compaction | the manifest switched, the replaced segment and journal not yet removed |
//! | `ref-reflog-written` | `refs.rs`, each ref update | the ref's lock taken and its reflog line written, the ref not yet renamed |
//! | `txn-ref-applied` | `refs.rs`, each ref update | one ref of an update applied (for a transaction: its record published, the next refs not yet applied) |
//! | `gc-object-removed` | `gc.rs`, sweep | gc removed an object, the rest of its sweep not done |
//! | `pack-object-written` | `pack.rs`, append | an object's bytes in the pack's data file, its index record not written |
//! | `pack-record-append` | `pack.rs`, append | a torn pack index record: half its bytes written |
//!
//! `point:N` fires at the N-th time the point is reached (default 1): for
//! example `txn-ref-applied:1` leaves a transaction with one ref applied,
//! `gc-object-removed:10` a sweep cut after ten removals.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// A named step where the process can be made to die.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Point {
    /// An object's temp file is half written.
    ObjectWrite = 1,
    /// Half of an index journal record is appended.
    JournalAppend,
    /// Compaction published its segment and journal, not its manifest.
    CompactSegmentWritten,
    /// Compaction switched the manifest, and removed no old file yet.
    CompactManifestSwitched,
    /// A ref update wrote its reflog line and did not rename the ref.
    RefReflogWritten,
    /// A ref update (or one ref of a transaction) is applied.
    TxnRefApplied,
    /// gc removed one object.
    GcObjectRemoved,
    /// A pack append wrote the object's bytes, not its index record.
    PackObjectWritten,
    /// Half of a pack index record is written.
    PackRecordAppend,
    /// A new pack's data file exists; its index is not yet in place.
    PackIndexPublish,
}

const ALL: [Point; 10] = [
    Point::ObjectWrite,
    Point::JournalAppend,
    Point::CompactSegmentWritten,
    Point::CompactManifestSwitched,
    Point::RefReflogWritten,
    Point::TxnRefApplied,
    Point::GcObjectRemoved,
    Point::PackObjectWritten,
    Point::PackRecordAppend,
    Point::PackIndexPublish,
];

impl Point {
    /// The point's name, as given to the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Point::ObjectWrite => "object-write",
            Point::JournalAppend => "journal-append",
            Point::CompactSegmentWritten => "compact-segment-written",
            Point::CompactManifestSwitched => "compact-manifest-switched",
            Point::RefReflogWritten => "ref-reflog-written",
            Point::TxnRefApplied => "txn-ref-applied",
            Point::GcObjectRemoved => "gc-object-removed",
            Point::PackObjectWritten => "pack-object-written",
            Point::PackRecordAppend => "pack-record-append",
            Point::PackIndexPublish => "pack-index-publish",
        }
    }

    /// Every point.
    pub fn all() -> &'static [Point] {
        &ALL
    }
}

/// Which point is armed (its discriminant; 0 for none).
static ARMED: AtomicU8 = AtomicU8::new(0);
/// How many more times the armed point may be reached before it fires.
static REMAINING: AtomicU64 = AtomicU64::new(0);
/// Called with the point just before the process aborts.
static ON_FIRE: OnceLock<fn(Point)> = OnceLock::new();

/// Parses `name` or `name:N` (N ≥ 1: fire at the N-th time it is reached).
///
/// # Errors
/// A message naming the valid points when `spec` is not one.
pub fn parse(spec: &str) -> Result<(Point, u64), String> {
    let (name, nth) = match spec.split_once(':') {
        Some((name, n)) => match n.parse::<u64>() {
            Ok(n) if n >= 1 => (name, n),
            _ => {
                return Err(format!(
                    "fault point {spec:?}: the count after ':' must be >= 1"
                ));
            }
        },
        None => (spec, 1),
    };
    match ALL.iter().find(|p| p.name() == name) {
        Some(&point) => Ok((point, nth)),
        None => {
            let names: Vec<&str> = ALL.iter().map(|p| p.name()).collect();
            Err(format!(
                "unknown fault point {name:?}; the points are {}",
                names.join(", ")
            ))
        }
    }
}

/// Arms `point` for the whole process: at the `nth` time it is reached,
/// `on_fire` is called and the process aborts. Only a binary (the CLI, a
/// test's child process) calls this; the library never arms a point.
pub fn arm(point: Point, nth: u64, on_fire: fn(Point)) {
    let _ = ON_FIRE.set(on_fire);
    REMAINING.store(nth.max(1), Ordering::SeqCst);
    ARMED.store(point as u8, Ordering::SeqCst);
}

impl Point {
    /// Dies here if this point is armed and due; otherwise does nothing.
    #[inline]
    pub fn reached(self) {
        if ARMED.load(Ordering::Relaxed) == self as u8 && due() {
            fire(self);
        }
    }

    /// Before a write of `parts` (concatenated) to `out`: if this point is
    /// armed and due, writes the first half of those bytes, then dies. The
    /// caller goes on to write them whole when nothing fires.
    #[inline]
    pub fn tear(self, out: &mut dyn Write, parts: &[&[u8]]) {
        if ARMED.load(Ordering::Relaxed) == self as u8 && due() {
            let bytes: Vec<u8> = parts.concat();
            // One write, as a torn append would leave; its error does not
            // matter: the process is about to die either way.
            let _ = out.write(&bytes[..bytes.len() / 2]);
            fire(self);
        }
    }
}

/// Counts one arrival at the armed point; true when it must fire.
#[cold]
fn due() -> bool {
    REMAINING
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok_and(|before| before == 1)
}

#[cold]
fn fire(point: Point) -> ! {
    if let Some(hook) = ON_FIRE.get() {
        hook(point);
    }
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_bad_specs_say_what_is_valid() {
        for &p in Point::all() {
            assert_eq!(parse(p.name()), Ok((p, 1)));
            assert_eq!(parse(&format!("{}:7", p.name())), Ok((p, 7)));
        }
        let err = parse("journal").unwrap_err();
        assert!(err.contains("journal-append"), "{err}");
        assert!(parse("gc-object-removed:0").is_err());
        assert!(parse("gc-object-removed:x").is_err());
    }
}
